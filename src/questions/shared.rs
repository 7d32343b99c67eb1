//! What two processes share: their fds grouped by open file description, and per
//! inode each holds through a description the other does not hold, those fds.
//!
//! Both processes are pinned before either is listed; the classification runs with
//! `Missing::Skip` for fds closed meanwhile, and the pins decide at the end whether
//! either process exited (then the call fails: a process half-read shares less).

use rustc_hash::FxHashMap as HashMap;

use super::procfs::live_task_of;
use super::{file_key, Pinned};
use crate::engine::{GroupOrder, Missing};
use crate::error::Failure;
use crate::ladder::kcmp_checked;
use crate::oracle::{classify_files, FileOptions, FileRef};
use crate::support;
use crate::sys::{self, Fd, FileKey, KcmpOrder, Pid};

/// The fds of the first process and of the second, each ascending.
pub type Sides = (Vec<Fd>, Vec<Fd>);

/// What `shared_files` found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Shared {
    /// One entry per description both hold (with one fd table: per description).
    pub shared: Vec<Sides>,
    /// Per inode each process holds through a description the other does not hold
    /// (separate opens), those fds on both sides: neither side is ever empty.
    pub reopened: Vec<Sides>,
    /// The two pids share one fd table (the same pid, threads, CLONE_FILES).
    pub same_table: bool,
    /// Refs no exact method could decide (kcmp blocked), in no entry.
    pub undecided: Vec<FileRef>,
}

/// The open file descriptions `pid1` and `pid2` share, told apart from separate opens
/// of the same file. `interrupted` is polled by the classification.
pub fn shared_files(
    pid1: Pid,
    pid2: Pid,
    allow_pidfd_getfd: bool,
    interrupted: impl FnMut() -> bool,
) -> Result<Shared, Failure> {
    // A process whose main thread exited (pthread_exit) is read through a live
    // thread of it, as the scan reads it.
    let (pid1, pid2) = (live_task_of(pid1), live_task_of(pid2));
    let pinned = Pinned::new(&[pid1, pid2])?;
    let same_table = pid1 == pid2
        || (support::kcmp_usable()
            && kcmp_checked(pid1, pid2, sys::KCMP_FILES, 0, 0).map_err(|f| pinned.explain(f))?
                == KcmpOrder::Equal);
    let mut refs: Vec<FileRef> = pinned.list(pid1)?.into_iter().map(|f| (pid1, f)).collect();
    if !same_table {
        refs.extend(pinned.list(pid2)?.into_iter().map(|f| (pid2, f)));
    }
    let opts = FileOptions {
        order: GroupOrder::Fd,
        missing: Missing::Skip,
        allow_pidfd_getfd,
        report_undecided: true,
    };
    let found = classify_files(&refs, opts, interrupted).map_err(|f| pinned.explain(f))?;
    let groups: Vec<Vec<FileRef>> = found
        .groups
        .into_iter()
        .map(|g| {
            g.into_iter()
                .filter(|r| !found.undecided.contains(r))
                .collect::<Vec<_>>()
        })
        .filter(|g| !g.is_empty())
        .collect();
    let keys: Vec<Option<FileKey>> = groups
        .iter()
        .map(|g| g.iter().find_map(|&(p, f)| file_key(p, f)))
        .collect();
    pinned.finish()?;
    let mut undecided = found.undecided;
    undecided.sort_unstable();
    if same_table {
        let shared = groups
            .iter()
            .map(|g| {
                let fds: Vec<Fd> = g.iter().map(|&(_, f)| f).collect();
                (fds.clone(), fds)
            })
            .collect();
        return Ok(Shared {
            shared,
            reopened: Vec::new(),
            same_table: true,
            undecided,
        });
    }
    Ok(across(pid1, &groups, &keys, undecided))
}

fn sides(group: &[FileRef], pid1: Pid) -> Sides {
    let (a, b): (Vec<FileRef>, Vec<FileRef>) = group.iter().partition(|&&(p, _)| p == pid1);
    (
        a.into_iter().map(|(_, f)| f).collect(),
        b.into_iter().map(|(_, f)| f).collect(),
    )
}

/// The answer for two fd tables, from the groups (ascending by first ref) and each
/// group's inode.
fn across(
    pid1: Pid,
    groups: &[Vec<FileRef>],
    keys: &[Option<FileKey>],
    undecided: Vec<FileRef>,
) -> Shared {
    let mut shared = Vec::new();
    let mut by_inode: HashMap<FileKey, Vec<Sides>> = HashMap::default();
    for (group, key) in groups.iter().zip(keys) {
        let s = sides(group, pid1);
        if let Some(key) = key {
            by_inode.entry(*key).or_default().push(s.clone());
        }
        if !s.0.is_empty() && !s.1.is_empty() {
            shared.push(s);
        }
    }
    let mut inodes: Vec<_> = by_inode.into_iter().collect();
    inodes.sort_unstable_by_key(|(k, _)| *k);
    let mut reopened = Vec::new();
    for (_, all) in inodes {
        // A description one side holds alone has no fd on the other side: the fds of
        // each side here are exactly those whose description the other does not hold.
        let alone = || all.iter().filter(|s| s.0.is_empty() || s.1.is_empty());
        let mut one: Vec<Fd> = alone().flat_map(|s| s.0.iter().copied()).collect();
        let mut two: Vec<Fd> = alone().flat_map(|s| s.1.iter().copied()).collect();
        // Both must hold the file through a description of their own: a side that
        // holds it only through a shared description does not have it open separately.
        if one.is_empty() || two.is_empty() {
            continue;
        }
        one.sort_unstable();
        two.sort_unstable();
        reopened.push((one, two));
    }
    Shared {
        shared,
        reopened,
        same_table: false,
        undecided,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopened_needs_both_processes_on_the_inode() {
        let groups = vec![
            vec![(1, 3), (2, 4)],
            vec![(1, 5)],
            vec![(2, 6)],
            vec![(1, 7)],
        ];
        let keys = vec![Some((0, 1)), Some((0, 1)), Some((0, 1)), Some((0, 2))];
        let s = across(1, &groups, &keys, vec![]);
        assert_eq!(s.shared, vec![(vec![3], vec![4])]);
        assert_eq!(s.reopened, vec![(vec![5], vec![6])]);
        assert!(!s.same_table);
    }

    #[test]
    fn a_shared_description_and_one_side_s_own_open_is_not_reopened() {
        // Process 1 holds the file twice (3 shared with 2, and 9 of its own); process
        // 2 only through the shared one: no separate opens on both sides.
        let groups = vec![vec![(1, 3), (2, 3)], vec![(1, 9)]];
        let keys = vec![Some((0, 1)), Some((0, 1))];
        let s = across(1, &groups, &keys, vec![]);
        assert_eq!(s.shared, vec![(vec![3], vec![3])]);
        assert_eq!(s.reopened, vec![]);
        // The same the other way round.
        let groups = vec![vec![(1, 3), (2, 3)], vec![(2, 9)]];
        let s = across(1, &groups, &keys, vec![]);
        assert_eq!(s.reopened, vec![]);
    }

    #[test]
    fn reopened_lists_only_the_descriptions_not_shared() {
        let groups = vec![
            vec![(1, 3), (2, 3)],
            vec![(1, 4)],
            vec![(2, 5), (2, 6)],
            vec![(1, 8)],
        ];
        let keys = vec![Some((0, 1)); 4];
        let s = across(1, &groups, &keys, vec![]);
        assert_eq!(s.shared, vec![(vec![3], vec![3])]);
        assert_eq!(s.reopened, vec![(vec![4, 8], vec![5, 6])]);
    }
}
