//! Text normalisation and query building, shared by indexing, FTS queries and
//! the in-memory match of memories the index has not seen yet.
//!
//! Indexing and querying both pass text through [`tokens`]; the index stores
//! the tokens joined by spaces and FTS5's `ascii` tokenizer (which keeps every
//! non-ASCII code point inside a token) splits them back exactly, so SQLite
//! and the in-memory matcher agree on what a word is.
//!
//! A query costs time linear in its text: duplicates are found by hash, and
//! a term is matched against a `TokenIndex` (built once per text) by
//! lookups, not by a scan. `Memory::search` bounds a query's text and terms
//! ([`MAX_QUERY_BYTES`], [`MAX_QUERY_TERMS`]).
//!
//! `docs/retrieval.md` explains each rule and measures what it buys.

mod fold;
mod query;
mod stem;
mod stop_words;
mod token_index;

pub use query::{Query, MAX_QUERY_BYTES, MAX_QUERY_TERMS};
pub(crate) use token_index::TokenIndex;

use fold::{fold, split};

/// The version of the normaliser. The index stores normalised text, so when
/// the rules change this number changes, and the next open rebuilds the
/// index from the stored memories.
pub const NORMALIZER_VERSION: i64 = 3;

/// Splits text into normalised tokens. Every token is lower-case NFC and
/// holds only letters, digits and combining marks. Per script:
/// - all: compatibility forms (full-width Latin, half-width kana, Arabic
///   presentation forms, ligatures) unfolded; case folded (`ß` → `ss`,
///   `ς` → `σ`, `İ` → `i`); invisible format characters (zero-width
///   joiner / non-joiner, soft hyphen, bidi marks, variation selectors)
///   removed, so they never split a word; Arabic-Indic, Urdu and Devanagari
///   digits read as ASCII digits;
/// - Latin, Greek, Cyrillic: combining accents dropped (`café` → `cafe`),
///   `ł ø đ ð æ œ þ ı` spelled out; an English `'s` clitic dropped
///   (`Ayesha's` → `ayesha`);
/// - Arabic script: harakat, superscript alef, Quranic marks and tatweel
///   dropped, which also drops the hamza and madda riding on a letter
///   (`أ آ` → `ا`, `ئ` → `ی`, `ۓ` → `یے`); Arabic `ي ى ك ه ة ە` mapped to
///   Urdu/Persian `ی ی ک ہ ۃ ہ`;
/// - Devanagari (and other scripts with combining vowel signs): marks stay
///   inside the word; in Devanagari the nukta is dropped (`ज़` → `ज`),
///   chandrabindu reads as anusvara (`माँ` → `मां`) and a nasal consonant
///   with virama before a consonant reads as anusvara (`हिन्दी` → `हिंदी`);
/// - CJK ideographs and kana: one token each (with any combining sound
///   mark), so a word is matched as a phrase of its characters.
/// - English (any token of three or more ASCII letters): stemmed with
///   Snowball's English stemmer (`allergies` → `allergi`, `moved` → `move`;
///   see `stem.rs`).
pub fn tokens(text: &str) -> Vec<String> {
    raw_tokens(text).into_iter().map(stem::stem).collect()
}

/// [`tokens`] before stemming: what a query's function words are judged on.
fn raw_tokens(text: &str) -> Vec<String> {
    split(&fold(text))
}

/// [`tokens`] joined by single spaces: the form stored in the index.
pub fn normalize(text: &str) -> String {
    tokens(text).join(" ")
}

/// The index token standing for a namespace, so that FTS5 itself restricts a
/// query to one namespace. The join on `memories.namespace` is still checked,
/// so a hash collision cannot leak another namespace's rows.
pub(crate) fn namespace_token(namespace: &str) -> String {
    // FNV-1a, 64 bit: stable across versions and platforms (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in namespace.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("ns{h:016x}")
}

#[cfg(test)]
mod tests;
