//! Which write wins, across processes, kills and late replays, against a
//! model of the last accepted write per key.
//!
//! The rule under test (see `crates/mnemo/src/clock.rs` and `replay.rs`):
//! every save and forget is stamped with the time it was accepted, a row
//! only takes an operation at least as new as the one it holds, and a
//! forget leaves a tombstone. So however late, and in whatever order, the
//! journals of killed processes are replayed, each key ends up as the
//! **last accepted** operation on it across all processes, in real time,
//! and nothing acknowledged is lost.
//!
//! Worker processes (this test binary re-run as `replay_worker`) save and
//! forget a few shared keys on command; the parent waits for each
//! acknowledgement before the next command, so the order of the
//! acknowledgements is the real-time order of acceptance, which is the
//! model's order. Between operations the parent flushes workers, kills them
//! with SIGKILL (idle, in the middle of a save, of a flush, of a shutdown,
//! or of their open and its replay), starts new ones (whose open replays the
//! dead ones' journals), stops them cleanly, reads through them, and opens
//! the database itself to check every key against the model.
//!
//! Mid-scenario a check cannot know whether a live worker's unflushed write
//! committed yet, nor whether a write killed before its acknowledgement was
//! accepted: a key may then read as the last write surely committed or as
//! any of those later ones, never as anything older (see [`allowed`]). At
//! the end every worker is dead and replayed, so the check is exact but for
//! writes killed before their acknowledgement.
//!
//! `MNEMO_REPLAY_SEED=n` runs one scenario and prints its steps;
//! `MNEMO_REPLAY_SEEDS=n` runs `n` (default 48).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mnemo::{Config, Memory, Receipt, SaveRequest};

const NS: &str = "replay";
const CATEGORY: &str = "facts";
const KEYS: usize = 6;
/// How long the parent waits for any line from a worker. Generous: a slow
/// machine must not fail the test; a hung worker must.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
const WORKER: &str = "replay_worker";

fn key(k: usize) -> String {
    format!("k{k}")
}

/// The engine's config for this test, in the parent and in the workers:
/// limits small enough for 1 KiB journal segments (8 MiB by default), so
/// that a worker's few dozen writes fill several and its journal rotates
/// (and may be killed while it does).
fn engine_config(db: &Path) -> Config {
    let mut c = Config::new(db);
    c.max_value_bytes = 256;
    c.max_metadata_bytes = 64;
    c.max_key_part_bytes = 32;
    c.journal_segment_bytes = 1024;
    c
}

