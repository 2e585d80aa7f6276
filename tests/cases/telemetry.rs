//! What operators see: the JSON access log and request ids.

use crate::common::world::PRODUCTPAGE_VIP;
use crate::common::{h, tunnel, Certs, WaypointProc, World};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_writes_one_json_access_log_line() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let mut t = tunnel(&wp, &certs, PRODUCTPAGE_VIP).await;
    let r = t
        .get("http://productpage:9080/reviews?x=1", &h("version", "v2"))
        .await
        .unwrap();
    let seen: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let request_id = seen["headers"]["x-request-id"]
        .as_str()
        .expect("generated and sent upstream")
        .to_string();
    let given = h("x-request-id", "caller-chose-this");
    t.get("http://productpage:9080/nowhere", &given)
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let out = wp.stdout();
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= 2 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(lines.len(), 2, "{lines:?}");
    let first = &lines[0];
    assert_eq!(first["request_id"], request_id.as_str());
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/reviews?x=1");
    assert_eq!(first["response_code"], 200);
    assert_eq!(first["response_flags"], "-");
    assert_eq!(first["authority"], "productpage:9080");
    assert_eq!(
        first["route_name"],
        "VirtualService default/productpage-routing http[0]"
    );
    assert_eq!(
        first["upstream_cluster"],
        "outbound|9080|v2|productpage.default.svc.cluster.local"
    );
    assert_eq!(
        first["source_principal"],
        "spiffe://cluster.local/ns/default/sa/sleep"
    );
    assert_eq!(
        first["destination_principal"],
        "spiffe://cluster.local/ns/default/sa/productpage"
    );
    assert_eq!(
        first["upstream_host"],
        world.backends["productpage-v2"].addr.to_string()
    );
    assert!(first["bytes_sent"].as_u64().unwrap() > 0);
    assert!(first["start_time"].as_str().unwrap().ends_with('Z'));
    // A caller's id is kept; the seed's routes send /nowhere to the split as well.
    assert_eq!(lines[1]["request_id"], "caller-chose-this");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_can_be_switched_off() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let mut wp =
        WaypointProc::start_with(world.dir(), &certs.waypoint_dir, &["--access-log", "false"])
            .await;
    let mut t = tunnel(&wp, &certs, PRODUCTPAGE_VIP).await;
    assert_eq!(t.get("http://productpage/", &[]).await.unwrap().status, 200);
    drop(t);
    // Lines are buffered, but a drain writes out whatever is: after exit, stdout
    // holds every line there will ever be.
    wp.signal_term();
    assert!(
        wp.wait_exit(Duration::from_secs(10)).success(),
        "{}",
        wp.logs()
    );
    assert_eq!(wp.stdout(), "");
}

pub async fn scrape(addr: std::net::SocketAddr) -> prometheus_parse::Scrape {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /stats/prometheus HTTP/1.1\r\nhost: m\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let body = out.split_once("\r\n\r\n").unwrap().1;
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap()
}

pub fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(ref b) => b.last().map(|b| b.count).unwrap_or(0.0),
            _ => 0.0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_metrics_are_served_in_prometheus_text_format() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let mut t = tunnel(&wp, &certs, PRODUCTPAGE_VIP).await;
    for _ in 0..7 {
        assert_eq!(
            t.get("http://productpage/", &h("version", "v2"))
                .await
                .unwrap()
                .status,
            200
        );
    }
    let ok = [
        ("reporter", "waypoint"),
        ("response_code", "200"),
        ("response_flags", "-"),
        (
            "source_principal",
            "spiffe://cluster.local/ns/default/sa/sleep",
        ),
        ("source_workload_namespace", "default"),
        (
            "destination_service",
            "productpage.default.svc.cluster.local",
        ),
        ("destination_service_name", "productpage"),
        (
            "destination_principal",
            "spiffe://cluster.local/ns/default/sa/productpage",
        ),
        ("destination_canonical_service", "productpage"),
        ("destination_canonical_revision", "v2"),
        ("destination_version", "v2"),
        ("connection_security_policy", "mutual_tls"),
        ("request_protocol", "http"),
        ("source_workload", "unknown"),
    ];
    // Metrics are recorded in the logging phase, just after the response is sent:
    // wait for the seventh rather than race it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let scrape = loop {
        let s = scrape(wp.metrics).await;
        if value(&s, "istio_requests_total", &ok) >= 7.0 || std::time::Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(value(&scrape, "istio_requests_total", &ok), 7.0);
    assert_eq!(
        value(&scrape, "istio_request_duration_milliseconds", &ok),
        7.0
    );
    assert_eq!(value(&scrape, "waypoint_config_generation", &[]), 1.0);
    // The same endpoint on the admin listener.
    assert_eq!(
        value(&scrape_admin(&wp).await, "istio_requests_total", &ok),
        7.0
    );

    // The tunnel itself, as Istio's TCP metrics.
    let tcp = [
        ("reporter", "waypoint"),
        (
            "destination_service",
            "productpage.default.svc.cluster.local",
        ),
    ];
    assert_eq!(
        value(&scrape, "istio_tcp_connections_opened_total", &tcp),
        1.0
    );
    drop(t);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    // A scrape reads the metric families in the registry's hash order, not
    // in name order: it can read the byte counters before the tunnel closes and
    // the closed counter after. Wait for all three rather than race them (seen
    // twice in CI, once for each byte counter).
    let closed = loop {
        let s = scrape_at(wp.metrics).await;
        let settled = value(&s, "istio_tcp_connections_closed_total", &tcp) >= 1.0
            && value(&s, "istio_tcp_received_bytes_total", &tcp) > 7.0 * 30.0
            && value(&s, "istio_tcp_sent_bytes_total", &tcp) > 7.0 * 100.0;
        if settled || std::time::Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        value(&closed, "istio_tcp_connections_closed_total", &tcp),
        1.0
    );
    assert!(
        value(&closed, "istio_tcp_received_bytes_total", &tcp) > 7.0 * 30.0,
        "seven requests came in"
    );
    assert!(
        value(&closed, "istio_tcp_sent_bytes_total", &tcp) > 7.0 * 100.0,
        "seven responses went out"
    );
}

