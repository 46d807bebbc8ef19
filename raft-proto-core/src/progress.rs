//! The leader's view of one follower: how far its log matches, what to send next, and how much
//! is in flight (flow control). Each replication state carries its own data, so a state and
//! the fields that only make sense in it cannot disagree.

use std::collections::VecDeque;

use crate::types::{Index, LogId, NodeId};

/// How the leader replicates to a follower (as reported in status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationState {
    /// The follower's log position is unknown: one message at a time, then wait.
    Probe,
    /// The follower is in sync: entries stream optimistically, up to the in-flight window.
    Replicate,
    /// The follower needs entries the leader compacted away: a snapshot is being sent.
    Snapshot,
}

/// Appends in flight to a streaming follower: (last index carried, bytes), oldest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Inflight {
    msgs: VecDeque<(Index, u64)>,
    bytes: u64,
}

impl Inflight {
    fn with_capacity(n: usize) -> Self {
        Inflight {
            msgs: VecDeque::with_capacity(n),
            bytes: 0,
        }
    }

    fn full(&self, max_msgs: usize, max_bytes: u64) -> bool {
        self.msgs.len() >= max_msgs || self.bytes >= max_bytes
    }

    fn push(&mut self, last: Index, bytes: u64) {
        self.msgs.push_back((last, bytes));
        self.bytes += bytes;
    }

    /// Frees every message whose entries end at or below `index`.
    fn free_to(&mut self, index: Index) {
        while let Some(&(last, bytes)) = self.msgs.front() {
            if last > index {
                break;
            }
            self.msgs.pop_front();
            self.bytes -= bytes;
        }
    }

    fn free_first(&mut self) {
        if let Some((_, bytes)) = self.msgs.pop_front() {
            self.bytes -= bytes;
        }
    }
}

/// A snapshot on its way to a follower. Bytes `..acked` are confirmed received, `acked..sent`
/// are in flight; the next chunk is read from `sent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapshotSend {
    /// The snapshot's last entry.
    pub(crate) snap: LogId,
    /// Its size in bytes, once the first read told it.
    pub(crate) total: Option<u64>,
    pub(crate) acked: u64,
    pub(crate) sent: u64,
    /// A chunk read from storage is outstanding (at most one per follower, whatever the
    /// snapshot: a read made for a replaced transfer still counts until it returns).
    pub(crate) reading: bool,
    /// The chunk that reaches `total` was sent: nothing is left to read until a rewind.
    pub(crate) sent_last: bool,
    /// Heartbeat answers seen since the follower last confirmed progress.
    pub(crate) idle_rounds: u8,
    /// The offset of the last resend asked for and done: further requests for the same offset
    /// come from chunks sent before it and are ignored (like duplicate acks in TCP).
    pub(crate) resent_from: Option<u64>,
}

/// Heartbeat answers without progress after which a transfer resends from the last
/// acknowledged offset (its chunks in flight, or the acknowledgement of its install, are taken
/// as lost). Each stored chunk is acknowledged, so a slow link that makes progress never waits
/// this long.
const SNAPSHOT_IDLE_ROUNDS: u8 = 5;

/// Heartbeat answers after which a read asked of the driver (entries or a snapshot chunk) that
/// did not come back is given up, so that the follower is served again.
const READ_TIMEOUT_ROUNDS: u8 = 10;

#[derive(Debug, Clone)]
pub(crate) enum State {
    /// `sent`: a probe is outstanding.
    Probe {
        sent: bool,
    },
    /// `fetching`: entries from this index are being read back from storage.
    Replicate {
        inflight: Inflight,
        fetching: Option<Index>,
    },
    Snapshot(SnapshotSend),
}

#[derive(Debug, Clone)]
pub(crate) struct Progress {
    id: NodeId,
    /// Highest index known to be durably replicated on the follower.
    matched: Index,
    /// Next index to send.
    next: Index,
    /// Heard from since the last CheckQuorum round.
    recent_active: bool,
    state: State,
    window: usize,
    /// Heartbeat answers seen while a read asked of the driver is outstanding.
    read_waits: u8,
    /// Leader ticks since the follower was last heard from.
    silent: u32,
}

