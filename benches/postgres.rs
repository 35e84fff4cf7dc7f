//! The engine on PostgreSQL: the batch flush against a raw one-statement
//! upsert, the `save` call, a burst against saves each awaited in its own
//! transaction, search at 100k memories, and four worker processes saving
//! into one database at once. Measured in one run, on one server.
//!
//! `cargo bench --bench postgres` (a group's name as the filter runs only
//! that group: `pg_flush`, `pg_save_call`, `pg_burst_vs_awaited`,
//! `pg_search`, `pg_workers`).
//!
//! **The server.** By default the bench starts its own PostgreSQL with the
//! tests' harness (`tests/common/pg.rs`: `fsync` and `synchronous_commit`
//! on, a Unix socket, stopped when the bench exits) and gives each part a
//! fresh database. With `MNEMO_BENCH_PG_URL=postgres://…/somedb` it runs
//! against that server instead: the role needs `CREATEDB`; each part
//! creates its own database `mnemo_bench_<pid>_<n>` there and drops it
//! afterwards (the URL's own database is only used to do that).
//!
//! - `pg_flush/{engine,raw_unnest}/N` (N = 1,000 and 10,000): N saves from
//!   the first `save` until every receipt is durable (`flush`, then every
//!   receipt; `max_batch` 1,000, so N/1,000 transactions), against a raw
//!   loop on the `postgres` crate that sends each 1,000 rows as one
//!   `INSERT … SELECT FROM unnest(arrays) … ON CONFLICT DO UPDATE … WHERE
//!   value IS DISTINCT FROM …` statement in its own transaction (autocommit:
//!   one round trip and one commit per 1,000 rows), into a table with the
//!   columns, indexes and sequence of `mnemo.memories`. Every round writes
//!   new values to the same N keys (updates after the first round) on both
//!   sides; both build their rows inside the timed region. The engine's
//!   indexer runs as it always does (on its own connection); the raw loop
//!   has none. Printed beside: the engine's round when its indexer is idle
//!   as the round starts, and until every receipt is indexed.
//! - `pg_save_call`: the time a `save` call blocks its caller, journal on;
//!   percentiles over 100,000 calls (flushed every 10,000, outside the timed
//!   region), and criterion's mean.
//! - `pg_burst_vs_awaited`: 10,000 saves until all durable, against the
//!   usual tool's awaited save: one `INSERT … ON CONFLICT` per save,
//!   committed (autocommit) before the next. The awaited side is timed on
//!   fewer saves (criterion: 100 per sample; the printed one-pass line:
//!   1,000) and compared per save: it is linear (one commit each).
//! - `pg_search`: 100,000 memories of one namespace (saved through the
//!   engine in bursts of 10,000, then waited until indexed, once), searched
//!   for a rare word, a typical three-word query and a word in 10% of
//!   memories (the same corpus and queries as `benches/reads.rs`); p50/p99
//!   printed just after the load (the table never analyzed: autovacuum is
//!   held off until then) and after `ANALYZE` (what autovacuum does within
//!   a minute or so), criterion's mean (after `ANALYZE`) beside.
//! - `pg_workers`: 1, then 4 worker processes (this binary, re-run with
//!   `MNEMO_BENCH_PG_WORKER` set) each open an engine on the same database
//!   and save 25,000 memories of their own namespace at once, until all are
//!   durable; three rounds (inserts, then updates). Aggregate saves/s from
//!   the parent's "go" to the last worker's "all durable", then the rows
//!   are counted: nothing lost.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use mnemo::{Config, Memory, Receipt, SaveRequest};

#[allow(dead_code)]
#[path = "../tests/common/pg.rs"]
mod pg;

mod common;
use common::{bench_mode, print_percentiles, selected, Words, TOPICS};

