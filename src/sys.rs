//! The syscall boundary: kcmp(2) and the few neighbours the rest of the crate needs.
//!
//! This room is the only one allowed `unsafe` (the crate root denies it everywhere
//! else). It must never import PyO3 or any other module of this crate: it knows the
//! kernel and nothing above it, so `cargo test` exercises it without Python.
//!
//! # Safety
//!
//! Every function here is safe to call with any argument values. The contract each
//! `unsafe` block upholds, stated in its `// SAFETY:` line:
//! * pointers handed to the kernel point to live, writable (where written), properly
//!   sized and laid out buffers, borrowed for the whole call;
//! * a struct the kernel fills is read only after the call reported success;
//! * an fd the kernel just created is wrapped in an `OwnedFd` exactly once, inside
//!   [`hold`] (which records it as the crate's until it is closed: `held.rs`), and an
//!   fd is only replaced or closed through a [`HeldFd`] this crate owns, never a
//!   caller's;
//! * `KCMP_EPOLL_TFD`, whose second index is a pointer, is only issued by
//!   [`kcmp_epoll_tfd`] with a real slot, never with an integer in its place.
//!
//! Failures come back as [`Errno`] through [`Errno::result`], the one place that turns
//! a `-1` return into the thread's errno.
#![allow(unsafe_code)]

mod held;

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub use held::{hold, list_own, HeldFd};

pub type Pid = i32;
pub type Fd = i32;

/// A raw errno value from a failed syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// The calling thread's errno, as left by the libc call that just failed.
    fn last() -> Self {
        Errno(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        )
    }

    /// A libc or `syscall()` return value, or the errno it left when it returned `-1`
    /// (nix's `Errno::result`): the one check every wrapper below goes through.
    pub fn result<T: Sentinel>(ret: T) -> Result<T, Errno> {
        if ret == T::FAILED {
            Err(Errno::last())
        } else {
            Ok(ret)
        }
    }
}

/// Return types whose `-1` means "failed, see errno": `int` and `ssize_t`/`long`.
pub trait Sentinel: Copy + PartialEq {
    /// The value that signals failure.
    const FAILED: Self;
}

impl Sentinel for i32 {
    const FAILED: Self = -1;
}

impl Sentinel for i64 {
    const FAILED: Self = -1;
}

impl Sentinel for isize {
    const FAILED: Self = -1;
}

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

/// `fcntl` command of Linux 6.10+; absent from older libc crates.
const F_DUPFD_QUERY: libc::c_int = 1027;
/// `pidfd_open` flag of Linux 6.9+ accepting a thread id.
pub const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;

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

pub fn getpid() -> Pid {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() }
}

/// The calling thread's id (through the syscall: older glibcs have no `gettid`).
pub fn gettid() -> Pid {
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    Pid::try_from(tid).unwrap_or(0)
}

/// The (st_dev, st_ino) identity of a file: equal for every fd sharing a description.
pub type FileKey = (u64, u64);

fn stat_key(st: &libc::stat) -> FileKey {
    (st.st_dev, st.st_ino)
}

pub fn fstat_key(fd: Fd) -> Result<FileKey, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is a writable buffer of the right size; it is read only on success.
    Errno::result(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstat returned 0, so it filled the whole struct.
    Ok(stat_key(unsafe { &st.assume_init() }))
}

/// `fstatat(dir, name)`, following the /proc magic link to the file itself.
pub fn fstatat_key(dir: RawFd, name: &CStr) -> Result<FileKey, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `name` is NUL-terminated and `st` a writable buffer of the right size.
    Errno::result(unsafe { libc::fstatat(dir, name.as_ptr(), st.as_mut_ptr(), 0) })?;
    // SAFETY: fstatat returned 0, so it filled the whole struct.
    Ok(stat_key(unsafe { &st.assume_init() }))
}

/// The st_mode of `fstatat(dir, name)`: of the /proc magic link itself with
/// `follow == false` (its permission bits give the fd's open mode), else of the file.
pub fn fstatat_mode(dir: RawFd, name: &CStr, follow: bool) -> Result<u32, Errno> {
    let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `name` is NUL-terminated and `st` a writable buffer of the right size.
    Errno::result(unsafe { libc::fstatat(dir, name.as_ptr(), st.as_mut_ptr(), flags) })?;
    // SAFETY: fstatat returned 0, so it filled the whole struct.
    Ok(unsafe { st.assume_init() }.st_mode)
}