async fn scrape_admin(wp: &WaypointProc) -> prometheus_parse::Scrape {
    scrape(wp.admin).await
}

async fn scrape_at(addr: std::net::SocketAddr) -> prometheus_parse::Scrape {
    scrape(addr).await
}

pub async fn admin_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_shows_clusters_and_changes_the_log_level() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let mut t = tunnel(&wp, &certs, PRODUCTPAGE_VIP).await;
    assert_eq!(t.get("http://productpage/", &[]).await.unwrap().status, 200);
    let clusters = admin_get(wp.admin, "/clusters").await;
    let v2 = world.backends["productpage-v2"].addr;
    let line = format!(
        "outbound|9080|v2|productpage.default.svc.cluster.local::{v2}::health_flags::healthy"
    );
    assert!(clusters.contains(&line), "{clusters}");

    assert!(!wp.logs().contains("DEBUG waypoint::hbone::server"));
    assert!(admin_get(wp.admin, "/logging?level=debug")
        .await
        .contains("log level DEBUG"));
    let _ = crate::common::connect(&wp, &certs.client()).await;
    assert!(
        wp.log_contains("waypoint::hbone::server] hbone connection from")
            .await,
        "{}",
        wp.logs()
    );
    assert!(admin_get(wp.admin, "/logging?level=loud")
        .await
        .starts_with("HTTP/1.1 400"));
}

const RATINGS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec:
  clusterIP: 10.96.0.90
  ports: [{name: http, port: 9080, targetPort: http}]
  selector: {app: ratings}
"#;

/// Metric series are resolved once per label set and reused; a reload that
/// changes a pod's labels must count under the new labels, not the cached ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_relabels_a_pod_counts_under_the_new_labels() {
    use crate::common::world::Pod;
    let world = World::new(&[Pod("ratings-1", "ratings", "v1")], RATINGS).await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let version = |v: &'static str| [("destination_version", v), ("response_code", "200")];
    let counted = |v: &'static str, n: f64| async move {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = value(
                &scrape(wp.metrics).await,
                "istio_requests_total",
                &version(v),
            );
            if got >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let mut t = tunnel(&wp, &certs, "10.96.0.90:9080").await;
    for _ in 0..2 {
        assert_eq!(t.get("http://ratings/", &[]).await.unwrap().status, 200);
    }
    assert_eq!(counted("v1", 2.0).await, 2.0);

    let port = world.backends["ratings-1"].addr.port();
    let relabelled = waypoint::testing::pods_yaml(&[waypoint::testing::Pod {
        name: "ratings-1",
        app: "ratings",
        version: "v9",
        port,
    }]);
    std::fs::write(world.dir().join("pods.yaml"), relabelled).unwrap();
    assert!(wp.log_contains("generation 2").await, "{}", wp.logs());
    let mut t = tunnel(&wp, &certs, "10.96.0.90:9080").await;
    assert_eq!(t.get("http://ratings/", &[]).await.unwrap().status, 200);
    assert_eq!(counted("v9", 1.0).await, 1.0);
    assert_eq!(
        counted("v1", 2.0).await,
        2.0,
        "the old series keeps its count"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_metrics_can_be_switched_off() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let off = ["--request-metrics", "false"];
    let wp = WaypointProc::start_with(world.dir(), &certs.waypoint_dir, &off).await;
    let mut t = tunnel(&wp, &certs, PRODUCTPAGE_VIP).await;
    assert_eq!(t.get("http://productpage/", &[]).await.unwrap().status, 200);
    // The access-log line is written after the metrics would have been.
    let deadline = Instant::now() + Duration::from_secs(5);
    while wp.stdout().lines().count() < 1 {
        assert!(Instant::now() < deadline, "the request was never logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = scrape(wp.metrics).await;
    assert!(
        !s.samples
            .iter()
            .any(|x| x.metric.starts_with("istio_request")),
        "no per-request series"
    );
    assert_eq!(value(&s, "waypoint_config_generation", &[]), 1.0);
}
