//! The index file: the derived data (the FTS index, the vectors, the index
//! watermark) in a database of its own beside the memories file, at
//! `<database>-index`.
//!
//! Two files, two write locks: the writer's batches take the memories
//! file's lock and the indexer's transactions take the index file's, so a
//! burst is never kept waiting behind indexing (with one file, the
//! indexer's FTS transaction held the only write lock between the writer's
//! batches). The index is only ever derived from the memories: it may be
//! deleted, or found damaged or built for another memories file, and is
//! then rebuilt from scratch at open.
//!
//! Connections see both files: the indexer's connection has the index file
//! as `main` with the memories file attached as `mem` (it reads memories and
//! writes the index), a read connection the other way round, with the index
//! attached as `idx`. Table names are unique across the two files, so SQL
//! names them without a schema.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Transaction};

use crate::config::{Config, Synchronous};
use crate::error::Result;

use super::schema::{busy_slice, open_connection};

/// The index file of the memories database at `db`: `<db>-index`.
pub(crate) fn index_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-index");
    PathBuf::from(s)
}

pub(super) const INDEX_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS index_meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO index_meta (name, value) VALUES ('index_watermark', 0);
CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5 (
    ns, key, category, value,
    content = '', contentless_delete = 1, tokenize = 'ascii'
);
CREATE TABLE IF NOT EXISTS vector_models (
    model_id    TEXT PRIMARY KEY,
    table_name  TEXT    NOT NULL UNIQUE,
    dimension   INTEGER NOT NULL,
    watermark   INTEGER NOT NULL
) WITHOUT ROWID;
"#;

/// The FTS table, as [`INDEX_SCHEMA`] creates it (a reset drops and
/// re-creates it: faster than deleting a large index row by row).
const FTS_TABLE: &str = "CREATE VIRTUAL TABLE memories_fts USING fts5 (
    ns, key, category, value,
    content = '', contentless_delete = 1, tokenize = 'ascii'
);";

/// The indexer's connection: the index file (created if missing, rebuilt if
/// damaged) as `main`, the memories file attached as `mem`.
pub(crate) fn open_index_connection(config: &Config) -> Result<Connection> {
    let path = index_path(&config.path);
    let busy = busy_slice(config.busy_deadline);
    let sync = index_synchronous(config.synchronous);
    let conn = match open_index_file(&path, sync, busy) {
        Err(crate::Error::Sqlite(e)) if is_damaged(&e) => {
            tracing::warn!(
                path = %path.display(),
                error = %e,
                "the search index file is damaged: deleting it; it is rebuilt from the memories"
            );
            remove_index_files(&path)?;
            open_index_file(&path, sync, busy)?
        }
        other => other?,
    };
    attach(&conn, &config.path, "mem")?;
    Ok(conn)
}

/// The index file's `synchronous`: at most `NORMAL`. In WAL mode that
/// syncs at checkpoints only, not at every commit: a power loss may take
/// the index's last transactions, which the next open indexes again from the
/// memories (the watermark goes back with them). With `FULL` the indexer's
/// fsyncs competed on the disk with the writer's, which are the ones a
/// caller waits for.
fn index_synchronous(memories: Synchronous) -> Synchronous {
    match memories {
        Synchronous::Off => Synchronous::Off,
        Synchronous::Normal | Synchronous::Full => Synchronous::Normal,
    }
}

fn open_index_file(path: &Path, sync: Synchronous, busy: Duration) -> Result<Connection> {
    let conn = open_connection(path, sync, busy)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < INDEX_SCHEMA_VERSION {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {INDEX_SCHEMA} PRAGMA user_version = {INDEX_SCHEMA_VERSION}; COMMIT;"
        ))
        .inspect_err(|_| {
            let _ = conn.execute_batch("ROLLBACK");
        })?;
    }
    Ok(conn)
}

/// Bumped when the index file's schema changes.
const INDEX_SCHEMA_VERSION: i64 = 1;

/// Errors that mean the file is not a usable index (not its content's
/// fault): it is deleted and rebuilt.
fn is_damaged(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    )
}

