//! A waypoint Gateway's objects, as istiod renders its own `istio-waypoint`
//! class (`files/waypoint.yaml`; see shared/notes/istio-integration.md): a
//! ServiceAccount (the per-service-account waypoint's identity), a Deployment
//! of `waypoint run` with the labels istiod and ztunnel rely on and the Istio
//! token and root-certificate volumes at Istio's paths, a Service with the
//! HBONE port that never uses a waypoint itself, the ClusterRoleBinding that
//! lets it read the cluster and the RoleBinding that lets it read the mesh
//! config in Istio's root namespace, and, when asked for, a
//! PodDisruptionBudget and a HorizontalPodAutoscaler. Plain JSON, ready for
//! server-side apply; no I/O.

use super::params::Params;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const GATEWAY_NAME: &str = "gateway.networking.k8s.io/gateway-name";
const GATEWAY_CLASS_NAME: &str = "gateway.networking.k8s.io/gateway-class-name";
/// On cluster-scoped objects, which carry no namespace of their own.
const GATEWAY_NAMESPACE: &str = "pingora-waypoint.dev/gateway-namespace";
/// Where istiod takes a waypoint's service account name from, as Istio does.
pub const SERVICE_ACCOUNT_ANNOTATION: &str = "gateway.istio.io/service-account";
const STATUS_PORT: u16 = 15021;
const METRICS_PORT: u16 = 15020;
/// Istio runs its proxies as this user; PodSecurity `restricted` accepts it.
const PROXY_UID: u32 = 1337;

/// The Gateway a waypoint is rendered for.
#[derive(Debug, Clone)]
pub struct Waypoint {
    pub namespace: String,
    pub name: String,
    pub class: String,
    /// The Gateway's `metadata.uid`, for owner references (none when rendered
    /// for GitOps without a cluster).
    pub uid: Option<String>,
    /// `gateway.istio.io/service-account`, else the Gateway's name.
    pub service_account: String,
    /// `(name, port)` of each HBONE listener.
    pub listeners: Vec<(String, u16)>,
    /// `spec.infrastructure.labels` / `.annotations`: Gateway API asks that
    /// they be put on every generated resource.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// How the waypoint runs: the controller's flags and the Gateway's parameters.
#[derive(Debug, Clone)]
pub struct Settings {
    pub image: String,
    pub replicas: u32,
    /// An autoscaler on CPU between `replicas` and this many.
    pub max_replicas: Option<u32>,
    /// Seconds the waypoint drains for on SIGTERM (`--drain-period`).
    pub drain_period: u64,
    /// `CA_ADDRESS` for the pods: Istio's CA unless the mesh uses another.
    pub ca_address: String,
    /// `--hbone-max-connection-age`: ztunnels reconnect after about this
    /// long, so replicas an autoscaler adds get a share of them.
    pub max_connection_age: u64,
    /// Istio's root namespace, the waypoint's `--root-namespace`: where its
    /// mesh config is read, so where its RoleBinding for that goes.
    pub root_namespace: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            image: "ghcr.io/pingora-waypoint/waypoint:latest".into(),
            replicas: 1,
            max_replicas: None,
            drain_period: 5,
            ca_address: "https://istiod.istio-system.svc:15012".into(),
            max_connection_age: 600,
            root_namespace: "istio-system".into(),
        }
    }
}

impl Waypoint {
    /// Labels of every generated object: the Gateway's name and class, as
    /// Gateway API and istiod label what they generate, then the Gateway's own.
    fn labels(&self) -> BTreeMap<String, String> {
        let mut l = self.labels.clone();
        l.insert(GATEWAY_NAME.into(), self.name.clone());
        l.insert(GATEWAY_CLASS_NAME.into(), self.class.clone());
        l
    }

    fn metadata(&self, name: &str, extra: &[(&str, &str)]) -> Value {
        let mut labels = self.labels();
        for (k, v) in extra {
            labels.insert(k.to_string(), v.to_string());
        }
        let mut meta = json!({
            "name": name,
            "namespace": self.namespace,
            "labels": labels,
        });
        if !self.annotations.is_empty() {
            meta["annotations"] = json!(self.annotations);
        }
        if let Some(uid) = &self.uid {
            meta["ownerReferences"] = json!([{
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "name": self.name,
                "uid": uid,
                "controller": true,
            }]);
        }
        meta
    }

    fn selector(&self) -> Value {
        json!({ GATEWAY_NAME: self.name })
    }
}

/// The ClusterRole each waypoint's service account is bound to
/// (`docker/k8s/rbac.yaml`): reading what it serves, cluster-wide.
pub const WAYPOINT_ROLE: &str = "pingora-waypoint";

/// The ClusterRole (`docker/k8s/rbac.yaml`) that reads ConfigMap `istio`
/// only, bound in the root namespace only: the mesh config.
pub const MESH_CONFIG_ROLE: &str = "pingora-waypoint-mesh-config";

