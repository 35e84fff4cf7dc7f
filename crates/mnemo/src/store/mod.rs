//! The store seam: what the engine needs from a database, as plain
//! synchronous code with no actors in it. Three roles, each a trait that
//! every store implements:
//!
//! - [`BatchWriter`]: the writer thread's connection. One transaction per
//!   batch, the journal marks written in it, and what replay and open need
//!   (marks, tombstones, the clock's and sequence's high-water marks).
//! - [`IndexStore`]: the `RagIndexer`'s connection. Brings the derived
//!   data (full-text index, vectors) up to date with committed rows.
//! - [`Reader`]: every read (get, list, search, counts), shared by the
//!   handle's callers; a reader never waits for a flush.
//!
//! [`open`] picks the store from [`Config::path`]: a file path is SQLite
//! ([`sqlite`]), a `postgres://` URL is PostgreSQL ([`postgres`]). The
//! batcher, receipts, overlay, journal and indexer actor are the same code
//! for both.

pub(crate) mod postgres;
pub(crate) mod sqlite;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::embed::Embedder;
use crate::error::Result;
use crate::model::{MemoryRecord, SearchHit, StoreOp, WriteOutcome};
use crate::text::Query;

/// The three connections of an open store.
pub(crate) struct Opened {
    pub writer: Box<dyn BatchWriter>,
    pub index: Box<dyn IndexStore>,
    pub reads: Arc<dyn Reader>,
}

