//! Node configuration files (TOML) and their validation.
//!
//! ```toml
//! node_id = 1
//! cluster_id = 7
//! data_dir = "data/node-1"
//! listen = "127.0.0.1:7001"      # optional: defaults to this node's address below
//! metrics = "127.0.0.1:9101"     # optional: Prometheus endpoint
//! join = false                   # optional: true to join a running cluster (see below)
//! admin_clients = ["ops"]        # optional: clients allowed to change members (default: all)
//!
//! [tls]
//! ca = "certs/ca.pem"
//! cert = "certs/node-1.pem"
//! key = "certs/node-1.key"
//!
//! [[peers]]
//! id = 1
//! addr = "127.0.0.1:7001"
//! [[peers]]
//! id = 2
//! addr = "127.0.0.1:7002"
//! [[peers]]
//! id = 3
//! addr = "127.0.0.1:7003"
//!
//! [raft]                         # optional, these are the defaults
//! tick_ms = 50
//! election_timeout_ticks = 10
//! heartbeat_ticks = 2
//! pre_vote = true
//! check_quorum = true
//!
//! [snapshot]                     # optional, these are the defaults
//! after_entries = 100000         # snapshot after this many applied entries (0: not by count)
//! after_bytes = 67108864         # ... or this many bytes of applied entries (0: not by size)
//! keep_entries = 10000           # log entries kept below a snapshot for slow followers
//! chunk_bytes = 1048576          # snapshot bytes per message to a follower
//! ```
//!
//! A new cluster's nodes list every initial voter under `[[peers]]`, themselves included; the
//! addresses are recorded in the log with the initial configuration, and from then on the
//! configuration in the log says where members are. A node started with `join = true` and
//! an empty data directory joins a running cluster instead: it needs `listen`, its
//! `[[peers]]` (optional) are some current members (to answer the leader before it learned the
//! configuration), and it waits until `raftkv member add-learner` adds it.
//!
//! Every field can also come from elsewhere (the `raftkv serve` flags and environment
//! variables fill a [`RawConfig`] the same way and are merged over the file's).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use raft_proto_core::NodeId;
use serde::Deserialize;

use crate::tls::TlsFiles;

/// A configuration as read, every field optional (file, flags and environment are merged).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// This node's id.
    pub node_id: Option<NodeId>,
    /// The cluster id.
    pub cluster_id: Option<u64>,
    /// Where the node keeps its database.
    pub data_dir: Option<PathBuf>,
    /// Address to listen on.
    pub listen: Option<SocketAddr>,
    /// Prometheus endpoint address.
    pub metrics: Option<SocketAddr>,
    /// Join a running cluster instead of forming a new one.
    pub join: Option<bool>,
    /// Client certificate names allowed to change the membership and move leadership.
    pub admin_clients: Option<Vec<String>>,
    /// TLS files.
    #[serde(default)]
    pub tls: RawTls,
    /// Every voter, this node included.
    #[serde(default)]
    pub peers: Vec<RawPeer>,
    /// Raft timing.
    #[serde(default)]
    pub raft: RawRaft,
    /// Snapshot policy.
    #[serde(default)]
    pub snapshot: RawSnapshot,
}

/// The `[snapshot]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSnapshot {
    /// Take a snapshot once this many entries were applied since the last one (0: never).
    pub after_entries: Option<u64>,
    /// Take a snapshot once this many bytes of entries were applied since the last (0: never).
    pub after_bytes: Option<u64>,
    /// Log entries kept below a snapshot.
    pub keep_entries: Option<u64>,
    /// Snapshot bytes per message sent to a follower.
    pub chunk_bytes: Option<u64>,
}

/// The `[tls]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// The cluster CA certificate.
    pub ca: Option<PathBuf>,
    /// This node's certificate.
    pub cert: Option<PathBuf>,
    /// This node's private key.
    pub key: Option<PathBuf>,
}

/// One `[[peers]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    /// The peer's node id.
    pub id: NodeId,
    /// Its address.
    pub addr: SocketAddr,
}

