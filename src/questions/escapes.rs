//! The escape audit (`kcmp_rs.escapes()`): each fd, cwd and root of a process on a
//! mount its own mount namespace does not have, and each file outside its root; the
//! shape of CVE-2024-21626, a host directory's fd leaked into a container.
//!
//! A mount is told by its id: the fd's fdinfo `mnt_id`, statx's `STATX_MNT_ID` for
//! cwd and root (else the fdinfo of an O_PATH fd of ours to them), against the ids
//! of the namespace's mountinfo, read once per namespace through one of its
//! processes. Files on the kernel's internal mounts (pipes, sockets, anon inodes,
//! memfds, pidfds, namespaces) are in no mountinfo: their mount ids are measured on
//! files of each kind made here, never named by hand. Who else holds a finding's
//! description comes from the scan (`scan_matching`), exactly.

mod parse;

use std::ffi::CString;
use std::sync::OnceLock;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

pub use parse::{container_of, Mount};

use super::procfs::fdinfo_field;
use super::scan::{
    pin_by_fd_table, scan_matching, skip_reason, FileFilter, Readable, EXITED, OWNER_EXITED,
};
use super::{command, fd_path, Pinned};
use crate::engine::Missing;
use crate::error::{self, Failure};
use crate::oracle::{classify_tasks, FileRef};
use crate::pool::map_chunks;
use crate::sys::{self, Errno, Fd, Pid};

/// `Escape.kind` values.
pub const OUTSIDE_NAMESPACE: &str = "outside-namespace";
pub const DETACHED: &str = "detached";
pub const OUTSIDE_ROOT: &str = "outside-root";
pub const DEVICE: &str = "device";

/// `Escape.severity` values.
pub const HIGH: &str = "high";
pub const MEDIUM: &str = "medium";
pub const INFO: &str = "info";

/// Where a process holds a file: an fd, its working directory or its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Place {
    Fd(Fd),
    Cwd,
    Root,
}

/// One file a process holds outside its mount namespace or root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub pid: Pid,
    pub place: Place,
    pub kind: &'static str,
    pub severity: &'static str,
    pub mnt_id: u64,
    /// From the mountinfo that lists the mount (the process's, ours, another
    /// audited namespace's); `None` when none does.
    pub fs_type: Option<Vec<u8>>,
    /// As this process reads the link (`/proc/PID/fd/N`, `cwd`, `root`).
    pub path: Vec<u8>,
    /// The mount's mount point in our namespace, `None` when it is not one of ours.
    pub mount_point: Option<Vec<u8>>,
    pub file_type: String,
    /// An fd's access mode (`r`, `w`, `rw`, `path` for O_PATH); `None` for cwd, root.
    pub mode: Option<&'static str>,
    /// The holders of the same description in other mount namespaces.
    pub shared_with: Vec<FileRef>,
    /// An fd's file (st_dev, st_ino), for the search of its other holders.
    pub key: Option<sys::FileKey>,
}

/// What was read of one place a process holds a file.
struct Seen {
    place: Place,
    mnt_id: u64,
    path: Vec<u8>,
    file_type: String,
    mode: Option<&'static str>,
    key: Option<sys::FileKey>,
}

/// What the audit knows of a process with findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audited {
    pub command: Option<Vec<u8>>,
    pub container: Option<(&'static str, String)>,
    pub mount_namespace: u64,
    /// The audited processes in another mount namespace sharing its fs context
    /// (CLONE_FS); `None` where that cannot be decided (kcmp unusable).
    pub fs_shared_with: Option<Vec<Pid>>,
}

/// What `escapes` found.
#[derive(Debug, Default)]
pub struct EscapesReport {
    /// Sorted by pid, then fds ascending, then cwd, then root.
    pub findings: Vec<Finding>,
    /// Per pid with findings.
    pub processes: HashMap<Pid, Audited>,
    /// The command of every holder in `shared_with`.
    pub commands: HashMap<Pid, Option<Vec<u8>>>,
    /// (pid, reason), ascending.
    pub skipped: Vec<(Pid, String)>,
    pub processes_read: usize,
    pub mount_namespaces_read: usize,
    pub notes: Vec<String>,
}

