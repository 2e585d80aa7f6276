//! The Pingora `ProxyHttp` service shared by the HBONE and plaintext listeners.
//! Each hook asks `waypoint_filters` for a decision and does the I/O it implies.
//!
//! The chain, in its fixed order (each step's response flag in brackets):
//! 1. `request_filter`: the target (HBONE authority or `Host`); after path
//!    normalisation, RequestAuthentication (`authn`: a bad token 401/403) and
//!    then AuthorizationPolicy (`authz`: 403), which reads what `authn`
//!    verified: a matching CUSTOM policy's authorizer is asked first
//!    (`ext_authz`: its denial, or `statusOnError` [UAEX]), then DENY and
//!    ALLOW; all before any route can answer; then the route
//!    (`decide`: no match 404 [NR]; redirects and direct responses answer here).
//!    Policy is per route, so everything below comes after routing.
//! 2. Rate limit: 429 [RL] before anything costs more.
//! 3. Fault: delay [DI], then abort [FI], never touching an upstream.
//! 4. Header edits and rewrites; the route deadline starts; the body is kept for
//!    replay when the route may retry.
//! 5. `upstream_peer`, once per try: deadline (504 [UT]), back-off before a retry,
//!    circuit-breaker admission (503 [UO]), endpoint pick skipping ejected and
//!    already-tried endpoints (503 [UH] when none), per-try timeout.
//! 6. `upstream_response_filter`: outlier accounting, then retry on status.
//! 7. `fail_to_connect` / `error_while_proxy`: outlier accounting and the retry
//!    decision for failures [UF, UC, UT]; `fail_to_proxy` turns the final failure
//!    into a reply through `crate::error`.
//!
//! `logging` ends every request: Istio metrics, the access-log line and, when
//! tracing is on, the server span opened in step 1 (each try of step 5 has a
//! client span, and its context goes upstream in `upstream_request_filter`).

mod authn;
pub mod authz;
mod ctx;
pub mod ext_authz;
pub mod grpc;
mod reply;

pub use ctx::{ClusterName, RequestCtx};

use crate::hbone::idle::TunnelKey;
use crate::hbone::pool::{HboneConnect, HbonePool};
use crate::hbone::HboneMeta;
use crate::identity::SpiffeId;
use crate::state::State;
use crate::upstream::outlier::TryResult;
use async_trait::async_trait;
use log::warn;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use waypoint_filters::normalize::PathNormalization;
use waypoint_filters::retry::TryOutcome;
use waypoint_filters::{Decision, RequestView, ResponseFlag};
use waypoint_ir::EndpointIdx;
use waypoint_ir::Target;

/// Istio's default `connectTimeout` (DestinationRule connectionPool.tcp).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests one upstream HTTP/2 connection carries at once before Pingora
/// opens another to the same endpoint.
const H2_UPSTREAM_STREAMS: usize = 100;

#[derive(Clone)]
pub struct WaypointProxy {
    state: Arc<State>,
    hbone: Option<HboneUpstream>,
    /// When set, requests carry `x-forwarded-client-cert` naming the source
    /// identity, signed off `By` this waypoint's identity.
    xfcc: Option<Arc<crate::identity::IdentityStore>>,
    /// One JSON line per request on stdout, when on.
    access_log: Option<Arc<crate::access_log::AccessLog>>,
    metrics: Arc<crate::metrics::Metrics>,
    /// Whether requests are counted in Istio's per-request series.
    request_metrics: bool,
    /// Spans per request and per try; `None`: tracing off, no cost.
    tracing: Option<Arc<crate::trace::Tracing>>,
    /// Request header bounds (431 beyond them).
    limits: crate::limits::Limits,
    /// How request paths are normalised before policies and routes see them.
    path_normalization: PathNormalization,
    /// RequestAuthentication's keys.
    jwks: Arc<crate::jwt::Jwks>,
    /// Connections to CUSTOM policies' authorizers.
    ext_authz: Arc<crate::ext_authz::ExtAuthz>,
}

/// How mesh endpoints are reached: the pool of HBONE connections and the port
/// of their HBONE servers (15008; a flag so tests can move it).
#[derive(Clone)]
pub struct HboneUpstream {
    pub pool: Arc<HbonePool>,
    pub port: u16,
}

