//! What this process may use: kcmp, F_DUPFD_QUERY, pidfd_getfd.
//!
//! Probed lazily and cached in atomics (no lock on the hot path). A forked child forgets
//! the answers (an atfork handler clears them) and probes again on first use; an EPERM
//! or ENOSYS that only a policy can explain, seen at call time, updates the cache, since
//! seccomp filters are installed later than we probe and are never removed.
//!
//! Knows `sys` and `error` only; never PyO3.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};
use std::sync::Once;

use crate::error::{self, Failure};
use crate::sys;

/// What is known of one capability in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not probed yet (or forgotten: after fork, or on `support(refresh=True)`).
    Unknown,
    /// Probed, and it works.
    Usable,
    /// The kernel lacks it (ENOSYS, or an older kernel refusing the command).
    Missing,
    /// A policy (seccomp, or our own `disable()`) refuses it.
    Refused,
}

impl State {
    /// The atomic's byte: only `StateCell` converts, so states never leak as numbers.
    const fn to_u8(self) -> u8 {
        match self {
            State::Unknown => 0,
            State::Usable => 1,
            State::Missing => 2,
            State::Refused => 3,
        }
    }

    const fn from_u8(v: u8) -> State {
        match v {
            1 => State::Usable,
            2 => State::Missing,
            3 => State::Refused,
            _ => State::Unknown,
        }
    }
}

/// A capability's `State`, lock-free: read on every call, written on probes.
struct StateCell(AtomicU8);

impl StateCell {
    const fn new() -> StateCell {
        StateCell(AtomicU8::new(State::Unknown.to_u8()))
    }

    fn get(&self) -> State {
        State::from_u8(self.0.load(Ordering::Relaxed))
    }

    fn set(&self, state: State) {
        self.0.store(state.to_u8(), Ordering::Relaxed);
    }
}

static KCMP: StateCell = StateCell::new();
/// F_DUPFD_QUERY and pidfd_getfd: `Usable` or `Missing` once probed; F_DUPFD_QUERY
/// becomes `Refused` when a call fails that the probe allowed.
static DUPFD_QUERY: StateCell = StateCell::new();
static PIDFD_GETFD: StateCell = StateCell::new();
static DISABLED: AtomicBool = AtomicBool::new(false);
/// The errno of the last probe that could not run (out of fds or memory), for
/// `report` to say why it cannot tell.
static EXHAUSTED: AtomicI32 = AtomicI32::new(0);
static ATFORK: Once = Once::new();

extern "C" fn forget_in_child() {
    KCMP.set(State::Unknown);
    DUPFD_QUERY.set(State::Unknown);
    PIDFD_GETFD.set(State::Unknown);
}

fn ensure_atfork() {
    ATFORK.call_once(|| sys::atfork_child(forget_in_child));
}

/// Never issue kcmp again in this process (sandboxes that kill on it).
pub fn disable() {
    DISABLED.store(true, Ordering::SeqCst);
}

/// Whether `disable()` was called (or `KCMP_RS_NO_KCMP` set, which calls it).
pub fn disabled() -> bool {
    DISABLED.load(Ordering::Relaxed)
}

fn probe_kcmp() -> State {
    match error::self_compare_refused() {
        Some(libc::ENOSYS) => State::Missing,
        Some(_) => State::Refused,
        None => State::Usable,
    }
}

fn kcmp_state() -> State {
    if disabled() {
        return State::Refused;
    }
    let s = KCMP.get();
    if s != State::Unknown {
        return s;
    }
    ensure_atfork();
    let s = probe_kcmp();
    KCMP.set(s);
    s
}

/// Ok when kcmp may be issued; otherwise the failure that says why not.
pub fn require_kcmp() -> Result<(), Failure> {
    match kcmp_state() {
        State::Usable => Ok(()),
        _ => Err(unavailable_failure()),
    }
}

/// Whether kcmp may be issued (probing it on first use).
pub fn kcmp_usable() -> bool {
    kcmp_state() == State::Usable
}

/// The failure describing why kcmp is unusable (call only when it is).
pub fn unavailable_failure() -> Failure {
    if disabled() {
        return Failure::Unavailable {
            errno: libc::EPERM,
            reason: error::REASON_DISABLED.to_string(),
            undecided: Vec::new(),
        };
    }
    match KCMP.get() {
        State::Missing => Failure::unavailable(libc::ENOSYS),
        _ => Failure::unavailable(libc::EPERM),
    }
}

