//! Tests of the SQLite store.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection};

use super::index::*;
use super::read::*;
use super::schema::*;
use super::vectors::*;
use super::write::*;
use crate::config::{Config, Synchronous};
use crate::embed::{to_blob, Embedder};
use crate::error::Result;
use crate::model::OpPayload;
use crate::model::{StoreOp, WriteOutcome};
use crate::store::{BatchWriter, IndexPass, ItemResult};
use crate::text::Query;
use std::sync::Arc;

fn op(seq: u64, ns: &str, key: &str, value: Option<&str>) -> StoreOp {
    StoreOp {
        seq,
        hlc: seq << 16,
        payload: Arc::new(OpPayload::new(ns, "c", key, value, None, seq as i64)),
    }
}

/// An indexer's connection to the database at `path` (its index file tied
/// to it, as an engine's open does).
fn indexer(path: &Path) -> Result<Connection> {
    open_indexer(&Config::new(path))
}

fn writer(dir: &tempfile::TempDir) -> (SqliteWriter, Config) {
    let config = Config::new(dir.path().join("t.db"));
    (SqliteWriter::open(&config).unwrap(), config)
}

#[test]
fn batch_outcomes_cover_every_case() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut w, _) = writer(&dir);
    let r = w
        .write_batch(&[op(1, "n", "a", Some("x")), op(2, "n", "b", Some("y"))])
        .unwrap();
    assert_eq!(
        r.results,
        vec![
            ItemResult::Written(WriteOutcome::Inserted { version: 1 }),
            ItemResult::Written(WriteOutcome::Inserted { version: 1 }),
        ]
    );
    assert_eq!(r.last_change, 2);
    let r = w
        .write_batch(&[
            op(3, "n", "a", Some("x")),
            op(4, "n", "b", Some("z")),
            op(5, "n", "zz", None),
        ])
        .unwrap();
    assert_eq!(
        r.results,
        vec![
            ItemResult::Written(WriteOutcome::Unchanged { version: 1 }),
            ItemResult::Written(WriteOutcome::Updated { version: 2 }),
            ItemResult::Written(WriteOutcome::NotFound),
        ]
    );
    assert_eq!(
        r.last_change, 3,
        "unchanged and not-found consume no change number"
    );
    let r = w.write_batch(&[op(6, "n", "a", None)]).unwrap();
    assert_eq!(
        r.results,
        vec![ItemResult::Written(WriteOutcome::Deleted { version: 2 })]
    );
    assert_eq!(get(w.connection(), "n", "c", "a")?, None);
    let r = w.write_batch(&[op(7, "n", "a", Some("back"))]).unwrap();
    assert_eq!(
        r.results,
        vec![ItemResult::Written(WriteOutcome::Updated { version: 3 })]
    );
    assert_eq!(last_seq(w.connection())?, 7);
    Ok(())
}

#[test]
fn a_rejected_row_is_dead_lettered_and_the_rest_commit() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut w, _) = writer(&dir);
    w.connection().execute_batch(
        "CREATE TRIGGER reject_poison BEFORE INSERT ON memories WHEN NEW.value = 'poison'
         BEGIN SELECT RAISE(ABORT, 'poison rejected'); END;",
    )?;
    let r = w
        .write_batch(&[
            op(1, "n", "a", Some("ok")),
            op(2, "n", "b", Some("poison")),
            op(3, "n", "c", Some("ok")),
        ])
        .unwrap();
    assert_eq!(
        r.results[0],
        ItemResult::Written(WriteOutcome::Inserted { version: 1 })
    );
    assert!(
        matches!(&r.results[1], ItemResult::DeadLettered(reason) if reason.contains("poison rejected"))
    );
    assert_eq!(
        r.results[2],
        ItemResult::Written(WriteOutcome::Inserted { version: 1 })
    );
    let (rows, dead) = counts(w.connection())?;
    assert_eq!((rows, dead), (2, 1));
    Ok(())
}

#[test]
fn a_locked_database_is_a_fault_and_nothing_commits() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = Config::new(dir.path().join("t.db"));
    config.busy_deadline = Duration::from_millis(200);
    let mut w = SqliteWriter::open(&config)?;
    let blocker = open_connection(&config.path, Synchronous::Full, Duration::from_millis(1))?;
    blocker.execute_batch("BEGIN IMMEDIATE")?;
    let err = w.write_batch(&[op(1, "n", "a", Some("x"))]).unwrap_err();
    assert!(err.0.contains("locked"), "{err}");
    blocker.execute_batch("ROLLBACK")?;
    w.write_batch(&[op(2, "n", "a", Some("x"))]).unwrap();
    Ok(())
}

