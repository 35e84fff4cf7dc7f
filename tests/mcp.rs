//! `mnemo mcp`: the real binary as an MCP server over stdio.
//!
//! Each test starts `mnemo --db <tempdir>/x.db --namespace NAME mcp` and talks
//! to it as an MCP client: rmcp's client over the child's stdin/stdout (the
//! test keeps the child handle, so it can close stdin and read the exit
//! status), and one test with hand-written newline-delimited JSON-RPC as an
//! older host would send it. Every wait is bounded, so a hang fails the test.
//!
//! The `#[ignore]`d test at the end measures the round trip of `store_memory`
//! through stdio next to an awaited save:
//! `cargo test --release --test mcp -- --ignored --nocapture`.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use mnemo::{Config, Memory};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::timeout;

/// The bound on any one test; they take well under a second each.
const TEST_LIMIT: Duration = Duration::from_secs(30);
/// How long a server may take to exit once asked to.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

const TOOLS: [&str; 5] = [
    "forget_memory",
    "get_memory",
    "list_memories",
    "recall_memory",
    "store_memory",
];

/// Runs a test body on a fresh runtime, failing it if it takes longer than
/// [`TEST_LIMIT`].
fn run(body: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            timeout(TEST_LIMIT, body)
                .await
                .expect("the test did not finish in time (a hang?)")
        });
}

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("x.db");
    (dir, path)
}

fn spawn_server(db: &Path, namespace: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mnemo"))
        .arg("--db")
        .arg(db)
        .args(["--namespace", namespace, "mcp"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start mnemo mcp")
}

/// A running `mnemo mcp` and an initialized MCP client session with it.
struct Server {
    child: Child,
    client: RunningService<RoleClient, ()>,
}

impl Server {
    /// Starts the server and runs the `initialize` handshake.
    async fn start(db: &Path, namespace: &str) -> Server {
        let mut child = spawn_server(db, namespace);
        let stdin = child.stdin.take().expect("child stdin");
        let stdout = child.stdout.take().expect("child stdout");
        let client = ().serve((stdout, stdin)).await.expect("MCP initialize handshake");
        Server { child, client }
    }

    async fn call(&self, tool: &str, args: Value) -> CallToolResult {
        let Value::Object(args) = args else {
            panic!("arguments must be a JSON object")
        };
        self.client
            .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args))
            .await
            .unwrap_or_else(|e| panic!("tools/call {tool}: {e}"))
    }

    /// Calls a tool that must succeed; returns its JSON result.
    async fn ok(&self, tool: &str, args: Value) -> Value {
        let result = self.call(tool, args).await;
        let text = text_of(&result);
        assert_ne!(result.is_error, Some(true), "{tool} failed: {text}");
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{tool} result is not JSON ({e}): {text}"))
    }

    /// Calls a tool that must fail with a tool error; returns its text.
    async fn tool_error(&self, tool: &str, args: Value) -> String {
        let result = self.call(tool, args).await;
        let text = text_of(&result);
        assert_eq!(
            result.is_error,
            Some(true),
            "{tool} should have failed: {text}"
        );
        text
    }

    async fn store(&self, category: &str, key: &str, value: &str) -> u64 {
        let r = self
            .ok(
                "store_memory",
                json!({"category": category, "key": key, "value": value}),
            )
            .await;
        assert_eq!(r["status"], "accepted", "{r}");
        r["seq"].as_u64().expect("seq")
    }

    /// `recall_memory`'s memories as (key, value) pairs, best first.
    async fn recall(&self, query: &str) -> Vec<(String, String)> {
        let r = self.ok("recall_memory", json!({"query": query})).await;
        pairs(&r)
    }

    /// Closes the client side (the server's stdin) and waits for the exit.
    async fn close(self) -> ExitStatus {
        let Server { mut child, client } = self;
        client.cancel().await.expect("close the MCP client");
        timeout(EXIT_LIMIT, child.wait())
            .await
            .expect("the server exits once stdin is closed")
            .expect("wait for the server")
    }
}