impl Progress {
    pub(crate) fn new(id: NodeId, next: Index, window: usize) -> Self {
        Progress {
            id,
            matched: 0,
            next,
            recent_active: false,
            state: State::Probe { sent: false },
            window,
            read_waits: 0,
            silent: 0,
        }
    }

    pub(crate) fn id(&self) -> NodeId {
        self.id
    }

    pub(crate) fn matched(&self) -> Index {
        self.matched
    }

    pub(crate) fn next(&self) -> Index {
        self.next
    }

    pub(crate) fn recent_active(&self) -> bool {
        self.recent_active
    }

    pub(crate) fn mark_active(&mut self) {
        self.recent_active = true;
        self.silent = 0;
    }

    /// Leader ticks since the follower was last heard from.
    pub(crate) fn silent_ticks(&self) -> u32 {
        self.silent
    }

    /// One leader tick passed.
    pub(crate) fn tick(&mut self) {
        self.silent = self.silent.saturating_add(1);
    }

    /// Starts a new CheckQuorum round; returns whether the follower was heard in the last one.
    pub(crate) fn take_active(&mut self) -> bool {
        std::mem::take(&mut self.recent_active)
    }

    pub(crate) fn replication_state(&self) -> ReplicationState {
        match self.state {
            State::Probe { .. } => ReplicationState::Probe,
            State::Replicate { .. } => ReplicationState::Replicate,
            State::Snapshot(_) => ReplicationState::Snapshot,
        }
    }

    pub(crate) fn is_streaming(&self) -> bool {
        matches!(self.state, State::Replicate { .. })
    }

    pub(crate) fn inflight_count(&self) -> usize {
        match &self.state {
            State::Replicate { inflight, .. } => inflight.msgs.len(),
            _ => 0,
        }
    }

    pub(crate) fn snapshot(&self) -> Option<&SnapshotSend> {
        match &self.state {
            State::Snapshot(s) => Some(s),
            _ => None,
        }
    }

    /// Whether no append may be sent now.
    pub(crate) fn is_paused(&self, max_msgs: usize, max_bytes: u64) -> bool {
        match &self.state {
            State::Probe { sent } => *sent,
            State::Replicate { inflight, fetching } => {
                fetching.is_some() || inflight.full(max_msgs, max_bytes)
            }
            State::Snapshot(_) => true,
        }
    }

    /// Records a sent append whose last entry is `last` (with `bytes` of entries).
    pub(crate) fn sent(&mut self, last: Index, bytes: u64, carried_entries: bool) {
        match &mut self.state {
            State::Replicate { inflight, .. } => {
                if carried_entries {
                    self.next = last + 1;
                    inflight.push(last, bytes);
                }
            }
            State::Probe { sent } => *sent = true,
            State::Snapshot(_) => {}
        }
    }

    /// Entries from `lo` are being read back from storage for this (streaming) follower.
    pub(crate) fn start_fetch(&mut self, lo: Index) {
        if let State::Replicate { fetching, .. } = &mut self.state {
            *fetching = Some(lo);
            self.read_waits = 0;
        }
    }

    /// A read of entries from `lo` came back; returns whether it was the one awaited.
    pub(crate) fn fetch_done(&mut self, lo: Index) -> bool {
        match &mut self.state {
            State::Replicate { fetching, .. } if *fetching == Some(lo) => {
                *fetching = None;
                lo == self.next
            }
            _ => false,
        }
    }

