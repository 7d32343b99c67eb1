//! The census for metrics (`kcmp_rs._native.census`): its report as plain Python
//! lists of tuples, each read on demand from the native report.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::args::{arg, Flag, Optional, Pids};
use super::detached;
use crate::sys::Pid;

/// What one census found; every property a new list.
#[pyclass(frozen, module = "kcmp_rs._native")]
pub struct CensusReport {
    report: crate::api::CensusReport,
}

/// One row of ``per_process``: pid, command name (None once gone), fds, shared fds.
type ProcessRow<'py> = (Pid, Option<Bound<'py, PyBytes>>, usize, usize);

#[pymethods]
impl CensusReport {
    /// Processes whose fds were read (sharers of a read fd table included).
    #[getter]
    fn processes_read(&self) -> usize {
        self.report.processes_read
    }

    /// (pid, reason) of each process not read, ascending.
    #[getter]
    fn skipped(&self) -> Vec<(Pid, String)> {
        self.report.skipped.clone()
    }

    /// Fds no exact method could decide (kcmp blocked): in no other count.
    #[getter]
    fn undecided(&self) -> usize {
        self.report.undecided
    }

    /// (runtime, container id, type, fds), sorted.
    #[getter]
    fn fds(&self) -> Vec<(String, String, String, usize)> {
        self.report.counts.fds.clone()
    }

    /// (type, descriptions held by two processes or more), sorted by type.
    #[getter]
    fn shared(&self) -> Vec<(String, usize)> {
        self.report.counts.shared.clone()
    }

    /// (kind, descriptions whose holders show two values or more of it).
    #[getter]
    fn crossings(&self) -> Vec<(&'static str, usize)> {
        self.report.counts.crossings.clone()
    }

    /// (kind, shared descriptions with a holder whose value of it is unread).
    #[getter]
    fn crossings_undecided(&self) -> Vec<(&'static str, usize)> {
        self.report.counts.crossings_undecided.clone()
    }

    /// ("pipe"|"fifo", "reader"|"writer", n): the channels with no end on that side.
    #[getter]
    fn unpaired(&self) -> Vec<(&'static str, &'static str, usize)> {
        self.report.unpaired.clone()
    }

    /// ("open"|"closed"|"reused", registrations).
    #[getter]
    fn epoll(&self) -> Vec<(&'static str, usize)> {
        self.report.epoll.clone()
    }

    /// (pid, reason) of each process whose epoll sets could not be read.
    #[getter]
    fn epoll_unread(&self) -> Vec<(Pid, String)> {
        self.report.epoll_unread.clone()
    }

    /// (pid, command, fds, shared fds) per process read, or None when not asked.
    #[getter]
    fn per_process<'py>(&self, py: Python<'py>) -> Option<Vec<ProcessRow<'py>>> {
        self.report.per_process.as_ref().map(|rows| {
            rows.iter()
                .map(|(pid, name, fds, shared)| {
                    (
                        *pid,
                        name.as_ref().map(|n| PyBytes::new(py, n)),
                        *fds,
                        *shared,
                    )
                })
                .collect()
        })
    }

    /// (name, calls) of the calls the pass counted.
    #[getter]
    fn syscalls(&self) -> Vec<(&'static str, u64)> {
        self.report.syscalls.clone()
    }
}

/// The census of ``pids`` in one native pass, the GIL released: a ``CensusReport``.
#[pyfunction]
#[pyo3(signature = (pids, per_process = Optional::Absent))]
#[pyo3(text_signature = "(pids, per_process=False)")]
pub fn census(
    py: Python<'_>,
    pids: &Bound<'_, PyAny>,
    per_process: Optional<'_>,
) -> PyResult<CensusReport> {
    let Pids(mut pids) = arg(pids, "pids")?;
    let Flag(per_process) = per_process.or("per_process", Flag(false))?;
    pids.sort_unstable();
    pids.dedup();
    let report = detached(py, |stop| crate::api::census(&pids, per_process, stop))?;
    Ok(CensusReport { report })
}