/// A worker: opens the engine on `MNEMO_CHILD_DB` (quiet window
/// `MNEMO_CHILD_WINDOW_MS`, 0 = an hour, so nothing commits unless told),
/// prints `READY <records replayed at open>`, then answers one line per
/// command read from stdin:
///
/// - `save <key> <value>` → `ACK <seq>` once `save` returned Ok;
/// - `forget <key>` → `ACK <seq>`;
/// - `flush` → `FLUSHED` once every save so far is durable;
/// - `sync` → `FLUSHED` once every save so far is durable and indexed;
/// - `get <key>` → `VALUE <value>` or `NONE`;
/// - anything failing → `ERR <message>`.
///
/// On end of input it shuts the engine down and exits.
#[test]
#[ignore = "child process of the replay_model tests"]
fn replay_worker() {
    let Some(db) = common::child_db() else {
        return;
    };
    let window_ms: u64 = std::env::var("MNEMO_CHILD_WINDOW_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // `MNEMO_CHILD_NO_INDEX`: commit but never index, as a lagging indexer.
    if std::env::var_os("MNEMO_CHILD_NO_INDEX").is_some() {
        fail::cfg("mnemo::before_index", "return").unwrap();
    }
    let mut c = engine_config(&db);
    if window_ms == 0 {
        c.quiet_window = Duration::from_secs(3_600);
        c.max_wait = Duration::from_secs(3_600);
    } else {
        c.quiet_window = Duration::from_millis(window_ms);
        c.max_wait = Duration::from_millis(3 * window_ms);
    }
    let out = std::io::stdout();
    let mut out = out.lock();
    let memory = match Memory::open(c) {
        Ok(m) => m,
        Err(e) => {
            writeln!(out, "\nERR open: {e}").unwrap();
            return;
        }
    };
    // A newline first: libtest has printed "test <name> ... " without one.
    writeln!(out, "\nREADY {}", memory.stats().replayed).unwrap();
    out.flush().unwrap();
    // Receipts not yet waited for durable, and for indexed.
    let (mut unflushed, mut unindexed) = (Vec::new(), Vec::new());
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let words: Vec<&str> = line.split(' ').collect();
        let accepted = match words.as_slice() {
            ["save", k, v] => memory.save(SaveRequest::new(NS, CATEGORY, *k, *v)),
            ["forget", k] => memory.forget(NS, CATEGORY, k),
            ["flush"] => {
                memory.flush();
                let done = unflushed
                    .drain(..)
                    .try_for_each(|r: Receipt| r.wait_durable().map(drop));
                reply(&mut out, done.map(|()| "FLUSHED".to_owned()));
                continue;
            }
            ["sync"] => {
                memory.flush();
                unflushed.clear();
                let done = unindexed
                    .drain(..)
                    .try_for_each(|r: Receipt| r.wait_indexed().map(drop));
                reply(&mut out, done.map(|()| "FLUSHED".to_owned()));
                continue;
            }
            ["get", k] => {
                let got = memory.get(NS, CATEGORY, k).map(|r| match r {
                    Some(r) => format!("VALUE {}", r.value),
                    None => "NONE".to_owned(),
                });
                reply(&mut out, got);
                continue;
            }
            _ => panic!("worker: unknown command {line:?}"),
        };
        let ack = accepted.map(|receipt| {
            let ack = format!("ACK {}", receipt.seq());
            unflushed.push(receipt.clone());
            unindexed.push(receipt);
            ack
        });
        reply(&mut out, ack);
    }
    memory.shutdown_blocking().unwrap();
}

/// Prints a worker's answer: the line, or `ERR <why>`.
fn reply(out: &mut impl Write, answer: mnemo::Result<String>) {
    match answer {
        Ok(line) => writeln!(out, "{line}"),
        Err(e) => writeln!(out, "ERR {e}"),
    }
    .and_then(|()| out.flush())
    .unwrap();
}

/// A running worker process. Dropping it kills the process (so a failing
/// test leaves no children behind).
struct Worker {
    id: usize,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    reader: Option<JoinHandle<()>>,
    /// Records its open replayed.
    replayed: u64,
    /// Every operation of this worker with an index below this in the
    /// scenario's log is durable (it answered `FLUSHED` after them).
    durable_upto: usize,
}

impl Worker {
    /// Starts a worker; does not wait for it to be ready.
    fn spawn(id: usize, db: &Path, window_ms: u64) -> Worker {
        Worker::spawn_with(id, db, window_ms, &[])
    }

    /// [`spawn`](Self::spawn) with more environment variables.
    fn spawn_with(id: usize, db: &Path, window_ms: u64, env: &[(&str, &str)]) -> Worker {
        let mut child = common::child_command(WORKER, db)
            .env("MNEMO_CHILD_WINDOW_MS", window_ms.to_string())
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stderr(Stdio::inherit()) // a worker's panic shows up in the test output
            .spawn()
            .expect("spawn worker process");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        // A thread per worker so the parent can wait for a line with a timeout.
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Worker {
            id,
            stdin: child.stdin.take(),
            child,
            lines,
            reader: Some(reader),
            replayed: 0,
            durable_upto: 0,
        }
    }

