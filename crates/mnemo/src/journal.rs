//! The crash journal: every accepted save is in a file before `save` returns,
//! so a process killed before its flush loses nothing it acknowledged.
//!
//! Layout: beside the database, a folder `<db>.journal/` holds, per engine,
//! a lock file `<id>.lock` (held with an exclusive file lock while the engine
//! lives) and segments `<id>.<n>.seg`. A segment is a fixed-size file mapped
//! into memory (shared mapping); a record is
//!
//! ```text
//! u32 length (LE) | u32 CRC32 of the payload (LE) | payload
//! payload: u64 seq | i64 at_ms | u8 kind (1 save, 2 forget) | u8 flags (1: has metadata)
//!          | str namespace | str category | str key | [str value] | [str metadata]
//! str: u32 length (LE) | UTF-8 bytes
//! ```
//!
//! and a zero length marks the end. **Why a mapping and not `write(2)`:**
//! both put the bytes in the kernel's page cache, which is what survives
//! `kill -9`, a panic or an OOM kill; a `write` costs a system call (1.1 µs
//! for a 120-byte record, `cargo bench --bench journal_sync -- plain_write`),
//! the mapping adds 0.2–0.4 µs to a whole `save`. Power loss is covered only by
//! [`JournalSync`].
//!
//! Exactly-once replay: each committed batch records, in its own
//! transaction, the highest sequence number it committed from this journal
//! (`journal_marks`). On open, every journal whose lock is free (its owner is
//! gone) is read, records past its mark are written in order, and its files
//! are removed. A torn or corrupt tail (half-written record, bad CRC) ends
//! the valid prefix; the bytes after it are reported and dropped.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::MmapRaw;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::OpPayload;

/// When the journal is forced to stable storage (fsync of the mapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum JournalSync {
    /// Never: survives a process crash, not a power cut before the flush.
    /// The default.
    #[default]
    Never,
    /// At every flush, before the batch is written: a power cut loses at most
    /// the saves of the current quiet window.
    Batch,
    /// After every save, before `save` returns: survives a power cut, at the
    /// price of an fsync per save (milliseconds on most disks).
    Always,
}

/// Bytes per segment file.
pub(crate) const SEGMENT_BYTES: usize = 8 * 1024 * 1024;
const HEADER: usize = 8;

/// One decoded record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    pub seq: u64,
    pub payload: OpPayload,
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// Appends the framed record for `(seq, payload)` to `buf`.
pub(crate) fn encode(seq: u64, p: &OpPayload, buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER]);
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&p.at_ms.to_le_bytes());
    buf.push(if p.value.is_some() { 1 } else { 2 });
    buf.push(u8::from(p.metadata.is_some()));
    put_str(buf, &p.namespace);
    put_str(buf, &p.category);
    put_str(buf, &p.key);
    if let Some(v) = &p.value {
        put_str(buf, v);
    }
    if let Some(m) = &p.metadata {
        put_str(buf, m);
    }
    let len = (buf.len() - start - HEADER) as u32;
    let crc = crc32fast::hash(&buf[start + HEADER..]);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (head, tail) = self.b.split_at(n);
        self.b = tail;
        Some(head)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn str(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

fn decode_payload(b: &[u8]) -> Option<Record> {
    let mut r = Reader { b };
    let seq = r.u64()?;
    let at_ms = r.u64()? as i64;
    let kind = r.u8()?;
    let flags = r.u8()?;
    let namespace = r.str()?;
    let category = r.str()?;
    let key = r.str()?;
    let value = match kind {
        1 => Some(r.str()?),
        2 => None,
        _ => return None,
    };
    let metadata = if flags & 1 == 1 { Some(r.str()?) } else { None };
    if !r.b.is_empty() {
        return None;
    }
    Some(Record {
        seq,
        payload: OpPayload {
            namespace,
            category,
            key,
            value,
            metadata,
            at_ms,
        },
    })
}

/// Decodes records from the start of `bytes` until the end marker (a zero
/// length), the end of the data, or the first damaged record. Returns the
/// records and how many bytes after the last good record were not zero (a
/// torn or corrupt tail). Never panics, whatever the input.
pub(crate) fn decode(bytes: &[u8]) -> (Vec<Record>, usize) {
    let (records, end) = decode_prefix(bytes);
    let dropped = bytes[end..]
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1);
    (records, dropped)
}

/// What [`decode`] found in a journal segment: for tools and fuzzing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeSummary {
    /// Valid records before the end marker or the first damaged record.
    pub records: usize,
    /// Bytes after them that were not zero (a torn or corrupt tail).
    pub dropped_bytes: usize,
    /// The last valid record's sequence number (0 if none).
    pub last_seq: u64,
}

