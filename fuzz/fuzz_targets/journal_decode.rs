//! Journal decoding must never panic and never read past the data, whatever
//! bytes a crash (or a disk) left in a segment.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = mnemo::journal::decode_summary(data);
    assert!(s.dropped_bytes <= data.len());
    // Decoding is deterministic.
    assert_eq!(s, mnemo::journal::decode_summary(data));
});
