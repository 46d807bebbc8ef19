//! Snapshots: taking them by policy or on request, compacting the log after them, sending
//! them to followers whose next entry was compacted away, and installing them on followers.
//!
//! A transfer (leader side, in `progress.rs`) reads the latest stored snapshot chunk by chunk
//! through the driver and sends each chunk as an `InstallSnapshot`, with at most
//! `max_snapshot_inflight_bytes` unacknowledged. The follower stores chunks in order, asks
//! for a resend from the offset it expects when a chunk is missing, and on the last chunk
//! installs the snapshot durably, restores its state machine from it, and only then answers
//! with the snapshot's index as an append acknowledgement.

use crate::config::Config;
use crate::durability::Held;
use crate::io::{Event, Input, Output};
use crate::message::{
    AppendEntriesResponse, AppendResult, InstallSnapshot, InstallSnapshotResponse, Message,
    SnapshotAck,
};
use crate::node::RaftNode;
use crate::types::{Index, NodeId, Role, SnapshotMeta, Term};

/// Ticks the policy waits after a failed snapshot before it asks again.
const RETRY_TICKS: u32 = 100;

/// A snapshot being received from the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Receiving {
    term: Term,
    leader: NodeId,
    meta: SnapshotMeta,
    size: u64,
    /// Bytes stored so far: the next chunk must start here.
    next: u64,
}

/// Where a node stands with snapshots. Owned by the node; moved only by the methods below.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshots {
    /// The latest snapshot in storage (recovered, taken or installed).
    latest: Option<SnapshotMeta>,
    /// A snapshot of this node's state machine being taken.
    taking: Option<SnapshotMeta>,
    /// Whether that one was asked for (`Input::TriggerSnapshot`): a failure is retried then.
    taking_requested: bool,
    /// `bytes_since` when it was asked for.
    bytes_at_request: u64,
    receiving: Option<Receiving>,
    /// A snapshot was installed and its restore is not handed out yet: applying waits.
    restore_pending: bool,
    /// Once applied reaches `.2`, tell leader `.1` of term `.0` that the snapshot is in.
    install_ack: Option<(Term, NodeId, Index)>,
    /// Entry bytes handed out for applying since the last snapshot was asked for.
    bytes_since: u64,
    /// Ticks before the policy may ask again after a failure.
    backoff: u32,
    /// A snapshot was asked for (`Input::TriggerSnapshot`) and not taken yet.
    requested: bool,
    /// Where the log should be compacted to once applied gets there.
    compact_target: Index,
}

/// What a status report shows of snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotStatus {
    /// The latest stored snapshot.
    pub latest: Option<SnapshotMeta>,
    /// The index of a snapshot of this node's state being taken.
    pub taking: Option<Index>,
    /// A snapshot being received: (its last index, bytes received, total bytes).
    pub receiving: Option<(Index, u64, u64)>,
}

impl Snapshots {
    pub(crate) fn new(latest: Option<SnapshotMeta>) -> Self {
        Snapshots {
            latest,
            ..Snapshots::default()
        }
    }

    pub(crate) fn status(&self) -> SnapshotStatus {
        SnapshotStatus {
            latest: self.latest.clone(),
            taking: self.taking.as_ref().map(|m| m.last_index),
            receiving: self
                .receiving
                .as_ref()
                .map(|r| (r.meta.last_index, r.next, r.size)),
        }
    }

    /// Whether the policy asks for a snapshot now, `applying` entries having been handed out:
    /// once a threshold is reached `factor` times over.
    fn due(&self, cfg: &Config, applying: Index, factor: u64) -> bool {
        let since = self.latest.as_ref().map_or(0, |m| m.last_index);
        if applying <= since {
            return false;
        }
        let over = |limit: Option<u64>, amount: u64| {
            limit.is_some_and(|n| amount >= n.saturating_mul(factor))
        };
        over(cfg.snapshot_after_entries, applying - since)
            || over(cfg.snapshot_after_bytes, self.bytes_since)
    }

