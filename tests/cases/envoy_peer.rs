//! HBONE against a peer we did not write: Envoy plays ztunnel on both sides.

use crate::common::certs::id;
use crate::common::envoy::Envoy;
use crate::common::proc::free_addr;
use crate::common::{connect, h, tunnel, Certs, WaypointProc};
use std::net::SocketAddr;
use waypoint::client::Tunnel;
use waypoint::echo::Echo;

/// A mesh namespace with one service whose pod sits at `pod_ip` behind an HBONE
/// server (Envoy) on `hbone_port`, and `extra` manifests.
fn mesh_world(pod_ip: &str, vip: &str, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mesh.yaml"),
        format!(
            r#"
apiVersion: v1
kind: Namespace
metadata: {{name: default, labels: {{istio.io/dataplane-mode: ambient}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: ratings, namespace: default}}
spec:
  clusterIP: {vip}
  ports: [{{name: http, port: 9080}}]
  selector: {{app: ratings}}
---
apiVersion: v1
kind: Pod
metadata: {{name: ratings-1, namespace: default, labels: {{app: ratings}}}}
spec: {{serviceAccountName: ratings}}
status: {{podIP: {pod_ip}}}
{extra}"#
        ),
    )
    .unwrap();
    dir
}

/// Envoy as the destination ztunnel at `ip`, presenting `server_sa`'s identity
/// and carrying every tunnel to `workload_port` on loopback.
pub(super) async fn destination_signed_by(
    ca: &waypoint::identity::DevCa,
    ip: &str,
    server_sa: &str,
    workload_port: u16,
) -> (Envoy, u16, tempfile::TempDir) {
    let cert_dir = tempfile::tempdir().unwrap();
    ca.write_cert_dir(cert_dir.path(), &id(server_sa)).unwrap();
    let port = std::net::TcpListener::bind(format!("{ip}:0"))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    let envoy = Envoy::start(
        "hbone_server.yaml",
        &[
            ("LISTEN_IP", ip.to_string()),
            ("LISTEN_PORT", port.to_string()),
            ("CERT_DIR", cert_dir.path().display().to_string()),
            ("PEER_ID", id("productpage-waypoint").to_string()),
            ("WORKLOAD_PORT", workload_port.to_string()),
        ],
        listen,
    )
    .await;
    (envoy, port, cert_dir)
}

