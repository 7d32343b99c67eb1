//! Pidfds: a process pinned against pid reuse, asked whether it still runs, and the
//! fds copied out of it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::{hold, Errno, Fd, HeldFd, Pid};

/// `pidfd_open` flag of Linux 6.9+ accepting a thread id.
pub const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;

pub fn pidfd_open(pid: Pid, flags: libc::c_uint) -> Result<HeldFd, Errno> {
    hold(|| {
        // SAFETY: pidfd_open takes integers only and returns a new fd or -1.
        let fd = Errno::result(unsafe {
            libc::syscall(libc::SYS_pidfd_open, libc::c_long::from(pid), flags)
        })?;
        // SAFETY: the fd was just created by the kernel and is owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    })
}

/// Whether the process behind a pidfd is still running (signal 0 is a liveness probe).
pub fn pidfd_alive(pidfd: &HeldFd) -> Result<bool, Errno> {
    // SAFETY: signal 0 delivers nothing; null siginfo is allowed; the fd is live.
    let r = Errno::result(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0 as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    });
    match r {
        // EPERM: the process lives but we may not signal it, so it is still alive.
        Ok(_) | Err(Errno(libc::EPERM)) => Ok(true),
        Err(Errno(libc::ESRCH)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Copies fd `fd` of the process behind `pidfd` into this process (close-on-exec).
pub fn pidfd_getfd(pidfd: &HeldFd, fd: Fd) -> Result<HeldFd, Errno> {
    hold(|| {
        // SAFETY: integers only; the kernel returns a new fd or -1.
        let r = Errno::result(unsafe {
            libc::syscall(
                libc::SYS_pidfd_getfd,
                pidfd.as_raw_fd(),
                libc::c_long::from(fd),
                0 as libc::c_uint,
            )
        })?;
        // SAFETY: the fd was just created by the kernel and is owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{getpid, kcmp, KcmpOrder, KCMP_FILE};
    use std::fs::File;

    #[test]
    fn pidfd_getfd_copies_the_description() {
        let f = File::open("/proc/self/status").unwrap();
        let me = getpid();
        let pidfd = pidfd_open(me, 0).unwrap();
        assert_eq!(pidfd_alive(&pidfd), Ok(true));
        let copy = pidfd_getfd(&pidfd, f.as_raw_fd()).unwrap();
        assert_eq!(
            kcmp(me, me, KCMP_FILE, f.as_raw_fd(), copy.as_raw_fd()),
            Ok(KcmpOrder::Equal)
        );
    }
}
