//! Quorum arithmetic for majority and joint (old + new) voter sets.
//!
//! Kept apart from the protocol so that membership changes reuse it unchanged: a joint
//! configuration commits an index only when both majorities have it, and wins an election only
//! when both majorities grant.

use smallvec::SmallVec;

use crate::types::{Index, NodeId};

/// Outcome of counting votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteResult {
    /// A quorum granted.
    Won,
    /// Enough voters refused that no quorum can grant.
    Lost,
    /// Undecided yet.
    Pending,
}

/// A set of voters deciding by simple majority.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MajorityConfig {
    voters: SmallVec<[NodeId; 7]>,
}

impl MajorityConfig {
    /// A majority configuration of these voters (sorted, duplicates removed).
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Self {
        let mut v: SmallVec<[NodeId; 7]> = voters.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        MajorityConfig { voters: v }
    }

    /// The voters, sorted.
    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }

    /// Whether `id` is a voter.
    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.binary_search(&id).is_ok()
    }

    /// Number of voters needed for a majority.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// The highest index that a majority has reached, given each voter's acknowledged index
    /// (`None` counts as 0). An empty configuration returns `Index::MAX` so that it never
    /// holds back a joint configuration.
    pub fn committed_index(&self, acked: impl Fn(NodeId) -> Option<Index>) -> Index {
        if self.voters.is_empty() {
            return Index::MAX;
        }
        let mut idx: SmallVec<[Index; 7]> = self
            .voters
            .iter()
            .map(|&id| acked(id).unwrap_or(0))
            .collect();
        idx.sort_unstable_by(|a, b| b.cmp(a));
        idx[self.quorum() - 1]
    }

    /// Counts votes (`None` = no answer yet). An empty configuration wins.
    pub fn vote_result(&self, vote: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
        if self.voters.is_empty() {
            return VoteResult::Won;
        }
        let (mut yes, mut missing) = (0usize, 0usize);
        for &id in &self.voters {
            match vote(id) {
                Some(true) => yes += 1,
                Some(false) => {}
                None => missing += 1,
            }
        }
        let q = self.quorum();
        if yes >= q {
            VoteResult::Won
        } else if yes + missing >= q {
            VoteResult::Pending
        } else {
            VoteResult::Lost
        }
    }

    /// Whether the voters for which `active` holds form a majority.
    pub fn has_quorum(&self, active: impl Fn(NodeId) -> bool) -> bool {
        self.voters.is_empty()
            || self.voters.iter().filter(|&&id| active(id)).count() >= self.quorum()
    }
}

/// A voter configuration: the incoming set and, during a membership change, the outgoing set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JointConfig {
    incoming: MajorityConfig,
    outgoing: Option<MajorityConfig>,
}

impl JointConfig {
    /// A plain (non-joint) configuration.
    pub fn simple(voters: impl IntoIterator<Item = NodeId>) -> Self {
        JointConfig {
            incoming: MajorityConfig::new(voters),
            outgoing: None,
        }
    }

    /// A joint configuration of the new (`incoming`) and old (`outgoing`) voter sets.
    pub fn joint(
        incoming: impl IntoIterator<Item = NodeId>,
        outgoing: impl IntoIterator<Item = NodeId>,
    ) -> Self {
        JointConfig {
            incoming: MajorityConfig::new(incoming),
            outgoing: Some(MajorityConfig::new(outgoing)),
        }
    }

    /// The incoming voter set.
    pub fn incoming(&self) -> &MajorityConfig {
        &self.incoming
    }

    /// The outgoing voter set, during a joint phase.
    pub fn outgoing(&self) -> Option<&MajorityConfig> {
        self.outgoing.as_ref()
    }

    /// Whether `id` votes in either set.
    pub fn contains(&self, id: NodeId) -> bool {
        self.incoming.contains(id) || self.outgoing.as_ref().is_some_and(|o| o.contains(id))
    }

