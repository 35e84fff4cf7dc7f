//! The batch writer: the whole batch in one statement, the rule of which
//! write wins, dead letters, journal marks.
//!
//! **One statement per batch.** The operations (saves and forgets alike: a
//! forget is an upsert of a tombstone) travel as arrays and are applied by
//! one `INSERT … SELECT … FROM unnest(…) … ON CONFLICT … DO UPDATE … WHERE
//! <rule> RETURNING …` ([`UPSERT`]), pipelined with `BEGIN`. Rows it did not
//! change (the row is newer, or already says the same) are read and
//! "touched" by a second statement ([`TOUCH`]) only when there are any;
//! `ON CONFLICT DO UPDATE` locks every conflicting row, changed or not, so
//! that read sees exactly what the upsert saw. `meta` and the journal mark
//! follow in one statement pipelined with `COMMIT`: two round trips for a
//! batch in the common case, whatever its size.
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
use crate::model::{now_ms, StoreOp, WriteOutcome};
use crate::store::{AttemptError, BatchReport, BatchWriter, Fault, ItemResult};

use super::conn::{classify, Failure, PgConn};
use super::schema::meta;

/// Applies a group of operations (at most one per key, sorted by key) by
/// the rule of which write wins (see `crate::clock`), exactly as SQLite's
/// writer does:
/// - a save is applied iff its stamp is at least the row's and the row is a
///   tombstone or holds another value or metadata: version + 1 (1 for a new
///   key), a new change number, `created_at` reset on a tombstone;
/// - a forget is applied to a live row whose stamp is at most its own:
///   value `''`, metadata NULL, `deleted`, version + 1, a new change
///   number; a key with no row gets a tombstone (version 0, change 0:
///   nothing to index), which keeps a late older save from bringing it
///   back.
///
/// Returns the rows it wrote; the others are classified by [`TOUCH`].
pub(super) const UPSERT: &str = "
INSERT INTO mnemo.memories AS m (namespace, category, key, value, metadata, version, seq,
                                 change_seq, created_at, updated_at, deleted, hlc)
SELECT i.namespace, i.category, i.key, coalesce(i.value, ''), i.metadata,
       CASE WHEN i.value IS NULL THEN 0 ELSE 1 END, i.seq,
       CASE WHEN i.value IS NULL THEN 0 ELSE nextval('mnemo.change_seq') END,
       i.at_ms, i.at_ms, i.value IS NULL, i.hlc
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
            $6::int8[], $7::int8[], $8::int8[]) WITH ORDINALITY
     AS i(namespace, category, key, value, metadata, seq, hlc, at_ms, ord)
ORDER BY i.ord
ON CONFLICT (namespace, category, key) DO UPDATE SET
    value = excluded.value,
    metadata = excluded.metadata,
    version = m.version + 1,
    seq = excluded.seq,
    change_seq = CASE WHEN excluded.deleted THEN nextval('mnemo.change_seq')
                      ELSE excluded.change_seq END,
    updated_at = excluded.updated_at,
    created_at = CASE WHEN m.deleted THEN excluded.created_at ELSE m.created_at END,
    deleted = excluded.deleted,
    hlc = excluded.hlc
WHERE excluded.hlc >= m.hlc
  AND CASE WHEN excluded.deleted THEN NOT m.deleted
           ELSE m.deleted
                OR m.value IS DISTINCT FROM excluded.value
                OR m.metadata IS DISTINCT FROM excluded.metadata END
RETURNING m.namespace, m.category, m.key, m.version, m.change_seq, m.deleted";

/// For the operations the upsert did not apply (their rows are locked by
/// it): each row's stamp and version as the upsert saw them, and the row's
/// stamp raised to the operation's (SQLite's touch: the row already says
/// what the operation says, and must now count as that new). A row newer
/// than the operation is left alone (the operation is outdated).
pub(super) const TOUCH: &str = "
WITH i AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[]) WITH ORDINALITY
        AS i(namespace, category, key, hlc, ord)
), s AS (
    SELECT i.ord, m.hlc, m.version FROM i JOIN mnemo.memories m
        ON m.namespace = i.namespace AND m.category = i.category AND m.key = i.key
), t AS (
    UPDATE mnemo.memories m SET hlc = i.hlc FROM i
    WHERE m.namespace = i.namespace AND m.category = i.category AND m.key = i.key
      AND m.hlc < i.hlc
)
SELECT ord, hlc, version FROM s";

/// The end of a batch, pipelined with `COMMIT`: the journal's mark (when
/// `$1` is set), then `last_seq` and `max_hlc` raised, their rows locked in
/// name order. Returns the change sequence's last value.
pub(super) const FINISH: &str = "
WITH j AS (
    INSERT INTO mnemo.journal_marks (journal, seq)
    SELECT $1::text, $2::int8 WHERE $1::text IS NOT NULL
    ON CONFLICT (journal) DO UPDATE
        SET seq = GREATEST(mnemo.journal_marks.seq, excluded.seq)
), l AS (
    SELECT name FROM mnemo.meta WHERE name IN ('last_seq', 'max_hlc') ORDER BY name FOR UPDATE
)
UPDATE mnemo.meta m
SET value = GREATEST(m.value, CASE m.name WHEN 'last_seq' THEN $2::int8 ELSE $3::int8 END)
FROM l WHERE m.name = l.name
RETURNING coalesce(pg_sequence_last_value('mnemo.change_seq'), 0)";

