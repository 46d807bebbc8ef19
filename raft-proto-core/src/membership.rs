//! Cluster membership as replicated state: who votes (one voter set, or the incoming and
//! outgoing sets of a joint change), who only learns the log, and each member's opaque data
//! (the driver keeps its address there, so that a new node learns the cluster from the log).
//!
//! A [`Membership`] is a value: once built it is valid (ids non-zero, learners disjoint from
//! voters, data only for members), and the only ways to get another one are the checked
//! constructors, [`Membership::changed`] and [`Membership::leave_joint`]. Which membership is in
//! force at which log index is the business of `ConfigLog` in `tracker.rs`.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::types::{NodeId, NO_NODE};

/// Largest opaque data a member may carry (an address, a name), in bytes.
pub const MAX_NODE_DATA_BYTES: usize = 4096;

/// Largest number of members (voters and learners together) a membership may have.
pub const MAX_MEMBERS: usize = 64;

/// Who belongs to the cluster at a point of the log.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct Membership {
    /// The voters (the incoming set during a joint change), sorted.
    voters: Vec<NodeId>,
    /// The outgoing voter set during a joint change, sorted; empty otherwise.
    outgoing: Vec<NodeId>,
    /// Members that receive the log but never vote, sorted, disjoint from both voter sets.
    learners: Vec<NodeId>,
    /// Opaque data per member (members only).
    data: BTreeMap<NodeId, Bytes>,
}

/// Why a membership was refused (decoded from a peer or from storage, or built by hand).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMembership {
    /// Node id 0 is reserved for "no node".
    #[error("node id 0 is reserved")]
    ZeroId,
    /// A node is listed twice, or as both a voter and a learner.
    #[error("node {0} is listed more than once")]
    Duplicate(NodeId),
    /// A joint configuration with an empty voter set, or learners without voters.
    #[error("a membership with learners or an outgoing set needs voters")]
    NoVoters,
    /// Data for a node that is not a member.
    #[error("data for node {0}, which is not a member")]
    DataForNonMember(NodeId),
    /// A member's data is larger than [`MAX_NODE_DATA_BYTES`].
    #[error("the data of node {id} has {len} bytes (at most {MAX_NODE_DATA_BYTES})")]
    DataTooLarge {
        /// The member.
        id: NodeId,
        /// Its data's size.
        len: usize,
    },
    /// More than [`MAX_MEMBERS`] members.
    #[error("{0} members (at most {MAX_MEMBERS})")]
    TooManyMembers(usize),
}

/// One step of a membership change. Steps of one change apply together.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChangeStep {
    /// Add a node that receives the log but does not vote, with its opaque data (its address).
    AddLearner {
        /// The new node.
        id: NodeId,
        /// Its data.
        data: Bytes,
    },
    /// Make a learner a voter (refused until it has caught up with the leader's log).
    Promote {
        /// The learner.
        id: NodeId,
    },
    /// Remove a voter or a learner.
    Remove {
        /// The member.
        id: NodeId,
    },
    /// Replace a member's opaque data (its new address).
    SetData {
        /// The member.
        id: NodeId,
        /// Its new data.
        data: Bytes,
    },
}

impl ChangeStep {
    /// The node the step is about.
    pub fn id(&self) -> NodeId {
        match self {
            ChangeStep::AddLearner { id, .. }
            | ChangeStep::Promote { id }
            | ChangeStep::Remove { id }
            | ChangeStep::SetData { id, .. } => *id,
        }
    }
}

/// Why a membership change was refused. The cluster is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// Another change is not finished (its entry is not committed, or a joint configuration is
    /// not left yet); retry once it is.
    #[error("another membership change is in progress; retry when it is done")]
    InProgress,
    /// The leader has not committed an entry of its term yet; retry shortly.
    #[error("the leader is not ready for a membership change yet (nothing committed in its term); retry shortly")]
    LeaderNotReady,
    /// The change has no steps.
    #[error("the change has no steps")]
    Empty,
    /// Two steps name the same node.
    #[error("node {0} appears in more than one step")]
    DuplicateStep(NodeId),
    /// The node to add is already a member.
    #[error("node {0} is already a member")]
    AlreadyMember(NodeId),
    /// The node to promote is already a voter.
    #[error("node {0} is already a voter")]
    AlreadyVoter(NodeId),
    /// The node is not a member.
    #[error("node {0} is not a member")]
    UnknownNode(NodeId),
    /// The learner to promote is too far behind the leader's log.
    #[error("learner {id} is {behind} entries behind the leader (at most {max} to be promoted); retry when it has caught up")]
    LearnerBehind {
        /// The learner.
        id: NodeId,
        /// How many entries it lacks.
        behind: u64,
        /// The configured limit.
        max: u64,
    },
    /// The change would leave no voter.
    #[error("the change would remove the last voter")]
    NoVoters,
    /// The result is not a valid membership.
    #[error(transparent)]
    Invalid(#[from] InvalidMembership),
}

