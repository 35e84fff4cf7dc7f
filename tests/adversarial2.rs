//! Second adversarial round on the durability path (issue 10), aimed at the
//! fixes of the first round (tests/adversarial.rs). Each test marked
//! "DEFECT" failed on the code it was written against and passes since its
//! fix; those marked "REGRESSION" passed from the start.
//!
//! Children (fail points, kills) are this binary re-run through
//! `common::child_command`, as in tests/durability.rs.

mod common;

use std::time::{Duration, Instant};

use common::{child_db, config, kill_child_after, query_i64, record_offsets, segments, temp_db};
use mnemo::{Config, Memory, Result, SaveRequest};

fn req(key: &str, value: &str) -> SaveRequest {
    SaveRequest::new("u", "facts", key, value)
}

fn sql(path: &std::path::Path, batch: &str) {
    rusqlite::Connection::open(path)
        .expect("open")
        .execute_batch(batch)
        .expect("sql");
}

/// Polls `cond` for up to `secs` seconds.
fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

// ------------------------------------------------------------------------
// A save cut off by a crash between its body and its magic (the state
// `Segment::write_record` leaves when killed between its two copies) is an
// unfinished write: never acknowledged, not a loss.

/// Saves five memories, then a sixth whose value is `LAST_VALUE`, and waits
/// to be killed (nothing is committed).
#[test]
#[ignore = "child process of the unfinished-write tests"]
fn child_saves_six_and_waits() {
    let Some(path) = child_db() else { return };
    let last = std::env::var("LAST_VALUE").expect("LAST_VALUE");
    let mut c = Config::new(path);
    c.quiet_window = Duration::from_secs(3_600);
    c.max_wait = Duration::from_secs(3_600);
    let memory = Memory::open(c).unwrap();
    for i in 0..5 {
        memory
            .save(req(&format!("k{i}"), &format!("plain value {i}")))
            .unwrap();
    }
    memory.save(req("last", &last)).unwrap();
    println!("\nSAVED");
    std::thread::sleep(Duration::from_secs(60));
}

/// Runs [`child_saves_six_and_waits`], kills it, and turns its last record
/// into an unfinished write: its magic (stored last by `write_record`) is
/// zero, everything after it is there. Returns what the next open reports.
fn unfinished_last_write(last_value: &str) -> Result<(u64, u64, usize, Vec<String>)> {
    let db = temp_db();
    {
        use std::io::BufRead;
        let mut child = common::child_command("child_saves_six_and_waits", &db.path)
            .env("LAST_VALUE", last_value)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn child");
        let seen = std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .lines()
            .map_while(|l| l.ok())
            .any(|l| l.contains("SAVED"));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        assert!(seen);
    }
    let segs = segments(&db);
    assert_eq!(segs.len(), 1, "{segs:?}");
    let mut bytes = std::fs::read(&segs[0])?;
    // The last record starts at the last magic before its value.
    let value_at = bytes
        .windows(last_value.len())
        .position(|w| w == last_value.as_bytes())
        .expect("the last value is in the segment");
    let start = record_offsets(&bytes)
        .into_iter()
        .filter(|&o| o < value_at)
        .max()
        .expect("a record before it");
    bytes[start..start + 4].fill(0);
    std::fs::write(&segs[0], &bytes)?;

    let memory = Memory::open(config(&db))?;
    let s = memory.stats();
    let found: Vec<String> = (0..5)
        .map(|i| format!("k{i}"))
        .filter(|k| memory.get("u", "facts", k).ok().flatten().is_some())
        .collect();
    memory.shutdown_blocking()?;
    Ok((
        s.replayed,
        s.journal_unrecovered,
        s.journal_quarantined.len(),
        found,
    ))
}

// REGRESSION (passes): an unfinished last write is not reported as loss.
#[test]
fn an_unfinished_last_write_is_not_loss() -> Result<()> {
    let (replayed, unrecovered, quarantined, found) =
        unfinished_last_write("an ordinary sixth value, cut off")?;
    assert_eq!(found.len(), 5);
    assert_eq!(replayed, 5);
    assert_eq!((unrecovered, quarantined), (0, 0));
    Ok(())
}

