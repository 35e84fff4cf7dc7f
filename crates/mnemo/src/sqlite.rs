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
//! - `vector_models`: one row per embedder model id that has vectors: its
//!   table, dimension and the change number its vectors reflect.
//! - `vectors_<model>` (one per model id, created by the indexer when hybrid
//!   retrieval is on): `id` = `memories.id`, `namespace`, `vector` (f32
//!   blob), searched with sqlite-vec's `vec_distance_cosine`.

use std::path::Path;
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::config::{Config, Synchronous};
use crate::embed::{is_zero, to_blob, Embedder};
use crate::error::Result;
use crate::model::{now_ms, MemoryRecord, OpPayload, SearchHit, StoreOp, WriteOutcome};
use crate::store::{retry_busy, AttemptError, BatchReport, BatchWriter, Fault, ItemResult};
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
    hlc         INTEGER NOT NULL DEFAULT 0,
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
INSERT OR IGNORE INTO meta (name, value) VALUES ('next_change', 1), ('index_watermark', 0), ('last_seq', 0), ('max_hlc', 0);
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
    register_sqlite_vec();
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

/// Registers sqlite-vec (its `vec_*` functions and `vec0` tables) as an
/// SQLite auto-extension, once per process, so every connection opened
/// afterwards has it.
fn register_sqlite_vec() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        type EntryPoint = unsafe extern "C" fn(
            *mut rusqlite::ffi::sqlite3,
            *mut *mut std::os::raw::c_char,
            *const rusqlite::ffi::sqlite3_api_routines,
        ) -> std::os::raw::c_int;
        // SAFETY: `sqlite3_vec_init` is the C extension entry point
        // `int sqlite3_vec_init(sqlite3*, char**, const sqlite3_api_routines*)`,
        // compiled into this binary (the sqlite-vec crate builds it with
        // SQLITE_CORE against the bundled SQLite that rusqlite links); the
        // crate declares it without arguments, so the pointer is cast to its
        // real signature, which is what `sqlite3_auto_extension` expects and
        // calls it with. The function is static, so the pointer stays valid
        // for the life of the process, and `Once` registers it once.
        let rc = unsafe {
            let entry = std::mem::transmute::<*const (), EntryPoint>(
                sqlite_vec::sqlite3_vec_init as *const (),
            );
            rusqlite::ffi::sqlite3_auto_extension(Some(entry))
        };
        if rc != rusqlite::ffi::SQLITE_OK {
            tracing::error!(rc, "registering sqlite-vec failed; hybrid search will fail");
        }
    });
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
    let upgrade = || -> rusqlite::Result<()> {
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA}"))?;
        let has_hlc: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info('memories') WHERE name = 'hlc')",
            [],
            |r| r.get(0),
        )?;
        if !has_hlc {
            // Version 2 → 3: rows written before the clock get their
            // acceptance time as their stamp (see `crate::clock`).
            conn.execute_batch(
                "ALTER TABLE memories ADD COLUMN hlc INTEGER NOT NULL DEFAULT 0;
                 UPDATE memories SET hlc = (updated_at * 1000) << 10;
                 UPDATE meta SET value = (SELECT coalesce(max(hlc), 0) FROM memories)
                 WHERE name = 'max_hlc';",
            )?;
        }
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"))
    };
    upgrade().inspect_err(|_| {
        let _ = conn.execute_batch("ROLLBACK");
    })?;
    Ok(())
}

/// Bumped when the schema changes; stored in SQLite's `user_version`.
/// 2: `vector_models`. 3: `memories.hlc`, `meta.max_hlc`.
const SCHEMA_VERSION: i64 = 3;

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

/// The largest operation stamp committed by any engine on this database.
pub(crate) fn max_hlc(conn: &Connection) -> Result<u64> {
    Ok(meta(conn, "max_hlc")?.max(0) as u64)
}

/// Says in plain words why a database could not be opened: not a database,
/// corrupt, read-only (the file or its file system), no permission.
pub(crate) fn open_error(path: &Path, e: crate::Error) -> crate::Error {
    if matches!(e, crate::Error::Open { .. } | crate::Error::DiskFull { .. }) {
        return e;
    }
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return crate::Error::Open {
            path: path.to_owned(),
            reason: format!("it is not a regular file (a device or a folder?): {e}"),
        };
    }
    let reason = match &e {
        crate::Error::Sqlite(s) => match s.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => {
                "it is not an SQLite database (or its header is damaged)".to_owned()
            }
            Some(ErrorCode::DatabaseCorrupt) => "the database file is corrupt".to_owned(),
            Some(ErrorCode::ReadOnly) => read_only_reason(path),
            Some(ErrorCode::CannotOpen) if is_read_only_fs(path) => read_only_reason(path),
            Some(ErrorCode::CannotOpen) => {
                format!("the file cannot be opened (missing folder or no permission): {s}")
            }
            Some(ErrorCode::PermissionDenied) => format!("permission denied: {s}"),
            _ => return e,
        },
        crate::Error::Io(io) if io.kind() == std::io::ErrorKind::ReadOnlyFilesystem => {
            read_only_reason(path)
        }
        crate::Error::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
            format!("permission denied: {io}")
        }
        _ => return e,
    };
    crate::Error::Open {
        path: path.to_owned(),
        reason,
    }
}

