//! Leadership transfer (thesis section 3.10): the leader stops taking proposals, brings the
//! target's log up to date, and sends it `TimeoutNow`; the target campaigns at once, without a
//! pre-vote, and its vote requests carry a flag that lets voters grant them despite the leader
//! lease. Without a new leader within an election timeout the transfer is abandoned.

use crate::io::{Event, Output, TransferError};
use crate::message::{Message, TimeoutNow};
use crate::node::RaftNode;
use crate::types::{Index, NodeId, RequestId, Role};

/// A transfer under way on the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Transfer {
    to: NodeId,
    /// Ticks since it started.
    elapsed: u32,
    /// `TimeoutNow` was sent.
    sent: bool,
    /// This leader's removal is committed: it steps down once `TimeoutNow` is sent (or the
    /// transfer is abandoned).
    removal: bool,
}

impl Transfer {
    /// The handover of a removed leader to voter `to`.
    pub(crate) fn handover(to: NodeId) -> Self {
        Transfer {
            to,
            elapsed: 0,
            sent: false,
            removal: true,
        }
    }

    /// The leader's removal committed during the transfer: it ends the leadership.
    pub(crate) fn set_removal(&mut self) {
        self.removal = true;
    }

    /// The node taking over.
    pub(crate) fn target(&self) -> NodeId {
        self.to
    }
}

impl RaftNode {
    /// `Input::TransferLeadership`.
    pub(crate) fn transfer_leadership(
        &mut self,
        request: RequestId,
        to: Option<NodeId>,
        out: &mut Vec<Output>,
    ) {
        let result = self.transfer_target(to);
        out.push(Output::Transferring { request, result });
        match result {
            Ok(target) if target != self.cfg.id => {
                self.transfer = Some(Transfer {
                    to: target,
                    elapsed: 0,
                    sent: false,
                    removal: false,
                });
                if let Some(i) = self.tracker.index_of(target) {
                    self.send_append(i, true, out);
                    self.transfer_progress(i, out);
                }
            }
            _ => {}
        }
    }

    fn transfer_target(&self, to: Option<NodeId>) -> Result<NodeId, TransferError> {
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader {
                leader_hint: self.leader_hint(),
            });
        }
        if let Some(t) = &self.transfer {
            return Err(TransferError::InProgress { to: t.to });
        }
        let membership = self.tracker.membership().1;
        let timeout = self.cfg.election_timeout_ticks;
        let Some(id) = to else {
            return self
                .most_caught_up_voter()
                .map(|(id, _)| id)
                .ok_or(TransferError::NoCandidate);
        };
        if id == self.cfg.id && membership.voters().contains(&id) {
            return Ok(id);
        }
        if !membership.contains(id) {
            return Err(TransferError::UnknownNode(id));
        }
        if !membership.voters().contains(&id) {
            return Err(TransferError::NotAVoter(id));
        }
        let silent = self
            .tracker
            .index_of(id)
            .map_or(u32::MAX, |i| self.tracker.pr(i).silent_ticks());
        if silent >= timeout {
            return Err(TransferError::Unreachable {
                id,
                silent_ticks: silent,
            });
        }
        Ok(id)
    }

    /// The voter (of the configuration in force, other than this leader) that matched most of
    /// its log among those heard from within an election timeout, with its match index; the
    /// fewest silent ticks, then the lowest id, break ties.
    pub(crate) fn most_caught_up_voter(&self) -> Option<(NodeId, Index)> {
        let voters = self.tracker.membership().1.voters();
        let timeout = self.cfg.election_timeout_ticks;
        self.tracker
            .progress()
            .iter()
            .filter(|p| voters.contains(&p.id()) && p.silent_ticks() < timeout)
            .max_by_key(|p| (p.matched(), std::cmp::Reverse((p.silent_ticks(), p.id()))))
            .map(|p| (p.id(), p.matched()))
    }

    /// After the follower at `i` acknowledged entries: once the target holds the whole log,
    /// tell it to campaign.
    pub(crate) fn transfer_progress(&mut self, i: usize, out: &mut Vec<Output>) {
        let pr = self.tracker.pr(i);
        let ready = self
            .transfer
            .as_ref()
            .is_some_and(|t| t.to == pr.id() && !t.sent && pr.matched() == self.log.last_index());
        if ready {
            let to = pr.id();
            if let Some(t) = self.transfer.as_mut() {
                t.sent = true;
            }
            let term = self.term;
            self.send(to, Message::TimeoutNow(TimeoutNow { term }), out);
            if self.transfer.as_ref().is_some_and(|t| t.removal) {
                self.hand_over(Some(to), out);
            }
        }
    }

    /// One leader tick: a transfer that has not completed within an election timeout ends.
    pub(crate) fn transfer_tick(&mut self, out: &mut Vec<Output>) {
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        t.elapsed += 1;
        if t.elapsed >= self.cfg.election_timeout_ticks {
            let (to, removal) = (t.to, t.removal);
            self.transfer = None;
            out.push(Output::Event(Event::TransferAborted {
                to,
                term: self.term,
            }));
            if removal {
                self.hand_over(None, out);
            }
        }
    }

    /// The leader tells this node to campaign now.
    pub(crate) fn handle_timeout_now(&mut self, from: NodeId, out: &mut Vec<Output>) {
        if self.role != Role::Follower || self.leader != from || !self.tracker.i_vote() {
            return;
        }
        self.campaign(false, true, out);
    }
}
