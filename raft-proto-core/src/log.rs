//! The in-memory view of the replicated log: entries after the latest snapshot, plus the
//! commit, durability and apply cursors.

use std::collections::VecDeque;

use crate::types::{Entry, Index, LogId, Term};

#[derive(Debug, Clone)]
pub(crate) struct RaftLog {
    /// Last entry covered by the snapshot; `entries` start right after it.
    snapshot: LogId,
    entries: VecDeque<Entry>,
    /// Highest index whose prefix is durable and equal to the in-memory log.
    pub(crate) stable: Index,
    /// Highest index known committed.
    pub(crate) committed: Index,
    /// Highest index handed to the driver in an `Apply`.
    pub(crate) applying: Index,
    /// Highest index the driver reported applied.
    pub(crate) applied: Index,
}

impl RaftLog {
    /// A log recovered from storage: everything in it is durable.
    pub(crate) fn recovered(snapshot: LogId, entries: Vec<Entry>, committed: Index) -> Self {
        let entries: VecDeque<Entry> = entries.into();
        let last = snapshot.index + entries.len() as u64;
        RaftLog {
            snapshot,
            entries,
            stable: last,
            committed: committed.max(snapshot.index),
            applying: snapshot.index,
            applied: snapshot.index,
        }
    }

    pub(crate) fn first_index(&self) -> Index {
        self.snapshot.index + 1
    }

    pub(crate) fn last_index(&self) -> Index {
        self.snapshot.index + self.entries.len() as u64
    }

    pub(crate) fn last_term(&self) -> Term {
        self.entries.back().map_or(self.snapshot.term, |e| e.term)
    }

    pub(crate) fn last_id(&self) -> LogId {
        LogId {
            term: self.last_term(),
            index: self.last_index(),
        }
    }

    /// Term of the entry at `index`, if the log (or the snapshot boundary) knows it.
    pub(crate) fn term(&self, index: Index) -> Option<Term> {
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        if index < self.snapshot.index || index > self.last_index() {
            return None;
        }
        Some(self.entries[(index - self.snapshot.index - 1) as usize].term)
    }

    pub(crate) fn matches(&self, id: LogId) -> bool {
        self.term(id.index) == Some(id.term)
    }

    /// Whether a candidate whose last entry is `last` is at least as up to date as this log
    /// (section 5.4.1).
    pub(crate) fn is_up_to_date(&self, last: LogId) -> bool {
        let mine = self.last_id();
        last.term > mine.term || (last.term == mine.term && last.index >= mine.index)
    }

    /// The entry at `index`.
    pub(crate) fn get(&self, index: Index) -> Option<&Entry> {
        if index <= self.snapshot.index {
            return None;
        }
        self.entries.get((index - self.snapshot.index - 1) as usize)
    }

    /// Clones entries `lo..=hi` (payloads are reference counted), stopping once `max_bytes` is
    /// exceeded but always returning at least one entry when the range is not empty.
    pub(crate) fn slice(&self, lo: Index, hi: Index, max_bytes: u64) -> Vec<Entry> {
        let hi = hi.min(self.last_index());
        if lo > hi || lo <= self.snapshot.index {
            return Vec::new();
        }
        let start = (lo - self.snapshot.index - 1) as usize;
        let end = (hi - self.snapshot.index) as usize;
        let mut size = 0u64;
        let mut n = 0usize;
        for e in self.entries.range(start..end) {
            size += e.size();
            if n > 0 && size > max_bytes {
                break;
            }
            n += 1;
        }
        let mut out = Vec::with_capacity(n);
        out.extend(self.entries.range(start..start + n).cloned());
        out
    }

    /// Sum of entry sizes in `lo..=hi`.
    pub(crate) fn bytes_between(&self, lo: Index, hi: Index) -> u64 {
        let hi = hi.min(self.last_index());
        let lo = lo.max(self.first_index());
        if lo > hi {
            return 0;
        }
        let start = (lo - self.snapshot.index - 1) as usize;
        let end = (hi - self.snapshot.index) as usize;
        self.entries.range(start..end).map(Entry::size).sum()
    }

