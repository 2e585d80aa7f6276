//! Whether every call a process made to the in-process API server is one the
//! checked-in RBAC grants: the manifests stay exactly what the code needs.
//!
//! A rule counts where the manifest binds it: a ClusterRoleBinding's role
//! everywhere, a RoleBinding's only in its namespace. A rule with
//! `resourceNames` grants only calls naming one of them (a list or watch is
//! named by its `metadata.name` field selector, as the API server names it).

use serde_json::Value;
use waypoint::testing::kube_api::{KubeApi, Request};

/// A bound rule: `namespace` `None` applies everywhere.
struct Grant {
    namespace: Option<String>,
    rule: Value,
}

/// Panics naming the first call the bindings in `manifest` (a path under the
/// repository) do not grant.
pub fn assert_granted(api: &KubeApi, manifest: &str) {
    let path = format!("{}/../{manifest}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let grants = grants(&docs);
    assert!(!grants.is_empty(), "{manifest} binds no rules");
    for r in api.requests() {
        if r.resource.is_none() {
            continue;
        }
        assert!(
            grants.iter().any(|g| allows(g, &r)),
            "{:?} {} in namespace {:?} (name {:?}) is not granted by {manifest} ({} {}?{})",
            r.verb,
            r.resource.as_deref().unwrap_or_default(),
            r.namespace,
            r.name,
            r.method,
            r.path,
            r.query
        );
    }
}

fn grants(docs: &[Value]) -> Vec<Grant> {
    let role = |kind: &str, namespace: Option<&str>, name: &Value| {
        docs.iter().find(|d| {
            d["kind"] == kind
                && d["metadata"]["name"] == *name
                && namespace.is_none_or(|ns| d["metadata"]["namespace"] == ns)
        })
    };
    let mut out = Vec::new();
    for binding in docs {
        let reference = &binding["roleRef"];
        let (found, namespace) = match binding["kind"].as_str() {
            Some("ClusterRoleBinding") => (role("ClusterRole", None, &reference["name"]), None),
            Some("RoleBinding") => {
                let ns = binding["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("default");
                let found = match reference["kind"].as_str() {
                    Some("ClusterRole") => role("ClusterRole", None, &reference["name"]),
                    _ => role("Role", Some(ns), &reference["name"]),
                };
                (found, Some(ns.to_string()))
            }
            _ => continue,
        };
        let found = found.unwrap_or_else(|| panic!("no role for binding {binding}"));
        for rule in found["rules"].as_array().into_iter().flatten() {
            out.push(Grant {
                namespace: namespace.clone(),
                rule: rule.clone(),
            });
        }
    }
    out
}

fn allows(g: &Grant, r: &Request) -> bool {
    let resource = r.resource.as_deref().unwrap_or_default();
    let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
    let resource = match &r.subresource {
        Some(sub) => format!("{plural}/{sub}"),
        None => plural.to_string(),
    };
    let verb = format!("{:?}", r.verb).to_lowercase();
    let has = |k: &str, v: &str| {
        g.rule[k]
            .as_array()
            .is_some_and(|xs| xs.iter().any(|x| x == v))
    };
    let names_ok = match g.rule["resourceNames"].as_array() {
        None => true,
        Some(names) => r
            .name
            .as_deref()
            .is_some_and(|n| names.iter().any(|x| x == n)),
    };
    let namespace_ok = g
        .namespace
        .as_ref()
        .is_none_or(|ns| r.namespace.as_ref() == Some(ns));
    has("apiGroups", group)
        && has("resources", &resource)
        && has("verbs", &verb)
        && names_ok
        && namespace_ok
}
