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

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::string::{BmpString, Ia5String, PrintableString, TeletexString, UniversalString};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData as _, SanType,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer, ServerName, UnixTime};
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
pub const MAX_CONCURRENT_BIDI_STREAMS: u32 = 4096;

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

/// Checks a cluster name: non-empty, at most 48 characters, no control characters.
pub fn validate_cluster_name(name: &str) -> Result<(), TlsError> {
    let invalid = |reason: &str| TlsError::Invalid {
        what: format!("cluster name {name:?}"),
        reason: reason.to_string(),
    };
    if name.trim().is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.chars().count() > MAX_CLUSTER_NAME_LEN {
        return Err(invalid(&format!(
            "it is longer than {MAX_CLUSTER_NAME_LEN} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("it contains control characters"));
    }
    Ok(())
}

/// Checks a client certificate name: one DNS label of lowercase ASCII letters, digits and
/// `-` (not at either end), at most 63 characters; not `ca` and not starting with `node-`,
/// which would collide with the CA's or a node's files.
pub fn validate_client_name(name: &str) -> Result<(), TlsError> {
    let invalid = |reason: &str| TlsError::Invalid {
        what: format!("client name {name:?}"),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > MAX_CLIENT_NAME_LEN {
        return Err(invalid(&format!(
            "it is longer than {MAX_CLIENT_NAME_LEN} characters"
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid(
            "only lowercase letters a-z, digits 0-9 and '-' are allowed",
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(invalid("it must not start or end with '-'"));
    }
    if name == CA_FILE_STEM {
        return Err(invalid("it is the name of the CA's files"));
    }
    if name.starts_with("node-") {
        return Err(invalid(
            "names starting with \"node-\" are reserved for nodes",
        ));
    }
    Ok(())
}

/// Checks a node id: 0 is not a node.
pub fn validate_node_id(id: u64) -> Result<(), TlsError> {
    if id == 0 {
        return Err(TlsError::Invalid {
            what: "node id 0".to_string(),
            reason: "node ids start at 1".to_string(),
        });
    }
    Ok(())
}

/// A cluster certificate authority: its certificate and signing key.
pub struct CertAuthority {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The signing key is deliberately left out.
        f.debug_struct("CertAuthority")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// Time elapsed since the Unix epoch (zero if the clock is set before it).
fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

impl CertAuthority {
    /// Generates a self-signed CA for `cluster_name`: a CA certificate with key usages
    /// certificate signing and CRL signing, valid for ten years.
    pub fn generate(cluster_name: &str) -> Result<CertAuthority, TlsError> {
        validate_cluster_name(cluster_name)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = ca_distinguished_name(cluster_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch();
        params.not_before = now - CLOCK_SKEW_ALLOWANCE;
        params.not_after = now + CA_VALIDITY;
        let cert = params.self_signed(&key)?;
        Ok(CertAuthority {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its PEM certificate and PEM (PKCS#8) private key.
    ///
    /// The pair is checked before use: the key must match the certificate, and a certificate
    /// issued with them must verify against the certificate as trust anchor (so it must be a
    /// currently valid CA certificate).
    pub fn load(cert_pem: &Path, key_pem: &Path) -> Result<CertAuthority, TlsError> {
        let cert_text = read_text(cert_pem)?;
        let certs = parse_certs(cert_text.as_bytes(), cert_pem)?;
        let bad_cert = |reason: String| TlsError::BadAuthority {
            path: cert_pem.to_path_buf(),
            reason,
        };
        if certs.len() != 1 {
            return Err(bad_cert(format!(
                "expected exactly one certificate, found {}",
                certs.len()
            )));
        }
        let cert_der = certs.into_iter().next().ok_or_else(|| {
            // Unreachable: exactly one certificate was found above.
            bad_cert("no certificate".to_string())
        })?;

        let key_der = read_key(key_pem)?;
        let key = KeyPair::try_from(&key_der).map_err(|e| TlsError::BadAuthority {
            path: key_pem.to_path_buf(),
            reason: format!(
                "unsupported private key ({e}); a PKCS#8 ECDSA or Ed25519 key is needed"
            ),
        })?;

        let parsed = webpki::EndEntityCert::try_from(&cert_der)
            .map_err(|e| bad_cert(format!("cannot parse the certificate: {e}")))?;
        if parsed.subject_public_key_info().as_ref() != key.subject_public_key_info().as_slice() {
            return Err(TlsError::BadAuthority {
                path: key_pem.to_path_buf(),
                reason: format!("the key does not belong to {}", cert_pem.display()),
            });
        }
        check_ca_extensions(&cert_der).map_err(bad_cert)?;
        let dn = parse_distinguished_name(parsed.subject()).map_err(bad_cert)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertAuthority {
            cert_pem: cert_text,
            cert_der,
            issuer: Issuer::new(params, key),
        };
        ca.self_check().map_err(bad_cert)?;
        Ok(ca)
    }

    /// Issues a throw-away client certificate and verifies it against the CA certificate.
    fn self_check(&self) -> Result<(), String> {
        let (_, probe, _) = self
            .issue(
                "probe.invalid".to_string(),
                vec![ExtendedKeyUsagePurpose::ClientAuth],
            )
            .map_err(|e| format!("cannot issue a certificate: {e}"))?;
        verify_chain(&probe, &self.cert_der)
            .map_err(|e| format!("certificates it issues do not verify: {e}"))
    }

    /// The CA certificate, PEM encoded.
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// The CA certificate, DER encoded.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA private key, PEM encoded (PKCS#8).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Issues node `id`'s certificate: DNS names [`node_server_name`]`(id)`,
    /// [`CLUSTER_SERVER_NAME`] and `localhost`, IP addresses 127.0.0.1 and ::1; extended key
    /// usages server and client authentication; valid for five years. Returns
    /// `(cert_pem, key_pem)`.
    pub fn issue_node(&self, id: u64) -> Result<(String, String), TlsError> {
        validate_node_id(id)?;
        let (cert_pem, _, key_pem) = self.issue(
            node_server_name(id),
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )?;
        Ok((cert_pem, key_pem))
    }

    /// Issues the client certificate `name`: DNS name `{name}.client.raftkv` (never a node
    /// name), extended key usage client authentication; valid for five years. The name must
    /// pass [`validate_client_name`]. Returns `(cert_pem, key_pem)`.
    pub fn issue_client(&self, name: &str) -> Result<(String, String), TlsError> {
        validate_client_name(name)?;
        let (cert_pem, _, key_pem) = self.issue(
            client_server_name(name),
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )?;
        Ok((cert_pem, key_pem))
    }

    /// Issues an end-entity certificate named `dns_name` with a fresh key. Server
    /// certificates also get the cluster-wide and loopback names.
    fn issue(
        &self,
        dns_name: String,
        ekus: Vec<ExtendedKeyUsagePurpose>,
    ) -> Result<(String, CertificateDer<'static>, String), TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, dns_name.clone());
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::DnsName(Ia5String::try_from(dns_name)?)];
        if ekus.contains(&ExtendedKeyUsagePurpose::ServerAuth) {
            params.subject_alt_names.extend([
                SanType::DnsName(Ia5String::try_from(CLUSTER_SERVER_NAME)?),
                SanType::DnsName(Ia5String::try_from("localhost")?),
                SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
                SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()),
            ]);
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = ekus;
        let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch();
        params.not_before = now - CLOCK_SKEW_ALLOWANCE;
        params.not_after = now + LEAF_VALIDITY;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), cert.der().clone(), key.serialize_pem()))
    }
}

fn ca_distinguished_name(cluster_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, cluster_name);
    dn.push(DnType::CommonName, format!("{cluster_name} cluster CA"));
    dn
}

/// Verifies that `leaf` chains directly to `ca` for client authentication, now.
fn verify_chain(leaf: &CertificateDer<'_>, ca: &CertificateDer<'_>) -> Result<(), webpki::Error> {
    let anchor = webpki::anchor_from_trusted_cert(ca)?;
    let leaf = webpki::EndEntityCert::try_from(leaf)?;
    leaf.verify_for_usage(
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all,
        &[anchor],
        &[],
        UnixTime::now(),
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )?;
    Ok(())
}

/// A minimal DER reader, enough to walk an X.509 `Name`.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    /// Reads one TLV: `(tag, contents)`.
    fn next(&mut self) -> Result<(u8, &'a [u8]), String> {
        let truncated = || "truncated DER".to_string();
        let (&tag, rest) = self.rest.split_first().ok_or_else(truncated)?;
        if tag & 0x1f == 0x1f {
            return Err("multi-byte DER tags are not supported".to_string());
        }
        let (&first, mut rest) = rest.split_first().ok_or_else(truncated)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err("unsupported DER length".to_string());
            }
            if rest.len() < n {
                return Err(truncated());
            }
            let (len_bytes, after) = rest.split_at(n);
            rest = after;
            len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        if rest.len() < len {
            return Err(truncated());
        }
        let (contents, after) = rest.split_at(len);
        self.rest = after;
        Ok((tag, contents))
    }

    fn at_end(&self) -> bool {
        self.rest.is_empty()
    }
}

/// Decodes the contents of a DER OBJECT IDENTIFIER into its arcs.
fn decode_oid(bytes: &[u8]) -> Result<Vec<u64>, String> {
    let mut subids = Vec::new();
    let mut acc: u64 = 0;
    let mut pending = false;
    for &b in bytes {
        if acc > (u64::MAX >> 7) {
            return Err("object identifier arc too large".to_string());
        }
        acc = (acc << 7) | u64::from(b & 0x7f);
        pending = true;
        if b & 0x80 == 0 {
            subids.push(acc);
            acc = 0;
            pending = false;
        }
    }
    if pending || subids.is_empty() {
        return Err("malformed object identifier".to_string());
    }
    let first = subids[0];
    let (a, b) = match first {
        0..=39 => (0, first),
        40..=79 => (1, first - 40),
        _ => (2, first - 80),
    };
    let mut arcs = vec![a, b];
    arcs.extend_from_slice(&subids[1..]);
    Ok(arcs)
}

/// Checks that a certificate may sign certificates: its basic constraints say it is a CA
/// and, if it restricts key usage, certificate signing is among the usages.
fn check_ca_extensions(cert: &[u8]) -> Result<(), String> {
    const SEQUENCE: u8 = 0x30;
    const EXTENSIONS: u8 = 0xa3;
    const OID: u8 = 0x06;
    const BOOLEAN: u8 = 0x01;
    const OCTET_STRING: u8 = 0x04;
    const BIT_STRING: u8 = 0x03;
    const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
    const KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
    const KEY_CERT_SIGN_BIT: u8 = 0x80 >> 5;

    let malformed = || "malformed certificate".to_string();
    let (tag, certificate) = Der { rest: cert }.next()?;
    if tag != SEQUENCE {
        return Err(malformed());
    }
    let (tag, tbs) = Der { rest: certificate }.next()?;
    if tag != SEQUENCE {
        return Err(malformed());
    }
    let mut fields = Der { rest: tbs };
    let mut extensions = None;
    while !fields.at_end() {
        let (tag, contents) = fields.next()?;
        if tag == EXTENSIONS {
            extensions = Some(contents);
        }
    }
    let mut is_ca = false;
    // Without a key usage extension every usage is allowed.
    let mut may_sign = true;
    if let Some(extensions) = extensions {
        let (tag, list) = Der { rest: extensions }.next()?;
        if tag != SEQUENCE {
            return Err(malformed());
        }
        let mut list = Der { rest: list };
        while !list.at_end() {
            let (tag, extension) = list.next()?;
            if tag != SEQUENCE {
                return Err(malformed());
            }
            let mut parts = Der { rest: extension };
            let (tag, oid) = parts.next()?;
            if tag != OID {
                return Err(malformed());
            }
            let (mut tag, mut value) = parts.next()?;
            if tag == BOOLEAN {
                (tag, value) = parts.next()?;
            }
            if tag != OCTET_STRING {
                return Err(malformed());
            }
            if oid == BASIC_CONSTRAINTS {
                let (tag, constraints) = Der { rest: value }.next()?;
                if tag != SEQUENCE {
                    return Err(malformed());
                }
                if let Ok((BOOLEAN, flag)) = (Der { rest: constraints }).next() {
                    is_ca = flag.iter().any(|&b| b != 0);
                }
            } else if oid == KEY_USAGE {
                let (tag, bits) = Der { rest: value }.next()?;
                if tag != BIT_STRING {
                    return Err(malformed());
                }
                may_sign = bits.get(1).is_some_and(|b| b & KEY_CERT_SIGN_BIT != 0);
            }
        }
    }
    if !is_ca {
        return Err("it is not a CA certificate (basic constraints)".to_string());
    }
    if !may_sign {
        return Err("its key usage does not allow signing certificates".to_string());
    }
    Ok(())
}

/// Rebuilds an rcgen distinguished name from the DER contents of an X.509 `Name`
/// (`RDNSequence` without its outer tag). Only names with one attribute per RDN and no
/// repeated attribute type are supported.
fn parse_distinguished_name(der: &[u8]) -> Result<DistinguishedName, String> {
    const SET: u8 = 0x31;
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    let utf8 = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| "subject attribute is not valid text".to_string())
    };
    let mut dn = DistinguishedName::new();
    let mut rdns = Der { rest: der };
    while !rdns.at_end() {
        let (tag, rdn) = rdns.next()?;
        if tag != SET {
            return Err("malformed subject name".to_string());
        }
        let mut attrs = Der { rest: rdn };
        let (tag, attr) = attrs.next()?;
        if tag != SEQUENCE {
            return Err("malformed subject name".to_string());
        }
        if !attrs.at_end() {
            return Err("subject names with multi-valued RDNs are not supported".to_string());
        }
        let mut fields = Der { rest: attr };
        let (tag, oid) = fields.next()?;
        if tag != OID {
            return Err("malformed subject name".to_string());
        }
        let (value_tag, value) = fields.next()?;
        if !fields.at_end() {
            return Err("malformed subject name".to_string());
        }
        let ty = DnType::from_oid(&decode_oid(oid)?);
        let bad_string = |e: rcgen::Error| format!("subject attribute: {e}");
        let value = match value_tag {
            0x0c => DnValue::Utf8String(utf8(value)?),
            0x13 => DnValue::PrintableString(
                PrintableString::try_from(utf8(value)?).map_err(bad_string)?,
            ),
            0x14 => {
                DnValue::TeletexString(TeletexString::try_from(utf8(value)?).map_err(bad_string)?)
            }
            0x16 => DnValue::Ia5String(Ia5String::try_from(utf8(value)?).map_err(bad_string)?),
            0x1c => DnValue::UniversalString(
                UniversalString::from_utf32be(value.to_vec()).map_err(bad_string)?,
            ),
            0x1e => {
                DnValue::BmpString(BmpString::from_utf16be(value.to_vec()).map_err(bad_string)?)
            }
            other => {
                return Err(format!(
                    "unsupported subject string type (tag {other:#04x})"
                ))
            }
        };
        if dn.get(&ty).is_some() {
            return Err("subject names repeating an attribute type are not supported".to_string());
        }
        dn.push(ty, value);
    }
    Ok(dn)
}

/// Writes `contents` to `path` through a temporary file in the same directory, so that the
/// file is replaced whole. Private files get mode 0600 on unix.
fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    let write_err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let result = options.open(&tmp).and_then(|mut file| {
        file.write_all(contents.as_bytes())?;
        file.sync_all()
    });
    if let Err(e) = result.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(write_err(e));
    }
    Ok(())
}

/// Writes (or extends) a certificate directory: `ca.pem` + `ca.key` (created if missing,
/// reused if present), `node-{id}.pem`/`.key` for each node, `{name}.pem`/`.key` for each
/// client name. Node and client certificates are (re)issued on every call. Key files get
/// mode 0600 on unix. Returns the paths written, in order.
///
/// Everything is validated before anything is written: node ids must be non-zero and
/// distinct, client names must pass [`validate_client_name`] and be distinct. A directory
/// holding only one of `ca.pem` and `ca.key` is refused rather than overwritten.
pub fn write_cluster_certs(
    dir: &Path,
    cluster_name: &str,
    nodes: &[u64],
    clients: &[String],
) -> Result<Vec<PathBuf>, TlsError> {
    let mut seen_nodes = std::collections::BTreeSet::new();
    for &id in nodes {
        validate_node_id(id)?;
        if !seen_nodes.insert(id) {
            return Err(TlsError::Invalid {
                what: format!("node id {id}"),
                reason: "it is listed twice".to_string(),
            });
        }
    }
    let mut seen_clients = std::collections::BTreeSet::new();
    for name in clients {
        validate_client_name(name)?;
        if !seen_clients.insert(name.as_str()) {
            return Err(TlsError::Invalid {
                what: format!("client name {name:?}"),
                reason: "it is listed twice".to_string(),
            });
        }
    }

    let ca_cert_path = dir.join(format!("{CA_FILE_STEM}.pem"));
    let ca_key_path = dir.join(format!("{CA_FILE_STEM}.key"));
    let mut written = Vec::new();
    let ca = match (ca_cert_path.exists(), ca_key_path.exists()) {
        (true, true) => CertAuthority::load(&ca_cert_path, &ca_key_path)?,
        (false, false) => {
            validate_cluster_name(cluster_name)?;
            std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
                path: dir.to_path_buf(),
                source,
            })?;
            let ca = CertAuthority::generate(cluster_name)?;
            // The key first: a lone key is refused just like a lone certificate, but a lone
            // certificate would look like a CA whose key was lost.
            write_file(&ca_key_path, &ca.key_pem(), true)?;
            write_file(&ca_cert_path, &ca.cert_pem(), false)?;
            written.push(ca_cert_path);
            written.push(ca_key_path);
            ca
        }
        (true, false) => {
            return Err(TlsError::BadAuthority {
                path: ca_cert_path,
                reason: format!("its key {} is missing", ca_key_path.display()),
            })
        }
        (false, true) => {
            return Err(TlsError::BadAuthority {
                path: ca_key_path,
                reason: format!("its certificate {} is missing", ca_cert_path.display()),
            })
        }
    };

    let mut write_pair = |stem: &str, (cert, key): (String, String)| {
        let cert_path = dir.join(format!("{stem}.pem"));
        let key_path = dir.join(format!("{stem}.key"));
        write_file(&key_path, &key, true)?;
        write_file(&cert_path, &cert, false)?;
        written.push(cert_path);
        written.push(key_path);
        Ok::<(), TlsError>(())
    };
    for &id in nodes {
        write_pair(&node_file_stem(id), ca.issue_node(id)?)?;
    }
    for name in clients {
        write_pair(name, ca.issue_client(name)?)?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::SocketAddr;

    use rustls::pki_types::PrivatePkcs8KeyDer;

    use tokio::time::timeout;

    const TEST_TIMEOUT: Duration = Duration::from_secs(10);

    fn loopback() -> SocketAddr {
        SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0))
    }

    /// What the server saw of one accepted connection: the negotiated ALPN, `peer_is_node`
    /// for ids 1..=3 and `peer_node_id`.
    type Report = (Vec<u8>, [bool; 3], Option<u64>);

    /// Starts a node server that echoes every bidirectional stream and sends a [`Report`]
    /// per accepted connection.
    fn echo_server(
        identity: &Identity,
    ) -> (
        quinn::Endpoint,
        tokio::sync::mpsc::UnboundedReceiver<Report>,
    ) {
        let endpoint =
            quinn::Endpoint::server(server_config(identity).unwrap(), loopback()).unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let server = endpoint.clone();
        tokio::spawn(async move {
            while let Some(incoming) = server.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    let _ = tx.send((
                        alpn_of(&conn),
                        [
                            peer_is_node(&conn, 1),
                            peer_is_node(&conn, 2),
                            peer_is_node(&conn, 3),
                        ],
                        peer_node_id(&conn),
                    ));
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        tokio::spawn(async move {
                            if let Ok(data) = recv.read_to_end(1 << 20).await {
                                let _ = send.write_all(&data).await;
                                let _ = send.finish();
                            }
                        });
                    }
                });
            }
        });
        (endpoint, rx)
    }

    fn alpn_of(conn: &quinn::Connection) -> Vec<u8> {
        conn.handshake_data()
            .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|h| h.protocol)
            .unwrap_or_default()
    }

    /// Sends `msg` on a new stream and returns the answer.
    async fn round_trip(conn: &quinn::Connection, msg: &[u8]) -> anyhow::Result<Vec<u8>> {
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(msg).await?;
        send.finish()?;
        Ok(recv.read_to_end(1 << 20).await?)
    }

    /// Dials `server` and, if the handshake succeeds, does one round trip.
    async fn dial(
        identity: &Identity,
        alpn: &[u8],
        server: SocketAddr,
        server_name: &str,
    ) -> anyhow::Result<(quinn::Connection, Vec<u8>)> {
        let client = quinn::Endpoint::client(loopback())?;
        let conn = client
            .connect_with(client_config(identity, alpn)?, server, server_name)?
            .await?;
        let answer = round_trip(&conn, b"ping").await?;
        Ok((conn, answer))
    }

    fn cluster(dir: &Path) -> (Identity, Identity, Identity) {
        write_cluster_certs(dir, "test", &[1, 2], &["alice".to_string()]).unwrap();
        (
            Identity::load(&TlsFiles::for_node(dir, 1)).unwrap(),
            Identity::load(&TlsFiles::for_node(dir, 2)).unwrap(),
            Identity::load(&TlsFiles::in_dir(dir, "alice")).unwrap(),
        )
    }

    #[tokio::test]
    async fn same_ca_node_and_client_connect_with_both_alpns() {
        let dir = tempfile::tempdir().unwrap();
        let (node1, node2, alice) = cluster(dir.path());
        let (server, mut reports) = echo_server(&node1);
        let addr = server.local_addr().unwrap();

        // Node 2 dials node 1 as a peer, verifying node 1's own name.
        let (conn, answer) = timeout(
            TEST_TIMEOUT,
            dial(&node2, PEER_ALPN, addr, &node_server_name(1)),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(answer, b"ping");
        assert_eq!(alpn_of(&conn), PEER_ALPN);
        assert!(peer_is_node(&conn, 1));
        assert!(!peer_is_node(&conn, 2));
        assert_eq!(peer_node_id(&conn), Some(1));
        let (alpn, is_node, id) = reports.recv().await.unwrap();
        assert_eq!(alpn, PEER_ALPN);
        assert_eq!(is_node, [false, true, false]);
        assert_eq!(id, Some(2));

        // A client that only knows the address verifies the cluster name.
        let (conn, answer) = timeout(
            TEST_TIMEOUT,
            dial(&alice, CLIENT_ALPN, addr, CLUSTER_SERVER_NAME),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(answer, b"ping");
        assert_eq!(alpn_of(&conn), CLIENT_ALPN);
        assert!(peer_is_node(&conn, 1));
        let (alpn, is_node, id) = reports.recv().await.unwrap();
        assert_eq!(alpn, CLIENT_ALPN);
        assert_eq!(is_node, [false, false, false]);
        assert_eq!(id, None);

        // A node may also speak the client protocol, and dial by IP address.
        let (_, answer) = timeout(TEST_TIMEOUT, dial(&node2, CLIENT_ALPN, addr, "127.0.0.1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(answer, b"ping");

        // Dialing node 1 while expecting node 2 fails the name check.
        let wrong = timeout(
            TEST_TIMEOUT,
            dial(&node2, PEER_ALPN, addr, &node_server_name(2)),
        )
        .await
        .unwrap();
        assert!(wrong.is_err());
        server.close(0u32.into(), b"done");
    }

    #[tokio::test]
    async fn client_certificate_from_another_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let (node1, _, _) = cluster(dir.path());
        write_cluster_certs(other.path(), "other", &[1], &["mallory".to_string()]).unwrap();
        // Mallory trusts the right CA but her certificate comes from another one.
        let mut mallory = Identity::load(&TlsFiles::in_dir(other.path(), "mallory")).unwrap();
        mallory.ca = node1.ca.clone();
        let mut impostor = Identity::load(&TlsFiles::for_node(other.path(), 1)).unwrap();
        impostor.ca = node1.ca.clone();

        let (server, mut reports) = echo_server(&node1);
        let addr = server.local_addr().unwrap();
        for (identity, alpn) in [(&mallory, CLIENT_ALPN), (&impostor, PEER_ALPN)] {
            let result = timeout(
                TEST_TIMEOUT,
                dial(identity, alpn, addr, CLUSTER_SERVER_NAME),
            )
            .await
            .expect("the server must close the connection, not hang");
            assert!(result.is_err(), "a foreign certificate got an answer");
        }
        assert!(reports.try_recv().is_err(), "a foreign client was accepted");
        server.close(0u32.into(), b"done");
    }

    #[tokio::test]
    async fn client_trusting_another_ca_refuses_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let (node1, _, mut alice) = cluster(dir.path());
        write_cluster_certs(other.path(), "other", &[], &[]).unwrap();
        alice.ca = read_certs(&other.path().join("ca.pem")).unwrap();

        let (server, _reports) = echo_server(&node1);
        let addr = server.local_addr().unwrap();
        let result = timeout(
            TEST_TIMEOUT,
            dial(&alice, CLIENT_ALPN, addr, CLUSTER_SERVER_NAME),
        )
        .await
        .unwrap();
        assert!(result.is_err());
        server.close(0u32.into(), b"done");
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write_cluster_certs(dir.path(), "test", &[1], &[]).unwrap();
        let good = TlsFiles::for_node(dir.path(), 1);

        let missing = dir.path().join("missing.pem");
        let files = TlsFiles {
            ca: missing.clone(),
            ..good.clone()
        };
        match Identity::load(&files) {
            Err(TlsError::Read { path, .. }) => assert_eq!(path, missing),
            other => panic!("expected a read error, got {other:?}"),
        }

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing to see here\n").unwrap();
        let files = TlsFiles {
            cert: empty.clone(),
            ..good.clone()
        };
        match Identity::load(&files) {
            Err(e @ TlsError::NoCertificate { .. }) => {
                assert!(e.to_string().contains(&*empty.to_string_lossy()));
            }
            other => panic!("expected no certificate, got {other:?}"),
        }

        // A certificate file where the key should be.
        let files = TlsFiles {
            key: good.cert.clone(),
            ..good.clone()
        };
        match Identity::load(&files) {
            Err(TlsError::NoKey { path }) => assert_eq!(path, good.cert),
            other => panic!("expected no key, got {other:?}"),
        }

        let broken = dir.path().join("broken.pem");
        std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\n!!!!\n").unwrap();
        let files = TlsFiles {
            ca: broken.clone(),
            ..good.clone()
        };
        match Identity::load(&files) {
            Err(TlsError::Pem { path, .. }) => assert_eq!(path, broken),
            other => panic!("expected malformed PEM, got {other:?}"),
        }

        let identity = Identity::load(&good).unwrap();
        assert_eq!(identity.ca.len(), 1);
        assert_eq!(identity.chain.len(), 1);
        assert!(server_config(&identity.clone()).is_ok());
    }

    #[test]
    fn mismatched_key_and_certificate_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_cluster_certs(dir.path(), "test", &[1], &[]).unwrap();
        let other = CertAuthority::generate("other").unwrap();
        let other_key = dir.path().join("other.key");
        std::fs::write(&other_key, other.key_pem()).unwrap();
        match CertAuthority::load(&dir.path().join("ca.pem"), &other_key) {
            Err(TlsError::BadAuthority { path, .. }) => assert_eq!(path, other_key),
            other => panic!("expected a bad authority, got {other:?}"),
        }
        // A node certificate is no CA.
        let node_key = dir.path().join("node-1.key");
        let node_cert = dir.path().join("node-1.pem");
        match CertAuthority::load(&node_cert, &node_key) {
            Err(e @ TlsError::BadAuthority { .. }) => {
                assert!(e.to_string().contains("not a CA certificate"), "{e}");
            }
            other => panic!("expected a bad authority, got {other:?}"),
        }

        // The identity's key does not match its certificate.
        let mut identity = Identity::load(&TlsFiles::for_node(dir.path(), 1)).unwrap();
        identity.key =
            PrivatePkcs8KeyDer::from(KeyPair::generate().unwrap().serialize_der()).into();
        assert!(matches!(server_config(&identity), Err(TlsError::Rustls(_))));
    }

    #[test]
    fn cluster_directory_is_extended_and_the_ca_reused() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let first = write_cluster_certs(&certs, "test", &[1, 2], &["client".to_string()]).unwrap();
        let names: Vec<_> = first
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "ca.pem",
                "ca.key",
                "node-1.pem",
                "node-1.key",
                "node-2.pem",
                "node-2.key",
                "client.pem",
                "client.key"
            ]
        );
        let ca_before = std::fs::read_to_string(certs.join("ca.pem")).unwrap();
        let second = write_cluster_certs(&certs, "ignored", &[3], &[]).unwrap();
        assert_eq!(second, [certs.join("node-3.pem"), certs.join("node-3.key")]);
        assert_eq!(
            std::fs::read_to_string(certs.join("ca.pem")).unwrap(),
            ca_before
        );

        // The reloaded CA issues certificates that verify against the original.
        let ca = CertAuthority::load(&certs.join("ca.pem"), &certs.join("ca.key")).unwrap();
        assert_eq!(ca.cert_pem(), ca_before);
        let node3 = Identity::load(&TlsFiles::for_node(&certs, 3)).unwrap();
        verify_chain(&node3.chain[0], &node3.ca[0]).unwrap();
        assert!(cert_is_valid_for(&node3.chain[0], &node_server_name(3)));
        assert!(cert_is_valid_for(&node3.chain[0], CLUSTER_SERVER_NAME));
        assert!(cert_is_valid_for(&node3.chain[0], "localhost"));
        let client = Identity::load(&TlsFiles::in_dir(&certs, "client")).unwrap();
        assert!(cert_is_valid_for(&client.chain[0], "client.client.raftkv"));
        assert!(!cert_is_valid_for(&client.chain[0], CLUSTER_SERVER_NAME));

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            for key in ["ca.key", "node-1.key", "node-3.key", "client.key"] {
                let mode = std::fs::metadata(certs.join(key))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{key}");
            }
        }

        // A lone CA certificate is not silently replaced.
        std::fs::remove_file(certs.join("ca.key")).unwrap();
        assert!(matches!(
            write_cluster_certs(&certs, "test", &[4], &[]),
            Err(TlsError::BadAuthority { .. })
        ));
    }

    #[test]
    fn names_and_ids_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "",
            "Alice",
            "a b",
            "-a",
            "a-",
            "ca",
            "node-1",
            "a.b",
            &"x".repeat(64),
        ] {
            assert!(validate_client_name(bad).is_err(), "{bad:?}");
            assert!(
                write_cluster_certs(dir.path(), "t", &[1], &[bad.to_string()]).is_err(),
                "{bad:?}"
            );
        }
        for good in ["client", "alice-2", "0"] {
            validate_client_name(good).unwrap();
        }
        assert!(write_cluster_certs(dir.path(), "t", &[0], &[]).is_err());
        assert!(write_cluster_certs(dir.path(), "t", &[1, 1], &[]).is_err());
        assert!(write_cluster_certs(dir.path(), "t", &[1], &["a".into(), "a".into()]).is_err());
        assert!(write_cluster_certs(dir.path(), "", &[1], &[]).is_err());
        // Nothing was written by the refused calls.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        assert_eq!(parse_node_server_name("node-17.raftkv"), Some(17));
        assert_eq!(parse_node_server_name("node-017.raftkv"), None);
        assert_eq!(parse_node_server_name("node-.raftkv"), None);
        assert_eq!(parse_node_server_name("node-1.raftkvx"), None);
        assert_eq!(parse_node_server_name("node-1xraftkv"), None);
    }

    #[test]
    fn distinguished_names_round_trip() {
        let ca = CertAuthority::generate("Ünïcode cluster").unwrap();
        let cert = webpki::EndEntityCert::try_from(ca.cert_der()).unwrap();
        let dn = parse_distinguished_name(cert.subject()).unwrap();
        assert_eq!(dn, ca_distinguished_name("Ünïcode cluster"));
        assert_eq!(
            decode_oid(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]).unwrap(),
            [1, 2, 840, 113549]
        );
        assert!(decode_oid(&[0x86]).is_err());
    }
}
