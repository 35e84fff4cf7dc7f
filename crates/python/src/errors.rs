//! The exception classes of the `mnemo` package and the mapping of
//! [`mnemo::Error`] onto them.
//!
//! The classes are made at module init with `type(name, bases, ns)` so that
//! some can have two bases (`InvalidInput` is a `ValueError` too, `DiskFull`
//! an `OSError`), which `create_exception!` cannot do. Each raised instance
//! carries the error's fields as attributes (`.field`, `.reason`, …).

use pyo3::exceptions::{PyException, PyTimeoutError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

/// The exception classes, made once by [`add_to_module`].
struct Classes {
    base: Py<PyType>,
    invalid_input: Py<PyType>,
    invalid_config: Py<PyType>,
    overloaded: Py<PyType>,
    closed: Py<PyType>,
    disk_full: Py<PyType>,
    not_committed_yet: Py<PyType>,
    dead_lettered: Py<PyType>,
    write_failed: Py<PyType>,
    not_indexed: Py<PyType>,
    open_error: Py<PyType>,
}

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

/// (name, docstring, extra builtin base) of every subclass of `MnemoError`.
const SUBCLASSES: &[(&str, &str, Option<&str>)] = &[
    (
        "InvalidInput",
        "A field of a request is malformed; nothing was written.\n\n\
         ``.field`` names it (``namespace``, ``category``, ``key``, ``value``, ``metadata``, \
         ``query``, ``limit`` or ``cursor``), ``.reason`` says what to fix. Also a ``ValueError``.",
        Some("ValueError"),
    ),
    (
        "InvalidConfig",
        "A configuration value given to ``Memory(...)`` is out of range. Also a ``ValueError``.",
        Some("ValueError"),
    ),
    (
        "Overloaded",
        "Too many saves are waiting to be committed; retry shortly. Nothing was written.\n\n\
         ``.pending`` and ``.pending_bytes`` say how many saves (and bytes) wait.",
        None,
    ),
    (
        "Closed",
        "The memory was closed (or its engine stopped).",
        None,
    ),
    (
        "DiskFull",
        "No room on the device for the crash journal: the save was not accepted.\n\n\
         ``.path`` is the journal folder. Also an ``OSError``.",
        Some("OSError"),
    ),
    (
        "NotCommittedYet",
        "A wait ended because the writer has been unable to commit for longer than \
         ``busy_deadline_ms`` (a locked database, a full disk).\n\n\
         The save is kept: it stays readable, the writer keeps retrying, and the next open of \
         the database commits whatever this process does not. ``.waited`` (seconds) and \
         ``.reason`` say how long and why.",
        None,
    ),
    (
        "DeadLettered",
        "The database rejected this save for its content; it is kept in the ``dead_letters`` \
         table. ``.reason`` is the database's message.",
        None,
    ),
    (
        "WriteFailed",
        "The save was lost (only possible with ``journal=False``, when the engine stopped \
         while its writer could not commit). ``.reason`` says what failed.",
        None,
    ),
    (
        "NotIndexed",
        "Committed, but the search index could not be brought up to date; the next open \
         indexes it. ``.reason`` says what the indexer ran into.",
        None,
    ),
    (
        "OpenError",
        "The database could not be opened (not a database, corrupt, read-only, a server that \
         is down or refuses the login). ``.path`` and ``.reason`` say which and why.",
        None,
    ),
];

/// Makes the classes and adds them to the module.
pub(crate) fn add_to_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let builtins = py.import("builtins")?;
    let type_ = builtins.getattr("type")?;
    let make = |name: &str, doc: &str, bases: Bound<'_, PyTuple>| -> PyResult<Py<PyType>> {
        let ns = PyDict::new(py);
        ns.set_item("__module__", "mnemo")?;
        ns.set_item("__doc__", doc)?;
        let cls = type_.call1((name, bases, ns))?.cast_into::<PyType>()?;
        m.add(name, &cls)?;
        Ok(cls.unbind())
    };
    let base = make(
        "MnemoError",
        "The base class of every error mnemo raises.",
        PyTuple::new(py, [py.get_type::<PyException>()])?,
    )?;
    let mut made = Vec::with_capacity(SUBCLASSES.len());
    for (name, doc, extra) in SUBCLASSES {
        let mut bases = vec![base.bind(py).clone().into_any()];
        if let Some(extra) = extra {
            bases.push(builtins.getattr(*extra)?);
        }
        made.push(make(name, doc, PyTuple::new(py, bases)?)?);
    }
    let mut it = made.into_iter();
    let mut next = || it.next().expect("one class per entry of SUBCLASSES");
    let classes = Classes {
        base,
        invalid_input: next(),
        invalid_config: next(),
        overloaded: next(),
        closed: next(),
        disk_full: next(),
        not_committed_yet: next(),
        dead_lettered: next(),
        write_failed: next(),
        not_indexed: next(),
        open_error: next(),
    };
    // A second init (a sub-interpreter, a reload) keeps the first classes.
    let _ = CLASSES.set(py, classes);
    Ok(())
}

