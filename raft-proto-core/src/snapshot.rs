//! Snapshots: taking them by policy, compacting the log after them, and sending them to
//! followers whose next entry was compacted away.

use crate::io::Output;
use crate::node::RaftNode;
use crate::types::Entry;

impl RaftNode {
    /// Whether applying must wait (a snapshot is being restored).
    pub(crate) fn apply_blocked(&self) -> bool {
        false
    }

    /// Entries were handed out for applying.
    pub(crate) fn on_handed_out(&mut self, _entries: &[Entry]) {}

    /// The follower at `i` needs entries the log compacted away.
    pub(crate) fn start_snapshot(&mut self, _i: usize, _out: &mut Vec<Output>) {}

    /// Moves the snapshot transfer to the follower at `i` along.
    pub(crate) fn continue_snapshot(&mut self, _i: usize, _out: &mut Vec<Output>) {}
}