/// Opens a directory (close-on-exec) and returns it as an owned fd.
pub fn open_dir(path: &CStr) -> Result<HeldFd, Errno> {
    hold(|| {
        // SAFETY: `path` is NUL-terminated; the fd returned is owned by nobody else.
        let fd = Errno::result(unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: `fd` was just opened and is not shared.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    })
}

/// Moves an open directory's read position back to its start, for another listing.
pub fn rewind_dir(dir: &HeldFd) -> Result<(), Errno> {
    // SAFETY: integers only; the fd is the crate's own.
    Errno::result(unsafe { libc::lseek(dir.as_raw_fd(), 0, libc::SEEK_SET) })?;
    Ok(())
}

/// Reads `readlink(dir/name)` into bytes (a /proc/PID/fd/N target).
pub fn readlinkat(dir: RawFd, name: &CStr) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: `buf` is writable for `buf.len()` bytes and `name` NUL-terminated.
        let n = Errno::result(unsafe {
            libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        })?;
        // Not -1, so a length of at most `buf.len()`.
        let n = n.unsigned_abs();
        if n < buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        if buf.len() >= 1 << 16 {
            return Err(Errno(libc::ENAMETOOLONG));
        }
        let grown = buf.len() * 4;
        buf.resize(grown, 0);
    }
}

/// The names in a directory, read with getdents64 (no libc `DIR` allocation, no hidden
/// fd), without "." and "..".
pub fn read_dir_names(dir: &HeldFd) -> Result<Vec<Vec<u8>>, Errno> {
    let mut names = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        // SAFETY: `buf` is writable for `buf.len()` bytes; the kernel writes at most that.
        let n = Errno::result(unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        })?;
        if n == 0 {
            return Ok(names);
        }
        let filled = buf.get(..n as usize).ok_or(Errno(libc::EIO))?;
        let mut off = 0usize;
        // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
        while off + 19 <= filled.len() {
            let reclen = u16::from_ne_bytes([filled[off + 16], filled[off + 17]]) as usize;
            if reclen == 0 || off + reclen > filled.len() {
                return Err(Errno(libc::EIO));
            }
            let name_area = &filled[off + 19..off + reclen];
            let len = name_area
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(name_area.len());
            let name = &name_area[..len];
            if name != b"." && name != b".." {
                names.push(name.to_vec());
            }
            off += reclen;
        }
    }
}

/// The fds listed in an open `/proc/PID/fd` directory, ascending; when the table is
/// this process's own (`own`), without any fd the crate holds in any thread.
pub fn list_table(dir: &HeldFd, own: bool) -> Result<Vec<Fd>, Errno> {
    if own {
        list_own(dir, |d| {
            rewind_dir(d)?;
            list_fds(d)
        })
    } else {
        list_fds(dir)
    }
}