    /// The next protocol line (`READY`, `ACK`, `FLUSHED`, `VALUE`, `NONE`,
    /// `ERR`), skipping libtest's own output. `Err` says why there is none.
    fn reply(&self) -> Result<String, String> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l)
                    if ["READY", "ACK", "FLUSHED", "VALUE", "NONE", "ERR"]
                        .iter()
                        .any(|p| l.starts_with(p)) =>
                {
                    return Ok(l)
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "worker w{} did not answer within {REPLY_TIMEOUT:?}",
                        self.id
                    ))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("worker w{} exited without answering", self.id))
                }
            }
        }
    }

    fn send(&mut self, command: &str) -> Result<(), String> {
        let stdin = self
            .stdin
            .as_mut()
            .expect("stdin open while the worker runs");
        writeln!(stdin, "{command}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("writing to worker w{}: {e}", self.id))
    }

    /// Sends a command and waits for its answer.
    fn ask(&mut self, command: &str) -> Result<String, String> {
        self.send(command)?;
        self.reply()
    }

    /// SIGKILL, reaped (so its journal locks are released); returns the
    /// protocol lines it printed and the parent had not read.
    fn kill(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.lines.try_iter().collect()
    }

    /// Closes its input, so it shuts its engine down and exits; waits for
    /// that.
    fn stop(mut self) -> Result<(), String> {
        drop(self.stdin.take());
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(format!("worker w{} stopped with {status}", self.id))
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) => {
                    return Err(format!(
                        "worker w{} did not stop within {REPLY_TIMEOUT:?}",
                        self.id
                    ))
                }
                Err(e) => return Err(format!("waiting for worker w{}: {e}", self.id)),
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One save (`value: Some`) or forget, in the order it was accepted.
#[derive(Debug)]
struct Op {
    worker: usize,
    key: usize,
    value: Option<String>,
    /// `false`: its worker was killed before answering; it may or may not
    /// have been accepted (and journaled), so either outcome is right.
    acked: bool,
}

/// What key `key` may read as: the outcome of the last operation on it
/// that is `certain`ly committed (`None` if there is none: never saved),
/// or of any later one that may be. An operation before the last certain
/// one can never show: it was accepted earlier, so its stamp is older.
fn allowed(ops: &[Op], key: usize, certain: impl Fn(usize, &Op) -> bool) -> Vec<Option<String>> {
    let on_key: Vec<(usize, &Op)> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| o.key == key)
        .collect();
    let last_certain = on_key.iter().rposition(|&(i, o)| certain(i, o));
    let base = last_certain.and_then(|p| on_key[p].1.value.clone());
    let after = last_certain.map_or(0, |p| p + 1);
    let mut allowed = vec![base];
    allowed.extend(on_key[after..].iter().map(|(_, o)| o.value.clone()));
    allowed
}

/// One seeded scenario: its live workers, every operation in acceptance
/// order, and a log of the steps to print on failure.
struct Scenario {
    seed: u64,
    rng: fastrand::Rng,
    db: common::TempDb,
    /// Live workers; ids are never reused.
    live: Vec<Worker>,
    next_id: usize,
    ops: Vec<Op>,
    /// Killed workers whose journals no open has replayed since (an open
    /// killed midway may have replayed part of them).
    unreplayed: BTreeSet<usize>,
    log: Vec<String>,
    // Counters for the summary.
    kills: usize,
    checks: usize,
    replayed: u64,
}

impl Scenario {
    fn new(seed: u64) -> Scenario {
        Scenario {
            seed,
            rng: fastrand::Rng::with_seed(seed),
            db: common::temp_db(),
            live: Vec::new(),
            next_id: 0,
            ops: Vec::new(),
            unreplayed: BTreeSet::new(),
            log: Vec::new(),
            kills: 0,
            checks: 0,
            replayed: 0,
        }
    }

    /// Fails the test with the seed and every step so far. The live
    /// workers are killed as the scenario unwinds.
    fn fail(&self, msg: impl std::fmt::Display) -> ! {
        panic!(
            "seed {}: {msg}\nrerun with MNEMO_REPLAY_SEED={}\nsteps:\n  {}",
            self.seed,
            self.seed,
            self.log.join("\n  ")
        )
    }

