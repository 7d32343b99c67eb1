//! NETLINK_SOCK_DIAG for Unix sockets: every Unix socket of a network namespace, with
//! its peer's inode and the connections waiting on a listener, in one netlink dump.
//! The Unix-socket half of finding "the other end" of a socket a process holds: the
//! inode `fstat` gives for its fd is the `ino` the dump reports.
//!
//! The dump sees the network namespace of the thread that opens the netlink socket:
//! [`unix_sockets`] the calling thread's, [`unix_sockets_in`] another's, entered by a
//! short-lived thread of its own (namespace membership is per thread), so the caller's
//! never changes. [`netns_key`] and [`own_netns_key`] tell namespaces apart, so a
//! caller dumps each distinct one once.
//!
//! # Refusals
//! Some errnos mean "sock_diag is not available here", not "something failed": a
//! caller falls back (to /proc/net/unix, or to no answer) on them, see [`is_refusal`]:
//! * `EPERM`, `EACCES`: socket(2) refused (a seccomp filter, an LSM), or an LSM refused
//!   the request message; from [`unix_sockets_in`] also setns(2) refused (no
//!   CAP_SYS_ADMIN over the target namespace);
//! * `EAFNOSUPPORT`: no netlink at all; `EPROTONOSUPPORT`: no NETLINK_SOCK_DIAG;
//! * `ENOENT` (from the kernel's NLMSG_ERROR): sock_diag is there, but no handler for
//!   AF_UNIX (CONFIG_UNIX_DIAG off, its module not loadable);
//! * `ENOSYS`: a seccomp filter that fails socket(2) or setns(2) with it.
//!
//! Every other errno is a failure: `EPROTO` for a reply that does not parse (short,
//! overlong, a length that points past its datagram, another family than AF_UNIX),
//! `EMSGSIZE` for a datagram larger than the receive buffer, `EINVAL` from
//! [`unix_sockets_in`] for an fd that is no network namespace, `EIO` for a namespace
//! thread that ended without an answer. A signal interrupting a send or receive is
//! retried.
//!
//! The dump never asks for a listener's pending connections (UDIAG_SHOW_ICONS): the
//! kernel ends a dump silently at a listener whose list does not fit one netlink
//! datagram (about 8,100 inodes in 32 KiB; seen on 6.18 with 9,000 pending), leaving
//! out that listener and every socket after it, and no reply says so.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::{fstatat_key, hold, Errno, FileKey, HeldFd, Pid};

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h): the request and reply message type.
const SOCK_DIAG_BY_FAMILY: u16 = 20;

/// Netlink control message types and flags (linux/netlink.h).
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
/// Set on a reply of a dump the kernel saw change under it: the whole dump is retried.
const NLM_F_DUMP_INTR: u16 = 0x10;
/// An attribute's type without the nested and byte-order flags (`NLA_TYPE_MASK`).
const NLA_TYPE_MASK: u16 = 0x3fff;

/// `udiag_show` bits (linux/unix_diag.h).
const UDIAG_SHOW_NAME: u32 = 0x1;
const UDIAG_SHOW_PEER: u32 = 0x4;

/// Attribute types of a `unix_diag_msg` (linux/unix_diag.h's enum, from 0).
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_PEER: u16 = 2;

/// `struct nlmsghdr` (linux/netlink.h), with the kernel's field names.
#[allow(clippy::struct_field_names)]
#[repr(C)]
struct NlMsgHdr {
    nlmsg_len: u32,
    nlmsg_type: u16,
    nlmsg_flags: u16,
    nlmsg_seq: u32,
    nlmsg_pid: u32,
}

/// `struct unix_diag_req` (linux/unix_diag.h).
#[repr(C)]
struct UnixDiagReq {
    sdiag_family: u8,
    sdiag_protocol: u8,
    pad: u16,
    udiag_states: u32,
    udiag_ino: u32,
    udiag_show: u32,
    udiag_cookie: [u32; 2],
}

/// The one message of a dump request: a header and the request, no padding between.
#[repr(C)]
struct DumpRequest {
    hdr: NlMsgHdr,
    req: UnixDiagReq,
}

