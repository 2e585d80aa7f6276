//! Istio's mesh config (`MeshConfig`, the `mesh` key of ConfigMap `istio` in
//! the root namespace): only its `extensionProviders` of the two ext_authz
//! types are read. The rest of the mesh config, and the other provider types
//! (tracing, logging), belong to istiod and are skipped.

use serde::Deserialize;
use std::collections::BTreeMap;

/// A ConfigMap; only `data` is kept.
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct ConfigMapDoc {
    pub data: BTreeMap<String, String>,
}

/// The ConfigMap key istiod reads the mesh config from.
pub const MESH_KEY: &str = "mesh";

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct MeshConfigHead {
    /// Each read on its own, so one bad entry spoils only itself.
    pub extension_providers: Vec<serde_json::Value>,
}

/// One entry, with the provider types this waypoint enforces; a type it does
/// not is a key among `other`.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ExtensionProvider {
    pub name: String,
    pub envoy_ext_authz_http: Option<serde_json::Value>,
    pub envoy_ext_authz_grpc: Option<serde_json::Value>,
}

// Unknown fields are errors: an option this waypoint ignored would change
// what the authorizer decides on.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ExtAuthzHttpSpec {
    pub service: String,
    pub port: u32,
    pub timeout: Option<String>,
    pub path_prefix: String,
    pub fail_open: bool,
    pub clear_route_cache: bool,
    pub status_on_error: String,
    pub include_headers_in_check: Vec<String>,
    pub include_request_headers_in_check: Vec<String>,
    pub include_additional_headers_in_check: BTreeMap<String, String>,
    pub include_request_body_in_check: Option<BodySpec>,
    pub headers_to_upstream_on_allow: Vec<String>,
    pub headers_to_downstream_on_deny: Vec<String>,
    pub headers_to_downstream_on_allow: Vec<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ExtAuthzGrpcSpec {
    pub service: String,
    pub port: u32,
    pub timeout: Option<String>,
    pub fail_open: bool,
    pub clear_route_cache: bool,
    pub status_on_error: String,
    pub include_request_body_in_check: Option<BodySpec>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct BodySpec {
    pub max_request_bytes: u32,
    pub allow_partial_message: bool,
    pub pack_as_bytes: bool,
}

/// The `service` of every ext_authz provider in a mesh config's text, for a
/// source that must fetch those Services before translating (the Kubernetes
/// source); an unreadable config names none (translation reports it).
pub fn ext_authz_services(mesh: &str) -> Vec<String> {
    let head: MeshConfigHead = serde_yaml_ng::from_str(mesh).unwrap_or_default();
    head.extension_providers
        .into_iter()
        .filter_map(|v| serde_json::from_value::<ExtensionProvider>(v).ok())
        .flat_map(|p| [p.envoy_ext_authz_grpc, p.envoy_ext_authz_http])
        .flatten()
        .filter_map(|spec| Some(spec.get("service")?.as_str()?.to_string()))
        .collect()
}
