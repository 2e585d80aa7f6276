//! An Istio CA for tests: `IstioCertificateService/CreateCertificate` over gRPC
//! with TLS on loopback, built on the waypoint's own proto module.
//!
//! Like istiod it authenticates the caller by the bearer token and names the
//! certificate after the token's identity, taking only the public key from the
//! CSR; one root signs both its serving certificate and the workload
//! certificates. The test drives it: which tokens are good ([`TestCa::allow`]),
//! how long certificates live ([`TestCa::set_validity`]), and whether it is
//! listening at all ([`TestCa::down`], [`TestCa::up`], on the same address).
//!
//! ```no_run
//! # async fn demo() {
//! use waypoint::testing::ca_server::TestCa;
//! use waypoint::identity::SpiffeId;
//! let ca = TestCa::start().await;
//! ca.allow("token-1", SpiffeId::new("cluster.local", "default", "waypoint"));
//! let dir = tempfile::tempdir().unwrap();
//! let root = ca.write_root(dir.path()); // for `waypoint run --ca-root-cert`
//! // `waypoint run --ca-address {ca.address()} --ca-token-file <a file holding token-1>`
//! # }
//! ```

use crate::ca::proto::{IstioCertificateRequest, IstioCertificateResponse};
use crate::identity::{DevCa, SpiffeId};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub struct TestCa {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Tells the listener and its connections to stop; `None` while down.
    running: Mutex<Option<watch::Sender<bool>>>,
}

struct Shared {
    ca: DevCa,
    tls: Arc<ServerConfig>,
    tokens: Mutex<HashMap<String, SpiffeId>>,
    validity: Mutex<Duration>,
    issued: AtomicU64,
    refused: AtomicU64,
}

impl TestCa {
    /// A CA listening on a free loopback port, issuing one-hour certificates.
    pub async fn start() -> TestCa {
        let ca = Self::new();
        ca.up().await;
        ca
    }

    /// A CA with an address that nothing listens on until [`up`](Self::up).
    pub fn new() -> TestCa {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port");
        let ca = DevCa::new("test Istio CA").expect("test CA");
        let serving = ca
            .issue_with_sans(vec![
                rcgen::SanType::IpAddress(addr.ip()),
                rcgen::SanType::DnsName("localhost".try_into().expect("DNS name")),
            ])
            .expect("serving certificate");
        let chain = CertificateDer::pem_slice_iter(serving.chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("serving chain");
        let key = PrivateKeyDer::from_pem_slice(serving.key_pem.as_bytes()).expect("serving key");
        let mut tls =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("serving identity");
        tls.alpn_protocols = vec![b"h2".to_vec()];
        TestCa {
            addr,
            shared: Arc::new(Shared {
                ca,
                tls: Arc::new(tls),
                tokens: Mutex::new(HashMap::new()),
                validity: Mutex::new(Duration::from_secs(3600)),
                issued: AtomicU64::new(0),
                refused: AtomicU64::new(0),
            }),
            running: Mutex::new(None),
        }
    }

    /// For `--ca-address`.
    pub fn address(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The root of both the serving and the workload certificates.
    pub fn root_pem(&self) -> &str {
        self.shared.ca.root_pem()
    }

    /// The CA itself, to issue the tests' client certificates from the same root.
    pub fn dev_ca(&self) -> &DevCa {
        &self.shared.ca
    }

    /// Writes `root-cert.pem` into `dir`, for `--ca-root-cert`; returns its path.
    pub fn write_root(&self, dir: &Path) -> PathBuf {
        let path = dir.join("root-cert.pem");
        std::fs::write(&path, self.root_pem()).expect("writing the root");
        path
    }

    /// Accepts `token` as the credential of `id`.
    pub fn allow(&self, token: &str, id: SpiffeId) {
        self.shared
            .tokens
            .lock()
            .expect("tokens")
            .insert(token.to_string(), id);
    }

    /// The longest lifetime issued (a shorter requested one is honoured).
    pub fn set_validity(&self, validity: Duration) {
        *self.shared.validity.lock().expect("validity") = validity;
    }

    /// Certificates issued so far.
    pub fn issued(&self) -> u64 {
        self.shared.issued.load(Ordering::Acquire)
    }

    /// Requests refused so far.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Acquire)
    }

    /// Starts listening on this CA's address (again).
    pub async fn up(&self) {
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("binding the test CA's address");
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(serve(listener, self.shared.clone(), stopped));
        *self.running.lock().expect("running") = Some(stop);
    }

    /// Stops listening and drops every connection: dials are refused, as when
    /// istiod is not running.
    pub fn down(&self) {
        if let Some(stop) = self.running.lock().expect("running").take() {
            let _ = stop.send(true);
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        self.down();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = stopped.changed() => return,
        };
        let (shared, mut stopped) = (shared.clone(), stopped.clone());
        tokio::spawn(async move {
            let conn = async {
                let acceptor = tokio_rustls::TlsAcceptor::from(shared.tls.clone());
                // A client that does not trust us ends the handshake; nothing to do.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| {
                    let shared = shared.clone();
                    async move {
                        let handler = move |r| sign(shared.clone(), r);
                        Ok::<_, std::convert::Infallible>(
                            crate::ca::proto::serve_create_certificate(req, handler).await,
                        )
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            };
            tokio::select! {
                _ = conn => {}
                _ = stopped.changed() => {}
            }
        });
    }
}

async fn sign(
    shared: Arc<Shared>,
    request: tonic::Request<IstioCertificateRequest>,
) -> Result<tonic::Response<IstioCertificateResponse>, tonic::Status> {
    let refuse = |status: tonic::Status| {
        shared.refused.fetch_add(1, Ordering::AcqRel);
        Err(status)
    };
    let bearer = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let Some(token) = bearer else {
        return refuse(tonic::Status::unauthenticated(
            "no bearer token in the authorization header",
        ));
    };
    let id = shared.tokens.lock().expect("tokens").get(&token).cloned();
    let Some(id) = id else {
        return refuse(tonic::Status::unauthenticated(
            "authenticate failed: the token is not valid (expired or unknown)",
        ));
    };
    let request = request.into_inner();
    let most = *shared.validity.lock().expect("validity");
    let asked = u64::try_from(request.validity_duration)
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
        .unwrap_or(most);
    let not_after = SystemTime::now() + asked.min(most);
    match shared.ca.sign_request(&request.csr, &id, not_after) {
        Ok(leaf) => {
            shared.issued.fetch_add(1, Ordering::AcqRel);
            Ok(tonic::Response::new(IstioCertificateResponse {
                cert_chain: vec![leaf, shared.ca.root_pem().to_string()],
                root_cert: None,
            }))
        }
        Err(e) => refuse(tonic::Status::invalid_argument(format!("bad CSR: {e}"))),
    }
}
