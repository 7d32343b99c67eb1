use super::*;
use crate::sys::testing::{drop_effective_caps, fail_syscall_in_this_thread, fork_in_new_netns};
use crate::sys::{fstat_key, getpid};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener, UnixStream};
use std::sync::atomic::{AtomicU32, Ordering};

/// A listener's pending connections (unix_diag.h), never asked for: a reply carrying
/// them anyway is parsed past them.
const UNIX_DIAG_ICONS: u16 = 3;

const TCP_ESTABLISHED: u8 = 1;
const TCP_CLOSE: u8 = 7;
const TCP_LISTEN: u8 = 10;

fn ino(fd: &impl AsRawFd) -> u64 {
    fstat_key(fd.as_raw_fd()).unwrap().1
}

fn find(all: &[UnixSocket], ino: u64) -> &UnixSocket {
    all.iter()
        .find(|s| s.ino == ino)
        .unwrap_or_else(|| panic!("socket {ino} not in the dump"))
}

/// An abstract name no other test (or run) uses at the same time.
fn abstract_name(tag: &str) -> Vec<u8> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("kcmp-sockdiag-{}-{tag}-{n}", getpid()).into_bytes()
}

fn with_nul(name: &[u8]) -> Vec<u8> {
    [&[0u8][..], name].concat()
}

#[test]
fn a_socketpairs_ends_are_each_others_peer() {
    let (a, b) = UnixStream::pair().unwrap();
    let (c, d) = UnixDatagram::pair().unwrap();
    let all = unix_sockets().unwrap();
    for (x, y, kind) in [(&a, &b, 1), (&b, &a, 1)] {
        let s = find(&all, ino(x));
        assert_eq!(
            (s.kind, s.state, s.peer, &s.name),
            (kind, TCP_ESTABLISHED, Some(ino(y)), &None)
        );
    }
    assert_eq!(find(&all, ino(&c)).peer, Some(ino(&d)));
    assert_eq!(find(&all, ino(&d)).peer, Some(ino(&c)));
    assert_eq!(find(&all, ino(&c)).kind, 2);
}

#[test]
fn a_closed_ends_survivor_has_no_peer() {
    let (a, b) = UnixStream::pair().unwrap();
    let gone = ino(&b);
    drop(b);
    let all = unix_sockets().unwrap();
    let s = find(&all, ino(&a));
    // The survivor still points at the closed socket, which has no inode any more.
    assert_eq!(s.peer, None);
    assert_eq!(s.state, TCP_ESTABLISHED);
    assert!(all.iter().all(|s| s.ino != gone));
}

#[test]
fn a_clients_peer_is_none_until_accepted() {
    let name = abstract_name("listen");
    let addr = SocketAddr::from_abstract_name(&name).unwrap();
    let listener = UnixListener::bind_addr(&addr).unwrap();
    let c1 = UnixStream::connect_addr(&addr).unwrap();
    let c2 = UnixStream::connect_addr(&addr).unwrap();
    let all = unix_sockets().unwrap();
    let l = find(&all, ino(&listener));
    assert_eq!((l.kind, l.state, l.peer), (1, TCP_LISTEN, None));
    assert_eq!(l.name.as_deref(), Some(&with_nul(&name)[..]));
    let clients = [ino(&c1), ino(&c2)];
    // Not yet accepted: the server's end has no inode, so the clients' peer is none.
    for c in [&c1, &c2] {
        let s = find(&all, ino(c));
        assert_eq!((s.state, s.peer, &s.name), (TCP_ESTABLISHED, None, &None));
    }

    let (server, _) = listener.accept().unwrap();
    let all = unix_sockets().unwrap();
    let s = find(&all, ino(&server));
    let client = s.peer.unwrap();
    assert!(clients.contains(&client));
    assert_eq!(find(&all, client).peer, Some(ino(&server)));
    // The accepted end reports the listener's name as its own.
    assert_eq!(s.name.as_deref(), Some(&with_nul(&name)[..]));
    let other = clients.iter().copied().find(|&c| c != client).unwrap();
    assert_eq!(find(&all, other).peer, None);
}

#[test]
fn a_connected_datagram_socket_names_its_peer() {
    let name = abstract_name("dgram");
    let addr = SocketAddr::from_abstract_name(&name).unwrap();
    let server = UnixDatagram::bind_addr(&addr).unwrap();
    let client = UnixDatagram::unbound().unwrap();
    let all = unix_sockets().unwrap();
    assert_eq!(find(&all, ino(&server)).state, TCP_CLOSE);
    client.connect_addr(&addr).unwrap();
    let all = unix_sockets().unwrap();
    let c = find(&all, ino(&client));
    assert_eq!(
        (c.kind, c.state, c.peer, &c.name),
        (2, TCP_ESTABLISHED, Some(ino(&server)), &None)
    );
    // Since Linux 5.19 a datagram connect marks both ends established; the bound
    // end still has no peer.
    let s = find(&all, ino(&server));
    assert_eq!(s.peer, None);
    assert_eq!(s.name.as_deref(), Some(&with_nul(&name)[..]));
}