/// `op` with an explicit stamp.
fn stamped(seq: u64, hlc: u64, key: &str, value: Option<&str>) -> StoreOp {
    StoreOp {
        hlc,
        ..op(seq, "n", key, value)
    }
}

fn outcome(w: &mut SqliteWriter, op: StoreOp) -> WriteOutcome {
    match &w.write_batch(&[op]).unwrap().results[0] {
        ItemResult::Written(o) => *o,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_newer_stamp_wins_whatever_the_order_of_arrival() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut w, _) = writer(&dir);
    let value =
        |w: &SqliteWriter, key: &str| get(w.connection(), "n", "c", key).unwrap().map(|r| r.value);
    // x: "newer" (stamp 20) lands first; the older save (10) arrives late.
    assert_eq!(
        outcome(&mut w, stamped(1, 20, "x", Some("newer"))),
        WriteOutcome::Inserted { version: 1 }
    );
    assert_eq!(
        outcome(&mut w, stamped(2, 10, "x", Some("old"))),
        WriteOutcome::Outdated
    );
    assert_eq!(value(&w, "x").as_deref(), Some("newer"));
    // y: forgotten (20) before it was ever stored here; the save (10)
    // arriving late must not bring it back.
    assert_eq!(
        outcome(&mut w, stamped(3, 20, "y", None)),
        WriteOutcome::NotFound
    );
    assert_eq!(
        outcome(&mut w, stamped(4, 10, "y", Some("old"))),
        WriteOutcome::Outdated
    );
    assert_eq!(value(&w, "y"), None);
    // A newer save after the forget does come back.
    assert_eq!(
        outcome(&mut w, stamped(5, 30, "y", Some("back"))),
        WriteOutcome::Inserted { version: 1 }
    );
    // z: the same value saved again later (unchanged) still counts as
    // that later save: an older different value stays out.
    outcome(&mut w, stamped(6, 10, "z", Some("a")));
    assert_eq!(
        outcome(&mut w, stamped(7, 30, "z", Some("a"))),
        WriteOutcome::Unchanged { version: 1 }
    );
    assert_eq!(
        outcome(&mut w, stamped(8, 20, "z", Some("b"))),
        WriteOutcome::Outdated
    );
    assert_eq!(value(&w, "z").as_deref(), Some("a"));
    // An older forget does not remove a newer save.
    assert_eq!(
        outcome(&mut w, stamped(9, 25, "z", None)),
        WriteOutcome::Outdated
    );
    assert_eq!(value(&w, "z").as_deref(), Some("a"));
    // Equal stamps: the later arrival wins ("at least as new").
    assert_eq!(
        outcome(&mut w, stamped(10, 30, "z", Some("c"))),
        WriteOutcome::Updated { version: 2 }
    );
    assert_eq!(max_hlc(w.connection())?, 30);
    Ok(())
}

#[test]
fn tombstones_are_purged_only_below_the_horizon() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut w, config) = writer(&dir);
    outcome(&mut w, stamped(1, 10, "a", Some("v")));
    outcome(&mut w, stamped(2, 20, "a", None));
    outcome(&mut w, stamped(3, 40, "b", None));
    let mut ix = indexer(&config.path)?;
    index_pending(&mut ix, 100, Duration::from_secs(1))?;
    let tombstones = |w: &SqliteWriter| -> i64 {
        w.connection()
            .query_row("SELECT count(*) FROM memories WHERE deleted = 1", [], |r| {
                r.get(0)
            })
            .unwrap()
    };
    assert_eq!(tombstones(&w), 2, "indexing keeps them");
    let indexed = index_position(&ix)?.0;
    assert_eq!(
        purge_tombstones(w.connection(), 30, indexed - 1)?,
        0,
        "not before the index has seen them"
    );
    assert_eq!(purge_tombstones(w.connection(), 30, indexed)?, 1);
    assert_eq!(tombstones(&w), 1);
    assert_eq!(
        outcome(&mut w, stamped(4, 35, "b", Some("late"))),
        WriteOutcome::Outdated
    );
    Ok(())
}

