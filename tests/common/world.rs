//! A config directory plus the echo backends its pods stand for. Pods listen on
//! ephemeral loopback ports behind a named `targetPort`, so tests run in parallel
//! without fixed ports.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;
use tempfile::TempDir;
use waypoint::echo::Echo;

pub const PRODUCTPAGE_VIP: &str = "10.96.0.10:9080";
pub const REVIEWS_VIP: &str = "10.96.0.20:9080";

pub struct World {
    dir: TempDir,
    pub backends: BTreeMap<String, Echo>,
}

/// A pod: name, `app` label, `version` label.
pub struct Pod(pub &'static str, pub &'static str, pub &'static str);

impl World {
    pub async fn new(pods: &[Pod], manifests: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let mut backends = BTreeMap::new();
        let mut yaml = String::new();
        for Pod(name, app, version) in pods {
            let echo = Echo::start("127.0.0.1:0".parse().unwrap(), name).await.unwrap();
            write!(
                yaml,
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default, labels: {{app: {app}, version: {version}}}}}\n\
                 spec:\n  serviceAccountName: {app}\n  containers: [{{name: app, ports: [{{name: http, containerPort: {port}}}]}}]\n\
                 status: {{podIP: 127.0.0.1}}\n",
                port = echo.addr.port()
            )
            .unwrap();
            backends.insert(name.to_string(), echo);
        }
        std::fs::write(dir.path().join("pods.yaml"), yaml).unwrap();
        std::fs::write(dir.path().join("world.yaml"), manifests).unwrap();
        World { dir, backends }
    }

    /// The seed world: productpage with v1 (two pods) and v2, the brief's
    /// VirtualService and a DestinationRule with the two subsets.
    pub async fn productpage() -> World {
        World::new(
            &[
                Pod("productpage-v1-a", "productpage", "v1"),
                Pod("productpage-v1-b", "productpage", "v1"),
                Pod("productpage-v2", "productpage", "v2"),
            ],
            PRODUCTPAGE,
        )
        .await
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn requests(&self, pod: &str) -> u64 {
        self.backends[pod].requests()
    }
}

const PRODUCTPAGE: &str = r#"
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
