//! The PyO3 binding: argument checks, GIL release, and errors as Python's own OSErrors.
//!
//! Everything here is conversion; the work happens in `sys`, `fault`, `engine` and
//! `oracle`, which know nothing of Python.

use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyType};

use crate::engine::{self, GroupOrder, Missing};
use crate::fault::{self, Failure};
use crate::oracle::{self, FileOptions};
use crate::sys::{self, Fd, Pid};

/// Python-side objects the binding hands out: the `Order` members (returned by the hot
/// `kcmp()` path without calling the enum) and the exception class of ours.
struct PyTypes {
    orders: [Py<PyAny>; 4],
    unavailable: Py<PyType>,
}

static TYPES: PyOnceLock<PyTypes> = PyOnceLock::new();

fn types(py: Python<'_>) -> PyResult<&PyTypes> {
    TYPES.get_or_try_init(py, || {
        let m = py.import("kcmp_rs._types")?;
        let order = m.getattr("Order")?;
        let member = |name: &str| order.getattr(name).map(Bound::unbind);
        Ok(PyTypes {
            orders: [
                member("EQUAL")?,
                member("LESS")?,
                member("GREATER")?,
                member("UNORDERED")?,
            ],
            unavailable: m
                .getattr("KcmpUnavailableError")?
                .cast_into::<PyType>()?
                .unbind(),
        })
    })
}

/// An OSError whose class CPython picks from errno (PEP 3151), with `pid` and `fd`.
pub fn to_pyerr(py: Python<'_>, failure: &Failure) -> PyErr {
    if let Failure::Interrupted = failure {
        return match PyErr::take(py) {
            Some(e) => e,
            None => PyOSError::new_err((libc::EINTR, failure.message())),
        };
    }
    let args = (failure.errno(), failure.message());
    let built = match failure {
        Failure::Unavailable {
            reason, undecided, ..
        } => types(py).and_then(|t| {
            let exc = t.unavailable.bind(py).call1(args.clone())?;
            exc.setattr("reason", reason)?;
            let undecided: Vec<(Pid, Fd)> = undecided.clone();
            exc.setattr("undecided", pyo3::types::PyTuple::new(py, undecided)?)?;
            Ok(exc)
        }),
        _ => py.get_type::<PyOSError>().call1(args.clone()),
    };
    let exc = match built {
        Ok(exc) => exc,
        Err(e) => return e,
    };
    let attrs = exc
        .setattr("pid", failure.pid())
        .and_then(|_| exc.setattr("fd", failure.fd()));
    match attrs {
        Ok(()) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

// ---- argument checks: same classes and messages as the Python layer ----

const INT_MAX: i64 = i32::MAX as i64;

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// An int in `lo..=INT_MAX`: bool and non-ints are TypeError, the rest ValueError.
fn bounded_int(obj: &Bound<'_, PyAny>, name: &str, lo: i64, what: &str) -> PyResult<i32> {
    if obj.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be an int, not bool"
        )));
    }
    if !obj.is_instance_of::<pyo3::types::PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be an int, not {}",
            type_name(obj)
        )));
    }
    match obj.extract::<i64>() {
        Ok(v) if (lo..=INT_MAX).contains(&v) => Ok(v as i32),
        _ => Err(PyValueError::new_err(format!(
            "{name} must be {what} in {lo}..{INT_MAX}, got {}",
            obj.repr().map(|r| r.to_string()).unwrap_or_default()
        ))),
    }
}

/// An optional argument as given, so that an explicit `None` is refused like any
/// other non-int instead of reading as "absent".
pub enum Arg<'py> {
    Absent,
    Given(Bound<'py, PyAny>),
}

impl<'a, 'py> FromPyObject<'a, 'py> for Arg<'py> {
    type Error = PyErr;

    fn extract(obj: pyo3::Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Ok(Arg::Given(obj.to_owned()))
    }
}

impl Arg<'_> {
    fn fd_or_zero(&self, name: &str) -> PyResult<Fd> {
        match self {
            Arg::Absent => Ok(0),
            Arg::Given(o) => arg_fd(o, name),
        }
    }

    /// A strict bool: `1` or `"yes"` for a flag is more likely a mistake than intent.
    fn flag(&self, name: &str) -> PyResult<bool> {
        match self {
            Arg::Absent => Ok(false),
            Arg::Given(o) => match o.cast::<PyBool>() {
                Ok(b) => Ok(b.is_true()),
                Err(_) => Err(PyTypeError::new_err(format!(
                    "{name} must be a bool, not {}",
                    type_name(o)
                ))),
            },
        }
    }
}

