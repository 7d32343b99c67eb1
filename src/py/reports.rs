//! The native reports of the questions that answer with many members: kept in Rust,
//! read by the Python views on demand, and written as JSON by the core straight to an
//! fd, so a document never exists as Python objects or as one string.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::args;
use super::errors::to_pyerr;
use crate::error::Failure;
use crate::sys::{Fd, Pid};

/// Runs `write(fd)` without the GIL; its I/O error as the OSError Python would raise
/// (BrokenPipeError, ...), naming the fd.
fn written(
    py: Python<'_>,
    fd: &Bound<'_, PyAny>,
    write: impl FnOnce(Fd) -> std::io::Result<()> + Send,
) -> PyResult<()> {
    let args::Fd(fd) = args::arg(fd, "fd")?;
    py.detach(|| write(fd)).map_err(|e| {
        let failure = Failure::Os {
            errno: e.raw_os_error().unwrap_or(libc::EIO),
            pid: None,
            fd: Some(fd),
            detail: "writing the JSON document".to_string(),
        };
        to_pyerr(py, &failure)
    })
}

/// Command names as Python bytes (None once gone).
fn names<'py>(
    py: Python<'py>,
    names: impl Iterator<Item = (Pid, &'py Option<Vec<u8>>)>,
) -> Vec<(Pid, Option<Bound<'py, PyBytes>>)> {
    names
        .map(|(p, c)| (p, c.as_ref().map(|c| PyBytes::new(py, c))))
        .collect()
}

/// What one scan found, kept native: the Python result types are built from it on
/// demand, and `kcmp-rs scan -J/-j` writes it as JSON without building them.
#[pyclass(frozen, module = "kcmp_rs._native")]
pub struct ScanReport {
    pub(super) report: crate::api::ScanReport,
}

/// One description for Python, its members apart (`ScanReport::members`, asked only
/// when a view needs them): target (bytes, None once gone), type, mode, boundary values.
type DescriptionRow<'py> = (
    Option<Bound<'py, PyBytes>>,
    String,
    &'static str,
    Vec<Bound<'py, PyBytes>>,
);

#[pymethods]
impl ScanReport {
    /// Processes whose fds were read (sharers of a read fd table included).
    #[getter]
    fn processes_read(&self) -> usize {
        self.report.processes_read
    }

    /// Fds placed in a description.
    #[getter]
    fn fds_classified(&self) -> usize {
        self.report.fds_classified
    }

    /// (pid, reason) of each process not read, ascending.
    #[getter]
    fn skipped(&self) -> Vec<(Pid, String)> {
        self.report.skipped.clone()
    }

    /// The (pid, fd) no exact method could decide, ascending.
    #[getter]
    fn undecided(&self) -> Vec<(Pid, Fd)> {
        self.report.undecided.clone()
    }

    /// The pids sharing one fd table, smallest (the one read) first.
    #[getter]
    fn fd_table_shared(&self) -> Vec<Vec<Pid>> {
        self.report.fd_table_shared.clone()
    }

