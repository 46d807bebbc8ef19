//! The leader's view of one follower: how far its log matches, what to send next, and how much
//! is in flight (flow control).

use std::collections::VecDeque;

use crate::types::{Index, NodeId};

/// How the leader replicates to a follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationState {
    /// The follower's log position is unknown: send one message at a time and wait.
    Probe,
    /// The follower is in sync: stream entries optimistically, up to the in-flight window.
    Replicate,
}

#[derive(Debug, Clone)]
pub(crate) struct Progress {
    pub(crate) id: NodeId,
    /// Highest index known to be durably replicated on the follower.
    pub(crate) matched: Index,
    /// Next index to send.
    pub(crate) next: Index,
    pub(crate) state: ReplicationState,
    /// In probe state: a message was sent and no answer came yet.
    pub(crate) probe_sent: bool,
    /// Heard from since the last CheckQuorum round.
    pub(crate) recent_active: bool,
    /// Messages in flight: (last index carried, bytes).
    inflight: VecDeque<(Index, u64)>,
    inflight_bytes: u64,
}

impl Progress {
    pub(crate) fn new(id: NodeId, next: Index, window: usize) -> Self {
        Progress {
            id,
            matched: 0,
            next,
            state: ReplicationState::Probe,
            probe_sent: false,
            recent_active: false,
            inflight: VecDeque::with_capacity(window),
            inflight_bytes: 0,
        }
    }

    pub(crate) fn inflight_count(&self) -> usize {
        self.inflight.len()
    }

    /// Whether nothing more may be sent now.
    pub(crate) fn is_paused(&self, max_msgs: usize, max_bytes: u64) -> bool {
        match self.state {
            ReplicationState::Probe => self.probe_sent,
            ReplicationState::Replicate => {
                self.inflight.len() >= max_msgs || self.inflight_bytes >= max_bytes
            }
        }
    }

    /// Records a sent append whose last entry is `last` (with `bytes` of entries).
    pub(crate) fn sent(&mut self, last: Index, bytes: u64, carried_entries: bool) {
        match self.state {
            ReplicationState::Replicate => {
                if carried_entries {
                    self.next = last + 1;
                    self.inflight.push_back((last, bytes));
                    self.inflight_bytes += bytes;
                }
            }
            ReplicationState::Probe => self.probe_sent = true,
        }
    }

    /// The follower acknowledged `index`. Returns whether the match advanced.
    pub(crate) fn ack(&mut self, index: Index) -> bool {
        let advanced = index > self.matched;
        if advanced {
            self.matched = index;
            self.probe_sent = false;
        }
        if self.next <= index {
            self.next = index + 1;
        }
        while let Some(&(last, bytes)) = self.inflight.front() {
            if last > index {
                break;
            }
            self.inflight.pop_front();
            self.inflight_bytes -= bytes;
        }
        if advanced && self.state == ReplicationState::Probe {
            self.become_replicate();
        }
        advanced
    }

    /// The follower rejected an append whose previous index was `rejected`; the leader's log
    /// suggests `probe_from` as the next previous index. Returns false for stale rejections.
    pub(crate) fn reject(&mut self, rejected: Index, probe_from: Index) -> bool {
        // A rejection at or below the known match is stale (or the follower lost data it
        // acknowledged); acting on it could only repeat the same probe, so it is ignored.
        if rejected <= self.matched {
            return false;
        }
        if self.state == ReplicationState::Probe && self.next.saturating_sub(1) != rejected {
            return false;
        }
        self.next = (rejected.min(probe_from + 1)).max(self.matched + 1);
        self.become_probe();
        true
    }

    pub(crate) fn become_probe(&mut self) {
        self.state = ReplicationState::Probe;
        self.probe_sent = false;
        self.next = self.next.max(self.matched + 1);
        self.inflight.clear();
        self.inflight_bytes = 0;
    }

    fn become_replicate(&mut self) {
        self.state = ReplicationState::Replicate;
        self.next = self.matched + 1;
        self.inflight.clear();
        self.inflight_bytes = 0;
    }

    /// Heard from the follower on a heartbeat: let a stuck window or probe move again.
    pub(crate) fn heartbeat_answered(&mut self, max_msgs: usize, max_bytes: u64) {
        self.recent_active = true;
        self.probe_sent = false;
        // A full window may be full of lost messages: free one slot so that one more append
        // goes out; if the follower lacks what preceded it, its rejection restarts probing.
        if self.state == ReplicationState::Replicate && self.is_paused(max_msgs, max_bytes) {
            if let Some((_, bytes)) = self.inflight.pop_front() {
                self.inflight_bytes -= bytes;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_then_replicate_then_window() {
        let mut p = Progress::new(2, 11, 4);
        assert_eq!(p.state, ReplicationState::Probe);
        assert!(!p.is_paused(2, 100));
        p.sent(10, 0, false);
        assert!(p.is_paused(2, 100));
        assert!(p.ack(10));
        assert_eq!(p.state, ReplicationState::Replicate);
        assert_eq!(p.next, 11);
        p.sent(12, 40, true);
        p.sent(14, 40, true);
        assert_eq!(p.next, 15);
        assert!(p.is_paused(2, 1000));
        assert!(p.ack(12));
        assert!(!p.is_paused(2, 1000));
        assert_eq!(p.inflight_count(), 1);
        p.sent(16, 100, true);
        assert!(p.is_paused(10, 100));
    }

    #[test]
    fn heartbeat_frees_a_window_full_by_bytes() {
        let mut p = Progress::new(2, 1, 8);
        p.ack(0);
        p.become_probe();
        assert!(p.ack(1));
        p.sent(3, 300, true);
        assert!(p.is_paused(8, 300), "byte window full");
        p.heartbeat_answered(8, 300);
        assert!(!p.is_paused(8, 300));
    }

    #[test]
    fn rejection_falls_back_to_probe_and_ignores_stale() {
        let mut p = Progress::new(2, 11, 4);
        p.ack(5);
        p.sent(8, 10, true);
        assert!(!p.reject(4, 0), "stale: at or below match");
        assert!(p.reject(7, 6));
        assert_eq!(p.state, ReplicationState::Probe);
        assert_eq!(p.next, 7);
        assert!(!p.reject(3, 2), "probe: not the outstanding one");
        assert!(p.reject(6, 2));
        assert_eq!(p.next, 6, "never below match + 1");
    }
}
