//! English questions about Urdu, Hindi and Chinese memories
//! (`tests/data/crosslingual.json`, written for this project): the keys are
//! opaque, so only meaning links a question to its memory. Lexical search
//! and the n-gram hybrid can only meet a question's English words in a
//! memory's English category; with `--features e5` the multilingual model
//! answers (`docs/retrieval.md`, "Cross-lingual").
//!
//! `cargo test --features e5 --test crosslingual -- --nocapture`

#[cfg(any(feature = "minilm", feature = "e5"))]
mod common;
#[path = "common/recall.rs"]
mod recall;

use std::sync::Arc;

use mnemo::{Config, Embedder, Memory, Result, Retrieval};
use recall::Set;

fn results(set: &Set, embedder: Option<Arc<dyn Embedder>>) -> Result<Vec<Vec<String>>> {
    let dir = tempfile::tempdir()?;
    let config = Config {
        retrieval: if embedder.is_some() {
            Retrieval::Hybrid
        } else {
            Retrieval::Lexical
        },
        ..Config::new(dir.path().join("crosslingual.db"))
    };
    actix::System::new().block_on(async {
        let memory = match embedder {
            Some(e) => Memory::open_with_embedder(config, e)?,
            None => Memory::open(config)?,
        };
        recall::save_and_index(&memory, &set.memories).await?;
        let out = recall::search_all(&memory, &set.probes)?;
        memory.shutdown().await?;
        Ok(out)
    })
}

#[test]
fn english_questions_about_memories_in_other_languages() -> Result<()> {
    let set = recall::crosslingual_set();
    assert!(
        set.probes.len() >= 40,
        "at least 40 cross-lingual questions"
    );
    let lexical = results(&set, None)?;
    let ngram = results(&set, Some(Arc::new(mnemo::NgramEmbedder::new())))?;
    // More modes join with the `minilm` and `e5` features.
    #[allow(unused_mut, clippy::useless_vec)]
    let mut modes = vec![("lexical", lexical), ("hybrid n-gram", ngram)];
    #[cfg(feature = "minilm")]
    modes.push(("MiniLM", results(&set, Some(common::minilm()))?));
    #[cfg(feature = "e5")]
    modes.push(("e5", results(&set, Some(common::e5()))?));
    let scored: Vec<_> = modes
        .iter()
        .map(|(n, r)| (*n, recall::score(&set.probes, r)))
        .collect();
    let columns: Vec<_> = scored.iter().map(|(n, s)| (*n, s)).collect();
    recall::table(
        &format!(
            "cross-lingual: {} memories, {} English questions; recall@1 / recall@5, %",
            set.memories.len(),
            set.probes.len()
        ),
        &["ur", "hi", "zh"],
        &columns,
    );
    for (name, r) in &modes[1..] {
        recall::misses(&format!("cross-lingual / {name}"), &set.probes, r, 20);
    }
    let all = |mode: &str| {
        scored
            .iter()
            .find(|(n, _)| *n == mode)
            .map(|(_, s)| s["all"])
            .expect("mode")
    };
    // Every hybrid mode at or above lexical alone.
    for (mode, _) in &scored[1..] {
        let (h, l) = (all(mode), all("lexical"));
        assert!(
            h.at1 >= l.at1 && h.at5 >= l.at5,
            "{mode}: {h:?} below {l:?}"
        );
    }
    #[cfg(feature = "e5")]
    {
        // Measured 38 of 45 at rank 1 and 44 in the top 5
        // (docs/retrieval.md): one question of slack.
        let e5 = all("e5");
        assert!(e5.at1 >= 37 && e5.at5 >= 43, "{e5:?}");
    }
    Ok(())
}
