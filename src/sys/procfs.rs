//! /proc: directories listed with getdents64, fd links read and stat'ed through
//! them, small files read whole, and /proc/PID/stat parsed into what it says of a
//! task's life.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::files::{stat_file, stat_key};
use super::{getpid, hold, list_own, Errno, Fd, FileKey, FileStat, HeldFd, Pid};

/// `fstatat(dir, name)`, following the /proc magic link to the file itself.
pub fn fstatat_key(dir: RawFd, name: &CStr) -> Result<FileKey, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `name` is NUL-terminated and `st` a writable buffer of the right size.
    Errno::result(unsafe { libc::fstatat(dir, name.as_ptr(), st.as_mut_ptr(), 0) })?;
    // SAFETY: fstatat returned 0, so it filled the whole struct.
    Ok(stat_key(unsafe { &st.assume_init() }))
}

/// `fstatat(dir, name)`, following links, as a `FileStat`.
pub fn fstatat_file(dir: RawFd, name: &CStr) -> Result<FileStat, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `name` is NUL-terminated and `st` a writable buffer of the right size.
    Errno::result(unsafe { libc::fstatat(dir, name.as_ptr(), st.as_mut_ptr(), 0) })?;
    // SAFETY: fstatat returned 0, so it filled the whole struct.
    Ok(stat_file(unsafe { &st.assume_init() }))
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

/// Whether `pid` is a kernel thread, which has no address space: kcmp compares two
/// of them as one NULL. Never the caller.
pub fn without_address_space(pid: Pid) -> bool {
    pid != getpid() && proc_stat(pid).is_ok_and(|s| s.is_kernel_thread())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{dup_cloexec, fstat_key};
    use std::ffi::CString;
    use std::fs::File;

    fn me() -> Pid {
        getpid()
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
}
