//! Upstream HBONE keep-alive, against Envoy as the destination's ztunnel: requests
//! reuse idle tunnels instead of opening a CONNECT each, and every tunnel the
//! waypoint is done with ends with END_STREAM on both sides, never a reset.

use super::envoy_peer::Mesh;
use crate::common::tunnel;
use std::time::{Duration, Instant};

/// What Envoy's HBONE listener saw: CONNECT tunnels opened and still open, and
/// resets in either direction.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    tunnels: u64,
    active: u64,
    resets: u64,
}

async fn seen(m: &Mesh) -> Seen {
    let e = &m.envoy;
    Seen {
        tunnels: e.stat("http.hbone.downstream_rq_total").await,
        active: e.stat("http.hbone.downstream_rq_active").await,
        resets: e.stat("http.hbone.downstream_rq_rx_reset").await
            + e.stat("http.hbone.downstream_rq_tx_reset").await
            + e.stat("http2.rx_reset").await
            + e.stat("http2.tx_reset").await,
    }
}

/// Waits (up to 10 s) until Envoy has no tunnel open, and returns what it saw.
async fn all_closed(m: &Mesh) -> Seen {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = seen(m).await;
        if s.active == 0 || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn destination_rule(pool: &str) -> String {
    format!(
        r#"---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: ratings, namespace: default}}
spec:
  host: ratings
  trafficPolicy:
    connectionPool: {{http: {pool}}}
"#
    )
}

async fn waypoint_counter(m: &Mesh, name: &str) -> f64 {
    let scrape = super::telemetry::scrape(m.wp.metrics).await;
    super::telemetry::value(&scrape, name, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_keep_alive_requests_ride_one_tunnel() {
    let m = Mesh::start_with(81, "ratings", None, "", &[]).await;
    let mut t = tunnel(&m.wp, &m.certs, &m.vip(81)).await;
    for i in 0..1000 {
        let r = t.get("http://ratings:9080/", &[]).await.unwrap();
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    assert_eq!(m.workload.requests(), 1000);
    let s = seen(&m).await;
    assert_eq!(
        (s.tunnels, s.resets),
        (1, 0),
        "CONNECT tunnels and resets Envoy saw for 1000 sequential requests: {s:?}"
    );
    assert_eq!(m.envoy.stat("http.hbone.downstream_rq_2xx").await, 1);
    assert_eq!(
        m.workload.connections(),
        1,
        "one tunnel, one workload connection"
    );
    let opened = waypoint_counter(&m, "waypoint_hbone_upstream_tunnels_opened_total").await;
    let reused = waypoint_counter(&m, "waypoint_hbone_upstream_tunnels_reused_total").await;
    assert_eq!((opened, reused), (1.0, 999.0));
    let idle = waypoint_counter(&m, "waypoint_hbone_upstream_idle_tunnels").await;
    assert_eq!(idle, 1.0, "the tunnel is idle between requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_need_at_most_one_tunnel_each() {
    const CLIENTS: usize = 8;
    let m = Mesh::start_with(82, "ratings", None, "", &[]).await;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let mut t = tunnel(&m.wp, &m.certs, &m.vip(82)).await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..1000 / CLIENTS {
                let r = t.get("http://ratings:9080/", &[]).await.unwrap();
                assert_eq!(r.status, 200, "{}", r.text());
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(m.workload.requests(), 1000);
    let s = seen(&m).await;
    eprintln!("{CLIENTS} clients: {s:?}");
    assert!(
        (1..=CLIENTS as u64).contains(&s.tunnels) && s.resets == 0,
        "{CLIENTS} concurrent clients, 1000 requests: {s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_per_connection_retires_a_tunnel_cleanly() {
    let dr = destination_rule("{maxRequestsPerConnection: 3}");
    let m = Mesh::start_with(83, "ratings", None, &dr, &[]).await;
    let mut t = tunnel(&m.wp, &m.certs, &m.vip(83)).await;
    for _ in 0..9 {
        let r = t.get("http://ratings:9080/", &[]).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let s = all_closed(&m).await;
    assert_eq!(
        s,
        Seen {
            tunnels: 3,
            active: 0,
            resets: 0
        },
        "9 requests, 3 per tunnel, each tunnel ended by both sides"
    );
    assert_eq!(m.workload.connections(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tunnel_closes_cleanly_after_the_idle_timeout() {
    let dr = destination_rule("{idleTimeout: 1s}");
    let m = Mesh::start_with(84, "ratings", None, &dr, &[]).await;
    let mut t = tunnel(&m.wp, &m.certs, &m.vip(84)).await;
    let r = t.get("http://ratings:9080/", &[]).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let done = Instant::now();
    // Kept while idle...
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(seen(&m).await.active, 1, "the idle tunnel is kept open");
    // ...and ended by both sides once the timeout passed.
    let s = all_closed(&m).await;
    let idle_for = done.elapsed();
    assert_eq!(
        s,
        Seen {
            tunnels: 1,
            active: 0,
            resets: 0
        }
    );
    assert!(
        idle_for >= Duration::from_secs(1),
        "closed after {idle_for:?}"
    );
    // The next request opens a new tunnel.
    let r = t.get("http://ratings:9080/", &[]).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(seen(&m).await.tunnels, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_tunnels_cleanly() {
    let mut m = Mesh::start_with(85, "ratings", None, "", &[]).await;
    let mut t = tunnel(&m.wp, &m.certs, &m.vip(85)).await;
    for _ in 0..3 {
        let r = t.get("http://ratings:9080/", &[]).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    drop(t);
    assert_eq!(seen(&m).await.active, 1, "the idle tunnel is kept open");
    m.wp.signal_term();
    assert!(m.wp.wait_exit(Duration::from_secs(10)).success());
    let s = all_closed(&m).await;
    assert_eq!(
        s,
        Seen {
            tunnels: 1,
            active: 0,
            resets: 0
        },
        "the drain ends the idle tunnel before the process exits"
    );
}
