//! `Gateway`: only a waypoint's own is read: Istio's class `istio-waypoint`, or
//! ours, `pingora-waypoint`, which istiod accepts as a waypoint all the same.

use serde::Deserialize;

pub const WAYPOINT_CLASSES: [&str; 2] = ["istio-waypoint", "pingora-waypoint"];

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
