//! Not a check: writes what the fusion of lexical and vector rankings was
//! tuned on (`docs/retrieval.md`, "Fusion"). For every question of every
//! set: the lexical engine's top 50 (key, bm25 score) and each embedder's
//! cosine similarity with every memory of the namespace.
//!
//! `cargo test --release --features minilm,e5 --test fusion_tuning -- --ignored`
//! writes `target/fusion_tuning.json` (or `$MNEMO_FUSION_DUMP`), which
//! `scripts/tune_fusion.py` reads.

#[cfg(any(feature = "minilm", feature = "e5"))]
mod common;
#[path = "common/recall.rs"]
mod recall;

use std::collections::HashMap;
use std::sync::Arc;

use mnemo::{Config, Embedder, Memory, NgramEmbedder, Result};
use recall::Set;
use serde_json::{json, Value};

/// The text an embedder reads of a memory: what the engine embeds (key,
/// category, value on three lines), or (names ending in `-value`) the value
/// alone, to compare.
fn passage(name: &str, m: &recall::Mem) -> String {
    if name.ends_with("-value") {
        m.value.clone()
    } else {
        format!("{}\n{}\n{}", m.key, m.category, m.value)
    }
}

fn embedders() -> Vec<(&'static str, Arc<dyn Embedder>)> {
    #[allow(unused_mut)]
    let mut out: Vec<(&'static str, Arc<dyn Embedder>)> =
        vec![("ngram", Arc::new(NgramEmbedder::new()))];
    #[cfg(feature = "minilm")]
    out.push(("minilm", common::minilm()));
    #[cfg(feature = "e5")]
    {
        out.push(("e5", common::e5()));
        out.push(("e5-value", common::e5()));
    }
    out
}

fn dump(set: &Set, embedders: &[(&'static str, Arc<dyn Embedder>)]) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let config = Config::new(dir.path().join("tuning.db"));
    let lexical: Vec<Vec<(String, f64)>> = actix::System::new().block_on(async {
        let memory = Memory::open(config)?;
        recall::save_and_index(&memory, &set.memories).await?;
        let out = set
            .probes
            .iter()
            .map(|p| {
                Ok(memory
                    .search(&p.namespace, &p.text, None, 50)?
                    .into_iter()
                    .map(|h| (h.record.key, h.score))
                    .collect())
            })
            .collect::<Result<Vec<_>>>()?;
        memory.shutdown().await?;
        Ok::<_, mnemo::Error>(out)
    })?;
    let mut sims: HashMap<&str, Vec<Value>> = HashMap::new();
    for (name, e) in embedders {
        let texts: Vec<String> = set.memories.iter().map(|m| passage(name, m)).collect();
        let vectors = e.embed_batch(&texts.iter().map(String::as_str).collect::<Vec<_>>());
        let per_probe = set
            .probes
            .iter()
            .map(|p| {
                let q = e.embed_query(&p.text);
                let s: serde_json::Map<String, Value> = set
                    .memories
                    .iter()
                    .zip(&vectors)
                    .filter(|(m, _)| m.namespace == p.namespace)
                    .map(|(m, v)| (m.key.clone(), json!(mnemo::embed::cosine(&q, v))))
                    .collect();
                Value::Object(s)
            })
            .collect();
        sims.insert(name, per_probe);
    }
    let probes: Vec<Value> = set
        .probes
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut v = json!({
                "namespace": p.namespace,
                "group": p.group,
                "text": p.text,
                "expected": p.expected,
                "lexical": lexical[i],
            });
            for (name, _) in embedders {
                v[*name] = sims[name][i].clone();
            }
            v
        })
        .collect();
    let values: serde_json::Map<String, Value> = set
        .memories
        .iter()
        .map(|m| (format!("{}\u{1}{}", m.namespace, m.key), json!(m.value)))
        .collect();
    Ok(json!({ "set": set.name, "probes": probes, "values": values }))
}

#[test]
#[ignore = "writes the fusion tuning data; run by hand"]
fn write_fusion_tuning_data() -> Result<()> {
    let embedders = embedders();
    let mut sets: Vec<Set> = Vec::new();
    sets.extend(recall::retrieval_sets());
    sets.extend(recall::conversation_sets());
    sets.push(recall::crosslingual_set());
    let out: Vec<Value> = sets
        .iter()
        .map(|s| dump(s, &embedders))
        .collect::<Result<_>>()?;
    let path = std::env::var_os("MNEMO_FUSION_DUMP").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fusion_tuning.json"),
        std::path::PathBuf::from,
    );
    std::fs::write(&path, serde_json::to_string(&out).expect("json"))?;
    println!("wrote {}", path.display());
    Ok(())
}
