//! `recall_memory` through MCP on a 6,000-memory namespace: the latency an
//! agent host sees, from the client's request to the parsed answer.
//!
//! `cargo bench --bench recall_mcp` (lexical and hybrid), and with the
//! multilingual model: `scripts/fetch-e5.sh && cargo bench --features e5
//! --bench recall_mcp` (adds e5). A mode's name as the filter runs only that
//! mode: `cargo bench --bench recall_mcp -- lexical`.
//!
//! **The database.** 6,000 memories of one namespace, as an agent would save
//! them for one user over a long time: (category, key, value) built from
//! word lists with a seeded RNG (people, relations, cities, foods, dates,
//! amounts, projects, ...), so names, places and topics repeat across
//! memories; one in five values is Urdu, Hindi or Chinese. It is built once
//! per mode with the library (saves in chunks of 500, each chunk flushed and
//! every receipt awaited until indexed) and kept at
//! `target/bench-data/recall_mcp_6000_<mode>.db`, beside a marker file that
//! names the corpus version (and the embedder's model id); it is rebuilt
//! only when the file or the marker is missing or different. The e5 build
//! embeds 6,000 memories on one core: several minutes, with progress lines.
//!
//! **The measurement.** Per mode (`lexical`; `hybrid`, the built-in n-gram
//! vectors; `e5` with the feature), the bench starts the real binary,
//! `mnemo --db <that file> --namespace <ns> --retrieval <mode> mcp`, and
//! talks to it over stdio with rmcp's client (as `tests/mcp.rs` does): 20
//! warm-up calls, then 600 calls of `recall_memory` (e5: 200) with the
//! default limit (5), round-robin over 60 varied queries (questions,
//! keywords, a few in Urdu, Hindi and Chinese), each timed from the call to
//! its parsed JSON answer; p50 / p99 / p99.9 are printed beside the targets.
//! Printed beside, to show where the time goes: `get_memory` through the
//! same server (the MCP round trip with almost no engine work),
//! `Memory::search` in process on the same database with the same queries
//! (the engine's own cost, no MCP), and for e5 the query embedding alone.
//! Criterion then times one `recall_memory` call per mode
//! (`recall_mcp/<mode>`).
//!
//! Under `cargo test --benches` the database is 100 memories in a temporary
//! folder, criterion runs each function once, and nothing else is measured.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use mnemo::{Config, Embedder, Memory, Retrieval, SaveRequest};
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

mod common;
use common::{bench_mode, human, selected, timed, Pcts};

/// The namespace of every memory, and the one the server is started on.
const NS: &str = "user-7";
/// Memories in the namespace (bench mode).
const MEMORIES: usize = 6_000;
/// Memories in the namespace under `cargo test --benches`.
const TEST_MEMORIES: usize = 100;
/// Change when the corpus (or how it is built, or the database's layout)
/// changes: a cached database with another version is rebuilt. 2: the index
/// moved to a file of its own.
const CORPUS_VERSION: u32 = 2;
/// Saves per flushed chunk while building (one progress line each).
const CHUNK: usize = 500;
/// Calls before any timing, per server.
const WARMUP: usize = 20;
/// A bound on any one call, so a hung server fails the bench.
const CALL_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// The corpus.

