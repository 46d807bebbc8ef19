//! The storage contract: what a durable backend keeps for one node, independent of how.
//!
//! A backend keeps the log (entries after the latest snapshot), the hard state, and the latest
//! snapshot (metadata and data). The core never calls it: the driver carries the core's
//! [`PersistWrite`]s to [`Storage::write`] (many at once: group commit) and reports them with
//! `Input::Persisted`, and feeds [`Storage::recover`]'s result to `RaftNode::new` on start.
//!
//! Methods block until done and a backend is `Send`, so an async driver runs it on a dedicated
//! thread or with `spawn_blocking` and never blocks its event loop on a sync.

use bytes::Bytes;

use crate::config::RecoveredState;
use crate::io::PersistWrite;
use crate::types::{Entry, HardState, Index, SnapshotMeta};

/// A durable home for one node's log, hard state and snapshot.
///
/// Calls that break the contract are refused with an error and change nothing: entries that do
/// not continue the log (gaps, overlaps without a truncation, out of order), a truncation into
/// the compacted prefix or into what the snapshot covers, compaction past the snapshot, and
/// snapshot chunks or a finish without a begun snapshot. The conformance suite
/// (`storage::conformance`, feature `conformance`) checks all of this for any backend.
pub trait Storage: Send + 'static {
    /// The backend's error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Everything the node restarts from: the last durable hard state, the latest snapshot's
    /// metadata, and the log entries kept, from the first index on. Entries the snapshot covers
    /// but compaction has not dropped yet are included (a follower a little behind catches up
    /// from them); they continue into the snapshot's last entry.
    fn recover(&mut self) -> Result<RecoveredState, Self::Error>;

    /// Makes `writes` durable, in order, as one atomic unit (all or nothing after a crash),
    /// and returns once they are. Each write cuts the log at `truncate_from` (if set), appends
    /// its entries and stores its hard state (if set).
    fn write(&mut self, writes: &[PersistWrite]) -> Result<(), Self::Error>;

    /// The stored entries with indexes in `lo..hi` (fewer if the log ends earlier).
    fn entries(&self, lo: Index, hi: Index) -> Result<Vec<Entry>, Self::Error>;

    /// Like [`Storage::entries`], stopping once the payloads read exceed `max_bytes` (the
    /// first entry is always returned). What a leader reads back for a lagging follower
    /// (`Output::FetchEntries`). The default reads in growing batches through
    /// [`Storage::entries`]; a backend that can stop a scan early should override it.
    fn entries_within(
        &self,
        lo: Index,
        hi: Index,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, Self::Error> {
        let mut out = Vec::new();
        let mut size = 0u64;
        let mut at = lo;
        let mut step = 16u64;
        while at < hi {
            let batch = self.entries(at, at.saturating_add(step).min(hi))?;
            if batch.is_empty() {
                break;
            }
            for e in batch {
                size = size.saturating_add(e.data.len() as u64);
                if !out.is_empty() && size > max_bytes {
                    return Ok(out);
                }
                at = e.index + 1;
                out.push(e);
            }
            step = (step * 2).min(4096);
        }
        Ok(out)
    }

    /// Index of the first entry kept (one past the snapshot when the log is empty).
    fn first_index(&self) -> Result<Index, Self::Error>;

    /// Index of the last entry kept (the snapshot's last index when the log is empty).
    fn last_index(&self) -> Result<Index, Self::Error>;

    /// The last durable hard state.
    fn hard_state(&self) -> Result<HardState, Self::Error>;

    /// Drops every entry up to and including `through`, durably. Entries above it stay.
    /// `through` may not exceed the latest snapshot's last index: what the log forgets, the
    /// snapshot must cover.
    fn compact(&mut self, through: Index) -> Result<(), Self::Error>;

    /// Starts receiving a new snapshot. It replaces the current one only at
    /// [`Storage::finish_snapshot`]; a crash before that leaves the current one in place.
    fn begin_snapshot(&mut self, meta: SnapshotMeta) -> Result<(), Self::Error>;

    /// Appends a chunk of the snapshot being received.
    fn write_snapshot_chunk(&mut self, chunk: &[u8]) -> Result<(), Self::Error>;

    /// Makes the received snapshot the latest, durably. If the log holds the snapshot's last
    /// entry (same index and term), the entries are kept, to be dropped later by
    /// [`Storage::compact`] (a leader may keep a tail for slow followers); otherwise the whole
    /// log is discarded, since it does not continue the snapshot.
    fn finish_snapshot(&mut self) -> Result<(), Self::Error>;

    /// Metadata of the latest snapshot, if any.
    fn snapshot_meta(&self) -> Result<Option<SnapshotMeta>, Self::Error>;

    /// Up to `max_len` bytes of the latest snapshot's data from `offset`; empty at the end.
    fn read_snapshot_chunk(&self, offset: u64, max_len: usize) -> Result<Bytes, Self::Error>;

    /// Size in bytes of the latest snapshot's data (0 without a snapshot).
    fn snapshot_len(&self) -> Result<u64, Self::Error>;
}

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod mem;

pub use mem::{MemStorage, MemStorageError};
