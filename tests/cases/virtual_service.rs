//! Several VirtualServices for one host, merged as Istio's waypoint merges them
//! (istio/istio#59483): oldest first, each one's routes in turn.

use crate::common::world::Pod;
use crate::common::{tunnel, Certs, WaypointProc, World};

const ROUTES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: app, namespace: default}
spec:
  clusterIP: 10.96.0.40
  ports: [{name: http, port: 80, targetPort: http}]
  selector: {app: app}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs-route-b, creationTimestamp: "2026-03-17T10:00:00Z"}
spec:
  hosts: [app.com, app]
  http:
  - match: [{uri: {prefix: /route-b}}]
    headers: {response: {set: {x-vs: b}}}
    route: [{destination: {host: app, port: {number: 80}}}]
  - headers: {response: {set: {x-vs: b-catch-all}}}
    route: [{destination: {host: app, port: {number: 80}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs-route-a, creationTimestamp: "2026-03-17T09:00:00Z"}
spec:
  hosts: [app]
  http:
  - match: [{uri: {prefix: /route-a}}]
    headers: {response: {set: {x-vs: a}}}
    route: [{destination: {host: app, port: {number: 80}}}]
  - match: [{uri: {prefix: /route-b/by-a}}]
    headers: {response: {set: {x-vs: a}}}
    route: [{destination: {host: app, port: {number: 80}}}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_services_for_one_host_merge_oldest_first() {
    let world = World::new(&[Pod("app-v1", "app", "v1")], ROUTES).await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let mut t = tunnel(&wp, &certs, "10.96.0.40:80").await;
    for (path, vs) in [
        ("/route-a", "a"),
        ("/route-b", "b"),
        // The older VirtualService's routes come first.
        ("/route-b/by-a", "a"),
        ("/other", "b-catch-all"),
    ] {
        let r = t.get(&format!("http://app{path}"), &[]).await.unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.header("x-vs"), Some(vs), "{path}");
    }
    assert_eq!(world.requests("app-v1"), 4);
}