    /// Whether a snapshot can be asked for now (none taken, received or restored meanwhile).
    fn idle(&self) -> bool {
        self.taking.is_none() && self.receiving.is_none() && !self.restore_pending
    }
}

impl RaftNode {
    /// Whether applying must wait (a received snapshot is not restored yet).
    pub(crate) fn apply_blocked(&self) -> bool {
        self.snaps.restore_pending
    }

    /// `bytes` of entries were handed out for applying.
    pub(crate) fn on_handed_out(&mut self, bytes: u64) {
        self.snaps.bytes_since += bytes;
    }

    pub(crate) fn snapshot_tick(&mut self) {
        self.snaps.backoff = self.snaps.backoff.saturating_sub(1);
    }

    /// Asks the driver for a snapshot when the policy says so (or `forced`), at the last index
    /// handed out for applying. Called after the step's `Apply` outputs, so the driver's state
    /// machine reaches exactly that index before taking it.
    pub(crate) fn maybe_take_snapshot(&mut self, out: &mut Vec<Output>) {
        let forced = self.snaps.requested;
        if !self.snaps.idle() || self.snaps.backoff > 0 {
            return;
        }
        let index = self.log.applying();
        let since = self.snaps.latest.as_ref().map_or(0, |m| m.last_index);
        if index <= since {
            // Nothing applied since the latest snapshot: it already is the one asked for.
            self.snaps.requested = false;
            return;
        }
        if !(forced || self.snaps.due(&self.cfg, index, 1)) {
            return;
        }
        // A leader sending its snapshot to a follower does not replace it (storage keeps one:
        // the transfer would start over, and under a steady load never finish), unless the
        // log since it grew to four times the policy's threshold.
        let sending = self.role == Role::Leader
            && self
                .tracker
                .progress()
                .iter()
                .any(|p| p.snapshot().is_some());
        if !forced && sending && !self.snaps.due(&self.cfg, index, 4) {
            return;
        }
        let Some(term) = self.log.term(index) else {
            return;
        };
        let membership = self.tracker.membership_at(index).clone();
        if membership.is_empty() {
            // A node that joined and has not reached the entry that records the configuration:
            // a snapshot must say who the members are, so it waits.
            return;
        }
        let meta = SnapshotMeta {
            last_index: index,
            last_term: term,
            membership,
        };
        self.snaps.taking = Some(meta.clone());
        self.snaps.taking_requested = forced;
        self.snaps.bytes_at_request = self.snaps.bytes_since;
        self.snaps.requested = false;
        // An unfinished transfer in storage is abandoned by this snapshot's begin.
        self.snaps.receiving = None;
        out.push(Output::TakeSnapshot { meta });
    }

    /// `Input::TriggerSnapshot`: take one as soon as possible (a request overrides the wait
    /// after a failure).
    pub(crate) fn request_snapshot(&mut self) {
        self.snaps.requested = true;
        self.snaps.backoff = 0;
    }

    pub(crate) fn on_snapshot_taken(&mut self, index: Index, out: &mut Vec<Output>) {
        match self.snaps.taking.take() {
            Some(meta) if meta.last_index == index => {
                if self
                    .snaps
                    .latest
                    .as_ref()
                    .is_none_or(|l| l.last_index < index)
                {
                    self.snaps.latest = Some(meta);
                }
                // What was handed out since the request counts towards the next snapshot.
                self.snaps.bytes_since = self
                    .snaps
                    .bytes_since
                    .saturating_sub(self.snaps.bytes_at_request);
                let target = index.saturating_sub(self.cfg.compaction_keep_entries);
                self.snaps.compact_target = self.snaps.compact_target.max(target);
                self.maybe_compact(out);
                // Transfers of an older snapshot switch to this one.
                if self.role == Role::Leader {
                    for i in 0..self.tracker.len() {
                        if self
                            .tracker
                            .pr(i)
                            .snapshot()
                            .is_some_and(|s| s.snap.index < index)
                        {
                            self.start_snapshot(i, out);
                        }
                    }
                }
            }
            other => {
                self.snaps.taking = other;
                out.push(Output::Event(Event::InvalidInput {
                    reason: "SnapshotTaken for a snapshot that was not asked for",
                }));
            }
        }
    }

