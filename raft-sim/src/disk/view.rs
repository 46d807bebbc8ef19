//! The durable state the disk's records add up to, kept materialized so that reads never
//! parse the log: each record is applied as it becomes durable, and recovery rebuilds the view
//! by replaying the log from the start.
//!
//! The state is the core's reference `MemStorage`, so the contract's rules are written once: a
//! record that breaks them is refused (changing nothing), and the caller decides what that
//! means (a refused call through the trait, a damaged disk when the record is already on it).

use bytes::Bytes;
use raft_proto_core::storage::{MemStorage, Storage};
use raft_proto_core::{Entry, HardState, Index, PersistWrite, RecoveredState, SnapshotMeta};

use super::record::Record;
use super::DiskError;

/// Log, hard state, snapshot and snapshot transfer, as the durable records leave them.
#[derive(Debug, Clone, Default)]
pub(super) struct View(MemStorage);

impl View {
    pub(super) fn hard_state(&self) -> Result<HardState, DiskError> {
        Ok(self.0.hard_state()?)
    }

    pub(super) fn first_index(&self) -> Result<Index, DiskError> {
        Ok(self.0.first_index()?)
    }

    pub(super) fn last_index(&self) -> Result<Index, DiskError> {
        Ok(self.0.last_index()?)
    }

    pub(super) fn snapshot_meta(&self) -> Result<Option<SnapshotMeta>, DiskError> {
        Ok(self.0.snapshot_meta()?)
    }

    pub(super) fn receiving(&self) -> bool {
        self.0.receiving_snapshot()
    }

    /// The stored entries with indexes in `lo..hi`.
    pub(super) fn entries(&self, lo: Index, hi: Index) -> Result<Vec<Entry>, DiskError> {
        Ok(self.0.entries(lo, hi)?)
    }

    /// Up to `max_len` bytes of the latest snapshot's data from `offset`.
    pub(super) fn snapshot_chunk(&self, offset: u64, max_len: usize) -> Result<Bytes, DiskError> {
        Ok(self.0.read_snapshot_chunk(offset, max_len)?)
    }

    /// Size of the latest snapshot's data.
    pub(super) fn snapshot_len(&self) -> Result<u64, DiskError> {
        Ok(self.0.snapshot_len()?)
    }

    /// What a node restarts from (the snapshot's prefix left out); abandons a transfer left
    /// unfinished.
    pub(super) fn recover(&mut self) -> Result<RecoveredState, DiskError> {
        Ok(self.0.recover()?)
    }

    /// Checks that `writes`, applied in order, keep to the contract; changes nothing.
    pub(super) fn check_writes(&self, writes: &[PersistWrite]) -> Result<(), DiskError> {
        Ok(self.0.check_writes(writes)?)
    }

    /// Checks that a compaction through `through` keeps to the contract.
    pub(super) fn check_compact(&self, through: Index) -> Result<(), DiskError> {
        Ok(self.0.check_compact(through)?)
    }

    /// Applies one record, or refuses it (changing nothing) if it breaks the contract.
    pub(super) fn apply(&mut self, rec: Record) -> Result<(), DiskError> {
        match rec {
            Record::Write(w) => self.0.write(std::slice::from_ref(&w))?,
            Record::Compact(through) => self.0.compact(through)?,
            Record::SnapshotBegin(meta) => self.0.begin_snapshot(meta)?,
            Record::SnapshotChunk(chunk) => self.0.write_snapshot_chunk(&chunk)?,
            Record::SnapshotFinish => self.0.finish_snapshot()?,
        }
        Ok(())
    }
}
