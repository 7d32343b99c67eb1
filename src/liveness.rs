//! Whether a process is still the one a call began with: `alive` at its start (the
//! start time that identifies it, or why it cannot be compared), `still_alive` at its
//! end.
//!
//! Uses `sys` (/proc/PID/stat) and `error` (`Failure`); `error` never uses this room.
//! `error::dead_or_dying`, the same question asked after a failure, stays beside the
//! diagnosis that needs it, so the two rooms form no cycle.

use crate::error::Failure;
use crate::sys::{self, Errno, Pid};

/// `pid` at the start of a call: its start time when it is alive, else why it cannot
/// be compared (absent, a zombie, already exiting).
pub fn alive(pid: Pid) -> Result<u64, Failure> {
    match sys::proc_stat(pid) {
        Ok(s) if s.is_zombie() => Err(Failure::Zombie { pid }),
        Ok(s) if s.is_exiting() => Err(Failure::Exited { pid }),
        Ok(s) => Ok(s.start_time),
        Err(Errno(libc::ENOENT | libc::ESRCH)) => Err(Failure::NoProcess { pid }),
        Err(e) => Err(Failure::from_errno(
            e,
            pid,
            None,
            &format!("reading /proc/{pid}/stat"),
        )),
    }
}

/// `pid` at the end of a call: `Exited` unless it is still the live process that
/// `alive` saw start at `start`.
pub fn still_alive(pid: Pid, start: u64) -> Result<(), Failure> {
    match alive(pid) {
        Ok(t) if t == start => Ok(()),
        Ok(_)
        | Err(Failure::NoProcess { .. } | Failure::Zombie { .. } | Failure::Exited { .. }) => {
            Err(Failure::Exited { pid })
        }
        Err(other) => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_living_and_the_gone() {
        let me = sys::getpid();
        let start = alive(me).unwrap();
        assert_eq!(still_alive(me, start), Ok(()));
        assert_eq!(still_alive(me, start + 1), Err(Failure::Exited { pid: me }));
        assert_eq!(alive(i32::MAX), Err(Failure::NoProcess { pid: i32::MAX }));
        let child = sys::testing::fork_holding(&[0], 0);
        let start = alive(child).unwrap();
        sys::testing::kill(child);
        assert!(sys::testing::await_zombie(child));
        assert_eq!(alive(child), Err(Failure::Zombie { pid: child }));
        assert_eq!(
            still_alive(child, start),
            Err(Failure::Exited { pid: child })
        );
        sys::testing::reap(child);
    }
}
