//! Every protocol a tunnel carries: HTTP/1.1 and HTTP/2 with prior knowledge
//! side by side (HBONE and plaintext), and opaque TCP, client-first or
//! server-first, on ports named for it or detected.

use crate::common::{self, Certs, WaypointProc, World};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use waypoint::testing::{pods_yaml, Pod};

/// `web` (port name says nothing: detected), `api` (`http2`), `echo-tcp`
/// (`tcp-echo`), `banner` (detected, a server-first peer), `mysql` (3306).
const MANIFESTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.1.1
  ports: [{name: web, port: 8080, targetPort: http}]
  selector: {app: web}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: default}
spec:
  clusterIP: 10.96.1.2
  ports: [{name: api, appProtocol: kubernetes.io/h2c, port: 8080, targetPort: http}]
  selector: {app: api}
---
apiVersion: v1
kind: Service
metadata: {name: echo-tcp, namespace: default}
spec:
  clusterIP: 10.96.1.3
  ports: [{name: tcp-echo, port: 7000, targetPort: http}]
  selector: {app: echo-tcp}
---
apiVersion: v1
kind: Service
metadata: {name: banner, namespace: default}
spec:
  clusterIP: 10.96.1.4
  ports: [{name: banner, port: 7001, targetPort: http}]
  selector: {app: banner}
---
apiVersion: v1
kind: Service
metadata: {name: mysql, namespace: default}
spec:
  clusterIP: 10.96.1.5
  ports: [{name: db, port: 3306, targetPort: http}]
  selector: {app: mysql}
"#;

/// Echoes what it reads; when the client half-closes, answers the rest and
/// closes its side. With `banner`, speaks first.
pub(super) async fn tcp_server(banner: Option<&'static str>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                if let Some(b) = banner {
                    s.write_all(b.as_bytes()).await.unwrap();
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    port
}

pub(super) struct Fixture {
    _world: World,
    pub(super) _certs: Certs,
    pub(super) wp: WaypointProc,
    certs_client: waypoint::identity::CertBundle,
}

async fn fixture() -> Fixture {
    fixture_with("", &[]).await
}

/// With `extra` manifests, and server-first TCP pods `(app, greeting)`.
pub(super) async fn fixture_with(extra: &str, more: &[(&'static str, &'static str)]) -> Fixture {
    let world = World::new(
        &[
            common::world::Pod("web-1", "web", "v1"),
            common::world::Pod("api-1", "api", "v1"),
        ],
        MANIFESTS,
    )
    .await;
    let mut tcp = vec![
        ("echo-tcp", tcp_server(None).await),
        ("banner", tcp_server(Some("220 ready\r\n")).await),
        ("mysql", tcp_server(Some("mysql says hello\n")).await),
    ];
    for (app, greeting) in more {
        tcp.push((app, tcp_server(Some(greeting)).await));
    }
    std::fs::write(world.dir().join("extra.yaml"), extra).unwrap();
    let pods: Vec<Pod<'_>> = tcp
        .iter()
        .map(|(app, port)| Pod {
            name: app,
            app,
            version: "v1",
            port: *port,
        })
        .collect();
    std::fs::write(world.dir().join("tcp-pods.yaml"), pods_yaml(&pods)).unwrap();
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    Fixture {
        certs_client: certs.client(),
        _world: world,
        _certs: certs,
        wp,
    }
}

