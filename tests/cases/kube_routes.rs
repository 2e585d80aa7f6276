//! GRPCRoutes and TCPRoutes read from the Kubernetes API (the in-process API
//! server): their status, GEP-1426's rule between route types, and TCPRoute's
//! CRD being absent or served only at the deprecated v1alpha2.

use crate::common::kube::{Cluster, GATEWAY};
use crate::common::{Certs, WaypointProc};
use serde_json::Value;
use std::time::{Duration, Instant};
use waypoint::testing::kube_api::{ResourceType, Verb};

const ROUTES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: 10.96.0.20
  ports: [{name: tcp-pg, port: 5432}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: greeter, namespace: shop}
spec:
  parentRefs: [{kind: Service, group: "", name: productpage, port: 9080}]
  rules:
  - matches: [{method: {service: helloworld.Greeter}}]
    backendRefs: [{name: productpage, port: 9080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{kind: Service, group: "", name: productpage, port: 9080}]
  rules: [{backendRefs: [{name: productpage, port: 9080}]}]
"#;

fn tcp_route(api_version: &str, name: &str, service: &str, port: u16) -> String {
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/{api_version}
kind: TCPRoute
metadata: {{name: {name}, namespace: shop}}
spec:
  parentRefs: [{{kind: Service, group: "", name: {service}, port: {port}}}]
  rules: [{{backendRefs: [{{name: db, port: 5432, weight: 3}}, {{name: nowhere, port: 5432}}]}}]
"#
    )
}

/// `(type, status, reason)` of our entry's conditions, once it is written.
async fn conditions(c: &Cluster, plural: &str, name: &str) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let parents = c
            .api
            .get(plural, "shop", name)
            .and_then(|r| r["status"]["parents"].as_array().cloned())
            .unwrap_or_default();
        if let Some(p) = parents.first() {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            return p["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| (s(&c["type"]), s(&c["status"]), s(&c["reason"])))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "{plural} shop/{name} never got a status"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn cond(t: &str, s: &str, r: &str) -> (String, String, String) {
    (t.into(), s.into(), r.into())
}

async fn start(c: &Cluster) -> (Certs, WaypointProc) {
    let certs = Certs::new();
    let wp = WaypointProc::start_kube(&c.kubeconfig, GATEWAY, &certs.waypoint_dir, &[], &[]).await;
    (certs, wp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_tcp_routes_get_status_and_the_grpc_route_wins_its_port() {
    let mut c = Cluster::new().await;
    c.add_pod("pp-1", "v1", true).await;
    let (_certs, wp) = start(&c).await;
    c.api.apply_yaml(ROUTES);
    c.api.apply_yaml(&tcp_route("v1", "pg", "db", 5432));
    // productpage's 9080 is named http: a TCPRoute never binds it.
    c.api
        .apply_yaml(&tcp_route("v1", "on-http", "productpage", 9080));

    assert_eq!(
        conditions(&c, "grpcroutes", "greeter").await,
        [
            cond("Accepted", "True", "Accepted"),
            cond("ResolvedRefs", "True", "ResolvedRefs")
        ]
    );
    assert_eq!(
        conditions(&c, "httproutes", "web").await[0],
        cond("Accepted", "False", "RouteReasonConflicted"),
        "{}",
        wp.logs()
    );
    assert_eq!(
        conditions(&c, "tcproutes", "pg").await,
        [
            cond("Accepted", "True", "Accepted"),
            cond("ResolvedRefs", "False", "BackendNotFound")
        ]
    );
    assert_eq!(
        conditions(&c, "tcproutes", "on-http").await[0],
        cond("Accepted", "False", "NoMatchingParent")
    );
    let web = c.api.get("httproutes", "shop", "web").unwrap();
    let message = web["status"]["parents"][0]["conditions"][0]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("GRPCRoute shop/greeter"), "{message}");
    // Every call made is one the checked-in ClusterRole grants.
    crate::common::rbac::assert_granted(&c.api, "docker/k8s/rbac.yaml");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_tcproute_crd_the_waypoint_is_ready_and_reads_it_once_installed() {
    let mut c = Cluster::new().await;
    c.add_pod("pp-1", "v1", true).await;
    c.api.remove_crd("tcproutes.gateway.networking.k8s.io");
    // Ready without TCPRoutes, and GRPCRoutes are served meanwhile.
    let (_certs, wp) = start(&c).await;
    c.api.apply_yaml(ROUTES);
    assert_eq!(
        conditions(&c, "grpcroutes", "greeter").await[0],
        cond("Accepted", "True", "Accepted")
    );
    let said = wp.logs().matches("TCPRoute: not served").count();
    assert_eq!(said, 1, "the absent kind is logged once:\n{}", wp.logs());

    c.api.install_crd("tcproutes.gateway.networking.k8s.io");
    c.api.apply_yaml(&tcp_route("v1", "pg", "db", 5432));
    assert_eq!(
        conditions(&c, "tcproutes", "pg").await[0],
        cond("Accepted", "True", "Accepted")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcproute_served_only_at_v1alpha2_is_read_and_written_there() {
    let c = Cluster::new().await;
    c.api.register(ResourceType::new(
        "gateway.networking.k8s.io",
        &["v1alpha2"],
        "tcproutes",
        "TCPRoute",
        true,
        true,
    ));
    let (_certs, _wp) = start(&c).await;
    c.api.apply_yaml(ROUTES);
    c.api.apply_yaml(&tcp_route("v1alpha2", "pg", "db", 5432));
    assert_eq!(
        conditions(&c, "tcproutes", "pg").await[0],
        cond("Accepted", "True", "Accepted")
    );
    let patches = c.api.requests_to(Verb::Patch, "tcproutes/status");
    assert!(
        patches.iter().all(|r| r.path.contains("/v1alpha2/")),
        "{:?}",
        patches.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
}
