//! Membership changes on the leader (thesis chapter 4): one change at a time, through a joint
//! configuration when more than one voter changes, left automatically once committed; a
//! leader that is no longer a voter steps down once its removal is committed.
//!
//! Configurations take effect when appended (see `tracker.rs`), so "one at a time" means: no
//! new change while the configuration in force is not committed or is joint. A change also
//! waits until the leader has committed an entry of its own term: a leader elected under one
//! configuration could otherwise append a change conflicting with an uncommitted one of an
//! earlier leader that a later leader might still commit (the single-server-change bug found
//! after the thesis; with joint consensus alone it is harmless, but the direct path for a
//! single voter needs it).

use std::sync::Arc;

use crate::codec::encode_membership;
use crate::io::{Event, Output, ProposeError};
use crate::membership::{ChangeError, ChangeStep, Membership};
use crate::message::{Message, TimeoutNow};
use crate::node::RaftNode;
use crate::transfer::Transfer;
use crate::types::{Entry, EntryKind, LogId, NodeId, RequestId, Role, NO_NODE};

impl RaftNode {
    /// Tells the driver the configuration in force.
    pub(crate) fn announce_membership(&self, out: &mut Vec<Output>) {
        let (index, membership) = self.tracker.membership();
        out.push(Output::MembershipChanged {
            index,
            membership: membership.clone(),
        });
    }

    /// `Input::ChangeMembership`: checks the change and appends its configuration entry.
    pub(crate) fn change_membership(
        &mut self,
        request: RequestId,
        steps: &[ChangeStep],
        out: &mut Vec<Output>,
    ) {
        match self.check_change(steps) {
            Ok(membership) => {
                let id = self.append_config(membership, out);
                self.proposals.push_back((id, request));
                out.push(Output::Proposed {
                    request,
                    result: Ok(id),
                });
            }
            Err(e) => out.push(Output::Proposed {
                request,
                result: Err(e),
            }),
        }
    }

    fn check_change(&self, steps: &[ChangeStep]) -> Result<Membership, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader_hint(),
            });
        }
        if let Some(t) = &self.transfer {
            return Err(ProposeError::TransferInProgress { to: t.target() });
        }
        let (index, current) = self.tracker.membership();
        let committed = self.log.committed();
        if index > committed || current.is_joint() {
            return Err(ChangeError::InProgress.into());
        }
        if self.log.term(committed) != Some(self.term) {
            return Err(ChangeError::LeaderNotReady.into());
        }
        let next = current.changed(steps)?;
        let last = self.log.last_index();
        for step in steps {
            if let ChangeStep::Promote { id } = step {
                let matched = self
                    .tracker
                    .index_of(*id)
                    .map_or(0, |i| self.tracker.pr(i).matched());
                let behind = last.saturating_sub(matched);
                let max = self.cfg.learner_catch_up_entries;
                if behind > max {
                    return Err(ChangeError::LearnerBehind {
                        id: *id,
                        behind,
                        max,
                    }
                    .into());
                }
            }
        }
        Ok(next)
    }

    /// Appends a configuration entry of the current term; it takes effect at once.
    fn append_config(&mut self, membership: Membership, out: &mut Vec<Output>) -> LogId {
        let id = LogId {
            term: self.term,
            index: self.log.last_index() + 1,
        };
        let entry = Entry {
            term: id.term,
            index: id.index,
            kind: EntryKind::Config,
            data: encode_membership(&membership),
        };
        self.uncommitted_bytes += entry.size();
        self.log.push(entry.clone());
        self.dur.push_entry(entry);
        self.tracker.push_config(id.index, Arc::new(membership));
        self.announce_membership(out);
        id
    }

    /// On a leader, after the commit index moved: a committed joint configuration is left, and a
    /// leader whose removal is committed steps down.
    pub(crate) fn after_config_commit(&mut self, out: &mut Vec<Output>) {
        let (index, current) = self.tracker.membership();
        if index > self.log.committed() || !self.tracker.recorded() {
            return;
        }
        if current.is_joint() {
            let left = current.leave_joint();
            self.append_config(left, out);
            self.broadcast_append(false, out);
            return;
        }
        if !self.tracker.i_vote() {
            self.step_down_removed(out);
        }
    }

    /// This leader is not a voter of the committed configuration: hand over to a voter and
    /// step down. A voter that holds the whole log gets `TimeoutNow` at once (it campaigns
    /// without waiting for an election timeout); otherwise the most caught-up voter heard from
    /// lately is brought up to date first, as in a leadership transfer (proposals are refused
    /// meanwhile), and the leader steps down once it sent `TimeoutNow`, or after an election
    /// timeout. Under a steady load some entry is always in flight, so without the catch-up
    /// there would rarely be a voter to hand over to, and the cluster would wait for an
    /// election timeout. The node never campaigns again: a node that is not a voter of its
    /// configuration does not.
    fn step_down_removed(&mut self, out: &mut Vec<Output>) {
        if let Some(t) = self.transfer.as_mut() {
            // A handover (or a transfer asked for) is under way: it ends the leadership.
            t.set_removal();
            return;
        }
        match self.most_caught_up_voter() {
            Some((to, matched)) if matched == self.log.last_index() => {
                let term = self.term;
                self.send(to, Message::TimeoutNow(TimeoutNow { term }), out);
                self.hand_over(Some(to), out);
            }
            Some((to, _)) => {
                self.transfer = Some(Transfer::handover(to));
                if let Some(i) = self.tracker.index_of(to) {
                    self.send_append(i, true, out);
                }
            }
            None => self.hand_over(None, out),
        }
    }

    /// A removed leader steps down, naming the voter it told to campaign.
    pub(crate) fn hand_over(&mut self, successor: Option<NodeId>, out: &mut Vec<Output>) {
        let term = self.term;
        out.push(Output::Event(Event::RemovedFromConfiguration {
            term,
            successor,
        }));
        self.become_follower(term, NO_NODE, out);
    }
}