/// Women's names first, then men's (see [`relation`]).
const NAMES: [&str; 20] = [
    "Ayesha", "Maria", "Priya", "Fatima", "Sara", "Lena", "Zainab", "Noor", "Emma", "Lucia",
    "Bilal", "Tom", "Chen", "Omar", "James", "Ravi", "Hamza", "David", "Kenji", "Ahmed",
];
const FEMALE_RELATIONS: [&str; 4] = ["sister", "mother", "daughter", "aunt"];
const MALE_RELATIONS: [&str; 4] = ["brother", "father", "son", "uncle"];
const RELATIONS: [&str; 7] = [
    "cousin",
    "friend",
    "neighbour",
    "colleague",
    "manager",
    "roommate",
    "landlord",
];
const CITIES: [&str; 16] = [
    "Lahore",
    "Karachi",
    "Berlin",
    "Lisbon",
    "Toronto",
    "Delhi",
    "Shanghai",
    "Istanbul",
    "Nairobi",
    "London",
    "Dubai",
    "Osaka",
    "Mumbai",
    "Madrid",
    "Chicago",
    "Islamabad",
];
const JOBS: [&str; 12] = [
    "nurse",
    "teacher",
    "software engineer",
    "accountant",
    "architect",
    "pharmacist",
    "chef",
    "lawyer",
    "pilot",
    "journalist",
    "dentist",
    "electrician",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const FOODS: [&str; 12] = [
    "biryani",
    "sushi",
    "pasta",
    "tacos",
    "dal",
    "ramen",
    "falafel",
    "pizza",
    "dumplings",
    "curry",
    "salad",
    "pancakes",
];
const ALLERGENS: [&str; 8] = [
    "peanuts",
    "shellfish",
    "gluten",
    "lactose",
    "eggs",
    "soy",
    "sesame",
    "pollen",
];
const GIFTS: [&str; 8] = [
    "books",
    "perfume",
    "flowers",
    "headphones",
    "a watch",
    "chocolates",
    "board games",
    "plants",
];
const AIRLINES: [&str; 6] = [
    "Emirates",
    "PIA",
    "Lufthansa",
    "Turkish Airlines",
    "Air Canada",
    "Qatar Airways",
];
const MEDS: [&str; 7] = [
    "metformin",
    "ibuprofen",
    "vitamin D",
    "iron tablets",
    "omeprazole",
    "levothyroxine",
    "amoxicillin",
];
const TIMES_OF_DAY: [&str; 4] = ["morning", "afternoon", "evening", "night"];
const SURNAMES: [&str; 10] = [
    "Khan", "Smith", "Patel", "Garcia", "Müller", "Wang", "Hussain", "Silva", "Kim", "Rossi",
];
const PROJECTS: [&str; 8] = [
    "Atlas",
    "Phoenix",
    "billing",
    "onboarding",
    "mobile app",
    "data warehouse",
    "hiring",
    "website redesign",
];
const SKILLS: [&str; 11] = [
    "guitar",
    "Spanish",
    "piano",
    "swimming",
    "painting",
    "Mandarin",
    "chess",
    "pottery",
    "photography",
    "yoga",
    "calligraphy",
];
const EXPENSES: [&str; 9] = [
    "groceries",
    "fuel",
    "internet",
    "school fees",
    "gym",
    "electricity",
    "eating out",
    "clothes",
    "phone",
];
const PAYMENTS: [&str; 4] = ["credit card", "bank transfer", "cash", "debit card"];
const ANIMALS: [&str; 5] = ["dog", "cat", "parrot", "rabbit", "tortoise"];
const PET_NAMES: [&str; 8] = [
    "Biscuit", "Luna", "Max", "Coco", "Simba", "Mango", "Pepper", "Oreo",
];
const SIGHTS: [&str; 7] = [
    "the old city",
    "the museum",
    "the mountains",
    "the beach",
    "a cricket match",
    "a concert",
    "the night market",
];
const MUSIC: [&str; 8] = [
    "jazz",
    "qawwali",
    "classical",
    "rock",
    "lo-fi",
    "K-pop",
    "ghazal",
    "hip hop",
];
const ACTIVITIES: [&str; 5] = ["cooking", "running", "working", "driving", "reading"];

// Urdu.
const UR_FEMALE_RELATIONS: [&str; 4] = ["بہن", "امی", "دوست", "خالہ"];
const UR_MALE_RELATIONS: [&str; 4] = ["بھائی", "والد", "بیٹے", "ماموں"];
const UR_NAMES: [&str; 6] = ["عائشہ", "فاطمہ", "زینب", "نور", "سارہ", "مریم"];
const UR_CITIES: [&str; 6] = ["لاہور", "کراچی", "اسلام آباد", "پشاور", "ملتان", "کوئٹہ"];
const UR_FOODS: [&str; 6] = ["بریانی", "چائے", "آم", "نہاری", "حلیم", "پکوڑے"];
const UR_DAYS: [&str; 7] = ["پیر", "منگل", "بدھ", "جمعرات", "جمعہ", "ہفتہ", "اتوار"];
const UR_MONTHS: [&str; 6] = ["جنوری", "مارچ", "مئی", "اگست", "اکتوبر", "دسمبر"];
// Hindi.
const HI_NAMES: [&str; 6] = ["प्रिया", "अनीता", "सीमा", "पूजा", "कविता", "नेहा"];
const HI_CITIES: [&str; 6] = ["दिल्ली", "मुंबई", "जयपुर", "पुणे", "लखनऊ", "चेन्नई"];
const HI_FOODS: [&str; 6] = ["पनीर", "समोसा", "चाय", "दाल", "आम", "खिचड़ी"];
const HI_DAYS: [&str; 7] = [
    "सोमवार",
    "मंगलवार",
    "बुधवार",
    "गुरुवार",
    "शुक्रवार",
    "शनिवार",
    "रविवार",
];
// Chinese.
const ZH_NAMES: [&str; 6] = ["小明", "丽丽", "王芳", "李伟", "张静", "刘洋"];
const ZH_CITIES: [&str; 6] = ["北京", "上海", "成都", "杭州", "广州", "西安"];
const ZH_FOODS: [&str; 6] = ["饺子", "火锅", "米饭", "面条", "包子", "烤鸭"];
const ZH_DAYS: [&str; 7] = ["一", "二", "三", "四", "五", "六", "天"];
const ZH_PETS: [&str; 4] = ["咪咪", "花花", "小白", "豆豆"];

/// One memory: (category, key, value).
type Triple = (String, String, String);

/// A relation that fits the name `NAMES[i]`.
fn relation(rng: &mut fastrand::Rng, i: usize) -> &'static str {
    match rng.usize(..2) {
        0 if i < 10 => pick(rng, &FEMALE_RELATIONS),
        0 => pick(rng, &MALE_RELATIONS),
        _ => pick(rng, &RELATIONS),
    }
}

