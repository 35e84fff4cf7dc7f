//! The e5 embedder (cargo feature `e5`): multilingual-e5-small's vectors
//! as an independent implementation computes them, queries and passages
//! told apart, safe from several threads, and hybrid search with it finds an
//! Urdu, Hindi or Chinese memory from an English query.
//!
//! Needs the model: `scripts/fetch-e5.sh`, then
//! `cargo test --features e5 --test e5`.
#![cfg(feature = "e5")]

mod common;

use std::sync::Arc;

use mnemo::{Config, E5Embedder, Embedder, Error, Memory, Retrieval, SaveRequest};
use serde_json::Value;

const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/e5_reference.json");

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    mnemo::embed::cosine(a, b)
}

/// Every reference text (English, Urdu, Hindi, Chinese, Roman Urdu,
/// punctuation and full-width letters, a 960-token text read in two
/// windows) embeds, as a query or a passage as the reference did, to the
/// vector `scripts/e5_reference.py` computed: NumPy in float64, its own
/// tokenizer (the `tokenizers` Unigram model), where the engine runs int8
/// activations. Their token counts agree too.
#[test]
fn vectors_match_the_independent_reference() {
    let model = common::e5();
    let data: Value =
        serde_json::from_str(&std::fs::read_to_string(REFERENCE).expect("reference file"))
            .expect("reference json");
    let texts = data["texts"].as_array().expect("texts");
    assert!(texts.len() >= 10);
    for case in texts {
        let text = case["text"].as_str().expect("text");
        let query = case["kind"].as_str() == Some("query");
        let want: Vec<f32> = case["vector"]
            .as_array()
            .expect("vector")
            .iter()
            .map(|x| x.as_f64().expect("number") as f32)
            .collect();
        let tokens = case["tokens"].as_array().expect("tokens").len();
        assert_eq!(model.token_count(text, query), tokens, "{text:.40}");
        let got = model.try_embed(&[text], query).expect("embed").remove(0);
        assert_eq!(got.len(), 384);
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let c = cosine(&got, &want);
        assert!(c > 0.9995, "{text:.40}: cosine {c}");
        assert!(worst < 0.005, "{text:.40}: max difference {worst}");
    }
}

/// The trait's entry points: memories are passages, a search's text is a
/// query (E5's two prefixes give different vectors); a batch gives what one
/// at a time gives; text with nothing to read is the zero vector; a letter
/// typed with a separate combining mark embeds like the composed letter.
#[test]
fn passages_queries_batches_and_edge_texts() {
    let model = common::e5();
    let text = "میری بہن لاہور میں ڈاکٹر ہے";
    let passage = model.embed(text);
    let query = model.embed_query(text);
    assert!(cosine(&passage, &query) < 0.999, "the prefixes differ");
    assert_eq!(model.try_embed(&[text], false).unwrap()[0], passage);
    assert_eq!(model.try_embed(&[text], true).unwrap()[0], query);
    let texts = ["I drink tea", text, "", "我妹妹是护士", "?!"];
    let batch = model.embed_batch(&texts);
    for (t, v) in texts.iter().zip(&batch) {
        assert_eq!(v, &model.embed(t), "{t}");
    }
    assert!(batch[2].iter().all(|&x| x == 0.0));
    assert!(batch[4].iter().all(|&x| x == 0.0));
    // `ۂ` typed as `ہ` + hamza above (U+0654).
    assert_eq!(
        model.embed("بچۂ"),
        model.embed("بچہ\u{0654}"),
        "composed before the engine reads it"
    );
    assert!(model.model_id().starts_with("multilingual-e5-small-q4-"));
    assert_eq!(model.dimension(), 384);
}

/// One model serves the indexer and searching threads at once: the engine
/// keeps nothing between calls, so the vectors are the same as alone.
#[test]
fn one_model_embeds_from_several_threads() {
    let model = common::e5();
    let texts = [
        "My sister works as a doctor in Lahore",
        "मेरी माँ को मधुमेह है",
        "我每天早上喝咖啡",
        "kal office mein meeting thi",
    ];
    let alone: Vec<Vec<f32>> = texts.iter().map(|t| model.embed(t)).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let model = &model;
                let texts = &texts;
                s.spawn(move || {
                    (0..5)
                        .map(|round| model.embed(texts[(i + round) % texts.len()]))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            for (round, v) in h.join().expect("thread").into_iter().enumerate() {
                assert_eq!(v, alone[(i + round) % texts.len()]);
            }
        }
    });
}