    fn note(&mut self, line: String) {
        self.log.push(format!("{:3}: {line}", self.log.len()));
    }

    /// Starts a worker and waits until it is ready. A short quiet window
    /// (commits on its own, at moments the parent does not know) or an
    /// hour (commits only on `flush`).
    fn start_worker(&mut self) {
        let window_ms = if self.rng.bool() {
            0
        } else {
            self.rng.u64(1..30)
        };
        let id = self.next_id;
        self.next_id += 1;
        let mut w = Worker::spawn(id, &self.db.path, window_ms);
        let ready = w.reply().unwrap_or_else(|e| self.fail(e));
        let Some(n) = ready.strip_prefix("READY ") else {
            self.fail(format!("w{id} did not start: {ready}"))
        };
        w.replayed = n
            .parse()
            .unwrap_or_else(|_| self.fail(format!("bad line {ready:?}")));
        w.durable_upto = self.ops.len();
        self.replayed += w.replayed;
        self.unreplayed.clear();
        let window = match window_ms {
            0 => "1 h".to_owned(),
            ms => format!("{ms} ms"),
        };
        self.note(format!("start w{id} (quiet window {window}): replayed {n}"));
        self.live.push(w);
    }

    /// A worker killed at a random moment of its open (perhaps in the middle
    /// of replaying another's journal). It wrote nothing of its own.
    fn start_and_kill_while_opening(&mut self) {
        let id = self.next_id;
        self.next_id += 1;
        let w = Worker::spawn(id, &self.db.path, 0);
        let after_us = self.rng.u64(0..10_000);
        std::thread::sleep(Duration::from_micros(after_us));
        let lines = w.kill();
        self.kills += 1;
        let ready = lines.iter().any(|l| l.starts_with("READY"));
        if ready {
            self.unreplayed.clear();
        }
        self.note(format!(
            "start w{id} and kill it after {after_us} µs (it was {}ready)",
            if ready { "" } else { "not " }
        ));
    }

    fn pick_worker(&mut self) -> usize {
        self.rng.usize(0..self.live.len())
    }

    fn value(&mut self, worker: usize) -> String {
        // Now and then a value some other operation also wrote: a save that
        // changes nothing must still count as the newest.
        if self.rng.u8(0..4) == 0 {
            format!("same{}", self.rng.u8(0..2))
        } else {
            // Padded now and then, so that segments fill at varying points.
            let pad = "x".repeat(if self.rng.bool() {
                0
            } else {
                self.rng.usize(1..200)
            });
            format!("w{worker}-op{}{pad}", self.ops.len())
        }
    }

    /// A save or forget through a random live worker, waiting for its
    /// acknowledgement.
    fn write(&mut self, forget: bool) {
        let w = self.pick_worker();
        let id = self.live[w].id;
        let k = self.rng.usize(0..KEYS);
        let value = (!forget).then(|| self.value(id));
        let command = match &value {
            Some(v) => format!("save {} {v}", key(k)),
            None => format!("forget {}", key(k)),
        };
        let reply = self.live[w].ask(&command).unwrap_or_else(|e| self.fail(e));
        if !reply.starts_with("ACK ") {
            self.fail(format!("w{id}: {command}: {reply}"));
        }
        self.note(format!("w{id}: {command} -> {reply}"));
        self.ops.push(Op {
            worker: id,
            key: k,
            value,
            acked: true,
        });
    }

    /// `command`: `flush` (durable) or `sync` (durable and indexed).
    fn flush(&mut self, w: usize, command: &str) {
        let id = self.live[w].id;
        let reply = self.live[w].ask(command).unwrap_or_else(|e| self.fail(e));
        if reply != "FLUSHED" {
            self.fail(format!("w{id}: {command}: {reply}"));
        }
        self.live[w].durable_upto = self.ops.len();
        self.note(format!("w{id}: {command} -> FLUSHED"));
    }

