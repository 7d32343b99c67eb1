//! Who holds one open file description: every (pid, fd) among given processes that
//! refers to the same description as one target fd.
//!
//! The question has a single target, so there is nothing to group: each candidate fd
//! costs one kcmp against the target, and nothing is stat'ed (a stat of
//! /proc/PID/fd/N costs about three kcmp calls, more than it could save). Every pid
//! read is pinned by `PidGuard`; one that exited during the search is reported as
//! skipped, never as holding nothing. The target itself must stay: if its process
//! exits or its fd stops naming the description first seen, the search fails.
//!
//! Knows `sys`, `error`, `support` and the oracles' `PidGuard`; never the engine or
//! PyO3. Without kcmp the Python layer answers through the batch's fallback ladder.

use std::os::fd::AsRawFd;

use rustc_hash::FxHashSet as HashSet;

use crate::error::{self, Failure};
use crate::oracle::{open_fd_dir, FileRef, PidGuard};
use crate::support;
use crate::sys::{self, Errno, Fd, KcmpOrder, Pid};

/// What one search found.
#[derive(Debug, Default)]
pub struct Found {
    /// The (pid, fd) pairs referring to the target's description, ascending.
    pub holders: Vec<FileRef>,
    /// Processes that could not be read, with why (absent, exited, zombie, denied).
    pub skipped: Vec<(Pid, Failure)>,
    /// kcmp calls made, the target's own checks included.
    pub kcmp_calls: u64,
    /// Candidate fds compared.
    pub fds_compared: u64,
}

/// One pass over the candidates: the target pinned, the fds this search opened known.
struct Search {
    target: FileRef,
    me: Pid,
    guard: PidGuard,
    /// Pidfds the guard opened: never reported as the caller's own fds.
    ours: HashSet<Fd>,
    /// The target's (st_dev, st_ino), checked again at the end.
    key: (u64, u64),
    found: Found,
}

/// Every fd of `pids` (each once, in ascending order) that refers to the open file
/// description of `target`. `interrupted` is polled between processes.
pub fn holders(
    target: FileRef,
    pids: &[Pid],
    mut interrupted: impl FnMut() -> bool,
) -> Result<Found, Failure> {
    support::require_kcmp()?;
    let mut search = Search::start(target)?;
    let mut pids = pids.to_vec();
    pids.sort_unstable();
    pids.dedup();
    for pid in pids {
        if interrupted() {
            return Err(Failure::Interrupted);
        }
        search.read(pid)?;
    }
    search.finish()
}

impl Search {
    /// Pins the target's process and checks its fd is open.
    fn start(target: FileRef) -> Result<Search, Failure> {
        let (tpid, tfd) = target;
        let me = sys::getpid();
        let mut guard = PidGuard::default();
        let mut ours = HashSet::default();
        match guard.track(tpid, me) {
            Ok(Some(fd)) => {
                ours.insert(fd);
            }
            Ok(None) => {}
            Err(failure) => return Err(failure),
        }
        let mut search = Search {
            target,
            me,
            guard,
            ours,
            key: (0, 0),
            found: Found::default(),
        };
        search.key = search.target_key()?;
        // The target compared with itself: EBADF here is its fd (or a zombie), no one's.
        search.compare(tpid, tfd)?;
        Ok(search)
    }

    /// The target's (st_dev, st_ino).
    fn target_key(&self) -> Result<(u64, u64), Failure> {
        let (tpid, tfd) = self.target;
        let key = if tpid == self.me {
            sys::fstat_key(tfd)
        } else {
            let dir = open_fd_dir(tpid)?;
            let name = std::ffi::CString::new(tfd.to_string())
                .map_err(|_| Failure::NotOpen { pid: tpid, fd: tfd })?;
            sys::fstatat_key(dir.as_raw_fd(), &name)
        };
        key.map_err(|e| match e {
            Errno(libc::ENOENT) => self.target_gone(),
            other => Failure::from_errno(other, tpid, Some(tfd), "stat of the target fd"),
        })
    }

    /// Why the target can no longer be compared: its process went, or its fd closed.
    fn target_gone(&self) -> Failure {
        let (tpid, tfd) = self.target;
        if tpid != self.me && self.guard.has_vanished(tpid) {
            return Failure::Exited { pid: tpid };
        }
        if tpid != self.me && sys::is_zombie(tpid) {
            return Failure::Zombie { pid: tpid };
        }
        Failure::NotOpen { pid: tpid, fd: tfd }
    }

