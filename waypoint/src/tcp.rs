//! Opaque TCP through the waypoint: a tunnel whose port is not HTTP is carried
//! byte for byte to one endpoint of its service (or of the TCPRoute backend it
//! picks), over HBONE for mesh endpoints and in plaintext otherwise, as Envoy's
//! TCP proxy does: the cluster's `maxConnections` bounds connections (past it
//! a connection is closed, UO), `connectTimeout` bounds the dial, a failed
//! dial counts towards outlier ejection (UF), each end's close is passed on as
//! a half-close so a request-then-EOF protocol still gets its answer, and
//! `tcp.idleTimeout` (1 h unset) and `tcp.maxConnectionDuration` end it.
//! One access-log line per connection, when it ends.

mod timed;

use crate::ext_authz::Decision;
use crate::hbone::H2Stream;
use crate::identity::SpiffeId;
use crate::proxy::HboneUpstream;
use crate::state::{Runtime, State};
use crate::upstream::breaker::Admission;
use crate::upstream::outlier::TryResult;
use crate::upstream::{ActiveTry, Cluster};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use timed::{lived, Clock, Timed};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use waypoint_filters::ResponseFlag;
use waypoint_ir::{BackendTarget, EndpointIdx, ExtAuthzProvider, ServiceIdx, Target};

/// Istio's default `connectTimeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Istio's default TCP `idleTimeout`.
const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// A byte stream in either direction.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub struct TcpProxy {
    pub state: Arc<State>,
    pub hbone: Option<HboneUpstream>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub access_log: Option<Arc<crate::access_log::AccessLog>>,
    pub ext_authz: Arc<crate::ext_authz::ExtAuthz>,
}

/// Who opened the connection, and where to.
pub struct Inbound {
    pub source: Option<std::sync::Arc<SpiffeId>>,
    pub peer: SocketAddr,
    pub target: Target,
    /// The address the client asked for (the CONNECT authority).
    pub destination: SocketAddr,
}

/// The backend a connection goes to: (service, subset, service port), and the
/// endpoint when the client addressed a workload.
struct Backend {
    service: ServiceIdx,
    subset: Option<usize>,
    port: u16,
    pinned: Option<EndpointIdx>,
}

/// What the chosen upstream holds while the connection lives.
struct Upstream {
    io: Box<dyn Io>,
    cluster: Arc<Cluster>,
    addr: SocketAddr,
    endpoint: EndpointIdx,
    _admission: Admission,
    _active: Option<ActiveTry>,
}

