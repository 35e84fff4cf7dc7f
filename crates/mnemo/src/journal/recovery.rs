//! Finding and reading the journals of engines that are gone.
//!
//! A journal is found by its segment files, not only by its lock file (a
//! deleted lock file must not hide saves). Its owner is known to be gone
//! when both its lock file and every one of its segments can be locked: a
//! live owner holds all of them, so recovery never reads a journal that is
//! still being written. The segment list is taken after those locks are
//! held, so a segment the owner made just before it died is not missed.
//!
//! Once the records are committed, clean segments are deleted; a segment
//! that held data no record could be read from is moved to `damaged/`
//! beside them and kept, never deleted.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::format::{decode_segment, Record};
use super::DAMAGED_DIR;
use crate::error::Result;

/// A damaged segment found in an orphan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DamagedSegment {
    pub path: PathBuf,
    /// Stretches of unreadable data (a truncation counts as one).
    pub regions: usize,
    /// Their bytes.
    pub bytes: usize,
}

/// An orphaned journal: its owner is gone and this engine holds its locks.
pub(crate) struct Orphan {
    pub id: String,
    /// Every readable record, in sequence order.
    pub records: Vec<Record>,
    /// Segments with unreadable data.
    pub damaged: Vec<DamagedSegment>,
    /// Bytes of an unfinished last write (a `save` cut off by the crash,
    /// never acknowledged).
    pub unfinished: usize,
    /// Sequence numbers missing between readable records.
    pub missing: u64,
    lock_path: PathBuf,
    segments: Vec<PathBuf>,
    /// The lock file and every segment, locked; released on drop.
    _locks: Vec<File>,
}

impl Orphan {
    /// Removes the orphan's files once its records are committed: clean
    /// segments are deleted, damaged ones moved to `damaged/` (returned).
    /// The lock file goes last, so a crash in between leaves a journal that
    /// the next open finds again (and replays past its committed mark, so
    /// nothing twice).
    pub fn retire(self) -> io::Result<Vec<PathBuf>> {
        let mut kept = Vec::new();
        for seg in &self.segments {
            if let Some(d) = self.damaged.iter().find(|d| &d.path == seg) {
                let dir = seg.parent().unwrap_or(Path::new(".")).join(DAMAGED_DIR);
                fs::create_dir_all(&dir)?;
                let to = dir.join(seg.file_name().unwrap_or_default());
                fs::rename(&d.path, &to)?;
                kept.push(to);
            } else {
                match fs::remove_file(seg) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        match fs::remove_file(&self.lock_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(kept)
    }
}

/// The index in a segment's name (`<id>.<index>.seg`, or `.seg.tmp`).
fn segment_index(path: &Path) -> u64 {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('.').nth(1))
        .and_then(|i| i.parse().ok())
        .unwrap_or(u64::MAX)
}

/// The journal id a file in the journal folder belongs to: `<id>.lock`,
/// `<id>.<n>.seg`, `<id>.<n>.seg.tmp`.
fn id_of(name: &str) -> Option<&str> {
    let (id, rest) = name.split_once('.')?;
    (rest == "lock" || rest.ends_with(".seg") || rest.ends_with(".seg.tmp")).then_some(id)
}

fn list(dir: &Path) -> io::Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Opens and locks `path` (creating it if `create`); `None` if another
/// handle holds its lock (a live owner).
fn try_lock(path: &Path, create: bool) -> io::Result<Option<File>> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)?;
    Ok(f.try_lock().is_ok().then_some(f))
}

/// Finds the journals in `dir` whose owner is gone, locks them and
/// reads their records. Journals of live engines are left alone.
pub(crate) fn orphans(dir: &Path) -> Result<Vec<Orphan>> {
    let dir = dir.to_owned();
    let names = match list(&dir) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    // A lock file still under its temporary name: its engine died while
    // creating its journal, before any record (records follow the rename).
    // (A minute old at least: a live engine creates the file, then locks
    // it; one caught in between must not lose it.)
    for name in names.iter().filter(|n| n.ends_with(".lock.tmp")) {
        let path = dir.join(name);
        let stale = fs::metadata(&path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() >= 60));
        if !stale {
            continue;
        }
        if let Ok(Some(f)) = try_lock(&path, false) {
            drop(f);
            let _ = fs::remove_file(&path);
        }
    }
    let ids: BTreeSet<String> = names
        .iter()
        .filter_map(|n| id_of(n))
        .map(String::from)
        .collect();
    // Fail point for tests: a callback here runs between the listing and
    // the locks (an owner may rotate and die in between).
    fail::fail_point!("mnemo::orphans_listed");
    let mut out = Vec::new();
    for id in ids {
        if let Some(orphan) = claim(&dir, &id)? {
            out.push(orphan);
        }
    }
    Ok(out)
}

