//! Tests of the store against a real server: the throwaway one the
//! integration tests start (`tests/common/pg.rs`), started here too. Each
//! test makes its own database, dropped at the end.
//!
//! The main one is differential: random batches (duplicate keys, stamps
//! out of order, forgets of missing keys) applied by SQLite's writer and
//! by this one must give the same outcomes and the same rows.

use std::sync::Arc;

use super::conn::{parse_url, PgConn};
use crate::config::Config;
use crate::model::{OpPayload, StoreOp, WriteOutcome};
use crate::store::sqlite::SqliteWriter;
use crate::store::{BatchWriter, ItemResult};

/// The throwaway PostgreSQL server the integration tests use (started by
/// this test binary itself, once): the same harness, compiled in here.
#[allow(dead_code, unreachable_pub)]
#[path = "../../../../../tests/common/pg.rs"]
mod harness;

struct Db {
    /// Dropping it drops the database.
    _db: harness::Database,
    url: String,
}

impl Db {
    /// A database of its own on the test server, dropped at the end.
    fn new() -> Db {
        let db = harness::database();
        let url = db.url();
        Db { _db: db, url }
    }

    fn config(&self) -> Config {
        Config::new(&self.url)
    }

    fn conn(&self) -> PgConn {
        PgConn::open(&Arc::new(parse_url(&self.url).expect("URL"))).expect("connect")
    }
}

fn op(seq: u64, hlc: u64, ns: &str, key: &str, value: Option<&str>, meta: Option<&str>) -> StoreOp {
    StoreOp {
        seq,
        hlc,
        payload: Arc::new(OpPayload::new(ns, "c", key, value, meta, seq as i64 * 10)),
    }
}

type RowDump = (
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    bool,
    i64,
    i64,
    i64,
);

const DUMP: &str = "SELECT namespace, category, key, value, metadata, version, deleted, hlc,
                           created_at, updated_at FROM mnemo.memories ORDER BY namespace, category, key";

fn pg_rows(conn: &mut PgConn) -> Vec<RowDump> {
    conn.query(DUMP, &[])
        .expect("dump")
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
                r.get(8),
                r.get(9),
            )
        })
        .collect()
}

fn sqlite_rows(path: &std::path::Path) -> Vec<RowDump> {
    let conn = rusqlite::Connection::open(path).expect("sqlite");
    let mut st = conn
        .prepare(DUMP.replace("mnemo.", "").as_str())
        .expect("prepare");
    st.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
            r.get(8)?,
            r.get(9)?,
        ))
    })
    .expect("query")
    .collect::<rusqlite::Result<_>>()
    .expect("rows")
}

#[test]
fn random_batches_give_sqlites_outcomes_and_rows() {
    let db = Db::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite_path = dir.path().join("m.db");
    let mut sqlite = SqliteWriter::open(&Config::new(&sqlite_path)).expect("sqlite writer");
    let opened = super::open_store(&db.config()).expect("open");
    let mut pg = opened.writer;
    let keys = ["a", "b", "c", "Z", "é", "a b"];
    let values = [Some("v1"), Some("v2"), Some("v3"), None];
    let metas = [None, Some(r#"{"x":1}"#)];
    let mut rng = fastrand::Rng::with_seed(7);
    let mut seq = 0;
    let mut clock = 1_000u64;
    for _ in 0..150 {
        let n = rng.usize(1..25);
        let ops: Vec<StoreOp> = (0..n)
            .map(|_| {
                seq += 1;
                // Mostly forward, sometimes a stamp from the past (a late
                // replay), sometimes the same stamp again.
                let hlc = match rng.u8(0..10) {
                    0..=1 => clock.saturating_sub(rng.u64(0..50)),
                    2 => clock,
                    _ => {
                        clock += rng.u64(1..5);
                        clock
                    }
                };
                let ns = if rng.bool() { "n" } else { "m" };
                op(
                    seq,
                    hlc,
                    ns,
                    keys[rng.usize(..keys.len())],
                    values[rng.usize(..values.len())],
                    metas[rng.usize(..metas.len())],
                )
            })
            .collect();
        let a = sqlite.write_batch(&ops).expect("sqlite batch");
        let b = pg.write_batch(&ops).expect("pg batch");
        assert_eq!(a.results, b.results, "outcomes of {ops:#?}");
    }
    let mut conn = db.conn();
    assert_eq!(sqlite_rows(&sqlite_path), pg_rows(&mut conn));
    assert_eq!(sqlite.last_seq().unwrap(), pg.last_seq().unwrap());
    assert_eq!(sqlite.max_hlc().unwrap(), pg.max_hlc().unwrap());
}

#[test]
fn rejected_rows_are_dead_letters_and_a_database_fault_is_not() {
    let db = Db::new();
    let opened = super::open_store(&db.config()).expect("open");
    let mut w = opened.writer;
    let mut conn = db.conn();
    conn.batch(
        "CREATE FUNCTION mnemo.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.value LIKE '%poison%' THEN RAISE EXCEPTION 'refused %', NEW.key; END IF;
         RETURN NEW; END $$;
         CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON mnemo.memories
         FOR EACH ROW EXECUTE FUNCTION mnemo.refuse();",
    )
    .expect("trigger");
    let ops: Vec<StoreOp> = (0..40)
        .map(|i| {
            let v = if i % 13 == 5 { "poison" } else { "fine" };
            op(i + 1, 10 + i, "n", &format!("k{i:02}"), Some(v), None)
        })
        .collect();
    let report = w.write_batch(&ops).expect("committed around the bad rows");
    for (i, r) in report.results.iter().enumerate() {
        match r {
            ItemResult::DeadLettered(reason) => {
                assert_eq!(i % 13, 5, "{reason}");
                assert!(reason.contains(&format!("refused k{i:02}")), "{reason}");
            }
            ItemResult::Written(o) => assert_eq!(*o, WriteOutcome::Inserted { version: 1 }),
        }
    }
    let count = |conn: &mut PgConn, sql: &'static str| -> i64 {
        conn.query(sql, &[]).expect("count")[0].get(0)
    };
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM mnemo.dead_letters"),
        3
    );
    assert_eq!(count(&mut conn, "SELECT count(*) FROM mnemo.memories"), 37);
    // Every row failing alike: the database's fault, retried, nothing
    // dead-lettered.
    conn.batch(
        "CREATE OR REPLACE FUNCTION mnemo.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'the trigger is broken'; END $$;",
    )
    .expect("trigger");
    let ops = [
        op(100, 100, "n", "x", Some("a"), None),
        op(101, 101, "n", "y", Some("b"), None),
    ];
    let fault = w.write_batch(&ops).expect_err("a fault");
    assert!(fault.0.contains("the trigger is broken"), "{fault}");
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM mnemo.dead_letters"),
        3
    );
    // A missing table is the database's state: a fault, never a dead letter.
    conn.batch("DROP TRIGGER refuse ON mnemo.memories; ALTER TABLE mnemo.meta RENAME TO meta_gone")
        .expect("break");
    let fault = w.write_batch(&ops[..1]).expect_err("a fault");
    assert!(fault.0.contains("42P01"), "{fault}");
    conn.batch("ALTER TABLE mnemo.meta_gone RENAME TO meta")
        .expect("mend");
    w.write_batch(&ops).expect("committed once mended");
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM mnemo.dead_letters"),
        3
    );
}

