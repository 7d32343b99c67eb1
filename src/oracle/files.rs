//! The file oracle: answers the engine about (pid, fd) pairs of any process.
//!
//! Keys are (st_dev, st_ino) from fstat (our fds) or /proc/PID/fd/N (another
//! process's); comparisons are kcmp, or the ladder's rungs where kcmp is unusable.
//! Knows `sys`, `error`, `support`, `ladder` and the engine's `Oracle` trait.

use std::cmp::Ordering;
use std::ffi::CString;
use std::os::fd::AsRawFd;

use crate::sys::HeldFd;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use super::pids::PidGuard;
use super::{churn_failure, kcmp_order, FileOptions, FileRef};
use crate::engine::{self, Key, Missing, Oracle, OracleError};
use crate::error::{self, Failure};
use crate::ladder::{copy_fd, same_local, undecided_failure};
use crate::pool::map_chunks;
use crate::support;
use crate::sys::{self, Errno, Fd, KcmpOrder, Pid};

/// The key of another process's open fds whose file has no inode left to stat.
const UNSTATTABLE: Key = (u64::MAX, u64::MAX);

/// Other processes' fds a batch needs before its keys are fetched in parallel: below
/// it, starting a thread costs more than the stats it would share.
const PREFETCH_MIN: usize = 64;

/// Answers the engine about (pid, fd) pairs, in this or other processes.
pub struct FileOracle {
    me: Pid,
    /// kcmp was usable when the run started: compare by it, else climb the ladder.
    use_kcmp: bool,
    /// F_DUPFD_QUERY answers `same` for our own fds (cleared if refused mid-run).
    dupfd_query: bool,
    opts: FileOptions,
    /// The /proc/PID/fd directory of the pid being keyed (items arrive sorted by pid).
    dir: Option<(Pid, HeldFd)>,
    /// Every fd number this call opened: never reported as one of the caller's.
    ours: HashSet<Fd>,
    /// The other processes keyed so far, guarded against pid reuse.
    pub(super) pids: PidGuard,
    /// Pid -> whether it shares our fd table (see `is_local`).
    local_pids: HashMap<Pid, bool>,
    /// Refs no rung of the ladder could decide, reported when the run ends.
    undecided: Vec<FileRef>,
    /// Other processes' keys stat'ed in parallel before the engine ran: each served
    /// once (a ref keyed again, after a change, is stat'ed afresh).
    prefetched: HashMap<FileRef, Key>,
    /// Keys handed in for the first run (a shard of a scan): served like prefetched
    /// ones, and the run's own prefetch is skipped.
    seeded: bool,
}

impl FileOracle {
    /// A fresh oracle for one run of a batch, with the capabilities known now.
    pub fn new(opts: FileOptions) -> Self {
        let use_kcmp = support::kcmp_usable();
        FileOracle {
            me: sys::getpid(),
            use_kcmp,
            dupfd_query: support::dupfd_query_usable(),
            opts,
            dir: None,
            ours: HashSet::default(),
            pids: PidGuard::default(),
            local_pids: HashMap::default(),
            undecided: Vec::new(),
            prefetched: HashMap::default(),
            seeded: false,
        }
    }

    /// Hands in keys stat'ed already (each served once, as prefetched ones are).
    pub(super) fn seed_keys(&mut self, keys: HashMap<FileRef, Key>) {
        self.prefetched = keys;
        self.seeded = true;
    }

    /// Whether kcmp was usable when this run started.
    pub fn uses_kcmp(&self) -> bool {
        self.use_kcmp
    }

    /// Closes the /proc/PID/fd directory held between keys, at the end of a run.
    pub(super) fn close_dir(&mut self) {
        self.dir = None;
    }

    /// The /proc/PID/fd directory of `pid`, kept open while its fds are keyed.
    fn proc_dir(&mut self, pid: Pid) -> Result<std::os::fd::RawFd, Failure> {
        if let Some((p, d)) = &self.dir {
            if *p == pid {
                return Ok(d.as_raw_fd());
            }
        }
        self.dir = None;
        let d = open_fd_dir(pid)?;
        let raw = d.as_raw_fd();
        self.ours.insert(raw);
        self.dir = Some((pid, d));
        Ok(raw)
    }

    /// A failure about `a` or `b` as the engine needs it: the item gone (an fd not
    /// open; a process gone, under `Missing::Skip`), or fatal.
    fn gone_or_fatal(
        &self,
        failure: Failure,
        a: FileRef,
        b: FileRef,
    ) -> OracleError<FileRef, Failure> {
        let failure = self.pids.explain(failure);
        match failure {
            Failure::NotOpen { pid, fd } => OracleError::ItemGone((pid, fd)),
            Failure::NoProcess { pid } | Failure::Zombie { pid } | Failure::Exited { pid }
                if self.opts.missing == Missing::Skip =>
            {
                OracleError::ItemGone(if a.0 == pid { a } else { b })
            }
            other => OracleError::Fatal(other),
        }
    }

