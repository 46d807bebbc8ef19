//! The apply task: runs the state machine over committed entries and answers clients; makes
//! the state machine's point-in-time copies for snapshots and restores it from one.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use raft_proto_core::{Entry, EntryKind, Index, LogId, SnapshotMeta};
use tokio::sync::{mpsc, oneshot};

use super::core_loop::CoreEvent;
use super::storage_task::StorageOp;
use crate::metrics::NodeMetrics;
use crate::protocol::ClientResponse;
use crate::state_machine::StateMachine;

/// Bytes of snapshot asked of the storage thread per read while restoring.
const RESTORE_READ_BYTES: usize = 1 << 20;

/// Where a client waits for its answer.
pub(crate) type Reply = oneshot::Sender<ClientResponse>;

/// What the core loop tells the apply task, in log order.
pub(crate) enum ApplyMsg {
    /// A proposal was placed at `id`; answer `reply` when that entry applies.
    Register {
        id: LogId,
        reply: Reply,
        received: Instant,
    },
    /// Committed entries, in index order.
    Entries(Vec<Entry>),
    /// The proposal at `id` may never apply here (this node stopped leading).
    Unknown { id: LogId },
    /// Take a point-in-time copy for a snapshot at `meta.last_index` (everything sent before
    /// is applied by then) and hand it to the storage thread to write out.
    TakeSnapshot { meta: SnapshotMeta },
    /// Replace the state with the latest stored snapshot, then report it applied.
    Restore { meta: SnapshotMeta },
}

pub(crate) async fn run<M: StateMachine>(
    mut sm: M,
    mut rx: mpsc::UnboundedReceiver<ApplyMsg>,
    core: mpsc::UnboundedSender<CoreEvent>,
    storage: mpsc::UnboundedSender<StorageOp>,
    metrics: NodeMetrics,
) -> M {
    let mut pending: BTreeMap<Index, (LogId, Reply, Instant)> = BTreeMap::new();
    while let Some(msg) = rx.recv().await {
        match msg {
            ApplyMsg::TakeSnapshot { meta } => {
                let started = Instant::now();
                let source = sm.snapshot();
                let pause = started.elapsed();
                // If the storage thread is gone, the node is stopping: nothing to report.
                let _ = storage.send(StorageOp::TakeSnapshot {
                    meta,
                    source,
                    pause,
                });
            }
            ApplyMsg::Restore { meta } => {
                let index = meta.last_index;
                let started = Instant::now();
                let reader = StorageReader::new(storage.clone());
                let (back, restored) = match tokio::task::spawn_blocking(move || {
                    let mut reader = reader;
                    let r = sm.restore(&mut reader);
                    (sm, r)
                })
                .await
                {
                    Ok(done) => done,
                    Err(e) => {
                        let reason =
                            format!("the state machine panicked restoring snapshot {index}: {e}");
                        let _ = core.send(CoreEvent::StateMachineFailed(reason));
                        return drain_failed(rx, pending).await;
                    }
                };
                sm = back;
                if let Err(e) = restored {
                    let reason = format!("restoring the state machine from snapshot {index}: {e}");
                    let _ = core.send(CoreEvent::StateMachineFailed(reason));
                    return drain_failed_with(sm, rx, pending).await;
                }
                tracing::info!(
                    index,
                    took_ms = started.elapsed().as_millis() as u64,
                    "state machine restored from a snapshot"
                );
                // Proposals below the snapshot never apply here one by one.
                while let Some(entry) = pending.first_entry() {
                    if *entry.key() > index {
                        break;
                    }
                    let (_, reply, _) = entry.remove();
                    let _ = reply.send(ClientResponse::Unknown {
                        reason: "the node caught up by a snapshot before the command applied here"
                            .into(),
                    });
                }
                metrics.applied_index.set(index as f64);
                let _ = core.send(CoreEvent::Applied { index });
            }
            ApplyMsg::Register {
                id,
                reply,
                received,
            } => {
                pending.insert(id.index, (id, reply, received));
            }
            ApplyMsg::Unknown { id } => {
                if pending.get(&id.index).is_some_and(|(p, _, _)| *p == id) {
                    if let Some((_, reply, _)) = pending.remove(&id.index) {
                        let _ = reply.send(ClientResponse::Unknown {
                            reason: "leadership changed before the command applied".into(),
                        });
                    }
                }
            }
            ApplyMsg::Entries(entries) => {
                let Some(last) = entries.last().map(|e| e.index) else {
                    continue;
                };
                let started = Instant::now();
                for entry in &entries {
                    let response = match entry.kind {
                        EntryKind::Normal => Some(sm.apply(entry.index, &entry.data)),
                        EntryKind::Noop | EntryKind::Config => {
                            sm.apply_noop(entry.index);
                            None
                        }
                    };
                    // Older registrations can only be for entries replaced by another leader.
                    while let Some(entry_at) = pending.first_entry() {
                        if *entry_at.key() > entry.index {
                            break;
                        }
                        let (id, reply, received) = entry_at.remove();
                        let answer = match (&response, id.index == entry.index) {
                            (Some(resp), true) if id.term == entry.term => {
                                metrics
                                    .proposal_seconds
                                    .record(received.elapsed().as_secs_f64());
                                ClientResponse::Applied {
                                    index: entry.index,
                                    response: resp.clone(),
                                }
                            }
                            _ => ClientResponse::Unknown {
                                reason: "the proposal was replaced by another leader's entry"
                                    .into(),
                            },
                        };
                        let _ = reply.send(answer);
                    }
                }
                metrics
                    .apply_seconds
                    .record(started.elapsed().as_secs_f64());
                metrics.applied_index.set(last as f64);
                // After the consensus loop stopped, keep applying what it sent (shutdown).
                let _ = core.send(CoreEvent::Applied { index: last });
            }
        }
    }
    answer_unknown(pending);
    sm
}

