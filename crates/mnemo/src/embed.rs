//! Embedders: text → fixed-size vectors for the vector side of hybrid
//! retrieval ([`Retrieval::Hybrid`](crate::config::Retrieval::Hybrid)).
//!
//! [`Embedder`] is the seam; [`NgramEmbedder`] is the built-in one, which
//! needs no model: signed feature hashing of words and character n-grams of
//! the normalised tokens ([`crate::text::tokens`]). It catches what exact
//! token matching misses when the words still share letters — plurals and
//! other inflections (`tomato` / `tomatoes`), typos (`levothyroxin`), and
//! words inside unsegmented scripts — but it knows no synonyms; a neural
//! embedder behind the same trait would.
//!
//! Embedding runs in the indexer (and, for the few memories not indexed yet,
//! at query time), never in `save`.

/// Turns text into a vector. Vectors of one embedder are compared by cosine
/// similarity, so only their direction matters.
///
/// Implementations must be pure and deterministic: the same text gives the
/// same vector in every process and on every run, since vectors are stored
/// (one table per [`model_id`](Embedder::model_id)) and compared with
/// vectors of queries embedded later.
pub trait Embedder: Send + Sync {
    /// A stable name for the model and its settings. Stored vectors are kept
    /// per model id: change it whenever the vectors change, and the index
    /// re-embeds every memory.
    fn model_id(&self) -> &str;

    /// The length of every vector [`embed`](Embedder::embed) returns.
    fn dimension(&self) -> usize;

    /// The vector for `text`: exactly [`dimension`](Embedder::dimension)
    /// values. A text with nothing to embed (no tokens) gives all zeros,
    /// which matches nothing.
    fn embed(&self, text: &str) -> Vec<f32>;

    /// The vectors of several texts, in order. The indexer hands each
    /// indexing pass's memories over at once, so a model that runs faster
    /// on batches (a neural one) should override this; the default embeds
    /// one text at a time.
    fn embed_batch(&self, texts: &[&str]) -> Vec<Vec<f32>> {
        texts.iter().map(|t| self.embed(t)).collect()
    }

    /// The vector of a search's text. Models trained with different
    /// prefixes for questions and for what they retrieve (E5's `query: ` /
    /// `passage: `) override this; [`embed`](Embedder::embed) and
    /// [`embed_batch`](Embedder::embed_batch) embed memories. The default is
    /// [`embed`](Embedder::embed).
    fn embed_query(&self, text: &str) -> Vec<f32> {
        self.embed(text)
    }

    /// The cosine similarity below which a vector match is noise for this
    /// model and is left out of the vector ranking. The default, 0.05, is
    /// the floor measured for [`NgramEmbedder`] (`docs/retrieval.md`): with
    /// hashed n-grams unrelated texts score within about ±0.03 at 1,024
    /// dimensions, while a short query sharing one word with a long memory
    /// can score as little as 0.08.
    fn min_similarity(&self) -> f32 {
        0.05
    }

    /// How this model's ranking is fused with the lexical one
    /// (`search/fusion.rs`). The default is [`Fusion::default`].
    fn fusion(&self) -> Fusion {
        Fusion::default()
    }

    /// Whether this model's vectors mean anything for a query written like
    /// `query` (a model trained on one language, say). A query it does not
    /// support is ranked by the lexical side alone. The default: every
    /// query.
    fn supports(&self, query: &str) -> bool {
        let _ = query;
        true
    }
}

/// How much an embedder's vector ranking counts beside the lexical one in
/// hybrid search. A memory's fused score is its lexical score (bm25 over the
/// best hit's, so 0 to 1) plus `weight` times its vector score (its
/// similarity's height above the namespace's background over the best
/// match's, so 0 to 1); see `search/fusion.rs` for the whole rule. The
/// values shipped for each embedder are the ones measured best on the
/// project's test sets while never below lexical alone
/// (`docs/retrieval.md`, "Fusion").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fusion {
    /// The vector side's weight when it is confident (1: as much as the
    /// lexical side).
    pub weight: f32,
    /// How far the best similarity must stand above the background for the
    /// full weight; below it the weight shrinks in proportion. 0: always
    /// the full weight.
    pub confident_height: f32,
    /// What a lexical hit in another script than the query's counts (1:
    /// fully). Below 1 for a multilingual model, whose vectors answer a
    /// query in one language about memories in another.
    pub cross_script_lexical: f32,
}

impl Default for Fusion {
    /// Equal say, always, any script: what [`NgramEmbedder`] uses.
    fn default() -> Self {
        Fusion {
            weight: 1.0,
            confident_height: 0.0,
            cross_script_lexical: 1.0,
        }
    }
}

