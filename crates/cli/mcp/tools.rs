//! The five memory tools `mnemo mcp` serves, on one [`Memory`] engine and
//! one fixed namespace.
//!
//! - `store_memory` and `forget_memory` return as soon as the engine accepted
//!   the change (microseconds); they never await the receipt. The change is
//!   readable by the very next call and is committed in the background.
//! - Reads run on the blocking pool; `recall_memory` stops waiting for its
//!   search when the host cancels the request.
//! - `list_memories` is paged, and it and `recall_memory` stop adding
//!   memories before their answer passes [`ANSWER_BUDGET`].
//! - [`check_call`] is the framing layer's check of a `tools/call` before
//!   rmcp sees it: arguments that do not fit the tool are a JSON-RPC
//!   `-32602`, and `store_memory` metadata with an integer beyond 64 bits is
//!   refused while its text is still at hand.

use std::sync::Arc;

use mnemo::{Error, ListPage, Memory, MemoryRecord, SaveRequest};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_handler, tool_router, RoleServer, ServerHandler};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

/// Results `recall_memory` returns when the model gives no `limit`.
const DEFAULT_RECALL_LIMIT: u32 = 5;
/// The most results one `recall_memory` call may ask for.
const MAX_RECALL_LIMIT: u32 = 50;
/// Memories per `list_memories` page when the model gives no `limit`.
const DEFAULT_LIST_LIMIT: usize = 20;
/// The most memories one `list_memories` page may ask for.
const MAX_LIST_LIMIT: usize = 100;

/// The most bytes of memories one `list_memories` or `recall_memory` answer
/// carries, counted as they travel (JSON text escaped inside the JSON-RPC
/// line). Far below the 16 MiB line the server itself accepts, so a host
/// with the same cap reads every answer. At least one memory always goes in
/// (one memory is at most about 0.5 MiB on the wire).
const ANSWER_BUDGET: usize = 1024 * 1024;
/// Room kept in [`ANSWER_BUDGET`] for the envelope around the memories: the
/// JSON-RPC and tool-result fields, the count and a cursor (≤ 1 KiB).
const ENVELOPE_BYTES: usize = 2 * 1024;

/// What the host shows the model about this server as a whole.
const INSTRUCTIONS: &str = "Long-term memory about the user and the conversation, \
kept across sessions. Save durable facts the user shares (preferences, people, plans, biography) \
with store_memory as soon as you learn them; it returns at once, so call it mid-turn without \
waiting. Before answering questions that may depend on what you learned earlier, call \
recall_memory with a few keywords. A memory is addressed by (category, key): saving the same \
pair again replaces it. Everything you save is visible to the next call immediately.";

/// The MCP service: one engine, one fixed namespace.
#[derive(Clone)]
pub(crate) struct MnemoServer {
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
    #[serde(default)]
    #[schemars(
        range(min = 1, max = 100),
        description = "How many memories to return: 1 to 100. Default 20."
    )]
    limit: Option<usize>,
    #[serde(default)]
    #[schemars(
        description = "Continue after the previous page: pass its next_cursor exactly. Leave \
out to start from the beginning."
    )]
    cursor: Option<String>,
}

