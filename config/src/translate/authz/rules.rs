//! An AuthorizationPolicy's `rules` → IR matchers, with Istio's validation
//! (`pkg/config/validation` `ValidateAuthorizationPolicy`,
//! `pkg/config/security`) and its value syntax (`pilot/pkg/security/authz/model`).
//! Anything the waypoint could not enforce exactly is a problem; the caller
//! then replaces the whole policy by its fail-closed form.

use crate::istio::authorization_policy::{Condition, Operation, Rule, Source};
use std::net::IpAddr;
use waypoint_ir::{
    AuthzRule, Cidr, Condition as Cond, ConditionKey, ConditionValue, Field, OperationMatch,
    PathPattern, PathSegment, ServiceAccount, SourceMatch, StrMatch,
};

/// (field path, message), for the policy's diagnostics.
pub type Problems = Vec<(String, String)>;

/// What rule translation needs from the policy.
pub struct RuleCx<'a> {
    /// The policy's namespace: `serviceAccounts` values without one are in it.
    pub namespace: &'a str,
    /// CUSTOM policies accept fewer fields (Istio's validation).
    pub custom: bool,
    pub problems: &'a mut Problems,
}

impl RuleCx<'_> {
    fn problem(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push((field.into(), message.into()));
    }
}

pub fn rule(cx: &mut RuleCx<'_>, r: &Rule, field: &str) -> AuthzRule {
    let mut out = AuthzRule::default();
    if let Some(from) = &r.from {
        if from.is_empty() {
            cx.problem(format!("{field}.from"), "must not be empty");
        }
        for (i, f) in from.iter().enumerate() {
            let at = format!("{field}.from[{i}].source");
            match f.as_ref().and_then(|f| f.source.as_ref()) {
                Some(s) => out.from.push(source(cx, s, &at)),
                None => cx.problem(at, "must be set"),
            }
        }
    }
    if let Some(to) = &r.to {
        if to.is_empty() {
            cx.problem(format!("{field}.to"), "must not be empty");
        }
        for (i, t) in to.iter().enumerate() {
            let at = format!("{field}.to[{i}].operation");
            match t.as_ref().and_then(|t| t.operation.as_ref()) {
                Some(o) => out.to.push(operation(cx, o, &at)),
                None => cx.problem(at, "must be set"),
            }
        }
    }
    for (i, c) in r.when.iter().enumerate() {
        let at = format!("{field}.when[{i}]");
        match c {
            Some(c) => {
                if let Some(c) = condition(cx, c, &at) {
                    out.when.push(c);
                }
            }
            None => cx.problem(at, "must not be null"),
        }
    }
    out
}

fn source(cx: &mut RuleCx<'_>, s: &Source, at: &str) -> SourceMatch {
    let all = [
        &s.principals,
        &s.not_principals,
        &s.request_principals,
        &s.not_request_principals,
        &s.namespaces,
        &s.not_namespaces,
        &s.service_accounts,
        &s.not_service_accounts,
        &s.trust_domains,
        &s.not_trust_domains,
        &s.ip_blocks,
        &s.not_ip_blocks,
        &s.remote_ip_blocks,
        &s.not_remote_ip_blocks,
    ];
    if all.iter().all(|v| v.is_empty()) {
        cx.problem(at, "must not be empty");
    }
    let principal_like =
        s.principals.len() + s.not_principals.len() + s.namespaces.len() + s.not_namespaces.len();
    if principal_like > 0 && !(s.service_accounts.is_empty() && s.not_service_accounts.is_empty()) {
        cx.problem(
            format!("{at}.serviceAccounts"),
            "cannot be set with namespaces or principals",
        );
    }
    if cx.custom {
        for (name, v) in [
            ("principals", &s.principals),
            ("notPrincipals", &s.not_principals),
            ("requestPrincipals", &s.request_principals),
            ("notRequestPrincipals", &s.not_request_principals),
            ("namespaces", &s.namespaces),
            ("notNamespaces", &s.not_namespaces),
            ("serviceAccounts", &s.service_accounts),
            ("notServiceAccounts", &s.not_service_accounts),
            ("trustDomains", &s.trust_domains),
            ("notTrustDomains", &s.not_trust_domains),
        ] {
            if !v.is_empty() {
                cx.problem(
                    format!("{at}.{name}"),
                    "not supported with the CUSTOM action",
                );
            }
        }
    }
    let f = |name: &str| format!("{at}.{name}");
    SourceMatch {
        principals: strs(cx, &f("principals"), &s.principals, &s.not_principals),
        request_principals: strs(
            cx,
            &f("requestPrincipals"),
            &s.request_principals,
            &s.not_request_principals,
        ),
        namespaces: field(
            cx,
            &f("namespaces"),
            &s.namespaces,
            &s.not_namespaces,
            namespace,
        ),
        service_accounts: field(
            cx,
            &f("serviceAccounts"),
            &s.service_accounts,
            &s.not_service_accounts,
            service_account,
        ),
        trust_domains: field(
            cx,
            &f("trustDomains"),
            &s.trust_domains,
            &s.not_trust_domains,
            trust_domain,
        ),
        ip_blocks: field(cx, &f("ipBlocks"), &s.ip_blocks, &s.not_ip_blocks, cidr),
        remote_ip_blocks: field(
            cx,
            &f("remoteIpBlocks"),
            &s.remote_ip_blocks,
            &s.not_remote_ip_blocks,
            cidr,
        ),
    }
}