impl WaypointProxy {
    /// Plaintext to every endpoint until [`Self::with_hbone`].
    pub fn new(state: Arc<State>) -> Self {
        WaypointProxy {
            state,
            hbone: None,
            xfcc: None,
            access_log: None,
            metrics: Default::default(),
            request_metrics: true,
            tracing: None,
            limits: Default::default(),
            path_normalization: PathNormalization::default(),
            jwks: crate::jwt::Jwks::new(crate::jwt::jwks::DEFAULT_REFRESH),
            ext_authz: Arc::new(crate::ext_authz::ExtAuthz::new(None)),
        }
    }

    /// Mesh endpoints reached over this pool, and the authorizers too: their
    /// connections come from the same pool, so on the same worker.
    pub fn with_hbone(mut self, hbone: Option<HboneUpstream>) -> Self {
        self.ext_authz = Arc::new(crate::ext_authz::ExtAuthz::new(hbone.clone()));
        self.hbone = hbone;
        self
    }

    /// The authorizers' connections, for the TCP proxy beside this one.
    pub fn ext_authz(&self) -> &Arc<crate::ext_authz::ExtAuthz> {
        &self.ext_authz
    }

    pub fn with_jwks(mut self, jwks: Arc<crate::jwt::Jwks>) -> Self {
        self.jwks = jwks;
        self
    }

    pub fn with_path_normalization(mut self, mode: PathNormalization) -> Self {
        self.path_normalization = mode;
        self
    }

    pub fn with_limits(mut self, limits: crate::limits::Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn with_tracing(mut self, tracing: Option<Arc<crate::trace::Tracing>>) -> Self {
        self.tracing = tracing;
        self
    }

    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn with_request_metrics(mut self, on: bool) -> Self {
        self.request_metrics = on;
        self
    }

    pub fn with_access_log(mut self, log: Option<Arc<crate::access_log::AccessLog>>) -> Self {
        self.access_log = log;
        self
    }

    pub fn with_xfcc(mut self, identity: Option<Arc<crate::identity::IdentityStore>>) -> Self {
        self.xfcc = identity;
        self
    }

    /// The HBONE connector for a mesh endpoint; `None`: plaintext. Idle tunnels
    /// it leaves expire after `idle_timeout`.
    fn hbone_transport(
        &self,
        ctx: &RequestCtx,
        idx: EndpointIdx,
        target: SocketAddr,
        idle_timeout: Option<Duration>,
    ) -> Option<HboneConnect> {
        let hbone = self.hbone.as_ref()?;
        let key = hbone.key(ctx.endpoint(idx)?, target, ctx.client_ip)?;
        Some(HboneConnect {
            pool: hbone.pool.clone(),
            lease: Some(hbone.pool.lease(key.clone(), idle_timeout)),
            key,
        })
    }
}

impl HboneUpstream {
    /// Where a tunnel to `ep` at `target` goes; `None` when `ep` is reached in
    /// plaintext (outside the mesh, or no identity to verify).
    pub fn key(
        &self,
        ep: &waypoint_ir::Endpoint,
        target: SocketAddr,
        client: Option<std::net::IpAddr>,
    ) -> Option<TunnelKey> {
        if !ep.in_mesh {
            return None;
        }
        let Some(expected) = ep
            .identity
            .as_deref()
            .and_then(|id| id.parse::<SpiffeId>().ok())
        else {
            warn!(
                "{} is in the mesh but has no SPIFFE identity; sending plaintext",
                ep.source
            );
            return None;
        };
        Some(TunnelKey {
            hop: SocketAddr::new(target.ip(), self.port),
            expected,
            target,
            client,
        })
    }
}

impl WaypointProxy {
    fn record_metrics(&self, session: &Session, ctx: &RequestCtx, status: u16) {
        let m = &self.metrics;
        let flags = ctx.flags();
        if flags != "-" {
            m.flagged.with_label_values(&[flags.as_ref()]).inc();
        }
        if !self.request_metrics {
            return;
        }
        let resolve = || m.series(&ctx.labels(status));
        let series = match &ctx.runtime {
            Some(rt) => rt.series.get(ctx.series_key(status), &ctx.source, resolve),
            None => Arc::new(resolve()),
        };
        series.requests.inc();
        if let Some((started, _)) = ctx.started {
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            series.duration.observe(ms);
        }
        let down = session.as_downstream();
        series.request_bytes.observe(down.body_bytes_read() as f64);
        series.response_bytes.observe(down.body_bytes_sent() as f64);
    }