    /// SIGKILL a worker: idle, right after sending it a save or forget
    /// (which it may or may not have accepted), or right after asking it
    /// to flush.
    fn kill(&mut self) {
        let w = self.pick_worker();
        let id = self.live[w].id;
        // What it is doing, what it may have accepted, and how long after
        // the command to kill it at most: a save or a flush answers in
        // about 100 µs, a shutdown takes milliseconds.
        let (how, in_flight, within_us) = match self.rng.u8(0..5) {
            0 | 1 => ("idle".to_owned(), None, 0),
            2 => {
                let k = self.rng.usize(0..KEYS);
                let value = self.rng.bool().then(|| self.value(id));
                let command = match &value {
                    Some(v) => format!("save {} {v}", key(k)),
                    None => format!("forget {}", key(k)),
                };
                self.live[w].send(&command).unwrap_or_else(|e| self.fail(e));
                (
                    format!("in the middle of `{command}`"),
                    Some((k, value)),
                    300,
                )
            }
            3 => {
                self.live[w].send("flush").unwrap_or_else(|e| self.fail(e));
                ("in the middle of a flush".to_owned(), None, 300)
            }
            _ => {
                drop(self.live[w].stdin.take()); // it shuts down
                ("in the middle of stopping".to_owned(), None, 20_000)
            }
        };
        if within_us > 0 && self.rng.bool() {
            // Half the time at once (most often before the worker has
            // answered), else a little later.
            std::thread::sleep(Duration::from_micros(self.rng.u64(0..within_us)));
        }
        let worker = self.live.swap_remove(w);
        let lines = worker.kill();
        self.kills += 1;
        self.unreplayed.insert(id);
        if let Some(e) = lines.iter().find(|l| l.starts_with("ERR")) {
            self.fail(format!("w{id}: {e}"));
        }
        let acked = lines.iter().any(|l| l.starts_with("ACK"));
        self.note(format!(
            "kill w{id} {how}{}",
            match (&in_flight, acked) {
                (None, _) => "",
                (Some(_), true) => " (it acknowledged)",
                (Some(_), false) => " (no acknowledgement)",
            }
        ));
        if let Some((k, value)) = in_flight {
            self.ops.push(Op {
                worker: id,
                key: k,
                value,
                acked,
            });
        }
    }

    /// Closes a worker's input: it shuts down cleanly (committing all).
    fn stop(&mut self) {
        let w = self.pick_worker();
        let worker = self.live.swap_remove(w);
        let id = worker.id;
        worker.stop().unwrap_or_else(|e| self.fail(e));
        self.note(format!("stop w{id} cleanly"));
    }

    /// Whether op `i` is surely committed now: acknowledged, and its
    /// worker flushed after it, or is gone and its journal was replayed (or
    /// it stopped cleanly). A live worker's other operations may or may
    /// not have committed yet, and so may a killed worker's before the next
    /// open replays its journal.
    fn certain(&self, i: usize, op: &Op) -> bool {
        op.acked
            && match self.live.iter().find(|w| w.id == op.worker) {
                Some(w) => i < w.durable_upto,
                None => !self.unreplayed.contains(&op.worker),
            }
    }

    /// Whether `got` is what key `k` may read as now, else fails.
    fn expect_allowed(&self, what: &str, k: usize, got: Option<String>) {
        let allowed = allowed(&self.ops, k, |i, op| self.certain(i, op));
        if !allowed.contains(&got) {
            self.fail(format!(
                "{what} {}: {got:?}, want one of {allowed:?}",
                key(k)
            ));
        }
    }

