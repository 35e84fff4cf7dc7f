//! The batch writer: the whole batch in one statement, the rule of which
//! write wins, dead letters, journal marks.
//!
//! **One statement per batch.** The operations (saves and forgets alike: a
//! forget is an upsert of a tombstone) travel as arrays and are applied by
//! one `INSERT … SELECT … FROM unnest(…) … ON CONFLICT … DO UPDATE … WHERE
//! <rule> RETURNING …` (`UPSERT` in `super::batch`), pipelined with
//! `BEGIN`. Rows it did not change (the row is newer, or already says the
//! same) are read and "touched" by a second statement (`TOUCH`) only when
//! there are any; `ON CONFLICT DO UPDATE` locks every conflicting row,
//! changed or not, so that read sees exactly what the upsert saw. `meta` and
//! the journal mark follow in one statement ([`FINISH`]) pipelined with
//! `COMMIT`: two round trips for a batch in the common case, whatever its
//! size.
//!
//! **Lock order.** The operations are sorted by (namespace, category, key)
//! in byte order (the columns are `COLLATE "C"`) and inserted in that order,
//! so two writers (and the indexer, which locks in the same order) never
//! deadlock on rows; `meta` is locked last, its rows in name order.
//!
//! A batch replayed from a journal may hold several operations of one key:
//! they run as successive statements in the same transaction (the k-th
//! operation of each key in the k-th), which is what applying them one by
//! one would do.
//!
//! Change numbers come from the sequence `change_seq`. A save's number is
//! drawn when the row is proposed, so a save found unchanged or outdated
//! leaves a gap in the numbers; nothing relies on them being dense.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use crate::config::Config;
use crate::error::Result;
use crate::model::{StoreOp, WriteOutcome};
use crate::store::{AttemptError, BatchReport, BatchWriter, Fault, ItemResult};

use super::batch::{apply, bisect, dead_letter, groups};
use super::conn::{classify, Failure, PgConn};
use super::schema::meta;

/// The end of a batch, pipelined with `COMMIT`: the journal's mark (when
/// `$1` is set), then `last_change`, `last_seq` and `max_hlc` raised, their
/// rows locked in name order.
pub(super) const FINISH: &str = "
WITH j AS (
    INSERT INTO mnemo.journal_marks (journal, seq)
    SELECT $1::text, $2::int8 WHERE $1::text IS NOT NULL
    ON CONFLICT (journal) DO UPDATE
        SET seq = GREATEST(mnemo.journal_marks.seq, excluded.seq)
), l AS (
    SELECT name FROM mnemo.meta WHERE name IN ('last_change', 'last_seq', 'max_hlc')
    ORDER BY name FOR UPDATE
)
UPDATE mnemo.meta m
SET value = GREATEST(m.value, CASE m.name WHEN 'last_seq' THEN $2::int8
                                          WHEN 'max_hlc' THEN $3::int8
                                          ELSE $4::int8 END)
FROM l WHERE m.name = l.name";

/// The PostgreSQL batch writer: the writer thread's connection.
pub(crate) struct PgWriter {
    conn: PgConn,
    /// This machine's name and journal folder, prefixed to journal ids in
    /// `journal_marks` (`host:/folder/`).
    tag: String,
    /// The journal later batches record their position for (tagged).
    journal: Option<String>,
    /// A transaction may be open (an attempt stopped half-way, by a panic
    /// say): the next attempt rolls it back first.
    open_tx: bool,
}

impl PgWriter {
    /// The writer on `conn`, whose journals live in `config`'s journal
    /// folder.
    pub fn new(conn: PgConn, config: &Config) -> PgWriter {
        PgWriter {
            conn,
            tag: machine_tag(&config.journal_folder()),
            journal: None,
            open_tx: false,
        }
    }

