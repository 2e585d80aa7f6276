//! AuthorizationPolicy → [`AuthzPolicy`], attached where Istio attaches it for
//! a waypoint (`pilot/pkg/model/policyattachment.go` `ShouldAttachPolicy` with
//! `IsWaypoint`, istio/istio @86c9f01):
//!
//! - only through `targetRefs` (or the deprecated `targetRef`): a waypoint
//!   never uses `selector`, and a policy with neither applies to workloads
//!   (ztunnel), namespace- or, from the root namespace, mesh-wide;
//! - `Service` (core) or `ServiceEntry` (networking.istio.io) named in the
//!   policy's own namespace: that service;
//! - `Gateway` (gateway.networking.k8s.io) naming the waypoint's own, policy in
//!   the Gateway's namespace: every request through the waypoint;
//! - `GatewayClass` `istio-waypoint`, policy in the root namespace: every
//!   waypoint, whatever its class.
//!
//! Fail closed: a policy the waypoint cannot enforce exactly (invalid as Istio
//! validates it, a field or attribute not supported here, CUSTOM) is
//! [`Severity::Refused`](crate::Severity::Refused) and replaced, where it
//! attaches, by a DENY of every request (for DENY, or an unknown action), an
//! ALLOW of none (ALLOW), or a DENY of what its rules match (CUSTOM: what
//! Istio does when the provider is unusable, `getBadCustomDenyRules`).

mod rules;

use super::Cx;
use crate::istio::authorization_policy::{AuthorizationPolicySpec, SpecHead, TargetRef};
use crate::istio::AuthorizationPolicyDoc;
use crate::parse::Obj;
use crate::Diagnostic;
use waypoint_ir::{AuthzAction, AuthzPolicy, AuthzRule, ResourceKind, Service, WaypointGateway};

/// Istio's `constants.WaypointGatewayClassName`: the only class a root
/// namespace policy can target.
const WAYPOINT_CLASS: &str = "istio-waypoint";
const GATEWAY_API: &str = "gateway.networking.k8s.io";

/// Where a policy applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attach {
    Waypoint,
    Service(usize),
}

/// Attaches every AuthorizationPolicy to `services[i].authz`, and returns the
/// waypoint-wide ones; each list ordered by namespace/name.
pub fn apply(
    cx: &mut Cx<'_>,
    services: &mut [Service],
    waypoint: Option<&WaypointGateway>,
) -> Vec<AuthzPolicy> {
    let mut policies: Vec<&Obj<AuthorizationPolicyDoc>> =
        cx.res.authorization_policies.iter().collect();
    policies.sort_by(|a, b| a.id.cmp(&b.id));
    let waypoint = waypoint.map(|w| &w.source);
    let mut wide = Vec::new();
    for obj in policies {
        let (attach, policy) = one(cx, obj, services, waypoint);
        for a in attach {
            match a {
                Attach::Waypoint => wide.push(policy.clone()),
                Attach::Service(i) => services[i].authz.push(policy.clone()),
            }
        }
    }
    wide
}

