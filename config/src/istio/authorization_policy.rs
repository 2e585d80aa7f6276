//! `AuthorizationPolicy` (`security.istio.io` v1, v1beta1).
//!
//! The document keeps its `spec` as JSON: a policy that does not even parse
//! must still be translated (into its fail-closed form) rather than rejected
//! by the parser, which would drop it. Translation reads it into
//! [`AuthorizationPolicySpec`] first, and failing that into [`SpecHead`].

use serde::Deserialize;

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct AuthorizationPolicyDoc {
    pub metadata: Annotated,
    pub spec: serde_json::Value,
}

/// The annotations of a resource (only `istio.io/dry-run` is read).
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct Annotated {
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// Istio's annotation for a policy judged but not enforced.
pub const DRY_RUN: &str = "istio.io/dry-run";

// Unknown fields are errors: a field this waypoint does not know is a
// condition it would not enforce.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct AuthorizationPolicySpec {
    pub selector: Option<serde_json::Value>,
    pub target_ref: Option<TargetRef>,
    pub target_refs: Vec<TargetRef>,
    pub action: Option<String>,
    pub provider: Option<Provider>,
    pub rules: Vec<Option<Rule>>,
}

/// What decides where a policy applies and what its fail-closed form is,
/// read leniently when the whole spec cannot be.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct SpecHead {
    pub selector: Option<serde_json::Value>,
    pub target_ref: Option<TargetRef>,
    pub target_refs: Vec<TargetRef>,
    pub action: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default, deny_unknown_fields)]
pub struct TargetRef {
    pub group: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Provider {
    pub name: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Rule {
    /// `None`: not set (any source); `Some([])` is invalid.
    pub from: Option<Vec<Option<From>>>,
    pub to: Option<Vec<Option<To>>>,
    pub when: Vec<Option<Condition>>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default, deny_unknown_fields)]
pub struct From {
    pub source: Option<Source>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Source {
    pub principals: Vec<String>,
    pub not_principals: Vec<String>,
    pub request_principals: Vec<String>,
    pub not_request_principals: Vec<String>,
    pub namespaces: Vec<String>,
    pub not_namespaces: Vec<String>,
    pub service_accounts: Vec<String>,
    pub not_service_accounts: Vec<String>,
    pub trust_domains: Vec<String>,
    pub not_trust_domains: Vec<String>,
    pub ip_blocks: Vec<String>,
    pub not_ip_blocks: Vec<String>,
    pub remote_ip_blocks: Vec<String>,
    pub not_remote_ip_blocks: Vec<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default, deny_unknown_fields)]
pub struct To {
    pub operation: Option<Operation>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Operation {
    pub hosts: Vec<String>,
    pub not_hosts: Vec<String>,
    pub ports: Vec<String>,
    pub not_ports: Vec<String>,
    pub methods: Vec<String>,
    pub not_methods: Vec<String>,
    pub paths: Vec<String>,
    pub not_paths: Vec<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Condition {
    pub key: String,
    pub values: Vec<String>,
    pub not_values: Vec<String>,
}
