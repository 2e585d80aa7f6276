//! `GRPCRoute` (`v1`), as the GAMMA mesh profile uses it (a `Service` parent).
//! Its parentRefs, backendRefs and header filters have HTTPRoute's shape.

use super::http_route::{BackendRefSpec, ParentRef, RouteFilter, ValueMatch};
use serde::Deserialize;

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct GrpcRouteDoc {
    pub spec: GrpcRouteSpec,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct GrpcRouteSpec {
    #[serde(deserialize_with = "crate::parse::exact")]
    pub parent_refs: Vec<ParentRef>,
    #[serde(deserialize_with = "crate::parse::exact")]
    pub rules: Vec<GrpcRule>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct GrpcRule {
    #[serde(deserialize_with = "crate::parse::exact")]
    pub matches: Vec<GrpcMatch>,
    #[serde(deserialize_with = "crate::parse::exact")]
    pub filters: Vec<RouteFilter>,
    #[serde(deserialize_with = "crate::parse::exact")]
    pub backend_refs: Vec<BackendRefSpec>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct GrpcMatch {
    pub method: Option<MethodMatch>,
    pub headers: Vec<ValueMatch>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct MethodMatch {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub service: Option<String>,
    pub method: Option<String>,
}
