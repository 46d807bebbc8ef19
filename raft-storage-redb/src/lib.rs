//! # raft-storage-redb
//!
//! Durable storage for one `raft-proto-core` node in a single [redb](https://docs.rs/redb)
//! database file: the Raft log, the hard state (term, vote, commit) and the latest snapshot,
//! behind the core's [`Storage`] trait.
//!
//! - **Group commit**: one [`Storage::write`] call is one redb write transaction, committed
//!   durably (fsync) once, whatever the number of [`PersistWrite`]s in it. A write that breaks the
//!   contract aborts the transaction: nothing of the call is applied.
//! - **Entries** are keyed by index; the value is a 9-byte header (term, kind) followed by the
//!   payload as given.
//! - **Snapshots** are streamed: chunks go into a table of pieces keyed by (snapshot id, byte
//!   offset) with non-durable commits, and [`Storage::finish_snapshot`] swaps the new snapshot in
//!   with one durable commit. Reads fetch only the pieces they need, so no snapshot has to fit in
//!   memory (beyond the chunks the caller hands over).
//! - **Identity**: the file records the cluster id, the node id and a format version. Opening a
//!   file of another cluster or node, of a newer format, a file that is not a redb database, or a
//!   damaged one fails with a [`RedbStorageError`] that names the file. No Raft data is dropped
//!   or rewritten on open (redb itself may update its own bookkeeping: it rebuilds its allocator
//!   state after a crash and when verifying the file). [`Storage::recover`] checks the stored
//!   state and refuses inconsistent data with an error rather than a panic.
//! - **Verification**: by default every open verifies the checksums of the whole file
//!   ([`Options::verify_on_open`]), about one second per GiB here; a file damaged outside redb
//!   is then refused instead of trusted.
//! - **After a failed commit** the handle refuses everything ([`RedbStorageError::Failed`]):
//!   whether the commit reached the disk is unknown until the file is reopened.
//!
//! ```no_run
//! use raft_proto_core::storage::Storage;
//! use raft_storage_redb::RedbStorage;
//!
//! # fn main() -> Result<(), raft_storage_redb::RedbStorageError> {
//! let mut storage = RedbStorage::open_or_create("node-1.redb", 0xC1u64, 1)?;
//! let recovered = storage.recover()?; // feed to RaftNode::new
//! # let _ = recovered;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod codec;
mod db;
mod error;
mod view;

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use raft_proto_core::storage::Storage;
use raft_proto_core::{
    Entry, HardState, Index, Membership, PersistWrite, RecoveredState, SnapshotMeta, MAX_INDEX,
};

use db::Db;
pub use db::FORMAT_VERSION;
pub use error::{Inconsistency, RedbStorageError, Rejection};
use view::{Incoming, View};

type Result<T> = std::result::Result<T, RedbStorageError>;

/// Tuning of a [`RedbStorage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Verify the checksums of the whole file on open, so that a file damaged outside redb is
    /// reported as [`RedbStorageError::Damaged`] instead of being trusted (redb may panic on
    /// damaged pages it trusts). Costs one read of the file per open. Default: `true`.
    pub verify_on_open: bool,
    /// Bytes of memory redb may use to cache pages. Default: 64 MiB.
    pub cache_size: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            verify_on_open: true,
            cache_size: 64 << 20,
        }
    }
}

/// Whether opening may, or must, create the database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The file must exist.
    Open,
    /// The file must not exist; a new database is created.
    Create,
    /// Open the file if it exists, create it otherwise.
    OpenOrCreate,
}

/// One node's log, hard state and snapshot in a redb database file.
pub struct RedbStorage {
    db: Db,
    path: PathBuf,
    cluster_id: u64,
    node_id: u64,
    /// What is durable, kept in step with every commit.
    view: View,
    /// The latest snapshot's membership.
    membership: Membership,
    /// The snapshot being received, if any.
    incoming: Option<Incoming>,
}

impl std::fmt::Debug for RedbStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStorage")
            .field("path", &self.path)
            .field("cluster_id", &self.cluster_id)
            .field("node_id", &self.node_id)
            .field("first_index", &(self.view.floor + 1))
            .field("last_index", &self.view.last)
            .field("hard_state", &self.view.hard_state)
            .field("snapshot", &self.view.snapshot.map(|s| s.last))
            .finish()
    }
}

