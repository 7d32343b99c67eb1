//! Single comparisons and the fallback ladder below kcmp.
//!
//! The ladder, each rung exact: kcmp; for fds of this process, fstat buckets then
//! F_DUPFD_QUERY, or access modes (which never change), the epoll EEXIST test and then
//! the OFD lock test (`ofd`) for files that refuse epoll; for another process's fds, a
//! pidfd_getfd copy (only when the caller opts in, since closing the copy runs the
//! file's flush) then the same-process rung. Where nothing can decide: `Failure::Unavailable`.
//!
//! The rungs answer one pair each; the file oracle climbs them for a batch. Uses `sys`,
//! `error` and `support`; never the engine, the oracles or PyO3.

use std::os::fd::AsRawFd;

use crate::sys::HeldFd;

mod ofd;

use crate::error::{self, Failure};
use crate::support;
use crate::sys::{self, Errno, Fd, KcmpOrder, Pid};

/// One kcmp call with a specific failure; `support` notes what kcmp refused.
///
/// A task type compares pointers that a zombie or an exiting task has already set to
/// NULL, so kcmp would answer an order for them: each other pid is checked after the
/// answer (one /proc/PID/stat read). The caller's own pid and `KCMP_FILE` (whose
/// missing fd table is an EBADF, diagnosed) skip the read.
pub fn kcmp_checked(pid1: Pid, pid2: Pid, ty: i32, fd1: Fd, fd2: Fd) -> Result<KcmpOrder, Failure> {
    support::require_kcmp()?;
    let order = sys::kcmp(pid1, pid2, ty, fd1, fd2).map_err(|e| {
        let failure = error::diagnose(pid1, pid2, ty, fd1, fd2, e);
        support::note_failure(&failure);
        failure
    })?;
    if ty != sys::KCMP_FILE {
        // Asked after the answer, once per pid: a task that is a zombie or exiting now
        // had no resources at the call either (tasks never come back), and one alive
        // now was alive then. `dead_or_dying` never reads /proc for the caller.
        for pid in [pid1, pid2] {
            if let Some(failure) = error::dead_or_dying(pid) {
                return Err(failure);
            }
            if pid1 == pid2 {
                break;
            }
        }
    }
    Ok(order)
}

/// The top rung for two fds: kcmp's answer, or `Ok(None)` when kcmp is unusable here
/// and the rungs below must decide.
pub fn same_file_by_kcmp(a: (Pid, Fd), b: (Pid, Fd)) -> Result<Option<bool>, Failure> {
    if !support::kcmp_usable() {
        return Ok(None);
    }
    match kcmp_checked(a.0, b.0, sys::KCMP_FILE, a.1, b.1) {
        Ok(order) => Ok(Some(order == KcmpOrder::Equal)),
        // Refused since the probe (a filter installed later): the rungs below decide.
        Err(Failure::Unavailable { .. }) => Ok(None),
        Err(other) => Err(other),
    }
}

/// Equality of two fds of this process without kcmp. `Ok(None)`: no rung can decide
/// the pair (on a kernel without F_DUPFD_QUERY: a file that refuses epoll, where the
/// lock test may not run).
pub fn same_local(a: Fd, b: Fd) -> Result<Option<bool>, Failure> {
    let me = sys::getpid();
    let ka = sys::fstat_key(a).map_err(|e| Failure::from_errno(e, me, Some(a), "fstat"))?;
    let kb = sys::fstat_key(b).map_err(|e| Failure::from_errno(e, me, Some(b), "fstat"))?;
    if ka != kb {
        return Ok(Some(false));
    }
    if a == b {
        return Ok(Some(true));
    }
    if support::dupfd_query_usable() {
        match sys::dupfd_query(a, b) {
            Ok(same) => return Ok(Some(same)),
            // Both passed fstat just now: an O_PATH fd that early 6.10 kernels refuse.
            Err(Errno(libc::EBADF)) => {}
            Err(_) => support::note_dupfd_query_refused(),
        }
    }
    // A description's access mode (and O_PATH) never changes: two modes, two
    // descriptions.
    let mode =
        |fd| sys::access_mode(fd).map_err(|e| Failure::from_errno(e, me, Some(fd), "F_GETFL"));
    if mode(a)? != mode(b)? {
        return Ok(Some(false));
    }
    let by_epoll = same_by_epoll(a, b).map_err(|e| {
        Failure::from_errno(
            e,
            me,
            Some(a),
            "opening scratch fds for the epoll equality test",
        )
    })?;
    if by_epoll.is_some() {
        return Ok(by_epoll);
    }
    ofd::same_by_lock(a, b)
        .map_err(|e| Failure::from_errno(e, me, Some(a), "the lock equality test"))
}

