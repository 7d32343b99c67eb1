//! The engine driven by fake oracles: counting, racing (items vanishing) and lying ones.

// Test data is built from small integers; widening casts read better than `From` here.
#![allow(clippy::cast_lossless, clippy::cast_precision_loss)]

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
    fn check(&mut self, a: u32, b: u32) -> Result<(), OracleError<u32, TErr>> {
        for x in [a, b] {
            if self.gone.contains(&x) {
                self.reported.push(x);
                return Err(OracleError::ItemGone(x));
            }
        }
        Ok(())
    }
    fn bump(&mut self, a: u32, compare: bool) {
        // Both items of a call share a key: count per key (bucket).
        if let Some(&(key, _)) = self.table.get(&a) {
            let e = self.per_key.entry(key).or_default();
            if compare {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
    }
}

impl Oracle for Fake {
    type Item = u32;
    type Error = TErr;
    fn key(&mut self, item: u32) -> Result<Key, OracleError<u32, TErr>> {
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
    fn compare(&mut self, a: u32, b: u32) -> Result<Ordering, OracleError<u32, TErr>> {
        assert!(self.can_order, "compare called although !can_order");
        self.compares += 1;
        self.bump(a, true);
        self.check(a, b)?;
        Ok(Self::rank(self.obj(a)).cmp(&Self::rank(self.obj(b))))
    }
    fn same(&mut self, a: u32, b: u32) -> Result<Option<bool>, OracleError<u32, TErr>> {
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
    fn undecided_error(&mut self, a: u32, b: u32) -> TErr {
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
    assert_eq!(r, Err(OracleError::Fatal(TErr::Undecided(1, 0))));
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
        let (groups, stats) = classify(&mut k, &items, GroupOrder::Kernel, Missing::Skip).unwrap();
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
        let (groups, _) = classify(&mut fake, &items, GroupOrder::Kernel, Missing::Raise).unwrap();
        assert_kernel_ascending(&fake, &groups);
        let mut sorted = groups.clone();
        sorted.sort();
        assert_eq!(sorted, brute(&table, &items, &[]));
    }
}

// ---------- checkpoints ----------

#[test]
fn checkpoint_runs_on_long_inputs_and_aborts() {
    let table: HashMap<u32, (Key, u32)> = (0..10_000).map(|i| (i, ((1, i as u64), i))).collect();
    let items: Vec<u32> = (0..10_000).collect();
    let mut fake = Fake::new(table.clone());
    let (_, s) = classify(&mut fake, &items, GroupOrder::Fd, Missing::Skip).unwrap();
    let ops = (s.keys + s.compares + s.sames) as usize;
    assert_eq!(fake.checkpoints as usize, 1 + ops / CHECKPOINT_EVERY);

    let mut fake = Fake::new(table.clone());
    fake.fail_checkpoint_at = Some(3);
    let r = classify(&mut fake, &items, GroupOrder::Fd, Missing::Skip);
    assert_eq!(r, Err(OracleError::Fatal(TErr::Interrupted)));
    assert_eq!(fake.keys as usize, 2 * CHECKPOINT_EVERY - 1);

    let mut fake = Fake::new(table);
    fake.fail_checkpoint_at = Some(1);
    assert_eq!(
        classify(&mut fake, &items, GroupOrder::Fd, Missing::Skip),
        Err(OracleError::Fatal(TErr::Interrupted))
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

type Outcome = Result<(Vec<Vec<u32>>, Stats), OracleError<u32, TErr>>;

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
    assert_eq!(r, Err(OracleError::ItemGone(5)));
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
            assert_eq!(r, Err(OracleError::ItemGone(7)));
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
        assert_eq!(r, Err(OracleError::ItemGone(1)));
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
    let table: HashMap<u32, (Key, u32)> = (0..20).map(|i| (i, ((1, (i % 2) as u64), i))).collect();
    let items: Vec<u32> = (0..20).collect();
    for missing in [Missing::Skip, Missing::Raise] {
        let mut fake = Fake::new(table.clone());
        fake.vanish_after_key.insert(19, vec![4]);
        let r = classify(&mut fake, &items, GroupOrder::Kernel, missing);
        assert_eq!(fake.reported, vec![4]);
        if missing == Missing::Raise {
            assert_eq!(r, Err(OracleError::ItemGone(4)));
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
    fn maybe_gone(&mut self, a: u32, b: u32) -> Result<(), OracleError<u32, TErr>> {
        if self.rng.below(1000) < self.gone_per_mille {
            let x = if self.name_any && self.rng.below(2) == 0 && !self.universe.is_empty() {
                self.universe[self.rng.below(self.universe.len() as u64) as usize]
            } else if self.rng.below(2) == 0 {
                a
            } else {
                b
            };
            self.reported.push(x);
            return Err(OracleError::ItemGone(x));
        }
        Ok(())
    }
}

impl Oracle for Chaos {
    type Item = u32;
    type Error = TErr;
    fn key(&mut self, item: u32) -> Result<Key, OracleError<u32, TErr>> {
        self.maybe_gone(item, item)?;
        Ok((self.rng.below(self.keys), 0))
    }
    fn can_order(&self) -> bool {
        self.can_order
    }
    fn compare(&mut self, a: u32, b: u32) -> Result<Ordering, OracleError<u32, TErr>> {
        assert!(self.can_order);
        self.maybe_gone(a, b)?;
        Ok([Ordering::Less, Ordering::Equal, Ordering::Greater][self.rng.below(3) as usize])
    }
    fn same(&mut self, a: u32, b: u32) -> Result<Option<bool>, OracleError<u32, TErr>> {
        self.maybe_gone(a, b)?;
        Ok([Some(true), Some(false), None][self.rng.below(3) as usize])
    }
    fn undecided_error(&mut self, a: u32, b: u32) -> TErr {
        TErr::Undecided(a, b)
    }
}

fn check_partition(groups: &[Vec<u32>], input: &BTreeSet<u32>, order: GroupOrder) -> BTreeSet<u32> {
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
                    if o.name_any {
                        // Each Gone removes at most one item.
                        assert!(input.len() - out.len() <= o.reported.len());
                    } else {
                        // Skip drops exactly the items reported gone.
                        let expect: BTreeSet<u32> = input.difference(&reported).copied().collect();
                        assert_eq!(out, expect, "seed {seed} n {n}");
                    }
                }
                Err(OracleError::ItemGone(x)) => {
                    assert_eq!(missing, Missing::Raise);
                    assert_eq!(o.reported, vec![x]);
                }
                Err(OracleError::Fatal(TErr::Undecided(a, b))) => {
                    assert!(!o.can_order);
                    assert!(input.contains(&a) && input.contains(&b));
                }
                Err(OracleError::Fatal(e)) => panic!("unexpected {e:?}"),
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
        fn key(&mut self, _: u32) -> Result<Key, OracleError<u32, TErr>> {
            Ok((0, 0))
        }
        fn can_order(&self) -> bool {
            true
        }
        fn compare(&mut self, _: u32, _: u32) -> Result<Ordering, OracleError<u32, TErr>> {
            Ok(Ordering::Less)
        }
        fn same(&mut self, _: u32, _: u32) -> Result<Option<bool>, OracleError<u32, TErr>> {
            Ok(Some(false))
        }
        fn undecided_error(&mut self, a: u32, b: u32) -> TErr {
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
    fn key(&mut self, _item: u32) -> Result<Key, OracleError<u32, TErr>> {
        Ok((0, 0))
    }
    fn can_order(&self) -> bool {
        true
    }
    fn compare(&mut self, a: u32, b: u32) -> Result<Ordering, OracleError<u32, TErr>> {
        Ok(self.objects[&a].cmp(&self.objects[&b]))
    }
    fn same(&mut self, a: u32, b: u32) -> Result<Option<bool>, OracleError<u32, TErr>> {
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
    fn undecided_error(&mut self, a: u32, b: u32) -> TErr {
        TErr::Undecided(a, b)
    }
    fn churn_error(&mut self) -> Option<TErr> {
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
    assert_eq!(err, OracleError::Fatal(TErr::Unstable));
}
