//! The SQLite store: schema, the batch writer, the indexer's steps and the
//! reads. Plain synchronous code; each function takes the connection it
//! runs on.
//!
//! - `schema`: connections, pragmas, migrations, error sorting.
//! - `write`: the batch writer, journal marks, tombstones.
//! - `index_db`: the index file beside the memories file, which holds the
//!   derived data (its schema, connections, staleness, reset).
//! - `index`: the FTS index steps and its watermark.
//! - `terms`: the index's terms, scoped to their namespace.
//! - `vectors`: hybrid retrieval's vector tables.
//! - `read`: the read pool and every read.
//!
//! Tables of the memories file (`<database>`):
//! - `memories`: one row per (namespace, category, key), with the stamp
//!   (`hlc`) of the operation it holds; forgets leave a tombstone
//!   (`deleted = 1`) that keeps an older save of the key from coming back,
//!   purged at open once no journal can hold one (`purge_tombstones`).
//!   Every change gets a database-wide increasing `change_seq`, assigned
//!   under the write lock.
//! - `dead_letters`: rows the database rejected, with the reason.
//! - `meta`: counters (`next_change`, `last_seq`, `max_hlc`) and the
//!   file's random identity (`db_id`), which ties the index file to it.
//! - `journal_marks`: per crash journal, the highest sequence number
//!   committed from it (written in the batch's own transaction).
//!
//! Tables of the index file (`<database>-index`), all derived from
//! `memories` and rebuilt from it when missing, damaged or stale:
//! - `index_meta`: `index_watermark` (every change up to it is indexed),
//!   `normalizer_version`, `source_db` (the memories file's `db_id`), and
//!   vector rebuilds' heartbeats.
//! - `memories_fts`: contentless FTS5 over normalised text, each token
//!   scoped to its namespace (`terms`), rowid = `memories.id`, plus a
//!   namespace token column.
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
mod index_db;
mod read;
mod schema;
mod terms;
mod vectors;
mod write;

pub(crate) use index::*;
pub(crate) use index_db::index_path;
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
    let index_conn = index_db::open_index_connection(config)
        .map_err(|e| open_error(&index_db::index_path(&config.path), e))?;
    Ok(Opened {
        writer: Box::new(writer),
        index: Box::new(SqliteIndex::new(config, Some(index_conn))),
        reads: Arc::new(ReadPool::new(config)),
    })
}
