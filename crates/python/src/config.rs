//! `Memory(path, *, namespace=None, retrieval="lexical", **config)`: the
//! keyword arguments, mapped onto [`mnemo::Config`].

use std::path::PathBuf;
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString};

use mnemo::{Config, JournalSync, Retrieval, Synchronous};

/// The keyword arguments `**config` accepts, for the error message that
/// names an unknown one.
pub(crate) const KEYS: &[&str] = &[
    "quiet_window_ms",
    "max_wait_ms",
    "max_batch",
    "max_batch_bytes",
    "max_pending",
    "max_pending_bytes",
    "max_value_bytes",
    "max_metadata_bytes",
    "max_key_part_bytes",
    "synchronous",
    "busy_deadline_ms",
    "read_connections",
    "journal",
    "journal_sync",
    "journal_segment_bytes",
    "journal_dir",
];

/// The engine's configuration from `Memory(...)`'s arguments. Unknown keys
/// are a `TypeError` naming the key; a value of the wrong type a
/// `TypeError`, one out of range a `ValueError` (ranges across fields are
/// checked by the engine at open: `InvalidConfig`).
pub(crate) fn build(
    path: PathBuf,
    retrieval: &str,
    config: Option<&Bound<'_, PyDict>>,
) -> PyResult<Config> {
    let mut c = Config::new(path);
    c.retrieval = match retrieval {
        "lexical" => Retrieval::Lexical,
        "hybrid" => Retrieval::Hybrid,
        other => {
            return Err(PyValueError::new_err(format!(
                "retrieval must be \"lexical\" or \"hybrid\", not {other:?}"
            )))
        }
    };
    let Some(config) = config else {
        return Ok(c);
    };
    for (k, v) in config.iter() {
        let key: String = k.extract()?;
        match key.as_str() {
            "quiet_window_ms" => c.quiet_window = millis(&key, &v)?,
            "max_wait_ms" => c.max_wait = millis(&key, &v)?,
            "busy_deadline_ms" => c.busy_deadline = millis(&key, &v)?,
            "max_batch" => c.max_batch = count(&key, &v)?,
            "max_batch_bytes" => c.max_batch_bytes = count(&key, &v)?,
            "max_pending" => c.max_pending = count(&key, &v)?,
            "max_pending_bytes" => c.max_pending_bytes = count(&key, &v)?,
            "max_value_bytes" => c.max_value_bytes = count(&key, &v)?,
            "max_metadata_bytes" => c.max_metadata_bytes = count(&key, &v)?,
            "max_key_part_bytes" => c.max_key_part_bytes = count(&key, &v)?,
            "read_connections" => c.read_connections = count(&key, &v)?,
            "journal_segment_bytes" => c.journal_segment_bytes = count(&key, &v)?,
            "journal" => {
                c.journal = v
                    .cast::<PyBool>()
                    .map_err(|_| wrong_type(&key, "a bool", &v))?
                    .is_true()
            }
            "journal_dir" => {
                c.journal_dir =
                    if v.is_none() {
                        None
                    } else {
                        Some(v.extract::<PathBuf>().map_err(|_| {
                            wrong_type(&key, "a path (str or os.PathLike) or None", &v)
                        })?)
                    }
            }
            "synchronous" => {
                c.synchronous = match word(&key, &v)?.as_str() {
                    "off" => Synchronous::Off,
                    "normal" => Synchronous::Normal,
                    "full" => Synchronous::Full,
                    other => return Err(one_of(&key, &["off", "normal", "full"], other)),
                }
            }
            "journal_sync" => {
                c.journal_sync = match word(&key, &v)?.as_str() {
                    "never" => JournalSync::Never,
                    "batch" => JournalSync::Batch,
                    "always" => JournalSync::Always,
                    other => return Err(one_of(&key, &["never", "batch", "always"], other)),
                }
            }
            _ => {
                return Err(PyTypeError::new_err(format!(
                    "Memory() got an unexpected keyword argument '{key}' (the configuration \
                     keys are: namespace, retrieval, {})",
                    KEYS.join(", ")
                )))
            }
        }
    }
    Ok(c)
}

fn wrong_type(key: &str, wanted: &str, v: &Bound<'_, PyAny>) -> PyErr {
    let got = v
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    PyTypeError::new_err(format!("{key} must be {wanted}, not {got}"))
}

fn one_of(key: &str, words: &[&str], got: &str) -> PyErr {
    PyValueError::new_err(format!(
        "{key} must be one of {}, not {got:?}",
        words
            .iter()
            .map(|w| format!("{w:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

fn word(key: &str, v: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(v.cast::<PyString>()
        .map_err(|_| wrong_type(key, "a str", v))?
        .to_cow()?
        .to_ascii_lowercase())
}

/// A non-negative int (not a bool).
fn count(key: &str, v: &Bound<'_, PyAny>) -> PyResult<usize> {
    if v.is_instance_of::<PyBool>() || !v.is_instance_of::<PyInt>() {
        return Err(wrong_type(key, "an int", v));
    }
    v.extract::<usize>().map_err(|_| {
        PyValueError::new_err(format!(
            "{key} must be a non-negative int that fits in memory, not {v}"
        ))
    })
}

/// Milliseconds, int or float, non-negative and finite.
fn millis(key: &str, v: &Bound<'_, PyAny>) -> PyResult<Duration> {
    if v.is_instance_of::<PyBool>()
        || !(v.is_instance_of::<PyInt>() || v.is_instance_of::<PyFloat>())
    {
        return Err(wrong_type(key, "a number of milliseconds", v));
    }
    let ms: f64 = v.extract()?;
    if !(0.0..=1e15).contains(&ms) {
        return Err(PyValueError::new_err(format!(
            "{key} must be a non-negative number of milliseconds, not {ms}"
        )));
    }
    Ok(Duration::from_secs_f64(ms / 1000.0))
}
