//! `waypoint check`: the routing table for good config, located errors for bad.

use crate::common::proc::run;

#[test]
fn check_prints_the_seed_routing_table() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/productpage");
    let out = run(&["check", "--config-dir", dir]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("productpage.default.svc.cluster.local"),
        "{stdout}"
    );
    assert!(
        stdout.contains("VirtualService default/productpage-routing"),
        "{stdout}"
    );
    assert!(stdout.contains("90"), "{stdout}");
}

#[test]
fn check_names_file_resource_and_field_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad-routes.yaml"),
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews}, weight: ninety}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ratings, namespace: shop}
spec:
  parentRefs: [{kind: Service, group: "", name: ratings}]
  rules:
  - matches: [{headers: [{type: RegularExpression, name: x-user, value: "(unclosed"}]}]
"#,
    )
    .unwrap();
    let out = run(&["check", "--config-dir", dir.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let weight = stderr
        .lines()
        .find(|l| l.contains("VirtualService shop/reviews"))
        .unwrap_or_else(|| panic!("no VirtualService error in:\n{stderr}"));
    assert!(weight.contains("bad-routes.yaml"), "{weight}");
    assert!(weight.contains("spec.http[0].route[0].weight"), "{weight}");
    let regex = stderr
        .lines()
        .find(|l| l.contains("HTTPRoute shop/ratings"))
        .unwrap_or_else(|| panic!("no HTTPRoute error in:\n{stderr}"));
    assert!(regex.contains("bad-routes.yaml"), "{regex}");
    assert!(
        regex.contains("spec.rules[0].matches[0].headers[0]"),
        "{regex}"
    );
}

#[test]
fn run_refuses_to_start_on_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("x.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: banana}]}\n",
    )
    .unwrap();
    let out = run(&[
        "run",
        "--config-dir",
        dir.path().to_str().unwrap(),
        "--cert-dir",
        "/nonexistent",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Service default/a"), "{stderr}");
    assert!(stderr.contains("spec.ports[0].port"), "{stderr}");
}
