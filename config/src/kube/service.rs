//! `v1 Service`.

use serde::Deserialize;

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct ServiceDoc {
    pub spec: ServiceSpec,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceSpec {
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    #[serde(rename = "clusterIPs")]
    pub cluster_ips: Vec<String>,
    #[serde(deserialize_with = "crate::parse::exact")]
    pub ports: Vec<ServicePortSpec>,
    pub selector: Option<waypoint_ir::Labels>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ServicePortSpec {
    pub name: Option<String>,
    pub port: u16,
    pub target_port: Option<IntOrString>,
    pub app_protocol: Option<String>,
}

/// Kubernetes' `IntOrString`: a port number or a container port's name.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(untagged)]
pub enum IntOrString {
    Int(u16),
    Str(String),
}
