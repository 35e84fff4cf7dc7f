//! Opening a database, everything before the actors start: the schema,
//! replaying the journals of engines that are gone, catching the index up,
//! and this engine's own journal. Blocking; any failure here is an open
//! failure (the caller turns database errors into `Error::Open`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::config::Config;
use crate::embed::Embedder;
use crate::error::Result;
use crate::ingress::Shared;
use crate::journal::Journal;
use crate::replay::replay_orphans;
use crate::stats::Metrics;
use crate::store::sqlite::{self, SqliteWriter};

/// Opens the database at `config.path` and returns the engine's shared
/// state, the writer's store and the indexer's connection.
pub(crate) fn prepare(
    config: &Config,
    embedder: Option<&dyn Embedder>,
) -> Result<(Arc<Shared>, SqliteWriter, rusqlite::Connection)> {
    if let Some(parent) = config.path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    let mut store = SqliteWriter::open(config)?;
    let replayed = replay_orphans(&mut store, config)?;
    let mut index_conn = sqlite::open_connection(
        &config.path,
        config.synchronous,
        sqlite::busy_slice(config.busy_deadline),
    )?;
    if sqlite::reset_index_if_stale(&index_conn)? {
        tracing::info!("the text normaliser changed: rebuilding the search index");
    }
    let caught_up =
        sqlite::index_pending_with(&mut index_conn, 2_000, config.busy_deadline, embedder)?;
    if caught_up.rows > 0 {
        tracing::info!(
            rows = caught_up.rows,
            "indexed rows committed before this open"
        );
    }
    let (watermark, last_change) = sqlite::index_position(&index_conn)?;
    let next_seq = sqlite::last_seq(store.connection())? + 1;
    let clock_seen = sqlite::max_hlc(store.connection())?;
    let journal = if config.journal {
        let j = Journal::create(
            &config.path,
            config.journal_sync,
            config.journal_segment_bytes,
        )?;
        store.set_journal(Some(j.id().to_owned()));
        Some(j)
    } else {
        None
    };
    let shared = Arc::new(Shared::new(config.clone(), next_seq, journal, clock_seen));
    let m = &shared.metrics;
    m.replayed.store(replayed.records, Ordering::Relaxed);
    *m.recovery.lock() = replayed.lost;
    Metrics::set_max(&m.index_watermark, watermark);
    Metrics::set_max(&m.committed_change, last_change);
    Ok((shared, store, index_conn))
}
