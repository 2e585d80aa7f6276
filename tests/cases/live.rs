//! Live changes: config reloads without dropping anything, invalid config is
//! refused while the last good one serves, SIGTERM drains.

use crate::common::world::PRODUCTPAGE_VIP;
use crate::common::{h, tunnel, Certs, WaypointProc, World};
use std::time::{Duration, Instant};

const V2_ONLY: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage-routing, namespace: default}
spec:
  hosts: [productpage]
  http:
  - route: [{destination: {host: productpage, subset: v2}}]
"#;

async fn pods_hit(
    t: &mut waypoint::client::Tunnel,
    n: usize,
) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..n {
        let r = t.get("http://productpage/", &[]).await.unwrap();
        assert_eq!(r.status, 200);
        seen.insert(r.header("x-pod").unwrap().to_string());
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_apply_and_invalid_ones_are_refused() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let mut t = tunnel(&wp, &certs, PRODUCTPAGE_VIP).await;
    assert!(pods_hit(&mut t, 100).await.len() >= 2);

    // Replace the seed's routing with "everything to v2", in place.
    let world_yaml = world.dir().join("world.yaml");
    let seed = std::fs::read_to_string(&world_yaml).unwrap();
    let without_vs: Vec<&str> = seed
        .split("\n---\n")
        .filter(|d| !d.contains("kind: VirtualService"))
        .collect();
    std::fs::write(
        &world_yaml,
        without_vs.join("\n---\n") + "\n---\n" + V2_ONLY,
    )
    .unwrap();
    assert!(wp.log_contains("generation 2").await, "{}", wp.logs());
    // The same tunnel, kept open across the reload, now only reaches v2.
    assert_eq!(
        pods_hit(&mut t, 50).await.into_iter().collect::<Vec<_>>(),
        vec!["productpage-v2"]
    );

    // An invalid change is refused with check's errors; generation 2 keeps serving.
    std::fs::write(
        world.dir().join("bad.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: nope}]}\n",
    )
    .unwrap();
    assert!(wp.log_contains("config rejected:").await, "{}", wp.logs());
    assert!(
        wp.log_contains("bad.yaml: Service default/x: spec.ports[0].port")
            .await,
        "{}",
        wp.logs()
    );
    assert!(
        wp.log_contains("still serving generation 2").await,
        "{}",
        wp.logs()
    );
    assert_eq!(
        pods_hit(&mut t, 20).await.into_iter().collect::<Vec<_>>(),
        vec!["productpage-v2"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_0() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let mut wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let mut t = tunnel(&wp, &certs, PRODUCTPAGE_VIP).await;
    let slow = tokio::spawn(async move {
        t.get("http://productpage/", &h("x-echo-delay-ms", "800"))
            .await
    });
    // In flight once the backend has it (it answers 800 ms later).
    let deadline = Instant::now() + Duration::from_secs(5);
    while world.requests("productpage-v1-a")
        + world.requests("productpage-v1-b")
        + world.requests("productpage-v2")
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the request never reached a backend"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let start = Instant::now();
    wp.signal_term();
    let r = slow.await.unwrap().unwrap();
    assert_eq!(r.status, 200, "the in-flight request finished");
    let status = wp.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", wp.logs());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "did not wait the whole drain period"
    );
    assert!(wp.logs().contains("shut down"), "{}", wp.logs());
}

/// A tunnel whose HTTP/1.1 connection idles between requests, as ztunnel's
/// do, neither delays the exit nor is cut mid-request: it is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_kept_alive_idle_tunnels() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let mut wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let mut t = tunnel(&wp, &certs, PRODUCTPAGE_VIP).await;
    for _ in 0..3 {
        let r = t.get("http://productpage/", &[]).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let start = Instant::now();
    wp.signal_term();
    let status = wp.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", wp.logs());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "the idle tunnel held the drain for {:?}",
        start.elapsed()
    );
    assert!(t.get("http://productpage/", &[]).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_traffic_survives_many_reloads_valid_and_invalid() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut loads = Vec::new();
    for _ in 0..4 {
        let mut t = tunnel(&wp, &certs, PRODUCTPAGE_VIP).await;
        let stop = stop.clone();
        loads.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match t.get("http://productpage/", &[]).await {
                    Ok(r) if r.status == 200 => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed)
        }));
    }
    let world_yaml = world.dir().join("world.yaml");
    let seed = std::fs::read_to_string(&world_yaml).unwrap();
    let bad = world.dir().join("bad.yaml");
    for round in 0..6 {
        if round % 2 == 0 {
            // A valid change: the split's weights move.
            let weights = if round % 4 == 0 {
                ("50", "50")
            } else {
                ("90", "10")
            };
            let text = seed
                .replace("weight: 90", &format!("weight: {}", weights.0))
                .replace("weight: 10", &format!("weight: {}", weights.1));
            std::fs::write(&world_yaml, text).unwrap();
            let _ = std::fs::remove_file(&bad);
        } else {
            std::fs::write(&bad, "kind: VirtualService\napiVersion: networking.istio.io/v1\nmetadata: {name: broken}\nspec: {http: [{route: [{weight: x}]}]}\n").unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1300)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for l in loads {
        let (ok, failed) = l.await.unwrap();
        assert!(failed.is_empty(), "failed during reloads: {failed:?}");
        total += ok;
    }
    assert!(total > 100, "the load ran: {total}");
    assert!(
        wp.log_contains("generation 3").await,
        "valid reloads happened (polling may fold two under load):\n{}",
        wp.logs()
    );
    assert!(wp.log_contains("config rejected").await);
}
