//! Membership changes and leadership transfers asked for by clients: checking what they ask,
//! and answering them when the change is done (or cannot be).
//!
//! A change is answered once its configuration entry is committed (a joint change: once the
//! entry that leaves it, appended by the leader on its own, commits too). It is
//! answered "unknown" if this node stops leading first (the next leader may still finish it)
//! and "refused" when the core refuses it (the cluster is unchanged then). A transfer is
//! answered once another node leads, or refused when the core abandons it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft_proto_core::{
    ChangeStep, Index, LogId, Membership, NodeId, ProposeError, RaftNode, RequestId, Role, Term,
    TransferError,
};

use super::apply_task::Reply;
use crate::protocol::{ClientResponse, MemberChange, MembershipReport};
use crate::transport::AddressBook;

/// A change in the log, waiting to be done.
struct Placed {
    /// Its configuration entry.
    id: LogId,
    /// Whether that entry holds a joint configuration.
    joint: bool,
    /// For a joint change: the entry that leaves it, once the leader appended it.
    leave: Option<Index>,
    reply: Reply,
}

pub(crate) struct Reconfig {
    /// How long a transfer waits, once this node stopped leading, to learn the new leader.
    patience: Duration,
    /// Changes given to the core, waiting for its answer.
    asked_changes: HashMap<RequestId, Reply>,
    /// Changes placed in the log, waiting to be done.
    changes: Vec<Placed>,
    /// Transfers given to the core, waiting for its answer.
    asked_transfers: HashMap<RequestId, Reply>,
    /// Transfers under way (target, the term they started in), waiting for the new leader,
    /// and since when this node does not lead.
    transfers: Vec<(NodeId, Term, Reply)>,
    stepped_down: Option<Instant>,
}

/// The core's steps for a client's changes, or why they are malformed (in the client's
/// words).
pub(crate) fn core_steps(changes: Vec<MemberChange>) -> Result<Vec<ChangeStep>, String> {
    fn address(id: NodeId, text: &str) -> Result<Bytes, String> {
        text.parse::<SocketAddr>()
            .map(|a| Bytes::from(a.to_string()))
            .map_err(|_| {
                format!(
                    "the address `{text}` of node {id} is not an IP address and port \
                     (like 127.0.0.1:7004)"
                )
            })
    }
    let check = |id: NodeId| {
        if id == 0 {
            Err("node id 0 is reserved; node ids start at 1".to_string())
        } else {
            Ok(id)
        }
    };
    changes
        .into_iter()
        .map(|c| {
            Ok(match c {
                MemberChange::AddLearner { id, address: a } => ChangeStep::AddLearner {
                    id: check(id)?,
                    data: address(id, &a)?,
                },
                MemberChange::Promote { id } => ChangeStep::Promote { id: check(id)? },
                MemberChange::Remove { id } => ChangeStep::Remove { id: check(id)? },
                MemberChange::SetAddress { id, address: a } => ChangeStep::SetData {
                    id: check(id)?,
                    data: address(id, &a)?,
                },
            })
        })
        .collect()
}

/// The redirect to `leader`, with its address if known.
pub(crate) fn not_leader(leader: Option<NodeId>, book: &AddressBook) -> ClientResponse {
    let leader = book.redirect(leader);
    ClientResponse::NotLeader {
        leader,
        leader_addr: leader.and_then(|l| book.address(l)).map(|a| a.to_string()),
    }
}

/// The configuration in force at `node`, as clients see it.
pub(crate) fn report(node: &RaftNode) -> MembershipReport {
    let (index, m) = node.membership();
    MembershipReport::of(index, node.commit_index() >= index, m)
}

impl Reconfig {
    /// `patience`: how long to wait for a new leader once this node stepped down for a
    /// transfer (a couple of election timeouts).
    pub fn new(patience: Duration) -> Self {
        Reconfig {
            patience,
            asked_changes: HashMap::new(),
            changes: Vec::new(),
            asked_transfers: HashMap::new(),
            transfers: Vec::new(),
            stepped_down: None,
        }
    }

    pub fn asked_change(&mut self, request: RequestId, reply: Reply) {
        self.asked_changes.insert(request, reply);
    }

    pub fn asked_transfer(&mut self, request: RequestId, reply: Reply) {
        self.asked_transfers.insert(request, reply);
    }

    /// The core placed or refused change `request` (if it is one).
    pub fn proposed(
        &mut self,
        node: &RaftNode,
        request: RequestId,
        result: &Result<LogId, ProposeError>,
        book: &AddressBook,
    ) {
        let Some(reply) = self.asked_changes.remove(&request) else {
            return;
        };
        match result {
            Ok(id) => {
                // A configuration takes effect on append: the one in force is the change's.
                let (index, m) = node.membership();
                self.changes.push(Placed {
                    id: *id,
                    joint: index != id.index || m.is_joint(),
                    leave: None,
                    reply,
                })
            }
            Err(ProposeError::NotLeader { leader_hint }) => {
                let _ = reply.send(not_leader(*leader_hint, book));
            }
            Err(e) => {
                let _ = reply.send(ClientResponse::Rejected {
                    reason: e.to_string(),
                });
            }
        }
    }

