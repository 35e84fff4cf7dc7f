//! Retrieval quality on the multilingual test set `tests/data/retrieval.json`
//! (see `docs/retrieval.md`).
//!
//! Every memory is saved through `mnemo::Memory`, flushed and indexed; every
//! query runs through `Memory::search` and scores recall@1 and recall@5,
//! overall and per language. Beside it: the same texts in a plain FTS5
//! `unicode61` table queried with the raw words ("before"), and a second
//! engine that never flushes, so the same queries are answered by the
//! in-memory matcher over pending saves ("pending").
//!
//! A third and fourth engine run with `Retrieval::Hybrid` (FTS5 bm25 and
//! the built-in n-gram embedder, fused), indexed and
//! pending, and their figures are printed beside the lexical ones.
//!
//! `cargo test --test retrieval -- --nocapture` prints the tables.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[cfg(any(feature = "minilm", feature = "e5"))]
mod common;
#[path = "common/recall.rs"]
mod recall;

use recall::Recall;

use mnemo::{Config, Memory, Result, Retrieval, SaveRequest, SearchHit};
use serde_json::Value;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/retrieval.json");
const LANGS: [&str; 5] = ["en", "ur", "hi", "zh", "mixed"];

/// Minimum recall (in %) of `Memory::search` over the index: (language,
/// recall@1, recall@5). Each is one query below the figure measured when the
/// set was written (docs/retrieval.md): a change that loses two queries in
/// one language, or overall, fails here. (Two English "hard" typo queries
/// were added since, for the hybrid measurement; lexical now measures en
/// 88.0 / 88.0 (22/25), all 92.6 (113/122) / 96.7 (118/122), pending all
/// 86.9 (106/122) / 91.0 (111/122), still above these bounds. Since the
/// stemmer, the function words of four languages and Chinese characters
/// (issue 12) it measures all 95.1 (116/122) / 97.5 (119/122), en 96.0 /
/// 96.0, ur 91.3 / 95.7, hi 85.7 / 95.2, zh 100 / 100, mixed 100 / 100;
/// pending 95.1 / 97.5.) The run is deterministic (see `save_all`), so
/// these never flake.
const MIN_RECALL: [(&str, f64, f64); 6] = [
    ("all", 92.5, 96.6),   // measured 93.3 (112/120), 97.5 (117/120)
    ("en", 86.9, 86.9),    // 91.3 (21/23), 91.3 (21/23)
    ("ur", 86.9, 95.6),    // 91.3 (21/23), 100 (23/23)
    ("hi", 80.9, 95.2),    // 85.7 (18/21), 100 (21/21)
    ("zh", 91.3, 91.3),    // 95.7 (22/23), 95.7 (22/23)
    ("mixed", 96.6, 96.6), // 100 (30/30), 100 (30/30)
];

/// The same for the in-memory matcher over pending saves, overall: it
/// selects the same memories as the index but ranks them by the number of
/// query phrases matched (no bm25), so its order is worse.
const MIN_PENDING_RECALL: (f64, f64) = (90.1, 94.2); // measured 91.0 (111/122), 95.1 (116/122)

/// Minimum recall (in %) of hybrid retrieval (`Retrieval::Hybrid`: bm25 and
/// the built-in n-gram embedder, fused), over the index: (language,
/// recall@1, recall@5), each one query below the figure measured
/// (docs/retrieval.md, "Lexical vs hybrid"). Since issue 12 (score fusion
/// instead of RRF, and the lexical changes above) it measures all 95.1 /
/// 99.2, en 92.0 / 100, hi 90.5 / 100, zh 100 / 100; pending 93.4 / 99.2.
const MIN_HYBRID_RECALL: [(&str, f64, f64); 6] = [
    ("all", 93.4, 99.1),   // measured 94.3 (115/122), 100 (122/122)
    ("en", 87.9, 95.9),    // 92.0 (23/25), 100 (25/25)
    ("ur", 86.9, 95.6),    // 91.3 (21/23), 100 (23/23)
    ("hi", 80.9, 95.2),    // 85.7 (18/21), 100 (21/21)
    ("zh", 95.6, 95.6),    // 100 (23/23), 100 (23/23)
    ("mixed", 96.6, 96.6), // 100 (30/30), 100 (30/30)
];

