//! The in-memory picture of what is durable, and the contract checks made against it before
//! anything reaches the database. Pure logic: no I/O here.

use raft_proto_core::{HardState, Index, LogId, Membership, SnapshotMeta};

use crate::error::Rejection;

/// The latest snapshot as recorded: its data lives under `id` in the chunk table. (Its
/// membership is kept apart, so that this record stays a small copyable value.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SnapshotRecord {
    /// Key prefix of its data chunks. Ids grow by one per snapshot begun.
    pub id: u64,
    /// The last entry it covers.
    pub last: LogId,
    /// Bytes of data.
    pub len: u64,
}

impl SnapshotRecord {
    /// The full metadata, with the membership recorded beside it.
    pub fn meta(&self, membership: &Membership) -> SnapshotMeta {
        SnapshotMeta {
            last_index: self.last.index,
            last_term: self.last.term,
            membership: membership.clone().into(),
        }
    }
}

/// A snapshot being received (never survives a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Incoming {
    /// Key prefix of its data chunks.
    pub id: u64,
    /// What it will cover.
    pub meta: SnapshotMeta,
    /// Bytes received so far.
    pub len: u64,
}

/// What is durable: log bounds, hard state and the latest snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct View {
    /// Last compacted index: the log starts at `floor + 1`.
    pub floor: Index,
    /// Last stored index (`floor` when the log is empty).
    pub last: Index,
    /// The durable hard state.
    pub hard_state: HardState,
    /// The latest snapshot.
    pub snapshot: Option<SnapshotRecord>,
}

impl View {
    /// The snapshot's last index, 0 without one.
    pub fn covered(&self) -> Index {
        self.snapshot.map_or(0, |s| s.last.index)
    }

    /// Checks a cut and applies it to the view. Returns the index to delete from when the cut
    /// removes stored entries.
    pub fn cut(&mut self, at: Index) -> Result<Option<Index>, Rejection> {
        let floor = self.floor.max(self.covered());
        if at <= floor {
            return Err(Rejection::TruncateCompacted { index: at, floor });
        }
        if at > self.last {
            return Ok(None);
        }
        self.last = at - 1;
        Ok(Some(at))
    }

    /// Checks that `index` continues the log and records it.
    pub fn push(&mut self, index: Index) -> Result<(), Rejection> {
        let expected = self.last + 1;
        if index != expected {
            return Err(Rejection::NotContiguous {
                expected,
                found: index,
            });
        }
        self.last = index;
        Ok(())
    }

    /// Checks a compaction. Returns the new floor when entries are to be dropped.
    pub fn compaction(&self, through: Index) -> Result<Option<Index>, Rejection> {
        let covered = self.covered();
        if through > covered {
            return Err(Rejection::CompactBeyondSnapshot {
                index: through,
                covered,
            });
        }
        if through <= self.floor {
            return Ok(None);
        }
        Ok(Some(through.min(self.last)))
    }

    /// The id the next snapshot begun gets: above every id that may hold data.
    pub fn next_snapshot_id(&self) -> u64 {
        self.snapshot.map_or(0, |s| s.id) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_push_and_compaction_rules() {
        let mut v = View {
            floor: 2,
            last: 9,
            hard_state: HardState::default(),
            snapshot: Some(SnapshotRecord {
                id: 4,
                last: LogId { term: 1, index: 5 },
                len: 0,
            }),
        };
        assert!(v.cut(5).is_err());
        assert!(v.cut(3).is_err());
        assert_eq!(v.cut(11), Ok(None));
        assert_eq!(v.cut(10), Ok(None));
        assert_eq!(v.cut(8), Ok(Some(8)));
        assert_eq!(v.last, 7);
        assert!(v.push(9).is_err());
        assert_eq!(v.push(8), Ok(()));
        assert_eq!(v.compaction(2), Ok(None));
        assert_eq!(v.compaction(5), Ok(Some(5)));
        assert!(v.compaction(6).is_err());
        assert_eq!(v.next_snapshot_id(), 5);
    }
}
