//! SQLite: schema, the batch writer, the indexer's steps and the reads.
//! Plain synchronous code; each function takes the connection it runs on.
//!
//! Tables:
//! - `memories`: one row per (namespace, category, key); forgets leave a
//!   tombstone (`deleted = 1`) until the indexer has removed the key from the
//!   index, then the tombstone is purged. Every change gets a database-wide
//!   increasing `change_seq`, assigned under the write lock.
//! - `memories_fts`: contentless FTS5 over normalised text, rowid =
//!   `memories.id`, plus a namespace token column.
//! - `dead_letters`: rows the database rejected, with the reason.
//! - `meta`: counters (`next_change`, `index_watermark`, `last_seq`).
//! - `journal_marks`: per crash journal, the highest sequence number
//!   committed from it (written in the batch's own transaction).

use std::path::Path;
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::config::{Config, Synchronous};
use crate::error::{Failure, Result};
use crate::model::{now_ms, MemoryRecord, SearchHit, StoreOp, WriteOutcome};
use crate::store::{retry_busy, AttemptError, BatchReport, BatchWriter, ItemResult};
use crate::text::{namespace_token, normalize, Query};

const SCHEMA: &str = r#"
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
    UNIQUE (namespace, category, key)
);
CREATE INDEX IF NOT EXISTS memories_by_change ON memories (change_seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    id          INTEGER PRIMARY KEY,
    namespace   TEXT    NOT NULL,
    category    TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    value       TEXT,
    metadata    TEXT,
    seq         INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    failed_at   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal_marks (
    journal TEXT PRIMARY KEY,
    seq     INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('next_change', 1), ('index_watermark', 0), ('last_seq', 0);
CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5 (
    ns, key, category, value,
    content = '', contentless_delete = 1, tokenize = 'ascii'
);
"#;

/// bm25 column weights: namespace token, key, category, value. Key and
/// category name what a memory is about, so they weigh more than the value.
const BM25: &str = "bm25(memories_fts, 0.0, 3.0, 2.0, 1.0)";

/// Opens a connection with the engine's pragmas: WAL, the configured
/// `synchronous`, and a `busy_timeout` (the first line of defence against a
/// locked database; [`retry_busy`] is the second).
pub(crate) fn open_connection(
    path: &Path,
    sync: Synchronous,
    busy: Duration,
) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(busy)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", sync.pragma())?;
    Ok(conn)
}

/// The per-statement busy timeout: a slice of the delivery deadline, so the
/// retry loop around it still gets to back off and give up on time.
pub(crate) fn busy_slice(deadline: Duration) -> Duration {
    (deadline / 10).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Creates the schema if missing. Idempotent.
pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    // A plain read first: opening a database whose schema is in place must
    // not need the write lock (another process may hold it for a while).
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version >= SCHEMA_VERSION {
        return Ok(());
    }
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    ))
    .inspect_err(|_| {
        let _ = conn.execute_batch("ROLLBACK");
    })?;
    Ok(())
}

/// Bumped when the schema changes; stored in SQLite's `user_version`.
const SCHEMA_VERSION: i64 = 1;

fn meta(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
}

fn set_meta(conn: &Connection, name: &str, value: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE meta SET value = ?2 WHERE name = ?1")?
        .execute(params![name, value])?;
    Ok(())
}

/// The last save sequence number committed by any engine on this database.
pub(crate) fn last_seq(conn: &Connection) -> Result<u64> {
    Ok(meta(conn, "last_seq")?.max(0) as u64)
}

/// Sorts an error into what the retry loop should do with it.
fn classify(e: rusqlite::Error) -> AttemptError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => AttemptError::Busy,
        Some(
            ErrorCode::SystemIoFailure
            | ErrorCode::ReadOnly
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen
            | ErrorCode::FileLockingProtocolFailed,
        ) => AttemptError::Io(e.to_string()),
        Some(ErrorCode::ConstraintViolation | ErrorCode::TooBig | ErrorCode::TypeMismatch) => {
            AttemptError::Row(e.to_string())
        }
        _ => AttemptError::Fatal(e.to_string()),
    }
}

