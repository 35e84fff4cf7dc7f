//! Pure tests of the PostgreSQL store's pieces that need no server: URL
//! redaction, the tsvector and tsquery literals, batch grouping, error
//! sorting and open errors. The store against a real server is tested in
//! the workspace's `tests/postgres.rs` and the shared engine tests.

use std::sync::Arc;

use super::batch::groups;
use super::conn::{classify, parse_url, Failure};
use super::schema::{explain, Step};
use super::text::{phrases, quote, tsquery, tsvector};
use super::write::machine_tag;
use super::{open_error, redact, sqlstate};
use crate::model::{OpPayload, StoreOp};
use crate::store::AttemptError;
use crate::text::Query;

#[test]
fn redact_drops_every_password() {
    let cases = [
        (
            "postgres://agent:s3cret-pw@127.0.0.1:1/agents?connect_timeout=2",
            "postgres://agent@127.0.0.1:1/agents?connect_timeout=2",
        ),
        (
            "postgresql://agent@db/agents",
            "postgresql://agent@db/agents",
        ),
        (
            "postgres://u:p%40ss@%2Ftmp%2Fpg:5433/db",
            "postgres://u@%2Ftmp%2Fpg:5433/db",
        ),
        (
            "postgres://u@h/db?password=s3cret&sslmode=disable",
            "postgres://u@h/db?sslmode=disable",
        ),
        ("postgres://u@h/db?password=s3cret", "postgres://u@h/db"),
        // A password holding `/` and `?`: the user part ends at the first `@`.
        ("postgres://u:a/b?c@h/db", "postgres://u@h/db"),
        ("postgres://h/db", "postgres://h/db"),
    ];
    for (url, shown) in cases {
        assert_eq!(redact(url), shown, "{url}");
    }
}

#[test]
fn urls_parse_with_unix_sockets_and_safe_defaults() {
    let c = parse_url("postgres://postgres@%2Ftmp%2Fpgtry:5433/postgres").unwrap();
    assert!(matches!(
        c.get_hosts(),
        [tokio_postgres::config::Host::Unix(p)] if p == std::path::Path::new("/tmp/pgtry")
    ));
    assert_eq!(c.get_ports(), [5433]);
    assert_eq!(c.get_application_name(), Some("mnemo"));
    assert!(c.get_connect_timeout().is_some());
    let c = parse_url("postgres://u@localhost/db?host=/run/pg&connect_timeout=2").unwrap();
    assert_eq!(
        c.get_connect_timeout(),
        Some(&std::time::Duration::from_secs(2))
    );
    let c = parse_url("postgres:///db").unwrap();
    assert_eq!(c.get_hosts().len(), 1, "no host: the local socket");
    assert!(parse_url("postgres://u@h/db?nonsense=1").is_err());
}

#[test]
fn lexemes_are_quoted() {
    assert_eq!(quote("abc"), "'abc'");
    assert_eq!(quote("it's"), "'it''s'");
    assert_eq!(quote(r"a\b"), r"'a\\b'");
}

#[test]
fn the_tsvector_weights_fields_and_keeps_phrases_inside_one() {
    let v = tsvector("favorite_food", "prefs", "Biryani, then more biryani");
    // key at 1-2 (A), category after a gap (B), value after another (D).
    assert_eq!(
        v,
        "'biryani':20,23 'favorit':1A 'food':2A 'more':22 'pref':11B 'then':21"
    );
    // A token in two fields keeps both weights.
    assert_eq!(tsvector("tea", "drinks", "tea"), "'drink':10B 'tea':1A,19");
    assert_eq!(tsvector("", "", ""), "");
}

#[test]
fn the_tsvector_respects_postgres_limits() {
    // Positions stop at 16383.
    let long: String = (0..17_000).map(|i| format!("w{i} ")).collect();
    let v = tsvector("k", "c", &long);
    assert!(v.contains("'w16999':16383"), "clamped");
    assert!(!v.contains(":16384"));
    // At most 256 positions per lexeme.
    let v = tsvector("k", "c", &"same ".repeat(300));
    assert_eq!(v.matches(',').count(), 255);
    // Lexemes over 2046 bytes are left out, their position kept.
    let big = "x".repeat(2047);
    let v = tsvector("k", "c", &format!("a {big} b"));
    assert_eq!(v, "'a':19 'b':21 'c':10B 'k':1A");
}

#[test]
fn the_tsquery_has_the_fts5_expressions_phrases_and_prefix() {
    let q = Query::parse("favorite_food sister name");
    assert_eq!(
        phrases(&q),
        vec![
            (vec!["favorit".to_owned(), "food".to_owned()], false),
            (vec!["sister".to_owned()], false),
            (vec!["name".to_owned()], true),
        ]
    );
    assert_eq!(
        tsquery(&q).unwrap(),
        "('favorit' <-> 'food') | ('sister') | ('name':*)"
    );
    assert_eq!(
        tsquery(&Query::parse("海鲜过敏")).unwrap(),
        "('海' <-> '鲜') | ('鲜' <-> '过') | ('过' <-> '敏') | ('海') | ('鲜') | ('过') | ('敏')"
    );
    assert_eq!(tsquery(&Query::parse("?! --")), None);
    // A term with a token PostgreSQL cannot hold is dropped.
    let q = Query::parse(&format!("tea {}", "y".repeat(3000)));
    assert_eq!(tsquery(&q).unwrap(), "('tea')");
}

fn op(seq: u64, key: &str, value: Option<&str>) -> StoreOp {
    StoreOp {
        seq,
        hlc: seq,
        payload: Arc::new(OpPayload::new("n", "c", key, value, None, 0)),
    }
}

#[test]
fn a_batch_is_grouped_by_occurrence_and_sorted_by_key() {
    let ops = [
        op(1, "b", Some("1")),
        op(2, "a", Some("1")),
        op(3, "b", None),
        op(4, "é", Some("1")),
        op(5, "b", Some("2")),
        op(6, "Z", Some("1")),
    ];
    assert_eq!(groups(&ops), vec![vec![5, 1, 0, 3], vec![2], vec![4]]);
}

#[test]
fn journal_marks_name_the_machine_and_the_folder() {
    let tag = machine_tag(std::path::Path::new("/var/lib/mnemo/journals/"));
    assert!(tag.ends_with(":/var/lib/mnemo/journals/"), "{tag}");
    assert!(tag.len() > ":/var/lib/mnemo/journals/".len(), "{tag}");
}

#[test]
fn errors_are_sorted_and_explained() {
    assert!(matches!(
        classify(&Failure::Local("gone".into())),
        AttemptError::Io(_)
    ));
    assert_eq!(
        sqlstate("permission denied for database x (SQLSTATE 42501)"),
        Some("42501")
    );
    assert_eq!(sqlstate("connection closed"), None);
    let e = open_error(
        "postgres://v:pw@h/db",
        crate::Error::Postgres("permission denied for schema mnemo (SQLSTATE 42501)".into()),
    );
    let text = e.to_string();
    assert!(matches!(e, crate::Error::Open { .. }), "{e:?}");
    assert!(
        text.contains("permission") && !text.contains("pw"),
        "{text}"
    );
    let reason = explain(
        "permission denied for database db",
        Some("42501"),
        Step::Create,
    );
    assert!(reason.contains("grant CREATE on the database"), "{reason}");
    let reason = explain(
        "password authentication failed",
        Some("28P01"),
        Step::Connect,
    );
    assert!(reason.starts_with("authentication failed"), "{reason}");
    let reason = explain("error connecting to server", None, Step::Connect);
    assert!(reason.starts_with("cannot connect"), "{reason}");
}
