//! Where each peer can be reached, and which peers to keep links to.
//!
//! Addresses come from three places, in this order of trust: the configuration in force (each
//! member's data is its `host:port`, recorded when it was added or in the initial
//! configuration), the addresses the node was started with (`NodeOptions::peers`: the initial
//! voters, or the members a joining node was told about), and the address an authenticated
//! peer dialled from (a node dials from the endpoint it listens on).
//!
//! Links are kept to every member of the configuration in force, to the leader this node
//! follows (it may lead a configuration this node has not seen yet, or be a removed leader
//! still committing its removal: either way it must get its answers), to every node that sent
//! a message lately (a candidate of a configuration this node has not seen yet needs its vote;
//! a stale leader outside the configuration needs the current term back), and, while this node
//! is not a member itself (joining, or removed), to the nodes it was started with and those
//! that ever spoke to it.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use raft_proto_core::{Membership, NodeId};

#[derive(Debug, Clone)]
pub(crate) struct AddressBook {
    me: NodeId,
    seeds: BTreeMap<NodeId, SocketAddr>,
    learned: BTreeMap<NodeId, SocketAddr>,
    recorded: BTreeMap<NodeId, SocketAddr>,
    members: Vec<NodeId>,
    leader: Option<NodeId>,
    /// Nodes that sent messages, with the tick of the latest.
    heard: BTreeMap<NodeId, u64>,
    /// The voter this node handed over to when its removal took effect: where to send
    /// clients, since no leader talks to a removed node.
    successor: Option<NodeId>,
}

impl AddressBook {
    pub fn new(me: NodeId, seeds: BTreeMap<NodeId, SocketAddr>) -> Self {
        AddressBook {
            me,
            seeds,
            learned: BTreeMap::new(),
            recorded: BTreeMap::new(),
            members: Vec::new(),
            leader: None,
            heard: BTreeMap::new(),
            successor: None,
        }
    }

    /// The configuration in force changed.
    pub fn set_membership(&mut self, m: &Membership) {
        let members = m.members();
        self.recorded = m
            .node_data()
            .iter()
            .filter_map(|(id, data)| {
                let text = std::str::from_utf8(data).ok()?;
                Some((*id, text.trim().parse().ok()?))
            })
            .collect();
        self.members = members;
    }

    /// The leader this node follows changed. Returns whether the links to keep changed.
    pub fn set_leader(&mut self, leader: Option<NodeId>) -> bool {
        let before = self.links();
        self.leader = leader;
        if leader.is_some() {
            self.successor = None;
        }
        self.links() != before
    }

    /// An authenticated peer spoke from `addr`. Returns whether the links to keep changed.
    pub fn learn(&mut self, id: NodeId, addr: SocketAddr) -> bool {
        if id == self.me {
            return false;
        }
        let before = self.links();
        self.learned.insert(id, addr);
        self.links() != before
    }

    /// A message from `id` arrived at tick `now`. Returns whether the links to keep changed
    /// (a node that sent nothing lately and is linked for no other reason).
    pub fn heard_from(&mut self, id: NodeId, now: u64) -> bool {
        if id == self.me {
            return false;
        }
        match self.heard.insert(id, now) {
            Some(_) => false,
            None => {
                self.address(id).is_some() && !self.members.contains(&id) && self.leader != Some(id)
            }
        }
    }

    /// Forgets the nodes that sent nothing for `quiet` ticks. Returns whether the links to
    /// keep changed.
    pub fn forget_quiet(&mut self, now: u64, quiet: u64) -> bool {
        let before = self.links();
        self.heard.retain(|_, at| now.saturating_sub(*at) < quiet);
        self.links() != before
    }

    /// This node was removed and handed leadership to `successor`.
    pub fn set_successor(&mut self, successor: Option<NodeId>) {
        self.successor = successor;
    }

    /// Whom to send a client to: `leader`, or else the successor this node named when it was
    /// removed.
    pub fn redirect(&self, leader: Option<NodeId>) -> Option<NodeId> {
        leader.or(if self.is_member() {
            None
        } else {
            self.successor
        })
    }

    /// Where `id` can be reached, if known.
    pub fn address(&self, id: NodeId) -> Option<SocketAddr> {
        self.recorded
            .get(&id)
            .or_else(|| self.seeds.get(&id))
            .or_else(|| self.learned.get(&id))
            .copied()
    }

