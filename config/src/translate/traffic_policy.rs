//! BackendTrafficPolicy (Envoy Gateway) attached to Services, HTTPRoutes and
//! GRPCRoutes (Envoy Gateway's targetRefs allow both route kinds).
//!
//! Precedence, shown by `check`: a policy's fields replace what the route itself
//! (VirtualService, HTTPRoute or GRPCRoute) set, because an attachment is the explicit
//! override; a policy targeting a route is applied after one targeting the
//! route's Service, so the more specific one wins; among equals, the older first.

use super::hosts::HostIndex;
use super::matchers::At;
use super::Cx;
use crate::duration;
use crate::envoy_gateway::{BackendTrafficPolicyDoc, TargetRef};
use crate::parse::Obj;
use std::time::Duration;
use waypoint_ir::{
    Abort, ClientSelector, Fault, Percent, RateLimit, ResourceKind, ResourceRef, RetryOn,
    RetryPolicy, RoutePolicy, Service,
};

/// The fields one policy sets; `None` leaves the route's own value.
#[derive(Default)]
struct Overlay {
    rate_limits: Option<Vec<RateLimit>>,
    fault: Option<Fault>,
    retry: Option<RetryPolicy>,
    timeout: Option<Duration>,
}

pub fn apply(cx: &mut Cx<'_>, index: &HostIndex, services: &mut [Service]) {
    let mut policies: Vec<&Obj<BackendTrafficPolicyDoc>> = cx.res.traffic_policies.iter().collect();
    policies.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
    let parsed: Vec<(&Obj<_>, Option<Overlay>)> = policies
        .into_iter()
        .map(|p| {
            (
                p,
                overlay(
                    cx,
                    &At {
                        file: &p.file,
                        id: &p.id,
                    },
                    &p.doc,
                ),
            )
        })
        .collect();
    const ROUTES: &[&str] = &["HTTPRoute", "GRPCRoute"];
    for pass in [&["Service"][..], ROUTES] {
        for (p, overlay) in &parsed {
            let Some(overlay) = overlay else { continue };
            let at = At {
                file: &p.file,
                id: &p.id,
            };
            let spec = &p.doc.spec;
            let targets: Vec<&TargetRef> = spec
                .target_refs
                .iter()
                .chain(spec.target_ref.as_ref())
                .collect();
            for (i, t) in targets.into_iter().enumerate() {
                let group_ok = match t.kind.as_str() {
                    "Service" => matches!(t.group.as_deref(), None | Some("") | Some("core")),
                    _ => matches!(t.group.as_deref(), None | Some("gateway.networking.k8s.io")),
                };
                let in_pass = pass.contains(&t.kind.as_str());
                if in_pass && !group_ok {
                    cx.diags.push(at.warning(
                        format!("spec.targetRefs[{i}].group"),
                        format!(
                            "{} of group {:?} is not a target the waypoint knows; ignored",
                            t.kind, t.group
                        ),
                    ));
                    continue;
                }
                if !in_pass {
                    let known = t.kind == "Service" || ROUTES.contains(&t.kind.as_str());
                    if !known && pass[0] == "Service" {
                        cx.diags.push(at.warning(
                            format!("spec.targetRefs[{i}].kind"),
                            format!("a {} target is not supported here; ignored", t.kind),
                        ));
                    }
                    continue;
                }
                if let Some(cb) = &spec.circuit_breaker {
                    // Thresholds belong to the backend, not to a route.
                    match (t.kind.as_str(), index.service(p.ns(), &t.name)) {
                        ("Service", Some(idx)) => circuit_breaker(&mut services[idx.0], cb),
                        _ => cx.diags.push(at.warning(
                            "spec.circuitBreaker",
                            format!(
                                "applies to Service targets only; ignored for {} {}",
                                t.kind, t.name
                            ),
                        )),
                    }
                }
                let touched = attach(index, services, p.ns(), t, |policy| {
                    overlay.apply(policy, &p.id)
                });
                if touched == 0 {
                    cx.diags.push(at.warning(
                        format!("spec.targetRefs[{i}]"),
                        format!("no {} {}/{} with routes is known", t.kind, p.ns(), t.name),
                    ));
                }
            }
        }
    }
}

/// BackendTrafficPolicy thresholds override the DestinationRule's connection
/// pool for every subset and port of the service.
fn circuit_breaker(svc: &mut Service, cb: &crate::envoy_gateway::CircuitBreaker) {
    let pools = std::iter::once(&mut svc.traffic)
        .chain(svc.port_traffic.values_mut())
        .chain(
            svc.subsets
                .iter_mut()
                .filter_map(|s| s.traffic.as_deref_mut()),
        );
    for t in pools {
        let p = &mut t.pool;
        p.max_connections = cb.max_connections.or(p.max_connections);
        p.max_pending = cb.max_pending_requests.or(p.max_pending);
        p.max_requests = cb.max_parallel_requests.or(p.max_requests);
        p.max_retries = cb.max_parallel_retries.or(p.max_retries);
        p.max_requests_per_connection = cb
            .max_requests_per_connection
            .or(p.max_requests_per_connection);
    }
}

