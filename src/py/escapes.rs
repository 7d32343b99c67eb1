//! The escape audit's report as plain Python values, for `kcmp_rs._escapes` to build
//! its result types from: every row at once (a report has few findings).

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::api::{EscapesReport, Finding, Place};

fn bytes<'py>(py: Python<'py>, b: Option<&Vec<u8>>) -> Option<Bound<'py, PyBytes>> {
    b.map(|b| PyBytes::new(py, b))
}

/// One finding: `(pid, where, kind, severity, mnt_id, fs_type, path, mount_point,
/// file_type, mode, shared_with)`, `where` the fd number, "cwd" or "root".
fn finding<'py>(py: Python<'py>, f: &Finding) -> PyResult<Bound<'py, PyTuple>> {
    let place = match f.place {
        Place::Fd(fd) => fd.into_pyobject(py)?.into_any(),
        Place::Cwd => "cwd".into_pyobject(py)?.into_any(),
        Place::Root => "root".into_pyobject(py)?.into_any(),
    };
    let items: Vec<Bound<'py, PyAny>> = vec![
        f.pid.into_pyobject(py)?.into_any(),
        place,
        f.kind.into_pyobject(py)?.into_any(),
        f.severity.into_pyobject(py)?.into_any(),
        f.mnt_id.into_pyobject(py)?.into_any(),
        bytes(py, f.fs_type.as_ref()).into_pyobject(py)?.into_any(),
        PyBytes::new(py, &f.path).into_any(),
        bytes(py, f.mount_point.as_ref())
            .into_pyobject(py)?
            .into_any(),
        f.file_type.as_str().into_pyobject(py)?.into_any(),
        f.mode.into_pyobject(py)?.into_any(),
        PyList::new(py, &f.shared_with)?.into_any(),
    ];
    PyTuple::new(py, items)
}

/// `(findings, processes, commands, skipped, processes_read, mount_namespaces_read,
/// notes)`: `processes` maps each pid with findings to `(command, container,
/// mount_namespace, fs_shared_with)`, `commands` each holder in a `shared_with`.
pub fn answer<'py>(py: Python<'py>, report: &EscapesReport) -> PyResult<Bound<'py, PyTuple>> {
    let findings = report
        .findings
        .iter()
        .map(|f| finding(py, f))
        .collect::<PyResult<Vec<_>>>()?;
    let processes = PyDict::new(py);
    for (pid, p) in &report.processes {
        let container = p
            .container
            .as_ref()
            .map(|(runtime, id)| (*runtime, id.as_str()));
        processes.set_item(
            pid,
            (
                bytes(py, p.command.as_ref()),
                container,
                p.mount_namespace,
                p.fs_shared_with.clone(),
            ),
        )?;
    }
    let commands = PyDict::new(py);
    for (pid, name) in &report.commands {
        commands.set_item(pid, bytes(py, name.as_ref()))?;
    }
    let items: Vec<Bound<'py, PyAny>> = vec![
        PyList::new(py, findings)?.into_any(),
        processes.into_any(),
        commands.into_any(),
        PyList::new(py, &report.skipped)?.into_any(),
        report.processes_read.into_pyobject(py)?.into_any(),
        report.mount_namespaces_read.into_pyobject(py)?.into_any(),
        PyList::new(py, &report.notes)?.into_any(),
    ];
    PyTuple::new(py, items)
}
