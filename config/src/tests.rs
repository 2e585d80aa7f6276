//! Translation tests: golden files for whole worlds, plus direct checks of the
//! semantics that matter most.
//!
//! Each `testdata/<case>.in.yaml` is loaded and rendered (the routing table, or the
//! diagnostics) and compared with `<case>.out.txt`. `UPDATE_GOLDEN=1 cargo test -p
//! waypoint-config` rewrites the expected files; review the diff.

use crate::{load_sources, routing_table, Loaded, Options, Severity, Source};
use std::path::Path;
use waypoint_ir::{BackendTarget, RouteAction, Snapshot};

fn testdata() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata"))
}

fn load_case(name: &str) -> Result<Loaded, Vec<crate::Diagnostic>> {
    let file = format!("{name}.in.yaml");
    let content = std::fs::read_to_string(testdata().join(&file)).unwrap();
    load_sources(&[Source { file, content }], &Options::default())
}

fn render(result: &Result<Loaded, Vec<crate::Diagnostic>>) -> String {
    match result {
        Ok(loaded) => {
            let mut out = String::new();
            for w in &loaded.warnings {
                let level = match w.severity {
                    Severity::Refused => "refused",
                    _ => "warning",
                };
                out.push_str(&format!("{level}: {w}\n"));
            }
            out + &routing_table(&loaded.snapshot)
        }
        Err(diags) => diags
            .iter()
            .map(|d| format!("{:?}: {d}\n", d.severity))
            .collect(),
    }
}

#[test]
fn golden_files() {
    let mut cases: Vec<_> = std::fs::read_dir(testdata())
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".in.yaml")
                .map(String::from)
        })
        .collect();
    cases.sort();
    assert!(cases.len() >= 5, "test cases went missing: {cases:?}");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failed = Vec::new();
    for case in cases {
        let got = render(&load_case(&case));
        let path = testdata().join(format!("{case}.out.txt"));
        if update {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if got != want {
            eprintln!("--- {case}: got ---\n{got}--- want ---\n{want}");
            failed.push(case);
        }
    }
    assert!(
        failed.is_empty(),
        "golden mismatch (UPDATE_GOLDEN=1 to accept): {failed:?}"
    );
}

fn snapshot(case: &str) -> Snapshot {
    load_case(case)
        .unwrap_or_else(|d| panic!("{case}: {d:?}"))
        .snapshot
}

