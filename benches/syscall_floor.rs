//! The syscall floor of one fd classification (figure 3 of `make bench`).
//!
//! Runs the real classification once through a recording wrapper around
//! [`FileOracle`], then replays exactly the recorded syscalls (`fstat` /
//! `fstatat` for keys, `kcmp` for compares, `F_DUPFD_QUERY` for equality
//! tests, and the per-process bookkeeping: the KCMP_FILES test telling whether
//! a pid shares our fd table, pid tracking, /proc/PID/fd opens, the final
//! reuse check) in a tight loop with no engine logic. The time of a replay is
//! what the kernel work alone costs; the engine's time over it is the
//! library's overhead. The full engine (same oracle, same input) is timed too,
//! so a caller can split the overhead into engine/oracle logic and binding
//! conversions.
//!
//! The recorder mirrors which syscall `FileOracle` issues for each operation
//! (see `FileOracle::is_local`, `key`, `same`); runs that hit its rare paths
//! (fds vanishing, F_DUPFD_QUERY refused mid-batch, thread ids) are replayed
//! only approximately. The pidfd bound is the oracle's own (`oracle::pidfd_cap`),
//! so the replay cannot drift from it.
//!
//! A separate binary (`harness = false`) linking the core alone, so the shipped
//! extension carries none of it. The Python benchmarks run it as a subprocess
//! (`benches/_benchlib.py`, `syscall_floor`):
//!
//! ```text
//! syscall_floor --stdin [--rounds N] [--threads N] [--no-kcmp]
//! syscall_floor --serve [--threads N] [--no-kcmp]
//! ```
//!
//! `--stdin` reads refs from stdin, one "PID FD" a line; PID 0 means this process, so a
//! caller measuring its own fds passes them down at the same numbers and names them
//! with 0. `--threads` is the library's thread limit (`KCMP_RS_THREADS`, 0: none) and
//! `--no-kcmp` its `disable_kcmp()`, so the timed engine runs as the caller's would.
//! It prints one JSON object: `floor` and `engine` (seconds per round, interleaved),
//! `keys`, `compares`, `sames` (the engine's counts for the recorded run), `ops`
//! (operations replayed per round: each one syscall, except a start-time read of
//! /proc/PID/stat: open, read, close), `groups`, `refs` and `threads`.
//!
//! `--serve` reads the refs up to a blank line and records once; then each line of
//! stdin is a number of rounds, answered by one such JSON object a line, until EOF.
//! A benchmark interleaving rounds with its own calls then starts no process between
//! them (starting one that inherits thousands of fds slows the caller's next calls).
//!
//! Without `--stdin` (as `cargo bench` runs it) it measures a set of fds of its own:
//! 1,000 fds, 250 opens of /dev/null each dup'ed three times, and also prints a summary
//! line to stderr. Errors go to stderr with a nonzero status.
#![deny(unsafe_code)]

use std::cmp::Ordering;
use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{BufRead, Write};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::Instant;

use kcmp_rs::engine::{self, GroupOrder, Key, Missing, Oracle, OracleError, Stats};
use kcmp_rs::error::Failure;
use kcmp_rs::oracle::{self, FileOptions, FileOracle, FileRef};
use kcmp_rs::support;
use kcmp_rs::sys::{self, Fd, HeldFd, KcmpOrder, Pid};

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

/// The replay of one recorded classification, ready to time.
struct Recording {
    steps: Vec<Replay>,
    /// The engine's counts for the recorded run.
    stats: Stats,
    /// Operations replayed per round (each one syscall, except a start-time read of
    /// /proc/PID/stat: open, read, close).
    ops: usize,
    groups: usize,
    me: Pid,
    /// The oracle's pidfd bound for a batch.
    cap: usize,
}

