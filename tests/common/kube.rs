//! A cluster for the Kubernetes source's tests: the in-process API server
//! (`waypoint::testing::kube_api`) holding a namespace bound to the waypoint's
//! Gateway `shop/wp`, and echo backends standing for its pods, each at its own
//! loopback address with a Pod and an EndpointSlice as Kubernetes would write
//! them.

use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use waypoint::echo::Echo;
use waypoint::testing::kube_api::KubeApi;

pub const GATEWAY: &str = "shop/wp";
pub const VIP: &str = "10.96.0.10:9080";

pub struct Cluster {
    pub api: KubeApi,
    pub kubeconfig: PathBuf,
    pub pods: BTreeMap<String, Echo>,
    _dir: tempfile::TempDir,
    next_ip: u8,
}

impl Cluster {
    /// The bound namespace, its waypoint Gateway and Service `productpage`
    /// (no pods yet).
    pub async fn new() -> Cluster {
        let api = KubeApi::start().await;
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = api.kubeconfig(dir.path());
        api.apply_yaml(
            r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/use-waypoint: wp}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: shop}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: v1
kind: Service
metadata: {name: productpage, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 9080, targetPort: http}]
  selector: {app: productpage}
"#,
        );
        Cluster {
            api,
            kubeconfig,
            pods: BTreeMap::new(),
            _dir: dir,
            next_ip: 40,
        }
    }

    /// A pod of productpage `version`, ready or not, with its backend.
    pub async fn add_pod(&mut self, name: &str, version: &str, ready: bool) {
        self.next_ip += 1;
        let ip = format!("127.0.0.{}", self.next_ip);
        let echo = Echo::start(format!("{ip}:0").parse().unwrap(), name)
            .await
            .unwrap();
        let port = echo.addr.port();
        self.api.apply(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop",
                "labels": {"app": "productpage", "version": version}},
            "spec": {"serviceAccountName": "productpage",
                "containers": [{"name": "app", "ports": [{"name": "http", "containerPort": port}]}]},
            "status": {"podIP": ip, "phase": "Running"}
        }));
        self.api.apply(slice(name, &ip, port, ready));
        self.pods.insert(name.to_string(), echo);
    }

    /// What the EndpointSlice controller writes when a pod's readiness changes.
    pub fn set_ready(&self, name: &str, ready: bool) {
        let echo = &self.pods[name];
        self.api.apply(slice(
            name,
            &echo.addr.ip().to_string(),
            echo.addr.port(),
            ready,
        ));
    }

    /// The pod leaves the API (its backend keeps running until dropped).
    pub fn delete_pod(&self, name: &str) {
        self.api
            .delete("endpointslices", "shop", &format!("productpage-{name}"));
        self.api.delete("pods", "shop", name);
    }

    pub fn requests(&self, pod: &str) -> u64 {
        self.pods[pod].requests()
    }
}

fn slice(pod: &str, ip: &str, port: u16, ready: bool) -> serde_json::Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("productpage-{pod}"), "namespace": "shop",
            "labels": {"kubernetes.io/service-name": "productpage"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": ready},
            "targetRef": {"kind": "Pod", "namespace": "shop", "name": pod}}],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}]
    })
}