// DEFECT: the same unfinished write, but its value happens to contain the
// four bytes of the record magic ("MNR1", e.g. a part number). The payload
// of a record is arbitrary user text; `has_magic_after` takes any "MNR1" in
// the tail for the trace of a finished record, so a legit unfinished write
// is reported as a damaged journal: error log, `journal_unrecovered`, the
// segment quarantined (and the CLI's exit code for loss).
#[test]
fn an_unfinished_last_write_whose_value_holds_the_magic_is_not_loss() -> Result<()> {
    let (replayed, unrecovered, quarantined, found) =
        unfinished_last_write("order the part MNR1-200 before friday, cut off")?;
    assert_eq!(found.len(), 5, "every acknowledged save is recovered");
    assert_eq!(replayed, 5);
    assert_eq!(
        (unrecovered, quarantined),
        (0, 0),
        "a save that never returned (its write was cut off by the crash) is reported \
         as lost data because its value contains the text MNR1"
    );
    Ok(())
}

// ------------------------------------------------------------------------
// A fault of the database's schema, the same for every row, is not a row's
// content: it must delay saves, not dead-letter them.

// DEFECT: a trigger on `memories` whose target table was dropped (another
// tool's audit trigger, say): every statement on `memories` fails to
// prepare with SQLITE_ERROR "no such table". The writer's row-by-row pass
// classifies that as the row's fault and dead-letters every save, final,
// though nothing in any row is wrong and the fault is cleared by
// recreating the table.
#[test]
fn a_schema_fault_common_to_every_row_delays_saves_instead_of_dead_lettering_them() -> Result<()> {
    let db = temp_db();
    Memory::open(config(&db))?.shutdown_blocking()?;
    sql(
        &db.path,
        "CREATE TABLE audit (k TEXT);
         CREATE TRIGGER audit_saves AFTER INSERT ON memories
         BEGIN INSERT INTO audit VALUES (NEW.key); END;
         DROP TABLE audit;",
    );
    let mut c = config(&db);
    c.busy_deadline = Duration::from_millis(300);
    c.quiet_window = Duration::from_millis(5);
    c.max_wait = Duration::from_millis(5);
    let memory = Memory::open(c)?;
    let receipts: Vec<_> = (0..3)
        .map(|i| memory.save(req(&format!("k{i}"), "an innocent value")))
        .collect::<Result<_>>()?;
    memory.flush();
    let outcomes: Vec<_> = receipts.iter().map(|r| r.wait_durable()).collect();
    // The fault clears.
    sql(&db.path, "CREATE TABLE audit (k TEXT);");
    let committed = eventually(5, || {
        query_i64(&db.path, "SELECT count(*) FROM memories WHERE deleted = 0") == 3
    });
    let dead = query_i64(&db.path, "SELECT count(*) FROM dead_letters");
    let readable = (0..3)
        .filter(|i| {
            memory
                .get("u", "facts", &format!("k{i}"))
                .ok()
                .flatten()
                .is_some()
        })
        .count();
    let _ = memory.shutdown_blocking();
    assert!(
        committed && dead == 0 && readable == 3,
        "saves dead-lettered for a schema fault no row caused: outcomes {outcomes:?}, \
         dead letters {dead}, committed once the table is back: {committed}, readable {readable}"
    );
    Ok(())
}