/// The `[raft]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRaft {
    /// Milliseconds per tick.
    pub tick_ms: Option<u64>,
    /// Election timeout, in ticks (randomized between this and twice this).
    pub election_timeout_ticks: Option<u32>,
    /// Heartbeat interval, in ticks.
    pub heartbeat_ticks: Option<u32>,
    /// Whether to run a pre-vote before elections.
    pub pre_vote: Option<bool>,
    /// Whether a leader steps down when it loses contact with a quorum.
    pub check_quorum: Option<bool>,
}

/// A complete, checked node configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id.
    pub node_id: NodeId,
    /// The cluster id.
    pub cluster_id: u64,
    /// Where the node keeps its database.
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Prometheus endpoint.
    pub metrics: Option<SocketAddr>,
    /// Whether the node joins a running cluster (`peers` are then members to contact).
    pub join: bool,
    /// Client certificate names allowed to change the membership and move leadership
    /// (`None`: every client of the cluster CA).
    pub admin_clients: Option<Vec<String>>,
    /// TLS files (checked to exist).
    pub tls: TlsFiles,
    /// Every initial voter with its address (with `join`: some members of the cluster).
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Tick length.
    pub tick: Duration,
    /// Election timeout in ticks.
    pub election_timeout_ticks: u32,
    /// Heartbeat interval in ticks.
    pub heartbeat_ticks: u32,
    /// Pre-vote on or off.
    pub pre_vote: bool,
    /// Check-quorum on or off.
    pub check_quorum: bool,
    /// Snapshot policy.
    pub snapshot: SnapshotSettings,
}

/// When snapshots are taken and how they travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotSettings {
    /// Snapshot after this many applied entries (`None`: not by count).
    pub after_entries: Option<u64>,
    /// Snapshot after this many bytes of applied entries (`None`: not by size).
    pub after_bytes: Option<u64>,
    /// Log entries kept below a snapshot for followers that lag a little.
    pub keep_entries: u64,
    /// Snapshot bytes per message to a follower.
    pub chunk_bytes: u64,
}

impl Default for SnapshotSettings {
    fn default() -> Self {
        let core = raft_proto_core::Config::new(1, [1]);
        SnapshotSettings {
            after_entries: core.snapshot_after_entries,
            after_bytes: core.snapshot_after_bytes,
            keep_entries: core.compaction_keep_entries,
            chunk_bytes: core.snapshot_chunk_bytes,
        }
    }
}

/// What is wrong with a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped fields.
    #[error("config file {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's explanation (with line and column).
        reason: String,
    },
    /// A required setting is missing.
    #[error("missing setting `{0}` (in the config file or as a flag)")]
    Missing(&'static str),
    /// A setting has an invalid value.
    #[error("invalid setting `{field}`: {reason}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// Two peers have the same id.
    #[error("duplicate peer id {0}")]
    DuplicatePeer(NodeId),
    /// Two peers have the same address.
    #[error("peers {a} and {b} have the same address {addr}")]
    DuplicateAddress {
        /// One peer.
        a: NodeId,
        /// The other.
        b: NodeId,
        /// The shared address.
        addr: SocketAddr,
    },
    /// This node is not in the peer list.
    #[error("node {0} is not in the peer list (peers: {1:?}); to join a running cluster, set `join = true` (or --join) and `listen`")]
    UnknownSelf(NodeId, Vec<NodeId>),
    /// A TLS file does not exist.
    #[error("{what} file {path} does not exist")]
    MissingFile {
        /// Which file (CA certificate, certificate, key).
        what: &'static str,
        /// Its path.
        path: PathBuf,
    },
}

