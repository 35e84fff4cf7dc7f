//! English stemming: Snowball's English (Porter2) stemmer, from the
//! `rust-stemmers` crate, on every token of ASCII letters.
//!
//! Indexing and querying both stem (it is part of [`tokens`](super::tokens)),
//! so `allergies`, `allergy` → `allergi`, `moved`, `moving` → `move`,
//! `meetings` → `meet`. Tokens of other scripts, and tokens holding a digit,
//! pass unchanged. Romanised Urdu and Hindi words are stemmed too (they are
//! Latin letters); the same rule on both sides keeps them matching, and the
//! stemmer rarely touches their endings (`mein`, `hain`, `kya` stay).

use std::sync::LazyLock;

use rust_stemmers::{Algorithm, Stemmer};

static ENGLISH: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::create(Algorithm::English));

/// `token` stemmed if it is a word of ASCII letters of three or more
/// (shorter words have no suffix to strip), else as it is.
pub(super) fn stem(token: String) -> String {
    if token.len() < 3 || !token.bytes().all(|b| b.is_ascii_lowercase()) {
        return token;
    }
    match ENGLISH.stem(&token) {
        std::borrow::Cow::Borrowed(same) if same.len() == token.len() => token,
        stemmed => stemmed.into_owned(),
    }
}
