//! Vectors for hybrid retrieval: one table per embedder model, kept in step
//! with the index, rebuilt (outside the write lock) for a new model.

use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::embed::{is_zero, to_blob, Embedder};
use crate::error::Result;
use crate::model::now_ms;
use crate::store::{retry_busy, AttemptError};

use super::index_db::{begin_index_write, index_meta};
use super::schema::classify;
use crate::store::embedding_text;

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
pub(super) fn vectors_current(
    conn: &Connection,
    e: &dyn Embedder,
    watermark: i64,
) -> rusqlite::Result<bool> {
    Ok(vector_model(conn, e)? == Some((e.dimension() as i64, watermark)))
}

/// A rebuild whose owner has written no batch for this long (it crashed,
/// say) may be taken over by another engine.
pub(super) const REBUILD_STALE_MS: i64 = 60_000;

/// Rounds of rebuild / catch-up one `sync_vectors` call runs before it
/// leaves the rest to the next indexing pass.
pub(super) const SYNC_ROUNDS: usize = 8;

/// The `index_meta` row holding the time a rebuild of `model_id` last made
/// progress.
pub(super) fn heartbeat_name(model_id: &str) -> String {
    format!("vector_rebuild:{model_id}")
}

pub(super) fn beat(tx: &Connection, model_id: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO index_meta (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![heartbeat_name(model_id), now_ms()])?;
    Ok(())
}

/// `e`'s row in `vector_models`: (dimension, watermark).
pub(super) fn vector_model(
    conn: &Connection,
    e: &dyn Embedder,
) -> rusqlite::Result<Option<(i64, i64)>> {
    conn.prepare_cached("SELECT dimension, watermark FROM vector_models WHERE model_id = ?1")?
        .query_row([e.model_id()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

/// Whether another engine is rebuilding `e`'s table right now (its
/// heartbeat is recent).
pub(super) fn rebuild_in_progress(conn: &Connection, e: &dyn Embedder) -> rusqlite::Result<bool> {
    let beat: Option<i64> = conn
        .prepare_cached("SELECT value FROM index_meta WHERE name = ?1")?
        .query_row([heartbeat_name(e.model_id())], |r| r.get(0))
        .optional()?;
    Ok(beat.is_some_and(|t| now_ms() - t < REBUILD_STALE_MS))
}

/// One memory read for embedding: id, the change it was read at, its
/// namespace, and its text (`None` for a forgotten one).
pub(super) type VectorRow = (i64, i64, String, Option<String>);

pub(super) fn vector_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VectorRow> {
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
pub(super) fn changed_rows(
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
pub(super) fn embed_rows(e: &dyn Embedder, rows: &[VectorRow]) -> Vec<Option<Vec<f32>>> {
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
pub(super) fn write_vectors(
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
pub(super) fn sync_vectors(
    conn: &mut Connection,
    e: &dyn Embedder,
    busy_deadline: Duration,
) -> Result<()> {
    let dim = e.dimension() as i64;
    for _ in 0..SYNC_ROUNDS {
        let index = index_meta(conn, "index_watermark")?;
        match vector_model(conn, e)? {
            Some((d, w)) if d == dim && w == index => return Ok(()),
            Some((d, w)) if d == dim && w >= 0 => catch_up_vectors(conn, e, w, busy_deadline)?,
            Some((d, _)) if d == dim && rebuild_in_progress(conn, e)? => return Ok(()),
            _ => rebuild_vectors(conn, e, busy_deadline)?,
        }
    }
    Ok(())
}

pub(super) fn rebuild_error(
    what: &'static str,
) -> impl Fn((AttemptError, Duration)) -> crate::Error {
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
pub(super) fn rebuild_vectors(
    conn: &mut Connection,
    e: &dyn Embedder,
    busy_deadline: Duration,
) -> Result<()> {
    let table = vector_table(e.model_id());
    let dim = e.dimension() as i64;
    let token = -1 - fastrand::i64(0..i64::MAX - 1);
    let claimed = retry_busy(busy_deadline, || {
        let tx = begin_index_write(conn).map_err(classify)?;
        let target = index_meta(&tx, "index_watermark").map_err(classify)?;
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
            let tx = begin_index_write(conn).map_err(classify)?;
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
        let tx = begin_index_write(conn).map_err(classify)?;
        if still_ours(&tx)? {
            tx.execute(
                "UPDATE vector_models SET watermark = ?2 WHERE model_id = ?1",
                params![e.model_id(), target],
            )
            .map_err(classify)?;
            tx.execute(
                "DELETE FROM index_meta WHERE name = ?1",
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
pub(super) fn catch_up_vectors(
    conn: &mut Connection,
    e: &dyn Embedder,
    mut from: i64,
    busy_deadline: Duration,
) -> Result<()> {
    let table = vector_table(e.model_id());
    loop {
        let to = index_meta(conn, "index_watermark")?;
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
            let tx = begin_index_write(conn).map_err(classify)?;
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
pub(super) const REBUILD_BATCH: usize = 64;

/// Stores one memory's vector `v` (nothing for a zero vector, a text with
/// nothing to embed, which matches nothing).
pub(super) fn insert_vector(
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
