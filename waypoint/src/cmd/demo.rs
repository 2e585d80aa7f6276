//! `waypoint demo`: the bundled productpage example, end to end on loopback. It
//! writes the example manifests and a dev CA's certificates to a directory, starts
//! echo backends at the example's pod IPs, runs the waypoint, sends a burst through
//! HBONE with the built-in client and prints the split it observed. The access
//! log goes to a file in that directory, so the split and the commands to try
//! stay the last thing on the screen.

use super::CmdResult;
use crate::app::{Listeners, Waypoint};
use crate::client::Tunnel;
use crate::echo::Echo;
use crate::hbone::client::HboneClient;
use crate::identity::{load_cert_dir, DevCa, SpiffeId};
use crate::state::State;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use waypoint_ir::Snapshot;

/// The bundled example, embedded so the demo needs nothing on disk.
pub const EXAMPLE: &[(&str, &str)] = &[
    (
        "namespace.yaml",
        include_str!("../../../examples/productpage/namespace.yaml"),
    ),
    (
        "service.yaml",
        include_str!("../../../examples/productpage/service.yaml"),
    ),
    (
        "pods.yaml",
        include_str!("../../../examples/productpage/pods.yaml"),
    ),
    (
        "routing.yaml",
        include_str!("../../../examples/productpage/routing.yaml"),
    ),
];

#[derive(clap::Args)]
pub struct DemoArgs {
    #[arg(long, default_value = "127.0.0.1:15008")]
    pub hbone_addr: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:18080")]
    pub http_addr: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:15000")]
    pub admin_addr: SocketAddr,
    /// Requests in the burst without a `version` header.
    #[arg(long, default_value_t = 1000)]
    pub requests: usize,
    /// Exit after the burst instead of serving until Ctrl-C.
    #[arg(long)]
    pub once: bool,
    /// Where to write the example manifests and dev certificates.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

pub fn demo(args: DemoArgs) -> CmdResult {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("waypoint-demo"));
    let config_dir = dir.join("config");
    std::fs::create_dir_all(&config_dir)?;
    for (name, text) in EXAMPLE {
        std::fs::write(config_dir.join(name), text)?;
    }
    let opts = waypoint_config::Options::default();
    let loaded = waypoint_config::load_dir(&config_dir, &opts).map_err(|d| {
        let lines: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        format!("bundled example is invalid:\n{}", lines.join("\n"))
    })?;

    let ca = DevCa::new("waypoint demo CA")?;
    let waypoint_dir = dir.join("certs/waypoint");
    let client_dir = dir.join("certs/client");
    let td = &opts.trust_domain;
    ca.write_cert_dir(
        &waypoint_dir,
        &SpiffeId::new(td, "default", "productpage-waypoint"),
    )?;
    ca.write_cert_dir(&client_dir, &SpiffeId::new(td, "default", "sleep"))?;
    let access_log = dir.join("access.log");
    // This run's lines only.
    std::fs::write(&access_log, "")?;
    let identity = Arc::new(crate::identity::IdentityStore::load(waypoint_dir.clone())?);
    let waypoint_id = identity.bundle().id.clone();
    let client_certs = load_cert_dir(&client_dir)?;

