//! One normaliser for both stores: the `tsvector` a memory is indexed with
//! and the `tsquery` a search runs are built here, in Rust, from
//! [`crate::text::tokens`] (the tokens SQLite's FTS5 index holds), and sent
//! as literals cast with `::tsvector` / `::tsquery`. A literal cast applies
//! no dictionary, stemming or stop words: the server stores and matches
//! exactly these tokens, so the same query matches the same rows on both
//! stores.
//!
//! The tsvector: key, category and value in that order, each token at its
//! position, with weight A (key), B (category) or D (value), and a gap of
//! [`FIELD_GAP`] positions between fields, so a phrase (`'a' <-> 'b'`,
//! adjacent positions) never spans two fields, as an FTS5 phrase never
//! spans two columns. PostgreSQL's limits, where the stores may differ on
//! extreme text:
//! - positions stop at 16383: later tokens of a very long value all sit at
//!   16383, so a phrase whose first token is at 16382 may match loosely
//!   there (single words still match exactly);
//! - a lexeme keeps at most 256 positions (the first 256 here);
//! - a lexeme is at most 2046 bytes: longer tokens are left out of the
//!   tsvector (their position is kept, so phrases around them stay
//!   honest), and a query term holding one is dropped (it cannot match);
//! - a tsvector holds at most 1 MiB of distinct lexemes: new words past
//!   [`MAX_LEXEME_BYTES`] are left out (a value of many megabytes).

use std::collections::BTreeMap;

use crate::text::{tokens, Query};

/// The longest lexeme PostgreSQL accepts, in bytes.
pub(super) const MAX_LEXEME: usize = 2046;

/// The largest position a tsvector holds.
pub(super) const MAX_POSITION: u32 = 16383;

/// Positions held per lexeme.
pub(super) const MAX_POSITIONS_PER_LEXEME: usize = 256;

/// The most bytes of distinct lexemes a tsvector may hold (PostgreSQL's
/// limit is 1 MiB); words past it are left out. Only a value far beyond
/// the default `max_value_bytes` gets near it.
pub(super) const MAX_LEXEME_BYTES: usize = 1_000_000;

/// Unused positions between two fields.
pub(super) const FIELD_GAP: u32 = 8;

/// `s` as a quoted lexeme of a tsvector or tsquery literal: in single
/// quotes, with `'` doubled and `\` escaped.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The tsvector literal for a memory: its key's, category's and value's
/// tokens at their positions, weighted A, B and D.
pub(super) fn tsvector(key: &str, category: &str, value: &str) -> String {
    let mut lexemes: BTreeMap<String, Vec<(u32, &'static str)>> = BTreeMap::new();
    let mut lexeme_bytes = 0usize;
    let mut position = 1u32;
    for (text, weight) in [(key, "A"), (category, "B"), (value, "")] {
        for token in tokens(text) {
            let at = position.min(MAX_POSITION);
            position = position.saturating_add(1);
            if token.len() > MAX_LEXEME {
                continue;
            }
            if !lexemes.contains_key(&token) {
                if lexeme_bytes + token.len() > MAX_LEXEME_BYTES {
                    continue;
                }
                lexeme_bytes += token.len();
            }
            let positions = lexemes.entry(token).or_default();
            // Positions only grow; once clamped, one entry stands for all.
            if positions.len() < MAX_POSITIONS_PER_LEXEME
                && positions.last().is_none_or(|&(p, _)| p < at)
            {
                positions.push((at, weight));
            }
        }
        position = position.saturating_add(FIELD_GAP);
    }
    let mut out = String::new();
    for (lexeme, positions) in &lexemes {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&quote(lexeme));
        out.push(':');
        for (i, (p, w)) in positions.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&p.to_string());
            out.push_str(w);
        }
    }
    out
}

/// The tsquery literal for a query: each term a phrase of its tokens
/// (`'a' <-> 'b'`), the last token with `:*` for a prefix term, the terms
/// OR-ed. `None` when nothing is left to search for.
pub(super) fn tsquery(query: &Query) -> Option<String> {
    let alternatives: Vec<String> = phrases(query)
        .into_iter()
        .filter(|(tokens, _)| !tokens.is_empty() && tokens.iter().all(|t| t.len() <= MAX_LEXEME))
        .map(|(tokens, prefix)| {
            let last = tokens.len() - 1;
            let words: Vec<String> = tokens
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let star = if prefix && i == last { ":*" } else { "" };
                    format!("{}{star}", quote(t))
                })
                .collect();
            format!("({})", words.join(" <-> "))
        })
        .collect();
    (!alternatives.is_empty()).then(|| alternatives.join(" | "))
}

/// The query's terms: each a phrase of tokens and whether its last token
/// is a prefix (see [`Query::phrases`]).
pub(super) fn phrases(query: &Query) -> Vec<(Vec<String>, bool)> {
    query
        .phrases()
        .map(|(tokens, prefix)| (tokens.to_vec(), prefix))
        .collect()
}
