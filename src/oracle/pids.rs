//! Which pids of a batch still name the processes first seen under them.
//!
//! A batch over other processes runs for a while; a process may exit and its pid be
//! reused meanwhile, and every answer given through it is then about the wrong process.
//! `PidGuard` holds, for each pid, what proves it was not reused: a pidfd while a few
//! are held, the start time beyond that. Uses `sys` only.

use std::os::fd::{AsRawFd, OwnedFd};

use rustc_hash::FxHashMap as HashMap;

use crate::sys::{self, Errno, Fd, Pid};

/// How many pidfds a batch may hold at most; beyond it (or a sixteenth of the soft fd
/// limit, if lower), a pid's start time guards reuse instead, so a batch over
/// thousands of processes holds a small, bounded number of fds.
const PIDFD_CAP: usize = 64;

/// The number of pidfds one batch may hold here (the benchmark replay mirrors it).
pub fn pidfd_cap() -> usize {
    sys::soft_fd_limit().map_or(PIDFD_CAP, |limit| PIDFD_CAP.min(limit / 16))
}

/// Proof that a pid still names the process first seen under it.
enum Identity {
    /// A pidfd: signalling it answers whether that very process lives.
    Pidfd(OwnedFd),
    /// The start time read when first seen: a reused pid shows another one.
    StartTime(u64),
}

/// The proof for `pid`: a pidfd while fewer than `cap` are `held`, else its start time.
/// ESRCH when the pid does not exist.
fn identity_of(pid: Pid, held: usize, cap: usize) -> Result<Identity, Errno> {
    if held < cap {
        match sys::pidfd_open(pid, 0) {
            Ok(fd) => return Ok(Identity::Pidfd(fd)),
            // A thread id needs PIDFD_THREAD (Linux 6.9+); older kernels refuse it.
            Err(Errno(libc::ENOENT | libc::EINVAL)) => {
                if let Ok(fd) = sys::pidfd_open(pid, sys::PIDFD_THREAD) {
                    return Ok(Identity::Pidfd(fd));
                }
            }
            Err(Errno(libc::ESRCH)) => return Err(Errno(libc::ESRCH)),
            Err(_) => {}
        }
    }
    sys::start_time(pid)
        .map(Identity::StartTime)
        .map_err(|e| match e {
            Errno(libc::ENOENT) => Errno(libc::ESRCH),
            other => other,
        })
}

fn still_same(pid: Pid, id: &Identity) -> bool {
    match id {
        Identity::Pidfd(fd) => sys::pidfd_alive(fd).unwrap_or(false),
        Identity::StartTime(t) => sys::start_time(pid).ok() == Some(*t),
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
    /// Starts guarding `pid` (ESRCH when it does not exist); returns the pidfd it
    /// opened for that, if any, which is then ours and never the caller's.
    pub fn track(&mut self, pid: Pid, me: Pid) -> Result<Option<Fd>, Errno> {
        if pid == me || self.ids.contains_key(&pid) {
            return Ok(None);
        }
        let cap = *self.cap.get_or_insert_with(pidfd_cap);
        let id = identity_of(pid, self.pidfds, cap)?;
        let opened = match &id {
            Identity::Pidfd(fd) => {
                self.pidfds += 1;
                Some(fd.as_raw_fd())
            }
            Identity::StartTime(_) => None,
        };
        self.ids.insert(pid, id);
        Ok(opened)
    }

    /// Whether `pid` is no longer the process first seen under it.
    pub fn has_vanished(&self, pid: Pid) -> bool {
        self.ids.get(&pid).is_some_and(|id| !still_same(pid, id))
    }

    /// Pids that exited (and may have been reused) since they were first seen.
    pub fn vanished(&self) -> Vec<Pid> {
        let mut gone: Vec<Pid> = self
            .ids
            .iter()
            .filter(|(pid, id)| !still_same(**pid, id))
            .map(|(p, _)| *p)
            .collect();
        gone.sort_unstable();
        gone
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
        assert!(guard.vanished().is_empty());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(guard.has_vanished(pid));
        assert_eq!(guard.vanished(), vec![pid]);
        assert!(pidfd_cap() <= PIDFD_CAP);
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
