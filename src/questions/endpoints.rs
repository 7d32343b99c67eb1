//! The other ends of a channel (`kcmp_rs.endpoints()`, `kcmp-rs peers`): the pipe,
//! FIFO, Unix socket, pty or eventfd one fd is an end of, and every description, in
//! every process asked, of each of its ends.
//!
//! kcmp cannot relate two different files, so the ends are found by what the kernel
//! says relates them: a pipe's or FIFO's inode (its sides told by each description's
//! access mode), a Unix socket's peer (sock_diag, in the socket's own network
//! namespace), a pty's index (a master's fdinfo `tty-index`, a slave's device number),
//! and an eventfd's one description. The descriptions of those files are then found
//! exactly by the scan (`scan_matching`), kcmp or its exact fallbacks telling opens
//! apart. Whatever cannot be found exactly (sock_diag refused, two devpts instances
//! numbering a pty alike) is said in `partial`, never guessed.

use std::ffi::CString;

use rustc_hash::FxHashSet as HashSet;

use super::procfs::{fdinfo_field, live_task_of};
use super::scan::{scan_matching, FileFilter, Progress, ScanReport};
use super::{fd_target, file_stat, why_unreadable, Pinned};
use crate::error::Failure;
use crate::oracle::FileRef;
use crate::sys::{self, Fd, FileStat, Pid};

/// The kinds of channel, as `Endpoints.kind` names them.
pub const PIPE: &str = "pipe";
pub const FIFO: &str = "fifo";
pub const UNIX: &str = "unix";
pub const PTY: &str = "pty";
pub const EVENTFD: &str = "eventfd";

/// The sides an end can be on.
pub const READ: &str = "read";
pub const WRITE: &str = "write";
pub const SOCKET: &str = "socket";
pub const PEER: &str = "peer";
pub const MASTER: &str = "master";
pub const SLAVE: &str = "slave";
pub const COUNTER: &str = "counter";

/// /dev/ptmx and /dev/pts/ptmx: character device 5:2.
const PTMX_RDEV: u64 = (5 << 8) | 2;
/// The majors of pty slaves (/dev/pts/N): 136 to 143, 256 indexes each.
const PTS_MAJORS: std::ops::RangeInclusive<u64> = 136..=143;
/// sock_diag's state of a listening socket (TCP_LISTEN).
const LISTENING: u8 = 10;

/// What `endpoints` found.
#[derive(Debug, Default)]
pub struct EndpointsReport {
    /// The kind of channel; `None` when the fd is no end of one (`file_type` says
    /// what it is).
    pub kind: Option<&'static str>,
    pub file_type: String,
    /// What /proc shows as the asked fd's target (`pipe:[N]`, `socket:[N]`, a path).
    pub target: Vec<u8>,
    /// Every description of every end: the scan of the ends' files.
    pub scan: ScanReport,
    /// Per description of `scan`, the sides it is on (a FIFO opened O_RDWR: both).
    pub sides: Vec<Vec<&'static str>>,
    /// Why the answer may miss an end, when it may.
    pub partial: Option<String>,
}

/// What the ends of the asked fd's channel are, before the scan finds them.
struct Plan {
    kind: &'static str,
    filter: FileFilter,
    /// For a pty: its index, and when a slave was asked, its devpts instance (st_dev).
    pty: Option<u64>,
    instance: Option<u64>,
    /// For a Unix socket: its own file and its peer's.
    socket: Option<(sys::FileKey, Option<sys::FileKey>)>,
    partial: Option<String>,
}

impl Plan {
    /// A plan for the channel `kind` on the files with `keys` and the devices `rdevs`;
    /// what a kind knows beyond them is set by its caller.
    fn on(kind: &'static str, keys: Vec<sys::FileKey>, rdevs: Vec<u64>) -> Plan {
        Plan {
            kind,
            filter: FileFilter { keys, rdevs },
            pty: None,
            instance: None,
            socket: None,
            partial: None,
        }
    }
}

