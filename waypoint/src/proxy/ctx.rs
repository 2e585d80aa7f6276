//! Per-request state carried between Pingora's hooks, and the request/response
//! edits a route asks for.

use crate::identity::SpiffeId;
use crate::state::Runtime;
use crate::upstream::breaker::{Admission, RetryPermit};
use crate::upstream::outlier::TryResult;
use crate::upstream::{ActiveTry, Cluster};
use opentelemetry::KeyValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use waypoint_filters::headers::{HeaderEdit, InvalidHeader};
use waypoint_filters::{ForwardDecision, ResponseFlag};
use waypoint_ir::{EndpointIdx, HeaderModifier, Route, ServiceIdx, Snapshot};

/// What the route chose, as indices into the request's snapshot.
#[derive(Debug, Clone)]
pub struct Forward {
    /// The service whose route table matched, and the route's index in it.
    pub route_owner: ServiceIdx,
    pub route: usize,
    /// The picked backend's index in the route's list, for its own filters.
    pub backend: Option<usize>,
    /// The backend.
    pub service: ServiceIdx,
    pub port: u16,
    pub subset: Option<usize>,
    pub pinned: Option<EndpointIdx>,
}

impl Forward {
    pub fn from_decision(snapshot: &Snapshot, fwd: &ForwardDecision<'_>) -> Self {
        let owner = snapshot.service(fwd.route_owner);
        let route = owner
            .routes
            .iter()
            .position(|r| std::ptr::eq(r, fwd.route))
            .expect("the decision's route belongs to its owner");
        Forward {
            route_owner: fwd.route_owner,
            route,
            backend: fwd.backend,
            service: fwd.service,
            port: fwd.port,
            subset: fwd.subset,
            pinned: fwd.pinned,
        }
    }
}

/// Envoy's cluster name, written out only where it is shown.
pub struct ClusterName<'a> {
    pub port: u16,
    pub subset: &'a str,
    pub host: &'a str,
}

impl std::fmt::Display for ClusterName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "outbound|{}|{}|{}", self.port, self.subset, self.host)
    }
}

#[derive(Default)]
pub struct RequestCtx {
    /// The config generation this request started on; kept for its whole life.
    pub runtime: Option<Arc<Runtime>>,
    pub forward: Option<Forward>,
    pub source: Option<std::sync::Arc<SpiffeId>>,
    /// The downstream client's address (the tunnel's peer for HBONE).
    pub client_ip: Option<std::net::IpAddr>,
    pub flag: ResponseFlag,
    pub upstream: Option<SocketAddr>,
    /// Tries made so far (upstream_peer calls).
    pub tries: u32,
    /// When the route's overall timeout expires.
    pub deadline: Option<std::time::Instant>,
    /// Endpoints tried so far, so a retry prefers another.
    /// Inline: most requests make one try, and this would be their one allocation.
    pub tried: smallvec::SmallVec<[SocketAddr; 2]>,
    /// Circuit-breaker admission, held until the request ends.
    pub admission: Option<Admission>,
    /// The current try, counted against its endpoint.
    pub active: Option<ActiveTry>,
    pub retry_permit: Option<RetryPermit>,
    /// This try's request is the last its upstream connection may carry.
    pub close_upstream: bool,
    /// The try goes upstream as HTTP/2.
    pub upstream_h2: bool,
    /// The request is gRPC (by its content-type).
    pub grpc: bool,
    /// The answer's `grpc-status`, from its headers or trailers.
    pub grpc_status: Option<u8>,
    /// Envoy's `%RESPONSE_CODE_DETAILS%`, where the waypoint decided the answer.
    pub details: Option<String>,
    /// The current try's claim on its HBONE tunnel, settled in `logging`.
    pub tunnel: Option<crate::hbone::lease::Lease>,
    /// A retriable outcome was not retried: attempts, deadline or budget ran out.
    pub retry_limit_hit: bool,
    /// When the request arrived, for the access log's duration and start time.
    pub started: Option<(std::time::Instant, jiff::Timestamp)>,
    /// When the current try's request went upstream, and how long its answer took.
    pub upstream_sent: Option<std::time::Instant>,
    pub upstream_time: Option<std::time::Duration>,
    pub last_endpoint: Option<EndpointIdx>,
    /// The request's spans, when tracing is on.
    pub trace: Option<crate::trace::RequestTrace>,
    /// Response headers an external authorizer set when it allowed.
    pub ext_authz_response: Vec<crate::ext_authz::HeaderEdit>,
    cluster: Option<Arc<Cluster>>,
}

