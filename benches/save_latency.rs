//! How long a `save` blocks its caller, and a burst of saves against the same
//! saves each awaited in its own transaction — measured in one run.
//!
//! `cargo bench --bench save_latency`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use mnemo::baseline::AwaitedStore;
use mnemo::{Config, Memory, SaveMemory, SaveRequest, Synchronous};

fn engine(dir: &tempfile::TempDir, journal: bool) -> Memory {
    let mut c = Config::new(dir.path().join("bench.db"));
    // Room for a whole measurement chunk to be pending at once.
    c.max_pending = 1_000_000;
    c.max_pending_bytes = 1 << 30;
    c.journal = journal;
    Memory::open(c).expect("open")
}

fn request(n: u64) -> SaveRequest {
    SaveRequest::new(
        "bench",
        "facts",
        format!("key-{}", n % 50_000),
        format!("value number {n}"),
    )
}

/// Times `calls` individual `save` calls (requests built beforehand) and
/// prints p50/p99/p999 — criterion reports means of many calls, and a tool
/// call's tail matters.
fn print_percentiles(label: &str, memory: &Memory, calls: u64) {
    let requests: Vec<SaveRequest> = (0..calls).map(request).collect();
    let mut lat = Vec::with_capacity(calls as usize);
    for (i, r) in requests.into_iter().enumerate() {
        let t = Instant::now();
        let receipt = memory.save(r).expect("save");
        lat.push(t.elapsed());
        if i % 10_000 == 9_999 {
            memory.flush();
            receipt.wait_durable().expect("durable");
        }
    }
    lat.sort();
    let at = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    println!(
        "save_call percentiles {label}: p50 {:.2} us, p99 {:.2} us, p999 {:.2} us ({calls} calls)",
        at(0.5),
        at(0.99),
        at(0.999)
    );
}

/// The time the caller is blocked by one `save` (validation, sequence
/// number, journal append, overlay insert, inbox push), with the journal on
/// and off, and by an actix `do_send` of the `SaveMemory` message. Flushing
/// runs in the background and is waited for outside the timed region, chunk
/// by chunk, so the pending bound never fills.
fn save_call(c: &mut Criterion) {
    let mut g = c.benchmark_group("save_call");
    g.throughput(Throughput::Elements(1));
    for journal in [true, false] {
        let label = if journal { "journal_on" } else { "journal_off" };
        let dir = tempfile::tempdir().unwrap();
        let memory = engine(&dir, journal);
        print_percentiles(label, &memory, 200_000);
        let mut n: u64 = 0;
        g.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let chunk = left.min(10_000);
                    let requests: Vec<SaveRequest> = (n..n + chunk).map(request).collect();
                    n += chunk;
                    let mut last = None;
                    let start = Instant::now();
                    for r in requests {
                        last = Some(memory.save(r).expect("save"));
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
        if journal {
            let batcher = memory.batcher();
            g.bench_function("actix_do_send", |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let chunk = left.min(10_000);
                        let messages: Vec<SaveMemory> =
                            (n..n + chunk).map(|i| SaveMemory(request(i))).collect();
                        n += chunk;
                        let start = Instant::now();
                        for m in messages {
                            batcher.do_send(m);
                        }
                        total += start.elapsed();
                        // The mailbox is first in, first out: once this last
                        // message is answered, all of them were accepted, and
                        // once its save is durable, so are theirs.
                        let last =
                            futures::executor::block_on(batcher.send(SaveMemory(request(n))))
                                .expect("mailbox")
                                .expect("save");
                        memory.flush();
                        last.wait_durable().expect("durable");
                        left -= chunk;
                    }
                    total
                })
            });
        }
        memory.shutdown_blocking().unwrap();
    }
    g.finish();
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
        let memory = engine(&dir, true);
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
