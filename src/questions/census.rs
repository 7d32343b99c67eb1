//! The census (issue 23): one scan of many processes, counted for metrics. The scan
//! runs with every description and the channels (`include_unshared`, `ipc`); while
//! its processes are pinned, each one's value of every boundary kind and its
//! container are read too; then the descriptions are counted by container and type,
//! by holders, by boundary crossed, the one-sided pipes and FIFOs by the side nobody
//! holds, and the registrations of every epoll set by status.
//!
//! The counting is pure functions over what the pass read (`count`, `unpaired`,
//! `epoll_counts`), so that every rule is tested without processes.

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use super::channels::Channel;
use super::endpoints::{FIFO, PIPE, READ, WRITE};
use super::epoll::{epoll_sets, Status};
use super::escapes::container_of;
use super::json::type_of;
use super::scan::{
    cgroup_text, cgroup_value, scan_with, skip_reason, Boundary, Described, ScanOptions, EXITED,
};
use crate::error::Failure;
use crate::oracle::FileRef;
use crate::pool::map_chunks;
use crate::sys::Pid;

/// The number of boundary kinds (`Boundary::KINDS`).
const KINDS: usize = Boundary::KINDS.len();

/// What the type of an epoll fd reads as (`json::type_of` of its target).
const EVENTPOLL: &str = "eventpoll";

/// What one process showed while pinned: its value of each boundary kind in the order
/// of `Boundary::KINDS` (`None`: unread) and the container its cgroup names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Values {
    pub kinds: [Option<Vec<u8>>; KINDS],
    pub container: Option<(&'static str, String)>,
}

/// The values of `pid`, as `Boundary::value` gives them; the cgroup file is read once
/// for its value and its container.
fn values_of(pid: Pid) -> Values {
    let cgroup = cgroup_text(pid).ok();
    let kinds = Boundary::KINDS.map(|name| match Boundary::from_name(name) {
        Some(Boundary::Cgroup) => cgroup.as_deref().and_then(cgroup_value),
        Some(kind) => kind.value(pid).ok(),
        None => None,
    });
    Values {
        kinds,
        container: cgroup.as_deref().and_then(container_of),
    }
}

/// One description as the census counts it: its type and its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub kind: String,
    pub members: Vec<FileRef>,
}

/// The type of a description as the scan reports it; "?" once gone.
fn kind_of((target, _, file): &Described) -> String {
    target
        .as_deref()
        .map_or_else(|| "?".to_string(), |t| type_of(t, *file))
}