/// The channel `fd` of `pid` is an end of, with every description of each end among
/// `pids` (the asked process is always searched).
pub fn endpoints(
    pid: Pid,
    fd: Fd,
    pids: &[Pid],
    allow_pidfd_getfd: bool,
    progress: Progress<'_>,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<EndpointsReport, Failure> {
    let pid = live_task_of(pid);
    let pin = Pinned::new(&[pid])?;
    let unreadable = || pin.explain(why_unreadable(pid, fd));
    let file = file_stat(pid, fd).ok_or_else(unreadable)?;
    let target = fd_target(pid, fd).ok_or_else(unreadable)?;
    let file_type = super::json::type_of(&target, Some(file.mode));
    let mut searched: Vec<Pid> = pids.iter().map(|&p| live_task_of(p)).collect();
    searched.push(pid);
    searched.sort_unstable();
    searched.dedup();
    let Some(plan) = plan(pid, fd, &file, &target, &searched)? else {
        pin.finish()?;
        return Ok(EndpointsReport {
            file_type,
            target,
            ..EndpointsReport::default()
        });
    };
    let mut scan = scan_matching(
        &searched,
        &plan.filter,
        allow_pidfd_getfd,
        progress,
        interrupted,
    )?;
    pin.finish()?;
    if let Some((_, reason)) = scan.skipped.iter().find(|&&(p, _)| p == pid) {
        return Err(if reason == super::scan::PERMISSION_DENIED {
            Failure::Denied { pid }
        } else {
            Failure::Exited { pid }
        });
    }
    let mut partial = plan.partial.clone();
    // Processes sharing one fd table (threads) are read once, under the smallest pid:
    // the asked fd may show under any of them.
    let table: Vec<Pid> = scan
        .fd_table_shared
        .iter()
        .find(|t| t.contains(&pid))
        .cloned()
        .unwrap_or_else(|| vec![pid]);
    let asked: Vec<FileRef> = table.iter().map(|&p| (p, fd)).collect();
    let sides = sides_of(&plan, &scan, &asked, &mut partial);
    let kept: Vec<bool> = sides.iter().map(|s| !s.is_empty()).collect();
    retain(&mut scan, &kept);
    let sides: Vec<Vec<&'static str>> = sides.into_iter().filter(|s| !s.is_empty()).collect();
    let is_asked = |r: &FileRef| asked.contains(r);
    let asked_found = scan
        .descriptions
        .iter()
        .any(|d| d.members.iter().any(is_asked));
    if !asked_found && !scan.undecided.iter().any(is_asked) {
        return Err(changed(pid, fd));
    }
    Ok(EndpointsReport {
        kind: Some(plan.kind),
        file_type,
        target,
        scan,
        sides,
        partial,
    })
}

fn changed(pid: Pid, fd: Fd) -> Failure {
    Failure::Os {
        errno: libc::EAGAIN,
        pid: Some(pid),
        fd: Some(fd),
        detail: format!(
            "fd {fd} of process {pid} was closed or replaced while its channel was read; \
             try again"
        ),
    }
}

/// The kind of channel and the files of its ends; `None` for an fd that is no end
/// of one.
fn plan(
    pid: Pid,
    fd: Fd,
    file: &FileStat,
    target: &[u8],
    searched: &[Pid],
) -> Result<Option<Plan>, Failure> {
    Ok(match file.mode & libc::S_IFMT {
        libc::S_IFIFO if target.starts_with(b"pipe:[") => {
            Some(Plan::on(PIPE, vec![file.key], Vec::new()))
        }
        libc::S_IFIFO => Some(Plan::on(FIFO, vec![file.key], Vec::new())),
        libc::S_IFSOCK => socket_plan(pid, file, searched)?,
        libc::S_IFCHR => pty_plan(pid, fd, file),
        _ if target == b"anon_inode:[eventfd]" => {
            Some(Plan::on(EVENTFD, vec![file.key], Vec::new()))
        }
        _ => None,
    })
}

fn pty_plan(pid: Pid, fd: Fd, file: &FileStat) -> Option<Plan> {
    let index = if file.rdev == PTMX_RDEV {
        tty_index(pid, fd)
    } else {
        Some(pty_index_of_rdev(file.rdev)?)
    };
    let mut plan = Plan {
        pty: index,
        instance: (file.rdev != PTMX_RDEV).then_some(file.key.0),
        ..Plan::on(PTY, vec![file.key], vec![PTMX_RDEV])
    };
    match index {
        Some(index) => plan.filter.rdevs.push(pts_rdev(index)),
        None => {
            plan.partial = Some(
                "this kernel does not show a pty master's index (fdinfo tty-index): \
                 its slave side cannot be found"
                    .into(),
            );
        }
    }
    Some(plan)
}

