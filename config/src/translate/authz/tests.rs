//! AuthorizationPolicy translation: fields to IR, attachment, validation, and
//! the fail-closed stand-ins.

use crate::{load_objects, load_sources, Diagnostic, Loaded, Options, Severity, Source};
use waypoint_ir::{
    AuthzAction, AuthzPolicy, AuthzRule, Cidr, ConditionKey, ConditionValue, PathPattern,
    PathSegment, ResourceKind, ServiceAccount, StrMatch,
};

const WORLD: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: shop}
spec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec: {clusterIP: 10.96.0.20, ports: [{name: http, port: 9080}]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: shop}
spec: {hosts: [a.example.com, b.example.com], ports: [{number: 80, name: http, protocol: HTTP}], resolution: STATIC}
"#;

fn load(policies: &str) -> Loaded {
    let content = format!("{WORLD}---\n{policies}");
    load_sources(
        &[Source {
            file: "t.yaml".into(),
            content,
        }],
        &Options::default(),
    )
    .unwrap_or_else(|d| panic!("{d:#?}"))
}

/// A policy in `shop` on Service reviews with this spec tail.
fn on_reviews(spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n  targetRefs: [{{kind: Service, name: reviews}}]\n{spec}"
    )
}

fn reviews_policy(l: &Loaded) -> &AuthzPolicy {
    let svc = l
        .snapshot
        .services
        .iter()
        .find(|s| s.name == "reviews")
        .unwrap();
    assert_eq!(svc.authz.len(), 1, "{:?}", svc.authz);
    &svc.authz[0]
}

fn about_policies(l: &Loaded) -> Vec<&Diagnostic> {
    l.warnings
        .iter()
        .filter(|d| d.resource.as_ref().unwrap().kind == ResourceKind::AuthorizationPolicy)
        .collect()
}

fn refusals(l: &Loaded) -> Vec<&Diagnostic> {
    l.warnings
        .iter()
        .filter(|d| d.severity == Severity::Refused)
        .collect()
}

#[test]
fn source_fields_and_their_not_forms() {
    let l = load(&on_reviews(
        r#"  rules:
  - from:
    - source:
        principals: [cluster.local/ns/a/sa/b]
        notPrincipals: ["*/sa/bad"]
        requestPrincipals: ["iss/*"]
        notRequestPrincipals: [iss/x]
        namespaces: ["team-*"]
        notNamespaces: [team-x]
        ipBlocks: [10.0.0.0/8]
        notIpBlocks: [10.1.2.3]
        remoteIpBlocks: ["2001:db8::/32"]
        notRemoteIpBlocks: [192.168.0.0/16]
    - source:
        serviceAccounts: [frontend, other/api]
        notServiceAccounts: [shop/old]
        trustDomains: [td.local]
        notTrustDomains: ["*.evil"]
"#,
    ));
    assert!(about_policies(&l).is_empty(), "{:?}", l.warnings);
    let p = reviews_policy(&l);
    assert_eq!(p.action, AuthzAction::Allow);
    assert!(!p.fail_closed);
    let s = &p.rules[0].from[0];
    let exact = |v: &str| StrMatch::Exact(v.into());
    assert_eq!(s.principals.any_of, vec![exact("cluster.local/ns/a/sa/b")]);
    assert_eq!(
        s.principals.none_of,
        vec![StrMatch::Suffix("/sa/bad".into())]
    );
    assert_eq!(
        s.request_principals.any_of,
        vec![StrMatch::Prefix("iss/".into())]
    );
    assert_eq!(s.request_principals.none_of, vec![exact("iss/x")]);
    assert_eq!(s.namespaces.any_of, vec![StrMatch::Prefix("team-".into())]);
    assert_eq!(s.namespaces.none_of, vec![exact("team-x")]);
    let cidr = |a: &str, prefix| Cidr {
        addr: a.parse().unwrap(),
        prefix,
    };
    assert_eq!(s.ip_blocks.any_of, vec![cidr("10.0.0.0", 8)]);
    assert_eq!(s.ip_blocks.none_of, vec![cidr("10.1.2.3", 32)]);
    assert_eq!(s.remote_ip_blocks.any_of, vec![cidr("2001:db8::", 32)]);
    assert_eq!(s.remote_ip_blocks.none_of, vec![cidr("192.168.0.0", 16)]);
    let s = &p.rules[0].from[1];
    let sa = |ns: &str, name: &str| ServiceAccount {
        namespace: ns.into(),
        name: name.into(),
    };
    // Without a namespace, the policy's.
    assert_eq!(
        s.service_accounts.any_of,
        vec![sa("shop", "frontend"), sa("other", "api")]
    );
    assert_eq!(s.service_accounts.none_of, vec![sa("shop", "old")]);
    assert_eq!(s.trust_domains.any_of, vec![exact("td.local")]);
    assert_eq!(
        s.trust_domains.none_of,
        vec![StrMatch::Suffix(".evil".into())]
    );
}

