//! gRPC through the waypoint with real tonic clients and servers: per-request
//! balancing on one client connection, every streaming shape, trailers,
//! cancellation both ways, retries on gRPC statuses, `grpc-timeout`, local
//! errors as gRPC statuses, and gRPC in the metrics and access log.

use crate::common::grpc::{msg, plaintext_channel, tunnel_channel, EchoClient, GrpcBackend};
use crate::common::{self, Certs, WaypointProc};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tonic::{Code, Request};
use waypoint::testing::{pods_yaml, Pod};

const VIP: &str = "10.96.2.1:9000";

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: default}
spec:
  clusterIP: 10.96.2.1
  ports: [{name: grpc, port: 9000, targetPort: http}]
  selector: {app: greeter}
---
apiVersion: v1
kind: Service
metadata: {name: nobody, namespace: default}
spec:
  clusterIP: 10.96.2.2
  ports: [{name: grpc, port: 9000, targetPort: http}]
  selector: {app: nobody}
---
apiVersion: v1
kind: Service
metadata: {name: slow, namespace: default}
spec:
  clusterIP: 10.96.2.3
  ports: [{name: grpc, port: 9000, targetPort: http}]
  selector: {app: slow}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: greeter, namespace: default}
spec:
  host: greeter
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: greeter, namespace: default}
spec:
  hosts: [greeter]
  http:
  - match: [{headers: {x-retry: {exact: "yes"}}}]
    route: [{destination: {host: greeter, subset: v1}}]
    retries: {attempts: 3, retryOn: unavailable}
  - route:
    - {destination: {host: greeter, subset: v1}, weight: 50}
    - {destination: {host: greeter, subset: v2}, weight: 30}
    - {destination: {host: greeter, subset: v3}, weight: 20}
"#;

struct Fixture {
    backends: BTreeMap<&'static str, GrpcBackend>,
    /// `slow`: an HTTP echo that ignores grpc-timeout, as a server may.
    _slow: waypoint::echo::Echo,
    certs: Certs,
    wp: WaypointProc,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    fixture_with("").await
}

/// With `extra` manifests beside the seed ones.
async fn fixture_with(extra: &str) -> Fixture {
    fixture_full(extra, &[], &[]).await
}