// ------------------------------------------------------------------------
// DEFECT: a row rejected by a trigger with RAISE(ROLLBACK) (a rejection of
// the row's content, as the dead-letter path is for) rolls back the whole
// transaction, savepoints and all. The row-by-row pass does not notice: the
// dead letter, the later rows, `next_change`, the journal mark run in
// autocommit and commit one by one, then COMMIT fails ("no transaction is
// active") and the batch is retried forever. The rows before the poison
// row were rolled back, yet the journal mark says they are committed: once
// the engine stops, the next open skips them. Acknowledged saves are lost
// without a word.
#[test]
fn a_row_rejected_with_raise_rollback_loses_nothing_acknowledged() -> Result<()> {
    let db = temp_db();
    Memory::open(config(&db))?.shutdown_blocking()?;
    sql(
        &db.path,
        "CREATE TRIGGER poison BEFORE INSERT ON memories WHEN NEW.key = 'bad'
         BEGIN SELECT RAISE(ROLLBACK, 'rejected by a trigger'); END;",
    );
    let mut c = common::config_never_flushing(&db);
    c.busy_deadline = Duration::from_millis(300);
    let memory = Memory::open(c)?;
    let before = memory.save(req("a-before", "saved before the poison row"))?;
    let bad = memory.save(req("bad", "rejected"))?;
    let after = memory.save(req("z-after", "saved after the poison row"))?;
    memory.flush();
    let outcomes = [
        before.wait_durable(),
        bad.wait_durable(),
        after.wait_durable(),
    ];
    std::thread::sleep(Duration::from_millis(500));
    let dead_while_stalled = query_i64(&db.path, "SELECT count(*) FROM dead_letters");
    let shut = memory.shutdown_blocking();
    drop(memory);
    // The trigger goes; the next open replays whatever the journal holds.
    sql(&db.path, "DROP TRIGGER poison;");
    let m = Memory::open(config(&db))?;
    let s = m.stats();
    let got_before = m.get("u", "facts", "a-before")?.map(|r| r.value);
    m.shutdown_blocking()?;
    assert!(
        got_before.is_some(),
        "the acknowledged save before the poison row is gone, with no loss reported \
         (unrecovered {}): receipts {outcomes:?}; dead letters while stalled {dead_while_stalled}; \
         shutdown {shut:?}; replayed at the next open {}",
        s.journal_unrecovered,
        s.replayed
    );
    Ok(())
}

// ------------------------------------------------------------------------
// DEFECT (upgrade): the previous version made a segment with `create_new`
// then `set_len` under its final name, so an engine of that version killed
// in between (making its spare, or its first segment at open) left a
// zero-length `.seg` beside its records. Nothing was ever written to it,
// yet `decode_unframed` calls an empty file a truncation: the journal is
// reported damaged and quarantined after the upgrade. (The first round fixed
// the all-zero segment of that version, not the empty one.)

/// A record of the format before the segment header: u32 len | u32 crc |
/// seq | at_ms | kind | flags | ns | category | key | value.
fn old_record(seq: u64, key: &str, value: &str, at_ms: i64) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&seq.to_le_bytes());
    body.extend_from_slice(&at_ms.to_le_bytes());
    body.push(1);
    body.push(0);
    for s in ["u", "facts", key, value] {
        body.extend_from_slice(&(s.len() as u32).to_le_bytes());
        body.extend_from_slice(s.as_bytes());
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// CRC-32 (IEEE), as crc32fast computes it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn an_old_format_spare_cut_off_before_its_set_len_is_not_damage() -> Result<()> {
    let db = temp_db();
    Memory::open(config(&db))?.shutdown_blocking()?;
    let dir = common::journal_dir(&db);
    std::fs::create_dir_all(&dir)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    let id = format!("999999-{:x}", now.as_nanos());
    let at_ms = now.as_millis() as i64;
    std::fs::write(dir.join(format!("{id}.lock")), b"")?;
    let mut seg = Vec::new();
    seg.extend(old_record(1, "old1", "from the previous version", at_ms));
    seg.extend(old_record(
        2,
        "old2",
        "from the previous version too",
        at_ms,
    ));
    seg.resize(64 * 1024, 0);
    std::fs::write(dir.join(format!("{id}.000000.seg")), &seg)?;
    // The spare: created, killed before `set_len`.
    std::fs::write(dir.join(format!("{id}.000001.seg")), b"")?;

    let memory = Memory::open(config(&db))?;
    let s = memory.stats();
    let both =
        memory.get("u", "facts", "old1")?.is_some() && memory.get("u", "facts", "old2")?.is_some();
    memory.shutdown_blocking()?;
    assert!(both && s.replayed == 2, "{s:?}");
    assert_eq!(
        (s.journal_unrecovered, s.journal_quarantined.len()),
        (0, 0),
        "an empty file the previous version never wrote to is reported as lost data"
    );
    Ok(())
}

