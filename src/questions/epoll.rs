//! What an epoll set watches: its registrations from /proc/PID/fdinfo/EPFD, and for
//! each the (pid, fd) that refer to the registered file now, found with
//! `KCMP_EPOLL_TFD` among the fds on the registered inode.
//!
//! The set is looked at three times: the fd's target before and after the fdinfo
//! read must both be an epoll instance, so a set closed or replaced by another file
//! meanwhile is an error, never an empty answer.

use std::os::fd::AsRawFd;

use rustc_hash::FxHashMap as HashMap;

use super::procfs::live_task_of;
use super::{fd_target, file_key, why_unreadable, Pinned};
use crate::error::Failure;
use crate::ladder::same_epoll_target;
use crate::oracle::FileRef;
use crate::support;
use crate::sys::{self, Fd, Pid};

/// What an epoll fd's target reads as.
const EVENTPOLL: &[u8] = b"anon_inode:[eventpoll]";

/// Whether the registered fd number still names the registered file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Open,
    Closed,
    Reused,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Closed => "closed",
            Status::Reused => "reused",
        }
    }
}

/// One registration of the set, in the kernel's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub tfd: Fd,
    /// Its index among the registrations under the same fd number (`toff`).
    pub index: i32,
    pub events: u32,
    pub data: u64,
    pub ino: u64,
    pub status: Status,
    /// The (pid, fd) referring to the registered file, ascending.
    pub holders: Vec<FileRef>,
}

/// What the epoll sets of one process watch, from one pass with every process pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpollReport {
    /// The process asked about (its live thread was read if its main thread exited).
    pub pid: Pid,
    /// Each set asked about (every epoll fd of the process, ascending, when none was
    /// named) with its registrations.
    pub sets: Vec<(Fd, Vec<Registration>)>,
    /// The command name of each holder's process (`None` once gone), ascending pid.
    pub commands: Vec<(Pid, Option<Vec<u8>>)>,
    /// `KCMP_EPOLL_TFD` calls made.
    pub calls: u64,
}

/// Every registration of the epoll sets `epfds` of `pid` (`None`: every epoll fd it
/// has), with their holders among `pid` and `others`. One pass: a process exiting or
/// a set replaced anywhere in it fails the whole answer, never part of it.
pub fn epoll_sets(
    pid: Pid,
    epfds: Option<&[Fd]>,
    others: &[Pid],
    mut interrupted: impl FnMut() -> bool,
) -> Result<EpollReport, Failure> {
    support::require_kcmp()?;
    let asked = pid;
    // A process whose main thread exited (pthread_exit) is read through a live
    // thread of it, as the scan reads it.
    let pid = live_task_of(pid);
    let mut pids = vec![pid];
    pids.extend(
        others
            .iter()
            .map(|&p| live_task_of(p))
            .filter(|&p| p != pid),
    );
    pids.sort_unstable();
    pids.dedup();
    let pinned = Pinned::new(&pids)?;
    let epfds = match epfds {
        Some(fds) => fds.to_vec(),
        None => epoll_fds_of(&pinned, pid)?,
    };
    let mut raw = Vec::with_capacity(epfds.len());
    for &epfd in &epfds {
        raw.push((
            epfd,
            registrations(pid, epfd).map_err(|f| pinned.explain(f))?,
        ));
    }
    let own = pinned.list(pid)?;
    let mut by_ino: HashMap<u64, Vec<FileRef>> = HashMap::default();
    for &p in &pids {
        if interrupted() {
            return Err(Failure::Interrupted);
        }
        let fds = if p == pid {
            own.clone()
        } else {
            pinned.list(p)?
        };
        for f in fds {
            if let Some((_, ino)) = file_key(p, f) {
                by_ino.entry(ino).or_default().push((p, f));
            }
        }
    }
    let mut calls = 0;
    let mut sets = Vec::with_capacity(raw.len());
    for (epfd, regs) in raw {
        let mut answers = Vec::with_capacity(regs.len());
        for (tfd, index, events, data, ino) in regs {
            if interrupted() {
                return Err(Failure::Interrupted);
            }
            let mut holders = Vec::new();
            for &(p, f) in by_ino.get(&ino).map_or(&[][..], Vec::as_slice) {
                calls += 1;
                match same_epoll_target(p, f, pid, epfd, tfd, index) {
                    Ok(true) => holders.push((p, f)),
                    Ok(false) => {}
                    // Closed since it was listed, in a process still there: not a holder.
                    Err(Failure::NotOpen { pid: q, fd })
                        if (q, fd) == (p, f) && (p, f) != (pid, epfd) => {}
                    Err(failure) => return Err(pinned.explain(failure)),
                }
            }
            holders.sort_unstable();
            let status = if holders.contains(&(pid, tfd)) {
                Status::Open
            } else if own.binary_search(&tfd).is_ok() {
                Status::Reused
            } else {
                Status::Closed
            };
            answers.push(Registration {
                tfd,
                index,
                events,
                data,
                ino,
                status,
                holders,
            });
        }
        if fd_target(pid, epfd).as_deref() != Some(EVENTPOLL) {
            return Err(pinned.explain(replaced(pid, epfd)));
        }
        sets.push((epfd, answers));
    }
    pinned.finish()?;
    let mut seen: Vec<Pid> = sets
        .iter()
        .flat_map(|(_, regs)| regs.iter().flat_map(|r| r.holders.iter().map(|h| h.0)))
        .collect();
    seen.sort_unstable();
    seen.dedup();
    let commands = seen.into_iter().map(|p| (p, super::command(p))).collect();
    Ok(EpollReport {
        pid: asked,
        sets,
        commands,
        calls,
    })
}

