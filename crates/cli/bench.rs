//! `mnemo bench`: the two figures that matter to an agent, measured on this
//! machine in one run, on scratch databases.
//!
//! 1. How long `save` blocks its caller (journal on and off): p50/p99/p999
//!    of individually timed calls.
//! 2. A burst of N saves, from the first call until every save is durable:
//!    through the batcher (N `save` calls, `flush`, every receipt awaited;
//!    the median of several rounds) against the usual tool, each save
//!    awaiting its own transaction and indexing step (`synchronous=FULL` in
//!    both), timed once over all N saves.
//!
//! 3. The same burst's floor: the engine's own batch writer applying the N
//!    saves in one transaction with no actors, journal or index
//!    (`floor_ratio_durable` = batcher throughput over it).
//! 4. Search p99 over what the save-call runs left (up to 50,000 memories
//!    in one namespace; a rare word, a word in one memory in ten, both),
//!    and the engine's index lag p99 after the bursts.
//!
//! `--json` gives every figure, with the headline ones as top-level keys:
//! `save_p50_us`, `save_p99_us`, `burst_ratio`, `floor_ratio_durable`,
//! `search_p99_ms`, `index_lag_p99_ms`.
//!
//! The criterion benchmarks under `benches/` measure the same things with
//! more care; this is the quick look a user runs on their own disk.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mnemo::baseline::{raw_batch, AwaitedStore};
use mnemo::{Config, Memory, SaveRequest, Synchronous};
use serde::Serialize;

use crate::{open_with, print_json};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// A short run: N = 100 and 5,000 timed calls (a few seconds).
    #[arg(long)]
    quick: bool,
    /// Saves in the burst [default: 1000; 100 with --quick]. The awaited
    /// side takes a few milliseconds per save: 10,000 is about 20 s on an
    /// SSD.
    #[arg(long)]
    n: Option<u64>,
    /// Individually timed `save` calls per journal setting [default: 100000;
    /// 5000 with --quick].
    #[arg(long)]
    calls: Option<u64>,
    /// Where the scratch databases go [default: a new folder in the system
    /// temp dir]. Use a folder on the disk your agent's database lives on.
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Percentiles {
    calls: u64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
}

#[derive(Debug, Serialize)]
struct Side {
    seconds: f64,
    saves_per_sec: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    /// `save` p50 with the journal on, µs.
    save_p50_us: f64,
    /// `save` p99 with the journal on, µs.
    save_p99_us: f64,
    /// Batcher burst throughput over awaited-each throughput.
    burst_ratio: f64,
    /// Batcher burst throughput over the raw one-transaction batch's.
    floor_ratio_durable: f64,
    /// Search p99, ms, over `search_memories` memories.
    search_p99_ms: f64,
    /// After each burst, from every save durable to every save indexed:
    /// the slowest of the rounds (their p99), ms.
    index_lag_p99_ms: f64,
    cpus: usize,
    dir: PathBuf,
    save_call_journal_on: Percentiles,
    save_call_journal_off: Percentiles,
    burst_n: u64,
    /// Rounds of the batcher burst; the median is reported.
    batcher_rounds: u32,
    batcher: Side,
    awaited_each: Side,
    /// The raw one-transaction batch (median of the rounds).
    floor: Side,
    /// Batcher throughput over awaited-each throughput.
    ratio: f64,
    /// Memories in the searched namespace, and searches timed.
    search_memories: u64,
    searches: u64,
}

fn side(n: u64, took: Duration) -> Side {
    let seconds = took.as_secs_f64();
    Side {
        seconds,
        saves_per_sec: n as f64 / seconds.max(1e-9),
    }
}

fn engine(dir: &std::path::Path, name: &str, journal: bool) -> Result<Memory> {
    let mut c = Config::new(dir.join(name));
    c.journal = journal;
    open_with(c)
}

fn request(i: u64, round: u64) -> SaveRequest {
    let key = i % 50_000;
    // One memory in ten mentions coffee: the "typical" search's word.
    let topic = if key.is_multiple_of(10) {
        " over coffee"
    } else {
        ""
    };
    SaveRequest::new(
        "bench",
        "facts",
        format!("key-{key}"),
        format!("the user mentioned fact number {i} in round {round}{topic}"),
    )
}

