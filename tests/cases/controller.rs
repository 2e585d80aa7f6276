//! `waypoint controller` against the in-process API server (no real one runs
//! here): a Gateway of our class gets its waypoint deployed and its status
//! written; edits by hand are undone; invalid Gateways get nothing but a
//! condition that says why.

use crate::common::proc::bin;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use waypoint::testing::kube_api::{KubeApi, Verb};

struct Controller {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Controller {
    /// A replica named `pod`, on a 3 s Lease so that a test sees a takeover.
    fn start(kubeconfig: &std::path::Path, pod: &str) -> Controller {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(bin())
            .args(["controller", "--kubeconfig"])
            .arg(kubeconfig)
            .args(["--image", "example/waypoint:test", "--lease-seconds", "3"])
            .env("POD_NAME", pod)
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        Controller { child, log }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The in-process API server holding `yaml`, and a kubeconfig for it (in the
/// directory returned, which must outlive the test).
async fn api_with(yaml: &str) -> (KubeApi, tempfile::TempDir, std::path::PathBuf) {
    let api = KubeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    api.apply_yaml(yaml);
    (api, dir, kubeconfig)
}

async fn eventually<T>(what: &str, c: &Controller, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn condition(obj: &Value, kind: &str) -> (String, String) {
    let c = obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind).cloned())
        .unwrap_or_default();
    (
        c["status"].as_str().unwrap_or_default().to_string(),
        c["reason"].as_str().unwrap_or_default().to_string(),
    )
}

const GATEWAYS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: pingora-waypoint}
spec: {controllerName: pingora-waypoint.dev/controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: reviews-wp, namespace: shop,
  annotations: {gateway.istio.io/service-account: reviews}}
spec:
  gatewayClassName: pingora-waypoint
  infrastructure: {labels: {team: shop}}
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wrong, namespace: shop}
spec:
  gatewayClassName: pingora-waypoint
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: istios, namespace: shop}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_of_our_class_gets_its_waypoint_and_status() {
    let (api, _dir, kubeconfig) = api_with(GATEWAYS).await;
    let c = Controller::start(&kubeconfig, "controller-a");

    let deploy = eventually("the Deployment exists", &c, || {
        api.get("deployments", "shop", "reviews-wp")
    })
    .await;
    let owner = &deploy["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Gateway");
    let gw_uid = api.get("gateways", "shop", "reviews-wp").unwrap()["metadata"]["uid"].clone();
    assert_eq!(owner["uid"], gw_uid);
    assert_eq!(deploy["metadata"]["labels"]["team"], "shop");
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "reviews");
    assert_eq!(pod["containers"][0]["image"], "example/waypoint:test");
    let sa = eventually("the ServiceAccount exists", &c, || {
        api.get("serviceaccounts", "shop", "reviews")
    })
    .await;
    // Named by the annotation, so possibly shared: no Gateway owns it.
    assert!(sa["metadata"].get("ownerReferences").is_none(), "{sa}");
    let svc = eventually("the Service exists", &c, || {
        api.get("services", "shop", "reviews-wp")
    })
    .await;
    assert_eq!(svc["metadata"]["labels"]["istio.io/use-waypoint"], "none");
    // The mesh config's read, granted in the root namespace only.
    let mesh = eventually("the mesh config's RoleBinding exists", &c, || {
        api.get(
            "rolebindings",
            "istio-system",
            "pingora-waypoint:shop:reviews-wp",
        )
    })
    .await;
    assert_eq!(mesh["roleRef"]["name"], "pingora-waypoint-mesh-config");
    assert_eq!(
        mesh["subjects"],
        json!([{"kind": "ServiceAccount", "name": "reviews", "namespace": "shop"}])
    );

    let class = eventually("the class is accepted", &c, || {
        api.get("gatewayclasses", "", "pingora-waypoint")
            .filter(|g| condition(g, "Accepted").0 == "True")
    })
    .await;
    assert_eq!(condition(&class, "Accepted").1, "Accepted");

    // Accepted, not yet programmed: no pod is ready, so no address.
    let gw = eventually("the Gateway is accepted", &c, || {
        api.get("gateways", "shop", "reviews-wp")
            .filter(|g| condition(g, "Accepted").0 == "True")
    })
    .await;
    assert_eq!(
        condition(&gw, "Programmed"),
        ("False".into(), "Pending".into())
    );
    assert_eq!(gw["status"]["addresses"], json!([]));
    assert_eq!(
        gw["status"]["listeners"][0]["conditions"][0]["reason"],
        "Accepted"
    );

    // The Deployment's pods turn ready: the address istiod needs appears.
    let mut ready = api.get("deployments", "shop", "reviews-wp").unwrap();
    ready["status"] = json!({"replicas": 1, "readyReplicas": 1});
    api.apply(ready);
    let gw = eventually("the Gateway is programmed", &c, || {
        api.get("gateways", "shop", "reviews-wp")
            .filter(|g| condition(g, "Programmed").0 == "True")
    })
    .await;
    assert_eq!(
        gw["status"]["addresses"],
        json!([{"type": "Hostname", "value": "reviews-wp.shop.svc.cluster.local"}])
    );

    // Edited by hand: applied over again.
    let mut edited = api.get("deployments", "shop", "reviews-wp").unwrap();
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = json!("someone/else:1");
    api.apply(edited);
    eventually("the edit is undone", &c, || {
        api.get("deployments", "shop", "reviews-wp").filter(|d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"] == "example/waypoint:test"
        })
    })
    .await;

    // The Gateway changes: so does what was deployed for it.
    let mut gw = api.get("gateways", "shop", "reviews-wp").unwrap();
    gw["spec"]["infrastructure"]["labels"]["team"] = json!("books");
    api.apply(gw);
    eventually("the label follows", &c, || {
        api.get("services", "shop", "reviews-wp")
            .filter(|s| s["metadata"]["labels"]["team"] == "books")
    })
    .await;

    // An invalid Gateway gets a condition and nothing else; another class, nothing.
    let wrong = eventually("the invalid Gateway has its status", &c, || {
        api.get("gateways", "shop", "wrong")
            .filter(|g| !condition(g, "Accepted").0.is_empty())
    })
    .await;
    assert_eq!(
        condition(&wrong, "Accepted"),
        ("False".into(), "ListenersNotValid".into())
    );
    assert_eq!(
        condition(&wrong, "Programmed"),
        ("False".into(), "Invalid".into())
    );
    let message = &wrong["status"]["conditions"][0]["message"];
    assert!(
        message.as_str().unwrap().contains("spec.listeners[0]"),
        "{message}"
    );
    assert!(api.get("deployments", "shop", "wrong").is_none());
    assert!(api
        .get("gateways", "shop", "istios")
        .unwrap()
        .get("status")
        .is_none());
    assert!(api.get("deployments", "shop", "istios").is_none());

    // Deleted: the namespaced objects are the garbage collector's (owned by
    // the Gateway); the bindings it cannot own (cluster-scoped, or in the root
    // namespace) are the controller's to delete, and the Gateway waits for them.
    let gw = api.get("gateways", "shop", "reviews-wp").unwrap();
    assert_eq!(gw["metadata"]["finalizers"], json!([reconcile_finalizer()]));
    api.delete("gateways", "shop", "reviews-wp");
    let binding = "pingora-waypoint:shop:reviews-wp";
    eventually("the Gateway and its bindings are gone", &c, || {
        (api.get("gateways", "shop", "reviews-wp").is_none()
            && api.get("clusterrolebindings", "", binding).is_none()
            && api.get("rolebindings", "istio-system", binding).is_none())
        .then_some(())
    })
    .await;
    crate::common::rbac::assert_granted(&api, "docker/k8s/controller.yaml");

    // Settled: its own status writes do not wake it into more.
    let status_writes = api.requests_to(Verb::Patch, "gateways/status").len();
    assert!(status_writes >= 3, "{status_writes} status writes");
    // No call (watches and Lease renewals aside) while nothing changes: not a
    // status write, nor an apply of what is already there.
    let calls = || {
        api.requests()
            .iter()
            .filter(|r| {
                r.verb != Verb::Watch && r.resource.as_deref() != Some("leases.coordination.k8s.io")
            })
            .count()
    };
    let before = calls();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(calls(), before, "woken by its own writes");
}