const NLMSG_HDRLEN: usize = 16;
/// `struct unix_diag_msg`: family, type, state, pad (u8 each), inode (u32), cookie.
const UNIX_DIAG_MSG_LEN: usize = 16;
const NLA_HDRLEN: usize = 4;
const _: () = assert!(std::mem::size_of::<NlMsgHdr>() == NLMSG_HDRLEN);
const _: () = assert!(std::mem::size_of::<UnixDiagReq>() == 24);
const _: () = assert!(std::mem::size_of::<DumpRequest>() == NLMSG_HDRLEN + 24);

/// Receive buffer: the kernel fills a dump's datagrams up to 32 KiB.
const RECV_BUF: usize = 64 * 1024;
/// Sequence number of our request; replies carrying another are not ours.
const SEQ: u32 = 0x6b63_6d70;
/// Dumps restarted after the kernel flagged one inconsistent, before giving up.
const DUMP_ATTEMPTS: u32 = 4;

/// One Unix socket as the kernel's unix_diag reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixSocket {
    /// Its inode: what fstat(2) gives as `st_ino` for an fd of it.
    pub ino: u64,
    /// `SOCK_STREAM` (1), `SOCK_DGRAM` (2) or `SOCK_SEQPACKET` (5).
    pub kind: u8,
    /// The kernel's TCP-like state: `TCP_ESTABLISHED` (1) for a connected socket,
    /// `TCP_CLOSE` (7) for an unconnected one, `TCP_LISTEN` (10) for a listener.
    /// Since Linux 5.19 a datagram socket another connected to is established too,
    /// though it has no peer of its own: `peer`, not `state`, says who talks to whom.
    pub state: u8,
    /// The inode of the socket it is connected to. `None` when not connected, and
    /// also when the peer has no inode: a connection not yet accepted (the server's
    /// side exists, but has no file until accept(2)) or a peer already closed.
    pub peer: Option<u64>,
    /// Its bound address: an abstract name with its leading NUL, a filesystem path
    /// without the trailing NUL the kernel keeps; `None` when unbound.
    pub name: Option<Vec<u8>>,
}

/// Whether `e`, from [`unix_sockets`] or [`unix_sockets_in`], means sock_diag is
/// refused or absent here (the module doc lists them), not that a dump failed.
pub fn is_refusal(e: Errno) -> bool {
    matches!(
        e.0,
        libc::EPERM
            | libc::EACCES
            | libc::EAFNOSUPPORT
            | libc::EPROTONOSUPPORT
            | libc::ENOENT
            | libc::ENOSYS
    )
}

/// Every Unix socket of the calling thread's network namespace, in one dump.
pub fn unix_sockets() -> Result<Vec<UnixSocket>, Errno> {
    let mut attempt = 1;
    loop {
        match dump_once() {
            Err(Errno(libc::EAGAIN)) if attempt < DUMP_ATTEMPTS => attempt += 1,
            other => return other,
        }
    }
}

/// Every Unix socket of the network namespace `netns` (an open /proc/PID/ns/net, as
/// [`open_netns`] gives): the dump of [`unix_sockets`], run by a thread that joins
/// that namespace first and ends with the dump. The calling thread's namespace never
/// changes.
pub fn unix_sockets_in(netns: &HeldFd) -> Result<Vec<UnixSocket>, Errno> {
    let fd = netns.as_raw_fd();
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("kcmp-netns".into())
            .spawn_scoped(scope, move || {
                // SAFETY: integers only; `fd` stays open, as `netns` is borrowed until
                // this thread is joined. Changes this thread's namespace alone.
                Errno::result(unsafe { libc::setns(fd, libc::CLONE_NEWNET) })?;
                unix_sockets()
            })
            .map_err(|e| Errno(e.raw_os_error().unwrap_or(libc::EAGAIN)))?;
        worker.join().unwrap_or(Err(Errno(libc::EIO)))
    })
}

