//! A `Failure` as the exception a Python user expects: a `KcmpError` (python/kcmp_rs/
//! _types.py) that is also the OSError subclass Python picks for its errno (PEP 3151),
//! with `errno`, `strerror`, `pid` and `fd` set: `ProcessGoneError` (with `kind`),
//! `FdNotOpenError`, `ProcessAccessError`, `KcmpUnavailableError` (with `reason` and
//! `undecided`), or for any other errno the class `_types.error_class` gives.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyType};

use crate::error::Failure;
use crate::sys::{Fd, Pid};

use super::cached;

/// The exception classes, looked up once (in `Cached`).
pub struct Classes {
    gone: Py<PyType>,
    not_open: Py<PyType>,
    access: Py<PyType>,
    unavailable: Py<PyType>,
    /// `_types.error_class(errno)`: the class for any other errno.
    by_errno: Py<PyAny>,
}

impl Classes {
    /// The classes of `kcmp_rs._errors`.
    pub fn load(types: &Bound<'_, PyModule>) -> PyResult<Classes> {
        let class = |name: &str| -> PyResult<Py<PyType>> {
            Ok(types.getattr(name)?.cast_into::<PyType>()?.unbind())
        };
        Ok(Classes {
            gone: class("ProcessGoneError")?,
            not_open: class("FdNotOpenError")?,
            access: class("ProcessAccessError")?,
            unavailable: class("KcmpUnavailableError")?,
            by_errno: types.getattr("error_class")?.unbind(),
        })
    }
}

/// The exception for `failure`. `Failure::Interrupted` re-raises the pending signal's
/// exception (KeyboardInterrupt) when there is one.
pub fn to_pyerr(py: Python<'_>, failure: &Failure) -> PyErr {
    if let Failure::Interrupted = failure {
        if let Some(e) = PyErr::take(py) {
            return e;
        }
    }
    match build(py, failure) {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

/// `class(errno, message, **attributes)`, the class and attributes chosen by variant.
fn build<'py>(py: Python<'py>, failure: &Failure) -> PyResult<Bound<'py, PyAny>> {
    let classes = &cached(py)?.errors;
    let attrs = PyDict::new(py);
    let class = match failure {
        Failure::NotOpen { pid, fd } => {
            attrs.set_item("pid", pid)?;
            attrs.set_item("fd", fd)?;
            classes.not_open.bind(py).clone()
        }
        Failure::Denied { pid } => {
            attrs.set_item("pid", pid)?;
            classes.access.bind(py).clone()
        }
        Failure::Unavailable {
            reason, undecided, ..
        } => {
            attrs.set_item("reason", reason)?;
            let undecided: Vec<(Pid, Fd)> = undecided.clone();
            attrs.set_item("undecided", PyTuple::new(py, undecided)?)?;
            classes.unavailable.bind(py).clone()
        }
        _ => match failure.gone_kind() {
            Some(kind) => {
                attrs.set_item("pid", failure.pid())?;
                attrs.set_item("kind", kind)?;
                classes.gone.bind(py).clone()
            }
            None => {
                attrs.set_item("pid", failure.pid())?;
                attrs.set_item("fd", failure.fd())?;
                classes
                    .by_errno
                    .bind(py)
                    .call1((failure.errno(),))?
                    .cast_into::<PyType>()?
            }
        },
    };
    class.call((failure.errno(), failure.message()), Some(&attrs))
}
