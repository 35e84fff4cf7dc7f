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
    ///
    /// An integer literal beyond 64 bits is an error too (see
    /// [`check_metadata_json`]): parsed, it would become a rounded float.
    pub fn with_metadata_json(mut self, json: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| Error::invalid("metadata", format!("not valid JSON: {e}")))?;
        check_metadata_json(json)?;
        self.metadata = Some(value);
        Ok(self)
    }
}

/// Checks metadata JSON text for what parsing it would silently change: an
/// integer literal (outside strings) that fits neither `i64` nor `u64`,
/// which `serde_json` turns into the nearest `f64`, so
/// `12345678901234567890123` would come back as `1.2345678901234568e22`.
/// Such metadata is an [`Error::InvalidInput`] for `metadata`; send the
/// number as a string instead. Fractions and exponents (`0.5`, `1e30`) are
/// floats on purpose and pass. Linear in the text; text that is not JSON
/// passes (parsing reports it).
pub fn check_metadata_json(json: &str) -> Result<()> {
    match wide_integer(json) {
        None => Ok(()),
        Some(literal) => {
            // A 10,000-digit literal is not repeated in full.
            let shown = match literal.char_indices().nth(40) {
                Some((cut, _)) => format!("{}…", &literal[..cut]),
                None => literal.to_owned(),
            };
            Err(Error::invalid(
                "metadata",
                format!(
                    "has the integer {shown}, an integer beyond 64 bits that would be rounded \
                     to a float; send it as a string"
                ),
            ))
        }
    }
}

/// The first integer literal outside strings in JSON text that does not fit
/// in 64 bits (`i64` when negative, `u64` otherwise).
fn wide_integer(json: &str) -> Option<&str> {
    let bytes = json.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Skip the string; an escape takes the byte after it along.
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' => i += 2,
                        b'"' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                // `start` and `i` sit on ASCII bytes: char boundaries.
                let token = &json[start..i];
                let digits = token.strip_prefix('-').unwrap_or(token);
                let integer = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
                let fits = if token.starts_with('-') {
                    token.parse::<i64>().is_ok()
                } else {
                    token.parse::<u64>().is_ok()
                };
                if integer && !fits {
                    return Some(token);
                }
            }
            _ => i += 1,
        }
    }
    None
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

/// One page of [`Memory::list_page`](crate::Memory::list_page): memories in
/// (category, key) order, and where the next page starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListPage {
    /// This page's memories, ordered by category, then key (byte order).
    pub records: Vec<MemoryRecord>,
    /// Pass it as the `cursor` of the next call to continue right after this
    /// page; `None` when nothing follows. Opaque: lowercase hex digits and
    /// one `.`, so it is safe in JSON, URLs and command lines.
    pub next_cursor: Option<String>,
}

impl ListPage {
    /// Memories per page when the caller gives no limit.
    pub const DEFAULT_LIMIT: usize = 100;
    /// The most memories one page may hold.
    pub const MAX_LIMIT: usize = 1_000;

    /// The cursor that continues a listing right after the memory
    /// (`category`, `key`), for a caller that hands on only part of a page
    /// (say, to stay under a byte budget). `next_cursor` is this for the
    /// page's last memory.
    pub fn cursor_after(category: &str, key: &str) -> String {
        let mut out = String::with_capacity(2 * (category.len() + key.len()) + 1);
        hex_into(&mut out, category);
        out.push('.');
        hex_into(&mut out, key);
        out
    }
}

