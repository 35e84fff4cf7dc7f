//! Helpers shared by the benchmarks (and the resident-memory example): the
//! engine set-up, percentile printing, synthetic memory text, and whether a
//! measurement outside criterion should run.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use mnemo::{Config, Memory, SaveRequest};

/// An engine on `dir/name` with the default configuration, except room for a
/// whole measurement chunk to be pending at once.
pub fn engine(dir: &Path, name: &str, journal: bool) -> Memory {
    let mut c = Config::new(dir.join(name));
    c.max_pending = 1_000_000;
    c.max_pending_bytes = 1 << 30;
    c.journal = journal;
    Memory::open(c).expect("open")
}

/// `true` under `cargo bench` (criterion is passed `--bench`); `false` when
/// the bench runs as a test (`cargo test --benches`), where the extra
/// measurements outside criterion are skipped.
pub fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Whether a measurement outside criterion with this id should run: in bench
/// mode, and when no filter was given on the command line or one of the
/// filters is part of the id (criterion's own filters are regular
/// expressions; a plain substring is what people type).
pub fn selected(id: &str) -> bool {
    if !bench_mode() {
        return false;
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty() || filters.iter().any(|f| id.contains(f.as_str()))
}

/// Sorted timings → the value at quantile `q`.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// A duration in the unit that suits it.
pub fn human(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.2} us")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// Prints p50/p99/p999 (and the count) of a set of timings.
pub fn print_percentiles(label: &str, mut times: Vec<Duration>) {
    times.sort_unstable();
    println!(
        "{label}: p50 {}, p99 {}, p999 {}, max {} ({} samples)",
        human(quantile(&times, 0.5)),
        human(quantile(&times, 0.99)),
        human(quantile(&times, 0.999)),
        human(times[times.len() - 1]),
        times.len()
    );
}

/// Times each of `count` calls of `f(i)` on its own.
pub fn timed(count: usize, mut f: impl FnMut(usize)) -> Vec<Duration> {
    (0..count)
        .map(|i| {
            let t = Instant::now();
            f(i);
            t.elapsed()
        })
        .collect()
}

/// p50 / p99 / p999 / max of a set of timings.
#[derive(Clone, Copy)]
pub struct Pcts {
    pub n: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
}

impl Pcts {
    pub fn of(mut times: Vec<Duration>) -> Pcts {
        times.sort_unstable();
        Pcts {
            n: times.len(),
            p50: quantile(&times, 0.5),
            p99: quantile(&times, 0.99),
            p999: quantile(&times, 0.999),
            max: times[times.len() - 1],
        }
    }

    pub fn line(&self) -> String {
        format!(
            "p50 {}, p99 {}, p999 {}, max {} ({} samples)",
            human(self.p50),
            human(self.p99),
            human(self.p999),
            human(self.max),
            self.n
        )
    }
}

/// Times `f` once.
pub fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed())
}

/// Synthetic but word-like memory text. Words are built from syllables, so
/// the tokenizer sees ordinary words; a memory's value has twelve words
/// drawn uniformly from a vocabulary of 2,000 (each word is in about 0.6% of
/// memories) and one of ten topic words (each in 10% of memories).
pub struct Words {
    vocabulary: Vec<String>,
}

pub const TOPICS: [&str; 10] = [
    "food", "music", "family", "work", "travel", "health", "sport", "books", "pets", "films",
];

impl Words {
    pub fn new() -> Words {
        const SYL: [&str; 16] = [
            "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ba", "de", "fu", "go", "hi", "ja",
            "pe", "zu",
        ];
        let mut vocabulary = Vec::with_capacity(2_000);
        'outer: for a in SYL {
            for b in SYL {
                for c in SYL {
                    vocabulary.push(format!("{a}{b}{c}"));
                    if vocabulary.len() == 2_000 {
                        break 'outer;
                    }
                }
            }
        }
        Words { vocabulary }
    }

    /// The word at `i` (modulo the vocabulary).
    pub fn word(&self, i: usize) -> &str {
        &self.vocabulary[i % self.vocabulary.len()]
    }

    /// The value of memory `n` (deterministic; `salt` changes every word).
    pub fn value(&self, n: u64, salt: u64) -> String {
        let mut rng = fastrand::Rng::with_seed(n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt);
        let mut v = format!("the user said this about {}:", TOPICS[(n % 10) as usize]);
        for _ in 0..12 {
            v.push(' ');
            v.push_str(self.word(rng.usize(..self.vocabulary.len())));
        }
        v
    }

    /// A save of memory `n` in `namespace`.
    pub fn request(&self, namespace: &str, n: u64, salt: u64) -> SaveRequest {
        SaveRequest::new(
            namespace,
            TOPICS[(n % 10) as usize],
            format!("memory-{n}"),
            self.value(n, salt),
        )
    }
}
