//! The MiniLM embedder (cargo feature `minilm`): the vectors are
//! sentence-transformers' own, it runs in the indexer, and hybrid search
//! with it finds what only meaning connects.
//!
//! Needs the model: `scripts/fetch-minilm.sh`, then
//! `cargo test --features minilm --test minilm`.
#![cfg(feature = "minilm")]

mod common;

use std::sync::Arc;

use mnemo::{Config, Embedder, Error, Memory, MiniLmEmbedder, Retrieval, SaveRequest};
use serde_json::Value;

const REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/minilm_reference.json"
);

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    mnemo::embed::cosine(a, b)
}

/// Every reference text (English, Urdu, Chinese, a 400-word text cut at 256
/// tokens) embeds to sentence-transformers' vector (from
/// `scripts/minilm_reference.py`) within float noise, one by one and in one
/// batch of texts of different lengths (padding must not leak in).
#[test]
fn vectors_match_sentence_transformers() {
    let model = common::minilm();
    let data: Value =
        serde_json::from_str(&std::fs::read_to_string(REFERENCE).expect("reference file"))
            .expect("reference json");
    let cases = data["cases"].as_array().expect("cases");
    assert!(cases.len() >= 8);
    let texts: Vec<&str> = cases
        .iter()
        .map(|c| c["text"].as_str().expect("text"))
        .collect();
    let expected: Vec<Vec<f32>> = cases
        .iter()
        .map(|c| {
            c["vector"]
                .as_array()
                .expect("vector")
                .iter()
                .map(|x| x.as_f64().expect("number") as f32)
                .collect()
        })
        .collect();
    let batch = model.try_embed_batch(&texts).expect("embed");
    for ((text, want), got_batched) in texts.iter().zip(&expected).zip(&batch) {
        let got = model.embed(text);
        assert_eq!(got.len(), 384);
        assert_eq!(model.dimension(), 384);
        for got in [&got, got_batched] {
            let worst = got
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 2e-4, "{text:?}: a component is off by {worst}");
            assert!(cosine(got, want) > 0.9999, "{text:?}");
        }
    }
}

#[test]
fn meaning_not_letters() {
    let m = common::minilm();
    let husband = m.embed("husband");
    let married = m.embed("married to Daniel");
    let tomatoes = m.embed("Grows tomatoes and basil on the balcony");
    assert!(
        cosine(&husband, &married) > cosine(&husband, &tomatoes) + 0.1,
        "{} vs {}",
        cosine(&husband, &married),
        cosine(&husband, &tomatoes)
    );
    // English only: other scripts' queries go to the lexical side alone.
    assert!(m.supports("who is her husband"));
    assert!(m.supports("Ayesha's birthday in März"));
    assert!(!m.supports("بلی کا نام"));
    assert!(!m.supports("पापा क्या करते हैं"));
    assert!(!m.supports("睡眠问题"));
    assert!(!m.supports("2019 !!"));
    // Nothing to embed: the zero vector, which matches nothing.
    assert!(m.embed("   ").iter().all(|x| *x == 0.0));
    assert!(m.model_id().starts_with("all-minilm-l6-v2-"));
}

#[test]
fn a_missing_model_is_a_typed_error_naming_the_fix() {
    let dir = tempfile::tempdir().expect("temp dir");
    match MiniLmEmbedder::from_dir(dir.path()) {
        Err(Error::Model { path, reason }) => {
            assert_eq!(path, dir.path());
            assert!(reason.contains("config.json is missing"), "{reason}");
            assert!(reason.contains("scripts/fetch-minilm.sh"), "{reason}");
        }
        other => panic!("expected Error::Model, got {other:?}"),
    }
    // A malformed file is named too.
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(common::minilm_dir().join(f), dir.path().join(f)).expect("copy");
    }
    std::fs::write(dir.path().join("model.safetensors"), b"not weights").expect("write");
    match MiniLmEmbedder::from_dir(dir.path()) {
        Err(Error::Model { reason, .. }) => {
            assert!(reason.contains("model.safetensors"), "{reason}")
        }
        other => panic!("expected Error::Model, got {other:?}"),
    }
}

/// Hybrid search with MiniLM through the whole engine: the vectors are
/// written by the indexer (not `save`), a paraphrase with no shared word
/// finds its memory once indexed and while pending, and a reopened engine
/// uses the stored vectors.
#[test]
fn hybrid_search_with_minilm_finds_paraphrases() -> mnemo::Result<()> {
    let db = common::temp_db();
    let model: Arc<dyn Embedder> = common::minilm();
    let config = Config {
        retrieval: Retrieval::Hybrid,
        ..common::config(&db)
    };
    let memories = [
        ("family", "spouse", "Married to Daniel since 2019"),
        (
            "garden",
            "balcony",
            "Grows tomatoes and basil on the balcony",
        ),
        ("work", "job", "Works as a nurse at the city hospital"),
        ("pets", "dog", "Has a golden retriever called Biscuit"),
    ];
    actix::System::new().block_on(async {
        let memory = Memory::open_with_embedder(config.clone(), model.clone())?;
        let mut receipts = Vec::new();
        for (category, key, value) in memories {
            receipts.push(memory.save(SaveRequest::new("u1", category, key, value))?);
        }
        // Pending: embedded at query time.
        let hits = memory.search("u1", "who is her husband", None, 1)?;
        assert_eq!(hits[0].record.key, "spouse");
        assert!(hits[0].fresh);
        memory.flush();
        for r in &receipts {
            r.indexed().await?;
        }
        for (query, key) in [
            ("who is her husband", "spouse"),
            ("what does she do for a living", "job"),
            ("vegetable garden", "balcony"),
            ("puppy", "dog"),
        ] {
            let hits = memory.search("u1", query, None, 1)?;
            assert_eq!(hits[0].record.key, key, "{query}");
            assert!(!hits[0].fresh);
        }
        memory.shutdown().await?;
        Ok::<_, Error>(())
    })?;
    let table_rows = common::query_i64(
        &config.index_path().unwrap(),
        "SELECT count(*) FROM vector_models WHERE model_id LIKE 'all-minilm-l6-v2-%' AND dimension = 384",
    );
    assert_eq!(table_rows, 1);
    actix::System::new().block_on(async {
        let memory = Memory::open_with_embedder(config, model)?;
        let hits = memory.search("u1", "her occupation", None, 1)?;
        assert_eq!(hits[0].record.key, "job");
        memory.shutdown().await
    })
}
