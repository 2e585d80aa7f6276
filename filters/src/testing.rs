//! Test support: a small builder for IR snapshots, shared by this crate's tests and
//! the `route_select` bench. Compiled always (it is a few functions with no extra
//! dependencies) because a bench cannot turn on its own crate's features.

use std::net::{IpAddr, SocketAddr};
use waypoint_ir::{
    BackendRef, BackendTarget, ConsumerRoutes, Endpoint, EndpointIdx, HeaderMatch, PathMatch,
    RequestMatch, ResourceKind, ResourceRef, Route, RouteAction, RouteOrigin, Service, ServiceIdx,
    ServicePort, Snapshot, StringMatch, Subset,
};

/// Builds a [`Snapshot`] and keeps its lookup maps consistent with its services.
/// Add a service's endpoints before its subsets: a subset selects the endpoints
/// present when it is added.
#[derive(Default)]
pub struct SnapshotBuilder {
    snapshot: Snapshot,
}

impl SnapshotBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A service `name.default.svc.cluster.local` on `vip:port`, without routes.
    pub fn service(&mut self, name: &str, vip: IpAddr, port: u16) -> ServiceIdx {
        let idx = ServiceIdx(self.snapshot.services.len());
        let hostname = format!("{name}.default.svc.cluster.local");
        self.snapshot.services.push(std::sync::Arc::new(Service {
            hostname: hostname.clone(),
            namespace: "default".into(),
            name: name.into(),
            source: ResourceRef::new(ResourceKind::Service, "default", name),
            addresses: vec![vip],
            ports: vec![ServicePort {
                port,
                name: Some("http".into()),
                app_protocol: None,
                protocol: waypoint_ir::Protocol::Http,
            }],
            endpoints: Vec::new(),
            subsets: Vec::new(),
            routes: Vec::new(),
            route_source: Default::default(),
            consumers: Vec::new(),
            tcp_routes: Vec::new(),
            authz: Vec::new(),
            jwt: Vec::new(),
            traffic: Default::default(),
            port_traffic: Default::default(),
        }));
        self.snapshot
            .by_vip
            .insert(SocketAddr::new(vip, port), (idx, port));
        for host in [name.to_string(), format!("{name}.default"), hostname] {
            self.snapshot.by_host.insert(host, idx);
        }
        idx
    }

    /// An endpoint serving every port of `service` on `target_port`.
    pub fn endpoint(
        &mut self,
        service: ServiceIdx,
        address: IpAddr,
        target_port: u16,
        labels: &[(&str, &str)],
    ) -> EndpointIdx {
        let svc = std::sync::Arc::make_mut(&mut self.snapshot.services[service.0]);
        let idx = EndpointIdx(svc.endpoints.len());
        svc.endpoints.push(Endpoint {
            address,
            ports: svc.ports.iter().map(|p| (p.port, target_port)).collect(),
            labels: std::sync::Arc::new(labels_map(labels)),
            identity: None,
            in_mesh: true,
            source: ResourceRef::new(
                ResourceKind::Pod,
                "default",
                format!("{}-{}", svc.name, idx.0),
            ),
        });
        self.snapshot
            .by_workload
            .entry(address)
            .or_default()
            .push((service, idx));
        idx
    }

    /// A subset selecting the service's endpoints whose labels include `labels`;
    /// returns its index.
    pub fn subset(&mut self, service: ServiceIdx, name: &str, labels: &[(&str, &str)]) -> usize {
        let svc = std::sync::Arc::make_mut(&mut self.snapshot.services[service.0]);
        let labels = labels_map(labels);
        let endpoints = svc
            .endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| e.labels.matches(&labels))
            .map(|(i, _)| EndpointIdx(i))
            .collect();
        svc.subsets.push(Subset {
            name: name.into(),
            labels,
            endpoints,
            traffic: None,
            source: ResourceRef::new(ResourceKind::DestinationRule, "default", &svc.name),
        });
        svc.subsets.len() - 1
    }

    /// Appends `route` to the service's (already ordered) producer table. Add
    /// consumer tables after every producer route.
    pub fn route(&mut self, service: ServiceIdx, route: Route) {
        let svc = std::sync::Arc::make_mut(&mut self.snapshot.services[service.0]);
        assert!(svc.consumers.is_empty(), "producer routes come first");
        svc.routes.push(route);
    }

    /// A consumer table: `routes` for clients in `namespace`, on every port.
    pub fn consumer(&mut self, service: ServiceIdx, namespace: &str, routes: Vec<Route>) {
        let svc = std::sync::Arc::make_mut(&mut self.snapshot.services[service.0]);
        let start = svc.routes.len();
        svc.routes.extend(routes);
        svc.consumers.push(ConsumerRoutes {
            namespace: namespace.into(),
            start,
            end: svc.routes.len(),
            ports: None,
            from: Vec::new(),
            conflicts: Vec::new(),
        });
    }

    pub fn build(self) -> Snapshot {
        self.snapshot
    }
}

fn labels_map(labels: &[(&str, &str)]) -> waypoint_ir::Labels {
    labels.iter().copied().collect()
}

/// A route named `name` with `matches` and `action`, and no filters.
pub fn route(name: &str, matches: Vec<RequestMatch>, action: RouteAction) -> Route {
    Route {
        name: name.into(),
        origin: RouteOrigin {
            resource: None,
            field: String::new(),
        },
        port: None,
        matches,
        filters: Default::default(),
        action,
        policy: Default::default(),
    }
}

/// A weighted backend on the request's port.
pub fn to(service: ServiceIdx, subset: Option<usize>, weight: u32) -> BackendRef {
    let target = BackendTarget::Service {
        service,
        port: None,
        subset,
    };
    BackendRef::new(target, weight)
}

/// A Gateway API `PathPrefix` match.
pub fn path_prefix(prefix: &str) -> RequestMatch {
    RequestMatch {
        path: Some(PathMatch::SegmentPrefix(
            prefix.trim_end_matches('/').into(),
        )),
        ..Default::default()
    }
}

/// Adds an exact header match to `m`.
pub fn with_header(mut m: RequestMatch, name: &str, value: &str) -> RequestMatch {
    m.headers.push(HeaderMatch {
        name: name.to_ascii_lowercase(),
        value: StringMatch::Exact(value.into()),
        invert: false,
    });
    m
}
