//! What reads return, as small frozen Python classes (`MemoryRecord`,
//! `SearchHit`, `ListPage`, `Stats`, `Summary`), and the conversions between
//! JSON metadata and Python objects.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};

use crate::errors;

/// Nesting deeper than this in metadata is refused (a dict that contains
/// itself would otherwise recurse for ever).
const MAX_DEPTH: usize = 64;

/// Python metadata (a dict of JSON-compatible values) as JSON. `Err` holds
/// the reason for an `InvalidInput` on `metadata`.
pub(crate) fn py_to_json(obj: &Bound<'_, PyAny>, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("is nested deeper than {MAX_DEPTH} levels"));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    // bool before int: `True` is an int too.
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::from(i));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Value::from(u));
        }
        return Err(format!(
            "has the integer {}, an integer beyond 64 bits; send it as a string",
            obj.str().map(|s| s.to_string()).unwrap_or_default()
        ));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let v = f.value();
        return Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| format!("has the number {v}, which JSON cannot hold"));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return s
            .to_cow()
            .map(|s| Value::String(s.into_owned()))
            .map_err(|e| format!("has a string that is not valid UTF-8: {e}"));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut map = Map::new();
        for (k, v) in d.iter() {
            let key = k.cast::<PyString>().map_err(|_| {
                format!(
                    "has a key that is not a string ({}); JSON object keys are strings",
                    type_name(&k)
                )
            })?;
            let key = key
                .to_cow()
                .map_err(|e| format!("has a key that is not valid UTF-8: {e}"))?;
            map.insert(key.into_owned(), py_to_json(&v, depth + 1)?);
        }
        return Ok(Value::Object(map));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut items = Vec::new();
        for item in obj.try_iter().map_err(|e| e.to_string())? {
            let item = item.map_err(|e| e.to_string())?;
            items.push(py_to_json(&item, depth + 1)?);
        }
        return Ok(Value::Array(items));
    }
    Err(format!(
        "holds a {}, which is not JSON (use dict, list, str, int, float, bool or None)",
        type_name(obj)
    ))
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// JSON as Python objects: dict, list, str, int, float, bool, None.
pub(crate) fn json_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, item) in map {
                dict.set_item(k, json_to_py(py, item)?)?;
            }
            dict.into_any()
        }
    })
}

/// Metadata given to `save`: a dict, JSON text, or `None`.
pub(crate) fn metadata_arg(
    py: Python<'_>,
    metadata: Option<&Bound<'_, PyAny>>,
    request: mnemo::SaveRequest,
) -> PyResult<mnemo::SaveRequest> {
    let Some(m) = metadata.filter(|m| !m.is_none()) else {
        return Ok(request);
    };
    if let Ok(text) = m.cast::<PyString>() {
        return request
            .with_metadata_json(&text.to_cow()?)
            .map_err(|e| errors::to_py(py, e));
    }
    if !m.is_instance_of::<PyDict>() {
        return Err(PyTypeError::new_err(format!(
            "metadata must be a dict (or JSON text, or None), not {}",
            type_name(m)
        )));
    }
    let value =
        py_to_json(m, 0).map_err(|reason| errors::invalid_input(py, "metadata", &reason))?;
    Ok(mnemo::SaveRequest {
        metadata: Some(value),
        ..request
    })
}

/// `updated_at_ms` as a timezone-aware `datetime` in UTC (exact to the
/// millisecond: the epoch plus a `timedelta`).
fn datetime_utc<'py>(py: Python<'py>, ms: i64) -> PyResult<Bound<'py, PyAny>> {
    static EPOCH: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    static TIMEDELTA: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let epoch = EPOCH.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        let dt = py.import("datetime")?;
        let utc = dt.getattr("timezone")?.getattr("utc")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("tzinfo", utc)?;
        Ok(dt
            .getattr("datetime")?
            .call((1970, 1, 1), Some(&kwargs))?
            .unbind())
    })?;
    let timedelta = TIMEDELTA.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py.import("datetime")?.getattr("timedelta")?.unbind())
    })?;
    // timedelta(days, seconds, microseconds, milliseconds)
    let delta = timedelta.bind(py).call1((0, 0, 0, ms))?;
    epoch.bind(py).add(delta)
}

