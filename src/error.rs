//! What went wrong, and with which process and fd: kernel errors made specific.
//!
//! kcmp answers one errno for a pair of (pid, fd); users need to know which side was at
//! fault. The diagnosis re-asks the kernel about each side alone (a few extra syscalls,
//! only on the error path), through `sys` only. Never imports PyO3, `support` or
//! anything above it: the binding alone turns a `Failure` into an OSError.
//!
//! `dead_or_dying` (a pid with nothing left to compare) lives here, not in
//! `liveness`, because the diagnosis of an EBADF asks it: `liveness` uses `Failure`,
//! and this room never uses `liveness`, so the two form no cycle.

use crate::sys::{self, Errno, Fd, KcmpError, Pid};

/// A failure a user can act on: every error the crate's entry points return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// EBADF: `fd` is not open in `pid`.
    NotOpen { pid: Pid, fd: Fd },
    /// ESRCH: `pid` does not exist (in our pid namespace).
    NoProcess { pid: Pid },
    /// ESRCH: `pid` exited during the call; the pid may already name another process.
    Exited { pid: Pid },
    /// ESRCH: `pid` has exited but is not reaped yet: nothing of it is left to compare.
    Zombie { pid: Pid },
    /// EPERM: `pid` may not be inspected by this process (ptrace read access).
    Denied { pid: Pid },
    /// kcmp cannot be used here at all, or no exact method could decide some pairs.
    Unavailable {
        errno: i32,
        reason: String,
        undecided: Vec<(Pid, Fd)>,
    },
    /// Any other errno, with what we were doing.
    Os {
        errno: i32,
        pid: Option<Pid>,
        fd: Option<Fd>,
        detail: String,
    },
    /// The signal check between chunks raised (Ctrl-C): the binding re-raises it.
    Interrupted,
}

/// Why kcmp is unusable, as a sentence naming the cause and the fix.
pub const REASON_ENOSYS: &str = "kcmp(2) is not available: the kernel was built without \
CONFIG_KCMP (CONFIG_CHECKPOINT_RESTORE before Linux 5.12), or a sandbox such as gVisor \
reports it as missing; use a kernel built with CONFIG_KCMP=y, or run outside that sandbox";
pub const REASON_POLICY: &str = "kcmp(2) is refused by a seccomp policy (even comparing this \
process with itself was denied, which only a policy does); in Docker or podman give the \
container CAP_SYS_PTRACE (--cap-add SYS_PTRACE), or use a seccomp profile that allows kcmp";
pub const REASON_DISABLED: &str = "kcmp(2) is disabled by configuration \
(KCMP_RS_NO_KCMP=1 in the environment or kcmp_rs.disable_kcmp()); unset the variable and \
start a new process to use it";

