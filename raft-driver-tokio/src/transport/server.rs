//! The accepting side: peers' Raft streams and clients' request streams.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use raft_proto_core::codec::Codec;
use raft_proto_core::NodeId;
use tokio::sync::{mpsc, oneshot};

use super::{TransportCounters, CLOSE_PROTOCOL_ERROR};
use crate::frame::{send_only_frame, FrameReader, PREFIX_BYTES};
use crate::metrics::NodeMetrics;
use crate::node::core_loop::CoreEvent;
use crate::protocol::{
    decode_request, encode_response, ClientRequest, ClientResponse, MAX_CLIENT_FRAME,
};
use crate::tls;

/// How long a client may take to send its request once it opened the stream.
const REQUEST_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the accepting side needs to know.
pub(crate) struct ServerContext {
    pub id: NodeId,
    pub cluster_id: u64,
    pub codec: Codec,
    pub core: mpsc::UnboundedSender<CoreEvent>,
    pub metrics: NodeMetrics,
    pub counters: Arc<TransportCounters>,
    /// The client certificates allowed to change the membership and move leadership (`None`:
    /// every client of the cluster CA).
    pub admins: Option<Vec<String>>,
}

/// Accepts connections until the endpoint closes.
pub(crate) async fn serve(endpoint: quinn::Endpoint, ctx: Arc<ServerContext>) {
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(handle_incoming(incoming, ctx.clone()));
    }
}

async fn handle_incoming(incoming: quinn::Incoming, ctx: Arc<ServerContext>) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            // Includes certificates not signed by the cluster CA.
            tracing::info!(node = ctx.id, %remote, error = %e, "connection refused at the handshake");
            return;
        }
    };
    let alpn = conn
        .handshake_data()
        .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|h| h.protocol);
    match alpn.as_deref() {
        Some(p) if p == tls::PEER_ALPN => {
            if tls::peer_node_id(&conn).is_some() {
                serve_peer(conn, ctx).await
            } else {
                refuse(&conn, &ctx, "peer connection without a node certificate")
            }
        }
        Some(p) if p == tls::CLIENT_ALPN => serve_client(conn, ctx).await,
        _ => refuse(&conn, &ctx, "no supported application protocol"),
    }
}

fn refuse(conn: &quinn::Connection, ctx: &ServerContext, reason: &str) {
    tracing::warn!(node = ctx.id, remote = %conn.remote_address(), reason, "closing connection");
    ctx.metrics.frames_refused.increment(1);
    conn.close(CLOSE_PROTOCOL_ERROR.into(), reason.as_bytes());
}

async fn serve_peer(conn: quinn::Connection, ctx: Arc<ServerContext>) {
    while let Ok(recv) = conn.accept_uni().await {
        tokio::spawn(read_peer_stream(conn.clone(), recv, ctx.clone()));
    }
}

async fn read_peer_stream(
    conn: quinn::Connection,
    mut recv: quinn::RecvStream,
    ctx: Arc<ServerContext>,
) {
    let mut reader = FrameReader::new(ctx.codec.max_frame_bytes());
    let mut verified: Option<NodeId> = None;
    loop {
        let frame = match reader.next(&mut recv).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(crate::frame::FrameError::Read(e)) => {
                tracing::debug!(node = ctx.id, error = %e, "peer stream ended");
                return;
            }
            Err(e) => return refuse(&conn, &ctx, &e.to_string()),
        };
        let size = (frame.len() + PREFIX_BYTES) as u64;
        ctx.counters.received.fetch_add(size, Ordering::Relaxed);
        ctx.metrics.bytes_received.increment(size);
        let env = match ctx.codec.decode(frame) {
            Ok(env) => env,
            Err(e) => return refuse(&conn, &ctx, &format!("undecodable frame: {e}")),
        };
        if env.to != ctx.id {
            return refuse(&conn, &ctx, &format!("frame addressed to node {}", env.to));
        }
        if verified != Some(env.from) {
            // Any node of the cluster may talk: one being added is not in the configuration
            // yet, and the core decides what a message from a non-member is worth. Only its
            // identity must be right.
            if env.from == 0 || env.from == ctx.id {
                return refuse(
                    &conn,
                    &ctx,
                    &format!("frame from node {}, which cannot be a peer", env.from),
                );
            }
            if !tls::peer_is_node(&conn, env.from) {
                return refuse(
                    &conn,
                    &ctx,
                    &format!("certificate does not belong to node {}", env.from),
                );
            }
            verified = Some(env.from);
            // The peer dials from the endpoint it listens on: where it can be answered if
            // the configuration does not say.
            let seen = CoreEvent::PeerSeen {
                id: env.from,
                addr: conn.remote_address(),
            };
            if ctx.core.send(seen).is_err() {
                return;
            }
        }
        let event = CoreEvent::Peer {
            from: env.from,
            msg: env.msg,
        };
        if ctx.core.send(event).is_err() {
            return;
        }
    }
}

