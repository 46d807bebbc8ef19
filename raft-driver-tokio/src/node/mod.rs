//! Starting and stopping a node: [`NodeOptions`], the [`NodeBuilder`] and the [`RunningNode`].
//!
//! ```no_run
//! # async fn example(identity: raft_driver_tokio::tls::Identity) -> Result<(), Box<dyn std::error::Error>> {
//! use raft_driver_tokio::{kv::KvStateMachine, Node, NodeOptions};
//! use raft_proto_core::storage::MemStorage;
//!
//! let peers = [(1, "127.0.0.1:7001".parse()?), (2, "127.0.0.1:7002".parse()?), (3, "127.0.0.1:7003".parse()?)];
//! let options = NodeOptions::new(1, 0xC0FFEE, peers.into_iter().collect(), identity);
//! let node = Node::builder(options)
//!     .storage(MemStorage::default())
//!     .state_machine(KvStateMachine::default())
//!     .start()
//!     .await?;
//! // ... serve until asked to stop:
//! node.shutdown().await?;
//! # Ok(()) }
//! ```

pub(crate) mod apply_task;
pub(crate) mod core_loop;
mod reconfig;
mod snapshots;
mod storage_task;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft_proto_core::codec::Codec;
use raft_proto_core::storage::Storage;
use raft_proto_core::{Config, NodeId, RaftNode};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use storage_task::StorageStats;

use crate::metrics::NodeMetrics;
use crate::protocol::{ClientResponse, NodeStatus};
use crate::state_machine::StateMachine;
use crate::tls::{self, Identity, TlsError};
use crate::transport::{self, AddressBook, PeerLinks, ServerContext, TransportCounters};
use core_loop::{CoreEvent, CoreLoop, Exit};

/// Keep-alive interval of peer connections.
const PEER_KEEP_ALIVE: Duration = Duration::from_millis(200);
/// Silence after which a peer connection counts as dead.
const PEER_IDLE_TIMEOUT: Duration = Duration::from_millis(1500);

/// How to run one node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// This node's id (not 0).
    pub id: NodeId,
    /// The cluster's id: every frame carries it and nodes of other clusters are refused.
    pub cluster_id: u64,
    /// Every voter of a new cluster, this node included, with its QUIC address (peers and
    /// clients use the same address): the initial configuration, recorded in the log with
    /// the addresses. Once the node's log holds a configuration, the addresses come from it
    /// and these only fill gaps. With `join`, these are some members of the cluster to join.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Start as a node that joins an existing cluster: it knows no configuration, never
    /// campaigns, and waits for the leader to add it (as a learner) and send it the log.
    /// Ignored once the node's storage holds a configuration.
    pub join: bool,
    /// Client certificate names allowed to change the membership and move leadership;
    /// `None`: every client of the cluster CA.
    pub admin_clients: Option<Vec<String>>,
    /// Where to listen; by default this node's address in `peers`.
    pub listen: SocketAddr,
    /// Certificate, key and cluster CA.
    pub identity: Identity,
    /// Wall time of one Raft tick.
    pub tick: Duration,
    /// Raft settings (election timeout and heartbeat in ticks, flow-control limits, ...).
    /// `id` and `voters` are taken from the fields above.
    pub raft: Config,
}

impl NodeOptions {
    /// Defaults: listen on this node's peer address, 50 ms ticks, an election timeout of
    /// 10 ticks (500-1000 ms randomized) and heartbeats every 2 ticks.
    pub fn new(
        id: NodeId,
        cluster_id: u64,
        peers: BTreeMap<NodeId, SocketAddr>,
        identity: Identity,
    ) -> NodeOptions {
        let listen = peers
            .get(&id)
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let voters: Vec<NodeId> = peers.keys().copied().collect();
        NodeOptions {
            id,
            cluster_id,
            listen,
            identity,
            tick: Duration::from_millis(50),
            raft: Config::new(id, voters),
            peers,
            join: false,
            admin_clients: None,
        }
    }
}