/// The kernel's text for an errno, without std's " (os error N)" suffix.
pub fn errno_text(errno: i32) -> String {
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

impl Failure {
    /// A failed syscall about `pid` (and `fd`, if about one) made specific where the
    /// errno says enough; `doing` names the call for any other errno.
    pub fn from_errno(errno: Errno, pid: Pid, fd: Option<Fd>, doing: &str) -> Failure {
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
            libc::EMFILE | libc::ENFILE | libc::ENOMEM => {
                Failure::exhausted(errno, Some(pid), fd, doing)
            }
            e => Failure::Os {
                errno: e,
                pid: Some(pid),
                fd,
                detail: doing.to_string(),
            },
        }
    }

    /// Out of fds or memory while `doing` something about `pid`: the limit that was
    /// hit and how to raise it. Keeps the errno, so Python still picks the class by it.
    pub fn exhausted(errno: Errno, pid: Option<Pid>, fd: Option<Fd>, doing: &str) -> Failure {
        let why = match errno.0 {
            libc::EMFILE => {
                let open = sys::soft_fd_limit().map_or_else(
                    || "reached its limit of open fds".to_string(),
                    |n| format!("{n} fds open, its limit"),
                );
                format!(
                    "this process has {open} (RLIMIT_NOFILE soft); raise it \
                     (ulimit -n, resource.setrlimit) or close fds"
                )
            }
            libc::ENFILE => "the system-wide limit of open files is reached \
                             (fs.file-max); close files or raise it"
                .to_string(),
            _ => "the kernel is out of memory".to_string(),
        };
        Failure::Os {
            errno: errno.0,
            pid,
            fd,
            detail: format!("{doing}: {why}"),
        }
    }

    /// kcmp is unusable here (`ENOSYS`: not built in; anything else: refused by a
    /// policy), with the reason and fix as the message.
    pub fn unavailable(errno: i32) -> Failure {
        let reason = if errno == libc::ENOSYS {
            REASON_ENOSYS
        } else {
            REASON_POLICY
        };
        Failure::Unavailable {
            errno,
            reason: reason.to_string(),
            undecided: Vec::new(),
        }
    }

    /// The errno the Python exception carries (and picks its OSError subclass by).
    pub fn errno(&self) -> i32 {
        match self {
            Failure::NotOpen { .. } => libc::EBADF,
            Failure::NoProcess { .. } | Failure::Zombie { .. } | Failure::Exited { .. } => {
                libc::ESRCH
            }
            Failure::Denied { .. } => libc::EPERM,
            Failure::Unavailable { errno, .. } | Failure::Os { errno, .. } => *errno,
            Failure::Interrupted => libc::EINTR,
        }
    }

    /// The process at fault, if one is known: the exception's `pid`.
    pub fn pid(&self) -> Option<Pid> {
        match self {
            Failure::NotOpen { pid, .. }
            | Failure::NoProcess { pid }
            | Failure::Zombie { pid }
            | Failure::Exited { pid }
            | Failure::Denied { pid } => Some(*pid),
            Failure::Os { pid, .. } => *pid,
            Failure::Unavailable { .. } | Failure::Interrupted => None,
        }
    }

    /// For a process that is gone, which way: `"absent"` (never there, or reaped
    /// before the call), `"exited"` (during the call) or `"zombie"` (exited, not yet
    /// reaped): the exception's `kind`.
    pub fn gone_kind(&self) -> Option<&'static str> {
        match self {
            Failure::NoProcess { .. } => Some("absent"),
            Failure::Exited { .. } => Some("exited"),
            Failure::Zombie { .. } => Some("zombie"),
            _ => None,
        }
    }

    /// The fd at fault, if one is known: the exception's `fd`.
    pub fn fd(&self) -> Option<Fd> {
        match self {
            Failure::NotOpen { fd, .. } => Some(*fd),
            Failure::Os { fd, .. } => *fd,
            _ => None,
        }
    }

    /// The exception's strerror: the kernel's text, then what it means here.
    pub fn message(&self) -> String {
        let detail = match self {
            Failure::NotOpen { pid, fd } => format!("fd {fd} is not open in process {pid}"),
            Failure::NoProcess { pid } => format!("process {pid} does not exist"),
            Failure::Exited { pid } => format!(
                "process {pid} exited during the call (its pid may now name another process)"
            ),
            Failure::Zombie { pid } => format!(
                "process {pid} has exited and awaits reaping (a zombie): \
                 it has no resources left to compare"
            ),
            Failure::Denied { pid } => format!(
                "process {pid} may not be inspected by this process \
                 (kcmp needs ptrace read access: the same uid, or CAP_SYS_PTRACE)"
            ),
            Failure::Unavailable {
                reason, undecided, ..
            } => {
                if undecided.is_empty() {
                    reason.clone()
                } else {
                    let shown: Vec<String> = undecided
                        .iter()
                        .take(8)
                        .map(|(p, f)| format!("fd {f} of process {p}"))
                        .collect();
                    let more = if undecided.len() > 8 {
                        format!(" and {} more", undecided.len() - 8)
                    } else {
                        String::new()
                    };
                    format!(
                        "no exact method could decide {}{more}: {reason}",
                        shown.join(", ")
                    )
                }
            }
            Failure::Os { detail, .. } => detail.clone(),
            Failure::Interrupted => "interrupted".to_string(),
        };
        format!("{}: {detail}", errno_text(self.errno()))
    }
}

/// The errno of one kcmp call, or `None` when it answered: the diagnosis's question.
fn kcmp_errno(pid1: Pid, pid2: Pid, ty: i32, fd1: Fd, fd2: Fd) -> Option<i32> {
    match sys::kcmp(pid1, pid2, ty, fd1, fd2) {
        Err(KcmpError::Errno(Errno(e))) => Some(e),
        _ => None,
    }
}

/// Which of the two pids (if either) is missing: each is compared with itself.
fn missing_pid(pid1: Pid, pid2: Pid) -> Pid {
    if kcmp_errno(pid1, pid1, sys::KCMP_VM, 0, 0) == Some(libc::ESRCH) {
        pid1
    } else {
        pid2
    }
}

