//! Outbound links: one task per peer that dials it, keeps two QUIC streams open on one
//! connection and writes every queued message to them, many frames per write.
//!
//! Snapshot chunks (`InstallSnapshot`) have a stream and a queue of their own, at a lower
//! priority, so that heartbeats and appends are never stuck behind a megabyte of snapshot: the
//! two streams are written concurrently and QUIC sends the Raft stream's data first.
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
/// Snapshot chunks queued per peer before new ones are dropped (each up to a megabyte; the
/// leader also bounds the snapshot bytes in flight).
const QUEUE_SNAPSHOT_CHUNKS: usize = 16;
/// Stream priorities: the Raft stream's data goes out before the snapshot stream's.
const PRIORITY_RAFT: i32 = 1;
const PRIORITY_SNAPSHOT: i32 = 0;
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
    addr: SocketAddr,
    tx: mpsc::Sender<Message>,
    snapshots: mpsc::Sender<Message>,
    connected: Arc<AtomicBool>,
}

/// The consensus loop's handle on every outbound link. The set of links follows the
/// configuration ([`PeerLinks::set_peers`]): a link for each peer to talk to, redialled at its
/// new address when the address changes, closed when the peer leaves the set.
pub(crate) struct PeerLinks {
    me: NodeId,
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    codec: Codec,
    metrics: NodeMetrics,
    links: BTreeMap<NodeId, Link>,
    counters: Arc<TransportCounters>,
}

impl PeerLinks {
    /// Links for every entry of `peers` except `me`.
    pub fn start(
        endpoint: &quinn::Endpoint,
        config: quinn::ClientConfig,
        me: NodeId,
        peers: &BTreeMap<NodeId, SocketAddr>,
        codec: Codec,
        metrics: &NodeMetrics,
        counters: Arc<TransportCounters>,
    ) -> PeerLinks {
        let mut links = PeerLinks {
            me,
            endpoint: endpoint.clone(),
            config,
            codec,
            metrics: metrics.clone(),
            links: BTreeMap::new(),
            counters,
        };
        links.set_peers(peers);
        links
    }

    /// Makes the links match `peers`: starts the missing ones, redials those whose address
    /// changed, and closes those of nodes no longer listed (their tasks end once their queues
    /// close).
    pub fn set_peers(&mut self, peers: &BTreeMap<NodeId, SocketAddr>) {
        let me = self.me;
        self.links
            .retain(|id, link| peers.get(id).is_some_and(|a| *a == link.addr));
        for (&peer, &addr) in peers.iter().filter(|(id, _)| **id != me) {
            if self.links.contains_key(&peer) {
                continue;
            }
            tracing::info!(node = me, peer, %addr, "opening a link to peer");
            let link = self.spawn(peer, addr);
            self.links.insert(peer, link);
        }
    }

