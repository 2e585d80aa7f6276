//! Certificate rotation without a restart: new handshakes use the new identity,
//! established connections carry on, and a broken file set is refused.

use crate::common::certs::id;
use crate::common::world::PRODUCTPAGE_VIP;
use crate::common::{Certs, WaypointProc, World};
use std::time::{Duration, Instant};
use waypoint::client::Tunnel;
use waypoint::hbone::client::{ClientError, HboneClient};
use waypoint::identity::SpiffeId;

async fn connect_expecting(
    wp: &WaypointProc,
    certs: &Certs,
    expected: &SpiffeId,
) -> Result<HboneClient, ClientError> {
    let tls = waypoint::hbone::tls::client_config(&certs.client(), Some(expected.clone())).unwrap();
    HboneClient::connect(wp.hbone, tls).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_identity_serves_new_handshakes_and_old_connections_live_on() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let (v1, v2) = (id("productpage-waypoint"), id("productpage-waypoint-v2"));

    let old = connect_expecting(&wp, &certs, &v1).await.unwrap();
    let mut old_tunnel = Tunnel::open(&old, PRODUCTPAGE_VIP).await.unwrap();
    assert_eq!(
        crate::common::status(&mut old_tunnel, "http://productpage/").await,
        200
    );
    assert!(
        connect_expecting(&wp, &certs, &v2).await.is_err(),
        "v2 before the rotation"
    );

    // Load during the rotation: new connections and new tunnels all the while.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, hbone, client) = (stop.clone(), wp.hbone, certs.client());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let tls = waypoint::hbone::tls::client_config(&client, None).unwrap();
                let result = async {
                    let c = HboneClient::connect(hbone, tls)
                        .await
                        .map_err(|e| e.to_string())?;
                    let mut t = Tunnel::open(&c, PRODUCTPAGE_VIP)
                        .await
                        .map_err(|e| e.to_string())?;
                    t.get("http://productpage/", &[])
                        .await
                        .map(|r| r.status.as_u16())
                        .map_err(|e| e.to_string())
                }
                .await;
                match result {
                    Ok(200) => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    certs.ca.write_cert_dir(&certs.waypoint_dir, &v2).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let new = loop {
        match connect_expecting(&wp, &certs, &v2).await {
            Ok(c) => break c,
            Err(e) => assert!(
                Instant::now() < deadline,
                "never rotated: {e}\n{}",
                wp.logs()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.await.unwrap();
    assert!(
        failed.is_empty(),
        "requests failed during the rotation: {failed:?}"
    );
    assert!(ok > 10, "the load ran ({ok} requests)");
    let mut new_tunnel = Tunnel::open(&new, PRODUCTPAGE_VIP).await.unwrap();
    assert_eq!(
        crate::common::status(&mut new_tunnel, "http://productpage/").await,
        200
    );
    // The connection made before the rotation is not dropped, and still opens tunnels.
    assert_eq!(
        crate::common::status(&mut old_tunnel, "http://productpage/").await,
        200
    );
    let mut another = Tunnel::open(&old, PRODUCTPAGE_VIP).await.unwrap();
    assert_eq!(
        crate::common::status(&mut another, "http://productpage/").await,
        200
    );

    // A half-written set is refused with a clear error; v2 keeps serving.
    std::fs::write(
        certs.waypoint_dir.join("key.pem"),
        "-----BEGIN PRIVATE KEY-----\nMIIEv",
    )
    .unwrap();
    let said = "certificate rotation failed, keeping spiffe://cluster.local/ns/default/sa/productpage-waypoint-v2";
    assert!(wp.log_contains(said).await, "{}", wp.logs());
    assert!(
        wp.log_contains("key.pem").await,
        "the error names the file:\n{}",
        wp.logs()
    );
    assert!(connect_expecting(&wp, &certs, &v2).await.is_ok());
}
