use super::*;

/// Values with every kind read as `v` (the pid's group), in no container.
fn values(v: &str) -> Values {
    Values {
        kinds: std::array::from_fn(|_| Some(v.as_bytes().to_vec())),
        container: None,
    }
}

fn seen(kind: &str, members: &[FileRef]) -> Seen {
    Seen {
        kind: kind.to_string(),
        members: members.to_vec(),
    }
}

fn tables(readers: &[Pid]) -> Vec<Vec<Pid>> {
    readers.iter().map(|&p| vec![p]).collect()
}

fn kind_index(name: &str) -> usize {
    Boundary::KINDS.iter().position(|&k| k == name).unwrap()
}

#[test]
fn fds_are_counted_by_container_and_type() {
    let mut by_pid: HashMap<Pid, Values> = HashMap::default();
    let mut boxed = values("a");
    boxed.container = Some(("podman", "abc".to_string()));
    by_pid.insert(10, boxed);
    by_pid.insert(20, values("a"));
    let found = count(
        &[
            seen("FIFO", &[(10, 3), (20, 4)]),
            seen("REG", &[(10, 5), (10, 6)]),
            seen("REG", &[(20, 7)]),
        ],
        &tables(&[10, 20]),
        &by_pid,
    );
    let row = |r: &str, id: &str, t: &str, n| (r.to_string(), id.to_string(), t.to_string(), n);
    assert_eq!(
        found.fds,
        vec![
            row("", "", "FIFO", 1),
            row("", "", "REG", 1),
            row("podman", "abc", "FIFO", 1),
            row("podman", "abc", "REG", 2),
        ]
    );
    assert_eq!(found.shared, vec![("FIFO".to_string(), 1)]);
    assert!(found.crossings.iter().all(|&(_, n)| n == 0));
    assert_eq!(found.per_reader[&10], (3, 1));
    assert_eq!(found.per_reader[&20], (2, 1));
}

#[test]
fn every_kind_is_present_in_order_zeros_included() {
    let found = count(&[], &[], &HashMap::default());
    let kinds: Vec<&str> = found.crossings.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, Boundary::KINDS);
    assert_eq!(found.crossings_undecided.len(), KINDS);
    assert!(found.fds.is_empty() && found.shared.is_empty());
}

#[test]
fn a_crossing_counts_only_the_values_read_and_an_unread_one_is_undecided() {
    let mut by_pid: HashMap<Pid, Values> = HashMap::default();
    by_pid.insert(10, values("a"));
    let mut other = values("a");
    other.kinds[kind_index("net")] = Some(b"net:[2]".to_vec());
    by_pid.insert(20, other);
    let mut unread = values("a");
    unread.kinds[kind_index("net")] = None;
    unread.kinds[kind_index("mnt")] = None;
    by_pid.insert(30, unread);
    let found = count(
        &[
            // 10 and 20 differ in net: a crossing, all read.
            seen("SOCK", &[(10, 3), (20, 3)]),
            // 10 and 30: net and mnt unread for 30, the values read agree.
            seen("SOCK", &[(10, 4), (30, 4)]),
            // All three: a net crossing among those read, and one unread.
            seen("FIFO", &[(10, 5), (20, 5), (30, 5)]),
            // One process: never a crossing nor undecided.
            seen("FIFO", &[(30, 6)]),
        ],
        &tables(&[10, 20, 30]),
        &by_pid,
    );
    let get = |rows: &[(&str, usize)], k: &str| rows.iter().find(|r| r.0 == k).unwrap().1;
    assert_eq!(get(&found.crossings, "net"), 2);
    assert_eq!(get(&found.crossings, "mnt"), 0);
    assert_eq!(get(&found.crossings_undecided, "net"), 2);
    assert_eq!(get(&found.crossings_undecided, "mnt"), 2);
    assert_eq!(get(&found.crossings_undecided, "pid"), 0);
}

#[test]
fn a_process_without_values_is_unread_for_every_kind() {
    let mut by_pid: HashMap<Pid, Values> = HashMap::default();
    by_pid.insert(10, values("a"));
    let found = count(
        &[seen("REG", &[(10, 3), (20, 3)])],
        &tables(&[10, 20]),
        &by_pid,
    );
    assert!(found.crossings_undecided.iter().all(|&(_, n)| n == 1));
    assert_eq!(
        found.fds[0],
        (String::new(), String::new(), "REG".to_string(), 2)
    );
}

