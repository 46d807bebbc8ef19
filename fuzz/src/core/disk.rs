//! A node's simulated disk, modelled on `raft-proto-core/tests/common`: what it holds durably,
//! and the durable steps the node asked for that are not durable yet.

use std::collections::VecDeque;

use bytes::Bytes;
use raft_proto_core::{
    Entry, HardState, Index, NodeId, PersistWrite, RecoveredState, SnapshotMeta,
};

/// A durable step the node asked for and that is not durable yet.
#[derive(Debug, Clone)]
pub(super) enum Step {
    Write(PersistWrite),
    Install { seq: u64, meta: SnapshotMeta },
}

impl Step {
    pub(super) fn seq(&self) -> u64 {
        match self {
            Step::Write(w) => w.seq,
            Step::Install { seq, .. } => *seq,
        }
    }
}

/// What a node's disk holds durably, plus steps requested but not yet durable.
#[derive(Debug, Default, Clone)]
pub(super) struct Disk {
    pub(super) hard_state: HardState,
    /// Last index the stored log no longer holds (compacted or covered by the snapshot).
    pub(super) offset: Index,
    /// The stored entries after `offset`, consecutive.
    pub(super) entries: Vec<Entry>,
    pub(super) snapshot: Option<(SnapshotMeta, Bytes)>,
    /// A snapshot being received: its metadata and the bytes so far (not durable).
    pub(super) incoming: Option<(SnapshotMeta, Vec<u8>)>,
    pub(super) pending: VecDeque<Step>,
}

impl Disk {
    pub(super) fn last_index(&self) -> Index {
        self.entries.last().map_or(self.offset, |e| e.index)
    }

    pub(super) fn entry(&self, index: Index) -> Option<&Entry> {
        let first = self.entries.first()?.index;
        self.entries
            .get(usize::try_from(index.checked_sub(first)?).ok()?)
    }

    pub(super) fn snapshot_index(&self) -> Index {
        self.snapshot.as_ref().map_or(0, |s| s.0.last_index)
    }

    pub(super) fn apply(&mut self, id: NodeId, step: Step) {
        match step {
            Step::Write(w) => {
                if let Some(t) = w.truncate_from {
                    assert!(
                        t > self.offset && t <= self.last_index() + 1,
                        "node {id}: write {} cuts the stored log at {t}, outside {}..={}",
                        w.seq,
                        self.offset + 1,
                        self.last_index() + 1
                    );
                    self.entries.retain(|e| e.index < t);
                }
                for e in &w.entries {
                    assert_eq!(
                        e.index,
                        self.last_index() + 1,
                        "node {id}: write {} does not continue the stored log",
                        w.seq
                    );
                    self.entries.push(e.clone());
                }
                if let Some(hs) = w.hard_state {
                    self.hard_state = hs;
                }
            }
            Step::Install { meta, seq } => {
                let (incoming, data) = self.incoming.take().unwrap_or_else(|| {
                    panic!("node {id}: install {seq} of a snapshot not received")
                });
                assert_eq!(
                    incoming, meta,
                    "node {id}: install {seq} is not of the snapshot received"
                );
                let continues = self
                    .entry(meta.last_index)
                    .is_some_and(|e| e.term == meta.last_term);
                if continues {
                    self.entries.retain(|e| e.index > meta.last_index);
                } else {
                    self.entries.clear();
                }
                self.offset = meta.last_index;
                self.snapshot = Some((meta, Bytes::from(data)));
            }
        }
    }

    /// What a node restarts from: the hard state, the snapshot and every entry kept (a tail
    /// the snapshot covers included, as storage backends return it).
    pub(super) fn recovered(&self) -> RecoveredState {
        RecoveredState {
            hard_state: self.hard_state,
            snapshot: self.snapshot.as_ref().map(|s| s.0.clone()),
            entries: self.entries.clone(),
        }
    }
}