fn pick<'a>(rng: &mut fastrand::Rng, list: &[&'a str]) -> &'a str {
    list[rng.usize(..list.len())]
}

/// A key part from words: lower case, spaces as dashes.
fn slug(s: &str) -> String {
    s.to_lowercase().replace([' ', '.'], "-")
}

/// Memory `n`'s (category, key, value), English from one of twelve
/// templates; the key ends in `n`, so every memory is its own.
fn english(rng: &mut fastrand::Rng, n: usize) -> Triple {
    let who = rng.usize(..NAMES.len());
    let name = NAMES[who];
    let city = pick(rng, &CITIES);
    let month = pick(rng, &MONTHS);
    let day = rng.u32(1..=28);
    let weekday = pick(rng, &WEEKDAYS);
    let (category, key, value) = match rng.usize(..12) {
        0 => {
            let relation = relation(rng, who);
            (
                "people",
                format!("{relation}-{}", slug(name)),
                format!(
                    "{name} is my {relation}; lives in {city} and works as a {}",
                    pick(rng, &JOBS)
                ),
            )
        }
        1 => (
            "birthdays",
            format!("birthday-{}", slug(name)),
            format!(
                "{name}'s birthday is on {month} {day}; likes {} as a present",
                pick(rng, &GIFTS)
            ),
        ),
        2 => {
            let food = pick(rng, &FOODS);
            (
                "food",
                format!("food-{}", slug(food)),
                format!(
                    "Prefers {food} over {}; allergic to {}",
                    pick(rng, &FOODS),
                    pick(rng, &ALLERGENS)
                ),
            )
        }
        3 => (
            "travel",
            format!("flight-{}", slug(city)),
            format!(
                "Flight to {city} on {month} {day}, seat {}{}, booked with {}",
                rng.u32(1..=40),
                pick(rng, &["A", "B", "C", "D", "E", "F"]),
                pick(rng, &AIRLINES)
            ),
        ),
        4 => {
            let med = pick(rng, &MEDS);
            (
                "health",
                format!("medication-{}", slug(med)),
                format!(
                    "Takes {med} {} mg every {}; prescribed by Dr. {}",
                    pick(rng, &["5", "10", "20", "50", "100", "200", "500"]),
                    pick(rng, &TIMES_OF_DAY),
                    pick(rng, &SURNAMES)
                ),
            )
        }
        5 => {
            let project = pick(rng, &PROJECTS);
            (
                "work",
                format!("meeting-{}", slug(project)),
                format!(
                    "Weekly meeting with {name} ({}) about the {project} project every {weekday} at {}:00",
                    pick(rng, &["manager", "colleague", "client", "team lead"]),
                    rng.u32(8..=18)
                ),
            )
        }
        6 => {
            let skill = pick(rng, &SKILLS);
            (
                "hobbies",
                format!("learning-{}", slug(skill)),
                format!(
                    "Has been learning {skill} for {} months; practises on {weekday}s in {city}",
                    rng.u32(1..=24)
                ),
            )
        }
        7 => {
            let expense = pick(rng, &EXPENSES);
            (
                "finance",
                format!("budget-{}", slug(expense)),
                format!(
                    "Budget for {expense} is {} dollars a month; pays by {}",
                    rng.u32(5..=300) * 10,
                    pick(rng, &PAYMENTS)
                ),
            )
        }
        8 => {
            let pet = pick(rng, &PET_NAMES);
            (
                "pets",
                format!("pet-{}", slug(pet)),
                format!(
                    "Has a {} named {pet}, {} years old; the vet is in {city}",
                    pick(rng, &ANIMALS),
                    rng.u32(1..=15)
                ),
            )
        }
        9 => (
            "home",
            format!("home-{}", slug(city)),
            format!(
                "Rent is {} a month for the flat in {city}; lease ends in {month} {}",
                rng.u32(40..=300) * 10,
                rng.u32(2025..=2028)
            ),
        ),
        10 => (
            "plans",
            format!("plan-{}", slug(city)),
            format!(
                "Planning a trip to {city} with {name} in {month} to see {}",
                pick(rng, &SIGHTS)
            ),
        ),
        _ => {
            let music = pick(rng, &MUSIC);
            (
                "preferences",
                format!("music-{}", slug(music)),
                format!(
                    "Likes {music} music, usually listens while {}",
                    pick(rng, &ACTIVITIES)
                ),
            )
        }
    };
    (category.to_owned(), format!("{key}-{n}"), value)
}

