//! The nouns of the public API: requests, records, outcomes, and the input
//! rules they are checked against.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{Error, Result};

/// One memory to store: `value` under (`namespace`, `category`, `key`).
///
/// `namespace` is whose memory it is (one user, one agent); every read is
/// scoped to one namespace. Saving the same key again replaces the value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaveRequest {
    /// Whose memory this is. 1..=256 bytes, no NUL.
    pub namespace: String,
    /// A grouping such as `preferences` or `facts`. 1..=256 bytes, no NUL.
    pub category: String,
    /// The memory's name within its category. 1..=256 bytes, no NUL.
    pub key: String,
    /// The memory itself. 1 byte ..= 64 KiB by default, no NUL.
    pub value: String,
    /// Optional JSON object stored beside the value (not searched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

impl SaveRequest {
    /// A request without metadata.
    pub fn new(
        namespace: impl Into<String>,
        category: impl Into<String>,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        SaveRequest {
            namespace: namespace.into(),
            category: category.into(),
            key: key.into(),
            value: value.into(),
            metadata: None,
        }
    }

    /// Adds metadata given as JSON text (as an LLM tool call or a command line
    /// supplies it). Malformed JSON or a non-object is an
    /// [`Error::InvalidInput`] for `metadata`.
    pub fn with_metadata_json(mut self, json: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| Error::invalid("metadata", format!("not valid JSON: {e}")))?;
        self.metadata = Some(value);
        Ok(self)
    }
}

/// A stored memory as reads return it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryRecord {
    /// Whose memory it is.
    pub namespace: String,
    /// Its category.
    pub category: String,
    /// Its key.
    pub key: String,
    /// Its value.
    pub value: String,
    /// Its metadata object, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    /// The committed version (1 for the first save of a key); `None` while the
    /// latest save is accepted but not yet committed.
    pub version: Option<u64>,
    /// When the latest save was accepted, in milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
}

/// A search result: a memory and its relevance (higher is better).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// The memory.
    pub record: MemoryRecord,
    /// Relevance, higher is better. Lexical retrieval (the default): for
    /// indexed memories the negated bm25 rank; for memories not yet indexed
    /// (saved a moment ago) the number of query words they contain, and
    /// fresh matches rank first. Hybrid retrieval: the reciprocal-rank-fusion
    /// score of the lexical and vector rankings.
    pub score: f64,
    /// `true` if this memory was matched in memory because the index has not
    /// caught up with it yet.
    pub fresh: bool,
}

/// What the commit did with one save or forget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum WriteOutcome {
    /// A new key was written at `version` 1.
    Inserted {
        /// The version written.
        version: u64,
    },
    /// An existing key got a new value (or a forgotten key came back).
    Updated {
        /// The version written.
        version: u64,
    },
    /// The key already held exactly this value and metadata: nothing was
    /// written and nothing is re-indexed.
    Unchanged {
        /// The version that already holds the value.
        version: u64,
    },
    /// A forget removed the key.
    Deleted {
        /// The version of the deletion.
        version: u64,
    },
    /// A forget found no such key.
    NotFound,
    /// A later save or forget of the same key in the same batch replaced this
    /// one before it was written (last save wins).
    Superseded {
        /// The sequence number of the save that won.
        by_seq: u64,
    },
}

/// What a queued operation does. Payloads are shared (`Arc`) between the
/// batch, the pending overlay and the writer thread, so no copy is made
/// after `save` validated them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OpPayload {
    pub namespace: String,
    pub category: String,
    pub key: String,
    /// `None` for a forget.
    pub value: Option<String>,
    /// Metadata as compact JSON text.
    pub metadata: Option<String>,
    /// Acceptance time, ms since the Unix epoch.
    pub at_ms: i64,
}

impl OpPayload {
    /// Bytes this operation counts against the pending and batch bounds.
    pub fn bytes(&self) -> usize {
        self.namespace.len()
            + self.category.len()
            + self.key.len()
            + self.value.as_ref().map_or(0, String::len)
            + self.metadata.as_ref().map_or(0, String::len)
    }
}

