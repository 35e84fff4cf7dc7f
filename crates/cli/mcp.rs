//! `mnemo mcp`: a Model Context Protocol server over stdio.
//!
//! An MCP host (LiveKit Agents, Claude Desktop, any MCP client) starts
//! `mnemo --db PATH --namespace NAME mcp` as a child process and talks
//! JSON-RPC over its stdin/stdout. The server offers five tools backed by one
//! [`Memory`] engine: `store_memory`, `recall_memory`, `get_memory`,
//! `list_memories` and `forget_memory`.
//!
//! - `store_memory` and `forget_memory` return as soon as the engine accepted
//!   the change (microseconds); they never await the receipt. The change is
//!   readable by the very next call and is committed in the background.
//! - The namespace is fixed by `--namespace` for the life of the process; it
//!   is never a tool argument, so a model cannot read or write another
//!   namespace's memories.
//! - When the client closes stdin, or on SIGTERM / SIGINT, the server calls
//!   [`Memory::shutdown`] (flush and index everything accepted) and exits 0.
//!
//! stdout carries the protocol only; logs go to stderr (set up in `main`).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use mnemo::{Error, Memory, MemoryRecord, SaveRequest};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{tool, tool_handler, tool_router, ServerHandler, ServiceExt};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

/// Results `recall_memory` returns when the model gives no `limit`.
const DEFAULT_RECALL_LIMIT: u32 = 5;
/// The most results one `recall_memory` call may ask for.
const MAX_RECALL_LIMIT: u32 = 50;

/// What the host shows the model about this server as a whole.
const INSTRUCTIONS: &str = "Long-term memory about the user and the conversation, kept across \
sessions. Save durable facts the user shares (preferences, people, plans, biography) with \
store_memory as soon as you learn them; it returns at once, so call it mid-turn without waiting. \
Before answering questions that may depend on what you learned earlier, call recall_memory with \
a few keywords. A memory is addressed by (category, key): saving the same pair again replaces it. \
Everything you save is visible to the next call immediately.";

/// Runs the MCP server on stdin/stdout until the client disconnects or a
/// SIGTERM/SIGINT arrives, then flushes everything and returns (or, after a
/// signal, exits the process with status 0).
pub async fn serve(db: &Path, namespace: &str) -> Result<()> {
    let memory = crate::open(db)?;
    // Check the namespace with the library's own rules now, so a bad
    // `--namespace` fails at start-up instead of in every tool call.
    memory
        .get(namespace, "_", "_")
        .with_context(|| format!("--namespace {namespace:?}"))?;

    // Listen for signals before serving, so one that arrives during the
    // handshake already takes the orderly path.
    let signal = shutdown_signal()?;

    let server = MnemoServer::new(memory.clone(), namespace);
    let session = async {
        let running = server
            .serve(rmcp::transport::stdio_pipes())
            .await
            .context("MCP handshake")?;
        let reason = running.waiting().await.context("MCP session task")?;
        anyhow::Ok(reason)
    };

    tokio::select! {
        ended = session => {
            // The client closed stdin (or the handshake failed): the session
            // is over and no read of stdin is pending.
            match &ended {
                Ok(reason) => tracing::info!(?reason, "MCP client disconnected"),
                Err(e) => tracing::warn!(error = %e, "MCP session ended"),
            }
            memory.shutdown().await.context("flushing memories on shutdown")?;
            tracing::info!("mnemo mcp: everything flushed and indexed");
            // A client that goes away before or during the handshake is a
            // normal end for a stdio server, not an error.
            Ok(())
        }
        name = signal => {
            // Dropping `session` cancels the MCP service. The engine flushes
            // and indexes everything accepted before we exit.
            tracing::info!(signal = name, "mnemo mcp: shutting down");
            let flushed = memory.shutdown().await;
            if let Err(e) = &flushed {
                tracing::error!(error = %e, "flushing memories on shutdown failed");
            }
            // Exit here rather than return: the stdin reader may still be
            // parked in a blocking read (when stdin is not a pipe), and the
            // runtime's drop would wait for it. Everything that must survive
            // is committed by now.
            std::process::exit(if flushed.is_ok() { 0 } else { 1 });
        }
    }
}

