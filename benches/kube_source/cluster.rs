//! The benchmark's cluster, as the API server would hold it: namespaces of
//! Services, each with its Pods and one EndpointSlice written the way the
//! EndpointSlice controller writes it, and a few routes and policies per
//! namespace. Pods carry what real ones carry (owner, probes, env, conditions,
//! managed fields) because the waypoint decodes every Pod of a namespace it
//! watches before it drops the ones it does not serve.
//!
//! Who uses which waypoint, as Istio binds them:
//! - `ns-000` holds this waypoint's Gateway (`ns-000/waypoint`) and is labelled
//!   for it: its 50 Services are served.
//! - In `ns-001`..`ns-010`, five Services each are labelled for it individually
//!   (`istio.io/use-waypoint-namespace: ns-000`): 50 more served, beside 45
//!   unrelated Services per namespace whose Pods the waypoint still sees.
//! - One namespace in ten (`n % 200 >= 180`) is labelled for its own
//!   namespace's waypoint, and in the others two Services in 50 are labelled
//!   individually for theirs: other waypoints' business, which still reaches
//!   this one through its cluster-wide, label-selected Service watch.
//! - Every other namespace has two HTTPRoutes, two DestinationRules and a
//!   VirtualService for its own Services: unrelated, but the waypoint watches
//!   those kinds cluster-wide.

use serde_json::{json, Value};
use std::ops::Range;

pub const GATEWAY: &str = "ns-000/waypoint";
pub const SERVICES_PER_NS: usize = 50;
pub const PODS_PER_SERVICE: usize = 5;
/// Namespaces with `PICKED_PER_NS` Services labelled for this waypoint one by one.
const PICKED_NS: Range<usize> = 1..11;
const PICKED_PER_NS: usize = 5;
/// The container port every pod listens on (the Service's `targetPort: http`).
pub const POD_PORT: u16 = 8080;

/// A served Service's endpoints, as its EndpointSlice lists them.
#[derive(Clone, Debug)]
pub struct Served {
    pub namespace: String,
    pub name: String,
    pub endpoints: Vec<Ep>,
}

#[derive(Clone, Debug)]
pub struct Ep {
    pub pod: String,
    pub ip: String,
    pub ready: bool,
}

#[derive(Default)]
pub struct Cluster {
    pub objects: Vec<Value>,
    /// Served Services (only from namespaces `0..`), in namespace/name order.
    pub served: Vec<Served>,
    pub namespaces: usize,
    pub services: usize,
    pub pods: usize,
    pub slices: usize,
    pub config: usize,
}

pub fn ns_name(n: usize) -> String {
    format!("ns-{n:03}")
}

fn svc_name(s: usize) -> String {
    format!("svc-{s:02}")
}

/// A pod's address from its index in the cluster, unique up to 2^24 pods.
fn pod_ip(g: usize) -> String {
    format!("10.{}.{}.{}", 1 + (g >> 16), (g >> 8) & 255, g & 255)
}

fn uid(kind: &str, g: usize) -> String {
    format!("{kind:0>8.8}-0000-4000-8000-{g:012}")
}

