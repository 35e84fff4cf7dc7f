//! Line framing between the pipes and rmcp: every line a host sends gets an
//! answer, or is a message that by JSON-RPC gets none.
//!
//! rmcp's stdio transport drops a line that is not JSON without a word, so a
//! host whose request held a lone surrogate (`"\ud800"`), nesting deeper than
//! serde_json's 128 levels, or more than 16 MiB would wait forever for its
//! answer. This layer owns both pipes instead:
//!
//! - the **reader** task reads stdin a line at a time, never buffering more
//!   than [`MAX_LINE`] bytes of one line, and sorts each line: a message rmcp
//!   can take goes to it already parsed ([`LineTransport`]); anything else
//!   is answered here with a JSON-RPC error (table below);
//! - the **writer** task is the only writer of stdout: it takes rmcp's
//!   messages and this layer's answers from one queue and writes each as one
//!   whole line, so the two never interleave.
//!
//! | line | answer |
//! |---|---|
//! | blank | none (ignored) |
//! | not JSON (syntax, bad UTF-8, a lone surrogate, nesting past 128) | `-32700` Parse error |
//! | longer than [`MAX_LINE`] (discarded as it streams past) | `-32600` Invalid Request |
//! | JSON but not a JSON-RPC 2.0 request, notification or response (an array, no `"jsonrpc":"2.0"`, a bad `id` or `method`) | `-32600` Invalid Request |
//! | a request whose `params` do not fit its method; a `tools/call` without a string `name` and an object (or no) `arguments`, or whose arguments do not fit the tool ([`CallCheck`]) | `-32602` Invalid params |
//! | a notification or response that does not fit | none (JSON-RPC answers neither; answering a broken answer could start an error storm); logged |
//!
//! An error answer carries the request's `id` when it can be read: from the
//! parsed message, or, for a line that is not JSON or too long, from a
//! top-level `"id"` that comes whole before whatever is wrong (so the host
//! learns which request failed); otherwise `"id": null`.

use std::io;

use rmcp::model::{ClientRequest, JsonRpcMessage, JsonRpcRequest, RequestId};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::RoleServer;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The longest line (one JSON-RPC message, without its newline) the server
/// reads; a longer one is discarded as it streams past and answered
/// `-32600`. 16 MiB, rmcp's own cap.
pub(crate) const MAX_LINE: usize = 16 * 1024 * 1024;
/// Of a line too long to read, how much is kept to look for its `id`.
const ID_PREFIX: usize = 64 * 1024;
/// Lines buffered towards stdout: enough to ride out a burst of answers;
/// beyond it, senders wait for the host to read.
const OUT_QUEUE: usize = 256;
/// Parsed messages waiting for rmcp; the reader waits beyond it.
const IN_QUEUE: usize = 64;

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const INVALID_PARAMS: i64 = -32602;

/// UTF-8 byte order mark: some hosts start their output with one.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Checks a `tools/call` before rmcp sees it: the tool's name, its
/// arguments (`None` when absent or null), and the whole line as it arrived.
/// `Err` says what is wrong and is answered `-32602`.
pub(crate) type CallCheck = fn(&str, Option<&Value>, &[u8]) -> Result<(), String>;

/// Starts the reader and the writer on `input` and `output`. Returns rmcp's
/// transport and the writer task, which ends once every line queued for
/// stdout is written (after the reader reached the end of input and rmcp
/// dropped the transport), or when stdout fails.
pub(crate) fn start<R, W>(
    input: R,
    output: W,
    check: CallCheck,
) -> (LineTransport, JoinHandle<io::Result<()>>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (lines, queued) = mpsc::channel(OUT_QUEUE);
    let (messages, inbound) = mpsc::channel(IN_QUEUE);
    tokio::spawn(read_lines(input, messages, lines.clone(), check));
    let writer = tokio::spawn(write_lines(output, queued));
    (
        LineTransport {
            inbound,
            outbound: lines,
        },
        writer,
    )
}

