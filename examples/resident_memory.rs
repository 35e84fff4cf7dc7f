//! Resident memory of a process using mnemo, with 100k memories stored and
//! with 100k pending. Not a criterion benchmark: it reads `VmRSS` (and its
//! anonymous and file-backed parts) from `/proc/self/status` (Linux).
//!
//! `cargo run --release --example resident_memory [-- N]` (N default
//! 100000)
//!
//! Each figure is taken in a fresh process (this program runs itself), so
//! one measurement's allocations do not inflate the next:
//!
//! - `stored`: a database holding N committed and indexed memories (built
//!   beforehand by another process) is opened; then 1,000 `get`s and 100
//!   `search`es run. RSS after open and after the reads.
//! - `pending`: an empty database is opened with a quiet window, max wait and
//!   batch size large enough that nothing is flushed; N saves are made and
//!   stay pending (overlay, inbox, journal; receipts are dropped, as a tool
//!   call that does not await them would). RSS with all N pending, then after
//!   they are flushed and indexed (same process: what the allocator keeps),
//!   and once more after 3 s idle (the writer returns freed heap when idle).
//!
//! A memory here is one user's: a category (topic word), a key
//! (`memory-<n>`), and a value of about 100 bytes (twelve word-like tokens).
//!
//! Besides RSS, a counting global allocator reports the heap the process
//! holds: live bytes asked for, live blocks, and an estimate of what glibc's
//! malloc spends on them (each block rounded up to 16 bytes with an 8-byte
//! header, 32 at least); the pending case divides the growth by N.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use mnemo::{Config, Memory};

#[path = "../benches/common/mod.rs"]
mod common;
use common::{Words, TOPICS};

const NS: &str = "user-42";

/// The system allocator, counting what is live. Relaxed counters: totals
/// read between phases, not a synchronisation point.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE_BLOCKS: AtomicUsize = AtomicUsize::new(0);
/// What glibc's malloc takes for the live blocks (see the module doc).
static LIVE_CHUNKS: AtomicUsize = AtomicUsize::new(0);

fn chunk(size: usize) -> usize {
    ((size + 8 + 15) & !15).max(32)
}

fn counted(size: usize) {
    LIVE_BYTES.fetch_add(size, Relaxed);
    LIVE_BLOCKS.fetch_add(1, Relaxed);
    LIVE_CHUNKS.fetch_add(chunk(size), Relaxed);
}

fn uncounted(size: usize) {
    LIVE_BYTES.fetch_sub(size, Relaxed);
    LIVE_BLOCKS.fetch_sub(1, Relaxed);
    LIVE_CHUNKS.fetch_sub(chunk(size), Relaxed);
}

