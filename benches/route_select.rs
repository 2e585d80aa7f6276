//! Per-request cost of the routing decision at mesh scale: resolve the HBONE
//! target (`Snapshot::resolve_target`) and run `waypoint_filters::decide`, for
//! snapshots of 10, 1,000 and 10,000 services. Both are a hash lookup plus a walk
//! of one service's route table, so the cost should not grow with the mesh.
//! See benches/README.md.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use waypoint_filters::testing::{path_prefix, route, to, with_header, SnapshotBuilder};
use waypoint_filters::{decide, Decision, RequestView};
use waypoint_ir::{RequestMatch, RouteAction, Snapshot};

const PORT: u16 = 9080;

fn addr(net: u8, i: u32) -> IpAddr {
    let [_, _, c, d] = i.to_be_bytes();
    let b = (i >> 16) as u8;
    Ipv4Addr::new(10, net.wrapping_add(b), c, d).into()
}

/// `n` services, each with a VIP, 3 endpoints, subsets v1/v2, and five routes in
/// VirtualService order: canary header → v2, `/api/v2` → v2, `/api/admin` with
/// `x-user: admin` → v1, `/static` → v1, then a 90/10 v1/v2 split for the rest.
fn world(n: u32) -> (Snapshot, Vec<SocketAddr>) {
    let mut b = SnapshotBuilder::new();
    let mut vips = Vec::with_capacity(n as usize);
    for i in 0..n {
        let vip = addr(96, i);
        let svc = b.service(&format!("svc-{i}"), vip, PORT);
        for k in 0..3 {
            let version = if k < 2 { "v1" } else { "v2" };
            b.endpoint(svc, addr(0, i * 3 + k), 8080, &[("version", version)]);
        }
        let v1 = b.subset(svc, "v1", &[("version", "v1")]);
        let v2 = b.subset(svc, "v2", &[("version", "v2")]);
        let fwd = |subset, weight| RouteAction::Forward(vec![to(svc, Some(subset), weight)]);
        let canary = with_header(RequestMatch::default(), "x-canary", "true");
        b.route(svc, route("canary", vec![canary], fwd(v2, 1)));
        b.route(
            svc,
            route("api-v2", vec![path_prefix("/api/v2")], fwd(v2, 1)),
        );
        let admin = with_header(path_prefix("/api/admin"), "x-user", "admin");
        b.route(svc, route("admin", vec![admin], fwd(v1, 1)));
        b.route(
            svc,
            route("static", vec![path_prefix("/static")], fwd(v1, 1)),
        );
        let split = vec![to(svc, Some(v1), 90), to(svc, Some(v2), 10)];
        b.route(svc, route("split", vec![], RouteAction::Forward(split)));
        vips.push(SocketAddr::new(vip, PORT));
    }
    // Visit services in a random order so large sizes pay their cache misses.
    vips.shuffle(&mut StdRng::seed_from_u64(3));
    (b.build(), vips)
}

fn request_headers() -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in [
        ("host", "svc-1.default.svc.cluster.local:9080"),
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
        ("x-request-id", "6b1c2f7e-6f1a-4c0e-9a55-3e0b6f0f2c11"),
        ("x-user", "jason"),
    ] {
        h.insert(k, v.parse().unwrap());
    }
    h
}

/// One `resolve_target` + `decide` per iteration, cycling through `visit`.
fn bench_decisions(
    c: &mut Criterion,
    group: &str,
    visit: impl Fn(&[SocketAddr]) -> Vec<SocketAddr>,
) {
    let mut group = c.benchmark_group(group);
    let method = http::Method::GET;
    // Falls through four routes to the split: the most work a request does here.
    let uri: http::Uri = "/productpage?u=normal".parse().unwrap();
    let headers = request_headers();
    for n in [10u32, 1_000, 10_000] {
        let (snapshot, vips) = world(n);
        let visit = visit(&vips);
        let mut rng = StdRng::seed_from_u64(1);
        let mut next = 0usize;
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                let vip = visit[next % visit.len()];
                next = next.wrapping_add(1);
                let target = snapshot.resolve_target(black_box(vip)).unwrap();
                let view = RequestView::new(&method, &uri, &headers, PORT);
                match black_box(decide(&snapshot, target, &view, &mut rng)) {
                    Decision::Forward(f) => black_box(f.subset),
                    Decision::Reply(r) => panic!("unexpected local reply {r:?}"),
                };
            })
        });
    }
    group.finish();
}

/// The algorithmic cost: requests go to 10 services spread over the snapshot
/// (their data stays in cache), so only the snapshot's size varies.
fn route_select(c: &mut Criterion) {
    bench_decisions(c, "route_select", |vips| {
        vips.iter().take(10).copied().collect()
    });
}

/// The memory-bound cost: every request goes to a different service, in random
/// order over all of them, so a large snapshot pays cache misses on each one.
fn route_select_spread(c: &mut Criterion) {
    bench_decisions(c, "route_select_spread", |vips| vips.to_vec());
}

criterion_group!(benches, route_select, route_select_spread);
criterion_main!(benches);