    /// One ``(target, type, mode, boundaries)`` per description reported; its members
    /// are ``members(i)``.
    #[pyo3(text_signature = "($self)")]
    fn descriptions<'py>(&self, py: Python<'py>) -> Vec<DescriptionRow<'py>> {
        self.report
            .descriptions
            .iter()
            .map(|d| {
                let (target, link, file) = &d.described;
                let (kind, mode) = match target {
                    Some(t) => (
                        crate::questions::json::type_of(t, *file),
                        crate::questions::json::mode_of(*link),
                    ),
                    None => ("?".to_string(), "?"),
                };
                (
                    target.as_ref().map(|t| PyBytes::new(py, t)),
                    kind,
                    mode,
                    d.boundaries.iter().map(|b| PyBytes::new(py, b)).collect(),
                )
            })
            .collect()
    }

    /// The ``(pid, fd)`` members of description ``i``, ascending; IndexError past the end.
    #[pyo3(text_signature = "($self, i)")]
    fn members(&self, i: usize) -> PyResult<Vec<(Pid, Fd)>> {
        self.report
            .descriptions
            .get(i)
            .map(|d| d.members.clone())
            .ok_or_else(|| {
                pyo3::exceptions::PyIndexError::new_err(format!(
                    "description {i} of {}: no such description",
                    self.report.descriptions.len()
                ))
            })
    }

    /// Each description's file, ``(st_dev, st_ino)``, in order (``scan_files`` only).
    #[pyo3(text_signature = "($self)")]
    fn keys(&self) -> Vec<(u64, u64)> {
        self.report.keys.clone()
    }

    /// Each description's file offset (None once unreadable), in order (``scan_files``
    /// only).
    #[pyo3(text_signature = "($self)")]
    fn offsets(&self) -> Vec<Option<u64>> {
        self.report.offsets.clone()
    }

    /// With ``ipc``: each channel between processes as ``(kind, ends)``, each end
    /// ``(side, indices of its descriptions)``; None without.
    #[pyo3(text_signature = "($self)")]
    #[allow(clippy::type_complexity)] // the rows Scan.channels is built from, as is
    fn channels(&self) -> Option<Vec<(&'static str, Vec<(&'static str, Vec<usize>)>)>> {
        self.report.with_channels.then(|| {
            self.report
                .channels
                .iter()
                .map(|c| (c.kind, c.ends.clone()))
                .collect()
        })
    }

    /// With ``ipc``: what the channel search could not read (sock_diag refused, ...).
    #[pyo3(text_signature = "($self)")]
    fn channel_notes(&self) -> Vec<String> {
        self.report.channel_notes.clone()
    }

    /// (pid, command name as bytes, None once gone) of each member's process.
    #[pyo3(text_signature = "($self)")]
    fn commands<'py>(&'py self, py: Python<'py>) -> Vec<(Pid, Option<Bound<'py, PyBytes>>)> {
        names(py, self.report.commands.iter().map(|(&p, c)| (p, c)))
    }

    /// (pid, boundary value as bytes) of each reader, when a boundary was asked.
    #[pyo3(text_signature = "($self)")]
    fn boundary_of<'py>(&self, py: Python<'py>) -> Vec<(Pid, Bound<'py, PyBytes>)> {
        self.report
            .boundary_of
            .iter()
            .map(|(&p, v)| (p, PyBytes::new(py, v)))
            .collect()
    }

    /// Writes the report to ``fd`` as ``kcmp-rs scan -J`` (``lines=False``) or ``-j``
    /// prints it, the GIL released; OSError (BrokenPipeError, ...) if it cannot.
    /// ``only``: the indices of the descriptions to show (the audit's crossings), all
    /// when None; IndexError for one past the end. ``fds``: the JSON Lines header
    /// names the command ``fds`` (a one-process scan) instead of ``scan``.
    #[pyo3(signature = (fd, lines, only = None, fds = false))]
    #[pyo3(text_signature = "($self, fd, lines, only=None, fds=False)")]
    fn write_json(
        &self,
        py: Python<'_>,
        fd: &Bound<'_, PyAny>,
        lines: bool,
        only: Option<Vec<usize>>,
        fds: bool,
    ) -> PyResult<()> {
        let only = match only {
            None => None,
            Some(mut only) => {
                only.sort_unstable();
                only.dedup();
                let n = self.report.descriptions.len();
                if let Some(&past) = only.iter().find(|&&i| i >= n) {
                    return Err(pyo3::exceptions::PyIndexError::new_err(format!(
                        "description {past} of {n}: no such description"
                    )));
                }
                Some(only)
            }
        };
        let selection = only
            .as_deref()
            .map_or(crate::api::Selection::All, crate::api::Selection::Only);
        written(py, fd, |fd| {
            let command = if fds { "fds" } else { "scan" };
            crate::api::write_scan_to_fd(command, &self.report, selection, lines, fd)
        })
    }
}

/// What one ``holders()`` search found, kept native: ``Holders`` is a view of it, and
/// ``kcmp-rs holders -J/-j`` writes it as JSON without building that view.
#[pyclass(frozen, module = "kcmp_rs._native")]
pub struct HoldersReport {
    pub(super) report: crate::api::HoldersReport,
}

#[pymethods]
impl HoldersReport {
    /// The pid asked about.
    #[getter]
    fn pid(&self) -> Pid {
        self.report.target.0
    }

    /// The fd asked about.
    #[getter]
    fn fd(&self) -> Fd {
        self.report.target.1
    }

    /// The (pid, fd) pairs referring to the target's description, ascending.
    #[getter]
    fn holders(&self) -> Vec<(Pid, Fd)> {
        self.report.holders.clone()
    }