#[test]
fn operation_fields_and_conditions() {
    let l = load(&on_reviews(
        r#"  action: DENY
  rules:
  - to:
    - operation:
        hosts: ["*.example.com"]
        notHosts: [x.example.com]
        ports: ["9080"]
        notPorts: ["0"]
        methods: [GET]
        notMethods: [POST]
        paths: ["/api/{*}/items/{**}", "/static/*"]
        notPaths: ["/api/{**}/"]
    when:
    - {key: "request.headers[X-User]", values: [a], notValues: [b]}
    - {key: "request.auth.claims[realm][roles]", values: [admin]}
    - {key: destination.port, values: ["9080"]}
    - {key: source.ip, notValues: [10.0.0.0/8]}
    - {key: source.serviceAccount, values: [api]}
"#,
    ));
    assert!(about_policies(&l).is_empty(), "{:?}", l.warnings);
    let p = reviews_policy(&l);
    assert_eq!(p.action, AuthzAction::Deny);
    let o = &p.rules[0].to[0];
    assert_eq!(
        o.hosts.any_of,
        vec![StrMatch::Suffix(".example.com".into())]
    );
    assert_eq!(
        o.hosts.none_of,
        vec![StrMatch::Exact("x.example.com".into())]
    );
    assert_eq!(
        (o.ports.any_of.clone(), o.ports.none_of.clone()),
        (vec![9080], vec![0])
    );
    assert_eq!(o.methods.none_of, vec![StrMatch::Exact("POST".into())]);
    use PathSegment::*;
    assert_eq!(
        o.paths.any_of,
        vec![
            PathPattern::Template(vec![
                Literal("api".into()),
                One,
                Literal("items".into()),
                Rest
            ]),
            PathPattern::Str(StrMatch::Prefix("/static/".into())),
        ]
    );
    // The trailing slash is kept as a final empty literal.
    assert_eq!(
        o.paths.none_of,
        vec![PathPattern::Template(vec![
            Literal("api".into()),
            Rest,
            Literal(String::new())
        ])]
    );
    let when = &p.rules[0].when;
    assert_eq!(when[0].key, ConditionKey::RequestHeader("x-user".into()));
    assert_eq!(
        when[0].values.none_of,
        vec![ConditionValue::Str(StrMatch::Exact("b".into()))]
    );
    assert_eq!(
        when[1].key,
        ConditionKey::RequestClaim(vec!["realm".into(), "roles".into()])
    );
    assert_eq!(when[2].values.any_of, vec![ConditionValue::Port(9080)]);
    assert!(matches!(when[3].values.none_of[0], ConditionValue::Ip(_)));
    assert_eq!(
        when[4].values.any_of,
        vec![ConditionValue::ServiceAccount(ServiceAccount {
            namespace: "shop".into(),
            name: "api".into()
        })]
    );
}

