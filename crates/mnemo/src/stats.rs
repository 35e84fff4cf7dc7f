//! Counters and latency summaries, kept with atomics and one small lock, read
//! on demand by [`Memory::stats`](crate::Memory::stats).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

/// How many recent flushes the summaries cover.
const WINDOW: usize = 1024;

/// A summary of recent values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Values summarised (at most the last 1,024).
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Summary {
    fn of(values: &VecDeque<f64>) -> Summary {
        if values.is_empty() {
            return Summary::default();
        }
        let mut v: Vec<f64> = values.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Summary {
            count: v.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: v[v.len() - 1],
        }
    }
}

/// A snapshot of the engine's counters. All counts are since open.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Saves and forgets accepted by `save`/`forget`.
    pub accepted: u64,
    /// Rejected at the door: invalid input.
    pub rejected_invalid: u64,
    /// Rejected at the door: `Overloaded`.
    pub rejected_overloaded: u64,
    /// Superseded by a later save of the same key in the same batch.
    pub coalesced: u64,
    /// Operations whose transaction committed (including unchanged ones).
    pub committed: u64,
    /// Saves that found the same value already stored (no new version).
    pub unchanged: u64,
    /// Operations lost without a commit: only with the journal off, when
    /// the engine stopped while its writer could not commit. (Transient
    /// faults never fail an operation: the writer retries.)
    pub failed: u64,
    /// Rows the database rejected, kept in `dead_letters`.
    pub dead_lettered: u64,
    /// Transactions committed by the batcher.
    pub batches: u64,
    /// Operations per batch, after coalescing.
    pub batch_size: Summary,
    /// Milliseconds from the flush's start to its commit.
    pub flush_ms: Summary,
    /// Accepted operations not yet committed.
    pub pending: usize,
    /// Their bytes.
    pub pending_bytes: usize,
    /// Keys held in the pending overlay (pending or not yet indexed).
    pub overlay_keys: usize,
    /// The last committed change number.
    pub committed_change: i64,
    /// The change number the index reflects.
    pub index_watermark: i64,
    /// `committed_change - index_watermark`: changes the index has not seen.
    pub index_lag_changes: i64,
    /// Milliseconds from a batch's commit to its indexing, recent batches.
    pub index_lag_ms: Summary,
    /// Saves replayed from journals of engines that died before flushing,
    /// at this open.
    pub replayed: u64,
    /// Bytes of journal segment files held by this engine.
    pub journal_bytes: u64,
    /// How long the writer has been failing to commit its current batch
    /// (locked database, full disk, I/O errors), in milliseconds; 0 while
    /// it commits normally. The batch is retried with backoff until it
    /// commits; saves stay readable meanwhile, and once the pending bound
    /// fills `save` answers `Overloaded`.
    pub writer_stalled_ms: u64,
    /// What the stalled writer keeps running into (`None` when not stalled).
    pub writer_stall_reason: Option<String>,
    /// Commit attempts that failed with a transient fault and were retried,
    /// since open.
    pub write_retries: u64,
    /// Indexing passes that failed (and were retried on a timer), since open.
    pub index_failures: u64,
    /// Why the last indexing pass failed, while the index is still behind
    /// because of it (`None` once a pass succeeds).
    pub index_error: Option<String>,
    /// Damaged regions found in the journals replayed at this open: records
    /// that could not be read back (a torn write, flipped bytes, a truncated
    /// segment). Every readable record around them was replayed.
    pub journal_unrecovered: u64,
    /// Bytes in those damaged regions.
    pub journal_unrecovered_bytes: u64,
    /// Journal files that held unreadable data, moved aside at this open
    /// (never deleted) for inspection.
    pub journal_quarantined: Vec<std::path::PathBuf>,
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub accepted: AtomicU64,
    pub rejected_invalid: AtomicU64,
    pub rejected_overloaded: AtomicU64,
    pub coalesced: AtomicU64,
    pub committed: AtomicU64,
    pub unchanged: AtomicU64,
    pub failed: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub batches: AtomicU64,
    pub committed_change: AtomicI64,
    pub index_watermark: AtomicI64,
    pub replayed: AtomicU64,
    pub write_retries: AtomicU64,
    pub index_failures: AtomicU64,
    /// Why the last indexing pass failed, until one succeeds.
    pub index_error: Mutex<Option<String>>,
    /// What this open's journal recovery could not read.
    pub recovery: Mutex<Recovery>,
    recent: Mutex<Recent>,
}

/// What journal recovery at open could not read (see [`Stats`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct Recovery {
    pub regions: u64,
    pub bytes: u64,
    pub quarantined: Vec<std::path::PathBuf>,
}

#[derive(Debug, Default)]
struct Recent {
    batch_size: VecDeque<f64>,
    flush_ms: VecDeque<f64>,
    index_lag_ms: VecDeque<f64>,
}

fn push(q: &mut VecDeque<f64>, v: f64) {
    if q.len() == WINDOW {
        q.pop_front();
    }
    q.push_back(v);
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    pub fn record_flush(&self, size: usize, took: Duration) {
        let mut r = self.recent.lock();
        push(&mut r.batch_size, size as f64);
        push(&mut r.flush_ms, took.as_secs_f64() * 1e3);
    }

    pub fn record_index_lag(&self, lag: Duration) {
        push(
            &mut self.recent.lock().index_lag_ms,
            lag.as_secs_f64() * 1e3,
        );
    }

    pub fn set_max(cell: &AtomicI64, v: i64) {
        cell.fetch_max(v, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Stats {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let recovery = self.recovery.lock().clone();
        let r = self.recent.lock();
        let committed_change = self.committed_change.load(Ordering::Relaxed);
        let index_watermark = self.index_watermark.load(Ordering::Relaxed);
        Stats {
            accepted: l(&self.accepted),
            rejected_invalid: l(&self.rejected_invalid),
            rejected_overloaded: l(&self.rejected_overloaded),
            coalesced: l(&self.coalesced),
            committed: l(&self.committed),
            unchanged: l(&self.unchanged),
            failed: l(&self.failed),
            dead_lettered: l(&self.dead_lettered),
            batches: l(&self.batches),
            batch_size: Summary::of(&r.batch_size),
            flush_ms: Summary::of(&r.flush_ms),
            index_lag_ms: Summary::of(&r.index_lag_ms),
            committed_change,
            index_watermark,
            index_lag_changes: (committed_change - index_watermark).max(0),
            replayed: l(&self.replayed),
            write_retries: l(&self.write_retries),
            index_failures: l(&self.index_failures),
            index_error: self.index_error.lock().clone(),
            journal_unrecovered: recovery.regions,
            journal_unrecovered_bytes: recovery.bytes,
            journal_quarantined: recovery.quarantined,
            ..Stats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_percentiles() {
        let q: VecDeque<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&q);
        assert_eq!(s.count, 100);
        assert_eq!(s.p50, 51.0);
        assert_eq!(s.p99, 99.0);
        assert_eq!(s.max, 100.0);
        assert_eq!(Summary::of(&VecDeque::new()), Summary::default());
    }

    #[test]
    fn window_is_bounded() {
        let m = Metrics::default();
        for i in 0..(WINDOW + 10) {
            m.record_flush(i, Duration::from_millis(1));
        }
        assert_eq!(m.snapshot().batch_size.count, WINDOW);
    }
}