/// What the census counted of the descriptions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// (runtime, container id, type, fds), sorted; ("", "") outside any container.
    pub fds: Vec<(String, String, String, usize)>,
    /// (type, descriptions held by two processes or more), sorted by type.
    pub shared: Vec<(String, usize)>,
    /// Per kind, in the order of `Boundary::KINDS`: the descriptions whose holders
    /// read show two values or more.
    pub crossings: Vec<(&'static str, usize)>,
    /// Per kind: the descriptions held by two processes or more with a holder whose
    /// value is unread.
    pub crossings_undecided: Vec<(&'static str, usize)>,
    /// Per reader: (its fds, those on a description held by two processes or more).
    pub per_reader: BTreeMap<Pid, (usize, usize)>,
}

/// Counts `seen` (every description of the pass) held through `tables` (each read fd
/// table, its reader first), with each process's `values`.
fn count(seen: &[Seen], tables: &[Vec<Pid>], values: &HashMap<Pid, Values>) -> Counts {
    let table_of: HashMap<Pid, &[Pid]> = tables
        .iter()
        .filter_map(|t| t.first().map(|&reader| (reader, t.as_slice())))
        .collect();
    let mut per_reader: BTreeMap<Pid, (usize, usize)> =
        table_of.keys().map(|&reader| (reader, (0, 0))).collect();
    // Keyed by borrowed names: a census may count many thousands of fds.
    let mut fds: BTreeMap<(&str, &str, &str), usize> = BTreeMap::new();
    let mut shared: BTreeMap<String, usize> = BTreeMap::new();
    let mut crossings = [0; KINDS];
    let mut undecided = [0; KINDS];
    for d in seen {
        // A table's sharers hold what its reader holds, as the scan's boundaries count.
        let mut holders: Vec<Pid> = d
            .members
            .iter()
            .flat_map(|(pid, _)| {
                table_of
                    .get(pid)
                    .copied()
                    .unwrap_or(std::slice::from_ref(pid))
            })
            .copied()
            .collect();
        holders.sort_unstable();
        holders.dedup();
        let is_shared = holders.len() > 1;
        for (pid, _) in &d.members {
            let (runtime, id) = values
                .get(pid)
                .and_then(|v| v.container.as_ref())
                .map_or(("", ""), |(r, id)| (*r, id.as_str()));
            *fds.entry((runtime, id, d.kind.as_str())).or_default() += 1;
            let mine = per_reader.entry(*pid).or_default();
            mine.0 += 1;
            mine.1 += usize::from(is_shared);
        }
        if !is_shared {
            continue;
        }
        *shared.entry(d.kind.clone()).or_default() += 1;
        for kind in 0..KINDS {
            let read: Vec<Option<&Vec<u8>>> = holders
                .iter()
                .map(|h| values.get(h).and_then(|v| v.kinds[kind].as_ref()))
                .collect();
            let mut known: Vec<&Vec<u8>> = read.iter().flatten().copied().collect();
            known.sort_unstable();
            known.dedup();
            crossings[kind] += usize::from(known.len() > 1);
            undecided[kind] += usize::from(read.contains(&None));
        }
    }
    let by_kind = |n: [usize; KINDS]| Boundary::KINDS.into_iter().zip(n).collect();
    Counts {
        fds: fds
            .into_iter()
            .map(|((runtime, id, kind), n)| (runtime.into(), id.into(), kind.into(), n))
            .collect(),
        shared: shared.into_iter().collect(),
        crossings: by_kind(crossings),
        crossings_undecided: by_kind(undecided),
        per_reader,
    }
}

/// The one-sided pipes and FIFOs counted by the side nobody holds: ("pipe", "reader",
/// n) is n pipes with a write end held and no read end; every pair present.
fn unpaired(one_sided: &[Channel]) -> Vec<(&'static str, &'static str, usize)> {
    let missing = |side: &str| if side == READ { "reader" } else { "writer" };
    let mut out: Vec<(&'static str, &'static str, usize)> = [PIPE, FIFO]
        .into_iter()
        .flat_map(|kind| [(kind, missing(READ), 0), (kind, missing(WRITE), 0)])
        .collect();
    for c in one_sided {
        for (side, on) in &c.ends {
            if !on.is_empty() {
                continue;
            }
            let wanted = (c.kind, missing(side));
            if let Some(row) = out.iter_mut().find(|r| (r.0, r.1) == wanted) {
                row.2 += 1;
            }
        }
    }
    out
}

/// Registrations by status, open, closed and reused each present.
fn epoll_counts(statuses: &[Status]) -> Vec<(&'static str, usize)> {
    [Status::Open, Status::Closed, Status::Reused]
        .into_iter()
        .map(|s| (s.as_str(), statuses.iter().filter(|&&t| t == s).count()))
        .collect()
}

/// The read fd tables (reader first) without the processes the scan skipped in the
/// end; a table whose reader was skipped goes whole, as the scan counts it.
fn kept_tables(read_tables: &[Vec<Pid>], skipped: &[(Pid, String)]) -> Vec<Vec<Pid>> {
    let skipped: HashSet<Pid> = skipped.iter().map(|(p, _)| *p).collect();
    read_tables
        .iter()
        .filter(|t| t.first().is_some_and(|r| !skipped.contains(r)))
        .map(|t| t.iter().copied().filter(|p| !skipped.contains(p)).collect())
        .collect()
}

/// (pid, command name (`None` once gone), fds, fds on a description held by two
/// processes or more).
pub type ProcessRow = (Pid, Option<Vec<u8>>, usize, usize);

/// What one census found.
#[derive(Debug, Clone, Default)]
pub struct CensusReport {
    pub processes_read: usize,
    /// (pid, reason), ascending, as the scan's.
    pub skipped: Vec<(Pid, String)>,
    /// Fds no exact method could decide (in no description, counted nowhere else).
    pub undecided: usize,
    pub counts: Counts,
    /// (kind, missing side, n), as `unpaired` gives them.
    pub unpaired: Vec<(&'static str, &'static str, usize)>,
    /// Registrations by status, as `epoll_counts` gives them.
    pub epoll: Vec<(&'static str, usize)>,
    /// (pid, reason) of each process whose epoll sets could not be read, ascending.
    pub epoll_unread: Vec<(Pid, String)>,
    /// With `per_process`: (pid, command, fds, fds on a description held by two
    /// processes or more) of each reader, ascending.
    pub per_process: Option<Vec<ProcessRow>>,
    /// (name, calls): see `syscalls`.
    pub syscalls: Vec<(&'static str, u64)>,
}

/// The census of `pids` (distinct, ascending) in one pass.
pub fn census(
    pids: &[Pid],
    per_process: bool,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<CensusReport, Failure> {
    let opts = ScanOptions {
        include_unshared: true,
        allow_pidfd_getfd: false,
        boundary: None,
        ipc: true,
    };
    let mut read_tables: Vec<Vec<Pid>> = Vec::new();
    let mut values: HashMap<Pid, Values> = HashMap::default();
    let mut read_values = |tables: &[Vec<Pid>], stop: &mut dyn FnMut() -> bool| {
        let every: Vec<Pid> = tables.iter().flatten().copied().collect();
        let read = map_chunks(
            &every,
            |chunk| chunk.iter().map(|&p| values_of(p)).collect(),
            stop,
        )?;
        values = every.into_iter().zip(read).collect();
        read_tables = tables.to_vec();
        Ok(())
    };
    let report = scan_with(
        pids,
        opts,
        None,
        &mut |_, _| false,
        &mut *interrupted,
        Some(&mut read_values),
    )?;
    let tables = kept_tables(&read_tables, &report.skipped);
    let seen: Vec<Seen> = report
        .descriptions
        .iter()
        .map(|d| Seen {
            kind: kind_of(&d.described),
            members: d.members.clone(),
        })
        .collect();
    let counts = count(&seen, &tables, &values);
    let (epoll, epoll_unread, tfd_calls) = epoll_of(&seen, interrupted)?;
    let per_process = per_process.then(|| {
        counts
            .per_reader
            .iter()
            .map(|(&pid, &(fds, shared))| {
                let name = report
                    .commands
                    .get(&pid)
                    .cloned()
                    .unwrap_or_else(|| super::command(pid));
                (pid, name, fds, shared)
            })
            .collect()
    });
    Ok(CensusReport {
        processes_read: report.processes_read,
        skipped: report.skipped,
        undecided: report.undecided.len(),
        unpaired: unpaired(&report.one_sided),
        counts,
        epoll,
        epoll_unread,
        per_process,
        syscalls: vec![
            ("engine_key", report.stats.keys),
            ("engine_same", report.stats.sames),
            ("engine_compare", report.stats.compares),
            ("kcmp_epoll_tfd", tfd_calls),
        ],
    })
}

/// Registrations by status over the epoll sets of every reader holding an epoll fd,
/// the readers whose sets could not be read, and the `KCMP_EPOLL_TFD` calls made.
type EpollCensus = (Vec<(&'static str, usize)>, Vec<(Pid, String)>, u64);

fn epoll_of(seen: &[Seen], interrupted: &mut dyn FnMut() -> bool) -> Result<EpollCensus, Failure> {
    let mut holders: Vec<Pid> = seen
        .iter()
        .filter(|d| d.kind == EVENTPOLL)
        .flat_map(|d| d.members.iter().map(|&(pid, _)| pid))
        .collect();
    holders.sort_unstable();
    holders.dedup();
    let mut statuses = Vec::new();
    let mut unread = Vec::new();
    let mut calls = 0;
    for pid in holders {
        match epoll_sets(pid, None, &[], &mut *interrupted) {
            Ok(found) => {
                calls += found.calls;
                statuses.extend(
                    found
                        .sets
                        .iter()
                        .flat_map(|(_, regs)| regs.iter().map(|r| r.status)),
                );
            }
            Err(Failure::Interrupted) => return Err(Failure::Interrupted),
            // Read a moment ago: absent now means it exited since.
            Err(failure) => unread.push((pid, skip_reason(&failure, EXITED))),
        }
    }
    Ok((epoll_counts(&statuses), unread, calls))
}

#[cfg(test)]
mod tests;
