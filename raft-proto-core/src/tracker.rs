//! The tracker: which configuration is in force, every peer's replication progress, and all
//! counting that depends on the configuration (commit, votes, CheckQuorum).
//!
//! A configuration takes effect when its entry is appended to the log, not when it commits
//! (section 4.1 of Ongaro's thesis): a node always uses the latest configuration in its log.
//! The rule this needs is that a configuration goes away with its entry: when a follower's log
//! is cut, the configuration falls back to the latest one still in the log. `ConfigLog` keeps
//! the configurations of the log for that (one per configuration entry above the floor, which
//! are few), and the configuration at any index for snapshots.

use std::collections::VecDeque;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::membership::Membership;
use crate::progress::Progress;
use crate::quorum::{JointConfig, VoteResult};
use crate::types::{Index, NodeId};

/// The configurations in the log: the one in force at and below `base.0` (from a snapshot,
/// from a configuration entry, or the initial one from `Config`), and one per configuration
/// entry above it.
#[derive(Debug, Clone)]
pub(crate) struct ConfigLog {
    base: (Index, Arc<Membership>),
    /// Whether the base is recorded in the log or in a snapshot (false: it is the initial
    /// configuration of `Config`, which no entry holds yet).
    base_recorded: bool,
    /// Configuration entries above the base: (index, membership), increasing.
    changes: VecDeque<(Index, Arc<Membership>)>,
}

impl ConfigLog {
    pub(crate) fn new(index: Index, base: Arc<Membership>, recorded: bool) -> Self {
        ConfigLog {
            base: (index, base),
            base_recorded: recorded,
            changes: VecDeque::new(),
        }
    }

    /// The latest configuration and the index of its entry (the base's index if none).
    pub(crate) fn latest(&self) -> (Index, &Arc<Membership>) {
        match self.changes.back() {
            Some((i, m)) => (*i, m),
            None => (self.base.0, &self.base.1),
        }
    }

    /// The configuration in force at `index` (the base for anything at or below it).
    pub(crate) fn at(&self, index: Index) -> &Arc<Membership> {
        let k = self.changes.partition_point(|(i, _)| *i <= index);
        match k.checked_sub(1).and_then(|k| self.changes.get(k)) {
            Some((_, m)) => m,
            None => &self.base.1,
        }
    }

    /// Whether the latest configuration is held by an entry or a snapshot.
    pub(crate) fn recorded(&self) -> bool {
        self.base_recorded || !self.changes.is_empty()
    }

    /// A configuration entry at `index` (above every one known) was appended.
    pub(crate) fn push(&mut self, index: Index, m: Arc<Membership>) {
        debug_assert!(index > self.latest().0 || !self.recorded());
        self.changes.push_back((index, m));
    }

    /// The log was cut from `index` on: configurations of entries there are gone. Returns
    /// whether the latest configuration changed.
    fn truncate_from(&mut self, index: Index) -> bool {
        let before = self.changes.len();
        while self.changes.back().is_some_and(|(i, _)| *i >= index) {
            self.changes.pop_back();
        }
        self.changes.len() != before
    }

    /// The log forgot everything up to `index`: fold older configurations into the base.
    fn compact_to(&mut self, index: Index) {
        while self.changes.front().is_some_and(|(i, _)| *i <= index) {
            if let Some(first) = self.changes.pop_front() {
                self.base = first;
                self.base_recorded = true;
            }
        }
    }

    /// A snapshot at `index` with membership `m` was installed; configuration entries above it
    /// stay if the log was kept (`keep`), else they go with the log.
    fn install(&mut self, index: Index, m: Arc<Membership>, keep: bool) {
        if keep {
            while self.changes.front().is_some_and(|(i, _)| *i <= index) {
                self.changes.pop_front();
            }
        } else {
            self.changes.clear();
        }
        self.base = (index, m);
        self.base_recorded = true;
    }
}

/// The configuration in force, with what derives from it, and the leader's per-peer progress.
#[derive(Debug, Clone)]
pub(crate) struct Tracker {
    me: NodeId,
    configs: ConfigLog,
    /// The voter sets of the latest configuration.
    voters: JointConfig,
    /// On a leader: one entry per member other than this node, sorted by id.
    progress: Vec<Progress>,
    /// Whether `progress` is kept (this node leads), with the in-flight window for new peers.
    leading: Option<usize>,
    /// Votes received in the current (pre-)election.
    votes: SmallVec<[(NodeId, bool); 7]>,
}

impl Tracker {
    pub(crate) fn new(me: NodeId, configs: ConfigLog) -> Self {
        let mut t = Tracker {
            me,
            configs,
            voters: JointConfig::default(),
            progress: Vec::new(),
            leading: None,
            votes: SmallVec::new(),
        };
        t.refresh(0);
        t
    }