fn read_only_reason(path: &Path) -> String {
    if is_read_only_fs(path) {
        "it is on a read-only file system; mnemo needs to write beside it (WAL, crash journal)"
            .to_owned()
    } else {
        "the file (or its folder) is read-only; mnemo needs to write to it".to_owned()
    }
}

/// Whether the file system holding `path` (or its folder) is mounted
/// read-only.
fn is_read_only_fs(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let probe = if path.exists() {
            path.to_owned()
        } else {
            match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                _ => std::path::PathBuf::from("."),
            }
        };
        let Ok(c) = std::ffi::CString::new(probe.as_os_str().as_bytes()) else {
            return false;
        };
        let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
        // SAFETY: `c` is a NUL-terminated path and `st` points to writable
        // memory the size of a statvfs; read only if the call succeeded.
        let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
        // SAFETY: initialised by the successful call above.
        rc == 0 && unsafe { st.assume_init() }.f_flag & libc::ST_RDONLY != 0
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// Sorts an error into what the retry loop should do with it.
fn classify(e: rusqlite::Error) -> AttemptError {
    classify_ref(&e)
}

fn classify_ref(e: &rusqlite::Error) -> AttemptError {
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

/// Applies a save if it is at least as new as what the row holds (by
/// stamp) and changes something. Returns the new version, or no row.
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
RETURNING version";

/// Applies a forget to a live row at most as new as the forget.
const FORGET: &str = "
UPDATE memories SET deleted = 1, value = '', metadata = NULL, version = version + 1,
                    seq = ?4, change_seq = ?5, updated_at = ?6, hlc = ?7
WHERE namespace = ?1 AND category = ?2 AND key = ?3 AND deleted = 0 AND hlc <= ?7
RETURNING version";

/// The stamp a key's row holds, whether it is a tombstone, and its version.
fn row_state(conn: &Connection, p: &OpPayload) -> rusqlite::Result<Option<(u64, bool, u64)>> {
    conn.prepare_cached(
        "SELECT hlc, deleted, version FROM memories
         WHERE namespace = ?1 AND category = ?2 AND key = ?3",
    )?
    .query_row(params![p.namespace, p.category, p.key], |r| {
        Ok((
            r.get::<_, i64>(0)? as u64,
            r.get(1)?,
            r.get::<_, i64>(2)? as u64,
        ))
    })
    .optional()
}

/// Raises a row's stamp to `hlc` without a new version or change: the row
/// already says what the operation says, and must now count as that new.
fn touch(conn: &Connection, p: &OpPayload, hlc: u64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE memories SET hlc = ?4
         WHERE namespace = ?1 AND category = ?2 AND key = ?3 AND hlc < ?4",
    )?
    .execute(params![p.namespace, p.category, p.key, hlc as i64])?;
    Ok(())
}

