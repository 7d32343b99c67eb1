//! The entry points, in plain Rust: one function per native function of the binding.
//!
//! Arguments arrive checked (valid pids and fds, a task type where one is due); every
//! function returns a `Failure` the binding turns into a Python exception. Batch entry
//! points take `interrupted`, polled between chunks (the binding's Ctrl-C check).
//! Knows every room below it; never PyO3.

use crate::engine::{GroupOrder, Missing, Stats};
use crate::error::Failure;
use crate::liveness;
use crate::oracle;
use crate::pool;
use crate::support;
use crate::sys::{self, Fd, KcmpOrder, Pid};

pub use crate::holders::{holders, Found as HoldersFound};
pub use crate::ladder::{kcmp_checked, same_epoll_target};
pub use crate::oracle::{classify_files, classify_tasks, Classified, FileOptions, FileRef};
pub use crate::questions::census::{census, CensusReport};
pub use crate::questions::endpoints::{endpoints, EndpointsReport};
pub use crate::questions::epoll::{epoll_sets, EpollReport, Registration, Status as EpollStatus};
pub use crate::questions::escapes::{escapes, EscapesReport, Finding, Place};
pub use crate::questions::holders::HoldersReport;
pub use crate::questions::json::{
    write_epoll_to_fd, write_holders_to_fd, write_scan_to_fd, Selection,
};
pub use crate::questions::scan::{scan, scan_files, Boundary, ScanOptions, ScanReport};
pub use crate::questions::shared::{shared_files, Shared};
pub use crate::questions::{command, Pinned};
pub use crate::support::Report;

/// Whether fd `a.1` of `a.0` and fd `b.1` of `b.0` refer to one open file description.
pub fn same_file(a: FileRef, b: FileRef, allow_pidfd_getfd: bool) -> Result<bool, Failure> {
    if let Some(same) = crate::ladder::same_file_by_kcmp(a, b)? {
        return Ok(same);
    }
    // Without kcmp: the batch's fallback ladder on a batch of two.
    let opts = FileOptions {
        order: GroupOrder::Fd,
        missing: Missing::Raise,
        allow_pidfd_getfd,
        report_undecided: false,
    };
    let found = classify_files(&[a, b], opts, || false)?;
    Ok(found
        .groups
        .iter()
        .any(|g| g.contains(&a) && g.contains(&b)))
}

/// Whether two tasks share the resource `ty` (a task type: not FILE or EPOLL_TFD).
///
/// Two kernel threads compare equal for VM (neither has an address space: NULL ==
/// NULL); that is not sharing one, so the answer is false, as for zombies.
pub fn same_task(pid1: Pid, pid2: Pid, ty: i32) -> Result<bool, Failure> {
    let equal = kcmp_checked(pid1, pid2, ty, 0, 0)? == KcmpOrder::Equal;
    if equal && ty == sys::KCMP_VM && pid1 != pid2 {
        return Ok(!(sys::without_address_space(pid1) || sys::without_address_space(pid2)));
    }
    Ok(equal)
}

/// Which task resources two processes share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // one flag per kernel resource type
pub struct Sharing {
    pub vm: bool,
    pub files: bool,
    pub fs: bool,
    pub sighand: bool,
    pub io: bool,
    pub sysvsem: bool,
}

/// Every task resource two processes share, asked in the order of `Sharing`'s fields
/// (the first failure ends it).
pub fn sharing(pid1: Pid, pid2: Pid) -> Result<Sharing, Failure> {
    let same = |ty| same_task(pid1, pid2, ty);
    Ok(Sharing {
        vm: same(sys::KCMP_VM)?,
        files: same(sys::KCMP_FILES)?,
        fs: same(sys::KCMP_FS)?,
        sighand: same(sys::KCMP_SIGHAND)?,
        io: same(sys::KCMP_IO)?,
        sysvsem: same(sys::KCMP_SYSVSEM)?,
    })
}

