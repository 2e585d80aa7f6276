//! One `CreateCertificate` call: a TLS connection to the CA verified against the
//! mounted root, the token as the bearer credential, and the answer checked and
//! turned into the identity to serve.
//!
//! Every call dials anew and re-reads the token and the root. Calls come hours
//! apart, so a held connection would save nothing, and re-reading means a token
//! kubelet rotated, or a root istiod rotated, is used at the next call with no
//! file watcher. Connecting ourselves (rather than handing tonic an address)
//! keeps the failure's cause typed: no connection, a refused TLS handshake, or a
//! gRPC answer.

use super::args::CaConfig;
use super::csr::Csr;
use super::proto::{self, IstioCertificateRequest};
use super::CaError;
use crate::identity::CertBundle;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tonic::metadata::MetadataValue;

/// How long one attempt (connect, handshake, answer) may take; istiod signs in
/// milliseconds, so this only bounds a CA that accepts and then hangs.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct CaClient {
    pub config: CaConfig,
}

impl CaClient {
    /// Asks the CA for a certificate for a new key, returning the identity to
    /// install. The identity is the one the CA put in the leaf: istiod takes it
    /// from the token, whatever the request asked for.
    pub async fn issue(&self) -> Result<CertBundle, CaError> {
        let c = &self.config;
        let address = c.address.to_string();
        let token = read_token(c)?;
        let roots = read_roots(c)?;
        let csr = Csr::new(&c.id)?;
        let lost = |message: String| CaError::Unreachable {
            address: address.clone(),
            message,
        };
        let attempt = async {
            let tls = connect(c, &roots).await?;
            // The connection is made: tonic gets it through a connector that hands
            // it over once, so a broken one fails the call instead of redialing.
            let slot = Arc::new(Mutex::new(Some(TokioIo::new(tls))));
            let connector = tower::service_fn(move |_: http::Uri| {
                let io = slot.lock().expect("connector slot").take();
                async move {
                    io.ok_or_else(|| std::io::Error::other("the CA connection was already used"))
                }
            });
            let channel = tonic::transport::Endpoint::from(c.address.uri.clone())
                .connect_with_connector(connector)
                .await
                .map_err(|e| lost(format!("HTTP/2 over TLS failed: {}", chain(&e))))?;
            let mut request = tonic::Request::new(IstioCertificateRequest {
                csr: csr.pem.clone(),
                validity_duration: i64::try_from(c.ttl.as_secs()).unwrap_or(i64::MAX),
                metadata: None,
            });
            let md = request.metadata_mut();
            md.insert("authorization", token);
            if let Some(id) = &c.cluster_id {
                if let Ok(v) = MetadataValue::try_from(id.as_str()) {
                    md.insert("clusterid", v);
                }
            }
            proto::create_certificate(channel, request)
                .await
                .map_err(|status| refused_or_lost(&address, status))
        };
        let response = tokio::time::timeout(ATTEMPT_TIMEOUT, attempt)
            .await
            .map_err(|_| lost(format!("no answer within {ATTEMPT_TIMEOUT:?}")))??
            .into_inner();
        let mounted: Vec<_> = roots.roots_der;
        super::issued::bundle(response, csr.key_der(), &mounted, SystemTime::now())
            .map_err(|reason| CaError::BadResponse { address, reason })
    }
}

/// `Bearer <token>`, the token trimmed of the newline editors and `kubectl`
/// leave.
fn read_token(c: &CaConfig) -> Result<MetadataValue<tonic::metadata::Ascii>, CaError> {
    let err = |source| CaError::Token {
        path: c.token_file.clone(),
        source,
    };
    let text = std::fs::read_to_string(&c.token_file).map_err(err)?;
    let token = text.trim();
    if token.is_empty() {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file is empty",
        )));
    }
    MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
        err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the token has characters a header cannot carry",
        ))
    })
}

struct Roots {
    store: Arc<RootCertStore>,
    roots_der: Vec<CertificateDer<'static>>,
}

fn read_roots(c: &CaConfig) -> Result<Roots, CaError> {
    let err = |message: String| CaError::Root {
        path: c.root_cert.clone(),
        message,
    };
    let pem = std::fs::read(&c.root_cert).map_err(|e| err(e.to_string()))?;
    let roots_der = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("invalid PEM: {e}")))?;
    if roots_der.is_empty() {
        return Err(err("no PEM certificate".into()));
    }
    let mut store = RootCertStore::empty();
    for root in &roots_der {
        store
            .add(root.clone())
            .map_err(|e| err(format!("not a usable root: {e}")))?;
    }
    Ok(Roots {
        store: Arc::new(store),
        roots_der,
    })
}

/// TCP, then TLS verified against the mounted root for the address's host name,
/// as istiod's serving certificate names `istiod.istio-system.svc`.
async fn connect(c: &CaConfig, roots: &Roots) -> Result<TlsStream<TcpStream>, CaError> {
    let address = c.address.to_string();
    let tcp = TcpStream::connect((c.address.host.as_str(), c.address.port))
        .await
        .map_err(|e| CaError::Unreachable {
            address: address.clone(),
            message: e.to_string(),
        })?;
    let _ = tcp.set_nodelay(true);
    let mut tls =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| CaError::Root {
                path: c.root_cert.clone(),
                message: e.to_string(),
            })?
            .with_root_certificates(roots.store.clone())
            .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let name = ServerName::try_from(c.address.host.clone()).map_err(|e| CaError::Unreachable {
        address: address.clone(),
        message: format!("not a host name: {e}"),
    })?;
    tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .map_err(|source| CaError::Tls { address, source })
}

/// tonic reports a lost connection as a `Status` too; one that carries a
/// transport error as its source never came from the CA.
fn refused_or_lost(address: &str, status: tonic::Status) -> CaError {
    if std::error::Error::source(&status).is_some() {
        return CaError::Unreachable {
            address: address.to_string(),
            message: chain(&status),
        };
    }
    CaError::Refused {
        address: address.to_string(),
        code: status.code(),
        message: status.message().to_string(),
    }
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests;