#[test]
fn index_follows_changes_and_search_is_namespaced() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut w, config) = writer(&dir);
    w.write_batch(&[
        op(1, "alice", "hobby", Some("I like singing and writing")),
        op(2, "bob", "hobby", Some("I like singing opera")),
    ])
    .unwrap();
    let mut ix = indexer(&config.path)?;
    let pass = index_pending(&mut ix, 1, Duration::from_secs(1))?;
    assert_eq!(
        pass,
        IndexPass {
            rows: 2,
            watermark: 2
        }
    );
    let hits = search(&ix, "alice", &Query::parse("singing"), None, 10)?;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].record.namespace, "alice");
    // hostile text is just words
    for q in [
        "\"singing",
        "singing*",
        "NEAR(singing writing)",
        "'; DROP TABLE memories; --",
        ")(",
    ] {
        search(&ix, "alice", &Query::parse(q), None, 10)?;
    }
    w.write_batch(&[op(3, "alice", "hobby", None)]).unwrap();
    index_pending(&mut ix, 100, Duration::from_secs(1))?;
    assert!(search(&ix, "alice", &Query::parse("singing"), None, 10)?.is_empty());
    let tombstones: i64 =
        ix.query_row("SELECT count(*) FROM memories WHERE deleted = 1", [], |r| {
            r.get(0)
        })?;
    assert_eq!(
        tombstones, 1,
        "tombstones outlive indexing (purged at open)"
    );
    assert_eq!(index_position(&ix)?, (3, 3));
    Ok(())
}

fn vector_count(conn: &Connection, table: &str) -> Result<i64> {
    Ok(conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?)
}

// ---- vectors with several engines on one database ----

use crate::embed::probe::LockProbe;
use crate::embed::NgramEmbedder;
use std::sync::atomic::Ordering::Relaxed;

fn ops(from: u64, to: u64, value: &str) -> Vec<StoreOp> {
    (from..=to)
        .map(|i| op(i, "n", &format!("k{i}"), Some(value)))
        .collect()
}

fn connect(path: &Path) -> Connection {
    indexer(path).unwrap()
}

/// A database holding `first`, indexed without vectors: the writer (to
/// commit more, from a hook too), the path, and engine A's connection.
fn indexed_db(
    dir: &tempfile::TempDir,
    first: &[StoreOp],
) -> Result<(
    std::sync::Mutex<SqliteWriter>,
    std::path::PathBuf,
    Connection,
)> {
    let (mut w, config) = writer(dir);
    w.write_batch(first).unwrap();
    let mut a = connect(&config.path);
    index_pending(&mut a, 1000, Duration::from_secs(1))?;
    Ok((std::sync::Mutex::new(w), config.path, a))
}

/// The vector table holds exactly one vector per live memory and says
/// it reflects the index.
fn assert_vectors_complete(conn: &Connection) -> Result<()> {
    let e = NgramEmbedder::new();
    let live: i64 = conn.query_row("SELECT count(*) FROM memories WHERE deleted = 0", [], |r| {
        r.get(0)
    })?;
    assert_eq!(vector_count(conn, &vector_table(e.model_id()))?, live);
    let (index, _) = index_position(conn)?;
    assert_eq!(vector_model(conn, &e)?, Some((e.dimension() as i64, index)));
    Ok(())
}

#[test]
fn a_rebuild_in_progress_is_left_to_its_owner_and_a_stale_one_is_taken_over() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (_, path, mut a) = indexed_db(&dir, &ops(1, 200, "tomatoes basil"))?;
    // Engine B, same model, opens while A is rebuilding: it leaves the
    // rebuild alone (the table stays A's).
    let e = LockProbe::with_hook(&path, |n| {
        if n == 2 {
            let mut b = connect(&path);
            sync_vectors(&mut b, &NgramEmbedder::new(), Duration::from_secs(1)).unwrap();
            let (_, w) = vector_model(&b, &NgramEmbedder::new()).unwrap().unwrap();
            assert!(w < 0, "B did not finish or restart A's rebuild");
        }
    });
    sync_vectors(&mut a, &e, Duration::from_secs(5))?;
    assert!(e.calls.load(Relaxed) >= 4, "200 rows in batches of 64");
    assert_vectors_complete(&a)?;

    // A rebuild whose owner stopped beating is taken over; the old
    // owner, back, finds the rebuild no longer its own and stops
    // without marking anything.
    a.execute("DELETE FROM vector_models", [])?;
    let e = LockProbe::with_hook(&path, |n| {
        if n == 2 {
            let mut b = connect(&path);
            b.execute(
                "UPDATE index_meta SET value = 0 WHERE name LIKE 'vector_rebuild:%'",
                [],
            )
            .unwrap();
            sync_vectors(&mut b, &NgramEmbedder::new(), Duration::from_secs(1)).unwrap();
        }
    });
    sync_vectors(&mut a, &e, Duration::from_secs(5))?;
    assert_eq!(e.calls.load(Relaxed), 2, "A stopped after B took over");
    assert_vectors_complete(&a)?;
    assert_eq!(e.locked.load(Relaxed) + e.inline.load(Relaxed), 0);
    Ok(())
}

