//! Who talks to whom in a scan (`kcmp-rs scan --ipc`): the pipes, FIFOs, Unix socket
//! pairs and ptys whose ends the scanned processes hold, each end as the scan's
//! descriptions on it. Found from what the scan already read of each description
//! (its target and modes), with one sock_diag dump per network namespace for Unix
//! socket peers, a stat for a named FIFO or a pty slave, and a pty master's fdinfo.

use std::collections::BTreeMap;

use super::endpoints::{
    pipe_sides, pty_index_of_rdev, tty_index, FIFO, MASTER, PIPE, PTY, SLAVE, SOCKET, UNIX,
};
use super::file_stat;
use super::scan::Description;
use crate::sys::{self, Pid};

/// One channel between processes: its kind and, per side, the indices of the scan's
/// descriptions on it (a FIFO description opened O_RDWR is on both sides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub kind: &'static str,
    pub ends: Vec<(&'static str, Vec<usize>)>,
}

/// What the channel search could not see, for the report to say.
pub type Notes = Vec<String>;

/// What the channel search found among a scan's descriptions.
#[derive(Debug, Default)]
pub struct Found {
    /// The channels that connect two processes or more, in the order of their first
    /// description.
    pub channels: Vec<Channel>,
    /// What could not be read (sock_diag refused: no Unix socket pair is listed).
    pub notes: Notes,
    /// The pipes and FIFOs with descriptions on one side only (the other side's list
    /// empty): an end nobody among the processes read holds.
    pub one_sided: Vec<Channel>,
}

/// The channels among `descriptions` (every description of the scan).
pub fn find(descriptions: &[Description], readers: &[Pid]) -> Found {
    let mut pipes: BTreeMap<(u8, u64, u64), Vec<usize>> = BTreeMap::new();
    let mut sockets: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    let mut masters: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    let mut slaves: BTreeMap<u64, Vec<(usize, u64)>> = BTreeMap::new();
    for (i, d) in descriptions.iter().enumerate() {
        let Some(target) = d.described.0.as_deref() else {
            continue;
        };
        let file_type = d.described.2.map(|m| m & libc::S_IFMT);
        if let Some(ino) = bracketed(target, b"pipe:[") {
            pipes.entry((0, 0, ino)).or_default().push(i);
        } else if let Some(ino) = bracketed(target, b"socket:[") {
            sockets.entry(ino).or_default().push(i);
        } else if file_type == Some(libc::S_IFIFO) {
            if let Some(f) = d.members.first().and_then(|&(p, fd)| file_stat(p, fd)) {
                pipes.entry((1, f.key.0, f.key.1)).or_default().push(i);
            }
        } else if file_type == Some(libc::S_IFCHR) {
            let Some(&(p, fd)) = d.members.first() else {
                continue;
            };
            let Some(f) = file_stat(p, fd) else { continue };
            if let Some(index) = pty_index_of_rdev(f.rdev) {
                slaves.entry(index).or_default().push((i, f.key.0));
            } else if target.ends_with(b"/ptmx") {
                if let Some(index) = tty_index(p, fd) {
                    masters.entry(index).or_default().push(i);
                }
            }
        }
    }
    let mut notes = Notes::new();
    let mut channels = Vec::new();
    for ((named, _, _), found) in pipes {
        let side = |name: &'static str| {
            let on: Vec<usize> = found
                .iter()
                .copied()
                .filter(|&i| pipe_sides(descriptions[i].described.1).contains(&name))
                .collect();
            (name, on)
        };
        let kind = if named == 0 { PIPE } else { FIFO };
        channels.push(Channel {
            kind,
            ends: vec![side(super::endpoints::READ), side(super::endpoints::WRITE)],
        });
    }
    for (index, found) in masters {
        let Some(on) = slaves.get(&index) else {
            continue;
        };
        let instances: std::collections::BTreeSet<u64> = on.iter().map(|&(_, dev)| dev).collect();
        // One master description per pty: two of one index are two devpts instances'.
        if instances.len() > 1 || found.len() > 1 {
            notes.push(format!(
                "{} devpts instances number a pty {index}: its master is not paired",
                instances.len().max(found.len())
            ));
            continue;
        }
        channels.push(Channel {
            kind: PTY,
            ends: vec![
                (MASTER, found),
                (SLAVE, on.iter().map(|&(i, _)| i).collect()),
            ],
        });
    }
    if !sockets.is_empty() {
        let (peers, unread) = socket_peers(readers);
        notes.extend(unread);
        for (&ino, found) in &sockets {
            let Some(&peer) = peers.get(&ino) else {
                continue;
            };
            let Some(other) = sockets.get(&peer) else {
                continue;
            };
            if ino < peer || peers.get(&peer) != Some(&ino) {
                channels.push(Channel {
                    kind: UNIX,
                    ends: vec![(SOCKET, found.clone()), (SOCKET, other.clone())],
                });
            }
        }
    }
    // The one pairing of pipe and FIFO ends: the census counts the one-sided ones
    // from here, before the retain below drops them.
    let (mut one_sided, mut channels): (Vec<Channel>, Vec<Channel>) =
        channels.into_iter().partition(is_one_sided);
    channels.retain(|c| connects_processes(c, descriptions));
    in_order(&mut channels);
    in_order(&mut one_sided);
    Found {
        channels,
        notes,
        one_sided,
    }
}

