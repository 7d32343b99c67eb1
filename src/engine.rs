//! Grouping engine: partitions items (fds, possibly of several processes) by the
//! kernel object behind them, using as few oracle calls (syscalls) as possible.
//!
//! Plain Rust on purpose: no PyO3, no libc, no syscalls. Everything the kernel
//! would answer comes through the [`Oracle`] trait, so the tests can drive the
//! engine with counting, racing (items vanishing) and outright lying oracles.
//!
//! # Strategy
//! * `key()` (e.g. `(st_dev, st_ino)`) splits items into buckets; items in
//!   different buckets never share an object, so most items cost no comparison.
//! * Inside a bucket we keep one representative ("rep") per group found so far.
//!   While a bucket has at most [`SMALL`] reps we scan them with the cheap
//!   equality test `same()`; past that (or as soon as `same()` cannot decide and
//!   `compare()` is available) the reps are merge-sorted once by `compare()` and
//!   every later item is placed by binary search: at most `ceil(log2(k + 1))`
//!   compares against `k` reps.
//! * [`GroupOrder::Kernel`] merges the already sorted per-bucket rep lists
//!   instead of sorting all groups from scratch.
//!
//! # Robustness
//! Oracle answers are never trusted for control flow that could panic, loop or
//! drop items: every index is bounds-checked against our own vectors, the merge
//! sort terminates and yields a permutation whatever `compare()` says, and each
//! `Gone` removes one live item, so retries are bounded by the input size. The
//! result is "correct as observed": a partition of the surviving input.

use std::cmp::Ordering;
use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;
use std::hash::Hash;

/// A cheap bucketing key (e.g. (st_dev, st_ino)); items with different keys NEVER share a description.
pub type Key = (u64, u64);

/// What to do when an item turns out to no longer exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Abort the whole classification with `Fault::Gone(item)`.
    Raise,
    /// Leave the item out of the result.
    Skip,
}

/// Order of the returned groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupOrder {
    /// By each group's smallest item.
    Fd,
    /// Ascending in the oracle's `compare` order (falls back to `Fd` when the
    /// oracle cannot order, see [`classify`]).
    Kernel,
}

/// Why an oracle call did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault<I, E> {
    /// This item no longer exists (fd closed, process exited). The oracle has already worked out WHICH item (it may name either argument).
    Gone(I),
    /// Anything else: abort the whole classification with this error.
    Fail(E),
}

/// The engine's only window on the kernel.
pub trait Oracle {
    type Item: Copy + Ord + Eq + Hash + std::fmt::Debug;
    type Error;
    /// Bucketing key for one item.
    fn key(&mut self, item: Self::Item) -> Result<Key, Fault<Self::Item, Self::Error>>;
    /// Whether `compare` is usable at all (false in sandboxes where kcmp is blocked).
    fn can_order(&self) -> bool;
    /// Kernel order of the two items' objects (kcmp). Only called when can_order().
    fn compare(
        &mut self,
        a: Self::Item,
        b: Self::Item,
    ) -> Result<Ordering, Fault<Self::Item, Self::Error>>;
    /// Cheap equality-only test (e.g. F_DUPFD_QUERY); Ok(None) = cannot decide this pair cheaply (caller falls back to compare, or, if !can_order(), to `undecided`).
    fn same(
        &mut self,
        a: Self::Item,
        b: Self::Item,
    ) -> Result<Option<bool>, Fault<Self::Item, Self::Error>>;
    /// Called every `CHECKPOINT_EVERY` oracle operations (and once at start) so a long batch can notice Ctrl-C; an Err aborts with Fault::Fail.
    fn checkpoint(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    /// Called when neither `same` nor `compare` can decide whether `a` and `b` share an object; return the error to abort with (the oracle records the undecided pair in it).
    fn undecided(&mut self, a: Self::Item, b: Self::Item) -> Self::Error;
    /// `Some(error)` turns on the end-of-batch check that every group still holds
    /// together (each member still equals its rep, each sorted bucket still ascends).
    /// Items can change while a batch runs (an fd dup2'ed over a rep makes every later
    /// answer through it stale); a failed check reruns the batch, and `error` is what
    /// ends it when the items keep changing. `None` (the default): no check.
    fn instability(&mut self) -> Option<Self::Error> {
        None
    }
}

/// Buckets of at most this many items have every pair of items checked at the end.
pub const PAIRWISE_ITEMS: usize = 16;

/// Larger buckets of at most this many groups have every pair of reps checked.
pub const PAIRWISE_REPS: usize = 16;

/// Runs of a batch before a check that keeps failing gives up.
pub const MAX_ATTEMPTS: usize = 8;

/// Oracle operations (`key` + `compare` + `same` calls) between two checkpoints.
pub const CHECKPOINT_EVERY: usize = 1024;

/// Oracle calls made by one [`classify`] run (calls that faulted included).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub keys: u64,
    pub compares: u64,
    pub sames: u64,
}

/// Reps a bucket may hold while it is still probed by linear `same()` scans.
/// Below this, a few cheap equality tests beat paying for a sort; above it the
/// scan would grow linearly while binary search grows logarithmically.
pub const SMALL: usize = 4;

/// Groups `items` (any order, duplicates allowed: they collapse) by shared object.
///
/// Returns groups, each ascending; groups ordered by their smallest item
/// ([`GroupOrder::Fd`]) or ascending in the oracle's `compare` order
/// ([`GroupOrder::Kernel`]: each group's rep compares `Less` than the next group's).
///
/// * [`Missing::Skip`]: items reported `Gone` are silently left out.
///   [`Missing::Raise`]: the first `Gone` aborts with `Err(Fault::Gone(item))`,
///   `item` being exactly what the oracle named.
/// * `GroupOrder::Kernel` with `!oracle.can_order()`: there is no kernel order
///   to give, so the groups come back in `Fd` order (no error, no panic).
///   Callers that need a real kernel order must check `can_order()` themselves.
/// * A `Gone` naming an item that is neither an argument of the failing call
///   nor a live placed item (an oracle bug) is blamed on the call's first
///   argument, so that every `Gone` removes something and retries terminate.
/// * Two existing reps that `compare` calls `Equal` (an oracle inconsistency or
///   an fd reused mid-batch) stay separate groups: decisions are never revisited.
// The spelled-out return type is the contract other modules code against.
#[allow(clippy::type_complexity)]
pub fn classify<O: Oracle>(
    oracle: &mut O,
    items: &[O::Item],
    order: GroupOrder,
    missing: Missing,
) -> Result<(Vec<Vec<O::Item>>, Stats), Fault<O::Item, O::Error>> {
    let mut todo = items.to_vec();
    todo.sort_unstable();
    todo.dedup();

    let can_order = oracle.can_order();
    oracle.checkpoint().map_err(Fault::Fail)?;
    let unstable = oracle.instability();
    let mut engine = Engine {
        oracle,
        missing,
        can_order,
        stats: Stats::default(),
        ops: 0,
        groups: Vec::new(),
        buckets: Vec::new(),
        // Fast, non-cryptographic hashing: keys and items are kernel-given or
        // caller-given integers, and a caller crafting collisions only slows itself.
        bucket_of_key: HashMap::default(),
        group_of: HashMap::default(),
        singles: Vec::new(),
        volatile: HashMap::default(),
    };
    // Key everything first and sort by key. An item alone under its key (most fds,
    // usually) is a group by itself and never touches the engine's maps: that keeps
    // the working set small, and a large one measurably slows the kernel's own
    // stat path. Kernel order merges every group, so there all go through the maps.
    let mut keyed: Vec<(Key, O::Item)> = Vec::with_capacity(todo.len());
    for &item in &todo {
        if let Some(key) = engine.key_of(item)? {
            keyed.push((key, item));
        }
    }
    drop(todo);
    // Plain data with a real total order: std's sort is safe here.
    keyed.sort_unstable();
    let singles_allowed = order == GroupOrder::Fd || !can_order;
    for run in keyed.chunk_by(|x, y| x.0 == y.0) {
        match run {
            [single] if singles_allowed => engine.singles.push(*single),
            _ => {
                // Ascending within a key makes a group's first member its rep.
                for &(key, item) in run {
                    engine.add_keyed(item, key)?;
                }
            }
        }
    }
    drop(keyed);
    // Only the buckets that no longer hold together are classified again: a rerun
    // of everything would rarely finish while some unrelated fds keep changing.
    if let Some(error) = unstable {
        let mut attempt = 1;
        loop {
            let check = engine.verify()?;
            if check.buckets.is_empty() {
                break;
            }
            if attempt >= MAX_ATTEMPTS {
                return Err(Fault::Fail(error));
            }
            attempt += 1;
            for (item, seen) in check.volatile {
                *engine.volatile.entry(item).or_insert(0) += seen;
            }
            engine.redo(&check.buckets)?;
        }
    }
    let groups = if order == GroupOrder::Kernel && can_order {
        engine.kernel_order()?
    } else {
        engine.fd_order()
    };
    Ok((groups, engine.stats))
}

