//! The native functions' argument types: `FromPyObject` newtypes with the exact classes
//! and messages the Python API documents (`pid1 must be an int, not bool`). Pids, fds,
//! indexes and types take what `operator.index` takes (numpy integers, IntEnum), never
//! a bool.
//!
//! A newtype's `extract` does not know which argument it converts, so it refuses with a
//! `Refusal` that the caller names: `arg::<Pid>(pid1, "pid1")?`. That is also why the
//! functions take `&Bound<PyAny>` in their signatures and convert in their bodies:
//! PyO3 0.29 passes an error raised while extracting a signature argument through
//! `argument_extraction_error`, which (on Python 3.11+) adds a "while processing
//! 'pid1'" note to the exception, and an iterable's own exception must reach the
//! caller exactly as raised. Only `Optional`, whose extraction cannot fail, sits in
//! signatures.
//!
//! Conversion only: the ranges come from `sys`, and nothing here calls the kernel.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyInt, PyList, PyString, PyTuple};
use pyo3::Borrowed;

use crate::engine::{GroupOrder, Missing};
use crate::sys;

/// Why a value was refused, before the argument's name is known.
pub enum Refusal {
    /// A `TypeError` whose message is the argument's name, a space and this.
    Type(String),
    /// A `TypeError` like `Type`, caused by the `TypeError` the value's own `__index__`
    /// raised (chained as its `__cause__`).
    TypeFrom(String, PyErr),
    /// A `ValueError` whose message is the argument's name, a space and this.
    Value(String),
    /// An exception that is already final: an iterable's own, or one naming an item
    /// (`each fd in fds must be ...`).
    Raised(PyErr),
}

impl Refusal {
    /// The exception for argument `name`.
    pub fn named(self, py: Python<'_>, name: &str) -> PyErr {
        match self {
            Refusal::Type(complaint) => PyTypeError::new_err(format!("{name} {complaint}")),
            Refusal::TypeFrom(complaint, cause) => {
                let err = PyTypeError::new_err(format!("{name} {complaint}"));
                err.set_cause(py, Some(cause));
                err
            }
            Refusal::Value(complaint) => PyValueError::new_err(format!("{name} {complaint}")),
            Refusal::Raised(err) => err,
        }
    }
}

impl From<PyErr> for Refusal {
    fn from(err: PyErr) -> Self {
        Refusal::Raised(err)
    }
}

/// Only reached if a newtype is extracted without `arg` (never in this crate): the
/// message then says "argument" where the name would be.
impl From<Refusal> for PyErr {
    fn from(refusal: Refusal) -> Self {
        Python::attach(|py| refusal.named(py, "argument"))
    }
}

/// Converts argument `name`; a refusal becomes the exception naming it.
pub fn arg<'a, 'py, T>(obj: &'a Bound<'py, PyAny>, name: &str) -> PyResult<T>
where
    T: FromPyObject<'a, 'py, Error = Refusal>,
{
    obj.extract::<T>()
        .map_err(|refusal| refusal.named(obj.py(), name))
}

/// An optional argument as given, so that an explicit `None` is refused like any other
/// value of the wrong type instead of reading as "absent".
pub enum Optional<'py> {
    /// Not passed: the default applies.
    Absent,
    /// Passed, `None` included.
    Given(Bound<'py, PyAny>),
}

impl<'a, 'py> FromPyObject<'a, 'py> for Optional<'py> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Ok(Optional::Given(obj.to_owned()))
    }
}

impl<'py> Optional<'py> {
    /// The argument converted, or `default` when it was not passed.
    pub fn or<T>(self, name: &str, default: T) -> PyResult<T>
    where
        T: for<'a> FromPyObject<'a, 'py, Error = Refusal>,
    {
        match self {
            Optional::Absent => Ok(default),
            Optional::Given(obj) => arg(&obj, name),
        }
    }
}

/// The largest pid, fd or index the kernel takes (they are C ints).
const INT_MAX: i64 = i32::MAX as i64;

fn type_name(obj: Borrowed<'_, '_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "?".into(), |n| n.to_string())
}

