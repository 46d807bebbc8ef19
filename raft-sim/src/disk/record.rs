//! The byte format of the disk's log: one checksummed record per durable step.
//!
//! A record is `[body length: u32][FNV-1a of the body: u64][body]`, and a body starts with a
//! kind byte: a `PersistWrite`, a compaction, or one of the three steps of a snapshot transfer
//! (begin with its metadata, a chunk of data, finish). Integers are little-endian.

use bytes::Bytes;
use raft_proto_core::{Entry, EntryKind, HardState, Index, PersistWrite, SnapshotMeta};

const WRITE: u8 = 0;
const COMPACT: u8 = 1;
const SNAPSHOT_BEGIN: u8 = 2;
const SNAPSHOT_CHUNK: u8 = 3;
const SNAPSHOT_FINISH: u8 = 4;

/// Bytes before a record's body: its length and checksum.
const HEADER: usize = 12;

/// One step of the durable state, as the log stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Record {
    /// A write of the core: cut, append, hard state.
    Write(PersistWrite),
    /// Drop every entry up to and including this index.
    Compact(Index),
    /// Start receiving a snapshot (abandons one being received).
    SnapshotBegin(SnapshotMeta),
    /// Data of the snapshot being received.
    SnapshotChunk(Bytes),
    /// The snapshot being received becomes the latest.
    SnapshotFinish,
}

impl Record {
    /// The record's bytes, header included.
    pub(super) fn encode(&self) -> Vec<u8> {
        let payload = match self {
            Record::Write(w) => 64 + w.entries.iter().map(|e| e.data.len() + 24).sum::<usize>(),
            Record::SnapshotChunk(data) => data.len() + 8,
            _ => 24,
        };
        let mut out = Vec::with_capacity(HEADER + 1 + payload);
        out.extend_from_slice(&[0u8; HEADER]);
        match self {
            Record::Write(w) => {
                out.push(WRITE);
                encode_write(w, &mut out);
            }
            Record::Compact(through) => {
                out.push(COMPACT);
                out.extend_from_slice(&through.to_le_bytes());
            }
            Record::SnapshotBegin(meta) => {
                out.push(SNAPSHOT_BEGIN);
                out.extend_from_slice(&meta.last_index.to_le_bytes());
                out.extend_from_slice(&meta.last_term.to_le_bytes());
                let m = raft_proto_core::codec::encode_membership(&meta.membership);
                out.extend_from_slice(&(m.len() as u64).to_le_bytes());
                out.extend_from_slice(&m);
            }
            Record::SnapshotChunk(data) => {
                out.push(SNAPSHOT_CHUNK);
                out.extend_from_slice(&(data.len() as u64).to_le_bytes());
                out.extend_from_slice(data);
            }
            Record::SnapshotFinish => out.push(SNAPSHOT_FINISH),
        }
        let body_len = (out.len() - HEADER) as u32;
        let sum = checksum(&out[HEADER..]);
        out[..4].copy_from_slice(&body_len.to_le_bytes());
        out[4..HEADER].copy_from_slice(&sum.to_le_bytes());
        out
    }

    /// Parses the record at the start of `buf`; `None` if it is incomplete or damaged.
    /// Returns the record and the bytes it takes.
    pub(super) fn decode(buf: &[u8]) -> Option<(Record, usize)> {
        let mut c = Cursor(buf);
        let len = c.u32()? as usize;
        let sum = c.u64()?;
        let body = c.take(len)?;
        if checksum(body) != sum {
            return None;
        }
        let mut b = Cursor(body);
        let rec = match b.u8()? {
            WRITE => Record::Write(decode_write(&mut b)?),
            COMPACT => Record::Compact(b.u64()?),
            SNAPSHOT_BEGIN => {
                let last_index = b.u64()?;
                let last_term = b.u64()?;
                let n = usize::try_from(b.u64()?).ok()?;
                let membership = raft_proto_core::codec::decode_membership(b.take(n)?).ok()?;
                Record::SnapshotBegin(SnapshotMeta {
                    last_index,
                    last_term,
                    membership: membership.into(),
                })
            }
            SNAPSHOT_CHUNK => {
                let n = usize::try_from(b.u64()?).ok()?;
                Record::SnapshotChunk(Bytes::copy_from_slice(b.take(n)?))
            }
            SNAPSHOT_FINISH => Record::SnapshotFinish,
            _ => return None,
        };
        // A body holds exactly one record: trailing bytes mean the parse went wrong.
        b.0.is_empty().then_some((rec, HEADER + len))
    }
}

