//! Outbound links: one task per peer that dials it, keeps one QUIC stream open and writes
//! every queued message to it, many frames per write.
//!
//! The consensus loop never waits on a peer: it puts messages in a bounded queue and drops them
//! when the queue is full (Raft retransmits). While a peer is unreachable its messages are
//! dropped and the link redials with exponential backoff.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raft_proto_core::codec::Codec;
use raft_proto_core::{Message, NodeId};
use tokio::sync::mpsc;

use crate::frame::{abandon_frame, begin_frame, finish_frame};
use crate::metrics::NodeMetrics;
use crate::tls;

/// Messages queued per peer before new ones are dropped.
const QUEUE_MESSAGES: usize = 4096;
/// Bytes gathered into one stream write.
const WRITE_BATCH_BYTES: usize = 1 << 20;
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Byte counters of the transport.
#[derive(Debug, Default)]
pub(crate) struct TransportCounters {
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

struct Link {
    tx: mpsc::Sender<Message>,
    connected: Arc<AtomicBool>,
}

/// The consensus loop's handle on every outbound link.
pub(crate) struct PeerLinks {
    links: BTreeMap<NodeId, Link>,
    counters: Arc<TransportCounters>,
}

impl PeerLinks {
    /// Starts one link task per peer (every entry of `peers` except `me`).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        endpoint: &quinn::Endpoint,
        config: quinn::ClientConfig,
        me: NodeId,
        peers: &BTreeMap<NodeId, SocketAddr>,
        codec: Codec,
        metrics: &NodeMetrics,
        counters: Arc<TransportCounters>,
    ) -> PeerLinks {
        let mut links = BTreeMap::new();
        for (&peer, &addr) in peers.iter().filter(|(id, _)| **id != me) {
            let (tx, rx) = mpsc::channel(QUEUE_MESSAGES);
            let connected = Arc::new(AtomicBool::new(false));
            let task = LinkTask {
                endpoint: endpoint.clone(),
                config: config.clone(),
                me,
                peer,
                addr,
                codec,
                rx,
                connected: connected.clone(),
                counters: counters.clone(),
                metrics: metrics.clone(),
            };
            tokio::spawn(task.run());
            links.insert(peer, Link { tx, connected });
        }
        PeerLinks { links, counters }
    }

    /// Queues `msg` for `to`; drops it if the queue is full or `to` is unknown.
    pub fn send(&self, to: NodeId, msg: Message, metrics: &NodeMetrics) {
        match self.links.get(&to) {
            Some(link) => {
                if link.tx.try_send(msg).is_err() {
                    metrics.messages_dropped.increment(1);
                }
            }
            None => metrics.messages_dropped.increment(1),
        }
    }

    /// Whether the link to `peer` currently has an open stream.
    pub fn connected(&self, peer: NodeId) -> bool {
        self.links
            .get(&peer)
            .is_some_and(|l| l.connected.load(Ordering::Relaxed))
    }

    pub fn bytes_sent(&self) -> u64 {
        self.counters.sent.load(Ordering::Relaxed)
    }

    pub fn bytes_received(&self) -> u64 {
        self.counters.received.load(Ordering::Relaxed)
    }
}

struct LinkTask {
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    me: NodeId,
    peer: NodeId,
    addr: SocketAddr,
    codec: Codec,
    rx: mpsc::Receiver<Message>,
    connected: Arc<AtomicBool>,
    counters: Arc<TransportCounters>,
    metrics: NodeMetrics,
}

impl LinkTask {
    async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
        loop {
            let (conn, mut stream) = match self.dial().await {
                Ok(open) => open,
                Err(reason) => {
                    tracing::debug!(node = self.me, peer = self.peer, addr = %self.addr, %reason, "peer unreachable");
                    if !self.drop_queued_for(backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            backoff = BACKOFF_MIN;
            self.connected.store(true, Ordering::Relaxed);
            tracing::info!(node = self.me, peer = self.peer, addr = %self.addr, "connected to peer");
            loop {
                let Some(first) = self.rx.recv().await else {
                    // The node is shutting down.
                    let _ = stream.finish();
                    conn.close(super::CLOSE_SHUTDOWN.into(), b"shutdown");
                    return;
                };
                buf.clear();
                self.encode(&first, &mut buf);
                while buf.len() < WRITE_BATCH_BYTES {
                    match self.rx.try_recv() {
                        Ok(msg) => self.encode(&msg, &mut buf),
                        Err(_) => break,
                    }
                }
                if let Err(e) = stream.write_all(&buf).await {
                    tracing::info!(node = self.me, peer = self.peer, error = %e, "peer stream lost");
                    break;
                }
                self.counters
                    .sent
                    .fetch_add(buf.len() as u64, Ordering::Relaxed);
                self.metrics.bytes_sent.increment(buf.len() as u64);
            }
            self.connected.store(false, Ordering::Relaxed);
        }
    }

    fn encode(&self, msg: &Message, buf: &mut Vec<u8>) {
        let at = begin_frame(buf);
        match self.codec.encode_into(self.me, self.peer, msg, buf) {
            Ok(()) => finish_frame(buf, at),
            Err(e) => {
                abandon_frame(buf, at);
                tracing::warn!(node = self.me, peer = self.peer, error = %e, "message not sent");
                self.metrics.messages_dropped.increment(1);
            }
        }
    }

    async fn dial(&self) -> Result<(quinn::Connection, quinn::SendStream), String> {
        let name = tls::node_server_name(self.peer);
        let connecting = self
            .endpoint
            .connect_with(self.config.clone(), self.addr, &name)
            .map_err(|e| e.to_string())?;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| "connection timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let stream = conn.open_uni().await.map_err(|e| e.to_string())?;
        Ok((conn, stream))
    }

    /// Waits `delay`, dropping whatever is queued meanwhile; false once the node shuts down.
    async fn drop_queued_for(&mut self, delay: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(_) => self.metrics.messages_dropped.increment(1),
                    None => return false,
                },
                _ = tokio::time::sleep_until(deadline) => return true,
            }
        }
    }
}
