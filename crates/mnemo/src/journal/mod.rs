//! The crash journal: every accepted save is in a file before `save` returns,
//! so a process killed before its flush loses nothing it acknowledged.
//!
//! Layout: beside the database, a folder `<db>.journal/` holds, per engine,
//! a lock file `<id>.lock` and segments `<id>.<n>.seg`, each held with an
//! exclusive file lock while the engine lives. A segment is a fixed-size
//! file whose space is reserved on disk when it is made (so a full disk is
//! a typed error from `save`, never a fault in a mapped page), mapped into
//! memory (shared mapping); the record format is in `format`.
//!
//! **Why a mapping and not `write(2)`:** both put the bytes in the kernel's
//! page cache, which is what survives `kill -9`, a panic or an OOM kill; a
//! `write` costs a system call (1.1 µs for a 120-byte record, `cargo bench
//! --bench journal_sync -- plain_write`), the mapping adds 0.2–0.4 µs to a
//! whole `save`. Power loss is covered only by [`JournalSync`].
//!
//! Exactly-once replay: each committed batch records, in its own
//! transaction, the highest sequence number it committed from this journal
//! (`journal_marks`); the writer commits batches in sequence order and never
//! skips one, so every record at or below the mark is committed. On open,
//! every journal whose owner is gone (`recovery`) is read, records past
//! its mark are written in order, then its files are removed (damaged ones
//! moved aside) and only then its mark.
//!
//! - `format`: the bytes of a segment; decoding that survives damage.
//! - `segment`: one segment file: reserve, lock, map, append.
//! - `recovery`: finding the journals of engines that are gone.

pub(crate) mod format;
pub(crate) mod recovery;
pub(crate) mod segment;

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::MmapRaw;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::OpPayload;

pub use format::{decode_summary, DecodeSummary};
pub(crate) use recovery::{orphans, Orphan};
pub(crate) use segment::Segment;

/// When the journal is forced to stable storage (fsync of the mapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum JournalSync {
    /// Never: survives a process crash, not a power cut before the flush.
    /// The default.
    #[default]
    Never,
    /// At every flush, before the batch is written: every segment written
    /// since the last flush is synced, so a power cut loses at most the
    /// saves of the current quiet window.
    Batch,
    /// After every save, before `save` returns: survives a power cut, at the
    /// price of an fsync per save (milliseconds on most disks).
    Always,
}

/// Bytes per segment file by default (`Config::journal_segment_bytes`).
#[cfg(test)]
pub(crate) const SEGMENT_BYTES: usize = 8 * 1024 * 1024;

/// Where damaged journal segments are moved, inside the journal folder.
pub(crate) const DAMAGED_DIR: &str = "damaged";

/// The journal folder for a database file.
pub(crate) fn dir_for(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".journal");
    db.with_file_name(name)
}

/// Turns a failure to make room for the journal into the error `save`
/// returns: a full disk is [`Error::DiskFull`], naming the folder.
fn journal_error(e: io::Error, dir: &Path) -> Error {
    if e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(libc::EDQUOT) {
        Error::DiskFull {
            path: dir.to_owned(),
        }
    } else {
        Error::Io(e)
    }
}

/// This engine's journal. Lives under the ingress lock.
pub(crate) struct Journal {
    dir: PathBuf,
    id: String,
    lock: Option<File>,
    segments: VecDeque<Segment>,
    /// The next segment, created ahead of need outside the ingress lock, so
    /// a rotation inside `save` is a pointer move, not a file creation.
    spare: Option<Segment>,
    /// The index reserved for a spare being created right now.
    spare_reserved: Option<u64>,
    next_index: u64,
    segment_bytes: usize,
    sync: JournalSync,
    buf: Vec<u8>,
    last_appended: u64,
    /// The segment a rotation just left, full: its pages are dropped from
    /// the process's resident set outside the ingress lock (see
    /// [`take_filled`](Self::take_filled)).
    filled: Option<Arc<MmapRaw>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("id", &self.id)
            .field("segments", &self.segments.len())
            .finish()
    }
}

/// Segments no longer needed, to be unmapped and deleted outside the ingress
/// lock; when the whole journal goes, its lock file too, after them (a
/// crash in between leaves segments that recovery still finds).
pub(crate) struct Retired {
    segments: Vec<Segment>,
    lock: Option<(PathBuf, File)>,
}

