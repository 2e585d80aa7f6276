//! External authorizers for AuthorizationPolicy `CUSTOM`: the mesh config's
//! `extensionProviders` of type `envoyExtAuthzGrpc` and `envoyExtAuthzHttp`,
//! resolved to a Service of the snapshot, as istiod configures Envoy's
//! `ext_authz` filter from them (`pilot/pkg/security/authz/builder/extauthz.go`).
//!
//! A CUSTOM policy's rules only decide whether the authorizer is asked; its
//! answer decides. Asked first (before DENY and ALLOW), it can deny a request
//! the other policies would allow, never allow one they deny.

use crate::{ServiceIdx, StrMatch};
use serde::Serialize;
use std::time::Duration;

/// Istio's default `timeout` for both provider types.
pub const EXT_AUTHZ_TIMEOUT: Duration = Duration::from_secs(600);

/// The most of a request body the waypoint holds for a check: what it can
/// replay to the backend after reading it (Pingora's body buffer).
pub const EXT_AUTHZ_MAX_BODY: u32 = 64 * 1024;

/// One `extensionProviders` entry the waypoint can call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtAuthzProvider {
    pub name: String,
    pub protocol: ExtAuthzProtocol,
    /// The authorizer's Service (`service`), and its `port`.
    pub service: ServiceIdx,
    pub port: u16,
    /// The whole check; beyond it the check has failed.
    pub timeout: Duration,
    /// A failed check (no answer, a timeout, an HTTP 5xx) allows the request
    /// (or TCP connection) instead of refusing it.
    pub fail_open: bool,
    /// The status a failed check answers when it does not fail open (403).
    pub status_on_error: u16,
    /// `includeRequestBodyInCheck`.
    pub body: Option<BodyInCheck>,
    /// Routes are chosen after the authorizer's header changes; otherwise
    /// before them (Envoy's route cache), and the changes only travel upstream.
    pub clear_route_cache: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ExtAuthzProtocol {
    /// `envoy.service.auth.v3.Authorization/Check`.
    Grpc,
    /// Envoy's HTTP authorization service: a copy of the request's head.
    Http(HttpCheck),
}

/// The HTTP provider's request and response header rules. Patterns are
/// Istio's (`abc`, `abc*`, `*abc`; no lone `*`), matched against lower-case
/// header names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HttpCheck {
    /// Put before the request's path in the check's path.
    pub path_prefix: String,
    /// Request headers sent besides `Host`, `:method`, `:path` and
    /// `Content-Length` (`includeRequestHeadersInCheck`, or the deprecated
    /// `includeHeadersInCheck` when that is empty).
    pub request_headers: Vec<StrMatch>,
    /// Fixed headers added to every check, overriding the request's
    /// (`includeAdditionalHeadersInCheck`); names lower-case, sorted.
    pub additional_headers: Vec<(String, String)>,
    /// Authorizer headers set on the upstream request when it allows; empty:
    /// the request goes on unchanged.
    pub to_upstream_on_allow: Vec<StrMatch>,
    /// Authorizer headers returned to the client when it denies; empty: all of
    /// them but `Host`.
    pub to_downstream_on_deny: Vec<StrMatch>,
    /// Authorizer headers set on the response when it allows; empty: none.
    pub to_downstream_on_allow: Vec<StrMatch>,
}

/// How much of the request body goes with the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BodyInCheck {
    /// At most this many bytes are held ([`EXT_AUTHZ_MAX_BODY`] or less).
    pub max_bytes: u32,
    /// A longer body is sent cut at `max_bytes` (and marked so) instead of
    /// answered with 413.
    pub allow_partial: bool,
    /// gRPC: the body as bytes (`raw_body`) rather than text (`body`).
    pub pack_as_bytes: bool,
}