fn reconcile_finalizer() -> &'static str {
    waypoint::controller::reconcile::FINALIZER
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_acts_and_another_takes_over_when_it_goes() {
    let (api, _dir, kubeconfig) = api_with("").await;
    let a = Controller::start(&kubeconfig, "controller-a");
    let holder = || {
        api.get(
            "leases",
            "pingora-waypoint-system",
            "pingora-waypoint-controller",
        )
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(String::from))
    };
    eventually("a leads", &a, || holder().filter(|h| h == "controller-a")).await;
    let b = Controller::start(&kubeconfig, "controller-b");
    let gateway = |name: &str| {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"gatewayClassName": "pingora-waypoint",
                "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}})
    };
    api.apply(gateway("first"));
    eventually("the leader deploys", &a, || {
        api.get("deployments", "shop", "first")
    })
    .await;
    // Over more than two Lease periods the leader keeps renewing, and the
    // standby, which would take an unrenewed Lease, never leads.
    let until = std::time::Instant::now() + Duration::from_secs(7);
    while std::time::Instant::now() < until {
        assert_eq!(holder().as_deref(), Some("controller-a"), "{}", b.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!b.logs().contains("this replica leads"), "{}", b.logs());

    drop(a);
    api.apply(gateway("second"));
    eventually("the other replica takes over", &b, || {
        api.get("deployments", "shop", "second")
    })
    .await;
    assert_eq!(holder().as_deref(), Some("controller-b"));

    // A Gateway moved to another class: what was deployed for it goes (the
    // garbage collector would keep it while the Gateway lives), and so does
    // our finalizer.
    let mut moved = api.get("gateways", "shop", "first").unwrap();
    moved["spec"]["gatewayClassName"] = json!("istio-waypoint");
    api.apply(moved);
    eventually("its waypoint goes", &b, || {
        let gw = api.get("gateways", "shop", "first")?;
        let gone = api.get("deployments", "shop", "first").is_none()
            && api.get("services", "shop", "first").is_none()
            && api
                .get("clusterrolebindings", "", "pingora-waypoint:shop:first")
                .is_none()
            && api
                .get(
                    "rolebindings",
                    "istio-system",
                    "pingora-waypoint:shop:first",
                )
                .is_none();
        let released = gw["metadata"]
            .get("finalizers")
            .is_none_or(|f| f == &json!([]));
        (gone && released).then_some(())
    })
    .await;
}

