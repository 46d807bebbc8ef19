//! The QUIC transport: outbound links to peers and the server that accepts peers and clients.
//!
//! One quinn endpoint per node serves both: the ALPN of a connection says whether it is a peer
//! (`tls::PEER_ALPN`, one-way streams of Raft frames) or a client (`tls::CLIENT_ALPN`, one
//! bidirectional stream per request). Both sides authenticate with certificates of the cluster
//! CA; a peer must also hold the certificate of the node it claims to be.

mod address_book;
mod peer_link;
mod server;

pub(crate) use address_book::AddressBook;
pub(crate) use peer_link::{PeerLinks, TransportCounters};
pub(crate) use server::{serve, ServerContext};

/// Error code sent when a connection is closed because of what the remote sent.
pub(crate) const CLOSE_PROTOCOL_ERROR: u32 = 1;
/// Error code sent when a node shuts down.
pub(crate) const CLOSE_SHUTDOWN: u32 = 0;