const UPSERT: &str = "
INSERT INTO memories (namespace, category, key, value, metadata, version, seq, change_seq,
                      created_at, updated_at, deleted)
VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?8, ?8, 0)
ON CONFLICT (namespace, category, key) DO UPDATE SET
    value = excluded.value,
    metadata = excluded.metadata,
    version = memories.version + 1,
    seq = excluded.seq,
    change_seq = excluded.change_seq,
    updated_at = excluded.updated_at,
    created_at = CASE WHEN memories.deleted THEN excluded.created_at ELSE memories.created_at END,
    deleted = 0
WHERE memories.deleted = 1
   OR memories.value IS NOT excluded.value
   OR memories.metadata IS NOT excluded.metadata
RETURNING version";

const FORGET: &str = "
UPDATE memories SET deleted = 1, value = '', metadata = NULL, version = version + 1,
                    seq = ?4, change_seq = ?5, updated_at = ?6
WHERE namespace = ?1 AND category = ?2 AND key = ?3 AND deleted = 0
RETURNING version";

/// Applies one operation inside the open transaction. `next_change` is
/// advanced only when a row actually changed.
fn apply_one(
    conn: &Connection,
    op: &StoreOp,
    next_change: &mut i64,
) -> rusqlite::Result<WriteOutcome> {
    let p = &op.payload;
    let seq = op.seq as i64;
    match &p.value {
        Some(value) => {
            let version: Option<i64> = conn
                .prepare_cached(UPSERT)?
                .query_row(
                    params![
                        p.namespace,
                        p.category,
                        p.key,
                        value,
                        p.metadata,
                        seq,
                        *next_change,
                        p.at_ms
                    ],
                    |r| r.get(0),
                )
                .optional()?;
            match version {
                Some(v) => {
                    *next_change += 1;
                    let version = v as u64;
                    Ok(if version == 1 {
                        WriteOutcome::Inserted { version }
                    } else {
                        WriteOutcome::Updated { version }
                    })
                }
                None => {
                    let v: i64 = conn
                        .prepare_cached(
                            "SELECT version FROM memories WHERE namespace = ?1 AND category = ?2 AND key = ?3",
                        )?
                        .query_row(params![p.namespace, p.category, p.key], |r| r.get(0))?;
                    Ok(WriteOutcome::Unchanged { version: v as u64 })
                }
            }
        }
        None => {
            let version: Option<i64> = conn
                .prepare_cached(FORGET)?
                .query_row(
                    params![p.namespace, p.category, p.key, seq, *next_change, p.at_ms],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(match version {
                Some(v) => {
                    *next_change += 1;
                    WriteOutcome::Deleted { version: v as u64 }
                }
                None => WriteOutcome::NotFound,
            })
        }
    }
}

fn dead_letter(conn: &Connection, op: &StoreOp, reason: &str) -> rusqlite::Result<()> {
    let p = &op.payload;
    conn.prepare_cached(
        "INSERT INTO dead_letters (namespace, category, key, value, metadata, seq, reason, failed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![p.namespace, p.category, p.key, p.value, p.metadata, op.seq as i64, reason, now_ms()])?;
    Ok(())
}

/// The SQLite batch writer: owns the write connection; lives on the writer
/// thread.
pub(crate) struct SqliteWriter {
    conn: Connection,
    busy_deadline: Duration,
    /// The crash journal the batches come from; each commit records how far
    /// it got in `journal_marks`.
    journal_id: Option<String>,
}

impl SqliteWriter {
    /// Opens the write connection and creates the schema.
    pub fn open(config: &Config) -> Result<SqliteWriter> {
        let conn = open_connection(
            &config.path,
            config.synchronous,
            busy_slice(config.busy_deadline),
        )?;
        // The schema is created under retry too: another process may be
        // writing when this one opens.
        retry_busy(config.busy_deadline, || {
            migrate(&conn).map_err(|e| match e {
                crate::Error::Sqlite(e) => classify(e),
                other => AttemptError::Fatal(other.to_string()),
            })
        })
        .map_err(|(e, _)| crate::Error::WriteFailed {
            reason: format!("creating the schema: {e:?}"),
        })?;
        Ok(SqliteWriter {
            conn,
            busy_deadline: config.busy_deadline,
            journal_id: None,
        })
    }

    /// Sets the journal whose position later batches record.
    pub fn set_journal(&mut self, id: Option<String>) {
        self.journal_id = id;
    }

    /// The connection (for tests and tools that inspect the database).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// One attempt: `BEGIN IMMEDIATE`, an upsert per op, `COMMIT`. With
    /// `isolate`, each op runs in its own savepoint and a rejected row becomes
    /// a dead letter instead of failing the batch.
    fn attempt(&mut self, ops: &[StoreOp], isolate: bool) -> Result<BatchReport, AttemptError> {
        // Fail point for tests: "return" fails this attempt as an I/O error
        // would (the `failpoints` feature; free when off).
        fail::fail_point!("mnemo::commit", |_| Err(AttemptError::Io(
            "injected I/O error (fail point mnemo::commit)".into()
        )));
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(classify)?;
        let mut next_change = meta(&tx, "next_change").map_err(classify)?;
        let mut results = Vec::with_capacity(ops.len());
        let mut max_seq = 0;
        for op in ops {
            max_seq = max_seq.max(op.seq);
            if isolate {
                let sp = tx.savepoint().map_err(classify)?;
                let mut change = next_change;
                match apply_one(&sp, op, &mut change) {
                    Ok(outcome) => {
                        sp.commit().map_err(classify)?;
                        next_change = change;
                        results.push(ItemResult::Written(outcome));
                    }
                    Err(e) => match classify(e) {
                        AttemptError::Row(reason) => {
                            drop(sp); // rolls back this row only
                            tracing::warn!(seq = op.seq, %reason, "row rejected; kept in dead_letters");
                            dead_letter(&tx, op, &reason).map_err(classify)?;
                            results.push(ItemResult::DeadLettered(reason));
                        }
                        other => return Err(other),
                    },
                }
            } else {
                let outcome = apply_one(&tx, op, &mut next_change).map_err(classify)?;
                results.push(ItemResult::Written(outcome));
            }
        }
        set_meta(&tx, "next_change", next_change).map_err(classify)?;
        if let Some(journal) = &self.journal_id {
            tx.prepare_cached(
                "INSERT INTO journal_marks (journal, seq) VALUES (?1, ?2)
                 ON CONFLICT (journal) DO UPDATE SET seq = max(seq, excluded.seq)",
            )
            .and_then(|mut s| s.execute(params![journal, max_seq as i64]))
            .map_err(classify)?;
        }
        let last_seq = meta(&tx, "last_seq").map_err(classify)?;
        set_meta(&tx, "last_seq", last_seq.max(max_seq as i64)).map_err(classify)?;
        tx.commit().map_err(classify)?;
        Ok(BatchReport {
            results,
            last_change: next_change - 1,
        })
    }
}

impl BatchWriter for SqliteWriter {
    fn write_batch(&mut self, ops: &[StoreOp]) -> Result<BatchReport, Failure> {
        let deadline = self.busy_deadline;
        // Fast path: the whole batch in one go. Only if a row is rejected is
        // the batch retried with a savepoint per row.
        let first = retry_busy(deadline, || self.attempt(ops, false));
        let result = match first {
            Err((AttemptError::Row(reason), _)) => {
                tracing::debug!(%reason, "a row was rejected; retrying the batch row by row");
                retry_busy(deadline, || self.attempt(ops, true))
            }
            other => other,
        };
        result.map_err(|(e, waited)| match e {
            AttemptError::Busy => Failure::Busy { waited },
            AttemptError::Io(reason) => Failure::WriteFailed {
                reason: format!("{reason} (retried for {waited:.1?})"),
            },
            AttemptError::Row(reason) | AttemptError::Fatal(reason) => {
                Failure::WriteFailed { reason }
            }
        })
    }
}

/// How far a journal's records are committed (0 if none are).
pub(crate) fn journal_mark(conn: &Connection, journal: &str) -> Result<u64> {
    let seq: Option<i64> = conn
        .prepare_cached("SELECT seq FROM journal_marks WHERE journal = ?1")?
        .query_row([journal], |r| r.get(0))
        .optional()?;
    Ok(seq.unwrap_or(0).max(0) as u64)
}

/// Forgets a replayed journal's mark (its files are gone).
pub(crate) fn drop_journal_mark(conn: &Connection, journal: &str) -> Result<()> {
    conn.execute("DELETE FROM journal_marks WHERE journal = ?1", [journal])?;
    Ok(())
}

/// Deletes the marks of journals whose lock file is gone (cleanly removed
/// or replayed). A live journal's lock file exists before its first commit,
/// so its mark is never touched.
pub(crate) fn prune_journal_marks(conn: &Connection, journal_dir: &Path) -> Result<usize> {
    let ids: Vec<String> = conn
        .prepare("SELECT journal FROM journal_marks")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut pruned = 0;
    for id in ids {
        if !journal_dir.join(format!("{id}.lock")).exists() {
            drop_journal_mark(conn, &id)?;
            pruned += 1;
        }
    }
    Ok(pruned)
}

/// What one indexing pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct IndexPass {
    /// Rows (re)indexed or removed from the index.
    pub rows: usize,
    /// The change number the index now reflects.
    pub watermark: i64,
}

/// Brings the FTS index up to date with every committed change, in
/// transactions of at most `chunk` rows. Tombstones the index no longer needs
/// are purged. Safe to run from several connections and processes: each
/// chunk reads the watermark under the write lock.
pub(crate) fn index_pending(
    conn: &mut Connection,
    chunk: usize,
    busy_deadline: Duration,
) -> Result<IndexPass> {
    let mut total = IndexPass::default();
    loop {
        let pass = retry_busy(busy_deadline, || index_chunk(conn, chunk)).map_err(|(e, _)| {
            crate::Error::WriteFailed {
                reason: format!("indexing: {e:?}"),
            }
        })?;
        total.rows += pass.rows;
        total.watermark = pass.watermark;
        if pass.rows < chunk {
            return Ok(total);
        }
    }
}

fn index_chunk(conn: &mut Connection, chunk: usize) -> Result<IndexPass, AttemptError> {
    // Look before taking the write lock: nothing to index is the common
    // case at open, and another process may be holding the lock.
    let behind: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM memories
             WHERE change_seq > (SELECT value FROM meta WHERE name = 'index_watermark'))",
        )
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(classify)?;
    if !behind {
        let watermark = meta(conn, "index_watermark").map_err(classify)?;
        return Ok(IndexPass { rows: 0, watermark });
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(classify)?;
    let mut watermark = meta(&tx, "index_watermark").map_err(classify)?;
    let mut rows = 0;
    {
        let mut select = tx
            .prepare_cached(
                "SELECT id, namespace, category, key, value, deleted, change_seq FROM memories
                 WHERE change_seq > ?1 ORDER BY change_seq LIMIT ?2",
            )
            .map_err(classify)?;
        let mut delete = tx
            .prepare_cached("DELETE FROM memories_fts WHERE rowid = ?1")
            .map_err(classify)?;
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO memories_fts (rowid, ns, key, category, value) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(classify)?;
        let mut q = select
            .query(params![watermark, chunk as i64])
            .map_err(classify)?;
        while let Some(row) = q.next().map_err(classify)? {
            let id: i64 = row.get(0).map_err(classify)?;
            let deleted: bool = row.get(5).map_err(classify)?;
            delete.execute([id]).map_err(classify)?;
            if !deleted {
                let ns: String = row.get(1).map_err(classify)?;
                let category: String = row.get(2).map_err(classify)?;
                let key: String = row.get(3).map_err(classify)?;
                let value: String = row.get(4).map_err(classify)?;
                insert
                    .execute(params![
                        id,
                        namespace_token(&ns),
                        normalize(&key),
                        normalize(&category),
                        normalize(&value)
                    ])
                    .map_err(classify)?;
            }
            watermark = row.get(6).map_err(classify)?;
            rows += 1;
        }
    }
    if rows > 0 {
        set_meta(&tx, "index_watermark", watermark).map_err(classify)?;
        tx.prepare_cached("DELETE FROM memories WHERE deleted = 1 AND change_seq <= ?1")
            .and_then(|mut s| s.execute([watermark]))
            .map_err(classify)?;
    }
    tx.commit().map_err(classify)?;
    Ok(IndexPass { rows, watermark })
}