/// Resolves with the signal's name on SIGTERM or SIGINT.
#[cfg(unix)]
fn shutdown_signal() -> Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> Result<impl std::future::Future<Output = &'static str>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    })
}

/// The MCP service: one engine, one fixed namespace.
#[derive(Clone)]
struct MnemoServer {
    memory: Memory,
    namespace: Arc<str>,
    tool_router: ToolRouter<MnemoServer>,
}

// Field descriptions are what the model reads; they are given with
// `schemars(description)` so that each is one line of text.

/// Arguments of `store_memory`.
#[derive(Debug, Deserialize, JsonSchema)]
struct StoreMemoryArgs {
    #[schemars(
        description = "A short grouping, such as \"preferences\", \"people\", \
\"facts\", \"plans\" or \"hobbies\". Reuse the categories you already used for similar \
memories."
    )]
    category: String,
    #[schemars(
        description = "A short, stable name for this memory inside its category, such \
as \"favorite_food\" or \"sister_name\". Saving the same category and key again replaces the \
earlier value."
    )]
    key: String,
    #[schemars(
        description = "The memory itself: one self-contained statement, in the user's \
language if they used one (for example \"Likes singing — مجھے گانا پسند ہے\"). Not empty, at \
most 64 KiB."
    )]
    value: String,
    /// Declared as an object (what the model should send); JSON text of an
    /// object is accepted too, since some hosts stringify nested arguments.
    #[serde(default)]
    #[schemars(
        with = "Option<serde_json::Map<String, Value>>",
        description = "Optional JSON object of extra fields kept beside the value and \
returned with it, such as {\"source\": \"voice\", \"confidence\": 0.9}. Not searched. At most \
16 KiB."
    )]
    metadata: Option<Value>,
}

/// Arguments of `recall_memory`.
#[derive(Debug, Deserialize, JsonSchema)]
struct RecallMemoryArgs {
    #[schemars(
        description = "What to look for: a few keywords or a short phrase, in any \
language (for example \"singing\", \"sister name\", \"گانا\"). Memories containing more of \
the words rank higher."
    )]
    query: String,
    #[serde(default)]
    #[schemars(description = "Only search this category. Leave out to search every category.")]
    category: Option<String>,
    #[serde(default)]
    #[schemars(
        range(min = 1, max = 50),
        description = "How many memories to return, best first: 1 to 50. Default 5."
    )]
    limit: Option<u32>,
}

/// Arguments that name one memory.
#[derive(Debug, Deserialize, JsonSchema)]
struct MemoryKeyArgs {
    #[schemars(description = "The memory's category, exactly as it was saved.")]
    category: String,
    #[schemars(description = "The memory's key, exactly as it was saved.")]
    key: String,
}

/// Arguments of `list_memories`.
#[derive(Debug, Deserialize, JsonSchema)]
struct ListMemoriesArgs {
    #[serde(default)]
    #[schemars(description = "Only list this category. Leave out to list every memory.")]
    category: Option<String>,
}

