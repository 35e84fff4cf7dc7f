//! Connections: the process's PostgreSQL runtime thread, [`PgConn`] (one
//! client, reconnected on its next use after it broke), and how errors are
//! sorted (retry, isolate the row, or explain).
//!
//! The store's code is synchronous: it runs on the writer thread, the
//! indexer's thread and the callers' threads, some of them inside a tokio or
//! actix runtime. tokio-postgres splits a connection in two: the
//! `Connection`, a future that owns the socket and needs tokio's reactor,
//! and the `Client`, whose futures only talk to the connection over
//! channels and run on any executor. So every connection's `Connection` is
//! spawned on one process-wide current-thread runtime on its own thread
//! (`mnemo-pg`), and a [`PgConn`] polls its client's futures on the calling
//! thread with [`wait`], a minimal executor that parks the thread. Never
//! `Handle::block_on`, which panics inside a runtime, and not
//! `futures::executor::block_on` either, which panics when a caller's own
//! future is being driven by it.

use std::future::Future;
use std::pin::pin;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};

use crate::store::AttemptError;

/// Parameters of a query, as tokio-postgres takes them.
pub(super) type Params<'a> = [&'a (dyn ToSql + Sync)];

/// Why a call to the server failed: the server's (or the client's) error,
/// or the runtime thread could not be started or has gone.
#[derive(Debug)]
pub(super) enum Failure {
    /// What tokio-postgres reported.
    Pg(tokio_postgres::Error),
    /// Something on this side (no runtime thread).
    Local(String),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Failure {
        Failure::Pg(e)
    }
}

impl Failure {
    /// The SQLSTATE the server sent, if any.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            Failure::Pg(e) => e.code(),
            Failure::Local(_) => None,
        }
    }

    /// Whether the connection is gone (or was never made): the client is
    /// dropped and the next use reconnects.
    pub fn is_connection(&self) -> bool {
        match self {
            Failure::Local(_) => true,
            Failure::Pg(e) => match e.code() {
                None => broken(e),
                Some(code) => {
                    let c = code.code();
                    c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03")
                }
            },
        }
    }

    /// The server's message with its SQLSTATE (and detail), or the
    /// client's error with its causes. Never holds the password: the
    /// server does not repeat it, and the client's errors do not carry it.
    pub fn message(&self) -> String {
        match self {
            Failure::Local(m) => m.clone(),
            Failure::Pg(e) => match e.as_db_error() {
                Some(db) => {
                    let mut m = format!("{} (SQLSTATE {})", db.message(), db.code().code());
                    if let Some(detail) = db.detail() {
                        m.push_str(": ");
                        m.push_str(detail);
                    }
                    m
                }
                None => {
                    let mut m = e.to_string();
                    let mut cause = std::error::Error::source(e);
                    while let Some(c) = cause {
                        m.push_str(": ");
                        m.push_str(&c.to_string());
                        cause = c.source();
                    }
                    m
                }
            },
        }
    }
}

/// Whether a client-side error (one without a SQLSTATE) means the
/// connection is unusable: closed, an I/O error, a timeout, a garbled
/// response. Not a value that failed to convert (a bug, not the
/// connection's fault).
fn broken(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        cause = c.source();
    }
    // tokio-postgres' kinds without a cause to look at.
    let text = e.to_string();
    [
        "error communicating",
        "error connecting",
        "timeout",
        "unexpected message",
        "error parsing response",
        "error performing TLS",
    ]
    .iter()
    .any(|p| text.starts_with(p))
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

/// Sorts a failure into what the write path does with it:
/// - the connection (no SQLSTATE, a closed client, class 08, the server
///   shutting down, crashed or starting: 57P01/57P02/57P03) and insufficient
///   resources (class 53, a full disk included) are [`AttemptError::Io`]:
///   retried;
/// - serialization failures, deadlocks and lock timeouts (40001, 40P01,
///   55P03) are [`AttemptError::Busy`];
/// - a row's content (class 22 data exception, class 23 integrity
///   constraint, 54000 program limit such as an index row too large,
///   P0001 an exception raised by a trigger) is [`AttemptError::Row`]:
///   the row is isolated and dead-lettered;
/// - anything else (42xxx: a missing table, no permission, bad syntax) is
///   the database's state: [`AttemptError::Io`], retried and never
///   dead-lettered.
pub(super) fn classify(f: &Failure) -> AttemptError {
    let Some(code) = f.code() else {
        return AttemptError::Io(f.message());
    };
    let c = code.code();
    if matches!(c, "40001" | "40P01" | "55P03") {
        AttemptError::Busy
    } else if c.starts_with("22") || c.starts_with("23") || matches!(c, "54000" | "P0001") {
        AttemptError::Row(f.message())
    } else {
        AttemptError::Io(f.message())
    }
}

/// A failure as the crate's error ([`crate::Error::Postgres`]).
pub(super) fn pg_error(f: Failure) -> crate::Error {
    crate::Error::Postgres(f.message())
}

