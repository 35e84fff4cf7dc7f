//! The heap a pending save holds, and that it is all given back once the
//! save is committed and indexed (issue 14). A counting global allocator
//! (this test binary's own) measures the live heap; one test function, so
//! no other test allocates beside it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use mnemo::{Config, Memory, Result, SaveRequest};

/// The system allocator, counting live bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to `System` unchanged; the counter only
// observes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Relaxed);
            LIVE.fetch_add(new_size, Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> usize {
    LIVE.load(Relaxed)
}

const N: usize = 20_000;

/// Heap per pending save, keys and value included (about 140 bytes of
/// text, in one allocation with the payload's other fields beside it). It
/// was ~1,380 bytes before issue 14 (a copy of the key in the overlay, a
/// 430-byte overlay entry, a ~380-byte `watch` channel per receipt, five
/// strings per payload); ~410 after, ~395 once the overlay entry's derived
/// parts shared one cell (its 16 bytes pay for the hash beside each entry in
/// the overlay's set).
const MAX_BYTES_PER_PENDING_SAVE: usize = 450;

/// What may stay once everything is committed and indexed: nothing per
/// save (the page cache and connection caches are not per save).
const MAX_BYTES_KEPT_PER_SAVE: usize = 16;

fn request(i: usize) -> SaveRequest {
    // Strings of exactly their length, as a deserialised tool call's are.
    SaveRequest::new(
        "user-42",
        ["food", "travel", "work", "family"][i % 4],
        format!("memory-{i}"),
        format!(
            "the user said this about item {i}: quiet mornings, green tea, long walks, \
             and an old bicycle {}",
            i * 7
        ),
    )
}

#[test]
fn a_pending_save_holds_little_heap_and_gives_it_all_back() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut c = Config::new(dir.path().join("heap.db"));
    // Nothing flushes until asked.
    c.quiet_window = Duration::from_secs(600);
    c.max_wait = Duration::from_secs(600);
    c.max_batch = N + 1;
    c.max_batch_bytes = 1 << 30;
    c.max_pending = N + 1;
    let memory = Memory::open(c)?;
    // One save through the whole path first: what is made once (caches,
    // statements, the actors' buffers) is not per save.
    let first = memory.save(request(N))?;
    memory.flush();
    first.wait_indexed()?;

    let base = live();
    let mut last = None;
    for i in 0..N {
        // Receipts dropped, as a tool call that does not await them would.
        last = Some(memory.save(request(i))?);
    }
    assert_eq!(memory.stats().pending, N);
    let per_save = (live() - base) / N;
    assert!(
        per_save <= MAX_BYTES_PER_PENDING_SAVE,
        "{per_save} bytes of heap per pending save (at most {MAX_BYTES_PER_PENDING_SAVE})"
    );

    memory.flush();
    last.take().expect("saved").wait_indexed()?;
    assert_eq!(memory.stats().overlay_keys, 0);
    // The indexer frees the batch's last items just after resolving the
    // last receipt: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let kept = loop {
        let kept = live().saturating_sub(base);
        if kept <= MAX_BYTES_KEPT_PER_SAVE * N || Instant::now() > deadline {
            break kept;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        kept <= MAX_BYTES_KEPT_PER_SAVE * N,
        "{kept} bytes kept after {N} saves were committed and indexed \
         ({per_save} per save while pending)"
    );
    eprintln!(
        "{per_save} bytes of heap per pending save; {kept} bytes kept after commit and index"
    );
    memory.shutdown_blocking()?;
    Ok(())
}
