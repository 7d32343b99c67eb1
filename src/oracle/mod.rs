//! The engine's kernel oracles, and the one retry loop around a batch.
//!
//! `files` answers about (pid, fd) pairs, `tasks` about pids; `pids` guards every
//! process a run sees against pid reuse; `shards` splits a file batch by inode across
//! threads, each shard through the retry loop here. A batch runs the engine with a fresh oracle;
//! when a guarded pid vanished during the run its answers may be about another
//! process, so the batch raises (`Missing::Raise`) or runs again without that pid
//! (`Missing::Skip`), at most `engine::MAX_ATTEMPTS` times.
//!
//! Knows `sys`, `error`, `liveness`, `pool`, `support`, `ladder` and `engine`; never
//! PyO3.

#[cfg(test)]
pub(crate) mod deaths;
mod files;
mod pids;
mod shards;
mod tasks;
#[cfg(test)]
mod testing;

use std::cmp::Ordering;

use crate::engine::{self, GroupOrder, Key, Missing, Oracle, OracleError, Stats};
use crate::error::Failure;
use crate::support;
use crate::sys::{Fd, KcmpOrder, Pid};

pub use files::{open_fd_dir, FileOracle};
pub use pids::{pidfd_cap, PidGuard};
pub use shards::classify_files_sharded;
pub use tasks::TaskOracle;

/// A (pid, fd) pair: the item the file oracle classifies.
pub type FileRef = (Pid, Fd);

/// Options of one file classification.
#[derive(Debug, Clone, Copy)]
pub struct FileOptions {
    /// How the groups are ordered.
    pub order: GroupOrder,
    /// What an fd closed or a process gone mid-batch does.
    pub missing: Missing,
    /// Whether another process's fds may be copied here (pidfd_getfd) to compare them
    /// without kcmp: closing the copy runs the file's flush.
    pub allow_pidfd_getfd: bool,
    /// When true, pairs no exact method can decide are returned, not raised.
    pub report_undecided: bool,
}

/// What a file classification found.
#[derive(Debug)]
pub struct Classified {
    /// Groups of refs sharing one open file description.
    pub groups: Vec<Vec<FileRef>>,
    /// Refs no exact method could decide (only with `report_undecided`).
    pub undecided: Vec<FileRef>,
    /// The engine's calls, summed over every run of the batch.
    pub stats: Stats,
}

/// Groups (pid, fd) pairs by open file description.
pub fn classify_files(
    refs: &[FileRef],
    opts: FileOptions,
    mut interrupted: impl FnMut() -> bool,
) -> Result<Classified, Failure> {
    let new_oracle = || {
        let oracle = FileOracle::new(opts);
        if opts.order == GroupOrder::Kernel && !oracle.uses_kcmp() {
            return Err(order_needs_kcmp());
        }
        Ok(oracle)
    };
    let Settled {
        groups,
        stats,
        mut oracle,
    } = classify_until_settled(refs, opts.order, opts.missing, &mut interrupted, new_oracle)?;
    let undecided = oracle.undecided_refs()?;
    Ok(Classified {
        groups,
        undecided,
        stats,
    })
}

/// Groups tasks sharing the resource `ty` (VM, FILES, FS, SIGHAND, IO, SYSVSEM).
pub fn classify_tasks(
    pids: &[Pid],
    ty: i32,
    missing: Missing,
    mut interrupted: impl FnMut() -> bool,
) -> Result<Vec<Vec<Pid>>, Failure> {
    support::require_kcmp()?;
    let new_oracle = || Ok(TaskOracle::new(ty, missing));
    let settled =
        classify_until_settled(pids, GroupOrder::Fd, missing, &mut interrupted, new_oracle)?;
    Ok(settled.groups)
}

/// An engine oracle whose items belong to processes, which may exit mid-batch: what
/// the retry loop needs of it.
trait ProcessOracle: Oracle<Error = Failure> {
    /// The process an item belongs to.
    fn pid_of(item: Self::Item) -> Pid;

    /// The processes this run saw, guarded against pid reuse.
    fn guard(&self) -> &PidGuard;

    /// The failure for an item the engine reports gone under `Missing::Raise`.
    fn gone_failure(&self, item: Self::Item) -> Failure;

    /// Starts guarding `pid` before the run asks anything about it, so a process that
    /// dies at any later point of the run is known to have been alive at its start.
    fn track(&mut self, pid: Pid) -> Result<(), Failure>;

    /// Releases what the run held open, before its pids are checked.
    fn end_run(&mut self) {}

    /// Work done for every item before the engine runs, once its pids are guarded
    /// (the file oracle keys the batch in parallel threads).
    fn prepare(
        &mut self,
        _items: &[Self::Item],
        _interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<(), Failure> {
        Ok(())
    }
}

impl ProcessOracle for FileOracle {
    fn pid_of(item: FileRef) -> Pid {
        item.0
    }

    fn guard(&self) -> &PidGuard {
        &self.pids
    }

    fn gone_failure(&self, (pid, fd): FileRef) -> Failure {
        // An fd "not open" in a pid that is no longer the process first seen there.
        self.pids.explain(Failure::NotOpen { pid, fd })
    }

    fn track(&mut self, pid: Pid) -> Result<(), Failure> {
        self.track_pid(pid)
    }

    fn end_run(&mut self) {
        self.close_dir();
    }

    fn prepare(
        &mut self,
        items: &[FileRef],
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<(), Failure> {
        // A batch over a few processes keys them in milliseconds: threads would only
        // change its timing. A scan spans hundreds, and its keys take most of a second.
        let mut pids: Vec<Pid> = items.iter().map(|&(pid, _)| pid).collect();
        pids.sort_unstable();
        pids.dedup();
        if pids.len() < PREFETCH_PROCESSES {
            return Ok(());
        }
        self.prefetch_keys(items, interrupted)
    }
}

impl ProcessOracle for TaskOracle {
    fn pid_of(item: Pid) -> Pid {
        item
    }