/// Memory `n` in Urdu, Hindi or Chinese (five templates each).
fn other_language(rng: &mut fastrand::Rng, n: usize) -> Triple {
    let t = rng.usize(..5);
    let num = rng.u32(1..=28);
    let hour = rng.u32(5..=9);
    let (category, key, value) = match rng.usize(..3) {
        0 => match t {
            0 => (
                "people",
                "urdu-relative",
                format!(
                    "میری {} {} {} میں رہتی ہے",
                    pick(rng, &UR_FEMALE_RELATIONS),
                    pick(rng, &UR_NAMES),
                    pick(rng, &UR_CITIES)
                ),
            ),
            1 => (
                "food",
                "urdu-food",
                format!("مجھے {} بہت پسند ہے", pick(rng, &UR_FOODS)),
            ),
            2 => (
                "schedule",
                "urdu-gym",
                format!("ہر {} کو {hour} بجے جم جاتا ہوں", pick(rng, &UR_DAYS)),
            ),
            3 => (
                "travel",
                "urdu-trip",
                format!("اگلے مہینے {} کا سفر ہے", pick(rng, &UR_CITIES)),
            ),
            _ => (
                "birthdays",
                "urdu-birthday",
                format!(
                    "میرے {} کی سالگرہ {num} {} کو ہے",
                    pick(rng, &UR_MALE_RELATIONS),
                    pick(rng, &UR_MONTHS)
                ),
            ),
        },
        1 => match t {
            0 => (
                "people",
                "hindi-sister",
                format!(
                    "मेरी बहन {} {} में रहती है",
                    pick(rng, &HI_NAMES),
                    pick(rng, &HI_CITIES)
                ),
            ),
            1 => (
                "food",
                "hindi-food",
                format!("मुझे {} बहुत पसंद है", pick(rng, &HI_FOODS)),
            ),
            2 => (
                "schedule",
                "hindi-yoga",
                format!("हर {} को योग क्लास {hour} बजे है", pick(rng, &HI_DAYS)),
            ),
            3 => (
                "travel",
                "hindi-trip",
                format!("अगले महीने {} जाना है", pick(rng, &HI_CITIES)),
            ),
            _ => (
                "health",
                "hindi-walk",
                format!("डॉक्टर ने रोज़ {} मिनट चलने को कहा", num + 10),
            ),
        },
        _ => match t {
            0 => (
                "people",
                "chinese-friend",
                format!(
                    "我的朋友{}住在{}",
                    pick(rng, &ZH_NAMES),
                    pick(rng, &ZH_CITIES)
                ),
            ),
            1 => (
                "food",
                "chinese-food",
                format!("我喜欢吃{}", pick(rng, &ZH_FOODS)),
            ),
            2 => (
                "schedule",
                "chinese-basketball",
                format!("每个星期{}下午{}点打篮球", pick(rng, &ZH_DAYS), hour - 3),
            ),
            3 => (
                "travel",
                "chinese-trip",
                format!("下个月去{}出差", pick(rng, &ZH_CITIES)),
            ),
            _ => (
                "pets",
                "chinese-cat",
                format!("我的猫叫{}，今年{}岁", pick(rng, &ZH_PETS), num % 15 + 1),
            ),
        },
    };
    (category.to_owned(), format!("{key}-{n}"), value)
}