    pub(crate) fn on_snapshot_failed(&mut self, index: Index, out: &mut Vec<Output>) {
        match self.snaps.taking.take() {
            Some(meta) if meta.last_index == index => {
                // The policy tries again after a while (its threshold is still passed); a
                // request is taken up again after the same wait, unless another one came in
                // meanwhile: that one is honoured at once.
                if self.snaps.requested {
                    self.snaps.backoff = 0;
                } else {
                    self.snaps.backoff = RETRY_TICKS;
                    self.snaps.requested = self.snaps.taking_requested;
                }
            }
            other => {
                self.snaps.taking = other;
                out.push(Output::Event(Event::InvalidInput {
                    reason: "SnapshotFailed for a snapshot that was not asked for",
                }));
            }
        }
    }

    /// Compacts the log towards the target set by the latest snapshot, as far as applied allows.
    pub(crate) fn maybe_compact(&mut self, out: &mut Vec<Output>) {
        let latest = self.snaps.latest.as_ref().map_or(0, |m| m.last_index);
        let through = self
            .snaps
            .compact_target
            .min(self.log.applied())
            .min(latest);
        if through > self.log.floor().index && self.log.compact_to(through) {
            self.tracker.compact_to(through);
            out.push(Output::Compact { through });
        }
    }

    // ----- leader: sending -----

    /// The follower at `i` needs entries the log compacted away: send it the latest snapshot.
    pub(crate) fn start_snapshot(&mut self, i: usize, out: &mut Vec<Output>) {
        let Some(snap) = self.snaps.latest.as_ref().map(SnapshotMeta::last_id) else {
            // A compacted log always has a snapshot; without one nothing can be sent.
            out.push(Output::Event(Event::InvalidInput {
                reason: "a follower needs compacted entries but no snapshot is known",
            }));
            return;
        };
        if self
            .tracker
            .pr(i)
            .snapshot()
            .is_some_and(|s| s.snap == snap)
        {
            self.continue_snapshot(i, out);
            return;
        }
        self.tracker.pr_mut(i).become_snapshot(snap);
        self.continue_snapshot(i, out);
    }

    /// Asks for the next chunk of the transfer to the follower at `i`, if the window allows.
    pub(crate) fn continue_snapshot(&mut self, i: usize, out: &mut Vec<Output>) {
        let max_inflight = self.cfg.max_snapshot_inflight_bytes;
        if let Some((snapshot, offset)) = self.tracker.pr_mut(i).snapshot_next_read(max_inflight) {
            out.push(Output::ReadSnapshot {
                to: self.tracker.pr(i).id(),
                snapshot,
                offset,
                max_len: self.chunk_bytes(),
            });
        }
    }

    fn chunk_bytes(&self) -> u64 {
        self.cfg
            .snapshot_chunk_bytes
            .min(self.cfg.max_message_bytes)
    }