#[test]
fn rows_another_engine_indexes_meanwhile_are_not_embedded_under_the_lock() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (w, path, mut a) = indexed_db(&dir, &ops(1, 10, "tomatoes basil"))?;
    index_pending_with(
        &mut a,
        1000,
        Duration::from_secs(1),
        Some(&NgramEmbedder::new()),
    )?;
    w.lock()
        .unwrap()
        .write_batch(&ops(11, 20, "tomatoes basil"))
        .unwrap();
    // While A embeds its chunk, B (same model) indexes it, and more
    // saves commit.
    let e = LockProbe::with_hook(&path, |n| {
        if n == 1 {
            let mut b = connect(&path);
            index_pending_with(
                &mut b,
                1000,
                Duration::from_secs(1),
                Some(&NgramEmbedder::new()),
            )
            .unwrap();
            w.lock()
                .unwrap()
                .write_batch(&ops(21, 60, "passport office"))
                .unwrap();
        }
    });
    index_pending_with(&mut a, 2000, Duration::from_secs(5), Some(&e))?;
    index_pending_with(&mut a, 2000, Duration::from_secs(5), Some(&e))?;
    assert_eq!(
        e.locked.load(Relaxed),
        0,
        "embedded while holding the write lock"
    );
    assert_eq!(e.inline.load(Relaxed), 0);
    assert_vectors_complete(&a)?;
    Ok(())
}

#[test]
fn catching_up_after_a_lexical_engine_embeds_outside_the_lock() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (w, path, mut a) = indexed_db(&dir, &ops(1, 100, "tomatoes basil"))?;
    // A lexical engine saves and indexes 200 more (and forgets one)
    // while A rebuilds.
    let e = LockProbe::with_hook(&path, |n| {
        if n == 1 {
            let mut w = w.lock().unwrap();
            w.write_batch(&ops(101, 300, "passport office")).unwrap();
            w.write_batch(&[op(301, "n", "k7", None)]).unwrap();
            index_pending(&mut connect(&path), 1000, Duration::from_secs(1)).unwrap();
        }
    });
    sync_vectors(&mut a, &e, Duration::from_secs(5))?;
    assert_eq!(
        e.locked.load(Relaxed),
        0,
        "embedded while holding the write lock"
    );
    assert_eq!(e.inline.load(Relaxed), 0);
    assert_vectors_complete(&a)?;
    Ok(())
}

#[test]
fn a_vector_is_never_written_for_an_id_another_memory_took() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut first = ops(1, 49, "passport office visa");
    first.push(op(50, "n", "k50", Some("grows tomatoes and basil")));
    let (w, path, mut a) = indexed_db(&dir, &first)?;
    // While A embeds its first batch (k50 among it), k50 is forgotten,
    // the tombstone indexed and purged, and a new memory takes its id.
    let e = LockProbe::with_hook(&path, |n| {
        if n == 1 {
            let mut w = w.lock().unwrap();
            w.write_batch(&[op(100, "n", "k50", None)]).unwrap();
            index_pending(&mut connect(&path), 1000, Duration::from_secs(1)).unwrap();
            w.write_batch(&[op(101, "n", "car", Some("the car is blue"))])
                .unwrap();
        }
    });
    sync_vectors(&mut a, &e, Duration::from_secs(5))?;
    let q = NgramEmbedder::new().embed("tomatoes basil");
    let hits = vector_search(&a, "n", e.model_id(), &q, None, 0.05, 10)?;
    assert!(hits.iter().all(|(h, _)| h.record.key != "car"), "{hits:?}");
    // Once the new memory is indexed it has its own vector.
    index_pending_with(
        &mut a,
        1000,
        Duration::from_secs(1),
        Some(&NgramEmbedder::new()),
    )?;
    let q = NgramEmbedder::new().embed("the car is blue");
    let hits = vector_search(&a, "n", e.model_id(), &q, None, 0.05, 1)?;
    assert_eq!(hits[0].0.record.key, "car");
    assert_vectors_complete(&a)?;
    Ok(())
}

