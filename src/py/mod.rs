//! The PyO3 binding, `kcmp_rs._native`: the only room that knows Python.
//!
//! Each function converts its arguments (`args`), calls one `api` function, without
//! the GIL where it may take long (with Ctrl-C checks between chunks of a batch), and
//! converts the result, or the `Failure`, into Python objects (`errors`). No domain
//! logic lives here: that is `api` and below, which never import PyO3.

mod args;
mod census;
mod errors;
mod escapes;
mod procfs;
mod reports;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyTuple};

use crate::error::Failure;

use errors::to_pyerr;

/// Python objects the binding hands out, looked up once: the `Order` members (returned
/// by the hot `kcmp()` path without calling the enum) and the exception classes.
struct Cached {
    orders: [Py<PyAny>; 4],
    errors: errors::Classes,
}

static CACHED: PyOnceLock<Cached> = PyOnceLock::new();

fn cached(py: Python<'_>) -> PyResult<&Cached> {
    CACHED.get_or_try_init(py, || {
        let m = py.import("kcmp_rs._errors")?;
        let order = m.getattr("Order")?;
        let member = |name: &str| order.getattr(name).map(Bound::unbind);
        Ok(Cached {
            orders: [
                member("EQUAL")?,
                member("LESS")?,
                member("GREATER")?,
                member("UNORDERED")?,
            ],
            errors: errors::Classes::load(&m)?,
        })
    })
}

/// Runs `work` without the GIL; `work` gets a closure that reports a pending signal
/// (Ctrl-C) between chunks, whose Python exception is then raised.
fn detached<T: Send>(
    py: Python<'_>,
    work: impl FnOnce(&mut dyn FnMut() -> bool) -> Result<T, Failure> + Send,
) -> PyResult<T> {
    let mut pending: Option<PyErr> = None;
    let result = py.detach(|| {
        // A closure, not the method path: `attach` needs it for every `'py`.
        #[allow(clippy::redundant_closure_for_method_calls)]
        let mut interrupted = || match Python::attach(|py| py.check_signals()) {
            Ok(()) => false,
            Err(e) => {
                pending = Some(e);
                true
            }
        };
        work(&mut interrupted)
    });
    match (result, pending) {
        (Ok(v), _) => Ok(v),
        (Err(Failure::Interrupted), Some(e)) => Err(e),
        (Err(f), _) => Err(to_pyerr(py, &f)),
    }
}

/// Groups as a list of tuples.
fn tuples<'py, T: IntoPyObject<'py> + Copy>(
    py: Python<'py>,
    groups: Vec<Vec<T>>,
) -> PyResult<Bound<'py, PyList>> {
    let tuples = groups
        .into_iter()
        .map(|g| PyTuple::new(py, g))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, tuples)
}

/// Groups and the refs no exact method could decide.
type Partial<'py> = (Bound<'py, PyList>, Vec<(crate::sys::Pid, crate::sys::Fd)>);

/// `shared_files`' answer: shared, reopened, same fd table, undecided.
type SharedAnswer = (
    Vec<(Vec<crate::sys::Fd>, Vec<crate::sys::Fd>)>,
    Vec<(Vec<crate::sys::Fd>, Vec<crate::sys::Fd>)>,
    bool,
    Vec<(crate::sys::Pid, crate::sys::Fd)>,
);

/// `detached` for a pass that reports progress: `work` gets a callback that calls
/// `progress(done, total)` with the GIL (when given) and answers true once it raised;
/// that exception, which ended the pass, is the one raised here.
fn detached_with_progress<T: Send>(
    py: Python<'_>,
    progress: Option<Bound<'_, PyAny>>,
    work: impl FnOnce(&mut dyn FnMut(usize, usize) -> bool, &mut dyn FnMut() -> bool) -> Result<T, Failure>
        + Send,
) -> PyResult<T> {
    let callback: Option<Py<PyAny>> = progress.map(Bound::unbind);
    let mut raised: Option<PyErr> = None;
    let done = detached(py, |stop| {
        let mut tell = |done: usize, total: usize| {
            let Some(callback) = callback.as_ref() else {
                return false;
            };
            match Python::attach(|py| callback.call1(py, (done, total)).map(|_| ())) {
                Ok(()) => false,
                Err(e) => {
                    raised = Some(e);
                    true
                }
            }
        };
        work(&mut tell, stop)
    });
    match (done, raised) {
        (Ok(v), None) => Ok(v),
        (_, Some(e)) | (Err(e), None) => Err(e),
    }
}

