//! `waypoint check`'s authorization section of a service: the policies that
//! judge its requests, waypoint-wide first, each rule in Istio's notation.

use std::fmt::Write;
use waypoint_ir::{
    AuthzAction, AuthzPolicy, AuthzRule, Condition, ConditionKey, ConditionValue, ExtAuthzProtocol,
    Field, PathPattern, PathSegment, Service, Snapshot, StrMatch,
};

pub fn section(out: &mut String, s: &Snapshot, svc: &Service) {
    if s.authz.is_empty() && svc.authz.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "  authorization (CUSTOM, then DENY, then ALLOW; AUDIT decides nothing):"
    );
    let wide = s.authz.iter().map(|p| (p, "waypoint-wide"));
    for (p, scope) in wide.chain(svc.authz.iter().map(|p| (p, "service"))) {
        policy(out, s, p, scope);
    }
}

fn policy(out: &mut String, s: &Snapshot, p: &AuthzPolicy, scope: &str) {
    let action = match &p.action {
        AuthzAction::Allow => "ALLOW".to_string(),
        AuthzAction::Deny => "DENY".to_string(),
        AuthzAction::Audit => "AUDIT".to_string(),
        AuthzAction::Custom { provider } => match s.ext_authz(provider) {
            Some(x) => format!(
                "CUSTOM provider {provider} ({} {}:{}, timeout {:?}, {})",
                match x.protocol {
                    ExtAuthzProtocol::Grpc => "gRPC",
                    ExtAuthzProtocol::Http(_) => "HTTP",
                },
                s.service(x.service).hostname,
                x.port,
                x.timeout,
                if x.fail_open {
                    "fails open".to_string()
                } else {
                    format!("fails closed with {}", x.status_on_error)
                }
            ),
            None => format!("CUSTOM provider {provider}"),
        },
    };
    let mut notes = String::new();
    if p.fail_closed {
        notes += ", fail-closed stand-in: the policy as written is refused";
    }
    if p.dry_run {
        notes += ", dry-run: reported, not enforced";
    }
    let _ = writeln!(out, "    {action} from {} ({scope}{notes})", p.source);
    if p.rules.is_empty() {
        let _ = writeln!(out, "      no rules: matches no request");
    }
    for (i, r) in p.rules.iter().enumerate() {
        let _ = writeln!(out, "      rule [{i}]{}", rule(r));
    }
}

fn rule(r: &AuthzRule) -> String {
    let mut parts = Vec::new();
    if !r.from.is_empty() {
        let from: Vec<String> = r
            .from
            .iter()
            .map(|s| {
                all(&[
                    field("principals", &s.principals, str_match),
                    field("requestPrincipals", &s.request_principals, str_match),
                    field("namespaces", &s.namespaces, str_match),
                    field("serviceAccounts", &s.service_accounts, |a| {
                        format!("{}/{}", a.namespace, a.name)
                    }),
                    field("trustDomains", &s.trust_domains, str_match),
                    field("ipBlocks", &s.ip_blocks, |c| {
                        format!("{}/{}", c.addr, c.prefix)
                    }),
                    field("remoteIpBlocks", &s.remote_ip_blocks, |c| {
                        format!("{}/{}", c.addr, c.prefix)
                    }),
                ])
            })
            .collect();
        parts.push(format!("from {}", from.join("\n             | ")));
    }
    if !r.to.is_empty() {
        let to: Vec<String> =
            r.to.iter()
                .map(|o| {
                    all(&[
                        field("hosts", &o.hosts, str_match),
                        field("ports", &o.ports, |p| p.to_string()),
                        field("methods", &o.methods, str_match),
                        field("paths", &o.paths, path),
                    ])
                })
                .collect();
        parts.push(format!("to {}", to.join("\n           | ")));
    }
    if !r.when.is_empty() {
        let when: Vec<String> = r.when.iter().map(condition).collect();
        parts.push(format!("when {}", when.join("\n           and ")));
    }
    if parts.is_empty() {
        " any request".into()
    } else {
        // One line each for from, to and when, which are ANDed.
        format!("\n        {}", parts.join("\n        "))
    }
}

/// `name=[a, b]` and `name!=[c]`, ANDed.
fn field<T>(name: &str, f: &Field<T>, show: impl Fn(&T) -> String) -> String {
    let list = |v: &[T]| v.iter().map(&show).collect::<Vec<_>>().join(", ");
    let mut out = Vec::new();
    if !f.any_of.is_empty() {
        out.push(format!("{name}=[{}]", list(&f.any_of)));
    }
    if !f.none_of.is_empty() {
        out.push(format!("{name}!=[{}]", list(&f.none_of)));
    }
    out.join(" and ")
}

fn all(fields: &[String]) -> String {
    let set: Vec<&str> = fields
        .iter()
        .filter(|f| !f.is_empty())
        .map(String::as_str)
        .collect();
    format!("({})", set.join(" and "))
}

fn str_match(m: &StrMatch) -> String {
    match m {
        StrMatch::Exact(v) => v.clone(),
        StrMatch::Prefix(v) => format!("{v}*"),
        StrMatch::Suffix(v) => format!("*{v}"),
        StrMatch::Any => "*".into(),
    }
}

fn path(p: &PathPattern) -> String {
    match p {
        PathPattern::Str(m) => str_match(m),
        PathPattern::Template(segments) => {
            let s: Vec<&str> = segments
                .iter()
                .map(|s| match s {
                    PathSegment::Literal(l) => l.as_str(),
                    PathSegment::One => "{*}",
                    PathSegment::Rest => "{**}",
                })
                .collect();
            format!("/{} (template)", s.join("/"))
        }
    }
}

fn condition(c: &Condition) -> String {
    let key = match &c.key {
        ConditionKey::RequestHeader(h) => format!("request.headers[{h}]"),
        ConditionKey::SourceIp => "source.ip".into(),
        ConditionKey::RemoteIp => "remote.ip".into(),
        ConditionKey::SourceNamespace => "source.namespace".into(),
        ConditionKey::SourceServiceAccount => "source.serviceAccount".into(),
        ConditionKey::SourceTrustDomain => "source.trustDomain".into(),
        ConditionKey::SourcePrincipal => "source.principal".into(),
        ConditionKey::RequestPrincipal => "request.auth.principal".into(),
        ConditionKey::RequestAudiences => "request.auth.audiences".into(),
        ConditionKey::RequestPresenter => "request.auth.presenter".into(),
        ConditionKey::RequestClaim(path) => format!("request.auth.claims[{}]", path.join("][")),
        ConditionKey::DestinationIp => "destination.ip".into(),
        ConditionKey::DestinationPort => "destination.port".into(),
        ConditionKey::ConnectionSni => "connection.sni".into(),
    };
    field(&key, &c.values, |v| match v {
        ConditionValue::Str(m) => str_match(m),
        ConditionValue::Ip(c) => format!("{}/{}", c.addr, c.prefix),
        ConditionValue::Port(p) => p.to_string(),
        ConditionValue::ServiceAccount(a) => format!("{}/{}", a.namespace, a.name),
    })
}