/// The first `count` memories of the corpus (deterministic).
fn corpus(count: usize) -> Vec<Triple> {
    let mut rng = fastrand::Rng::with_seed(0x6d6e_656d_6f00_0007);
    (0..count)
        .map(|n| {
            if rng.f32() < 0.2 {
                other_language(&mut rng, n)
            } else {
                english(&mut rng, n)
            }
        })
        .collect()
}

/// What the host's model asks: questions and keywords, a few misspelt or
/// plural, a few in Urdu, Hindi and Chinese.
const QUERIES: [&str; 60] = [
    "where does my sister live",
    "when is Ayesha's birthday",
    "what am I allergic to",
    "which flight to Lisbon did I book",
    "what medication do I take in the morning",
    "who is my manager",
    "when is the weekly meeting about the Atlas project",
    "how long have I been learning guitar",
    "what is my grocery budget",
    "what is my dog's name",
    "when does the lease end",
    "who am I travelling to Istanbul with",
    "what music do I like while running",
    "does Bilal work as a nurse",
    "what does Priya do for work",
    "how much is the rent in Berlin",
    "who prescribed ibuprofen",
    "which city does my cousin live in",
    "what should I gift Omar for his birthday",
    "what food do I prefer over pizza",
    "peanuts allergy",
    "vitamin D",
    "flight Toronto March",
    "Emirates",
    "Spanish lessons",
    "budget fuel",
    "Luna cat",
    "qawwali",
    "Dr. Khan",
    "onboarding project",
    "Chen Shanghai",
    "birthday December",
    "pottery",
    "school fees",
    "Karachi",
    "sushi",
    "night market",
    "tortoise",
    "electrician",
    "metformin dose",
    "jazz",
    "Madrid museum",
    "landlord",
    "hiring meeting Friday",
    "birthdays in June",
    "alergies",
    "Hamza Dubai architect",
    "Kenji Osaka",
    "cricket match",
    "bank transfer",
    "بریانی",
    "لاہور کا سفر",
    "بہن کہاں رہتی ہے",
    "سالگرہ",
    "मुझे क्या पसंद है",
    "योग क्लास",
    "दिल्ली",
    "火锅",
    "上海出差",
    "我的猫",
];

// ---------------------------------------------------------------------------
// The modes and their databases.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Lexical,
    Hybrid,
    #[cfg(feature = "e5")]
    E5,
}

impl Mode {
    fn all() -> Vec<Mode> {
        #[allow(unused_mut)]
        let mut v = vec![Mode::Lexical, Mode::Hybrid];
        #[cfg(feature = "e5")]
        v.push(Mode::E5);
        v
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Lexical => "lexical",
            Mode::Hybrid => "hybrid",
            #[cfg(feature = "e5")]
            Mode::E5 => "e5",
        }
    }

    /// Timed `recall_memory` calls in the percentile run.
    fn calls(self) -> usize {
        match self {
            Mode::Lexical | Mode::Hybrid => 600,
            #[cfg(feature = "e5")]
            Mode::E5 => 200,
        }
    }

    /// The target, as text, and as (p50, p99) bounds.
    fn target(self) -> (&'static str, Option<Duration>, Option<Duration>) {
        match self {
            Mode::Lexical => (
                "p50 ≤ 1 ms, p99 ≤ 3 ms",
                Some(Duration::from_millis(1)),
                Some(Duration::from_millis(3)),
            ),
            Mode::Hybrid => ("(none)", None, None),
            #[cfg(feature = "e5")]
            Mode::E5 => ("p50 ≤ 40 ms", Some(Duration::from_millis(40)), None),
        }
    }

    /// The embedder the engine uses in this mode (`None`: lexical).
    fn embedder(self) -> Option<Arc<dyn Embedder>> {
        match self {
            Mode::Lexical => None,
            Mode::Hybrid => Some(Arc::new(mnemo::NgramEmbedder::new())),
            #[cfg(feature = "e5")]
            Mode::E5 => Some(Arc::new(mnemo::E5Embedder::from_env().unwrap_or_else(
                |e| panic!("{e}: run scripts/fetch-e5.sh (or set MNEMO_E5_DIR)"),
            ))),
        }
    }

    /// Whether anything of this mode is wanted (a filter naming another
    /// mode skips building and starting this one). Always in test mode.
    fn wanted(self) -> bool {
        !bench_mode() || selected(&format!("recall_mcp/{}", self.name()))
    }
}

