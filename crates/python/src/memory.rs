//! `mnemo.Memory`: the handle Python code holds.
//!
//! `save` and `forget` keep the GIL (they take microseconds and never wait
//! on the database); everything that may take longer (open, reads, search,
//! close) releases it. Open memories are registered so that interpreter
//! exit closes (flushes and indexes) the ones still open.

use std::path::PathBuf;
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use mnemo::SaveRequest;

use crate::config;
use crate::errors;
use crate::receipt::PyReceipt;
use crate::records::{metadata_arg, PyListPage, PyMemoryRecord, PySearchHit, PyStats};
use crate::waiter::waiter;

/// The engine behind one `Memory` object; `None` once closed.
struct Handle {
    engine: RwLock<Option<mnemo::Memory>>,
    /// The process that opened it. In a child forked from that process the
    /// engine's threads do not exist: waiting on them would hang, so the
    /// child leaves the engine alone (the parent still runs it).
    pid: u32,
}

impl Handle {
    /// Takes the engine out and shuts it down: refuses new saves, commits
    /// and indexes what was accepted, stops. Idempotent. Blocks: call it
    /// with the GIL released.
    fn shut(&self) -> mnemo::Result<()> {
        let Some(engine) = self.engine.write().take() else {
            return Ok(());
        };
        if self.pid != std::process::id() {
            std::mem::forget(engine);
            return Ok(());
        }
        engine.shutdown_blocking()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // A memory collected without `close()`: dropping the engine flushes
        // every accepted save (it blocks until they are committed), so the
        // GIL is released for it.
        if let Some(engine) = self.engine.get_mut().take() {
            if self.pid != std::process::id() {
                std::mem::forget(engine);
                return;
            }
            let mut engine = Some(engine);
            Python::try_attach(|py| {
                let engine = engine.take();
                py.detach(move || drop(engine))
            });
            drop(engine);
        }
    }
}

/// Memories not closed yet, closed at interpreter exit.
static OPEN: Mutex<Vec<Weak<Handle>>> = Mutex::new(Vec::new());

/// Closes every memory still open: flushes, indexes, stops. Registered with
/// `atexit` by the module.
#[pyfunction]
#[pyo3(name = "_close_all_at_exit")]
pub(crate) fn close_all_at_exit(py: Python<'_>) {
    let open: Vec<Arc<Handle>> = OPEN.lock().drain(..).filter_map(|w| w.upgrade()).collect();
    py.detach(move || {
        for handle in open {
            if let Err(e) = handle.shut() {
                eprintln!("mnemo: closing at exit: {e}");
            }
        }
    });
    crate::waiter::exiting();
}

/// Long-term memory for agents: saves return in microseconds, reads see
/// them at once, commits are batched, and a receipt tells when each save is
/// durable and indexed.
///
/// ``Memory(path_or_url, *, namespace=None, retrieval="lexical", **config)``
/// opens (creating if needed) an SQLite database file, or a PostgreSQL
/// database given as a ``postgres://`` URL. ``namespace`` is the default
/// for calls that do not name one. ``retrieval`` is ``"lexical"`` (full
/// text) or ``"hybrid"`` (full text and vectors). ``**config`` sets the
/// engine's configuration: ``quiet_window_ms``, ``max_wait_ms``,
/// ``max_batch``, ``max_batch_bytes``, ``max_pending``,
/// ``max_pending_bytes``, ``max_value_bytes``, ``max_metadata_bytes``,
/// ``max_key_part_bytes``, ``synchronous`` (``"off"``, ``"normal"``,
/// ``"full"``), ``busy_deadline_ms``, ``read_connections``, ``journal``
/// (bool), ``journal_sync`` (``"never"``, ``"batch"``, ``"always"``),
/// ``journal_segment_bytes``, ``journal_dir``.
///
/// Use it as a context manager (``with`` or ``async with``), or call
/// ``close()``; a memory still open at interpreter exit is closed then.
#[pyclass(name = "Memory", module = "mnemo", frozen)]
pub struct PyMemory {
    handle: Arc<Handle>,
    namespace: Option<String>,
    shown_path: String,
}

impl PyMemory {
    /// The namespace of a call: the one given, else the default.
    fn ns<'a>(&'a self, py: Python<'_>, given: Option<&'a str>) -> PyResult<&'a str> {
        given.or(self.namespace.as_deref()).ok_or_else(|| {
            errors::invalid_input(
                py,
                "namespace",
                "must be given: pass namespace=... to this call, or to Memory(...) as the default",
            )
        })
    }

    /// A clone of the engine handle (for work done with the GIL released).
    fn engine(&self, py: Python<'_>) -> PyResult<mnemo::Memory> {
        // The lock is released before any Python code runs.
        let engine = self.handle.engine.read().clone();
        engine.ok_or_else(|| errors::closed(py))
    }
}

