//! A `Failure` as the exception a Python user expects: Python's own OSError subclass
//! picked by errno (PEP 3151), with `errno`, `strerror`, `pid` and `fd` set, or our
//! `KcmpUnavailableError` (with `reason` and `undecided`) where kcmp cannot be used.

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::error::Failure;
use crate::sys::{Fd, Pid};

use super::cached;

/// The exception for `failure`. `Failure::Interrupted` re-raises the pending signal's
/// exception (KeyboardInterrupt) when there is one.
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
        } => cached(py).and_then(|t| {
            let exc = t.unavailable.bind(py).call1(args.clone())?;
            exc.setattr("reason", reason)?;
            let undecided: Vec<(Pid, Fd)> = undecided.clone();
            exc.setattr("undecided", PyTuple::new(py, undecided)?)?;
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
        .and_then(|()| exc.setattr("fd", failure.fd()));
    match attrs {
        Ok(()) => PyErr::from_value(exc),
        Err(e) => e,
    }
}
