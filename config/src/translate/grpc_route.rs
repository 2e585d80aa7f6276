//! GRPCRoute rules → routes. A gRPC call is an HTTP/2 POST to
//! `/<service>/<method>`, so a method match becomes a path match, as Envoy
//! Gateway and Istio translate it: service and method exact → that path;
//! service only → the prefix `/<service>/`; method only → any service with that
//! method; RegularExpression → each part matched whole against its pattern
//! (an omitted part: any). No method or content-type condition is added, as
//! neither does.
//!
//! Precedence (the GRPCRoute API's `rules.matches`): most characters in a
//! matching hostname (no hostnames in the mesh), then in the service, then in
//! the method, then most header matches; then the oldest route, then
//! `namespace/name`, then rule and match order.

#[cfg(test)]
mod tests;

use super::http_route::filters::rule_filters;
use super::http_route::{backend, value_match};
use super::matchers::{regex, At};
use super::mesh_routes::SortKey;
use super::{Cx, World};
use crate::gateway_api::{GrpcMatch, GrpcRouteDoc, GrpcRule, RouteFilter};
use crate::parse::Obj;
use std::cmp::Reverse;
use waypoint_ir::{
    HeaderMatch, PathMatch, RequestMatch, Route, RouteAction, RouteOrigin, RoutePolicy,
};

/// Sort key: smaller sorts first and so wins.
pub type Precedence = (
    Reverse<usize>,
    Reverse<usize>,
    Reverse<usize>,
    String,
    String,
    usize,
    usize,
);

/// The filter types the GRPCRoute CRD allows (`GRPCRouteFilter.type`).
const FILTER_TYPES: [&str; 4] = [
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestMirror",
    "ExtensionRef",
];

pub(super) fn translate_rules(
    cx: &mut Cx<'_>,
    at: &At<'_>,
    world: &World<'_>,
    gr: &Obj<GrpcRouteDoc>,
) -> Vec<(SortKey, Route)> {
    let every_call = [GrpcMatch::default()];
    let mut out = Vec::new();
    for (r, rule) in gr.doc.spec.rules.iter().enumerate() {
        let field = format!("spec.rules[{r}]");
        if !rule_is_valid(cx, at, &field, rule) {
            continue;
        }
        let Some((filters, _, unsupported)) = rule_filters(cx, at, &field, &rule.filters) else {
            continue;
        };
        let action = if let Some(kind) = unsupported {
            // The spec: a filter must not be skipped; its requests get an error.
            RouteAction::DirectResponse {
                status: 500,
                body: Some(format!("filter {kind} is not supported\n")),
            }
        } else {
            let mut backends = Vec::new();
            for (b, br) in rule.backend_refs.iter().enumerate() {
                let f = format!("{field}.backendRefs[{b}]");
                backends.extend(backend(cx, at, world, gr.ns(), &f, br));
            }
            if backends.len() < rule.backend_refs.len() {
                continue;
            }
            RouteAction::Forward(backends)
        };
        let matches: &[GrpcMatch] = if rule.matches.is_empty() {
            &every_call
        } else {
            &rule.matches
        };
        for (m, spec) in matches.iter().enumerate() {
            let mfield = format!("{field}.matches[{m}]");
            let Some((rm, service_len, method_len)) = request_match(cx, at, &mfield, spec) else {
                continue;
            };
            let key = (
                Reverse(service_len),
                Reverse(method_len),
                Reverse(rm.headers.len()),
                gr.created.clone(),
                format!("{}/{}", gr.ns(), gr.name()),
                r,
                m,
            );
            out.push((
                SortKey::Grpc(key),
                Route {
                    name: format!("{} rules[{r}].matches[{m}]", gr.id),
                    origin: RouteOrigin {
                        resource: Some(gr.id.clone()),
                        field: mfield,
                    },
                    port: None,
                    matches: vec![rm],
                    filters: filters.clone().into(),
                    action: action.clone(),
                    // GRPCRoute has no timeouts or retry fields: Istio's defaults.
                    policy: RoutePolicy::default().into(),
                },
            ));
        }
    }
    out
}

/// The CRD's filter checks (type enum, no repeated header modifier), which a
/// manifest directory skips, for the rule and each backendRef.
fn rule_is_valid(cx: &mut Cx<'_>, at: &At<'_>, field: &str, rule: &GrpcRule) -> bool {
    let before = cx.diags.len();
    filters_valid(cx, at, field, &rule.filters);
    for (b, br) in rule.backend_refs.iter().enumerate() {
        let f = format!("{field}.backendRefs[{b}]");
        filters_valid(cx, at, &f, &br.filters);
    }
    cx.diags.len() == before
}

