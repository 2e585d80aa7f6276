//! ext_authz providers from the mesh config, and CUSTOM policies naming them.

use crate::{load_objects, load_sources, Diagnostic, Loaded, Options, Severity, Source};
use std::time::Duration;
use waypoint_ir::{AuthzAction, ExtAuthzProtocol, ResourceKind, StrMatch};

const WORLD: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec: {clusterIP: 10.96.0.20, ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: shop}
spec: {clusterIP: 10.96.0.21, ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: opa, namespace: authz}
spec: {clusterIP: 10.96.0.30, ports: [{name: grpc, port: 9191}, {name: http, port: 8181}]}
"#;

/// ConfigMap `istio` in `namespace` with these `extensionProviders`.
fn mesh(namespace: &str, providers: &str) -> String {
    let indented = providers.replace('\n', "\n      ");
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: {namespace}}}\ndata:\n  mesh: |-\n    accessLogFile: /dev/stdout\n    extensionProviders:\n      {indented}\n"
    )
}

fn custom(name: &str, service: &str, provider: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  targetRefs: [{{kind: Service, name: {service}}}]\n  action: CUSTOM\n  provider: {{name: {provider}}}\n  rules: [{{to: [{{operation: {{paths: [/admin/*]}}}}]}}]\n"
    )
}

fn load(docs: &[String]) -> Loaded {
    let content = std::iter::once(WORLD.to_string())
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
    .unwrap_or_else(|d| panic!("{d:#?}"))
}

fn refusals(l: &Loaded) -> Vec<&Diagnostic> {
    l.warnings
        .iter()
        .filter(|d| d.severity == Severity::Refused)
        .collect()
}

fn service_policy(l: &Loaded, name: &str) -> waypoint_ir::AuthzPolicy {
    let svc = l.snapshot.services.iter().find(|s| s.name == name).unwrap();
    svc.authz[0].clone()
}

const GRPC: &str =
    "- name: opa-grpc\n  envoyExtAuthzGrpc: {service: opa.authz.svc.cluster.local, port: 9191}";
const HTTP: &str = "- name: opa-http\n  envoyExtAuthzHttp:\n    service: authz/opa.authz.svc.cluster.local\n    port: 8181\n    timeout: 0.5s\n    pathPrefix: /check\n    failOpen: true\n    statusOnError: \"503\"\n    includeRequestHeadersInCheck: [X-User, \"x-ext-*\"]\n    includeAdditionalHeadersInCheck: {X-From: waypoint}\n    includeRequestBodyInCheck: {maxRequestBytes: 1024, allowPartialMessage: true}\n    headersToUpstreamOnAllow: [x-user-id]\n    headersToDownstreamOnDeny: [\"*-reason\"]";

#[test]
fn providers_resolve_to_services_with_istio_defaults() {
    let l = load(&[
        mesh("istio-system", &format!("{GRPC}\n{HTTP}\n- name: zipkin\n  zipkin: {{service: z.x.svc.cluster.local, port: 9411}}")),
        custom("p", "reviews", "opa-grpc"),
    ]);
    assert!(refusals(&l).is_empty(), "{:#?}", l.warnings);
    let providers = &l.snapshot.ext_authz;
    assert_eq!(
        providers.len(),
        2,
        "tracing providers are not ours: {providers:#?}"
    );
    let grpc = l.snapshot.ext_authz("opa-grpc").unwrap();
    assert_eq!(grpc.protocol, ExtAuthzProtocol::Grpc);
    assert_eq!(l.snapshot.service(grpc.service).name, "opa");
    assert_eq!(
        (
            grpc.port,
            grpc.timeout,
            grpc.fail_open,
            grpc.status_on_error,
            grpc.body
        ),
        (9191, Duration::from_secs(600), false, 403, None)
    );
    let http = l.snapshot.ext_authz("opa-http").unwrap();
    assert_eq!(
        (
            http.port,
            http.timeout,
            http.fail_open,
            http.status_on_error
        ),
        (8181, Duration::from_millis(500), true, 503)
    );
    let ExtAuthzProtocol::Http(check) = &http.protocol else {
        panic!("{http:?}")
    };
    assert_eq!(check.path_prefix, "/check");
    assert_eq!(
        check.request_headers,
        vec![
            StrMatch::Exact("x-user".into()),
            StrMatch::Prefix("x-ext-".into())
        ]
    );
    assert_eq!(
        check.additional_headers,
        vec![("x-from".into(), "waypoint".into())]
    );
    assert_eq!(
        check.to_downstream_on_deny,
        vec![StrMatch::Suffix("-reason".into())]
    );
    assert!(http
        .body
        .is_some_and(|b| b.max_bytes == 1024 && b.allow_partial));
    let p = service_policy(&l, "reviews");
    assert_eq!(
        p.action,
        AuthzAction::Custom {
            provider: "opa-grpc".into()
        }
    );
    assert!(!p.fail_closed);
}

#[test]
fn a_provider_that_cannot_be_used_is_refused_and_its_policies_deny() {
    let bad = "- name: bad\n  envoyExtAuthzGrpc: {service: nowhere.authz.svc.cluster.local, port: 0, statusOnError: \"999\"}\n- name: star\n  envoyExtAuthzHttp: {service: opa.authz.svc.cluster.local, port: 8181, headersToUpstreamOnAllow: [\"*\"]}\n- name: big\n  envoyExtAuthzGrpc: {service: opa.authz.svc.cluster.local, port: 9191, includeRequestBodyInCheck: {maxRequestBytes: 1000000}}\n- name: typo\n  envoyExtAuthzGrpc: {service: opa.authz.svc.cluster.local, port: 9191, failOpn: true}";
    let l = load(&[
        mesh("istio-system", &format!("{GRPC}\n{bad}")),
        custom("p", "reviews", "bad"),
        custom("q", "ratings", "opa-grpc"),
    ]);
    let fields: Vec<(&str, ResourceKind)> = refusals(&l)
        .iter()
        .map(|d| (d.field.as_str(), d.resource.as_ref().unwrap().kind))
        .collect();
    let at = "data.mesh.extensionProviders";
    assert_eq!(
        fields,
        vec![
            (
                &*format!("{at}[1].envoyExtAuthzGrpc.port"),
                ResourceKind::ConfigMap
            ),
            (
                &*format!("{at}[1].envoyExtAuthzGrpc.service"),
                ResourceKind::ConfigMap
            ),
            (
                &*format!("{at}[1].envoyExtAuthzGrpc.statusOnError"),
                ResourceKind::ConfigMap
            ),
            (
                &*format!("{at}[2].envoyExtAuthzHttp.headersToUpstreamOnAllow[0]"),
                ResourceKind::ConfigMap
            ),
            (
                &*format!("{at}[3].envoyExtAuthzGrpc.includeRequestBodyInCheck.maxRequestBytes"),
                ResourceKind::ConfigMap
            ),
            (
                &*format!("{at}[4].envoyExtAuthzGrpc.failOpn"),
                ResourceKind::ConfigMap
            ),
            ("spec.provider.name", ResourceKind::AuthorizationPolicy),
        ],
        "{:#?}",
        l.warnings
    );
    assert_eq!(l.snapshot.ext_authz.len(), 1);
    let p = service_policy(&l, "reviews");
    assert_eq!((p.action.clone(), p.fail_closed), (AuthzAction::Deny, true));
    assert_eq!(p.rules.len(), 1, "a DENY of what its rules match: {p:?}");
    assert!(refusals(&l)
        .last()
        .unwrap()
        .message
        .contains("\"bad\" cannot be used"));
    // The other provider, and its policy, are untouched.
    assert_eq!(
        service_policy(&l, "ratings").action,
        AuthzAction::Custom {
            provider: "opa-grpc".into()
        }
    );
}

#[test]
fn the_mesh_config_is_read_from_the_root_namespace_only() {
    let l = load(&[mesh("shop", GRPC), custom("p", "reviews", "opa-grpc")]);
    assert!(l.snapshot.ext_authz.is_empty());
    assert_eq!(service_policy(&l, "reviews").action, AuthzAction::Deny);
    let why = &refusals(&l)[0].message;
    assert!(why.contains("ConfigMap istio-system/istio"), "{why}");
}

#[test]
fn two_providers_for_one_service_are_refused() {
    let l = load(&[
        mesh("istio-system", &format!("{GRPC}\n{HTTP}")),
        custom("a", "reviews", "opa-grpc"),
        custom("b", "reviews", "opa-http"),
    ]);
    let refused: Vec<String> = refusals(&l)
        .iter()
        .map(|d| d.resource.as_ref().unwrap().name.clone())
        .collect();
    assert_eq!(refused, vec!["a", "b"], "{:#?}", l.warnings);
    assert!(refusals(&l)[0].message.contains("only one provider"));
}

#[test]
fn from_the_api_a_bad_mesh_config_loses_nothing_else() {
    let objects: Vec<serde_json::Value> = [
        WORLD.to_string(),
        mesh(
            "istio-system",
            "- name: x\n  envoyExtAuthzGrpc: [not, a, map]",
        ),
        custom("p", "reviews", "x"),
    ]
    .iter()
    .flat_map(|d| d.split("---\n").map(str::to_string).collect::<Vec<_>>())
    .filter(|d| !d.trim().is_empty())
    .map(|d| serde_yaml_ng::from_str(&d).unwrap())
    .collect();
    let partial = load_objects(&objects, &Options::default());
    assert_eq!(partial.snapshot.services.len(), 3);
    assert!(partial
        .rejected
        .iter()
        .all(|d| d.severity == Severity::Refused));
    let p = &partial
        .snapshot
        .services
        .iter()
        .find(|s| s.name == "reviews")
        .unwrap()
        .authz[0];
    assert_eq!(p.action, AuthzAction::Deny);
}