/// rmcp's side of the framing: messages the reader parsed, and a queue to
/// the writer.
pub(crate) struct LineTransport {
    inbound: mpsc::Receiver<RxJsonRpcMessage<RoleServer>>,
    outbound: mpsc::Sender<Vec<u8>>,
}

impl Transport<RoleServer> for LineTransport {
    type Error = io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send + 'static {
        let outbound = self.outbound.clone();
        async move {
            let mut line = serde_json::to_vec(&item).map_err(io::Error::other)?;
            line.push(b'\n');
            outbound
                .send(line)
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "stdout is closed"))
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        self.inbound.recv().await
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.inbound.close();
        Ok(())
    }
}

/// Writes queued lines to `output`, each whole; flushes whenever the queue
/// runs dry.
async fn write_lines<W: AsyncWrite + Unpin>(
    mut output: W,
    mut queued: mpsc::Receiver<Vec<u8>>,
) -> io::Result<()> {
    while let Some(line) = queued.recv().await {
        output.write_all(&line).await?;
        if queued.is_empty() {
            output.flush().await?;
        }
    }
    output.flush().await
}

/// The reader task: sorts every line of `input` until its end (see the
/// module doc).
async fn read_lines<R: AsyncRead + Unpin>(
    input: R,
    messages: mpsc::Sender<RxJsonRpcMessage<RoleServer>>,
    lines: mpsc::Sender<Vec<u8>>,
    check: CallCheck,
) {
    let mut input = BufReader::with_capacity(64 * 1024, input);
    let mut line = Vec::new();
    loop {
        let verdict = match read_line(&mut input, &mut line, MAX_LINE).await {
            Ok(Read::Line) => sort(&line, check),
            Ok(Read::TooLong { prefix }) => {
                tracing::warn!(max = MAX_LINE, "discarded a message longer than the cap");
                Verdict::Answer(error_line(
                    salvage_id(&prefix),
                    INVALID_REQUEST,
                    format!(
                        "Invalid Request: the message is longer than {MAX_LINE} bytes; it was \
                         discarded unread"
                    ),
                ))
            }
            Ok(Read::End) => break,
            Err(e) => {
                tracing::error!(error = %e, "reading stdin");
                break;
            }
        };
        let sent = match verdict {
            Verdict::Skip => true,
            Verdict::Forward(message) => messages.send(*message).await.is_ok(),
            Verdict::Answer(answer) => lines.send(answer).await.is_ok(),
        };
        if !sent {
            break; // the session or stdout is gone
        }
        line.clear();
        // One large message must not pin its buffer for the whole session.
        if line.capacity() > 1024 * 1024 {
            line = Vec::new();
        }
    }
}

/// What [`read_line`] found.
#[derive(Debug, PartialEq)]
enum Read {
    /// A line (without its newline) is in the buffer. The input's last
    /// line counts even without a newline.
    Line,
    /// A line past the cap was read past and dropped; `prefix` is its start.
    TooLong { prefix: Vec<u8> },
    /// The input ended.
    End,
}