/// Rebuilds the index from scratch if it was built by another version of
/// the normaliser (see [`crate::text::NORMALIZER_VERSION`]): empties it and
/// resets the watermark, so the catch-up that follows re-indexes every row.
/// Returns whether it did.
pub(crate) fn reset_index_if_stale(conn: &Connection) -> Result<bool> {
    let version: Option<i64> = conn
        .query_row(
            "SELECT value FROM meta WHERE name = 'normalizer_version'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if version == Some(crate::text::NORMALIZER_VERSION) {
        return Ok(false);
    }
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         DELETE FROM memories_fts;
         UPDATE meta SET value = 0 WHERE name = 'index_watermark';
         INSERT INTO meta (name, value) VALUES ('normalizer_version', {v})
           ON CONFLICT (name) DO UPDATE SET value = excluded.value;
         COMMIT;",
        v = crate::text::NORMALIZER_VERSION
    ))
    .inspect_err(|_| {
        let _ = conn.execute_batch("ROLLBACK");
    })?;
    Ok(version.is_some())
}

/// The index watermark and the last committed change, read together.
pub(crate) fn index_position(conn: &Connection) -> Result<(i64, i64)> {
    let watermark = meta(conn, "index_watermark")?;
    let next = meta(conn, "next_change")?;
    Ok((watermark, next - 1))
}

