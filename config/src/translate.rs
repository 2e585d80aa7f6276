//! Resources → one `Snapshot`. The order of the steps matters: services and their
//! endpoints first (everything else refers to them), then DestinationRule subsets
//! (routes refer to subsets by index), then routes, then the lookup indexes.

mod attach;
mod authz;
mod ext_authz;
mod grpc_route;
mod hosts;
mod http_route;
mod index;
mod jwt;
mod matchers;
mod mesh_routes;
mod policy;
mod protocol;
mod refresh;
mod services;
mod subsets;
mod tcp_route;
mod traffic;
mod traffic_policy;
mod virtual_service;

pub use refresh::{refresh_endpoints, Refresh};

use crate::parse::Resources;
use crate::{Diagnostic, Options};
use std::collections::BTreeMap;
use waypoint_ir::{
    BackendRef, BackendTarget, ConsumerRoutes, PathMatch, RequestMatch, Route, RouteAction,
    RouteOrigin, RouteSource, Service, ServiceIdx, Snapshot,
};

/// What every translation step shares.
pub struct Cx<'a> {
    /// In `translate`, without DestinationRules, VirtualServices, Services,
    /// Pods, EndpointSlices and Namespaces, which its steps take out; whole
    /// elsewhere (`refresh`).
    pub res: &'a Resources,
    pub opts: &'a Options,
    pub diags: &'a mut Vec<Diagnostic>,
}

pub fn translate(mut res: Resources, opts: &Options, diags: &mut Vec<Diagnostic>) -> Snapshot {
    // The documents only one step reads are taken out of `res` and dropped
    // after it, so the snapshot does not share the heap with them (tens of
    // megabytes at 10,000 Services); `Cx::res` holds none of them.
    let destination_rules = std::mem::take(&mut res.destination_rules);
    let virtual_services = std::mem::take(&mut res.virtual_services);
    // What makes services and their endpoints, read through an index built
    // once.
    let kube_services = std::mem::take(&mut res.services);
    let pods = std::mem::take(&mut res.pods);
    let slices = std::mem::take(&mut res.slices);
    let namespaces = std::mem::take(&mut res.namespaces);
    let res = &res;
    let mut cx = Cx { res, opts, diags };
    let idx = index::Index::build(&pods, &slices, &namespaces);
    let (mut services, files) = services::build(&mut cx, &idx, &kube_services);
    drop(idx);
    drop((kube_services, pods, slices, namespaces));
    let index = hosts::HostIndex::build(&services);
    subsets::apply(&mut cx, &index, &mut services, &destination_rules);
    drop(destination_rules);

    let waypoint = waypoint_gateway(&cx);
    let world = World {
        index: &index,
        services: &services,
        waypoint_namespace: waypoint.as_ref().map(|w| w.source.namespace.as_str()),
    };
    let vs = virtual_service::routes(&mut cx, &world, &virtual_services);
    drop(virtual_services);
    let mesh = mesh_routes::routes(&mut cx, &world);
    let tcp = tcp_route::routes(&mut cx, &world, &mesh);
    attach(&mut cx, &mut services, vs, mesh, tcp);
    traffic_policy::apply(&mut cx, &index, &mut services);
    let providers = ext_authz::providers(&mut cx, &services);
    let authz = authz::apply(&mut cx, &mut services, waypoint.as_ref(), &providers);
    let jwt = jwt::apply(&mut cx, &mut services, waypoint.as_ref());

    // Vectors grown push by push keep spare room (four slots at least): at
    // tens of thousands of services that is tens of megabytes.
    for svc in &mut services {
        svc.routes.shrink_to_fit();
        svc.subsets.shrink_to_fit();
        svc.endpoints.shrink_to_fit();
    }
    let mut snapshot = Snapshot {
        services: services.into_iter().map(std::sync::Arc::new).collect(),
        waypoint,
        authz,
        jwt,
        ext_authz: providers.usable,
        ..Snapshot::default()
    };
    hosts::index(&mut cx, &mut snapshot, &files);
    snapshot
}

/// What route translation looks names up in: the services, by name.
pub struct World<'a> {
    pub index: &'a hosts::HostIndex,
    pub services: &'a [waypoint_ir::Service],
    /// The namespace of the waypoint's own Gateway, when one is declared.
    pub waypoint_namespace: Option<&'a str>,
}

/// Routes found for one service, with the resources that supplied them.
pub struct Attached {
    pub routes: Vec<Route>,
    pub from: Vec<waypoint_ir::ResourceRef>,
    pub file: String,
}

