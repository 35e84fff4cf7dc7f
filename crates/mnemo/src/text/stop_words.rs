//! Function words dropped from queries, in the four languages the project
//! is measured in (English, Urdu in Arabic script and romanised, Hindi,
//! Chinese).
//!
//! A question a model sends ("what did my sister say about her new job?",
//! `میری بہن کی نوکری کیا ہے`, `我妹妹做什么工作`) carries its content in a few
//! words; the rest (question words, pronouns, auxiliaries, postpositions)
//! match nearly every memory, and in bm25 each match still adds to a
//! memory's score, so they push memories that share many of them above the
//! one that shares the content. [`Query::parse`](super::Query::parse) drops
//! a term that is one of these words while any other term is left. Memories
//! are indexed whole.
//!
//! The lists are written as people type them; each entry is normalised
//! with the same rules as the text ([`super::fold`]) when first used, so a
//! query spelled `کیا`, `كيا` or `کیا` with harakat meets the same entry.

use std::collections::HashSet;
use std::sync::LazyLock;

use super::fold::{fold, split};

/// English: articles, pronouns, auxiliaries, prepositions, conjunctions,
/// question words, and the verbs that frame a question to an assistant
/// ("do you remember", "tell me", "did I mention").
const ENGLISH: &[&str] = &[
    "a",
    "about",
    "after",
    "again",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "during",
    "each",
    "ever",
    "for",
    "from",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "know",
    "me",
    "mention",
    "mentioned",
    "might",
    "my",
    "myself",
    "of",
    "on",
    "or",
    "our",
    "ours",
    "ourselves",
    "remember",
    "recall",
    "said",
    "say",
    "shall",
    "she",
    "should",
    "so",
    "some",
    "tell",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "to",
    "too",
    "us",
    "very",
    "was",
    "we",
    "were",
    "what",
    "whats",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "whose",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "yours",
    "yourself",
];

/// Urdu in Arabic script: postpositions, pronouns, auxiliaries, question
/// words.
const URDU: &[&str] = &[
    "کیا",
    "کا",
    "کی",
    "کے",
    "کو",
    "میں",
    "ہے",
    "ہیں",
    "تھا",
    "تھی",
    "تھے",
    "نے",
    "سے",
    "پر",
    "اور",
    "بھی",
    "یہ",
    "وہ",
    "میرا",
    "میری",
    "میرے",
    "مجھے",
    "ہم",
    "ہمارا",
    "ہماری",
    "ہمارے",
    "آپ",
    "تم",
    "کب",
    "کہاں",
    "کون",
    "کونسا",
    "کونسی",
    "کیسے",
    "کیسا",
    "کیسی",
    "کتنا",
    "کتنی",
    "کتنے",
    "کس",
    "کیوں",
    "ہو",
    "ہوں",
    "ہوا",
    "ہوئی",
    "ہوتا",
    "ہوتی",
    "رہا",
    "رہی",
    "رہے",
    "گیا",
    "گئی",
    "گئے",
    "تو",
    "لیے",
    "لئے",
    "اپنا",
    "اپنی",
    "اپنے",
    "بتاؤ",
    "بتائیں",
    "یاد",
];

/// Urdu and Hindi in Latin letters, as typed in chat (`kya`, `mein`, `hai`).
/// Words that are also English content words (`main`, `par` as in "on par")
/// are left out.
const ROMAN_URDU: &[&str] = &[
    "kya", "ka", "ki", "ke", "ko", "mein", "mai", "hai", "hain", "hy", "tha", "thi", "thay", "ne",
    "se", "aur", "bhi", "yeh", "ye", "woh", "wo", "mera", "meri", "mere", "mujhe", "mujhay", "hum",
    "hamara", "hamari", "aap", "ap", "tum", "kab", "kahan", "kaun", "kon", "kaise", "kaisa",
    "kitna", "kitni", "kitne", "kis", "kyun", "kyon", "hota", "hoti", "raha", "rahi", "rahe",
    "gaya", "gayi", "gaye", "liye", "apna", "apni", "apne", "batao", "bataen", "yaad",
];

/// Hindi in Devanagari.
const HINDI: &[&str] = &[
    "क्या",
    "का",
    "की",
    "के",
    "को",
    "में",
    "है",
    "हैं",
    "था",
    "थी",
    "थे",
    "ने",
    "से",
    "पर",
    "और",
    "भी",
    "यह",
    "वह",
    "ये",
    "वो",
    "मेरा",
    "मेरी",
    "मेरे",
    "मुझे",
    "मैं",
    "हम",
    "हमारा",
    "हमारी",
    "आप",
    "तुम",
    "कब",
    "कहाँ",
    "कौन",
    "कैसे",
    "कैसा",
    "कैसी",
    "कितना",
    "कितनी",
    "कितने",
    "किस",
    "क्यों",
    "हो",
    "हूँ",
    "होता",
    "होती",
    "रहा",
    "रही",
    "रहे",
    "गया",
    "गई",
    "गए",
    "तो",
    "लिए",
    "अपना",
    "अपनी",
    "अपने",
    "बताओ",
    "बताइए",
    "याद",
];

/// Chinese (a query's CJK run becomes one- and two-character terms, so
/// these are one or two characters; `什` and `么` stand alone almost only
/// as halves of `什么` and `怎么`).
const CHINESE: &[&str] = &[
    "的", "了", "是", "我", "你", "他", "她", "吗", "呢", "吧", "啊", "在", "有", "和", "也", "都",
    "就", "还", "这", "那", "什么", "什", "么", "哪", "哪里", "哪儿", "怎么", "怎样", "为什", "谁",
    "几", "多少", "我的", "我们", "你的", "一个", "这个", "那个", "请问", "记得", "告诉",
];

/// Every list's entries, normalised and joined by spaces (a CJK word is a
/// phrase of its characters).
static STOP_WORDS: LazyLock<HashSet<String>> = LazyLock::new(|| {
    [ENGLISH, URDU, ROMAN_URDU, HINDI, CHINESE]
        .into_iter()
        .flatten()
        .map(|w| split(&fold(w)).join(" "))
        .collect()
});

/// Whether a query term, as normalised tokens before stemming, is a
/// function word of one of the lists.
pub(super) fn is_stop_word(tokens: &[String]) -> bool {
    match tokens {
        [] => false,
        [one] => STOP_WORDS.contains(one.as_str()),
        several => STOP_WORDS.contains(&several.join(" ")),
    }
}

#[cfg(test)]
pub(super) fn all() -> &'static HashSet<String> {
    &STOP_WORDS
}
