//! The bytes of a journal segment: encoding a record, and decoding a segment
//! that a crash, a disk or a person may have damaged.
//!
//! ```text
//! segment: header (16 bytes) | record* | zero bytes to the end
//! header:  b"MNEMOJ02" | u64 segment size (LE)
//! record:  u32 MAGIC (LE) | u32 length (LE) | u32 CRC32 of the payload (LE) | payload
//! payload: u64 seq | u64 hlc | i64 at_ms | u8 kind (1 save, 2 forget)
//!          | u8 flags (1: has metadata) | str namespace | str category | str key
//!          | [str value] | [str metadata]
//! str:     u32 length (LE) | UTF-8 bytes
//! ```
//!
//! The record's magic is stored last (after the rest of the record), so a
//! record cut short by a crash never starts with the magic: decoding tells
//! an *unfinished* record (its `save` never returned, nothing acknowledged is
//! in it) from a *damaged* one (the magic is there, the rest does not check
//! out). After a damaged stretch, decoding resynchronises at the next
//! magic whose record checks out, so one bad record costs that record only.
//!
//! Segments written before this format (no header, records without magic
//! or hlc) are still read, as a valid prefix.

/// Starts every segment file.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"MNEMOJ02";
/// Bytes before the first record.
pub(crate) const SEGMENT_HEADER: usize = 16;
/// Starts every record: `b"MNR1"` read as a little-endian u32.
pub(crate) const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"MNR1");
/// Bytes before a record's payload.
pub(crate) const RECORD_HEADER: usize = 12;

use crate::model::OpPayload;

