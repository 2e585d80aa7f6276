//! The plaintext listener routes by Host through the same chain as HBONE.

use crate::common::{Certs, WaypointProc, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One raw HTTP/1.1 exchange; returns the status line and the whole response.
async fn get(addr: std::net::SocketAddr, host: &str, extra: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET /p HTTP/1.1\r\nhost: {host}\r\n{extra}connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    (out.lines().next().unwrap_or("").to_string(), out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_names_select_the_service() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    for host in [
        "productpage",
        "productpage:9080",
        "productpage.default",
        "productpage.default.svc",
        "productpage.default.svc.cluster.local:9080",
        "PRODUCTPAGE.default.svc.cluster.local",
    ] {
        let (status, resp) = get(wp.http, host, "version: v2\r\n").await;
        assert_eq!(status, "HTTP/1.1 200 OK", "{host}: {resp}");
        assert!(resp.contains("x-pod: productpage-v2"), "{host}: {resp}");
    }
    let (status, _) = get(wp.http, "ratings", "").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    assert_eq!(world.requests("productpage-v2"), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_host_routes_as_a_connect_to_it_would() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    // The Service VIP: its routes, as for a CONNECT to 10.96.0.10:9080.
    let (status, resp) = get(wp.http, "10.96.0.10:9080", "version: v2\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{resp}");
    assert!(resp.contains("x-pod: productpage-v2"), "{resp}");
    // A pod's address and target port: that pod, under its service's routes.
    let pod = world.backends["productpage-v1-b"].addr;
    for _ in 0..5 {
        let (status, resp) = get(wp.http, &pod.to_string(), "").await;
        assert_eq!(status, "HTTP/1.1 200 OK", "{resp}");
        assert!(resp.contains("x-pod: productpage-v1-b"), "{resp}");
    }
    // An address nothing has, or a VIP on a port it lacks: 404, as for a CONNECT.
    for host in ["10.96.0.99:9080", "10.96.0.10:80", "10.96.0.10"] {
        let (status, _) = get(wp.http, host, "").await;
        assert_eq!(status, "HTTP/1.1 404 Not Found", "{host}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reports_ready_and_dumps_the_config() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let (status, _) = get_path(wp.admin, "/healthz/ready").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let (status, body) = get_path(wp.admin, "/config_dump").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        body.contains("productpage.default.svc.cluster.local"),
        "{body}"
    );
    assert!(body.contains("productpage-routing"), "{body}");
}

async fn get_path(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    (out.lines().next().unwrap_or("").to_string(), out)
}