fn repr(obj: Borrowed<'_, '_, PyAny>) -> String {
    obj.repr().map(|r| r.to_string()).unwrap_or_default()
}

/// `operator.index`, looked up once.
static INDEX: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Type names that mean a boolean: numpy's (`bool` in numpy 2, `bool_` before), whose
/// `__index__` up to numpy 2.0 answers 0 or 1 with only a DeprecationWarning.
const BOOL_NAMES: [&str; 2] = ["bool", "bool_"];

/// `obj` as an int, taking what `operator.index` takes (numpy integers, IntEnum members,
/// any `__index__`) as `os` functions do, but never a bool (`BOOL_NAMES`): `True` for a
/// pid or fd is more likely a mistake than intent. `expected` is what the TypeError
/// asks for. An `__index__` that raises TypeError refuses the value (its error chained
/// as the cause); any other exception it raises propagates as raised, like an
/// iterable's.
fn integer<'py>(
    obj: Borrowed<'_, 'py, PyAny>,
    expected: &str,
) -> Result<Bound<'py, PyInt>, Refusal> {
    let complaint = || format!("must be {expected}, not {}", type_name(obj));
    if obj.is_instance_of::<PyBool>() {
        return Err(Refusal::Type(complaint()));
    }
    if let Ok(int) = obj.cast::<PyInt>() {
        return Ok(int.to_owned());
    }
    // Without __index__ on the type the refusal stands alone: no "cannot be interpreted
    // as an integer" chained to it.
    if BOOL_NAMES.contains(&type_name(obj).as_str()) || !obj.get_type().hasattr("__index__")? {
        return Err(Refusal::Type(complaint()));
    }
    let py = obj.py();
    match INDEX.import(py, "operator", "index")?.call1((obj,)) {
        Ok(int) => Ok(int.cast_into::<PyInt>().map_err(PyErr::from)?),
        Err(e) if e.is_instance_of::<PyTypeError>(py) => Err(Refusal::TypeFrom(complaint(), e)),
        Err(e) => Err(Refusal::Raised(e)),
    }
}

/// An int as a message shows it: its decimal digits, also for an int subclass (an
/// IntEnum member's repr would be `<Color.RED: 1>`).
fn int_text(int: &Bound<'_, PyInt>) -> String {
    let exact = if int.is_exact_instance_of::<PyInt>() {
        Ok(int.clone().into_any())
    } else {
        int.py().get_type::<PyInt>().call1((int,))
    };
    exact
        .and_then(|i| i.repr())
        .map(|r| r.to_string())
        .unwrap_or_default()
}

/// An int in `lo..=INT_MAX`: bool and non-integers are refused by type, the rest by
/// value.
fn bounded_int(obj: Borrowed<'_, '_, PyAny>, lo: i64, what: &str) -> Result<i32, Refusal> {
    let int = integer(obj, "an int")?;
    match int.extract::<i64>() {
        Ok(v) if (lo..=INT_MAX).contains(&v) => Ok(v as i32),
        _ => Err(Refusal::Value(format!(
            "must be {what} in {lo}..{INT_MAX}, got {}",
            int_text(&int)
        ))),
    }
}

/// A process id: an int in 1..=2**31-1.
#[derive(Debug, Clone, Copy)]
pub struct Pid(pub sys::Pid);

impl FromPyObject<'_, '_> for Pid {
    type Error = Refusal;

    fn extract(obj: Borrowed<'_, '_, PyAny>) -> Result<Self, Refusal> {
        bounded_int(obj, 1, "a pid").map(Pid)
    }
}

/// An fd number: an int in 0..=2**31-1 (a wider one would alias after the kernel's
/// 32-bit truncation).
#[derive(Debug, Clone, Copy)]
pub struct Fd(pub sys::Fd);

impl FromPyObject<'_, '_> for Fd {
    type Error = Refusal;

    fn extract(obj: Borrowed<'_, '_, PyAny>) -> Result<Self, Refusal> {
        bounded_int(obj, 0, "an fd").map(Fd)
    }
}

/// An index into an epoll set's registrations of one fd number (`target_index`).
#[derive(Debug, Clone, Copy)]
pub struct Index(pub i32);

