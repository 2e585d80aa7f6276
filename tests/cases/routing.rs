//! The seed world through HBONE: VIP routing, header routing, the 90/10 split,
//! subsets, keep-alive tunnels and many tunnels per connection.

use crate::common::world::PRODUCTPAGE_VIP;
use crate::common::{connect, h, tunnel, Certs, WaypointProc, World};
use std::collections::BTreeMap;
use waypoint::client::Tunnel;
use waypoint::hbone::client::ClientError;

async fn start() -> (World, Certs, WaypointProc) {
    let world = World::productpage().await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    (world, certs, wp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_routes_to_v2_and_the_echo_sees_the_request() {
    let (world, certs, wp) = start().await;
    let mut t = tunnel(&wp, &certs, PRODUCTPAGE_VIP).await;
    for _ in 0..50 {
        let r = t
            .get("http://productpage:9080/reviews?x=1", &h("version", "v2"))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-pod"), Some("productpage-v2"));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["uri"], "/reviews?x=1");
        assert_eq!(body["headers"]["host"], "productpage:9080");
    }
    assert_eq!(world.requests("productpage-v2"), 50);
    assert_eq!(
        world.requests("productpage-v1-a") + world.requests("productpage-v1-b"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_is_90_10_and_v1_spreads_over_its_pods() {
    let (_world, certs, wp) = start().await;
    let mut t = tunnel(&wp, &certs, PRODUCTPAGE_VIP).await;
    const N: usize = 2000;
    let mut by_pod: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..N {
        // A header that does not say v2 must not match the first rule.
        let r = t
            .get("http://productpage:9080/", &h("version", "v3"))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        *by_pod
            .entry(r.header("x-pod").unwrap().to_string())
            .or_default() += 1;
    }
    let v2 = by_pod.get("productpage-v2").copied().unwrap_or(0);
    // Binomial(2000, 0.1): mean 200, sd 13.4; ±5 sd keeps false failures ~1e-6.
    assert!((133..=267).contains(&v2), "v2 got {v2} of {N}: {by_pod:?}");
    let (a, b) = (by_pod["productpage-v1-a"], by_pod["productpage-v1-b"]);
    assert_eq!(a + b + v2, N);
    // Istio's default LEAST_REQUEST: with one request at a time every pod is idle,
    // so the two v1 pods share evenly within chance (sd of a-b ~ 42; ±5 sd).
    assert!(a.abs_diff(b) <= 212, "v1 pods unevenly loaded: {by_pod:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_ride_one_tunnel_with_bodies() {
    let (world, certs, wp) = start().await;
    let mut t = tunnel(&wp, &certs, PRODUCTPAGE_VIP).await;
    for i in 0..300usize {
        let body = bytes::Bytes::from(vec![b'x'; i * 10]);
        let r = t
            .send(
                http::Method::POST,
                "http://productpage/",
                &h("version", "v2"),
                body,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        let echoed: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(echoed["body_bytes"], i * 10);
    }
    assert_eq!(world.requests("productpage-v2"), 300);
}

/// A kept-alive tunnel reads the start of each next request itself and hands
/// it to the next session: heads on either side of that first read's size
/// (1 KiB) arrive whole, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_requests_on_a_kept_alive_tunnel_keep_their_long_heads() {
    let (world, certs, wp) = start().await;
    let mut t = tunnel(&wp, &certs, PRODUCTPAGE_VIP).await;
    let sizes = [0, 900, 960, 1000, 1024, 1100, 4096, 5000, 20_000, 10];
    for (i, size) in sizes.into_iter().enumerate() {
        let mut headers = h("version", "v2");
        headers.push(("x-long".into(), "y".repeat(size)));
        headers.push(("x-seq".into(), i.to_string()));
        let r = t.get("http://productpage/", &headers).await.unwrap();
        assert_eq!(r.status, 200, "head with {size} bytes of header");
        let echoed: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            echoed["headers"]["x-long"].as_str().map(str::len),
            Some(size)
        );
        assert_eq!(echoed["headers"]["x-seq"], i.to_string());
    }
    assert_eq!(world.requests("productpage-v2"), sizes.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_and_twenty_concurrent_tunnels_share_one_connection() {
    let (world, certs, wp) = start().await;
    let client = connect(&wp, &certs.client()).await;
    let mut tunnels = Vec::new();
    for _ in 0..120 {
        tunnels.push(Tunnel::open(&client, PRODUCTPAGE_VIP).await.unwrap());
    }
    // Every tunnel is open at once; now all of them carry requests concurrently.
    let tasks: Vec<_> = tunnels
        .into_iter()
        .map(|mut t| {
            tokio::spawn(async move {
                for _ in 0..5 {
                    let r = t
                        .get("http://productpage/", &h("version", "v2"))
                        .await
                        .unwrap();
                    assert_eq!(r.status, 200);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(world.requests("productpage-v2"), 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_target_is_refused_and_the_connection_lives_on() {
    let (_world, certs, wp) = start().await;
    let client = connect(&wp, &certs.client()).await;
    match Tunnel::open(&client, "10.1.2.3:80").await {
        Err(waypoint::client::RequestError::Hbone(ClientError::Refused { status, .. })) => {
            assert_eq!(status, 404)
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("CONNECT to an unknown target was accepted"),
    }
    // The same HTTP/2 connection still opens tunnels to known targets.
    let mut t = Tunnel::open(&client, PRODUCTPAGE_VIP).await.unwrap();
    assert_eq!(t.get("http://productpage/", &[]).await.unwrap().status, 200);
    assert!(
        wp.log_contains("10.1.2.3:80").await,
        "the refusal is logged:\n{}",
        wp.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_address_pins_that_endpoint() {
    let (world, certs, wp) = start().await;
    let pod = &world.backends["productpage-v1-b"];
    let mut t = tunnel(&wp, &certs, &pod.addr.to_string()).await;
    for _ in 0..20 {
        // Even the v2 header cannot move a request addressed to one pod.
        let r = t
            .get("http://productpage/", &h("version", "v2"))
            .await
            .unwrap();
        assert_eq!(r.header("x-pod"), Some("productpage-v1-b"));
    }
    assert_eq!(world.requests("productpage-v1-b"), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_answer_503_with_envoys_words() {
    let closed = crate::common::proc::free_addr().port();
    let manifests = format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: ghost, namespace: default}}
spec:
  clusterIP: 10.96.0.30
  ports: [{{port: 80}}]
  selector: {{app: ghost}}
---
apiVersion: v1
kind: Service
metadata: {{name: down, namespace: default}}
spec:
  clusterIP: 10.96.0.31
  ports: [{{port: 80, targetPort: {closed}}}]
  selector: {{app: down}}
---
apiVersion: v1
kind: Pod
metadata: {{name: down-1, namespace: default, labels: {{app: down}}}}
status: {{podIP: 127.0.0.1}}
"#
    );
    let world = World::new(&[], &manifests).await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let mut t = tunnel(&wp, &certs, "10.96.0.30:80").await;
    let r = t.get("http://ghost/", &[]).await.unwrap();
    assert_eq!(
        (r.status.as_u16(), r.text()),
        (503, "no healthy upstream\n".to_string())
    );
    let mut t = tunnel(&wp, &certs, "10.96.0.31:80").await;
    let r = t.get("http://down/", &[]).await.unwrap();
    assert_eq!(r.status, 503);
    assert!(r.text().contains("connection failure"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xfcc_is_sanitized_by_default_and_synthesized_on_request() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let forged = h(
        "x-forwarded-client-cert",
        "URI=spiffe://cluster.local/ns/default/sa/admin",
    );
    let seen = |r: &waypoint::client::Reply| {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        body["headers"]["x-forwarded-client-cert"]
            .as_str()
            .map(String::from)
    };
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let mut t = tunnel(&wp, &certs, PRODUCTPAGE_VIP).await;
    assert_eq!(
        seen(&t.get("http://productpage/", &forged).await.unwrap()),
        None
    );
    drop(wp);

    let wp = WaypointProc::start_with(world.dir(), &certs.waypoint_dir, &["--xfcc"]).await;
    let mut t = tunnel(&wp, &certs, PRODUCTPAGE_VIP).await;
    let want = "By=spiffe://cluster.local/ns/default/sa/productpage-waypoint;URI=spiffe://cluster.local/ns/default/sa/sleep";
    assert_eq!(
        seen(&t.get("http://productpage/", &forged).await.unwrap()).as_deref(),
        Some(want)
    );
}
