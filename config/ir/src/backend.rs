//! Services, their ports, endpoints and subsets.

use crate::{Labels, ResourceRef, Route, TrafficPolicy};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ServiceIdx(pub usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct EndpointIdx(pub usize);

/// A Kubernetes Service or an Istio ServiceEntry host, with everything needed to
/// route to it.
#[derive(Debug, Clone, Serialize)]
pub struct Service {
    /// FQDN: `name.ns.svc.<cluster-domain>`, or the ServiceEntry host.
    pub hostname: String,
    pub namespace: String,
    pub name: String,
    pub source: ResourceRef,
    pub addresses: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
    pub endpoints: Vec<Endpoint>,
    /// DestinationRule subsets, each with the endpoints whose labels it selects.
    pub subsets: Vec<Subset>,
    /// Every route table of the service, one after another: the producer table
    /// first, then each of `consumers`' (which name their ranges). Within a table
    /// the first route that matches wins; Gateway API precedence is resolved at
    /// translation time by sorting, so the data path never compares. One vector,
    /// so a route is named by its index whichever table holds it.
    pub routes: Vec<Route>,
    /// Where the producer table came from, and any source that lost to it.
    pub route_source: RouteSource,
    /// GEP-1294 consumer routes: HTTPRoutes in another namespace whose parent is
    /// this service. Empty for almost every service, so the data path pays one
    /// length check.
    pub consumers: Vec<ConsumerRoutes>,
    /// Gateway API TCPRoutes whose parent is this service, oldest first (then
    /// by namespace/name, then rule): GEP-2644 gives a port's connections to
    /// the oldest route. A connection to a TCP port takes the first that binds
    /// its port, else goes to the service itself. They bind only ports whose
    /// protocol is not HTTP (Istio's waypoint builds no TCP chain there), and
    /// on a `Detect` port only when no HTTPRoute or GRPCRoute binds it (GEP-1426).
    pub tcp_routes: Vec<TcpRoute>,
    /// AuthorizationPolicies whose `targetRefs` name this Service (or
    /// ServiceEntry).
    pub authz: Vec<crate::AuthzPolicy>,
    /// RequestAuthentication rules whose `targetRefs` name this service.
    pub jwt: Vec<crate::JwtRule>,
    /// DestinationRule `trafficPolicy` (top level), and per port with
    /// `portLevelSettings` merged over it.
    pub traffic: TrafficPolicy,
    pub port_traffic: BTreeMap<u16, TrafficPolicy>,
}

/// Which API supplied a service's routes; Gateway API routes win over
/// VirtualServices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub enum RouteSource {
    /// No route attached: the default route to all endpoints.
    #[default]
    Default,
    /// HTTPRoutes and GRPCRoutes (GAMMA), and the TCPRoutes of `tcp_routes`.
    GatewayApi {
        routes: Vec<ResourceRef>,
        /// VirtualServices that also target this service and were ignored.
        shadowed: Vec<ResourceRef>,
        /// Routes left off some port because a route of another type binds it.
        conflicts: Vec<RouteConflict>,
    },
    /// Istio's waypoint merges every VirtualService for the host, oldest first
    /// (istio/istio#59484): `routes` in that order.
    VirtualService { routes: Vec<ResourceRef> },
}

/// GEP-1426 ("Route types"): where routes of different types bind one Service
/// port, only the first type of GRPCRoute, HTTPRoute, TLSRoute, TCPRoute
/// applies there; the others are not applied on that port and their parent
/// status says `Accepted: False`, reason `RouteReasonConflicted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteConflict {
    /// The route not applied.
    pub route: ResourceRef,
    /// Its `spec.parentRefs[]` index.
    pub parent: usize,
    /// The service ports it lost, in order.
    pub ports: Vec<u16>,
    /// True when it lost every port its parentRef binds.
    pub whole: bool,
    /// The routes of the winning type that bind those ports.
    pub winners: Vec<ResourceRef>,
}

