//! Keys fetched in parallel before the engine runs: the same keys and groups as keying
//! one at a time, with fds closed and processes killed between the two.

use super::*;
use crate::engine::GroupOrder;
use crate::oracle::testing::{opts, sources, Child, BASE, COPIES};
use crate::sys::testing;

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
