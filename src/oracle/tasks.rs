//! The task oracle: answers the engine about pids, for one task resource type.
//!
//! No key separates tasks (every pid gets the same one, but a kernel thread compared
//! for VM its own), so all grouping is by kcmp order. Knows `sys`, `error`, `support` and the engine's `Oracle` trait.

use std::cmp::Ordering;

use super::kcmp_order;
use super::pids::PidGuard;
use crate::engine::{Key, Missing, Oracle, OracleError};
use crate::error::{self, Failure};
use crate::support;
use crate::sys::{self, Pid};

/// Answers the engine about tasks, for one task resource type.
pub struct TaskOracle {
    ty: i32,
    pub(super) me: Pid,
    missing: Missing,
    /// Every pid keyed so far, guarded against reuse.
    pub(super) pids: PidGuard,
}

impl TaskOracle {
    /// A fresh oracle for one run of a batch comparing resource `ty`.
    pub fn new(ty: i32, missing: Missing) -> Self {
        TaskOracle {
            ty,
            me: sys::getpid(),
            missing,
            pids: PidGuard::default(),
        }
    }
}

impl Oracle for TaskOracle {
    type Item = Pid;
    type Error = Failure;

    fn key(&mut self, pid: Pid) -> Result<Key, OracleError<Pid, Failure>> {
        // Every pid was tracked when the run started; a pid left out then is not
        // asked about, so this only guards a caller that skipped `track`.
        match self.pids.track(pid, self.me) {
            // Kernel threads have no address space: each is alone, never grouped by
            // the NULL == NULL kcmp would answer.
            Ok(_) if self.ty == sys::KCMP_VM && sys::without_address_space(pid) => {
                Ok((1, u64::from(pid.unsigned_abs())))
            }
            Ok(_) => Ok((0, 0)),
            Err(f) if self.missing == Missing::Skip && f.gone_kind().is_some() => {
                Err(OracleError::ItemGone(pid))
            }
            Err(f) => Err(OracleError::Fatal(f)),
        }
    }

    fn can_order(&self) -> bool {
        true
    }

    fn compare(&mut self, a: Pid, b: Pid) -> Result<Ordering, OracleError<Pid, Failure>> {
        match sys::kcmp(a, b, self.ty, 0, 0) {
            Ok(o) => Ok(kcmp_order(o)),
            Err(e) => {
                let failure = error::diagnose(a, b, self.ty, 0, 0, e);
                support::note_failure(&failure);
                let failure = self.pids.explain(failure);
                match (failure.pid(), failure.gone_kind()) {
                    (Some(pid), Some(_)) if self.missing == Missing::Skip => {
                        Err(OracleError::ItemGone(pid))
                    }
                    _ => Err(OracleError::Fatal(failure)),
                }
            }
        }
    }

    fn same(&mut self, _a: Pid, _b: Pid) -> Result<Option<bool>, OracleError<Pid, Failure>> {
        Ok(None)
    }

    fn undecided_error(&mut self, a: Pid, _b: Pid) -> Failure {
        Failure::NoProcess { pid: a }
    }
}
