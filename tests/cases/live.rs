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
    tokio::time::sleep(Duration::from_millis(200)).await;
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
