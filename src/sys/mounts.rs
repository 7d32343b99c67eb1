//! Which mount a file is on: statx's mount id (`STATX_MNT_ID`, Linux 5.8+), an
//! O_PATH fd to a path (whose fdinfo `mnt_id` says it where statx does not), and one
//! file of each kind the kernel keeps on an internal mount (pipes, sockets, anon
//! inodes, memfds, pidfds, namespaces, inotify), whose mount ids no mountinfo lists.

use std::ffi::CStr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::{hold, Errno, HeldFd};

/// The mount id of `path` (its magic links followed), `None` where this kernel's
/// statx does not report one (`stx_mask` without `STATX_MNT_ID`).
pub fn statx_mnt_id(path: &CStr) -> Result<Option<u64>, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: `path` is NUL-terminated and `st` a writable buffer of the size of
    // struct statx; it is read only after the call succeeded.
    Errno::result(unsafe {
        libc::syscall(
            libc::SYS_statx,
            libc::AT_FDCWD,
            path.as_ptr(),
            0,
            libc::STATX_MNT_ID,
            st.as_mut_ptr(),
        )
    })?;
    // SAFETY: statx returned 0, so it filled the struct (zeroed before, whatever it
    // left out).
    let st = unsafe { st.assume_init() };
    Ok((st.stx_mask & libc::STATX_MNT_ID != 0).then_some(st.stx_mnt_id))
}

/// `open(path, O_PATH)`, following magic links: a handle on the file that reads
/// nothing of it.
pub fn open_path(path: &CStr) -> Result<HeldFd, Errno> {
    hold(|| {
        // SAFETY: `path` is NUL-terminated; the fd returned is owned by nobody else.
        let fd =
            Errno::result(unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) })?;
        // SAFETY: `fd` was just opened and is not shared.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    })
}

/// An fd `create` makes (or -1 and errno), held: made inside the record's section,
/// so a listing of our own table never sees it unrecorded.
fn held(create: impl FnOnce() -> RawFd) -> Result<HeldFd, Errno> {
    hold(|| {
        let fd = Errno::result(create())?;
        // SAFETY: the fd was just created by the kernel and is owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    })
}

/// One end of a pair `create` fills (both ends lie on the same internal mount); the
/// other end is closed before the record's section ends.
fn held_end(create: impl FnOnce(&mut [RawFd; 2]) -> libc::c_int) -> Result<HeldFd, Errno> {
    held(|| {
        let mut pair = [-1 as RawFd; 2];
        if create(&mut pair) != 0 {
            return -1;
        }
        // SAFETY: `pair[1]` was just created by the kernel and is owned by nobody else.
        drop(unsafe { OwnedFd::from_raw_fd(pair[1]) });
        pair[0]
    })
}

/// One fd of each kind of file this process can make that lives on a mount of the
/// kernel's own, never in a mountinfo: one end of a pipe and of a socket pair, an eventfd,
/// a memfd (and one of huge pages, and a secret one, where allowed), an inotify
/// instance, a pidfd of this process, its network namespace. A
/// kind this kernel or policy refuses is left out.
pub fn internal_mount_probes() -> Vec<HeldFd> {
    let mut fds = Vec::new();
    // SAFETY: `pair` is a writable array of two ints, read only on success.
    fds.extend(held_end(|pair| unsafe { libc::pipe2(pair.as_mut_ptr(), libc::O_CLOEXEC) }).ok());
    fds.extend(
        held_end(|pair| {
            // SAFETY: `pair` is a writable array of two ints, read only on success.
            unsafe {
                libc::socketpair(
                    libc::AF_UNIX,
                    libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                    0,
                    pair.as_mut_ptr(),
                )
            }
        })
        .ok(),
    );
    // SAFETY: integers only.
    fds.extend(held(|| unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) }).ok());
    // SAFETY: the name is a NUL-terminated literal.
    fds.extend(
        held(|| unsafe { libc::memfd_create(c"kcmp-rs-probe".as_ptr(), libc::MFD_CLOEXEC) }).ok(),
    );
    // SAFETY: the name is a NUL-terminated literal. Huge pages live on an internal
    // hugetlbfs mount of their own; refused where none is configured.
    fds.extend(
        held(|| unsafe {
            libc::memfd_create(
                c"kcmp-rs-probe".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_HUGETLB,
            )
        })
        .ok(),
    );
    // memfd_secret(2): 447 in the table every architecture shares since Linux 5.4;
    // refused unless the kernel was booted with secretmem enabled.
    // SAFETY: integers only.
    fds.extend(
        held(|| i32::try_from(unsafe { libc::syscall(447, libc::O_CLOEXEC) }).unwrap_or(-1)).ok(),
    );
    // SAFETY: integers only.
    fds.extend(held(|| unsafe { libc::inotify_init1(libc::IN_CLOEXEC) }).ok());
    fds.extend(super::pidfd_open(super::getpid(), 0).ok());
    fds.extend(open_path(c"/proc/self/ns/net").ok());
    fds
}