/// Opens the engine on `path` for `mode` (in process).
fn open(path: &Path, embedder: &Option<Arc<dyn Embedder>>) -> Memory {
    let mut c = Config::new(path);
    // The build flushes each chunk itself.
    c.quiet_window = Duration::from_secs(600);
    c.max_wait = Duration::from_secs(600);
    c.max_pending = 1_000_000;
    c.max_pending_bytes = 1 << 30;
    match embedder {
        Some(e) => {
            c.retrieval = Retrieval::Hybrid;
            Memory::open_with_embedder(c, e.clone()).expect("open the database")
        }
        None => Memory::open(c).expect("open the database"),
    }
}

/// Saves the memories into a new database at `path`, in chunks of
/// [`CHUNK`], each flushed and awaited until every receipt is indexed.
fn build(path: &Path, mode: Mode, memories: &[Triple], embedder: &Option<Arc<dyn Embedder>>) {
    let started = Instant::now();
    let memory = open(path, embedder);
    let mut done = 0;
    for chunk in memories.chunks(CHUNK) {
        let receipts: Vec<mnemo::Receipt> = chunk
            .iter()
            .enumerate()
            .map(|(i, (category, key, value))| {
                memory
                    .save(SaveRequest::new(NS, category, key, value))
                    .unwrap_or_else(|e| panic!("save #{}: {e}", done + i))
            })
            .collect();
        memory.flush();
        for r in &receipts {
            futures::executor::block_on(r.indexed()).expect("indexed");
        }
        done += chunk.len();
        if bench_mode() {
            let elapsed = started.elapsed();
            let left = elapsed.mul_f64((memories.len() - done) as f64 / done as f64);
            println!(
                "recall_mcp: building the {} database: {done}/{} indexed ({:.0} s, ~{:.0} s left)",
                mode.name(),
                memories.len(),
                elapsed.as_secs_f64(),
                left.as_secs_f64()
            );
        }
    }
    let (live, _) = memory.counts().expect("counts");
    memory.shutdown_blocking().expect("shutdown");
    assert!(live >= memories.len() as u64, "{live} memories stored");
    if bench_mode() {
        println!(
            "recall_mcp: built {} ({} memories) in {:.1} s",
            path.display(),
            memories.len(),
            started.elapsed().as_secs_f64()
        );
    }
}

/// Where the cached databases live: `<target dir>/bench-data`.
fn data_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| manifest.join(t))
        .unwrap_or_else(|| manifest.join("target"));
    target.join("bench-data")
}

/// Removes a database file, its index file, their WAL files and its journal
/// folder.
fn remove_database(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-index", "-index-wal", "-index-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    let _ = std::fs::remove_dir_all(Config::new(path).journal_folder());
}

/// The database of `mode`: the cached one if its marker matches, else built
/// now (and cached). In test mode, a small one in `tmp`.
fn database(mode: Mode, embedder: &Option<Arc<dyn Embedder>>, tmp: &Path) -> PathBuf {
    if !bench_mode() {
        let path = tmp.join(format!("recall_mcp_{}.db", mode.name()));
        build(&path, mode, &corpus(TEST_MEMORIES), embedder);
        return path;
    }
    let dir = data_dir();
    std::fs::create_dir_all(&dir).expect("create target/bench-data");
    let path = dir.join(format!("recall_mcp_{MEMORIES}_{}.db", mode.name()));
    let marker_path = path.with_extension("db.marker");
    let marker = format!(
        "corpus v{CORPUS_VERSION}, {MEMORIES} memories, namespace {NS}, mode {}, model {}\n",
        mode.name(),
        embedder.as_ref().map_or("none", |e| e.model_id())
    );
    let cached = std::fs::read_to_string(&marker_path).ok();
    if path.is_file() && cached.as_deref() == Some(marker.as_str()) {
        println!("recall_mcp: reusing {}", path.display());
        return path;
    }
    let _ = std::fs::remove_file(&marker_path);
    remove_database(&path);
    println!(
        "recall_mcp: building {} ({MEMORIES} memories, once; kept for later runs)",
        path.display()
    );
    build(&path, mode, &corpus(MEMORIES), embedder);
    std::fs::write(&marker_path, marker).expect("write the marker");
    path
}