/// The mounts one audit compares against.
struct Context {
    /// Our own namespace's mounts (the auditor's view: normally the host).
    ours: HashMap<u64, Mount>,
    /// Every mount namespace read, by inode.
    namespaces: HashMap<u64, HashMap<u64, Mount>>,
    /// Mount ids of the kernel's internal mounts.
    internal: &'static HashSet<u64>,
}

/// One process per fd table, in the mount namespace `ns`.
struct Reader {
    table: Vec<Pid>,
    ns: u64,
}

/// The escapes of `pids` (every process to audit).
pub fn escapes(
    pids: &[Pid],
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<EscapesReport, Failure> {
    let Readable {
        pins,
        mut skipped,
        tables,
        ..
    } = pin_by_fd_table(pids, interrupted)?;
    let mut readers = namespaces_of(&pins, tables, &mut skipped);
    #[cfg(test)]
    hooks::namespaces_read();
    let own_ns = own_namespace()?;
    let ours = own_mounts()?;
    let namespaces = read_mountinfos(&pins, &mut readers, own_ns, &ours, &mut skipped);
    let ctx = Context {
        ours,
        namespaces,
        internal: internal_mounts(),
    };
    let audited = map_chunks(
        &readers,
        |chunk| chunk.iter().map(|r| audit(&pins, r, &ctx)).collect(),
        interrupted,
    )?;
    let mut findings = Vec::new();
    let mut kept = Vec::new();
    for (reader, result) in readers.into_iter().zip(audited) {
        match result {
            Ok(found) => {
                findings.extend(found);
                kept.push(reader);
            }
            Err(Failure::Interrupted) => return Err(Failure::Interrupted),
            Err(f) => skip_table(&reader.table, &skip_reason(&f, EXITED), &mut skipped),
        }
    }
    let mut notes = Vec::new();
    share(&mut findings, &kept, &mut skipped, &mut notes, interrupted)?;
    // A reader gone takes its fd table's sharers along (their fds were read through
    // it); a sharer gone leaves alone.
    for pid in pins.vanished()? {
        skipped.insert(pid, EXITED.to_string());
        if let Some(r) = kept.iter().find(|r| r.table[0] == pid) {
            for &sharer in &r.table[1..] {
                skipped
                    .entry(sharer)
                    .or_insert_with(|| OWNER_EXITED.to_string());
            }
        }
    }
    kept.retain(|r| !skipped.contains_key(&r.table[0]));
    for r in &mut kept {
        r.table.retain(|p| !skipped.contains_key(p));
    }
    let readers_kept: HashSet<Pid> = kept.iter().map(|r| r.table[0]).collect();
    findings.retain(|f| readers_kept.contains(&f.pid));
    for f in &mut findings {
        f.shared_with.retain(|(p, _)| !skipped.contains_key(p));
    }
    findings.sort_by_key(|f| (f.pid, f.place));
    let processes = describe_processes(&findings, &kept, &mut notes, interrupted)?;
    let mut commands = HashMap::default();
    for &(pid, _) in findings.iter().flat_map(|f| &f.shared_with) {
        commands.entry(pid).or_insert_with(|| command(pid));
    }
    let mut skipped: Vec<(Pid, String)> = skipped.into_iter().collect();
    skipped.sort_unstable();
    let namespaces_read: HashSet<u64> = kept.iter().map(|r| r.ns).collect();
    Ok(EscapesReport {
        findings,
        processes,
        commands,
        skipped,
        processes_read: kept.iter().map(|r| r.table.len()).sum(),
        mount_namespaces_read: namespaces_read.len(),
        notes,
    })
}

/// Skips a whole fd table: its reader for `why`, the others with it.
fn skip_table(table: &[Pid], why: &str, skipped: &mut HashMap<Pid, String>) {
    for &pid in table {
        skipped.insert(pid, why.to_string());
    }
}

/// Why `pid`'s /proc file could not be read: its death, a refusal, or the errno.
fn unreadable(pins: &Pinned, pid: Pid, e: Errno, doing: &str) -> Failure {
    let failure = match error::dead_or_dying(pid) {
        Some(gone) => gone,
        None if matches!(e.0, libc::EACCES | libc::EPERM) => Failure::Denied { pid },
        // Linux 5.10 answers a namespace link another user's process hides with
        // EINVAL: kcmp, under the same ptrace check, says whether that is a refusal.
        None if e.0 == libc::EINVAL
            && matches!(
                crate::ladder::kcmp_checked(pid, pid, sys::KCMP_FILES, 0, 0),
                Err(Failure::Denied { .. })
            ) =>
        {
            Failure::Denied { pid }
        }
        None if matches!(e.0, libc::ENOENT | libc::ESRCH) => Failure::Exited { pid },
        None => Failure::from_errno(e, pid, None, doing),
    };
    pins.explain(failure)
}

fn proc_path(pid: Pid, name: &str) -> Result<CString, Errno> {
    CString::new(format!("/proc/{pid}/{name}")).map_err(|_| Errno(libc::EINVAL))
}

/// The inode of the mount namespace of `pid`.
fn mount_namespace(pid: Pid) -> Result<u64, Errno> {
    let link = sys::readlinkat(libc::AT_FDCWD, &proc_path(pid, "ns/mnt")?)?;
    parse::namespace_inode(&link).ok_or(Errno(libc::EINVAL))
}

fn own_namespace() -> Result<u64, Failure> {
    mount_namespace(sys::getpid()).map_err(|e| own_failure(e, "/proc/self/ns/mnt"))
}

fn own_mounts() -> Result<HashMap<u64, Mount>, Failure> {
    let path = proc_path(sys::getpid(), "mountinfo").map_err(|e| own_failure(e, "mountinfo"))?;
    sys::read_small_file(&path)
        .map(|text| parse::mountinfo(&text))
        .map_err(|e| own_failure(e, "/proc/self/mountinfo"))
}

fn own_failure(e: Errno, file: &str) -> Failure {
    Failure::Os {
        errno: e.0,
        pid: None,
        fd: None,
        detail: format!("reading {file}: {}", error::errno_text(e.0)),
    }
}

/// Each table's reader (its first process whose namespace link reads) and its mount
/// namespace; those that cannot be read are skipped with why.
fn namespaces_of(
    pins: &Pinned,
    tables: Vec<Vec<Pid>>,
    skipped: &mut HashMap<Pid, String>,
) -> Vec<Reader> {
    let mut readers = Vec::new();
    for table in tables {
        for (i, &pid) in table.iter().enumerate() {
            match mount_namespace(pid) {
                Ok(ns) => {
                    readers.push(Reader {
                        table: table[i..].to_vec(),
                        ns,
                    });
                    break;
                }
                Err(e) => {
                    let f = unreadable(pins, pid, e, &format!("reading /proc/{pid}/ns/mnt"));
                    skipped.insert(pid, skip_reason(&f, EXITED));
                }
            }
        }
    }
    readers
}

/// One mountinfo per namespace, read through the first of its readers that still
/// reads it and is still in it after the read; a namespace none can read (its
/// processes gone) takes its readers to `skipped`, and no finding is made from it.
fn read_mountinfos(
    pins: &Pinned,
    readers: &mut Vec<Reader>,
    own_ns: u64,
    ours: &HashMap<u64, Mount>,
    skipped: &mut HashMap<Pid, String>,
) -> HashMap<u64, HashMap<u64, Mount>> {
    let mut namespaces: HashMap<u64, HashMap<u64, Mount>> = HashMap::default();
    namespaces.insert(own_ns, ours.clone());
    let mut unread: HashSet<u64> = HashSet::default();
    for reader in readers.iter() {
        if namespaces.contains_key(&reader.ns) || unread.contains(&reader.ns) {
            continue;
        }
        let members = readers.iter().filter(|r| r.ns == reader.ns);
        let mut last = None;
        for r in members {
            let pid = r.table[0];
            let read = proc_path(pid, "mountinfo").and_then(|p| sys::read_small_file(&p));
            match read {
                Ok(text) if mount_namespace(pid) == Ok(reader.ns) => {
                    namespaces.insert(reader.ns, parse::mountinfo(&text));
                    break;
                }
                Ok(_) => last = Some(Failure::Exited { pid }),
                Err(e) => {
                    last = Some(unreadable(
                        pins,
                        pid,
                        e,
                        &format!("reading /proc/{pid}/mountinfo"),
                    ));
                }
            }
        }
        if !namespaces.contains_key(&reader.ns) {
            unread.insert(reader.ns);
            let why = last.map_or_else(|| EXITED.to_string(), |f| skip_reason(&f, EXITED));
            for r in readers.iter().filter(|r| r.ns == reader.ns) {
                skip_table(&r.table, &why, skipped);
            }
        }
    }
    readers.retain(|r| !unread.contains(&r.ns));
    namespaces
}

/// The mount ids of the kernel's internal mounts, measured once per process on one
/// file of each kind made here and closed at once. Internal mounts are global, made
/// at boot, so the ids hold in a forked child too.
fn internal_mounts() -> &'static HashSet<u64> {
    static INTERNAL: OnceLock<HashSet<u64>> = OnceLock::new();
    INTERNAL.get_or_init(|| {
        let me = sys::getpid();
        sys::internal_mount_probes()
            .iter()
            .filter_map(|fd| own_fdinfo_mnt_id(me, std::os::fd::AsRawFd::as_raw_fd(fd)))
            .collect()
    })
}