impl RequestCtx {
    pub fn route(&self) -> Option<&Route> {
        let rt = self.runtime.as_ref()?;
        let fwd = self.forward.as_ref()?;
        rt.snapshot.service(fwd.route_owner).routes.get(fwd.route)
    }

    /// Whether a try that ended with `outcome` is retried under the route's
    /// policy, the deadline and the cluster's retry budget (`maxRetries`).
    pub fn may_retry(&mut self, outcome: waypoint_filters::retry::TryOutcome) -> bool {
        use waypoint_filters::retry::{retriable, should_retry};
        let done = self.tries.saturating_sub(1);
        let expired = self
            .deadline
            .is_some_and(|d| d <= std::time::Instant::now());
        let (covered, allowed) = match self.route() {
            Some(route) => {
                let policy = &route.policy.retry;
                (
                    retriable(policy, outcome),
                    !expired && should_retry(policy, outcome, done),
                )
            }
            None => return false,
        };
        if !covered {
            return false;
        }
        if !allowed {
            // A retriable outcome refused by attempts or deadline: Envoy's URX.
            self.retry_limit_hit = true;
            return false;
        }
        match self.cluster().map(|c| c.breaker.retry()) {
            Some(Ok(permit)) => {
                self.retry_permit = Some(permit);
                true
            }
            Some(Err(_)) => {
                log::debug!("retry budget exhausted (maxRetries)");
                self.retry_limit_hit = true;
                false
            }
            None => true,
        }
    }

