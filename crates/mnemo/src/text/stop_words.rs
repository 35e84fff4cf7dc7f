//! Function words dropped from queries.

/// English function words dropped from queries (sorted, for binary
/// search). Question words and pronouns a model puts around the content of
/// a question: "what does my sister do" searches `sister`.
pub(super) const ENGLISH_STOP_WORDS: [&str; 44] = [
    "a", "am", "an", "and", "are", "at", "be", "can", "did", "do", "does", "for", "from", "her",
    "his", "how", "i", "in", "is", "it", "me", "my", "of", "on", "or", "our", "she", "the",
    "their", "they", "to", "was", "we", "were", "what", "when", "where", "which", "who", "why",
    "will", "with", "you", "your",
];
