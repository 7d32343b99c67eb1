//! A file batch sharded by inode across threads, for callers whose processes stay
//! pinned across the call (the scan): the inode buckets dealt by cost to one oracle
//! per thread, the largest bucket split among them and its parts merged in kcmp order.
//!
//! Runs each shard through the parent's retry loop (`classify_until_settled`); its
//! threads come from `pool`.

use std::sync::atomic::{AtomicBool, Ordering as Atomic};
use std::thread;

use rustc_hash::FxHashMap as HashMap;

use super::{
    churn_failure, classify_files, classify_until_settled, files, Classified, FileOptions,
    FileOracle, FileRef, Settled,
};
use crate::engine::{GroupOrder, Key, Stats};
use crate::error::Failure;
use crate::pool::map_chunks;
use crate::support;
use crate::sys::{self, KcmpOrder};

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

#[cfg(test)]
mod tests;
