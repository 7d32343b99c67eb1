//! `holders()` as one pass: every (pid, fd) among the processes asked about that
//! refers to the open file description of one target fd, with why each process that
//! could not be read was skipped, and what the target shows.
//!
//! Processes sharing an fd table are read once, under the smallest pid. With kcmp
//! each candidate fd costs one kcmp against the target (`crate::holders`); without
//! it, the fds on the target's inode are grouped by the batch's exact fallbacks and
//! what they cannot decide is reported undecided, never guessed.

use rustc_hash::FxHashMap as HashMap;

use super::procfs::live_task_of;
use super::procfs::{list_pids, show, Shown};
use super::scan::{fd_tables, skip_reason, Progress, EXITED, NO_SUCH_PROCESS};
use super::{command, file_key, why_unreadable, Pinned};
use crate::engine::{GroupOrder, Missing};
use crate::error::Failure;
use crate::oracle::{classify_files, FileOptions, FileRef};
use crate::support;
use crate::sys::Pid;

/// Processes per step of the kcmp search: progress is reported, and Ctrl-C noticed,
/// between steps.
const CHUNK: usize = 64;

/// Classifications the fallback search runs at most while candidates keep going away.
const LADDER_ATTEMPTS: usize = 64;

/// What `holders()` found.
#[derive(Debug, Default)]
pub struct HoldersReport {
    /// The (pid, fd) asked about.
    pub target: FileRef,
    /// The (pid, fd) pairs referring to the target's description, ascending.
    pub holders: Vec<FileRef>,
    /// The command name of each holder's process (`None` once gone).
    pub commands: Vec<(Pid, Option<Vec<u8>>)>,
    /// What the target shows.
    pub shown: Shown,
    /// (pid, reason), ascending.
    pub skipped: Vec<(Pid, String)>,
    pub processes_read: usize,
    pub fds_compared: u64,
    /// Fds on the target's inode whose relation to it no exact method could decide.
    pub undecided: Vec<FileRef>,
    pub fd_table_shared: Vec<Vec<Pid>>,
}

/// The holders of `target`'s description among `pids` (`None`: every process).
pub fn holders(
    target: FileRef,
    pids: Option<&[Pid]>,
    allow_pidfd_getfd: bool,
    progress: Progress<'_>,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<HoldersReport, Failure> {
    // The target is checked before any other process is read: the caller's mistakes
    // are the errors of a compare of the target with itself.
    crate::api::same_file(target, target, allow_pidfd_getfd)?;
    // A process whose main thread exited (pthread_exit) is read through a live
    // thread of it, as the scan reads it.
    let mut wanted: Vec<Pid> = match pids {
        Some(p) => p.to_vec(),
        None => list_pids()?,
    }
    .into_iter()
    .map(live_task_of)
    .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut skipped: HashMap<Pid, String> = HashMap::default();
    let tables = fd_tables(&wanted, NO_SUCH_PROCESS, &mut skipped, interrupted)?;
    let readers: Vec<Pid> = tables.iter().filter_map(|t| t.first().copied()).collect();
    let total = wanted.len();
    let (mut found, fds_compared, undecided) = if support::kcmp_usable() {
        let (found, compared) = by_kcmp(
            target,
            &readers,
            &mut skipped,
            (total, progress),
            interrupted,
        )?;
        (found, compared, Vec::new())
    } else {
        by_ladder(
            target,
            &readers,
            &mut skipped,
            (allow_pidfd_getfd, total, progress),
            interrupted,
        )?
    };
    found.sort_unstable();
    let mut commands: Vec<(Pid, Option<Vec<u8>>)> = Vec::new();
    for &(pid, _) in &found {
        if commands.last().map(|c| c.0) != Some(pid) {
            commands.push((pid, command(pid)));
        }
    }
    let read: Vec<Vec<Pid>> = tables
        .into_iter()
        .filter(|t| t.first().is_some_and(|r| !skipped.contains_key(r)))
        .collect();
    let mut skipped: Vec<(Pid, String)> = skipped.into_iter().collect();
    skipped.sort_unstable();
    Ok(HoldersReport {
        target,
        holders: found,
        commands,
        shown: show(target),
        skipped,
        processes_read: read.iter().map(Vec::len).sum(),
        fds_compared,
        undecided,
        fd_table_shared: read.into_iter().filter(|t| t.len() > 1).collect(),
    })
}

