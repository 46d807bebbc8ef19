//! The safety checks run after every operation (see the module documentation of
//! [`crate::core`]), and the statistics of a run.

use std::collections::BTreeMap;

use bytes::Bytes;
use raft_proto_core::{Entry, EntryKind, Index, NodeId, RaftNode, Role, SnapshotMeta, Term};

use super::cluster::Cluster;
use super::state::decode_state;

/// What happened during a run, for tests and for writing seeds.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Snapshots taken (`SnapshotTaken` reported), per node.
    pub taken: BTreeMap<NodeId, usize>,
    /// Snapshot chunks sent (`InstallSnapshot` messages), per sender.
    pub chunks_sent: BTreeMap<NodeId, usize>,
    /// `Resend` answers sent, per node.
    pub resends: BTreeMap<NodeId, usize>,
    /// Snapshots installed (`Output::InstallSnapshot`), per node.
    pub installs: BTreeMap<NodeId, usize>,
    /// State machines restored from an installed snapshot (`RestoreSnapshot`), per node.
    pub restores: BTreeMap<NodeId, usize>,
    /// `Compact` outputs, per node.
    pub compactions: BTreeMap<NodeId, usize>,
    /// `FetchEntries` outputs, per node.
    pub fetches: BTreeMap<NodeId, usize>,
    /// Crashes, per node.
    pub crashes: BTreeMap<NodeId, usize>,
    /// `Event::InvalidInput` reported, by reason.
    pub invalid: BTreeMap<&'static str, usize>,
}

pub(super) fn bump(m: &mut BTreeMap<NodeId, usize>, id: NodeId) {
    *m.entry(id).or_default() += 1;
}

pub(super) type Key = (Term, EntryKind, Bytes);

pub(super) fn key(e: &Entry) -> Key {
    (e.term, e.kind, e.data.clone())
}

/// Whether `node`'s log holds `truth` at index `i` as far as it can tell (as
/// `raft-sim/src/invariants.rs` does): the very entry while it is in memory, the same term once
/// it left memory, anything at or below the log floor (a snapshot covers it).
fn holds(node: &RaftNode, i: Index, truth: &Key) -> bool {
    if i <= node.log_floor().index {
        return true;
    }
    match node.entry(i) {
        Some(e) => key(e) == *truth,
        None => node.log_term(i) == Some(truth.0),
    }
}

impl Cluster {
    /// Checks a state machine restored from a snapshot covering up to `index` against the
    /// ground truth, and returns its entries.
    pub(super) fn check_restored(
        &mut self,
        id: NodeId,
        meta: &SnapshotMeta,
        data: &Bytes,
    ) -> Vec<Entry> {
        let decoded = decode_state(data);
        if self.tainted {
            // A forged snapshot may hold anything.
            return decoded.unwrap_or_default();
        }
        let entries = decoded.unwrap_or_else(|| {
            panic!(
                "node {id}: the snapshot at {} is not one taken by a node",
                meta.last_index
            )
        });
        assert_eq!(
            entries.len() as u64,
            meta.last_index,
            "node {id}: the snapshot at {} holds {} entries",
            meta.last_index,
            entries.len()
        );
        for (k, e) in entries.iter().enumerate() {
            assert_eq!(
                e.index,
                k as u64 + 1,
                "node {id}: snapshot entries out of order"
            );
            let truth = self.committed.get(&e.index).unwrap_or_else(|| {
                panic!(
                    "node {id}: the snapshot at {} holds entry {}, never committed",
                    meta.last_index, e.index
                )
            });
            assert_eq!(
                *truth,
                key(e),
                "node {id}: the snapshot's entry {} differs from the ground truth",
                e.index
            );
        }
        if meta.last_index > 0 {
            assert_eq!(
                entries.last().map(|e| e.term),
                Some(meta.last_term),
                "node {id}: the snapshot's last term is not its last entry's"
            );
        }
        entries
    }

    /// The safety checks (see the module documentation).
    pub fn check(&mut self) {
        for (&id, node) in &self.nodes {
            let commit = node.commit_index();
            let last = node.last_log_id().index;
            assert!(
                commit <= last,
                "node {id}: commit {commit} beyond last log index {last}"
            );
            if node.role() == Role::Leader && !self.tainted {
                let term = node.term();
                let prev = *self.leaders.entry(term).or_insert(id);
                assert_eq!(prev, id, "two leaders in term {term}: {prev} and {id}");
                if self.leader_checked.insert(id, term) != Some(term) {
                    // Leader completeness: it holds every entry committed in an earlier term.
                    for (&i, truth) in &self.committed {
                        if self.committed_in[&i] < term {
                            assert!(
                                holds(node, i, truth),
                                "node {id} leads term {term} without committed entry {i} (term {})",
                                truth.0
                            );
                        }
                    }
                }
            }
            let floor = node.log_floor();
            assert!(
                floor.index <= commit,
                "node {id}: log floor {} above commit {commit}",
                floor.index
            );
            let local = self.local.entry(id).or_default();
            if floor.index > 0 {
                // The snapshot boundary is a committed entry: its term is known.
                if let Some(seen) = local.get(&floor.index) {
                    assert_eq!(
                        seen.0, floor.term,
                        "node {id}: its log floor {}:{} is not its committed entry",
                        floor.term, floor.index
                    );
                }
                if !self.tainted {
                    if let Some(truth) = self.committed.get(&floor.index) {
                        assert_eq!(
                            truth.0, floor.term,
                            "node {id}: its log floor {}:{} differs from the ground truth",
                            floor.term, floor.index
                        );
                    }
                }
            }
            let checked = self.checked.get_mut(&id).expect("checked");
            // Entries compared before and still in memory (not applied yet, or not durable)
            // must not have changed.
            let mut i = (*checked).min(commit);
            while i > floor.index {
                let Some(e) = node.entry(i) else { break };
                if let Some(seen) = local.get(&i) {
                    assert_eq!(*seen, key(e), "node {id}: its committed entry {i} changed");
                }
                i -= 1;
            }
            // Newly committed entries: in memory (only applied ones leave it), except those a
            // received snapshot covers (at or below the floor).
            for i in (*checked + 1).max(floor.index + 1)..=commit {
                match node.entry(i) {
                    Some(e) => {
                        assert_eq!(e.index, i, "node {id}: entry at {i} has index {}", e.index);
                        let k = key(e);
                        let seen = local.entry(i).or_insert_with(|| k.clone());
                        assert_eq!(*seen, k, "node {id}: its committed entry {i} changed");
                        if !self.tainted {
                            self.committed_in.entry(i).or_insert(node.term());
                            let truth = self.committed.entry(i).or_insert_with(|| k.clone());
                            assert_eq!(
                                *truth, k,
                                "node {id}: committed entry {i} differs from the first committed value"
                            );
                        }
                    }
                    None => {
                        let term = node.log_term(i);
                        let seen = local.get(&i).map(|k| k.0);
                        let truth = self.committed.get(&i).map(|k| k.0);
                        if let Some(t) = seen {
                            assert_eq!(term, Some(t), "node {id}: its committed entry {i} changed");
                        }
                        if !self.tainted {
                            assert!(
                                truth.is_some() || seen.is_some(),
                                "node {id}: committed entry {i} is neither in memory nor known"
                            );
                            if let Some(t) = truth {
                                assert_eq!(
                                    term,
                                    Some(t),
                                    "node {id}: committed entry {i} differs from the first committed value"
                                );
                            }
                        }
                    }
                }
            }
            *checked = (*checked).max(commit);
        }
    }
}
