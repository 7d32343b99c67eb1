//! The lock rung: two fds of this process on one file share a description exactly when a
//! lock that one of them takes is not in the other's way.
//!
//! An open file description (OFD) lock is owned by the description, so a lock taken
//! with `F_OFD_SETLK` through `a` conflicts with an `F_OFD_GETLK` probe through `b` only
//! when `b` is another description. The lock covers one byte, the last but one a file
//! can have (beyond any data), and lives for four fcntl calls.
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
//! What is left visible: for those microseconds, another process asking for a lock
//! covering that byte (a whole-file lock, or one to the end of the file) without
//! waiting is refused, and one that waits, waits.

use crate::sys::{self, Errno, Fd};

/// The byte locked: far beyond any data, and not the last byte, so the lock reads back
/// as one byte long rather than "to the end" (`l_len` 0).
const LOCK_BYTE: i64 = i64::MAX - 1;

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
    if !may_lock(a)? {
        return Ok(None);
    }
    let kind = match sys::access_mode(a)? {
        libc::O_RDONLY | libc::O_RDWR => libc::F_RDLCK,
        libc::O_WRONLY => libc::F_WRLCK,
        // O_PATH: no locks through it.
        _ => return Ok(None),
    };
    match sys::ofd_set_lock(a, kind, LOCK_BYTE) {
        Ok(()) => {}
        Err(e) if undecidable(e) => return Ok(None),
        Err(e) => return Err(e),
    }
    let seen = sys::ofd_lock_in_way(b, LOCK_BYTE);
    // Dropped whatever `b` said: nothing may outlive the test.
    sys::ofd_set_lock(a, libc::F_UNLCK, LOCK_BYTE)?;
    match seen {
        Ok(None) => Ok(Some(true)),
        Ok(Some(lock)) if is_ours(lock, kind) => {
            // Ours, unless another owner took one just like it at this very byte: gone
            // with ours, it was ours.
            match sys::ofd_lock_in_way(b, LOCK_BYTE) {
                Ok(None) => Ok(Some(false)),
                Ok(Some(_)) => Ok(None),
                Err(e) if undecidable(e) => Ok(None),
                Err(e) => Err(e),
            }
        }
        Ok(Some(_)) => Ok(None),
        Err(e) if undecidable(e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The rung's preconditions on `a`: a local filesystem, and nobody's lock on the byte.
fn may_lock(a: Fd) -> Result<bool, Errno> {
    if !LOCAL_FILESYSTEMS.contains(&sys::fs_magic(a)?) {
        return Ok(false);
    }
    match sys::ofd_lock_in_way(a, LOCK_BYTE) {
        Ok(None) => {}
        Ok(Some(_)) => return Ok(false),
        Err(e) if undecidable(e) => return Ok(false),
        Err(e) => return Err(e),
    }
    let path = format!("/proc/self/fdinfo/{a}");
    let Ok(path) = std::ffi::CString::new(path) else {
        return Ok(false);
    };
    // Without fdinfo the description's own locks cannot be seen: not safe to lock.
    let Ok(info) = sys::read_small_file(&path) else {
        return Ok(false);
    };
    Ok(!holds_lock_on(&String::from_utf8_lossy(&info), LOCK_BYTE))
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

fn is_ours(lock: sys::RangeLock, kind: i32) -> bool {
    lock.kind == kind && lock.start == LOCK_BYTE && lock.len == 1 && lock.pid == -1
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