/// Opens /proc/PID/ns/net (close-on-exec), for [`unix_sockets_in`].
pub fn open_netns(pid: Pid) -> Result<HeldFd, Errno> {
    let path = netns_path(pid)?;
    hold(|| {
        // SAFETY: `path` is NUL-terminated; the fd returned is owned by nobody else.
        let fd =
            Errno::result(unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
        // SAFETY: `fd` was just opened and is not shared.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    })
}

/// The identity (st_dev, st_ino) of the network namespace of process or thread
/// `pid`: equal keys, one namespace, one dump. An open namespace fd's key is
/// `fstat_key` of it.
pub fn netns_key(pid: Pid) -> Result<FileKey, Errno> {
    fstatat_key(libc::AT_FDCWD, &netns_path(pid)?)
}

/// The identity of the calling thread's network namespace, the one [`unix_sockets`]
/// dumps (/proc/thread-self/ns/net: another thread's may differ).
pub fn own_netns_key() -> Result<FileKey, Errno> {
    fstatat_key(libc::AT_FDCWD, c"/proc/thread-self/ns/net")
}

fn netns_path(pid: Pid) -> Result<CString, Errno> {
    CString::new(format!("/proc/{pid}/ns/net")).map_err(|_| Errno(libc::EINVAL))
}

/// One dump on a fresh socket; `EAGAIN` when the kernel flagged it inconsistent.
fn dump_once() -> Result<Vec<UnixSocket>, Errno> {
    let sock = hold(|| {
        // SAFETY: integers only; returns a new fd or -1.
        let fd = Errno::result(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        })?;
        // SAFETY: the fd was just created by the kernel and is owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    })?;
    send_request(&sock)?;
    let mut sockets = Vec::new();
    let mut buf = vec![0u8; RECV_BUF];
    let mut interrupted = false;
    loop {
        let n = recv_datagram(&sock, &mut buf)?;
        let datagram = buf.get(..n).ok_or(Errno(libc::EPROTO))?;
        let batch = parse_datagram(datagram, &mut sockets)?;
        interrupted |= batch.interrupted;
        if batch.done {
            return if interrupted {
                Err(Errno(libc::EAGAIN))
            } else {
                Ok(sockets)
            };
        }
    }
}

fn send_request(sock: &HeldFd) -> Result<(), Errno> {
    let request = DumpRequest {
        hdr: NlMsgHdr {
            nlmsg_len: std::mem::size_of::<DumpRequest>() as u32,
            nlmsg_type: SOCK_DIAG_BY_FAMILY,
            nlmsg_flags: NLM_F_REQUEST | NLM_F_DUMP,
            nlmsg_seq: SEQ,
            nlmsg_pid: 0,
        },
        req: UnixDiagReq {
            sdiag_family: libc::AF_UNIX as u8,
            sdiag_protocol: 0,
            pad: 0,
            udiag_states: u32::MAX,
            udiag_ino: 0,
            udiag_show: UDIAG_SHOW_NAME | UDIAG_SHOW_PEER,
            udiag_cookie: [u32::MAX; 2],
        },
    };
    let len = std::mem::size_of::<DumpRequest>();
    loop {
        // SAFETY: `request` is a live, initialised repr(C) struct without padding, read
        // by the kernel for exactly its size; the socket is the crate's own. An
        // unconnected netlink socket sends to the kernel (port 0).
        let sent = Errno::result(unsafe {
            libc::send(
                sock.as_raw_fd(),
                (&raw const request).cast::<libc::c_void>(),
                len,
                0,
            )
        });
        match sent {
            Ok(n) if n.unsigned_abs() == len => return Ok(()),
            Ok(_) => return Err(Errno(libc::EPROTO)),
            Err(Errno(libc::EINTR)) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Receives one datagram into `buf`, returning its length; `EMSGSIZE` if it was
/// larger than `buf` (MSG_TRUNC makes netlink report the full length).
fn recv_datagram(sock: &HeldFd, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        // SAFETY: `buf` is writable for `buf.len()` bytes; the kernel writes at most
        // that; the socket is the crate's own.
        let got = Errno::result(unsafe {
            libc::recv(
                sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
            )
        });
        match got {
            Ok(n) if n.unsigned_abs() > buf.len() => return Err(Errno(libc::EMSGSIZE)),
            Ok(n) => return Ok(n.unsigned_abs()),
            Err(Errno(libc::EINTR)) => {}
            Err(e) => return Err(e),
        }
    }
}

/// What one datagram of the reply said beyond its sockets.
#[derive(Debug, Default, PartialEq, Eq)]
struct Batch {
    /// NLMSG_DONE was in it: the dump is complete.
    done: bool,
    /// A message carried NLM_F_DUMP_INTR: the dump is inconsistent.
    interrupted: bool,
}

/// Parses one reply datagram, pushing its sockets onto `out`.
fn parse_datagram(mut data: &[u8], out: &mut Vec<UnixSocket>) -> Result<Batch, Errno> {
    let mut batch = Batch::default();
    while !data.is_empty() {
        let header = data.get(..NLMSG_HDRLEN).ok_or(Errno(libc::EPROTO))?;
        let len = u32_at(header, 0)? as usize;
        let kind = u16_at(header, 4)?;
        let flags = u16_at(header, 6)?;
        let seq = u32_at(header, 8)?;
        if len < NLMSG_HDRLEN {
            return Err(Errno(libc::EPROTO));
        }
        let payload = data.get(NLMSG_HDRLEN..len).ok_or(Errno(libc::EPROTO))?;
        // The next message starts at the aligned length; the last may be unpadded.
        data = data.get(align4(len)..).unwrap_or(&[]);
        if seq != SEQ {
            continue;
        }
        batch.interrupted |= flags & NLM_F_DUMP_INTR != 0;
        match kind {
            NLMSG_DONE => {
                // A dump that failed midway says so in the int after the header.
                if let Ok(code) = i32_at(payload, 0) {
                    if code < 0 {
                        return Err(Errno(code.saturating_neg()));
                    }
                }
                batch.done = true;
                return Ok(batch);
            }
            NLMSG_ERROR => {
                let code = i32_at(payload, 0)?;
                if code < 0 {
                    return Err(Errno(code.saturating_neg()));
                }
                // An acknowledgement (error 0) is not asked for; it ends nothing.
            }
            NLMSG_NOOP => {}
            SOCK_DIAG_BY_FAMILY => out.push(parse_socket(payload)?),
            _ => return Err(Errno(libc::EPROTO)),
        }
    }
    Ok(batch)
}

/// One `unix_diag_msg` and its attributes.
fn parse_socket(payload: &[u8]) -> Result<UnixSocket, Errno> {
    let msg = payload
        .get(..UNIX_DIAG_MSG_LEN)
        .ok_or(Errno(libc::EPROTO))?;
    if i32::from(msg[0]) != libc::AF_UNIX {
        return Err(Errno(libc::EPROTO));
    }
    let mut socket = UnixSocket {
        ino: u64::from(u32_at(msg, 4)?),
        kind: msg[1],
        state: msg[2],
        peer: None,
        name: None,
    };
    let mut attrs = payload.get(UNIX_DIAG_MSG_LEN..).unwrap_or(&[]);
    while !attrs.is_empty() {
        let len = usize::from(u16_at(attrs, 0)?);
        let kind = u16_at(attrs, 2)? & NLA_TYPE_MASK;
        if len < NLA_HDRLEN {
            return Err(Errno(libc::EPROTO));
        }
        let value = attrs.get(NLA_HDRLEN..len).ok_or(Errno(libc::EPROTO))?;
        attrs = attrs.get(align4(len)..).unwrap_or(&[]);
        match kind {
            UNIX_DIAG_NAME => socket.name = Some(socket_name(value)),
            UNIX_DIAG_PEER => {
                let peer = u32_at(value, 0)?;
                socket.peer = (peer != 0).then_some(u64::from(peer));
            }
            // Attributes not asked for (or of a newer kernel) are skipped.
            _ => {}
        }
    }
    Ok(socket)
}

/// A bound name as the kernel reports it (sun_path's used bytes): abstract names
/// whole, filesystem paths without their terminating NUL.
fn socket_name(value: &[u8]) -> Vec<u8> {
    match value {
        [0, ..] => value.to_vec(),
        _ => {
            let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
            value[..end].to_vec()
        }
    }
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

fn u16_at(data: &[u8], at: usize) -> Result<u16, Errno> {
    let bytes = data.get(at..at + 2).ok_or(Errno(libc::EPROTO))?;
    Ok(u16::from_ne_bytes([bytes[0], bytes[1]]))
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, Errno> {
    let bytes = data.get(at..at + 4).ok_or(Errno(libc::EPROTO))?;
    Ok(u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn i32_at(data: &[u8], at: usize) -> Result<i32, Errno> {
    u32_at(data, at).map(|v| v as i32)
}

#[cfg(test)]
mod tests;
