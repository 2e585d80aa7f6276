//! AuthorizationPolicy evaluation, in Istio's order: CUSTOM, then DENY, then
//! ALLOW (see `waypoint_ir::AuthzPolicy` for how a policy matches). AUDIT
//! policies decide nothing; the ones that match are reported.

use std::net::IpAddr;
use waypoint_ir::{
    AuthzAction, AuthzPolicy, AuthzRule, Condition, ConditionKey, ConditionValue, OperationMatch,
    PathPattern, PathSegment, ResourceRef, SourceMatch, StrMatch,
};

/// What a request offers to be judged on. Strings are as Istio compares them.
#[derive(Debug, Clone, Copy)]
pub struct AuthzRequest<'a> {
    /// The peer's identity as `cluster.local/ns/x/sa/y` (no `spiffe://`),
    /// and its parts.
    pub principal: Option<&'a str>,
    pub trust_domain: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub service_account: Option<&'a str>,
    /// The connection's peer.
    pub source_ip: Option<IpAddr>,
    /// What a verified JWT says (RequestAuthentication); `None` when the
    /// request carries none.
    pub auth: Option<&'a crate::jwt::RequestAuth>,
    /// The request's host (`:authority`/`Host`), as sent.
    pub host: &'a str,
    pub method: &'a str,
    /// Normalised, without the query.
    pub path: &'a str,
    pub headers: &'a http::HeaderMap,
    pub destination_ip: Option<IpAddr>,
    pub destination_port: u16,
    /// An HTTP request; `false` for a TCP connection, which has no method,
    /// path, host, headers or JWT: rules that ask for them match as Istio
    /// builds TCP policies (`Cx::http_only`).
    pub http: bool,
}

/// The outcome, naming the policy that decided a denial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'p> {
    Allow,
    /// Denied by a matching DENY policy (or a CUSTOM one whose service has two
    /// providers), through its rule `rule`.
    DeniedBy {
        policy: &'p ResourceRef,
        rule: usize,
    },
    /// ALLOW policies apply and none matched.
    NotAllowed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement<'p> {
    pub verdict: Verdict<'p>,
    /// AUDIT policies that matched.
    pub audited: Vec<&'p ResourceRef>,
    /// The ALLOW policy that let the request through, if one did.
    pub allowed_by: Option<&'p ResourceRef>,
    /// A CUSTOM policy matched: its provider must allow the request before
    /// `verdict` counts (the authorizer is asked first, as Envoy's ext_authz
    /// filter runs before RBAC).
    pub ask: Option<Ask<'p>>,
    /// What the dry-run policies would have decided, per action that has
    /// any (Envoy's shadow rules: `istio_dry_run_allow_*`, `..._deny_*`).
    pub dry_run: Vec<Shadow<'p>>,
}

/// A dry-run verdict: the action judged, whether it would have denied, and
/// the policy that decided it (the matching DENY, or the matching ALLOW).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shadow<'p> {
    pub action: &'static str,
    pub denied: bool,
    pub policy: Option<&'p ResourceRef>,
}

/// The external authorizer to ask, and the CUSTOM policy that asks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask<'p> {
    pub policy: &'p ResourceRef,
    pub provider: &'p str,
}

/// Judges `req` by `policies` (the waypoint's and the service's together).
pub fn evaluate<'p, I>(policies: I, req: &AuthzRequest<'_>) -> Judgement<'p>
where
    I: IntoIterator<Item = &'p AuthzPolicy>,
    I::IntoIter: Clone,
{
    let all = policies.into_iter();
    let dry = all.clone().filter(|p| p.dry_run);
    let dry_run = match dry.clone().next() {
        Some(_) => shadows(dry, req),
        None => Vec::new(),
    };
    let policies = all.filter(|p| !p.dry_run);
    let matching = |action: fn(&AuthzAction) -> bool| {
        policies
            .clone()
            .filter(move |p| action(&p.action) && matches(p, req))
    };
    let audited = matching(|a| *a == AuthzAction::Audit)
        .map(|p| &p.source)
        .collect();
    let provider = |p: &'p AuthzPolicy| match &p.action {
        AuthzAction::Custom { provider } => Some(provider.as_str()),
        _ => None,
    };
    let custom = matching(|a| matches!(a, AuthzAction::Custom { .. })).next();
    // Only when one matched: are all the CUSTOM policies' providers its own?
    let one_provider = custom
        .and_then(provider)
        .is_none_or(|asked| policies.clone().filter_map(provider).all(|p| p == asked));
    // Two providers for one service: istiod denies what their rules match.
    let ask = custom.filter(|_| one_provider).map(|p| Ask {
        policy: &p.source,
        provider: provider(p).unwrap_or_default(),
    });
    let denied = custom
        .filter(|_| !one_provider)
        .or_else(|| matching(|a| *a == AuthzAction::Deny).next());
    let verdict = |verdict, allowed_by| Judgement {
        verdict,
        audited,
        allowed_by,
        ask,
        dry_run,
    };
    if let Some(p) = denied {
        let rule = matching_rule(p, req).unwrap_or_default();
        return verdict(
            Verdict::DeniedBy {
                policy: &p.source,
                rule,
            },
            None,
        );
    }
    let mut allows = policies
        .filter(|p| p.action == AuthzAction::Allow)
        .peekable();
    if allows.peek().is_none() {
        return verdict(Verdict::Allow, None);
    }
    match allows.find(|p| matches(p, req)) {
        Some(p) => verdict(Verdict::Allow, Some(&p.source)),
        None => verdict(Verdict::NotAllowed, None),
    }
}

