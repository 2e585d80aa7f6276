//! `VirtualService`: the HTTP routing parts. Retries, timeouts and faults are
//! accepted but not read here: they belong to the resilience filters.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct VirtualServiceDoc {
    pub spec: VirtualServiceSpec,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct VirtualServiceSpec {
    #[serde(deserialize_with = "crate::parse::exact")]
    pub hosts: Vec<String>,
    pub gateways: Vec<String>,
    #[serde(deserialize_with = "crate::parse::exact")]
    pub http: Vec<HttpRoute>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRoute {
    pub name: Option<String>,
    #[serde(rename = "match")]
    #[serde(deserialize_with = "crate::parse::exact")]
    pub matches: Vec<HttpMatch>,
    #[serde(deserialize_with = "crate::parse::exact")]
    pub route: Vec<Destination>,
    // Out of line, as most routes set none of them: a route was 576 bytes,
    // and a VirtualService document lives until its routes are built.
    pub redirect: Option<Box<Redirect>>,
    pub direct_response: Option<Box<DirectResponse>>,
    pub rewrite: Option<Box<Rewrite>>,
    pub headers: Option<Box<Headers>>,
    pub timeout: Option<String>,
    pub retries: Option<Box<Retries>>,
    pub fault: Option<Box<FaultSpec>>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct Retries {
    pub attempts: Option<u32>,
    pub per_try_timeout: Option<String>,
    pub retry_on: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct FaultSpec {
    pub delay: Option<Delay>,
    pub abort: Option<Abort>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct Delay {
    pub fixed_delay: Option<String>,
    pub percentage: Option<PercentSpec>,
    /// Deprecated integer form of `percentage`.
    pub percent: Option<u32>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct Abort {
    pub http_status: Option<u16>,
    /// A gRPC status code's name (`UNAVAILABLE`).
    pub grpc_status: Option<String>,
    pub http2_error: Option<String>,
    pub percentage: Option<PercentSpec>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct PercentSpec {
    pub value: f64,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpMatch {
    pub uri: Option<StringMatchSpec>,
    #[serde(deserialize_with = "crate::parse::pairs")]
    pub headers: Vec<(String, StringMatchSpec)>,
    #[serde(deserialize_with = "crate::parse::pairs")]
    pub without_headers: Vec<(String, StringMatchSpec)>,
    #[serde(deserialize_with = "crate::parse::pairs")]
    pub query_params: Vec<(String, StringMatchSpec)>,
    // Out of line, as the parts of a route above, and the conditions below.
    pub method: Option<Box<StringMatchSpec>>,
    pub port: Option<u16>,
    pub ignore_uri_case: bool,
    // Conditions this waypoint cannot evaluate; read only to refuse them loudly.
    pub authority: Option<Box<serde_json::Value>>,
    pub scheme: Option<Box<serde_json::Value>>,
    pub source_labels: Option<Box<serde_json::Value>>,
    pub source_namespace: Option<String>,
    pub gateways: Vec<String>,
}

/// Istio's `StringMatch`: one of exact, prefix, regex; none of them means "present".
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct StringMatchSpec {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub regex: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct Destination {
    pub destination: DestinationSpec,
    pub weight: Option<u32>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct DestinationSpec {
    pub host: String,
    pub subset: Option<String>,
    pub port: Option<PortSelector>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct PortSelector {
    pub number: u16,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct Redirect {
    pub uri: Option<String>,
    pub authority: Option<String>,
    pub port: Option<u16>,
    pub scheme: Option<String>,
    pub redirect_code: Option<u16>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct DirectResponse {
    pub status: u16,
    #[serde(default)]
    pub body: Option<DirectBody>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct DirectBody {
    pub string: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct Rewrite {
    pub uri: Option<String>,
    pub authority: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct Headers {
    pub request: Option<HeaderOperations>,
    pub response: Option<HeaderOperations>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct HeaderOperations {
    pub set: BTreeMap<String, String>,
    pub add: BTreeMap<String, String>,
    pub remove: Vec<String>,
}