const DEAD_LETTERS: &str = "
INSERT INTO mnemo.dead_letters (namespace, category, key, value, metadata, seq, reason, failed_at)
SELECT namespace, category, key, value, metadata, seq, reason, $8::int8
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::text[])
     AS d(namespace, category, key, value, metadata, seq, reason)";

/// The operations of a batch in statements: the k-th operation of each key
/// goes to the k-th group, and each group is sorted by key (byte order).
/// Indices into the batch.
pub(super) fn groups(ops: &[StoreOp]) -> Vec<Vec<usize>> {
    let mut seen: std::collections::HashMap<(&str, &str, &str), usize> =
        std::collections::HashMap::with_capacity(ops.len());
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let p = &op.payload;
        let n = seen
            .entry((&p.namespace, &p.category, &p.key))
            .and_modify(|n| *n += 1)
            .or_insert(0);
        if groups.len() <= *n {
            groups.push(Vec::new());
        }
        groups[*n].push(i);
    }
    for g in &mut groups {
        g.sort_by(|&a, &b| key_of(&ops[a]).cmp(&key_of(&ops[b])));
    }
    groups
}

fn key_of(op: &StoreOp) -> (&str, &str, &str) {
    let p = &op.payload;
    (&p.namespace, &p.category, &p.key)
}

/// Runs one group (`first`, if given, pipelined before it: `BEGIN` or a
/// savepoint). Returns each operation's outcome and the highest change
/// number written.
fn apply(
    conn: &mut PgConn,
    ops: &[StoreOp],
    group: &[usize],
    first: Option<&str>,
) -> Result<(Vec<(usize, WriteOutcome)>, i64), Failure> {
    let col = |f: fn(&StoreOp) -> &str| group.iter().map(|&i| f(&ops[i])).collect::<Vec<_>>();
    let ns = col(|o| &o.payload.namespace);
    let cat = col(|o| &o.payload.category);
    let key = col(|o| &o.payload.key);
    let value: Vec<Option<&str>> = group.iter().map(|&i| ops[i].payload.value.as_deref()).collect();
    let metadata: Vec<Option<&str>> =
        group.iter().map(|&i| ops[i].payload.metadata.as_deref()).collect();
    let seq: Vec<i64> = group.iter().map(|&i| ops[i].seq as i64).collect();
    let hlc: Vec<i64> = group.iter().map(|&i| ops[i].hlc as i64).collect();
    let at: Vec<i64> = group.iter().map(|&i| ops[i].payload.at_ms).collect();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] =
        [&ns, &cat, &key, &value, &metadata, &seq, &hlc, &at];
    let rows = match first {
        Some(first) => conn.pipelined(first, UPSERT, &params)?,
        None => conn.query(UPSERT, &params)?,
    };
    let mut outcomes: Vec<Option<WriteOutcome>> = vec![None; group.len()];
    let mut last_change = 0i64;
    for row in &rows {
        let k = (row.try_get::<_, &str>(0)?, row.try_get::<_, &str>(1)?, row.try_get::<_, &str>(2)?);
        let version: i64 = row.try_get(3)?;
        let change: i64 = row.try_get(4)?;
        let deleted: bool = row.try_get(5)?;
        let Ok(at) = group.binary_search_by(|&i| key_of(&ops[i]).cmp(&k)) else {
            continue;
        };
        let version = version.max(0) as u64;
        outcomes[at] = Some(match (deleted, version) {
            (false, 1) => WriteOutcome::Inserted { version },
            (false, _) => WriteOutcome::Updated { version },
            // A tombstone for a key that had no row.
            (true, 0) => WriteOutcome::NotFound,
            (true, _) => WriteOutcome::Deleted { version },
        });
        last_change = last_change.max(change);
    }
    let rest: Vec<usize> = (0..group.len()).filter(|&k| outcomes[k].is_none()).collect();
    if !rest.is_empty() {
        let pick = |f: fn(&StoreOp) -> &str| rest.iter().map(|&k| f(&ops[group[k]])).collect::<Vec<_>>();
        let ns = pick(|o| &o.payload.namespace);
        let cat = pick(|o| &o.payload.category);
        let key = pick(|o| &o.payload.key);
        let hlc: Vec<i64> = rest.iter().map(|&k| ops[group[k]].hlc as i64).collect();
        for row in conn.query(TOUCH, &[&ns, &cat, &key, &hlc])? {
            let ord: i64 = row.try_get(0)?;
            let row_hlc: i64 = row.try_get(1)?;
            let version: i64 = row.try_get(2)?;
            let Some(&k) = usize::try_from(ord - 1).ok().and_then(|o| rest.get(o)) else {
                continue;
            };
            let op = &ops[group[k]];
            outcomes[k] = Some(if row_hlc as u64 > op.hlc {
                WriteOutcome::Outdated
            } else if op.payload.value.is_some() {
                WriteOutcome::Unchanged { version: version.max(0) as u64 }
            } else {
                // Already a tombstone: it now stands for this forget.
                WriteOutcome::NotFound
            });
        }
    }
    let out = group
        .iter()
        .zip(outcomes)
        // The upsert writes or locks a row for every operation: not
        // reached.
        .map(|(&i, o)| (i, o.unwrap_or(WriteOutcome::Outdated)))
        .collect();
    Ok((out, last_change))
}

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
        let finished = self
            .conn
            .pipelined_query_last(FINISH, &[&journal, &max_seq, &max_hlc], "COMMIT");
        self.open_tx = false;
        let rows = finished.map_err(|f| {
            self.conn.rollback();
            classify(&f)
        })?;
        if last_change == 0 {
            last_change = match rows.first() {
                Some(row) => row.try_get(0).unwrap_or(0),
                None => 0,
            };
        }
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
                bisect(&mut this.conn, ops, group, results, &mut dead, &mut last_change)?;
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

