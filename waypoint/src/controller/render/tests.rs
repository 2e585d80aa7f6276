use super::*;

fn waypoint(uid: Option<&str>) -> Waypoint {
    Waypoint {
        namespace: "shop".into(),
        name: "reviews-wp".into(),
        class: "pingora-waypoint".into(),
        uid: uid.map(String::from),
        service_account: "reviews".into(),
        listeners: vec![("mesh".into(), 15008)],
        labels: [("team".to_string(), "shop".to_string())].into(),
        annotations: Default::default(),
    }
}

fn kinds(objects: &[Value]) -> Vec<&str> {
    objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect()
}

#[test]
fn a_waypoint_is_what_istiod_and_ztunnel_expect() {
    let objects = render(&waypoint(Some("u-1")), &Settings::default());
    assert_eq!(
        kinds(&objects),
        [
            "ServiceAccount",
            "ClusterRoleBinding",
            "RoleBinding",
            "Deployment",
            "Service"
        ]
    );
    let (sa, binding, deploy, svc) = (&objects[0], &objects[1], &objects[3], &objects[4]);
    assert_eq!(sa["metadata"]["name"], "reviews");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "reviews", "namespace": "shop"}])
    );
    assert_eq!(binding["roleRef"]["name"], "pingora-waypoint");
    assert!(
        binding["metadata"].get("ownerReferences").is_none(),
        "cluster-scoped"
    );
    assert!(
        sa["metadata"].get("ownerReferences").is_none(),
        "an annotated service account may be shared: no Gateway owns it"
    );
    // The mesh config is read in the root namespace, and only there.
    let mesh = &objects[2];
    assert_eq!(mesh["metadata"]["namespace"], "istio-system");
    assert_eq!(
        mesh["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
            "name": "pingora-waypoint-mesh-config"})
    );
    assert_eq!(mesh["subjects"], binding["subjects"]);
    assert!(
        mesh["metadata"].get("ownerReferences").is_none(),
        "in another namespace than its Gateway"
    );
    for o in objects.iter().filter(|o| {
        !matches!(
            o["kind"].as_str(),
            Some("ClusterRoleBinding" | "RoleBinding" | "ServiceAccount")
        )
    }) {
        assert_eq!(o["metadata"]["namespace"], "shop");
        assert_eq!(o["metadata"]["labels"][GATEWAY_NAME], "reviews-wp");
        assert_eq!(
            o["metadata"]["labels"]["team"], "shop",
            "infrastructure labels"
        );
        let owner = &o["metadata"]["ownerReferences"][0];
        assert_eq!(
            (&owner["kind"], &owner["uid"]),
            (&json!("Gateway"), &json!("u-1"))
        );
    }
    let pod = &deploy["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    assert_eq!(labels[GATEWAY_NAME], "reviews-wp");
    assert_eq!(labels["istio.io/dataplane-mode"], "none");
    assert_eq!(labels["sidecar.istio.io/inject"], "false");
    assert_eq!(
        deploy["spec"]["selector"]["matchLabels"],
        json!({GATEWAY_NAME: "reviews-wp"})
    );
    assert_eq!(pod["spec"]["serviceAccountName"], "reviews");
    assert_eq!(
        pod["metadata"]["annotations"]["prometheus.io/port"],
        "15020"
    );
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], 15021);
    assert_eq!(c["startupProbe"]["httpGet"]["path"], "/healthz/ready");
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert!(
        pod["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap()
            > 5
    );
    let token = &pod["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(token["audience"], "istio-ca");
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/var/run/secrets/tokens");
    assert_eq!(c["volumeMounts"][1]["mountPath"], "/var/run/secrets/istio");
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.windows(2)
            .any(|w| w == ["--gateway", "shop/reviews-wp"]),
        "{args:?}"
    );
    assert!(
        args.windows(2)
            .any(|w| w == ["--hbone-max-connection-age", "600"]),
        "ztunnels reconnect, so new replicas get traffic: {args:?}"
    );
    assert!(
        args.windows(2)
            .any(|w| w == ["--root-namespace", "istio-system"]),
        "where its RoleBinding lets it read the mesh config: {args:?}"
    );
    assert_eq!(svc["metadata"]["labels"]["istio.io/use-waypoint"], "none");
    let hbone = &svc["spec"]["ports"][1];
    assert_eq!(
        (&hbone["port"], &hbone["appProtocol"]),
        (&json!(15008), &json!("hbone"))
    );
    assert_eq!(deploy["spec"]["replicas"], 1);
}

#[test]
fn spare_replicas_bring_a_budget_and_an_autoscaler_owns_the_count() {
    let settings = Settings {
        replicas: 2,
        max_replicas: Some(6),
        ..Settings::default()
    };
    let objects = render(&waypoint(None), &settings);
    assert_eq!(
        kinds(&objects),
        [
            "ServiceAccount",
            "ClusterRoleBinding",
            "RoleBinding",
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler"
        ]
    );
    assert!(
        objects[3]["spec"].get("replicas").is_none(),
        "the autoscaler's to set"
    );
    let hpa = &objects[6]["spec"];
    assert_eq!(
        (&hpa["minReplicas"], &hpa["maxReplicas"]),
        (&json!(2), &json!(6))
    );
    assert!(objects[0]["metadata"].get("ownerReferences").is_none());
    let fixed = Settings {
        replicas: 3,
        ..Settings::default()
    };
    assert_eq!(
        kinds(&render(&waypoint(None), &fixed)),
        [
            "ServiceAccount",
            "ClusterRoleBinding",
            "RoleBinding",
            "Deployment",
            "Service",
            "PodDisruptionBudget"
        ]
    );
}

#[test]
fn the_gateway_is_ours_on_the_hbone_port() {
    let gw = gateway("shop", "waypoint", Some("service"));
    assert_eq!(gw["spec"]["gatewayClassName"], "pingora-waypoint");
    assert_eq!(
        gw["spec"]["listeners"],
        json!([{"name": "mesh", "port": 15008, "protocol": "HBONE"}])
    );
    assert_eq!(gw["metadata"]["labels"]["istio.io/waypoint-for"], "service");
}
