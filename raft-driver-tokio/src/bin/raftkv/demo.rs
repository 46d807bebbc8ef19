//! `raftkv demo`: a local 3-node cluster that loses its leader and keeps every write.
//!
//! The nodes are child processes of this binary (`raftkv serve`), with their data, certificates,
//! configs and logs in a temporary directory.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use raft_driver_tokio::config::NodeConfig;
use raft_driver_tokio::kv::KvClient;
use raft_driver_tokio::protocol::NodeStatus;
use raft_driver_tokio::tls::{self, Identity, TlsFiles};
use raft_driver_tokio::{Client, ClientOptions};
use raft_proto_core::{NodeId, Role};

/// Settings of `raftkv demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Keys written before and after the leader is killed.
    #[arg(long, default_value_t = 200)]
    pub keys: usize,
    /// Keep the working directory (data, configs, certificates, logs) afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Milliseconds per Raft tick (the election timeout is 10 ticks).
    #[arg(long, default_value_t = 50)]
    pub tick_ms: u64,
}

struct Cluster {
    exe: PathBuf,
    dir: PathBuf,
    configs: BTreeMap<NodeId, PathBuf>,
    addrs: BTreeMap<NodeId, SocketAddr>,
    children: BTreeMap<NodeId, Child>,
}

impl Cluster {
    fn start(&mut self, id: NodeId) -> anyhow::Result<()> {
        let log_path = self.dir.join(format!("node-{id}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let err = log.try_clone()?;
        let child = std::process::Command::new(&self.exe)
            .arg("serve")
            .arg("--config")
            .arg(&self.configs[&id])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting node {id}"))?;
        self.children.insert(id, child);
        Ok(())
    }

    fn kill(&mut self, id: NodeId) -> anyhow::Result<()> {
        if let Some(mut child) = self.children.remove(&id) {
            child.kill().context("SIGKILL")?;
            child.wait()?;
        }
        Ok(())
    }

    async fn stop(&mut self, id: NodeId) -> anyhow::Result<String> {
        let Some(mut child) = self.children.remove(&id) else {
            return Ok("not running".into());
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).context("SIGTERM")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.to_string());
            }
            if Instant::now() > deadline {
                child.kill()?;
                child.wait()?;
                return Ok("did not stop within 10 s; killed".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_udp_port() -> anyhow::Result<SocketAddr> {
    let s = UdpSocket::bind("127.0.0.1:0").context("finding a free UDP port")?;
    Ok(s.local_addr()?)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn say(start: Instant, text: impl AsRef<str>) {
    println!(
        "[{:>6.2} s] {}",
        start.elapsed().as_secs_f64(),
        text.as_ref()
    );
}

async fn statuses(client: &Client, cluster: &Cluster) -> BTreeMap<NodeId, NodeStatus> {
    let mut out = BTreeMap::new();
    for (&id, &addr) in &cluster.addrs {
        if !cluster.children.contains_key(&id) {
            continue;
        }
        if let Ok(s) = client.status(addr).await {
            out.insert(id, s);
        }
    }
    out
}

/// Waits until a running node leads with a term above `after_term`.
async fn wait_leader(
    client: &Client,
    cluster: &Cluster,
    after_term: u64,
    limit: Duration,
) -> anyhow::Result<(NodeId, u64)> {
    let deadline = Instant::now() + limit;
    loop {
        let found = statuses(client, cluster).await;
        if let Some(s) = found
            .values()
            .find(|s| s.role == Role::Leader && s.term > after_term)
        {
            return Ok((s.id, s.term));
        }
        if Instant::now() > deadline {
            bail!("no leader elected within {}", secs(limit));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn write_keys(
    kv: &mut KvClient,
    range: std::ops::Range<usize>,
    acked: &mut BTreeMap<String, String>,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::new();
    for i in range {
        let key = format!("demo/key-{i:04}");
        let value = format!("value-{i}");
        let t = Instant::now();
        kv.put(key.clone(), value.clone())
            .await
            .with_context(|| format!("writing {key}"))?;
        latencies.push(t.elapsed());
        acked.insert(key, value);
    }
    latencies.sort();
    Ok(latencies)
}

fn summary(lat: &[Duration]) -> String {
    if lat.is_empty() {
        return String::new();
    }
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    format!(
        "latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        p(0.5).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
        p(1.0).as_secs_f64() * 1e3
    )
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let work = tempfile::Builder::new()
        .prefix("raftkv-demo-")
        .tempdir()
        .context("creating a temporary directory")?;
    let dir = work.path().to_path_buf();
    say(start, format!("working directory {}", dir.display()));

    let ids: [NodeId; 3] = [1, 2, 3];
    let certs = dir.join("certs");
    tls::write_cluster_certs(&certs, "raftkv-demo", &ids, &["client".to_string()])
        .context("creating certificates")?;
    say(
        start,
        "created a cluster CA and certificates for nodes 1, 2, 3 and a client",
    );

    let cluster_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
        | 1;
    let mut addrs = BTreeMap::new();
    for id in ids {
        addrs.insert(id, free_udp_port()?);
    }
    let mut configs = BTreeMap::new();
    for id in ids {
        let cfg = NodeConfig {
            node_id: id,
            cluster_id,
            data_dir: dir.join(format!("node-{id}")),
            listen: addrs[&id],
            metrics: None,
            join: false,
            admin_clients: None,
            tls: TlsFiles {
                ca: certs.join("ca.pem"),
                cert: certs.join(format!("node-{id}.pem")),
                key: certs.join(format!("node-{id}.key")),
            },
            peers: addrs.clone(),
            tick: Duration::from_millis(args.tick_ms.max(1)),
            election_timeout_ticks: 10,
            heartbeat_ticks: 2,
            pre_vote: true,
            check_quorum: true,
            snapshot: Default::default(),
        };
        let path = dir.join(format!("node-{id}.toml"));
        write(&path, &cfg.to_toml())?;
        configs.insert(id, path);
    }
    let mut cluster = Cluster {
        exe: std::env::current_exe().context("locating this program")?,
        dir: dir.clone(),
        configs,
        addrs: addrs.clone(),
        children: BTreeMap::new(),
    };
    for id in ids {
        cluster.start(id)?;
    }
    let listing: Vec<String> = addrs.iter().map(|(i, a)| format!("{i}={a}")).collect();
    say(
        start,
        format!("started 3 nodes (raftkv serve): {}", listing.join(", ")),
    );

    let identity = Identity::load(&TlsFiles::in_dir(&certs, "client"))?;
    let mut options = ClientOptions::new(cluster_id, addrs.values().copied().collect(), identity);
    options.timeout = Duration::from_secs(20);
    options.attempt_timeout = Duration::from_millis(500);
    let client = Client::new(options)?;
    let t = Instant::now();
    let (leader, term) = wait_leader(&client, &cluster, 0, Duration::from_secs(20)).await?;
    say(
        start,
        format!(
            "node {leader} was elected leader for term {term} ({} after start)",
            secs(t.elapsed())
        ),
    );

    let mut kv = KvClient::new(client.clone());
    let mut acked = BTreeMap::new();
    let half = args.keys / 2;
    let t = Instant::now();
    let lat = write_keys(&mut kv, 0..half, &mut acked).await?;
    say(
        start,
        format!(
            "wrote {half} keys one at a time through the client in {} ({}); each is on a quorum's disk",
            secs(t.elapsed()),
            summary(&lat)
        ),
    );
    if let Some((k, v)) = acked.iter().next() {
        let got = kv.get(k.clone()).await?;
        say(
            start,
            format!(
                "read {k} back: {:?}",
                got.as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default()
            ),
        );
        if got.as_deref() != Some(v.as_bytes()) {
            bail!("{k} read back wrong");
        }
    }

    cluster.kill(leader)?;
    let killed = Instant::now();
    say(
        start,
        format!(
            "SIGKILL node {leader}, the leader (the client still points at it and moves on after its 0.5 s per-node timeout)"
        ),
    );
    let (new_leader, new_term) =
        wait_leader(&client, &cluster, term, Duration::from_secs(20)).await?;
    say(
        start,
        format!(
            "node {new_leader} took over as leader for term {new_term}, {} after the kill",
            secs(killed.elapsed())
        ),
    );
    let t = Instant::now();
    let lat = write_keys(&mut kv, half..args.keys, &mut acked).await?;
    say(
        start,
        format!(
            "wrote {} more keys with node {leader} down in {} ({})",
            args.keys - half,
            secs(t.elapsed()),
            summary(&lat)
        ),
    );

    cluster.start(leader)?;
    let restarted = Instant::now();
    say(
        start,
        format!("restarted node {leader} from its data directory"),
    );
    let target = statuses(&client, &cluster)
        .await
        .get(&new_leader)
        .map(|s| s.commit)
        .unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    let caught_up = loop {
        if let Ok(s) = client.status(addrs[&leader]).await {
            if s.applied >= target {
                break s;
            }
        }
        if Instant::now() > deadline {
            bail!("node {leader} did not catch up to index {target} within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    say(
        start,
        format!(
            "node {leader} is back as a {} of node {}, caught up to index {} after {}",
            caught_up.role,
            caught_up.leader.map_or("?".to_string(), |l| l.to_string()),
            caught_up.applied,
            secs(restarted.elapsed())
        ),
    );

    let t = Instant::now();
    let mut wrong = Vec::new();
    for (k, v) in &acked {
        let got = kv.get(k.clone()).await?;
        if got.as_deref() != Some(v.as_bytes()) {
            wrong.push(k.clone());
        }
    }
    if !wrong.is_empty() {
        bail!(
            "{} acknowledged writes are missing or wrong, first: {}",
            wrong.len(),
            wrong[0]
        );
    }
    say(
        start,
        format!(
            "read all {} acknowledged keys back (linearizable reads through the leader) in {}: none lost",
            acked.len(),
            secs(t.elapsed())
        ),
    );
    let table = crate::commands::status_table(
        &statuses(&client, &cluster)
            .await
            .into_iter()
            .map(|(id, s)| (addrs[&id], s))
            .collect::<Vec<_>>(),
    );
    println!("\n{table}");
    client.close().await;

    for id in ids {
        let t = Instant::now();
        let how = cluster.stop(id).await?;
        say(
            start,
            format!(
                "stopped node {id} with SIGTERM ({how}, {})",
                secs(t.elapsed())
            ),
        );
    }
    if args.keep {
        let kept = work.keep();
        say(start, format!("kept {}", kept.display()));
    } else {
        say(start, "removed the working directory; done");
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
