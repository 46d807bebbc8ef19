//! Mutual TLS for peers and clients.
//!
//! Every node and every client holds a certificate issued by one cluster certificate
//! authority (CA). A node's QUIC server accepts only connections whose client certificate
//! chains to that CA; dialers verify the server against the same CA and nothing else (no
//! system roots). Node certificates carry the DNS name [`node_server_name`] of their id, so a
//! peer can check *which* node it talks to ([`peer_is_node`]); client certificates carry a
//! name under `client.raftkv` and can never pass for a node.
//!
//! The two kinds of traffic are told apart by ALPN: [`PEER_ALPN`] for node-to-node
//! replication, [`CLIENT_ALPN`] for key-value clients. A node's server offers both.
//!
//! Certificates are generated with [`CertAuthority`] and written to a directory by
//! [`write_cluster_certs`]:
//!
//! ```text
//! certs/ca.pem  certs/ca.key          the cluster CA (the key stays with the operator)
//! certs/node-1.pem  certs/node-1.key  one pair per node
//! certs/client.pem  certs/client.key  one pair per client name
//! ```
//!
//! [`Identity::load`] reads the CA certificate plus one certificate/key pair, and
//! [`server_config`] / [`client_config`] turn it into quinn configurations.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

/// ALPN protocol of node-to-node (replication) connections.
pub const PEER_ALPN: &[u8] = b"raftkv-peer/1";

/// ALPN protocol of client connections.
pub const CLIENT_ALPN: &[u8] = b"raftkv-client/1";

/// DNS name every node certificate carries; clients that only know an address verify this.
pub const CLUSTER_SERVER_NAME: &str = "raftkv";

/// DNS suffix of client certificate names: client `alice` gets `alice.client.raftkv`.
pub const CLIENT_NAME_SUFFIX: &str = ".client.raftkv";

/// File name (without extension) of the CA certificate and key in a certificate directory.
pub const CA_FILE_STEM: &str = "ca";

/// Interval between QUIC keep-alive packets on an idle connection.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(1);

/// A connection that hears nothing from its peer for this long is closed.
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Flow-control window of a whole connection (bytes).
pub const CONNECTION_RECEIVE_WINDOW: u32 = 16 * 1024 * 1024;

/// Flow-control window of one stream (bytes).
pub const STREAM_RECEIVE_WINDOW: u32 = 8 * 1024 * 1024;

/// Maximum number of concurrently open bidirectional streams a peer may open.
pub const MAX_CONCURRENT_BIDI_STREAMS: u32 = 512;

/// Maximum number of concurrently open unidirectional streams a peer may open.
pub const MAX_CONCURRENT_UNI_STREAMS: u32 = 64;

/// Validity of a generated CA certificate.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Validity of a node or client certificate.
const LEAF_VALIDITY: Duration = Duration::from_secs(5 * 365 * 24 * 3600);

/// Certificates start being valid this long before they are issued, so that a cluster whose
/// clocks disagree slightly still accepts fresh certificates.
const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(3600);

/// Longest accepted cluster name (it ends up in the CA's common name).
const MAX_CLUSTER_NAME_LEN: usize = 48;

/// Longest accepted client name (one DNS label).
const MAX_CLIENT_NAME_LEN: usize = 63;

/// The DNS name of node `id`'s certificate: `node-{id}.raftkv`. Peers verify it when dialing
/// node `id`.
pub fn node_server_name(id: u64) -> String {
    format!("node-{id}.{CLUSTER_SERVER_NAME}")
}

/// The DNS name of the client certificate called `name`: `{name}.client.raftkv`.
pub fn client_server_name(name: &str) -> String {
    format!("{name}{CLIENT_NAME_SUFFIX}")
}

/// The file name stem of node `id`'s certificate and key: `node-{id}`.
pub fn node_file_stem(id: u64) -> String {
    format!("node-{id}")
}

