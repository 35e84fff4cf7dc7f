//! `mnemo export` / `mnemo import`: memories as JSON Lines.
//!
//! One memory a line, an object with `namespace`, `category`, `key`, `value`
//! and `metadata` (an object, or null). Export walks namespaces in order and
//! each namespace by category and key, a page at a time (memory stays
//! bounded whatever the database holds), so exporting, importing into an
//! empty database and exporting again gives the same bytes.

use std::collections::VecDeque;
use std::io::{BufRead, BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use mnemo::{Config, Error, ListPage, Memory, Receipt, ReceiptStatus, SaveRequest, WriteOutcome};
use serde::{Deserialize, Serialize};

use crate::status::{Exit, NOT_COMMITTED_YET};
use crate::{open, open_with, print_json};

/// One exported memory.
#[derive(Serialize)]
struct Line<'a> {
    namespace: &'a str,
    category: &'a str,
    key: &'a str,
    value: &'a str,
    metadata: &'a Option<serde_json::Value>,
}

/// One line to import. Unknown fields are an error, so a misspelt field is
/// not silently dropped.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    #[serde(default)]
    namespace: Option<String>,
    category: String,
    key: String,
    value: String,
    #[serde(default)]
    metadata: Option<serde_json::Value>,
}

/// `mnemo export`: every namespace, or only `namespace` when given.
pub(crate) async fn export(db: &Path, namespace: Option<&str>) -> Result<()> {
    let memory = open(db)?;
    let result = write_export(&memory, namespace);
    memory.shutdown().await?;
    let (namespaces, memories) = result?;
    eprintln!("exported {memories} memories from {namespaces} namespace(s)");
    Ok(())
}

