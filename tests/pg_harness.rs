//! Tests of the PostgreSQL harness itself (`tests/common/pg.rs`): the
//! databases it hands out, the faults it makes (cut connections, restart,
//! stop and start), and that no server outlives its test binary.
//!
//! Tests that stop or restart a server take a private one
//! (`pg::Server::new()`): the shared `pg::server()` serves the other tests of
//! this binary at the same time.

mod common;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use common::pg;
use postgres::config::Host;

fn int(c: &mut postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", pg::error_text(&e)))
        .get(0)
}

fn text(c: &mut postgres::Client, sql: &str) -> String {
    c.query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", pg::error_text(&e)))
        .get(0)
}

fn cannot_connect(url: &str) -> bool {
    postgres::Config::from_str(url)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect(postgres::NoTls)
        .is_err()
}

#[test]
fn a_database_is_created_and_usable_over_its_url() {
    let server = pg::server();
    let db = pg::database();
    let url = db.url();

    // The URL: the socket's directory as the host, percent-encoded. This is
    // tokio_postgres::Config's parser (postgres::Config::from_str calls it).
    assert!(url.starts_with("postgres://postgres@%2Ftmp%2F"), "{url}");
    let config = postgres::Config::from_str(&url).expect("the URL parses");
    assert_eq!(
        config.get_hosts(),
        &[Host::Unix(server.socket_dir().to_owned())],
        "{url}"
    );
    assert_eq!(config.get_ports(), &[server.port()]);
    assert_eq!(config.get_dbname(), Some(db.name()));
    assert_eq!(config.get_user(), Some("postgres"));

    let mut c = pg::client(&url);
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'é😀')")
        .unwrap();
    assert_eq!(text(&mut c, "SELECT v FROM t WHERE id = 1"), "é😀");
    assert_eq!(text(&mut c, "SELECT current_database()::text"), db.name());
    assert_eq!(text(&mut c, "SELECT current_user::text"), "postgres");
    assert_eq!(
        int(&mut c, "SELECT (inet_server_addr() IS NULL)::int::int8"),
        1,
        "over the Unix socket"
    );

    // The server the brief asks for: durable, 200 connections, UTF8.
    for (setting, value) in [
        ("fsync", "on"),
        ("synchronous_commit", "on"),
        ("max_connections", "200"),
        ("server_encoding", "UTF8"),
        ("listen_addresses", "127.0.0.1"),
    ] {
        assert_eq!(text(&mut c, &format!("SHOW {setting}")), value, "{setting}");
    }
    let version = int(&mut c, "SELECT current_setting('server_version_num')::int8");
    assert!(version >= 150_000, "PostgreSQL 15 or later, not {version}");
    eprintln!(
        "PostgreSQL {version} on {url}, data {}",
        server.data_dir().display()
    );

    // The same database over TCP.
    let mut tcp = pg::client(&db.tcp_url());
    assert_eq!(
        text(&mut tcp, "SELECT host(inet_server_addr())"),
        "127.0.0.1"
    );
    assert_eq!(int(&mut tcp, "SELECT count(*) FROM t"), 1);

    // The helpers, several statements at once.
    pg::execute(
        &url,
        "INSERT INTO t VALUES (2, 'b'); INSERT INTO t VALUES (3, 'c')",
    );
    assert_eq!(
        pg::query_scalar(&url, "SET search_path = public; SELECT count(*) FROM t"),
        3
    );

    // As root, the server runs as the `postgres` user.
    let pid = server.postmaster_pid().expect("postmaster.pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        !uid.split_whitespace().skip(1).any(|id| id == "0"),
        "the postmaster runs as root: {uid}"
    );
}

#[test]
fn the_shared_server_is_one_server() {
    assert!(std::ptr::eq(pg::server(), pg::server()));
    let a = pg::database();
    let b = pg::database();
    assert!(a.url().contains(&format!(":{}/", pg::server().port())));
    assert!(b.url().contains(&format!(":{}/", pg::server().port())));
}

