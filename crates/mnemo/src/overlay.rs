//! The pending overlay: every save that `save` accepted and the index has not
//! yet caught up with, so reads see a write from the moment `save` returned.
//!
//! An entry goes in at `save` (under the ingress lock, so overlay order is
//! sequence order), learns its version at commit, and retires once the index
//! reflects it — or at once if its row was rejected, so reads fall back to
//! what SQLite holds. `get` and `list` use only uncommitted entries: once an
//! entry is committed the store is the truth (it may hold a newer write of
//! another engine); search uses every entry until the index has it. An
//! entry also keeps what searches derive from it (its tokens, its vector),
//! computed by the first search that needs them.
//!
//! Every pending save has an entry, so it is kept small: one allocation of
//! 64 bytes (with malloc's header), keyed by the payload's own strings (no
//! copies of them), with what searches derive boxed until they do.
//!
//! The set is ordered by a hash of the key (the namespace's 32 bits, then
//! the category's and key's 32 bits), kept in the set's own node beside the
//! entry's pointer, and only then by the strings: finding a key's place
//! compares integers at every level of the tree, and reads key strings (two
//! pointers away, rarely in cache when many saves are pending) only to
//! confirm the key it found. At 1M memories over 10k namespaces, `save`
//! took p50 2.5-2.7 µs ordered by the strings, 1.0 µs by the hash
//! (`benches/scale.rs`). A namespace's entries stay one run of the set
//! (search and list read them together); within it they are in hash order,
//! sorted by sequence when read.

use std::borrow::Borrow;
use std::cell::Cell;
use std::cmp::Ordering as Order;
use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;

use crate::model::{MemoryRecord, OpPayload};
use crate::text::TokenIndex;

/// The latest accepted operation for one key.
#[derive(Debug)]
pub(crate) struct OverlayEntry {
    pub seq: u64,
    pub payload: Arc<OpPayload>,
    /// 0 while the operation is not committed; once its transaction
    /// committed, its version plus one (a committed forget of nothing has
    /// version 0). From then on the store holds it, or something newer
    /// another engine committed since, so `get` and `list` read the store;
    /// the entry stays only for search until the index has it.
    committed: AtomicU64,
    /// What searches derive from the entry, made by the first search that
    /// needs any of it. Boxed: ~400 bytes that most pending saves never
    /// need, and one 16-byte cell for both parts (the entry is 40 bytes, a
    /// 64-byte allocation with its counts and malloc's header).
    derived: OnceLock<Box<Derived>>,
}

/// See [`OverlayEntry::derived`].
#[derive(Debug, Default)]
struct Derived {
    /// The key, category and value tokenised and indexed for matching
    /// (see [`OverlayEntry::fields`]).
    fields: OnceLock<[TokenIndex; 3]>,
    /// The memory's vector for the engine's embedder (hybrid retrieval
    /// only), computed by the first search that needs it: a pending save is
    /// embedded once, not once per query. Never set in `save`.
    vector: OnceLock<Vec<f32>>,
}

thread_local! {
    /// Pending saves tokenised by searches on this thread; see
    /// [`tokenised_on_this_thread`].
    static TOKENISED: Cell<u64> = const { Cell::new(0) };
}

/// How many pending saves searches on the calling thread have tokenised
/// since it started. A test hook (`tests/search_cost.rs` checks that a
/// pending save is tokenised once, whatever the number of searches); per
/// thread, so tests running side by side do not count each other's.
pub fn tokenised_on_this_thread() -> u64 {
    TOKENISED.with(Cell::get)
}

impl OverlayEntry {
    /// Whether the operation is committed (see the field).
    pub fn is_committed(&self) -> bool {
        self.committed.load(Ordering::Acquire) > 0
    }

    /// The key, category and value (in that order) tokenised and indexed for
    /// matching, or `None` for a forget. Built by the first search that needs
    /// them and kept until the entry retires: a pending save is tokenised
    /// once, not once per query, and never in `save`, which stays
    /// microseconds. A search racing the first one waits for its result
    /// (`OnceLock` runs one initialiser).
    pub fn fields(&self) -> Option<&[TokenIndex; 3]> {
        let p = &self.payload;
        let value = p.value()?;
        Some(self.derived().fields.get_or_init(|| {
            TOKENISED.with(|c| c.set(c.get() + 1));
            [
                TokenIndex::new(p.key()),
                TokenIndex::new(p.category()),
                TokenIndex::new(value),
            ]
        }))
    }