fn limit_arg(py: Python<'_>, limit: i64) -> PyResult<usize> {
    usize::try_from(limit).map_err(|_| {
        errors::invalid_input(
            py,
            "limit",
            &format!("must be a positive number, not {limit}"),
        )
    })
}

#[pymethods]
impl PyMemory {
    #[new]
    #[pyo3(signature = (path, *, namespace=None, retrieval="lexical", **config))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        namespace: Option<String>,
        retrieval: &str,
        config: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        if let Some(ns) = &namespace {
            if ns.trim().is_empty() {
                return Err(errors::invalid_input(py, "namespace", "must not be empty"));
            }
        }
        let config = config::build(path, retrieval, config)?;
        let shown_path = config.shown_path().to_string_lossy().into_owned();
        let engine = py
            .detach(move || mnemo::Memory::open(config))
            .map_err(|e| errors::to_py(py, e))?;
        let handle = Arc::new(Handle {
            engine: RwLock::new(Some(engine)),
            pid: std::process::id(),
        });
        {
            let mut open = OPEN.lock();
            open.retain(|w| w.strong_count() > 0);
            open.push(Arc::downgrade(&handle));
        }
        Ok(PyMemory {
            handle,
            namespace,
            shown_path,
        })
    }

    /// Saves ``value`` under (``namespace``, ``category``, ``key``) and
    /// returns a :class:`Receipt` in microseconds: it never waits on the
    /// database or the index. The save is readable (``get``, ``list``,
    /// ``search``) as soon as this returns, and kept through a crash (the
    /// crash journal). Saving a key again replaces its value.
    ///
    /// ``metadata``: a dict of JSON values (or JSON text), stored beside the
    /// value, not searched.
    ///
    /// Raises ``InvalidInput`` (``.field`` names the field; nothing is
    /// written), ``Overloaded`` (too many saves wait to be committed; retry
    /// shortly), ``DiskFull`` (no room for the crash journal) or ``Closed``.
    #[pyo3(signature = (category, key, value, *, namespace=None, metadata=None))]
    fn save(
        &self,
        py: Python<'_>,
        category: String,
        key: String,
        value: String,
        namespace: Option<String>,
        metadata: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyReceipt> {
        let namespace = match namespace {
            Some(ns) => ns,
            None => self.ns(py, None)?.to_owned(),
        };
        let request = metadata_arg(
            py,
            metadata,
            SaveRequest::new(namespace, category, key, value),
        )?;
        // The read lock is held for the save only (microseconds, no Python
        // code): `close()` waits for saves in flight, then takes the engine.
        let receipt = self.handle.engine.read().as_ref().map(|e| e.save(request));
        match receipt {
            Some(r) => r.map(PyReceipt::new).map_err(|e| errors::to_py(py, e)),
            None => Err(errors::closed(py)),
        }
    }

    /// Forgets the memory under (``namespace``, ``category``, ``key``).
    /// Returns a :class:`Receipt` at once, like ``save``, and travels the
    /// same path, in order with saves: reads stop seeing the key at once.
    /// Its outcome is ``"deleted"``, or ``"not_found"`` if there was no such
    /// memory.
    #[pyo3(signature = (category, key, *, namespace=None))]
    fn forget(
        &self,
        py: Python<'_>,
        category: &str,
        key: &str,
        namespace: Option<&str>,
    ) -> PyResult<PyReceipt> {
        let namespace = self.ns(py, namespace)?;
        let receipt = self
            .handle
            .engine
            .read()
            .as_ref()
            .map(|e| e.forget(namespace, category, key));
        match receipt {
            Some(r) => r.map(PyReceipt::new).map_err(|e| errors::to_py(py, e)),
            None => Err(errors::closed(py)),
        }
    }

    /// The memory under a key (the latest accepted save, committed or not),
    /// or None.
    #[pyo3(signature = (category, key, *, namespace=None))]
    fn get(
        &self,
        py: Python<'_>,
        category: &str,
        key: &str,
        namespace: Option<&str>,
    ) -> PyResult<Option<PyMemoryRecord>> {
        let namespace = self.ns(py, namespace)?;
        let engine = self.engine(py)?;
        let found = py
            .detach(move || engine.get(namespace, category, key))
            .map_err(|e| errors::to_py(py, e))?;
        found.map(|r| PyMemoryRecord::new(py, r)).transpose()
    }

    /// Every memory of the namespace, or of one category in it, ordered by
    /// category and key, pending saves included. Unbounded: for large
    /// namespaces use ``list_page``.
    #[pyo3(signature = (category=None, *, namespace=None))]
    fn list(
        &self,
        py: Python<'_>,
        category: Option<&str>,
        namespace: Option<&str>,
    ) -> PyResult<Vec<PyMemoryRecord>> {
        let namespace = self.ns(py, namespace)?;
        let engine = self.engine(py)?;
        let records = py
            .detach(move || engine.list(namespace, category))
            .map_err(|e| errors::to_py(py, e))?;
        PyMemoryRecord::list(py, records)
    }

    /// One page of ``list``: at most ``limit`` memories (1-1000, default
    /// 100) after ``cursor`` (a previous page's ``next_cursor``; None starts
    /// at the beginning).
    #[pyo3(signature = (category=None, *, namespace=None, limit=None, cursor=None))]
    fn list_page(
        &self,
        py: Python<'_>,
        category: Option<&str>,
        namespace: Option<&str>,
        limit: Option<i64>,
        cursor: Option<&str>,
    ) -> PyResult<PyListPage> {
        let namespace = self.ns(py, namespace)?;
        let limit = limit.map(|l| limit_arg(py, l)).transpose()?;
        let engine = self.engine(py)?;
        let page = py
            .detach(move || engine.list_page(namespace, category, limit, cursor))
            .map_err(|e| errors::to_py(py, e))?;
        PyListPage::new(py, page)
    }

    /// Searches the namespace's memories for the words of ``query`` (any
    /// text: it is never parsed as syntax), optionally in one category; at
    /// most ``limit`` hits (1-1000), best first. Sees saves made a moment
    /// ago, before they are indexed.
    #[pyo3(signature = (query, *, category=None, limit=5, namespace=None))]
    fn search(
        &self,
        py: Python<'_>,
        query: &str,
        category: Option<&str>,
        limit: i64,
        namespace: Option<&str>,
    ) -> PyResult<Vec<PySearchHit>> {
        let namespace = self.ns(py, namespace)?;
        let limit = limit_arg(py, limit)?;
        let engine = self.engine(py)?;
        let hits = py
            .detach(move || engine.search(namespace, query, category, limit))
            .map_err(|e| errors::to_py(py, e))?;
        PySearchHit::list(py, hits)
    }

    /// Every namespace that holds at least one memory, in order.
    fn namespaces(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let engine = self.engine(py)?;
        py.detach(move || engine.namespaces())
            .map_err(|e| errors::to_py(py, e))
    }

    /// The engine's counters now (a :class:`Stats`). Never blocks on the
    /// database.
    fn stats(&self, py: Python<'_>) -> PyResult<PyStats> {
        Ok(self.engine(py)?.stats().into())
    }

    /// Asks for a flush now instead of at the end of the quiet window.
    /// Does not wait: wait on a receipt to learn when it committed.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        self.engine(py)?.flush();
        Ok(())
    }

    /// Refuses new saves (``Closed``), commits every accepted save, waits
    /// until the index has them, and stops the engine; every receipt is
    /// resolved when it returns. Idempotent. Releases the GIL meanwhile.
    ///
    /// Raises ``NotCommittedYet`` if the writer kept failing (a locked
    /// database, a full disk) for ``busy_deadline_ms`` (the saves stay in
    /// the crash journal; the next open commits them), or ``NotIndexed``
    /// if the index could not catch up (the next open indexes them).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let handle = self.handle.clone();
        py.detach(move || handle.shut())
            .map_err(|e| errors::to_py(py, e))
    }

    /// ``close()`` as an awaitable for asyncio code: the loop keeps running
    /// while the memory flushes and indexes.
    fn aclose<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
        let future = event_loop.call_method0("create_future")?;
        let handle = self.handle.clone();
        waiter().settle_future_blocking(event_loop.unbind(), future.clone().unbind(), move || {
            handle.shut()
        });
        Ok(future)
    }

    /// True once ``close()`` has been called (or the interpreter is
    /// exiting).
    #[getter]
    fn closed(&self) -> bool {
        self.handle.engine.read().is_none()
    }

    /// The default namespace given to ``Memory(...)``, or None.
    #[getter]
    fn namespace(&self) -> Option<String> {
        self.namespace.clone()
    }

    /// The database: a file path, or a PostgreSQL URL without its password.
    #[getter]
    fn path(&self) -> String {
        self.shown_path.clone()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let future = py
            .import("asyncio")?
            .call_method0("get_running_loop")?
            .call_method0("create_future")?;
        future.call_method1("set_result", (slf,))?;
        Ok(future)
    }

    #[pyo3(signature = (*_args))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _args: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.aclose(py)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let state = if self.closed() { " closed" } else { "" };
        let path = PyString::new(py, &self.shown_path).repr()?;
        Ok(match &self.namespace {
            Some(ns) => format!(
                "<mnemo.Memory {path} namespace={}{state}>",
                PyString::new(py, ns).repr()?
            ),
            None => format!("<mnemo.Memory {path}{state}>"),
        })
    }
}