/// The routes HTTPRoutes in `namespace` attach to a service of another
/// namespace. GEP-1294: requests from `namespace` use them instead of the
/// producer table (not before it), and nobody else does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerRoutes {
    pub namespace: String,
    /// `Service::routes[start..end]`.
    pub start: usize,
    pub end: usize,
    /// The service ports some route of the table binds (`parentRefs[].port`);
    /// `None`: every port. On other ports the namespace's requests get the
    /// producer table, as no route of theirs is present there.
    pub ports: Option<Vec<u16>>,
    pub from: Vec<ResourceRef>,
    /// Routes of this namespace left off a port by GEP-1426's route types.
    pub conflicts: Vec<RouteConflict>,
}

/// A TCPRoute rule with a Service parent: a connection's bytes go to one of
/// `backends`, picked by weight once per connection.
#[derive(Debug, Clone, Serialize)]
pub struct TcpRoute {
    /// `TCPRoute default/db rules[0]`.
    pub name: String,
    pub origin: crate::RouteOrigin,
    /// `parentRefs[].port`; `None`: every TCP port of the service.
    pub port: Option<u16>,
    /// No backend (or all weights zero, or the pick is invalid): the
    /// connection is refused.
    pub backends: Vec<crate::BackendRef>,
}

impl TcpRoute {
    pub fn binds(&self, port: u16) -> bool {
        self.port.is_none_or(|p| p == port)
    }
}

impl ConsumerRoutes {
    pub fn binds(&self, port: u16) -> bool {
        self.ports.as_ref().is_none_or(|p| p.contains(&port))
    }
}

impl Service {
    /// Every GEP-1426 conflict on this service: the producer table's, then
    /// each consumer table's.
    pub fn conflicts(&self) -> impl Iterator<Item = &RouteConflict> {
        let producer = match &self.route_source {
            RouteSource::GatewayApi { conflicts, .. } => conflicts.as_slice(),
            _ => &[],
        };
        producer
            .iter()
            .chain(self.consumers.iter().flat_map(|c| c.conflicts.iter()))
    }

    /// The TCPRoute a connection to `port` takes, if any.
    pub fn tcp_route(&self, port: u16) -> Option<&TcpRoute> {
        self.tcp_routes.iter().find(|r| r.binds(port))
    }

    /// The route table for a request from `source_namespace` (the peer's SPIFFE
    /// namespace; `None` without one) to `port`, and its offset in `routes`.
    pub fn route_table(&self, source_namespace: Option<&str>, port: u16) -> (usize, &[Route]) {
        if let Some(ns) = source_namespace.filter(|_| !self.consumers.is_empty()) {
            if let Some(c) = self
                .consumers
                .iter()
                .find(|c| c.namespace == ns && c.binds(port))
            {
                return (c.start, &self.routes[c.start..c.end]);
            }
        }
        (0, self.producer_routes())
    }

    /// The producer table: every route before the first consumer table.
    pub fn producer_routes(&self) -> &[Route] {
        let end = self
            .consumers
            .first()
            .map_or(self.routes.len(), |c| c.start);
        &self.routes[..end]
    }