/// One kcmp per candidate fd, `CHUNK` processes per thread and step: the readers of
/// a step are split among `pool::threads()` threads, each its own search (its own
/// pins, the target checked at its end), and merged in order.
fn by_kcmp(
    target: FileRef,
    readers: &[Pid],
    skipped: &mut HashMap<Pid, String>,
    (total, progress): (usize, Progress<'_>),
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<(Vec<FileRef>, u64), Failure> {
    let mut found = Vec::new();
    let mut compared = 0;
    // Sharers of a reader's fd table and processes skipped already need no step.
    let mut done = total.saturating_sub(readers.len());
    let threads = crate::pool::threads().max(1);
    for step in readers.chunks(CHUNK * threads) {
        if interrupted() {
            return Err(Failure::Interrupted);
        }
        for part in search_in_parallel(target, step, threads) {
            let part = part?;
            found.extend(part.holders);
            compared += part.fds_compared;
            for (pid, failure) in &part.skipped {
                skipped.insert(*pid, skip_reason(failure, NO_SUCH_PROCESS));
            }
        }
        done += step.len();
        if progress(done, total) {
            return Err(Failure::Interrupted);
        }
    }
    Ok((found, compared))
}

/// The kcmp search over `readers` split into up to `threads` parts, this thread taking
/// the first; a part whose thread cannot be started or is lost runs here too.
fn search_in_parallel(
    target: FileRef,
    readers: &[Pid],
    threads: usize,
) -> Vec<Result<crate::holders::Found, Failure>> {
    let search = |part: &[Pid]| crate::holders::holders(target, part, || false);
    let parts: Vec<&[Pid]> = readers
        .chunks(readers.len().div_ceil(threads).max(1))
        .collect();
    let Some((&first, rest)) = parts.split_first() else {
        return Vec::new();
    };
    std::thread::scope(|scope| {
        let helpers: Vec<_> = rest
            .iter()
            .map(|&part| {
                std::thread::Builder::new()
                    .spawn_scoped(scope, move || search(part))
                    .ok()
            })
            .collect();
        let mut out = vec![search(first)];
        for (helper, &part) in helpers.into_iter().zip(rest) {
            out.push(match helper.map(std::thread::ScopedJoinHandle::join) {
                Some(Ok(found)) => found,
                _ => search(part),
            });
        }
        out
    })
}

/// Without kcmp: the fds on the target's inode, grouped by the batch's exact
/// fallbacks in raise mode. A candidate that exits during a classification is
/// skipped as exited and the classification run again without it, an fd closed
/// since the listing is left out the same way: nothing is dropped silently. The
/// holders are the target's group as the fallbacks decided it (the asker's own dups
/// included even where the target is undecided against another process's fd).
fn by_ladder(
    target: FileRef,
    readers: &[Pid],
    skipped: &mut HashMap<Pid, String>,
    (allow_pidfd_getfd, total, progress): (bool, usize, Progress<'_>),
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<(Vec<FileRef>, u64, Vec<FileRef>), Failure> {
    let key = file_key(target.0, target.1).ok_or_else(|| why_unreadable(target.0, target.1))?;
    let (pins, unpinned) = Pinned::skipping(readers)?;
    for (pid, failure) in &unpinned {
        skipped.insert(*pid, skip_reason(failure, NO_SUCH_PROCESS));
    }
    let mut candidates: Vec<FileRef> = Vec::new();
    let before = total.saturating_sub(readers.len());
    for (i, &reader) in readers.iter().enumerate() {
        if i % CHUNK == 0 && i > 0 && progress(before + i, total) {
            return Err(Failure::Interrupted);
        }
        if skipped.contains_key(&reader) {
            continue;
        }
        match pins.list(reader) {
            Ok(fds) => candidates.extend(
                fds.into_iter()
                    .filter(|&fd| file_key(reader, fd) == Some(key))
                    .map(|fd| (reader, fd)),
            ),
            Err(f) => {
                skipped.insert(reader, skip_reason(&f, NO_SUCH_PROCESS));
            }
        }
    }
    // Every process listed: the classification of the candidates follows.
    if progress(total, total) {
        return Err(Failure::Interrupted);
    }
    let compared = candidates.len() as u64;
    let mut refs: Vec<FileRef> = std::iter::once(target)
        .chain(candidates.iter().copied().filter(|&c| c != target))
        .collect();
    let opts = FileOptions {
        order: GroupOrder::Fd,
        missing: Missing::Raise,
        allow_pidfd_getfd,
        report_undecided: true,
    };
    for _ in 0..LADDER_ATTEMPTS {
        let found = match classify_files(&refs, opts, &mut *interrupted) {
            Ok(found) => found,
            Err(failure) => {
                match (failure.gone_kind().is_some(), failure.pid(), &failure) {
                    (_, Some(pid), _) if pid == target.0 => return Err(failure),
                    (true, Some(pid), _) => {
                        skipped.insert(pid, EXITED.to_string());
                        refs.retain(|r| r.0 != pid);
                    }
                    (_, _, Failure::NotOpen { pid, fd }) => {
                        let gone = (*pid, *fd);
                        refs.retain(|&r| r != gone);
                    }
                    _ => return Err(failure),
                }
                continue;
            }
        };
        for pid in pins.vanished()? {
            if pid == target.0 {
                return Err(Failure::Exited { pid });
            }
            skipped.insert(pid, EXITED.to_string());
        }
        let kept: rustc_hash::FxHashSet<FileRef> = refs
            .iter()
            .copied()
            .filter(|r| !skipped.contains_key(&r.0))
            .collect();
        let mine: Vec<FileRef> = found
            .groups
            .into_iter()
            .find(|g| g.contains(&target))
            .unwrap_or_else(|| vec![target]);
        let holders = candidates
            .iter()
            .copied()
            .filter(|r| mine.contains(r) && kept.contains(r))
            .collect();
        let unknown = found
            .undecided
            .into_iter()
            .filter(|r| !mine.contains(r) && kept.contains(r))
            .collect();
        return Ok((holders, compared, unknown));
    }
    Err(Failure::Os {
        errno: libc::EAGAIN,
        pid: None,
        fd: None,
        detail: format!(
            "the processes searched kept changing ({LADDER_ATTEMPTS} attempts); try again"
        ),
    })
}
