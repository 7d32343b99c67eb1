use super::*;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};

/// Two connected sockets: two descriptions of one kind, as a pipe's two ends are.
fn pipe() -> (OwnedFd, OwnedFd) {
    let (a, b) = UnixStream::pair().unwrap();
    (OwnedFd::from(a), OwnedFd::from(b))
}

/// A `sleep` whose stdin is a copy of `fd` (its fd 0 shares our description).
fn child_holding(fd: &OwnedFd) -> Child {
    let copy = fd.try_clone().unwrap();
    Command::new("sleep")
        .arg("30")
        .stdin(Stdio::from(copy))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Where kcmp is unusable the search is the documented failure, checked here, and the
/// test has nothing more to ask.
fn kcmp_blocked() -> bool {
    if support::kcmp_usable() {
        return false;
    }
    let me = sys::getpid();
    assert!(matches!(
        holders((me, 0), &[me], || false),
        Err(Failure::Unavailable { .. })
    ));
    true
}

fn reap(mut child: Child) {
    let _ = child.kill();
    child.wait().unwrap();
}

#[test]
fn finds_every_holder_and_only_them() {
    if kcmp_blocked() {
        return;
    }
    let me = sys::getpid();
    let (r, w) = pipe();
    let dup = r.try_clone().unwrap(); // a caller's fd: the crate's own would be left out
    let a = child_holding(&r);
    let b = child_holding(&w);
    let (pa, pb) = (a.id() as Pid, b.id() as Pid);
    let found = holders((me, r.as_raw_fd()), &[pb, me, pa, pa], || false).unwrap();
    let mut want = vec![(me, r.as_raw_fd()), (me, dup.as_raw_fd()), (pa, 0)];
    want.sort_unstable();
    assert_eq!(found.holders, want);
    assert!(found.skipped.is_empty(), "{:?}", found.skipped);
    assert!(found.kcmp_calls >= found.fds_compared);
    assert!(
        found.kcmp_calls <= found.fds_compared + 1,
        "one call per candidate fd"
    );
    reap(a);
    reap(b);
}

#[test]
fn gone_candidates_are_skipped_with_the_reason() {
    if kcmp_blocked() {
        return;
    }
    let me = sys::getpid();
    let (r, _w) = pipe();
    let mut zombie = child_holding(&r);
    let pz = zombie.id() as Pid;
    zombie.kill().unwrap();
    // Killed but not reaped: wait until the kernel shows it as a zombie.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !sys::is_zombie(pz) {
        assert!(
            std::time::Instant::now() < deadline,
            "child never became a zombie"
        );
        std::thread::yield_now();
    }
    let absent = i32::MAX;
    let found = holders((me, r.as_raw_fd()), &[pz, absent], || false).unwrap();
    assert_eq!(found.holders, vec![]);
    let reasons: Vec<_> = found
        .skipped
        .iter()
        .map(|(p, f)| (*p, f.gone_kind()))
        .collect();
    assert_eq!(
        reasons,
        vec![(pz, Some("zombie")), (absent, Some("absent"))]
    );
    zombie.wait().unwrap();
}

#[test]
fn a_target_that_is_not_there_is_an_error() {
    if kcmp_blocked() {
        return;
    }
    let me = sys::getpid();
    assert_eq!(
        holders((me, 999_999), &[me], || false).unwrap_err(),
        Failure::NotOpen {
            pid: me,
            fd: 999_999
        }
    );
    assert_eq!(
        holders((i32::MAX, 0), &[me], || false).unwrap_err(),
        Failure::NoProcess { pid: i32::MAX }
    );
    let mut child = child_holding(&pipe().0);
    let pid = child.id() as Pid;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        holders((pid, 0), &[me], || false).unwrap_err(),
        Failure::NoProcess { pid }
    );
}

#[test]
fn interrupted_between_processes() {
    if kcmp_blocked() {
        return;
    }
    let me = sys::getpid();
    let (r, _w) = pipe();
    assert_eq!(
        holders((me, r.as_raw_fd()), &[me], || true).unwrap_err(),
        Failure::Interrupted
    );
}

#[test]
fn a_target_closed_or_replaced_during_the_search_fails_the_search() {
    if kcmp_blocked() {
        return;
    }
    let me = sys::getpid();
    let (a, _b) = pipe();
    let target = sys::dup_cloexec(a.as_raw_fd()).unwrap();
    let fd = target.as_raw_fd();
    // Replaced by another file under the same number: the end check sees another inode.
    let search = Search::start((me, fd)).unwrap();
    let other = std::fs::File::open("/proc/self/status").unwrap();
    sys::dup3_onto(other.as_raw_fd(), &target).unwrap();
    let err = search.finish().unwrap_err();
    assert!(
        matches!(err, Failure::Os { errno: libc::EAGAIN, pid: Some(p), fd: Some(f), .. } if p == me && f == fd),
        "{err:?}"
    );
    assert!(
        err.message()
            .contains("was closed or replaced during the search"),
        "{}",
        err.message()
    );
    // Closed: the fd it names is not open any more.
    let search = Search::start((me, fd)).unwrap();
    drop(target);
    assert_eq!(
        search.finish().unwrap_err(),
        Failure::NotOpen { pid: me, fd }
    );
}
