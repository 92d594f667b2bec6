//! The host's TLS identities. Native devices (`farview/1`): a self-signed certificate created on
//! first start and kept in the data directory, identified by the SHA-256 fingerprint of its DER
//! encoding, which devices pin instead of trusting a CA. Browsers (WebTransport, ALPN `h3`):
//! `serverCertificateHashes` only accepts ECDSA P-256 certificates valid for at most 14 days, so
//! those live in memory, short-lived, and rotate ([`WebCertificates`]); the handshake picks one or
//! the other by the ALPN the client offers ([`DeviceCertResolver`]).

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Files in the data directory.
const CERT_FILE: &str = "cert.der";
const KEY_FILE: &str = "key.der";
/// Hex SHA-256 of `cert.der`, for operators and scripts.
pub const FINGERPRINT_FILE: &str = "fingerprint";

/// A loaded or freshly made certificate and key.
pub(crate) struct Identity {
    /// DER certificate (the leaf).
    pub(crate) cert: CertificateDer<'static>,
    /// Intermediate certificates after the leaf (a CA's chain; empty when self-signed).
    pub(crate) chain: Vec<CertificateDer<'static>>,
    /// Its private key (PKCS#8 when self-signed; PKCS#8, PKCS#1 or SEC1 from PEM).
    pub(crate) key: PrivateKeyDer<'static>,
    /// Lower-case hex SHA-256 of the certificate.
    pub(crate) fingerprint: String,
}

impl Identity {
    /// The leaf, then its intermediates: what a TLS server presents.
    pub(crate) fn full_chain(&self) -> Vec<CertificateDer<'static>> {
        std::iter::once(self.cert.clone())
            .chain(self.chain.iter().cloned())
            .collect()
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Hex SHA-256 of a DER certificate.
pub fn fingerprint(cert_der: &[u8]) -> String {
    hex::encode(Sha256::digest(cert_der))
}

/// Loads the identity from `data_dir`, creating it (and the directory) on first start.
pub(crate) fn load_or_create(data_dir: &Path) -> Result<Identity, BoxError> {
    std::fs::create_dir_all(data_dir)?;
    let (cert_path, key_path) = (data_dir.join(CERT_FILE), data_dir.join(KEY_FILE));
    let (cert, key) = if cert_path.exists() && key_path.exists() {
        (std::fs::read(&cert_path)?, std::fs::read(&key_path)?)
    } else {
        let ck = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "farview-host".to_owned(),
        ])?;
        let (cert, key) = (ck.cert.der().to_vec(), ck.key_pair.serialize_der());
        write_private(&key_path, &key)?;
        std::fs::write(&cert_path, &cert)?;
        tracing::info!(path = %cert_path.display(), "created a self-signed certificate");
        (cert, key)
    };
    let fp = fingerprint(&cert);
    std::fs::write(data_dir.join(FINGERPRINT_FILE), format!("{fp}\n"))?;
    Ok(Identity {
        cert: CertificateDer::from(cert),
        chain: Vec::new(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        fingerprint: fp,
    })
}

/// Loads a configured certificate chain (leaf first) and its key from PEM files.
pub(crate) fn load_pem(cert: &Path, key: &Path) -> Result<Identity, BoxError> {
    use rustls::pki_types::pem::PemObject;
    let mut certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", cert.display()).into());
    }
    let leaf = certs.remove(0);
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    Ok(Identity {
        fingerprint: fingerprint(&leaf),
        cert: leaf,
        chain: certs,
        key,
    })
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// How long a WebTransport certificate is valid: under the 14 days browsers accept, with room
/// for clock skew.
pub(crate) const WEB_CERT_VALIDITY: Duration = Duration::from_secs(13 * 24 * 3600);
/// How often the WebTransport certificate rotates. The next certificate is made (and its hash
/// published) a whole period before it is served, so a page that fetched the hashes shortly
/// before a rotation still connects after it.
pub(crate) const WEB_CERT_ROTATION: Duration = Duration::from_secs(5 * 24 * 3600);
/// Backdating of a new certificate's start, for clients whose clock is a little behind.
const WEB_CERT_BACKDATE: Duration = Duration::from_secs(3600);

/// One short-lived WebTransport certificate.
#[derive(Debug, Clone)]
struct WebCert {
    key: Arc<CertifiedKey>,
    /// Lower-case hex SHA-256 of the DER certificate (what `serverCertificateHashes` takes).
    hash: String,
}

impl WebCert {
    fn generate(now: SystemTime) -> Result<Self, BoxError> {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "farview-host".to_owned()])?;
        let start = time::OffsetDateTime::from(now - WEB_CERT_BACKDATE);
        params.not_before = start;
        params.not_after = start + WEB_CERT_VALIDITY;
        // ECDSA P-256 with SHA-256: the one key type browsers accept for certificate hashes.
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.self_signed(&key_pair)?;
        let der = CertificateDer::from(cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
        let signing = rustls::crypto::ring::sign::any_ecdsa_type(&key)?;
        Ok(Self {
            hash: fingerprint(&der),
            key: Arc::new(CertifiedKey::new(vec![der], signing)),
        })
    }
}

/// The certificate browsers are served now and the one they will be served after the next
/// rotation; both hashes are published, so either is accepted by a page that has them.
#[derive(Debug)]
pub(crate) struct WebCertificates {
    pair: RwLock<(WebCert, WebCert)>,
    /// When the next rotation is due, on the wall clock (a monotonic timer stops during a
    /// suspend; certificate validity does not).
    rotate_at: RwLock<SystemTime>,
}

