//! A real cluster for end-to-end tests: `raftkv serve` child processes on loopback, each with
//! its own data directory, all under one temporary directory.
#![allow(dead_code)]

pub mod load;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use raft_driver_tokio::config::NodeConfig;
use raft_driver_tokio::protocol::NodeStatus;
use raft_driver_tokio::tls::{self, Identity, TlsFiles};
use raft_driver_tokio::{Client, ClientOptions};
use raft_proto_core::{NodeId, Role};

pub const TICK_MS: u64 = 50;
pub const ELECTION_TICKS: u32 = 10;

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub cluster_id: u64,
    pub addrs: BTreeMap<NodeId, SocketAddr>,
    configs: BTreeMap<NodeId, PathBuf>,
    children: BTreeMap<NodeId, Child>,
}

fn free_port() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port on loopback")
}

impl TestCluster {
    /// Writes certificates and configs for `n` nodes and starts them all.
    pub fn start(n: u64) -> TestCluster {
        Self::start_with(n, |_| {})
    }

    /// Like [`TestCluster::start`], with each node's configuration changed by `tweak`.
    pub fn start_with(n: u64, tweak: impl Fn(&mut NodeConfig)) -> TestCluster {
        Self::start_with_spares(n, 0, tweak)
    }

    /// `n` voters started, and `spares` more nodes (ids `n+1..`) with certificates and
    /// configurations to join the cluster (`join = true`, the voters as seeds), not started.
    pub fn start_with_spares(n: u64, spares: u64, tweak: impl Fn(&mut NodeConfig)) -> TestCluster {
        let dir = tempfile::Builder::new()
            .prefix("raftkv-e2e-")
            .tempdir()
            .unwrap();
        let all: Vec<NodeId> = (1..=n + spares).collect();
        let ids: Vec<NodeId> = (1..=n).collect();
        let certs = dir.path().join("certs");
        tls::write_cluster_certs(&certs, "e2e", &all, &["client".to_string()]).unwrap();
        let addrs: BTreeMap<NodeId, SocketAddr> = all.iter().map(|&i| (i, free_port())).collect();
        let voters: BTreeMap<NodeId, SocketAddr> = ids.iter().map(|&i| (i, addrs[&i])).collect();
        let cluster_id = 0xE2E0_0000 + u64::from(std::process::id());
        let mut configs = BTreeMap::new();
        for &id in &all {
            let cfg = NodeConfig {
                node_id: id,
                cluster_id,
                data_dir: dir.path().join(format!("node-{id}")),
                listen: addrs[&id],
                metrics: None,
                join: id > n,
                admin_clients: None,
                tls: TlsFiles::for_node(&certs, id),
                peers: voters.clone(),
                tick: Duration::from_millis(TICK_MS),
                election_timeout_ticks: ELECTION_TICKS,
                heartbeat_ticks: 2,
                pre_vote: true,
                check_quorum: true,
                snapshot: Default::default(),
            };
            let mut cfg = cfg;
            tweak(&mut cfg);
            let path = dir.path().join(format!("node-{id}.toml"));
            std::fs::write(&path, cfg.to_toml()).unwrap();
            configs.insert(id, path);
        }
        let mut cluster = TestCluster {
            dir,
            cluster_id,
            addrs,
            configs,
            children: BTreeMap::new(),
        };
        for id in ids {
            cluster.start_node(id);
        }
        cluster
    }

    pub fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    pub fn config_path(&self, id: NodeId) -> &Path {
        &self.configs[&id]
    }

    /// Rewrites node `id`'s configuration file (takes effect at its next start).
    pub fn rewrite_config(&self, id: NodeId, change: impl FnOnce(&mut NodeConfig)) {
        let path = &self.configs[&id];
        let raw = raft_driver_tokio::config::RawConfig::from_file(path).unwrap();
        let mut cfg = raw.validate().unwrap();
        change(&mut cfg);
        std::fs::write(path, cfg.to_toml()).unwrap();
    }

    pub fn start_node(&mut self, id: NodeId) {
        let log = self.dir.path().join(format!("node-{id}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_raftkv"))
            .args(["serve", "--config"])
            .arg(&self.configs[&id])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        self.children.insert(id, child);
    }

