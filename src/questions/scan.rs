//! The scan in one native pass: which open file descriptions many processes share.
//!
//! Every process is pinned before any is read; then the processes are grouped by fd
//! table, one per table is listed, each read process's boundary value is read (when
//! asked), every fd is classified in one batch, and the pins are asked which
//! processes vanished (those are skipped, their fds in no description). Last, the
//! descriptions reported are described (target, modes, type) in parallel threads and
//! each member's command read once per process.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use super::{command, fd_path, Pinned};
use crate::engine::{GroupOrder, Missing};
use crate::error::{self, Failure};
use crate::liveness;
use crate::oracle::{classify_files_sharded, classify_tasks, FileOptions, FileRef};
use crate::pool::map_chunks;
use crate::sys::{self, Pid};

/// `Skipped` reasons, as the Python result types say them.
pub const NO_SUCH_PROCESS: &str = "no such process";
pub const EXITED: &str = "exited";
pub const ZOMBIE: &str = "zombie";
pub const PERMISSION_DENIED: &str = "permission denied";
pub const OWNER_EXITED: &str = "fd table owner exited";

/// Which side of a boundary a process is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    /// A namespace kind: the link text of /proc/PID/ns/KIND.
    Namespace(&'static str),
    /// The process's cgroup (the `0::` line, or the v1 lines joined with `;`).
    Cgroup,
}

impl Boundary {
    /// The kinds `scan(boundary=...)` takes, in the order messages list them.
    pub const KINDS: [&'static str; 7] = ["pid", "mnt", "net", "user", "ipc", "uts", "cgroup"];

    pub fn from_name(name: &str) -> Option<Boundary> {
        match name {
            "cgroup" => Some(Boundary::Cgroup),
            _ => Self::KINDS
                .iter()
                .find(|&&k| k == name)
                .map(|&k| Boundary::Namespace(k)),
        }
    }

    /// The value of `pid`, or the errno and why it could not be read.
    pub(crate) fn value(self, pid: Pid) -> Result<Vec<u8>, (i32, String)> {
        let errno_text = |e: sys::Errno| (e.0, error::errno_text(e.0));
        match self {
            Boundary::Namespace(kind) => {
                let path = std::ffi::CString::new(format!("/proc/{pid}/ns/{kind}"))
                    .map_err(|_| (libc::EINVAL, error::errno_text(libc::EINVAL)))?;
                sys::readlinkat(libc::AT_FDCWD, &path).map_err(errno_text)
            }
            Boundary::Cgroup => {
                let text = cgroup_text(pid)?;
                cgroup_value(&text).ok_or_else(|| {
                    (
                        libc::ENODATA,
                        format!("no cgroup line in /proc/{pid}/cgroup"),
                    )
                })
            }
        }
    }
}

/// The text of /proc/PID/cgroup, or the errno and why it could not be read.
pub(crate) fn cgroup_text(pid: Pid) -> Result<Vec<u8>, (i32, String)> {
    let path = std::ffi::CString::new(format!("/proc/{pid}/cgroup"))
        .map_err(|_| (libc::EINVAL, error::errno_text(libc::EINVAL)))?;
    sys::read_small_file(&path).map_err(|e| (e.0, error::errno_text(e.0)))
}

/// The cgroup value of a /proc/PID/cgroup text: the path of its `0::` line, else every
/// v1 line without its hierarchy number, joined with `;`; `None` without any line.
pub fn cgroup_value(text: &[u8]) -> Option<Vec<u8>> {
    let mut v1: Vec<&[u8]> = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (number, rest) = (&line[..colon], &line[colon + 1..]);
        if number == b"0" && rest.first() == Some(&b':') {
            return Some(rest[1..].to_vec());
        }
        v1.push(rest);
    }
    let joined = v1.join(&b';');
    (!joined.is_empty()).then_some(joined)
}

/// What the scan is asked.
#[derive(Debug, Clone, Copy)]
pub struct ScanOptions {
    pub include_unshared: bool,
    pub allow_pidfd_getfd: bool,
    pub boundary: Option<Boundary>,
    /// The channels between processes too (`channels`): pipes, FIFOs, Unix socket
    /// pairs, ptys, with the descriptions on their ends reported, shared or not.
    pub ipc: bool,
}