#[tool_router(router = tool_router)]
impl MnemoServer {
    fn new(memory: Memory, namespace: &str) -> Self {
        MnemoServer {
            memory,
            namespace: Arc::from(namespace),
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        name = "store_memory",
        description = "Save one long-term memory about the user or the conversation, so it can \
be recalled in this and later sessions. Returns immediately (it does not wait for the \
database): call it as soon as you learn something worth keeping, then go on with your reply. \
The memory is visible to recall_memory, get_memory and list_memories at once. Saving the same \
category and key again replaces the old value; saving an identical value changes nothing, so \
retrying is safe. Returns {\"status\":\"accepted\",\"seq\":N}.",
        annotations(
            title = "Store a memory",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn store_memory(&self, Parameters(args): Parameters<StoreMemoryArgs>) -> CallToolResult {
        const TOOL: &str = "store_memory";
        let mut request = SaveRequest::new(&*self.namespace, args.category, args.key, args.value);
        match args.metadata {
            None | Some(Value::Null) => {}
            // Some hosts pass objects as JSON text; an empty string means none.
            Some(Value::String(text)) if text.trim().is_empty() => {}
            Some(Value::String(text)) => match request.with_metadata_json(&text) {
                Ok(r) => request = r,
                Err(e) => return tool_error(TOOL, e),
            },
            // An object is stored; anything else is rejected by the
            // library's validation below, naming `metadata`.
            Some(other) => request.metadata = Some(other),
        }
        match self.memory.save(request) {
            Ok(receipt) => {
                let seq = receipt.seq();
                // Never awaited by the tool call. A write that fails after it
                // was accepted (database locked past the deadline, a rejected
                // row) is reported on stderr.
                tokio::spawn(async move {
                    if let Err(e) = receipt.durable().await {
                        if !matches!(e, Error::Closed) {
                            tracing::error!(seq, error = %e, "an accepted memory was not committed");
                        }
                    }
                });
                json_result(json!({"status": "accepted", "seq": seq}))
            }
            Err(e) => tool_error(TOOL, e),
        }
    }

    #[tool(
        name = "recall_memory",
        description = "Search the saved memories for a query and return the best matches, best \
first, including memories saved moments ago. Use a few keywords rather than a question; any \
language works. Optionally restrict to one category. Returns {\"count\":N,\"memories\":[{\
\"category\",\"key\",\"value\",\"metadata\"?,\"updated_at\"}]}; an empty list means nothing \
matched.",
        annotations(
            title = "Recall memories",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn recall_memory(
        &self,
        Parameters(args): Parameters<RecallMemoryArgs>,
    ) -> CallToolResult {
        const TOOL: &str = "recall_memory";
        let limit = args.limit.unwrap_or(DEFAULT_RECALL_LIMIT);
        if !(1..=MAX_RECALL_LIMIT).contains(&limit) {
            return tool_error(
                TOOL,
                Error::InvalidInput {
                    field: "limit",
                    reason: format!("must be between 1 and {MAX_RECALL_LIMIT} (got {limit})"),
                },
            );
        }
        let category = optional(args.category);
        let query = args.query;
        let hits = self
            .read(TOOL, move |memory, ns| {
                memory.search(ns, &query, category.as_deref(), limit as usize)
            })
            .await;
        match hits {
            Ok(hits) => {
                let memories: Vec<Value> = hits.iter().map(|h| record_view(&h.record)).collect();
                json_result(json!({"count": memories.len(), "memories": memories}))
            }
            Err(e) => e,
        }
    }

    #[tool(
        name = "get_memory",
        description = "Read one memory by its exact category and key. Returns {\"found\":true,\
\"memory\":{...}} or {\"found\":false}. Use recall_memory instead when you do not know the exact \
key.",
        annotations(title = "Get a memory", read_only_hint = true, open_world_hint = false)
    )]
    async fn get_memory(&self, Parameters(args): Parameters<MemoryKeyArgs>) -> CallToolResult {
        const TOOL: &str = "get_memory";
        let got = self
            .read(TOOL, move |memory, ns| {
                memory.get(ns, &args.category, &args.key)
            })
            .await;
        match got {
            Ok(Some(record)) => json_result(json!({"found": true, "memory": record_view(&record)})),
            Ok(None) => json_result(json!({"found": false})),
            Err(e) => e,
        }
    }

    #[tool(
        name = "list_memories",
        description = "List every saved memory, or every memory of one category, ordered by \
category and key. Returns {\"count\":N,\"memories\":[...]}. Prefer recall_memory to find \
something specific.",
        annotations(
            title = "List memories",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn list_memories(
        &self,
        Parameters(args): Parameters<ListMemoriesArgs>,
    ) -> CallToolResult {
        const TOOL: &str = "list_memories";
        let category = optional(args.category);
        let listed = self
            .read(TOOL, move |memory, ns| memory.list(ns, category.as_deref()))
            .await;
        match listed {
            Ok(records) => {
                let memories: Vec<Value> = records.iter().map(record_view).collect();
                json_result(json!({"count": memories.len(), "memories": memories}))
            }
            Err(e) => e,
        }
    }

    #[tool(
        name = "forget_memory",
        description = "Delete one memory by its exact category and key, for example when the \
user asks you to forget something or a fact is no longer true (to correct a fact, store_memory \
the new value under the same key instead). Returns immediately; the memory is gone from every \
read at once. Forgetting a key that does not exist is harmless. Returns \
{\"status\":\"accepted\",\"seq\":N}.",
        annotations(
            title = "Forget a memory",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn forget_memory(&self, Parameters(args): Parameters<MemoryKeyArgs>) -> CallToolResult {
        const TOOL: &str = "forget_memory";
        match self
            .memory
            .forget(&self.namespace, &args.category, &args.key)
        {
            Ok(receipt) => json_result(json!({"status": "accepted", "seq": receipt.seq()})),
            Err(e) => tool_error(TOOL, e),
        }
    }
}

impl MnemoServer {
    /// Runs a read on the blocking pool: reads may touch SQLite, and the
    /// runtime's worker thread also carries the protocol.
    async fn read<T, F>(&self, tool: &'static str, f: F) -> Result<T, CallToolResult>
    where
        T: Send + 'static,
        F: FnOnce(&Memory, &str) -> mnemo::Result<T> + Send + 'static,
    {
        let memory = self.memory.clone();
        let namespace = self.namespace.clone();
        match tokio::task::spawn_blocking(move || f(&memory, &namespace)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(tool_error(tool, e)),
            Err(e) => Err(CallToolResult::error(vec![ContentBlock::text(format!(
                "{tool} failed inside the memory server ({e}); try again."
            ))])),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for MnemoServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("mnemo", env!("CARGO_PKG_VERSION"))
                    .with_title("mnemo long-term memory"),
            )
            .with_instructions(INSTRUCTIONS)
    }
}

/// An optional category as models send it: absent, null or blank means none.
fn optional(category: Option<String>) -> Option<String> {
    category.filter(|c| !c.trim().is_empty())
}

/// A successful result whose text is compact JSON.
fn json_result(value: Value) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(value.to_string())])
}

/// A tool error (`isError: true`) whose text tells the model what to do.
fn tool_error(tool: &str, error: Error) -> CallToolResult {
    let text = match &error {
        Error::InvalidInput { field, reason } => format!(
            "Invalid `{field}`: {reason}. Nothing was changed; fix `{field}` and call {tool} again."
        ),
        Error::Overloaded { .. } => format!(
            "The memory store is busy ({error}). Nothing was changed; retry this {tool} call in a \
few seconds."
        ),
        Error::Closed => format!(
            "The memory server is shutting down; nothing was changed. Do not retry {tool} now."
        ),
        _ => format!("{tool} failed: {error}."),
    };
    CallToolResult::error(vec![ContentBlock::text(text)])
}

/// A memory as the model sees it: no namespace (it is fixed), a readable
/// time.
fn record_view(r: &MemoryRecord) -> Value {
    let mut v = json!({
        "category": r.category,
        "key": r.key,
        "value": r.value,
        "updated_at": utc_timestamp(r.updated_at_ms),
    });
    if let (Some(meta), Value::Object(map)) = (&r.metadata, &mut v) {
        map.insert("metadata".into(), meta.clone());
    }
    v
}

/// `2026-05-01T09:30:00Z` for milliseconds since the Unix epoch (UTC, whole
/// seconds). Days to civil date after Howard Hinnant's `civil_from_days`.
fn utc_timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3_600,
        of_day % 3_600 / 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_civil_dates() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(1_709_210_096_789), "2024-02-29T12:34:56Z");
        assert_eq!(utc_timestamp(4_102_444_799_000), "2099-12-31T23:59:59Z");
        assert_eq!(utc_timestamp(-1_000), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn blank_categories_mean_none() {
        assert_eq!(optional(Some("  ".into())), None);
        assert_eq!(optional(None), None);
        assert_eq!(optional(Some("prefs".into())).as_deref(), Some("prefs"));
    }

    #[test]
    fn tool_errors_name_the_field() {
        let r = tool_error(
            "store_memory",
            Error::InvalidInput {
                field: "key",
                reason: "must not be empty".into(),
            },
        );
        assert_eq!(r.is_error, Some(true));
        let text = serde_json::to_string(&r.content).unwrap_or_default();
        assert!(text.contains("`key`"), "{text}");
    }
}
