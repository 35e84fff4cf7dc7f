//! Crash safety with real processes: a child saves and is killed with
//! SIGKILL at a random moment, most often inside the debounce window (before
//! any flush); the parent reopens the database and checks every
//! acknowledged save against a plain model of what was acknowledged. Also:
//! several processes writing one database at once.
//!
//! Each test runs on both stores (`::sqlite`, `::postgres`: a fresh
//! database on the server the tests start, the journal in a temp folder).
//!
//! `MNEMO_CRASH_KILLS=500 cargo test --release --test crash -- --nocapture`
//! runs more kills than CI's default (50 on SQLite, 25 on PostgreSQL).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Store, Target};
use mnemo::{Config, Memory, Result, SaveRequest};

fn spawn_child(child: &str, t: &Target, seed: u64) -> std::process::Child {
    common::child_command(child, &t.location())
        .env("MNEMO_CHILD_SEED", seed.to_string())
        .env("MNEMO_CHILD_JOURNAL", t.journal_dir())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child test process")
}

/// The child's config (its store, and the journal folder it was given) and
/// seed.
fn child_env() -> Option<(Config, u64)> {
    let db = common::child_db()?;
    let seed = std::env::var("MNEMO_CHILD_SEED").ok()?.parse().ok()?;
    let config = Config {
        journal_dir: std::env::var_os("MNEMO_CHILD_JOURNAL").map(Into::into),
        ..Config::new(db)
    };
    Some((config, seed))
}

/// One acknowledged operation, as the child printed it after `save`/`forget`
/// returned: `ACK <seq> <key> <value or -forget->`.
#[derive(Debug)]
struct Ack {
    seq: u64,
    key: String,
    value: Option<String>,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut parts = line.splitn(4, ' ');
    if parts.next()? != "ACK" {
        return None;
    }
    let seq = parts.next()?.parse().ok()?;
    let key = parts.next()?.to_owned();
    let value = parts.next()?;
    Some(Ack {
        seq,
        key,
        value: (value != "-forget-").then(|| value.to_owned()),
    })
}

/// The child's operations, reproducible from its seed: the parent replays
/// the same script to know the one operation that may have completed after
/// the last acknowledgement it saw (killed between `save` returning and the
/// line being printed).
struct Script {
    rng: fastrand::Rng,
    seed: u64,
    i: u64,
}

/// One scripted operation: key, value (`None` = forget), pause after it.
struct Step {
    key: String,
    value: Option<String>,
    pause_us: Option<u64>,
}

impl Script {
    fn new(seed: u64) -> Script {
        Script {
            rng: fastrand::Rng::with_seed(seed),
            seed,
            i: 0,
        }
    }
}

impl Iterator for Script {
    type Item = Step;
    fn next(&mut self) -> Option<Step> {
        let rng = &mut self.rng;
        let key = format!("k{}", rng.u32(0..30));
        let value = if rng.u8(0..10) == 0 {
            None
        } else {
            Some(format!(
                "seed{}-op{}-{}",
                self.seed,
                self.i,
                "x".repeat(rng.usize(0..200))
            ))
        };
        let pause_us = (rng.u8(0..4) == 0).then(|| rng.u64(0..3_000));
        self.i += 1;
        Some(Step {
            key,
            value,
            pause_us,
        })
    }
}

#[test]
#[ignore = "child process of kill_at_random_moments_loses_nothing_acknowledged"]
fn child_saves_until_killed() {
    let Some((mut c, seed)) = child_env() else {
        return;
    };
    c.journal = std::env::var_os("MNEMO_CHILD_NO_JOURNAL").is_none();
    let memory = Memory::open(c).unwrap();
    let out = std::io::stdout();
    let mut out = out.lock();
    // A newline first: libtest has printed "test <name> ... " without one.
    writeln!(out, "\nREADY").unwrap();
    out.flush().unwrap();
    let ns = std::env::var("MNEMO_CHILD_NS").unwrap_or_else(|_| "crash".to_owned());
    for step in Script::new(seed).take(100_000) {
        // Any error reaching the caller (a lock, a lost connection) fails
        // the child: it exits instead of being killed.
        let receipt = match &step.value {
            None => memory.forget(&ns, "facts", &step.key).unwrap(),
            Some(v) => memory
                .save(SaveRequest::new(&ns, "facts", &step.key, v))
                .unwrap(),
        };
        let shown = step.value.as_deref().unwrap_or("-forget-");
        writeln!(out, "ACK {} {} {shown}", receipt.seq(), step.key).unwrap();
        out.flush().unwrap();
        if let Some(us) = step.pause_us {
            std::thread::sleep(Duration::from_micros(us));
        }
    }
    std::thread::sleep(Duration::from_secs(60));
}

both_stores!(kill_at_random_moments_loses_nothing_acknowledged);

