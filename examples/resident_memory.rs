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
//!   they are flushed and indexed (same process: what the allocator keeps).
//!
//! A memory here is one user's: a category (topic word), a key
//! (`memory-<n>`), and a value of about 100 bytes (twelve word-like tokens).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mnemo::{Config, Memory};

#[path = "../benches/common/mod.rs"]
mod common;
use common::{Words, TOPICS};

const NS: &str = "user-42";

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
    c.max_pending = n as usize + 1;
    let memory = Memory::open(c).unwrap();
    report("pending: empty engine");
    // Receipts are dropped as a tool call that does not await them would;
    // only the last is kept, to learn when everything is indexed.
    let mut last = None;
    for i in 0..n {
        last = Some(memory.save(words.request(NS, i, 0)).unwrap());
    }
    let s = memory.stats();
    assert_eq!(s.pending, n as usize);
    report(&format!("pending: {n} saves pending"));
    println!(
        "{:<58} {} bytes of keys and values pending, {} journal bytes, {} overlay keys",
        "", s.pending_bytes, s.journal_bytes, s.overlay_keys
    );
    memory.flush();
    last.unwrap().wait_indexed().unwrap();
    report(&format!("pending: after those {n} are committed + indexed"));
    println!(
        "{:<58} {} overlay keys left",
        "",
        memory.stats().overlay_keys
    );
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
