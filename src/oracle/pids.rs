//! Which pids of a batch still name the processes first seen under them.
//!
//! A batch over other processes runs for a while; a process may exit and its pid be
//! reused meanwhile, and every answer given through it is then about the wrong process.
//! `PidGuard` holds, for each pid, what proves it was not reused: a pidfd while a few
//! are held, the start time beyond that. Uses `sys` only.

use std::os::fd::AsRawFd;

use crate::sys::HeldFd;

use rustc_hash::FxHashMap as HashMap;

use crate::error::Failure;
use crate::liveness;
use crate::sys::{self, Errno, Fd, Pid};

/// How many pidfds a batch may hold at most; beyond it (or a sixteenth of the soft fd
/// limit, if lower), a pid's start time guards reuse instead, so a batch over
/// thousands of processes holds a small, bounded number of fds.
const PIDFD_CAP: usize = 64;

/// The number of pidfds one batch may hold here (the benchmark replay mirrors it).
pub fn pidfd_cap() -> usize {
    sys::soft_fd_limit().map_or(PIDFD_CAP, |limit| PIDFD_CAP.min(limit / 16))
}

/// Proof that a pid still names the process first seen under it: its start time, and
/// a pidfd while a few are held (which also tells a reaped process from a reused pid
/// within one clock tick).
struct Identity {
    pidfd: Option<HeldFd>,
    start: u64,
}

/// A pidfd for `pid` while fewer than `cap` are `held`; `None` past the cap, or when
/// none can be had (out of fds: the start time alone guards then).
fn pidfd_of(pid: Pid, held: usize, cap: usize) -> Result<Option<HeldFd>, Failure> {
    if held >= cap {
        return Ok(None);
    }
    match sys::pidfd_open(pid, 0) {
        Ok(fd) => Ok(Some(fd)),
        // A thread id needs PIDFD_THREAD (Linux 6.9+); older kernels refuse it.
        Err(Errno(libc::ENOENT | libc::EINVAL)) => Ok(sys::pidfd_open(pid, sys::PIDFD_THREAD).ok()),
        Err(Errno(libc::ESRCH)) => Err(Failure::NoProcess { pid }),
        Err(_) => Ok(None),
    }
}

/// Whether `pid` is still the live process `id` was taken of: not reaped, not reused,
/// not a zombie and not exiting (a dying process's fd table and memory are going
/// away, so answers through it may already be partial).
fn still_same(pid: Pid, id: &Identity) -> Result<bool, Failure> {
    if let Some(fd) = &id.pidfd {
        if !sys::pidfd_alive(fd).unwrap_or(false) {
            return Ok(false);
        }
    }
    match liveness::alive(pid) {
        Ok(start) => Ok(start == id.start),
        Err(Failure::NoProcess { .. } | Failure::Zombie { .. } | Failure::Exited { .. }) => {
            Ok(false)
        }
        Err(other) => Err(other),
    }
}

/// The pids seen in one run of a batch, each with what proves it was not reused
/// meanwhile: asked at the end of the run which of them vanished.
#[derive(Default)]
pub struct PidGuard {
    ids: HashMap<Pid, Identity>,
    pidfds: usize,
    cap: Option<usize>,
}

impl PidGuard {
    /// Starts guarding `pid`: `NoProcess`, `Zombie` or `Exited` (already exiting) when
    /// it cannot be compared. Returns the pidfd it opened for that, if any, which is
    /// then ours and never the caller's.
    pub fn track(&mut self, pid: Pid, me: Pid) -> Result<Option<Fd>, Failure> {
        if pid == me || self.ids.contains_key(&pid) {
            return Ok(None);
        }
        let cap = *self.cap.get_or_insert_with(pidfd_cap);
        // The pidfd first: the start time read after it is then that process's.
        let pidfd = pidfd_of(pid, self.pidfds, cap)?;
        let start = liveness::alive(pid)?;
        let opened = pidfd.as_ref().map(AsRawFd::as_raw_fd);
        if opened.is_some() {
            self.pidfds += 1;
        }
        self.ids.insert(pid, Identity { pidfd, start });
        Ok(opened)
    }

    /// Whether `pid` was tracked and is no longer the live process first seen under
    /// it. A check that cannot run (out of fds) counts as "not vanished": the end of
    /// the run asks again and reports the failure.
    pub fn has_vanished(&self, pid: Pid) -> bool {
        self.ids
            .get(&pid)
            .is_some_and(|id| still_same(pid, id) == Ok(false))
    }

    /// `failure` about a tracked pid that has vanished since: `Exited`, whatever the
    /// failure said (an fd "not open", a zombie, no such process).
    pub fn explain(&self, failure: Failure) -> Failure {
        match failure.pid() {
            Some(pid) if self.has_vanished(pid) => Failure::Exited { pid },
            _ => failure,
        }
    }

    /// Pids that exited (or are exiting, or may have been reused) since first seen.
    pub fn vanished(&self) -> Result<Vec<Pid>, Failure> {
        let mut gone = Vec::new();
        for (&pid, id) in &self.ids {
            if !still_same(pid, id)? {
                gone.push(pid);
            }
        }
        gone.sort_unstable();
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn a_killed_child_has_vanished_and_we_have_not() {
        let me = sys::getpid();
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as Pid;
        let mut guard = PidGuard::default();
        assert_eq!(guard.track(me, me), Ok(None), "our own pid needs no guard");
        guard.track(pid, me).unwrap();
        assert_eq!(guard.vanished(), Ok(vec![]));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(guard.has_vanished(pid));
        assert_eq!(guard.vanished(), Ok(vec![pid]));
        assert!(pidfd_cap() <= PIDFD_CAP);
    }

    #[test]
    fn a_zombie_is_gone_before_it_is_reaped() {
        let me = sys::getpid();
        for cap in [None, Some(0)] {
            let child = sys::testing::fork_holding(&[0], 0);
            let mut guard = PidGuard {
                cap,
                ..PidGuard::default()
            };
            guard.track(child, me).unwrap();
            assert!(!guard.has_vanished(child));
            sys::testing::kill(child);
            assert!(sys::testing::await_zombie(child));
            assert!(guard.has_vanished(child), "pidfd {cap:?}");
            assert_eq!(
                guard.explain(Failure::NotOpen { pid: child, fd: 0 }),
                Failure::Exited { pid: child },
                "no EBADF blamed on a dead process's fd"
            );
            let mut fresh = PidGuard::default();
            assert_eq!(fresh.track(child, me), Err(Failure::Zombie { pid: child }));
            sys::testing::reap(child);
            assert_eq!(
                fresh.track(child, me),
                Err(Failure::NoProcess { pid: child })
            );
        }
    }

    #[test]
    fn start_times_guard_past_the_pidfd_cap() {
        let me = sys::getpid();
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as Pid;
        let mut guard = PidGuard {
            cap: Some(0),
            ..PidGuard::default()
        };
        assert_eq!(guard.track(pid, me), Ok(None), "no pidfd past the cap");
        assert!(!guard.has_vanished(pid));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(guard.has_vanished(pid));
    }
}