fn classes(py: Python<'_>) -> &Classes {
    CLASSES
        .get(py)
        .expect("mnemo._mnemo's exception classes are made at import")
}

/// An instance of `cls(message)` with `attrs` set on it, as a `PyErr`.
fn raise(
    py: Python<'_>,
    cls: &Py<PyType>,
    message: String,
    attrs: &[(&str, Bound<'_, PyAny>)],
) -> PyErr {
    let made = cls.bind(py).call1((message,)).and_then(|exc| {
        for (name, value) in attrs {
            exc.setattr(*name, value)?;
        }
        Ok(exc)
    });
    match made {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

/// `mnemo.InvalidInput` for `field`.
pub(crate) fn invalid_input(py: Python<'_>, field: &str, reason: &str) -> PyErr {
    raise(
        py,
        &classes(py).invalid_input,
        format!("invalid {field}: {reason}"),
        &[
            ("field", field.into_pyobject(py).unwrap().into_any()),
            ("reason", reason.into_pyobject(py).unwrap().into_any()),
        ],
    )
}

/// `mnemo.InvalidConfig`.
pub(crate) fn invalid_config(py: Python<'_>, message: String) -> PyErr {
    raise(
        py,
        &classes(py).invalid_config,
        format!("invalid config: {message}"),
        &[],
    )
}

/// `mnemo.Closed`.
pub(crate) fn closed(py: Python<'_>) -> PyErr {
    raise(py, &classes(py).closed, "mnemo is closed".into(), &[])
}

/// `TimeoutError` for a blocking wait that ran out.
pub(crate) fn timed_out(what: &str, seconds: f64) -> PyErr {
    PyTimeoutError::new_err(format!(
        "the save was not {what} within {seconds} s (it is still accepted and kept; wait again \
         or await the receipt)"
    ))
}

/// The Python exception for an engine error.
pub(crate) fn to_py(py: Python<'_>, err: mnemo::Error) -> PyErr {
    use mnemo::Error as E;
    let c = classes(py);
    let message = err.to_string();
    let s = |v: &str| v.into_pyobject(py).unwrap().into_any();
    match err {
        E::InvalidInput { field, reason } => invalid_input(py, field, &reason),
        E::InvalidConfig(m) => invalid_config(py, m),
        E::Overloaded {
            pending,
            pending_bytes,
        } => raise(
            py,
            &c.overloaded,
            message,
            &[
                ("pending", pending.into_pyobject(py).unwrap().into_any()),
                (
                    "pending_bytes",
                    pending_bytes.into_pyobject(py).unwrap().into_any(),
                ),
            ],
        ),
        E::Closed => raise(py, &c.closed, message, &[]),
        E::DiskFull { path } => raise(
            py,
            &c.disk_full,
            message,
            &[("path", s(&path.to_string_lossy()))],
        ),
        E::NotCommittedYet { waited, reason } => raise(
            py,
            &c.not_committed_yet,
            message,
            &[
                (
                    "waited",
                    waited.as_secs_f64().into_pyobject(py).unwrap().into_any(),
                ),
                ("reason", s(&reason)),
            ],
        ),
        E::DeadLettered { reason } => {
            raise(py, &c.dead_lettered, message, &[("reason", s(&reason))])
        }
        E::WriteFailed { reason } => raise(py, &c.write_failed, message, &[("reason", s(&reason))]),
        E::NotIndexed { reason } => raise(py, &c.not_indexed, message, &[("reason", s(&reason))]),
        E::Open { path, reason } => raise(
            py,
            &c.open_error,
            message,
            &[("path", s(&path.to_string_lossy())), ("reason", s(&reason))],
        ),
        _ => raise(py, &c.base, message, &[]),
    }
}
