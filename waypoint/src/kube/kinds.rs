//! The kinds the waypoint reads from the Kubernetes API, where the API serves
//! them, and what of each object it keeps.

use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Namespace,
    Service,
    Pod,
    EndpointSlice,
    ServiceEntry,
    WorkloadEntry,
    VirtualService,
    DestinationRule,
    HttpRoute,
    GrpcRoute,
    TcpRoute,
    Gateway,
    BackendTrafficPolicy,
    AuthorizationPolicy,
    RequestAuthentication,
    /// Istio's mesh config: only ConfigMap `istio` of the root namespace.
    ConfigMap,
}

impl Kind {
    /// (group, version, kind, plural) as served: Istio's `v1` (1.22 and later),
    /// Gateway API's `v1`, Envoy Gateway's `v1alpha1`. The version is the first
    /// of [`Kind::versions`].
    fn gvkp(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Kind::Namespace => ("", "v1", "Namespace", "namespaces"),
            Kind::Service => ("", "v1", "Service", "services"),
            Kind::Pod => ("", "v1", "Pod", "pods"),
            Kind::ConfigMap => ("", "v1", "ConfigMap", "configmaps"),
            Kind::EndpointSlice => ("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
            Kind::ServiceEntry => (
                "networking.istio.io",
                "v1",
                "ServiceEntry",
                "serviceentries",
            ),
            Kind::WorkloadEntry => (
                "networking.istio.io",
                "v1",
                "WorkloadEntry",
                "workloadentries",
            ),
            Kind::VirtualService => (
                "networking.istio.io",
                "v1",
                "VirtualService",
                "virtualservices",
            ),
            Kind::DestinationRule => (
                "networking.istio.io",
                "v1",
                "DestinationRule",
                "destinationrules",
            ),
            Kind::HttpRoute => ("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes"),
            Kind::GrpcRoute => ("gateway.networking.k8s.io", "v1", "GRPCRoute", "grpcroutes"),
            Kind::TcpRoute => ("gateway.networking.k8s.io", "v1", "TCPRoute", "tcproutes"),
            Kind::Gateway => ("gateway.networking.k8s.io", "v1", "Gateway", "gateways"),
            Kind::BackendTrafficPolicy => (
                "gateway.envoyproxy.io",
                "v1alpha1",
                "BackendTrafficPolicy",
                "backendtrafficpolicies",
            ),
            Kind::AuthorizationPolicy => (
                "security.istio.io",
                "v1",
                "AuthorizationPolicy",
                "authorizationpolicies",
            ),
            Kind::RequestAuthentication => (
                "security.istio.io",
                "v1",
                "RequestAuthentication",
                "requestauthentications",
            ),
        }
    }

    /// The versions to read, preferred first. TCPRoute is `v1` since Gateway
    /// API 1.6 (standard channel); clusters with an older experimental-channel
    /// CRD serve only `v1alpha2`, which has the same fields.
    pub fn versions(self) -> &'static [&'static str] {
        match self {
            Kind::TcpRoute => &["v1", "v1alpha2"],
            Kind::BackendTrafficPolicy => &["v1alpha1"],
            _ => &["v1"],
        }
    }

    pub fn api_resource(self) -> ApiResource {
        self.api_resource_at(self.gvkp().1)
    }

    pub fn api_resource_at(self, version: &str) -> ApiResource {
        let (group, _, kind, plural) = self.gvkp();
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
    }

    pub fn name(self) -> &'static str {
        self.gvkp().2
    }

    /// Kinds that come from CustomResourceDefinitions, which may not be installed.
    pub fn is_custom(self) -> bool {
        !matches!(
            self,
            Kind::Namespace | Kind::Service | Kind::Pod | Kind::EndpointSlice | Kind::ConfigMap
        )
    }

    /// The field selector every watch of this kind sends. ConfigMaps are read
    /// one by name, so no other is ever listed (a ConfigMap may hold what only
    /// its owner should read), and because RBAC's `resourceNames` grants a
    /// list or watch only when it selects the name.
    pub fn field_selector(self) -> Option<String> {
        match self {
            Kind::ConfigMap => Some(format!(
                "metadata.name={}",
                waypoint_config::MESH_CONFIG_MAP
            )),
            _ => None,
        }
    }

    /// Keeps what the translation reads: identity and labels, `spec` (or an
    /// EndpointSlice's top-level fields), a Pod's IPs, ports, service account and
    /// phase, a ConfigMap's mesh config (`data.mesh`). Status, annotations and
    /// managed fields are dropped, so memory follows what is served, not what
    /// the API server stores.
    pub fn trim(self, object: &Value) -> Value {
        self.trim_at(object, self.gvkp().1)
    }

    /// [`Kind::trim`] for an object read at `version`, which its `apiVersion`
    /// keeps, so its status is written at the version the API serves.
    pub fn trim_at(self, object: &Value, version: &str) -> Value {
        let mut out = Map::new();
        let (group, _, kind, _) = self.gvkp();
        let api_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        out.insert("apiVersion".into(), Value::String(api_version));
        out.insert("kind".into(), Value::String(kind.into()));
        out.insert("metadata".into(), trim_metadata(object.get("metadata")));
        match self {
            Kind::Namespace => {}
            // Istio's own ConfigMap carries other keys (`meshNetworks`, and
            // whatever an operator adds): only the mesh config is read.
            Kind::ConfigMap => {
                let key = waypoint_config::MESH_KEY;
                if let Some(mesh) = object.get("data").and_then(|d| d.get(key)) {
                    out.insert("data".into(), serde_json::json!({ key: mesh }));
                }
            }
            Kind::EndpointSlice => {
                for field in ["addressType", "endpoints", "ports"] {
                    copy(object, &mut out, field);
                }
            }
            Kind::Pod => {
                let spec = object.get("spec");
                let containers: Vec<Value> = spec
                    .and_then(|s| s.get("containers"))
                    .and_then(Value::as_array)
                    .map(|cs| {
                        cs.iter()
                            .map(|c| serde_json::json!({"ports": c.get("ports").cloned().unwrap_or(Value::Array(vec![]))}))
                            .collect()
                    })
                    .unwrap_or_default();
                let mut s = Map::new();
                if let Some(sa) = spec.and_then(|s| s.get("serviceAccountName")) {
                    s.insert("serviceAccountName".into(), sa.clone());
                }
                s.insert("containers".into(), Value::Array(containers));
                out.insert("spec".into(), Value::Object(s));
                let mut st = Map::new();
                if let Some(status) = object.get("status") {
                    for field in ["podIP", "podIPs", "phase"] {
                        copy(status, &mut st, field);
                    }
                }
                out.insert("status".into(), Value::Object(st));
            }
            _ => copy(object, &mut out, "spec"),
        }
        Value::Object(out)
    }
}

