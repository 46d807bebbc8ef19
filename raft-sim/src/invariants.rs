//! Raft's safety properties, checked after every step of a run.
//!
//! - Election safety: at most one leader per term.
//! - Committed entries never change or disappear: the first time any node commits an index, the
//!   entry becomes ground truth; every node's committed prefix must equal it, always.
//! - Leader completeness: a node that becomes leader holds every committed entry.
//! - State machine safety: every node applies exactly the ground-truth entry at each index, in
//!   order.
//! - Log matching: two logs with an entry of the same term at the same index agree on every
//!   entry up to there (checked periodically and at the end; it is the costliest check).
//! - Nothing goes backwards: term and commit within a node's life; across a restart, term, vote
//!   and commit are at least what was durable before the crash.

use std::collections::BTreeMap;

use raft_proto_core::{Entry, EntryKind, HardState, Index, NodeId, RaftNode, Role, Term};

/// A broken safety property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Virtual time in microseconds.
    pub time: u64,
    /// Which property.
    pub property: &'static str,
    /// What was seen.
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "at {:.3}ms: {}: {}",
            self.time as f64 / 1000.0,
            self.property,
            self.detail
        )
    }
}

#[derive(Debug, Clone, Default)]
struct NodeTrack {
    term: Term,
    vote: NodeId,
    commit: Index,
    /// Committed prefix already compared with the ground truth.
    checked: Index,
    applied: Index,
    was_leader_in: Option<Term>,
    /// Since when (virtual µs) the node leads with its removal committed.
    removed_leading_since: Option<u64>,
    /// Last hard state known durable on the node's disk.
    durable: HardState,
}

/// The checker's memory of a run.
#[derive(Debug, Clone, Default)]
pub struct Invariants {
    leaders: BTreeMap<Term, NodeId>,
    committed: Vec<Entry>,
    /// For each committed entry, the term of the first node seen to commit it: the entry was
    /// committed in that term or an earlier one.
    committed_by: Vec<Term>,
    nodes: Vec<NodeTrack>,
    violations: Vec<Violation>,
    /// Digest of the state machine after applying each index some node snapshotted at.
    digests: BTreeMap<Index, u64>,
}

fn same(a: &Entry, b: &Entry) -> bool {
    a.term == b.term && a.index == b.index && a.kind == b.kind && a.data == b.data
}

/// Whether `raft`'s log holds `truth` as far as it can tell: the very entry when it is in
/// memory, the same term at that index when only its term is known (the entry left memory),
/// or an index the node compacted into a snapshot (checked through the snapshot's state).
fn holds(raft: &RaftNode, truth: &Entry) -> bool {
    if truth.index <= raft.log_floor().index {
        return true;
    }
    match raft.entry(truth.index) {
        Some(e) => same(e, truth),
        None => raft.log_term(truth.index) == Some(truth.term),
    }
}

impl Invariants {
    /// A checker for `n` nodes (indexes `0..n`, node ids `1..=n`).
    pub fn new(n: usize) -> Self {
        Invariants {
            nodes: vec![NodeTrack::default(); n],
            ..Invariants::default()
        }
    }

    /// Violations found so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Length of the committed prefix known so far.
    pub fn committed_len(&self) -> Index {
        self.committed.len() as Index
    }

    /// Configuration entries in the committed prefix.
    pub fn committed_configs(&self) -> u64 {
        self.committed
            .iter()
            .filter(|e| e.kind == EntryKind::Config)
            .count() as u64
    }

    /// Records a violation found outside the checks of this module.
    pub fn report(&mut self, time: u64, property: &'static str, detail: String) {
        self.fail(time, property, detail);
    }

    fn fail(&mut self, time: u64, property: &'static str, detail: String) {
        if self.violations.len() < 20 {
            self.violations.push(Violation {
                time,
                property,
                detail,
            });
        }
    }

    /// Checks a node after it stepped.
    pub fn after_step(&mut self, time: u64, n: usize, raft: &RaftNode) {
        let id = raft.id();
        let term = raft.term();
        let hs = raft.hard_state();
        let track = &mut self.nodes[n];
        let (old_term, old_vote, old_commit) = (track.term, track.vote, track.commit);
        track.term = term;
        track.vote = hs.vote;
        track.commit = hs.commit;
        if term < old_term {
            self.fail(
                time,
                "term monotonic",
                format!("node {id}: term {old_term} -> {term}"),
            );
        } else if term == old_term && old_vote != 0 && hs.vote != old_vote {
            self.fail(
                time,
                "one vote per term",
                format!(
                    "node {id}: vote in term {term} changed {old_vote} -> {}",
                    hs.vote
                ),
            );
        }
        if hs.commit < old_commit {
            self.fail(
                time,
                "commit monotonic",
                format!("node {id}: commit {old_commit} -> {}", hs.commit),
            );
        }
        if raft.role() == Role::Leader {
            let prev = *self.leaders.entry(term).or_insert(id);
            if prev != id {
                self.fail(
                    time,
                    "election safety",
                    format!("nodes {prev} and {id} both lead term {term}"),
                );
            }
            if self.nodes[n].was_leader_in != Some(term) {
                self.nodes[n].was_leader_in = Some(term);
                self.check_leader_completeness(time, raft);
                if !raft.membership().1.is_voter(id) {
                    let detail = format!("node {id} leads term {term} without being a voter");
                    self.fail(time, "only voters lead", detail);
                }
            }
            self.check_leader_configuration(time, n, raft);
        } else {
            self.nodes[n].removed_leading_since = None;
        }
        self.check_committed(time, n, raft);
    }

