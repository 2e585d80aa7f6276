//! The mesh config's ext_authz `extensionProviders` → [`ExtAuthzProvider`]s,
//! validated as istiod validates them (`pkg/config/validation/agent`
//! `ValidateExtensionProviderEnvoyExtAuthz*`) and resolved as it resolves
//! them (`model.LookupCluster`: `[<namespace>/]<hostname>`).
//!
//! A provider that cannot be used is [`Severity::Refused`](crate::Severity)
//! against the ConfigMap and left out with the reason; a CUSTOM policy naming
//! it becomes a DENY of what its rules match, as istiod makes it.

use super::Cx;
use crate::istio::mesh_config::{
    BodySpec, ExtAuthzGrpcSpec, ExtAuthzHttpSpec, ExtensionProvider, MeshConfigHead, MESH_KEY,
};
use crate::parse::MESH_CONFIG_MAP;
use crate::Diagnostic;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::time::Duration;
use waypoint_ir::{
    BodyInCheck, ExtAuthzProtocol, ExtAuthzProvider, HttpCheck, Service, ServiceIdx, StrMatch,
    EXT_AUTHZ_MAX_BODY, EXT_AUTHZ_TIMEOUT,
};

/// The providers, and why each named one that is left out cannot be used.
#[derive(Default)]
pub struct Providers {
    pub usable: Vec<ExtAuthzProvider>,
    pub unusable: BTreeMap<String, String>,
    /// Where they came from, for messages: `ConfigMap ns/istio`.
    pub origin: String,
}

impl Providers {
    /// Why a CUSTOM policy cannot use `name`; `None`: it can.
    pub fn why_not(&self, name: &str) -> Option<String> {
        if self.usable.iter().any(|p| p.name == name) {
            return None;
        }
        Some(match self.unusable.get(name) {
            Some(why) => format!("extension provider {name:?} cannot be used: {why}"),
            None => {
                let known: Vec<&str> = self.usable.iter().map(|p| p.name.as_str()).collect();
                format!(
                    "no ext_authz extension provider {name:?} in the mesh config ({}; known: {known:?})",
                    self.origin
                )
            }
        })
    }
}

type Problems = Vec<(String, String)>;

pub fn providers(cx: &mut Cx<'_>, services: &[Service]) -> Providers {
    let root = cx.opts.root_namespace.clone();
    let mut out = Providers {
        origin: format!("ConfigMap {root}/{MESH_CONFIG_MAP}"),
        ..Providers::default()
    };
    let Some(obj) = cx.res.mesh_configs.iter().find(|o| o.ns() == root) else {
        return out;
    };
    let Some(mesh) = obj.doc.data.get(MESH_KEY) else {
        return out;
    };
    let refuse = |cx: &mut Cx<'_>, field: String, message: String| {
        cx.diags.push(Diagnostic::refused(
            &obj.file,
            Some(&obj.id),
            field,
            format!("{message}; CUSTOM policies naming this provider deny what their rules match"),
        ));
    };
    let head: MeshConfigHead = match serde_yaml_ng::from_str(mesh) {
        Ok(h) => h,
        Err(e) => {
            refuse(
                cx,
                format!("data.{MESH_KEY}"),
                format!("not a mesh config: {e}"),
            );
            out.origin = format!("{}, which cannot be read", out.origin);
            return out;
        }
    };
    for (i, value) in head.extension_providers.iter().enumerate() {
        let at = format!("data.{MESH_KEY}.extensionProviders[{i}]");
        let entry: ExtensionProvider = serde_json::from_value(value.clone()).unwrap_or_default();
        let mut problems = Problems::new();
        let built = match (&entry.envoy_ext_authz_grpc, &entry.envoy_ext_authz_http) {
            (None, None) => continue,
            (Some(_), Some(_)) => {
                problems.push((at.clone(), "sets two provider types; one is allowed".into()));
                None
            }
            (Some(v), None) => {
                typed::<ExtAuthzGrpcSpec>(v, &format!("{at}.envoyExtAuthzGrpc"), &mut problems)
                    .and_then(|s| {
                        grpc(
                            cx,
                            services,
                            &s,
                            &format!("{at}.envoyExtAuthzGrpc"),
                            &mut problems,
                        )
                    })
            }
            (None, Some(v)) => {
                typed::<ExtAuthzHttpSpec>(v, &format!("{at}.envoyExtAuthzHttp"), &mut problems)
                    .and_then(|s| {
                        http(
                            cx,
                            services,
                            &s,
                            &format!("{at}.envoyExtAuthzHttp"),
                            &mut problems,
                        )
                    })
            }
        };
        let name = entry.name.clone();
        if name.is_empty() {
            problems.push((format!("{at}.name"), "must not be empty".into()));
        } else if out.unusable.contains_key(&name) || out.usable.iter().any(|p| p.name == name) {
            // istiod keeps the later one, marked with this error.
            problems.push((format!("{at}.name"), format!("{name:?} is defined twice")));
            out.usable.retain(|p| p.name != name);
        }
        match built {
            Some(p) if problems.is_empty() => out.usable.push(ExtAuthzProvider { name, ..p }),
            _ => {
                let why = problems
                    .iter()
                    .map(|(f, m)| format!("{f}: {m}"))
                    .collect::<Vec<_>>();
                if !name.is_empty() {
                    out.unusable.insert(name, why.join("; "));
                }
                for (field, message) in problems {
                    refuse(cx, field, message);
                }
            }
        }
    }
    out
}