    /// Reads every key through a live worker, right after it committed
    /// and indexed its writes (so it holds no pending write of its own that
    /// would shadow the store): what it sees must obey the same rule as a
    /// fresh open.
    /// Committed (not necessarily indexed) is enough: an engine's own
    /// committed write never shadows a newer one of another process
    /// (`a_committed_write_does_not_shadow_a_newer_one_of_another_process`).
    fn read_through_worker(&mut self) {
        let w = self.pick_worker();
        self.flush(w, "flush");
        let id = self.live[w].id;
        let mut seen = Vec::new();
        for k in 0..KEYS {
            let reply = self.live[w]
                .ask(&format!("get {}", key(k)))
                .unwrap_or_else(|e| self.fail(e));
            let got = match reply.strip_prefix("VALUE ") {
                Some(v) => Some(v.to_owned()),
                None if reply == "NONE" => None,
                None => self.fail(format!("w{id}: get {}: {reply}", key(k))),
            };
            self.expect_allowed(&format!("w{id}: get"), k, got.clone());
            seen.push(format!("{}={}", key(k), got.as_deref().unwrap_or("-")));
        }
        self.note(format!("w{id}: read {}", seen.join(" ")));
    }

    /// Opens the database in this process (replaying the dead workers'
    /// journals), checks every key against the model, shuts down. Returns
    /// what it read.
    fn check(&mut self, what: &str) -> BTreeMap<String, String> {
        let memory = Memory::open(engine_config(&self.db.path)).unwrap_or_else(|e| self.fail(e));
        let stats = memory.stats();
        self.unreplayed.clear();
        self.replayed += stats.replayed;
        self.checks += 1;
        self.note(format!("{what}: open here, replayed {}", stats.replayed));
        if stats.journal_unrecovered != 0 {
            self.fail(format!(
                "{} journal regions could not be read: {:?}",
                stats.journal_unrecovered, stats.journal_quarantined
            ));
        }
        let listed: BTreeMap<String, String> = memory
            .list(NS, None)
            .unwrap_or_else(|e| self.fail(e))
            .into_iter()
            .map(|r| (r.key, r.value))
            .collect();
        if let Some(k) = listed.keys().find(|k| !(0..KEYS).any(|i| key(i) == **k)) {
            self.fail(format!("list holds a key never written: {k}"));
        }
        for k in 0..KEYS {
            let got = memory
                .get(NS, CATEGORY, &key(k))
                .unwrap_or_else(|e| self.fail(e))
                .map(|r| r.value);
            self.expect_allowed(&format!("{what}: get"), k, got);
            let in_list = listed.get(&key(k)).cloned();
            self.expect_allowed(&format!("{what}: list"), k, in_list);
        }
        memory.shutdown_blocking().unwrap_or_else(|e| self.fail(e));
        listed
    }

    fn step(&mut self) {
        let live = self.live.len();
        if live == 0 || (live == 1 && self.rng.bool()) {
            return self.start_worker();
        }
        match self.rng.u8(0..30) {
            0..=11 => self.write(false),
            12..=15 => self.write(true),
            16 => {
                let w = self.pick_worker();
                self.flush(w, "flush")
            }
            17 => self.read_through_worker(),
            18..=20 => self.kill(),
            21 => self.stop(),
            22..=23 if live < 3 => self.start_worker(),
            24 if live < 3 => self.start_and_kill_while_opening(),
            22..=24 => self.write(false),
            _ => {
                // Sometimes flush every live worker first: then every
                // acknowledged operation is visible, and the check exact.
                let all = self.rng.u8(0..3) == 0;
                if all {
                    (0..self.live.len()).for_each(|w| self.flush(w, "flush"));
                }
                self.check(if all {
                    "check after flushing all"
                } else {
                    "check"
                });
            }
        }
    }

