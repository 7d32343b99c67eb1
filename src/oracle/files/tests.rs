//! Keys fetched in parallel before the engine runs: the same keys and groups as keying
//! one at a time, with fds closed and processes killed between the two.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};

use super::*;
use crate::engine::{GroupOrder, Stats};
use crate::sys::testing;

/// Dups each child holds: enough refs for several chunks of `map_chunks`.
const COPIES: usize = 600;
/// Where the children's dups start (fd numbers free in the test process).
const BASE: Fd = 3000;

fn opts(missing: Missing) -> FileOptions {
    FileOptions {
        order: GroupOrder::Fd,
        missing,
        allow_pidfd_getfd: false,
        report_undecided: false,
    }
}

/// Two files and a pipe: dups of them fall into three buckets of distinct keys.
fn sources() -> Vec<OwnedFd> {
    let (r, w) = std::io::pipe().unwrap();
    vec![
        File::open("/dev/null").unwrap().into(),
        File::open("/proc/self/exe").unwrap().into(),
        r.into(),
        w.into(),
    ]
}

/// A child of the test, killed and reaped when dropped, with its control pipe.
struct Child(Pid, [Fd; 2]);

impl Child {
    fn new(fds: &[OwnedFd]) -> Child {
        let raw: Vec<Fd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let (pid, pipe) = testing::fork_closable(&raw, COPIES, BASE);
        Child(pid, pipe)
    }

    fn refs(&self) -> Vec<FileRef> {
        (BASE..BASE + COPIES as Fd).map(|fd| (self.0, fd)).collect()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        testing::close_pipe(self.1);
        testing::kill(self.0);
        testing::reap(self.0);
    }
}

/// An oracle of one run whose pids are guarded, as the retry loop leaves it.
fn oracle_for(refs: &[FileRef], missing: Missing) -> FileOracle {
    let mut oracle = FileOracle::new(opts(missing));
    for &(pid, _) in refs {
        oracle.track_pid(pid).unwrap();
    }
    oracle
}

fn groups(oracle: &mut FileOracle, refs: &[FileRef], missing: Missing) -> Vec<Vec<FileRef>> {
    engine::classify(oracle, refs, GroupOrder::Fd, missing)
        .unwrap()
        .0
}

#[test]
fn prefetched_keys_and_groups_equal_sequential_ones() {
    let fds = sources();
    let (a, b) = (Child::new(&fds), Child::new(&fds));
    let mut refs = a.refs();
    refs.extend(b.refs());
    // Numbers open in neither child: keyed as gone by both paths.
    refs.extend([(a.0, BASE - 1), (b.0, 999_999)]);
    let mut sequential = oracle_for(&refs, Missing::Skip);
    let mut parallel = oracle_for(&refs, Missing::Skip);
    parallel.prefetch_keys(&refs, &mut || false).unwrap();
    assert_eq!(
        parallel.prefetched.len(),
        2 * COPIES,
        "every open fd, and only those"
    );
    for &r in &refs {
        assert_eq!(parallel.key(r), sequential.key(r), "{r:?}");
    }
    assert!(parallel.prefetched.is_empty(), "each key is served once");
    // Whole runs: four descriptions, each held by both children.
    let mut sequential = oracle_for(&refs, Missing::Skip);
    let mut parallel = oracle_for(&refs, Missing::Skip);
    parallel.prefetch_keys(&refs, &mut || false).unwrap();
    let found = groups(&mut parallel, &refs, Missing::Skip);
    assert_eq!(found, groups(&mut sequential, &refs, Missing::Skip));
    assert_eq!(found.len(), fds.len());
    assert!(found.iter().all(|g| g.len() == 2 * COPIES / fds.len()));
}

#[test]
fn fds_closed_after_prefetching_are_left_out_or_raised() {
    let fds = sources();
    for missing in [Missing::Skip, Missing::Raise] {
        let (a, b) = (Child::new(&fds), Child::new(&fds));
        let mut refs = a.refs();
        refs.extend(b.refs());
        let mut oracle = oracle_for(&refs, missing);
        oracle.prefetch_keys(&refs, &mut || false).unwrap();
        // Closed after their keys were taken: the first dup of each source in `a`.
        for _ in &fds {
            testing::close_next(a.1);
        }
        let closed: Vec<FileRef> = (0..fds.len()).map(|i| (a.0, BASE + i as Fd)).collect();
        let outcome = engine::classify(&mut oracle, &refs, GroupOrder::Fd, missing);
        let open: Vec<FileRef> = refs
            .iter()
            .copied()
            .filter(|r| !closed.contains(r))
            .collect();
        let truth = groups(&mut oracle_for(&open, missing), &open, missing);
        match (missing, outcome) {
            (Missing::Skip, Ok((found, _))) => assert_eq!(found, truth),
            (Missing::Raise, Err(OracleError::ItemGone(r))) => assert!(closed.contains(&r)),
            (_, other) => panic!("{missing:?}: {other:?}"),
        }
        assert_eq!(oracle.pids.vanished(), Ok(vec![]));
    }
}