fn typed<T: DeserializeOwned>(
    v: &serde_json::Value,
    at: &str,
    problems: &mut Problems,
) -> Option<T> {
    match serde_path_to_error::deserialize(v) {
        Ok(s) => Some(s),
        Err(e) => {
            let path = e.path().to_string();
            let field = if path == "." {
                at.to_string()
            } else {
                format!("{at}.{path}")
            };
            problems.push((field, e.inner().to_string()));
            None
        }
    }
}

/// What both provider types share.
struct Common<'a> {
    service: &'a str,
    port: u32,
    timeout: Option<&'a str>,
    fail_open: bool,
    status_on_error: &'a str,
    body: Option<&'a BodySpec>,
    clear_route_cache: bool,
}

/// The shared fields of either spec (they are two types, as serde's
/// `deny_unknown_fields` cannot flatten one into the other).
macro_rules! common {
    ($s:expr) => {
        Common {
            service: &$s.service,
            port: $s.port,
            timeout: $s.timeout.as_deref(),
            fail_open: $s.fail_open,
            status_on_error: &$s.status_on_error,
            body: $s.include_request_body_in_check.as_ref(),
            clear_route_cache: $s.clear_route_cache,
        }
    };
}

fn grpc(
    cx: &Cx<'_>,
    services: &[Service],
    s: &ExtAuthzGrpcSpec,
    at: &str,
    problems: &mut Problems,
) -> Option<ExtAuthzProvider> {
    let common = common!(s);
    common.build(cx, services, at, problems, ExtAuthzProtocol::Grpc)
}

fn http(
    cx: &Cx<'_>,
    services: &[Service],
    s: &ExtAuthzHttpSpec,
    at: &str,
    problems: &mut Problems,
) -> Option<ExtAuthzProvider> {
    if !s.path_prefix.is_empty()
        && (!s.path_prefix.starts_with('/')
            || s.path_prefix.parse::<http::uri::PathAndQuery>().is_err())
    {
        problems.push((
            format!("{at}.pathPrefix"),
            format!("{:?} must be a path beginning with `/`", s.path_prefix),
        ));
    }
    let mut patterns = |field: &str, values: &[String]| -> Vec<StrMatch> {
        let mut out = Vec::new();
        for (i, v) in values.iter().enumerate() {
            if v == "*" {
                problems.push((
                    format!("{at}.{field}[{i}]"),
                    "a single wildcard (\"*\") is not supported, change it to either prefix or suffix match".into(),
                ));
            } else {
                out.push(StrMatch::parse(&v.to_ascii_lowercase()));
            }
        }
        out
    };
    let mut request_headers = patterns(
        "includeRequestHeadersInCheck",
        &s.include_request_headers_in_check,
    );
    let deprecated = patterns("includeHeadersInCheck", &s.include_headers_in_check);
    if request_headers.is_empty() {
        request_headers = deprecated;
    }
    let check = HttpCheck {
        path_prefix: s.path_prefix.clone(),
        request_headers,
        additional_headers: s
            .include_additional_headers_in_check
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect(),
        to_upstream_on_allow: patterns("headersToUpstreamOnAllow", &s.headers_to_upstream_on_allow),
        to_downstream_on_deny: patterns(
            "headersToDownstreamOnDeny",
            &s.headers_to_downstream_on_deny,
        ),
        to_downstream_on_allow: patterns(
            "headersToDownstreamOnAllow",
            &s.headers_to_downstream_on_allow,
        ),
    };
    for (k, v) in &check.additional_headers {
        if http::HeaderName::from_bytes(k.as_bytes()).is_err()
            || http::HeaderValue::from_str(v).is_err()
        {
            problems.push((
                format!("{at}.includeAdditionalHeadersInCheck"),
                format!("{k:?}: {v:?} is not a valid header"),
            ));
        }
    }
    let common = common!(s);
    common.build(cx, services, at, problems, ExtAuthzProtocol::Http(check))
}