/// Times `calls` individual saves; the flush is waited for every 10,000
/// calls (at most 10,000 pending, well under the bound), outside the timed
/// region.
fn save_call(memory: &Memory, calls: u64, bar: &ProgressBar) -> Result<Percentiles> {
    let mut lat = Vec::with_capacity(calls as usize);
    let mut done = 0;
    while done < calls {
        let chunk = (calls - done).min(10_000);
        let requests: Vec<SaveRequest> = (done..done + chunk).map(|i| request(i, 0)).collect();
        let mut last = None;
        for r in requests {
            let t = Instant::now();
            let receipt = memory.save(r)?;
            lat.push(t.elapsed());
            last = Some(receipt);
        }
        memory.flush();
        if let Some(r) = last {
            r.wait_durable()?;
        }
        done += chunk;
        bar.inc(chunk);
    }
    lat.sort();
    let at = |q: f64| {
        lat.get(((lat.len().saturating_sub(1)) as f64 * q) as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    Ok(Percentiles {
        calls,
        p50_us: at(0.5),
        p99_us: at(0.99),
        p999_us: at(0.999),
    })
}

/// p99 of `searches` searches, in ms: a rotation of a rare word (a number
/// in one memory), a word in one memory in ten (`coffee`), and both.
fn search_p99(memory: &Memory, searches: u64) -> Result<f64> {
    let mut lat = Vec::with_capacity(searches as usize);
    for i in 0..searches {
        let rare = i * 37 % 50_000;
        let q = match i % 3 {
            0 => rare.to_string(),
            1 => "coffee".to_owned(),
            _ => format!("coffee {rare}"),
        };
        let t = Instant::now();
        memory.search("bench", &q, None, 10)?;
        lat.push(t.elapsed());
    }
    lat.sort();
    let at = ((lat.len().saturating_sub(1)) as f64 * 0.99) as usize;
    Ok(lat.get(at).map_or(0.0, |d| d.as_secs_f64() * 1e3))
}

/// One burst through the batcher: N saves, flush, every receipt durable.
/// Returns that time, and the index lag after it: from every save being
/// durable until every one is indexed.
fn batcher_burst(memory: &Memory, n: u64, round: u64) -> Result<(Duration, Duration)> {
    let requests: Vec<SaveRequest> = (0..n).map(|i| request(i, round)).collect();
    let start = Instant::now();
    let receipts = requests
        .into_iter()
        .map(|r| memory.save(r))
        .collect::<mnemo::Result<Vec<_>>>()?;
    memory.flush();
    for r in &receipts {
        r.wait_durable()?;
    }
    let took = start.elapsed();
    let durable = Instant::now();
    for r in &receipts {
        r.wait_indexed()?;
    }
    Ok((took, durable.elapsed()))
}

pub(crate) fn run(args: &Args, json: bool) -> Result<()> {
    let n = args.n.unwrap_or(if args.quick { 100 } else { 1_000 });
    let calls = args
        .calls
        .unwrap_or(if args.quick { 5_000 } else { 100_000 });
    anyhow::ensure!(n >= 1, "--n must be at least 1");
    anyhow::ensure!(calls >= 1, "--calls must be at least 1");
    // The batcher's bound: a burst larger than max_pending would answer
    // Overloaded, so the burst is capped there.
    let max_n = Config::default().max_pending as u64;
    anyhow::ensure!(
        n <= max_n,
        "--n must be at most {max_n} (the engine's pending bound)"
    );
    let rounds: u32 = if args.quick { 3 } else { 5 };
    let scratch = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            tempfile::tempdir_in(d)
        }
        None => tempfile::tempdir(),
    }
    .context("creating a scratch folder")?;
    let dir = scratch.path();

    let total = 2 * calls + 2 * u64::from(rounds) * n + n;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg:<36} [{bar:30}] {percent:>3}% {elapsed}")
            // A fixed template: it parses.
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );

    bar.set_message("save call, journal on");
    let memory = engine(dir, "on.db", true)?;
    let on = save_call(&memory, calls, &bar)?;
    bar.set_message(format!("burst of {n} through the batcher"));
    // The bursts start with the index at rest: everything saved is indexed.
    let last = memory.save(request(0, 0))?;
    memory.flush();
    last.wait_indexed()?;
    let mut times = Vec::with_capacity(rounds as usize);
    let mut lags = Vec::with_capacity(rounds as usize);
    for round in 1..=u64::from(rounds) {
        let (took, lag) = batcher_burst(&memory, n, round)?;
        times.push(took);
        lags.push(lag);
        bar.inc(n);
    }
    // Few rounds: their p99 is the slowest.
    let index_lag_p99_ms = lags.iter().max().map_or(0.0, |d| d.as_secs_f64() * 1e3);
    bar.set_message("search");
    let searches: u64 = if args.quick { 100 } else { 500 };
    let search_memories = calls.min(50_000);
    let search_p99_ms = search_p99(&memory, searches)?;
    memory.shutdown_blocking()?;
    times.sort();
    let batcher_time = times[times.len() / 2];

    bar.set_message(format!("burst of {n}, the raw batch"));
    let mut floors = Vec::with_capacity(rounds as usize);
    for round in 1..=u64::from(rounds) {
        let requests = (0..n).map(|i| request(i, round)).collect();
        floors.push(raw_batch(&dir.join("floor.db"), requests)?);
        bar.inc(n);
    }
    floors.sort();
    let floor_time = floors[floors.len() / 2];

    bar.set_message("save call, journal off");
    let memory = engine(dir, "off.db", false)?;
    let off = save_call(&memory, calls, &bar)?;
    memory.shutdown_blocking()?;

    bar.set_message(format!("burst of {n}, each save awaited"));
    let mut store = AwaitedStore::open(&dir.join("awaited.db"), Synchronous::Full)?;
    let start = Instant::now();
    for i in 0..n {
        store.save(request(i, 1))?;
        if i % 10 == 9 {
            bar.inc(10);
        }
    }
    let awaited_time = start.elapsed();
    drop(store);
    bar.finish_and_clear();

    let batcher = side(n, batcher_time);
    let awaited_each = side(n, awaited_time);
    let floor = side(n, floor_time);
    let report = Report {
        save_p50_us: on.p50_us,
        save_p99_us: on.p99_us,
        burst_ratio: batcher.saves_per_sec / awaited_each.saves_per_sec.max(1e-9),
        floor_ratio_durable: batcher.saves_per_sec / floor.saves_per_sec.max(1e-9),
        search_p99_ms,
        index_lag_p99_ms,
        floor,
        search_memories,
        searches,
        cpus: std::thread::available_parallelism().map_or(1, |c| c.get()),
        dir: dir.to_owned(),
        save_call_journal_on: on,
        save_call_journal_off: off,
        burst_n: n,
        batcher_rounds: rounds,
        ratio: batcher.saves_per_sec / awaited_each.saves_per_sec.max(1e-9),
        batcher,
        awaited_each,
    };
    if json {
        return print_json(&report);
    }
    print_table(&report);
    Ok(())
}