/// The built-in embedder: hashed word and character n-gram features over
/// [`crate::text::tokens`], L2-normalised.
///
/// Features, each hashed with FNV-1a (fixed, so vectors are the same in
/// every process) to a dimension and a sign:
/// - every token (weight 1);
/// - the character 3-grams of each token of three or more characters, with
///   `<` and `>` marking its start and end (weight 0.5 each), so `tomato`
///   and `tomatoes` share `<to tom oma mat ato`;
/// - for one-character tokens of CJK ideographs and kana (which the
///   normaliser splits one per character), each pair of adjacent ones
///   (weight 1), i.e. the character bigrams that make up most Chinese words.
#[derive(Debug, Clone)]
pub struct NgramEmbedder {
    dimension: usize,
    model_id: String,
}

/// Weight of a whole-token feature.
const WORD: f32 = 1.0;
/// Weight of each character 3-gram.
const TRIGRAM: f32 = 0.5;
/// Weight of each adjacent CJK character pair.
const CJK_PAIR: f32 = 1.0;

impl NgramEmbedder {
    /// The default dimension: 1,024 (4 KiB per stored vector). Hashing a
    /// long memory's ~100 features into fewer buckets adds collision noise
    /// comparable to the signal of one shared word: on the test set
    /// (`docs/retrieval.md`) 384 and 512 dimensions each lose a query that
    /// 1,024 finds; 2,048 finds no more.
    pub const DEFAULT_DIMENSION: usize = 1024;

    /// An embedder with [`DEFAULT_DIMENSION`](Self::DEFAULT_DIMENSION).
    pub fn new() -> NgramEmbedder {
        NgramEmbedder::with_dimension(Self::DEFAULT_DIMENSION)
    }

    /// An embedder with `dimension` buckets (at least 1; 0 reads as 1).
    pub fn with_dimension(dimension: usize) -> NgramEmbedder {
        let dimension = dimension.max(1);
        NgramEmbedder {
            dimension,
            model_id: format!(
                "mnemo-ngram-v1-n{}-{dimension}",
                crate::text::NORMALIZER_VERSION
            ),
        }
    }

    fn add(&self, v: &mut [f32], kind: u8, feature: &str, weight: f32) {
        let h = fnv1a(kind, feature.as_bytes());
        let i = (h % self.dimension as u64) as usize;
        // The top bit decides the sign: collisions cancel out on average
        // instead of piling up.
        let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
        v[i] += sign * weight;
    }
}

impl Default for NgramEmbedder {
    fn default() -> Self {
        NgramEmbedder::new()
    }
}

impl Embedder for NgramEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn embed(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0.0f32; self.dimension];
        let toks = crate::text::tokens(text);
        let mut prev_cjk: Option<&str> = None;
        let mut gram = String::new();
        for t in &toks {
            self.add(&mut v, b'w', t, WORD);
            let chars: Vec<char> = t.chars().collect();
            if chars.len() >= 3 {
                let mut marked = Vec::with_capacity(chars.len() + 2);
                marked.push('<');
                marked.extend_from_slice(&chars);
                marked.push('>');
                for w in marked.windows(3) {
                    gram.clear();
                    gram.extend(w);
                    self.add(&mut v, b'c', &gram, TRIGRAM);
                }
            }
            let cjk = chars.len() == 1 && is_cjk(chars[0]);
            if cjk {
                if let Some(p) = prev_cjk {
                    gram.clear();
                    gram.push_str(p);
                    gram.push_str(t);
                    self.add(&mut v, b'b', &gram, CJK_PAIR);
                }
                prev_cjk = Some(t);
            } else {
                prev_cjk = None;
            }
        }
        normalise(&mut v);
        v
    }
}

/// CJK ideographs and kana: the characters the normaliser splits one per
/// token.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // hiragana, katakana
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xF900..=0xFAFF    // compatibility ideographs
        | 0x20000..=0x3FFFF) // extensions B and later
}

/// 64-bit FNV-1a over a feature kind byte and the feature's bytes.
fn fnv1a(kind: u8, bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for &b in std::iter::once(&kind).chain(bytes) {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h
}

/// Scales `v` to unit length (a zero vector stays zero).
fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in v.iter_mut() {
            *x /= norm;
        }
    }
}

/// Cosine similarity of two vectors of the same length; 0 if either is zero.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// A vector as SQLite stores it: little-endian `f32`s (sqlite-vec's
/// `float32` blob format).
pub(crate) fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `true` if every component is zero (nothing to embed).
pub(crate) fn is_zero(v: &[f32]) -> bool {
    v.iter().all(|x| *x == 0.0)
}

/// A test embedder that watches where it is called from.
#[cfg(test)]
pub(crate) mod probe {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    use std::time::Duration;

    use super::{Embedder, NgramEmbedder};

