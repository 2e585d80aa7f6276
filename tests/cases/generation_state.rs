//! What the data path has learned outlives a new config generation. With the
//! Kubernetes source every pod that starts or stops makes one, so an endpoint
//! ejected by outlier detection must stay ejected and a client's rate-limit
//! bucket must stay as empty as it was.

use super::telemetry::{scrape, value};
use crate::common::kube::{Cluster, GATEWAY, VIP};
use crate::common::{Certs, WaypointProc};
use std::time::{Duration, Instant};
use waypoint::client::Tunnel;

const POLICIES: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: productpage, namespace: shop}
spec:
  host: productpage
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100}
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: productpage, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: productpage}]
  rateLimit:
    type: Local
    local:
      rules:
      - clientSelectors: [{headers: [{name: x-user, type: Distinct}]}]
        limit: {requests: 3, unit: Hour}
"#;

const URL: &str = "http://productpage.shop:9080/";

const CLUSTER: (&str, &str) = (
    "cluster_name",
    "outbound|9080||productpage.shop.svc.cluster.local",
);

async fn metric(wp: &WaypointProc, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(&scrape(wp.metrics).await, name, labels)
}

/// Waits until the config generation passes `than`.
async fn generation_after(wp: &WaypointProc, than: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let g = metric(wp, "waypoint_config_generation", &[]).await;
        if g > than {
            return g;
        }
        assert!(Instant::now() < deadline, "no generation after {than}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn statuses(t: &mut Tunnel, headers: &[(String, String)], n: usize) -> Vec<u16> {
    let mut s = Vec::new();
    for _ in 0..n {
        s.push(t.get(URL, headers).await.unwrap().status.as_u16());
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejections_and_rate_limits_outlive_pod_churn() {
    let mut c = Cluster::new().await;
    c.add_pod("pp-a", "v1", true).await;
    c.add_pod("pp-b", "v1", true).await;
    c.api.apply_yaml(POLICIES);
    let certs = Certs::new();
    let wp = WaypointProc::start_kube(&c.kubeconfig, GATEWAY, &certs.waypoint_dir, &[], &[]).await;
    let mut t = crate::common::tunnel(&wp, &certs, VIP).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.requests("pp-a") == 0 || c.requests("pp-b") == 0 {
        assert!(Instant::now() < deadline, "both pods never served");
        assert_eq!(t.get(URL, &[]).await.unwrap().status, 200);
    }

    c.pods["pp-a"].fail_next(1_000, 500);
    let mut failed = 0;
    for _ in 0..10 {
        if t.get(URL, &[]).await.unwrap().status == 500 {
            failed += 1;
        }
    }
    assert_eq!(failed, 2, "two 500s eject pp-a");
    assert_eq!(
        metric(&wp, "waypoint_upstream_ejected_endpoints", &[CLUSTER]).await,
        1.0
    );
    let alice = [("x-user".to_string(), "alice".to_string())];
    assert_eq!(statuses(&mut t, &alice, 4).await, [200, 200, 200, 429]);

    // Pods come and go: two new generations.
    let g = metric(&wp, "waypoint_config_generation", &[]).await;
    c.add_pod("pp-c", "v1", true).await;
    let g = generation_after(&wp, g).await;
    c.set_ready("pp-c", false);
    generation_after(&wp, g).await;

    let before = c.requests("pp-a");
    for _ in 0..10 {
        assert_eq!(t.get(URL, &[]).await.unwrap().status, 200, "pp-a came back");
    }
    assert_eq!(
        c.requests("pp-a"),
        before,
        "an ejected endpoint got requests"
    );
    assert_eq!(
        metric(&wp, "waypoint_upstream_ejected_endpoints", &[CLUSTER]).await,
        1.0
    );
    assert_eq!(
        statuses(&mut t, &alice, 1).await,
        [429],
        "alice's bucket filled up again"
    );
}