#[test]
fn sqlite_vec_is_loaded() -> Result<()> {
    let conn = open_connection(
        Path::new(":memory:"),
        Synchronous::Full,
        Duration::from_secs(1),
    )?;
    let v: String = conn.query_row("SELECT vec_version()", [], |r| r.get(0))?;
    assert!(v.starts_with('v'), "{v}");
    let d: f64 = conn.query_row(
        "SELECT vec_distance_cosine(?1, ?2)",
        params![to_blob(&[1.0, 0.0]), to_blob(&[0.0, 1.0])],
        |r| r.get(0),
    )?;
    assert!((d - 1.0).abs() < 1e-6);
    Ok(())
}

#[test]
fn table_names_are_sanitised_and_distinct() {
    let a = vector_table("all-MiniLM-L6-v2");
    assert!(a.starts_with("vectors_all_minilm_l6_v2_"), "{a}");
    assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    assert_ne!(vector_table("a.b"), vector_table("a-b"));
    assert!(vector_table("x\"; DROP TABLE memories; --").starts_with("vectors_x___drop_"));
}

#[test]
fn vectors_follow_the_index_and_are_namespaced() -> Result<()> {
    use crate::embed::NgramEmbedder;
    let dir = tempfile::tempdir()?;
    let (mut w, config) = writer(&dir);
    w.write_batch(&[
        op(1, "alice", "garden", Some("Grows tomatoes and basil")),
        op(2, "alice", "trip", Some("Passport expires in November")),
        op(3, "bob", "garden", Some("Grows tomatoes too")),
    ])
    .unwrap();
    let mut ix = indexer(&config.path)?;
    // Indexed lexically first (another engine, say): the vectors catch up
    // on the first pass with an embedder.
    index_pending(&mut ix, 100, Duration::from_secs(1))?;
    let e = NgramEmbedder::new();
    let table = vector_table(e.model_id());
    index_pending_with(&mut ix, 100, Duration::from_secs(1), Some(&e))?;
    assert_eq!(vector_count(&ix, &table)?, 3);
    let q = e.embed("tomato");
    let hits = vector_search(&ix, "alice", e.model_id(), &q, None, 0.1, 10)?;
    assert_eq!(hits.len(), 1, "the passport memory is not similar");
    assert_eq!(hits[0].0.record.key, "garden");
    assert_eq!(hits[0].0.record.namespace, "alice");
    assert!(vector_search(&ix, "alice", e.model_id(), &q, Some("c"), 0.1, 10)?.len() == 1);
    assert!(vector_search(&ix, "alice", "other-model", &q, None, 0.1, 10)?.is_empty());

    // Another engine indexes without vectors: they lag, and are not used
    // until the next pass with the embedder rebuilds them.
    w.write_batch(&[op(10, "alice", "garden2", Some("tomatoes again"))])
        .unwrap();
    index_pending(&mut ix, 100, Duration::from_secs(1))?;
    assert!(vector_search(&ix, "alice", e.model_id(), &q, None, 0.1, 10)?.is_empty());
    index_pending_with(&mut ix, 100, Duration::from_secs(1), Some(&e))?;
    assert_eq!(
        vector_search(&ix, "alice", e.model_id(), &q, None, 0.1, 10)?.len(),
        2
    );
    w.write_batch(&[op(11, "alice", "garden2", None)]).unwrap();
    index_pending_with(&mut ix, 100, Duration::from_secs(1), Some(&e))?;

    // A forget removes the vector in the indexing transaction.
    w.write_batch(&[op(4, "alice", "garden", None)]).unwrap();
    index_pending_with(&mut ix, 100, Duration::from_secs(1), Some(&e))?;
    assert_eq!(vector_count(&ix, &table)?, 2);
    assert!(vector_search(&ix, "alice", e.model_id(), &q, None, 0.1, 10)?.is_empty());

    // A new normaliser clears the vectors with the FTS rows; the
    // catch-up re-embeds the live memories.
    ix.execute(
        "INSERT OR REPLACE INTO index_meta (name, value) VALUES ('normalizer_version', -1)",
        [],
    )?;
    assert!(reset_index_if_stale(&mut ix)?);
    let models: i64 = ix.query_row("SELECT count(*) FROM vector_models", [], |r| r.get(0))?;
    assert_eq!(models, 0, "the vector tables are dropped with the FTS rows");
    index_pending_with(&mut ix, 100, Duration::from_secs(1), Some(&e))?;
    assert_eq!(vector_count(&ix, &table)?, 2);
    let wm: i64 = ix.query_row(
        "SELECT watermark FROM vector_models WHERE model_id = ?1",
        [e.model_id()],
        |r| r.get(0),
    )?;
    assert_eq!(wm, index_position(&ix)?.0);
    Ok(())
}

