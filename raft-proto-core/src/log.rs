//! The replicated log as the core sees it: a storage-backed prefix and an in-memory tail, the
//! terms of every entry, and the cursors (committed, stable, applying, applied).
//!
//! ```text
//!   floor        mem_start                                        last
//!     |  storage only |  in memory (cache, then unapplied entries)  |
//! ----+---------------+---------------------------------------------+
//!  compacted          |<- applied & durable ->|<- not yet applied ->|
//! ```
//!
//! - `floor` is the last entry the log no longer holds (covered by a snapshot); its term is
//!   known. Entries `floor.index + 1 ..= last` exist in storage (or in a write on its way there).
//! - The terms of all those entries are kept as runs (the first index of each term), which is
//!   a few words per election, not per entry: the log can answer `term(i)` for any index above
//!   the floor without holding the entry.
//! - Only a suffix of the entries is in memory. Entries that are applied and durable are the
//!   cache: they are dropped from the front once the cache exceeds its byte budget, and a
//!   leader that needs them again for a lagging follower asks the driver to read them back.
//!   Entries not yet applied or not yet durable always stay in memory.
//!
//! Cursors only move through methods that keep `applied <= applying <= committed <= last`,
//! `floor <= last` and `stable <= last`, and never drop an entry that is not applied and
//! durable unless it lies at or below the floor (see `check`, run in debug builds after every
//! change). Usually `floor <= applied` and `applying <= stable` too, but not between a
//! snapshot's install and its restore (the state machine is behind the new floor) or its
//! durability (the log ahead of its durable prefix).

use std::collections::VecDeque;

use crate::types::{Entry, Index, LogId, Term};

/// Why entries cannot be read from memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// The index lies at or below the floor: only a snapshot covers it.
    Compacted,
    /// The entries were dropped from memory; storage still holds them from `lo` on.
    Evicted,
}

#[derive(Debug, Clone)]
pub(crate) struct RaftLog {
    floor: LogId,
    last: LogId,
    /// First index of each term present in `floor.index + 1 ..= last`, increasing.
    runs: VecDeque<LogId>,
    /// The in-memory suffix of the log, ending at `last`.
    entries: VecDeque<Entry>,
    /// Sum of `Entry::size` over `entries`.
    mem_bytes: u64,
    /// Byte budget of applied, durable entries kept in memory.
    cache_bytes: u64,
    /// Highest index whose prefix is durable and equal to this log.
    stable: Index,
    committed: Index,
    /// Highest index handed to the driver in an `Apply` (or covered by a restored snapshot).
    applying: Index,
    /// Highest index the driver reported applied.
    applied: Index,
    /// Bytes of entries handed out for applying and not yet reported applied.
    applying_bytes: VecDeque<(Index, u64)>,
    applying_bytes_total: u64,
}

impl RaftLog {
    /// A log recovered from storage: `entries` follow `floor` (the snapshot's last entry, or
    /// a kept entry below it); everything is durable, and the state machine holds everything up
    /// to `snapshot` (its restored snapshot's last index, at or above the floor, within the log).
    pub(crate) fn recovered(
        floor: LogId,
        entries: Vec<Entry>,
        committed: Index,
        snapshot: Index,
        cache_bytes: u64,
    ) -> Self {
        let mut log = RaftLog {
            floor,
            last: floor,
            runs: VecDeque::new(),
            entries: VecDeque::with_capacity(entries.len()),
            mem_bytes: 0,
            cache_bytes,
            stable: floor.index,
            committed: floor.index,
            applying: floor.index,
            applied: floor.index,
            applying_bytes: VecDeque::new(),
            applying_bytes_total: 0,
        };
        for e in entries {
            log.push(e);
        }
        log.stable = log.last.index;
        let snapshot = snapshot.clamp(floor.index, log.last.index);
        log.applying = snapshot;
        log.applied = snapshot;
        log.committed = committed.clamp(snapshot, log.last.index);
        log.evict();
        log.check();
        log
    }

