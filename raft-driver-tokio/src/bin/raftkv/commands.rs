//! The one-shot client commands: put, get, delete, cas, status, snapshot.

use std::process::ExitCode;

use bytes::Bytes;
use raft_driver_tokio::kv::KvClient;
use raft_driver_tokio::protocol::{MemberRole, MembershipReport, NodeStatus};

use crate::client_args::ClientArgs;

/// `raftkv put KEY VALUE`.
#[derive(clap::Args, Debug)]
pub struct PutArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

/// `raftkv get KEY` / `raftkv delete KEY`.
#[derive(clap::Args, Debug)]
pub struct KeyArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The key.
    pub key: String,
}

/// `raftkv cas KEY [--expected V | --absent] [--new V | --delete]`.
#[derive(clap::Args, Debug)]
pub struct CasArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The key.
    pub key: String,
    /// The value the key must have.
    #[arg(long, conflicts_with = "absent", required_unless_present = "absent")]
    pub expected: Option<String>,
    /// The key must be absent.
    #[arg(long)]
    pub absent: bool,
    /// The value to set.
    #[arg(long, conflicts_with = "delete", required_unless_present = "delete")]
    pub new: Option<String>,
    /// Delete the key instead of setting it.
    #[arg(long)]
    pub delete: bool,
}

/// `raftkv status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `raftkv snapshot`: every node given with `--nodes` takes a snapshot now.
#[derive(clap::Args, Debug)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn snapshot(args: SnapshotArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let mut failed = 0;
    for &addr in client.nodes() {
        match client.snapshot(addr).await {
            Ok(done) => println!(
                "{addr}: snapshot at index {} (term {}), {} bytes{}",
                done.index,
                done.term,
                done.bytes,
                if done.new {
                    ""
                } else {
                    " (already the latest: nothing applied since)"
                }
            ),
            Err(e) => {
                failed += 1;
                println!("{addr}: no snapshot ({e})");
            }
        }
    }
    client.close().await;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn show(v: &Option<Bytes>) -> String {
    match v {
        Some(v) => format!("{:?}", String::from_utf8_lossy(v)),
        None => "(none)".into(),
    }
}