    /// All voters of both sets, sorted and without duplicates.
    pub fn ids(&self) -> SmallVec<[NodeId; 7]> {
        let mut v: SmallVec<[NodeId; 7]> = self.incoming.voters().iter().copied().collect();
        if let Some(o) = &self.outgoing {
            v.extend(o.voters().iter().copied());
        }
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The highest index committed by both sets.
    pub fn committed_index(&self, acked: impl Fn(NodeId) -> Option<Index> + Copy) -> Index {
        let a = self.incoming.committed_index(acked);
        match &self.outgoing {
            Some(o) => a.min(o.committed_index(acked)),
            None => a,
        }
    }

    /// Counts votes: won only if both sets won, lost if either lost.
    pub fn vote_result(&self, vote: impl Fn(NodeId) -> Option<bool> + Copy) -> VoteResult {
        let a = self.incoming.vote_result(vote);
        let b = match &self.outgoing {
            Some(o) => o.vote_result(vote),
            None => VoteResult::Won,
        };
        match (a, b) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }

    /// Whether the active voters form a quorum in both sets.
    pub fn has_quorum(&self, active: impl Fn(NodeId) -> bool + Copy) -> bool {
        self.incoming.has_quorum(active)
            && self.outgoing.as_ref().is_none_or(|o| o.has_quorum(active))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acked(pairs: &[(NodeId, Index)]) -> impl Fn(NodeId) -> Option<Index> + Copy + '_ {
        move |id| pairs.iter().find(|p| p.0 == id).map(|p| p.1)
    }

    #[test]
    fn majority_commit_index_is_the_median_reached_by_a_quorum() {
        let c = MajorityConfig::new([1, 2, 3]);
        assert_eq!(c.committed_index(acked(&[(1, 5), (2, 3), (3, 9)])), 5);
        assert_eq!(c.committed_index(acked(&[(1, 5)])), 0);
        let c5 = MajorityConfig::new([1, 2, 3, 4, 5]);
        assert_eq!(
            c5.committed_index(acked(&[(1, 10), (2, 9), (3, 1), (4, 2), (5, 8)])),
            8
        );
        let c4 = MajorityConfig::new([1, 2, 3, 4]);
        assert_eq!(
            c4.committed_index(acked(&[(1, 10), (2, 9), (3, 1), (4, 2)])),
            2
        );
        let c1 = MajorityConfig::new([7]);
        assert_eq!(c1.committed_index(acked(&[(7, 4)])), 4);
    }

    #[test]
    fn joint_commit_index_is_the_minimum_of_both_majorities() {
        let j = JointConfig::joint([1, 2, 3], [3, 4, 5]);
        let a = [(1, 10), (2, 10), (3, 4), (4, 2), (5, 7)];
        // incoming {1,2,3}: 10; outgoing {3,4,5}: 4
        assert_eq!(j.committed_index(acked(&a)), 4);
        assert_eq!(
            JointConfig::simple([1, 2, 3]).committed_index(acked(&a)),
            10
        );
        assert_eq!(j.ids().as_slice(), &[1, 2, 3, 4, 5]);
    }

    #[test]
    fn votes_win_lose_or_wait() {
        let c = MajorityConfig::new([1, 2, 3]);
        let v = |pairs: &'static [(NodeId, bool)]| {
            move |id: NodeId| pairs.iter().find(|p| p.0 == id).map(|p| p.1)
        };
        assert_eq!(c.vote_result(v(&[(1, true)])), VoteResult::Pending);
        assert_eq!(c.vote_result(v(&[(1, true), (2, true)])), VoteResult::Won);
        assert_eq!(
            c.vote_result(v(&[(1, true), (2, false), (3, false)])),
            VoteResult::Lost
        );
        assert_eq!(
            c.vote_result(v(&[(2, false), (3, false)])),
            VoteResult::Lost
        );
        let j = JointConfig::joint([1, 2, 3], [4, 5, 6]);
        assert_eq!(
            j.vote_result(v(&[(1, true), (2, true)])),
            VoteResult::Pending
        );
        assert_eq!(
            j.vote_result(v(&[(1, true), (2, true), (4, true), (5, true)])),
            VoteResult::Won
        );
        assert_eq!(
            j.vote_result(v(&[(1, true), (2, true), (4, false), (5, false)])),
            VoteResult::Lost
        );
    }

    #[test]
    fn quorum_activity() {
        let c = JointConfig::simple([1, 2, 3, 4, 5]);
        assert!(c.has_quorum(|id| id <= 3));
        assert!(!c.has_quorum(|id| id <= 2));
        let j = JointConfig::joint([1, 2, 3], [3, 4, 5]);
        assert!(!j.has_quorum(|id| id <= 3));
        assert!(j.has_quorum(|id| id != 5 && id != 1));
    }
}