    /// Membership rules on a leader: it steps down within an election timeout once a
    /// configuration without it as a voter is committed (it may first bring a voter up to
    /// date to hand over to), and it never has two configuration changes in flight (at most
    /// one configuration entry above its commit index; checked when its last entry is one).
    fn check_leader_configuration(&mut self, time: u64, n: usize, raft: &RaftNode) {
        let (index, m) = raft.membership();
        let commit = raft.commit_index();
        if index <= commit && !m.is_joint() && !m.is_empty() && !m.is_voter(raft.id()) {
            let since = *self.nodes[n].removed_leading_since.get_or_insert(time);
            // Ticks last 9-11 ms of virtual time; allow two ticks more than the timeout.
            let bound = (u64::from(raft.config().election_timeout_ticks) + 2) * 12_000;
            if time.saturating_sub(since) > bound {
                let detail = format!(
                    "node {} still leads term {} {} ms after its removal committed (configuration {m} at {index}, commit {commit})",
                    raft.id(),
                    raft.term(),
                    (time - since) / 1000
                );
                self.fail(time, "a removed leader steps down", detail);
            }
        } else {
            self.nodes[n].removed_leading_since = None;
        }
        let last = raft.last_log_id().index;
        if raft
            .entry(last)
            .is_some_and(|e| e.kind == EntryKind::Config)
        {
            let in_flight = (commit + 1..=last)
                .filter(|&i| raft.entry(i).is_some_and(|e| e.kind == EntryKind::Config))
                .count();
            if in_flight > 1 {
                let detail = format!(
                    "node {} leads term {} with {in_flight} configuration entries above its commit index {commit}",
                    raft.id(),
                    raft.term()
                );
                self.fail(time, "one membership change at a time", detail);
            }
        }
    }

    /// Leader completeness (Figure 3): an entry committed in some term is in the log of every
    /// leader of a later term. (A leader of an older term elected late need not hold it.)
    fn check_leader_completeness(&mut self, time: u64, raft: &RaftNode) {
        for i in 0..self.committed.len() {
            let truth = &self.committed[i];
            if self.committed_by[i] >= raft.term() {
                continue;
            }
            if !holds(raft, truth) {
                let detail = format!(
                    "node {} leads term {} without committed entry {} (term {})",
                    raft.id(),
                    raft.term(),
                    truth.index,
                    truth.term
                );
                self.fail(time, "leader completeness", detail);
                return;
            }
        }
    }

    fn check_committed(&mut self, time: u64, n: usize, raft: &RaftNode) {
        let commit = raft.commit_index();
        let floor = raft.log_floor().index;
        let from = (self.nodes[n].checked + 1).max(floor + 1);
        if floor > 0 && (floor as usize) <= self.committed.len() {
            let truth = &self.committed[floor as usize - 1];
            if truth.term != raft.log_floor().term {
                let detail = format!(
                    "node {}'s log starts after {}:{}, but the committed entry there has term {}",
                    raft.id(),
                    raft.log_floor().term,
                    floor,
                    truth.term
                );
                self.fail(time, "committed entries never change", detail);
                return;
            }
        }
        for i in from..=commit {
            let k = (i - 1) as usize;
            let Some(e) = raft.entry(i) else {
                // Left memory: the term is all the node still tells (its content was compared
                // when it was committed, before it could leave).
                let known = raft.log_term(i);
                if k < self.committed.len() && known == Some(self.committed[k].term) {
                    continue;
                }
                self.fail(
                    time,
                    "committed entry present",
                    format!(
                        "node {} lacks committed entry {i} (term there: {known:?})",
                        raft.id()
                    ),
                );
                return;
            };
            if k < self.committed.len() {
                if !same(&self.committed[k], e) {
                    let detail = format!(
                        "node {} has {}:{} at committed index {i}, ground truth has {}:{}",
                        raft.id(),
                        e.term,
                        e.data.len(),
                        self.committed[k].term,
                        self.committed[k].data.len()
                    );
                    self.fail(time, "committed entries never change", detail);
                    return;
                }
            } else {
                self.committed.push(e.clone());
                self.committed_by.push(raft.term());
            }
        }
        self.nodes[n].checked = self.nodes[n].checked.max(commit);
    }

