//! Distributed tracing through the real binary, exported to a real OTLP receiver.

use crate::common::otlp::{Collector, Received};
use crate::common::world::PRODUCTPAGE_VIP;
use crate::common::{tunnel, Certs, WaypointProc, World};
use std::time::Duration;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
const SERVER: i32 = 2;
const CLIENT: i32 = 3;

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn traced(
    world: &World,
    certs: &Certs,
    collector: &Collector,
    extra: &[&str],
) -> WaypointProc {
    let endpoint = collector.endpoint();
    let mut flags = vec!["--otlp-endpoint", endpoint.as_str()];
    flags.extend_from_slice(extra);
    // Export every 50 ms instead of every 5 s, so the test does not wait.
    let env = [("OTEL_BSP_SCHEDULE_DELAY", "50")];
    WaypointProc::start_with_env(world.dir(), &certs.waypoint_dir, &flags, &env).await
}

/// The trace header the backend received, as the echo reports it.
fn seen(body: &[u8], header: &str) -> String {
    let echoed: serde_json::Value = serde_json::from_slice(body).unwrap();
    echoed["headers"][header]
        .as_str()
        .unwrap_or_else(|| panic!("backend saw no {header}: {echoed}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_is_one_server_span_with_a_client_span_per_try() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let collector = Collector::start().await;
    let wp = traced(&world, &certs, &collector, &[]).await;
    // Istio's default retry policy retries a 503 once it arrives.
    world.backends["productpage-v2"].fail_next(1, 503);
    let mut t = tunnel(&wp, &certs, PRODUCTPAGE_VIP).await;
    let parent = format!("00-{TRACE}-{PARENT}-01");
    let r = t
        .get(
            "http://productpage:9080/reviews",
            &headers(&[
                ("version", "v2"),
                ("traceparent", &parent),
                ("tracestate", "vendor=x"),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let upstream = seen(&r.body, "traceparent");
    assert_eq!(seen(&r.body, "tracestate"), "vendor=x");

    let spans = collector.wait_for_trace(TRACE, 3).await;
    let server: Vec<&Received> = spans.iter().filter(|s| s.span.kind == SERVER).collect();
    let mut tries: Vec<&Received> = spans.iter().filter(|s| s.span.kind == CLIENT).collect();
    assert_eq!((server.len(), tries.len()), (1, 2), "{spans:#?}");
    let server = server[0];
    assert_eq!(
        server.parent_id(),
        PARENT,
        "the caller's span is the parent"
    );
    assert_eq!(server.service, "productpage-waypoint.default");
    assert_eq!(
        server.span.name,
        "productpage.default.svc.cluster.local:9080/*"
    );
    let attr = |s: &Received, k: &str| s.attr(k).unwrap_or_else(|| panic!("no {k}: {s:#?}"));
    assert_eq!(attr(server, "http.request.method"), "GET");
    assert_eq!(attr(server, "url.path"), "/reviews");
    assert_eq!(attr(server, "http.response.status_code"), "200");
    assert_eq!(attr(server, "response_flags"), "-");
    assert_eq!(
        attr(server, "upstream_cluster"),
        "outbound|9080|v2|productpage.default.svc.cluster.local"
    );
    assert_eq!(
        attr(server, "source.principal"),
        "spiffe://cluster.local/ns/default/sa/sleep"
    );
    assert!(server.attr("guid:x-request-id").is_some(), "{server:#?}");

    tries.sort_by_key(|s| s.span.start_time_unix_nano);
    for t in &tries {
        assert_eq!(
            t.parent_id(),
            server.span_id(),
            "tries are children of the request"
        );
        assert_eq!(
            t.span.name,
            "router outbound|9080|v2|productpage.default.svc.cluster.local egress"
        );
    }
    assert_eq!(attr(tries[0], "http.response.status_code"), "503");
    assert_eq!(attr(tries[0], "error.type"), "503");
    assert_eq!(tries[0].attr("http.request.resend_count"), None);
    assert_eq!(attr(tries[1], "http.response.status_code"), "200");
    assert_eq!(attr(tries[1], "http.request.resend_count"), "1");
    assert_eq!(
        attr(tries[1], "destination.principal"),
        "spiffe://cluster.local/ns/default/sa/productpage"
    );
    assert_eq!(
        upstream,
        format!("00-{TRACE}-{}-01", tries[1].span_id()),
        "the backend's parent is the try that reached it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_keeps_the_callers_decision_and_b3_callers_get_b3() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let collector = Collector::start().await;
    let wp = traced(&world, &certs, &collector, &["--trace-sampling", "0"]).await;
    let mut t = tunnel(&wp, &certs, PRODUCTPAGE_VIP).await;
    let v2 = ("version", "v2");

    // A new trace: sampled at ratio 0, so nothing is exported, yet the backend
    // still gets a context to continue.
    let r = t
        .get("http://productpage:9080/", &headers(&[v2]))
        .await
        .unwrap();
    let root = seen(&r.body, "traceparent");
    assert!(root.ends_with("-00"), "not sampled: {root}");
    let root_trace = root.split('-').nth(1).unwrap().to_string();

    // The caller decided not to sample: the decision and the trace id carry on.
    let unsampled = format!("00-{TRACE}-{PARENT}-00");
    let r = t
        .get(
            "http://productpage:9080/",
            &headers(&[v2, ("traceparent", &unsampled)]),
        )
        .await
        .unwrap();
    let passed = seen(&r.body, "traceparent");
    assert!(
        passed.starts_with(&format!("00-{TRACE}-")) && passed.ends_with("-00"),
        "{passed}"
    );

    // A B3 caller that sampled: exported despite ratio 0, answered in B3 and W3C.
    let b3_trace = "80f198ee56343ba864fe8b2a57d3eff7";
    let r = t
        .get(
            "http://productpage:9080/",
            &headers(&[
                v2,
                ("x-b3-traceid", b3_trace),
                ("x-b3-spanid", "e457b5a2e4d86bd1"),
                ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
                ("x-b3-sampled", "1"),
            ]),
        )
        .await
        .unwrap();
    let spans = collector.wait_for_trace(b3_trace, 2).await;
    let server = spans.iter().find(|s| s.span.kind == SERVER).unwrap();
    let client = spans.iter().find(|s| s.span.kind == CLIENT).unwrap();
    assert_eq!(server.parent_id(), "e457b5a2e4d86bd1");
    assert_eq!(client.parent_id(), server.span_id());
    assert_eq!(seen(&r.body, "x-b3-traceid"), b3_trace);
    assert_eq!(seen(&r.body, "x-b3-spanid"), client.span_id());
    assert_eq!(seen(&r.body, "x-b3-sampled"), "1");
    assert_eq!(
        seen(&r.body, "traceparent"),
        format!("00-{b3_trace}-{}-01", client.span_id())
    );
    let echoed: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(
        echoed["headers"]["x-b3-parentspanid"].is_null(),
        "stale parent id removed"
    );

    // Spans leave in order: the unsampled requests came first and sent nothing.
    let exported: Vec<String> = collector.spans().iter().map(|s| s.trace_id()).collect();
    assert!(!exported.contains(&root_trace), "{exported:?}");
    assert!(!exported.iter().any(|t| t == TRACE), "{exported:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_exporter_trace_headers_pass_through_untouched() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let mut t = tunnel(&wp, &certs, PRODUCTPAGE_VIP).await;
    let parent = format!("00-{TRACE}-{PARENT}-01");
    let r = t
        .get(
            "http://productpage:9080/",
            &headers(&[("version", "v2"), ("traceparent", &parent)]),
        )
        .await
        .unwrap();
    assert_eq!(seen(&r.body, "traceparent"), parent);
    let echoed: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(echoed["headers"]["x-b3-traceid"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_still_queued_at_sigterm_are_sent_before_exit() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let collector = Collector::start().await;
    // The SDK's default 5 s export delay: the span is still queued at SIGTERM.
    let endpoint = collector.endpoint();
    let flags = ["--otlp-endpoint", endpoint.as_str(), "--drain-period", "1"];
    let mut wp = WaypointProc::start_with(world.dir(), &certs.waypoint_dir, &flags).await;
    let mut t = tunnel(&wp, &certs, PRODUCTPAGE_VIP).await;
    let parent = format!("00-{TRACE}-{PARENT}-01");
    let r = t
        .get(
            "http://productpage:9080/",
            &headers(&[("traceparent", &parent)]),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    drop(t);
    wp.signal_term();
    assert!(
        wp.wait_exit(Duration::from_secs(10)).success(),
        "{}",
        wp.logs()
    );
    let spans = collector.spans();
    assert_eq!(
        spans.iter().filter(|s| s.trace_id() == TRACE).count(),
        2,
        "{spans:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_requests_nothing() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let nowhere = format!("http://{}", crate::common::proc::free_addr());
    let flags = ["--otlp-endpoint", nowhere.as_str(), "--drain-period", "1"];
    let env = [("OTEL_BSP_SCHEDULE_DELAY", "50")];
    let mut wp = WaypointProc::start_with_env(world.dir(), &certs.waypoint_dir, &flags, &env).await;
    let mut t = tunnel(&wp, &certs, PRODUCTPAGE_VIP).await;
    for _ in 0..20 {
        let r = t.get("http://productpage:9080/", &[]).await.unwrap();
        assert_eq!(r.status, 200);
    }
    drop(t);
    wp.signal_term();
    assert!(
        wp.wait_exit(Duration::from_secs(15)).success(),
        "{}",
        wp.logs()
    );
}
