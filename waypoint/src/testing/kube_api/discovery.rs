//! Discovery documents for the installed kinds, so `kube::discovery` (and a source
//! that asks whether a CRD is installed before watching it) sees what is served.
//! Aggregated discovery (`Discovery::run_aggregated`) is not served.

use super::body::Body;
use super::handler::json_response;
use super::resources::ResourceType;
use super::route::Discovery;
use super::status::ApiError;
use super::Shared;
use http::Response;
use serde_json::{json, Value};

pub(crate) fn answer(shared: &Shared, d: &Discovery<'_>) -> Result<Response<Body>, ApiError> {
    let st = shared.lock();
    let installed: Vec<&ResourceType> = st
        .store
        .resources()
        .filter(|(_, r)| r.installed)
        .map(|(_, r)| &r.ty)
        .collect();
    let doc = match d {
        Discovery::Health => return Ok(json_response(200, "ok".into())),
        Discovery::Version => json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-waypoint-fake", "gitCommit": "0",
            "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24",
            "compiler": "gc", "platform": "linux/amd64",
        }),
        Discovery::Core => json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr.to_string()}],
        }),
        Discovery::Groups => {
            let mut names: Vec<&str> = Vec::new();
            for g in installed
                .iter()
                .map(|t| t.group.as_str())
                .filter(|g| !g.is_empty())
            {
                if !names.contains(&g) {
                    names.push(g);
                }
            }
            let groups: Vec<Value> = names.iter().filter_map(|g| group(&installed, g)).collect();
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        }
        Discovery::Group(g) => group(&installed, g).ok_or_else(ApiError::no_resource)?,
        Discovery::Resources(g, v) => {
            resources(&installed, g, v).ok_or_else(ApiError::no_resource)?
        }
    };
    Ok(json_response(200, doc.to_string().into()))
}

fn group(installed: &[&ResourceType], name: &str) -> Option<Value> {
    let mut versions: Vec<&str> = Vec::new();
    for v in installed
        .iter()
        .filter(|t| t.group == name)
        .flat_map(|t| &t.versions)
    {
        if !versions.contains(&v.as_str()) {
            versions.push(v);
        }
    }
    let version = |v: &&str| json!({"groupVersion": format!("{name}/{v}"), "version": v});
    let preferred = versions.first().map(version)?;
    let versions: Vec<Value> = versions.iter().map(version).collect();
    Some(
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": versions, "preferredVersion": preferred}),
    )
}

fn resources(installed: &[&ResourceType], group: &str, version: &str) -> Option<Value> {
    const VERBS: [&str; 8] = [
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ];
    let mut list = Vec::new();
    for t in installed
        .iter()
        .filter(|t| t.group == group && t.serves(version))
    {
        let entry = |name: String, verbs: &[&str]| {
            json!({
                "name": name, "singularName": t.kind.to_lowercase(), "namespaced": t.namespaced,
                "kind": t.kind, "verbs": verbs,
            })
        };
        list.push(entry(t.plural.clone(), &VERBS));
        if t.status {
            list.push(entry(
                format!("{}/status", t.plural),
                &["get", "patch", "update"],
            ));
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    (!list.is_empty()).then(|| json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": list}))
}