impl FromPyObject<'_, '_> for Index {
    type Error = Refusal;

    fn extract(obj: Borrowed<'_, '_, PyAny>) -> Result<Self, Refusal> {
        bounded_int(obj, 0, "an index").map(Index)
    }
}

/// A `KcmpType` member or its int value, refusing EPOLL_TFD (whose second index is a
/// pointer) and, unless `allow_file`, FILE.
fn kcmp_type(obj: Borrowed<'_, '_, PyAny>, allow_file: bool) -> Result<i32, Refusal> {
    let int = integer(obj, "a KcmpType or int")?;
    let ty = match int.extract::<i64>() {
        Ok(v) if (0..i64::from(sys::KCMP_TYPES)).contains(&v) => v as i32,
        _ => {
            return Err(Refusal::Value(format!(
                "must be a KcmpType (0..7), got {}",
                int_text(&int)
            )))
        }
    };
    if ty == sys::KCMP_EPOLL_TFD {
        return Err(Refusal::Value(
            "EPOLL_TFD compares against an epoll registration, not an index: \
             use same_epoll_target()"
                .into(),
        ));
    }
    if ty == sys::KCMP_FILE && !allow_file {
        return Err(Refusal::Value(
            "FILE compares fds, not tasks: use same_file() or classify_files()".into(),
        ));
    }
    Ok(ty)
}

/// The `type` of `kcmp()`: any kcmp type compared by index (all but EPOLL_TFD).
#[derive(Debug, Clone, Copy)]
pub struct IndexType(pub i32);

impl FromPyObject<'_, '_> for IndexType {
    type Error = Refusal;

    fn extract(obj: Borrowed<'_, '_, PyAny>) -> Result<Self, Refusal> {
        kcmp_type(obj, true).map(IndexType)
    }
}

/// A task resource type (VM, FILES, FS, SIGHAND, IO, SYSVSEM): not FILE or EPOLL_TFD.
#[derive(Debug, Clone, Copy)]
pub struct TaskType(pub i32);

impl FromPyObject<'_, '_> for TaskType {
    type Error = Refusal;

    fn extract(obj: Borrowed<'_, '_, PyAny>) -> Result<Self, Refusal> {
        kcmp_type(obj, false).map(TaskType)
    }
}

/// A strict bool flag: `1` or `"yes"` for a flag is more likely a mistake than intent.
#[derive(Debug, Clone, Copy)]
pub struct Flag(pub bool);

impl FromPyObject<'_, '_> for Flag {
    type Error = Refusal;

    fn extract(obj: Borrowed<'_, '_, PyAny>) -> Result<Self, Refusal> {
        match obj.cast::<PyBool>() {
            Ok(b) => Ok(Flag(b.is_true())),
            Err(_) => Err(Refusal::Type(format!(
                "must be a bool, not {}",
                type_name(obj)
            ))),
        }
    }
}

/// One of a few strings, e.g. `order="fd"`.
fn choice<T: Copy>(obj: Borrowed<'_, '_, PyAny>, choices: &[(&str, T)]) -> Result<T, Refusal> {
    let Ok(text) = obj.cast::<PyString>() else {
        return Err(Refusal::Type(format!(
            "must be a str, not {}",
            type_name(obj)
        )));
    };
    let value = text.to_cow()?;
    for (name, v) in choices {
        if *name == value {
            return Ok(*v);
        }
    }
    let names: Vec<String> = choices.iter().map(|(t, _)| format!("{t:?}")).collect();
    Err(Refusal::Value(format!(
        "must be {}, got {}",
        names.join(" or "),
        repr(obj)
    )))
}

/// `order`: "fd" (by smallest fd) or "kernel" (kcmp's order).
#[derive(Debug, Clone, Copy)]
pub struct Order(pub GroupOrder);

impl Order {
    /// The default, `order="fd"`.
    pub const DEFAULT: Order = Order(GroupOrder::Fd);
}

impl FromPyObject<'_, '_> for Order {
    type Error = Refusal;