#[test]
fn journal_marks_are_kept_per_machine_and_folder() {
    let db = Db::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        journal_dir: Some(dir.path().to_owned()),
        ..db.config()
    };
    let opened = super::open_store(&config).expect("open");
    let mut w = opened.writer;
    w.set_journal(Some("123-abc".into()));
    w.write_batch(&[op(7, 7, "n", "k", Some("v"), None)])
        .expect("batch");
    w.set_journal(None);
    assert_eq!(w.journal_mark("123-abc").unwrap(), 7);
    let mut conn = db.conn();
    // Another machine's mark, and one of this machine's other folder.
    conn.batch("INSERT INTO mnemo.journal_marks VALUES ('elsewhere:/j/9-f', 3), ('x', 1)")
        .expect("insert");
    // The journal still has a file: kept.
    std::fs::write(dir.path().join("123-abc.lock"), b"").expect("file");
    assert_eq!(w.prune_journal_marks(dir.path()).unwrap(), 0);
    std::fs::remove_file(dir.path().join("123-abc.lock")).expect("rm");
    assert_eq!(w.prune_journal_marks(dir.path()).unwrap(), 1);
    assert_eq!(w.journal_mark("123-abc").unwrap(), 0);
    let left: i64 = conn
        .query("SELECT count(*) FROM mnemo.journal_marks", &[])
        .expect("count")[0]
        .get(0);
    assert_eq!(left, 2, "other machines' marks are never pruned");
    assert_eq!(w.purge_tombstones(u64::MAX, i64::MAX).unwrap(), 0);
}

#[test]
fn concurrent_writers_and_indexers_never_deadlock() {
    let db = Db::new();
    drop(super::open_store(&db.config()).expect("schema"));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let indexers: Vec<_> = (0..2)
        .map(|_| {
            let config = db.config();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut index = super::open_store(&config).expect("open").index;
                let mut passes = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    index
                        .index_pending(100, std::time::Duration::from_secs(30), None)
                        .expect("an indexing pass");
                    passes += 1;
                }
                passes
            })
        })
        .collect();
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let config = db.config();
            std::thread::spawn(move || {
                let mut writer = super::open_store(&config).expect("open").writer;
                let mut rng = fastrand::Rng::with_seed(w);
                for b in 0..40u64 {
                    // Overlapping keys, each batch in its own random order.
                    let mut keys: Vec<usize> = (0..300).collect();
                    rng.shuffle(&mut keys);
                    let ops: Vec<StoreOp> = keys[..200]
                        .iter()
                        .enumerate()
                        .map(|(i, k)| {
                            let seq = (w * 1_000_000) + b * 1000 + i as u64;
                            let value = if rng.u8(0..10) == 0 {
                                None
                            } else {
                                Some("garden")
                            };
                            op(seq, seq, "n", &format!("k{k:03}"), value, None)
                        })
                        .collect();
                    writer.write_batch(&ops).expect("no deadlock, no fault");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for i in indexers {
        assert!(i.join().expect("indexer") > 0);
    }
    let mut index = super::open_store(&db.config()).expect("open").index;
    index
        .index_pending(1000, std::time::Duration::from_secs(30), None)
        .expect("last pass");
    let (watermark, last) = index.position().expect("position");
    assert_eq!(watermark, last, "nothing queued");
    let mut conn = db.conn();
    let unindexed: i64 = conn
        .query(
            "SELECT count(*) FROM mnemo.memories
             WHERE indexed_change < change_seq OR (NOT deleted AND tsv IS NULL)",
            &[],
        )
        .expect("count")[0]
        .get(0);
    assert_eq!(unindexed, 0);
}
