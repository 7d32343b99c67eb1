//! This process's own fds: their identity (fstat), whether two share a description
//! (F_DUPFD_QUERY, the epoll and OFD lock tests' syscalls), duplicates, access mode,
//! filesystem, writes.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::{hold, Errno, Fd, HeldFd, Pid};

/// `fcntl` command of Linux 6.10+; absent from older libc crates.
const F_DUPFD_QUERY: libc::c_int = 1027;

/// The (st_dev, st_ino) identity of a file: equal for every fd sharing a description.
pub type FileKey = (u64, u64);

pub(super) fn stat_key(st: &libc::stat) -> FileKey {
    (st.st_dev, st.st_ino)
}

/// What a file is beyond its identity: its st_mode (type bits included) and, for a
/// device, its number (st_rdev): one pty's slave has one number in every path to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStat {
    pub key: FileKey,
    pub mode: u32,
    pub rdev: u64,
}

pub(super) fn stat_file(st: &libc::stat) -> FileStat {
    FileStat {
        key: stat_key(st),
        mode: st.st_mode,
        rdev: st.st_rdev,
    }
}

/// `fstat(fd)` of one of this process's fds, as a `FileStat`.
pub fn fstat_file(fd: Fd) -> Result<FileStat, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is a writable buffer of the right size; it is read only on success.
    Errno::result(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstat returned 0, so it filled the whole struct.
    Ok(stat_file(unsafe { &st.assume_init() }))
}

pub fn fstat_key(fd: Fd) -> Result<FileKey, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is a writable buffer of the right size; it is read only on success.
    Errno::result(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstat returned 0, so it filled the whole struct.
    Ok(stat_key(unsafe { &st.assume_init() }))
}

/// `fcntl(a, F_DUPFD_QUERY, b)`: do fds `a` and `b` of this process share a description?
pub fn dupfd_query(a: Fd, b: Fd) -> Result<bool, Errno> {
    // SAFETY: fcntl with an integer argument; no memory is passed.
    let r = Errno::result(unsafe { libc::fcntl(a, F_DUPFD_QUERY, b) })?;
    Ok(r == 1)
}

pub fn epoll_create() -> Result<HeldFd, Errno> {
    hold(|| {
        // SAFETY: integers only; returns a new fd or -1.
        let fd = Errno::result(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: the fd was just created and is owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    })
}

pub fn epoll_add(epfd: &HeldFd, fd: Fd) -> Result<(), Errno> {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: `ev` is a valid epoll_event for the duration of the call.
    Errno::result(unsafe {
        libc::epoll_ctl(epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &raw mut ev)
    })?;
    Ok(())
}

/// A close-on-exec duplicate of `fd` at the lowest free number.
pub fn dup_cloexec(fd: Fd) -> Result<HeldFd, Errno> {
    dup_cloexec_from(fd, 0)
}

/// A close-on-exec duplicate of `fd` at the lowest free number from `min` on.
pub fn dup_cloexec_from(fd: Fd, min: Fd) -> Result<HeldFd, Errno> {
    hold(|| {
        // SAFETY: integers only; returns a new fd or -1.
        let r = Errno::result(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) })?;
        // SAFETY: the fd was just created and is owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(r) })
    })
}

/// Makes `target` (an fd we own) refer to `src`'s description, close-on-exec.
pub fn dup3_onto(src: Fd, target: &HeldFd) -> Result<(), Errno> {
    // SAFETY: `target` is owned by the caller, so replacing what it refers to cannot
    // close anybody else's fd.
    Errno::result(unsafe { libc::dup3(src, target.as_raw_fd(), libc::O_CLOEXEC) })?;
    Ok(())
}

/// A byte-range lock as `F_OFD_GETLK` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeLock {
    /// `F_RDLCK` or `F_WRLCK`.
    pub kind: i32,
    pub start: i64,
    /// 0: to the end of any file.
    pub len: i64,
    /// -1 for an open file description lock.
    pub pid: Pid,
}

fn ofd_flock(fd: Fd, cmd: libc::c_int, kind: i32, at: i64) -> Result<libc::flock, Errno> {
    let mut fl = libc::flock {
        l_type: libc::c_short::try_from(kind).map_err(|_| Errno(libc::EINVAL))?,
        // SEEK_SET: `at` counts from the start of the file.
        l_whence: 0,
        l_start: at,
        l_len: 1,
        // The kernel refuses OFD requests whose pid is not 0.
        l_pid: 0,
    };
    // SAFETY: `fl` is a valid, writable `struct flock` for the whole call.
    Errno::result(unsafe { libc::fcntl(fd, cmd, &raw mut fl) })?;
    Ok(fl)
}