    fn extract(obj: Borrowed<'_, '_, PyAny>) -> Result<Self, Refusal> {
        choice(
            obj,
            &[("fd", GroupOrder::Fd), ("kernel", GroupOrder::Kernel)],
        )
        .map(Order)
    }
}

/// `missing`: "raise" or "skip" what vanished mid-batch.
#[derive(Debug, Clone, Copy)]
pub struct MissingPolicy(pub Missing);

impl MissingPolicy {
    /// The default, `missing="raise"`.
    pub const DEFAULT: MissingPolicy = MissingPolicy(Missing::Raise);
}

impl FromPyObject<'_, '_> for MissingPolicy {
    type Error = Refusal;

    fn extract(obj: Borrowed<'_, '_, PyAny>) -> Result<Self, Refusal> {
        choice(obj, &[("raise", Missing::Raise), ("skip", Missing::Skip)]).map(MissingPolicy)
    }
}

/// Every item of an iterable through `each`. `what` says what the items should be;
/// the iterable's own exceptions and `each`'s (already named) propagate as raised.
fn collect<T>(
    obj: Borrowed<'_, '_, PyAny>,
    what: &str,
    mut each: impl FnMut(&Bound<'_, PyAny>) -> PyResult<T>,
) -> Result<Vec<T>, Refusal> {
    let refused = || {
        Refusal::Type(format!(
            "must be an iterable of {what}, not {}",
            type_name(obj)
        ))
    };
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(refused());
    }
    let iter = match obj.try_iter() {
        Ok(iter) => iter,
        // Not iterable at all: say what was expected. An __iter__ that raised keeps
        // its own exception.
        Err(e) if e.is_instance_of::<PyTypeError>(obj.py()) && !obj.hasattr("__iter__")? => {
            return Err(refused())
        }
        Err(e) => return Err(Refusal::Raised(e)),
    };
    // Only a real list or tuple's length is trusted for preallocation: any other
    // __len__ is user code that may raise or lie.
    let hint = if obj.is_exact_instance_of::<PyList>() || obj.is_exact_instance_of::<PyTuple>() {
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

/// The `fds` of `classify_fds`: an iterable of fd numbers.
pub struct Fds(pub Vec<sys::Fd>);

impl FromPyObject<'_, '_> for Fds {
    type Error = Refusal;

    fn extract(obj: Borrowed<'_, '_, PyAny>) -> Result<Self, Refusal> {
        collect(obj, "ints", |o| Ok(arg::<Fd>(o, "each fd in fds")?.0)).map(Fds)
    }
}

/// The `pids` of `classify_tasks`: an iterable of pids.
pub struct Pids(pub Vec<sys::Pid>);

impl FromPyObject<'_, '_> for Pids {
    type Error = Refusal;

    fn extract(obj: Borrowed<'_, '_, PyAny>) -> Result<Self, Refusal> {
        collect(obj, "ints", |o| Ok(arg::<Pid>(o, "each pid in pids")?.0)).map(Pids)
    }
}

/// The `refs` of `classify_files`: an iterable of (pid, fd) tuples.
pub struct Refs(pub Vec<(sys::Pid, sys::Fd)>);

impl FromPyObject<'_, '_> for Refs {
    type Error = Refusal;

    fn extract(obj: Borrowed<'_, '_, PyAny>) -> Result<Self, Refusal> {
        collect(obj, "(pid, fd) pairs", |o| {
            let refused = |what: String| {
                PyTypeError::new_err(format!(
                    "each item of refs must be a (pid, fd) tuple, not {what}"
                ))
            };
            let pair = match o.cast::<PyTuple>() {
                Ok(t) if t.len() == 2 => t,
                Ok(t) => {
                    let n = t.len();
                    return Err(refused(format!(
                        "a tuple of {n} item{}",
                        if n == 1 { "" } else { "s" }
                    )));
                }
                Err(_) => return Err(refused(type_name(o.as_borrowed()))),
            };
            Ok((
                arg::<Pid>(&pair.get_item(0)?, "pid in refs")?.0,
                arg::<Fd>(&pair.get_item(1)?, "fd in refs")?.0,
            ))
        })
        .map(Refs)
    }
}
