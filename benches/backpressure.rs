//! A refused save (`Error::Overloaded`) costs the caller no more than an
//! accepted one: the bound is checked with two atomic adds, before any lock.
//!
//! `cargo bench --bench backpressure`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use mnemo::{Config, Error, Memory, SaveRequest};

fn overloaded(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("bench.db"));
    // One pending save fills the bound.
    config.max_pending = 1;
    config.max_batch = 1;
    config.busy_deadline = Duration::from_secs(3_600);
    let memory = Memory::open(config).unwrap();
    // Another connection holds the write lock, so the one accepted save stays
    // pending (its flush waits on the lock) and every later save is refused.
    let blocker = rusqlite::Connection::open(dir.path().join("bench.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    memory
        .save(SaveRequest::new(
            "bench",
            "facts",
            "first",
            "fills the bound",
        ))
        .unwrap();
    let mut g = c.benchmark_group("backpressure");
    g.bench_function("refused_save", |b| {
        b.iter_batched(
            || SaveRequest::new("bench", "facts", "k", "a value"),
            |r| match memory.save(r) {
                Err(Error::Overloaded { .. }) => {}
                other => panic!("expected Overloaded, got {other:?}"),
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
    println!(
        "refused saves during the run: {}",
        memory.stats().rejected_overloaded
    );
    // Release the lock (closing the connection rolls its transaction back),
    // so the pending save commits and shutdown can finish.
    drop(blocker);
    memory.shutdown_blocking().unwrap();
}

criterion_group!(benches, overloaded);
criterion_main!(benches);
