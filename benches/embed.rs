//! The vector side of hybrid retrieval: what embedding costs, where it runs.
//!
//! `cargo bench --bench embed` (the n-gram embedder), and with the neural one:
//! `scripts/fetch-minilm.sh && cargo bench --features minilm --bench embed`.
//!
//! - `embed/*`: one memory-sized English text (a dozen words) through each
//!   embedder, alone and in a batch of 32 (per-text throughput reported).
//! - `indexed/*`: a burst of 32 saves, flushed at once, until every receipt
//!   says indexed: the commit plus the indexer's pass, which embeds the
//!   batch (outside its write transaction) with hybrid retrieval.
//!   `save` itself never embeds: `benches/save_latency.rs` is unchanged.
//! - `search/*`: one `Memory::search` over 1,000 indexed memories of one
//!   user: lexical, hybrid with n-grams, hybrid with MiniLM (the query is
//!   embedded per call; vectors are compared in SQLite).

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mnemo::{Config, Embedder, Memory, NgramEmbedder, Retrieval, SaveRequest};

const NS: &str = "user-42";

/// English memory-like texts, varied by `n`.
fn text(n: u64) -> String {
    const WHO: [&str; 8] = [
        "my sister",
        "her husband",
        "the manager",
        "our neighbour",
        "my father",
        "the dentist",
        "his daughter",
        "a colleague",
    ];
    const DOES: [&str; 8] = [
        "likes hiking in the mountains",
        "is allergic to peanuts",
        "works night shifts at the hospital",
        "plays the violin on weekends",
        "is moving to Lisbon next spring",
        "prefers green tea over coffee",
        "is training for a marathon",
        "collects old maps of the city",
    ];
    const WHEN: [&str; 4] = [
        "since 2019",
        "every Saturday",
        "after the holidays",
        "most evenings",
    ];
    let n = n as usize;
    format!(
        "{} {} {} (note {n})",
        WHO[n % 8],
        DOES[(n / 8) % 8],
        WHEN[(n / 64) % 4]
    )
}

/// The embedders measured: always n-grams; MiniLM with the feature.
fn embedders() -> Vec<(&'static str, Option<Arc<dyn Embedder>>)> {
    #[allow(unused_mut)]
    let mut v: Vec<(&'static str, Option<Arc<dyn Embedder>>)> = vec![
        ("lexical", None),
        ("ngram", Some(Arc::new(NgramEmbedder::new()))),
    ];
    #[cfg(feature = "minilm")]
    {
        let dir = std::env::var_os("MNEMO_MINILM_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join(mnemo::MiniLmEmbedder::DEFAULT_DIR)
            });
        let model = mnemo::MiniLmEmbedder::from_dir(&dir)
            .unwrap_or_else(|e| panic!("{e}: run scripts/fetch-minilm.sh"));
        v.push(("minilm", Some(Arc::new(model))));
    }
    v
}

fn open(dir: &std::path::Path, name: &str, embedder: &Option<Arc<dyn Embedder>>) -> Memory {
    let mut c = Config::new(dir.join(format!("{name}.db")));
    c.quiet_window = Duration::from_secs(600);
    c.max_wait = Duration::from_secs(600);
    match embedder {
        Some(e) => {
            c.retrieval = Retrieval::Hybrid;
            Memory::open_with_embedder(c, e.clone()).expect("open")
        }
        None => Memory::open(c).expect("open"),
    }
}

/// Saves memories `from..to`, flushes, and returns the last receipt.
fn save_range(memory: &Memory, from: u64, to: u64) -> mnemo::Receipt {
    let mut last = None;
    for n in from..to {
        last = Some(
            memory
                .save(SaveRequest::new(NS, "notes", format!("k{n}"), text(n)))
                .expect("save"),
        );
    }
    memory.flush();
    last.expect("a save")
}

fn bench(c: &mut Criterion) {
    let embedders = embedders();
    let texts: Vec<String> = (0..32).map(text).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();

    let mut g = c.benchmark_group("embed");
    for (name, e) in embedders.iter().filter_map(|(n, e)| Some((n, e.as_ref()?))) {
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new(*name, "one"), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % refs.len();
                e.embed(refs[i])
            })
        });
        g.throughput(Throughput::Elements(refs.len() as u64));
        g.bench_function(BenchmarkId::new(*name, "batch32"), |b| {
            b.iter(|| e.embed_batch(&refs))
        });
    }
    g.finish();

    let dir = tempfile::tempdir().expect("temp dir");
    let mut g = c.benchmark_group("indexed");
    g.sample_size(20);
    g.throughput(Throughput::Elements(32));
    for (name, e) in &embedders {
        let memory = open(dir.path(), &format!("burst-{name}"), e);
        let mut n = 0u64;
        g.bench_function(*name, |b| {
            b.iter(|| {
                save_range(&memory, n, n + 32)
                    .wait_indexed()
                    .expect("indexed");
                n += 32;
            })
        });
        memory.shutdown_blocking().expect("shutdown");
    }
    g.finish();

    let mut g = c.benchmark_group("search");
    for (name, e) in &embedders {
        let memory = open(dir.path(), &format!("search-{name}"), e);
        save_range(&memory, 0, 1_000)
            .wait_indexed()
            .expect("indexed");
        let queries = [
            "who is allergic to nuts",
            "violin",
            "moving abroad next year",
        ];
        let mut i = 0;
        g.bench_function(*name, |b| {
            b.iter(|| {
                i = (i + 1) % queries.len();
                memory.search(NS, queries[i], None, 5).expect("search")
            })
        });
        memory.shutdown_blocking().expect("shutdown");
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
