//! Bookkeeping of requested writes and of the promises that must wait for them.
//!
//! Every `Persist` output gets a sequence number. Messages that promise durable state (vote
//! grants, append acknowledgements) and the candidate's own vote are held back, tagged with the
//! sequence number of the latest write requested when they were produced, and released once the
//! driver reports that write durable.

use std::collections::VecDeque;

use crate::io::PersistWrite;
use crate::message::Message;
use crate::types::{Entry, HardState, LogId, NodeId, SnapshotMeta, Term};

/// Something waiting for a write to become durable.
#[derive(Debug, Clone)]
pub(crate) enum Held {
    Send {
        to: NodeId,
        msg: Message,
    },
    /// The candidate's vote for itself in this term.
    SelfVote(Term),
    /// Restoring the state machine from a snapshot, once the snapshot is installed durably.
    Restore(SnapshotMeta),
}

#[derive(Debug, Clone)]
pub(crate) struct Durability {
    /// Sequence number of the last write handed out (0 = none yet).
    pub(crate) issued: u64,
    /// Highest sequence number reported durable.
    pub(crate) durable: u64,
    /// Writes not yet durable, with the last entry each wrote.
    pending: VecDeque<(u64, Option<LogId>)>,
    held: VecDeque<(u64, Held)>,
    /// The write being assembled during the current step.
    open: Option<PersistWrite>,
    /// Last hard state included in a write.
    pub(crate) written_hard_state: HardState,
}

impl Durability {
    pub(crate) fn new(recovered: HardState) -> Self {
        Durability {
            issued: 0,
            durable: 0,
            pending: VecDeque::new(),
            held: VecDeque::new(),
            open: None,
            written_hard_state: recovered,
        }
    }

    /// The write being assembled, opened on first use.
    pub(crate) fn open(&mut self) -> &mut PersistWrite {
        let seq = self.issued + 1;
        self.open.get_or_insert_with(|| PersistWrite {
            seq,
            ..PersistWrite::default()
        })
    }

    /// Earlier writes still in flight lose their claim to entries at or above `index` (a later
    /// durable step discards them on disk): reporting them durable must not count those.
    fn void_claims_from(&mut self, index: u64) {
        for (_, last) in self.pending.iter_mut() {
            if last.is_some_and(|id| id.index >= index) {
                *last = None;
            }
        }
    }

    /// Issues the durable step that installs a received snapshot (the open write, if any, must
    /// have been taken first). When the log did not continue the snapshot, every entry written
    /// before is discarded by it. Returns the step's sequence number.
    pub(crate) fn issue_install(&mut self, snap: LogId, log_kept: bool) -> u64 {
        debug_assert!(self.open.is_none());
        if !log_kept {
            self.void_claims_from(0);
        }
        self.issued += 1;
        self.pending.push_back((self.issued, Some(snap)));
        self.issued
    }

    /// Adds entries to the open write, after truncating from `truncate_from` if given.
    pub(crate) fn write_entries(&mut self, truncate_from: Option<u64>, entries: &[Entry]) {
        if let Some(t) = truncate_from {
            // Earlier writes still in flight will be cut here too: when one of them is reported,
            // its entries at or above `t` must not count as durable.
            self.void_claims_from(t);
            let w = self.open();
            w.entries.retain(|e| e.index < t);
            // Keep the write's meaning "cut the log here, then append": the cut point never
            // lies above the first entry the write still carries.
            let mut cut = w.truncate_from.map_or(t, |old| old.min(t));
            if let Some(first) = w.entries.first() {
                cut = cut.min(first.index);
            }
            w.truncate_from = Some(cut);
        }
        self.open().entries.extend_from_slice(entries);
    }

    pub(crate) fn push_entry(&mut self, entry: Entry) {
        self.open().entries.push(entry);
    }

    /// Records the hard state in the open write if it differs from the last one written.
    pub(crate) fn write_hard_state(&mut self, hs: HardState) {
        if hs.term != self.written_hard_state.term || hs.vote != self.written_hard_state.vote {
            self.written_hard_state = hs;
            self.open().hard_state = Some(hs);
        }
    }

    /// Closes the open write, if any, and returns it for output.
    pub(crate) fn take_open(&mut self, commit: u64) -> Option<PersistWrite> {
        let mut w = self.open.take()?;
        self.issued = w.seq;
        let hs = HardState {
            commit,
            ..self.written_hard_state
        };
        self.written_hard_state = hs;
        w.hard_state = Some(hs);
        let last = w.entries.last().map(|e| LogId {
            term: e.term,
            index: e.index,
        });
        self.pending.push_back((w.seq, last));
        Some(w)
    }

    /// The sequence number a promise produced now depends on.
    fn barrier(&self) -> u64 {
        match &self.open {
            Some(w) => w.seq,
            None => self.issued,
        }
    }