/// Installs ring as the process-wide rustls crypto provider. Calling it again (or after
/// another provider was installed) does nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The provider every configuration of this module is built with.
fn provider() -> Arc<CryptoProvider> {
    install_crypto_provider();
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Errors of loading, generating and using TLS material.
///
/// Every variant that involves a file names it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file or directory could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no PEM `CERTIFICATE` block.
    #[error("{}: no PEM certificate found", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A file holds no PEM private key block.
    #[error("{}: no PEM private key found", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// A file is not valid PEM.
    #[error("{}: malformed PEM: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate or key file cannot serve as the cluster certificate authority.
    #[error("{}: not a usable certificate authority: {reason}", path.display())]
    BadAuthority {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A cluster name, client name or node id is not acceptable.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was being checked (`"client name \"x\""`, `"node id 0"`, ...).
        what: String,
        /// Why it was refused.
        reason: String,
    },
    /// rustls refused the configuration (for example a key that does not match its
    /// certificate).
    #[error("TLS configuration refused")]
    Rustls(#[from] rustls::Error),
    /// Certificate or key generation failed.
    #[error("certificate generation failed")]
    Generate(#[from] rcgen::Error),
    /// The certificate verifier could not be built.
    #[error("certificate verifier: {0}")]
    Verifier(String),
    /// quinn refused the TLS configuration.
    #[error("QUIC crypto configuration: {0}")]
    Quic(String),
}

/// Paths of the three PEM files an [`Identity`] is loaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster CA certificate(s): the only trust anchors.
    pub ca: PathBuf,
    /// This end's certificate chain, end-entity certificate first.
    pub cert: PathBuf,
    /// This end's private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files of `name` in a certificate directory: `dir/ca.pem`, `dir/{name}.pem` and
    /// `dir/{name}.key`.
    pub fn in_dir(dir: &Path, name: &str) -> TlsFiles {
        TlsFiles {
            ca: dir.join(format!("{CA_FILE_STEM}.pem")),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        }
    }

    /// The files of node `id` in a certificate directory (`dir/node-{id}.pem`, ...).
    pub fn for_node(dir: &Path, id: u64) -> TlsFiles {
        TlsFiles::in_dir(dir, &node_file_stem(id))
    }
}

/// Trust anchors plus the certificate chain and key this end presents.
#[derive(Debug)]
pub struct Identity {
    /// Trusted CA certificates.
    pub ca: Vec<CertificateDer<'static>>,
    /// Own certificate chain, end-entity certificate first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Own private key.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Identity {
        Identity {
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    /// Reads the CA certificate(s), the certificate chain and the private key.
    ///
    /// Errors name the offending file: [`TlsError::Read`] when it cannot be read,
    /// [`TlsError::NoCertificate`] / [`TlsError::NoKey`] when it holds nothing usable,
    /// [`TlsError::Pem`] when it is malformed.
    pub fn load(files: &TlsFiles) -> Result<Identity, TlsError> {
        let ca = read_certs(&files.ca)?;
        let chain = read_certs(&files.cert)?;
        let key = read_key(&files.key)?;
        Ok(Identity { ca, chain, key })
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_text(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every `CERTIFICATE` block of a PEM file; at least one.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(path)?;
    parse_certs(&bytes, path)
}

fn parse_certs(bytes: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e, path))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key block of a PEM file.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        other => pem_error(other, path),
    })
}

fn pem_error(e: rustls::pki_types::pem::Error, path: &Path) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn root_store(id: &Identity) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in &id.ca {
        roots.add(ca.clone())?;
    }
    Ok(Arc::new(roots))
}

/// The QUIC transport settings shared by servers and clients: many concurrent bidirectional
/// streams (one per request), keep-alives every [`KEEP_ALIVE_INTERVAL`], an idle timeout of
/// [`MAX_IDLE_TIMEOUT`] and large flow-control windows.
pub fn transport_config() -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(MAX_CONCURRENT_BIDI_STREAMS))
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(MAX_CONCURRENT_UNI_STREAMS))
        .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
        .max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
            // Milliseconds; the constant is a few seconds, far below u32::MAX.
            MAX_IDLE_TIMEOUT.as_millis() as u32,
        ))))
        .receive_window(quinn::VarInt::from_u32(CONNECTION_RECEIVE_WINDOW))
        .stream_receive_window(quinn::VarInt::from_u32(STREAM_RECEIVE_WINDOW))
        .send_window(u64::from(CONNECTION_RECEIVE_WINDOW));
    transport
}

