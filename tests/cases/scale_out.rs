//! Scaling out spreads load: clients (ztunnel, here Envoy in its place) keep
//! one HBONE connection to a waypoint address for as long as it lives, so a
//! replica added behind that address gets nothing until connections end.
//! `--hbone-max-connection-age` ends them: GOAWAY, the client opens a new one,
//! and the Service's load balancing (a round-robin TCP forwarder here, as
//! kube-proxy would be) may send it to the new replica.

use super::telemetry::{scrape, value};
use crate::common::certs::id;
use crate::common::envoy::Envoy;
use crate::common::proc::free_addr;
use crate::common::{Certs, WaypointProc, World};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use waypoint::testing::PRODUCTPAGE_VIP;

/// Round-robin over `backends`, which the test may grow: kube-proxy's part.
async fn forwarder(backends: Arc<Mutex<Vec<SocketAddr>>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut next = 0;
        while let Ok((mut inbound, _)) = listener.accept().await {
            let to = {
                let b = backends.lock().unwrap();
                next += 1;
                b[(next - 1) % b.len()]
            };
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    addr
}

/// One request from the application, carried by Envoy as an HBONE tunnel.
async fn request(app: SocketAddr) {
    let mut c = tokio::net::TcpStream::connect(app).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nhost: productpage:9080\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

async fn served(wp: &WaypointProc) -> f64 {
    value(&scrape(wp.metrics).await, "istio_requests_total", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maximum_connection_age_spreads_load_over_a_new_replica() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let age = ["--hbone-max-connection-age", "4"];
    let first = WaypointProc::start_with(world.dir(), &certs.waypoint_dir, &age).await;
    let second = WaypointProc::start_with(world.dir(), &certs.waypoint_dir, &age).await;
    let backends = Arc::new(Mutex::new(vec![first.hbone]));
    let service = forwarder(backends.clone()).await;
    let app = free_addr();
    let _ztunnel = Envoy::start(
        "hbone_client.yaml",
        &[
            ("LISTEN_PORT", app.port().to_string()),
            ("TARGET", PRODUCTPAGE_VIP.to_string()),
            ("CERT_DIR", certs.client_dir.display().to_string()),
            ("PEER_ID", id("productpage-waypoint").to_string()),
            ("WAYPOINT_PORT", service.port().to_string()),
        ],
        app,
    )
    .await;

    for _ in 0..20 {
        request(app).await;
    }
    // The autoscaler adds a replica; the client's connection stays where it is.
    backends.lock().unwrap().push(second.hbone);
    for _ in 0..20 {
        request(app).await;
    }
    let before = (served(&first).await, served(&second).await);
    assert_eq!(before, (40.0, 0.0), "before any connection aged out");

    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        request(app).await;
    }
    let first_share = served(&first).await - before.0;
    let second_share = served(&second).await - before.1;
    let share = second_share / (first_share + second_share);
    eprintln!("the new replica's share: 0 before, {share:.2} over the next 10 s");
    assert!(
        share > 0.2,
        "the new replica served {second_share} of {} requests",
        first_share + second_share
    );
}
