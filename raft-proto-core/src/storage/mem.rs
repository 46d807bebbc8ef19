//! An in-memory [`Storage`]: the reference behaviour of the contract, for tests and examples.
//! Nothing survives the process; "durable" means "stored in this value". A batch is checked
//! whole before any of it is applied, so a refused batch changes nothing.

use bytes::Bytes;

use super::Storage;
use crate::config::RecoveredState;
use crate::io::PersistWrite;
use crate::types::{Entry, HardState, Index, SnapshotMeta};

/// Why the in-memory storage refused an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemStorageError {
    /// A write's entries do not continue the log.
    #[error("entry {found} does not continue the log (expected index {expected})")]
    NotContiguous {
        /// The index that would continue the log.
        expected: Index,
        /// The index found.
        found: Index,
    },
    /// A truncation would cut into the compacted prefix or the prefix the snapshot covers.
    #[error(
        "cannot truncate at {index}: entries up to {compacted} are compacted or in the snapshot"
    )]
    TruncateCompacted {
        /// The requested cut.
        index: Index,
        /// The last index the log cannot lose: the last compacted one or the snapshot's last.
        compacted: Index,
    },
    /// Compaction past what the latest snapshot covers.
    #[error("cannot compact through {index}: the latest snapshot covers up to {covered}")]
    CompactBeyondSnapshot {
        /// The requested compaction point.
        index: Index,
        /// The snapshot's last index (0 without a snapshot).
        covered: Index,
    },
    /// A snapshot chunk arrived with no snapshot begun.
    #[error("no snapshot is being received")]
    NoSnapshotInProgress,
}

/// Log, hard state and snapshot held in memory.
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    hard_state: HardState,
    snapshot: Option<(SnapshotMeta, Bytes)>,
    /// Index of the last compacted entry (entries start right after it).
    offset: Index,
    entries: Vec<Entry>,
    incoming: Option<(SnapshotMeta, Vec<u8>)>,
}

impl MemStorage {
    /// An empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    fn last(&self) -> Index {
        self.offset + self.entries.len() as Index
    }

    /// Checks a batch against the contract without changing anything: it only follows where
    /// the log would end after each write.
    pub fn check_writes(&self, writes: &[PersistWrite]) -> Result<(), MemStorageError> {
        // The snapshot's prefix is committed: a cut there is a caller's bug, even before
        // compaction has dropped those entries.
        let floor = self
            .offset
            .max(self.snapshot.as_ref().map_or(0, |s| s.0.last_index));
        let mut last = self.last();
        for w in writes {
            if let Some(cut) = w.truncate_from {
                if cut <= floor {
                    return Err(MemStorageError::TruncateCompacted {
                        index: cut,
                        compacted: floor,
                    });
                }
                last = last.min(cut - 1);
            }
            for e in &w.entries {
                if e.index != last + 1 {
                    return Err(MemStorageError::NotContiguous {
                        expected: last + 1,
                        found: e.index,
                    });
                }
                last += 1;
            }
        }
        Ok(())
    }

    /// Checks that a compaction through `through` keeps to the contract; changes nothing.
    pub fn check_compact(&self, through: Index) -> Result<(), MemStorageError> {
        let covered = self.snapshot.as_ref().map_or(0, |s| s.0.last_index);
        if through > covered {
            return Err(MemStorageError::CompactBeyondSnapshot {
                index: through,
                covered,
            });
        }
        Ok(())
    }

    /// Whether a snapshot is being received (begun, not finished).
    pub fn receiving_snapshot(&self) -> bool {
        self.incoming.is_some()
    }

    /// Applies one write that [`MemStorage::check_writes`] accepted.
    fn apply(&mut self, w: &PersistWrite) {
        if let Some(cut) = w.truncate_from {
            self.entries.truncate((cut - self.offset - 1) as usize);
        }
        self.entries.extend(w.entries.iter().cloned());
        if let Some(hs) = w.hard_state {
            self.hard_state = hs;
        }
    }
}

impl Storage for MemStorage {
    type Error = MemStorageError;

    fn recover(&mut self) -> Result<RecoveredState, Self::Error> {
        self.incoming = None;
        Ok(RecoveredState {
            hard_state: self.hard_state,
            snapshot: self.snapshot.as_ref().map(|s| s.0.clone()),
            entries: self.entries.clone(),
        })
    }

    fn write(&mut self, writes: &[PersistWrite]) -> Result<(), Self::Error> {
        // All or nothing: check the whole batch first, then apply it in place.
        self.check_writes(writes)?;
        for w in writes {
            self.apply(w);
        }
        Ok(())
    }

    fn entries(&self, lo: Index, hi: Index) -> Result<Vec<Entry>, Self::Error> {
        let lo = lo.max(self.offset + 1);
        let hi = hi.min(self.last() + 1);
        if lo >= hi {
            return Ok(Vec::new());
        }
        let a = (lo - self.offset - 1) as usize;
        let b = (hi - self.offset - 1) as usize;
        Ok(self.entries[a..b].to_vec())
    }

    fn first_index(&self) -> Result<Index, Self::Error> {
        Ok(self.offset + 1)
    }

    fn last_index(&self) -> Result<Index, Self::Error> {
        Ok(self.last())
    }

    fn hard_state(&self) -> Result<HardState, Self::Error> {
        Ok(self.hard_state)
    }

    fn compact(&mut self, through: Index) -> Result<(), Self::Error> {
        self.check_compact(through)?;
        if through <= self.offset {
            return Ok(());
        }
        let n = ((through - self.offset) as usize).min(self.entries.len());
        self.entries.drain(..n);
        self.offset += n as Index;
        Ok(())
    }

    fn begin_snapshot(&mut self, meta: SnapshotMeta) -> Result<(), Self::Error> {
        self.incoming = Some((meta, Vec::new()));
        Ok(())
    }

    fn write_snapshot_chunk(&mut self, chunk: &[u8]) -> Result<(), Self::Error> {
        match &mut self.incoming {
            Some((_, data)) => {
                data.extend_from_slice(chunk);
                Ok(())
            }
            None => Err(MemStorageError::NoSnapshotInProgress),
        }
    }

    fn finish_snapshot(&mut self) -> Result<(), Self::Error> {
        let (meta, data) = self
            .incoming
            .take()
            .ok_or(MemStorageError::NoSnapshotInProgress)?;
        let continues = self
            .entries
            .iter()
            .find(|e| e.index == meta.last_index)
            .is_some_and(|e| e.term == meta.last_term);
        if !continues {
            self.entries.clear();
            self.offset = meta.last_index;
        }
        self.snapshot = Some((meta, Bytes::from(data)));
        Ok(())
    }

    fn snapshot_meta(&self) -> Result<Option<SnapshotMeta>, Self::Error> {
        Ok(self.snapshot.as_ref().map(|s| s.0.clone()))
    }

    fn snapshot_len(&self) -> Result<u64, Self::Error> {
        Ok(self.snapshot.as_ref().map_or(0, |s| s.1.len() as u64))
    }

    fn read_snapshot_chunk(&self, offset: u64, max_len: usize) -> Result<Bytes, Self::Error> {
        let Some((_, data)) = &self.snapshot else {
            return Ok(Bytes::new());
        };
        let start = (offset.min(data.len() as u64)) as usize;
        let end = start.saturating_add(max_len).min(data.len());
        Ok(data.slice(start..end))
    }
}
