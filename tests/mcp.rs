//! `mnemo mcp`: the real binary as an MCP server over stdio.
//!
//! Each test starts `mnemo --db <tempdir>/x.db --namespace NAME mcp` and talks
//! to it as an MCP client: rmcp's client over the child's stdin/stdout (the
//! test keeps the child handle, so it can close stdin and read the exit
//! status), or hand-written newline-delimited JSON-RPC ([`Raw`]) as an older
//! host would send it, and as a broken one might: lines that are not JSON,
//! not JSON-RPC, too long, or cancelled. Every wait is bounded, so a hang
//! fails the test.
//!
//! The `#[ignore]`d test at the end measures the round trip of `store_memory`
//! through stdio next to an awaited save:
//! `cargo test --release --test mcp -- --ignored --nocapture`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use mnemo::{Config, Memory};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
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
    spawn_server_with(db, namespace, &[])
}

/// [`spawn_server`] with extra environment variables.
fn spawn_server_with(db: &Path, namespace: &str, env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mnemo"))
        .arg("--db")
        .arg(db)
        .args(["--namespace", namespace, "mcp"])
        .envs(env.iter().copied())
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

    /// Calls a tool with arguments the server must refuse at the protocol
    /// level; returns the JSON-RPC error.
    async fn protocol_error(&self, tool: &str, args: Value) -> rmcp::ErrorData {
        let Value::Object(args) = args else {
            panic!("arguments must be a JSON object")
        };
        let called = self
            .client
            .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args))
            .await;
        match called {
            Err(rmcp::ServiceError::McpError(e)) => e,
            other => panic!("{tool} should have been refused: {other:?}"),
        }
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

        // Arguments that do not fit the tool are a protocol error naming
        // what is wrong (-32602), never "method not found".
        let missing = server
            .protocol_error("store_memory", json!({"category": "c", "value": "v"}))
            .await;
        assert_eq!(missing.code, rmcp::model::ErrorCode::INVALID_PARAMS);
        assert!(
            missing.message.contains("missing field `key`"),
            "{missing:?}"
        );
        let wrong_type = server
            .protocol_error("recall_memory", json!({"query": ["a", "list"]}))
            .await;
        assert_eq!(wrong_type.code, rmcp::model::ErrorCode::INVALID_PARAMS);
        assert!(
            wrong_type.message.contains("recall_memory"),
            "{wrong_type:?}"
        );

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

/// A server driven with raw lines, as a host that writes JSON-RPC by hand.
struct Raw {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: tokio::io::Lines<BufReader<ChildStdout>>,
    pings: u64,
}

impl Raw {
    /// Starts the server and runs the handshake by hand.
    async fn start(db: &Path, env: &[(&str, &str)]) -> Raw {
        let mut child = spawn_server_with(db, "alice", env);
        let stdin = child.stdin.take().expect("stdin");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut raw = Raw {
            child,
            stdin: Some(stdin),
            lines,
            pings: 0,
        };
        raw.send(
            json!({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
                "protocolVersion": "2024-11-05", "capabilities": {},
                "clientInfo": {"name": "raw-host", "version": "1"}
            }})
            .to_string()
            .as_bytes(),
        )
        .await;
        let init = raw.next().await;
        assert_eq!(init["id"], "init", "{init}");
        raw.send(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .await;
        raw
    }

    /// Writes `line` and a newline.
    async fn send(&mut self, line: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(line).await.expect("write");
        stdin.write_all(b"\n").await.expect("write");
        stdin.flush().await.expect("flush");
    }

    /// The next line on stdout, raw.
    async fn next_line(&mut self) -> String {
        timeout(EXIT_LIMIT, self.lines.next_line())
            .await
            .expect("an answer in time")
            .expect("read stdout")
            .expect("a line before the end of stdout")
    }

