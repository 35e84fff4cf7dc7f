//! The batch writer: one transaction per batch, an upsert or forget per
//! operation under the rule of which write wins, dead letters, the journal
//! marks, and tombstone purging.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use rusqlite::{params, CachedStatement, Connection, OptionalExtension, TransactionBehavior};

use crate::config::Config;
use crate::error::Result;
use crate::model::{now_ms, OpPayload, StoreOp, WriteOutcome};
use crate::store::{retry_busy, AttemptError, BatchReport, BatchWriter, Fault, ItemResult};

use super::schema::{
    busy_slice, classify, classify_ref, meta, migrate, open_connection, open_error, set_meta,
};

/// Applies a save if it is at least as new as what the row holds (by
/// stamp) and changes something. Returns the new version, or no row.
pub(super) const UPSERT: &str = "
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
pub(super) const FORGET: &str = "
UPDATE memories SET deleted = 1, value = '', metadata = NULL, version = version + 1,
                    seq = ?4, change_seq = ?5, updated_at = ?6, hlc = ?7
WHERE namespace = ?1 AND category = ?2 AND key = ?3 AND deleted = 0 AND hlc <= ?7
RETURNING version";

const ROW_STATE: &str = "SELECT hlc, deleted, version FROM memories
     WHERE namespace = ?1 AND category = ?2 AND key = ?3";

const TOUCH: &str = "UPDATE memories SET hlc = ?4
     WHERE namespace = ?1 AND category = ?2 AND key = ?3 AND hlc < ?4";

/// A tombstone for a key the database does not hold (change 0: nothing to
/// index).
const TOMBSTONE: &str = "INSERT INTO memories (namespace, category, key, value, metadata, version,
                          seq, change_seq, created_at, updated_at, deleted, hlc)
     VALUES (?1, ?2, ?3, '', NULL, 0, ?4, 0, ?5, ?5, 1, ?6)";

const DEAD_LETTER: &str =
    "INSERT INTO dead_letters (namespace, category, key, value, metadata, seq,
                          reason, failed_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

/// Compiles every statement a batch runs. SQLite compiles a table's
/// triggers with the statement, so a failure here (a trigger naming a table
/// or function that is gone, say) is the database's state, never a row's.
fn prepare_all(conn: &Connection) -> rusqlite::Result<()> {
    for sql in [UPSERT, FORGET, ROW_STATE, TOUCH, TOMBSTONE, DEAD_LETTER] {
        conn.prepare_cached(sql)?;
    }
    Ok(())
}