    /// The follower acknowledged `index`. Returns whether the match advanced.
    pub(crate) fn ack(&mut self, index: Index) -> bool {
        let advanced = index > self.matched;
        if advanced {
            self.matched = index;
        }
        if self.next <= index {
            self.next = index + 1;
        }
        match &mut self.state {
            State::Replicate { inflight, .. } => inflight.free_to(index),
            State::Probe { sent } => {
                // An answer to the probe that confirms the known match (a probe without entries
                // does) finds the follower's position as well as one that advances it.
                if advanced || index == self.matched {
                    *sent = false;
                    self.become_replicate();
                }
            }
            State::Snapshot(s) => {
                if index >= s.snap.index {
                    self.become_probe();
                }
            }
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
        match self.state {
            State::Probe { .. } if self.next.saturating_sub(1) != rejected => return false,
            State::Snapshot(_) => return false,
            _ => {}
        }
        self.next = (rejected.min(probe_from + 1)).max(self.matched + 1);
        self.become_probe();
        true
    }

    pub(crate) fn become_probe(&mut self) {
        self.state = State::Probe { sent: false };
        self.next = self.next.max(self.matched + 1);
    }

    fn become_replicate(&mut self) {
        self.state = State::Replicate {
            inflight: Inflight::with_capacity(self.window),
            fetching: None,
        };
        self.next = self.matched + 1;
    }

    /// The follower needs entries at or below the leader's floor: send it snapshot `snap`
    /// (from the start; a read still outstanding for a previous transfer keeps the next one
    /// waiting until it returns).
    pub(crate) fn become_snapshot(&mut self, snap: LogId) {
        let reading = matches!(&self.state, State::Snapshot(s) if s.reading);
        self.state = State::Snapshot(SnapshotSend {
            snap,
            total: None,
            acked: 0,
            sent: 0,
            reading,
            sent_last: false,
            idle_rounds: 0,
            resent_from: None,
        });
    }

    /// The next chunk to read for a snapshot transfer, if the window has room: its offset.
    pub(crate) fn snapshot_next_read(&mut self, max_inflight: u64) -> Option<(LogId, u64)> {
        let State::Snapshot(s) = &mut self.state else {
            return None;
        };
        if s.reading || s.sent_last || s.sent - s.acked >= max_inflight {
            return None;
        }
        s.reading = true;
        self.read_waits = 0;
        Some((s.snap, s.sent))
    }

    /// A chunk read for snapshot `snap` at `offset` came back with `len` bytes of a snapshot
    /// of `total` bytes. Returns whether it belongs to the transfer as it stands (and should be
    /// sent); a read made stale by a rewind or by another snapshot is dropped.
    pub(crate) fn snapshot_chunk_read(
        &mut self,
        snap: LogId,
        offset: u64,
        len: u64,
        total: u64,
    ) -> bool {
        let State::Snapshot(s) = &mut self.state else {
            return false;
        };
        if !s.reading {
            return false;
        }
        s.reading = false;
        if s.snap != snap || offset != s.sent {
            return false;
        }
        s.total = Some(total);
        s.sent = offset + len;
        s.sent_last = s.sent >= total;
        true
    }

    /// The outstanding read came back unusable: let the next attempt read again.
    pub(crate) fn snapshot_read_dropped(&mut self) {
        if let State::Snapshot(s) = &mut self.state {
            s.reading = false;
        }
    }

    /// The follower confirmed snapshot `snap` received up to `next_offset`. An offset beyond
    /// what was sent since a rewind comes from chunks sent before it: the follower holds them,
    /// so sending goes on from there.
    pub(crate) fn snapshot_received(&mut self, snap: LogId, next_offset: u64) {
        if let State::Snapshot(s) = &mut self.state {
            let limit = s.total.unwrap_or(s.sent).max(s.sent);
            if s.snap == snap && next_offset > s.acked && next_offset <= limit {
                s.acked = next_offset;
                s.idle_rounds = 0;
                if next_offset > s.sent {
                    s.sent = next_offset;
                }
                if s.resent_from.is_some_and(|r| next_offset > r) {
                    s.resent_from = None;
                }
            }
        }
    }

    /// The follower asks for snapshot `snap` from `from` on (a chunk was lost, it restarted, or
    /// it already holds more than the leader thought): continue from there.
    pub(crate) fn snapshot_resend(&mut self, snap: LogId, from: u64) {
        if let State::Snapshot(s) = &mut self.state {
            if s.snap == snap && s.resent_from != Some(from) {
                let from = s.total.map_or(0, |t| from.min(t));
                s.sent = from;
                s.acked = from;
                s.sent_last = false;
                s.idle_rounds = 0;
                s.resent_from = Some(from);
            }
        }
    }

    /// Heard from the follower on a heartbeat: let a stuck window, probe, read or transfer
    /// move again.
    pub(crate) fn heartbeat_answered(&mut self, max_msgs: usize, max_bytes: u64) {
        self.mark_active();
        let waits = &mut self.read_waits;
        let mut read_timed_out = || {
            *waits += 1;
            let out = *waits >= READ_TIMEOUT_ROUNDS;
            if out {
                *waits = 0;
            }
            out
        };
        match &mut self.state {
            State::Probe { sent } => *sent = false,
            State::Replicate { inflight, fetching } => {
                if fetching.is_some() && read_timed_out() {
                    *fetching = None;
                }
                // A full window may be full of lost messages: free one slot so that one more
                // append goes out; if the follower lacks what preceded it, its rejection
                // restarts probing.
                if inflight.full(max_msgs, max_bytes) {
                    inflight.free_first();
                }
            }
            State::Snapshot(s) => {
                if s.reading {
                    if read_timed_out() {
                        s.reading = false;
                    }
                } else if s.sent > s.acked || s.sent_last {
                    // Chunks are unacknowledged, or everything was sent and the install is not
                    // acknowledged (the last chunk, or its answer, may be lost).
                    s.idle_rounds += 1;
                    if s.idle_rounds >= SNAPSHOT_IDLE_ROUNDS {
                        s.idle_rounds = 0;
                        s.sent = s.acked;
                        s.sent_last = false;
                        s.resent_from = None;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(index: Index) -> LogId {
        LogId { term: 1, index }
    }

    #[test]
    fn probe_then_replicate_then_window() {
        let mut p = Progress::new(2, 11, 4);
        assert_eq!(p.replication_state(), ReplicationState::Probe);
        assert!(!p.is_paused(2, 100));
        p.sent(10, 0, false);
        assert!(p.is_paused(2, 100));
        assert!(p.ack(10));
        assert_eq!(p.replication_state(), ReplicationState::Replicate);
        assert_eq!(p.next(), 11);
        p.sent(12, 40, true);
        p.sent(14, 40, true);
        assert_eq!(p.next(), 15);
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
        assert_eq!(p.replication_state(), ReplicationState::Probe);
        assert_eq!(p.next(), 7);
        assert!(!p.reject(3, 2), "probe: not the outstanding one");
        assert!(p.reject(6, 2));
        assert_eq!(p.next(), 6, "never below match + 1");
    }

    #[test]
    fn a_fetch_pauses_streaming_until_it_returns() {
        let mut p = Progress::new(2, 1, 4);
        p.ack(3);
        assert!(p.is_streaming());
        p.start_fetch(4);
        assert!(p.is_paused(4, 1000));
        assert!(!p.fetch_done(5), "not the awaited read");
        assert!(p.fetch_done(4));
        assert!(!p.is_paused(4, 1000));
    }

    #[test]
    fn snapshot_transfer_windows_resumes_and_finishes() {
        let mut p = Progress::new(2, 1, 4);
        p.become_snapshot(snap(50));
        assert!(p.is_paused(4, 1000), "no appends during a transfer");
        assert_eq!(p.snapshot_next_read(20), Some((snap(50), 0)));
        assert_eq!(p.snapshot_next_read(20), None, "one read at a time");
        assert!(p.snapshot_chunk_read(snap(50), 0, 10, 30));
        assert_eq!(p.snapshot_next_read(20), Some((snap(50), 10)));
        assert!(p.snapshot_chunk_read(snap(50), 10, 10, 30));
        assert_eq!(p.snapshot_next_read(20), None, "window of 20 bytes full");
        p.snapshot_received(snap(50), 10);
        assert_eq!(p.snapshot_next_read(20), Some((snap(50), 20)));
        assert!(
            !p.snapshot_chunk_read(snap(60), 20, 10, 30),
            "another snapshot"
        );
        // The follower lost chunk 10..20 (it asks for 10 again): resend from there, once.
        p.snapshot_resend(snap(50), 10);
        assert_eq!(p.snapshot_next_read(20), Some((snap(50), 10)));
        p.snapshot_resend(snap(50), 10);
        assert_eq!(
            p.snapshot().map(|s| s.reading),
            Some(true),
            "a repeated request is ignored"
        );
        assert!(p.snapshot_chunk_read(snap(50), 10, 20, 30));
        assert_eq!(p.snapshot_next_read(100), None, "everything sent");
        p.snapshot_received(snap(50), 31);
        assert_eq!(
            p.snapshot().map(|s| s.acked),
            Some(10),
            "claims more than was sent"
        );
        // A stale read (made before a rewind) is dropped.
        p.snapshot_resend(snap(50), 20);
        assert_eq!(p.snapshot_next_read(100), Some((snap(50), 20)));
        p.snapshot_resend(snap(50), 0);
        assert!(!p.snapshot_chunk_read(snap(50), 20, 10, 30));
        assert_eq!(p.snapshot_next_read(100), Some((snap(50), 0)));
        // Installed: the follower acknowledges the snapshot's index.
        p.ack(50);
        assert_eq!(p.replication_state(), ReplicationState::Probe);
        assert_eq!(p.next(), 51);
    }

    #[test]
    fn a_silent_transfer_resends_from_the_last_acknowledged_offset() {
        let mut p = Progress::new(2, 1, 4);
        p.become_snapshot(snap(9));
        p.snapshot_next_read(100);
        p.snapshot_chunk_read(snap(9), 0, 10, 40);
        p.snapshot_received(snap(9), 10);
        p.snapshot_next_read(100);
        p.snapshot_chunk_read(snap(9), 10, 10, 40);
        for _ in 0..SNAPSHOT_IDLE_ROUNDS {
            p.heartbeat_answered(4, 100);
        }
        assert_eq!(p.snapshot_next_read(100), Some((snap(9), 10)));
    }

    #[test]
    fn an_empty_snapshot_whose_only_chunk_is_lost_is_sent_again() {
        let mut p = Progress::new(2, 1, 4);
        p.become_snapshot(snap(7));
        assert_eq!(p.snapshot_next_read(100), Some((snap(7), 0)));
        assert!(p.snapshot_chunk_read(snap(7), 0, 0, 0));
        assert_eq!(p.snapshot_next_read(100), None, "the only chunk is out");
        for _ in 0..SNAPSHOT_IDLE_ROUNDS {
            p.heartbeat_answered(4, 100);
        }
        assert_eq!(p.snapshot_next_read(100), Some((snap(7), 0)), "sent again");
    }

    #[test]
    fn acknowledgements_of_chunks_sent_before_a_rewind_still_count() {
        let mut p = Progress::new(2, 1, 4);
        p.become_snapshot(snap(9));
        for off in [0, 10, 20] {
            assert_eq!(p.snapshot_next_read(100), Some((snap(9), off)));
            assert!(p.snapshot_chunk_read(snap(9), off, 10, 50));
        }
        // A rewind to 10, then the answer to the chunk at 20 arrives: the follower has 30.
        p.snapshot_resend(snap(9), 10);
        p.snapshot_received(snap(9), 30);
        let s = p.snapshot().cloned().expect("transfer");
        assert_eq!((s.acked, s.sent), (30, 30));
        assert_eq!(p.snapshot_next_read(100), Some((snap(9), 30)));
    }

    #[test]
    fn a_new_transfer_waits_for_the_read_of_the_old_one() {
        let mut p = Progress::new(2, 1, 4);
        p.become_snapshot(snap(5));
        assert_eq!(p.snapshot_next_read(100), Some((snap(5), 0)));
        p.become_snapshot(snap(8));
        assert_eq!(
            p.snapshot_next_read(100),
            None,
            "the old read is outstanding"
        );
        assert!(!p.snapshot_chunk_read(snap(5), 0, 10, 20), "stale: dropped");
        assert_eq!(p.snapshot_next_read(100), Some((snap(8), 0)));
    }

    #[test]
    fn reads_that_never_come_back_are_given_up() {
        let mut p = Progress::new(2, 1, 4);
        p.ack(3);
        p.start_fetch(4);
        for _ in 0..READ_TIMEOUT_ROUNDS - 1 {
            p.heartbeat_answered(4, 100);
        }
        assert!(p.is_paused(4, 100), "still waiting");
        p.heartbeat_answered(4, 100);
        assert!(
            !p.is_paused(4, 100),
            "given up: the follower is served again"
        );
        p.become_snapshot(snap(3));
        assert!(p.snapshot_next_read(100).is_some());
        for _ in 0..READ_TIMEOUT_ROUNDS {
            p.heartbeat_answered(4, 100);
        }
        assert!(
            p.snapshot_next_read(100).is_some(),
            "the lost chunk read is given up"
        );
    }
}