    /// The n-gram embedder (same model id) that, whenever it is asked for
    /// vectors, asks a second connection for the database's write lock and
    /// counts the calls that could not get it, and runs `hook` with the
    /// number of each `embed_batch` call first (another engine's work goes
    /// there: it runs between the caller's transactions).
    pub(crate) struct LockProbe<F: Fn(usize) + Send + Sync = fn(usize)> {
        inner: NgramEmbedder,
        path: PathBuf,
        hook: F,
        /// `embed_batch` calls.
        pub calls: AtomicUsize,
        /// `embed` calls (one text at a time).
        pub inline: AtomicUsize,
        /// Calls made while somebody held the write lock throughout.
        pub locked: AtomicUsize,
    }

    impl LockProbe {
        pub(crate) fn new(path: &Path) -> LockProbe {
            LockProbe::with_hook(path, |_| {})
        }
    }

    impl<F: Fn(usize) + Send + Sync> LockProbe<F> {
        pub(crate) fn with_hook(path: &Path, hook: F) -> Self {
            LockProbe {
                inner: NgramEmbedder::new(),
                path: path.to_owned(),
                hook,
                calls: AtomicUsize::new(0),
                inline: AtomicUsize::new(0),
                locked: AtomicUsize::new(0),
            }
        }

        fn probe(&self) {
            let c = rusqlite::Connection::open(&self.path).expect("probe connection");
            // The caller is blocked in this call: a lock it holds stays held
            // for the whole timeout; a commit by another thread only delays
            // the probe.
            c.busy_timeout(Duration::from_secs(2))
                .expect("busy timeout");
            if c.execute_batch("BEGIN IMMEDIATE; ROLLBACK;").is_err() {
                self.locked.fetch_add(1, Relaxed);
            }
        }
    }

    impl<F: Fn(usize) + Send + Sync> Embedder for LockProbe<F> {
        fn model_id(&self) -> &str {
            self.inner.model_id()
        }
        fn dimension(&self) -> usize {
            self.inner.dimension()
        }
        fn embed(&self, t: &str) -> Vec<f32> {
            self.inline.fetch_add(1, Relaxed);
            self.probe();
            self.inner.embed(t)
        }
        fn embed_batch(&self, ts: &[&str]) -> Vec<Vec<f32>> {
            (self.hook)(self.calls.fetch_add(1, Relaxed) + 1);
            self.probe();
            ts.iter().map(|t| self.inner.embed(t)).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(e: &NgramEmbedder, a: &str, b: &str) -> f32 {
        cosine(&e.embed(a), &e.embed(b))
    }

    #[test]
    fn vectors_are_unit_length_deterministic_and_sized() {
        let e = NgramEmbedder::new();
        let v = e.embed("Grows tomatoes and basil on the balcony");
        assert_eq!(v.len(), e.dimension());
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        assert_eq!(
            v,
            NgramEmbedder::new().embed("Grows tomatoes and basil on the balcony")
        );
        // Case, accents and spelling variants go through the normaliser.
        assert_eq!(e.embed("GARCÍA"), e.embed("garcia"));
        assert!(is_zero(&e.embed("  ... !!")));
        assert_eq!(NgramEmbedder::with_dimension(0).dimension(), 1);
        assert_ne!(
            NgramEmbedder::with_dimension(64).model_id(),
            NgramEmbedder::with_dimension(128).model_id()
        );
    }

    #[test]
    fn fixed_hash_gives_fixed_features() {
        // FNV-1a reference values: the vectors must not depend on the
        // process (std's RandomState would).
        assert_eq!(fnv1a(b'a', b""), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b'f', b"oobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn plurals_typos_and_unsegmented_text_stay_close() {
        let e = NgramEmbedder::new();
        let unrelated = sim(&e, "tomatoes", "passport renewal");
        assert!(sim(&e, "tomato", "tomatoes") > 0.4, "plural");
        assert!(sim(&e, "levothyroxin", "levothyroxine") > 0.6, "typo");
        assert!(sim(&e, "allergy", "allergic") > 0.2, "derivation");
        assert!(unrelated.abs() < 0.2, "{unrelated}");
        // Chinese: the words of a query without spaces inside a sentence.
        let zh = sim(&e, "妹妹的名字", "我妹妹叫林小雨");
        let zh_other = sim(&e, "妹妹的名字", "每天早上喝咖啡");
        assert!(zh > zh_other + 0.2, "{zh} vs {zh_other}");
        // Devanagari inflection shares the stem's n-grams.
        assert!(sim(&e, "कुत्ते", "कुत्ता") > 0.3);
    }

    #[test]
    fn cosine_handles_zero_vectors() {
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        assert!((cosine(&[1.0, 1.0], &[2.0, 2.0]) - 1.0).abs() < 1e-6);
        assert_eq!(to_blob(&[1.0]), 1.0f32.to_le_bytes().to_vec());
    }
}