/// The dry-run policies' verdicts, as Envoy's shadow engines give them: the
/// DENY ones deny when one matches; the ALLOW ones deny when none does.
fn shadows<'p>(
    dry: impl Iterator<Item = &'p AuthzPolicy> + Clone,
    req: &AuthzRequest<'_>,
) -> Vec<Shadow<'p>> {
    let mut out = Vec::new();
    for (action, name) in [(AuthzAction::Deny, "deny"), (AuthzAction::Allow, "allow")] {
        let mut of_action = dry.clone().filter(|p| p.action == action).peekable();
        if of_action.peek().is_none() {
            continue;
        }
        let hit = of_action.find(|p| matches(p, req)).map(|p| &p.source);
        let denied = (action == AuthzAction::Deny) == hit.is_some();
        out.push(Shadow {
            action: name,
            denied,
            policy: hit,
        });
    }
    out
}

/// A policy matches when one of its rules does; one without rules never does.
pub fn matches(policy: &AuthzPolicy, req: &AuthzRequest<'_>) -> bool {
    matching_rule(policy, req).is_some()
}

/// The first of the policy's rules that matches.
fn matching_rule(policy: &AuthzPolicy, req: &AuthzRequest<'_>) -> Option<usize> {
    let denies = matches!(
        policy.action,
        AuthzAction::Deny | AuthzAction::Custom { .. }
    );
    let cx = Cx { req, denies };
    policy.rules.iter().position(|r| rule(r, &cx))
}

/// A request and the action of the policy judging it.
struct Cx<'r, 'a> {
    req: &'r AuthzRequest<'a>,
    /// A DENY (or CUSTOM) policy: on TCP its HTTP-only constraints are dropped.
    denies: bool,
}

impl Cx<'_, '_> {
    /// A constraint only HTTP has, on a connection that may not be HTTP. As
    /// Istio builds TCP policies: an ALLOW (or AUDIT) rule with one never
    /// matches, and a DENY rule's are dropped, so it denies more, not less.
    fn http_only(&self, constrains: bool, eval: impl FnOnce() -> bool) -> bool {
        if self.req.http || !constrains {
            eval()
        } else {
            self.denies
        }
    }
}

fn rule(r: &AuthzRule, cx: &Cx<'_, '_>) -> bool {
    (r.from.is_empty() || r.from.iter().any(|s| source(s, cx)))
        && (r.to.is_empty() || r.to.iter().any(|o| operation(o, cx)))
        && r.when.iter().all(|c| condition(c, cx))
}

/// A string field against a value that may be absent: an absent value
/// matches no value, so it fails `any_of` and passes `none_of`.
fn str_field(f: &waypoint_ir::Field<StrMatch>, v: Option<&str>) -> bool {
    f.accepts(|m| v.is_some_and(|v| m.matches(v)))
}

fn source(s: &SourceMatch, cx: &Cx<'_, '_>) -> bool {
    let req = cx.req;
    let ip = |f: &waypoint_ir::Field<waypoint_ir::Cidr>| {
        f.accepts(|c| req.source_ip.is_some_and(|ip| c.contains(ip)))
    };
    str_field(&s.principals, req.principal)
        && str_field(&s.namespaces, req.namespace)
        && s.service_accounts.accepts(|sa| service_account(sa, req))
        && str_field(&s.trust_domains, req.trust_domain)
        && cx.http_only(!s.request_principals.is_empty(), || {
            str_field(
                &s.request_principals,
                req.auth.map(|a| a.principal.as_str()),
            )
        })
        && ip(&s.ip_blocks)
        && ip(&s.remote_ip_blocks)
}

fn operation(o: &OperationMatch, cx: &Cx<'_, '_>) -> bool {
    let req = cx.req;
    cx.http_only(!o.hosts.is_empty(), || {
        o.hosts.accepts(|m| host(m, req.host))
    }) && o.ports.accepts(|p| *p == req.destination_port)
        && cx.http_only(!o.methods.is_empty(), || {
            str_field(&o.methods, Some(req.method))
        })
        && cx.http_only(!o.paths.is_empty(), || {
            o.paths.accepts(|p| path(p, req.path))
        })
}