    pub(crate) fn on_snapshot_read(&mut self, input: Input, out: &mut Vec<Output>) {
        let Input::SnapshotRead {
            to,
            snapshot,
            offset,
            data,
            total,
        } = input
        else {
            return;
        };
        if self.role != Role::Leader {
            return;
        }
        let Some(i) = self.tracker.index_of(to) else {
            return;
        };
        let len = data.len() as u64;
        let consistent = len <= self.chunk_bytes()
            && offset.checked_add(len).is_some_and(|end| end <= total)
            && (len > 0 || offset == total);
        if !consistent {
            self.tracker.pr_mut(i).snapshot_read_dropped();
            out.push(Output::Event(Event::InvalidInput {
                reason: "SnapshotRead returned a chunk that does not fit the snapshot's size",
            }));
            return;
        }
        if !self
            .tracker
            .pr_mut(i)
            .snapshot_chunk_read(snapshot, offset, len, total)
        {
            // A stale read, or storage now holds another snapshot: go on with the latest.
            let latest = self.snaps.latest.as_ref().map(SnapshotMeta::last_id);
            match self.tracker.pr(i).snapshot().map(|s| s.snap) {
                Some(current) if Some(current) != latest => self.start_snapshot(i, out),
                Some(_) => self.continue_snapshot(i, out),
                None => {}
            }
            return;
        }
        let Some(meta) = self
            .snaps
            .latest
            .clone()
            .filter(|m| m.last_id() == snapshot)
        else {
            // Storage holds a snapshot the core does not know as its latest (it cannot be
            // newer than what the core recorded): start over with the latest known.
            self.start_snapshot(i, out);
            return;
        };
        let msg = InstallSnapshot {
            term: self.term,
            meta,
            size: total,
            offset,
            data,
        };
        out.push(Output::Send {
            to,
            msg: Message::InstallSnapshot(Box::new(msg)),
        });
        self.continue_snapshot(i, out);
    }

    pub(crate) fn handle_install_snapshot_response(
        &mut self,
        from: NodeId,
        r: InstallSnapshotResponse,
        out: &mut Vec<Output>,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let Some(i) = self.tracker.index_of(from) else {
            return;
        };
        self.tracker.pr_mut(i).mark_active();
        match r.result {
            SnapshotAck::Received { next_offset } => self
                .tracker
                .pr_mut(i)
                .snapshot_received(r.snapshot, next_offset),
            SnapshotAck::Resend { from } => {
                self.tracker.pr_mut(i).snapshot_resend(r.snapshot, from)
            }
        }
        self.continue_snapshot(i, out);
    }

    // ----- follower: receiving -----

    pub(crate) fn handle_install_snapshot(
        &mut self,
        from: NodeId,
        m: InstallSnapshot,
        out: &mut Vec<Output>,
    ) {
        if !self.follow_current_leader(from, out) {
            return;
        }
        if self.snaps.taking.is_some()
            || self.snaps.restore_pending
            || self.snaps.install_ack.is_some()
        {
            // Busy with a snapshot of its own, or still restoring the last one installed (a new
            // install would replace the stored snapshot the restore reads): the leader resends
            // later.
            return;
        }
        let len = m.data.len() as u64;
        let snap = m.meta.last_id();
        let well_formed = snap.index > 0
            && snap.term > 0
            && snap.term <= m.term
            && snap.index <= crate::config::MAX_INDEX
            && m.offset.checked_add(len).is_some_and(|end| end <= m.size)
            && !m.meta.membership.is_empty();
        if !well_formed {
            out.push(Output::Event(Event::InvalidInput {
                reason: "snapshot chunk with an impossible offset, size or last entry",
            }));
            return;
        }
        if m.size > self.cfg.max_snapshot_bytes {
            out.push(Output::Event(Event::InvalidInput {
                reason: "snapshot larger than max_snapshot_bytes",
            }));
            return;
        }
        let term = self.term;
        let committed = self.log.committed();
        if snap.index <= committed {
            // Older than what this node knows committed: nothing to install. Tell the leader
            // where the log stands so that appends take over. (A transfer in progress of a
            // newer snapshot is left alone: this chunk may just be late.)
            if self
                .snaps
                .receiving
                .as_ref()
                .is_some_and(|r| r.meta.last_index <= committed)
            {
                self.snaps.receiving = None;
            }
            let ack = AppendResult::Success {
                match_index: committed,
            };
            let reply = Message::AppendEntriesResponse(AppendEntriesResponse { term, result: ack });
            self.send_when_durable(from, reply, out);
            return;
        }
        let answer = |result| {
            Message::InstallSnapshotResponse(InstallSnapshotResponse {
                term,
                snapshot: snap,
                result,
            })
        };
        let same_transfer = self.snaps.receiving.as_ref().is_some_and(|r| {
            r.term == term && r.leader == from && r.meta == m.meta && r.size == m.size
        });
        if same_transfer {
            let next = self.snaps.receiving.as_ref().map_or(0, |r| r.next);
            if m.offset != next {
                self.send(from, answer(SnapshotAck::Resend { from: next }), out);
                return;
            }
        } else if m.offset != 0 {
            self.send(from, answer(SnapshotAck::Resend { from: 0 }), out);
            return;
        } else if self
            .snaps
            .receiving
            .as_ref()
            .is_some_and(|r| r.term == term && r.leader == from && r.meta.last_index >= snap.index)
        {
            // The start of an older snapshot from the same leader, arriving late: the transfer
            // of the newer one goes on.
            return;
        } else {
            self.snaps.receiving = Some(Receiving {
                term,
                leader: from,
                meta: m.meta.clone(),
                size: m.size,
                next: 0,
            });
        }
        let next = m.offset + len;
        if let Some(r) = self.snaps.receiving.as_mut() {
            r.next = next;
        }
        out.push(Output::SnapshotChunk {
            meta: m.meta.clone(),
            offset: m.offset,
            data: m.data,
        });
        if next < m.size {
            self.send(
                from,
                answer(SnapshotAck::Received { next_offset: next }),
                out,
            );
            return;
        }
        self.install(from, m.meta, out);
    }

