//! VirtualService `http[]` → routes, in order (the first match wins).
//!
//! Several VirtualServices for one host are merged as Istio's waypoint merges
//! them (istio/istio#59484, `buildWaypointInboundHTTPRouteConfig`): each one's
//! routes are appended in Istio's config order, oldest `creationTimestamp`
//! first, then name, then namespace (`configCompareByCreationTime`). Nothing
//! resolves conflicts: the first route to match wins, so routes after one that
//! matches every request are never reached, and `check` says which.

use super::matchers::{istio_string, At};
use super::{Attached, Cx, World};
use crate::istio::{Destination, HeaderOperations, HttpMatch, HttpRoute, VirtualServiceDoc};
use crate::parse::Obj;
use std::collections::BTreeMap;
use waypoint_ir::{
    BackendRef, BackendTarget, HeaderMatch, HeaderModifier, Method, PathMatch, PathModifier,
    QueryMatch, Redirect, RequestMatch, Route, RouteAction, RouteFilters, RouteOrigin, ServiceIdx,
    StringMatch, UrlRewrite,
};

pub fn routes(
    cx: &mut Cx<'_>,
    world: &World<'_>,
    docs: &[Obj<VirtualServiceDoc>],
) -> BTreeMap<ServiceIdx, Attached> {
    let mut all: Vec<&Obj<VirtualServiceDoc>> = docs.iter().collect();
    all.sort_by(|a, b| (&a.created, a.name(), a.ns()).cmp(&(&b.created, b.name(), b.ns())));
    let mut out: BTreeMap<ServiceIdx, Attached> = BTreeMap::new();
    for vs in all {
        let spec = &vs.doc.spec;
        if !spec.gateways.is_empty() && !spec.gateways.iter().any(|g| g == "mesh") {
            log::debug!("{}: {} applies to gateways only", vs.file, vs.id);
            continue;
        }
        let at = At {
            file: &vs.file,
            id: &vs.id,
        };
        let routes: Vec<Route> = spec
            .http
            .iter()
            .enumerate()
            .filter_map(|(i, r)| route(cx, &at, world, vs.ns(), i, r))
            .collect();
        for (h, host) in spec.hosts.iter().enumerate() {
            let Some(idx) = world.index.resolve(host, vs.ns(), &cx.opts.cluster_domain) else {
                let why = world.index.unknown(host, &cx.opts.cluster_domain);
                cx.diags.push(at.warning(
                    format!("spec.hosts[{h}]"),
                    format!("{why}; this host is not routed"),
                ));
                continue;
            };
            let svc = &world.services[idx.0];
            // Istio's waypoint reads VirtualServices from the service's namespace
            // and its own only (getVirtualServiceForWaypoint).
            if vs.ns() != svc.namespace && Some(vs.ns()) != world.waypoint_namespace {
                let own = world
                    .waypoint_namespace
                    .map(|n| format!(" or the waypoint's ({n})"))
                    .unwrap_or_default();
                cx.diags.push(at.warning(
                    format!("spec.hosts[{h}]"),
                    format!(
                        "{} is in namespace {}: Istio's waypoint applies VirtualServices from the service's namespace{own} only, so this one is ignored for it",
                        svc.hostname, svc.namespace
                    ),
                ));
                continue;
            }
            // Istio skips a VirtualService with no HTTP route for the host.
            if routes.is_empty() {
                continue;
            }
            let merged = out.entry(idx).or_insert_with(|| Attached {
                routes: Vec::new(),
                from: Vec::new(),
                file: vs.file.clone(),
            });
            if merged.from.contains(&vs.id) {
                continue;
            }
            if let Some(all) = merged.routes.iter().find(|r| super::matches_everything(r)) {
                cx.diags.push(at.warning(
                    format!("spec.hosts[{h}]"),
                    format!(
                        "merged for {} after {}, which matches every request: the routes of this VirtualService are never reached there",
                        world.services[idx.0].hostname, all.name
                    ),
                ));
            }
            // A clone is exactly as long; extending an empty vector would
            // leave room for four routes.
            if merged.routes.is_empty() {
                merged.routes = routes.clone();
            } else {
                merged.routes.extend(routes.iter().cloned());
            }
            merged.from.push(vs.id.clone());
        }
    }
    out
}

