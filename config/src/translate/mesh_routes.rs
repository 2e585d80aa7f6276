//! GAMMA route tables: HTTPRoutes and GRPCRoutes with `Service` parents, put in
//! each service's producer table or a consumer namespace's, with GEP-1426's
//! rule between route types applied per Service port.
//!
//! GEP-1294 ("Namespace boundaries", "Multiple routes for a Service"): a parent
//! in the route's own namespace makes a producer route, for every client; a
//! parent in another namespace makes a consumer route, for clients in the
//! route's namespace only, which use their consumer routes instead of the
//! producer's. Routes merge only within one such group. Istio's own waypoint
//! does not implement consumer routes (it reads routes from the Service's and
//! the waypoint's namespaces only, and its ambient conformance run drops
//! `MeshConsumerRoute`); this waypoint does, as the HBONE peer's SPIFFE id names
//! the client's namespace.
//!
//! GEP-1426 ("Route types"): when routes of different types bind one Service
//! and port, only the first type of GRPCRoute, HTTPRoute, TLSRoute, TCPRoute
//! applies; the others are ignored there, with `Accepted: False` and reason
//! `RouteReasonConflicted`. The GRPCRoute API adds that GRPCRoutes and
//! HTTPRoutes never merge. So within one table a port has routes of one type
//! only, and the two precedence orders never meet. (Istio merges the two kinds
//! instead, istio/istio#59222; the spec is followed here, as Linkerd does,
//! linkerd/linkerd2#12782.)

use super::matchers::At;
use super::{grpc_route, http_route, Attached, Cx, World};
use crate::gateway_api::ParentRef;
use std::collections::{BTreeMap, BTreeSet};
use waypoint_ir::{ResourceRef, Route, RouteConflict, ServiceIdx};

/// Sort key: GRPCRoute routes first (they share no port with HTTPRoute ones),
/// each kind by its own precedence; smaller wins.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SortKey {
    Grpc(grpc_route::Precedence),
    Http(http_route::Precedence),
}

/// The GAMMA route tables of each service.
#[derive(Default)]
pub struct MeshRoutes {
    pub producer: BTreeMap<ServiceIdx, Attached>,
    /// One table per consumer namespace, in namespace order.
    pub consumers: BTreeMap<ServiceIdx, Vec<(String, Attached)>>,
    /// GEP-1426 conflicts of each table.
    pub conflicts: BTreeMap<Table, Vec<RouteConflict>>,
}

/// A table: the service, and the consumer namespace (`None`: producer routes).
pub type Table = (ServiceIdx, Option<String>);

/// The GRPCRoutes binding each port of a table: the winners there.
#[derive(Default)]
struct Bound {
    every_port: Vec<ResourceRef>,
    ports: BTreeMap<u16, Vec<ResourceRef>>,
}

impl Bound {
    fn on(&self, port: u16) -> impl Iterator<Item = &ResourceRef> {
        self.every_port
            .iter()
            .chain(self.ports.get(&port).into_iter().flatten())
    }
}

#[derive(Default)]
struct Tables {
    entries: BTreeMap<Table, Vec<(SortKey, Route)>>,
    from: BTreeMap<Table, (Vec<ResourceRef>, String)>,
}

impl Tables {
    fn add(&mut self, table: &Table, id: &ResourceRef, file: &str, routes: Vec<(SortKey, Route)>) {
        let e = self
            .from
            .entry(table.clone())
            .or_insert_with(|| (Vec::new(), file.to_string()));
        if !e.0.contains(id) {
            e.0.push(id.clone());
        }
        self.entries
            .entry(table.clone())
            .or_default()
            .extend(routes);
    }
}

fn table(world: &World<'_>, idx: ServiceIdx, route_ns: &str) -> Table {
    let consumer = world.services[idx.0].namespace != route_ns;
    (idx, consumer.then(|| route_ns.to_string()))
}

fn with_port(routes: &[(SortKey, Route)], port: Option<u16>) -> Vec<(SortKey, Route)> {
    routes
        .iter()
        .map(|(k, r)| {
            let mut r = r.clone();
            r.port = port;
            (k.clone(), r)
        })
        .collect()
}

