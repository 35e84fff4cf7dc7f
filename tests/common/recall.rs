//! Recall measurement shared by the retrieval tests over the project's own
//! sets (`tests/conversations.rs`, `tests/crosslingual.rs`): the memories and
//! probes, the two classical baselines (plain FTS5, textbook BM25), saving
//! through an engine, and the tables.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use mnemo::{Memory, Result, SaveRequest};
use serde_json::Value;

/// A memory to save.
#[derive(Debug, Clone)]
pub struct Mem {
    pub namespace: String,
    pub category: String,
    pub key: String,
    pub value: String,
}

/// A question and the keys that answer it; `group` is its row in the
/// tables (a language, say).
#[derive(Debug, Clone)]
pub struct Probe {
    pub namespace: String,
    pub text: String,
    pub expected: Vec<String>,
    pub group: String,
}

fn data_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// One protocol's memories and questions.
pub struct Set {
    pub name: &'static str,
    pub memories: Vec<Mem>,
    pub probes: Vec<Probe>,
}

fn text(v: &Value, name: &str) -> String {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} in {v}"))
        .to_owned()
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `tests/data/conversations.json` as two sets: every turn a memory
/// (`turn`, its id, `Speaker: text`; a question's evidence turns answer
/// it), and every distilled fact a memory (`fact`, its id, its text; the
/// facts covering a question answer it; questions no fact covers are left
/// out).
pub fn conversation_sets() -> [Set; 2] {
    let data: Value = serde_json::from_str(
        &std::fs::read_to_string(data_file("conversations.json")).expect("data file"),
    )
    .expect("json");
    let mut turns = Set {
        name: "turns",
        memories: Vec::new(),
        probes: Vec::new(),
    };
    let mut facts = Set {
        name: "facts",
        memories: Vec::new(),
        probes: Vec::new(),
    };
    for c in data["conversations"].as_array().expect("conversations") {
        let ns = text(c, "namespace");
        let lang = text(c, "language");
        for s in c["sessions"].as_array().expect("sessions") {
            for t in s["turns"].as_array().expect("turns") {
                turns.memories.push(Mem {
                    namespace: format!("{ns}/turns"),
                    category: "turn".into(),
                    key: text(t, "id"),
                    value: format!("{}: {}", text(t, "speaker"), text(t, "text")),
                });
            }
        }
        for f in c["facts"].as_array().expect("facts") {
            facts.memories.push(Mem {
                namespace: format!("{ns}/facts"),
                category: "fact".into(),
                key: text(f, "id"),
                value: text(f, "text"),
            });
        }
        for q in c["questions"].as_array().expect("questions") {
            let question = text(q, "question");
            turns.probes.push(Probe {
                namespace: format!("{ns}/turns"),
                text: question.clone(),
                expected: ids(&q["evidence"]),
                group: lang.clone(),
            });
            let covering = ids(&q["facts"]);
            if !covering.is_empty() {
                facts.probes.push(Probe {
                    namespace: format!("{ns}/facts"),
                    text: question,
                    expected: covering,
                    group: lang.clone(),
                });
            }
        }
    }
    [turns, facts]
}

/// `tests/data/retrieval.json`: the 171 agent memories and their 122
/// keyword queries (by language), and the 22 English paraphrases.
pub fn retrieval_sets() -> [Set; 2] {
    let data: Value = serde_json::from_str(
        &std::fs::read_to_string(data_file("retrieval.json")).expect("data file"),
    )
    .expect("json");
    let memories: Vec<Mem> = data["memories"]
        .as_array()
        .expect("memories")
        .iter()
        .map(|m| Mem {
            namespace: text(m, "namespace"),
            category: text(m, "category"),
            key: text(m, "key"),
            value: text(m, "value"),
        })
        .collect();
    let probes = |name: &str| -> Vec<Probe> {
        data[name]
            .as_array()
            .expect("queries")
            .iter()
            .map(|q| Probe {
                namespace: text(q, "namespace"),
                text: text(q, "text"),
                expected: ids(&q["expected"]),
                group: text(q, "lang"),
            })
            .collect()
    };
    [
        Set {
            name: "keywords",
            memories: memories.clone(),
            probes: probes("queries"),
        },
        Set {
            name: "paraphrases",
            memories,
            probes: probes("paraphrases"),
        },
    ]
}