// SAFETY: every call is passed to `System` unchanged; the counters only
// observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            counted(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            counted(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        uncounted(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            uncounted(layout.size());
            counted(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Live heap: (bytes asked for, blocks, malloc's estimated footprint).
#[derive(Clone, Copy)]
struct Heap {
    bytes: usize,
    blocks: usize,
    chunks: usize,
}

fn heap() -> Heap {
    Heap {
        bytes: LIVE_BYTES.load(Relaxed),
        blocks: LIVE_BLOCKS.load(Relaxed),
        chunks: LIVE_CHUNKS.load(Relaxed),
    }
}

fn report_heap(label: &str, base: Heap, n: u64) {
    let h = heap();
    let per = |now: usize, then: usize| (now as f64 - then as f64) / n as f64;
    println!(
        "{label:<58} heap {:>7.1} MiB live in {} blocks (~{:.1} MiB with malloc's headers); \
         per save: {:.0} B in {:.2} blocks (~{:.0} B)",
        h.bytes as f64 / (1 << 20) as f64,
        h.blocks,
        h.chunks as f64 / (1 << 20) as f64,
        per(h.bytes, base.bytes),
        per(h.blocks, base.blocks),
        per(h.chunks, base.chunks),
    );
}

/// `VmRSS`, `RssAnon`, `RssFile` and `VmHWM` in KiB.
fn status() -> [u64; 4] {
    let text = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status (Linux)");
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap_or(0)
    };
    [
        field("VmRSS:"),
        field("RssAnon:"),
        field("RssFile:"),
        field("VmHWM:"),
    ]
}

fn report(label: &str) {
    let [rss, anon, file, hwm] = status();
    let mib = |kb: u64| kb as f64 / 1024.0;
    println!(
        "{label:<58} VmRSS {:>7.1} MiB (anon {:>6.1}, file {:>6.1}), peak {:>7.1} MiB",
        mib(rss),
        mib(anon),
        mib(file),
        mib(hwm)
    );
}

fn build(db: &Path, n: u64) {
    let words = Words::new();
    let memory = Memory::open(Config::new(db)).unwrap();
    let mut last: Option<mnemo::Receipt> = None;
    for i in 0..n {
        // At most 50,000 pending (the default bound is 100,000).
        if i % 50_000 == 49_999 {
            memory.flush();
            if let Some(r) = &last {
                r.wait_durable().unwrap();
            }
        }
        last = Some(memory.save(words.request(NS, i, 0)).unwrap());
    }
    memory.shutdown_blocking().unwrap();
}

fn stored(db: &Path, n: u64) {
    report("stored: before open");
    let memory = Memory::open(Config::new(db)).unwrap();
    report(&format!("stored: {n} memories, after open"));
    let words = Words::new();
    for i in 0..1_000u64 {
        let k = (i * 7_919) % n;
        let got = memory
            .get(NS, TOPICS[(k % 10) as usize], &format!("memory-{k}"))
            .unwrap();
        assert!(got.is_some());
    }
    for i in 0..100 {
        let q = format!("{} {}", words.word(i * 37), words.word(i * 37 + 701));
        memory.search(NS, &q, None, 10).unwrap();
    }
    report(&format!(
        "stored: {n} memories, after 1,000 gets + 100 searches"
    ));
    memory.shutdown_blocking().unwrap();
}

fn pending(dir: &Path, n: u64) {
    let words = Words::new();
    let mut c = Config::new(dir.join("pending.db"));
    c.quiet_window = Duration::from_secs(600);
    c.max_wait = Duration::from_secs(600);
    c.max_batch = n as usize + 1;
    // The default 4 MiB would flush a batch every ~30k saves.
    c.max_batch_bytes = 1 << 30;
    c.max_pending = n as usize + 1;
    let memory = Memory::open(c).unwrap();
    report("pending: empty engine");
    let base = heap();
    report_heap("", base, n);
    // Receipts are dropped as a tool call that does not await them would;
    // only the last is kept, to learn when everything is indexed.
    let mut last = None;
    // Keys and values saved, and the capacity their strings hold beyond
    // that (the caller's allocation, moved into the engine).
    let (mut payload, mut slack) = (0, 0);
    for i in 0..n {
        let r = words.request(NS, i, 0);
        let parts = [&r.namespace, &r.category, &r.key, &r.value];
        payload += parts.iter().map(|s| s.len()).sum::<usize>();
        slack += parts.iter().map(|s| s.capacity() - s.len()).sum::<usize>();
        last = Some(memory.save(r).unwrap());
    }
    let s = memory.stats();
    assert_eq!(s.pending, n as usize);
    report(&format!("pending: {n} saves pending"));
    report_heap("", base, n);
    println!(
        "{:<58} {} bytes of keys and values pending ({:.0} B a save; the requests' \
         strings held {:.0} B more capacity), {} journal bytes, {} overlay keys",
        "",
        s.pending_bytes,
        payload as f64 / n as f64,
        slack as f64 / n as f64,
        s.journal_bytes,
        s.overlay_keys
    );
    memory.flush();
    last.take().unwrap().wait_indexed().unwrap();
    report(&format!("pending: after those {n} are committed + indexed"));
    report_heap("", base, n);
    println!(
        "{:<58} {} overlay keys left",
        "",
        memory.stats().overlay_keys
    );
    // The writer gives the freed heap back to the system once it has been
    // idle, with the index caught up, at two checks a second apart.
    std::thread::sleep(Duration::from_secs(3));
    report("pending: the same, 3 s later (engine idle)");
    report_heap("", base, n);
    memory.shutdown_blocking().unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = |i: usize| -> u64 {
        args.get(i)
            .map(|s| s.parse().expect("N: a number"))
            .unwrap_or(100_000)
    };
    match args.get(1).map(String::as_str) {
        Some("--build") => build(Path::new(&args[2]), n(3)),
        Some("--stored") => stored(Path::new(&args[2]), n(3)),
        Some("--pending") => pending(Path::new(&args[2]), n(3)),
        _ => {
            let n = n(1);
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("stored.db");
            println!("building a database of {n} memories (another process)…");
            let me = std::env::current_exe().unwrap();
            let run = |args: &[&str]| {
                let status = Command::new(&me).args(args).status().unwrap();
                assert!(status.success(), "{args:?}: {status}");
            };
            let n_arg = n.to_string();
            let db_arg = db.to_str().unwrap();
            run(&["--build", db_arg, &n_arg]);
            run(&["--stored", db_arg, &n_arg]);
            run(&["--pending", dir.path().to_str().unwrap(), &n_arg]);
        }
    }
}
