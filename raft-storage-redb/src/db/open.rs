//! Creating and opening database files: identity checks and loading what is durable.

use std::path::Path;

use raft_proto_core::{HardState, LogId, Membership, RecoveryError, MAX_INDEX};
use redb::{ReadableTable, ReadableTableMetadata, TableError};

use super::{
    fail, open_ro, Db, Result, FORMAT_VERSION, IDENTITY, LOG, SNAPSHOT, SNAPSHOT_DATA,
    SNAPSHOT_MEMBERSHIP, STATE,
};
use crate::error::{Inconsistency, RedbStorageError};
use crate::view::{SnapshotRecord, View};
use crate::Options;

impl Db {
    /// Initialises a new database file at `path` (which must not exist yet) with its identity
    /// and an empty state, and closes it.
    pub fn initialise(path: &Path, cluster_id: u64, node_id: u64, opts: &Options) -> Result<()> {
        let db = redb::Builder::new()
            .set_cache_size(opts.cache_size)
            .create(path)
            .map_err(|e| fail(path, "creating the database", e))?;
        let f = |e: redb::Error| fail(path, "initialising the database", e);
        let txn = db.begin_write().map_err(|e| f(e.into()))?;
        {
            let mut id = txn.open_table(IDENTITY).map_err(|e| f(e.into()))?;
            for (k, v) in [
                ("format_version", FORMAT_VERSION),
                ("cluster_id", cluster_id),
                ("node_id", node_id),
            ] {
                id.insert(k, v).map_err(|e| f(e.into()))?;
            }
            let mut state = txn.open_table(STATE).map_err(|e| f(e.into()))?;
            for k in ["term", "vote", "commit", "log_floor"] {
                state.insert(k, 0).map_err(|e| f(e.into()))?;
            }
            txn.open_table(SNAPSHOT).map_err(|e| f(e.into()))?;
            txn.open_table(LOG).map_err(|e| f(e.into()))?;
            txn.open_table(SNAPSHOT_DATA).map_err(|e| f(e.into()))?;
        }
        txn.commit().map_err(|e| f(e.into()))?;
        db.close().map_err(|e| f(e.into()))
    }