/// The fds open in `pid`, ascending, never including the directory fd used to read them.
///
/// Another process is checked alive before the listing and found the same live process
/// after it: a zombie's table lists nothing, a dying one's lists what is left.
pub fn open_fds(pid: Pid) -> Result<Vec<Fd>, Failure> {
    let me = sys::getpid();
    let start = if pid == me {
        None
    } else {
        Some(liveness::alive(pid)?)
    };
    let fds = list_open_fds(pid, me).map_err(|f| gone_during(f, pid, start))?;
    if let Some(start) = start {
        liveness::still_alive(pid, start)?;
    }
    Ok(fds)
}

fn list_open_fds(pid: Pid, me: Pid) -> Result<Vec<Fd>, Failure> {
    let dir = oracle::open_fd_dir(pid)?;
    // A thread id of ours lists our own fd table: the crate's fds in it (this
    // directory's, other threads' pins and copies) are left out.
    let ours = pid == me
        || (support::kcmp_usable()
            && sys::kcmp(me, pid, sys::KCMP_FILES, 0, 0) == Ok(KcmpOrder::Equal));
    sys::list_table(&dir, ours)
        .map_err(|e| Failure::from_errno(e, pid, None, &format!("reading /proc/{pid}/fd")))
}

/// A failure about `pid`, seen alive at `start` when the call began: any "gone", or
/// any failure once `pid` is no longer that live process (a directory read that met
/// ENOENT because the process was reaped meanwhile), is an exit during the call.
fn gone_during(failure: Failure, pid: Pid, start: Option<u64>) -> Failure {
    let Some(start) = start else {
        return failure;
    };
    if failure.pid() == Some(pid)
        && (failure.gone_kind().is_some() || liveness::still_alive(pid, start).is_err())
    {
        Failure::Exited { pid }
    } else {
        failure
    }
}

/// Groups fds of `pid` (`None`: every open one) by open file description, with the
/// engine's counts.
///
/// One process: if it exits during the call, whatever `missing` says, the answer would
/// be partial, so the call fails with `Exited` (`missing` decides about fds only).
pub fn classify_fds(
    pid: Pid,
    fds: Option<Vec<Fd>>,
    order: GroupOrder,
    missing: Missing,
    allow_pidfd_getfd: bool,
    interrupted: impl FnMut() -> bool,
) -> Result<(Vec<Vec<Fd>>, Stats), Failure> {
    let me = sys::getpid();
    let start = if pid == me {
        None
    } else {
        Some(liveness::alive(pid)?)
    };
    let fds = match fds {
        Some(f) => f,
        None => list_open_fds(pid, me).map_err(|f| gone_during(f, pid, start))?,
    };
    let refs: Vec<FileRef> = fds.into_iter().map(|fd| (pid, fd)).collect();
    let opts = FileOptions {
        order,
        missing,
        allow_pidfd_getfd,
        report_undecided: false,
    };
    let found = classify_files(&refs, opts, interrupted).map_err(|f| gone_during(f, pid, start))?;
    if let Some(start) = start {
        liveness::still_alive(pid, start)?;
    }
    let groups = found
        .groups
        .into_iter()
        .map(|g| g.into_iter().map(|(_, fd)| fd).collect())
        .collect();
    Ok((groups, found.stats))
}

/// What this process may use; `refresh` probes everything again first. Fails (EMFILE,
/// ENFILE, ENOMEM) when a probe could not run: it cannot tell then.
pub fn support(refresh: bool) -> Result<Report, Failure> {
    if refresh {
        support::forget();
    }
    support::report()
}

/// Never issue kcmp again in this process (sandboxes that kill on it).
pub fn disable_kcmp() {
    support::disable();
}

pub use crate::pool::{set_thread_limit, threads};

pub use crate::questions::procfs::Shown;
pub use crate::questions::scan::skip_reason;

/// What a report shows of each ref (target, mode, type), in order, in parallel
/// threads; `interrupted` is polled between chunks of refs.
pub fn describe_refs(
    refs: &[FileRef],
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<Vec<Shown>, Failure> {
    pool::map_chunks(
        refs,
        |chunk| {
            chunk
                .iter()
                .map(|&r| crate::questions::procfs::show(r))
                .collect()
        },
        interrupted,
    )
}

/// Whether `pid` has exited and awaits reaping (a zombie): it keeps its pid but none of
/// the resources kcmp compares.
pub fn is_zombie(pid: Pid) -> bool {
    sys::is_zombie(pid)
}

#[cfg(test)]
mod tests;
