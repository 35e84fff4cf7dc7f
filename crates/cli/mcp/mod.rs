//! `mnemo mcp`: a Model Context Protocol server over stdio.
//!
//! An MCP host (LiveKit Agents, Claude Desktop, any MCP client) starts
//! `mnemo --db PATH --namespace NAME mcp` as a child process and talks
//! JSON-RPC over its stdin/stdout, one message a line.
//!
//! - `framing`: the pipes: every line read with a cap and answered (a line
//!   rmcp cannot take gets a JSON-RPC error here); one writer of stdout.
//! - `tools`: the five memory tools on one [`Memory`](mnemo::Memory) engine
//!   and one namespace, fixed by `--namespace` for the life of the process
//!   (never a tool argument, so a model cannot reach another namespace).
//! - this file: start-up, and the end of a session. When the client closes
//!   stdin, or on SIGTERM / SIGINT, the server calls
//!   [`Memory::shutdown`](mnemo::Memory::shutdown) (flush and index
//!   everything accepted) and exits 0.
//!
//! stdout carries the protocol only; logs go to stderr (set up in `main`).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use rmcp::ServiceExt;

mod framing;
mod tools;

/// How long, once the session is over, the answers already queued may take
/// to reach stdout (a host that stopped reading must not keep us alive).
const DRAIN_STDOUT: Duration = Duration::from_secs(5);

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
    // A server never exits over journal damage: it says so in the log.
    for message in crate::status::journal_damage() {
        tracing::error!("{message}");
    }

    // Listen for signals before serving, so one that arrives during the
    // handshake already takes the orderly path.
    let signal = shutdown_signal()?;

    let server = tools::MnemoServer::new(memory.clone(), namespace);
    let (stdin, stdout) = rmcp::transport::stdio_pipes();
    let (transport, writer) = framing::start(stdin, stdout, tools::check_call);
    let session = async {
        let running = server.serve(transport).await.context("MCP handshake")?;
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
            // rmcp has handed over its last answers; see them out.
            match tokio::time::timeout(DRAIN_STDOUT, writer).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "writing stdout"),
                Ok(Err(e)) => tracing::warn!(error = %e, "stdout writer task"),
                Err(_) => tracing::warn!("stdout not drained in time; the host stopped reading"),
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
