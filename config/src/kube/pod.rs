//! `v1 Pod`: what makes it an endpoint.

use serde::Deserialize;

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct PodDoc {
    pub spec: PodSpec,
    pub status: PodStatus,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSpec {
    pub service_account_name: Option<String>,
    #[serde(deserialize_with = "crate::parse::exact")]
    pub containers: Vec<Container>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct Container {
    #[serde(deserialize_with = "crate::parse::exact")]
    pub ports: Vec<ContainerPort>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    pub name: Option<String>,
    pub container_port: u16,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct PodStatus {
    #[serde(rename = "podIP")]
    pub pod_ip: Option<String>,
    #[serde(rename = "podIPs")]
    pub pod_ips: Vec<PodIp>,
    pub phase: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct PodIp {
    pub ip: String,
}

impl PodDoc {
    /// The port a named container port stands for.
    pub fn named_port(&self, name: &str) -> Option<u16> {
        self.spec
            .containers
            .iter()
            .flat_map(|c| &c.ports)
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port)
    }

    pub fn ip(&self) -> Option<&str> {
        self.status
            .pod_ip
            .as_deref()
            .or_else(|| self.status.pod_ips.first().map(|p| p.ip.as_str()))
    }

    /// Finished pods keep their IP in the API but serve nothing.
    pub fn is_running(&self) -> bool {
        !matches!(self.status.phase.as_deref(), Some("Succeeded" | "Failed"))
    }
}
