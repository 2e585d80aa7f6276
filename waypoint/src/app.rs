//! Assembles the waypoint: the workers, each with its Pingora proxies and
//! upstream pools, the listeners that feed them, admin.

use crate::access_log::AccessLog;
use crate::detect::{detect, Expect};
use crate::dispatch::Dispatch;
use crate::hbone::server::HboneServer;
use crate::identity::IdentityStore;
use crate::proxy::WaypointProxy;
use crate::state::State;
use crate::workers::Workers;
use log::{info, warn};
use pingora::apps::HttpServerOptions;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest};
use pingora::proxy::{http_proxy, HttpProxy};
use pingora::server::configuration::ServerConf;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How often `--cert-dir` is checked for a rotated identity (a CA-fed store has
/// no directory, and its watch returns at once).
const ROTATION_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Requests one downstream HTTP/2 connection may have in flight at once.
const H2_MAX_STREAMS: u32 = 1000;

pub struct Listeners {
    pub hbone: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    /// Port of mesh endpoints' HBONE servers (15008); `None` sends plaintext to
    /// every endpoint (the demo, whose backends have no ztunnel in front).
    pub hbone_upstream_port: Option<u16>,
    /// Tunnels one upstream HBONE connection carries at most.
    pub hbone_streams_per_connection: usize,
    /// HTTP/2 windows and keepalive of HBONE connections, inbound and outbound.
    pub h2: crate::hbone::H2Settings,
    /// What a downstream peer is allowed.
    pub limits: crate::limits::Limits,
    /// Synthesize `x-forwarded-client-cert` from the source identity.
    pub xfcc: bool,
    /// One JSON line per request on stdout.
    pub access_log: bool,
    /// Appends the access log to this file instead of stdout.
    pub access_log_file: Option<std::path::PathBuf>,
    /// Istio's per-request metrics.
    pub request_metrics: bool,
    /// Where `/stats/prometheus` is served besides the admin listener.
    pub metrics: Vec<SocketAddr>,
    /// Spans per request, when an exporter is configured.
    pub tracing: Option<Arc<crate::trace::Tracing>>,
    /// Istio's `meshConfig.pathNormalization`.
    pub path_normalization: waypoint_filters::normalize::PathNormalization,
    /// How often remote JWKS are fetched again (istiod's default 20 min).
    pub jwks_refresh: std::time::Duration,
    /// Data-plane threads, each serving whole connections (`workers`); `None`
    /// is one per CPU.
    pub workers: Option<usize>,
}

impl Listeners {
    pub fn new(
        hbone: Option<SocketAddr>,
        http: Option<SocketAddr>,
        admin: Option<SocketAddr>,
    ) -> Self {
        Listeners {
            hbone,
            http,
            admin,
            hbone_upstream_port: Some(15008),
            hbone_streams_per_connection: 100,
            h2: Default::default(),
            limits: Default::default(),
            xfcc: false,
            access_log: true,
            access_log_file: None,
            request_metrics: true,
            metrics: Vec::new(),
            tracing: None,
            path_normalization: Default::default(),
            jwks_refresh: crate::jwt::jwks::DEFAULT_REFRESH,
            workers: None,
        }
    }
}

/// Counts something open (a connection, a tunnel) while held.
pub struct Active(Arc<AtomicUsize>);

impl Active {
    pub fn hold(counter: &Arc<AtomicUsize>) -> Active {
        counter.fetch_add(1, Ordering::AcqRel);
        Active(counter.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A running waypoint inside the current tokio runtime.
pub struct Waypoint {
    pub hbone_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    pub state: Arc<State>,
    shutdown: watch::Sender<bool>,
    active: Arc<AtomicUsize>,
    pub metrics: Arc<crate::metrics::Metrics>,
    access_log: Option<Arc<AccessLog>>,
    /// The accept loops hold the other references: once they have ended and
    /// this is dropped, the workers stop, with whatever they still run.
    workers: Arc<Workers<Arc<Dispatch>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("binding {what} listener on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the HBONE listener needs certificates (--cert-dir)")]
    NoCerts,
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("starting the access-log writer: {0}")]
    AccessLog(std::io::Error),
    #[error("starting the worker threads: {0}")]
    Workers(std::io::Error),
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

impl Waypoint {
    pub async fn start(
        listeners: Listeners,
        identity: Option<Arc<IdentityStore>>,
        state: Arc<State>,
    ) -> Result<Waypoint, StartError> {
        let (shutdown, watch) = watch::channel(false);
        let active = Arc::new(AtomicUsize::new(0));
        // Route policies bound retries; pingora's own cap must not cut them short.
        let conf = Arc::new(ServerConf {
            max_retries: 64,
            ..ServerConf::default()
        });
        let xfcc = identity.clone().filter(|_| listeners.xfcc);
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let dropped = metrics.access_log_dropped.clone();
        let access_log = match (listeners.access_log, &listeners.access_log_file) {
            (true, None) => Some(AccessLog::start(dropped)),
            (true, Some(path)) => Some(AccessLog::to_file(path, dropped)),
            (false, _) => None,
        };
        let access_log = access_log
            .transpose()
            .map_err(StartError::AccessLog)?
            .map(Arc::new);
        let jwks = crate::jwt::Jwks::new(listeners.jwks_refresh);
        tokio::spawn(jwks.clone().run(state.clone(), watch.clone()));
        let app = WaypointProxy::new(state.clone())
            .with_jwks(jwks)
            .with_metrics(metrics.clone())
            .with_xfcc(xfcc)
            .with_access_log(access_log.clone())
            .with_request_metrics(listeners.request_metrics)
            .with_limits(listeners.limits)
            .with_tracing(listeners.tracing.clone())
            .with_path_normalization(listeners.path_normalization);
        let shared = Shared {
            conf,
            state: state.clone(),
            app,
            identity: identity.clone(),
            active: active.clone(),
            metrics: metrics.clone(),
            access_log: access_log.clone(),
        };
        let workers = Workers::start(
            listeners.workers.unwrap_or_else(crate::workers::per_cpu),
            |_| shared.dispatch(&listeners),
        )
        .map_err(StartError::Workers)?;
        let workers = Arc::new(workers);
        metrics.register(crate::upstream::stats::UpstreamGauges::new(
            state.clone(),
            hbone_pools(&workers).collect(),
        ));
        let hbone_addr = match listeners.hbone {
            Some(addr) => {
                let identity = identity.clone().ok_or(StartError::NoCerts)?;
                let listener = bind("HBONE", addr).await?;
                let bound = listener.local_addr().ok();
                let server = Arc::new(HboneServer {
                    h2: listeners.h2,
                    limits: listeners.limits,
                    active: active.clone(),
                    metrics: metrics.clone(),
                    identity: identity.clone(),
                    state: state.clone(),
                });
                tokio::spawn(server.serve(listener, workers.clone(), watch.clone()));
                tokio::spawn(identity.watch(ROTATION_POLL, watch.clone()));
                bound
            }
            None => None,
        };
        let http_addr = match listeners.http {
            Some(addr) => {
                let listener = bind("plaintext HTTP", addr).await?;
                let bound = listener.local_addr().ok();
                tokio::spawn(serve_plaintext(
                    listener,
                    workers.clone(),
                    watch.clone(),
                    active.clone(),
                ));
                bound
            }
            None => None,
        };
        let admin_addr = match listeners.admin {
            Some(addr) => {
                let listener = bind("admin", addr).await?;
                let bound = listener.local_addr().ok();
                tokio::spawn(crate::admin::serve(
                    listener,
                    state.clone(),
                    metrics.clone(),
                    identity.clone(),
                    watch.clone(),
                ));
                bound
            }
            None => None,
        };
        // Istio's metrics ports (15020, 15090) serve the same admin handlers.
        for &addr in &listeners.metrics {
            let listener = bind("metrics", addr).await?;
            tokio::spawn(crate::admin::serve(
                listener,
                state.clone(),
                metrics.clone(),
                identity.clone(),
                watch.clone(),
            ));
        }
        state.set_ready(true);
        info!(
            "waypoint listening: hbone={} http={} admin={}",
            show(hbone_addr),
            show(http_addr),
            show(admin_addr)
        );
        Ok(Waypoint {
            hbone_addr,
            http_addr,
            admin_addr,
            state,
            shutdown,
            active,
            metrics,
            access_log,
            workers,
        })
    }

    /// Stops accepting and tells in-flight sessions to finish.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        // Idle upstream tunnels end cleanly now, not when the process goes.
        for pool in hbone_pools(&self.workers) {
            pool.close_idle();
        }
        self.flush_access_log();
    }

    /// Writes out buffered access-log lines, so none go with the process.
    pub fn flush_access_log(&self) {
        if let Some(log) = &self.access_log {
            log.flush();
        }
    }

    /// Graceful stop: not ready, no new connections, GOAWAY on HBONE, idle
    /// keep-alive sessions closed, and in-flight requests and tunnels given up to
    /// `period` to finish. Returns how many were still open when it gave up.
    pub async fn drain(&self, period: std::time::Duration) -> usize {
        self.state.set_ready(false);
        self.shutdown();
        // Wakes pingora's idle keep-alive sessions so they see the shutdown.
        for dispatch in self.workers.owned() {
            dispatch.cleanup().await;
        }
        let deadline = tokio::time::Instant::now() + period;
        loop {
            let open = self.active.load(Ordering::Acquire);
            if open == 0 || tokio::time::Instant::now() >= deadline {
                self.flush_access_log();
                return open;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

fn show(a: Option<SocketAddr>) -> String {
    a.map(|a| a.to_string()).unwrap_or_else(|| "off".into())
}

async fn serve_plaintext(
    listener: TcpListener,
    workers: Arc<Workers<Arc<Dispatch>>>,
    mut shutdown: watch::Receiver<bool>,
    active: Arc<AtomicUsize>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!("plaintext accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let shutdown = shutdown.clone();
        let open = Active::hold(&active);
        workers.serve(tcp, move |mut tcp, dispatch| async move {
            let _open = open;
            // The listener is HTTP: HTTP/1.1, or HTTP/2 with prior knowledge.
            let (detected, seen) = match detect(&mut tcp, Expect::Http).await {
                Ok(d) => d,
                Err(e) => return log::debug!("plaintext connection from {peer}: {e}"),
            };
            let fd = tcp.as_raw_fd();
            let mut stream = L4Stream::from(tcp);
            let digest = SocketDigest::from_raw_fd(fd);
            let _ = digest.peer_addr.set(Some(PingoraAddr::Inet(peer)));
            stream.set_socket_digest(digest);
            dispatch.http(detected, stream, &seen, &shutdown).await;
        });
    }
}

/// What every worker's proxies share.
struct Shared {
    conf: Arc<ServerConf>,
    state: Arc<State>,
    /// The request path's policy and telemetry, without upstream connections.
    app: WaypointProxy,
    identity: Option<Arc<IdentityStore>>,
    active: Arc<AtomicUsize>,
    metrics: Arc<crate::metrics::Metrics>,
    access_log: Option<Arc<AccessLog>>,
}

/// Each worker's pool of upstream HBONE connections.
fn hbone_pools(
    workers: &Workers<Arc<Dispatch>>,
) -> impl Iterator<Item = Arc<crate::hbone::pool::HbonePool>> + '_ {
    workers.owned().filter_map(|d| d.hbone_pool())
}

impl Shared {
    /// One worker's proxies, with upstream connections of their own: Pingora's
    /// pool, the HBONE pool and the authorizers' connections.
    fn dispatch(&self, listeners: &Listeners) -> Arc<Dispatch> {
        let hbone = self
            .identity
            .clone()
            .zip(listeners.hbone_upstream_port)
            .map(|(c, port)| crate::proxy::HboneUpstream {
                pool: Arc::new(crate::hbone::pool::HbonePool::new(
                    c,
                    listeners.hbone_streams_per_connection,
                    listeners.h2,
                    self.conf.upstream_keepalive_pool_size,
                    self.active.clone(),
                )),
                port,
            });
        let app = self.app.clone().with_hbone(hbone.clone());
        let tcp = crate::tcp::TcpProxy {
            state: self.state.clone(),
            hbone,
            metrics: self.metrics.clone(),
            access_log: self.access_log.clone(),
            ext_authz: app.ext_authz().clone(),
        };
        Arc::new(Dispatch {
            http1: Arc::new(http_proxy(&self.conf, app.clone())),
            http2: Arc::new(http2_proxy(&self.conf, app, listeners.limits)),
            tcp,
        })
    }
}

/// The proxy for HTTP/2 connections: Pingora's h2c server, with the bounds the
/// HBONE listener puts on its own HTTP/2.
fn http2_proxy(
    conf: &Arc<ServerConf>,
    app: WaypointProxy,
    limits: crate::limits::Limits,
) -> HttpProxy<WaypointProxy> {
    let mut proxy = http_proxy(conf, app);
    let mut options = HttpServerOptions::default();
    options.h2c = true;
    proxy.server_options = Some(options);
    let mut h2 = pingora::protocols::http::v2::server::H2Options::new();
    h2.max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(limits.max_request_headers_bytes);
    proxy.h2_options = Some(h2);
    proxy
}
