//! What this waypoint says back on the resources it reads. HTTPRoutes,
//! GRPCRoutes and TCPRoutes with a served Service parent get a `status.parents[]` entry per such parent, with
//! Gateway API's `Accepted` and `ResolvedRefs` conditions; other rejected
//! resources (whose status belongs to istiod or nobody) get a Kubernetes Event.
//! Computing it is plain data ([`desired`]); writing it is [`writer`], and only
//! the elected replica writes.

pub mod writer;

use super::scope::GatewayRef;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use waypoint_config::Diagnostic;
use waypoint_ir::{ResourceKind, ResourceRef, RouteConflict};

/// The route kinds whose status we write.
const ROUTE_KINDS: [ResourceKind; 3] = [
    ResourceKind::HTTPRoute,
    ResourceKind::GRPCRoute,
    ResourceKind::TCPRoute,
];

/// GEP-1426's reason for a route whose type lost a Service port to another's.
pub const CONFLICTED: &str = "RouteReasonConflicted";

/// Our GatewayClass's controller, as it appears in `status.parents[].controllerName`.
pub const CONTROLLER_NAME: &str = "pingora-waypoint.dev/controller";

/// A condition's `lastTransitionTime` for now (`metav1.Time`: whole seconds).
pub fn condition_time() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub kind: &'static str,
    pub ok: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Our entry for one parentRef of one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentStatus {
    pub parent_ref: Value,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteStatus {
    /// The version it was read at, to write it at (`gateway.networking.k8s.io/v1`).
    pub api_version: String,
    pub generation: i64,
    pub parents: Vec<ParentStatus>,
}

/// A Warning Event about a rejected resource without a status of ours.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rejection {
    pub resource: ResourceRef,
    pub message: String,
}

/// A route: its kind, namespace and name.
pub type RouteKey = (ResourceKind, String, String);

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Desired {
    /// By kind, namespace and name.
    pub routes: BTreeMap<RouteKey, RouteStatus>,
    pub events: Vec<Rejection>,
}

fn about<'a>(diags: &'a [Diagnostic], id: &'a ResourceRef) -> impl Iterator<Item = &'a Diagnostic> {
    diags
        .iter()
        .filter(move |d| d.resource.as_ref() == Some(id))
}

fn text(d: &Diagnostic) -> String {
    if d.field.is_empty() {
        d.message.clone()
    } else {
        format!("{}: {}", d.field, d.message)
    }
}

