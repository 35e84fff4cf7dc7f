//! Vectors for hybrid retrieval: `mnemo.vectors` holds one `real[]` per
//! (embedder model, memory) with the change it was embedded at; a search
//! uses a vector only while that change is the one the row is indexed at,
//! so a stale vector never names a row (`super::read`).
//!
//! Indexing chunks write the vectors of the rows they index (embedded
//! before the chunk's transaction). A worker without an embedder, or with
//! another model, indexes rows without this model's vectors; to find those
//! rows without scanning every table on every pass, passes are numbered
//! (`meta.index_pass`, counted under the indexer's lock, so numbers commit
//! in order) and `vector_models.synced_pass` is the last pass whose rows
//! have the model's vectors. A chunk that finds its model in step moves it
//! along; otherwise [`sync_vectors`] sweeps for the live indexed rows that
//! lack a current vector (embedding with no transaction open) and, when a
//! sweep finds none under the lock, marks the model in step again. A text
//! with nothing to embed (a zero vector) or a vector of the wrong length is
//! stored as an empty array: done, and never matched.

use std::collections::HashMap;
use std::time::Duration;

use crate::embed::{is_zero, Embedder};
use crate::error::Result;
use crate::store::{embedding_text, retry_busy, AttemptError};

use super::conn::{classify, Failure, PgConn};
use super::index::{lock_slice, locked};

/// One memory's new vector, for the change it was embedded at.
pub(super) struct NewVector {
    pub id: i64,
    pub change: i64,
    pub vector: Vec<f32>,
}

/// Vectors embedded ahead of a chunk, by memory id.
#[derive(Default)]
pub(super) struct Embedded(HashMap<i64, (i64, Vec<f32>)>);

impl Embedded {
    pub fn new() -> Embedded {
        Embedded::default()
    }

    /// The vector of memory `id`, if it was embedded at `change`.
    pub fn get(&self, id: i64, change: i64) -> Option<&Vec<f32>> {
        self.0
            .get(&id)
            .filter(|(c, _)| *c == change)
            .map(|(_, v)| v)
    }
}

/// Embeds `rows` (id, change, text) in one batch.
pub(super) fn embed_all(e: &dyn Embedder, rows: Vec<(i64, i64, String)>) -> Vec<NewVector> {
    let texts: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    let vectors = e.embed_batch(&texts);
    rows.iter()
        .zip(vectors)
        .map(|(r, vector)| NewVector {
            id: r.0,
            change: r.1,
            vector,
        })
        .collect()
}

/// [`embed_all`], kept by id for the chunk that follows.
pub(super) fn embed_rows(e: &dyn Embedder, rows: Vec<(i64, i64, String)>) -> Embedded {
    Embedded(
        embed_all(e, rows)
            .into_iter()
            .map(|v| (v.id, (v.change, v.vector)))
            .collect(),
    )
}

/// Stores vectors (replacing the model's older ones) for the memories that
/// are still live and indexed at the change they were embedded at; the
/// others are left to a later pass. The vectors travel as one flat array
/// with each row's start and length (0: nothing to match, stored empty).
const UPSERT_VECTORS: &str = "
INSERT INTO mnemo.vectors (model_id, id, namespace, change, vector)
SELECT $1::text, m.id, m.namespace, u.change,
       CASE WHEN u.len = 0 THEN '{}'::real[]
            ELSE ($6::real[])[u.start : u.start + u.len - 1] END
FROM unnest($2::int8[], $3::int8[], $4::int4[], $5::int4[]) AS u(id, change, start, len)
JOIN mnemo.memories m ON m.id = u.id
WHERE m.change_seq = u.change AND m.indexed_change = u.change AND NOT m.deleted
ON CONFLICT (model_id, id) DO UPDATE
    SET namespace = excluded.namespace, change = excluded.change, vector = excluded.vector";

/// Writes `vectors` of `e`'s model (see [`UPSERT_VECTORS`]).
pub(super) fn write_vectors(
    conn: &mut PgConn,
    e: &dyn Embedder,
    vectors: &[NewVector],
) -> Result<(), Failure> {
    if vectors.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(vectors.len());
    let mut changes = Vec::with_capacity(vectors.len());
    let mut starts: Vec<i32> = Vec::with_capacity(vectors.len());
    let mut lens: Vec<i32> = Vec::with_capacity(vectors.len());
    let mut flat: Vec<f32> = Vec::new();
    for v in vectors {
        ids.push(v.id);
        changes.push(v.change);
        starts.push(i32::try_from(flat.len() + 1).unwrap_or(i32::MAX));
        let usable = v.vector.len() == e.dimension() && !is_zero(&v.vector);
        if v.vector.len() != e.dimension() {
            tracing::warn!(
                model = e.model_id(),
                id = v.id,
                len = v.vector.len(),
                dimension = e.dimension(),
                "the embedder returned a vector of the wrong length; memory left out of vector search"
            );
        }
        if usable {
            flat.extend_from_slice(&v.vector);
            lens.push(i32::try_from(v.vector.len()).unwrap_or(0));
        } else {
            lens.push(0);
        }
    }
    conn.execute(
        UPSERT_VECTORS,
        &[&e.model_id(), &ids, &changes, &starts, &lens, &flat],
    )?;
    Ok(())
}

/// Live indexed memories after id `after` that have no vector of model
/// `$1` for the change they are indexed at, by id.
const MISSING: &str = "
SELECT m.id, m.change_seq, m.category, m.key, m.value FROM mnemo.memories m
WHERE NOT m.deleted AND m.change_seq > 0 AND m.indexed_change = m.change_seq AND m.id > $2
  AND NOT EXISTS (SELECT 1 FROM mnemo.vectors v
                  WHERE v.model_id = $1 AND v.id = m.id AND v.change = m.change_seq)