/// `tests/data/crosslingual.json`: Urdu, Hindi and Chinese memories with
/// opaque keys, and English questions about them (group: the memories'
/// language).
pub fn crosslingual_set() -> Set {
    let data: Value = serde_json::from_str(
        &std::fs::read_to_string(data_file("crosslingual.json")).expect("data file"),
    )
    .expect("json");
    let mut set = Set {
        name: "cross-lingual",
        memories: Vec::new(),
        probes: Vec::new(),
    };
    for ns in data["namespaces"].as_array().expect("namespaces") {
        let namespace = text(ns, "namespace");
        let lang = text(ns, "language");
        for m in ns["memories"].as_array().expect("memories") {
            set.memories.push(Mem {
                namespace: namespace.clone(),
                category: text(m, "category"),
                key: text(m, "key"),
                value: text(m, "value"),
            });
        }
        for q in ns["queries"].as_array().expect("queries") {
            set.probes.push(Probe {
                namespace: namespace.clone(),
                text: text(q, "query"),
                expected: ids(&q["expected"]),
                group: lang.clone(),
            });
        }
    }
    set
}

/// Hits at rank 1 and in the top 5, of `n` probes.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Recall {
    pub n: usize,
    pub at1: usize,
    pub at5: usize,
}

impl Recall {
    pub fn r1(&self) -> f64 {
        pct(self.at1, self.n)
    }
    pub fn r5(&self) -> f64 {
        pct(self.at5, self.n)
    }
}

fn pct(hits: usize, n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        100.0 * hits as f64 / n as f64
    }
}

/// The rank (0-based) of the first expected key among `got`.
pub fn rank(p: &Probe, got: &[String]) -> Option<usize> {
    got.iter().position(|k| p.expected.contains(k))
}

/// Recall per group and over "all".
pub fn score(probes: &[Probe], results: &[Vec<String>]) -> BTreeMap<String, Recall> {
    let mut out: BTreeMap<String, Recall> = BTreeMap::new();
    for (p, got) in probes.iter().zip(results) {
        let r = rank(p, got);
        for g in [p.group.as_str(), "all"] {
            let e = out.entry(g.to_owned()).or_default();
            e.n += 1;
            e.at1 += usize::from(r == Some(0));
            e.at5 += usize::from(r.is_some_and(|r| r < 5));
        }
    }
    out
}

/// Prints a markdown table: one row per group (`groups` in order, then
/// "all"), two columns (@1, @5) per named result.
pub fn table(title: &str, groups: &[&str], columns: &[(&str, &BTreeMap<String, Recall>)]) {
    println!("{title}");
    let mut head = String::from("| set | questions |");
    let mut rule = String::from("|---|---:|");
    for (name, _) in columns {
        head.push_str(&format!(" {name} @1 | {name} @5 |"));
        rule.push_str("---:|---:|");
    }
    println!("{head}\n{rule}");
    for g in groups.iter().copied().chain(["all"]) {
        let n = columns
            .first()
            .and_then(|(_, s)| s.get(g))
            .map_or(0, |r| r.n);
        if n == 0 {
            continue;
        }
        let mut row = format!("| {g} | {n} |");
        for (_, s) in columns {
            let r = s.get(g).copied().unwrap_or_default();
            row.push_str(&format!(" {:.1} | {:.1} |", r.r1(), r.r5()));
        }
        println!("{row}");
    }
}

