//! The replicated state machine a node drives, and how it is snapshotted and restored.

use bytes::Bytes;
use raft_proto_core::Index;

/// A deterministic state machine fed committed log entries in index order.
///
/// Every replica applies the same commands in the same order, so `apply` must depend only on
/// the state and the command: no clock, no randomness, no I/O whose result can differ between
/// replicas. The driver calls it from one task on the node's runtime, in order; a slow `apply`
/// delays the answers to clients and takes runtime time from the rest of the node (with a
/// single worker thread, from the consensus loop too), so keep it quick and never block on I/O.
///
/// Client retries: the client library resends a command whose outcome it could not learn
/// (leader change, lost connection). A state machine that must apply each request once keeps
/// a per-client sequence in its commands and answers repeats from a session table, as
/// [`crate::kv::KvStateMachine`] does.
///
/// Snapshots: the node asks for one by its snapshot policy (or `raftkv snapshot`). The state
/// machine hands out a point-in-time copy ([`StateMachine::snapshot`], which must be quick:
/// applying stops meanwhile), and the node's storage thread writes that copy out chunk by
/// chunk while applying goes on. A node that falls behind a compacted log, or restarts,
/// rebuilds its state with [`StateMachine::restore`] from a stored snapshot, streamed.
pub trait StateMachine: Send + 'static {
    /// Applies the command committed at `index` and returns the answer for the client that
    /// proposed it (sent back only to that client, and only by the node it proposed to).
    fn apply(&mut self, index: Index, command: &Bytes) -> Bytes;

    /// An entry without a command (a new leader's first entry) was committed at `index`.
    fn apply_noop(&mut self, index: Index) {
        let _ = index;
    }

    /// A point-in-time copy of the state, covering every entry applied so far, to be written
    /// out as a snapshot while applying goes on. Called between two `apply` calls; keep it
    /// quick (copy-on-write structures or cheap clones of reference-counted data).
    fn snapshot(&mut self) -> Box<dyn SnapshotSource>;

    /// Replaces the state with a snapshot's, read from `data` (the bytes one of this state
    /// machine's [`SnapshotSource`]s wrote, in any number of reads). On an error the state
    /// must be left as it was. Runs on a blocking thread.
    fn restore(&mut self, data: &mut dyn std::io::Read) -> Result<(), RestoreError>;
}

/// A state machine's snapshot being written out. Runs on the storage thread, between log
/// writes, one chunk at a time: a large state never needs one buffer.
pub trait SnapshotSource: Send + 'static {
    /// Appends the next part of the snapshot to `out`, about `max` bytes (at least something,
    /// unless the snapshot is complete). Returns false once everything has been written.
    fn write_chunk(&mut self, out: &mut Vec<u8>, max: usize) -> Result<bool, std::io::Error>;
}

/// Why a snapshot could not be restored: it is damaged, of another format, or unreadable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RestoreError(pub String);