    /// Whether this node is a member of the configuration in force.
    pub fn is_member(&self) -> bool {
        self.members.contains(&self.me)
    }

    /// The peers to keep links to, with their addresses.
    pub fn links(&self) -> BTreeMap<NodeId, SocketAddr> {
        let mut ids: Vec<NodeId> = self.members.clone();
        ids.extend(self.leader);
        ids.extend(self.heard.keys());
        if !self.is_member() {
            ids.extend(self.seeds.keys());
            ids.extend(self.learned.keys());
        }
        ids.into_iter()
            .filter(|id| *id != self.me)
            .filter_map(|id| Some((id, self.address(id)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn config(voters: &[NodeId], learners: &[NodeId]) -> Membership {
        let data = voters
            .iter()
            .chain(learners)
            .map(|&id| (id, Bytes::from(format!("127.0.0.1:{}", 7000 + id))));
        Membership::new(voters.to_vec(), vec![], learners.to_vec(), data.collect()).unwrap()
    }

    #[test]
    fn the_configuration_wins_over_seeds_and_what_was_seen() {
        let mut book = AddressBook::new(1, [(2, addr(9002))].into());
        book.learn(3, addr(9003));
        assert_eq!(book.address(2), Some(addr(9002)));
        book.set_membership(&config(&[1, 2, 3], &[]));
        assert_eq!(book.address(2), Some(addr(7002)));
        assert_eq!(book.address(3), Some(addr(7003)));
        assert_eq!(
            book.links(),
            [(2, addr(7002)), (3, addr(7003))].into_iter().collect()
        );
    }

    #[test]
    fn a_joining_node_links_to_its_seeds_until_it_is_a_member() {
        let mut book = AddressBook::new(4, [(1, addr(7001)), (2, addr(7002))].into());
        assert!(!book.is_member());
        assert_eq!(book.links().len(), 2);
        // The leader (node 3, not a seed) dials in: its answers must get out.
        assert!(book.learn(3, addr(7003)));
        assert!(!book.learn(3, addr(7003)));
        assert_eq!(book.links().len(), 3);
        book.set_membership(&config(&[1, 3], &[4]));
        assert!(book.is_member());
        // Seed 2 is not a member: no link to it any more.
        assert_eq!(book.links().keys().copied().collect::<Vec<_>>(), vec![1, 3]);
    }

    #[test]
    fn a_removed_leader_keeps_its_link_while_it_leads() {
        let mut book = AddressBook::new(1, BTreeMap::new());
        book.set_membership(&config(&[1, 2, 3], &[]));
        book.learn(3, addr(7003));
        assert!(!book.set_leader(Some(3)));
        // Node 3 removed itself: it leads until its removal commits, and needs the answers.
        book.set_membership(&config(&[1, 2], &[]));
        assert_eq!(book.links().keys().copied().collect::<Vec<_>>(), vec![2, 3]);
        assert!(book.set_leader(Some(2)));
        assert_eq!(book.links().keys().copied().collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn nodes_that_spoke_lately_are_answered() {
        let mut book = AddressBook::new(1, BTreeMap::new());
        book.set_membership(&config(&[1, 2, 3], &[]));
        book.learn(4, addr(7004));
        assert!(!book.links().contains_key(&4));
        // A candidate this node does not know as a voter yet asks for its vote.
        assert!(book.heard_from(4, 10));
        assert!(!book.heard_from(4, 11));
        assert!(book.links().contains_key(&4));
        assert!(!book.heard_from(2, 11), "a member is linked anyway");
        assert!(!book.forget_quiet(30, 40));
        assert!(book.forget_quiet(60, 40));
        assert!(!book.links().contains_key(&4));
    }

    #[test]
    fn data_that_is_not_an_address_is_ignored() {
        let mut book = AddressBook::new(1, [(2, addr(7002))].into());
        let m = Membership::new(
            vec![1, 2],
            vec![],
            vec![],
            [(2, Bytes::from_static(b"\xff nowhere"))].into(),
        )
        .unwrap();
        book.set_membership(&m);
        assert_eq!(book.address(2), Some(addr(7002)));
    }
}
