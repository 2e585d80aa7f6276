//! `ReferenceGrant`: lets routes in one namespace refer to objects in another.

use serde::Deserialize;

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct ReferenceGrantDoc {
    pub spec: ReferenceGrantSpec,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct ReferenceGrantSpec {
    pub from: Vec<GrantFrom>,
    pub to: Vec<GrantTo>,
}

#[derive(Deserialize, Debug)]
pub struct GrantFrom {
    pub group: String,
    pub kind: String,
    pub namespace: String,
}

#[derive(Deserialize, Debug)]
pub struct GrantTo {
    pub group: String,
    pub kind: String,
    pub name: Option<String>,
}

impl ReferenceGrantDoc {
    /// Whether an HTTPRoute in `from_ns` may use the Service `name` in the
    /// grant's own namespace (the core group is `""`).
    pub fn allows_route_to_service(&self, from_ns: &str, name: &str) -> bool {
        self.spec.from.iter().any(|f| {
            f.group == "gateway.networking.k8s.io"
                && f.kind == "HTTPRoute"
                && f.namespace == from_ns
        }) && self.spec.to.iter().any(|t| {
            t.group.is_empty() && t.kind == "Service" && t.name.as_deref().is_none_or(|n| n == name)
        })
    }
}