const PARAMETERISED: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: wp-options, namespace: shop}
data:
  horizontalPodAutoscaler: |
    spec: {minReplicas: 2, maxReplicas: 5}
  deployment: |
    spec:
      template:
        spec:
          terminationGracePeriodSeconds: 120
          containers:
          - name: waypoint
            resources: {requests: {cpu: "1"}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: tuned, namespace: shop}
spec:
  gatewayClassName: pingora-waypoint
  infrastructure: {parametersRef: {group: "", kind: ConfigMap, name: wp-options}}
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: missing, namespace: shop}
spec:
  gatewayClassName: pingora-waypoint
  infrastructure: {parametersRef: {group: "", kind: ConfigMap, name: nowhere}}
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: secret, namespace: shop}
spec:
  gatewayClassName: pingora-waypoint
  infrastructure: {parametersRef: {group: "", kind: Secret, name: wp-options}}
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameters_config_map_overlays_what_is_deployed() {
    let (api, _dir, kubeconfig) = api_with(PARAMETERISED).await;
    let c = Controller::start(&kubeconfig, "controller-a");

    let hpa = eventually("the autoscaler exists", &c, || {
        api.get("horizontalpodautoscalers", "shop", "tuned")
    })
    .await;
    assert_eq!(
        (&hpa["spec"]["minReplicas"], &hpa["spec"]["maxReplicas"]),
        (&json!(2), &json!(5))
    );
    assert!(api.get("poddisruptionbudgets", "shop", "tuned").is_some());
    let deploy = api.get("deployments", "shop", "tuned").unwrap();
    assert!(
        deploy["spec"].get("replicas").is_none(),
        "the autoscaler's to set"
    );
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["terminationGracePeriodSeconds"], 120);
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "merged by name, not added");
    assert_eq!(
        containers[0]["resources"]["requests"],
        json!({"cpu": "1", "memory": "64Mi"})
    );
    assert_eq!(containers[0]["image"], "example/waypoint:test");

    for (gw, says) in [
        ("missing", "ConfigMap shop/nowhere not found"),
        ("secret", "/Secret is not supported"),
    ] {
        let g = eventually("the Gateway is refused", &c, || {
            api.get("gateways", "shop", gw)
                .filter(|g| !condition(g, "Accepted").0.is_empty())
        })
        .await;
        assert_eq!(
            condition(&g, "Accepted"),
            ("False".into(), "InvalidParameters".into())
        );
        let message = g["status"]["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(message.contains(says), "{message}");
        assert!(api.get("deployments", "shop", gw).is_none());
    }
    crate::common::rbac::assert_granted(&api, "docker/k8s/controller.yaml");
}
