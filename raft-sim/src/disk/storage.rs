//! The core's [`Storage`] trait on the simulated disk.
//!
//! A call that must be durable when it returns (`write`, `compact`, `finish_snapshot`) appends
//! its records and syncs, which also makes everything written before it durable. The steps of
//! a snapshot transfer before its finish are written without a sync: a crash keeps or loses
//! them like any unsynced record, and recovery abandons a transfer left unfinished. Reads
//! answer from the view of the durable state. Every call checks the contract against that
//! view first, after flushing earlier writes, and a refused call writes nothing.

use bytes::Bytes;
use raft_proto_core::storage::{MemStorageError, Storage};
use raft_proto_core::{Entry, HardState, Index, PersistWrite, RecoveredState, SnapshotMeta};

use super::record::Record;
use super::{DiskError, SimDisk};

impl SimDisk {
    /// Fails if a durable record broke the contract: the view is not the disk's state then.
    fn healthy(&self) -> Result<(), DiskError> {
        match &self.damage {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Makes what was written durable, so that the view is the state to check a call against.
    fn settle(&mut self) -> Result<(), DiskError> {
        self.sync();
        self.healthy()
    }
}

impl Storage for SimDisk {
    type Error = DiskError;

    fn recover(&mut self) -> Result<RecoveredState, Self::Error> {
        SimDisk::recover(self)
    }

    fn write(&mut self, writes: &[PersistWrite]) -> Result<(), Self::Error> {
        self.settle()?;
        // The whole batch is checked before any of it is written: all or nothing.
        self.view.check_writes(writes)?;
        for w in writes {
            self.append(Record::Write(w.clone()), Some(w.seq));
        }
        self.settle()
    }

    fn entries(&self, lo: Index, hi: Index) -> Result<Vec<Entry>, Self::Error> {
        self.healthy()?;
        self.view.entries(lo, hi)
    }

    fn first_index(&self) -> Result<Index, Self::Error> {
        self.healthy()?;
        self.view.first_index()
    }

    fn last_index(&self) -> Result<Index, Self::Error> {
        self.healthy()?;
        self.view.last_index()
    }

    fn hard_state(&self) -> Result<HardState, Self::Error> {
        self.healthy()?;
        self.view.hard_state()
    }

    fn compact(&mut self, through: Index) -> Result<(), Self::Error> {
        self.settle()?;
        self.view.check_compact(through)?;
        if through >= self.view.first_index()? {
            self.append(Record::Compact(through), None);
        }
        self.settle()
    }

    fn begin_snapshot(&mut self, meta: SnapshotMeta) -> Result<(), Self::Error> {
        self.healthy()?;
        self.append(Record::SnapshotBegin(meta), None);
        self.receiving = true;
        Ok(())
    }

    fn write_snapshot_chunk(&mut self, chunk: &[u8]) -> Result<(), Self::Error> {
        self.healthy()?;
        if !self.receiving {
            return Err(DiskError::Refused(MemStorageError::NoSnapshotInProgress));
        }
        self.append(Record::SnapshotChunk(Bytes::copy_from_slice(chunk)), None);
        Ok(())
    }

    fn finish_snapshot(&mut self) -> Result<(), Self::Error> {
        self.healthy()?;
        if !self.receiving {
            return Err(DiskError::Refused(MemStorageError::NoSnapshotInProgress));
        }
        self.append(Record::SnapshotFinish, None);
        self.receiving = false;
        self.settle()
    }

    fn snapshot_meta(&self) -> Result<Option<SnapshotMeta>, Self::Error> {
        self.healthy()?;
        self.view.snapshot_meta()
    }

    fn read_snapshot_chunk(&self, offset: u64, max_len: usize) -> Result<Bytes, Self::Error> {
        self.healthy()?;
        self.view.snapshot_chunk(offset, max_len)
    }

    fn snapshot_len(&self) -> Result<u64, Self::Error> {
        self.healthy()?;
        self.view.snapshot_len()
    }
}

#[cfg(test)]
mod tests {
    use raft_proto_core::EntryKind;

    use super::*;
    use crate::rng::SimRng;

    fn append(seq: u64, first: Index, n: u64) -> PersistWrite {
        PersistWrite {
            seq,
            truncate_from: None,
            entries: (first..first + n)
                .map(|index| Entry {
                    term: 1,
                    index,
                    kind: EntryKind::Normal,
                    data: Bytes::from(vec![index as u8; 3]),
                })
                .collect(),
            hard_state: Some(HardState {
                term: 1,
                vote: 0,
                commit: 0,
            }),
        }
    }

    #[test]
    fn a_durable_write_that_breaks_the_contract_damages_the_disk() {
        let mut d = SimDisk::default();
        d.write(&append(1, 1, 2));
        d.write(&append(2, 5, 1));
        assert_eq!(d.sync(), Some(2));
        let offset = d.durable_len() - Record::Write(append(2, 5, 1)).encode().len();
        let damage = DiskError::InvalidRecord {
            offset,
            cause: Box::new(DiskError::Refused(MemStorageError::NotContiguous {
                expected: 3,
                found: 5,
            })),
        };
        assert_eq!(d.last_index(), Err(damage.clone()));
        assert_eq!(Storage::write(&mut d, &[]), Err(damage.clone()));
        assert_eq!(d.recover(), Err(damage));
    }

    #[test]
    fn a_crash_loses_or_tears_an_unfinished_transfer_and_keeps_the_old_snapshot() {
        let mut d = SimDisk::default();
        Storage::write(&mut d, &[append(1, 1, 4)]).unwrap();
        let old = SnapshotMeta {
            last_index: 2,
            last_term: 1,
            membership: raft_proto_core::Membership::with_voters([1, 2, 3]).into(),
        };
        d.begin_snapshot(old.clone()).unwrap();
        d.write_snapshot_chunk(b"old").unwrap();
        d.finish_snapshot().unwrap();
        assert!(!d.has_unsynced());
        let synced = d.durable_len();
        let mut rng = SimRng::new(5);
        let mut torn = false;
        for _ in 0..40 {
            let mut c = d.clone();
            c.begin_snapshot(SnapshotMeta {
                last_index: 4,
                last_term: 1,
                membership: raft_proto_core::Membership::with_voters([1, 2, 3]).into(),
            })
            .unwrap();
            c.write_snapshot_chunk(&[7; 100]).unwrap();
            c.write(&append(2, 5, 1));
            assert_eq!(c.last_unsynced_seq(), Some(2));
            let report = c.crash(&mut rng, true);
            torn |= report.torn;
            let rec = c.recover().unwrap();
            assert_eq!(rec.snapshot, Some(old.clone()));
            assert_eq!(c.read_snapshot_chunk(0, 10).unwrap(), &b"old"[..]);
            assert_eq!(
                c.finish_snapshot(),
                Err(DiskError::Refused(MemStorageError::NoSnapshotInProgress))
            );
            assert_eq!(c.durable_len() > synced, report.survived > 0);
            let last = if report.survived == 3 { 5 } else { 4 };
            assert_eq!(c.last_index(), Ok(last), "{report:?}");
        }
        assert!(torn);
    }
}