/// The same for hybrid retrieval over pending saves (embedded at query
/// time), overall.
const MIN_HYBRID_PENDING_RECALL: (f64, f64) = (91.8, 97.5); // measured 92.6 (113/122), 98.4 (120/122)

struct Mem {
    namespace: String,
    category: String,
    key: String,
    value: String,
}

#[derive(Clone)]
struct Query {
    namespace: String,
    lang: String,
    text: String,
    expected: Vec<String>,
}

fn field(v: &Value, name: &str) -> String {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} missing in {v}"))
        .to_owned()
}

fn query(q: &Value) -> Query {
    Query {
        namespace: field(q, "namespace"),
        lang: field(q, "lang"),
        text: field(q, "text"),
        expected: q["expected"]
            .as_array()
            .expect("expected")
            .iter()
            .map(|k| k.as_str().expect("expected key").to_owned())
            .collect(),
    }
}

fn load() -> (Vec<Mem>, Vec<Query>) {
    let text = std::fs::read_to_string(DATA).expect("read retrieval.json");
    let data: Value = serde_json::from_str(&text).expect("parse retrieval.json");
    let memories: Vec<Mem> = data["memories"]
        .as_array()
        .expect("memories")
        .iter()
        .map(|m| Mem {
            namespace: field(m, "namespace"),
            category: field(m, "category"),
            key: field(m, "key"),
            value: field(m, "value"),
        })
        .collect();
    let queries: Vec<Query> = data["queries"]
        .as_array()
        .expect("queries")
        .iter()
        .map(query)
        .collect();

    // The set is what it claims to be.
    let mut keys: BTreeSet<(&str, &str)> = BTreeSet::new();
    for m in &memories {
        assert!(
            keys.insert((&m.namespace, &m.key)),
            "duplicate key {} in {}",
            m.key,
            m.namespace
        );
    }
    for q in &queries {
        assert!(LANGS.contains(&q.lang.as_str()), "language {}", q.lang);
        assert!(!q.expected.is_empty(), "{}", q.text);
        for k in &q.expected {
            assert!(keys.contains(&(q.namespace.as_str(), k.as_str())), "{k}");
        }
    }
    assert!(memories.len() >= 150 && queries.len() >= 60);
    for lang in LANGS {
        assert!(queries.iter().filter(|q| q.lang == lang).count() >= 12);
    }
    (memories, queries)
}

/// The 0-based rank of the first expected key in `got`, if any.
fn rank(q: &Query, got: &[String]) -> Option<usize> {
    got.iter().position(|k| q.expected.contains(k))
}

/// Fails unless `r` is at least `min` (recall@1, recall@5, in %).
fn check(name: &str, r: Recall, (min1, min5): (f64, f64)) {
    assert!(
        r.r1() >= min1 && r.r5() >= min5,
        "{name}: recall@1 {:.1}% (min {min1}), recall@5 {:.1}% (min {min5})",
        r.r1(),
        r.r5()
    );
}

/// [`check`] for every (row, recall@1, recall@5) floor of `mins`.
fn check_rows(name: &str, scores: &BTreeMap<String, Recall>, mins: &[(&str, f64, f64)]) {
    for &(row, min1, min5) in mins {
        check(&format!("{name} {row}"), scores[row], (min1, min5));
    }
}

/// Recall per language and overall (`common/recall.rs`).
fn score(queries: &[Query], results: &[Vec<String>]) -> BTreeMap<String, Recall> {
    let probes: Vec<recall::Probe> = queries.iter().map(probe).collect();
    recall::score(&probes, results)
}

/// A query as the shared recall code takes it.
fn probe(q: &Query) -> recall::Probe {
    recall::Probe {
        namespace: q.namespace.clone(),
        text: q.text.clone(),
        expected: q.expected.clone(),
        group: q.lang.clone(),
    }
}

fn keys(hits: &[SearchHit]) -> Vec<String> {
    hits.iter().map(|h| h.record.key.clone()).collect()
}

/// "Before": the raw texts in a plain FTS5 table with the default
/// `unicode61` tokenizer, queried with the query's words, each quoted, OR'ed;
/// same bm25 weights as mnemo (`common/recall.rs`).
fn baseline(memories: &[Mem], queries: &[Query]) -> rusqlite::Result<Vec<Vec<String>>> {
    let memories: Vec<recall::Mem> = memories
        .iter()
        .map(|m| recall::Mem {
            namespace: m.namespace.clone(),
            category: m.category.clone(),
            key: m.key.clone(),
            value: m.value.clone(),
        })
        .collect();
    let probes: Vec<recall::Probe> = queries.iter().map(probe).collect();
    recall::plain_fts5(&memories, &probes)
}