/// The numeric names in an open /proc directory, ascending: the fds of
/// `/proc/PID/fd`, the pids of `/proc`, the thread ids of `/proc/PID/task`.
pub fn list_fds(dir: &HeldFd) -> Result<Vec<Fd>, Errno> {
    let mut fds: Vec<Fd> = read_dir_names(dir)?
        .iter()
        .filter_map(|n| std::str::from_utf8(n).ok()?.parse::<Fd>().ok())
        .collect();
    fds.sort_unstable();
    Ok(fds)
}

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
    hold(|| {
        // SAFETY: integers only; returns a new fd or -1.
        let r = Errno::result(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
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

/// Reads a small /proc file whole (a few syscalls; the fd is closed before returning).
pub fn read_small_file(path: &CStr) -> Result<Vec<u8>, Errno> {
    let file = hold(|| {
        // SAFETY: `path` is NUL-terminated; the fd returned is owned only by `file`.
        let fd =
            Errno::result(unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
        // SAFETY: `fd` was just opened and is not shared.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    })?;
    let mut out = Vec::with_capacity(512);
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: `buf` is writable for its whole length.
        let n = Errno::result(unsafe {
            libc::read(file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
        })?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(buf.get(..n.unsigned_abs()).ok_or(Errno(libc::EIO))?);
        if out.len() > 1 << 20 {
            return Err(Errno(libc::EFBIG));
        }
    }
}

/// `PF_KTHREAD` (include/linux/sched.h): the task is a kernel thread.
pub const PF_KTHREAD: u64 = 0x0020_0000;

/// `PF_EXITING` (include/linux/sched.h): set when a task starts exiting, before its
/// fd table, address space and fs are released.
pub const PF_EXITING: u64 = 0x4;

/// What /proc/PID/stat says about a task's life: read at once, so the three agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 22, clock ticks since boot: a pid that still shows it was not reused.
    pub start_time: u64,
    /// Field 3: `R`, `S`, ..., `Z` (zombie), `X` (dead).
    pub state: u8,
    /// Field 9, the kernel's `PF_*` flags.
    pub flags: u64,
    /// Field 4, the parent's pid.
    pub ppid: Pid,
}

impl ProcStat {
    /// Exited, awaiting reaping: the pid stays, the resources kcmp compares are gone.
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, b'Z' | b'X')
    }

    /// Exiting: what kcmp compares is being released, or already is.
    pub fn is_exiting(&self) -> bool {
        self.flags & PF_EXITING != 0
    }

    /// A kernel thread: it has no address space, so kcmp compares NULL pointers.
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }
}

/// Reads /proc/PID/stat once (ENOENT when the pid does not exist).
pub fn proc_stat(pid: Pid) -> Result<ProcStat, Errno> {
    let path =
        std::ffi::CString::new(format!("/proc/{pid}/stat")).map_err(|_| Errno(libc::EINVAL))?;
    parse_proc_stat(&read_small_file(&path)?)
}

/// The fields of a /proc/PID/stat text (EIO for one that does not parse).
pub fn parse_proc_stat(text: &[u8]) -> Result<ProcStat, Errno> {
    // The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
    let close = text
        .iter()
        .rposition(|&b| b == b')')
        .ok_or(Errno(libc::EIO))?;
    let rest = std::str::from_utf8(&text[close + 1..]).map_err(|_| Errno(libc::EIO))?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |i: usize| -> Result<u64, Errno> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or(Errno(libc::EIO))
    };
    let state = fields
        .first()
        .and_then(|f| f.bytes().next())
        .ok_or(Errno(libc::EIO))?;
    Ok(ProcStat {
        start_time: field(19)?,
        state,
        flags: field(6)?,
        ppid: fields
            .get(1)
            .and_then(|f| f.parse().ok())
            .ok_or(Errno(libc::EIO))?,
    })
}

/// A task's start time (field 22 of /proc/PID/stat).
pub fn start_time(pid: Pid) -> Result<u64, Errno> {
    proc_stat(pid).map(|s| s.start_time)
}

/// Whether `pid` has exited and awaits reaping (state Z or X in /proc/PID/stat): such
/// a task keeps its pid but no longer has an address space, fd table and so on, and
/// kcmp compares those absent objects as equal.
pub fn is_zombie(pid: Pid) -> bool {
    proc_stat(pid).is_ok_and(|s| s.is_zombie())
}

/// How many CPUs this thread may run on (sched_getaffinity), at least 1. Unlike
/// `std::thread::available_parallelism`, it opens no file (that one reads cgroup
/// files, fds a listing of our own table would see).
pub fn usable_cpus() -> usize {
    // SAFETY: `cpu_set_t` is plain data, valid when zeroed.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a writable cpu_set_t of the size passed.
    let r =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw mut set) };
    if r != 0 {
        return 1;
    }
    // SAFETY: `set` was filled by the successful call above.
    let n = unsafe { libc::CPU_COUNT(&set) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// Whether `pid` is a kernel thread, which has no address space: kcmp compares two
/// of them as one NULL. Never the caller.
pub fn without_address_space(pid: Pid) -> bool {
    pid != getpid() && proc_stat(pid).is_ok_and(|s| s.is_kernel_thread())
}

/// The soft RLIMIT_NOFILE of this process.
pub fn soft_fd_limit() -> Option<usize> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    Errno::result(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) }).ok()?;
    Some(usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX))
}

