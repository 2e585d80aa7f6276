//! Fault injection, timeouts and retries from a VirtualService, through the real
//! proxy against echo backends told to misbehave.

use crate::common::world::Pod;
use crate::common::{h, tunnel, Certs, WaypointProc, World};
use std::time::{Duration, Instant};
use waypoint::client::Tunnel;

const VIP: &str = "10.96.0.40:9080";

const ROUTES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec:
  clusterIP: 10.96.0.40
  ports: [{name: http, port: 9080, targetPort: http}]
  selector: {app: ratings}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /abort-all}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: ratings}}]
  - match: [{uri: {prefix: /abort-some}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 25}}}
    retries: {attempts: 0}
    route: [{destination: {host: ratings}}]
  - match: [{uri: {prefix: /delay}}]
    fault: {delay: {fixedDelay: 300ms}}
    route: [{destination: {host: ratings}}]
  - match: [{uri: {prefix: /retry5xx}}]
    retries: {attempts: 3, retryOn: 5xx}
    route: [{destination: {host: ratings}}]
  - match: [{uri: {prefix: /noretry}}]
    retries: {attempts: 0}
    route: [{destination: {host: ratings}}]
  - match: [{uri: {prefix: /pertry}}]
    retries: {attempts: 1, perTryTimeout: 200ms, retryOn: 5xx}
    route: [{destination: {host: ratings}}]
  - match: [{uri: {prefix: /timeout}}]
    timeout: 300ms
    retries: {attempts: 0}
    route: [{destination: {host: ratings}}]
  - match: [{uri: {prefix: /reset}}]
    retries: {attempts: 2, retryOn: reset}
    route: [{destination: {host: ratings}}]
  - route: [{destination: {host: ratings}}]
"#;

async fn start() -> (World, Certs, WaypointProc, Tunnel) {
    let world = World::new(
        &[
            Pod("ratings-a", "ratings", "v1"),
            Pod("ratings-b", "ratings", "v1"),
        ],
        ROUTES,
    )
    .await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let t = tunnel(&wp, &certs, VIP).await;
    (world, certs, wp, t)
}