/// Records what a call-time failure revealed about kcmp.
pub fn note_failure(failure: &Failure) {
    if let Failure::Unavailable { errno, .. } = failure {
        let s = if *errno == libc::ENOSYS {
            State::Missing
        } else {
            State::Refused
        };
        ensure_atfork();
        KCMP.set(s);
    }
}

/// A yes/no capability: the cached answer, or `probe`'s, cached from then on. A probe
/// that could not run (`None`: out of fds or memory) answers "no" for now and is not
/// cached, so the next call probes again.
fn cached(cell: &StateCell, probe: impl FnOnce() -> Option<bool>) -> bool {
    match cell.get() {
        State::Usable => true,
        State::Unknown => {
            ensure_atfork();
            let Some(ok) = probe() else {
                return false;
            };
            cell.set(if ok { State::Usable } else { State::Missing });
            ok
        }
        State::Missing | State::Refused => false,
    }
}

/// A probe step's result: `None` when a resource ran out (the probe could not run),
/// `Some(Err)` when the kernel refused, `Some(Ok)` with what it made.
fn step<T>(r: Result<T, sys::Errno>) -> Option<Result<T, sys::Errno>> {
    match r {
        Err(e) if error::is_exhaustion(e) => {
            EXHAUSTED.store(e.0, Ordering::Relaxed);
            None
        }
        other => Some(other),
    }
}

/// F_DUPFD_QUERY (Linux 6.10+) answers for this process's own fds.
pub fn dupfd_query_usable() -> bool {
    cached(&DUPFD_QUERY, || match step(sys::epoll_create())? {
        Ok(fd) => Some(sys::dupfd_query(fd.as_raw_fd(), fd.as_raw_fd()) == Ok(true)),
        Err(_) => Some(false),
    })
}

/// F_DUPFD_QUERY failed at call time although the probe allowed it (a filter installed
/// since): later calls go straight to the next rung, and `support()` says so.
pub fn note_dupfd_query_refused() {
    DUPFD_QUERY.set(State::Refused);
}

/// pidfd_getfd may copy fds of a process we can inspect (probed on ourselves).
pub fn pidfd_getfd_usable() -> bool {
    cached(&PIDFD_GETFD, || {
        let Ok(pidfd) = step(sys::pidfd_open(sys::getpid(), 0))? else {
            return Some(false);
        };
        let Ok(probe) = step(sys::epoll_create())? else {
            return Some(false);
        };
        Some(step(sys::pidfd_getfd(&pidfd, probe.as_raw_fd()))?.is_ok())
    })
}

/// Forces the next use to probe again (the Python `support()` refresh).
pub fn forget() {
    forget_in_child();
}

/// What this process may use, as `support()` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// kcmp(2) may be issued.
    pub kcmp: bool,
    /// F_DUPFD_QUERY answers for this process's own fds.
    pub dupfd_query: bool,
    /// pidfd_getfd may copy fds of processes we can inspect.
    pub pidfd_getfd: bool,
    /// Why kcmp is unusable, with the fix; empty when it is usable.
    pub reason: String,
}

/// The capabilities, probing any not known yet.
///
/// A capability whose probe could not run (out of fds or memory) is not reported as
/// absent: the call fails with that errno, naming the limit and the fix.
pub fn report() -> Result<Report, Failure> {
    let kcmp = kcmp_usable();
    let reason = if kcmp {
        String::new()
    } else {
        match unavailable_failure() {
            Failure::Unavailable { reason, .. } => reason,
            other => other.message(),
        }
    };
    let report = Report {
        kcmp,
        dupfd_query: dupfd_query_usable(),
        pidfd_getfd: pidfd_getfd_usable(),
        reason,
    };
    if DUPFD_QUERY.get() == State::Unknown || PIDFD_GETFD.get() == State::Unknown {
        let errno = match EXHAUSTED.load(Ordering::Relaxed) {
            0 => libc::EMFILE,
            e => e,
        };
        return Err(Failure::exhausted(
            sys::Errno(errno),
            None,
            None,
            "probing F_DUPFD_QUERY and pidfd_getfd",
        ));
    }
    Ok(report)
}
