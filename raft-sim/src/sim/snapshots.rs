//! Snapshots in the simulation: each node's KV store is snapshotted onto its simulated disk
//! (begin and chunks written unsynced, the finish later, so that crashes land in between),
//! compactions run a little after they are asked for, chunks are read back for followers and
//! stored as they arrive, and installs are durable steps ordered with the writes.

use bytes::Bytes;
use raft_kv::KvStore;
use raft_proto_core::storage::Storage;
use raft_proto_core::{Input, LogId, SnapshotMeta};

use super::{Ev, Sim};
use crate::trace::tag;

impl Sim {
    /// `Output::TakeSnapshot`: the store has applied exactly up to the snapshot's index.
    pub(super) fn take_snapshot(&mut self, n: usize, meta: SnapshotMeta) {
        let index = meta.last_index;
        let node = &mut self.nodes[n];
        if node.kv.last_applied() != index {
            let detail = format!(
                "n{} asked for a snapshot at {index} with its store at {}",
                n + 1,
                node.kv.last_applied()
            );
            self.check_fail("snapshot at the handed-out index", detail);
            return;
        }
        let data = node.kv.snapshot();
        let digest = node.kv.digest();
        self.check.on_snapshot(self.now, n, index, digest);
        let written = (|| {
            node.disk.begin_snapshot(meta)?;
            let mut piece = 1 + (index as usize % 97);
            let mut rest = &data[..];
            while !rest.is_empty() {
                let (chunk, tail) = rest.split_at(piece.min(rest.len()));
                node.disk.write_snapshot_chunk(chunk)?;
                rest = tail;
                piece = piece * 2 + 1;
            }
            Ok::<(), crate::disk::DiskError>(())
        })();
        if let Err(e) = written {
            self.check_fail("snapshot writes", format!("n{}: {e}", n + 1));
            return;
        }
        let len = data.len() as u64;
        self.trace
            .record(self.now, &[tag("snapshot"), n as u64, index, len], || {
                format!("n{} snapshots its store at {index} ({len} bytes)", n + 1)
            });
        let inc = node.incarnation;
        let fail = self.rng.chance(0.05);
        let d = self.rng.range(100, 8_000);
        // Reactive nemesis: crash some nodes while their snapshot is being written out.
        if self.kinds.crashes && self.healed_at.is_none() && self.rng.chance(0.1) {
            let when = self.rng.range(0, d + 1_000);
            self.crash_and_restart(n, when);
        }
        self.at(
            d,
            Ev::SnapshotStored {
                node: n,
                inc,
                index,
                fail,
            },
        );
    }

    /// The snapshot's data is written: finish it durably and report it (or report a failure).
    pub(super) fn snapshot_stored(&mut self, n: usize, inc: u32, index: u64, fail: bool) {
        if self.nodes[n].incarnation != inc || self.nodes[n].raft.is_none() {
            return;
        }
        if fail {
            self.trace
                .record(self.now, &[tag("snapfail"), n as u64, index], || {
                    format!("n{}: its snapshot at {index} fails", n + 1)
                });
            self.step(n, Input::SnapshotFailed { index });
            return;
        }
        if let Err(e) = self.nodes[n].disk.finish_snapshot() {
            self.check_fail("snapshot writes", format!("n{}: {e}", n + 1));
            return;
        }
        // The finish synced everything written before it.
        self.report_durable(n);
        self.step(n, Input::SnapshotTaken { index });
    }

    pub(super) fn compact(&mut self, n: usize, inc: u32, through: u64) {
        if self.nodes[n].incarnation != inc || self.nodes[n].raft.is_none() {
            return;
        }
        if let Err(e) = self.nodes[n].disk.compact(through) {
            let detail = format!("n{} compacting through {through}: {e}", n + 1);
            self.check_fail("compaction within the snapshot", detail);
            return;
        }
        self.trace
            .record(self.now, &[tag("compact"), n as u64, through], || {
                format!("n{} compacts its log through {through}", n + 1)
            });
        self.report_durable(n);
    }

