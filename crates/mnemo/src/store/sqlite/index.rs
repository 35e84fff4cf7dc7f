//! The indexer's steps: bringing the FTS index up to the committed
//! watermark in chunks, and rebuilding it when the normaliser changed.

use std::time::Duration;

use rusqlite::{params, Connection};

use crate::config::Config;
use crate::embed::Embedder;
use crate::error::Result;
use crate::store::{embedding_text, retry_busy, AttemptError, IndexPass, IndexStore};
use crate::text::normalize;

use super::index_db::{
    begin_index_write, index_meta, open_index_connection, reset, set_index_meta, staleness, Stale,
};
use super::schema::{classify, meta};
use super::terms::{scope, scoped_text};
use super::vectors::{
    changed_rows, embed_rows, insert_vector, sync_vectors, vector_table, vectors_current,
};

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
pub(super) struct Prepared {
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
pub(super) fn pre_embed(
    conn: &Connection,
    e: &dyn Embedder,
    chunk: usize,
) -> rusqlite::Result<Prepared> {
    let watermark = index_meta(conn, "index_watermark")?;
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

pub(super) fn index_chunk(
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
             WHERE change_seq > (SELECT value FROM index_meta WHERE name = 'index_watermark'))",
        )
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(classify)?;
    if !behind {
        let watermark = index_meta(conn, "index_watermark").map_err(classify)?;
        return Ok(IndexPass { rows: 0, watermark });
    }
    // The index file's write lock only: the writer keeps writing memories
    // meanwhile (see `index_db`).
    let tx = begin_index_write(conn).map_err(classify)?;
    let mut watermark = index_meta(&tx, "index_watermark").map_err(classify)?;
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
                let scope = scope(&ns);
                insert
                    .execute(params![
                        id,
                        scope,
                        scoped_text(&scope, &normalize(&key)),
                        scoped_text(&scope, &normalize(&category)),
                        scoped_text(&scope, &normalize(&value))
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
        set_index_meta(&tx, "index_watermark", watermark).map_err(classify)?;
    }
    tx.commit().map_err(classify)?;
    Ok(IndexPass { rows, watermark })
}

/// Rebuilds the index from scratch if it does not match the memories: a
/// new (or deleted) index file, one built by another version of the
/// normaliser (see [`crate::text::NORMALIZER_VERSION`]), or one built for
/// another memories file. Empties it and resets the watermark, so the
/// catch-up that follows re-indexes every row. Returns whether an existing
/// index was rebuilt (a new one is just built).
pub(crate) fn reset_index_if_stale(conn: &mut Connection) -> Result<bool> {
    let Some(why) = staleness(conn)? else {
        return Ok(false);
    };
    if why != Stale::New {
        tracing::debug!(reason = ?why, "resetting the search index");
    }
    reset(conn)?;
    Ok(why != Stale::New)
}

/// An indexer's connection to `config.path`'s index file, the index reset
/// first if it does not match the memories (what an engine's open does).
pub(crate) fn open_indexer(config: &Config) -> Result<Connection> {
    let mut conn = open_index_connection(config)?;
    reset_index_if_stale(&mut conn)?;
    Ok(conn)
}

/// The index watermark and the last committed change, read together (on
/// the indexer's connection, which sees both files).
pub(crate) fn index_position(conn: &Connection) -> Result<(i64, i64)> {
    let watermark = index_meta(conn, "index_watermark")?;
    let next = meta(conn, "next_change")?;
    Ok((watermark, next - 1))
}

/// The SQLite [`IndexStore`]: the indexer's own connection, opened again
/// after a failure.
pub(crate) struct SqliteIndex {
    conn: Option<Connection>,
    config: Config,
}

impl SqliteIndex {
    /// An index store that starts with `conn` (or opens one when needed).
    pub fn new(config: &Config, conn: Option<Connection>) -> SqliteIndex {
        SqliteIndex {
            conn,
            config: config.clone(),
        }
    }

    fn connection(&mut self) -> Result<&mut Connection> {
        if self.conn.is_none() {
            self.conn = Some(open_index_connection(&self.config)?);
        }
        // Just set above when it was None.
        Ok(self.conn.as_mut().expect("connection was just opened"))
    }
}

impl IndexStore for SqliteIndex {
    fn reset_if_stale(&mut self) -> Result<bool> {
        reset_index_if_stale(self.connection()?)
    }

    fn index_pending(
        &mut self,
        chunk: usize,
        busy_deadline: Duration,
        embedder: Option<&dyn Embedder>,
    ) -> Result<IndexPass> {
        index_pending_with(self.connection()?, chunk, busy_deadline, embedder)
    }

    fn position(&mut self) -> Result<(i64, i64)> {
        index_position(self.connection()?)
    }

    fn reset_connection(&mut self) {
        self.conn = None;
    }
}