fn copy(from: &Value, to: &mut Map<String, Value>, field: &str) {
    if let Some(v) = from.get(field) {
        to.insert(field.into(), v.clone());
    }
}

fn trim_metadata(meta: Option<&Value>) -> Value {
    let mut out = Map::new();
    if let Some(meta) = meta {
        for field in [
            "name",
            "namespace",
            "labels",
            "creationTimestamp",
            "generation",
            "uid",
        ] {
            copy(meta, &mut out, field);
        }
        // The one annotation translation reads (AuthorizationPolicy dry-run).
        if let Some(v) = meta.pointer("/annotations/istio.io~1dry-run") {
            out.insert(
                "annotations".into(),
                serde_json::json!({ "istio.io/dry-run": v }),
            );
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn of_the_annotations_only_dry_run_is_kept() {
        let policy = serde_json::json!({
            "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "p", "namespace": "n",
                "annotations": {"istio.io/dry-run": "true", "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"action": "DENY"}
        });
        let kept = Kind::AuthorizationPolicy.trim(&policy);
        assert_eq!(
            kept["metadata"]["annotations"],
            serde_json::json!({"istio.io/dry-run": "true"})
        );
    }

    #[test]
    fn pods_keep_only_what_the_model_uses() {
        let pod = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "n", "labels": {"app": "a"},
                "annotations": {"big": "x"}, "managedFields": [{"manager": "kubectl"}]},
            "spec": {"serviceAccountName": "sa", "nodeName": "node-1",
                "containers": [{"name": "c", "image": "img", "env": [{"name": "E"}],
                    "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"podIP": "10.0.0.1", "phase": "Running", "conditions": [{"type": "Ready"}]}
        });
        assert_eq!(
            Kind::Pod.trim(&pod),
            serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "n", "labels": {"app": "a"}},
                "spec": {"serviceAccountName": "sa",
                    "containers": [{"ports": [{"name": "http", "containerPort": 8080}]}]},
                "status": {"podIP": "10.0.0.1", "phase": "Running"}
            })
        );
    }

    #[test]
    fn config_maps_keep_only_the_mesh_config() {
        let cm = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "istio", "namespace": "istio-system", "labels": {"release": "istio"},
                "annotations": {"big": "x"}, "managedFields": [{"manager": "helm"}],
                "resourceVersion": "7"},
            "data": {"mesh": "extensionProviders: []", "meshNetworks": "networks: {}",
                "token": "not ours to hold"},
            "binaryData": {"blob": "AAAA"}
        });
        assert_eq!(
            Kind::ConfigMap.trim(&cm),
            serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "istio", "namespace": "istio-system", "labels": {"release": "istio"}},
                "data": {"mesh": "extensionProviders: []"}
            })
        );
        let without = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "istio", "namespace": "istio-system"}, "data": {"other": "x"}});
        assert_eq!(Kind::ConfigMap.trim(&without).get("data"), None);
        assert_eq!(
            Kind::ConfigMap.field_selector().as_deref(),
            Some("metadata.name=istio")
        );
        assert!(!Kind::ConfigMap.is_custom(), "always served: no CRD");
    }
}
