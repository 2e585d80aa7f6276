use super::*;
use crate::testing::{path_prefix, route, to, with_header, SnapshotBuilder};
use http::{HeaderMap, Method, Uri};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use waypoint_ir::{BackendRef, PathModifier, Redirect, RequestMatch};

fn ip(last: u8) -> IpAddr {
    Ipv4Addr::new(10, 0, 0, last).into()
}

/// reviews (VIP .100:9080) with two pods and subsets v1/v2, and a route table:
/// 0 `/redirect` → 301, 1 `/static` → 418 direct, 2 `/zero` → all weights 0,
/// 3 `/bad` → invalid backend, 4 `/ratings` on port 9081 only, 5 header
/// `x-canary: true` or `/v2` → subset v2 on port 8000, 6 catch-all 90/10 v1/v2.
fn world() -> (Snapshot, ServiceIdx, ServiceIdx) {
    let (b, reviews, ratings) = world_builder();
    (b.build(), reviews, ratings)
}

fn world_builder() -> (SnapshotBuilder, ServiceIdx, ServiceIdx) {
    let mut b = SnapshotBuilder::new();
    let reviews = b.service("reviews", ip(100), 9080);
    let ratings = b.service("ratings", ip(101), 9080);
    b.endpoint(reviews, ip(1), 8080, &[("version", "v1")]);
    b.endpoint(reviews, ip(2), 8080, &[("version", "v2")]);
    let v1 = b.subset(reviews, "v1", &[("version", "v1")]);
    let v2 = b.subset(reviews, "v2", &[("version", "v2")]);
    let redirect = Redirect {
        scheme: None,
        hostname: Some("elsewhere".into()),
        path: Some(PathModifier::ReplacePrefixMatch("/new".into())),
        port: None,
        status: 301,
    };
    b.route(
        reviews,
        route(
            "redirect",
            vec![path_prefix("/redirect")],
            RouteAction::Redirect(Box::new(redirect)),
        ),
    );
    b.route(
        reviews,
        route(
            "static",
            vec![path_prefix("/static")],
            RouteAction::DirectResponse {
                status: 418,
                body: Some("teapot".into()),
            },
        ),
    );
    b.route(
        reviews,
        route(
            "zero",
            vec![path_prefix("/zero")],
            RouteAction::Forward(vec![to(reviews, None, 0)]),
        ),
    );
    let invalid = BackendRef::new(
        BackendTarget::Invalid {
            status: 500,
            reason: "service default/nope not found".into(),
        },
        1,
    );
    b.route(
        reviews,
        route(
            "bad",
            vec![path_prefix("/bad")],
            RouteAction::Forward(vec![invalid]),
        ),
    );
    let mut other_port = route(
        "port",
        vec![path_prefix("/ratings")],
        RouteAction::Forward(vec![to(ratings, None, 1)]),
    );
    other_port.port = Some(9081);
    b.route(reviews, other_port);
    let mut canary = to(reviews, Some(v2), 1);
    canary.target = BackendTarget::Service {
        service: reviews,
        port: Some(8000),
        subset: Some(v2),
    };
    b.route(
        reviews,
        route(
            "canary",
            vec![
                with_header(RequestMatch::default(), "x-canary", "true"),
                path_prefix("/v2"),
            ],
            RouteAction::Forward(vec![canary]),
        ),
    );
    b.route(
        reviews,
        route(
            "split",
            vec![],
            RouteAction::Forward(vec![to(reviews, Some(v1), 90), to(reviews, Some(v2), 10)]),
        ),
    );
    b.route(
        ratings,
        route(
            "only-api",
            vec![path_prefix("/api")],
            RouteAction::Forward(vec![to(ratings, None, 1)]),
        ),
    );
    (b, reviews, ratings)
}

struct Req {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

fn req(uri: &str, headers: &[(&'static str, &'static str)]) -> Req {
    let mut h = HeaderMap::new();
    h.insert("host", "reviews".parse().unwrap());
    for (k, v) in headers {
        h.append(*k, v.parse().unwrap());
    }
    Req {
        method: Method::GET,
        uri: uri.parse().unwrap(),
        headers: h,
    }
}

fn run<'a>(snap: &'a Snapshot, target: Target, r: &Req) -> Decision<'a> {
    let port = match target {
        Target::Service { port, .. } | Target::Workload { port, .. } => port,
    };
    let view = RequestView::new(&r.method, &r.uri, &r.headers, port);
    decide(snap, target, &view, &mut StdRng::seed_from_u64(1))
}

