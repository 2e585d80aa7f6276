//! Istio `AuthorizationPolicy`, resolved for the data path: which policies
//! apply to a request, and the plain matchers of their rules. The semantics are
//! Istio's (istio.io "Authorization Policy" reference):
//!
//! - a policy's `rules` are ORed; within a rule `from`, `to` and `when` are
//!   ANDed, the entries of `from` (or of `to`) ORed, the fields of one entry
//!   ANDed, the values of one field ORed, and a `not*` field matches when none
//!   of its values does;
//! - a rule with nothing in it (`{}`) matches every request; a policy with no
//!   rules matches none (so an ALLOW policy without rules allows nothing);
//! - CUSTOM, then DENY, then ALLOW: any matching DENY denies; with no ALLOW
//!   policy the request is allowed, else only if one ALLOW policy matches.
//!   AUDIT decides nothing.

use crate::ResourceRef;
use serde::Serialize;
use std::net::IpAddr;

/// One policy, as attached to a service or to the whole waypoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuthzPolicy {
    pub source: ResourceRef,
    pub action: AuthzAction,
    pub rules: Vec<AuthzRule>,
    /// The resource could not be enforced as written, and this is its
    /// fail-closed stand-in (a DENY of every request, or an ALLOW of none; a
    /// CUSTOM policy a DENY of what its rules match). A diagnostic says why.
    pub fail_closed: bool,
    /// `istio.io/dry-run`: judged and reported, never enforced (ALLOW and
    /// DENY only).
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum AuthzAction {
    Allow,
    Deny,
    Audit,
    /// An external authorizer from the mesh config's `extensionProviders`.
    Custom {
        provider: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AuthzRule {
    /// ORed; empty: any source.
    pub from: Vec<SourceMatch>,
    /// ORed; empty: any operation.
    pub to: Vec<OperationMatch>,
    /// ANDed; empty: no condition.
    pub when: Vec<Condition>,
}

/// Values that match (any of `any_of`, when it is not empty) and values that
/// must not (none of `none_of`). Both empty: no constraint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Field<T> {
    pub any_of: Vec<T>,
    pub none_of: Vec<T>,
}

impl<T> Default for Field<T> {
    fn default() -> Self {
        Field {
            any_of: Vec::new(),
            none_of: Vec::new(),
        }
    }
}

impl<T> Field<T> {
    pub fn is_empty(&self) -> bool {
        self.any_of.is_empty() && self.none_of.is_empty()
    }

    /// Whether `matches` accepts the request: one of `any_of` matches (or
    /// there are none) and none of `none_of` does.
    pub fn accepts(&self, matches: impl Fn(&T) -> bool) -> bool {
        (self.any_of.is_empty() || self.any_of.iter().any(&matches))
            && !self.none_of.iter().any(&matches)
    }
}

/// `from.source`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SourceMatch {
    /// The peer's SPIFFE identity without `spiffe://`: `cluster.local/ns/x/sa/y`.
    pub principals: Field<StrMatch>,
    pub request_principals: Field<StrMatch>,
    pub namespaces: Field<StrMatch>,
    /// `serviceAccounts`: the peer identity's namespace and service account,
    /// whatever its trust domain.
    pub service_accounts: Field<ServiceAccount>,
    /// `trustDomains`: the peer identity's trust domain.
    pub trust_domains: Field<StrMatch>,
    /// The connection's peer (the client's ztunnel or the client).
    pub ip_blocks: Field<Cidr>,
    /// The original client (X-Forwarded-For aware in Envoy; here the same
    /// peer, as the waypoint trusts no forwarding header).
    pub remote_ip_blocks: Field<Cidr>,
}

/// A `serviceAccounts` value: `ns/sa`, or `sa` in the policy's namespace
/// (resolved here). Istio matches it against the peer's SPIFFE identity as
/// `spiffe://<any trust domain>/ns/<ns>/sa/<sa>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
}

/// `to.operation`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OperationMatch {
    /// Compared case-insensitively with the request's host (without port when
    /// the value has none).
    pub hosts: Field<StrMatch>,
    pub ports: Field<u16>,
    pub methods: Field<StrMatch>,
    /// Compared with the normalised path, without its query.
    pub paths: Field<PathPattern>,
}

