//! The indexer's steps: the queue of rows to index, the tsvector written in
//! chunks under an advisory lock, and the rebuild when the normaliser
//! changed.
//!
//! **A queue, not a watermark.** Change numbers come from a sequence, and
//! transactions of several workers commit out of order: a row numbered 41
//! may commit after one numbered 42 was indexed, so "everything up to 42 is
//! indexed" would skip it. The queue is instead the rows with
//! `indexed_change < change_seq` (a partial index holds exactly those), and
//! no order of commits can hide a row from it.
//!
//! **One indexer at a time.** A chunk is a transaction that first takes the
//! advisory lock [`INDEX_LOCK`]: across the fleet one indexer works at a
//! time, no work is done twice (the next one sees what the last one
//! indexed), and a worker that dies mid-chunk loses nothing (its transaction
//! rolls back and the lock goes with its connection; the rows stay queued).
//! A chunk takes the oldest queued changes (from the queue's partial
//! index, however large the table) and locks them `FOR UPDATE` in key
//! order, the writers' order, so an indexer and a writer never deadlock.
//!
//! Each row's tsvector is built in Rust (`super::text`), and `tsv` and
//! `indexed_change` (the change as read under the lock) are written for the
//! whole chunk by one `UPDATE … FROM unnest(…)`; a forgotten row gets no
//! tsvector and loses its vectors. When a chunk is not full the queue was
//! empty: every row committed before the call is indexed.

use std::time::Duration;

use crate::embed::Embedder;
use crate::error::Result;
use crate::store::{embedding_text, retry_busy, AttemptError, IndexPass, IndexStore};

use super::conn::{classify, Failure, PgConn};
use super::schema::INDEX_LOCK;
use super::text::tsvector;
use super::vectors::{embed_rows, sync_vectors, write_vectors, Embedded, NewVector};

/// The rows a chunk takes: the oldest queued changes (from the partial
/// index of the queue, whatever the table's size), locked in the writers'
/// order, by key.
const CHUNK: &str = "
WITH q AS MATERIALIZED (
    SELECT id FROM mnemo.memories WHERE indexed_change < change_seq
    ORDER BY change_seq LIMIT $1
)
SELECT m.id, m.namespace, m.category, m.key, m.value, m.deleted, m.change_seq
FROM mnemo.memories m JOIN q ON q.id = m.id
WHERE m.indexed_change < m.change_seq
ORDER BY m.namespace, m.category, m.key
FOR UPDATE OF m";

/// The same rows, read without locks ahead of the chunk to embed the live
/// ones.
const PEEK: &str = "
SELECT id, change_seq, category, key, value, deleted FROM mnemo.memories
WHERE indexed_change < change_seq
ORDER BY change_seq LIMIT $1";

/// Writes a chunk's tsvectors (NULL for forgotten rows) and marks each row
/// indexed at the change read under the lock.
const MARK: &str = "
UPDATE mnemo.memories m SET tsv = u.tsv::tsvector, indexed_change = u.change
FROM unnest($1::int8[], $2::text[], $3::int8[]) AS u(id, tsv, change)
WHERE m.id = u.id";

/// Removes the chunk's rows' vectors, of every model: their memory changed
/// or was forgotten.
const DROP_VECTORS: &str = "
DELETE FROM mnemo.vectors v USING mnemo.vector_models vm
WHERE v.model_id = vm.model_id AND v.id = ANY($1::int8[])";

/// Counts a pass that indexed rows; returns the pass's number.
const NEXT_PASS: &str =
    "UPDATE mnemo.meta SET value = value + 1 WHERE name = 'index_pass' RETURNING value";

/// Moves a model's vectors along with a pass, if they reflected every pass
/// before it.
const KEEP_SYNCED: &str = "
UPDATE mnemo.vector_models SET synced_pass = $2::int8
WHERE model_id = $1::text AND dimension = $3::int4 AND synced_pass = $2::int8 - 1";

/// The lowest change still queued, and the last change committed.
const POSITION: &str = "
SELECT (SELECT min(change_seq) FROM mnemo.memories WHERE indexed_change < change_seq),
       (SELECT value FROM mnemo.meta WHERE name = 'last_change')";

/// How long one statement waits for a lock (the advisory lock, a row a
/// writer holds) before the attempt is [`AttemptError::Busy`] and
/// [`retry_busy`] backs off: a slice of the deadline.
pub(super) fn lock_slice(deadline: Duration) -> Duration {
    (deadline / 4).clamp(Duration::from_millis(50), Duration::from_secs(5))
}