    /// Opens an existing database file and checks its identity.
    pub fn open(path: &Path, cluster_id: u64, node_id: u64, opts: &Options) -> Result<Self> {
        // redb 4.6 can panic (an assertion in its page store) while repairing or verifying a
        // damaged file; a damaged file must be an error naming it, never a crash of the node.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            redb::Builder::new()
                .set_cache_size(opts.cache_size)
                .set_check_integrity_on_open(opts.verify_on_open)
                .open(path)
        }));
        let opened = opened.map_err(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            RedbStorageError::Damaged {
                path: path.to_path_buf(),
                detail: format!("the database engine failed on the file's contents: {what}"),
            }
        })?;
        let db = opened.map_err(|e| match e {
            redb::DatabaseError::Storage(redb::StorageError::Io(io))
                if io.kind() == std::io::ErrorKind::InvalidData =>
            {
                RedbStorageError::NotRedb {
                    path: path.to_path_buf(),
                    detail: io.to_string(),
                }
            }
            redb::DatabaseError::UpgradeRequired(v) => RedbStorageError::NotRedb {
                path: path.to_path_buf(),
                detail: format!("redb file format {v} needs an upgrade"),
            },
            e => fail(path, "opening the database", e),
        })?;
        let db = Db {
            db,
            path: path.to_path_buf(),
            failed: false,
            durable_commits: 0,
            buf: Vec::new(),
        };
        db.check_identity(cluster_id, node_id)?;
        Ok(db)
    }

    fn check_identity(&self, cluster_id: u64, node_id: u64) -> Result<()> {
        let path = || self.path.clone();
        let txn = self.read_txn()?;
        let table = match txn.open_table(IDENTITY) {
            Ok(t) => t,
            Err(TableError::Storage(e)) => return Err(self.err("reading the identity")(e.into())),
            Err(_) => return Err(RedbStorageError::NotRaftStorage { path: path() }),
        };
        let get = |key: &str| -> Result<Option<u64>> {
            let v = table
                .get(key)
                .map_err(|e| self.err("reading the identity")(e.into()))?;
            Ok(v.map(|g| g.value()))
        };
        let version = get("format_version")?
            .ok_or_else(|| RedbStorageError::NotRaftStorage { path: path() })?;
        if version > FORMAT_VERSION {
            return Err(RedbStorageError::NewerFormat {
                path: path(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if version != FORMAT_VERSION {
            return Err(RedbStorageError::UnknownFormat {
                path: path(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let found = get("cluster_id")?
            .ok_or_else(|| self.inconsistent(Inconsistency::MissingRecord("cluster_id")))?;
        if found != cluster_id {
            return Err(RedbStorageError::WrongCluster {
                path: path(),
                expected: cluster_id,
                found,
            });
        }
        let found = get("node_id")?
            .ok_or_else(|| self.inconsistent(Inconsistency::MissingRecord("node_id")))?;
        if found != node_id {
            return Err(RedbStorageError::WrongNode {
                path: path(),
                expected: node_id,
                found,
            });
        }
        Ok(())
    }

    /// The membership recorded with the latest snapshot (empty if none was recorded: files
    /// written before snapshots carried one).
    pub fn load_membership(&self) -> Result<Membership> {
        let txn = self.read_txn()?;
        let table = match txn.open_table(SNAPSHOT_MEMBERSHIP) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Membership::default()),
            Err(e) => return Err(self.err("opening a table")(e.into())),
        };
        let op = "reading the snapshot's membership";
        if let Some(v) = table.get("record").map_err(|e| self.err(op)(e.into()))? {
            return crate::codec::decode_membership(v.value())
                .ok_or_else(|| self.inconsistent(Inconsistency::BadMembership));
        }
        match table.get("current").map_err(|e| self.err(op)(e.into()))? {
            None => Ok(Membership::default()),
            Some(v) => crate::codec::decode_membership_v1(v.value())
                .ok_or_else(|| self.inconsistent(Inconsistency::BadMembership)),
        }
    }

    /// Reads the durable state and checks that its parts fit together.
    pub fn load_view(&self) -> Result<View> {
        let txn = self.read_txn()?;
        let op = "reading the state";
        let state = open_ro(self, &txn, STATE, "table raft_state")?;
        let get = |key: &'static str| -> Result<u64> {
            let v = state.get(key).map_err(|e| self.err(op)(e.into()))?;
            v.map(|g| g.value())
                .ok_or_else(|| self.inconsistent(Inconsistency::MissingRecord(key)))
        };
        let hard_state = HardState {
            term: get("term")?,
            vote: get("vote")?,
            commit: get("commit")?,
        };
        let floor = get("log_floor")?;
        let snaps = open_ro(self, &txn, SNAPSHOT, "table raft_snapshot")?;
        let snapshot = snaps
            .get("current")
            .map_err(|e| self.err(op)(e.into()))?
            .map(|g| {
                let (id, last_index, last_term, len) = g.value();
                SnapshotRecord {
                    id,
                    last: LogId {
                        term: last_term,
                        index: last_index,
                    },
                    len,
                }
            });
        let covered = snapshot.map_or(0, |s| s.last.index);
        // Bounds that keep index and id arithmetic from overflowing.
        if covered > MAX_INDEX {
            let e = RecoveryError::IndexOutOfRange { index: covered };
            return Err(self.inconsistent(e.into()));
        }
        if let Some(s) = snapshot.filter(|s| s.id >= u64::MAX / 2) {
            return Err(self.inconsistent(Inconsistency::SnapshotId { id: s.id }));
        }
        if floor > covered {
            return Err(
                self.inconsistent(Inconsistency::CompactedBeyondSnapshot { floor, covered })
            );
        }
        let log = open_ro(self, &txn, LOG, "table raft_log")?;
        let first = log
            .first()
            .map_err(|e| self.err(op)(e.into()))?
            .map(|(k, _)| k.value());
        let last = log
            .last()
            .map_err(|e| self.err(op)(e.into()))?
            .map(|(k, _)| k.value());
        let count = log.len().map_err(|e| self.err(op)(e.into()))?;
        let last = match (first, last) {
            (Some(first), Some(last)) => {
                if first != floor + 1 {
                    return Err(self.inconsistent(Inconsistency::LogStart { first, floor }));
                }
                if last - first + 1 != count {
                    return Err(self.inconsistent(Inconsistency::LogHoles { first, last, count }));
                }
                last
            }
            _ => floor,
        };
        if let Some(s) = snapshot {
            let data = open_ro(self, &txn, SNAPSHOT_DATA, "table raft_snapshot_data")?;
            let mut pieces = data
                .range((s.id, 0u64)..(s.id + 1, 0u64))
                .map_err(|e| self.err(op)(e.into()))?;
            let end = match pieces.next_back() {
                Some(piece) => {
                    let (k, v) = piece.map_err(|e| self.err(op)(e.into()))?;
                    k.value().1 + v.value().len() as u64
                }
                None => 0,
            };
            if end != s.len {
                return Err(self.inconsistent(Inconsistency::SnapshotLength {
                    recorded: s.len,
                    found: end,
                }));
            }
        }
        Ok(View {
            floor,
            last,
            hard_state,
            snapshot,
        })
    }
}