    /// Checks entries a node hands to its state machine.
    pub fn on_apply(&mut self, time: u64, n: usize, id: NodeId, entries: &[Entry]) {
        for e in entries {
            let expected = self.nodes[n].applied + 1;
            if e.index != expected {
                self.fail(
                    time,
                    "apply in order",
                    format!("node {id} applied {} after {}", e.index, expected - 1),
                );
                return;
            }
            self.nodes[n].applied = e.index;
            let ok = self
                .committed
                .get((e.index - 1) as usize)
                .is_some_and(|t| same(t, e));
            if !ok {
                self.fail(
                    time,
                    "state machine safety",
                    format!(
                        "node {id} applied an entry at {} that is not the committed one",
                        e.index
                    ),
                );
                return;
            }
        }
    }

    /// A node took a snapshot of its state machine at `index`: every snapshot of that index,
    /// and every state machine that applies through it, must have this digest.
    pub fn on_snapshot(&mut self, time: u64, n: usize, index: Index, digest: u64) {
        let seen = *self.digests.entry(index).or_insert(digest);
        if seen != digest {
            let detail = format!(
                "node {} snapshots index {index} with digest {digest:#x}, another had {seen:#x}",
                n + 1
            );
            self.fail(time, "state machines agree at every index", detail);
        }
    }

    /// Whether the state machine's digest after applying `index` is to be checked.
    pub fn wants_digest(&self, index: Index) -> bool {
        self.digests.contains_key(&index)
    }

    /// A node's state machine right after applying `index`.
    pub fn on_state_at(&mut self, time: u64, n: usize, index: Index, digest: u64) {
        if let Some(&seen) = self.digests.get(&index) {
            if seen != digest {
                let detail = format!(
                    "node {} has digest {digest:#x} after applying {index}, its snapshot had {seen:#x}",
                    n + 1
                );
                self.fail(time, "state machines agree at every index", detail);
            }
        }
    }

    /// A node restored its state machine from a snapshot covering up to `index`: it must equal
    /// the state machine that applied the same prefix, and applying resumes after it.
    pub fn on_restore(&mut self, time: u64, n: usize, index: Index, digest: u64) {
        match self.digests.get(&index) {
            Some(&seen) if seen == digest => {}
            seen => {
                let detail = format!(
                    "node {} restored index {index} with digest {digest:#x}; the snapshot taken there had {seen:x?}",
                    n + 1
                );
                self.fail(
                    time,
                    "a restored state machine equals the one that applied the same prefix",
                    detail,
                );
            }
        }
        if index > self.committed_len() {
            let detail = format!(
                "node {} restored a snapshot at {index}, beyond the {} entries ever committed",
                n + 1,
                self.committed_len()
            );
            self.fail(time, "snapshots hold committed entries only", detail);
        }
        self.nodes[n].applied = index;
    }

    /// Records the hard state that just became durable on node `n`.
    pub fn on_durable(&mut self, n: usize, hs: HardState) {
        self.nodes[n].durable = hs;
    }

    /// Checks a node just restarted from disk.
    pub fn on_restart(&mut self, time: u64, n: usize, raft: &RaftNode) {
        let hs = raft.hard_state();
        let durable = self.nodes[n].durable;
        let id = raft.id();
        if hs.term < durable.term {
            self.fail(
                time,
                "durable term",
                format!(
                    "node {id} restarted at term {} < durable {}",
                    hs.term, durable.term
                ),
            );
        } else if hs.term == durable.term && durable.vote != 0 && hs.vote != durable.vote {
            self.fail(
                time,
                "durable vote",
                format!(
                    "node {id} restarted with vote {} != durable {}",
                    hs.vote, durable.vote
                ),
            );
        }
        if hs.commit < durable.commit {
            self.fail(
                time,
                "durable commit",
                format!(
                    "node {id} restarted at commit {} < durable {}",
                    hs.commit, durable.commit
                ),
            );
        }
        let t = &mut self.nodes[n];
        t.term = hs.term;
        t.vote = hs.vote;
        t.commit = hs.commit;
        t.checked = 0;
        t.applied = 0;
        t.was_leader_in = None;
        t.removed_leading_since = None;
        self.check_committed(time, n, raft);
    }