/// Opens a transaction holding the indexer's advisory lock, waiting at most
/// `slice` for any lock in it.
pub(super) fn begin_locked(conn: &mut PgConn, slice: Duration) -> Result<(), Failure> {
    conn.batch(&format!(
        "BEGIN; SET LOCAL lock_timeout = '{}ms'; SELECT pg_advisory_xact_lock({INDEX_LOCK});",
        slice.as_millis().max(1)
    ))
}

/// Runs `f` in a transaction holding the indexer's lock; commits if it
/// succeeds, rolls back if not.
pub(super) fn locked<T>(
    conn: &mut PgConn,
    slice: Duration,
    f: impl FnOnce(&mut PgConn) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let done = begin_locked(conn, slice)
        .and_then(|()| f(conn))
        .and_then(|v| conn.batch("COMMIT").map(|()| v));
    if done.is_err() {
        conn.rollback();
    }
    done
}

/// Indexes every queued row, in transactions of at most `chunk` rows,
/// keeping `embedder`'s vectors in step. Busy or failing steps are retried
/// until `busy_deadline`, then the pass fails ([`crate::Error::NotIndexed`]).
pub(crate) fn index_pending(
    conn: &mut PgConn,
    chunk: usize,
    busy_deadline: Duration,
    embedder: Option<&dyn Embedder>,
) -> Result<IndexPass> {
    let chunk = chunk.max(1);
    let mut total = IndexPass::default();
    if let Some(e) = embedder {
        sync_vectors(conn, e, busy_deadline)?;
    }
    loop {
        // Embedding takes milliseconds per memory with a neural model: it
        // runs here, before the chunk's transaction, so no writer waits on
        // it behind a row lock.
        let prepared = match embedder {
            Some(e) => pre_embed(conn, e, chunk).map_err(not_indexed)?,
            None => Embedded::new(),
        };
        let rows = retry_busy(busy_deadline, || {
            index_chunk(conn, chunk, busy_deadline, embedder, &prepared)
        })
        .map_err(|(e, _)| crate::Error::NotIndexed {
            reason: format!("indexing: {e:?}"),
        })?;
        total.rows += rows;
        if rows < chunk {
            break;
        }
    }
    total.watermark = position(conn).map_err(not_indexed)?.0;
    Ok(total)
}

fn not_indexed(f: Failure) -> crate::Error {
    crate::Error::NotIndexed {
        reason: format!("indexing: {f}"),
    }
}

/// Embeds (in one batch, with no transaction open) the live rows the next
/// chunk will most likely take.
fn pre_embed(conn: &mut PgConn, e: &dyn Embedder, chunk: usize) -> Result<Embedded, Failure> {
    let rows = conn.query(PEEK, &[&(chunk as i64)])?;
    let mut read = Vec::with_capacity(rows.len());
    for row in &rows {
        if row.try_get::<_, bool>(5)? {
            continue;
        }
        let id: i64 = row.try_get(0)?;
        let change: i64 = row.try_get(1)?;
        let text = embedding_text(row.try_get(2)?, row.try_get(3)?, row.try_get(4)?);
        read.push((id, change, text));
    }
    Ok(embed_rows(e, read))
}

/// One chunk: takes the indexer's lock, then up to `chunk` queued rows
/// (locked in key order), and writes their tsvectors, vectors and
/// `indexed_change`. Returns how many rows it indexed.
fn index_chunk(
    conn: &mut PgConn,
    chunk: usize,
    busy_deadline: Duration,
    embedder: Option<&dyn Embedder>,
    prepared: &Embedded,
) -> Result<usize, AttemptError> {
    // Look before locking: nothing queued is the common case at open.
    let queued = conn.query(POSITION, &[]).map_err(|f| classify(&f))?;
    let empty = match queued.first() {
        Some(row) => row
            .try_get::<_, Option<i64>>(0)
            .map_err(|e| classify(&e.into()))?
            .is_none(),
        None => true,
    };
    if empty {
        return Ok(0);
    }
    locked(conn, lock_slice(busy_deadline), |conn| {
        let rows = conn.query(CHUNK, &[&(chunk as i64)])?;
        let mut ids = Vec::with_capacity(rows.len());
        let mut tsvs: Vec<Option<String>> = Vec::with_capacity(rows.len());
        let mut changes = Vec::with_capacity(rows.len());
        let mut vectors: Vec<NewVector> = Vec::new();
        for row in &rows {
            let id: i64 = row.try_get(0)?;
            let deleted: bool = row.try_get(5)?;
            let change: i64 = row.try_get(6)?;
            ids.push(id);
            changes.push(change);
            if deleted {
                tsvs.push(None);
                continue;
            }
            let category: &str = row.try_get(2)?;
            let key: &str = row.try_get(3)?;
            let value: &str = row.try_get(4)?;
            tsvs.push(Some(tsvector(key, category, value)));
            if let Some(e) = embedder {
                let vector = match prepared.get(id, change) {
                    Some(v) => v.clone(),
                    // Changed since it was read for embedding (or new): not
                    // reached unless a writer got in between.
                    None => e.embed(&embedding_text(category, key, value)),
                };
                vectors.push(NewVector { id, change, vector });
            }
        }
        if ids.is_empty() {
            return Ok(0);
        }
        conn.execute(MARK, &[&ids, &tsvs, &changes])?;
        conn.execute(DROP_VECTORS, &[&ids])?;
        let pass: i64 = match conn.query(NEXT_PASS, &[])?.first() {
            Some(row) => row.try_get(0)?,
            None => 0,
        };
        if let Some(e) = embedder {
            write_vectors(conn, e, &vectors)?;
            let dim = e.dimension() as i32;
            conn.execute(KEEP_SYNCED, &[&e.model_id(), &pass, &dim])?;
        }
        Ok(ids.len())
    })
    .map_err(|f| classify(&f))
}