fn write_export(memory: &Memory, namespace: Option<&str>) -> Result<(usize, usize)> {
    let namespaces = match namespace {
        Some(ns) => vec![ns.to_owned()],
        None => memory.namespaces()?,
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut count = 0;
    for ns in &namespaces {
        let mut cursor: Option<String> = None;
        loop {
            let page = memory.list_page(ns, None, Some(ListPage::MAX_LIMIT), cursor.as_deref())?;
            for r in &page.records {
                let line = Line {
                    namespace: &r.namespace,
                    category: &r.category,
                    key: &r.key,
                    value: &r.value,
                    metadata: &r.metadata,
                };
                serde_json::to_writer(&mut out, &line)?;
                out.write_all(b"\n")?;
                count += 1;
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    out.flush()?;
    Ok((namespaces.len(), count))
}

/// What an import did.
#[derive(Debug, Default, Serialize)]
struct Tally {
    /// Lines holding a memory (blank lines are not counted).
    lines: u64,
    inserted: u64,
    updated: u64,
    unchanged: u64,
    /// Lines replaced by a later save of the same key: a later line in the
    /// same batch, or a newer save another engine accepted.
    superseded: u64,
    /// Lines accepted and kept in the crash journal but not committed in
    /// time (a transient fault); the next open of the database commits them.
    not_committed_yet: u64,
    /// Lines whose save was accepted but not committed.
    failed: u64,
    /// How often `save` answered `Overloaded` and the import waited for
    /// earlier saves to commit before retrying.
    overloaded_waits: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failures: Vec<String>,
}

impl Tally {
    fn settle(&mut self, line: u64, result: mnemo::Result<WriteOutcome>) {
        match result {
            Ok(WriteOutcome::Inserted { .. }) => self.inserted += 1,
            Ok(WriteOutcome::Updated { .. }) => self.updated += 1,
            Ok(WriteOutcome::Unchanged { .. }) => self.unchanged += 1,
            Ok(WriteOutcome::Superseded { .. } | WriteOutcome::Outdated) => self.superseded += 1,
            Ok(other) => {
                self.failed += 1;
                self.failures
                    .push(format!("line {line}: unexpected outcome {other:?}"));
            }
            Err(Error::NotCommittedYet { .. }) => self.not_committed_yet += 1,
            Err(e) => {
                self.failed += 1;
                self.failures.push(format!("line {line}: {e}"));
            }
        }
    }

    fn summary(&self) -> String {
        let mut summary = format!(
            "{} inserted, {} updated, {} unchanged, {} superseded by a later save, {} failed",
            self.inserted, self.updated, self.unchanged, self.superseded, self.failed
        );
        if self.not_committed_yet > 0 {
            summary.push_str(&format!(
                ", {} kept but not committed yet",
                self.not_committed_yet
            ));
        }
        summary
    }
}

/// Receipts of accepted lines, oldest first, settled as they resolve.
struct InFlight {
    receipts: VecDeque<(u64, Receipt)>,
}

impl InFlight {
    /// Settles the receipts at the front that have resolved (they resolve
    /// roughly in order), keeping the queue short on long imports.
    fn settle_ready(&mut self, tally: &mut Tally) {
        while let Some((_, r)) = self.receipts.front() {
            if matches!(r.status(), ReceiptStatus::Accepted) {
                break;
            }
            if let Some((line, r)) = self.receipts.pop_front() {
                tally.settle(line, futures_ready(&r));
            }
        }
    }

    /// Waits for the oldest receipt to resolve and settles it. `false` if
    /// none is in flight.
    async fn settle_oldest(&mut self, tally: &mut Tally) -> bool {
        match self.receipts.pop_front() {
            Some((line, r)) => {
                tally.settle(line, r.durable().await);
                true
            }
            None => false,
        }
    }
}

/// The outcome of a receipt known to be resolved.
fn futures_ready(r: &Receipt) -> mnemo::Result<WriteOutcome> {
    match r.status() {
        ReceiptStatus::Durable(o) | ReceiptStatus::Indexed(o) => Ok(o),
        ReceiptStatus::Failed(f) => Err(f.into()),
        other => Err(Error::WriteFailed {
            reason: format!("receipt not resolved: {other:?}"),
        }),
    }
}

/// `mnemo import PATH|-`.
pub(crate) async fn import(
    db: &Path,
    default_ns: &str,
    input: &Path,
    max_pending: Option<usize>,
    json: bool,
) -> Result<()> {
    let reader: Box<dyn BufRead> = if input.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let file =
            std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
        Box::new(std::io::BufReader::new(file))
    };
    let mut config = crate::config_for(db);
    if let Some(n) = max_pending {
        config.max_pending = n;
        config.max_batch = config.max_batch.min(n);
    }
    let memory = open_with(config)?;
    let mut tally = Tally::default();
    let mut flight = InFlight {
        receipts: VecDeque::new(),
    };
    let fed = feed(&memory, default_ns, reader, &mut tally, &mut flight).await;
    // Whether the input was good or not: every accepted line is committed
    // before we report.
    memory.flush();
    while flight.settle_oldest(&mut tally).await {}
    let stopped = memory.shutdown().await;
    if let Err(e) = fed {
        let imported = tally.inserted + tally.updated + tally.unchanged + tally.superseded;
        return Err(e.context(format!(
            "import stopped; the {imported} line(s) before it are saved and durable"
        )));
    }
    stopped?;
    if json {
        print_json(&tally)?;
    } else {
        println!("imported {} lines: {}", tally.lines, tally.summary());
        for f in &tally.failures {
            println!("  {f}");
        }
    }
    if tally.failed > 0 {
        bail!("{} line(s) could not be committed", tally.failed);
    }
    if tally.not_committed_yet > 0 {
        return Err(Exit {
            status: NOT_COMMITTED_YET,
            message: format!(
                "{} line(s) are accepted but not committed yet (a transient fault outlasted the \
                 wait). They are kept in the crash journal beside the database and will be \
                 committed by the next open of {} (any mnemo command on it); nothing needs to be \
                 imported again",
                tally.not_committed_yet,
                Config::new(db).shown_path().display()
            ),
        }
        .into());
    }
    Ok(())
}

/// Reads lines and saves each; stops at the first bad line.
async fn feed(
    memory: &Memory,
    default_ns: &str,
    reader: Box<dyn BufRead>,
    tally: &mut Tally,
    flight: &mut InFlight,
) -> Result<()> {
    for (i, line) in reader.lines().enumerate() {
        let n = i as u64 + 1;
        let line = line.with_context(|| format!("line {n}: reading input"))?;
        // A UTF-8 byte order mark (as some Windows editors write) may open
        // the input; JSON itself never starts with one.
        let line = match (n, line.strip_prefix('\u{feff}')) {
            (1, Some(rest)) => rest,
            _ => line.as_str(),
        };
        if line.trim().is_empty() {
            continue;
        }
        let parsed: ImportLine =
            serde_json::from_str(line).with_context(|| format!("line {n}: not a memory"))?;
        if parsed.metadata.is_some() {
            // Every other field is a string, so an integer literal on the
            // line is in the metadata; parsed, a wide one became a float.
            mnemo::model::check_metadata_json(line).with_context(|| format!("line {n}"))?;
        }
        let request = SaveRequest {
            namespace: parsed.namespace.unwrap_or_else(|| default_ns.to_owned()),
            category: parsed.category,
            key: parsed.key,
            value: parsed.value,
            metadata: parsed.metadata.filter(|m| !m.is_null()),
        };
        let receipt = loop {
            match memory.save(request.clone()) {
                Ok(r) => break r,
                Err(Error::Overloaded { .. }) => {
                    // Room comes back as earlier saves commit: ask for a
                    // flush and wait for the oldest of ours.
                    tally.overloaded_waits += 1;
                    memory.flush();
                    flight.settle_ready(tally);
                    if !flight.settle_oldest(tally).await {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                Err(e) => return Err(anyhow::Error::new(e).context(format!("line {n}"))),
            }
        };
        tally.lines += 1;
        flight.receipts.push_back((n, receipt));
        if flight.receipts.len().is_multiple_of(1024) {
            flight.settle_ready(tally);
        }
    }
    Ok(())
}
