//! The schema `mnemo`: its DDL, created once under an advisory lock, the
//! `meta` counters, and the plain-words errors of opening (server down,
//! login refused, no permission to create the schema).

use super::conn::{Failure, PgConn};
use super::redact;

/// Bumped when the schema changes; stored in `mnemo.meta`
/// (`schema_version`).
pub(super) const SCHEMA_VERSION: i64 = 1;

/// The advisory lock (`pg_advisory_xact_lock`) held while the schema is
/// created, so two workers opening a new database at once do not race on
/// `CREATE … IF NOT EXISTS` (which is not safe against itself).
const SCHEMA_LOCK: i64 = 0x6d6e_656d_6f00_0001; // "mnemo" 0 1

/// The advisory lock held by an indexing pass (and by the index reset and
/// the vector bookkeeping): one indexer at a time for the database.
pub(super) const INDEX_LOCK: i64 = 0x6d6e_656d_6f00_0002;

/// Every text column is `COLLATE "C"`: byte order, which is Rust's `str`
/// order and SQLite's BINARY, so listings, keyset pages and the order rows
/// are locked in agree everywhere.
const DDL: &str = r#"
CREATE SCHEMA IF NOT EXISTS mnemo;
CREATE TABLE IF NOT EXISTS mnemo.meta (
    name  text COLLATE "C" PRIMARY KEY,
    value bigint NOT NULL
);
CREATE SEQUENCE IF NOT EXISTS mnemo.change_seq;
CREATE TABLE IF NOT EXISTS mnemo.memories (
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
CREATE INDEX IF NOT EXISTS memories_tsv ON mnemo.memories USING gin (tsv);
CREATE INDEX IF NOT EXISTS memories_queue ON mnemo.memories (change_seq)
    WHERE indexed_change < change_seq;
CREATE TABLE IF NOT EXISTS mnemo.dead_letters (
    id        bigserial PRIMARY KEY,
    namespace text COLLATE "C" NOT NULL,
    category  text COLLATE "C" NOT NULL,
    key       text COLLATE "C" NOT NULL,
    value     text COLLATE "C",
    metadata  text COLLATE "C",
    seq       bigint NOT NULL,
    reason    text COLLATE "C" NOT NULL,
    failed_at bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS mnemo.journal_marks (
    journal text COLLATE "C" PRIMARY KEY,
    seq     bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS mnemo.vector_models (
    model_id    text COLLATE "C" PRIMARY KEY,
    dimension   integer NOT NULL,
    synced_pass bigint  NOT NULL
);
CREATE TABLE IF NOT EXISTS mnemo.vectors (
    model_id  text COLLATE "C" NOT NULL,
    id        bigint NOT NULL,
    namespace text COLLATE "C" NOT NULL,
    change    bigint NOT NULL,
    vector    real[] NOT NULL,
    PRIMARY KEY (model_id, id)
);
CREATE INDEX IF NOT EXISTS vectors_by_namespace ON mnemo.vectors (model_id, namespace);
INSERT INTO mnemo.meta (name, value)
VALUES ('last_change', 0), ('last_seq', 0), ('max_hlc', 0), ('index_pass', 0)
ON CONFLICT (name) DO NOTHING;
"#;

/// The schema's version, or `None` when it is not there yet. A plain read:
/// opening a database whose schema is in place needs no `CREATE`
/// privilege, only `USAGE` on the schema.
fn installed_version(conn: &mut PgConn) -> Result<Option<i64>, Failure> {
    let rows = conn.query("SELECT to_regclass('mnemo.meta') IS NOT NULL", &[])?;
    let present: bool = match rows.first() {
        Some(row) => row.try_get(0)?,
        None => false,
    };
    if !present {
        return Ok(None);
    }
    let rows = conn.query(
        "SELECT value FROM mnemo.meta WHERE name = 'schema_version'",
        &[],
    )?;
    Ok(match rows.first() {
        Some(row) => Some(row.try_get(0)?),
        None => None,
    })
}

/// Creates the schema if it is missing or older. Idempotent, and safe when
/// several workers open at once (an advisory lock serialises them).
fn create(conn: &mut PgConn) -> Result<(), Failure> {
    conn.batch(&format!(
        "BEGIN; SELECT pg_advisory_xact_lock({SCHEMA_LOCK}); {DDL}
         INSERT INTO mnemo.meta (name, value) VALUES ('schema_version', {SCHEMA_VERSION})
         ON CONFLICT (name) DO UPDATE SET value = GREATEST(mnemo.meta.value, excluded.value);
         COMMIT;"
    ))
    .inspect_err(|_| conn.rollback())
}

/// Makes sure the schema is in place, explaining in plain words why it
/// cannot be (`url` is shown without its password).
pub(super) fn migrate(conn: &mut PgConn, url: &str) -> crate::Result<()> {
    let version = installed_version(conn).map_err(|f| open_failure(url, &f, Step::Check))?;
    if version.is_some_and(|v| v >= SCHEMA_VERSION) {
        return Ok(());
    }
    create(conn).map_err(|f| open_failure(url, &f, Step::Create))
}

/// What opening was doing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Connecting (and logging in).
    Connect,
    /// Reading whether the schema is there.
    Check,
    /// Creating the schema.
    Create,
}

/// A failure while opening, as [`crate::Error::Open`] in plain words.
pub(super) fn open_failure(url: &str, f: &Failure, step: Step) -> crate::Error {
    crate::Error::Open {
        path: std::path::PathBuf::from(redact(url)),
        reason: explain(&f.message(), f.code().map(|c| c.code()), step),
    }
}

/// The reason of an open error: what went wrong and what to do, from the
/// server's message and SQLSTATE.
pub(super) fn explain(message: &str, code: Option<&str>, step: Step) -> String {
    match code {
        Some("28P01") => format!("authentication failed (wrong password?): {message}"),
        Some(c) if c.starts_with("28") => {
            format!("authentication failed (the server refused this login): {message}")
        }
        Some("3D000") => format!("the database does not exist: {message}"),
        Some("42501") if step == Step::Create => format!(
            "the server refused to create mnemo's schema (permission denied): {message}; \
             grant CREATE on the database to this role, or create schema mnemo as its owner"
        ),
        Some("42501") => format!(
            "permission denied: {message}; this role needs USAGE on schema mnemo and \
             read/write on its tables (or CREATE on the database, the first time)"
        ),
        Some(c) if c.starts_with("08") || c.starts_with("57P") => {
            format!("cannot connect: {message}")
        }
        Some(c) if c.starts_with("53") => format!("the server is out of resources: {message}"),
        None if message.contains("password missing") => format!(
            "authentication failed (the server asks for a password and the URL has none): {message}"
        ),
        None if message.starts_with("authentication error") => {
            format!("authentication failed: {message}")
        }
        None if message.contains("TLS") => format!(
            "cannot connect: {message} (mnemo connects without TLS: use a Unix socket, a \
             trusted network or a TLS tunnel, with sslmode=prefer or disable)"
        ),
        None if step == Step::Connect => format!("cannot connect: {message}"),
        None => format!("the connection failed: {message}"),
        Some(_) => format!("the server failed: {message}"),
    }
}

/// A `meta` counter (0 if it is missing).
pub(super) fn meta(conn: &mut PgConn, name: &str) -> Result<i64, Failure> {
    let rows = conn.query("SELECT value FROM mnemo.meta WHERE name = $1", &[&name])?;
    Ok(match rows.first() {
        Some(row) => row.try_get(0)?,
        None => 0,
    })
}