    // ----- positions and terms -----

    /// The last entry the log no longer holds (compacted into a snapshot), or index 0.
    pub(crate) fn floor(&self) -> LogId {
        self.floor
    }

    pub(crate) fn last_index(&self) -> Index {
        self.last.index
    }

    pub(crate) fn last_id(&self) -> LogId {
        self.last
    }

    /// First index held in memory (`last + 1` when none is).
    pub(crate) fn mem_start(&self) -> Index {
        self.last.index + 1 - self.entries.len() as u64
    }

    pub(crate) fn stable(&self) -> Index {
        self.stable
    }

    pub(crate) fn committed(&self) -> Index {
        self.committed
    }

    pub(crate) fn applying(&self) -> Index {
        self.applying
    }

    pub(crate) fn applied(&self) -> Index {
        self.applied
    }

    /// Entries and bytes held in memory.
    pub(crate) fn mem_usage(&self) -> (usize, u64) {
        (self.entries.len(), self.mem_bytes)
    }

    /// Term of the entry at `index`, if the log knows it (the floor included).
    pub(crate) fn term(&self, index: Index) -> Option<Term> {
        if index == self.floor.index {
            return Some(self.floor.term);
        }
        if index < self.floor.index || index > self.last.index {
            return None;
        }
        // Most lookups are in the newest term.
        if let Some(newest) = self.runs.back() {
            if index >= newest.index {
                return Some(newest.term);
            }
        }
        // The last run starting at or before `index`.
        let k = self.runs.partition_point(|r| r.index <= index);
        self.runs.get(k.wrapping_sub(1)).map(|r| r.term)
    }

    pub(crate) fn matches(&self, id: LogId) -> bool {
        self.term(id.index) == Some(id.term)
    }

    /// Whether a candidate whose last entry is `last` is at least as up to date as this log
    /// (section 5.4.1).
    pub(crate) fn is_up_to_date(&self, last: LogId) -> bool {
        let mine = self.last;
        last.term > mine.term || (last.term == mine.term && last.index >= mine.index)
    }

    /// The entry at `index`, if it is in memory.
    pub(crate) fn get(&self, index: Index) -> Option<&Entry> {
        let start = self.mem_start();
        if index < start {
            return None;
        }
        self.entries.get((index - start) as usize)
    }