    /// The core started or refused transfer `request`.
    pub fn transferring(
        &mut self,
        node: &RaftNode,
        request: RequestId,
        result: Result<NodeId, TransferError>,
        book: &AddressBook,
    ) {
        let Some(reply) = self.asked_transfers.remove(&request) else {
            return;
        };
        match result {
            Ok(to) if to == node.id() => {
                let _ = reply.send(ClientResponse::Transferred {
                    leader: to,
                    term: node.term(),
                });
            }
            Ok(to) => self.transfers.push((to, node.term(), reply)),
            Err(TransferError::NotLeader { leader_hint }) => {
                let _ = reply.send(not_leader(leader_hint, book));
            }
            Err(e) => {
                let _ = reply.send(ClientResponse::Rejected {
                    reason: e.to_string(),
                });
            }
        }
    }

    /// A configuration took effect at `index` (appended or installed): the leave entry of a
    /// joint change waiting here, if it is one.
    pub fn membership_changed(&mut self, index: Index, m: &Membership) {
        if m.is_joint() {
            return;
        }
        for p in &mut self.changes {
            if p.joint && p.leave.is_none() && index > p.id.index {
                p.leave = Some(index);
            }
        }
    }

    /// The core gave up the transfer to `to`. If this node stopped leading with it (a removed
    /// leader gives up leading too), [`Reconfig::check`] answers once the next leader is known.
    pub fn transfer_aborted(&mut self, node: &RaftNode, to: NodeId) {
        if node.role() != Role::Leader {
            return;
        }
        for (_, _, reply) in self.transfers.drain(..) {
            let _ = reply.send(ClientResponse::Rejected {
                reason: format!(
                    "the transfer to node {to} was abandoned: it did not take over within an \
                     election timeout; node {} still leads",
                    node.id()
                ),
            });
        }
    }

    /// Answers what is done, after the core stepped.
    pub fn check(&mut self, node: &RaftNode) {
        if node.role() == Role::Leader {
            self.stepped_down = None;
            // Leadership went and came back (the target did not win): the transfer is over.
            let term = node.term();
            let mut i = 0;
            while i < self.transfers.len() {
                if self.transfers[i].1 < term {
                    let (to, _, reply) = self.transfers.swap_remove(i);
                    let _ = reply.send(ClientResponse::Rejected {
                        reason: format!(
                            "node {to} did not take over; node {} leads again (term {term})",
                            node.id()
                        ),
                    });
                } else {
                    i += 1;
                }
            }
        } else if !self.transfers.is_empty() {
            // The node steps down when the target's vote request arrives, before it hears
            // from the new leader: wait for it a while.
            let since = *self.stepped_down.get_or_insert_with(Instant::now);
            let answer = match node.leader_hint() {
                Some(l) if l != node.id() => Some(ClientResponse::Transferred {
                    leader: l,
                    term: node.term(),
                }),
                _ if since.elapsed() > self.patience => Some(ClientResponse::Unknown {
                    reason: format!(
                        "this node stopped leading and heard from no new leader within {:?}",
                        self.patience
                    ),
                }),
                _ => None,
            };
            if let Some(answer) = answer {
                for (_, _, reply) in self.transfers.drain(..) {
                    let _ = reply.send(answer.clone());
                }
                self.stepped_down = None;
            }
        }
        if self.changes.is_empty() {
            return;
        }
        let commit = node.commit_index();
        let last = node.last_log_id().index;
        let leading = node.role() == Role::Leader;
        let (index, m) = node.membership();
        let settled = commit >= index && !m.is_joint();
        let mut i = 0;
        while i < self.changes.len() {
            let p = &self.changes[i];
            let id = p.id;
            // Done: its entry committed, and for a joint change the entry that leaves it (or,
            // should that entry have gone unseen, a later plain configuration in force).
            let done =
                commit >= id.index && (!p.joint || p.leave.is_some_and(|l| commit >= l) || settled);
            let replaced = id.index > last || node.log_term(id.index).is_some_and(|t| t != id.term);
            let answer = if replaced {
                Some(ClientResponse::Unknown {
                    reason: "the change was replaced by another leader's entries; check the \
                             configuration with `raftkv member list`"
                        .into(),
                })
            } else if done {
                Some(ClientResponse::Membership(report(node)))
            } else if !leading {
                Some(ClientResponse::Unknown {
                    reason: "leadership changed before the change was done; it may still take \
                             effect: check `raftkv member list`"
                        .into(),
                })
            } else {
                None
            };
            match answer {
                Some(a) => {
                    let _ = self.changes.swap_remove(i).reply.send(a);
                }
                None => i += 1,
            }
        }
    }

    /// The node stops: whatever waits gets an honest answer.
    pub fn shutdown(&mut self) {
        let unknown = || ClientResponse::Unknown {
            reason: "the node is shutting down".into(),
        };
        for (_, reply) in self.asked_changes.drain() {
            let _ = reply.send(unknown());
        }
        for p in self.changes.drain(..) {
            let _ = p.reply.send(unknown());
        }
        for (_, reply) in self.asked_transfers.drain() {
            let _ = reply.send(unknown());
        }
        for (_, _, reply) in self.transfers.drain(..) {
            let _ = reply.send(unknown());
        }
    }
}