/// Where [`Config::path`] points.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Location<'a> {
    /// An SQLite database file.
    Sqlite(&'a Path),
    /// A PostgreSQL connection URL (`postgres://` or `postgresql://`).
    Postgres(&'a str),
}

impl<'a> Location<'a> {
    /// Reads `config.path`.
    pub fn of(config: &'a Config) -> Location<'a> {
        match config.path.to_str() {
            Some(s) if is_postgres_url(s) => Location::Postgres(s),
            _ => Location::Sqlite(&config.path),
        }
    }
}

/// `true` for a PostgreSQL connection URL.
pub(crate) fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// Opens the store `config.path` names: creates its schema, then the
/// writer's, the indexer's and the readers' connections. Errors say what is
/// wrong in plain words ([`crate::Error::Open`]).
pub(crate) fn open(config: &Config) -> Result<Opened> {
    match Location::of(config) {
        Location::Sqlite(_) => sqlite::open_store(config),
        Location::Postgres(_) => postgres::open_store(config),
    }
}

/// `config.path` as messages show it: a PostgreSQL URL without its
/// password.
pub(crate) fn shown_path(config: &Config) -> std::path::PathBuf {
    match Location::of(config) {
        Location::Sqlite(path) => path.to_owned(),
        Location::Postgres(url) => std::path::PathBuf::from(postgres::redact(url)),
    }
}

/// Turns an error met while opening into the plain-words error `open`
/// returns.
pub(crate) fn open_error(config: &Config, e: crate::Error) -> crate::Error {
    match Location::of(config) {
        Location::Sqlite(path) => sqlite::open_error(path, e),
        Location::Postgres(url) => postgres::open_error(url, e),
    }
}

/// The writer's connection. Implementations run on the engine's writer
/// thread (and at open, for replay) and may block.
pub(crate) trait BatchWriter: Send {
    /// One attempt at applying `ops` (already coalesced: at most one per
    /// key, in sequence order) in one transaction. Either the batch commits,
    /// with a result per operation (rows the store rejects are isolated as
    /// dead letters), or nothing commits and the fault says why. The
    /// journal set with [`set_journal`](BatchWriter::set_journal) gets its
    /// mark (the highest `seq` of the batch) in the same transaction.
    fn write_batch(&mut self, ops: &[StoreOp]) -> Result<BatchReport, Fault>;

    /// Sets the journal whose position later batches record.
    fn set_journal(&mut self, id: Option<String>);

    /// How far a journal's records are committed (0 if none are).
    fn journal_mark(&mut self, journal: &str) -> Result<u64>;

    /// Forgets a replayed journal's mark (its files are gone).
    fn drop_journal_mark(&mut self, journal: &str) -> Result<()>;

    /// Deletes the marks of journals in `journal_dir` that have no files
    /// left. Only marks of journals that could live in that folder: a store
    /// shared by several machines keeps the others'.
    fn prune_journal_marks(&mut self, journal_dir: &Path) -> Result<usize>;

    /// Purges tombstones stamped before `horizon`, when no journal that
    /// could still replay an older save can exist (see
    /// `crate::replay`), and only those the index has seen (change up to
    /// `indexed`), so no index entry outlives its row. A store shared by
    /// machines whose journals this process cannot see purges nothing.
    fn purge_tombstones(&mut self, horizon: u64, indexed: i64) -> Result<usize>;

    /// The last save sequence number committed by any engine.
    fn last_seq(&mut self) -> Result<u64>;

    /// The largest operation stamp committed by any engine.
    fn max_hlc(&mut self) -> Result<u64>;
}

/// The indexer's connection: derived data (the full-text index, vectors),
/// which may always be rebuilt from the memories.
pub(crate) trait IndexStore: Send {
    /// Rebuilds the index from scratch if another version of the text
    /// normaliser built it. Returns whether it did.
    fn reset_if_stale(&mut self) -> Result<bool>;

    /// Indexes every committed change not yet indexed, in transactions of
    /// at most `chunk` rows, keeping `embedder`'s vectors in step. When it
    /// returns `Ok`, every change committed before the call is indexed.
    /// Retries a busy store until `busy_deadline`, then fails
    /// ([`crate::Error::NotIndexed`]); the indexer retries later.
    fn index_pending(
        &mut self,
        chunk: usize,
        busy_deadline: Duration,
        embedder: Option<&dyn Embedder>,
    ) -> Result<IndexPass>;

    /// The index watermark and the last committed change, for stats.
    fn position(&mut self) -> Result<(i64, i64)>;

    /// Drops the connection after a failure; the next call reconnects.
    fn reset_connection(&mut self);
}

/// What one indexing pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct IndexPass {
    /// Rows (re)indexed or removed from the index.
    pub rows: usize,
    /// The change number the index now reflects.
    pub watermark: i64,
}

/// Every read the handle makes. Shared by all callers; each call takes a
/// pooled connection and never waits for a flush.
pub(crate) trait Reader: Send + Sync {
    /// The committed memory for a key (`None`: never saved, or forgotten).
    fn get(&self, ns: &str, category: &str, key: &str) -> Result<Option<MemoryRecord>>;

    /// Committed memories of a namespace (optionally one category), by
    /// category then key.
    fn list(&self, ns: &str, category: Option<&str>) -> Result<Vec<MemoryRecord>>;

    /// At most `limit` of them that sort after `after` = (category, key):
    /// a keyset read, whose cost is the page.
    fn list_page(
        &self,
        ns: &str,
        category: Option<&str>,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<MemoryRecord>>;

    /// Namespaces holding at least one live memory, in order.
    fn namespaces(&self) -> Result<Vec<String>>;

    /// Live rows and dead letters.
    fn counts(&self) -> Result<(u64, u64)>;

    /// Indexed memories matching `query` in one namespace, best first;
    /// `score` is higher for better matches.
    fn search(
        &self,
        ns: &str,
        query: &Query,
        category: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SearchHit>>;

    /// Indexed memories nearest to the vector `q` of `model_id` by cosine
    /// similarity, best first, those at least `min_similarity` similar,
    /// with their similarity. Empty while the model's vectors do not
    /// reflect the index.
    #[allow(clippy::too_many_arguments)]
    fn vector_search(
        &self,
        ns: &str,
        model_id: &str,
        q: &[f32],
        category: Option<&str>,
        min_similarity: f32,
        limit: usize,
    ) -> Result<Vec<(SearchHit, f32)>>;
}

/// Where a keyset page starts: the (category, key) bound that rows must
/// sort after, for a page of one `category` (or all) after the cursor
/// `after`. `None` when no row can follow (the cursor is past the
/// category). Categories and keys are never empty, so "" sorts before
/// every row. Both stores' `list_page` read from it.
pub(crate) fn page_bound<'a>(
    category: Option<&'a str>,
    after: Option<(&'a str, &'a str)>,
) -> Option<(&'a str, &'a str)> {
    match category {
        Some(c) => match after {
            None => Some((c, "")),
            Some((ac, ak)) => match ac.cmp(c) {
                std::cmp::Ordering::Less => Some((c, "")),
                std::cmp::Ordering::Equal => Some((c, ak)),
                std::cmp::Ordering::Greater => None,
            },
        },
        None => Some(after.unwrap_or(("", ""))),
    }
}

/// The text a memory is embedded from: what the full-text index holds
/// (key, category, value), read as one text. Both stores embed this.
pub(crate) fn embedding_text(category: &str, key: &str, value: &str) -> String {
    format!("{key}\n{category}\n{value}")
}

/// What the store did with one operation of a batch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ItemResult {
    /// Written (or found unchanged) in the batch's transaction.
    Written(WriteOutcome),
    /// The store rejected this row; it was recorded as a dead letter and the
    /// rest of the batch committed.
    DeadLettered(String),
}

/// The result of one committed batch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BatchReport {
    /// One result per operation, in the order given.
    pub results: Vec<ItemResult>,
    /// The highest change number committed so far (the indexer's target).
    pub last_change: i64,
}