/// What /proc shows of one fd: its target (readlink), the st_mode of the link (its
/// permission bits are the open mode) and, where the target does not name the type,
/// the st_mode of the file. `None` for what could not be read.
pub type Described = (Option<Vec<u8>>, Option<u32>, Option<u32>);

/// One description reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// Its members, ascending.
    pub members: Vec<FileRef>,
    /// What /proc shows of the first member whose fd was still there.
    pub described: Described,
    /// With a boundary: the distinct values of its holders (fd-table sharers
    /// included), ascending.
    pub boundaries: Vec<Vec<u8>>,
}

/// What one scan found.
#[derive(Debug, Default)]
pub struct ScanReport {
    pub descriptions: Vec<Description>,
    /// Per pid of a member: its command name (`None` once gone).
    pub commands: HashMap<Pid, Option<Vec<u8>>>,
    /// Per reader, with a boundary: its own value.
    pub boundary_of: HashMap<Pid, Vec<u8>>,
    /// (pid, reason), ascending.
    pub skipped: Vec<(Pid, String)>,
    pub processes_read: usize,
    pub fds_classified: usize,
    pub undecided: Vec<FileRef>,
    pub fd_table_shared: Vec<Vec<Pid>>,
    /// Whether a boundary was asked (members then carry one).
    pub with_boundary: bool,
    /// The classification's oracle calls (the fd tables' and the fds').
    pub stats: crate::engine::Stats,
    /// With `scan_files`: each description's file (st_dev, st_ino) and the file
    /// offset of its first member readable (`pos` of its fdinfo), in order.
    pub keys: Vec<sys::FileKey>,
    pub offsets: Vec<Option<u64>>,
    /// With `scan_matching`: each description's file as stat'ed (type, device number).
    pub files: Vec<sys::FileStat>,
    /// With `ipc`: the channels between processes, by index into `descriptions`, and
    /// what could not be read of them.
    pub with_channels: bool,
    pub channels: Vec<super::channels::Channel>,
    pub channel_notes: Vec<String>,
    /// With `ipc`: the pipes and FIFOs whose descriptions among the processes read
    /// are all on one side (one side's list empty), indices as `channels`'.
    pub one_sided: Vec<super::channels::Channel>,
}

/// Which files a scan keeps: those with one of `keys` (st_dev, st_ino), and the
/// character devices numbered one of `rdevs` (one pty in every path and mount to it).
#[derive(Debug, Clone, Default)]
pub struct FileFilter {
    pub keys: Vec<sys::FileKey>,
    pub rdevs: Vec<u64>,
}

impl FileFilter {
    fn keeps(&self, file: &sys::FileStat) -> bool {
        self.keys.contains(&file.key)
            || (file.mode & libc::S_IFMT == libc::S_IFCHR && self.rdevs.contains(&file.rdev))
    }
}

/// Why a process could not be read, as `Skipped.reason` says it; `absent` is what a
/// process that was not there counts as at this step. The one mapping every
/// question's report uses.
pub fn skip_reason(failure: &Failure, absent: &str) -> String {
    match failure {
        Failure::NoProcess { .. } => absent.to_string(),
        Failure::Zombie { .. } => ZOMBIE.to_string(),
        Failure::Exited { .. } => EXITED.to_string(),
        Failure::Denied { .. } => PERMISSION_DENIED.to_string(),
        other => format!("error: {}", other.message()),
    }
}

/// Progress between processes: `(done, total)`; true stops the scan (Ctrl-C, or the
/// callback raised).
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize) -> bool;

/// The scan of `pids` (distinct, ascending), as `kcmp_rs.scan()` reports it.
pub fn scan(
    pids: &[Pid],
    opts: ScanOptions,
    progress: Progress<'_>,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<ScanReport, Failure> {
    scan_with(pids, opts, None, progress, interrupted, None)
}

/// The scan of `pids` for the fds on the files `keys` (st_dev, st_ino) alone: every
/// description of those files, each with its file and offset (`kcmp_rs.who()`). An
/// fd is matched by the file it refers to when it is listed; one replaced by another
/// file before it is classified is left out (the description's members must all be
/// on the file they were matched to).
pub fn scan_files(
    pids: &[Pid],
    keys: &[sys::FileKey],
    allow_pidfd_getfd: bool,
    progress: Progress<'_>,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<ScanReport, Failure> {
    let filter = FileFilter {
        keys: keys.to_vec(),
        rdevs: Vec::new(),
    };
    scan_matching(pids, &filter, allow_pidfd_getfd, progress, interrupted)
}

