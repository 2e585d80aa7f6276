//! TCPRoutes with a `Service` parent → each service's `tcp_routes`.
//!
//! Which ports a rule binds: its parentRef's port, else every port of the
//! Service (GEP-1426 "Ports"), less
//! - ports whose protocol is HTTP (http, http2, grpc, grpc-web): Istio's
//!   waypoint builds only an HTTP filter chain there, so a TCP route never
//!   applies (and GEP-2644 does not let TCP share a port with HTTP);
//! - `Detect` ports that a producer HTTPRoute or GRPCRoute binds: both kinds
//!   could apply there, and GEP-1426 ranks HTTPRoute and GRPCRoute above
//!   TCPRoute, so the TCPRoute is not applied there (`RouteReasonConflicted`).
//!
//! Order: oldest route first, then `namespace/name`, then rule: GEP-2644 gives a
//! port's connections to the oldest TCPRoute and accepts the others. The spec
//! ranks no port-specific route above a port-less one. Consumer TCPRoutes (a
//! parent in another namespace) are not supported: the data path picks a
//! TCPRoute by port alone.

#[cfg(test)]
mod tests;

use super::matchers::At;
use super::mesh_routes::{parents, MeshRoutes};
use super::{http_route, Cx, World};
use std::collections::{BTreeMap, BTreeSet};
use waypoint_ir::{ResourceRef, Route, RouteConflict, RouteOrigin, ServiceIdx, TcpRoute};

/// Each service's TCPRoutes, the resources they came from, and their conflicts.
#[derive(Default)]
pub struct TcpRoutes {
    pub routes: BTreeMap<ServiceIdx, Vec<TcpRoute>>,
    pub from: BTreeMap<ServiceIdx, Vec<ResourceRef>>,
    pub conflicts: BTreeMap<ServiceIdx, Vec<RouteConflict>>,
}

pub fn routes(cx: &mut Cx<'_>, world: &World<'_>, mesh: &MeshRoutes) -> TcpRoutes {
    let mut list: Vec<&crate::parse::Obj<_>> = cx.res.tcp_routes.iter().collect();
    list.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
    let mut out = TcpRoutes::default();
    for tr in list {
        let at = At {
            file: &tr.file,
            id: &tr.id,
        };
        let rules = translate_rules(cx, &at, world, tr);
        for (i, idx, port) in parents(cx, &at, world, &tr.doc.spec.parent_refs) {
            let svc = &world.services[idx.0];
            let field = format!("spec.parentRefs[{i}]");
            if svc.namespace != tr.ns() {
                cx.diags.push(at.warning(
                    format!("{field}.namespace"),
                    format!("Service {}/{} is in another namespace: consumer TCPRoutes are not supported (a connection is routed by its port alone); ignored", svc.namespace, svc.name),
                ));
                continue;
            }
            let candidates: Vec<u16> = match port {
                Some(p) => vec![p],
                None => svc.ports.iter().map(|p| p.port).collect(),
            };
            let http = producer_http(mesh, idx);
            let mut kept = Vec::new();
            let mut http_ports = Vec::new();
            let mut lost = Vec::new();
            let mut winners = BTreeSet::new();
            for p in &candidates {
                let protocol = svc.port(*p).map(|sp| sp.protocol);
                let bound_by = http_binders(http, *p);
                if protocol.is_some_and(|pr| pr.is_http()) {
                    http_ports.push(*p);
                } else if protocol == Some(waypoint_ir::Protocol::Detect) && !bound_by.is_empty() {
                    lost.push(*p);
                    winners.extend(bound_by);
                } else {
                    kept.push(*p);
                }
            }
            let name = |p: &[u16]| p.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
            if !http_ports.is_empty() {
                // On `.port` (the parent matches nothing) only when no port is left.
                cx.diags.push(at.warning(
                    match kept.is_empty() && lost.is_empty() {
                        true => format!("{field}.port"),
                        false => field.clone(),
                    },
                    format!(
                        "Service {}/{} port {} carries HTTP; a TCPRoute applies only to ports of other protocols, so it is not applied there",
                        svc.namespace,
                        svc.name,
                        name(&http_ports)
                    ),
                ));
            }
            if !lost.is_empty() {
                let winners: Vec<ResourceRef> = winners.into_iter().collect();
                let names: Vec<String> = winners.iter().map(|w| w.to_string()).collect();
                cx.diags.push(at.warning(
                    field.clone(),
                    format!(
                        "{} also binds Service {}/{} port {}; where an HTTPRoute or GRPCRoute and a TCPRoute bind one Service port only the former applies (GEP-1426), so this route is not applied there",
                        names.join(", "),
                        svc.namespace,
                        svc.name,
                        name(&lost)
                    ),
                ));
                out.conflicts.entry(idx).or_default().push(RouteConflict {
                    route: tr.id.clone(),
                    parent: i,
                    whole: kept.is_empty(),
                    ports: lost.clone(),
                    winners,
                });
            }
            if kept.is_empty() {
                continue;
            }
            // Port-less when it binds every port it could have bound.
            let ports: Vec<Option<u16>> = if port.is_none() && lost.is_empty() {
                vec![None]
            } else {
                kept.into_iter().map(Some).collect()
            };
            let entry = out.routes.entry(idx).or_default();
            for p in ports {
                for r in &rules {
                    let mut r = r.clone();
                    r.port = p;
                    entry.push(r);
                }
            }
            let from = out.from.entry(idx).or_default();
            if !from.contains(&tr.id) {
                from.push(tr.id.clone());
            }
        }
    }
    out
}

fn producer_http(mesh: &MeshRoutes, idx: ServiceIdx) -> &[Route] {
    mesh.producer
        .get(&idx)
        .map_or(&[][..], |a| a.routes.as_slice())
}

/// The producer HTTPRoutes and GRPCRoutes that bind `port`.
fn http_binders(routes: &[Route], port: u16) -> BTreeSet<ResourceRef> {
    routes
        .iter()
        .filter(|r| r.port.is_none_or(|p| p == port))
        .filter_map(|r| r.origin.resource.clone())
        .collect()
}

fn translate_rules(
    cx: &mut Cx<'_>,
    at: &At<'_>,
    world: &World<'_>,
    tr: &crate::parse::Obj<crate::gateway_api::TcpRouteDoc>,
) -> Vec<TcpRoute> {
    // The CRD's minItems, which a manifest directory does not enforce.
    if tr.doc.spec.rules.is_empty() {
        cx.diags
            .push(at.error("spec.rules", "at least one rule is required"));
    }
    let mut out = Vec::new();
    for (r, rule) in tr.doc.spec.rules.iter().enumerate() {
        let field = format!("spec.rules[{r}]");
        if rule.backend_refs.is_empty() {
            cx.diags.push(at.error(
                format!("{field}.backendRefs"),
                "at least one backendRef is required",
            ));
            continue;
        }
        let mut backends = Vec::new();
        for (b, br) in rule.backend_refs.iter().enumerate() {
            let f = format!("{field}.backendRefs[{b}]");
            let before = cx.diags.len();
            backends.extend(http_route::backend(cx, at, world, tr.ns(), &f, br));
            // The spec: a TCP connection to an invalid backend is rejected.
            for d in &mut cx.diags[before..] {
                if let Some(m) = d.message.strip_suffix("requests sent here get 500") {
                    d.message = format!("{m}connections sent here are refused");
                }
            }
        }
        out.push(TcpRoute {
            name: format!("{} rules[{r}]", tr.id),
            origin: RouteOrigin {
                resource: Some(tr.id.clone()),
                field,
            },
            port: None,
            backends,
        });
    }
    out
}