    /// Starts guarding `pid` unless it shares our fd table (then its fds are ours).
    pub(super) fn track_pid(&mut self, pid: Pid) -> Result<(), Failure> {
        if self.is_local(pid) {
            return Ok(());
        }
        if let Some(pidfd) = self.pids.track(pid, self.me)? {
            self.ours.insert(pidfd);
        }
        Ok(())
    }

    /// Whether `pid` uses our fd table (this process, or one of its threads by tid):
    /// its fd numbers are ours, so fstat and F_DUPFD_QUERY answer for them directly.
    fn is_local(&mut self, pid: Pid) -> bool {
        if pid == self.me {
            return true;
        }
        if let Some(&local) = self.local_pids.get(&pid) {
            return local;
        }
        let local =
            self.use_kcmp && sys::kcmp(self.me, pid, sys::KCMP_FILES, 0, 0) == Ok(KcmpOrder::Equal);
        self.local_pids.insert(pid, local);
        local
    }

    /// `r` as an fd number of this process: its own number when `r` is in our fd
    /// table, else a pidfd_getfd copy (opt-in only; the copy is held until dropped),
    /// else `None`.
    fn as_local_fd(&mut self, r: FileRef) -> Result<Option<(Fd, Option<HeldFd>)>, Failure> {
        if self.is_local(r.0) {
            return Ok(Some((r.1, None)));
        }
        // Refused to this process (a sandbox): the pair is undecided, as without the
        // opt-in, never an access error blamed on the other process.
        if !self.opts.allow_pidfd_getfd || !support::pidfd_getfd_usable() {
            return Ok(None);
        }
        let copy = copy_fd(r.0, r.1)?;
        let raw = copy.as_raw_fd();
        self.ours.insert(raw);
        Ok(Some((raw, Some(copy))))
    }

    /// Equality without kcmp; records pairs no rung can decide and answers "different"
    /// for them, so the batch goes on and reports every undecided fd at once.
    fn same_fallback(
        &mut self,
        a: FileRef,
        b: FileRef,
    ) -> Result<bool, OracleError<FileRef, Failure>> {
        let la = self
            .as_local_fd(a)
            .map_err(|f| self.gone_or_fatal(f, a, b))?;
        let lb = self
            .as_local_fd(b)
            .map_err(|f| self.gone_or_fatal(f, a, b))?;
        let answer = match (&la, &lb) {
            (Some((fa, _)), Some((fb, _))) => same_local(*fa, *fb),
            _ => Ok(None),
        };
        drop(la);
        drop(lb);
        let answer = answer.map_err(|f| match f {
            // A copy's number is ours: name the caller's fd instead.
            Failure::NotOpen { fd, .. } => OracleError::ItemGone(if fd == a.1 { a } else { b }),
            other => OracleError::Fatal(other),
        })?;
        match answer {
            Some(same) => Ok(same),
            None => {
                for r in [a, b] {
                    if !self.undecided.contains(&r) {
                        self.undecided.push(r);
                    }
                }
                Ok(false)
            }
        }
    }