fn operation(cx: &mut RuleCx<'_>, o: &Operation, at: &str) -> OperationMatch {
    let all = [
        &o.hosts,
        &o.not_hosts,
        &o.ports,
        &o.not_ports,
        &o.methods,
        &o.not_methods,
        &o.paths,
        &o.not_paths,
    ];
    if all.iter().all(|v| v.is_empty()) {
        cx.problem(at, "must not be empty");
    }
    let f = |name: &str| format!("{at}.{name}");
    OperationMatch {
        hosts: strs(cx, &f("hosts"), &o.hosts, &o.not_hosts),
        ports: field(cx, &f("ports"), &o.ports, &o.not_ports, port),
        methods: strs(cx, &f("methods"), &o.methods, &o.not_methods),
        paths: field(cx, &f("paths"), &o.paths, &o.not_paths, path),
    }
}

/// A value parser: the policy's namespace, and the value.
type Parse<T> = fn(&str, &str) -> Result<T, String>;

/// A field and its `not` form. Problems name the value's index, under the
/// `not` name for `none_of` (`notPaths[1]`).
fn field<T>(
    cx: &mut RuleCx<'_>,
    at: &str,
    any: &[String],
    none: &[String],
    parse: Parse<T>,
) -> Field<T> {
    let (path, name) = at.rsplit_once('.').unwrap_or(("", at));
    let not = format!("{path}.not{}{}", name[..1].to_uppercase(), &name[1..]);
    let mut one = |at: &str, values: &[String]| -> Vec<T> {
        let mut out = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let r = if v.is_empty() {
                Err("empty value not allowed".to_string())
            } else {
                parse(cx.namespace, v)
            };
            match r {
                Ok(t) => out.push(t),
                Err(e) => cx.problem(format!("{at}[{i}]"), e),
            }
        }
        out
    };
    Field {
        any_of: one(at, any),
        none_of: one(&not, none),
    }
}

fn strs(cx: &mut RuleCx<'_>, at: &str, any: &[String], none: &[String]) -> Field<StrMatch> {
    field(cx, at, any, none, |_, v| Ok(StrMatch::parse(v)))
}

/// Istio turns every `*` of a namespace into `.*`; the IR's matches cover one
/// at either end.
fn namespace(_: &str, v: &str) -> Result<StrMatch, String> {
    let inner = v.trim_start_matches('*').trim_end_matches('*');
    if v.matches('*').count() > 1 && v != "*" || inner.contains('*') {
        return Err(format!(
            "{v:?}: a `*` other than one at the start or the end is not supported by this waypoint"
        ));
    }
    Ok(StrMatch::parse(v))
}

