//! One segment file of a journal: created with its space reserved for real,
//! locked by its owner for as long as it is mapped, written through a shared
//! memory mapping.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{MmapRaw, UncheckedAdvice};

use super::format::{segment_header, RECORD_HEADER, SEGMENT_HEADER};

pub(crate) struct Segment {
    pub(super) path: PathBuf,
    /// Its place in the journal (the number in its file name).
    pub(super) index: u64,
    pub(super) map: Arc<MmapRaw>,
    /// Bytes in use, header included.
    pub(super) len: usize,
    /// Bytes known to be on stable storage (`JournalSync::Batch`).
    pub(super) synced: usize,
    /// Highest sequence number in it (0 if empty).
    pub(super) last_seq: u64,
    /// Held open with an exclusive lock: while it is held, recovery in
    /// another engine or process knows the owner lives, even if the
    /// journal's lock file was deleted.
    _file: File,
}

/// Reserves `size` bytes of real disk blocks for `file`, so a later write
/// into its mapping cannot fault for want of space (a file merely grown
/// with `set_len` is sparse: on a full disk, the write would kill the
/// process with SIGBUS). Fails with `ENOSPC` (`StorageFull`) when there is
/// no room.
fn reserve(file: &File, size: usize) -> io::Result<()> {
    fail::fail_point!("mnemo::journal_reserve", |_| Err(
        io::Error::from_raw_os_error(libc::ENOSPC)
    ));
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: plain system call on a file descriptor this function
        // borrows for its duration; no memory is passed.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, size as libc::off_t) };
        match rc {
            0 => Ok(()),
            // File systems without fallocate: fall back to writing zeros,
            // which allocates blocks just the same.
            libc::EOPNOTSUPP | libc::EINVAL => write_zeros(file, size),
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        write_zeros(file, size)
    }
}

fn write_zeros(file: &File, size: usize) -> io::Result<()> {
    use std::io::Write;
    let zeros = vec![0u8; 64 * 1024];
    let mut w = file;
    let mut left = size;
    while left > 0 {
        let n = left.min(zeros.len());
        w.write_all(&zeros[..n])?;
        left -= n;
    }
    w.flush()
}

/// Drops a filled segment's pages from this process's resident set. Its
/// data stays in the page cache, still written back as before and still
/// reached by a later sync (which syncs the file's range, mapped or not);
/// a segment is pre-faulted in full, so without this every full segment
/// still waiting for its commit holds its whole size resident.
pub(crate) fn release_pages(map: &MmapRaw) {
    // SAFETY: a shared file mapping loses no data to MADV_DONTNEED (a later
    // access reads the file's pages again), and no reference into this
    // mapping's memory is held: it is only written through raw pointers by
    // the active segment's appends, and this segment is no longer active.
    if let Err(e) = unsafe { map.unchecked_advise(UncheckedAdvice::DontNeed) } {
        tracing::debug!(error = %e, "could not release a full journal segment's pages");
    }
}

impl Segment {
    /// Creates segment file `path` with `size` bytes reserved on disk,
    /// locked and mapped (slow: file creation, allocation and pre-faulting;
    /// [`super::Journal::spare_wanted`] says when to do it outside the
    /// ingress lock). The file is built under a temporary name and renamed
    /// into place once its header is written, so a `.seg` file always has
    /// one; on any failure nothing is left behind.
    pub(crate) fn create(path: PathBuf, index: u64, size: usize) -> io::Result<Segment> {
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        let made = (|| {
            file.try_lock()
                .map_err(|e| io::Error::other(format!("locking a new journal segment: {e}")))?;
            reserve(&file, size)?;
            // Pre-fault the pages now, at creation, rather than one page
            // fault inside some later `save` every 4 KiB.
            let map = memmap2::MmapOptions::new().populate().map_raw(&file)?;
            if map.len() < SEGMENT_HEADER + RECORD_HEADER {
                return Err(io::Error::other("journal segment too small"));
            }
            let header = segment_header(size);
            // SAFETY: the mapping is at least SEGMENT_HEADER bytes long
            // (checked above) and nothing else in this process has it yet.
            unsafe {
                std::ptr::copy_nonoverlapping(header.as_ptr(), map.as_mut_ptr(), header.len());
            }
            fs::rename(&tmp, &path)?;
            Ok(map)
        })();
        match made {
            Ok(map) => Ok(Segment {
                path,
                index,
                map: Arc::new(map),
                len: SEGMENT_HEADER,
                synced: 0,
                last_seq: 0,
                _file: file,
            }),
            Err(e) => {
                // No journal lists this file: remove it, or it stays.
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn room(&self) -> usize {
        self.map.len() - self.len
    }

    /// Copies one encoded record (from [`super::format::encode`]) to the
    /// end: everything but its first four bytes (the magic), then the
    /// magic. A crash in between leaves a record without magic, which
    /// recovery reads as an unfinished write, not as damage.
    pub(super) fn write_record(&mut self, record: &[u8]) {
        debug_assert!(record.len() > 4 && record.len() <= self.room());
        // SAFETY: the mapping is `map.len()` bytes long and `len +
        // record.len()` fits (checked by the caller through `room`). Only this
        // engine writes the file: it holds the segment's exclusive lock, and
        // recovery reads a segment only once it holds that lock. Appends are
        // serialised by the ingress lock, and nothing in this process reads
        // the mapping.
        unsafe {
            let dst = self.map.as_mut_ptr().add(self.len);
            std::ptr::copy_nonoverlapping(record.as_ptr().add(4), dst.add(4), record.len() - 4);
            // The compiler must not move the magic's store before the rest.
            std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::Release);
            std::ptr::copy_nonoverlapping(record.as_ptr(), dst, 4);
        }
        self.len += record.len();
    }

    /// Takes back the last record (`len` bytes written at `at`): zeroes it,
    /// magic first, and moves the end back. For a record whose `save` was
    /// refused after it was written (its sync failed).
    pub(super) fn take_back(&mut self, at: usize, len: usize) {
        debug_assert!(at + len == self.len);
        // SAFETY: `at..at + len` is the record just written, inside the
        // mapping; same ownership argument as `write_record`.
        unsafe {
            let dst = self.map.as_mut_ptr().add(at);
            std::ptr::write_bytes(dst, 0, 4);
            std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::Release);
            std::ptr::write_bytes(dst.add(4), 0, len - 4);
        }
        self.len = at;
    }
}
