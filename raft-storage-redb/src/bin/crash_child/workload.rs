//! The operations the crash child performs, in a line format its parent test can replay on a
//! model. Shared by the child binary and the crash test (included there with `#[path]`).
#![allow(dead_code)] // The child and the test each use part of this module.

use bytes::Bytes;
use raft_proto_core::storage::Storage;
use raft_proto_core::{Entry, EntryKind, HardState, Index, PersistWrite, SnapshotMeta, Term};

/// Cluster id of the crash test's database.
pub const CLUSTER: u64 = 0xC0FFEE;
/// Node id of the crash test's database.
pub const NODE: u64 = 3;

/// One durable operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// One `Storage::write` of one `PersistWrite`.
    Write {
        /// Cut point, if any.
        cut: Option<Index>,
        /// Index of the first appended entry.
        first: Index,
        /// Entries appended (all of term `term`).
        count: u64,
        /// Term of the appended entries.
        term: Term,
        /// Hard state stored with the write.
        hs: HardState,
    },
    /// A snapshot of `len` bytes installed with begin, chunks and finish.
    Snapshot {
        /// What it covers.
        meta: SnapshotMeta,
        /// Its data length.
        len: u64,
    },
    /// A compaction.
    Compact {
        /// Entries up to here are dropped.
        through: Index,
    },
}

/// The payload of entry `index` of term `term`: its length and bytes follow from both.
pub fn payload(index: Index, term: Term) -> Bytes {
    let h = mix(index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ term);
    let len = (h % 300) as usize;
    Bytes::from(
        (0..len)
            .map(|i| (h >> (i % 8 * 8)) as u8 ^ i as u8)
            .collect::<Vec<u8>>(),
    )
}

/// The snapshot data byte at `offset` of a snapshot ending at `last_index`.
pub fn snapshot_byte(last_index: Index, offset: u64) -> u8 {
    (offset.wrapping_mul(131).wrapping_add(last_index)) as u8
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small deterministic generator (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    /// The next number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0) % n.max(1)
    }
}

impl Op {
    /// The line announcing the operation before it starts.
    pub fn to_line(&self, seq: u64) -> String {
        match self {
            Op::Write {
                cut,
                first,
                count,
                term,
                hs,
            } => format!(
                "W {seq} {} {first} {count} {term} {} {} {}",
                cut.unwrap_or(0),
                hs.term,
                hs.vote,
                hs.commit
            ),
            Op::Snapshot { meta, len } => {
                format!("S {seq} {} {} {len}", meta.last_index, meta.last_term)
            }
            Op::Compact { through } => format!("C {seq} {through}"),
        }
    }

    /// Parses an announcement line into its sequence number and operation.
    pub fn parse(line: &str) -> Option<(u64, Op)> {
        let mut it = line.split_whitespace();
        let tag = it.next()?;
        let nums: Vec<u64> = it.map(|w| w.parse().ok()).collect::<Option<_>>()?;
        let op = match (tag, nums.as_slice()) {
            ("W", &[_, cut, first, count, term, t, v, c]) => Op::Write {
                cut: (cut != 0).then_some(cut),
                first,
                count,
                term,
                hs: HardState {
                    term: t,
                    vote: v,
                    commit: c,
                },
            },
            ("S", &[_, last_index, last_term, len]) => Op::Snapshot {
                meta: snapshot_meta(last_index, last_term),
                len,
            },
            ("C", &[_, through]) => Op::Compact { through },
            _ => return None,
        };
        Some((nums[0], op))
    }

    /// Carries the operation out on `s`.
    pub fn apply<S: Storage>(&self, s: &mut S) -> Result<(), S::Error> {
        match self {
            &Op::Write {
                cut,
                first,
                count,
                term,
                hs,
            } => {
                let entries = (first..first + count)
                    .map(|index| Entry {
                        term,
                        index,
                        kind: EntryKind::Normal,
                        data: payload(index, term),
                    })
                    .collect();
                s.write(&[PersistWrite {
                    seq: 0,
                    truncate_from: cut,
                    entries,
                    hard_state: Some(hs),
                }])
            }
            Op::Snapshot { meta, len } => {
                let len = *len;
                s.begin_snapshot(meta.clone())?;
                let mut off = 0;
                while off < len {
                    let n = (len - off).min(64 << 10);
                    let chunk: Vec<u8> = (off..off + n)
                        .map(|o| snapshot_byte(meta.last_index, o))
                        .collect();
                    s.write_snapshot_chunk(&chunk)?;
                    off += n;
                }
                s.finish_snapshot()
            }
            Op::Compact { through } => s.compact(*through),
        }
    }
}

/// The metadata a snapshot at `last_index` is written with: its membership depends on the
/// index, so that recovery can check the membership came back with the right snapshot.
pub fn snapshot_meta(last_index: u64, last_term: u64) -> SnapshotMeta {
    SnapshotMeta {
        last_index,
        last_term,
        membership: raft_proto_core::Membership::new(
            vec![1, 2, 3],
            Vec::new(),
            vec![4 + last_index % 7],
            [(
                4 + last_index % 7,
                bytes::Bytes::from_static(b"127.0.0.1:7004"),
            )]
            .into(),
        )
        .expect("a valid membership")
        .into(),
    }
}