/// The queued form of a save or forget: a sequence number and its payload.
#[derive(Debug, Clone)]
pub(crate) struct StoreOp {
    pub seq: u64,
    pub payload: Arc<OpPayload>,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Checks a namespace, category or key.
pub(crate) fn check_part(field: &'static str, s: &str, max: usize) -> Result<()> {
    if s.trim().is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if s.len() > max {
        return Err(Error::invalid(
            field,
            format!("is {} bytes; the limit is {max}", s.len()),
        ));
    }
    if s.contains('\0') {
        return Err(Error::invalid(field, "must not contain NUL characters"));
    }
    Ok(())
}

/// Validates a save and turns it into a payload. Nothing is changed on error.
pub(crate) fn payload_for_save(req: SaveRequest, config: &Config) -> Result<OpPayload> {
    check_part("namespace", &req.namespace, config.max_key_part_bytes)?;
    check_part("category", &req.category, config.max_key_part_bytes)?;
    check_part("key", &req.key, config.max_key_part_bytes)?;
    if req.value.trim().is_empty() {
        return Err(Error::invalid(
            "value",
            "must not be empty (to remove a memory, forget it)",
        ));
    }
    if req.value.len() > config.max_value_bytes {
        return Err(Error::invalid(
            "value",
            format!(
                "is {} bytes; the limit is {}",
                req.value.len(),
                config.max_value_bytes
            ),
        ));
    }
    if req.value.contains('\0') {
        return Err(Error::invalid("value", "must not contain NUL characters"));
    }
    let metadata = match req.metadata {
        None | Some(serde_json::Value::Null) => None,
        Some(v @ serde_json::Value::Object(_)) => {
            let text = serde_json::to_string(&v)?;
            if text.len() > config.max_metadata_bytes {
                return Err(Error::invalid(
                    "metadata",
                    format!(
                        "is {} bytes of JSON; the limit is {}",
                        text.len(),
                        config.max_metadata_bytes
                    ),
                ));
            }
            if text.contains("\\u0000") {
                return Err(Error::invalid(
                    "metadata",
                    "must not contain NUL characters",
                ));
            }
            Some(text)
        }
        Some(_) => return Err(Error::invalid("metadata", "must be a JSON object")),
    };
    Ok(OpPayload {
        namespace: req.namespace,
        category: req.category,
        key: req.key,
        value: Some(req.value),
        metadata,
        at_ms: now_ms(),
    })
}

/// Validates a forget and turns it into a payload.
pub(crate) fn payload_for_forget(
    namespace: String,
    category: String,
    key: String,
    config: &Config,
) -> Result<OpPayload> {
    check_part("namespace", &namespace, config.max_key_part_bytes)?;
    check_part("category", &category, config.max_key_part_bytes)?;
    check_part("key", &key, config.max_key_part_bytes)?;
    Ok(OpPayload {
        namespace,
        category,
        key,
        value: None,
        metadata: None,
        at_ms: now_ms(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::default()
    }

    #[test]
    fn valid_save_passes() {
        let p =
            payload_for_save(SaveRequest::new("u1", "prefs", "food", "biryani"), &cfg()).unwrap();
        assert_eq!(p.value.as_deref(), Some("biryani"));
        assert_eq!(p.bytes(), 2 + 5 + 4 + 7);
    }

    #[test]
    fn bad_parts_are_named() {
        let cases = [
            (SaveRequest::new("", "c", "k", "v"), "namespace"),
            (SaveRequest::new("n", "  ", "k", "v"), "category"),
            (SaveRequest::new("n", "c", "k\0", "v"), "key"),
            (SaveRequest::new("n", "c", "x".repeat(257), "v"), "key"),
            (SaveRequest::new("n", "c", "k", ""), "value"),
            (SaveRequest::new("n", "c", "k", "a\0b"), "value"),
            (
                SaveRequest::new("n", "c", "k", "v".repeat(64 * 1024 + 1)),
                "value",
            ),
        ];
        for (req, field) in cases {
            match payload_for_save(req, &cfg()) {
                Err(Error::InvalidInput { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected invalid {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn metadata_must_be_an_object() {
        let req = SaveRequest::new("n", "c", "k", "v").with_metadata_json("{not json");
        assert!(matches!(
            req,
            Err(Error::InvalidInput {
                field: "metadata",
                ..
            })
        ));
        let req = SaveRequest::new("n", "c", "k", "v")
            .with_metadata_json("[1,2]")
            .unwrap();
        assert!(matches!(
            payload_for_save(req, &cfg()),
            Err(Error::InvalidInput {
                field: "metadata",
                ..
            })
        ));
        let req = SaveRequest::new("n", "c", "k", "v")
            .with_metadata_json(r#"{"source":"voice"}"#)
            .unwrap();
        let p = payload_for_save(req, &cfg()).unwrap();
        assert_eq!(p.metadata.as_deref(), Some(r#"{"source":"voice"}"#));
    }

    #[test]
    fn unicode_parts_are_fine() {
        let req = SaveRequest::new("صارف", "پسند", "مشغلہ 🎵", "گانا اور لکھنا");
        payload_for_save(req, &cfg()).unwrap();
    }
}