#[test]
fn the_seed_routes_v2_by_header_then_splits_90_10() {
    let s = snapshot("seed");
    let svc = &s.services[0];
    assert_eq!(svc.hostname, "productpage.default.svc.cluster.local");
    assert_eq!(svc.routes.len(), 2);
    let RouteAction::Forward(split) = &svc.routes[1].action else {
        panic!()
    };
    let weights: Vec<(u32, Option<usize>)> = split
        .iter()
        .map(|b| match &b.target {
            BackendTarget::Service { subset, .. } => (b.weight, *subset),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(weights, vec![(90, Some(0)), (10, Some(1))]);
    assert_eq!(svc.subsets[0].endpoints.len(), 2);
    assert!(s
        .resolve_target("10.96.0.10:9080".parse().unwrap())
        .is_some());
    assert!(s.resolve_host("productpage.default").is_some());
    assert_eq!(s.waypoint.as_ref().unwrap().listeners[0].1, 15008);
}

#[test]
fn httproute_matches_sort_by_gateway_api_precedence() {
    let s = snapshot("httproute_precedence");
    let names: Vec<&str> = s.services[0]
        .routes
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        names,
        vec![
            "HTTPRoute shop/older rules[0].matches[2]", // Exact /api
            "HTTPRoute shop/older rules[0].matches[3]", // longest prefix /api/items
            "HTTPRoute shop/older rules[0].matches[4]", // method
            "HTTPRoute shop/older rules[0].matches[1]", // a header
            "HTTPRoute shop/older rules[0].matches[0]", // older route wins the tie
            "HTTPRoute shop/newer rules[0].matches[0]",
            "HTTPRoute shop/older rules[1].matches[0]", // the default match, PathPrefix /
            "HTTPRoute shop/newer rules[1].matches[0]", // regex paths last
        ]
    );
}

#[test]
fn httproute_shadows_virtual_service_and_virtual_services_merge_oldest_first() {
    let loaded = load_case("httproute_and_virtualservice").unwrap();
    let s = &loaded.snapshot;
    let ratings = s.services.iter().find(|x| x.name == "ratings").unwrap();
    assert!(
        matches!(&ratings.route_source, waypoint_ir::RouteSource::GatewayApi { shadowed, .. } if shadowed.len() == 1)
    );
    // The unsupported RequestMirror filter answers 500 rather than being skipped.
    assert!(matches!(
        ratings.routes[0].action,
        RouteAction::DirectResponse { status: 500, .. }
    ));
    let details = s.services.iter().find(|x| x.name == "details").unwrap();
    let names: Vec<&str> = details.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "VirtualService default/details-old http[0]",
            "VirtualService default/details-old http[1]",
            "VirtualService default/details-old http[2]",
            "VirtualService default/details-new http[0]",
        ]
    );
    let w = |needle: &str| {
        loaded
            .warnings
            .iter()
            .any(|w| w.to_string().contains(needle))
    };
    assert!(w(
        "VirtualService default/ratings-vs also routes ratings.default.svc.cluster.local"
    ));
    assert!(w("spec.http[2].route[0].destination.subset"));
    assert!(w("spec.http[2].route[1].destination.host"));
}

#[test]
fn virtual_services_for_one_host_merge_by_age_then_name() {
    let s = snapshot("virtual_service_merge");
    let names: Vec<&str> = s.services[0]
        .routes
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "VirtualService default/vs-oldest http[0]",
            "VirtualService default/vs-route-a http[0]",
            "VirtualService default/vs-route-b http[0]",
            "VirtualService mesh/from-the-waypoint http[0]",
        ]
    );
}

#[test]
fn a_gateway_of_our_class_is_the_waypoint_as_istios_is() {
    let content = std::fs::read_to_string(testdata().join("virtual_service_merge.in.yaml"))
        .unwrap()
        .replace(
            "gatewayClassName: istio-waypoint",
            "gatewayClassName: pingora-waypoint",
        );
    let file = "ours.yaml".to_string();
    let s = load_sources(&[Source { file, content }], &Options::default())
        .unwrap()
        .snapshot;
    assert_eq!(s.waypoint.as_ref().unwrap().source.namespace, "mesh");
    let last = s.services[0].routes.last().unwrap();
    assert_eq!(last.name, "VirtualService mesh/from-the-waypoint http[0]");
}

#[test]
fn consumer_routes_serve_their_namespace_and_unbound_ports_get_the_default() {
    let s = snapshot("gamma_consumer_routes");
    let echo = s.services.iter().find(|x| x.name == "echo-v1").unwrap();
    let first = |ns: Option<&str>, port: u16| {
        let (_, table) = echo.route_table(ns, port);
        table
            .iter()
            .find(|r| r.port.is_none_or(|p| p == port))
            .map(|r| r.name.as_str())
    };
    let producer = Some("HTTPRoute a/producer rules[0].matches[0]");
    assert_eq!(
        first(Some("b"), 80),
        Some("HTTPRoute b/consumer rules[0].matches[0]")
    );
    assert_eq!(
        first(Some("b"), 8080),
        Some("HTTPRoute b/consumer rules[0].matches[0]")
    );
    // c's route binds 8080 only; on 80 its clients get the producer's routes.
    assert_eq!(first(Some("c"), 80), producer);
    assert_eq!(
        first(Some("c"), 8080),
        Some("HTTPRoute c/consumer rules[0].matches[0]")
    );
    assert_eq!(first(Some("a"), 80), producer);
    // No source identity (plaintext): the producer's routes.
    assert_eq!(first(None, 80), producer);
    assert_eq!(first(None, 8080), Some("default"));
    let RouteAction::Forward(b) = &echo.route_table(Some("b"), 80).1[0].action else {
        panic!()
    };
    assert!(
        matches!(b[0].target, BackendTarget::Service { .. }),
        "no grant needed"
    );
}

