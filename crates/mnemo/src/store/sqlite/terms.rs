//! The SQLite index's terms: every token is scoped to its namespace.
//!
//! The FTS table holds every namespace's memories. Had it held plain words,
//! a word common across the database (in 10% of a million memories) would
//! cost every search for it the whole database's share of that word, in
//! any namespace: FTS5 expands a prefix term over every matching row, and
//! `bm25()` counts the rows holding each term (its IDF) over the whole
//! table, before the namespace's own few matches are ranked (15 ms at a
//! million memories against 0.3 ms for the namespace's rows,
//! `docs/benchmarks.md`). So each token is stored with its namespace's
//! token in front (`ns<16 hex digits>` + token, one FTS token: the
//! normaliser's tokens are ASCII letters and digits or non-ASCII, which the
//! `ascii` tokenizer keeps in one token), and queries ask for scoped terms:
//! a term's document list, a prefix's expansion and bm25's document count
//! are the namespace's own. bm25's row count and average length stay the
//! table's, so within one namespace the ranking is the same as with plain
//! words.
//!
//! The namespace token is a hash; the read still checks
//! `memories.namespace`, so a collision costs time, never another
//! namespace's rows.

use crate::text::{namespace_token, Query};

/// The scope of a namespace's terms.
pub(super) fn scope(namespace: &str) -> String {
    namespace_token(namespace)
}

/// Normalised text (tokens separated by single spaces) as scoped terms.
pub(super) fn scoped_text(scope: &str, normalized: &str) -> String {
    let mut out = String::with_capacity(normalized.len() + 8 * (scope.len() + 1));
    for token in normalized.split(' ').filter(|t| !t.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(scope);
        out.push_str(token);
    }
    out
}

/// The FTS5 expression for `query` in one namespace: any of its phrases,
/// in the key, category or value columns. `None` for a query without
/// terms.
pub(super) fn fts_query(scope: &str, query: &Query) -> Option<String> {
    let phrases: Vec<String> = query
        .phrases()
        .map(|(tokens, prefix)| {
            let words: Vec<String> = tokens.iter().map(|t| format!("{scope}{t}")).collect();
            let star = if prefix { "*" } else { "" };
            format!("\"{}\"{star}", words.join(" "))
        })
        .collect();
    if phrases.is_empty() {
        return None;
    }
    Some(format!(
        "{{key category value}} : ({})",
        phrases.join(" OR ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_and_queries_are_scoped_alike() {
        let s = scope("alice");
        assert_eq!(s.len(), 18);
        assert_eq!(
            scoped_text(&s, "sister live lahor"),
            format!("{s}sister {s}live {s}lahor")
        );
        assert_eq!(scoped_text(&s, ""), "");
        let q = fts_query(&s, &Query::parse("sister's city")).unwrap();
        assert!(q.contains(&format!("\"{s}sister\"")), "{q}");
        assert!(q.contains(&format!("\"{s}citi\"*")), "{q}");
        assert_eq!(fts_query(&s, &Query::parse("")), None);
        assert_ne!(scope("alice"), scope("bob"));
    }
}