impl Stats {
    pub fn add(&mut self, more: Stats) {
        self.keys += more.keys;
        self.compares += more.compares;
        self.sames += more.sames;
    }
}

/// One group: the items found to share one object.
struct Group<I> {
    /// In joining order (ascending but for items a redo added). The first member is
    /// the group's rep; when it goes away the next one (same object, hence same sort
    /// position) takes over for free. Empty means the group is dead. Sorted on output.
    members: Vec<I>,
    bucket: usize,
}

/// All groups with one key.
struct Bucket {
    /// Group ids, one per live group; ascending by `compare` when `sorted`.
    reps: Vec<usize>,
    /// Once sorted, a bucket stays sorted (inserts keep the order).
    sorted: bool,
    /// The group an item of this bucket last joined or started: fds made by dup()
    /// usually sit next to their original, so it is tried before the binary search.
    last: Option<usize>,
}

/// Internal failure of one oracle call, before `Missing` is applied.
enum Stop<I, E> {
    /// `named` is what the oracle said (returned as-is under `Raise`);
    /// `victim` is the live item we remove for it under `Skip`.
    Gone {
        named: I,
        victim: I,
    },
    Fail(E),
}

/// What the end-of-batch check found (see `Engine::verify`).
struct Check<I> {
    /// Buckets to classify again.
    buckets: Vec<usize>,
    /// Fds in a mismatch, each with how many it took part in.
    volatile: Vec<(I, u32)>,
}

/// Outcome of probing a bucket for an item.
enum Probe {
    Join(usize),
    Insert(usize),
    /// `same()` could not decide but `compare()` can: sort, then search.
    NeedSort,
}

struct Engine<'a, O: Oracle> {
    oracle: &'a mut O,
    missing: Missing,
    can_order: bool,
    stats: Stats,
    ops: usize,
    groups: Vec<Group<O::Item>>,
    buckets: Vec<Bucket>,
    bucket_of_key: HashMap<Key, usize>,
    /// Live placed item -> its group; lets a `Gone` naming any item be resolved.
    group_of: HashMap<O::Item, usize>,
    /// Items alone under their key, by key: groups of one that need no comparison.
    singles: Vec<(Key, O::Item)>,
    /// Fds seen in mismatches during the batch, with how often: when their bucket is
    /// redone the most suspect go last, so that fds that stay put become the reps.
    volatile: HashMap<O::Item, u32>,
}

type Res<T, O> = Result<T, Fault<<O as Oracle>::Item, <O as Oracle>::Error>>;
type StopRes<T, O> = Result<T, Stop<<O as Oracle>::Item, <O as Oracle>::Error>>;

