//! The host's TLS identity: a self-signed certificate created on first start and kept in the data
//! directory, identified to devices by the SHA-256 fingerprint of its DER encoding. Devices pin the
//! fingerprint instead of trusting a CA, as WebTransport's `serverCertificateHashes` does.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Files in the data directory.
const CERT_FILE: &str = "cert.der";
const KEY_FILE: &str = "key.der";
/// Hex SHA-256 of `cert.der`, for operators and scripts.
pub const FINGERPRINT_FILE: &str = "fingerprint";

/// A loaded or freshly made certificate and key.
pub(crate) struct Identity {
    /// DER certificate.
    pub(crate) cert: CertificateDer<'static>,
    /// PKCS#8 key.
    pub(crate) key: PrivateKeyDer<'static>,
    /// Lower-case hex SHA-256 of the certificate.
    pub(crate) fingerprint: String,
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
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        fingerprint: fp,
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

/// The QUIC server configuration: TLS 1.3 with ALPN `farview/1`.
/// `idle_timeout`: how long a silent device keeps its place; the host pings at a third of it so a
/// live device never reaches it.
pub(crate) fn server_config(
    id: &Identity,
    idle_timeout: std::time::Duration,
) -> Result<quinn::ServerConfig, BoxError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![id.cert.clone()], id.key.clone_key())?;
    tls.alpn_protocols = vec![farview_protocol::ALPN.to_vec()];
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
        server_config(&a, std::time::Duration::from_secs(10)).unwrap();
    }
}