    /// The memory's vector (hybrid retrieval), if a search computed it.
    pub fn vector(&self) -> Option<&Vec<f32>> {
        self.derived.get()?.vector.get()
    }

    /// Sets the vector; `Err` with it if another search set one first.
    pub fn set_vector(&self, v: Vec<f32>) -> Result<(), Vec<f32>> {
        self.derived().vector.set(v)
    }

    fn derived(&self) -> &Derived {
        self.derived.get_or_init(Box::default)
    }

    /// The memory this entry says the key holds, or `None` for a forget.
    pub fn record(&self) -> Option<MemoryRecord> {
        let p = &self.payload;
        let value = p.value()?.to_owned();
        let version = self.committed.load(Ordering::Acquire).saturating_sub(1);
        Some(MemoryRecord {
            namespace: p.namespace().to_owned(),
            category: p.category().to_owned(),
            key: p.key().to_owned(),
            value,
            metadata: p.metadata().and_then(|m| serde_json::from_str(m).ok()),
            version: (version > 0).then_some(version),
            updated_at_ms: p.at_ms,
        })
    }
}

/// A key's parts, borrowed: what the overlay's set is ordered by and looked
/// up with, so a lookup by `&str`s builds no key.
trait KeyParts {
    /// The key's hash (see [`KeyHash`]).
    fn key_hash(&self) -> KeyHash;
    /// (namespace, category, key)
    fn parts(&self) -> (&str, &str, &str);
}

/// A key's hash: the namespace's 32 bits, then the category's and key's.
/// A namespace's keys share the high half, so they are one run of the set.
type KeyHash = u64;

/// The high half of a key's hash, for its namespace.
fn ns_half(h: KeyHash) -> u64 {
    h >> 32
}

/// A key looked up by its borrowed parts.
type LookupKey<'a> = (KeyHash, &'a str, &'a str, &'a str);

/// The set's order: the hash first, which settles every comparison but the
/// one that finds the key, then the strings (for that one, and for keys
/// whose hashes collide).
fn order(a: &dyn KeyParts, b: &dyn KeyParts) -> Order {
    a.key_hash()
        .cmp(&b.key_hash())
        .then_with(|| a.parts().cmp(&b.parts()))
}

impl KeyParts for LookupKey<'_> {
    fn key_hash(&self) -> KeyHash {
        self.0
    }

    fn parts(&self) -> (&str, &str, &str) {
        (self.1, self.2, self.3)
    }
}

impl PartialEq for dyn KeyParts + '_ {
    fn eq(&self, other: &Self) -> bool {
        order(self, other) == Order::Equal
    }
}

impl Eq for dyn KeyParts + '_ {}

impl PartialOrd for dyn KeyParts + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Order> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn KeyParts + '_ {
    fn cmp(&self, other: &Self) -> Order {
        order(self, other)
    }
}

/// An entry in the set, ordered by its key's hash, then its payload's
/// key: the key strings are the payload's, not copies.
#[derive(Debug)]
struct ByKey {
    key_hash: KeyHash,
    entry: Arc<OverlayEntry>,
}

impl KeyParts for ByKey {
    fn key_hash(&self) -> KeyHash {
        self.key_hash
    }

    fn parts(&self) -> (&str, &str, &str) {
        let p = &self.entry.payload;
        (p.namespace(), p.category(), p.key())
    }
}

impl<'a> Borrow<dyn KeyParts + 'a> for ByKey {
    fn borrow(&self) -> &(dyn KeyParts + 'a) {
        self
    }
}

impl PartialEq for ByKey {
    fn eq(&self, other: &Self) -> bool {
        order(self, other) == Order::Equal
    }
}

impl Eq for ByKey {}

impl PartialOrd for ByKey {
    fn partial_cmp(&self, other: &Self) -> Option<Order> {
        Some(self.cmp(other))
    }
}

impl Ord for ByKey {
    fn cmp(&self, other: &Self) -> Order {
        order(self, other)
    }
}

/// See the module doc. Readers take a shared lock for a lookup; writers
/// (ingress, commit, retire) hold the exclusive lock for one set operation.
/// parking_lot: no poisoning, and a fair, small lock for short sections.
/// A B-tree rather than a hash map: a namespace's entries are one range
/// (search, list), and it frees its nodes as it empties, so a drained
/// overlay keeps no capacity.
#[derive(Debug, Default)]
pub(crate) struct PendingOverlay<S = RandomState> {
    set: RwLock<BTreeSet<ByKey>>,
    /// Hashes keys for the set's order (keyed per overlay; a test makes
    /// every hash collide).
    hasher: S,
}