/// Server side of a node: offers both ALPNs ([`PEER_ALPN`] first, then [`CLIENT_ALPN`]),
/// requires a client certificate signed by the CA and refuses anything else at the
/// handshake. Transport settings are those of [`transport_config`].
pub fn server_config(id: &Identity) -> Result<quinn::ServerConfig, TlsError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(root_store(id)?, provider.clone())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(id.chain.clone(), id.key.clone_key())?;
    tls.alpn_protocols = vec![PEER_ALPN.to_vec(), CLIENT_ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

/// Client side (used by nodes dialing peers with [`PEER_ALPN`], and by clients with
/// [`CLIENT_ALPN`]): verifies the server against the CA only, presents its own certificate
/// chain. Transport settings are those of [`transport_config`].
///
/// The server name checked is the one given to `quinn::Endpoint::connect`: a node dialing
/// peer `n` passes [`node_server_name`]`(n)`, a client that only knows an address passes
/// [`CLUSTER_SERVER_NAME`].
pub fn client_config(id: &Identity, alpn: &[u8]) -> Result<quinn::ClientConfig, TlsError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(root_store(id)?)
        .with_client_auth_cert(id.chain.clone(), id.key.clone_key())?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

/// The end-entity certificate the remote end of `conn` presented, if any.
fn peer_end_entity(conn: &quinn::Connection) -> Option<CertificateDer<'static>> {
    let identity = conn.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    chain.into_iter().next()
}

/// Whether the remote end of an established connection presented an end-entity certificate
/// valid for [`node_server_name`]`(node)`. Chain validity was already checked at the
/// handshake; this only checks the name.
pub fn peer_is_node(conn: &quinn::Connection, node: u64) -> bool {
    match peer_end_entity(conn) {
        Some(der) => cert_is_valid_for(&der, &node_server_name(node)),
        None => false,
    }
}

/// The node id whose name ([`node_server_name`]) the remote end's certificate carries, when
/// it carries exactly one. `None` for client certificates and for connections without a
/// peer certificate.
pub fn peer_node_id(conn: &quinn::Connection) -> Option<u64> {
    let der = peer_end_entity(conn)?;
    let cert = webpki::EndEntityCert::try_from(&der).ok()?;
    let mut ids = cert.valid_dns_names().filter_map(parse_node_server_name);
    let id = ids.next()?;
    if ids.next().is_some() {
        return None;
    }
    // Double-check with the name verification proper.
    cert_is_valid_for(&der, &node_server_name(id)).then_some(id)
}

/// Whether the remote end presented a client certificate valid for one of `names`
/// ([`client_server_name`]).
pub fn peer_is_client_named(conn: &quinn::Connection, names: &[String]) -> bool {
    match peer_end_entity(conn) {
        Some(der) => names
            .iter()
            .any(|n| cert_is_valid_for(&der, &client_server_name(n))),
        None => false,
    }
}

/// `node-{id}.raftkv` -> `id`.
fn parse_node_server_name(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix("node-")?
        .strip_suffix(CLUSTER_SERVER_NAME)?
        .strip_suffix('.')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

fn cert_is_valid_for(der: &CertificateDer<'_>, dns_name: &str) -> bool {
    let Ok(cert) = webpki::EndEntityCert::try_from(der) else {
        return false;
    };
    let Ok(name) = DnsName::try_from(dns_name) else {
        return false;
    };
    cert.verify_is_valid_for_subject_name(&ServerName::DnsName(name))
        .is_ok()
}

mod authority;
#[cfg(test)]
mod tests;

pub use authority::{
    validate_client_name, validate_cluster_name, validate_node_id, write_cluster_certs,
    CertAuthority,
};
