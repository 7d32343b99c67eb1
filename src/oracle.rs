//! Real answers from the kernel: single comparisons with their fallback ladder, and the
//! oracles the grouping engine asks.
//!
//! The ladder, each rung exact: kcmp; for fds of this process, fstat buckets then
//! F_DUPFD_QUERY or the epoll EEXIST test; for another process's fds, a pidfd_getfd
//! copy (only when the caller opts in, since closing the copy runs the file's flush)
//! then the same-process rung. Where nothing can decide: KcmpUnavailableError.

use std::os::fd::{AsRawFd, OwnedFd};

use crate::fault::{self, Failure};
use crate::support;
use crate::sys::{self, Errno, Fd, KcmpOrder, Pid};

fn os_failure(errno: Errno, pid: Pid, fd: Option<Fd>, doing: &str) -> Failure {
    match errno.0 {
        libc::EBADF => match fd {
            Some(fd) => Failure::NotOpen { pid, fd },
            None => Failure::Os {
                errno: errno.0,
                pid: Some(pid),
                fd,
                detail: doing.to_string(),
            },
        },
        libc::ESRCH => Failure::NoProcess { pid },
        libc::EPERM | libc::EACCES => Failure::Denied { pid },
        e => Failure::Os {
            errno: e,
            pid: Some(pid),
            fd,
            detail: doing.to_string(),
        },
    }
}

/// Equality of two fds of this process without kcmp. `Ok(None)`: this rung cannot
/// decide the pair (a file that refuses epoll, on a kernel without F_DUPFD_QUERY).
pub fn same_local(a: Fd, b: Fd) -> Result<Option<bool>, Failure> {
    let me = sys::getpid();
    let ka = sys::fstat_key(a).map_err(|e| os_failure(e, me, Some(a), "fstat"))?;
    let kb = sys::fstat_key(b).map_err(|e| os_failure(e, me, Some(b), "fstat"))?;
    if ka != kb {
        return Ok(Some(false));
    }
    if a == b {
        return Ok(Some(true));
    }
    if support::dupfd_query_usable() {
        match sys::dupfd_query(a, b) {
            Ok(same) => return Ok(Some(same)),
            // Both passed fstat just now: an O_PATH fd that early 6.10 kernels refuse.
            Err(Errno(libc::EBADF)) => {}
            Err(_) => support::note_dupfd_query_refused(),
        }
    }
    same_by_epoll(a, b).map_err(|e| os_failure(e, me, Some(a), "the epoll equality test"))
}

/// Mesa's test: an epoll set keys registrations by (description, fd number), so adding
/// the same number twice fails with EEXIST only when both refer to one description.
fn same_by_epoll(a: Fd, b: Fd) -> Result<Option<bool>, Errno> {
    let ep = sys::epoll_create()?;
    let scratch = sys::dup_cloexec(a)?;
    match sys::epoll_add(&ep, scratch.as_raw_fd()) {
        Ok(()) => {}
        // Regular files and some devices refuse epoll (EPERM), O_PATH fds too (EBADF):
        // this rung cannot decide them.
        Err(Errno(libc::EPERM | libc::EBADF)) => return Ok(None),
        Err(e) => return Err(e),
    }
    sys::dup3_onto(b, &scratch)?;
    match sys::epoll_add(&ep, scratch.as_raw_fd()) {
        Err(Errno(libc::EEXIST)) => Ok(Some(true)),
        // `b` refusing what `a` accepted: another kind of file, so another description.
        Ok(()) | Err(Errno(libc::EPERM | libc::EBADF)) => Ok(Some(false)),
        Err(e) => Err(e),
    }
}

/// A copy of another process's fd, held only as long as one comparison needs it.
fn copy_fd(pid: Pid, fd: Fd) -> Result<OwnedFd, Failure> {
    let pidfd = sys::pidfd_open(pid, 0).map_err(|e| os_failure(e, pid, None, "pidfd_open"))?;
    sys::pidfd_getfd(&pidfd, fd).map_err(|e| os_failure(e, pid, Some(fd), "pidfd_getfd"))
}