fn kill_at_random_moments_loses_nothing_acknowledged(t: &Target) -> Result<()> {
    let kills: u64 = std::env::var("MNEMO_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(match t.store {
            Store::Sqlite => 50,
            // A fresh database per kill costs a CREATE DATABASE.
            Store::Postgres => 25,
        });
    let mut acknowledged = 0usize;
    let mut lost = 0usize;
    let mut replayed = 0u64;
    let mut unacknowledged_kept = 0usize;
    let started = Instant::now();
    for seed in 1..=kills {
        let round = Target::new(t.store);
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut child = spawn_child("child_saves_until_killed", &round, seed);
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        while rx
            .recv_timeout(Duration::from_secs(30))
            .expect("child started")
            != "READY"
        {}
        // Mostly inside the 500 ms quiet window (nothing flushed yet),
        // sometimes after a flush or two.
        let alive_for = Duration::from_millis(rng.u64(1..800));
        std::thread::sleep(alive_for);
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        reader.join().unwrap();
        // Every line the child printed was printed after its save returned.
        let acks: Vec<Ack> = rx.try_iter().filter_map(|l| parse_ack(&l)).collect();
        assert!(acks.windows(2).all(|w| w[0].seq < w[1].seq));
        let mut model: BTreeMap<String, Option<String>> = BTreeMap::new();
        for a in &acks {
            model.insert(a.key.clone(), a.value.clone());
        }
        acknowledged += acks.len();
        // The one operation that may have completed unacknowledged.
        let next = Script::new(seed)
            .nth(acks.len())
            .expect("script is endless");
        let mut with_next = model.clone();
        with_next.insert(next.key.clone(), next.value.clone());

        let memory = Memory::open(round.config())?;
        replayed += memory.stats().replayed;
        let stored: BTreeMap<String, Option<String>> = memory
            .list("crash", None)?
            .into_iter()
            .map(|r| (r.key, Some(r.value)))
            .collect();
        let live = |m: &BTreeMap<String, Option<String>>| -> BTreeMap<String, Option<String>> {
            m.iter()
                .filter(|(_, v)| v.is_some())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        if stored == live(&model) {
        } else if stored == live(&with_next) {
            unacknowledged_kept += 1;
        } else {
            for (key, want) in &model {
                let got = stored.get(key).cloned().flatten();
                if &got != want {
                    lost += 1;
                    eprintln!("seed {seed}: {key}: want {want:?}, got {got:?}");
                }
            }
            lost = lost.max(1);
        }
        memory.shutdown_blocking()?;
    }
    println!(
        "crash test ({:?}): {kills} kills, {acknowledged} operations acknowledged, {replayed} replayed from journals, \
         {lost} lost, {unacknowledged_kept} kills landed between a save and its acknowledgement, {:.1} s",
        t.store,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(lost, 0);
    assert!(replayed > 0, "some kills must have landed before a flush");
    Ok(())
}

#[test]
#[ignore = "child process of four_processes_share_one_database"]
fn child_writes_alongside_others() {
    let Some((mut c, seed)) = child_env() else {
        return;
    };
    c.quiet_window = Duration::from_millis(5);
    c.max_wait = Duration::from_millis(20);
    c.max_batch = 50;
    let memory = Memory::open(c).unwrap();
    println!(); // libtest has printed "test <name> ... " without a newline
    let mut receipts = Vec::new();
    for i in 0..400 {
        // own keys, and a few keys every process writes
        let (key, value) = if i % 10 == 0 {
            (format!("shared{}", i % 3), format!("p{seed}-{i}"))
        } else {
            (format!("p{seed}-k{i}"), format!("p{seed}-v{i}"))
        };
        receipts.push((
            key.clone(),
            value.clone(),
            memory
                .save(SaveRequest::new("multi", "facts", &key, &value))
                .unwrap(),
        ));
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_millis(3));
        }
    }
    for (key, value, r) in &receipts {
        match r.wait_durable() {
            Ok(_) => println!("OK {key} {value}"),
            Err(e) => println!("ERR {key} {e}"),
        }
    }
    memory.shutdown_blocking().unwrap();
}

both_stores!(four_processes_share_one_database);

fn four_processes_share_one_database(t: &Target) -> Result<()> {
    drop(Memory::open(t.config())?); // schema
    let children: Vec<_> = (1..=4)
        .map(|p| spawn_child("child_writes_alongside_others", t, p))
        .collect();
    let mut committed = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            assert!(!line.starts_with("ERR"), "a caller saw an error: {line}");
            if let Some(rest) = line.strip_prefix("OK ") {
                let (k, v) = rest.split_once(' ').unwrap();
                committed.push((k.to_owned(), v.to_owned()));
            }
        }
    }
    assert_eq!(committed.len(), 4 * 400);
    let memory = Memory::open(t.config())?;
    for (k, v) in committed.iter().filter(|(k, _)| !k.starts_with("shared")) {
        assert_eq!(
            memory.get("multi", "facts", k)?.map(|r| r.value).as_ref(),
            Some(v)
        );
    }
    // shared keys: the value is the last one some process wrote to it
    for s in 0..3 {
        let key = format!("shared{s}");
        let got = memory.get("multi", "facts", &key)?.unwrap().value;
        let lasts: Vec<&String> = (1..=4)
            .filter_map(|p| {
                committed
                    .iter()
                    .filter(|(k, v)| k == &key && v.starts_with(&format!("p{p}-")))
                    .map(|(_, v)| v)
                    .next_back()
            })
            .collect();
        assert!(
            lasts.contains(&&got),
            "{key} = {got}, not any process's last write {lasts:?}"
        );
    }
    assert_eq!(memory.list("multi", None)?.len(), 4 * 360 + 3);
    memory.shutdown_blocking()
}