/// A stored memory, as `get`, `list` and `search` return it.
#[pyclass(name = "MemoryRecord", module = "mnemo", frozen, get_all)]
pub struct PyMemoryRecord {
    /// Whose memory it is.
    namespace: String,
    /// Its category.
    category: String,
    /// Its key.
    key: String,
    /// Its value.
    value: String,
    /// Its metadata: a dict, or None.
    metadata: Py<PyAny>,
    /// The committed version (1 for a key's first save); None while the
    /// latest save is accepted but not committed yet.
    version: Option<u64>,
    /// When the latest save was accepted: a timezone-aware datetime (UTC).
    updated_at: Py<PyAny>,
    /// The same, in milliseconds since the Unix epoch.
    updated_at_ms: i64,
}

impl PyMemoryRecord {
    pub(crate) fn new(py: Python<'_>, r: mnemo::MemoryRecord) -> PyResult<Self> {
        let metadata = match &r.metadata {
            Some(m) => json_to_py(py, m)?.unbind(),
            None => py.None(),
        };
        Ok(PyMemoryRecord {
            updated_at: datetime_utc(py, r.updated_at_ms)?.unbind(),
            namespace: r.namespace,
            category: r.category,
            key: r.key,
            value: r.value,
            metadata,
            version: r.version,
            updated_at_ms: r.updated_at_ms,
        })
    }

    pub(crate) fn list(py: Python<'_>, records: Vec<mnemo::MemoryRecord>) -> PyResult<Vec<Self>> {
        records.into_iter().map(|r| Self::new(py, r)).collect()
    }

    fn fields<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("namespace", &self.namespace)?;
        d.set_item("category", &self.category)?;
        d.set_item("key", &self.key)?;
        d.set_item("value", &self.value)?;
        d.set_item("metadata", self.metadata.bind(py))?;
        d.set_item("version", self.version)?;
        d.set_item("updated_at", self.updated_at.bind(py))?;
        Ok(d)
    }
}

#[pymethods]
impl PyMemoryRecord {
    /// The record as a dict (``namespace``, ``category``, ``key``, ``value``,
    /// ``metadata``, ``version``, ``updated_at``).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.fields(py)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "MemoryRecord(namespace={}, category={}, key={}, value={}, metadata={}, version={}, \
             updated_at={})",
            repr(py, &self.namespace)?,
            repr(py, &self.category)?,
            repr(py, &self.key)?,
            repr(py, &self.value)?,
            self.metadata.bind(py).repr()?,
            self.version.map_or("None".into(), |v| v.to_string()),
            self.updated_at.bind(py).repr()?,
        ))
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(other) = other.cast::<PyMemoryRecord>() else {
            return Ok(false);
        };
        let o = other.get();
        Ok(self.namespace == o.namespace
            && self.category == o.category
            && self.key == o.key
            && self.value == o.value
            && self.version == o.version
            && self.updated_at_ms == o.updated_at_ms
            && self.metadata.bind(py).eq(o.metadata.bind(py))?)
    }
}

fn repr(py: Python<'_>, s: &str) -> PyResult<String> {
    Ok(PyString::new(py, s).repr()?.to_string())
}

/// A search result: a memory and its relevance.
#[pyclass(name = "SearchHit", module = "mnemo", frozen)]
pub struct PySearchHit {
    record: Py<PyMemoryRecord>,
    score: f64,
    fresh: bool,
}

impl PySearchHit {
    pub(crate) fn list(py: Python<'_>, hits: Vec<mnemo::SearchHit>) -> PyResult<Vec<Self>> {
        hits.into_iter()
            .map(|h| {
                Ok(PySearchHit {
                    record: Py::new(py, PyMemoryRecord::new(py, h.record)?)?,
                    score: h.score,
                    fresh: h.fresh,
                })
            })
            .collect()
    }
}

#[pymethods]
impl PySearchHit {
    /// The memory found.
    #[getter]
    fn record(&self, py: Python<'_>) -> Py<PyMemoryRecord> {
        self.record.clone_ref(py)
    }
    /// Relevance, higher is better (lexical: the negated bm25 rank, or for a
    /// memory not indexed yet the number of query words it holds; hybrid:
    /// the fused score, the lexical and vector sides' normalised scores
    /// summed).
    #[getter]
    fn score(&self) -> f64 {
        self.score
    }
    /// True if the memory was matched in memory because the index has not
    /// caught up with it yet.
    #[getter]
    fn fresh(&self) -> bool {
        self.fresh
    }
    /// ``record.namespace``.
    #[getter]
    fn namespace(&self) -> String {
        self.record.get().namespace.clone()
    }
    /// ``record.category``.
    #[getter]
    fn category(&self) -> String {
        self.record.get().category.clone()
    }
    /// ``record.key``.
    #[getter]
    fn key(&self) -> String {
        self.record.get().key.clone()
    }
    /// ``record.value``.
    #[getter]
    fn value(&self) -> String {
        self.record.get().value.clone()
    }
    /// ``record.metadata``.
    #[getter]
    fn metadata(&self, py: Python<'_>) -> Py<PyAny> {
        self.record.get().metadata.clone_ref(py)
    }
    /// ``record.version``.
    #[getter]
    fn version(&self) -> Option<u64> {
        self.record.get().version
    }
    /// ``record.updated_at``.
    #[getter]
    fn updated_at(&self, py: Python<'_>) -> Py<PyAny> {
        self.record.get().updated_at.clone_ref(py)
    }