    /// Clones entries `lo..=hi` from memory (payloads are reference counted), stopping once
    /// `max_bytes` is exceeded but always returning at least one entry when the range is not
    /// empty. An empty range gives an empty vector.
    #[cfg(test)]
    pub(crate) fn slice(
        &self,
        lo: Index,
        hi: Index,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, Unavailable> {
        self.slice_sized(lo, hi, max_bytes)
            .map(|(entries, _)| entries)
    }

    /// Like [`RaftLog::slice`], with the entries' total size.
    pub(crate) fn slice_sized(
        &self,
        lo: Index,
        hi: Index,
        max_bytes: u64,
    ) -> Result<(Vec<Entry>, u64), Unavailable> {
        let hi = hi.min(self.last.index);
        if lo > hi {
            return Ok((Vec::new(), 0));
        }
        if lo <= self.floor.index {
            return Err(Unavailable::Compacted);
        }
        let start = self.mem_start();
        if lo < start {
            return Err(Unavailable::Evicted);
        }
        let a = (lo - start) as usize;
        let b = (hi - start) as usize + 1;
        let mut size = 0u64;
        let mut n = 0usize;
        for e in self.entries.range(a..b) {
            let next = size + e.size();
            if n > 0 && next > max_bytes {
                break;
            }
            size = next;
            n += 1;
        }
        let mut out = Vec::with_capacity(n);
        out.extend(self.entries.range(a..a + n).cloned());
        Ok((out, size))
    }

    /// Sum of entry sizes in `lo..=hi` held in memory.
    pub(crate) fn bytes_between(&self, lo: Index, hi: Index) -> u64 {
        let hi = hi.min(self.last.index);
        let start = self.mem_start();
        let lo = lo.max(start);
        if lo > hi {
            return 0;
        }
        let a = (lo - start) as usize;
        let b = (hi - start) as usize + 1;
        self.entries.range(a..b).map(Entry::size).sum()
    }

    /// For a rejected append: the last index at or below `index` whose term is at most `term`,
    /// with that term. Entries with a larger term there cannot match the leader's. Answers
    /// from the term runs, so it needs no entry in memory; below the floor it answers the floor.
    pub(crate) fn find_conflict_by_term(&self, index: Index, term: Term) -> LogId {
        let index = index.min(self.last.index);
        if index <= self.floor.index {
            return self.floor;
        }
        // Runs starting at or below `index`, walked from the newest.
        let k = self.runs.partition_point(|r| r.index <= index);
        let mut at = index;
        for r in self.runs.range(..k).rev() {
            if r.term <= term {
                return LogId {
                    term: r.term,
                    index: at,
                };
            }
            at = r.index - 1;
        }
        self.floor
    }

    /// First index in `entries` that is absent here or has another term; `None` when all of
    /// them are already present.
    pub(crate) fn find_conflict(&self, entries: &[Entry]) -> Option<usize> {
        entries
            .iter()
            .position(|e| self.term(e.index) != Some(e.term))
    }

    /// Whether `entries` are exactly this log's entries from their first index on (same
    /// indexes, consecutive, same terms): a check of entries read back from storage.
    pub(crate) fn agrees_with(&self, entries: &[Entry]) -> bool {
        let Some(first) = entries.first() else {
            return false;
        };
        entries
            .iter()
            .enumerate()
            .all(|(k, e)| e.index == first.index + k as u64 && self.term(e.index) == Some(e.term))
    }

    // ----- changes -----

    /// Appends one entry at the end. The caller guarantees its index and that its term is not
    /// below the last one.
    pub(crate) fn push(&mut self, e: Entry) {
        debug_assert_eq!(e.index, self.last.index + 1);
        debug_assert!(e.term >= self.last.term);
        if self.runs.back().is_none_or(|r| r.term != e.term) {
            self.runs.push_back(LogId {
                term: e.term,
                index: e.index,
            });
        }
        self.last = LogId {
            term: e.term,
            index: e.index,
        };
        self.mem_bytes += e.size();
        self.entries.push_back(e);
    }

    /// Drops every entry at or above `index`. Returns false (changing nothing) if that would
    /// cut committed entries or the floor.
    pub(crate) fn truncate_from(&mut self, index: Index) -> bool {
        if index <= self.committed || index <= self.floor.index {
            return false;
        }
        if index > self.last.index {
            return true;
        }
        // Unapplied entries are all in memory, and index > committed >= applied.
        let start = self.mem_start();
        debug_assert!(index >= start);
        let keep = index.saturating_sub(start) as usize;
        for e in self.entries.drain(keep..) {
            self.mem_bytes -= e.size();
        }
        while self.runs.back().is_some_and(|r| r.index >= index) {
            self.runs.pop_back();
        }
        let new_last = index - 1;
        self.last = LogId {
            term: self.term_of_kept(new_last),
            index: new_last,
        };
        self.stable = self.stable.min(new_last);
        self.check();
        true
    }

    /// Term at `index` once everything above it is cut (`index <= last`).
    fn term_of_kept(&self, index: Index) -> Term {
        if index == self.floor.index {
            return self.floor.term;
        }
        self.runs.back().map_or(self.floor.term, |r| r.term)
    }

    /// Moves the commit index up to `index` (capped at the last entry). Returns whether it moved.
    pub(crate) fn commit_to(&mut self, index: Index) -> bool {
        let index = index.min(self.last.index);
        if index <= self.committed {
            return false;
        }
        self.committed = index;
        self.check();
        true
    }

    /// A write whose last entry was `id` is durable: the durable prefix reaches `id` if this log
    /// still holds it (by log matching, the same entry means the same prefix).
    pub(crate) fn stable_to(&mut self, id: LogId) {
        if id.index > self.stable && self.matches(id) {
            self.stable = id.index;
            self.evict();
            self.check();
        }
    }

    /// Hands out the next committed, durable entries for applying: at most `max_bytes` (at
    /// least one entry), and nothing while `max_pending_bytes` are already handed out and not
    /// reported applied.
    pub(crate) fn next_to_apply(
        &mut self,
        max_bytes: u64,
        max_pending_bytes: u64,
    ) -> Option<(Vec<Entry>, u64)> {
        let hi = self.committed.min(self.stable);
        if hi <= self.applying {
            return None;
        }
        if self.applying_bytes_total >= max_pending_bytes {
            return None;
        }
        let budget = max_bytes.min(max_pending_bytes - self.applying_bytes_total);
        // Unapplied entries are always in memory.
        let (entries, bytes) = self.slice_sized(self.applying + 1, hi, budget).ok()?;
        let last = entries.last()?.index;
        self.applying = last;
        self.applying_bytes.push_back((last, bytes));
        self.applying_bytes_total += bytes;
        self.check();
        Some((entries, bytes))
    }

    /// The driver applied everything up to `index`. Returns the new applied index.
    pub(crate) fn applied_to(&mut self, index: Index) -> Index {
        let index = index.min(self.applying);
        if index > self.applied {
            self.applied = index;
            while let Some(&(last, bytes)) = self.applying_bytes.front() {
                if last > index {
                    break;
                }
                self.applying_bytes.pop_front();
                self.applying_bytes_total -= bytes;
            }
            self.evict();
            self.check();
        }
        self.applied
    }

    /// Drops applied, durable entries from the front of memory while the cache is over budget.
    fn evict(&mut self) {
        let evictable = self.applied.min(self.stable);
        while self.mem_bytes > self.cache_bytes {
            match self.entries.front() {
                Some(e) if e.index <= evictable => {
                    self.mem_bytes -= e.size();
                    self.entries.pop_front();
                }
                _ => break,
            }
        }
    }

    /// Forgets every entry up to and including `through` (covered by a snapshot, applied):
    /// the floor moves there. Returns false (changing nothing) unless `floor < through <= applied`.
    pub(crate) fn compact_to(&mut self, through: Index) -> bool {
        if through <= self.floor.index || through > self.applied {
            return false;
        }
        let Some(term) = self.term(through) else {
            return false;
        };
        self.drop_through(LogId {
            term,
            index: through,
        });
        self.check();
        true
    }

    /// Replaces the log with the state of a snapshot whose last entry is `snap` (a snapshot
    /// received from the leader, newer than the commit index). If this log holds that entry,
    /// the entries after it stay; otherwise the whole log goes. The snapshot counts as
    /// committed and applied (its state machine is restored from it); it becomes durable with
    /// the write that installs it (`stable_to(snap)` then). Returns whether the log was kept.
    pub(crate) fn install_snapshot(&mut self, snap: LogId) -> bool {
        debug_assert!(snap.index > self.committed);
        let keep = self.matches(snap);
        if keep {
            self.drop_through(snap);
        } else {
            self.entries.clear();
            self.mem_bytes = 0;
            self.runs.clear();
            self.last = snap;
            self.stable = self.stable.min(self.committed);
            self.floor = snap;
        }
        self.committed = snap.index;
        self.applying = snap.index;
        // Batches handed out before still count against the apply backlog until the restore
        // is reported (`applied_to` the snapshot's index frees them). `applied` catches up then.
        self.check();
        keep
    }

    /// Moves the floor to `to` (an entry of this log), forgetting what lies at or below it.
    fn drop_through(&mut self, to: LogId) {
        while self.entries.front().is_some_and(|e| e.index <= to.index) {
            if let Some(e) = self.entries.pop_front() {
                self.mem_bytes -= e.size();
            }
        }
        // Drop the runs wholly at or below `to`, keeping the one that covers `to + 1`.
        while self.runs.len() >= 2 && self.runs[1].index <= to.index + 1 {
            self.runs.pop_front();
        }
        if self.runs.front().is_some_and(|r| r.index <= to.index) {
            if to.index == self.last.index {
                self.runs.clear();
            } else if let Some(first) = self.runs.front_mut() {
                first.index = to.index + 1;
            }
        }
        self.floor = to;
    }

    /// Debug-build check of the cursor invariants.
    fn check(&self) {
        debug_assert!(self.floor.index <= self.last.index, "{self:?}");
        debug_assert!(self.applying <= self.committed, "{self:?}");
        debug_assert!(self.committed <= self.last.index, "{self:?}");
        debug_assert!(self.stable <= self.last.index, "{self:?}");
        debug_assert!(self.applied <= self.applying, "{self:?}");
        debug_assert!(self.mem_start() > self.floor.index, "{self:?}");
        let evictable = self.applied.min(self.stable).max(self.floor.index);
        debug_assert!(
            self.mem_start() <= evictable + 1,
            "unapplied or undurable entries left memory: {self:?}"
        );
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
        RaftLog::recovered(LogId::default(), entries, 0, 0, u64::MAX)
    }

    fn id(term: Term, index: Index) -> LogId {
        LogId { term, index }
    }

    #[test]
    fn terms_and_bounds() {
        let l = log_of(&[1, 1, 2, 3]);
        assert_eq!(l.last_id(), id(3, 4));
        assert_eq!(l.term(0), Some(0));
        assert_eq!(l.term(3), Some(2));
        assert_eq!(l.term(5), None);
        assert!(l.is_up_to_date(id(3, 4)));
        assert!(l.is_up_to_date(id(4, 1)));
        assert!(!l.is_up_to_date(id(3, 3)));
        assert!(!l.is_up_to_date(id(2, 9)));
    }

    #[test]
    fn conflict_hint_skips_a_term_at_a_time() {
        let l = log_of(&[1, 1, 4, 4, 4, 5, 5]);
        assert_eq!(l.find_conflict_by_term(7, 6), id(5, 7));
        assert_eq!(l.find_conflict_by_term(7, 4), id(4, 5));
        assert_eq!(l.find_conflict_by_term(7, 2), id(1, 2));
        assert_eq!(l.find_conflict_by_term(20, 3), id(1, 2));
        assert_eq!(l.find_conflict_by_term(7, 0), id(0, 0));
        assert_eq!(l.find_conflict_by_term(4, 4), id(4, 4));
    }

    #[test]
    fn slice_respects_byte_cap_but_returns_one() {
        let l = log_of(&[1, 1, 1, 1]);
        let one = e(1, 1).size();
        assert_eq!(l.slice(1, 4, u64::MAX).map(|v| v.len()), Ok(4));
        assert_eq!(l.slice(1, 4, one * 2).map(|v| v.len()), Ok(2));
        assert_eq!(l.slice(2, 4, 1).map(|v| v.len()), Ok(1));
        assert_eq!(l.slice(5, 9, 100), Ok(Vec::new()));
        assert_eq!(l.bytes_between(2, 3), 2 * one);
    }

    #[test]
    fn truncation_lowers_stable_and_keeps_terms_right() {
        let mut l = log_of(&[1, 1, 2]);
        assert_eq!(l.stable(), 3);
        assert!(l.truncate_from(2));
        assert_eq!(l.last_id(), id(1, 1));
        assert_eq!(l.stable(), 1);
        assert_eq!(l.find_conflict(&[e(1, 1), e(2, 3)]), Some(1));
        assert_eq!(l.find_conflict(&[e(1, 1)]), None);
        l.push(e(2, 4));
        assert_eq!(l.term(2), Some(4));
        assert_eq!(l.term(1), Some(1));
    }

    #[test]
    fn committed_entries_cannot_be_truncated() {
        let mut l = log_of(&[1, 1, 2]);
        assert!(l.commit_to(2));
        assert!(!l.truncate_from(2));
        assert_eq!(l.last_index(), 3);
        assert!(l.truncate_from(3));
    }

    #[test]
    fn applied_durable_entries_leave_memory_beyond_the_cache() {
        let one = e(1, 1).size();
        let entries = (1..=10).map(|i| e(i, 1)).collect();
        let mut l = RaftLog::recovered(LogId::default(), entries, 10, 0, 3 * one);
        assert_eq!(l.mem_usage().0, 10, "nothing applied yet: everything stays");
        let (batch, _) = l.next_to_apply(u64::MAX, u64::MAX).expect("entries");
        assert_eq!(batch.len(), 10);
        assert_eq!(l.applied_to(6), 6);
        assert_eq!(
            l.mem_start(),
            7,
            "unapplied entries stay, whatever the budget"
        );
        l.applied_to(10);
        assert_eq!(l.mem_usage(), (3, 3 * one));
        assert_eq!(l.slice(5, 10, u64::MAX), Err(Unavailable::Evicted));
        assert_eq!(l.term(5), Some(1), "terms outlive the entries");
        assert!(l.agrees_with(&[e(5, 1), e(6, 1)]));
        assert!(!l.agrees_with(&[e(5, 2)]));
        assert!(!l.agrees_with(&[e(5, 1), e(7, 1)]));
    }

    #[test]
    fn apply_flow_control_caps_what_is_handed_out() {
        let one = e(1, 1).size();
        let entries = (1..=10).map(|i| e(i, 1)).collect();
        let mut l = RaftLog::recovered(LogId::default(), entries, 10, 0, u64::MAX);
        let (a, _) = l.next_to_apply(u64::MAX, 4 * one).expect("first batch");
        assert_eq!(a.len(), 4);
        assert!(l.next_to_apply(u64::MAX, 4 * one).is_none(), "cap reached");
        l.applied_to(2);
        assert!(
            l.next_to_apply(u64::MAX, 4 * one).is_none(),
            "a batch counts until it is applied whole"
        );
        l.applied_to(4);
        let (b, _) = l.next_to_apply(u64::MAX, 4 * one).expect("room again");
        assert_eq!(
            b.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![5, 6, 7, 8]
        );
    }

    #[test]
    fn compaction_moves_the_floor_and_keeps_later_terms() {
        let mut l = log_of(&[1, 1, 2, 2, 3]);
        l.commit_to(5);
        l.next_to_apply(u64::MAX, u64::MAX);
        assert!(!l.compact_to(4), "nothing applied yet");
        l.applied_to(5);
        assert!(l.compact_to(3));
        assert_eq!(l.floor(), id(2, 3));
        assert_eq!(l.term(3), Some(2));
        assert_eq!(l.term(2), None);
        assert_eq!(l.term(4), Some(2));
        assert_eq!(l.term(5), Some(3));
        assert_eq!(l.slice(3, 5, u64::MAX), Err(Unavailable::Compacted));
        assert_eq!(l.find_conflict_by_term(5, 1), id(2, 3));
        assert!(l.compact_to(5));
        assert_eq!(l.last_id(), id(3, 5));
        assert_eq!(l.term(5), Some(3));
        assert!(!l.compact_to(5));
    }

    #[test]
    fn installing_a_snapshot_keeps_a_matching_log_or_replaces_it() {
        let mut l = log_of(&[1, 1, 2, 2]);
        assert!(l.install_snapshot(id(1, 2)));
        assert_eq!((l.floor(), l.last_id()), (id(1, 2), id(2, 4)));
        assert_eq!((l.committed(), l.applying()), (2, 2));
        let mut m = log_of(&[1, 1, 2, 2]);
        assert!(!m.install_snapshot(id(3, 3)));
        assert_eq!((m.floor(), m.last_id()), (id(3, 3), id(3, 3)));
        assert_eq!(m.mem_usage().0, 0);
        assert!(m.stable() <= 3);
        m.stable_to(id(3, 3));
        assert_eq!(m.stable(), 3);
        assert_eq!(m.applied_to(3), 3);
    }
}