    /// Holds `item` until everything written so far is durable. Returns it back if that is
    /// already the case.
    pub(crate) fn hold(&mut self, item: Held) -> Option<Held> {
        let b = self.barrier();
        if b <= self.durable {
            Some(item)
        } else {
            self.held.push_back((b, item));
            None
        }
    }

    /// Marks writes up to `seq` durable. Returns false if `seq` was never issued.
    /// `on_entries` sees the last entry of each write now durable.
    pub(crate) fn persisted(&mut self, seq: u64, mut on_entries: impl FnMut(LogId)) -> bool {
        if seq > self.issued {
            return false;
        }
        if seq <= self.durable {
            return true;
        }
        self.durable = seq;
        while let Some(&(s, last)) = self.pending.front() {
            if s > seq {
                break;
            }
            self.pending.pop_front();
            if let Some(id) = last {
                on_entries(id);
            }
        }
        true
    }

    /// The next held item that may now be released.
    pub(crate) fn pop_released(&mut self) -> Option<Held> {
        match self.held.front() {
            Some(&(s, _)) if s <= self.durable => self.held.pop_front().map(|(_, h)| h),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EntryKind;

    fn e(index: u64, term: u64) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data: bytes::Bytes::new(),
        }
    }

    #[test]
    fn truncation_inside_an_open_write_keeps_cut_then_append_meaning() {
        let mut d = Durability::new(HardState::default());
        d.write_entries(None, &[e(5, 1), e(6, 1), e(7, 1), e(8, 1)]);
        d.write_entries(Some(7), &[e(7, 2)]);
        let w = d.take_open(0).expect("open write");
        assert_eq!(w.truncate_from, Some(5));
        let idx: Vec<u64> = w.entries.iter().map(|e| e.index).collect();
        assert_eq!(idx, vec![5, 6, 7]);
        assert_eq!(w.entries[2].term, 2);
    }

    #[test]
    fn a_truncation_voids_the_durability_of_earlier_pending_writes_above_it() {
        let mut d = Durability::new(HardState::default());
        d.write_entries(None, &[e(1, 1), e(2, 1), e(3, 1)]);
        d.take_open(0);
        d.write_entries(Some(2), &[e(2, 2)]);
        d.take_open(0);
        let mut seen = Vec::new();
        assert!(d.persisted(1, |id| seen.push(id)));
        assert!(
            seen.is_empty(),
            "write 1's tail is being cut by write 2: {seen:?}"
        );
        assert!(d.persisted(2, |id| seen.push(id)));
        assert_eq!(seen, vec![LogId { term: 2, index: 2 }]);
    }

    #[test]
    fn holds_until_durable_and_releases_in_order() {
        let mut d = Durability::new(HardState::default());
        assert!(
            d.hold(Held::SelfVote(1)).is_some(),
            "nothing pending: release at once"
        );
        d.push_entry(e(1, 1));
        assert!(d.hold(Held::SelfVote(2)).is_none());
        let w = d.take_open(0).expect("write");
        assert_eq!(w.seq, 1);
        assert!(d.pop_released().is_none());
        let mut seen = Vec::new();
        assert!(!d.persisted(2, |id| seen.push(id)), "seq 2 never issued");
        assert!(d.persisted(1, |id| seen.push(id)));
        assert_eq!(seen, vec![LogId { term: 1, index: 1 }]);
        assert!(matches!(d.pop_released(), Some(Held::SelfVote(2))));
    }

    #[test]
    fn an_install_that_drops_the_log_voids_earlier_claims_and_releases_its_holds_in_order() {
        let mut d = Durability::new(HardState::default());
        d.write_entries(None, &[e(1, 1), e(2, 1)]);
        d.take_open(0);
        let seq = d.issue_install(LogId { term: 2, index: 5 }, false);
        assert_eq!(seq, 2);
        assert!(d.hold(Held::Restore(SnapshotMeta::default())).is_none());
        let mut seen = Vec::new();
        assert!(d.persisted(1, |id| seen.push(id)));
        assert!(seen.is_empty(), "the install discards what write 1 wrote");
        assert!(
            d.pop_released().is_none(),
            "the restore waits for the install"
        );
        assert!(d.persisted(2, |id| seen.push(id)));
        assert_eq!(seen, vec![LogId { term: 2, index: 5 }]);
        assert!(matches!(d.pop_released(), Some(Held::Restore(_))));
    }

    #[test]
    fn an_install_that_keeps_the_log_keeps_earlier_claims() {
        let mut d = Durability::new(HardState::default());
        d.write_entries(None, &[e(1, 1), e(2, 1), e(3, 1)]);
        d.take_open(0);
        d.issue_install(LogId { term: 1, index: 2 }, true);
        let mut seen = Vec::new();
        d.persisted(2, |id| seen.push(id));
        assert_eq!(
            seen,
            vec![LogId { term: 1, index: 3 }, LogId { term: 1, index: 2 }]
        );
    }
}