pub fn arg_pid(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Pid> {
    bounded_int(obj, name, 1, "a pid")
}

pub fn arg_fd(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Fd> {
    bounded_int(obj, name, 0, "an fd")
}

/// A `KcmpType` member or its int value. EPOLL_TFD is refused where a pointer is due.
pub fn arg_type(obj: &Bound<'_, PyAny>, allow_file: bool) -> PyResult<i32> {
    if obj.is_instance_of::<PyBool>() || !obj.is_instance_of::<pyo3::types::PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "type must be a KcmpType or int, not {}",
            type_name(obj)
        )));
    }
    let ty = match obj.extract::<i64>() {
        Ok(v) if (0..i64::from(sys::KCMP_TYPES)).contains(&v) => v as i32,
        _ => {
            return Err(PyValueError::new_err(format!(
                "type must be a KcmpType (0..7), got {}",
                obj.repr().map(|r| r.to_string()).unwrap_or_default()
            )))
        }
    };
    if ty == sys::KCMP_EPOLL_TFD {
        return Err(PyValueError::new_err(
            "type EPOLL_TFD compares against an epoll registration, not an index: \
             use same_epoll_target()",
        ));
    }
    if ty == sys::KCMP_FILE && !allow_file {
        return Err(PyValueError::new_err(
            "type FILE compares fds, not tasks: use same_file() or classify_files()",
        ));
    }
    Ok(ty)
}

/// One kcmp call with a specific failure; `support` notes what kcmp refused.
pub fn kcmp_checked(
    pid1: Pid,
    pid2: Pid,
    ty: i32,
    fd1: Fd,
    fd2: Fd,
) -> Result<sys::KcmpOrder, Failure> {
    crate::support::require_kcmp()?;
    let order = sys::kcmp(pid1, pid2, ty, fd1, fd2).map_err(|e| {
        let failure = fault::diagnose(pid1, pid2, ty, fd1, fd2, e);
        crate::support::note_failure(&failure);
        failure
    })?;
    if order == sys::KcmpOrder::Equal && ty != sys::KCMP_FILE {
        fault::check_task_equal(pid1, pid2)?;
    }
    Ok(order)
}

/// A one-of-several string option, e.g. order="fd"; the first choice is the default.
fn arg_choice<T: Copy>(arg: &Arg<'_>, name: &str, choices: &[(&str, T)]) -> PyResult<T> {
    let Some(&(_, default)) = choices.first() else {
        return Err(PyValueError::new_err(format!("{name} has no choices")));
    };
    let obj = match arg {
        Arg::Absent => return Ok(default),
        Arg::Given(o) => o,
    };
    let Ok(text) = obj.cast::<pyo3::types::PyString>() else {
        return Err(PyTypeError::new_err(format!(
            "{name} must be a str, not {}",
            type_name(obj)
        )));
    };
    let value = text.to_cow()?;
    for (choice, v) in choices {
        if *choice == value {
            return Ok(*v);
        }
    }
    let names: Vec<String> = choices.iter().map(|(t, _)| format!("{t:?}")).collect();
    Err(PyValueError::new_err(format!(
        "{name} must be {}, got {}",
        names.join(" or "),
        obj.repr().map(|r| r.to_string()).unwrap_or_default()
    )))
}

fn arg_missing(arg: &Arg<'_>) -> PyResult<Missing> {
    arg_choice(
        arg,
        "missing",
        &[("raise", Missing::Raise), ("skip", Missing::Skip)],
    )
}

fn arg_order(arg: &Arg<'_>) -> PyResult<GroupOrder> {
    arg_choice(
        arg,
        "order",
        &[("fd", GroupOrder::Fd), ("kernel", GroupOrder::Kernel)],
    )
}

