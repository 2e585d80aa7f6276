//! HTTPRoutes with a `Service` parent (GAMMA) → routes in Gateway API precedence.
//!
//! Each (rule, match) becomes its own route, and all routes attached to a service
//! are sorted once here by the spec's precedence, so the data path takes the first
//! match. Regex paths rank below every exact and prefix path, as Istio ranks them.

use super::matchers::{regex, At};
use super::{Attached, Cx, World};
use crate::gateway_api::{
    BackendRefSpec, HeaderModifierSpec, HttpRouteDoc, MatchSpec, PathModifierSpec, RouteFilter,
    Rule,
};
use crate::parse::Obj;
use std::cmp::Reverse;
use std::collections::BTreeMap;
use waypoint_ir::{
    BackendRef, BackendTarget, HeaderMatch, HeaderModifier, Method, PathMatch, PathModifier,
    QueryMatch, Redirect, RequestMatch, Route, RouteAction, RouteFilters, RouteOrigin, ServiceIdx,
    StringMatch, UrlRewrite,
};

/// Sort key: smaller sorts first and so wins.
type Precedence = (
    (u8, Reverse<usize>),
    bool,
    Reverse<usize>,
    Reverse<usize>,
    String,
    String,
    usize,
    usize,
);

pub fn routes(cx: &mut Cx<'_>, world: &World<'_>) -> BTreeMap<ServiceIdx, Attached> {
    let mut entries: BTreeMap<ServiceIdx, Vec<(Precedence, Route)>> = BTreeMap::new();
    let mut from: BTreeMap<ServiceIdx, (Vec<waypoint_ir::ResourceRef>, String)> = BTreeMap::new();
    for hr in &cx.res.http_routes {
        let at = At {
            file: &hr.file,
            id: &hr.id,
        };
        // Rules are validated even when no parent resolves: errors must not hide.
        let translated = translate_rules(cx, &at, world, hr);
        let parents = parents(cx, &at, world, hr);
        for (idx, port) in parents {
            let e = from
                .entry(idx)
                .or_insert_with(|| (Vec::new(), hr.file.clone()));
            if !e.0.contains(&hr.id) {
                e.0.push(hr.id.clone());
            }
            for (key, route) in &translated {
                let mut route = route.clone();
                route.port = port;
                entries.entry(idx).or_default().push((key.clone(), route));
            }
        }
    }
    entries
        .into_iter()
        .map(|(idx, mut list)| {
            list.sort_by(|a, b| a.0.cmp(&b.0));
            let (from, file) = from.remove(&idx).unwrap_or_default();
            (
                idx,
                Attached {
                    routes: list.into_iter().map(|(_, r)| r).collect(),
                    from,
                    file,
                },
            )
        })
        .collect()
}

/// The services (and ports) this route attaches to; other parents are ignored.
fn parents(
    cx: &mut Cx<'_>,
    at: &At<'_>,
    world: &World<'_>,
    hr: &Obj<HttpRouteDoc>,
) -> Vec<(ServiceIdx, Option<u16>)> {
    let mut out = Vec::new();
    for (i, p) in hr.doc.spec.parent_refs.iter().enumerate() {
        let is_service = p.kind.as_deref() == Some("Service")
            && matches!(p.group.as_deref(), None | Some("") | Some("core"));
        if !is_service {
            log::debug!(
                "{}: {} parentRefs[{i}] is not a Service; not a mesh route",
                hr.file,
                hr.id
            );
            continue;
        }
        let ns = p.namespace.as_deref().unwrap_or(hr.ns());
        match world.index.service(ns, &p.name) {
            Some(idx) => out.push((idx, p.port)),
            None => cx.diags.push(at.warning(
                format!("spec.parentRefs[{i}]"),
                format!("no Service {ns}/{} is known", p.name),
            )),
        }
    }
    out
}

fn translate_rules(
    cx: &mut Cx<'_>,
    at: &At<'_>,
    world: &World<'_>,
    hr: &Obj<HttpRouteDoc>,
) -> Vec<(Precedence, Route)> {
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
            RouteAction::Redirect(redirect)
        } else {
            RouteAction::Forward(
                rule.backend_refs
                    .iter()
                    .enumerate()
                    .map(|(b, br)| {
                        backend(
                            cx,
                            at,
                            world,
                            hr.ns(),
                            &format!("{field}.backendRefs[{b}]"),
                            br,
                        )
                    })
                    .collect(),
            )
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
            let key = precedence(&rm, hr, r, m);
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
                    filters: filters.clone(),
                    action: action.clone(),
                    policy: policy.clone(),
                },
            ));
        }
    }
    out
}