impl Common<'_> {
    fn build(
        &self,
        cx: &Cx<'_>,
        services: &[Service],
        at: &str,
        problems: &mut Problems,
        protocol: ExtAuthzProtocol,
    ) -> Option<ExtAuthzProvider> {
        let mut problem =
            |field: &str, message: String| problems.push((format!("{at}.{field}"), message));
        let port = match u16::try_from(self.port) {
            Ok(p) if p > 0 => p,
            _ => {
                problem(
                    "port",
                    format!("must be in the range [1, 65535], found: {}", self.port),
                );
                0
            }
        };
        let service = match lookup(services, self.service, &cx.opts.cluster_domain) {
            Ok(s) => Some(s),
            Err(e) => {
                problem("service", e);
                None
            }
        };
        let timeout = match self.timeout.map(crate::duration::parse) {
            None => EXT_AUTHZ_TIMEOUT,
            Some(Ok(d)) if d > Duration::ZERO => d,
            Some(Ok(_)) => {
                problem("timeout", "must be greater than 0".into());
                EXT_AUTHZ_TIMEOUT
            }
            Some(Err(e)) => {
                problem("timeout", e);
                EXT_AUTHZ_TIMEOUT
            }
        };
        let status_on_error = match self.status_on_error {
            "" => 403,
            s => match s
                .parse::<u16>()
                .ok()
                .and_then(|c| http::StatusCode::from_u16(c).ok())
            {
                Some(c) if c.canonical_reason().is_some() => c.as_u16(),
                _ => {
                    problem(
                        "statusOnError",
                        format!("unsupported statusOnError value {s:?}: not a known HTTP status"),
                    );
                    403
                }
            },
        };
        let body = self.body.and_then(|b| {
            if b.max_request_bytes == 0 || b.max_request_bytes > EXT_AUTHZ_MAX_BODY {
                problem(
                    "includeRequestBodyInCheck.maxRequestBytes",
                    format!(
                        "{} is not in [1, {EXT_AUTHZ_MAX_BODY}]: this waypoint holds at most {EXT_AUTHZ_MAX_BODY} bytes of a body for a check",
                        b.max_request_bytes
                    ),
                );
                return None;
            }
            Some(BodyInCheck {
                max_bytes: b.max_request_bytes,
                allow_partial: b.allow_partial_message,
                pack_as_bytes: b.pack_as_bytes,
            })
        });
        Some(ExtAuthzProvider {
            name: String::new(),
            protocol,
            service: service?,
            port,
            timeout,
            fail_open: self.fail_open,
            status_on_error,
            body,
            clear_route_cache: self.clear_route_cache,
        })
    }
}

/// Istio's `[<namespace>/]<hostname>`: the hostname is a Service's FQDN (or a
/// ServiceEntry host); without a namespace it must name one service only.
fn lookup(services: &[Service], service: &str, cluster_domain: &str) -> Result<ServiceIdx, String> {
    if service.is_empty() {
        return Err("must not be empty".into());
    }
    let (namespace, host) = match service.split_once('/') {
        Some((ns, host)) => (Some(ns), host),
        None => (None, service),
    };
    let found: Vec<usize> = services
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            s.hostname.eq_ignore_ascii_case(host) && namespace.is_none_or(|ns| s.namespace == ns)
        })
        .map(|(i, _)| i)
        .collect();
    match found.as_slice() {
        [i] => Ok(ServiceIdx(*i)),
        [] if !host.contains('.') => Err(format!(
            "could not find service {service} in the service registry (the hostname must be fully qualified, like {host}.<namespace>.svc.{cluster_domain})"
        )),
        [] => Err(format!("could not find service {service} in the service registry")),
        many => {
            let namespaces: Vec<&str> = many.iter().map(|i| services[*i].namespace.as_str()).collect();
            Err(format!(
                "found {host} in multiple namespaces {namespaces:?}, specify the namespace explicitly in the format of <Namespace>/<Hostname>"
            ))
        }
    }
}

#[cfg(test)]
mod tests;
