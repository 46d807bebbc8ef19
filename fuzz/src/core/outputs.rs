//! How the cluster carries out what a node's core asks of its driver: sends, durable steps
//! (and making them durable), entries to apply, snapshots to take, chunks to store, restores,
//! and the background reads (`FetchEntries`, `ReadSnapshot`), served from the disk.

use raft_proto_core::message::{InstallSnapshotResponse, SnapshotAck};
use raft_proto_core::{
    Entry, EntryKind, Event, Input as RaftInput, Membership, Message, NodeId, Output as RaftOutput,
};

use super::checks::{bump, key};
use super::cluster::Cluster;
use super::disk::Step;
use super::state::{encode_state, StateMachine};
use super::{IDS, MAX_QUEUED, MAX_READS};

impl Cluster {
    fn durable_step(&mut self, id: NodeId, step: Step) {
        let last = self.last_seq.get_mut(&id).expect("seq");
        assert_eq!(
            step.seq(),
            *last + 1,
            "node {id}: durable-step sequence numbers must increase by one"
        );
        *last = step.seq();
        self.disks
            .get_mut(&id)
            .expect("disk")
            .pending
            .push_back(step);
    }

    pub(super) fn output(&mut self, id: NodeId, o: RaftOutput) {
        match o {
            RaftOutput::Send { to, msg } => {
                match &msg {
                    Message::InstallSnapshot(_) => bump(&mut self.stats.chunks_sent, id),
                    Message::InstallSnapshotResponse(InstallSnapshotResponse {
                        result: SnapshotAck::Resend { .. },
                        ..
                    }) => bump(&mut self.stats.resends, id),
                    _ => {}
                }
                if self.net.len() < MAX_QUEUED && !self.cut(id, to) {
                    self.net.push_back((id, to, msg));
                }
            }
            RaftOutput::Persist(w) => self.durable_step(id, Step::Write(w)),
            RaftOutput::InstallSnapshot { seq, meta } => {
                bump(&mut self.stats.installs, id);
                self.durable_step(id, Step::Install { seq, meta });
            }
            RaftOutput::Apply { entries } => self.on_apply(id, entries),
            RaftOutput::TakeSnapshot { meta } => {
                let sm = &self.sms[&id];
                assert_eq!(
                    sm.applied, meta.last_index,
                    "node {id}: a snapshot is asked for at exactly what was handed out"
                );
                if !self.tainted {
                    // The membership of the last committed configuration entry at or below the
                    // snapshot's index (the initial one before any).
                    let expected = self
                        .committed
                        .range(..=meta.last_index)
                        .rev()
                        .find(|(_, k)| k.1 == EntryKind::Config)
                        .and_then(|(_, k)| raft_proto_core::codec::decode_membership(&k.2).ok())
                        .unwrap_or_else(|| Membership::with_voters(IDS));
                    assert_eq!(
                        *meta.membership, expected,
                        "node {id}: the snapshot's membership"
                    );
                    if let Some(truth) = self.committed.get(&meta.last_index) {
                        assert_eq!(
                            truth.0, meta.last_term,
                            "node {id}: snapshot at {} with the wrong term",
                            meta.last_index
                        );
                    }
                }
                let prev = self.snapshot_requests.insert(id, meta);
                assert!(
                    prev.is_none(),
                    "node {id}: a snapshot asked for while another one is being taken"
                );
            }
            RaftOutput::Compact { through } => {
                bump(&mut self.stats.compactions, id);
                let disk = self.disks.get_mut(&id).expect("disk");
                assert!(
                    through <= disk.snapshot_index(),
                    "node {id} compacts through {through}, past its stored snapshot ({})",
                    disk.snapshot_index()
                );
                disk.entries.retain(|e| e.index > through);
                disk.offset = disk.offset.max(through);
            }
            RaftOutput::SnapshotChunk { meta, offset, data } => {
                let disk = self.disks.get_mut(&id).expect("disk");
                if offset == 0 {
                    disk.incoming = Some((meta.clone(), Vec::new()));
                }
                let (m, buf) = disk
                    .incoming
                    .as_mut()
                    .unwrap_or_else(|| panic!("node {id}: a chunk at {offset} of no snapshot"));
                assert_eq!(*m, meta, "node {id}: chunks of one snapshot");
                assert_eq!(buf.len() as u64, offset, "node {id}: chunks come in order");
                buf.extend_from_slice(&data);
            }
            RaftOutput::RestoreSnapshot { meta } => {
                bump(&mut self.stats.restores, id);
                let disk = &self.disks[&id];
                let (m, data) = disk
                    .snapshot
                    .clone()
                    .unwrap_or_else(|| panic!("node {id}: restore without a stored snapshot"));
                assert_eq!(
                    m, meta,
                    "node {id}: restore from a snapshot that is not the durable one"
                );
                let before = self.sms[&id].applied;
                assert!(
                    meta.last_index > before,
                    "node {id}: restore at {} after applying {before}",
                    meta.last_index
                );
                let entries = self.check_restored(id, &meta, &data);
                self.sms.insert(
                    id,
                    StateMachine {
                        applied: meta.last_index,
                        entries,
                    },
                );
            }
            RaftOutput::Event(Event::InvalidInput { reason }) => {
                *self.stats.invalid.entry(reason).or_default() += 1;
            }
            read @ (RaftOutput::FetchEntries { .. } | RaftOutput::ReadSnapshot { .. }) => {
                if matches!(read, RaftOutput::FetchEntries { .. }) {
                    bump(&mut self.stats.fetches, id);
                }
                let reads = self.reads.entry(id).or_default();
                if reads.len() < MAX_READS {
                    reads.push(read);
                }
            }
            _ => {}
        }
    }

