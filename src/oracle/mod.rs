//! The engine's kernel oracles, and the one retry loop around a batch.
//!
//! `files` answers about (pid, fd) pairs, `tasks` about pids; `pids` guards every
//! process a run sees against pid reuse. A batch runs the engine with a fresh oracle;
//! when a guarded pid vanished during the run its answers may be about another
//! process, so the batch raises (`Missing::Raise`) or runs again without that pid
//! (`Missing::Skip`), at most `engine::MAX_ATTEMPTS` times.
//!
//! Knows `sys`, `error`, `support`, `ladder` and `engine`; never PyO3.

#[cfg(test)]
pub(crate) mod deaths;
mod files;
mod pids;
mod tasks;

use std::cmp::Ordering;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as Atomic};
use std::thread;

use crate::engine::{self, GroupOrder, Key, Missing, Oracle, OracleError, Stats};
use crate::error::Failure;
use crate::support;
use crate::sys::{self, Fd, KcmpOrder, Pid};

use rustc_hash::FxHashMap as HashMap;

pub use files::{open_fd_dir, FileOracle};
pub use pids::{pidfd_cap, PidGuard};
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

/// `classify_files` split by inode across up to `threads` threads, for a caller whose
/// processes are pinned from before the call to after it (the scan): every ref is
/// stat'ed first (in parallel), the inode buckets are dealt to shards by their cost,
/// and each shard is classified on its own thread, with the keys already taken
/// (items on different inodes never share a description, so the shards are
/// independent). The largest bucket (half `SHARD_MIN` refs or more) is split among
/// the threads too: each part is classified in kcmp order and the parts are merged
/// in one pass of kcmp calls, or, if one of those fails, the bucket is classified
/// whole. Only this thread polls `interrupted`; the others stop when it does.
pub fn classify_files_sharded(
    refs: &[FileRef],
    opts: FileOptions,
    threads: usize,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<Classified, Failure> {
    sharded(refs, opts, threads, SHARD_MIN, interrupted)
}

/// `classify_files_sharded` for batches of `min` refs or more.
fn sharded(
    refs: &[FileRef],
    opts: FileOptions,
    threads: usize,
    min: usize,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<Classified, Failure> {
    if threads <= 1 || opts.order == GroupOrder::Kernel || refs.len() < min {
        return classify_files(refs, opts, interrupted);
    }
    let keys = map_chunks(refs, files::stat_keys, interrupted)?;
    // Only kcmp orders descriptions: without it a bucket is never split.
    let split_min = support::kcmp_usable().then_some(min / 2);
    let shards = deal_shards(refs, &keys, threads, split_min);
    let stop = AtomicBool::new(false);
    let run = |shard: &Shard, poll: &mut dyn FnMut() -> bool| {
        let found = run_shard(&shard.refs, &shard.keys, opts, opts.order, poll)?;
        let part = match &shard.split {
            Some((key, part)) => {
                let keys = part.iter().map(|&r| (r, *key)).collect();
                let sorted = run_shard(part, &keys, opts, GroupOrder::Kernel, poll)?;
                Some((*key, sorted.groups, sorted.stats))
            }
            None => None,
        };
        Ok::<_, Failure>((found, part))
    };
    let (first, rest) = shards.split_first().ok_or_else(churn_failure)?;
    let results: Vec<Result<(Classified, Option<Part>), Failure>> = thread::scope(|scope| {
        let helpers: Vec<_> = rest
            .iter()
            .map(|shard| {
                let stop = &stop;
                let run = &run;
                let handle = thread::Builder::new().spawn_scoped(scope, move || {
                    run(shard, &mut || stop.load(Atomic::Relaxed))
                });
                (shard, handle)
            })
            .collect();
        let mut mine = run(first, &mut || {
            let now = interrupted();
            if now {
                stop.store(true, Atomic::Relaxed);
            }
            now
        });
        if mine.is_err() {
            stop.store(true, Atomic::Relaxed);
        }
        let mut results = Vec::with_capacity(shards.len());
        for (shard, handle) in helpers {
            // A helper that could not start, or whose work was lost: its shard here.
            let done = match handle.map(thread::ScopedJoinHandle::join) {
                Ok(Ok(done)) => done,
                _ => run(shard, &mut || stop.load(Atomic::Relaxed)),
            };
            results.push(done);
        }
        results.insert(0, std::mem::replace(&mut mine, Err(Failure::Interrupted)));
        results
    });
    let mut parts: Vec<Part> = Vec::new();
    let results: Vec<Result<Classified, Failure>> = results
        .into_iter()
        .map(|r| {
            r.map(|(found, part)| {
                parts.extend(part);
                found
            })
        })
        .collect();
    let mut merged = merge_shards(results)?;
    if !parts.is_empty() {
        merged.groups.extend(join_parts(
            parts,
            &shards,
            opts,
            &mut merged.stats,
            interrupted,
        )?);
        merged
            .groups
            .sort_unstable_by(|a, b| a.first().cmp(&b.first()));
    }
    Ok(merged)
}

/// One engine run over `refs` with their keys already taken, in `order`.
fn run_shard(
    refs: &[FileRef],
    keys: &HashMap<FileRef, Key>,
    opts: FileOptions,
    order: GroupOrder,
    poll: &mut dyn FnMut() -> bool,
) -> Result<Classified, Failure> {
    if refs.is_empty() {
        return Ok(Classified {
            groups: Vec::new(),
            undecided: Vec::new(),
            stats: Stats::default(),
        });
    }
    let mut seed = Some(keys.clone());
    let new_oracle = || {
        let mut oracle = FileOracle::new(opts);
        if let Some(keys) = seed.take() {
            oracle.seed_keys(keys);
        }
        Ok(oracle)
    };
    let Settled {
        groups,
        stats,
        mut oracle,
    } = classify_until_settled(refs, order, opts.missing, poll, new_oracle)?;
    let undecided = oracle.undecided_refs()?;
    Ok(Classified {
        groups,
        undecided,
        stats,
    })
}

/// The split bucket's groups: its parts merged in kcmp order, or, when a comparison
/// of the merge fails (something went away meanwhile), the bucket classified whole.
fn join_parts(
    parts: Vec<Part>,
    shards: &[Shard],
    opts: FileOptions,
    stats: &mut Stats,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<Vec<Vec<FileRef>>, Failure> {
    let mut joined: Option<Vec<Vec<FileRef>>> = Some(Vec::new());
    let mut key = None;
    for (k, groups, part_stats) in parts {
        key = Some(k);
        stats.add(part_stats);
        joined = joined.and_then(|sofar| merge_in_kcmp_order(sofar, groups, &mut stats.compares));
    }
    if let Some(groups) = joined {
        return Ok(groups);
    }
    let Some(key) = key else {
        return Ok(Vec::new());
    };
    let mut refs: Vec<FileRef> = shards
        .iter()
        .filter_map(|s| s.split.as_ref())
        .flat_map(|(_, part)| part.iter().copied())
        .collect();
    refs.sort_unstable();
    let keys = refs.iter().map(|&r| (r, key)).collect();
    let whole = run_shard(&refs, &keys, opts, opts.order, interrupted)?;
    stats.add(whole.stats);
    Ok(whole.groups)
}

/// Refs a batch needs before it is split into shards: below it, one thread is quicker.
const SHARD_MIN: usize = 4096;

/// One thread's part of a sharded batch: its refs and the keys already taken, and
/// its part of a bucket too costly for one thread (`split`), classified apart in
/// kcmp order so that the parts merge in one pass.
struct Shard {
    refs: Vec<FileRef>,
    keys: HashMap<FileRef, Key>,
    split: Option<(Key, Vec<FileRef>)>,
}

/// A split bucket's parts, each classified in kcmp order.
type Part = (Key, Vec<Vec<FileRef>>, Stats);

/// The inode buckets dealt to `threads` shards, the costliest first to the least
/// loaded (a bucket of n refs costs about n log2 n comparisons). Refs whose stat
/// failed go to the first shard, which keys them again and tells the failures apart.
fn deal_shards(
    refs: &[FileRef],
    keys: &[Option<Key>],
    threads: usize,
    split_min: Option<usize>,
) -> Vec<Shard> {
    let mut buckets: HashMap<Key, Vec<FileRef>> = HashMap::default();
    let mut unkeyed = Vec::new();
    for (&r, key) in refs.iter().zip(keys) {
        match key {
            Some(k) => buckets.entry(*k).or_default().push(r),
            None => unkeyed.push(r),
        }
    }
    let mut buckets: Vec<(Key, Vec<FileRef>)> = buckets.into_iter().collect();
    let cost = |n: usize| n * (usize::BITS - n.leading_zeros()) as usize;
    buckets.sort_unstable_by(|a, b| cost(b.1.len()).cmp(&cost(a.1.len())).then(a.0.cmp(&b.0)));
    let mut shards: Vec<(usize, Shard)> = (0..threads)
        .map(|_| {
            (
                0,
                Shard {
                    refs: Vec::new(),
                    keys: HashMap::default(),
                    split: None,
                },
            )
        })
        .collect();
    // The largest bucket, from `split_min` refs, is split into one part per thread:
    // its cost depends on how many descriptions it holds, unknown until it is
    // classified (a pipe end a thousand processes inherited costs one comparison per
    // fd, a file each of them opened 25 times about 15), while the merge costs one
    // comparison per description at most.
    if threads > 1
        && split_min.is_some_and(|at| buckets.first().is_some_and(|(_, m)| m.len() >= at))
    {
        let (key, mut members) = buckets.remove(0);
        members.sort_unstable();
        let size = members.len().div_ceil(threads);
        for ((load, shard), part) in shards.iter_mut().zip(members.chunks(size)) {
            *load += cost(part.len());
            shard.split = Some((key, part.to_vec()));
        }
    }
    if let Some((_, first)) = shards.first_mut() {
        first.refs.extend(unkeyed);
    }
    for (key, members) in buckets {
        let Some((load, shard)) = shards.iter_mut().min_by_key(|(load, _)| *load) else {
            break;
        };
        *load += cost(members.len());
        for r in members {
            shard.refs.push(r);
            shard.keys.insert(r, key);
        }
    }
    shards
        .into_iter()
        .map(|(_, mut shard)| {
            shard.refs.sort_unstable();
            shard
        })
        .filter(|shard| !shard.refs.is_empty() || shard.split.is_some())
        .collect()
}

/// Two lists of groups of one inode, each ascending in kcmp order, merged in one
/// pass: groups whose first members the kernel says are one description join.
/// `None` when a comparison fails (a process gone, an fd closed): the caller then
/// classifies the bucket whole, which knows how to tell those apart.
fn merge_in_kcmp_order(
    a: Vec<Vec<FileRef>>,
    b: Vec<Vec<FileRef>>,
    compares: &mut u64,
) -> Option<Vec<Vec<FileRef>>> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let order = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => {
                let (&(p1, f1), &(p2, f2)) = (x.first()?, y.first()?);
                *compares += 1;
                sys::kcmp(p1, p2, sys::KCMP_FILE, f1, f2).ok()?
            }
            (Some(_), None) => KcmpOrder::Less,
            (None, Some(_)) => KcmpOrder::Greater,
            (None, None) => return Some(out),
        };
        match order {
            KcmpOrder::Less => out.extend(a.next()),
            KcmpOrder::Greater => out.extend(b.next()),
            KcmpOrder::Equal => {
                let mut joined = a.next()?;
                joined.extend(b.next()?);
                joined.sort_unstable();
                out.push(joined);
            }
            // Reserved, never returned: no order to merge by.
            KcmpOrder::Unordered => return None,
        }
    }
}