impl<O: Oracle> Engine<'_, O> {
    // ---- oracle access: counting, checkpoints, Gone attribution ----

    fn tick(&mut self) -> StopRes<(), O> {
        self.ops += 1;
        if self.ops % CHECKPOINT_EVERY == 0 {
            self.oracle.checkpoint().map_err(Stop::Fail)?;
        }
        Ok(())
    }

    /// Turns an oracle fault into a `Stop`, choosing the victim such that it
    /// is always live: removing it is then guaranteed progress.
    fn stop(
        &self,
        fault: Fault<O::Item, O::Error>,
        a: O::Item,
        b: O::Item,
    ) -> Stop<O::Item, O::Error> {
        match fault {
            Fault::Fail(e) => Stop::Fail(e),
            Fault::Gone(named) => {
                let victim = if named == a || named == b || self.group_of.contains_key(&named) {
                    named
                } else {
                    a
                };
                Stop::Gone { named, victim }
            }
        }
    }

    fn key(&mut self, item: O::Item) -> StopRes<Key, O> {
        self.tick()?;
        self.stats.keys += 1;
        self.oracle.key(item).map_err(|f| self.stop(f, item, item))
    }

    fn same(&mut self, a: O::Item, b: O::Item) -> StopRes<Option<bool>, O> {
        self.tick()?;
        self.stats.sames += 1;
        self.oracle.same(a, b).map_err(|f| self.stop(f, a, b))
    }

    fn compare(&mut self, a: O::Item, b: O::Item) -> StopRes<Ordering, O> {
        self.tick()?;
        self.stats.compares += 1;
        self.oracle.compare(a, b).map_err(|f| self.stop(f, a, b))
    }

    /// Applies `Missing` to a stop: the victim to drop under `Skip`, or the
    /// error that ends the run.
    fn absorb(&self, stop: Stop<O::Item, O::Error>) -> Res<O::Item, O> {
        match stop {
            Stop::Fail(e) => Err(Fault::Fail(e)),
            Stop::Gone { named, .. } if self.missing == Missing::Raise => Err(Fault::Gone(named)),
            Stop::Gone { victim, .. } => Ok(victim),
        }
    }

    // ---- group bookkeeping ----

    fn rep(&self, gid: usize) -> Option<O::Item> {
        self.groups
            .get(gid)
            .and_then(|g| g.members.first().copied())
    }

    fn join(&mut self, item: O::Item, gid: usize) {
        if let Some(g) = self.groups.get_mut(gid) {
            g.members.push(item);
            self.group_of.insert(item, gid);
            if let Some(bucket) = self.buckets.get_mut(g.bucket) {
                bucket.last = Some(gid);
            }
        }
    }

    fn new_group(&mut self, item: O::Item, b: usize, pos: usize) {
        let gid = self.groups.len();
        self.groups.push(Group {
            members: vec![item],
            bucket: b,
        });
        self.group_of.insert(item, gid);
        let bucket = &mut self.buckets[b];
        bucket.reps.insert(pos.min(bucket.reps.len()), gid);
        bucket.last = Some(gid);
    }

    /// Drops a placed item that vanished. Its group's next member becomes the
    /// rep implicitly; an emptied group leaves its bucket (removal keeps a
    /// sorted bucket sorted).
    fn remove(&mut self, item: O::Item) {
        let Some(gid) = self.group_of.remove(&item) else {
            debug_assert!(false, "victim {item:?} is not a placed item");
            return;
        };
        let Some(group) = self.groups.get_mut(gid) else {
            return;
        };
        // Members are ascending except after a redo appended some: search linearly.
        if let Some(pos) = group.members.iter().position(|&m| m == item) {
            group.members.remove(pos);
        }
        if group.members.is_empty() {
            if let Some(bucket) = self.buckets.get_mut(group.bucket) {
                bucket.reps.retain(|&g| g != gid);
            }
        }
    }

    // ---- placement ----

    fn add(&mut self, item: O::Item) -> Res<(), O> {
        match self.key_of(item)? {
            Some(key) => self.add_keyed(item, key),
            None => Ok(()),
        }
    }

    /// The item's key; `None` when it vanished (and `Missing::Skip` drops it).
    fn key_of(&mut self, item: O::Item) -> Res<Option<Key>, O> {
        loop {
            match self.key(item) {
                Ok(key) => return Ok(Some(key)),
                Err(stop) => {
                    let victim = self.absorb(stop)?;
                    if victim == item {
                        return Ok(None);
                    }
                    self.remove(victim);
                }
            }
        }
    }

    fn add_keyed(&mut self, item: O::Item, key: Key) -> Res<(), O> {
        let b = match self.bucket_of_key.get(&key) {
            Some(&b) => b,
            None => {
                self.buckets.push(Bucket {
                    reps: Vec::new(),
                    sorted: false,
                    last: None,
                });
                let b = self.buckets.len() - 1;
                self.bucket_of_key.insert(key, b);
                // A redone item may now share the key of an item that was alone
                // under it: that one becomes a group of the bucket first.
                if let Ok(pos) = self.singles.binary_search_by(|(k, _)| k.cmp(&key)) {
                    let (_, single) = self.singles.remove(pos);
                    self.new_group(single, b, 0);
                }
                b
            }
        };
        self.place(item, b)
    }

    /// Puts `item` into an existing group of bucket `b` or a new one. After a
    /// `Gone` the probe restarts from scratch: the bucket changed under it.
    fn place(&mut self, item: O::Item, b: usize) -> Res<(), O> {
        loop {
            let bucket = &self.buckets[b];
            if bucket.reps.is_empty() {
                self.new_group(item, b, 0);
                return Ok(());
            }
            let probe = if bucket.sorted {
                match self.recent(item, b) {
                    Ok(Some(gid)) => Ok(Probe::Join(gid)),
                    Ok(None) => self.search(item, b),
                    Err(stop) => Err(stop),
                }
            } else if self.can_order && bucket.reps.len() > SMALL {
                Ok(Probe::NeedSort)
            } else {
                self.scan(item, b)
            };
            match probe {
                Ok(Probe::Join(gid)) => {
                    self.join(item, gid);
                    return Ok(());
                }
                Ok(Probe::Insert(pos)) => {
                    self.new_group(item, b, pos);
                    return Ok(());
                }
                // Sets `sorted`, so this arm runs at most once per bucket.
                Ok(Probe::NeedSort) => self.sort_bucket(b)?,
                Err(stop) => {
                    let victim = self.absorb(stop)?;
                    if victim == item {
                        return Ok(());
                    }
                    self.remove(victim);
                }
            }
        }
    }

    /// Whether `item` belongs to the bucket's most recent group: one check that
    /// settles a dup next to its original, and costs one more otherwise.
    fn recent(&mut self, item: O::Item, b: usize) -> StopRes<Option<usize>, O> {
        let Some(gid) = self.buckets[b].last else {
            return Ok(None);
        };
        let Some(rep) = self.rep(gid) else {
            return Ok(None);
        };
        let same = self.equal(item, rep)?.unwrap_or(false);
        Ok(same.then_some(gid))
    }

    /// Whether two items are one object: `same` where it answers, else `compare`;
    /// `None` when neither can tell.
    fn equal(&mut self, a: O::Item, b: O::Item) -> StopRes<Option<bool>, O> {
        match self.same(a, b)? {
            Some(same) => Ok(Some(same)),
            None if self.can_order => Ok(Some(self.compare(a, b)? == Ordering::Equal)),
            None => Ok(None),
        }
    }

    /// Linear `same()` scan of an unsorted bucket.
    fn scan(&mut self, item: O::Item, b: usize) -> StopRes<Probe, O> {
        let mut i = 0;
        while let Some(&gid) = self.buckets[b].reps.get(i) {
            i += 1;
            let Some(rep) = self.rep(gid) else { continue };
            match self.same(item, rep)? {
                Some(true) => return Ok(Probe::Join(gid)),
                Some(false) => {}
                None if self.can_order => return Ok(Probe::NeedSort),
                None => return Err(Stop::Fail(self.oracle.undecided(item, rep))),
            }
        }
        Ok(Probe::Insert(self.buckets[b].reps.len()))
    }

    /// Binary search of a sorted bucket: at most ceil(log2(k + 1)) compares.
    /// Whatever `compare` answers, `lo..hi` shrinks and stays in bounds.
    fn search(&mut self, item: O::Item, b: usize) -> StopRes<Probe, O> {
        let (mut lo, mut hi) = (0, self.buckets[b].reps.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let found = self.buckets[b]
                .reps
                .get(mid)
                .and_then(|&g| Some((g, self.rep(g)?)));
            let Some((gid, rep)) = found else {
                debug_assert!(false, "dead group in bucket reps");
                lo = mid + 1;
                continue;
            };
            match self.compare(item, rep)? {
                Ordering::Equal => return Ok(Probe::Join(gid)),
                Ordering::Less => hi = mid,
                Ordering::Greater => lo = mid + 1,
            }
        }
        Ok(Probe::Insert(lo))
    }

    /// Sorts a bucket's reps once with our own merge sort (std's sort may
    /// panic on an inconsistent comparator, and a syscall comparator can be).
    fn sort_bucket(&mut self, b: usize) -> Res<(), O> {
        let runs = self.buckets[b].reps.iter().map(|&g| vec![g]).collect();
        let sorted = self.merge_runs(runs)?;
        let bucket = &mut self.buckets[b];
        bucket.reps = sorted;
        bucket.sorted = true;
        Ok(())
    }

    // ---- merging ----

    /// Merges sorted runs of group ids into one, pairwise through a queue
    /// (balanced: every element takes part in about log2(#runs) merges).
    /// Singleton runs make this a plain bottom-up merge sort. Dead groups are
    /// dropped on the way, so `Gone` during a merge needs no restart.
    fn merge_runs(&mut self, runs: Vec<Vec<usize>>) -> Res<Vec<usize>, O> {
        let mut queue: VecDeque<Vec<usize>> = runs.into_iter().filter(|r| !r.is_empty()).collect();
        loop {
            let Some(a) = queue.pop_front() else {
                return Ok(Vec::new());
            };
            let Some(b) = queue.pop_front() else {
                return Ok(a.into_iter().filter(|&g| self.rep(g).is_some()).collect());
            };
            let merged = self.merge_two(&a, &b)?;
            queue.push_back(merged);
        }
    }

    /// First live group at or after `*i` in `run`, with its current rep.
    fn next_live(&self, run: &[usize], i: &mut usize) -> Option<(usize, O::Item)> {
        while let Some(&gid) = run.get(*i) {
            if let Some(rep) = self.rep(gid) {
                return Some((gid, rep));
            }
            *i += 1;
        }
        None
    }

    /// Each compare emits one id, so this ends after at most |a| + |b|
    /// answers plus one retry per `Gone` (and each `Gone` removes an item).
    fn merge_two(&mut self, a: &[usize], b: &[usize]) -> Res<Vec<usize>, O> {
        let mut out = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        loop {
            let (x, y) = match (self.next_live(a, &mut i), self.next_live(b, &mut j)) {
                (Some(x), Some(y)) => (x, y),
                (Some(_), None) => {
                    out.extend(a.iter().skip(i));
                    return Ok(out);
                }
                (None, _) => {
                    out.extend(b.iter().skip(j));
                    return Ok(out);
                }
            };
            match self.compare(x.1, y.1) {
                Ok(Ordering::Greater) => {
                    out.push(y.0);
                    j += 1;
                }
                // Equal between distinct groups is an inconsistency: keep
                // both, left first (stable), rather than revisit old decisions.
                Ok(_) => {
                    out.push(x.0);
                    i += 1;
                }
                // Promotion keeps a group's position and dead groups are
                // skipped, so the merge state stays valid: just go on.
                Err(stop) => {
                    let victim = self.absorb(stop)?;
                    self.remove(victim);
                }
            }
        }
    }

    // ---- consistency ----

    /// What no longer holds together: a group whose member differs from its rep, or
    /// a sorted bucket that no longer ascends. Its bucket is classified again
    /// (`buckets`), with the reps of such groups (`volatile`) placed last, so that
    /// fds that stay put tend to become the reps. Anything that vanished counts as a
    /// change (under `Missing::Raise` it ends the batch, as everywhere).
    fn verify(&mut self) -> Res<Check<O::Item>, O> {
        let mut failing = vec![false; self.buckets.len()];
        let mut check = Check {
            buckets: Vec::new(),
            volatile: Vec::new(),
        };
        // Small buckets get every pair of items checked: the only check that fds
        // changing under it cannot fool for the fds that stay put.
        let mut sizes = vec![0usize; self.buckets.len()];
        for g in &self.groups {
            if let Some(n) = sizes.get_mut(g.bucket) {
                *n += g.members.len();
            }
        }
        for (b, &n) in sizes.iter().enumerate() {
            if (2..=PAIRWISE_ITEMS).contains(&n) {
                if let Some(pair) = self.misgrouped_pair(b)? {
                    failing[b] = true;
                    check.volatile.extend(pair.map(|r| (r, 1)));
                }
            }
        }
        for gid in 0..self.groups.len() {
            let Some(rep) = self.rep(gid) else { continue };
            let bucket = self.groups[gid].bucket;
            if sizes.get(bucket).is_some_and(|&n| n <= PAIRWISE_ITEMS) {
                continue;
            }
            let members: Vec<O::Item> = self.groups[gid].members.iter().skip(1).copied().collect();
            if members.is_empty() {
                continue;
            }
            let mut differ = Vec::new();
            for &member in &members {
                // Undecidable pairs were recorded by the oracle: nothing to recheck.
                let same = self.equal(member, rep).map(|e| e.unwrap_or(true));
                match same {
                    Ok(true) => {}
                    Ok(false) => differ.push(member),
                    Err(stop) => {
                        let victim = self.absorb(stop)?;
                        if victim == rep {
                            differ = members.clone();
                            break;
                        }
                        differ.push(member);
                    }
                }
            }
            // Which side changed cannot be told from here: a rep and a member that
            // flipped together would match each other. So the bucket is redone
            // whenever a member differs, with the rep placed last.
            if !differ.is_empty() {
                if let Some(f) = failing.get_mut(bucket) {
                    *f = true;
                }
                // The rep is in every mismatch of its group, a member only in its own:
                // an fd that keeps changing collects the most, and goes last.
                check.volatile.push((rep, differ.len() as u32 + 1));
                check.volatile.extend(differ.iter().map(|&m| (m, 1)));
            }
        }
        for (b, fail) in failing.iter_mut().enumerate() {
            if *fail || sizes.get(b).is_some_and(|&n| n <= PAIRWISE_ITEMS) {
                continue;
            }
            let reps: Vec<O::Item> = self.buckets[b]
                .reps
                .iter()
                .filter_map(|&g| self.rep(g))
                .collect();
            if let Some(pair) = self.misplaced_reps(&reps, self.buckets[b].sorted)? {
                *fail = true;
                check.volatile.extend(pair.map(|r| (r, 1)));
            }
        }
        check.buckets = failing
            .iter()
            .enumerate()
            .filter(|(_, f)| **f)
            .map(|(b, _)| b)
            .collect();
        Ok(check)
    }

    /// A check's outcome: an item that vanished during it counts as a contradiction
    /// (its bucket is redone without it), except under `Missing::Raise`, where it ends
    /// the batch as everywhere.
    fn observed(&self, answer: StopRes<bool, O>) -> Res<bool, O> {
        match answer {
            Ok(holds) => Ok(holds),
            Err(stop) => self.absorb(stop).map(|_| false),
        }
    }

    /// Two items of bucket `b` whose grouping the kernel now contradicts: equal but
    /// in two groups, or in one group but different.
    fn misgrouped_pair(&mut self, b: usize) -> Res<Option<[O::Item; 2]>, O> {
        let mut items: Vec<(O::Item, usize)> = Vec::new();
        for &gid in &self.buckets[b].reps {
            if let Some(g) = self.groups.get(gid) {
                items.extend(g.members.iter().map(|&m| (m, gid)));
            }
        }
        for (i, &(x, gx)) in items.iter().enumerate() {
            for &(y, gy) in &items[i + 1..] {
                let answer = self
                    .equal(x, y)
                    .map(|e| e.map_or(true, |same| same == (gx == gy)));
                if !self.observed(answer)? {
                    return Ok(Some([x, y]));
                }
            }
        }
        Ok(None)
    }

    /// A pair of a bucket's reps that contradicts the bucket: in a sorted bucket,
    /// neighbours that no longer ascend; in a bucket of at most `PAIRWISE_REPS`
    /// groups, any two reps that are now one object. Each check sees each fd at a
    /// slightly different moment, so fds changing fast enough can slip through the
    /// neighbour checks; the direct checks of small buckets close most of that gap
    /// where it is cheap.
    fn misplaced_reps(&mut self, reps: &[O::Item], sorted: bool) -> Res<Option<[O::Item; 2]>, O> {
        if sorted {
            for pair in reps.windows(2) {
                let ascends = self.compare(pair[0], pair[1]).map(|o| o == Ordering::Less);
                if !self.observed(ascends)? {
                    return Ok(Some([pair[0], pair[1]]));
                }
            }
        }
        if reps.len() > PAIRWISE_REPS {
            return Ok(None);
        }
        for (i, &x) in reps.iter().enumerate() {
            for &y in &reps[i + 1..] {
                let distinct = self.equal(x, y).map(|e| e != Some(true));
                if !self.observed(distinct)? {
                    return Ok(Some([x, y]));
                }
            }
        }
        Ok(None)
    }

    /// Classifies the items of the given buckets again, from their keys on (a changed
    /// item may now belong to another bucket), items seen to change last.
    fn redo(&mut self, buckets: &[usize]) -> Res<(), O> {
        let mut items = Vec::new();
        for &b in buckets {
            let Some(bucket) = self.buckets.get_mut(b) else {
                continue;
            };
            let gids = std::mem::take(&mut bucket.reps);
            bucket.sorted = false;
            bucket.last = None;
            for gid in gids {
                if let Some(g) = self.groups.get_mut(gid) {
                    items.append(&mut g.members);
                }
            }
        }
        for item in &items {
            self.group_of.remove(item);
        }
        let volatile = &self.volatile;
        items.sort_unstable_by_key(|i| (volatile.get(i).copied().unwrap_or(0), *i));
        for item in items {
            self.add(item)?;
        }
        Ok(())
    }

    // ---- output ----

    fn fd_order(&mut self) -> Vec<Vec<O::Item>> {
        let singles = std::mem::take(&mut self.singles);
        let mut out: Vec<Vec<O::Item>> = std::mem::take(&mut self.groups)
            .into_iter()
            .map(|mut g| {
                g.members.sort_unstable();
                g.members
            })
            .filter(|m| !m.is_empty())
            .chain(singles.into_iter().map(|(_, item)| vec![item]))
            .collect();
        // Items' own Ord is a real total order, so std's sort is safe here.
        out.sort_unstable_by_key(|m| m.first().copied());
        out
    }

    fn kernel_order(&mut self) -> Res<Vec<Vec<O::Item>>, O> {
        for b in 0..self.buckets.len() {
            let bucket = &self.buckets[b];
            if !bucket.sorted && bucket.reps.len() > 1 {
                self.sort_bucket(b)?;
            }
        }
        // Buckets are already sorted runs: merging them costs about
        // G * log2(#buckets) compares instead of G * log2(G) for a full sort.
        let runs = self.buckets.iter().map(|b| b.reps.clone()).collect();
        let order = self.merge_runs(runs)?;
        let mut out = Vec::with_capacity(order.len());
        for gid in order {
            if let Some(g) = self.groups.get_mut(gid) {
                if !g.members.is_empty() {
                    let mut members = std::mem::take(&mut g.members);
                    members.sort_unstable();
                    out.push(members);
                }
            }
        }
        // Every live group is in its bucket, so nothing is left; should a bug
        // break that, losing items would be worse than a misplaced group.
        let rest = self.fd_order();
        debug_assert!(rest.is_empty(), "groups missing from kernel order");
        out.extend(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

    // ---------- helpers ----------

    /// xorshift64*: tiny deterministic PRNG, no external crates.
    struct Rng(u64);
    impl Rng {
        fn new(seed: u64) -> Self {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            if n == 0 {
                0
            } else {
                self.next() % n
            }
        }
    }

    fn ceil_log2(x: usize) -> usize {
        if x <= 1 {
            0
        } else {
            (usize::BITS - (x - 1).leading_zeros()) as usize
        }
    }

    /// Worst-case compares of the engine's queue merge sort of `m` singletons
    /// (merging runs of p and q costs at most p + q - 1).
    fn merge_sort_bound(m: usize) -> usize {
        let mut q: VecDeque<usize> = std::iter::repeat_n(1, m).collect();
        let mut cost = 0;
        while q.len() > 1 {
            let (a, b) = (q.pop_front().unwrap(), q.pop_front().unwrap());
            cost += a + b - 1;
            q.push_back(a + b);
        }
        cost
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum TErr {
        Undecided(u32, u32),
        Interrupted,
        Unstable,
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum SameMode {
        /// Answers every pair.
        Answer,
        /// Ok(None) everywhere, without looking at the items (pure kcmp mode).
        Never,
        /// Ok(None) for pairs whose objects are both odd.
        NoneForOdd,
    }

    /// Consistent fake: item -> (key, object); order = a permutation of the
    /// object ids. Counts calls, per item too (attributed to the item whose
    /// `key` was asked last, i.e. the one being placed).
    struct Fake {
        table: HashMap<u32, (Key, u32)>,
        same_mode: SameMode,
        can_order: bool,
        /// After `key(trigger)` answers, these items vanish.
        vanish_after_key: HashMap<u32, Vec<u32>>,
        gone: HashSet<u32>,
        reported: Vec<u32>,
        keys: u64,
        compares: u64,
        sames: u64,
        checkpoints: u64,
        fail_checkpoint_at: Option<u64>,
        per_key: HashMap<Key, (usize, usize)>,
    }

    impl Fake {
        fn new(table: HashMap<u32, (Key, u32)>) -> Self {
            Fake {
                table,
                same_mode: SameMode::Answer,
                can_order: true,
                vanish_after_key: HashMap::new(),
                gone: HashSet::new(),
                reported: Vec::new(),
                keys: 0,
                compares: 0,
                sames: 0,
                checkpoints: 0,
                fail_checkpoint_at: None,
                per_key: HashMap::new(),
            }
        }
        fn rank(obj: u32) -> u32 {
            // Odd multiplier: a bijection on u32, so a permuted total order.
            obj.wrapping_mul(0x9E37_79B1)
        }
        fn obj(&self, i: u32) -> u32 {
            self.table[&i].1
        }
        fn check(&mut self, a: u32, b: u32) -> Result<(), Fault<u32, TErr>> {
            for x in [a, b] {
                if self.gone.contains(&x) {
                    self.reported.push(x);
                    return Err(Fault::Gone(x));
                }
            }
            Ok(())
        }
        fn bump(&mut self, a: u32, compare: bool) {
            // Both items of a call share a key: count per key (bucket).
            if let Some(&(key, _)) = self.table.get(&a) {
                let e = self.per_key.entry(key).or_default();
                if compare {
                    e.0 += 1
                } else {
                    e.1 += 1
                }
            }
        }
    }

    impl Oracle for Fake {
        type Item = u32;
        type Error = TErr;
        fn key(&mut self, item: u32) -> Result<Key, Fault<u32, TErr>> {
            self.keys += 1;
            self.check(item, item)?;
            if let Some(v) = self.vanish_after_key.get(&item) {
                self.gone.extend(v.iter().copied());
            }
            Ok(self.table[&item].0)
        }
        fn can_order(&self) -> bool {
            self.can_order
        }
        fn compare(&mut self, a: u32, b: u32) -> Result<Ordering, Fault<u32, TErr>> {
            assert!(self.can_order, "compare called although !can_order");
            self.compares += 1;
            self.bump(a, true);
            self.check(a, b)?;
            Ok(Self::rank(self.obj(a)).cmp(&Self::rank(self.obj(b))))
        }
        fn same(&mut self, a: u32, b: u32) -> Result<Option<bool>, Fault<u32, TErr>> {
            self.sames += 1;
            self.bump(a, false);
            if self.same_mode == SameMode::Never {
                return Ok(None);
            }
            self.check(a, b)?;
            let (x, y) = (self.obj(a), self.obj(b));
            if self.same_mode == SameMode::NoneForOdd && x % 2 == 1 && y % 2 == 1 {
                return Ok(None);
            }
            Ok(Some(x == y))
        }
        fn checkpoint(&mut self) -> Result<(), TErr> {
            self.checkpoints += 1;
            if Some(self.checkpoints) == self.fail_checkpoint_at {
                return Err(TErr::Interrupted);
            }
            Ok(())
        }
        fn undecided(&mut self, a: u32, b: u32) -> TErr {
            TErr::Undecided(a, b)
        }
    }

    /// Expected Fd-ordered partition of `items` (minus `gone`) by object.
    fn brute(table: &HashMap<u32, (Key, u32)>, items: &[u32], gone: &[u32]) -> Vec<Vec<u32>> {
        let mut by: BTreeMap<(Key, u32), BTreeSet<u32>> = BTreeMap::new();
        for &i in items {
            if !gone.contains(&i) {
                by.entry(table[&i]).or_default().insert(i);
            }
        }
        let mut out: Vec<Vec<u32>> = by.into_values().map(|s| s.into_iter().collect()).collect();
        out.sort();
        out
    }

    /// `n` items (shuffled, some duplicated) over `objs` objects spread over `keys` keys.
    fn dataset(seed: u64, n: u32, objs: u32, keys: u32) -> (HashMap<u32, (Key, u32)>, Vec<u32>) {
        let mut rng = Rng::new(seed);
        let table: HashMap<u32, (Key, u32)> = (0..n)
            .map(|i| {
                let obj = rng.below(objs as u64) as u32;
                (i, ((7, (obj % keys) as u64), obj))
            })
            .collect();
        let mut items: Vec<u32> = (0..n).collect();
        for i in (1..items.len()).rev() {
            items.swap(i, rng.below(i as u64 + 1) as usize);
        }
        items.extend((0..n / 10).map(|_| rng.below(n as u64) as u32));
        (table, items)
    }

    /// Runs Fd classification with the given same mode and checks the partition and
    /// the call bounds of each bucket (key), summed over its items: with k the
    /// distinct objects the bucket holds when an item arrives (items arrive in
    /// ascending order within a key),
    /// * compares <= sum of (ceil(log2(k+1)) + 1) plus merge_sort_bound(SMALL+1) for
    ///   the one sort of the bucket (the + 1: the check against the bucket's most
    ///   recent group before each binary search);
    /// * sames <= sum of (min(k, SMALL) + 1);
    /// * with `same` answering, a bucket that never holds more than SMALL objects
    ///   makes no compare at all.
    fn run_checked(table: &HashMap<u32, (Key, u32)>, items: &[u32], mode: SameMode) -> Stats {
        let mut fake = Fake::new(table.clone());
        fake.same_mode = mode;
        let (groups, stats) = classify(&mut fake, items, GroupOrder::Fd, Missing::Skip).unwrap();
        assert_eq!(groups, brute(table, items, &[]));
        assert_eq!(
            (stats.keys, stats.compares, stats.sames),
            (fake.keys, fake.compares, fake.sames)
        );
        let distinct: BTreeSet<u32> = items.iter().copied().collect();
        assert_eq!(stats.keys, distinct.len() as u64);
        let mut seen: HashMap<Key, HashSet<u32>> = HashMap::new();
        let mut bound: HashMap<Key, (usize, usize)> = HashMap::new();
        for &i in &distinct {
            let (key, obj) = table[&i];
            let objs = seen.entry(key).or_default();
            let k = objs.len();
            let b = bound.entry(key).or_insert((merge_sort_bound(SMALL + 1), 0));
            b.0 += ceil_log2(k + 1) + 1;
            b.1 += k.min(SMALL) + 1;
            objs.insert(obj);
        }
        for (key, (c_max, s_max)) in bound {
            let (c, s) = fake.per_key.get(&key).copied().unwrap_or_default();
            assert!(c <= c_max, "key {key:?}: {c} compares > {c_max}");
            assert!(s <= s_max, "key {key:?}: {s} sames > {s_max}");
            if mode == SameMode::Answer && seen[&key].len() <= SMALL {
                assert_eq!(c, 0, "key {key:?}: compares in a small bucket");
            }
        }
        stats
    }

    // ---------- consistent oracle ----------

    #[test]
    fn distinct_keys_need_no_comparisons() {
        let table = (0..1000).map(|i| (i, ((1, i as u64), i))).collect();
        let items: Vec<u32> = (0..1000).rev().collect();
        for mode in [SameMode::Answer, SameMode::Never] {
            let s = run_checked(&table, &items, mode);
            assert_eq!((s.keys, s.compares, s.sames), (1000, 0, 0));
        }
    }

    #[test]
    fn dup_heavy_one_key_many_objects_and_mix_match_brute_force() {
        let cases = [
            (1, 1000, 20, 2),  // dup-heavy
            (2, 500, 300, 1),  // one key, many objects
            (3, 800, 400, 40), // mix
            (4, 300, 5, 1),    // exactly SMALL+1 objects in one bucket
            (5, 64, 64, 1),
        ];
        for (seed, n, objs, keys) in cases {
            let (table, items) = dataset(seed, n, objs, keys);
            for mode in [SameMode::Answer, SameMode::Never, SameMode::NoneForOdd] {
                let s = run_checked(&table, &items, mode);
                if mode == SameMode::Never {
                    // One unanswered same per bucket (its sort), plus the recent-group
                    // check each later item makes first.
                    assert!(s.sames <= (keys + n) as u64);
                }
            }
        }
    }

    #[test]
    fn one_key_many_objects_beats_linear_scan() {
        let (table, items) = dataset(9, 2000, 1000, 1);
        let s = run_checked(&table, &items, SameMode::Never);
        // Binary search: ~2000 * log2(1000); a linear scan would be ~1e6.
        assert!(s.compares < 2000 * 11, "{}", s.compares);
    }

    #[test]
    fn equality_only_oracle_scans_linearly() {
        let (table, items) = dataset(11, 300, 40, 3);
        let mut fake = Fake::new(table.clone());
        fake.can_order = false;
        let (groups, stats) = classify(&mut fake, &items, GroupOrder::Fd, Missing::Skip).unwrap();
        assert_eq!(groups, brute(&table, &items, &[]));
        assert_eq!(stats.compares, 0);
        assert_eq!(stats.sames, fake.sames);
        // Kernel order is impossible: documented fallback to Fd order.
        let mut fake = Fake::new(table.clone());
        fake.can_order = false;
        let (kgroups, _) = classify(&mut fake, &items, GroupOrder::Kernel, Missing::Skip).unwrap();
        assert_eq!(kgroups, groups);
    }

    #[test]
    fn equality_only_oracle_reports_undecided_pairs() {
        // Objects 1 and 3 are both odd: `same` cannot decide item 1 vs item 0.
        let table = HashMap::from([(0, ((1, 1), 1)), (1, ((1, 1), 3)), (2, ((1, 2), 5))]);
        let mut fake = Fake::new(table);
        fake.can_order = false;
        fake.same_mode = SameMode::NoneForOdd;
        let r = classify(&mut fake, &[2, 1, 0], GroupOrder::Fd, Missing::Skip);
        assert_eq!(r, Err(Fault::Fail(TErr::Undecided(1, 0))));
    }

    #[test]
    fn duplicates_collapse() {
        let table = HashMap::from([(3, ((1, 1), 1)), (5, ((1, 1), 1)), (4, ((1, 1), 2))]);
        let mut fake = Fake::new(table);
        let (groups, stats) = classify(
            &mut fake,
            &[5, 5, 3, 5, 4, 3],
            GroupOrder::Fd,
            Missing::Skip,
        )
        .unwrap();
        assert_eq!(groups, vec![vec![3, 5], vec![4]]);
        assert_eq!(stats.keys, 3);
        let (groups, _) = classify(&mut fake, &[], GroupOrder::Kernel, Missing::Raise).unwrap();
        assert!(groups.is_empty());
    }

    fn assert_kernel_ascending(fake: &Fake, groups: &[Vec<u32>]) {
        for w in groups.windows(2) {
            let (a, b) = (Fake::rank(fake.obj(w[0][0])), Fake::rank(fake.obj(w[1][0])));
            assert!(a < b, "kernel order violated: {w:?}");
        }
    }

    #[test]
    fn kernel_order_merges_sorted_buckets() {
        // 4 buckets x 50 objects, 2 items per object.
        let (b, per) = (4u32, 50u32);
        let table: HashMap<u32, (Key, u32)> = (0..2 * b * per)
            .map(|i| (i, ((2, ((i / 2) % b) as u64), i / 2)))
            .collect();
        let items: Vec<u32> = table.keys().copied().collect();
        for mode in [SameMode::Answer, SameMode::Never] {
            let mut fd = Fake::new(table.clone());
            fd.same_mode = mode;
            let (fd_groups, fd_stats) =
                classify(&mut fd, &items, GroupOrder::Fd, Missing::Skip).unwrap();
            let mut k = Fake::new(table.clone());
            k.same_mode = mode;
            let (groups, stats) =
                classify(&mut k, &items, GroupOrder::Kernel, Missing::Skip).unwrap();
            assert_eq!(stats.compares, k.compares);
            assert_kernel_ascending(&k, &groups);
            let mut sorted = groups.clone();
            sorted.sort();
            assert_eq!(sorted, fd_groups);
            // Every bucket was already sorted: the extra cost is the merge alone,
            // at most G * ceil(log2 #buckets), far below what any comparison
            // sort of G groups needs in the worst case (log2(G!)).
            let g = (b * per) as usize;
            let extra = (stats.compares - fd_stats.compares) as usize;
            let log2_g_fact: f64 = (1..=g).map(|i| (i as f64).log2()).sum();
            assert!(extra <= g * ceil_log2(b as usize), "{extra}");
            assert!(((g * ceil_log2(b as usize)) as f64) < log2_g_fact);
        }
    }

    #[test]
    fn kernel_order_sorts_small_unsorted_buckets() {
        let (table, items) = dataset(21, 400, 120, 40); // ~3 objects per key
        for mode in [SameMode::Answer, SameMode::NoneForOdd] {
            let mut fake = Fake::new(table.clone());
            fake.same_mode = mode;
            let (groups, _) =
                classify(&mut fake, &items, GroupOrder::Kernel, Missing::Raise).unwrap();
            assert_kernel_ascending(&fake, &groups);
            let mut sorted = groups.clone();
            sorted.sort();
            assert_eq!(sorted, brute(&table, &items, &[]));
        }
    }

    // ---------- checkpoints ----------

    #[test]
    fn checkpoint_runs_on_long_inputs_and_aborts() {
        let table: HashMap<u32, (Key, u32)> =
            (0..10_000).map(|i| (i, ((1, i as u64), i))).collect();
        let items: Vec<u32> = (0..10_000).collect();
        let mut fake = Fake::new(table.clone());
        let (_, s) = classify(&mut fake, &items, GroupOrder::Fd, Missing::Skip).unwrap();
        let ops = (s.keys + s.compares + s.sames) as usize;
        assert_eq!(fake.checkpoints as usize, 1 + ops / CHECKPOINT_EVERY);

        let mut fake = Fake::new(table.clone());
        fake.fail_checkpoint_at = Some(3);
        let r = classify(&mut fake, &items, GroupOrder::Fd, Missing::Skip);
        assert_eq!(r, Err(Fault::Fail(TErr::Interrupted)));
        assert_eq!(fake.keys as usize, 2 * CHECKPOINT_EVERY - 1);

        let mut fake = Fake::new(table);
        fake.fail_checkpoint_at = Some(1);
        assert_eq!(
            classify(&mut fake, &items, GroupOrder::Fd, Missing::Skip),
            Err(Fault::Fail(TErr::Interrupted))
        );
        assert_eq!(fake.keys, 0);
    }

    // ---------- Gone ----------

    /// One key; objects: A = {1, 5, 7}, B = {2}, C = {3}, D = {9}.
    fn gone_table() -> HashMap<u32, (Key, u32)> {
        [(1, 10), (5, 10), (7, 10), (2, 20), (3, 30), (9, 40)]
            .into_iter()
            .map(|(i, o)| (i, ((1, 1), o)))
            .collect()
    }

    type Outcome = Result<(Vec<Vec<u32>>, Stats), Fault<u32, TErr>>;

    fn run_gone(
        mode: SameMode,
        vanish: &[(u32, u32)],
        order: GroupOrder,
        missing: Missing,
        items: &[u32],
    ) -> (Outcome, Fake) {
        let mut fake = Fake::new(gone_table());
        fake.same_mode = mode;
        for &(trigger, item) in vanish {
            if trigger == u32::MAX {
                fake.gone.insert(item);
            } else {
                fake.vanish_after_key.entry(trigger).or_default().push(item);
            }
        }
        let r = classify(&mut fake, items, order, missing);
        (r, fake)
    }

    const ALL: [u32; 6] = [1, 2, 3, 5, 7, 9];

    #[test]
    fn gone_reported_by_key() {
        let (r, fake) = run_gone(
            SameMode::Answer,
            &[(u32::MAX, 5)],
            GroupOrder::Fd,
            Missing::Skip,
            &ALL,
        );
        assert_eq!(fake.reported, vec![5]);
        assert_eq!(r.unwrap().0, brute(&gone_table(), &ALL, &[5]));
        let (r, _) = run_gone(
            SameMode::Answer,
            &[(u32::MAX, 5)],
            GroupOrder::Fd,
            Missing::Raise,
            &ALL,
        );
        assert_eq!(r, Err(Fault::Gone(5)));
    }

    #[test]
    fn gone_current_item_during_probe() {
        for mode in [SameMode::Answer, SameMode::Never] {
            for order in [GroupOrder::Fd, GroupOrder::Kernel] {
                // 7 vanishes right after its key: its first probe reports it.
                let (r, fake) = run_gone(mode, &[(7, 7)], order, Missing::Skip, &ALL);
                assert_eq!(fake.reported, vec![7]);
                let mut g = r.unwrap().0;
                g.sort();
                assert_eq!(g, brute(&gone_table(), &ALL, &[7]));
                let (r, _) = run_gone(mode, &[(7, 7)], order, Missing::Raise, &ALL);
                assert_eq!(r, Err(Fault::Gone(7)));
            }
        }
    }

    #[test]
    fn gone_rep_with_other_members_is_promoted() {
        // Rep 1 of A vanishes when 7 (also A) arrives; 5 takes over and 7 joins it.
        for mode in [SameMode::Answer, SameMode::Never] {
            let (r, fake) = run_gone(mode, &[(7, 1)], GroupOrder::Fd, Missing::Skip, &ALL);
            assert_eq!(fake.reported, vec![1]);
            let groups = r.unwrap().0;
            assert_eq!(groups, brute(&gone_table(), &ALL, &[1]));
            assert!(groups.contains(&vec![5, 7]));
            let (r, _) = run_gone(mode, &[(7, 1)], GroupOrder::Fd, Missing::Raise, &ALL);
            assert_eq!(r, Err(Fault::Gone(1)));
        }
    }

    #[test]
    fn gone_lone_rep_deletes_its_group() {
        // Bucket holds only rep 1 when 2 arrives; 1 vanishes: A's group dies
        // and 2 founds a group in the now empty bucket.
        for mode in [SameMode::Answer, SameMode::Never] {
            let (r, fake) = run_gone(
                mode,
                &[(2, 1)],
                GroupOrder::Kernel,
                Missing::Skip,
                &[1, 2, 3],
            );
            assert_eq!(fake.reported, vec![1]);
            let mut expect = vec![vec![2], vec![3]];
            expect.sort_by_key(|g| Fake::rank(fake.obj(g[0])));
            assert_eq!(r.unwrap().0, expect);
        }
    }

    #[test]
    fn gone_during_bucket_sort_and_kernel_merge() {
        // Six objects in one bucket (same answers): the 6th distinct item
        // triggers the sort of 5 reps, during which rep 3 turns out gone.
        let table: HashMap<u32, (Key, u32)> = (0..8).map(|i| (i, ((1, 1), i.min(6)))).collect();
        let mut fake = Fake::new(table.clone());
        fake.vanish_after_key.insert(5, vec![3]);
        let items: Vec<u32> = (0..8).collect();
        let (groups, _) = classify(&mut fake, &items, GroupOrder::Fd, Missing::Skip).unwrap();
        assert_eq!(fake.reported, vec![3]);
        assert_eq!(groups, brute(&table, &items, &[3]));

        // Two buckets; after the last key, a rep of the other bucket vanishes:
        // only the kernel merge can notice it.
        let table: HashMap<u32, (Key, u32)> =
            (0..20).map(|i| (i, ((1, (i % 2) as u64), i))).collect();
        let items: Vec<u32> = (0..20).collect();
        for missing in [Missing::Skip, Missing::Raise] {
            let mut fake = Fake::new(table.clone());
            fake.vanish_after_key.insert(19, vec![4]);
            let r = classify(&mut fake, &items, GroupOrder::Kernel, missing);
            assert_eq!(fake.reported, vec![4]);
            if missing == Missing::Raise {
                assert_eq!(r, Err(Fault::Gone(4)));
                continue;
            }
            let groups = r.unwrap().0;
            assert_kernel_ascending(&fake, &groups);
            let mut sorted = groups.clone();
            sorted.sort();
            assert_eq!(sorted, brute(&table, &items, &[4]));
        }
    }

    // ---------- adversarial oracle ----------

    /// Answers at random, inconsistently, and reports items gone at random.
    struct Chaos {
        rng: Rng,
        keys: u64,
        can_order: bool,
        gone_per_mille: u64,
        /// Whether `Gone` may name items other than the call's arguments.
        name_any: bool,
        universe: Vec<u32>,
        reported: Vec<u32>,
    }

    impl Chaos {
        fn maybe_gone(&mut self, a: u32, b: u32) -> Result<(), Fault<u32, TErr>> {
            if self.rng.below(1000) < self.gone_per_mille {
                let x = if self.name_any && self.rng.below(2) == 0 && !self.universe.is_empty() {
                    self.universe[self.rng.below(self.universe.len() as u64) as usize]
                } else if self.rng.below(2) == 0 {
                    a
                } else {
                    b
                };
                self.reported.push(x);
                return Err(Fault::Gone(x));
            }
            Ok(())
        }
    }

    impl Oracle for Chaos {
        type Item = u32;
        type Error = TErr;
        fn key(&mut self, item: u32) -> Result<Key, Fault<u32, TErr>> {
            self.maybe_gone(item, item)?;
            Ok((self.rng.below(self.keys), 0))
        }
        fn can_order(&self) -> bool {
            self.can_order
        }
        fn compare(&mut self, a: u32, b: u32) -> Result<Ordering, Fault<u32, TErr>> {
            assert!(self.can_order);
            self.maybe_gone(a, b)?;
            Ok([Ordering::Less, Ordering::Equal, Ordering::Greater][self.rng.below(3) as usize])
        }
        fn same(&mut self, a: u32, b: u32) -> Result<Option<bool>, Fault<u32, TErr>> {
            self.maybe_gone(a, b)?;
            Ok([Some(true), Some(false), None][self.rng.below(3) as usize])
        }
        fn undecided(&mut self, a: u32, b: u32) -> TErr {
            TErr::Undecided(a, b)
        }
    }

    fn check_partition(
        groups: &[Vec<u32>],
        input: &BTreeSet<u32>,
        order: GroupOrder,
    ) -> BTreeSet<u32> {
        let mut seen = BTreeSet::new();
        for g in groups {
            assert!(!g.is_empty());
            assert!(
                g.windows(2).all(|w| w[0] < w[1]),
                "group not ascending: {g:?}"
            );
            for &i in g {
                assert!(input.contains(&i), "{i} not in input");
                assert!(seen.insert(i), "{i} twice");
            }
        }
        if order == GroupOrder::Fd {
            assert!(groups.windows(2).all(|w| w[0][0] < w[1][0]));
        }
        seen
    }

    #[test]
    fn adversarial_oracles_never_panic_lose_or_duplicate() {
        let sizes = [0usize, 1, 2, 3, 4, 5, 6, 9, 17, 40, 100, 299];
        for seed in 0..120u64 {
            for &n in &sizes {
                let mut rng = Rng::new(seed * 1000 + n as u64);
                let items: Vec<u32> = (0..n).map(|_| rng.below(2 * n as u64 + 1) as u32).collect();
                let input: BTreeSet<u32> = items.iter().copied().collect();
                let order = if rng.below(2) == 0 {
                    GroupOrder::Fd
                } else {
                    GroupOrder::Kernel
                };
                let missing = if rng.below(3) == 0 {
                    Missing::Raise
                } else {
                    Missing::Skip
                };
                let mut o = Chaos {
                    rng: Rng::new(seed ^ 0xABCD),
                    keys: 1 + rng.below(4),
                    can_order: rng.below(4) != 0,
                    gone_per_mille: [0, 5, 50, 300][rng.below(4) as usize],
                    name_any: rng.below(2) == 0,
                    universe: input.iter().copied().collect(),
                    reported: Vec::new(),
                };
                match classify(&mut o, &items, order, missing) {
                    Ok((groups, _)) => {
                        let out = check_partition(&groups, &input, order);
                        if missing == Missing::Raise {
                            assert!(o.reported.is_empty());
                        }
                        let reported: BTreeSet<u32> = o.reported.iter().copied().collect();
                        if !o.name_any {
                            // Skip drops exactly the items reported gone.
                            let expect: BTreeSet<u32> =
                                input.difference(&reported).copied().collect();
                            assert_eq!(out, expect, "seed {seed} n {n}");
                        } else {
                            // Each Gone removes at most one item.
                            assert!(input.len() - out.len() <= o.reported.len());
                        }
                    }
                    Err(Fault::Gone(x)) => {
                        assert_eq!(missing, Missing::Raise);
                        assert_eq!(o.reported, vec![x]);
                    }
                    Err(Fault::Fail(TErr::Undecided(a, b))) => {
                        assert!(!o.can_order);
                        assert!(input.contains(&a) && input.contains(&b));
                    }
                    Err(Fault::Fail(e)) => panic!("unexpected {e:?}"),
                }
            }
        }
    }

    #[test]
    fn merge_sort_survives_contradictory_comparators() {
        // Every compare answers Less, whichever way round: the sort must still
        // end and keep all reps (one key, all distinct by `same`).
        struct Liar;
        impl Oracle for Liar {
            type Item = u32;
            type Error = TErr;
            fn key(&mut self, _: u32) -> Result<Key, Fault<u32, TErr>> {
                Ok((0, 0))
            }
            fn can_order(&self) -> bool {
                true
            }
            fn compare(&mut self, _: u32, _: u32) -> Result<Ordering, Fault<u32, TErr>> {
                Ok(Ordering::Less)
            }
            fn same(&mut self, _: u32, _: u32) -> Result<Option<bool>, Fault<u32, TErr>> {
                Ok(Some(false))
            }
            fn undecided(&mut self, a: u32, b: u32) -> TErr {
                TErr::Undecided(a, b)
            }
        }
        let items: Vec<u32> = (0..200).collect();
        for order in [GroupOrder::Fd, GroupOrder::Kernel] {
            let (groups, stats) = classify(&mut Liar, &items, order, Missing::Raise).unwrap();
            let input: BTreeSet<u32> = items.iter().copied().collect();
            assert_eq!(check_partition(&groups, &input, order), input);
            assert_eq!(groups.len(), 200);
            assert!(stats.compares < 200 * 9 + merge_sort_bound(SMALL + 1) as u64);
        }
    }

    /// An fd table that changes under the engine: after `trigger` `same` calls have
    /// answered, item `replaced` refers to object `to` (a dup2 over a rep), and, with
    /// `flap`, every `same` answer flips on each call (a table that never holds still).
    struct Churn {
        objects: HashMap<u32, u32>,
        trigger: u32,
        replaced: u32,
        to: u32,
        flap: bool,
        flips: u64,
        verify: bool,
    }

    impl Oracle for Churn {
        type Item = u32;
        type Error = TErr;
        fn key(&mut self, _item: u32) -> Result<Key, Fault<u32, TErr>> {
            Ok((0, 0))
        }
        fn can_order(&self) -> bool {
            true
        }
        fn compare(&mut self, a: u32, b: u32) -> Result<Ordering, Fault<u32, TErr>> {
            Ok(self.objects[&a].cmp(&self.objects[&b]))
        }
        fn same(&mut self, a: u32, b: u32) -> Result<Option<bool>, Fault<u32, TErr>> {
            self.flips += 1;
            let truth = self.objects[&a] == self.objects[&b];
            if self.flips == u64::from(self.trigger) {
                self.objects.insert(self.replaced, self.to);
            }
            Ok(Some(if self.flap && self.flips % 2 == 0 {
                !truth
            } else {
                truth
            }))
        }
        fn undecided(&mut self, a: u32, b: u32) -> TErr {
            TErr::Undecided(a, b)
        }
        fn instability(&mut self) -> Option<TErr> {
            self.verify.then_some(TErr::Unstable)
        }
    }

    fn churn(verify: bool, flap: bool) -> Churn {
        // Items 0..8 all refer to object 5 until item 0, the first rep, is replaced.
        Churn {
            objects: (0..8).map(|i| (i, 5)).collect(),
            trigger: 1,
            replaced: 0,
            to: 9,
            flap,
            flips: 0,
            verify,
        }
    }

    #[test]
    fn a_rep_replaced_mid_batch_is_caught_and_the_batch_rerun() {
        let items: Vec<u32> = (0..8).collect();
        // Without the check, fds that never changed come back split around the stale rep.
        let (split, _) = classify(
            &mut churn(false, false),
            &items,
            GroupOrder::Fd,
            Missing::Raise,
        )
        .unwrap();
        assert_eq!(split, vec![vec![0, 1], vec![2, 3, 4, 5, 6, 7]]);
        // With it, the rerun sees the table as it is now: 0 alone, the stable fds together.
        let (groups, stats) = classify(
            &mut churn(true, false),
            &items,
            GroupOrder::Fd,
            Missing::Raise,
        )
        .unwrap();
        assert_eq!(groups, vec![vec![0], vec![1, 2, 3, 4, 5, 6, 7]]);
        assert_eq!(stats.keys, 16, "two runs of eight keys");
        let (kernel, _) = classify(
            &mut churn(true, false),
            &items,
            GroupOrder::Kernel,
            Missing::Raise,
        )
        .unwrap();
        assert_eq!(kernel, vec![vec![1, 2, 3, 4, 5, 6, 7], vec![0]]);
    }

    #[test]
    fn a_table_that_never_holds_still_ends_in_the_oracles_error() {
        let items: Vec<u32> = (0..8).collect();
        let mut oracle = churn(true, true);
        let err = classify(&mut oracle, &items, GroupOrder::Fd, Missing::Skip).unwrap_err();
        assert_eq!(err, Fault::Fail(TErr::Unstable));
    }
}