/// `classify_files` and `classify_files_partial` after their argument checks.
fn classify_refs(
    py: Python<'_>,
    refs: &Bound<'_, PyAny>,
    missing: args::Optional<'_>,
    allow_pidfd_getfd: args::Optional<'_>,
    report_undecided: bool,
) -> PyResult<crate::api::Classified> {
    use args::{arg, Flag, MissingPolicy, Refs};
    let Refs(refs) = arg(refs, "refs")?;
    let MissingPolicy(missing) = missing.or("missing", MissingPolicy::DEFAULT)?;
    let Flag(allow) = allow_pidfd_getfd.or("allow_pidfd_getfd", Flag(false))?;
    let opts = crate::api::FileOptions {
        order: crate::engine::GroupOrder::Fd,
        missing,
        allow_pidfd_getfd: allow,
        report_undecided,
    };
    detached(py, |stop| crate::api::classify_files(&refs, opts, stop))
}

// Free-threading safe: the only global state is atomics (`support`) and a
// once-initialised cache of Python objects (`CACHED`).
#[pymodule(gil_used = false)]
pub mod _native {
    use super::args::{
        arg, Fd, Fds, Flag, Index, IndexType, MissingPolicy, Optional, Order, Pid, Pids, TaskType,
    };
    #[pymodule_export]
    use super::census::{census, CensusReport};
    #[pymodule_export]
    use super::procfs::{
        boundary_value, commands, descendants, describe_refs, leak_snapshot, list_pids,
    };
    #[pymodule_export]
    use super::reports::{EpollReport, HoldersReport, ScanReport};
    use super::{cached, classify_refs, detached, to_pyerr, tuples, Partial};
    use crate::api;
    use pyo3::prelude::*;
    use pyo3::types::{PyBytes, PyList, PyTuple};

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }

    /// Compare a kernel resource of two processes; the kernel's order as an ``Order``.
    ///
    /// ``pid1``, ``pid2``: process or thread ids. ``type``: the ``KcmpType`` compared.
    /// ``idx1``/``idx2``: fds of ``pid1`` and ``pid2`` for ``KcmpType.FILE``, ignored
    /// otherwise.
    ///
    /// Returns an ``Order``: ``EQUAL`` when one kernel object is behind both, else the
    /// kernel's ordering of the two (``LESS``, ``GREATER``).
    ///
    /// Raises ValueError for ``KcmpType.EPOLL_TFD`` (use ``same_epoll_target``), TypeError
    /// or ValueError for bad arguments, and a ``KcmpError`` (also the OSError subclass
    /// Python picks by errno), with ``pid`` and ``fd`` naming what was at fault:
    /// ``ProcessGoneError`` (a process does not exist or is a zombie), ``FdNotOpenError``,
    /// ``ProcessAccessError`` (ptrace read access refused), ``KcmpUnavailableError``
    /// (kcmp(2) blocked or disabled).
    #[pyfunction]
    #[pyo3(signature = (pid1, pid2, r#type, idx1 = Optional::Absent, idx2 = Optional::Absent))]
    #[pyo3(text_signature = "(pid1, pid2, type, idx1=0, idx2=0)")]
    fn kcmp(
        py: Python<'_>,
        pid1: &Bound<'_, PyAny>,
        pid2: &Bound<'_, PyAny>,
        r#type: &Bound<'_, PyAny>,
        idx1: Optional<'_>,
        idx2: Optional<'_>,
    ) -> PyResult<Py<PyAny>> {
        let Pid(pid1) = arg(pid1, "pid1")?;
        let Pid(pid2) = arg(pid2, "pid2")?;
        let IndexType(ty) = arg(r#type, "type")?;
        let Fd(idx1) = idx1.or("idx1", Fd(0))?;
        let Fd(idx2) = idx2.or("idx2", Fd(0))?;
        let order = api::kcmp_checked(pid1, pid2, ty, idx1, idx2).map_err(|f| to_pyerr(py, &f))?;
        Ok(cached(py)?.orders[order as usize].clone_ref(py))
    }

    /// Whether fd1 of pid1 and fd2 of pid2 refer to one open file description.
    ///
    /// ``pid1``, ``pid2``: process or thread ids; ``fd1``, ``fd2``: an fd of each. Uses
    /// kcmp(2); where it is unusable, exact fallbacks for this process's fds, and with
    /// ``allow_pidfd_getfd=True`` for other processes' fds too (a temporary copy, whose
    /// close runs the file's flush).
    ///
    /// Returns True when the two fds share one description (dup, fork, SCM_RIGHTS).
    ///
    /// Raises ``ProcessGoneError`` (a ``ProcessLookupError``) when a process does not exist
    /// or is a zombie, ``FdNotOpenError`` when an fd is not open, ``ProcessAccessError`` (a
    /// ``PermissionError``) when ptrace read access is refused, ``KcmpUnavailableError``
    /// when neither kcmp(2) nor an exact fallback can decide, TypeError or ValueError for
    /// bad arguments.
    #[pyfunction]
    #[pyo3(signature = (pid1, fd1, pid2, fd2, *, allow_pidfd_getfd = Optional::Absent))]
    #[pyo3(text_signature = "(pid1, fd1, pid2, fd2, *, allow_pidfd_getfd=False)")]
    fn same_file(
        py: Python<'_>,
        pid1: &Bound<'_, PyAny>,
        fd1: &Bound<'_, PyAny>,
        pid2: &Bound<'_, PyAny>,
        fd2: &Bound<'_, PyAny>,
        allow_pidfd_getfd: Optional<'_>,
    ) -> PyResult<bool> {
        let Pid(pid1) = arg(pid1, "pid1")?;
        let Fd(fd1) = arg(fd1, "fd1")?;
        let Pid(pid2) = arg(pid2, "pid2")?;
        let Fd(fd2) = arg(fd2, "fd2")?;
        let Flag(allow) = allow_pidfd_getfd.or("allow_pidfd_getfd", Flag(false))?;
        api::same_file((pid1, fd1), (pid2, fd2), allow).map_err(|f| to_pyerr(py, &f))
    }

    /// Whether the two tasks share the resource ``type`` (not FILE or EPOLL_TFD).
    ///
    /// An "equal" between two distinct pids is refused when either is a zombie, whose
    /// absent resources compare equal to every other zombie's.
    #[pyfunction]
    #[pyo3(text_signature = "(pid1, pid2, type)")]
    fn same_task(
        py: Python<'_>,
        pid1: &Bound<'_, PyAny>,
        pid2: &Bound<'_, PyAny>,
        r#type: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let Pid(pid1) = arg(pid1, "pid1")?;
        let Pid(pid2) = arg(pid2, "pid2")?;
        let TaskType(ty) = arg(r#type, "type")?;
        api::same_task(pid1, pid2, ty).map_err(|f| to_pyerr(py, &f))
    }

    /// (vm, files, fs, sighand, io, sysvsem) shared by the two processes.
    ///
    /// One kcmp(2) call per resource type, in that order; the first failure raises.
    #[pyfunction]
    #[pyo3(text_signature = "(pid1, pid2)")]
    fn sharing(
        py: Python<'_>,
        pid1: &Bound<'_, PyAny>,
        pid2: &Bound<'_, PyAny>,
    ) -> PyResult<(bool, bool, bool, bool, bool, bool)> {
        let Pid(pid1) = arg(pid1, "pid1")?;
        let Pid(pid2) = arg(pid2, "pid2")?;
        let s = api::sharing(pid1, pid2).map_err(|f| to_pyerr(py, &f))?;
        Ok((s.vm, s.files, s.fs, s.sighand, s.io, s.sysvsem))
    }

    /// Whether ``fd`` of ``pid1`` is the file registered in epoll set ``epfd`` of
    /// ``pid2`` under ``target_fd`` (its ``target_index``-th registration).
    ///
    /// ``target_fd`` is the fd number used when it was added; it may be closed since.
    ///
    /// Returns True when the registered file is the file of ``fd``.
    ///
    /// Raises ``FdNotOpenError`` when ``fd`` or ``epfd`` is not open, a ``KcmpError``
    /// (EINVAL) when ``epfd`` is not an epoll fd, ``KcmpFileNotFoundError`` (a
    /// ``FileNotFoundError``) when the set has no such registration, ``ProcessGoneError``,
    /// ``ProcessAccessError``, ``KcmpUnavailableError`` where kcmp(2) is blocked (nothing
    /// else can tell), TypeError or ValueError for bad arguments.
    #[pyfunction]
    #[pyo3(signature = (pid1, fd, pid2, epfd, target_fd, target_index = Optional::Absent))]
    #[pyo3(text_signature = "(pid1, fd, pid2, epfd, target_fd, target_index=0)")]
    fn same_epoll_target(
        py: Python<'_>,
        pid1: &Bound<'_, PyAny>,
        fd: &Bound<'_, PyAny>,
        pid2: &Bound<'_, PyAny>,
        epfd: &Bound<'_, PyAny>,
        target_fd: &Bound<'_, PyAny>,
        target_index: Optional<'_>,
    ) -> PyResult<bool> {
        let Pid(pid1) = arg(pid1, "pid1")?;
        let Fd(fd) = arg(fd, "fd")?;
        let Pid(pid2) = arg(pid2, "pid2")?;
        let Fd(epfd) = arg(epfd, "epfd")?;
        let Fd(target_fd) = arg(target_fd, "target_fd")?;
        let Index(index) = target_index.or("target_index", Index(0))?;
        api::same_epoll_target(pid1, fd, pid2, epfd, target_fd, index).map_err(|f| to_pyerr(py, &f))
    }

    /// The fds open in ``pid``, ascending (read from /proc/PID/fd).
    ///
    /// The directory fd used to read them is never listed, even for this process.
    ///
    /// Returns a list of ints.
    ///
    /// Raises ``ProcessGoneError`` (a ``ProcessLookupError``) when ``pid`` does not exist or
    /// is a zombie, ``ProcessAccessError`` (a ``PermissionError``) when its fds may not be
    /// listed, TypeError or ValueError for a pid that is not one.
    #[pyfunction]
    #[pyo3(text_signature = "(pid)")]
    fn open_fds(py: Python<'_>, pid: &Bound<'_, PyAny>) -> PyResult<Vec<i32>> {
        let Pid(pid) = arg(pid, "pid")?;
        py.detach(|| api::open_fds(pid))
            .map_err(|f| to_pyerr(py, &f))
    }

    /// Group fds of ``pid`` (default: all open ones) by open file description.
    ///
    /// ``fds``: the fds to group (None: every open fd). ``order="fd"`` orders the groups by
    /// their smallest fd, ``order="kernel"`` by the kernel's order (needs kcmp).
    /// ``missing="skip"`` leaves out fds closed meanwhile instead of raising (``"raise"``).
    /// ``allow_pidfd_getfd``: where kcmp is blocked, let pidfd_getfd(2) copy another
    /// process's fds to compare them.
    ///
    /// Returns a list of groups, each a tuple of fds, ascending.
    ///
    /// Raises ``FdNotOpenError`` when an fd of ``fds`` is not open (``missing="raise"``),
    /// ``ProcessGoneError`` (a ``ProcessLookupError``) when ``pid`` does not exist or is a
    /// zombie, ``ProcessAccessError`` (a ``PermissionError``) when ptrace read access is
    /// refused, ``KcmpUnavailableError`` naming the fds no exact method could decide (kcmp
    /// blocked), ValueError for an unknown ``order`` or ``missing`` or an fd out of range,
    /// TypeError for an argument of the wrong type.
    #[pyfunction]
    #[pyo3(signature = (pid, fds = None, *, order = Optional::Absent, missing = Optional::Absent, allow_pidfd_getfd = Optional::Absent))]
    #[pyo3(
        text_signature = "(pid, fds=None, *, order='fd', missing='raise', allow_pidfd_getfd=False)"
    )]
    fn classify_fds<'py>(
        py: Python<'py>,
        pid: &Bound<'py, PyAny>,
        fds: Option<&Bound<'py, PyAny>>,
        order: Optional<'py>,
        missing: Optional<'py>,
        allow_pidfd_getfd: Optional<'py>,
    ) -> PyResult<Bound<'py, PyList>> {
        let Pid(pid) = arg(pid, "pid")?;
        let fds = match fds {
            Some(fds) => Some(arg::<Fds>(fds, "fds")?.0),
            None => None,
        };
        let Flag(allow) = allow_pidfd_getfd.or("allow_pidfd_getfd", Flag(false))?;
        let Order(order) = order.or("order", Order::DEFAULT)?;
        let MissingPolicy(missing) = missing.or("missing", MissingPolicy::DEFAULT)?;
        let (groups, _) = detached(py, |stop| {
            api::classify_fds(pid, fds, order, missing, allow, stop)
        })?;
        tuples(py, groups)
    }

    /// classify_fds with the engine's counts: (groups, keys, kcmp calls, equality checks).
    ///
    /// For tests and benchmarks that check how few syscalls a grouping takes.
    #[pyfunction]
    #[pyo3(signature = (pid, fds, order = Optional::Absent))]
    #[pyo3(text_signature = "(pid, fds, order='fd')")]
    fn classify_fds_stats<'py>(
        py: Python<'py>,
        pid: &Bound<'py, PyAny>,
        fds: &Bound<'py, PyAny>,
        order: Optional<'py>,
    ) -> PyResult<(Bound<'py, PyList>, u64, u64, u64)> {
        let Pid(pid) = arg(pid, "pid")?;
        let Fds(fds) = arg(fds, "fds")?;
        let Order(order) = order.or("order", Order::DEFAULT)?;
        let (groups, stats) = detached(py, |stop| {
            api::classify_fds(
                pid,
                Some(fds),
                order,
                crate::engine::Missing::Raise,
                false,
                stop,
            )
        })?;
        Ok((tuples(py, groups)?, stats.keys, stats.compares, stats.sames))
    }

    /// Group (pid, fd) pairs across processes by open file description.
    ///
    /// ``refs``: an iterable of ``(pid, fd)`` pairs. ``missing="skip"`` leaves out the
    /// pairs whose fd was closed or whose process is gone instead of raising
    /// (``"raise"``). ``allow_pidfd_getfd``: where kcmp is blocked, let pidfd_getfd(2) copy
    /// other processes' fds to compare them.
    ///
    /// Returns a list of groups, each a tuple of (pid, fd) pairs, ascending; groups ordered
    /// by their smallest pair.
    ///
    /// Raises ``KcmpUnavailableError`` naming the pairs no exact method could decide,
    /// ``ProcessGoneError`` (a ``ProcessLookupError``) when a process does not exist or is
    /// a zombie and ``FdNotOpenError`` when an fd is not open (``missing="raise"``),
    /// ``ProcessAccessError`` (a ``PermissionError``) when ptrace read access is refused,
    /// ValueError or TypeError for bad arguments.
    #[pyfunction]
    #[pyo3(signature = (refs, *, missing = Optional::Absent, allow_pidfd_getfd = Optional::Absent))]
    #[pyo3(text_signature = "(refs, *, missing='raise', allow_pidfd_getfd=False)")]
    fn classify_files<'py>(
        py: Python<'py>,
        refs: &Bound<'py, PyAny>,
        missing: Optional<'py>,
        allow_pidfd_getfd: Optional<'py>,
    ) -> PyResult<Bound<'py, PyList>> {
        let found = classify_refs(py, refs, missing, allow_pidfd_getfd, false)?;
        tuples(py, found.groups)
    }

    /// classify_files returning the refs no exact method could decide instead of raising.
    ///
    /// Returns (groups, undecided): a pair no exact method could tell apart counts as
    /// two descriptions in the groups, and both its refs are listed in undecided.
    #[pyfunction]
    #[pyo3(signature = (refs, *, missing = Optional::Absent, allow_pidfd_getfd = Optional::Absent))]
    #[pyo3(text_signature = "(refs, *, missing='raise', allow_pidfd_getfd=False)")]
    fn classify_files_partial<'py>(
        py: Python<'py>,
        refs: &Bound<'py, PyAny>,
        missing: Optional<'py>,
        allow_pidfd_getfd: Optional<'py>,
    ) -> PyResult<Partial<'py>> {
        let found = classify_refs(py, refs, missing, allow_pidfd_getfd, true)?;
        Ok((tuples(py, found.groups)?, found.undecided))
    }

    /// Group tasks sharing the resource ``type`` (VM, FILES, FS, SIGHAND, IO, SYSVSEM).
    ///
    /// ``pids``: process or thread ids. ``missing="skip"`` leaves out the processes that do
    /// not exist or have exited instead of raising (``"raise"``).
    ///
    /// Returns a list of groups, each a tuple of pids, ascending; groups ordered by their
    /// smallest pid.
    ///
    /// Raises ``ProcessGoneError`` (a ``ProcessLookupError``) when a process does not exist
    /// or is a zombie (``missing="raise"``), ``ProcessAccessError`` (a ``PermissionError``)
    /// when ptrace read access is refused, ``KcmpUnavailableError`` where kcmp(2) is blocked
    /// (nothing else can tell), ValueError for ``type`` FILE or EPOLL_TFD or an unknown
    /// ``missing``, TypeError for an argument of the wrong type.
    #[pyfunction]
    #[pyo3(signature = (pids, r#type, *, missing = Optional::Absent))]
    #[pyo3(text_signature = "(pids, type, *, missing='raise')")]
    fn classify_tasks<'py>(
        py: Python<'py>,
        pids: &Bound<'py, PyAny>,
        r#type: &Bound<'py, PyAny>,
        missing: Optional<'py>,
    ) -> PyResult<Bound<'py, PyList>> {
        let Pids(pids) = arg(pids, "pids")?;
        let TaskType(ty) = arg(r#type, "type")?;
        let MissingPolicy(missing) = missing.or("missing", MissingPolicy::DEFAULT)?;
        let groups = detached(py, |stop| api::classify_tasks(&pids, ty, missing, stop))?;
        tuples(py, groups)
    }

    /// (kcmp, dupfd_query, pidfd_getfd, reason): what this process may use.
    ///
    /// Probed once and cached; ``refresh=True`` probes again. ``reason`` says why kcmp
    /// is unusable and how to fix it, and is empty when it is usable. Raises OSError
    /// (EMFILE, ...) when out of fds: a probe that cannot run cannot tell.
    #[pyfunction]
    #[pyo3(signature = (*, refresh = Optional::Absent))]
    #[pyo3(text_signature = "(*, refresh=False)")]
    fn support(py: Python<'_>, refresh: Optional<'_>) -> PyResult<(bool, bool, bool, String)> {
        let Flag(refresh) = refresh.or("refresh", Flag(false))?;
        let r = api::support(refresh).map_err(|f| to_pyerr(py, &f))?;
        Ok((r.kcmp, r.dupfd_query, r.pidfd_getfd, r.reason))
    }

    /// Never issue kcmp(2) again in this process.
    ///
    /// For sandboxes that kill a process on kcmp; the exact fallbacks still answer, and
    /// the calls that need kcmp raise ``KcmpUnavailableError``.
    ///
    /// Returns None. Raises nothing (TypeError when given an argument).
    #[pyfunction]
    #[pyo3(text_signature = "()")]
    fn disable_kcmp() {
        api::disable_kcmp();
    }

    /// Limits the threads of every later pass to ``n`` (0: as many as the process may
    /// run on); returns the threads a pass uses now.
    #[pyfunction]
    #[pyo3(text_signature = "(n)")]
    fn set_thread_limit(n: usize) -> usize {
        api::set_thread_limit(n);
        api::threads()
    }

    /// ``holders()`` in one pass, the GIL released: a ``HoldersReport``.
    ///
    /// ``pids`` None: every process. ``progress(done, total)`` is called with the GIL
    /// between steps; an exception it raises ends the search and propagates.
    #[pyfunction]
    #[pyo3(signature = (pid, fd, pids, allow_pidfd_getfd, progress))]
    #[pyo3(text_signature = "(pid, fd, pids, allow_pidfd_getfd, progress)")]
    fn holders<'py>(
        py: Python<'py>,
        pid: &Bound<'py, PyAny>,
        fd: &Bound<'py, PyAny>,
        pids: Option<&Bound<'py, PyAny>>,
        allow_pidfd_getfd: bool,
        progress: Option<Bound<'py, PyAny>>,
    ) -> PyResult<super::reports::HoldersReport> {
        let Pid(pid) = arg(pid, "pid")?;
        let Fd(fd) = arg(fd, "fd")?;
        let pids = match pids {
            Some(p) => Some(arg::<Pids>(p, "pids")?.0),
            None => None,
        };
        let report = super::detached_with_progress(py, progress, |tell, stop| {
            crate::questions::holders::holders(
                (pid, fd),
                pids.as_deref(),
                allow_pidfd_getfd,
                tell,
                stop,
            )
        })?;
        Ok(super::reports::HoldersReport { report })
    }

    /// (shared, reopened, same_fd_table, undecided): what ``pid1`` and ``pid2`` share.
    ///
    /// ``shared``: ``(fds_in_pid1, fds_in_pid2)`` per open file description both hold;
    /// ``reopened``: per inode each holds through a description the other does not hold
    /// (separate opens), those fds, never an empty side. Both processes pinned before
    /// either is listed; either exiting during the call raises ``ProcessGoneError``.
    /// The GIL is released for the whole pass.
    #[pyfunction]
    #[pyo3(signature = (pid1, pid2, *, allow_pidfd_getfd = Optional::Absent))]
    #[pyo3(text_signature = "(pid1, pid2, *, allow_pidfd_getfd=False)")]
    fn shared_files(
        py: Python<'_>,
        pid1: &Bound<'_, PyAny>,
        pid2: &Bound<'_, PyAny>,
        allow_pidfd_getfd: Optional<'_>,
    ) -> PyResult<super::SharedAnswer> {
        let Pid(pid1) = arg(pid1, "pid1")?;
        let Pid(pid2) = arg(pid2, "pid2")?;
        let Flag(allow) = allow_pidfd_getfd.or("allow_pidfd_getfd", Flag(false))?;
        let s = detached(py, |stop| api::shared_files(pid1, pid2, allow, stop))?;
        Ok((s.shared, s.reopened, s.same_table, s.undecided))
    }

    /// What the epoll sets of ``pid`` watch, in one pass with every process pinned and
    /// the GIL released: an ``EpollReport``. ``epfd`` not passed: every epoll fd of
    /// ``pid`` (passed, it must be an fd: None is refused as any other non-int); holders
    /// are looked for in ``pid`` and ``pids``.
    #[pyfunction]
    #[pyo3(signature = (pid, epfd = Optional::Absent, pids = None))]
    #[pyo3(text_signature = "(pid, epfd=..., pids=None)")]
    fn epoll_sets(
        py: Python<'_>,
        pid: &Bound<'_, PyAny>,
        epfd: Optional<'_>,
        pids: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<super::reports::EpollReport> {
        let Pid(pid) = arg(pid, "pid")?;
        let epfds = match epfd {
            Optional::Given(epfd) => Some(vec![arg::<Fd>(&epfd, "epfd")?.0]),
            Optional::Absent => None,
        };
        let others = match pids {
            Some(pids) => arg::<Pids>(pids, "pids")?.0,
            None => Vec::new(),
        };
        let report = detached(py, |stop| {
            api::epoll_sets(pid, epfds.as_deref(), &others, stop)
        })?;
        Ok(super::reports::EpollReport { report })
    }

    /// The scan of ``pids`` in one native pass, the GIL released: a ``ScanReport``.
    ///
    /// Arguments arrive checked by ``kcmp_rs.scan``. ``progress(done, total)`` is
    /// called with the GIL as each process's fds have been read; an exception it
    /// raises ends the scan and propagates.
    #[pyfunction]
    #[pyo3(signature = (pids, include_unshared, allow_pidfd_getfd, boundary, progress, ipc = false))]
    #[pyo3(
        text_signature = "(pids, include_unshared, allow_pidfd_getfd, boundary, progress, ipc=False)"
    )]
    fn scan(
        py: Python<'_>,
        pids: &Bound<'_, PyAny>,
        include_unshared: bool,
        allow_pidfd_getfd: bool,
        boundary: Option<&str>,
        progress: Option<Bound<'_, PyAny>>,
        ipc: bool,
    ) -> PyResult<super::reports::ScanReport> {
        let Pids(mut pids) = arg(pids, "pids")?;
        pids.sort_unstable();
        pids.dedup();
        let boundary = match boundary {
            None => None,
            Some(name) => Some(api::Boundary::from_name(name).ok_or_else(|| {
                pyo3::exceptions::PyValueError::new_err(format!("unknown boundary {name:?}"))
            })?),
        };
        let opts = api::ScanOptions {
            include_unshared,
            allow_pidfd_getfd,
            boundary,
            ipc,
        };
        let report = super::detached_with_progress(py, progress, |tell, stop| {
            api::scan(&pids, opts, tell, stop)
        })?;
        Ok(super::reports::ScanReport { report })
    }

    /// The scan of ``pids`` for the fds on the files ``keys`` ((st_dev, st_ino) pairs)
    /// alone, in one native pass, the GIL released: a ``ScanReport`` whose ``keys()``
    /// and ``offsets()`` give each description's file and offset (``kcmp_rs.who()``).
    #[pyfunction]
    #[pyo3(signature = (pids, keys, allow_pidfd_getfd, progress))]
    #[pyo3(text_signature = "(pids, keys, allow_pidfd_getfd, progress)")]
    fn scan_files(
        py: Python<'_>,
        pids: &Bound<'_, PyAny>,
        keys: &Bound<'_, PyAny>,
        allow_pidfd_getfd: bool,
        progress: Option<Bound<'_, PyAny>>,
    ) -> PyResult<super::reports::ScanReport> {
        // Built by `kcmp_rs.who` from `os.stat`, never by a caller.
        let keys: Vec<(u64, u64)> = keys.extract()?;
        let Pids(mut pids) = arg(pids, "pids")?;
        pids.sort_unstable();
        pids.dedup();
        let report = super::detached_with_progress(py, progress, |tell, stop| {
            api::scan_files(&pids, &keys, allow_pidfd_getfd, tell, stop)
        })?;
        Ok(super::reports::ScanReport { report })
    }

    /// ``endpoints()`` in one pass, the GIL released: ``(kind, file_type, target,
    /// report, sides, partial)``: the kind of channel fd ``fd`` of ``pid`` is an end of
    /// (None: none; ``file_type`` says what it is), its target, a ``ScanReport`` of every
    /// description of every end among ``pids``, the sides each description is on, and
    /// why the answer may miss an end (None: it may not).
    #[pyfunction]
    #[pyo3(signature = (pid, fd, pids, allow_pidfd_getfd, progress))]
    #[pyo3(text_signature = "(pid, fd, pids, allow_pidfd_getfd, progress)")]
    #[allow(clippy::type_complexity)] // one tuple, unpacked by kcmp_rs.endpoints at once
    fn endpoints<'py>(
        py: Python<'py>,
        pid: &Bound<'py, PyAny>,
        fd: &Bound<'py, PyAny>,
        pids: &Bound<'py, PyAny>,
        allow_pidfd_getfd: bool,
        progress: Option<Bound<'py, PyAny>>,
    ) -> PyResult<(
        Option<&'static str>,
        String,
        Bound<'py, PyBytes>,
        super::reports::ScanReport,
        Vec<Vec<&'static str>>,
        Option<String>,
    )> {
        let Pid(pid) = arg(pid, "pid")?;
        let Fd(fd) = arg(fd, "fd")?;
        let Pids(pids) = arg(pids, "pids")?;
        let found = super::detached_with_progress(py, progress, |tell, stop| {
            api::endpoints(pid, fd, &pids, allow_pidfd_getfd, tell, stop)
        })?;
        Ok((
            found.kind,
            found.file_type,
            PyBytes::new(py, &found.target),
            super::reports::ScanReport { report: found.scan },
            found.sides,
            found.partial,
        ))
    }

    /// ``escapes()`` in one pass, the GIL released: ``(findings, processes, commands,
    /// skipped, processes_read, mount_namespaces_read, notes)``, each finding
    /// ``(pid, where, kind, severity, mnt_id, fs_type, path, mount_point, file_type,
    /// mode, shared_with)``.
    #[pyfunction]
    #[pyo3(text_signature = "(pids)")]
    fn escapes<'py>(py: Python<'py>, pids: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyTuple>> {
        let Pids(pids) = arg(pids, "pids")?;
        let report = detached(py, |stop| api::escapes(&pids, stop))?;
        super::escapes::answer(py, &report)
    }

    /// Whether ``pid`` has exited and awaits reaping (a zombie).
    ///
    /// A zombie keeps its pid but no longer has the resources kcmp compares. False for
    /// a pid that does not exist.
    #[pyfunction]
    #[pyo3(text_signature = "(pid)")]
    fn is_zombie(py: Python<'_>, pid: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Pid(pid) = arg(pid, "pid")?;
        Ok(py.detach(|| api::is_zombie(pid)))
    }
}
