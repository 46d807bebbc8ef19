//! The storage thread: group-commits every pending write in one backend call.
//!
//! The backend blocks (it syncs), so it runs on a dedicated OS thread. Each round takes every
//! write that queued up while the previous sync ran, hands them to [`Storage::write`] as one
//! batch (one transaction, one sync), then reports the last sequence number to the core loop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use raft_proto_core::storage::Storage;
use raft_proto_core::PersistWrite;
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

pub(crate) fn spawn<S: Storage>(
    node: u64,
    mut storage: S,
    mut rx: mpsc::UnboundedReceiver<PersistWrite>,
    core: mpsc::UnboundedSender<CoreEvent>,
    stats: Arc<StorageStats>,
    metrics: NodeMetrics,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("raft-storage-{node}"))
        .spawn(move || {
            let mut batch: Vec<PersistWrite> = Vec::new();
            while let Some(first) = rx.blocking_recv() {
                batch.push(first);
                while batch.len() < MAX_BATCH_WRITES {
                    match rx.try_recv() {
                        Ok(w) => batch.push(w),
                        Err(_) => break,
                    }
                }
                let entries: usize = batch.iter().map(|w| w.entries.len()).sum();
                let started = Instant::now();
                let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    storage.write(&batch)
                }));
                let failure = match written {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some("the storage backend panicked".to_string()),
                };
                if let Some(reason) = failure {
                    tracing::error!(node, error = %reason, "storage write failed; stopping the node");
                    let _ = core.send(CoreEvent::StorageFailed(reason));
                    return;
                }
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
                let seq = batch.last().map(|w| w.seq).unwrap_or_default();
                batch.clear();
                // If the core loop is gone (shutting down), keep writing what it queued.
                let _ = core.send(CoreEvent::Persisted { seq });
            }
            // The core loop is gone: everything it asked for was written above.
            tracing::debug!(node, "storage thread stopped");
        })
}