/// Reads one line into `line` (empty on entry), holding at most `max`
/// bytes of it: past that the rest streams by unbuffered up to its newline.
async fn read_line<R: AsyncBufRead + Unpin>(
    input: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<Read> {
    let mut too_long: Option<Vec<u8>> = None;
    loop {
        let available = input.fill_buf().await?;
        if available.is_empty() {
            return Ok(match too_long {
                Some(prefix) => Read::TooLong { prefix },
                None if line.is_empty() => Read::End,
                None => Read::Line,
            });
        }
        let newline = available.iter().position(|&b| b == b'\n');
        let take = newline.unwrap_or(available.len());
        match &mut too_long {
            Some(_) => {}
            None if line.len() + take > max => {
                let mut prefix = std::mem::take(line);
                prefix.truncate(ID_PREFIX);
                let room = ID_PREFIX - prefix.len();
                prefix.extend_from_slice(&available[..take.min(room)]);
                prefix.shrink_to_fit();
                too_long = Some(prefix);
            }
            None => line.extend_from_slice(&available[..take]),
        }
        let consumed = newline.map_or(available.len(), |at| at + 1);
        input.consume(consumed);
        if newline.is_some() {
            return Ok(match too_long {
                Some(prefix) => Read::TooLong { prefix },
                None => Read::Line,
            });
        }
    }
}

/// What to do with one line.
enum Verdict {
    /// Nothing: a blank line, or a notification or response that does not
    /// fit (JSON-RPC answers neither).
    Skip,
    /// Hand the message to rmcp.
    Forward(Box<RxJsonRpcMessage<RoleServer>>),
    /// Write this answer (a whole line).
    Answer(Vec<u8>),
}

/// Sorts one line (see the module doc).
fn sort(raw: &[u8], check: CallCheck) -> Verdict {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let raw = raw.strip_prefix(BOM).unwrap_or(raw);
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Verdict::Skip;
    }
    let value: Value = match serde_json::from_slice(raw) {
        Ok(value) => value,
        Err(e) => {
            return Verdict::Answer(error_line(
                salvage_id(raw),
                PARSE_ERROR,
                format!("Parse error: {e}"),
            ))
        }
    };
    let invalid = |id: Option<Value>, why: &str| {
        Verdict::Answer(error_line(
            id,
            INVALID_REQUEST,
            format!("Invalid Request: {why}"),
        ))
    };
    let Value::Object(object) = &value else {
        return invalid(
            None,
            if value.is_array() {
                "batches (JSON arrays) are not supported; send one message per line"
            } else {
                "a JSON-RPC 2.0 message is a JSON object"
            },
        );
    };
    if !object.contains_key("method")
        && (object.contains_key("result") || object.contains_key("error"))
    {
        // A response: never answered, whatever is wrong with it (answering
        // a broken answer can start an error storm between two peers).
        return parsed(value, None);
    }
    let id = match object.get("id") {
        None => None,
        Some(id) => match request_id(id) {
            Some(id) => Some(id),
            None => return invalid(None, "`id` must be a string or an integer"),
        },
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid(id, "`jsonrpc` must be \"2.0\"");
    }
    let method = match object.get("method") {
        Some(Value::String(method)) => method.as_str(),
        Some(_) => return invalid(id, "`method` must be a string"),
        None => {
            return invalid(
                id,
                "no `method`: not a request or notification (nor a response: no `result` or \
                 `error`)",
            )
        }
    };
    if object.contains_key("result") || object.contains_key("error") {
        return invalid(
            id,
            "a message has a `method` or a `result`/`error`, not both",
        );
    }
    let Some(id) = id else {
        // A notification: JSON-RPC never answers one.
        return parsed(value, None);
    };
    let bad_params = |why: String| {
        Verdict::Answer(error_line(
            Some(id.clone()),
            INVALID_PARAMS,
            format!("Invalid params: {why}"),
        ))
    };
    let params = object.get("params");
    if params.is_some_and(|p| !(p.is_object() || p.is_array() || p.is_null())) {
        return bad_params("`params` must be an object".into());
    }
    if method == "tools/call" {
        let Some(Value::Object(params)) = params else {
            return bad_params(
                "tools/call takes `params`: an object with the tool's `name` and its \
                 `arguments`"
                    .into(),
            );
        };
        let Some(Value::String(name)) = params.get("name") else {
            return bad_params("`name` must be a string: the tool to call".into());
        };
        let arguments = match params.get("arguments") {
            None | Some(Value::Null) => None,
            Some(arguments @ Value::Object(_)) => Some(arguments),
            Some(_) => return bad_params("`arguments` must be an object".into()),
        };
        if let Err(why) = check(name, arguments, raw) {
            return bad_params(why);
        }
    }
    parsed(value, Some(id))
}

