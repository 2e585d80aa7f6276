//! Whether every call a process made to the in-process API server is one a
//! checked-in ClusterRole grants: the manifests stay exactly what the code needs.

use waypoint::testing::kube_api::KubeApi;

/// Panics naming the first call `manifest` (a path under the repository) does
/// not grant in its first ClusterRole.
pub fn assert_granted(api: &KubeApi, manifest: &str) {
    let path = format!("{}/../{manifest}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let role: serde_json::Value = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .find(|d: &serde_json::Value| d["kind"] == "ClusterRole")
        .unwrap();
    let granted = |group: &str, resource: &str, verb: &str| {
        role["rules"].as_array().unwrap().iter().any(|r| {
            let has =
                |k: &str, v: &str| r[k].as_array().is_some_and(|xs| xs.iter().any(|x| x == v));
            has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
        })
    };
    for r in api.requests() {
        let Some(resource) = r.resource.clone() else {
            continue;
        };
        let (plural, group) = resource.split_once('.').unwrap_or((resource.as_str(), ""));
        let resource = match &r.subresource {
            Some(sub) => format!("{plural}/{sub}"),
            None => plural.to_string(),
        };
        let verb = format!("{:?}", r.verb).to_lowercase();
        assert!(
            granted(group, &resource, &verb),
            "{verb} {resource} in group {group:?} is not granted by {manifest} ({} {})",
            r.method,
            r.path
        );
    }
}
