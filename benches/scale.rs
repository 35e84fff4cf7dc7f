//! At 1,000,000 memories (issue 14): `Memory::open`, resident memory, `save`,
//! `get` and `search` on a database of 1M memories over 10,000 namespaces
//! (100 memories each: many users, each with hundreds), and its size on disk.
//!
//! `cargo bench --bench scale` (N = 1,000,000); `MNEMO_SCALE_N=100000 cargo
//! bench --bench scale` for a smaller database (namespaces = N / 100). A
//! measurement's name as the filter runs only that measurement (and the
//! criterion functions it names): `cargo bench --bench scale -- search`.
//!
//! **The database.** Built once through the library (saves in chunks of
//! 10,000, each chunk flushed and its last receipt awaited until durable;
//! at the end every save awaited until indexed), with progress lines on
//! stderr, and kept at `target/bench-data/scale_1m.db` (`scale_<N>.db` for
//! another N) beside a marker file (`scale_1m.marker`) naming the corpus
//! version and N; it is rebuilt only when the file or the marker is missing
//! or different. Saves arrive interleaved, as many users save over time:
//! save `n` is memory `j = n / namespaces` of namespace `user-<n %
//! namespaces>`, in category `TOPICS[j % 10]` under the key `memory-<j>`.
//! Values are those of `benches/reads.rs` (twelve word-like tokens from a
//! 2,000-word vocabulary plus one of ten topic words, ~100 bytes). The
//! cached database is only read by this bench: the saves are measured on a
//! scratch copy, removed afterwards.
//!
//! **Queries**, each within one namespace picked at random:
//!
//! - `rare`: one vocabulary word of one of the namespace's memories (in ~1
//!   of its 100 memories; ~0.6% of all memories),
//! - `typical`: three vocabulary words, each from another memory of the
//!   namespace (~3–5 hits; ~1.8% of all memories),
//! - `common`: a topic word: in 10% of the namespace's memories, and so in
//!   10% of ALL memories (100,000 at 1M): a search's cost should follow its
//!   own namespace, not the database.
//!
//! **Measurements** (p50 / p99 / p999 from individually timed calls, then a
//! table against the targets):
//!
//! - `open`: `Memory::open` on the existing database, in fresh processes
//!   (this binary runs itself with `MNEMO_SCALE_WORKER` set; the child
//!   prints one JSON line) and in process (criterion `scale/open`).
//! - `rss`: `VmRSS` (anonymous and file-backed parts) of those fresh
//!   processes after open, and after a workload of 10,000 `get`s and 1,000
//!   searches in random namespaces.
//! - `get`: 100,000 `get`s of committed memories, random namespace and key.
//! - `search`: 1,000 searches per query class, limit 10.
//! - `save`: 200,000 `save` calls into existing namespaces (half updates of
//!   stored keys, half new keys) on a scratch copy; a flush is awaited
//!   (outside the timed region) every 10,000 calls, as in
//!   `benches/save_latency.rs`.
//! - `disk`: bytes per memory of every file whose name starts with the
//!   database's file name (the database, its WAL, and any index file kept
//!   beside it), the crash journal folder reported apart.
//!
//! Under `cargo test --benches` the database is N = 2,000 (20 namespaces) in
//! a temporary folder, one worker process runs, criterion runs each function
//! once, and nothing else is measured.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, SamplingMode, Throughput};
use mnemo::{Config, Memory, Receipt, SaveRequest};

mod common;
use common::{bench_mode, human, selected, timed, Pcts, Words, TOPICS};