/// Plain SQLite FTS5: the raw texts in a table with the default
/// `unicode61` tokenizer, queried with the probe's whitespace-separated
/// words, each quoted, OR'ed, ranked by bm25 (key, category, value weighed
/// 3, 2, 1 as in mnemo). Top 5 keys per probe.
pub fn plain_fts5(memories: &[Mem], probes: &[Probe]) -> rusqlite::Result<Vec<Vec<String>>> {
    let conn = rusqlite::Connection::open_in_memory()?;
    conn.execute_batch(
        "CREATE VIRTUAL TABLE plain USING fts5 (ns UNINDEXED, mkey UNINDEXED, key, category, value)",
    )?;
    for m in memories {
        conn.execute(
            "INSERT INTO plain (ns, mkey, key, category, value) VALUES (?1, ?2, ?2, ?3, ?4)",
            rusqlite::params![m.namespace, m.key, m.category, m.value],
        )?;
    }
    let mut st = conn.prepare(
        "SELECT mkey FROM plain WHERE plain MATCH ?1 AND ns = ?2
         ORDER BY bm25(plain, 0.0, 0.0, 3.0, 2.0, 1.0) LIMIT 5",
    )?;
    let mut out = Vec::with_capacity(probes.len());
    for p in probes {
        let expr = p
            .text
            .split_whitespace()
            .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(" OR ");
        // A word the tokenizer reads as nothing is a syntax error for FTS5;
        // it counts as a miss, as it would for an agent.
        let got = st
            .query_map(rusqlite::params![expr, p.namespace], |r| r.get(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
            .unwrap_or_default();
        out.push(got);
    }
    Ok(out)
}

/// NLTK's English stop-word list, the one classical BM25 setups use.
const NLTK_ENGLISH: &str = "i me my myself we our ours ourselves you you're you've you'll you'd \
    your yours yourself yourselves he him his himself she she's her hers herself it it's its \
    itself they them their theirs themselves what which who whom this that that'll these those \
    am is are was were be been being have has had having do does did doing a an the and but if \
    or because as until while of at by for with about against between into through during \
    before after above below to from up down in out on off over under again further then once \
    here there when where why how all any both each few more most other some such no nor not \
    only own same so than too very s t can will just don don't should should've now d ll m o re \
    ve y ain aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn hasn't haven \
    haven't isn isn't ma mightn mightn't mustn mustn't needn needn't shan shan't shouldn \
    shouldn't wasn wasn't weren weren't won won't wouldn wouldn't";

/// The classical reference: Okapi BM25 as the common reference
/// implementation computes it (`rank_bm25`'s BM25Okapi: k1 = 1.5, b = 0.75,
/// idf = ln((N - df + 0.5) / (df + 0.5)), a negative idf replaced by 0.25 x
/// the mean idf), over the value's words: lower-cased, cut at anything but
/// letters, digits and marks, NLTK's English stop words dropped. A CJK
/// character is a word of its own (cut at nothing, a Chinese sentence would
/// be one word and the reference would find nothing in Chinese). One corpus
/// per namespace. Top 5 keys per probe; ties keep the memories' order.
pub fn bm25_reference(memories: &[Mem], probes: &[Probe]) -> Vec<Vec<String>> {
    let stop: HashSet<&str> = NLTK_ENGLISH.split_whitespace().collect();
    let words = |text: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = String::new();
        for c in text.chars().flat_map(char::to_lowercase) {
            let cjk = matches!(c as u32, 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF);
            if cjk {
                out.push(std::mem::take(&mut cur));
                out.push(c.to_string());
            } else if c.is_alphanumeric() || unicode_mark(c) || c == '\'' {
                cur.push(c);
            } else {
                out.push(std::mem::take(&mut cur));
            }
        }
        out.push(cur);
        out.into_iter()
            .map(|w| w.trim_matches('\'').to_owned())
            .filter(|w| !w.is_empty() && !stop.contains(w.as_str()))
            .collect()
    };
    let mut corpora: HashMap<&str, Vec<(&str, Vec<String>)>> = HashMap::new();
    for m in memories {
        corpora
            .entry(&m.namespace)
            .or_default()
            .push((&m.key, words(&m.value)));
    }
    let (k1, b, eps) = (1.5f64, 0.75f64, 0.25f64);
    probes
        .iter()
        .map(|p| {
            let Some(docs) = corpora.get(p.namespace.as_str()) else {
                return Vec::new();
            };
            let n = docs.len() as f64;
            let avgdl = docs.iter().map(|(_, w)| w.len()).sum::<usize>() as f64 / n;
            let mut df: HashMap<&str, f64> = HashMap::new();
            for (_, w) in docs {
                for t in w.iter().map(String::as_str).collect::<HashSet<_>>() {
                    *df.entry(t).or_default() += 1.0;
                }
            }
            let raw_idf = |d: f64| ((n - d + 0.5) / (d + 0.5)).ln();
            let mean_idf = df.values().map(|&d| raw_idf(d)).sum::<f64>() / df.len().max(1) as f64;
            let idf = |t: &str| {
                let v = raw_idf(df.get(t).copied().unwrap_or(0.0));
                if v < 0.0 {
                    eps * mean_idf
                } else {
                    v
                }
            };
            let q = words(&p.text);
            let mut scored: Vec<(usize, f64)> = docs
                .iter()
                .enumerate()
                .map(|(i, (_, w))| {
                    let dl = w.len() as f64;
                    let s = q
                        .iter()
                        .map(|t| {
                            let tf = w.iter().filter(|x| *x == t).count() as f64;
                            idf(t) * tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * dl / avgdl))
                        })
                        .sum::<f64>();
                    (i, s)
                })
                .collect();
            scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            scored
                .into_iter()
                .take(5)
                .filter(|(_, s)| *s > 0.0)
                .map(|(i, _)| docs[i].0.to_owned())
                .collect()
        })
        .collect()
}

