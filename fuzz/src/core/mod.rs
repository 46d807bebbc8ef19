//! `core_step`: a 3-node in-memory cluster of `RaftNode`s driven by fuzz-chosen operations.
//!
//! The network is a queue that may deliver any message (reordering), drop or duplicate one, and
//! cut one node off. Each node has a disk modelled on `raft-proto-core/tests/common`: the
//! durable hard state, log, latest snapshot and the snapshot being received, plus the durable
//! steps requested but not yet durable (writes and snapshot installs, ordered by one sequence
//! number); a crash loses the latter and rebuilds the node (and its state machine, from the
//! disk's snapshot) from the former. Each node's state machine is the list of entries it
//! applied; its snapshot is that list, encoded ([`encode_state`]). The nodes snapshot every 4
//! entries, keep 1 entry below a snapshot, send 16-byte chunks with 48 bytes in flight and keep
//! no applied entries in memory, so snapshots, compaction, reads of evicted entries and
//! InstallSnapshot transfers happen within a few operations. Whatever the core asks the driver
//! to do in the background (take a snapshot, read entries or a snapshot chunk) waits until an
//! operation carries it out (taking, failing, serving reads in any order). Operations can also
//! inject a message with arbitrary fields from an arbitrary sender.
//!
//! Checked after every operation:
//! - at most one leader per term (over the whole run), and a new leader holds every entry
//!   committed in an earlier term (leader completeness, checked as `raft-sim`'s invariants do);
//! - committed entries never change: the first node to commit index `i` fixes the ground truth
//!   for `i`, and every node's entries up to its commit index must match it (the entry itself
//!   while it is in memory, its term once it left memory, nothing below the node's log floor,
//!   which a snapshot covers; the floor's own term must match);
//! - every applied entry is the next index (after a restore: the snapshot's index + 1), is
//!   committed, is durable on the node's disk, and matches the ground truth;
//! - a restored state machine (from an installed snapshot or from the disk after a crash) is
//!   exactly the ground-truth prefix up to the snapshot's index;
//! - per node: the committed prefix never changes and the commit index never goes back
//!   (across crashes too, the durable commit being what counts);
//! - the core keeps its contract with the driver (on any input, forged or not): durable-step
//!   sequence numbers increase by one; writes continue the stored log; a snapshot is asked for
//!   at exactly the last index handed out for applying; compaction stays within the stored
//!   snapshot; snapshot chunks are stored in order; an install follows the chunks it installs;
//!   a restore is of the durable snapshot and moves the state machine forward.
//!
//! Raft does not tolerate forged messages from members (a forged vote or AppendEntries from a
//! member legitimately breaks cluster-wide safety). So once a message is injected *as if from a
//! member*, the run is "tainted": cluster-wide checks stop, while the no-panic property and the
//! per-node checks (which must hold on any input) continue. Leader messages (appends,
//! heartbeats, snapshot chunks, `TimeoutNow`) are heard from non-members too, since a leader may
//! lead a configuration the receiver has not seen yet: injecting one taints as well. Other
//! injections from non-members (ids 0, 4, 99, u64::MAX), and anything from id 0, never taint:
//! the core must ignore them.
//!
//! Operations also change the membership (a learner 4 that never answers, promoted in vain, or
//! removed; a member removed) and transfer leadership.

mod checks;
mod cluster;
mod disk;
mod ops;
mod outputs;
mod state;
#[cfg(test)]
mod tests;

use raft_proto_core::NodeId;

use crate::{Input, Output};

pub use checks::Stats;
pub use cluster::Cluster;
pub use ops::Op;
pub use state::{decode_state, encode_state};

/// Node ids of the cluster.
pub const IDS: [NodeId; 3] = [1, 2, 3];
/// Senders an injected message can claim (members and non-members).
pub const SENDERS: [NodeId; 7] = [0, 1, 2, 3, 4, 99, u64::MAX];
/// Ids an injected snapshot's membership can name (bit `k` of the voter mask is `MEMBER_IDS[k]`).
pub const MEMBER_IDS: [NodeId; 5] = [1, 2, 3, 4, 99];
/// Most operations read from one input.
pub const MAX_OPS: usize = 1000;
/// Most messages queued in the network; further sends are dropped (a lossy network).
pub const MAX_QUEUED: usize = 400;
/// Most reads (entries, snapshot chunks) waiting per node; further ones are dropped.
pub const MAX_READS: usize = 64;

/// Runs the operations `data` encodes on a fresh cluster, checking after each; returns it.
pub fn run_cluster(data: &[u8]) -> Cluster {
    let mut inp = Input::new(data);
    let mut cl = Cluster::new();
    let mut ops = 0;
    while !inp.is_empty() && ops < MAX_OPS {
        let op = Op::read(&mut inp);
        cl.apply(op);
        ops += 1;
    }
    cl
}

/// Runs the operations `data` encodes on a fresh cluster, checking after each.
pub fn run(data: &[u8]) {
    run_cluster(data);
}

/// Encodes a sequence of operations (for the corpus generator).
pub fn encode(ops: &[Op]) -> Vec<u8> {
    let mut out = Output::default();
    for op in ops {
        op.write(&mut out);
    }
    out.0
}