    /// The next line on stdout, which must be one JSON-RPC message.
    async fn next(&mut self) -> Value {
        let line = self.next_line().await;
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Sends `line`, then a ping; returns every answer before the ping's.
    async fn answers_to(&mut self, line: &[u8]) -> Vec<Value> {
        self.pings += 1;
        let ping = format!("ping-{}", self.pings);
        self.send(line).await;
        self.send(
            json!({"jsonrpc": "2.0", "id": ping, "method": "ping"})
                .to_string()
                .as_bytes(),
        )
        .await;
        let mut answers = Vec::new();
        loop {
            let answer = self.next().await;
            if answer["id"] == ping.as_str() {
                assert_eq!(answer["result"], json!({}), "{answer}");
                return answers;
            }
            answers.push(answer);
        }
    }

    /// Sends a line that must get exactly one JSON-RPC error; returns it
    /// (code, id, message).
    async fn error(&mut self, line: &[u8]) -> (i64, Value, String) {
        let answers = self.answers_to(line).await;
        assert_eq!(answers.len(), 1, "one answer: {answers:?}");
        let a = &answers[0];
        assert_eq!(a["jsonrpc"], "2.0", "{a}");
        assert!(a.get("result").is_none(), "{a}");
        let code = a["error"]["code"].as_i64().expect("an error code");
        let message = a["error"]["message"]
            .as_str()
            .expect("a message")
            .to_owned();
        (code, a["id"].clone(), message)
    }

    /// Calls a tool; returns its result (with `isError`).
    async fn call(&mut self, id: u64, tool: &str, args: Value) -> Value {
        self.send(
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                   "params": {"name": tool, "arguments": args}})
            .to_string()
            .as_bytes(),
        )
        .await;
        let answer = self.next().await;
        assert_eq!(answer["id"], id, "{answer}");
        answer["result"].clone()
    }

    /// The JSON text of a tool result that must not be an error.
    fn ok_text(result: &Value) -> Value {
        assert_ne!(result["isError"], true, "{result}");
        let text = result["content"][0]["text"].as_str().expect("text");
        serde_json::from_str(text).expect("JSON text")
    }

    /// Closes stdin; returns the exit status and every line written after.
    async fn close(mut self) -> (ExitStatus, Vec<String>) {
        drop(self.stdin.take());
        let mut rest = Vec::new();
        while let Some(line) = timeout(EXIT_LIMIT, self.lines.next_line())
            .await
            .expect("stdout ends once stdin is closed")
            .expect("read stdout")
        {
            rest.push(line);
        }
        let status = timeout(EXIT_LIMIT, self.child.wait())
            .await
            .expect("the server exits once stdin is closed")
            .expect("wait");
        (status, rest)
    }
}

/// A `tools/call` line, as text.
fn call_line(id: Value, tool: &str, args: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{args}}}}}"#
    )
}

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const INVALID_PARAMS: i64 = -32602;