/// Rebuilds the index if another version of the text normaliser built it
/// (see [`crate::text::NORMALIZER_VERSION`]): every row is queued again and
/// every vector dropped, so the catch-up that follows re-indexes every row
/// (searches use the old tsvectors meanwhile). Returns whether it did.
pub(crate) fn reset_if_stale(conn: &mut PgConn, busy_deadline: Duration) -> Result<bool> {
    let version = normalizer_version(conn)?;
    if version == Some(crate::text::NORMALIZER_VERSION) {
        return Ok(false);
    }
    let reset = retry_busy(busy_deadline, || {
        locked(conn, lock_slice(busy_deadline), |conn| {
            // Under the lock: another worker may have just done it.
            let version = normalizer_version(conn)?;
            if version == Some(crate::text::NORMALIZER_VERSION) {
                return Ok(false);
            }
            conn.batch(&format!(
                "UPDATE mnemo.memories SET indexed_change = 0 WHERE indexed_change <> 0;
                 DELETE FROM mnemo.vectors;
                 UPDATE mnemo.vector_models SET synced_pass = -1;
                 INSERT INTO mnemo.meta (name, value) VALUES ('normalizer_version', {v})
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value;",
                v = crate::text::NORMALIZER_VERSION
            ))?;
            Ok(version.is_some())
        })
        .map_err(|f| classify(&f))
    });
    reset.map_err(|(e, _)| crate::Error::NotIndexed {
        reason: format!("rebuilding the index for a new text normaliser: {e:?}"),
    })
}

fn normalizer_version(conn: &mut PgConn) -> Result<Option<i64>, Failure> {
    let rows = conn.query(
        "SELECT value FROM mnemo.meta WHERE name = 'normalizer_version'",
        &[],
    )?;
    Ok(match rows.first() {
        Some(row) => Some(row.try_get(0)?),
        None => None,
    })
}

/// The index position: the highest change below which every change is
/// indexed (one less than the lowest queued change, or the sequence's last
/// value when nothing is queued), and the sequence's last value.
pub(crate) fn position(conn: &mut PgConn) -> Result<(i64, i64), Failure> {
    let rows = conn.query(POSITION, &[])?;
    let Some(row) = rows.first() else {
        return Ok((0, 0));
    };
    let lowest: Option<i64> = row.try_get(0)?;
    let last: i64 = row.try_get(1)?;
    Ok((lowest.map_or(last, |c| c - 1), last))
}

/// The PostgreSQL [`IndexStore`]: the indexer's own connection, opened
/// again after a failure.
pub(crate) struct PgIndex {
    conn: PgConn,
    /// How long `reset_if_stale` waits for a busy database.
    busy_deadline: Duration,
}

impl PgIndex {
    /// The index store on `conn`.
    pub fn new(conn: PgConn, busy_deadline: Duration) -> PgIndex {
        PgIndex {
            conn,
            busy_deadline,
        }
    }
}

impl IndexStore for PgIndex {
    fn reset_if_stale(&mut self) -> Result<bool> {
        reset_if_stale(&mut self.conn, self.busy_deadline)
    }

    fn index_pending(
        &mut self,
        chunk: usize,
        busy_deadline: Duration,
        embedder: Option<&dyn Embedder>,
    ) -> Result<IndexPass> {
        index_pending(&mut self.conn, chunk, busy_deadline, embedder)
    }

    fn position(&mut self) -> Result<(i64, i64)> {
        Ok(position(&mut self.conn)?)
    }

    fn reset_connection(&mut self) {
        self.conn.reset();
    }
}
