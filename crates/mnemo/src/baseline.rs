//! The usual design, kept for comparison: every save awaits its own SQLite
//! transaction and then its own indexing step before it returns.
//!
//! This is what an agent's memory tool typically does today (and what the
//! demo and the benchmarks measure mnemo against). It uses the same schema,
//! pragmas and upsert as the engine, so a comparison is like for like.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

use crate::config::{Config, Synchronous};
use crate::error::{Error, Result};
use crate::model::{payload_for_save, SaveRequest, StoreOp, WriteOutcome};
use crate::store::sqlite::{index_pending, open_indexer, SqliteWriter};
use crate::store::{BatchWriter, ItemResult};

/// A store where `save` blocks until the row is committed and indexed.
pub struct AwaitedStore {
    config: Config,
    writer: SqliteWriter,
    index: Connection,
    seq: u64,
}

impl AwaitedStore {
    /// Opens (creating) a database at `path` with the engine's schema and
    /// the given `synchronous` level.
    pub fn open(path: &Path, synchronous: Synchronous) -> Result<AwaitedStore> {
        let config = Config {
            synchronous,
            ..Config::new(path)
        };
        let writer = SqliteWriter::open(&config)?;
        let index = open_indexer(&config)?;
        Ok(AwaitedStore {
            config,
            writer,
            index,
            seq: 0,
        })
    }

    /// Validates, commits the save in its own transaction, then indexes it in
    /// another, and only then returns. Blocks for both.
    pub fn save(&mut self, request: SaveRequest) -> Result<WriteOutcome> {
        self.seq += 1;
        let op = StoreOp {
            seq: self.seq,
            hlc: crate::clock::from_ms(crate::model::now_ms()) + self.seq,
            payload: Arc::new(payload_for_save(request, &self.config)?),
        };
        // One attempt: the baseline reports a fault instead of retrying.
        let report = self
            .writer
            .write_batch(&[op])
            .map_err(|fault| Error::WriteFailed { reason: fault.0 })?;
        index_pending(&mut self.index, 1_000, Duration::from_secs(30))?;
        match report.results.into_iter().next() {
            Some(ItemResult::Written(o)) => Ok(o),
            Some(ItemResult::DeadLettered(reason)) => Err(Error::DeadLettered { reason }),
            None => Err(Error::WriteFailed {
                reason: "no result".into(),
            }),
        }
    }
}

/// The floor under the batcher: the engine's own batch writer applying
/// `requests` as one batch — one transaction of upserts, the same schema,
/// pragmas and statement — with no actors, journal, overlay or indexing.
/// What a hand-written loop of upserts in one transaction costs, until it
/// is durable. Returns the time from the first request to the commit.
pub fn raw_batch(path: &Path, requests: Vec<SaveRequest>) -> Result<Duration> {
    let config = Config {
        synchronous: Synchronous::Full,
        ..Config::new(path)
    };
    let mut writer = SqliteWriter::open(&config)?;
    let start = std::time::Instant::now();
    let at = crate::clock::from_ms(crate::model::now_ms());
    let ops = requests
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            Ok(StoreOp {
                seq: i as u64 + 1,
                hlc: at + i as u64,
                payload: Arc::new(payload_for_save(r, &config)?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    writer
        .write_batch(&ops)
        .map_err(|fault| Error::WriteFailed { reason: fault.0 })?;
    Ok(start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_save_is_committed_and_indexed_before_it_returns() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("b.db");
        let mut s = AwaitedStore::open(&path, Synchronous::Full)?;
        let o = s.save(SaveRequest::new("n", "c", "k", "hello world"))?;
        assert_eq!(o, WriteOutcome::Inserted { version: 1 });
        let conn = crate::store::sqlite::open_indexer(&Config::new(&path))?;
        let (w, last) = crate::store::sqlite::index_position(&conn)?;
        assert_eq!((w, last), (1, 1));
        Ok(())
    }

    #[test]
    fn the_raw_batch_commits_every_row() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("raw.db");
        let requests = (0..50)
            .map(|i| SaveRequest::new("n", "c", format!("k{i}"), "v"))
            .collect();
        raw_batch(&path, requests)?;
        let rows: i64 =
            Connection::open(&path)?
                .query_row("SELECT count(*) FROM memories", [], |r| r.get(0))?;
        assert_eq!(rows, 50);
        Ok(())
    }
}
