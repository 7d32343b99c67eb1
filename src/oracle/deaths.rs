//! Deaths injected at every point of a batch: a child SIGKILLed after the k-th oracle
//! call of the run (counted in `Interruptible`, compiled in tests only), for a spread
//! of k, in both `missing` modes, over one process and across processes, with
//! thousands of fds. Every outcome must be the exact answer (computed before the kill)
//! or the documented error; the counts are printed (`cargo test -- --nocapture`).
//!
//! The rounds take a minute or more: `make test` leaves them out, `make test-slow`
//! (which CI runs) runs them (`cargo test -- --ignored`).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::api;
use crate::engine::{GroupOrder, Missing};
use crate::error::Failure;
use crate::sys::{self, testing, Fd, Pid};

use super::{FileOptions, FileRef};

thread_local! {
    /// (oracle calls left before the kill, the pid to kill), while armed.
    static PLAN: Cell<Option<(u64, Pid)>> = const { Cell::new(None) };
}

/// Counts one oracle call (or kcmp of the holders search) of this thread's batch;
/// kills the planned pid at zero.
pub(crate) fn tick() {
    PLAN.with(|plan| {
        if let Some((left, pid)) = plan.get() {
            if left == 0 {
                testing::kill(pid);
                plan.set(None);
            } else {
                plan.set(Some((left - 1, pid)));
            }
        }
    });
}

fn arm(after: u64, pid: Pid) {
    PLAN.with(|plan| plan.set(Some((after, pid))));
}

/// Disarms; whether the kill happened during the batch.
fn disarm() -> bool {
    PLAN.with(|plan| plan.take().is_none())
}

/// A forked child, killed and reaped when dropped (a failed assertion included), so
/// no child outlives the test holding its output pipe.
struct Child(Pid);

impl Drop for Child {
    fn drop(&mut self) {
        testing::kill(self.0);
        testing::reap(self.0);
    }
}

/// Rounds per scenario: enough that a bug hitting 1% of them shows (0.99^300 < 5%).
const ROUNDS: u64 = 300;
/// Fds each child holds on top of what it inherits.
const COPIES: usize = 2000;

/// Descriptions for the children to duplicate: a socket pair (two inodes) and two
/// opens of one file (two descriptions, one inode, so kcmp must tell them apart).
fn base_fds() -> Vec<OwnedFd> {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut fds = vec![OwnedFd::from(a), OwnedFd::from(b)];
    for _ in 0..2 {
        fds.push(OwnedFd::from(File::open("/dev/null").unwrap()));
    }
    fds
}

/// What one injected round ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// The exact answer, the child's items included (killed after the answer).
    Exact,
    /// `missing="skip"`: the exact answer for the processes left (the child rerun out).
    ExactWithout,
    /// The documented error: `Exited` naming the child.
    Exited,
    /// The kill fell past the end of the batch.
    NotKilled,
}

struct Tally {
    name: &'static str,
    counts: BTreeMap<Outcome, u64>,
    wrong: Vec<String>,
}

impl Tally {
    fn new(name: &'static str) -> Tally {
        Tally {
            name,
            counts: BTreeMap::new(),
            wrong: Vec::new(),
        }
    }

    fn add(&mut self, outcome: Result<Outcome, String>) {
        match outcome {
            Ok(o) => *self.counts.entry(o).or_default() += 1,
            Err(w) => self.wrong.push(w),
        }
    }

    fn finish(self) {
        let rounds: u64 = self.counts.values().sum::<u64>() + self.wrong.len() as u64;
        eprintln!(
            "injected deaths, {}: {rounds} rounds, {:?}, wrong {}",
            self.name,
            self.counts,
            self.wrong.len()
        );
        assert!(
            self.wrong.is_empty(),
            "{}: {:?}",
            self.name,
            &self.wrong[..self.wrong.len().min(5)]
        );
        let killed: u64 = self
            .counts
            .iter()
            .filter(|(o, _)| **o != Outcome::NotKilled)
            .map(|(_, n)| n)
            .sum();
        assert!(
            killed * 2 > rounds,
            "{}: most rounds must kill during the batch",
            self.name
        );
    }
}