both_stores!(four_workers_killed_at_random_lose_nothing);

/// Four workers on one database and one machine (one journal folder), each
/// killed with SIGKILL at a random moment and restarted, round after round;
/// each restarted worker replays what its dead predecessors left. Every
/// acknowledged operation must be in the database at the end, and no error
/// may reach a caller (a worker that saw one exits instead of being killed).
fn four_workers_killed_at_random_lose_nothing(t: &Target) -> Result<()> {
    use std::os::unix::process::ExitStatusExt;
    const WORKERS: u64 = 4;
    let rounds: u64 = std::env::var("MNEMO_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    drop(Memory::open(t.config())?); // schema
    let mut rng = fastrand::Rng::with_seed(7);
    // Per worker: every acknowledged operation in order, and the one that
    // may have completed unacknowledged at each kill.
    let mut acked: Vec<Vec<(u64, Ack)>> = (0..WORKERS).map(|_| Vec::new()).collect();
    let mut maybe: Vec<Vec<(u64, Step)>> = (0..WORKERS).map(|_| Vec::new()).collect();
    let mut total = 0;
    for round in 0..rounds {
        let children: Vec<_> = (0..WORKERS)
            .map(|w| {
                let seed = 1_000 + round * WORKERS + w;
                let mut cmd = common::child_command("child_saves_until_killed", &t.location());
                cmd.env("MNEMO_CHILD_SEED", seed.to_string())
                    .env("MNEMO_CHILD_JOURNAL", t.journal_dir())
                    .env("MNEMO_CHILD_NS", format!("w{w}"))
                    .stderr(Stdio::inherit());
                let mut child = cmd.spawn().expect("spawn worker");
                let stdout = child.stdout.take().unwrap();
                let reader = std::thread::spawn(move || {
                    BufReader::new(stdout)
                        .lines()
                        .map_while(|l| l.ok())
                        .collect::<Vec<String>>()
                });
                (w, seed, child, reader)
            })
            .collect();
        for (w, seed, mut child, reader) in children {
            std::thread::sleep(Duration::from_millis(rng.u64(100..700)));
            child.kill().expect("SIGKILL");
            let status = child.wait().unwrap();
            let lines = reader.join().unwrap();
            assert_eq!(
                status.signal(),
                Some(9),
                "worker {w} exited by itself ({status}): an error reached a caller"
            );
            let acks: Vec<Ack> = lines.iter().filter_map(|l| parse_ack(l)).collect();
            total += acks.len();
            maybe[w as usize].push((round, Script::new(seed).nth(acks.len()).expect("endless")));
            acked[w as usize].extend(acks.into_iter().map(|a| (round, a)));
        }
    }
    // The last round's journals are replayed by this open.
    let memory = Memory::open(t.config())?;
    let mut lost = 0;
    for w in 0..WORKERS as usize {
        // Per key: the last acknowledged operation, and its round.
        let mut want: BTreeMap<String, (u64, Option<String>)> = BTreeMap::new();
        for (round, a) in &acked[w] {
            want.insert(a.key.clone(), (*round, a.value.clone()));
        }
        let stored: BTreeMap<String, String> = memory
            .list(&format!("w{w}"), None)?
            .into_iter()
            .map(|r| (r.key, r.value))
            .collect();
        for key in want.keys().chain(stored.keys()) {
            let got = stored.get(key).cloned();
            let (last_round, expected) = want.get(key).cloned().unwrap_or((0, None));
            // Or an operation on this key that a kill cut between its save
            // and its acknowledgement, no earlier than the last one acked.
            let unacked = maybe[w]
                .iter()
                .any(|(r, s)| *r >= last_round && &s.key == key && s.value == got);
            if got != expected && !unacked {
                lost += 1;
                eprintln!("worker {w}: {key}: want {expected:?}, got {got:?}");
            }
        }
    }
    println!(
        "{WORKERS} workers x {rounds} rounds ({:?}): {total} operations acknowledged, {lost} lost",
        t.store
    );
    assert!(total > 0);
    assert_eq!(lost, 0);
    memory.shutdown_blocking()
}