/// Memories per namespace.
const PER_NAMESPACE: u64 = 100;
/// N in bench mode, unless `MNEMO_SCALE_N` says otherwise.
const DEFAULT_N: u64 = 1_000_000;
/// N under `cargo test --benches`, unless `MNEMO_SCALE_N` says otherwise.
const TEST_N: u64 = 2_000;
/// Change when the corpus (or how it is built, or the database's layout)
/// changes: a cached database with another version is rebuilt. 2: the
/// index file, namespace-scoped terms.
const CORPUS_VERSION: u32 = 2;
/// Saves per flushed chunk while building, and between awaited flushes
/// while `save` is measured.
const CHUNK: u64 = 10_000;
/// Set in a worker process (the database's path).
const WORKER_ENV: &str = "MNEMO_SCALE_WORKER";
/// The worker's N.
const WORKER_N_ENV: &str = "MNEMO_SCALE_WORKER_N";
/// Worker processes (open time and RSS samples) in bench mode.
const WORKERS: usize = 10;

// Targets (issue 14).
const OPEN_MAX: Duration = Duration::from_secs(1);
const RSS_MAX_MIB: f64 = 128.0;
const SAVE_P50_MAX: Duration = Duration::from_micros(2);
const SAVE_P99_MAX: Duration = Duration::from_micros(10);
const GET_P99_MAX: Duration = Duration::from_micros(50);
const SEARCH_P99_MAX: Duration = Duration::from_millis(10);

// ---------------------------------------------------------------------------
// The corpus.

/// N and the number of namespaces.
#[derive(Clone, Copy)]
struct Shape {
    n: u64,
    namespaces: u64,
}

impl Shape {
    fn from_env(default: u64) -> Shape {
        let n = std::env::var("MNEMO_SCALE_N")
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| v.replace('_', "").parse().expect("MNEMO_SCALE_N: a number"))
            .unwrap_or(default);
        Shape::new(n)
    }

    fn new(n: u64) -> Shape {
        assert!(
            n >= PER_NAMESPACE && n.is_multiple_of(PER_NAMESPACE),
            "N must be a multiple of {PER_NAMESPACE}"
        );
        Shape {
            n,
            namespaces: n / PER_NAMESPACE,
        }
    }

    /// Save `i` of the build: (namespace, memory in it).
    fn nth(&self, i: u64) -> (u64, u64) {
        (i % self.namespaces, i / self.namespaces)
    }
}

fn namespace(ns: u64) -> String {
    format!("user-{ns}")
}

/// The seed of memory `j` of namespace `ns` (distinct for every memory; its
/// topic, `seed % 10`, is `j % 10`).
fn seed(ns: u64, j: u64) -> u64 {
    ns * PER_NAMESPACE + j
}

/// The save of memory `j` of namespace `ns` (`salt` 0: as built).
fn request(words: &Words, ns: u64, j: u64, salt: u64) -> SaveRequest {
    SaveRequest::new(
        namespace(ns),
        TOPICS[(j % 10) as usize],
        format!("memory-{j}"),
        words.value(seed(ns, j), salt),
    )
}

/// The twelve vocabulary words of memory `j` of namespace `ns`, as built
/// (the value is "the user said this about <topic>: w1 … w12").
fn vocabulary_words(words: &Words, ns: u64, j: u64) -> Vec<String> {
    words
        .value(seed(ns, j), 0)
        .split_whitespace()
        .skip(6)
        .map(str::to_owned)
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Rare,
    Typical,
    Common,
}

const CLASSES: [Class; 3] = [Class::Rare, Class::Typical, Class::Common];

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::Rare => "rare",
            Class::Typical => "typical",
            Class::Common => "common",
        }
    }
}

/// Query `i` of `class` in namespace `ns`: words taken from the namespace's
/// own memories, so each query finds something there.
fn query(words: &Words, class: Class, ns: u64, i: u64) -> String {
    let j = i % PER_NAMESPACE;
    let k = ((i / PER_NAMESPACE) % 12) as usize;
    match class {
        Class::Rare => vocabulary_words(words, ns, j)[k].clone(),
        Class::Typical => [0, 37, 71]
            .iter()
            .enumerate()
            .map(|(t, d)| {
                vocabulary_words(words, ns, (j + d) % PER_NAMESPACE)[(k + t) % 12].clone()
            })
            .collect::<Vec<_>>()
            .join(" "),
        Class::Common => TOPICS[(i % 10) as usize].to_owned(),
    }
}

