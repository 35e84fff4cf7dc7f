//! [`TokenIndex`]: a text tokenised once and indexed for matching query
//! terms by lookups (the in-memory matcher of pending saves).

use super::tokens;

/// A text tokenised once and indexed for matching [`Query`] terms: its
/// distinct tokens in byte order (so the tokens sharing a prefix are one
/// range of ids), the text as token ids, and each id's positions: two to
/// three times the text's size.
#[derive(Debug, Default)]
pub(crate) struct TokenIndex {
    /// The distinct tokens, sorted, concatenated; token `i` ends at
    /// `ends[i]`.
    vocab: String,
    ends: Vec<u32>,
    /// The text, as ids into the vocabulary.
    pub(super) ids: Vec<u32>,
    /// Every position of id `i`, ascending:
    /// `positions[starts[i]..starts[i + 1]]`.
    starts: Vec<u32>,
    positions: Vec<u32>,
}

impl TokenIndex {
    /// Tokenises `text` (see [`tokens`]) and indexes it.
    pub fn new(text: &str) -> TokenIndex {
        TokenIndex::from_tokens(&tokens(text))
    }

    /// Indexes text already tokenised. Texts past `u32::MAX` tokens are
    /// cut there (a memory is at most a few MiB).
    pub fn from_tokens(tokens: &[String]) -> TokenIndex {
        let tokens = &tokens[..tokens.len().min(u32::MAX as usize)];
        // The positions sorted by token, then position: the run of each
        // token is its position list, ascending.
        let mut order: Vec<u32> = (0..tokens.len() as u32).collect();
        order.sort_unstable_by_key(|&p| (tokens[p as usize].as_str(), p));
        let mut index = TokenIndex {
            ids: vec![0; tokens.len()],
            ..TokenIndex::default()
        };
        let mut previous: Option<&str> = None;
        for (k, &p) in order.iter().enumerate() {
            let token = tokens[p as usize].as_str();
            if previous != Some(token) {
                index.vocab.push_str(token);
                index.ends.push(index.vocab.len() as u32);
                index.starts.push(k as u32);
                previous = Some(token);
            }
            index.ids[p as usize] = index.ends.len() as u32 - 1;
        }
        index.starts.push(order.len() as u32);
        index.positions = order;
        index
    }

    pub(super) fn token(&self, id: usize) -> &str {
        let start = id.checked_sub(1).map_or(0, |i| self.ends[i] as usize);
        &self.vocab[start..self.ends[id] as usize]
    }

    pub(super) fn id(&self, token: &str) -> Option<u32> {
        let i = self.partition(|t| t < token);
        (i < self.ends.len() && self.token(i) == token).then_some(i as u32)
    }

    /// The ids of the tokens starting with `prefix`: a range, since the
    /// vocabulary is sorted byte-wise.
    pub(super) fn ids_with_prefix(&self, prefix: &str) -> std::ops::Range<u32> {
        let start = self.partition(|t| t < prefix);
        let end = self.partition(|t| t < prefix || t.starts_with(prefix));
        start as u32..end as u32
    }

    /// The first id whose token fails `below` (which holds for a prefix of
    /// the sorted vocabulary).
    fn partition(&self, below: impl Fn(&str) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.ends.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if below(self.token(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    pub(super) fn positions(&self, id: u32) -> &[u32] {
        let id = id as usize;
        &self.positions[self.starts[id] as usize..self.starts[id + 1] as usize]
    }
}