#[test]
fn fd_table_sharers_hold_what_their_reader_holds_and_count_once() {
    let mut by_pid: HashMap<Pid, Values> = HashMap::default();
    by_pid.insert(10, values("a"));
    by_pid.insert(11, values("b")); // a sharer in another namespace
    by_pid.insert(20, values("a"));
    let found = count(
        &[seen("REG", &[(10, 3)]), seen("FIFO", &[(10, 4), (20, 4)])],
        &[vec![10, 11], vec![20]],
        &by_pid,
    );
    // Held by 10 and its sharer 11: shared, and a crossing of every kind.
    assert_eq!(
        found.shared,
        vec![("FIFO".to_string(), 1), ("REG".to_string(), 1)]
    );
    assert!(found.crossings.iter().all(|&(_, n)| n == 2));
    // Its fds are counted once, under the reader; the sharer has no row of its own.
    let total: usize = found.fds.iter().map(|r| r.3).sum();
    assert_eq!(total, 3);
    assert_eq!(
        found.per_reader.into_iter().collect::<Vec<_>>(),
        vec![(10, (2, 2)), (20, (1, 1))]
    );
}

#[test]
fn a_reader_without_fds_has_a_row_of_zeros() {
    let found = count(&[], &tables(&[7]), &HashMap::default());
    assert_eq!(found.per_reader[&7], (0, 0));
}

fn channel(kind: &'static str, read: &[usize], write: &[usize]) -> Channel {
    Channel {
        kind,
        ends: vec![(READ, read.to_vec()), (WRITE, write.to_vec())],
    }
}

#[test]
fn one_sided_channels_are_counted_by_the_side_nobody_holds() {
    let found = unpaired(&[
        channel(PIPE, &[], &[0]),
        channel(PIPE, &[], &[1, 2]),
        channel(PIPE, &[3], &[]),
        channel(FIFO, &[4], &[]),
    ]);
    assert_eq!(
        found,
        vec![
            ("pipe", "reader", 2),
            ("pipe", "writer", 1),
            ("fifo", "reader", 0),
            ("fifo", "writer", 1),
        ]
    );
    assert!(unpaired(&[]).iter().all(|r| r.2 == 0));
    assert_eq!(unpaired(&[]).len(), 4);
}

#[test]
fn an_o_rdwr_fifo_is_on_both_sides_and_never_one_sided() {
    // Its one description is on both ends: no side is empty, so no row counts it.
    let found = unpaired(&[channel(FIFO, &[5], &[5])]);
    assert!(found.iter().all(|r| r.2 == 0));
}

#[test]
fn epoll_statuses_are_all_present() {
    assert_eq!(
        epoll_counts(&[Status::Closed, Status::Open, Status::Closed]),
        vec![("open", 1), ("closed", 2), ("reused", 0)]
    );
    assert_eq!(
        epoll_counts(&[]),
        vec![("open", 0), ("closed", 0), ("reused", 0)]
    );
}

#[test]
fn a_skipped_reader_takes_its_table_and_a_skipped_sharer_goes_alone() {
    let skipped = vec![(10, EXITED.to_string()), (21, EXITED.to_string())];
    assert_eq!(
        kept_tables(&[vec![10, 11], vec![20, 21, 22]], &skipped),
        vec![vec![20, 22]]
    );
}

#[test]
fn a_description_gone_is_of_type_unknown() {
    assert_eq!(kind_of(&(None, None, None)), "?");
    assert_eq!(
        kind_of(&(Some(b"pipe:[3]".to_vec()), Some(0o400), None)),
        "FIFO"
    );
    assert_eq!(
        kind_of(&(Some(b"anon_inode:[eventpoll]".to_vec()), None, None)),
        EVENTPOLL
    );
}

#[test]
fn our_own_values_are_read_for_every_kind() {
    let me = crate::sys::getpid();
    let v = values_of(me);
    for (name, value) in Boundary::KINDS.iter().zip(&v.kinds) {
        let expected = Boundary::from_name(name).unwrap().value(me).ok();
        assert_eq!(value, &expected, "{name}");
    }
}

#[test]
fn a_census_of_a_child_counts_its_pipe_and_reads_its_values() {
    use std::os::fd::AsRawFd;
    let (r, w) = std::io::pipe().unwrap();
    let child = crate::sys::testing::fork_holding(&[r.as_raw_fd(), w.as_raw_fd()], 0);
    let found = census(&[child, 0x7fff_fff0], true, &mut || false);
    crate::sys::testing::kill(child);
    crate::sys::testing::reap(child);
    let found = found.unwrap();
    assert_eq!(found.processes_read, 1);
    assert_eq!(
        found.skipped,
        vec![(0x7fff_fff0, "no such process".to_string())]
    );
    assert!(found.counts.fds.iter().any(|r| r.2 == "FIFO" && r.3 >= 2));
    let rows = found.per_process.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, child);
    assert_eq!(found.epoll, vec![("open", 0), ("closed", 0), ("reused", 0)]);
    assert_eq!(found.syscalls.len(), 4);
}