    pub fn port(&self, port: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == port)
    }

    pub fn endpoint(&self, idx: EndpointIdx) -> &Endpoint {
        &self.endpoints[idx.0]
    }

    /// The traffic policy for requests to `subset` on `port`: the subset's own
    /// (merged over the top level), else the port's, else the top level.
    pub fn traffic_policy(&self, subset: Option<usize>, port: u16) -> &TrafficPolicy {
        subset
            .and_then(|i| self.subsets.get(i)?.traffic.as_deref())
            .or_else(|| self.port_traffic.get(&port))
            .unwrap_or(&self.traffic)
    }

    /// Replaces the endpoints, and with them each subset's members.
    pub fn set_endpoints(&mut self, endpoints: Vec<Endpoint>) {
        self.endpoints = endpoints;
        for s in &mut self.subsets {
            s.endpoints = Subset::members(&s.labels, &self.endpoints);
        }
    }

    pub fn subset(&self, name: &str) -> Option<&Subset> {
        self.subsets.iter().find(|s| s.name == name)
    }

    /// Endpoints of the service (or of `subset`) that serve `port`.
    pub fn endpoints_for<'a>(
        &'a self,
        subset: Option<&'a Subset>,
        port: u16,
    ) -> impl Iterator<Item = (EndpointIdx, &'a Endpoint)> + 'a {
        let all = subset.is_none();
        let idxs: &'a [EndpointIdx] = subset.map(|s| s.endpoints.as_slice()).unwrap_or(&[]);
        let from_all = self
            .endpoints
            .iter()
            .enumerate()
            .filter(move |_| all)
            .map(|(i, e)| (EndpointIdx(i), e));
        let from_subset = idxs.iter().map(move |&i| (i, self.endpoint(i)));
        from_all
            .chain(from_subset)
            .filter(move |(_, e)| e.target_port(port).is_some())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServicePort {
    pub port: u16,
    pub name: Option<String>,
    pub app_protocol: Option<String>,
    /// What the port carries, chosen from `app_protocol` and `name`.
    pub protocol: Protocol,
}

/// What a service port carries, as Istio names it (`pkg/config/protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    GrpcWeb,
    Https,
    Tcp,
    Tls,
    Mongo,
    Mysql,
    Redis,
    Udp,
    /// Neither `appProtocol` nor the name says: HTTP/1.1, HTTP/2 or opaque TCP
    /// is told from the connection's first bytes.
    Detect,
}

impl Protocol {
    /// The name `waypoint check` and the README use.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Http2 => "http2",
            Protocol::Grpc => "grpc",
            Protocol::GrpcWeb => "grpc-web",
            Protocol::Https => "https",
            Protocol::Tcp => "tcp",
            Protocol::Tls => "tls",
            Protocol::Mongo => "mongo",
            Protocol::Mysql => "mysql",
            Protocol::Redis => "redis",
            Protocol::Udp => "udp",
            Protocol::Detect => "detect",
        }
    }

    /// Carried as HTTP (routes, retries and HTTP metrics apply).
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb
        )
    }
}

/// One workload instance (a Pod, an EndpointSlice endpoint, a WorkloadEntry or a
/// ServiceEntry inline endpoint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub address: IpAddr,
    /// Service port → the port this endpoint listens on for it (targetPort resolved,
    /// named ports included). A service port missing here is not served by it.
    pub ports: BTreeMap<u16, u16>,
    pub labels: std::sync::Arc<Labels>,
    /// `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`, when the service account is known.
    pub identity: Option<String>,
    /// In the ambient mesh (reached over HBONE once upstream HBONE exists).
    pub in_mesh: bool,
    /// Where it came from, e.g. `Pod default/productpage-v1`.
    pub source: ResourceRef,
}

impl Endpoint {
    pub fn target_port(&self, service_port: u16) -> Option<u16> {
        self.ports.get(&service_port).copied()
    }

    /// The service port whose target is `target`, for workload-addressed traffic.
    pub fn service_port_for_target(&self, target: u16) -> Option<u16> {
        self.ports
            .iter()
            .find(|(_, &t)| t == target)
            .map(|(&svc, _)| svc)
    }
}

impl Subset {
    /// The endpoints whose labels include all of `labels`.
    pub fn members(labels: &Labels, endpoints: &[Endpoint]) -> Vec<EndpointIdx> {
        endpoints
            .iter()
            .enumerate()
            .filter(|(_, ep)| ep.labels.matches(labels))
            .map(|(i, _)| EndpointIdx(i))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subset {
    pub name: String,
    pub labels: Labels,
    pub endpoints: Vec<EndpointIdx>,
    pub source: ResourceRef,
    /// The subset's `trafficPolicy` merged over the rule's top level (boxed:
    /// most subsets have none, and a snapshot holds many subsets).
    pub traffic: Option<Box<TrafficPolicy>>,
}