fn socket_plan(pid: Pid, file: &FileStat, searched: &[Pid]) -> Result<Option<Plan>, Failure> {
    let ino = file.key.1;
    let (found, refused) = find_unix_socket(pid, ino, searched)?;
    let Some(socket) = found else {
        let Some(why) = refused else { return Ok(None) };
        // /proc/PID/net/unix lists the Unix sockets of a namespace, without peers: it
        // tells exactly whether this is one, and whether it listens (then it has none).
        let partial = match listed_unix_socket(pid, ino, searched) {
            Listed::Absent => return Ok(None),
            Listed::Unix(true) => None,
            Listed::Unix(false) => Some(format!(
                "sock_diag is refused here ({why}): the socket's peer cannot be read"
            )),
            Listed::Unknown => Some(format!(
                "sock_diag is refused here ({why}) and /proc/PID/net/unix could not be read: \
                 whether this is a Unix socket, and its peer, cannot be read"
            )),
        };
        return Ok(Some(Plan {
            socket: Some((file.key, None)),
            partial,
            ..Plan::on(UNIX, vec![file.key], Vec::new())
        }));
    };
    let peer = socket
        .peer
        .filter(|_| socket.state != LISTENING)
        .map(|p| (file.key.0, p));
    let mut keys = vec![file.key];
    keys.extend(peer);
    Ok(Some(Plan {
        socket: Some((file.key, peer)),
        ..Plan::on(UNIX, keys, Vec::new())
    }))
}

/// One process per network namespace among `pid` (first) and `searched`, with the
/// namespace's identity: where to look for a socket, each namespace once.
pub(super) fn one_per_netns(pid: Pid, searched: &[Pid]) -> Vec<(Pid, sys::FileKey)> {
    let mut seen: HashSet<sys::FileKey> = HashSet::default();
    std::iter::once(pid)
        .chain(searched.iter().copied().filter(|&p| p != pid))
        .filter_map(|holder| sys::netns_key(holder).ok().map(|ns| (holder, ns)))
        .filter(|&(_, ns)| seen.insert(ns))
        .collect()
}

/// Every Unix socket of the network namespace `ns` of `holder`: this thread's own
/// without entering it.
pub(super) fn unix_sockets_of(
    holder: Pid,
    ns: sys::FileKey,
) -> Result<Vec<sys::UnixSocket>, sys::Errno> {
    if sys::own_netns_key().ok() == Some(ns) {
        sys::unix_sockets()
    } else {
        sys::open_netns(holder).and_then(|fd| sys::unix_sockets_in(&fd))
    }
}

/// The Unix socket of inode `ino` as sock_diag shows it, looked for in the network
/// namespace of `pid`, then in those of the other processes searched (a socket passed
/// to a process of another namespace stays in its own), one dump per namespace; with
/// why sock_diag was refused, if it was.
fn find_unix_socket(
    pid: Pid,
    ino: u64,
    searched: &[Pid],
) -> Result<(Option<sys::UnixSocket>, Option<String>), Failure> {
    for (holder, ns) in one_per_netns(pid, searched) {
        match unix_sockets_of(holder, ns) {
            Ok(sockets) => {
                if let Some(s) = sockets.into_iter().find(|s| s.ino == ino) {
                    return Ok((Some(s), None));
                }
            }
            Err(e) if sys::is_refusal(e) => {
                return Ok((None, Some(crate::error::errno_text(e.0))));
            }
            Err(e) => {
                return Err(Failure::from_errno(
                    e,
                    holder,
                    None,
                    &format!("listing the Unix sockets of process {holder}'s network namespace"),
                ));
            }
        }
    }
    Ok((None, None))
}

/// What /proc/PID/net/unix of the namespaces of `pid` and `searched` says of the
/// socket of inode `ino`.
enum Listed {
    /// A Unix socket; true when it listens.
    Unix(bool),
    /// In no list: not a Unix socket.
    Absent,
    /// Not in the lists read, and some list could not be read.
    Unknown,
}

fn listed_unix_socket(pid: Pid, ino: u64, searched: &[Pid]) -> Listed {
    /// The `Flags` bit of a listening socket (__SO_ACCEPTCON).
    const ACCEPTING: u64 = 1 << 16;
    let mut unread = false;
    for (holder, _) in one_per_netns(pid, searched) {
        let path = CString::new(format!("/proc/{holder}/net/unix")).ok();
        let Some(text) = path.and_then(|p| sys::read_small_file(&p).ok()) else {
            unread = true;
            continue;
        };
        // "Num RefCount Protocol Flags Type St Inode Path", numbers in hex but Inode.
        for line in text.split(|&b| b == b'\n').skip(1) {
            let fields: Vec<&[u8]> = line
                .split(|&b| b == b' ')
                .filter(|f| !f.is_empty())
                .collect();
            let number = |i: usize, radix: u32| {
                fields
                    .get(i)
                    .and_then(|f| std::str::from_utf8(f).ok())
                    .and_then(|f| u64::from_str_radix(f, radix).ok())
            };
            if number(6, 10) == Some(ino) {
                return Listed::Unix(number(3, 16).is_some_and(|flags| flags & ACCEPTING != 0));
            }
        }
    }
    if unread {
        Listed::Unknown
    } else {
        Listed::Absent
    }
}