/// The stamp a key's row holds, whether it is a tombstone, and its version.
pub(super) fn row_state(
    conn: &Connection,
    p: &OpPayload,
) -> rusqlite::Result<Option<(u64, bool, u64)>> {
    conn.prepare_cached(ROW_STATE)?
        .query_row(params![p.namespace(), p.category(), p.key()], |r| {
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
pub(super) fn touch(conn: &Connection, p: &OpPayload, hlc: u64) -> rusqlite::Result<()> {
    conn.prepare_cached(TOUCH)?.execute(params![
        p.namespace(),
        p.category(),
        p.key(),
        hlc as i64
    ])?;
    Ok(())
}

/// Applies one operation inside the open transaction, by the rule of which
/// write wins (see `crate::clock`): a row takes an operation only if its
/// stamp is at least the row's. `next_change` is advanced only when a row
/// actually changed.
/// The statements every row runs, prepared once per transaction: taking a
/// statement from rusqlite's cache hashes its SQL text and moves it out of
/// the cache and back, which per row was a measurable part of a flush.
pub(super) struct RowStatements<'c> {
    upsert: CachedStatement<'c>,
    forget: CachedStatement<'c>,
}

impl<'c> RowStatements<'c> {
    pub(super) fn prepare(conn: &'c Connection) -> rusqlite::Result<RowStatements<'c>> {
        Ok(RowStatements {
            upsert: conn.prepare_cached(UPSERT)?,
            forget: conn.prepare_cached(FORGET)?,
        })
    }
}

pub(super) fn apply_one(
    conn: &Connection,
    rows: &mut RowStatements<'_>,
    op: &StoreOp,
    next_change: &mut i64,
) -> rusqlite::Result<WriteOutcome> {
    let p = &op.payload;
    let seq = op.seq as i64;
    let hlc = op.hlc as i64;
    match &p.value() {
        Some(value) => {
            let version: Option<i64> = rows
                .upsert
                .query_row(
                    params![
                        p.namespace(),
                        p.category(),
                        p.key(),
                        value,
                        p.metadata(),
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
            let version: Option<i64> = rows
                .forget
                .query_row(
                    params![
                        p.namespace(),
                        p.category(),
                        p.key(),
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
                    conn.prepare_cached(TOMBSTONE)?.execute(params![
                        p.namespace(),
                        p.category(),
                        p.key(),
                        seq,
                        p.at_ms,
                        hlc
                    ])?;
                    Ok(WriteOutcome::NotFound)
                }
            }
        }
    }
}

pub(super) fn dead_letter(conn: &Connection, op: &StoreOp, reason: &str) -> rusqlite::Result<()> {
    let p = &op.payload;
    conn.prepare_cached(DEAD_LETTER)?.execute(params![
        p.namespace(),
        p.category(),
        p.key(),
        p.value(),
        p.metadata(),
        op.seq as i64,
        reason,
        now_ms()
    ])?;
    Ok(())
}

/// The SQLite batch writer: owns the write connection; lives on the writer
/// thread.
pub(crate) struct SqliteWriter {
    conn: Connection,
    /// The crash journal the batches come from; each commit records how far
    /// it got in `journal_marks`.
    journal_id: Option<String>,
    /// Operations (by sequence number) whose row rolled back a whole
    /// transaction (a trigger's `RAISE(ROLLBACK)`), with the reason: the
    /// next attempt dead-letters them without running them. Emptied as
    /// their batch commits.
    poison: std::collections::HashMap<u64, String>,
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
            poison: std::collections::HashMap::new(),
        })
    }

    /// The connection (for tests that inspect the database).
    #[cfg(test)]
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
        // A read first: it brings this connection's copy of the schema up to
        // date (another connection may have changed it) before compiling.
        let mut next_change = meta(&tx, "next_change").map_err(classify)?;
        prepare_all(&tx).map_err(|e| {
            AttemptError::Io(format!("the database's schema does not accept writes: {e}"))
        })?;
        let mut results = Vec::with_capacity(ops.len());
        let max_seq = ops.iter().map(|op| op.seq).max().unwrap_or(0);
        let max_hlc = ops.iter().map(|op| op.hlc).max().unwrap_or(0);
        // Plain SQL errors of rows failing alone, to tell a database-wide
        // fault (every row, the same error) from rows at fault.
        let mut sql_errors: Vec<String> = Vec::new();
        if isolate {
            for op in ops {
                if let Some(reason) = self.poison.get(&op.seq) {
                    dead_letter(&tx, op, reason).map_err(classify)?;
                    results.push(ItemResult::DeadLettered(reason.clone()));
                    continue;
                }
                let sp = tx.savepoint().map_err(classify)?;
                let mut change = next_change;
                // A panic on one row is that row's: it is caught here, the
                // savepoint rolls it back, and it is dead-lettered.
                let applied = catch_unwind(AssertUnwindSafe(|| {
                    let mut rows = RowStatements::prepare(&sp)?;
                    apply_one(&sp, &mut rows, op, &mut change)
                }));
                let (rejected, sql_error) = match applied {
                    Ok(Ok(outcome)) => {
                        sp.commit().map_err(classify)?;
                        next_change = change;
                        results.push(ItemResult::Written(outcome));
                        continue;
                    }
                    Ok(Err(e)) => match classify(e) {
                        // Alone in its savepoint, a row that fails with anything
                        // but a fault of the database is refused for its content.
                        AttemptError::Row(reason) => (reason, false),
                        AttemptError::Fatal(reason) => (reason, true),
                        other => return Err(other),
                    },
                    Err(_) => (
                        "the store panicked while writing this row".to_owned(),
                        false,
                    ),
                };
                drop(sp); // rolls back this row only
                if tx.is_autocommit() {
                    // The row rolled back the whole transaction (a trigger's
                    // `RAISE(ROLLBACK)`): nothing of this attempt stands, and
                    // nothing more may be written outside it. The next attempt
                    // dead-letters the row without running it.
                    tracing::warn!(seq = op.seq, reason = %rejected, "a row rolled back its whole transaction");
                    self.poison.insert(op.seq, rejected);
                    return Err(AttemptError::RolledBack);
                }
                if sql_error {
                    sql_errors.push(rejected.clone());
                }
                tracing::warn!(seq = op.seq, reason = %rejected, "row rejected; kept in dead_letters");
                dead_letter(&tx, op, &rejected).map_err(classify)?;
                results.push(ItemResult::DeadLettered(rejected));
            }
        } else {
            let mut rows = RowStatements::prepare(&tx).map_err(classify)?;
            for op in ops {
                let outcome = apply_one(&tx, &mut rows, op, &mut next_change).map_err(classify)?;
                results.push(ItemResult::Written(outcome));
            }
        }
        if ops.len() > 1
            && sql_errors.len() == ops.len()
            && sql_errors.iter().all(|r| *r == sql_errors[0])
        {
            // Every row failing alike is the database, not the rows: retried
            // (the transaction, dead letters included, rolls back on drop).
            return Err(AttemptError::Io(format!(
                "every row of the batch fails with the same error: {}",
                sql_errors[0]
            )));
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
        for op in ops {
            self.poison.remove(&op.seq);
        }
        Ok(BatchReport {
            results,
            last_change: next_change - 1,
        })
    }
}

impl SqliteWriter {
    /// The batch with a savepoint per row. A row that rolls back the whole
    /// transaction is remembered and the batch tried again without it (at
    /// most once per row).
    fn attempt_row_by_row(&mut self, ops: &[StoreOp]) -> Result<BatchReport, AttemptError> {
        for _ in 0..ops.len() {
            match self.attempt(ops, true) {
                Err(AttemptError::RolledBack) => continue,
                other => return other,
            }
        }
        self.attempt(ops, true)
    }
}

impl BatchWriter for SqliteWriter {
    /// One attempt; a lock held by another writer is waited out for the
    /// connection's busy timeout (a slice of `busy_deadline`) before it is a
    /// fault, which the writer retries.
    fn write_batch(&mut self, ops: &[StoreOp]) -> Result<BatchReport, Fault> {
        // Fast path: the whole batch in one go. Only if a row may be at
        // fault (rejected, a plain SQL error, a panic) is the batch tried
        // again with a savepoint per row, so one poison row cannot hold up
        // the writer (and every later save) for good.
        let first = catch_unwind(AssertUnwindSafe(|| self.attempt(ops, false)));
        let result = match first {
            Ok(Err(AttemptError::Row(reason) | AttemptError::Fatal(reason))) => {
                tracing::debug!(%reason, "a row may be at fault; retrying the batch row by row");
                self.attempt_row_by_row(ops)
            }
            Err(_) => {
                tracing::debug!("the store panicked; retrying the batch row by row");
                self.attempt_row_by_row(ops)
            }
            Ok(other) => other,
        };
        result.map_err(|e| {
            Fault(match e {
                AttemptError::Busy => "the database is locked by another writer".to_owned(),
                AttemptError::Io(reason) | AttemptError::Fatal(reason) => reason,
                // A row error outside a savepoint (the dead-letter insert
                // itself failed): the batch is tried again.
                AttemptError::Row(reason) => format!("a row could not be isolated: {reason}"),
                AttemptError::RolledBack => "rows keep rolling back the transaction".to_owned(),
            })
        })
    }

    fn set_journal(&mut self, id: Option<String>) {
        self.journal_id = id;
    }

    fn journal_mark(&mut self, journal: &str) -> Result<u64> {
        journal_mark(&self.conn, journal)
    }

    fn drop_journal_mark(&mut self, journal: &str) -> Result<()> {
        drop_journal_mark(&self.conn, journal)
    }

    fn prune_journal_marks(&mut self, journal_dir: &Path) -> Result<usize> {
        prune_journal_marks(&self.conn, journal_dir)
    }

    fn purge_tombstones(&mut self, horizon: u64, indexed: i64) -> Result<usize> {
        purge_tombstones(&self.conn, horizon, indexed)
    }

    fn last_seq(&mut self) -> Result<u64> {
        super::schema::last_seq(&self.conn)
    }

    fn max_hlc(&mut self) -> Result<u64> {
        super::schema::max_hlc(&self.conn)
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

/// Purges tombstones stamped before `horizon` and already out of the index
/// (changes up to `indexed`). A tombstone keeps a forgotten key from coming back when a save
/// accepted before the forget arrives late (a dead engine's journal); no
/// journal on disk holds an operation older than `horizon`, so those
/// tombstones have nothing left to stop.
///
/// Housekeeping: it looks first (a read), and gives up at once if another
/// writer holds the lock (the next open purges them).
///
/// Its cost follows the tombstones, not the table: both statements read the
/// partial index `memories_tombstones`.
pub(crate) fn purge_tombstones(conn: &Connection, horizon: u64, indexed: i64) -> Result<usize> {
    const WHERE: &str = "deleted = 1 AND hlc < ?1 AND change_seq <= ?2";
    let any: bool = conn.query_row(
        &format!(
            "SELECT EXISTS (SELECT 1 FROM memories INDEXED BY memories_tombstones WHERE {WHERE})"
        ),
        params![horizon as i64, indexed],
        |r| r.get(0),
    )?;
    if !any {
        return Ok(0);
    }
    match conn.execute(
        &format!("DELETE FROM memories INDEXED BY memories_tombstones WHERE {WHERE}"),
        params![horizon as i64, indexed],
    ) {
        Ok(n) => Ok(n),
        Err(e) if matches!(classify_ref(&e), AttemptError::Busy) => Ok(0),
        Err(e) => Err(e.into()),
    }
}
