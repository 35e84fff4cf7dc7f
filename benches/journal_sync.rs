//! What each `journal_sync` policy costs the caller of `save`.
//!
//! `cargo bench --bench journal_sync`
//!
//! `never` copies the record into the mapped journal (survives a process
//! crash); `batch` adds an fsync of the mapping at every flush, on the writer
//! thread (the caller does not wait for it); `always` fsyncs the record's page
//! before `save` returns (survives a power cut).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mnemo::{Config, JournalSync, Memory, SaveRequest};

fn journal_sync(c: &mut Criterion) {
    let mut g = c.benchmark_group("journal_sync");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    for (label, sync) in [
        ("never", JournalSync::Never),
        ("batch", JournalSync::Batch),
        ("always", JournalSync::Always),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path().join("bench.db"));
        config.journal_sync = sync;
        config.max_pending = 1_000_000;
        config.max_pending_bytes = 1 << 30;
        let memory = Memory::open(config).unwrap();
        let mut n = 0u64;
        g.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let chunk = left.min(2_000);
                    let requests: Vec<SaveRequest> = (n..n + chunk)
                        .map(|i| {
                            SaveRequest::new(
                                "bench",
                                "facts",
                                format!("k{}", i % 5_000),
                                format!("v{i}"),
                            )
                        })
                        .collect();
                    n += chunk;
                    let start = Instant::now();
                    let mut last = None;
                    for r in requests {
                        last = Some(memory.save(r).unwrap());
                    }
                    total += start.elapsed();
                    memory.flush();
                    if let Some(r) = last {
                        r.wait_durable().unwrap();
                    }
                    left -= chunk;
                }
                total
            })
        });
        memory.shutdown_blocking().unwrap();
    }
    g.finish();
}

/// The alternative the journal does not use: a plain `write(2)` of a
/// 120-byte record to an append-only file (no fsync), the size of a typical
/// journal record. `docs/design.md` cites this figure for why the journal is a
/// memory mapping.
fn plain_write(c: &mut Criterion) {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("plain.log"))
        .unwrap();
    let record = [7u8; 120];
    let mut g = c.benchmark_group("journal_sync");
    g.throughput(Throughput::Elements(1));
    g.bench_function("plain_write_120b", |b| {
        b.iter(|| file.write_all(&record).unwrap())
    });
    g.finish();
}

criterion_group!(benches, journal_sync, plain_write);
criterion_main!(benches);