    let rt = super::runtime(None)?;
    rt.block_on(async move {
        let backends = start_backends(&loaded.snapshot).await?;
        let (vip, host) = first_vip(&loaded.snapshot).ok_or("the example has no service VIP")?;
        let versions = pod_versions(&loaded.snapshot);
        let state = Arc::new(State::new(loaded.snapshot));
        let waypoint = Waypoint::start(
            // The echo pods have no ztunnel in front of them: plaintext upstream.
            Listeners {
                hbone_upstream_port: None,
                access_log_file: Some(access_log.clone()),
                ..Listeners::new(Some(args.hbone_addr), Some(args.http_addr), Some(args.admin_addr))
            },
            Some(identity),
            state,
        )
        .await?;
        println!("pingora-waypoint demo: the bundled productpage example");
        println!("  manifests  {}", config_dir.display());
        println!("  certs      {} (dev CA; waypoint identity {})", dir.join("certs").display(), waypoint_id);
        for b in &backends {
            println!("  backend    {:<18} {:<16} version={}", b.name, b.addr, versions.get(&b.name).map(String::as_str).unwrap_or("-"));
        }
        println!("  waypoint   hbone {}  http {}  admin {}", args.hbone_addr, args.http_addr, args.admin_addr);
        println!("  access log {} (one JSON line per request)", access_log.display());
        println!();

        let tls = crate::hbone::tls::client_config(&client_certs, None)?;
        let hbone = HboneClient::connect(args.hbone_addr, tls).await?;
        let mut tunnel = Tunnel::open(&hbone, &vip.to_string()).await?;
        let url = format!("http://{host}/productpage");
        let plain = burst(&mut tunnel, &url, &[], args.requests).await?;
        println!("{} requests through HBONE to {host} ({vip}), no header:", args.requests);
        print_split(&plain, &versions, args.requests);
        let v2 = [("version".to_string(), "v2".to_string())];
        let header = burst(&mut tunnel, &url, &v2, 100).await?;
        println!("100 requests with header `version: v2`:");
        print_split(&header, &versions, 100);
        println!();
        println!("Try it (the waypoint keeps serving):");
        println!("  waypoint client --hbone {} --cert-dir {} --authority {vip} -n 200 --count-by x-pod {url}", args.hbone_addr, client_dir.display());
        println!("  waypoint client --hbone {} --cert-dir {} --authority {vip} -H 'version: v2' {url}", args.hbone_addr, client_dir.display());
        println!("  curl -s -H 'host: {host}' http://{}/productpage", args.http_addr);
        println!("  curl -s --http2-prior-knowledge -H 'host: {host}' http://{}/productpage", args.http_addr);
        println!("  waypoint check --config-dir {}", config_dir.display());
        println!("  curl -s http://{}/config_dump", args.admin_addr);
        println!("  tail -f {}", access_log.display());
        if !args.once {
            println!("Ctrl-C to stop.");
            super::run::wait_for_signal().await;
        }
        // A request's access-log line is written after its response is sent:
        // close the demo's own connection and wait for the waypoint to finish
        // with it, so the last lines are in the file before the process goes.
        drop((tunnel, hbone));
        waypoint.drain(std::time::Duration::from_secs(2)).await;
        drop(backends);
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn start_backends(snapshot: &Snapshot) -> std::io::Result<Vec<Echo>> {
    let mut seen = BTreeSet::new();
    let mut backends = Vec::new();
    for svc in &snapshot.services {
        for ep in &svc.endpoints {
            for &port in ep.ports.values() {
                let addr = SocketAddr::new(ep.address, port);
                if seen.insert(addr) {
                    backends.push(Echo::start(addr, &ep.source.name).await?);
                }
            }
        }
    }
    Ok(backends)
}

fn first_vip(snapshot: &Snapshot) -> Option<(SocketAddr, String)> {
    let svc = snapshot.services.iter().find(|s| !s.addresses.is_empty())?;
    let port = svc.ports.first()?.port;
    Some((
        SocketAddr::new(svc.addresses[0], port),
        format!("{}:{port}", svc.name),
    ))
}

/// Pod name → its `version` label, to show the split by subset.
fn pod_versions(snapshot: &Snapshot) -> BTreeMap<String, String> {
    snapshot
        .services
        .iter()
        .flat_map(|s| &s.endpoints)
        .filter_map(|ep| Some((ep.source.name.clone(), ep.labels.get("version")?.clone())))
        .collect()
}

async fn burst(
    tunnel: &mut Tunnel,
    url: &str,
    headers: &[(String, String)],
    n: usize,
) -> Result<BTreeMap<String, usize>, crate::client::RequestError> {
    let mut by_pod = BTreeMap::new();
    for _ in 0..n {
        let reply = tunnel.get(url, headers).await?;
        let pod = match reply.header("x-pod") {
            Some(p) => p.to_string(),
            None => format!("status {}", reply.status.as_u16()),
        };
        *by_pod.entry(pod).or_insert(0) += 1;
    }
    Ok(by_pod)
}

fn print_split(by_pod: &BTreeMap<String, usize>, versions: &BTreeMap<String, String>, n: usize) {
    let mut by_version: BTreeMap<&str, (usize, Vec<String>)> = BTreeMap::new();
    for (pod, count) in by_pod {
        let v = versions.get(pod).map(String::as_str).unwrap_or("?");
        let e = by_version.entry(v).or_default();
        e.0 += count;
        e.1.push(format!("{pod} {count}"));
    }
    for (v, (count, pods)) in by_version {
        let pct = 100.0 * count as f64 / n as f64;
        println!("  {v:<4} {count:>5}  {pct:>5.1}%   ({})", pods.join(", "));
    }
}