    /// Electable completeness, a state invariant behind Leader Completeness: a voter whose log
    /// is at least as up to date as the logs of a quorum of its own configuration (both
    /// majorities while joint) could win an election, so it must already hold every committed
    /// entry. Checking it at every step exposes an unsafe commit the moment it happens, without
    /// waiting for the node that would overwrite it to win.
    pub fn check_electable_completeness(&mut self, time: u64, nodes: &[Option<&RaftNode>]) {
        let Some(last) = self.committed.last() else {
            return;
        };
        for a in nodes.iter().flatten() {
            let m = a.membership().1;
            if !m.is_voter(a.id()) {
                continue;
            }
            let mine = a.last_log_id();
            let dominates = |b: &RaftNode| {
                let theirs = b.last_log_id();
                mine.term > theirs.term || (mine.term == theirs.term && mine.index >= theirs.index)
            };
            let quorum_of = |set: &[NodeId]| {
                let dominated = nodes
                    .iter()
                    .flatten()
                    .filter(|b| set.contains(&b.id()) && dominates(b))
                    .count();
                set.is_empty() || dominated > set.len() / 2
            };
            if !(quorum_of(m.voters()) && quorum_of(m.outgoing())) {
                continue;
            }
            let dominated = nodes.iter().flatten().filter(|b| dominates(b)).count();
            if !holds(a, last) {
                let detail = format!(
                    "node {} could win an election (its log is as up to date as {dominated} logs) but lacks committed entry {} (term {})",
                    a.id(),
                    last.index,
                    last.term
                );
                self.fail(time, "electable nodes hold every committed entry", detail);
                return;
            }
        }
    }

    /// The cheap part of log matching, run after every step of node `n`: any other live log
    /// holding an entry of the same term at the index of `n`'s last entry must hold the very
    /// same entry (two leaders of one term writing different entries show up here at once).
    pub fn check_last_entry_matches(&mut self, time: u64, n: usize, nodes: &[Option<&RaftNode>]) {
        let Some(a) = nodes.get(n).copied().flatten() else {
            return;
        };
        let last = a.last_log_id();
        let Some(mine) = a.entry(last.index) else {
            // Out of memory (applied and durable): the periodic pairwise check covers it.
            return;
        };
        for (m, b) in nodes.iter().enumerate() {
            let Some(b) = b else { continue };
            if m == n {
                continue;
            }
            if let Some(theirs) = b.entry(last.index) {
                if theirs.term == mine.term && !same(theirs, mine) {
                    let detail = format!(
                        "nodes {} and {} hold different entries of term {} at index {}",
                        a.id(),
                        b.id(),
                        mine.term,
                        last.index
                    );
                    self.fail(time, "log matching", detail);
                    return;
                }
            }
        }
    }

    /// Terms never decrease along a node's log, from its snapshot boundary to its last entry
    /// (run periodically, and right after a node installs a snapshot).
    pub fn check_terms(&mut self, time: u64, a: &RaftNode) {
        let floor = a.log_floor();
        let mut prev = floor.term;
        for i in floor.index + 1..=a.last_log_id().index {
            let t = a.log_term(i).unwrap_or(0);
            if t < prev {
                let detail = format!(
                    "node {}: entry {i} has term {t}, below the term {prev} before it (floor {}:{})",
                    a.id(),
                    floor.term,
                    floor.index
                );
                self.fail(time, "terms never decrease along a log", detail);
                return;
            }
            prev = t;
        }
    }

    /// Pairwise log matching over the nodes that are up, and within each log: terms never
    /// decrease from the snapshot boundary to the last entry.
    pub fn check_log_matching(&mut self, time: u64, nodes: &[&RaftNode]) {
        for a in nodes {
            self.check_terms(time, a);
        }
        for (a_i, a) in nodes.iter().enumerate() {
            for b in &nodes[a_i + 1..] {
                let top = a.last_log_id().index.min(b.last_log_id().index);
                // Below either floor, the prefix is a snapshot's: nothing to compare there.
                let bottom = a.log_floor().index.max(b.log_floor().index);
                let mut i = top;
                while i > bottom && a.log_term(i) != b.log_term(i) {
                    i -= 1;
                }
                if i < bottom || a.log_term(i) != b.log_term(i) {
                    // No common entry above the snapshots: nothing to compare.
                    continue;
                }
                for j in (bottom.max(1)..=i).rev() {
                    // Both know the term; where both still hold the entry, it must be the same.
                    let same_entry = a.log_term(j).is_some()
                        && a.log_term(j) == b.log_term(j)
                        && match (a.entry(j), b.entry(j)) {
                            (Some(x), Some(y)) => same(x, y),
                            _ => true,
                        };
                    if !same_entry {
                        let detail = format!(
                            "nodes {} and {} agree on the term at {i} but differ at {j}",
                            a.id(),
                            b.id()
                        );
                        self.fail(time, "log matching", detail);
                        return;
                    }
                }
            }
        }
    }
}