    /// Kills every worker, then checks (exactly, but for writes killed
    /// before their acknowledgement), reopens once more to see the same,
    /// and checks that no journal is left behind.
    fn finish(&mut self) {
        while !self.live.is_empty() {
            let w = self.live.swap_remove(0);
            let id = w.id;
            w.kill();
            self.kills += 1;
            self.unreplayed.insert(id);
            self.note(format!("kill w{id} idle"));
        }
        let first = self.check("final check");
        let again = self.check("reopen");
        if first != again {
            self.fail(format!(
                "a second open changed the memories: {first:?} then {again:?}"
            ));
        }
        let dir = {
            let mut name = self.db.path.file_name().unwrap().to_os_string();
            name.push(".journal");
            self.db.path.with_file_name(name)
        };
        let left: Vec<String> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => self.fail(format!("{}: {e}", dir.display())),
        };
        // An engine killed inside `Journal::create` leaves `<id>.lock.tmp`
        // (no record is ever in it); recovery removes it once it is a minute
        // old (a younger one may be a live engine's, about to be locked), so
        // only those may be left here.
        let left: Vec<String> = left
            .into_iter()
            .filter(|n| !n.ends_with(".lock.tmp"))
            .collect();
        if !left.is_empty() {
            self.fail(format!(
                "journal files left after a clean shutdown: {left:?}"
            ));
        }
    }
}

