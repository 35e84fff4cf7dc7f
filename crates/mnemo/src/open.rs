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
use crate::store::{self, Opened};

/// Opens the store `config.path` names and returns the engine's shared
/// state and the store's connections, the journals of dead engines
/// replayed and the index caught up.
pub(crate) fn prepare(
    config: &Config,
    embedder: Option<&dyn Embedder>,
) -> Result<(Arc<Shared>, Opened)> {
    let mut opened = store::open(config)?;
    let replayed = replay_orphans(opened.writer.as_mut(), config)?;
    if opened.index.reset_if_stale()? {
        tracing::info!(
            "the search index did not match the memories (another text normaliser, or another \
             database's index): rebuilding it"
        );
    }
    let caught_up = opened
        .index
        .index_pending(2_000, config.busy_deadline, embedder)?;
    if caught_up.rows > 0 {
        tracing::info!(
            rows = caught_up.rows,
            "indexed rows committed before this open"
        );
    }
    let (watermark, last_change) = opened.index.position()?;
    let purged = opened
        .writer
        .purge_tombstones(replayed.tombstone_horizon, watermark)?;
    if purged > 0 {
        tracing::debug!(purged, "tombstones no journal can outdate were purged");
    }
    let next_seq = opened.writer.last_seq()? + 1;
    let clock_seen = opened.writer.max_hlc()?;
    let journal = if config.journal {
        let j = Journal::create(
            &config.journal_folder(),
            config.journal_sync,
            config.journal_segment_bytes,
        )?;
        opened.writer.set_journal(Some(j.id().to_owned()));
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
    Ok((shared, opened))
}
