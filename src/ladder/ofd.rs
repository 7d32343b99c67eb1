//! The lock rung: two fds of this process on one file share a description exactly when a
//! lock that one of them takes is not in the other's way.
//!
//! An open file description (OFD) lock is owned by the description, so a lock taken
//! with `F_OFD_SETLK` through `a` conflicts with an `F_OFD_GETLK` probe through `b` only
//! when `b` is another description. The lock covers one byte far beyond any data (the
//! byte depends on the calling thread, so tests run at once by processes that share a
//! description never meet), and lives for four fcntl calls.
//!
//! It runs only where it changes nothing anybody can see:
//! * on local filesystems (a list of magic numbers): network, cluster and FUSE
//!   filesystems forward locks to a server or daemon, where the test would be slow,
//!   visible to other machines, or answered by code that need not follow the rules;
//! * when no lock covers the byte: not another owner's (`F_OFD_GETLK` through `a`,
//!   which also sees this process's own POSIX locks) and not `a`'s own (its
//!   `/proc/self/fdinfo` lines), since taking and dropping a lock where the description
//!   already holds one would split or drop the user's lock;
//! * never waiting: a lock taken by another process in between makes the pair
//!   undecided, not wrong.
//!
//! Whatever else holds `a`'s description may lock and unlock through it meanwhile (a
//! whole-file lock would swallow the test's byte, its unlock drop it): "no conflict"
//! counts as "one description" only if `a`'s fdinfo still shows the test's lock, byte
//! for byte, after the probe; "a conflict" only if it is the test's lock and goes away
//! with it.
//!
//! What is left visible: for those microseconds, another process asking for a lock
//! covering that byte (a whole-file lock, or one to the end of the file) without
//! waiting is refused, and one that waits, waits.

use crate::sys::{self, Errno, Fd};

/// The highest byte locked: far beyond any data, and not the last byte, so the lock
/// reads back as one byte long rather than "to the end" (`l_len` 0).
const LOCK_BYTE: i64 = i64::MAX - 1;

/// The byte this thread's tests lock: one per thread id (modulo 2^22), so concurrent
/// tests through one description, by threads or by processes it is shared with, take
/// different bytes and never merge with or drop each other's lock.
fn lock_byte() -> i64 {
    LOCK_BYTE - i64::from(sys::gettid() & 0x3F_FFFF)
}

/// Filesystems whose locks stay in this kernel's lock tables (`linux/magic.h`).
const LOCAL_FILESYSTEMS: &[u32] = &[
    0xEF53,      // ext2, ext3, ext4
    0x5846_5342, // xfs
    0x9123_683E, // btrfs
    0xF2F5_2010, // f2fs
    0xCA45_1A4E, // bcachefs
    0x2FC1_2FC1, // zfs
    0x3153_464A, // jfs
    0x5265_4973, // reiserfs
    0x3434,      // nilfs2
    0x4D44,      // vfat, msdos
    0x2011_BAB0, // exfat
    0x7366_746E, // ntfs3
    0x482B,      // hfsplus
    0x9660,      // iso9660
    0x1501_3346, // udf
    0x7371_7368, // squashfs
    0xE0F5_E1E2, // erofs
    0x794C_7630, // overlayfs: locks are kept on the overlay's own inode
    0x0102_1994, // tmpfs, devtmpfs, shmem (memfd)
    0x8584_58F6, // ramfs
    0x9584_58F6, // hugetlbfs
    0x9FA0,      // proc
    0x6265_6572, // sysfs
    0x1CD1,      // devpts
    0x6367_7270, // cgroup2
    0x0027_E0EB, // cgroup
    0x6462_6720, // debugfs
    0x7472_6163, // tracefs
    0x7363_6673, // securityfs
    0xCAFE_4A11, // bpf
    0x1980_0202, // mqueue
    0x0904_1934, // anonymous inodes
];

/// Whether `a` and `b`, fds of this process on the same inode, share a description;
/// `Ok(None)` where the rung may not run or someone else's lock got in the way.
pub fn same_by_lock(a: Fd, b: Fd) -> Result<Option<bool>, Errno> {
    same_by_lock_at(a, b, lock_byte())
}