impl RedbStorage {
    /// Opens the existing database at `path`, which must belong to `cluster_id` and `node_id`.
    pub fn open(path: impl AsRef<Path>, cluster_id: u64, node_id: u64) -> Result<Self> {
        Self::open_with(
            path,
            cluster_id,
            node_id,
            OpenMode::Open,
            &Options::default(),
        )
    }

    /// Creates a new database at `path`; fails if a file is already there.
    pub fn create(path: impl AsRef<Path>, cluster_id: u64, node_id: u64) -> Result<Self> {
        Self::open_with(
            path,
            cluster_id,
            node_id,
            OpenMode::Create,
            &Options::default(),
        )
    }

    /// Opens the database at `path`, creating it first if no file is there.
    pub fn open_or_create(path: impl AsRef<Path>, cluster_id: u64, node_id: u64) -> Result<Self> {
        let mode = OpenMode::OpenOrCreate;
        Self::open_with(path, cluster_id, node_id, mode, &Options::default())
    }

    /// Opens or creates the database at `path` as `mode` says, tuned by `options`.
    ///
    /// A new database is initialised under a temporary name next to `path` and linked into
    /// place only once complete, so a crash during creation never leaves a half-made database
    /// at `path`.
    pub fn open_with(
        path: impl AsRef<Path>,
        cluster_id: u64,
        node_id: u64,
        mode: OpenMode,
        options: &Options,
    ) -> Result<Self> {
        let path = path.as_ref();
        let exists = match fs::metadata(path) {
            Ok(meta) => Some(meta.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(io_err(path, "looking for the database file", source)),
        };
        match (mode, exists) {
            (OpenMode::Open, None) => {
                return Err(RedbStorageError::NotFound {
                    path: path.to_path_buf(),
                })
            }
            (OpenMode::Create, Some(_)) => {
                return Err(RedbStorageError::AlreadyExists {
                    path: path.to_path_buf(),
                })
            }
            (_, None) => create_file(path, cluster_id, node_id, options)?,
            (_, Some(0)) => {
                return Err(RedbStorageError::NotRedb {
                    path: path.to_path_buf(),
                    detail: "the file is empty".into(),
                })
            }
            (_, Some(_)) => {}
        }
        let db = Db::open(path, cluster_id, node_id, options)?;
        let view = db.load_view()?;
        let membership = db.load_membership()?;
        Ok(RedbStorage {
            db,
            path: path.to_path_buf(),
            cluster_id,
            node_id,
            view,
            membership,
            incoming: None,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cluster the database belongs to.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// The node the database belongs to.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// Durable (fsynced) commits made through this handle: one per non-empty
    /// [`Storage::write`], [`Storage::compact`] that drops entries and
    /// [`Storage::finish_snapshot`].
    pub fn durable_commits(&self) -> u64 {
        self.db.durable_commits()
    }

    /// Closes the database, reporting errors that dropping the handle would ignore.
    pub fn close(self) -> Result<()> {
        self.db.close()
    }

    fn rejected(&self, source: Rejection) -> RedbStorageError {
        RedbStorageError::Rejected {
            path: self.path.clone(),
            source,
        }
    }
}

fn io_err(path: &Path, op: &'static str, source: std::io::Error) -> RedbStorageError {
    RedbStorageError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Creates a complete new database at `path` without ever exposing a partial one there.
fn create_file(path: &Path, cluster_id: u64, node_id: u64, options: &Options) -> Result<()> {
    let name = path.file_name().ok_or_else(|| {
        let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name");
        io_err(path, "creating the database", e)
    })?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".creating");
    let tmp = path.with_file_name(tmp_name);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(io_err(&tmp, "removing an unfinished creation", source)),
    }
    if let Err(e) = Db::initialise(&tmp, cluster_id, node_id, options) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // A hard link never replaces an existing file, unlike a rename.
    let linked = fs::hard_link(&tmp, path);
    let removed = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(RedbStorageError::AlreadyExists {
                path: path.to_path_buf(),
            })
        }
        Err(source) => return Err(io_err(path, "linking the new database into place", source)),
    }
    removed.map_err(|source| io_err(&tmp, "removing the temporary name", source))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| io_err(dir, "syncing the directory", source))
}

impl Storage for RedbStorage {
    type Error = RedbStorageError;