    /// The record's fields as a dict, with ``score`` and ``fresh``.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = self.record.get().fields(py)?;
        d.set_item("score", self.score)?;
        d.set_item("fresh", self.fresh)?;
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let r = self.record.get();
        Ok(format!(
            "SearchHit(category={}, key={}, value={}, score={}, fresh={})",
            repr(py, &r.category)?,
            repr(py, &r.key)?,
            repr(py, &r.value)?,
            self.score,
            if self.fresh { "True" } else { "False" },
        ))
    }
}

/// One page of ``Memory.list_page``.
#[pyclass(name = "ListPage", module = "mnemo", frozen, get_all)]
pub struct PyListPage {
    /// This page's memories, by category, then key.
    records: Py<PyList>,
    /// Pass it as ``cursor=`` to get the next page; None when nothing follows.
    next_cursor: Option<String>,
}

impl PyListPage {
    pub(crate) fn new(py: Python<'_>, page: mnemo::ListPage) -> PyResult<Self> {
        let records = PyList::new(py, PyMemoryRecord::list(py, page.records)?)?;
        Ok(PyListPage {
            records: records.unbind(),
            next_cursor: page.next_cursor,
        })
    }
}

#[pymethods]
impl PyListPage {
    fn __len__(&self, py: Python<'_>) -> usize {
        self.records.bind(py).len()
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.records.bind(py).try_iter()?.into_any())
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "ListPage(records=<{} records>, next_cursor={})",
            self.records.bind(py).len(),
            self.next_cursor
                .as_deref()
                .map_or("None".into(), |c| format!("'{c}'"))
        )
    }
}

/// A summary of recent values (the last 1,024 at most).
#[pyclass(name = "Summary", module = "mnemo", frozen, get_all)]
#[derive(Clone)]
pub struct PySummary {
    /// Values summarised.
    count: usize,
    /// Median.
    p50: f64,
    /// 99th percentile.
    p99: f64,
    /// Largest.
    max: f64,
}

impl From<mnemo::Summary> for PySummary {
    fn from(s: mnemo::Summary) -> Self {
        PySummary {
            count: s.count,
            p50: s.p50,
            p99: s.p99,
            max: s.max,
        }
    }
}

#[pymethods]
impl PySummary {
    /// The summary as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("count", self.count)?;
        d.set_item("p50", self.p50)?;
        d.set_item("p99", self.p99)?;
        d.set_item("max", self.max)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "Summary(count={}, p50={}, p99={}, max={})",
            self.count, self.p50, self.p99, self.max
        )
    }
}

/// The engine's counters at one moment (``Memory.stats()``). Counts are
/// since the memory was opened.
#[pyclass(name = "Stats", module = "mnemo", frozen, get_all)]
pub struct PyStats {
    /// Saves and forgets accepted.
    accepted: u64,
    /// Rejected at the door: invalid input.
    rejected_invalid: u64,
    /// Rejected at the door: Overloaded.
    rejected_overloaded: u64,
    /// Superseded by a later save of the same key in the same batch.
    coalesced: u64,
    /// Operations whose transaction committed (unchanged ones included).
    committed: u64,
    /// Saves that found the same value already stored.
    unchanged: u64,
    /// Operations lost without a commit (only with ``journal=False``).
    failed: u64,
    /// Rows the database rejected, kept in ``dead_letters``.
    dead_lettered: u64,
    /// Transactions committed by the batcher.
    batches: u64,
    /// Operations per batch.
    batch_size: PySummary,
    /// Milliseconds from a flush's start to its commit.
    flush_ms: PySummary,
    /// Accepted operations not yet committed.
    pending: usize,
    /// Their bytes.
    pending_bytes: usize,
    /// Keys held in the pending overlay.
    overlay_keys: usize,
    /// The last committed change number.
    committed_change: i64,
    /// The change number the index reflects.
    index_watermark: i64,
    /// Changes the index has not seen yet.
    index_lag_changes: i64,
    /// Milliseconds from a batch's commit to its indexing.
    index_lag_ms: PySummary,
    /// Saves replayed at open from journals of engines that died.
    replayed: u64,
    /// Bytes of journal segment files held.
    journal_bytes: u64,
    /// How long the writer has been failing to commit, in ms (0 when fine).
    writer_stalled_ms: u64,
    /// What the stalled writer keeps running into, or None.
    writer_stall_reason: Option<String>,
    /// Commit attempts that failed with a transient fault and were retried.
    write_retries: u64,
    /// Indexing passes that failed (and were retried).
    index_failures: u64,
    /// Why the last indexing pass failed, while the index is behind for it.
    index_error: Option<String>,
    /// Damaged journal regions found at open.
    journal_unrecovered: u64,
    /// Bytes in those regions.
    journal_unrecovered_bytes: u64,
    /// Journal files with unreadable data, moved aside at open.
    journal_quarantined: Vec<String>,
}