/// The engine trusts the file's layout: a truncated or altered copy of the
/// weights is refused before the engine reads it.
#[test]
fn a_damaged_weights_file_is_refused() {
    let source = common::e5_dir().join(mnemo::e5::WEIGHTS_FILE);
    let weights = std::fs::read(&source).expect("the fetched weights");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(mnemo::e5::WEIGHTS_FILE);
    let mut damaged = weights.clone();
    damaged[weights.len() / 2] ^= 0x40;
    for bytes in [&weights[..weights.len() / 3], &damaged[..]] {
        std::fs::write(&copy, bytes).unwrap();
        match E5Embedder::from_dir(dir.path()) {
            Err(Error::Model { reason, .. }) => {
                assert!(reason.contains("not the pinned weights"), "{reason}");
                assert!(reason.contains("scripts/fetch-e5.sh"), "{reason}");
            }
            other => panic!("expected Error::Model, got {other:?}"),
        }
    }
    std::fs::write(&copy, &weights).unwrap();
    assert!(E5Embedder::from_dir(dir.path()).is_ok());
}

#[test]
fn a_missing_model_is_a_typed_error_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    match E5Embedder::from_dir(dir.path()) {
        Err(Error::Model { path, reason }) => {
            assert_eq!(path, dir.path());
            assert!(reason.contains("scripts/fetch-e5.sh"), "{reason}");
        }
        other => panic!("expected Error::Model, got {other:?}"),
    }
}

/// Through the engine: an English query finds the Urdu, Hindi and Chinese
/// memories that say what it asks, with no word in common (opaque keys),
/// pending (embedded at query time) and indexed (stored vectors), and after
/// a reopen.
#[test]
fn hybrid_search_with_e5_crosses_languages() -> mnemo::Result<()> {
    let db = common::temp_db();
    let model: Arc<dyn Embedder> = common::e5();
    let config = Config {
        retrieval: Retrieval::Hybrid,
        ..common::config(&db)
    };
    let memories = [
        ("m1", "میری بہن عائشہ لاہور کے ایک ہسپتال میں ڈاکٹر ہے"),
        ("m2", "مجھے مونگ پھلی سے شدید الرجی ہے"),
        ("m3", "मेरा कुत्ता शेरू हर सुबह पार्क में दौड़ता है"),
        ("m4", "我每周六下午去游泳"),
        ("m5", "میں ہر روز صبح چائے پیتا ہوں"),
    ];
    let queries = [
        ("What does my sister do for work?", "m1"),
        ("food allergies", "m2"),
        ("my dog", "m3"),
        ("When do I go swimming?", "m4"),
    ];
    actix::System::new().block_on(async {
        let memory = Memory::open_with_embedder(config.clone(), model.clone())?;
        let mut receipts = Vec::new();
        for (key, value) in memories {
            receipts.push(memory.save(SaveRequest::new("u1", "fact", key, value))?);
        }
        for (query, key) in queries {
            let hits = memory.search("u1", query, None, 1)?;
            assert_eq!(hits[0].record.key, key, "pending: {query}");
            assert!(hits[0].fresh);
        }
        memory.flush();
        for r in &receipts {
            r.indexed().await?;
        }
        for (query, key) in queries {
            let hits = memory.search("u1", query, None, 1)?;
            assert_eq!(hits[0].record.key, key, "indexed: {query}");
            assert!(!hits[0].fresh);
        }
        memory.shutdown().await
    })?;
    actix::System::new().block_on(async {
        let memory = Memory::open_with_embedder(config, model)?;
        let hits = memory.search("u1", "sister's job", None, 1)?;
        assert_eq!(hits[0].record.key, "m1");
        memory.shutdown().await
    })
}
