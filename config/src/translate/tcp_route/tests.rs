//! TCPRoute translation as a user sees it: which route a connection to a port
//! takes (`Service::tcp_route`), where it is not applied, and what is rejected.

use crate::{load_objects, load_sources, Diagnostic, Loaded, Options, Source};
use waypoint_ir::{BackendTarget, Service};

const DB: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: db, namespace: ns}
spec:
  clusterIP: 10.96.8.1
  ports: [{name: tcp-pg, port: 5432}, {name: http, port: 80}, {port: 7000}]
---
apiVersion: v1
kind: Service
metadata: {name: db-v2, namespace: ns}
spec: {clusterIP: 10.96.8.2, ports: [{name: tcp, port: 5432}]}
"#;

fn tcp(name: &str, created: &str, parent: &str, backends: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: TCPRoute\nmetadata: {{name: {name}, namespace: ns, creationTimestamp: \"{created}\"}}\nspec:\n  parentRefs: [{parent}]\n  rules: [{{backendRefs: {backends}}}]\n"
    )
}

fn load(docs: &[String]) -> Result<Loaded, Vec<Diagnostic>> {
    let content = std::iter::once(DB.to_string())
        .chain(docs.iter().cloned())
        .collect::<Vec<_>>()
        .join("---\n");
    load_sources(
        &[Source {
            file: "t.yaml".into(),
            content,
        }],
        &Options::default(),
    )
}

fn db(l: &Loaded) -> &Service {
    l.snapshot.services.iter().find(|s| s.name == "db").unwrap()
}

fn taken(svc: &Service, port: u16) -> Option<&str> {
    svc.tcp_route(port).map(|r| r.name.as_str())
}

#[test]
fn weights_and_invalid_backends_carry_over() {
    let l = load(&[tcp(
        "split",
        "",
        "{kind: Service, name: db, port: 5432}",
        "[{name: db, port: 5432, weight: 90}, {name: db-v2, port: 5432, weight: 10}, {name: gone, port: 5432, weight: 5}]",
    )])
    .unwrap();
    let r = db(&l).tcp_route(5432).unwrap();
    assert_eq!(r.port, Some(5432));
    let weights: Vec<u32> = r.backends.iter().map(|b| b.weight).collect();
    assert_eq!(weights, [90, 10, 5]);
    assert!(matches!(
        r.backends[2].target,
        BackendTarget::Invalid { status: 500, .. }
    ));
    assert!(l
        .warnings
        .iter()
        .any(|w| w.field == "spec.rules[0].backendRefs[2].name"));
    // Another port of the service has no TCPRoute: the data path sends it on.
    assert!(db(&l).tcp_route(7000).is_none());
}

#[test]
fn the_oldest_route_takes_a_port_whatever_its_port_binding() {
    let l = load(&[
        tcp(
            "newer-specific",
            "2024-06-01T00:00:00Z",
            "{kind: Service, name: db, port: 5432}",
            "[{name: db-v2, port: 5432}]",
        ),
        tcp(
            "older-any",
            "2024-01-01T00:00:00Z",
            "{kind: Service, name: db}",
            "[{name: db, port: 5432}]",
        ),
    ])
    .unwrap();
    let svc = db(&l);
    // GEP-2644: the oldest wins; the spec ranks no port-specific route higher.
    assert_eq!(taken(svc, 5432), Some("TCPRoute ns/older-any rules[0]"));
    assert_eq!(taken(svc, 7000), Some("TCPRoute ns/older-any rules[0]"));
    // Port-less, and no port lost: it stays port-less.
    assert_eq!(svc.tcp_routes[0].port, None);
    let report = crate::routing_table(&l.snapshot);
    assert!(
        report.contains("never reached: TCPRoute ns/older-any rules[0]"),
        "{report}"
    );
}

#[test]
fn an_http_port_is_never_bound() {
    let l = load(&[tcp(
        "on-http",
        "",
        "{kind: Service, name: db, port: 80}",
        "[{name: db, port: 5432}]",
    )])
    .unwrap();
    assert!(db(&l).tcp_routes.is_empty());
    let w = l
        .warnings
        .iter()
        .find(|w| w.field == "spec.parentRefs[0].port")
        .unwrap();
    assert!(w.message.contains("carries HTTP"), "{w}");
}

#[test]
fn an_http_route_on_a_detected_port_wins_over_a_tcp_route() {
    let http = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: ns}
spec:
  parentRefs: [{kind: Service, name: db, port: 7000}]
  rules: [{backendRefs: [{name: db, port: 7000}]}]
"#;
    let l = load(&[
        tcp(
            "any",
            "",
            "{kind: Service, name: db}",
            "[{name: db, port: 5432}]",
        ),
        http.to_string(),
    ])
    .unwrap();
    let svc = db(&l);
    // 5432 (tcp) is kept; 80 (http) never bound; 7000 (detect) lost to the HTTPRoute.
    assert_eq!(taken(svc, 5432), Some("TCPRoute ns/any rules[0]"));
    assert_eq!(taken(svc, 7000), None);
    assert_eq!(
        svc.tcp_routes.iter().map(|r| r.port).collect::<Vec<_>>(),
        [Some(5432)]
    );
    let c: Vec<_> = svc.conflicts().collect();
    assert_eq!(c.len(), 1);
    assert_eq!(
        (
            c[0].route.to_string(),
            c[0].ports.clone(),
            c[0].whole,
            c[0].winners[0].to_string()
        ),
        (
            "TCPRoute ns/any".into(),
            vec![7000],
            false,
            "HTTPRoute ns/web".into()
        )
    );
}

#[test]
fn rules_without_backends_are_rejected_and_others_stay_live() {
    let bad = "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {name: bad, namespace: ns}\nspec:\n  parentRefs: [{kind: Service, name: db}]\n  rules: [{backendRefs: []}]\n";
    let good = tcp(
        "good",
        "",
        "{kind: Service, name: db, port: 5432}",
        "[{name: db-v2, port: 5432}]",
    );
    let content = format!("{DB}---\n{bad}---\n{good}");
    let objects: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&content)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let p = load_objects(&objects, &Options::default());
    let rejected: Vec<String> = p.rejected.iter().map(|d| d.to_string()).collect();
    assert_eq!(p.rejected.len(), 1, "{rejected:?}");
    assert_eq!(
        p.rejected[0].resource.as_ref().unwrap().to_string(),
        "TCPRoute ns/bad"
    );
    assert_eq!(p.rejected[0].field, "spec.rules[0].backendRefs");
    let svc = p.snapshot.services.iter().find(|s| s.name == "db").unwrap();
    assert_eq!(taken(svc, 5432), Some("TCPRoute ns/good rules[0]"));
}

#[test]
fn a_consumer_tcp_route_is_ignored_with_a_warning() {
    let consumer = "apiVersion: gateway.networking.k8s.io/v1\nkind: TCPRoute\nmetadata: {name: mine, namespace: other}\nspec:\n  parentRefs: [{kind: Service, name: db, namespace: ns}]\n  rules: [{backendRefs: [{name: db, namespace: ns, port: 5432}]}]\n";
    let l = load(&[consumer.to_string()]).unwrap();
    assert!(db(&l).tcp_routes.is_empty());
    assert!(l
        .warnings
        .iter()
        .any(|w| w.field == "spec.parentRefs[0].namespace"
            && w.message.contains("consumer TCPRoutes")));
}