    fn recover(&mut self) -> Result<RecoveredState> {
        self.incoming = None;
        let view = self.db.load_view()?;
        let membership = self.db.load_membership()?;
        let entries = if view.last > view.floor {
            self.db.entries(view.floor + 1, view.last + 1)?
        } else {
            Vec::new()
        };
        let state = RecoveredState {
            hard_state: view.hard_state,
            snapshot: view.snapshot.map(|s| s.meta(&membership)),
            entries,
        };
        state
            .validate()
            .map_err(|e| RedbStorageError::Inconsistent {
                path: self.path.clone(),
                source: e.into(),
            })?;
        self.view = view;
        self.membership = membership;
        Ok(state)
    }

    fn write(&mut self, writes: &[PersistWrite]) -> Result<()> {
        let idle = |w: &PersistWrite| {
            w.truncate_from.is_none() && w.entries.is_empty() && w.hard_state.is_none()
        };
        if writes.iter().all(idle) {
            return self.db.check_usable();
        }
        let mut next = self.view;
        self.db.write(&mut next, writes)?;
        self.view = next;
        Ok(())
    }

    fn entries(&self, lo: Index, hi: Index) -> Result<Vec<Entry>> {
        let lo = lo.max(self.view.floor + 1);
        let hi = hi.min(self.view.last + 1);
        if lo >= hi {
            self.db.check_usable()?;
            return Ok(Vec::new());
        }
        self.db.entries(lo, hi)
    }

    fn first_index(&self) -> Result<Index> {
        self.db.check_usable()?;
        Ok(self.view.floor + 1)
    }

    fn last_index(&self) -> Result<Index> {
        self.db.check_usable()?;
        Ok(self.view.last)
    }

    fn hard_state(&self) -> Result<HardState> {
        self.db.check_usable()?;
        Ok(self.view.hard_state)
    }

    fn compact(&mut self, through: Index) -> Result<()> {
        self.db.check_usable()?;
        match self.view.compaction(through) {
            Err(e) => Err(self.rejected(e)),
            Ok(None) => Ok(()),
            Ok(Some(floor)) => {
                self.db.compact(floor)?;
                self.view.floor = floor;
                Ok(())
            }
        }
    }

    fn begin_snapshot(&mut self, meta: SnapshotMeta) -> Result<()> {
        self.incoming = None;
        if meta.last_index > MAX_INDEX {
            let index = meta.last_index;
            return Err(self.rejected(Rejection::IndexOutOfRange { index }));
        }
        let id = self.view.next_snapshot_id();
        self.db.clear_snapshot_data_from(id)?;
        self.incoming = Some(Incoming { id, meta, len: 0 });
        Ok(())
    }

    fn write_snapshot_chunk(&mut self, chunk: &[u8]) -> Result<()> {
        let Some(incoming) = self.incoming.take() else {
            return Err(self.rejected(Rejection::NoSnapshotInProgress));
        };
        let Some(len) = incoming.len.checked_add(chunk.len() as u64) else {
            self.incoming = Some(incoming);
            return Err(self.rejected(Rejection::SnapshotTooLarge));
        };
        if chunk.is_empty() {
            self.incoming = Some(incoming);
            return self.db.check_usable();
        }
        // A failed write leaves the transfer unusable (what reached the table is unknown).
        self.db.append_snapshot_data(&incoming, chunk)?;
        self.incoming = Some(Incoming { len, ..incoming });
        Ok(())
    }

    fn finish_snapshot(&mut self) -> Result<()> {
        let Some(incoming) = self.incoming.take() else {
            return Err(self.rejected(Rejection::NoSnapshotInProgress));
        };
        let mut next = self.view;
        self.db.finish_snapshot(&mut next, &incoming)?;
        self.view = next;
        self.membership = (*incoming.meta.membership).clone();
        Ok(())
    }

    fn snapshot_meta(&self) -> Result<Option<SnapshotMeta>> {
        self.db.check_usable()?;
        Ok(self.view.snapshot.map(|s| s.meta(&self.membership)))
    }

    fn snapshot_len(&self) -> Result<u64> {
        self.db.check_usable()?;
        Ok(self.view.snapshot.map_or(0, |s| s.len))
    }

    fn read_snapshot_chunk(&self, offset: u64, max_len: usize) -> Result<Bytes> {
        match &self.view.snapshot {
            Some(snap) => self.db.read_snapshot(snap, offset, max_len),
            None => self.db.check_usable().map(|()| Bytes::new()),
        }
    }
}