/// Whether this process is refused even for itself: only a policy does that.
pub fn self_compare_refused() -> Option<i32> {
    let me = sys::getpid();
    match kcmp_errno(me, me, sys::KCMP_VM, 0, 0) {
        Some(e @ (libc::EPERM | libc::ENOSYS)) => Some(e),
        _ => None,
    }
}

/// Whether `errno` says a resource ran out (fds, the system's file table, memory):
/// a state of the moment, never an answer about a capability or a process.
pub fn is_exhaustion(errno: Errno) -> bool {
    matches!(errno.0, libc::EMFILE | libc::ENFILE | libc::ENOMEM)
}

/// `pid` as it is now, if it has nothing left to compare: a zombie, a task that is
/// exiting, or one gone since a syscall just found it. Never asked of the caller, which
/// is alive while it asks (and reading /proc would open an fd under its threads).
pub fn dead_or_dying(pid: Pid) -> Option<Failure> {
    if pid == sys::getpid() {
        return None;
    }
    match sys::proc_stat(pid) {
        Ok(s) if s.is_zombie() => Some(Failure::Zombie { pid }),
        Ok(s) if s.is_exiting() => Some(Failure::Exited { pid }),
        Err(Errno(libc::ENOENT)) => Some(Failure::Exited { pid }),
        _ => None,
    }
}

/// Which of two pids a ptrace-access EPERM is about: never the caller, which may
/// always inspect itself.
fn denied_pid(pid1: Pid, pid2: Pid) -> Pid {
    let me = sys::getpid();
    if pid1 != me && kcmp_errno(pid1, pid1, sys::KCMP_VM, 0, 0) == Some(libc::EPERM) {
        pid1
    } else if pid2 != me {
        pid2
    } else {
        pid1
    }
}

/// A KCMP_FILE EBADF: a side with no fd table left (a zombie, an exiting or vanished
/// process), else the fd that is not open.
fn file_not_open((pid1, fd1): (Pid, Fd), (pid2, fd2): (Pid, Fd)) -> Failure {
    if let Some(gone) = dead_or_dying(pid1).or_else(|| dead_or_dying(pid2)) {
        return gone;
    }
    if kcmp_errno(pid1, pid1, sys::KCMP_FILE, fd1, fd1) == Some(libc::EBADF) {
        Failure::NotOpen { pid: pid1, fd: fd1 }
    } else {
        Failure::NotOpen { pid: pid2, fd: fd2 }
    }
}