    /// Envoy's response flags for the access log: the flag, plus URX when the
    /// retry limit ended the request (`UF,URX`).
    pub fn flags(&self) -> Cow<'static, str> {
        match (self.flag, self.retry_limit_hit) {
            (ResponseFlag::None, true) => "URX".into(),
            (f, true) => format!("{f},URX").into(),
            (f, false) => f.as_str().into(),
        }
    }

    /// What decides this request's metric labels, besides its source.
    pub fn series_key(&self, status: u16) -> crate::metrics::SeriesKey {
        (
            self.forward.as_ref().map(|f| f.service),
            self.last_endpoint,
            status,
            self.flag,
            self.retry_limit_hit,
            self.grpc.then_some(self.grpc_status),
        )
    }

    /// Envoy's cluster name for the backend: `outbound|port|subset|host`.
    pub fn upstream_cluster(&self) -> Option<String> {
        self.cluster_name().map(|c| c.to_string())
    }

    pub fn cluster_name(&self) -> Option<ClusterName<'_>> {
        let rt = self.runtime.as_ref()?;
        let fwd = self.forward.as_ref()?;
        let svc = rt.snapshot.service(fwd.service);
        let subset = fwd
            .subset
            .map(|i| svc.subsets[i].name.as_str())
            .unwrap_or("");
        Some(ClusterName {
            port: fwd.port,
            subset,
            host: &svc.hostname,
        })
    }

    /// Response header edits: the picked backend's, then the route's (Envoy
    /// applies weighted-cluster headers before route headers).
    pub fn apply_response_edits(&self, resp: &mut ResponseHeader) -> Result<()> {
        for edit in &self.ext_authz_response {
            edit.apply(resp);
        }
        let Some(route) = self.route() else {
            return Ok(());
        };
        let backend = self.forward.as_ref().and_then(|f| f.backend);
        if let Some(f) = waypoint_filters::backend_filters(route, backend) {
            apply(&f.response_headers, &mut PingoraHeaders(&mut *resp))?;
        }
        apply(&route.filters.response_headers, &mut PingoraHeaders(resp))
    }

    pub fn route_name(&self) -> Option<&str> {
        self.route().map(|r| r.name.as_str())
    }

    /// The cluster this request goes to: (backend service, subset, port). Looked
    /// up once per request; every try and every later hook uses the same one.
    pub fn cluster(&mut self) -> Option<Arc<Cluster>> {
        if self.cluster.is_none() {
            let rt = self.runtime.as_ref()?;
            let fwd = self.forward.as_ref()?;
            self.cluster = rt
                .upstreams
                .cluster((fwd.service, fwd.subset, fwd.port))
                .cloned();
        }
        self.cluster.clone()
    }

    /// The endpoint for this try: the pinned workload, or the cluster's pick.
    pub fn pick_endpoint(&mut self, cluster: &Arc<Cluster>) -> Option<(EndpointIdx, SocketAddr)> {
        let rt = self.runtime.as_ref()?;
        let fwd = self.forward.as_ref()?;
        let picked = match fwd.pinned {
            Some(idx) => {
                let ep = rt.snapshot.service(fwd.service).endpoint(idx);
                self.active = None;
                (idx, SocketAddr::new(ep.address, ep.target_port(fwd.port)?))
            }
            None => {
                let (active, addr) = cluster.pick(&self.tried)?;
                let idx = cluster.endpoints[active.slot()].0;
                self.active = Some(active);
                (idx, addr)
            }
        };
        self.tried.push(picked.1);
        self.last_endpoint = Some(picked.0);
        Some(picked)
    }

    /// Opens the client span of the try about to go to `addr`, when sampled.
    pub fn trace_try(&mut self, method: &http::Method, addr: SocketAddr) {
        if !self.trace.as_ref().is_some_and(|t| t.recording()) {
            return;
        }
        let cluster = self.upstream_cluster().unwrap_or_default();
        let resends = self.tries.saturating_sub(1);
        let destination = self.destination().map(str::to_string);
        let Some(trace) = self.trace.as_mut() else {
            return;
        };
        trace.start_try(&cluster, || {
            let mut attrs = vec![
                KeyValue::new("http.request.method", method.to_string()),
                KeyValue::new("server.address", addr.ip().to_string()),
                KeyValue::new("server.port", i64::from(addr.port())),
                KeyValue::new("network.peer.address", addr.ip().to_string()),
                KeyValue::new("network.peer.port", i64::from(addr.port())),
                KeyValue::new("upstream_cluster", cluster.clone()),
            ];
            if resends > 0 {
                attrs.push(KeyValue::new(
                    "http.request.resend_count",
                    i64::from(resends),
                ));
            }
            if let Some(id) = destination {
                attrs.push(KeyValue::new("destination.principal", id));
            }
            attrs
        });
    }

    /// What the server span records once the request is over.
    pub fn trace_summary(&self, request_bytes: usize, response_bytes: usize) -> Vec<KeyValue> {
        let mut attrs = vec![
            KeyValue::new("response_flags", self.flags()),
            KeyValue::new("http.request.body.size", request_bytes as i64),
            KeyValue::new("http.response.body.size", response_bytes as i64),
        ];
        if let Some(cluster) = self.upstream_cluster() {
            attrs.push(KeyValue::new("upstream_cluster", cluster));
        }
        if let Some(route) = self.route_name() {
            attrs.push(KeyValue::new("route_name", route.to_string()));
        }
        if let Some(src) = &self.source {
            attrs.push(KeyValue::new("source.principal", src.to_string()));
        }
        if let Some(dst) = self.destination() {
            attrs.push(KeyValue::new("destination.principal", dst.to_string()));
        }
        if self.grpc {
            attrs.push(KeyValue::new("rpc.system", "grpc"));
            if let Some(code) = self.grpc_status {
                attrs.push(KeyValue::new("rpc.grpc.status_code", i64::from(code)));
            }
        }
        attrs
    }

    /// Identity of the endpoint of the last try.
    pub fn destination(&self) -> Option<&str> {
        self.endpoint(self.last_endpoint?)?.identity.as_deref()
    }

    /// The endpoint of the backend service, for transport and identity.
    pub fn endpoint(&self, idx: EndpointIdx) -> Option<&waypoint_ir::Endpoint> {
        let rt = self.runtime.as_ref()?;
        let fwd = self.forward.as_ref()?;
        Some(rt.snapshot.service(fwd.service).endpoint(idx))
    }

    /// Tells outlier detection how the current try ended; true if that ejected
    /// the endpoint.
    pub fn report(&mut self, result: TryResult) -> bool {
        let Some(cluster) = self.cluster() else {
            return false;
        };
        let Some(active) = self.active.as_ref() else {
            return false;
        };
        let Some(ejected) = cluster.outlier.report(active.slot(), result) else {
            return false;
        };
        let addr = cluster.endpoints[active.slot()].1;
        log::warn!("outlier detection: ejecting {addr} for {ejected:?} after {result:?}");
        true
    }

    /// Istio's standard metric labels for this request.
    pub fn labels(&self, status: u16) -> crate::metrics::RequestLabels {
        let mut l = crate::metrics::RequestLabels::default();
        l.set("reporter", "waypoint");
        if let Some(src) = &self.source {
            l.set("source_principal", src.to_string());
            l.set("source_workload_namespace", src.namespace.clone());
            l.set("connection_security_policy", "mutual_tls");
        } else {
            l.set("connection_security_policy", "none");
        }
        l.set("request_protocol", if self.grpc { "grpc" } else { "http" });
        l.set("response_code", status.to_string());
        l.set(
            "grpc_response_status",
            self.grpc_status.map(|c| c.to_string()).unwrap_or_default(),
        );
        l.set("response_flags", self.flags().into_owned());
        if let (Some(rt), Some(fwd)) = (self.runtime.as_ref(), self.forward.as_ref()) {
            let svc = rt.snapshot.service(fwd.service);
            l.set("destination_service", svc.hostname.clone());
            l.set("destination_service_name", svc.name.clone());
            l.set("destination_service_namespace", svc.namespace.clone());
            l.set("destination_workload_namespace", svc.namespace.clone());
            if let Some(ep) = self.last_endpoint.map(|i| svc.endpoint(i)) {
                let (canonical, revision) = crate::metrics::canonical(&ep.labels);
                l.set("destination_workload", canonical.clone());
                l.set("destination_canonical_service", canonical);
                l.set("destination_canonical_revision", revision);
                if let Some(app) = ep.labels.get("app") {
                    l.set("destination_app", app.clone());
                }
                if let Some(v) = ep.labels.get("version") {
                    l.set("destination_version", v.clone());
                }
                if let Some(id) = &ep.identity {
                    l.set("destination_principal", id.clone());
                }
            }
        }
        l
    }
}