fn route(
    cx: &mut Cx<'_>,
    at: &At<'_>,
    world: &World<'_>,
    ns: &str,
    i: usize,
    r: &HttpRoute,
) -> Option<Route> {
    let field = format!("spec.http[{i}]");
    let before = cx.diags.len();
    let policy = super::policy::virtual_service(at, &field, r, cx.diags);
    let mut matches: Vec<RequestMatch> = Vec::new();
    for (j, m) in r.matches.iter().enumerate() {
        let mfield = format!("{field}.match[{j}]");
        if applies(cx, at, &mfield, m) {
            matches.extend(request_match(at, &mfield, m, cx.diags));
        }
    }
    // Every match was set aside: an empty list would match everything.
    let failed = |d: &[crate::Diagnostic]| d.iter().any(|d| d.severity == crate::Severity::Error);
    if !r.matches.is_empty() && matches.is_empty() && !failed(&cx.diags[before..]) {
        cx.diags.push(at.warning(
            &field,
            "no match of this rule can apply at a waypoint; the rule is skipped",
        ));
        return None;
    }
    let action = if let Some(d) = &r.redirect {
        RouteAction::Redirect(Box::new(Redirect {
            scheme: d.scheme.clone(),
            hostname: d.authority.clone(),
            path: d.uri.clone().map(PathModifier::ReplaceFullPath),
            port: d.port,
            status: d.redirect_code.unwrap_or(301),
        }))
    } else if let Some(d) = &r.direct_response {
        RouteAction::DirectResponse {
            status: d.status,
            body: d.body.as_ref().and_then(|b| b.string.clone()),
        }
    } else if !r.route.is_empty() {
        RouteAction::Forward(backends(cx, at, world, ns, &field, &r.route))
    } else {
        cx.diags.push(at.error(
            &field,
            "one of route, redirect or directResponse is required",
        ));
        return None;
    };
    if failed(&cx.diags[before..]) {
        return None;
    }
    let headers = r.headers.as_ref();
    let filters = RouteFilters {
        request_headers: ops(headers.and_then(|h| h.request.as_ref())),
        response_headers: ops(headers.and_then(|h| h.response.as_ref())),
        rewrite: r.rewrite.as_ref().map(|w| UrlRewrite {
            hostname: w.authority.clone(),
            path: w.uri.clone().map(PathModifier::ReplacePrefixMatch),
        }),
    };
    let label = r
        .name
        .as_ref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    Some(Route {
        name: format!("{} http[{i}]{label}", at.id),
        origin: RouteOrigin {
            resource: Some(at.id.clone()),
            field,
        },
        port: None,
        matches,
        filters: filters.into(),
        action,
        policy: policy.into(),
    })
}

fn ops(o: Option<&HeaderOperations>) -> HeaderModifier {
    let Some(o) = o else {
        return HeaderModifier::default();
    };
    HeaderModifier {
        set: o
            .set
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect(),
        add: o
            .add
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect(),
        remove: o.remove.iter().map(|k| k.to_ascii_lowercase()).collect(),
    }
}

/// Whether a match can apply here. A condition this waypoint cannot evaluate
/// makes the match never apply (with a warning) rather than apply too widely.
fn applies(cx: &mut Cx<'_>, at: &At<'_>, field: &str, m: &HttpMatch) -> bool {
    if !m.gateways.is_empty() && !m.gateways.iter().any(|g| g == "mesh") {
        log::debug!("{}: {} {field} applies to gateways only", at.file, at.id);
        return false;
    }
    let unsupported = [
        ("authority", m.authority.is_some()),
        ("scheme", m.scheme.is_some()),
        ("sourceLabels", m.source_labels.is_some()),
        ("sourceNamespace", m.source_namespace.is_some()),
    ];
    match unsupported.iter().find(|(_, set)| *set) {
        Some((name, _)) => {
            cx.diags.push(at.warning(
                format!("{field}.{name}"),
                format!(
                    "{name} matches are not supported by this waypoint; this match never applies"
                ),
            ));
            false
        }
        None => true,
    }
}