/// A small pool of read connections. WAL lets them read while the writer
/// writes; a read never waits for a flush.
pub(crate) struct ReadPool {
    conns: Mutex<Vec<Connection>>,
    config: Config,
}

impl ReadPool {
    pub fn new(config: &Config) -> ReadPool {
        ReadPool {
            conns: Mutex::new(Vec::new()),
            config: config.clone(),
        }
    }

    /// Runs `f` on a pooled connection (opening one if none is idle).
    pub fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conns.lock().pop();
        let conn = match conn {
            Some(c) => c,
            None => open_connection(
                &self.config.path,
                self.config.synchronous,
                busy_slice(self.config.busy_deadline),
            )?,
        };
        let out = f(&conn);
        let mut idle = self.conns.lock();
        if idle.len() < self.config.read_connections {
            idle.push(conn);
        }
        out
    }
}

const RECORD_COLUMNS: &str = "namespace, category, key, value, metadata, version, updated_at";

fn record(row: &rusqlite::Row<'_>) -> rusqlite::Result<MemoryRecord> {
    let metadata: Option<String> = row.get(4)?;
    Ok(MemoryRecord {
        namespace: row.get(0)?,
        category: row.get(1)?,
        key: row.get(2)?,
        value: row.get(3)?,
        metadata: metadata.and_then(|m| serde_json::from_str(&m).ok()),
        version: Some(row.get::<_, i64>(5)? as u64),
        updated_at_ms: row.get(6)?,
    })
}