/// Whether a part of the bench (a group, or a measurement inside one) is
/// wanted: in bench mode, when no filter was given, or a filter is part of
/// `id` (as `common::selected`) or names something inside it
/// (`pg_flush/engine/10000` wants the group `pg_flush`). Always in test
/// mode (`cargo test --benches`), where everything runs small.
fn wanted(id: &str) -> bool {
    if !bench_mode() {
        return true;
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty()
        || filters
            .iter()
            .any(|f| id.contains(f.as_str()) || f.starts_with(id))
}

/// Run against this server instead of starting one.
const URL_ENV: &str = "MNEMO_BENCH_PG_URL";
/// Set in a worker process of `pg_workers` (its number).
const WORKER_ENV: &str = "MNEMO_BENCH_PG_WORKER";

// ---------------------------------------------------------------------------
// Databases.

/// A fresh database for one part of the bench, dropped with it.
enum Db {
    Harness(pg::Database),
    External {
        url: String,
        admin: String,
        name: String,
    },
}

impl Db {
    fn url(&self) -> String {
        match self {
            Db::Harness(db) => db.url(),
            Db::External { url, .. } => url.clone(),
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Db::External { admin, name, .. } = self {
            pg::execute(
                admin,
                &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            );
        }
    }
}

/// `url` with its database replaced by `db` (the path of the URL).
fn with_database(url: &str, db: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let (head, rest) = url.split_at(start);
    // The authority ends at the path's `/` or, without a path, at the
    // query's `?` (which may hold a `/`: `?host=/run/postgresql`).
    let query = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => rest[i..].find('?').map_or("", |j| &rest[i + j..]),
        Some(i) => &rest[i..],
        None => "",
    };
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    format!("{head}{authority}/{db}{query}")
}

/// Checked when the bench runs as a test (`cargo test --benches`): a
/// `harness = false` target has no `#[test]`s.
fn check_with_database() {
    let cases = [
        ("postgres://u@h:5/a", "postgres://u@h:5/b"),
        (
            "postgres://u@h/a?sslmode=disable",
            "postgres://u@h/b?sslmode=disable",
        ),
        ("postgres://u@%2Ftmp%2Fs:5/a", "postgres://u@%2Ftmp%2Fs:5/b"),
        (
            "postgres://u@h?host=/run/pg",
            "postgres://u@h/b?host=/run/pg",
        ),
        ("postgres:///a?host=/run/pg", "postgres:///b?host=/run/pg"),
        ("postgres://u@h", "postgres://u@h/b"),
    ];
    for (url, want) in cases {
        assert_eq!(with_database(url, "b"), want, "{url}");
    }
}

fn database() -> Db {
    match std::env::var(URL_ENV) {
        Ok(admin) if !admin.is_empty() => {
            static N: AtomicU32 = AtomicU32::new(0);
            let name = format!(
                "mnemo_bench_{}_{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            );
            pg::execute(&admin, &format!("CREATE DATABASE \"{name}\""));
            Db::External {
                url: with_database(&admin, &name),
                admin,
                name,
            }
        }
        _ => Db::Harness(pg::database()),
    }
}

/// The server's version and the settings that matter here, printed once.
fn print_server(url: &str) {
    let url = url.to_owned();
    let line = std::thread::spawn(move || {
        let mut c = pg::client(&url);
        let names = [
            "server_version",
            "fsync",
            "synchronous_commit",
            "wal_sync_method",
            "full_page_writes",
            "shared_buffers",
            "max_wal_size",
            "checkpoint_timeout",
            "autovacuum",
        ];
        names
            .iter()
            .map(|n| {
                let v: String = c.query_one(&format!("SHOW {n}"), &[]).unwrap().get(0);
                format!("{n}={v}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    })
    .join()
    .unwrap();
    println!("PostgreSQL: {line}");
}

/// An engine on `url`, journal on (in `journal`), room for a whole
/// measurement chunk to be pending.
fn engine(url: &str, journal: &Path) -> Memory {
    let mut c = Config::new(url);
    c.max_pending = 1_000_000;
    c.max_pending_bytes = 1 << 30;
    c.journal = true;
    c.journal_dir = Some(journal.to_owned());
    Memory::open(c).expect("open the engine on PostgreSQL")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

// ---------------------------------------------------------------------------
// The raw client: `mnemo.memories` rebuilt by hand.

/// `mnemo.memories` as `store/postgres/schema.rs` makes it: the same
/// columns, the unique key, the GIN index on `tsv` (NULL here: nothing
/// indexes) and the partial index of the indexing queue, and the sequence
/// for change numbers.
const RAW_SCHEMA: &str = r#"
CREATE SCHEMA raw;
CREATE SEQUENCE raw.change_seq;
CREATE TABLE raw.memories (
    id             bigserial PRIMARY KEY,
    namespace      text COLLATE "C" NOT NULL,
    category       text COLLATE "C" NOT NULL,
    key            text COLLATE "C" NOT NULL,
    value          text COLLATE "C" NOT NULL,
    metadata       text COLLATE "C",
    version        bigint  NOT NULL,
    seq            bigint  NOT NULL,
    change_seq     bigint  NOT NULL,
    indexed_change bigint  NOT NULL DEFAULT 0,
    created_at     bigint  NOT NULL,
    updated_at     bigint  NOT NULL,
    deleted        boolean NOT NULL DEFAULT false,
    hlc            bigint  NOT NULL DEFAULT 0,
    tsv            tsvector,
    UNIQUE (namespace, category, key)
);
CREATE INDEX memories_tsv ON raw.memories USING gin (tsv);
CREATE INDEX memories_queue ON raw.memories (change_seq) WHERE indexed_change < change_seq;
"#;

/// A batch of rows as arrays, upserted in one statement.
const RAW_UNNEST: &str = "
INSERT INTO raw.memories AS m (namespace, category, key, value, metadata, version, seq,
                               change_seq, created_at, updated_at, deleted, hlc)
SELECT i.namespace, i.category, i.key, i.value, NULL, 1, i.seq,
       nextval('raw.change_seq'), i.at_ms, i.at_ms, false, i.hlc
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::int8[])
     AS i(namespace, category, key, value, seq, hlc, at_ms)
ON CONFLICT (namespace, category, key) DO UPDATE SET
    value = excluded.value,
    metadata = excluded.metadata,
    version = m.version + 1,
    seq = excluded.seq,
    change_seq = excluded.change_seq,
    updated_at = excluded.updated_at,
    hlc = excluded.hlc
WHERE m.value IS DISTINCT FROM excluded.value
   OR m.metadata IS DISTINCT FROM excluded.metadata";

/// One row: the usual tool's awaited save.
const RAW_ONE: &str = "
INSERT INTO raw.memories AS m (namespace, category, key, value, metadata, version, seq,
                               change_seq, created_at, updated_at, deleted, hlc)
VALUES ($1, $2, $3, $4, NULL, 1, $5, nextval('raw.change_seq'), $6, $6, false, $5)
ON CONFLICT (namespace, category, key) DO UPDATE SET
    value = excluded.value,
    metadata = excluded.metadata,
    version = m.version + 1,
    seq = excluded.seq,
    change_seq = excluded.change_seq,
    updated_at = excluded.updated_at,
    hlc = excluded.hlc
WHERE m.value IS DISTINCT FROM excluded.value
   OR m.metadata IS DISTINCT FROM excluded.metadata";

struct Raw {
    client: postgres::Client,
    unnest: postgres::Statement,
    one: postgres::Statement,
    seq: i64,
}

impl Raw {
    fn open(url: &str) -> Raw {
        let mut client = pg::client(url);
        client.batch_execute(RAW_SCHEMA).expect("raw schema");
        let unnest = client
            .prepare(RAW_UNNEST)
            .expect("prepare the unnest upsert");
        let one = client.prepare(RAW_ONE).expect("prepare the single upsert");
        Raw {
            client,
            unnest,
            one,
            seq: 0,
        }
    }

    /// Upserts `rows` in one statement (its own transaction).
    fn batch(&mut self, rows: Vec<SaveRequest>) {
        let at = now_ms();
        let n = rows.len();
        let mut ns = Vec::with_capacity(n);
        let mut cat = Vec::with_capacity(n);
        let mut key = Vec::with_capacity(n);
        let mut value = Vec::with_capacity(n);
        let mut seq = Vec::with_capacity(n);
        for r in rows {
            self.seq += 1;
            ns.push(r.namespace);
            cat.push(r.category);
            key.push(r.key);
            value.push(r.value);
            seq.push(self.seq);
        }
        let hlc = seq.clone();
        let at = vec![at; n];
        self.client
            .execute(&self.unnest, &[&ns, &cat, &key, &value, &seq, &hlc, &at])
            .unwrap_or_else(|e| panic!("raw upsert: {}", pg::error_text(&e)));
    }

    /// One save, committed before this returns.
    fn one(&mut self, r: &SaveRequest) {
        self.seq += 1;
        self.client
            .execute(
                &self.one,
                &[
                    &r.namespace,
                    &r.category,
                    &r.key,
                    &r.value,
                    &self.seq,
                    &now_ms(),
                ],
            )
            .unwrap_or_else(|e| panic!("raw upsert: {}", pg::error_text(&e)));
    }
}

// ---------------------------------------------------------------------------
// 1. The batch flush against the raw statement.

fn request(i: u64, round: u64) -> SaveRequest {
    SaveRequest::new(
        "bench",
        "facts",
        format!("key-{i}"),
        format!("the user mentioned fact number {i} in round {round}"),
    )
}

/// `n` saves, `flush`, every receipt durable (or indexed); the requests are
/// built inside the timed region, as the raw loop builds its rows.
fn engine_round(memory: &Memory, n: u64, round: u64, indexed: bool) -> Duration {
    let start = Instant::now();
    let receipts: Vec<Receipt> = (0..n)
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

/// The raw side's round: batches of 1,000 (the engine's `max_batch`), one
/// statement and one transaction each.
fn raw_round(raw: &mut Raw, n: u64, round: u64) {
    let mut i = 0;
    while i < n {
        let end = (i + 1_000).min(n);
        raw.batch((i..end).map(|i| request(i, round)).collect());
        i = end;
    }
}

fn pg_flush(c: &mut Criterion) {
    if !wanted("pg_flush") {
        return;
    }
    let mut g = c.benchmark_group("pg_flush");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(4));
    for n in [1_000u64, 10_000] {
        g.throughput(Throughput::Elements(n));
        let journal = tempfile::tempdir().unwrap();
        let db = database();
        let memory = engine(&db.url(), journal.path());
        let mut round = 0;
        g.bench_with_input(BenchmarkId::new("engine", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        round += 1;
                        engine_round(&memory, n, round, false)
                    })
                    .sum()
            })
        });
        // Where the engine's time goes, outside criterion: the same round
        // until every receipt is indexed, and the writer alone (the indexer
        // caught up before the round starts).
        if selected(&format!("pg_flush/engine/{n}")) {
            let mut durable_idle = Vec::new();
            let mut indexed = Vec::new();
            for _ in 0..5 {
                round += 1;
                indexed.push(engine_round(&memory, n, round, true));
                round += 1;
                durable_idle.push(engine_round(&memory, n, round, false));
                memory.flush();
                let last = memory.save(request(0, round)).unwrap();
                memory.flush();
                last.wait_indexed().unwrap();
            }
            durable_idle.sort();
            indexed.sort();
            println!(
                "pg_flush/engine/{n}: durable with the indexer idle at the start {} (median of 5), \
                 until all indexed {} (median of 5)",
                common::human(durable_idle[2]),
                common::human(indexed[2]),
            );
        }
        memory.shutdown_blocking().unwrap();
        drop(db);

        let db = database();
        let mut raw = Raw::open(&db.url());
        let mut round = 0;
        g.bench_with_input(BenchmarkId::new("raw_unnest", n), &n, |b, &n| {
            b.iter(|| {
                round += 1;
                raw_round(&mut raw, n, round);
            })
        });
        drop(raw);
    }
    g.finish();
}

// ---------------------------------------------------------------------------
// 2. The save call.

fn call_request(n: u64) -> SaveRequest {
    SaveRequest::new(
        "bench",
        "facts",
        format!("key-{}", n % 50_000),
        format!("value number {n}"),
    )
}

fn pg_save_call(c: &mut Criterion) {
    if !wanted("pg_save_call") {
        return;
    }
    let journal = tempfile::tempdir().unwrap();
    let db = database();
    let memory = engine(&db.url(), journal.path());
    let calls: u64 = if bench_mode() { 100_000 } else { 1_000 };
    let mut n: u64 = 0;
    if selected("pg_save_call/journal_on") {
        let mut lat = Vec::with_capacity(calls as usize);
        while n < calls {
            let chunk = 10_000.min(calls - n);
            let requests: Vec<SaveRequest> = (n..n + chunk).map(call_request).collect();
            n += chunk;
            let mut last = None;
            for r in requests {
                let t = Instant::now();
                last = Some(memory.save(r).expect("save"));
                lat.push(t.elapsed());
            }
            memory.flush();
            last.unwrap().wait_durable().expect("durable");
        }
        let over_1ms = lat.iter().filter(|d| d.as_micros() >= 1_000).count();
        print_percentiles(
            &format!("pg_save_call/journal_on ({over_1ms} calls >= 1 ms)"),
            lat,
        );
    }
    let mut g = c.benchmark_group("pg_save_call");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    // Only the calls are timed; committing them afterwards is what takes
    // the wall time, so the measured time is kept short.
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(1));
    g.bench_function("journal_on", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let chunk = left.min(10_000);
                let requests: Vec<SaveRequest> = (n..n + chunk).map(call_request).collect();
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
    g.finish();
    memory.shutdown_blocking().unwrap();
}

// ---------------------------------------------------------------------------
// 3. A burst against saves each awaited in its own transaction.

fn burst_request(i: u64, round: u64) -> SaveRequest {
    SaveRequest::new("bench", "facts", format!("k{i}"), format!("v{round}-{i}"))
}

fn engine_burst(memory: &Memory, n: u64, round: u64) -> Duration {
    let start = Instant::now();
    let receipts: Vec<Receipt> = (0..n)
        .map(|i| memory.save(burst_request(i, round)).unwrap())
        .collect();
    memory.flush();
    for r in &receipts {
        r.wait_durable().unwrap();
    }
    start.elapsed()
}

fn pg_burst_vs_awaited(c: &mut Criterion) {
    if !wanted("pg_burst_vs_awaited") {
        return;
    }
    let n: u64 = if bench_mode() { 10_000 } else { 1_000 };
    let awaited_once: u64 = if bench_mode() { 1_000 } else { 50 };
    let awaited_sample: u64 = 100;
    let mut g = c.benchmark_group("pg_burst_vs_awaited");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(5));

    let journal = tempfile::tempdir().unwrap();
    let db = database();
    let memory = engine(&db.url(), journal.path());
    let mut round = 0u64;
    g.throughput(Throughput::Elements(n));
    g.bench_with_input(BenchmarkId::new("engine", n), &n, |b, &n| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    round += 1;
                    engine_burst(&memory, n, round)
                })
                .sum()
        })
    });
    let engine_median = selected("pg_burst_vs_awaited/once").then(|| {
        let mut times: Vec<Duration> = (0..5)
            .map(|_| {
                round += 1;
                engine_burst(&memory, n, round)
            })
            .collect();
        times.sort();
        times[2]
    });
    memory.shutdown_blocking().unwrap();
    drop(db);

    // The same keys already stored, as on the engine's side after its first
    // burst: every awaited save is an update.
    let db = database();
    let mut raw = Raw::open(&db.url());
    raw_round_with(&mut raw, n, |i| burst_request(i, 0));
    let mut round = 0u64;
    let mut next = 0u64;
    g.throughput(Throughput::Elements(awaited_sample));
    g.bench_with_input(
        BenchmarkId::new("awaited_each", awaited_sample),
        &awaited_sample,
        |b, &k| {
            b.iter(|| {
                round += 1;
                for _ in 0..k {
                    raw.one(&burst_request(next % n, round));
                    next += 1;
                }
            })
        },
    );
    g.finish();
    if let Some(engine) = engine_median {
        round += 1;
        let start = Instant::now();
        for i in 0..awaited_once {
            raw.one(&burst_request(i, round));
        }
        let awaited = start.elapsed();
        let engine_rate = n as f64 / engine.as_secs_f64();
        let awaited_rate = awaited_once as f64 / awaited.as_secs_f64();
        println!(
            "pg_burst_vs_awaited/once: engine {n} saves in {} ({engine_rate:.0} saves/s, median of 5 \
             bursts), awaited_each {awaited_once} saves in {} ({awaited_rate:.0} saves/s, {} per save, \
             one pass), ratio per save {:.0}x",
            common::human(engine),
            common::human(awaited),
            common::human(awaited / awaited_once as u32),
            engine_rate / awaited_rate
        );
    }
}