/// Why a node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The options are inconsistent.
    #[error("invalid node options: {0}")]
    Options(String),
    /// The Raft settings are invalid.
    #[error("invalid Raft settings: {0}")]
    Raft(#[from] raft_proto_core::ConfigError),
    /// The storage backend failed.
    #[error("storage: {0}")]
    Storage(String),
    /// The recovered state is not usable.
    #[error("recovered state rejected: {0}")]
    Recovery(#[from] raft_proto_core::RecoveryError),
    /// TLS setup failed.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A task of the node ended unexpectedly.
    #[error("node task failed: {0}")]
    Task(String),
}

/// Entry point: `Node::builder(options)`.
pub struct Node;

impl Node {
    /// A builder for a node with these options; add a storage backend and a state machine.
    pub fn builder(options: NodeOptions) -> NodeBuilder<(), ()> {
        NodeBuilder {
            options,
            storage: (),
            state_machine: (),
        }
    }
}

/// Assembles a node: options, a [`Storage`] backend and a [`StateMachine`].
pub struct NodeBuilder<S, M> {
    options: NodeOptions,
    storage: S,
    state_machine: M,
}

impl<S, M> NodeBuilder<S, M> {
    /// The durable backend (for example `raft_storage_redb::RedbStorage`).
    pub fn storage<S2: Storage>(self, storage: S2) -> NodeBuilder<S2, M> {
        NodeBuilder {
            options: self.options,
            storage,
            state_machine: self.state_machine,
        }
    }

    /// The state machine the committed log drives.
    pub fn state_machine<M2: StateMachine>(self, state_machine: M2) -> NodeBuilder<S, M2> {
        NodeBuilder {
            options: self.options,
            storage: self.storage,
            state_machine,
        }
    }
}

impl<S: Storage, M: StateMachine> NodeBuilder<S, M> {
    /// Recovers the storage, binds the QUIC endpoint and starts the node's tasks. Must be called
    /// inside a multi-threaded tokio runtime.
    pub async fn start(self) -> Result<RunningNode<M>, NodeError> {
        let NodeBuilder {
            options: o,
            mut storage,
            state_machine,
        } = self;
        if o.id == 0 {
            return Err(NodeError::Options("node id 0 is reserved".into()));
        }
        if !o.join && !o.peers.contains_key(&o.id) {
            return Err(NodeError::Options(format!(
                "node {} is not among the peers {:?}",
                o.id,
                o.peers.keys().collect::<Vec<_>>()
            )));
        }
        if o.tick.is_zero() {
            return Err(NodeError::Options(
                "the tick must be longer than zero".into(),
            ));
        }
        let mut cfg = o.raft.clone();
        cfg.id = o.id;
        if o.join {
            cfg.voters = Vec::new();
            cfg.voter_data = Vec::new();
        } else {
            cfg.voters = o.peers.keys().copied().collect();
            cfg.voter_data = o
                .peers
                .iter()
                .map(|(id, a)| (*id, Bytes::from(a.to_string())))
                .collect();
        }
        cfg.validate()?;
        let recovered = storage
            .recover()
            .map_err(|e| NodeError::Storage(e.to_string()))?;
        // The state machine starts from the latest snapshot; the log after it applies anew.
        let mut state_machine = state_machine;
        let initial_snapshot = match &recovered.snapshot {
            Some(meta) => {
                let index = meta.last_index;
                let bytes = restore_at_start(&storage, &mut state_machine, index)?;
                (index, bytes)
            }
            None => (0, 0),
        };
        let node = RaftNode::new(cfg.clone(), recovered)?;

        tls::install_crypto_provider();
        let server_config = tls::server_config(&o.identity)?;
        let mut peer_config = tls::client_config(&o.identity, tls::PEER_ALPN)?;
        // A peer that died without closing its connection (SIGKILL, power loss) is noticed
        // when nothing came back for PEER_IDLE_TIMEOUT; the link then redials. The idle
        // timeout in use is the smaller of both sides', so this applies to peer links only.
        let mut transport = tls::transport_config();
        transport.keep_alive_interval(Some(PEER_KEEP_ALIVE));
        transport.max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(PEER_IDLE_TIMEOUT)
                .map_err(|e| NodeError::Options(e.to_string()))?,
        ));
        peer_config.transport_config(Arc::new(transport));
        let endpoint =
            quinn::Endpoint::server(server_config, o.listen).map_err(|source| NodeError::Bind {
                addr: o.listen,
                source,
            })?;
        let local_addr = endpoint.local_addr().map_err(|source| NodeError::Bind {
            addr: o.listen,
            source,
        })?;

        let metrics = NodeMetrics::new(o.id);
        // What the state machine holds at start: the restored snapshot.
        metrics.applied_index.set(initial_snapshot.0 as f64);
        metrics.snapshot_bytes.set(initial_snapshot.1 as f64);
        let counters = Arc::new(TransportCounters::default());
        let storage_stats = Arc::new(StorageStats::default());
        // Frames may exceed the largest message by the header and one oversized entry.
        let max_frame = (cfg.max_message_bytes as usize)
            .saturating_add(cfg.max_proposal_bytes as usize)
            .saturating_add(64 << 10);
        let codec = Codec::new(o.cluster_id).with_max_frame_bytes(max_frame);
        let (core_tx, core_rx) = mpsc::unbounded_channel();
        let (storage_tx, storage_rx) = mpsc::unbounded_channel();
        let (apply_tx, apply_rx) = mpsc::unbounded_channel();

        let storage_thread = storage_task::spawn(
            o.id,
            storage,
            storage_rx,
            core_tx.clone(),
            storage_stats.clone(),
            metrics.clone(),
        )
        .map_err(|e| NodeError::Task(format!("cannot start the storage thread: {e}")))?;
        let apply_task = tokio::spawn(apply_task::run(
            state_machine,
            apply_rx,
            core_tx.clone(),
            storage_tx.clone(),
            metrics.clone(),
        ));
        let mut book = AddressBook::new(o.id, o.peers.clone());
        book.set_membership(node.membership().1);
        let peers = PeerLinks::start(
            &endpoint,
            peer_config,
            o.id,
            &book.links(),
            codec,
            &metrics,
            counters.clone(),
        );
        let ctx = Arc::new(ServerContext {
            id: o.id,
            cluster_id: o.cluster_id,
            codec,
            core: core_tx.clone(),
            metrics: metrics.clone(),
            counters: counters.clone(),
            admins: o.admin_clients.clone(),
        });
        tokio::spawn(transport::serve(endpoint.clone(), ctx));
        let core = CoreLoop {
            node,
            cluster_id: o.cluster_id,
            rx: core_rx,
            storage: storage_tx,
            apply: apply_tx,
            peers,
            book,
            tick: o.tick,
            metrics,
            storage_stats,
            started: Instant::now(),
            initial_snapshot,
        };
        let core_task = tokio::spawn(core.run());
        tracing::info!(node = o.id, cluster = o.cluster_id, addr = %local_addr, "node started");
        Ok(RunningNode {
            id: o.id,
            handle: NodeHandle { core: core_tx },
            endpoint,
            local_addr,
            core_task: Some(core_task),
            apply_task,
            storage_thread,
        })
    }
}