    /// Outlier accounting for the try that just ended, counting ejections.
    fn report(&self, ctx: &mut RequestCtx, result: TryResult) {
        if ctx.report(result) {
            let service = Self::destination_service(ctx);
            self.metrics.ejections.with_label_values(&[service]).inc();
        }
    }

    fn destination_service(ctx: &RequestCtx) -> &str {
        ctx.cluster_name().map(|c| c.host).unwrap_or("unknown")
    }
}

/// Pingora's pool key for a tunnel: the same tunnel key as our idle tunnels, so
/// a stream Pingora takes back (and drops) is one the request can use.
fn hbone_group_key(key: &TunnelKey) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ("hbone", key).hash(&mut h);
    h.finish()
}

/// Whether a request goes upstream as HTTP/2: when the backend's port says
/// HTTP/2 or gRPC, or when its protocol is detected and the client spoke
/// HTTP/2 (Istio's `useClientProtocol` for sniffed ports).
fn upstream_is_h2(ctx: &RequestCtx, downstream: http::Version) -> bool {
    use waypoint_ir::Protocol;
    let Some((rt, fwd)) = ctx.runtime.as_ref().zip(ctx.forward.as_ref()) else {
        return false;
    };
    let protocol = rt
        .snapshot
        .service(fwd.service)
        .port(fwd.port)
        .map_or(Protocol::Detect, |p| p.protocol);
    match protocol {
        Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb => true,
        Protocol::Detect => downstream == http::Version::HTTP_2,
        _ => false,
    }
}

/// Normalises the request path in place (Istio's normalisation, which the
/// backend sees too) and refuses a method that is not upper case, as Istio does.
fn normalize_request(session: &mut Session, mode: PathNormalization) -> Result<(), String> {
    let req = session.req_header();
    if req.method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(format!("method {} is not upper case", req.method));
    }
    let Some(pq) = req.uri.path_and_query() else {
        return Ok(());
    };
    let normalized =
        waypoint_filters::normalize::normalize(pq.as_str(), mode).map_err(|e| e.to_string())?;
    if let std::borrow::Cow::Owned(new) = normalized {
        let mut parts = req.uri.clone().into_parts();
        parts.path_and_query = Some(new.parse().map_err(|e| format!("{e}"))?);
        let uri = http::Uri::from_parts(parts).map_err(|e| e.to_string())?;
        session.req_header_mut().set_uri(uri);
    }
    Ok(())
}

/// `%PROTOCOL%` as Envoy writes it.
fn protocol_name(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    }
}

/// The tunnel metadata of the request's downstream, when it came over HBONE.
fn hbone_meta(session: &Session) -> Option<HboneMeta> {
    let digest = session.as_downstream().digest()?;
    let proxy = digest.proxy_digest.as_ref()?;
    proxy
        .user_data
        .as_ref()?
        .downcast_ref::<HboneMeta>()
        .cloned()
}

