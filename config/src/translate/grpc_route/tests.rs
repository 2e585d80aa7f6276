//! GRPCRoute translation as a user sees it: which calls a route takes, in
//! which order, what a conflict with an HTTPRoute does, and what is rejected.

use crate::{load_objects, load_sources, Diagnostic, Options, Source};
use waypoint_ir::{RouteAction, Service, Snapshot};

const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: ns}
spec: {clusterIP: 10.96.9.1, ports: [{name: grpc, port: 9090}, {name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: v2, namespace: ns}
spec: {clusterIP: 10.96.9.2, ports: [{name: grpc, port: 9090}]}
"#;

fn load(routes: &str) -> Result<Snapshot, Vec<Diagnostic>> {
    let src = Source {
        file: "g.yaml".into(),
        content: format!("{SERVICE}---\n{routes}"),
    };
    load_sources(&[src], &Options::default()).map(|l| l.snapshot)
}

fn greeter(s: &Snapshot) -> &Service {
    s.services.iter().find(|s| s.name == "greeter").unwrap()
}

/// The name of the route a call on `port` to `path` (with `headers`) takes,
/// the way the data path picks: the first route of the table that matches.
fn pick<'a>(svc: &'a Service, port: u16, path: &str, headers: &[(&str, &str)]) -> &'a str {
    let (_, table) = svc.route_table(None, port);
    table
        .iter()
        .find(|r| {
            r.port.is_none_or(|p| p == port)
                && (r.matches.is_empty()
                    || r.matches.iter().any(|m| {
                        let path_ok = match &m.path {
                            None => true,
                            Some(waypoint_ir::PathMatch::Exact(p)) => p == path,
                            Some(waypoint_ir::PathMatch::Prefix(p)) => path.starts_with(p.as_str()),
                            Some(waypoint_ir::PathMatch::SegmentPrefix(p)) => {
                                path == p || path.starts_with(&format!("{p}/")) || p.is_empty()
                            }
                            Some(waypoint_ir::PathMatch::Regex(p)) => p.is_match(path),
                        };
                        path_ok
                            && m.headers.iter().all(|h| {
                                headers.iter().any(|(n, v)| {
                                    *n == h.name
                                        && match &h.value {
                                            waypoint_ir::StringMatch::Exact(x) => x == v,
                                            waypoint_ir::StringMatch::Regex(p) => p.is_match(v),
                                            _ => false,
                                        }
                                })
                            })
                    }))
        })
        .map(|r| r.name.as_str())
        .unwrap_or("none")
}