fn undecided_failure(pairs: Vec<(Pid, Fd)>) -> Failure {
    match support::unavailable_failure() {
        Failure::Unavailable { errno, reason, .. } => Failure::Unavailable {
            errno,
            reason,
            undecided: pairs,
        },
        other => other,
    }
}

/// The (dev, ino) of an fd of any process: fstat for ours, /proc/PID/fd/N otherwise.
fn file_key((pid, fd): (Pid, Fd), me: Pid) -> Result<sys::FileKey, Failure> {
    if pid == me {
        return sys::fstat_key(fd).map_err(|e| os_failure(e, pid, Some(fd), "fstat"));
    }
    let path =
        CString::new(format!("/proc/{pid}/fd/{fd}")).map_err(|_| Failure::NotOpen { pid, fd })?;
    sys::fstatat_key(libc::AT_FDCWD, &path).map_err(|e| match e.0 {
        libc::ENOENT if sys::start_time(pid).is_err() => Failure::NoProcess { pid },
        libc::ENOENT => Failure::NotOpen { pid, fd },
        _ => os_failure(e, pid, Some(fd), "stat of /proc/PID/fd/N"),
    })
}

pub fn same_file(a: (Pid, Fd), b: (Pid, Fd), allow_pidfd_getfd: bool) -> Result<bool, Failure> {
    if support::kcmp_usable() {
        match sys::kcmp(a.0, b.0, sys::KCMP_FILE, a.1, b.1) {
            Ok(order) => return Ok(order == KcmpOrder::Equal),
            Err(e) => {
                let failure = fault::diagnose(a.0, b.0, sys::KCMP_FILE, a.1, b.1, e);
                support::note_failure(&failure);
                if !matches!(failure, Failure::Unavailable { .. }) {
                    return Err(failure);
                }
            }
        }
    }
    // Without kcmp: the batch's fallback ladder on a batch of two.
    let opts = FileOptions {
        order: GroupOrder::Fd,
        missing: Missing::Raise,
        allow_pidfd_getfd,
        report_undecided: false,
    };
    let found = classify_files(&[a, b], opts, || false)?;
    Ok(found
        .groups
        .iter()
        .any(|g| g.contains(&a) && g.contains(&b)))
}

pub fn same_epoll_target(
    pid1: Pid,
    fd: Fd,
    pid2: Pid,
    epfd: Fd,
    tfd: Fd,
    toff: i32,
) -> Result<bool, Failure> {
    support::require_kcmp()?;
    let slot = sys::EpollSlot {
        efd: epfd as u32,
        tfd: tfd as u32,
        toff: toff as u32,
    };
    match sys::kcmp_epoll_tfd(pid1, fd, pid2, &slot) {
        Ok(order) => Ok(order == KcmpOrder::Equal),
        Err(e) => {
            let failure = match e {
                sys::KcmpError::Errno(Errno(libc::ENOENT)) => Failure::Os {
                    errno: libc::ENOENT,
                    pid: Some(pid2),
                    fd: Some(epfd),
                    detail: format!(
                        "epoll fd {epfd} of process {pid2} has no registration {toff} of fd {tfd}"
                    ),
                },
                sys::KcmpError::Errno(Errno(libc::EINVAL)) => Failure::Os {
                    errno: libc::EINVAL,
                    pid: Some(pid2),
                    fd: Some(epfd),
                    detail: format!("fd {epfd} of process {pid2} is not an epoll fd"),
                },
                sys::KcmpError::Errno(Errno(libc::EBADF)) => {
                    let bad_fd = sys::kcmp(pid1, pid1, sys::KCMP_FILE, fd, fd).is_err();
                    if bad_fd {
                        Failure::NotOpen { pid: pid1, fd }
                    } else {
                        Failure::NotOpen {
                            pid: pid2,
                            fd: epfd,
                        }
                    }
                }
                other => fault::diagnose(pid1, pid2, sys::KCMP_VM, fd, epfd, other),
            };
            support::note_failure(&failure);
            Err(failure)
        }
    }
}

