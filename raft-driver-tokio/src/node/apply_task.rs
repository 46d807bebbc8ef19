//! The apply task: runs the state machine over committed entries and answers clients.

use std::collections::BTreeMap;
use std::time::Instant;

use raft_proto_core::{Entry, EntryKind, Index, LogId};
use tokio::sync::{mpsc, oneshot};

use super::core_loop::CoreEvent;
use crate::metrics::NodeMetrics;
use crate::protocol::ClientResponse;
use crate::state_machine::StateMachine;

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
}

pub(crate) async fn run<M: StateMachine>(
    mut sm: M,
    mut rx: mpsc::UnboundedReceiver<ApplyMsg>,
    core: mpsc::UnboundedSender<CoreEvent>,
    metrics: NodeMetrics,
) -> M {
    let mut pending: BTreeMap<Index, (LogId, Reply, Instant)> = BTreeMap::new();
    while let Some(msg) = rx.recv().await {
        match msg {
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
                        EntryKind::Noop => {
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
    for (_, (_, reply, _)) in pending {
        let _ = reply.send(ClientResponse::Unknown {
            reason: "the node is shutting down".into(),
        });
    }
    sm
}