#[test]
fn two_databases_are_two_different_fresh_databases() {
    let a = pg::database();
    let b = pg::database();
    assert_ne!(a.name(), b.name());
    assert_ne!(a.url(), b.url());
    let tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'";
    assert_eq!(pg::query_scalar(&a.url(), tables), 0);
    pg::execute(&a.url(), "CREATE TABLE only_in_a (x int)");
    assert_eq!(pg::query_scalar(&a.url(), tables), 1);
    assert_eq!(pg::query_scalar(&b.url(), tables), 0);

    // A dropped Database is dropped on the server, even with a client open.
    let (url, name) = (a.url(), a.name().to_owned());
    let _open = pg::client(&url);
    drop(a);
    let exists = format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'");
    assert_eq!(pg::query_scalar(&pg::server().admin_url(), &exists), 0);
    let e = postgres::Client::connect(&url, postgres::NoTls)
        .err()
        .expect("the database is gone");
    let text = pg::error_text(&e);
    assert!(text.contains("does not exist"), "{text}");
}

#[test]
fn terminate_connections_cuts_the_open_clients_of_that_database_only() {
    let db = pg::database();
    let other = pg::database();
    let mut over_socket = pg::client(&db.url());
    let mut over_tcp = pg::client(&db.tcp_url());
    let mut bystander = pg::client(&other.url());
    for c in [&mut over_socket, &mut over_tcp, &mut bystander] {
        assert_eq!(int(c, "SELECT 1::int8"), 1);
    }

    assert_eq!(db.terminate_connections(), 2);

    for c in [&mut over_socket, &mut over_tcp] {
        let e = c
            .query_one("SELECT 1::int8", &[])
            .expect_err("the client was cut");
        eprintln!("the cut client's next query: {}", pg::error_text(&e));
        assert!(c.is_closed());
    }
    assert_eq!(
        int(&mut bystander, "SELECT 1::int8"),
        1,
        "another database's client"
    );
    // New clients work, and the server-wide call (by name) cuts them too.
    let mut again = pg::client(&db.url());
    assert_eq!(int(&mut again, "SELECT 1::int8"), 1);
    assert!(pg::server().terminate_connections(db.name()) >= 1);
    assert!(again.query_one("SELECT 1::int8", &[]).is_err());
    assert_eq!(int(&mut bystander, "SELECT 1::int8"), 1);
}

#[test]
fn restart_keeps_the_data_the_port_and_the_socket_and_a_new_client_works() {
    let server = pg::Server::new();
    let db = server.database();
    pg::execute(
        &db.url(),
        "CREATE TABLE t (x int); INSERT INTO t VALUES (40), (2)",
    );
    let mut old = pg::client(&db.url());
    assert_eq!(int(&mut old, "SELECT sum(x) FROM t"), 42);
    let (port, pid) = (server.port(), server.postmaster_pid());

    let started = Instant::now();
    server.restart();
    eprintln!("restart took {:?}", started.elapsed());

    assert!(server.is_running());
    assert_eq!(server.port(), port);
    assert_ne!(server.postmaster_pid(), pid, "a new postmaster");
    assert!(
        old.query_one("SELECT 1::int8", &[]).is_err(),
        "the old client was cut"
    );
    let mut new = pg::client(&db.url());
    assert_eq!(
        int(&mut new, "SELECT sum(x) FROM t"),
        42,
        "the data is kept"
    );
    assert_eq!(pg::query_scalar(&db.tcp_url(), "SELECT sum(x) FROM t"), 42);
    // The shared server was not touched.
    assert_ne!(pg::server().port(), port);
}

#[test]
fn stop_makes_connecting_fail_and_start_brings_it_back() {
    let server = pg::Server::new();
    let db = server.database();
    pg::execute(
        &db.url(),
        "CREATE TABLE t (x int); INSERT INTO t VALUES (7)",
    );
    let mut open = pg::client(&db.url());

    server.stop();
    assert!(!server.is_running());
    assert_eq!(server.postmaster_pid(), None);
    assert!(cannot_connect(&db.url()), "over the socket");
    assert!(cannot_connect(&db.tcp_url()), "over TCP");
    assert!(open.query_one("SELECT 1::int8", &[]).is_err());
    server.stop(); // already stopped: nothing happens

    server.start();
    assert!(server.is_running());
    assert_eq!(pg::query_scalar(&db.url(), "SELECT sum(x) FROM t"), 7);
    assert_eq!(pg::query_scalar(&db.tcp_url(), "SELECT sum(x) FROM t"), 7);
    let pid = server.postmaster_pid();
    server.start(); // already running: nothing happens
    assert_eq!(server.postmaster_pid(), pid);
}