#[async_trait]
impl ProxyHttp for WaypointProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {
        // Pingora's default adds a response compressor, disabled, that every
        // request still runs through (a module instance and four filter calls).
        // A waypoint passes bodies as they are, as Istio's does.
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.started = Some((Instant::now(), jiff::Timestamp::now()));
        ctx.grpc = grpc::is_grpc(&session.req_header().headers);
        if let Some(why) = {
            let req = session.req_header();
            self.limits
                .check_headers(req.method.as_str(), &req.uri, &req.headers)
        } {
            // As Envoy does: 431 before anything reaches an upstream, and the
            // connection closes, since the rest of its bytes cannot be trusted.
            self.metrics.rejected.inc(why);
            ctx.flag = ResponseFlag::DownstreamProtocolError;
            session.set_keepalive(None);
            reply::send(session, 431, &[], "request header fields too large\n").await?;
            return Ok(true);
        }
        if let Err(why) = normalize_request(session, self.path_normalization) {
            // Istio's normalisation refuses what it cannot make safe: a
            // policy must see the path the backend will.
            ctx.flag = ResponseFlag::DownstreamProtocolError;
            reply::send(session, 400, &[], &format!("{why}\n")).await?;
            return Ok(true);
        }
        if !session.req_header().headers.contains_key("x-request-id") {
            // Generated here and sent upstream, as Envoy does, so one id follows
            // the request through every hop and log.
            let id = crate::access_log::request_id();
            session.req_header_mut().insert_header("x-request-id", id)?;
        }
        let rt = self.state.current();
        ctx.runtime = Some(rt.clone());
        let meta = hbone_meta(session);
        let meta_target = meta.as_ref().map(|m| m.target);
        let target = match &meta {
            Some(meta) => rt.snapshot.resolve_target(meta.target),
            None => session
                .req_header()
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| session.req_header().uri.host())
                .and_then(|host| rt.snapshot.resolve_host(host)),
        };
        let client_ip = meta.as_ref().map(|m| m.peer.ip());
        ctx.client_ip = client_ip.or_else(|| session.client_addr()?.as_inet().map(|a| a.ip()));
        ctx.source = meta.map(|m| m.source);
        if let Some(tracing) = &self.tracing {
            ctx.trace = Some(tracing.start(session.req_header(), ctx.client_ip));
        }
        let Some(target) = target else {
            ctx.flag = ResponseFlag::NoRouteFound;
            reply::send(session, 404, &[], "no service for this destination\n").await?;
            return Ok(true);
        };
        let destination = meta_target;
        let auth = match authn::check(&rt, &self.jwks, session, target) {
            Ok(auth) => auth,
            Err(refused) => {
                ctx.details = Some(format!(
                    "jwt_authn_access_denied{{{}}}",
                    refused.body.replace(' ', "_")
                ));
                reply::send(session, refused.status, &refused.headers, refused.body).await?;
                return Ok(true);
            }
        };
        let judged = authz::check(&rt, session, ctx, target, destination, auth.as_ref());
        judged.count(&self.metrics);
        let mut ext_edits = None;
        if let Some(provider) = judged.ask {
            // Boxed: inline, this rare path's future (8 KiB: reading the body,
            // the check's call) would size every request's, which Pingora
            // moves into a box of its own.
            let asked = Box::pin(ext_authz::ask(
                &self.ext_authz,
                &self.metrics,
                &rt,
                session,
                ctx,
                provider,
                destination,
            ));
            match asked.await? {
                ext_authz::Asked::Replied => return Ok(true),
                ext_authz::Asked::Go(later) => ext_edits = later,
            }
        }
        if let Some(denied) = judged.denied {
            self.metrics
                .authz_denied
                .with_label_values(&[denied.policy.as_str()])
                .inc();
            ctx.details = Some(denied.details);
            reply::send(session, 403, &[], "RBAC: access denied").await?;
            return Ok(true);
        }
        let decision = {
            let req = session.req_header();
            let port = match target {
                Target::Service { port, .. } | Target::Workload { port, .. } => port,
            };
            let source_ns = ctx.source.as_deref().map(|s| s.namespace.as_str());
            let view = RequestView::new(&req.method, &req.uri, &req.headers, port)
                .with_source_namespace(source_ns);
            waypoint_filters::decide(&rt.snapshot, target, &view, &mut rand::rng())
        };
        if let Some(edits) = ext_edits {
            ext_authz::apply(session, ctx, edits)?;
        }
        match decision {
            Decision::Reply(local) => {
                ctx.flag = local.flag;
                reply::send(session, local.status, &local.headers, &local.body).await?;
                Ok(true)
            }
            Decision::Forward(fwd) => {
                let forward = ctx::Forward::from_decision(&rt.snapshot, &fwd);
                if let Some(trace) = &ctx.trace {
                    trace.rename(&rt.snapshot.service(forward.service).hostname, forward.port);
                }
                // Set now: local replies below are logged under this route too.
                ctx.forward = Some(forward.clone());
                // Rate limits and faults come after routing (their config is per
                // route) and before anything touches an upstream; a limited request
                // is not delayed first.
                let client = ctx.client_ip;
                let rules = &fwd.route.policy.rate_limits;
                if let Err(limited) = rt.limiters.check(
                    forward.route_owner,
                    forward.route,
                    rules,
                    &session.req_header().headers,
                    client,
                ) {
                    ctx.flag = ResponseFlag::RateLimited;
                    log::debug!("rate limited by {}", limited.rule);
                    reply::send(session, 429, &limited.headers(), "local_rate_limited\n").await?;
                    return Ok(true);
                }
                if let Some(fault) = &fwd.route.policy.fault {
                    let action = waypoint_filters::fault::decide(fault, &mut rand::rng());
                    if let Some(delay) = action.delay {
                        ctx.flag = ResponseFlag::DelayInjected;
                        tokio::time::sleep(delay).await;
                    }
                    if let Some(abort) = action.abort {
                        ctx.flag = ResponseFlag::FaultInjected;
                        reply::abort(session, abort, "fault filter abort\n").await?;
                        return Ok(true);
                    }
                }
                ctx::apply_request_edits(session, &fwd)?;
                let policy = &fwd.route.policy;
                // A gRPC client's own deadline bounds the route's, as Istio
                // configures Envoy (grpc_timeout_header_max = the route timeout).
                let grpc_timeout = ctx
                    .grpc
                    .then(|| grpc::timeout(&session.req_header().headers))
                    .flatten();
                let timeout = match (policy.timeout, grpc_timeout) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                ctx.deadline = timeout.map(|t| Instant::now() + t);
                if policy.retry.attempts > 0 {
                    // Keep the body (up to pingora's bound) so a retry can replay it.
                    session.as_mut().enable_retry_buffering();
                }
                Ok(false)
            }
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        ctx.tries += 1;
        // The last try's tunnel, if any, is Pingora's to drop, never ours to settle.
        ctx.tunnel = None;
        if ctx.tries > 1 {
            self.metrics
                .retries
                .with_label_values(&[Self::destination_service(ctx)])
                .inc();
            if let Some(route) = ctx.route() {
                let retry = &route.policy.retry;
                let wait = waypoint_filters::retry::backoff(retry, ctx.tries - 1, &mut rand::rng());
                tokio::time::sleep(wait).await;
            }
        }
        let remaining = match ctx.deadline {
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => {
                    ctx.flag = ResponseFlag::UpstreamRequestTimeout;
                    return Err(Error::explain(HTTPStatus(504), "upstream request timeout"));
                }
            },
            None => None,
        };
        let Some(cluster) = ctx.cluster() else {
            ctx.flag = ResponseFlag::NoHealthyUpstream;
            return Err(Error::explain(HTTPStatus(503), "no healthy upstream"));
        };
        if ctx.admission.is_none() {
            match cluster.breaker.admit().await {
                Ok(a) => ctx.admission = Some(a),
                Err(overflow) => {
                    ctx.flag = ResponseFlag::UpstreamOverflow;
                    return Err(Error::explain(
                        HTTPStatus(503),
                        format!("circuit breaker: {}", overflow.reason()),
                    ));
                }
            }
        }
        let (endpoint, addr) = ctx.pick_endpoint(&cluster).ok_or_else(|| {
            ctx.flag = ResponseFlag::NoHealthyUpstream;
            Error::explain(HTTPStatus(503), "no healthy upstream")
        })?;
        ctx.upstream = Some(addr);
        ctx.trace_try(&session.req_header().method, addr);
        let mut peer = HttpPeer::new(addr, false, String::new());
        // A try waits for the upstream no longer than its per-try timeout, nor
        // past the route's deadline.
        let per_try = ctx.route().and_then(|r| r.policy.retry.per_try_timeout);
        peer.options.read_timeout = match (per_try, remaining) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let pool = &cluster.policy.pool;
        ctx.upstream_h2 = upstream_is_h2(ctx, session.req_header().version);
        if ctx.upstream_h2 {
            peer.options.set_http_version(2, 2);
            peer.options.max_h2_streams = H2_UPSTREAM_STREAMS;
        }
        if let Some(mut hbone) = self.hbone_transport(ctx, endpoint, addr, pool.idle_timeout) {
            if ctx.upstream_h2 {
                // Pingora pools the HTTP/2 connection inside the tunnel and
                // sends every client's requests on it: the tunnel is the
                // waypoint's, not one client's, and is no exchange's to settle.
                hbone.key.client = None;
                hbone.lease = None;
            }
            // Mesh endpoints are reached through their node's HBONE server; the
            // group key keeps pingora from ever mixing these with plaintext peers.
            peer.group_key = hbone_group_key(&hbone.key);
            ctx.tunnel = hbone.lease.clone();
            peer.options.custom_l4 = Some(Arc::new(hbone));
        }
        peer.options.connection_timeout = Some(pool.connect_timeout.unwrap_or(CONNECT_TIMEOUT));
        peer.options.idle_timeout = pool.idle_timeout;
        if ctx.upstream_h2 && peer.options.custom_l4.is_some() {
            // Pingora reuses an HTTP/2 connection only over a socket whose peer
            // address it can check, never over a tunnel: this one serves one
            // request, so it closes as soon as it is idle rather than holding
            // its tunnel open.
            peer.options.idle_timeout = Some(Duration::ZERO);
        }
        Ok(Box::new(peer))
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // A tunnel counts its own requests: its fd is -1, and Pingora sees every
        // tunnel as a new connection.
        // maxRequestsPerConnection counts HTTP/1.1 connections only.
        ctx.close_upstream = !ctx.upstream_h2
            && ctx.cluster().is_some_and(|c| match &ctx.tunnel {
                Some(lease) => c.last_on_tunnel(lease.requests()),
                None => c.last_on_connection(fd, reused),
            });
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_sent = Some(Instant::now());
        // Envoy's default (SANITIZE): a client cannot claim a certificate it did
        // not present; with --xfcc the header says who the mTLS peer was.
        req.remove_header("x-forwarded-client-cert");
        if let (Some(store), Some(source)) = (&self.xfcc, &ctx.source) {
            let value = format!("By={};URI={source}", store.bundle().id);
            req.insert_header("x-forwarded-client-cert", value)?;
        }
        if let Some(trace) = &ctx.trace {
            trace.inject(req);
        }
        if ctx.close_upstream && ctx.tunnel.is_none() && !ctx.upstream_h2 {
            // The connection's last request (maxRequestsPerConnection): asking the
            // upstream to close it keeps pingora from pooling it again. A tunnel's
            // last is not marked: the app closing first makes the destination reset
            // the tunnel (Envoy does), so the waypoint ends it after the response.
            req.insert_header("connection", "close")?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = resp.status.as_u16();
        ctx.upstream_time = ctx.upstream_sent.map(|t| t.elapsed());
        self.report(ctx, TryResult::Status(status));
        if let Some(trace) = &ctx.trace {
            trace.try_status(status);
        }
        if ctx.grpc {
            ctx.grpc_status = grpc::status(&resp.headers);
            if let Some(code) = ctx.grpc_status.filter(|c| *c != 0) {
                if ctx.may_retry(TryOutcome::GrpcStatus(code)) {
                    if let Some(trace) = &mut ctx.trace {
                        trace.end_try(None);
                    }
                    let mut e = Error::explain(
                        ErrorType::CustomCode(crate::error::GRPC_STATUS, code.into()),
                        "retrying on gRPC status",
                    );
                    e.set_retry(true);
                    return Err(e);
                }
            }
        }
        if ctx.may_retry(TryOutcome::Status(status)) {
            if let Some(trace) = &mut ctx.trace {
                trace.end_try(None);
            }
            // Turning the answer into a retryable error makes pingora call
            // upstream_peer again; the client never sees this response.
            let mut e = Error::explain(HTTPStatus(status), "retrying on upstream status");
            e.set_retry(true);
            return Err(e);
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        self.report(ctx, TryResult::LocalFailure);
        if let Some(trace) = &mut ctx.trace {
            trace.end_try(Some(&e));
        }
        e.set_retry(ctx.may_retry(TryOutcome::ConnectFailure));
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        _client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("peer {peer}"));
        let outcome = crate::error::try_outcome(&e);
        // Our own retry-on-status error was reported when the status arrived.
        if !matches!(
            outcome,
            None | Some(TryOutcome::Status(_) | TryOutcome::GrpcStatus(_))
        ) {
            self.report(ctx, TryResult::LocalFailure);
        }
        if let Some(trace) = &mut ctx.trace {
            trace.end_try(Some(&e));
        }
        // Envoy retries any method when the policy says so; only a body too large
        // to have been kept cannot be replayed.
        let retry =
            !session.as_ref().retry_buffer_truncated() && outcome.is_some_and(|o| ctx.may_retry(o));
        e.set_retry(retry);
        e
    }

    async fn response_trailer_filter(
        &self,
        _session: &mut Session,
        trailers: &mut http::HeaderMap,
        ctx: &mut RequestCtx,
    ) -> Result<Option<bytes::Bytes>> {
        if ctx.grpc {
            ctx.grpc_status = grpc::status(trailers).or(ctx.grpc_status);
        }
        Ok(None)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.apply_response_edits(resp)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let (mut status, flag) = crate::error::classify(e, ctx.flag);
        ctx.flag = flag;
        // Once a response has started, there is nothing left to say but to close.
        if session.response_written().is_some() {
            status = 0;
        }
        if status != 0 {
            let body = format!("{}\n", crate::error::describe(flag));
            // Pingora ends the downstream connection after a failed upstream
            // exchange whatever this hook returns; say so, so the client does not
            // send its next request into a closing connection.
            session.set_keepalive(None);
            if let Err(err) = reply::send(session, status, &[], &body).await {
                warn!("failed to send {status} downstream: {err}");
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        // First: Pingora has just released or dropped the upstream stream, and a
        // concurrent request may take it from Pingora's pool at any moment.
        if let Some(lease) = ctx.tunnel.take() {
            lease.settle(e.is_none() && !ctx.close_upstream);
        }
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        if ctx.grpc && ctx.grpc_status.is_none() {
            // A local reply says it in its headers.
            ctx.grpc_status = session
                .response_written()
                .and_then(|r| grpc::status(&r.headers));
        }
        let req = session.req_header();
        let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
        log::debug!(
            target: "access",
            "{} {} {} {} flag={} upstream={} source={} error={}",
            req.method,
            req.uri,
            status,
            ctx.route_name().unwrap_or("-"),
            ctx.flags(),
            ctx.upstream.map(|a: SocketAddr| a.to_string()).unwrap_or_else(|| "-".into()),
            ctx.source.as_deref().map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            e.map(|e| e.to_string()).unwrap_or_else(|| "-".into()),
        );
        self.record_metrics(session, ctx, status);
        if let Some(trace) = ctx.trace.take() {
            let down = session.as_downstream();
            let (read, sent) = (down.body_bytes_read(), down.body_bytes_sent());
            trace.finish(status, || ctx.trace_summary(read, sent));
        }
        let Some(access_log) = &self.access_log else {
            return;
        };
        let (started, start_time) = ctx
            .started
            .unwrap_or_else(|| (Instant::now(), jiff::Timestamp::now()));
        let entry = crate::access_log::Entry {
            start_time,
            method: Some(req.method.as_str()),
            path: Some(req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")),
            protocol: Some(protocol_name(req.version)),
            response_code: status,
            grpc_status: ctx.grpc_status,
            response_code_details: ctx.details.as_deref(),
            response_flags: ctx.flags(),
            bytes_received: session.as_downstream().body_bytes_read(),
            bytes_sent: session.as_downstream().body_bytes_sent(),
            duration: started.elapsed().as_millis() as u64,
            upstream_service_time: ctx.upstream_time.map(|d| d.as_millis() as u64),
            x_forwarded_for: header("x-forwarded-for"),
            user_agent: header("user-agent"),
            request_id: header("x-request-id"),
            authority: header("host"),
            upstream_host: ctx.upstream,
            upstream_cluster: ctx.cluster_name(),
            downstream_remote_address: ctx.client_ip,
            route_name: ctx.route_name(),
            source_principal: ctx.source.as_deref(),
            destination_principal: ctx.destination(),
        };
        access_log.write(&entry);
    }
}
