//! How long a `save` blocks its caller, and a burst of saves against the same
//! saves each awaited in its own transaction — measured in one run.
//!
//! `cargo bench --bench save_latency`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use mnemo::baseline::AwaitedStore;
use mnemo::{Config, Memory, SaveRequest, Synchronous};

fn engine(dir: &tempfile::TempDir) -> Memory {
    let mut c = Config::new(dir.path().join("bench.db"));
    // Room for a whole measurement chunk to be pending at once.
    c.max_pending = 1_000_000;
    c.max_pending_bytes = 1 << 30;
    Memory::open(c).expect("open")
}

/// The time the caller is blocked by one `save` (validation, sequence
/// number, overlay insert, inbox push). Flushing runs in the background and
/// is waited for outside the timed region, chunk by chunk, so the pending
/// bound never fills.
fn save_call(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let memory = engine(&dir);
    let mut n: u64 = 0;
    let mut g = c.benchmark_group("save_call");
    g.throughput(Throughput::Elements(1));
    g.bench_function("memory_save", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let chunk = left.min(10_000);
                let mut last = None;
                let start = Instant::now();
                for _ in 0..chunk {
                    n += 1;
                    last = Some(
                        memory
                            .save(SaveRequest::new(
                                "bench",
                                "facts",
                                format!("key-{}", n % 50_000),
                                format!("value number {n}"),
                            ))
                            .expect("save"),
                    );
                }
                total += start.elapsed();
                memory.flush();
                if let Some(r) = last {
                    r.wait_durable().expect("durable");
                }
                left -= chunk;
            }
            total
        })
    });
    g.finish();
    memory.shutdown_blocking().unwrap();
}

/// N saves from the first call until every one is durable: through the
/// batcher (then an explicit flush, as an agent ending its turn may do),
/// against the usual tool that awaits a transaction and an index step per
/// save. Same schema, same `synchronous=FULL`.
fn burst_vs_single(c: &mut Criterion) {
    let mut g = c.benchmark_group("burst_vs_single");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    for n in [100u64, 1_000] {
        g.throughput(Throughput::Elements(n));
        let dir = tempfile::tempdir().unwrap();
        let memory = engine(&dir);
        let mut round = 0u64;
        g.bench_with_input(BenchmarkId::new("batcher", n), &n, |b, &n| {
            b.iter(|| {
                round += 1;
                let receipts: Vec<_> = (0..n)
                    .map(|i| {
                        memory
                            .save(SaveRequest::new(
                                "bench",
                                "facts",
                                format!("k{i}"),
                                format!("v{round}-{i}"),
                            ))
                            .unwrap()
                    })
                    .collect();
                memory.flush();
                for r in &receipts {
                    r.wait_durable().unwrap();
                }
            })
        });
        memory.shutdown_blocking().unwrap();

        let dir = tempfile::tempdir().unwrap();
        let mut store =
            AwaitedStore::open(&dir.path().join("awaited.db"), Synchronous::Full).unwrap();
        let mut round = 0u64;
        g.bench_with_input(BenchmarkId::new("awaited_each", n), &n, |b, &n| {
            b.iter_batched(
                || {
                    round += 1;
                    round
                },
                |round| {
                    for i in 0..n {
                        store
                            .save(SaveRequest::new(
                                "bench",
                                "facts",
                                format!("k{i}"),
                                format!("v{round}-{i}"),
                            ))
                            .unwrap();
                    }
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, save_call, burst_vs_single);
criterion_main!(benches);
