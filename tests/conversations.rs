//! Recall on long multi-session conversations (`tests/data/conversations.json`,
//! written for this project; see `docs/retrieval.md`, "Conversations").
//!
//! Two protocols, as an agent would store a conversation:
//! - **turns**: every turn is a memory (`turn`, its id, `Speaker: text`),
//!   and a question is answered if an evidence turn is in the top k;
//! - **facts**: every distilled fact is a memory (`fact`, its id, its text),
//!   and a question is answered if a fact covering it is in the top k.
//!
//! Each question is asked as written (a natural-language question) through
//! `Memory::search`, top 5, with every built-in mode, beside plain SQLite
//! FTS5 and the textbook BM25 reference (`common/recall.rs`).
//!
//! `cargo test --test conversations -- --nocapture` prints the tables;
//! `--features minilm,e5` adds the neural columns (after the fetch scripts).

#[cfg(any(feature = "minilm", feature = "e5"))]
mod common;
#[path = "common/recall.rs"]
mod recall;

use std::collections::BTreeMap;
use std::sync::Arc;

use mnemo::{Config, Embedder, Memory, Result, Retrieval};
use recall::{Recall, Set};

const LANGS: [&str; 5] = ["en", "ur", "hi", "zh", "ur-roman"];

/// Saves a set into a fresh engine (`embedder` for hybrid modes) and asks
/// every question.
fn engine_results(
    set: &Set,
    retrieval: Retrieval,
    embedder: Option<Arc<dyn Embedder>>,
) -> Result<Vec<Vec<String>>> {
    let dir = tempfile::tempdir()?;
    let config = Config {
        retrieval,
        ..Config::new(dir.path().join("conversations.db"))
    };
    actix::System::new().block_on(async {
        let memory = match embedder {
            Some(e) => Memory::open_with_embedder(config, e)?,
            None => Memory::open(config)?,
        };
        recall::save_and_index(&memory, &set.memories).await?;
        let results = recall::search_all(&memory, &set.probes)?;
        memory.shutdown().await?;
        Ok(results)
    })
}

/// Every mode's recall on one set, printed as a table; returned by mode.
fn measure(set: &Set) -> Result<BTreeMap<&'static str, BTreeMap<String, Recall>>> {
    #[allow(unused_mut)]
    let mut modes: Vec<(&'static str, Vec<Vec<String>>)> = vec![
        (
            "plain FTS5",
            recall::plain_fts5(&set.memories, &set.probes).expect("fts5"),
        ),
        (
            "BM25 reference",
            recall::bm25_reference(&set.memories, &set.probes),
        ),
        ("lexical", engine_results(set, Retrieval::Lexical, None)?),
        (
            "hybrid n-gram",
            engine_results(set, Retrieval::Hybrid, None)?,
        ),
    ];
    #[cfg(feature = "minilm")]
    modes.push((
        "MiniLM",
        engine_results(set, Retrieval::Hybrid, Some(common::minilm()))?,
    ));
    #[cfg(feature = "e5")]
    modes.push((
        "e5",
        engine_results(set, Retrieval::Hybrid, Some(common::e5()))?,
    ));
    let scored: Vec<(&'static str, BTreeMap<String, Recall>)> = modes
        .iter()
        .map(|(name, results)| (*name, recall::score(&set.probes, results)))
        .collect();
    let columns: Vec<(&str, &BTreeMap<String, Recall>)> =
        scored.iter().map(|(n, s)| (*n, s)).collect();
    recall::table(
        &format!(
            "conversations, {} as memories: {} memories, {} questions; recall@1 / recall@5, %",
            set.name,
            set.memories.len(),
            set.probes.len()
        ),
        &LANGS,
        &columns,
    );
    for (name, results) in &modes[1..] {
        recall::misses(
            &format!("{} / {name}", set.name),
            &set.probes,
            results,
            std::env::var("MISSES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        );
    }
    Ok(scored.into_iter().collect())
}

#[test]
fn recall_on_conversations() -> Result<()> {
    let sets = recall::conversation_sets();
    assert!(sets[0].memories.len() >= 300, "several hundred turns");
    for set in &sets {
        let by_mode = measure(set)?;
        let all = |mode: &str| by_mode[mode]["all"];
        // Fusion never does worse than lexical alone, at @1 or @5.
        for mode in by_mode
            .keys()
            .filter(|m| !matches!(**m, "plain FTS5" | "BM25 reference" | "lexical"))
        {
            let (h, l) = (all(mode), all("lexical"));
            assert!(
                h.at1 >= l.at1 && h.at5 >= l.at5,
                "{}: {mode} {h:?} below lexical {l:?}",
                set.name
            );
        }
    }
    Ok(())
}
