use super::*;

const ROOT: &str = "istio-system";

fn gw() -> GatewayRef {
    "waypoints/wp".parse().unwrap()
}

/// A store holding `yaml`'s objects as cluster-wide watches would deliver them.
fn store(yaml: &str) -> Store {
    let mut s = Store::default();
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let v: Value = serde::Deserialize::deserialize(doc).unwrap();
        let kind = match v["kind"].as_str().unwrap() {
            "Namespace" => Kind::Namespace,
            "Service" => Kind::Service,
            "Pod" => Kind::Pod,
            "EndpointSlice" => Kind::EndpointSlice,
            "ServiceEntry" => Kind::ServiceEntry,
            "VirtualService" => Kind::VirtualService,
            "DestinationRule" => Kind::DestinationRule,
            "HTTPRoute" => Kind::HttpRoute,
            "AuthorizationPolicy" => Kind::AuthorizationPolicy,
            "RequestAuthentication" => Kind::RequestAuthentication,
            "Gateway" => Kind::Gateway,
            "ConfigMap" => Kind::ConfigMap,
            other => panic!("{other}"),
        };
        let id = WatchId {
            kind,
            namespace: None,
        };
        s.apply(&id, kind.trim(&v));
    }
    s
}

fn names(scope: &Scope) -> Vec<String> {
    scope
        .objects
        .iter()
        .map(|o| {
            let ns = o["metadata"]["namespace"].as_str().unwrap_or("");
            format!(
                "{} {ns}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

const WORLD: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/use-waypoint: wp, istio.io/use-waypoint-namespace: waypoints}}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Namespace
metadata: {name: waypoints}
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec: {selector: {app: cart}}
---
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: shop, labels: {istio.io/use-waypoint: none}}
spec: {selector: {app: legacy}}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: other, labels: {istio.io/use-waypoint: wp, istio.io/use-waypoint-namespace: waypoints}}
spec: {selector: {app: api}}
---
apiVersion: v1
kind: Service
metadata: {name: elsewhere, namespace: other, labels: {istio.io/use-waypoint: another}}
spec: {selector: {app: elsewhere}}
---
apiVersion: v1
kind: Service
metadata: {name: plain, namespace: other}
spec: {selector: {app: plain}}
---
apiVersion: v1
kind: Pod
metadata: {name: cart-1, namespace: shop, labels: {app: cart}}
---
apiVersion: v1
kind: Pod
metadata: {name: legacy-1, namespace: shop, labels: {app: legacy}}
---
apiVersion: v1
kind: Pod
metadata: {name: api-1, namespace: other, labels: {app: api, extra: x}}
---
apiVersion: v1
kind: Pod
metadata: {name: plain-1, namespace: other, labels: {app: plain}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: cart-abc, namespace: shop, labels: {kubernetes.io/service-name: cart}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: plain-abc, namespace: other, labels: {kubernetes.io/service-name: plain}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: consumer, namespace: team-b}
spec: {parentRefs: [{kind: Service, group: "", name: cart, namespace: shop}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: to-plain, namespace: other}
spec: {parentRefs: [{kind: Service, group: "", name: plain}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ingress, namespace: shop}
spec: {parentRefs: [{name: cart}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cart, namespace: shop}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: unrelated, namespace: team-c}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mesh-wide, namespace: istio-system}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: waypoints}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: another, namespace: waypoints}
"#;

#[test]
fn serves_what_names_its_gateway_and_what_comes_with_it() {
    let s = scope(&store(WORLD), &gw(), ROOT);
    assert_eq!(
        names(&s),
        [
            "Namespace /other",
            "Namespace /shop",
            "Namespace /waypoints",
            "Service other/api",
            "Service shop/cart",
            "Pod other/api-1",
            "Pod shop/cart-1",
            "EndpointSlice shop/cart-abc",
            "VirtualService shop/cart",
            "DestinationRule istio-system/mesh-wide",
            "HTTPRoute team-b/consumer",
            "Gateway waypoints/wp",
        ]
    );
    assert_eq!(s.service_namespaces, BTreeSet::from(["shop".to_string()]));
    assert_eq!(
        s.endpoint_namespaces.keys().collect::<Vec<_>>(),
        ["other", "shop"]
    );
    let shop = &s.endpoint_namespaces["shop"];
    let pod = |app: &str| serde_json::json!({"metadata": {"labels": {"app": app}}});
    assert!(shop.keeps(Kind::Pod, &pod("cart")));
    assert!(!shop.keeps(Kind::Pod, &pod("legacy")), "opted out");
    let slice = |svc: &str| serde_json::json!({"metadata": {"labels": {"kubernetes.io/service-name": svc}}});
    assert!(shop.keeps(Kind::EndpointSlice, &slice("cart")));
    assert!(!shop.keeps(Kind::EndpointSlice, &slice("legacy")));
}

