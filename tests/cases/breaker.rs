//! DestinationRule traffic policy through the real proxy: circuit breaking on the
//! connection pool, outlier ejection and return, round robin.

use crate::common::world::Pod;
use crate::common::{connect, h, tunnel, Certs, WaypointProc, World};
use std::time::Duration;
use waypoint::client::Tunnel;

const SLOW: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: slow, namespace: default}
spec:
  clusterIP: 10.96.0.60
  ports: [{name: http, port: 80, targetPort: http}]
  selector: {app: slow}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: slow, namespace: default}
spec:
  host: slow
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_connections_and_pending_requests_get_503_at_once() {
    let world = World::new(&[Pod("slow-1", "slow", "v1")], SLOW).await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let client = connect(&wp, &certs.client()).await;
    let mut tunnels = Vec::new();
    for _ in 0..10 {
        tunnels.push(Tunnel::open(&client, "10.96.0.60:80").await.unwrap());
    }
    let tasks: Vec<_> = tunnels
        .into_iter()
        .map(|mut t| {
            tokio::spawn(async move {
                t.get("http://slow/", &h("x-echo-delay-ms", "700"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut ok = 0;
    let mut overflow = 0;
    for task in tasks {
        let r = task.await.unwrap();
        match r.status.as_u16() {
            200 => ok += 1,
            503 => {
                assert!(r.text().contains("reset reason: overflow"), "{}", r.text());
                overflow += 1;
            }
            s => panic!("unexpected {s}"),
        }
    }
    // One request holds the only connection, one waits for it, the rest overflow.
    assert_eq!((ok, overflow), (2, 8));
    assert_eq!(
        world.requests("slow-1"),
        2,
        "overflowing requests never reached the backend"
    );
}

const FLAKY: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: flaky, namespace: default}
spec:
  clusterIP: 10.96.0.61
  ports: [{name: http, port: 80, targetPort: http}]
  selector: {app: flaky}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: flaky, namespace: default}
spec:
  host: flaky
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 1s, maxEjectionPercent: 100}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: flaky, namespace: default}
spec:
  hosts: [flaky]
  http:
  - retries: {attempts: 0}
    route: [{destination: {host: flaky}}]
"#;

async fn burst(t: &mut Tunnel, n: usize) -> (usize, usize) {
    let mut statuses = (0, 0);
    for _ in 0..n {
        match t.get("http://flaky/", &[]).await.unwrap().status.as_u16() {
            200 => statuses.0 += 1,
            500 => statuses.1 += 1,
            s => panic!("unexpected {s}"),
        }
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_errors_eject_an_endpoint_until_its_time_is_up() {
    let world = World::new(
        &[Pod("flaky-a", "flaky", "v1"), Pod("flaky-b", "flaky", "v1")],
        FLAKY,
    )
    .await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let mut t = tunnel(&wp, &certs, "10.96.0.61:80").await;

    assert_eq!(burst(&mut t, 10).await, (10, 0));
    assert_eq!(
        (world.requests("flaky-a"), world.requests("flaky-b")),
        (5, 5),
        "round robin"
    );

    world.backends["flaky-a"].fail_next(1000, 500);
    // Two 500s in a row eject flaky-a for 1 s; everything else goes to flaky-b.
    assert_eq!(burst(&mut t, 20).await, (18, 2));
    assert_eq!(world.requests("flaky-a"), 7);
    assert!(
        wp.log_contains("outlier detection: ejecting").await,
        "{}",
        wp.logs()
    );
    let flaky = [(
        "cluster_name",
        "outbound|80||flaky.default.svc.cluster.local",
    )];
    let scrape = super::telemetry::scrape(wp.metrics).await;
    let ejected = |s: &prometheus_parse::Scrape| -> f64 {
        super::telemetry::value(s, "waypoint_upstream_ejected_endpoints", &flaky)
    };
    assert_eq!(ejected(&scrape), 1.0, "the gauge shows the ejection");

    // Back after the ejection time, it fails twice more and goes out again, now
    // for 2 s (base × times ejected).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(burst(&mut t, 20).await, (18, 2));
    assert_eq!(world.requests("flaky-a"), 9);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        burst(&mut t, 10).await,
        (10, 0),
        "still ejected: the second ejection lasts 2 s"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while ejected(&super::telemetry::scrape(wp.metrics).await) != 0.0 {
        assert!(std::time::Instant::now() < deadline, "never back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const PER_CONNECTION: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: pooled, namespace: default}
spec:
  clusterIP: 10.96.0.62
  ports: [{name: http, port: 80, targetPort: http}]
  selector: {app: pooled}
---
apiVersion: v1
kind: Service
metadata: {name: kept, namespace: default}
spec:
  clusterIP: 10.96.0.63
  ports: [{name: http, port: 80, targetPort: http}]
  selector: {app: kept}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: pooled, namespace: default}
spec:
  host: pooled
  trafficPolicy:
    connectionPool: {http: {maxRequestsPerConnection: 3}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_per_connection_recycles_upstream_connections() {
    let world = World::new(
        &[Pod("pooled-1", "pooled", "v1"), Pod("kept-1", "kept", "v1")],
        PER_CONNECTION,
    )
    .await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let mut pooled = tunnel(&wp, &certs, "10.96.0.62:80").await;
    let mut kept = tunnel(&wp, &certs, "10.96.0.63:80").await;
    for _ in 0..9 {
        assert_eq!(pooled.get("http://pooled/", &[]).await.unwrap().status, 200);
        assert_eq!(kept.get("http://kept/", &[]).await.unwrap().status, 200);
    }
    assert_eq!(
        world.backends["pooled-1"].connections(),
        3,
        "three requests per connection"
    );
    assert_eq!(
        world.backends["kept-1"].connections(),
        1,
        "without a limit one pooled connection serves all"
    );
}
