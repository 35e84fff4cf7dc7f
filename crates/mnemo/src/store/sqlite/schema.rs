//! Connections and the schema: pragmas, sqlite-vec, migrations, the `meta`
//! counters, and how SQLite errors are sorted (retry, isolate, give up, or
//! explain at open).

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OpenFlags};

use crate::config::Synchronous;
use crate::error::Result;
use crate::store::AttemptError;

pub(super) const SCHEMA: &str = r#"
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
INSERT OR IGNORE INTO meta (name, value) VALUES ('next_change', 1), ('last_seq', 0), ('max_hlc', 0);
INSERT OR IGNORE INTO meta (name, value) VALUES ('db_id', abs(random()));
"#;

/// Tombstones by stamp, so purging them costs the tombstones, not the
/// table (created by `migrate` once `hlc` exists).
pub(super) const TOMBSTONE_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS memories_tombstones ON memories (hlc) WHERE deleted = 1;";

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
pub(super) fn register_sqlite_vec() {
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
        conn.execute_batch(TOMBSTONE_INDEX)?;
        if version < 4 {
            drop_derived_data(conn)?;
        }
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"))
    };
    upgrade().inspect_err(|_| {
        let _ = conn.execute_batch("ROLLBACK");
    })?;
    Ok(())
}

/// Bumped when the schema changes; stored in SQLite's `user_version`.
/// 2: `vector_models`. 3: `memories.hlc`, `meta.max_hlc`. 4: the derived
/// data (FTS index, vectors, watermark) moved to the index file
/// (`index_db`), `meta.db_id`, the partial index `memories_tombstones`.
pub(super) const SCHEMA_VERSION: i64 = 4;

/// Version 3 → 4: drops the derived data a database of version 3 or older
/// kept in its own file (the FTS table, the vector tables, their
/// watermarks); the index file is built from the memories at open.
fn drop_derived_data(conn: &Connection) -> rusqlite::Result<()> {
    let has_models: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'vector_models')",
        [],
        |r| r.get(0),
    )?;
    if has_models {
        let tables: Vec<String> = conn
            .prepare("SELECT table_name FROM vector_models")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for t in tables {
            conn.execute_batch(&format!("DROP TABLE IF EXISTS {t};"))?;
        }
    }
    conn.execute_batch(
        "DROP TABLE IF EXISTS vector_models;
         DROP TABLE IF EXISTS memories_fts;
         DELETE FROM meta WHERE name IN ('index_watermark', 'normalizer_version')
            OR name LIKE 'vector_rebuild:%';",
    )
}

pub(super) fn meta(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
}

pub(super) fn set_meta(conn: &Connection, name: &str, value: i64) -> rusqlite::Result<()> {
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

pub(super) fn read_only_reason(path: &Path) -> String {
    if is_read_only_fs(path) {
        "it is on a read-only file system; mnemo needs to write beside it (WAL, crash journal)"
            .to_owned()
    } else {
        "the file (or its folder) is read-only; mnemo needs to write to it".to_owned()
    }
}

/// Whether the file system holding `path` (or its folder) is mounted
/// read-only.
pub(super) fn is_read_only_fs(path: &Path) -> bool {
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
pub(super) fn classify(e: rusqlite::Error) -> AttemptError {
    classify_ref(&e)
}

pub(super) fn classify_ref(e: &rusqlite::Error) -> AttemptError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => AttemptError::Busy,
        Some(
            ErrorCode::SystemIoFailure
            | ErrorCode::ReadOnly
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen
            | ErrorCode::FileLockingProtocolFailed
            // The database's state, not a row's content: retried, never
            // dead-lettered row by row.
            | ErrorCode::DatabaseCorrupt
            | ErrorCode::NotADatabase
            | ErrorCode::OutOfMemory
            | ErrorCode::SchemaChanged
            | ErrorCode::OperationInterrupted
            | ErrorCode::OperationAborted,
        ) => AttemptError::Io(e.to_string()),
        Some(ErrorCode::ConstraintViolation | ErrorCode::TooBig | ErrorCode::TypeMismatch) => {
            AttemptError::Row(e.to_string())
        }
        // A plain SQL error (a trigger's function failing on a row's value,
        // say): may be the row's; the writer isolates rows to find out.
        _ => AttemptError::Fatal(e.to_string()),
    }
}