/// The epoll fds open in `pid` (pinned by the caller), ascending. A link that cannot be
/// read is an error (`Denied` where ptrace access to links is refused), never an fd
/// left out.
fn epoll_fds_of(pinned: &Pinned, pid: Pid) -> Result<Vec<Fd>, Failure> {
    let mut found = Vec::new();
    for fd in pinned.list(pid)? {
        let Some(path) = super::fd_path(pid, fd) else {
            continue;
        };
        match sys::readlinkat(libc::AT_FDCWD, &path) {
            Ok(target) if target == EVENTPOLL => found.push(fd),
            // Closed since the listing: not an epoll fd of the process now.
            Ok(_) | Err(sys::Errno(libc::ENOENT)) => {}
            Err(e) => {
                return Err(pinned.explain(Failure::from_errno(
                    e,
                    pid,
                    Some(fd),
                    &format!("reading /proc/{pid}/fd/{fd}"),
                )))
            }
        }
    }
    Ok(found)
}

/// One registration as fdinfo gives it: tfd, toff, events, data, ino.
type Raw = (Fd, i32, u32, u64, u64);

/// The set's registrations, read between two looks at the fd's target. The fdinfo's
/// mount (and inode, Linux 5.14+) must be those every epoll instance shares (learnt
/// from an epoll fd of our own): a set swapped for a file of another kind and back
/// around the read is caught too. (Swapped for another anon-inode file, an eventfd
/// say, and back within that read, it would not be: such files share the mount and
/// the inode.)
fn registrations(pid: Pid, epfd: Fd) -> Result<Vec<Raw>, Failure> {
    match fd_target(pid, epfd) {
        None => return Err(why_unreadable(pid, epfd)),
        Some(t) if t != EVENTPOLL => return Err(not_epoll(pid, epfd)),
        Some(_) => {}
    }
    let epoll_header = own_epoll_header()?;
    let path = std::ffi::CString::new(format!("/proc/{pid}/fdinfo/{epfd}"))
        .map_err(|_| not_epoll(pid, epfd))?;
    let text = sys::read_small_file(&path).map_err(|e| match e.0 {
        libc::ENOENT => replaced(pid, epfd),
        _ => Failure::from_errno(
            e,
            pid,
            Some(epfd),
            &format!("reading /proc/{pid}/fdinfo/{epfd}"),
        ),
    })?;
    match fd_target(pid, epfd) {
        Some(t) if t == EVENTPOLL => {}
        _ => return Err(replaced(pid, epfd)),
    }
    let (mnt_id, ino) = header(&text);
    if mnt_id != epoll_header.0 || ino != epoll_header.1 {
        return Err(replaced(pid, epfd));
    }
    parse_fdinfo(&text).ok_or_else(|| unparsable(pid, epfd))
}

/// EIO for an fdinfo whose registration lines this parser does not know: a kernel
/// whose format changed is said, never read as fewer registrations.
fn unparsable(pid: Pid, epfd: Fd) -> Failure {
    Failure::Os {
        errno: libc::EIO,
        pid: Some(pid),
        fd: Some(epfd),
        detail: format!(
            "/proc/{pid}/fdinfo/{epfd} has a registration line this kernel's format \
             does not explain"
        ),
    }
}

/// The `mnt_id:` and `ino:` lines of an fdinfo's header (decimal), where the kernel
/// gives them (`ino:` since Linux 5.14).
fn header(text: &[u8]) -> (Option<u64>, Option<u64>) {
    (
        super::procfs::fdinfo_field(text, b"mnt_id:"),
        super::procfs::fdinfo_field(text, b"ino:"),
    )
}

