//! # raft-kv
//!
//! The reference key-value state machine that a Raft log drives, shared by the simulator and
//! the network driver so that both exercise the same thing.
//!
//! Pure and deterministic: no I/O, no clock, no randomness, ordered maps only. Replicas that
//! apply the same log entries end up equal, with equal [`KvStore::digest`]s.
//!
//! - [`Command`] and [`Response`]: client requests (put, get, delete, compare-and-swap, each
//!   tagged with a client session and sequence number) and their results, with a versioned,
//!   size-limited, canonical binary encoding whose decoder never panics.
//! - [`KvStore`]: applies committed entries in log-index order, with duplicate detection per
//!   client session (Raft thesis, section 6.3) over a bounded, deterministically evicted table.
//!   An undecodable entry is applied as a no-op answered with [`Response::Invalid`].
//! - Snapshots: [`KvStore::snapshot`] and [`KvStore::restore`], checksummed and validated.
//!
//! ```
//! use raft_kv::{Command, KvStore, Op, Response};
//!
//! let mut store = KvStore::default();
//! let put = Command::new(7, 1, Op::put("k", "v")).encode()?;
//! let applied = store.apply(1, &put)?;
//! assert_eq!(applied.response, Response::Put { previous: None });
//! // A retry of the same request is answered from the session, not applied again.
//! assert!(store.apply(2, &put)?.duplicate);
//! assert_eq!(store.get(b"k").map(|v| &v[..]), Some(&b"v"[..]));
//!
//! let copy = KvStore::restore(&store.snapshot())?;
//! assert_eq!(copy, store);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod command;
mod response;
mod session;
mod snapshot;
mod store;
mod wire;

pub use command::{
    Command, CommandError, Op, COMMAND_FORMAT_VERSION, MAX_COMMAND_BYTES, MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
};
pub use response::{Response, MAX_REASON_BYTES, MAX_RESPONSE_BYTES, RESPONSE_FORMAT_VERSION};
pub use session::Session;
pub use snapshot::{SnapshotError, SnapshotWriter, SNAPSHOT_FORMAT_VERSION, SNAPSHOT_MAGIC};
pub use store::{Applied, ApplyError, KvConfig, KvStore, DEFAULT_MAX_SESSIONS};
pub use wire::WireError;