/// `F_OFD_GETLK` for a write lock on byte `at` through `fd`: the first lock that an
/// owner other than `fd`'s open file description holds there, if any.
pub fn ofd_lock_in_way(fd: Fd, at: i64) -> Result<Option<RangeLock>, Errno> {
    let fl = ofd_flock(fd, libc::F_OFD_GETLK, libc::F_WRLCK, at)?;
    if i32::from(fl.l_type) == libc::F_UNLCK {
        return Ok(None);
    }
    Ok(Some(RangeLock {
        kind: i32::from(fl.l_type),
        start: fl.l_start,
        len: fl.l_len,
        pid: fl.l_pid,
    }))
}

/// `F_OFD_SETLK` of `kind` (`F_RDLCK`, `F_WRLCK` or `F_UNLCK`) on byte `at`, never waiting:
/// the lock belongs to `fd`'s open file description.
pub fn ofd_set_lock(fd: Fd, kind: i32, at: i64) -> Result<(), Errno> {
    ofd_flock(fd, libc::F_OFD_SETLK, kind, at).map(|_| ())
}

/// The access mode of `fd`'s description: `O_RDONLY`, `O_WRONLY`, `O_RDWR`, or `O_PATH`.
pub fn access_mode(fd: Fd) -> Result<i32, Errno> {
    // SAFETY: fcntl with no argument; no memory is passed.
    let flags = Errno::result(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    if flags & libc::O_PATH != 0 {
        return Ok(libc::O_PATH);
    }
    Ok(flags & libc::O_ACCMODE)
}

/// The magic number of the filesystem `fd`'s file lives on (`statfs.f_type`).
pub fn fs_magic(fd: Fd) -> Result<u32, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `st` is a writable buffer of the right size; it is read only on success.
    Errno::result(unsafe { libc::fstatfs(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstatfs returned 0, so it filled the whole struct.
    let magic = unsafe { st.assume_init() }.f_type & 0xffff_ffff;
    // Magic numbers are 32-bit; the field's width and sign differ between libcs.
    u32::try_from(magic).map_err(|_| Errno(libc::EOVERFLOW))
}

/// Writes all of `buf` to `fd` (retrying after a signal and after a short write).
pub fn write_all(fd: RawFd, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        // SAFETY: `buf` is readable for its whole length; `fd` is only written to.
        match Errno::result(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) }) {
            Ok(n) => buf = buf.get(n.unsigned_abs()..).ok_or(Errno(libc::EIO))?,
            Err(Errno(libc::EINTR)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    #[test]
    fn dupfd_query_tells_dups_from_reopens() {
        let f = File::open("/proc/self/status").unwrap();
        let d = dup_cloexec(f.as_raw_fd()).unwrap();
        let g = File::open("/proc/self/status").unwrap();
        match dupfd_query(f.as_raw_fd(), d.as_raw_fd()) {
            Ok(same) => {
                assert!(same);
                assert_eq!(dupfd_query(f.as_raw_fd(), g.as_raw_fd()), Ok(false));
            }
            Err(e) => assert_eq!(e, Errno(libc::EINVAL), "only a pre-6.10 kernel may refuse"),
        }
    }

    #[test]
    fn epoll_trick_tells_pipe_ends_apart() {
        let mut p = [0; 2];
        // SAFETY: test-only pipe creation into a two-int array.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both fds were just created and are owned here.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
        let ep = epoll_create().unwrap();
        let scratch = dup_cloexec(r.as_raw_fd()).unwrap();
        epoll_add(&ep, scratch.as_raw_fd()).unwrap();
        dup3_onto(w.as_raw_fd(), &scratch).unwrap();
        assert_eq!(
            epoll_add(&ep, scratch.as_raw_fd()),
            Ok(()),
            "different descriptions"
        );
        let ep2 = epoll_create().unwrap();
        let scratch2 = dup_cloexec(r.as_raw_fd()).unwrap();
        epoll_add(&ep2, scratch2.as_raw_fd()).unwrap();
        dup3_onto(r.as_raw_fd(), &scratch2).unwrap();
        assert_eq!(
            epoll_add(&ep2, scratch2.as_raw_fd()),
            Err(Errno(libc::EEXIST))
        );
    }
}
