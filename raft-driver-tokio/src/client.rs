//! The client library: sends commands to a cluster over QUIC and follows redirects.
//!
//! A [`Client`] knows some node addresses. It sends each request to the leader it last heard
//! of (else to the next known node); a `NotLeader` answer naming the leader is followed at once,
//! connection failures and unknown outcomes move on to another node with a short backoff, until
//! the request's deadline. Connections are cached and shared by clones of the client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use raft_proto_core::{Index, NodeId, Term};
use tokio::time::Instant;

use crate::frame::{send_only_frame, FrameReader};
use crate::protocol::{
    decode_response, encode_request, ClientRequest, ClientResponse, MemberChange, MembershipReport,
    NodeStatus, ProtocolError, SnapshotDone, MAX_CLIENT_FRAME,
};
use crate::tls::{self, Identity, TlsError};

/// Where and how to reach a cluster.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The cluster's id (requests for another cluster are refused by its nodes).
    pub cluster_id: u64,
    /// Addresses of some or all nodes.
    pub nodes: Vec<SocketAddr>,
    /// The client's certificate, key and the cluster CA.
    pub identity: Identity,
    /// How long one request may take, retries and redirects included.
    pub timeout: Duration,
    /// How long to wait for one node's answer before trying another (a node that died
    /// without closing its connections is noticed this way). Retrying is safe for commands
    /// that carry a client sequence number.
    pub attempt_timeout: Duration,
}