/// Applies `f` to the policy of every route the target covers; returns how many.
fn attach(
    index: &HostIndex,
    services: &mut [Service],
    ns: &str,
    t: &TargetRef,
    f: impl Fn(&mut RoutePolicy),
) -> usize {
    let mut n = 0;
    match t.kind.as_str() {
        "Service" => {
            if let Some(idx) = index.service(ns, &t.name) {
                for r in &mut services[idx.0].routes {
                    f(&mut r.policy);
                    n += 1;
                }
            }
        }
        kind => {
            let kind = match kind {
                "GRPCRoute" => ResourceKind::GRPCRoute,
                _ => ResourceKind::HTTPRoute,
            };
            let target = ResourceRef::new(kind, ns, t.name.clone());
            for svc in services.iter_mut() {
                for r in svc
                    .routes
                    .iter_mut()
                    .filter(|r| r.origin.resource.as_ref() == Some(&target))
                {
                    f(&mut r.policy);
                    n += 1;
                }
            }
        }
    }
    n
}

impl Overlay {
    fn apply(&self, p: &mut RoutePolicy, from: &ResourceRef) {
        if let Some(r) = &self.rate_limits {
            p.rate_limits = r.clone();
        }
        if let Some(f) = &self.fault {
            p.fault = Some(f.clone());
        }
        if let Some(r) = &self.retry {
            p.retry = r.clone();
        }
        if let Some(t) = self.timeout {
            p.timeout = Some(t).filter(|t| !t.is_zero());
        }
        p.attached.push(from.clone());
    }
}

/// Parses the policy once; `None` when it has errors (all reported).
fn overlay(cx: &mut Cx<'_>, at: &At<'_>, doc: &BackendTrafficPolicyDoc) -> Option<Overlay> {
    let before = cx.diags.len();
    let spec = &doc.spec;
    let mut o = Overlay::default();
    let dur = |cx: &mut Cx<'_>, field: &str, v: &str| {
        duration::parse(v)
            .map_err(|e| cx.diags.push(at.error(field, e)))
            .ok()
    };
    if let Some(rl) = &spec.rate_limit {
        match (rl.kind.as_str(), &rl.local) {
            ("Local", Some(local)) => {
                let mut rules = Vec::new();
                for (i, r) in local.rules.iter().enumerate() {
                    let f = format!("spec.rateLimit.local.rules[{i}]");
                    let selectors = selectors(cx, at, &f, r);
                    let unit = match r.limit.unit.as_str() {
                        "Second" => Duration::from_secs(1),
                        "Minute" => Duration::from_secs(60),
                        "Hour" => Duration::from_secs(3600),
                        "Day" => Duration::from_secs(86400),
                        u => {
                            cx.diags.push(at.error(format!("{f}.limit.unit"), format!("unknown unit {u:?} (Second, Minute, Hour, Day)")));
                            continue;
                        }
                    };
                    if r.limit.requests == 0 {
                        cx.diags.push(at.error(format!("{f}.limit.requests"), "must be at least 1"));
                        continue;
                    }
                    rules.push(RateLimit { name: format!("{} rateLimit.local.rules[{i}]", at.id), requests: r.limit.requests, unit, selectors });
                }
                o.rate_limits = Some(rules);
            }
            ("Local", None) => cx.diags.push(at.error("spec.rateLimit.local", "required when type is Local")),
            (other, _) => cx.diags.push(at.warning("spec.rateLimit.type", format!("{other} rate limiting needs a rate limit service; only Local is supported, ignored"))),
        }
    }
    if let Some(fi) = &spec.fault_injection {
        let pct = |cx: &mut Cx<'_>, field: &str, v: Option<f64>| {
            let v = v.unwrap_or(100.0);
            Percent::new(v).or_else(|| {
                cx.diags
                    .push(at.error(field, format!("{v} is not between 0 and 100")));
                None
            })
        };
        let delay =
            match &fi.delay {
                Some(d) => dur(cx, "spec.faultInjection.delay.fixedDelay", &d.fixed_delay).zip(
                    pct(cx, "spec.faultInjection.delay.percentage", d.percentage),
                ),
                None => None,
            };
        let abort = match &fi.abort {
            Some(a) => {
                let with = match (a.http_status, a.grpc_status) {
                    (Some(s), None) if (200..600).contains(&s) => Some(Abort::Http(s)),
                    (None, Some(c)) if (0..=16).contains(&c) => Some(Abort::Grpc(c as u8)),
                    _ => {
                        cx.diags.push(at.error(
                            "spec.faultInjection.abort",
                            "exactly one of httpStatus (200-599) and grpcStatus (0-16) is required",
                        ));
                        None
                    }
                };
                with.and_then(|w| {
                    pct(cx, "spec.faultInjection.abort.percentage", a.percentage).map(|p| (w, p))
                })
            }
            None => None,
        };
        o.fault = Some(Fault { delay, abort });
    }
    if let Some(r) = &spec.retry {
        // Envoy Gateway's defaults when `retry` is present: 2 retries on
        // connect-failure and refused-stream.
        let mut policy = RetryPolicy {
            attempts: r.num_retries.unwrap_or(2),
            statuses: Vec::new(),
            ..RetryPolicy::default()
        };
        policy.on = RetryOn {
            connect_failure: true,
            refused_stream: true,
            ..RetryOn::default()
        };
        if let Some(on) = &r.retry_on {
            let mut c = RetryOn::default();
            for (i, t) in on.triggers.iter().enumerate() {
                if !super::policy::set_condition(&mut c, t) {
                    cx.diags.push(at.error(
                        format!("spec.retry.retryOn.triggers[{i}]"),
                        format!("unknown trigger {t:?}"),
                    ));
                }
            }
            if !on.http_status_codes.is_empty() {
                c.retriable_status_codes = true;
                policy.statuses = on.http_status_codes.clone();
            }
            policy.on = c;
        }
        if let Some(per) = &r.per_retry {
            if let Some(t) = &per.timeout {
                policy.per_try_timeout = dur(cx, "spec.retry.perRetry.timeout", t);
            }
            if let Some(b) = per.back_off.as_ref().and_then(|b| b.base_interval.as_ref()) {
                if let Some(b) = dur(cx, "spec.retry.perRetry.backOff.baseInterval", b) {
                    policy.backoff = b;
                }
            }
        }
        o.retry = Some(policy);
    }
    if let Some(t) = spec
        .timeout
        .as_ref()
        .and_then(|t| t.http.as_ref())
        .and_then(|h| h.request_timeout.as_ref())
    {
        o.timeout = dur(cx, "spec.timeout.http.requestTimeout", t);
    }
    let failed = cx.diags[before..]
        .iter()
        .any(|d| d.severity == crate::Severity::Error);
    (!failed).then_some(o)
}