/// Each service's route tables: the producer table, then its consumer tables,
/// and its TCPRoutes.
///
/// A service with both (producer) Gateway API routes and VirtualServices: Istio
/// documents no precedence here: "Mixing VirtualService and HTTPRoute for the
/// same workload is not supported and leads to undefined behavior" (istio.io,
/// ambient "Migrate policies"; VirtualService on waypoints is Alpha). We pick the
/// Gateway API routes, the API Istio recommends for waypoints, ignore the
/// VirtualService for that service, and say so.
fn attach(
    cx: &mut Cx<'_>,
    services: &mut [Service],
    mut vs: BTreeMap<ServiceIdx, Attached>,
    mut mesh: mesh_routes::MeshRoutes,
    mut tcp: tcp_route::TcpRoutes,
) {
    for (i, svc) in services.iter_mut().enumerate() {
        let idx = ServiceIdx(i);
        let vs = vs.remove(&idx);
        let mut conflicts = mesh.conflicts.remove(&(idx, None)).unwrap_or_default();
        conflicts.extend(tcp.conflicts.remove(&idx).unwrap_or_default());
        let tcp_from = tcp.from.remove(&idx).unwrap_or_default();
        svc.tcp_routes = tcp.routes.remove(&idx).unwrap_or_default();
        match (mesh.producer.remove(&idx), vs) {
            (Some(h), shadowed) => {
                let shadowed = shadowed.map(|v| v.from).unwrap_or_default();
                for s in &shadowed {
                    cx.diags.push(Diagnostic::warning(
                        &h.file,
                        h.from.first(),
                        "spec.parentRefs",
                        format!("{s} also routes {}; Istio does not support mixing the two APIs for one service, so this waypoint uses the {} and ignores the VirtualService for it", svc.hostname, h.from.first().map_or("HTTPRoute", |r| r.kind.as_str())),
                    ));
                }
                svc.routes = h.routes;
                let mut routes = h.from;
                routes.extend(tcp_from);
                svc.route_source = RouteSource::GatewayApi {
                    routes,
                    shadowed,
                    conflicts,
                };
            }
            (None, Some(v)) => {
                svc.routes = v.routes;
                svc.route_source = RouteSource::VirtualService { routes: v.from };
            }
            (None, None) => {
                svc.routes = Vec::new();
                svc.route_source = if tcp_from.is_empty() {
                    RouteSource::Default
                } else {
                    RouteSource::GatewayApi {
                        routes: tcp_from,
                        shadowed: Vec::new(),
                        conflicts,
                    }
                };
            }
        }
        add_default_routes(svc, idx);
        for (namespace, table) in mesh.consumers.remove(&idx).unwrap_or_default() {
            let start = svc.routes.len();
            let ports = bound_ports(&table.routes, svc);
            let conflicts = mesh
                .conflicts
                .remove(&(idx, Some(namespace.clone())))
                .unwrap_or_default();
            svc.routes.extend(table.routes);
            svc.consumers.push(ConsumerRoutes {
                namespace,
                start,
                end: svc.routes.len(),
                ports,
                from: table.from,
                conflicts,
            });
        }
    }
}

/// Gives every port no producer route binds the Service's default route.
/// GEP-1294 makes route presence a matter of Service and port (`parentRef.port`
/// attaches to that port only), and Istio's waypoint builds each port's routes
/// from those that apply on it, falling back to the default when none does
/// (`buildWaypointInboundHTTPRouteConfig`).
fn add_default_routes(svc: &mut Service, idx: ServiceIdx) {
    match bound_ports(&svc.routes, svc) {
        _ if svc.routes.is_empty() => svc.routes.push(default_route(idx, None)),
        None => {}
        Some(bound) => {
            let unbound: Vec<u16> = svc
                .ports
                .iter()
                .map(|p| p.port)
                .filter(|p| !bound.contains(p))
                .collect();
            for port in unbound {
                svc.routes.push(default_route(idx, Some(port)));
            }
        }
    }
}

/// The service ports some route applies on; `None`: every port.
fn bound_ports(routes: &[Route], svc: &Service) -> Option<Vec<u16>> {
    let binds = |r: &Route, port: Option<u16>| {
        let fits = |p: Option<u16>| p.is_none() || p == port;
        fits(r.port) && (r.matches.is_empty() || r.matches.iter().any(|m| fits(m.port)))
    };
    if routes.iter().any(|r| binds(r, None)) {
        return None;
    }
    let ports = svc.ports.iter().map(|p| p.port);
    Some(
        ports
            .filter(|&p| routes.iter().any(|r| binds(r, Some(p))))
            .collect(),
    )
}

/// Whether a route takes every request (on every port): nothing after it in
/// its table is ever reached.
pub fn matches_everything(r: &Route) -> bool {
    let any_path = |p: &Option<PathMatch>| match p {
        None => true,
        Some(PathMatch::Prefix(p)) => p.is_empty() || p == "/",
        Some(PathMatch::SegmentPrefix(p)) => p.is_empty(),
        Some(PathMatch::Exact(_)) | Some(PathMatch::Regex(_)) => false,
    };
    let always = |m: &RequestMatch| {
        any_path(&m.path)
            && m.headers.is_empty()
            && m.query.is_empty()
            && m.method.is_none()
            && m.port.is_none()
    };
    r.port.is_none() && (r.matches.is_empty() || r.matches.iter().any(always))
}

/// Every request to the service's endpoints, on `port` or on any.
fn default_route(idx: ServiceIdx, port: Option<u16>) -> Route {
    let target = BackendTarget::Service {
        service: idx,
        port: None,
        subset: None,
    };
    Route {
        name: "default".into(),
        origin: RouteOrigin {
            resource: None,
            field: String::new(),
        },
        port,
        matches: Vec::new(),
        filters: Default::default(),
        action: RouteAction::Forward(vec![BackendRef::new(target, 1)]),
        policy: Default::default(),
    }
}

fn waypoint_gateway(cx: &Cx<'_>) -> Option<waypoint_ir::WaypointGateway> {
    use crate::gateway_api::GatewayDoc;
    let mut gws: Vec<&crate::parse::Obj<GatewayDoc>> = cx
        .res
        .gateways
        .iter()
        .filter(|g| {
            crate::gateway_api::WAYPOINT_CLASSES.contains(&g.doc.spec.gateway_class_name.as_str())
        })
        .collect();
    gws.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
    let g = gws.first()?;
    Some(waypoint_ir::WaypointGateway {
        source: g.id.clone(),
        listeners: g
            .doc
            .spec
            .listeners
            .iter()
            .map(|l| (l.name.clone(), l.port, l.protocol.clone()))
            .collect(),
    })
}