// ------------------------------------------------------------------------
// DEFECT (long-lived engines): segment names are `<id>.<index:06>.seg` and
// recovery sorts names as strings, so from index 1,000,000 on (a long-lived
// engine: indexes are never reused) `.1000000.seg` sorts before
// `.999999.seg`. `claim` then takes 999999 for the journal's last segment
// and the legit unfinished write at the end of 1000000 for damage: a false
// loss report (and a quarantine).

/// Saves k000..k039 (1 KB each) into 16 KiB segments (several of them),
/// then waits to be killed: nothing is committed.
#[test]
#[ignore = "child process of the segment-order test"]
fn child_saves_forty_in_small_segments() {
    common::child_saves_and_waits(40, |c| {
        c.max_value_bytes = 2048;
        c.max_metadata_bytes = 256;
        c.journal_segment_bytes = 16 * 1024;
    });
}

#[test]
fn segment_order_holds_past_index_999999() -> Result<()> {
    let db = temp_db();
    kill_child_after("child_saves_forty_in_small_segments", &db.path, "SAVED");
    let segs: Vec<_> = segments(&db)
        .into_iter()
        .filter(|p| !record_offsets(&std::fs::read(p).expect("read")).is_empty())
        .collect();
    assert!(segs.len() >= 2, "{segs:?}");
    let (a, b) = (&segs[segs.len() - 2], &segs[segs.len() - 1]);
    // The last record of the journal: cut off before its magic (unfinished).
    let mut bytes = std::fs::read(b)?;
    let last = *record_offsets(&bytes).last().expect("records");
    bytes[last..last + 4].fill(0);
    std::fs::write(b, &bytes)?;
    // The same journal, had its engine made a million segments before.
    let rename = |p: &std::path::Path, index: &str| {
        let name = p.file_name().unwrap().to_str().unwrap();
        let id = name.split('.').next().unwrap();
        std::fs::rename(p, p.with_file_name(format!("{id}.{index}.seg"))).expect("rename");
    };
    rename(a, "999999");
    rename(b, "1000000");
    // (earlier segments, if any, are before both in either order)

    let memory = Memory::open(config(&db))?;
    let s = memory.stats();
    memory.shutdown_blocking()?;
    assert_eq!(
        (s.journal_unrecovered, s.journal_quarantined.len()),
        (0, 0),
        "the unfinished last write of segment 1000000 is taken for damage because \
         its name sorts before segment 999999's: {s:?}"
    );
    Ok(())
}

// ------------------------------------------------------------------------
// REGRESSION (passes): a healthy journal of several segments left by a
// kill is replayed whole, with no loss reported (no false gap, no false
// damage at the segment boundaries, the spare is not damage).
#[test]
fn a_healthy_multi_segment_journal_reports_no_loss() -> Result<()> {
    let db = temp_db();
    kill_child_after("child_saves_forty_in_small_segments", &db.path, "SAVED");
    assert!(segments(&db).len() >= 3);
    let memory = Memory::open(config(&db))?;
    let s = memory.stats();
    let all = (0..40).all(|i| {
        memory
            .get("u", "facts", &format!("k{i:03}"))
            .ok()
            .flatten()
            .is_some()
    });
    memory.shutdown_blocking()?;
    assert!(all && s.replayed == 40, "{s:?}");
    assert_eq!((s.journal_unrecovered, s.journal_quarantined.len()), (0, 0));
    Ok(())
}

// REGRESSION (passes): a middle segment deleted leaves a gap in the
// sequence numbers, which is reported as loss (the rest is replayed).
#[test]
fn a_deleted_middle_segment_is_reported_as_loss() -> Result<()> {
    let db = temp_db();
    kill_child_after("child_saves_forty_in_small_segments", &db.path, "SAVED");
    let with_records: Vec<_> = segments(&db)
        .into_iter()
        .filter(|p| !record_offsets(&std::fs::read(p).expect("read")).is_empty())
        .collect();
    assert!(with_records.len() >= 3, "{with_records:?}");
    let gone = record_offsets(&std::fs::read(&with_records[1])?).len() as u64;
    std::fs::remove_file(&with_records[1])?;
    let memory = Memory::open(config(&db))?;
    let s = memory.stats();
    memory.shutdown_blocking()?;
    assert_eq!(s.replayed, 40 - gone);
    assert!(s.journal_unrecovered > 0, "{s:?}");
    Ok(())
}
