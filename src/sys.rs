//! The syscall boundary: kcmp(2) and the few neighbours the rest of the crate needs.
//!
//! This room is the only one allowed `unsafe` (the crate root denies it everywhere
//! else). It must never import PyO3 or any other module of this crate: it knows the
//! kernel and nothing above it, so `cargo test` exercises it without Python.
//!
//! The wrappers live by subsystem in `sys/`, each re-exported here so callers name
//! `sys::kcmp`, `sys::open_dir` and so on whatever file holds them: `kcmp.rs` (kcmp
//! and its epoll slot), `procfs.rs` (/proc listings, links, stats and
//! /proc/PID/stat), `pidfd.rs`, `files.rs` (this process's own fds: fstat,
//! F_DUPFD_QUERY, dups, epoll, OFD locks), `process.rs` (this process: ids, CPUs,
//! fd limit, fork handler), `mounts.rs` (statx's mount id, O_PATH opens, the
//! internal mounts' probe files), `sockdiag.rs` (NETLINK_SOCK_DIAG: every Unix socket of a
//! network namespace, with its peer) and `held.rs` (the record of every fd the crate
//! holds).
//! This file keeps what they share: `Errno`, `Pid`, `Fd`. The allow below covers
//! the submodules, and the contract applies to every one of them.
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

mod files;
mod held;
mod kcmp;
mod mounts;
mod pidfd;
mod process;
mod procfs;
mod sockdiag;

pub use files::{
    access_mode, dup3_onto, dup_cloexec, dupfd_query, epoll_add, epoll_create, fs_magic,
    fstat_file, fstat_key, ofd_lock_in_way, ofd_set_lock, write_all, FileKey, FileStat, RangeLock,
};
pub use held::{hold, list_own, HeldFd};
pub use kcmp::{
    kcmp, kcmp_epoll_tfd, EpollSlot, KcmpError, KcmpOrder, KCMP_EPOLL_TFD, KCMP_FILE, KCMP_FILES,
    KCMP_FS, KCMP_IO, KCMP_SIGHAND, KCMP_SYSVSEM, KCMP_TYPES, KCMP_VM,
};
pub use mounts::{internal_mount_probes, open_path, statx_mnt_id};
pub use pidfd::{pidfd_alive, pidfd_getfd, pidfd_open, PIDFD_THREAD};
pub use process::{atfork_child, getpid, gettid, soft_fd_limit, usable_cpus};
pub use procfs::{
    fstatat_file, fstatat_key, fstatat_mode, is_zombie, list_fds, list_table, open_dir,
    parse_proc_stat, proc_stat, read_dir_names, read_small_file, readlinkat, rewind_dir,
    start_time, without_address_space, ProcStat, PF_EXITING, PF_KTHREAD,
};
pub use sockdiag::{
    is_refusal, netns_key, open_netns, own_netns_key, unix_sockets, unix_sockets_in, UnixSocket,
};

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

#[cfg(test)]
pub mod testing;
