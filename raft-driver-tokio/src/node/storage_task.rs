//! The storage thread: group-commits every pending write in one backend call, and serves the
//! core's other storage requests in order with the writes.
//!
//! The backend blocks (it syncs), so it runs on a dedicated OS thread. Each round takes every
//! write that queued up while the previous sync ran, hands them to [`Storage::write`] as one
//! batch (one transaction, one sync), then reports the last sequence number to the core loop.
//! Another request queued among the writes ends the batch and is carried out after it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use raft_proto_core::storage::Storage;
use raft_proto_core::{Index, NodeId, PersistWrite};
use tokio::sync::mpsc;

use super::core_loop::CoreEvent;
use crate::metrics::NodeMetrics;

/// Counters of the storage thread, readable from anywhere.
#[derive(Debug, Default)]
pub struct StorageStats {
    /// Backend write calls (one transaction and sync each).
    pub batches: AtomicU64,
    /// `PersistWrite`s carried.
    pub writes: AtomicU64,
    /// Log entries written.
    pub entries: AtomicU64,
    /// Microseconds spent in backend writes.
    pub micros: AtomicU64,
}

/// Most writes taken into one batch.
const MAX_BATCH_WRITES: usize = 4096;

/// What the core loop asks of the storage thread, carried out in order.
pub(crate) enum StorageOp {
    /// A write to make durable (grouped with the writes queued beside it).
    Write(PersistWrite),
    /// Read entries `lo..hi` back for a lagging follower (`Output::FetchEntries`).
    Fetch {
        to: NodeId,
        lo: Index,
        hi: Index,
        max_bytes: u64,
    },
}

pub(crate) fn spawn<S: Storage>(
    node: u64,
    mut storage: S,
    mut rx: mpsc::UnboundedReceiver<StorageOp>,
    core: mpsc::UnboundedSender<CoreEvent>,
    stats: Arc<StorageStats>,
    metrics: NodeMetrics,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("raft-storage-{node}"))
        .spawn(move || {
            let mut batch: Vec<PersistWrite> = Vec::new();
            let mut next: Option<StorageOp> = None;
            loop {
                let op = match next.take() {
                    Some(op) => op,
                    None => match rx.blocking_recv() {
                        Some(op) => op,
                        None => break,
                    },
                };
                let failure = match op {
                    StorageOp::Write(first) => {
                        batch.push(first);
                        while batch.len() < MAX_BATCH_WRITES {
                            match rx.try_recv() {
                                Ok(StorageOp::Write(w)) => batch.push(w),
                                Ok(other) => {
                                    next = Some(other);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        let done = write_batch(&mut storage, &batch, &stats, &metrics);
                        let seq = batch.last().map(|w| w.seq).unwrap_or_default();
                        batch.clear();
                        match done {
                            // If the core loop is gone (shutting down), keep writing what it
                            // queued.
                            Ok(()) => {
                                let _ = core.send(CoreEvent::Persisted { seq });
                                None
                            }
                            Err(reason) => Some(reason),
                        }
                    }
                    StorageOp::Fetch {
                        to,
                        lo,
                        hi,
                        max_bytes,
                    } => match guarded(|| storage.entries_within(lo, hi, max_bytes)) {
                        Ok(entries) => {
                            let _ = core.send(CoreEvent::Fetched { to, lo, entries });
                            None
                        }
                        Err(reason) => Some(reason),
                    },
                };
                if let Some(reason) = failure {
                    tracing::error!(node, error = %reason, "storage failed; stopping the node");
                    let _ = core.send(CoreEvent::StorageFailed(reason));
                    return;
                }
            }
            // The core loop is gone: everything it asked for was written above.
            tracing::debug!(node, "storage thread stopped");
        })
}

/// Runs a backend call, turning its error or panic into the reason the node stops.
fn guarded<T, E: std::fmt::Display>(f: impl FnOnce() -> Result<T, E>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the storage backend panicked".to_string()),
    }
}

/// One group commit: the batch in one backend call, with its figures recorded.
fn write_batch<S: Storage>(
    storage: &mut S,
    batch: &[PersistWrite],
    stats: &StorageStats,
    metrics: &NodeMetrics,
) -> Result<(), String> {
    let entries: usize = batch.iter().map(|w| w.entries.len()).sum();
    let started = Instant::now();
    guarded(|| storage.write(batch))?;
    let took = started.elapsed();
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats
        .writes
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    stats.entries.fetch_add(entries as u64, Ordering::Relaxed);
    stats
        .micros
        .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    metrics.fsync_seconds.record(took.as_secs_f64());
    metrics.fsync_batch_entries.record(entries as f64);
    Ok(())
}