/// Decodes a journal segment's bytes and summarises them. Never panics,
/// whatever the input.
pub fn decode_summary(bytes: &[u8]) -> DecodeSummary {
    let (records, dropped_bytes) = decode(bytes);
    DecodeSummary {
        records: records.len(),
        dropped_bytes,
        last_seq: records.last().map_or(0, |r| r.seq),
    }
}

fn decode_prefix(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= HEADER {
        let len =
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        if len == 0 || len > bytes.len() - at - HEADER {
            break;
        }
        let body = &bytes[at + HEADER..at + HEADER + len];
        if crc32fast::hash(body) != crc {
            break;
        }
        match decode_payload(body) {
            Some(r) => records.push(r),
            None => break,
        }
        at += HEADER + len;
    }
    (records, at)
}

/// The journal folder for a database file.
pub(crate) fn dir_for(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".journal");
    db.with_file_name(name)
}

pub(crate) struct Segment {
    path: PathBuf,
    /// Its place in the journal (the number in its file name).
    index: u64,
    map: Arc<MmapRaw>,
    /// Bytes written.
    len: usize,
    /// Highest sequence number in it (0 if empty).
    last_seq: u64,
    _file: File,
}

impl Segment {
    /// Creates, sizes and maps segment file `path` (slow: file creation and
    /// pre-faulting `size` bytes of pages). [`Journal::spare_wanted`] says
    /// when to call it outside the ingress lock.
    pub(crate) fn create(path: PathBuf, index: u64, size: usize) -> io::Result<Segment> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        // Pre-fault the pages now, at creation, rather than one page fault
        // inside some later `save` every 4 KiB.
        let mapped = file
            .set_len(size as u64)
            .and_then(|()| memmap2::MmapOptions::new().populate().map_raw(&file));
        let map = match mapped {
            Ok(map) => map,
            Err(e) => {
                // No journal lists this file: remove it, or it stays.
                let _ = fs::remove_file(&path);
                return Err(e);
            }
        };
        Ok(Segment {
            path,
            index,
            map: Arc::new(map),
            len: 0,
            last_seq: 0,
            _file: file,
        })
    }

    fn room(&self) -> usize {
        self.map.len() - self.len
    }

    fn write(&mut self, bytes: &[u8]) {
        debug_assert!(bytes.len() <= self.room());
        // SAFETY: the mapping is `map.len()` bytes long and `len + bytes.len()`
        // fits (checked by the caller through `room`). Only this engine writes
        // the file: it holds the journal's exclusive lock, and other processes
        // read a journal only once its lock is free. Appends are serialised
        // by the ingress lock, and nothing in this process reads the mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.map.as_mut_ptr().add(self.len),
                bytes.len(),
            );
        }
        self.len += bytes.len();
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
/// lock.
pub(crate) struct Retired(Vec<Segment>);

impl From<Segment> for Retired {
    fn from(s: Segment) -> Retired {
        Retired(vec![s])
    }
}

impl Drop for Retired {
    fn drop(&mut self) {
        for s in self.0.drain(..) {
            let path = s.path.clone();
            drop(s);
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a journal segment");
            }
        }
    }
}

impl Journal {
    /// Creates a new journal for this engine in `dir_for(db)`, locked.
    pub fn create(db: &Path, sync: JournalSync, segment_bytes: usize) -> Result<Journal> {
        let dir = dir_for(db);
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
        };
        j.rotate()?;
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
                Some(Retired(vec![seg]))
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
    pub fn append(&mut self, seq: u64, payload: &OpPayload) -> Result<()> {
        self.buf.clear();
        encode(seq, payload, &mut self.buf);
        // The end marker (a zero length) must fit after the record too.
        let need = self.buf.len() + 4;
        if need > self.segment_bytes {
            return Err(io::Error::other("record larger than a journal segment").into());
        }
        if self.segments.back().is_none_or(|s| s.room() < need) {
            self.rotate()?;
        }
        let Some(seg) = self.segments.back_mut() else {
            return Err(io::Error::other("no journal segment").into());
        };
        let at = seg.len;
        seg.write(&self.buf);
        seg.last_seq = seq;
        self.last_appended = seq;
        if self.sync == JournalSync::Always {
            seg.map.flush_range(at, self.buf.len())?;
        }
        Ok(())
    }

    /// The active segment's mapping, to sync it outside the ingress lock
    /// ([`JournalSync::Batch`]).
    pub fn sync_handle(&self) -> Option<Arc<MmapRaw>> {
        (self.sync == JournalSync::Batch)
            .then(|| self.segments.back().map(|s| s.map.clone()))
            .flatten()
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
        Retired(out)
    }

