use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use super::{holds_exactly, holds_lock_on, lock_byte, same_by_lock, LOCAL_FILESYSTEMS, LOCK_BYTE};
use crate::sys;

/// A file of its own in the temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("kcmp-rs-ofd-{}-{name}", std::process::id()));
        std::fs::write(&path, b"data").unwrap();
        Scratch(path)
    }
    fn open(&self, read: bool, write: bool) -> File {
        OpenOptions::new()
            .read(read)
            .write(write)
            .open(&self.0)
            .unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn dup(f: &File) -> sys::HeldFd {
    sys::dup_cloexec(f.as_raw_fd()).unwrap()
}

fn lock_lines(fd: i32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("lock:"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn tells_descriptions_apart_and_leaves_no_lock() {
    let s = Scratch::new("apart");
    let rw = s.open(true, true);
    assert!(LOCAL_FILESYSTEMS.contains(&sys::fs_magic(rw.as_raw_fd()).unwrap()));
    let ro = s.open(true, false);
    let wo = s.open(false, true);
    let rw2 = dup(&rw);
    let wo2 = dup(&wo);
    let (rw, ro, wo) = (rw.as_raw_fd(), ro.as_raw_fd(), wo.as_raw_fd());
    let (rw2, wo2) = (rw2.as_raw_fd(), wo2.as_raw_fd());
    for (a, b, same) in [
        (rw, ro, false),
        (ro, rw, false),
        (rw, rw2, true),
        (rw2, rw, true),
        (wo, wo2, true),
        (wo, rw, false),
        (ro, wo, false),
    ] {
        assert_eq!(same_by_lock(a, b), Ok(Some(same)), "fds {a} and {b}");
    }
    for fd in [rw, ro, wo] {
        assert_eq!(sys::ofd_lock_in_way(fd, lock_byte()), Ok(None));
        assert!(lock_lines(fd).is_empty(), "{:?}", lock_lines(fd));
    }
}

#[test]
fn a_lock_the_description_holds_is_left_alone() {
    let s = Scratch::new("own");
    let a = s.open(true, true);
    let a2 = dup(&a);
    let other = s.open(true, false);
    sys::ofd_set_lock(a.as_raw_fd(), libc::F_WRLCK, lock_byte()).unwrap();
    let before = lock_lines(a.as_raw_fd());
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(same_by_lock(a.as_raw_fd(), a2.as_raw_fd()), Ok(None));
    assert_eq!(same_by_lock(a.as_raw_fd(), other.as_raw_fd()), Ok(None));
    assert_eq!(lock_lines(a.as_raw_fd()), before);
    let held = sys::ofd_lock_in_way(other.as_raw_fd(), lock_byte())
        .unwrap()
        .unwrap();
    assert_eq!(
        (held.kind, held.start, held.len),
        (libc::F_WRLCK, lock_byte(), 1)
    );
}

#[test]
fn another_owners_lock_makes_the_pair_undecided() {
    let s = Scratch::new("other");
    let a = s.open(true, false);
    let a2 = dup(&a);
    let holder = s.open(true, false);
    sys::ofd_set_lock(holder.as_raw_fd(), libc::F_RDLCK, lock_byte()).unwrap();
    assert_eq!(same_by_lock(a.as_raw_fd(), a2.as_raw_fd()), Ok(None));
    assert_eq!(same_by_lock(a.as_raw_fd(), holder.as_raw_fd()), Ok(None));
    assert_eq!(lock_lines(holder.as_raw_fd()).len(), 1);
    assert!(lock_lines(a.as_raw_fd()).is_empty());
    sys::ofd_set_lock(holder.as_raw_fd(), libc::F_UNLCK, lock_byte()).unwrap();
    assert_eq!(same_by_lock(a.as_raw_fd(), a2.as_raw_fd()), Ok(Some(true)));
}

#[test]
fn o_path_fds_take_no_locks() {
    let s = Scratch::new("opath");
    let path = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(&s.0)
        .unwrap();
    let a = s.open(true, false);
    assert_eq!(same_by_lock(path.as_raw_fd(), a.as_raw_fd()), Ok(None));
    assert_eq!(sys::access_mode(path.as_raw_fd()), Ok(libc::O_PATH));
}

#[test]
fn fdinfo_lock_lines() {
    let at = LOCK_BYTE;
    let cases = [
        ("", false),
        ("pos:\t0\nflags:\t02\n", false),
        (
            "lock:\t1: OFDLCK  ADVISORY  WRITE -1 00:2c:12 0 EOF\n",
            true,
        ),
        ("lock:\t1: POSIX  ADVISORY  READ 77 00:2c:12 0 EOF\n", true),
        (
            "lock:\t1: OFDLCK  ADVISORY  WRITE -1 00:2c:12 0 4095\n",
            false,
        ),
        (
            &format!("lock:\t1: OFDLCK  ADVISORY  READ -1 00:2c:12 {at} {at}\n"),
            true,
        ),
        (
            "lock:\t1: FLOCK  ADVISORY  WRITE 77 00:2c:12 0 EOF\n",
            false,
        ),
        (
            "lock:\t1: -> OFDLCK  ADVISORY  WRITE -1 00:2c:12 0 EOF\n",
            false,
        ),
        (
            "lock:\t1: OFDLCK  ADVISORY  WRITE -1 00:2c:12 zero EOF\n",
            true,
        ),
        ("lock:\t1: OFDLCK\n", true),
    ];
    for (text, holds) in cases {
        assert_eq!(holds_lock_on(text, at), holds, "{text:?}");
    }
}

#[test]
fn fdinfo_exact_lock() {
    let at = LOCK_BYTE - 7;
    let line = |kind: &str, start: i64, end: &str| {
        format!("pos:\t0\nlock:\t1: OFDLCK  ADVISORY  {kind} -1 00:2c:12 {start} {end}\n")
    };
    let end = at.to_string();
    assert!(holds_exactly(&line("READ", at, &end), at, libc::F_RDLCK));
    assert!(holds_exactly(&line("WRITE", at, &end), at, libc::F_WRLCK));
    assert!(!holds_exactly(&line("WRITE", at, &end), at, libc::F_RDLCK));
    assert!(!holds_exactly(&line("READ", at, "EOF"), at, libc::F_RDLCK));
    assert!(!holds_exactly(&line("READ", 0, "EOF"), at, libc::F_RDLCK));
    assert!(!holds_exactly(
        &line("READ", at - 1, &end),
        at,
        libc::F_RDLCK
    ));
    let posix = format!("lock:\t1: POSIX  ADVISORY  READ 77 00:2c:12 {at} {at}\n");
    assert!(!holds_exactly(&posix, at, libc::F_RDLCK));
    assert!(!holds_exactly("", at, libc::F_RDLCK));
}

#[test]
fn threads_lock_different_bytes() {
    let here = lock_byte();
    let there = std::thread::spawn(lock_byte).join().unwrap();
    assert_ne!(here, there);
    for at in [here, there] {
        assert!((LOCK_BYTE - 0x3F_FFFF..=LOCK_BYTE).contains(&at));
    }
}
