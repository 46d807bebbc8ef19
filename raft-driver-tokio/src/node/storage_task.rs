//! The storage thread: group-commits every pending write in one backend call, and serves the
//! core's other storage requests in order with the writes.
//!
//! The backend blocks (it syncs), so it runs on a dedicated OS thread. Each round takes every
//! write that queued up while the previous sync ran, hands them to [`Storage::write`] as one
//! batch (one transaction, one sync), then reports the last sequence number to the core loop.
//! Another request queued among the writes ends the batch and is carried out after it.
//!
//! A snapshot of this node's state machine is written out here too, one chunk between two
//! requests (and while idle), so that a large snapshot never holds up the log's writes for
//! longer than one chunk takes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft_proto_core::storage::Storage;
use raft_proto_core::{Index, LogId, NodeId, PersistWrite, SnapshotMeta};
use tokio::sync::mpsc;

use super::core_loop::CoreEvent;
use crate::metrics::NodeMetrics;
use crate::state_machine::SnapshotSource;

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
    /// Snapshots received from a leader and installed.
    pub snapshots_installed: AtomicU64,
}

/// Most writes taken into one batch.
const MAX_BATCH_WRITES: usize = 4096;
/// Bytes of this node's snapshot written per step.
const SNAPSHOT_STEP_BYTES: usize = 1 << 20;

/// What the core loop (and the apply task) ask of the storage thread, carried out in order.
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
    /// Drop entries through `through` (`Output::Compact`).
    Compact { through: Index },
    /// Read a chunk of the latest snapshot for follower `to` (`Output::ReadSnapshot`).
    ReadSnapshot {
        to: NodeId,
        offset: u64,
        max_len: u64,
    },
    /// Store a chunk of a snapshot received from the leader (`Output::SnapshotChunk`).
    ReceiveChunk {
        meta: SnapshotMeta,
        offset: u64,
        data: Bytes,
    },
    /// Make the received snapshot the latest, durably (`Output::InstallSnapshot`).
    Install { seq: u64, meta: SnapshotMeta },
    /// Write out a snapshot of this node's state machine (`Output::TakeSnapshot`, by way of
    /// the apply task, which made `source` at exactly `meta.last_index`).
    TakeSnapshot {
        meta: SnapshotMeta,
        source: Box<dyn SnapshotSource>,
        /// How long making the point-in-time copy held up applying.
        pause: Duration,
    },
    /// A piece of the latest snapshot, for restoring the state machine from it.
    RestoreRead {
        offset: u64,
        max_len: usize,
        reply: std::sync::mpsc::SyncSender<Result<Bytes, String>>,
    },
}

/// This node's snapshot being written out.
struct Writing {
    meta: SnapshotMeta,
    source: Box<dyn SnapshotSource>,
    started: Instant,
    pause: Duration,
    bytes: u64,
}

struct StorageThread<S> {
    node: u64,
    storage: S,
    core: mpsc::UnboundedSender<CoreEvent>,
    stats: Arc<StorageStats>,
    metrics: NodeMetrics,
    writing: Option<Writing>,
    chunk: Vec<u8>,
}

pub(crate) fn spawn<S: Storage>(
    node: u64,
    storage: S,
    mut rx: mpsc::UnboundedReceiver<StorageOp>,
    core: mpsc::UnboundedSender<CoreEvent>,
    stats: Arc<StorageStats>,
    metrics: NodeMetrics,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("raft-storage-{node}"))
        .spawn(move || {
            let mut t = StorageThread {
                node,
                storage,
                core,
                stats,
                metrics,
                writing: None,
                chunk: Vec::new(),
            };
            if let Err(reason) = t.run(&mut rx) {
                tracing::error!(node, error = %reason, "storage failed; stopping the node");
                let _ = t.core.send(CoreEvent::StorageFailed(reason));
                return;
            }
            // The core loop is gone: everything it asked for was written above.
            tracing::debug!(node, "storage thread stopped");
        })
}

