//! A simulated disk that tells written data from synced data.
//!
//! Every `PersistWrite` of the core becomes one checksummed record appended to a byte log. A
//! sync makes everything written so far durable. A crash keeps the synced bytes and a random
//! prefix of the unsynced records (the page cache may have flushed some), the last of which may
//! be torn. Recovery parses the records, drops a torn tail exactly like a write-ahead log does,
//! and rebuilds the [`RecoveredState`] the core is restarted from.

use std::collections::VecDeque;

use bytes::Bytes;
use raft_proto_core::{Entry, EntryKind, HardState, PersistWrite, RecoveredState};

use crate::rng::SimRng;

/// What a crash did to the unsynced tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CrashReport {
    /// Unsynced records that survived whole.
    pub survived: usize,
    /// Unsynced records lost.
    pub lost: usize,
    /// Whether a partial record was left at the end.
    pub torn: bool,
}

/// Why the disk could not be recovered (a simulator bug: the format is ours).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiskError {
    /// A record in the middle of the log is damaged.
    #[error("record at byte {offset} is damaged but is not the last one")]
    Corrupt {
        /// Where the record starts.
        offset: usize,
    },
}

/// One node's disk.
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    durable: Vec<u8>,
    unsynced: VecDeque<(u64, Vec<u8>)>,
    /// Bytes dropped as a torn tail by the last recovery.
    pub last_torn_bytes: usize,
}

impl SimDisk {
    /// Appends a write (not yet durable).
    pub fn write(&mut self, w: &PersistWrite) {
        let mut rec =
            Vec::with_capacity(64 + w.entries.iter().map(|e| e.data.len() + 24).sum::<usize>());
        encode_record(w, &mut rec);
        self.unsynced.push_back((w.seq, rec));
    }

    /// Whether writes are waiting for a sync.
    pub fn has_unsynced(&self) -> bool {
        !self.unsynced.is_empty()
    }

    /// Makes every write so far durable; returns the last write's sequence number.
    pub fn sync(&mut self) -> Option<u64> {
        self.sync_up_to(u64::MAX)
    }

    /// Makes the writes up to sequence number `upto` durable; returns the last one synced.
    pub fn sync_up_to(&mut self, upto: u64) -> Option<u64> {
        let mut last = None;
        while self.unsynced.front().is_some_and(|(seq, _)| *seq <= upto) {
            if let Some((seq, rec)) = self.unsynced.pop_front() {
                self.durable.extend_from_slice(&rec);
                last = Some(seq);
            }
        }
        last
    }

    /// Sequence number of the last write not yet synced.
    pub fn last_unsynced_seq(&self) -> Option<u64> {
        self.unsynced.back().map(|(seq, _)| *seq)
    }

    /// Crashes the disk: unsynced writes are lost, except a random prefix that reached the
    /// platter, whose last record may be torn.
    pub fn crash(&mut self, rng: &mut SimRng, allow_torn: bool) -> CrashReport {
        let n = self.unsynced.len();
        let keep = rng.index(n + 1);
        let mut report = CrashReport {
            survived: keep,
            lost: n - keep,
            torn: false,
        };
        for _ in 0..keep {
            if let Some((_, rec)) = self.unsynced.pop_front() {
                self.durable.extend_from_slice(&rec);
            }
        }
        if allow_torn {
            if let Some((_, rec)) = self.unsynced.front() {
                let cut = rng.range(1, rec.len() as u64) as usize;
                self.durable.extend_from_slice(&rec[..cut]);
                report.torn = true;
                report.lost -= 1;
            }
        }
        self.unsynced.clear();
        report
    }

    /// Parses the durable records into the state a node restarts from. A torn last record is
    /// cut off (and the disk truncated there), as a write-ahead log does on open.
    pub fn recover(&mut self) -> Result<RecoveredState, DiskError> {
        self.unsynced.clear();
        let mut state = RecoveredState::default();
        let mut pos = 0usize;
        while pos < self.durable.len() {
            match decode_record(&self.durable[pos..]) {
                Some((w, used)) => {
                    apply(&mut state, w);
                    pos += used;
                }
                None => {
                    // Only the tail may be damaged: nothing valid may follow it.
                    if scan_for_valid_record(&self.durable[pos..]) {
                        return Err(DiskError::Corrupt { offset: pos });
                    }
                    self.last_torn_bytes = self.durable.len() - pos;
                    self.durable.truncate(pos);
                    break;
                }
            }
        }
        Ok(state)
    }

    /// Bytes stored durably.
    pub fn durable_len(&self) -> usize {
        self.durable.len()
    }
}

