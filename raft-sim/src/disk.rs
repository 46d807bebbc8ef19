//! A simulated disk that tells written data from synced data.
//!
//! Every `PersistWrite` of the core becomes one checksummed record appended to a byte log, and
//! so do compactions and the steps of a snapshot transfer when the disk is used through the
//! core's [`Storage`](raft_proto_core::storage::Storage) trait. A sync makes everything written
//! so far durable. A crash keeps the synced bytes and a random prefix of the unsynced records
//! (the page cache may have flushed some), the last of which may be torn. Recovery parses the
//! records, drops a torn tail exactly like a write-ahead log does, and rebuilds the
//! [`RecoveredState`] the core is restarted from.
//!
//! The disk keeps a materialized view of its durable state, updated as records become durable,
//! from which the trait's reads answer; recovery rebuilds it by replaying the log.

mod record;
mod storage;
mod view;

use std::collections::VecDeque;

use raft_proto_core::storage::MemStorageError;
use raft_proto_core::{PersistWrite, RecoveredState};

use crate::rng::SimRng;
use record::Record;
use view::View;

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

/// Why the disk refused an operation or could not be recovered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiskError {
    /// A record in the middle of the log is damaged (a simulator bug: the format is ours).
    #[error("record at byte {offset} is damaged but is not the last one")]
    Corrupt {
        /// Where the record starts.
        offset: usize,
    },
    /// A durable record breaks the storage contract (the writer broke it: the core, when it
    /// came through [`SimDisk::write`]). The disk's view of its state stops before it.
    #[error("record at byte {offset} breaks the storage contract: {cause}")]
    InvalidRecord {
        /// Where the record starts.
        offset: usize,
        /// What it breaks.
        cause: Box<DiskError>,
    },
    /// A call or record breaks the storage contract (the rules of the reference backend).
    #[error(transparent)]
    Refused(#[from] MemStorageError),
}

/// A record written but not yet durable.
#[derive(Debug, Clone)]
struct Pending {
    /// The write's sequence number; records of a snapshot transfer have none.
    seq: Option<u64>,
    bytes: Vec<u8>,
    record: Record,
}

/// One node's disk.
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    durable: Vec<u8>,
    unsynced: VecDeque<Pending>,
    /// The state the durable records add up to.
    view: View,
    /// The first durable record that broke the contract: the view stopped before it.
    damage: Option<DiskError>,
    /// Whether a snapshot transfer is open, counting unsynced records.
    receiving: bool,
    /// Highest write sequence number made durable since the last recovery.
    durable_seq: u64,
    /// Bytes dropped as a torn tail by the last recovery.
    pub last_torn_bytes: usize,
}

impl SimDisk {
    /// Appends a write (not yet durable).
    pub fn write(&mut self, w: &PersistWrite) {
        self.append(Record::Write(w.clone()), Some(w.seq));
    }

    fn append(&mut self, record: Record, seq: Option<u64>) {
        let bytes = record.encode();
        self.unsynced.push_back(Pending { seq, bytes, record });
    }

    /// Appends the durable step that installs the snapshot being received (not yet durable),
    /// ordered with the writes by its sequence number.
    pub fn install(&mut self, seq: u64) {
        self.append(Record::SnapshotFinish, Some(seq));
        self.receiving = false;
    }

    /// Highest write sequence number durable (synced) since the last recovery.
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
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
    /// Records without a sequence number go along with the writes before and after them.
    pub fn sync_up_to(&mut self, upto: u64) -> Option<u64> {
        let mut last = None;
        while self
            .unsynced
            .front()
            .is_some_and(|p| p.seq.is_none_or(|seq| seq <= upto))
        {
            if let Some(p) = self.unsynced.pop_front() {
                last = p.seq.or(last);
                self.make_durable(p);
            }
        }
        last
    }

    /// Sequence number of the last write not yet synced.
    pub fn last_unsynced_seq(&self) -> Option<u64> {
        self.unsynced.iter().rev().find_map(|p| p.seq)
    }

    fn make_durable(&mut self, p: Pending) {
        if let Some(seq) = p.seq {
            self.durable_seq = self.durable_seq.max(seq);
        }
        let offset = self.durable.len();
        self.durable.extend_from_slice(&p.bytes);
        if self.damage.is_none() {
            if let Err(e) = self.view.apply(p.record) {
                self.damage = Some(DiskError::InvalidRecord {
                    offset,
                    cause: Box::new(e),
                });
            }
        }
    }

    /// Crashes the disk: unsynced writes are lost, except a random prefix that reached the
    /// platter, whose last record may be torn. Call [`SimDisk::recover`] before anything else.
    pub fn crash(&mut self, rng: &mut SimRng, allow_torn: bool) -> CrashReport {
        let n = self.unsynced.len();
        let keep = rng.index(n + 1);
        let mut report = CrashReport {
            survived: keep,
            lost: n - keep,
            torn: false,
        };
        for _ in 0..keep {
            if let Some(p) = self.unsynced.pop_front() {
                self.make_durable(p);
            }
        }
        if allow_torn {
            if let Some(p) = self.unsynced.front() {
                let cut = rng.range(1, p.bytes.len() as u64) as usize;
                self.durable.extend_from_slice(&p.bytes[..cut]);
                report.torn = true;
                report.lost -= 1;
            }
        }
        self.unsynced.clear();
        self.receiving = self.view.receiving();
        report
    }

    /// Parses the durable records into the state a node restarts from. A torn last record is
    /// cut off (and the disk truncated there), as a write-ahead log does on open, and a
    /// snapshot transfer left unfinished is abandoned. Rebuilds the disk's view of its state.
    pub fn recover(&mut self) -> Result<RecoveredState, DiskError> {
        self.unsynced.clear();
        self.last_torn_bytes = 0;
        let mut view = View::default();
        let mut pos = 0usize;
        while pos < self.durable.len() {
            match Record::decode(&self.durable[pos..]) {
                Some((rec, used)) => {
                    view.apply(rec).map_err(|e| DiskError::InvalidRecord {
                        offset: pos,
                        cause: Box::new(e),
                    })?;
                    pos += used;
                }
                None => {
                    // Only the tail may be damaged: nothing valid may follow it.
                    if record::valid_record_after_start(&self.durable[pos..]) {
                        return Err(DiskError::Corrupt { offset: pos });
                    }
                    self.last_torn_bytes = self.durable.len() - pos;
                    self.durable.truncate(pos);
                    break;
                }
            }
        }
        self.view = view;
        self.damage = None;
        self.receiving = false;
        self.durable_seq = 0;
        self.view.recover()
    }

    /// A clean restart: everything written is flushed, the process stops, and a new disk
    /// handle opens the durable bytes. As after any restart, call [`SimDisk::recover`] first:
    /// until then the new handle knows nothing of what the bytes hold.
    pub fn reopen(mut self) -> SimDisk {
        self.sync();
        SimDisk {
            durable: self.durable,
            ..SimDisk::default()
        }
    }

    /// Bytes stored durably.
    pub fn durable_len(&self) -> usize {
        self.durable.len()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use raft_proto_core::{Entry, EntryKind, HardState};

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