    // ----- the configuration -----

    /// The latest configuration (in force) and the index of its entry.
    pub(crate) fn membership(&self) -> (Index, &Arc<Membership>) {
        self.configs.latest()
    }

    /// The configuration in force at `index` (for a snapshot's metadata).
    pub(crate) fn membership_at(&self, index: Index) -> &Arc<Membership> {
        self.configs.at(index)
    }

    /// Whether the configuration in force is held by an entry or a snapshot (not only by
    /// `Config`).
    pub(crate) fn recorded(&self) -> bool {
        self.configs.recorded()
    }

    pub(crate) fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(id)
    }

    /// Whether this node votes in the configuration in force.
    pub(crate) fn i_vote(&self) -> bool {
        self.voters.contains(self.me)
    }

    /// Voters of both sets other than this node, sorted.
    pub(crate) fn other_voters(&self) -> SmallVec<[NodeId; 7]> {
        let me = self.me;
        let mut ids = self.voters.ids();
        ids.retain(|id| *id != me);
        ids
    }

    /// A configuration entry at `index` was appended (on a leader, as the last entry).
    pub(crate) fn push_config(&mut self, index: Index, m: Arc<Membership>) {
        self.configs.push(index, m);
        self.refresh(index + 1);
    }

    /// The log was cut from `index` on. Returns whether the configuration in force changed.
    pub(crate) fn truncate_from(&mut self, index: Index) -> bool {
        let changed = self.configs.truncate_from(index);
        if changed {
            self.refresh(index);
        }
        changed
    }

    /// The log forgot everything up to `index`.
    pub(crate) fn compact_to(&mut self, index: Index) {
        self.configs.compact_to(index);
    }

    /// A snapshot at `index` was installed (see `ConfigLog::install`). Returns whether the
    /// configuration in force changed.
    pub(crate) fn install(&mut self, index: Index, m: Arc<Membership>, keep: bool) -> bool {
        let before = self.membership().1.clone();
        self.configs.install(index, m, keep);
        let changed = *self.membership().1 != before;
        if changed {
            self.refresh(index + 1);
        }
        changed
    }

    /// Re-derives the voter sets and, on a leader, the progress list (new members start
    /// probing at `next`; members that left are dropped with their transfers).
    fn refresh(&mut self, next: Index) {
        let m = self.configs.latest().1.clone();
        self.voters = if m.is_joint() {
            JointConfig::joint(m.voters().iter().copied(), m.outgoing().iter().copied())
        } else {
            JointConfig::simple(m.voters().iter().copied())
        };
        if let Some(window) = self.leading {
            let me = self.me;
            let members: Vec<NodeId> = m.members().into_iter().filter(|&id| id != me).collect();
            self.progress
                .retain(|p| members.binary_search(&p.id()).is_ok());
            for id in members {
                if let Err(at) = self.progress.binary_search_by_key(&id, Progress::id) {
                    self.progress.insert(at, Progress::new(id, next, window));
                }
            }
        }
    }

    // ----- leading -----

    /// This node became leader: every other member starts probing at `next`.
    pub(crate) fn start_leading(&mut self, next: Index, window: usize) {
        self.progress.clear();
        self.leading = Some(window);
        self.refresh(next);
    }

    pub(crate) fn stop_leading(&mut self) {
        self.leading = None;
        self.progress.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.progress.len()
    }

    pub(crate) fn pr(&self, i: usize) -> &Progress {
        &self.progress[i]
    }

    pub(crate) fn pr_mut(&mut self, i: usize) -> &mut Progress {
        &mut self.progress[i]
    }

    pub(crate) fn progress(&self) -> &[Progress] {
        &self.progress
    }

    pub(crate) fn index_of(&self, id: NodeId) -> Option<usize> {
        self.progress.binary_search_by_key(&id, Progress::id).ok()
    }

    /// The highest index a quorum of voters holds durably, this node counting with `stable`
    /// if it votes.
    pub(crate) fn committed_index(&self, stable: Index) -> Index {
        let me = self.me;
        let progress = &self.progress;
        self.voters.committed_index(|id| {
            if id == me {
                Some(stable)
            } else {
                progress
                    .binary_search_by_key(&id, Progress::id)
                    .ok()
                    .map(|i| progress[i].matched())
            }
        })
    }

    /// CheckQuorum: whether a quorum of voters was heard from since the last round (this node
    /// counting if it votes); starts the next round.
    pub(crate) fn quorum_active(&mut self) -> bool {
        let me = self.me;
        let progress = &self.progress;
        let active = self.voters.has_quorum(|id| {
            id == me
                || progress
                    .binary_search_by_key(&id, Progress::id)
                    .is_ok_and(|i| progress[i].recent_active())
        });
        for p in &mut self.progress {
            p.take_active();
        }
        active
    }

    // ----- votes -----

    pub(crate) fn reset_votes(&mut self) {
        self.votes.clear();
    }

    /// Records `from`'s answer (the first one counts) and tells where the election stands.
    /// Only voters of the configuration in force count.
    pub(crate) fn record_vote(&mut self, from: NodeId, granted: bool) -> VoteResult {
        if !self.votes.iter().any(|v| v.0 == from) {
            self.votes.push((from, granted));
        }
        let votes = &self.votes;
        self.voters
            .vote_result(|id| votes.iter().find(|v| v.0 == id).map(|v| v.1))
    }

    /// Whether this node's own vote is among those recorded (granted).
    pub(crate) fn voted_for_myself(&self) -> bool {
        let me = self.me;
        self.votes.iter().any(|&(id, granted)| id == me && granted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::ChangeStep;

    fn arc(m: Membership) -> Arc<Membership> {
        Arc::new(m)
    }

    #[test]
    fn the_configuration_in_force_follows_the_log() {
        let base = arc(Membership::with_voters([1, 2, 3]));
        let mut t = Tracker::new(1, ConfigLog::new(0, base.clone(), false));
        assert!(!t.recorded());
        let with4 = arc(base
            .changed(&[ChangeStep::AddLearner {
                id: 4,
                data: bytes::Bytes::new(),
            }])
            .expect("change"));
        t.push_config(5, with4.clone());
        assert!(t.recorded());
        assert!(t.membership().1.contains(4) && !t.is_voter(4));
        let promoted = arc(with4
            .changed(&[ChangeStep::Promote { id: 4 }])
            .expect("promote"));
        t.push_config(9, promoted);
        assert!(t.is_voter(4));
        assert_eq!(**t.membership_at(8), *with4);
        assert_eq!(**t.membership_at(4), *base);
        // Cutting the log at 9 takes the promotion away.
        assert!(t.truncate_from(9));
        assert!(!t.is_voter(4) && t.membership().1.contains(4));
        assert!(!t.truncate_from(20), "nothing there");
        t.compact_to(6);
        assert_eq!(**t.membership_at(2), *with4, "folded into the base");
        assert_eq!(t.membership().0, 5);
    }

    #[test]
    fn a_leader_tracks_every_member_and_counts_only_voters() {
        let m = arc(Membership::with_voters([1, 2, 3])
            .changed(&[ChangeStep::AddLearner {
                id: 4,
                data: bytes::Bytes::new(),
            }])
            .expect("learner"));
        let mut t = Tracker::new(1, ConfigLog::new(3, m, true));
        t.start_leading(4, 8);
        let ids: Vec<NodeId> = t.progress().iter().map(Progress::id).collect();
        assert_eq!(ids, vec![2, 3, 4]);
        // The learner's acknowledgement never commits anything.
        let i4 = t.index_of(4).expect("learner tracked");
        t.pr_mut(i4).ack(3);
        assert_eq!(t.committed_index(3), 0);
        let i2 = t.index_of(2).expect("voter");
        t.pr_mut(i2).ack(3);
        assert_eq!(t.committed_index(3), 3);
        // Votes: the learner's grant does not count.
        t.reset_votes();
        assert_eq!(t.record_vote(1, true), VoteResult::Pending);
        assert_eq!(t.record_vote(4, true), VoteResult::Pending);
        assert_eq!(t.record_vote(3, true), VoteResult::Won);
    }

    #[test]
    fn a_joint_configuration_needs_both_majorities() {
        let m = arc(Membership::with_voters([1, 2, 3])
            .changed(&[
                ChangeStep::AddLearner {
                    id: 4,
                    data: bytes::Bytes::new(),
                },
                ChangeStep::AddLearner {
                    id: 5,
                    data: bytes::Bytes::new(),
                },
            ])
            .expect("learners"));
        let joint = arc(m
            .changed(&[
                ChangeStep::Promote { id: 4 },
                ChangeStep::Promote { id: 5 },
                ChangeStep::Remove { id: 2 },
                ChangeStep::Remove { id: 3 },
            ])
            .expect("joint"));
        assert!(joint.is_joint());
        let mut t = Tracker::new(1, ConfigLog::new(7, joint, true));
        t.start_leading(8, 8);
        for id in [4, 5] {
            let i = t.index_of(id).expect("tracked");
            t.pr_mut(i).ack(7);
        }
        assert_eq!(t.committed_index(7), 0, "the new set alone cannot commit");
        let i2 = t.index_of(2).expect("tracked");
        t.pr_mut(i2).ack(7);
        assert_eq!(t.committed_index(7), 7);
    }
}
