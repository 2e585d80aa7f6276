//! GAMMA: an HTTPRoute with a Service parent, through HBONE, per the Gateway API spec.

use crate::common::world::{Pod, REVIEWS_VIP};
use crate::common::{h, tunnel, Certs, WaypointProc, World};
use waypoint::client::Tunnel;

const ROUTES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  clusterIP: 10.96.0.20
  ports: [{name: http, port: 9080, targetPort: http}]
  selector: {app: reviews}
---
apiVersion: v1
kind: Service
metadata: {name: reviews-v1, namespace: default}
spec:
  clusterIP: 10.96.0.21
  ports: [{name: http, port: 9080, targetPort: http}]
  selector: {app: reviews, version: v1}
---
apiVersion: v1
kind: Service
metadata: {name: reviews-v2, namespace: default}
spec:
  clusterIP: 10.96.0.22
  ports: [{name: http, port: 9080, targetPort: http}]
  selector: {app: reviews, version: v2}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: reviews-v1, port: 9080}]
  - matches: [{path: {type: PathPrefix, value: /api/v2}}]
    backendRefs: [{name: reviews-v2, port: 9080}]
  - matches: [{path: {type: Exact, value: /api/exact}}]
    backendRefs: [{name: reviews-v2, port: 9080}]
  - matches:
    - path: {type: PathPrefix, value: /api}
      headers: [{name: x-canary, value: "true"}]
    - path: {type: PathPrefix, value: /api}
      queryParams: [{name: debug, value: "1"}]
    - path: {type: PathPrefix, value: /api}
      method: POST
    backendRefs: [{name: reviews-v2, port: 9080}]
  - matches: [{path: {type: PathPrefix, value: /mod}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: x-set, value: set-by-route}]
        add: [{name: x-add, value: added}]
        remove: [x-remove]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        add: [{name: x-route, value: mod}]
    backendRefs: [{name: reviews-v1, port: 9080}]
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}
    backendRefs: [{name: reviews-v1, port: 9080}]
  - matches: [{path: {type: PathPrefix, value: /moved}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {hostname: reviews.example.com, statusCode: 301}
  - matches: [{path: {type: PathPrefix, value: /zero}}]
    backendRefs: [{name: reviews-v1, port: 9080, weight: 0}]
  - matches: [{path: {type: PathPrefix, value: /missing}}]
    backendRefs: [{name: no-such-service, port: 9080}]
"#;

async fn start() -> (World, Certs, WaypointProc, Tunnel) {
    let world = World::new(
        &[
            Pod("reviews-v1", "reviews", "v1"),
            Pod("reviews-v2", "reviews", "v2"),
        ],
        ROUTES,
    )
    .await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let t = tunnel(&wp, &certs, REVIEWS_VIP).await;
    (world, certs, wp, t)
}

async fn pod_for(
    t: &mut Tunnel,
    method: http::Method,
    path: &str,
    headers: &[(String, String)],
) -> (u16, String) {
    let url = format!("http://reviews{path}");
    let r = t
        .send(method, &url, headers, bytes::Bytes::new())
        .await
        .unwrap();
    (
        r.status.as_u16(),
        r.header("x-pod").unwrap_or("-").to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matches_follow_gateway_api_precedence() {
    let (_world, _certs, _wp, mut t) = start().await;
    let get = http::Method::GET;
    type Case<'a> = (&'a str, Vec<(String, String)>, http::Method, (u16, &'a str));
    let cases: &[Case<'_>] = &[
        ("/api/list", vec![], get.clone(), (200, "reviews-v1")),
        // The longer prefix wins although its rule comes later.
        ("/api/v2/list", vec![], get.clone(), (200, "reviews-v2")),
        // Exact beats any prefix.
        ("/api/exact", vec![], get.clone(), (200, "reviews-v2")),
        // PathPrefix matches whole segments: /apix is not under /api.
        ("/apix", vec![], get.clone(), (404, "-")),
        // Same prefix, more header matches wins.
        (
            "/api/list",
            h("x-canary", "true"),
            get.clone(),
            (200, "reviews-v2"),
        ),
        (
            "/api/list?debug=1",
            vec![],
            get.clone(),
            (200, "reviews-v2"),
        ),
        (
            "/api/list?debug=2",
            vec![],
            get.clone(),
            (200, "reviews-v1"),
        ),
        // A method match outranks a bare prefix.
        ("/api/list", vec![], http::Method::POST, (200, "reviews-v2")),
        ("/elsewhere", vec![], get.clone(), (404, "-")),
    ];
    for (path, headers, method, want) in cases {
        let got = pod_for(&mut t, method.clone(), path, headers).await;
        assert_eq!(
            (got.0, got.1.as_str()),
            *want,
            "{method} {path} {headers:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_modifiers_apply_to_request_and_response() {
    let (_world, _certs, _wp, mut t) = start().await;
    let headers = vec![
        ("x-set".to_string(), "from-client".to_string()),
        ("x-add".to_string(), "client".to_string()),
        ("x-remove".to_string(), "secret".to_string()),
    ];
    let r = t.get("http://reviews/mod", &headers).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-route"), Some("mod"));
    let seen: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(seen["headers"]["x-set"], "set-by-route");
    // `add` appends to the client's value; `set` replaced it.
    assert_eq!(seen["headers"]["x-add"], "client,added");
    assert!(seen["headers"].get("x-remove").is_none(), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_redirect_and_bad_backends() {
    let (world, _certs, _wp, mut t) = start().await;
    let r = t.get("http://reviews/old/page?q=1", &[]).await.unwrap();
    let seen: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(seen["uri"], "/new/page?q=1");

    let r = t.get("http://reviews/moved/here?q=1", &[]).await.unwrap();
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("http://reviews.example.com/moved/here?q=1")
    );

    let before = world.requests("reviews-v1") + world.requests("reviews-v2");
    for path in ["/zero", "/missing"] {
        let r = t.get(&format!("http://reviews{path}"), &[]).await.unwrap();
        assert_eq!(r.status, 500, "{path}");
    }
    assert_eq!(
        world.requests("reviews-v1") + world.requests("reviews-v2"),
        before
    );
}