/// Rows of a namespace committed to SQLite, read with a plain connection.
fn committed_rows(db: &Path, namespace: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("open the database");
    conn.query_row(
        "SELECT count(*) FROM memories WHERE namespace = ?1 AND deleted = 0",
        [namespace],
        |row| row.get(0),
    )
    .expect("count rows")
}

fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn pairs(result: &Value) -> Vec<(String, String)> {
    let memories = result["memories"].as_array().expect("memories array");
    assert_eq!(result["count"].as_u64(), Some(memories.len() as u64));
    memories
        .iter()
        .map(|m| {
            (
                m["key"].as_str().expect("key").to_owned(),
                m["value"].as_str().expect("value").to_owned(),
            )
        })
        .collect()
}

const URDU: &str = "مجھے گانا پسند ہے";
const ENGLISH: &str = "I like writing";

#[test]
fn lists_the_five_tools_and_none_takes_a_namespace() {
    run(async {
        let (_dir, db) = temp_db();
        let server = Server::start(&db, "alice").await;

        let info = server.client.peer_info().expect("initialize result");
        let implementation = info.server_info.as_ref().expect("serverInfo");
        assert_eq!(implementation.name, "mnemo");
        assert!(info.capabilities.tools.is_some(), "tools capability");

        let tools = server.client.list_all_tools().await.expect("tools/list");
        let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        names.sort_unstable();
        assert_eq!(names, TOOLS);
        for tool in &tools {
            let description = tool.description.as_deref().unwrap_or_default();
            assert!(description.len() > 40, "{} needs a description", tool.name);
            let schema = Value::Object((*tool.input_schema).clone());
            assert_eq!(schema["type"], "object", "{}", tool.name);
            let properties = schema["properties"].as_object().expect("properties");
            assert!(
                !properties.contains_key("namespace"),
                "{} must not take a namespace: {schema}",
                tool.name
            );
            assert!(
                !schema.to_string().contains("namespace"),
                "{}: {schema}",
                tool.name
            );
        }
        let store = tools
            .iter()
            .find(|t| t.name == "store_memory")
            .expect("store_memory");
        let required = store.input_schema["required"].as_array().expect("required");
        let mut required: Vec<&str> = required.iter().filter_map(Value::as_str).collect();
        required.sort_unstable();
        assert_eq!(required, ["category", "key", "value"]);

        assert!(server.close().await.success());
    });
}

#[test]
fn stores_and_recalls_in_the_same_turn_and_after_a_restart() {
    run(async {
        let (_dir, db) = temp_db();
        let server = Server::start(&db, "alice").await;

        // One turn: two saves and the recalls right after them, long before
        // the batcher's 500 ms quiet window ends.
        let turn = Instant::now();
        let first = server.store("hobbies", "singing", URDU).await;
        let second = server.store("hobbies", "writing", ENGLISH).await;
        assert!(second > first, "sequence numbers increase");
        assert_eq!(
            server.recall("گانا").await,
            [("singing".to_owned(), URDU.to_owned())]
        );
        assert_eq!(
            server.recall("writing").await,
            [("writing".to_owned(), ENGLISH.to_owned())]
        );
        let got = server
            .ok(
                "get_memory",
                json!({"category": "hobbies", "key": "singing"}),
            )
            .await;
        assert_eq!(got["found"], true);
        assert_eq!(got["memory"]["value"], URDU);
        let listed = server.ok("list_memories", json!({})).await;
        assert_eq!(
            pairs(&listed),
            [
                ("singing".to_owned(), URDU.to_owned()),
                ("writing".to_owned(), ENGLISH.to_owned())
            ]
        );
        // Served before any commit: the quiet window (500 ms after the last
        // save) has not ended, so SQLite holds no row yet. Checked only when
        // the turn was quick enough for that to be certain.
        let elapsed = turn.elapsed();
        if elapsed < Duration::from_millis(400) {
            assert_eq!(committed_rows(&db, "alice"), 0, "nothing flushed yet");
        } else {
            eprintln!("slow machine: the turn took {elapsed:?}; skipped the before-commit check");
        }
        assert!(server.close().await.success());
        assert_eq!(committed_rows(&db, "alice"), 2, "flushed on exit");

        // A new server on the same file recalls both, now from the index.
        let server = Server::start(&db, "alice").await;
        assert_eq!(
            server.recall("گانا").await,
            [("singing".to_owned(), URDU.to_owned())]
        );
        assert_eq!(
            server.recall("writing").await,
            [("writing".to_owned(), ENGLISH.to_owned())]
        );
        let limited = server
            .ok(
                "recall_memory",
                json!({"query": "گانا writing", "category": "hobbies", "limit": 1}),
            )
            .await;
        assert_eq!(pairs(&limited).len(), 1);
        assert!(server.close().await.success());
    });
}

