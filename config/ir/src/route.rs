//! Routes: matches, filters and actions, in the order the data path evaluates them.

use crate::{ResourceRef, ServiceIdx, SharedDefault, Sparse};
use serde::{Serialize, Serializer};
use std::fmt;

/// One entry of a service's ordered route table.
///
/// A VirtualService `http[i]` becomes one route with all its matches (any may
/// match). An HTTPRoute rule becomes one route per match, so that sorting routes by
/// Gateway API precedence orders matches, not rules.
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    /// Stable, human-readable: `VirtualService default/reviews http[0]`.
    pub name: String,
    pub origin: RouteOrigin,
    /// Restricts the route to one service port (HTTPRoute `parentRefs[].port`).
    pub port: Option<u16>,
    /// Empty means "matches every request".
    pub matches: Vec<RequestMatch>,
    /// Usually empty, so out of line (see [`Sparse`]).
    pub filters: Sparse<RouteFilters>,
    pub action: RouteAction,
    /// Usually Istio's defaults, so out of line (see [`Sparse`]).
    pub policy: Sparse<crate::RoutePolicy>,
}

/// Where a route came from, for `check`, the config dump and diagnostics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteOrigin {
    pub resource: Option<ResourceRef>,
    /// Field path inside the resource, e.g. `spec.rules[1].matches[0]`.
    pub field: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestMatch {
    pub path: Option<PathMatch>,
    pub headers: Vec<HeaderMatch>,
    pub query: Vec<QueryMatch>,
    pub method: Option<Method>,
    /// VirtualService `match.port`.
    pub port: Option<u16>,
    /// VirtualService `ignoreUriCase`: the path compares case-insensitively.
    pub ignore_uri_case: bool,
}

#[derive(Debug, Clone, Serialize)]
pub enum PathMatch {
    Exact(String),
    /// Plain string prefix (VirtualService `uri.prefix`).
    Prefix(String),
    /// Gateway API `PathPrefix`: matches whole path segments, so `/foo` matches
    /// `/foo` and `/foo/bar` but not `/foobar`. Stored without a trailing slash.
    SegmentPrefix(String),
    Regex(Pattern),
}

#[derive(Debug, Clone, Serialize)]
pub struct HeaderMatch {
    /// Lower-case.
    pub name: String,
    pub value: StringMatch,
    /// VirtualService `withoutHeaders`: the request matches when this does not.
    pub invert: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueryMatch {
    pub name: String,
    pub value: StringMatch,
}

#[derive(Debug, Clone, Serialize)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Regex(Pattern),
    /// Present with any value (VirtualService `{}` or `present: true`).
    Present,
}

/// Upper-case HTTP method name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Method(pub String);

/// A regex compiled once at translation and anchored at both ends: Envoy, and so
/// Istio and Gateway API on Envoy, match the whole value (RE2 full match).
#[derive(Clone)]
pub struct Pattern {
    pub source: String,
    pub regex: regex::Regex,
}

impl Pattern {
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        Ok(Pattern {
            source: source.to_string(),
            regex: regex::Regex::new(&format!("^(?:{source})$"))?,
        })
    }

    pub fn is_match(&self, s: &str) -> bool {
        self.regex.is_match(s)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/", self.source)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RouteFilters {
    pub request_headers: HeaderModifier,
    pub response_headers: HeaderModifier,
    pub rewrite: Option<UrlRewrite>,
}

impl SharedDefault for RouteFilters {
    fn shared_default() -> &'static Self {
        const EMPTY: HeaderModifier = HeaderModifier {
            set: Vec::new(),
            add: Vec::new(),
            remove: Vec::new(),
        };
        static NONE: RouteFilters = RouteFilters {
            request_headers: EMPTY,
            response_headers: EMPTY,
            rewrite: None,
        };
        &NONE
    }
}

/// Header edits. Applied as set, then add, then remove, the order Envoy uses for
/// Gateway API's RequestHeaderModifier and Istio's `headers` operations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HeaderModifier {
    /// Replace the header's value (or add it when absent).
    pub set: Vec<(String, String)>,
    /// Append a value, keeping existing ones.
    pub add: Vec<(String, String)>,
    /// Lower-case names to remove.
    pub remove: Vec<String>,
}

impl HeaderModifier {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UrlRewrite {
    pub hostname: Option<String>,
    pub path: Option<PathModifier>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PathModifier {
    ReplaceFullPath(String),
    /// Replaces the part of the path the route's prefix (or exact) match matched.
    ReplacePrefixMatch(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub path: Option<PathModifier>,
    pub port: Option<u16>,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
}

#[derive(Debug, Clone, Serialize)]
pub enum RouteAction {
    /// Weighted choice among backends; an empty or all-zero list answers 500
    /// (Gateway API), as does picking an invalid backend.
    Forward(Vec<BackendRef>),
    /// Boxed: a redirect is rare and several times the size of the other variants.
    Redirect(Box<Redirect>),
    DirectResponse {
        status: u16,
        body: Option<String>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct BackendRef {
    pub target: BackendTarget,
    pub weight: u32,
    /// Gateway API `backendRefs[].filters`: edits for requests sent to this
    /// backend only. Boxed and usually `None`, so a backend stays two words and
    /// the common case costs one null check.
    pub filters: Option<Box<BackendFilters>>,
}

impl BackendRef {
    pub fn new(target: BackendTarget, weight: u32) -> Self {
        BackendRef {
            target,
            weight,
            filters: None,
        }
    }
}

/// A backend's own filters. The adapter applies the backend's header edits
/// before the rule's, Envoy's order for weighted-cluster and route headers (so
/// the rule wins where both `set` one name); a backend's rewrite replaces the
/// rule's; a backend's redirect answers once the split picked it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BackendFilters {
    pub request_headers: HeaderModifier,
    pub response_headers: HeaderModifier,
    pub rewrite: Option<UrlRewrite>,
    pub redirect: Option<Redirect>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum BackendTarget {
    Service {
        service: ServiceIdx,
        /// `None`: the service port the request arrived on (a VirtualService
        /// destination without `port`).
        port: Option<u16>,
        /// Index into the service's `subsets`.
        subset: Option<usize>,
    },
    /// A backend that did not resolve (unknown service, port or subset). Picking it
    /// answers `status` without contacting anything; the reason names the cause.
    Invalid { status: u16, reason: String },
}
