//! `RequestAuthentication` (`security.istio.io` v1, v1beta1).
//!
//! As for AuthorizationPolicy, the document keeps its `spec` as JSON so a
//! resource that does not parse is still translated, into its fail-closed
//! stand-in, rather than dropped by the parser.

use super::authorization_policy::TargetRef;
use serde::Deserialize;

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct RequestAuthenticationDoc {
    pub spec: serde_json::Value,
}

// Unknown fields are errors: a location or check this waypoint does not know
// is a token it would not verify.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RequestAuthenticationSpec {
    pub selector: Option<serde_json::Value>,
    pub target_ref: Option<TargetRef>,
    pub target_refs: Vec<TargetRef>,
    pub jwt_rules: Vec<Option<JwtRuleSpec>>,
}

/// What decides where a resource applies, read leniently when the whole spec
/// cannot be.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct SpecHead {
    pub selector: Option<serde_json::Value>,
    pub target_ref: Option<TargetRef>,
    pub target_refs: Vec<TargetRef>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct JwtRuleSpec {
    pub issuer: String,
    pub audiences: Vec<String>,
    /// The CRD's `altName`: `jwks_uri` is accepted too.
    #[serde(alias = "jwks_uri")]
    pub jwks_uri: String,
    pub jwks: String,
    pub from_headers: Vec<Option<JwtHeader>>,
    pub from_params: Vec<String>,
    pub from_cookies: Vec<String>,
    pub output_payload_to_header: String,
    pub forward_original_token: bool,
    pub output_claim_to_headers: Vec<Option<ClaimToHeader>>,
    /// Protobuf JSON duration (`5s`).
    pub timeout: Option<String>,
    pub space_delimited_claims: Vec<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default, deny_unknown_fields)]
pub struct JwtHeader {
    pub name: String,
    pub prefix: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimToHeader {
    pub header: String,
    pub claim: String,
}