// ---------------------------------------------------------------------------
// The MCP client.

/// A running `mnemo mcp` and an initialized rmcp client session with it.
struct Server {
    child: Child,
    client: RunningService<RoleClient, ()>,
}

impl Server {
    async fn start(db: &Path, mode: Mode) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mnemo"))
            .arg("--db")
            .arg(db)
            .args(["--namespace", NS, "--retrieval", mode.name(), "mcp"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start mnemo mcp");
        let stdin = child.stdin.take().expect("child stdin");
        let stdout = child.stdout.take().expect("child stdout");
        let client = tokio::time::timeout(CALL_LIMIT, ().serve((stdout, stdin)))
            .await
            .expect("the server did not answer `initialize` in time")
            .expect("MCP initialize handshake");
        Server { child, client }
    }

    /// Calls `tool`; returns its answer, parsed.
    async fn call(&self, tool: &str, args: &serde_json::Map<String, Value>) -> Value {
        let request = CallToolRequestParams::new(tool.to_owned()).with_arguments(args.clone());
        let result = tokio::time::timeout(CALL_LIMIT, self.client.call_tool(request))
            .await
            .unwrap_or_else(|_| panic!("{tool}: no answer in {CALL_LIMIT:?}"))
            .unwrap_or_else(|e| panic!("tools/call {tool}: {e}"));
        let text = result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
            .collect::<String>();
        assert_ne!(result.is_error, Some(true), "{tool} failed: {text}");
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{tool} answer is not JSON ({e}): {text}"))
    }

    /// `recall_memory` with `args`; returns how many memories it found.
    async fn recall(&self, args: &serde_json::Map<String, Value>) -> u64 {
        let answer = self.call("recall_memory", args).await;
        answer["count"].as_u64().expect("count")
    }

    async fn close(self) {
        let Server { mut child, client } = self;
        client.cancel().await.expect("close the MCP client");
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("the server exits once stdin is closed")
            .expect("wait for the server");
        assert!(status.success(), "mnemo mcp exited with {status}");
    }
}

fn object(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("arguments are an object"),
    }
}