impl WebCertificates {
    pub(crate) fn new(now: SystemTime) -> Result<Self, BoxError> {
        Ok(Self {
            pair: RwLock::new((WebCert::generate(now)?, WebCert::generate(now)?)),
            rotate_at: RwLock::new(now + WEB_CERT_ROTATION),
        })
    }

    /// Whether a rotation is due at `now`.
    pub(crate) fn rotation_due(&self, now: SystemTime) -> bool {
        self.rotate_at.read().map_or(true, |at| now >= *at)
    }

    /// Hex SHA-256 hashes to give `serverCertificateHashes`: the current certificate's, then
    /// the next one's.
    pub(crate) fn hashes(&self) -> Vec<String> {
        match self.pair.read() {
            Ok(p) => vec![p.0.hash.clone(), p.1.hash.clone()],
            Err(_) => Vec::new(),
        }
    }

    /// Serves the next certificate from now on and makes a new next one.
    pub(crate) fn rotate(&self, now: SystemTime) -> Result<(), BoxError> {
        let fresh = WebCert::generate(now)?;
        let mut pair = self
            .pair
            .write()
            .map_err(|_| "web certificates lock poisoned")?;
        let next = std::mem::replace(&mut pair.1, fresh);
        pair.0 = next;
        if let Ok(mut at) = self.rotate_at.write() {
            *at = now + WEB_CERT_ROTATION;
        }
        Ok(())
    }

    fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.pair.read().ok().map(|p| p.0.key.clone())
    }
}

/// Picks the certificate by the ALPN a client offers: browsers asking for HTTP/3 get the
/// short-lived WebTransport certificate, everyone else the pinned native one.
#[derive(Debug)]
struct DeviceCertResolver {
    native: Arc<CertifiedKey>,
    /// `None`: the native certificate is a CA's, served to browsers too.
    web: Option<Arc<WebCertificates>>,
}

impl ResolvesServerCert for DeviceCertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // The negotiated protocol is the server's first that the client offers (`farview/1`
        // before `h3`), so a client offering both gets `farview/1` and must get its certificate.
        let offered: Vec<&[u8]> = hello.alpn().map(|a| a.collect()).unwrap_or_default();
        let wants_h3 = offered.contains(&farview_protocol::WEBTRANSPORT_ALPN)
            && !offered.contains(&farview_protocol::ALPN);
        match &self.web {
            Some(web) if wants_h3 => web.current(),
            _ => Some(self.native.clone()),
        }
    }
}

/// The QUIC server configuration: TLS 1.3 with ALPN `farview/1` (native devices) and `h3`
/// (browsers' WebTransport), each with its certificate.
/// `idle_timeout`: how long a silent device keeps its place; the host pings at a third of it so a
/// live device never reaches it.
pub(crate) fn server_config(
    id: &Identity,
    web: Option<Arc<WebCertificates>>,
    idle_timeout: std::time::Duration,
) -> Result<quinn::ServerConfig, BoxError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let native = CertifiedKey::from_der(id.full_chain(), id.key.clone_key(), &provider)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(DeviceCertResolver {
            native: Arc::new(native),
            web,
        }));
    tls.alpn_protocols = vec![
        farview_protocol::ALPN.to_vec(),
        farview_protocol::WEBTRANSPORT_ALPN.to_vec(),
    ];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(4u32.into())
        // Devices open unidirectional streams only to upload models.
        .max_concurrent_uni_streams(4u32.into())
        .keep_alive_interval(Some(idle_timeout / 3))
        .max_idle_timeout(Some(idle_timeout.try_into()?));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint.len(), 64);
        let on_disk = std::fs::read_to_string(dir.path().join(FINGERPRINT_FILE)).unwrap();
        assert_eq!(on_disk.trim(), a.fingerprint);
        assert_eq!(
            fingerprint(&std::fs::read(dir.path().join(CERT_FILE)).unwrap()),
            a.fingerprint
        );
        let web = Arc::new(WebCertificates::new(SystemTime::now()).unwrap());
        server_config(&a, Some(web), std::time::Duration::from_secs(10)).unwrap();
    }

    /// Browsers accept a certificate hash only for ECDSA P-256 certificates valid for at most
    /// 14 days; rotation serves the published next certificate and publishes a new one.
    #[test]
    fn web_certificates_are_short_lived_p256_and_rotate() {
        use x509_parser::prelude::*;
        let now = SystemTime::now();
        let web = WebCertificates::new(now).unwrap();
        let before = web.hashes();
        assert_eq!(before.len(), 2);
        assert_ne!(before[0], before[1]);
        let current = web.current().unwrap();
        let der = current.cert[0].as_ref();
        assert_eq!(fingerprint(der), before[0]);
        let (_, cert) = X509Certificate::from_der(der).unwrap();
        let validity = cert.validity();
        let days = (validity.not_after.timestamp() - validity.not_before.timestamp()) / 86_400;
        assert!(days <= 14, "valid for {days} days");
        assert!(validity.is_valid(), "valid now");
        let key = &cert.public_key().algorithm;
        assert_eq!(
            key.algorithm,
            x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
        );
        let curve = key.parameters.as_ref().unwrap().as_oid().unwrap();
        assert_eq!(curve, x509_parser::oid_registry::OID_EC_P256);
        assert!(!web.rotation_due(now));
        assert!(web.rotation_due(now + WEB_CERT_ROTATION));
        web.rotate(now + WEB_CERT_ROTATION).unwrap();
        assert!(!web.rotation_due(now + WEB_CERT_ROTATION));
        let after = web.hashes();
        assert_eq!(
            after[0], before[1],
            "the published next certificate is served"
        );
        assert!(!before.contains(&after[1]));
    }
}
