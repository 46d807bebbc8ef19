//! The replicated key-value store on the driver: [`KvStateMachine`] for nodes and
//! [`KvClient`] for clients, both speaking `raft_kv`'s command encoding.

use std::hash::{BuildHasher, Hasher};

use bytes::Bytes;
use raft_kv::{Command, KvConfig, KvStore, Op, Response};
use raft_proto_core::Index;

use crate::client::{Client, ClientError};
use crate::state_machine::{RestoreError, SnapshotSource, StateMachine};

/// `raft_kv::KvStore` as a [`StateMachine`]: answers are encoded `raft_kv::Response`s.
#[derive(Debug, Default)]
pub struct KvStateMachine {
    store: KvStore,
}

impl KvStateMachine {
    /// An empty store with these limits.
    pub fn new(config: KvConfig) -> KvStateMachine {
        KvStateMachine {
            store: KvStore::new(config),
        }
    }

    /// The store.
    pub fn store(&self) -> &KvStore {
        &self.store
    }
}

impl StateMachine for KvStateMachine {
    fn apply(&mut self, index: Index, command: &Bytes) -> Bytes {
        // Copy the command's key and value out of the entry: the entry is a slice of a whole
        // received frame, which a stored slice would keep alive.
        let response = match self.store.apply(index, command) {
            Ok(applied) => applied.response,
            Err(e) => Response::Invalid {
                reason: e.to_string(),
            },
        };
        response.encode().unwrap_or_default()
    }

    fn apply_noop(&mut self, index: Index) {
        if let Err(e) = self.store.apply_noop(index) {
            tracing::error!(index, error = %e, "no-op entry out of order");
        }
    }

    fn snapshot(&mut self) -> Box<dyn SnapshotSource> {
        Box::new(KvSnapshot(self.store.snapshot_writer()))
    }

    fn restore(&mut self, data: &mut dyn std::io::Read) -> Result<(), RestoreError> {
        let store = KvStore::restore_from(data).map_err(|e| RestoreError(e.to_string()))?;
        self.store = store;
        Ok(())
    }
}

/// A [`KvStore`] snapshot being written out (the store's checksummed snapshot format).
struct KvSnapshot(raft_kv::SnapshotWriter<KvStore>);

impl SnapshotSource for KvSnapshot {
    fn write_chunk(&mut self, out: &mut Vec<u8>, max: usize) -> Result<bool, std::io::Error> {
        Ok(self.0.write_chunk(out, max))
    }
}

/// Why a KV operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The request did not complete.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The command is not valid (key or value too large, ...).
    #[error("invalid command: {0}")]
    Command(#[from] raft_kv::CommandError),
    /// The answer could not be decoded.
    #[error("undecodable answer: {0}")]
    Answer(raft_kv::CommandError),
    /// The state machine refused the command.
    #[error("the store refused the command: {0}")]
    Invalid(String),
    /// The cluster forgot this client's session (too many clients); the outcome of its last
    /// request is unknown.
    #[error("the client's session expired")]
    SessionExpired,
}

/// A KV client session: one request at a time, each with the next sequence number, so that
/// retries are applied once. Make one per concurrent worker; they can share one [`Client`].
pub struct KvClient {
    client: Client,
    client_id: u64,
    seq: u64,
}

impl KvClient {
    /// A session with a fresh random client id.
    pub fn new(client: Client) -> KvClient {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        h.write_u32(std::process::id());
        KvClient::with_id(client, h.finish().max(1))
    }

    /// A session with a given client id (unique per concurrent session).
    pub fn with_id(client: Client, client_id: u64) -> KvClient {
        KvClient {
            client,
            client_id,
            seq: 0,
        }
    }

    /// This session's client id.
    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// The underlying connection pool.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs one operation and returns the store's answer.
    pub async fn execute(&mut self, op: Op) -> Result<Response, KvError> {
        self.seq += 1;
        let command = Command::new(self.client_id, self.seq, op).encode()?;
        let (_, answer) = self.client.request(command).await?;
        match Response::decode_bytes(&answer).map_err(KvError::Answer)? {
            Response::SessionExpired => Err(KvError::SessionExpired),
            Response::Invalid { reason } => Err(KvError::Invalid(reason)),
            other => Ok(other),
        }
    }

    /// Sets `key` to `value`; returns the previous value.
    pub async fn put(
        &mut self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<Option<Bytes>, KvError> {
        match self.execute(Op::put(key, value)).await? {
            Response::Put { previous } => Ok(previous),
            other => Err(unexpected(other)),
        }
    }

    /// Reads `key` (linearizable: the read goes through the log).
    pub async fn get(&mut self, key: impl Into<Bytes>) -> Result<Option<Bytes>, KvError> {
        match self.execute(Op::get(key)).await? {
            Response::Get { value } => Ok(value),
            other => Err(unexpected(other)),
        }
    }

    /// Removes `key`; returns the previous value.
    pub async fn delete(&mut self, key: impl Into<Bytes>) -> Result<Option<Bytes>, KvError> {
        match self.execute(Op::delete(key)).await? {
            Response::Delete { previous } => Ok(previous),
            other => Err(unexpected(other)),
        }
    }

    /// Sets `key` to `new` (`None`: delete) if its value is `expected` (`None`: absent).
    /// Returns whether it did, and the key's value before the operation.
    pub async fn cas(
        &mut self,
        key: impl Into<Bytes>,
        expected: Option<Bytes>,
        new: Option<Bytes>,
    ) -> Result<(bool, Option<Bytes>), KvError> {
        match self.execute(Op::cas(key, expected, new)).await? {
            Response::Cas { succeeded, current } => Ok((succeeded, current)),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(r: Response) -> KvError {
    KvError::Invalid(format!("unexpected answer {r:?}"))
}