#[test]
fn a_host_that_is_an_address_resolves_like_a_connect_to_it() {
    let s = snapshot("seed");
    let vip = s.resolve_target("10.96.0.10:9080".parse().unwrap());
    assert!(vip.is_some());
    assert_eq!(s.resolve_host("10.96.0.10:9080"), vip);
    assert_eq!(s.resolve_host("10.96.0.10:9081"), None);
    // No port: HTTP's default, 80, which this service does not have.
    assert_eq!(s.resolve_host("10.96.0.10"), None);
    let pod = s.services[0].endpoints[0].address;
    let target = s.services[0].endpoints[0].target_port(9080).unwrap();
    let host = std::net::SocketAddr::new(pod, target).to_string();
    assert!(matches!(
        s.resolve_host(&host),
        Some(waypoint_ir::Target::Workload { .. })
    ));
}

#[test]
fn backend_filters_apply_to_their_backend_and_unsupported_ones_answer_500() {
    let s = snapshot("backend_filters");
    let RouteAction::Forward(b) = &s.services[0].routes[0].action else {
        panic!()
    };
    let f = b[0].filters.as_ref().unwrap();
    assert_eq!(f.request_headers.remove, ["x-drop"]);
    assert!(f.rewrite.is_some());
    assert_eq!(
        b[1].filters
            .as_ref()
            .unwrap()
            .redirect
            .as_ref()
            .unwrap()
            .status,
        307
    );
    assert!(matches!(
        &b[2].target,
        BackendTarget::Invalid { status: 500, reason } if reason.contains("RequestMirror")
    ));
}

#[test]
fn endpoints_resolve_named_ports_slices_and_service_entries() {
    let s = snapshot("endpoints");
    let fe = s.services.iter().find(|x| x.name == "frontend").unwrap();
    let ports: Vec<_> = fe
        .endpoints
        .iter()
        .map(|e| (e.address.to_string(), e.ports.get(&80).copied(), e.in_mesh))
        .collect();
    assert_eq!(
        ports,
        vec![
            ("10.0.0.1".into(), Some(8080), true),
            ("10.0.0.2".into(), Some(8081), false)
        ]
    );
    let be = s.services.iter().find(|x| x.name == "backend").unwrap();
    assert_eq!(
        be.endpoints.len(),
        1,
        "not-ready slice endpoints are skipped"
    );
    assert_eq!(be.endpoints[0].target_port(50051), Some(7070));
    assert_eq!(
        be.endpoints[0].identity.as_deref(),
        Some("spiffe://cluster.local/ns/web/sa/backend")
    );
    let legacy = s
        .services
        .iter()
        .find(|x| x.hostname == "legacy.example.com")
        .unwrap();
    let eps: Vec<_> = legacy
        .endpoints
        .iter()
        .map(|e| (e.address.to_string(), e.target_port(80)))
        .collect();
    assert_eq!(
        eps,
        vec![
            ("192.0.2.10".into(), Some(8000)),
            ("192.0.2.11".into(), Some(9000)),
            ("192.0.2.12".into(), Some(8000))
        ]
    );
    assert!(s.resolve_host("legacy.example.com:80").is_some());
}