fn unicode_mark(c: char) -> bool {
    // Combining marks of the scripts in the sets (Devanagari vowel signs,
    // Arabic harakat) and the general combining block.
    matches!(c as u32, 0x0300..=0x036F | 0x0610..=0x061A | 0x064B..=0x065F | 0x0670 | 0x06D6..=0x06ED | 0x0900..=0x0903 | 0x093A..=0x094F | 0x0951..=0x0957 | 0x0962..=0x0963)
}

/// Saves every memory, each at least 1 ms after the one before (recency
/// breaks ties, in milliseconds: this makes every run rank ties alike),
/// flushes, and waits until each is indexed (and embedded, for a hybrid
/// engine).
pub async fn save_and_index(memory: &Memory, memories: &[Mem]) -> Result<()> {
    let mut receipts = Vec::with_capacity(memories.len());
    for m in memories {
        receipts.push(memory.save(SaveRequest::new(
            &m.namespace,
            &m.category,
            &m.key,
            &m.value,
        ))?);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    memory.flush();
    for r in &receipts {
        r.indexed().await?;
    }
    Ok(())
}

/// The top 5 keys of every probe through `Memory::search`.
pub fn search_all(memory: &Memory, probes: &[Probe]) -> Result<Vec<Vec<String>>> {
    probes
        .iter()
        .map(|p| {
            Ok(memory
                .search(&p.namespace, &p.text, None, 5)?
                .into_iter()
                .map(|h| h.record.key)
                .collect())
        })
        .collect()
}

/// The probes whose first expected key is not first, with its rank and
/// the top keys: what a table's figure is made of.
pub fn misses(name: &str, probes: &[Probe], results: &[Vec<String>], max: usize) {
    let missed: Vec<_> = probes
        .iter()
        .zip(results)
        .filter(|(p, got)| rank(p, got) != Some(0))
        .collect();
    println!("{name}: {} of {} not first", missed.len(), probes.len());
    for (p, got) in missed.into_iter().take(max) {
        let r = rank(p, got).map_or("-".to_owned(), |r| (r + 1).to_string());
        println!(
            "  [{}] {:?} expects {:?}: rank {r}, got {:?}",
            p.group, p.text, p.expected, got
        );
    }
}
