//! Why a [`crate::RedbStorage`] refused to open or to carry out an operation.
//!
//! Every error names the database file it concerns.

use std::path::PathBuf;

use raft_proto_core::{Index, RecoveryError};

/// An error of the redb storage backend. Each variant carries the path of the database file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedbStorageError {
    /// Opening a file that does not exist.
    #[error("{}: no such database file", .path.display())]
    NotFound {
        /// The database file.
        path: PathBuf,
    },
    /// Creating a database where a file already exists.
    #[error("{}: a file already exists there; refusing to create a database over it", .path.display())]
    AlreadyExists {
        /// The database file.
        path: PathBuf,
    },
    /// The file is not a redb database at all (empty, text, random bytes, ...).
    #[error("{}: not a redb database ({detail})", .path.display())]
    NotRedb {
        /// The file.
        path: PathBuf,
        /// What redb or the check reported.
        detail: String,
    },
    /// A redb database, but not one written by this crate (no Raft storage identity).
    #[error("{}: a redb database without a Raft storage identity (not created by raft-storage-redb)", .path.display())]
    NotRaftStorage {
        /// The database file.
        path: PathBuf,
    },
    /// The database was written by a newer version of this crate.
    #[error("{}: storage format version {found} is newer than the supported version {supported}", .path.display())]
    NewerFormat {
        /// The database file.
        path: PathBuf,
        /// The version recorded in the file.
        found: u64,
        /// The version this build reads and writes.
        supported: u64,
    },
    /// The database records a format version this build does not know (and not a newer one).
    #[error("{}: unknown storage format version {found} (supported: {supported})", .path.display())]
    UnknownFormat {
        /// The database file.
        path: PathBuf,
        /// The version recorded in the file.
        found: u64,
        /// The version this build reads and writes.
        supported: u64,
    },
    /// The database belongs to another cluster.
    #[error("{}: belongs to cluster {found}, not to cluster {expected}", .path.display())]
    WrongCluster {
        /// The database file.
        path: PathBuf,
        /// The cluster the caller opened it for.
        expected: u64,
        /// The cluster recorded in the file.
        found: u64,
    },
    /// The database belongs to another node.
    #[error("{}: belongs to node {found}, not to node {expected}", .path.display())]
    WrongNode {
        /// The database file.
        path: PathBuf,
        /// The node the caller opened it for.
        expected: u64,
        /// The node recorded in the file.
        found: u64,
    },
    /// Another handle or process has the database open.
    #[error("{}: the database is already open (locked by another handle or process)", .path.display())]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// redb found the file damaged (checksums, page structure) and could not repair it.
    #[error("{}: the database file is damaged: {detail}", .path.display())]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What redb reported.
        detail: String,
    },
    /// The file is a sound redb database but the Raft state in it does not hang together.
    #[error("{}: the stored Raft state is inconsistent: {source}", .path.display())]
    Inconsistent {
        /// The database file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: Inconsistency,
    },
    /// The call breaks the storage contract (a gap in the log, a cut into the snapshot, ...).
    /// Nothing was changed.
    #[error("{}: refused: {source}", .path.display())]
    Rejected {
        /// The database file.
        path: PathBuf,
        /// What the call got wrong.
        #[source]
        source: Rejection,
    },
    /// An earlier commit failed: what is durable is unknown until the database is reopened.
    #[error("{}: an earlier commit failed; reopen the database to learn what is durable", .path.display())]
    Failed {
        /// The database file.
        path: PathBuf,
    },
    /// A file-system operation failed.
    #[error("{}: I/O error while {op}: {source}", .path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Any other error of the database engine.
    #[error("{}: database error while {op}: {source}", .path.display())]
    Backend {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The engine's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What is wrong with stored Raft state found in a sound database file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Inconsistency {
    /// A record every database of this format has is missing.
    #[error("record {0:?} is missing")]
    MissingRecord(&'static str),
    /// A stored entry is too short or has an unknown kind.
    #[error("entry {index} cannot be decoded")]
    BadEntry {
        /// The entry's index.
        index: Index,
    },
    /// The compacted prefix reaches past what the snapshot covers.
    #[error("entries up to {floor} are compacted, but the snapshot covers only up to {covered}")]
    CompactedBeyondSnapshot {
        /// The last compacted index.
        floor: Index,
        /// The snapshot's last index (0 without a snapshot).
        covered: Index,
    },
    /// The log does not start right after the compacted prefix.
    #[error("the log starts at {first}, but entries up to {floor} are compacted")]
    LogStart {
        /// The first stored index.
        first: Index,
        /// The last compacted index.
        floor: Index,
    },
    /// The log has holes.
    #[error("the log from {first} to {last} holds {count} entries")]
    LogHoles {
        /// The first stored index.
        first: Index,
        /// The last stored index.
        last: Index,
        /// How many entries are stored.
        count: u64,
    },
    /// An entry expected between the log's ends is missing.
    #[error("entry {expected} is missing (found {found:?} next)")]
    MissingEntry {
        /// The index that should be there.
        expected: Index,
        /// The next index found, if any.
        found: Option<Index>,
    },
    /// The latest snapshot's record holds an id no snapshot can have.
    #[error("snapshot id {id} is out of range")]
    SnapshotId {
        /// The recorded id.
        id: u64,
    },
    /// The latest snapshot's data does not match its recorded length.
    #[error("snapshot data holds {found} contiguous bytes, {recorded} recorded")]
    SnapshotLength {
        /// The recorded length.
        recorded: u64,
        /// The length of contiguous data found.
        found: u64,
    },
    /// The latest snapshot's membership record cannot be decoded.
    #[error("the snapshot's membership record cannot be decoded")]
    BadMembership,
    /// The recovered state fails the core's checks.
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
}

/// How a call broke the storage contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// A write's entries do not continue the log.
    #[error("entry {found} does not continue the log (expected index {expected})")]
    NotContiguous {
        /// The index that would continue the log.
        expected: Index,
        /// The index found.
        found: Index,
    },
    /// A cut into the compacted prefix or the prefix the snapshot covers.
    #[error("cannot truncate at {index}: entries up to {floor} are compacted or in the snapshot")]
    TruncateCompacted {
        /// The requested cut.
        index: Index,
        /// The last index the log cannot lose.
        floor: Index,
    },
    /// Compaction past what the latest snapshot covers.
    #[error("cannot compact through {index}: the latest snapshot covers up to {covered}")]
    CompactBeyondSnapshot {
        /// The requested compaction point.
        index: Index,
        /// The snapshot's last index (0 without a snapshot).
        covered: Index,
    },
    /// A snapshot chunk or finish with no snapshot begun (or after a restart).
    #[error("no snapshot is being received")]
    NoSnapshotInProgress,
    /// A snapshot beyond the largest index the core accepts.
    #[error("snapshot index {index} is out of range")]
    IndexOutOfRange {
        /// The snapshot's last index.
        index: Index,
    },
    /// The snapshot being received would exceed `u64::MAX` bytes.
    #[error("snapshot data too large")]
    SnapshotTooLarge,
}