pub fn routes(cx: &mut Cx<'_>, world: &World<'_>) -> MeshRoutes {
    let mut tables = Tables::default();
    let mut bound: BTreeMap<Table, Bound> = BTreeMap::new();
    for gr in &cx.res.grpc_routes {
        let at = At {
            file: &gr.file,
            id: &gr.id,
        };
        // Rules are validated even when no parent resolves: errors must not hide.
        let translated = grpc_route::translate_rules(cx, &at, world, gr);
        for (_, idx, port) in parents(cx, &at, world, &gr.doc.spec.parent_refs) {
            let table = table(world, idx, gr.ns());
            let b = bound.entry(table.clone()).or_default();
            match port {
                None => b.every_port.push(gr.id.clone()),
                Some(p) => b.ports.entry(p).or_default().push(gr.id.clone()),
            }
            tables.add(&table, &gr.id, &gr.file, with_port(&translated, port));
        }
    }
    let mut conflicts: BTreeMap<Table, Vec<RouteConflict>> = BTreeMap::new();
    for hr in &cx.res.http_routes {
        let at = At {
            file: &hr.file,
            id: &hr.id,
        };
        let translated = http_route::translate_rules(cx, &at, world, hr);
        for (i, idx, port) in parents(cx, &at, world, &hr.doc.spec.parent_refs) {
            let table = table(world, idx, hr.ns());
            let svc = &world.services[idx.0];
            let Some(grpc) = bound.get(&table) else {
                tables.add(&table, &hr.id, &hr.file, with_port(&translated, port));
                continue;
            };
            let ports: Vec<u16> = match port {
                Some(p) => vec![p],
                None => svc.ports.iter().map(|p| p.port).collect(),
            };
            let (lost, kept): (Vec<u16>, Vec<u16>) =
                ports.iter().partition(|&&p| grpc.on(p).next().is_some());
            if lost.is_empty() {
                tables.add(&table, &hr.id, &hr.file, with_port(&translated, port));
                continue;
            }
            let winners: BTreeSet<&ResourceRef> = lost.iter().flat_map(|&p| grpc.on(p)).collect();
            let winners: Vec<ResourceRef> = winners.into_iter().cloned().collect();
            let names: Vec<String> = winners.iter().map(|w| w.to_string()).collect();
            let on: Vec<String> = lost.iter().map(|p| p.to_string()).collect();
            cx.diags.push(at.warning(
                format!("spec.parentRefs[{i}]"),
                format!(
                    "{} also binds Service {}/{} port {}; where an HTTPRoute and a GRPCRoute bind one Service port only the GRPCRoute applies (GEP-1426), so this route is not applied there",
                    names.join(", "),
                    svc.namespace,
                    svc.name,
                    on.join(", ")
                ),
            ));
            for p in &kept {
                tables.add(&table, &hr.id, &hr.file, with_port(&translated, Some(*p)));
            }
            conflicts.entry(table).or_default().push(RouteConflict {
                route: hr.id.clone(),
                parent: i,
                whole: kept.is_empty(),
                ports: lost,
                winners,
            });
        }
    }
    let mut out = MeshRoutes {
        conflicts,
        ..MeshRoutes::default()
    };
    for (table, mut list) in tables.entries {
        list.sort_by(|a, b| a.0.cmp(&b.0));
        let (from, file) = tables.from.remove(&table).unwrap_or_default();
        let attached = Attached {
            routes: list.into_iter().map(|(_, r)| r).collect(),
            from,
            file,
        };
        match table {
            (idx, None) => {
                out.producer.insert(idx, attached);
            }
            (idx, Some(ns)) => out.consumers.entry(idx).or_default().push((ns, attached)),
        }
    }
    out
}

/// The services (and ports) a route attaches to, with each parentRef's index;
/// other parents are ignored.
pub fn parents(
    cx: &mut Cx<'_>,
    at: &At<'_>,
    world: &World<'_>,
    refs: &[ParentRef],
) -> Vec<(usize, ServiceIdx, Option<u16>)> {
    let mut out = Vec::new();
    for (i, p) in refs.iter().enumerate() {
        let is_service = p.kind.as_deref() == Some("Service")
            && matches!(p.group.as_deref(), None | Some("") | Some("core"));
        if !is_service {
            log::debug!(
                "{}: {} parentRefs[{i}] is not a Service; not a mesh route",
                at.file,
                at.id
            );
            continue;
        }
        let ns = p.namespace.as_deref().unwrap_or(&at.id.namespace);
        match world.index.service(ns, &p.name) {
            Some(idx) => match p.port {
                Some(port) if world.services[idx.0].port(port).is_none() => {
                    cx.diags.push(at.warning(
                        format!("spec.parentRefs[{i}].port"),
                        format!(
                            "Service {ns}/{} has no port {port}; the route does not attach there",
                            p.name
                        ),
                    ))
                }
                _ => out.push((i, idx, p.port)),
            },
            None => cx.diags.push(at.warning(
                format!("spec.parentRefs[{i}]"),
                format!("no Service {ns}/{} is known", p.name),
            )),
        }
    }
    out
}
