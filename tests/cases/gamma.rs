//! GAMMA (GEP-1294) semantics a mesh user meets: consumer routes scoped to the
//! client's namespace, routes bound to one Service port, and backendRef filters.

use crate::common::world::Pod;
use crate::common::{connect, Certs, WaypointProc, World};
use waypoint::client::{Reply, Tunnel};

const ECHO_V1: &str = "10.96.0.30";

/// echo-v1 (ports 80 and 8080) and echo-v2 in `default`; a producer route that
/// binds port 80 only; a consumer route in namespace `consumer`, whose backend is
/// the parent itself in `default` (no ReferenceGrant anywhere).
const ROUTES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: echo-v1, namespace: default}
spec:
  clusterIP: 10.96.0.30
  ports: [{name: http, port: 80, targetPort: http}, {name: alt, port: 8080, targetPort: http}]
  selector: {app: echo, version: v1}
---
apiVersion: v1
kind: Service
metadata: {name: echo-v2, namespace: default}
spec:
  clusterIP: 10.96.0.31
  ports: [{name: http, port: 80, targetPort: http}]
  selector: {app: echo, version: v2}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: producer, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: echo-v1, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v2}}]
    backendRefs: [{name: echo-v2, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /backend}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-rule, value: rule}]}
    backendRefs:
    - name: echo-v1
      port: 80
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier:
          set: [{name: x-backend, value: v1}, {name: x-rule, value: backend}]
          remove: [x-drop]
      - type: ResponseHeaderModifier
        responseHeaderModifier: {add: [{name: x-backend-reply, value: v1}]}
      - type: URLRewrite
        urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /rewritten}}
  - matches: [{path: {type: PathPrefix, value: /mirror}}]
    backendRefs:
    - name: echo-v1
      port: 80
      filters:
      - type: RequestMirror
        requestMirror: {backendRef: {name: echo-v2, port: 80}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: mesh-echo-add-header, namespace: consumer}
spec:
  parentRefs: [{group: "", kind: Service, name: echo-v1, namespace: default}]
  rules:
  - filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set: [{name: X-Header-Set, value: set}]
    backendRefs: [{name: echo-v1, namespace: default, port: 80}]
"#;

async fn start() -> (World, Certs, WaypointProc) {
    let pods = [Pod("echo-v1", "echo", "v1"), Pod("echo-v2", "echo", "v2")];
    let world = World::new(&pods, ROUTES).await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    (world, certs, wp)
}

/// A tunnel to echo-v1 on `port` from a client in `namespace`.
async fn from(wp: &WaypointProc, certs: &Certs, namespace: &str, port: u16) -> Tunnel {
    let client = connect(wp, &certs.client_in(namespace)).await;
    Tunnel::open(&client, &format!("{ECHO_V1}:{port}"))
        .await
        .unwrap()
}

async fn get(t: &mut Tunnel, path: &str, headers: &[(String, String)]) -> Reply {
    t.get(&format!("http://echo-v1.default{path}"), headers)
        .await
        .unwrap()
}

fn seen(r: &Reply) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_route_applies_to_its_namespace_only() {
    let (_world, certs, wp) = start().await;
    // The Gateway API conformance test MeshConsumerRoute, through HBONE.
    let mut consumer = from(&wp, &certs, "consumer", 80).await;
    for path in ["/", "/v2"] {
        let r = get(&mut consumer, path, &[]).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.header("x-header-set"), Some("set"), "{path}");
        // The consumer table replaces the producer's: /v2 is not echo-v2 here.
        assert_eq!(r.header("x-pod"), Some("echo-v1"), "{path}");
    }
    // Another namespace gets the producer's routes, without the consumer's filter.
    let mut producer = from(&wp, &certs, "default", 80).await;
    let r = get(&mut producer, "/v2", &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.header("x-pod")),
        (200, Some("echo-v2"))
    );
    assert_eq!(r.header("x-header-set"), None);
    // The producer binds no route to `/` on port 80: route presence, no default.
    assert_eq!(get(&mut producer, "/", &[]).await.status, 404);
    let mut elsewhere = from(&wp, &certs, "elsewhere", 80).await;
    let r = get(&mut elsewhere, "/v2", &[]).await;
    assert_eq!(
        (r.header("x-pod"), r.header("x-header-set")),
        (Some("echo-v2"), None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_no_route_binds_gets_the_default_route() {
    let (world, certs, wp) = start().await;
    let mut t = from(&wp, &certs, "default", 8080).await;
    for path in ["/", "/v2", "/anything/else"] {
        let r = get(&mut t, path, &[]).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.header("x-pod"), Some("echo-v1"), "{path}");
        assert_eq!(seen(&r)["uri"], path, "the default route edits nothing");
    }
    assert_eq!(world.requests("echo-v2"), 0);
    // The consumer route binds every port, so its namespace keeps it on 8080.
    let mut consumer = from(&wp, &certs, "consumer", 8080).await;
    let r = get(&mut consumer, "/", &[]).await;
    assert_eq!(r.header("x-header-set"), Some("set"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_ref_filters_apply_to_their_backend() {
    let (world, certs, wp) = start().await;
    let mut t = from(&wp, &certs, "default", 80).await;
    let headers = vec![("x-drop".to_string(), "secret".to_string())];
    let r = get(&mut t, "/backend/page?q=1", &headers).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-backend-reply"), Some("v1"));
    let seen = seen(&r);
    assert_eq!(seen["uri"], "/rewritten/page?q=1");
    assert_eq!(seen["headers"]["x-backend"], "v1");
    // The backend's edits go first, then the rule's (Envoy's order).
    assert_eq!(seen["headers"]["x-rule"], "rule");
    assert!(seen["headers"].get("x-drop").is_none(), "{seen}");
    // A filter this waypoint does not implement is never skipped: 500, no upstream.
    let before = world.requests("echo-v1") + world.requests("echo-v2");
    let r = get(&mut t, "/mirror", &[]).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("RequestMirror"), "{}", r.text());
    assert_eq!(
        world.requests("echo-v1") + world.requests("echo-v2"),
        before
    );
}