#[test]
fn bad_arguments_are_tool_errors_that_name_the_field() {
    run(async {
        let (_dir, db) = temp_db();
        let server = Server::start(&db, "alice").await;

        let empty_key = server
            .tool_error(
                "store_memory",
                json!({"category": "hobbies", "key": "", "value": "likes singing"}),
            )
            .await;
        assert!(empty_key.contains("`key`"), "{empty_key}");

        let big = "x".repeat(64 * 1024 + 1);
        let too_long = server
            .tool_error(
                "store_memory",
                json!({"category": "hobbies", "key": "big", "value": big}),
            )
            .await;
        assert!(too_long.contains("`value`"), "{too_long}");
        assert!(too_long.contains("65537"), "says how big: {too_long}");

        for metadata in [json!([1, 2]), json!(42), json!("[1,2]"), json!("{not json")] {
            let bad = server
                .tool_error(
                    "store_memory",
                    json!({"category": "c", "key": "k", "value": "v", "metadata": metadata}),
                )
                .await;
            assert!(bad.contains("`metadata`"), "{metadata}: {bad}");
        }

        let missing = server
            .tool_error("store_memory", json!({"category": "c", "value": "v"}))
            .await;
        assert!(missing.contains("key"), "{missing}");

        for limit in [0, 51] {
            let bad = server
                .tool_error("recall_memory", json!({"query": "x", "limit": limit}))
                .await;
            assert!(bad.contains("`limit`"), "{bad}");
        }

        let bad_get = server
            .tool_error("get_memory", json!({"category": " ", "key": "k"}))
            .await;
        assert!(bad_get.contains("`category`"), "{bad_get}");

        // Nothing of that was saved; metadata given as an object or as JSON
        // text of an object is fine.
        assert_eq!(server.ok("list_memories", json!({})).await["count"], 0);
        server
            .ok(
                "store_memory",
                json!({"category": "c", "key": "a", "value": "v", "metadata": {"source": "voice"}}),
            )
            .await;
        server
            .ok(
                "store_memory",
                json!({"category": "c", "key": "b", "value": "v", "metadata": "{\"source\":\"text\"}"}),
            )
            .await;
        let b = server
            .ok("get_memory", json!({"category": "c", "key": "b"}))
            .await;
        assert_eq!(b["memory"]["metadata"], json!({"source": "text"}));
        assert!(server.close().await.success());
    });
}

#[test]
fn forget_returns_at_once_and_hides_the_memory() {
    run(async {
        let (_dir, db) = temp_db();
        let server = Server::start(&db, "alice").await;
        server
            .store("people", "sister", "Her sister is Ayesha")
            .await;
        let forgot = server
            .ok(
                "forget_memory",
                json!({"category": "people", "key": "sister"}),
            )
            .await;
        assert_eq!(forgot["status"], "accepted");
        let got = server
            .ok("get_memory", json!({"category": "people", "key": "sister"}))
            .await;
        assert_eq!(got, json!({"found": false}));
        assert!(server.recall("Ayesha").await.is_empty());
        assert!(server.close().await.success());

        let memory = Memory::open(Config::new(&db)).expect("reopen");
        assert_eq!(memory.get("alice", "people", "sister").expect("get"), None);
        memory.shutdown().await.expect("shutdown");
    });
}