#[test]
fn a_filesystem_name_comes_without_its_nul() {
    let dir = std::env::temp_dir().join(format!("kcmp-sockdiag-{}", getpid()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let all = unix_sockets();
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir(&dir);
    let s = find(all.as_ref().unwrap(), ino(&listener)).clone();
    assert_eq!(s.name.as_deref(), Some(path.as_os_str().as_encoded_bytes()));
}

#[test]
fn another_namespaces_sockets_are_dumped_there_only() {
    let (child, pair) = fork_in_new_netns();
    assert!(pair.iter().all(|&i| i != 0), "the child made no socketpair");
    let ns = open_netns(child.0).unwrap();
    let theirs = netns_key(child.0).unwrap();
    assert_eq!(fstat_key(ns.as_raw_fd()), Ok(theirs));
    assert_ne!(own_netns_key().unwrap(), theirs);
    assert_eq!(own_netns_key(), netns_key(getpid()));

    let there = unix_sockets_in(&ns).unwrap();
    assert_eq!(find(&there, pair[0]).peer, Some(pair[1]));
    assert_eq!(find(&there, pair[1]).peer, Some(pair[0]));
    // The namespace has nothing else, and this thread's namespace did not change.
    assert_eq!(there.len(), 2);
    assert_eq!(own_netns_key(), netns_key(getpid()));
    let here = unix_sockets().unwrap();
    assert!(here.iter().all(|s| !pair.contains(&s.ino)));
    drop(child);
}

#[test]
fn an_fd_that_is_no_namespace_is_refused_by_setns() {
    let not_ns = hold(|| {
        std::fs::File::open("/dev/null")
            .map(OwnedFd::from)
            .map_err(|_| Errno(libc::EIO))
    })
    .unwrap();
    assert_eq!(unix_sockets_in(&not_ns), Err(Errno(libc::EINVAL)));
    assert!(!is_refusal(Errno(libc::EINVAL)));
    assert!(is_refusal(Errno(libc::EPERM)) && is_refusal(Errno(libc::EPROTONOSUPPORT)));
}

#[test]
fn refusals_come_back_as_their_errno() {
    // A seccomp filter failing socket(2): EPERM, and ENOSYS as some runtimes set it.
    for errno in [libc::EPERM, libc::ENOSYS] {
        let got = std::thread::spawn(move || {
            fail_syscall_in_this_thread(libc::SYS_socket, errno);
            unix_sockets()
        })
        .join()
        .unwrap();
        assert_eq!(got, Err(Errno(errno)));
        assert!(is_refusal(Errno(errno)));
    }
    // setns(2) without CAP_SYS_ADMIN: EPERM; the dump itself needs no capability.
    let (child, _) = fork_in_new_netns();
    let ns = open_netns(child.0).unwrap();
    let (entered, here) = std::thread::scope(|s| {
        s.spawn(|| {
            drop_effective_caps();
            (unix_sockets_in(&ns), unix_sockets().map(|_| ()))
        })
        .join()
        .unwrap()
    });
    assert_eq!(entered, Err(Errno(libc::EPERM)));
    assert_eq!(here, Ok(()));
    drop(child);
}

// Parsing, from byte buffers built here.

fn message(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let len = (NLMSG_HDRLEN + payload.len()) as u32;
    let mut m = Vec::new();
    m.extend_from_slice(&len.to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(payload);
    m.resize(align4(m.len()), 0);
    m
}

fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    a.extend_from_slice(&((NLA_HDRLEN + value.len()) as u16).to_ne_bytes());
    a.extend_from_slice(&kind.to_ne_bytes());
    a.extend_from_slice(value);
    a.resize(align4(a.len()), 0);
    a
}

fn diag_msg(ino: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
    let mut p = vec![libc::AF_UNIX as u8, 1, TCP_LISTEN, 0];
    p.extend_from_slice(&ino.to_ne_bytes());
    p.extend_from_slice(&[0xff; 8]);
    for a in attrs {
        p.extend_from_slice(a);
    }
    p
}

fn u32s(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

fn parse(data: &[u8]) -> Result<(Batch, Vec<UnixSocket>), Errno> {
    let mut out = Vec::new();
    parse_datagram(data, &mut out).map(|b| (b, out))
}

#[test]
fn a_well_formed_reply_parses() {
    let payload = diag_msg(
        7,
        &[
            attribute(UNIX_DIAG_NAME, b"\0abc"),
            attribute(UNIX_DIAG_PEER, &u32s(&[0])),
            attribute(UNIX_DIAG_ICONS, &u32s(&[8, 9])),
            attribute(42, b"ignored"),
        ],
    );
    let mut data = message(SOCK_DIAG_BY_FAMILY, 2, SEQ, &payload);
    data.extend(message(
        SOCK_DIAG_BY_FAMILY,
        2,
        SEQ,
        &diag_msg(8, &[attribute(UNIX_DIAG_PEER, &u32s(&[5]))]),
    ));
    let (batch, out) = parse(&data).unwrap();
    assert_eq!(batch, Batch::default());
    assert_eq!(
        out,
        vec![
            UnixSocket {
                ino: 7,
                kind: 1,
                state: TCP_LISTEN,
                peer: None,
                name: Some(b"\0abc".to_vec()),
            },
            UnixSocket {
                ino: 8,
                kind: 1,
                state: TCP_LISTEN,
                peer: Some(5),
                name: None,
            }
        ]
    );
    // Done (with its int 0), after a message of another request and a flagged one.
    let mut data = message(SOCK_DIAG_BY_FAMILY, 2, SEQ + 1, b"junk");
    data.extend(message(
        SOCK_DIAG_BY_FAMILY,
        NLM_F_DUMP_INTR,
        SEQ,
        &diag_msg(3, &[]),
    ));
    data.extend(message(NLMSG_DONE, 2, SEQ, &u32s(&[0])));
    let (batch, out) = parse(&data).unwrap();
    assert_eq!(
        batch,
        Batch {
            done: true,
            interrupted: true
        }
    );
    assert_eq!(out.len(), 1);
    assert_eq!(parse(&[]), Ok((Batch::default(), vec![])));
}

#[test]
fn kernel_errors_come_back_as_their_errno() {
    let error = |code: i32| {
        let mut p = code.to_ne_bytes().to_vec();
        p.extend_from_slice(&[0; NLMSG_HDRLEN]);
        message(NLMSG_ERROR, 0, SEQ, &p)
    };
    assert_eq!(parse(&error(-libc::ENOENT)), Err(Errno(libc::ENOENT)));
    assert_eq!(parse(&error(-libc::EPERM)), Err(Errno(libc::EPERM)));
    assert_eq!(parse(&error(i32::MIN)), Err(Errno(i32::MAX)));
    assert_eq!(parse(&error(0)).map(|(b, _)| b.done), Ok(false));
    let done = message(NLMSG_DONE, 2, SEQ, &u32s(&[(-libc::ENOBUFS) as u32]));
    assert_eq!(parse(&done), Err(Errno(libc::ENOBUFS)));
    assert_eq!(
        parse(&message(NLMSG_ERROR, 0, SEQ, &[1, 2])),
        Err(Errno(libc::EPROTO))
    );
}

#[test]
fn malformed_replies_are_eproto_never_a_panic() {
    let good = message(
        SOCK_DIAG_BY_FAMILY,
        2,
        SEQ,
        &diag_msg(7, &[attribute(UNIX_DIAG_ICONS, &u32s(&[8, 9]))]),
    );
    // Every truncation of a good message.
    for cut in 1..good.len() {
        assert_eq!(
            parse(&good[..cut]),
            Err(Errno(libc::EPROTO)),
            "cut at {cut}"
        );
    }
    let eproto = Err(Errno(libc::EPROTO));
    // A header length below the header's own, and one past the datagram.
    let mut short = good.clone();
    short[..4].copy_from_slice(&8u32.to_ne_bytes());
    assert_eq!(parse(&short), eproto);
    let mut long = good.clone();
    long[..4].copy_from_slice(&u32::MAX.to_ne_bytes());
    assert_eq!(parse(&long), eproto);
    // A payload shorter than unix_diag_msg; another family; an unknown message type.
    assert_eq!(
        parse(&message(SOCK_DIAG_BY_FAMILY, 2, SEQ, &[1; 8])),
        eproto
    );
    let mut inet = diag_msg(7, &[]);
    inet[0] = libc::AF_INET as u8;
    assert_eq!(parse(&message(SOCK_DIAG_BY_FAMILY, 2, SEQ, &inet)), eproto);
    assert_eq!(parse(&message(99, 2, SEQ, &diag_msg(7, &[]))), eproto);
    // Attributes: length below its header, past the message, a short peer.
    let mut bad_attrs: Vec<Vec<u8>> = vec![vec![2, 0, 0, 0], vec![200, 0, 2, 0, 1, 0, 0, 0]];
    bad_attrs.push(attribute(UNIX_DIAG_PEER, &[1, 2]));
    for a in bad_attrs {
        let m = message(
            SOCK_DIAG_BY_FAMILY,
            2,
            SEQ,
            &diag_msg(7, std::slice::from_ref(&a)),
        );
        assert_eq!(parse(&m), eproto, "{a:?}");
    }
}