async fn serve_client(conn: quinn::Connection, ctx: Arc<ServerContext>) {
    while let Ok((send, recv)) = conn.accept_bi().await {
        tokio::spawn(client_stream(conn.clone(), send, recv, ctx.clone()));
    }
}

async fn client_stream(
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    ctx: Arc<ServerContext>,
) {
    let mut reader = FrameReader::new(MAX_CLIENT_FRAME);
    let frame = match tokio::time::timeout(REQUEST_READ_TIMEOUT, reader.next(&mut recv)).await {
        Ok(Ok(Some(frame))) => frame,
        Ok(Ok(None)) => return,
        Ok(Err(crate::frame::FrameError::Read(_))) => return,
        Ok(Err(e)) => return refuse(&conn, &ctx, &e.to_string()),
        Err(_) => {
            let _ = recv.stop(CLOSE_PROTOCOL_ERROR.into());
            return;
        }
    };
    let request = match decode_request(ctx.cluster_id, frame) {
        Ok(request) => request,
        Err(e) => {
            let reason = format!("undecodable request: {e}");
            let answer = ClientResponse::Rejected {
                reason: reason.clone(),
            };
            let _ = answer_client(&ctx, &mut send, &answer).await;
            return refuse(&conn, &ctx, &reason);
        }
    };
    let admin = matches!(
        request,
        ClientRequest::ChangeMembership { .. } | ClientRequest::TransferLeader { .. }
    );
    if admin {
        if let Some(names) = &ctx.admins {
            if !tls::peer_is_client_named(&conn, names) {
                let answer = ClientResponse::Rejected {
                    reason: format!(
                        "this client's certificate may not change the membership or move                          leadership (allowed clients: {})",
                        names.join(", ")
                    ),
                };
                let _ = answer_client(&ctx, &mut send, &answer).await;
                return;
            }
        }
    }
    let answer = match request {
        ClientRequest::Propose { command } => {
            let (reply, answer) = oneshot::channel();
            let _ = ctx.core.send(CoreEvent::Propose { command, reply });
            answer.await.unwrap_or_else(|_| ClientResponse::Unknown {
                reason: "the node is shutting down".into(),
            })
        }
        ClientRequest::Snapshot => {
            let (reply, answer) = oneshot::channel();
            let _ = ctx.core.send(CoreEvent::TriggerSnapshot { reply });
            answer.await.unwrap_or_else(|_| ClientResponse::Rejected {
                reason: "the node is shutting down".into(),
            })
        }
        ClientRequest::ChangeMembership { steps } => {
            let (reply, answer) = oneshot::channel();
            let _ = ctx.core.send(CoreEvent::ChangeMembership { steps, reply });
            answer.await.unwrap_or_else(|_| ClientResponse::Unknown {
                reason: "the node is shutting down; the change may or may not be made".into(),
            })
        }
        ClientRequest::TransferLeader { to } => {
            let (reply, answer) = oneshot::channel();
            let _ = ctx.core.send(CoreEvent::TransferLeader { to, reply });
            answer.await.unwrap_or_else(|_| ClientResponse::Unknown {
                reason: "the node is shutting down during the transfer".into(),
            })
        }
        ClientRequest::Status => {
            let (reply, answer) = oneshot::channel();
            let _ = ctx.core.send(CoreEvent::Status { reply });
            match answer.await {
                Ok(status) => ClientResponse::Status(Box::new(status)),
                Err(_) => ClientResponse::Unknown {
                    reason: "the node is shutting down".into(),
                },
            }
        }
    };
    let _ = answer_client(&ctx, &mut send, &answer).await;
}

async fn answer_client(
    ctx: &ServerContext,
    send: &mut quinn::SendStream,
    answer: &ClientResponse,
) -> Result<(), quinn::WriteError> {
    send_only_frame(send, encode_response(ctx.cluster_id, answer)).await
}
