//! The PostgreSQL store: the same seam as SQLite's
//! ([`BatchWriter`](crate::store::BatchWriter),
//! [`IndexStore`](crate::store::IndexStore),
//! [`Reader`](crate::store::Reader)), for a database a fleet of workers on
//! many machines share. Plain synchronous code over tokio-postgres (see `conn`
//! for how a synchronous caller drives the async client).
//!
//! - `conn`: the runtime thread, `PgConn` (reconnects on
//!   its next use after a failure), and how server errors are sorted.
//! - `schema`: the DDL, created under an advisory lock, and the
//!   plain-words errors of opening.
//! - `write`: the batch writer: its transaction, journal marks.
//! - `batch`: the one statement a batch is applied with, and the isolation
//!   of rejected rows as dead letters.
//! - `index`: the indexing queue, worked in chunks under an advisory lock.
//! - `vectors`: hybrid retrieval's vectors, kept in step with the index.
//! - `text`: the tsvector and tsquery literals (one normaliser for both
//!   stores).
//! - `read`: the read pool and every read.
//!
//! Tables, all in the schema `mnemo`, every text column `COLLATE "C"` (byte
//! order, as Rust's `str` and SQLite's BINARY):
//! - `memories`: one row per (namespace, category, key), holding the stamp
//!   (`hlc`) of the operation it reflects; forgets leave a tombstone
//!   (`deleted`) that keeps an older save from coming back. Tombstones are
//!   never purged here: a worker cannot see the journals of other
//!   machines, which may still hold an older save of the key. `change_seq`
//!   (from the sequence `change_seq`) numbers each change; `indexed_change`
//!   is the change the indexer last indexed, and `tsv` what it indexed.
//! - `dead_letters`: rows the server rejected, with its reason.
//! - `journal_marks`: per crash journal, the highest sequence number
//!   committed from it, written in the batch's transaction. Journal ids are
//!   stored with the machine's name and journal folder
//!   (`host:/folder/id`), since journals are local files and ids are only
//!   unique on one machine.
//! - `meta`: `schema_version`, `last_seq`, `max_hlc`, `normalizer_version`,
//!   `index_pass` (the number of the last indexing pass that indexed rows).
//! - `vectors`: one `real[]` per (embedder model, memory), with the change
//!   it was embedded at; `vector_models`: each model's dimension and the
//!   last indexing pass its vectors reflect.
//!
//! How the pieces fit:
//! - A batch is one transaction and, in the common case, two round trips:
//!   `BEGIN` + one upsert statement for every operation of the batch, then
//!   the `meta`/journal update + `COMMIT`. The operations are sorted by key
//!   in byte order, so two writers lock rows in the same order and never
//!   deadlock; `meta` is updated last (rows → `meta`).
//! - There is no index watermark: change numbers come from a sequence and
//!   transactions commit out of order across workers, so "everything below
//!   N is indexed" could skip a row. The indexing queue is the set of rows
//!   with `indexed_change < change_seq`, served by a partial index.
//! - An indexing pass holds a transaction-level advisory lock: one indexer
//!   at a time across the fleet, work never done twice, and a worker that
//!   dies mid-pass loses nothing (its transaction and lock go with its
//!   connection; the rows stay queued).

use std::sync::Arc;

use crate::config::Config;
use crate::error::Result;
use crate::store::Opened;

mod batch;
mod conn;
mod index;
mod read;
mod schema;
mod text;
mod vectors;
mod write;

#[cfg(test)]
mod server_tests;
#[cfg(test)]
mod tests;

use conn::{parse_url, PgConn};
use schema::{migrate, open_failure, Step};

/// Opens the PostgreSQL store `config.path` names: connects (the writer's
/// and the indexer's connections now, the readers' on first use) and
/// creates the schema if it is missing. Errors are [`crate::Error::Open`]
/// in plain words, naming the URL without its password.
pub(crate) fn open_store(config: &Config) -> Result<Opened> {
    let url = config.path.to_string_lossy().into_owned();
    let pg = Arc::new(parse_url(&url).map_err(|f| crate::Error::Open {
        path: std::path::PathBuf::from(redact(&url)),
        reason: format!("not a valid PostgreSQL URL: {}", f.message()),
    })?);
    let mut writer_conn = PgConn::open(&pg).map_err(|f| open_failure(&url, &f, Step::Connect))?;
    migrate(&mut writer_conn, &url)?;
    let index_conn = PgConn::open(&pg).map_err(|f| open_failure(&url, &f, Step::Connect))?;
    Ok(Opened {
        writer: Box::new(write::PgWriter::new(writer_conn, config)),
        index: Box::new(index::PgIndex::new(index_conn, config.busy_deadline)),
        reads: Arc::new(read::PgReader::new(&pg, config.read_connections)),
    })
}

/// Turns an error met while opening (replaying, catching the index up)
/// into [`crate::Error::Open`] naming the URL without its password.
/// Errors that already say what is wrong (and those that are not the
/// server's) are returned as they are.
pub(crate) fn open_error(url: &str, e: crate::Error) -> crate::Error {
    match e {
        crate::Error::Postgres(message) => {
            let code = sqlstate(&message);
            let step = if code.is_some() {
                Step::Check
            } else {
                Step::Connect
            };
            crate::Error::Open {
                path: std::path::PathBuf::from(redact(url)),
                reason: schema::explain(&message, code, step),
            }
        }
        other => other,
    }
}

/// The SQLSTATE in a message made by `Failure::message` (`… (SQLSTATE
/// 42501)…`).
fn sqlstate(message: &str) -> Option<&str> {
    let at = message.find("(SQLSTATE ")? + "(SQLSTATE ".len();
    let code = message.get(at..at + 5)?;
    code.bytes()
        .all(|b| b.is_ascii_alphanumeric())
        .then_some(code)
}

/// `url` without its password, for every message: the password of the
/// user part (`user:password@`) and a `password=` parameter are left out.
/// The user part ends at the first `@` anywhere, as tokio-postgres reads
/// it.
pub(crate) fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let (scheme, rest) = url.split_at(scheme_end);
    let (user, rest) = match rest.split_once('@') {
        Some((creds, rest)) => {
            let user = creds.split_once(':').map_or(creds, |(u, _)| u);
            (format!("{user}@"), rest)
        }
        None => (String::new(), rest),
    };
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let query = query.map(|q| {
        q.split('&')
            .filter(|kv| kv.split('=').next() != Some("password"))
            .collect::<Vec<_>>()
            .join("&")
    });
    match query {
        Some(q) if !q.is_empty() => format!("{scheme}{user}{main}?{q}"),
        _ => format!("{scheme}{user}{main}"),
    }
}