fn selectors(
    cx: &mut Cx<'_>,
    at: &At<'_>,
    field: &str,
    r: &crate::envoy_gateway::RateLimitRule,
) -> Vec<ClientSelector> {
    let mut out = Vec::new();
    for (i, s) in r.client_selectors.iter().enumerate() {
        let f = format!("{field}.clientSelectors[{i}]");
        for (j, h) in s.headers.iter().enumerate() {
            let hf = format!("{f}.headers[{j}]");
            if h.invert {
                cx.diags.push(at.error(
                    format!("{hf}.invert"),
                    "inverted header selectors are not supported",
                ));
                continue;
            }
            let name = h.name.to_ascii_lowercase();
            match (h.kind.as_deref().unwrap_or("Exact"), &h.value) {
                ("Exact", Some(v)) => out.push(ClientSelector::HeaderExact {
                    name,
                    value: v.clone(),
                }),
                ("Exact", None) => cx
                    .diags
                    .push(at.error(format!("{hf}.value"), "required for an Exact match")),
                ("Distinct", _) => out.push(ClientSelector::HeaderDistinct { name }),
                (other, _) => cx.diags.push(at.error(
                    format!("{hf}.type"),
                    format!("{other} header selectors are not supported (Exact, Distinct)"),
                )),
            }
        }
        if let Some(c) = &s.source_cidr {
            let cf = format!("{f}.sourceCIDR");
            let parsed = c
                .value
                .split_once('/')
                .and_then(|(a, p)| Some((a.parse().ok()?, p.parse::<u8>().ok()?)));
            match (parsed, c.kind.as_deref().unwrap_or("Exact")) {
                (Some((addr, prefix)), kind @ ("Exact" | "Distinct")) => {
                    out.push(ClientSelector::SourceCidr {
                        addr,
                        prefix,
                        distinct: kind == "Distinct",
                    })
                }
                (None, _) => cx.diags.push(at.error(
                    format!("{cf}.value"),
                    format!("{:?} is not a CIDR", c.value),
                )),
                (_, other) => cx.diags.push(at.error(
                    format!("{cf}.type"),
                    format!("unknown type {other:?} (Exact, Distinct)"),
                )),
            }
        }
    }
    out
}