/// Each channel's ends ascending, the channels in the order of their first description.
fn in_order(channels: &mut [Channel]) {
    for c in channels.iter_mut() {
        for (_, on) in &mut c.ends {
            on.sort_unstable();
        }
    }
    channels.sort_by_key(|c| {
        c.ends
            .iter()
            .filter_map(|(_, on)| on.first())
            .min()
            .copied()
    });
}

/// A pipe or FIFO with descriptions on exactly one of its two sides.
fn is_one_sided(c: &Channel) -> bool {
    (c.kind == PIPE || c.kind == FIFO) && c.ends.iter().filter(|(_, on)| on.is_empty()).count() == 1
}

/// Whether a channel has an end on each side and its ends' holders are two
/// processes or more.
fn connects_processes(c: &Channel, descriptions: &[Description]) -> bool {
    if c.ends.iter().any(|(_, on)| on.is_empty()) {
        return false;
    }
    let mut pids = c
        .ends
        .iter()
        .flat_map(|(_, on)| on.iter())
        .flat_map(|&i| descriptions[i].members.iter().map(|&(p, _)| p));
    let Some(first) = pids.next() else {
        return false;
    };
    pids.any(|p| p != first)
}

/// The number in `prefix[N]`.
fn bracketed(target: &[u8], prefix: &[u8]) -> Option<u64> {
    let rest = target.strip_prefix(prefix)?.strip_suffix(b"]")?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

/// Every Unix socket's peer in the network namespaces of `readers`, one dump per
/// namespace; with what could not be read (sock_diag refused, a namespace unread).
fn socket_peers(readers: &[Pid]) -> (BTreeMap<u64, u64>, Notes) {
    let mut peers = BTreeMap::new();
    let Some(&first) = readers.first() else {
        return (peers, Vec::new());
    };
    let mut unread = Vec::new();
    for (holder, ns) in super::endpoints::one_per_netns(first, readers) {
        match super::endpoints::unix_sockets_of(holder, ns) {
            Ok(sockets) => {
                peers.extend(
                    sockets
                        .into_iter()
                        .filter_map(|s| s.peer.map(|p| (s.ino, p))),
                );
            }
            Err(e) if sys::is_refusal(e) => {
                return (
                    peers,
                    vec![format!(
                        "sock_diag is refused here ({}): no Unix socket pair is listed",
                        crate::error::errno_text(e.0)
                    )],
                );
            }
            // Never a silent gap: a namespace not read (its process exited meanwhile,
            // or the dump failed) is said, and its pairs are missing.
            Err(e) => unread.push(format!(
                "the Unix sockets of process {holder}'s network namespace could not be \
                 read ({}): its socket pairs are not listed",
                crate::error::errno_text(e.0)
            )),
        }
    }
    (peers, unread)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target_of(pid: Pid, fd: i32) -> Option<Vec<u8>> {
        let path = std::ffi::CString::new(format!("/proc/{pid}/fd/{fd}")).ok()?;
        sys::readlinkat(libc::AT_FDCWD, &path).ok()
    }

    #[test]
    fn bracketed_numbers_and_strangers() {
        assert_eq!(bracketed(b"pipe:[42]", b"pipe:["), Some(42));
        assert_eq!(bracketed(b"pipe:[x]", b"pipe:["), None);
        assert_eq!(bracketed(b"socket:[7]", b"pipe:["), None);
        assert_eq!(bracketed(b"pipe:[1", b"pipe:["), None);
    }

    /// A pipe whose two ends one process holds connects nothing.
    #[test]
    fn one_process_is_no_channel() {
        use std::os::fd::AsRawFd;
        let (r, w) = std::io::pipe().unwrap();
        let me = sys::getpid();
        let describe = |fd: i32, mode: u32| Description {
            members: vec![(me, fd)],
            described: (target_of(me, fd), Some(mode), None),
            boundaries: Vec::new(),
        };
        let found = [
            describe(r.as_raw_fd(), 0o400),
            describe(w.as_raw_fd(), 0o200),
        ];
        let found = find(&found, &[me]);
        assert!(found.channels.is_empty() && found.notes.is_empty());
        assert!(found.one_sided.is_empty(), "both ends are held");
    }

    /// A write end alone is one-sided; a FIFO opened O_RDWR is on both sides.
    #[test]
    fn a_lone_end_is_one_sided_and_o_rdwr_is_both() {
        use std::os::fd::AsRawFd;
        let (_r, w) = std::io::pipe().unwrap();
        let me = sys::getpid();
        let lone = Description {
            members: vec![(me, w.as_raw_fd())],
            described: (target_of(me, w.as_raw_fd()), Some(0o200), None),
            boundaries: Vec::new(),
        };
        let found = find(&[lone], &[me]);
        assert!(found.channels.is_empty());
        assert_eq!(
            found.one_sided,
            vec![Channel {
                kind: PIPE,
                ends: vec![
                    (super::super::endpoints::READ, vec![]),
                    (super::super::endpoints::WRITE, vec![0])
                ],
            }]
        );
        // The pipe opened again O_RDWR through /proc: one description on both sides,
        // as a named FIFO opened O_RDWR is.
        let both = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/self/fd/{}", w.as_raw_fd()))
            .unwrap();
        let fd = both.as_raw_fd();
        let rdwr = Description {
            members: vec![(me, fd)],
            described: (target_of(me, fd), Some(0o600), None),
            boundaries: Vec::new(),
        };
        let found = find(&[rdwr], &[me]);
        assert!(found.one_sided.is_empty() && found.channels.is_empty());
    }
}
