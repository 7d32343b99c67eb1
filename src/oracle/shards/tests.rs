//! A sharded batch gives the groups of one thread, whether its buckets are dealt
//! whole or its largest one is split and merged; a merge that cannot compare falls
//! back to the whole bucket.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};

use super::*;
use crate::engine::Missing;
use crate::oracle::testing::{opts, sources, Child, BASE};

#[test]
fn sharded_groups_equal_one_threads() {
    let fds = sources();
    let (a, b) = (Child::new(&fds), Child::new(&fds));
    let mut refs = a.refs();
    refs.extend(b.refs());
    refs.extend([(a.0, BASE - 1), (b.0, 999_999)]); // not open: left out by both
    let o = opts(Missing::Skip);
    let one = classify_files(&refs, o, || false).unwrap();
    assert_eq!(one.groups.len(), fds.len());
    for threads in [2, 3, 8] {
        let many = sharded(&refs, o, threads, 0, &mut || false).unwrap();
        assert_eq!(many.groups, one.groups, "{threads} threads");
        assert!(many.undecided.is_empty());
    }
    let raise = opts(Missing::Raise);
    assert_eq!(
        sharded(&refs, raise, 2, 0, &mut || false).map(|c| c.groups),
        Err(Failure::NotOpen {
            pid: a.0,
            fd: BASE - 1
        }),
        "a ref not open raises as in one thread"
    );
    assert_eq!(
        sharded(&refs, o, 2, 0, &mut || true).map(|c| c.groups),
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
    let one = classify_files(&refs, o, || false).unwrap();
    assert_eq!(one.groups.len(), opens.len());
    assert!(one.groups.iter().all(|g| g.len() == 6));
    for threads in [2, 3, 4] {
        let many = sharded(&refs, o, threads, 0, &mut || false).unwrap();
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
    let merged = merge_in_kcmp_order(vec![vec![gone]], vec![vec![refs[0]]], &mut compares);
    assert_eq!((merged, compares), (None, 1));
    // Parts whose merge fails: the bucket is classified again from the shards' refs.
    let key = sys::fstat_key(refs[0].1).unwrap();
    let shards = vec![Shard {
        refs: Vec::new(),
        keys: rustc_hash::FxHashMap::default(),
        split: Some((key, refs.clone())),
    }];
    let parts = vec![
        (key, vec![vec![gone]], Stats::default()),
        (key, vec![vec![refs[1]]], Stats::default()),
    ];
    let mut stats = Stats::default();
    let groups = join_parts(parts, &shards, opts(Missing::Skip), &mut stats, &mut || {
        false
    })
    .unwrap();
    // By smallest member: the opens' numbers need not ascend (other tests' fds close
    // and open meanwhile).
    let mut want: Vec<Vec<FileRef>> = refs.iter().map(|&r| vec![r]).collect();
    want.sort_unstable();
    assert_eq!(groups, want);
}