impl From<Failure> for crate::Error {
    fn from(f: Failure) -> crate::Error {
        pg_error(f)
    }
}

/// How long a connection attempt may take when the URL does not say
/// (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Parses a connection URL and adds what keeps a cut connection from
/// hanging a caller, unless the URL sets it: a connect timeout, TCP
/// keepalives probing after 30 s idle, and a TCP user timeout (Linux) so
/// unacknowledged data fails the connection after 30 s. `application_name`
/// is `mnemo`. A URL without a host uses the local Unix socket, as libpq
/// does.
pub(super) fn parse_url(url: &str) -> Result<tokio_postgres::Config, Failure> {
    let mut c = tokio_postgres::Config::from_str(url)?;
    if c.get_application_name().is_none() {
        c.application_name("mnemo");
    }
    if c.get_connect_timeout().is_none() {
        c.connect_timeout(CONNECT_TIMEOUT);
    }
    if c.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        // tokio-postgres' default (2 hours) is no use for noticing a
        // vanished server.
        c.keepalives_idle(Duration::from_secs(30));
    }
    if c.get_keepalives_interval().is_none() {
        c.keepalives_interval(Duration::from_secs(10));
    }
    if c.get_keepalives_retries().is_none() {
        c.keepalives_retries(3);
    }
    if c.get_tcp_user_timeout().is_none() {
        c.tcp_user_timeout(Duration::from_secs(30));
    }
    if c.get_hosts().is_empty() && c.get_hostaddrs().is_empty() {
        let dir = ["/var/run/postgresql", "/run/postgresql", "/tmp"]
            .into_iter()
            .find(|d| std::path::Path::new(d).is_dir())
            .unwrap_or("/tmp");
        c.host_path(dir);
    }
    Ok(c)
}

/// The runtime every connection's socket task runs on: one current-thread
/// tokio runtime on the thread `mnemo-pg`, started on first use.
fn runtime() -> Result<&'static tokio::runtime::Handle, Failure> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Handle, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let handle = rt.handle().clone();
            std::thread::Builder::new()
                .name("mnemo-pg".into())
                .spawn(move || rt.block_on(std::future::pending::<()>()))
                .map_err(|e| e.to_string())?;
            Ok(handle)
        })
        .as_ref()
        .map_err(|e| Failure::Local(format!("cannot start the PostgreSQL client thread: {e}")))
}

/// Wakes a parked thread.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on the calling thread, parking it while
/// the future waits. For the client's futures and channels only (they need
/// no reactor); safe inside any runtime or executor.
pub(super) fn wait<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            // A spurious unpark only costs one more poll.
            Poll::Pending => std::thread::park(),
        }
    }
}

/// Opens a connection: the connect future and then the socket task run on
/// the runtime thread; the client comes back over a oneshot channel.
pub(super) fn connect(config: &tokio_postgres::Config) -> Result<Client, Failure> {
    let handle = runtime()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let config = config.clone();
    handle.spawn(async move {
        match config.connect(NoTls).await {
            Ok((client, connection)) => {
                // If the caller is gone the client drops here, which ends
                // the connection below.
                let _ = tx.send(Ok(client));
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "a PostgreSQL connection ended");
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }
    });
    match wait(rx) {
        Ok(result) => Ok(result?),
        Err(_) => Err(Failure::Local(
            "the PostgreSQL client thread dropped the connection attempt".into(),
        )),
    }
}

/// One connection to the server: a client, opened again on its next use
/// after it closed (a restarted server, a cut connection), and the
/// statements prepared on it.
pub(super) struct PgConn {
    config: Arc<tokio_postgres::Config>,
    client: Option<Client>,
    statements: std::collections::HashMap<&'static str, Statement>,
    /// A transaction is open on `client`: if the connection is lost now,
    /// the transaction is gone with it, and the next statement must fail
    /// rather than run on a new connection outside any transaction (where a
    /// `COMMIT` is only a warning, and the batch would look committed).
    in_tx: bool,
}

impl PgConn {
    /// Connects now.
    pub fn open(config: &Arc<tokio_postgres::Config>) -> Result<PgConn, Failure> {
        let mut conn = PgConn::lazy(config);
        conn.client()?;
        Ok(conn)
    }

    /// A connection made on first use.
    pub fn lazy(config: &Arc<tokio_postgres::Config>) -> PgConn {
        PgConn {
            config: config.clone(),
            client: None,
            statements: std::collections::HashMap::new(),
            in_tx: false,
        }
    }

