//! Grouping engine: partitions items (fds, possibly of several processes) by the
//! kernel object behind them, using as few oracle calls (syscalls) as possible.
//!
//! Plain Rust on purpose: it must never import PyO3, libc, `sys` or any other room
//! of this crate, and makes no syscalls. Everything the kernel would answer comes
//! through the [`Oracle`] trait, so the tests (`engine/tests.rs`) can drive the
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
//! `ItemGone` removes one live item, so retries are bounded by the input size. The
//! result is "correct as check_holds": a partition of the surviving input.

use std::cmp::Ordering;
use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;
use std::hash::Hash;

/// A cheap bucketing key (e.g. (st_dev, st_ino)); items with different keys NEVER share a description.
pub type Key = (u64, u64);

/// What to do when an item turns out to no longer exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Abort the whole classification with `OracleError::ItemGone(item)`.
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

/// Why an oracle call did not answer: one item is gone, or the whole batch must stop.
///
/// Also what [`classify`] returns when it ends early: the item gone under
/// [`Missing::Raise`], or the oracle's fatal error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OracleError<I, E> {
    /// This item no longer exists (fd closed, process exited). The oracle has already
    /// worked out WHICH item (it may name either argument).
    ItemGone(I),
    /// Anything else: abort the whole classification with this error.
    Fatal(E),
}