fn answer_unknown(pending: BTreeMap<Index, (LogId, Reply, Instant)>) {
    for (_, (_, reply, _)) in pending {
        let _ = reply.send(ClientResponse::Unknown {
            reason: "the node is shutting down".into(),
        });
    }
}

/// After the state machine failed: answer what waits and what comes, apply nothing more, and
/// hand the state machine back when the node stops.
async fn drain_failed_with<M: StateMachine>(
    sm: M,
    mut rx: mpsc::UnboundedReceiver<ApplyMsg>,
    mut pending: BTreeMap<Index, (LogId, Reply, Instant)>,
) -> M {
    while let Some(msg) = rx.recv().await {
        if let ApplyMsg::Register {
            id,
            reply,
            received,
        } = msg
        {
            pending.insert(id.index, (id, reply, received));
        }
    }
    answer_unknown(pending);
    sm
}

/// Like [`drain_failed_with`] when the state machine itself was lost (it panicked).
async fn drain_failed<M: StateMachine>(
    mut rx: mpsc::UnboundedReceiver<ApplyMsg>,
    pending: BTreeMap<Index, (LogId, Reply, Instant)>,
) -> M {
    answer_unknown(pending);
    while rx.recv().await.is_some() {}
    // The task's result is awaited only at shutdown, where a lost state machine is reported
    // as a task failure.
    std::panic::resume_unwind(Box::new("the state machine was lost in a panic"))
}

/// Reads the latest stored snapshot through the storage thread, for a restore on a blocking
/// thread.
struct StorageReader {
    storage: mpsc::UnboundedSender<StorageOp>,
    offset: u64,
    buf: Bytes,
    done: bool,
}

impl StorageReader {
    fn new(storage: mpsc::UnboundedSender<StorageOp>) -> Self {
        StorageReader {
            storage,
            offset: 0,
            buf: Bytes::new(),
            done: false,
        }
    }
}

impl std::io::Read for StorageReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.buf.is_empty() && !self.done {
            let (reply, answer) = std::sync::mpsc::sync_channel(1);
            let ask = StorageOp::RestoreRead {
                offset: self.offset,
                max_len: RESTORE_READ_BYTES,
                reply,
            };
            let gone = || std::io::Error::other("the storage thread stopped");
            self.storage.send(ask).map_err(|_| gone())?;
            let data = answer
                .recv()
                .map_err(|_| gone())?
                .map_err(std::io::Error::other)?;
            self.offset += data.len() as u64;
            self.done = data.is_empty();
            self.buf = data;
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        Ok(n)
    }
}
