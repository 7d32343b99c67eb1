//! Benchmark helper: the syscall floor of one fd classification.
//!
//! Runs the real classification once through a recording wrapper around
//! [`FileOracle`], then replays exactly the recorded syscalls (`fstat` /
//! `fstatat` for keys, `kcmp` for compares, `F_DUPFD_QUERY` for equality
//! tests, and the per-process bookkeeping: the KCMP_FILES test telling whether
//! a pid shares our fd table, pid tracking, /proc/PID/fd opens, the final
//! reuse check) in a tight loop with no engine logic and no PyO3. The time of
//! a replay is what the kernel work alone costs; the engine's time over it is
//! the library's overhead. The full engine (same oracle, same input, no Python
//! conversions) is timed too, so a caller can split the overhead into
//! engine/oracle logic and binding conversions.
//!
//! The recorder mirrors which syscall `FileOracle` issues for each operation
//! (see `FileOracle::is_local`, `key`, `same`); runs that hit its rare paths
//! (fds vanishing, F_DUPFD_QUERY refused mid-batch, thread ids) are replayed
//! only approximately.
//!
//! Plain Rust, never PyO3 (`py` binds it). Built only with the `bench` feature (`make
//! bench`), never into the shipped wheel. The pidfd bound is the oracle's own
//! (`oracle::pidfd_cap`), so the replay cannot drift from it.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::AsRawFd;

use crate::sys::HeldFd;
use std::time::Instant;

use crate::engine::{self, GroupOrder, Key, Missing, Oracle, OracleError, Stats};
use crate::error::Failure;
use crate::oracle::{self, FileOptions, FileOracle, FileRef};
use crate::support;
use crate::sys::{self, Fd, KcmpOrder, Pid};

/// One oracle operation that reached the kernel, with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `kcmp(me, pid, KCMP_FILES)`: the first time the oracle asks whether `pid`
    /// shares our fd table.
    FilesTest(Pid),
    /// A key: `fstat(fd)` when `local` (our fd table), else `fstatat(/proc/PID/fd, "N")`.
    Key { r: FileRef, local: bool },
    /// `kcmp(a.pid, b.pid, KCMP_FILE, a.fd, b.fd)`.
    Compare(FileRef, FileRef),
    /// `fcntl(a, F_DUPFD_QUERY, b)` (both fds in our fd table).
    Same(Fd, Fd),
}

/// Delegates every call to the inner oracle and records the syscalls it makes.
/// A `same` the inner oracle answers `None` without asking the kernel (fds of
/// another process, kcmp available) records nothing.
struct Recorder<O> {
    inner: O,
    me: Pid,
    use_kcmp: bool,
    dupfd_query: bool,
    local: HashMap<Pid, bool>,
    ops: Vec<Op>,
}

impl<O> Recorder<O> {
    /// `FileOracle::is_local`, recording its one KCMP_FILES call per pid.
    fn is_local(&mut self, pid: Pid) -> bool {
        if pid == self.me {
            return true;
        }
        if let Some(&l) = self.local.get(&pid) {
            return l;
        }
        let l = self.use_kcmp && {
            self.ops.push(Op::FilesTest(pid));
            sys::kcmp(self.me, pid, sys::KCMP_FILES, 0, 0) == Ok(KcmpOrder::Equal)
        };
        self.local.insert(pid, l);
        l
    }
}

impl<O: Oracle<Item = FileRef>> Oracle for Recorder<O> {
    type Item = FileRef;
    type Error = O::Error;

    fn key(&mut self, r: FileRef) -> Result<Key, OracleError<FileRef, O::Error>> {
        let local = self.is_local(r.0);
        self.ops.push(Op::Key { r, local });
        self.inner.key(r)
    }

    fn can_order(&self) -> bool {
        self.inner.can_order()
    }

    fn compare(
        &mut self,
        a: FileRef,
        b: FileRef,
    ) -> Result<Ordering, OracleError<FileRef, O::Error>> {
        self.ops.push(Op::Compare(a, b));
        self.inner.compare(a, b)
    }

    fn same(
        &mut self,
        a: FileRef,
        b: FileRef,
    ) -> Result<Option<bool>, OracleError<FileRef, O::Error>> {
        if self.dupfd_query && self.is_local(a.0) && self.is_local(b.0) {
            self.ops.push(Op::Same(a.1, b.1));
        }
        self.inner.same(a, b)
    }

    fn checkpoint(&mut self) -> Result<(), O::Error> {
        self.inner.checkpoint()
    }

    fn undecided_error(&mut self, a: FileRef, b: FileRef) -> O::Error {
        self.inner.undecided_error(a, b)
    }

    fn churn_error(&mut self) -> Option<O::Error> {
        // Forwarded: the end-of-batch check makes syscalls of its own.
        self.inner.churn_error()
    }
}

/// A recorded op ready to replay: paths and names are built beforehand, so the
/// replay loop does syscalls only.
enum Replay {
    /// `kcmp(me, pid, KCMP_FILES)`.
    FilesTest(Pid),
    /// `fstat` of an fd in our fd table.
    Fstat(Fd),
    /// First sight of another pid: what `PidGuard::track` does (a pidfd for the
    /// first `oracle::pidfd_cap()` pids, then a read of /proc/PID/stat for the start
    /// time).
    Track(Pid),
    /// The oracle switches to another pid's /proc/PID/fd (closing the previous one).
    OpenDir(CString),
    /// `fstatat` of /proc/PID/fd/N in the current directory.
    Fstatat(CString),
    Kcmp(Pid, Pid, Fd, Fd),
    DupfdQuery(Fd, Fd),
}

