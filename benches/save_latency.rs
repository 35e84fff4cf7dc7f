//! How long a `save` blocks its caller, and a burst of saves against the same
//! saves each awaited in its own transaction — measured in one run.
//!
//! `cargo bench --bench save_latency` (groups `save_call`, `burst_vs_single`;
//! a group's name as the filter runs only that group).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use mnemo::baseline::AwaitedStore;
use mnemo::{Config, Memory, SaveMemory, SaveRequest, Synchronous};

mod common;

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
    // The worst calls: a journal segment rotation (every ~8 MiB of saves)
    // shows here, not in the percentiles.
    let max = lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e6);
    let over_1ms = lat.iter().filter(|d| d.as_micros() >= 1_000).count();
    println!(
        "save_call percentiles {label}: p50 {:.2} us, p99 {:.2} us, p999 {:.2} us, max {max:.0} us, {over_1ms} calls >= 1 ms ({calls} calls)",
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
    // Criterion counts only the timed calls; committing them afterwards is
    // what takes the wall time (about 20 s per second of calls), so the
    // measurement is kept short: it is still millions of calls.
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(2));
    for journal in [true, false] {
        let label = if journal { "journal_on" } else { "journal_off" };
        let dir = tempfile::tempdir().unwrap();
        let memory = engine(&dir, journal);
        if common::selected(&format!("save_call/{label}")) {
            print_percentiles(label, &memory, 200_000);
        }
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

fn burst_request(i: u64, round: u64) -> SaveRequest {
    SaveRequest::new("bench", "facts", format!("k{i}"), format!("v{round}-{i}"))
}

/// One burst through the batcher: `n` saves, `flush`, every receipt durable.
fn batcher_burst(memory: &Memory, n: u64, round: u64) -> Duration {
    let start = Instant::now();
    let receipts: Vec<_> = (0..n)
        .map(|i| memory.save(burst_request(i, round)).unwrap())
        .collect();
    memory.flush();
    for r in &receipts {
        r.wait_durable().unwrap();
    }
    start.elapsed()
}

/// N saves from the first call until every one is durable: through the
/// batcher (then an explicit flush, as an agent ending its turn may do),
/// against the usual tool that awaits a transaction and an index step per
/// save. Same schema, same `synchronous=FULL`.
///
/// At N = 10,000 one awaited pass takes ~20 s (more on a slow disk), and
/// criterion needs at least ten: there the awaited side is timed once,
/// honestly (10,000 awaited saves, not extrapolated), outside criterion but in
/// the same run, and printed beside the batcher's median of five bursts.
fn burst_vs_single(c: &mut Criterion) {
    let mut g = c.benchmark_group("burst_vs_single");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(5));
    for n in [10u64, 100, 1_000, 10_000] {
        g.throughput(Throughput::Elements(n));
        let dir = tempfile::tempdir().unwrap();
        let memory = engine(&dir, true);
        let mut round = 0u64;
        g.bench_with_input(BenchmarkId::new("batcher", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        round += 1;
                        batcher_burst(&memory, n, round)
                    })
                    .sum()
            })
        });
        let once = n == 10_000;
        let batcher_median = if once && common::selected("burst_vs_single/once/10000") {
            let mut times: Vec<Duration> = (0..5)
                .map(|_| {
                    round += 1;
                    batcher_burst(&memory, n, round)
                })
                .collect();
            times.sort();
            Some(times[2])
        } else {
            None
        };
        memory.shutdown_blocking().unwrap();

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("awaited.db");
        if once {
            let Some(batcher) = batcher_median else {
                continue;
            };
            // The same keys are already stored, as on the batcher's side
            // after its first burst: every save below is an update.
            let prefill = Memory::open(Config::new(&path)).unwrap();
            batcher_burst(&prefill, n, 0);
            prefill.shutdown_blocking().unwrap();
            let mut store = AwaitedStore::open(&path, Synchronous::Full).unwrap();
            let start = Instant::now();
            for i in 0..n {
                store.save(burst_request(i, 1)).unwrap();
            }
            let awaited = start.elapsed();
            let rate = |d: Duration| n as f64 / d.as_secs_f64();
            println!(
                "burst_vs_single/once/{n}: batcher {:.1} ms ({:.0} saves/s, median of 5 bursts), \
                 awaited_each {:.2} s ({:.0} saves/s, one pass of {n} awaited saves), ratio {:.0}x",
                batcher.as_secs_f64() * 1e3,
                rate(batcher),
                awaited.as_secs_f64(),
                rate(awaited),
                rate(batcher) / rate(awaited)
            );
            continue;
        }
        let mut store = AwaitedStore::open(&path, Synchronous::Full).unwrap();
        let mut round = 0u64;
        g.bench_with_input(BenchmarkId::new("awaited_each", n), &n, |b, &n| {
            b.iter_batched(
                || {
                    round += 1;
                    round
                },
                |round| {
                    for i in 0..n {
                        store.save(burst_request(i, round)).unwrap();
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
