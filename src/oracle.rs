//! Real answers from the kernel: single comparisons with their fallback ladder, and the
//! oracles the grouping engine asks.
//!
//! The ladder, each rung exact: kcmp; for fds of this process, fstat buckets then
//! F_DUPFD_QUERY or the epoll EEXIST test; for another process's fds, a pidfd_getfd
//! copy (only when the caller opts in, since closing the copy runs the file's flush)
//! then the same-process rung. Where nothing can decide: KcmpUnavailableError.

use std::os::fd::{AsRawFd, OwnedFd};

use crate::fault::{self, Failure};
use crate::support;
use crate::sys::{self, Errno, Fd, KcmpOrder, Pid};

fn os_failure(errno: Errno, pid: Pid, fd: Option<Fd>, doing: &str) -> Failure {
    match errno.0 {
        libc::EBADF => match fd {
            Some(fd) => Failure::NotOpen { pid, fd },
            None => Failure::Os { errno: errno.0, pid: Some(pid), fd, detail: doing.to_string() },
        },
        libc::ESRCH => Failure::NoProcess { pid },
        libc::EPERM | libc::EACCES => Failure::Denied { pid },
        e => Failure::Os { errno: e, pid: Some(pid), fd, detail: doing.to_string() },
    }
}

/// Equality of two fds of this process without kcmp. `Ok(None)`: this rung cannot
/// decide the pair (a file that refuses epoll, on a kernel without F_DUPFD_QUERY).
pub fn same_local(a: Fd, b: Fd) -> Result<Option<bool>, Failure> {
    let me = sys::getpid();
    let ka = sys::fstat_key(a).map_err(|e| os_failure(e, me, Some(a), "fstat"))?;
    let kb = sys::fstat_key(b).map_err(|e| os_failure(e, me, Some(b), "fstat"))?;
    if ka != kb {
        return Ok(Some(false));
    }
    if a == b {
        return Ok(Some(true));
    }
    if support::dupfd_query_usable() {
        return sys::dupfd_query(a, b)
            .map(Some)
            .map_err(|e| os_failure(e, me, Some(a), "fcntl(F_DUPFD_QUERY)"));
    }
    same_by_epoll(a, b).map_err(|e| os_failure(e, me, Some(a), "the epoll equality test"))
}

/// Mesa's test: an epoll set keys registrations by (description, fd number), so adding
/// the same number twice fails with EEXIST only when both refer to one description.
fn same_by_epoll(a: Fd, b: Fd) -> Result<Option<bool>, Errno> {
    let ep = sys::epoll_create()?;
    let scratch = sys::dup_cloexec(a)?;
    match sys::epoll_add(&ep, scratch.as_raw_fd()) {
        Ok(()) => {}
        // Regular files and some devices refuse epoll: this rung cannot decide them.
        Err(Errno(libc::EPERM)) => return Ok(None),
        Err(e) => return Err(e),
    }
    sys::dup3_onto(b, &scratch)?;
    match sys::epoll_add(&ep, scratch.as_raw_fd()) {
        Err(Errno(libc::EEXIST)) => Ok(Some(true)),
        Ok(()) | Err(Errno(libc::EPERM)) => Ok(Some(false)),
        Err(e) => Err(e),
    }
}

/// A copy of another process's fd, held only as long as one comparison needs it.
fn copy_fd(pid: Pid, fd: Fd) -> Result<OwnedFd, Failure> {
    let pidfd = sys::pidfd_open(pid, 0).map_err(|e| os_failure(e, pid, None, "pidfd_open"))?;
    sys::pidfd_getfd(&pidfd, fd).map_err(|e| os_failure(e, pid, Some(fd), "pidfd_getfd"))
}

fn undecided(pairs: Vec<(Pid, Fd)>) -> Failure {
    match support::unavailable_failure() {
        Failure::Unavailable { errno, reason, .. } => {
            Failure::Unavailable { errno, reason, undecided: pairs }
        }
        other => other,
    }
}

/// Equality without kcmp, for any two (pid, fd): the fallback ladder.
pub fn same_without_kcmp(
    a: (Pid, Fd),
    b: (Pid, Fd),
    allow_pidfd_getfd: bool,
) -> Result<bool, Failure> {
    let me = sys::getpid();
    let mut held = Vec::new();
    let mut local = |(pid, fd): (Pid, Fd)| -> Result<Fd, Failure> {
        if pid == me {
            return Ok(fd);
        }
        if !allow_pidfd_getfd {
            return Err(undecided(vec![(pid, fd)]));
        }
        let copy = copy_fd(pid, fd)?;
        let raw = copy.as_raw_fd();
        held.push(copy);
        Ok(raw)
    };
    let la = local(a)?;
    let lb = local(b)?;
    let answer = same_local(la, lb);
    drop(held);
    match answer? {
        Some(same) => Ok(same),
        None => Err(undecided(vec![a, b])),
    }
}

pub fn same_file(a: (Pid, Fd), b: (Pid, Fd), allow_pidfd_getfd: bool) -> Result<bool, Failure> {
    if support::kcmp_usable() {
        match sys::kcmp(a.0, b.0, sys::KCMP_FILE, a.1, b.1) {
            Ok(order) => return Ok(order == KcmpOrder::Equal),
            Err(e) => {
                let failure = fault::diagnose(a.0, b.0, sys::KCMP_FILE, a.1, b.1, e);
                support::note_failure(&failure);
                if !matches!(failure, Failure::Unavailable { .. }) {
                    return Err(failure);
                }
            }
        }
    }
    same_without_kcmp(a, b, allow_pidfd_getfd)
}

pub fn same_epoll_target(
    pid1: Pid,
    fd: Fd,
    pid2: Pid,
    epfd: Fd,
    tfd: Fd,
    toff: i32,
) -> Result<bool, Failure> {
    support::require_kcmp()?;
    let slot = sys::EpollSlot { efd: epfd as u32, tfd: tfd as u32, toff: toff as u32 };
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
                    let bad_fd = sys::kcmp(pid1, pid1, sys::KCMP_FILE, fd, fd).is_err();
                    if bad_fd {
                        Failure::NotOpen { pid: pid1, fd }
                    } else {
                        Failure::NotOpen { pid: pid2, fd: epfd }
                    }
                }
                other => fault::diagnose(pid1, pid2, sys::KCMP_VM, fd, epfd, other),
            };
            support::note_failure(&failure);
            Err(failure)
        }
    }
}