/// Runs `f` in the child after every fork() of this process (including Python's os.fork).
pub fn atfork_child(f: extern "C" fn()) {
    // SAFETY: registers a plain function pointer that lives for the whole program; the
    // handler only stores to atomics, which is async-signal-safe.
    unsafe {
        libc::pthread_atfork(None, None, Some(f));
    }
}

#[cfg(test)]
pub mod testing;

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::fs::File;
    use std::os::fd::IntoRawFd;

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

    #[test]
    fn stat_keys_match_for_dups() {
        let f = File::open("/proc/self/status").unwrap();
        let d = dup_cloexec(f.as_raw_fd()).unwrap();
        assert_eq!(fstat_key(f.as_raw_fd()), fstat_key(d.as_raw_fd()));
        let dir = open_dir(&CString::new("/proc/self/fd").unwrap()).unwrap();
        let name = CString::new(f.as_raw_fd().to_string()).unwrap();
        assert_eq!(
            fstatat_key(dir.as_raw_fd(), &name),
            fstat_key(f.as_raw_fd())
        );
        assert_eq!(fstat_key(-1), Err(Errno(libc::EBADF)));
    }

    #[test]
    fn list_fds_sees_open_fds() {
        let f = File::open("/proc/self/status").unwrap();
        let dir = open_dir(&CString::new("/proc/self/fd").unwrap()).unwrap();
        let fds = list_fds(&dir).unwrap();
        assert!(fds.contains(&f.as_raw_fd()));
        assert!(fds.contains(&dir.as_raw_fd()));
        assert!(fds.windows(2).all(|w| w[0] < w[1]));
        let link = readlinkat(
            dir.as_raw_fd(),
            &CString::new(f.as_raw_fd().to_string()).unwrap(),
        );
        assert!(link.unwrap().ends_with(b"/status"));
    }

    #[test]
    fn dupfd_query_and_pidfd() {
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
        let pidfd = pidfd_open(me(), 0).unwrap();
        assert_eq!(pidfd_alive(&pidfd), Ok(true));
        let copy = pidfd_getfd(&pidfd, f.as_raw_fd()).unwrap();
        assert_eq!(
            kcmp(me(), me(), KCMP_FILE, f.as_raw_fd(), copy.as_raw_fd()),
            Ok(KcmpOrder::Equal)
        );
    }

    #[test]
    fn zombies_are_told_apart() {
        assert!(!is_zombie(me()));
        // SAFETY: test-only fork; the child exits at once without touching Rust state.
        let child = unsafe { libc::fork() };
        if child == 0 {
            // SAFETY: immediate exit of the forked child.
            unsafe { libc::_exit(0) };
        }
        let mut waited = false;
        for _ in 0..1000 {
            if is_zombie(child) {
                waited = true;
                break;
            }
            std::thread::yield_now();
        }
        let mut status = 0;
        // SAFETY: reaps the child this test forked.
        unsafe { libc::waitpid(child, &raw mut status, 0) };
        assert!(waited, "the unreaped child should show as a zombie");
        assert!(!is_zombie(child));
    }

    #[test]
    fn kernel_threads_are_told_by_their_flags() {
        // kthreadd's line on a 6.x kernel (flags 0x208040: PF_KTHREAD among them).
        let kthread = b"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 3 0 0 20 0 1 0 9 0 0 \
                        18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 0 0 0 0 0 0 0 0\n";
        let stat = parse_proc_stat(kthread).unwrap();
        assert!(stat.is_kernel_thread());
        assert_eq!((stat.state, stat.start_time), (b'S', 9));
        let mine = proc_stat(getpid()).unwrap();
        assert!(!mine.is_kernel_thread() && !mine.is_zombie());
        assert_eq!(parse_proc_stat(b"2 (x"), Err(Errno(libc::EIO)));
    }

    #[test]
    fn start_time_is_stable_and_missing_pid_fails() {
        let a = start_time(me()).unwrap();
        assert!(a > 0);
        assert_eq!(start_time(me()), Ok(a));
        assert_eq!(start_time(i32::MAX), Err(Errno(libc::ENOENT)));
        let s = proc_stat(me()).unwrap();
        assert!(!s.is_zombie() && !s.is_exiting(), "{s:?}");
        assert_eq!(s.start_time, a);
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
