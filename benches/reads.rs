//! Reads: `get` of a pending save and of a committed one, `search` at 10k and
//! 100k memories (and at 10k with 1,000 saves pending), and the index lag
//! after a 1k burst commits.
//!
//! `cargo bench --bench reads`
//!
//! One database is built once for the whole run (through the batcher, then
//! flushed and indexed): 10,000 memories of one user, measured, then grown
//! to 100,000 and measured again. Values are twelve word-like tokens from a
//! 2,000-word vocabulary plus one of ten topic words (see
//! `benches/common/mod.rs`); queries are:
//!
//! - `rare`: one vocabulary word (in ~0.6% of memories),
//! - `typical`: three vocabulary words (any of them, ~1.8%),
//! - `common`: one topic word (10% of memories: 1,000 or 10,000 rows to rank);
//!
//! and, in one category, `common` in its topic's category and `typical` in
//! one topic's category.
//!
//! Percentiles are printed from individually timed calls; criterion reports
//! the means.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use mnemo::{Config, Memory, Receipt};

mod common;
use common::{print_percentiles, selected, timed, Words, TOPICS};

const NS: &str = "user-42";

/// The engine for this benchmark: a quiet window, max wait and batch size
/// large enough that a save stays pending until the benchmark flushes.
fn engine(dir: &std::path::Path) -> Memory {
    let mut c = Config::new(dir.join("reads.db"));
    c.quiet_window = Duration::from_secs(600);
    c.max_wait = Duration::from_secs(600);
    // Above the 1,000 saves kept pending below (a full batch flushes at once).
    c.max_batch = 5_000;
    c.max_pending = 1_000_000;
    c.max_pending_bytes = 1 << 30;
    Memory::open(c).unwrap()
}

/// Saves memories `from..to`, flushes, waits until the index has them.
fn fill(memory: &Memory, words: &Words, from: u64, to: u64) {
    let mut last: Option<Receipt> = None;
    for n in from..to {
        last = Some(memory.save(words.request(NS, n, 0)).unwrap());
        if n % 10_000 == 9_999 {
            memory.flush();
            last.as_ref().unwrap().wait_durable().unwrap();
        }
    }
    memory.flush();
    if let Some(r) = last {
        r.wait_indexed().unwrap();
    }
    assert_eq!(memory.stats().index_lag_changes, 0);
}

fn query(words: &Words, kind: &str, i: usize) -> String {
    match kind {
        "rare" => words.word(i * 37).to_owned(),
        "typical" => format!(
            "{} {} {}",
            words.word(i * 37),
            words.word(i * 37 + 701),
            words.word(i * 37 + 1_403)
        ),
        _ => TOPICS[i % TOPICS.len()].to_owned(),
    }
}

fn searches(c: &mut Criterion, memory: &Memory, words: &Words, size: &str) {
    for kind in ["rare", "typical", "common"] {
        let id = format!("search_{size}/{kind}");
        if selected(&id) {
            let times = timed(1_000, |i| {
                let hits = memory.search(NS, &query(words, kind, i), None, 10).unwrap();
                assert!(!hits.is_empty());
            });
            print_percentiles(&id, times);
        }
    }
    // In one category: a topic word in its own category (every match is in
    // it), and three vocabulary words in one topic's category (a tenth of
    // their matches are).
    for kind in ["common", "typical"] {
        let id = format!("search_{size}/{kind}_in_category");
        if selected(&id) {
            let times = timed(1_000, |i| {
                let category = TOPICS[i % TOPICS.len()];
                let hits = memory
                    .search(NS, &query(words, kind, i), Some(category), 10)
                    .unwrap();
                assert!(!hits.is_empty());
                assert!(hits.iter().all(|h| h.record.category == category));
            });
            print_percentiles(&id, times);
        }
    }
    let mut g = c.benchmark_group(format!("search_{size}"));
    g.sample_size(20);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    for kind in ["typical", "common"] {
        let mut i = 0;
        g.bench_function(kind, |b| {
            b.iter(|| {
                i += 1;
                memory.search(NS, &query(words, kind, i), None, 10).unwrap()
            })
        });
    }
    g.finish();
}