// ---- the engine's oracles ----

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::cmp::Ordering;
use std::ffi::CString;

use crate::engine::{self, Fault, GroupOrder, Key, Missing, Oracle};

/// A (pid, fd) pair: the item the file oracle classifies.
pub type FileRef = (Pid, Fd);

/// How many pidfds a batch may hold at most; beyond it (or a sixteenth of the soft fd
/// limit, if lower), a pid's start time guards reuse instead, so a batch over
/// thousands of processes holds a small, bounded number of fds.
const PIDFD_CAP: usize = 64;

fn pidfd_cap() -> usize {
    sys::soft_fd_limit().map_or(PIDFD_CAP, |limit| PIDFD_CAP.min(limit / 16))
}

/// Proof that a pid still names the process first seen under it.
enum Identity {
    Pidfd(OwnedFd),
    StartTime(u64),
}

fn identity_of(pid: Pid, held: usize, cap: usize) -> Result<Identity, Errno> {
    if held < cap {
        match sys::pidfd_open(pid, 0) {
            Ok(fd) => return Ok(Identity::Pidfd(fd)),
            // A thread id needs PIDFD_THREAD (Linux 6.9+); older kernels refuse it.
            Err(Errno(libc::ENOENT)) | Err(Errno(libc::EINVAL)) => {
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

/// Pids seen in a batch, each with what proves it was not reused meanwhile.
#[derive(Default)]
pub struct Tracked {
    ids: HashMap<Pid, Identity>,
    pidfds: usize,
    cap: Option<usize>,
}

impl Tracked {
    /// Starts tracking `pid` (ESRCH when it does not exist); returns the pidfd it
    /// opened for that, if any, which is then ours and never the caller's.
    fn track(&mut self, pid: Pid, me: Pid) -> Result<Option<Fd>, Errno> {
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
    fn has_vanished(&self, pid: Pid) -> bool {
        self.ids.get(&pid).is_some_and(|id| !still_same(pid, id))
    }

    /// Pids that exited (and may have been reused) since they were first seen.
    fn vanished(&self) -> Vec<Pid> {
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

/// Options of one file classification.
#[derive(Clone, Copy)]
pub struct FileOptions {
    pub order: GroupOrder,
    pub missing: Missing,
    pub allow_pidfd_getfd: bool,
    /// When true, pairs no exact method can decide are returned, not raised.
    pub report_undecided: bool,
}

/// Answers the engine about (pid, fd) pairs, in this or other processes.
pub struct FileOracle<C: FnMut() -> bool> {
    me: Pid,
    use_kcmp: bool,
    dupfd_query: bool,
    opts: FileOptions,
    /// The /proc/PID/fd directory of the pid being keyed (items arrive sorted by pid).
    dir: Option<(Pid, OwnedFd)>,
    /// Every fd number this call opened: never reported as one of the caller's.
    ours: HashSet<Fd>,
    tracked: Tracked,
    local_pids: HashMap<Pid, bool>,
    undecided: Vec<FileRef>,
    interrupted: C,
}

impl<C: FnMut() -> bool> FileOracle<C> {
    pub fn new(opts: FileOptions, interrupted: C) -> Self {
        let use_kcmp = support::kcmp_usable();
        FileOracle {
            me: sys::getpid(),
            use_kcmp,
            dupfd_query: support::dupfd_query_usable(),
            opts,
            dir: None,
            ours: HashSet::default(),
            tracked: Tracked::default(),
            local_pids: HashMap::default(),
            undecided: Vec::new(),
            interrupted,
        }
    }

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

    fn gone_or_fail(&self, failure: Failure, a: FileRef, b: FileRef) -> Fault<FileRef, Failure> {
        match failure {
            Failure::NotOpen { pid, fd } => Fault::Gone((pid, fd)),
            Failure::NoProcess { pid } | Failure::Exited { pid }
                if self.opts.missing == Missing::Skip =>
            {
                Fault::Gone(if a.0 == pid { a } else { b })
            }
            other => Fault::Fail(other),
        }
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

    /// A copy of `r` in this process when it is another process's fd (opt-in only).
    fn local(&mut self, r: FileRef) -> Result<Option<(Fd, Option<OwnedFd>)>, Failure> {
        if self.is_local(r.0) {
            return Ok(Some((r.1, None)));
        }
        if !self.opts.allow_pidfd_getfd {
            return Ok(None);
        }
        let copy = copy_fd(r.0, r.1)?;
        let raw = copy.as_raw_fd();
        self.ours.insert(raw);
        Ok(Some((raw, Some(copy))))
    }

    /// Equality without kcmp; records pairs no rung can decide and answers "different"
    /// for them, so the batch goes on and reports every undecided fd at once.
    fn same_fallback(&mut self, a: FileRef, b: FileRef) -> Result<bool, Fault<FileRef, Failure>> {
        let la = self.local(a).map_err(|f| self.gone_or_fail(f, a, b))?;
        let lb = self.local(b).map_err(|f| self.gone_or_fail(f, a, b))?;
        let answer = match (&la, &lb) {
            (Some((fa, _)), Some((fb, _))) => same_local(*fa, *fb),
            _ => Ok(None),
        };
        drop(la);
        drop(lb);
        let answer = answer.map_err(|f| match f {
            // A copy's number is ours: name the caller's fd instead.
            Failure::NotOpen { fd, .. } => Fault::Gone(if fd == a.1 { a } else { b }),
            other => Fault::Fail(other),
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

    /// The refs no exact method could decide, or the error naming them.
    fn undecided_refs(&mut self) -> Result<Vec<FileRef>, Failure> {
        let mut undecided = std::mem::take(&mut self.undecided);
        undecided.sort_unstable();
        if !undecided.is_empty() && !self.opts.report_undecided {
            return Err(undecided_failure(undecided));
        }
        Ok(undecided)
    }
}

fn open_fd_dir(pid: Pid) -> Result<OwnedFd, Failure> {
    let path = CString::new(format!("/proc/{pid}/fd")).map_err(|_| Failure::NoProcess { pid })?;
    sys::open_dir(&path).map_err(|e| match e.0 {
        libc::ENOENT | libc::ESRCH => Failure::NoProcess { pid },
        libc::EACCES | libc::EPERM => Failure::Denied { pid },
        errno => Failure::Os {
            errno,
            pid: Some(pid),
            fd: None,
            detail: format!("cannot open /proc/{pid}/fd"),
        },
    })
}

/// The fds open in `pid`, ascending, never including the directory fd used to read them.
pub fn open_fds(pid: Pid) -> Result<Vec<Fd>, Failure> {
    let dir = open_fd_dir(pid)?;
    let fds = sys::list_fds(&dir).map_err(|e| os_failure(e, pid, None, "reading /proc/PID/fd"))?;
    let me = sys::getpid();
    // A thread id of ours lists our own fd table, this directory fd included.
    let ours = pid == me
        || (support::kcmp_usable()
            && sys::kcmp(me, pid, sys::KCMP_FILES, 0, 0) == Ok(KcmpOrder::Equal));
    let own = dir.as_raw_fd();
    Ok(fds.into_iter().filter(|&fd| !(ours && fd == own)).collect())
}

fn kcmp_order(o: KcmpOrder) -> Ordering {
    match o {
        KcmpOrder::Equal => Ordering::Equal,
        KcmpOrder::Less => Ordering::Less,
        // Unordered is reserved and never returned by current kernels: "unequal".
        KcmpOrder::Greater | KcmpOrder::Unordered => Ordering::Greater,
    }
}

impl<C: FnMut() -> bool> Oracle for FileOracle<C> {
    type Item = FileRef;
    type Error = Failure;

    fn key(&mut self, r: FileRef) -> Result<Key, Fault<FileRef, Failure>> {
        let (pid, fd) = r;
        let skip = self.opts.missing == Missing::Skip;
        if self.is_local(pid) {
            if self.ours.contains(&fd) {
                return Err(Fault::Gone(r));
            }
            return match sys::fstat_key(fd) {
                Ok(k) => Ok(k),
                Err(Errno(libc::EBADF)) => Err(Fault::Gone(r)),
                Err(e) => Err(Fault::Fail(os_failure(e, pid, Some(fd), "fstat"))),
            };
        }
        match self.tracked.track(pid, self.me) {
            Ok(Some(pidfd)) => {
                self.ours.insert(pidfd);
            }
            Ok(None) => {}
            Err(e) => {
                let failure = os_failure(e, pid, None, "pidfd_open");
                return Err(match failure {
                    Failure::NoProcess { .. } if skip => Fault::Gone(r),
                    other => Fault::Fail(other),
                });
            }
        }
        let dir = match self.proc_dir(pid) {
            Ok(d) => d,
            Err(Failure::NoProcess { .. }) if skip => return Err(Fault::Gone(r)),
            Err(f) => return Err(Fault::Fail(f)),
        };
        let name = CString::new(fd.to_string()).map_err(|_| Fault::Gone(r))?;
        match sys::fstatat_key(dir, &name) {
            Ok(k) => Ok(k),
            Err(Errno(libc::ENOENT)) | Err(Errno(libc::EBADF)) => {
                // Every entry vanishes when the process exits: tell the two apart.
                if !skip && self.tracked.has_vanished(pid) {
                    return Err(Fault::Fail(Failure::Vanished { pid }));
                }
                if !skip && sys::start_time(pid) == Err(Errno(libc::ENOENT)) {
                    return Err(Fault::Fail(Failure::NoProcess { pid }));
                }
                if !skip && sys::is_zombie(pid) {
                    return Err(Fault::Fail(Failure::Exited { pid }));
                }
                Err(Fault::Gone(r))
            }
            Err(e) => Err(Fault::Fail(os_failure(
                e,
                pid,
                Some(fd),
                "stat of /proc/PID/fd/N",
            ))),
        }
    }

    fn can_order(&self) -> bool {
        self.use_kcmp
    }

    fn compare(&mut self, a: FileRef, b: FileRef) -> Result<Ordering, Fault<FileRef, Failure>> {
        for _ in 0..8 {
            let err = match sys::kcmp(a.0, b.0, sys::KCMP_FILE, a.1, b.1) {
                Ok(o) => return Ok(kcmp_order(o)),
                Err(e) => e,
            };
            if err != sys::KcmpError::Errno(Errno(libc::EBADF)) {
                let failure = fault::diagnose(a.0, b.0, sys::KCMP_FILE, a.1, b.1, err);
                support::note_failure(&failure);
                return Err(self.gone_or_fail(failure, a, b));
            }
            // Blame only an fd seen closed: one closed and reopened since the call
            // looks open, and the other one may never have changed. kcmp itself can
            // answer EBADF for an fd that another thread is dup2-ing over at that
            // instant, so a closed fd is confirmed by stat (which opens no fd) too.
            for (pid, fd) in [a, b] {
                if sys::kcmp(pid, pid, sys::KCMP_FILE, fd, fd).is_err()
                    && file_key((pid, fd), self.me).is_err()
                {
                    // Never for our own pid: this process is no zombie, and reading
                    // /proc would open an fd while the caller's threads change theirs.
                    let failure = if pid != self.me && sys::is_zombie(pid) {
                        Failure::Exited { pid }
                    } else {
                        Failure::NotOpen { pid, fd }
                    };
                    return Err(self.gone_or_fail(failure, a, b));
                }
            }
        }
        Err(Fault::Fail(churning()))
    }

    fn same(&mut self, a: FileRef, b: FileRef) -> Result<Option<bool>, Fault<FileRef, Failure>> {
        if self.dupfd_query && self.is_local(a.0) && self.is_local(b.0) {
            match sys::dupfd_query(a.1, b.1) {
                Ok(same) => return Ok(Some(same)),
                Err(Errno(libc::EBADF)) if sys::fstat_key(a.1).is_err() => {
                    return Err(Fault::Gone(a))
                }
                Err(Errno(libc::EBADF)) if sys::fstat_key(b.1).is_err() => {
                    return Err(Fault::Gone(b))
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

    fn checkpoint(&mut self) -> Result<(), Failure> {
        checkpoint(&mut self.interrupted)
    }

    fn undecided(&mut self, a: FileRef, b: FileRef) -> Failure {
        undecided_failure(vec![a, b])
    }

    fn instability(&mut self) -> Option<Failure> {
        Some(churning())
    }
}

/// What a file classification found.
pub struct Classified {
    pub groups: Vec<Vec<FileRef>>,
    /// Refs no exact method could decide (only with `report_undecided`).
    pub undecided: Vec<FileRef>,
    pub stats: engine::Stats,
}

/// Ctrl-C between chunks of a batch: the binding's check of pending signals.
fn checkpoint(interrupted: &mut impl FnMut() -> bool) -> Result<(), Failure> {
    if interrupted() {
        Err(Failure::Interrupted)
    } else {
        Ok(())
    }
}

/// Groups (pid, fd) pairs by open file description.
pub fn classify_files<C: FnMut() -> bool>(
    refs: &[FileRef],
    opts: FileOptions,
    mut interrupted: C,
) -> Result<Classified, Failure> {
    let mut refs = refs.to_vec();
    let mut stats = engine::Stats::default();
    for _ in 0..engine::MAX_ATTEMPTS {
        let mut oracle = FileOracle::new(opts, &mut interrupted);
        if opts.order == GroupOrder::Kernel && !oracle.use_kcmp {
            return Err(order_needs_kcmp());
        }
        let outcome = engine::classify(&mut oracle, &refs, opts.order, opts.missing);
        let groups = match outcome {
            Ok((groups, more)) => {
                stats.add(more);
                groups
            }
            // An fd "not open" in a pid that is no longer the process first seen there.
            Err(Fault::Gone((pid, _))) if oracle.tracked.has_vanished(pid) => {
                return Err(Failure::Vanished { pid })
            }
            Err(Fault::Gone((pid, fd))) => return Err(Failure::NotOpen { pid, fd }),
            Err(Fault::Fail(failure)) => return Err(failure),
        };
        oracle.dir = None;
        let vanished = oracle.tracked.vanished();
        if vanished.is_empty() {
            let undecided = oracle.undecided_refs()?;
            return Ok(Classified {
                groups,
                undecided,
                stats,
            });
        }
        if opts.missing == Missing::Raise {
            return Err(Failure::Vanished { pid: vanished[0] });
        }
        // Answers given through a pid that was reused meanwhile may have misplaced the
        // others' fds too: classify again without that pid.
        refs.retain(|r| !vanished.contains(&r.0));
    }
    Err(churning())
}

/// The error of a batch whose processes or fds kept changing under every attempt.
fn churning() -> Failure {
    Failure::Os {
        errno: libc::EAGAIN,
        pid: None,
        fd: None,
        detail: format!(
            "the fds or processes kept changing while they were classified \
             ({} attempts); try again",
            engine::MAX_ATTEMPTS
        ),
    }
}

fn order_needs_kcmp() -> Failure {
    match support::unavailable_failure() {
        Failure::Unavailable {
            errno,
            reason,
            undecided,
        } => Failure::Unavailable {
            errno,
            reason: format!("order=\"kernel\" needs kcmp(2), and {reason}"),
            undecided,
        },
        other => other,
    }
}

/// Answers the engine about tasks, for one task resource type.
pub struct TaskOracle<C: FnMut() -> bool> {
    ty: i32,
    me: Pid,
    missing: Missing,
    tracked: Tracked,
    interrupted: C,
}

impl<C: FnMut() -> bool> Oracle for TaskOracle<C> {
    type Item = Pid;
    type Error = Failure;

    fn key(&mut self, pid: Pid) -> Result<Key, Fault<Pid, Failure>> {
        // A zombie's absent resources would compare equal to every other zombie's.
        if pid != self.me && sys::is_zombie(pid) {
            return Err(match self.missing {
                Missing::Skip => Fault::Gone(pid),
                Missing::Raise => Fault::Fail(Failure::Exited { pid }),
            });
        }
        match self.tracked.track(pid, self.me) {
            Ok(_) => Ok((0, 0)),
            Err(Errno(libc::ESRCH)) if self.missing == Missing::Skip => Err(Fault::Gone(pid)),
            Err(Errno(libc::ESRCH)) => Err(Fault::Fail(Failure::NoProcess { pid })),
            Err(e) => Err(Fault::Fail(os_failure(e, pid, None, "pidfd_open"))),
        }
    }

    fn can_order(&self) -> bool {
        true
    }

    fn compare(&mut self, a: Pid, b: Pid) -> Result<Ordering, Fault<Pid, Failure>> {
        match sys::kcmp(a, b, self.ty, 0, 0) {
            Ok(o) => Ok(kcmp_order(o)),
            Err(e) => {
                let failure = fault::diagnose(a, b, self.ty, 0, 0, e);
                support::note_failure(&failure);
                match failure {
                    Failure::NoProcess { pid } if self.missing == Missing::Skip => {
                        Err(Fault::Gone(pid))
                    }
                    other => Err(Fault::Fail(other)),
                }
            }
        }
    }

    fn same(&mut self, _a: Pid, _b: Pid) -> Result<Option<bool>, Fault<Pid, Failure>> {
        Ok(None)
    }

    fn checkpoint(&mut self) -> Result<(), Failure> {
        checkpoint(&mut self.interrupted)
    }

    fn undecided(&mut self, a: Pid, _b: Pid) -> Failure {
        Failure::NoProcess { pid: a }
    }
}

/// Groups tasks sharing the resource `ty` (VM, FILES, FS, SIGHAND, IO, SYSVSEM).
pub fn classify_tasks<C: FnMut() -> bool>(
    pids: &[Pid],
    ty: i32,
    missing: Missing,
    mut interrupted: C,
) -> Result<Vec<Vec<Pid>>, Failure> {
    support::require_kcmp()?;
    let mut pids = pids.to_vec();
    for _ in 0..engine::MAX_ATTEMPTS {
        let mut oracle = TaskOracle {
            ty,
            me: sys::getpid(),
            missing,
            tracked: Tracked::default(),
            interrupted: &mut interrupted,
        };
        let (groups, _) =
            engine::classify(&mut oracle, &pids, GroupOrder::Fd, missing).map_err(|f| match f {
                Fault::Gone(pid) => Failure::NoProcess { pid },
                Fault::Fail(failure) => failure,
            })?;
        let vanished = oracle.tracked.vanished();
        if vanished.is_empty() {
            return Ok(groups);
        }
        if missing == Missing::Raise {
            return Err(Failure::Vanished { pid: vanished[0] });
        }
        // Answers through a reused pid may have misplaced the others: again without it.
        pids.retain(|p| !vanished.contains(p));
    }
    Err(churning())
}
