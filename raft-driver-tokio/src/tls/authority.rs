//! The cluster certificate authority: names, validation, issuing and writing certificates.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::string::{BmpString, Ia5String, PrintableString, TeletexString, UniversalString};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData as _, SanType,
};
use rustls::pki_types::{CertificateDer, UnixTime};

use super::*;

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

pub(super) fn ca_distinguished_name(cluster_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, cluster_name);
    dn.push(DnType::CommonName, format!("{cluster_name} cluster CA"));
    dn
}

/// Verifies that `leaf` chains directly to `ca` for client authentication, now.
pub(super) fn verify_chain(
    leaf: &CertificateDer<'_>,
    ca: &CertificateDer<'_>,
) -> Result<(), webpki::Error> {
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
pub(super) fn decode_oid(bytes: &[u8]) -> Result<Vec<u64>, String> {
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
pub(super) fn parse_distinguished_name(der: &[u8]) -> Result<DistinguishedName, String> {
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
