//! kcmp(2) itself: the resource kinds, the order it answers, and the one caller of
//! the pointer-taking `KCMP_EPOLL_TFD`.

use super::{Errno, Fd, Pid};

/// The resource kinds of `include/uapi/linux/kcmp.h`.
pub const KCMP_FILE: i32 = 0;
pub const KCMP_VM: i32 = 1;
pub const KCMP_FILES: i32 = 2;
pub const KCMP_FS: i32 = 3;
pub const KCMP_SIGHAND: i32 = 4;
pub const KCMP_IO: i32 = 5;
pub const KCMP_SYSVSEM: i32 = 6;
pub const KCMP_EPOLL_TFD: i32 = 7;
pub const KCMP_TYPES: i32 = 8;

/// What kcmp answers: the kernel's order of two objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KcmpOrder {
    Equal = 0,
    Less = 1,
    Greater = 2,
    Unordered = 3,
}

/// The kernel returned a value outside 0..=3: never passed through as an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KcmpError {
    Errno(Errno),
    Unexpected(i64),
}

fn to_order(r: i64) -> Result<KcmpOrder, KcmpError> {
    match r {
        0 => Ok(KcmpOrder::Equal),
        1 => Ok(KcmpOrder::Less),
        2 => Ok(KcmpOrder::Greater),
        3 => Ok(KcmpOrder::Unordered),
        other => Err(KcmpError::Unexpected(other)),
    }
}

/// `kcmp(pid1, pid2, ty, idx1, idx2)`. Fds are `i32` (validated non-negative by the
/// callers) because the kernel truncates the index to 32 bits: a wider type would let
/// `2**32 + 3` alias fd 3.
pub fn kcmp(pid1: Pid, pid2: Pid, ty: i32, idx1: Fd, idx2: Fd) -> Result<KcmpOrder, KcmpError> {
    // KCMP_EPOLL_TFD reads idx2 as a pointer: refused here so an integer is never read
    // as an address.
    if ty == KCMP_EPOLL_TFD {
        return Err(KcmpError::Errno(Errno(libc::EINVAL)));
    }
    // SAFETY: every other type takes integers only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            libc::c_long::from(pid1),
            libc::c_long::from(pid2),
            libc::c_long::from(ty),
            idx1 as libc::c_ulong,
            idx2 as libc::c_ulong,
        )
    };
    to_order(Errno::result(r).map_err(KcmpError::Errno)?)
}

/// `struct kcmp_epoll_slot`: three u32, 12 bytes (the man page's u64 `toff` is wrong).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EpollSlot {
    pub efd: u32,
    pub tfd: u32,
    pub toff: u32,
}

/// `KCMP_EPOLL_TFD`: is `fd` of `pid1` the file registered in epoll set `slot.efd` of
/// `pid2` under `slot.tfd` (its `slot.toff`-th registration)?
pub fn kcmp_epoll_tfd(
    pid1: Pid,
    fd: Fd,
    pid2: Pid,
    slot: &EpollSlot,
) -> Result<KcmpOrder, KcmpError> {
    // SAFETY: the kernel reads 12 bytes from `slot`, a live, properly laid out
    // `#[repr(C)]` struct borrowed for the whole call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            libc::c_long::from(pid1),
            libc::c_long::from(pid2),
            libc::c_long::from(KCMP_EPOLL_TFD),
            fd as libc::c_ulong,
            std::ptr::from_ref::<EpollSlot>(slot) as libc::c_ulong,
        )
    };
    to_order(Errno::result(r).map_err(KcmpError::Errno)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{dup_cloexec, epoll_add, epoll_create, getpid};
    use std::fs::File;
    use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

    fn me() -> Pid {
        getpid()
    }

    #[test]
    fn dup_is_equal_and_reopen_is_not() {
        let f = File::open("/proc/self/status").unwrap();
        let fd = f.as_raw_fd();
        let d = dup_cloexec(fd).unwrap();
        let other = File::open("/proc/self/status").unwrap();
        assert_eq!(
            kcmp(me(), me(), KCMP_FILE, fd, d.as_raw_fd()),
            Ok(KcmpOrder::Equal)
        );
        let o = kcmp(me(), me(), KCMP_FILE, fd, other.as_raw_fd()).unwrap();
        assert!(o == KcmpOrder::Less || o == KcmpOrder::Greater);
        let back = kcmp(me(), me(), KCMP_FILE, other.as_raw_fd(), fd).unwrap();
        assert_ne!(o, back, "the order must be antisymmetric");
    }

    #[test]
    fn task_types_equal_to_self() {
        for ty in [
            KCMP_VM,
            KCMP_FILES,
            KCMP_FS,
            KCMP_SIGHAND,
            KCMP_IO,
            KCMP_SYSVSEM,
        ] {
            assert_eq!(
                kcmp(me(), me(), ty, 0, 0),
                Ok(KcmpOrder::Equal),
                "type {ty}"
            );
        }
    }

    #[test]
    fn errors_come_back_as_errno() {
        assert_eq!(
            kcmp(me(), me(), KCMP_TYPES, 0, 0),
            Err(KcmpError::Errno(Errno(libc::EINVAL)))
        );
        assert_eq!(
            kcmp(me(), me(), KCMP_FILE, 1 << 30, 0),
            Err(KcmpError::Errno(Errno(libc::EBADF)))
        );
        assert_eq!(
            kcmp(0, me(), KCMP_VM, 0, 0),
            Err(KcmpError::Errno(Errno(libc::ESRCH)))
        );
        // The pointer-taking type is never issued with an integer in place of a slot.
        assert_eq!(
            kcmp(me(), me(), KCMP_EPOLL_TFD, 0, 0),
            Err(KcmpError::Errno(Errno(libc::EINVAL)))
        );
    }

    #[test]
    fn epoll_slot_is_twelve_bytes_and_finds_closed_target() {
        assert_eq!(std::mem::size_of::<EpollSlot>(), 12);
        let ep = epoll_create().unwrap();
        let f = File::open("/proc/self/status").unwrap();
        let (r, w) = {
            let mut p = [0; 2];
            // SAFETY: test-only pipe creation into a two-int array.
            assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
            // SAFETY: both fds were just created and are owned here.
            unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) }
        };
        let keep = dup_cloexec(r.as_raw_fd()).unwrap();
        epoll_add(&ep, r.as_raw_fd()).unwrap();
        let tfd = r.into_raw_fd();
        // SAFETY: test-only close of an fd this test owns.
        unsafe { libc::close(tfd) };
        let slot = EpollSlot {
            efd: ep.as_raw_fd() as u32,
            tfd: tfd as u32,
            toff: 0,
        };
        assert_eq!(
            kcmp_epoll_tfd(me(), keep.as_raw_fd(), me(), &slot),
            Ok(KcmpOrder::Equal)
        );
        let missing = EpollSlot {
            efd: ep.as_raw_fd() as u32,
            tfd: w.as_raw_fd() as u32,
            toff: 0,
        };
        assert_eq!(
            kcmp_epoll_tfd(me(), keep.as_raw_fd(), me(), &missing),
            Err(KcmpError::Errno(Errno(libc::ENOENT)))
        );
        let not_epoll = EpollSlot {
            efd: f.as_raw_fd() as u32,
            tfd: 0,
            toff: 0,
        };
        assert_eq!(
            kcmp_epoll_tfd(me(), keep.as_raw_fd(), me(), &not_epoll),
            Err(KcmpError::Errno(Errno(libc::EINVAL)))
        );
    }
}