fn own_fdinfo_mnt_id(me: Pid, fd: Fd) -> Option<u64> {
    let path = proc_path(me, &format!("fdinfo/{fd}")).ok()?;
    fdinfo_field(&sys::read_small_file(&path).ok()?, b"mnt_id:")
}

/// Where a mount id lies, seen from a process of namespace `ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whose {
    /// A mount of the process's own namespace.
    Own,
    /// A kernel-internal mount: never a finding.
    Internal,
    /// A mount of another namespace read (ours or an audited one).
    Other,
    /// In no mountinfo read: lazily unmounted, or of a namespace not read.
    Detached,
}

impl Context {
    fn whose(&self, ns: u64, mnt_id: u64) -> Whose {
        if self
            .namespaces
            .get(&ns)
            .is_some_and(|m| m.contains_key(&mnt_id))
        {
            Whose::Own
        } else if self.internal.contains(&mnt_id) {
            Whose::Internal
        } else if self.namespaces.values().any(|m| m.contains_key(&mnt_id)) {
            Whose::Other
        } else {
            Whose::Detached
        }
    }

    fn finding(
        &self,
        pid: Pid,
        ns: u64,
        seen: Seen,
        (kind, severity): (&'static str, &'static str),
    ) -> Finding {
        Finding {
            pid,
            place: seen.place,
            kind,
            severity,
            mnt_id: seen.mnt_id,
            fs_type: self.fs_type(ns, seen.mnt_id),
            path: seen.path,
            mount_point: self.ours.get(&seen.mnt_id).map(|m| m.mount_point.clone()),
            file_type: seen.file_type,
            mode: seen.mode,
            shared_with: Vec::new(),
            key: seen.key,
        }
    }