    /// (target as bytes, None once gone; mode; type) of the asked fd.
    #[pyo3(text_signature = "($self)")]
    fn shown<'py>(&self, py: Python<'py>) -> (Option<Bound<'py, PyBytes>>, &'static str, String) {
        let (target, mode, kind) = &self.report.shown;
        (
            target.as_ref().map(|t| PyBytes::new(py, t)),
            mode,
            kind.clone(),
        )
    }

    /// (pid, command name as bytes, None once gone) of each holder's process.
    #[pyo3(text_signature = "($self)")]
    fn commands<'py>(&'py self, py: Python<'py>) -> Vec<(Pid, Option<Bound<'py, PyBytes>>)> {
        names(py, self.report.commands.iter().map(|(p, c)| (*p, c)))
    }

    /// (pid, reason) of each process not read, ascending.
    #[getter]
    fn skipped(&self) -> Vec<(Pid, String)> {
        self.report.skipped.clone()
    }

    /// Processes whose fds were read (sharers of a read fd table included).
    #[getter]
    fn processes_read(&self) -> usize {
        self.report.processes_read
    }

    /// Candidate fds compared with the target.
    #[getter]
    fn fds_compared(&self) -> u64 {
        self.report.fds_compared
    }

    /// The fds on the target's inode no exact method could decide, ascending.
    #[getter]
    fn undecided(&self) -> Vec<(Pid, Fd)> {
        self.report.undecided.clone()
    }

    /// The pids sharing one fd table, smallest (the one read) first.
    #[getter]
    fn fd_table_shared(&self) -> Vec<Vec<Pid>> {
        self.report.fd_table_shared.clone()
    }

    /// Writes the answer to ``fd`` as ``kcmp-rs holders -J`` (``lines=False``) or ``-j``
    /// prints it, the GIL released; OSError (BrokenPipeError, ...) if it cannot.
    #[pyo3(text_signature = "($self, fd, lines)")]
    fn write_json(&self, py: Python<'_>, fd: &Bound<'_, PyAny>, lines: bool) -> PyResult<()> {
        written(py, fd, |fd| {
            crate::api::write_holders_to_fd(&self.report, lines, fd)
        })
    }
}

/// What the epoll sets of one process watch, kept native: ``epoll_targets()`` builds
/// its answer from it and ``kcmp-rs epoll -J/-j`` writes it as JSON.
#[pyclass(frozen, module = "kcmp_rs._native")]
pub struct EpollReport {
    pub(super) report: crate::api::EpollReport,
}

/// One registration for Python: tfd, index, events, data, ino, status, holders.
type RegistrationRow = (Fd, i32, u32, u64, u64, &'static str, Vec<(Pid, Fd)>);

#[pymethods]
impl EpollReport {
    /// Each set asked about, ``(epfd, registrations)``, registrations in the kernel's
    /// order as ``(tfd, index, events, data, ino, status, holders)``.
    #[pyo3(text_signature = "($self)")]
    fn sets(&self) -> Vec<(Fd, Vec<RegistrationRow>)> {
        self.report
            .sets
            .iter()
            .map(|(epfd, regs)| {
                let rows = regs
                    .iter()
                    .map(|r| {
                        let status = r.status.as_str();
                        (
                            r.tfd,
                            r.index,
                            r.events,
                            r.data,
                            r.ino,
                            status,
                            r.holders.clone(),
                        )
                    })
                    .collect();
                (*epfd, rows)
            })
            .collect()
    }

    /// (pid, command name as bytes, None once gone) of each holder's process.
    #[pyo3(text_signature = "($self)")]
    fn commands<'py>(&'py self, py: Python<'py>) -> Vec<(Pid, Option<Bound<'py, PyBytes>>)> {
        names(py, self.report.commands.iter().map(|(p, c)| (*p, c)))
    }

    /// ``KCMP_EPOLL_TFD`` calls made.
    #[getter]
    fn calls(&self) -> u64 {
        self.report.calls
    }

    /// Writes the answer to ``fd`` as ``kcmp-rs epoll -J`` (``lines=False``) or ``-j``
    /// prints it, the GIL released; OSError (BrokenPipeError, ...) if it cannot.
    #[pyo3(text_signature = "($self, fd, lines)")]
    fn write_json(&self, py: Python<'_>, fd: &Bound<'_, PyAny>, lines: bool) -> PyResult<()> {
        written(py, fd, |fd| {
            crate::api::write_epoll_to_fd(&self.report, lines, fd)
        })
    }
}
