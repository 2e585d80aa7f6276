//! Worlds for the tests, the load benchmark and anyone trying the waypoint locally:
//! the seed productpage manifests around pods that listen wherever the caller's
//! backends do (a named `targetPort`, so each pod may use its own port);
//! [`kube_api`], a fake Kubernetes API server to run the Kubernetes source against;
//! [`ca_server`], an Istio CA to get certificates from; and [`ports::free_addr`],
//! ports for child processes to listen on.

pub mod ca_server;
pub mod kube_api;
pub mod ports;

use std::fmt::Write;

pub const PRODUCTPAGE_VIP: &str = "10.96.0.10:9080";

/// A pod standing for a backend at `127.0.0.1:port`.
pub struct Pod<'a> {
    pub name: &'a str,
    pub app: &'a str,
    pub version: &'a str,
    pub port: u16,
}

/// `Pod` manifests whose container port `http` is each backend's port.
pub fn pods_yaml(pods: &[Pod<'_>]) -> String {
    let mut yaml = String::new();
    for p in pods {
        write!(
            yaml,
            "---\napiVersion: v1\nkind: Pod\n\
             metadata: {{name: {name}, namespace: default, labels: {{app: {app}, version: {version}}}}}\n\
             spec:\n  serviceAccountName: {app}\n  containers: [{{name: app, ports: [{{name: http, containerPort: {port}}}]}}]\n\
             status: {{podIP: 127.0.0.1}}\n",
            name = p.name,
            app = p.app,
            version = p.version,
            port = p.port
        )
        .expect("writing to a String");
    }
    yaml
}

/// The brief's seed routing for productpage, with the Service and DestinationRule
/// it needs: header `version: v2` → v2, otherwise v1 90 / v2 10.
pub const PRODUCTPAGE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: productpage, namespace: default}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 9080, targetPort: http}]
  selector: {app: productpage}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: productpage, namespace: default}
spec:
  host: productpage
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: productpage-routing}
spec:
  hosts: [productpage]
  http:
  - match: [{headers: {version: {exact: v2}}}]
    route: [{destination: {host: productpage, subset: v2}}]
  - route:
    - {destination: {host: productpage, subset: v1}, weight: 90}
    - {destination: {host: productpage, subset: v2}, weight: 10}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: Gateway
metadata: {name: productpage-waypoint}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
"#;
