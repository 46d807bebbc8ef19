//! Membership churn: an operator that changes the cluster's membership while it runs, the way
//! an impatient administrator would, and transfers leadership now and then.
//!
//! The plan is a sequence of target voter sets: from 3 initial voters, 3 -> 5 -> 7 -> 3 (and,
//! in some seeds, a final replacement of one voter); from 4 or 5, up by two, down to 3, up by
//! two. New voters are always fresh nodes, started at the beginning with no configuration
//! (they wait to join). Some seeds also keep an observer: a learner that is never promoted.
//!
//! Every few ticks the operator asks the current leader to move one step towards the next
//! target: add the new nodes as learners, then promote them and remove the voters that leave,
//! all in one change (through a joint configuration when more than one voter changes) or one
//! voter at a time (the direct path). It does not wait for the previous change to finish: the
//! leader must refuse a change while another is in flight. Removing voters removes the leader
//! itself in many seeds. Once the plan is done, further targets are drawn at random from every
//! node of the run, so removed nodes come back (as learners first, with their old logs).

use raft_proto_core::{ChangeStep, Input, NodeId};

use super::{Ev, Sim, TICK_US};
use crate::rng::SimRng;
use crate::trace::tag;

/// Request ids of the operator's changes and transfers (clients' requests count from 1).
pub(super) const CHURN_REQUEST_BASE: u64 = 1 << 62;

/// The operator's plan and where it stands.
#[derive(Debug)]
pub(super) struct Churn {
    rng: SimRng,
    /// Target voter sets, sorted, in order.
    plan: Vec<Vec<NodeId>>,
    stage: usize,
    /// A learner kept as such (never promoted), added first.
    observer: Option<NodeId>,
    /// Every node id the run uses, initial voters and fresh ones.
    total: usize,
    next_request: u64,
    /// Changes and transfers asked for.
    pub(super) asked: u64,
}

impl Churn {
    /// A plan for a cluster of `n` initial voters, or `None` when it would need more than the
    /// simulator's nine nodes.
    pub(super) fn new(mut rng: SimRng, n: usize) -> Option<Churn> {
        if n == 0 || n > 5 {
            return None;
        }
        let mut voters: Vec<NodeId> = (1..=n as NodeId).collect();
        let mut next = n as NodeId + 1;
        let mut plan = Vec::new();
        let grow = |voters: &mut Vec<NodeId>, next: &mut NodeId| {
            voters.extend([*next, *next + 1]);
            *next += 2;
        };
        let shrink = |rng: &mut SimRng, voters: &mut Vec<NodeId>| {
            while voters.len() > 3 {
                let k = rng.index(voters.len());
                voters.remove(k);
            }
        };
        if n <= 3 {
            grow(&mut voters, &mut next);
            plan.push(voters.clone());
            grow(&mut voters, &mut next);
            plan.push(voters.clone());
            shrink(&mut rng, &mut voters);
            plan.push(voters.clone());
        } else {
            grow(&mut voters, &mut next);
            plan.push(voters.clone());
            shrink(&mut rng, &mut voters);
            plan.push(voters.clone());
            grow(&mut voters, &mut next);
            plan.push(voters.clone());
        }
        let observer = (next <= 9 && rng.chance(0.5)).then(|| {
            next += 1;
            next - 1
        });
        if next <= 9 && rng.chance(0.5) {
            // Replace one voter by a fresh node: two voters change, a joint configuration.
            let k = rng.index(voters.len());
            voters[k] = next;
            voters.sort_unstable();
            next += 1;
            plan.push(voters.clone());
        }
        Some(Churn {
            rng,
            plan,
            stage: 0,
            observer,
            total: next as usize - 1,
            next_request: CHURN_REQUEST_BASE,
            asked: 0,
        })
    }

    /// Nodes the run needs.
    pub(super) fn total(&self) -> usize {
        self.total
    }

    /// Delay before the operator's first move.
    pub(super) fn first_delay(&mut self) -> u64 {
        self.rng.range(30 * TICK_US, 150 * TICK_US)
    }

