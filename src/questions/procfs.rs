//! What /proc says besides comparisons, for the questions and the CLI: which processes
//! exist, what one fd shows (target, access mode, type), command names, boundary
//! values, and this process's fd keys and descendants (the fd-leak snapshot).
//!
//! The Python package reads no /proc of its own: each of these is one native call.
//! Every reader holds at most one fd at a time and answers a placeholder (`None`)
//! rather than failing when a process or an fd is gone, except where the caller
//! must know why (`boundary_value`, `list_pids`).

use std::ffi::CString;

use rustc_hash::FxHashSet as HashSet;

use super::json::{mode_of, type_of};
use super::scan::{describe, Boundary};
use crate::error::Failure;
use crate::oracle::FileRef;
use crate::sys::{self, Fd, FileKey, Pid};

/// One fd as a report shows it: target (`None` once gone), access mode, type.
pub type Shown = (Option<Vec<u8>>, &'static str, String);

/// The numeric names in a /proc directory (pids, thread ids), ascending.
pub(crate) fn numbers_in(dir: &str) -> Result<Vec<Pid>, sys::Errno> {
    let path = CString::new(dir).map_err(|_| sys::Errno(libc::EINVAL))?;
    sys::list_fds(&sys::open_dir(&path)?)
}

/// Every process in /proc (its numeric names), ascending.
pub fn list_pids() -> Result<Vec<Pid>, Failure> {
    numbers_in("/proc").map_err(|e| Failure::Os {
        errno: e.0,
        pid: None,
        fd: None,
        detail: format!("reading /proc: {}", crate::error::errno_text(e.0)),
    })
}

/// What a report shows of `r`: read by path, nothing more once the target is gone.
pub fn show(r: FileRef) -> Shown {
    let (target, link, file) = describe(r);
    match target {
        None => (None, "?", "?".to_string()),
        Some(t) => {
            let kind = type_of(&t, file);
            (Some(t), mode_of(link), kind)
        }
    }
}

/// The value of `pid` on a boundary (a namespace link text, or its cgroup): why not,
/// as the typed failure of a process that is absent, a zombie or exiting, else the
/// errno with the file that could not be read.
pub fn boundary_value(pid: Pid, boundary: Boundary) -> Result<Vec<u8>, Failure> {
    boundary.value(pid).map_err(|(errno, detail)| {
        if let Err(gone) = crate::liveness::alive(pid) {
            if gone.gone_kind().is_some() {
                return gone;
            }
        }
        let file = match boundary {
            Boundary::Namespace(kind) => format!("/proc/{pid}/ns/{kind}"),
            Boundary::Cgroup => format!("/proc/{pid}/cgroup"),
        };
        Failure::Os {
            errno,
            pid: Some(pid),
            fd: None,
            detail: if errno == libc::ENODATA {
                detail
            } else {
                format!("reading {file}")
            },
        }
    })
}

/// A descendant of the process asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descendant {
    pub pid: Pid,
    pub ppid: Pid,
    /// Clock ticks after boot: tells a pid reused by another process apart.
    pub start: u64,
    pub zombie: bool,
}

/// The children of every thread of `pid` (`/proc/PID/task/*/children`).
fn children(pid: Pid) -> Vec<Pid> {
    let mut found = Vec::new();
    for tid in numbers_in(&format!("/proc/{pid}/task")).unwrap_or_default() {
        let Ok(path) = CString::new(format!("/proc/{pid}/task/{tid}/children")) else {
            continue;
        };
        if let Ok(text) = sys::read_small_file(&path) {
            found.extend(
                text.split(u8::is_ascii_whitespace)
                    .filter_map(|n| std::str::from_utf8(n).ok()?.parse::<Pid>().ok()),
            );
        }
    }
    found
}