/// Mesa's test: an epoll set keys registrations by (description, fd number), so adding
/// the same number twice fails with EEXIST only when both refer to one description.
///
/// `a` itself is offered first: a file that refuses epoll is never dup'ed, since closing
/// the scratch copy would run the file's flush and drop every POSIX lock this process
/// holds on it (SQLite's, for one).
fn same_by_epoll(a: Fd, b: Fd) -> Result<Option<bool>, Errno> {
    let ep = sys::epoll_create()?;
    match sys::epoll_add(&ep, a) {
        Ok(()) => {}
        // Regular files and some devices refuse epoll (EPERM), O_PATH fds too (EBADF):
        // this rung cannot decide them.
        Err(Errno(libc::EPERM | libc::EBADF)) => return Ok(None),
        Err(e) => return Err(e),
    }
    let scratch = sys::dup_cloexec(a)?;
    sys::epoll_add(&ep, scratch.as_raw_fd())?;
    sys::dup3_onto(b, &scratch)?;
    match sys::epoll_add(&ep, scratch.as_raw_fd()) {
        Err(Errno(libc::EEXIST)) => Ok(Some(true)),
        // `b` refusing what `a` accepted: another kind of file, so another description.
        Ok(()) | Err(Errno(libc::EPERM | libc::EBADF)) => Ok(Some(false)),
        Err(e) => Err(e),
    }
}

/// A copy of another process's fd, held only as long as one comparison needs it.
pub fn copy_fd(pid: Pid, fd: Fd) -> Result<HeldFd, Failure> {
    let pidfd = sys::pidfd_open(pid, 0)
        .map_err(|e| Failure::from_errno(e, pid, None, &format!("pidfd_open of process {pid}")))?;
    sys::pidfd_getfd(&pidfd, fd).map_err(|e| match e {
        // No fd table left to copy from: the process is exiting or gone.
        Errno(libc::EBADF | libc::ESRCH) => error::dead_or_dying(pid)
            .unwrap_or_else(|| Failure::from_errno(e, pid, Some(fd), "pidfd_getfd")),
        _ => Failure::from_errno(
            e,
            pid,
            Some(fd),
            &format!("copying fd {fd} of process {pid} (pidfd_getfd)"),
        ),
    })
}

/// The failure naming the (pid, fd) pairs no rung of the ladder could decide.
pub fn undecided_failure(pairs: Vec<(Pid, Fd)>) -> Failure {
    match support::unavailable_failure() {
        Failure::Unavailable { errno, reason, .. } => Failure::Unavailable {
            errno,
            reason,
            undecided: pairs,
        },
        other => other,
    }
}

/// `KCMP_EPOLL_TFD`: whether `fd` of `pid1` is the file registered in epoll set `epfd`
/// of `pid2` under `tfd` (its `toff`-th registration). No rung below kcmp can tell.
pub fn same_epoll_target(
    pid1: Pid,
    fd: Fd,
    pid2: Pid,
    epfd: Fd,
    tfd: Fd,
    toff: i32,
) -> Result<bool, Failure> {
    support::require_kcmp()?;
    let slot = sys::EpollSlot {
        efd: epfd as u32,
        tfd: tfd as u32,
        toff: toff as u32,
    };
    match sys::kcmp_epoll_tfd(pid1, fd, pid2, &slot) {
        Ok(order) => Ok(order == KcmpOrder::Equal),
        Err(e) => {
            let failure = match e {
                sys::KcmpError::Errno(Errno(libc::ENOENT)) => Failure::Os {
                    errno: libc::ENOENT,
                    pid: Some(pid2),
                    fd: Some(epfd),
                    detail: format!(
                        "epoll fd {epfd} of process {pid2} has no registration {toff} of fd {tfd}"
                    ),
                },
                sys::KcmpError::Errno(Errno(libc::EINVAL)) => Failure::Os {
                    errno: libc::EINVAL,
                    pid: Some(pid2),
                    fd: Some(epfd),
                    detail: format!("fd {epfd} of process {pid2} is not an epoll fd"),
                },
                sys::KcmpError::Errno(Errno(libc::EBADF)) => {
                    // A zombie or exiting side has no fd table: never blame its fd.
                    if let Some(gone) =
                        error::dead_or_dying(pid1).or_else(|| error::dead_or_dying(pid2))
                    {
                        support::note_failure(&gone);
                        return Err(gone);
                    }
                    let bad_fd = sys::kcmp(pid1, pid1, sys::KCMP_FILE, fd, fd).is_err();
                    if bad_fd {
                        Failure::NotOpen { pid: pid1, fd }
                    } else {
                        Failure::NotOpen {
                            pid: pid2,
                            fd: epfd,
                        }
                    }
                }
                other => error::diagnose(pid1, pid2, sys::KCMP_VM, fd, epfd, other),
            };
            support::note_failure(&failure);
            Err(failure)
        }
    }
}