fn one(
    cx: &mut Cx<'_>,
    obj: &Obj<AuthorizationPolicyDoc>,
    services: &[Service],
    waypoint: Option<&waypoint_ir::ResourceRef>,
) -> (Vec<Attach>, AuthzPolicy) {
    let mut problems = rules::Problems::new();
    let spec: Option<AuthorizationPolicySpec> =
        match serde_path_to_error::deserialize(&obj.doc.spec) {
            Ok(s) => Some(s),
            Err(e) => {
                let path = e.path().to_string();
                let field = if path == "." {
                    "spec".into()
                } else {
                    format!("spec.{path}")
                };
                problems.push((field, e.inner().to_string()));
                None
            }
        };
    let head = match &spec {
        Some(s) => SpecHead {
            selector: s.selector.clone(),
            target_ref: s.target_ref.clone(),
            target_refs: s.target_refs.clone(),
            action: s.action.clone(),
        },
        None => serde_json::from_value(obj.doc.spec.clone()).unwrap_or_default(),
    };
    let mut refs = head.target_refs.clone();
    let field = if refs.is_empty() {
        refs.extend(head.target_ref.clone());
        "spec.targetRef"
    } else {
        if head.target_ref.is_some() {
            problems.push((
                "spec.targetRef".into(),
                "set only one of targetRef and targetRefs".into(),
            ));
        }
        "spec.targetRefs"
    };
    if refs.is_empty() {
        let why = if head.selector.is_some() {
            "a policy with a selector applies to the selected workloads (ztunnel or sidecars), never to a waypoint; target the Service, ServiceEntry or waypoint Gateway with targetRefs"
        } else if obj.ns() == cx.opts.root_namespace {
            "a root namespace policy without targetRefs applies mesh-wide to workloads (ztunnel), not to waypoints; target GatewayClass istio-waypoint to apply it to every waypoint"
        } else {
            "a policy without targetRefs applies to the workloads of its namespace (ztunnel), not to waypoints; target the Service, ServiceEntry or waypoint Gateway with targetRefs"
        };
        cx.diags
            .push(Diagnostic::warning(&obj.file, Some(&obj.id), "spec", why));
        return (
            Vec::new(),
            policy(obj, AuthzAction::Allow, Vec::new(), false),
        );
    }
    if head.selector.is_some() {
        problems.push((
            "spec.selector".into(),
            "only one of targetRefs or selector can be set".into(),
        ));
    }
    let attach = attachments(cx, obj, &refs, field, services, waypoint, &mut problems);

    let action = match head.action.as_deref() {
        None | Some("ALLOW") => Some(AuthzAction::Allow),
        Some("DENY") => Some(AuthzAction::Deny),
        Some("AUDIT") => Some(AuthzAction::Audit),
        Some("CUSTOM") => Some(AuthzAction::Custom {
            provider: spec
                .as_ref()
                .and_then(|s| s.provider.as_ref())
                .map(|p| p.name.clone())
                .unwrap_or_default(),
        }),
        Some(other) => {
            problems.push((
                "spec.action".into(),
                format!("unknown action {other:?} (ALLOW, DENY, AUDIT, CUSTOM)"),
            ));
            None
        }
    };
    let custom = matches!(action, Some(AuthzAction::Custom { .. }));
    let mut translated = Vec::new();
    if let Some(s) = &spec {
        if custom {
            if s.rules.is_empty() {
                problems.push(("spec.rules".into(), "CUSTOM action without rules is never triggered; add an empty rule {} to apply it to every request".into()));
            } else if s.provider.as_ref().is_none_or(|p| p.name.is_empty()) {
                problems.push((
                    "spec.provider.name".into(),
                    "must be set with the CUSTOM action".into(),
                ));
            }
        } else if s.provider.is_some() {
            problems.push((
                "spec.provider".into(),
                "only valid with the CUSTOM action".into(),
            ));
        }
        if action == Some(AuthzAction::Deny) && s.rules.is_empty() {
            problems.push(("spec.rules".into(), "DENY action without rules is never triggered; add an empty rule {} to deny every request".into()));
        }
        let mut rcx = rules::RuleCx {
            namespace: obj.ns(),
            custom,
            problems: &mut problems,
        };
        for (i, r) in s.rules.iter().enumerate() {
            let at = format!("spec.rules[{i}]");
            match r {
                Some(r) => translated.push(rules::rule(&mut rcx, r, &at)),
                None => rcx.problems.push((at, "must not be null".into())),
            }
        }
    }
    let valid = problems.is_empty();
    if custom {
        problems.push((
            "spec.action".into(),
            "CUSTOM (external authorization) is not supported by this waypoint yet".into(),
        ));
    }
    if problems.is_empty() {
        return (
            attach,
            policy(
                obj,
                action.expect("no problem: action known"),
                translated,
                false,
            ),
        );
    }
    let (action, rules, instead) = match action {
        Some(AuthzAction::Allow) => (AuthzAction::Allow, Vec::new(), "an ALLOW of no request"),
        Some(AuthzAction::Audit) => (AuthzAction::Audit, Vec::new(), "an AUDIT of no request"),
        Some(AuthzAction::Custom { .. }) if valid => (
            AuthzAction::Deny,
            translated,
            "a DENY of the requests its rules match",
        ),
        _ => (
            AuthzAction::Deny,
            vec![AuthzRule::default()],
            "a DENY of every request",
        ),
    };
    for (field, message) in problems {
        cx.diags.push(Diagnostic::refused(
            &obj.file,
            Some(&obj.id),
            field,
            format!(
                "{message}; the policy cannot be enforced as written and is replaced by {instead}"
            ),
        ));
    }
    (attach, policy(obj, action, rules, true))
}

fn policy(
    obj: &Obj<AuthorizationPolicyDoc>,
    action: AuthzAction,
    rules: Vec<AuthzRule>,
    fail_closed: bool,
) -> AuthzPolicy {
    AuthzPolicy {
        source: obj.id.clone(),
        action,
        rules,
        fail_closed,
    }
}

/// Where the policy's targets are, here; invalid targets are problems
/// (Istio's `validatePolicyTargetReference`), and targets naming nothing this
/// waypoint serves a warning.
fn attachments(
    cx: &mut Cx<'_>,
    obj: &Obj<AuthorizationPolicyDoc>,
    refs: &[TargetRef],
    field: &str,
    services: &[Service],
    waypoint: Option<&waypoint_ir::ResourceRef>,
    problems: &mut rules::Problems,
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

#[cfg(test)]
mod tests;
