//! Text normalisation and query building, shared by indexing, FTS queries and
//! the in-memory match of memories the index has not seen yet.
//!
//! Indexing and querying both pass text through [`tokens`]; the index stores
//! the tokens joined by spaces and FTS5's `ascii` tokenizer (which keeps every
//! non-ASCII code point inside a token) splits them back exactly, so SQLite
//! and the in-memory matcher agree on what a word is.

use unicode_normalization::UnicodeNormalization;

/// Splits text into normalised tokens:
/// - NFD, then Latin/Greek/Cyrillic combining accents dropped (`café` → `cafe`);
/// - Arabic-script harakat, superscript alef and tatweel dropped; Arabic
///   `ي ى ك ه` mapped to Urdu/Persian `ی ی ک ہ`;
/// - zero-width joiner / non-joiner removed (they sit inside words);
/// - Devanagari (and other Indic) vowel signs, virama and nukta kept inside
///   the word;
/// - CJK ideographs and kana become one token each, so a word is matched as a
///   phrase of its characters;
/// - lower-cased, recomposed to NFC.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in text.nfd() {
        if is_dropped_mark(c) {
            continue;
        }
        let c = map_letter(c);
        if is_cjk(c) {
            flush(&mut current, &mut out);
            out.push(c.to_string());
        } else if is_word_char(c) {
            current.extend(c.to_lowercase());
        } else {
            flush(&mut current, &mut out);
        }
    }
    flush(&mut current, &mut out);
    out
}

/// [`tokens`] joined by single spaces: the form stored in the index.
pub fn normalize(text: &str) -> String {
    tokens(text).join(" ")
}

fn flush(current: &mut String, out: &mut Vec<String>) {
    if !current.is_empty() {
        out.push(current.nfc().collect());
        current.clear();
    }
}

fn is_dropped_mark(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'   // combining diacritical marks (Latin, Greek, Cyrillic)
        | '\u{0610}'..='\u{061A}' // Arabic signs above/below
        | '\u{064B}'..='\u{065F}' // harakat: fatha, kasra, damma, shadda, sukun, ...
        | '\u{0670}'              // superscript alef
        | '\u{06D6}'..='\u{06ED}' // Quranic annotation marks
        | '\u{0640}'              // tatweel
        | '\u{200C}' | '\u{200D}' // zero-width non-joiner / joiner
    )
}

fn map_letter(c: char) -> char {
    match c {
        '\u{064A}' | '\u{0649}' => '\u{06CC}', // Arabic yeh / alef maksura -> Farsi yeh (ی)
        '\u{0643}' => '\u{06A9}',              // Arabic kaf -> keheh (ک)
        '\u{0647}' => '\u{06C1}',              // Arabic heh -> heh goal (ہ)
        _ => c,
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || is_indic_mark(c)
}

/// Combining marks of Indic scripts (vowel signs, virama, nukta, anusvara):
/// part of the word, not separators.
fn is_indic_mark(c: char) -> bool {
    let cp = c as u32;
    (0x0900..=0x0DFF).contains(&cp) && !c.is_alphanumeric() && !matches!(cp, 0x0964 | 0x0965)
}

fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{3040}'..='\u{30FF}'   // hiragana, katakana
        | '\u{3400}'..='\u{4DBF}' // CJK extension A
        | '\u{4E00}'..='\u{9FFF}' // CJK unified ideographs
        | '\u{F900}'..='\u{FAFF}' // compatibility ideographs
        | '\u{20000}'..='\u{2FFFF}'
    )
}

/// A search query parsed from user text: one phrase (a token sequence) per
/// whitespace-separated word. Any input is valid; FTS syntax in it is text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    phrases: Vec<Vec<String>>,
}

impl Query {
    /// Parses user text. Words that normalise to nothing (punctuation,
    /// operators) are skipped; duplicates are dropped.
    pub fn parse(text: &str) -> Query {
        let mut phrases: Vec<Vec<String>> = Vec::new();
        for word in text.split_whitespace() {
            let t = tokens(word);
            if !t.is_empty() && !phrases.contains(&t) {
                phrases.push(t);
            }
        }
        Query { phrases }
    }

    /// `true` if nothing searchable is left.
    pub fn is_empty(&self) -> bool {
        self.phrases.is_empty()
    }

    /// The FTS5 MATCH expression over the text columns: each phrase quoted,
    /// joined by OR. Tokens hold only letters, digits and marks, so quoting
    /// cannot be broken out of.
    pub fn fts_expression(&self) -> Option<String> {
        if self.phrases.is_empty() {
            return None;
        }
        let alternatives: Vec<String> = self
            .phrases
            .iter()
            .map(|p| format!("\"{}\"", p.join(" ")))
            .collect();
        Some(format!(
            "{{key category value}} : ({})",
            alternatives.join(" OR ")
        ))
    }

    /// How many of the query's phrases occur in `haystack` (already
    /// tokenised). 0 means no match.
    pub fn matches(&self, haystack: &[String]) -> usize {
        self.phrases
            .iter()
            .filter(|p| haystack.windows(p.len()).any(|w| w == p.as_slice()))
            .count()
    }
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
mod tests {
    use super::*;

    #[test]
    fn latin_is_folded() {
        assert_eq!(
            tokens("Café-au-LAIT, naïve!"),
            ["cafe", "au", "lait", "naive"]
        );
        assert_eq!(normalize("favorite_food"), "favorite food");
    }

    #[test]
    fn urdu_harakat_tatweel_and_arabic_letters() {
        // vowelled and plain spellings meet
        assert_eq!(tokens("مُجھے"), tokens("مجھے"));
        // tatweel inside a word
        assert_eq!(tokens("گـانا"), tokens("گانا"));
        // Arabic kaf/yeh/heh spellings meet Urdu ones
        assert_eq!(tokens("كيا"), tokens("کیا"));
        assert_eq!(tokens("مجھے گانا اور لکھنا پسند ہے").len(), 6);
    }

    #[test]
    fn devanagari_words_stay_whole() {
        assert_eq!(tokens("मुझे गाना पसंद है"), ["मुझे", "गाना", "पसंद", "है"]);
        assert_eq!(tokens("क्षमा।"), ["क्षमा"]);
    }

    #[test]
    fn cjk_is_split_per_character() {
        assert_eq!(tokens("我喜欢喝咖啡"), ["我", "喜", "欢", "喝", "咖", "啡"]);
        let q = Query::parse("咖啡");
        assert_eq!(q.matches(&tokens("我喜欢喝咖啡")), 1);
        assert_eq!(q.matches(&tokens("我喜欢喝茶")), 0);
    }

    #[test]
    fn hostile_queries_become_plain_phrases() {
        for text in [
            "\"unbalanced",
            "a* OR b NEAR(c d)",
            "'); DROP TABLE memories; --",
            "(((",
            "key:value",
            "^ - + {}",
        ] {
            let q = Query::parse(text);
            if let Some(expr) = q.fts_expression() {
                let inner = &expr["{key category value} : (".len()..expr.len() - 1];
                for part in inner.split(" OR ") {
                    assert!(part.starts_with('"') && part.ends_with('"'), "{expr}");
                    assert!(!part[1..part.len() - 1].contains('"'), "{expr}");
                }
            }
        }
        assert!(Query::parse("*** ((( ").is_empty());
    }

    #[test]
    fn namespace_tokens_are_stable_and_distinct() {
        assert_eq!(namespace_token("alice"), namespace_token("alice"));
        assert_ne!(namespace_token("alice"), namespace_token("bob"));
        assert_eq!(tokens(&namespace_token("alice")).len(), 1);
    }
}
