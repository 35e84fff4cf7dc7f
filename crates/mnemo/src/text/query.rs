//! [`Query`]: user text parsed into the phrases a search looks for, as an
//! FTS5 expression, as phrases for other stores, and as an in-memory matcher.

use std::collections::HashSet;

use unicode_normalization::char::is_combining_mark;

use super::fold::is_cjk_token;
use super::raw_tokens;
use super::stem::stem;
use super::stop_words::is_stop_word;
use super::token_index::TokenIndex;

/// One alternative of a query: a phrase (a token sequence that must occur in
/// that order in one field), whose last token may be a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Term {
    pub(super) tokens: Vec<String>,
    pub(super) prefix: bool,
}

impl Term {
    /// Whether the phrase occurs in `text`. Costs a dictionary lookup per
    /// token, plus, for a phrase of several tokens, a check at each
    /// occurrence of its rarest token: never a scan of the text.
    pub(super) fn occurs_in(&self, text: &TokenIndex) -> bool {
        let Some((last, head)) = self.tokens.split_last() else {
            return false;
        };
        let last = if self.prefix {
            text.ids_with_prefix(last)
        } else {
            text.id(last).map_or(0..0, |id| id..id + 1)
        };
        if last.is_empty() {
            return false;
        }
        let mut head_ids = Vec::with_capacity(head.len());
        for t in head {
            match text.id(t) {
                Some(id) => head_ids.push(id),
                None => return false,
            }
        }
        // Every token of a phrase of one occurs (ids come from the text).
        let Some((at, rarest)) = head_ids
            .iter()
            .enumerate()
            .min_by_key(|(_, &id)| text.positions(id).len())
        else {
            return true;
        };
        let len = self.tokens.len();
        text.positions(*rarest).iter().any(|&p| {
            let Some(start) = (p as usize).checked_sub(at) else {
                return false;
            };
            text.ids.get(start..start + len).is_some_and(|w| {
                w[..head_ids.len()] == head_ids[..] && last.contains(&w[head_ids.len()])
            })
        })
    }
}

/// The most text one search may carry, in bytes of UTF-8. An agent's query
/// is a few keywords or a question, well under 1 KiB; 8 KiB still takes a
/// pasted paragraph (~1,300 English words, ~2,700 CJK characters), while
/// bounding the work of parsing it and the length of its longest phrase.
pub const MAX_QUERY_BYTES: usize = 8 * 1024;

/// The most distinct terms (phrases, after duplicates and English function
/// words are dropped) one search may carry. Each is one alternative of the
/// FTS5 MATCH and one lookup per field of each pending memory. 256 is ~25x
/// a keyword query, and a paragraph of that many distinct words; a Chinese
/// run counts one term per character and one per pair of characters, so it
/// takes about 128 distinct characters.
pub const MAX_QUERY_TERMS: usize = 256;

/// A search query parsed from user text. Any input is valid; FTS syntax in
/// it is text. The rules:
/// - each whitespace-separated word becomes a phrase of its tokens
///   (`favorite_food` → `"favorite food"`), except that CJK and non-CJK
///   tokens are cut apart (`WiFi密码` → `"wifi"`, `"密 码"`) and a CJK run
///   longer than two characters becomes its overlapping two-character
///   phrases and its characters (`海鲜过敏` → `"海 鲜"`, `"鲜 过"`,
///   `"过 敏"`, `"海"`, `"鲜"`, `"过"`, `"敏"`), since Chinese does not mark
///   word boundaries: a pair ranks the memories holding a word of the
///   question first, a character finds the ones that say it in other words
///   (`搬到哪个城市` meets `搬去了杭州` through `搬`);
/// - the phrases are alternatives (OR), ranked by bm25;
/// - the last phrase is a prefix phrase when its last token has three or
///   more letters (combining marks not counted) and is neither CJK nor a
///   number (`sister name` matches `named`).
///
/// Parsing and every method cost time linear in the text (plus sorting the
/// text's tokens once for [`Query::matches`]). [`Memory::search`](crate::Memory::search)
/// takes at most [`MAX_QUERY_BYTES`] of text and [`MAX_QUERY_TERMS`] terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    terms: Vec<Term>,
}