#[test]
fn servers_with_different_namespaces_on_one_file_never_see_each_other() {
    run(async {
        let (_dir, db) = temp_db();
        let alice = Server::start(&db, "alice").await;
        let bob = Server::start(&db, "bob").await;

        alice.store("hobbies", "music", "Alice likes singing").await;
        bob.store("hobbies", "music", "Bob likes drumming").await;

        for (server, mine, theirs) in [
            (&alice, "Alice likes singing", "drumming"),
            (&bob, "Bob likes drumming", "singing"),
        ] {
            let got = server
                .ok("get_memory", json!({"category": "hobbies", "key": "music"}))
                .await;
            assert_eq!(got["memory"]["value"], mine);
            assert!(
                server.recall(theirs).await.is_empty(),
                "{mine} saw {theirs}"
            );
            let listed = server.ok("list_memories", json!({})).await;
            assert_eq!(pairs(&listed), [("music".to_owned(), mine.to_owned())]);
        }
        assert!(alice.close().await.success());

        // Bob's server still runs on the same file and still sees only Bob,
        // also once Alice's memory is committed and indexed.
        assert!(bob.recall("singing").await.is_empty());
        assert!(bob.close().await.success());

        let memory = Memory::open(Config::new(&db)).expect("reopen");
        let a = memory
            .get("alice", "hobbies", "music")
            .expect("get")
            .expect("alice's");
        let b = memory
            .get("bob", "hobbies", "music")
            .expect("get")
            .expect("bob's");
        assert_eq!(a.value, "Alice likes singing");
        assert_eq!(b.value, "Bob likes drumming");
        memory.shutdown().await.expect("shutdown");
    });
}

#[test]
fn closing_stdin_exits_zero_with_everything_durable() {
    run(async {
        let (_dir, db) = temp_db();
        let server = Server::start(&db, "alice").await;
        server.store("hobbies", "singing", URDU).await;
        server.store("hobbies", "writing", ENGLISH).await;
        for i in 0..20 {
            server
                .store("facts", &format!("fact-{i}"), &format!("fact number {i}"))
                .await;
        }
        // Closed right after the last save, well inside the quiet window: the
        // server must flush on its way out.
        let status = server.close().await;
        assert!(status.success(), "exit status {status:?}");

        let memory = Memory::open(Config::new(&db)).expect("reopen");
        let got = memory.get("alice", "hobbies", "singing").expect("get");
        assert_eq!(got.expect("singing is durable").value, URDU);
        let got = memory.get("alice", "hobbies", "writing").expect("get");
        assert_eq!(got.expect("writing is durable").value, ENGLISH);
        assert_eq!(memory.list("alice", Some("facts")).expect("list").len(), 20);
        let hits = memory.search("alice", "گانا", None, 5).expect("search");
        assert_eq!(hits.len(), 1);
        assert!(!hits[0].fresh, "indexed, not just in memory");
        memory.shutdown().await.expect("shutdown");
    });
}

