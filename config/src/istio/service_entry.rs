//! `ServiceEntry` and `WorkloadEntry`.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct ServiceEntryDoc {
    pub spec: ServiceEntrySpec,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceEntrySpec {
    pub hosts: Vec<String>,
    pub addresses: Vec<String>,
    pub ports: Vec<SePort>,
    pub resolution: Option<String>,
    pub endpoints: Vec<WorkloadEntrySpec>,
    pub workload_selector: Option<Selector>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct SePort {
    pub number: u16,
    pub name: Option<String>,
    pub protocol: Option<String>,
    pub target_port: Option<u16>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct Selector {
    pub labels: waypoint_ir::Labels,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct WorkloadEntryDoc {
    pub spec: WorkloadEntrySpec,
}

/// A `WorkloadEntry` spec, also a ServiceEntry's inline endpoint.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct WorkloadEntrySpec {
    pub address: String,
    /// Port name → the port the workload listens on for it.
    pub ports: BTreeMap<String, u16>,
    pub labels: waypoint_ir::Labels,
    pub service_account: Option<String>,
}