/// Saves every memory, each at least 2 ms after the one before: recency is
/// the tie-break of both rankings and timestamps are milliseconds, so this
/// makes every run rank ties the same way (a later line of the file is more
/// recent).
async fn save_all(memory: &Memory, memories: &[Mem]) -> Result<Vec<mnemo::Receipt>> {
    let mut receipts = Vec::with_capacity(memories.len());
    for m in memories {
        receipts.push(memory.save(SaveRequest::new(
            &m.namespace,
            &m.category,
            &m.key,
            &m.value,
        ))?);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(receipts)
}

/// Per query: the keys of the top 5 hits, and the set of every matching key.
type Answers = (Vec<Vec<String>>, Vec<BTreeSet<String>>);

/// Saves everything into a fresh engine opened with `config`, flushes and
/// waits until every save is indexed (`index = true`), or leaves everything
/// pending (`index = false`, `config` must never flush); returns every
/// query's top 5 and all matches.
async fn measure(
    config: Config,
    memories: &[Mem],
    queries: &[Query],
    index: bool,
) -> Result<Answers> {
    measure_with(Memory::open(config)?, memories, queries, index).await
}

/// [`measure`] on an engine already opened (with an embedder of the test's
/// choosing).
async fn measure_with(
    memory: Memory,
    memories: &[Mem],
    queries: &[Query],
    index: bool,
) -> Result<Answers> {
    let receipts = save_all(&memory, memories).await?;
    if index {
        memory.flush();
        for r in &receipts {
            r.indexed().await?;
        }
    }
    let answers = run(&memory, queries, !index)?;
    if !index {
        assert_eq!(memory.stats().batches, 0, "nothing was flushed");
    }
    memory.shutdown().await?;
    Ok(answers)
}

/// Every query against `memory`.
fn run(memory: &Memory, queries: &[Query], fresh: bool) -> Result<Answers> {
    let mut top = Vec::with_capacity(queries.len());
    let mut all = Vec::with_capacity(queries.len());
    for q in queries {
        let hits = memory.search(&q.namespace, &q.text, None, 5)?;
        assert!(
            hits.iter().all(|h| h.fresh == fresh),
            "{:?}: expected every hit from {}",
            q.text,
            if fresh { "pending saves" } else { "the index" }
        );
        top.push(keys(&hits));
        let every = memory.search(&q.namespace, &q.text, None, 1000)?;
        all.push(keys(&every).into_iter().collect());
    }
    Ok((top, all))
}

#[test]
fn recall_before_after_and_pending() -> Result<()> {
    let (memories, queries) = load();
    let dir = tempfile::tempdir()?;

    let (indexed, indexed_sets, pending, pending_sets) = actix::System::new().block_on(async {
        // After: saved, flushed, indexed; searched through the index.
        let memory = Memory::open(Config::new(dir.path().join("indexed.db")))?;
        let receipts = save_all(&memory, &memories).await?;
        memory.flush();
        for r in &receipts {
            r.indexed().await?;
        }
        let (indexed, indexed_sets) = run(&memory, &queries, false)?;
        memory.shutdown().await?;

        // Pending: nothing flushes for an hour; the in-memory matcher answers.
        let config = Config {
            quiet_window: Duration::from_secs(3_600),
            max_wait: Duration::from_secs(3_600),
            ..Config::new(dir.path().join("pending.db"))
        };
        let memory = Memory::open(config)?;
        save_all(&memory, &memories).await?;
        let (pending, pending_sets) = run(&memory, &queries, true)?;
        assert_eq!(memory.stats().batches, 0, "nothing was flushed");
        memory.shutdown().await?;
        Ok::<_, mnemo::Error>((indexed, indexed_sets, pending, pending_sets))
    })?;
    let (hybrid, hybrid_pending) = actix::System::new().block_on(async {
        let config = Config {
            retrieval: Retrieval::Hybrid,
            ..Config::new(dir.path().join("hybrid.db"))
        };
        let (hybrid, _) = measure(config, &memories, &queries, true).await?;
        let config = Config {
            retrieval: Retrieval::Hybrid,
            quiet_window: Duration::from_secs(3_600),
            max_wait: Duration::from_secs(3_600),
            ..Config::new(dir.path().join("hybrid-pending.db"))
        };
        let (pending, _) = measure(config, &memories, &queries, false).await?;
        Ok::<_, mnemo::Error>((hybrid, pending))
    })?;
    let before = baseline(&memories, &queries).expect("baseline");

    let before_r = score(&queries, &before);
    let after_r = score(&queries, &indexed);
    let pending_r = score(&queries, &pending);
    let hybrid_r = score(&queries, &hybrid);
    let hybrid_pending_r = score(&queries, &hybrid_pending);

    println!(
        "\nretrieval: {} memories, {} queries ({DATA})",
        memories.len(),
        queries.len()
    );
    println!("recall@1 / recall@5, %: before = plain FTS5 unicode61 over raw text; after = Memory::search (index); pending = Memory::search (in-memory matcher, nothing flushed)\n");
    println!(
        "| language | queries | before @1 | before @5 | after @1 | after @5 | pending @1 | pending @5 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for lang in LANGS.iter().copied().chain(["all"]) {
        let (b, a, p) = (before_r[lang], after_r[lang], pending_r[lang]);
        println!(
            "| {lang} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            a.n,
            b.r1(),
            b.r5(),
            a.r1(),
            a.r5(),
            p.r1(),
            p.r5()
        );
    }
    println!("\nlexical vs hybrid, recall@1 / recall@5, %: lexical = Memory::search with Retrieval::Lexical (the \"after\" column); hybrid = Retrieval::Hybrid (bm25 + n-gram vectors, fused by normalised scores: search/fusion.rs), index and pending\n");
    println!(
        "| language | queries | lexical @1 | lexical @5 | hybrid @1 | hybrid @5 | hybrid pending @1 | hybrid pending @5 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for lang in LANGS.iter().copied().chain(["all"]) {
        let (a, h, hp) = (after_r[lang], hybrid_r[lang], hybrid_pending_r[lang]);
        println!(
            "| {lang} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            a.n,
            a.r1(),
            a.r5(),
            h.r1(),
            h.r5(),
            hp.r1(),
            hp.r5()
        );
    }
    for (name, results) in [
        ("after", &indexed),
        ("pending", &pending),
        ("hybrid", &hybrid),
    ] {
        println!(
            "\n{name}: queries whose expected memory is not first (rank, or -, and the top keys):"
        );
        for (q, got) in queries.iter().zip(results) {
            let r = rank(q, got);
            if r != Some(0) {
                let r = r.map_or("-".to_owned(), |r| (r + 1).to_string());
                println!(
                    "  [{}] \"{}\" expects {}: rank {r}, got [{}]",
                    q.lang,
                    q.text,
                    q.expected.join(" | "),
                    got.join(", ")
                );
            }
        }
    }

    // The in-memory matcher and FTS5 select the same memories for every query
    // (one normaliser, one set of query rules); only the order may differ.
    for (q, (p, i)) in queries.iter().zip(pending_sets.iter().zip(&indexed_sets)) {
        assert_eq!(p, i, "pending and indexed matches differ for {:?}", q.text);
    }
    println!(
        "\npending vs indexed: same matching memories for all {} queries; recall@5 pending {:.1}% / indexed {:.1}%",
        queries.len(),
        pending_r["all"].r5(),
        after_r["all"].r5()
    );

    check_rows("after", &after_r, &MIN_RECALL);
    check("pending", pending_r["all"], MIN_PENDING_RECALL);
    check_rows("hybrid", &hybrid_r, &MIN_HYBRID_RECALL);
    check(
        "hybrid pending",
        hybrid_pending_r["all"],
        MIN_HYBRID_PENDING_RECALL,
    );
    assert!(before_r["all"].n == queries.len());
    Ok(())
}

/// Minimum recall (in %) of hybrid retrieval with the MiniLM embedder
/// (cargo feature `minilm`), over the index: (language, recall@1,
/// recall@5), each one query below the figure measured (docs/retrieval.md,
/// "MiniLM").
#[cfg(feature = "minilm")]
const MIN_MINILM_RECALL: [(&str, f64, f64); 7] = [
    (PARAPHRASE, 63.6, 95.4), // 68.2 (15/22), 100 (22/22); n-gram 40.9, 81.8; lexical 40.9, 50.0
    ("all", 94.2, 98.3),      // measured 95.1 (116/122), 99.2 (121/122)
    ("en", 95.9, 95.9),       // 100 (25/25), 100 (25/25)
    ("ur", 86.9, 95.6),       // 91.3 (21/23), 100 (23/23)
    ("hi", 80.9, 95.2),       // 85.7 (18/21), 100 (21/21)
    ("zh", 91.3, 91.3),       // 95.7 (22/23), 95.7 (22/23)
    ("mixed", 96.6, 96.6),    // 100 (30/30), 100 (30/30)
];

/// The same for hybrid MiniLM over pending saves, overall.
#[cfg(feature = "minilm")]
const MIN_MINILM_PENDING_RECALL: (f64, f64) = (93.4, 96.7); // measured 94.3 (115/122), 97.5 (119/122)

/// The row of the English paraphrase queries in the MiniLM comparison.
#[cfg(feature = "minilm")]
const PARAPHRASE: &str = "en paraphrase";

/// The set's `paraphrases`: English questions sharing few words with their
/// memory (see its `paraphrases_about`).
#[cfg(feature = "minilm")]
fn load_paraphrases() -> Vec<Query> {
    let text = std::fs::read_to_string(DATA).expect("read retrieval.json");
    let data: Value = serde_json::from_str(&text).expect("parse retrieval.json");
    let out: Vec<Query> = data["paraphrases"]
        .as_array()
        .expect("paraphrases")
        .iter()
        .map(query)
        .collect();
    assert!(out.len() >= 20 && out.iter().all(|q| q.lang == "en"));
    out
}

/// Scores of the main set per language and "all", plus the paraphrases'
/// as the [`PARAPHRASE`] row; `top` holds the answers of both, in order.
#[cfg(feature = "minilm")]
fn split_score(
    queries: &[Query],
    paraphrases: &[Query],
    top: &[Vec<String>],
) -> BTreeMap<String, Recall> {
    let mut out = score(queries, &top[..queries.len()]);
    let p = score(paraphrases, &top[queries.len()..]);
    out.insert(PARAPHRASE.to_owned(), p["all"]);
    out
}

/// Lexical, hybrid with the n-gram embedder and hybrid with MiniLM, side by
/// side (`cargo test --features minilm --test retrieval -- --nocapture`,
/// after `scripts/fetch-minilm.sh`).
#[cfg(feature = "minilm")]
#[test]
fn recall_lexical_ngram_and_minilm() -> Result<()> {
    use std::sync::Arc;
    let (memories, queries) = load();
    let paraphrases = load_paraphrases();
    // One run answers both sets; the main set's rows stay comparable with
    // the tables above, the paraphrases are a row of their own.
    let all_queries: Vec<Query> = queries.iter().chain(&paraphrases).cloned().collect();
    for q in &paraphrases {
        for k in &q.expected {
            assert!(
                memories
                    .iter()
                    .any(|m| m.namespace == q.namespace && &m.key == k),
                "{k}"
            );
        }
    }
    let dir = tempfile::tempdir()?;
    let minilm: Arc<dyn mnemo::Embedder> = common::minilm();
    let columns = actix::System::new().block_on(async {
        let mut columns = Vec::new();
        for (name, retrieval, embedder) in [
            ("lexical", Retrieval::Lexical, None),
            ("hybrid n-gram", Retrieval::Hybrid, None),
            ("hybrid MiniLM", Retrieval::Hybrid, Some(minilm.clone())),
        ] {
            let config = Config {
                retrieval,
                ..Config::new(dir.path().join(format!("{}.db", columns.len())))
            };
            let memory = match embedder {
                Some(e) => Memory::open_with_embedder(config, e)?,
                None => Memory::open(config)?,
            };
            let (top, _) = measure_with(memory, &memories, &all_queries, true).await?;
            columns.push((name, split_score(&queries, &paraphrases, &top), top));
        }
        let config = Config {
            retrieval: Retrieval::Hybrid,
            quiet_window: Duration::from_secs(3_600),
            max_wait: Duration::from_secs(3_600),
            ..Config::new(dir.path().join("minilm-pending.db"))
        };
        let memory = Memory::open_with_embedder(config, minilm.clone())?;
        let (top, _) = measure_with(memory, &memories, &all_queries, false).await?;
        columns.push((
            "hybrid MiniLM pending",
            split_score(&queries, &paraphrases, &top),
            top,
        ));
        Ok::<_, mnemo::Error>(columns)
    })?;

    println!(
        "\nrecall@1 / recall@5, %, index ({} queries of the main set, {} English paraphrases): lexical | hybrid n-gram | hybrid MiniLM | hybrid MiniLM pending\n",
        queries.len(),
        paraphrases.len()
    );
    println!(
        "| language | queries | {} |",
        columns
            .iter()
            .map(|(n, _, _)| format!("{n} @1 | {n} @5"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|---:|{}", "---:|---:|".repeat(columns.len()));
    for lang in LANGS.iter().copied().chain(["all", PARAPHRASE]) {
        let cells: Vec<String> = columns
            .iter()
            .map(|(_, r, _)| format!("{:.1} | {:.1}", r[lang].r1(), r[lang].r5()))
            .collect();
        println!(
            "| {lang} | {} | {} |",
            columns[0].1[lang].n,
            cells.join(" | ")
        );
    }
    let (_, minilm_r, minilm_top) = &columns[2];
    let (_, ngram_r, ngram_top) = &columns[1];
    println!("\nqueries MiniLM ranks differently from n-gram (rank of the expected memory, n-gram -> MiniLM):");
    for ((q, n), m) in all_queries.iter().zip(ngram_top).zip(minilm_top) {
        let (rn, rm) = (rank(q, n), rank(q, m));
        if rn != rm {
            let show = |r: Option<usize>| r.map_or("-".to_owned(), |r| (r + 1).to_string());
            println!(
                "  [{}] \"{}\" expects {}: {} -> {}, got [{}]",
                q.lang,
                q.text,
                q.expected.join(" | "),
                show(rn),
                show(rm),
                m.join(", ")
            );
        }
    }
    // MiniLM never loses to n-gram hybrid in English, the language it knows,
    // and finds more of the paraphrases at rank 1.
    assert!(minilm_r["en"].r1() >= ngram_r["en"].r1() && minilm_r["en"].r5() >= ngram_r["en"].r5());
    assert!(minilm_r[PARAPHRASE].at1 > ngram_r[PARAPHRASE].at1);
    check(
        "hybrid MiniLM pending",
        columns[3].1["all"],
        MIN_MINILM_PENDING_RECALL,
    );
    check_rows("hybrid MiniLM", minilm_r, &MIN_MINILM_RECALL);
    Ok(())
}

/// The multilingual model on this set: lexical and hybrid with e5, over the
/// index, for the keyword queries and the English paraphrases
/// (`cargo test --features e5 --test retrieval recall_with_e5 -- --nocapture`,
/// after `scripts/fetch-e5.sh`). The fused ranking is never below lexical
/// alone, on either part, at @1 or @5.
#[cfg(feature = "e5")]
#[test]
fn recall_with_e5() -> Result<()> {
    use std::sync::Arc;

    for set in recall::retrieval_sets() {
        let mut scored = Vec::new();
        for e5 in [false, true] {
            let dir = tempfile::tempdir()?;
            let config = Config {
                retrieval: if e5 {
                    Retrieval::Hybrid
                } else {
                    Retrieval::Lexical
                },
                ..Config::new(dir.path().join("r.db"))
            };
            let top = actix::System::new().block_on(async {
                let memory = if e5 {
                    let model: Arc<dyn mnemo::Embedder> = common::e5();
                    Memory::open_with_embedder(config, model)?
                } else {
                    Memory::open(config)?
                };
                recall::save_and_index(&memory, &set.memories).await?;
                let top = recall::search_all(&memory, &set.probes)?;
                memory.shutdown().await?;
                Ok::<_, mnemo::Error>(top)
            })?;
            scored.push(recall::score(&set.probes, &top));
        }
        recall::table(
            &format!("retrieval.json, {}: recall@1 / recall@5, %", set.name),
            &LANGS,
            &[("lexical", &scored[0]), ("e5", &scored[1])],
        );
        let (l, h) = (scored[0]["all"], scored[1]["all"]);
        assert!(
            h.at1 >= l.at1 && h.at5 >= l.at5,
            "{}: e5 {h:?} below lexical {l:?}",
            set.name
        );
    }
    Ok(())
}