    /// One attempt at a batch: everything in one statement; if a row is
    /// rejected, again with the rows isolated.
    fn attempt(&mut self, ops: &[StoreOp]) -> Result<BatchReport, AttemptError> {
        // Fail point for tests: "return" fails this attempt as an I/O error
        // would (the `failpoints` feature; free when off).
        fail::fail_point!("mnemo::commit", |_| Err(AttemptError::Io(
            "injected I/O error (fail point mnemo::commit)".into()
        )));
        if self.open_tx {
            self.conn.rollback();
        }
        let groups = groups(ops);
        let mut results: Vec<Option<ItemResult>> = vec![None; ops.len()];
        self.open_tx = true;
        let mut last_change = 0;
        let mut first = Some("BEGIN");
        let mut fast = Ok(());
        for group in &groups {
            match apply(&mut self.conn, ops, group, first.take()) {
                Ok((outcomes, change)) => {
                    last_change = last_change.max(change);
                    for (i, o) in outcomes {
                        results[i] = Some(ItemResult::Written(o));
                    }
                }
                Err(f) => {
                    fast = Err(f);
                    break;
                }
            }
        }
        if first.is_some() {
            // An empty batch: its marks still go in a transaction.
            fast = self.conn.batch("BEGIN");
        }
        if let Err(f) = fast {
            self.conn.rollback();
            self.open_tx = false;
            match classify(&f) {
                AttemptError::Row(reason) => {
                    tracing::debug!(%reason, "a row was rejected; retrying the batch with rows isolated");
                    results = vec![None; ops.len()];
                    last_change = self.isolated(ops, &groups, &mut results)?;
                }
                other => return Err(other),
            }
        }
        let journal = self.journal.clone();
        let max_seq = ops.iter().map(|o| o.seq as i64).max().unwrap_or(0);
        let max_hlc = ops.iter().map(|o| o.hlc as i64).max().unwrap_or(0);
        let finished = self.conn.pipelined_query_last(
            FINISH,
            &[&journal, &max_seq, &max_hlc, &last_change],
            "COMMIT",
        );
        self.open_tx = false;
        finished.map_err(|f| {
            self.conn.rollback();
            classify(&f)
        })?;
        // `last_change` is the highest change this batch wrote (0 if it
        // wrote none): a save found unchanged draws a number from the
        // sequence too, which belongs to no row and must not show as one.
        Ok(BatchReport {
            results: results
                .into_iter()
                .map(|r| r.unwrap_or(ItemResult::Written(WriteOutcome::Outdated)))
                .collect(),
            last_change,
        })
    }

    /// The batch again (in a new transaction, left open for the caller to
    /// finish), each group bisected in savepoints down to the rows the
    /// server rejects, which become dead letters. Returns the highest change
    /// number written.
    fn isolated(
        &mut self,
        ops: &[StoreOp],
        groups: &[Vec<usize>],
        results: &mut [Option<ItemResult>],
    ) -> Result<i64, AttemptError> {
        let run = |this: &mut PgWriter, results: &mut [Option<ItemResult>]| {
            this.conn.batch("BEGIN")?;
            this.open_tx = true;
            let mut dead: Vec<(usize, String)> = Vec::new();
            let mut last_change = 0;
            for group in groups {
                bisect(
                    &mut this.conn,
                    ops,
                    group,
                    results,
                    &mut dead,
                    &mut last_change,
                )?;
            }
            Ok::<_, Failure>((dead, last_change))
        };
        let (dead, last_change) = run(self, results).map_err(|f| {
            self.conn.rollback();
            self.open_tx = false;
            classify(&f)
        })?;
        if ops.len() > 1 && dead.len() == ops.len() && dead.iter().all(|d| d.1 == dead[0].1) {
            // Every row failing alike is the database, not the rows: retried.
            self.conn.rollback();
            self.open_tx = false;
            return Err(AttemptError::Io(format!(
                "every row of the batch fails with the same error: {}",
                dead[0].1
            )));
        }
        if !dead.is_empty() {
            let written = dead_letter(&mut self.conn, ops, &dead);
            written.map_err(|f| {
                self.conn.rollback();
                self.open_tx = false;
                match classify(&f) {
                    // The dead-letter insert itself refused: the batch is
                    // tried again.
                    AttemptError::Row(reason) => {
                        AttemptError::Io(format!("a row could not be isolated: {reason}"))
                    }
                    other => other,
                }
            })?;
            for (i, reason) in dead {
                tracing::warn!(seq = ops[i].seq, %reason, "row rejected; kept in dead_letters");
                results[i] = Some(ItemResult::DeadLettered(reason));
            }
        }
        Ok(last_change)
    }
}