/// Applies one operation inside the open transaction, by the rule of which
/// write wins (see `crate::clock`): a row takes an operation only if its
/// stamp is at least the row's. `next_change` is advanced only when a row
/// actually changed.
fn apply_one(
    conn: &Connection,
    op: &StoreOp,
    next_change: &mut i64,
) -> rusqlite::Result<WriteOutcome> {
    let p = &op.payload;
    let seq = op.seq as i64;
    let hlc = op.hlc as i64;
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
                        p.at_ms,
                        hlc
                    ],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(v) = version {
                *next_change += 1;
                let version = v as u64;
                return Ok(if version == 1 {
                    WriteOutcome::Inserted { version }
                } else {
                    WriteOutcome::Updated { version }
                });
            }
            // Not applied: the row is newer, or already holds this value.
            match row_state(conn, p)? {
                Some((row_hlc, _, _)) if row_hlc > op.hlc => Ok(WriteOutcome::Outdated),
                Some((_, _, version)) => {
                    touch(conn, p, op.hlc)?;
                    Ok(WriteOutcome::Unchanged { version })
                }
                // The upsert inserts when there is no row: not reached.
                None => Ok(WriteOutcome::Outdated),
            }
        }
        None => {
            let version: Option<i64> = conn
                .prepare_cached(FORGET)?
                .query_row(
                    params![
                        p.namespace,
                        p.category,
                        p.key,
                        seq,
                        *next_change,
                        p.at_ms,
                        hlc
                    ],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(v) = version {
                *next_change += 1;
                return Ok(WriteOutcome::Deleted { version: v as u64 });
            }
            match row_state(conn, p)? {
                Some((row_hlc, _, _)) if row_hlc > op.hlc => Ok(WriteOutcome::Outdated),
                Some(_) => {
                    // Already a tombstone: it now stands for this forget.
                    touch(conn, p, op.hlc)?;
                    Ok(WriteOutcome::NotFound)
                }
                None => {
                    // Nothing to forget here, but a save of this key accepted
                    // earlier may still arrive (another process's journal):
                    // a tombstone keeps it from coming back. Change 0: the
                    // index has nothing to do for it.
                    conn.prepare_cached(
                        "INSERT INTO memories (namespace, category, key, value, metadata, version,
                                               seq, change_seq, created_at, updated_at, deleted, hlc)
                         VALUES (?1, ?2, ?3, '', NULL, 0, ?4, 0, ?5, ?5, 1, ?6)",
                    )?
                    .execute(params![p.namespace, p.category, p.key, seq, p.at_ms, hlc])?;
                    Ok(WriteOutcome::NotFound)
                }
            }
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
        let mut last = None;
        retry_busy(config.busy_deadline, || {
            migrate(&conn).map_err(|e| {
                let kind = match &e {
                    crate::Error::Sqlite(s) => classify_ref(s),
                    other => AttemptError::Fatal(other.to_string()),
                };
                last = Some(e);
                kind
            })
        })
        .map_err(|(kind, waited)| match (kind, last.take()) {
            (AttemptError::Busy, _) | (_, None) => crate::Error::Open {
                path: config.path.clone(),
                reason: format!(
                    "the database stayed locked by another process for {waited:.1?} while its schema was checked"
                ),
            },
            (_, Some(e)) => open_error(&config.path, e),
        })?;
        Ok(SqliteWriter {
            conn,
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
        let mut max_hlc = 0;
        for op in ops {
            max_seq = max_seq.max(op.seq);
            max_hlc = max_hlc.max(op.hlc);
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
        let seen = meta(&tx, "max_hlc").map_err(classify)?;
        set_meta(&tx, "max_hlc", seen.max(max_hlc as i64)).map_err(classify)?;
        tx.commit().map_err(classify)?;
        Ok(BatchReport {
            results,
            last_change: next_change - 1,
        })
    }
}

impl BatchWriter for SqliteWriter {
    /// One attempt; a lock held by another writer is waited out for the
    /// connection's busy timeout (a slice of `busy_deadline`) before it is a
    /// fault, which the writer retries.
    fn write_batch(&mut self, ops: &[StoreOp]) -> Result<BatchReport, Fault> {
        // Fast path: the whole batch in one go. Only if a row is rejected is
        // the batch tried again with a savepoint per row.
        let result = match self.attempt(ops, false) {
            Err(AttemptError::Row(reason)) => {
                tracing::debug!(%reason, "a row was rejected; retrying the batch row by row");
                self.attempt(ops, true)
            }
            other => other,
        };
        result.map_err(|e| {
            Fault(match e {
                AttemptError::Busy => "the database is locked by another writer".to_owned(),
                AttemptError::Io(reason) | AttemptError::Fatal(reason) => reason,
                // A row error outside a savepoint (the dead-letter insert
                // itself failed): the batch is tried again.
                AttemptError::Row(reason) => format!("a row could not be isolated: {reason}"),
            })
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

/// Deletes the marks of journals that have no files left (cleanly removed,
/// or replayed and removed). A journal's mark outlives its files, never the
/// reverse: a live journal's lock file exists before its first commit, and
/// an orphan's files are removed before its mark.
pub(crate) fn prune_journal_marks(conn: &Connection, journal_dir: &Path) -> Result<usize> {
    let ids: Vec<String> = conn
        .prepare("SELECT journal FROM journal_marks")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let names: Vec<String> = match std::fs::read_dir(journal_dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let mut pruned = 0;
    for id in ids {
        let prefix = format!("{id}.");
        if !names.iter().any(|n| n.starts_with(&prefix)) {
            drop_journal_mark(conn, &id)?;
            pruned += 1;
        }
    }
    Ok(pruned)
}

/// Purges tombstones stamped before `horizon` (and already out of the
/// index). A tombstone keeps a forgotten key from coming back when a save
/// accepted before the forget arrives late (a dead engine's journal); no
/// journal on disk holds an operation older than `horizon`, so those
/// tombstones have nothing left to stop.
///
/// Housekeeping: it looks first (a read), and gives up at once if another
/// writer holds the lock (the next open purges them).
pub(crate) fn purge_tombstones(conn: &Connection, horizon: u64) -> Result<usize> {
    const WHERE: &str = "deleted = 1 AND hlc < ?1
        AND change_seq <= (SELECT value FROM meta WHERE name = 'index_watermark')";
    let any: bool = conn.query_row(
        &format!("SELECT EXISTS (SELECT 1 FROM memories WHERE {WHERE})"),
        [horizon as i64],
        |r| r.get(0),
    )?;
    if !any {
        return Ok(0);
    }
    match conn.execute(
        &format!("DELETE FROM memories WHERE {WHERE}"),
        [horizon as i64],
    ) {
        Ok(n) => Ok(n),
        Err(e) if matches!(classify_ref(&e), AttemptError::Busy) => Ok(0),
        Err(e) => Err(e.into()),
    }
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
    index_pending_with(conn, chunk, busy_deadline, None)
}

/// [`index_pending`], also keeping `embedder`'s vectors in step (written in
/// the same transactions as the FTS rows).
pub(crate) fn index_pending_with(
    conn: &mut Connection,
    chunk: usize,
    busy_deadline: Duration,
    embedder: Option<&dyn Embedder>,
) -> Result<IndexPass> {
    let mut total = IndexPass::default();
    loop {
        // Embedding takes milliseconds per memory with a neural model: it
        // runs here, before the chunk's write transaction, so the writer is
        // never kept waiting on it.
        let prepared = match embedder {
            Some(e) => {
                sync_vectors(conn, e, busy_deadline)?;
                pre_embed(conn, e, chunk).map_err(crate::Error::from)?
            }
            None => Prepared::default(),
        };
        let pass = retry_busy(busy_deadline, || {
            index_chunk(conn, chunk, embedder, &prepared)
        })
        .map_err(|(e, _)| crate::Error::NotIndexed {
            reason: format!("indexing: {e:?}"),
        })?;
        total.rows += pass.rows;
        total.watermark = pass.watermark;
        // Done when the chunk was not full, unless it stopped at a horizon
        // with rows after it (another engine indexed part of it).
        if pass.rows < chunk && !prepared.full {
            return Ok(total);
        }
    }
}

/// Vectors computed ahead of an indexing transaction.
#[derive(Default)]
struct Prepared {
    /// `memories.id` → (the `change_seq` its text was read at, the vector).
    vectors: std::collections::HashMap<i64, (i64, Vec<f32>)>,
    /// The last change read: the chunk stops there, so rows committed after
    /// the embedding (which it has no vectors for) wait for the next chunk.
    /// `None` without an embedder.
    horizon: Option<i64>,
    /// A whole chunk was read: more rows may follow the horizon.
    full: bool,
}

/// Embeds (in one batch, outside any transaction) the live memories the
/// next indexing chunk will take: those after the index watermark, in
/// change order, up to the chunk's size. The chunk then stops at the last
/// change read here, so every live row it meets was read here with the
/// change it still holds (a row that changes gets a later change number).
fn pre_embed(conn: &Connection, e: &dyn Embedder, chunk: usize) -> rusqlite::Result<Prepared> {
    let watermark = meta(conn, "index_watermark")?;
    // The same rows as the chunk's (forgotten ones included, so the LIMIT
    // agrees), embedding only the live ones.
    let rows = changed_rows(conn, watermark, i64::MAX, chunk)?;
    let vectors = embed_rows(e, &rows);
    Ok(Prepared {
        // Nothing to read: the chunk takes nothing either (rows committed
        // since come with their own indexing pass).
        horizon: Some(rows.last().map_or(watermark, |r| r.1)),
        full: rows.len() >= chunk,
        vectors: rows
            .iter()
            .zip(vectors)
            .filter_map(|(r, v)| Some((r.0, (r.1, v?))))
            .collect(),
    })
}

fn index_chunk(
    conn: &mut Connection,
    chunk: usize,
    embedder: Option<&dyn Embedder>,
    prepared: &Prepared,
) -> Result<IndexPass, AttemptError> {
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
    // Vectors move with the index only while they reflect it; a table
    // that lags (another engine indexed without them meanwhile) is left
    // alone here and rebuilt by the next `sync_vectors`.
    let vectors = match embedder {
        Some(e) if vectors_current(&tx, e, watermark).map_err(classify)? => {
            Some((e, vector_table(e.model_id())))
        }
        _ => None,
    };
    let mut rows = 0;
    {
        let mut select = tx
            .prepare_cached(
                "SELECT id, namespace, category, key, value, deleted, change_seq FROM memories
                 WHERE change_seq > ?1 AND change_seq <= ?3 ORDER BY change_seq LIMIT ?2",
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
            .query(params![
                watermark,
                chunk as i64,
                prepared
                    .horizon
                    .filter(|_| vectors.is_some())
                    .unwrap_or(i64::MAX)
            ])
            .map_err(classify)?;
        while let Some(row) = q.next().map_err(classify)? {
            let id: i64 = row.get(0).map_err(classify)?;
            let deleted: bool = row.get(5).map_err(classify)?;
            delete.execute([id]).map_err(classify)?;
            if let Some((_, table)) = &vectors {
                tx.prepare_cached(&format!("DELETE FROM {table} WHERE id = ?1"))
                    .and_then(|mut s| s.execute([id]))
                    .map_err(classify)?;
            }
            if !deleted {
                let ns: String = row.get(1).map_err(classify)?;
                let category: String = row.get(2).map_err(classify)?;
                let key: String = row.get(3).map_err(classify)?;
                let value: String = row.get(4).map_err(classify)?;
                if let Some((e, table)) = &vectors {
                    let seq: i64 = row.get(6).map_err(classify)?;
                    let v = match prepared.vectors.get(&id) {
                        Some((at, v)) if *at == seq => v.clone(),
                        // Not reached while the embedder keeps its contract
                        // (one vector per text): `pre_embed` read every live
                        // row up to the horizon at the change it holds.
                        _ => e.embed(&embedding_text(&category, &key, &value)),
                    };
                    insert_vector(&tx, *e, table, id, &ns, &v).map_err(classify)?;
                }
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
    if let Some((e, _)) = &vectors {
        tx.prepare_cached("UPDATE vector_models SET watermark = ?2 WHERE model_id = ?1")
            .and_then(|mut s| s.execute(params![e.model_id(), watermark]))
            .map_err(classify)?;
    }
    if rows > 0 {
        // Tombstones stay: they are purged at open, once no journal can
        // hold an older save of their key (`purge_tombstones`).
        set_meta(&tx, "index_watermark", watermark).map_err(classify)?;
    }
    tx.commit().map_err(classify)?;
    Ok(IndexPass { rows, watermark })
}

/// The text a memory is embedded from: what the FTS row holds (key,
/// category, value), read as one text.
pub(crate) fn embedding_text(category: &str, key: &str, value: &str) -> String {
    format!("{key}\n{category}\n{value}")
}

/// The vector table for a model id: `vectors_` + the id with every
/// character outside `[a-z0-9]` as `_`, + an FNV hash of the exact id (so
/// ids that sanitise alike still get separate tables).
pub(crate) fn vector_table(model_id: &str) -> String {
    let clean: String = model_id
        .chars()
        .take(48)
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut h: u32 = 0x811c_9dc5;
    for b in model_id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("vectors_{clean}_{h:08x}")
}

/// Whether `e`'s vector table reflects the index at `watermark` (same
/// dimension, same watermark).
fn vectors_current(conn: &Connection, e: &dyn Embedder, watermark: i64) -> rusqlite::Result<bool> {
    Ok(vector_model(conn, e)? == Some((e.dimension() as i64, watermark)))
}

/// A rebuild whose owner has written no batch for this long (it crashed,
/// say) may be taken over by another engine.
const REBUILD_STALE_MS: i64 = 60_000;

/// Rounds of rebuild / catch-up one `sync_vectors` call runs before it
/// leaves the rest to the next indexing pass.
const SYNC_ROUNDS: usize = 8;

/// The `meta` row holding the time a rebuild of `model_id` last made
/// progress.
fn heartbeat_name(model_id: &str) -> String {
    format!("vector_rebuild:{model_id}")
}

fn beat(tx: &Connection, model_id: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO meta (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![heartbeat_name(model_id), now_ms()])?;
    Ok(())
}

/// `e`'s row in `vector_models`: (dimension, watermark).
fn vector_model(conn: &Connection, e: &dyn Embedder) -> rusqlite::Result<Option<(i64, i64)>> {
    conn.prepare_cached("SELECT dimension, watermark FROM vector_models WHERE model_id = ?1")?
        .query_row([e.model_id()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

/// Whether another engine is rebuilding `e`'s table right now (its
/// heartbeat is recent).
fn rebuild_in_progress(conn: &Connection, e: &dyn Embedder) -> rusqlite::Result<bool> {
    let beat: Option<i64> = conn
        .prepare_cached("SELECT value FROM meta WHERE name = ?1")?
        .query_row([heartbeat_name(e.model_id())], |r| r.get(0))
        .optional()?;
    Ok(beat.is_some_and(|t| now_ms() - t < REBUILD_STALE_MS))
}

/// One memory read for embedding: id, the change it was read at, its
/// namespace, and its text (`None` for a forgotten one).
type VectorRow = (i64, i64, String, Option<String>);

fn vector_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VectorRow> {
    let text = if r.get::<_, bool>(6)? {
        None
    } else {
        Some(embedding_text(
            &r.get::<_, String>(3)?,
            &r.get::<_, String>(4)?,
            &r.get::<_, String>(5)?,
        ))
    };
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, text))
}

/// Memories changed after change `after` up to change `upto`, in change
/// order, at most `limit` (forgotten ones included, without text).
fn changed_rows(
    conn: &Connection,
    after: i64,
    upto: i64,
    limit: usize,
) -> rusqlite::Result<Vec<VectorRow>> {
    conn.prepare_cached(
        "SELECT id, change_seq, namespace, category, key, value, deleted FROM memories
         WHERE change_seq > ?1 AND change_seq <= ?2 ORDER BY change_seq LIMIT ?3",
    )?
    .query_map(params![after, upto, limit as i64], vector_row)?
    .collect()
}

/// Embeds the live rows of `rows` (one batch, no transaction open).
fn embed_rows(e: &dyn Embedder, rows: &[VectorRow]) -> Vec<Option<Vec<f32>>> {
    let texts: Vec<&str> = rows.iter().filter_map(|r| r.3.as_deref()).collect();
    let mut vectors = e.embed_batch(&texts).into_iter();
    rows.iter()
        .map(|r| r.3.as_ref().and_then(|_| vectors.next()))
        .collect()
}

/// Writes (inside `tx`) the vectors of `rows` that still hold the change
/// they were read at: a row changed since (or a forgotten row whose id a new
/// memory took) is left to the pass that reaches its new change, so a
/// vector never describes another version or another memory. With
/// `replace`, the id's old vector is removed first either way.
fn write_vectors(
    tx: &Connection,
    e: &dyn Embedder,
    table: &str,
    rows: &[VectorRow],
    vectors: &[Option<Vec<f32>>],
    replace: bool,
) -> rusqlite::Result<()> {
    for ((id, seq, ns, _), v) in rows.iter().zip(vectors) {
        if replace {
            tx.prepare_cached(&format!("DELETE FROM {table} WHERE id = ?1"))?
                .execute([id])?;
        }
        let Some(v) = v else { continue };
        let now: Option<(i64, bool)> = tx
            .prepare_cached("SELECT change_seq, deleted FROM memories WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if now == Some((*seq, false)) {
            insert_vector(tx, e, table, *id, ns, v)?;
        }
    }
    Ok(())
}

/// Makes `e`'s vector table reflect the index (the watermark in
/// `vector_models` equal to the index watermark), never embedding under the
/// write lock: a neural model takes milliseconds per memory, and neither
/// this engine's writer nor another process's may wait behind that.
///
/// - No table, or another dimension: [`rebuild_vectors`] from the live
///   memories.
/// - A table that lags the index (another engine indexed without this
///   model meanwhile): [`catch_up_vectors`], only the changes since.
/// - A rebuild by another engine in progress (fresh heartbeat): left alone;
///   searches rank lexically until it is done.
fn sync_vectors(conn: &mut Connection, e: &dyn Embedder, busy_deadline: Duration) -> Result<()> {
    let dim = e.dimension() as i64;
    for _ in 0..SYNC_ROUNDS {
        let index = meta(conn, "index_watermark")?;
        match vector_model(conn, e)? {
            Some((d, w)) if d == dim && w == index => return Ok(()),
            Some((d, w)) if d == dim && w >= 0 => catch_up_vectors(conn, e, w, busy_deadline)?,
            Some((d, _)) if d == dim && rebuild_in_progress(conn, e)? => return Ok(()),
            _ => rebuild_vectors(conn, e, busy_deadline)?,
        }
    }
    Ok(())
}

fn rebuild_error(what: &'static str) -> impl Fn((AttemptError, Duration)) -> crate::Error {
    move |(err, _)| crate::Error::NotIndexed {
        reason: format!("vectors ({what}): {err:?}"),
    }
}

/// Rebuilds `e`'s table from the live memories indexed so far. One short
/// transaction claims the rebuild (a random negative watermark, the
/// rebuild's token, which also keeps searches off the table) and empties
/// the table; then batch by batch the memories are read and embedded with
/// no transaction open, and written in a short transaction that first
/// checks the token is still this rebuild's (another engine may take over a
/// rebuild whose heartbeat went stale) and beats the heartbeat. The last
/// transaction sets the watermark to the change the rebuild read up to;
/// [`catch_up_vectors`] does what was indexed since.
fn rebuild_vectors(conn: &mut Connection, e: &dyn Embedder, busy_deadline: Duration) -> Result<()> {
    let table = vector_table(e.model_id());
    let dim = e.dimension() as i64;
    let token = -1 - fastrand::i64(0..i64::MAX - 1);
    let claimed = retry_busy(busy_deadline, || {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(classify)?;
        let target = meta(&tx, "index_watermark").map_err(classify)?;
        match vector_model(&tx, e).map_err(classify)? {
            Some((d, w))
                if d == dim && (w >= 0 || rebuild_in_progress(&tx, e).map_err(classify)?) =>
            {
                // Current, lagging, or someone else's live rebuild: not ours
                // to start after all.
                return Ok(None);
            }
            _ => {}
        }
        tx.execute_batch(&format!(
            "DROP TABLE IF EXISTS {table};
             CREATE TABLE {table} (
                 id        INTEGER PRIMARY KEY,
                 namespace TEXT NOT NULL,
                 vector    BLOB NOT NULL
             );
             CREATE INDEX {table}_ns ON {table} (namespace);"
        ))
        .map_err(classify)?;
        tx.execute(
            "INSERT INTO vector_models (model_id, table_name, dimension, watermark)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (model_id) DO UPDATE SET dimension = excluded.dimension,
                                                  watermark = excluded.watermark",
            params![e.model_id(), table, dim, token],
        )
        .map_err(classify)?;
        beat(&tx, e.model_id()).map_err(classify)?;
        tx.commit().map_err(classify)?;
        Ok(Some(target))
    })
    .map_err(rebuild_error("start"))?;
    let Some(target) = claimed else {
        return Ok(());
    };
    tracing::info!(model = e.model_id(), "rebuilding the vector index");
    let still_ours = |tx: &Connection| -> Result<bool, AttemptError> {
        Ok(vector_model(tx, e).map_err(classify)?.map(|m| m.1) == Some(token))
    };

    let mut after_id = i64::MIN;
    let mut written = 0usize;
    loop {
        let rows: Vec<VectorRow> = conn
            .prepare_cached(
                "SELECT id, change_seq, namespace, category, key, value, deleted FROM memories
                 WHERE deleted = 0 AND change_seq <= ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )?
            .query_map(params![target, after_id, REBUILD_BATCH as i64], vector_row)?
            .collect::<rusqlite::Result<_>>()?;
        let Some(last) = rows.last() else { break };
        after_id = last.0;
        let vectors = embed_rows(e, &rows);
        let ours = retry_busy(busy_deadline, || {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(classify)?;
            if !still_ours(&tx)? {
                return Ok(false);
            }
            write_vectors(&tx, e, &table, &rows, &vectors, false).map_err(classify)?;
            beat(&tx, e.model_id()).map_err(classify)?;
            tx.commit().map_err(classify)?;
            Ok(true)
        })
        .map_err(rebuild_error("batch"))?;
        if !ours {
            tracing::info!(
                model = e.model_id(),
                "another engine took over the vector rebuild"
            );
            return Ok(());
        }
        written += rows.len();
    }
    retry_busy(busy_deadline, || {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(classify)?;
        if still_ours(&tx)? {
            tx.execute(
                "UPDATE vector_models SET watermark = ?2 WHERE model_id = ?1",
                params![e.model_id(), target],
            )
            .map_err(classify)?;
            tx.execute(
                "DELETE FROM meta WHERE name = ?1",
                [heartbeat_name(e.model_id())],
            )
            .map_err(classify)?;
        }
        tx.commit().map_err(classify)
    })
    .map_err(rebuild_error("finish"))?;
    tracing::info!(
        model = e.model_id(),
        rows = written,
        "rebuilt the vector index"
    );
    Ok(())
}

/// Brings a table whose vectors reflect change `from` up to the index:
/// the memories changed after it, in change order, batch by batch, each
/// embedded with no transaction open and written (old vector removed, new
/// one added if the row still holds that change) in a short transaction
/// that moves the table's watermark, if no other engine moved it first.
/// Vectors of memories forgotten and purged meanwhile are dropped with the
/// last batch.
fn catch_up_vectors(
    conn: &mut Connection,
    e: &dyn Embedder,
    mut from: i64,
    busy_deadline: Duration,
) -> Result<()> {
    let table = vector_table(e.model_id());
    loop {
        let to = meta(conn, "index_watermark")?;
        if from >= to {
            return Ok(());
        }
        let rows = changed_rows(conn, from, to, REBUILD_BATCH)?;
        let last_batch = rows.len() < REBUILD_BATCH;
        let upto = if last_batch {
            to
        } else {
            rows.last().map_or(to, |r| r.1)
        };
        let vectors = embed_rows(e, &rows);
        let moved = retry_busy(busy_deadline, || {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(classify)?;
            if vector_model(&tx, e).map_err(classify)?.map(|m| m.1) != Some(from) {
                return Ok(false);
            }
            write_vectors(&tx, e, &table, &rows, &vectors, true).map_err(classify)?;
            if last_batch {
                tx.execute_batch(&format!(
                    "DELETE FROM {table} WHERE id NOT IN (SELECT id FROM memories WHERE deleted = 0)"
                ))
                .map_err(classify)?;
            }
            tx.execute(
                "UPDATE vector_models SET watermark = ?2 WHERE model_id = ?1",
                params![e.model_id(), upto],
            )
            .map_err(classify)?;
            tx.commit().map_err(classify)?;
            Ok(true)
        })
        .map_err(rebuild_error("catch-up"))?;
        if !moved {
            // Another engine moved (or reset) the table: the caller looks
            // again.
            return Ok(());
        }
        from = upto;
    }
}

/// Memories embedded per call while a model's vector table is rebuilt.
const REBUILD_BATCH: usize = 64;

/// Stores one memory's vector `v` (nothing for a zero vector, a text with
/// nothing to embed, which matches nothing).
fn insert_vector(
    tx: &Connection,
    e: &dyn Embedder,
    table: &str,
    id: i64,
    ns: &str,
    v: &[f32],
) -> rusqlite::Result<()> {
    if v.len() != e.dimension() {
        tracing::warn!(
            model = e.model_id(),
            id,
            len = v.len(),
            dimension = e.dimension(),
            "the embedder returned a vector of the wrong length; memory left out of vector search"
        );
        return Ok(());
    }
    if is_zero(v) {
        return Ok(());
    }
    tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO {table} (id, namespace, vector) VALUES (?1, ?2, ?3)"
    ))?
    .execute(params![id, ns, to_blob(v)])?;
    Ok(())
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
    // Vectors are built from the same tokens: every model's table is
    // emptied too, and re-filled as the catch-up re-indexes.
    let tables: Vec<String> = conn
        .prepare("SELECT table_name FROM vector_models")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let clear: String = tables.iter().map(|t| format!("DELETE FROM {t};")).collect();
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         {clear}
         UPDATE vector_models SET watermark = 0;
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

/// At most `limit` committed memories of a namespace (optionally one
/// category) that sort after `after` = (category, key), by category then
/// key. A keyset read on the UNIQUE (namespace, category, key) index: it
/// costs the rows returned (plus forgotten rows skipped), wherever the page
/// starts.
pub(crate) fn list_page(
    conn: &Connection,
    ns: &str,
    category: Option<&str>,
    after: Option<(&str, &str)>,
    limit: usize,
) -> Result<Vec<MemoryRecord>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // Categories and keys are never empty, so "" sorts before every row.
    let (category, bound_category, bound_key) = match category {
        Some(c) => {
            let key = match after {
                None => "",
                Some((ac, ak)) => match ac.cmp(c) {
                    std::cmp::Ordering::Less => "",
                    std::cmp::Ordering::Equal => ak,
                    std::cmp::Ordering::Greater => return Ok(Vec::new()),
                },
            };
            (Some(c), c, key)
        }
        None => {
            let (ac, ak) = after.unwrap_or(("", ""));
            (None, ac, ak)
        }
    };
    let mut st = conn.prepare_cached(&list_page_sql(category.is_some()))?;
    let rows = st.query_map(params![ns, bound_category, bound_key, limit], record)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The statement of [`list_page`]; parameters: namespace, category (or the
/// bound's category), the bound's key, limit. One category is an equality
/// and a range on the key: a row-value bound there would make SQLite sort.
fn list_page_sql(one_category: bool) -> String {
    let bound = if one_category {
        "category = ?2 AND key > ?3"
    } else {
        "(category, key) > (?2, ?3)"
    };
    format!(
        "SELECT {RECORD_COLUMNS} FROM memories
         WHERE namespace = ?1 AND {bound} AND deleted = 0
         ORDER BY category, key LIMIT ?4"
    )
}

#[cfg(test)]
mod list_page_tests {
    use super::*;

    /// Both forms walk the UNIQUE index from the bound: no scan, no sort.
    #[test]
    fn pages_are_keyset_reads_on_the_unique_index() -> Result<()> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        for one_category in [false, true] {
            let sql = format!("EXPLAIN QUERY PLAN {}", list_page_sql(one_category));
            let mut st = conn.prepare(&sql)?;
            let plan = st
                .query_map(params!["n", "c", "k", 10], |r| r.get::<_, String>(3))?
                .collect::<rusqlite::Result<Vec<_>>>()?
                .join("\n");
            assert!(plan.contains("SEARCH memories USING INDEX"), "{plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        }
        Ok(())
    }
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

/// Indexed memories of one namespace (optionally one category) nearest to
/// the query vector `q` by cosine similarity, best first, with their
/// similarity; only those at least `min_similarity` similar. An empty list
/// if the model's vectors do not reflect the index right now (none yet, or
/// another engine indexed without them; the next indexing pass with the
/// embedder rebuilds them), so a stale vector never names a row.
pub(crate) fn vector_search(
    conn: &Connection,
    ns: &str,
    model_id: &str,
    q: &[f32],
    category: Option<&str>,
    min_similarity: f32,
    limit: usize,
) -> Result<Vec<(SearchHit, f32)>> {
    if is_zero(q) {
        return Ok(Vec::new());
    }
    let table = vector_table(model_id);
    let current: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM vector_models WHERE table_name = ?1 AND dimension = ?2
                AND watermark = (SELECT value FROM meta WHERE name = 'index_watermark'))",
        )?
        .query_row(params![&table, q.len() as i64], |r| r.get(0))?;
    if !current {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT m.namespace, m.category, m.key, m.value, m.metadata, m.version, m.updated_at,
                vec_distance_cosine(v.vector, ?1) AS distance
         FROM {table} v JOIN memories m ON m.id = v.id
         WHERE v.namespace = ?2 AND m.namespace = ?2 AND m.deleted = 0
           AND (?3 IS NULL OR m.category = ?3)
           AND distance <= ?4
         ORDER BY distance, m.updated_at DESC
         LIMIT ?5"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st.query_map(
        params![
            to_blob(q),
            ns,
            category,
            f64::from(1.0 - min_similarity),
            limit as i64
        ],
        |row| {
            let distance: f64 = row.get(7)?;
            let similarity = (1.0 - distance) as f32;
            Ok((
                SearchHit {
                    record: record(row)?,
                    score: f64::from(similarity),
                    fresh: false,
                },
                similarity,
            ))
        },
    )?;
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
            hlc: seq << 16,
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
        let value = |w: &SqliteWriter, key: &str| {
            get(w.connection(), "n", "c", key).unwrap().map(|r| r.value)
        };
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
        let mut ix = open_connection(&config.path, Synchronous::Full, Duration::from_secs(1))?;
        index_pending(&mut ix, 100, Duration::from_secs(1))?;
        let tombstones = |w: &SqliteWriter| -> i64 {
            w.connection()
                .query_row("SELECT count(*) FROM memories WHERE deleted = 1", [], |r| {
                    r.get(0)
                })
                .unwrap()
        };
        assert_eq!(tombstones(&w), 2, "indexing keeps them");
        assert_eq!(purge_tombstones(w.connection(), 30)?, 1);
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
        open_connection(path, Synchronous::Full, Duration::from_secs(1)).unwrap()
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
        let live: i64 =
            conn.query_row("SELECT count(*) FROM memories WHERE deleted = 0", [], |r| {
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
                    "UPDATE meta SET value = 0 WHERE name LIKE 'vector_rebuild:%'",
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
        let mut ix = open_connection(&config.path, Synchronous::Full, Duration::from_secs(1))?;
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
            "INSERT OR REPLACE INTO meta (name, value) VALUES ('normalizer_version', -1)",
            [],
        )?;
        assert!(reset_index_if_stale(&ix)?);
        assert_eq!(vector_count(&ix, &table)?, 0);
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
    fn migrate_upgrades_a_version_1_database() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let (w, config) = writer(&dir);
        w.connection()
            .execute_batch("DROP TABLE vector_models; PRAGMA user_version = 1;")?;
        drop(w);
        let w = SqliteWriter::open(&config)?;
        let n: i64 = w.connection().query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'vector_models'",
            [],
            |r| r.get(0),
        )?;
        assert_eq!(n, 1);
        migrate(w.connection())?;
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
}