fn reads(c: &mut Criterion) {
    let words = Words::new();
    let dir = tempfile::tempdir().unwrap();
    let memory = engine(dir.path());
    fill(&memory, &words, 0, 10_000);

    // get of a committed (and indexed) memory: the overlay misses, SQLite
    // answers through the read pool.
    // Keys are made beforehand, so only the `get` is timed.
    let committed: Vec<(&str, String)> = (0..10_000usize)
        .map(|i| {
            let n = (i * 7_919) % 10_000;
            (TOPICS[n % 10], format!("memory-{n}"))
        })
        .collect();
    let committed_key = |i: usize| &committed[i % committed.len()];
    if selected("get/committed") {
        let times = timed(100_000, |i| {
            let (topic, key) = committed_key(i);
            memory.get(NS, topic, key).unwrap().unwrap();
        });
        print_percentiles("get/committed (10k stored)", times);
    }
    // get of a pending save: 1,000 saves just made, none flushed.
    let pending: Vec<Receipt> = (0..1_000u64)
        .map(|n| {
            memory
                .save(mnemo::SaveRequest::new(
                    NS,
                    "pending",
                    format!("fresh-{n}"),
                    words.value(n, 7),
                ))
                .unwrap()
        })
        .collect();
    let pending_keys: Vec<String> = (0..1_000usize)
        .map(|i| format!("fresh-{}", (i * 7_919) % 1_000))
        .collect();
    let pending_key = |i: usize| pending_keys[i % pending_keys.len()].as_str();
    if selected("get/pending") {
        let times = timed(100_000, |i| {
            let r = memory.get(NS, "pending", pending_key(i)).unwrap().unwrap();
            assert_eq!(r.version, None);
        });
        print_percentiles("get/pending (1k pending, 10k stored)", times);
    }
    {
        let mut g = c.benchmark_group("get");
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(2));
        let mut i = 0;
        g.bench_function("pending", |b| {
            b.iter(|| {
                i += 1;
                memory.get(NS, "pending", pending_key(i)).unwrap()
            })
        });
        g.bench_function("committed", |b| {
            b.iter(|| {
                i += 1;
                let (topic, key) = committed_key(i);
                memory.get(NS, topic, key).unwrap()
            })
        });
        g.finish();
    }
    // A search while those 1,000 saves are pending: each search also matches
    // the pending saves of the namespace in memory. A typical query finds
    // ~50 of them, a page by themselves; a rare one finds ~6, so the index
    // is asked for the rest of the page, past the pending saves' keys.
    for class in ["typical", "rare"] {
        let id = format!("search_10k/{class}_with_1k_pending");
        if selected(&id) {
            let times = timed(1_000, |i| {
                memory
                    .search(NS, &query(&words, class, i), None, 10)
                    .unwrap();
            });
            print_percentiles(&id, times);
        }
    }
    memory.flush();
    pending.last().unwrap().wait_indexed().unwrap();

    searches(c, &memory, &words, "10k");

    // Index lag: a burst of 1,000 updates commits in one batch; the time from
    // its last receipt durable to that receipt indexed.
    let mut round = 0u64;
    let mut burst_lag = |memory: &Memory| -> Duration {
        round += 1;
        let receipts: Vec<Receipt> = (0..1_000u64)
            .map(|n| memory.save(words.request(NS, n, round)).unwrap())
            .collect();
        memory.flush();
        let last = receipts.last().unwrap();
        last.wait_durable().unwrap();
        let durable = Instant::now();
        last.wait_indexed().unwrap();
        durable.elapsed()
    };
    // The engine's own figure covers the engine's recent batches: the
    // engine is reopened so that those are the bursts' alone (the corpus's
    // batches, indexed in bulk, are not what a 1k burst's lag is).
    memory.shutdown_blocking().unwrap();
    let memory = engine(dir.path());
    if selected("index_lag/burst_1k") {
        let lags: Vec<Duration> = (0..100).map(|_| burst_lag(&memory)).collect();
        print_percentiles("index_lag/burst_1k (durable -> indexed, 10k stored)", lags);
        let s = memory.stats().index_lag_ms;
        println!(
            "index_lag/engine Stats::index_lag_ms (commit -> indexed, last {} batches): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            s.count, s.p50, s.p99, s.max
        );
    }
    {
        let mut g = c.benchmark_group("index_lag");
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(2));
        g.bench_function("burst_1k", |b| {
            b.iter_custom(|iters| (0..iters).map(|_| burst_lag(&memory)).sum())
        });
        g.finish();
    }

    fill(&memory, &words, 10_000, 100_000);
    if selected("get/committed_100k") {
        let keys: Vec<(&str, String)> = (0..100_000usize)
            .map(|i| {
                let n = (i * 7_919) % 100_000;
                (TOPICS[n % 10], format!("memory-{n}"))
            })
            .collect();
        let times = timed(100_000, |i| {
            let (topic, key) = &keys[i];
            memory.get(NS, topic, key).unwrap().unwrap();
        });
        print_percentiles("get/committed_100k", times);
    }
    searches(c, &memory, &words, "100k");
    memory.shutdown_blocking().unwrap();
}

criterion_group!(benches, reads);
criterion_main!(benches);
