//! The real `mnemo` binary, every subcommand, good and bad input.
//!
//! Each test runs the binary (`assert_cmd`) against a database in its own
//! temp dir. Every run is bounded ([`LIMIT`]), so a hang fails the test. No
//! test asserts a duration: `bench` is run to check it works and reports,
//! not how fast it is. `mcp` has its own tests in `tests/mcp.rs`.

#[cfg(any(feature = "minilm", feature = "e5"))]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::{json, Value};

/// The bound on any one run of the binary.
const LIMIT: Duration = Duration::from_secs(120);

struct Db {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn db() -> Db {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("m.db");
    Db { _dir: dir, path }
}

/// `mnemo --db <db> <args…>`, bounded, with a clean environment for logs.
fn mnemo(db: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::cargo_bin("mnemo").expect("the mnemo binary");
    cmd.arg("--db")
        .arg(db)
        .args(args)
        .env_remove("RUST_LOG")
        .timeout(LIMIT);
    cmd
}

/// Runs a command that must succeed and returns its stdout.
fn ok(db: &Path, args: &[&str]) -> String {
    let out = mnemo(db, args).assert().success().get_output().clone();
    String::from_utf8(out.stdout).expect("UTF-8 stdout")
}

/// Runs a command that must succeed with `--json` and parses its stdout.
fn ok_json(db: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(db, &all)).expect("JSON on stdout")
}

/// Runs a command that must fail with status 1 and an `error:` line naming
/// `what`.
fn fails(db: &Path, args: &[&str], what: &str) {
    mnemo(db, args)
        .assert()
        .code(1)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::starts_with("error: "))
        .stderr(predicate::str::contains(what));
}

#[test]
fn save_get_list_search_forget_in_text_and_json() {
    let db = db();
    let p = &db.path;

    // A one-shot save waits until the save is durable; logs are quiet.
    mnemo(
        p,
        &[
            "save",
            "hobbies",
            "singing",
            "مجھے گانا پسند ہے — likes singing",
            "--metadata",
            r#"{"source":"voice"}"#,
        ],
    )
    .assert()
    .success()
    .stdout(predicate::str::contains(
        "saved hobbies/singing: inserted (version 1)",
    ))
    .stderr(predicate::str::is_empty());
    let saved = ok_json(p, &["save", "hobbies", "writing", "likes writing"]);
    assert_eq!(saved["outcome"], json!({"Inserted": {"version": 1}}));
    assert!(saved["seq"].as_u64().is_some(), "{saved}");
    let again = ok_json(p, &["save", "hobbies", "writing", "likes writing"]);
    assert_eq!(again["outcome"], json!({"Unchanged": {"version": 1}}));
    ok(
        p,
        &["--namespace", "bob", "save", "food", "lunch", "biryani"],
    );

    assert_eq!(
        ok(p, &["get", "hobbies", "singing"]),
        "مجھے گانا پسند ہے — likes singing\n"
    );
    let got = ok_json(p, &["get", "hobbies", "singing"]);
    assert_eq!(got["namespace"], "default");
    assert_eq!(got["version"], 1);
    assert_eq!(got["metadata"], json!({"source": "voice"}));

    let listed = ok(p, &["list"]);
    assert_eq!(
        listed,
        "hobbies/singing: مجھے گانا پسند ہے — likes singing\nhobbies/writing: likes writing\n"
    );
    let listed = ok_json(p, &["list", "hobbies"]);
    assert_eq!(listed["memories"].as_array().map(Vec::len), Some(2));
    assert_eq!(listed["next_cursor"], Value::Null, "{listed}");
    // Namespaces are separate.
    assert_eq!(
        ok(p, &["--namespace", "bob", "list"]),
        "food/lunch: biryani\n"
    );
    assert_eq!(
        ok(p, &["--namespace", "nobody", "list"]),
        "no memories in namespace nobody\n"
    );

    let found = ok(p, &["search", "گانا"]);
    assert!(found.contains("hobbies/singing"), "{found}");
    assert!(!found.contains("writing"), "{found}");
    let hits = ok_json(
        p,
        &["search", "writing", "--category", "hobbies", "--limit", "1"],
    );
    assert_eq!(hits[0]["record"]["key"], "writing", "{hits}");
    assert_eq!(hits.as_array().map(Vec::len), Some(1));
    assert!(ok(p, &["search", "biryani"]).starts_with("no memory in namespace default"));

    mnemo(p, &["forget", "hobbies", "singing"])
        .assert()
        .success()
        .stdout(predicate::str::contains("forgotten (version 2)"));
    let again = ok_json(p, &["forget", "hobbies", "singing"]);
    assert_eq!(again["outcome"], "NotFound");
    fails(
        p,
        &["get", "hobbies", "singing"],
        "no memory hobbies/singing",
    );
    assert_eq!(ok(p, &["list"]), "hobbies/writing: likes writing\n");
}