    /// Stats the other processes' fds among `refs` in parallel threads, keeping the
    /// keys for `key` to serve. Only successes are kept: a ref whose stat failed is
    /// keyed again in turn, where every failure is told apart as before. Runs after
    /// the batch's pids are guarded, so a key served later was taken of the process
    /// the guard checks at the end of the run.
    pub(super) fn prefetch_keys(
        &mut self,
        refs: &[FileRef],
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<(), Failure> {
        if std::mem::take(&mut self.seeded) {
            return Ok(());
        }
        self.prefetched.clear();
        let mut foreign: Vec<FileRef> = Vec::with_capacity(refs.len());
        for &r in refs {
            if !self.is_local(r.0) {
                foreign.push(r);
            }
        }
        if foreign.len() < PREFETCH_MIN {
            return Ok(());
        }
        foreign.sort_unstable();
        foreign.dedup();
        let keys = map_chunks(&foreign, stat_keys, interrupted)?;
        self.prefetched.reserve(foreign.len());
        for (r, key) in foreign.into_iter().zip(keys) {
            if let Some(key) = key {
                self.prefetched.insert(r, key);
            }
        }
        Ok(())
    }

    /// The refs no exact method could decide, or the error naming them.
    pub(super) fn undecided_refs(&mut self) -> Result<Vec<FileRef>, Failure> {
        let mut undecided = std::mem::take(&mut self.undecided);
        undecided.sort_unstable();
        if !undecided.is_empty() && !self.opts.report_undecided {
            return Err(undecided_failure(undecided));
        }
        Ok(undecided)
    }
}

/// Opens /proc/PID/fd, with the failure naming `pid` when it cannot.
pub fn open_fd_dir(pid: Pid) -> Result<HeldFd, Failure> {
    let path = CString::new(format!("/proc/{pid}/fd")).map_err(|_| Failure::NoProcess { pid })?;
    sys::open_dir(&path).map_err(|e| match e.0 {
        libc::ENOENT | libc::ESRCH => Failure::NoProcess { pid },
        libc::EACCES | libc::EPERM => Failure::Denied { pid },
        _ if error::is_exhaustion(e) => {
            Failure::exhausted(e, Some(pid), None, &format!("opening /proc/{pid}/fd"))
        }
        errno => Failure::Os {
            errno,
            pid: Some(pid),
            fd: None,
            detail: format!("cannot open /proc/{pid}/fd"),
        },
    })
}

/// Keys: the (st_dev, st_ino) of an item, or why it has none.
impl FileOracle {
    /// An fd in our own fd table: fstat, and never one of the fds this call opened.
    fn local_key(&self, r: FileRef) -> Result<Key, OracleError<FileRef, Failure>> {
        let (pid, fd) = r;
        if self.ours.contains(&fd) {
            return Err(OracleError::ItemGone(r));
        }
        match sys::fstat_key(fd) {
            Ok(k) => Ok(k),
            Err(Errno(libc::EBADF)) => Err(OracleError::ItemGone(r)),
            Err(e) => Err(OracleError::Fatal(Failure::from_errno(
                e,
                pid,
                Some(fd),
                "fstat",
            ))),
        }
    }

    /// Another process's fd: its pid guarded first, its /proc/PID/fd opened, then a
    /// stat of /proc/PID/fd/N (taken in advance by `prefetch_keys` the first time,
    /// when it succeeded).
    fn foreign_key(&mut self, r: FileRef) -> Result<Key, OracleError<FileRef, Failure>> {
        let (pid, fd) = r;
        let skip = self.opts.missing == Missing::Skip;
        match self.track_pid(pid) {
            Ok(()) => {}
            Err(f) if skip && f.gone_kind().is_some() => return Err(OracleError::ItemGone(r)),
            Err(f) => return Err(OracleError::Fatal(f)),
        }
        let dir = match self.proc_dir(pid) {
            Ok(d) => d,
            Err(Failure::NoProcess { .. }) if skip => return Err(OracleError::ItemGone(r)),
            Err(f) => return Err(OracleError::Fatal(self.pids.explain(f))),
        };
        // Served only while the process's fd directory still opens, as a stat would be.
        if let Some(key) = self.prefetched.remove(&r) {
            return Ok(key);
        }
        let name = CString::new(fd.to_string()).map_err(|_| OracleError::ItemGone(r))?;
        match sys::fstatat_key(dir, &name) {
            Ok(k) => Ok(k),
            // An fd kcmp still finds open whose file cannot be stat'ed (a /proc
            // directory of a process reaped since): one bucket holds all such fds, none
            // of which can share a description with a file that can be stat'ed.
            Err(Errno(libc::ENOENT))
                if self.use_kcmp
                    && sys::kcmp(pid, pid, sys::KCMP_FILE, fd, fd) == Ok(KcmpOrder::Equal) =>
            {
                Ok(UNSTATTABLE)
            }
            Err(Errno(libc::ENOENT | libc::EBADF)) => Err(self.entry_missing(r)),
            Err(e) => Err(OracleError::Fatal(Failure::from_errno(
                e,
                pid,
                Some(fd),
                "stat of /proc/PID/fd/N",
            ))),
        }
    }

    /// /proc/PID/fd/N is gone. Every entry vanishes when the process exits: under
    /// `Missing::Raise` tell an exit, a pid that never existed and a zombie apart from
    /// one closed fd.
    fn entry_missing(&self, r: FileRef) -> OracleError<FileRef, Failure> {
        let pid = r.0;
        if self.opts.missing == Missing::Skip {
            return OracleError::ItemGone(r);
        }
        if self.pids.has_vanished(pid) {
            return OracleError::Fatal(Failure::Exited { pid });
        }
        OracleError::ItemGone(r)
    }
}

impl Oracle for FileOracle {
    type Item = FileRef;
    type Error = Failure;