/// Turns an errno from `kcmp(pid1, pid2, ty, fd1, fd2)` into a specific failure.
pub fn diagnose(pid1: Pid, pid2: Pid, ty: i32, fd1: Fd, fd2: Fd, err: KcmpError) -> Failure {
    let errno = match err {
        KcmpError::Errno(Errno(e)) => e,
        KcmpError::Unexpected(v) => {
            return Failure::Os {
                errno: libc::EPROTO,
                pid: None,
                fd: None,
                detail: format!("kcmp returned {v}, which is not an order (0..3)"),
            }
        }
    };
    let is_file = ty == sys::KCMP_FILE;
    match errno {
        libc::ESRCH => Failure::NoProcess {
            pid: missing_pid(pid1, pid2),
        },
        libc::EPERM => match self_compare_refused() {
            Some(e) => Failure::unavailable(e),
            None => Failure::Denied {
                pid: denied_pid(pid1, pid2),
            },
        },
        libc::ENOSYS => Failure::unavailable(libc::ENOSYS),
        libc::EBADF if is_file => file_not_open((pid1, fd1), (pid2, fd2)),
        libc::EBADF => dead_or_dying(pid1)
            .or_else(|| dead_or_dying(pid2))
            .unwrap_or(Failure::Os {
                errno,
                pid: Some(pid1),
                fd: None,
                detail: format!("process {pid1} or {pid2} has no open files (it is exiting)"),
            }),
        libc::EOPNOTSUPP => Failure::Os {
            errno,
            pid: None,
            fd: None,
            detail: format!("this kernel cannot compare type {ty} (built without its subsystem)"),
        },
        _ => Failure::Os {
            errno,
            pid: Some(pid1),
            fd: if is_file { Some(fd1) } else { None },
            detail: format!("kcmp({pid1}, {pid2}, type {ty}, {fd1}, {fd2}) failed"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::fd::AsRawFd;

    #[test]
    fn names_the_fd_that_is_not_open() {
        let me = sys::getpid();
        let f = File::open("/proc/self/status").unwrap();
        let fd = f.as_raw_fd();
        let err = sys::kcmp(me, me, sys::KCMP_FILE, fd, 999_999).unwrap_err();
        let failure = diagnose(me, me, sys::KCMP_FILE, fd, 999_999, err);
        assert_eq!(
            failure,
            Failure::NotOpen {
                pid: me,
                fd: 999_999
            }
        );
        assert!(failure
            .message()
            .ends_with(&format!("fd 999999 is not open in process {me}")));
        let err = sys::kcmp(me, me, sys::KCMP_FILE, 999_998, fd).unwrap_err();
        assert_eq!(
            diagnose(me, me, sys::KCMP_FILE, 999_998, fd, err),
            Failure::NotOpen {
                pid: me,
                fd: 999_998
            }
        );
    }

    #[test]
    fn names_the_missing_process() {
        let me = sys::getpid();
        let gone = i32::MAX;
        let err = sys::kcmp(me, gone, sys::KCMP_VM, 0, 0).unwrap_err();
        assert_eq!(
            diagnose(me, gone, sys::KCMP_VM, 0, 0, err),
            Failure::NoProcess { pid: gone }
        );
        let err = sys::kcmp(gone, me, sys::KCMP_VM, 0, 0).unwrap_err();
        assert_eq!(
            diagnose(gone, me, sys::KCMP_VM, 0, 0, err),
            Failure::NoProcess { pid: gone }
        );
    }

    #[test]
    fn exhaustion_names_the_limit_and_the_fix() {
        let limit = sys::soft_fd_limit().unwrap();
        let f = Failure::from_errno(Errno(libc::EMFILE), 7, None, "opening /proc/7/fd");
        assert_eq!((f.errno(), f.pid(), f.fd()), (libc::EMFILE, Some(7), None));
        assert_eq!(
            f.message(),
            format!(
                "Too many open files: opening /proc/7/fd: this process has {limit} fds open, \
                 its limit (RLIMIT_NOFILE soft); raise it (ulimit -n, resource.setrlimit) \
                 or close fds"
            )
        );
        let f = Failure::from_errno(Errno(libc::ENFILE), 7, Some(3), "pidfd_getfd");
        assert!(f.message().ends_with(
            "pidfd_getfd: the system-wide limit of open files is reached (fs.file-max); \
             close files or raise it"
        ));
        let f = Failure::from_errno(Errno(libc::ENOMEM), 7, None, "pidfd_open");
        assert!(f
            .message()
            .ends_with("pidfd_open: the kernel is out of memory"));
        assert!(is_exhaustion(Errno(libc::EMFILE)) && !is_exhaustion(Errno(libc::EBADF)));
    }

    #[test]
    fn the_gone_are_diagnosed_as_gone() {
        let me = sys::getpid();
        assert_eq!(dead_or_dying(me), None, "never asked of the caller");
        assert_eq!(
            dead_or_dying(i32::MAX),
            Some(Failure::Exited { pid: i32::MAX })
        );
        let child = sys::testing::fork_holding(&[0], 0);
        assert_eq!(dead_or_dying(child), None);
        sys::testing::kill(child);
        assert!(sys::testing::await_zombie(child));
        assert_eq!(dead_or_dying(child), Some(Failure::Zombie { pid: child }));
        let err = sys::kcmp(me, child, sys::KCMP_FILE, 0, 0).unwrap_err();
        assert_eq!(
            diagnose(me, child, sys::KCMP_FILE, 0, 0, err),
            Failure::Zombie { pid: child },
            "a zombie's fds are never \"not open\""
        );
        sys::testing::reap(child);
    }

    #[test]
    fn messages_start_with_the_kernel_text() {
        assert_eq!(errno_text(libc::EBADF), "Bad file descriptor");
        let u = Failure::unavailable(libc::ENOSYS);
        assert!(u
            .message()
            .starts_with("Function not implemented: kcmp(2) is not available"));
        let u = Failure::Unavailable {
            errno: libc::EPERM,
            reason: REASON_POLICY.into(),
            undecided: (0..10).map(|f| (7, f)).collect(),
        };
        let m = u.message();
        assert!(
            m.contains("fd 0 of process 7") && m.contains("and 2 more"),
            "{m}"
        );
    }
}