fn us(v: f64) -> String {
    format!("{v:.2} µs")
}

fn secs(v: f64) -> String {
    if v < 1.0 {
        format!("{:.1} ms", v * 1e3)
    } else {
        format!("{v:.2} s")
    }
}

fn print_table(r: &Report) {
    println!(
        "mnemo bench — {} CPUs, scratch databases in {}",
        r.cpus,
        r.dir.display()
    );
    println!();
    println!(
        "save call: the time the caller is blocked ({} calls each)",
        r.save_call_journal_on.calls
    );
    println!("  {:<24} {:>10} {:>10} {:>10}", "", "p50", "p99", "p999");
    for (label, p) in [
        ("journal on (default)", &r.save_call_journal_on),
        ("journal off", &r.save_call_journal_off),
    ] {
        println!(
            "  {label:<24} {:>10} {:>10} {:>10}",
            us(p.p50_us),
            us(p.p99_us),
            us(p.p999_us)
        );
    }
    println!();
    println!(
        "burst of {} saves, first save until every one is durable (synchronous=FULL)",
        r.burst_n
    );
    println!("  {:<36} {:>10} {:>14}", "", "time", "throughput");
    println!(
        "  {:<36} {:>10} {:>10.0} /s",
        format!("batcher (median of {})", r.batcher_rounds),
        secs(r.batcher.seconds),
        r.batcher.saves_per_sec
    );
    println!(
        "  {:<36} {:>10} {:>10.0} /s",
        "each save awaited (the usual tool)",
        secs(r.awaited_each.seconds),
        r.awaited_each.saves_per_sec
    );
    println!(
        "  {:<36} {:>10} {:>10.0} /s",
        "the raw batch (one transaction, no engine)",
        secs(r.floor.seconds),
        r.floor.saves_per_sec
    );
    println!("  {:<36} {:>10.0}×", "batcher / each save awaited", r.ratio);
    println!(
        "  {:<36} {:>10.2}×",
        "batcher / the raw batch", r.floor_ratio_durable
    );
    println!();
    println!(
        "search p99 over {} memories ({} searches): {:.2} ms",
        r.search_memories, r.searches, r.search_p99_ms
    );
    println!(
        "index lag after a burst (durable to indexed), p99 of the rounds: {:.1} ms",
        r.index_lag_p99_ms
    );
}