    /// The peers linked to, with their addresses.
    pub fn peers(&self) -> impl Iterator<Item = (NodeId, SocketAddr)> + '_ {
        self.links.iter().map(|(id, l)| (*id, l.addr))
    }

    fn spawn(&self, peer: NodeId, addr: SocketAddr) -> Link {
        let (tx, rx) = mpsc::channel(QUEUE_MESSAGES);
        let (snapshots, snapshot_rx) = mpsc::channel(QUEUE_SNAPSHOT_CHUNKS);
        let connected = Arc::new(AtomicBool::new(false));
        let task = LinkTask {
            endpoint: self.endpoint.clone(),
            config: self.config.clone(),
            addr,
            out: Outbox {
                me: self.me,
                peer,
                codec: self.codec,
                counters: self.counters.clone(),
                metrics: self.metrics.clone(),
            },
            rx,
            snapshot_rx,
            connected: connected.clone(),
        };
        tokio::spawn(task.run());
        Link {
            addr,
            tx,
            snapshots,
            connected,
        }
    }

    /// Queues `msg` for `to`; drops it if the queue is full or `to` is unknown.
    pub fn send(&self, to: NodeId, msg: Message, metrics: &NodeMetrics) {
        match self.links.get(&to) {
            Some(link) => {
                let queue = match msg {
                    Message::InstallSnapshot(_) => &link.snapshots,
                    _ => &link.tx,
                };
                if queue.try_send(msg).is_err() {
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

/// What a link needs to encode and count what it sends.
struct Outbox {
    me: NodeId,
    peer: NodeId,
    codec: Codec,
    counters: Arc<TransportCounters>,
    metrics: NodeMetrics,
}

struct LinkTask {
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    addr: SocketAddr,
    out: Outbox,
    rx: mpsc::Receiver<Message>,
    snapshot_rx: mpsc::Receiver<Message>,
    connected: Arc<AtomicBool>,
}

/// Why a stream's writer stopped.
enum PumpEnd {
    /// The node is shutting down (its queue closed).
    Shutdown,
    /// The stream failed: redial.
    Lost(String),
}

impl LinkTask {
    async fn run(mut self) {
        let (me, peer) = (self.out.me, self.out.peer);
        let mut backoff = BACKOFF_MIN;
        let mut raft = Batch::default();
        let mut snap = Batch::default();
        loop {
            let (conn, mut stream, mut snapshot_stream) = match self.dial().await {
                Ok(open) => open,
                Err(reason) => {
                    tracing::debug!(node = me, peer, addr = %self.addr, %reason, "peer unreachable");
                    if !self.drop_queued_for(backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            backoff = BACKOFF_MIN;
            self.connected.store(true, Ordering::Relaxed);
            tracing::info!(node = me, peer, addr = %self.addr, "connected to peer");
            let end = tokio::select! {
                end = pump(&mut self.rx, &mut stream, &self.out, &mut raft) => end,
                end = pump(&mut self.snapshot_rx, &mut snapshot_stream, &self.out, &mut snap) => end,
            };
            self.connected.store(false, Ordering::Relaxed);
            match end {
                PumpEnd::Shutdown => {
                    let _ = stream.finish();
                    let _ = snapshot_stream.finish();
                    conn.close(super::CLOSE_SHUTDOWN.into(), b"shutdown");
                    return;
                }
                PumpEnd::Lost(e) => {
                    tracing::info!(node = me, peer, error = %e, "peer stream lost");
                }
            }
        }
    }

    async fn dial(
        &self,
    ) -> Result<(quinn::Connection, quinn::SendStream, quinn::SendStream), String> {
        let name = tls::node_server_name(self.out.peer);
        let connecting = self
            .endpoint
            .connect_with(self.config.clone(), self.addr, &name)
            .map_err(|e| e.to_string())?;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| "connection timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let stream = conn.open_uni().await.map_err(|e| e.to_string())?;
        let snapshots = conn.open_uni().await.map_err(|e| e.to_string())?;
        stream
            .set_priority(PRIORITY_RAFT)
            .map_err(|e| e.to_string())?;
        snapshots
            .set_priority(PRIORITY_SNAPSHOT)
            .map_err(|e| e.to_string())?;
        Ok((conn, stream, snapshots))
    }

    /// Waits `delay`, dropping whatever is queued meanwhile; false once the node shuts down.
    async fn drop_queued_for(&mut self, delay: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(_) => self.out.metrics.messages_dropped.increment(1),
                    None => return false,
                },
                msg = self.snapshot_rx.recv() => match msg {
                    Some(_) => self.out.metrics.messages_dropped.increment(1),
                    None => return false,
                },
                _ = tokio::time::sleep_until(deadline) => return true,
            }
        }
    }
}

/// The reusable buffers of one stream's writes: frames of small messages are copied into
/// `buf`; a message with large payloads goes out as its header followed by the payloads
/// themselves (`chunks`, no copy).
#[derive(Default)]
struct Batch {
    buf: Vec<u8>,
    chunks: Vec<Bytes>,
}

/// Writes every message queued in `rx` to `stream`, many frames per write, until the queue
/// closes or the stream fails.
async fn pump(
    rx: &mut mpsc::Receiver<Message>,
    stream: &mut quinn::SendStream,
    out: &Outbox,
    b: &mut Batch,
) -> PumpEnd {
    loop {
        let Some(first) = rx.recv().await else {
            return PumpEnd::Shutdown;
        };
        b.buf.clear();
        b.chunks.clear();
        let mut size = out.encode(&first, &mut b.buf, &mut b.chunks);
        while size < WRITE_BATCH_BYTES {
            match rx.try_recv() {
                Ok(msg) => size += out.encode(&msg, &mut b.buf, &mut b.chunks),
                Err(_) => break,
            }
        }
        let written = if b.chunks.is_empty() {
            stream.write_all(&b.buf).await
        } else {
            if !b.buf.is_empty() {
                b.chunks.push(Bytes::from(std::mem::take(&mut b.buf)));
            }
            stream.write_all_chunks(&mut b.chunks).await
        };
        if let Err(e) = written {
            return PumpEnd::Lost(e.to_string());
        }
        out.counters.sent.fetch_add(size as u64, Ordering::Relaxed);
        out.metrics.bytes_sent.increment(size as u64);
    }
}

impl Outbox {
    /// Appends `msg` as one frame (see [`append_frame`]); a message that cannot be encoded
    /// is dropped and counted.
    fn encode(&self, msg: &Message, buf: &mut Vec<u8>, chunks: &mut Vec<Bytes>) -> usize {
        append_frame(&self.codec, self.me, self.peer, msg, buf, chunks).unwrap_or_else(|e| {
            tracing::warn!(node = self.me, peer = self.peer, error = %e, "message not sent");
            self.metrics.messages_dropped.increment(1);
            0
        })
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
        Message::InstallSnapshot(m) => m.data.len(),
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