impl Membership {
    /// A plain configuration of these voters (sorted, duplicates and id 0 dropped).
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Self {
        Membership {
            voters: sorted(voters),
            ..Membership::default()
        }
    }

    /// A membership from its parts, checked.
    pub fn new(
        voters: Vec<NodeId>,
        outgoing: Vec<NodeId>,
        learners: Vec<NodeId>,
        data: BTreeMap<NodeId, Bytes>,
    ) -> Result<Self, InvalidMembership> {
        let m = Membership {
            voters: sorted_strict(voters)?,
            outgoing: sorted_strict(outgoing)?,
            learners: sorted_strict(learners)?,
            data,
        };
        m.validate()?;
        Ok(m)
    }

    /// The same membership with `data` as the opaque data of the members it names (checked).
    pub fn with_data(
        mut self,
        data: impl IntoIterator<Item = (NodeId, Bytes)>,
    ) -> Result<Self, InvalidMembership> {
        self.data.extend(data);
        self.validate()?;
        Ok(self)
    }

    fn validate(&self) -> Result<(), InvalidMembership> {
        if self.voters.is_empty() && !(self.outgoing.is_empty() && self.learners.is_empty()) {
            return Err(InvalidMembership::NoVoters);
        }
        for &l in &self.learners {
            if self.is_voter(l) {
                return Err(InvalidMembership::Duplicate(l));
            }
        }
        let members = self.members().len();
        if members > MAX_MEMBERS {
            return Err(InvalidMembership::TooManyMembers(members));
        }
        for (&id, d) in &self.data {
            if !self.contains(id) {
                return Err(InvalidMembership::DataForNonMember(id));
            }
            if d.len() > MAX_NODE_DATA_BYTES {
                return Err(InvalidMembership::DataTooLarge { id, len: d.len() });
            }
        }
        Ok(())
    }

