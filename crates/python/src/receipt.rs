//! `Receipt` and `Outcome`: what `save` and `forget` return, and what
//! waiting on a receipt gives.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;
use tokio::task::AbortHandle;

use mnemo::{Receipt, ReceiptStatus, WriteOutcome};

use crate::errors;
use crate::waiter::waiter;

/// Which resolution a wait is for.
#[derive(Clone, Copy, PartialEq)]
enum Until {
    Durable,
    Indexed,
}

impl Until {
    fn word(self) -> &'static str {
        match self {
            Until::Durable => "durable",
            Until::Indexed => "indexed",
        }
    }

    async fn wait(self, receipt: Receipt) -> mnemo::Result<WriteOutcome> {
        match self {
            Until::Durable => receipt.durable().await,
            Until::Indexed => receipt.indexed().await,
        }
    }

    /// The result now if the receipt is already past this point (the
    /// engine's wait would return it at once), else `None`.
    fn settled(self, receipt: &Receipt) -> Option<mnemo::Result<WriteOutcome>> {
        match receipt.status() {
            ReceiptStatus::Indexed(o) => Some(Ok(o)),
            ReceiptStatus::Durable(o) if self == Until::Durable => Some(Ok(o)),
            ReceiptStatus::Failed(f) => Some(Err(f.into())),
            _ => None,
        }
    }
}

/// Proof that a save (or forget) was accepted, and a way to learn when it
/// is durable and when the index has it.
///
/// Awaiting is optional: dropping a receipt changes nothing (the save still
/// commits).
#[pyclass(name = "Receipt", module = "mnemo", frozen)]
pub struct PyReceipt {
    inner: Receipt,
}

impl PyReceipt {
    pub(crate) fn new(inner: Receipt) -> Self {
        PyReceipt { inner }
    }

    fn awaitable<'py>(&self, py: Python<'py>, until: Until) -> PyResult<Bound<'py, PyAny>> {
        static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let get_loop = GET_RUNNING_LOOP.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            Ok(py.import("asyncio")?.getattr("get_running_loop")?.unbind())
        })?;
        // Raises RuntimeError outside a running loop, as asyncio does.
        let event_loop = get_loop.bind(py).call0()?;
        let future = event_loop.call_method0(pyo3::intern!(py, "create_future"))?;
        if let Some(result) = until.settled(&self.inner) {
            match result {
                Ok(o) => future.call_method1("set_result", (PyOutcome::from(o),))?,
                Err(e) => {
                    future.call_method1("set_exception", (errors::to_py(py, e).into_value(py),))?
                }
            };
            return Ok(future);
        }
        let receipt = self.inner.clone();
        let abort = waiter().settle_future(
            event_loop.unbind(),
            future.clone().unbind(),
            until.wait(receipt),
        );
        // A cancelled await (a timeout, a cancelled task) stops the wait.
        future.call_method1(
            pyo3::intern!(py, "add_done_callback"),
            (Canceller { abort },),
        )?;
        Ok(future)
    }

    fn wait_blocking(
        &self,
        py: Python<'_>,
        until: Until,
        timeout: Option<f64>,
    ) -> PyResult<PyOutcome> {
        let deadline = match timeout {
            None => None,
            Some(t) if t.is_finite() && t >= 0.0 => {
                Some(Instant::now() + Duration::from_secs_f64(t.min(1e9)))
            }
            Some(t) => {
                return Err(PyValueError::new_err(format!(
                    "timeout must be a non-negative number of seconds or None, not {t}"
                )))
            }
        };
        if let Some(result) = until.settled(&self.inner) {
            return result
                .map(PyOutcome::from)
                .map_err(|e| errors::to_py(py, e));
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let abort = waiter().spawn_to(until.wait(self.inner.clone()), tx);
        // Waits in short steps with the GIL released, checking for signals
        // (Ctrl-C) between them.
        const STEP: Duration = Duration::from_millis(50);
        let mut rx = rx;
        loop {
            let step = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(STEP),
                None => STEP,
            };
            let (received, back) = py.detach(move || (rx.recv_timeout(step), rx));
            rx = back;
            match received {
                Ok(result) => {
                    return result
                        .map(PyOutcome::from)
                        .map_err(|e| errors::to_py(py, e));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        abort.abort();
                        return Err(errors::timed_out(until.word(), timeout.unwrap_or(0.0)));
                    }
                    if let Err(e) = py.check_signals() {
                        abort.abort();
                        return Err(e);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(PyRuntimeError::new_err(
                        "mnemo's receipt waiter stopped before the wait ended",
                    ));
                }
            }
        }
    }
}

#[pymethods]
impl PyReceipt {
    /// The save's sequence number: unique and increasing within one open
    /// memory, in the order saves were accepted.
    #[getter]
    fn seq(&self) -> u64 {
        self.inner.seq()
    }