#[test]
fn attachment_follows_istio_for_waypoints() {
    let policy = |ns: &str, name: &str, target: &str| {
        format!("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  {target}\n  rules: [{{}}]\n---\n")
    };
    let gw = "{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}";
    let class = "{kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}";
    let yaml = [
        policy("shop", "gw", &format!("targetRefs: [{gw}]")),
        policy("shop", "gw-legacy", &format!("targetRef: {gw}")),
        policy("other", "gw-elsewhere", &format!("targetRefs: [{gw}]")),
        policy("istio-system", "class", &format!("targetRefs: [{class}]")),
        policy("shop", "class-not-root", &format!("targetRefs: [{class}]")),
        policy("istio-system", "other-class", "targetRefs: [{kind: GatewayClass, group: gateway.networking.k8s.io, name: pingora-waypoint}]"),
        policy("shop", "se", "targetRefs: [{kind: ServiceEntry, group: networking.istio.io, name: ext}]"),
        policy("other", "svc-elsewhere", "targetRefs: [{kind: Service, name: reviews}]"),
        policy("shop", "selector", "selector: {matchLabels: {app: reviews}}"),
        policy("istio-system", "mesh-wide", "action: ALLOW"),
    ]
    .concat();
    let l = load(&yaml);
    let names =
        |ps: &[AuthzPolicy]| -> Vec<String> { ps.iter().map(|p| p.source.to_string()).collect() };
    assert_eq!(
        names(&l.snapshot.authz),
        vec![
            "AuthorizationPolicy istio-system/class",
            "AuthorizationPolicy shop/gw",
            "AuthorizationPolicy shop/gw-legacy"
        ]
    );
    let svc = |n: &str| {
        l.snapshot
            .services
            .iter()
            .find(|s| s.hostname == n)
            .unwrap()
    };
    assert!(svc("reviews.shop.svc.cluster.local").authz.is_empty());
    // Every host of the ServiceEntry.
    for host in ["a.example.com", "b.example.com"] {
        assert_eq!(names(&svc(host).authz), vec!["AuthorizationPolicy shop/se"]);
    }
    let warned: Vec<String> = about_policies(&l)
        .into_iter()
        .map(|d| d.resource.as_ref().unwrap().name.clone())
        .collect();
    for name in [
        "gw-elsewhere",
        "class-not-root",
        "other-class",
        "svc-elsewhere",
        "selector",
        "mesh-wide",
    ] {
        assert!(warned.contains(&name.to_string()), "{name}: {warned:?}");
    }
    assert!(l.warnings.iter().all(|d| d.severity == Severity::Warning));
    let selector = l
        .warnings
        .iter()
        .find(|d| d.resource.as_ref().unwrap().name == "selector")
        .unwrap();
    assert!(
        selector.message.contains("never to a waypoint"),
        "{selector}"
    );
}

/// The stand-in and the field each refusal names.
fn refused(spec: &str) -> (AuthzPolicy, Vec<String>) {
    refused_doc(&on_reviews(spec))
}

fn refused_doc(doc: &str) -> (AuthzPolicy, Vec<String>) {
    let l = load(doc);
    let fields = refusals(&l).iter().map(|d| d.field.clone()).collect();
    let p = reviews_policy(&l).clone();
    assert!(p.fail_closed, "{p:?}");
    (p, fields)
}

#[test]
fn an_unenforceable_deny_denies_everything() {
    let (p, fields) = refused(
        "  action: DENY\n  rules: [{when: [{key: \"experimental.envoy.filters.x[y]\", values: [z]}]}]\n",
    );
    assert_eq!(
        (p.action, p.rules),
        (AuthzAction::Deny, vec![AuthzRule::default()])
    );
    assert_eq!(fields, vec!["spec.rules[0].when[0].key"]);
}

#[test]
fn an_unenforceable_allow_allows_nothing() {
    let (p, fields) =
        refused("  rules: [{from: [{source: {ipBlocks: [10.0.0.0/8, not-an-ip]}}]}]\n");
    assert_eq!((p.action, p.rules), (AuthzAction::Allow, vec![]));
    assert_eq!(fields, vec!["spec.rules[0].from[0].source.ipBlocks[1]"]);
}