#[test]
fn a_gateway_in_the_services_namespace_needs_no_namespace_label() {
    let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: local, namespace: waypoints, labels: {istio.io/use-waypoint: wp}}
---
apiVersion: v1
kind: Service
metadata: {name: remote, namespace: other, labels: {istio.io/use-waypoint: wp}}
"#;
    let s = scope(&store(yaml), &gw(), ROOT);
    assert_eq!(names(&s), ["Service waypoints/local"]);
}

#[test]
fn a_relist_replaces_what_a_watch_held() {
    let mut st = store(WORLD);
    let id = WatchId {
        kind: Kind::Pod,
        namespace: None,
    };
    st.listing(&id);
    st.listed(
        &id,
        serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "cart-2", "namespace": "shop", "labels": {"app": "cart"}}}),
    );
    // Until the list is done, the old objects stay.
    assert!(names(&scope(&st, &gw(), ROOT)).contains(&"Pod shop/cart-1".to_string()));
    st.list_done(&id);
    let after = names(&scope(&st, &gw(), ROOT));
    assert!(after.contains(&"Pod shop/cart-2".to_string()));
    assert!(!after.contains(&"Pod shop/cart-1".to_string()));
    assert!(!after.contains(&"Pod other/api-1".to_string()));
}

#[test]
fn the_same_object_from_two_watches_is_served_once_and_outlives_either() {
    let mut st = Store::default();
    let svc = serde_json::json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "x", "namespace": "waypoints", "labels": {"istio.io/use-waypoint": "wp"}}});
    let cluster = WatchId {
        kind: Kind::Service,
        namespace: None,
    };
    let local = WatchId {
        kind: Kind::Service,
        namespace: Some("waypoints".into()),
    };
    st.apply(&cluster, svc.clone());
    st.apply(&local, svc);
    assert_eq!(names(&scope(&st, &gw(), ROOT)), ["Service waypoints/x"]);
    st.forget(&local);
    assert_eq!(names(&scope(&st, &gw(), ROOT)), ["Service waypoints/x"]);
}

#[test]
fn cluster_wide_watches_keep_only_what_can_concern_this_waypoint() {
    let wanted = BTreeSet::from(["shop".to_string(), "waypoints".to_string()]);
    let keeps = |kind, yaml: &str| {
        let v: Value = serde_yaml_ng::from_str(yaml).unwrap();
        super::keeps(kind, &v, &gw(), &wanted, ROOT)
    };
    let svc = "metadata: {name: s, namespace: other, labels: {istio.io/use-waypoint: wp, istio.io/use-waypoint-namespace: waypoints}}";
    assert!(keeps(Kind::Service, svc));
    let theirs = "metadata: {name: s, namespace: other, labels: {istio.io/use-waypoint: another}}";
    assert!(!keeps(Kind::Service, theirs));
    assert!(keeps(
        Kind::VirtualService,
        "metadata: {name: v, namespace: shop}"
    ));
    assert!(!keeps(
        Kind::VirtualService,
        "metadata: {name: v, namespace: team-c}"
    ));
    assert!(keeps(
        Kind::DestinationRule,
        "metadata: {name: d, namespace: istio-system}"
    ));
    let consumer = "metadata: {name: r, namespace: team-b}\nspec: {parentRefs: [{kind: Service, name: cart, namespace: shop}]}";
    assert!(keeps(Kind::HttpRoute, consumer));
    let elsewhere =
        "metadata: {name: r, namespace: team-b}\nspec: {parentRefs: [{kind: Service, name: x}]}";
    assert!(!keeps(Kind::HttpRoute, elsewhere));
    // GRPCRoutes and TCPRoutes are kept as HTTPRoutes are.
    for kind in [Kind::GrpcRoute, Kind::TcpRoute] {
        assert!(keeps(kind, consumer));
        assert!(!keeps(kind, elsewhere));
    }
    assert!(keeps(Kind::Namespace, "metadata: {name: shop}"));
    assert!(!keeps(Kind::Namespace, "metadata: {name: team-c}"));
}

