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
//! CUSTOM names an ext_authz provider of the mesh config (`super::ext_authz`);
//! a service may be judged by one provider only, as in istiod without
//! `PILOT_ENABLE_MULTIPLE_CUSTOM_AUTHZ_PROVIDERS`.
//!
//! Fail closed: a policy the waypoint cannot enforce exactly (invalid as Istio
//! validates it, a field or attribute not supported here, a CUSTOM provider
//! that is unknown or cannot be used) is
//! [`Severity::Refused`](crate::Severity::Refused) and replaced, where it
//! attaches, by a DENY of every request (for DENY, or an unknown action), an
//! ALLOW of none (ALLOW), or a DENY of what its rules match (CUSTOM: what
//! Istio does when the provider is unusable, `getBadCustomDenyRules`).

mod rules;

use super::attach::{self, Attach};
use super::ext_authz::Providers;
use super::Cx;
use crate::istio::authorization_policy::{AuthorizationPolicySpec, SpecHead, DRY_RUN};
use crate::istio::AuthorizationPolicyDoc;
use crate::parse::Obj;
use crate::Diagnostic;
use waypoint_ir::{AuthzAction, AuthzPolicy, AuthzRule, Service, WaypointGateway};

/// Attaches every AuthorizationPolicy to `services[i].authz`, and returns the
/// waypoint-wide ones; each list ordered by namespace/name.
pub fn apply(
    cx: &mut Cx<'_>,
    services: &mut [Service],
    waypoint: Option<&WaypointGateway>,
    providers: &Providers,
) -> Vec<AuthzPolicy> {
    let mut policies: Vec<&Obj<AuthorizationPolicyDoc>> =
        cx.res.authorization_policies.iter().collect();
    policies.sort_by(|a, b| a.id.cmp(&b.id));
    let waypoint = waypoint.map(|w| &w.source);
    let mut wide = Vec::new();
    for obj in policies {
        let (attach, policy) = one(cx, obj, services, waypoint, providers);
        let items = std::slice::from_ref(&policy);
        super::attach::distribute(&attach, items, &mut wide, services, |s| &mut s.authz);
    }
    one_provider_each(cx, services, &wide);
    wide
}

/// Refuses the CUSTOM policies of a service judged by two providers: the data
/// path then denies what any of them matches, as istiod does.
fn one_provider_each(cx: &mut Cx<'_>, services: &[Service], wide: &[AuthzPolicy]) {
    let mut reported = std::collections::BTreeSet::new();
    for svc in services {
        let custom: Vec<(&waypoint_ir::ResourceRef, &str)> = wide
            .iter()
            .chain(&svc.authz)
            .filter_map(|p| match &p.action {
                AuthzAction::Custom { provider } => Some((&p.source, provider.as_str())),
                _ => None,
            })
            .collect();
        let mut names: Vec<&str> = custom.iter().map(|(_, n)| *n).collect();
        names.sort_unstable();
        names.dedup();
        if names.len() < 2 {
            continue;
        }
        for (policy, _) in custom {
            if !reported.insert((policy.clone(), svc.hostname.clone())) {
                continue;
            }
            let file = cx
                .res
                .authorization_policies
                .iter()
                .find(|o| &o.id == policy)
                .map_or("-", |o| o.file.as_str());
            cx.diags.push(Diagnostic::refused(
                file,
                Some(policy),
                "spec.provider.name",
                format!(
                    "{} is judged by CUSTOM policies of several providers {names:?}; only one provider can be used per service, so for it these policies deny what their rules match",
                    svc.hostname
                ),
            ));
        }
    }
}

fn one(
    cx: &mut Cx<'_>,
    obj: &Obj<AuthorizationPolicyDoc>,
    services: &[Service],
    waypoint: Option<&waypoint_ir::ResourceRef>,
    providers: &Providers,
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
    let Some(attach) = attach::targets(
        cx,
        obj,
        attach::Targeting {
            selector: head.selector.is_some(),
            target_ref: head.target_ref.as_ref(),
            target_refs: &head.target_refs,
        },
        services,
        waypoint,
        &mut problems,
    ) else {
        return (
            Vec::new(),
            policy(obj, AuthzAction::Allow, Vec::new(), false),
        );
    };

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
    let dry_run = dry_run(obj, action.as_ref(), &mut problems);
    let valid = problems.is_empty();
    if let (true, Some(AuthzAction::Custom { provider })) = (valid, &action) {
        if let Some(why) = providers.why_not(provider) {
            problems.push(("spec.provider.name".into(), why));
        }
    }
    if problems.is_empty() {
        let mut p = policy(
            obj,
            action.expect("no problem: action known"),
            translated,
            false,
        );
        p.dry_run = dry_run;
        return (attach, p);
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

/// `istio.io/dry-run`, validated as Istio's webhook does: a boolean, on an
/// ALLOW or DENY policy only.
fn dry_run(
    obj: &Obj<AuthorizationPolicyDoc>,
    action: Option<&AuthzAction>,
    problems: &mut rules::Problems,
) -> bool {
    let Some(value) = obj.doc.metadata.annotations.get(DRY_RUN) else {
        return false;
    };
    let field = format!("metadata.annotations[{DRY_RUN}]");
    if !matches!(action, Some(AuthzAction::Allow | AuthzAction::Deny)) {
        problems.push((field, "only ALLOW and DENY policies can be dry-run".into()));
        return false;
    }
    match value.as_str() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
        "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
        other => {
            problems.push((field, format!("{other:?} is not true or false")));
            false
        }
    }
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
        dry_run: false,
    }
}

#[cfg(test)]
mod tests;