/// Every element of an iterable through `each`; the iterable's own errors propagate.
fn collect<T>(
    obj: &Bound<'_, PyAny>,
    name: &str,
    what: &str,
    mut each: impl FnMut(&Bound<'_, PyAny>) -> PyResult<T>,
) -> PyResult<Vec<T>> {
    if obj.is_instance_of::<pyo3::types::PyString>() || obj.is_instance_of::<pyo3::types::PyBytes>()
    {
        return Err(PyTypeError::new_err(format!(
            "{name} must be an iterable of {what}, not {}",
            type_name(obj)
        )));
    }
    let iter = match obj.try_iter() {
        Ok(iter) => iter,
        // Not iterable at all: say what was expected. An __iter__ that raised keeps
        // its own exception.
        Err(e) if e.is_instance_of::<PyTypeError>(obj.py()) && !obj.hasattr("__iter__")? => {
            return Err(PyTypeError::new_err(format!(
                "{name} must be an iterable of {what}, not {}",
                type_name(obj)
            )))
        }
        Err(e) => return Err(e),
    };
    // Only a real list or tuple's length is trusted for preallocation: any other
    // __len__ is user code that may raise or lie.
    let hint = if obj.is_exact_instance_of::<pyo3::types::PyList>()
        || obj.is_exact_instance_of::<pyo3::types::PyTuple>()
    {
        obj.len()?
    } else {
        0
    };
    let mut out = Vec::with_capacity(hint);
    for item in iter {
        out.push(each(&item?)?);
    }
    Ok(out)
}

fn arg_fds(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Fd>> {
    collect(obj, "fds", "ints", |o| arg_fd(o, "each fd in fds"))
}

fn arg_refs(obj: &Bound<'_, PyAny>) -> PyResult<Vec<(Pid, Fd)>> {
    collect(obj, "refs", "(pid, fd) pairs", |o| {
        let pair = o
            .cast::<pyo3::types::PyTuple>()
            .ok()
            .filter(|t| t.len() == 2)
            .ok_or_else(|| {
                PyTypeError::new_err(format!(
                    "each item of refs must be a (pid, fd) tuple, not {}",
                    type_name(o)
                ))
            })?;
        Ok((
            arg_pid(&pair.get_item(0)?, "pid in refs")?,
            arg_fd(&pair.get_item(1)?, "fd in refs")?,
        ))
    })
}

fn arg_pids(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Pid>> {
    collect(obj, "pids", "ints", |o| arg_pid(o, "each pid in pids"))
}

/// Runs `work` without the GIL; `work` gets a closure that reports a pending signal
/// (Ctrl-C) between chunks, whose Python exception is then raised.
fn detached<T: Send>(
    py: Python<'_>,
    work: impl FnOnce(&mut dyn FnMut() -> bool) -> Result<T, Failure> + Send,
) -> PyResult<T> {
    let mut pending: Option<PyErr> = None;
    let result = py.detach(|| {
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

fn tuples<'py, T: pyo3::IntoPyObject<'py> + Copy>(
    py: Python<'py>,
    groups: Vec<Vec<T>>,
) -> PyResult<Bound<'py, pyo3::types::PyList>> {
    let tuples = groups
        .into_iter()
        .map(|g| pyo3::types::PyTuple::new(py, g))
        .collect::<PyResult<Vec<_>>>()?;
    pyo3::types::PyList::new(py, tuples)
}

/// bench_syscall_floor's figures: floor and engine seconds per round, keys, compares,
/// sames, operations replayed per round.
type FloorFigures = (Vec<f64>, Vec<f64>, u64, u64, u64, usize);

/// Groups and the refs no exact method could decide.
type Partial<'py> = (Bound<'py, pyo3::types::PyList>, Vec<(Pid, Fd)>);

/// classify_files and classify_files_partial after their argument checks.
fn classify_refs(
    py: Python<'_>,
    refs: &Bound<'_, PyAny>,
    missing: &Arg<'_>,
    allow_pidfd_getfd: &Arg<'_>,
    report_undecided: bool,
) -> PyResult<oracle::Classified> {
    let refs = arg_refs(refs)?;
    let opts = FileOptions {
        order: GroupOrder::Fd,
        missing: arg_missing(missing)?,
        allow_pidfd_getfd: allow_pidfd_getfd.flag("allow_pidfd_getfd")?,
        report_undecided,
    };
    detached(py, |stop| oracle::classify_files(&refs, opts, stop))
}

/// classify_fds without the Python conversions: (groups of fds, kcmp calls made).
fn classify_fds_impl(
    pid: Pid,
    fds: Option<Vec<Fd>>,
    order: GroupOrder,
    missing: Missing,
    allow_pidfd_getfd: bool,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<(Vec<Vec<Fd>>, engine::Stats), Failure> {
    let fds = match fds {
        Some(f) => {
            // With missing="skip" an absent pid would otherwise read as "no fds open".
            if pid != sys::getpid() && sys::start_time(pid) == Err(sys::Errno(libc::ENOENT)) {
                return Err(Failure::NoProcess { pid });
            }
            f
        }
        None => oracle::open_fds(pid)?,
    };
    let refs: Vec<(Pid, Fd)> = fds.into_iter().map(|fd| (pid, fd)).collect();
    let opts = FileOptions {
        order,
        missing,
        allow_pidfd_getfd,
        report_undecided: false,
    };
    let found = oracle::classify_files(&refs, opts, interrupted)?;
    let stats = found.stats;
    Ok((
        found
            .groups
            .into_iter()
            .map(|g| g.into_iter().map(|(_, fd)| fd).collect())
            .collect(),
        stats,
    ))
}

// Free-threading safe: the only global state is atomics (`support`) and a
// once-initialised cache of Python objects (`TYPES`).
#[pymodule(gil_used = false)]
pub mod _native {
    use super::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }

    /// kcmp(pid1, pid2, type, idx1=0, idx2=0) -> Order
    #[pyfunction]
    #[pyo3(signature = (pid1, pid2, r#type, idx1 = Arg::Absent, idx2 = Arg::Absent))]
    #[pyo3(text_signature = "(pid1, pid2, type, idx1=0, idx2=0)")]
    fn kcmp(
        py: Python<'_>,
        pid1: &Bound<'_, PyAny>,
        pid2: &Bound<'_, PyAny>,
        r#type: &Bound<'_, PyAny>,
        idx1: Arg<'_>,
        idx2: Arg<'_>,
    ) -> PyResult<Py<PyAny>> {
        let p1 = arg_pid(pid1, "pid1")?;
        let p2 = arg_pid(pid2, "pid2")?;
        let ty = arg_type(r#type, true)?;
        let i1 = idx1.fd_or_zero("idx1")?;
        let i2 = idx2.fd_or_zero("idx2")?;
        let order = kcmp_checked(p1, p2, ty, i1, i2).map_err(|f| to_pyerr(py, &f))?;
        Ok(types(py)?.orders[order as usize].clone_ref(py))
    }

    /// same_file(pid1, fd1, pid2, fd2) -> bool
    #[pyfunction]
    #[pyo3(signature = (pid1, fd1, pid2, fd2, *, allow_pidfd_getfd = Arg::Absent))]
    #[pyo3(text_signature = "(pid1, fd1, pid2, fd2, *, allow_pidfd_getfd=False)")]
    fn same_file(
        py: Python<'_>,
        pid1: &Bound<'_, PyAny>,
        fd1: &Bound<'_, PyAny>,
        pid2: &Bound<'_, PyAny>,
        fd2: &Bound<'_, PyAny>,
        allow_pidfd_getfd: Arg<'_>,
    ) -> PyResult<bool> {
        let a = (arg_pid(pid1, "pid1")?, arg_fd(fd1, "fd1")?);
        let b = (arg_pid(pid2, "pid2")?, arg_fd(fd2, "fd2")?);
        let allow = allow_pidfd_getfd.flag("allow_pidfd_getfd")?;
        crate::oracle::same_file(a, b, allow).map_err(|f| to_pyerr(py, &f))
    }

    /// same_task(pid1, pid2, type) -> bool, for the task resource types.
    #[pyfunction]
    fn same_task(
        py: Python<'_>,
        pid1: &Bound<'_, PyAny>,
        pid2: &Bound<'_, PyAny>,
        r#type: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let p1 = arg_pid(pid1, "pid1")?;
        let p2 = arg_pid(pid2, "pid2")?;
        let ty = arg_type(r#type, false)?;
        let order = kcmp_checked(p1, p2, ty, 0, 0).map_err(|f| to_pyerr(py, &f))?;
        Ok(order == sys::KcmpOrder::Equal)
    }

    /// sharing(pid1, pid2) -> (vm, files, fs, sighand, io, sysvsem)
    #[pyfunction]
    fn sharing(
        py: Python<'_>,
        pid1: &Bound<'_, PyAny>,
        pid2: &Bound<'_, PyAny>,
    ) -> PyResult<(bool, bool, bool, bool, bool, bool)> {
        let p1 = arg_pid(pid1, "pid1")?;
        let p2 = arg_pid(pid2, "pid2")?;
        let same = |ty| {
            kcmp_checked(p1, p2, ty, 0, 0)
                .map(|o| o == sys::KcmpOrder::Equal)
                .map_err(|f| to_pyerr(py, &f))
        };
        Ok((
            same(sys::KCMP_VM)?,
            same(sys::KCMP_FILES)?,
            same(sys::KCMP_FS)?,
            same(sys::KCMP_SIGHAND)?,
            same(sys::KCMP_IO)?,
            same(sys::KCMP_SYSVSEM)?,
        ))
    }

    /// same_epoll_target(pid1, fd, pid2, epfd, target_fd, target_index=0) -> bool
    #[pyfunction]
    #[pyo3(signature = (pid1, fd, pid2, epfd, target_fd, target_index = Arg::Absent))]
    #[pyo3(text_signature = "(pid1, fd, pid2, epfd, target_fd, target_index=0)")]
    fn same_epoll_target(
        py: Python<'_>,
        pid1: &Bound<'_, PyAny>,
        fd: &Bound<'_, PyAny>,
        pid2: &Bound<'_, PyAny>,
        epfd: &Bound<'_, PyAny>,
        target_fd: &Bound<'_, PyAny>,
        target_index: Arg<'_>,
    ) -> PyResult<bool> {
        let p1 = arg_pid(pid1, "pid1")?;
        let f = arg_fd(fd, "fd")?;
        let p2 = arg_pid(pid2, "pid2")?;
        let efd = arg_fd(epfd, "epfd")?;
        let tfd = arg_fd(target_fd, "target_fd")?;
        let toff = match &target_index {
            Arg::Given(o) => bounded_int(o, "target_index", 0, "an index")?,
            Arg::Absent => 0,
        };
        crate::oracle::same_epoll_target(p1, f, p2, efd, tfd, toff).map_err(|f| to_pyerr(py, &f))
    }
    /// open_fds(pid) -> list[int]
    #[pyfunction]
    fn open_fds(py: Python<'_>, pid: &Bound<'_, PyAny>) -> PyResult<Vec<Fd>> {
        let pid = arg_pid(pid, "pid")?;
        py.detach(|| oracle::open_fds(pid))
            .map_err(|f| to_pyerr(py, &f))
    }

    /// classify_fds(pid, fds=None, *, order="fd", missing="raise", allow_pidfd_getfd=False)
    #[pyfunction]
    #[pyo3(signature = (pid, fds = None, *, order = Arg::Absent, missing = Arg::Absent, allow_pidfd_getfd = Arg::Absent))]
    #[pyo3(
        text_signature = "(pid, fds=None, *, order='fd', missing='raise', allow_pidfd_getfd=False)"
    )]
    fn classify_fds<'py>(
        py: Python<'py>,
        pid: &Bound<'py, PyAny>,
        fds: Option<&Bound<'py, PyAny>>,
        order: Arg<'py>,
        missing: Arg<'py>,
        allow_pidfd_getfd: Arg<'_>,
    ) -> PyResult<Bound<'py, pyo3::types::PyList>> {
        let pid = arg_pid(pid, "pid")?;
        let fds = fds.map(arg_fds).transpose()?;
        let allow = allow_pidfd_getfd.flag("allow_pidfd_getfd")?;
        let order = arg_order(&order)?;
        let missing = arg_missing(&missing)?;
        let (groups, _) = detached(py, |stop| {
            classify_fds_impl(pid, fds, order, missing, allow, stop)
        })?;
        tuples(py, groups)
    }

    /// The engine's counts for one classify_fds: (groups, keys, compares, sames).
    #[pyfunction]
    #[pyo3(signature = (pid, fds, order = Arg::Absent))]
    #[pyo3(text_signature = "(pid, fds, order='fd')")]
    fn classify_fds_stats<'py>(
        py: Python<'py>,
        pid: &Bound<'py, PyAny>,
        fds: &Bound<'py, PyAny>,
        order: Arg<'py>,
    ) -> PyResult<(Bound<'py, pyo3::types::PyList>, u64, u64, u64)> {
        let pid = arg_pid(pid, "pid")?;
        let fds = arg_fds(fds)?;
        let order = arg_order(&order)?;
        let (groups, stats) = detached(py, |stop| {
            classify_fds_impl(pid, Some(fds), order, Missing::Raise, false, stop)
        })?;
        Ok((tuples(py, groups)?, stats.keys, stats.compares, stats.sames))
    }

    /// classify_files(refs, *, missing="raise", allow_pidfd_getfd=False)
    #[pyfunction]
    #[pyo3(signature = (refs, *, missing = Arg::Absent, allow_pidfd_getfd = Arg::Absent))]
    #[pyo3(text_signature = "(refs, *, missing='raise', allow_pidfd_getfd=False)")]
    fn classify_files<'py>(
        py: Python<'py>,
        refs: &Bound<'py, PyAny>,
        missing: Arg<'py>,
        allow_pidfd_getfd: Arg<'_>,
    ) -> PyResult<Bound<'py, pyo3::types::PyList>> {
        let found = classify_refs(py, refs, &missing, &allow_pidfd_getfd, false)?;
        tuples(py, found.groups)
    }

    /// classify_files that returns undecided refs instead of raising: (groups, undecided).
    #[pyfunction]
    #[pyo3(signature = (refs, *, missing = Arg::Absent, allow_pidfd_getfd = Arg::Absent))]
    #[pyo3(text_signature = "(refs, *, missing='raise', allow_pidfd_getfd=False)")]
    fn classify_files_partial<'py>(
        py: Python<'py>,
        refs: &Bound<'py, PyAny>,
        missing: Arg<'py>,
        allow_pidfd_getfd: Arg<'_>,
    ) -> PyResult<Partial<'py>> {
        let found = classify_refs(py, refs, &missing, &allow_pidfd_getfd, true)?;
        Ok((tuples(py, found.groups)?, found.undecided))
    }

    /// classify_tasks(pids, type, *, missing="raise")
    #[pyfunction]
    #[pyo3(signature = (pids, r#type, *, missing = Arg::Absent))]
    #[pyo3(text_signature = "(pids, type, *, missing='raise')")]
    fn classify_tasks<'py>(
        py: Python<'py>,
        pids: &Bound<'py, PyAny>,
        r#type: &Bound<'py, PyAny>,
        missing: Arg<'py>,
    ) -> PyResult<Bound<'py, pyo3::types::PyList>> {
        let pids = arg_pids(pids)?;
        let ty = arg_type(r#type, false)?;
        let missing = arg_missing(&missing)?;
        let groups = detached(py, |stop| oracle::classify_tasks(&pids, ty, missing, stop))?;
        tuples(py, groups)
    }

    /// support() -> (kcmp, dupfd_query, pidfd_getfd, reason)
    #[pyfunction]
    #[pyo3(signature = (*, refresh = Arg::Absent))]
    #[pyo3(text_signature = "(*, refresh=False)")]
    fn support(refresh: Arg<'_>) -> PyResult<(bool, bool, bool, String)> {
        if refresh.flag("refresh")? {
            crate::support::forget();
        }
        Ok(crate::support::report())
    }

    /// Never issue kcmp again in this process.
    #[pyfunction]
    fn disable_kcmp() {
        crate::support::disable();
    }

    /// Benchmark helper (benches/test_overhead.py): replays the syscalls one
    /// classify_files(refs) makes, recorded from a real run, without engine logic, and
    /// times full native classifications of the same refs (no Python conversions).
    /// Returns (floor seconds per round, engine seconds per round, keys, compares,
    /// sames, operations replayed per round).
    #[pyfunction]
    #[pyo3(signature = (refs, rounds = 5))]
    fn bench_syscall_floor(
        py: Python<'_>,
        refs: &Bound<'_, PyAny>,
        rounds: usize,
    ) -> PyResult<FloorFigures> {
        let refs = arg_refs(refs)?;
        let f = py
            .detach(|| crate::bench_floor::syscall_floor(&refs, rounds))
            .map_err(|f| to_pyerr(py, &f))?;
        Ok((
            f.floor,
            f.engine,
            f.stats.keys,
            f.stats.compares,
            f.stats.sames,
            f.syscalls,
        ))
    }
}