/// Restores the state machine from the stored snapshot at `index` before the node starts;
/// returns the snapshot's size.
fn restore_at_start<S: Storage, M: StateMachine>(
    storage: &S,
    sm: &mut M,
    index: u64,
) -> Result<u64, NodeError> {
    let started = Instant::now();
    let bytes = storage
        .snapshot_len()
        .map_err(|e| NodeError::Storage(e.to_string()))?;
    let mut reader = DirectReader {
        storage,
        offset: 0,
        failure: None,
    };
    let restored = tokio::task::block_in_place(|| sm.restore(&mut reader));
    if let Some(e) = reader.failure {
        return Err(NodeError::Storage(e));
    }
    restored.map_err(|e| {
        NodeError::Task(format!(
            "restoring the state machine from snapshot {index}: {e}"
        ))
    })?;
    tracing::info!(
        index,
        bytes,
        took_ms = started.elapsed().as_millis() as u64,
        "state machine restored from the latest snapshot"
    );
    Ok(bytes)
}

/// Reads the latest stored snapshot straight from the storage (before its thread starts).
struct DirectReader<'a, S> {
    storage: &'a S,
    offset: u64,
    failure: Option<String>,
}

impl<S: Storage> std::io::Read for DirectReader<'_, S> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let max = out.len().min(1 << 20);
        match self.storage.read_snapshot_chunk(self.offset, max) {
            Ok(data) => {
                out[..data.len()].copy_from_slice(&data);
                self.offset += data.len() as u64;
                Ok(data.len())
            }
            Err(e) => {
                self.failure = Some(e.to_string());
                Err(std::io::Error::other(e.to_string()))
            }
        }
    }
}