ORDER BY m.id
LIMIT $3";

/// Memories embedded per step of a sweep.
const SWEEP_BATCH: i64 = 64;

/// Sweeps one [`sync_vectors`] call may start over (rows changed under
/// it) before it leaves the rest to the next pass.
const SYNC_ROUNDS: usize = 8;

fn missing(
    conn: &mut PgConn,
    model: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<(i64, i64, String)>, Failure> {
    let rows = conn.query(MISSING, &[&model, &after, &limit])?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let text = embedding_text(row.try_get(2)?, row.try_get(3)?, row.try_get(4)?);
        out.push((row.try_get(0)?, row.try_get(1)?, text));
    }
    Ok(out)
}

/// Registers `e`'s model (or a new dimension for it, dropping its old
/// vectors): out of step, so the sweep that follows fills it.
fn register(conn: &mut PgConn, e: &dyn Embedder) -> Result<(), Failure> {
    let dim = e.dimension() as i32;
    let model = e.model_id();
    let rows = conn.query(
        "SELECT dimension FROM mnemo.vector_models WHERE model_id = $1",
        &[&model],
    )?;
    let known: Option<i32> = match rows.first() {
        Some(row) => Some(row.try_get(0)?),
        None => None,
    };
    if known == Some(dim) {
        return Ok(());
    }
    conn.execute("DELETE FROM mnemo.vectors WHERE model_id = $1", &[&model])?;
    conn.execute(
        "INSERT INTO mnemo.vector_models (model_id, dimension, synced_pass) VALUES ($1, $2, -1)
         ON CONFLICT (model_id) DO UPDATE SET dimension = excluded.dimension, synced_pass = -1",
        &[&model, &dim],
    )?;
    Ok(())
}

fn sync_error(what: &'static str) -> impl Fn((AttemptError, Duration)) -> crate::Error {
    move |(e, _)| crate::Error::NotIndexed {
        reason: format!("vectors ({what}): {e:?}"),
    }
}

/// Makes `e`'s vectors reflect every indexing pass, if they do not (see the
/// module's documentation). Embeds with no transaction open; takes the
/// indexer's lock only to register the model and to mark it in step.
pub(super) fn sync_vectors(
    conn: &mut PgConn,
    e: &dyn Embedder,
    busy_deadline: Duration,
) -> Result<()> {
    let slice = lock_slice(busy_deadline);
    let model = e.model_id();
    let dim = e.dimension() as i32;
    let rows = conn
        .query(
            "SELECT vm.dimension, vm.synced_pass, p.value
             FROM mnemo.meta p LEFT JOIN mnemo.vector_models vm ON vm.model_id = $1
             WHERE p.name = 'index_pass'",
            &[&model],
        )
        .map_err(not_indexed)?;
    let state = match rows.first() {
        Some(row) => (
            row.try_get::<_, Option<i32>>(0)
                .map_err(|e| not_indexed(e.into()))?,
            row.try_get::<_, Option<i64>>(1)
                .map_err(|e| not_indexed(e.into()))?,
            row.try_get::<_, i64>(2)
                .map_err(|e| not_indexed(e.into()))?,
        ),
        None => (None, None, 0),
    };
    match state {
        (Some(d), Some(synced), pass) if d == dim && synced == pass => return Ok(()),
        (Some(d), _, _) if d == dim => {}
        _ => retry_busy(busy_deadline, || {
            locked(conn, slice, |c| register(c, e)).map_err(|f| classify(&f))
        })
        .map_err(sync_error("register"))?,
    }
    let mut after = i64::MIN;
    let mut rounds = 0;
    loop {
        let rows = missing(conn, model, after, SWEEP_BATCH).map_err(not_indexed)?;
        let Some(last) = rows.last().map(|r| r.0) else {
            if after == i64::MIN {
                // A whole sweep found nothing: in step, if it still holds
                // under the lock (no pass can run meanwhile).
                let done = retry_busy(busy_deadline, || {
                    locked(conn, slice, |c| mark_synced(c, model, dim)).map_err(|f| classify(&f))
                })
                .map_err(sync_error("finish"))?;
                if done {
                    return Ok(());
                }
            }
            // Once more from the start, for rows indexed meanwhile; the
            // rest is left to the next pass if they keep coming.
            rounds += 1;
            if rounds >= SYNC_ROUNDS {
                return Ok(());
            }
            after = i64::MIN;
            continue;
        };
        after = last;
        let vectors = embed_all(e, rows);
        retry_busy(busy_deadline, || {
            write_vectors(conn, e, &vectors).map_err(|f| classify(&f))
        })
        .map_err(sync_error("sweep"))?;
    }
}

/// Marks `model` in step with the last pass if no live indexed row lacks
/// its vector. Runs under the indexer's lock.
fn mark_synced(conn: &mut PgConn, model: &str, dim: i32) -> Result<bool, Failure> {
    if !missing(conn, model, i64::MIN, 1)?.is_empty() {
        return Ok(false);
    }
    conn.execute(
        "UPDATE mnemo.vector_models
         SET synced_pass = (SELECT value FROM mnemo.meta WHERE name = 'index_pass')
         WHERE model_id = $1 AND dimension = $2",
        &[&model, &dim],
    )?;
    Ok(true)
}

fn not_indexed(f: Failure) -> crate::Error {
    crate::Error::NotIndexed {
        reason: format!("vectors: {f}"),
    }
}
