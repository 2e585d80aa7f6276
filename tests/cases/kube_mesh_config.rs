//! The mesh config read from the Kubernetes API: ConfigMap `istio` of Istio's
//! root namespace brings its ext_authz providers into the snapshot, and no
//! other ConfigMap is ever listed, watched or held. What the data path does
//! with a provider is not this file's business.

use super::kube_source::config_dump;
use crate::common::kube::{Cluster, GATEWAY};
use crate::common::{Certs, WaypointProc};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use waypoint::testing::kube_api::Request;

/// The authorizer's Service, in a namespace of its own that is not bound to
/// the waypoint (held because a provider names it, not served), and a CUSTOM
/// policy that asks it.
const AUTHORIZER: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: ext-authz, namespace: authz}
spec:
  clusterIP: 10.96.0.30
  ports: [{name: grpc, port: 9000}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: admin-check, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: productpage}]
  action: CUSTOM
  provider: {name: checker}
  rules: [{to: [{operation: {paths: [/admin/*]}}]}]
"#;

/// ConfigMap `namespace/name` whose mesh config defines gRPC provider
/// `provider` on the authorizer, beside a key that is not the mesh config.
fn mesh(namespace: &str, name: &str, provider: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
    "metadata": {"name": name, "namespace": namespace},
    "data": {
        "mesh": format!("extensionProviders:\n- name: {provider}\n  envoyExtAuthzGrpc: {{service: ext-authz.authz.svc.cluster.local, port: 9000}}\n"),
        "meshNetworks": "networks: {}",
    }})
}

/// Decoys no waypoint may read: `istio` of another namespace, and another
/// ConfigMap of the root namespace, each naming a provider of its own.
fn decoys(c: &Cluster, root: &str) {
    c.api.apply(mesh("shop", "istio", "from-shop"));
    c.api.apply(mesh(
        root,
        "istio-sidecar-injector",
        "from-another-config-map",
    ));
}

/// Waits until the snapshot's providers are `names`; returns the dump.
async fn until_providers(wp: &WaypointProc, names: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let dump = config_dump(wp).await;
        let now: Vec<&str> = dump["snapshot"]["ext_authz"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str())
            .collect();
        if now == names {
            return dump;
        }
        assert!(
            Instant::now() < deadline,
            "providers never became {names:?}: {}",
            dump["snapshot"]["ext_authz"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The CUSTOM policy as it attaches to productpage.
fn admin_check(dump: &Value) -> Value {
    let services = dump["snapshot"]["services"].as_array().unwrap();
    let pp = services
        .iter()
        .find(|s| s["name"] == "productpage")
        .unwrap();
    let policies = pp["authz"].as_array().unwrap();
    let found = policies
        .iter()
        .find(|p| p["source"]["name"] == "admin-check");
    found.cloned().unwrap_or_else(|| panic!("{pp}"))
}

/// Every ConfigMap call was a read of `root/istio` alone.
fn read_only_the_mesh_config(requests: Vec<Request>, root: &str) {
    let reads: Vec<Request> = requests
        .into_iter()
        .filter(|r| r.resource.as_deref() == Some("configmaps"))
        .collect();
    assert!(!reads.is_empty(), "the mesh config was never read");
    for r in reads {
        assert_eq!(
            (r.namespace.as_deref(), r.name.as_deref()),
            (Some(root), Some("istio")),
            "{} {}?{}",
            r.method,
            r.path,
            r.query
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_namespace_mesh_config_brings_its_providers_and_no_other_config_map_is_read() {
    let mut c = Cluster::new().await;
    c.add_pod("pp-1", "v1", true).await;
    c.api.apply_yaml(AUTHORIZER);
    decoys(&c, "istio-system");
    let certs = Certs::new();
    let wp = WaypointProc::start_kube(&c.kubeconfig, GATEWAY, &certs.waypoint_dir, &[], &[]).await;
    // No mesh config yet: the policy names an unknown provider, so it stands
    // as a DENY of what it matches.
    let dump = until_providers(&wp, &[]).await;
    assert_eq!(admin_check(&dump)["fail_closed"], true);

    c.api.apply(mesh("istio-system", "istio", "checker"));
    let dump = until_providers(&wp, &["checker"]).await;
    let provider = &dump["snapshot"]["ext_authz"][0];
    assert_eq!(
        (&provider["protocol"], &provider["port"]),
        (&json!("Grpc"), &json!(9000))
    );
    let service = provider["service"].as_u64().unwrap() as usize;
    assert_eq!(dump["snapshot"]["services"][service]["name"], "ext-authz");
    let policy = admin_check(&dump);
    assert_eq!(policy["action"], json!({"Custom": {"provider": "checker"}}));
    assert_eq!(policy["fail_closed"], false);

    // Deleted: its providers go with it, and the policy is a DENY again.
    c.api.delete("configmaps", "istio-system", "istio");
    let dump = until_providers(&wp, &[]).await;
    assert_eq!(admin_check(&dump)["fail_closed"], true);

    read_only_the_mesh_config(c.api.requests(), "istio-system");
    crate::common::rbac::assert_granted(&c.api, "docker/k8s/rbac.yaml");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_config_follows_the_root_namespace_flag() {
    let mut c = Cluster::new().await;
    c.add_pod("pp-1", "v1", true).await;
    c.api.apply_yaml(AUTHORIZER);
    decoys(&c, "mesh-root");
    c.api
        .apply(mesh("istio-system", "istio", "from-istio-system"));
    c.api.apply(mesh("mesh-root", "istio", "checker"));
    let certs = Certs::new();
    let wp = WaypointProc::start_kube(
        &c.kubeconfig,
        GATEWAY,
        &certs.waypoint_dir,
        &["--root-namespace", "mesh-root"],
        &[],
    )
    .await;
    let dump = until_providers(&wp, &["checker"]).await;
    assert_eq!(admin_check(&dump)["fail_closed"], false);
    read_only_the_mesh_config(c.api.requests(), "mesh-root");
}