impl RawConfig {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        RawConfig::from_toml(&text).map_err(|reason| ConfigError::Parse {
            path: path.to_owned(),
            reason,
        })
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<RawConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Fields set in `over` replace those of `self`; peers are replaced as a whole if any.
    pub fn merge(mut self, over: RawConfig) -> RawConfig {
        fn pick<T>(base: &mut Option<T>, over: Option<T>) {
            if over.is_some() {
                *base = over;
            }
        }
        pick(&mut self.node_id, over.node_id);
        pick(&mut self.cluster_id, over.cluster_id);
        pick(&mut self.data_dir, over.data_dir);
        pick(&mut self.listen, over.listen);
        pick(&mut self.metrics, over.metrics);
        pick(&mut self.join, over.join);
        pick(&mut self.admin_clients, over.admin_clients);
        pick(&mut self.tls.ca, over.tls.ca);
        pick(&mut self.tls.cert, over.tls.cert);
        pick(&mut self.tls.key, over.tls.key);
        pick(&mut self.raft.tick_ms, over.raft.tick_ms);
        pick(
            &mut self.raft.election_timeout_ticks,
            over.raft.election_timeout_ticks,
        );
        pick(&mut self.raft.heartbeat_ticks, over.raft.heartbeat_ticks);
        pick(&mut self.raft.pre_vote, over.raft.pre_vote);
        pick(&mut self.raft.check_quorum, over.raft.check_quorum);
        pick(
            &mut self.snapshot.after_entries,
            over.snapshot.after_entries,
        );
        pick(&mut self.snapshot.after_bytes, over.snapshot.after_bytes);
        pick(&mut self.snapshot.keep_entries, over.snapshot.keep_entries);
        pick(&mut self.snapshot.chunk_bytes, over.snapshot.chunk_bytes);
        if !over.peers.is_empty() {
            self.peers = over.peers;
        }
        self
    }

    /// Checks everything and fills in defaults.
    pub fn validate(self) -> Result<NodeConfig, ConfigError> {
        let node_id = self.node_id.ok_or(ConfigError::Missing("node_id"))?;
        if node_id == 0 {
            return Err(ConfigError::Invalid {
                field: "node_id",
                reason: "0 is reserved; use 1 or more".into(),
            });
        }
        let cluster_id = self.cluster_id.ok_or(ConfigError::Missing("cluster_id"))?;
        let data_dir = self.data_dir.ok_or(ConfigError::Missing("data_dir"))?;
        let join = self.join.unwrap_or(false);
        // A joining node may know no member: the leader that adds it dials it.
        if self.peers.is_empty() && !join {
            return Err(ConfigError::Missing("peers"));
        }
        let mut peers = BTreeMap::new();
        let mut addrs: BTreeMap<SocketAddr, NodeId> = BTreeMap::new();
        for p in &self.peers {
            if p.id == 0 {
                return Err(ConfigError::Invalid {
                    field: "peers",
                    reason: "peer id 0 is reserved".into(),
                });
            }
            if peers.insert(p.id, p.addr).is_some() {
                return Err(ConfigError::DuplicatePeer(p.id));
            }
            if let Some(other) = addrs.insert(p.addr, p.id) {
                return Err(ConfigError::DuplicateAddress {
                    a: other,
                    b: p.id,
                    addr: p.addr,
                });
            }
        }
        let listen = match (peers.get(&node_id), self.listen) {
            (_, Some(listen)) => listen,
            (Some(&own), None) => own,
            (None, None) if join => return Err(ConfigError::Missing("listen")),
            (None, None) => {
                return Err(ConfigError::UnknownSelf(
                    node_id,
                    peers.keys().copied().collect(),
                ))
            }
        };
        if !join && !peers.contains_key(&node_id) {
            return Err(ConfigError::UnknownSelf(
                node_id,
                peers.keys().copied().collect(),
            ));
        }
        let tls = TlsFiles {
            ca: self.tls.ca.ok_or(ConfigError::Missing("tls.ca"))?,
            cert: self.tls.cert.ok_or(ConfigError::Missing("tls.cert"))?,
            key: self.tls.key.ok_or(ConfigError::Missing("tls.key"))?,
        };
        for (what, path) in [
            ("CA certificate", &tls.ca),
            ("certificate", &tls.cert),
            ("private key", &tls.key),
        ] {
            if !path.is_file() {
                return Err(ConfigError::MissingFile {
                    what,
                    path: path.clone(),
                });
            }
        }
        let tick_ms = self.raft.tick_ms.unwrap_or(50);
        if !(1..=60_000).contains(&tick_ms) {
            return Err(ConfigError::Invalid {
                field: "raft.tick_ms",
                reason: format!("{tick_ms} is outside 1..=60000"),
            });
        }
        let election_timeout_ticks = self.raft.election_timeout_ticks.unwrap_or(10);
        let heartbeat_ticks = self.raft.heartbeat_ticks.unwrap_or(2);
        if heartbeat_ticks == 0 || heartbeat_ticks >= election_timeout_ticks {
            return Err(ConfigError::Invalid {
                field: "raft.heartbeat_ticks",
                reason: format!(
                    "must be at least 1 and below the election timeout ({election_timeout_ticks} ticks)"
                ),
            });
        }
        if let Some(names) = &self.admin_clients {
            for name in names {
                crate::tls::validate_client_name(name).map_err(|e| ConfigError::Invalid {
                    field: "admin_clients",
                    reason: e.to_string(),
                })?;
            }
        }
        let defaults = SnapshotSettings::default();
        let chunk_bytes = self.snapshot.chunk_bytes.unwrap_or(defaults.chunk_bytes);
        if !(1..=(1 << 20)).contains(&chunk_bytes) {
            return Err(ConfigError::Invalid {
                field: "snapshot.chunk_bytes",
                reason: format!("{chunk_bytes} is outside 1..=1048576 (1 MiB)"),
            });
        }
        let threshold = |v: Option<u64>, default: Option<u64>| match v {
            Some(0) => None,
            Some(n) => Some(n),
            None => default,
        };
        let snapshot = SnapshotSettings {
            after_entries: threshold(self.snapshot.after_entries, defaults.after_entries),
            after_bytes: threshold(self.snapshot.after_bytes, defaults.after_bytes),
            keep_entries: self.snapshot.keep_entries.unwrap_or(defaults.keep_entries),
            chunk_bytes,
        };
        let distinct: BTreeSet<_> = peers.keys().collect();
        debug_assert_eq!(distinct.len(), peers.len());
        Ok(NodeConfig {
            node_id,
            cluster_id,
            data_dir,
            listen,
            metrics: self.metrics,
            join,
            admin_clients: self.admin_clients,
            tls,
            peers,
            tick: Duration::from_millis(tick_ms),
            election_timeout_ticks,
            heartbeat_ticks,
            pre_vote: self.raft.pre_vote.unwrap_or(true),
            check_quorum: self.raft.check_quorum.unwrap_or(true),
            snapshot,
        })
    }
}