fn apply(state: &mut RecoveredState, w: PersistWrite) {
    if let Some(t) = w.truncate_from {
        state.entries.retain(|e| e.index < t);
    }
    state.entries.extend(w.entries);
    if let Some(hs) = w.hard_state {
        state.hard_state = hs;
    }
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

fn encode_record(w: &PersistWrite, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; 12]);
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
        out.push(match e.kind {
            EntryKind::Normal => 0,
            EntryKind::Noop => 1,
        });
        out.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.data);
    }
    let body_len = (out.len() - start - 12) as u32;
    let sum = checksum(&out[start + 12..]);
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    out[start + 4..start + 12].copy_from_slice(&sum.to_le_bytes());
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

fn decode_record(buf: &[u8]) -> Option<(PersistWrite, usize)> {
    let mut c = Cursor(buf);
    let len = c.u32()? as usize;
    let sum = c.u64()?;
    let body = c.take(len)?;
    if checksum(body) != sum {
        return None;
    }
    let mut b = Cursor(body);
    let seq = b.u64()?;
    let truncate = b.u64()?;
    let flags = b.u8()?;
    let hs = HardState {
        term: b.u64()?,
        vote: b.u64()?,
        commit: b.u64()?,
    };
    let n = b.u32()? as usize;
    let mut entries = Vec::with_capacity(n.min(body.len() / 21));
    for _ in 0..n {
        let term = b.u64()?;
        let index = b.u64()?;
        let kind = match b.u8()? {
            0 => EntryKind::Normal,
            _ => EntryKind::Noop,
        };
        let dlen = b.u32()? as usize;
        let data = Bytes::copy_from_slice(b.take(dlen)?);
        entries.push(Entry {
            term,
            index,
            kind,
            data,
        });
    }
    let w = PersistWrite {
        seq,
        truncate_from: (flags & 1 != 0).then_some(truncate),
        entries,
        hard_state: (flags & 2 != 0).then_some(hs),
    };
    Some((w, 12 + len))
}

/// Whether a valid record starts anywhere after the first byte of `buf`.
fn scan_for_valid_record(buf: &[u8]) -> bool {
    (1..buf.len()).any(|i| decode_record(&buf[i..]).is_some_and(|(_, used)| used > 12))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(seq: u64, first: u64, n: u64, term: u64) -> PersistWrite {
        PersistWrite {
            seq,
            truncate_from: None,
            entries: (first..first + n)
                .map(|index| Entry {
                    term,
                    index,
                    kind: EntryKind::Normal,
                    data: Bytes::from(vec![index as u8; 10]),
                })
                .collect(),
            hard_state: Some(HardState {
                term,
                vote: 1,
                commit: 0,
            }),
        }
    }

    #[test]
    fn synced_writes_survive_and_unsynced_may_not() {
        let mut d = SimDisk::default();
        d.write(&write(1, 1, 3, 1));
        assert_eq!(d.sync(), Some(1));
        d.write(&write(2, 4, 2, 2));
        let mut rng = SimRng::new(3);
        let mut saw_lost = false;
        let mut saw_kept = false;
        for _ in 0..50 {
            let mut c = d.clone();
            let r = c.crash(&mut rng, true);
            let s = c.recover().expect("recoverable");
            assert!(s.entries.len() == 3 || s.entries.len() == 5, "{r:?}");
            if s.entries.len() == 3 {
                saw_lost = true;
                assert_eq!(s.hard_state.term, 1);
            } else {
                saw_kept = true;
                assert_eq!(s.hard_state.term, 2);
            }
            s.validate().expect("consistent");
        }
        assert!(saw_lost && saw_kept);
    }

    #[test]
    fn truncation_replays_and_torn_tail_is_cut() {
        let mut d = SimDisk::default();
        d.write(&write(1, 1, 4, 1));
        let mut w = write(2, 3, 1, 2);
        w.truncate_from = Some(3);
        d.write(&w);
        d.sync();
        let len = d.durable_len();
        d.write(&write(3, 4, 3, 2));
        let mut rng = SimRng::new(9);
        // Force a torn record: keep no whole unsynced record, tear the first.
        let mut c = d.clone();
        while c.crash(&mut rng, true).survived != 0 {
            c = d.clone();
        }
        let s = c.recover().expect("torn tail is not an error");
        assert_eq!(c.durable_len(), len);
        assert!(c.last_torn_bytes > 0);
        let terms: Vec<u64> = s.entries.iter().map(|e| e.term).collect();
        assert_eq!(terms, vec![1, 1, 2]);
    }

    #[test]
    fn damage_in_the_middle_is_an_error() {
        let mut d = SimDisk::default();
        d.write(&write(1, 1, 2, 1));
        d.write(&write(2, 3, 2, 1));
        d.sync();
        d.durable[14] ^= 0xff;
        assert!(matches!(d.recover(), Err(DiskError::Corrupt { offset: 0 })));
    }
}