/// The sides of a pipe or FIFO a description is on, by its access mode (the
/// permission bits of its /proc/PID/fd link).
pub(super) fn pipe_sides(link_mode: Option<u32>) -> Vec<&'static str> {
    let mode = link_mode.unwrap_or(0);
    let mut sides = Vec::new();
    if mode & libc::S_IRUSR != 0 {
        sides.push(READ);
    }
    if mode & libc::S_IWUSR != 0 {
        sides.push(WRITE);
    }
    sides
}

/// The index of the pty slave numbered `rdev`; `None` for another device.
pub(super) fn pty_index_of_rdev(rdev: u64) -> Option<u64> {
    PTS_MAJORS
        .contains(&major(rdev))
        .then(|| (major(rdev) - PTS_MAJORS.start()) * 256 + minor(rdev))
}

/// A pty master's index (its fdinfo `tty-index`), `None` where the kernel shows none.
pub(super) fn tty_index(pid: Pid, fd: Fd) -> Option<u64> {
    let path = CString::new(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    fdinfo_field(&sys::read_small_file(&path).ok()?, b"tty-index:")
}

fn major(rdev: u64) -> u64 {
    ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff)
}

fn minor(rdev: u64) -> u64 {
    (rdev & 0xff) | ((rdev >> 12) & !0xff)
}

fn pts_rdev(index: u64) -> u64 {
    let (major, minor) = (PTS_MAJORS.start() + index / 256, index % 256);
    (major << 8) | minor
}

/// Per description of `scan`, the sides of the channel it is on; none for a
/// description of the ends' files that belongs to another channel (another pty's
/// master, another eventfd).
fn sides_of(
    plan: &Plan,
    scan: &ScanReport,
    asked: &[FileRef],
    partial: &mut Option<String>,
) -> Vec<Vec<&'static str>> {
    let index_of =
        |d: &super::scan::Description| d.members.first().and_then(|&(p, f)| tty_index(p, f));
    let masters: Vec<Option<u64>> = scan
        .descriptions
        .iter()
        .zip(&scan.files)
        .map(|(d, f)| (f.rdev == PTMX_RDEV).then(|| index_of(d)).flatten())
        .collect();
    if plan.kind == PTY {
        *partial = partial
            .take()
            .or_else(|| pty_ambiguity(plan, scan, &masters));
    }
    scan.descriptions
        .iter()
        .zip(&scan.files)
        .enumerate()
        .map(|(i, (d, file))| match plan.kind {
            PIPE | FIFO => pipe_sides(d.described.1),
            UNIX => match plan.socket {
                Some((own, _)) if file.key == own => vec![SOCKET],
                Some((_, Some(peer))) if file.key == peer => vec![PEER],
                _ => Vec::new(),
            },
            PTY if file.rdev == PTMX_RDEV => {
                let index = masters.get(i).copied().flatten();
                if index.is_some() && index == plan.pty {
                    vec![MASTER]
                } else {
                    Vec::new()
                }
            }
            // A slave asked: another devpts instance's pty of the same number is another pty.
            PTY if plan.instance.is_some_and(|dev| dev != file.key.0) => Vec::new(),
            PTY => vec![SLAVE],
            _ if d.members.iter().any(|r| asked.contains(r)) => vec![COUNTER],
            _ => Vec::new(),
        })
        .collect()
}

/// Why a pty's ends may mix two ptys: each pty has one master description, so two of
/// one index are two devpts instances' (a container's and the host's), and a master
/// asked cannot be tied to the instance of its slaves when they span several.
fn pty_ambiguity(plan: &Plan, scan: &ScanReport, masters: &[Option<u64>]) -> Option<String> {
    let index = plan.pty?;
    let same_index = masters.iter().filter(|m| **m == Some(index)).count();
    if same_index > 1 {
        return Some(format!(
            "{same_index} pty masters (of as many devpts instances) share index {index}: \
             which one the slave belongs to cannot be read"
        ));
    }
    let instances: HashSet<u64> = scan
        .files
        .iter()
        .filter(|f| f.rdev != PTMX_RDEV && f.mode & libc::S_IFMT == libc::S_IFCHR)
        .map(|f| f.key.0)
        .collect();
    (plan.instance.is_none() && instances.len() > 1).then(|| {
        format!(
            "{} devpts instances number a pty {index}: which slaves are this master's \
             cannot be read",
            instances.len()
        )
    })
}

