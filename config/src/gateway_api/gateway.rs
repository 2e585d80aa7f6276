//! `Gateway`: only a waypoint's own (`gatewayClassName: istio-waypoint`) is read.

use serde::Deserialize;

pub const WAYPOINT_CLASS: &str = "istio-waypoint";

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct GatewayDoc {
    pub spec: GatewaySpec,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewaySpec {
    pub gateway_class_name: String,
    pub listeners: Vec<Listener>,
}

#[derive(Deserialize, Debug)]
pub struct Listener {
    pub name: String,
    pub port: u16,
    pub protocol: String,
}
