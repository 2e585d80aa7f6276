//! Istio `RequestAuthentication` rules, resolved for the data path (Istio's
//! `JWTRule`, enforced as the Envoy `jwt_authn` filter istiod configures
//! from it, `pilot/pkg/security/authn/policy_applier.go`):
//!
//! - the rules of every RequestAuthentication that applies to a request are
//!   pooled; a request without a token in any of their locations passes,
//!   unauthenticated;
//! - a token that is present must verify against a rule with its `iss` that
//!   reads that location: an unknown issuer, a bad signature, an expired
//!   token or a foreign audience is refused (401; 403 for the audience);
//! - a verified token gives `request.auth.*` to AuthorizationPolicy.

use crate::ResourceRef;
use serde::Serialize;
use std::time::Duration;

/// One `jwtRules` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JwtRule {
    pub source: ResourceRef,
    /// Compared with the token's `iss`, exactly. Empty only in a fail-closed
    /// stand-in, where it stands for every issuer.
    pub issuer: String,
    /// Any one of them in the token's `aud` admits it; empty admits any
    /// audience (Envoy's `CheckAudience` with no audiences).
    pub audiences: Vec<String>,
    pub jwks: JwksSource,
    /// Where tokens are read, in order. Never empty: without `fromHeaders`,
    /// `fromParams` and `fromCookies` it is `Authorization: Bearer` and the
    /// `access_token` parameter, Envoy's defaults.
    pub locations: Vec<TokenLocation>,
    pub output_payload_to_header: Option<String>,
    /// `(header, claim)`: the claim (a `.`-separated path) copied to the
    /// header; string, number and bool claims only.
    pub output_claim_to_headers: Vec<(String, String)>,
    pub forward_original_token: bool,
    /// The JWKS fetch's timeout (Istio's default 5 s).
    pub timeout: Duration,
    /// Claims split at spaces before authorization compares them: `scope`,
    /// `permission` and `spaceDelimitedClaims`.
    pub space_delimited_claims: Vec<String>,
    /// The resource could not be enforced as written; this stand-in refuses
    /// every token in its locations (and, with an empty issuer, of any
    /// issuer). A diagnostic says why.
    pub fail_closed: bool,
}

/// Where the public keys come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum JwksSource {
    /// `jwks`: the key set itself.
    Inline(String),
    /// `jwksUri`, fetched by the waypoint.
    Uri(String),
    /// Neither: OpenID discovery from `<issuer>/.well-known/openid-configuration`.
    Discover,
    /// No key verifies anything (fail-closed stand-ins).
    RejectAll,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum TokenLocation {
    /// Header name lower-case; the value must start with `prefix`, which is
    /// stripped.
    Header {
        name: String,
        prefix: String,
    },
    Param(String),
    Cookie(String),
}

/// Istio's default `timeout`.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Envoy's default locations when a rule names none.
pub fn default_locations() -> Vec<TokenLocation> {
    vec![
        TokenLocation::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into(),
        },
        TokenLocation::Param("access_token".into()),
    ]
}