    fn guard(&self) -> &PidGuard {
        &self.pids
    }

    fn gone_failure(&self, pid: Pid) -> Failure {
        self.pids.explain(Failure::NoProcess { pid })
    }

    fn track(&mut self, pid: Pid) -> Result<(), Failure> {
        self.pids.track(pid, self.me).map(|_| ())
    }
}

/// The last run of a batch, the one no pid vanished during.
struct Settled<O: Oracle> {
    groups: Vec<Vec<O::Item>>,
    /// Summed over every run.
    stats: Stats,
    /// The oracle of that run, for what it recorded (undecided refs).
    oracle: O,
}

/// The retry loop shared by every batch: runs the engine with a fresh oracle until a
/// run ends with every guarded pid still the process first seen under it.
fn classify_until_settled<O: ProcessOracle>(
    items: &[O::Item],
    order: GroupOrder,
    missing: Missing,
    interrupted: &mut dyn FnMut() -> bool,
    mut new_oracle: impl FnMut() -> Result<O, Failure>,
) -> Result<Settled<O>, Failure> {
    let mut items = items.to_vec();
    let mut stats = Stats::default();
    for _ in 0..engine::MAX_ATTEMPTS {
        let mut oracle = new_oracle()?;
        let absent = track_all(&mut oracle, &items, missing)?;
        items.retain(|&item| !absent.contains(&O::pid_of(item)));
        oracle.prepare(&items, interrupted)?;
        let mut run = Interruptible {
            oracle,
            interrupted: &mut *interrupted,
        };
        let outcome = engine::classify(&mut run, &items, order, missing);
        let mut oracle = run.oracle;
        let (groups, more) = outcome.map_err(|e| match e {
            OracleError::ItemGone(item) => oracle.gone_failure(item),
            OracleError::Fatal(failure) => oracle.guard().explain(failure),
        })?;
        stats.add(more);
        oracle.end_run();
        let vanished = oracle.guard().vanished()?;
        let Some(&first) = vanished.first() else {
            return Ok(Settled {
                groups,
                stats,
                oracle,
            });
        };
        if missing == Missing::Raise {
            return Err(Failure::Exited { pid: first });
        }
        // Answers given through a pid that was reused meanwhile may have misplaced the
        // others' items too: classify again without that pid.
        items.retain(|&item| !vanished.contains(&O::pid_of(item)));
    }
    Err(churn_failure())
}

/// Guards every pid of `items` before the run starts. Returns the pids that cannot be
/// compared (absent, zombie, exiting) under `Missing::Skip`; raises them otherwise.
fn track_all<O: ProcessOracle>(
    oracle: &mut O,
    items: &[O::Item],
    missing: Missing,
) -> Result<Vec<Pid>, Failure> {
    let mut pids: Vec<Pid> = items.iter().map(|&item| O::pid_of(item)).collect();
    pids.sort_unstable();
    pids.dedup();
    let mut absent = Vec::new();
    for pid in pids {
        match oracle.track(pid) {
            Ok(()) => {}
            Err(f) if missing == Missing::Skip && f.gone_kind().is_some() => absent.push(pid),
            Err(f) => return Err(f),
        }
    }
    Ok(absent)
}

/// An oracle that also checks for Ctrl-C at the engine's checkpoints, so the oracles
/// themselves never hold the binding's signal check.
struct Interruptible<'a, O> {
    oracle: O,
    interrupted: &'a mut dyn FnMut() -> bool,
}

impl<O: Oracle<Error = Failure>> Oracle for Interruptible<'_, O> {
    type Item = O::Item;
    type Error = Failure;

    #[inline]
    fn key(&mut self, item: O::Item) -> Result<Key, OracleError<O::Item, Failure>> {
        #[cfg(test)]
        deaths::tick();
        self.oracle.key(item)
    }

    #[inline]
    fn can_order(&self) -> bool {
        self.oracle.can_order()
    }

    #[inline]
    fn compare(
        &mut self,
        a: O::Item,
        b: O::Item,
    ) -> Result<Ordering, OracleError<O::Item, Failure>> {
        #[cfg(test)]
        deaths::tick();
        self.oracle.compare(a, b)
    }

    #[inline]
    fn same(
        &mut self,
        a: O::Item,
        b: O::Item,
    ) -> Result<Option<bool>, OracleError<O::Item, Failure>> {
        #[cfg(test)]
        deaths::tick();
        self.oracle.same(a, b)
    }

    fn checkpoint(&mut self) -> Result<(), Failure> {
        if (self.interrupted)() {
            return Err(Failure::Interrupted);
        }
        self.oracle.checkpoint()
    }

    fn undecided_error(&mut self, a: O::Item, b: O::Item) -> Failure {
        self.oracle.undecided_error(a, b)
    }

    fn churn_error(&mut self) -> Option<Failure> {
        self.oracle.churn_error()
    }
}

/// Processes a file batch spans before its keys are stat'ed in parallel threads.
const PREFETCH_PROCESSES: usize = 16;

/// kcmp's answer as an order for the engine.
fn kcmp_order(o: KcmpOrder) -> Ordering {
    match o {
        KcmpOrder::Equal => Ordering::Equal,
        KcmpOrder::Less => Ordering::Less,
        // Unordered is reserved and never returned by current kernels: "unequal".
        KcmpOrder::Greater | KcmpOrder::Unordered => Ordering::Greater,
    }
}

/// The error of a batch whose processes or fds kept changing under every attempt.
fn churn_failure() -> Failure {
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

/// `order="kernel"` without kcmp: there is no kernel order to give.
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