    /// The voters (the incoming set during a joint change), sorted.
    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }

    /// The outgoing voter set of a joint change, sorted; empty otherwise.
    pub fn outgoing(&self) -> &[NodeId] {
        &self.outgoing
    }

    /// The learners, sorted.
    pub fn learners(&self) -> &[NodeId] {
        &self.learners
    }

    /// Each member's opaque data.
    pub fn node_data(&self) -> &BTreeMap<NodeId, Bytes> {
        &self.data
    }

    /// The opaque data of member `id`.
    pub fn data(&self, id: NodeId) -> Option<&Bytes> {
        self.data.get(&id)
    }

    /// Whether a joint change is in progress (two voter sets).
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Whether nothing is known (no voters): a node that waits to join a cluster.
    pub fn is_empty(&self) -> bool {
        self.voters.is_empty()
    }

    /// Whether `id` votes (in either set during a joint change).
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.binary_search(&id).is_ok() || self.outgoing.binary_search(&id).is_ok()
    }

    /// Whether `id` is a learner.
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.binary_search(&id).is_ok()
    }

    /// Whether `id` is a member (voter or learner).
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.is_learner(id)
    }

    /// Every voter of both sets, sorted.
    pub fn all_voters(&self) -> Vec<NodeId> {
        sorted(self.voters.iter().chain(&self.outgoing).copied())
    }

    /// Every member, sorted.
    pub fn members(&self) -> Vec<NodeId> {
        sorted(
            self.voters
                .iter()
                .chain(&self.outgoing)
                .chain(&self.learners)
                .copied(),
        )
    }

    /// The membership after `steps`: a plain configuration when at most one voter changes,
    /// otherwise a joint configuration of the new voters (incoming) and the current ones
    /// (outgoing), to be left with [`Membership::leave_joint`] once it is committed. Checks
    /// everything a membership alone can tell (whether a learner has caught up is for the
    /// leader to check).
    pub fn changed(&self, steps: &[ChangeStep]) -> Result<Membership, ChangeError> {
        if self.is_joint() {
            return Err(ChangeError::InProgress);
        }
        if steps.is_empty() {
            return Err(ChangeError::Empty);
        }
        let mut seen: Vec<NodeId> = steps.iter().map(ChangeStep::id).collect();
        seen.sort_unstable();
        if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
            return Err(ChangeError::DuplicateStep(w[0]));
        }
        let mut voters = self.voters.clone();
        let mut learners = self.learners.clone();
        let mut data = self.data.clone();
        for step in steps {
            let id = step.id();
            if id == NO_NODE {
                return Err(InvalidMembership::ZeroId.into());
            }
            match step {
                ChangeStep::AddLearner { data: d, .. } => {
                    if self.contains(id) {
                        return Err(ChangeError::AlreadyMember(id));
                    }
                    learners.push(id);
                    data.insert(id, d.clone());
                }
                ChangeStep::Promote { .. } => {
                    if self.is_voter(id) {
                        return Err(ChangeError::AlreadyVoter(id));
                    }
                    if !self.is_learner(id) {
                        return Err(ChangeError::UnknownNode(id));
                    }
                    learners.retain(|&l| l != id);
                    voters.push(id);
                }
                ChangeStep::Remove { .. } => {
                    if !self.contains(id) {
                        return Err(ChangeError::UnknownNode(id));
                    }
                    learners.retain(|&l| l != id);
                    voters.retain(|&v| v != id);
                    data.remove(&id);
                }
                ChangeStep::SetData { data: d, .. } => {
                    if !self.contains(id) {
                        return Err(ChangeError::UnknownNode(id));
                    }
                    data.insert(id, d.clone());
                }
            }
        }
        let voters = sorted(voters);
        if voters.is_empty() {
            return Err(ChangeError::NoVoters);
        }
        let changed_voters = voters
            .iter()
            .filter(|v| !self.voters.contains(v))
            .chain(self.voters.iter().filter(|v| !voters.contains(v)))
            .count();
        let outgoing = if changed_voters > 1 {
            // Voters leaving keep their data until the joint configuration is left.
            for &v in &self.voters {
                if let Some(d) = self.data.get(&v) {
                    data.entry(v).or_insert_with(|| d.clone());
                }
            }
            self.voters.clone()
        } else {
            Vec::new()
        };
        Ok(Membership::new(voters, outgoing, learners, data)?)
    }

    /// The plain configuration that ends a joint change: the incoming voters and the learners.
    pub fn leave_joint(&self) -> Membership {
        let mut m = Membership {
            voters: self.voters.clone(),
            outgoing: Vec::new(),
            learners: self.learners.clone(),
            data: BTreeMap::new(),
        };
        m.data = self
            .data
            .iter()
            .filter(|(id, _)| m.contains(**id))
            .map(|(&id, d)| (id, d.clone()))
            .collect();
        m
    }
}

impl std::fmt::Display for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "voters {:?}", self.voters)?;
        if self.is_joint() {
            write!(f, " joint with {:?}", self.outgoing)?;
        }
        if !self.learners.is_empty() {
            write!(f, ", learners {:?}", self.learners)?;
        }
        Ok(())
    }
}