/// Claims journal `id` if its owner is gone: locks its lock file (made
/// anew if it was deleted) and then every segment, listed after the lock.
fn claim(dir: &Path, id: &str) -> Result<Option<Orphan>> {
    let lock_path = dir.join(format!("{id}.lock"));
    let existed = lock_path.exists();
    let Some(lock) = try_lock(&lock_path, true)? else {
        return Ok(None); // a live engine holds it
    };
    let prefix = format!("{id}.");
    let names = list(dir)?;
    let mut locks = vec![lock];
    let mut segments = Vec::new();
    for name in names.iter().filter(|n| n.starts_with(&prefix)) {
        let path = dir.join(name);
        let is_tmp = name.ends_with(".seg.tmp");
        if !is_tmp && !name.ends_with(".seg") {
            continue;
        }
        match try_lock(&path, false) {
            Ok(Some(f)) if is_tmp && decode_segment(&fs::read(&path)?).records.is_empty() => {
                // A segment whose creation never finished: it never held a
                // record (records go only into renamed segments).
                drop(f);
                let _ = fs::remove_file(&path);
            }
            Ok(Some(f)) => {
                locks.push(f);
                segments.push(path);
            }
            Ok(None) => {
                // The owner lives (its lock file was deleted): leave it.
                if !existed {
                    let _ = fs::remove_file(&lock_path);
                }
                return Ok(None);
            }
            // Replayed and removed by another engine meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    // (A `.seg.tmp` still here holds records: its rename was lost, by a
    // power cut say. It is read like the others.) In index order: names
    // sort as text only up to six digits.
    segments.sort_by_key(|p| segment_index(p));
    let mut decoded = Vec::with_capacity(segments.len());
    let mut empty = Vec::with_capacity(segments.len());
    for seg in &segments {
        let bytes = fs::read(seg)?;
        empty.push(bytes.is_empty());
        decoded.push(decode_segment(&bytes));
    }
    // An empty file is a truncated segment of the current format (its
    // segments are made whole, then renamed); the format before made a file,
    // then sized it, so a crash in between left an empty one, harmless.
    let previous_format = !decoded.iter().any(|d| d.current);
    for (d, empty) in decoded.iter_mut().zip(&empty) {
        if *empty && previous_format {
            d.truncated = 0;
        }
    }
    // Only the journal's last segment with data can end in an unfinished
    // write: a rotation follows a finished record. Anywhere else a tail
    // without its magic is a damaged record.
    let last_with_data = decoded
        .iter()
        .rposition(|d| !d.records.is_empty() || d.unfinished > 0 || d.lost_regions() > 0);
    let mut records = Vec::new();
    let mut damaged = Vec::new();
    let mut unfinished = 0;
    for (i, (seg, mut d)) in segments.iter().zip(decoded).enumerate() {
        if d.unfinished > 0 && Some(i) != last_with_data {
            d.damaged.push(super::format::Damage {
                at: 0,
                len: std::mem::take(&mut d.unfinished),
            });
        }
        if d.lost_regions() > 0 {
            damaged.push(DamagedSegment {
                path: seg.clone(),
                regions: d.lost_regions(),
                bytes: d.lost_bytes(),
            });
        }
        unfinished += d.unfinished;
        records.extend(d.records);
    }
    // Segments are read in index order and appended in sequence order;
    // sorting makes replay order independent of both.
    records.sort_by_key(|r| r.seq);
    records.dedup_by_key(|r| r.seq);
    // A journal's sequence numbers are consecutive: a gap between two
    // readable records is a record lost without a trace in the bytes (a
    // damaged stretch that happened to look empty). Counted as damage.
    let missing: u64 = records
        .windows(2)
        .map(|w| w[1].seq.saturating_sub(w[0].seq + 1))
        .sum();
    Ok(Some(Orphan {
        id: id.to_owned(),
        records,
        damaged,
        unfinished,
        missing,
        lock_path,
        segments,
        _locks: locks,
    }))
}