#[test]
fn every_error_names_file_resource_and_field() {
    let diags = load_case("errors").unwrap_err();
    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.to_string())
        .collect();
    let expect = [
        "errors.in.yaml: VirtualService shop/reviews: spec.http[0].route[0].weight: invalid type: string \"ninety\"",
        "errors.in.yaml: HTTPRoute shop/ratings: spec.rules[0].matches[0].headers[0].value: invalid regex \"(unclosed\": unclosed group",
        "errors.in.yaml: HTTPRoute shop/ratings: spec.rules[1].matches[0].path.type: unknown path match type \"Glob\"",
        "errors.in.yaml: HTTPRoute shop/ratings: spec.rules[2].filters[0].urlRewrite: required when type is URLRewrite",
        "errors.in.yaml: Service shop/bad-ip: spec.clusterIP: \"10.96.999.1\" is not an IP address",
        "errors.in.yaml: VirtualService shop/empty-rule: spec.http[0].match[0].uri: set only one of exact, prefix, regex",
        "errors.in.yaml: VirtualService shop/empty-rule: spec.http[0]: one of route, redirect or directResponse is required",
        "errors.in.yaml: VirtualService shop/empty-rule: spec.http[1]: one of route, redirect or directResponse is required",
        "errors.in.yaml: Pod shop/<unnamed>: metadata.name: missing",
        "errors.in.yaml: BackendTrafficPolicy shop/bad-limits: spec.rateLimit.local.rules[0].clientSelectors[0].sourceCIDR.value: \"10.0.0.0\" is not a CIDR",
        "errors.in.yaml: BackendTrafficPolicy shop/bad-limits: spec.rateLimit.local.rules[0].limit.unit: unknown unit \"Fortnight\"",
        "errors.in.yaml: VirtualService shop/bad-policy: spec.http[0].timeout: \"soon\" is not a duration",
        "errors.in.yaml: VirtualService shop/bad-policy: spec.http[0].retries.retryOn: unknown retry condition \"sometimes\"",
        "errors.in.yaml: VirtualService shop/bad-policy: spec.http[0].fault.abort.percentage.value: 150 is not between 0 and 100",
        "errors.in.yaml: VirtualService shop/bad-policy: spec.http[1].fault.abort.grpcStatus: \"Unavailable\" is not a gRPC status code name",
        "errors.in.yaml: VirtualService shop/bad-policy: spec.http[2].fault.abort.http2Error: not supported",
        "errors.in.yaml: a document without apiVersion and kind",
    ];
    for e in expect {
        assert!(
            errors.iter().any(|got| got.starts_with(e)),
            "missing {e:?} in {errors:#?}"
        );
    }
    assert_eq!(errors.len(), expect.len(), "{errors:#?}");
}