#[test]
fn bad_input_exits_non_zero_with_a_clear_message_and_changes_nothing() {
    let db = db();
    let p = &db.path;
    ok(p, &["save", "c", "k", "v"]);

    fails(p, &["save", "c", "k2", ""], "invalid value");
    fails(p, &["save", "c", "k2", "   "], "invalid value");
    fails(p, &["save", "", "k2", "v"], "invalid category");
    fails(p, &["save", "c", &"k".repeat(300), "v"], "invalid key");
    fails(
        p,
        &["save", "c", "k2", "v", "--metadata", "{not json"],
        "invalid metadata",
    );
    fails(
        p,
        &["save", "c", "k2", "v", "--metadata", "[1, 2]"],
        "invalid metadata",
    );
    fails(
        p,
        &["--namespace", "", "save", "c", "k2", "v"],
        "invalid namespace",
    );
    fails(
        p,
        &["get", "c", "missing"],
        "no memory c/missing in namespace default",
    );
    fails(p, &["get", "", "k"], "invalid category");
    fails(p, &["search", "v", "--limit", "0"], "invalid limit");
    fails(p, &["search", "v", "--limit", "5000"], "invalid limit");
    fails(p, &["forget", "c", ""], "invalid key");
    fails(p, &["list", ""], "invalid category");
    // Nothing of the bad saves was written.
    assert_eq!(ok(p, &["list"]), "c/k: v\n");
    let stats = ok_json(p, &["stats"]);
    assert_eq!(stats["memories"], 1);

    // A database path that is a folder, or a file that is not a database.
    let folder = p.parent().expect("parent").to_owned();
    fails(&folder, &["list"], "opening");
    let not_db = folder.join("notes.txt");
    std::fs::write(
        &not_db,
        "these are not the memories you are looking for\n".repeat(200),
    )
    .expect("write");
    fails(&not_db, &["get", "c", "k"], "opening");

    // Usage errors are clap's: status 2 and a usage line.
    mnemo(p, &["save", "only-category"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("Usage"));
    mnemo(p, &["no-such-command"]).assert().code(2);
    mnemo(p, &["search", "x", "--limit", "many"])
        .assert()
        .code(2);
}

#[test]
fn logs_follow_rust_log() {
    let db = db();
    mnemo(&db.path, &["save", "c", "k", "v"])
        .env("RUST_LOG", "mnemo=debug")
        .assert()
        .success()
        .stderr(predicate::str::contains("mnemo open"));
}

#[test]
fn stats_reports_counters_and_the_journal_on_disk() {
    let db = db();
    let p = &db.path;
    ok(p, &["save", "c", "a", "one"]);
    ok(p, &["save", "c", "b", "two"]);
    ok(p, &["forget", "c", "b"]);

    let text = ok(p, &["stats"]);
    for line in [
        "memories:           1",
        "dead letters:       0",
        "index watermark:",
        "journal on disk:",
        "journal (engine):",
    ] {
        assert!(text.contains(line), "{line:?} missing in\n{text}");
    }
    let s = ok_json(p, &["stats"]);
    assert_eq!(s["memories"], 1);
    assert_eq!(s["dead_letters"], 0);
    assert_eq!(s["committed_change"], 3, "{s}");
    assert_eq!(s["index_watermark"], 3, "{s}");
    assert_eq!(s["index_lag_changes"], 0);
    assert_eq!(s["replayed_at_open"], 0);
    assert!(s["journal_bytes"].is_u64(), "{s}");
    // Clean shutdowns leave no journal files behind.
    assert_eq!(s["journal_dir"]["files_at_rest"], 0, "{s}");
    assert_eq!(s["journal_dir"]["files_after"], 0, "{s}");
    assert!(s["engine"]["accepted"].is_u64(), "{s}");
}

/// Sends one JSON-RPC line to a child and, for requests, reads its answer.
fn rpc(child: &mut Child, out: &mut impl BufRead, message: Value) -> Option<Value> {
    let stdin = child.stdin.as_mut().expect("stdin");
    writeln!(stdin, "{message}").expect("write");
    stdin.flush().expect("flush");
    message.get("id")?;
    let mut line = String::new();
    out.read_line(&mut line).expect("read");
    let answer: Value = serde_json::from_str(&line).expect("JSON-RPC answer");
    assert_eq!(answer["id"], message["id"], "{answer}");
    Some(answer)
}

/// A process killed right after its save was acknowledged leaves its journal
/// on disk: `stats` shows it at rest, and its open replays the save.
#[test]
fn stats_shows_a_journal_left_by_a_killed_process() {
    let db = db();
    let p = &db.path;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mnemo"))
        .arg("--db")
        .arg(p)
        .arg("mcp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mnemo mcp");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    rpc(
        &mut child,
        &mut out,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2024-11-05", "capabilities": {},
            "clientInfo": {"name": "cli-test", "version": "1"}
        }}),
    );
    rpc(
        &mut child,
        &mut out,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    );
    let stored = rpc(
        &mut child,
        &mut out,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "store_memory",
            "arguments": {"category": "hobbies", "key": "singing", "value": "likes singing"}
        }}),
    )
    .expect("answer");
    assert_ne!(stored["result"]["isError"], true, "{stored}");
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");

    let s = ok_json(p, &["stats"]);
    assert!(
        s["journal_dir"]["files_at_rest"].as_u64() > Some(0),
        "the killed process's journal is on disk: {s}"
    );
    assert_eq!(s["memories"], 1, "{s}");
    assert_eq!(
        s["journal_dir"]["files_after"], 0,
        "replayed and removed: {s}"
    );
    assert_eq!(ok(p, &["get", "hobbies", "singing"]), "likes singing\n");
}

