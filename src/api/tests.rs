//! The entry points on this process's own fds and on children the tests start.

use super::*;
use crate::engine::{GroupOrder, Missing};
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Child, Command};

fn me() -> Pid {
    sys::getpid()
}

fn status_file() -> File {
    File::open("/proc/self/status").unwrap()
}

/// A child that lives until killed; the caller kills and reaps it.
fn sleeper() -> Child {
    Command::new("sleep").arg("30").spawn().unwrap()
}

#[test]
fn same_file_tells_dups_from_reopens() {
    let f = status_file();
    let dup: OwnedFd = f.try_clone().unwrap().into();
    let other = status_file();
    let (fd, d, o) = (f.as_raw_fd(), dup.as_raw_fd(), other.as_raw_fd());
    assert_eq!(same_file((me(), fd), (me(), d), false), Ok(true));
    assert_eq!(same_file((me(), fd), (me(), o), false), Ok(false));
    assert_eq!(
        same_file((me(), fd), (me(), 999_999), false),
        Err(Failure::NotOpen {
            pid: me(),
            fd: 999_999
        })
    );
}

#[test]
fn classify_fds_groups_by_description() {
    let f = status_file();
    let dup: OwnedFd = f.try_clone().unwrap().into();
    let other = status_file();
    let (fd, d, o) = (f.as_raw_fd(), dup.as_raw_fd(), other.as_raw_fd());
    let (groups, stats) = classify_fds(
        me(),
        Some(vec![o, d, fd]),
        GroupOrder::Fd,
        Missing::Raise,
        false,
        || false,
    )
    .unwrap();
    let mut want = vec![vec![fd.min(d), fd.max(d)], vec![o]];
    want.sort();
    assert_eq!(groups, want);
    assert_eq!(stats.keys, 3);
}

#[test]
fn an_interrupt_ends_a_batch() {
    let f = status_file();
    let refs = [(me(), f.as_raw_fd())];
    let opts = crate::oracle::FileOptions {
        order: GroupOrder::Fd,
        missing: Missing::Raise,
        allow_pidfd_getfd: false,
        report_undecided: false,
    };
    assert_eq!(
        classify_files(&refs, opts, || true).unwrap_err(),
        Failure::Interrupted
    );
}

#[test]
fn open_fds_lists_ours_but_not_its_own_directory() {
    let f = status_file();
    let fds = open_fds(me()).unwrap();
    assert!(fds.contains(&f.as_raw_fd()));
    assert!(fds.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn a_process_shares_everything_with_itself() {
    if !support::kcmp_usable() {
        // The task calls have no fallback: where kcmp is blocked, the documented failure.
        assert!(matches!(
            sharing(me(), me()),
            Err(Failure::Unavailable { .. })
        ));
        return;
    }
    let all = Sharing {
        vm: true,
        files: true,
        fs: true,
        sighand: true,
        io: true,
        sysvsem: true,
    };
    assert_eq!(sharing(me(), me()), Ok(all));
    assert_eq!(
        classify_tasks(&[me(), me()], sys::KCMP_VM, Missing::Raise, || false),
        Ok(vec![vec![me()]])
    );
}

#[test]
fn a_child_is_grouped_apart_and_a_missing_pid_skipped() {
    if !support::kcmp_usable() {
        assert!(matches!(
            classify_tasks(&[me()], sys::KCMP_VM, Missing::Raise, || false),
            Err(Failure::Unavailable { .. })
        ));
        return;
    }
    let mut child = sleeper();
    let pid = child.id() as Pid;
    let groups = classify_tasks(&[me(), pid], sys::KCMP_VM, Missing::Raise, || false);
    let same = same_task(me(), pid, sys::KCMP_VM);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(groups.map(|g| g.len()), Ok(2));
    assert_eq!(same, Ok(false));
    // Above pid_max: never a process, so no one else's is touched.
    let gone = i32::MAX;
    let groups = classify_tasks(&[me(), gone], sys::KCMP_VM, Missing::Skip, || false);
    assert_eq!(groups, Ok(vec![vec![me()]]));
    assert_eq!(
        classify_tasks(&[me(), gone], sys::KCMP_VM, Missing::Raise, || false),
        Err(Failure::NoProcess { pid: gone })
    );
}

#[test]
fn skip_reasons_name_the_kind_or_the_error() {
    let absent = "no such process";
    assert_eq!(skip_reason(&Failure::NoProcess { pid: 7 }, absent), absent);
    assert_eq!(
        skip_reason(&Failure::NoProcess { pid: 7 }, "exited"),
        "exited"
    );
    assert_eq!(skip_reason(&Failure::Exited { pid: 7 }, absent), "exited");
    assert_eq!(skip_reason(&Failure::Zombie { pid: 7 }, absent), "zombie");
    assert_eq!(
        skip_reason(&Failure::Denied { pid: 7 }, absent),
        "permission denied"
    );
    let other = Failure::Os {
        errno: libc::EIO,
        pid: Some(7),
        fd: None,
        detail: "reading /proc/7/fd".into(),
    };
    assert_eq!(
        skip_reason(&other, absent),
        "error: Input/output error: reading /proc/7/fd"
    );
}