    /// The fs type of a mount from the first mountinfo that lists it: the process's
    /// namespace's, ours, any other read.
    fn fs_type(&self, ns: u64, mnt_id: u64) -> Option<Vec<u8>> {
        let of = |m: &HashMap<u64, Mount>| m.get(&mnt_id).map(|m| m.fs_type.clone());
        self.namespaces
            .get(&ns)
            .and_then(of)
            .or_else(|| of(&self.ours))
            .or_else(|| self.namespaces.values().find_map(of))
    }
}

/// The mode of an fd from its fdinfo `flags:` (octal).
fn mode_of_flags(flags: u32) -> &'static str {
    if flags & (libc::O_PATH as u32) != 0 {
        return "path";
    }
    match flags & (libc::O_ACCMODE as u32) {
        0 => "r",
        1 => "w",
        _ => "rw",
    }
}

fn octal_field(text: &[u8], name: &[u8]) -> Option<u32> {
    text.split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(name))
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
}

/// Whether `path` lies under `root` (both as this process reads them).
fn under(path: &[u8], root: &[u8]) -> bool {
    root == b"/" || path == root || (path.starts_with(root) && path.get(root.len()) == Some(&b'/'))
}

/// What one candidate is: a finding's kind and severity from where its mount lies,
/// its type and mode; `None` for what is no finding.
fn judge(
    whose: Whose,
    outside_root: bool,
    file_mode: u32,
    mode: Option<&str>,
) -> Option<(&'static str, &'static str)> {
    let kind = match whose {
        Whose::Internal => return None,
        Whose::Own if !outside_root => return None,
        Whose::Own => OUTSIDE_ROOT,
        Whose::Other => OUTSIDE_NAMESPACE,
        Whose::Detached => DETACHED,
    };
    let format = file_mode & libc::S_IFMT;
    if format == libc::S_IFCHR || format == libc::S_IFBLK {
        return Some((DEVICE, INFO));
    }
    let writable = mode.is_some_and(|m| m.contains('w'));
    let severity = if format == libc::S_IFDIR || writable {
        HIGH
    } else {
        MEDIUM
    };
    Some((kind, severity))
}