#[test]
fn a_process_killed_after_prefetching_is_found_vanished() {
    let fds = sources();
    let (a, b) = (Child::new(&fds), Child::new(&fds));
    let mut refs = a.refs();
    refs.extend(b.refs());
    let mut oracle = oracle_for(&refs, Missing::Skip);
    oracle.prefetch_keys(&refs, &mut || false).unwrap();
    testing::kill(b.0);
    assert!(testing::await_zombie(b.0));
    // Its keys are served as taken; its fds are gone for every comparison, and the
    // guard reports it, so the retry loop reruns without it (or raises).
    let found = engine::classify(&mut oracle, &refs, GroupOrder::Fd, Missing::Skip);
    assert!(found.is_ok(), "{found:?}");
    assert!(oracle.pids.has_vanished(b.0));
    assert_eq!(oracle.pids.vanished(), Ok(vec![b.0]));
    let settled = super::super::classify_files(&refs, opts(Missing::Skip), || false).unwrap();
    let a_only = a.refs();
    assert_eq!(
        settled.groups,
        groups(
            &mut oracle_for(&a_only, Missing::Skip),
            &a_only,
            Missing::Skip
        )
    );
    // A batch started now finds it dead already: a zombie, awaiting its reaping.
    assert_eq!(
        super::super::classify_files(&refs, opts(Missing::Raise), || false).unwrap_err(),
        Failure::Zombie { pid: b.0 }
    );
}

#[test]
fn an_interrupt_stops_the_prefetch() {
    let fds = sources();
    let a = Child::new(&fds);
    let refs = a.refs();
    let mut oracle = oracle_for(&refs, Missing::Skip);
    assert_eq!(
        oracle.prefetch_keys(&refs, &mut || true),
        Err(Failure::Interrupted)
    );
    assert_eq!(
        super::super::classify_files(&refs, opts(Missing::Skip), || true).unwrap_err(),
        Failure::Interrupted
    );
}

#[test]
fn map_chunks_keeps_order_across_threads() {
    let items: Vec<u32> = (0..10_000).collect();
    let doubled = map_chunks(&items, |c| c.iter().map(|x| x * 2).collect(), &mut || false);
    assert_eq!(doubled, Ok(items.iter().map(|x| x * 2).collect::<Vec<_>>()));
    let none: Vec<u32> = Vec::new();
    assert_eq!(
        map_chunks(&none, <[u32]>::to_vec, &mut || false),
        Ok(vec![])
    );
}

#[test]
fn sharded_groups_equal_one_threads() {
    let fds = sources();
    let (a, b) = (Child::new(&fds), Child::new(&fds));
    let mut refs = a.refs();
    refs.extend(b.refs());
    refs.extend([(a.0, BASE - 1), (b.0, 999_999)]); // not open: left out by both
    let o = opts(Missing::Skip);
    let one = super::super::classify_files(&refs, o, || false).unwrap();
    assert_eq!(one.groups.len(), fds.len());
    for threads in [2, 3, 8] {
        let many = super::super::sharded(&refs, o, threads, 0, &mut || false).unwrap();
        assert_eq!(many.groups, one.groups, "{threads} threads");
        assert!(many.undecided.is_empty());
    }
    let raise = opts(Missing::Raise);
    assert_eq!(
        super::super::sharded(&refs, raise, 2, 0, &mut || false).map(|c| c.groups),
        Err(Failure::NotOpen {
            pid: a.0,
            fd: BASE - 1
        }),
        "a ref not open raises as in one thread"
    );
    assert_eq!(
        super::super::sharded(&refs, o, 2, 0, &mut || true).map(|c| c.groups),
        Err(Failure::Interrupted)
    );
}

#[test]
fn a_bucket_split_among_threads_merges_to_one_thread_s_groups() {
    // 200 opens of one file: 200 descriptions on one inode, each held three times
    // by each of two children. The bucket outweighs the rest, so it is split.
    let opens: Vec<OwnedFd> = (0..200)
        .map(|_| File::open("/dev/null").unwrap().into())
        .collect();
    let (a, b) = (Child::new(&opens), Child::new(&opens));
    let mut refs = a.refs();
    refs.extend(b.refs());
    let o = opts(Missing::Skip);
    let one = super::super::classify_files(&refs, o, || false).unwrap();
    assert_eq!(one.groups.len(), opens.len());
    assert!(one.groups.iter().all(|g| g.len() == 6));
    for threads in [2, 3, 4] {
        let many = super::super::sharded(&refs, o, threads, 0, &mut || false).unwrap();
        assert_eq!(many.groups, one.groups, "{threads} threads");
    }
}

#[test]
fn a_merge_that_cannot_compare_falls_back_to_the_whole_bucket() {
    let opens: Vec<OwnedFd> = (0..3)
        .map(|_| File::open("/dev/null").unwrap().into())
        .collect();
    let me = sys::getpid();
    let refs: Vec<FileRef> = opens.iter().map(|f| (me, f.as_raw_fd())).collect();
    let gone = (me, 999_999);
    let mut compares = 0;
    let merged =
        super::super::merge_in_kcmp_order(vec![vec![gone]], vec![vec![refs[0]]], &mut compares);
    assert_eq!((merged, compares), (None, 1));
    // Parts whose merge fails: the bucket is classified again from the shards' refs.
    let key = sys::fstat_key(refs[0].1).unwrap();
    let shards = vec![super::super::Shard {
        refs: Vec::new(),
        keys: rustc_hash::FxHashMap::default(),
        split: Some((key, refs.clone())),
    }];
    let parts = vec![
        (key, vec![vec![gone]], Stats::default()),
        (key, vec![vec![refs[1]]], Stats::default()),
    ];
    let mut stats = Stats::default();
    let groups =
        super::super::join_parts(parts, &shards, opts(Missing::Skip), &mut stats, &mut || {
            false
        })
        .unwrap();
    // By smallest member: the opens' numbers need not ascend (other tests' fds close
    // and open meanwhile).
    let mut want: Vec<Vec<FileRef>> = refs.iter().map(|&r| vec![r]).collect();
    want.sort_unstable();
    assert_eq!(groups, want);
}
