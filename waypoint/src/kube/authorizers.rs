//! The Services the mesh config's ext_authz providers name. A CUSTOM policy's
//! authorizer is a backend like any other: the waypoint must hold its Service
//! and endpoints, though it does not serve it (it is seldom bound to this
//! waypoint, and usually lives in a namespace of its own).

use super::kinds::Kind;
use super::scope::Store;
use serde_json::Value;
use std::collections::BTreeSet;

/// `(namespace, name)` of every Kubernetes Service an ext_authz provider of
/// ConfigMap `istio` in `root` names. A provider's `service` is
/// `[<namespace>/]<hostname>`; only hostnames of the form
/// `<name>.<namespace>.svc.<domain>` name a Service (others are
/// ServiceEntry hosts, which come through their own binding).
pub fn authorizers(store: &Store, root: &str) -> BTreeSet<(String, String)> {
    let mesh = store
        .find(Kind::ConfigMap, root, waypoint_config::MESH_CONFIG_MAP)
        .and_then(|cm| cm.pointer(&format!("/data/{}", waypoint_config::MESH_KEY)))
        .and_then(Value::as_str)
        .unwrap_or_default();
    waypoint_config::ext_authz_services(mesh)
        .iter()
        .filter_map(|s| service_of(s))
        .collect()
}

fn service_of(service: &str) -> Option<(String, String)> {
    let (given, host) = match service.split_once('/') {
        Some((ns, host)) => (Some(ns), host),
        None => (None, service),
    };
    let host = host.to_ascii_lowercase();
    let mut labels = host.split('.');
    let (name, ns, svc) = (labels.next()?, labels.next()?, labels.next()?);
    if svc != "svc" || given.is_some_and(|g| g != ns) {
        return None;
    }
    Some((ns.to_string(), name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::service_of;

    #[test]
    fn provider_services_name_kubernetes_services_by_their_hostname() {
        let s = |ns: &str, name: &str| Some((ns.to_string(), name.to_string()));
        assert_eq!(service_of("opa.authz.svc.cluster.local"), s("authz", "opa"));
        assert_eq!(
            service_of("authz/OPA.authz.svc.cluster.local"),
            s("authz", "opa")
        );
        assert_eq!(service_of("other/opa.authz.svc.cluster.local"), None);
        assert_eq!(service_of("authz.example.com"), None);
        assert_eq!(service_of("opa"), None);
    }
}