/// The scan of `pids` for the fds on the files `filter` keeps: every description of
/// them, each with its file (`files`, `keys`) and offset.
pub fn scan_matching(
    pids: &[Pid],
    filter: &FileFilter,
    allow_pidfd_getfd: bool,
    progress: Progress<'_>,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<ScanReport, Failure> {
    let opts = ScanOptions {
        include_unshared: true,
        allow_pidfd_getfd,
        boundary: None,
        ipc: false,
    };
    scan_with(pids, opts, Some(filter), progress, interrupted, None)
}

/// The processes a pass reads: pinned, grouped by fd table, and those that could not
/// be, with why.
pub(super) struct Readable {
    /// The pids asked, each through its live task, sorted, each once.
    pub pids: Vec<Pid>,
    pub pins: Pinned,
    pub skipped: HashMap<Pid, String>,
    /// The pinned processes by fd table, each table's smallest pid first.
    pub tables: Vec<Vec<Pid>>,
}

/// Pins `pids` and groups the pinned by fd table: the start every pass over many
/// processes shares (the scan, the escape audit).
pub(super) fn pin_by_fd_table(
    pids: &[Pid],
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<Readable, Failure> {
    // A process whose main thread exited (pthread_exit) shows as a zombie under its
    // pid while its other threads run: it is read through one of them.
    let mut pids: Vec<Pid> = pids
        .iter()
        .map(|&pid| super::procfs::live_task_of(pid))
        .collect();
    pids.sort_unstable();
    pids.dedup();
    let (pins, unpinned) = Pinned::skipping(&pids)?;
    let mut skipped: HashMap<Pid, String> = unpinned
        .iter()
        .map(|(p, f)| (*p, skip_reason(f, NO_SUCH_PROCESS)))
        .collect();
    let pinned: Vec<Pid> = pids
        .iter()
        .copied()
        .filter(|p| !skipped.contains_key(p))
        .collect();
    let tables = fd_tables(&pinned, EXITED, &mut skipped, interrupted)?;
    Ok(Readable {
        pids,
        pins,
        skipped,
        tables,
    })
}

/// What a pass built on the scan reads of the read fd tables (reader first) while
/// every process is still pinned, after their listing and before the classification.
pub(super) type WhilePinned<'a> =
    &'a mut dyn FnMut(&[Vec<Pid>], &mut dyn FnMut() -> bool) -> Result<(), Failure>;

pub(super) fn scan_with(
    pids: &[Pid],
    opts: ScanOptions,
    only: Option<&FileFilter>,
    progress: Progress<'_>,
    interrupted: &mut dyn FnMut() -> bool,
    while_pinned: Option<WhilePinned<'_>>,
) -> Result<ScanReport, Failure> {
    let Readable {
        pids,
        pins,
        mut skipped,
        tables,
    } = pin_by_fd_table(pids, interrupted)?;
    let pids = &pids[..];
    let (mut refs, mut read_tables) = list_fds(
        &pins,
        &tables,
        &mut skipped,
        (pids.len(), progress),
        interrupted,
    )?;
    let mut values: HashMap<Pid, Vec<Vec<u8>>> = HashMap::default();
    if let Some(kind) = opts.boundary {
        (refs, read_tables, values) =
            read_boundaries(|pid| kind.value(pid), refs, read_tables, &mut skipped);
    }
    if let Some(read) = while_pinned {
        read(&read_tables, &mut *interrupted)?;
    }
    let mut matched: HashMap<FileRef, sys::FileStat> = HashMap::default();
    if let Some(only) = only {
        (refs, matched) = on_files(refs, only, interrupted)?;
    }
    // Sharded by inode over the cores this process may run on (sched_getaffinity):
    // safe here because every process is pinned from before its listing to the end.
    let threads = crate::pool::threads();
    let found = classify_files_sharded(
        &refs,
        FileOptions {
            order: GroupOrder::Fd,
            missing: Missing::Skip,
            allow_pidfd_getfd: opts.allow_pidfd_getfd,
            report_undecided: true,
        },
        threads,
        &mut *interrupted,
    )?;
    let gone: HashSet<Pid> = pins.vanished()?.into_iter().collect();
    let tally = tally_readers(&read_tables, &gone, &mut skipped);
    let undecided_set: HashSet<FileRef> = found.undecided.iter().copied().collect();
    let groups: Vec<Vec<FileRef>> = found
        .groups
        .into_iter()
        .map(|g| {
            g.into_iter()
                .filter(|r| tally.readers.contains(&r.0) && !undecided_set.contains(r))
                .collect::<Vec<_>>()
        })
        .filter(|g| !g.is_empty())
        .filter(|g| only.is_none() || one_file(g, &matched).is_some())
        .collect();
    let mut undecided: Vec<FileRef> = found
        .undecided
        .into_iter()
        .filter(|r| tally.readers.contains(&r.0))
        .collect();
    undecided.sort_unstable();
    let fds_classified = groups.iter().map(Vec::len).sum();
    // With ipc every description is described: a pipe's ends are often one fd each.
    let reported: Vec<Vec<FileRef>> = groups
        .into_iter()
        .filter(|g| opts.include_unshared || opts.ipc || g.len() > 1)
        .collect();
    let files: Vec<sys::FileStat> = reported
        .iter()
        .filter_map(|g| one_file(g, &matched))
        .collect();
    let keys = files.iter().map(|f| f.key).collect();
    let offsets = if only.is_some() {
        let firsts: Vec<FileRef> = reported.iter().filter_map(|g| g.first().copied()).collect();
        map_chunks(
            &firsts,
            |chunk| {
                chunk
                    .iter()
                    .map(|&(p, f)| super::procfs::offset(p, f))
                    .collect()
            },
            interrupted,
        )?
    } else {
        Vec::new()
    };
    let mut descriptions = describe_groups(reported, &values, interrupted)?;
    let (channels, channel_notes, one_sided) = if opts.ipc {
        let mut readers: Vec<Pid> = tally.readers.iter().copied().collect();
        readers.sort_unstable();
        let found = super::channels::find(&descriptions, &readers);
        // Indices into every description: only a scan of them all keeps them true.
        let one_sided = if opts.include_unshared {
            found.one_sided
        } else {
            Vec::new()
        };
        let channels = keep_reported(&mut descriptions, found.channels, opts.include_unshared);
        (channels, found.notes, one_sided)
    } else {
        (Vec::new(), Vec::new(), Vec::new())
    };
    let mut commands = HashMap::default();
    for d in &descriptions {
        for &(pid, _) in &d.members {
            commands.entry(pid).or_insert_with(|| command(pid));
        }
    }
    let mut skipped: Vec<(Pid, String)> = skipped.into_iter().collect();
    skipped.sort_unstable();
    let boundary_of = values
        .into_iter()
        .filter_map(|(reader, vals)| vals.into_iter().next().map(|v| (reader, v)))
        .collect();
    Ok(ScanReport {
        descriptions,
        commands,
        boundary_of,
        skipped,
        processes_read: tally.processes_read,
        fds_classified,
        undecided,
        fd_table_shared: tally.fd_table_shared,
        with_boundary: opts.boundary.is_some(),
        stats: found.stats,
        keys,
        offsets,
        files,
        with_channels: opts.ipc,
        channels,
        channel_notes,
        one_sided,
    })
}

/// Keeps the descriptions a scan with channels reports: the shared ones, those on a
/// channel's end, or every one (`all`); the channels' indices follow.
fn keep_reported(
    descriptions: &mut Vec<Description>,
    mut channels: Vec<super::channels::Channel>,
    all: bool,
) -> Vec<super::channels::Channel> {
    let mut kept: Vec<bool> = descriptions
        .iter()
        .map(|d| all || d.members.len() > 1)
        .collect();
    for (_, on) in channels.iter().flat_map(|c| c.ends.iter()) {
        for &i in on {
            if let Some(k) = kept.get_mut(i) {
                *k = true;
            }
        }
    }
    let mut index = Vec::with_capacity(kept.len());
    let mut next = 0;
    for &k in &kept {
        index.push(next);
        next += usize::from(k);
    }
    let mut marks = kept.iter();
    descriptions.retain(|_| marks.next().copied().unwrap_or(false));
    for (_, on) in channels.iter_mut().flat_map(|c| c.ends.iter_mut()) {
        for i in on.iter_mut() {
            *i = index.get(*i).copied().unwrap_or(*i);
        }
    }
    channels
}

/// The refs on the files `only` keeps, stat'ed in parallel, with the file each was
/// matched to.
fn on_files(
    refs: Vec<FileRef>,
    only: &FileFilter,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<(Vec<FileRef>, HashMap<FileRef, sys::FileStat>), Failure> {
    let files = map_chunks(
        &refs,
        |chunk| chunk.iter().map(|&(p, f)| super::file_stat(p, f)).collect(),
        interrupted,
    )?;
    let matched: HashMap<FileRef, sys::FileStat> = refs
        .into_iter()
        .zip(files)
        .filter_map(|(r, f)| f.filter(|f| only.keeps(f)).map(|f| (r, f)))
        .collect();
    let mut kept: Vec<FileRef> = matched.keys().copied().collect();
    kept.sort_unstable();
    Ok((kept, matched))
}

/// The file every member of `group` was matched to; `None` when they disagree (an fd
/// replaced by another file between its match and its classification).
fn one_file(group: &[FileRef], matched: &HashMap<FileRef, sys::FileStat>) -> Option<sys::FileStat> {
    let first = matched.get(group.first()?)?;
    group
        .iter()
        .all(|r| matched.get(r) == Some(first))
        .then_some(*first)
}

/// The pids grouped by fd table (each ascending, tables by smallest pid); pids that
/// cannot be compared go to `skipped`, one found absent with the reason `absent`
/// (the scan pinned its pids first: for it, absent means exited).
pub(crate) fn fd_tables(
    pids: &[Pid],
    absent: &str,
    skipped: &mut HashMap<Pid, String>,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<Vec<Vec<Pid>>, Failure> {
    let alone = |pids: &[Pid]| pids.iter().map(|&p| vec![p]).collect::<Vec<_>>();
    let groups = match classify_tasks(pids, sys::KCMP_FILES, Missing::Skip, &mut *interrupted) {
        Ok(groups) => groups,
        Err(Failure::Interrupted) => return Err(Failure::Interrupted),
        Err(Failure::Unavailable { .. }) => return Ok(alone(pids)), // cannot tell: read each
        Err(_) => {
            // Some process refuses comparison (another user's): find which, one call each.
            let mut allowed = Vec::new();
            for &pid in pids {
                match crate::ladder::kcmp_checked(pid, pid, sys::KCMP_FILES, 0, 0) {
                    Ok(_) => allowed.push(pid),
                    Err(Failure::Unavailable { .. }) => {
                        return Ok(alone(
                            &pids
                                .iter()
                                .copied()
                                .filter(|p| !skipped.contains_key(p))
                                .collect::<Vec<_>>(),
                        ));
                    }
                    Err(f) => {
                        skipped.insert(pid, skip_reason(&f, absent));
                    }
                }
            }
            match classify_tasks(&allowed, sys::KCMP_FILES, Missing::Skip, &mut *interrupted) {
                Ok(groups) => groups,
                Err(Failure::Interrupted) => return Err(Failure::Interrupted),
                // A race with a process that changed meanwhile: read each.
                Err(_) => return Ok(alone(&allowed)),
            }
        }
    };
    let mut tables: Vec<Vec<Pid>> = groups
        .into_iter()
        .map(|mut g| {
            g.sort_unstable();
            g
        })
        .collect();
    tables.sort_unstable();
    let seen: HashSet<Pid> = tables.iter().flatten().copied().collect();
    for &pid in pids {
        if !seen.contains(&pid) && !skipped.contains_key(&pid) {
            let reason = match liveness::alive(pid) {
                Err(Failure::Zombie { .. }) => ZOMBIE,
                Err(Failure::NoProcess { .. }) => absent,
                _ => EXITED,
            };
            skipped.insert(pid, reason.to_string());
        }
    }
    Ok(tables)
}

/// The fds of one process per fd table, and the tables read: the reader (the
/// smallest pid whose fds could be listed) first, then its sharers.
fn list_fds(
    pins: &Pinned,
    tables: &[Vec<Pid>],
    skipped: &mut HashMap<Pid, String>,
    (total, progress): (usize, Progress<'_>),
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<(Vec<FileRef>, Vec<Vec<Pid>>), Failure> {
    let mut refs = Vec::new();
    let mut read_tables = Vec::new();
    let mut done = skipped.len();
    for table in tables {
        if interrupted() {
            return Err(Failure::Interrupted);
        }
        for (i, &pid) in table.iter().enumerate() {
            match pins.list(pid) {
                Ok(fds) => {
                    refs.extend(fds.into_iter().map(|fd| (pid, fd)));
                    read_tables.push(table[i..].to_vec());
                    break;
                }
                // Pinned a moment ago: absent now means it exited since.
                Err(Failure::Interrupted) => return Err(Failure::Interrupted),
                Err(f) => {
                    skipped.insert(pid, skip_reason(&f, EXITED));
                }
            }
        }
        done += table.len();
        if progress(done, total) {
            return Err(Failure::Interrupted);
        }
    }
    if tables.is_empty() && total > 0 && progress(total, total) {
        return Err(Failure::Interrupted); // every process was gone before its turn
    }
    Ok((refs, read_tables))
}

/// Why a boundary value could not be read, as `Skipped.reason` says it.
fn boundary_reason(pid: Pid, (errno, text): (i32, String)) -> String {
    match error::dead_or_dying(pid) {
        Some(Failure::Zombie { .. }) => ZOMBIE.to_string(),
        Some(_) => EXITED.to_string(),
        None if matches!(errno, libc::EACCES | libc::EPERM) => PERMISSION_DENIED.to_string(),
        None if errno == libc::ENOENT && sys::proc_stat(pid).is_err() => EXITED.to_string(),
        None => format!("boundary unreadable: {text}"),
    }
}

type Boundaries = (Vec<FileRef>, Vec<Vec<Pid>>, HashMap<Pid, Vec<Vec<u8>>>);

/// Each read process's boundary value, before any fd is classified: a process whose
/// value cannot be read is skipped and its fds go to no description (an unread
/// reader takes its fd table's sharers along). Returns the refs and tables kept and,
/// per reader, its value followed by its sharers'.
fn read_boundaries(
    mut read: impl FnMut(Pid) -> Result<Vec<u8>, (i32, String)>,
    refs: Vec<FileRef>,
    read_tables: Vec<Vec<Pid>>,
    skipped: &mut HashMap<Pid, String>,
) -> Boundaries {
    let mut kept_tables = Vec::new();
    let mut values: HashMap<Pid, Vec<Vec<u8>>> = HashMap::default();
    for table in read_tables {
        let mut found = Vec::new();
        for &pid in &table {
            match read(pid) {
                Ok(v) => found.push(v),
                Err(e) => {
                    skipped.insert(pid, boundary_reason(pid, e));
                }
            }
        }
        let reader = table[0];
        if let Some(why) = skipped.get(&reader).cloned() {
            let gone = why == EXITED || why == ZOMBIE;
            for &pid in &table[1..] {
                skipped.entry(pid).or_insert_with(|| {
                    if gone {
                        OWNER_EXITED.to_string()
                    } else {
                        why.clone()
                    }
                });
            }
            continue;
        }
        kept_tables.push(
            table
                .iter()
                .copied()
                .filter(|p| !skipped.contains_key(p))
                .collect(),
        );
        values.insert(reader, found);
    }
    let refs = refs
        .into_iter()
        .filter(|r| values.contains_key(&r.0))
        .collect();
    (refs, kept_tables, values)
}

struct Tally {
    processes_read: usize,
    fd_table_shared: Vec<Vec<Pid>>,
    readers: HashSet<Pid>,
}

/// The read tables once `gone` (the pinned pids that exited, or were reused, during
/// the scan) are skipped: a reader's sharers with it (its fd table was read through
/// it), a sharer alone.
fn tally_readers(
    read_tables: &[Vec<Pid>],
    gone: &HashSet<Pid>,
    skipped: &mut HashMap<Pid, String>,
) -> Tally {
    for &pid in gone {
        if skipped.get(&pid).is_some_and(|r| r == NO_SUCH_PROCESS) {
            skipped.insert(pid, EXITED.to_string()); // pinned, so it was there: it exited
        }
    }
    let mut tally = Tally {
        processes_read: 0,
        fd_table_shared: Vec::new(),
        readers: HashSet::default(),
    };
    for table in read_tables {
        let reader = table[0];
        if gone.contains(&reader) {
            skipped.insert(reader, EXITED.to_string());
            for &pid in &table[1..] {
                let why = if gone.contains(&pid) {
                    EXITED
                } else {
                    OWNER_EXITED
                };
                skipped.insert(pid, why.to_string());
            }
            continue;
        }
        for &pid in &table[1..] {
            if gone.contains(&pid) {
                skipped.insert(pid, EXITED.to_string());
            }
        }
        let kept: Vec<Pid> = table
            .iter()
            .copied()
            .filter(|p| !gone.contains(p))
            .collect();
        tally.readers.insert(reader);
        tally.processes_read += kept.len();
        if kept.len() > 1 {
            tally.fd_table_shared.push(kept);
        }
    }
    tally
}

/// Targets whose start names the file type: no stat of the file is needed for them.
const TYPED_TARGETS: [&[u8]; 3] = [b"socket:[", b"pipe:[", b"anon_inode:"];

/// What /proc shows of one fd, read by path, holding no fd: nothing more is read
/// once the target is gone.
pub fn describe((pid, fd): FileRef) -> Described {
    let Some(path) = fd_path(pid, fd) else {
        return (None, None, None);
    };
    let Ok(target) = sys::readlinkat(libc::AT_FDCWD, &path) else {
        return (None, None, None);
    };
    let link = sys::fstatat_mode(libc::AT_FDCWD, &path, false).ok();
    let file = if TYPED_TARGETS.iter().any(|t| target.starts_with(t)) {
        None
    } else {
        sys::fstatat_mode(libc::AT_FDCWD, &path, true).ok()
    };
    (Some(target), link, file)
}

/// The descriptions of `groups`: each group's first member described in parallel
/// threads, the next members of a group whose first fd is gone in turn.
fn describe_groups(
    groups: Vec<Vec<FileRef>>,
    values: &HashMap<Pid, Vec<Vec<u8>>>,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<Vec<Description>, Failure> {
    let firsts: Vec<FileRef> = groups.iter().filter_map(|g| g.first().copied()).collect();
    let described = map_chunks(
        &firsts,
        |chunk| chunk.iter().map(|&r| describe(r)).collect(),
        interrupted,
    )?;
    Ok(groups
        .into_iter()
        .zip(described)
        .map(|(members, first)| {
            let described = if first.0.is_some() {
                first
            } else {
                members[1..]
                    .iter()
                    .map(|&r| describe(r))
                    .find(|d| d.0.is_some())
                    .unwrap_or((None, None, None))
            };
            let mut boundaries: Vec<Vec<u8>> = members
                .iter()
                .filter_map(|(pid, _)| values.get(pid))
                .flatten()
                .cloned()
                .collect();
            boundaries.sort_unstable();
            boundaries.dedup();
            Description {
                members,
                described,
                boundaries,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_reasons_follow_the_failure_s_kind() {
        for absent in [NO_SUCH_PROCESS, EXITED] {
            assert_eq!(skip_reason(&Failure::NoProcess { pid: 5 }, absent), absent);
            assert_eq!(skip_reason(&Failure::Zombie { pid: 5 }, absent), ZOMBIE);
            assert_eq!(skip_reason(&Failure::Exited { pid: 5 }, absent), EXITED);
            assert_eq!(
                skip_reason(&Failure::Denied { pid: 5 }, absent),
                PERMISSION_DENIED
            );
            let other = Failure::Os {
                errno: libc::EMFILE,
                pid: Some(5),
                fd: None,
                detail: "x".into(),
            };
            assert_eq!(skip_reason(&other, absent), "error: Too many open files: x");
        }
    }

    #[test]
    fn cgroup_values_v2_and_v1() {
        assert_eq!(
            cgroup_value(b"0::/user.slice/a\n"),
            Some(b"/user.slice/a".to_vec())
        );
        assert_eq!(
            cgroup_value(b"12:cpu,cpuacct:/a\n3:memory:/a\n"),
            Some(b"cpu,cpuacct:/a;memory:/a".to_vec())
        );
        assert_eq!(
            cgroup_value(b"1:name=systemd:/x\n0::/y\n"),
            Some(b"/y".to_vec()),
            "a hybrid host: the v2 line wins"
        );
        assert_eq!(cgroup_value(b""), None);
    }

    #[test]
    fn boundary_kinds_by_name() {
        assert_eq!(Boundary::from_name("net"), Some(Boundary::Namespace("net")));
        assert_eq!(Boundary::from_name("cgroup"), Some(Boundary::Cgroup));
        assert_eq!(Boundary::from_name("time"), None);
    }

    #[test]
    fn a_gone_reader_takes_its_sharers_along() {
        let mut skipped = HashMap::default();
        let gone: HashSet<Pid> = [10, 21].into_iter().collect();
        let t = tally_readers(&[vec![10, 11], vec![20, 21, 22]], &gone, &mut skipped);
        assert_eq!(skipped.get(&10).map(String::as_str), Some(EXITED));
        assert_eq!(skipped.get(&11).map(String::as_str), Some(OWNER_EXITED));
        assert_eq!(skipped.get(&21).map(String::as_str), Some(EXITED));
        assert_eq!(t.processes_read, 2);
        assert_eq!(t.fd_table_shared, vec![vec![20, 22]]);
        assert!(t.readers.contains(&20) && !t.readers.contains(&10));
    }

    #[test]
    fn each_value_is_read_once_and_an_unread_reader_takes_its_sharers() {
        // Our own pid fails: the reason then never depends on other processes' state.
        let me = sys::getpid();
        let mut reads = Vec::new();
        let mut skipped = HashMap::default();
        let tables = vec![vec![10, 11], vec![me, 21], vec![30]];
        let refs = vec![(10, 1), (me, 1), (30, 1)];
        let (refs, tables, values) = read_boundaries(
            |pid| {
                reads.push(pid);
                if pid == me {
                    Err((libc::ENODATA, "no cgroup line".into()))
                } else {
                    Ok(format!("v{}", pid / 10).into_bytes())
                }
            },
            refs,
            tables,
            &mut skipped,
        );
        reads.sort_unstable();
        let mut expected = vec![10, 11, 21, 30, me];
        expected.sort_unstable();
        assert_eq!(reads, expected);
        assert_eq!(refs, vec![(10, 1), (30, 1)]);
        assert_eq!(tables, vec![vec![10, 11], vec![30]]);
        assert_eq!(values[&10], vec![b"v1".to_vec(), b"v1".to_vec()]);
        assert_eq!(skipped[&me], "boundary unreadable: no cgroup line");
        assert_eq!(skipped[&21], "boundary unreadable: no cgroup line");
    }

    #[test]
    fn a_group_whose_first_fd_is_gone_is_named_by_the_next() {
        use std::os::fd::AsRawFd;
        use std::os::unix::net::UnixStream;
        let me = sys::getpid();
        let (a, _b) = UnixStream::pair().unwrap();
        let gone = (me, 999_999);
        let groups = vec![vec![gone, (me, a.as_raw_fd())], vec![gone]];
        let found = describe_groups(groups, &HashMap::default(), &mut || false).unwrap();
        let target = found[0].described.0.as_ref().unwrap();
        assert!(target.starts_with(b"socket:["), "{target:?}");
        assert_eq!(found[0].members, vec![gone, (me, a.as_raw_fd())]);
        assert_eq!(found[1].described, (None, None, None));
    }

    /// A forked child, killed and reaped when dropped (a failed assertion included).
    struct Bystander(Pid);

    impl Drop for Bystander {
        fn drop(&mut self) {
            sys::testing::kill(self.0);
            sys::testing::reap(self.0);
        }
    }

    #[test]
    fn a_scan_finds_a_socket_shared_by_a_dup() {
        use std::os::fd::AsRawFd;
        use std::os::unix::net::UnixStream;
        // A child's table, not this process's: other tests open and close fds here
        // while this one runs (scans of the caller's own table: tests/test_scan.py
        // and tests/test_concurrency.py, one test per process).
        let (a, b) = UnixStream::pair().unwrap();
        let dup = a.try_clone().unwrap();
        let (r, w, copy) = (a.as_raw_fd(), b.as_raw_fd(), dup.as_raw_fd());
        let child = Bystander(sys::testing::fork_holding(&[r, w, copy], 0));
        let pid = child.0;
        let opts = ScanOptions {
            include_unshared: false,
            allow_pidfd_getfd: false,
            boundary: Some(Boundary::Namespace("net")),
            ipc: false,
        };
        let report = scan(&[pid], opts, &mut |_, _| false, &mut || false).unwrap();
        assert_eq!(report.processes_read, 1);
        let d = report
            .descriptions
            .iter()
            .find(|d| d.members.contains(&(pid, r)))
            .unwrap();
        assert!(d.members.contains(&(pid, copy)));
        assert!(d.described.0.as_ref().unwrap().starts_with(b"socket:["));
        assert_eq!(d.boundaries.len(), 1);
        assert!(report.commands.contains_key(&pid));
        assert!(!report
            .descriptions
            .iter()
            .any(|d| d.members.contains(&(pid, w))));
        drop(child);
    }
}