    fn on_apply(&mut self, id: NodeId, entries: Vec<Entry>) {
        let commit = self.nodes[&id].commit_index();
        let term = self.nodes[&id].term();
        let disk = &self.disks[&id];
        let sm = self.sms.get_mut(&id).expect("state machine");
        for e in entries {
            assert_eq!(e.index, sm.applied + 1, "node {id}: applied out of order");
            assert!(
                e.index <= commit,
                "node {id}: applied {} above commit {commit}",
                e.index
            );
            assert_eq!(
                disk.entry(e.index),
                Some(&e),
                "node {id}: applied entry {} is not durable",
                e.index
            );
            let k = key(&e);
            if let Some(seen) = self.local.get(&id).and_then(|l| l.get(&e.index)) {
                assert_eq!(
                    *seen, k,
                    "node {id}: applied entry {} is not the committed one",
                    e.index
                );
            }
            if !self.tainted {
                self.committed_in.entry(e.index).or_insert(term);
                let truth = self.committed.entry(e.index).or_insert_with(|| k.clone());
                assert_eq!(
                    *truth, k,
                    "node {id}: applied entry {} differs from ground truth",
                    e.index
                );
            }
            sm.applied = e.index;
            sm.entries.push(e);
        }
    }

    pub(super) fn persist_through(&mut self, id: NodeId, seq: u64) {
        let disk = self.disks.get_mut(&id).expect("disk");
        while disk.pending.front().is_some_and(|w| w.seq() <= seq) {
            let w = disk.pending.pop_front().expect("front");
            disk.apply(id, w);
        }
        self.step(id, RaftInput::Persisted { seq });
    }

    pub(super) fn persist_all(&mut self, id: NodeId) {
        if let Some(seq) = self.disks[&id].pending.back().map(Step::seq) {
            self.persist_through(id, seq);
        }
    }

    pub(super) fn finish_snapshot(&mut self, id: NodeId, taken: bool) {
        let Some(meta) = self.snapshot_requests.remove(&id) else {
            return;
        };
        let index = meta.last_index;
        let disk = self.disks.get_mut(&id).expect("disk");
        // Beginning a snapshot abandons an unfinished incoming one.
        disk.incoming = None;
        if taken {
            let state: Vec<Entry> = self.sms[&id]
                .entries
                .iter()
                .filter(|e| e.index <= index)
                .cloned()
                .collect();
            let disk = self.disks.get_mut(&id).expect("disk");
            disk.snapshot = Some((meta, encode_state(&state)));
            bump(&mut self.stats.taken, id);
            self.step(id, RaftInput::SnapshotTaken { index });
        } else {
            self.step(id, RaftInput::SnapshotFailed { index });
        }
    }

    /// Carries out node `id`'s read `k` from its disk as it is now.
    pub(super) fn serve_read(&mut self, id: NodeId, k: usize) {
        let Some(reads) = self.reads.get_mut(&id) else {
            return;
        };
        if k >= reads.len() {
            return;
        }
        let read = reads.remove(k);
        let disk = &self.disks[&id];
        let input = match read {
            RaftOutput::FetchEntries {
                to,
                lo,
                hi,
                max_bytes,
            } => {
                let mut size = 0u64;
                let mut entries = Vec::new();
                for e in disk
                    .entries
                    .iter()
                    .filter(|e| e.index >= lo && e.index < hi)
                {
                    size += e.data.len() as u64;
                    if !entries.is_empty() && size > max_bytes {
                        break;
                    }
                    entries.push(e.clone());
                }
                RaftInput::EntriesFetched { to, lo, entries }
            }
            RaftOutput::ReadSnapshot {
                to,
                offset,
                max_len,
                ..
            } => {
                let Some((meta, data)) = disk.snapshot.as_ref() else {
                    // Only a forged vote can make a node lead before its installed snapshot
                    // is durable (it votes for itself only after its writes are).
                    assert!(
                        self.tainted,
                        "node {id}: asked to read a snapshot its disk does not hold"
                    );
                    return;
                };
                let len = data.len() as u64;
                let start = offset.min(len);
                let end = start.saturating_add(max_len).min(len);
                RaftInput::SnapshotRead {
                    to,
                    snapshot: meta.last_id(),
                    offset,
                    data: data.slice(start as usize..end as usize),
                    total: len,
                }
            }
            _ => return,
        };
        self.step(id, input);
    }

    pub(super) fn serve_reads(&mut self, id: NodeId) {
        // Reads asked for while serving wait for the next operation.
        let n = self.pending_reads(id);
        for _ in 0..n {
            self.serve_read(id, 0);
        }
    }
}