#[tool_router(router = tool_router)]
impl MnemoServer {
    pub(crate) fn new(memory: Memory, namespace: &str) -> Self {
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
                // Never awaited by the tool call. News about the save after
                // it was accepted goes to stderr: a stalled writer (the save
                // is kept and still committed), or a row the database
                // rejected (kept in `dead_letters`).
                tokio::spawn(async move {
                    match receipt.durable().await {
                        Ok(_) | Err(Error::Closed) => {}
                        Err(e @ Error::NotCommittedYet { .. }) => {
                            tracing::warn!(seq, error = %e, "an accepted memory is not committed yet");
                        }
                        Err(e) => {
                            tracing::error!(seq, error = %e, "an accepted memory was not committed");
                        }
                    }
                });
                json_result(accepted(&self.memory, seq))
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
        context: RequestContext<RoleServer>,
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
            .read(TOOL, &context, move |memory, ns| {
                // A test hook: a slow search (see tests/mcp.rs); compiled
                // in only when the tests turn on fail points.
                fail::fail_point!("mcp::recall");
                memory.search(ns, &query, category.as_deref(), limit as usize)
            })
            .await;
        match hits {
            Ok(hits) => {
                let (memories, cut) = within_budget(hits.iter().map(|h| &h.record));
                let mut answer = json!({"count": memories.len(), "memories": memories});
                if cut < hits.len() {
                    answer["truncated"] = Value::Bool(true);
                }
                json_result(answer)
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
    async fn get_memory(
        &self,
        Parameters(args): Parameters<MemoryKeyArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        const TOOL: &str = "get_memory";
        let got = self
            .read(TOOL, &context, move |memory, ns| {
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
        description = "List saved memories, or those of one category, ordered by category and \
key, one page at a time (20 by default, at most 100). Returns {\"count\":N,\"memories\":[...],\
\"next_cursor\":C}; when next_cursor is not null, more follow: call again with cursor set to \
it. Prefer recall_memory to find something specific.",
        annotations(
            title = "List memories",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn list_memories(
        &self,
        Parameters(args): Parameters<ListMemoriesArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        const TOOL: &str = "list_memories";
        let limit = args.limit.unwrap_or(DEFAULT_LIST_LIMIT);
        if !(1..=MAX_LIST_LIMIT).contains(&limit) {
            return tool_error(
                TOOL,
                Error::InvalidInput {
                    field: "limit",
                    reason: format!("must be between 1 and {MAX_LIST_LIMIT} (got {limit})"),
                },
            );
        }
        let category = optional(args.category);
        // A blank cursor, as some hosts send for "none", starts at the top.
        let cursor = args.cursor.filter(|c| !c.trim().is_empty());
        let listed = self
            .read(TOOL, &context, move |memory, ns| {
                memory.list_page(ns, category.as_deref(), Some(limit), cursor.as_deref())
            })
            .await;
        match listed {
            Ok(page) => {
                let (memories, kept) = within_budget(page.records.iter());
                // Cut short by the budget: the next page starts after the
                // last memory sent, not after the last one read.
                let next_cursor = if kept < page.records.len() {
                    page.records[..kept]
                        .last()
                        .map(|r| ListPage::cursor_after(&r.category, &r.key))
                } else {
                    page.next_cursor
                };
                json_result(json!({
                    "count": memories.len(),
                    "memories": memories,
                    "next_cursor": next_cursor,
                }))
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
            Ok(receipt) => json_result(accepted(&self.memory, receipt.seq())),
            Err(e) => tool_error(TOOL, e),
        }
    }
}

/// The answer to an accepted `store_memory` / `forget_memory`. While the
/// engine's writer cannot commit (the database locked by another process,
/// a full disk), it says so: the change is kept and readable, and will be
/// committed when the fault clears, which the model may tell the user.
fn accepted(memory: &Memory, seq: u64) -> Value {
    let stats = memory.stats();
    match stats.writer_stall_reason {
        None => json!({"status": "accepted", "seq": seq}),
        Some(reason) => json!({
            "status": "accepted",
            "seq": seq,
            "note": format!(
                "kept and readable now, but not committed yet: the database has refused writes \
                 for {:.0} s ({reason}); it is committed as soon as it accepts them",
                stats.writer_stalled_ms as f64 / 1e3
            ),
        }),
    }
}

impl MnemoServer {
    /// Runs a read on the blocking pool (reads may touch SQLite, and the
    /// runtime's worker thread also carries the protocol), and stops waiting
    /// for it when the host cancels the request or the session ends: the
    /// read itself runs to its end on its thread, and its answer is dropped
    /// (rmcp sends nothing for a cancelled request).
    async fn read<T, F>(
        &self,
        tool: &'static str,
        context: &RequestContext<RoleServer>,
        f: F,
    ) -> Result<T, CallToolResult>
    where
        T: Send + 'static,
        F: FnOnce(&Memory, &str) -> mnemo::Result<T> + Send + 'static,
    {
        let memory = self.memory.clone();
        let namespace = self.namespace.clone();
        let read = tokio::task::spawn_blocking(move || f(&memory, &namespace));
        tokio::select! {
            joined = read => match joined {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(e)) => Err(tool_error(tool, e)),
                Err(e) => Err(CallToolResult::error(vec![ContentBlock::text(format!(
                    "{tool} failed inside the memory server ({e}); try again."
                ))])),
            },
            () = context.ct.cancelled() => {
                tracing::debug!(tool, "request cancelled; not waiting for the read");
                Err(CallToolResult::error(vec![ContentBlock::text(format!(
                    "{tool} was cancelled."
                ))]))
            }
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

/// The framing layer's check of a `tools/call` of `tool` (see
/// `framing.rs`): `Err` with what to fix, answered as JSON-RPC `-32602`
/// with the request's id. `arguments` is `None` when the call has none;
/// `line` is the whole message as it arrived. Unknown tools pass (rmcp
/// answers them).
pub(crate) fn check_call(tool: &str, arguments: Option<&Value>, line: &[u8]) -> Result<(), String> {
    let empty = Value::Object(serde_json::Map::new());
    let args = arguments.unwrap_or(&empty);
    // The same deserialisation rmcp runs before calling the tool, which
    // would answer a failure as a tool result.
    let fits = match tool {
        "store_memory" => StoreMemoryArgs::deserialize(args).map(drop),
        "recall_memory" => RecallMemoryArgs::deserialize(args).map(drop),
        "get_memory" | "forget_memory" => MemoryKeyArgs::deserialize(args).map(drop),
        "list_memories" => ListMemoriesArgs::deserialize(args).map(drop),
        _ => return Ok(()),
    };
    fits.map_err(|e| format!("the arguments do not fit {tool}: {e}"))?;
    if tool == "store_memory" {
        check_metadata_text(line)?;
    }
    Ok(())
}

/// Refuses `store_memory` metadata with an integer beyond 64 bits, read
/// from the line as written: by the time the tool runs, rmcp has parsed it
/// into a rounded float.
fn check_metadata_text(line: &[u8]) -> Result<(), String> {
    use serde_json::value::RawValue;
    #[derive(Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        params: &'a RawValue,
    }
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(borrow, default)]
        arguments: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Arguments<'a> {
        #[serde(borrow, default)]
        metadata: Option<&'a RawValue>,
    }
    let metadata = serde_json::from_slice::<Message>(line)
        .and_then(|m| serde_json::from_str::<Params>(m.params.get()))
        .and_then(|p| match p.arguments {
            Some(a) => serde_json::from_str::<Arguments>(a.get()).map(|a| a.metadata),
            None => Ok(None),
        })
        .map_err(|e| format!("the message does not read as a tools/call: {e}"))?;
    match metadata.map(|m| mnemo::model::check_metadata_json(m.get())) {
        Some(Err(Error::InvalidInput { field, reason })) => Err(format!(
            "`{field}` {reason}. Nothing was changed; fix `{field}` and call store_memory again"
        )),
        Some(Err(e)) => Err(e.to_string()),
        None | Some(Ok(())) => Ok(()),
    }
}

/// An optional category as models send it: absent, null or blank means none.
fn optional(category: Option<String>) -> Option<String> {
    category.filter(|c| !c.trim().is_empty())
}

/// The views of `records`, in order, until the next would take the answer
/// past [`ANSWER_BUDGET`] on the wire; the first always goes in. Returns the
/// views and how many records they are.
fn within_budget<'a>(records: impl Iterator<Item = &'a MemoryRecord>) -> (Vec<Value>, usize) {
    let mut used = ENVELOPE_BYTES;
    let mut views = Vec::new();
    for record in records {
        let view = record_view(record);
        // The view's JSON text, escaped once more inside the line, and a
        // comma.
        let bytes = wire_len(&view.to_string()) + 1;
        if !views.is_empty() && used + bytes > ANSWER_BUDGET {
            break;
        }
        used += bytes;
        views.push(view);
    }
    let kept = views.len();
    (views, kept)
}

/// Bytes `text` takes as a JSON string's content, as serde_json escapes it:
/// `"` and `\` double, control characters become `\n`-style pairs or
/// `\u00XX`; everything else (non-ASCII included) is copied.
fn wire_len(text: &str) -> usize {
    text.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0x00..=0x1f => 6,
            _ => 1,
        })
        .sum()
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

    fn record(key: &str, value: &str) -> MemoryRecord {
        MemoryRecord {
            namespace: "n".into(),
            category: "c".into(),
            key: key.into(),
            value: value.into(),
            metadata: None,
            version: Some(1),
            updated_at_ms: 0,
        }
    }

    #[test]
    fn wire_length_counts_escapes_as_serde_json_writes_them() {
        for text in [
            "plain",
            "quote \" and \\ slash",
            "tab\tline\nnul\u{0}bell\u{7}",
            "اردو 中文 🎵",
        ] {
            let escaped = serde_json::to_string(text).unwrap_or_default();
            assert_eq!(wire_len(text), escaped.len() - 2, "{text:?}");
        }
    }

    #[test]
    fn answers_stop_at_the_budget_but_carry_one_memory() {
        let big = "\"".repeat(64 * 1024); // doubles on the wire
        let records: Vec<MemoryRecord> = (0..20).map(|i| record(&format!("k{i}"), &big)).collect();
        let (views, kept) = within_budget(records.iter());
        assert_eq!(views.len(), kept);
        assert!((1..20).contains(&kept), "{kept}");
        let answer = json!({"count": kept, "memories": views}).to_string();
        let line = serde_json::to_string(&answer).unwrap_or_default();
        assert!(
            line.len() + ENVELOPE_BYTES / 2 <= ANSWER_BUDGET,
            "{}",
            line.len()
        );
        let huge = "\u{1}".repeat(200 * 1024); // six bytes each on the wire
        let (views, kept) = within_budget([record("k", &huge)].iter());
        assert_eq!((views.len(), kept), (1, 1), "the first always goes in");
    }

    #[test]
    fn calls_whose_arguments_do_not_fit_or_hold_wide_integers_are_refused() {
        let line = |args: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"store_memory","arguments":{args}}}}}"#
            )
        };
        let ok = r#"{"category":"c","key":"k","value":"v","metadata":{"n":18446744073709551615}}"#;
        let args: Value = serde_json::from_str(ok).unwrap_or_default();
        assert_eq!(
            check_call("store_memory", Some(&args), line(ok).as_bytes()),
            Ok(())
        );

        let wide =
            r#"{"category":"c","key":"k","value":"v","metadata":{"n":18446744073709551616}}"#;
        let args: Value = serde_json::from_str(wide).unwrap_or_default();
        let refused = check_call("store_memory", Some(&args), line(wide).as_bytes());
        let refused = refused.err().unwrap_or_default();
        assert!(refused.contains("`metadata`"), "{refused}");
        assert!(refused.contains("beyond 64 bits"), "{refused}");

        let missing = check_call("get_memory", None, b"")
            .err()
            .unwrap_or_default();
        assert!(missing.contains("missing field `category`"), "{missing}");
        let wrong = json!({"query": 5});
        let wrong = check_call("recall_memory", Some(&wrong), b"")
            .err()
            .unwrap_or_default();
        assert!(wrong.contains("invalid type"), "{wrong}");
        assert_eq!(check_call("no_such_tool", None, b""), Ok(()));
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