/// Every line the host sends is answered — with a JSON-RPC error when it is
/// not a message the server can take — and the session goes on as if the
/// bad line had not been sent. (rmcp alone answers none of the lines that
/// are not JSON, and the host waits forever.)
#[test]
fn every_bad_line_gets_exactly_one_error_and_the_session_goes_on() {
    run(async {
        let (_dir, db) = temp_db();
        let mut raw = Raw::start(&db, &[]).await;

        // Not JSON: a parse error, with the id when it comes before the fault.
        assert_eq!(raw.error(b"{").await.0, PARSE_ERROR);
        assert_eq!(raw.error(b"{").await.1, Value::Null);
        let surrogate = call_line(json!(7), "recall_memory", r#"{"query":"\ud800 singing"}"#);
        let (code, id, message) = raw.error(surrogate.as_bytes()).await;
        assert_eq!((code, id), (PARSE_ERROR, json!(7)), "{message}");
        let surrogate = call_line(
            json!("s"),
            "store_memory",
            r#"{"category":"c","key":"k","value":"v","metadata":{"note":"\udc00"}}"#,
        );
        assert_eq!(
            raw.error(surrogate.as_bytes()).await,
            (PARSE_ERROR, json!("s"), raw_message(&surrogate))
        );
        let deep = call_line(
            json!(8),
            "store_memory",
            &format!(
                r#"{{"category":"c","key":"deep","value":"v","metadata":{}1{}}}"#,
                r#"{"a":"#.repeat(125),
                "}".repeat(125)
            ),
        );
        let (code, id, message) = raw.error(deep.as_bytes()).await;
        assert_eq!((code, id), (PARSE_ERROR, json!(8)), "{message}");
        assert!(message.contains("recursion limit"), "{message}");
        assert_eq!(raw.error(b"\xff\xfe").await.0, PARSE_ERROR);

        // JSON, but not a JSON-RPC 2.0 message: an invalid request.
        for (line, id) in [
            ("[1, 2]", Value::Null),
            (r#""x""#, Value::Null),
            (r#"{"id": 9, "method": "ping"}"#, json!(9)),
            (
                r#"{"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}"#,
                Value::Null,
            ),
            (r#"{"jsonrpc": "2.0", "id": 10}"#, json!(10)),
        ] {
            let (code, got, message) = raw.error(line.as_bytes()).await;
            assert_eq!((code, got), (INVALID_REQUEST, id), "{line}: {message}");
        }

        // A tools/call whose params or arguments do not fit: invalid params,
        // with the request's id, never "method not found".
        for (line, what) in [
            (
                r#"{"jsonrpc":"2.0","id":11,"method":"tools/call"}"#.to_owned(),
                "params",
            ),
            (
                r#"{"jsonrpc":"2.0","id":11,"method":"tools/call","params":5}"#.to_owned(),
                "params",
            ),
            (
                r#"{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"arguments":{}}}"#
                    .to_owned(),
                "name",
            ),
            (call_line(json!(11), "store_memory", "[1]"), "arguments"),
            (
                call_line(json!(11), "store_memory", r#"{"category":"c","value":"v"}"#),
                "missing field `key`",
            ),
            (
                call_line(json!(11), "list_memories", r#"{"limit":"ten"}"#),
                "invalid type",
            ),
            (
                call_line(
                    json!(11),
                    "store_memory",
                    r#"{"category":"c","key":"big","value":"v","metadata":{"id":123456789012345678901234567890}}"#,
                ),
                "`metadata`",
            ),
        ] {
            let (code, id, message) = raw.error(line.as_bytes()).await;
            assert_eq!((code, id), (INVALID_PARAMS, json!(11)), "{line}: {message}");
            assert!(message.contains(what), "{line}: {message}");
        }

        // Over the 16 MiB cap: discarded as it streams by, answered with the
        // id from its start.
        let mut huge = call_line(
            json!("huge"),
            "store_memory",
            r#"{"category":"c","key":"huge","value":"X"}"#,
        )
        .into_bytes();
        let tail = huge.split_off(huge.len() - 5); // `X"}}}`
        huge.extend(std::iter::repeat_n(b'x', 17 * 1024 * 1024));
        huge.extend_from_slice(&tail);
        let (code, id, message) = raw.error(&huge).await;
        assert_eq!((code, id), (INVALID_REQUEST, json!("huge")), "{message}");
        drop(huge);

        // Blank lines get nothing.
        assert!(raw.answers_to(b"").await.is_empty());
        assert!(raw.answers_to(b"   \r").await.is_empty());

        // The session works, and none of the bad lines changed anything.
        let stored = raw
            .call(
                20,
                "store_memory",
                json!({"category": "c", "key": "k", "value": URDU}),
            )
            .await;
        assert_eq!(Raw::ok_text(&stored)["status"], "accepted");
        let listed = Raw::ok_text(&raw.call(21, "list_memories", json!({})).await);
        assert_eq!(pairs(&listed), [("k".to_owned(), URDU.to_owned())]);
        let (status, rest) = raw.close().await;
        assert!(status.success(), "{status:?}");
        assert!(
            rest.is_empty(),
            "nothing left unanswered or extra: {rest:?}"
        );
    });
}

/// The message of the parse error for a line, as serde_json words it.
fn raw_message(line: &str) -> String {
    let e = serde_json::from_str::<Value>(line).expect_err("not JSON");
    format!("Parse error: {e}")
}

/// A host that cancels a slow `recall_memory` gets no answer for it, the
/// server keeps answering meanwhile, and closing stdin does not wait for the
/// search to finish. The search is made slow with a fail point that sleeps
/// 20 s in it (`MNEMO_FAILPOINTS`, test builds only).
#[test]
fn a_cancelled_search_does_not_hold_up_the_session_or_the_exit() {
    run(async {
        let (_dir, db) = temp_db();
        let mut raw = Raw::start(&db, &[("MNEMO_FAILPOINTS", "mcp::recall=sleep(20000)")]).await;
        raw.send(call_line(json!(5), "recall_memory", r#"{"query":"singing"}"#).as_bytes())
            .await;
        raw.send(
            br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":5,"reason":"user interrupted"}}"#,
        )
        .await;
        // Answered while the search sleeps.
        assert!(raw.answers_to(b"").await.is_empty());
        let stored = raw
            .call(
                6,
                "store_memory",
                json!({"category": "c", "key": "k", "value": "v"}),
            )
            .await;
        assert_eq!(Raw::ok_text(&stored)["status"], "accepted");

        let closed = Instant::now();
        let (status, rest) = raw.close().await;
        let took = closed.elapsed();
        assert!(status.success(), "{status:?}");
        assert!(
            took < Duration::from_secs(4),
            "closing stdin waited {took:?} for a cancelled search"
        );
        assert!(
            rest.iter().all(|l| !l.contains(r#""id":5"#)),
            "a cancelled request gets no answer: {rest:?}"
        );
        // Everything accepted is durable.
        assert_eq!(committed_rows(&db, "alice"), 1);
    });
}

/// An over-long query is a tool error that names `query`, not a hang.
#[test]
fn an_over_long_query_is_a_tool_error_naming_the_query() {
    run(async {
        let (_dir, db) = temp_db();
        let server = Server::start(&db, "alice").await;
        server.store("c", "k", "likes singing").await;
        let query = "singing ".repeat(128 * 1024);
        let text = server
            .tool_error("recall_memory", json!({"query": query}))
            .await;
        assert!(text.contains("`query`"), "{}", &text[..text.len().min(300)]);
        assert_eq!(server.recall("singing").await.len(), 1);
        assert!(server.close().await.success());
    });
}

/// `list_memories` pages: `limit` (default 20, at most 100) and `cursor`
/// from the previous page's `next_cursor`, which is null on the last page.
#[test]
fn list_memories_pages_with_a_cursor() {
    run(async {
        let (_dir, db) = temp_db();
        let server = Server::start(&db, "alice").await;
        for i in 0..45 {
            server
                .store(
                    &format!("cat{}", i % 2),
                    &format!("k{i:02}"),
                    &format!("v{i}"),
                )
                .await;
        }
        let first = server.ok("list_memories", json!({})).await;
        assert_eq!(first["count"], 20, "the default page");
        let mut keys = Vec::new();
        let mut cursor = Value::Null;
        let mut pages = 0;
        loop {
            let page = server
                .ok("list_memories", json!({"limit": 7, "cursor": cursor}))
                .await;
            pages += 1;
            keys.extend(pairs(&page).into_iter().map(|(k, _)| k));
            cursor = page["next_cursor"].clone();
            if cursor.is_null() {
                break;
            }
            assert_eq!(page["count"], 7);
        }
        assert_eq!(pages, 7);
        let mut expected: Vec<(String, String)> = (0..45)
            .map(|i| (format!("cat{}", i % 2), format!("k{i:02}")))
            .collect();
        expected.sort();
        assert_eq!(
            keys,
            expected.into_iter().map(|(_, k)| k).collect::<Vec<_>>()
        );

        let one_category = server
            .ok("list_memories", json!({"category": "cat1", "limit": 100}))
            .await;
        assert_eq!(one_category["count"], 22);
        assert_eq!(one_category["next_cursor"], Value::Null);
        for limit in [0, 101] {
            let bad = server
                .tool_error("list_memories", json!({"limit": limit}))
                .await;
            assert!(bad.contains("`limit`"), "{bad}");
        }
        let bad = server
            .tool_error("list_memories", json!({"cursor": "not-a-cursor"}))
            .await;
        assert!(bad.contains("`cursor`"), "{bad}");
        assert!(server.close().await.success());
    });
}

/// Large memories: a `list_memories` page stops before its answer passes
/// 1 MiB, whatever the `limit`, and its `next_cursor` continues right after
/// the last memory sent; `recall_memory` stops the same way and says so.
#[test]
fn list_and_recall_answers_stay_under_the_byte_budget() {
    run(async {
        let (_dir, db) = temp_db();
        let mut raw = Raw::start(&db, &[]).await;
        // Quotes double on the wire: each memory is about 120 KiB there.
        let value = format!("singing {}", "\"quoted\" ".repeat(6 * 1024));
        for i in 0..30 {
            let stored = raw
                .call(
                    100 + i,
                    "store_memory",
                    json!({"category": "big", "key": format!("k{i:02}"), "value": value}),
                )
                .await;
            assert_eq!(Raw::ok_text(&stored)["status"], "accepted");
        }
        let mut cursor = Value::Null;
        let mut keys = Vec::new();
        let mut id = 200;
        loop {
            id += 1;
            raw.send(
                json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
                    "name": "list_memories", "arguments": {"limit": 100, "cursor": cursor}}})
                .to_string()
                .as_bytes(),
            )
            .await;
            let line = raw.next_line().await;
            assert!(
                line.len() <= 1024 * 1024,
                "an answer of {} bytes",
                line.len()
            );
            let answer: Value = serde_json::from_str(&line).expect("JSON");
            let page = Raw::ok_text(&answer["result"]);
            let count = page["count"].as_u64().expect("count");
            assert!((1..30).contains(&count), "{count} memories in one page");
            keys.extend(pairs(&page).into_iter().map(|(k, _)| k));
            cursor = page["next_cursor"].clone();
            if cursor.is_null() {
                break;
            }
        }
        let expected: Vec<String> = (0..30).map(|i| format!("k{i:02}")).collect();
        assert_eq!(keys, expected, "every memory once, in order");

        raw.send(
            call_line(
                json!(300),
                "recall_memory",
                r#"{"query":"singing","limit":50}"#,
            )
            .as_bytes(),
        )
        .await;
        let line = raw.next_line().await;
        assert!(
            line.len() <= 1024 * 1024,
            "an answer of {} bytes",
            line.len()
        );
        let answer: Value = serde_json::from_str(&line).expect("JSON");
        let recalled = Raw::ok_text(&answer["result"]);
        assert!(
            recalled["count"].as_u64() < Some(30),
            "{}",
            recalled["count"]
        );
        assert_eq!(recalled["truncated"], true);
        let (status, _) = raw.close().await;
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

/// While the database refuses writes (every commit fails: an injected I/O
/// error, `MNEMO_FAILPOINTS`, test builds only), `store_memory` still
/// answers at once, and says the change is kept but not committed; the
/// change is readable; and a server killed in that state loses nothing:
/// the next open commits it from the crash journal.
#[test]
fn a_stalled_database_is_said_in_the_answer_and_loses_nothing() {
    run(async {
        let (_dir, db) = temp_db();
        let mut raw = Raw::start(&db, &[("MNEMO_FAILPOINTS", "mnemo::commit=return")]).await;
        let first = raw
            .call(
                1,
                "store_memory",
                json!({"category": "c", "key": "k0", "value": "first"}),
            )
            .await;
        assert_eq!(Raw::ok_text(&first)["status"], "accepted");
        // The first flush fails after the quiet window; from then on the
        // answers carry the note.
        let started = Instant::now();
        let mut n = 1;
        let note = loop {
            let answer = raw
                .call(
                    1 + n,
                    "store_memory",
                    json!({"category": "c", "key": format!("k{n}"), "value": "later"}),
                )
                .await;
            let answer = Raw::ok_text(&answer);
            assert_eq!(answer["status"], "accepted", "{answer}");
            if let Some(note) = answer["note"].as_str() {
                break note.to_owned();
            }
            assert!(started.elapsed() < EXIT_LIMIT, "no note while stalled");
            n += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(note.contains("not committed yet"), "{note}");
        assert!(note.contains("injected I/O error"), "{note}");
        let got = raw
            .call(900, "get_memory", json!({"category": "c", "key": "k0"}))
            .await;
        assert_eq!(Raw::ok_text(&got)["memory"]["value"], "first", "{got}");
        raw.child.kill().await.expect("SIGKILL the server");
        assert_eq!(committed_rows(&db, "alice"), 0, "nothing could commit");
        let memory = Memory::open(Config::new(&db)).expect("open");
        for i in 0..=n {
            assert!(
                memory
                    .get("alice", "c", &format!("k{i}"))
                    .expect("get")
                    .is_some(),
                "k{i}"
            );
        }
        memory.shutdown_blocking().expect("shutdown");
    });
}

/// `mnemo --db postgres://… mcp`: the same tools on a PostgreSQL database
/// (a fresh one on the server the tests start), and a second server process
/// (another worker) recalls what the first stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_on_postgres_and_another_worker_recalls_it() {
    let t = common::Target::new(common::Store::Postgres);
    let url = t.location();
    let state = t.dir.path().to_string_lossy().into_owned();
    let start = |ns: &'static str| {
        let mut child = spawn_server_with(&url, ns, &[("XDG_STATE_HOME", state.as_str())]);
        async move {
            let stdin = child.stdin.take().expect("child stdin");
            let stdout = child.stdout.take().expect("child stdout");
            let client = ().serve((stdout, stdin)).await.expect("MCP initialize handshake");
            Server { child, client }
        }
    };
    let first = start("caller-7").await;
    first
        .store("facts", "city", "Lives in Lahore near the old walls")
        .await;
    // Read-your-writes before any commit, on this worker.
    assert_eq!(first.recall("lahore").await.len(), 1);
    assert!(first.close().await.success());
    let second = start("caller-7").await;
    let found = second.recall("lahore walls").await;
    assert_eq!(
        found,
        vec![(
            "city".to_owned(),
            "Lives in Lahore near the old walls".to_owned()
        )]
    );
    assert!(second.close().await.success());
    // The journal went under $XDG_STATE_HOME, never beside a "file".
    assert!(t.dir.path().join("mnemo/journals").is_dir());
}
