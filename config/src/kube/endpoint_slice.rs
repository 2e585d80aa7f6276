//! `discovery.k8s.io/v1 EndpointSlice`.

use serde::Deserialize;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct EndpointSliceDoc {
    #[serde(deserialize_with = "crate::parse::exact")]
    pub endpoints: Vec<SliceEndpoint>,
    pub ports: Vec<SlicePort>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct SliceEndpoint {
    #[serde(deserialize_with = "crate::parse::exact")]
    pub addresses: Vec<String>,
    pub conditions: Conditions,
    pub target_ref: Option<TargetRef>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct Conditions {
    pub ready: Option<bool>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct TargetRef {
    pub kind: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct SlicePort {
    pub name: Option<String>,
    pub port: Option<u16>,
}