impl NodeConfig {
    /// The node options for this configuration, with the identity loaded from `tls`.
    pub fn node_options(&self, identity: crate::tls::Identity) -> crate::NodeOptions {
        let mut o =
            crate::NodeOptions::new(self.node_id, self.cluster_id, self.peers.clone(), identity);
        o.listen = self.listen;
        o.join = self.join;
        o.admin_clients = self.admin_clients.clone();
        o.tick = self.tick;
        o.raft.election_timeout_ticks = self.election_timeout_ticks;
        o.raft.heartbeat_interval_ticks = self.heartbeat_ticks;
        o.raft.pre_vote = self.pre_vote;
        o.raft.check_quorum = self.check_quorum;
        o.raft.snapshot_after_entries = self.snapshot.after_entries;
        o.raft.snapshot_after_bytes = self.snapshot.after_bytes;
        o.raft.compaction_keep_entries = self.snapshot.keep_entries;
        o.raft.snapshot_chunk_bytes = self.snapshot.chunk_bytes;
        o
    }

    /// The configuration as a TOML file (what `raftkv demo` writes for its nodes).
    pub fn to_toml(&self) -> String {
        let mut s = format!(
            "node_id = {}\ncluster_id = {}\ndata_dir = {:?}\nlisten = \"{}\"\n",
            self.node_id, self.cluster_id, self.data_dir, self.listen
        );
        if let Some(m) = self.metrics {
            s += &format!("metrics = \"{m}\"\n");
        }
        if self.join {
            s += "join = true\n";
        }
        if let Some(names) = &self.admin_clients {
            s += &format!("admin_clients = {names:?}\n");
        }
        s += &format!(
            "\n[tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
            self.tls.ca, self.tls.cert, self.tls.key
        );
        for (id, addr) in &self.peers {
            s += &format!("\n[[peers]]\nid = {id}\naddr = \"{addr}\"\n");
        }
        s += &format!(
            "\n[raft]\ntick_ms = {}\nelection_timeout_ticks = {}\nheartbeat_ticks = {}\npre_vote = {}\ncheck_quorum = {}\n",
            self.tick.as_millis(),
            self.election_timeout_ticks,
            self.heartbeat_ticks,
            self.pre_vote,
            self.check_quorum
        );
        let n = &self.snapshot;
        s += &format!(
            "\n[snapshot]\nafter_entries = {}\nafter_bytes = {}\nkeep_entries = {}\nchunk_bytes = {}\n",
            n.after_entries.unwrap_or(0),
            n.after_bytes.unwrap_or(0),
            n.keep_entries,
            n.chunk_bytes
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let f = |n: &str| {
            let p = dir.join(n);
            std::fs::write(&p, "x").unwrap();
            p
        };
        (f("ca.pem"), f("n.pem"), f("n.key"))
    }

    fn sample(dir: &Path) -> String {
        let (ca, cert, key) = files(dir);
        format!(
            "node_id = 2\ncluster_id = 9\ndata_dir = \"d\"\n[tls]\nca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\n\
             [[peers]]\nid = 1\naddr = \"127.0.0.1:7001\"\n[[peers]]\nid = 2\naddr = \"127.0.0.1:7002\"\n\
             [[peers]]\nid = 3\naddr = \"127.0.0.1:7003\"\n"
        )
    }

    #[test]
    fn valid_file_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = RawConfig::from_toml(&sample(dir.path()))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(cfg.node_id, 2);
        assert_eq!(cfg.listen, "127.0.0.1:7002".parse().unwrap());
        assert_eq!(cfg.tick, Duration::from_millis(50));
        assert_eq!(cfg.peers.len(), 3);
        // What the demo writes reads back the same.
        let again = RawConfig::from_toml(&cfg.to_toml())
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(again.peers, cfg.peers);
        assert_eq!(again.tls.key, cfg.tls.key);
    }

