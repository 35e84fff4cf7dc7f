//! Replay at open: commits the saves in the journals of engines that are
//! gone (killed before their flush, or stopped while their writer could not
//! commit), then retires those journals.
//!
//! Exactly once: records at or below a journal's committed mark are
//! skipped, and each replayed batch moves the mark in its own transaction,
//! so a crash during replay replays only the rest; the journal's files are
//! removed before its mark, so a crash between the two finds the files again
//! with the mark still there. And whatever the order, which write wins is
//! decided by the operations' stamps (see `crate::clock`), so a journal
//! replayed late never overwrites a newer save nor revives a forgotten key.
//!
//! Loud about loss: records that could not be read (damaged or truncated
//! segments) are counted in `Stats::journal_unrecovered`, logged at error
//! level, and their segments moved to `<db>.journal/damaged/`, never deleted.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::journal::{self, Orphan};
use crate::model::{now_ms, StoreOp};
use crate::stats::Recovery;
use crate::store::{Backoff, BatchWriter};

/// What replaying orphaned journals did.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    pub journals: usize,
    /// Records committed now.
    pub records: u64,
    /// Records already committed before (at or below the mark).
    pub skipped: u64,
    /// Bytes of unfinished last writes (never acknowledged).
    pub unfinished: usize,
    /// What could not be read.
    pub lost: Recovery,
    /// Tombstones stamped before this can be purged once indexed: no
    /// journal on disk holds an older operation.
    pub tombstone_horizon: u64,
}

/// Replays every orphaned journal of the database at `config.path`.
/// Blocks; a database locked past `busy_deadline` fails the open (the
/// journals stay for the next one).
pub(crate) fn replay_orphans(store: &mut dyn BatchWriter, config: &Config) -> Result<Replay> {
    let mut report = Replay::default();
    let dir = config.journal_folder();
    for orphan in journal::orphans(&dir)? {
        report.journals += 1;
        replay_one(store, config, orphan, &mut report)?;
    }
    store.prune_journal_marks(&dir)?;
    report.tombstone_horizon = tombstone_horizon(&dir)?;
    if report.records > 0 || report.lost.regions > 0 {
        tracing::info!(
            journals = report.journals,
            replayed = report.records,
            already_committed = report.skipped,
            "replayed journals of engines that stopped without committing"
        );
    }
    Ok(report)
}

fn replay_one(
    store: &mut dyn BatchWriter,
    config: &Config,
    orphan: Orphan,
    report: &mut Replay,
) -> Result<()> {
    let mark = store.journal_mark(&orphan.id)?;
    let ops: Vec<StoreOp> = orphan
        .records
        .iter()
        .filter(|r| r.seq > mark)
        .map(|r| StoreOp {
            seq: r.seq,
            hlc: r.hlc,
            payload: Arc::new(r.payload.clone()),
        })
        .collect();
    report.skipped += (orphan.records.len() - ops.len()) as u64;
    store.set_journal(Some(orphan.id.clone()));
    let written = ops
        .chunks(config.max_batch)
        .try_for_each(|chunk| write_with_retry(store, chunk, config, &orphan.id));
    store.set_journal(None);
    written?;
    report.records += ops.len() as u64;
    report.unfinished += orphan.unfinished;
    if orphan.unfinished > 0 {
        tracing::info!(
            journal = %orphan.id,
            bytes = orphan.unfinished,
            "the journal ends in a write cut off by the crash; that save never returned"
        );
    }
    let id = orphan.id.clone();
    let damaged = orphan.damaged.clone();
    let missing = orphan.missing;
    let kept = orphan.retire()?;
    for d in &damaged {
        report.lost.regions += d.regions as u64;
        report.lost.bytes += d.bytes as u64;
        tracing::error!(
            journal = %id,
            segment = %d.path.display(),
            regions = d.regions,
            bytes = d.bytes,
            "crash journal damaged: saves in these bytes could not be read and are NOT recovered; \
             every readable record was replayed, and the segment is kept in the damaged/ folder"
        );
    }
    report.lost.quarantined.extend(kept);
    if missing > 0 && damaged.is_empty() {
        // Records gone without damaged bytes to show for it.
        report.lost.regions += 1;
        tracing::error!(
            journal = %id,
            records = missing,
            "crash journal has gaps in its sequence numbers: these saves are NOT recovered"
        );
    }
    // Fail point for tests: "panic" (or an abort) here is a crash between
    // removing the files and dropping the mark.
    fail::fail_point!("mnemo::replay_retired");
    // Only now that its files are gone: a crash before this line leaves the
    // mark, and the files are found again without replaying anything twice.
    store.drop_journal_mark(&id)?;
    Ok(())
}

/// Writes one replayed batch, retrying faults with backoff until
/// `deadline`.
fn write_with_retry(
    store: &mut dyn BatchWriter,
    ops: &[StoreOp],
    config: &Config,
    journal: &str,
) -> Result<()> {
    let deadline = config.busy_deadline;
    let started = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(250));
    loop {
        match store.write_batch(ops) {
            Ok(_) => return Ok(()),
            Err(fault) if started.elapsed() >= deadline => {
                return Err(Error::Open {
                    path: crate::store::shown_path(config),
                    reason: format!(
                        "replaying the crash journal {journal}: {fault} (for {:.1?}); it is kept for the next open",
                        started.elapsed()
                    ),
                })
            }
            Err(_) => std::thread::sleep(backoff.next()),
        }
    }
}

/// Safety margin under the oldest journal's creation time, for clocks that
/// disagree a little (several processes, one machine).
const TOMBSTONE_MARGIN_MS: i64 = 60 * 60 * 1000;

/// The stamp below which no journal in `dir` can hold an operation: the
/// oldest journal's creation time (in its id), or now, less a margin.
fn tombstone_horizon(dir: &Path) -> Result<u64> {
    let mut oldest_ms = now_ms();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(clock::from_ms(oldest_ms - TOMBSTONE_MARGIN_MS))
        }
        Err(e) => return Err(e.into()),
    };
    for name in entries.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
        if name.ends_with(".lock.tmp") {
            continue; // a journal being made now, or a stray one: holds nothing
        }
        // `<pid>-<creation nanos, hex>.<...>`; a name that does not parse
        // keeps every tombstone.
        let created = name
            .split_once('.')
            .and_then(|(id, _)| id.split_once('-'))
            .and_then(|(_, nanos)| u128::from_str_radix(nanos, 16).ok());
        match created {
            Some(n) => oldest_ms = oldest_ms.min((n / 1_000_000) as i64),
            None if name == journal::DAMAGED_DIR => {}
            None => return Ok(0),
        }
    }
    Ok(clock::from_ms(oldest_ms - TOMBSTONE_MARGIN_MS))
}