#[test]
fn custom_without_a_usable_provider_is_a_deny_of_its_rules() {
    let (p, fields) = refused(
        "  action: CUSTOM\n  provider: {name: opa}\n  rules: [{to: [{operation: {paths: [/x]}}]}]\n",
    );
    assert_eq!(p.action, AuthzAction::Deny);
    assert_eq!(p.rules[0].to[0].paths.any_of.len(), 1);
    // No such provider in the mesh config (see `ext_authz::tests` for one).
    assert_eq!(fields, vec!["spec.provider.name"]);
    // Invalid as CUSTOM too: everything is denied.
    let (p, fields) =
        refused("  action: CUSTOM\n  rules: [{from: [{source: {principals: [a]}}]}]\n");
    assert_eq!(p.rules, vec![AuthzRule::default()]);
    assert_eq!(
        fields,
        vec![
            "spec.provider.name",
            "spec.rules[0].from[0].source.principals",
        ]
    );
}

#[test]
fn an_unknown_action_or_field_denies_everything() {
    let (p, fields) = refused("  action: REJECT\n  rules: [{}]\n");
    assert_eq!(
        (p.action, p.rules),
        (AuthzAction::Deny, vec![AuthzRule::default()])
    );
    assert_eq!(fields, vec!["spec.action"]);
    let (p, fields) = refused("  rules: [{to: [{operation: {paths: [/a], regexPaths: [x]}}]}]\n");
    // An ALLOW, read from the spec even though the rest does not parse.
    assert_eq!((p.action, p.rules), (AuthzAction::Allow, vec![]));
    assert_eq!(fields, vec!["spec.rules[0].to[0].operation.regexPaths"]);
}

#[test]
fn istio_validation_names_each_field() {
    let cases: &[(&str, &str)] = &[
        ("  action: DENY\n", "spec.rules"),
        ("  rules: [{from: []}]\n", "spec.rules[0].from"),
        (
            "  rules: [{from: [{source: {}}]}]\n",
            "spec.rules[0].from[0].source",
        ),
        (
            "  rules: [{to: [{operation: {}}]}]\n",
            "spec.rules[0].to[0].operation",
        ),
        (
            "  rules: [{to: [{operation: {ports: [\"65536\"]}}]}]\n",
            "spec.rules[0].to[0].operation.ports[0]",
        ),
        (
            "  rules: [{to: [{operation: {notPorts: [\"+80\"]}}]}]\n",
            "spec.rules[0].to[0].operation.notPorts[0]",
        ),
        (
            "  rules: [{to: [{operation: {methods: [\"\"]}}]}]\n",
            "spec.rules[0].to[0].operation.methods[0]",
        ),
        (
            "  rules: [{to: [{operation: {paths: [\"/{**}/a/{*}\"]}}]}]\n",
            "spec.rules[0].to[0].operation.paths[0]",
        ),
        (
            "  rules: [{to: [{operation: {paths: [\"/a/{*}/b*\"]}}]}]\n",
            "spec.rules[0].to[0].operation.paths[0]",
        ),
        (
            "  rules: [{to: [{operation: {paths: [\"/a/{x}\"]}}]}]\n",
            "spec.rules[0].to[0].operation.paths[0]",
        ),
        (
            "  rules: [{to: [{operation: {notPaths: [\"/{*}.txt\"]}}]}]\n",
            "spec.rules[0].to[0].operation.notPaths[0]",
        ),
        (
            "  rules: [{from: [{source: {principals: [a], serviceAccounts: [b]}}]}]\n",
            "spec.rules[0].from[0].source.serviceAccounts",
        ),
        (
            "  rules: [{from: [{source: {serviceAccounts: [\"a/b/c\"]}}]}]\n",
            "spec.rules[0].from[0].source.serviceAccounts[0]",
        ),
        (
            "  rules: [{from: [{source: {trustDomains: [\"a*b\"]}}]}]\n",
            "spec.rules[0].from[0].source.trustDomains[0]",
        ),
        (
            "  rules: [{from: [{source: {namespaces: [\"a*b\"]}}]}]\n",
            "spec.rules[0].from[0].source.namespaces[0]",
        ),
        (
            "  rules: [{when: [{key: source.ip}]}]\n",
            "spec.rules[0].when[0]",
        ),
        (
            "  rules: [{when: [{key: \"destination.labels[app]\", values: [a]}]}]\n",
            "spec.rules[0].when[0].key",
        ),
        (
            "  rules: [{when: [{key: request.headers, values: [a]}]}]\n",
            "spec.rules[0].when[0].key",
        ),
        (
            "  rules: [{when: [{key: \"request.auth.claims[]\", values: [a]}]}]\n",
            "spec.rules[0].when[0].key",
        ),
        (
            "  rules: [{when: [{key: source.ip, values: [10.0.0.0/40]}]}]\n",
            "spec.rules[0].when[0].values[0]",
        ),
        (
            "  rules: [{when: [{key: destination.port, notValues: [http]}]}]\n",
            "spec.rules[0].when[0].notValues[0]",
        ),
        (
            "  rules: [{when: [{key: unknown.attr, values: [a]}]}]\n",
            "spec.rules[0].when[0].key",
        ),
        ("  provider: {name: opa}\n  rules: [{}]\n", "spec.provider"),
        (
            "  selector: {matchLabels: {a: b}}\n  rules: [{}]\n",
            "spec.selector",
        ),
    ];
    for (spec, field) in cases {
        let (_, fields) = refused(spec);
        assert_eq!(fields, vec![field.to_string()], "{spec}");
    }
}