/// The shards' answers as one: groups by smallest ref, the undecided refs ascending,
/// the calls summed. The first failure (other than a stop another one caused) wins.
fn merge_shards(results: Vec<Result<Classified, Failure>>) -> Result<Classified, Failure> {
    let mut merged = Classified {
        groups: Vec::new(),
        undecided: Vec::new(),
        stats: Stats::default(),
    };
    let mut interrupted = false;
    let mut failure = None;
    for result in results {
        match result {
            Ok(part) => {
                merged.groups.extend(part.groups);
                merged.undecided.extend(part.undecided);
                merged.stats.add(part.stats);
            }
            Err(Failure::Interrupted) => interrupted = true,
            Err(f) => {
                failure.get_or_insert(f);
            }
        }
    }
    if let Some(f) = failure {
        return Err(f);
    }
    if interrupted {
        return Err(Failure::Interrupted);
    }
    merged
        .groups
        .sort_unstable_by(|a, b| a.first().cmp(&b.first()));
    merged.undecided.sort_unstable();
    Ok(merged)
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

/// Items a thread takes at a time in `map_chunks`: a millisecond or so of syscalls,
/// so Ctrl-C is noticed soon and a thread slowed by other load takes fewer chunks.
const CHUNK: usize = 256;

/// Threads `map_chunks` uses at most: the batches are syscall-bound on /proc, whose
/// lookups stop scaling beyond a few cores.
const MAX_THREADS: usize = 4;

/// The most threads one pass may use, as asked (`KCMP_RS_THREADS`); 0: no limit.
static THREAD_LIMIT: AtomicUsize = AtomicUsize::new(0);

/// Limits every later pass to `n` threads (0: as many as the process may use).
pub fn set_thread_limit(n: usize) {
    THREAD_LIMIT.store(n, Atomic::Relaxed);
}

/// The threads a pass may use: the CPUs this process may run on (sched_getaffinity),
/// at most the limit asked.
pub fn threads() -> usize {
    match THREAD_LIMIT.load(Atomic::Relaxed) {
        0 => sys::usable_cpus(),
        n => n.min(sys::usable_cpus()),
    }
}

/// `work` applied to every chunk of `items`, in order, by this thread and up to
/// `MAX_THREADS - 1` scoped helpers (as many as the cores allow) taking chunks in
/// turn; `work` returns one answer per item. Only this thread polls `interrupted`,
/// between its chunks; a helper that cannot be started, or whose work is lost, leaves
/// its chunks to this thread.
pub(crate) fn map_chunks<T: Sync, R: Send>(
    items: &[T],
    work: impl Fn(&[T]) -> Vec<R> + Sync,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<Vec<R>, Failure> {
    let chunks: Vec<&[T]> = items.chunks(CHUNK).collect();
    let threads = threads().min(MAX_THREADS).min(chunks.len());
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let take = || {
        let i = next.fetch_add(1, Atomic::Relaxed);
        chunks.get(i).map(|chunk| (i, work(chunk)))
    };
    let helper = || {
        let mut done = Vec::new();
        while !stop.load(Atomic::Relaxed) {
            let Some(answer) = take() else { break };
            done.push(answer);
        }
        done
    };
    let mut answers: Vec<Option<Vec<R>>> = Vec::new();
    answers.resize_with(chunks.len(), || None);
    let interrupted_here = thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads)
            .filter_map(|_| thread::Builder::new().spawn_scoped(scope, helper).ok())
            .collect();
        let mut interrupted_here = false;
        loop {
            if interrupted() {
                stop.store(true, Atomic::Relaxed);
                interrupted_here = true;
                break;
            }
            let Some((i, answer)) = take() else { break };
            answers[i] = Some(answer);
        }
        for done in helpers.into_iter().filter_map(|h| h.join().ok()) {
            for (i, answer) in done {
                answers[i] = Some(answer);
            }
        }
        interrupted_here
    });
    if interrupted_here {
        return Err(Failure::Interrupted);
    }
    let mut out = Vec::with_capacity(items.len());
    for (answer, chunk) in answers.into_iter().zip(&chunks) {
        out.extend(answer.unwrap_or_else(|| work(chunk)));
    }
    Ok(out)
}

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