impl From<Segment> for Retired {
    fn from(s: Segment) -> Retired {
        Retired {
            segments: vec![s],
            lock: None,
        }
    }
}

impl Drop for Retired {
    fn drop(&mut self) {
        for s in self.segments.drain(..) {
            let path = s.path().to_owned();
            drop(s);
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a journal segment");
            }
        }
        if let Some((path, lock)) = self.lock.take() {
            let _ = fs::remove_file(path);
            drop(lock);
        }
    }
}

impl Journal {
    /// Creates a new journal for this engine in `dir`, locked, with
    /// its first segment. A full disk is [`Error::DiskFull`].
    pub fn create(dir: &Path, sync: JournalSync, segment_bytes: usize) -> Result<Journal> {
        let dir = dir.to_owned();
        fs::create_dir_all(&dir)?;
        let id = format!(
            "{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        // Lock under a temporary name, then rename into place: another
        // process never sees this journal's lock file unlocked.
        let tmp = dir.join(format!("{id}.lock.tmp"));
        let lock = File::create(&tmp)?;
        lock.try_lock()
            .map_err(|e| io::Error::other(format!("locking a new journal: {e}")))?;
        fs::rename(&tmp, dir.join(format!("{id}.lock")))?;
        let mut j = Journal {
            dir,
            id,
            lock: Some(lock),
            segments: VecDeque::new(),
            spare: None,
            spare_reserved: None,
            next_index: 0,
            segment_bytes,
            sync,
            buf: Vec::with_capacity(256),
            last_appended: 0,
            filled: None,
        };
        if let Err(e) = j.rotate() {
            let err = journal_error(e, &j.dir);
            drop(j.remove(0, true));
            return Err(err);
        }
        Ok(j)
    }

    /// This journal's id (its name in `journal_marks`).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn segment_path(&self, index: u64) -> PathBuf {
        self.dir.join(format!("{}.{index:06}.seg", self.id))
    }

    /// Starts the next segment: the spare if there is one, else a new file
    /// (which takes milliseconds: the spare exists to avoid that here).
    fn rotate(&mut self) -> io::Result<()> {
        let left = self.segments.back().map(|s| s.map.clone());
        let made = self.rotate_to_next();
        if made.is_ok() {
            self.filled = left;
        }
        made
    }

    fn rotate_to_next(&mut self) -> io::Result<()> {
        if let Some(spare) = self.spare.take() {
            self.segments.push_back(spare);
            return Ok(());
        }
        let index = self.next_index;
        self.next_index += 1;
        self.segments.push_back(Segment::create(
            self.segment_path(index),
            index,
            self.segment_bytes,
        )?);
        Ok(())
    }

    /// When the active segment is half full and no spare exists or is being
    /// made: reserves the next index and returns what to create, outside the
    /// ingress lock, with [`Segment::create`]; hand the result to
    /// [`install_spare`](Self::install_spare).
    pub fn spare_wanted(&mut self) -> Option<(PathBuf, u64, usize)> {
        let half_full = self
            .segments
            .back()
            .is_some_and(|s| s.room() < self.segment_bytes / 2);
        if !half_full || self.spare.is_some() || self.spare_reserved.is_some() {
            return None;
        }
        let index = self.next_index;
        self.next_index += 1;
        self.spare_reserved = Some(index);
        Some((self.segment_path(index), index, self.segment_bytes))
    }

    /// Takes the spare made for [`spare_wanted`](Self::spare_wanted)'s
    /// reservation. If a rotation could not wait for it (a later segment is
    /// already active), or it is not the reserved one, it is returned for
    /// deletion instead: segments must be used in index order.
    pub fn install_spare(&mut self, made: io::Result<Segment>) -> Option<Retired> {
        let reserved = self.spare_reserved.take();
        match made {
            Ok(seg)
                if reserved != Some(seg.index)
                    || self.segments.back().is_some_and(|s| s.index > seg.index) =>
            {
                Some(Retired::from(seg))
            }
            Ok(seg) => {
                self.spare = Some(seg);
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not create a spare journal segment; the next rotation will");
                None
            }
        }
    }

