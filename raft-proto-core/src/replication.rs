//! Log replication (section 5.3), commit (5.4, Figure 8), proposals and apply.

use std::sync::Arc;

use smallvec::SmallVec;

use crate::codec::{decode_membership, MembershipDecodeError};
use crate::io::{Event, Output, Proposal, ProposeError};
use crate::log::Unavailable;
use crate::membership::Membership;
use crate::message::{
    AppendEntries, AppendEntriesResponse, AppendResult, Heartbeat, HeartbeatResponse, Message,
};
use crate::node::RaftNode;
use crate::types::{Entry, EntryKind, Index, LogId, NodeId, Role, ENTRY_OVERHEAD};

impl RaftNode {
    /// Places one proposal in the log if this node leads and the limits allow.
    pub(crate) fn propose(&mut self, p: Proposal, out: &mut Vec<Output>) {
        let result = self.try_append_proposal(&p);
        if let Ok(id) = result {
            self.proposals.push_back((id, p.request));
        }
        out.push(Output::Proposed {
            request: p.request,
            result,
        });
        if let Ok(id) = result {
            let entry = Entry {
                term: id.term,
                index: id.index,
                kind: EntryKind::Normal,
                data: p.data,
            };
            self.uncommitted_bytes += entry.size();
            self.log.push(entry.clone());
            self.dur.push_entry(entry);
        }
    }

