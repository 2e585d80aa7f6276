//! A Gateway of our class, read and judged: what to deploy for it, or why
//! nothing is; and the status that says so, in Gateway API's conditions.

use super::render::{Waypoint, SERVICE_ACCOUNT_ANNOTATION};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// ztunnel sends HBONE to a waypoint on this port only.
const HBONE_PORT: u64 = 15008;

/// Why a Gateway gets nothing deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Gateway API's reason for `Accepted: False`.
    pub reason: &'static str,
    pub message: String,
}

/// Reads a Gateway (already known to be of our class): what to deploy, and
/// the ConfigMap its `parametersRef` names, if any.
pub fn read(gw: &Value) -> Result<(Waypoint, Option<String>), Invalid> {
    let s = |path: &str| gw.pointer(path).and_then(Value::as_str).unwrap_or_default();
    let name = s("/metadata/name").to_string();
    let mut listeners = Vec::new();
    let mut bad = Vec::new();
    for (i, l) in gw
        .pointer("/spec/listeners")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let port = l.get("port").and_then(Value::as_u64);
        let protocol = l
            .get("protocol")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let lname = l.get("name").and_then(Value::as_str).unwrap_or_default();
        if port == Some(HBONE_PORT) && protocol == "HBONE" {
            listeners.push((lname.to_string(), HBONE_PORT as u16));
        } else {
            bad.push(format!(
                "spec.listeners[{i}] ({lname}): {protocol} on port {}: a waypoint listens for HBONE on {HBONE_PORT} only",
                port.map_or("?".into(), |p| p.to_string())
            ));
        }
    }
    if listeners.is_empty() && bad.is_empty() {
        bad.push(format!(
            "spec.listeners: a waypoint needs one HBONE listener on {HBONE_PORT}"
        ));
    }
    if !bad.is_empty() {
        return Err(Invalid {
            reason: "ListenersNotValid",
            message: bad.join("; "),
        });
    }
    let parameters = match gw.pointer("/spec/infrastructure/parametersRef") {
        None => None,
        Some(p) => {
            let field = |f: &str| p.get(f).and_then(Value::as_str).unwrap_or_default();
            if !field("group").is_empty() || field("kind") != "ConfigMap" {
                return Err(Invalid {
                    reason: "InvalidParameters",
                    message: format!(
                        "spec.infrastructure.parametersRef: {}/{} is not supported; refer to a ConfigMap in the Gateway's namespace",
                        field("group"),
                        field("kind")
                    ),
                });
            }
            Some(field("name").to_string())
        }
    };
    let strings = |path: &str| -> BTreeMap<String, String> {
        gw.pointer(path)
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    };
    let service_account = match s(&format!(
        "/metadata/annotations/{}",
        escape(SERVICE_ACCOUNT_ANNOTATION)
    )) {
        "" => name.clone(),
        sa => sa.to_string(),
    };
    let waypoint = Waypoint {
        namespace: s("/metadata/namespace").to_string(),
        class: s("/spec/gatewayClassName").to_string(),
        uid: Some(s("/metadata/uid").to_string()).filter(|u| !u.is_empty()),
        service_account,
        listeners,
        labels: strings("/spec/infrastructure/labels"),
        annotations: strings("/spec/infrastructure/annotations"),
        name,
    };
    Ok((waypoint, parameters))
}

/// A JSON pointer token: `/` in a key is `~1`.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Where a Gateway stands, for its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stand {
    Invalid(Invalid),
    /// Deployed; no pod ready yet.
    Pending,
    /// Pods ready behind this Service hostname.
    Ready {
        hostname: String,
    },
}

/// The Gateway's whole `status`, keeping each condition's
/// `lastTransitionTime` from `previous` while its status holds.
pub fn status(gw: &Value, stand: &Stand, now: &str) -> Value {
    let generation = gw
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let previous = gw.get("status").cloned().unwrap_or(Value::Null);
    let cond = |prev: Option<&Value>, kind: &str, ok: bool, reason: &str, message: &str| {
        let status = if ok { "True" } else { "False" };
        let since = prev
            .and_then(|p| p.as_array())
            .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
            .filter(|c| c["status"] == status)
            .and_then(|c| c["lastTransitionTime"].as_str())
            .unwrap_or(now);
        json!({"type": kind, "status": status, "reason": reason, "message": message,
            "observedGeneration": generation, "lastTransitionTime": since})
    };
    let prev = previous.get("conditions");
    let deployed = || {
        cond(
            prev,
            "Accepted",
            true,
            "Accepted",
            "deployed by pingora-waypoint",
        )
    };
    let (accepted, programmed, addresses) = match stand {
        Stand::Invalid(i) => (
            cond(prev, "Accepted", false, i.reason, &i.message),
            cond(
                prev,
                "Programmed",
                false,
                "Invalid",
                "not deployed: the Gateway is not accepted",
            ),
            json!([]),
        ),
        Stand::Pending => (
            deployed(),
            cond(
                prev,
                "Programmed",
                false,
                "Pending",
                "waiting for a waypoint pod to be ready",
            ),
            json!([]),
        ),
        Stand::Ready { hostname } => (
            deployed(),
            cond(
                prev,
                "Programmed",
                true,
                "Programmed",
                "a waypoint pod is ready",
            ),
            json!([{"type": "Hostname", "value": hostname}]),
        ),
    };
    let listeners: Vec<Value> = gw
        .pointer("/spec/listeners")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|l| {
            let name = l.get("name").cloned().unwrap_or(Value::Null);
            let prev = previous
                .get("listeners")
                .and_then(Value::as_array)
                .and_then(|ls| ls.iter().find(|p| p["name"] == name))
                .and_then(|p| p.get("conditions"));
            let hbone = l.get("port").and_then(Value::as_u64) == Some(HBONE_PORT)
                && l.get("protocol").and_then(Value::as_str) == Some("HBONE");
            let (ok, reason) = if hbone {
                (true, "Accepted")
            } else {
                (false, "UnsupportedProtocol")
            };
            let ready = matches!(stand, Stand::Ready { .. }) && hbone;
            json!({
                "name": name,
                "supportedKinds": [
                    {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"},
                ],
                // Mesh routes attach to Services, not to the waypoint.
                "attachedRoutes": 0,
                "conditions": [
                    cond(prev, "Accepted", ok, reason, if ok { "HBONE on 15008" } else { "a waypoint listens for HBONE on 15008 only" }),
                    cond(prev, "Programmed", ready, if ready { "Programmed" } else { "Pending" }, ""),
                    cond(prev, "ResolvedRefs", true, "ResolvedRefs", ""),
                    cond(prev, "Conflicted", false, "NoConflicts", ""),
                ],
            })
        })
        .collect();
    json!({
        "addresses": addresses,
        "conditions": [accepted, programmed],
        "listeners": listeners,
    })
}