fn opts() -> FileOptions {
    FileOptions {
        order: GroupOrder::Fd,
        missing: Missing::Raise,
        allow_pidfd_getfd: false,
        report_undecided: false,
    }
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

impl Recording {
    /// Runs the classification of `refs` once through the recorder (for
    /// `classify_fds(pid, fds)`: refs = (pid, fd) pairs).
    fn of(refs: &[FileRef]) -> Result<Recording, Failure> {
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
        let (groups, stats) = engine::classify(&mut rec, refs, GroupOrder::Fd, Missing::Raise)
            .map_err(|f| match f {
                OracleError::ItemGone((pid, fd)) => Failure::NotOpen { pid, fd },
                OracleError::Fatal(failure) => failure,
            })?;
        let (steps, tracked) = plan(&rec.ops)?;
        Ok(Recording {
            ops: steps.len() + tracked.len(),
            steps,
            stats,
            groups: groups.len(),
            me,
            cap: oracle::pidfd_cap(),
        })
    }

    /// Seconds per round of `rounds` replays and `rounds` full classifications of the
    /// same refs, interleaved so drift hits both alike. The replay runs on this thread
    /// alone; the full classification on the threads the library would use.
    fn time(&self, refs: &[FileRef], rounds: usize) -> Result<(Vec<f64>, Vec<f64>), Failure> {
        let mut floor = Vec::with_capacity(rounds);
        let mut full = Vec::with_capacity(rounds);
        for _ in 0..rounds.max(1) {
            let t = Instant::now();
            replay(&self.steps, self.me, self.cap);
            floor.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            std::hint::black_box(oracle::classify_files(refs, opts(), || false)?.stats);
            full.push(t.elapsed().as_secs_f64());
        }
        Ok((floor, full))
    }

    /// The answer to a request for rounds: one JSON object.
    fn answer(&self, refs: usize, floor: &[f64], engine: &[f64]) -> serde_json::Value {
        serde_json::json!({
            "floor": floor,
            "engine": engine,
            "keys": self.stats.keys,
            "compares": self.stats.compares,
            "sames": self.stats.sames,
            "ops": self.ops,
            "groups": self.groups,
            "refs": refs,
            "threads": kcmp_rs::pool::threads(),
        })
    }
}

/// What the command line asked for.
struct Args {
    stdin: bool,
    serve: bool,
    rounds: usize,
    threads: usize,
    no_kcmp: bool,
}

const USAGE: &str =
    "usage: syscall_floor [--stdin | --serve] [--rounds N] [--threads N] [--no-kcmp]\n\
    --stdin: refs from stdin, one \"PID FD\" a line (PID 0: this process); \
    --serve: refs up to a blank line, then a number of rounds a line, each answered; \
    neither: 1,000 fds of this process";

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        stdin: false,
        serve: false,
        rounds: 5,
        threads: 0,
        no_kcmp: false,
    };
    let number = |flag: &str, value: Option<String>| -> Result<usize, String> {
        let value = value.ok_or_else(|| format!("{flag} needs a number"))?;
        value
            .parse()
            .map_err(|_| format!("{flag}: {value:?} is not a non-negative integer"))
    };
    while let Some(arg) = argv.next() {
        match arg.as_str() {
            "--stdin" => args.stdin = true,
            "--serve" => args.serve = true,
            "--rounds" => args.rounds = number("--rounds", argv.next())?,
            "--threads" => args.threads = number("--threads", argv.next())?,
            "--no-kcmp" => args.no_kcmp = true,
            // `cargo bench` passes it to every bench binary.
            "--bench" => {}
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(args)
}

/// Refs from "PID FD" lines, up to the end of `input` or, if `to_blank`, its first
/// blank line; PID 0 is this process.
fn read_refs(input: &mut impl BufRead, me: Pid, to_blank: bool) -> Result<Vec<FileRef>, String> {
    let mut refs = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(|e| format!("reading stdin: {e}"))?;
        let n = i + 1;
        let mut fields = line.split_whitespace();
        let (pid, fd) = match (fields.next(), fields.next(), fields.next()) {
            (None, _, _) if to_blank => break,
            (None, _, _) => continue,
            (Some(pid), Some(fd), None) => (pid, fd),
            _ => return Err(format!("stdin line {n}: expected \"PID FD\": {line:?}")),
        };
        let bad = || format!("stdin line {n}: not a pid and an fd: {line:?}");
        let pid: Pid = pid.parse().map_err(|_| bad())?;
        let fd: Fd = fd.parse().map_err(|_| bad())?;
        if pid < 0 || fd < 0 {
            return Err(bad());
        }
        refs.push((if pid == 0 { me } else { pid }, fd));
    }
    Ok(refs)
}

/// Fds of this process for a run without `--stdin`: opens of one file, each dup'ed
/// three times (one inode, many descriptions: the case that needs kcmp), as many as
/// the fd limit leaves room for, at most 1,000.
fn own_fds() -> Result<Vec<File>, String> {
    let room = sys::soft_fd_limit().unwrap_or(1024).saturating_sub(64);
    let opens = room.min(1000) / 4;
    let mut files = Vec::with_capacity(opens * 4);
    for _ in 0..opens {
        let file = File::open("/dev/null").map_err(|e| format!("opening /dev/null: {e}"))?;
        for _ in 0..3 {
            files.push(file.try_clone().map_err(|e| format!("dup: {e}"))?);
        }
        files.push(file);
    }
    Ok(files)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn write_line(out: &mut impl Write, doc: &serde_json::Value) -> Result<(), String> {
    writeln!(out, "{doc}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing stdout: {e}"))
}

/// `--serve`: a recording kept for the caller's rounds, so a benchmark can interleave
/// them with its own calls without starting a process (and copying its fd table)
/// between them.
fn serve(input: &mut impl BufRead, refs: &[FileRef], rec: &Recording) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    for line in input.lines() {
        let line = line.map_err(|e| format!("reading stdin: {e}"))?;
        let rounds: usize = line
            .trim()
            .parse()
            .map_err(|_| format!("expected a number of rounds, got {line:?}"))?;
        let (floor, engine) = rec.time(refs, rounds).map_err(|f| f.message())?;
        write_line(&mut out, &rec.answer(refs.len(), &floor, &engine))?;
    }
    Ok(())
}

fn run(args: &Args) -> Result<(), String> {
    if args.no_kcmp {
        support::disable();
    }
    kcmp_rs::pool::set_thread_limit(args.threads);
    let me = sys::getpid();
    let mut input = std::io::stdin().lock();
    // Held until the measurement ends: their numbers are the refs.
    let mut held: Vec<File> = Vec::new();
    let refs = if args.stdin || args.serve {
        read_refs(&mut input, me, args.serve)?
    } else {
        held = own_fds()?;
        held.iter().map(|f| (me, f.as_raw_fd())).collect()
    };
    let rec = Recording::of(&refs).map_err(|f| f.message())?;
    if args.serve {
        return serve(&mut input, &refs, &rec);
    }
    let (floor, engine) = rec.time(&refs, args.rounds).map_err(|f| f.message())?;
    drop(held);
    write_line(
        &mut std::io::stdout().lock(),
        &rec.answer(refs.len(), &floor, &engine),
    )?;
    if !args.stdin {
        let (f, e) = (median(&floor), median(&engine));
        eprintln!(
            "syscall floor of {} own fds: floor {:.3} ms, engine {:.3} ms ({:.2}x), \
             {} ops/round, medians of {}",
            refs.len(),
            f * 1e3,
            e * 1e3,
            e / f,
            rec.ops,
            floor.len(),
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("syscall_floor: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("syscall_floor: {e}");
            ExitCode::FAILURE
        }
    }
}