/// The k of round `i`: spread evenly over the run's calls, and a little past them.
fn kill_point(i: u64, calls: u64) -> u64 {
    i * (calls + calls / 10 + 1) / ROUNDS
}

fn judge<T: PartialEq + std::fmt::Debug>(
    got: Result<T, Failure>,
    exact: &T,
    without: Option<&T>,
    child: Pid,
    killed: bool,
) -> Result<Outcome, String> {
    match got {
        Ok(g) if &g == exact => Ok(if killed {
            Outcome::Exact
        } else {
            Outcome::NotKilled
        }),
        Ok(g) if without == Some(&g) && killed => Ok(Outcome::ExactWithout),
        Err(Failure::Exited { pid }) if pid == child && killed => Ok(Outcome::Exited),
        other => Err(format!("killed={killed}: {other:?}")),
    }
}

/// `groups` with `pid`'s refs left out and the groups left empty by that, in the
/// batch's order (by smallest member): where `pid` is lower than the others' (pids
/// wrapped around), its refs led their groups, so the order changes without them.
fn without_pid(groups: &[Vec<FileRef>], pid: Pid) -> Vec<Vec<FileRef>> {
    let mut kept: Vec<Vec<FileRef>> = groups
        .iter()
        .map(|g| g.iter().copied().filter(|r| r.0 != pid).collect::<Vec<_>>())
        .filter(|g| !g.is_empty())
        .collect();
    kept.sort_unstable();
    kept
}

fn opts(missing: Missing) -> FileOptions {
    FileOptions {
        order: GroupOrder::Fd,
        missing,
        allow_pidfd_getfd: false,
        report_undecided: false,
    }
}

/// Runs `batch` for `ROUNDS` children, each killed after a spread of oracle calls.
fn rounds(
    name: &'static str,
    copies: usize,
    raw: &[Fd],
    mut batch: impl FnMut(Pid, Option<u64>) -> (Result<Outcome, String>, u64),
) {
    if !crate::support::kcmp_usable() {
        eprintln!("{name}: kcmp unusable here, nothing injected");
        return;
    }
    let mut tally = Tally::new(name);
    let mut calls = 1;
    for i in 0..ROUNDS {
        let guard = Child(testing::fork_holding(raw, copies));
        let child = guard.0;
        let (truth, n) = batch(child, None);
        assert!(
            truth.is_ok(),
            "{name}: the uninjected run must answer: {truth:?}"
        );
        calls = calls.max(n);
        let (outcome, _) = batch(child, Some(kill_point(i, calls)));
        tally.add(outcome);
        drop(guard);
    }
    tally.finish();
}

/// One injected run of `f`, judged against `exact` (and, under skip, `without`).
fn injected<T: PartialEq + std::fmt::Debug>(
    child: Pid,
    kill_at: u64,
    exact: &T,
    without: Option<&T>,
    f: impl FnOnce() -> Result<T, Failure>,
) -> Result<Outcome, String> {
    arm(kill_at, child);
    let got = f();
    let killed = disarm();
    judge(got, exact, without, child, killed)
}

#[test]
#[ignore = "slow: 300 injected deaths; `make test-slow` (and CI) runs it"]
fn classify_fds_of_a_dying_child_is_exact_or_exited() {
    let base = base_fds();
    let raw: Vec<Fd> = base.iter().map(AsRawFd::as_raw_fd).collect();
    for (name, missing) in [
        ("classify_fds raise", Missing::Raise),
        ("classify_fds skip", Missing::Skip),
    ] {
        let mut exact = Vec::new();
        rounds(name, COPIES, &raw, |child, kill_at| {
            let run = || api::classify_fds(child, None, GroupOrder::Fd, missing, false, || false);
            match kill_at {
                None => {
                    let (groups, stats) = run().unwrap();
                    exact = groups;
                    (
                        Ok(Outcome::NotKilled),
                        stats.keys + stats.compares + stats.sames,
                    )
                }
                Some(k) => (injected(child, k, &exact, None, || run().map(|r| r.0)), 0),
            }
        });
    }
}