/// What the percentile run of one mode found.
struct Row {
    mode: Mode,
    recall: Pcts,
    get: Pcts,
    in_process: Pcts,
    query_embedding: Option<Pcts>,
    empty_answers: usize,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

// ---------------------------------------------------------------------------

fn recall_mcp(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let queries: Vec<serde_json::Map<String, Value>> = QUERIES
        .iter()
        .map(|q| object(json!({ "query": q })))
        .collect();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load_before = load_average();
    let mut rows: Vec<Row> = Vec::new();

    let mut g = c.benchmark_group("recall_mcp");
    for mode in Mode::all().into_iter().filter(|m| m.wanted()) {
        let embedder = mode.embedder();
        let db = database(mode, &embedder, tmp.path());
        let server = runtime.block_on(Server::start(&db, mode));

        // Warm-up: the server's read connections, page cache, the model.
        let found: u64 = (0..WARMUP)
            .map(|i| runtime.block_on(server.recall(&queries[i % queries.len()])))
            .sum();
        assert!(found > 0, "{}: the warm-up found nothing", mode.name());

        let id = format!("recall_mcp/{}", mode.name());
        let measured = selected(&format!("{id}/percentiles")).then(|| {
            let (recall, empty) = runtime.block_on(async {
                let mut times = Vec::with_capacity(mode.calls());
                let mut empty = 0;
                for i in 0..mode.calls() {
                    let args = &queries[i % queries.len()];
                    let t = Instant::now();
                    let count = server.recall(args).await;
                    times.push(t.elapsed());
                    empty += usize::from(count == 0);
                }
                (times, empty)
            });
            // The same server's round trip with next to no engine work.
            let keys: Vec<serde_json::Map<String, Value>> = corpus(MEMORIES)
                .into_iter()
                .step_by(37)
                .map(|(category, key, _)| object(json!({"category": category, "key": key})))
                .collect();
            let get = runtime.block_on(async {
                let mut times = Vec::with_capacity(200);
                for i in 0..200 {
                    let args = &keys[i % keys.len()];
                    let t = Instant::now();
                    let answer = server.call("get_memory", args).await;
                    times.push(t.elapsed());
                    assert_eq!(answer["found"], true, "{answer}");
                }
                times
            });
            (Pcts::of(recall), Pcts::of(get), empty)
        });
        if let Some((recall, get, _)) = &measured {
            println!("{id} through MCP: {}", recall.line());
            println!("{id}: get_memory through MCP: {}", get.line());
        }

        // Criterion's own timing of one call.
        match mode {
            Mode::Lexical | Mode::Hybrid => {
                g.sample_size(50);
                g.measurement_time(Duration::from_secs(5));
            }
            #[cfg(feature = "e5")]
            Mode::E5 => {
                g.sample_size(20);
                g.measurement_time(Duration::from_secs(15));
            }
        }
        let mut i = 0;
        g.bench_function(mode.name(), |b| {
            b.iter(|| {
                i += 1;
                runtime.block_on(server.recall(&queries[i % queries.len()]))
            })
        });
        runtime.block_on(server.close());

        // The engine alone, in process, on the same database and queries.
        if let Some((recall, get, empty_answers)) = measured {
            let memory = open(&db, &embedder);
            for q in QUERIES.iter().cycle().take(WARMUP) {
                memory.search(NS, q, None, 5).expect("search");
            }
            let in_process = Pcts::of(timed(mode.calls(), |i| {
                memory
                    .search(NS, QUERIES[i % QUERIES.len()], None, 5)
                    .expect("search");
            }));
            memory.shutdown_blocking().expect("shutdown");
            println!("{id}: Memory::search in process: {}", in_process.line());
            let query_embedding = embedder.as_ref().map(|e| {
                let p = Pcts::of(timed(mode.calls(), |i| {
                    e.embed_query(QUERIES[i % QUERIES.len()]);
                }));
                println!("{id}: the query's embedding alone: {}", p.line());
                p
            });
            rows.push(Row {
                mode,
                recall,
                get,
                in_process,
                query_embedding,
                empty_answers,
            });
        }
    }
    g.finish();

    if !rows.is_empty() {
        println!();
        println!(
            "recall_memory through MCP, {MEMORIES} memories in one namespace, limit 5, {} queries \
             round-robin; {cores} cores; load average {load_before} before, {} after",
            QUERIES.len(),
            load_average()
        );
        println!();
        println!("| mode | calls | p50 | p99 | p99.9 | max | target | met? | get_memory via MCP p50 / p99 | Memory::search in process p50 / p99 | query embedding p50 |");
        println!("|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|");
        for r in &rows {
            let (target, p50_max, p99_max) = r.mode.target();
            let met = match (p50_max, p99_max) {
                (None, None) => "—",
                _ if p50_max.is_none_or(|m| r.recall.p50 <= m)
                    && p99_max.is_none_or(|m| r.recall.p99 <= m) =>
                {
                    "yes"
                }
                _ => "no",
            };
            println!(
                "| {} | {} | {} | {} | {} | {} | {target} | {met} | {} / {} | {} / {} | {} |",
                r.mode.name(),
                r.recall.n,
                human(r.recall.p50),
                human(r.recall.p99),
                human(r.recall.p999),
                human(r.recall.max),
                human(r.get.p50),
                human(r.get.p99),
                human(r.in_process.p50),
                human(r.in_process.p99),
                r.query_embedding.map_or("—".into(), |p| human(p.p50)),
            );
            if r.empty_answers > 0 {
                println!(
                    "  ({}: {} of {} calls found nothing)",
                    r.mode.name(),
                    r.empty_answers,
                    r.recall.n
                );
            }
        }
        println!();
    }
}

criterion_group!(benches, recall_mcp);
criterion_main!(benches);