pub async fn put(args: PutArgs) -> anyhow::Result<ExitCode> {
    let mut kv = KvClient::new(args.client.client()?);
    let previous = kv.put(args.key, args.value).await?;
    println!("OK (previous value: {})", show(&previous));
    kv.client().close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn get(args: KeyArgs) -> anyhow::Result<ExitCode> {
    let mut kv = KvClient::new(args.client.client()?);
    let value = kv.get(args.key.clone()).await?;
    kv.client().close().await;
    match value {
        Some(v) => {
            println!("{}", String::from_utf8_lossy(&v));
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("key {:?} not found", args.key);
            Ok(ExitCode::from(1))
        }
    }
}

pub async fn delete(args: KeyArgs) -> anyhow::Result<ExitCode> {
    let mut kv = KvClient::new(args.client.client()?);
    let previous = kv.delete(args.key).await?;
    println!("OK (previous value: {})", show(&previous));
    kv.client().close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn cas(args: CasArgs) -> anyhow::Result<ExitCode> {
    let mut kv = KvClient::new(args.client.client()?);
    let expected = args.expected.map(Bytes::from);
    let new = args.new.map(Bytes::from);
    let (done, current) = kv.cas(args.key, expected, new).await?;
    kv.client().close().await;
    if done {
        println!("OK (previous value: {})", show(&current));
        Ok(ExitCode::SUCCESS)
    } else {
        println!("FAILED (current value: {})", show(&current));
        Ok(ExitCode::from(1))
    }
}

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let mut found = Vec::new();
    let mut unreachable = 0;
    for &addr in client.nodes() {
        match client.status(addr).await {
            Ok(s) => found.push((addr, s)),
            Err(e) => {
                unreachable += 1;
                println!("{addr}: unreachable ({e})");
            }
        }
    }
    client.close().await;
    print!("{}", status_table(&found));
    Ok(if unreachable == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The status of several nodes as text tables: one row per node, then the leader's view of
/// replication and every node's storage figures.
pub fn status_table(nodes: &[(std::net::SocketAddr, NodeStatus)]) -> String {
    let mut out = String::new();
    if nodes.is_empty() {
        return out;
    }
    out += &format!(
        "{:<5} {:<22} {:<13} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9}\n",
        "NODE", "ADDRESS", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAST", "DURABLE"
    );
    for (addr, s) in nodes {
        let leader = s.leader.map_or("-".to_string(), |l| l.to_string());
        out += &format!(
            "{:<5} {:<22} {:<13} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9}\n",
            s.id,
            addr.to_string(),
            s.role.to_string(),
            s.term,
            leader,
            s.commit,
            s.applied,
            s.last_index,
            s.persisted
        );
    }
    for (_, s) in nodes.iter().filter(|(_, s)| s.leader == Some(s.id)) {
        out += &format!(
            "\nconfiguration at index {}: {}{}\n",
            s.membership.index,
            configuration_summary(&s.membership),
            match s.transfer {
                Some(to) => format!("; transferring leadership to node {to}"),
                None => String::new(),
            }
        );
        out += &format!("\nreplication from leader {} (term {}):\n", s.id, s.term);
        out += &format!(
            "{:<5} {:<22} {:>9} {:>9} {:>7} {:<10} {:>8} {:>7} {:>9}\n",
            "PEER", "ADDRESS", "MATCH", "NEXT", "LAG", "STATE", "INFLIGHT", "ACTIVE", "CONNECTED"
        );
        for p in &s.peers {
            let state = match (&p.snapshot, p.replicating) {
                (Some(_), _) => "snapshot",
                (None, true) => "replicate",
                (None, false) => "probe",
            };
            out += &format!(
                "{:<5} {:<22} {:>9} {:>9} {:>7} {:<10} {:>8} {:>7} {:>9}\n",
                p.id,
                p.address,
                p.matched,
                p.next,
                s.last_index.saturating_sub(p.matched),
                state,
                p.inflight,
                yes_no(p.active),
                yes_no(p.connected)
            );
            if let Some(t) = &p.snapshot {
                out += &format!(
                    "      sending snapshot {} to {}: {} of {} bytes acknowledged\n",
                    t.index, p.id, t.acked, t.total
                );
            }
        }
    }
    out += "\nstorage and traffic:\n";
    out += &format!(
        "{:<5} {:>10} {:>11} {:>13} {:>14} {:>12} {:>12} {:>10} {:>9}\n",
        "NODE",
        "SYNCS",
        "ENTRIES",
        "ENTRIES/SYNC",
        "AVG SYNC (ms)",
        "SENT (MB)",
        "RECV (MB)",
        "PROPOSALS",
        "UPTIME"
    );
    for (_, s) in nodes {
        let per = s.storage_entries as f64 / s.storage_batches.max(1) as f64;
        let avg_ms = s.storage_micros as f64 / 1000.0 / s.storage_batches.max(1) as f64;
        out += &format!(
            "{:<5} {:>10} {:>11} {:>13.1} {:>14.3} {:>12.2} {:>12.2} {:>10} {:>8.0}s\n",
            s.id,
            s.storage_batches,
            s.storage_entries,
            per,
            avg_ms,
            s.bytes_sent as f64 / 1e6,
            s.bytes_received as f64 / 1e6,
            s.proposals,
            s.uptime_ms as f64 / 1000.0
        );
    }
    out += "\nsnapshots and log:\n";
    out += &format!(
        "{:<5} {:>9} {:>5} {:>10} {:>8} {:>9} {:>9} {:>10} {:>6} {:>5} {:>10}  {}\n",
        "NODE",
        "SNAPSHOT",
        "TERM",
        "SIZE (KB)",
        "AGE",
        "FIRST",
        "MEM ENTR",
        "MEM (KB)",
        "TAKEN",
        "SENT",
        "INSTALLED",
        "IN PROGRESS"
    );
    for (_, s) in nodes {
        let n = &s.snapshot;
        let mut busy = Vec::new();
        if let Some(i) = n.taking {
            busy.push(format!("taking {i}"));
        }
        if let Some(r) = &n.receiving {
            busy.push(format!(
                "receiving {} ({} of {} bytes)",
                r.index, r.acked, r.total
            ));
        }
        let index = if n.index == 0 {
            "-".to_string()
        } else {
            n.index.to_string()
        };
        out += &format!(
            "{:<5} {:>9} {:>5} {:>10.1} {:>7.0}s {:>9} {:>9} {:>10.1} {:>6} {:>5} {:>10}  {}\n",
            s.id,
            index,
            n.term,
            n.bytes as f64 / 1e3,
            n.age_ms as f64 / 1000.0,
            n.first_index,
            n.log_entries_in_memory,
            n.log_bytes_in_memory as f64 / 1e3,
            n.taken,
            n.sent,
            n.installed,
            if busy.is_empty() {
                "-".to_string()
            } else {
                busy.join(", ")
            }
        );
    }
    out
}

/// `voters [1, 2, 3], learners [4]` (joint: `voters [1, 2, 4] joint with [1, 2, 3]`).
fn configuration_summary(m: &MembershipReport) -> String {
    use raft_driver_tokio::protocol::MemberRole::*;
    let ids = |roles: &[MemberRole]| -> Vec<u64> {
        m.members
            .iter()
            .filter(|p| roles.contains(&p.role))
            .map(|p| p.id)
            .collect()
    };
    let mut s = format!("voters {:?}", ids(&[Voter, Joining]));
    if m.joint {
        s += &format!(" joint with {:?}", ids(&[Voter, Leaving]));
    }
    let learners = ids(&[Learner]);
    if !learners.is_empty() {
        s += &format!(", learners {learners:?}");
    }
    if !m.committed {
        s += " (not committed yet)";
    }
    s
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
