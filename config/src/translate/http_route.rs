//! HTTPRoutes with a `Service` parent (GAMMA) → routes in Gateway API precedence.
//!
//! Each (rule, match) becomes its own route, and the routes of one table are
//! sorted once here by the spec's precedence, so the data path takes the first
//! match. Regex paths rank below every exact and prefix path, as Istio ranks them.
//!
//! Which services and tables they join: [`super::mesh_routes`].

pub(super) mod filters;

use super::matchers::{regex, At};
use super::mesh_routes::SortKey;
use super::{Cx, World};
use crate::gateway_api::{BackendRefSpec, HttpRouteDoc, MatchSpec};
use crate::parse::Obj;
use filters::{backend_filters, rule_filters, rule_is_valid};
use std::cmp::Reverse;
use waypoint_ir::{
    BackendRef, BackendTarget, HeaderMatch, Method, PathMatch, QueryMatch, RequestMatch, Route,
    RouteAction, RouteOrigin, StringMatch,
};

/// Sort key: smaller sorts first and so wins.
pub type Precedence = (
    (u8, Reverse<usize>),
    bool,
    Reverse<usize>,
    Reverse<usize>,
    String,
    String,
    usize,
    usize,
);

pub(super) fn translate_rules(
    cx: &mut Cx<'_>,
    at: &At<'_>,
    world: &World<'_>,
    hr: &Obj<HttpRouteDoc>,
) -> Vec<(SortKey, Route)> {
    let default_match = [MatchSpec::default()];
    let mut out = Vec::new();
    for (r, rule) in hr.doc.spec.rules.iter().enumerate() {
        let field = format!("spec.rules[{r}]");
        if !rule_is_valid(cx, at, &field, rule) {
            continue;
        }
        let Some((filters, redirect, unsupported)) = rule_filters(cx, at, &field, &rule.filters)
        else {
            continue;
        };
        let action = if let Some(kind) = unsupported {
            // The spec: an unsupported filter must not be skipped; its requests get 500.
            RouteAction::DirectResponse {
                status: 500,
                body: Some(format!("filter {kind} is not supported\n")),
            }
        } else if let Some(redirect) = redirect {
            RouteAction::Redirect(Box::new(redirect))
        } else {
            let mut backends = Vec::new();
            for (b, br) in rule.backend_refs.iter().enumerate() {
                let f = format!("{field}.backendRefs[{b}]");
                backends.extend(backend(cx, at, world, hr.ns(), &f, br));
            }
            if backends.len() < rule.backend_refs.len() {
                continue;
            }
            RouteAction::Forward(backends)
        };
        let policy = super::policy::http_route(at, &field, rule, cx.diags);
        let matches: &[MatchSpec] = if rule.matches.is_empty() {
            &default_match
        } else {
            &rule.matches
        };
        for (m, spec) in matches.iter().enumerate() {
            let mfield = format!("{field}.matches[{m}]");
            let Some(rm) = request_match(cx, at, &mfield, spec) else {
                continue;
            };
            let key = SortKey::Http(precedence(&rm, hr, r, m));
            out.push((
                key,
                Route {
                    name: format!("{} rules[{r}].matches[{m}]", hr.id),
                    origin: RouteOrigin {
                        resource: Some(hr.id.clone()),
                        field: mfield,
                    },
                    port: None,
                    matches: vec![rm],
                    filters: filters.clone().into(),
                    action: action.clone(),
                    policy: policy.clone().into(),
                },
            ));
        }
    }
    out
}

fn precedence(m: &RequestMatch, hr: &Obj<HttpRouteDoc>, rule: usize, idx: usize) -> Precedence {
    let path = match &m.path {
        Some(PathMatch::Exact(p)) => (0, Reverse(p.len())),
        Some(PathMatch::SegmentPrefix(p)) | Some(PathMatch::Prefix(p)) => (1, Reverse(p.len())),
        Some(PathMatch::Regex(p)) => (2, Reverse(p.source.len())),
        None => (1, Reverse(0)),
    };
    (
        path,
        m.method.is_none(),
        Reverse(m.headers.len()),
        Reverse(m.query.len()),
        hr.created.clone(),
        format!("{}/{}", hr.ns(), hr.name()),
        rule,
        idx,
    )
}

fn request_match(cx: &mut Cx<'_>, at: &At<'_>, field: &str, m: &MatchSpec) -> Option<RequestMatch> {
    let path = match &m.path {
        None => PathMatch::SegmentPrefix(String::new()),
        Some(p) => {
            let value = p.value.clone().unwrap_or_else(|| "/".into());
            match p.kind.as_deref().unwrap_or("PathPrefix") {
                "Exact" => PathMatch::Exact(value),
                "PathPrefix" => PathMatch::SegmentPrefix(value.trim_end_matches('/').to_string()),
                "RegularExpression" => {
                    PathMatch::Regex(regex(at, &format!("{field}.path.value"), &value, cx.diags)?)
                }
                other => {
                    cx.diags.push(at.error(
                        format!("{field}.path.type"),
                        format!("unknown path match type {other:?}"),
                    ));
                    return None;
                }
            }
        }
    };
    // The spec: of entries with equivalent names only the first is considered
    // (header names compare case-insensitively, query names exactly).
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
    let mut query: Vec<QueryMatch> = Vec::new();
    for (i, q) in m.query_params.iter().enumerate() {
        if query.iter().any(|x| x.name == q.name) {
            continue;
        }
        let f = format!("{field}.queryParams[{i}]");
        let value = value_match(cx, at, &f, q.kind.as_deref(), &q.value)?;
        query.push(QueryMatch {
            name: q.name.clone(),
            value,
        });
    }
    Some(RequestMatch {
        path: Some(path),
        headers,
        query,
        method: m.method.as_ref().map(|m| Method(m.to_ascii_uppercase())),
        port: None,
        ignore_uri_case: false,
    })
}

