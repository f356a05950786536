//! TLS: a listener's server configuration from its certificates (SNI picks the certificate whose
//! names match, else the default one), and the client configuration health checks use (ELB
//! does not verify its targets' certificates).

use crate::config::Certificate;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why a certificate cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate {arn}: {reason}")]
    Certificate { arn: String, reason: String },
    #[error("a TLS listener needs a certificate")]
    NoCertificate,
}

/// A listener's TLS server configuration; `alpn` lists the protocols it offers, best first.
pub fn server_config(certs: &[Certificate], alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let provider = provider();
    let mut keys = Vec::with_capacity(certs.len());
    for c in certs {
        let bad = |reason: String| TlsError::Certificate { arn: c.arn.clone(), reason };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(c.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| bad(format!("the certificate chain is not valid PEM ({e})")))?;
        if chain.is_empty() {
            return Err(bad("the certificate chain holds no certificate".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(c.private_key_pem.as_bytes())
            .map_err(|e| bad(format!("the private key is not valid PEM ({e})")))?;
        let key = CertifiedKey::from_der(chain, key, &provider).map_err(|e| bad(e.to_string()))?;
        keys.push(Arc::new(key));
    }
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Certificate { arn: certs[0].arn.clone(), reason: e.to_string() })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Sni { keys }));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Picks the first certificate valid for the client's server name, else the default (first).
#[derive(Debug)]
struct Sni {
    keys: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Sni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = hello.server_name().and_then(|n| ServerName::try_from(n).ok()) {
            for key in &self.keys {
                let Some(leaf) = key.cert.first() else { continue };
                let Ok(cert) = webpki::EndEntityCert::try_from(leaf) else { continue };
                if cert.verify_is_valid_for_subject_name(&name).is_ok() {
                    return Some(key.clone());
                }
            }
        }
        self.keys.first().cloned()
    }
}

/// A client configuration that accepts any certificate, as ELB's health checks do.
pub fn insecure_client() -> Arc<rustls::ClientConfig> {
    let provider = provider();
    let verifier = Arc::new(AnyCertificate(provider.clone()));
    // The ring provider supports TLS 1.2 and 1.3, so the builder cannot refuse them.
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Arc::new(config)
}

#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