/// The engine's only window on the kernel.
pub trait Oracle {
    type Item: Copy + Ord + Eq + Hash + std::fmt::Debug;
    type Error;
    /// Bucketing key for one item.
    fn key(&mut self, item: Self::Item) -> Result<Key, OracleError<Self::Item, Self::Error>>;
    /// Whether `compare` is usable at all (false in sandboxes where kcmp is blocked).
    fn can_order(&self) -> bool;
    /// Kernel order of the two items' objects (kcmp). Only called when can_order().
    fn compare(
        &mut self,
        a: Self::Item,
        b: Self::Item,
    ) -> Result<Ordering, OracleError<Self::Item, Self::Error>>;
    /// Cheap equality-only test (e.g. F_DUPFD_QUERY); Ok(None) = cannot decide this pair cheaply (caller falls back to compare, or, if !can_order(), to `undecided`).
    fn same(
        &mut self,
        a: Self::Item,
        b: Self::Item,
    ) -> Result<Option<bool>, OracleError<Self::Item, Self::Error>>;
    /// Called every `CHECKPOINT_EVERY` oracle operations (and once at start) so a long
    /// batch can notice Ctrl-C; an Err aborts with `OracleError::Fatal`.
    fn checkpoint(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    /// The error to abort with when neither `same` nor `compare` can decide whether `a`
    /// and `b` share an object (the oracle records the undecided pair in it).
    fn undecided_error(&mut self, a: Self::Item, b: Self::Item) -> Self::Error;
    /// `Some(error)` turns on the end-of-batch check that every group still holds
    /// together (each member still equals its rep, each sorted bucket still ascends).
    /// Items can change while a batch runs (an fd dup2'ed over a rep makes every later
    /// answer through it stale); a failed check reruns the batch, and `error` is what
    /// ends it when the items keep changing. `None` (the default): no check.
    fn churn_error(&mut self) -> Option<Self::Error> {
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
/// * [`Missing::Skip`]: items reported `ItemGone` are silently left out.
///   [`Missing::Raise`]: the first `ItemGone` aborts with `Err(OracleError::ItemGone(item))`,
///   `item` being exactly what the oracle named.
/// * `GroupOrder::Kernel` with `!oracle.can_order()`: there is no kernel order
///   to give, so the groups come back in `Fd` order (no error, no panic).
///   Callers that need a real kernel order must check `can_order()` themselves.
/// * A `ItemGone` naming an item that is neither an argument of the failing call
///   nor a live placed item (an oracle bug) is blamed on the call's first
///   argument, so that every `ItemGone` removes something and retries terminate.
/// * Two existing reps that `compare` calls `Equal` (an oracle inconsistency or
///   an fd reused mid-batch) stay separate groups: decisions are never revisited.
// The spelled-out return type is the contract other modules code against.
#[allow(clippy::type_complexity)]
pub fn classify<O: Oracle>(
    oracle: &mut O,
    items: &[O::Item],
    order: GroupOrder,
    missing: Missing,
) -> Result<(Vec<Vec<O::Item>>, Stats), OracleError<O::Item, O::Error>> {
    let mut todo = items.to_vec();
    todo.sort_unstable();
    todo.dedup();

    oracle.checkpoint().map_err(OracleError::Fatal)?;
    let unstable = oracle.churn_error();
    let mut engine = Engine::new(oracle, missing);
    engine.place_all(todo, order)?;
    if let Some(error) = unstable {
        engine.settle(error)?;
    }
    let groups = if order == GroupOrder::Kernel && engine.can_order {
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

/// An oracle call that did not answer, as the engine sees it before `Missing` is
/// applied (see `Engine::apply_missing`): an `OracleError` plus the item to drop.
enum Unanswered<I, E> {
    /// `named` is what the oracle said (returned as-is under `Raise`);
    /// `victim` is the live item we remove for it under `Skip`.
    Gone { named: I, victim: I },
    /// The oracle's fatal error: ends the run.
    Fatal(E),
}

/// What the end-of-batch check found no longer holding together (see `Engine::verify`).
struct Unsettled<I> {
    /// Buckets to classify again.
    buckets: Vec<usize>,
    /// Fds in a mismatch, each with how many it took part in.
    volatile: Vec<(I, u32)>,
}

/// A group whose members no longer all match its rep (see `Engine::verify`).
struct Mismatch<I> {
    rep: I,
    /// The members the kernel now says differ from `rep`.
    differ: Vec<I>,
}

/// Where an item goes in a bucket: the outcome of looking for its group there.
enum Placement {
    /// An existing group (by id) shares its object.
    Join(usize),
    /// A new group, at this position of the bucket's reps.
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
    /// Live placed item -> its group; lets a `ItemGone` naming any item be resolved.
    group_of: HashMap<O::Item, usize>,
    /// Items alone under their key, by key: groups of one that need no comparison.
    singles: Vec<(Key, O::Item)>,
    /// Fds seen in mismatches during the batch, with how often: when their bucket is
    /// redone the most suspect go last, so that fds that stay put become the reps.
    volatile: HashMap<O::Item, u32>,
}

/// An engine step's result once `Missing` is applied: what `classify` ends with.
type EngineResult<T, O> = Result<T, OracleError<<O as Oracle>::Item, <O as Oracle>::Error>>;
/// One oracle call's result, before `Missing` is applied.
type CallResult<T, O> = Result<T, Unanswered<<O as Oracle>::Item, <O as Oracle>::Error>>;

impl<'a, O: Oracle> Engine<'a, O> {
    fn new(oracle: &'a mut O, missing: Missing) -> Self {
        let can_order = oracle.can_order();
        Engine {
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
        }
    }

    /// Keys every item (sorted, without repeats), then places each in its group.
    fn place_all(&mut self, todo: Vec<O::Item>, order: GroupOrder) -> EngineResult<(), O> {
        // Key everything first and sort by key. An item alone under its key (most fds,
        // usually) is a group by itself and never touches the engine's maps: that keeps
        // the working set small, and a large one measurably slows the kernel's own
        // stat path. Kernel order merges every group, so there all go through the maps.
        let mut keyed: Vec<(Key, O::Item)> = Vec::with_capacity(todo.len());
        for &item in &todo {
            if let Some(key) = self.key_of(item)? {
                keyed.push((key, item));
            }
        }
        drop(todo);
        // Plain data with a real total order: std's sort is safe here.
        keyed.sort_unstable();
        let singles_allowed = order == GroupOrder::Fd || !self.can_order;
        for run in keyed.chunk_by(|x, y| x.0 == y.0) {
            match run {
                [single] if singles_allowed => self.singles.push(*single),
                _ => {
                    // Ascending within a key makes a group's first member its rep.
                    for &(key, item) in run {
                        self.add_keyed(item, key)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks the groups again and redoes the buckets that no longer hold together,
    /// until they all do; `error` after `MAX_ATTEMPTS` checks that found changes.
    fn settle(&mut self, error: O::Error) -> EngineResult<(), O> {
        // Only the buckets that no longer hold together are classified again: a rerun
        // of everything would rarely finish while some unrelated fds keep changing.
        let mut attempt = 1;
        loop {
            let check = self.verify()?;
            if check.buckets.is_empty() {
                return Ok(());
            }
            if attempt >= MAX_ATTEMPTS {
                return Err(OracleError::Fatal(error));
            }
            attempt += 1;
            for (item, seen) in check.volatile {
                *self.volatile.entry(item).or_insert(0) += seen;
            }
            self.redo(&check.buckets)?;
        }
    }

    // ---- oracle access: counting, checkpoints, ItemGone attribution ----

    /// Counts one oracle operation, and checks for Ctrl-C every `CHECKPOINT_EVERY`.
    fn count_op(&mut self) -> CallResult<(), O> {
        self.ops += 1;
        if self.ops % CHECKPOINT_EVERY == 0 {
            self.oracle.checkpoint().map_err(Unanswered::Fatal)?;
        }
        Ok(())
    }

    /// Turns an oracle error into an `Unanswered`, choosing the victim such that it
    /// is always live: removing it is then guaranteed progress.
    fn unanswered(
        &self,
        error: OracleError<O::Item, O::Error>,
        a: O::Item,
        b: O::Item,
    ) -> Unanswered<O::Item, O::Error> {
        match error {
            OracleError::Fatal(e) => Unanswered::Fatal(e),
            OracleError::ItemGone(named) => {
                let victim = if named == a || named == b || self.group_of.contains_key(&named) {
                    named
                } else {
                    a
                };
                Unanswered::Gone { named, victim }
            }
        }
    }

    fn key(&mut self, item: O::Item) -> CallResult<Key, O> {
        self.count_op()?;
        self.stats.keys += 1;
        self.oracle
            .key(item)
            .map_err(|f| self.unanswered(f, item, item))
    }

    fn same(&mut self, a: O::Item, b: O::Item) -> CallResult<Option<bool>, O> {
        self.count_op()?;
        self.stats.sames += 1;
        self.oracle.same(a, b).map_err(|f| self.unanswered(f, a, b))
    }

    fn compare(&mut self, a: O::Item, b: O::Item) -> CallResult<Ordering, O> {
        self.count_op()?;
        self.stats.compares += 1;
        self.oracle
            .compare(a, b)
            .map_err(|f| self.unanswered(f, a, b))
    }

    /// Applies `Missing` to an unanswered call: the victim to drop under `Skip`, or
    /// the error that ends the run.
    fn apply_missing(&self, call: Unanswered<O::Item, O::Error>) -> EngineResult<O::Item, O> {
        match call {
            Unanswered::Fatal(e) => Err(OracleError::Fatal(e)),
            Unanswered::Gone { named, .. } if self.missing == Missing::Raise => {
                Err(OracleError::ItemGone(named))
            }
            Unanswered::Gone { victim, .. } => Ok(victim),
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

    fn add(&mut self, item: O::Item) -> EngineResult<(), O> {
        match self.key_of(item)? {
            Some(key) => self.add_keyed(item, key),
            None => Ok(()),
        }
    }

    /// The item's key; `None` when it vanished (and `Missing::Skip` drops it).
    fn key_of(&mut self, item: O::Item) -> EngineResult<Option<Key>, O> {
        loop {
            match self.key(item) {
                Ok(key) => return Ok(Some(key)),
                Err(unanswered) => {
                    let victim = self.apply_missing(unanswered)?;
                    if victim == item {
                        return Ok(None);
                    }
                    self.remove(victim);
                }
            }
        }
    }

    fn add_keyed(&mut self, item: O::Item, key: Key) -> EngineResult<(), O> {
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
    /// `ItemGone` the search restarts from scratch: the bucket changed under it.
    fn place(&mut self, item: O::Item, b: usize) -> EngineResult<(), O> {
        loop {
            let bucket = &self.buckets[b];
            if bucket.reps.is_empty() {
                self.new_group(item, b, 0);
                return Ok(());
            }
            let placement = if bucket.sorted {
                match self.recent(item, b) {
                    Ok(Some(gid)) => Ok(Placement::Join(gid)),
                    Ok(None) => self.search(item, b),
                    Err(unanswered) => Err(unanswered),
                }
            } else if self.can_order && bucket.reps.len() > SMALL {
                Ok(Placement::NeedSort)
            } else {
                self.scan(item, b)
            };
            match placement {
                Ok(Placement::Join(gid)) => {
                    self.join(item, gid);
                    return Ok(());
                }
                Ok(Placement::Insert(pos)) => {
                    self.new_group(item, b, pos);
                    return Ok(());
                }
                // Sets `sorted`, so this arm runs at most once per bucket.
                Ok(Placement::NeedSort) => self.sort_bucket(b)?,
                Err(unanswered) => {
                    let victim = self.apply_missing(unanswered)?;
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
    fn recent(&mut self, item: O::Item, b: usize) -> CallResult<Option<usize>, O> {
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
    fn equal(&mut self, a: O::Item, b: O::Item) -> CallResult<Option<bool>, O> {
        match self.same(a, b)? {
            Some(same) => Ok(Some(same)),
            None if self.can_order => Ok(Some(self.compare(a, b)? == Ordering::Equal)),
            None => Ok(None),
        }
    }

    /// Linear `same()` scan of an unsorted bucket.
    fn scan(&mut self, item: O::Item, b: usize) -> CallResult<Placement, O> {
        let mut i = 0;
        while let Some(&gid) = self.buckets[b].reps.get(i) {
            i += 1;
            let Some(rep) = self.rep(gid) else { continue };
            match self.same(item, rep)? {
                Some(true) => return Ok(Placement::Join(gid)),
                Some(false) => {}
                None if self.can_order => return Ok(Placement::NeedSort),
                None => return Err(Unanswered::Fatal(self.oracle.undecided_error(item, rep))),
            }
        }
        Ok(Placement::Insert(self.buckets[b].reps.len()))
    }

    /// Binary search of a sorted bucket: at most ceil(log2(k + 1)) compares.
    /// Whatever `compare` answers, `lo..hi` shrinks and stays in bounds.
    fn search(&mut self, item: O::Item, b: usize) -> CallResult<Placement, O> {
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
                Ordering::Equal => return Ok(Placement::Join(gid)),
                Ordering::Less => hi = mid,
                Ordering::Greater => lo = mid + 1,
            }
        }
        Ok(Placement::Insert(lo))
    }

    /// Sorts a bucket's reps once with our own merge sort (std's sort may
    /// panic on an inconsistent comparator, and a syscall comparator can be).
    fn sort_bucket(&mut self, b: usize) -> EngineResult<(), O> {
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
    /// dropped on the way, so `ItemGone` during a merge needs no restart.
    fn merge_runs(&mut self, runs: Vec<Vec<usize>>) -> EngineResult<Vec<usize>, O> {
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
    /// answers plus one retry per `ItemGone` (and each `ItemGone` removes an item).
    fn merge_two(&mut self, a: &[usize], b: &[usize]) -> EngineResult<Vec<usize>, O> {
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
                Err(unanswered) => {
                    let victim = self.apply_missing(unanswered)?;
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
    fn verify(&mut self) -> EngineResult<Unsettled<O::Item>, O> {
        let mut failing = vec![false; self.buckets.len()];
        let mut check = Unsettled {
            buckets: Vec::new(),
            volatile: Vec::new(),
        };
        let sizes = self.bucket_sizes();
        let pairwise = |b: usize| sizes.get(b).is_some_and(|&n| n <= PAIRWISE_ITEMS);
        // Small buckets get every pair of items checked: the only check that fds
        // changing under it cannot fool for the fds that stay put.
        for (b, &n) in sizes.iter().enumerate() {
            if n >= 2 && pairwise(b) {
                if let Some(pair) = self.misgrouped_pair(b)? {
                    failing[b] = true;
                    check.volatile.extend(pair.map(|r| (r, 1)));
                }
            }
        }
        for gid in 0..self.groups.len() {
            let bucket = self.groups[gid].bucket;
            if pairwise(bucket) {
                continue;
            }
            let Some(Mismatch { rep, differ }) = self.members_apart_from_rep(gid)? else {
                continue;
            };
            // Which side changed cannot be told from here: a rep and a member that
            // flipped together would match each other. So the bucket is redone
            // whenever a member differs, with the rep placed last.
            if let Some(f) = failing.get_mut(bucket) {
                *f = true;
            }
            // The rep is in every mismatch of its group, a member only in its own:
            // an fd that keeps changing collects the most, and goes last.
            check.volatile.push((rep, differ.len() as u32 + 1));
            check.volatile.extend(differ.iter().map(|&m| (m, 1)));
        }
        for (b, fail) in failing.iter_mut().enumerate() {
            if *fail || pairwise(b) {
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

    /// How many items each bucket holds.
    fn bucket_sizes(&self) -> Vec<usize> {
        let mut sizes = vec![0usize; self.buckets.len()];
        for g in &self.groups {
            if let Some(n) = sizes.get_mut(g.bucket) {
                *n += g.members.len();
            }
        }
        sizes
    }

    /// Group `gid`'s rep and the members the kernel now says differ from it (all of
    /// them when the rep itself vanished), or `None` when every member still matches.
    fn members_apart_from_rep(&mut self, gid: usize) -> EngineResult<Option<Mismatch<O::Item>>, O> {
        let Some(rep) = self.rep(gid) else {
            return Ok(None);
        };
        let members: Vec<O::Item> = self.groups[gid].members.iter().skip(1).copied().collect();
        let mut differ = Vec::new();
        for &member in &members {
            // Undecidable pairs were recorded by the oracle: nothing to recheck.
            match self.equal(member, rep).map(|e| e.unwrap_or(true)) {
                Ok(true) => {}
                Ok(false) => differ.push(member),
                Err(unanswered) => {
                    let victim = self.apply_missing(unanswered)?;
                    if victim == rep {
                        differ.clone_from(&members);
                        break;
                    }
                    differ.push(member);
                }
            }
        }
        Ok((!differ.is_empty()).then_some(Mismatch { rep, differ }))
    }

    /// Whether a consistency check held: an item that vanished during it counts as a
    /// contradiction (its bucket is redone without it), except under `Missing::Raise`,
    /// where it ends the batch as everywhere.
    fn check_holds(&self, answer: CallResult<bool, O>) -> EngineResult<bool, O> {
        match answer {
            Ok(holds) => Ok(holds),
            Err(unanswered) => self.apply_missing(unanswered).map(|_| false),
        }
    }

    /// Two items of bucket `b` whose grouping the kernel now contradicts: equal but
    /// in two groups, or in one group but different.
    fn misgrouped_pair(&mut self, b: usize) -> EngineResult<Option<[O::Item; 2]>, O> {
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
                    .map(|e| e.is_none_or(|same| same == (gx == gy)));
                if !self.check_holds(answer)? {
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
    fn misplaced_reps(
        &mut self,
        reps: &[O::Item],
        sorted: bool,
    ) -> EngineResult<Option<[O::Item; 2]>, O> {
        if sorted {
            for pair in reps.windows(2) {
                let ascends = self.compare(pair[0], pair[1]).map(|o| o == Ordering::Less);
                if !self.check_holds(ascends)? {
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
                if !self.check_holds(distinct)? {
                    return Ok(Some([x, y]));
                }
            }
        }
        Ok(None)
    }

    /// Classifies the items of the given buckets again, from their keys on (a changed
    /// item may now belong to another bucket), items seen to change last.
    fn redo(&mut self, buckets: &[usize]) -> EngineResult<(), O> {
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

    fn kernel_order(&mut self) -> EngineResult<Vec<Vec<O::Item>>, O> {
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
mod tests;
