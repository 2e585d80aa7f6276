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
