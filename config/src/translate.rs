//! Resources → one `Snapshot`. The order of the steps matters: services and their
//! endpoints first (everything else refers to them), then DestinationRule subsets
//! (routes refer to subsets by index), then routes, then the lookup indexes.

mod hosts;
mod http_route;
mod matchers;
mod policy;
mod services;
mod subsets;
mod traffic;
mod traffic_policy;
mod virtual_service;

use crate::parse::Resources;
use crate::{Diagnostic, Options};
use std::collections::BTreeMap;
use waypoint_ir::{
    BackendRef, BackendTarget, Route, RouteAction, RouteFilters, RouteOrigin, RouteSource,
    ServiceIdx, Snapshot,
};

/// What every translation step shares.
pub struct Cx<'a> {
    pub res: &'a Resources,
    pub opts: &'a Options,
    pub diags: &'a mut Vec<Diagnostic>,
}

impl Cx<'_> {
    /// The file a service's own resource came from, for diagnostics about it.
    pub fn file_of(&self, id: &waypoint_ir::ResourceRef) -> String {
        let r = self.res;
        let found = match id.kind {
            waypoint_ir::ResourceKind::Service => {
                r.services.iter().find(|o| &o.id == id).map(|o| &o.file)
            }
            waypoint_ir::ResourceKind::ServiceEntry => r
                .service_entries
                .iter()
                .find(|o| &o.id == id)
                .map(|o| &o.file),
            _ => None,
        };
        found.cloned().unwrap_or_else(|| "-".into())
    }
}

pub fn translate(res: &Resources, opts: &Options, diags: &mut Vec<Diagnostic>) -> Snapshot {
    let mut cx = Cx { res, opts, diags };
    let mut snapshot = Snapshot {
        services: services::build(&mut cx),
        ..Snapshot::default()
    };
    let index = hosts::HostIndex::build(&snapshot.services);
    subsets::apply(&mut cx, &index, &mut snapshot.services);

    let world = World {
        index: &index,
        services: &snapshot.services,
    };
    let vs = virtual_service::routes(&mut cx, &world);
    let hr = http_route::routes(&mut cx, &world);
    attach(&mut cx, &mut snapshot, vs, hr);
    traffic_policy::apply(&mut cx, &index, &mut snapshot.services);

    hosts::index(&mut cx, &mut snapshot);
    snapshot.waypoint = waypoint_gateway(&cx);
    snapshot
}

/// What route translation looks names up in: the services, by name.
pub struct World<'a> {
    pub index: &'a hosts::HostIndex,
    pub services: &'a [waypoint_ir::Service],
}

/// Routes found for one service, with the resources that supplied them.
pub struct Attached {
    pub routes: Vec<Route>,
    pub from: Vec<waypoint_ir::ResourceRef>,
    pub file: String,
}

/// A service with both HTTPRoutes and VirtualServices. Istio documents no
/// precedence here: "Mixing VirtualService and HTTPRoute for the same workload is
/// not supported and leads to undefined behavior" (istio.io, ambient "Migrate
/// policies"; VirtualService on waypoints is Alpha). We pick the HTTPRoute, the
/// API Istio recommends for waypoints, ignore the VirtualService for that service,
/// and say so.
fn attach(
    cx: &mut Cx<'_>,
    snapshot: &mut Snapshot,
    mut vs: BTreeMap<ServiceIdx, Attached>,
    mut hr: BTreeMap<ServiceIdx, Attached>,
) {
    for (i, svc) in snapshot.services.iter_mut().enumerate() {
        let idx = ServiceIdx(i);
        let vs = vs.remove(&idx);
        match (hr.remove(&idx), vs) {
            (Some(h), shadowed) => {
                let shadowed = shadowed.map(|v| v.from).unwrap_or_default();
                for s in &shadowed {
                    cx.diags.push(Diagnostic::warning(
                        &h.file,
                        h.from.first(),
                        "spec.parentRefs",
                        format!("{s} also routes {}; Istio does not support mixing the two APIs for one service, so this waypoint uses the HTTPRoute and ignores the VirtualService for it", svc.hostname),
                    ));
                }
                svc.routes = h.routes;
                svc.route_source = RouteSource::HttpRoute {
                    routes: h.from,
                    shadowed,
                };
            }
            (None, Some(v)) => {
                svc.routes = v.routes;
                svc.route_source = RouteSource::VirtualService { routes: v.from };
            }
            (None, None) => {
                svc.routes = vec![default_route(idx)];
                svc.route_source = RouteSource::Default;
            }
        }
    }
}

/// A service nobody routes: every request to any of its endpoints.
fn default_route(idx: ServiceIdx) -> Route {
    Route {
        name: "default".into(),
        origin: RouteOrigin {
            resource: None,
            field: String::new(),
        },
        port: None,
        matches: Vec::new(),
        filters: RouteFilters::default(),
        action: RouteAction::Forward(vec![BackendRef {
            target: BackendTarget::Service {
                service: idx,
                port: None,
                subset: None,
            },
            weight: 1,
        }]),
        policy: Default::default(),
    }
}

fn waypoint_gateway(cx: &Cx<'_>) -> Option<waypoint_ir::WaypointGateway> {
    use crate::gateway_api::GatewayDoc;
    let mut gws: Vec<&crate::parse::Obj<GatewayDoc>> = cx
        .res
        .gateways
        .iter()
        .filter(|g| g.doc.spec.gateway_class_name == crate::gateway_api::WAYPOINT_CLASS)
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
