//! Certificate pinning: the device trusts exactly the certificate whose SHA-256 fingerprint it was
//! given (printed by the host, later handed out by the session API), like WebTransport's
//! `serverCertificateHashes`. Handshake signatures are still verified with the pinned key, so a
//! man in the middle needs the host's private key, not just its certificate.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::ClientError;

/// A SHA-256 certificate fingerprint.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Parses 64 hex digits; colons and whitespace (as in `AA:BB:...`) are ignored.
    pub fn parse(s: &str) -> Result<Self, ClientError> {
        let cleaned: String = s
            .chars()
            .filter(|c| !c.is_whitespace() && *c != ':')
            .collect();
        let bytes =
            hex::decode(&cleaned).map_err(|e| ClientError::InvalidFingerprint(format!("{e}")))?;
        let arr: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            ClientError::InvalidFingerprint(format!(
                "need 32 bytes (64 hex digits), got {}",
                b.len()
            ))
        })?;
        Ok(Self(arr))
    }

    /// Fingerprint of a DER certificate.
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fingerprint({})", hex::encode(self.0))
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

#[derive(Debug)]
struct PinnedCert {
    fingerprint: Fingerprint,
    provider: Arc<CryptoProvider>,
    /// The fingerprint the host presented, kept so that a refused handshake can name both
    /// (rustls reports only that verification failed).
    presented: Arc<std::sync::OnceLock<Fingerprint>>,
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The pin replaces name and chain checks: the host's certificate is self-signed and its
        // address is whatever the operator deployed it on.
        let presented = Fingerprint::of_der(end_entity);
        let _ = self.presented.set(presented);
        if presented == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A QUIC client configuration that accepts only the pinned certificate, TLS 1.3, ALPN farview/1.
/// [`crate::Connection::connect`] uses it; it is public for tools that speak the protocol directly.
pub fn quic_client_config(fingerprint: Fingerprint) -> Result<quinn::ClientConfig, ClientError> {
    observed_quic_client_config(fingerprint).map(|(config, _)| config)
}

/// [`quic_client_config`], and where the fingerprint the host presents will be recorded.
pub(crate) fn observed_quic_client_config(
    fingerprint: Fingerprint,
) -> Result<(quinn::ClientConfig, Arc<std::sync::OnceLock<Fingerprint>>), ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let presented = Arc::new(std::sync::OnceLock::new());
    let verifier = Arc::new(PinnedCert {
        fingerprint,
        provider: provider.clone(),
        presented: presented.clone(),
    });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Connect {
            addr: None,
            reason: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![farview_protocol::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| {
        ClientError::Connect {
            addr: None,
            reason: e.to_string(),
        }
    })?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(std::time::Duration::from_secs(5)));
    config.transport_config(Arc::new(transport));
    Ok((config, presented))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_common_spellings() {
        let hex64 = "ab".repeat(32);
        let a = Fingerprint::parse(&hex64).unwrap();
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(Fingerprint::parse(&colons).unwrap(), a);
        assert_eq!(a.to_string(), hex64);
        assert!(Fingerprint::parse("abc").is_err());
        assert!(Fingerprint::parse(&"ab".repeat(31)).is_err());
        assert!(Fingerprint::parse(&"zz".repeat(32)).is_err());
    }
}