fn filters_valid(cx: &mut Cx<'_>, at: &At<'_>, field: &str, filters: &[RouteFilter]) {
    let mut seen: Vec<&str> = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let kind = f.kind.as_str();
        if !FILTER_TYPES.contains(&kind) {
            cx.diags.push(at.error(
                format!("{field}.filters[{i}].type"),
                format!(
                    "{kind:?} is not a GRPCRoute filter type (one of {})",
                    FILTER_TYPES.join(", ")
                ),
            ));
        } else if kind.ends_with("HeaderModifier") && seen.contains(&kind) {
            cx.diags.push(at.error(
                format!("{field}.filters[{i}].type"),
                format!("{kind} filter cannot be repeated"),
            ));
        }
        seen.push(kind);
    }
}

/// The match, and the lengths of its service and method for precedence.
fn request_match(
    cx: &mut Cx<'_>,
    at: &At<'_>,
    field: &str,
    m: &GrpcMatch,
) -> Option<(RequestMatch, usize, usize)> {
    let (path, service_len, method_len) = match &m.method {
        None => (None, 0, 0),
        Some(mm) => {
            let (path, s, m) = method_match(cx, at, &format!("{field}.method"), mm)?;
            (Some(path), s, m)
        }
    };
    // The spec: of entries with equivalent (case-insensitive) names only the
    // first is considered.
    let mut headers: Vec<HeaderMatch> = Vec::new();
    for (i, h) in m.headers.iter().enumerate() {
        if headers.iter().any(|x| x.name.eq_ignore_ascii_case(&h.name)) {
            continue;
        }
        let f = format!("{field}.headers[{i}]");
        let value = value_match(cx, at, &f, h.kind.as_deref(), &h.value)?;
        headers.push(HeaderMatch {
            name: h.name.to_ascii_lowercase(),
            value,
            invert: false,
        });
    }
    let rm = RequestMatch {
        path,
        headers,
        ..RequestMatch::default()
    };
    Some((rm, service_len, method_len))
}

/// `method`, checked as the CRD's CEL rules check it.
fn method_match(
    cx: &mut Cx<'_>,
    at: &At<'_>,
    field: &str,
    mm: &crate::gateway_api::MethodMatch,
) -> Option<(PathMatch, usize, usize)> {
    let service = mm.service.as_deref().filter(|s| !s.is_empty());
    let method = mm.method.as_deref().filter(|s| !s.is_empty());
    if service.is_none() && method.is_none() {
        cx.diags.push(at.error(
            field,
            "one or both of 'service' or 'method' must be specified",
        ));
        return None;
    }
    let lens = (service.map_or(0, str::len), method.map_or(0, str::len));
    match mm.kind.as_deref().unwrap_or("Exact") {
        "Exact" => {
            let mut ok = true;
            if let Some(s) = service.filter(|s| !valid_service(s)) {
                ok = false;
                cx.diags.push(at.error(
                    format!("{field}.service"),
                    format!("{s:?}: service must only contain valid characters (matching ^(?i)\\.?[a-z_][a-z_0-9]*(\\.[a-z_][a-z_0-9]*)*$)"),
                ));
            }
            if let Some(m) = method.filter(|m| !valid_method(m)) {
                ok = false;
                cx.diags.push(at.error(
                    format!("{field}.method"),
                    format!("{m:?}: method must only contain valid characters (matching ^[A-Za-z_][A-Za-z_0-9]*$)"),
                ));
            }
            if !ok {
                return None;
            }
            let path = match (service, method) {
                (Some(s), Some(m)) => PathMatch::Exact(format!("/{s}/{m}")),
                (Some(s), None) => PathMatch::Prefix(format!("/{s}/")),
                (None, Some(m)) => {
                    let p = format!("/[^/]+/{}", regex::escape(m));
                    PathMatch::Regex(regex(at, &format!("{field}.method"), &p, cx.diags)?)
                }
                (None, None) => unreachable!("checked above"),
            };
            Some((path, lens.0, lens.1))
        }
        "RegularExpression" => {
            // Each part must compile on its own, so an error names its field.
            let part = |cx: &mut Cx<'_>, name: &str, v: Option<&str>| -> Option<String> {
                match v {
                    None => Some("[^/]+".to_string()),
                    Some(v) => {
                        regex(at, &format!("{field}.{name}"), v, cx.diags)?;
                        Some(format!("(?:{v})"))
                    }
                }
            };
            let s = part(cx, "service", service);
            let m = part(cx, "method", method);
            let p = format!("/{}/{}", s?, m?);
            let pattern = regex(at, field, &p, cx.diags)?;
            Some((PathMatch::Regex(pattern), lens.0, lens.1))
        }
        other => {
            cx.diags.push(at.error(
                format!("{field}.type"),
                format!("unknown method match type {other:?} (Exact or RegularExpression)"),
            ));
            None
        }
    }
}

/// `^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$`
fn valid_service(s: &str) -> bool {
    let s = s.strip_prefix('.').unwrap_or(s);
    s.split('.').all(valid_method)
}

/// `^[A-Za-z_][A-Za-z_0-9]*$`
fn valid_method(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
