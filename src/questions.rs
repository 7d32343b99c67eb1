//! Whole questions answered in one native pass: which descriptions many processes
//! share (`scan`, written as JSON by `json`), what two processes share (`shared`),
//! what an epoll set watches (`epoll`), the other ends of a channel (`endpoints`),
//! the counts of many processes' descriptions for metrics (`census`).
//!
//! Each question pins every process it reads with one `PidGuard` before it lists
//! anything, so thread ids are taken as the kernel takes them (PIDFD_THREAD, or the
//! start time), and a process that starts exiting, is reaped or has its pid reused
//! at any point of the pass is an error (the scan: skipped), never a shorter answer.
//!
//! Knows `sys`, `error`, `support`, `ladder` and `oracle`; never PyO3.

pub mod census;
pub mod channels;
pub mod endpoints;
pub mod epoll;
pub mod escapes;
pub mod holders;
pub mod json;
pub mod procfs;
pub mod scan;
pub mod shared;

use std::ffi::CString;

use rustc_hash::FxHashSet as HashSet;

use crate::error::{self, Failure};
use crate::oracle::{open_fd_dir, PidGuard};
use crate::support;
use crate::sys::{self, Fd, FileKey, KcmpOrder, Pid};

/// The processes one question reads, pinned from before their first listing to the
/// end of the answer, and the fds the pins opened in our own table.
pub struct Pinned {
    me: Pid,
    guard: PidGuard,
    ours: HashSet<Fd>,
}

impl Pinned {
    /// Pins every pid of `pids` (the caller's own needs none): `NoProcess`, `Zombie`
    /// or `Exited` for one that cannot be read from the start.
    pub(crate) fn new(pids: &[Pid]) -> Result<Pinned, Failure> {
        let me = sys::getpid();
        let mut pinned = Pinned {
            me,
            guard: PidGuard::default(),
            ours: HashSet::default(),
        };
        for &pid in pids {
            if let Some(fd) = pinned.guard.track(pid, me)? {
                pinned.ours.insert(fd);
            }
        }
        Ok(pinned)
    }

    /// Pins what it can of `pids`: those that cannot be read from the start (absent,
    /// a zombie, already exiting) are returned with why, for a report to skip.
    pub fn skipping(pids: &[Pid]) -> Result<(Pinned, Vec<(Pid, Failure)>), Failure> {
        let mut pinned = Pinned::new(&[])?;
        let mut skipped = Vec::new();
        for &pid in pids {
            match pinned.guard.track(pid, pinned.me) {
                Ok(Some(fd)) => {
                    pinned.ours.insert(fd);
                }
                Ok(None) => {}
                Err(failure) if failure.gone_kind().is_some() => skipped.push((pid, failure)),
                Err(failure) => return Err(failure),
            }
        }
        Ok((pinned, skipped))
    }

    /// The pinned pids that no longer name the live process first seen under them
    /// (exited, exiting, reaped, or reused), ascending.
    pub fn vanished(&self) -> Result<Vec<Pid>, Failure> {
        self.guard.vanished()
    }

    /// A failure met while reading `pid`: `Exited` if the pid no longer names the
    /// process pinned under it (a listing that found nothing, an fd "not open").
    pub(crate) fn explain(&self, failure: Failure) -> Failure {
        match failure {
            Failure::NoProcess { pid } if pid != self.me => Failure::Exited { pid },
            other => self.guard.explain(other),
        }
    }

    /// The fds open in `pid`, ascending, never one this pass opened (its pins, the
    /// listing's directory) when `pid` shares our fd table (our pid, our threads,
    /// a CLONE_FILES child).
    pub fn list(&self, pid: Pid) -> Result<Vec<Fd>, Failure> {
        let dir = open_fd_dir(pid).map_err(|f| self.explain(f))?;
        let ours = pid == self.me || self.shares_our_table(pid);
        sys::list_table(&dir, ours).map_err(|e| {
            self.explain(Failure::from_errno(
                e,
                pid,
                None,
                &format!("reading /proc/{pid}/fd"),
            ))
        })
    }

    fn shares_our_table(&self, pid: Pid) -> bool {
        support::kcmp_usable()
            && sys::kcmp(self.me, pid, sys::KCMP_FILES, 0, 0) == Ok(KcmpOrder::Equal)
    }

    /// The end of the pass: `Exited` for the first pinned pid that no longer names
    /// the live process first seen under it.
    pub(crate) fn finish(&self) -> Result<(), Failure> {
        match self.guard.vanished()?.first() {
            Some(&pid) => Err(Failure::Exited { pid }),
            None => Ok(()),
        }
    }
}

/// `/proc/PID/fd/N` as a C path.
pub(crate) fn fd_path(pid: Pid, fd: Fd) -> Option<CString> {
    CString::new(format!("/proc/{pid}/fd/{fd}")).ok()
}

/// The (st_dev, st_ino) of `fd` in `pid`, `None` once it is gone.
pub(crate) fn file_key(pid: Pid, fd: Fd) -> Option<FileKey> {
    if pid == sys::getpid() {
        return sys::fstat_key(fd).ok();
    }
    let path = fd_path(pid, fd)?;
    sys::fstatat_key(libc::AT_FDCWD, &path).ok()
}

/// What `fd` of `pid` refers to (type, device number), `None` once it is gone.
pub(crate) fn file_stat(pid: Pid, fd: Fd) -> Option<sys::FileStat> {
    if pid == sys::getpid() {
        return sys::fstat_file(fd).ok();
    }
    let path = fd_path(pid, fd)?;
    sys::fstatat_file(libc::AT_FDCWD, &path).ok()
}

/// `readlink /proc/PID/fd/N`: `None` once the fd or the process is gone.
pub(crate) fn fd_target(pid: Pid, fd: Fd) -> Option<Vec<u8>> {
    let path = fd_path(pid, fd)?;
    sys::readlinkat(libc::AT_FDCWD, &path).ok()
}

/// The command name of `pid` (`/proc/PID/comm`, without its newline); `None` once
/// the process is gone.
pub fn command(pid: Pid) -> Option<Vec<u8>> {
    let path = CString::new(format!("/proc/{pid}/comm")).ok()?;
    let mut name = sys::read_small_file(&path).ok()?;
    if name.last() == Some(&b'\n') {
        name.pop();
    }
    Some(name)
}

/// Why `fd` of `pid` cannot be read, as the kernel says it for a self-compare of the
/// fd (a missing process, a zombie, an fd that is not open).
pub(crate) fn why_unreadable(pid: Pid, fd: Fd) -> Failure {
    match crate::ladder::kcmp_checked(pid, pid, sys::KCMP_FILE, fd, fd) {
        Err(failure) => failure,
        Ok(_) => error::dead_or_dying(pid).unwrap_or(Failure::Os {
            errno: libc::EAGAIN,
            pid: Some(pid),
            fd: Some(fd),
            detail: format!("fd {fd} of process {pid} changed while it was read; try again"),
        }),
    }
}