impl<S: Storage> StorageThread<S> {
    fn run(&mut self, rx: &mut mpsc::UnboundedReceiver<StorageOp>) -> Result<(), String> {
        let mut batch: Vec<PersistWrite> = Vec::new();
        let mut next: Option<StorageOp> = None;
        loop {
            let op = match next.take() {
                Some(op) => op,
                None if self.writing.is_some() => match rx.try_recv() {
                    Ok(op) => op,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        self.snapshot_step()?;
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => return Ok(()),
                },
                None => match rx.blocking_recv() {
                    Some(op) => op,
                    None => return Ok(()),
                },
            };
            match op {
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
                    self.write_batch(&batch)?;
                    let seq = batch.last().map(|w| w.seq).unwrap_or_default();
                    batch.clear();
                    // If the core loop is gone (shutting down), keep writing what it queued.
                    let _ = self.core.send(CoreEvent::Persisted { seq });
                }
                other => self.serve(other)?,
            }
            if self.writing.is_some() {
                self.snapshot_step()?;
            }
        }
    }

    fn serve(&mut self, op: StorageOp) -> Result<(), String> {
        match op {
            StorageOp::Write(w) => {
                let seq = w.seq;
                self.write_batch(std::slice::from_ref(&w))?;
                let _ = self.core.send(CoreEvent::Persisted { seq });
            }
            StorageOp::Fetch {
                to,
                lo,
                hi,
                max_bytes,
            } => {
                let entries = guarded(|| self.storage.entries_within(lo, hi, max_bytes))?;
                let _ = self.core.send(CoreEvent::Fetched { to, lo, entries });
            }
            StorageOp::Compact { through } => {
                guarded(|| self.storage.compact(through))?;
            }
            StorageOp::ReadSnapshot {
                to,
                offset,
                max_len,
            } => {
                let max = usize::try_from(max_len).unwrap_or(usize::MAX);
                let (snapshot, data, total) = guarded(|| {
                    let meta = self.storage.snapshot_meta()?;
                    let data = self.storage.read_snapshot_chunk(offset, max)?;
                    let total = self.storage.snapshot_len()?;
                    Ok::<_, S::Error>((
                        meta.map_or_else(LogId::default, |m| m.last_id()),
                        data,
                        total,
                    ))
                })?;
                let _ = self.core.send(CoreEvent::SnapshotRead {
                    to,
                    snapshot,
                    offset,
                    data,
                    total,
                });
            }
            StorageOp::ReceiveChunk { meta, offset, data } => {
                guarded(|| {
                    if offset == 0 {
                        self.storage.begin_snapshot(meta)?;
                    }
                    self.storage.write_snapshot_chunk(&data)
                })?;
            }
            StorageOp::Install { seq, meta } => {
                let started = Instant::now();
                guarded(|| self.storage.finish_snapshot())?;
                self.stats
                    .snapshots_installed
                    .fetch_add(1, Ordering::Relaxed);
                self.metrics.snapshots_installed.increment(1);
                let index = meta.last_index;
                let bytes = guarded(|| self.storage.snapshot_len())?;
                tracing::info!(
                    node = self.node,
                    index,
                    bytes,
                    took_ms = started.elapsed().as_millis() as u64,
                    "snapshot from the leader installed"
                );
                let _ = self
                    .core
                    .send(CoreEvent::SnapshotInstalled { index, bytes });
                let _ = self.core.send(CoreEvent::Persisted { seq });
            }
            StorageOp::TakeSnapshot {
                meta,
                source,
                pause,
            } => {
                guarded(|| self.storage.begin_snapshot(meta.clone()))?;
                self.writing = Some(Writing {
                    meta,
                    source,
                    started: Instant::now(),
                    pause,
                    bytes: 0,
                });
            }
            StorageOp::RestoreRead {
                offset,
                max_len,
                reply,
            } => {
                let read = guarded(|| self.storage.read_snapshot_chunk(offset, max_len));
                let failed = read.as_ref().err().cloned();
                let _ = reply.send(read);
                if let Some(reason) = failed {
                    return Err(reason);
                }
            }
        }
        Ok(())
    }

    /// Writes the next chunk of this node's snapshot; finishes it after the last.
    fn snapshot_step(&mut self) -> Result<(), String> {
        let Some(w) = self.writing.as_mut() else {
            return Ok(());
        };
        self.chunk.clear();
        let more = match w.source.write_chunk(&mut self.chunk, SNAPSHOT_STEP_BYTES) {
            Ok(more) => more,
            Err(e) => {
                // The state machine could not write its snapshot: nothing is lost, the previous
                // snapshot stays the latest (the unfinished one is dropped at the next begin).
                let index = w.meta.last_index;
                tracing::warn!(node = self.node, index, error = %e, "snapshot not taken");
                self.writing = None;
                let _ = self.core.send(CoreEvent::SnapshotFailed { index });
                return Ok(());
            }
        };
        if !self.chunk.is_empty() {
            w.bytes += self.chunk.len() as u64;
            let chunk = &self.chunk;
            let storage = &mut self.storage;
            guarded(|| storage.write_snapshot_chunk(chunk))?;
        }
        if more {
            return Ok(());
        }
        let Some(w) = self.writing.take() else {
            return Ok(());
        };
        guarded(|| self.storage.finish_snapshot())?;
        let took = w.started.elapsed();
        let index = w.meta.last_index;
        self.metrics.snapshots_taken.increment(1);
        self.metrics.snapshot_seconds.record(took.as_secs_f64());
        self.metrics
            .snapshot_pause_seconds
            .record(w.pause.as_secs_f64());
        tracing::info!(
            node = self.node,
            index,
            bytes = w.bytes,
            took_ms = took.as_millis() as u64,
            pause_us = w.pause.as_micros() as u64,
            "snapshot taken"
        );
        let _ = self.core.send(CoreEvent::SnapshotTaken {
            index,
            bytes: w.bytes,
        });
        Ok(())
    }

    /// One group commit: the batch in one backend call, with its figures recorded.
    fn write_batch(&mut self, batch: &[PersistWrite]) -> Result<(), String> {
        let entries: usize = batch.iter().map(|w| w.entries.len()).sum();
        let started = Instant::now();
        guarded(|| self.storage.write(batch))?;
        let took = started.elapsed();
        let stats = &self.stats;
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .writes
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        stats.entries.fetch_add(entries as u64, Ordering::Relaxed);
        stats
            .micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.metrics.fsync_seconds.record(took.as_secs_f64());
        self.metrics.fsync_batch_entries.record(entries as f64);
        Ok(())
    }
}

/// Runs a backend call, turning its error or panic into the reason the node stops.
fn guarded<T, E: std::fmt::Display>(f: impl FnOnce() -> Result<T, E>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the storage backend panicked".to_string()),
    }
}