    /// Appends one entry at the end (the caller guarantees its index).
    pub(crate) fn push(&mut self, e: Entry) {
        debug_assert_eq!(e.index, self.last_index() + 1);
        self.entries.push_back(e);
    }

    /// Drops every entry at or above `index` (never committed ones: the caller checks).
    pub(crate) fn truncate_from(&mut self, index: Index) {
        if index <= self.snapshot.index {
            return;
        }
        let keep = (index - self.snapshot.index - 1) as usize;
        self.entries.truncate(keep);
        self.stable = self.stable.min(index - 1);
    }

    /// For a rejected append: the last index at or below `index` whose term is at most `term`,
    /// with that term. Entries with a larger term there cannot match the leader's.
    pub(crate) fn find_conflict_by_term(&self, index: Index, term: Term) -> LogId {
        let mut i = index.min(self.last_index());
        loop {
            match self.term(i) {
                Some(t) if t <= term => return LogId { term: t, index: i },
                Some(_) if i > self.snapshot.index => i -= 1,
                _ => {
                    return LogId {
                        term: self.snapshot.term,
                        index: self.snapshot.index,
                    }
                }
            }
        }
    }

    /// First index in `entries` that is absent here or has another term; `None` when all of
    /// them are already present.
    pub(crate) fn find_conflict(&self, entries: &[Entry]) -> Option<usize> {
        entries
            .iter()
            .position(|e| self.term(e.index) != Some(e.term))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EntryKind;
    use bytes::Bytes;

    fn e(index: Index, term: Term) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data: Bytes::from_static(b"x"),
        }
    }

    fn log_of(terms: &[Term]) -> RaftLog {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, &t)| e(i as u64 + 1, t))
            .collect();
        RaftLog::recovered(LogId::default(), entries, 0)
    }

    #[test]
    fn terms_and_bounds() {
        let l = log_of(&[1, 1, 2, 3]);
        assert_eq!(l.last_id(), LogId { term: 3, index: 4 });
        assert_eq!(l.term(0), Some(0));
        assert_eq!(l.term(3), Some(2));
        assert_eq!(l.term(5), None);
        assert!(l.is_up_to_date(LogId { term: 3, index: 4 }));
        assert!(l.is_up_to_date(LogId { term: 4, index: 1 }));
        assert!(!l.is_up_to_date(LogId { term: 3, index: 3 }));
        assert!(!l.is_up_to_date(LogId { term: 2, index: 9 }));
    }

    #[test]
    fn conflict_hint_skips_a_term_at_a_time() {
        let l = log_of(&[1, 1, 4, 4, 4, 5, 5]);
        // leader's prev (index 7, term 6): our entries of term 5 can't match; 4 <= 6? no: 5 <= 6.
        assert_eq!(l.find_conflict_by_term(7, 6), LogId { term: 5, index: 7 });
        assert_eq!(l.find_conflict_by_term(7, 4), LogId { term: 4, index: 5 });
        assert_eq!(l.find_conflict_by_term(7, 2), LogId { term: 1, index: 2 });
        assert_eq!(l.find_conflict_by_term(20, 3), LogId { term: 1, index: 2 });
        assert_eq!(l.find_conflict_by_term(7, 0), LogId { term: 0, index: 0 });
    }

    #[test]
    fn slice_respects_byte_cap_but_returns_one() {
        let l = log_of(&[1, 1, 1, 1]);
        let one = e(1, 1).size();
        assert_eq!(l.slice(1, 4, u64::MAX).len(), 4);
        assert_eq!(l.slice(1, 4, one * 2).len(), 2);
        assert_eq!(l.slice(2, 4, 1).len(), 1);
        assert!(l.slice(5, 9, 100).is_empty());
        assert_eq!(l.bytes_between(2, 3), 2 * one);
    }

    #[test]
    fn truncation_lowers_stable() {
        let mut l = log_of(&[1, 1, 2]);
        assert_eq!(l.stable, 3);
        l.truncate_from(2);
        assert_eq!(l.last_index(), 1);
        assert_eq!(l.stable, 1);
        assert_eq!(l.find_conflict(&[e(1, 1), e(2, 3)]), Some(1));
        assert_eq!(l.find_conflict(&[e(1, 1)]), None);
    }
}