/// `CheckTrustDomainValues`.
fn trust_domain(_: &str, v: &str) -> Result<StrMatch, String> {
    wildcard(v)?;
    if v.contains('/') {
        return Err(format!("{v:?}: a trust domain must not contain '/'"));
    }
    Ok(StrMatch::parse(v))
}

/// `CheckWildcardValues`: one `*` at most, at the start or the end.
fn wildcard(v: &str) -> Result<(), String> {
    let n = v.matches('*').count();
    if n > 1 {
        return Err(format!("{v:?}: at most one wildcard is allowed"));
    }
    if n == 1 && v != "*" && !v.starts_with('*') && !v.ends_with('*') {
        return Err(format!(
            "{v:?}: a wildcard is only allowed at the start or the end"
        ));
    }
    Ok(())
}

/// `CheckServiceAccount`: `sa` (in the policy's namespace) or `ns/sa`.
fn service_account(policy_ns: &str, v: &str) -> Result<ServiceAccount, String> {
    if v.contains('*') {
        return Err(format!("{v:?}: wildcards are not allowed"));
    }
    if v.len() > 320 {
        return Err(format!("{v:?}: longer than 320 characters"));
    }
    let (ns, sa) = v.split_once('/').unwrap_or((policy_ns, v));
    if ns.is_empty() || sa.is_empty() || sa.contains('/') {
        return Err(format!(
            "{v:?}: expected 'serviceAccount' or 'namespace/serviceAccount'"
        ));
    }
    Ok(ServiceAccount {
        namespace: ns.to_string(),
        name: sa.to_string(),
    })
}

/// `ValidateIPs`: an address, or a CIDR.
pub fn cidr(_: &str, v: &str) -> Result<Cidr, String> {
    let (addr, prefix) = match v.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (v, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{v:?} is not an IP address or CIDR"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(format!("{v:?} is not a valid CIDR")),
        },
    };
    Ok(Cidr { addr, prefix })
}

/// `ValidatePorts`: decimal digits, at most 65535.
fn port(_: &str, v: &str) -> Result<u16, String> {
    match v.parse::<u16>() {
        Ok(p) if v.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(format!("{v:?} is not a port (0-65535)")),
    }
}

const ONE: &str = "{*}";
const ANY: &str = "{**}";

/// `CheckValidPathTemplate`, then the template's segments, or else a string
/// match. `{` and `}` are only valid as a template operator.
fn path(_: &str, v: &str) -> Result<PathPattern, String> {
    let template = v.contains(ONE) || v.contains(ANY);
    let mut seen_any = false;
    for glob in v.trim_matches('/').split('/') {
        match glob {
            ONE | ANY if seen_any => {
                return Err(format!("{v:?}: {{**}} must be the last operator"))
            }
            ANY => seen_any = true,
            ONE => {}
            _ if glob.contains(['{', '}']) => {
                return Err(format!(
                    "{v:?}: contains '{{' or '}}' beyond a supported path template"
                ))
            }
            _ if template && !valid_literal(glob) => {
                return Err(format!(
                    "{v:?}: segment {glob:?} is not a valid literal in a path template"
                ))
            }
            _ => {}
        }
    }
    if !template {
        return Ok(PathPattern::Str(StrMatch::parse(v)));
    }
    let Some(rest) = v.strip_prefix('/') else {
        return Err(format!("{v:?}: a path template must start with '/'"));
    };
    let segments = rest
        .split('/')
        .map(|s| match s {
            ONE => PathSegment::One,
            ANY => PathSegment::Rest,
            lit => PathSegment::Literal(lit.to_string()),
        })
        .collect();
    Ok(PathPattern::Template(segments))
}

/// RFC 3986 pchar, as Istio's `validLiteral`.
fn valid_literal(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@=".contains(&b))
}