/// With extra manifests, `waypoint run` flags and environment.
async fn fixture_full(extra: &str, flags: &[&str], env: &[(&str, &str)]) -> Fixture {
    let mut backends = BTreeMap::new();
    for name in ["greeter-v1", "greeter-v2", "greeter-v3"] {
        backends.insert(name, GrpcBackend::start(name).await);
    }
    let slow = waypoint::echo::Echo::start("127.0.0.1:0".parse().unwrap(), "slow-1")
        .await
        .unwrap();
    let mut pods: Vec<Pod<'_>> = backends
        .iter()
        .map(|(name, b)| Pod {
            name,
            app: "greeter",
            version: &name[8..],
            port: b.addr.port(),
        })
        .collect();
    pods.push(Pod {
        name: "slow-1",
        app: "slow",
        version: "v1",
        port: slow.addr.port(),
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pods.yaml"), pods_yaml(&pods)).unwrap();
    std::fs::write(dir.path().join("world.yaml"), MANIFESTS).unwrap();
    std::fs::write(dir.path().join("extra.yaml"), extra).unwrap();
    let certs = Certs::new();
    let wp = WaypointProc::start_with_env(dir.path(), &certs.waypoint_dir, flags, env).await;
    Fixture {
        backends,
        _slow: slow,
        certs,
        wp,
        _dir: dir,
    }
}

impl Fixture {
    async fn tunnel_client(&self) -> EchoClient {
        let hbone = common::connect(&self.wp, &self.certs.client()).await;
        EchoClient::new(tunnel_channel(&hbone, VIP).await)
    }

    async fn plaintext_client(&self, host: &str) -> EchoClient {
        EchoClient::new(plaintext_channel(self.wp.http, host).await)
    }
}

/// Which pod answered each of `n` unary calls, made 50 at a time.
async fn pods_answering(client: &EchoClient, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let calls = futures::stream::iter(0..n).map(|i| {
        let mut c = client.clone();
        async move { c.unary(Request::new(msg(&i.to_string()))).await }
    });
    let mut answers = calls.buffer_unordered(50);
    while let Some(answer) = answers.next().await {
        *counts.entry(answer.unwrap().into_inner().pod).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_calls_on_one_connection_are_balanced_per_request() {
    let f = fixture().await;
    // One HBONE tunnel carries the client's one HTTP/2 connection.
    let counts = pods_answering(&f.tunnel_client().await, 1000).await;
    // 50/30/20 of 1000: each share within four standard deviations.
    for (pod, expected) in [
        ("greeter-v1", 500),
        ("greeter-v2", 300),
        ("greeter-v3", 200),
    ] {
        let got = counts.get(pod).copied().unwrap_or(0) as i64;
        assert!(
            (got - expected).abs() <= 65,
            "{pod}: {got} of 1000, expected about {expected}: {counts:?}"
        );
        assert_eq!(f.backends[pod].calls() as i64, got, "{pod}");
    }
    // The plaintext listener, by the Service's name: the same split.
    let counts = pods_answering(&f.plaintext_client("greeter:9000").await, 200).await;
    assert_eq!(counts.len(), 3, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_calls_and_trailers_pass_through() {
    let f = fixture().await;
    for mut client in [
        f.tunnel_client().await,
        f.plaintext_client("greeter.default.svc.cluster.local:9000")
            .await,
    ] {
        // Client streaming.
        let joined = client
            .collect(vec![msg("a"), msg("b"), msg("c")])
            .await
            .unwrap();
        assert_eq!(joined.into_inner().text, "a+b+c");
        // Server streaming, ending with OK in the trailers.
        let mut s = client.count("5").await.unwrap().into_inner();
        let mut got = Vec::new();
        while let Some(m) = s.message().await.unwrap() {
            got.push(m.text);
        }
        assert_eq!(got, ["0", "1", "2", "3", "4"]);
        // Bidirectional: each message comes back while the client still sends.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut back = client.chat(tokio_stream_of(rx)).await.unwrap().into_inner();
        for word in ["one", "two", "three"] {
            tx.send(msg(word)).await.unwrap();
            let m = tokio::time::timeout(Duration::from_secs(5), back.message())
                .await
                .expect("the echo of a message before the stream ends")
                .unwrap()
                .unwrap();
            assert_eq!(m.text, word);
        }
        drop(tx);
        assert!(back.message().await.unwrap().is_none());
        // An error status and its message, from the server's trailers.
        let mut req = Request::new(msg("x"));
        req.metadata_mut()
            .insert("x-echo-code", "5".parse().unwrap());
        let err = client.unary(req).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert_eq!(err.message(), "as asked");
    }
}

/// A stream of what `rx` receives.
fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<crate::common::grpc::Msg>,
) -> impl futures::Stream<Item = crate::common::grpc::Msg> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_goes_both_ways() {
    let f = fixture().await;
    let mut client = f.tunnel_client().await;
    // The client cancels: the backend's stream is dropped.
    let before: u64 = f.backends.values().map(GrpcBackend::cancelled).sum();
    let mut s = client.count("forever").await.unwrap().into_inner();
    for _ in 0..3 {
        s.message().await.unwrap().unwrap();
    }
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(5);
    while f.backends.values().map(GrpcBackend::cancelled).sum::<u64>() == before {
        assert!(
            Instant::now() < deadline,
            "the backend never saw the cancel"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The server ends a stream early with a status: the client gets it after
    // the messages sent before.
    let mut s = client.count("3!").await.unwrap().into_inner();
    let mut got = 0;
    let err = loop {
        match s.message().await {
            Ok(Some(_)) => got += 1,
            Ok(None) => panic!("the stream ended without the server's status"),
            Err(e) => break e,
        }
    };
    assert_eq!((got, err.code()), (3, Code::Aborted));
    assert_eq!(err.message(), "stopped by the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_statuses_drive_retries_and_local_errors_speak_grpc() {
    let f = fixture().await;
    let mut client = f.plaintext_client("greeter:9000").await;
    // retryOn: unavailable retries a trailers-only UNAVAILABLE answer.
    f.backends["greeter-v1"].fail_next(2, Code::Unavailable);
    let mut req = Request::new(msg("again"));
    req.metadata_mut().insert("x-retry", "yes".parse().unwrap());
    let ok = client.unary(req).await.unwrap();
    assert_eq!(ok.into_inner().text, "again");
    assert_eq!(f.backends["greeter-v1"].calls(), 3);
    // Not a retried status: passed through at once.
    f.backends["greeter-v1"].fail_next(1, Code::Internal);
    let mut req = Request::new(msg("once"));
    req.metadata_mut().insert("x-retry", "yes".parse().unwrap());
    assert_eq!(client.unary(req).await.unwrap_err().code(), Code::Internal);
    assert_eq!(f.backends["greeter-v1"].calls(), 4);
    // grpc-timeout is the request's deadline when the route sets none. tonic
    // enforces the header itself at both ends, so curl sends the call (one
    // empty message, an empty `Msg`) to a server that ignores it.
    let started = Instant::now();
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "--http2-prior-knowledge",
        ])
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .args(["-H", "grpc-timeout: 300m", "-H", "x-echo-delay-ms: 3000"])
        .args(["-H", "host: slow:9000", "--data-binary", "@-"])
        .arg(format!("http://{}/test.Echo/Unary", f.wp.http))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&[0; 5])?;
            c.wait_with_output()
        })
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(started.elapsed() < Duration::from_secs(2), "{head}");
    assert!(head.starts_with("http/2 200"), "{head}");
    assert!(head.contains("grpc-status: 14"), "{head}");
    assert!(
        head.contains("grpc-message: upstream request timeout"),
        "{head}"
    );
    // No endpoint at all: 503 UH, as UNAVAILABLE.
    let mut nobody = f.plaintext_client("nobody:9000").await;
    let err = nobody.unary(Request::new(msg("?"))).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(err.message(), "no healthy upstream");
    // grpc.health.v1, with tonic-health's own client.
    let mut health = tonic_health::pb::health_client::HealthClient::new(
        plaintext_channel(f.wp.http, "greeter:9000").await,
    );
    let check = tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    };
    let status = health
        .check(check.clone())
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let mut watch = health.watch(check).await.unwrap().into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, status);
    // Metrics and the access log say gRPC, with its status.
    use super::telemetry::{scrape, value};
    let metrics = scrape(f.wp.metrics).await;
    for code in ["0", "13", "14"] {
        let labels = [("request_protocol", "grpc"), ("grpc_response_status", code)];
        assert!(
            value(&metrics, "istio_requests_total", &labels) > 0.0,
            "no gRPC request with status {code} counted"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f.wp.stdout().contains(r#""grpc_status":14"#) {
        assert!(Instant::now() < deadline, "{}", f.wp.stdout());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Service per version, and a GRPCRoute on `greeter` (which, as a Gateway API
/// route, replaces the VirtualService there).
const GRPC_ROUTE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: greeter-v2, namespace: default}
spec:
  clusterIP: 10.96.2.12
  ports: [{name: grpc, port: 9000, targetPort: http}]
  selector: {app: greeter, version: v2}
---
apiVersion: v1
kind: Service
metadata: {name: greeter-v3, namespace: default}
spec:
  clusterIP: 10.96.2.13
  ports: [{name: grpc, port: 9000, targetPort: http}]
  selector: {app: greeter, version: v3}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: greeter, namespace: default}
spec:
  parentRefs: [{kind: Service, name: greeter, port: 9000}]
  rules:
  - matches: [{method: {service: test.Echo}}]
    backendRefs: [{name: greeter-v2, port: 9000, weight: 3}, {name: greeter-v3, port: 9000, weight: 1}]
  - matches: [{method: {service: test.Echo, method: Unary}, headers: [{name: x-canary, value: "yes"}]}]
    backendRefs:
    - name: greeter-v3
      port: 9000
      filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: x-canary-served, value: v3}]}}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_route_matches_methods_and_headers_and_splits_by_weight() {
    let f = fixture_with(GRPC_ROUTE).await;
    let mut client = f.tunnel_client().await;
    // The most specific match wins whatever the order: service + method +
    // header over service alone; its backend's response header is set.
    let mut req = Request::new(msg("canary"));
    req.metadata_mut()
        .insert("x-canary", "yes".parse().unwrap());
    let canary = client.unary(req).await.unwrap();
    assert_eq!(canary.metadata().get("x-canary-served").unwrap(), "v3");
    assert_eq!(canary.into_inner().pod, "greeter-v3");
    // Service test.Echo alone matches the rest: 3:1 over v2 and v3.
    let counts = pods_answering(&client, 400).await;
    let v2 = counts.get("greeter-v2").copied().unwrap_or(0) as i64;
    assert!((v2 - 300).abs() <= 45, "{counts:?}");
    assert_eq!(counts.get("greeter-v1"), None, "{counts:?}");
    // Streaming methods of the service take the same rule.
    let r = client.collect(vec![msg("x")]).await.unwrap().into_inner();
    assert_ne!(r.pod, "greeter-v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_through_envoy_as_the_source_ztunnel() {
    use crate::common::certs::id;
    use crate::common::envoy::Envoy;
    let f = fixture().await;
    // The application's plain h2c connection, captured by Envoy and carried to
    // the waypoint in one HBONE tunnel with the client workload's identity.
    let app_port = crate::common::proc::free_addr();
    let _source = Envoy::start(
        "hbone_client.yaml",
        &[
            ("LISTEN_PORT", app_port.port().to_string()),
            ("TARGET", VIP.to_string()),
            ("CERT_DIR", f.certs.client_dir.display().to_string()),
            ("PEER_ID", id("productpage-waypoint").to_string()),
            ("WAYPOINT_PORT", f.wp.hbone.port().to_string()),
        ],
        app_port,
    )
    .await;
    let client = EchoClient::new(plaintext_channel(app_port, "greeter:9000").await);
    let counts = pods_answering(&client, 200).await;
    assert_eq!(counts.len(), 3, "balanced per call: {counts:?}");
    let mut c = client.clone();
    let mut s = c.count("4").await.unwrap().into_inner();
    let mut n = 0;
    while s.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 4);
    let source = "source_principal\":\"spiffe://cluster.local/ns/default/sa/sleep";
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f.wp.stdout().contains(source) {
        assert!(Instant::now() < deadline, "{}", f.wp.stdout());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// gRPC and TCP to mesh endpoints: each rides HBONE to the endpoint's node, where
/// Envoy plays the destination ztunnel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_tcp_to_mesh_endpoints_ride_hbone() {
    use super::envoy_peer::destination_signed_by;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certs = Certs::new();
    let grpc = GrpcBackend::start("greeter-1").await;
    let echo = super::protocols::tcp_server(None).await;
    let (grpc_node, grpc_port, _d1) =
        destination_signed_by(&certs.ca, "127.0.0.81", "greeter", grpc.addr.port()).await;
    let (tcp_node, tcp_port, _d2) =
        destination_signed_by(&certs.ca, "127.0.0.82", "db", echo).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mesh.yaml"),
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: default, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: default}
spec:
  clusterIP: 10.96.0.81
  ports: [{name: grpc, port: 9000}]
  selector: {app: greeter}
---
apiVersion: v1
kind: Pod
metadata: {name: greeter-1, namespace: default, labels: {app: greeter}}
spec: {serviceAccountName: greeter}
status: {podIP: 127.0.0.81}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  clusterIP: 10.96.0.82
  ports: [{name: tcp-db, port: 5432}]
  selector: {app: db}
---
apiVersion: v1
kind: Pod
metadata: {name: db-1, namespace: default, labels: {app: db}}
spec: {serviceAccountName: db}
status: {podIP: 127.0.0.82}
"#,
    )
    .unwrap();
    // The two Envoys got different ports; the waypoint dials one port for every
    // node, so the TCP node is reached through a second waypoint.
    let grpc_wp = WaypointProc::start_with(
        dir.path(),
        &certs.waypoint_dir,
        &["--hbone-upstream-port", &grpc_port.to_string()],
    )
    .await;
    let node_connections = format!("listener.127.0.0.81_{grpc_port}.downstream_cx_total");
    // Envoy counts the harness's readiness probe too: measure the difference.
    let before = grpc_node.stat(&node_connections).await;
    let hbone = common::connect(&grpc_wp, &certs.client()).await;
    let client = EchoClient::new(tunnel_channel(&hbone, "10.96.0.81:9000").await);
    let counts = pods_answering(&client, 100).await;
    assert_eq!(counts.get("greeter-1"), Some(&100), "{counts:?}");
    // Every call's tunnel rode one pooled mTLS connection to the node. (Each
    // call has a tunnel of its own: Pingora cannot reuse an HTTP/2 connection
    // over a virtual stream, see the README.)
    assert_eq!(grpc_node.stat(&node_connections).await - before, 1);
    let tcp_wp = WaypointProc::start_with(
        dir.path(),
        &certs.waypoint_dir,
        &["--hbone-upstream-port", &tcp_port.to_string()],
    )
    .await;
    let hbone = common::connect(&tcp_wp, &certs.client()).await;
    let mut t = hbone.open("10.96.0.82:5432").await.unwrap();
    t.write_all(b"over two tunnels").await.unwrap();
    t.shutdown().await.unwrap();
    let mut back = Vec::new();
    t.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"over two tunnels");
    assert_eq!(tcp_node.stat("cluster.workload.upstream_cx_total").await, 1);
    assert_eq!(
        grpc_node.stat("cluster.workload.upstream_cx_total").await,
        100
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_aborts_with_the_grpc_status_it_names() {
    let f = fixture_with(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: nobody, namespace: default}
spec:
  hosts: [nobody]
  http:
  - fault: {abort: {grpcStatus: RESOURCE_EXHAUSTED, percentage: {value: 100}}}
    route: [{destination: {host: nobody}}]
"#,
    )
    .await;
    let mut client = f.plaintext_client("nobody:9000").await;
    let err = client.unary(Request::new(msg("x"))).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_eq!(err.message(), "fault filter abort");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_call_is_a_span_with_its_grpc_status() {
    use crate::common::otlp::Collector;
    let collector = Collector::start().await;
    let endpoint = collector.endpoint();
    let f = fixture_full(
        "",
        &["--otlp-endpoint", &endpoint],
        &[("OTEL_BSP_SCHEDULE_DELAY", "50")],
    )
    .await;
    let mut client = f.plaintext_client("greeter:9000").await;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let mut req = Request::new(msg("x"));
    let parent = format!("00-{trace}-b7ad6b7169203331-01");
    req.metadata_mut()
        .insert("traceparent", parent.parse().unwrap());
    req.metadata_mut()
        .insert("x-echo-code", "5".parse().unwrap());
    assert_eq!(client.unary(req).await.unwrap_err().code(), Code::NotFound);
    let spans = collector.wait_for_trace(trace, 2).await;
    let server = spans
        .iter()
        .find(|s| s.attr("rpc.system").is_some())
        .unwrap_or_else(|| panic!("no span with rpc.system: {spans:#?}"));
    assert_eq!(server.attr("rpc.system").as_deref(), Some("grpc"));
    assert_eq!(server.attr("rpc.grpc.status_code").as_deref(), Some("5"));
}
