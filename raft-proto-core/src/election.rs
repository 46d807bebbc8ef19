//! Leader election: PreVote, campaigns, vote requests and vote counting (section 5.2).

use crate::codec::encode_membership;
use crate::durability::Held;
use crate::io::Output;
use crate::message::{Message, RequestVote, RequestVoteResponse};
use crate::node::RaftNode;
use crate::quorum::VoteResult;
use crate::types::{Entry, EntryKind, NodeId, Role, NO_NODE};

impl RaftNode {
    /// Starts a pre-vote round (`pre`) or a real election; `transfer` marks an election the
    /// leader asked for (`TimeoutNow`), which voters grant despite the leader lease.
    pub(crate) fn campaign(&mut self, pre: bool, transfer: bool, out: &mut Vec<Output>) {
        if self.term == u64::MAX {
            // Terms are exhausted; only a forged message can bring a node here.
            out.push(Output::Event(crate::io::Event::InvalidInput {
                reason: "term space exhausted: cannot campaign",
            }));
            self.reset_election_timer();
            return;
        }
        self.tracker.reset_votes();
        self.reset_election_timer();
        self.set_leader(NO_NODE, out);
        let last_log = self.log.last_id();
        let voters = self.tracker.other_voters();
        if pre {
            self.set_role(Role::PreCandidate, out);
            let term = self.term + 1;
            for &to in &voters {
                let rv = RequestVote {
                    term,
                    pre_vote: true,
                    last_log,
                    transfer: false,
                };
                self.send(to, Message::RequestVote(rv), out);
            }
            let me = self.cfg.id;
            self.record_vote(me, true, out);
        } else {
            self.term += 1;
            self.vote = self.cfg.id;
            self.dur.write_hard_state(self.hard_state());
            self.set_role(Role::Candidate, out);
            let term = self.term;
            for &to in &voters {
                let rv = RequestVote {
                    term,
                    pre_vote: false,
                    last_log,
                    transfer,
                };
                self.send(to, Message::RequestVote(rv), out);
            }
            // Our own vote counts only once it is durable.
            if let Some(Held::SelfVote(t)) = self.dur.hold(Held::SelfVote(term)) {
                if t == self.term {
                    let me = self.cfg.id;
                    self.record_vote(me, true, out);
                }
            }
        }
    }

    pub(crate) fn handle_vote_request(
        &mut self,
        from: NodeId,
        rv: RequestVote,
        out: &mut Vec<Output>,
    ) {
        let can_vote = self.vote == from
            || (self.vote == NO_NODE && self.leader == NO_NODE)
            || (rv.pre_vote && rv.term > self.term);
        if can_vote && self.log.is_up_to_date(rv.last_log) {
            if rv.pre_vote {
                let reply = RequestVoteResponse {
                    term: rv.term,
                    pre_vote: true,
                    granted: true,
                };
                self.send(from, Message::RequestVoteResponse(reply), out);
            } else {
                self.vote = from;
                self.election_elapsed = 0;
                self.dur.write_hard_state(self.hard_state());
                let reply = RequestVoteResponse {
                    term: self.term,
                    pre_vote: false,
                    granted: true,
                };
                self.send_when_durable(from, Message::RequestVoteResponse(reply), out);
            }
        } else {
            let reply = RequestVoteResponse {
                term: self.term,
                pre_vote: rv.pre_vote,
                granted: false,
            };
            self.send(from, Message::RequestVoteResponse(reply), out);
        }
    }

    pub(crate) fn handle_vote_response(
        &mut self,
        from: NodeId,
        r: RequestVoteResponse,
        out: &mut Vec<Output>,
    ) {
        match self.role {
            Role::PreCandidate if r.pre_vote => self.record_vote(from, r.granted, out),
            Role::Candidate if !r.pre_vote => self.record_vote(from, r.granted, out),
            _ => {}
        }
    }

    pub(crate) fn record_vote(&mut self, from: NodeId, granted: bool, out: &mut Vec<Output>) {
        match self.tracker.record_vote(from, granted) {
            VoteResult::Won if self.role == Role::PreCandidate => self.campaign(false, false, out),
            VoteResult::Won => {
                // Lead only once this term and our vote are durable: a leader whose term could
                // be forgotten in a crash might vote for a rival in the same term afterwards.
                if self.tracker.voted_for_myself() {
                    self.become_leader(out);
                }
            }
            VoteResult::Lost => self.become_follower(self.term, NO_NODE, out),
            VoteResult::Pending => {}
        }
    }

    fn become_leader(&mut self, out: &mut Vec<Output>) {
        self.set_role(Role::Leader, out);
        let me = self.cfg.id;
        self.set_leader(me, out);
        self.tracker.reset_votes();
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        let next = self.log.last_index() + 1;
        let window = self.cfg.max_inflight_messages.min(1024);
        self.tracker.start_leading(next, window);
        // An entry of the new term lets earlier entries commit (Figure 8): a no-op, or, while
        // the configuration in force is only the initial one of `Config`, that configuration,
        // so that the log holds it from then on (nodes that join later learn it there).
        let entry = if self.tracker.recorded() {
            Entry {
                term: self.term,
                index: next,
                kind: EntryKind::Noop,
                data: bytes::Bytes::new(),
            }
        } else {
            let membership = self.tracker.membership().1.clone();
            let entry = Entry {
                term: self.term,
                index: next,
                kind: EntryKind::Config,
                data: encode_membership(&membership),
            };
            self.tracker.push_config(next, membership);
            entry
        };
        self.uncommitted_bytes = entry.size();
        self.log.push(entry.clone());
        self.dur.push_entry(entry);
        self.broadcast_append(true, out);
    }
}
