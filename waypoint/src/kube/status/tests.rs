use super::*;
use std::collections::BTreeSet;

fn objects(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

const WORLD: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec: {clusterIP: 10.96.0.1, ports: [{name: http, port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: good, namespace: shop, generation: 3}
spec:
  parentRefs: [{kind: Service, group: "", name: cart, port: 80}, {kind: Service, group: "", name: not-ours}]
  rules: [{backendRefs: [{name: cart, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: dangling, namespace: shop, generation: 1}
spec:
  parentRefs: [{kind: Service, group: "", name: cart}]
  rules: [{backendRefs: [{name: nowhere, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wrong-port, namespace: shop, generation: 1}
spec:
  parentRefs: [{kind: Service, group: "", name: cart, port: 9999}]
  rules: [{backendRefs: [{name: cart, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: broken, namespace: shop, generation: 2}
spec:
  parentRefs: [{kind: Service, group: "", name: cart}]
  rules: [{matches: [{path: {type: Bogus, value: /x}}], backendRefs: [{name: cart, port: 80}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bad-vs, namespace: shop}
spec:
  hosts: [cart]
  http: [{route: [{destination: {host: cart}, weight: "lots"}]}]
"#;

fn conditions(d: &Desired, route: &str) -> Vec<(&'static str, bool, &'static str)> {
    d.routes[&(
        ResourceKind::HTTPRoute,
        "shop".to_string(),
        route.to_string(),
    )]
        .parents[0]
        .conditions
        .iter()
        .map(|c| (c.kind, c.ok, c.reason))
        .collect()
}

#[test]
fn each_served_parent_gets_the_spec_conditions() {
    let objs = objects(WORLD);
    let loaded = waypoint_config::load_objects(&objs, &Default::default());
    let served = BTreeSet::from([("shop".to_string(), "cart".to_string())]);
    let gw: GatewayRef = "shop/wp".parse().unwrap();
    let d = desired(&objs, &loaded.rejected, &loaded.warnings, &[], &served, &gw);

    let good = &d.routes[&(
        ResourceKind::HTTPRoute,
        "shop".to_string(),
        "good".to_string(),
    )];
    assert_eq!(good.generation, 3);
    assert_eq!(good.parents.len(), 1, "only the served parent");
    assert_eq!(
        good.parents[0].parent_ref,
        json!({"group": "", "kind": "Service", "namespace": "shop", "name": "cart", "port": 80})
    );
    assert_eq!(
        conditions(&d, "good"),
        [
            ("Accepted", true, "Accepted"),
            ("ResolvedRefs", true, "ResolvedRefs")
        ]
    );
    assert_eq!(
        conditions(&d, "dangling"),
        [
            ("Accepted", true, "Accepted"),
            ("ResolvedRefs", false, "BackendNotFound")
        ]
    );
    assert_eq!(
        conditions(&d, "wrong-port")[0],
        ("Accepted", false, "NoMatchingParent")
    );
    let broken = &d.routes[&(
        ResourceKind::HTTPRoute,
        "shop".to_string(),
        "broken".to_string(),
    )]
        .parents[0]
        .conditions[0];
    assert_eq!((broken.ok, broken.reason), (false, "UnsupportedValue"));
    assert!(
        broken
            .message
            .contains("spec.rules[0].matches[0].path.type"),
        "{}",
        broken.message
    );

    assert_eq!(d.events.len(), 1, "{:?}", d.events);
    assert_eq!(
        d.events[0].resource.to_string(),
        "VirtualService shop/bad-vs"
    );
}

/// A GRPCRoute and an HTTPRoute of the same name on one port, and TCPRoutes.
const KINDS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec: {clusterIP: 10.96.0.1, ports: [{name: grpc, port: 80}, {name: tcp-db, port: 5432}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: same, namespace: shop, generation: 2}
spec:
  parentRefs: [{kind: Service, group: "", name: cart, port: 80}]
  rules: [{backendRefs: [{name: cart, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: same, namespace: shop, generation: 1}
spec:
  parentRefs: [{kind: Service, group: "", name: cart, port: 80}]
  rules: [{backendRefs: [{name: cart, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: db, namespace: shop, generation: 1}
spec:
  parentRefs: [{kind: Service, group: "", name: cart}]
  rules: [{backendRefs: [{name: cart, port: 5432}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: theirs, namespace: other, generation: 1}
spec:
  parentRefs: [{kind: Service, group: "", name: cart, namespace: shop}]
  rules: [{backendRefs: [{name: cart, namespace: shop, port: 5432}]}]
"#;

#[test]
fn grpc_and_tcp_routes_get_status_and_a_conflict_says_which_route_won() {
    let objs = objects(KINDS);
    let loaded = waypoint_config::load_objects(&objs, &Default::default());
    let conflicts: Vec<&waypoint_ir::RouteConflict> = loaded
        .snapshot
        .services
        .iter()
        .flat_map(|s| s.conflicts())
        .collect();
    let served = BTreeSet::from([("shop".to_string(), "cart".to_string())]);
    let gw: GatewayRef = "shop/wp".parse().unwrap();
    let d = desired(
        &objs,
        &loaded.rejected,
        &loaded.warnings,
        &conflicts,
        &served,
        &gw,
    );
    let key = |k, ns: &str, n: &str| (k, ns.to_string(), n.to_string());
    let first = |k, ns: &str, n: &str| d.routes[&key(k, ns, n)].parents[0].conditions[0].clone();

    let grpc = first(ResourceKind::GRPCRoute, "shop", "same");
    assert_eq!((grpc.ok, grpc.reason), (true, "Accepted"));
    let http = first(ResourceKind::HTTPRoute, "shop", "same");
    assert_eq!((http.ok, http.reason), (false, CONFLICTED));
    assert!(
        http.message.contains("GRPCRoute shop/same"),
        "{}",
        http.message
    );
    // Each is written at the version it was read.
    let tcp = &d.routes[&key(ResourceKind::TCPRoute, "shop", "db")];
    assert_eq!(tcp.api_version, "gateway.networking.k8s.io/v1alpha2");
    // Its port-less parent binds the TCP port; the gRPC port is not its to take.
    assert_eq!(
        (
            tcp.parents[0].conditions[0].ok,
            tcp.parents[0].conditions[0].reason
        ),
        (true, "Accepted")
    );
    let consumer = first(ResourceKind::TCPRoute, "other", "theirs");
    assert_eq!((consumer.ok, consumer.reason), (false, "UnsupportedValue"));
    // No Events for routes: their status says it.
    assert!(d.events.is_empty(), "{:?}", d.events);
}