fn sorted(ids: impl IntoIterator<Item = NodeId>) -> Vec<NodeId> {
    let mut v: Vec<NodeId> = ids.into_iter().filter(|&id| id != NO_NODE).collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn sorted_strict(mut ids: Vec<NodeId>) -> Result<Vec<NodeId>, InvalidMembership> {
    ids.sort_unstable();
    if ids.first() == Some(&NO_NODE) {
        return Err(InvalidMembership::ZeroId);
    }
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(InvalidMembership::Duplicate(w[0]));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(id: NodeId) -> ChangeStep {
        ChangeStep::AddLearner {
            id,
            data: Bytes::from(format!("n{id}")),
        }
    }

    #[test]
    fn one_voter_changes_directly_more_go_through_a_joint_configuration() {
        let m = Membership::with_voters([1, 2, 3]);
        let m = m.changed(&[add(4), add(5)]).expect("learners");
        assert_eq!(m.learners(), &[4, 5]);
        assert!(!m.is_joint(), "learners do not change the voters");
        let one = m.changed(&[ChangeStep::Promote { id: 4 }]).expect("one");
        assert_eq!(one.voters(), &[1, 2, 3, 4]);
        assert!(!one.is_joint());
        let two = m
            .changed(&[ChangeStep::Promote { id: 4 }, ChangeStep::Promote { id: 5 }])
            .expect("two");
        assert!(two.is_joint());
        assert_eq!(two.voters(), &[1, 2, 3, 4, 5]);
        assert_eq!(two.outgoing(), &[1, 2, 3]);
        assert_eq!(
            two.changed(&[ChangeStep::Remove { id: 1 }]),
            Err(ChangeError::InProgress)
        );
        let left = two.leave_joint();
        assert_eq!(left.voters(), &[1, 2, 3, 4, 5]);
        assert!(!left.is_joint());
        assert_eq!(left.data(5).map(|d| &d[..]), Some(&b"n5"[..]));
    }

    #[test]
    fn a_replacement_keeps_the_leaving_voters_data_until_the_joint_phase_ends() {
        let m = Membership::with_voters([1, 2, 3])
            .with_data([(1, Bytes::from_static(b"a1"))])
            .expect("data");
        let m = m.changed(&[add(4)]).expect("learner");
        let swap = m
            .changed(&[ChangeStep::Promote { id: 4 }, ChangeStep::Remove { id: 1 }])
            .expect("swap");
        assert!(swap.is_joint());
        assert!(swap.is_voter(1), "still votes in the outgoing set");
        assert!(swap.data(1).is_some());
        let left = swap.leave_joint();
        assert!(!left.contains(1));
        assert!(left.data(1).is_none());
        assert_eq!(left.voters(), &[2, 3, 4]);
    }

    #[test]
    fn bad_changes_are_refused() {
        let m = Membership::with_voters([1, 2])
            .changed(&[add(3)])
            .expect("ok");
        assert_eq!(m.changed(&[]), Err(ChangeError::Empty));
        assert_eq!(m.changed(&[add(1)]), Err(ChangeError::AlreadyMember(1)));
        assert_eq!(m.changed(&[add(3)]), Err(ChangeError::AlreadyMember(3)));
        assert_eq!(
            m.changed(&[ChangeStep::Promote { id: 9 }]),
            Err(ChangeError::UnknownNode(9))
        );
        assert_eq!(
            m.changed(&[ChangeStep::Promote { id: 1 }]),
            Err(ChangeError::AlreadyVoter(1))
        );
        assert_eq!(
            m.changed(&[ChangeStep::Remove { id: 7 }]),
            Err(ChangeError::UnknownNode(7))
        );
        assert_eq!(
            m.changed(&[ChangeStep::Remove { id: 1 }, ChangeStep::Remove { id: 2 }]),
            Err(ChangeError::NoVoters)
        );
        assert_eq!(
            m.changed(&[add(5), ChangeStep::Remove { id: 5 }]),
            Err(ChangeError::DuplicateStep(5))
        );
        assert_eq!(
            m.changed(&[add(0)]),
            Err(ChangeError::Invalid(InvalidMembership::ZeroId))
        );
        let big = ChangeStep::AddLearner {
            id: 8,
            data: Bytes::from(vec![0; MAX_NODE_DATA_BYTES + 1]),
        };
        assert!(matches!(
            m.changed(&[big]),
            Err(ChangeError::Invalid(InvalidMembership::DataTooLarge {
                id: 8,
                ..
            }))
        ));
    }

    #[test]
    fn construction_checks_the_invariants() {
        let d = |id| (id, Bytes::new());
        assert!(Membership::new(vec![1, 2], vec![], vec![3], BTreeMap::from([d(3)])).is_ok());
        assert_eq!(
            Membership::new(vec![1, 2], vec![], vec![2], BTreeMap::new()),
            Err(InvalidMembership::Duplicate(2))
        );
        assert_eq!(
            Membership::new(vec![1, 1], vec![], vec![], BTreeMap::new()),
            Err(InvalidMembership::Duplicate(1))
        );
        assert_eq!(
            Membership::new(vec![], vec![1], vec![], BTreeMap::new()),
            Err(InvalidMembership::NoVoters)
        );
        assert_eq!(
            Membership::new(vec![1], vec![], vec![], BTreeMap::from([d(4)])),
            Err(InvalidMembership::DataForNonMember(4))
        );
        assert_eq!(
            Membership::new(vec![0, 1], vec![], vec![], BTreeMap::new()),
            Err(InvalidMembership::ZeroId)
        );
        assert!(Membership::default().is_empty());
    }
}
