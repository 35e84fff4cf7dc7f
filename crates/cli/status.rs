//! Exit statuses: what a command tells a script that ran it.
//!
//! | status | meaning |
//! |---:|---|
//! | 0 | done |
//! | 1 | failed; the `error:` line says what, and what was done before it |
//! | 2 | usage error (clap's) |
//! | 3 | done, but the crash journal held damaged records that could not be replayed; the files were moved aside |
//! | 75 | `EX_TEMPFAIL`: the change is accepted and kept in the crash journal but not committed yet (a transient fault outlasted the wait); the next open of the database commits it |
//!
//! When a command both fails and finds journal damage, the failure's status
//! wins and both lines are printed.

use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// A command that failed.
pub(crate) const FAILURE: u8 = 1;
/// Done, but the journal was damaged (see the module doc).
pub(crate) const JOURNAL_DAMAGED: u8 = 3;
/// Accepted and kept, not committed yet (`EX_TEMPFAIL` of `sysexits.h`).
pub(crate) const NOT_COMMITTED_YET: u8 = 75;

/// An error that ends the command with a chosen status.
#[derive(Debug)]
pub(crate) struct Exit {
    pub status: u8,
    pub message: String,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// The status for an error: an [`Exit`]'s own, 75 for
/// [`mnemo::Error::NotCommittedYet`] anywhere in the chain, else 1.
pub(crate) fn status_of(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(exit) = cause.downcast_ref::<Exit>() {
            return exit.status;
        }
        if let Some(mnemo::Error::NotCommittedYet { .. }) = cause.downcast_ref::<mnemo::Error>() {
            return NOT_COMMITTED_YET;
        }
    }
    FAILURE
}

/// The error for a change (`what`, such as `the save of c/k`) that is
/// accepted and kept but not committed yet.
pub(crate) fn not_committed_yet(what: &str, db: &Path, waited: Duration, reason: &str) -> Exit {
    Exit {
        status: NOT_COMMITTED_YET,
        message: format!(
            "{what} is accepted but not committed yet: {reason} (for {waited:.1?}). It is kept in \
             the crash journal beside the database and will be committed by the next open of {} \
             (any mnemo command on it); nothing needs to be done again",
            mnemo::Config::new(db).shown_path().display()
        ),
    }
}

/// Journal damage found by this run's opens, reported once at the end.
/// A mutex, not a cell: engines may open on several threads (`bench`).
static JOURNAL_DAMAGE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records journal damage the open of `db` found, if any.
pub(crate) fn note_journal_damage(db: &Path, stats: &mnemo::Stats) -> Option<String> {
    if stats.journal_unrecovered == 0 {
        return None;
    }
    let files = if stats.journal_quarantined.is_empty() {
        "none".to_owned()
    } else {
        stats
            .journal_quarantined
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let message = format!(
        "the crash journal of {} held {} damaged region(s), {} bytes, that could not be \
         replayed: saves recorded there may be lost. Every readable record around them was \
         replayed. The damaged files were moved aside (not deleted) for inspection: {files}",
        db.display(),
        stats.journal_unrecovered,
        stats.journal_unrecovered_bytes,
    );
    if let Ok(mut found) = JOURNAL_DAMAGE.lock() {
        found.push(message.clone());
    }
    Some(message)
}

/// Every journal damage message recorded so far.
pub(crate) fn journal_damage() -> Vec<String> {
    JOURNAL_DAMAGE
        .lock()
        .map(|found| found.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_error_chain() {
        let plain = anyhow::anyhow!("no such memory");
        assert_eq!(status_of(&plain), FAILURE);
        let kept = anyhow::Error::new(mnemo::Error::NotCommittedYet {
            waited: Duration::from_secs(30),
            reason: "database is locked".into(),
        })
        .context("saving c/k");
        assert_eq!(status_of(&kept), NOT_COMMITTED_YET);
        let exit = anyhow::Error::new(not_committed_yet(
            "the save of c/k",
            Path::new("m.db"),
            Duration::from_secs(1),
            "disk full",
        ));
        assert_eq!(status_of(&exit), NOT_COMMITTED_YET);
        assert!(exit.to_string().contains("next open of m.db"), "{exit}");
    }
}