fn hex_into(out: &mut String, s: &str) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in s.bytes() {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

/// The (category, key) a cursor from [`ListPage::cursor_after`] continues
/// after. Anything else is an [`Error::InvalidInput`] for `cursor`.
pub(crate) fn decode_cursor(cursor: &str, max_part: usize) -> Result<(String, String)> {
    let bad = || {
        Error::invalid(
            "cursor",
            "is not a cursor from this listing; pass `next_cursor` exactly as it was returned, \
             or leave it out to start from the beginning",
        )
    };
    // Checked before decoding: an over-long cursor costs nothing.
    if cursor.len() > 4 * max_part + 1 {
        return Err(bad());
    }
    let (category, key) = cursor.split_once('.').ok_or_else(bad)?;
    let part = |hex: &str| -> Option<String> {
        if hex.is_empty() || !hex.len().is_multiple_of(2) || hex.len() > 2 * max_part {
            return None;
        }
        let bytes = hex
            .as_bytes()
            .chunks(2)
            .map(|pair| {
                let digit = |d: u8| match d {
                    b'0'..=b'9' => Some(d - b'0'),
                    b'a'..=b'f' => Some(d - b'a' + 10),
                    _ => None,
                };
                Some(digit(pair[0])? << 4 | digit(pair[1])?)
            })
            .collect::<Option<Vec<u8>>>()?;
        String::from_utf8(bytes).ok()
    };
    match (part(category), part(key)) {
        (Some(c), Some(k)) => Ok((c, k)),
        _ => Err(bad()),
    }
}

/// A search result: a memory and its relevance (higher is better).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// The memory.
    pub record: MemoryRecord,
    /// Relevance, higher is better. Lexical retrieval (the default): for
    /// indexed memories the negated bm25 rank; for memories not yet indexed
    /// (saved a moment ago) the number of query words they contain, and
    /// fresh matches rank first. Hybrid retrieval: the fused score, the
    /// lexical side's (bm25 over the best hit's, 0 to 1) plus the vector
    /// side's (weighed by the embedder's [`Fusion`](crate::Fusion)).
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
    /// The key already holds a newer operation, accepted later by another
    /// engine (or another process), so this one was not applied: the later
    /// save or forget wins wherever it was accepted (see `docs/design.md`,
    /// "which write wins").
    Outdated,
}

/// What a queued operation does. Payloads are shared (`Arc`) between the
/// batch, the pending overlay and the writer thread, so no copy is made
/// after `save` validated them.
///
/// Its text (namespace, category, key, value and metadata) is one
/// allocation, the parts back to back: every pending save holds one, and
/// with five separate strings a pending save held ~605 bytes of heap
/// (malloc's headers and 16-byte steps included), with one ~461
/// (`examples/resident_memory.rs`, `docs/benchmarks.md`).
#[derive(Clone, PartialEq)]
pub(crate) struct OpPayload {
    text: Box<str>,
    /// Where namespace, category, key and value end in `text`; metadata
    /// runs from the value's end to the end of `text`. Parts are bounded
    /// far below 4 GiB (`Config`'s limits).
    ends: [u32; 4],
    has_value: bool,
    has_metadata: bool,
    /// Acceptance time, ms since the Unix epoch.
    pub at_ms: i64,
}

impl OpPayload {
    /// A payload: `value` `None` for a forget; `metadata` as compact JSON
    /// text.
    pub fn new(
        namespace: &str,
        category: &str,
        key: &str,
        value: Option<&str>,
        metadata: Option<&str>,
        at_ms: i64,
    ) -> OpPayload {
        let parts = [
            namespace,
            category,
            key,
            value.unwrap_or(""),
            metadata.unwrap_or(""),
        ];
        let mut text = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        let mut ends = [0u32; 4];
        for (i, part) in parts.iter().enumerate() {
            text.push_str(part);
            if i < 4 {
                ends[i] =
                    u32::try_from(text.len()).expect("a payload's parts are bounded by Config");
            }
        }
        OpPayload {
            text: text.into_boxed_str(),
            ends,
            has_value: value.is_some(),
            has_metadata: metadata.is_some(),
            at_ms,
        }
    }

    fn part(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        let end = if i < 4 {
            self.ends[i] as usize
        } else {
            self.text.len()
        };
        &self.text[start..end]
    }

    pub fn namespace(&self) -> &str {
        self.part(0)
    }

    pub fn category(&self) -> &str {
        self.part(1)
    }

    pub fn key(&self) -> &str {
        self.part(2)
    }