fn same_by_lock_at(a: Fd, b: Fd, at: i64) -> Result<Option<bool>, Errno> {
    if !may_lock(a, at)? {
        return Ok(None);
    }
    let kind = match sys::access_mode(a)? {
        libc::O_RDONLY | libc::O_RDWR => libc::F_RDLCK,
        libc::O_WRONLY => libc::F_WRLCK,
        // O_PATH: no locks through it.
        _ => return Ok(None),
    };
    match sys::ofd_set_lock(a, kind, at) {
        Ok(()) => {}
        Err(e) if undecidable(e) => return Ok(None),
        Err(e) => return Err(e),
    }
    let seen = sys::ofd_lock_in_way(b, at);
    // Still the test's own lock, exactly, after the probe: nothing else holding `a`'s
    // description dropped it (or swallowed it into a larger lock) meanwhile.
    let intact =
        seen == Ok(None) && own_lock_lines(a).is_some_and(|info| holds_exactly(&info, at, kind));
    // Dropped whatever `b` said: nothing may outlive the test.
    sys::ofd_set_lock(a, libc::F_UNLCK, at)?;
    match seen {
        Ok(None) if intact => Ok(Some(true)),
        Ok(Some(lock)) if is_ours(lock, kind, at) => {
            // Ours, unless another owner took one just like it at this very byte: gone
            // with ours, it was ours.
            match sys::ofd_lock_in_way(b, at) {
                Ok(None) => Ok(Some(false)),
                Ok(Some(_)) => Ok(None),
                Err(e) if undecidable(e) => Ok(None),
                Err(e) => Err(e),
            }
        }
        // No conflict, but the test's lock is not as it was left; or another's lock.
        Ok(None | Some(_)) => Ok(None),
        Err(e) if undecidable(e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The rung's preconditions on `a`: a local filesystem, and nobody's lock on the byte.
fn may_lock(a: Fd, at: i64) -> Result<bool, Errno> {
    if !LOCAL_FILESYSTEMS.contains(&sys::fs_magic(a)?) {
        return Ok(false);
    }
    match sys::ofd_lock_in_way(a, at) {
        Ok(None) => {}
        Ok(Some(_)) => return Ok(false),
        Err(e) if undecidable(e) => return Ok(false),
        Err(e) => return Err(e),
    }
    // Without fdinfo the description's own locks cannot be seen: not safe to lock.
    Ok(own_lock_lines(a).is_some_and(|info| !holds_lock_on(&info, at)))
}

/// `/proc/self/fdinfo/FD`, where the locks `fd`'s description holds are listed.
fn own_lock_lines(fd: Fd) -> Option<String> {
    let path = std::ffi::CString::new(format!("/proc/self/fdinfo/{fd}")).ok()?;
    let info = sys::read_small_file(&path).ok()?;
    Some(String::from_utf8_lossy(&info).into_owned())
}

/// Errors that say "no lock test here", not "something is wrong": a lock in the way
/// (EAGAIN, EACCES), no locks on this file or fd (EINVAL, EBADF, ENOLCK, EOPNOTSUPP), a
/// security module refusing (EPERM).
fn undecidable(e: Errno) -> bool {
    matches!(
        e.0,
        libc::EAGAIN
            | libc::EACCES
            | libc::EINVAL
            | libc::EBADF
            | libc::ENOLCK
            | libc::EOPNOTSUPP
            | libc::EPERM
    )
}

fn is_ours(lock: sys::RangeLock, kind: i32, at: i64) -> bool {
    lock.kind == kind && lock.start == at && lock.len == 1 && lock.pid == -1
}

/// Whether an fdinfo text lists an OFD lock of `kind` on byte `at` and nothing more.
fn holds_exactly(fdinfo: &str, at: i64, kind: i32) -> bool {
    let word = if kind == libc::F_WRLCK {
        "WRITE"
    } else {
        "READ"
    };
    let at = at.to_string();
    fdinfo
        .lines()
        .filter_map(|line| line.strip_prefix("lock:"))
        .any(|rest| {
            let words: Vec<&str> = rest.split_whitespace().collect();
            words.get(1..).is_some_and(|w| {
                matches!(w, [ofd, _, w_kind, "-1", _, start, end]
                if *ofd == "OFDLCK" && *w_kind == word && *start == at && *end == at)
            })
        })
}

/// Whether the `lock:` lines of an fdinfo text hold a byte-range lock covering byte `at`
/// (or a line that cannot be read, to be safe). Waiters (`->`) hold nothing.
///
/// A line: `lock:\t1: OFDLCK  ADVISORY  WRITE -1 00:2c:1234 0 EOF`.
fn holds_lock_on(fdinfo: &str, at: i64) -> bool {
    fdinfo
        .lines()
        .filter_map(|line| line.strip_prefix("lock:"))
        .filter(|rest| !rest.contains("->"))
        .any(|rest| {
            let words: Vec<&str> = rest.split_whitespace().collect();
            // flock(2) locks and leases are kept apart from byte-range locks.
            if matches!(words.get(1), Some(&("FLOCK" | "LEASE" | "DELEG"))) {
                return false;
            }
            let (Some(start), Some(end)) = (words.get(6), words.get(7)) else {
                return true;
            };
            let Ok(start) = start.parse::<i64>() else {
                return true;
            };
            let end = if *end == "EOF" {
                i64::MAX
            } else {
                match end.parse::<i64>() {
                    Ok(end) => end,
                    Err(_) => return true,
                }
            };
            start <= at && at <= end
        })
}

#[cfg(test)]
mod tests;