#[cfg(unix)]
fn send_signal(child: &Child, signal: &str) {
    let pid = child.id().expect("the server is running");
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

#[cfg(unix)]
#[test]
fn sigterm_and_sigint_flush_and_exit_zero() {
    run(async {
        let (_dir, db) = temp_db();
        for (i, signal) in ["TERM", "INT"].into_iter().enumerate() {
            let server = Server::start(&db, "alice").await;
            server
                .store("signals", signal, &format!("saved before SIG{signal}"))
                .await;
            let Server { mut child, client } = server;
            // The client stays connected: only the signal stops the server.
            send_signal(&child, signal);
            let status = timeout(EXIT_LIMIT, child.wait())
                .await
                .expect("the server exits on the signal")
                .expect("wait");
            assert_eq!(status.code(), Some(0), "SIG{signal}: {status:?}");
            drop(client);

            let memory = Memory::open(Config::new(&db)).expect("reopen");
            assert_eq!(
                memory.list("alice", Some("signals")).expect("list").len(),
                i + 1
            );
            let got = memory.get("alice", "signals", signal).expect("get");
            assert_eq!(
                got.expect("durable").value,
                format!("saved before SIG{signal}")
            );
            memory.shutdown().await.expect("shutdown");
        }
    });
}

/// Killed outright (SIGKILL, no chance to flush): the crash journal the
/// engine appends to before `save` returns brings every accepted save back on
/// the next open.
#[cfg(unix)]
#[test]
fn sigkill_loses_no_accepted_save() {
    run(async {
        let (_dir, db) = temp_db();
        let server = Server::start(&db, "alice").await;
        for i in 0..10 {
            server
                .store("facts", &format!("fact-{i}"), &format!("fact number {i}"))
                .await;
        }
        let Server { mut child, client } = server;
        send_signal(&child, "KILL");
        let status = timeout(EXIT_LIMIT, child.wait())
            .await
            .expect("killed")
            .expect("wait");
        assert!(!status.success());
        drop(client);
        assert_eq!(committed_rows(&db, "alice"), 0, "killed before any flush");

        let memory = Memory::open(Config::new(&db)).expect("reopen");
        assert_eq!(memory.list("alice", Some("facts")).expect("list").len(), 10);
        memory.shutdown().await.expect("shutdown");
        assert_eq!(committed_rows(&db, "alice"), 10);
    });
}

/// Writes one JSON-RPC message as a line; for a request, reads its answer.
async fn request(
    stdin: &mut tokio::process::ChildStdin,
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    message: Value,
) -> Value {
    let mut line = message.to_string();
    line.push('\n');
    stdin.write_all(line.as_bytes()).await.expect("write");
    stdin.flush().await.expect("flush");
    if message.get("id").is_none() {
        return Value::Null; // a notification has no answer
    }
    let answer = timeout(EXIT_LIMIT, lines.next_line())
        .await
        .expect("an answer in time")
        .expect("read")
        .expect("a line");
    let answer: Value = serde_json::from_str(&answer).expect("JSON-RPC answer");
    assert_eq!(answer["id"], message["id"], "{answer}");
    answer
}

/// A host that speaks plain newline-delimited JSON-RPC with an older protocol
/// version (as LiveKit Agents' and Claude Desktop's clients may) gets the
/// same answers.
#[test]
fn plain_json_rpc_with_an_older_protocol_version() {
    run(async {
        let (_dir, db) = temp_db();
        let mut child = spawn_server(&db, "alice");
        let mut stdin = child.stdin.take().expect("stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();

        let init = request(
            &mut stdin,
            &mut lines,
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2024-11-05",
                "capabilities": {},
                "clientInfo": {"name": "plain-host", "version": "1.0"}
            }}),
        )
        .await;
        assert_eq!(init["result"]["protocolVersion"], "2024-11-05");
        assert_eq!(init["result"]["serverInfo"]["name"], "mnemo");
        request(
            &mut stdin,
            &mut lines,
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await;

        let listed = request(
            &mut stdin,
            &mut lines,
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .await;
        let tools = listed["result"]["tools"].as_array().expect("tools");
        assert_eq!(tools.len(), 5);

        let stored = request(
            &mut stdin,
            &mut lines,
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
                "name": "store_memory",
                "arguments": {"category": "hobbies", "key": "singing", "value": URDU}
            }}),
        )
        .await;
        assert_ne!(stored["result"]["isError"], true, "{stored}");
        let text = stored["result"]["content"][0]["text"]
            .as_str()
            .expect("text");
        let seq: Value = serde_json::from_str(text).expect("JSON text");
        assert_eq!(seq["status"], "accepted");

        let recalled = request(
            &mut stdin,
            &mut lines,
            json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
                "name": "recall_memory", "arguments": {"query": "گانا"}
            }}),
        )
        .await;
        let text = recalled["result"]["content"][0]["text"]
            .as_str()
            .expect("text");
        let recalled: Value = serde_json::from_str(text).expect("JSON text");
        assert_eq!(pairs(&recalled), [("singing".to_owned(), URDU.to_owned())]);

        let bad = request(
            &mut stdin,
            &mut lines,
            json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
                "name": "store_memory",
                "arguments": {"category": "hobbies", "key": "", "value": "v"}
            }}),
        )
        .await;
        assert_eq!(
            bad["result"]["isError"], true,
            "a tool error, not a protocol error: {bad}"
        );

        drop(stdin);
        let status = timeout(EXIT_LIMIT, child.wait())
            .await
            .expect("exit after stdin closes")
            .expect("wait");
        assert!(status.success(), "{status:?}");
    });
}