    /// SIGKILL: no chance to flush or close anything.
    pub fn kill(&mut self, id: NodeId) {
        if let Some(mut c) = self.children.remove(&id) {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(&mut self, id: NodeId) -> std::process::ExitStatus {
        let mut c = self.children.remove(&id).expect("node running");
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "node {id} ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the node's process is still alive.
    pub fn running(&mut self, id: NodeId) -> bool {
        self.children
            .get_mut(&id)
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    pub fn is_started(&self, id: NodeId) -> bool {
        self.children.contains_key(&id)
    }

    pub fn log(&self, id: NodeId) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node-{id}.log"))).unwrap_or_default()
    }

    pub fn client_identity(&self) -> Identity {
        Identity::load(&TlsFiles::in_dir(&self.certs(), "client")).unwrap()
    }

    /// A client that knows only the given nodes.
    pub fn client_for(&self, nodes: &[NodeId]) -> Client {
        let addrs = nodes.iter().map(|id| self.addrs[id]).collect();
        let mut o = ClientOptions::new(self.cluster_id, addrs, self.client_identity());
        o.timeout = Duration::from_secs(30);
        o.attempt_timeout = Duration::from_millis(700);
        Client::new(o).unwrap()
    }

    /// Runs `raftkv ARGS --nodes <nodes> --cluster-id .. --certs ..` and returns its exit
    /// code, stdout and stderr.
    pub fn cli(&self, nodes: &[NodeId], args: &[&str]) -> (Option<i32>, String, String) {
        let list: Vec<String> = nodes.iter().map(|id| self.addrs[id].to_string()).collect();
        let out = Command::new(env!("CARGO_BIN_EXE_raftkv"))
            .args(args)
            .arg("--nodes")
            .arg(list.join(","))
            .arg("--cluster-id")
            .arg(self.cluster_id.to_string())
            .arg("--certs")
            .arg(self.certs())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The ids of the nodes whose processes were started (and not killed or stopped).
    pub fn started(&self) -> Vec<NodeId> {
        self.children.keys().copied().collect()
    }

    pub fn client(&self) -> Client {
        let ids: Vec<NodeId> = self.addrs.keys().copied().collect();
        self.client_for(&ids)
    }

    pub async fn statuses(&self, client: &Client) -> BTreeMap<NodeId, NodeStatus> {
        let mut out = BTreeMap::new();
        for (&id, &addr) in &self.addrs {
            if !self.children.contains_key(&id) {
                continue;
            }
            if let Ok(s) = client.status(addr).await {
                out.insert(id, s);
            }
        }
        out
    }

    /// Waits for a running node that leads in a term above `after_term`.
    pub async fn wait_leader(
        &self,
        client: &Client,
        after_term: u64,
        limit: Duration,
    ) -> (NodeId, u64) {
        let deadline = Instant::now() + limit;
        loop {
            let all = self.statuses(client).await;
            if let Some(s) = all
                .values()
                .find(|s| s.role == Role::Leader && s.term > after_term)
            {
                return (s.id, s.term);
            }
            if Instant::now() > deadline {
                panic!("no leader above term {after_term} within {limit:?}; statuses: {all:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl TestCluster {
    /// Waits until every node is reachable and all have applied the same index.
    pub async fn wait_converged(&self, client: &Client, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let all = self.statuses(client).await;
            let applied: Vec<u64> = all.values().map(|s| s.applied).collect();
            if applied.len() == self.children.len() && applied.iter().all(|a| *a == applied[0]) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replicas did not converge: {applied:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for c in self.children.values_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // RAFTKV_E2E_LOGS=DIR keeps every node's log there, to study a run that passed.
        if let Some(keep) = std::env::var_os("RAFTKV_E2E_LOGS") {
            let keep = PathBuf::from(keep);
            let _ = std::fs::create_dir_all(&keep);
            for id in self.configs.keys() {
                let _ = std::fs::write(keep.join(format!("node-{id}.log")), self.log(*id));
            }
        }
        if std::thread::panicking() {
            for id in self.configs.keys() {
                eprintln!("--- log of node {id} (last 3000 bytes) ---");
                let log = self.log(*id);
                let mut from = log.len().saturating_sub(3000);
                while !log.is_char_boundary(from) {
                    from += 1;
                }
                let tail = &log[from..];
                eprintln!("{tail}");
            }
        }
    }
}