fn jsonl(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn export_import_round_trip_is_exact() {
    let src = db();
    let s = &src.path;
    ok(
        s,
        &[
            "--namespace",
            "alice",
            "save",
            "hobbies",
            "singing",
            "مجھے گانا پسند ہے",
        ],
    );
    ok(
        s,
        &[
            "--namespace",
            "alice",
            "save",
            "food",
            "lunch",
            "biryani \"hot\"\n\ttwice",
            "--metadata",
            r#"{"source":"voice","confidence":0.9,"tags":["a","b"],"nested":{"x":null}}"#,
        ],
    );
    ok(
        s,
        &["--namespace", "bob", "save", "日本", "咖啡", "我喜欢喝咖啡"],
    );
    ok(s, &["save", "c", "k", "in the default namespace"]);
    ok(s, &["--namespace", "bob", "save", "gone", "k", "v"]);
    ok(s, &["--namespace", "bob", "forget", "gone", "k"]);

    let exported = ok(s, &["export"]);
    let lines = jsonl(&exported);
    assert_eq!(lines.len(), 4, "{exported}");
    // Namespaces in order, each by category then key.
    let order: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["namespace"].as_str().unwrap(), l["key"].as_str().unwrap()))
        .collect();
    assert_eq!(
        order,
        [
            ("alice", "lunch"),
            ("alice", "singing"),
            ("bob", "咖啡"),
            ("default", "k")
        ]
    );
    assert_eq!(
        lines[0],
        json!({"namespace": "alice", "category": "food", "key": "lunch",
               "value": "biryani \"hot\"\n\ttwice",
               "metadata": {"source": "voice", "confidence": 0.9, "tags": ["a", "b"],
                            "nested": {"x": null}}})
    );
    assert_eq!(lines[1]["metadata"], Value::Null);

    // Only the namespace asked for, when --namespace is given.
    let bob = ok(s, &["--namespace", "bob", "export"]);
    assert_eq!(jsonl(&bob).len(), 1);
    assert_eq!(jsonl(&bob)[0]["key"], "咖啡");
    // Even `default`, given explicitly, is one namespace.
    assert_eq!(
        jsonl(&ok(s, &["--namespace", "default", "export"])).len(),
        1
    );

    // Import from a file into an empty database, export again: same bytes.
    let dst = db();
    let d = &dst.path;
    let file = dst.path.with_file_name("export.jsonl");
    std::fs::write(&file, &exported).expect("write");
    let report = ok_json(d, &["import", file.to_str().expect("UTF-8 path")]);
    assert_eq!(report["lines"], 4, "{report}");
    assert_eq!(report["inserted"], 4, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(ok(d, &["export"]), exported);

    // From standard input, into a third database.
    let third = db();
    mnemo(&third.path, &["import", "-"])
        .write_stdin(exported.clone())
        .assert()
        .success()
        .stdout(predicate::str::contains("imported 4 lines: 4 inserted"));
    assert_eq!(ok(&third.path, &["export"]), exported);

    // Importing the same file again changes nothing.
    let report = ok_json(d, &["import", file.to_str().expect("UTF-8 path")]);
    assert_eq!(report["unchanged"], 4, "{report}");
}