    /// Appends one record. Called under the ingress lock, in sequence order.
    /// With [`JournalSync::Always`], forces it to disk before returning.
    /// When a new segment is needed and the disk has no room for it:
    /// [`Error::DiskFull`], and nothing was written.
    pub fn append(&mut self, seq: u64, hlc: u64, payload: &OpPayload) -> Result<()> {
        self.buf.clear();
        format::encode(seq, hlc, payload, &mut self.buf);
        let need = self.buf.len();
        if need > self.segment_bytes - format::SEGMENT_HEADER {
            return Err(io::Error::other("record larger than a journal segment").into());
        }
        if self.segments.back().is_none_or(|s| s.room() < need) {
            self.rotate().map_err(|e| journal_error(e, &self.dir))?;
        }
        let Some(seg) = self.segments.back_mut() else {
            return Err(io::Error::other("no journal segment").into());
        };
        let at = seg.len;
        seg.write_record(&self.buf);
        if self.sync == JournalSync::Always {
            if let Err(e) = seg.map.flush_range(at, self.buf.len()) {
                // Refused, so not in the journal either: the next save
                // takes this sequence number, and must not find a twin.
                seg.take_back(at, self.buf.len());
                return Err(e.into());
            }
            seg.synced = seg.len;
        }
        seg.last_seq = seq;
        self.last_appended = seq;
        Ok(())
    }

    /// With [`JournalSync::Batch`]: every segment written since its last
    /// sync (not only the active one: a rotation may have happened since),
    /// as (index, bytes written, mapping), to sync outside the ingress lock
    /// and then report with [`synced`](Self::synced).
    pub fn sync_handles(&self) -> Vec<(u64, usize, Arc<MmapRaw>)> {
        if self.sync != JournalSync::Batch {
            return Vec::new();
        }
        self.segments
            .iter()
            .filter(|s| s.synced < s.len)
            .map(|s| (s.index, s.len, s.map.clone()))
            .collect()
    }

    /// Segment `index` is on stable storage up to `len` bytes. A sync that
    /// failed is not reported, so the next flush tries it again.
    pub fn synced(&mut self, index: u64, len: usize) {
        if let Some(s) = self.segments.iter_mut().find(|s| s.index == index) {
            s.synced = s.synced.max(len);
        }
    }

    /// Everything up to `seq` is committed: full segments holding nothing
    /// later are retired (the active one stays).
    pub fn committed_through(&mut self, seq: u64) -> Retired {
        let mut out = Vec::new();
        while self.segments.len() > 1 && self.segments.front().is_some_and(|s| s.last_seq <= seq) {
            if let Some(s) = self.segments.pop_front() {
                out.push(s);
            }
        }
        Retired {
            segments: out,
            lock: None,
        }
    }

    /// The mapping of the segment the last rotation filled, once: nothing
    /// writes to it any more. Hand it to [`segment::release_pages`] outside
    /// the ingress lock.
    pub fn take_filled(&mut self) -> Option<Arc<MmapRaw>> {
        self.filled.take()
    }

    /// Bytes currently held in segment files.
    pub fn bytes(&self) -> u64 {
        self.segments
            .iter()
            .chain(&self.spare)
            .map(|s| s.map.len() as u64)
            .sum()
    }

    /// Removes the journal's files if every record in it is committed
    /// (`committed` ≥ the last appended), or `force` (nothing in it was
    /// acknowledged). Otherwise keeps them, unlocked, for the next open to
    /// replay, and returns `None`.
    pub fn remove(mut self, committed: u64, force: bool) -> Option<Retired> {
        if committed < self.last_appended && !force {
            tracing::info!(
                journal = %self.id,
                committed,
                last = self.last_appended,
                "journal kept: it holds saves that were not committed; the next open replays them"
            );
            return None;
        }
        let segments = std::mem::take(&mut self.segments)
            .into_iter()
            .chain(self.spare.take())
            .collect();
        let lock_path = self.dir.join(format!("{}.lock", self.id));
        Some(Retired {
            segments,
            lock: self.lock.take().map(|f| (lock_path, f)),
        })
    }
}

#[cfg(test)]
mod tests;