    #[test]
    fn errors_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let base = sample(dir.path());
        let check = |text: String, want: &str| {
            let err = RawConfig::from_toml(&text)
                .map_err(|e| e.to_string())
                .and_then(|r| r.validate().map_err(|e| e.to_string()))
                .unwrap_err();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        };
        check(
            base.replace("node_id = 2", "node_id = 5"),
            "not in the peer list",
        );
        check(base.replace("node_id = 2", "node_id = 0"), "reserved");
        check(base.replace("id = 3", "id = 2"), "duplicate peer id 2");
        check(base.replace("7003", "7002"), "same address");
        check(base.replace("n.key", "absent.key"), "does not exist");
        check(base.replace("cluster_id = 9\n", ""), "cluster_id");
        check(base.clone() + "bogus = 1\n", "unknown field");
        check(
            base.replace("addr = \"127.0.0.1:7001\"", "addr = \"nowhere\""),
            "addr",
        );
        check(base + "[raft]\nheartbeat_ticks = 10\n", "heartbeat");
    }

    #[test]
    fn a_joining_node_needs_its_listen_address_not_its_own_peer_entry() {
        let dir = tempfile::tempdir().unwrap();
        let base = sample(dir.path()).replace("node_id = 2", "node_id = 4");
        let err = RawConfig::from_toml(&format!("join = true\n{base}"))
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("listen"), "{err}");
        let cfg =
            RawConfig::from_toml(&format!("join = true\nlisten = \"127.0.0.1:7004\"\n{base}"))
                .unwrap()
                .validate()
                .unwrap();
        assert!(cfg.join);
        assert_eq!(cfg.listen, "127.0.0.1:7004".parse().unwrap());
        let again = RawConfig::from_toml(&cfg.to_toml())
            .unwrap()
            .validate()
            .unwrap();
        assert!(again.join);
        // Without any member to contact: the leader that adds it dials it.
        let alone = format!(
            "join = true\nlisten = \"127.0.0.1:7004\"\n{}",
            base.split("[[peers]]").next().unwrap()
        );
        let cfg = RawConfig::from_toml(&alone).unwrap().validate().unwrap();
        assert!(cfg.join && cfg.peers.is_empty());
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = RawConfig::from_toml(&sample(dir.path())).unwrap();
        let flags = RawConfig {
            node_id: Some(3),
            raft: RawRaft {
                tick_ms: Some(20),
                ..RawRaft::default()
            },
            ..RawConfig::default()
        };
        let cfg = file.merge(flags).validate().unwrap();
        assert_eq!(cfg.node_id, 3);
        assert_eq!(cfg.tick, Duration::from_millis(20));
        assert_eq!(cfg.cluster_id, 9);
    }
}