fn raw_round_with(raw: &mut Raw, n: u64, f: impl Fn(u64) -> SaveRequest) {
    let mut i = 0;
    while i < n {
        let end = (i + 1_000).min(n);
        raw.batch((i..end).map(&f).collect());
        i = end;
    }
}

// ---------------------------------------------------------------------------
// 4. Search at 100k.

const NS: &str = "user-42";

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

fn pg_search(c: &mut Criterion) {
    if !wanted("pg_search") {
        return;
    }
    let size: u64 = if bench_mode() { 100_000 } else { 2_000 };
    let words = Words::new();
    let journal = tempfile::tempdir().unwrap();
    let db = database();
    let memory = engine(&db.url(), journal.path());
    let (_, built) = common::time(|| {
        let mut last: Option<Receipt> = None;
        for n in 0..size {
            last = Some(memory.save(words.request(NS, n, 0)).unwrap());
            if n % 10_000 == 9_999 {
                memory.flush();
                last.as_ref().unwrap().wait_durable().unwrap();
            }
        }
        memory.flush();
        last.unwrap().wait_indexed().unwrap();
    });
    let url = db.url();
    let stored = pg::query_scalar(
        &url,
        "SELECT count(*) FROM mnemo.memories WHERE tsv IS NOT NULL AND indexed_change = change_seq",
    );
    assert_eq!(stored, size as i64, "every memory stored and indexed");
    println!(
        "pg_search: {size} memories saved and indexed in {} ({:.0}/s)",
        common::human(built),
        size as f64 / built.as_secs_f64()
    );
    let kinds = ["rare", "typical", "common"];
    let percentiles = |label: &str| {
        for kind in kinds {
            let id = format!("pg_search/{kind}");
            if !selected(&id) {
                continue;
            }
            // At least 200 searches, and up to 1,000 within ~10 s.
            let mut times = Vec::new();
            let t = Instant::now();
            for i in 0..1_000 {
                if i >= 200 && t.elapsed() > Duration::from_secs(10) {
                    break;
                }
                let q = query(&words, kind, i);
                let s = Instant::now();
                let hits = memory.search(NS, &q, None, 10).unwrap();
                times.push(s.elapsed());
                assert!(!hits.is_empty(), "{q}: no hits");
            }
            print_percentiles(&format!("{id} ({label})"), times);
        }
    };
    // Just built, the table has never been analyzed (autovacuum's
    // auto-analyze comes within a minute or so of a load; it is kept off
    // until the first measurement is done). The planner then takes
    // `namespace = $1` for selective and ANDs a bitmap of the unique index
    // (every entry of the namespace, live and dead) with the GIN match.
    pg::execute(
        &url,
        "ALTER TABLE mnemo.memories SET (autovacuum_enabled = off)",
    );
    percentiles("just built, never analyzed");
    let (_, analyzed) = common::time(|| pg::execute(&url, "ANALYZE mnemo.memories"));
    pg::execute(
        &url,
        "ALTER TABLE mnemo.memories RESET (autovacuum_enabled)",
    );
    if kinds.iter().any(|k| selected(&format!("pg_search/{k}"))) {
        println!("pg_search: ANALYZE took {}", common::human(analyzed));
    }
    percentiles("after ANALYZE");
    let mut g = c.benchmark_group("pg_search");
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    for kind in kinds {
        let mut i = 0;
        g.bench_function(kind, |b| {
            b.iter(|| {
                i += 1;
                memory
                    .search(NS, &query(&words, kind, i), None, 10)
                    .unwrap()
            })
        });
    }
    g.finish();
    memory.shutdown_blocking().unwrap();
}