fn route(name: &str, created: &str, rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {{name: {name}, namespace: ns, creationTimestamp: \"{created}\"}}\nspec:\n  parentRefs: [{{kind: Service, name: greeter, port: 9090}}]\n  rules:\n{rules}"
    )
}

#[test]
fn method_matches_select_the_calls_the_spec_describes() {
    let rules = r#"
  - matches: [{method: {service: helloworld.Greeter, method: SayHello}}]
    backendRefs: [{name: v2, port: 9090}]
  - matches: [{method: {service: helloworld.Greeter}}]
    backendRefs: [{name: greeter, port: 9090}]
  - matches: [{method: {method: Check}}]
    backendRefs: [{name: greeter, port: 9090}]
  - matches: [{method: {type: RegularExpression, service: "grpc\\.health\\..*", method: "Watch|List"}}]
    backendRefs: [{name: greeter, port: 9090}]
"#;
    let s = load(&route("r", "2024-01-01T00:00:00Z", rules)).unwrap();
    let g = greeter(&s);
    let p = |path| pick(g, 9090, path, &[]);
    assert_eq!(
        p("/helloworld.Greeter/SayHello"),
        "GRPCRoute ns/r rules[0].matches[0]"
    );
    assert_eq!(
        p("/helloworld.Greeter/SayGoodbye"),
        "GRPCRoute ns/r rules[1].matches[0]"
    );
    // Method only: that method of any service.
    assert_eq!(
        p("/grpc.health.v1.Health/Check"),
        "GRPCRoute ns/r rules[2].matches[0]"
    );
    // Regex: each part matches whole.
    assert_eq!(
        p("/grpc.health.v1.Health/Watch"),
        "GRPCRoute ns/r rules[3].matches[0]"
    );
    // No route takes these: the port has routes, so no default route (404).
    assert_eq!(p("/grpc.health.v1.Health/WatchAll"), "none");
    assert_eq!(p("/other.Svc/List"), "none");
    // Exact service does not match a longer service name.
    assert_eq!(p("/helloworld.GreeterV2/SayHello"), "none");
}

#[test]
fn precedence_is_service_characters_then_method_then_headers_then_age() {
    // Rules written in the reverse of their precedence.
    let older = route(
        "older",
        "2024-01-01T00:00:00Z",
        r#"
  - matches: [{method: {method: SayHello}}]
    backendRefs: [{name: greeter, port: 9090}]
  - matches: [{method: {service: helloworld.Greeter}}]
    backendRefs: [{name: greeter, port: 9090}]
  - matches: [{method: {service: helloworld.Greeter}, headers: [{name: x-canary, value: "1"}]}]
    backendRefs: [{name: v2, port: 9090}]
"#,
    );
    let newer = route(
        "newer",
        "2024-06-01T00:00:00Z",
        r#"
  - matches: [{method: {service: helloworld.Greeter, method: SayHello}}]
    backendRefs: [{name: v2, port: 9090}]
  - matches: [{method: {service: helloworld.Greeter}, headers: [{name: x-canary, value: "1"}]}]
    backendRefs: [{name: v2, port: 9090}]
"#,
    );
    let s = load(&format!("{newer}---\n{older}")).unwrap();
    let g = greeter(&s);
    // Service and method beat service only, though the route is newer.
    assert_eq!(
        pick(g, 9090, "/helloworld.Greeter/SayHello", &[]),
        "GRPCRoute ns/newer rules[0].matches[0]"
    );
    // Equal service and method: a header match wins; between equals, the older route.
    assert_eq!(
        pick(g, 9090, "/helloworld.Greeter/Other", &[("x-canary", "1")]),
        "GRPCRoute ns/older rules[2].matches[0]"
    );
    assert_eq!(
        pick(g, 9090, "/helloworld.Greeter/Other", &[]),
        "GRPCRoute ns/older rules[1].matches[0]"
    );
    // A service match (more characters) beats a method-only match.
    assert_eq!(
        pick(
            g,
            9090,
            "/helloworld.Greeter/SayHello",
            &[("x-canary", "1")]
        ),
        "GRPCRoute ns/newer rules[0].matches[0]"
    );
}

#[test]
fn a_grpc_route_wins_the_port_it_shares_with_an_http_route() {
    let grpc = route(
        "grpc",
        "2024-06-01T00:00:00Z",
        "  - backendRefs: [{name: v2, port: 9090}]\n",
    );
    // Older, port-less: binds 9090 and 80; it keeps 80 only.
    let http = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: ns, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  parentRefs: [{kind: Service, name: greeter}]
  rules: [{backendRefs: [{name: greeter, port: 80}]}]
"#;
    let src = Source {
        file: "g.yaml".into(),
        content: format!("{SERVICE}---\n{grpc}---{http}"),
    };
    let loaded = load_sources(&[src], &Options::default()).unwrap();
    let g = greeter(&loaded.snapshot);
    assert_eq!(
        pick(g, 9090, "/helloworld.Greeter/SayHello", &[]),
        "GRPCRoute ns/grpc rules[0].matches[0]"
    );
    assert_eq!(
        pick(g, 9090, "/anything", &[]),
        "GRPCRoute ns/grpc rules[0].matches[0]"
    );
    assert_eq!(
        pick(g, 80, "/anything", &[]),
        "HTTPRoute ns/web rules[0].matches[0]"
    );
    let conflicts: Vec<_> = g.conflicts().collect();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].route.to_string(), "HTTPRoute ns/web");
    assert_eq!(
        (conflicts[0].ports.as_slice(), conflicts[0].whole),
        (&[9090u16][..], false)
    );
    assert_eq!(conflicts[0].winners[0].to_string(), "GRPCRoute ns/grpc");
    let w = loaded
        .warnings
        .iter()
        .find(|d| d.field == "spec.parentRefs[0]")
        .unwrap();
    assert!(
        w.to_string().contains("HTTPRoute ns/web") && w.message.contains("GEP-1426"),
        "{w}"
    );
    let report = crate::routing_table(&loaded.snapshot);
    assert!(
        report.contains("conflict: HTTPRoute ns/web parentRefs[0] not applied on port 9090: GRPCRoute ns/grpc binds it"),
        "{report}"
    );
}