#[test]
fn load_dir_reads_a_configmap_mount_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("..2026_11_29_00_00_00.000");
    std::fs::create_dir(&data).unwrap();
    let seed = std::fs::read_to_string(testdata().join("seed.in.yaml")).unwrap();
    std::fs::write(data.join("world.yaml"), seed).unwrap();
    std::os::unix::fs::symlink(&data, dir.path().join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/world.yaml", dir.path().join("world.yaml")).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
    let loaded = crate::load_dir(dir.path(), &Options::default()).unwrap();
    assert_eq!(loaded.snapshot.services.len(), 1);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn routing_rules_the_api_server_would_reject_are_errors_at_their_field() {
    let diags = load_case("errors_routing").unwrap_err();
    let got: Vec<String> = diags
        .iter()
        .map(|d| format!("{:?}: {d}", d.severity))
        .collect();
    let f = "errors_routing.in.yaml";
    let want = [
        format!("Error: {f}: HTTPRoute shop/ratings-typed: spec.rules[0].backendRefs[0].port: invalid type: string \"http\", expected u16"),
        format!("Error: {f}: document 5: not valid YAML: did not find expected ',' or '}}' at line 66 column 9, while parsing a flow mapping at line 65 column 11"),
        format!("Error: {f}: VirtualService shop/ratings: spec.http[0].route: total destination weight = 0: give at least one destination a weight"),
        format!("Error: {f}: HTTPRoute shop/ratings: spec.rules[0].filters[0].type: unknown filter type \"Teleport\""),
        format!("Error: {f}: HTTPRoute shop/ratings: spec.rules[1].backendRefs: RequestRedirect filter must not be used together with backendRefs"),
        format!("Error: {f}: HTTPRoute shop/ratings: spec.rules[2].filters[0].urlRewrite.path: When using URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified"),
        format!("Error: {f}: HTTPRoute shop/ratings: spec.rules[3].filters[1].type: RequestHeaderModifier filter cannot be repeated"),
        format!("Error: {f}: HTTPRoute shop/ratings: spec.rules[4].backendRefs[0].filters[1].type: ResponseHeaderModifier filter cannot be repeated"),
        format!("Error: {f}: HTTPRoute shop/ratings: spec.rules[4].backendRefs[0].filters: may specify either RequestRedirect or URLRewrite, but not both"),
        format!("Error: {f}: HTTPRoute shop/ratings: spec.rules[4].backendRefs[0].filters[3].urlRewrite.path: Within backendRefs, when using URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified"),
        format!("Error: {f}: HTTPRoute shop/ratings: spec.rules[5].backendRefs[0].filters[0].requestHeaderModifier: required when type is RequestHeaderModifier"),
        format!("Error: {f}: HTTPRoute shop/ratings: spec.rules[5].backendRefs[1].filters[0].type: unknown filter type \"Teleport\""),
    ];
    assert_eq!(got, want);
}

#[test]
fn istio_merges_destination_rules_weighs_like_istio_and_refuses_unknown_conditions() {
    let loaded = load_case("istio_semantics").unwrap();
    let s = &loaded.snapshot;
    let reviews = &s.services[0];
    assert_eq!(reviews.source.namespace, "shop");
    assert_eq!(
        reviews.addresses[0].to_string(),
        "10.96.2.1",
        "first definition kept"
    );
    // Subsets concatenate; the first definition of v2 and the first top-level
    // trafficPolicy win.
    let subsets: Vec<(&str, &str, usize)> = reviews
        .subsets
        .iter()
        .map(|x| {
            (
                x.name.as_str(),
                x.labels["version"].as_str(),
                x.endpoints.len(),
            )
        })
        .collect();
    assert_eq!(
        subsets,
        vec![("v1", "v1", 1), ("v2", "v2", 1), ("v3", "v3", 1)]
    );
    assert_eq!(reviews.traffic.lb, waypoint_ir::LbPolicy::RoundRobin);
    assert_eq!(reviews.subsets[2].source.name, "reviews-extra");
    // http[0] had no match that can apply and is gone; http[1] keeps its prefix match.
    let names: Vec<&str> = reviews.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "VirtualService shop/reviews http[1] (some-client-conditions)",
            "VirtualService shop/reviews http[2] (absent-weight-is-zero)",
            "VirtualService shop/reviews http[3]",
        ]
    );
    assert_eq!(reviews.routes[0].matches.len(), 1);
    let weights = |i: usize| -> Vec<u32> {
        let RouteAction::Forward(b) = &reviews.routes[i].action else {
            panic!("{:?}", reviews.routes[i].action)
        };
        b.iter().map(|b| b.weight).collect()
    };
    assert_eq!(
        weights(0),
        vec![100],
        "a lone destination takes all traffic"
    );
    assert_eq!(weights(1), vec![0, 30], "an absent weight is 0");
    let RouteAction::Forward(b) = &reviews.routes[2].action else {
        panic!()
    };
    assert!(matches!(
        &b[0].target,
        BackendTarget::Invalid { status: 503, .. }
    ));
    // The short name stays with the first service in namespace/name order.
    let short = s.resolve_host("reviews").unwrap();
    assert!(matches!(short, waypoint_ir::Target::Service { service, .. } if service.0 == 0));
    assert!(s.resolve_host("reviews.web").is_some());
    let warned = |needle: &str| {
        loaded
            .warnings
            .iter()
            .any(|w| w.to_string().contains(needle))
    };
    assert!(warned(
        "Service shop/reviews: metadata.name: already defined"
    ));
    assert!(warned(
        "spec.http[0].match[0].sourceLabels: sourceLabels matches are not supported"
    ));
    assert!(warned("spec.hosts[1]: no service \"reviews.shop\" is known (Istio takes a name with a dot as fully qualified; write \"reviews.shop.svc.cluster.local\""));
    assert!(warned(
        "Service web/reviews: host \"reviews\" already names reviews.shop.svc.cluster.local"
    ));
    assert!(!warned("nowhere"), "networking.istio.io/v2 is not read");
    assert_eq!(loaded.warnings.len(), 9, "{:#?}", loaded.warnings);
}