/// One decoded record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    pub seq: u64,
    /// The operation's hybrid-logical-clock time (see `crate::clock`).
    pub hlc: u64,
    pub payload: OpPayload,
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// Appends the framed record for `(seq, hlc, payload)` to `buf`, magic
/// included. [`super::Segment::write_record`] copies it so that the magic
/// lands last.
pub(crate) fn encode(seq: u64, hlc: u64, p: &OpPayload, buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.extend_from_slice(&[0; RECORD_HEADER]);
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&hlc.to_le_bytes());
    buf.extend_from_slice(&p.at_ms.to_le_bytes());
    buf.push(if p.value().is_some() { 1 } else { 2 });
    buf.push(u8::from(p.metadata().is_some()));
    put_str(buf, p.namespace());
    put_str(buf, p.category());
    put_str(buf, p.key());
    if let Some(v) = &p.value() {
        put_str(buf, v);
    }
    if let Some(m) = &p.metadata() {
        put_str(buf, m);
    }
    let len = (buf.len() - start - RECORD_HEADER) as u32;
    let crc = crc32fast::hash(&buf[start + RECORD_HEADER..]);
    buf[start..start + 4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
    buf[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

/// The segment header for a segment of `size` bytes.
pub(crate) fn segment_header(size: usize) -> [u8; SEGMENT_HEADER] {
    let mut h = [0; SEGMENT_HEADER];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..].copy_from_slice(&(size as u64).to_le_bytes());
    h
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (head, tail) = self.b.split_at(n);
        self.b = tail;
        Some(head)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn str(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

/// Decodes a payload; `with_hlc` is false for the format before hlc.
fn decode_payload(b: &[u8], with_hlc: bool) -> Option<Record> {
    let mut r = Reader { b };
    let seq = r.u64()?;
    let hlc = if with_hlc { Some(r.u64()?) } else { None };
    let at_ms = r.u64()? as i64;
    let kind = r.u8()?;
    let flags = r.u8()?;
    let namespace = r.str()?;
    let category = r.str()?;
    let key = r.str()?;
    let value = match kind {
        1 => Some(r.str()?),
        2 => None,
        _ => return None,
    };
    let metadata = if flags & 1 == 1 { Some(r.str()?) } else { None };
    if !r.b.is_empty() {
        return None;
    }
    Some(Record {
        seq,
        // Old records carry no clock: their acceptance time stands in.
        hlc: hlc.unwrap_or_else(|| crate::clock::from_ms(at_ms)),
        payload: OpPayload::new(
            &namespace,
            &category,
            &key,
            value.as_deref(),
            metadata.as_deref(),
            at_ms,
        ),
    })
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// The record starting at `at`, if one checks out there: magic, length,
/// CRC and payload. Returns it and its framed length.
fn record_at(bytes: &[u8], at: usize) -> Option<(Record, usize)> {
    if u32_at(bytes, at)? != RECORD_MAGIC {
        return None;
    }
    let len = u32_at(bytes, at + 4)? as usize;
    let crc = u32_at(bytes, at + 8)?;
    let body = bytes.get(at + RECORD_HEADER..(at + RECORD_HEADER).checked_add(len)?)?;
    if len == 0 || crc32fast::hash(body) != crc {
        return None;
    }
    Some((decode_payload(body, true)?, RECORD_HEADER + len))
}

/// A stretch of a segment that held data no record could be read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Damage {
    /// Offset of the stretch in the segment.
    pub at: usize,
    /// Its length (to the last non-zero byte when nothing valid follows).
    pub len: usize,
}

/// What a segment's bytes held.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Decoded {
    /// Every record that checks out, in file order.
    pub records: Vec<Record>,
    /// Stretches that held data but no readable record: records lost,
    /// unless they are the unfinished write below.
    pub damaged: Vec<Damage>,
    /// Bytes of a record whose write never finished (its magic, stored
    /// last, is absent), at the very end of the data: a `save` that was cut
    /// off by a crash and never returned. Not counted as damage.
    pub unfinished: usize,
    /// The segment file is shorter than its header says (it was
    /// truncated), or its header is missing or wrong: by how many bytes,
    /// at least 1.
    pub truncated: usize,
    /// It is a segment of the current format (its header, or its records,
    /// say so), not of the format before the header.
    pub current: bool,
}

impl Decoded {
    /// Bytes that held acknowledged data which could not be read.
    pub fn lost_bytes(&self) -> usize {
        self.damaged.iter().map(|d| d.len).sum::<usize>() + self.truncated
    }

    /// Damaged stretches, a truncation counting as one.
    pub fn lost_regions(&self) -> usize {
        self.damaged.len() + usize::from(self.truncated > 0)
    }
}

/// Decodes a whole segment file's bytes. Never panics, whatever the input;
/// linear in its length (resynchronising looks for the next magic).
pub(crate) fn decode_segment(bytes: &[u8]) -> Decoded {
    let has_header = bytes.len() >= SEGMENT_HEADER && &bytes[..8] == SEGMENT_MAGIC;
    if has_header {
        let mut out = decode_records(bytes, SEGMENT_HEADER);
        out.current = true;
        let size = u64::from_le_bytes(bytes[8..16].try_into().unwrap_or([0; 8]));
        if size != bytes.len() as u64 {
            out.truncated = (size as usize).saturating_sub(bytes.len()).max(1);
        }
        return out;
    }
    // No header: a damaged header over intact records (read them: one bad
    // byte costs no record), or the format before the header.
    let mut framed = decode_records(bytes, 0);
    if !framed.records.is_empty() {
        framed.current = true;
        framed.damaged.retain(|d| d.at >= SEGMENT_HEADER);
        framed.damaged.insert(
            0,
            Damage {
                at: 0,
                len: SEGMENT_HEADER,
            },
        );
        framed.unfinished = framed.unfinished.min(bytes.len());
        return framed;
    }
    decode_unframed(bytes)
}

/// Decodes the records from `start` on, resynchronising past damage.
fn decode_records(bytes: &[u8], start: usize) -> Decoded {
    let mut out = Decoded::default();
    let mut at = start;
    while at < bytes.len() {
        if let Some((record, len)) = record_at(bytes, at) {
            out.records.push(record);
            at += len;
            continue;
        }
        let rest = &bytes[at..];
        let Some(last_nonzero) = rest.iter().rposition(|&b| b != 0) else {
            break; // zero bytes to the end: the end of the data
        };
        // Damage, or an unfinished write: find the next record that checks out.
        let next = (at + 1..bytes.len().saturating_sub(RECORD_HEADER - 1))
            .filter(|&i| u32_at(bytes, i) == Some(RECORD_MAGIC))
            .find(|&i| record_at(bytes, i).is_some());
        match next {
            Some(next) => {
                out.damaged.push(Damage { at, len: next - at });
                at = next;
            }
            None => {
                let len = last_nonzero + 1;
                // An unfinished write is one record without its magic: the
                // bytes past its own length (when that is readable) must be
                // zero. (A value holding the magic's text is no trace of a
                // finished record.)
                let own_end = u32_at(bytes, at + 4)
                    .and_then(|l| (at + RECORD_HEADER).checked_add(l as usize))
                    .filter(|&end| end <= bytes.len())
                    .unwrap_or(at + 1);
                let beyond = &bytes[own_end.min(at + len)..at + len];
                if u32_at(bytes, at) == Some(RECORD_MAGIC) || has_magic(beyond) {
                    out.damaged.push(Damage { at, len });
                } else {
                    out.unfinished = len;
                }
                break;
            }
        }
    }
    out
}

/// Whether a record magic occurs in `bytes`: a tail holding one past an
/// unfinished record held a finished record once, so it is damage.
fn has_magic(bytes: &[u8]) -> bool {
    let m = RECORD_MAGIC.to_le_bytes();
    bytes.windows(4).any(|w| w == m)
}

/// A segment without the header: the format before it (a valid prefix of
/// records without magic or clock), or a file whose header was destroyed.
fn decode_unframed(bytes: &[u8]) -> Decoded {
    let mut out = Decoded::default();
    let mut at = 0;
    while bytes.len() - at >= 8 {
        let len =
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        if len == 0 || len > bytes.len() - at - 8 {
            break;
        }
        let body = &bytes[at + 8..at + 8 + len];
        if crc32fast::hash(body) != crc {
            break;
        }
        match decode_payload(body, false) {
            Some(r) => out.records.push(r),
            None => break,
        }
        at += 8 + len;
    }
    let rest = &bytes[at..];
    let tail = rest.iter().rposition(|&b| b != 0).map(|i| i + 1);
    match tail {
        // Zero bytes (a segment the format before made empty, with
        // `set_len`) hold nothing; an empty file is a truncation.
        None if out.records.is_empty() && bytes.is_empty() => out.truncated = 1,
        None => {}
        // Neither format: the header was lost (zeroed, overwritten).
        Some(len) if out.records.is_empty() => out.truncated = len,
        // The format before wrote no magic: a torn last write cannot be told
        // from damage, and was never acknowledged if it was torn. As that
        // format's recovery did, it ends the data.
        Some(len) => out.unfinished = len,
    }
    out
}

/// What [`decode_summary`] found in a journal segment: for tools and fuzzing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeSummary {
    /// Records that check out.
    pub records: usize,
    /// Bytes that held data but no readable record (damage and truncation;
    /// an unfinished last write is not counted).
    pub dropped_bytes: usize,
    /// The last valid record's sequence number (0 if none).
    pub last_seq: u64,
}

/// Decodes a journal segment's bytes and summarises them. Never panics,
/// whatever the input.
pub fn decode_summary(bytes: &[u8]) -> DecodeSummary {
    let d = decode_segment(bytes);
    DecodeSummary {
        records: d.records.len(),
        dropped_bytes: d.damaged.iter().map(|x| x.len).sum(),
        last_seq: d.records.last().map_or(0, |r| r.seq),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn payload(key: &str, value: Option<&str>, metadata: Option<&str>) -> OpPayload {
        OpPayload::new("ns", "cat", key, value, metadata, 1_700_000_000_000)
    }

    /// A segment of `size` bytes holding records 1..=n, and each record's
    /// offset.
    fn segment(n: u64, size: usize) -> (Vec<u8>, Vec<usize>) {
        let mut buf = segment_header(size).to_vec();
        let mut offsets = Vec::new();
        for seq in 1..=n {
            offsets.push(buf.len());
            encode(
                seq,
                seq << 16,
                &payload(&format!("k{seq}"), Some("a value"), None),
                &mut buf,
            );
        }
        buf.resize(size, 0);
        (buf, offsets)
    }

    #[test]
    fn records_round_trip() {
        let mut buf = segment_header(4096).to_vec();
        let a = payload("k", Some("مجھے گانا پسند ہے"), Some(r#"{"x":1}"#));
        let b = payload("gone", None, None);
        encode(1, 10, &a, &mut buf);
        encode(2, 11, &b, &mut buf);
        buf.resize(4096, 0);
        let d = decode_segment(&buf);
        assert_eq!(d.lost_bytes() + d.unfinished, 0);
        assert_eq!(
            d.records,
            vec![
                Record {
                    seq: 1,
                    hlc: 10,
                    payload: a
                },
                Record {
                    seq: 2,
                    hlc: 11,
                    payload: b
                }
            ]
        );
    }

    #[test]
    fn one_flipped_byte_costs_one_record() {
        let (mut buf, offsets) = segment(100, 64 * 1024);
        // a byte inside record 31's payload
        buf[offsets[30] + RECORD_HEADER + 3] ^= 0x40;
        let d = decode_segment(&buf);
        assert_eq!(d.records.len(), 99);
        assert!(d.records.iter().all(|r| r.seq != 31));
        assert_eq!(d.damaged.len(), 1);
        assert_eq!(d.damaged[0].at, offsets[30]);
        assert_eq!(d.damaged[0].len, offsets[31] - offsets[30]);
        // a flipped length or magic resynchronises the same way
        for field in [0, 4, 8] {
            let (mut buf, offsets) = segment(100, 64 * 1024);
            buf[offsets[30] + field] ^= 0x01;
            let d = decode_segment(&buf);
            assert_eq!((d.records.len(), d.damaged.len()), (99, 1), "field {field}");
        }
    }

    #[test]
    fn an_unfinished_last_write_is_not_damage_but_a_damaged_last_record_is() {
        let (full, offsets) = segment(10, 4096);
        // The crash hit while record 10 was copied: magic not yet stored.
        let mut torn = full.clone();
        torn[offsets[9]..offsets[9] + 4].fill(0);
        torn[offsets[9] + 40..].iter_mut().for_each(|b| *b = 0);
        let d = decode_segment(&torn);
        assert_eq!((d.records.len(), d.lost_regions()), (9, 0));
        assert!(d.unfinished > 0);
        // Record 10 finished (magic present) and then damaged: loss.
        let mut bad = full;
        bad[offsets[9] + RECORD_HEADER + 1] ^= 1;
        let d = decode_segment(&bad);
        assert_eq!((d.records.len(), d.lost_regions(), d.unfinished), (9, 1, 0));
    }

    #[test]
    fn truncated_and_headerless_segments_are_reported() {
        let (full, offsets) = segment(10, 4096);
        let d = decode_segment(&full[..offsets[5]]);
        assert_eq!(d.records.len(), 5);
        assert_eq!(d.truncated, 4096 - offsets[5]);
        let d = decode_segment(&[]);
        assert_eq!((d.records.len(), d.lost_regions()), (0, 1));
        // Zeros: an empty segment of the format before the header.
        let d = decode_segment(&vec![0; 4096]);
        assert_eq!((d.records.len(), d.lost_regions()), (0, 0));
        // Garbage without records: lost.
        let d = decode_segment(&[7; 300]);
        assert_eq!((d.records.len(), d.lost_regions()), (0, 1));
    }

    #[test]
    fn a_damaged_header_costs_no_record() {
        let (mut buf, _) = segment(30, 4096);
        buf[3] ^= 0x20;
        let d = decode_segment(&buf);
        assert_eq!(d.records.len(), 30);
        assert_eq!(
            d.damaged,
            vec![Damage {
                at: 0,
                len: SEGMENT_HEADER
            }]
        );
        assert_eq!(d.lost_bytes(), SEGMENT_HEADER, "the header, reported");
    }

    #[test]
    fn the_format_before_the_header_is_still_read() {
        // The old framing: u32 len | u32 crc | payload without hlc.
        let mut body = Vec::new();
        body.extend_from_slice(&7u64.to_le_bytes());
        body.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
        body.extend_from_slice(&[1, 0]);
        for s in ["ns", "cat", "k", "v"] {
            put_str(&mut body, s);
        }
        let mut buf = (body.len() as u32).to_le_bytes().to_vec();
        buf.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        buf.extend_from_slice(&body);
        buf.resize(1024, 0);
        let d = decode_segment(&buf);
        assert_eq!(d.records.len(), 1);
        assert_eq!(d.records[0].seq, 7);
        assert_eq!(d.records[0].hlc, crate::clock::from_ms(1_700_000_000_000));
        assert_eq!(d.lost_regions(), 0);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut rng = fastrand::Rng::with_seed(7);
        let (valid, _) = segment(20, 2048);
        for _ in 0..2_000 {
            let len = rng.usize(0..300);
            let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            let _ = decode_segment(&bytes);
            let mut v = valid.clone();
            for _ in 0..rng.usize(1..8) {
                let i = rng.usize(..v.len());
                v[i] = rng.u8(..);
            }
            let d = decode_segment(&v);
            assert!(d.records.len() <= 20);
        }
    }
}