#[test]
fn migrate_moves_a_version_3_databases_index_out() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = Config::new(dir.path().join("v3.db"));
    // A version 3 database as the previous release made it: the FTS table,
    // the vector models and the watermark in the memories file.
    let old = Connection::open(&config.path)?;
    old.execute_batch(&format!(
        "{SCHEMA}
         CREATE VIRTUAL TABLE memories_fts USING fts5 (
             ns, key, category, value,
             content = '', contentless_delete = 1, tokenize = 'ascii');
         CREATE TABLE vector_models (model_id TEXT PRIMARY KEY, table_name TEXT NOT NULL UNIQUE,
             dimension INTEGER NOT NULL, watermark INTEGER NOT NULL) WITHOUT ROWID;
         CREATE TABLE vectors_old (id INTEGER PRIMARY KEY, namespace TEXT, vector BLOB);
         INSERT INTO vector_models VALUES ('old', 'vectors_old', 4, 1);
         INSERT INTO meta (name, value) VALUES ('index_watermark', 1), ('normalizer_version', 2);
         DELETE FROM meta WHERE name = 'db_id';
         PRAGMA user_version = 3;"
    ))?;
    old.execute(
        "INSERT INTO memories (namespace, category, key, value, version, seq, change_seq,
                               created_at, updated_at, hlc) VALUES ('n', 'c', 'k', 'basil', 1, 1, 1, 5, 5, 5)",
        [],
    )?;
    old.execute("UPDATE meta SET value = 2 WHERE name = 'next_change'", [])?;
    drop(old);
    let w = SqliteWriter::open(&config)?;
    let left: Vec<String> = w
        .connection()
        .prepare(
            "SELECT name FROM sqlite_master WHERE name IN
               ('memories_fts', 'vector_models', 'vectors_old', 'memories_tombstones')",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    assert_eq!(left, ["memories_tombstones"]);
    assert!(meta(w.connection(), "db_id")? > 0);
    // The index file is built from the memories.
    let mut ix = indexer(&config.path)?;
    assert_eq!(index_position(&ix)?, (0, 1));
    index_pending(&mut ix, 100, Duration::from_secs(1))?;
    assert_eq!(search(&ix, "n", &Query::parse("basil"), None, 10)?.len(), 1);
    Ok(())
}

#[test]
fn the_index_file_is_rebuilt_when_deleted_damaged_or_another_databases() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut w, config) = writer(&dir);
    w.write_batch(&ops(1, 20, "tomatoes basil")).unwrap();
    let found = |ix: &mut Connection| -> Result<usize> {
        index_pending(ix, 100, Duration::from_secs(1))?;
        Ok(search(ix, "n", &Query::parse("basil"), None, 100)?.len())
    };
    let index = super::index_db::index_path(&config.path);
    assert_eq!(found(&mut indexer(&config.path)?)?, 20);

    // Deleted: built again.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", index.display()));
    }
    assert_eq!(found(&mut indexer(&config.path)?)?, 20);

    // Damaged (not a database): deleted and built again.
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", index.display()));
    }
    std::fs::write(&index, vec![0x5a; 8192])?;
    assert_eq!(found(&mut indexer(&config.path)?)?, 20);

    // Another database's index (the memories file was replaced): reset.
    let other = tempfile::tempdir()?;
    let (mut w2, config2) = writer(&other);
    w2.write_batch(&ops(1, 5, "passport office")).unwrap();
    drop((w, w2));
    let mut ix = indexer(&config.path)?;
    index_pending(&mut ix, 100, Duration::from_secs(1))?;
    drop(ix);
    std::fs::copy(&index, super::index_db::index_path(&config2.path))?;
    let mut ix2 = indexer(&config2.path)?;
    index_pending(&mut ix2, 100, Duration::from_secs(1))?;
    assert!(search(&ix2, "n", &Query::parse("basil"), None, 100)?.is_empty());
    assert_eq!(
        search(&ix2, "n", &Query::parse("passport"), None, 100)?.len(),
        5
    );
    Ok(())
}

