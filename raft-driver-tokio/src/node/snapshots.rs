//! The driver's record of this node's snapshots: the latest one's size and age, and the
//! clients waiting for a snapshot they asked for.

use std::time::Instant;

use raft_proto_core::Index;
use tokio::sync::oneshot;

use crate::protocol::ClientResponse;

/// What the consensus loop knows of snapshots beyond what the core tracks.
pub(crate) struct SnapshotInfo {
    /// The latest stored snapshot's last index and size.
    pub index: Index,
    pub bytes: u64,
    /// When it was stored (the start, for one recovered from disk).
    pub at: Instant,
    /// A snapshot of this node's state being taken.
    pub taking: Option<Index>,
    /// Clients waiting for a snapshot they asked for.
    pub waiters: Vec<oneshot::Sender<ClientResponse>>,
    pub taken: u64,
    pub sent: u64,
}

impl SnapshotInfo {
    /// The snapshot the node started with (index 0: none).
    pub fn recovered(index: Index, bytes: u64) -> Self {
        SnapshotInfo {
            index,
            bytes,
            at: Instant::now(),
            taking: None,
            waiters: Vec::new(),
            taken: 0,
            sent: 0,
        }
    }

    /// A snapshot at `index` of `bytes` is stored: taken here (`own`) or received.
    pub fn stored(&mut self, index: Index, bytes: u64, own: bool) {
        if index >= self.index {
            self.index = index;
            self.bytes = bytes;
            self.at = Instant::now();
        }
        if own {
            self.taken += 1;
            self.taking = None;
        }
    }

    pub fn wait(&mut self, reply: oneshot::Sender<ClientResponse>) {
        self.waiters.push(reply);
    }

    pub fn answer_waiters(&mut self, answer: ClientResponse) {
        for w in self.waiters.drain(..) {
            let _ = w.send(answer.clone());
        }
    }
}
