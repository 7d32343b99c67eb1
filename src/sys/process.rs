//! This process itself: its ids, the CPUs it may run on, its fd limit, and a handler
//! for its forked children.

use super::{Errno, Pid};

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
