//! The waypoint's intermediate representation (IR).
//!
//! Every source (Kubernetes Services and Pods, Istio VirtualService/DestinationRule,
//! Gateway API HTTPRoute, GRPCRoute, TCPRoute) is translated once into a [`Snapshot`]; the data path reads
//! nothing else. The types here are plain data: no YAML, no Kubernetes types, no I/O.
//! A snapshot is immutable once built and shared as `Arc<Snapshot>`, so a request sees
//! one consistent world for its whole life, retries included.

mod authz;
mod backend;
mod ext_authz;
mod jwt;
mod labels;
mod names;
mod policy;
mod route;
mod sparse;

pub use authz::{
    AuthzAction, AuthzPolicy, AuthzRule, Cidr, Condition, ConditionKey, ConditionValue, Field,
    OperationMatch, PathPattern, PathSegment, ServiceAccount, SourceMatch, StrMatch,
};
pub use backend::{
    ConsumerRoutes, Endpoint, EndpointIdx, Protocol, RouteConflict, RouteSource, Service,
    ServiceIdx, ServicePort, Subset, TcpRoute,
};
pub use ext_authz::{
    BodyInCheck, ExtAuthzProtocol, ExtAuthzProvider, HttpCheck, EXT_AUTHZ_MAX_BODY,
    EXT_AUTHZ_TIMEOUT,
};
pub use jwt::{default_locations, JwksSource, JwtRule, TokenLocation, JWKS_FETCH_TIMEOUT};
pub use labels::{sorted_pairs, Labels};
pub use names::{ResourceKind, ResourceRef};
pub use policy::{
    Abort, ClientSelector, ConnectionPool, Fault, LbPolicy, OutlierDetection, Percent, RateLimit,
    RetryOn, RetryPolicy, RoutePolicy, TrafficPolicy, GRPC_CODES,
};
pub use route::{
    BackendFilters, BackendRef, BackendTarget, HeaderMatch, HeaderModifier, Method, PathMatch,
    PathModifier, Pattern, QueryMatch, Redirect, RequestMatch, Route, RouteAction, RouteFilters,
    RouteOrigin, StringMatch, UrlRewrite,
};
pub use sparse::{SharedDefault, Sparse};

use serde::Serialize;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// What an HBONE `:authority` (`ip:port`) resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Target {
    /// A service VIP and one of its ports: routes pick the backend.
    Service { service: ServiceIdx, port: u16 },
    /// A workload address: that endpoint is the backend, with its service's L7 policy.
    /// `port` is the service port whose target port was addressed.
    Workload {
        service: ServiceIdx,
        port: u16,
        endpoint: EndpointIdx,
    },
}

/// The whole routing world at one config generation.
///
/// Invariants (established by `waypoint-config`, relied on by the data path):
/// every `ServiceIdx`/`EndpointIdx` stored anywhere is in range; every route's
/// regexes are compiled; `by_vip`, `by_workload` and `by_host` are consistent with
/// `services`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Snapshot {
    /// Shared with the next snapshot where unchanged: an endpoint change
    /// copies the one Service it concerns, not the world.
    pub services: Vec<Arc<Service>>,
    /// VIP + service port → service.
    #[serde(skip)]
    pub by_vip: HashMap<SocketAddr, (ServiceIdx, u16)>,
    /// Endpoint IP → (service, endpoint), for workload-addressed tunnels.
    #[serde(skip)]
    pub by_workload: HashMap<IpAddr, Vec<(ServiceIdx, EndpointIdx)>>,
    /// Every hostname a plaintext `Host` header may use (`name`, `name.ns`,
    /// `name.ns.svc`, FQDN, ServiceEntry hosts), lower-case, without port.
    #[serde(skip)]
    pub by_host: HashMap<String, ServiceIdx>,
    /// The `istio-waypoint` Gateway this config declares, if any.
    pub waypoint: Option<WaypointGateway>,
    /// AuthorizationPolicies for everything this waypoint serves: those that
    /// target its Gateway, and the root namespace's for every waypoint. A
    /// service's own are `Service::authz`; a request is judged by both.
    pub authz: Vec<AuthzPolicy>,
    /// RequestAuthentication rules for everything this waypoint serves,
    /// attached as `authz` is; a service's own are `Service::jwt`.
    pub jwt: Vec<JwtRule>,
    /// The mesh config's external authorizers CUSTOM policies can name.
    pub ext_authz: Vec<ExtAuthzProvider>,
}

/// A `Gateway` of class `istio-waypoint`: who this waypoint is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaypointGateway {
    pub source: ResourceRef,
    /// `(name, port, protocol)` of each listener.
    pub listeners: Vec<(String, u16, String)>,
}

impl Snapshot {
    pub fn service(&self, idx: ServiceIdx) -> &Service {
        &self.services[idx.0]
    }

    pub fn ext_authz(&self, provider: &str) -> Option<&ExtAuthzProvider> {
        self.ext_authz.iter().find(|p| p.name == provider)
    }

    /// Fills `by_workload` from the services' endpoints.
    pub fn index_workloads(&mut self) {
        self.by_workload.clear();
        // An upper bound (endpoints may share an address): sized once rather
        // than rehashed as it grows.
        let endpoints = self.services.iter().map(|s| s.endpoints.len()).sum();
        self.by_workload.reserve(endpoints);
        for (i, svc) in self.services.iter().enumerate() {
            for (e, ep) in svc.endpoints.iter().enumerate() {
                self.by_workload
                    .entry(ep.address)
                    .or_default()
                    .push((ServiceIdx(i), EndpointIdx(e)));
            }
        }
    }

    /// Resolves an HBONE CONNECT target: a VIP first, then a workload address
    /// whose endpoint serves `addr.port()` as a target port.
    pub fn resolve_target(&self, addr: SocketAddr) -> Option<Target> {
        if let Some(&(service, port)) = self.by_vip.get(&addr) {
            return Some(Target::Service { service, port });
        }
        let candidates = self.by_workload.get(&addr.ip())?;
        candidates.iter().find_map(|&(service, endpoint)| {
            let ep = self.service(service).endpoint(endpoint);
            ep.service_port_for_target(addr.port())
                .map(|port| Target::Workload {
                    service,
                    port,
                    endpoint,
                })
        })
    }

    /// Resolves a plaintext `Host` header (`name[:port]`). Without a port the
    /// service's first port is used. An IP literal (`10.96.0.10:9080`, a pod's
    /// `ip:targetPort`) resolves as an HBONE `CONNECT` to that address would;
    /// without a port it means HTTP's default, 80 (RFC 9110 §7.2).
    pub fn resolve_host(&self, host: &str) -> Option<Target> {
        let (name, port) = split_host_port(host);
        if let Ok(ip) = name.parse::<IpAddr>() {
            return self.resolve_target(SocketAddr::new(ip, port.unwrap_or(80)));
        }
        let service = *self.by_host.get(&name.to_ascii_lowercase())?;
        let svc = self.service(service);
        let port = match port {
            Some(p) => svc.port(p)?.port,
            None => svc.ports.first()?.port,
        };
        Some(Target::Service { service, port })
    }
}

/// Splits `host[:port]`, understanding bracketed IPv6 literals.
pub fn split_host_port(host: &str) -> (&str, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((h, tail)) = rest.split_once(']') {
            return (h, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (host, None),
        },
        _ => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port("a.b:80"), ("a.b", Some(80)));
        assert_eq!(split_host_port("a.b"), ("a.b", None));
        assert_eq!(split_host_port("[::1]:8080"), ("::1", Some(8080)));
        assert_eq!(split_host_port("a:notaport"), ("a:notaport", None));
    }
}