/// What `render` makes only when the settings ask for it: (apiVersion, kind).
pub const OPTIONAL_KINDS: [(&str, &str); 2] = [
    ("policy/v1", "PodDisruptionBudget"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
];

/// Every object the controller keeps in sync for `w`, in the order to apply them.
pub fn render(w: &Waypoint, s: &Settings) -> Vec<Value> {
    render_with(w, s, &Params::default())
}

/// As [`render`], with the Gateway's parameters merged over each object; a
/// budget or autoscaler they name exists even where the settings would not
/// make it.
pub fn render_with(w: &Waypoint, s: &Settings, params: &Params) -> Vec<Value> {
    let scaled = s.max_replicas.filter(|&max| max > s.replicas);
    let autoscaled = scaled.is_some() || params.wants("HorizontalPodAutoscaler");
    let mut out = vec![
        service_account(w),
        role_binding(w),
        mesh_config_binding(w, s),
        deployment(w, s, autoscaled),
        service(w),
    ];
    // One replica and no autoscaler: a budget would only block node drains.
    if s.replicas > 1 || autoscaled || params.wants("PodDisruptionBudget") {
        out.push(disruption_budget(w));
    }
    if autoscaled {
        out.push(autoscaler(w, s.replicas, scaled.unwrap_or(s.replicas)));
    }
    params.apply(&mut out);
    out
}

fn service_account(w: &Waypoint) -> Value {
    let mut meta = w.metadata(&w.service_account, &[]);
    if w.service_account != w.name {
        // Named by the annotation, it may be shared by several Gateways: none
        // of them owns it, so deleting one leaves it to the others.
        if let Some(m) = meta.as_object_mut() {
            m.remove("ownerReferences");
        }
    }
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta,
    })
}

/// The binding's name: one per Gateway, so that Gateways sharing a service
/// account do not share (and delete) one binding.
pub fn role_binding_name(namespace: &str, gateway: &str) -> String {
    format!("{WAYPOINT_ROLE}:{namespace}:{gateway}")
}

/// Grants the waypoint's service account the cluster-wide reads of the
/// Kubernetes source. Cluster-scoped, so it cannot be owned by the Gateway:
/// the controller deletes it itself (a finalizer on the Gateway).
fn role_binding(w: &Waypoint) -> Value {
    let mut meta = w.metadata(
        &role_binding_name(&w.namespace, &w.name),
        &[(GATEWAY_NAMESPACE, w.namespace.as_str())],
    );
    let m = meta.as_object_mut().expect("an object");
    m.remove("namespace");
    m.remove("ownerReferences");
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": WAYPOINT_ROLE},
        "subjects": [{"kind": "ServiceAccount", "name": w.service_account, "namespace": w.namespace}],
    })
}

/// Grants the waypoint's service account its read of the mesh config, in the
/// root namespace alone. Named as the ClusterRoleBinding is, and, as that,
/// deleted by the controller: an owner reference cannot cross namespaces.
fn mesh_config_binding(w: &Waypoint, s: &Settings) -> Value {
    let mut meta = w.metadata(
        &role_binding_name(&w.namespace, &w.name),
        &[(GATEWAY_NAMESPACE, w.namespace.as_str())],
    );
    let m = meta.as_object_mut().expect("an object");
    m.insert("namespace".into(), json!(s.root_namespace));
    m.remove("ownerReferences");
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": MESH_CONFIG_ROLE},
        "subjects": [{"kind": "ServiceAccount", "name": w.service_account, "namespace": w.namespace}],
    })
}

