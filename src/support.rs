//! What this process may use: kcmp, F_DUPFD_QUERY, pidfd_getfd.
//!
//! Probed lazily and cached in atomics (no lock on the hot path). A forked child forgets
//! the answers (an atfork handler clears them) and probes again on first use; an EPERM
//! or ENOSYS that only a policy can explain, seen at call time, updates the cache, since
//! seccomp filters are installed later than we probe and are never removed.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Once;

use crate::fault::{self, Failure};
use crate::sys;

const UNKNOWN: u8 = 0;
const USABLE: u8 = 1;
const NO_SYS: u8 = 2;
const POLICY: u8 = 3;

static KCMP: AtomicU8 = AtomicU8::new(UNKNOWN);
/// 0 unknown, 1 yes, 2 no: for F_DUPFD_QUERY and pidfd_getfd.
static DUPFD_QUERY: AtomicU8 = AtomicU8::new(UNKNOWN);
static PIDFD_GETFD: AtomicU8 = AtomicU8::new(UNKNOWN);
static DISABLED: AtomicBool = AtomicBool::new(false);
static ATFORK: Once = Once::new();

extern "C" fn forget_in_child() {
    KCMP.store(UNKNOWN, Ordering::Relaxed);
    DUPFD_QUERY.store(UNKNOWN, Ordering::Relaxed);
    PIDFD_GETFD.store(UNKNOWN, Ordering::Relaxed);
}

fn ensure_atfork() {
    ATFORK.call_once(|| sys::atfork_child(forget_in_child));
}

/// Never issue kcmp again in this process (sandboxes that kill on it).
pub fn disable() {
    DISABLED.store(true, Ordering::SeqCst);
}

pub fn disabled() -> bool {
    DISABLED.load(Ordering::Relaxed)
}

fn probe_kcmp() -> u8 {
    match fault::self_compare_refused() {
        Some(libc::ENOSYS) => NO_SYS,
        Some(_) => POLICY,
        None => USABLE,
    }
}

fn kcmp_state() -> u8 {
    if disabled() {
        return POLICY;
    }
    let s = KCMP.load(Ordering::Relaxed);
    if s != UNKNOWN {
        return s;
    }
    ensure_atfork();
    let s = probe_kcmp();
    KCMP.store(s, Ordering::Relaxed);
    s
}

/// Ok when kcmp may be issued; otherwise the failure that says why not.
pub fn require_kcmp() -> Result<(), Failure> {
    match kcmp_state() {
        USABLE => Ok(()),
        _ => Err(unavailable_failure()),
    }
}

pub fn kcmp_usable() -> bool {
    kcmp_state() == USABLE
}

/// The failure describing why kcmp is unusable (call only when it is).
pub fn unavailable_failure() -> Failure {
    if disabled() {
        return Failure::Unavailable {
            errno: libc::EPERM,
            reason: fault::REASON_DISABLED.to_string(),
            undecided: Vec::new(),
        };
    }
    match KCMP.load(Ordering::Relaxed) {
        NO_SYS => fault::unavailable(libc::ENOSYS),
        _ => fault::unavailable(libc::EPERM),
    }
}

/// Records what a call-time failure revealed about kcmp.
pub fn note_failure(failure: &Failure) {
    if let Failure::Unavailable { errno, .. } = failure {
        let s = if *errno == libc::ENOSYS {
            NO_SYS
        } else {
            POLICY
        };
        ensure_atfork();
        KCMP.store(s, Ordering::Relaxed);
    }
}

fn cached(cell: &AtomicU8, probe: impl FnOnce() -> bool) -> bool {
    match cell.load(Ordering::Relaxed) {
        USABLE => true,
        UNKNOWN => {
            ensure_atfork();
            let ok = probe();
            cell.store(if ok { USABLE } else { NO_SYS }, Ordering::Relaxed);
            ok
        }
        _ => false,
    }
}

/// F_DUPFD_QUERY (Linux 6.10+) answers for this process's own fds.
pub fn dupfd_query_usable() -> bool {
    cached(&DUPFD_QUERY, || match sys::epoll_create() {
        Ok(fd) => sys::dupfd_query(fd.as_raw_fd(), fd.as_raw_fd()) == Ok(true),
        Err(_) => false,
    })
}

/// F_DUPFD_QUERY failed at call time although the probe allowed it (a filter installed
/// since): later calls go straight to the next rung, and `support()` says so.
pub fn note_dupfd_query_refused() {
    DUPFD_QUERY.store(NO_SYS, Ordering::Relaxed);
}

/// pidfd_getfd may copy fds of a process we can inspect (probed on ourselves).
pub fn pidfd_getfd_usable() -> bool {
    cached(&PIDFD_GETFD, || {
        let Ok(pidfd) = sys::pidfd_open(sys::getpid(), 0) else {
            return false;
        };
        let Ok(probe) = sys::epoll_create() else {
            return false;
        };
        sys::pidfd_getfd(&pidfd, probe.as_raw_fd()).is_ok()
    })
}

/// Forces the next use to probe again (the Python `support()` refresh).
pub fn forget() {
    forget_in_child();
}

/// (kcmp, dupfd_query, pidfd_getfd, reason or "").
pub fn report() -> (bool, bool, bool, String) {
    let kcmp = kcmp_usable();
    let reason = if kcmp {
        String::new()
    } else {
        match unavailable_failure() {
            Failure::Unavailable { reason, .. } => reason,
            other => other.message(),
        }
    };
    (kcmp, dupfd_query_usable(), pidfd_getfd_usable(), reason)
}