    /// Bytes currently held in segment files.
    pub fn bytes(&self) -> u64 {
        self.segments
            .iter()
            .chain(&self.spare)
            .map(|s| s.map.len() as u64)
            .sum()
    }

    /// Removes the journal's files: only when every record in it is
    /// committed (clean shutdown).
    pub fn remove(mut self, committed: u64) -> Option<Retired> {
        if committed < self.last_appended {
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
        let _ = fs::remove_file(lock_path);
        drop(self.lock.take());
        Some(Retired(segments))
    }
}

/// An orphaned journal: its owner is gone and this process holds its lock.
pub(crate) struct Orphan {
    pub id: String,
    pub records: Vec<Record>,
    /// Bytes of damaged tails dropped.
    pub dropped: usize,
    lock: Option<File>,
    lock_path: PathBuf,
    segments: Vec<PathBuf>,
}

impl Orphan {
    /// Removes the orphan's files (after its records are committed).
    pub fn remove(mut self) {
        for p in &self.segments {
            if let Err(e) = fs::remove_file(p) {
                tracing::warn!(path = %p.display(), error = %e, "could not remove a replayed journal segment");
            }
        }
        let _ = fs::remove_file(&self.lock_path);
        drop(self.lock.take());
    }
}

/// Finds the journals in `dir_for(db)` whose owner is gone, locks them and
/// reads their records. Journals of live processes (lock held) are skipped.
pub(crate) fn orphans(db: &Path) -> Result<Vec<Orphan>> {
    let dir = dir_for(db);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names.iter().filter(|n| n.ends_with(".lock")) {
        let id = name.trim_end_matches(".lock").to_owned();
        let lock_path = dir.join(name);
        let lock = match OpenOptions::new().read(true).write(true).open(&lock_path) {
            Ok(f) => f,
            Err(_) => continue,
        };
        if lock.try_lock().is_err() {
            continue; // a live engine owns it
        }
        // The file may have been replayed and removed by another process
        // between our listing and our lock.
        if !lock_path.exists() {
            continue;
        }
        let prefix = format!("{id}.");
        let mut segments: Vec<PathBuf> = names
            .iter()
            .filter(|n| n.starts_with(&prefix) && n.ends_with(".seg"))
            .map(|n| dir.join(n))
            .collect();
        segments.sort();
        let mut records = Vec::new();
        let mut dropped = 0;
        for seg in &segments {
            let bytes = match fs::read(seg) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            let (mut r, d) = decode(&bytes);
            records.append(&mut r);
            dropped += d;
        }
        out.push(Orphan {
            id,
            records,
            dropped,
            lock: Some(lock),
            lock_path,
            segments,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(key: &str, value: Option<&str>, metadata: Option<&str>) -> OpPayload {
        OpPayload {
            namespace: "ns".into(),
            category: "cat".into(),
            key: key.into(),
            value: value.map(Into::into),
            metadata: metadata.map(Into::into),
            at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn records_round_trip() {
        let mut buf = Vec::new();
        let a = payload("k", Some("مجھے گانا پسند ہے"), Some(r#"{"x":1}"#));
        let b = payload("gone", None, None);
        encode(1, &a, &mut buf);
        encode(2, &b, &mut buf);
        buf.extend_from_slice(&[0; 64]);
        let (records, dropped) = decode(&buf);
        assert_eq!(dropped, 0);
        assert_eq!(
            records,
            vec![Record { seq: 1, payload: a }, Record { seq: 2, payload: b }]
        );
    }

    #[test]
    fn torn_and_corrupt_tails_keep_the_valid_prefix() {
        let mut buf = Vec::new();
        encode(1, &payload("a", Some("one"), None), &mut buf);
        let first = buf.len();
        encode(2, &payload("b", Some("two"), None), &mut buf);
        // torn: the second record cut in half
        let torn = &buf[..first + (buf.len() - first) / 2];
        let (r, dropped) = decode(torn);
        assert_eq!(r.len(), 1);
        assert!(dropped > 0);
        // corrupt: a flipped bit in the second record's payload
        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x40;
        let (r, dropped) = decode(&bad);
        assert_eq!((r.len(), dropped), (1, buf.len() - first));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2_000 {
            let len = rng.usize(0..200);
            let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn journal_rotates_retires_and_is_found_by_the_next_process() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("m.db");
        let mut j = Journal::create(&db, JournalSync::Never, 1024)?;
        for seq in 1..=100 {
            j.append(seq, &payload(&format!("k{seq}"), Some("some value"), None))?;
        }
        assert!(j.segments.len() > 2);
        // a live journal is not an orphan
        assert!(orphans(&db)?.is_empty());
        drop(j.committed_through(50));
        assert!(j.segments.front().unwrap().last_seq > 50);
        // the owner dies without cleaning up (drop releases the lock)
        drop(j);
        let found = orphans(&db)?;
        assert_eq!(found.len(), 1);
        let seqs: Vec<u64> = found[0].records.iter().map(|r| r.seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "in order, no gaps"
        );
        assert_eq!(*seqs.last().unwrap(), 100);
        assert!(seqs[0] <= 51, "uncommitted records are all kept");
        for o in found {
            o.remove();
        }
        assert!(orphans(&db)?.is_empty());
        assert_eq!(fs::read_dir(dir_for(&db))?.count(), 0);
        Ok(())
    }

    /// Appends records (sequence numbers after `*seq`) until `done`.
    fn fill_until(j: &mut Journal, seq: &mut u64, done: impl Fn(&Journal) -> bool) -> Result<()> {
        while !done(j) {
            *seq += 1;
            j.append(*seq, &payload(&format!("k{seq}"), Some("some value"), None))?;
        }
        Ok(())
    }

    #[test]
    fn the_spare_segment_is_made_ahead_and_used_in_index_order() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("m.db");
        let mut j = Journal::create(&db, JournalSync::Never, 1024)?;
        assert!(
            j.spare_wanted().is_none(),
            "an empty segment wants no spare"
        );
        let mut seq = 0;
        fill_until(&mut j, &mut seq, |j| j.segments[0].room() < 512)?;
        let (path, index, size) = j.spare_wanted().expect("half full: a spare");
        assert!(j.spare_wanted().is_none(), "one spare at a time");
        // Made outside the lock, then installed; the rotation takes it.
        assert!(j
            .install_spare(Segment::create(path.clone(), index, size))
            .is_none());
        assert_eq!(j.bytes(), 2048, "the spare counts as journal bytes");
        let next_before = j.next_index;
        fill_until(&mut j, &mut seq, |j| j.segments.len() > 1)?;
        assert_eq!(j.segments[1].path, path, "the rotation used the spare");
        assert_eq!(j.next_index, next_before, "and created no file");

        // A spare that arrives after a rotation made a later segment is
        // deleted, not used out of order.
        fill_until(&mut j, &mut seq, |j| j.segments[1].room() < 512)?;
        let (path, index, size) = j.spare_wanted().expect("a second spare");
        fill_until(&mut j, &mut seq, |j| j.segments.len() > 2)?;
        let stale = j.install_spare(Segment::create(path.clone(), index, size));
        assert!(stale.is_some() && j.spare.is_none());
        drop(stale);
        assert!(!path.exists(), "the stale spare was deleted");

        // An orphaned journal with a spare replays every record in order.
        fill_until(&mut j, &mut seq, |j| j.segments[2].room() < 512)?;
        let (path, index, size) = j.spare_wanted().expect("a third spare");
        assert!(j
            .install_spare(Segment::create(path, index, size))
            .is_none());
        let last = j.last_appended;
        drop(j);
        let found = orphans(&db)?;
        let seqs: Vec<u64> = found[0].records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
        Ok(())
    }

    #[test]
    fn a_segment_that_cannot_be_made_leaves_no_file() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("m.db");
        let mut j = Journal::create(&db, JournalSync::Never, 1024)?;
        let mut seq = 0;
        fill_until(&mut j, &mut seq, |j| j.segments[0].room() < 512)?;
        let (path, index, _) = j.spare_wanted().expect("a spare");
        // The file is created, then sizing it fails.
        assert!(j
            .install_spare(Segment::create(path.clone(), index, 1 << 62))
            .is_none());
        assert!(!path.exists(), "the failed spare's file is gone");
        assert!(j.spare_wanted().is_some(), "and another is asked for");
        drop(j.remove(seq));
        assert_eq!(fs::read_dir(dir_for(&db))?.count(), 0);
        Ok(())
    }

    #[test]
    fn clean_removal_only_when_everything_committed() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("m.db");
        let mut j = Journal::create(&db, JournalSync::Always, SEGMENT_BYTES)?;
        j.append(1, &payload("a", Some("v"), None))?;
        assert!(j.remove(0).is_none(), "kept: not committed");
        assert_eq!(orphans(&db)?.len(), 1);
        let mut j = Journal::create(&db, JournalSync::Never, SEGMENT_BYTES)?;
        j.append(5, &payload("a", Some("v"), None))?;
        drop(j.remove(5));
        Ok(())
    }
}