    /// The last chunk is stored: install the snapshot durably, then restore the state machine
    /// from it, then acknowledge.
    fn install(&mut self, leader: NodeId, meta: SnapshotMeta, out: &mut Vec<Output>) {
        self.snaps.receiving = None;
        let snap = meta.last_id();
        // Writes asked for before go first, with the commit index as it stood (storage does not
        // hold the snapshot yet); the install gets the next sequence number.
        if let Some(w) = self.dur.take_open(self.log.committed()) {
            out.push(Output::Persist(w));
        }
        let kept = self.log.install_snapshot(snap);
        if self
            .tracker
            .install(snap.index, meta.membership.clone(), kept)
        {
            self.announce_membership(out);
        }
        let seq = self.dur.issue_install(snap, kept);
        out.push(Output::InstallSnapshot {
            seq,
            meta: meta.clone(),
        });
        self.snaps.latest = Some(meta.clone());
        self.snaps.bytes_since = 0;
        self.snaps.compact_target = 0;
        self.snaps.restore_pending = true;
        self.snaps.install_ack = Some((self.term, leader, snap.index));
        if let Some(Held::Restore(meta)) = self.dur.hold(Held::Restore(meta)) {
            self.release_restore(meta, out);
        }
    }

    /// The installed snapshot is durable: the state machine may be restored from it.
    pub(crate) fn release_restore(&mut self, meta: SnapshotMeta, out: &mut Vec<Output>) {
        self.snaps.restore_pending = false;
        out.push(Output::RestoreSnapshot { meta });
    }

    /// After `Applied`: acknowledge an installed snapshot once the state machine holds it.
    pub(crate) fn on_applied_snapshot_ack(&mut self, out: &mut Vec<Output>) {
        let Some((term, leader, index)) = self.snaps.install_ack else {
            return;
        };
        if self.log.applied() < index {
            return;
        }
        self.snaps.install_ack = None;
        if term == self.term && self.leader == leader && self.role == Role::Follower {
            let result = AppendResult::Success { match_index: index };
            let reply = Message::AppendEntriesResponse(AppendEntriesResponse { term, result });
            self.send_when_durable(leader, reply, out);
        }
    }

    /// A new term or leader: a transfer in progress is abandoned.
    pub(crate) fn abandon_receiving(&mut self) {
        self.snaps.receiving = None;
    }
}