    /// One kcmp of the target against `fd` of `pid`: `Ok(true)` when it is the same
    /// description; kernel errors as the raw errno for the caller to place.
    fn compare(&mut self, pid: Pid, fd: Fd) -> Result<bool, Failure> {
        let (tpid, tfd) = self.target;
        self.found.kcmp_calls += 1;
        #[cfg(test)]
        crate::oracle::deaths::tick();
        match sys::kcmp(tpid, pid, sys::KCMP_FILE, tfd, fd) {
            Ok(order) => Ok(order == KcmpOrder::Equal),
            Err(err) => {
                let failure = error::diagnose(tpid, pid, sys::KCMP_FILE, tfd, fd, err);
                support::note_failure(&failure);
                Err(failure)
            }
        }
    }

    /// Reads one candidate process: its fds compared with the target, or the reason
    /// it could not be read recorded as skipped.
    fn read(&mut self, pid: Pid) -> Result<(), Failure> {
        match self.guard.track(pid, self.me) {
            Ok(Some(fd)) => {
                self.ours.insert(fd);
            }
            Ok(None) => {}
            Err(failure) if failure.gone_kind().is_some() => {
                self.found.skipped.push((pid, failure));
                return Ok(());
            }
            Err(failure) => return Err(failure),
        }
        let fds = match self.list(pid) {
            Ok(fds) => fds,
            Err(failure) => return self.skip(pid, failure),
        };
        for fd in fds {
            self.found.fds_compared += 1;
            match self.compare(pid, fd) {
                Ok(true) => self.found.holders.push((pid, fd)),
                Ok(false) => {}
                // Closed since the listing, in a process still there: not a holder.
                Err(Failure::NotOpen { pid: p, fd: f })
                    if p == pid && f == fd && !self.guard.has_vanished(pid) => {}
                Err(failure) => {
                    self.drop_holders_of(pid);
                    return self.skip(pid, failure);
                }
            }
        }
        Ok(())
    }

    /// The fds open in `pid`, never one this search opened. The directory is closed
    /// before any comparison, so it is not among the caller's fds either.
    fn list(&self, pid: Pid) -> Result<Vec<Fd>, Failure> {
        let dir = open_fd_dir(pid)?;
        let shares_ours = pid == self.me
            || sys::kcmp(self.me, pid, sys::KCMP_FILES, 0, 0) == Ok(KcmpOrder::Equal);
        let fds = sys::list_table(&dir, shares_ours)
            .map_err(|e| Failure::from_errno(e, pid, None, "reading /proc/PID/fd"))?;
        if fds.is_empty() && pid != self.me && sys::is_zombie(pid) {
            return Err(Failure::Zombie { pid });
        }
        Ok(fds)
    }

    /// Records why `pid` could not be read, unless the failure is the target's own
    /// (or kcmp itself), which ends the search.
    fn skip(&mut self, pid: Pid, failure: Failure) -> Result<(), Failure> {
        let (tpid, tfd) = self.target;
        let about_target = match &failure {
            Failure::NotOpen { pid: p, fd } => *p == tpid && *fd == tfd,
            Failure::Unavailable { .. } | Failure::Interrupted => true,
            other => other.pid() == Some(tpid) && tpid != pid,
        };
        if about_target {
            return Err(match failure {
                Failure::NotOpen { .. } | Failure::NoProcess { .. } => self.target_gone(),
                other => other,
            });
        }
        let failure = match failure {
            // Seen when the search started, gone since: it exited during the call.
            Failure::NotOpen { .. } | Failure::NoProcess { .. } => Failure::Exited { pid },
            other => other,
        };
        self.found.skipped.push((pid, failure));
        Ok(())
    }

    fn drop_holders_of(&mut self, pid: Pid) {
        self.found.holders.retain(|&(p, _)| p != pid);
    }

    /// The end-of-search check: the target still the description first seen, and no
    /// answer kept from a process that exited (its pid may name another by now).
    fn finish(mut self) -> Result<Found, Failure> {
        let (tpid, _) = self.target;
        if self.guard.has_vanished(tpid) {
            return Err(Failure::Exited { pid: tpid });
        }
        if self.target_key()? != self.key {
            return Err(self.target_changed());
        }
        for pid in self.guard.vanished()? {
            self.drop_holders_of(pid);
            self.found.skipped.retain(|(p, _)| *p != pid);
            self.found.skipped.push((pid, Failure::Exited { pid }));
        }
        self.found.skipped.sort_by_key(|(p, _)| *p);
        self.found.holders.sort_unstable();
        Ok(self.found)
    }

    fn target_changed(&self) -> Failure {
        let (tpid, tfd) = self.target;
        Failure::Os {
            errno: libc::EAGAIN,
            pid: Some(tpid),
            fd: Some(tfd),
            detail: format!(
                "fd {tfd} of process {tpid} was closed or replaced during the search; try again"
            ),
        }
    }
}

#[cfg(test)]
mod tests;