#[test]
#[ignore = "slow: 300 injected deaths; `make test-slow` (and CI) runs it"]
fn classify_files_across_processes_is_exact_or_as_documented() {
    let me = sys::getpid();
    let base = base_fds();
    let raw: Vec<Fd> = base.iter().map(AsRawFd::as_raw_fd).collect();
    for (name, missing) in [
        ("classify_files raise", Missing::Raise),
        ("classify_files skip", Missing::Skip),
    ] {
        let mut exact = Vec::new();
        let mut without = Vec::new();
        let mut refs: Vec<FileRef> = Vec::new();
        rounds(name, COPIES, &raw, |child, kill_at| match kill_at {
            None => {
                refs = api::open_fds(child)
                    .unwrap()
                    .iter()
                    .map(|&fd| (child, fd))
                    .collect();
                refs.extend(raw.iter().map(|&fd| (me, fd)));
                let found = api::classify_files(&refs, opts(missing), || false).unwrap();
                exact = found.groups;
                without = without_pid(&exact, child);
                let s = found.stats;
                (Ok(Outcome::NotKilled), s.keys + s.compares + s.sames)
            }
            Some(k) => {
                let skip = (missing == Missing::Skip).then_some(&without);
                let run = || api::classify_files(&refs, opts(missing), || false).map(|c| c.groups);
                (injected(child, k, &exact, skip, run), 0)
            }
        });
    }
}

#[test]
#[ignore = "slow: 300 injected deaths; `make test-slow` (and CI) runs it"]
fn classify_tasks_with_a_dying_child_is_exact_or_as_documented() {
    let me = sys::getpid();
    let base = base_fds();
    let raw: Vec<Fd> = base.iter().map(AsRawFd::as_raw_fd).collect();
    let bystander_guard = Child(testing::fork_holding(&raw, 0));
    let bystander = bystander_guard.0;
    for (name, missing, ty) in [
        ("classify_tasks raise", Missing::Raise, sys::KCMP_VM),
        ("classify_tasks skip", Missing::Skip, sys::KCMP_FILES),
    ] {
        let mut exact = Vec::new();
        let mut without = Vec::new();
        rounds(name, 0, &raw, |child, kill_at| {
            let pids = [me, child, bystander];
            let run = || api::classify_tasks(&pids, ty, missing, || false);
            match kill_at {
                None => {
                    exact = run().unwrap();
                    // In the batch's order, by smallest pid: the child's led
                    // its group where pids wrapped around.
                    without = exact
                        .iter()
                        .map(|g| {
                            g.iter()
                                .copied()
                                .filter(|&p| p != child)
                                .collect::<Vec<_>>()
                        })
                        .filter(|g| !g.is_empty())
                        .collect();
                    without.sort_unstable();
                    // Three keys and at most three compares.
                    (Ok(Outcome::NotKilled), 6)
                }
                Some(k) => {
                    let skip = (missing == Missing::Skip).then_some(&without);
                    (injected(child, k, &exact, skip, run), 0)
                }
            }
        });
    }
    drop(bystander_guard);
}