/// A cheap, cloneable handle to talk to a running node from the same process.
#[derive(Clone)]
pub struct NodeHandle {
    core: mpsc::UnboundedSender<CoreEvent>,
}

impl NodeHandle {
    /// Proposes a command; resolves when it is applied here or refused (as a remote client
    /// would see it).
    pub async fn propose(&self, command: Bytes) -> ClientResponse {
        let (reply, answer) = oneshot::channel();
        let stopped = || ClientResponse::Unknown {
            reason: "the node is shutting down".into(),
        };
        if self
            .core
            .send(CoreEvent::Propose { command, reply })
            .is_err()
        {
            return stopped();
        }
        answer.await.unwrap_or_else(|_| stopped())
    }

    /// Takes a snapshot now; resolves once it is stored (as `raftkv snapshot` sees it).
    pub async fn snapshot(&self) -> ClientResponse {
        let (reply, answer) = oneshot::channel();
        let stopped = || ClientResponse::Rejected {
            reason: "the node is shutting down".into(),
        };
        if self
            .core
            .send(CoreEvent::TriggerSnapshot { reply })
            .is_err()
        {
            return stopped();
        }
        answer.await.unwrap_or_else(|_| stopped())
    }

    /// The node's status, or `None` if it stopped.
    pub async fn status(&self) -> Option<NodeStatus> {
        let (reply, answer) = oneshot::channel();
        self.core.send(CoreEvent::Status { reply }).ok()?;
        answer.await.ok()
    }
}

/// A node whose tasks are running.
pub struct RunningNode<M> {
    id: NodeId,
    handle: NodeHandle,
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    core_task: Option<JoinHandle<Exit>>,
    apply_task: JoinHandle<M>,
    storage_thread: std::thread::JoinHandle<()>,
}

impl<M: StateMachine> RunningNode<M> {
    /// The address the node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle for in-process proposals and status.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Resolves if the node stops on its own (a storage failure); the error says why.
    pub async fn stopped(&mut self) -> NodeError {
        let Some(task) = self.core_task.as_mut() else {
            return NodeError::Task("the node was already stopped".into());
        };
        let exit = task.await;
        self.core_task = None;
        match exit {
            Ok(Exit::StorageFailed(reason)) => NodeError::Storage(reason),
            Ok(Exit::ApplyFailed(reason)) => NodeError::Task(reason),
            Ok(Exit::Shutdown) => NodeError::Task("the consensus loop stopped".into()),
            Err(e) => NodeError::Task(e.to_string()),
        }
    }

    /// Graceful stop: refuse new connections, let the consensus loop finish its round, flush
    /// every queued write to storage, let the apply task finish, then close all connections.
    /// Returns the state machine.
    pub async fn shutdown(mut self) -> Result<M, NodeError> {
        tracing::info!(node = self.id, "shutting down");
        self.endpoint.set_server_config(None);
        let _ = self.handle.core.send(CoreEvent::Shutdown);
        let mut failure = None;
        if let Some(task) = self.core_task.take() {
            match task.await {
                Ok(Exit::Shutdown) => {}
                Ok(Exit::StorageFailed(reason)) => failure = Some(NodeError::Storage(reason)),
                Ok(Exit::ApplyFailed(reason)) => failure = Some(NodeError::Task(reason)),
                Err(e) => failure = Some(NodeError::Task(e.to_string())),
            }
        }
        // The consensus loop is gone, so the storage queue is closed: the thread writes what
        // is left and exits.
        let storage_thread = self.storage_thread;
        let joined = tokio::task::spawn_blocking(move || storage_thread.join()).await;
        if !matches!(joined, Ok(Ok(()))) {
            failure.get_or_insert(NodeError::Task("the storage thread panicked".into()));
        }
        let applied = self.apply_task.await;
        self.endpoint
            .close(transport::CLOSE_SHUTDOWN.into(), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
        tracing::info!(node = self.id, "stopped");
        let sm = applied.map_err(|e| NodeError::Task(format!("the state machine task: {e}")))?;
        match failure {
            Some(e) => Err(e),
            None => Ok(sm),
        }
    }
}
