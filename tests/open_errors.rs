//! Opening something that is not a usable database says what is wrong
//! with it: not a database, corrupt, a device, a read-only file system.
//! Never "the save could not be committed".

mod common;

use std::time::Duration;

use common::temp_db;
use mnemo::{Config, Error, Memory, Result, SaveRequest};

fn open_error(config: Config) -> (String, String) {
    match Memory::open(config) {
        Err(Error::Open { path, reason }) => (path.display().to_string(), reason),
        Err(other) => panic!("expected Error::Open, got {other:?}"),
        Ok(_) => panic!("expected Error::Open, but it opened"),
    }
}

#[test]
fn a_file_that_is_not_a_database_is_named_as_such() -> Result<()> {
    let db = temp_db();
    std::fs::write(
        &db.path,
        b"these are my notes, not a database at all. ".repeat(200),
    )?;
    let (path, reason) = open_error(Config::new(&db.path));
    assert!(path.ends_with("mnemo.db"), "{path}");
    assert!(reason.contains("not an SQLite database"), "{reason}");
    Ok(())
}

#[test]
fn a_damaged_database_is_named_as_such() -> Result<()> {
    let db = temp_db();
    // A database with some pages, written by one plain connection and
    // closed (no engine thread may still hold it open).
    {
        let conn = rusqlite::Connection::open(&db.path).expect("open");
        conn.execute_batch(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
             INSERT INTO notes (body) SELECT printf('%.500c', 'x') FROM n;",
        )
        .expect("fill");
    }
    // Keep SQLite's 100-byte header, overwrite everything after it: the
    // schema (page 1) is unreadable.
    let mut bytes = std::fs::read(&db.path)?;
    assert!(bytes.len() > 4096, "{} bytes", bytes.len());
    bytes[100..].fill(0xa5);
    std::fs::write(&db.path, &bytes)?;
    let (_, reason) = open_error(Config::new(&db.path));
    assert!(reason.contains("corrupt"), "{reason}");
    assert!(!reason.contains("could not be committed"), "{reason}");
    Ok(())
}

#[test]
fn dev_null_is_not_a_database() {
    let mut c = Config::new("/dev/null");
    c.busy_deadline = Duration::from_millis(200);
    match Memory::open(c) {
        Err(e @ (Error::Open { .. } | Error::Io(_))) => {
            let msg = e.to_string();
            assert!(!msg.contains("could not be committed"), "{msg}");
        }
        Err(other) => panic!("expected an open error, got {other:?}"),
        Ok(_) => panic!("/dev/null opened as a database"),
    }
}

/// A read-only file system (a tmpfs mounted read-only; needs root to
/// mount, as CI has: elsewhere the test says so and checks nothing).
#[test]
fn a_read_only_file_system_is_named() -> Result<()> {
    let db = temp_db();
    let mnt = db.dir.path().join("ro");
    std::fs::create_dir(&mnt)?;
    let mount = |opts: &str| {
        std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(&mnt)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !mount("size=20m") {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return Ok(());
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let path = mnt.join("m.db");
    let memory = Memory::open(Config::new(&path))?;
    memory.save(SaveRequest::new("u", "c", "k", "v"))?;
    memory.shutdown_blocking()?;
    // Nothing of the engine's is open on the file system any more (a file
    // open for writing makes the remount fail with "mount point is busy").
    drop(memory);
    let remounted = std::process::Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    assert!(remounted, "remount read-only");
    let (_, reason) = open_error(Config::new(&path));
    assert!(reason.contains("read-only file system"), "{reason}");
    Ok(())
}