// ---------------------------------------------------------------------------
// 5. Worker processes saving into one database at once.

const WORKER_ROUNDS: u64 = 3;

fn worker_request(worker: u32, i: u64, round: u64) -> SaveRequest {
    SaveRequest::new(
        format!("worker-{worker}"),
        "facts",
        format!("key-{i}"),
        format!("worker {worker} fact {i} round {round}"),
    )
}

/// A worker process: opens an engine, says `ready`; on each `go` line saves
/// its `n` memories, flushes, waits until all are durable and says `done
/// <micros>`; on end of input shuts the engine down and says `closed`.
fn worker_main(id: &str) {
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("worker: {k} not set"));
    let worker: u32 = id.parse().unwrap();
    let url = env("MNEMO_BENCH_PG_WORKER_URL");
    let n: u64 = env("MNEMO_BENCH_PG_WORKER_N").parse().unwrap();
    let journal = env("MNEMO_BENCH_PG_WORKER_JOURNAL");
    let memory = engine(&url, Path::new(&journal));
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    for (round, line) in (1..).zip(std::io::stdin().lock().lines()) {
        if line.unwrap().trim() != "go" {
            break;
        }
        let start = Instant::now();
        let receipts: Vec<Receipt> = (0..n)
            .map(|i| memory.save(worker_request(worker, i, round)).unwrap())
            .collect();
        memory.flush();
        for r in &receipts {
            r.wait_durable().unwrap();
        }
        writeln!(out, "done {}", start.elapsed().as_micros()).unwrap();
        out.flush().unwrap();
    }
    memory.shutdown_blocking().unwrap();
    writeln!(out, "closed").unwrap();
    out.flush().unwrap();
}

struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn line(&mut self) -> String {
        let mut s = String::new();
        self.stdout.read_line(&mut s).unwrap();
        assert!(!s.is_empty(), "a worker exited early");
        s.trim().to_owned()
    }
}

/// `k` workers saving `n` memories each, `WORKER_ROUNDS` times.
fn workers(k: u32, n: u64) {
    let db = database();
    let url = db.url();
    let journal = tempfile::tempdir().unwrap();
    // The schema is made before the clock starts.
    engine(&url, journal.path()).shutdown_blocking().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut ws: Vec<Worker> = (0..k)
        .map(|w| {
            let mut child = Command::new(&exe)
                .env(WORKER_ENV, w.to_string())
                .env("MNEMO_BENCH_PG_WORKER_URL", &url)
                .env("MNEMO_BENCH_PG_WORKER_N", n.to_string())
                // One journal folder, as the workers of one machine share.
                .env("MNEMO_BENCH_PG_WORKER_JOURNAL", journal.path())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("run a worker");
            let stdin = child.stdin.take();
            let stdout = BufReader::new(child.stdout.take().unwrap());
            Worker {
                child,
                stdin,
                stdout,
            }
        })
        .collect();
    for w in &mut ws {
        assert_eq!(w.line(), "ready");
    }
    for round in 1..=WORKER_ROUNDS {
        let start = Instant::now();
        for w in &mut ws {
            writeln!(w.stdin.as_mut().unwrap(), "go").unwrap();
        }
        let mut own = Vec::new();
        for w in &mut ws {
            let l = w.line();
            let micros: u64 = l.strip_prefix("done ").unwrap().parse().unwrap();
            own.push(micros as f64 / 1e3);
        }
        let wall = start.elapsed();
        let total = k as u64 * n;
        println!(
            "pg_workers/{k}: round {round} ({}): {total} saves durable in {} = {:.0} saves/s \
             aggregate; each worker's own time (ms): {:?}",
            if round == 1 { "inserts" } else { "updates" },
            common::human(wall),
            total as f64 / wall.as_secs_f64(),
            own.iter().map(|m| m.round() as u64).collect::<Vec<_>>()
        );
    }
    let (_, closed) = common::time(|| {
        for w in &mut ws {
            drop(w.stdin.take());
        }
        for w in &mut ws {
            assert_eq!(w.line(), "closed");
            assert!(w.child.wait().unwrap().success());
        }
    });
    let rows = pg::query_scalar(
        &url,
        "SELECT count(*) FROM mnemo.memories WHERE NOT deleted",
    );
    let latest = pg::query_scalar(
        &url,
        &format!(
            "SELECT count(*) FROM mnemo.memories WHERE NOT deleted \
             AND value = 'worker ' || substr(namespace, 8) || ' fact ' || substr(key, 5) \
             || ' round {WORKER_ROUNDS}' AND version = {WORKER_ROUNDS}"
        ),
    );
    let dead = pg::query_scalar(&url, "SELECT count(*) FROM mnemo.dead_letters");
    let unindexed = pg::query_scalar(
        &url,
        "SELECT count(*) FROM mnemo.memories WHERE indexed_change < change_seq",
    );
    println!(
        "pg_workers/{k}: {rows} rows ({latest} hold their last round's value at version \
         {WORKER_ROUNDS}; expected {}), {dead} dead letters, {unindexed} not indexed after \
         shutdown ({} to shut down)",
        k as u64 * n,
        common::human(closed)
    );
    assert_eq!(rows, (k as u64 * n) as i64, "rows lost or extra");
    assert_eq!(latest, rows, "a row does not hold its last save");
    assert_eq!(dead, 0);
}

fn pg_workers(_: &mut Criterion) {
    if bench_mode() {
        for k in [1, 4] {
            if wanted(&format!("pg_workers/{k}")) {
                workers(k, 25_000);
            }
        }
    } else {
        workers(2, 500);
    }
}

// ---------------------------------------------------------------------------

criterion_group!(
    benches,
    pg_flush,
    pg_save_call,
    pg_burst_vs_awaited,
    pg_search,
    pg_workers
);

fn main() {
    if let Ok(id) = std::env::var(WORKER_ENV) {
        worker_main(&id);
        return;
    }
    let url = match std::env::var(URL_ENV) {
        Ok(u) if !u.is_empty() => u,
        _ => pg::server().admin_url(),
    };
    if !bench_mode() {
        check_with_database();
    }
    print_server(&url);
    benches();
    Criterion::default().configure_from_args().final_summary();
}
