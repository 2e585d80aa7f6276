//! TLS for HBONE: TLS 1.3 only, mutual auth, ALPN `h2`, and SPIFFE identities in
//! place of DNS names.
//!
//! rustls' stock verifiers check DNS/IP SANs; Istio certificates carry only a URI
//! SAN, so both directions wrap webpki's chain validation with a SPIFFE check.

use crate::identity::{spiffe_id_of, CertBundle, SpiffeId};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, Error, RootCertStore,
    ServerConfig, SignatureScheme,
};
use std::sync::Arc;

pub const ALPN_H2: &[u8] = b"h2";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn root_store(bundle: &CertBundle) -> Result<Arc<RootCertStore>, Error> {
    let mut roots = RootCertStore::empty();
    for root in &bundle.roots {
        roots.add(root.clone())?;
    }
    Ok(Arc::new(roots))
}

/// The server side of an HBONE listener: a client certificate chained to our roots
/// and carrying a SPIFFE ID is required.
pub fn server_config(bundle: &CertBundle) -> Result<Arc<ServerConfig>, Error> {
    let provider = provider();
    let inner = WebPkiClientVerifier::builder_with_provider(root_store(bundle)?, provider.clone())
        .build()
        .map_err(|e| Error::General(e.to_string()))?;
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(SpiffeClientVerifier { inner }))
        .with_single_cert(bundle.chain.clone(), bundle.key.clone_key())?;
    cfg.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(cfg))
}

/// The client side: presents our certificate and accepts a server whose chain leads
/// to our roots and whose SPIFFE ID is `expected` (any SPIFFE ID when `None`).
pub fn client_config(
    bundle: &CertBundle,
    expected: Option<SpiffeId>,
) -> Result<Arc<ClientConfig>, Error> {
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(server_verifier(bundle, expected)?)
        .with_client_auth_cert(bundle.chain.clone(), bundle.key.clone_key())?;
    cfg.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(cfg))
}

/// Checks a server's chain against our roots and its SPIFFE ID against `expected`.
pub fn server_verifier(
    bundle: &CertBundle,
    expected: Option<SpiffeId>,
) -> Result<Arc<dyn ServerCertVerifier>, Error> {
    Ok(Arc::new(SpiffeServerVerifier {
        roots: root_store(bundle)?,
        algs: provider().signature_verification_algorithms,
        expected,
    }))
}

#[derive(Debug)]
struct SpiffeClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if spiffe_id_of(end_entity).is_none() {
            return Err(no_spiffe_id());
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A handshake failure in words an operator can act on: rustls prints our own
/// verifier errors with `Debug`, which hides their message.
pub fn describe_io_error(e: &std::io::Error) -> String {
    let tls = e.get_ref().and_then(|inner| inner.downcast_ref::<Error>());
    match tls {
        Some(Error::InvalidCertificate(CertificateError::Other(other))) => {
            format!("invalid peer certificate: {}", other.0)
        }
        Some(tls) => tls.to_string(),
        None => e.to_string(),
    }
}

fn no_spiffe_id() -> Error {
    Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        NoSpiffeId,
    ))))
}

#[derive(Debug, thiserror::Error)]
#[error("peer certificate has no SPIFFE URI SAN")]
struct NoSpiffeId;

#[derive(Debug, thiserror::Error)]
#[error("peer identity is {presented}, expected {expected}")]
pub struct WrongIdentity {
    pub expected: SpiffeId,
    pub presented: SpiffeId,
}

#[derive(Debug)]
struct SpiffeServerVerifier {
    roots: Arc<RootCertStore>,
    algs: WebPkiSupportedAlgorithms,
    expected: Option<SpiffeId>,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algs.all,
        )?;
        let presented = spiffe_id_of(end_entity).ok_or_else(no_spiffe_id)?;
        match &self.expected {
            Some(expected) if *expected != presented => Err(Error::InvalidCertificate(
                CertificateError::Other(rustls::OtherError(Arc::new(WrongIdentity {
                    expected: expected.clone(),
                    presented,
                }))),
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        // The config allows TLS 1.3 only; a 1.2 signature means something is wrong.
        Err(Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