fn deployment(w: &Waypoint, s: &Settings, autoscaled: bool) -> Value {
    let mut pod_labels = w.labels();
    for (k, v) in [
        ("istio.io/dataplane-mode", "none"),
        ("sidecar.istio.io/inject", "false"),
        ("service.istio.io/canonical-name", w.name.as_str()),
        ("service.istio.io/canonical-revision", "latest"),
    ] {
        pod_labels.insert(k.into(), v.into());
    }
    let mut pod_annotations = w.annotations.clone();
    for (k, v) in [
        ("prometheus.io/scrape", "true".to_string()),
        ("prometheus.io/port", METRICS_PORT.to_string()),
        ("prometheus.io/path", "/stats/prometheus".to_string()),
    ] {
        pod_annotations.insert(k.into(), v);
    }
    let field = |path: &str| json!({"valueFrom": {"fieldRef": {"fieldPath": path}}});
    let env = |name: &str, mut v: Value| {
        v["name"] = json!(name);
        v
    };
    let ready = json!({"httpGet": {"path": "/healthz/ready", "port": STATUS_PORT}});
    let mut ports = vec![
        json!({"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}),
        json!({"name": "status-port", "containerPort": STATUS_PORT, "protocol": "TCP"}),
    ];
    for (name, port) in &w.listeners {
        ports.push(json!({"name": name, "containerPort": port, "protocol": "TCP"}));
    }
    let mut spec = json!({
        "selector": {"matchLabels": w.selector()},
        "template": {
            "metadata": {"labels": pod_labels, "annotations": pod_annotations},
            "spec": {
                "serviceAccountName": w.service_account,
                // Longer than the drain, so that SIGTERM's drain ends on its own.
                "terminationGracePeriodSeconds": s.drain_period + 10,
                "securityContext": {
                    "runAsNonRoot": true,
                    "runAsUser": PROXY_UID,
                    "runAsGroup": PROXY_UID,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "topologySpreadConstraints": [{
                    "maxSkew": 1,
                    "topologyKey": "kubernetes.io/hostname",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": w.selector()},
                }],
                "containers": [{
                    "name": "waypoint",
                    "image": s.image,
                    "args": [
                        "run",
                        "--config-source", "kubernetes",
                        "--gateway", format!("{}/{}", w.namespace, w.name),
                        "--drain-period", s.drain_period.to_string(),
                        "--hbone-max-connection-age", s.max_connection_age.to_string(),
                        "--root-namespace", s.root_namespace,
                    ],
                    "env": [
                        env("POD_NAME", field("metadata.name")),
                        env("POD_NAMESPACE", field("metadata.namespace")),
                        env("INSTANCE_IP", field("status.podIP")),
                        env("SERVICE_ACCOUNT", field("spec.serviceAccountName")),
                        env("CA_ADDRESS", json!({"value": s.ca_address})),
                    ],
                    "ports": ports,
                    // Measured: about 15 MiB idle and 43 MiB serving 100
                    // Services of a 10,000-Service cluster (kube_source bench).
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "64Mi"},
                        "limits": {"memory": "512Mi"},
                    },
                    "startupProbe": merge(&ready, json!({"periodSeconds": 1, "failureThreshold": 60})),
                    "readinessProbe": merge(&ready, json!({"periodSeconds": 5, "failureThreshold": 4})),
                    "securityContext": {
                        "allowPrivilegeEscalation": false,
                        "readOnlyRootFilesystem": true,
                        "privileged": false,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [
                        {"name": "istio-token", "mountPath": "/var/run/secrets/tokens", "readOnly": true},
                        {"name": "istiod-ca-cert", "mountPath": "/var/run/secrets/istio", "readOnly": true},
                    ],
                }],
                "volumes": [
                    {"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {
                        "audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}}]}},
                    {"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}},
                ],
            },
        },
    });
    // Under an autoscaler the replica count is its business: applying ours
    // would undo every scale-up.
    if !autoscaled {
        spec["replicas"] = json!(s.replicas);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": w.metadata(&w.name, &[]),
        "spec": spec,
    })
}

fn service(w: &Waypoint) -> Value {
    let mut ports = vec![json!({"name": "status-port", "port": STATUS_PORT, "protocol": "TCP"})];
    for (name, port) in &w.listeners {
        ports.push(json!({"name": name, "port": port, "protocol": "TCP", "appProtocol": "hbone"}));
    }
    let mut meta = w.metadata(&w.name, &[("istio.io/use-waypoint", "none")]);
    meta["annotations"]["networking.istio.io/traffic-distribution"] = json!("PreferClose");
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "ClusterIP",
            "ipFamilyPolicy": "PreferDualStack",
            "selector": w.selector(),
            "ports": ports,
        },
    })
}

fn disruption_budget(w: &Waypoint) -> Value {
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": w.metadata(&w.name, &[]),
        "spec": {"minAvailable": 1, "selector": {"matchLabels": w.selector()}},
    })
}

fn autoscaler(w: &Waypoint, min: u32, max: u32) -> Value {
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": w.metadata(&w.name, &[]),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": w.name},
            "minReplicas": min,
            "maxReplicas": max,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80}}}],
        },
    })
}

fn merge(base: &Value, extra: Value) -> Value {
    let mut out = base.clone();
    if let (Some(o), Value::Object(e)) = (out.as_object_mut(), extra) {
        o.extend(e);
    }
    out
}

/// The Gateway `waypoint generate` prints, as `istioctl waypoint generate`
/// does for Istio's class: one HBONE listener on 15008, and what traffic it
/// takes (`istio.io/waypoint-for`: `service`, `workload`, `all` or `none`).
pub fn gateway(namespace: &str, name: &str, waypoint_for: Option<&str>) -> Value {
    let mut gw = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "gatewayClassName": super::CLASS_NAME,
            "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
        },
    });
    if let Some(f) = waypoint_for {
        gw["metadata"]["labels"] = json!({"istio.io/waypoint-for": f});
    }
    gw
}

#[cfg(test)]
mod tests;
