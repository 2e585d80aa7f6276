//! AuthorizationPolicy at request time: the waypoint's and the destination
//! service's policies, judged against the request after its path is
//! normalised and before any route is chosen, so no route (a redirect, a
//! direct response) answers a request the policies deny.

use super::RequestCtx;
use crate::identity::SpiffeId;
use crate::state::Runtime;
use pingora::proxy::Session;
use std::net::{IpAddr, SocketAddr};
use waypoint_filters::authz::{evaluate, AuthzRequest, Verdict};
use waypoint_ir::{ExtAuthzProvider, Target};

/// Why a request was denied, as Envoy's RBAC filter words it.
pub struct Denied {
    /// `namespace/name` of the deciding policy; `none` when ALLOW policies
    /// apply and none matched.
    pub policy: String,
    /// Envoy's `%RESPONSE_CODE_DETAILS%`.
    pub details: String,
}

/// What the policies say about a request: the external authorizer to ask
/// first (a matching CUSTOM policy's provider), then whether they deny it.
#[derive(Default)]
pub struct Judged<'r> {
    pub ask: Option<&'r ExtAuthzProvider>,
    pub denied: Option<Denied>,
    /// What the dry-run policies would have done: (action, `allowed` or
    /// `denied`), Envoy's shadow results.
    pub dry_run: Vec<(&'static str, &'static str)>,
}

impl Judged<'_> {
    /// Counts the dry-run verdicts.
    pub fn count(&self, metrics: &crate::metrics::Metrics) {
        for (action, result) in &self.dry_run {
            metrics
                .authz_dry_run
                .with_label_values(&[action, result])
                .inc();
        }
    }
}

/// What `judged` means for the data path: the provider a matching CUSTOM
/// policy asks (translation keeps only usable ones), the denial, and the
/// dry-run verdicts, logged about `what`.
fn for_data_path<'r>(
    rt: &'r Runtime,
    judged: waypoint_filters::authz::Judgement<'_>,
    what: &dyn std::fmt::Display,
) -> Judged<'r> {
    let dry_run = judged
        .dry_run
        .iter()
        .map(|s| {
            let result = if s.denied { "denied" } else { "allowed" };
            let by = s
                .policy
                .map_or("none".to_string(), |p| format!("{}/{}", p.namespace, p.name));
            log::info!(target: "dry_run", "dry-run {} policies: {what} would be {result} (by {by})", s.action);
            (s.action, result)
        })
        .collect();
    Judged {
        ask: judged.ask.and_then(|a| rt.snapshot.ext_authz(a.provider)),
        denied: denial(judged.verdict),
        dry_run,
    }
}

/// Judges the request.
pub fn check<'r>(
    rt: &'r Runtime,
    session: &Session,
    ctx: &RequestCtx,
    target: Target,
    destination: Option<SocketAddr>,
    auth: Option<&waypoint_filters::jwt::RequestAuth>,
) -> Judged<'r> {
    let (service, port) = match target {
        Target::Service { service, port } | Target::Workload { service, port, .. } => {
            (rt.snapshot.service(service), port)
        }
    };
    let waypoint = &rt.snapshot.authz;
    if waypoint.is_empty() && service.authz.is_empty() {
        return Judged::default();
    }
    let req = session.req_header();
    let principal = ctx.source.as_deref().map(principal_of);
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .unwrap_or_default();
    let view = AuthzRequest {
        principal: principal.as_deref(),
        trust_domain: ctx.source.as_deref().map(|s| s.trust_domain.as_str()),
        namespace: ctx.source.as_deref().map(|s| s.namespace.as_str()),
        service_account: ctx.source.as_deref().map(|s| s.service_account.as_str()),
        source_ip: ctx.client_ip,
        auth,
        host,
        method: req.method.as_str(),
        path: req.uri.path(),
        headers: &req.headers,
        destination_ip: destination
            .map(|d| d.ip())
            .or_else(|| service.addresses.first().copied()),
        destination_port: port,
        http: true,
    };
    let judged = evaluate(waypoint.iter().chain(service.authz.iter()), &view);
    for audited in &judged.audited {
        log::info!(target: "audit", "{audited} audits {} {}", req.method, req.uri);
    }
    for_data_path(rt, judged, &format_args!("{} {}", req.method, req.uri))
}

/// Judges a TCP connection, which has only its peer and destination to offer:
/// rules that need HTTP match as Istio builds TCP policies (an ALLOW rule
/// never, a DENY rule without them).
pub fn check_connection<'r>(
    rt: &'r Runtime,
    source: Option<&SpiffeId>,
    peer: IpAddr,
    target: Target,
    destination: SocketAddr,
) -> Judged<'r> {
    let (service, port) = match target {
        Target::Service { service, port } | Target::Workload { service, port, .. } => {
            (rt.snapshot.service(service), port)
        }
    };
    let waypoint = &rt.snapshot.authz;
    if waypoint.is_empty() && service.authz.is_empty() {
        return Judged::default();
    }
    let principal = source.map(principal_of);
    let headers = http::HeaderMap::new();
    let view = AuthzRequest {
        principal: principal.as_deref(),
        trust_domain: source.map(|s| s.trust_domain.as_str()),
        namespace: source.map(|s| s.namespace.as_str()),
        service_account: source.map(|s| s.service_account.as_str()),
        source_ip: Some(peer),
        auth: None,
        host: "",
        method: "",
        path: "",
        headers: &headers,
        destination_ip: Some(destination.ip()),
        destination_port: port,
        http: false,
    };
    let judged = evaluate(waypoint.iter().chain(service.authz.iter()), &view);
    for audited in &judged.audited {
        log::info!(target: "audit", "{audited} audits a TCP connection to {destination}");
    }
    for_data_path(
        rt,
        judged,
        &format_args!("a TCP connection to {destination}"),
    )
}

/// Istio compares the principal without its `spiffe://` scheme.
fn principal_of(s: &SpiffeId) -> String {
    format!(
        "{}/ns/{}/sa/{}",
        s.trust_domain, s.namespace, s.service_account
    )
}

fn denial(verdict: Verdict<'_>) -> Option<Denied> {
    match verdict {
        Verdict::Allow => None,
        Verdict::DeniedBy { policy, rule } => Some(Denied {
            policy: format!("{}/{}", policy.namespace, policy.name),
            details: format!(
                "rbac_access_denied_matched_policy[ns[{}]-policy[{}]-rule[{rule}]]",
                policy.namespace, policy.name
            ),
        }),
        Verdict::NotAllowed => Some(Denied {
            policy: "none".into(),
            details: "rbac_access_denied_matched_policy[none]".into(),
        }),
    }
}