impl<S: BuildHasher> PendingOverlay<S> {
    /// The high half of a namespace's keys' hashes.
    fn ns_hash(&self, ns: &str) -> u64 {
        ns_half(self.hasher.hash_one(ns))
    }

    /// The set's key for a (namespace, category, key).
    fn key<'a>(&self, ns: &'a str, category: &'a str, key: &'a str) -> LookupKey<'a> {
        let low = self.hasher.hash_one((category, key)) & u64::from(u32::MAX);
        ((self.ns_hash(ns) << 32) | low, ns, category, key)
    }

    /// The set's key for an operation's payload.
    fn key_of<'p>(&self, payload: &'p OpPayload) -> LookupKey<'p> {
        self.key(payload.namespace(), payload.category(), payload.key())
    }

    /// Records an accepted operation. Called in sequence order.
    pub fn insert(&self, seq: u64, payload: Arc<OpPayload>) {
        let entry = Arc::new(OverlayEntry {
            seq,
            payload,
            committed: AtomicU64::new(0),
            derived: OnceLock::new(),
        });
        let (key_hash, ..) = self.key_of(&entry.payload);
        // The replaced entry (an older operation on the key) is dropped
        // after the lock is released.
        let old = self.set.write().replace(ByKey { key_hash, entry });
        drop(old);
    }

    /// The latest accepted operation for a key, if the index has not caught up
    /// with it.
    pub fn get(&self, ns: &str, category: &str, key: &str) -> Option<Arc<OverlayEntry>> {
        let k = self.key(ns, category, key);
        let k: &dyn KeyParts = &k;
        self.set.read().get(k).map(|e| e.entry.clone())
    }

    /// Marks the entry committed at `version`, if `seq` is still the latest
    /// operation for its key.
    pub fn committed(&self, payload: &OpPayload, seq: u64, version: u64) {
        let k = self.key_of(payload);
        let k: &dyn KeyParts = &k;
        let set = self.set.read();
        if let Some(e) = set.get(k) {
            if e.entry.seq == seq {
                e.entry.committed.store(version + 1, Ordering::Release);
            }
        }
    }

    /// Removes the entry if `seq` is still the latest operation for its key.
    pub fn retire(&self, payload: &OpPayload, seq: u64) {
        let k = self.key_of(payload);
        let k: &dyn KeyParts = &k;
        let removed = {
            let mut set = self.set.write();
            if set.get(k).is_some_and(|e| e.entry.seq == seq) {
                set.take(k)
            } else {
                None
            }
        };
        drop(removed);
    }

    /// Every entry of a namespace (optionally one category), the latest
    /// accepted first (sorted here by sequence number, out of the lock):
    /// among search hits of equal score and time, the latest save comes
    /// first, as the newest row does among indexed hits.
    pub fn snapshot(&self, ns: &str, category: Option<&str>) -> Vec<Arc<OverlayEntry>> {
        let h = self.ns_hash(ns);
        // The first possible key with the namespace's hash; the run of that
        // hash may hold another namespace's keys too (a collision).
        let start: LookupKey = (h << 32, "", "", "");
        let start: &dyn KeyParts = &start;
        let mut found: Vec<(u64, Arc<OverlayEntry>)> = {
            let set = self.set.read();
            set.range::<dyn KeyParts, _>((Bound::Included(start), Bound::Unbounded))
                .take_while(|e| ns_half(e.key_hash) == h)
                .filter(|e| {
                    let (n, c, _) = e.parts();
                    n == ns && category.is_none_or(|cat| c == cat)
                })
                .map(|e| (e.entry.seq, e.entry.clone()))
                .collect()
        };
        found.sort_unstable_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        found.into_iter().map(|(_, e)| e).collect()
    }

    /// Namespaces with at least one entry (saves or forgets), in order.
    pub fn namespaces(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        {
            let set = self.set.read();
            for e in set.iter() {
                let ns = e.entry.payload.namespace();
                if out.last().map(String::as_str) != Some(ns) {
                    out.push(ns.to_owned());
                }
            }
        }
        // A namespace's entries are one run, unless hashes collide.
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.set.read().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(ns: &str, c: &str, k: &str, v: Option<&str>) -> Arc<OpPayload> {
        Arc::new(OpPayload::new(ns, c, k, v, None, 1))
    }

    #[test]
    fn latest_wins_and_only_its_seq_retires_it() {
        let o: PendingOverlay = PendingOverlay::default();
        let a = op("n", "c", "k", Some("one"));
        let b = op("n", "c", "k", Some("two"));
        o.insert(1, a.clone());
        o.insert(2, b.clone());
        assert_eq!(o.get("n", "c", "k").unwrap().record().unwrap().value, "two");
        o.committed(&a, 1, 1); // stale: ignored
        assert_eq!(
            o.get("n", "c", "k").unwrap().record().unwrap().version,
            None
        );
        o.retire(&a, 1);
        assert!(o.get("n", "c", "k").is_some());
        o.committed(&b, 2, 2);
        assert_eq!(
            o.get("n", "c", "k").unwrap().record().unwrap().version,
            Some(2)
        );
        o.retire(&b, 2);
        assert!(o.get("n", "c", "k").is_none());
    }

    #[test]
    fn fields_are_tokenised_once_and_not_for_a_forget() {
        let o: PendingOverlay = PendingOverlay::default();
        o.insert(1, op("n", "food", "likes", Some("Green TEA, no sugar")));
        o.insert(2, op("n", "c", "gone", None));
        let before = tokenised_on_this_thread();
        let e = o.get("n", "food", "likes").unwrap();
        for _ in 0..3 {
            let fields = e.fields().unwrap();
            let q = crate::text::Query::parse("tea");
            assert_eq!(q.hits_in(&fields[2]).collect::<Vec<_>>(), [true]);
            assert_eq!(q.hits_in(&fields[0]).collect::<Vec<_>>(), [false]);
        }
        assert!(o.get("n", "c", "gone").unwrap().fields().is_none());
        assert_eq!(tokenised_on_this_thread() - before, 1);
    }

    /// Every namespace collides (the high half of every hash is the same);
    /// the low half still differs by key, so namespaces interleave in the
    /// set.
    #[derive(Debug, Default)]
    struct Colliding;

    impl BuildHasher for Colliding {
        type Hasher = HighHalfCollides;
        fn build_hasher(&self) -> HighHalfCollides {
            HighHalfCollides(0xcbf2_9ce4_8422_2325)
        }
    }

    /// FNV-1a in the low half, a constant in the high half.
    struct HighHalfCollides(u64);

    impl std::hash::Hasher for HighHalfCollides {
        fn finish(&self) -> u64 {
            (0x5eed << 32) | (self.0 & u64::from(u32::MAX))
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
        }
    }

    #[test]
    fn colliding_hashes_change_no_answer() {
        let o = PendingOverlay::<Colliding>::default();
        // One run for every namespace, ordered by the keys' low halves.
        for (seq, (ns, c, k)) in [
            ("b", "x", "1"),
            ("a", "y", "2"),
            ("b", "y", "3"),
            ("a", "x", "4"),
            ("ab", "x", "5"),
            ("a", "x", "6"),
        ]
        .into_iter()
        .enumerate()
        {
            o.insert(seq as u64 + 1, op(ns, c, k, Some("v")));
        }
        o.insert(7, op("a", "x", "4", None)); // replaces its save
        assert_eq!(o.len(), 6);
        let keys = |v: Vec<Arc<OverlayEntry>>| -> Vec<String> {
            v.iter().map(|e| e.payload.key().to_owned()).collect()
        };
        assert_eq!(keys(o.snapshot("a", None)), ["4", "6", "2"], "newest first");
        assert_eq!(keys(o.snapshot("a", Some("x"))), ["4", "6"]);
        assert_eq!(keys(o.snapshot("b", None)), ["3", "1"]);
        assert_eq!(keys(o.snapshot("c", None)), Vec::<String>::new());
        assert_eq!(o.namespaces(), ["a", "ab", "b"]);
        assert!(o.get("a", "x", "4").unwrap().record().is_none());
        assert!(o.get("a", "y", "4").is_none());
        let six = o.get("a", "x", "6").unwrap();
        o.retire(&six.payload, 6);
        assert!(o.get("a", "x", "6").is_none());
        assert_eq!(o.len(), 5);
    }

    #[test]
    fn snapshot_is_scoped() {
        let o: PendingOverlay = PendingOverlay::default();
        o.insert(1, op("a", "x", "1", Some("v")));
        o.insert(2, op("a", "y", "2", Some("v")));
        o.insert(3, op("ab", "x", "3", Some("v")));
        o.insert(4, op("b", "x", "4", None));
        assert_eq!(o.snapshot("a", None).len(), 2);
        assert_eq!(o.snapshot("a", Some("x")).len(), 1);
        assert_eq!(o.snapshot("b", None).len(), 1);
        assert!(o.snapshot("b", None)[0].record().is_none());
        assert_eq!(o.snapshot("c", None).len(), 0);
    }
}
