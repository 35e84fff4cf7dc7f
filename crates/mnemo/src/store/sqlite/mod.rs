//! The SQLite store: schema, the batch writer, the indexer's steps and the
//! reads. Plain synchronous code; each function takes the connection it
//! runs on.
//!
//! - `schema`: connections, pragmas, migrations, error sorting.
//! - `write`: the batch writer, journal marks, tombstones.
//! - `index`: the FTS index steps and its watermark.
//! - `vectors`: hybrid retrieval's vector tables.
//! - `read`: the read pool and every read.
//!
//! Tables:
//! - `memories`: one row per (namespace, category, key), with the stamp
//!   (`hlc`) of the operation it holds; forgets leave a tombstone
//!   (`deleted = 1`) that keeps an older save of the key from coming back,
//!   purged at open once no journal can hold one (`purge_tombstones`).
//!   Every change gets a database-wide increasing `change_seq`, assigned
//!   under the write lock.
//! - `memories_fts`: contentless FTS5 over normalised text, rowid =
//!   `memories.id`, plus a namespace token column.
//! - `dead_letters`: rows the database rejected, with the reason.
//! - `meta`: counters (`next_change`, `index_watermark`, `last_seq`,
//!   `max_hlc`).
//! - `journal_marks`: per crash journal, the highest sequence number
//!   committed from it (written in the batch's own transaction).
//! - `vector_models`: one row per embedder model id that has vectors: its
//!   table, dimension and the change number its vectors reflect.
//! - `vectors_<model>` (one per model id, created by the indexer when hybrid
//!   retrieval is on): `id` = `memories.id`, `namespace`, `vector` (f32
//!   blob), searched with sqlite-vec's `vec_distance_cosine`.

use std::sync::Arc;

use crate::config::Config;
use crate::error::Result;
use crate::store::Opened;

mod index;
mod read;
mod schema;
mod vectors;
mod write;

pub(crate) use index::*;
pub(crate) use read::*;
pub(crate) use schema::*;
#[cfg(test)]
pub(crate) use vectors::vector_table;
pub(crate) use write::*;

#[cfg(test)]
mod tests;

/// Opens the SQLite store at `config.path` (creating the file and its
/// folder): the schema, the writer's and the indexer's connections, and
/// the read pool.
pub(crate) fn open_store(config: &Config) -> Result<Opened> {
    if let Some(parent) = config.path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    let writer = SqliteWriter::open(config)?;
    let index_conn = open_connection(
        &config.path,
        config.synchronous,
        busy_slice(config.busy_deadline),
    )?;
    Ok(Opened {
        writer: Box::new(writer),
        index: Box::new(SqliteIndex::new(config, Some(index_conn))),
        reads: Arc::new(ReadPool::new(config)),
    })
}