/// The findings of one reader: its fds, cwd and root.
fn audit(pins: &Pinned, reader: &Reader, ctx: &Context) -> Result<Vec<Finding>, Failure> {
    let pid = reader.table[0];
    let ns = reader.ns;
    let read_link = |name: &str| {
        proc_path(pid, name)
            .and_then(|p| sys::readlinkat(libc::AT_FDCWD, &p))
            .map_err(|e| unreadable(pins, pid, e, &format!("reading /proc/{pid}/{name}")))
    };
    let root = read_link("root")?;
    let chrooted = root != b"/";
    let mut found = Vec::new();
    for (place, name) in [(Place::Cwd, "cwd"), (Place::Root, "root")] {
        let mnt_id = place_mnt_id(pid, name)
            .map_err(|e| unreadable(pins, pid, e, &format!("reading /proc/{pid}/{name}")))?;
        let whose = ctx.whose(ns, mnt_id);
        let path = read_link(name)?;
        let outside = chrooted && place == Place::Cwd && !under(&path, &root);
        if let Some(judged) = judge(whose, outside, libc::S_IFDIR, None) {
            let seen = Seen {
                place,
                mnt_id,
                path,
                file_type: "DIR".into(),
                mode: None,
                key: None,
            };
            found.push(ctx.finding(pid, ns, seen, judged));
        }
    }
    // An fd closed since the listing (ENOENT) holds nothing; any other failure to
    // read one skips the process with why, never leaving its fd out unsaid.
    let failed = |e: Errno, what: String| -> Result<(), Failure> {
        if e.0 == libc::ENOENT {
            Ok(())
        } else {
            Err(unreadable(pins, pid, e, &what))
        }
    };
    for fd in pins.list(pid)? {
        // A statx of the fd's link names its mount in one call; most fds are on an
        // internal mount or the process's own, and need no fdinfo read at all.
        match fd_mnt_id(pid, fd) {
            Ok(Some(id)) if passes(ctx.whose(ns, id), chrooted) => continue,
            Ok(_) => {}
            Err(e) => {
                failed(e, format!("reading /proc/{pid}/fd/{fd}"))?;
                continue;
            }
        }
        let info =
            match proc_path(pid, &format!("fdinfo/{fd}")).and_then(|p| sys::read_small_file(&p)) {
                Ok(info) => info,
                Err(e) => {
                    failed(e, format!("reading /proc/{pid}/fdinfo/{fd}"))?;
                    continue;
                }
            };
        let Some(mnt_id) = fdinfo_field(&info, b"mnt_id:") else {
            return Err(unreadable(
                pins,
                pid,
                Errno(libc::ENOTSUP),
                &format!("/proc/{pid}/fdinfo/{fd} has no mnt_id"),
            ));
        };
        let whose = ctx.whose(ns, mnt_id);
        if passes(whose, chrooted) {
            continue;
        }
        let Some(link) = fd_path(pid, fd) else {
            continue;
        };
        let read = sys::readlinkat(libc::AT_FDCWD, &link)
            .and_then(|path| Ok((path, sys::fstatat_file(libc::AT_FDCWD, &link)?)));
        let (path, stat) = match read {
            Ok(read) => read,
            Err(e) => {
                failed(e, format!("reading /proc/{pid}/fd/{fd}"))?;
                continue;
            }
        };
        // A file with no path (pipe:[N], socket:[N], anon_inode:...) is on a mount no
        // path reaches: no escape through it.
        if path.first() != Some(&b'/') {
            continue;
        }
        let mode = octal_field(&info, b"flags:").map(mode_of_flags);
        let outside = chrooted && !under(&path, &root);
        if let Some(judged) = judge(whose, outside, stat.mode, mode) {
            let seen = Seen {
                place: Place::Fd(fd),
                mnt_id,
                file_type: super::json::type_of(&path, Some(stat.mode)),
                path,
                mode,
                key: Some(stat.key),
            };
            found.push(ctx.finding(pid, ns, seen, judged));
        }
    }
    Ok(found)
}