/// The HTTPRouteRule CEL validations of the Gateway API CRDs, which the API
/// server enforces and a directory of manifests does not.
fn rule_is_valid(cx: &mut Cx<'_>, at: &At<'_>, field: &str, rule: &Rule) -> bool {
    let before = cx.diags.len();
    let mut seen: Vec<&str> = Vec::new();
    for (i, f) in rule.filters.iter().enumerate() {
        let repeatable = matches!(f.kind.as_str(), "RequestMirror" | "ExtensionRef");
        if !repeatable && seen.contains(&f.kind.as_str()) {
            cx.diags.push(at.error(
                format!("{field}.filters[{i}].type"),
                format!("{} filter cannot be repeated", f.kind),
            ));
        }
        seen.push(&f.kind);
    }
    if seen.contains(&"RequestRedirect") && seen.contains(&"URLRewrite") {
        cx.diags.push(at.error(
            format!("{field}.filters"),
            "may specify either RequestRedirect or URLRewrite, but not both",
        ));
    }
    if seen.contains(&"RequestRedirect") && !rule.backend_refs.is_empty() {
        cx.diags.push(at.error(
            format!("{field}.backendRefs"),
            "RequestRedirect filter must not be used together with backendRefs",
        ));
    }
    for (i, f) in rule.filters.iter().enumerate() {
        let (name, path) = match (&f.request_redirect, &f.url_rewrite) {
            (Some(r), _) if f.kind == "RequestRedirect" => ("requestRedirect", r.path.as_ref()),
            (_, Some(r)) if f.kind == "URLRewrite" => ("urlRewrite", r.path.as_ref()),
            _ => continue,
        };
        // After the CRD's defaulting: no matches, or no path, is PathPrefix "/".
        let one_prefix = rule.matches.len() <= 1
            && rule
                .matches
                .first()
                .and_then(|m| m.path.as_ref())
                .is_none_or(|p| p.kind.as_deref().unwrap_or("PathPrefix") == "PathPrefix");
        if path.is_some_and(|p| p.kind == "ReplacePrefixMatch") && !one_prefix {
            cx.diags.push(at.error(
                format!("{field}.filters[{i}].{name}.path"),
                format!("When using {} filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified", f.kind),
            ));
        }
    }
    cx.diags.len() == before
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
    let mut headers = Vec::new();
    for (i, h) in m.headers.iter().enumerate() {
        let f = format!("{field}.headers[{i}]");
        let value = value_match(cx, at, &f, h.kind.as_deref(), &h.value)?;
        headers.push(HeaderMatch {
            name: h.name.to_ascii_lowercase(),
            value,
            invert: false,
        });
    }
    let mut query = Vec::new();
    for (i, q) in m.query_params.iter().enumerate() {
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

fn value_match(
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

fn header_modifier(h: &HeaderModifierSpec) -> HeaderModifier {
    HeaderModifier {
        set: h
            .set
            .iter()
            .map(|nv| (nv.name.to_ascii_lowercase(), nv.value.clone()))
            .collect(),
        add: h
            .add
            .iter()
            .map(|nv| (nv.name.to_ascii_lowercase(), nv.value.clone()))
            .collect(),
        remove: h.remove.iter().map(|n| n.to_ascii_lowercase()).collect(),
    }
}

fn path_modifier(
    cx: &mut Cx<'_>,
    at: &At<'_>,
    field: &str,
    p: &PathModifierSpec,
) -> Option<PathModifier> {
    let missing = |cx: &mut Cx<'_>, name: &str| {
        cx.diags
            .push(at.error(format!("{field}.{name}"), "required by the path type"));
        None
    };
    match p.kind.as_str() {
        "ReplaceFullPath" => match &p.replace_full_path {
            Some(v) => Some(PathModifier::ReplaceFullPath(v.clone())),
            None => missing(cx, "replaceFullPath"),
        },
        "ReplacePrefixMatch" => match &p.replace_prefix_match {
            Some(v) => Some(PathModifier::ReplacePrefixMatch(v.clone())),
            None => missing(cx, "replacePrefixMatch"),
        },
        other => {
            cx.diags.push(at.error(
                format!("{field}.type"),
                format!("unknown path modifier type {other:?}"),
            ));
            None
        }
    }
}

type RuleFilters = (RouteFilters, Option<Redirect>, Option<String>);

/// The rule's filters; `None` when one is malformed (an error was recorded).
fn rule_filters(
    cx: &mut Cx<'_>,
    at: &At<'_>,
    field: &str,
    filters: &[RouteFilter],
) -> Option<RuleFilters> {
    let mut out = RouteFilters::default();
    let mut redirect = None;
    let mut unsupported = None;
    for (i, f) in filters.iter().enumerate() {
        let ff = format!("{field}.filters[{i}]");
        let need = |cx: &mut Cx<'_>, name: &str| {
            cx.diags.push(at.error(
                format!("{ff}.{name}"),
                format!("required when type is {}", f.kind),
            ));
        };
        match f.kind.as_str() {
            "RequestHeaderModifier" => match &f.request_header_modifier {
                Some(h) => out.request_headers = header_modifier(h),
                None => {
                    need(cx, "requestHeaderModifier");
                    return None;
                }
            },
            "ResponseHeaderModifier" => match &f.response_header_modifier {
                Some(h) => out.response_headers = header_modifier(h),
                None => {
                    need(cx, "responseHeaderModifier");
                    return None;
                }
            },
            "RequestRedirect" => {
                let Some(r) = &f.request_redirect else {
                    need(cx, "requestRedirect");
                    return None;
                };
                let path = match &r.path {
                    Some(p) => Some(path_modifier(
                        cx,
                        at,
                        &format!("{ff}.requestRedirect.path"),
                        p,
                    )?),
                    None => None,
                };
                redirect = Some(Redirect {
                    scheme: r.scheme.clone(),
                    hostname: r.hostname.clone(),
                    path,
                    port: r.port,
                    status: r.status_code.unwrap_or(302),
                });
            }
            "URLRewrite" => {
                let Some(r) = &f.url_rewrite else {
                    need(cx, "urlRewrite");
                    return None;
                };
                let path = match &r.path {
                    Some(p) => Some(path_modifier(cx, at, &format!("{ff}.urlRewrite.path"), p)?),
                    None => None,
                };
                out.rewrite = Some(UrlRewrite {
                    hostname: r.hostname.clone(),
                    path,
                });
            }
            // Valid filters this waypoint does not implement. The spec: a filter
            // must not be skipped; requests it would have processed get an error.
            other @ ("RequestMirror" | "ExtensionRef" | "CORS" | "ExternalAuth") => {
                cx.diags.push(at.warning(
                    format!("{ff}.type"),
                    format!("filter {other} is not supported; requests matching this rule get 500"),
                ));
                unsupported = Some(other.to_string());
            }
            other => {
                cx.diags.push(at.error(
                    format!("{ff}.type"),
                    format!("unknown filter type {other:?}"),
                ));
                return None;
            }
        }
    }
    Some((out, redirect, unsupported))
}

fn backend(
    cx: &mut Cx<'_>,
    at: &At<'_>,
    world: &World<'_>,
    ns: &str,
    field: &str,
    b: &BackendRefSpec,
) -> BackendRef {
    let weight = b.weight.unwrap_or(1);
    // The spec: requests to a backend that cannot be resolved get 500.
    let mut invalid = |sub: &str, reason: String| {
        cx.diags.push(at.warning(
            format!("{field}{sub}"),
            format!("{reason}; requests sent here get 500"),
        ));
        BackendRef {
            target: BackendTarget::Invalid {
                status: 500,
                reason,
            },
            weight,
        }
    };
    let kind = b.kind.as_deref().unwrap_or("Service");
    if kind != "Service" || !matches!(b.group.as_deref(), None | Some("") | Some("core")) {
        return invalid(".kind", format!("backend kind {kind} is not supported"));
    }
    let ns = b.namespace.as_deref().unwrap_or(ns);
    let Some(service) = world.index.service(ns, &b.name) else {
        return invalid(".name", format!("no Service {ns}/{} is known", b.name));
    };
    let Some(port) = b.port else {
        return invalid(".port", "port is required for a Service backend".into());
    };
    if world.services[service.0].port(port).is_none() {
        return invalid(
            ".port",
            format!("Service {ns}/{} has no port {port}", b.name),
        );
    }
    BackendRef {
        target: BackendTarget::Service {
            service,
            port: Some(port),
            subset: None,
        },
        weight,
    }
}