/// The client requests rmcp parses into their own types. One of them that
/// parses only as rmcp's catch-all `CustomRequest` has params that do not
/// fit, which rmcp would answer "method not found".
const TYPED_METHODS: [&str; 15] = [
    "initialize",
    "ping",
    "server/discover",
    "completion/complete",
    "logging/setLevel",
    "prompts/get",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "subscriptions/listen",
    "tools/call",
    "tools/list",
];

/// The message rmcp takes for `value`; a request of `id` that does not fit
/// its method is answered `-32602`, anything else that does not fit is
/// dropped (JSON-RPC answers neither notifications nor responses).
fn parsed(value: Value, id: Option<Value>) -> Verdict {
    match serde_json::from_value::<RxJsonRpcMessage<RoleServer>>(value) {
        Ok(JsonRpcMessage::Request(JsonRpcRequest {
            request: ClientRequest::CustomRequest(custom),
            ..
        })) if TYPED_METHODS.contains(&custom.method.as_str()) => Verdict::Answer(error_line(
            id,
            INVALID_PARAMS,
            format!(
                "Invalid params: the `params` of {} do not fit the method",
                custom.method
            ),
        )),
        Ok(message) => Verdict::Forward(Box::new(message)),
        Err(e) => match id {
            Some(id) => Verdict::Answer(error_line(
                Some(id),
                INVALID_PARAMS,
                format!("Invalid params: {e}"),
            )),
            None => {
                tracing::debug!(error = %e, "ignored a notification or response that does not fit");
                Verdict::Skip
            }
        },
    }
}

/// `id` as rmcp would answer it (a string, or an integer that fits `i64`),
/// or `None` if it is not a valid request id.
fn request_id(id: &Value) -> Option<Value> {
    serde_json::from_value::<RequestId>(id.clone())
        .ok()
        .map(RequestId::into_json_value)
}

/// A JSON-RPC error answer, as one line (fields in the usual order).
fn error_line(id: Option<Value>, code: i64, message: String) -> Vec<u8> {
    #[derive(Serialize)]
    struct Answer {
        jsonrpc: &'static str,
        id: Value,
        error: Value,
    }
    let answer = Answer {
        jsonrpc: "2.0",
        id: id.unwrap_or(Value::Null),
        error: json!({"code": code, "message": message}),
    };
    // Serialising plain values cannot fail; the fallback is never written.
    let mut line = serde_json::to_vec(&answer).unwrap_or_default();
    line.push(b'\n');
    line
}

/// The `id` of a message that could not be parsed: a top-level `"id"`
/// member whose value comes whole before whatever is wrong, if it is a
/// valid request id. Scans without recursion, so nesting depth costs
/// nothing.
fn salvage_id(text: &[u8]) -> Option<Value> {
    let mut s = Scan { text, at: 0 };
    s.space();
    s.eat(b'{')?;
    loop {
        s.space();
        let key = s.string()?;
        s.space();
        s.eat(b':')?;
        s.space();
        let start = s.at;
        s.value()?;
        if key == b"\"id\"" {
            let id: Value = serde_json::from_slice(&text[start..s.at]).ok()?;
            return request_id(&id);
        }
        s.space();
        s.eat(b',')?;
    }
}