#[test]
fn header_modifiers_apply_and_other_filters_answer_an_error() {
    let rules = r#"
  - matches: [{method: {service: a.B}}]
    filters:
    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Set, value: "1"}]}}
    - {type: ResponseHeaderModifier, responseHeaderModifier: {remove: [x-internal]}}
    backendRefs:
    - name: greeter
      port: 9090
      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: x-b, value: "2"}]}}]
  - matches: [{method: {service: a.C}}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: v2, port: 9090}}}]
    backendRefs: [{name: greeter, port: 9090}]
"#;
    let s = load(&route("r", "", rules)).unwrap();
    let g = greeter(&s);
    let r0 = g
        .routes
        .iter()
        .find(|r| r.name.ends_with("rules[0].matches[0]"))
        .unwrap();
    assert_eq!(
        r0.filters.request_headers.set,
        vec![("x-set".into(), "1".into())]
    );
    assert_eq!(
        r0.filters.response_headers.remove,
        vec!["x-internal".to_string()]
    );
    let RouteAction::Forward(b) = &r0.action else {
        panic!()
    };
    assert_eq!(
        b[0].filters.as_ref().unwrap().request_headers.add,
        vec![("x-b".into(), "2".into())]
    );
    let r1 = g
        .routes
        .iter()
        .find(|r| r.name.ends_with("rules[1].matches[0]"))
        .unwrap();
    assert!(matches!(
        r1.action,
        RouteAction::DirectResponse { status: 500, .. }
    ));
}

#[test]
fn invalid_matches_and_filters_name_the_resource_and_field() {
    let rules = r#"
  - matches: [{method: {type: Exact}}]
    backendRefs: [{name: greeter, port: 9090}]
  - matches:
    - method: {service: "bad/name"}
    - method: {type: RegularExpression, method: "(unclosed"}
    - headers: [{name: x, type: RegularExpression, value: "[z-a]"}]
    backendRefs: [{name: greeter, port: 9090}]
  - filters: [{type: URLRewrite, urlRewrite: {hostname: x}}]
    backendRefs: [{name: greeter, port: 9090}]
  - filters:
    - {type: RequestHeaderModifier, requestHeaderModifier: {}}
    - {type: RequestHeaderModifier, requestHeaderModifier: {}}
    backendRefs: [{name: greeter, port: 9090}]
"#;
    let errs = load(&route("bad", "", rules)).unwrap_err();
    let fields: Vec<String> = errs
        .iter()
        .map(|d| format!("{} {}", d.resource.as_ref().unwrap(), d.field))
        .collect();
    for want in [
        "GRPCRoute ns/bad spec.rules[0].matches[0].method",
        "GRPCRoute ns/bad spec.rules[1].matches[0].method.service",
        "GRPCRoute ns/bad spec.rules[1].matches[1].method.method",
        "GRPCRoute ns/bad spec.rules[1].matches[2].headers[0].value",
        "GRPCRoute ns/bad spec.rules[2].filters[0].type",
        "GRPCRoute ns/bad spec.rules[3].filters[1].type",
    ] {
        assert!(
            fields.iter().any(|f| f == want),
            "missing {want} in {fields:#?}"
        );
    }
    assert!(
        errs[0]
            .to_string()
            .contains("one or both of 'service' or 'method'"),
        "{}",
        errs[0]
    );
}

#[test]
fn from_the_api_a_bad_grpc_route_is_rejected_alone() {
    let good = route(
        "good",
        "",
        "  - matches: [{method: {service: a.B}}]\n    backendRefs: [{name: v2, port: 9090}]\n",
    );
    let bad = route(
        "bad",
        "",
        "  - matches: [{method: {}}]\n    backendRefs: [{name: v2, port: 9090}]\n",
    );
    let objects: Vec<serde_json::Value> =
        serde_yaml_ng::Deserializer::from_str(&format!("{SERVICE}---\n{good}---\n{bad}"))
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
    let p = load_objects(&objects, &Options::default());
    assert_eq!(p.rejected.len(), 1);
    assert_eq!(
        p.rejected[0].resource.as_ref().unwrap().to_string(),
        "GRPCRoute ns/bad"
    );
    assert_eq!(p.rejected[0].field, "spec.rules[0].matches[0].method");
    let g = greeter(&p.snapshot);
    assert_eq!(
        pick(g, 9090, "/a.B/M", &[]),
        "GRPCRoute ns/good rules[0].matches[0]"
    );
}