impl ClientOptions {
    /// Options with a 10 s request deadline and a 1 s per-node attempt timeout.
    pub fn new(cluster_id: u64, nodes: Vec<SocketAddr>, identity: Identity) -> ClientOptions {
        ClientOptions {
            cluster_id,
            nodes,
            identity,
            timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(1),
        }
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No node address was given.
    #[error("no node address given")]
    NoNodes,
    /// TLS setup failed.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// The local QUIC endpoint could not be opened.
    #[error("cannot open a QUIC endpoint: {0}")]
    Endpoint(std::io::Error),
    /// A node could not be reached or the stream broke.
    #[error("node {addr}: {reason}")]
    Node {
        /// The node.
        addr: SocketAddr,
        /// What happened.
        reason: String,
    },
    /// A node answered something undecodable.
    #[error("node {addr} answered an undecodable frame: {source}")]
    Protocol {
        /// The node.
        addr: SocketAddr,
        /// The decoding error.
        source: ProtocolError,
    },
    /// The cluster refused the request; it was not applied.
    #[error("refused: {0}")]
    Rejected(String),
    /// A node answered with a response that does not fit the request.
    #[error("unexpected answer from {0}")]
    Unexpected(SocketAddr),
    /// A node may have acted on the request but could not say how it ended (it stopped leading,
    /// or an attempt went unanswered); check the cluster's state before retrying.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The deadline passed; `last` is the last problem seen. The request may have been applied.
    #[error("no answer within {after:?} (last problem: {last})")]
    Timeout {
        /// The deadline that passed.
        after: Duration,
        /// The last problem seen.
        last: String,
    },
}

struct Inner {
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    cluster_id: u64,
    nodes: Vec<SocketAddr>,
    timeout: Duration,
    attempt_timeout: Duration,
    conns: Mutex<HashMap<SocketAddr, quinn::Connection>>,
    leader: Mutex<Option<SocketAddr>>,
    /// Nodes that failed lately (unreachable, no answer), with when they may be tried again
    /// before the others.
    suspects: Mutex<HashMap<SocketAddr, Instant>>,
}

/// A connection pool to one cluster. Clones share connections.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

const BACKOFF_MIN: Duration = Duration::from_millis(25);
/// Redirects followed without a pause.
const MAX_QUICK_REDIRECTS: u32 = 3;
const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// How long the other nodes may take to name a newer leader once one node says it leads.
const LEADER_GRACE: Duration = Duration::from_millis(20);
/// How long a node that failed is tried only after the others.
const SUSPECT_FOR: Duration = Duration::from_secs(2);

impl Client {
    /// Opens a local QUIC endpoint (inside a tokio runtime). Connects lazily.
    pub fn new(options: ClientOptions) -> Result<Client, ClientError> {
        let first = *options.nodes.first().ok_or(ClientError::NoNodes)?;
        tls::install_crypto_provider();
        let config = tls::client_config(&options.identity, tls::CLIENT_ALPN)?;
        let bind: SocketAddr = if first.is_ipv6() {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let endpoint = quinn::Endpoint::client(bind).map_err(ClientError::Endpoint)?;
        Ok(Client {
            inner: Arc::new(Inner {
                endpoint,
                config,
                cluster_id: options.cluster_id,
                nodes: options.nodes,
                timeout: options.timeout,
                attempt_timeout: options.attempt_timeout.max(Duration::from_millis(1)),
                conns: Mutex::new(HashMap::new()),
                leader: Mutex::new(None),
                suspects: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The node addresses this client was given.
    pub fn nodes(&self) -> &[SocketAddr] {
        &self.inner.nodes
    }

    /// The leader this client last reached, if any.
    pub fn leader(&self) -> Option<SocketAddr> {
        self.inner.leader.lock().ok().and_then(|l| *l)
    }

    /// Replicates `command` and returns its log index and the state machine's answer.
    ///
    /// Retries after failures whose outcome is unknown, so the command may reach the state
    /// machine more than once: commands must carry what the state machine needs to apply them
    /// once (the KV commands carry a client id and sequence number).
    pub async fn request(&self, command: Bytes) -> Result<(Index, Bytes), ClientError> {
        let request = ClientRequest::Propose { command };
        match self
            .at_leader(&request, true, self.inner.attempt_timeout)
            .await?
        {
            (_, ClientResponse::Applied { index, response }) => Ok((index, response)),
            (addr, _) => Err(ClientError::Unexpected(addr)),
        }
    }

    /// Changes the cluster's membership at its leader and returns the configuration once the
    /// change is done. Not retried once a node may have received it: an answer that the outcome
    /// is unknown comes back as [`ClientError::OutcomeUnknown`].
    pub async fn change_membership(
        &self,
        steps: Vec<MemberChange>,
    ) -> Result<MembershipReport, ClientError> {
        let request = ClientRequest::ChangeMembership { steps };
        match self.at_leader(&request, false, self.slow_attempt()).await? {
            (_, ClientResponse::Membership(m)) => Ok(m),
            (addr, _) => Err(ClientError::Unexpected(addr)),
        }
    }

    /// Hands leadership over to voter `to` (or the most caught-up voter) and returns the new
    /// leader and its term once it leads.
    pub async fn transfer_leader(&self, to: Option<NodeId>) -> Result<(NodeId, Term), ClientError> {
        let request = ClientRequest::TransferLeader { to };
        match self.at_leader(&request, false, self.slow_attempt()).await? {
            (_, ClientResponse::Transferred { leader, term }) => Ok((leader, term)),
            (addr, _) => Err(ClientError::Unexpected(addr)),
        }
    }

    /// Per-node wait for requests that take a commit round or an election.
    fn slow_attempt(&self) -> Duration {
        self.inner.attempt_timeout.max(Duration::from_secs(3))
    }

    /// Sends `request` to the leader, following redirects and moving on from nodes that fail,
    /// until a conclusive answer or the deadline. `retry_unknown`: whether an answer that the
    /// outcome is unknown may be retried (the request is idempotent).
    async fn at_leader(
        &self,
        request: &ClientRequest,
        retry_unknown: bool,
        attempt_timeout: Duration,
    ) -> Result<(SocketAddr, ClientResponse), ClientError> {
        let deadline = Instant::now() + self.inner.timeout;
        let nodes = &self.inner.nodes;
        let mut target = self.leader().unwrap_or(nodes[0]);
        let mut next = 0usize;
        let mut backoff = BACKOFF_MIN;
        let mut redirects = 0;
        let mut slow_redirects = 0u32;
        let mut last = String::from("none");
        // Whether an earlier attempt may have reached a node that acted on it.
        let mut maybe_delivered = false;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(ClientError::Timeout {
                    after: self.inner.timeout,
                    last,
                });
            }
            let attempt_deadline = (now + attempt_timeout).min(deadline);
            let sending = AtomicBool::new(false);
            let attempt = tokio::time::timeout_at(
                attempt_deadline,
                self.call_tracked(target, request, &sending),
            );
            let pause = match attempt.await {
                Err(_) => {
                    // The node may be dead without having closed the connection.
                    self.forget(target);
                    self.suspect(target);
                    maybe_delivered |= sending.load(Ordering::Relaxed);
                    last = format!("{target} did not answer within {attempt_timeout:?}");
                    true
                }
                Ok(Ok(ClientResponse::Rejected { reason })) => {
                    return Err(ClientError::Rejected(reason));
                }
                Ok(Ok(ClientResponse::NotLeader {
                    leader,
                    leader_addr,
                })) => {
                    let hinted = leader_addr.and_then(|a| a.parse::<SocketAddr>().ok());
                    match hinted {
                        Some(addr) if addr != target && redirects < MAX_QUICK_REDIRECTS => {
                            // Followed at once, a few times in a row; nodes with stale hints
                            // pointing at each other then fall back to the backoff below.
                            redirects += 1;
                            target = addr;
                            continue;
                        }
                        // After a pause, every other time: the hint may name a node this
                        // client was not given (one added since), and stale hints must not
                        // keep it from the others.
                        Some(addr) if addr != target && slow_redirects.is_multiple_of(2) => {
                            slow_redirects += 1;
                            last = format!("{target} names {addr} as the leader's address");
                            target = addr;
                            redirects = 0;
                            self.pause(&mut backoff, deadline).await;
                            continue;
                        }
                        _ => {
                            slow_redirects += 1;
                            last = match leader {
                                Some(l) => format!("{target} names node {l} as leader"),
                                None => format!("{target} knows no leader"),
                            };
                            true
                        }
                    }
                }
                Ok(Ok(ClientResponse::Unknown { reason })) => {
                    if !retry_unknown {
                        return Err(ClientError::OutcomeUnknown(format!("{target}: {reason}")));
                    }
                    last = format!("{target}: {reason}");
                    true
                }
                Ok(Ok(answer)) => {
                    self.set_leader(Some(target));
                    if let Ok(mut s) = self.inner.suspects.lock() {
                        s.remove(&target);
                    }
                    return Ok((target, answer));
                }
                Ok(Err(e)) => {
                    self.forget(target);
                    self.suspect(target);
                    maybe_delivered |= sending.load(Ordering::Relaxed);
                    last = e.to_string();
                    true
                }
            };
            if pause {
                if maybe_delivered && !retry_unknown {
                    // A node may be acting on it: sending it again could do it twice (a
                    // second transfer) or be refused for what the first did.
                    return Err(ClientError::OutcomeUnknown(format!(
                        "{last}, after the request was sent; it may have taken effect"
                    )));
                }
                redirects = 0;
                self.set_leader(None);
                self.pause(&mut backoff, deadline).await;
                // Ask every node at once who leads, rather than trying one after the other:
                // each dead node in the list would cost an attempt timeout.
                let ask_until = (Instant::now() + attempt_timeout).min(deadline);
                target = match self.find_leader(ask_until).await {
                    Some(leader) => leader,
                    None => self.next_node(&mut next, target),
                };
            }
        }
    }

    /// Asks every known node for its status at once; returns the address of the leader of the
    /// newest term seen: a node that says it leads, or the leader the others name (at the
    /// address they know for it). Waits until all answered, `until`, or a short grace after
    /// the first node that says it leads.
    async fn find_leader(&self, until: Instant) -> Option<SocketAddr> {
        let mut asks = tokio::task::JoinSet::new();
        for &addr in &self.inner.nodes {
            let client = self.clone();
            asks.spawn(async move { (addr, client.call(addr, &ClientRequest::Status).await) });
        }
        // The newest term wins: a leader cut off from the others may still think it leads.
        // Once some node says it leads, the others get a little longer to name a newer one.
        let mut best: Option<(Term, bool, SocketAddr)> = None;
        let mut until = until;
        let mut unanswered: Vec<SocketAddr> = self.inner.nodes.clone();
        let majority = self.inner.nodes.len() / 2 + 1;
        loop {
            let answer = match tokio::time::timeout_at(until, asks.join_next()).await {
                Ok(Some(Ok(answer))) => answer,
                Ok(Some(Err(_))) => continue,
                Ok(None) | Err(_) => break,
            };
            unanswered.retain(|a| *a != answer.0);
            // A majority answered and none knows a leader (an election is on): no use waiting
            // for nodes that may be dead.
            if best.is_none() && self.inner.nodes.len() - unanswered.len() >= majority {
                until = until.min(Instant::now() + LEADER_GRACE);
            }
            match answer {
                (addr, Ok(ClientResponse::Status(s))) => {
                    let leads = s.role == raft_proto_core::Role::Leader;
                    let found = if leads {
                        until = until.min(Instant::now() + LEADER_GRACE);
                        Some(addr)
                    } else {
                        s.leader.and_then(|l| {
                            s.peers
                                .iter()
                                .find(|p| p.id == l)
                                .and_then(|p| p.address.parse().ok())
                        })
                    };
                    if let Some(a) = found {
                        if best.is_none_or(|(t, l, _)| (s.term, leads) > (t, l)) {
                            best = Some((s.term, leads, a));
                        }
                    }
                }
                (addr, _) => {
                    self.forget(addr);
                    self.suspect(addr);
                }
            }
        }
        // Slower than the others: tried after them next.
        for addr in unanswered {
            self.suspect(addr);
        }
        best.map(|(_, _, a)| a)
    }

    /// The next node to try after `failed`, from position `next` of the list: one that did not
    /// fail lately, if there is one.
    fn next_node(&self, next: &mut usize, failed: SocketAddr) -> SocketAddr {
        let nodes = &self.inner.nodes;
        let now = Instant::now();
        let suspects = self.inner.suspects.lock().ok();
        let healthy = |a: &SocketAddr| {
            *a != failed
                && suspects
                    .as_ref()
                    .is_none_or(|s| s.get(a).is_none_or(|until| *until <= now))
        };
        for _ in 0..nodes.len() {
            let a = nodes[*next % nodes.len()];
            *next += 1;
            if healthy(&a) {
                return a;
            }
        }
        let a = nodes[*next % nodes.len()];
        *next += 1;
        a
    }

    fn suspect(&self, addr: SocketAddr) {
        if let Ok(mut s) = self.inner.suspects.lock() {
            s.insert(addr, Instant::now() + SUSPECT_FOR);
        }
    }

    async fn pause(&self, backoff: &mut Duration, deadline: Instant) {
        let wake = (Instant::now() + *backoff).min(deadline);
        tokio::time::sleep_until(wake).await;
        *backoff = (*backoff * 2).min(BACKOFF_MAX);
    }

    /// Asks the node at `addr` for its status (one attempt).
    pub async fn status(&self, addr: SocketAddr) -> Result<NodeStatus, ClientError> {
        let call = self.call(addr, &ClientRequest::Status);
        match tokio::time::timeout(self.inner.timeout, call).await {
            Ok(Ok(ClientResponse::Status(status))) => Ok(*status),
            Ok(Ok(ClientResponse::Rejected { reason })) => Err(ClientError::Rejected(reason)),
            Ok(Ok(_)) => Err(ClientError::Unexpected(addr)),
            Ok(Err(e)) => {
                self.forget(addr);
                Err(e)
            }
            Err(_) => Err(ClientError::Timeout {
                after: self.inner.timeout,
                last: format!("{addr} did not answer"),
            }),
        }
    }

    /// Asks the node at `addr` to take a snapshot now and waits until it is stored (one
    /// attempt; a large state may take a while, so the wait is the client's whole timeout).
    pub async fn snapshot(&self, addr: SocketAddr) -> Result<SnapshotDone, ClientError> {
        let call = self.call(addr, &ClientRequest::Snapshot);
        match tokio::time::timeout(self.inner.timeout, call).await {
            Ok(Ok(ClientResponse::Snapshot(done))) => Ok(done),
            Ok(Ok(ClientResponse::Rejected { reason })) => Err(ClientError::Rejected(reason)),
            Ok(Ok(_)) => Err(ClientError::Unexpected(addr)),
            Ok(Err(e)) => {
                self.forget(addr);
                Err(e)
            }
            Err(_) => Err(ClientError::Timeout {
                after: self.inner.timeout,
                last: format!("{addr} did not report the snapshot stored"),
            }),
        }
    }

    /// Sends one request to one node and reads its answer (no retry, no redirect).
    pub async fn call(
        &self,
        addr: SocketAddr,
        request: &ClientRequest,
    ) -> Result<ClientResponse, ClientError> {
        self.call_tracked(addr, request, &AtomicBool::new(false))
            .await
    }

    /// Like [`Client::call`]; `sending` is set once the request may have reached the node
    /// (it outlives a call abandoned on a timeout).
    async fn call_tracked(
        &self,
        addr: SocketAddr,
        request: &ClientRequest,
        sending: &AtomicBool,
    ) -> Result<ClientResponse, ClientError> {
        let node_err = |reason: String| ClientError::Node { addr, reason };
        let conn = self.connection(addr).await?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| node_err(e.to_string()))?;
        let body = encode_request(self.inner.cluster_id, request);
        sending.store(true, Ordering::Relaxed);
        send_only_frame(&mut send, body)
            .await
            .map_err(|e| node_err(e.to_string()))?;
        let mut reader = FrameReader::new(MAX_CLIENT_FRAME);
        let frame = reader
            .next(&mut recv)
            .await
            .map_err(|e| node_err(e.to_string()))?
            .ok_or_else(|| node_err("stream closed without an answer".into()))?;
        decode_response(self.inner.cluster_id, frame)
            .map_err(|source| ClientError::Protocol { addr, source })
    }

    async fn connection(&self, addr: SocketAddr) -> Result<quinn::Connection, ClientError> {
        if let Some(conn) = self.cached(addr) {
            return Ok(conn);
        }
        let node_err = |reason: String| ClientError::Node { addr, reason };
        let connecting = self
            .inner
            .endpoint
            .connect_with(self.inner.config.clone(), addr, tls::CLUSTER_SERVER_NAME)
            .map_err(|e| node_err(e.to_string()))?;
        let conn = tokio::time::timeout(Duration::from_secs(3), connecting)
            .await
            .map_err(|_| node_err("connection timed out".into()))?
            .map_err(|e| node_err(e.to_string()))?;
        if let Ok(mut conns) = self.inner.conns.lock() {
            conns.insert(addr, conn.clone());
        }
        Ok(conn)
    }

    fn cached(&self, addr: SocketAddr) -> Option<quinn::Connection> {
        let mut conns = self.inner.conns.lock().ok()?;
        match conns.get(&addr) {
            Some(c) if c.close_reason().is_none() => Some(c.clone()),
            Some(_) => {
                conns.remove(&addr);
                None
            }
            None => None,
        }
    }

    fn forget(&self, addr: SocketAddr) {
        if let Ok(mut conns) = self.inner.conns.lock() {
            conns.remove(&addr);
        }
    }

    fn set_leader(&self, leader: Option<SocketAddr>) {
        if let Ok(mut l) = self.inner.leader.lock() {
            *l = leader;
        }
    }

    /// Closes every connection and waits briefly for the close to reach the nodes.
    pub async fn close(&self) {
        self.inner.endpoint.close(0u32.into(), b"done");
        let _ =
            tokio::time::timeout(Duration::from_millis(500), self.inner.endpoint.wait_idle()).await;
    }
}