/// Whether a file on a mount of this kind needs no look: an internal mount's, or the
/// process's own namespace's when it is not chrooted (outside-root needs its path).
fn passes(whose: Whose, chrooted: bool) -> bool {
    whose == Whose::Internal || (whose == Whose::Own && !chrooted)
}

/// The mount id of fd `fd` of `pid` by statx of its link (the fdinfo's `mnt_id`: the
/// link leads to the file's own mount); `None` where statx gives none.
fn fd_mnt_id(pid: Pid, fd: Fd) -> Result<Option<u64>, Errno> {
    match sys::statx_mnt_id(&proc_path(pid, &format!("fd/{fd}"))?) {
        Ok(id) => Ok(id),
        Err(Errno(libc::ENOSYS | libc::EINVAL)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The mount id of `/proc/PID/{name}` (cwd or root), by statx; where statx gives
/// none, by the fdinfo of an O_PATH fd of ours to it (closed at once).
fn place_mnt_id(pid: Pid, name: &str) -> Result<u64, Errno> {
    let path = proc_path(pid, name)?;
    match sys::statx_mnt_id(&path) {
        Ok(Some(id)) => return Ok(id),
        Ok(None) | Err(Errno(libc::ENOSYS | libc::EINVAL)) => {}
        Err(e) => return Err(e),
    }
    let held = sys::open_path(&path)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&held);
    own_fdinfo_mnt_id(sys::getpid(), fd).ok_or(Errno(libc::ENOTSUP))
}

/// Each fd finding's other holders in other mount namespaces, from one scan of the
/// kept readers' processes for the findings' files; a process that scan could not
/// read is skipped here too (its sharing unknown), undecided fds are noted.
fn share(
    findings: &mut [Finding],
    kept: &[Reader],
    skipped: &mut HashMap<Pid, String>,
    notes: &mut Vec<String>,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<(), Failure> {
    // A device's other holders are not searched: an info finding asks nothing of the
    // reader, and where kcmp is refused the search could only add a note to it.
    let mut keys: Vec<sys::FileKey> = findings
        .iter()
        .filter(|f| f.severity != INFO)
        .filter_map(|f| f.key)
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    keys.sort_unstable();
    keys.dedup();
    let filter = FileFilter {
        keys,
        rdevs: Vec::new(),
    };
    let ns_of: HashMap<Pid, u64> = kept
        .iter()
        .flat_map(|r| r.table.iter().map(move |&p| (p, r.ns)))
        .collect();
    let pids: Vec<Pid> = ns_of.keys().copied().collect();
    let mut pids = pids;
    pids.sort_unstable();
    let report = scan_matching(&pids, &filter, false, &mut |_, _| false, interrupted)?;
    for (pid, why) in &report.skipped {
        if let Some(r) = kept.iter().find(|r| r.table.contains(pid)) {
            skip_table(&r.table, why, skipped);
        }
    }
    if !report.undecided.is_empty() {
        notes.push(format!(
            "{} fds on the findings' files could not be told apart without kcmp: \
             their holders are not in shared_with",
            report.undecided.len()
        ));
    }
    // A reader's fds show under the smallest pid of its fd table in the scan too.
    let table_of: HashMap<Pid, &[Pid]> = kept
        .iter()
        .flat_map(|r| r.table.iter().map(move |&p| (p, &r.table[..])))
        .collect();
    for f in findings.iter_mut() {
        let Place::Fd(fd) = f.place else { continue };
        let table = table_of.get(&f.pid).copied().unwrap_or_default();
        let Some(d) = report.descriptions.iter().find(|d| {
            d.members
                .iter()
                .any(|&(p, g)| g == fd && (p == f.pid || table.contains(&p)))
        }) else {
            continue;
        };
        let ns = ns_of.get(&f.pid).copied();
        f.shared_with = d
            .members
            .iter()
            .copied()
            .filter(|(p, _)| ns_of.get(p).copied() != ns)
            .collect();
    }
    Ok(())
}

/// Command, container, namespace and fs-context sharers of each process with
/// findings.
fn describe_processes(
    findings: &[Finding],
    kept: &[Reader],
    notes: &mut Vec<String>,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<HashMap<Pid, Audited>, Failure> {
    let mut processes = HashMap::default();
    if findings.is_empty() {
        return Ok(processes);
    }
    let readers: Vec<Pid> = kept.iter().map(|r| r.table[0]).collect();
    let ns_of: HashMap<Pid, u64> = kept.iter().map(|r| (r.table[0], r.ns)).collect();
    // Who shares the fs context is asked for processes with a high or medium finding
    // only: for devices alone (info) it is not asked, and no note is made of it.
    let asked: HashSet<Pid> = findings
        .iter()
        .filter(|f| f.severity != INFO)
        .map(|f| f.pid)
        .collect();
    let fs_groups = if asked.is_empty() {
        None
    } else {
        match classify_tasks(&readers, sys::KCMP_FS, Missing::Skip, &mut *interrupted) {
            Ok(groups) => Some(groups),
            Err(Failure::Interrupted) => return Err(Failure::Interrupted),
            Err(f) => {
                notes.push(format!(
                    "whether a process shares its fs context (root, cwd) with a process of \
                 another mount namespace cannot be decided: {}",
                    f.message()
                ));
                None
            }
        }
    };
    for f in findings {
        if processes.contains_key(&f.pid) {
            continue;
        }
        let ns = ns_of.get(&f.pid).copied().unwrap_or_default();
        let fs_shared_with = fs_groups
            .as_ref()
            .filter(|_| asked.contains(&f.pid))
            .map(|groups| {
                let mut others: Vec<Pid> = groups
                    .iter()
                    .find(|g| g.contains(&f.pid))
                    .map(|g| {
                        g.iter()
                            .copied()
                            .filter(|p| ns_of.get(p).copied() != Some(ns))
                            .collect()
                    })
                    .unwrap_or_default();
                others.sort_unstable();
                others
            });
        let container = proc_path(f.pid, "cgroup")
            .and_then(|p| sys::read_small_file(&p))
            .ok()
            .and_then(|text| container_of(&text));
        processes.insert(
            f.pid,
            Audited {
                command: command(f.pid),
                container,
                mount_namespace: ns,
                fs_shared_with,
            },
        );
    }
    Ok(processes)
}

/// Test hooks: a death injected between the reading of the namespace links and
/// that of the mountinfos.
#[cfg(test)]
pub(crate) mod hooks {
    use std::cell::Cell;

    use crate::sys::{testing, Pid};

    thread_local! {
        static KILL: Cell<Option<Pid>> = const { Cell::new(None) };
    }

    pub fn kill_after_namespaces(pid: Pid) {
        KILL.with(|k| k.set(Some(pid)));
    }

    pub(super) fn namespaces_read() {
        if let Some(pid) = KILL.with(Cell::take) {
            testing::kill(pid);
            testing::reap(pid);
        }
    }
}

#[cfg(test)]
mod tests;