/// One mesh workload behind an Envoy destination at 127.0.0.`octet`, the service
/// VIP 10.96.0.`octet`, and a waypoint that reaches it over HBONE.
pub(super) struct Mesh {
    pub(super) certs: Certs,
    pub(super) workload: Echo,
    pub(super) envoy: Envoy,
    port: u16,
    pub(super) wp: WaypointProc,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Mesh {
    async fn start(
        octet: u8,
        server_sa: &str,
        ca: Option<&waypoint::identity::DevCa>,
        extra: &[&str],
    ) -> Mesh {
        Self::start_with(octet, server_sa, ca, "", extra).await
    }

    /// As `start`, with more manifests (a DestinationRule for `ratings`).
    pub(super) async fn start_with(
        octet: u8,
        server_sa: &str,
        ca: Option<&waypoint::identity::DevCa>,
        manifests: &str,
        extra: &[&str],
    ) -> Mesh {
        let certs = Certs::new();
        let workload = Echo::start("127.0.0.1:0".parse().unwrap(), "ratings-1")
            .await
            .unwrap();
        let ip = format!("127.0.0.{octet}");
        let (envoy, port, cert_dir) = destination_signed_by(
            ca.unwrap_or(&certs.ca),
            &ip,
            server_sa,
            workload.addr.port(),
        )
        .await;
        let config = mesh_world(&ip, &format!("10.96.0.{octet}"), manifests);
        let port_flag = port.to_string();
        let mut flags = vec!["--hbone-upstream-port", port_flag.as_str()];
        flags.extend_from_slice(extra);
        let wp = WaypointProc::start_with(config.path(), &certs.waypoint_dir, &flags).await;
        Mesh {
            certs,
            workload,
            envoy,
            port,
            wp,
            _dirs: (config, cert_dir),
        }
    }

    pub(super) fn vip(&self, octet: u8) -> String {
        format!("10.96.0.{octet}:9080")
    }

    /// Connections Envoy's HBONE listener has accepted.
    async fn hbone_connections(&self, octet: u8) -> u64 {
        self.envoy
            .stat(&format!(
                "listener.127.0.0.{octet}_{}.downstream_cx_total",
                self.port
            ))
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_hbone_through_envoy_pools_connections() {
    let m = Mesh::start(71, "ratings", None, &[]).await;
    // Envoy counts the readiness probe's connection too: measure the difference.
    let before = m.hbone_connections(71).await;
    // One client's HBONE connection, as one node's ztunnel keeps one: served
    // by one worker, whose pool the requests share.
    let client = connect(&m.wp, &m.certs.client()).await;
    for _ in 0..5 {
        let mut t = Tunnel::open(&client, &m.vip(71)).await.unwrap();
        for _ in 0..10 {
            let r = t
                .get("http://ratings:9080/", &h("x-trace", "1"))
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.header("x-pod"), Some("ratings-1"));
        }
    }
    assert_eq!(m.workload.requests(), 50);
    // 50 requests from one client, one after another: one tunnel, kept alive,
    // over one pooled mTLS connection.
    assert_eq!(
        m.hbone_connections(71).await - before,
        1,
        "upstream HBONE connections"
    );
    assert_eq!(
        m.envoy.stat("cluster.workload.upstream_cx_total").await,
        1,
        "tunnels"
    );
    // A second client's connection goes to the other worker (the waypoint runs
    // two), which dials its own, as each of Envoy's workers has its own pool.
    let other = connect(&m.wp, &m.certs.client()).await;
    let mut t = Tunnel::open(&other, &m.vip(71)).await.unwrap();
    assert_eq!(
        t.get("http://ratings:9080/", &[]).await.unwrap().status,
        200
    );
    assert_eq!(
        m.hbone_connections(71).await - before,
        2,
        "upstream HBONE connections, one per worker"
    );
    let scrape = super::telemetry::scrape(m.wp.metrics).await;
    let pooled = super::telemetry::value(&scrape, "waypoint_hbone_upstream_connections", &[]);
    assert_eq!(pooled, 2.0, "the pools' size is exported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_with_the_wrong_identity_gets_no_request() {
    let m = Mesh::start(72, "intruder", None, &[]).await;
    let mut t = tunnel(&m.wp, &m.certs, &m.vip(72)).await;
    let r = t.get("http://ratings:9080/", &[]).await.unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(m.workload.requests(), 0);
    let expected = "peer identity is spiffe://cluster.local/ns/default/sa/intruder, expected spiffe://cluster.local/ns/default/sa/ratings";
    assert!(m.wp.log_contains(expected).await, "{}", m.wp.logs());
    assert!(m.wp.log_contains("flag=UF").await, "{}", m.wp.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_client_to_waypoint_to_envoy_server_to_backend() {
    let m = Mesh::start(73, "ratings", None, &[]).await;
    // The source side: an app's plain connection, wrapped by Envoy as HBONE with
    // the client workload's identity (sa/sleep).
    let app_port = free_addr();
    let _client = Envoy::start(
        "hbone_client.yaml",
        &[
            ("LISTEN_PORT", app_port.port().to_string()),
            ("TARGET", m.vip(73)),
            ("CERT_DIR", m.certs.client_dir.display().to_string()),
            ("PEER_ID", id("productpage-waypoint").to_string()),
            ("WAYPOINT_PORT", m.wp.hbone.port().to_string()),
        ],
        app_port,
    )
    .await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut app = tokio::net::TcpStream::connect(app_port).await.unwrap();
    app.write_all(b"GET /reviews HTTP/1.1\r\nhost: ratings:9080\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    app.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("x-pod: ratings-1"), "{out}");
    assert_eq!(m.workload.requests(), 1);
    // The waypoint saw the source identity Envoy presented.
    let source = "source=spiffe://cluster.local/ns/default/sa/sleep";
    assert!(m.wp.log_contains(source).await, "{}", m.wp.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_limit_opens_more_connections() {
    let m = Mesh::start(
        74,
        "ratings",
        None,
        &["--hbone-streams-per-connection", "2"],
    )
    .await;
    let before = m.hbone_connections(74).await;
    // Six requests in flight at once from one client (so on one worker, with
    // one pool): six tunnels, at most two per connection.
    let client = connect(&m.wp, &m.certs.client()).await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let mut t = Tunnel::open(&client, &m.vip(74)).await.unwrap();
        tasks.push(tokio::spawn(async move {
            t.get("http://ratings:9080/", &h("x-echo-delay-ms", "400"))
                .await
                .unwrap()
                .status
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(
        m.hbone_connections(74).await - before,
        3,
        "6 concurrent tunnels / 2 per connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_from_an_unknown_ca_gets_no_request() {
    let other = waypoint::identity::DevCa::new("another mesh").unwrap();
    let m = Mesh::start(75, "ratings", Some(&other), &[]).await;
    let mut t = tunnel(&m.wp, &m.certs, &m.vip(75)).await;
    assert_eq!(
        t.get("http://ratings:9080/", &[]).await.unwrap().status,
        503
    );
    assert_eq!(m.workload.requests(), 0);
    assert!(m.wp.log_contains("UnknownIssuer").await, "{}", m.wp.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_dies_mid_request_fails_only_that_request() {
    let mut m = Mesh::start(76, "ratings", None, &[]).await;
    let mut t = tunnel(&m.wp, &m.certs, &m.vip(76)).await;
    assert_eq!(
        t.get("http://ratings:9080/", &[]).await.unwrap().status,
        200
    );
    let slow = tokio::spawn(async move {
        let mut t = t;
        t.get("http://ratings:9080/", &h("x-echo-delay-ms", "2000"))
            .await
            .unwrap()
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    m.envoy.kill();
    let r = slow.await.unwrap();
    assert!(r.status.is_server_error(), "{} {}", r.status, r.text());
    // The waypoint itself is fine: its HBONE listener still opens tunnels and
    // answers (503: the destination is gone and retries cannot reach it).
    let mut t = tunnel(&m.wp, &m.certs, &m.vip(76)).await;
    assert_eq!(
        t.get("http://ratings:9080/", &[]).await.unwrap().status,
        503
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_stops_answering_pings_leaves_the_pool() {
    let flags = [
        "--hbone-keepalive-interval",
        "0.5",
        "--hbone-keepalive-timeout",
        "1",
    ];
    let m = Mesh::start(77, "ratings", None, &flags).await;
    let before = m.hbone_connections(77).await;
    let mut t = tunnel(&m.wp, &m.certs, &m.vip(77)).await;
    assert_eq!(
        t.get("http://ratings:9080/", &[]).await.unwrap().status,
        200
    );
    // A hung node: its TCP connections stay up, nothing answers a PING.
    m.envoy.freeze(true);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    m.envoy.freeze(false);
    let scrape = super::telemetry::scrape(m.wp.metrics).await;
    let timeouts = "waypoint_hbone_upstream_keepalive_timeouts_total";
    assert_eq!(super::telemetry::value(&scrape, timeouts, &[]), 1.0);
    // The next request dials a fresh connection instead of waiting on the dead one.
    let mut t = tunnel(&m.wp, &m.certs, &m.vip(77)).await;
    assert_eq!(
        t.get("http://ratings:9080/", &[]).await.unwrap().status,
        200
    );
    assert_eq!(m.hbone_connections(77).await - before, 2);
}