    /// The client, connecting first if there is none or it has closed.
    pub fn client(&mut self) -> Result<&Client, Failure> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.reset();
        }
        if self.client.is_none() && self.in_tx {
            // Never reconnect in the middle of a transaction.
            self.in_tx = false;
            return Err(Failure::Local(
                "the connection was lost inside a transaction; nothing of it was committed".into(),
            ));
        }
        let client = match self.client.take() {
            Some(c) => c,
            None => connect(&self.config)?,
        };
        Ok(self.client.insert(client))
    }

    /// Drops the client (and its statements); the next use reconnects.
    pub fn reset(&mut self) {
        self.client = None;
        self.statements.clear();
    }

    /// Notes a failure: a broken connection is dropped.
    fn note<T>(&mut self, result: Result<T, Failure>) -> Result<T, Failure> {
        if let Err(f) = &result {
            if f.is_connection() {
                self.reset();
            }
        }
        result
    }

    /// The open client and `sql` prepared on it (once per connection).
    fn ready(&mut self, sql: &'static str) -> Result<(&Client, Statement), Failure> {
        self.client()?;
        if !self.statements.contains_key(sql) {
            let prepared = match &self.client {
                Some(client) => wait(client.prepare(sql)).map_err(Failure::from),
                None => Err(Failure::Local("no connection".into())),
            };
            let statement = self.note(prepared)?;
            self.statements.insert(sql, statement);
        }
        match (&self.client, self.statements.get(sql)) {
            (Some(client), Some(statement)) => Ok((client, statement.clone())),
            _ => Err(Failure::Local("no connection".into())),
        }
    }

    /// Runs a prepared statement and returns its rows.
    pub fn query(&mut self, sql: &'static str, params: &Params<'_>) -> Result<Vec<Row>, Failure> {
        let (client, statement) = self.ready(sql)?;
        let rows = wait(client.query(&statement, params)).map_err(Failure::from);
        self.note(rows)
    }

    /// Runs a prepared statement; returns the rows it changed.
    pub fn execute(&mut self, sql: &'static str, params: &Params<'_>) -> Result<u64, Failure> {
        let (client, statement) = self.ready(sql)?;
        let n = wait(client.execute(&statement, params)).map_err(Failure::from);
        self.note(n)
    }

    /// Notes the transaction control at the head of statements about to be
    /// sent: a `BEGIN` may connect anew (nothing is open yet), and opens a
    /// transaction that no reconnection may cross.
    fn begins(&mut self, sql: &str) -> bool {
        let begins = sql.trim_start().starts_with("BEGIN");
        if begins {
            self.in_tx = false;
        }
        begins
    }

    /// Notes the end of statements sent: a `COMMIT` or `ROLLBACK` at their
    /// end closes the transaction.
    fn ends(&mut self, sql: &str) {
        let tail = sql.trim_end().trim_end_matches(';').trim_end();
        if tail.ends_with("COMMIT") || tail.ends_with("ROLLBACK") {
            self.in_tx = false;
        }
    }

    /// Runs statements without parameters (simple query protocol).
    pub fn batch(&mut self, sql: &str) -> Result<(), Failure> {
        let begins = self.begins(sql);
        let client = self.client()?;
        let done = wait(client.batch_execute(sql)).map_err(Failure::from);
        if begins {
            self.in_tx = true;
        }
        self.ends(sql);
        self.note(done)
    }

    /// Sends `first` (no parameters) and the prepared `sql` together, in
    /// one round trip (tokio-postgres pipelines requests polled together),
    /// and returns the statement's rows. For `BEGIN` + a batch's first
    /// statement. If `first` fails the statement's result is not looked at.
    pub fn pipelined(
        &mut self,
        first: &str,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, Failure> {
        let begins = self.begins(first);
        let (client, statement) = self.ready(sql)?;
        let (a, b) = wait(futures::future::join(
            client.batch_execute(first),
            client.query(&statement, params),
        ));
        if begins {
            self.in_tx = true;
        }
        let result = a.and(b).map_err(Failure::from);
        self.note(result)
    }

    /// Runs the prepared `sql` and then `last` (no parameters) in one round
    /// trip, and returns the statement's rows; fails if either fails. For a
    /// batch's last statement + `COMMIT`: if the statement fails the
    /// transaction is aborted and the server turns the `COMMIT` into a
    /// rollback, so nothing is committed.
    pub fn pipelined_query_last(
        &mut self,
        sql: &'static str,
        params: &Params<'_>,
        last: &str,
    ) -> Result<Vec<Row>, Failure> {
        let (client, statement) = self.ready(sql)?;
        let (a, b) = wait(futures::future::join(
            client.query(&statement, params),
            client.batch_execute(last),
        ));
        self.ends(last);
        let result = a.and_then(|rows| b.map(|()| rows)).map_err(Failure::from);
        self.note(result)
    }

    /// Ends a failed transaction, if the connection still stands. Errors are
    /// ignored: a broken connection has no transaction left.
    pub fn rollback(&mut self) {
        self.in_tx = false;
        if let Some(client) = &self.client {
            if !client.is_closed() {
                let done = wait(client.batch_execute("ROLLBACK")).map_err(Failure::from);
                let _ = self.note(done);
            }
        }
    }
}