/// Whether a valid record starts anywhere after the first byte of `buf`.
pub(super) fn valid_record_after_start(buf: &[u8]) -> bool {
    (1..buf.len()).any(|i| Record::decode(&buf[i..]).is_some())
}

/// FNV-1a, 64 bit.
fn checksum(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn encode_write(w: &PersistWrite, out: &mut Vec<u8>) {
    out.extend_from_slice(&w.seq.to_le_bytes());
    out.extend_from_slice(&w.truncate_from.unwrap_or(0).to_le_bytes());
    out.push(u8::from(w.truncate_from.is_some()) | (u8::from(w.hard_state.is_some()) << 1));
    let hs = w.hard_state.unwrap_or_default();
    for v in [hs.term, hs.vote, hs.commit] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&(w.entries.len() as u32).to_le_bytes());
    for e in &w.entries {
        out.extend_from_slice(&e.term.to_le_bytes());
        out.extend_from_slice(&e.index.to_le_bytes());
        out.push(e.kind.to_byte());
        out.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.data);
    }
}

fn decode_write(b: &mut Cursor<'_>) -> Option<PersistWrite> {
    let seq = b.u64()?;
    let truncate = b.u64()?;
    let flags = b.u8()?;
    let hs = HardState {
        term: b.u64()?,
        vote: b.u64()?,
        commit: b.u64()?,
    };
    let n = b.u32()? as usize;
    // Each entry takes at least 21 bytes: never reserve more than the body can hold.
    let mut entries = Vec::with_capacity(n.min(b.0.len() / 21));
    for _ in 0..n {
        let term = b.u64()?;
        let index = b.u64()?;
        let kind = EntryKind::from_byte(b.u8()?)?;
        let dlen = b.u32()? as usize;
        let data = Bytes::copy_from_slice(b.take(dlen)?);
        entries.push(Entry {
            term,
            index,
            kind,
            data,
        });
    }
    Some(PersistWrite {
        seq,
        truncate_from: (flags & 1 != 0).then_some(truncate),
        entries,
        hard_state: (flags & 2 != 0).then_some(hs),
    })
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_and_damage_is_seen() {
        let records = [
            Record::Write(PersistWrite {
                seq: 7,
                truncate_from: Some(3),
                entries: vec![Entry {
                    term: 2,
                    index: 3,
                    kind: EntryKind::Noop,
                    data: Bytes::from_static(b"abc"),
                }],
                hard_state: Some(HardState {
                    term: 2,
                    vote: 1,
                    commit: 2,
                }),
            }),
            Record::Write(PersistWrite::default()),
            Record::Compact(42),
            Record::SnapshotBegin(SnapshotMeta {
                last_index: 9,
                last_term: 3,
                membership: raft_proto_core::Membership::with_voters([1, 2, 3]).into(),
            }),
            Record::SnapshotChunk(Bytes::from_static(b"some state")),
            Record::SnapshotChunk(Bytes::new()),
            Record::SnapshotFinish,
        ];
        for r in records {
            let mut bytes = r.encode();
            bytes.extend_from_slice(b"next");
            let (back, used) = Record::decode(&bytes).expect("decodes");
            assert_eq!(back, r);
            assert_eq!(used, bytes.len() - 4);
            for cut in 0..used {
                assert!(
                    Record::decode(&bytes[..cut]).is_none(),
                    "{r:?} cut at {cut}"
                );
            }
            bytes[used - 1] ^= 1;
            assert!(Record::decode(&bytes).is_none(), "{r:?} damaged");
        }
    }
}
