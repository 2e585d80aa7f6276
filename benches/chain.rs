//! Per-request cost of the filter chain's decisions, with every resilience filter
//! configured versus none, and the rate limiter under contention from two threads.
//! See benches/README.md.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use waypoint_filters::ratelimit::RateLimiters;
use waypoint_filters::retry::{should_retry, TryOutcome};
use waypoint_filters::testing::{route, to, with_header, SnapshotBuilder};
use waypoint_filters::{decide, fault, Decision, RequestView};
use waypoint_ir::{
    ClientSelector, Fault, Percent, RateLimit, RequestMatch, RetryPolicy, RouteAction, RoutePolicy,
    Snapshot,
};

const VIP: &str = "10.96.0.10:9080";

/// One service, a header route then a 90/10 split; `policy` on both routes.
fn world(policy: RoutePolicy) -> Snapshot {
    let mut b = SnapshotBuilder::new();
    let vip: SocketAddr = VIP.parse().unwrap();
    let svc = b.service("productpage", vip.ip(), vip.port());
    for k in 0..3 {
        let v = if k < 2 { "v1" } else { "v2" };
        b.endpoint(
            svc,
            format!("10.0.0.{k}").parse().unwrap(),
            9080,
            &[("version", v)],
        );
    }
    let v1 = b.subset(svc, "v1", &[("version", "v1")]);
    let v2 = b.subset(svc, "v2", &[("version", "v2")]);
    let mut header = route(
        "v2",
        vec![with_header(RequestMatch::default(), "version", "v2")],
        RouteAction::Forward(vec![to(svc, Some(v2), 1)]),
    );
    header.policy = policy.clone().into();
    let mut split = route(
        "split",
        vec![],
        RouteAction::Forward(vec![to(svc, Some(v1), 90), to(svc, Some(v2), 10)]),
    );
    split.policy = policy.into();
    b.route(svc, header);
    b.route(svc, split);
    b.build()
}

fn everything() -> RoutePolicy {
    RoutePolicy {
        timeout: Some(Duration::from_secs(5)),
        retry: RetryPolicy {
            attempts: 3,
            ..RetryPolicy::default()
        },
        // Configured, but drawing "no fault": the cost of the draw, not of a sleep.
        fault: Some(Fault {
            delay: Some((Duration::from_millis(100), Percent::new(0.0).unwrap())),
            abort: Some((waypoint_ir::Abort::Http(503), Percent::new(0.0).unwrap())),
        }),
        rate_limits: vec![RateLimit {
            name: "per-user".into(),
            requests: u32::MAX,
            unit: Duration::from_secs(1),
            selectors: vec![ClientSelector::HeaderDistinct {
                name: "x-user".into(),
            }],
        }],
        attached: Vec::new(),
    }
}

/// What the proxy asks the filters for one request: route decision, rate limit,
/// fault draw, and the retry question for a 503.
fn one_request(s: &Snapshot, limiters: &RateLimiters, req: &RequestView<'_>, client: IpAddr) {
    let target = s.resolve_target(VIP.parse().unwrap()).unwrap();
    let mut rng = rand::rng();
    let Decision::Forward(fwd) = decide(s, target, req, &mut rng) else {
        unreachable!()
    };
    let policy = &fwd.route.policy;
    let route_idx = s
        .service(fwd.route_owner)
        .routes
        .iter()
        .position(|r| std::ptr::eq(r, fwd.route))
        .unwrap();
    black_box(limiters.check(
        fwd.route_owner,
        route_idx,
        &policy.rate_limits,
        req.headers,
        Some(client),
    ))
    .ok();
    if let Some(f) = &policy.fault {
        let _ = black_box(fault::decide(f, &mut rng));
    }
    black_box(should_retry(&policy.retry, TryOutcome::Status(503), 0));
}

fn chain(c: &mut Criterion) {
    let method = http::Method::GET;
    let uri: http::Uri = "/productpage".parse().unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("x-user", "alice".parse().unwrap());
    headers.insert("host", "productpage:9080".parse().unwrap());
    let req = RequestView::new(&method, &uri, &headers, 9080);
    let client: IpAddr = "10.1.2.3".parse().unwrap();
    let mut group = c.benchmark_group("chain");
    for (name, policy) in [
        (
            "none",
            RoutePolicy {
                retry: RetryPolicy::disabled(),
                ..RoutePolicy::default()
            },
        ),
        ("all", everything()),
    ] {
        let s = world(policy);
        let limiters = RateLimiters::build(&s);
        group.bench_function(name, |b| {
            b.iter(|| one_request(&s, &limiters, &req, client))
        });
    }
    group.finish();
}

/// Two threads checking the same bucket: the cost of the shared state.
fn contention(c: &mut Criterion) {
    let s = world(everything());
    let limiters = Arc::new(RateLimiters::build(&s));
    let rules = s.services[0].routes[1].policy.rate_limits.clone();
    let mut headers = http::HeaderMap::new();
    headers.insert("x-user", "alice".parse().unwrap());
    let headers = Arc::new(headers);
    let mut group = c.benchmark_group("ratelimit");
    for threads in [1usize, 2] {
        group.bench_function(format!("same_key_{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                let per = iters / threads as u64 + 1;
                let start = Instant::now();
                std::thread::scope(|scope| {
                    for _ in 0..threads {
                        let (l, r, h) = (limiters.clone(), rules.clone(), headers.clone());
                        scope.spawn(move || {
                            for _ in 0..per {
                                black_box(l.check(waypoint_ir::ServiceIdx(0), 1, &r, &h, None))
                                    .ok();
                            }
                        });
                    }
                });
                // `iters` checks ran across the threads in this wall time, so the
                // figure is time per check at the combined throughput.
                start.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, chain, contention);
criterion_main!(benches);
