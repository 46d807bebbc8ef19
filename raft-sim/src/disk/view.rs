//! The durable state the disk's records add up to, kept materialized so that reads never
//! parse the log: each record is applied as it becomes durable, and recovery rebuilds the view
//! by replaying the log from the start.
//!
//! The rules are the storage contract's, as the core's reference `MemStorage` applies them; a
//! record that breaks them is refused, and the caller decides what that means (a refused call
//! through the trait, a damaged disk when the record is already on it).

use bytes::Bytes;
use raft_proto_core::{Entry, HardState, Index, PersistWrite, RecoveredState, SnapshotMeta};

use super::record::Record;
use super::DiskError;

/// Log, hard state, snapshot and snapshot transfer, as the durable records leave them.
#[derive(Debug, Clone, Default)]
pub(super) struct View {
    hard_state: HardState,
    snapshot: Option<(SnapshotMeta, Bytes)>,
    /// Index of the last compacted entry (the log starts right after it).
    offset: Index,
    entries: Vec<Entry>,
    /// The snapshot being received: its metadata and the data so far.
    incoming: Option<(SnapshotMeta, Vec<u8>)>,
}

impl View {
    pub(super) fn hard_state(&self) -> HardState {
        self.hard_state
    }

    pub(super) fn first_index(&self) -> Index {
        self.offset + 1
    }

    pub(super) fn last_index(&self) -> Index {
        self.offset + self.entries.len() as Index
    }

    pub(super) fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.snapshot.as_ref().map(|s| s.0)
    }

    pub(super) fn receiving(&self) -> bool {
        self.incoming.is_some()
    }

    /// The stored entries with indexes in `lo..hi`.
    pub(super) fn entries(&self, lo: Index, hi: Index) -> Vec<Entry> {
        let lo = lo.max(self.first_index());
        let hi = hi.min(self.last_index() + 1);
        if lo >= hi {
            return Vec::new();
        }
        let a = (lo - self.offset - 1) as usize;
        let b = (hi - self.offset - 1) as usize;
        self.entries[a..b].to_vec()
    }

    /// Up to `max_len` bytes of the latest snapshot's data from `offset`.
    pub(super) fn snapshot_chunk(&self, offset: u64, max_len: usize) -> Bytes {
        let Some((_, data)) = &self.snapshot else {
            return Bytes::new();
        };
        let start = offset.min(data.len() as u64) as usize;
        let end = start.saturating_add(max_len).min(data.len());
        data.slice(start..end)
    }

    /// What a node restarts from: the snapshot's prefix is left out of the entries.
    pub(super) fn recovered(&self) -> RecoveredState {
        let covered = self.snapshot_meta().map_or(0, |m| m.last_index);
        let skip = covered
            .saturating_sub(self.offset)
            .min(self.entries.len() as Index);
        RecoveredState {
            hard_state: self.hard_state,
            snapshot: self.snapshot_meta(),
            entries: self.entries[skip as usize..].to_vec(),
        }
    }

    /// Forgets an unfinished snapshot transfer, as a restart does.
    pub(super) fn abandon_transfer(&mut self) {
        self.incoming = None;
    }

    /// Checks that `writes`, applied in order, keep to the contract; changes nothing.
    pub(super) fn check_writes(&self, writes: &[PersistWrite]) -> Result<(), DiskError> {
        // Writes never move the log's start, so the floor is the same for all of them.
        let floor = self
            .offset
            .max(self.snapshot_meta().map_or(0, |m| m.last_index));
        let mut last = self.last_index();
        for w in writes {
            if let Some(cut) = w.truncate_from {
                // The snapshot's prefix is committed: a cut there is a caller's bug, even
                // before compaction has dropped those entries.
                if cut <= floor {
                    return Err(DiskError::TruncateCompacted {
                        index: cut,
                        compacted: floor,
                    });
                }
                last = last.min(cut - 1);
            }
            for e in &w.entries {
                let expected = last + 1;
                if e.index != expected {
                    return Err(DiskError::NotContiguous {
                        expected,
                        found: e.index,
                    });
                }
                last = expected;
            }
        }
        Ok(())
    }

    /// Checks that a compaction through `through` keeps to the contract.
    pub(super) fn check_compact(&self, through: Index) -> Result<(), DiskError> {
        let covered = self.snapshot_meta().map_or(0, |m| m.last_index);
        if through > covered {
            return Err(DiskError::CompactBeyondSnapshot {
                index: through,
                covered,
            });
        }
        Ok(())
    }

    /// Applies one record, or refuses it (changing nothing) if it breaks the contract.
    pub(super) fn apply(&mut self, rec: Record) -> Result<(), DiskError> {
        match rec {
            Record::Write(w) => {
                self.check_writes(std::slice::from_ref(&w))?;
                if let Some(cut) = w.truncate_from {
                    let keep = usize::try_from(cut - self.offset - 1).unwrap_or(usize::MAX);
                    self.entries.truncate(keep);
                }
                self.entries.extend(w.entries);
                if let Some(hs) = w.hard_state {
                    self.hard_state = hs;
                }
            }
            Record::Compact(through) => {
                self.check_compact(through)?;
                if through > self.offset {
                    let n = ((through - self.offset) as usize).min(self.entries.len());
                    self.entries.drain(..n);
                    self.offset += n as Index;
                }
            }
            Record::SnapshotBegin(meta) => self.incoming = Some((meta, Vec::new())),
            Record::SnapshotChunk(chunk) => match &mut self.incoming {
                Some((_, data)) => data.extend_from_slice(&chunk),
                None => return Err(DiskError::NoSnapshotInProgress),
            },
            Record::SnapshotFinish => {
                let (meta, data) = self
                    .incoming
                    .take()
                    .ok_or(DiskError::NoSnapshotInProgress)?;
                // The log is kept if it holds the snapshot's last entry; otherwise it does not
                // continue the snapshot and goes.
                let continues = meta.last_index > self.offset
                    && meta.last_index <= self.last_index()
                    && self.entries[(meta.last_index - self.offset - 1) as usize].term
                        == meta.last_term;
                if !continues {
                    self.entries.clear();
                    self.offset = meta.last_index;
                }
                self.snapshot = Some((meta, Bytes::from(data)));
            }
        }
        Ok(())
    }
}