#[test]
#[ignore = "slow: 300 injected deaths; `make test-slow` (and CI) runs it"]
fn the_scan_of_a_dying_child_is_exact_or_skips_it() {
    use crate::questions::scan::{scan, ScanOptions, EXITED, ZOMBIE};
    let base = base_fds();
    let raw: Vec<Fd> = base.iter().map(AsRawFd::as_raw_fd).collect();
    // Not this process: other tests open and close fds in it meanwhile, so its table
    // would differ between the exact run and the injected one. A bystander's does not.
    let bystander_guard = Child(testing::fork_holding(&raw, 0));
    let bystander = bystander_guard.0;
    let opts = ScanOptions {
        include_unshared: true,
        allow_pidfd_getfd: false,
        boundary: None,
        ipc: false,
    };
    let run = |child: Pid| {
        scan(&[bystander, child], opts, &mut |_, _| false, &mut || false).map(|r| {
            let groups: Vec<Vec<FileRef>> = r.descriptions.into_iter().map(|d| d.members).collect();
            let s = r.stats;
            (groups, r.skipped, s.keys + s.compares + s.sames)
        })
    };
    let mut tally = Tally::new("scan");
    if !crate::support::kcmp_usable() {
        eprintln!("scan: kcmp unusable here, nothing injected");
        return;
    }
    let mut calls = 1;
    for i in 0..ROUNDS {
        let guard = Child(testing::fork_holding(&raw, COPIES));
        let child = guard.0;
        let (groups, skipped, n) = run(child).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        let exact = groups;
        calls = calls.max(n);
        let without = without_pid(&exact, child);
        arm(kill_point(i, calls), child);
        let got = run(child);
        let killed = disarm();
        tally.add(match got {
            Ok((g, s, _)) if g == exact && s.is_empty() => Ok(if killed {
                Outcome::Exact
            } else {
                Outcome::NotKilled
            }),
            Ok((g, s, _))
                if killed
                    && g == without
                    && (s == vec![(child, EXITED.to_string())]
                        || s == vec![(child, ZOMBIE.to_string())]) =>
            {
                Ok(Outcome::ExactWithout)
            }
            other => Err(format!("killed={killed}: {other:?}")),
        });
        drop(guard);
    }
    tally.finish();
    drop(bystander_guard);
}

/// The passes of this test on the calling thread alone (the kill plan is counted per
/// thread); every pass of any thread count answers the same, so other tests running
/// meanwhile only go slower.
struct OneThread;

impl OneThread {
    fn new() -> OneThread {
        crate::pool::set_thread_limit(1);
        OneThread
    }
}

impl Drop for OneThread {
    fn drop(&mut self) {
        crate::pool::set_thread_limit(0);
    }
}

#[test]
#[ignore = "slow: 300 injected deaths; `make test-slow` (and CI) runs it"]
fn the_holders_of_a_dying_child_are_exact_or_skip_it() {
    use crate::questions::holders::holders;
    use crate::questions::scan::{EXITED, ZOMBIE};
    let base = base_fds();
    let raw: Vec<Fd> = base.iter().map(AsRawFd::as_raw_fd).collect();
    // The target in a bystander, whose table no other test changes.
    let bystander_guard = Child(testing::fork_holding(&raw, 0));
    let bystander = bystander_guard.0;
    let target = (bystander, raw[2]);
    let _one = OneThread::new();
    let mut exact = (Vec::new(), Vec::new());
    rounds("holders", COPIES, &raw, |child, kill_at| {
        let pids = [bystander, child];
        let run = || {
            holders(target, Some(&pids), false, &mut |_, _| false, &mut || false)
                .map(|r| (r.holders, r.skipped, r.fds_compared))
        };
        let Some(k) = kill_at else {
            let (found, skipped, compared) = run().unwrap();
            exact = (found, skipped);
            return (Ok(Outcome::NotKilled), compared);
        };
        arm(k, child);
        let got = run();
        let killed = disarm();
        let without: Vec<FileRef> = exact.0.iter().copied().filter(|r| r.0 != child).collect();
        let outcome = match got {
            Ok((h, s, _)) if (h.clone(), s.clone()) == exact => Ok(if killed {
                Outcome::Exact
            } else {
                Outcome::NotKilled
            }),
            Ok((h, s, _))
                if killed
                    && h == without
                    && (s == vec![(child, EXITED.to_string())]
                        || s == vec![(child, ZOMBIE.to_string())]) =>
            {
                Ok(Outcome::ExactWithout)
            }
            other => Err(format!("killed={killed}: {other:?}")),
        };
        (outcome, 0)
    });
    drop(bystander_guard);
}