/// Istio's string match: exact, `prefix*`, `*suffix`, or `*` (any value,
/// present).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum StrMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Any,
}

impl StrMatch {
    /// Reads Istio's notation. A leading `*` is tested first, as Istio's
    /// `StringMatcherWithPrefix` does (`*a*` is the suffix `a*`).
    pub fn parse(s: &str) -> StrMatch {
        if s == "*" {
            StrMatch::Any
        } else if let Some(p) = s.strip_prefix('*') {
            StrMatch::Suffix(p.to_string())
        } else if let Some(p) = s.strip_suffix('*') {
            StrMatch::Prefix(p.to_string())
        } else {
            StrMatch::Exact(s.to_string())
        }
    }

    pub fn matches(&self, v: &str) -> bool {
        match self {
            StrMatch::Exact(e) => v == e,
            StrMatch::Prefix(p) => v.starts_with(p.as_str()),
            StrMatch::Suffix(p) => v.ends_with(p.as_str()),
            StrMatch::Any => true,
        }
    }
}

/// A `paths` value: Istio's string match, or an Envoy URI template with `{*}`
/// (one segment) and `{**}` (zero or more; the last operator, though literal
/// segments may follow it). A template's segments are the path's after its
/// leading `/`, split at `/`: a trailing `/` leaves a final empty literal,
/// which matters (`/foo/{**}/` does not match `/foo/bar`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PathPattern {
    Str(StrMatch),
    Template(Vec<PathSegment>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PathSegment {
    Literal(String),
    /// `{*}`: exactly one non-empty segment.
    One,
    /// `{**}`: the rest of the path, zero or more segments (Envoy's URI
    /// template semantics).
    Rest,
}

/// An IP network (`10.0.0.0/8`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// A `when` condition: the key's value must satisfy `values`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Condition {
    pub key: ConditionKey,
    pub values: Field<ConditionValue>,
}

/// The attributes Istio lists for `when` on HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ConditionKey {
    /// `request.headers[name]`, name lower-case.
    RequestHeader(String),
    SourceIp,
    RemoteIp,
    SourceNamespace,
    /// `source.serviceAccount`; values are [`ConditionValue::ServiceAccount`].
    SourceServiceAccount,
    /// `source.trustDomain`.
    SourceTrustDomain,
    SourcePrincipal,
    RequestPrincipal,
    /// `request.auth.audiences`.
    RequestAudiences,
    /// `request.auth.presenter`.
    RequestPresenter,
    /// `request.auth.claims[a][b]...`: the claim's path.
    RequestClaim(Vec<String>),
    DestinationIp,
    DestinationPort,
    /// `connection.sni`.
    ConnectionSni,
}

/// What a condition's value is compared as: a string match, or an IP block
/// for the IP keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ConditionValue {
    Str(StrMatch),
    Ip(Cidr),
    Port(u16),
    ServiceAccount(ServiceAccount),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_string_matches() {
        assert!(StrMatch::parse("*").matches("anything"));
        assert!(StrMatch::parse("/api/*").matches("/api/x"));
        assert!(!StrMatch::parse("/api/*").matches("/ap"));
        assert!(StrMatch::parse("*.example.com").matches("a.example.com"));
        assert!(StrMatch::parse("GET").matches("GET"));
        assert!(!StrMatch::parse("GET").matches("get"));
        assert_eq!(StrMatch::parse("*a*"), StrMatch::Suffix("a*".into()));
    }

    #[test]
    fn cidrs_contain_their_addresses_only() {
        let net = Cidr {
            addr: "10.1.0.0".parse().unwrap(),
            prefix: 16,
        };
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let all = Cidr {
            addr: "0.0.0.0".parse().unwrap(),
            prefix: 0,
        };
        assert!(all.contains("192.168.1.1".parse().unwrap()));
    }

    #[test]
    fn fields_or_their_values_and_exclude_their_nots() {
        let f = Field {
            any_of: vec![1, 2],
            none_of: vec![2],
        };
        assert!(f.accepts(|v| *v == 1));
        assert!(!f.accepts(|v| *v == 2));
        assert!(!f.accepts(|v| *v == 3));
        assert!(Field::<u8>::default().accepts(|_| false));
    }
}