    /// Once the plan is done: a further target of 3 or 5 voters drawn from every node of the
    /// run, removed ones included (they come back as learners first, with whatever their
    /// logs and configurations still say).
    fn extend_plan(&mut self) {
        let mut pool: Vec<NodeId> = (1..=self.total as NodeId)
            .filter(|id| Some(*id) != self.observer)
            .collect();
        let size = if pool.len() >= 5 && self.rng.chance(0.5) {
            5
        } else {
            3
        }
        .min(pool.len());
        let mut target = Vec::with_capacity(size);
        while target.len() < size {
            let k = self.rng.index(pool.len());
            target.push(pool.swap_remove(k));
        }
        target.sort_unstable();
        self.plan.push(target);
    }

    fn request(&mut self) -> u64 {
        self.next_request += 1;
        self.asked += 1;
        self.next_request
    }
}

impl Sim {
    /// One move of the operator; schedules the next until the faults heal.
    pub(super) fn churn_step(&mut self) {
        if self.healed_at.is_some() {
            return;
        }
        let Some(mut churn) = self.churn.take() else {
            return;
        };
        let next = churn.rng.range(5 * TICK_US, 60 * TICK_US);
        self.at(next, Ev::Churn);
        if let Some(leader) = self.current_leader() {
            self.churn_move(&mut churn, leader);
        }
        self.churn = Some(churn);
    }

    fn churn_move(&mut self, churn: &mut Churn, leader: usize) {
        let Some(raft) = self.nodes[leader].raft.as_ref() else {
            return;
        };
        let m = raft.membership().1.clone();
        if churn.rng.chance(0.15) {
            // Hand leadership to a voter (or to the most caught-up one), maybe to a learner or
            // a node outside the cluster, which the leader must refuse.
            let pick = churn.rng.index(m.voters().len() + 2);
            let to = match pick {
                0 => None,
                1 => Some(churn.rng.range(1, churn.total as u64 + 1)),
                _ => m.voters().get(pick - 2).copied(),
            };
            let request = churn.request();
            self.trace.record(
                self.now,
                &[tag("transfer"), leader as u64 + 1, to.unwrap_or(0)],
                || format!("operator: n{} hand leadership to {to:?}", leader + 1),
            );
            self.step(leader, Input::TransferLeadership { request, to });
            return;
        }
        if churn.stage == churn.plan.len() {
            churn.extend_plan();
        }
        let Some(target) = churn.plan.get(churn.stage).cloned() else {
            return;
        };
        if m.voters() == target.as_slice() && !m.is_joint() {
            churn.stage += 1;
            return;
        }
        let mut steps = Vec::new();
        if let Some(o) = churn.observer.filter(|o| !m.contains(*o)) {
            if churn.stage == 0 {
                steps.push(ChangeStep::AddLearner {
                    id: o,
                    data: bytes::Bytes::from(format!("n{o}")),
                });
            }
        }
        let fresh: Vec<NodeId> = target
            .iter()
            .copied()
            .filter(|id| !m.contains(*id))
            .collect();
        if !fresh.is_empty() || !steps.is_empty() {
            for id in fresh {
                steps.push(ChangeStep::AddLearner {
                    id,
                    data: bytes::Bytes::from(format!("n{id}")),
                });
            }
        } else {
            for &id in m.learners() {
                if target.contains(&id) {
                    steps.push(ChangeStep::Promote { id });
                }
            }
            for &id in m.voters() {
                if !target.contains(&id) {
                    steps.push(ChangeStep::Remove { id });
                }
            }
        }
        if steps.len() > 1 && churn.rng.chance(0.5) {
            // One voter at a time: the direct path.
            let k = churn.rng.index(steps.len());
            steps = vec![steps.swap_remove(k)];
        }
        if steps.is_empty() {
            return;
        }
        let request = churn.request();
        let text = format!("{steps:?}");
        self.trace
            .record(self.now, &[tag("change"), leader as u64 + 1], || {
                format!("operator: n{} change {text}", leader + 1)
            });
        self.step(leader, Input::ChangeMembership { request, steps });
    }
}