pub(super) fn value_match(
    cx: &mut Cx<'_>,
    at: &At<'_>,
    field: &str,
    kind: Option<&str>,
    value: &str,
) -> Option<StringMatch> {
    match kind.unwrap_or("Exact") {
        "Exact" => Some(StringMatch::Exact(value.to_string())),
        "RegularExpression" => {
            regex(at, &format!("{field}.value"), value, cx.diags).map(StringMatch::Regex)
        }
        other => {
            cx.diags.push(at.error(
                format!("{field}.type"),
                format!("unknown match type {other:?}"),
            ));
            None
        }
    }
}

/// `None` when the backendRef's filters are malformed (an error was recorded).
pub(super) fn backend(
    cx: &mut Cx<'_>,
    at: &At<'_>,
    world: &World<'_>,
    ns: &str,
    field: &str,
    b: &BackendRefSpec,
) -> Option<BackendRef> {
    let weight = b.weight.unwrap_or(1);
    let invalid = |reason: String| {
        BackendRef::new(
            BackendTarget::Invalid {
                status: 500,
                reason,
            },
            weight,
        )
    };
    let filters = match backend_filters(cx, at, field, &b.filters)? {
        Ok(filters) => filters,
        // The spec: a filter must not be skipped; the requests it would have
        // processed get an error (the warning is already recorded).
        Err(kind) => return Some(invalid(format!("filter {kind} is not supported"))),
    };
    // The spec: requests to a backend that cannot be resolved get 500.
    let mut unresolved = |sub: &str, reason: String| {
        cx.diags.push(at.warning(
            format!("{field}{sub}"),
            format!("{reason}; requests sent here get 500"),
        ));
        Some(invalid(reason))
    };
    let kind = b.kind.as_deref().unwrap_or("Service");
    if kind != "Service" || !matches!(b.group.as_deref(), None | Some("") | Some("core")) {
        return unresolved(".kind", format!("backend kind {kind} is not supported"));
    }
    // Mesh routes may use a Service in any namespace without a ReferenceGrant:
    // GEP-1294 ("routes augment existing Services"), and Istio enforces grants
    // for Gateway parents only (route_collections.go: convertHTTPRoute(.., !mesh)).
    let ns = b.namespace.as_deref().unwrap_or(ns);
    let Some(service) = world.index.service(ns, &b.name) else {
        return unresolved(".name", format!("no Service {ns}/{} is known", b.name));
    };
    let Some(port) = b.port else {
        return unresolved(".port", "port is required for a Service backend".into());
    };
    if world.services[service.0].port(port).is_none() {
        return unresolved(
            ".port",
            format!("Service {ns}/{} has no port {port}", b.name),
        );
    }
    let target = BackendTarget::Service {
        service,
        port: Some(port),
        subset: None,
    };
    Some(BackendRef {
        target,
        weight,
        filters,
    })
}

#[cfg(test)]
mod tests {
    use crate::{load_sources, Options, Source};

    #[test]
    fn only_the_first_of_equivalent_header_and_query_names_counts() {
        let content = r#"
apiVersion: v1
kind: Service
metadata: {name: a, namespace: ns}
spec: {clusterIP: 10.96.9.1, ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  parentRefs: [{kind: Service, name: a}]
  rules:
  - matches:
    - headers: [{name: X-A, value: "1"}, {name: x-a, value: "2"}, {name: x-b, value: "3"}]
      queryParams: [{name: q, value: "1"}, {name: q, value: "2"}, {name: Q, value: "3"}]
    backendRefs: [{name: a, port: 80}]
"#;
        let src = Source {
            file: "r.yaml".into(),
            content: content.into(),
        };
        let s = load_sources(&[src], &Options::default()).unwrap().snapshot;
        let m = &s.services[0].routes[0].matches[0];
        let headers: Vec<(&str, String)> = m
            .headers
            .iter()
            .map(|h| (h.name.as_str(), format!("{:?}", h.value)))
            .collect();
        assert_eq!(
            headers,
            vec![
                ("x-a", "Exact(\"1\")".into()),
                ("x-b", "Exact(\"3\")".into())
            ]
        );
        let query: Vec<&str> = m.query.iter().map(|q| q.name.as_str()).collect();
        assert_eq!(query, vec!["q", "Q"]);
    }
}
