//! The batcher against the floor: a raw rusqlite loop doing the same upserts
//! in one transaction, with the same pragmas (WAL, `synchronous=FULL`) and
//! the same table, written by hand here. Measured in one run.
//!
//! `cargo bench --bench floor`
//!
//! - `durable/{batcher,raw_upsert}/N`: N saves from the first `save` until
//!   every receipt is durable (the batcher: `flush`, then every receipt; with
//!   the default `max_batch` of 1,000 that is N/1,000 transactions), against
//!   one `BEGIN IMMEDIATE`, N upserts, `COMMIT`.
//! - `indexed/{batcher,raw_upsert_fts}/N`: until every receipt is indexed,
//!   against the same transaction with an FTS5 delete + insert per row (the
//!   raw loop inserts the text as is; the engine also normalises it).
//!
//! Every round writes new values to the same N keys, so after the first
//! round every row is an update on both sides.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mnemo::{Memory, SaveRequest};
use rusqlite::{params, Connection, TransactionBehavior};

mod common;

/// The engine's `memories` table (`crates/mnemo/src/store/sqlite/schema.rs`)
/// and FTS5 table (which the engine keeps in a file of its own,
/// `store/sqlite/index_db.rs`; the raw loop keeps it in its one file and one
/// transaction).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS memories (
    id          INTEGER PRIMARY KEY,
    namespace   TEXT    NOT NULL,
    category    TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    metadata    TEXT,
    version     INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    change_seq  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    deleted     INTEGER NOT NULL DEFAULT 0,
    hlc         INTEGER NOT NULL DEFAULT 0,
    UNIQUE (namespace, category, key)
);
CREATE INDEX IF NOT EXISTS memories_by_change ON memories (change_seq);
CREATE INDEX IF NOT EXISTS memories_tombstones ON memories (hlc) WHERE deleted = 1;
CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5 (
    ns, key, category, value,
    content = '', contentless_delete = 1, tokenize = 'ascii'
);";

/// The engine's upsert, returning the row id for the FTS variant.
const UPSERT: &str = "
INSERT INTO memories (namespace, category, key, value, metadata, version, seq, change_seq,
                      created_at, updated_at, deleted, hlc)
VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?8, ?8, 0, ?9)
ON CONFLICT (namespace, category, key) DO UPDATE SET
    value = excluded.value,
    metadata = excluded.metadata,
    version = memories.version + 1,
    seq = excluded.seq,
    change_seq = excluded.change_seq,
    updated_at = excluded.updated_at,
    created_at = CASE WHEN memories.deleted THEN excluded.created_at ELSE memories.created_at END,
    deleted = 0,
    hlc = excluded.hlc
WHERE excluded.hlc >= memories.hlc
  AND (memories.deleted = 1
       OR memories.value IS NOT excluded.value
       OR memories.metadata IS NOT excluded.metadata)
RETURNING id, version";

fn request(i: u64, round: u64) -> SaveRequest {
    SaveRequest::new(
        "bench",
        "facts",
        format!("key-{i}"),
        format!("the user mentioned fact number {i} in round {round}"),
    )
}

struct Raw {
    conn: Connection,
    change: i64,
}

impl Raw {
    fn open(path: &Path) -> Raw {
        let conn = Connection::open(path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "FULL").unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        Raw { conn, change: 0 }
    }

    /// One transaction of `n` upserts (and FTS rows with `fts`).
    fn round(&mut self, n: u64, round: u64, fts: bool) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        {
            let mut upsert = tx.prepare_cached(UPSERT).unwrap();
            let mut delete = tx
                .prepare_cached("DELETE FROM memories_fts WHERE rowid = ?1")
                .unwrap();
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO memories_fts (rowid, ns, key, category, value) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .unwrap();
            for i in 0..n {
                let r = request(i, round);
                self.change += 1;
                let (id, _version): (i64, i64) = upsert
                    .query_row(
                        params![
                            r.namespace,
                            r.category,
                            r.key,
                            r.value,
                            None::<String>,
                            self.change,
                            self.change,
                            now,
                            (now << 16) + self.change
                        ],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .unwrap();
                if fts {
                    delete.execute([id]).unwrap();
                    insert
                        .execute(params![id, r.namespace, r.key, r.category, r.value])
                        .unwrap();
                }
            }
        }
        tx.commit().unwrap();
    }
}

/// One burst through the engine: `n` saves, `flush`, then every receipt
/// durable (or indexed).
fn batcher_round(memory: &Memory, n: u64, round: u64, indexed: bool) -> Duration {
    // The requests are built inside the timed region, as the raw loop
    // builds its rows.
    let start = Instant::now();
    let receipts: Vec<_> = (0..n)
        .map(|i| memory.save(request(i, round)).unwrap())
        .collect();
    memory.flush();
    for r in &receipts {
        if indexed {
            r.wait_indexed().unwrap();
        } else {
            r.wait_durable().unwrap();
        }
    }
    start.elapsed()
}

fn floor(c: &mut Criterion) {
    for (group, indexed) in [("durable", false), ("indexed", true)] {
        let mut g = c.benchmark_group(format!("floor_{group}"));
        g.sample_size(10);
        g.warm_up_time(Duration::from_secs(1));
        g.measurement_time(Duration::from_secs(4));
        for n in [1_000u64, 10_000] {
            g.throughput(Throughput::Elements(n));
            let dir = tempfile::tempdir().unwrap();
            let memory = common::engine(dir.path(), "engine.db", true);
            let mut round = 0;
            g.bench_with_input(BenchmarkId::new("batcher", n), &n, |b, &n| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            round += 1;
                            batcher_round(&memory, n, round, indexed)
                        })
                        .sum()
                })
            });
            if common::bench_mode() {
                // The writer's own time per batch: with `durable` the indexer
                // indexes the previous round beside it, with `indexed` it is
                // idle (each round waited until indexed).
                let f = memory.stats().flush_ms;
                println!(
                    "floor_{group}/batcher/{n}: flush (first save of the batch to commit) p50 {:.2} ms, p99 {:.2} ms over {} batches",
                    f.p50, f.p99, f.count
                );
            }
            memory.shutdown_blocking().unwrap();

            let mut raw = Raw::open(&dir.path().join("raw.db"));
            let mut round = 0;
            let name = if indexed {
                "raw_upsert_fts"
            } else {
                "raw_upsert"
            };
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
                b.iter(|| {
                    round += 1;
                    raw.round(n, round, indexed);
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, floor);
criterion_main!(benches);