impl From<mnemo::Stats> for PyStats {
    fn from(s: mnemo::Stats) -> Self {
        PyStats {
            accepted: s.accepted,
            rejected_invalid: s.rejected_invalid,
            rejected_overloaded: s.rejected_overloaded,
            coalesced: s.coalesced,
            committed: s.committed,
            unchanged: s.unchanged,
            failed: s.failed,
            dead_lettered: s.dead_lettered,
            batches: s.batches,
            batch_size: s.batch_size.into(),
            flush_ms: s.flush_ms.into(),
            pending: s.pending,
            pending_bytes: s.pending_bytes,
            overlay_keys: s.overlay_keys,
            committed_change: s.committed_change,
            index_watermark: s.index_watermark,
            index_lag_changes: s.index_lag_changes,
            index_lag_ms: s.index_lag_ms.into(),
            replayed: s.replayed,
            journal_bytes: s.journal_bytes,
            writer_stalled_ms: s.writer_stalled_ms,
            writer_stall_reason: s.writer_stall_reason,
            write_retries: s.write_retries,
            index_failures: s.index_failures,
            index_error: s.index_error,
            journal_unrecovered: s.journal_unrecovered,
            journal_unrecovered_bytes: s.journal_unrecovered_bytes,
            journal_quarantined: s
                .journal_quarantined
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect(),
        }
    }
}

#[pymethods]
impl PyStats {
    /// Every counter in a dict (summaries as nested dicts), ready for JSON.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("accepted", self.accepted)?;
        d.set_item("rejected_invalid", self.rejected_invalid)?;
        d.set_item("rejected_overloaded", self.rejected_overloaded)?;
        d.set_item("coalesced", self.coalesced)?;
        d.set_item("committed", self.committed)?;
        d.set_item("unchanged", self.unchanged)?;
        d.set_item("failed", self.failed)?;
        d.set_item("dead_lettered", self.dead_lettered)?;
        d.set_item("batches", self.batches)?;
        d.set_item("batch_size", self.batch_size.to_dict(py)?)?;
        d.set_item("flush_ms", self.flush_ms.to_dict(py)?)?;
        d.set_item("pending", self.pending)?;
        d.set_item("pending_bytes", self.pending_bytes)?;
        d.set_item("overlay_keys", self.overlay_keys)?;
        d.set_item("committed_change", self.committed_change)?;
        d.set_item("index_watermark", self.index_watermark)?;
        d.set_item("index_lag_changes", self.index_lag_changes)?;
        d.set_item("index_lag_ms", self.index_lag_ms.to_dict(py)?)?;
        d.set_item("replayed", self.replayed)?;
        d.set_item("journal_bytes", self.journal_bytes)?;
        d.set_item("writer_stalled_ms", self.writer_stalled_ms)?;
        d.set_item("writer_stall_reason", &self.writer_stall_reason)?;
        d.set_item("write_retries", self.write_retries)?;
        d.set_item("index_failures", self.index_failures)?;
        d.set_item("index_error", &self.index_error)?;
        d.set_item("journal_unrecovered", self.journal_unrecovered)?;
        d.set_item("journal_unrecovered_bytes", self.journal_unrecovered_bytes)?;
        d.set_item("journal_quarantined", &self.journal_quarantined)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "Stats(accepted={}, committed={}, pending={}, batches={}, index_lag_changes={}, \
             writer_stalled_ms={})",
            self.accepted,
            self.committed,
            self.pending,
            self.batches,
            self.index_lag_changes,
            self.writer_stalled_ms
        )
    }
}
