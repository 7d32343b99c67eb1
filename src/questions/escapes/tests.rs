use std::os::fd::AsRawFd;

use super::*;
use crate::sys::testing::{fail_syscall_in_this_thread, fork_in_new_mntns};

fn audit_of(pids: &[Pid]) -> EscapesReport {
    escapes(pids, &mut || false).unwrap()
}

#[test]
fn the_own_process_has_no_escapes() {
    let (_r, _w) = std::io::pipe().unwrap();
    let report = audit_of(&[sys::getpid()]);
    assert_eq!(report.findings, vec![]);
    assert_eq!(
        (report.processes_read, report.mount_namespaces_read),
        (1, 1)
    );
    assert!(report.skipped.is_empty());
}

#[test]
fn internal_mounts_are_measured_and_none_is_ours() {
    let internal = internal_mounts();
    assert!(!internal.is_empty());
    let ours = own_mounts().unwrap();
    assert!(internal.iter().all(|id| !ours.contains_key(id)));
}

#[test]
fn cwd_and_root_mount_ids_without_statx_match_statx() {
    let me = sys::getpid();
    let by_statx = [
        place_mnt_id(me, "cwd").unwrap(),
        place_mnt_id(me, "root").unwrap(),
    ];
    let by_fdinfo = std::thread::spawn(move || {
        fail_syscall_in_this_thread(libc::SYS_statx, libc::ENOSYS);
        assert_eq!(
            sys::statx_mnt_id(&proc_path(me, "cwd").unwrap()),
            Err(Errno(libc::ENOSYS))
        );
        [
            place_mnt_id(me, "cwd").unwrap(),
            place_mnt_id(me, "root").unwrap(),
        ]
    })
    .join()
    .unwrap();
    assert_eq!(by_statx, by_fdinfo);
    let ours = own_mounts().unwrap();
    assert!(by_statx.iter().all(|id| ours.contains_key(id)));
}

#[test]
fn a_directory_kept_across_unshare_is_found_and_a_later_audit_without_statx_agrees() {
    let dir = std::fs::File::open("/tmp").unwrap();
    let (child, entered) = fork_in_new_mntns();
    if !entered {
        eprintln!("skipped: unshare(CLONE_NEWNS) refused here");
        return;
    }
    let pid = child.0;
    let report = audit_of(&[pid]);
    let ours = own_mounts().unwrap();
    let f = report
        .findings
        .iter()
        .find(|f| f.place == Place::Fd(dir.as_raw_fd()))
        .unwrap();
    assert_eq!((f.kind, f.severity), (OUTSIDE_NAMESPACE, HIGH));
    assert_eq!(f.path, b"/tmp");
    assert!(ours.contains_key(&f.mnt_id));
    assert_eq!(
        f.mount_point.as_ref(),
        ours.get(&f.mnt_id).map(|m| &m.mount_point)
    );
    assert_eq!(f.file_type, "DIR");
    // cwd and root move to the new namespace's copies with the unshare.
    assert!(!report
        .findings
        .iter()
        .any(|f| matches!(f.place, Place::Cwd | Place::Root)));
    let process = &report.processes[&pid];
    assert_ne!(process.mount_namespace, own_namespace().unwrap());
    // The child shares whatever fds other tests held at the fork: compare the
    // directory's finding alone.
    let fd = dir.as_raw_fd();
    let again = std::thread::spawn(move || {
        fail_syscall_in_this_thread(libc::SYS_statx, libc::ENOSYS);
        let found = escapes(&[pid], &mut || false).unwrap().findings;
        found.into_iter().find(|f| f.place == Place::Fd(fd))
    })
    .join()
    .unwrap();
    assert_eq!(again.as_ref(), Some(f));
}

#[test]
fn a_namespace_that_vanishes_before_its_mountinfo_is_read_skips_its_processes() {
    let _dir = std::fs::File::open("/tmp").unwrap();
    let (child, entered) = fork_in_new_mntns();
    if !entered {
        eprintln!("skipped: unshare(CLONE_NEWNS) refused here");
        return;
    }
    let pid = child.0;
    hooks::kill_after_namespaces(pid);
    let report = audit_of(&[pid]);
    assert_eq!(report.findings, vec![]);
    assert_eq!(report.skipped, vec![(pid, EXITED.to_string())]);
    assert_eq!(
        (report.processes_read, report.mount_namespaces_read),
        (0, 0)
    );
}

#[test]
fn judgements() {
    let dir = libc::S_IFDIR;
    let reg = libc::S_IFREG;
    assert_eq!(judge(Whose::Internal, true, reg, Some("rw")), None);
    assert_eq!(judge(Whose::Own, false, reg, Some("rw")), None);
    assert_eq!(
        judge(Whose::Own, true, reg, Some("r")),
        Some((OUTSIDE_ROOT, MEDIUM))
    );
    assert_eq!(
        judge(Whose::Other, false, dir, Some("r")),
        Some((OUTSIDE_NAMESPACE, HIGH))
    );
    assert_eq!(
        judge(Whose::Other, false, reg, Some("w")),
        Some((OUTSIDE_NAMESPACE, HIGH))
    );
    assert_eq!(
        judge(Whose::Other, false, libc::S_IFIFO, Some("r")),
        Some((OUTSIDE_NAMESPACE, MEDIUM))
    );
    assert_eq!(
        judge(Whose::Detached, false, libc::S_IFCHR, Some("rw")),
        Some((DEVICE, INFO))
    );
    assert_eq!(
        judge(Whose::Detached, false, reg, None),
        Some((DETACHED, MEDIUM))
    );
}

#[test]
fn paths_under_a_root() {
    assert!(under(b"/x/y", b"/"));
    assert!(under(b"/srv/root", b"/srv/root"));
    assert!(under(b"/srv/root/a", b"/srv/root"));
    assert!(!under(b"/srv/rootless", b"/srv/root"));
    assert!(!under(b"/tmp", b"/srv/root"));
}

#[test]
fn modes_from_fdinfo_flags() {
    let flags = |text: &[u8]| octal_field(text, b"flags:").map(mode_of_flags);
    assert_eq!(
        flags(b"pos:\t0\nflags:\t0100002\nmnt_id:\t27\n"),
        Some("rw")
    );
    assert_eq!(flags(b"flags:\t02000000\n"), Some("r"));
    assert_eq!(flags(b"flags:\t02000001\n"), Some("w"));
    assert_eq!(flags(b"flags:\t012000000\n"), Some("path"));
    assert_eq!(flags(b"pos: 0\n"), None);
}

#[test]
fn a_process_that_exits_during_the_audit_is_skipped_with_no_finding() {
    let dir = std::fs::File::open("/tmp").unwrap();
    let (inside, entered) = fork_in_new_mntns();
    let plain =
        crate::sys::testing::KilledOnDrop(crate::sys::testing::fork_holding(&[dir.as_raw_fd()], 0));
    let mut pids = vec![plain.0];
    if entered {
        pids.push(inside.0);
    }
    // Killed and reaped after its namespace link was read: its pin says it is gone.
    hooks::kill_after_namespaces(plain.0);
    let report = audit_of(&pids);
    assert_eq!(report.skipped, vec![(plain.0, EXITED.to_string())]);
    assert!(report.findings.iter().all(|f| f.pid != plain.0));
    assert_eq!(report.processes_read, usize::from(entered));
    if entered {
        assert!(report.findings.iter().any(|f| f.pid == inside.0));
    }
}
