//! Helpers shared by the integration tests.
#![allow(dead_code)]
pub mod pg;

use std::path::PathBuf;
use std::time::Duration;

use mnemo::Config;

/// A temporary directory and a database path inside it. The directory is
/// removed when the value is dropped.
pub struct TempDb {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn temp_db() -> TempDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("mnemo.db");
    TempDb { dir, path }
}

/// The defaults, on a temp database.
pub fn config(db: &TempDb) -> Config {
    Config::new(&db.path)
}

/// A config whose quiet window and max wait are so long that nothing flushes
/// unless the test asks: saves stay pending.
pub fn config_never_flushing(db: &TempDb) -> Config {
    let mut c = Config::new(&db.path);
    c.quiet_window = Duration::from_secs(3_600);
    c.max_wait = Duration::from_secs(3_600);
    c
}

/// An actix system on tokio's paused clock: the debounce timers run on it,
/// so an hour of quiet window passes in microseconds.
pub fn paused_system() -> actix::SystemRunner {
    actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("paused runtime")
    })
}

/// Reads one integer from the database with a fresh connection.
pub fn query_i64(path: &std::path::Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.query_row(sql, [], |r| r.get(0)).expect("query")
}

/// A command that re-runs this test binary as a child process running only
/// `child` (an `#[ignore]`d test), with `MNEMO_CHILD_DB` set and stdout
/// piped. Fail points configured in the child cannot touch the parent's
/// other tests, and the child can be killed like any process.
pub fn child_command(child: &str, db: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("test binary path"));
    cmd.args([
        "--ignored",
        "--exact",
        child,
        "--nocapture",
        "--test-threads=1",
    ])
    .env("MNEMO_CHILD_DB", db)
    .stdout(std::process::Stdio::piped());
    cmd
}

/// The database a child process was given by [`child_command`], if this is
/// one.
pub fn child_db() -> Option<PathBuf> {
    std::env::var_os("MNEMO_CHILD_DB").map(Into::into)
}

/// Runs child test `name` (see [`child_command`]) to completion and asserts
/// it succeeded and printed `DONE`; returns its stdout.
pub fn run_child(name: &str, db: &std::path::Path) -> String {
    let out = child_command(name, db)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("DONE"),
        "child {name} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

/// Starts child test `name`, waits until it prints `marker`, kills it with
/// SIGKILL.
pub fn kill_child_after(name: &str, db: &std::path::Path, marker: &str) {
    kill_child_after_with(name, db, &[], marker)
}

/// [`kill_child_after`], with extra environment variables for the child.
pub fn kill_child_after_with(
    name: &str,
    db: &std::path::Path,
    env: &[(&str, PathBuf)],
    marker: &str,
) {
    use std::io::BufRead;
    let mut cmd = child_command(name, db);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn child");
    let seen = std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map_while(|l| l.ok())
        .any(|l| l.contains(marker));
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert!(seen, "child {name} never printed {marker}");
}

/// The crash journal folder of a [`temp_db`].
pub fn journal_dir(db: &TempDb) -> PathBuf {
    db.dir.path().join("mnemo.db.journal")
}

/// The journal segment files of a [`temp_db`], in order.
pub fn segments(db: &TempDb) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(journal_dir(db))
        .expect("journal dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

/// Offsets of the records in a journal segment (each starts with the
/// magic `MNR1`).
pub fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| w == b"MNR1")
        .map(|(i, _)| i)
        .collect()
}

/// The body of a child test that leaves an unflushed journal behind: opens
/// the child's database with `config` (the quiet window and max wait made an
/// hour long, so nothing commits), saves `u/facts/k000`.. `k{n-1}` with a
/// value of about 1 KB each, prints `SAVED` and waits to be killed (see
/// [`kill_child_after`]).
pub fn child_saves_and_waits(n: usize, config: impl FnOnce(&mut Config)) {
    let Some(path) = child_db() else { return };
    let mut c = Config::new(path);
    c.quiet_window = Duration::from_secs(3_600);
    c.max_wait = Duration::from_secs(3_600);
    config(&mut c);
    let memory = mnemo::Memory::open(c).expect("open");
    for i in 0..n {
        let value = format!("{i} {}", "z".repeat(1_000));
        memory
            .save(mnemo::SaveRequest::new(
                "u",
                "facts",
                format!("k{i:03}"),
                value,
            ))
            .expect("save");
    }
    println!("\nSAVED");
    std::thread::sleep(Duration::from_secs(60));
}

/// The MiniLM model directory: `$MNEMO_MINILM_DIR`, else the workspace's
/// `models/all-MiniLM-L6-v2` (where `scripts/fetch-minilm.sh` puts it).
#[cfg(feature = "minilm")]
pub fn minilm_dir() -> PathBuf {
    std::env::var_os("MNEMO_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(mnemo::MiniLmEmbedder::DEFAULT_DIR)
        })
}