/// Applies `idx` (sorted, part of one group) in a savepoint; if the server
/// rejects a row, rolls the savepoint back and tries each half, down to
/// single rows, which are recorded in `dead`.
fn bisect(
    conn: &mut PgConn,
    ops: &[StoreOp],
    idx: &[usize],
    results: &mut [Option<ItemResult>],
    dead: &mut Vec<(usize, String)>,
    last_change: &mut i64,
) -> Result<(), Failure> {
    match apply(conn, ops, idx, Some("SAVEPOINT isolate")) {
        Ok((outcomes, change)) => {
            conn.batch("RELEASE SAVEPOINT isolate")?;
            *last_change = (*last_change).max(change);
            for (i, o) in outcomes {
                results[i] = Some(ItemResult::Written(o));
            }
            Ok(())
        }
        Err(f) => match classify(&f) {
            AttemptError::Row(reason) => {
                conn.batch("ROLLBACK TO SAVEPOINT isolate; RELEASE SAVEPOINT isolate")?;
                if let [i] = idx {
                    dead.push((*i, reason));
                    return Ok(());
                }
                let (a, b) = idx.split_at(idx.len() / 2);
                bisect(conn, ops, a, results, dead, last_change)?;
                bisect(conn, ops, b, results, dead, last_change)
            }
            _ => Err(f),
        },
    }
}

/// Records the rejected operations in `dead_letters`, with the reasons.
fn dead_letter(conn: &mut PgConn, ops: &[StoreOp], dead: &[(usize, String)]) -> Result<(), Failure> {
    let p = |i: usize| &ops[i].payload;
    let ns: Vec<&str> = dead.iter().map(|d| p(d.0).namespace.as_str()).collect();
    let cat: Vec<&str> = dead.iter().map(|d| p(d.0).category.as_str()).collect();
    let key: Vec<&str> = dead.iter().map(|d| p(d.0).key.as_str()).collect();
    let value: Vec<Option<&str>> = dead.iter().map(|d| p(d.0).value.as_deref()).collect();
    let metadata: Vec<Option<&str>> = dead.iter().map(|d| p(d.0).metadata.as_deref()).collect();
    let seq: Vec<i64> = dead.iter().map(|d| ops[d.0].seq as i64).collect();
    let reason: Vec<&str> = dead.iter().map(|d| d.1.as_str()).collect();
    let now = now_ms();
    conn.execute(DEAD_LETTERS, &[&ns, &cat, &key, &value, &metadata, &seq, &reason, &now])?;
    Ok(())
}

impl BatchWriter for PgWriter {
    /// One attempt. A failure is a fault the writer retries with backoff
    /// (a broken connection is dropped first, and the next attempt
    /// reconnects); a rejected row is a dead letter in a committed batch.
    fn write_batch(&mut self, ops: &[StoreOp]) -> Result<BatchReport, Fault> {
        let result = catch_unwind(AssertUnwindSafe(|| self.attempt(ops))).unwrap_or_else(|_| {
            // Whatever the attempt left open is rolled back by the next.
            Err(AttemptError::Io("the store panicked while writing the batch".into()))
        });
        result.map_err(|e| {
            Fault(match e {
                AttemptError::Busy => {
                    "the database is busy (a lock, a deadlock or a serialization failure)".to_owned()
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
        let rows = self
            .conn
            .query("SELECT seq FROM mnemo.journal_marks WHERE journal = $1", &[&id])?;
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
            let Some(id) = mark.strip_prefix(&tag) else { continue };
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
    fn purge_tombstones(&mut self, _horizon: u64) -> Result<usize> {
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