#[test]
fn invalid_targets_are_refused_where_the_rest_attach() {
    let l = load(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  action: DENY\n  targetRefs: [{kind: Service, name: reviews}, {kind: Deployment, group: apps, name: x}, {kind: Service, name: reviews, namespace: shop}]\n  rules: [{to: [{operation: {paths: [/a]}}]}]\n",
    );
    let p = reviews_policy(&l);
    assert_eq!(p.rules, vec![AuthzRule::default()]);
    let fields: Vec<&str> = refusals(&l).iter().map(|d| d.field.as_str()).collect();
    assert_eq!(
        fields,
        vec!["spec.targetRefs[1].kind", "spec.targetRefs[2].namespace"]
    );
}

#[test]
fn a_refused_policy_stays_in_force_from_the_cluster_too() {
    let objects: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&format!(
        "{WORLD}---\n{}",
        on_reviews("  action: DENY\n  rules: [{when: [{key: unknown, values: [a]}]}]\n")
    ))
    .map(|d| serde::Deserialize::deserialize(d).unwrap())
    .collect();
    let partial = load_objects(&objects, &Options::default());
    let svc = partial
        .snapshot
        .services
        .iter()
        .find(|s| s.name == "reviews")
        .unwrap();
    assert_eq!(svc.authz[0].rules, vec![AuthzRule::default()]);
    assert!(svc.authz[0].fail_closed);
    // Reported with the rejections (logged, counted, an Event), once.
    assert_eq!(partial.rejected.len(), 1, "{:?}", partial.rejected);
    assert_eq!(partial.rejected[0].severity, Severity::Refused);
    assert!(partial.rejected[0]
        .to_string()
        .contains("AuthorizationPolicy shop/p: spec.rules[0].when[0].key"));
}

/// A policy on reviews with these metadata annotations and spec tail.
fn annotated(annotations: &str, spec: &str) -> String {
    on_reviews(spec).replace(
        "metadata: {name: p, namespace: shop}",
        &format!("metadata: {{name: p, namespace: shop, annotations: {{{annotations}}}}}"),
    )
}

#[test]
fn dry_run_marks_allow_and_deny_policies_and_refuses_others() {
    let deny = "  action: DENY\n  rules: [{}]\n";
    let l = load(&annotated("istio.io/dry-run: \"true\"", deny));
    let p = reviews_policy(&l);
    assert!(p.dry_run && !p.fail_closed, "{p:?}");
    let l = load(&annotated("istio.io/dry-run: \"False\"", deny));
    assert!(!reviews_policy(&l).dry_run);
    // Istio's webhook: a boolean, on ALLOW or DENY only.
    let (p, fields) = refused_doc(&annotated("istio.io/dry-run: \"maybe\"", deny));
    assert!(!p.dry_run);
    assert_eq!(fields, vec!["metadata.annotations[istio.io/dry-run]"]);
    let audit = "  action: AUDIT\n  rules: [{}]\n";
    let (p, fields) = refused_doc(&annotated("istio.io/dry-run: \"true\"", audit));
    assert!(!p.dry_run && p.fail_closed);
    assert_eq!(fields, vec!["metadata.annotations[istio.io/dry-run]"]);
}