fn request_match(
    at: &At<'_>,
    field: &str,
    m: &HttpMatch,
    diags: &mut Vec<crate::Diagnostic>,
) -> Option<RequestMatch> {
    let path = match &m.uri {
        None => None,
        Some(u) => match istio_string(at, &format!("{field}.uri"), u, diags)? {
            StringMatch::Exact(p) => Some(PathMatch::Exact(p)),
            StringMatch::Prefix(p) => Some(PathMatch::Prefix(p)),
            StringMatch::Regex(p) => Some(PathMatch::Regex(p)),
            StringMatch::Present => None,
        },
    };
    let mut headers = Vec::new();
    for (invert, map, key) in [
        (false, &m.headers, "headers"),
        (true, &m.without_headers, "withoutHeaders"),
    ] {
        for (name, v) in map {
            let value = istio_string(at, &format!("{field}.{key}.{name}"), v, diags)?;
            headers.push(HeaderMatch {
                name: name.to_ascii_lowercase(),
                value,
                invert,
            });
        }
    }
    let mut query = Vec::new();
    for (name, v) in &m.query_params {
        let value = istio_string(at, &format!("{field}.queryParams.{name}"), v, diags)?;
        query.push(QueryMatch {
            name: name.clone(),
            value,
        });
    }
    let method = match &m.method {
        None => None,
        Some(s) => match (&s.exact, &s.prefix, &s.regex) {
            (Some(e), None, None) => Some(Method(e.to_ascii_uppercase())),
            _ => {
                diags.push(at.error(
                    format!("{field}.method"),
                    "only an exact method match is supported",
                ));
                return None;
            }
        },
    };
    Some(RequestMatch {
        path,
        headers,
        query,
        method,
        port: m.port,
        ignore_uri_case: m.ignore_uri_case,
    })
}

fn backends(
    cx: &mut Cx<'_>,
    at: &At<'_>,
    world: &World<'_>,
    ns: &str,
    field: &str,
    dests: &[Destination],
) -> Vec<BackendRef> {
    // Istio: weights are relative; a lone destination takes all traffic whatever
    // its weight, and with several an absent weight is 0 (never picked). Istio's
    // validation rejects several destinations whose weights sum to 0.
    let lone = dests.len() == 1;
    let total: u64 = dests.iter().map(|d| u64::from(d.weight.unwrap_or(0))).sum();
    if !lone && total == 0 {
        cx.diags.push(at.error(
            format!("{field}.route"),
            "total destination weight = 0: give at least one destination a weight",
        ));
    }
    dests
        .iter()
        .enumerate()
        .map(|(k, d)| {
            let f = format!("{field}.route[{k}].destination");
            let weight = if lone { 100 } else { d.weight.unwrap_or(0) };
            let target = destination(cx, at, world, ns, &f, d);
            BackendRef::new(target, weight)
        })
        .collect()
}

fn destination(
    cx: &mut Cx<'_>,
    at: &At<'_>,
    world: &World<'_>,
    ns: &str,
    field: &str,
    d: &Destination,
) -> BackendTarget {
    let spec = &d.destination;
    // Envoy answers 503 (NC) for a route to a cluster that does not exist.
    let invalid = |cx: &mut Cx<'_>, sub: &str, reason: String| {
        cx.diags.push(at.warning(
            format!("{field}{sub}"),
            format!("{reason}; requests routed here get 503"),
        ));
        BackendTarget::Invalid {
            status: 503,
            reason,
        }
    };
    let Some(service) = world.index.resolve(&spec.host, ns, &cx.opts.cluster_domain) else {
        let why = world.index.unknown(&spec.host, &cx.opts.cluster_domain);
        return invalid(cx, ".host", why);
    };
    let svc = &world.services[service.0];
    let port = match &spec.port {
        Some(p) if svc.port(p.number).is_none() => {
            return invalid(
                cx,
                ".port.number",
                format!("{} has no port {}", svc.hostname, p.number),
            );
        }
        Some(p) => Some(p.number),
        // A single-port service needs no port; otherwise the request's port is used.
        None if svc.ports.len() == 1 => Some(svc.ports[0].port),
        None => None,
    };
    let subset = match &spec.subset {
        None => None,
        Some(name) => match svc.subsets.iter().position(|s| &s.name == name) {
            Some(i) => Some(i),
            None => {
                return invalid(
                    cx,
                    ".subset",
                    format!(
                        "no DestinationRule defines subset {name:?} of {}",
                        svc.hostname
                    ),
                );
            }
        },
    };
    BackendTarget::Service {
        service,
        port,
        subset,
    }
}