/// p50 / p99 / max of a set of timings, in microseconds.
fn summary(label: &str, mut times: Vec<Duration>) -> String {
    times.sort_unstable();
    let at = |p: f64| {
        let i = ((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1;
        times[i].as_secs_f64() * 1e6
    };
    format!(
        "| {label} | {} | {:.1} | {:.1} | {:.1} |",
        times.len(),
        at(0.50),
        at(0.99),
        at(1.0)
    )
}

/// The round trip of `store_memory` through stdio (client call to result),
/// next to `Memory::save` in process and to an awaited save
/// (`mnemo::baseline::AwaitedStore`, its own transaction with
/// `synchronous=FULL`, then indexing). Run in release:
/// `cargo test --release --test mcp -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement; run with --release -- --ignored --nocapture"]
fn measure_store_memory_round_trip() {
    const WARMUP: usize = 100;
    const CALLS: usize = 1_000;
    let (_dir, db) = temp_db();
    let mut rows = Vec::new();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let server = Server::start(&db, "bench").await;
        let args = |i: usize| {
            json!({"category": "bench", "key": format!("k{i}"), "value": format!("likes singing, take {i}")})
        };
        for i in 0..WARMUP {
            server.ok("store_memory", args(i)).await;
        }
        let mut times = Vec::with_capacity(CALLS);
        for i in WARMUP..WARMUP + CALLS {
            let t = Instant::now();
            let result = server.call("store_memory", args(i)).await;
            times.push(t.elapsed());
            assert_ne!(result.is_error, Some(true));
        }
        rows.push(summary("`store_memory` through stdio (MCP round trip)", times));

        let mut times = Vec::with_capacity(200);
        for _ in 0..200 {
            let t = Instant::now();
            let result = server.call("recall_memory", json!({"query": "singing take 7"})).await;
            times.push(t.elapsed());
            assert_ne!(result.is_error, Some(true));
        }
        rows.push(summary("`recall_memory` through stdio, limit 5", times));
        assert!(server.close().await.success());
    });

    let memory = Memory::open(Config::new(db.with_file_name("inproc.db"))).expect("open");
    let mut times = Vec::with_capacity(CALLS);
    for i in 0..WARMUP + CALLS {
        let request = mnemo::SaveRequest::new("bench", "bench", format!("k{i}"), "likes singing");
        let t = Instant::now();
        let receipt = memory.save(request).expect("save");
        if i >= WARMUP {
            times.push(t.elapsed());
        }
        drop(receipt);
    }
    rows.push(summary("`Memory::save` in process", times));
    memory.shutdown_blocking().expect("shutdown");

    let mut store = mnemo::baseline::AwaitedStore::open(
        &db.with_file_name("awaited.db"),
        mnemo::Synchronous::Full,
    )
    .expect("open awaited store");
    let mut times = Vec::with_capacity(CALLS);
    for i in 0..WARMUP + CALLS {
        let request = mnemo::SaveRequest::new("bench", "bench", format!("k{i}"), "likes singing");
        let t = Instant::now();
        store.save(request).expect("awaited save");
        if i >= WARMUP {
            times.push(t.elapsed());
        }
    }
    rows.push(summary(
        "awaited save (`AwaitedStore::save`, synchronous=FULL)",
        times,
    ));

    println!("\n| call | n | p50 µs | p99 µs | max µs |");
    println!("|---|---:|---:|---:|---:|");
    for row in rows {
        println!("{row}");
    }
}