/// GETs `paths` concurrently on one HTTP/2 connection over `io`; returns each
/// answer's status and the upstream HTTP version the echo saw.
async fn h2_gets<IO>(io: IO, authority: &str, paths: &[&str]) -> Vec<(u16, String)>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(conn);
    let calls = paths.iter().map(|path| {
        let mut sender = sender.clone();
        let req = http::Request::get(format!("http://{authority}{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        async move {
            let resp = sender.send_request(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let doc: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            (status, doc["version"].as_str().unwrap_or("-").to_string())
        }
    });
    futures::future::join_all(calls).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_and_http1_share_the_plaintext_listener() {
    let f = fixture().await;
    let paths = ["/a", "/b", "/c", "/d"];
    // A detected port: the upstream gets the client's protocol.
    let tcp = tokio::net::TcpStream::connect(f.wp.http).await.unwrap();
    let got = h2_gets(tcp, "web:8080", &paths).await;
    assert_eq!(got, vec![(200, "HTTP/2.0".to_string()); 4]);
    // An h2c port: HTTP/2 upstream whatever the client speaks.
    let (status, resp) = http1_get(f.wp.http, "api:8080").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{resp}");
    assert!(resp.contains(r#""version":"HTTP/2.0""#), "{resp}");
    // HTTP/1.1 on a detected port stays HTTP/1.1 upstream.
    let (status, resp) = http1_get(f.wp.http, "web:8080").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{resp}");
    assert!(resp.contains(r#""version":"HTTP/1.1""#), "{resp}");
    // curl, the README's client.
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "-H",
            "host: web:8080",
            "-w",
            "\n%{http_version}",
        ])
        .arg(format!("http://{}/curl", f.wp.http))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n2"), "{text}");
    assert!(text.contains(r#""version":"HTTP/2.0""#), "{text}");
}

async fn http1_get(addr: std::net::SocketAddr, host: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET / HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    (out.lines().next().unwrap_or("").to_string(), out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tunnel_carries_many_http2_streams() {
    let f = fixture().await;
    let client = common::connect(&f.wp, &f.certs_client).await;
    let tunnel = client.open("10.96.1.1:8080").await.unwrap();
    let paths: Vec<String> = (0..20).map(|i| format!("/s{i}")).collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let got = h2_gets(tunnel, "10.96.1.1:8080", &paths).await;
    assert_eq!(got, vec![(200, "HTTP/2.0".to_string()); 20]);
    // And HTTP/1.1 on another tunnel to the same port.
    let mut t = waypoint::client::Tunnel::open(&client, "10.96.1.1:8080")
        .await
        .unwrap();
    let r = t.get("http://web/", &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().contains(r#""version":"HTTP/1.1""#), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_port_carries_bytes_both_ways_with_half_close() {
    let f = fixture().await;
    let client = common::connect(&f.wp, &f.certs_client).await;
    let mut tunnel = client.open("10.96.1.3:7000").await.unwrap();
    // Looks like HTTP, but the port says TCP: carried untouched.
    let sent = b"GET / HTTP/1.1\r\nhost: x\r\n\r\nand then some opaque bytes";
    tunnel.write_all(sent).await.unwrap();
    tunnel.shutdown().await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tunnel.read_to_end(&mut back))
        .await
        .expect("the echo's close reaches the client")
        .unwrap();
    assert_eq!(back, sent);
    // Text that is not HTTP on a detected port is TCP too (a Redis command).
    let mut tunnel = client.open("10.96.1.4:7001").await.unwrap();
    tunnel.write_all(b"SET k v\r\n").await.unwrap();
    tunnel.shutdown().await.unwrap();
    let mut back = String::new();
    tunnel.read_to_string(&mut back).await.unwrap();
    assert_eq!(back, "220 ready\r\nSET k v\r\n");
    // One access-log line per connection, with the bytes each way.
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let out = f.wp.stdout();
        if let Some(l) = out
            .lines()
            .find(|l| l.contains("outbound|7000||echo-tcp.default.svc.cluster.local"))
        {
            break l.to_string();
        }
        assert!(Instant::now() < deadline, "no TCP access-log line:\n{out}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["bytes_received"], sent.len(), "{line}");
    assert_eq!(entry["bytes_sent"], sent.len(), "{line}");
    assert_eq!(entry["method"], serde_json::Value::Null, "{line}");
    assert_eq!(entry["response_flags"], "-", "{line}");
    // Istio's TCP metrics, as the waypoint reports them.
    use super::telemetry::{scrape, value};
    let metrics = scrape(f.wp.metrics).await;
    let service = [
        ("reporter", "waypoint"),
        ("destination_service", "echo-tcp.default.svc.cluster.local"),
    ];
    let counter = |name| value(&metrics, name, &service);
    assert_eq!(counter("istio_tcp_connections_opened_total"), 1.0);
    assert_eq!(counter("istio_tcp_connections_closed_total"), 1.0);
    assert_eq!(counter("istio_tcp_received_bytes_total"), sent.len() as f64);
    assert_eq!(counter("istio_tcp_sent_bytes_total"), sent.len() as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_first_protocols_are_not_kept_waiting() {
    let f = fixture().await;
    let client = common::connect(&f.wp, &f.certs_client).await;
    for (authority, greeting) in [
        // A detected port: TCP once the client has been silent for the wait.
        ("10.96.1.4:7001", "220 ready"),
        // MySQL's port: TCP from the start.
        ("10.96.1.5:3306", "mysql says hello"),
    ] {
        let tunnel = client.open(authority).await.unwrap();
        let mut lines = tokio::io::BufReader::new(tunnel);
        let mut first = String::new();
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), lines.read_line(&mut first))
            .await
            .unwrap_or_else(|_| panic!("{authority}: the server's greeting never came"))
            .unwrap();
        assert_eq!(first.trim_end(), greeting, "{authority}");
        assert!(started.elapsed() < Duration::from_secs(2), "{authority}");
        // And the client's turn works after it.
        lines.get_mut().write_all(b"ping\n").await.unwrap();
        let mut echoed = String::new();
        lines.read_line(&mut echoed).await.unwrap();
        assert_eq!(echoed, "ping\n", "{authority}");
    }
}

/// A TCPRoute on `echo-tcp`: 3:1 over two server-first services.
const TCP_ROUTE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: tcp-a, namespace: default}
spec:
  clusterIP: 10.96.1.6
  ports: [{name: tcp, port: 7100, targetPort: http}]
  selector: {app: tcp-a}
---
apiVersion: v1
kind: Service
metadata: {name: tcp-b, namespace: default}
spec:
  clusterIP: 10.96.1.7
  ports: [{name: tcp, port: 7200, targetPort: http}]
  selector: {app: tcp-b}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: echo-split, namespace: default}
spec:
  parentRefs: [{kind: Service, name: echo-tcp, port: 7000}]
  rules:
  - backendRefs: [{name: tcp-a, port: 7100, weight: 3}, {name: tcp-b, port: 7200, weight: 1}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_route_splits_connections_by_weight() {
    let f = fixture_with(TCP_ROUTE, &[("tcp-a", "A\n"), ("tcp-b", "B\n")]).await;
    let client = common::connect(&f.wp, &f.certs_client).await;
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..200 {
        let tunnel = client.open("10.96.1.3:7000").await.unwrap();
        let mut lines = tokio::io::BufReader::new(tunnel);
        let mut first = String::new();
        tokio::time::timeout(Duration::from_secs(5), lines.read_line(&mut first))
            .await
            .expect("a greeting")
            .unwrap();
        *counts.entry(first.trim_end().to_string()).or_default() += 1;
    }
    let a = counts.get("A").copied().unwrap_or(0) as i64;
    assert!((a - 150).abs() <= 30, "{counts:?}");
    assert_eq!(
        a + counts.get("B").copied().unwrap_or(0) as i64,
        200,
        "{counts:?}"
    );
}

/// `db` on port 7300: a live pod and one whose port refuses connections, with
/// one connection allowed at a time and ejection after one failed dial.
const TCP_POLICY: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  clusterIP: 10.96.1.8
  ports: [{name: tcp-db, port: 7300, targetPort: http}]
  selector: {app: db}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db, namespace: default}
spec:
  host: db
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {tcp: {maxConnections: 1, connectTimeout: 1s}}
    outlierDetection: {consecutiveGatewayErrors: 1, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_obey_the_pool_limit_and_dead_endpoints_are_ejected() {
    // The dead pod: a port that was bound and let go, so connecting is refused.
    let dead = crate::common::proc::free_addr().port();
    let f = fixture_with(TCP_POLICY, &[("db", "db says hi\n")]).await;
    std::fs::write(
        f._world.dir().join("dead-pod.yaml"),
        pods_yaml(&[Pod {
            name: "db-dead",
            app: "db",
            version: "v1",
            port: dead,
        }]),
    )
    .unwrap();
    // The config directory is re-read within a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let client = common::connect(&f.wp, &f.certs_client).await;
    let greeting = |t: waypoint::hbone::H2Stream| async move {
        let mut lines = tokio::io::BufReader::new(t);
        let mut first = String::new();
        tokio::time::timeout(Duration::from_secs(5), lines.read_line(&mut first))
            .await
            .expect("an answer or a close")
            .map(|_| first)
            .unwrap_or_default()
    };
    // Round robin over the two: within two connections the dead pod is dialled,
    // fails (the client's tunnel closes with nothing said) and is ejected; every
    // later connection reaches the live one.
    let mut answers = Vec::new();
    for _ in 0..6 {
        let t = client.open("10.96.1.8:7300").await.unwrap();
        answers.push(greeting(t).await);
        // Closed: its one connection slot frees once both sides have closed.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failed = answers.iter().filter(|a| a.is_empty()).count();
    assert_eq!(failed, 1, "{answers:?}");
    assert!(
        answers[2..].iter().all(|a| a == "db says hi\n"),
        "{answers:?}"
    );
    // maxConnections: 1. While one connection is open, another is closed at once.
    let held = client.open("10.96.1.8:7300").await.unwrap();
    let mut held = tokio::io::BufReader::new(held);
    let mut first = String::new();
    held.read_line(&mut first).await.unwrap();
    assert_eq!(first, "db says hi\n");
    let refused = client.open("10.96.1.8:7300").await.unwrap();
    assert_eq!(greeting(refused).await, "", "over the limit: closed");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = client.open("10.96.1.8:7300").await.unwrap();
    assert_eq!(greeting(again).await, "db says hi\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    let logged = |flag: &str| {
        f.wp.stdout().lines().any(|l| {
            l.contains("outbound|7300||db") && l.contains(&format!("\"response_flags\":\"{flag}\""))
        })
    };
    while !(logged("UF") && logged("UO")) {
        assert!(Instant::now() < deadline, "{}", f.wp.stdout());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tcp_connection_is_closed_after_the_idle_timeout() {
    let f = fixture_with(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo-tcp, namespace: default}
spec:
  host: echo-tcp
  trafficPolicy: {connectionPool: {tcp: {idleTimeout: 300ms}}}
"#,
        &[],
    )
    .await;
    let client = common::connect(&f.wp, &f.certs_client).await;
    let mut t = client.open("10.96.1.3:7000").await.unwrap();
    // Traffic keeps it open past the timeout...
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        t.write_all(b"tick").await.unwrap();
        let mut back = [0u8; 4];
        t.read_exact(&mut back).await.unwrap();
    }
    // ...silence closes it.
    let started = Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), t.read_to_end(&mut rest))
        .await
        .expect("closed after the idle timeout")
        .ok();
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_policies_apply_to_tcp_connections() {
    let f = fixture_with(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: echo-callers, namespace: default}
spec:
  targetRefs: [{kind: Service, group: "", name: echo-tcp}]
  rules:
  - from: [{source: {principals: ["cluster.local/ns/front/sa/web"]}}]
  # A rule that needs HTTP never allows a TCP connection, as in Istio.
  - from: [{source: {principals: ["cluster.local/ns/default/sa/sleep"]}}]
    to: [{operation: {methods: [GET]}}]
"#,
        &[],
    )
    .await;
    let echo = |bundle: waypoint::identity::CertBundle| {
        let wp = &f.wp;
        async move {
            let client = common::connect(wp, &bundle).await;
            let mut t = client.open("10.96.1.3:7000").await.unwrap();
            let _ = t.write_all(b"hello").await;
            let _ = t.shutdown().await;
            let mut back = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), t.read_to_end(&mut back)).await;
            back
        }
    };
    assert_eq!(echo(f._certs.client_as("front", "web")).await, b"hello");
    assert_eq!(
        echo(f._certs.client()).await,
        b"",
        "sleep: closed unanswered"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f
        .wp
        .stdout()
        .contains("rbac_access_denied_matched_policy[none]")
    {
        assert!(Instant::now() < deadline, "{}", f.wp.stdout());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