    /// `Output::ReadSnapshot`: a chunk of the latest stored snapshot, answered after a read.
    pub(super) fn read_snapshot(
        &mut self,
        n: usize,
        to: u64,
        _asked: LogId,
        offset: u64,
        max_len: u64,
    ) {
        let disk = &self.nodes[n].disk;
        let read = (|| {
            let meta = disk.snapshot_meta()?;
            let data = disk.read_snapshot_chunk(offset, max_len as usize)?;
            let total = disk.snapshot_len()?;
            Ok::<_, crate::disk::DiskError>((meta, data, total))
        })();
        let (meta, data, total) = match read {
            Ok((Some(meta), data, total)) => (meta, data, total),
            Ok((None, _, _)) => {
                self.check_fail(
                    "snapshot reads",
                    format!("n{} reads a snapshot it does not have", n + 1),
                );
                return;
            }
            Err(e) => {
                self.check_fail("snapshot reads", format!("n{}: {e}", n + 1));
                return;
            }
        };
        let inc = self.nodes[n].incarnation;
        let d = self.rng.range(20, 1_500);
        self.at(
            d,
            Ev::SnapshotRead {
                node: n,
                inc,
                to,
                snapshot: meta.last_id(),
                offset,
                data,
                total,
            },
        );
    }

    /// `Output::SnapshotChunk`: store a chunk received from the leader (unsynced).
    pub(super) fn store_snapshot_chunk(
        &mut self,
        n: usize,
        meta: SnapshotMeta,
        offset: u64,
        data: Bytes,
    ) {
        let disk = &mut self.nodes[n].disk;
        let stored = (|| {
            if offset == 0 {
                disk.begin_snapshot(meta)?;
            }
            disk.write_snapshot_chunk(&data)
        })();
        if let Err(e) = stored {
            self.check_fail(
                "snapshot chunks stored in order",
                format!("n{}: {e}", n + 1),
            );
        }
    }

    /// `Output::InstallSnapshot`: a durable step, synced in order with the writes.
    pub(super) fn install_snapshot(&mut self, n: usize, seq: u64, meta: SnapshotMeta) {
        let index = meta.last_index;
        self.trace
            .record(self.now, &[tag("install"), n as u64, index], || {
                format!("n{} installs the snapshot at {index}", n + 1)
            });
        self.nodes[n].disk.install(seq);
        if let Some(raft) = self.nodes[n].raft.as_ref() {
            self.check.check_terms(self.now, raft);
        }
        if !self.nodes[n].sync_busy {
            self.schedule_sync(n, seq);
        }
        // Reactive nemesis: crash some installs before, around or after they sync.
        if self.kinds.crashes && self.healed_at.is_none() && self.rng.chance(0.2) {
            let when = self.rng.range(0, 3_000);
            self.crash_and_restart(n, when);
        }
    }

    /// `Output::RestoreSnapshot`: the store is rebuilt from the stored snapshot.
    pub(super) fn restore_snapshot(&mut self, n: usize, meta: SnapshotMeta) {
        match self.nodes[n].disk.snapshot_meta() {
            Ok(Some(stored)) if stored == meta => {}
            other => {
                let detail = format!(
                    "n{} restores {:?} but its disk holds {other:?}",
                    n + 1,
                    meta.last_id()
                );
                self.check_fail("restore from the installed snapshot", detail);
                return;
            }
        }
        if !self.restore_store(n) {
            return;
        }
        let inc = self.nodes[n].incarnation;
        let d = self.rng.range(0, 2_000);
        self.at(d, Ev::Applied(n, inc, meta.last_index));
    }

    /// Rebuilds node `n`'s store from its disk's latest snapshot and checks it against the
    /// state the same prefix produced elsewhere. Returns false on a violation.
    pub(super) fn restore_store(&mut self, n: usize) -> bool {
        let disk = &self.nodes[n].disk;
        let read = (|| {
            let len = disk.snapshot_len()?;
            disk.read_snapshot_chunk(0, len as usize)
        })();
        let data = match read {
            Ok(d) => d,
            Err(e) => {
                self.check_fail("snapshot reads", format!("n{}: {e}", n + 1));
                return false;
            }
        };
        let store = match KvStore::restore_bytes(&data) {
            Ok(s) => s,
            Err(e) => {
                self.check_fail("stored snapshots restore", format!("n{}: {e}", n + 1));
                return false;
            }
        };
        let index = store.last_applied();
        self.check.on_restore(self.now, n, index, store.digest());
        self.trace
            .record(self.now, &[tag("restore"), n as u64, index], || {
                format!("n{} restores its store from the snapshot at {index}", n + 1)
            });
        self.nodes[n].kv = store;
        true
    }
}