/// The fdinfo header of an epoll fd of our own: every epoll instance is a file on one
/// internal mount and one inode, so another process's epoll fd shows the same.
fn own_epoll_header() -> Result<(Option<u64>, Option<u64>), Failure> {
    let doing = "creating an epoll fd to compare with";
    let own = sys::epoll_create().map_err(|e| {
        if crate::error::is_exhaustion(e) {
            Failure::exhausted(e, None, None, doing)
        } else {
            Failure::Os {
                errno: e.0,
                pid: None,
                fd: None,
                detail: doing.to_string(),
            }
        }
    })?;
    let path =
        std::ffi::CString::new(format!("/proc/self/fdinfo/{}", own.as_raw_fd())).map_err(|_| {
            Failure::Os {
                errno: libc::EINVAL,
                pid: None,
                fd: None,
                detail: doing.to_string(),
            }
        })?;
    let text = sys::read_small_file(&path)
        .map_err(|e| Failure::from_errno(e, sys::getpid(), None, "reading our own fdinfo"))?;
    Ok(header(&text))
}

/// The `tfd:` lines of an epoll fd's fdinfo, each with its index among the lines of
/// the same tfd; `None` for a line that does not parse.
fn parse_fdinfo(text: &[u8]) -> Option<Vec<Raw>> {
    let mut seen: HashMap<Fd, i32> = HashMap::default();
    let mut out = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        if !line.starts_with(b"tfd:") {
            continue;
        }
        let line = std::str::from_utf8(line).ok()?;
        let words: Vec<&str> = line
            .split([':', ' ', '\t'])
            .filter(|w| !w.is_empty())
            .collect();
        let field = |name: &str| -> Option<&str> {
            words
                .chunks(2)
                .find(|pair| pair.first() == Some(&name))
                .and_then(|pair| pair.get(1).copied())
        };
        let tfd: Fd = field("tfd")?.parse().ok()?;
        let events = u32::from_str_radix(field("events")?, 16).ok()?;
        let data = u64::from_str_radix(field("data")?, 16).ok()?;
        let ino = u64::from_str_radix(field("ino")?, 16).ok()?;
        let index = seen.entry(tfd).or_insert(0);
        out.push((tfd, *index, events, data, ino));
        *index += 1;
    }
    Some(out)
}

fn not_epoll(pid: Pid, epfd: Fd) -> Failure {
    Failure::Os {
        errno: libc::EINVAL,
        pid: Some(pid),
        fd: Some(epfd),
        detail: format!("fd {epfd} of process {pid} is not an epoll fd"),
    }
}

fn replaced(pid: Pid, epfd: Fd) -> Failure {
    Failure::Os {
        errno: libc::EAGAIN,
        pid: Some(pid),
        fd: Some(epfd),
        detail: format!(
            "fd {epfd} of process {pid} was closed or replaced during the call; try again"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_lines_parse_with_their_index() {
        let text = b"pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1057\n\
tfd:        5 events:       19 data:       ffffffffffffffff  pos:0 ino:6ff sdev:d\n\
tfd:        5 events:        1 data:                2  pos:0 ino:6ff sdev:d\n\
tfd:        7 events:        4 data:                0  pos:0 ino:a sdev:d\n";
        let regs = parse_fdinfo(text).unwrap();
        assert_eq!(
            regs,
            vec![
                (5, 0, 0x19, u64::MAX, 0x6ff),
                (5, 1, 1, 2, 0x6ff),
                (7, 0, 4, 0, 0xa),
            ]
        );
    }

    #[test]
    fn the_header_names_the_mount_and_the_inode_where_the_kernel_gives_them() {
        let text = b"pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1057\ntfd: 3 ino:9\n";
        assert_eq!(header(text), (Some(15), Some(1057)));
        assert_eq!(
            header(b"pos:\t0\nflags:\t02\nmnt_id:\t15\n"),
            (Some(15), None)
        );
    }

    #[test]
    fn our_own_epoll_header_names_its_mount() {
        assert!(own_epoll_header().unwrap().0.is_some());
    }

    #[test]
    fn an_unparsable_fdinfo_is_an_io_error_naming_the_file() {
        let f = unparsable(7, 3);
        assert_eq!((f.errno(), f.pid(), f.fd()), (libc::EIO, Some(7), Some(3)));
        assert_eq!(
            f.message(),
            "Input/output error: /proc/7/fdinfo/3 has a registration line this kernel's \
             format does not explain"
        );
    }

    #[test]
    fn a_line_that_does_not_parse_is_refused() {
        assert_eq!(parse_fdinfo(b"tfd: x events: 1 data: 0 ino: 1\n"), None);
        assert_eq!(parse_fdinfo(b"tfd: 3 events: 1 data: 0\n"), None);
        assert_eq!(parse_fdinfo(b"pos: 0\n"), Some(vec![]));
    }
}