/// Keeps the descriptions of `scan` marked in `kept`, with what goes with each.
fn retain(scan: &mut ScanReport, kept: &[bool]) {
    keep(&mut scan.descriptions, kept);
    keep(&mut scan.keys, kept);
    keep(&mut scan.offsets, kept);
    keep(&mut scan.files, kept);
    scan.fds_classified = scan.descriptions.iter().map(|d| d.members.len()).sum();
}

fn keep<T>(list: &mut Vec<T>, kept: &[bool]) {
    let mut marks = kept.iter();
    list.retain(|_| marks.next().copied().unwrap_or(false));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::testing::fail_syscall_in_this_thread;
    use std::os::fd::AsRawFd;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::UnixStream;

    fn ask(fd: Fd) -> Result<EndpointsReport, Failure> {
        let me = sys::getpid();
        endpoints(me, fd, &[me], false, &mut |_, _| false, &mut || false)
    }

    #[test]
    fn a_socketpair_ends_at_its_peer() {
        let (a, b) = UnixStream::pair().unwrap();
        let found = ask(a.as_raw_fd()).unwrap();
        assert_eq!((found.kind, found.partial), (Some(UNIX), None));
        assert_eq!(found.sides, vec![vec![SOCKET], vec![PEER]]);
        let me = sys::getpid();
        let members: Vec<_> = found
            .scan
            .descriptions
            .iter()
            .map(|d| d.members.clone())
            .collect();
        assert_eq!(
            members,
            vec![vec![(me, a.as_raw_fd())], vec![(me, b.as_raw_fd())]]
        );
    }

    #[test]
    fn refused_sock_diag_gives_the_own_end_and_says_why() {
        let (a, _b) = UnixStream::pair().unwrap();
        for errno in [libc::EPERM, libc::ENOSYS, libc::EAFNOSUPPORT] {
            let found = std::thread::scope(|s| {
                s.spawn(|| {
                    fail_syscall_in_this_thread(libc::SYS_socket, errno);
                    ask(a.as_raw_fd())
                })
                .join()
                .unwrap()
            })
            .unwrap();
            assert_eq!(found.kind, Some(UNIX));
            assert_eq!(found.sides, vec![vec![SOCKET]]);
            let why = found.partial.unwrap();
            assert!(why.starts_with("sock_diag is refused here ("), "{why}");
            assert!(why.ends_with("the socket's peer cannot be read"), "{why}");
        }
    }

    #[test]
    fn refused_sock_diag_still_knows_a_listener_and_a_tcp_socket() {
        let name = format!("kcmp-rs-endpoints-{}", sys::getpid());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
        let listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (heard, other) = std::thread::scope(|s| {
            s.spawn(|| {
                fail_syscall_in_this_thread(libc::SYS_socket, libc::EPERM);
                (ask(listener.as_raw_fd()), ask(tcp.as_raw_fd()))
            })
            .join()
            .unwrap()
        });
        let heard = heard.unwrap();
        assert_eq!((heard.kind, heard.partial), (Some(UNIX), None));
        let other = other.unwrap();
        assert_eq!((other.kind, other.file_type.as_str()), (None, "SOCK"));
    }

    #[test]
    fn a_regular_file_is_no_channel() {
        let f = std::fs::File::open("/proc/self/status").unwrap();
        let found = ask(f.as_raw_fd()).unwrap();
        assert_eq!((found.kind, found.file_type.as_str()), (None, "REG"));
        assert!(found.scan.descriptions.is_empty());
    }

    #[test]
    fn device_numbers_round_trip() {
        for index in [0, 1, 255, 256, 1000, 2047] {
            let rdev = pts_rdev(index);
            assert!(PTS_MAJORS.contains(&major(rdev)), "{index}");
            assert_eq!(
                (major(rdev) - PTS_MAJORS.start()) * 256 + minor(rdev),
                index
            );
        }
        assert_eq!((major(PTMX_RDEV), minor(PTMX_RDEV)), (5, 2));
    }
}