#[test]
fn import_defaults_the_namespace_and_counts_duplicates() {
    let db = db();
    let p = &db.path;
    let input = concat!(
        r#"{"category":"c","key":"a","value":"first"}"#,
        "\n\n",
        r#"{"category":"c","key":"a","value":"second","metadata":null}"#,
        "\n",
        r#"{"namespace":"x","category":"c","key":"b","value":"other"}"#,
        "\n"
    );
    let report: Value = serde_json::from_slice(
        &mnemo(p, &["--namespace", "team", "--json", "import", "-"])
            .write_stdin(input)
            .assert()
            .success()
            .get_output()
            .stdout,
    )
    .expect("JSON report");
    assert_eq!(report["lines"], 3, "{report}");
    assert_eq!(report["inserted"], 2, "{report}");
    assert_eq!(report["superseded"], 1, "{report}");
    assert_eq!(ok(p, &["--namespace", "team", "get", "c", "a"]), "second\n");
    assert_eq!(ok(p, &["--namespace", "x", "get", "c", "b"]), "other\n");
}

#[test]
fn import_stops_at_a_bad_line_with_its_number() {
    let good = r#"{"namespace":"n","category":"c","key":"k1","value":"v1"}"#;
    let cases = [
        (
            r#"{"namespace":"n","category":"c","key":"k2""#,
            "line 3: not a memory",
        ),
        (
            r#"{"namespace":"n","category":"c","key":"k2"}"#,
            "missing field `value`",
        ),
        (
            r#"{"namespace":"n","category":"c","key":"k2","vaule":"v"}"#,
            "unknown field `vaule`",
        ),
        (
            r#"{"namespace":"n","category":"c","key":"k2","value":""}"#,
            "line 3: invalid value",
        ),
        (
            r#"{"namespace":"n","category":"c","key":"k2","value":"v","metadata":[1]}"#,
            "line 3: invalid metadata",
        ),
        (r#"[1, 2, 3]"#, "line 3: not a memory"),
    ];
    for (bad, message) in cases {
        let db = db();
        let p = &db.path;
        let after = r#"{"namespace":"n","category":"c","key":"k3","value":"v3"}"#;
        let input = format!("{good}\n\n{bad}\n{after}\n");
        mnemo(p, &["import", "-"])
            .write_stdin(input)
            .assert()
            .code(1)
            .stderr(predicate::str::contains(message))
            .stderr(predicate::str::contains(
                "the 1 line(s) before it are saved",
            ));
        // The line before is durable; the bad line and the lines after it
        // are not written.
        let rows = ok_json(p, &["--namespace", "n", "list"]);
        let keys: Vec<&str> = rows["memories"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r["key"].as_str().expect("key"))
            .collect();
        assert_eq!(keys, ["k1"], "after {bad}");
    }

    let db = db();
    fails(
        &db.path,
        &["import", "/no/such/file.jsonl"],
        "opening /no/such/file.jsonl",
    );
}

/// With a pending bound far smaller than the input, `save` answers
/// `Overloaded`; import waits for earlier saves and retries, and every line
/// lands.
#[test]
fn import_waits_for_room_when_overloaded() {
    let db = db();
    let p = &db.path;
    let n = 3_000;
    let input: String = (0..n)
        .map(|i| format!("{{\"category\":\"bulk\",\"key\":\"k{i}\",\"value\":\"value {i}\"}}\n"))
        .collect();
    let report: Value = serde_json::from_slice(
        &mnemo(p, &["--json", "import", "-", "--max-pending", "10"])
            .write_stdin(input)
            .assert()
            .success()
            .get_output()
            .stdout,
    )
    .expect("JSON report");
    assert_eq!(report["lines"], n, "{report}");
    assert_eq!(report["inserted"], n, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    // 3,000 saves against a bound of 10 cannot all fit between commits.
    assert!(report["overloaded_waits"].as_u64() > Some(0), "{report}");
    assert_eq!(ok_json(p, &["stats"])["memories"], n);
}

/// `list` pages: `--limit` (default 100, 1–1000) and `--cursor`, with the
/// next cursor as the last line of text or `next_cursor` in JSON.
#[test]
fn list_pages_with_limit_and_cursor() {
    let db = db();
    let p = &db.path;
    let input: String = (0..150)
        .map(|i| {
            format!(
                "{{\"category\":\"c{}\",\"key\":\"k{i:03}\",\"value\":\"v{i}\"}}\n",
                i % 2
            )
        })
        .collect();
    mnemo(p, &["import", "-"])
        .write_stdin(input)
        .assert()
        .success();
    let mut expected: Vec<String> = (0..150)
        .map(|i| format!("c{}/k{i:03}: v{i}", i % 2))
        .collect();
    expected.sort();

    // Text, 40 at a time: 40 lines and a cursor, until the last page.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut args = vec!["list", "--limit", "40"];
        if let Some(c) = &cursor {
            args.extend(["--cursor", c.as_str()]);
        }
        let out = ok(p, &args);
        let mut lines: Vec<&str> = out.lines().collect();
        cursor = match lines.last().and_then(|l| l.strip_prefix("next cursor: ")) {
            Some(next) => {
                let next = next.to_owned();
                lines.pop();
                assert_eq!(lines.len(), 40, "{out}");
                Some(next)
            }
            None => None,
        };
        seen.extend(lines.iter().map(|l| l.to_string()));
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, expected);

    // JSON: the default page is 100, then the rest.
    let first = ok_json(p, &["list"]);
    assert_eq!(first["memories"].as_array().map(Vec::len), Some(100));
    let next = first["next_cursor"]
        .as_str()
        .expect("a next cursor")
        .to_owned();
    let rest = ok_json(p, &["list", "--cursor", &next]);
    assert_eq!(rest["memories"].as_array().map(Vec::len), Some(50));
    assert_eq!(rest["next_cursor"], Value::Null);
    assert_eq!(rest["memories"][49]["key"], "k149");
    let c1 = ok_json(p, &["list", "c1", "--limit", "1000"]);
    assert_eq!(c1["memories"].as_array().map(Vec::len), Some(75));

    // Past the end, and bad input.
    let end = ok_json(p, &["list", "c0", "--limit", "75"]);
    assert_eq!(
        end["next_cursor"],
        Value::Null,
        "exactly the rest: no cursor"
    );
    let after_all = ok(p, &["list", "--cursor", "7a.7a"]); // after ("z", "z")
    assert_eq!(after_all, "no more memories in namespace default\n");
    fails(p, &["list", "--limit", "0"], "invalid limit");
    fails(p, &["list", "--limit", "1001"], "invalid limit");
    fails(p, &["list", "--cursor", "not-a-cursor"], "invalid cursor");
}

/// Export reads a page at a time: more memories than one page (1,000)
/// still come out whole and in order, and round-trip.
#[test]
fn export_walks_pages_past_the_page_limit() {
    let src = db();
    let s = &src.path;
    let input: String = (0..2_500)
        .map(|i| {
            format!(
                "{{\"namespace\":\"n{}\",\"category\":\"c\",\"key\":\"k{i:04}\",\"value\":\"v{i}\"}}\n",
                i % 2
            )
        })
        .collect();
    mnemo(s, &["import", "-"])
        .write_stdin(input)
        .assert()
        .success();
    let exported = ok(s, &["export"]);
    let lines = jsonl(&exported);
    assert_eq!(lines.len(), 2_500);
    let order: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["namespace"].as_str().unwrap_or_default().to_owned(),
                l["key"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(
        order, sorted,
        "namespaces in order, each by category and key"
    );
    let dst = db();
    mnemo(&dst.path, &["import", "-"])
        .write_stdin(exported.clone())
        .assert()
        .success();
    assert_eq!(ok(&dst.path, &["export"]), exported);
}

/// A UTF-8 byte order mark opening the input (as some editors save JSON
/// Lines) is not part of the first line; anywhere else it is an error.
#[test]
fn import_accepts_a_byte_order_mark_at_the_start() {
    let db = db();
    let p = &db.path;
    let input = "\u{feff}{\"category\":\"c\",\"key\":\"a\",\"value\":\"first\"}\n\
                 {\"category\":\"c\",\"key\":\"b\",\"value\":\"second\"}\n";
    mnemo(p, &["import", "-"])
        .write_stdin(input)
        .assert()
        .success()
        .stdout(predicate::str::contains("imported 2 lines: 2 inserted"));
    assert_eq!(ok(p, &["get", "c", "a"]), "first\n");

    let other = self::db();
    let later = "{\"category\":\"c\",\"key\":\"a\",\"value\":\"v\"}\n\
                 \u{feff}{\"category\":\"c\",\"key\":\"b\",\"value\":\"v\"}\n";
    mnemo(&other.path, &["import", "-"])
        .write_stdin(later)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("line 2: not a memory"));
}

/// An integer beyond 64 bits in metadata is refused, not rounded to a
/// float; one that fits comes back exactly.
#[test]
fn metadata_integers_beyond_64_bits_are_refused() {
    let db = db();
    let p = &db.path;
    fails(
        p,
        &[
            "save",
            "c",
            "k",
            "v",
            "--metadata",
            r#"{"id": 12345678901234567890123}"#,
        ],
        "integer beyond 64 bits",
    );
    let wide = r#"{"category":"c","key":"k","value":"v","metadata":{"n":-9223372036854775809}}"#;
    mnemo(p, &["import", "-"])
        .write_stdin(format!("{wide}\n"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("line 1"))
        .stderr(predicate::str::contains("integer beyond 64 bits"));
    assert_eq!(ok(p, &["list"]), "no memories in namespace default\n");

    ok(
        p,
        &[
            "save",
            "c",
            "k",
            "v",
            "--metadata",
            r#"{"max": 18446744073709551615, "min": -9223372036854775808}"#,
        ],
    );
    let exported = ok(p, &["export"]);
    assert!(
        exported.contains(r#""max":18446744073709551615"#)
            && exported.contains(r#""min":-9223372036854775808"#),
        "{exported}"
    );
}

/// `stats` shows the writer's, the indexer's and the journal's health.
#[test]
fn stats_shows_writer_index_and_journal_health() {
    let db = db();
    let p = &db.path;
    ok(p, &["save", "c", "k", "v"]);
    let text = ok(p, &["stats"]);
    for line in [
        "writer:             committing normally",
        "write retries:      0",
        "index failures:     0",
        "journal damage:     none",
    ] {
        assert!(text.contains(line), "{line:?} missing in\n{text}");
    }
    let s = ok_json(p, &["stats"]);
    for (field, zero) in [
        ("writer_stalled_ms", json!(0)),
        ("writer_stall_reason", Value::Null),
        ("write_retries", json!(0)),
        ("index_failures", json!(0)),
        ("index_error", Value::Null),
        ("journal_unrecovered", json!(0)),
        ("journal_unrecovered_bytes", json!(0)),
        ("journal_quarantined", json!([])),
    ] {
        assert_eq!(s[field], zero, "{field} in {s}");
    }
}

/// Runs `mnemo mcp` on `db`, stores `memories` through it and kills it
/// with SIGKILL once the last is acknowledged: they are in its journal
/// only.
fn killed_after_storing(db: &Path, memories: &[(&str, &str, &str)]) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mnemo"))
        .arg("--db")
        .arg(db)
        .arg("mcp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mnemo mcp");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    rpc(
        &mut child,
        &mut out,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2024-11-05", "capabilities": {},
            "clientInfo": {"name": "cli-test", "version": "1"}
        }}),
    );
    rpc(
        &mut child,
        &mut out,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    );
    for (i, (category, key, value)) in memories.iter().enumerate() {
        let stored = rpc(
            &mut child,
            &mut out,
            json!({"jsonrpc": "2.0", "id": 10 + i, "method": "tools/call", "params": {
                "name": "store_memory",
                "arguments": {"category": category, "key": key, "value": value}
            }}),
        )
        .expect("answer");
        assert_ne!(stored["result"]["isError"], true, "{stored}");
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A database whose crash journal holds three saves (`c/alpha`, `c/beta`,
/// `c/gamma`, after a committed `c/before`) from a killed process, with a
/// byte of beta's record flipped; returns that journal file.
fn journal_with_a_damaged_record(p: &Path) -> PathBuf {
    ok(p, &["save", "c", "before", "committed before"]);
    killed_after_storing(
        p,
        &[
            ("c", "alpha", "alpha-value"),
            ("c", "beta", "beta-value"),
            ("c", "gamma", "gamma-value"),
        ],
    );
    let mut journal = p.as_os_str().to_owned();
    journal.push(".journal");
    files_under(Path::new(&journal))
        .into_iter()
        .find_map(|f| {
            let mut bytes = std::fs::read(&f).ok()?;
            let at = bytes.windows(10).position(|w| w == b"beta-value")?;
            bytes[at] ^= 0x20; // "Beta-value": the record's CRC no longer checks
            std::fs::write(&f, bytes).ok()?;
            Some(f)
        })
        .expect("beta's record in a journal file")
}

/// A journal with a damaged record: the command does its work with every
/// record that could be read, then says on stderr which files were moved
/// aside, and exits with status 3. The next command finds nothing wrong.
#[test]
fn journal_damage_is_reported_with_status_3_after_the_command_runs() {
    let db = db();
    let p = &db.path;
    let damaged = journal_with_a_damaged_record(p);

    let out = mnemo(p, &["list"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("error: the crash journal of"))
        .stderr(predicate::str::contains("damaged region"))
        .get_output()
        .clone();
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    assert_eq!(
        stdout,
        "c/alpha: alpha-value\nc/before: committed before\nc/gamma: gamma-value\n"
    );
    let stderr = String::from_utf8(out.stderr).expect("UTF-8");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: the crash journal"),
        "the last word: {stderr}"
    );
    let name = damaged
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(last.contains(&name), "names the moved file: {stderr}");
    let moved = files_under(damaged.parent().expect("the journal folder"));
    assert!(
        moved
            .iter()
            .any(|f| f.file_name() == damaged.file_name() && f != &damaged),
        "moved aside, not deleted: {moved:?}"
    );
    // Reported once: the next command is clean.
    assert_eq!(ok(p, &["get", "c", "gamma"]), "gamma-value\n");
}

/// The MCP server logs journal damage at `error` level and serves on: it
/// never exits over it.
#[test]
fn the_mcp_server_logs_journal_damage_and_exits_zero() {
    let db = db();
    let p = &db.path;
    journal_with_a_damaged_record(p);
    mnemo(p, &["mcp"])
        .write_stdin("")
        .assert()
        .success()
        .stderr(predicate::str::contains("the crash journal of"))
        .stderr(predicate::str::contains("damaged region"));
    assert_eq!(ok(p, &["get", "c", "gamma"]), "gamma-value\n");
}

/// A save the writer cannot commit before the deadline (every commit
/// attempt fails, as on a full disk) is kept: `save` says so and exits with
/// 75, and the next command, once commits work again, commits it.
#[test]
fn a_save_that_cannot_commit_in_time_exits_75_and_is_kept() {
    let db = db();
    let p = &db.path;
    ok(p, &["save", "c", "first", "one"]);
    mnemo(
        p,
        &["--busy-deadline-ms", "300", "save", "c", "kept", "two"],
    )
    .env("MNEMO_FAILPOINTS", "mnemo::commit=return")
    .assert()
    .code(75)
    .stdout(predicate::str::is_empty())
    .stderr(predicate::str::contains(
        "error: the save of c/kept is accepted but not committed yet",
    ))
    .stderr(predicate::str::contains(
        "will be committed by the next open",
    ));
    assert_eq!(ok(p, &["get", "c", "kept"]), "two\n");
    assert_eq!(ok_json(p, &["stats"])["memories"], 2);
}

/// No room for the crash journal: the save is refused before anything is
/// accepted, with a message that says so, and a non-zero status.
#[test]
fn a_full_disk_refuses_the_save_with_a_clear_message() {
    let db = db();
    let p = &db.path;
    ok(p, &["save", "c", "first", "one"]);
    mnemo(p, &["save", "c", "second", "two"])
        .env("MNEMO_FAILPOINTS", "mnemo::journal_reserve=return")
        .assert()
        .code(1)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("disk full"))
        .stderr(predicate::str::contains("the save was not accepted"));
    assert_eq!(ok(p, &["list"]), "c/first: one\n");
}

#[test]
fn demo_runs_the_agent_turn() {
    let db = db();
    mnemo(&db.path, &["demo"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "store_memory(\"hobbies\", \"singing\"",
        ))
        .stdout(predicate::str::contains(
            "Read-your-writes, before any commit",
        ))
        .stdout(predicate::str::contains("indexed after"))
        .stdout(predicate::str::contains("hobbies/writing"))
        .stdout(predicate::str::contains(
            "Done: 2 saves accepted, 2 committed",
        ));
    // The demo's memories are in the database it was given.
    assert_eq!(
        ok(
            &db.path,
            &["--namespace", "demo-user", "get", "hobbies", "singing"]
        ),
        "مجھے گانا پسند ہے — likes singing\n"
    );
}

#[test]
fn bench_quick_reports_a_table_and_json() {
    let db = db();
    let scratch = db.path.with_file_name("scratch");
    let report = ok_json(
        &db.path,
        &[
            "bench",
            "--quick",
            "--dir",
            scratch.to_str().expect("UTF-8 path"),
        ],
    );
    assert_eq!(report["burst_n"], 100, "{report}");
    assert_eq!(report["save_call_journal_on"]["calls"], 5_000, "{report}");
    for side in ["batcher", "awaited_each"] {
        assert!(
            report[side]["saves_per_sec"].as_f64() > Some(0.0),
            "{report}"
        );
    }
    assert!(report["ratio"].as_f64() > Some(0.0), "{report}");
    // The headline figures, as top-level keys.
    for key in [
        "save_p50_us",
        "save_p99_us",
        "burst_ratio",
        "floor_ratio_durable",
        "search_p99_ms",
    ] {
        assert!(report[key].as_f64() > Some(0.0), "{key}: {report}");
    }
    assert!(report["index_lag_p99_ms"].as_f64() >= Some(0.0), "{report}");
    assert_eq!(report["burst_ratio"], report["ratio"], "{report}");
    assert!(
        report["save_call_journal_off"]["p50_us"].as_f64() > Some(0.0),
        "{report}"
    );
    // The scratch databases are removed afterwards.
    let left: Vec<_> = std::fs::read_dir(&scratch).expect("scratch").collect();
    assert!(left.is_empty(), "{left:?}");
    // Nothing was written to the --db database.
    assert!(!db.path.exists());

    // The text table, smaller still.
    mnemo(
        &db.path,
        &["bench", "--quick", "--n", "10", "--calls", "500"],
    )
    .assert()
    .success()
    .stdout(predicate::str::contains("journal on (default)"))
    .stdout(predicate::str::contains("batcher (median of 3)"))
    .stdout(predicate::str::contains("each save awaited"))
    .stdout(predicate::str::contains("batcher / each save awaited"))
    .stdout(predicate::str::contains("batcher / the raw batch"))
    .stdout(predicate::str::contains("search p99"));
    fails(&db.path, &["bench", "--n", "0"], "--n must be at least 1");
}

/// `--retrieval hybrid` ranks with the built-in n-gram vectors too: a typo
/// with no exact word still finds its memory.
#[test]
fn search_with_hybrid_retrieval_finds_a_typo() {
    let db = db();
    ok(
        &db.path,
        &["save", "health", "medication", "takes levothyroxine daily"],
    );
    // (`levothyroxin` would be found lexically now: it is the stem.)
    let lexical = ok_json(&db.path, &["search", "levotiroxine dose"]);
    assert_eq!(lexical.as_array().map(Vec::len), Some(0), "{lexical}");
    let hybrid = ok_json(
        &db.path,
        &["--retrieval", "hybrid", "search", "levotiroxine dose"],
    );
    assert_eq!(hybrid[0]["record"]["key"], "medication", "{hybrid}");
    fails(
        &db.path,
        &["--model-dir", "x", "search", "q"],
        "--model-dir is for --retrieval minilm or e5",
    );
}

/// Without the `e5` feature, asking for e5 says how to get it.
#[cfg(not(feature = "e5"))]
#[test]
fn e5_retrieval_without_the_feature_names_the_fix() {
    let db = db();
    fails(
        &db.path,
        &["--retrieval", "e5", "search", "sister"],
        "--features e5",
    );
}

/// With it: an English question finds the Urdu memory that answers it, and
/// a missing model is one clear error naming the setup script.
#[cfg(feature = "e5")]
#[test]
fn e5_retrieval_crosses_languages() {
    let db = db();
    let model = common::e5_dir();
    let model = model.to_str().expect("UTF-8 path");
    let e5 = |rest: &[&'static str]| -> Vec<String> {
        let mut args = vec!["--retrieval", "e5", "--model-dir", model];
        args.extend(rest);
        args.into_iter().map(str::to_owned).collect()
    };
    let args = e5(&["save", "fact", "m1", "میری بہن عائشہ لاہور میں ڈاکٹر ہے"]);
    ok(
        &db.path,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    ok(&db.path, &["save", "fact", "m2", "我每周六下午去游泳"]);
    let args = e5(&["search", "what does my sister do for work"]);
    let hits = ok_json(
        &db.path,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(hits[0]["record"]["key"], "m1", "{hits}");
    fails(
        &db.path,
        &[
            "--retrieval",
            "e5",
            "--model-dir",
            "/nonexistent",
            "search",
            "x",
        ],
        "scripts/fetch-e5.sh",
    );
}

/// Without the `minilm` feature, asking for MiniLM says how to get it.
#[cfg(not(feature = "minilm"))]
#[test]
fn minilm_retrieval_without_the_feature_names_the_fix() {
    let db = db();
    fails(
        &db.path,
        &["--retrieval", "minilm", "search", "husband"],
        "--features minilm",
    );
}

/// With it: a missing model is one clear error, and a paraphrase finds its
/// memory.
#[cfg(feature = "minilm")]
#[test]
fn minilm_retrieval_finds_a_paraphrase() {
    let db = db();
    let model = common::minilm_dir();
    let model = model.to_str().expect("UTF-8 path");
    let mut args = vec!["--retrieval", "minilm", "--model-dir", model];
    args.extend(["save", "family", "spouse", "Married to Daniel since 2019"]);
    ok(&db.path, &args);
    ok(
        &db.path,
        &["save", "garden", "balcony", "Grows tomatoes on the balcony"],
    );
    let hits = ok_json(
        &db.path,
        &[
            "--retrieval",
            "minilm",
            "--model-dir",
            model,
            "search",
            "who is her husband",
        ],
    );
    assert_eq!(hits[0]["record"]["key"], "spouse", "{hits}");
    fails(
        &db.path,
        &[
            "--retrieval",
            "minilm",
            "--model-dir",
            "/nonexistent",
            "search",
            "q",
        ],
        "scripts/fetch-minilm.sh",
    );
}