/// `count` (namespace, query) pairs of `class`, random namespaces (seeded).
fn queries(
    words: &Words,
    shape: Shape,
    class: Class,
    count: usize,
    seed: u64,
) -> Vec<(String, String)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..count)
        .map(|_| {
            let ns = rng.u64(..shape.namespaces);
            let i = rng.u64(..PER_NAMESPACE * 12);
            (namespace(ns), query(words, class, ns, i))
        })
        .collect()
}

/// `count` (namespace, category, key) of stored memories, random (seeded).
fn stored_keys(shape: Shape, count: usize, seed: u64) -> Vec<(String, &'static str, String)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..count)
        .map(|_| {
            let ns = rng.u64(..shape.namespaces);
            let j = rng.u64(..PER_NAMESPACE);
            (
                namespace(ns),
                TOPICS[(j % 10) as usize],
                format!("memory-{j}"),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The database.

/// Where the cached databases live: `<target dir>/bench-data`.
fn data_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| manifest.join(t))
        .unwrap_or_else(|| manifest.join("target"));
    target.join("bench-data")
}

fn file_stem(n: u64) -> String {
    if n == 1_000_000 {
        "scale_1m".to_owned()
    } else {
        format!("scale_{n}")
    }
}

/// The files of the database at `db`: every regular file in its folder whose
/// name starts with its file name (the database, `-wal`, `-shm`, an index
/// file beside it), not the journal folder.
fn database_files(db: &Path) -> Vec<(PathBuf, u64)> {
    let name = db.file_name().unwrap().to_string_lossy().into_owned();
    let mut files: Vec<(PathBuf, u64)> = std::fs::read_dir(db.parent().unwrap())
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(&name))
                .filter_map(|e| {
                    let m = e.metadata().ok()?;
                    m.is_file().then(|| (e.path(), m.len()))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Bytes under a folder (recursive); 0 if it does not exist.
fn folder_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => folder_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Removes a database: its files and its journal folder.
fn remove_database(db: &Path) {
    for (f, _) in database_files(db) {
        let _ = std::fs::remove_file(f);
    }
    let _ = std::fs::remove_dir_all(Config::new(db).journal_folder());
}

/// An engine with room for a whole chunk to be pending.
fn config(db: &Path) -> Config {
    let mut c = Config::new(db);
    c.max_pending = 1_000_000;
    c.max_pending_bytes = 1 << 30;
    c
}

/// Builds the database: every save through the library, chunk by chunk.
fn build(db: &Path, shape: Shape) -> Duration {
    let started = Instant::now();
    let words = Words::new();
    let memory = Memory::open(config(db)).expect("open");
    let mut last: Option<Receipt> = None;
    let mut chunk_start = Instant::now();
    for i in 0..shape.n {
        let (ns, j) = shape.nth(i);
        last = Some(memory.save(request(&words, ns, j, 0)).expect("save"));
        if i % CHUNK == CHUNK - 1 {
            memory.flush();
            last.as_ref().unwrap().wait_durable().expect("durable");
            let done = i + 1;
            if bench_mode() && (done.is_multiple_of(5 * CHUNK) || done == shape.n) {
                let s = memory.stats();
                eprintln!(
                    "scale: built {done}/{} memories in {:.1} s (last chunk {:.0} saves/s; index lag {} changes)",
                    shape.n,
                    started.elapsed().as_secs_f64(),
                    CHUNK as f64 / chunk_start.elapsed().as_secs_f64(),
                    s.index_lag_changes
                );
            }
            chunk_start = Instant::now();
        }
    }
    memory.flush();
    if let Some(r) = last {
        r.wait_indexed().expect("indexed");
    }
    let (live, dead) = memory.counts().expect("counts");
    assert_eq!(memory.stats().index_lag_changes, 0, "index behind");
    memory.shutdown_blocking().expect("shutdown");
    assert_eq!((live, dead), (shape.n, 0), "memories stored, dead letters");
    started.elapsed()
}

/// The database for `shape`: the cached one if its marker matches, else
/// built now (and cached). In test mode, a fresh one in `tmp`. Returns the
/// path and the build time (`None`: reused).
fn database(shape: Shape, tmp: &Path) -> (PathBuf, Option<Duration>) {
    if !bench_mode() {
        let path = tmp.join(format!("{}.db", file_stem(shape.n)));
        let took = build(&path, shape);
        return (path, Some(took));
    }
    let dir = data_dir();
    std::fs::create_dir_all(&dir).expect("create target/bench-data");
    let stem = file_stem(shape.n);
    let path = dir.join(format!("{stem}.db"));
    // Not `<db>.marker`: its name must not start with the database's, so
    // that `database_files` finds only the database's own files.
    let marker_path = dir.join(format!("{stem}.marker"));
    let marker = format!(
        "corpus v{CORPUS_VERSION}, {} memories, {} namespaces of {PER_NAMESPACE}, values of benches/common Words\n",
        shape.n, shape.namespaces
    );
    let cached = std::fs::read_to_string(&marker_path).ok();
    if path.is_file() && cached.as_deref() == Some(marker.as_str()) {
        println!("scale: reusing {}", path.display());
        return (path, None);
    }
    let _ = std::fs::remove_file(&marker_path);
    remove_database(&path);
    println!(
        "scale: building {} ({} memories over {} namespaces, once; kept for later runs)",
        path.display(),
        shape.n,
        shape.namespaces
    );
    let took = build(&path, shape);
    std::fs::write(&marker_path, marker).expect("write the marker");
    println!(
        "scale: built {} in {:.1} s",
        path.display(),
        took.as_secs_f64()
    );
    (path, Some(took))
}

/// Copies the database's files (not `-shm`) to `to` (same suffixes), for a
/// measurement that writes.
fn copy_database(db: &Path, to: &Path) {
    let name = db.file_name().unwrap().to_string_lossy().into_owned();
    let to_name = to.file_name().unwrap().to_string_lossy().into_owned();
    for (f, _) in database_files(db) {
        let fname = f.file_name().unwrap().to_string_lossy().into_owned();
        if fname.ends_with("-shm") {
            continue;
        }
        let target = to.with_file_name(format!("{to_name}{}", &fname[name.len()..]));
        std::fs::copy(&f, &target).expect("copy the database");
    }
}

// ---------------------------------------------------------------------------
// Measuring.

/// `VmRSS`, `RssAnon`, `RssFile`, `VmHWM` of this process, in KiB.
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

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The worker: opens the database (timed), reads RSS, runs 10,000 `get`s
/// and 1,000 searches in random namespaces, reads RSS again, and prints one
/// JSON line.
fn worker_main(db: &str) {
    let n: u64 = std::env::var(WORKER_N_ENV)
        .expect("worker: N not set")
        .parse()
        .unwrap();
    let shape = Shape::new(n);
    let words = Words::new();
    // Everything the workload needs is made before the first reading.
    let keys = stored_keys(shape, 10_000, 0x5eed);
    let qs: Vec<Vec<(String, String)>> = CLASSES
        .iter()
        .map(|&c| queries(&words, shape, c, 334, 0xfeed + c as u64))
        .collect();
    let before = status();
    let t = Instant::now();
    let memory = Memory::open(Config::new(db)).expect("open");
    let open = t.elapsed();
    let opened = status();
    let t = Instant::now();
    for (ns, cat, key) in &keys {
        assert!(memory.get(ns, cat, key).expect("get").is_some());
    }
    let gets = t.elapsed();
    let t = Instant::now();
    let mut searches = 0;
    for class in &qs {
        for (ns, q) in class {
            assert!(!memory.search(ns, q, None, 10).expect("search").is_empty());
            searches += 1;
        }
    }
    let search_time = t.elapsed();
    let after = status();
    let t = Instant::now();
    memory.shutdown_blocking().expect("shutdown");
    let shutdown = t.elapsed();
    let json = serde_json::json!({
        "open_us": open.as_micros() as u64,
        "before_kib": before,
        "opened_kib": opened,
        "after_kib": after,
        "gets": keys.len(),
        "gets_us": gets.as_micros() as u64,
        "searches": searches,
        "searches_us": search_time.as_micros() as u64,
        "shutdown_us": shutdown.as_micros() as u64,
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{json}").unwrap();
    out.flush().unwrap();
}

/// One worker's report.
struct WorkerReport {
    open: Duration,
    /// VmRSS, RssAnon, RssFile, VmHWM (KiB) before open, after open, after
    /// the workload.
    before: [u64; 4],
    opened: [u64; 4],
    after: [u64; 4],
    gets_us: u64,
    searches_us: u64,
}

fn run_worker(db: &Path, shape: Shape) -> WorkerReport {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(WORKER_ENV, db)
        .env(WORKER_N_ENV, shape.n.to_string())
        .output()
        .expect("run a worker");
    assert!(
        out.status.success(),
        "worker failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON from the worker: {text}"));
    let v: serde_json::Value = serde_json::from_str(line).expect("the worker's JSON");
    let four = |k: &str| -> [u64; 4] {
        let a = v[k].as_array().expect(k);
        [0, 1, 2, 3].map(|i| a[i].as_u64().unwrap())
    };
    WorkerReport {
        open: Duration::from_micros(v["open_us"].as_u64().unwrap()),
        before: four("before_kib"),
        opened: four("opened_kib"),
        after: four("after_kib"),
        gets_us: v["gets_us"].as_u64().unwrap(),
        searches_us: v["searches_us"].as_u64().unwrap(),
    }
}

/// A row of the summary table.
struct Row {
    what: String,
    result: String,
    target: String,
    met: Option<bool>,
}

fn row(what: impl Into<String>, result: impl Into<String>, target: &str, met: Option<bool>) -> Row {
    Row {
        what: what.into(),
        result: result.into(),
        target: target.to_owned(),
        met,
    }
}

fn scale(c: &mut Criterion) {
    let shape = Shape::from_env(if bench_mode() { DEFAULT_N } else { TEST_N });
    let tmp = tempfile::tempdir().unwrap();
    let (db, built) = database(shape, tmp.path());
    let words = Words::new();
    let mut rows: Vec<Row> = Vec::new();
    let label = format!("{} memories, {} namespaces", shape.n, shape.namespaces);
    if let Some(took) = built {
        rows.push(row(
            "build (through the library, until indexed)",
            format!("{:.1} s", took.as_secs_f64()),
            "—",
            None,
        ));
    }

    // Size on disk.
    if selected("disk") {
        let files = database_files(&db);
        let total: u64 = files.iter().map(|(_, b)| b).sum();
        for (f, b) in &files {
            println!(
                "disk: {} {:.1} MiB ({:.0} bytes per memory)",
                f.file_name().unwrap().to_string_lossy(),
                *b as f64 / 1048576.0,
                *b as f64 / shape.n as f64
            );
        }
        let journal = folder_bytes(&Config::new(&db).journal_folder());
        println!(
            "disk: all database files {:.1} MiB = {:.0} bytes per memory; journal folder {:.1} MiB (separate)",
            total as f64 / 1048576.0,
            total as f64 / shape.n as f64,
            journal as f64 / 1048576.0
        );
        rows.push(row(
            "disk: database files (db, -wal, any index beside it)",
            format!(
                "{:.0} MiB, {:.0} bytes per memory; journal folder {:.1} MiB",
                total as f64 / 1048576.0,
                total as f64 / shape.n as f64,
                journal as f64 / 1048576.0
            ),
            "(report)",
            None,
        ));
    }

    // Open time and RSS in fresh processes. In test mode one worker runs (it
    // checks the protocol).
    if selected("open") || selected("rss") || !bench_mode() {
        let runs = if bench_mode() { WORKERS } else { 1 };
        let reports: Vec<WorkerReport> = (0..runs).map(|_| run_worker(&db, shape)).collect();
        if bench_mode() {
            for (i, r) in reports.iter().enumerate() {
                println!(
                    "worker {i}: open {}; VmRSS before open {:.1} MiB, after open {:.1} MiB (anon {:.1}, file {:.1}), after 10,000 gets + 1,002 searches {:.1} MiB (anon {:.1}, file {:.1}), peak {:.1} MiB; gets {:.0} ms, searches {:.0} ms",
                    human(r.open),
                    mib(r.before[0]),
                    mib(r.opened[0]),
                    mib(r.opened[1]),
                    mib(r.opened[2]),
                    mib(r.after[0]),
                    mib(r.after[1]),
                    mib(r.after[2]),
                    mib(r.after[3]),
                    r.gets_us as f64 / 1e3,
                    r.searches_us as f64 / 1e3,
                );
            }
            let open = Pcts::of(reports.iter().map(|r| r.open).collect());
            println!("open (fresh process, {label}): {}", open.line());
            rows.push(row(
                format!("`Memory::open`, fresh process ({} runs)", reports.len()),
                format!(
                    "p50 {}, p99 {}, max {}",
                    human(open.p50),
                    human(open.p99),
                    human(open.max)
                ),
                "≤ 1 s",
                Some(open.max <= OPEN_MAX),
            ));
            let worst = |f: &dyn Fn(&WorkerReport) -> [u64; 4]| {
                let r = reports.iter().max_by_key(|r| f(r)[0]).unwrap();
                f(r)
            };
            let opened = worst(&|r| r.opened);
            let after = worst(&|r| r.after);
            println!(
                "rss (fresh process, {label}): after open {:.1} MiB (anon {:.1}, file {:.1}); after workload {:.1} MiB (anon {:.1}, file {:.1}), peak {:.1} MiB (worst of {})",
                mib(opened[0]),
                mib(opened[1]),
                mib(opened[2]),
                mib(after[0]),
                mib(after[1]),
                mib(after[2]),
                mib(after[3]),
                reports.len()
            );
            rows.push(row(
                "VmRSS after open (worst run)",
                format!(
                    "{:.1} MiB (anon {:.1}, file {:.1})",
                    mib(opened[0]),
                    mib(opened[1]),
                    mib(opened[2])
                ),
                "≤ 128 MiB",
                Some(mib(opened[0]) <= RSS_MAX_MIB),
            ));
            rows.push(row(
                "VmRSS after 10,000 gets + 1,002 searches (worst run)",
                format!(
                    "{:.1} MiB (anon {:.1}, file {:.1}), peak {:.1}",
                    mib(after[0]),
                    mib(after[1]),
                    mib(after[2]),
                    mib(after[3])
                ),
                "≤ 128 MiB",
                Some(mib(after[0]) <= RSS_MAX_MIB && mib(after[3]) <= RSS_MAX_MIB),
            ));
        }
    }

    // Open in process: a few timed opens, then criterion's.
    if selected("open") {
        let times: Vec<Duration> = (0..20)
            .map(|_| {
                let t = Instant::now();
                let m = Memory::open(Config::new(&db)).expect("open");
                let took = t.elapsed();
                m.shutdown_blocking().expect("shutdown");
                took
            })
            .collect();
        let p = Pcts::of(times);
        println!("open (in process, {label}): {}", p.line());
        rows.push(row(
            "`Memory::open`, in process (20 runs)",
            format!("p50 {}, p99 {}", human(p.p50), human(p.p99)),
            "≤ 1 s",
            Some(p.p99 <= OPEN_MAX),
        ));
    }
    {
        let mut g = c.benchmark_group("scale");
        g.sampling_mode(SamplingMode::Flat);
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(100));
        g.measurement_time(Duration::from_secs(3));
        g.bench_function("open", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    let m = Memory::open(Config::new(&db)).expect("open");
                    total += t.elapsed();
                    m.shutdown_blocking().expect("shutdown");
                }
                total
            })
        });
        g.finish();
    }

    // Reads on the cached database.
    let memory = Memory::open(Config::new(&db)).expect("open");
    let keys = stored_keys(shape, 100_000, 7);
    if selected("get") {
        // A first pass over other keys, so the timed one is not the first
        // touch of the file after open.
        for (ns, cat, key) in stored_keys(shape, 10_000, 8) {
            memory.get(&ns, cat, &key).unwrap().unwrap();
        }
        let p = Pcts::of(timed(keys.len(), |i| {
            let (ns, cat, key) = &keys[i];
            memory.get(ns, cat, key).unwrap().unwrap();
        }));
        println!(
            "get/committed ({label}, random namespace and key): {}",
            p.line()
        );
        rows.push(row(
            "`get` of a committed memory, random namespace and key (100,000)",
            format!(
                "p50 {}, p99 {}, p999 {}",
                human(p.p50),
                human(p.p99),
                human(p.p999)
            ),
            "p99 ≤ 50 µs",
            Some(p.p99 <= GET_P99_MAX),
        ));
    }
    {
        let mut g = c.benchmark_group("scale");
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(2));
        let mut i = 0;
        g.bench_function("get_committed", |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                let (ns, cat, key) = &keys[i];
                memory.get(ns, cat, key).unwrap()
            })
        });
        g.finish();
    }

    for class in CLASSES {
        let qs = queries(&words, shape, class, 1_000, 11 + class as u64);
        let id = format!("search/{}", class.name());
        if selected(&id) {
            // Warm up on other namespaces' queries.
            for (ns, q) in queries(&words, shape, class, 100, 99) {
                memory.search(&ns, &q, None, 10).unwrap();
            }
            let mut hits = 0usize;
            let p = Pcts::of(timed(qs.len(), |i| {
                let (ns, q) = &qs[i];
                let found = memory.search(ns, q, None, 10).unwrap();
                assert!(!found.is_empty(), "no hit for {q:?} in {ns}");
                hits += found.len();
            }));
            println!(
                "{id} ({label}, one namespace of {PER_NAMESPACE}, limit 10; {:.1} hits on average): {}",
                hits as f64 / qs.len() as f64,
                p.line()
            );
            let what = match class {
                Class::Rare => "search, rare word (1 word, ~1% of the namespace)",
                Class::Typical => "search, typical (3 words)",
                Class::Common => "search, common word (10% of the namespace = 10% of all memories)",
            };
            rows.push(row(
                what,
                format!(
                    "p50 {}, p99 {}, p999 {}",
                    human(p.p50),
                    human(p.p99),
                    human(p.p999)
                ),
                "p99 ≤ 10 ms",
                Some(p.p99 <= SEARCH_P99_MAX),
            ));
        }
        let mut g = c.benchmark_group("scale");
        g.sample_size(20);
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(2));
        let mut i = 0;
        g.bench_function(format!("search_{}", class.name()), |b| {
            b.iter(|| {
                i = (i + 1) % qs.len();
                let (ns, q) = &qs[i];
                memory.search(ns, q, None, 10).unwrap()
            })
        });
        g.finish();
    }
    memory.shutdown_blocking().expect("shutdown");

    // Saves, on a scratch copy (the cached database is never written).
    let scratch_dir = if bench_mode() {
        let d = data_dir().join("scale_scratch");
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    } else {
        tmp.path().join("scratch")
    };
    std::fs::create_dir_all(&scratch_dir).unwrap();
    let scratch = scratch_dir.join("scale_scratch.db");
    let (_, copy_took) = common::time(|| copy_database(&db, &scratch));
    if bench_mode() {
        println!(
            "save: copied the database to {} in {}",
            scratch.display(),
            human(copy_took)
        );
    }
    let memory = Memory::open(config(&scratch)).expect("open the copy");
    // Save `i` of a run: even ones update a stored memory, odd ones add a new
    // key; random namespaces.
    let mut rng = fastrand::Rng::with_seed(42);
    let mut next_new = 0u64;
    let mut save_request = |salt: u64| -> SaveRequest {
        let ns = rng.u64(..shape.namespaces);
        if rng.bool() {
            request(&words, ns, rng.u64(..PER_NAMESPACE), salt)
        } else {
            next_new += 1;
            let j = PER_NAMESPACE + next_new;
            SaveRequest::new(
                namespace(ns),
                TOPICS[(j % 10) as usize],
                format!("new-{next_new}"),
                words.value(seed(ns, j), salt),
            )
        }
    };
    if selected("save") {
        let calls = 200_000u64;
        let requests: Vec<SaveRequest> = (0..calls).map(|_| save_request(1)).collect();
        let mut lat = Vec::with_capacity(calls as usize);
        let mut last = None;
        for (i, r) in requests.into_iter().enumerate() {
            let t = Instant::now();
            let receipt = memory.save(r).expect("save");
            lat.push(t.elapsed());
            if i as u64 % CHUNK == CHUNK - 1 {
                memory.flush();
                receipt.wait_durable().expect("durable");
            }
            last = Some(receipt);
        }
        memory.flush();
        last.unwrap().wait_durable().expect("durable");
        let over_1ms = lat.iter().filter(|d| d.as_micros() >= 1_000).count();
        let p = Pcts::of(lat);
        println!(
            "save ({label} stored, into existing namespaces, half updates, half new keys): {}, {over_1ms} calls >= 1 ms",
            p.line()
        );
        rows.push(row(
            "`save` call, 200,000 calls (half updates, half new keys)",
            format!(
                "p50 {}, p99 {}, p999 {}",
                human(p.p50),
                human(p.p99),
                human(p.p999)
            ),
            "p50 ≤ 2 µs, p99 ≤ 10 µs",
            Some(p.p50 <= SAVE_P50_MAX && p.p99 <= SAVE_P99_MAX),
        ));
    }
    {
        let mut g = c.benchmark_group("scale");
        g.throughput(Throughput::Elements(1));
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(200));
        g.measurement_time(Duration::from_millis(500));
        let mut salt = 1;
        g.bench_function("save_call", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let chunk = left.min(CHUNK);
                    salt += 1;
                    let requests: Vec<SaveRequest> =
                        (0..chunk).map(|_| save_request(salt)).collect();
                    let mut last = None;
                    let start = Instant::now();
                    for r in requests {
                        last = Some(memory.save(r).expect("save"));
                    }
                    total += start.elapsed();
                    memory.flush();
                    if let Some(r) = last {
                        r.wait_durable().expect("durable");
                    }
                    left -= chunk;
                }
                total
            })
        });
        g.finish();
    }
    memory.shutdown_blocking().expect("shutdown");
    remove_database(&scratch);
    let _ = std::fs::remove_dir_all(&scratch_dir);

    if bench_mode() && !rows.is_empty() {
        println!();
        println!(
            "scale: {label}; {} cores; load average {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
        println!();
        println!("| what | result | target | met? |");
        println!("|---|---|---|---|");
        for r in &rows {
            let met = match r.met {
                None => "—",
                Some(true) => "yes",
                Some(false) => "**no**",
            };
            println!("| {} | {} | {} | {met} |", r.what, r.result, r.target);
        }
        println!();
    }
}

criterion_group!(benches, scale);

fn main() {
    if let Ok(db) = std::env::var(WORKER_ENV) {
        worker_main(&db);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
