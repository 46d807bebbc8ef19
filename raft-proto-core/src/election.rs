//! Leader election: PreVote, campaigns, vote requests and vote counting (section 5.2).

use crate::durability::Held;
use crate::io::Output;
use crate::message::{Message, RequestVote, RequestVoteResponse};
use crate::node::RaftNode;
use crate::progress::Progress;
use crate::quorum::VoteResult;
use crate::types::{Entry, EntryKind, NodeId, Role, NO_NODE};

impl RaftNode {
    /// Starts a pre-vote round (`pre`) or a real election.
    pub(crate) fn campaign(&mut self, pre: bool, out: &mut Vec<Output>) {
        if self.term == u64::MAX {
            // Terms are exhausted; only a forged message can bring a node here.
            out.push(Output::Event(crate::io::Event::InvalidInput {
                reason: "term space exhausted: cannot campaign",
            }));
            self.reset_election_timer();
            return;
        }
        self.votes.clear();
        self.reset_election_timer();
        self.set_leader(NO_NODE, out);
        let last_log = self.log.last_id();
        if pre {
            self.set_role(Role::PreCandidate, out);
            let term = self.term + 1;
            for i in 0..self.peers.len() {
                let to = self.peers[i];
                let rv = RequestVote {
                    term,
                    pre_vote: true,
                    last_log,
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
            for i in 0..self.peers.len() {
                let to = self.peers[i];
                let rv = RequestVote {
                    term,
                    pre_vote: false,
                    last_log,
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
        if !self.votes.iter().any(|v| v.0 == from) {
            self.votes.push((from, granted));
        }
        let votes = &self.votes;
        let result = self
            .voters
            .vote_result(|id| votes.iter().find(|v| v.0 == id).map(|v| v.1));
        match result {
            VoteResult::Won if self.role == Role::PreCandidate => self.campaign(false, out),
            VoteResult::Won => {
                // Lead only once this term and our vote are durable: a leader whose term could
                // be forgotten in a crash might vote for a rival in the same term afterwards.
                let me = self.cfg.id;
                if self.votes.iter().any(|&(id, granted)| id == me && granted) {
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
        self.votes.clear();
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        let next = self.log.last_index() + 1;
        let window = self.cfg.max_inflight_messages.min(1024);
        self.progress = self
            .peers
            .iter()
            .map(|&id| Progress::new(id, next, window))
            .collect();
        // A no-op of the new term lets earlier entries commit (Figure 8).
        let noop = Entry {
            term: self.term,
            index: next,
            kind: EntryKind::Noop,
            data: bytes::Bytes::new(),
        };
        self.uncommitted_bytes = noop.size();
        self.log.push(noop.clone());
        self.dur.push_entry(noop);
        self.broadcast_append(true, out);
    }
}