fn vip(snap: &Snapshot, last: u8) -> Target {
    snap.resolve_target(SocketAddr::new(ip(last), 9080))
        .unwrap()
}

fn reply(d: Decision<'_>) -> LocalReply {
    match d {
        Decision::Reply(r) => r,
        Decision::Forward(f) => panic!("expected a reply, got {f:?}"),
    }
}

fn forward(d: Decision<'_>) -> ForwardDecision<'_> {
    match d {
        Decision::Forward(f) => f,
        Decision::Reply(r) => panic!("expected a forward, got {r:?}"),
    }
}

#[test]
fn no_matching_route_is_404_nr() {
    let (snap, _, _) = world();
    let r = reply(run(&snap, vip(&snap, 101), &req("/other", &[])));
    assert_eq!(
        (r.status, r.flag, r.body.as_str()),
        (404, ResponseFlag::NoRouteFound, "")
    );
}

#[test]
fn redirect_answers_with_location() {
    let (snap, _, _) = world();
    let r = reply(run(&snap, vip(&snap, 100), &req("/redirect/x?a=1", &[])));
    assert_eq!(r.status, 301);
    assert_eq!(r.flag, ResponseFlag::None);
    assert_eq!(
        r.headers,
        vec![(
            "location".to_string(),
            "http://elsewhere/new/x?a=1".to_string()
        )]
    );
}

#[test]
fn direct_response_uses_status_and_body() {
    let (snap, _, _) = world();
    let r = reply(run(&snap, vip(&snap, 100), &req("/static", &[])));
    assert_eq!((r.status, r.body.as_str()), (418, "teapot"));
}

#[test]
fn all_zero_weights_and_invalid_backends_answer_locally() {
    let (snap, _, _) = world();
    let r = reply(run(&snap, vip(&snap, 100), &req("/zero", &[])));
    assert_eq!((r.status, r.flag), (500, ResponseFlag::NoClusterFound));
    let r = reply(run(&snap, vip(&snap, 100), &req("/bad/thing", &[])));
    assert_eq!((r.status, r.flag), (500, ResponseFlag::NoClusterFound));
    assert!(
        r.body.contains("service default/nope not found"),
        "{}",
        r.body
    );
}

#[test]
fn route_port_restricts_the_route() {
    let (snap, reviews, _) = world();
    // On 9080 the port-9081 route is skipped; the catch-all split takes it.
    let f = forward(run(&snap, vip(&snap, 100), &req("/ratings", &[])));
    assert_eq!(f.route.name, "split");
    let on_9081 = Target::Service {
        service: reviews,
        port: 9081,
    };
    let f = forward(run(&snap, on_9081, &req("/ratings", &[])));
    assert_eq!((f.route.name.as_str(), f.port), ("port", 9081));
}

#[test]
fn forward_reports_the_match_index_and_resolved_port() {
    let (snap, reviews, _) = world();
    let f = forward(run(&snap, vip(&snap, 100), &req("/v2/x", &[])));
    assert_eq!((f.route.name.as_str(), f.matched), ("canary", Some(1)));
    assert_eq!(
        (f.service, f.port, f.subset, f.pinned),
        (reviews, 8000, Some(1), None)
    );
    let f = forward(run(
        &snap,
        vip(&snap, 100),
        &req("/", &[("x-canary", "true")]),
    ));
    assert_eq!((f.route.name.as_str(), f.matched), ("canary", Some(0)));
    // The catch-all has no matches; its backends name no port: the request's.
    let f = forward(run(
        &snap,
        vip(&snap, 100),
        &req("/", &[("x-canary", "false")]),
    ));
    assert_eq!(
        (f.route.name.as_str(), f.matched, f.port),
        ("split", None, 9080)
    );
    assert_eq!(f.route_owner, reviews);
}

#[test]
fn split_route_follows_weights_across_requests() {
    let (snap, _, _) = world();
    let r = req("/", &[]);
    let view = RequestView::new(&r.method, &r.uri, &r.headers, 9080);
    let mut rng = StdRng::seed_from_u64(42);
    let v1 = (0..2_000)
        .filter(|_| forward(decide(&snap, vip(&snap, 100), &view, &mut rng)).subset == Some(0))
        .count();
    assert!((1_700..=1_900).contains(&v1), "{v1}");
}

#[test]
fn workload_target_pins_the_endpoint_under_the_service_routes() {
    let (snap, reviews, _) = world();
    let target = snap.resolve_target(SocketAddr::new(ip(2), 8080)).unwrap();
    assert_eq!(
        target,
        Target::Workload {
            service: reviews,
            port: 9080,
            endpoint: EndpointIdx(1)
        }
    );
    let f = forward(run(&snap, target, &req("/", &[])));
    assert_eq!(
        (f.route.name.as_str(), f.service, f.port, f.subset),
        ("split", reviews, 9080, None)
    );
    assert_eq!(f.pinned, Some(EndpointIdx(1)));
    // Routes still apply: a redirect route still redirects.
    let r = reply(run(&snap, target, &req("/redirect", &[])));
    assert_eq!(r.status, 301);
}

#[test]
fn consumer_routes_serve_only_their_namespace() {
    let (mut b, reviews, ratings) = world_builder();
    let mine = route(
        "mine",
        vec![path_prefix("/mine")],
        RouteAction::Forward(vec![to(ratings, None, 1)]),
    );
    b.consumer(reviews, "consumer", vec![mine]);
    let snap = b.build();
    let decide_as = |path: &str, ns: Option<&str>| {
        let r = req(path, &[]);
        let view = RequestView::new(&r.method, &r.uri, &r.headers, 9080).with_source_namespace(ns);
        let d = decide(&snap, vip(&snap, 100), &view, &mut StdRng::seed_from_u64(1));
        match d {
            Decision::Forward(f) => (f.route.name.clone(), f.service),
            Decision::Reply(r) => (r.status.to_string(), ServiceIdx(usize::MAX)),
        }
    };
    assert_eq!(
        decide_as("/mine", Some("consumer")),
        ("mine".into(), ratings)
    );
    // The consumer's table replaces the producer's: its 404 does not fall through.
    assert_eq!(decide_as("/", Some("consumer")).0, "404");
    for other in [None, Some("default"), Some("elsewhere")] {
        assert_eq!(
            decide_as("/mine", other),
            ("split".into(), reviews),
            "{other:?}"
        );
    }
}

#[test]
fn backend_filters_come_with_the_picked_backend() {
    let mut b = SnapshotBuilder::new();
    let reviews = b.service("reviews", ip(100), 9080);
    let mut edited = to(reviews, None, 1);
    edited.filters = Some(Box::new(waypoint_ir::BackendFilters {
        request_headers: waypoint_ir::HeaderModifier {
            set: vec![("x-backend".into(), "a".into())],
            ..Default::default()
        },
        ..Default::default()
    }));
    let mut redirecting = to(reviews, None, 1);
    redirecting.filters = Some(Box::new(waypoint_ir::BackendFilters {
        redirect: Some(Redirect {
            scheme: None,
            hostname: Some("elsewhere".into()),
            path: None,
            port: None,
            status: 307,
        }),
        ..Default::default()
    }));
    let split = RouteAction::Forward(vec![to(reviews, None, 1), edited, redirecting]);
    b.route(reviews, route("split", vec![], split));
    let snap = b.build();
    let r = req("/x", &[]);
    let view = RequestView::new(&r.method, &r.uri, &r.headers, 9080);
    let mut rng = StdRng::seed_from_u64(3);
    let mut seen = [0usize; 3];
    for _ in 0..300 {
        match decide(&snap, vip(&snap, 100), &view, &mut rng) {
            Decision::Forward(f) if f.backend == Some(0) => {
                assert!(f.backend_filters().is_none());
                seen[0] += 1;
            }
            Decision::Forward(f) => {
                assert_eq!(f.backend, Some(1));
                let set = &f.backend_filters().unwrap().request_headers.set;
                assert_eq!(set[0].0, "x-backend");
                seen[1] += 1;
            }
            Decision::Reply(r) => {
                assert_eq!(r.status, 307);
                assert_eq!(r.headers[0].1, "http://elsewhere/x");
                seen[2] += 1;
            }
        }
    }
    assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
}