#[test]
fn a_private_server_starts_quickly_and_is_removed_when_dropped() {
    pg::server(); // the template (initdb) is made once per binary
    let started = Instant::now();
    let server = pg::Server::new();
    let took = started.elapsed();
    eprintln!("a server started in {took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let url = server.admin_url();
    let dir = server.socket_dir().to_owned();
    assert_eq!(pg::query_scalar(&url, "SELECT 1"), 1);
    let pid = server.postmaster_pid().unwrap();
    drop(server);
    assert!(!dir.exists(), "{} is left", dir.display());
    assert!(process_is_gone(pid));
    assert!(cannot_connect(&url));
}

#[actix::test]
async fn the_helpers_work_inside_a_runtime() {
    let db = pg::database();
    pg::execute(
        &db.url(),
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)",
    );
    assert_eq!(pg::query_scalar(&db.url(), "SELECT sum(x) FROM t"), 3);
    assert_eq!(db.terminate_connections(), 0);
    // pg::client itself would make the postgres crate panic here: it says so.
    let e = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pg::client(&db.url())))
        .err()
        .expect("pg::client refuses to run inside a runtime");
    let message = match (e.downcast_ref::<String>(), e.downcast_ref::<&str>()) {
        (Some(s), _) => s.clone(),
        (None, Some(s)) => s.to_string(),
        (None, None) => String::new(),
    };
    assert!(message.contains("std::thread::spawn"), "{message}");
    // On a thread of its own, it works.
    let url = db.url();
    let n = std::thread::spawn(move || int(&mut pg::client(&url), "SELECT count(*) FROM t"))
        .join()
        .unwrap();
    assert_eq!(n, 2);
    // `db` is dropped inside the runtime too.
}

// No server outlives its test binary ------------------------------------------

#[test]
#[ignore = "child process of no_server_outlives_a_killed_test_binary and _a_test_binary_that_panics"]
fn child_starts_a_server() {
    let server = pg::server();
    let db = pg::database();
    assert_eq!(pg::query_scalar(&db.url(), "SELECT 1"), 1);
    println!(
        "SERVER {} {} {}",
        server.postmaster_pid().unwrap(),
        server.socket_dir().display(),
        db.url()
    );
    // Until the parent says (or goes: end of file).
    std::io::stdin().read_line(&mut String::new()).unwrap();
    if std::env::var("MNEMO_PG_CHILD_END").as_deref() == Ok("panic") {
        panic!("the child panics, as a failing test does");
    }
}

/// Starts the child, which starts a server; ends the child (`kill` or
/// `panic`); asserts that the server stops and its temp dir goes.
fn the_server_goes_with_its_binary(end: &str) {
    let mut child = common::child_command("child_starts_a_server", Path::new(""))
        .env("MNEMO_PG_CHILD_END", end)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the child");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.find("SERVER ")
                .map(|at| l[at + "SERVER ".len()..].to_owned())
        })
        .expect("the child printed its server");
    let mut words = line.split_whitespace();
    let pid: i32 = words.next().unwrap().parse().unwrap();
    let socket_dir = PathBuf::from(words.next().unwrap());
    let url = words.next().unwrap().to_owned();
    let temp_root = socket_dir.parent().unwrap().to_owned();
    assert_eq!(
        pg::query_scalar(&url, "SELECT 1"),
        1,
        "the child's server runs"
    );

    if end == "kill" {
        child.kill().unwrap(); // SIGKILL: no destructor, no atexit
    } else {
        writeln!(child.stdin.as_mut().unwrap(), "panic now").unwrap();
    }
    lines.for_each(drop);
    let status = child.wait().unwrap();
    assert!(!status.success(), "{status}");

    let deadline = Instant::now() + Duration::from_secs(60);
    while !process_is_gone(pid) || temp_root.exists() {
        assert!(
            Instant::now() < deadline,
            "after its test binary ended ({status}), the server (pid {pid}) is {} and {} is {}",
            if process_is_gone(pid) {
                "gone"
            } else {
                "still running"
            },
            temp_root.display(),
            if temp_root.exists() {
                "still there"
            } else {
                "gone"
            },
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(cannot_connect(&url));
}

#[test]
fn no_server_outlives_a_killed_test_binary() {
    the_server_goes_with_its_binary("kill");
}

#[test]
fn no_server_outlives_a_test_binary_that_panics() {
    the_server_goes_with_its_binary("panic");
}

/// Whether process `pid` has exited (a zombie has).
fn process_is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Err(_) => true,
        Ok(status) => status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
    }
}
