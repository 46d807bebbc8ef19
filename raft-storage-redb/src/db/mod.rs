//! Every call into redb lives in this module (and its submodules `open` and `ops`), so a redb
//! upgrade touches nothing else.
//!
//! # Layout (format version 1)
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `raft_identity` | `&str`: `format_version`, `cluster_id`, `node_id` | `u64` |
//! | `raft_state` | `&str`: `term`, `vote`, `commit`, `log_floor` | `u64` |
//! | `raft_snapshot` | `&str`: `current` | `(id, last_index, last_term, len)` |
//! | `raft_snapshot_membership` | `&str`: `record` (`current` in files written before members carried data) | `&[u8]`: see [`crate::codec`] |
//! | `raft_log` | index `u64` | `&[u8]`: see [`crate::codec`] |
//! | `raft_snapshot_data` | `(snapshot id, byte offset)` | `&[u8]`, at most 1 MiB |
//!
//! `log_floor` is the last compacted index. Data of the snapshot being received is written under
//! the next id with non-durable commits, and becomes the latest snapshot in one durable commit.

use std::path::{Path, PathBuf};

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, TableDefinition, TableError,
    WriteTransaction,
};

use crate::error::{Inconsistency, RedbStorageError};

mod open;
mod ops;

/// The storage format this build reads and writes.
pub const FORMAT_VERSION: u64 = 1;

/// Largest piece of snapshot data stored under one key.
const PIECE: usize = 1 << 20;

const IDENTITY: TableDefinition<&str, u64> = TableDefinition::new("raft_identity");
const STATE: TableDefinition<&str, u64> = TableDefinition::new("raft_state");
const SNAPSHOT: TableDefinition<&str, (u64, u64, u64, u64)> = TableDefinition::new("raft_snapshot");
/// The latest snapshot's membership, written in the same commit as its record (a table added
/// after format 1 was first written: a file without it has no snapshot membership).
const SNAPSHOT_MEMBERSHIP: TableDefinition<&str, &[u8]> =
    TableDefinition::new("raft_snapshot_membership");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const SNAPSHOT_DATA: TableDefinition<(u64, u64), &[u8]> =
    TableDefinition::new("raft_snapshot_data");

type Result<T> = std::result::Result<T, RedbStorageError>;

/// Maps a redb error to ours, naming the file.
fn fail(path: &Path, op: &'static str, e: impl Into<redb::Error>) -> RedbStorageError {
    let path = path.to_path_buf();
    match e.into() {
        redb::Error::Corrupted(detail) => RedbStorageError::Damaged { path, detail },
        redb::Error::DatabaseAlreadyOpen => RedbStorageError::Locked { path },
        redb::Error::Io(source) => RedbStorageError::Io { path, op, source },
        other => RedbStorageError::Backend {
            path,
            op,
            source: Box::new(other),
        },
    }
}

/// An open database file.
pub(crate) struct Db {
    db: Database,
    path: PathBuf,
    /// Set when a commit failed: the file's state is unknown until reopened.
    failed: bool,
    /// Durable commits since open.
    durable_commits: u64,
    /// Reused encoding buffer.
    buf: Vec<u8>,
}

impl Db {
    fn err(&self, op: &'static str) -> impl Fn(redb::Error) -> RedbStorageError + '_ {
        move |e| fail(&self.path, op, e)
    }

    fn inconsistent(&self, source: Inconsistency) -> RedbStorageError {
        RedbStorageError::Inconsistent {
            path: self.path.clone(),
            source,
        }
    }

    /// Fails once a commit has failed: what is durable is then unknown.
    pub fn check_usable(&self) -> Result<()> {
        if self.failed {
            return Err(RedbStorageError::Failed {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    /// Durable commits made through this handle.
    pub fn durable_commits(&self) -> u64 {
        self.durable_commits
    }

    fn read_txn(&self) -> Result<ReadTransaction> {
        self.check_usable()?;
        self.db
            .begin_read()
            .map_err(|e| self.err("starting a read")(e.into()))
    }

    /// Runs `body` in one write transaction and commits it with `durability`. An error from
    /// `body` aborts the transaction; a failed commit leaves the handle unusable.
    fn transact<T>(
        &mut self,
        durability: Durability,
        body: impl FnOnce(&WriteTransaction, &Path, &mut Vec<u8>) -> Result<T>,
    ) -> Result<T> {
        self.check_usable()?;
        let op = "starting a write";
        let mut txn = self.db.begin_write().map_err(|e| self.err(op)(e.into()))?;
        txn.set_durability(durability)
            .map_err(|e| self.err(op)(e.into()))?;
        let out = match body(&txn, &self.path, &mut self.buf) {
            Ok(out) => out,
            Err(e) => {
                // Dropping the transaction aborts it too; an abort error adds nothing useful.
                let _ = txn.abort();
                return Err(e);
            }
        };
        if let Err(e) = txn.commit() {
            self.failed = true;
            return Err(fail(&self.path, "committing", e));
        }
        if matches!(durability, Durability::Immediate) {
            self.durable_commits += 1;
        }
        Ok(out)
    }

    /// Closes the file, reporting what dropping it would ignore.
    pub fn close(self) -> Result<()> {
        let path = self.path;
        self.db
            .close()
            .map_err(|e| fail(&path, "closing the database", e))
    }
}

/// Opens a table of a read transaction; a missing table is an inconsistency.
fn open_ro<K: redb::Key + 'static, V: redb::Value + 'static>(
    db: &Db,
    txn: &ReadTransaction,
    def: TableDefinition<K, V>,
    what: &'static str,
) -> Result<redb::ReadOnlyTable<K, V>> {
    match txn.open_table(def) {
        Ok(t) => Ok(t),
        Err(TableError::Storage(e)) => Err(db.err("opening a table")(e.into())),
        Err(_) => Err(db.inconsistent(Inconsistency::MissingRecord(what))),
    }
}
