//! A real PostgreSQL server for the tests, started by the tests themselves:
//! nothing depends on a server started by hand.
//!
//! ```ignore
//! mod common;
//! use common::pg;
//!
//! #[test]
//! fn saves_reach_postgres() -> mnemo::Result<()> {
//!     let db = pg::database(); // a fresh, empty database; dropped with `db`
//!     let memory = mnemo::Memory::open(mnemo::Config::new(db.url()))?;
//!     // …
//!     memory.shutdown_blocking()?;
//!     assert_eq!(pg::query_scalar(&db.url(), "SELECT count(*) FROM mnemo.memories"), 3);
//!     db.terminate_connections(); // cut every connection to it (a fault test)
//!     Ok(())
//! }
//! ```
//!
//! # The server
//!
//! - **Binaries**: `$MNEMO_PG_BINDIR` if set, else `pg_config --bindir`, else
//!   `/usr/lib/postgresql/15/bin`, else the highest version under
//!   `/usr/lib/postgresql/`. Without them the tests panic and say to install
//!   `postgresql-15` (`.ci/run` does).
//! - **One per test binary**: [`server()`] starts it on first use (a
//!   `OnceLock`) and the binary's tests share it; [`database()`] gives each
//!   test its own fresh database on it. The shared server is `initdb`'d once
//!   (about 1 s here) and starts in about 0.1 s. Private servers
//!   ([`Server::new`]) start from copies of one template data dir, itself
//!   `initdb`'d once per binary, the first time one is asked for (a copy
//!   and a start: about 0.5 s here).
//! - **Settings**: trust authentication, superuser `postgres`, UTF8,
//!   locale `C.UTF-8` (else `C`); `fsync` and `synchronous_commit` **on** (the
//!   tests test durability), `max_connections=200`. It listens on a Unix
//!   socket in its own temp dir (`/tmp/mnemo-pg-<pid>-<random>/server-<n>/`)
//!   and on TCP `127.0.0.1:<port>`, a free port (another one is tried if the
//!   port is taken meanwhile); the log is `postgres.log` in that dir.
//! - **Root** (CI runs as root): `initdb` and `postgres` refuse to run as
//!   root, so they run as the `postgres` system user (created with `useradd`
//!   if missing) through `setpriv` (else `runuser`), and the temp dirs belong
//!   to it.
//! - **No server outlives its test binary**, however the binary ends (a
//!   panic, `kill -9`, Ctrl-C): `postgres` runs in the foreground under a
//!   small `sh` watchdog whose stdin is a pipe from the test process; when the
//!   test process dies, the pipe closes and the watchdog stops the server
//!   (fast shutdown). A janitor process, also fed by a pipe, then removes the
//!   temp dir. (No `PR_SET_PDEATHSIG`: it fires when the *thread* that spawned
//!   the child exits, and the test threads that start servers are short-lived.)
//!
//! # URLs
//!
//! [`Database::url`] names the Unix socket's directory, percent-encoded, as
//! the host, and the port (which names the socket file `.s.PGSQL.<port>`):
//!
//! ```text
//! postgres://postgres@%2Ftmp%2Fmnemo-pg-4242-1f2e3d4c%2Fserver-0:41234/test_1_my_test
//! ```
//!
//! `tokio_postgres::Config::from_str` (0.7) and `postgres::Config::from_str`
//! decode such a host into a Unix socket path. [`Database::tcp_url`] is the
//! same database over TCP (`postgres://postgres@127.0.0.1:41234/test_1_my_test`).
//!
//! # Disturbing the server (fault tests)
//!
//! [`Server::terminate_connections`] / [`Database::terminate_connections`]
//! cut the connections of one database; [`Server::restart`],
//! [`Server::stop`] and [`Server::start`] act on the whole server. **The
//! shared [`server()`] serves every test of the binary that runs at the same
//! time**: a test that stops or restarts it disturbs them too. Such a test
//! should take a private server, [`Server::new`] (stopped and removed when
//! dropped), and its databases with [`Server::database`].
//!
//! # Tokio runtimes
//!
//! The `postgres` crate is a synchronous client that runs its own Tokio
//! runtime: calling it on a thread that runs a runtime (inside
//! `#[actix::test]`, `#[tokio::test]`, an actor) panics. Everything here
//! except [`client`] does its work on a thread of its own, so it may be called
//! from anywhere. A test inside a runtime that needs a [`client`] calls it
//! through `std::thread::spawn(move || { … }).join()`; [`query_scalar`] and
//! [`execute`] do exactly that.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