/// Namespaces `range` of the cluster; `0..200` is the base world, `200..400`
/// doubles its unrelated part.
pub fn build(range: Range<usize>) -> Cluster {
    let mut c = Cluster::default();
    for n in range {
        let ns = ns_name(n);
        let own_waypoint = n % 200 >= 180;
        let mut labels = json!({"istio.io/dataplane-mode": "ambient",
            "kubernetes.io/metadata.name": ns});
        if n == 0 || own_waypoint {
            labels["istio.io/use-waypoint"] = json!("waypoint");
        }
        c.objects
            .push(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "uid": uid("ns", n), "labels": labels,
                "creationTimestamp": "2024-05-01T10:00:00Z"},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}));
        c.namespaces += 1;
        if n == 0 || own_waypoint {
            c.objects.push(gateway(&ns));
            c.config += 1;
        }
        for s in 0..SERVICES_PER_NS {
            let i = n * SERVICES_PER_NS + s;
            let name = svc_name(s);
            let binding = if n == 0 {
                Binding::Namespace
            } else if PICKED_NS.contains(&n) && s < PICKED_PER_NS {
                Binding::Ours
            } else if !own_waypoint && s % 25 == 0 && !PICKED_NS.contains(&n) {
                Binding::Theirs
            } else {
                Binding::None
            };
            c.objects.push(service(&ns, &name, i, binding));
            c.services += 1;
            let mut eps = Vec::new();
            for p in 0..PODS_PER_SERVICE {
                let g = i * PODS_PER_SERVICE + p;
                let pod_name = format!("{name}-7d9f8b6c5-{p:05}");
                let ip = pod_ip(g);
                let version = if p == PODS_PER_SERVICE - 1 {
                    "v2"
                } else {
                    "v1"
                };
                c.objects
                    .push(pod(&ns, &name, &pod_name, &ip, version, &uid("pod", g)));
                c.pods += 1;
                eps.push(Ep {
                    pod: pod_name,
                    ip,
                    ready: true,
                });
            }
            c.objects.push(slice(&ns, &name, &eps));
            c.slices += 1;
            if binding.served() {
                c.objects.push(destination_rule(&ns, &name));
                c.config += 1;
                if s % 5 == 0 {
                    c.objects.push(http_route(&ns, &name));
                    c.config += 1;
                }
                c.served.push(Served {
                    namespace: ns.clone(),
                    name,
                    endpoints: eps,
                });
            }
        }
        if n != 0 && !PICKED_NS.contains(&n) {
            for s in [1, 2] {
                c.objects.push(http_route(&ns, &svc_name(s)));
                c.objects.push(destination_rule(&ns, &svc_name(s + 10)));
            }
            c.objects.push(virtual_service(&ns, &svc_name(20)));
            c.config += 5;
        }
    }
    c
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Binding {
    /// In the namespace labelled for this waypoint.
    Namespace,
    /// Labelled for this waypoint itself.
    Ours,
    /// Labelled for its own namespace's waypoint.
    Theirs,
    None,
}

impl Binding {
    fn served(self) -> bool {
        matches!(self, Binding::Namespace | Binding::Ours)
    }
}

fn gateway(ns: &str) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "waypoint", "namespace": ns},
        "spec": {"gatewayClassName": "istio-waypoint",
            "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}})
}

fn service(ns: &str, name: &str, i: usize, binding: Binding) -> Value {
    let ip = format!("10.{}.{}.{}", 96 + (i >> 16), (i >> 8) & 255, i & 255);
    let mut labels = json!({"app": name, "app.kubernetes.io/part-of": ns});
    match binding {
        Binding::Ours => {
            labels["istio.io/use-waypoint"] = json!("waypoint");
            labels["istio.io/use-waypoint-namespace"] = json!("ns-000");
        }
        Binding::Theirs => labels["istio.io/use-waypoint"] = json!("waypoint"),
        Binding::Namespace | Binding::None => {}
    }
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "uid": uid("svc", i), "labels": labels,
            "creationTimestamp": "2024-05-01T10:00:00Z",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                format!("{{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{{\"name\":\"{name}\",\"namespace\":\"{ns}\"}},\"spec\":{{\"ports\":[{{\"name\":\"http\",\"port\":80,\"targetPort\":\"http\"}}],\"selector\":{{\"app\":\"{name}\"}}}}}}\n")}},
        "spec": {"clusterIP": ip, "clusterIPs": [ip], "type": "ClusterIP",
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster", "sessionAffinity": "None",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}],
            "selector": {"app": name}},
        "status": {"loadBalancer": {}}})
}