#[test]
fn the_indexer_never_takes_the_memories_files_write_lock() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut w, config) = writer(&dir);
    w.write_batch(&ops(1, 50, "tomatoes basil")).unwrap();
    let mut ix = indexer(&config.path)?;
    // An indexing transaction is open (index file locked) while the
    // writer commits a batch: with one file it waited for the lock.
    let tx = super::index_db::begin_index_write(&mut ix)?;
    let n: i64 = tx.query_row("SELECT count(*) FROM memories", [], |r| r.get(0))?;
    assert_eq!(n, 50);
    let blocker = std::thread::scope(|s| {
        s.spawn(|| {
            let mut w2 = SqliteWriter::open(&config).unwrap();
            w2.write_batch(&ops(51, 60, "passport")).map(|_| ())
        })
        .join()
        .unwrap()
    });
    assert!(blocker.is_ok(), "the writer waited for the indexer");
    tx.commit()?;
    drop(w);
    Ok(())
}

#[test]
fn migrate_gives_a_version_2_database_its_clock() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = Config::new(dir.path().join("v2.db"));
    // A version 2 database as the previous release made it.
    let old = Connection::open(&config.path)?;
    let v2 = SCHEMA.replace("    hlc         INTEGER NOT NULL DEFAULT 0,\n", "");
    assert_ne!(v2, SCHEMA);
    old.execute_batch(&format!("{v2} PRAGMA user_version = 2;"))?;
    old.execute(
        "INSERT INTO memories (namespace, category, key, value, version, seq, change_seq,
                               created_at, updated_at) VALUES ('n', 'c', 'k', 'v', 1, 1, 1, 5, 5)",
        [],
    )?;
    drop(old);
    let mut w = SqliteWriter::open(&config)?;
    assert_eq!(max_hlc(w.connection())?, crate::clock::from_ms(5));
    // A later save wins, an earlier one does not.
    let older = stamped(2, crate::clock::from_ms(4), "k", Some("older"));
    assert_eq!(outcome(&mut w, older), WriteOutcome::Outdated);
    let newer = stamped(3, crate::clock::from_ms(6), "k", Some("newer"));
    assert_eq!(outcome(&mut w, newer), WriteOutcome::Updated { version: 2 });
    Ok(())
}

#[test]
fn ranked_rows_whose_memory_is_gone_are_made_up_from_deeper() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut w, config) = writer(&dir);
    w.write_batch(&ops(1, 30, "tomatoes basil")).unwrap();
    let mut ix = indexer(&config.path)?;
    index_pending(&mut ix, 100, Duration::from_secs(1))?;
    // The 25 newest are forgotten and not yet indexed: the index still
    // ranks them first (equal scores, newest first).
    let forgets: Vec<StoreOp> = (6..=30)
        .map(|i| op(100 + i, "n", &format!("k{i}"), None))
        .collect();
    w.write_batch(&forgets).unwrap();
    let hits = search(&ix, "n", &Query::parse("basil"), None, 3)?;
    let keys: Vec<&str> = hits.iter().map(|h| h.record.key.as_str()).collect();
    assert_eq!(keys, ["k5", "k4", "k3"], "live rows, newest first");
    assert_eq!(search(&ix, "n", &Query::parse("basil"), None, 50)?.len(), 5);
    // The category form agrees.
    let hits = search(&ix, "n", &Query::parse("basil"), Some("c"), 3)?;
    let keys: Vec<&str> = hits.iter().map(|h| h.record.key.as_str()).collect();
    assert_eq!(keys, ["k5", "k4", "k3"]);
    Ok(())
}