/// The superuser the tests connect as (trust authentication, no password).
pub const USER: &str = "postgres";

/// How long a server may take to accept connections, or to stop.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

const SIGKILL: i32 = 9;
const SIGQUIT: i32 = 3;

extern "C" {
    fn geteuid() -> u32;
    fn kill(pid: i32, sig: i32) -> i32;
}

/// Runs `postgres` (`$1`, data dir `$2`, log `$3`, its arguments after)
/// until a line or end of file arrives on stdin, then stops it with SIGINT
/// (fast shutdown) and waits for it. Exits when the server exits, whatever
/// the reason, with its status.
const WATCHDOG: &str = r#"
pg="$1"; data="$2"; log="$3"; shift 3
"$pg" -D "$data" "$@" </dev/null >>"$log" 2>&1 &
p=$!
exec 3<&0
{ read -r line || :; kill -INT "$p" 2>/dev/null; } <&3 &
r=$!
exec 3<&-
wait "$p"; s=$?
kill "$r" 2>/dev/null
exit "$s"
"#;

/// Waits for end of file on stdin (the test process is gone), then for the
/// servers under `$1` to stop (at most 60 s), and removes `$1`.
const JANITOR: &str = r#"
while read -r line; do :; done
i=0
while [ "$i" -lt 600 ] && ls "$1"/*/data/postmaster.pid >/dev/null 2>&1; do
    sleep 0.1; i=$((i + 1))
done
rm -rf "$1"
"#;

// ---------------------------------------------------------------------------
// The public API.

/// This test binary's shared server, started on first use.
pub fn server() -> &'static Server {
    static SHARED: OnceLock<Server> = OnceLock::new();
    SHARED.get_or_init(|| Server::create(true))
}

/// A fresh, empty database on this binary's shared server (see [`server`]).
pub fn database() -> Database {
    server().database()
}

/// A synchronous client for `url`; panics, naming the URL, if it cannot
/// connect. Not on a thread that runs a Tokio runtime (see the module docs):
/// there, use `std::thread::spawn(move || pg::client(&url)…).join()`, or
/// [`query_scalar`] / [`execute`].
pub fn client(url: &str) -> postgres::Client {
    assert!(
        tokio::runtime::Handle::try_current().is_err(),
        "pg::client called on a thread that runs a Tokio runtime (inside #[actix::test]?): \
         the postgres crate would panic there; call it via \
         std::thread::spawn(move || ..).join(), or use pg::query_scalar / pg::execute"
    );
    connect(url).unwrap_or_else(|e| panic!("cannot connect to {url}: {}", error_text(&e)))
}

/// The first column of the last row that `sql` returns, as an integer.
/// `sql` may hold several statements (`SET search_path = mnemo; SELECT …`):
/// it runs with the simple query protocol. On a thread of its own, so it may
/// be called from inside a runtime.
pub fn query_scalar(url: &str, sql: &str) -> i64 {
    off_runtime(|| {
        let mut c = client(url);
        let messages = c
            .simple_query(sql)
            .unwrap_or_else(|e| panic!("query failed on {url}: {sql}: {}", error_text(&e)));
        let value = messages
            .iter()
            .rev()
            .find_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no row from {sql}"))
            .unwrap_or_else(|| panic!("NULL from {sql}"));
        value
            .parse()
            .unwrap_or_else(|e| panic!("{sql} returned {value:?}, not an integer: {e}"))
    })
}

/// Runs `sql` (one or more statements) on `url`; panics if it fails. On a
/// thread of its own, so it may be called from inside a runtime.
pub fn execute(url: &str, sql: &str) {
    off_runtime(|| {
        client(url)
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("failed on {url}: {sql}: {}", error_text(&e)))
    })
}

/// An error with its causes: a `postgres::Error` displays as only "db
/// error"; this adds the server's message (`ERROR: relation … does not
/// exist`).
pub fn error_text(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text += &format!(": {cause}");
        source = cause.source();
    }
    text
}

/// A database of a [`Server`]. Dropping it drops the database (`WITH
/// (FORCE)`, best effort): keep it for as long as its URL is used.
#[derive(Debug)]
pub struct Database {
    name: String,
    host: String,
    port: u16,
    admin_url: String,
}

impl Database {
    /// The database's name (`test_<n>_<the test's name>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its URL as the superuser, over the Unix socket (see the module docs).
    pub fn url(&self) -> String {
        self.url_as(USER)
    }

    /// Its URL as another role (no password: trust authentication).
    pub fn url_as(&self, user: &str) -> String {
        format!(
            "postgres://{user}@{}:{}/{}",
            self.host, self.port, self.name
        )
    }

    /// Its URL as the superuser over TCP, `127.0.0.1:<port>`.
    pub fn tcp_url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{}", self.port, self.name)
    }

    /// Cuts every connection to this database; see
    /// [`Server::terminate_connections`].
    pub fn terminate_connections(&self) -> usize {
        terminate(&self.admin_url, &self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        let _ = off_runtime(move || -> Result<(), postgres::Error> {
            let mut c = postgres::Config::from_str(&admin)?
                .connect_timeout(Duration::from_secs(5))
                .connect(postgres::NoTls)?;
            c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        });
    }
}

/// A PostgreSQL server run by this test process (see the module docs).
pub struct Server {
    /// The Unix socket's directory; holds `data/` and `postgres.log`.
    dir: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: AtomicU16,
    databases: AtomicU32,
    running: Mutex<Option<Running>>,
}

/// The watchdog of a running server, and the pipe that keeps it running.
struct Running {
    watchdog: Child,
    stdin: ChildStdin,
}

impl Server {
    /// Starts a private server, from a copy of this binary's template data
    /// dir, on a free port; returns once it accepts connections. Stopped and
    /// removed when dropped.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Server {
        Server::create(false)
    }

    /// A server in a new dir; its data made by `initdb` or copied from the
    /// template.
    fn create(initdb: bool) -> Server {
        let cluster = cluster();
        let n = cluster.servers.fetch_add(1, Ordering::Relaxed);
        let dir = cluster.root.join(format!("server-{n}"));
        cluster.make_dir(&dir);
        let data = dir.join("data");
        if initdb {
            cluster.initdb(&data);
        } else {
            cluster.copy_template(&data);
        }
        let server = Server {
            log: dir.join("postgres.log"),
            dir,
            data,
            port: AtomicU16::new(0),
            databases: AtomicU32::new(0),
            running: Mutex::new(None),
        };
        server.start_locked(&mut server.lock(), true);
        server
    }

    /// A fresh, empty database on this server.
    pub fn database(&self) -> Database {
        let n = self.databases.fetch_add(1, Ordering::Relaxed) + 1;
        let name = database_name(n);
        execute(&self.admin_url(), &format!("CREATE DATABASE \"{name}\""));
        Database {
            name,
            host: self.host(),
            port: self.port(),
            admin_url: self.admin_url(),
        }
    }

    /// The TCP port (on 127.0.0.1), also the number of the Unix socket.
    /// The same across restarts.
    pub fn port(&self) -> u16 {
        self.port.load(Ordering::SeqCst)
    }

    /// The Unix socket's directory.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(
            &std::fs::read_to_string(&self.log).unwrap_or_default(),
            lines,
        )
    }

    /// The URL of database `db` as the superuser, over the Unix socket.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}@{}:{}/{db}", self.host(), self.port())
    }

    /// The URL of the maintenance database `postgres`.
    pub fn admin_url(&self) -> String {
        self.url("postgres")
    }

    /// The postmaster's process id, while it runs.
    pub fn postmaster_pid(&self) -> Option<i32> {
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        pid.lines().next()?.trim().parse().ok()
    }

    /// Whether the server runs (it may still be starting or stopping).
    pub fn is_running(&self) -> bool {
        let mut running = self.lock();
        match running.as_mut() {
            Some(r) => matches!(r.watchdog.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Terminates (`pg_terminate_backend`) every backend connected to
    /// database `db`, and waits until they are gone: their clients' next
    /// request fails. Returns how many there were. The connection doing it
    /// is to another database, and spared anyway.
    pub fn terminate_connections(&self, db: &str) -> usize {
        terminate(&self.admin_url(), db)
    }

    /// Stops the server (fast shutdown: open connections are cut,
    /// transactions in flight roll back) and returns once it has exited;
    /// connecting then fails. Does nothing if it is stopped.
    pub fn stop(&self) {
        self.stop_locked(&mut self.lock());
    }

    /// Starts the server again: the same data, port and socket. Returns once
    /// it accepts connections. Does nothing if it runs.
    pub fn start(&self) {
        self.start_locked(&mut self.lock(), false);
    }

    /// [`Server::stop`] then [`Server::start`], atomically for the other
    /// callers of these methods.
    pub fn restart(&self) {
        let mut running = self.lock();
        self.stop_locked(&mut running);
        self.start_locked(&mut running, false);
    }

    fn lock(&self) -> MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The socket directory, percent-encoded as a URL's host.
    fn host(&self) -> String {
        percent_encode(&self.dir.to_string_lossy())
    }

    fn start_locked(&self, running: &mut Option<Running>, new_port_on_clash: bool) {
        if let Some(r) = running.as_mut() {
            if matches!(r.watchdog.try_wait(), Ok(None)) {
                return;
            }
            // It died on its own; start it again.
            *running = None;
        }
        let mut clashes = 0;
        loop {
            if self.port() == 0 {
                self.port.store(free_port(), Ordering::SeqCst);
            }
            match self.spawn_and_wait() {
                Ok(r) => {
                    *running = Some(r);
                    return;
                }
                Err(StartError::PortTaken(_)) if clashes < 20 => {
                    clashes += 1;
                    if new_port_on_clash {
                        self.port.store(0, Ordering::SeqCst);
                    } else {
                        // The same port is required: wait for it.
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
                Err(e) => panic!(
                    "PostgreSQL ({}) failed to start on port {} with data dir {}: {}",
                    cluster().bindir.display(),
                    self.port(),
                    self.data.display(),
                    e.describe()
                ),
            }
        }
    }

    /// Starts the watchdog and waits until the server accepts connections.
    fn spawn_and_wait(&self) -> Result<Running, StartError> {
        let cluster = cluster();
        let port = self.port();
        let log_start = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let mut watchdog = cluster
            .command("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("mnemo-pg-watchdog")
            .arg(cluster.bindir.join("postgres"))
            .arg(&self.data)
            .arg(&self.log)
            .arg("-p")
            .arg(port.to_string())
            .arg("-k")
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "max_connections=200"])
            .args(["-c", "fsync=on"])
            .args(["-c", "synchronous_commit=on"])
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Out of the terminal's process group: Ctrl-C reaches the test
            // process only, whose exit then stops the server.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run sh (the PostgreSQL watchdog): {e}"));
        let stdin = watchdog.stdin.take().expect("piped stdin");
        let mut running = Running { watchdog, stdin };
        let socket = self.dir.join(format!(".s.PGSQL.{port}"));
        let admin = self.admin_url();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = running.watchdog.try_wait() {
                let log = self.log_since(log_start);
                return Err(
                    if log.contains("Address already in use")
                        || log.contains("could not create any TCP/IP sockets")
                    {
                        StartError::PortTaken(log)
                    } else {
                        StartError::Exited(format!("{status}"), log)
                    },
                );
            }
            if socket.exists() && off_runtime(|| connect(&admin).is_ok()) {
                return Ok(running);
            }
            if Instant::now() > deadline {
                self.halt(&mut running);
                return Err(StartError::TimedOut(self.log_since(log_start)));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop_locked(&self, running: &mut Option<Running>) {
        if let Some(mut r) = running.take() {
            // One line: the watchdog stops the server.
            let _ = r.stdin.write_all(b"stop\n");
            let _ = r.stdin.flush();
            if wait_timeout(&mut r.watchdog, STOP_TIMEOUT).is_none() {
                self.halt(&mut r);
            }
        }
    }

    /// The server would not stop or start in time: immediate shutdown, then
    /// SIGKILL.
    fn halt(&self, r: &mut Running) {
        let pid = self.postmaster_pid();
        if let Some(pid) = pid {
            unsafe { kill(pid, SIGQUIT) };
        }
        if wait_timeout(&mut r.watchdog, Duration::from_secs(10)).is_none() {
            if let Some(pid) = pid {
                unsafe { kill(pid, SIGKILL) };
            }
            let _ = r.watchdog.kill();
            let _ = r.watchdog.wait();
        }
    }

    fn log_since(&self, offset: u64) -> String {
        let log = std::fs::read(&self.log).unwrap_or_default();
        let start = (offset as usize).min(log.len());
        tail(&String::from_utf8_lossy(&log[start..]), 40)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        self.stop_locked(&mut running);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------
// The binaries, the user, the template data dir: once per test binary.

struct Cluster {
    bindir: PathBuf,
    /// When the tests run as root: the `postgres` user that runs the server.
    owner: Option<Owner>,
    /// `/tmp/mnemo-pg-<pid>-<random>`: the template and every server.
    root: PathBuf,
    /// The data dir that private servers copy, made the first time.
    template: OnceLock<PathBuf>,
    servers: AtomicU32,
    /// The janitor's stdin, open until this process exits.
    _janitor: ChildStdin,
}

struct Owner {
    uid: u32,
    gid: u32,
    /// `setpriv` if present, else `runuser`.
    setpriv: bool,
}

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(Cluster::init)
}

impl Cluster {
    // The janitor is never waited for: it outlives this process on purpose.
    #[allow(clippy::zombie_processes)]
    fn init() -> Cluster {
        let bindir = find_bindir();
        let owner = (unsafe { geteuid() } == 0).then(Owner::postgres);
        let root = loop {
            let root = PathBuf::from(format!(
                "/tmp/mnemo-pg-{}-{:08x}",
                std::process::id(),
                fastrand::u32(..)
            ));
            match std::fs::create_dir(&root) {
                Ok(()) => break root,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("cannot create {}: {e}", root.display()),
            }
        };
        let mut janitor = Command::new("sh")
            .arg("-c")
            .arg(JANITOR)
            .arg("mnemo-pg-janitor")
            .arg(&root)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run sh (the PostgreSQL janitor): {e}"));
        let cluster = Cluster {
            bindir,
            owner,
            template: OnceLock::new(),
            root,
            servers: AtomicU32::new(0),
            _janitor: janitor.stdin.take().expect("piped stdin"),
        };
        cluster.own(&cluster.root);
        cluster
    }

    /// `program`, run as the server's user.
    fn command(&self, program: impl AsRef<OsStr>) -> Command {
        match &self.owner {
            None => Command::new(program),
            Some(o) if o.setpriv => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={}", o.uid))
                    .arg(format!("--regid={}", o.gid))
                    .args(["--clear-groups", "--"])
                    .arg(program);
                c
            }
            Some(_) => {
                let mut c = Command::new("runuser");
                c.args(["-u", USER, "--"]).arg(program);
                c
            }
        }
    }

    /// Makes `dir`, mode 0755, owned by the server's user.
    fn make_dir(&self, dir: &Path) {
        std::fs::create_dir(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        self.own(dir);
    }

    fn own(&self, dir: &Path) {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", dir.display()));
        if let Some(o) = &self.owner {
            std::os::unix::fs::chown(dir, Some(o.uid), Some(o.gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", dir.display()));
        }
    }

    /// Copies the template data dir (made by `initdb` the first time) to
    /// `data`.
    fn copy_template(&self, data: &Path) {
        let template = self.template.get_or_init(|| {
            let template = self.root.join("template");
            self.initdb(&template);
            template
        });
        // Sparse: the zeroes of the WAL segment are not written.
        let out = Command::new("cp")
            .args(["-a", "--sparse=always"])
            .arg(template)
            .arg(data)
            .output()
            .unwrap_or_else(|e| panic!("cannot run cp: {e}"));
        assert!(
            out.status.success(),
            "cp -a {} {}: {}",
            template.display(),
            data.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A new data dir at `data`.
    fn initdb(&self, data: &Path) {
        let mut errors = String::new();
        for locale in ["C.UTF-8", "C"] {
            let out = self
                .command(self.bindir.join("initdb"))
                .arg("-D")
                .arg(data)
                .args(["-A", "trust", "-U", USER, "--no-sync", "-E", "UTF8"])
                .arg(format!("--locale={locale}"))
                .current_dir(&self.root)
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("cannot run initdb: {e}"));
            if out.status.success() {
                return;
            }
            errors += &format!(
                "initdb --locale={locale}: {}\n{}{}\n",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let _ = std::fs::remove_dir_all(data);
        }
        panic!(
            "initdb ({}) failed in {}:\n{errors}",
            self.bindir.display(),
            self.root.display()
        );
    }
}

impl Owner {
    /// The `postgres` system user (made by the Debian package), created if
    /// missing.
    fn postgres() -> Owner {
        let id = |flag: &str| -> Option<u32> {
            let out = Command::new("id").args([flag, USER]).output().ok()?;
            if !out.status.success() {
                return None;
            }
            String::from_utf8_lossy(&out.stdout).trim().parse().ok()
        };
        if id("-u").is_none() {
            let out = Command::new("useradd")
                .args(["--system", "--user-group", "--no-create-home"])
                .args(["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin"])
                .arg(USER)
                .output();
            match out {
                Ok(o) if o.status.success() => {}
                other => panic!(
                    "the tests run as root, and PostgreSQL refuses to: they run it as user \
                     `{USER}`, which is missing and could not be created with useradd: {other:?}"
                ),
            }
        }
        let (Some(uid), Some(gid)) = (id("-u"), id("-g")) else {
            panic!("cannot read the uid and gid of user `{USER}`");
        };
        let setpriv = Command::new("setpriv")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        Owner { uid, gid, setpriv }
    }
}

/// Where `initdb` and `postgres` are.
fn find_bindir() -> PathBuf {
    let has_server = |dir: &Path| dir.join("postgres").is_file() && dir.join("initdb").is_file();
    let mut tried = Vec::new();
    if let Some(dir) = std::env::var_os("MNEMO_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        assert!(
            has_server(&dir),
            "MNEMO_PG_BINDIR={} holds no postgres and initdb",
            dir.display()
        );
        return dir;
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if has_server(&dir) {
                return dir;
            }
            tried.push(dir);
        }
    }
    let debian = PathBuf::from("/usr/lib/postgresql/15/bin");
    if has_server(&debian) {
        return debian;
    }
    tried.push(debian);
    let highest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_server(bin))
        .max_by_key(|(version, _)| *version);
    if let Some((_, dir)) = highest {
        return dir;
    }
    tried.push("/usr/lib/postgresql/*/bin".into());
    panic!(
        "The PostgreSQL tests start their own PostgreSQL 15 server, and its binaries \
         (initdb, postgres) were not found (tried `pg_config --bindir`, {tried:?}). \
         Install them: `apt-get install postgresql-15` on Debian 12 (.ci/run does), \
         or set MNEMO_PG_BINDIR."
    );
}

