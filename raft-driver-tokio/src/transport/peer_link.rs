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

use bytes::Bytes;
use raft_proto_core::codec::{Codec, EncodeError};
use raft_proto_core::{Message, NodeId};
use tokio::sync::mpsc;

use crate::frame::{abandon_frame, begin_frame, finish_frame, PREFIX_BYTES};
use crate::metrics::NodeMetrics;
use crate::tls;

/// Messages queued per peer before new ones are dropped.
const QUEUE_MESSAGES: usize = 4096;
/// Messages whose entry payloads reach this size are sent without copying the payloads.
const ZERO_COPY_PAYLOAD_BYTES: usize = 16 << 10;
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
        // Frames of small messages are copied into `buf`; a message with large payloads goes
        // out as its header followed by the payloads themselves (`chunks`, no copy).
        let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
        let mut chunks: Vec<Bytes> = Vec::new();
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
                chunks.clear();
                let mut size = self.encode(&first, &mut buf, &mut chunks);
                while size < WRITE_BATCH_BYTES {
                    match self.rx.try_recv() {
                        Ok(msg) => size += self.encode(&msg, &mut buf, &mut chunks),
                        Err(_) => break,
                    }
                }
                let written = if chunks.is_empty() {
                    stream.write_all(&buf).await
                } else {
                    if !buf.is_empty() {
                        chunks.push(Bytes::from(std::mem::take(&mut buf)));
                    }
                    stream.write_all_chunks(&mut chunks).await
                };
                if let Err(e) = written {
                    tracing::info!(node = self.me, peer = self.peer, error = %e, "peer stream lost");
                    break;
                }
                self.counters.sent.fetch_add(size as u64, Ordering::Relaxed);
                self.metrics.bytes_sent.increment(size as u64);
            }
            self.connected.store(false, Ordering::Relaxed);
        }
    }

    /// Appends `msg` as one frame (see [`append_frame`]); a message that cannot be encoded
    /// is dropped and counted.
    fn encode(&self, msg: &Message, buf: &mut Vec<u8>, chunks: &mut Vec<Bytes>) -> usize {
        append_frame(&self.codec, self.me, self.peer, msg, buf, chunks).unwrap_or_else(|e| {
            tracing::warn!(node = self.me, peer = self.peer, error = %e, "message not sent");
            self.metrics.messages_dropped.increment(1);
            0
        })
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

/// Appends `msg` as one length-prefixed frame to an outgoing batch: the bytes to send are the
/// `chunks` followed by `buf`. Small frames are copied into `buf`; a frame whose entry payloads
/// reach [`ZERO_COPY_PAYLOAD_BYTES`] goes into `chunks` as its header followed by the payloads
/// themselves (reference-counted, not copied), after whatever `buf` held. Returns the frame's
/// size on the wire; on error nothing is appended.
fn append_frame(
    codec: &Codec,
    from: NodeId,
    to: NodeId,
    msg: &Message,
    buf: &mut Vec<u8>,
    chunks: &mut Vec<Bytes>,
) -> Result<usize, EncodeError> {
    let payload: usize = match msg {
        Message::AppendEntries(m) => m.entries.iter().map(|e| e.data.len()).sum(),
        _ => 0,
    };
    if payload < ZERO_COPY_PAYLOAD_BYTES {
        let at = begin_frame(buf);
        if let Err(e) = codec.encode_into(from, to, msg, buf) {
            abandon_frame(buf, at);
            return Err(e);
        }
        finish_frame(buf, at);
        return Ok(buf.len() - at);
    }
    let first = chunks.len();
    codec.encode_chunks(from, to, msg, chunks)?;
    let len: usize = chunks[first..].iter().map(Bytes::len).sum();
    // The length prefix ends the copied part; the frame's own chunks follow it.
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    chunks.insert(first, Bytes::from(std::mem::take(buf)));
    Ok(PREFIX_BYTES + len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameReader;
    use raft_proto_core::message::{AppendEntries, Heartbeat};
    use raft_proto_core::{Entry, EntryKind, LogId};

    fn append(payloads: &[usize]) -> Message {
        let entries = payloads
            .iter()
            .enumerate()
            .map(|(i, &n)| Entry {
                term: 1,
                index: i as u64 + 1,
                kind: EntryKind::Normal,
                data: Bytes::from(vec![i as u8; n]),
            })
            .collect();
        Message::AppendEntries(AppendEntries {
            term: 1,
            prev: LogId::default(),
            entries,
            commit: 0,
        })
    }

    #[test]
    fn a_batch_of_small_and_large_frames_decodes_in_order() {
        let codec = Codec::new(9);
        let msgs = vec![
            Message::Heartbeat(Heartbeat { term: 1, commit: 0 }),
            append(&[100, 200]),
            append(&[20 << 10, 5]),
            append(&[1]),
            append(&[40 << 10]),
            append(&[64 << 10]),
            Message::Heartbeat(Heartbeat { term: 2, commit: 3 }),
        ];
        let (mut buf, mut chunks) = (Vec::new(), Vec::new());
        let mut total = 0;
        for m in &msgs {
            total += append_frame(&codec, 1, 2, m, &mut buf, &mut chunks).unwrap();
        }
        // Per large frame: the copied bytes before it (ending with its prefix), its header,
        // and each non-empty payload: 4 + 3 + 3.
        assert_eq!(chunks.len(), 10);
        let large = msgs[2].clone();
        let Message::AppendEntries(m) = &large else {
            unreachable!()
        };
        assert!(
            chunks
                .iter()
                .any(|c| c.as_ptr() == m.entries[0].data.as_ptr()),
            "payload not copied"
        );
        let mut wire: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        wire.extend_from_slice(&buf);
        assert_eq!(wire.len(), total);
        let mut reader = FrameReader::new(1 << 20);
        reader.extend(&wire);
        for m in &msgs {
            let frame = reader.try_frame().unwrap().expect("a whole frame");
            assert_eq!(&codec.decode(frame).unwrap().msg, m);
        }
        assert!(reader.try_frame().unwrap().is_none());
    }
}