    /// `None` for a forget.
    pub fn value(&self) -> Option<&str> {
        self.has_value.then(|| self.part(3))
    }

    /// Metadata as compact JSON text.
    pub fn metadata(&self) -> Option<&str> {
        self.has_metadata.then(|| self.part(4))
    }

    /// Bytes this operation counts against the pending and batch bounds.
    pub fn bytes(&self) -> usize {
        self.text.len()
    }
}

impl std::fmt::Debug for OpPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpPayload")
            .field("namespace", &self.namespace())
            .field("category", &self.category())
            .field("key", &self.key())
            .field("value", &self.value())
            .field("metadata", &self.metadata())
            .field("at_ms", &self.at_ms)
            .finish()
    }
}

/// The queued form of a save or forget: a sequence number, the time it was
/// accepted on the engine's hybrid logical clock (see `crate::clock`), and
/// its payload.
#[derive(Debug, Clone)]
pub(crate) struct StoreOp {
    pub seq: u64,
    pub hlc: u64,
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
    Ok(OpPayload::new(
        &req.namespace,
        &req.category,
        &req.key,
        Some(&req.value),
        metadata.as_deref(),
        now_ms(),
    ))
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
    Ok(OpPayload::new(
        &namespace,
        &category,
        &key,
        None,
        None,
        now_ms(),
    ))
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
        assert_eq!(p.value(), Some("biryani"));
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
        assert_eq!(p.metadata(), Some(r#"{"source":"voice"}"#));
    }

    #[test]
    fn integers_beyond_64_bits_in_metadata_are_named() {
        for wide in [
            r#"{"n": 18446744073709551616}"#,
            r#"{"n": -9223372036854775809}"#,
            r#"{"a": [1, {"b": 123456789012345678901234567890}]}"#,
        ] {
            match SaveRequest::new("n", "c", "k", "v").with_metadata_json(wide) {
                Err(Error::InvalidInput {
                    field: "metadata",
                    reason,
                }) => assert!(reason.contains("integer beyond 64 bits"), "{reason}"),
                other => panic!("{wide}: {other:?}"),
            }
        }
        for fine in [
            r#"{"n": 18446744073709551615, "m": -9223372036854775808}"#,
            r#"{"f": 1.5e300, "g": 123456789012345678901234567890.0, "h": -0}"#,
            r#"{"s": "123456789012345678901234567890", "e": "\"99999999999999999999"}"#,
        ] {
            SaveRequest::new("n", "c", "k", "v")
                .with_metadata_json(fine)
                .unwrap_or_else(|e| panic!("{fine}: {e}"));
        }
        let long = format!(r#"{{"n": {}}}"#, "9".repeat(10_000));
        let reason = check_metadata_json(&long).unwrap_err().to_string();
        assert!(reason.len() < 300, "{reason}");
    }

    #[test]
    fn cursors_round_trip_and_junk_is_named() {
        for (c, k) in [("prefs", "food"), ("پسند", "مشغلہ 🎵"), ("a.b", "c\"d")] {
            let cursor = ListPage::cursor_after(c, k);
            assert!(cursor.bytes().all(|b| b == b'.' || b.is_ascii_hexdigit()));
            assert_eq!(decode_cursor(&cursor, 256).unwrap(), (c.into(), k.into()));
        }
        let long = ListPage::cursor_after(&"c".repeat(300), "k");
        for junk in [
            "",
            ".",
            "zz.00",
            "6.6b",
            "636.6b",
            "63",
            "ff.6b",
            "63.",
            long.as_str(),
        ] {
            assert!(
                matches!(
                    decode_cursor(junk, 256),
                    Err(Error::InvalidInput {
                        field: "cursor",
                        ..
                    })
                ),
                "{junk}"
            );
        }
    }

    #[test]
    fn unicode_parts_are_fine() {
        let req = SaveRequest::new("صارف", "پسند", "مشغلہ 🎵", "گانا اور لکھنا");
        payload_for_save(req, &cfg()).unwrap();
    }
}