// ---------------------------------------------------------------------------
// Small helpers.

enum StartError {
    PortTaken(String),
    Exited(String, String),
    TimedOut(String),
}

impl StartError {
    fn describe(&self) -> String {
        match self {
            StartError::PortTaken(log) => format!("the port stayed taken; server log:\n{log}"),
            StartError::Exited(status, log) => format!("it exited ({status}); server log:\n{log}"),
            StartError::TimedOut(log) => format!(
                "it did not accept connections within {START_TIMEOUT:?}; server log:\n{log}"
            ),
        }
    }
}

/// Runs `f` on a thread of its own (never one that runs a Tokio runtime);
/// its panic is re-raised here.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

fn connect(url: &str) -> Result<postgres::Client, postgres::Error> {
    postgres::Config::from_str(url)?
        .connect_timeout(Duration::from_secs(10))
        .connect(postgres::NoTls)
}

fn terminate(admin_url: &str, db: &str) -> usize {
    off_runtime(|| {
        let mut c = client(admin_url);
        let row = c
            .query_one(
                "SELECT count(*) FROM (
                     SELECT pg_terminate_backend(pid, 10000) AS gone FROM pg_stat_activity
                     WHERE datname = $1 AND pid <> pg_backend_pid()
                 ) t WHERE gone",
                &[&db],
            )
            .unwrap_or_else(|e| panic!("terminating the connections to {db}: {}", error_text(&e)));
        row.get::<_, i64>(0) as usize
    })
}

/// A port free on 127.0.0.1 now (the server retries if it is taken by the
/// time it binds).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// `test_<n>_<the current test's name>`, at most 63 bytes (PostgreSQL's
/// limit), in `[a-z0-9_]`.
fn database_name(n: u32) -> String {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("");
    let mut name = format!("test_{n}_");
    for c in test.chars() {
        name.push(if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '_'
        });
    }
    name.truncate(63);
    name.trim_end_matches('_').to_owned()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}