/// The committed memory for a key.
pub(crate) fn get(
    conn: &Connection,
    ns: &str,
    category: &str,
    key: &str,
) -> Result<Option<MemoryRecord>> {
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM memories
         WHERE namespace = ?1 AND category = ?2 AND key = ?3 AND deleted = 0"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![ns, category, key], record)
        .optional()?)
}

/// Committed memories of a namespace (optionally one category), by category
/// then key.
pub(crate) fn list(
    conn: &Connection,
    ns: &str,
    category: Option<&str>,
) -> Result<Vec<MemoryRecord>> {
    let rows = match category {
        Some(c) => {
            let sql = format!(
                "SELECT {RECORD_COLUMNS} FROM memories
                 WHERE namespace = ?1 AND category = ?2 AND deleted = 0 ORDER BY key"
            );
            let mut st = conn.prepare_cached(&sql)?;
            let rows = st.query_map(params![ns, c], record)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        }
        None => {
            let sql = format!(
                "SELECT {RECORD_COLUMNS} FROM memories
                 WHERE namespace = ?1 AND deleted = 0 ORDER BY category, key"
            );
            let mut st = conn.prepare_cached(&sql)?;
            let rows = st.query_map(params![ns], record)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        }
    };
    Ok(rows)
}

/// Indexed memories matching `query` in one namespace, best first (bm25, then
/// most recent).
pub(crate) fn search(
    conn: &Connection,
    ns: &str,
    query: &Query,
    category: Option<&str>,
    limit: usize,
) -> Result<Vec<SearchHit>> {
    let Some(expr) = query.fts_expression() else {
        return Ok(Vec::new());
    };
    let expr = format!("ns : \"{}\" AND {expr}", namespace_token(ns));
    let sql = format!(
        "SELECT m.namespace, m.category, m.key, m.value, m.metadata, m.version, m.updated_at, {BM25} AS rank
         FROM memories_fts JOIN memories m ON m.id = memories_fts.rowid
         WHERE memories_fts MATCH ?1 AND m.namespace = ?2 AND m.deleted = 0
           AND (?3 IS NULL OR m.category = ?3)
         ORDER BY rank, m.updated_at DESC
         LIMIT ?4"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st.query_map(params![expr, ns, category, limit as i64], |row| {
        let rank: f64 = row.get(7)?;
        Ok(SearchHit {
            record: record(row)?,
            score: -rank,
            fresh: false,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Namespaces holding at least one memory, in order.
pub(crate) fn namespaces(conn: &Connection) -> Result<Vec<String>> {
    let mut st = conn.prepare_cached(
        "SELECT DISTINCT namespace FROM memories WHERE deleted = 0 ORDER BY namespace",
    )?;
    let rows = st.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
}

/// Counts for `stats`: live rows and dead letters.
pub(crate) fn counts(conn: &Connection) -> Result<(u64, u64)> {
    let rows: i64 = conn.query_row("SELECT count(*) FROM memories WHERE deleted = 0", [], |r| {
        r.get(0)
    })?;
    let dead: i64 = conn.query_row("SELECT count(*) FROM dead_letters", [], |r| r.get(0))?;
    Ok((rows as u64, dead as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OpPayload;
    use std::sync::Arc;

    fn op(seq: u64, ns: &str, key: &str, value: Option<&str>) -> StoreOp {
        StoreOp {
            seq,
            payload: Arc::new(OpPayload {
                namespace: ns.into(),
                category: "c".into(),
                key: key.into(),
                value: value.map(Into::into),
                metadata: None,
                at_ms: seq as i64,
            }),
        }
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
    fn a_locked_database_fails_with_busy_after_the_deadline() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let mut config = Config::new(dir.path().join("t.db"));
        config.busy_deadline = Duration::from_millis(200);
        let mut w = SqliteWriter::open(&config)?;
        let blocker = open_connection(&config.path, Synchronous::Full, Duration::from_millis(1))?;
        blocker.execute_batch("BEGIN IMMEDIATE")?;
        let err = w.write_batch(&[op(1, "n", "a", Some("x"))]).unwrap_err();
        assert!(matches!(err, Failure::Busy { waited } if waited >= Duration::from_millis(200)));
        blocker.execute_batch("ROLLBACK")?;
        w.write_batch(&[op(2, "n", "a", Some("x"))]).unwrap();
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
        let mut ix = open_connection(&config.path, Synchronous::Full, Duration::from_secs(1))?;
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
        assert_eq!(tombstones, 0, "indexed tombstones are purged");
        assert_eq!(index_position(&ix)?, (3, 3));
        Ok(())
    }
}