/// Pingora's request and response heads keep header-name case, so the shared
/// edits (`waypoint_filters::headers::apply`) go through their methods rather
/// than the `http::HeaderMap` inside. A wrapper, because both types are foreign.
struct PingoraHeaders<'a, T>(&'a mut T);

macro_rules! impl_header_edit {
    ($t:ty) => {
        impl HeaderEdit for PingoraHeaders<'_, $t> {
            fn set(&mut self, name: &str, value: &str) -> std::result::Result<(), InvalidHeader> {
                let bad = || InvalidHeader { name: name.into() };
                self.0
                    .insert_header(name.to_string(), value)
                    .map(|_| ())
                    .map_err(|_| bad())
            }
            fn add(&mut self, name: &str, value: &str) -> std::result::Result<(), InvalidHeader> {
                let bad = || InvalidHeader { name: name.into() };
                self.0
                    .append_header(name.to_string(), value)
                    .map(|_| ())
                    .map_err(|_| bad())
            }
            fn remove(&mut self, name: &str) {
                self.0.remove_header(name);
            }
        }
    };
}
impl_header_edit!(RequestHeader);
impl_header_edit!(ResponseHeader);

fn apply(m: &HeaderModifier, h: &mut impl HeaderEdit) -> Result<()> {
    waypoint_filters::headers::apply(m, h)
        .map_err(|e| Error::because(InternalError, "applying a route's header edits", e))
}

/// Header modifiers and URL rewrites of the chosen route and backend, before
/// the request leaves. The backend's headers go first, then the route's (Envoy's
/// order for weighted-cluster and route headers); a backend's rewrite replaces
/// the route's.
pub fn apply_request_edits(session: &mut Session, fwd: &ForwardDecision<'_>) -> Result<()> {
    let filters = &fwd.route.filters;
    let backend = fwd.backend_filters();
    let req = session.req_header_mut();
    if let Some(b) = backend {
        apply(&b.request_headers, &mut PingoraHeaders(&mut *req))?;
    }
    apply(&filters.request_headers, &mut PingoraHeaders(&mut *req))?;
    let rewrite = backend.and_then(|b| b.rewrite.as_ref());
    let Some(rewrite) = rewrite.or(filters.rewrite.as_ref()) else {
        return Ok(());
    };
    if let Some(host) = &rewrite.hostname {
        req.insert_header("host", host.as_str())?;
    }
    if let Some(modifier) = &rewrite.path {
        let matched = fwd.matched.and_then(|i| fwd.route.matches.get(i));
        let path = waypoint_filters::headers::rewrite_path(
            req.uri.path(),
            matched.and_then(|m| m.path.as_ref()),
            modifier,
        );
        let path_and_query = match req.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let uri = http::Uri::builder()
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| Error::because(InternalError, "rewritten path is not a valid URI", e))?;
        req.set_uri(uri);
    }
    Ok(())
}