    /// Where the save is now: ``"accepted"`` (readable, not committed yet),
    /// ``"durable"`` (committed), ``"indexed"`` (committed and searchable
    /// through the index) or ``"failed"`` (see ``failure``). Never blocks.
    #[getter]
    fn status(&self) -> &'static str {
        match self.inner.status() {
            ReceiptStatus::Accepted => "accepted",
            ReceiptStatus::Durable(_) => "durable",
            ReceiptStatus::Indexed(_) => "indexed",
            ReceiptStatus::Failed(_) => "failed",
            _ => "unknown",
        }
    }

    /// What the commit did, once ``status`` is ``"durable"`` or
    /// ``"indexed"``; None before (and for a failed save).
    #[getter]
    fn outcome(&self) -> Option<PyOutcome> {
        match self.inner.status() {
            ReceiptStatus::Durable(o) | ReceiptStatus::Indexed(o) => Some(o.into()),
            _ => None,
        }
    }

    /// Why the save was not committed, when ``status`` is ``"failed"``;
    /// None otherwise.
    #[getter]
    fn failure(&self) -> Option<String> {
        match self.inner.status() {
            ReceiptStatus::Failed(f) => Some(f.to_string()),
            _ => None,
        }
    }

    /// An awaitable (an ``asyncio.Future`` of the running loop) that
    /// resolves with the :class:`Outcome` once the save's transaction
    /// committed.
    ///
    /// Raises, when awaited, ``DeadLettered`` (the database rejected the
    /// row), ``NotCommittedYet`` (the writer has been failing for longer
    /// than ``busy_deadline_ms``: the save is kept and committed later) or
    /// ``Closed``. Cancelling the await (``asyncio.wait_for``) stops only
    /// the wait. Must be called with a running asyncio loop.
    fn durable<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.awaitable(py, Until::Durable)
    }

    /// Like ``durable()``, resolving once the search index has the save
    /// (for a forget: no longer finds the key). Raises ``NotIndexed`` if the
    /// memory was closed after the commit but before indexing.
    fn indexed<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.awaitable(py, Until::Indexed)
    }

    /// Blocks until the save is durable and returns the :class:`Outcome`
    /// (the GIL is released meanwhile). ``timeout`` in seconds, None for no
    /// limit; when it runs out, raises ``TimeoutError`` (the save is still
    /// accepted and kept). Other errors as ``durable()``.
    #[pyo3(signature = (timeout=None))]
    fn wait_durable(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<PyOutcome> {
        self.wait_blocking(py, Until::Durable, timeout)
    }

    /// Blocks until the index has the save; as ``wait_durable()``.
    #[pyo3(signature = (timeout=None))]
    fn wait_indexed(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<PyOutcome> {
        self.wait_blocking(py, Until::Indexed, timeout)
    }

    fn __repr__(&self) -> String {
        format!(
            "<Receipt seq={} status='{}'>",
            self.inner.seq(),
            self.status()
        )
    }
}

/// A done-callback that aborts a receipt's wait task when its future is
/// done (a no-op when the wait itself finished it).
#[pyclass(module = "mnemo._mnemo", frozen)]
struct Canceller {
    abort: AbortHandle,
}

#[pymethods]
impl Canceller {
    fn __call__(&self, _future: &Bound<'_, PyAny>) {
        self.abort.abort();
    }
}

/// What the commit did with one save or forget.
///
/// ``kind`` is one of ``"inserted"``, ``"updated"``, ``"unchanged"``,
/// ``"deleted"``, ``"not_found"``, ``"superseded"`` (a later save of the
/// same key in the same batch replaced it) or ``"outdated"`` (a newer save
/// accepted elsewhere already holds the key). An outcome compares equal to
/// its ``kind`` string: ``await receipt.durable() == "inserted"``.
#[pyclass(name = "Outcome", module = "mnemo", frozen)]
#[derive(Clone)]
pub struct PyOutcome {
    kind: &'static str,
    version: Option<u64>,
    superseded_by: Option<u64>,
}

impl From<WriteOutcome> for PyOutcome {
    fn from(o: WriteOutcome) -> Self {
        let (kind, version, superseded_by) = match o {
            WriteOutcome::Inserted { version } => ("inserted", Some(version), None),
            WriteOutcome::Updated { version } => ("updated", Some(version), None),
            WriteOutcome::Unchanged { version } => ("unchanged", Some(version), None),
            WriteOutcome::Deleted { version } => ("deleted", Some(version), None),
            WriteOutcome::NotFound => ("not_found", None, None),
            WriteOutcome::Superseded { by_seq } => ("superseded", None, Some(by_seq)),
            WriteOutcome::Outdated => ("outdated", None, None),
            _ => ("unknown", None, None),
        };
        PyOutcome {
            kind,
            version,
            superseded_by,
        }
    }
}

#[pymethods]
impl PyOutcome {
    /// ``"inserted"``, ``"updated"``, ``"unchanged"``, ``"deleted"``,
    /// ``"not_found"``, ``"superseded"`` or ``"outdated"``.
    #[getter]
    fn kind(&self) -> &'static str {
        self.kind
    }

    /// The version written (or already holding the value, for
    /// ``"unchanged"``); None for the other kinds.
    #[getter]
    fn version(&self) -> Option<u64> {
        self.version
    }

    /// For ``"superseded"``: the sequence number of the save that replaced
    /// this one; None otherwise.
    #[getter]
    fn superseded_by(&self) -> Option<u64> {
        self.superseded_by
    }

    fn __str__(&self) -> &'static str {
        self.kind
    }

    /// Equal to an outcome with the same fields, and to its ``kind``.
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        if let Ok(o) = other.cast::<PyOutcome>() {
            let o = o.get();
            return self.kind == o.kind
                && self.version == o.version
                && self.superseded_by == o.superseded_by;
        }
        other
            .cast::<PyString>()
            .ok()
            .and_then(|s| s.to_cow().ok().map(|s| s == self.kind))
            .unwrap_or(false)
    }

    /// The hash of ``kind`` (equal outcomes, and an outcome and its kind,
    /// hash alike).
    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        PyString::new(py, self.kind).hash()
    }

    fn __repr__(&self) -> String {
        match (self.version, self.superseded_by) {
            (Some(v), _) => format!("Outcome(kind='{}', version={v})", self.kind),
            (_, Some(s)) => format!("Outcome(kind='{}', superseded_by={s})", self.kind),
            _ => format!("Outcome(kind='{}')", self.kind),
        }
    }
}