/// Hosts compare case-insensitively, and a value without a port also matches
/// the host with any port, as Istio builds the match. No allocation: this runs
/// for every rule tried on every request.
fn host(m: &StrMatch, host: &str) -> bool {
    let one = |h: &str| match m {
        StrMatch::Exact(e) => h.eq_ignore_ascii_case(e),
        StrMatch::Prefix(p) => h
            .get(..p.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(p)),
        StrMatch::Suffix(s) => h
            .len()
            .checked_sub(s.len())
            .and_then(|at| h.get(at..))
            .is_some_and(|tail| tail.eq_ignore_ascii_case(s)),
        StrMatch::Any => true,
    };
    let bare = waypoint_ir::split_host_port(host).0;
    one(host) || (bare.len() != host.len() && one(bare))
}

fn path(p: &PathPattern, path: &str) -> bool {
    match p {
        PathPattern::Str(m) => m.matches(path),
        PathPattern::Template(segments) => template(segments, path),
    }
}

/// `{*}` is one whole non-empty segment; `{**}` is one or more `/`-separated
/// parts that may be empty, which is Envoy's URI template `**` (any text after
/// the `/` before it): `/api/{**}` matches `/api/` and `/api/a/b`, not `/api`.
/// Literal segments may follow `{**}`, as Istio allows.
fn template(pattern: &[PathSegment], path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    segments(pattern, &parts)
}

fn segments(pattern: &[PathSegment], parts: &[&str]) -> bool {
    match pattern.split_first() {
        None => parts.is_empty(),
        Some((PathSegment::Literal(l), more)) => {
            parts.first() == Some(&l.as_str()) && segments(more, &parts[1..])
        }
        Some((PathSegment::One, more)) => {
            parts.first().is_some_and(|p| !p.is_empty()) && segments(more, &parts[1..])
        }
        Some((PathSegment::Rest, more)) => (1..=parts.len()).any(|k| segments(more, &parts[k..])),
    }
}

fn condition(c: &Condition, cx: &Cx<'_, '_>) -> bool {
    let req = cx.req;
    let http_only = matches!(
        c.key,
        ConditionKey::RequestHeader(_)
            | ConditionKey::RequestPrincipal
            | ConditionKey::RequestAudiences
            | ConditionKey::RequestPresenter
            | ConditionKey::RequestClaim(_)
    );
    cx.http_only(http_only, || condition_holds(c, req))
}

fn condition_holds(c: &Condition, req: &AuthzRequest<'_>) -> bool {
    let value = |v: &ConditionValue| match (&c.key, v) {
        (ConditionKey::RequestHeader(name), ConditionValue::Str(m)) => {
            header(req.headers, name).is_some_and(|h| m.matches(&h))
        }
        (ConditionKey::SourceIp | ConditionKey::RemoteIp, ConditionValue::Ip(c)) => {
            req.source_ip.is_some_and(|ip| c.contains(ip))
        }
        (ConditionKey::DestinationIp, ConditionValue::Ip(c)) => {
            req.destination_ip.is_some_and(|ip| c.contains(ip))
        }
        (ConditionKey::DestinationPort, ConditionValue::Port(p)) => *p == req.destination_port,
        (ConditionKey::SourceNamespace, ConditionValue::Str(m)) => {
            req.namespace.is_some_and(|n| m.matches(n))
        }
        (ConditionKey::SourceServiceAccount, ConditionValue::ServiceAccount(sa)) => {
            service_account(sa, req)
        }
        (ConditionKey::SourceTrustDomain, ConditionValue::Str(m)) => {
            req.trust_domain.is_some_and(|t| m.matches(t))
        }
        (ConditionKey::SourcePrincipal, ConditionValue::Str(m)) => {
            req.principal.is_some_and(|p| m.matches(p))
        }
        (ConditionKey::RequestPrincipal, ConditionValue::Str(m)) => {
            req.auth.is_some_and(|a| m.matches(&a.principal))
        }
        // A list claim matches when one of its elements does (Istio's
        // `MetadataListValueMatcher`, string or list).
        (ConditionKey::RequestAudiences, ConditionValue::Str(m)) => req
            .auth
            .is_some_and(|a| a.audiences.iter().any(|v| m.matches(v))),
        (ConditionKey::RequestPresenter, ConditionValue::Str(m)) => req
            .auth
            .and_then(|a| a.presenter.as_deref())
            .is_some_and(|p| m.matches(p)),
        (ConditionKey::RequestClaim(path), ConditionValue::Str(m)) => req
            .auth
            .is_some_and(|a| a.claim(path).into_iter().any(|v| m.matches(v))),
        // No SNI inside a tunnel: nothing to match.
        _ => false,
    };
    c.values.accepts(value)
}

/// Istio's `serviceAccounts`: the peer's namespace and account, in any trust
/// domain.
fn service_account(sa: &waypoint_ir::ServiceAccount, req: &AuthzRequest<'_>) -> bool {
    req.namespace == Some(sa.namespace.as_str()) && req.service_account == Some(sa.name.as_str())
}

/// A header's values joined with `,`, as Istio compares repeated headers.
fn header(headers: &http::HeaderMap, name: &str) -> Option<String> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    let joined: Vec<&str> = values.filter_map(|v| v.to_str().ok()).collect();
    Some(joined.join(","))
}

#[cfg(test)]
mod tests;
