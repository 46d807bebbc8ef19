//! The replicated state machine a node drives.

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
pub trait StateMachine: Send + 'static {
    /// Applies the command committed at `index` and returns the answer for the client that
    /// proposed it (sent back only to that client, and only by the node it proposed to).
    fn apply(&mut self, index: Index, command: &Bytes) -> Bytes;

    /// An entry without a command (a new leader's first entry) was committed at `index`.
    fn apply_noop(&mut self, index: Index) {
        let _ = index;
    }
}