    fn key(&mut self, r: FileRef) -> Result<Key, OracleError<FileRef, Failure>> {
        if self.is_local(r.0) {
            self.local_key(r)
        } else {
            self.foreign_key(r)
        }
    }

    fn can_order(&self) -> bool {
        self.use_kcmp
    }

    fn compare(
        &mut self,
        a: FileRef,
        b: FileRef,
    ) -> Result<Ordering, OracleError<FileRef, Failure>> {
        // An EBADF with both fds found open again is a dup2 race: ask again, as often
        // as a batch reruns, then give up with the same churn error.
        for _ in 0..engine::MAX_ATTEMPTS {
            let err = match sys::kcmp(a.0, b.0, sys::KCMP_FILE, a.1, b.1) {
                Ok(o) => return Ok(kcmp_order(o)),
                Err(e) => e,
            };
            if err != sys::KcmpError::Errno(Errno(libc::EBADF)) {
                let failure = error::diagnose(a.0, b.0, sys::KCMP_FILE, a.1, b.1, err);
                support::note_failure(&failure);
                return Err(self.gone_or_fatal(failure, a, b));
            }
            // Blame only an fd seen closed: one closed and reopened since the call
            // looks open, and the other one may never have changed. kcmp itself can
            // answer EBADF for an fd that another thread is dup2-ing over at that
            // instant, so a closed fd is confirmed by stat (which opens no fd) too.
            for (pid, fd) in [a, b] {
                if sys::kcmp(pid, pid, sys::KCMP_FILE, fd, fd).is_err()
                    && file_key((pid, fd), self.me).is_err()
                {
                    // A process that died has no fds: `gone_or_fatal` asks the guard
                    // before an fd is blamed (never for our own pid, which lives).
                    return Err(self.gone_or_fatal(Failure::NotOpen { pid, fd }, a, b));
                }
            }
        }
        Err(OracleError::Fatal(churn_failure()))
    }

    fn same(
        &mut self,
        a: FileRef,
        b: FileRef,
    ) -> Result<Option<bool>, OracleError<FileRef, Failure>> {
        if self.dupfd_query && self.is_local(a.0) && self.is_local(b.0) {
            match sys::dupfd_query(a.1, b.1) {
                Ok(same) => return Ok(Some(same)),
                Err(Errno(libc::EBADF)) if sys::fstat_key(a.1).is_err() => {
                    return Err(OracleError::ItemGone(a))
                }
                Err(Errno(libc::EBADF)) if sys::fstat_key(b.1).is_err() => {
                    return Err(OracleError::ItemGone(b))
                }
                // Both are open: an O_PATH fd, which early 6.10 kernels refuse here.
                Err(Errno(libc::EBADF)) => {}
                // Refused since the probe (a filter installed later): stop asking.
                Err(_) => {
                    self.dupfd_query = false;
                    support::note_dupfd_query_refused();
                }
            }
        }
        if self.use_kcmp {
            return Ok(None);
        }
        self.same_fallback(a, b).map(Some)
    }

    fn undecided_error(&mut self, a: FileRef, b: FileRef) -> Failure {
        undecided_failure(vec![a, b])
    }

    fn churn_error(&mut self) -> Option<Failure> {
        Some(churn_failure())
    }
}

/// The keys of other processes' fds, `None` where the stat failed: the sequential
/// keying tells the failures apart. Stats by path, so the threads hold no fd (a
/// batch keeps holding at most one /proc directory).
pub(super) fn stat_keys(refs: &[FileRef]) -> Vec<Option<Key>> {
    refs.iter()
        .map(|&(pid, fd)| {
            let path = CString::new(format!("/proc/{pid}/fd/{fd}")).ok()?;
            sys::fstatat_key(libc::AT_FDCWD, &path).ok()
        })
        .collect()
}

/// The (dev, ino) of an fd of any process: fstat for ours, /proc/PID/fd/N otherwise.
fn file_key((pid, fd): (Pid, Fd), me: Pid) -> Result<sys::FileKey, Failure> {
    if pid == me {
        return sys::fstat_key(fd).map_err(|e| Failure::from_errno(e, pid, Some(fd), "fstat"));
    }
    let path =
        CString::new(format!("/proc/{pid}/fd/{fd}")).map_err(|_| Failure::NotOpen { pid, fd })?;
    sys::fstatat_key(libc::AT_FDCWD, &path).map_err(|e| match e.0 {
        libc::ENOENT if sys::start_time(pid).is_err() => Failure::NoProcess { pid },
        libc::ENOENT => Failure::NotOpen { pid, fd },
        _ => Failure::from_errno(e, pid, Some(fd), "stat of /proc/PID/fd/N"),
    })
}

#[cfg(test)]
mod tests;