impl Query {
    /// Parses user text. Words that normalise to nothing (punctuation,
    /// operators) are skipped; duplicates are dropped.
    pub fn parse(text: &str) -> Query {
        // Each term with whether it is a function word (judged before
        // stemming: `does` stems to `doe`).
        let mut terms: Vec<(Term, bool)> = Vec::new();
        // Duplicates are found by hash, not by comparing with every term
        // so far: a long Chinese run yields a term per character.
        let mut seen: HashSet<SeenTerm> = HashSet::new();
        let mut add = |raw: &[String]| {
            let tokens: Vec<String> = raw.iter().cloned().map(stem).collect();
            if seen.insert(SeenTerm(tokens.clone())) {
                terms.push((
                    Term {
                        tokens,
                        prefix: false,
                    },
                    is_stop_word(raw),
                ));
            }
        };
        for word in text.split_whitespace() {
            let word = raw_tokens(word);
            let mut rest = &word[..];
            while let Some(first) = rest.first() {
                let cjk = is_cjk_token(first);
                let len = rest
                    .iter()
                    .position(|t| is_cjk_token(t) != cjk)
                    .unwrap_or(rest.len());
                let (run, tail) = rest.split_at(len);
                if cjk && run.len() > 2 {
                    run.windows(2).for_each(&mut add);
                    run.chunks(1).for_each(&mut add);
                } else {
                    add(run);
                }
                rest = tail;
            }
        }
        // Function words (`stop_words.rs`) match nearly every memory and
        // only add noise to the ranking; they are dropped while something
        // else is left to search for.
        if terms.iter().any(|(_, stop)| !stop) {
            terms.retain(|(_, stop)| !stop);
        }
        let mut terms: Vec<Term> = terms.into_iter().map(|(t, _)| t).collect();
        if let Some(last) = terms.last_mut() {
            last.prefix = last.tokens.last().is_some_and(|t| prefix_helps(t));
        }
        Query { terms }
    }

    /// `true` if nothing searchable is left.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The number of terms (distinct phrases) searched for.
    pub fn len(&self) -> usize {
        self.terms.len()
    }

    /// The FTS5 MATCH expression over the text columns: each phrase quoted,
    /// the last one possibly a prefix phrase (`"tok"*`), joined by OR.
    /// Tokens hold only letters, digits and marks, so quoting cannot be
    /// broken out of.
    pub fn fts_expression(&self) -> Option<String> {
        if self.terms.is_empty() {
            return None;
        }
        let alternatives: Vec<String> = self
            .terms
            .iter()
            .map(|t| {
                let star = if t.prefix { "*" } else { "" };
                format!("\"{}\"{star}", t.tokens.join(" "))
            })
            .collect();
        Some(format!(
            "{{key category value}} : ({})",
            alternatives.join(" OR ")
        ))
    }

    /// The query's terms: each a phrase of tokens, and whether its last
    /// token matches as a prefix (what [`Query::fts_expression`] says to
    /// FTS5, for stores that build their own query from it).
    pub(crate) fn phrases(&self) -> impl Iterator<Item = (&[String], bool)> + '_ {
        self.terms.iter().map(|t| (t.tokens.as_slice(), t.prefix))
    }

    /// How many of the query's phrases occur in `haystack` (already
    /// tokenised), with the same rules as [`Query::fts_expression`]: a
    /// prefix phrase's last token matches any token starting with it.
    /// 0 means no match.
    pub fn matches(&self, haystack: &[String]) -> usize {
        let text = TokenIndex::from_tokens(haystack);
        self.terms.iter().filter(|t| t.occurs_in(&text)).count()
    }

    /// For each of the query's terms, whether it occurs in `haystack`.
    pub fn term_hits(&self, haystack: &[String]) -> Vec<bool> {
        let text = TokenIndex::from_tokens(haystack);
        self.hits_in(&text).collect()
    }

    /// For each of the query's terms, whether it occurs in `text`.
    pub(crate) fn hits_in<'a>(&'a self, text: &'a TokenIndex) -> impl Iterator<Item = bool> + 'a {
        self.terms.iter().map(|t| t.occurs_in(text))
    }
}

/// A term's tokens as a key of the duplicate set in [`Query::parse`]. Its
/// equality counts comparisons in unit tests, which check that parsing
/// compares each word with a handful of others, not with every term.
struct SeenTerm(Vec<String>);

impl PartialEq for SeenTerm {
    fn eq(&self, other: &Self) -> bool {
        #[cfg(test)]
        super::tests::TERM_COMPARISONS.with(|c| c.set(c.get() + 1));
        self.0 == other.0
    }
}

impl Eq for SeenTerm {}

impl std::hash::Hash for SeenTerm {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

/// Prefix matching helps a word that may be cut short or inflected
/// (`allerg`, `name` → `named`); it would only add noise to a single CJK
/// character, a one- or two-letter word or a number.
fn prefix_helps(token: &str) -> bool {
    !is_cjk_token(token)
        && token.chars().filter(|c| !is_combining_mark(*c)).count() >= 3
        && !token.chars().all(char::is_numeric)
}
