//! HTTPRoute filters (header modifiers, redirect, rewrite), of a rule and of a
//! backendRef, and the checks the Gateway API CRDs make in CEL, which a manifest
//! directory skips.

use super::super::matchers::At;
use super::super::Cx;
use crate::gateway_api::{HeaderModifierSpec, MatchSpec, PathModifierSpec, RouteFilter, Rule};
use waypoint_ir::{
    BackendFilters, HeaderModifier, PathModifier, Redirect, RouteFilters, UrlRewrite,
};

/// The HTTPRouteRule CEL validations of the Gateway API CRDs, which the API
/// server enforces and a directory of manifests does not. A backendRef's
/// filters obey the same rules as the rule's.
pub fn rule_is_valid(cx: &mut Cx<'_>, at: &At<'_>, field: &str, rule: &Rule) -> bool {
    let before = cx.diags.len();
    let kinds = list_is_valid(cx, at, field, &rule.filters, &rule.matches, false);
    if kinds.contains(&"RequestRedirect") && !rule.backend_refs.is_empty() {
        cx.diags.push(at.error(
            format!("{field}.backendRefs"),
            "RequestRedirect filter must not be used together with backendRefs",
        ));
    }
    for (b, br) in rule.backend_refs.iter().enumerate() {
        let f = format!("{field}.backendRefs[{b}]");
        list_is_valid(cx, at, &f, &br.filters, &rule.matches, true);
    }
    cx.diags.len() == before
}

/// Checks the `filters` of `field` (a rule or a backendRef); returns their types.
fn list_is_valid<'f>(
    cx: &mut Cx<'_>,
    at: &At<'_>,
    field: &str,
    filters: &'f [RouteFilter],
    matches: &[MatchSpec],
    of_backend_ref: bool,
) -> Vec<&'f str> {
    let mut seen: Vec<&str> = Vec::new();
    for (i, f) in filters.iter().enumerate() {
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
    for (i, f) in filters.iter().enumerate() {
        let (name, path) = match (&f.request_redirect, &f.url_rewrite) {
            (Some(r), _) if f.kind == "RequestRedirect" => ("requestRedirect", r.path.as_ref()),
            (_, Some(r)) if f.kind == "URLRewrite" => ("urlRewrite", r.path.as_ref()),
            _ => continue,
        };
        // After the CRD's defaulting: no matches, or no path, is PathPrefix "/".
        let one_prefix = matches.len() <= 1
            && matches
                .first()
                .and_then(|m| m.path.as_ref())
                .is_none_or(|p| p.kind.as_deref().unwrap_or("PathPrefix") == "PathPrefix");
        if path.is_some_and(|p| p.kind == "ReplacePrefixMatch") && !one_prefix {
            let rule = format!("{} filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified", f.kind);
            let msg = match of_backend_ref {
                true => format!("Within backendRefs, when using {rule}"),
                false => format!("When using {rule}"),
            };
            cx.diags
                .push(at.error(format!("{field}.filters[{i}].{name}.path"), msg));
        }
    }
    seen
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

pub type RuleFilters = (RouteFilters, Option<Redirect>, Option<String>);

/// A backendRef's filters, or the first filter type this waypoint does not
/// implement; `None` when one is malformed (an error was recorded).
pub fn backend_filters(
    cx: &mut Cx<'_>,
    at: &At<'_>,
    field: &str,
    filters: &[RouteFilter],
) -> Option<Result<Option<Box<BackendFilters>>, String>> {
    if filters.is_empty() {
        return Some(Ok(None));
    }
    let consequence = "requests sent to this backend get 500";
    let (edits, redirect, unsupported) = parsed(cx, at, field, filters, consequence)?;
    if let Some(kind) = unsupported {
        return Some(Err(kind));
    }
    Some(Ok(Some(Box::new(BackendFilters {
        request_headers: edits.request_headers,
        response_headers: edits.response_headers,
        rewrite: edits.rewrite,
        redirect,
    }))))
}

/// The rule's filters; `None` when one is malformed (an error was recorded).
pub fn rule_filters(
    cx: &mut Cx<'_>,
    at: &At<'_>,
    field: &str,
    filters: &[RouteFilter],
) -> Option<RuleFilters> {
    parsed(
        cx,
        at,
        field,
        filters,
        "requests matching this rule get 500",
    )
}

fn parsed(
    cx: &mut Cx<'_>,
    at: &At<'_>,
    field: &str,
    filters: &[RouteFilter],
    consequence: &str,
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
                    format!("filter {other} is not supported; {consequence}"),
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