    fn try_append_proposal(&self, p: &Proposal) -> Result<LogId, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader_hint(),
            });
        }
        if let Some(t) = &self.transfer {
            return Err(ProposeError::TransferInProgress { to: t.target() });
        }
        let size = p.data.len() as u64;
        if size > self.cfg.max_proposal_bytes {
            return Err(ProposeError::TooLarge {
                size,
                max: self.cfg.max_proposal_bytes,
            });
        }
        let max = self.cfg.max_uncommitted_bytes;
        if self.uncommitted_bytes > 0 && self.uncommitted_bytes + size + ENTRY_OVERHEAD > max {
            return Err(ProposeError::Overloaded {
                uncommitted: self.uncommitted_bytes,
                max,
            });
        }
        Ok(LogId {
            term: self.term,
            index: self.log.last_index() + 1,
        })
    }

    /// Sends what each follower is missing (and, with `send_if_empty`, at least the commit index).
    pub(crate) fn broadcast_append(&mut self, send_if_empty: bool, out: &mut Vec<Output>) {
        if self.role != Role::Leader {
            return;
        }
        for i in 0..self.tracker.len() {
            self.send_append(i, send_if_empty, out);
        }
    }

    /// Sends appends to the follower at position `i` of `progress`, as the window allows.
    /// Entries no longer in memory are read back through the driver (`Output::FetchEntries`);
    /// a follower that needs compacted entries gets the latest snapshot instead.
    pub(crate) fn send_append(&mut self, i: usize, mut send_if_empty: bool, out: &mut Vec<Output>) {
        let max_msgs = self.cfg.max_inflight_messages;
        let max_bytes = self.cfg.max_inflight_bytes;
        loop {
            let pr = self.tracker.pr(i);
            if pr.snapshot().is_some() {
                self.continue_snapshot(i, out);
                return;
            }
            if pr.is_paused(max_msgs, max_bytes) {
                return;
            }
            let next = pr.next();
            let prev_index = next - 1;
            let Some(prev_term) = self.log.term(prev_index) else {
                // The entries were compacted away: only a snapshot can help this follower.
                self.start_snapshot(i, out);
                return;
            };
            let streaming = pr.is_streaming();
            let (entries, bytes) =
                match self
                    .log
                    .slice_sized(next, self.log.last_index(), self.cfg.max_message_bytes)
                {
                    Ok(sized) => sized,
                    Err(Unavailable::Compacted) => {
                        self.start_snapshot(i, out);
                        return;
                    }
                    Err(Unavailable::Evicted) if streaming => {
                        // Read them back; the append goes out when they arrive.
                        let to = pr.id();
                        let hi = self.log.mem_start().min(self.log.last_index() + 1);
                        self.tracker.pr_mut(i).start_fetch(next);
                        out.push(Output::FetchEntries {
                            to,
                            lo: next,
                            hi,
                            max_bytes: self.cfg.max_message_bytes,
                        });
                        return;
                    }
                    // A probe needs no entries: find the match first, fetch once streaming.
                    Err(Unavailable::Evicted) => (Vec::new(), 0),
                };
            if entries.is_empty() && !send_if_empty {
                return;
            }
            let carried = !entries.is_empty();
            self.send_entries(
                i,
                LogId {
                    term: prev_term,
                    index: prev_index,
                },
                (entries, bytes),
                out,
            );
            if !(streaming && carried) {
                return;
            }
            send_if_empty = false;
        }
    }

    /// Sends one append with `entries` after `prev` to the follower at `i` and records it.
    /// `entries` come with their total size.
    fn send_entries(
        &mut self,
        i: usize,
        prev: LogId,
        (entries, bytes): (Vec<Entry>, u64),
        out: &mut Vec<Output>,
    ) {
        let carried = !entries.is_empty();
        let pr = self.tracker.pr_mut(i);
        pr.sent(prev.index + entries.len() as u64, bytes, carried);
        let msg = AppendEntries {
            term: self.term,
            prev,
            entries,
            commit: self.log.committed(),
        };
        out.push(Output::Send {
            to: pr.id(),
            msg: Message::AppendEntries(msg),
        });
    }

    /// Entries read back from storage for follower `to`, from `lo` on.
    pub(crate) fn on_entries_fetched(
        &mut self,
        to: NodeId,
        lo: Index,
        mut entries: Vec<Entry>,
        out: &mut Vec<Output>,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let Some(i) = self.tracker.index_of(to) else {
            return;
        };
        if !self.tracker.pr_mut(i).fetch_done(lo) {
            // Not the read this follower waits for (it moved on meanwhile): drop it.
            return;
        }
        let prev = lo - 1;
        let usable =
            entries.first().is_some_and(|e| e.index == lo) && self.log.agrees_with(&entries);
        let prev_term = match self.log.term(prev) {
            Some(t) if usable => t,
            // Compacted since the read was asked for: only a snapshot helps now.
            _ if self.log.term(prev).is_none() => {
                self.start_snapshot(i, out);
                return;
            }
            _ => {
                // Storage answered with other entries than the log holds there. Probe again
                // (at the next heartbeat answer) rather than retrying the read in a loop.
                out.push(Output::Event(Event::InvalidInput {
                    reason: "EntriesFetched does not match the log at the range asked for",
                }));
                self.tracker.pr_mut(i).become_probe();
                return;
            }
        };
        // Keep to the message size cap (at least one entry).
        let mut size = 0u64;
        let mut n = 0usize;
        for e in &entries {
            let next = size + e.size();
            if n > 0 && next > self.cfg.max_message_bytes {
                break;
            }
            size = next;
            n += 1;
        }
        entries.truncate(n);
        self.send_entries(
            i,
            LogId {
                term: prev_term,
                index: prev,
            },
            (entries, size),
            out,
        );
        self.send_append(i, false, out);
    }

    pub(crate) fn broadcast_heartbeat(&mut self, out: &mut Vec<Output>) {
        for pr in self.tracker.progress() {
            let hb = Heartbeat {
                term: self.term,
                commit: pr.matched().min(self.log.committed()),
            };
            out.push(Output::Send {
                to: pr.id(),
                msg: Message::Heartbeat(hb),
            });
        }
    }

    /// A candidate that hears from the leader of its term gives up.
    pub(crate) fn follow_current_leader(&mut self, from: NodeId, out: &mut Vec<Output>) -> bool {
        match self.role {
            Role::Leader => {
                out.push(Output::Event(Event::InvalidInput {
                    reason: "another leader claims the current term",
                }));
                false
            }
            Role::Follower => {
                self.election_elapsed = 0;
                self.set_leader(from, out);
                true
            }
            Role::PreCandidate | Role::Candidate => {
                self.become_follower(self.term, from, out);
                true
            }
        }
    }

    pub(crate) fn handle_append(
        &mut self,
        from: NodeId,
        mut m: AppendEntries,
        out: &mut Vec<Output>,
    ) {
        if !self.follow_current_leader(from, out) {
            return;
        }
        let term = self.term;
        let reply = |result| Message::AppendEntriesResponse(AppendEntriesResponse { term, result });
        let committed = self.log.committed();
        if m.prev.index < committed {
            let match_index = committed;
            self.send_when_durable(from, reply(AppendResult::Success { match_index }), out);
            return;
        }
        if !self.log.matches(m.prev) {
            let hint = self.log.find_conflict_by_term(m.prev.index, m.prev.term);
            let rejected = m.prev.index;
            self.send(from, reply(AppendResult::Reject { rejected, hint }), out);
            return;
        }
        if !well_formed(&m) {
            out.push(Output::Event(Event::InvalidInput {
                reason: "append entries must follow prev at consecutive indexes, with terms \
                         from prev's up to the message's, never decreasing",
            }));
            return;
        }
        let Ok(configs) = decode_configs(&m.entries) else {
            out.push(Output::Event(Event::InvalidInput {
                reason: "append carries a configuration entry that is not a valid membership",
            }));
            return;
        };
        let last_new = m.prev.index + m.entries.len() as u64;
        if let Some(k) = self.log.find_conflict(&m.entries) {
            let first = m.entries[k].index;
            let mut truncate = None;
            let mut config_changed = false;
            if first <= self.log.last_index() {
                if !self.log.truncate_from(first) {
                    out.push(Output::Event(Event::InvalidInput {
                        reason: "append would rewrite committed entries",
                    }));
                    return;
                }
                // Configurations of the entries cut go with them.
                config_changed = self.tracker.truncate_from(first);
                truncate = Some(first);
            }
            self.dur.write_entries(truncate, &m.entries[k..]);
            for e in m.entries.drain(k..) {
                self.log.push(e);
            }
            for (index, membership) in configs {
                if index >= first {
                    self.tracker.push_config(index, membership);
                    config_changed = true;
                }
            }
            if config_changed {
                self.announce_membership(out);
            }
        }
        self.log.commit_to(m.commit.min(last_new));
        self.send_when_durable(
            from,
            reply(AppendResult::Success {
                match_index: last_new,
            }),
            out,
        );
    }

    pub(crate) fn handle_heartbeat(&mut self, from: NodeId, h: Heartbeat, out: &mut Vec<Output>) {
        if !self.follow_current_leader(from, out) {
            return;
        }
        self.log.commit_to(h.commit);
        let term = self.term;
        self.send(
            from,
            Message::HeartbeatResponse(HeartbeatResponse { term }),
            out,
        );
    }

    pub(crate) fn handle_append_response(
        &mut self,
        from: NodeId,
        r: AppendEntriesResponse,
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
            AppendResult::Success { match_index } => {
                if match_index > self.log.last_index() {
                    out.push(Output::Event(Event::InvalidInput {
                        reason: "append acknowledged beyond the leader's log",
                    }));
                    return;
                }
                let was_snapshot = self.tracker.pr(i).snapshot().map(|s| s.snap);
                if was_snapshot.is_some() && match_index >= self.log.floor().index {
                    // The follower holds enough for appends to continue (it installed the
                    // snapshot, or its log was further along than the leader knew).
                    self.tracker.pr_mut(i).become_probe();
                }
                if self.tracker.pr_mut(i).ack(match_index) {
                    self.maybe_commit(out);
                }
                if self.role != Role::Leader {
                    // The commit removed this leader: it stepped down.
                    return;
                }
                let Some(i) = self.tracker.index_of(from) else {
                    return;
                };
                self.transfer_progress(i, out);
                if self.role != Role::Leader {
                    // A removed leader handed over to this follower: it stepped down.
                    return;
                }
                if let Some(snap) = was_snapshot {
                    if self.tracker.pr(i).snapshot().is_none() {
                        out.push(Output::Event(Event::SnapshotSent {
                            to: from,
                            index: snap.index,
                            installed: match_index >= snap.index,
                        }));
                    }
                }
                self.send_append(i, false, out);
            }
            AppendResult::Reject { rejected, hint } => {
                let probe_from = self.log.find_conflict_by_term(hint.index, hint.term).index;
                if self.tracker.pr_mut(i).reject(rejected, probe_from) {
                    self.send_append(i, true, out);
                }
            }
        }
    }

    pub(crate) fn handle_heartbeat_response(&mut self, from: NodeId, out: &mut Vec<Output>) {
        if self.role != Role::Leader {
            return;
        }
        let Some(i) = self.tracker.index_of(from) else {
            return;
        };
        let (max_msgs, max_bytes) = (self.cfg.max_inflight_messages, self.cfg.max_inflight_bytes);
        self.tracker
            .pr_mut(i)
            .heartbeat_answered(max_msgs, max_bytes);
        if self.tracker.pr(i).matched() < self.log.last_index()
            || self.tracker.pr(i).snapshot().is_some()
        {
            self.send_append(i, true, out);
        }
    }

    /// Advances the commit index to what a quorum has durably, counting only entries of the
    /// current term (Figure 8), and tells the followers.
    pub(crate) fn maybe_commit(&mut self, out: &mut Vec<Output>) {
        let index = self.tracker.committed_index(self.log.stable());
        let committed = self.log.committed();
        if index > committed && self.log.term(index) == Some(self.term) {
            let newly = self.log.bytes_between(committed + 1, index);
            self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(newly);
            self.log.commit_to(index);
            self.notify_commit(out);
            self.after_config_commit(out);
        }
    }

    /// Tells every follower the new commit index: with the next entries if any are waiting,
    /// else with an empty append. For a streaming follower that append claims only what the
    /// follower has acknowledged, so that arriving before entries still in flight cannot get it
    /// rejected (transports may reorder).
    fn notify_commit(&mut self, out: &mut Vec<Output>) {
        for i in 0..self.tracker.len() {
            let pr = self.tracker.pr(i);
            if !pr.is_streaming() || pr.next() <= self.log.last_index() {
                self.send_append(i, true, out);
                continue;
            }
            let matched = pr.matched();
            let Some(prev_term) = self.log.term(matched) else {
                continue;
            };
            let msg = AppendEntries {
                term: self.term,
                prev: LogId {
                    term: prev_term,
                    index: matched,
                },
                entries: Vec::new(),
                commit: self.log.committed(),
            };
            out.push(Output::Send {
                to: pr.id(),
                msg: Message::AppendEntries(msg),
            });
        }
    }

    /// Hands committed, locally durable entries to the state machine, as far as the apply
    /// backlog allows.
    pub(crate) fn maybe_apply(&mut self, out: &mut Vec<Output>) {
        if !self.apply_blocked() {
            let (max, backlog) = (self.cfg.max_apply_bytes, self.cfg.max_apply_backlog_bytes);
            while let Some((entries, bytes)) = self.log.next_to_apply(max, backlog) {
                self.on_handed_out(bytes);
                out.push(Output::Apply { entries });
            }
        }
        let applying = self.log.applying();
        while let Some(&(id, _)) = self.proposals.front() {
            if id.index > applying {
                break;
            }
            self.proposals.pop_front();
        }
    }
}

/// Configurations carried by entries of an append, with their indexes.
type Configs = SmallVec<[(Index, Arc<Membership>); 1]>;

/// The configurations carried by `entries`, decoded; an error if one cannot be.
fn decode_configs(entries: &[Entry]) -> Result<Configs, MembershipDecodeError> {
    entries
        .iter()
        .filter(|e| e.kind == EntryKind::Config)
        .map(|e| decode_membership(&e.data).map(|m| (e.index, Arc::new(m))))
        .collect()
}

/// Entries of an append must follow `prev` at consecutive indexes, with terms that never
/// decrease, starting at `prev`'s term or later and never above the message's term. Anything else
/// could only come from a broken or malicious peer and would leave an unrecoverable log.
fn well_formed(m: &AppendEntries) -> bool {
    let mut term = m.prev.term;
    for (k, e) in m.entries.iter().enumerate() {
        let next_index = m.prev.index.checked_add(k as u64 + 1);
        if Some(e.index) != next_index || e.term < term || e.term > m.term {
            return false;
        }
        term = e.term;
    }
    true
}