/// A cursor over JSON text for [`salvage_id`].
struct Scan<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Scan<'a> {
    fn space(&mut self) {
        while self.text.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.text.get(self.at) == Some(&byte)).then(|| self.at += 1)
    }

    /// A string with its quotes; escapes are stepped over, not checked.
    fn string(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        self.eat(b'"')?;
        loop {
            match self.text.get(self.at)? {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    return self.text.get(start..self.at);
                }
                _ => self.at += 1,
            }
        }
    }

    /// Steps over one value: a string or a bracketed value whole, a bare
    /// one up to the `,` or `}` after it.
    fn value(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            match *self.text.get(self.at)? {
                b'"' => {
                    self.string()?;
                    if depth == 0 {
                        return Some(());
                    }
                }
                b'{' | b'[' => {
                    depth += 1;
                    self.at += 1;
                }
                // Closes the object around a bare value.
                b'}' | b']' if depth == 0 => return Some(()),
                b'}' | b']' => {
                    depth -= 1;
                    self.at += 1;
                    if depth == 0 {
                        return Some(());
                    }
                }
                b',' if depth == 0 => return Some(()),
                _ => self.at += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_check(_: &str, _: Option<&Value>, _: &[u8]) -> Result<(), String> {
        Ok(())
    }

    /// The answer to a line, parsed; `None` if the line is forwarded or
    /// skipped.
    fn answer(line: &str) -> Option<Value> {
        match sort(line.as_bytes(), no_check) {
            Verdict::Answer(bytes) => {
                assert_eq!(bytes.last(), Some(&b'\n'));
                assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
                serde_json::from_slice(&bytes).ok()
            }
            Verdict::Forward(_) | Verdict::Skip => None,
        }
    }

    fn code_and_id(line: &str) -> (i64, Value) {
        let a = answer(line).unwrap_or_else(|| panic!("no answer to {line}"));
        assert_eq!(a["jsonrpc"], "2.0");
        (
            a["error"]["code"].as_i64().unwrap_or_default(),
            a["id"].clone(),
        )
    }

    #[test]
    fn lines_that_are_not_json_are_parse_errors_with_the_id_when_it_can_be_read() {
        let deep = format!(
            r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{}1{}}}"#,
            "[".repeat(130),
            "]".repeat(130)
        );
        for (line, id) in [
            ("{", Value::Null),
            ("not json", Value::Null),
            (
                r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"recall_memory","arguments":{"query":"\ud800"}}}"#,
                json!(7),
            ),
            (
                r#"{"jsonrpc":"2.0","method":"x","params":{"q":"\ud800"},"id":"late"}"#,
                json!("late"),
            ),
            (
                r#"{"id": "a\"b", "jsonrpc": "2.0", "method": "#,
                json!("a\"b"),
            ),
            (&deep, json!(9)),
        ] {
            assert_eq!(code_and_id(line), (PARSE_ERROR, id), "{line}");
        }
        let bad_utf8 = b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"\xff\"}";
        match sort(bad_utf8, no_check) {
            Verdict::Answer(bytes) => {
                let a: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                assert_eq!(
                    (a["error"]["code"].as_i64(), a["id"].clone()),
                    (Some(PARSE_ERROR), json!(3))
                );
            }
            _ => panic!("bad UTF-8 must be answered"),
        }
    }

    #[test]
    fn json_that_is_not_a_message_is_an_invalid_request() {
        for (line, id) in [
            ("[1, 2]", Value::Null),
            ("[]", Value::Null),
            ("\"x\"", Value::Null),
            ("42", Value::Null),
            (r#"{"id":1,"method":"ping"}"#, json!(1)),
            (r#"{"jsonrpc":"1.0","id":"a","method":"ping"}"#, json!("a")),
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
                Value::Null,
            ),
            (r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, Value::Null),
            (
                r#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#,
                Value::Null,
            ),
            (r#"{"jsonrpc":"2.0","id":2,"method":5}"#, json!(2)),
            (
                r#"{"jsonrpc":"2.0","id":3,"method":"ping","result":{}}"#,
                json!(3),
            ),
            (r#"{"jsonrpc":"2.0","id":4}"#, json!(4)),
            (r#"{"jsonrpc":"2.0"}"#, Value::Null),
        ] {
            assert_eq!(code_and_id(line), (INVALID_REQUEST, id), "{line}");
        }
    }

    #[test]
    fn tools_calls_with_bad_params_are_invalid_params_with_the_id() {
        let reject = |_: &str, _: Option<&Value>, _: &[u8]| Err("missing field `key`".to_owned());
        for line in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":5}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[]}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":[1]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":5}}"#,
        ] {
            assert_eq!(code_and_id(line), (INVALID_PARAMS, json!(1)), "{line}");
        }
        let fits = r#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"t"}}"#;
        assert!(matches!(
            sort(fits.as_bytes(), no_check),
            Verdict::Forward(_)
        ));
        match sort(fits.as_bytes(), reject) {
            Verdict::Answer(bytes) => {
                let a: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                assert_eq!(a["id"], "x");
                assert_eq!(a["error"]["code"], INVALID_PARAMS);
                assert!(a["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("`key`"));
            }
            _ => panic!("the check's refusal is answered"),
        }
    }

    #[test]
    fn good_messages_go_to_rmcp_and_blank_lines_and_odd_notifications_are_skipped() {
        for line in [
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            "\u{feff}{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}\r",
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":8,"method":"no/such/method"}"#,
            r#"{"jsonrpc":"2.0","id":8,"result":{}}"#,
        ] {
            assert!(
                matches!(sort(line.as_bytes(), no_check), Verdict::Forward(_)),
                "{line}"
            );
        }
        for line in [
            "",
            "   ",
            "\r",
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":5}"#,
        ] {
            assert!(
                matches!(sort(line.as_bytes(), no_check), Verdict::Skip),
                "{line:?}"
            );
        }
        // Answers, even broken ones, are never answered back.
        for line in [
            r#"{"jsonrpc":"2.0","id":5,"result":{},"error":{}}"#,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#,
            r#"{"id":"x","result":5}"#,
            r#"{"jsonrpc":"1.0","id":true,"error":"no"}"#,
        ] {
            assert!(
                !matches!(sort(line.as_bytes(), no_check), Verdict::Answer(_)),
                "{line:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_line_past_the_cap_streams_by_and_the_next_line_is_whole() -> io::Result<()> {
        let mut input = Vec::new();
        input
            .extend_from_slice(br#"{"id":5,"jsonrpc":"2.0","method":"tools/call","params":{"x":""#);
        input.extend(std::iter::repeat_n(b'a', 3_000));
        input.extend_from_slice(b"\"}}\nshort\nlast-without-newline");
        // A small read buffer, so the long line arrives in many pieces.
        let mut reader = BufReader::with_capacity(64, &input[..]);
        let mut line = Vec::new();
        let first = read_line(&mut reader, &mut line, 1_000).await?;
        let Read::TooLong { prefix } = first else {
            panic!("expected too long, got {first:?}")
        };
        assert!(
            line.is_empty() && line.capacity() == 0,
            "the long line is not kept"
        );
        assert!(prefix.len() <= ID_PREFIX);
        assert_eq!(salvage_id(&prefix), Some(json!(5)));
        assert_eq!(read_line(&mut reader, &mut line, 1_000).await?, Read::Line);
        assert_eq!(line, b"short");
        line.clear();
        assert_eq!(read_line(&mut reader, &mut line, 1_000).await?, Read::Line);
        assert_eq!(line, b"last-without-newline");
        line.clear();
        assert_eq!(read_line(&mut reader, &mut line, 1_000).await?, Read::End);
        Ok(())
    }

    #[test]
    fn ids_are_salvaged_only_when_whole_and_valid() {
        for (text, id) in [
            (r#"{"id":12,"x":"\ud800"}"#, Some(json!(12))),
            (r#"{"a":{"b":[1,{"id":3}]},"id":"s","#, Some(json!("s"))),
            (r#"{"a":"}\"","id":4"#, None), // the id's value may go on: 45
            (r#"{"a":"}\"","id":4,"#, Some(json!(4))),
            (r#"{"id":1e400}"#, None),
            (r#"{"id":null}"#, None),
            (r#"{"ID":1}"#, None),
            (r#"[{"id":1}]"#, None),
            (r#"{"id":99999999999999999999}"#, None),
        ] {
            assert_eq!(salvage_id(text.as_bytes()), id, "{text}");
        }
    }
}