/// Why an attempt at a batch committed nothing. Always transient as far as
/// the write path is concerned: the writer keeps the batch (journal,
/// overlay) and tries again with backoff until it commits. Only a row
/// rejected for its content is final, and that is not a fault: it is
/// isolated as a dead letter inside a committed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault(pub String);

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What one attempt at a transaction ran into.
#[derive(Debug)]
pub(crate) enum AttemptError {
    /// Locked by another writer: worth retrying.
    Busy,
    /// An I/O-level failure (I/O error, read-only or full disk, cannot
    /// open): retried too, since such faults are often cleared (a disk is
    /// remounted, space is freed) and the batch is otherwise lost to the
    /// caller.
    Io(String),
    /// One row was rejected (constraint, trigger, type): isolate it.
    Row(String),
    /// A plain SQL error (a trigger's function failing on a value, say):
    /// may be a row's; rows are isolated to find out.
    Fatal(String),
    /// A row rolled back the whole transaction (a trigger's
    /// `RAISE(ROLLBACK)`); the writer remembers it and tries again.
    RolledBack,
}

/// Retries `attempt` while it reports [`AttemptError::Busy`] or
/// [`AttemptError::Io`], sleeping with exponential backoff and full jitter,
/// until `deadline` has passed since the first try. Blocks the calling
/// thread (the indexer thread or `open`, never an async one). For steps that
/// may give up and be retried later; the batch writer never gives up.
pub(crate) fn retry_busy<T>(
    deadline: Duration,
    mut attempt: impl FnMut() -> Result<T, AttemptError>,
) -> Result<T, (AttemptError, Duration)> {
    let start = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(250));
    loop {
        match attempt() {
            Err(e @ (AttemptError::Busy | AttemptError::Io(_))) => {
                let waited = start.elapsed();
                if waited >= deadline {
                    return Err((e, waited));
                }
                if let AttemptError::Io(reason) = &e {
                    tracing::warn!(%reason, "I/O failure; retrying");
                }
                std::thread::sleep(backoff.next().min(deadline - waited));
            }
            Err(e) => return Err((e, start.elapsed())),
            Ok(v) => return Ok(v),
        }
    }
}

/// Exponential backoff with full jitter: each pause is a random part of a
/// window that doubles from 5 ms up to `max`, so several writers that
/// collided do not collide again in lockstep.
#[derive(Debug)]
pub(crate) struct Backoff {
    window: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(max: Duration) -> Backoff {
        Backoff {
            window: Duration::from_millis(5),
            max,
        }
    }

    /// The next pause.
    pub fn next(&mut self) -> Duration {
        let pause = self.window.mul_f64(fastrand::f64());
        self.window = (self.window * 2).min(self.max);
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_busy_gives_up_at_the_deadline() {
        let mut tries = 0;
        let r: Result<(), _> = retry_busy(Duration::from_millis(50), || {
            tries += 1;
            Err(AttemptError::Busy)
        });
        let (e, waited) = r.unwrap_err();
        assert!(matches!(e, AttemptError::Busy));
        assert!(waited >= Duration::from_millis(50));
        assert!(tries > 1);
    }

    #[test]
    fn retry_busy_stops_on_success_and_on_other_errors() {
        let mut tries = 0;
        let r = retry_busy(Duration::from_secs(5), || {
            tries += 1;
            if tries < 3 {
                Err(AttemptError::Busy)
            } else {
                Ok(tries)
            }
        });
        assert_eq!(r.unwrap(), 3);
        let r: Result<(), _> = retry_busy(Duration::from_secs(5), || {
            Err(AttemptError::Fatal("disk".into()))
        });
        assert!(matches!(r, Err((AttemptError::Fatal(_), _))));
        let mut tries = 0;
        let r = retry_busy(Duration::from_secs(5), || {
            tries += 1;
            if tries < 3 {
                Err(AttemptError::Io("read-only".into()))
            } else {
                Ok(())
            }
        });
        assert!(r.is_ok(), "I/O failures are retried");
    }
}