impl TcpProxy {
    /// Carries `down` (whose first bytes, already read, are `seen`) to an
    /// upstream until both directions are closed.
    pub async fn forward(&self, mut down: impl Io, seen: Vec<u8>, inbound: Inbound) {
        let started = (Instant::now(), jiff::Timestamp::now());
        let rt = self.state.current();
        let mut flag = ResponseFlag::None;
        let mut backend = None;
        let mut upstream_addr = None;
        let mut destination = None;
        let (mut received, mut sent) = (0u64, 0u64);
        // AuthorizationPolicy, as Envoy's network RBAC filter applies it: a
        // denied connection is closed before anything is dialled.
        let judged = crate::proxy::authz::check_connection(
            &rt,
            inbound.source.as_deref(),
            inbound.peer.ip(),
            inbound.target,
            inbound.destination,
        );
        judged.count(&self.metrics);
        // CUSTOM first, as Envoy's network ext_authz filter runs before RBAC.
        let refused = match judged.ask {
            Some(p) => self.ask(&rt, p, &inbound).await,
            None => None,
        };
        if let (None, Some(d)) = (refused, &judged.denied) {
            self.metrics
                .authz_denied
                .with_label_values(&[d.policy.as_str()])
                .inc();
        }
        let details = refused.or(judged.denied.as_ref().map(|d| d.details.as_str()));
        let chosen = match (refused, &judged.denied) {
            (Some(_), _) => Err(ResponseFlag::UnauthorizedExternalService),
            (None, Some(_)) => Err(ResponseFlag::None),
            (None, None) => self.choose(&rt, &inbound),
        };
        match chosen {
            Err(f) => flag = f,
            Ok(b) => {
                match self.connect(&rt, &b, inbound.peer).await {
                    Err(f) => flag = f,
                    Ok(mut up) => {
                        upstream_addr = Some(up.addr);
                        destination = rt
                            .snapshot
                            .service(b.service)
                            .endpoint(up.endpoint)
                            .identity
                            .clone();
                        let pool = &up.cluster.policy.pool;
                        let idle = pool.tcp_idle_timeout.unwrap_or(IDLE_TIMEOUT);
                        let lifetime = pool.max_connection_duration;
                        let clock = Arc::new(Clock::new());
                        let mut from = Timed::new(&mut down, clock.clone(), true);
                        let mut to = Timed::new(&mut up.io, clock.clone(), false);
                        let copied = async {
                            to.write_all(&seen).await?;
                            tokio::io::copy_bidirectional(&mut from, &mut to).await
                        };
                        let ended = tokio::select! {
                            r = copied => r,
                            () = clock.idle_for(idle) => {
                                log::debug!("tcp: {} idle for {idle:?}; closing", up.addr);
                                Ok(clock.bytes())
                            }
                            () = lived(lifetime) => {
                                log::debug!("tcp: {} reached its maximum duration; closing", up.addr);
                                Ok(clock.bytes())
                            }
                        };
                        match ended {
                            Ok((to_up, to_down)) => {
                                received = to_up;
                                sent = to_down;
                            }
                            Err(e) => {
                                log::debug!("tcp: {} ended: {e}", up.addr);
                                // Envoy's flags: the end that broke the connection.
                                flag = match clock.failed() {
                                    Some(timed::End::Downstream) => {
                                        ResponseFlag::DownstreamConnectionTermination
                                    }
                                    _ => ResponseFlag::UpstreamConnectionTermination,
                                };
                                (received, sent) = clock.bytes();
                            }
                        }
                        received += seen.len() as u64;
                    }
                }
                backend = Some(b);
            }
        }
        if flag != ResponseFlag::None {
            self.metrics
                .flagged
                .with_label_values(&[flag.as_str()])
                .inc();
        }
        let Some(log) = &self.access_log else {
            return;
        };
        let cluster = backend.as_ref().map(|b| {
            let svc = rt.snapshot.service(b.service);
            crate::proxy::ClusterName {
                port: b.port,
                subset: b.subset.map_or("", |i| svc.subsets[i].name.as_str()),
                host: svc.hostname.as_str(),
            }
        });
        log.write(&crate::access_log::Entry {
            start_time: started.1,
            method: None,
            path: None,
            protocol: None,
            response_code: 0,
            grpc_status: None,
            response_code_details: details,
            response_flags: flag.as_str().into(),
            bytes_received: received as usize,
            bytes_sent: sent as usize,
            duration: started.0.elapsed().as_millis() as u64,
            upstream_service_time: None,
            x_forwarded_for: None,
            user_agent: None,
            request_id: None,
            authority: None,
            upstream_host: upstream_addr,
            upstream_cluster: cluster,
            downstream_remote_address: Some(inbound.peer.ip()),
            route_name: None,
            source_principal: inbound.source.as_deref(),
            destination_principal: destination.as_deref(),
        });
    }

    /// The backend: the addressed workload, else the service port's TCPRoute
    /// pick, else the service itself.
    fn choose(&self, rt: &Runtime, inbound: &Inbound) -> Result<Backend, ResponseFlag> {
        let (service, port) = match inbound.target {
            Target::Workload {
                service,
                port,
                endpoint,
            } => {
                return Ok(Backend {
                    service,
                    subset: None,
                    port,
                    pinned: Some(endpoint),
                })
            }
            Target::Service { service, port } => (service, port),
        };
        let Some(route) = rt.snapshot.service(service).tcp_route(port) else {
            return Ok(Backend {
                service,
                subset: None,
                port,
                pinned: None,
            });
        };
        let picked = waypoint_filters::split::pick(&route.backends, &mut rand::rng())
            .map(|i| &route.backends[i].target);
        match picked {
            Some(BackendTarget::Service {
                service,
                port: to,
                subset,
            }) => Ok(Backend {
                service: *service,
                subset: *subset,
                port: to.unwrap_or(port),
                pinned: None,
            }),
            Some(BackendTarget::Invalid { reason, .. }) => {
                log::warn!("tcp: {}: {reason}; closing the connection", route.name);
                Err(ResponseFlag::NoClusterFound)
            }
            None => {
                log::warn!("tcp: {} has no backend with weight; closing", route.name);
                Err(ResponseFlag::NoClusterFound)
            }
        }
    }