fn remove_index_files(path: &Path) -> Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(PathBuf::from(p)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Attaches the database at `path` to `conn` as `schema`.
pub(super) fn attach(conn: &Connection, path: &Path, schema: &str) -> Result<()> {
    let Some(p) = path.to_str() else {
        return Err(crate::Error::Open {
            path: path.to_owned(),
            reason: "the path is not valid UTF-8".to_owned(),
        });
    };
    conn.execute(&format!("ATTACH DATABASE ?1 AS {schema}"), [p])?;
    Ok(())
}

/// A read connection's view of the index: the index file attached as `idx`
/// (it exists: the store's open created it), with `cache_kib` of page cache
/// for it.
pub(super) fn attach_index(conn: &Connection, db: &Path, cache_kib: i64) -> Result<()> {
    attach(conn, &index_path(db), "idx")?;
    conn.execute_batch(&format!("PRAGMA idx.cache_size = -{cache_kib}"))?;
    Ok(())
}

/// Starts a write transaction on the index file only. `BEGIN IMMEDIATE`
/// would take the write lock of every attached database, the memories
/// file's included: a deferred transaction whose first statement writes to
/// the index takes that file's lock (waiting out the busy timeout), and
/// reads of the memories file take only a read snapshot.
pub(super) fn begin_index_write(conn: &mut Connection) -> rusqlite::Result<Transaction<'_>> {
    let tx = conn.transaction()?;
    tx.prepare_cached("UPDATE index_meta SET value = value WHERE name = 'index_watermark'")?
        .execute([])?;
    Ok(tx)
}

pub(super) fn index_meta(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT value FROM index_meta WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
}

pub(super) fn index_meta_opt(conn: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT value FROM index_meta WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()
}

pub(super) fn set_index_meta(conn: &Connection, name: &str, value: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO index_meta (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![name, value])?;
    Ok(())
}

/// Why the index must be rebuilt before use, if it must.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stale {
    /// A new index file (or one from before the index had a file).
    New,
    /// Built by another version of the text normaliser.
    Normalizer,
    /// Built for another memories file (the database was replaced, or
    /// restored from a copy older than the index).
    OtherDatabase,
}

/// Whether the index (on the indexer's connection) must be rebuilt, and
/// why.
pub(super) fn staleness(conn: &Connection) -> rusqlite::Result<Option<Stale>> {
    let version = index_meta_opt(conn, "normalizer_version")?;
    let source = index_meta_opt(conn, "source_db")?;
    let watermark = index_meta(conn, "index_watermark")?;
    let db_id = super::schema::meta(conn, "db_id")?;
    let last_change = super::schema::meta(conn, "next_change")? - 1;
    Ok(match (version, source) {
        (None, _) | (_, None) => Some(Stale::New),
        (Some(_), Some(s)) if s != db_id || watermark > last_change => Some(Stale::OtherDatabase),
        (Some(v), _) if v != crate::text::NORMALIZER_VERSION => Some(Stale::Normalizer),
        _ => None,
    })
}

/// Empties the index (every vector table too) and ties it to the memories
/// file: watermark 0, so the catch-up that follows indexes every row.
pub(super) fn reset(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = begin_index_write(conn)?;
    let tables: Vec<String> = tx
        .prepare("SELECT table_name FROM vector_models")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for t in tables {
        tx.execute_batch(&format!("DROP TABLE IF EXISTS {t};"))?;
    }
    tx.execute_batch(&format!(
        "DELETE FROM vector_models;
         DELETE FROM index_meta WHERE name LIKE 'vector_rebuild:%';
         DROP TABLE IF EXISTS memories_fts;
         {FTS_TABLE}"
    ))?;
    let db_id = super::schema::meta(&tx, "db_id")?;
    set_index_meta(&tx, "index_watermark", 0)?;
    set_index_meta(&tx, "source_db", db_id)?;
    set_index_meta(&tx, "normalizer_version", crate::text::NORMALIZER_VERSION)?;
    tx.commit()
}