/// What [`syscall_floor`] measured, in seconds per round.
pub struct Measured {
    /// Replays of the recorded syscalls alone.
    pub floor: Vec<f64>,
    /// Full classifications (engine + FileOracle, no Python), same input.
    pub engine: Vec<f64>,
    /// The engine's counts for the recorded run.
    pub stats: Stats,
    /// Operations replayed per round (each one syscall, except a start-time
    /// read of /proc/PID/stat: open, read, close).
    pub syscalls: usize,
}

fn opts() -> FileOptions {
    FileOptions {
        order: GroupOrder::Fd,
        missing: Missing::Raise,
        allow_pidfd_getfd: false,
        report_undecided: false,
    }
}

fn classify_once(refs: &[FileRef]) -> Result<Stats, Failure> {
    oracle::classify_files(refs, opts(), || false).map(|c| c.stats)
}

/// Turns the recorded ops into replay steps, adding the per-process
/// bookkeeping `FileOracle::key` does for another process's fds. Returns the
/// steps and the pids tracked (checked once more at the end, as `finish` does).
fn plan(ops: &[Op]) -> Result<(Vec<Replay>, Vec<Pid>), Failure> {
    let mut steps = Vec::with_capacity(ops.len());
    let mut tracked: Vec<Pid> = Vec::new();
    let mut dir_pid: Option<Pid> = None;
    for op in ops {
        match *op {
            Op::FilesTest(p) => steps.push(Replay::FilesTest(p)),
            Op::Key { r, local: true } => steps.push(Replay::Fstat(r.1)),
            Op::Key { r: (p, fd), .. } => {
                if !tracked.contains(&p) {
                    tracked.push(p);
                    steps.push(Replay::Track(p));
                }
                if dir_pid != Some(p) {
                    dir_pid = Some(p);
                    let path = CString::new(format!("/proc/{p}/fd"))
                        .map_err(|_| Failure::NoProcess { pid: p })?;
                    steps.push(Replay::OpenDir(path));
                }
                let name =
                    CString::new(fd.to_string()).map_err(|_| Failure::NotOpen { pid: p, fd })?;
                steps.push(Replay::Fstatat(name));
            }
            Op::Compare(a, b) => steps.push(Replay::Kcmp(a.0, b.0, a.1, b.1)),
            Op::Same(a, b) => steps.push(Replay::DupfdQuery(a, b)),
        }
    }
    Ok((steps, tracked))
}

/// One replay of `steps`; answers are discarded, only their cost matters. `cap` is
/// the oracle's pidfd bound for a batch.
fn replay(steps: &[Replay], me: Pid, cap: usize) {
    let mut pidfds: Vec<HeldFd> = Vec::new();
    let mut start_times: Vec<Pid> = Vec::new();
    let mut dir: Option<HeldFd> = None;
    for step in steps {
        let _ = std::hint::black_box(match step {
            Replay::FilesTest(p) => sys::kcmp(me, *p, sys::KCMP_FILES, 0, 0).is_ok(),
            Replay::Fstat(fd) => sys::fstat_key(*fd).is_ok(),
            Replay::Track(p) if pidfds.len() < cap => match sys::pidfd_open(*p, 0) {
                Ok(fd) => {
                    pidfds.push(fd);
                    true
                }
                Err(_) => false,
            },
            Replay::Track(p) => {
                start_times.push(*p);
                sys::start_time(*p).is_ok()
            }
            Replay::OpenDir(path) => {
                drop(dir.take()); // closes the previous directory first, as the oracle does
                dir = sys::open_dir(path).ok();
                dir.is_some()
            }
            Replay::Fstatat(name) => match &dir {
                Some(d) => sys::fstatat_key(d.as_raw_fd(), name).is_ok(),
                None => false,
            },
            Replay::Kcmp(p1, p2, a, b) => sys::kcmp(*p1, *p2, sys::KCMP_FILE, *a, *b).is_ok(),
            Replay::DupfdQuery(a, b) => sys::dupfd_query(*a, *b).is_ok(),
        });
    }
    drop(dir);
    // `PidGuard::vanished`: each pid checked once more.
    for fd in &pidfds {
        let _ = std::hint::black_box(sys::pidfd_alive(fd));
    }
    for &p in &start_times {
        let _ = std::hint::black_box(sys::start_time(p));
    }
}

/// Times `rounds` replays of the syscalls one `classify_files(refs)` makes (for
/// `classify_fds(pid, fds)`: refs = (pid, fd) pairs), and `rounds` full
/// classifications (interleaved, so drift hits both alike).
pub fn syscall_floor(refs: &[FileRef], rounds: usize) -> Result<Measured, Failure> {
    let me = sys::getpid();
    let mut rec = Recorder {
        inner: FileOracle::new(opts()),
        me,
        use_kcmp: support::kcmp_usable(),
        dupfd_query: support::dupfd_query_usable(),
        local: HashMap::new(),
        ops: Vec::new(),
    };
    // The end-of-batch reuse check of `classify_files` is replayed below (each
    // tracked pid checked once more); a batch it would rerun is not expected here.
    let (_, stats) =
        engine::classify(&mut rec, refs, GroupOrder::Fd, Missing::Raise).map_err(|f| match f {
            OracleError::ItemGone((pid, fd)) => Failure::NotOpen { pid, fd },
            OracleError::Fatal(failure) => failure,
        })?;
    let (steps, tracked) = plan(&rec.ops)?;
    let cap = oracle::pidfd_cap();

    let mut floor = Vec::with_capacity(rounds);
    let mut full = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        replay(&steps, me, cap);
        floor.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        std::hint::black_box(classify_once(refs)?);
        full.push(t.elapsed().as_secs_f64());
    }
    Ok(Measured {
        floor,
        engine: full,
        stats,
        syscalls: steps.len() + tracked.len(),
    })
}
