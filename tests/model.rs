//! The whole write path against a plain model: random interleavings of save,
//! forget, get, list, search, flush and reopen, checked after every step
//! (read-your-writes) and at the end (final state after a reopen).
//!
//! The model is a `BTreeMap` per namespace of what was accepted. Values are
//! made of a small vocabulary in four scripts, so a search for one word has
//! an exact expected answer: the keys whose value contains that word.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use mnemo::{Config, Memory, SaveRequest};
use proptest::prelude::*;

const WORDS: [&str; 8] = [
    "alpha",
    "beta",
    "gamma",
    "Delta",
    "گانا",
    "لکھنا",
    "咖啡",
    "पसंद",
];
const NAMESPACES: [&str; 2] = ["alice", "bob"];

#[derive(Debug, Clone)]
enum Op {
    Save {
        ns: usize,
        key: u8,
        words: Vec<usize>,
    },
    Forget {
        ns: usize,
        key: u8,
    },
    Get {
        ns: usize,
        key: u8,
    },
    List {
        ns: usize,
    },
    Search {
        ns: usize,
        word: usize,
    },
    Flush,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let ns = 0..NAMESPACES.len();
    let key = 0u8..6;
    prop_oneof![
        6 => (ns.clone(), key.clone(), proptest::collection::vec(0..WORDS.len(), 1..4))
            .prop_map(|(ns, key, words)| Op::Save { ns, key, words }),
        2 => (ns.clone(), key.clone()).prop_map(|(ns, key)| Op::Forget { ns, key }),
        2 => (ns.clone(), key).prop_map(|(ns, key)| Op::Get { ns, key }),
        1 => ns.clone().prop_map(|ns| Op::List { ns }),
        3 => (ns, 0..WORDS.len()).prop_map(|(ns, word)| Op::Search { ns, word }),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

type Model = BTreeMap<(usize, String), String>;

fn open(path: &std::path::Path) -> Memory {
    Memory::open(Config::new(path)).expect("open")
}

fn check_namespace(memory: &Memory, model: &Model, ns: usize) {
    let listed: BTreeMap<String, String> = memory
        .list(NAMESPACES[ns], None)
        .unwrap()
        .into_iter()
        .map(|r| {
            assert_eq!(r.namespace, NAMESPACES[ns]);
            (r.key, r.value)
        })
        .collect();
    let want: BTreeMap<String, String> = model
        .iter()
        .filter(|((n, _), _)| *n == ns)
        .map(|((_, k), v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(listed, want, "list of {}", NAMESPACES[ns]);
}

fn run(ops: Vec<Op>) {
    let db = common::temp_db();
    let mut memory = open(&db.path);
    let mut model: Model = BTreeMap::new();
    for op in ops {
        match op {
            Op::Save { ns, key, words } => {
                let key = format!("k{key}");
                let value: Vec<&str> = words.iter().map(|&w| WORDS[w]).collect();
                let value = value.join(" ");
                memory
                    .save(SaveRequest::new(NAMESPACES[ns], "c", &key, &value))
                    .unwrap();
                model.insert((ns, key), value);
            }
            Op::Forget { ns, key } => {
                let key = format!("k{key}");
                memory.forget(NAMESPACES[ns], "c", &key).unwrap();
                model.remove(&(ns, key));
            }
            Op::Get { ns, key } => {
                let key = format!("k{key}");
                let got = memory
                    .get(NAMESPACES[ns], "c", &key)
                    .unwrap()
                    .map(|r| r.value);
                assert_eq!(got.as_ref(), model.get(&(ns, key.clone())), "get {key}");
            }
            Op::List { ns } => check_namespace(&memory, &model, ns),
            Op::Search { ns, word } => {
                let w = WORDS[word];
                let got: BTreeSet<String> = memory
                    .search(NAMESPACES[ns], w, None, 100)
                    .unwrap()
                    .into_iter()
                    .map(|h| {
                        assert_eq!(h.record.namespace, NAMESPACES[ns]);
                        h.record.key
                    })
                    .collect();
                let want: BTreeSet<String> = model
                    .iter()
                    .filter(|((n, _), v)| *n == ns && v.split(' ').any(|x| x == w))
                    .map(|((_, k), _)| k.clone())
                    .collect();
                assert_eq!(got, want, "search {w:?} in {}", NAMESPACES[ns]);
            }
            Op::Flush => memory.flush(),
            Op::Reopen => {
                memory.shutdown_blocking().unwrap();
                drop(memory);
                memory = open(&db.path);
            }
        }
    }
    memory.shutdown_blocking().unwrap();
    drop(memory);
    let memory = open(&db.path);
    for (ns, name) in NAMESPACES.iter().enumerate() {
        check_namespace(&memory, &model, ns);
        for w in WORDS {
            let hits = memory.search(name, w, None, 100).unwrap();
            assert!(
                hits.iter().all(|h| !h.fresh),
                "after reopen, the index has everything"
            );
        }
    }
    memory.shutdown_blocking().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("MNEMO_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn write_path_matches_a_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops);
    }
}