fn total(world: &World) -> u64 {
    world.requests("ratings-a") + world.requests("ratings-b")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_abort_answers_without_touching_the_upstream() {
    let (world, _certs, wp, mut t) = start().await;
    for _ in 0..20 {
        let r = t.get("http://ratings/abort-all", &[]).await.unwrap();
        assert_eq!(r.status, 418);
    }
    assert!(
        wp.log_contains("/abort-all 418 VirtualService default/ratings http[0] flag=FI")
            .await
    );
    assert_eq!(total(&world), 0);

    const N: usize = 2000;
    let mut aborted = 0;
    for _ in 0..N {
        match t
            .get("http://ratings/abort-some", &[])
            .await
            .unwrap()
            .status
            .as_u16()
        {
            503 => aborted += 1,
            200 => {}
            other => panic!("unexpected {other}"),
        }
    }
    // Binomial(2000, 0.25): mean 500, sd 19.4; ±5 sd.
    assert!((403..=597).contains(&aborted), "{aborted} of {N} aborted");
    assert_eq!(
        total(&world) as usize,
        N - aborted,
        "aborted requests reached a backend"
    );
    // Other routes are untouched by the fault.
    assert_eq!(
        t.get("http://ratings/other", &[]).await.unwrap().status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_delay_holds_the_request_then_forwards_it() {
    let (world, _certs, _wp, mut t) = start().await;
    let start = Instant::now();
    let r = t.get("http://ratings/delay", &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(total(&world), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_route_policy_and_istios_default() {
    let (world, _certs, wp, mut t) = start().await;
    let fail = |s: &str| h("x-echo-status", s);

    let r = t
        .get("http://ratings/retry5xx", &fail("500"))
        .await
        .unwrap();
    assert_eq!(
        r.status, 500,
        "the last answer passes through when tries run out"
    );
    assert_eq!(total(&world), 4, "1 try + 3 retries");
    let line = "/retry5xx 500 VirtualService default/ratings http[3] flag=URX";
    assert!(wp.log_contains(line).await, "{}", wp.logs());
    assert!(
        world.requests("ratings-a") >= 1 && world.requests("ratings-b") >= 1,
        "retries go to other endpoints"
    );

    // (route, backend status, tries the backend sees). No `retries` on /default:
    // Istio's default, 2 retries on 503 but not on 500.
    for (path, status, tries) in [
        ("noretry", "500", 1),
        ("default", "503", 3),
        ("default", "500", 1),
    ] {
        let before = total(&world);
        let r = t
            .get(&format!("http://ratings/{path}"), &fail(status))
            .await
            .unwrap();
        assert_eq!(r.status.as_str(), status, "/{path}");
        assert_eq!(total(&world) - before, tries, "/{path} answering {status}");
    }

    // A backend that recovers: the client only sees the success.
    for pod in world.backends.values() {
        pod.fail_next(1, 503);
    }
    let before = total(&world);
    let r = t
        .send(
            http::Method::POST,
            "http://ratings/retry5xx",
            &[],
            bytes::Bytes::from_static(b"replayed body"),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let echoed: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        echoed["body_bytes"], 13,
        "the retried request carried its body"
    );
    assert!((2..=3).contains(&(total(&world) - before)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_beyond_the_replay_buffer_are_not_retried() {
    let (world, _certs, _wp, mut t) = start().await;
    // Pingora keeps at most 64 KiB of a request body for replay.
    let big = bytes::Bytes::from(vec![b'x'; 100 * 1024]);
    let r = t
        .send(
            http::Method::POST,
            "http://ratings/retry5xx",
            &h("x-echo-status", "500"),
            big,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 500);
    assert_eq!(
        total(&world),
        1,
        "a body that could not be kept is sent once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_try_and_route_timeouts_answer_504() {
    let (world, certs, wp, mut t) = start().await;
    let hang = h("x-echo-delay-ms", "3000");

    let start = Instant::now();
    let r = t.get("http://ratings/pertry", &hang).await.unwrap();
    assert_eq!(r.status, 504);
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "waited {:?}",
        start.elapsed()
    );
    assert_eq!(total(&world), 2, "each try timed out: 1 try + 1 retry");
    assert_eq!(r.header("connection"), Some("close"));

    // Pingora closes the client connection after an upstream failure: a new tunnel.
    let mut t = tunnel(&wp, &certs, VIP).await;
    let start = Instant::now();
    let r = t.get("http://ratings/timeout", &hang).await.unwrap();
    assert_eq!(r.status, 504);
    assert_eq!(r.text(), "upstream request timeout\n");
    assert!(
        wp.log_contains("/timeout 504 VirtualService default/ratings http[6] flag=UT")
            .await,
        "{}",
        wp.logs()
    );
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "waited {:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_are_retried_under_reset() {
    let (world, _certs, _wp, mut t) = start().await;
    let r = t
        .get("http://ratings/reset", &h("x-echo-reset", "1"))
        .await
        .unwrap();
    assert_eq!(r.status, 503);
    assert!(r.text().contains("connection termination"), "{}", r.text());
    assert_eq!(total(&world), 3, "1 try + 2 retries");
}

const GAMMA: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: details, namespace: default}
spec:
  clusterIP: 10.96.0.41
  ports: [{name: http, port: 9080, targetPort: http}]
  selector: {app: details}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: details, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: details}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /slow}}]
    timeouts: {request: 400ms}
    backendRefs: [{name: details, port: 9080}]
  - retry: {codes: [500], attempts: 2, backoff: 10ms}
    backendRefs: [{name: details, port: 9080}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_retry_and_timeouts_apply() {
    let world = World::new(&[Pod("details-1", "details", "v1")], GAMMA).await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let mut t = tunnel(&wp, &certs, "10.96.0.41:9080").await;
    world.backends["details-1"].fail_next(2, 500);
    assert_eq!(t.get("http://details/", &[]).await.unwrap().status, 200);
    assert_eq!(world.requests("details-1"), 3, "retried twice on 500");
    let r = t
        .get("http://details/slow", &h("x-echo-delay-ms", "3000"))
        .await
        .unwrap();
    assert_eq!(r.status, 504);
}
