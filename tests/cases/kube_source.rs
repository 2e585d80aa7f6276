//! The waypoint reading its config from the Kubernetes API, against the
//! in-process API server that speaks the API's wire protocol
//! (`waypoint::testing::kube_api`): no real API server runs on our machines.

use super::telemetry::{scrape, value};
use crate::common::kube::{Cluster, GATEWAY, VIP};
use crate::common::{Certs, WaypointProc};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use waypoint::testing::kube_api::Verb;

/// Requests sent back to back through one tunnel until stopped, counting what
/// came back.
struct Load {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, Vec<String>)>,
}

impl Load {
    async fn start(wp: &WaypointProc, certs: &Certs, headers: &[(&str, &str)]) -> Load {
        let mut t = crate::common::tunnel(wp, certs, VIP).await;
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            while !flag.load(Ordering::Relaxed) {
                match t.get("http://productpage.shop:9080/", &headers).await {
                    Ok(r) if r.status == 200 => ok += 1,
                    Ok(r) => failed.push(format!("{} {}", r.status, r.text())),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        });
        Load { stop, task }
    }

    async fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `count` stops moving: the waypoint no longer sends there.
async fn settled(count: impl Fn() -> u64) -> u64 {
    let mut last = count();
    loop {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let now = count();
        if now == last {
            return now;
        }
        last = now;
    }
}

async fn metric(wp: &WaypointProc, name: &str) -> f64 {
    value(&scrape(wp.metrics).await, name, &[])
}

async fn start(c: &Cluster, certs: &Certs) -> WaypointProc {
    WaypointProc::start_kube(&c.kubeconfig, GATEWAY, &certs.waypoint_dir, &[], &[]).await
}

/// Pods `pp-v1` and `pp-v2` of versions v1 and v2.
async fn two_versions() -> Cluster {
    let mut c = Cluster::new().await;
    c.add_pod("pp-v1", "v1", true).await;
    c.add_pod("pp-v2", "v2", true).await;
    c
}

/// Waits until a metric reads more than `than`.
async fn until_metric_above(wp: &WaypointProc, name: &str, than: f64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(wp, name).await <= than {
        assert!(Instant::now() < deadline, "{name} never rose above {than}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until a metric reads `want`.
async fn until_metric(wp: &WaypointProc, name: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(wp, name).await != want {
        assert!(Instant::now() < deadline, "{name} never became {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_pod_churn_with_no_failed_request() {
    let mut c = Cluster::new().await;
    c.add_pod("pp-1", "v1", true).await;
    c.add_pod("pp-2", "v1", true).await;
    let certs = Certs::new();
    let wp = start(&c, &certs).await;
    let load = Load::start(&wp, &certs, &[]).await;
    eventually("both pods serve", || {
        c.requests("pp-1") > 20 && c.requests("pp-2") > 20
    })
    .await;
    let builds = whole_builds_settled(&wp).await;

    c.add_pod("pp-3", "v1", true).await;
    eventually("the new pod serves", || c.requests("pp-3") > 20).await;

    c.set_ready("pp-1", false);
    let stopped = settled(|| c.requests("pp-1")).await;
    let others = c.requests("pp-3");
    eventually("the others keep serving", || {
        c.requests("pp-3") > others + 20
    })
    .await;
    assert_eq!(c.requests("pp-1"), stopped, "an unready pod got requests");

    c.delete_pod("pp-2");
    settled(|| c.requests("pp-2")).await;
    // Only now does the pod's process go away, as after its grace period.
    c.pods.remove("pp-2");
    let before = c.requests("pp-3");
    eventually("requests go on", || c.requests("pp-3") > before + 20).await;

    let (ok, failed) = load.stop().await;
    assert!(
        failed.is_empty(),
        "{} failed of {}: {:?}",
        failed.len(),
        ok,
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 100, "{ok}");
    assert_eq!(
        metric(&wp, "waypoint_config_build_seconds").await,
        builds,
        "pod churn translated the whole config again"
    );
    let updates = metric(&wp, "waypoint_config_endpoint_update_seconds").await;
    assert!(updates >= 3.0, "{updates} endpoint updates");

    // A Pod update the model does not read (an annotation, as status
    // heartbeats are) makes no new generation.
    // Then a change that does matter, as a barrier: the waypoint handles a
    // watch's events in order, so once the barrier's generation is live the
    // annotation was seen, and had it made one, this would be two.
    let generation = metric(&wp, "waypoint_config_generation").await;
    let mut pod = c.api.get("pods", "shop", "pp-3").unwrap();
    pod["metadata"]["annotations"] = serde_json::json!({"touched": "yes"});
    c.api.apply(pod);
    // Apart, so that the two are not taken in one batch.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut pod = c.api.get("pods", "shop", "pp-3").unwrap();
    pod["metadata"]["labels"]["app"] = serde_json::json!("elsewhere");
    c.api.apply(pod);
    until_metric_above(&wp, "waypoint_config_generation", generation).await;
    assert_eq!(
        metric(&wp, "waypoint_config_generation").await,
        generation + 1.0,
        "the annotation made a generation of its own"
    );
}

/// Whole builds once they stop coming (the first sync may list some kinds
/// again as the scope settles).
async fn whole_builds_settled(wp: &WaypointProc) -> f64 {
    let mut last = metric(wp, "waypoint_config_build_seconds").await;
    loop {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let now = metric(wp, "waypoint_config_build_seconds").await;
        if now == last {
            return now;
        }
        last = now;
    }
}

const CANARY: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: productpage-v2, namespace: shop}
spec:
  clusterIP: 10.96.0.11
  ports: [{name: http, port: 9080, targetPort: http}]
  selector: {app: productpage, version: v2}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: canary, namespace: shop}
spec:
  parentRefs: [{kind: Service, group: "", name: productpage, port: 9080}]
  rules:
  - matches: [{headers: [{name: x-canary, value: "1"}]}]
    backendRefs: [{name: productpage-v2, port: 9080}]
  - backendRefs: [{name: productpage, port: 9080}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_applied_mid_load_takes_effect_and_gets_its_status_once() {
    let mut c = two_versions().await;
    let certs = Certs::new();
    let wp = start(&c, &certs).await;
    let load = Load::start(&wp, &certs, &[("x-canary", "1")]).await;
    eventually("both versions serve", || {
        c.requests("pp-v1") > 10 && c.requests("pp-v2") > 10
    })
    .await;

    c.api.apply_yaml(CANARY);
    let v1 = settled(|| c.requests("pp-v1")).await;
    let v2 = c.requests("pp-v2");
    eventually("canaries go to v2", || c.requests("pp-v2") > v2 + 50).await;
    assert_eq!(
        c.requests("pp-v1"),
        v1,
        "a canary reached v1 after the route"
    );
    let (_, failed) = load.stop().await;
    assert!(failed.is_empty(), "{failed:?}");

    let status = || {
        c.api
            .get("httproutes", "shop", "canary")
            .and_then(|r| r["status"]["parents"].as_array().cloned())
            .unwrap_or_default()
    };
    eventually("the route has its status", || !status().is_empty()).await;
    let parents = status();
    assert_eq!(parents.len(), 1);
    assert_eq!(
        parents[0]["controllerName"],
        "pingora-waypoint.dev/controller"
    );
    assert_eq!(
        parents[0]["parentRef"],
        json!({"group": "", "kind": "Service", "namespace": "shop", "name": "productpage", "port": 9080})
    );
    let conditions: Vec<(String, String, String)> = parents[0]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].to_string(),
                c["status"].to_string(),
                c["reason"].to_string(),
            )
        })
        .collect();
    assert_eq!(
        conditions,
        [
            (
                "\"Accepted\"".into(),
                "\"True\"".into(),
                "\"Accepted\"".into()
            ),
            (
                "\"ResolvedRefs\"".into(),
                "\"True\"".into(),
                "\"ResolvedRefs\"".into()
            )
        ]
    );
    // More rebuilds (pods come and go) write nothing more: once they are live,
    // a write would already have been sent (the writer wakes on each change).
    let generation = metric(&wp, "waypoint_config_generation").await;
    c.add_pod("pp-v1-b", "v1", true).await;
    until_metric_above(&wp, "waypoint_config_generation", generation).await;
    let generation = metric(&wp, "waypoint_config_generation").await;
    c.set_ready("pp-v1-b", false);
    until_metric_above(&wp, "waypoint_config_generation", generation).await;
    assert_eq!(c.api.requests_to(Verb::Patch, "httproutes/status").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_resource_is_rejected_alone_and_says_why() {
    let mut c = Cluster::new().await;
    c.add_pod("pp-1", "v1", true).await;
    let certs = Certs::new();
    let wp = start(&c, &certs).await;
    c.api.apply_yaml(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: good, namespace: shop}
spec:
  parentRefs: [{kind: Service, group: "", name: productpage}]
  rules:
  - filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: x-route, value: good}]}}]
    backendRefs: [{name: productpage, port: 9080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: broken, namespace: shop}
spec:
  parentRefs: [{kind: Service, group: "", name: productpage}]
  rules:
  - matches: [{path: {type: Bogus, value: /}}]
    backendRefs: [{name: productpage, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: broken-dr, namespace: shop}
spec:
  host: productpage
  trafficPolicy: {connectionPool: {http: {http1MaxPendingRequests: "many"}}}
"#,
    );
    let mut t = crate::common::tunnel(&wp, &certs, VIP).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = t.get("http://productpage.shop:9080/", &[]).await.unwrap();
        assert_eq!(r.status, 200);
        if r.header("x-route") == Some("good") {
            break;
        }
        assert!(Instant::now() < deadline, "the good route never applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let accepted = |name: &str| {
        c.api.get("httproutes", "shop", name).and_then(|r| {
            let cond = r["status"]["parents"][0]["conditions"][0].clone();
            (!cond.is_null()).then_some(cond)
        })
    };
    eventually("both routes have status", || {
        accepted("good").is_some() && accepted("broken").is_some()
    })
    .await;
    assert_eq!(accepted("good").unwrap()["status"], "True");
    let broken = accepted("broken").unwrap();
    assert_eq!(
        (broken["status"].as_str(), broken["reason"].as_str()),
        (Some("False"), Some("UnsupportedValue"))
    );
    assert!(
        broken["message"]
            .as_str()
            .unwrap()
            .contains("spec.rules[0].matches[0].path.type"),
        "{broken}"
    );
    eventually("an Event names the DestinationRule", || {
        c.api.list("events.events.k8s.io").iter().any(|e| {
            e["regarding"]["name"] == "broken-dr"
                && e["note"]
                    .as_str()
                    .is_some_and(|n| n.contains("http1MaxPendingRequests"))
        })
    })
    .await;
    assert_eq!(metric(&wp, "waypoint_config_rejected_resources").await, 2.0);
    assert!(
        wp.log_contains(
            "config rejected: HTTPRoute shop/broken: spec.rules[0].matches[0].path.type"
        )
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_going_away_loses_nothing() {
    let c = two_versions().await;
    let certs = Certs::new();
    let wp = start(&c, &certs).await;
    let load = Load::start(&wp, &certs, &[("x-canary", "1")]).await;
    // The route's backend exists before the outage. Objects of different kinds
    // come back on different watches, each reconnecting on its own back-off,
    // so a Service and a route naming it, created together while the server
    // was away, can arrive a moment apart (an unresolved backend answers 500
    // meanwhile, as Gateway API says); that window is not what this test is
    // about.
    let service = CANARY.split("---").next().unwrap();
    let generation = metric(&wp, "waypoint_config_generation").await;
    c.api.apply_yaml(service);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&wp, "waypoint_config_generation").await <= generation {
        assert!(Instant::now() < deadline, "the Service was never seen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.api.pause();
    until_metric(&wp, "waypoint_config_source_up", 0.0).await;
    // Changed while it was away: seen once it is back.
    c.api.apply_yaml(CANARY);
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.api.resume();
    until_metric(&wp, "waypoint_config_source_up", 1.0).await;
    let v1 = settled(|| c.requests("pp-v1")).await;
    let v2 = c.requests("pp-v2");
    eventually("the route applied while away takes effect", || {
        c.requests("pp-v2") > v2 + 20
    })
    .await;
    assert_eq!(c.requests("pp-v1"), v1);
    // History compacted away (410 Gone): the watches list again and go on.
    c.api.compact();
    c.api.delete("httproutes", "shop", "canary");
    let v1 = c.requests("pp-v1");
    eventually("the route's removal after compaction takes effect", || {
        c.requests("pp-v1") > v1 + 20
    })
    .await;
    let (ok, failed) = load.stop().await;
    assert!(failed.is_empty(), "{failed:?}");
    assert!(ok > 50);
    assert!(wp.log_contains("serving generation").await, "{}", wp.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_the_first_sync() {
    let mut c = Cluster::new().await;
    c.add_pod("pp-1", "v1", true).await;
    c.api.pause();
    let certs = Certs::new();
    let wp =
        WaypointProc::start_kube_unready(&c.kubeconfig, GATEWAY, &certs.waypoint_dir, &[], &[])
            .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!wp.ready().await, "ready before any sync");
    c.api.resume();
    wp.until_ready().await;
    let mut t = crate::common::tunnel(&wp, &certs, VIP).await;
    assert_eq!(
        t.get("http://productpage.shop:9080/", &[])
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrelated_namespaces_are_not_held() {
    let mut c = Cluster::new().await;
    c.add_pod("pp-1", "v1", true).await;
    let certs = Certs::new();
    let wp = start(&c, &certs).await;
    let held = metric(&wp, "waypoint_config_objects").await;
    // 20 namespaces of 10 services and 50 pods each, none using this waypoint,
    // their routes, and unselected pods in the bound namespace.
    let mut objects = Vec::new();
    for n in 0..20 {
        let ns = format!("team-{n}");
        objects.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
        for s in 0..10 {
            objects.push(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("svc-{s}"), "namespace": ns},
                "spec": {"clusterIP": format!("10.97.{n}.{s}"), "ports": [{"port": 80}], "selector": {"app": format!("svc-{s}")}}}));
            for p in 0..5 {
                objects.push(json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("svc-{s}-{p}"), "namespace": ns, "labels": {"app": format!("svc-{s}")}},
                    "status": {"podIP": format!("10.1.{n}.{}", s * 5 + p)}}));
            }
        }
    }
    // Config and Services of other teams and other waypoints.
    for n in 0..20 {
        let ns = format!("team-{n}");
        objects.push(
            json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "vs", "namespace": ns}, "spec": {"hosts": ["svc-0"]}}),
        );
        objects.push(
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "route", "namespace": ns},
            "spec": {"parentRefs": [{"kind": "Service", "group": "", "name": "svc-1"}]}}),
        );
        objects.push(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "other-waypoint", "namespace": ns, "labels": {"istio.io/use-waypoint": "another"}},
            "spec": {"clusterIP": format!("10.98.0.{n}"), "ports": [{"port": 80}]}}));
    }
    for p in 0..100 {
        objects.push(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("batch-{p}"), "namespace": "shop", "labels": {"app": "batch"}},
            "status": {"podIP": format!("10.2.0.{p}")}}));
    }
    c.api.apply_all(objects);
    // A change the waypoint does serve, so it has surely seen the rest.
    c.add_pod("pp-2", "v1", true).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&wp, "waypoint_config_objects").await < held + 2.0 {
        assert!(Instant::now() < deadline, "the served pod never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The new pod and its EndpointSlice, nothing else.
    assert_eq!(metric(&wp, "waypoint_config_objects").await, held + 2.0);
    let cluster_wide_pods = c
        .api
        .requests()
        .into_iter()
        .filter(|r| matches!(r.verb, Verb::List | Verb::Watch))
        .filter(|r| r.resource.as_deref() == Some("pods") && r.namespace.is_none())
        .count();
    assert_eq!(
        cluster_wide_pods, 0,
        "pods are only watched where a served Service is"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_whose_crd_is_missing_is_picked_up_when_it_appears() {
    let c = two_versions().await;
    c.api.remove_crd("virtualservices.networking.istio.io");
    let certs = Certs::new();
    let wp = start(&c, &certs).await;
    assert!(
        wp.log_contains("VirtualService: not served by the API server")
            .await
    );
    c.api.install_crd("virtualservices.networking.istio.io");
    c.api.apply_yaml(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pp, namespace: shop}
spec:
  hosts: [productpage]
  http:
  - directResponse: {status: 418, body: {string: "from the VirtualService"}}
"#,
    );
    let mut t = crate::common::tunnel(&wp, &certs, VIP).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while t
        .get("http://productpage.shop:9080/", &[])
        .await
        .unwrap()
        .status
        != 418
    {
        assert!(
            Instant::now() < deadline,
            "the VirtualService never applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_elected_replica_writes_status_within_its_rbac() {
    let c = two_versions().await;
    let certs = Certs::new();
    let a = WaypointProc::start_kube(
        &c.kubeconfig,
        GATEWAY,
        &certs.waypoint_dir,
        &[],
        &[("POD_NAME", "wp-a")],
    )
    .await;
    let b = WaypointProc::start_kube(
        &c.kubeconfig,
        GATEWAY,
        &certs.waypoint_dir,
        &[],
        &[("POD_NAME", "wp-b")],
    )
    .await;
    c.api.apply_yaml(CANARY);
    eventually("the route has its status", || {
        c.api.get("httproutes", "shop", "canary").is_some_and(|r| {
            r["status"]["parents"]
                .as_array()
                .is_some_and(|p| !p.is_empty())
        })
    })
    .await;
    let holder =
        c.api.get("leases", "shop", "wp-status-writer").unwrap()["spec"]["holderIdentity"].clone();
    assert!(holder == "wp-a" || holder == "wp-b", "{holder}");
    let (leader, other) = if holder == "wp-a" { (&a, &b) } else { (&b, &a) };
    // Both replicas have tried the Lease again since the route came (each
    // tries every renewal period), so a second writer would have written.
    let leases = c.api.requests_to(Verb::Get, "leases").len();
    eventually("both replicas tried the Lease again", || {
        c.api.requests_to(Verb::Get, "leases").len() >= leases + 2
    })
    .await;
    assert_eq!(c.api.requests_to(Verb::Patch, "httproutes/status").len(), 1);
    assert!(
        leader.logs().contains("this replica leads"),
        "{}",
        leader.logs()
    );
    assert!(
        !other.logs().contains("this replica leads"),
        "{}",
        other.logs()
    );
    drop((a, b));

    // Every call both replicas made is one docker/k8s/rbac.yaml grants.
    crate::common::rbac::assert_granted(&c.api, "docker/k8s/rbac.yaml");
}

/// The config the waypoint serves, from its admin `/config_dump`.
pub(super) async fn config_dump(wp: &WaypointProc) -> serde_json::Value {
    let raw = super::telemetry::admin_get(wp.admin, "/config_dump").await;
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_policies_reach_the_snapshot_and_a_refused_one_stays_fail_closed() {
    let mut c = Cluster::new().await;
    c.add_pod("pp-1", "v1", true).await;
    let certs = Certs::new();
    let wp = start(&c, &certs).await;
    c.api.apply_yaml(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: readers, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: productpage}]
  rules: [{to: [{operation: {methods: [GET]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: shop}
spec:
  action: DENY
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: wp}]
  rules: [{when: [{key: "experimental.envoy.filters.x[y]", values: [z]}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: elsewhere, namespace: other}
spec:
  action: DENY
  targetRefs: [{kind: Service, group: "", name: productpage}]
  rules: [{}]
"#,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let dump = loop {
        let dump = config_dump(&wp).await;
        let wide = dump["snapshot"]["authz"].as_array().map_or(0, Vec::len);
        let own = dump["snapshot"]["services"][0]["authz"]
            .as_array()
            .map_or(0, Vec::len);
        if wide == 1 && own == 1 {
            break dump;
        }
        assert!(Instant::now() < deadline, "policies never applied: {dump}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let own = &dump["snapshot"]["services"][0]["authz"][0];
    assert_eq!(own["source"]["name"], "readers");
    assert_eq!(own["action"], "Allow");
    assert_eq!(own["fail_closed"], false);
    // The refused DENY is kept as a DENY of every request, not left out.
    let wide = &dump["snapshot"]["authz"][0];
    assert_eq!(wide["source"]["name"], "no-admin");
    assert_eq!(
        (&wide["action"], &wide["fail_closed"]),
        (&json!("Deny"), &json!(true))
    );
    assert_eq!(wide["rules"], json!([{"from": [], "to": [], "when": []}]));
    eventually("an Event names the refused policy", || {
        c.api.list("events.events.k8s.io").iter().any(|e| {
            e["regarding"]["name"] == "no-admin"
                && e["note"]
                    .as_str()
                    .is_some_and(|n| n.contains("spec.rules[0].when[0].key"))
        })
    })
    .await;
    assert!(
        wp.log_contains("config rejected: AuthorizationPolicy shop/no-admin")
            .await
    );
    crate::common::rbac::assert_granted(&c.api, "docker/k8s/rbac.yaml");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_authentications_reach_the_snapshot_where_they_attach() {
    let mut c = Cluster::new().await;
    c.add_pod("pp-1", "v1", true).await;
    let certs = Certs::new();
    let wp = start(&c, &certs).await;
    c.api.apply_yaml(
        r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: productpage}]
  jwtRules: [{issuer: https://idp.example.com, jwksUri: "https://idp.example.com/keys"}]
---
apiVersion: security.istio.io/v1beta1
kind: RequestAuthentication
metadata: {name: mesh, namespace: istio-system}
spec:
  targetRefs: [{kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}]
  jwtRules: [{issuer: mesh.example.com, jwks: '{"keys":[]}'}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: elsewhere, namespace: other}
spec:
  targetRefs: [{kind: Service, group: "", name: productpage}]
  jwtRules: [{issuer: other.example.com}]
"#,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let dump = loop {
        let dump = config_dump(&wp).await;
        let wide = dump["snapshot"]["jwt"].as_array().map_or(0, Vec::len);
        let own = dump["snapshot"]["services"][0]["jwt"]
            .as_array()
            .map_or(0, Vec::len);
        if wide == 1 && own == 1 {
            break dump;
        }
        assert!(Instant::now() < deadline, "rules never applied: {dump}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let own = &dump["snapshot"]["services"][0]["jwt"][0];
    assert_eq!(own["issuer"], "https://idp.example.com");
    assert_eq!(own["jwks"], json!({"Uri": "https://idp.example.com/keys"}));
    assert_eq!(dump["snapshot"]["jwt"][0]["issuer"], "mesh.example.com");
    crate::common::rbac::assert_granted(&c.api, "docker/k8s/rbac.yaml");
}