/// The children of `pid`, their children, and so on, ascending. An orphan re-parented
/// away (to init or a subreaper) is no descendant any more and is not found.
pub fn descendants(pid: Pid) -> Vec<Descendant> {
    let mut seen: HashSet<Pid> = HashSet::default();
    let mut found = Vec::new();
    let mut todo = children(pid);
    while let Some(child) = todo.pop() {
        if !seen.insert(child) {
            continue;
        }
        if let Ok(stat) = sys::proc_stat(child) {
            found.push(Descendant {
                pid: child,
                ppid: stat.ppid,
                start: stat.start_time,
                zombie: stat.is_zombie(),
            });
            todo.extend(children(child));
        }
    }
    found.sort_unstable_by_key(|d| d.pid);
    found
}

/// This process's fds with the inode behind each, ascending; an fd closed between the
/// listing and its fstat (by another thread) is left out.
pub fn own_fd_keys() -> Result<Vec<(Fd, FileKey)>, Failure> {
    let fds = crate::api::open_fds(sys::getpid())?;
    Ok(fds
        .into_iter()
        .filter_map(|fd| sys::fstat_key(fd).ok().map(|k| (fd, k)))
        .collect())
}

/// A decimal field of an fdinfo (`pos:`, `mnt_id:`, `ino:`), where the kernel gives it.
pub(crate) fn fdinfo_field(text: &[u8], name: &[u8]) -> Option<u64> {
    text.split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(name))
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The file offset of fd `fd` of `pid` (its fdinfo's `pos:`); `None` once it is gone.
pub fn offset(pid: Pid, fd: Fd) -> Option<u64> {
    let path = CString::new(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    fdinfo_field(&sys::read_small_file(&path).ok()?, b"pos:")
}

/// `pid`, or, where its thread-group leader has exited but other threads still run,
/// the smallest of those threads' ids (through which its fd table can be read).
pub(crate) fn live_task_of(pid: Pid) -> Pid {
    let leader_gone = sys::proc_stat(pid).is_ok_and(|s| s.is_zombie());
    if !leader_gone {
        return pid;
    }
    numbers_in(&format!("/proc/{pid}/task"))
        .unwrap_or_default()
        .into_iter()
        .filter(|&tid| tid != pid)
        .find(|&tid| sys::proc_stat(tid).is_ok_and(|s| !s.is_zombie() && !s.is_exiting()))
        .unwrap_or(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_process_is_listed_and_pids_ascend() {
        let pids = list_pids().unwrap();
        assert!(pids.contains(&sys::getpid()));
        assert!(pids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_closed_fd_shows_placeholders() {
        assert_eq!(show((sys::getpid(), 1 << 20)), (None, "?", "?".to_string()));
    }

    #[test]
    fn an_own_pipe_shows_its_type_and_mode() {
        use std::os::fd::AsRawFd;
        let (r, w) = std::io::pipe().unwrap();
        let (target, mode, kind) = show((sys::getpid(), r.as_raw_fd()));
        assert!(target.unwrap().starts_with(b"pipe:["));
        assert_eq!((mode, kind.as_str()), ("r", "FIFO"));
        assert_eq!(show((sys::getpid(), w.as_raw_fd())).1, "w");
    }

    #[test]
    fn a_forked_child_is_a_descendant_until_reaped() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = Pid::try_from(child.id()).unwrap();
        let found = descendants(sys::getpid());
        let entry = found.iter().find(|d| d.pid == pid).copied();
        child.kill().unwrap();
        child.wait().unwrap();
        let entry = entry.unwrap();
        assert_eq!(entry.ppid, sys::getpid());
        assert!(!entry.zombie);
        assert!(!descendants(sys::getpid()).iter().any(|d| d.pid == pid));
    }

    #[test]
    fn a_missing_process_has_no_boundary_value() {
        for kind in [Boundary::Cgroup, Boundary::Namespace("net")] {
            let err = boundary_value(i32::MAX, kind).unwrap_err();
            assert!(
                matches!(err, Failure::NoProcess { pid: i32::MAX }),
                "{err:?}"
            );
        }
    }

    #[test]
    fn an_own_boundary_value_is_the_namespace_link() {
        let value = boundary_value(sys::getpid(), Boundary::Namespace("net")).unwrap();
        assert!(value.starts_with(b"net:["), "{value:?}");
    }
}