    /// Asks a matching CUSTOM policy's authorizer about the connection; why
    /// it is refused (Envoy's details), or `None`. Only a gRPC provider can
    /// judge TCP: istiod leaves an HTTP provider out of TCP filter chains.
    async fn ask(
        &self,
        rt: &Runtime,
        p: &ExtAuthzProvider,
        inbound: &Inbound,
    ) -> Option<&'static str> {
        if p.protocol != waypoint_ir::ExtAuthzProtocol::Grpc {
            return None;
        }
        let input = crate::ext_authz::CheckInput {
            head: None,
            body: None,
            source: inbound.source.as_deref(),
            source_addr: Some(inbound.peer),
            destination: Some(inbound.destination),
            protocol: "",
        };
        match self.ext_authz.decide(rt, p, &input, &self.metrics).await {
            Decision::Go(_) => None,
            Decision::Deny(_) => Some("ext_authz_denied"),
            Decision::Refuse => Some("ext_authz_error"),
        }
    }

    async fn connect(
        &self,
        rt: &Runtime,
        b: &Backend,
        client: SocketAddr,
    ) -> Result<Upstream, ResponseFlag> {
        let cluster: &Arc<Cluster> = rt
            .upstreams
            .cluster((b.service, b.subset, b.port))
            .ok_or(ResponseFlag::NoHealthyUpstream)?;
        let admission = cluster.breaker.admit_connection().map_err(|o| {
            log::debug!("tcp: circuit breaker: {}", o.reason());
            ResponseFlag::UpstreamOverflow
        })?;
        let svc = rt.snapshot.service(b.service);
        let (endpoint, addr, active) = match b.pinned {
            Some(idx) => {
                let ep = svc.endpoint(idx);
                let port = ep
                    .target_port(b.port)
                    .ok_or(ResponseFlag::NoHealthyUpstream)?;
                (idx, SocketAddr::new(ep.address, port), None)
            }
            None => {
                let (active, addr) = cluster.pick(&[]).ok_or(ResponseFlag::NoHealthyUpstream)?;
                (cluster.endpoints[active.slot()].0, addr, Some(active))
            }
        };
        let timeout = cluster
            .policy
            .pool
            .connect_timeout
            .unwrap_or(CONNECT_TIMEOUT);
        let key = self
            .hbone
            .as_ref()
            .and_then(|h| Some((h, h.key(svc.endpoint(endpoint), addr, Some(client.ip()))?)));
        let dialled = tokio::time::timeout(timeout, async {
            let io: Box<dyn Io> = match key {
                Some((hbone, key)) => {
                    let headers = crate::hbone::pool::tunnel_headers(&key);
                    let tunnel = hbone
                        .pool
                        .open_fresh(&key, &headers)
                        .await
                        .map_err(|e| e.to_string())?;
                    Box::new(H2Stream::from_tunnel(tunnel))
                }
                None => {
                    let tcp = tokio::net::TcpStream::connect(addr)
                        .await
                        .map_err(|e| e.to_string())?;
                    let _ = tcp.set_nodelay(true);
                    Box::new(tcp)
                }
            };
            Ok::<_, String>(io)
        })
        .await
        .unwrap_or_else(|_| Err(format!("no connection within {timeout:?}")));
        match dialled {
            Ok(io) => {
                if let Some(active) = &active {
                    cluster.outlier.report(active.slot(), TryResult::Connected);
                }
                Ok(Upstream {
                    io,
                    cluster: cluster.clone(),
                    addr,
                    endpoint,
                    _admission: admission,
                    _active: active,
                })
            }
            Err(why) => {
                log::info!("tcp: connecting to {addr}: {why}");
                if let Some(active) = &active {
                    if let Some(ejected) = cluster
                        .outlier
                        .report(active.slot(), TryResult::LocalFailure)
                    {
                        log::warn!("outlier detection: ejecting {addr} for {ejected:?} after failed connects");
                        self.metrics
                            .ejections
                            .with_label_values(&[svc.hostname.as_str()])
                            .inc();
                    }
                }
                Err(ResponseFlag::UpstreamConnectionFailure)
            }
        }
    }
}
