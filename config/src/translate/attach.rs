//! Where an Istio security policy (AuthorizationPolicy, RequestAuthentication)
//! applies at a waypoint, as Istio decides it
//! (`pilot/pkg/model/policyattachment.go` `ShouldAttachPolicy` with
//! `IsWaypoint`, istio/istio @86c9f01):
//!
//! - only through `targetRefs` (or the deprecated `targetRef`): a waypoint
//!   never uses `selector`, and a policy with neither applies to workloads
//!   (ztunnel or sidecars), namespace- or, from the root namespace, mesh-wide;
//! - `Service` (core) or `ServiceEntry` (networking.istio.io) named in the
//!   policy's own namespace: that service;
//! - `Gateway` (gateway.networking.k8s.io) naming the waypoint's own, policy in
//!   the Gateway's namespace: every request through the waypoint;
//! - `GatewayClass` `istio-waypoint`, policy in the root namespace: every
//!   waypoint, whatever its class.

use super::Cx;
use crate::istio::authorization_policy::TargetRef;
use crate::parse::Obj;
use crate::Diagnostic;
use waypoint_ir::{ResourceKind, ResourceRef, Service};

/// Istio's `constants.WaypointGatewayClassName`: the only class a root
/// namespace policy can target.
const WAYPOINT_CLASS: &str = "istio-waypoint";
const GATEWAY_API: &str = "gateway.networking.k8s.io";

/// Where a policy applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    Waypoint,
    Service(usize),
}

/// Puts `items` where `attach` says: the waypoint-wide list, or the list
/// `field` picks on each attached service.
pub fn distribute<T: Clone>(
    attach: &[Attach],
    items: &[T],
    wide: &mut Vec<T>,
    services: &mut [waypoint_ir::Service],
    field: fn(&mut waypoint_ir::Service) -> &mut Vec<T>,
) {
    for a in attach {
        match a {
            Attach::Waypoint => wide.extend_from_slice(items),
            Attach::Service(i) => field(&mut services[*i]).extend_from_slice(items),
        }
    }
}

/// A policy's selection fields, as written.
pub struct Targeting<'a> {
    pub selector: bool,
    pub target_ref: Option<&'a TargetRef>,
    pub target_refs: &'a [TargetRef],
}

/// Where the policy applies here. `None` when it applies to workloads, not
/// waypoints (a warning says so); invalid targets are `problems` (Istio's
/// `validateOneOfSelectorType` and `validatePolicyTargetReference`), and
/// targets naming nothing this waypoint serves a warning.
pub fn targets<T>(
    cx: &mut Cx<'_>,
    obj: &Obj<T>,
    t: Targeting<'_>,
    services: &[Service],
    waypoint: Option<&ResourceRef>,
    problems: &mut Vec<(String, String)>,
) -> Option<Vec<Attach>> {
    let mut refs: Vec<&TargetRef> = t.target_refs.iter().collect();
    let field = if refs.is_empty() {
        refs.extend(t.target_ref);
        "spec.targetRef"
    } else {
        if t.target_ref.is_some() {
            problems.push((
                "spec.targetRef".into(),
                "set only one of targetRef and targetRefs".into(),
            ));
        }
        "spec.targetRefs"
    };
    if refs.is_empty() {
        let why = if t.selector {
            "a policy with a selector applies to the selected workloads (ztunnel or sidecars), never to a waypoint; target the Service, ServiceEntry or waypoint Gateway with targetRefs"
        } else if obj.ns() == cx.opts.root_namespace {
            "a root namespace policy without targetRefs applies mesh-wide to workloads (ztunnel), not to waypoints; target GatewayClass istio-waypoint to apply it to every waypoint"
        } else {
            "a policy without targetRefs applies to the workloads of its namespace (ztunnel), not to waypoints; target the Service, ServiceEntry or waypoint Gateway with targetRefs"
        };
        cx.diags
            .push(Diagnostic::warning(&obj.file, Some(&obj.id), "spec", why));
        return None;
    }
    if t.selector {
        problems.push((
            "spec.selector".into(),
            "only one of targetRefs or selector can be set".into(),
        ));
    }
    Some(attachments(
        cx, obj, &refs, field, services, waypoint, problems,
    ))
}

/// Where the policy's targets are, here; invalid targets are problems
/// (Istio's `validatePolicyTargetReference`), and targets naming nothing this
/// waypoint serves a warning.
fn attachments<T>(
    cx: &mut Cx<'_>,
    obj: &Obj<T>,
    refs: &[&TargetRef],
    field: &str,
    services: &[Service],
    waypoint: Option<&ResourceRef>,
    problems: &mut Vec<(String, String)>,
) -> Vec<Attach> {
    let ns = obj.ns();
    let mut out: Vec<Attach> = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let at = if field == "spec.targetRef" {
            field.to_string()
        } else {
            format!("{field}[{i}]")
        };
        if r.name.is_empty() {
            problems.push((format!("{at}.name"), "must be set".into()));
        }
        if !r.namespace.is_empty() {
            problems.push((
                format!("{at}.namespace"),
                "must not be set; cross namespace referencing is not supported".into(),
            ));
        }
        let group = if r.group.is_empty() {
            "core"
        } else {
            r.group.as_str()
        };
        let mut found = Vec::new();
        match (group, r.kind.as_str()) {
            ("core", "Service") | ("networking.istio.io", "ServiceEntry") => {
                let kind = if r.kind == "Service" {
                    ResourceKind::Service
                } else {
                    ResourceKind::ServiceEntry
                };
                for (k, s) in services.iter().enumerate() {
                    if s.source.kind == kind && s.source.namespace == ns && s.source.name == r.name {
                        found.push(Attach::Service(k));
                    }
                }
            }
            (GATEWAY_API, "Gateway") => {
                let same_ns = r.namespace.is_empty() || r.namespace == ns;
                if waypoint.is_some_and(|w| w.namespace == ns && w.name == r.name) && same_ns {
                    found.push(Attach::Waypoint);
                }
            }
            (GATEWAY_API, "GatewayClass") => {
                if ns != cx.opts.root_namespace {
                    cx.diags.push(Diagnostic::warning(&obj.file, Some(&obj.id), &at, format!("a policy targeting a GatewayClass applies only from the root namespace {}; ignored", cx.opts.root_namespace)));
                } else if r.name != WAYPOINT_CLASS {
                    cx.diags.push(Diagnostic::warning(&obj.file, Some(&obj.id), &at, format!("Istio binds policies to GatewayClass {WAYPOINT_CLASS} only; ignored")));
                } else {
                    found.push(Attach::Waypoint);
                }
            }
            _ => problems.push((format!("{at}.kind"), format!("{}/{} is not a valid target: Service, networking.istio.io/ServiceEntry, {GATEWAY_API}/Gateway or {GATEWAY_API}/GatewayClass", r.group, r.kind))),
        }
        for a in found {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    if out.is_empty() {
        cx.diags.push(Diagnostic::warning(
            &obj.file,
            Some(&obj.id),
            field,
            "names nothing this waypoint serves: the policy applies to nothing here",
        ));
    }
    out
}
