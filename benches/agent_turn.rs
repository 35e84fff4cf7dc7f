//! An agent turn: the model calls its memory tool twice, then starts its
//! reply. The time from the first call until the reply can start is a proxy
//! for the delay the memory tool adds to time-to-first-token. Through the
//! batcher against the usual tool that awaits each save (its own transaction
//! and indexing step, `synchronous=FULL`), in one run.
//!
//! `cargo bench --bench agent_turn`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use mnemo::baseline::AwaitedStore;
use mnemo::{Memory, SaveRequest, Synchronous};

mod common;

/// The two saves of turn `t`. Keys repeat every 10,000 turns, so the
/// database stays small however many turns criterion asks for.
fn turn_requests(t: u64) -> [SaveRequest; 2] {
    let t = t % 10_000;
    [
        SaveRequest::new(
            "user-42",
            "hobbies",
            format!("singing-{t}"),
            "مجھے گانا پسند ہے — likes singing",
        ),
        SaveRequest::new(
            "user-42",
            "hobbies",
            format!("writing-{t}"),
            "مجھے لکھنا پسند ہے — likes writing",
        ),
    ]
}

/// `turns` turns through the batcher, each timed from its first save until
/// both returned. Requests are built beforehand (the model's tool call
/// arguments exist before the call); flushes are waited for every 500 turns,
/// outside the timed region.
fn batcher_turns(memory: &Memory, first: u64, turns: u64) -> Vec<Duration> {
    let mut times = Vec::with_capacity(turns as usize);
    let mut t = first;
    while t < first + turns {
        let chunk = (first + turns - t).min(500);
        let requests: Vec<[SaveRequest; 2]> = (t..t + chunk).map(turn_requests).collect();
        let mut last = None;
        for [a, b] in requests {
            let start = Instant::now();
            memory.save(a).unwrap();
            last = Some(memory.save(b).unwrap());
            // The reply starts here.
            times.push(start.elapsed());
        }
        memory.flush();
        if let Some(r) = last {
            r.wait_durable().unwrap();
        }
        t += chunk;
    }
    times
}

fn awaited_turn(store: &mut AwaitedStore, t: u64) -> Duration {
    let [a, b] = turn_requests(t);
    let start = Instant::now();
    store.save(a).unwrap();
    store.save(b).unwrap();
    start.elapsed()
}

fn agent_turn(c: &mut Criterion) {
    let mut g = c.benchmark_group("agent_turn");
    g.sample_size(10);
    // Criterion counts only the timed calls; the writer committing them
    // afterwards takes the wall time (tens of seconds for a second of calls).
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(1));

    let dir = tempfile::tempdir().unwrap();
    let memory = common::engine(dir.path(), "turns.db", true);
    let mut next = 0u64;
    if common::selected("agent_turn/batcher") {
        common::print_percentiles(
            "agent_turn/batcher (two saves, then the reply starts)",
            batcher_turns(&memory, next, 20_000),
        );
        next += 20_000;
    }
    g.bench_function("batcher", |b| {
        b.iter_custom(|iters| {
            let times = batcher_turns(&memory, next, iters);
            next += iters;
            times.into_iter().sum()
        })
    });
    memory.shutdown_blocking().unwrap();

    let mut store = AwaitedStore::open(&dir.path().join("awaited.db"), Synchronous::Full).unwrap();
    let mut next = 0u64;
    if common::selected("agent_turn/awaited_each") {
        let times = (0..200)
            .map(|t| awaited_turn(&mut store, t))
            .collect::<Vec<_>>();
        common::print_percentiles(
            "agent_turn/awaited_each (two awaited saves, then the reply starts)",
            times,
        );
        next = 200;
    }
    g.bench_function("awaited_each", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    next += 1;
                    awaited_turn(&mut store, next)
                })
                .sum()
        })
    });
    g.finish();
}

criterion_group!(benches, agent_turn);
criterion_main!(benches);