/// The status each served route should have, and the Events to raise, from
/// one translation's diagnostics and GEP-1426 conflicts. `served` holds the
/// served Services.
pub fn desired(
    objects: &[Value],
    rejected: &[Diagnostic],
    warnings: &[Diagnostic],
    conflicts: &[&RouteConflict],
    served: &std::collections::BTreeSet<(String, String)>,
    gw: &GatewayRef,
) -> Desired {
    let mut out = Desired::default();
    for route in objects {
        let Some(kind) = ROUTE_KINDS
            .into_iter()
            .find(|k| route["kind"] == k.as_str())
        else {
            continue;
        };
        let meta = &route["metadata"];
        let (ns, name) = (
            meta["namespace"].as_str().unwrap_or("default"),
            meta["name"].as_str().unwrap_or_default(),
        );
        let id = ResourceRef::new(kind, ns, name);
        let errors: Vec<String> = about(rejected, &id).map(text).collect();
        let warned: Vec<&Diagnostic> = about(warnings, &id).collect();
        let backend_warnings = |suffix: &str| -> Vec<String> {
            warned
                .iter()
                .filter(|d| d.field.contains(".backendRefs[") && d.field.ends_with(suffix))
                .map(|d| text(d))
                .collect()
        };
        let (invalid_kind, not_found) = (
            backend_warnings(".kind"),
            [backend_warnings(".name"), backend_warnings(".port")].concat(),
        );
        let resolved = if !invalid_kind.is_empty() {
            Condition {
                kind: "ResolvedRefs",
                ok: false,
                reason: "InvalidKind",
                message: invalid_kind.join("; "),
            }
        } else if !not_found.is_empty() {
            Condition {
                kind: "ResolvedRefs",
                ok: false,
                reason: "BackendNotFound",
                message: not_found.join("; "),
            }
        } else {
            Condition {
                kind: "ResolvedRefs",
                ok: true,
                reason: "ResolvedRefs",
                message: "All references resolved".into(),
            }
        };
        let mut parents = Vec::new();
        let Some(parent_refs) = route.pointer("/spec/parentRefs").and_then(Value::as_array) else {
            continue;
        };
        for (i, p) in parent_refs.iter().enumerate() {
            let s = |f: &str| p.get(f).and_then(Value::as_str);
            let pns = s("namespace").unwrap_or(ns);
            let Some(pname) = s("name") else { continue };
            let is_service = s("kind") == Some("Service") && s("group").unwrap_or("").is_empty();
            if !is_service || !served.contains(&(pns.to_string(), pname.to_string())) {
                continue;
            }
            let port_field = format!("spec.parentRefs[{i}].port");
            let ns_field = format!("spec.parentRefs[{i}].namespace");
            let conflict = conflicts.iter().find(|c| c.route == id && c.parent == i);
            let accepted = if !errors.is_empty() {
                Condition {
                    kind: "Accepted",
                    ok: false,
                    reason: "UnsupportedValue",
                    message: errors.join("; "),
                }
            } else if let Some(d) = warned.iter().find(|d| d.field == port_field) {
                Condition {
                    kind: "Accepted",
                    ok: false,
                    reason: "NoMatchingParent",
                    message: text(d),
                }
            } else if let Some(d) = warned.iter().find(|d| d.field == ns_field) {
                Condition {
                    kind: "Accepted",
                    ok: false,
                    reason: "UnsupportedValue",
                    message: text(d),
                }
            } else if let Some(c) = conflict.filter(|c| c.whole) {
                Condition {
                    kind: "Accepted",
                    ok: false,
                    reason: CONFLICTED,
                    message: conflict_text(c),
                }
            } else {
                let partly = conflict
                    .map(|c| format!("; {}", conflict_text(c)))
                    .unwrap_or_default();
                Condition {
                    kind: "Accepted",
                    ok: true,
                    reason: "Accepted",
                    message: format!("Route accepted by waypoint {gw}{partly}"),
                }
            };
            let mut parent_ref =
                json!({"group": "", "kind": "Service", "namespace": pns, "name": pname});
            if let Some(port) = p.get("port") {
                parent_ref["port"] = port.clone();
            }
            parents.push(ParentStatus {
                parent_ref,
                conditions: vec![accepted, resolved.clone()],
            });
        }
        if !parents.is_empty() {
            let generation = meta["generation"].as_i64().unwrap_or(0);
            out.routes.insert(
                (kind, ns.to_string(), name.to_string()),
                RouteStatus {
                    api_version: route["apiVersion"]
                        .as_str()
                        .unwrap_or("gateway.networking.k8s.io/v1")
                        .to_string(),
                    generation,
                    parents,
                },
            );
        }
    }
    let mut events: Vec<Rejection> = rejected
        .iter()
        .filter_map(|d| {
            let r = d.resource.as_ref()?;
            (!ROUTE_KINDS.contains(&r.kind)).then(|| Rejection {
                resource: r.clone(),
                message: text(d),
            })
        })
        .collect();
    events.sort();
    events.dedup();
    out.events = events;
    out
}

fn conflict_text(c: &RouteConflict) -> String {
    let winners: Vec<String> = c.winners.iter().map(|w| w.to_string()).collect();
    let ports: Vec<String> = c.ports.iter().map(|p| p.to_string()).collect();
    format!(
        "not applied on port {}: {} binds it, and GEP-1426 applies only the more specific route type there",
        ports.join(", "),
        winners.join(", ")
    )
}

#[cfg(test)]
mod tests;
