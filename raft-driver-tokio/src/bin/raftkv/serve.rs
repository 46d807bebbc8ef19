//! `raftkv serve`: one node of the replicated KV store.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use raft_driver_tokio::config::{RawConfig, RawPeer, RawRaft, RawSnapshot, RawTls};
use raft_driver_tokio::kv::KvStateMachine;
use raft_driver_tokio::tls::Identity;
use raft_driver_tokio::Node;
use raft_storage_redb::RedbStorage;

/// Settings of `raftkv serve`; each overrides the config file.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// TOML config file.
    #[arg(long, short, env = "RAFTKV_CONFIG")]
    pub config: Option<PathBuf>,
    /// This node's id.
    #[arg(long, env = "RAFTKV_NODE_ID")]
    pub node_id: Option<u64>,
    /// The cluster id.
    #[arg(long, env = "RAFTKV_CLUSTER_ID")]
    pub cluster_id: Option<u64>,
    /// Data directory (holds raft.redb).
    #[arg(long, env = "RAFTKV_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on (peers and clients).
    #[arg(long, env = "RAFTKV_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address of the Prometheus metrics endpoint.
    #[arg(long, env = "RAFTKV_METRICS")]
    pub metrics: Option<SocketAddr>,
    /// Join a running cluster: start with no configuration and wait to be added (with
    /// `raftkv member add-learner`). Needs --listen; the peers are then some current members.
    #[arg(long, env = "RAFTKV_JOIN")]
    pub join: bool,
    /// A client certificate name allowed to change the membership and move leadership;
    /// repeat or separate with commas. Default: every client of the cluster CA.
    #[arg(
        long = "admin-client",
        env = "RAFTKV_ADMIN_CLIENTS",
        value_delimiter = ','
    )]
    pub admin_clients: Vec<String>,
    /// Every initial voter as ID=ADDR (this node included), or with --join some current
    /// members; repeat or separate with commas.
    #[arg(long = "peer", env = "RAFTKV_PEERS", value_delimiter = ',', value_parser = parse_peer)]
    pub peers: Vec<PeerArg>,
    /// Cluster CA certificate (PEM).
    #[arg(long, env = "RAFTKV_CA")]
    pub ca: Option<PathBuf>,
    /// This node's certificate (PEM).
    #[arg(long, env = "RAFTKV_CERT")]
    pub cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, env = "RAFTKV_KEY")]
    pub key: Option<PathBuf>,
    /// Milliseconds per Raft tick.
    #[arg(long, env = "RAFTKV_TICK_MS")]
    pub tick_ms: Option<u64>,
    /// Election timeout in ticks.
    #[arg(long, env = "RAFTKV_ELECTION_TICKS")]
    pub election_timeout_ticks: Option<u32>,
    /// Heartbeat interval in ticks.
    #[arg(long, env = "RAFTKV_HEARTBEAT_TICKS")]
    pub heartbeat_ticks: Option<u32>,
    /// Take a snapshot after this many applied entries (0: never by count).
    #[arg(long, env = "RAFTKV_SNAPSHOT_AFTER_ENTRIES")]
    pub snapshot_after_entries: Option<u64>,
    /// Log entries kept below a snapshot for followers that lag a little.
    #[arg(long, env = "RAFTKV_SNAPSHOT_KEEP_ENTRIES")]
    pub snapshot_keep_entries: Option<u64>,
    /// Runtime worker threads (the consensus loop is one task; more threads let the transport
    /// and clients run beside it). Default: the number of CPUs, at most 4. Use 1 when several
    /// nodes share a small machine.
    #[arg(long, env = "RAFTKV_THREADS")]
    pub threads: Option<usize>,
}

/// `ID=ADDR`.
#[derive(Debug, Clone)]
pub struct PeerArg(RawPeer);

fn parse_peer(s: &str) -> Result<PeerArg, String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not ID=ADDR"))?;
    let id = id
        .trim()
        .parse()
        .map_err(|e| format!("bad peer id `{id}`: {e}"))?;
    let addr = addr
        .trim()
        .parse()
        .map_err(|e| format!("bad peer address `{addr}`: {e}"))?;
    Ok(PeerArg(RawPeer { id, addr }))
}

impl ServeArgs {
    /// Worker threads for the runtime.
    pub fn threads(&self) -> usize {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.threads.unwrap_or(cpus.min(4)).max(1)
    }

    fn as_raw(&self) -> RawConfig {
        RawConfig {
            node_id: self.node_id,
            cluster_id: self.cluster_id,
            data_dir: self.data_dir.clone(),
            listen: self.listen,
            metrics: self.metrics,
            join: self.join.then_some(true),
            admin_clients: (!self.admin_clients.is_empty()).then(|| self.admin_clients.clone()),
            tls: RawTls {
                ca: self.ca.clone(),
                cert: self.cert.clone(),
                key: self.key.clone(),
            },
            peers: self.peers.iter().map(|p| p.0.clone()).collect(),
            raft: RawRaft {
                tick_ms: self.tick_ms,
                election_timeout_ticks: self.election_timeout_ticks,
                heartbeat_ticks: self.heartbeat_ticks,
                pre_vote: None,
                check_quorum: None,
            },
            snapshot: RawSnapshot {
                after_entries: self.snapshot_after_entries,
                keep_entries: self.snapshot_keep_entries,
                ..RawSnapshot::default()
            },
        }
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => RawConfig::from_file(path)?,
        None => RawConfig::default(),
    };
    let cfg = file.merge(args.as_raw()).validate()?;
    if let Some(addr) = cfg.metrics {
        raft_driver_tokio::metrics::install_prometheus(addr)?;
    }
    let identity = Identity::load(&cfg.tls).context("loading the node certificate")?;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating the data directory {}", cfg.data_dir.display()))?;
    let db = cfg.data_dir.join("raft.redb");
    let storage = tokio::task::block_in_place(|| {
        RedbStorage::open_or_create(&db, cfg.cluster_id, cfg.node_id)
    })
    .with_context(|| format!("opening {}", db.display()))?;
    let mut node = Node::builder(cfg.node_options(identity))
        .storage(storage)
        .state_machine(KvStateMachine::default())
        .start()
        .await
        .context("starting the node")?;
    tracing::info!(
        node = cfg.node_id,
        addr = %node.local_addr(),
        metrics = ?cfg.metrics,
        data = %cfg.data_dir.display(),
        "serving"
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!(node = cfg.node_id, "SIGINT received"),
        _ = terminate.recv() => tracing::info!(node = cfg.node_id, "SIGTERM received"),
        err = node.stopped() => return Err(err).context("the node stopped"),
    }
    node.shutdown().await.context("shutting down")?;
    Ok(())
}