#[test]
fn authorization_policies_come_from_where_istio_looks_for_a_waypoint() {
    let policy = |ns: &str, name: &str| {
        format!("---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\n")
    };
    let yaml = [
        WORLD.to_string(),
        policy("shop", "on-cart"),
        policy("waypoints", "on-gateway"),
        policy("istio-system", "every-waypoint"),
        policy("team-c", "unrelated"),
    ]
    .concat();
    let s = scope(&store(&yaml), &gw(), ROOT);
    let kept: Vec<String> = names(&s)
        .into_iter()
        .filter(|n| n.starts_with("AuthorizationPolicy"))
        .collect();
    assert_eq!(
        kept,
        [
            "AuthorizationPolicy istio-system/every-waypoint",
            "AuthorizationPolicy shop/on-cart",
            "AuthorizationPolicy waypoints/on-gateway",
        ]
    );
    let wanted: BTreeSet<String> = s.namespaces.clone();
    let held = |ns: &str| {
        let v: Value = serde_json::json!({"metadata": {"namespace": ns, "name": "p"}});
        keeps(Kind::AuthorizationPolicy, &v, &gw(), &wanted, ROOT)
    };
    assert!(held("shop") && held("istio-system") && held("waypoints"));
    assert!(!held("team-c"), "dropped on arrival");
}

#[test]
fn the_mesh_config_and_mesh_wide_policies_come_from_the_root_namespace_given() {
    let doc = |kind: &str, api: &str, ns: &str, name: &str| {
        format!(
            "---\napiVersion: {api}\nkind: {kind}\nmetadata: {{name: {name}, namespace: {ns}}}\n"
        )
    };
    let mut yaml = WORLD.to_string();
    for ns in ["istio-system", "mesh-root"] {
        yaml += &doc("ConfigMap", "v1", ns, "istio");
        yaml += &doc("AuthorizationPolicy", "security.istio.io/v1", ns, "all");
    }
    let st = store(&yaml);
    let mesh_wide = |root: &str| -> Vec<String> {
        names(&scope(&st, &gw(), root))
            .into_iter()
            .filter(|n| n.starts_with("ConfigMap") || n.ends_with("/all"))
            .collect()
    };
    assert_eq!(
        mesh_wide("mesh-root"),
        [
            "AuthorizationPolicy mesh-root/all",
            "ConfigMap mesh-root/istio"
        ]
    );
    assert_eq!(
        mesh_wide(ROOT),
        [
            "AuthorizationPolicy istio-system/all",
            "ConfigMap istio-system/istio"
        ]
    );
    let policy = serde_json::json!({"metadata": {"namespace": "mesh-root", "name": "all"}});
    let wanted = BTreeSet::new();
    assert!(keeps(
        Kind::AuthorizationPolicy,
        &policy,
        &gw(),
        &wanted,
        "mesh-root"
    ));
    assert!(!keeps(
        Kind::AuthorizationPolicy,
        &policy,
        &gw(),
        &wanted,
        ROOT
    ));
}

#[test]
fn authorizers_are_held_with_their_endpoints_but_not_served() {
    let yaml = format!(
        "{WORLD}---
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: {ROOT}}}
data:
  mesh: |
    extensionProviders:
    - name: opa
      envoyExtAuthzGrpc: {{service: opa.authz.svc.cluster.local, port: 9191}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: authz}}
---
apiVersion: v1
kind: Service
metadata: {{name: opa, namespace: authz}}
spec: {{selector: {{app: opa}}, ports: [{{port: 9191}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: unrelated, namespace: authz}}
spec: {{selector: {{app: other}}, ports: [{{port: 80}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: opa-1, namespace: authz, labels: {{app: opa}}}}
status: {{podIP: 10.1.9.1}}
---
apiVersion: v1
kind: Pod
metadata: {{name: other-1, namespace: authz, labels: {{app: other}}}}
status: {{podIP: 10.1.9.2}}
"
    );
    let s = scope(&store(&yaml), &gw(), ROOT);
    let held: Vec<String> = names(&s)
        .into_iter()
        .filter(|n| n.contains("authz"))
        .collect();
    assert_eq!(
        held,
        ["Namespace /authz", "Service authz/opa", "Pod authz/opa-1"]
    );
    assert!(
        !s.services.contains(&("authz".into(), "opa".into())),
        "not served"
    );
    assert_eq!(
        s.authorizer_namespaces,
        BTreeSet::from(["authz".to_string()])
    );
    assert!(s.endpoint_namespaces["authz"].keeps(
        Kind::Pod,
        &serde_json::json!({"metadata": {"labels": {"app": "opa"}}})
    ));
}
