//! Metric handles of one node, registered once with the global `metrics` recorder.
//!
//! Every series carries a `node` label. Without an installed recorder (for example in tests)
//! the handles do nothing. [`install_prometheus`] serves them over HTTP for Prometheus.

use std::net::SocketAddr;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use raft_proto_core::NodeId;

/// Handles for the metrics a node updates.
#[derive(Clone)]
pub struct NodeMetrics {
    pub(crate) node: String,
    pub(crate) term: Gauge,
    pub(crate) role: Gauge,
    pub(crate) is_leader: Gauge,
    pub(crate) leader_changes: Counter,
    pub(crate) commit_index: Gauge,
    pub(crate) applied_index: Gauge,
    pub(crate) last_index: Gauge,
    pub(crate) proposals: Counter,
    pub(crate) proposals_rejected: Counter,
    pub(crate) proposal_seconds: Histogram,
    pub(crate) apply_seconds: Histogram,
    pub(crate) fsync_seconds: Histogram,
    pub(crate) fsync_batch_entries: Histogram,
    pub(crate) bytes_sent: Counter,
    pub(crate) bytes_received: Counter,
    pub(crate) messages_dropped: Counter,
    pub(crate) frames_refused: Counter,
    pub(crate) snapshots_taken: Counter,
    pub(crate) snapshot_bytes: Gauge,
    pub(crate) snapshot_index: Gauge,
    pub(crate) snapshot_seconds: Histogram,
    pub(crate) snapshot_pause_seconds: Histogram,
    pub(crate) snapshots_sent: Counter,
    pub(crate) snapshots_installed: Counter,
    pub(crate) log_entries_kept: Gauge,
    pub(crate) log_bytes_in_memory: Gauge,
    pub(crate) voters: Gauge,
    pub(crate) learners: Gauge,
    pub(crate) joint: Gauge,
    pub(crate) membership_index: Gauge,
    pub(crate) membership_changes: Counter,
    pub(crate) transfers: Counter,
    pub(crate) transfers_aborted: Counter,
}

impl NodeMetrics {
    /// Registers (or looks up) the series of node `id`.
    pub fn new(id: NodeId) -> NodeMetrics {
        let node = id.to_string();
        let l = [("node", node.clone())];
        NodeMetrics {
            term: gauge!("raft_term", &l),
            role: gauge!("raft_role", &l),
            is_leader: gauge!("raft_is_leader", &l),
            leader_changes: counter!("raft_leader_changes_total", &l),
            commit_index: gauge!("raft_commit_index", &l),
            applied_index: gauge!("raft_applied_index", &l),
            last_index: gauge!("raft_last_log_index", &l),
            proposals: counter!("raft_proposals_total", &l),
            proposals_rejected: counter!("raft_proposals_rejected_total", &l),
            proposal_seconds: histogram!("raft_proposal_seconds", &l),
            apply_seconds: histogram!("raft_apply_batch_seconds", &l),
            fsync_seconds: histogram!("raft_storage_write_seconds", &l),
            fsync_batch_entries: histogram!("raft_storage_batch_entries", &l),
            bytes_sent: counter!("raft_peer_bytes_sent_total", &l),
            bytes_received: counter!("raft_peer_bytes_received_total", &l),
            messages_dropped: counter!("raft_peer_messages_dropped_total", &l),
            frames_refused: counter!("raft_frames_refused_total", &l),
            snapshots_taken: counter!("raft_snapshots_taken_total", &l),
            snapshot_bytes: gauge!("raft_snapshot_bytes", &l),
            snapshot_index: gauge!("raft_snapshot_index", &l),
            snapshot_seconds: histogram!("raft_snapshot_seconds", &l),
            snapshot_pause_seconds: histogram!("raft_snapshot_pause_seconds", &l),
            snapshots_sent: counter!("raft_snapshots_sent_total", &l),
            snapshots_installed: counter!("raft_snapshots_installed_total", &l),
            log_entries_kept: gauge!("raft_log_entries", &l),
            log_bytes_in_memory: gauge!("raft_log_memory_bytes", &l),
            voters: gauge!("raft_voters", &l),
            learners: gauge!("raft_learners", &l),
            joint: gauge!("raft_membership_joint", &l),
            membership_index: gauge!("raft_membership_index", &l),
            membership_changes: counter!("raft_membership_changes_total", &l),
            transfers: counter!("raft_leadership_transfers_total", &l),
            transfers_aborted: counter!("raft_leadership_transfers_aborted_total", &l),
            node,
        }
    }

    /// Per-peer replication gauges (match index and lag behind this node's last index).
    pub(crate) fn peer(&self, peer: NodeId, matched: u64, lag: u64) {
        let l = [("node", self.node.clone()), ("peer", peer.to_string())];
        gauge!("raft_peer_match_index", &l).set(matched as f64);
        gauge!("raft_peer_lag_entries", &l).set(lag as f64);
    }
}

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr}: {reason}")]
pub struct MetricsError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// What went wrong.
    pub reason: String,
}

/// Installs the process-wide Prometheus recorder, serving `/metrics` on `addr`. Call it from
/// inside a tokio runtime, before starting nodes, at most once per process.
pub fn install_prometheus(addr: SocketAddr) -> Result<(), MetricsError> {
    let buckets = [
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
        0.5, 1.0, 2.5,
    ];
    let entry_buckets = [
        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
    ];
    let err = |e: &dyn std::fmt::Display| MetricsError {
        addr,
        reason: e.to_string(),
    };
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(&buckets)
        .map_err(|e| err(&e))?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("raft_storage_batch_entries".into()),
            &entry_buckets,
        )
        .map_err(|e| err(&e))?
        .install()
        .map_err(|e| err(&e))
}
