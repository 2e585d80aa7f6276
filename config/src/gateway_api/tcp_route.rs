//! `TCPRoute` (`v1`, and the deprecated `v1alpha2` the experimental channel
//! still serves), with a `Service` parent: rules of weighted backendRefs only.

use super::http_route::{BackendRefSpec, ParentRef};
use serde::Deserialize;

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct TcpRouteDoc {
    pub spec: TcpRouteSpec,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct TcpRouteSpec {
    pub parent_refs: Vec<ParentRef>,
    pub rules: Vec<TcpRule>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct TcpRule {
    pub backend_refs: Vec<BackendRefSpec>,
}