#[test]
fn the_productpage_example_loads_and_shows_the_split() {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/productpage"
    ));
    let loaded = crate::load_dir(dir, &Options::default()).unwrap_or_else(|d| panic!("{d:#?}"));
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let table = routing_table(&loaded.snapshot);
    for needle in [
        "routes from VirtualService default/productpage-routing",
        "when header version=v2",
        "90% productpage.default.svc.cluster.local:9080 subset v1, 10% productpage.default.svc.cluster.local:9080 subset v2",
        "subset v1 {version=v1}: 2 endpoint(s)",
        "subset v2 {version=v2}: 1 endpoint(s)",
        "waypoint Gateway default/productpage-waypoint (listeners: mesh 15008/HBONE)",
    ] {
        assert!(table.contains(needle), "missing {needle:?} in\n{table}");
    }
    // The seed in routing.yaml must stay verbatim: the demo and the brief share it.
    let routing = std::fs::read_to_string(dir.join("routing.yaml")).unwrap();
    assert!(routing.contains(
        "  - route:\n    - {destination: {host: productpage, subset: v1}, weight: 90}\n    - {destination: {host: productpage, subset: v2}, weight: 10}\n"
    ));
}

#[test]
fn a_yaml_syntax_error_names_the_file_and_line_and_does_not_hang() {
    let src = Source {
        file: "broken.yaml".into(),
        content: "apiVersion: v1\nkind: Service\nmetadata: {name: a\n---\napiVersion: v1\n".into(),
    };
    let diags = load_sources(&[src], &Options::default()).unwrap_err();
    assert_eq!(diags.len(), 1, "{diags:#?}");
    let msg = diags[0].to_string();
    assert!(
        msg.starts_with("broken.yaml: document 1: not valid YAML: "),
        "{msg}"
    );
    assert!(msg.contains("line 4"), "{msg}");
}

/// Objects from the Kubernetes API: a broken resource is rejected alone, with
/// its located error, and everything else loads.
#[test]
fn objects_with_errors_are_rejected_alone() {
    let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: a, namespace: team-a}
spec: {clusterIP: 10.96.0.1, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: b, namespace: team-b}
spec: {clusterIP: 10.96.0.2, ports: [{name: http, port: 80}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken, namespace: team-a}
spec:
  hosts: [a]
  http: [{route: [{destination: {host: a}, weight: "lots"}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: fine, namespace: team-b}
spec:
  hosts: [b]
  http: [{match: [{uri: {prefix: /b}}], route: [{destination: {host: b}}]}]
"#;
    let objects: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let loaded = crate::load_objects(&objects, &Options::default());
    let rejected: Vec<String> = loaded.rejected.iter().map(|d| d.to_string()).collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(
        rejected[0].starts_with("VirtualService team-a/broken: spec.http[0].route[0].weight: "),
        "{rejected:?}"
    );
    let table = routing_table(&loaded.snapshot);
    assert!(table.contains("VirtualService team-b/fine"), "{table}");
    assert!(!table.contains("team-a/broken"), "{table}");
    assert_eq!(loaded.snapshot.services.len(), 2);
}