/// The MiniLM embedder, loaded once per test binary. Panics with the fix
/// when the model was not fetched: with the `minilm` feature on, a missing
/// model is a failure, never a skip.
#[cfg(feature = "minilm")]
pub fn minilm() -> std::sync::Arc<mnemo::MiniLmEmbedder> {
    static MODEL: std::sync::OnceLock<std::sync::Arc<mnemo::MiniLmEmbedder>> =
        std::sync::OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = minilm_dir();
            std::sync::Arc::new(mnemo::MiniLmEmbedder::from_dir(&dir).unwrap_or_else(|e| {
                panic!("{e}\nthe `minilm` feature needs the model: run scripts/fetch-minilm.sh")
            }))
        })
        .clone()
}

/// Where the e5 weights are: `$MNEMO_E5_DIR`, else the workspace's
/// `models/multilingual-e5-small` (where `scripts/fetch-e5.sh` puts them).
#[cfg(feature = "e5")]
pub fn e5_dir() -> PathBuf {
    std::env::var_os("MNEMO_E5_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(mnemo::E5Embedder::DEFAULT_DIR)
        })
}

/// The e5 embedder, loaded once per test binary. Panics with the fix when
/// the model was not fetched: with the `e5` feature on, a missing model is a
/// failure, never a skip.
#[cfg(feature = "e5")]
pub fn e5() -> std::sync::Arc<mnemo::E5Embedder> {
    static MODEL: std::sync::OnceLock<std::sync::Arc<mnemo::E5Embedder>> =
        std::sync::OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = e5_dir();
            std::sync::Arc::new(mnemo::E5Embedder::from_dir(&dir).unwrap_or_else(|e| {
                panic!("{e}\nthe `e5` feature needs the model: run scripts/fetch-e5.sh")
            }))
        })
        .clone()
}

/// Which store a test's engine runs on. Behavioural tests whose outcome is
/// the same on both run one body on each (see [`both_stores!`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// A fresh SQLite file in a temp dir.
    Sqlite,
    /// A fresh database on this test binary's PostgreSQL server (started
    /// by the test itself, see [`pg`]).
    Postgres,
}

/// A test's store: where the memories live (an SQLite file or a fresh
/// PostgreSQL database) and a temp dir for the crash journal.
pub struct Target {
    pub store: Store,
    pub dir: tempfile::TempDir,
    pg: Option<pg::Database>,
}

impl Target {
    pub fn new(store: Store) -> Target {
        let dir = tempfile::tempdir().expect("temp dir");
        let pg = (store == Store::Postgres).then(pg::database);
        Target { store, dir, pg }
    }

    /// Where the memories live: the SQLite path or the PostgreSQL URL.
    pub fn location(&self) -> PathBuf {
        match &self.pg {
            Some(db) => PathBuf::from(db.url()),
            None => self.dir.path().join("mnemo.db"),
        }
    }

    /// The defaults on this store, the journal in the temp dir.
    pub fn config(&self) -> Config {
        Config {
            journal_dir: Some(self.dir.path().join("journal")),
            ..Config::new(self.location())
        }
    }

    /// [`Target::config`] with a quiet window and max wait of an hour:
    /// nothing flushes unless the test asks.
    pub fn config_never_flushing(&self) -> Config {
        let mut c = self.config();
        c.quiet_window = Duration::from_secs(3_600);
        c.max_wait = Duration::from_secs(3_600);
        c
    }

    /// The crash journal's folder.
    pub fn journal_dir(&self) -> PathBuf {
        self.dir.path().join("journal")
    }

    /// The PostgreSQL database's URL (as the superuser). Panics on SQLite.
    pub fn pg_url(&self) -> String {
        self.pg.as_ref().expect("a PostgreSQL target").url()
    }

    /// The PostgreSQL database's URL as another role.
    pub fn pg_url_as(&self, role: &str) -> String {
        self.pg.as_ref().expect("a PostgreSQL target").url_as(role)
    }

    /// Cuts every connection to the PostgreSQL database (a fault test).
    pub fn terminate_connections(&self) -> usize {
        self.pg
            .as_ref()
            .expect("a PostgreSQL target")
            .terminate_connections()
    }

    /// Reads one integer with a fresh connection. Table names as in SQLite
    /// (`memories`, `dead_letters`, …): on PostgreSQL they are found in the
    /// `mnemo` schema. Safe to call from inside a runtime.
    pub fn query_i64(&self, sql: &str) -> i64 {
        match &self.pg {
            Some(db) => pg::query_scalar(&db.url(), &format!("SET search_path = mnemo; {sql}")),
            None => query_i64(&self.dir.path().join("mnemo.db"), sql),
        }
    }
}

/// Runs each named test body (`fn name(t: &Target) -> mnemo::Result<()>`)
/// once per store: `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() -> mnemo::Result<()> {
                    super::$name(&$crate::common::Target::new($crate::common::Store::Sqlite))
                }
                #[test]
                fn postgres() -> mnemo::Result<()> {
                    super::$name(&$crate::common::Target::new($crate::common::Store::Postgres))
                }
            }
        )*
    };
}