/// A `when` entry; `None` after a problem.
fn condition(cx: &mut RuleCx<'_>, c: &Condition, at: &str) -> Option<Cond> {
    if c.key.is_empty() {
        cx.problem(format!("{at}.key"), "must not be empty");
        return None;
    }
    if c.values.is_empty() && c.not_values.is_empty() {
        cx.problem(
            at,
            format!(
                "at least one of values or notValues must be set for key {}",
                c.key
            ),
        );
        return None;
    }
    let key = match condition_key(&c.key) {
        Ok(k) => k,
        Err(e) => {
            cx.problem(format!("{at}.key"), e);
            return None;
        }
    };
    if cx.custom
        && (matches!(
            key,
            ConditionKey::SourceNamespace
                | ConditionKey::SourceServiceAccount
                | ConditionKey::SourceTrustDomain
                | ConditionKey::SourcePrincipal
        ) || c.key.starts_with("request.auth."))
    {
        cx.problem(
            format!("{at}.key"),
            format!("{} is not supported with the CUSTOM action", c.key),
        );
    }
    let parse: Parse<ConditionValue> = match key {
        ConditionKey::SourceIp | ConditionKey::RemoteIp | ConditionKey::DestinationIp => {
            |ns, v| cidr(ns, v).map(ConditionValue::Ip)
        }
        ConditionKey::DestinationPort => |ns, v| port(ns, v).map(ConditionValue::Port),
        ConditionKey::SourceServiceAccount => {
            |ns, v| service_account(ns, v).map(ConditionValue::ServiceAccount)
        }
        ConditionKey::SourceTrustDomain => {
            |_, v| wildcard(v).map(|()| ConditionValue::Str(StrMatch::parse(v)))
        }
        ConditionKey::SourceNamespace => |ns, v| namespace(ns, v).map(ConditionValue::Str),
        _ => |_, v| Ok(ConditionValue::Str(StrMatch::parse(v))),
    };
    let values = field(cx, &format!("{at}.values"), &c.values, &c.not_values, parse);
    Some(Cond { key, values })
}

/// Istio's attribute list for HTTP (`ValidateAttribute`, authz `model.New`).
fn condition_key(key: &str) -> Result<ConditionKey, String> {
    // `a[b]` with a non-empty `b` (`validateMapKey`).
    let map_key = |prefix: &str| -> Option<Result<&str, String>> {
        let rest = key.strip_prefix(prefix)?;
        Some(
            rest.strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .filter(|r| !r.is_empty())
                .ok_or_else(|| format!("bad key {key:?}: should have the form {prefix}[name]")),
        )
    };
    if let Some(name) = map_key("request.headers") {
        return Ok(ConditionKey::RequestHeader(name?.to_ascii_lowercase()));
    }
    if let Some(path) = map_key("request.auth.claims") {
        // Nested claims: `request.auth.claims[a][b]`.
        let parts: Vec<String> = path?.split("][").map(String::from).collect();
        if parts.iter().any(|p| p.is_empty() || p.contains(['[', ']'])) {
            return Err(format!("bad key {key:?}: claim names must not be empty"));
        }
        return Ok(ConditionKey::RequestClaim(parts));
    }
    Ok(match key {
        "source.ip" => ConditionKey::SourceIp,
        "remote.ip" => ConditionKey::RemoteIp,
        "source.namespace" => ConditionKey::SourceNamespace,
        "source.serviceAccount" => ConditionKey::SourceServiceAccount,
        "source.trustDomain" => ConditionKey::SourceTrustDomain,
        "source.principal" => ConditionKey::SourcePrincipal,
        "request.auth.principal" => ConditionKey::RequestPrincipal,
        "request.auth.audiences" => ConditionKey::RequestAudiences,
        "request.auth.presenter" => ConditionKey::RequestPresenter,
        "destination.ip" => ConditionKey::DestinationIp,
        "destination.port" => ConditionKey::DestinationPort,
        "connection.sni" => ConditionKey::ConnectionSni,
        k if k.starts_with("experimental.envoy.filters.") => {
            return Err(format!(
                "{k}: Envoy filter metadata is not supported by this waypoint"
            ))
        }
        "destination.namespace" => {
            return Err(format!(
                "{key}: replaced by the policy's metadata.namespace"
            ))
        }
        k if k.starts_with("destination.labels") => {
            return Err(format!("{k}: replaced by the workload selector"))
        }
        "destination.name" | "destination.user" => {
            return Err(format!("{key}: deprecated, only supported in v1alpha1"))
        }
        _ => return Err(format!("unknown attribute {key}")),
    })
}