#[test]
fn last_accepted_write_wins_across_processes_kills_and_replays() {
    let seeds: Vec<u64> = match std::env::var("MNEMO_REPLAY_SEED") {
        Ok(s) => vec![s.parse().expect("MNEMO_REPLAY_SEED is a number")],
        Err(_) => {
            let n = std::env::var("MNEMO_REPLAY_SEEDS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(48);
            (1..=n).collect()
        }
    };
    const STEPS: usize = 40;
    let started = Instant::now();
    let (mut ops, mut unacked, mut kills, mut checks, mut replayed) = (0, 0, 0, 0, 0);
    for &seed in &seeds {
        let mut s = Scenario::new(seed);
        for _ in 0..STEPS {
            s.step();
        }
        s.finish();
        if seeds.len() == 1 {
            println!("seed {seed}:\n  {}", s.log.join("\n  "));
        }
        ops += s.ops.len();
        unacked += s.ops.iter().filter(|o| !o.acked).count();
        kills += s.kills;
        checks += s.checks;
        replayed += s.replayed;
    }
    println!(
        "replay model: {} scenarios of {STEPS} steps, {ops} operations ({unacked} killed before \
         their acknowledgement), {kills} kills, {checks} checks, {replayed} records replayed, {:.1} s",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(replayed > 0, "some journals must have been replayed");
}

fn spawn_ready(db: &Path, window_ms: u64) -> Worker {
    let w = Worker::spawn(0, db, window_ms);
    let ready = w.reply().unwrap();
    assert!(ready.starts_with("READY"), "{ready}");
    w
}

fn ask_ok(w: &mut Worker, command: &str, want: &str) {
    let reply = w.ask(command).unwrap();
    assert!(reply.starts_with(want), "{command}: {reply}");
}

fn get(db: &Path, k: &str) -> mnemo::Result<(Option<String>, u64)> {
    let memory = Memory::open(engine_config(db))?;
    let replayed = memory.stats().replayed;
    let value = memory.get(NS, CATEGORY, k)?.map(|r| r.value);
    memory.shutdown_blocking()?;
    Ok((value, replayed))
}

/// The case from the issue: B saves x and y and is killed before its flush;
/// A, opened before B died, then saves a newer x and forgets y, durably.
/// The next open replays B's journal: x stays "newer", y stays forgotten.
/// `a_is_a_process`: A is another worker process, else this process.
fn dead_journal_replayed_late(a_is_a_process: bool) -> mnemo::Result<()> {
    let db = common::temp_db();
    let mut b = spawn_ready(&db.path, 0);
    ask_ok(&mut b, "save x old-x", "ACK");
    ask_ok(&mut b, "save y old-y", "ACK");
    if a_is_a_process {
        let mut a = spawn_ready(&db.path, 0);
        b.kill();
        ask_ok(&mut a, "save x newer", "ACK");
        ask_ok(&mut a, "forget y", "ACK");
        ask_ok(&mut a, "flush", "FLUSHED");
        a.stop().unwrap();
    } else {
        let a = Memory::open(engine_config(&db.path))?;
        assert_eq!(a.stats().replayed, 0, "B was alive when A opened");
        b.kill();
        let x = a.save(SaveRequest::new(NS, CATEGORY, "x", "newer"))?;
        let y = a.forget(NS, CATEGORY, "y")?;
        a.flush();
        x.wait_durable()?;
        y.wait_durable()?;
        a.shutdown_blocking()?;
    }
    let memory = Memory::open(engine_config(&db.path))?;
    assert_eq!(memory.stats().replayed, 2, "B's journal is replayed now");
    assert_eq!(
        memory.get(NS, CATEGORY, "x")?.map(|r| r.value).as_deref(),
        Some("newer")
    );
    assert_eq!(memory.get(NS, CATEGORY, "y")?, None);
    memory.shutdown_blocking()
}

#[test]
fn a_dead_journal_replayed_late_loses_to_newer_writes_of_this_process() -> mnemo::Result<()> {
    dead_journal_replayed_late(false)
}

#[test]
fn a_dead_journal_replayed_late_loses_to_newer_writes_of_another_process() -> mnemo::Result<()> {
    dead_journal_replayed_late(true)
}

/// The other way round: a live, slow worker A holds older saves of x and y
/// uncommitted; B saves a newer x, forgets y (a key no row holds yet), and
/// is killed; an open replays B's journal. When A finally commits, its
/// older writes lose: x stays B's, y stays forgotten.
#[test]
fn a_slow_writer_does_not_overwrite_a_newer_replayed_journal() -> mnemo::Result<()> {
    let db = common::temp_db();
    let mut a = spawn_ready(&db.path, 0);
    ask_ok(&mut a, "save x older", "ACK");
    ask_ok(&mut a, "save y older-y", "ACK");
    let mut b = spawn_ready(&db.path, 0);
    ask_ok(&mut b, "save x newer", "ACK");
    ask_ok(&mut b, "forget y", "ACK");
    b.kill();
    let (x, replayed) = get(&db.path, "x")?;
    assert_eq!(replayed, 2, "B's journal is replayed");
    assert_eq!(x.as_deref(), Some("newer"));
    ask_ok(&mut a, "flush", "FLUSHED");
    a.stop().unwrap();
    assert_eq!(get(&db.path, "x")?.0.as_deref(), Some("newer"));
    assert_eq!(get(&db.path, "y")?.0, None);
    Ok(())
}

/// A commits x = "older"; B then commits x = "newer", durably. A's `get`
/// must answer "newer", the last accepted write, as any fresh open does,
/// even while A's own committed write waits in its overlay for the index
/// (held back here by a fail point, standing in for index lag or a pass
/// retried after `SQLITE_BUSY`).
#[test]
fn a_committed_write_does_not_shadow_a_newer_one_of_another_process() -> mnemo::Result<()> {
    let db = common::temp_db();
    drop(Memory::open(engine_config(&db.path))?); // the schema, before A and B race for it
    let mut a = {
        let w = Worker::spawn_with(0, &db.path, 0, &[("MNEMO_CHILD_NO_INDEX", "1")]);
        let ready = w.reply().unwrap();
        assert!(ready.starts_with("READY"), "{ready}");
        w
    };
    ask_ok(&mut a, "save x older", "ACK");
    ask_ok(&mut a, "flush", "FLUSHED");
    let b = Memory::open(engine_config(&db.path))?;
    b.save(SaveRequest::new(NS, CATEGORY, "x", "newer"))?
        .wait_durable()?;
    b.shutdown_blocking()?;
    assert_eq!(get(&db.path, "x")?.0.as_deref(), Some("newer"), "the store");
    let seen_by_a = a.ask("get x").unwrap();
    assert_eq!(seen_by_a, "VALUE newer", "A's own older write shadows B's");
    Ok(())
}