impl BatchWriter for PgWriter {
    /// One attempt. A failure is a fault the writer retries with backoff
    /// (a broken connection is dropped first, and the next attempt
    /// reconnects); a rejected row is a dead letter in a committed batch.
    fn write_batch(&mut self, ops: &[StoreOp]) -> Result<BatchReport, Fault> {
        let result = catch_unwind(AssertUnwindSafe(|| self.attempt(ops))).unwrap_or_else(|_| {
            // Whatever the attempt left open is rolled back by the next.
            Err(AttemptError::Io(
                "the store panicked while writing the batch".into(),
            ))
        });
        result.map_err(|e| {
            Fault(match e {
                AttemptError::Busy => {
                    "the database is busy (a lock, a deadlock or a serialization failure)"
                        .to_owned()
                }
                AttemptError::Io(reason) | AttemptError::Fatal(reason) => reason,
                AttemptError::Row(reason) => format!("a row could not be isolated: {reason}"),
                AttemptError::RolledBack => "the transaction was rolled back".to_owned(),
            })
        })
    }

    fn set_journal(&mut self, id: Option<String>) {
        self.journal = id.map(|id| format!("{}{id}", self.tag));
    }

    fn journal_mark(&mut self, journal: &str) -> Result<u64> {
        let id = format!("{}{journal}", self.tag);
        let rows = self.conn.query(
            "SELECT seq FROM mnemo.journal_marks WHERE journal = $1",
            &[&id],
        )?;
        let seq: i64 = match rows.first() {
            Some(row) => row.try_get(0).map_err(Failure::from)?,
            None => 0,
        };
        Ok(seq.max(0) as u64)
    }

    fn drop_journal_mark(&mut self, journal: &str) -> Result<()> {
        let id = format!("{}{journal}", self.tag);
        self.conn
            .execute("DELETE FROM mnemo.journal_marks WHERE journal = $1", &[&id])?;
        Ok(())
    }

    /// Deletes the marks of this machine's journals in `journal_dir` that
    /// have no files left. Marks of other machines, and of this machine's
    /// other journal folders, are never touched: their journals are not
    /// in this folder.
    fn prune_journal_marks(&mut self, journal_dir: &Path) -> Result<usize> {
        let tag = machine_tag(journal_dir);
        let rows = self.conn.query(
            "SELECT journal FROM mnemo.journal_marks WHERE starts_with(journal, $1)",
            &[&tag],
        )?;
        let names: Vec<String> = match std::fs::read_dir(journal_dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let mut gone: Vec<String> = Vec::new();
        for row in &rows {
            let mark: String = row.try_get(0).map_err(Failure::from)?;
            let Some(id) = mark.strip_prefix(&tag) else {
                continue;
            };
            let prefix = format!("{id}.");
            if !names.iter().any(|n| n.starts_with(&prefix)) {
                gone.push(mark);
            }
        }
        if gone.is_empty() {
            return Ok(0);
        }
        let n = self.conn.execute(
            "DELETE FROM mnemo.journal_marks WHERE journal = ANY($1::text[])",
            &[&gone],
        )?;
        Ok(n as usize)
    }

    /// Purges nothing: the journals of other machines, which may still hold
    /// an older save of a forgotten key, are invisible from here, so no
    /// tombstone can be known to be useless.
    fn purge_tombstones(&mut self, _horizon: u64, _indexed: i64) -> Result<usize> {
        Ok(0)
    }

    fn last_seq(&mut self) -> Result<u64> {
        Ok(meta(&mut self.conn, "last_seq")?.max(0) as u64)
    }

    fn max_hlc(&mut self) -> Result<u64> {
        Ok(meta(&mut self.conn, "max_hlc")?.max(0) as u64)
    }
}

/// `host:/absolute/journal/folder/`: what journal ids are prefixed with in
/// `journal_marks`. Journal ids (`{pid}-{nanos}`) are only unique on one
/// machine, and a journal's files live in one folder of one machine.
pub(super) fn machine_tag(journal_dir: &Path) -> String {
    let dir = std::path::absolute(journal_dir).unwrap_or_else(|_| journal_dir.to_owned());
    let dir = dir.to_string_lossy();
    let dir = dir.trim_end_matches('/');
    format!("{}:{dir}/", host_name())
}

/// This machine's name (`gethostname`), `localhost` if it has none.
fn host_name() -> String {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: `buf` is writable for `buf.len()` bytes; gethostname writes
        // at most that many (NUL-terminated unless truncated, handled below).
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            let name = String::from_utf8_lossy(&buf[..end]).trim().to_owned();
            if !name.is_empty() {
                return name;
            }
        }
    }
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