pub fn pod(ns: &str, app: &str, name: &str, ip: &str, version: &str, uid: &str) -> Value {
    // Spread over 20 nodes, by the address's last octet.
    let octet: u32 = ip
        .rsplit('.')
        .next()
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    let node = format!("node-{}", octet % 20);
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "generateName": format!("{app}-7d9f8b6c5-"), "namespace": ns,
            "uid": uid, "creationTimestamp": "2024-05-01T10:00:05Z",
            "labels": {"app": app, "version": version, "pod-template-hash": "7d9f8b6c5",
                "security.istio.io/tlsMode": "istio",
                "service.istio.io/canonical-name": app, "service.istio.io/canonical-revision": version},
            "annotations": {"ambient.istio.io/redirection": "enabled",
                "kubectl.kubernetes.io/default-container": "app"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": format!("{app}-7d9f8b6c5"), "uid": "00000000-0000-4000-8000-rs0000000000",
                "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                 "time": "2024-05-01T10:00:05Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}, "f:version": {}},
                    "f:ownerReferences": {".": {}, "k:{\"uid\":\"00000000-0000-4000-8000-rs0000000000\"}": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:env": {}, "f:image": {}, "f:name": {}, "f:ports": {}, "f:readinessProbe": {}, "f:resources": {}}}}}},
                {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "subresource": "status",
                 "time": "2024-05-01T10:00:09Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {}, "f:hostIP": {}, "f:phase": {}, "f:podIP": {}, "f:podIPs": {}, "f:startTime": {}}}}]},
        "spec": {"serviceAccountName": app, "nodeName": node, "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler",
            "containers": [{"name": "app", "image": format!("registry.example.com/{app}:1.4.2"),
                "imagePullPolicy": "IfNotPresent",
                "ports": [{"name": "http", "containerPort": POD_PORT, "protocol": "TCP"}],
                "env": [{"name": "SERVICE_NAME", "value": app}, {"name": "LOG_LEVEL", "value": "info"},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                    "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
                "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]}],
            "volumes": [{"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}],
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]},
        "status": {"phase": "Running", "hostIP": "192.168.10.4", "podIP": ip, "podIPs": [{"ip": ip}],
            "qosClass": "Burstable", "startTime": "2024-05-01T10:00:05Z",
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": "2024-05-01T10:00:05Z"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2024-05-01T10:00:09Z"},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2024-05-01T10:00:09Z"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2024-05-01T10:00:05Z"}],
            "containerStatuses": [{"name": "app", "ready": true, "started": true, "restartCount": 0,
                "image": format!("registry.example.com/{app}:1.4.2"),
                "imageID": "registry.example.com/app@sha256:4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c",
                "containerID": "containerd://9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b",
                "state": {"running": {"startedAt": "2024-05-01T10:00:07Z"}}, "lastState": {}}]}})
}

/// The Service's one EndpointSlice (up to 100 endpoints fit in one).
pub fn slice(ns: &str, svc: &str, endpoints: &[Ep]) -> Value {
    let eps: Vec<Value> = endpoints
        .iter()
        .map(|e| {
            json!({"addresses": [e.ip],
                "conditions": {"ready": e.ready, "serving": e.ready, "terminating": false},
                "nodeName": "node-3", "zone": "zone-a",
                "targetRef": {"kind": "Pod", "namespace": ns, "name": e.pod}})
        })
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{svc}-x7k2p"), "namespace": ns, "generateName": format!("{svc}-"),
            "labels": {"kubernetes.io/service-name": svc,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                "app": svc},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": svc,
                "uid": "00000000-0000-4000-8000-svc000000000", "controller": true, "blockOwnerDeletion": true}]},
        "addressType": "IPv4",
        "endpoints": eps,
        "ports": [{"name": "http", "port": POD_PORT, "protocol": "TCP"}]})
}

fn host(ns: &str, svc: &str) -> String {
    format!("{svc}.{ns}.svc.cluster.local")
}

fn destination_rule(ns: &str, svc: &str) -> Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": svc, "namespace": ns},
        "spec": {"host": host(ns, svc),
            "trafficPolicy": {"connectionPool": {"http": {"http1MaxPendingRequests": 1024}},
                "outlierDetection": {"consecutive5xxErrors": 5, "interval": "10s", "baseEjectionTime": "30s"}},
            "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2"}}]}})
}

fn http_route(ns: &str, svc: &str) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": format!("{svc}-canary"), "namespace": ns, "generation": 1},
        "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": svc, "port": 80}],
            "rules": [
                {"matches": [{"headers": [{"name": "x-canary", "value": "1"}]}],
                 "filters": [{"type": "RequestHeaderModifier",
                    "requestHeaderModifier": {"set": [{"name": "x-route", "value": "canary"}]}}],
                 "backendRefs": [{"name": svc, "port": 80}]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                 "timeouts": {"request": "5s"},
                 "backendRefs": [{"name": svc, "port": 80}]},
                {"backendRefs": [{"name": svc, "port": 80}]}]}})
}

fn virtual_service(ns: &str, svc: &str) -> Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": svc, "namespace": ns},
        "spec": {"hosts": [svc],
            "http": [{"match": [{"headers": {"end-user": {"exact": "jason"}}}],
                      "route": [{"destination": {"host": svc, "subset": "v2"}}]},
                     {"route": [{"destination": {"host": svc, "subset": "v1"}, "weight": 90},
                                {"destination": {"host": svc, "subset": "v2"}, "weight": 10}],
                      "retries": {"attempts": 2, "perTryTimeout": "1s"}}]}})
}
