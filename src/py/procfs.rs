//! The /proc readers the Python package uses instead of reading /proc itself:
//! listing processes, showing fds, command names, boundary values, the fd-leak
//! snapshot. Each is one call with the GIL released.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use super::args::{arg, Pid, Pids};
use super::{detached, to_pyerr};
use crate::questions::procfs;

/// A descendant for Python: (pid, ppid, start time, zombie).
type DescendantRow = (i32, i32, u64, bool);

/// `leak_snapshot`'s answer: (fd, st_dev, st_ino) of each own fd, and each descendant.
type Snapshot = (Vec<(i32, u64, u64)>, Vec<DescendantRow>);

fn descendant_row(d: procfs::Descendant) -> DescendantRow {
    (d.pid, d.ppid, d.start, d.zombie)
}

/// Every process in /proc, ascending.
#[pyfunction]
#[pyo3(text_signature = "()")]
pub fn list_pids(py: Python<'_>) -> PyResult<Vec<i32>> {
    py.detach(procfs::list_pids).map_err(|f| to_pyerr(py, &f))
}

/// The command name (``/proc/PID/comm``, bytes) of each pid, in order; None once gone.
#[pyfunction]
#[pyo3(text_signature = "(pids)")]
pub fn commands<'py>(
    py: Python<'py>,
    pids: &Bound<'py, PyAny>,
) -> PyResult<Vec<Option<Bound<'py, PyBytes>>>> {
    let Pids(pids) = arg(pids, "pids")?;
    let names = py.detach(|| {
        pids.iter()
            .map(|&p| crate::questions::command(p))
            .collect::<Vec<_>>()
    });
    Ok(names
        .into_iter()
        .map(|n| n.map(|n| PyBytes::new(py, &n)))
        .collect())
}

/// The value of ``pid`` on boundary ``kind`` (a namespace's link text, or its cgroup)
/// as bytes; OSError naming the pid when it cannot be read.
#[pyfunction]
#[pyo3(text_signature = "(pid, kind)")]
pub fn boundary_value<'py>(
    py: Python<'py>,
    pid: &Bound<'py, PyAny>,
    kind: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let Pid(pid) = arg(pid, "pid")?;
    let boundary = crate::api::Boundary::from_name(kind).ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err(format!("unknown boundary {kind:?}"))
    })?;
    let value = py
        .detach(|| procfs::boundary_value(pid, boundary))
        .map_err(|f| to_pyerr(py, &f))?;
    Ok(PyBytes::new(py, &value))
}

/// This process's fds with the inode behind each, and its descendants: what the
/// fd-leak check records before a block and compares after it.
#[pyfunction]
#[pyo3(text_signature = "()")]
pub fn leak_snapshot(py: Python<'_>) -> PyResult<Snapshot> {
    let (fds, known) = detached(py, |_| {
        let fds = procfs::own_fd_keys()?;
        Ok((fds, procfs::descendants(crate::sys::getpid())))
    })?;
    Ok((
        fds.into_iter()
            .map(|(fd, (dev, ino))| (fd, dev, ino))
            .collect(),
        known.into_iter().map(descendant_row).collect(),
    ))
}

/// (pid, ppid, start time, zombie) of each descendant of ``pid`` (children of every
/// thread, their children, ...), ascending.
#[pyfunction]
#[pyo3(text_signature = "(pid)")]
pub fn descendants(py: Python<'_>, pid: &Bound<'_, PyAny>) -> PyResult<Vec<DescendantRow>> {
    let Pid(pid) = arg(pid, "pid")?;
    let found = py.detach(|| procfs::descendants(pid));
    Ok(found.into_iter().map(descendant_row).collect())
}

/// What a report shows of each (pid, fd): ``(target, mode, type)``, read in parallel
/// threads, the GIL released. ``target`` is ``readlink /proc/PID/fd/N`` as bytes (None
/// once gone), ``mode`` "r", "w", "rw", "path" or "?", ``type`` "REG", "DIR", "CHR",
/// "BLK", "FIFO", "SOCK", "LNK", an anon inode's name, or "?".
#[pyfunction]
#[pyo3(text_signature = "(refs)")]
pub fn describe_refs<'py>(
    py: Python<'py>,
    refs: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    let super::args::Refs(refs) = arg(refs, "refs")?;
    let found = detached(py, |stop| crate::api::describe_refs(&refs, stop))?;
    let rows = found.into_iter().map(|(target, mode, kind)| {
        let target = target.map(|t| PyBytes::new(py, &t));
        (target, mode, kind)
    });
    PyList::new(py, rows)
}
