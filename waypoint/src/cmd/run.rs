//! `waypoint run`.

use super::CmdResult;
use crate::app::{Listeners, Waypoint};
use crate::state::State;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// How often `--config-dir` is checked for changes.
const CONFIG_POLL: std::time::Duration = std::time::Duration::from_secs(1);

pub struct RunArgs {
    pub config_dir: PathBuf,
    pub hbone_addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub cert_dir: PathBuf,
    pub options: waypoint_config::Options,
    pub workers: Option<usize>,
    pub hbone_upstream_port: u16,
    pub hbone_streams_per_connection: usize,
    pub hbone_window_size: u32,
    pub hbone_connection_window_size: u32,
    pub xfcc: bool,
    pub drain_period: std::time::Duration,
    pub access_log: bool,
    pub metrics_addr: Vec<SocketAddr>,
}

pub fn run(args: RunArgs) -> CmdResult {
    let loaded = match waypoint_config::load_dir(&args.config_dir, &args.options) {
        Ok(l) => l,
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            eprintln!(
                "refusing to start: invalid config in {}",
                args.config_dir.display()
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    for w in &loaded.warnings {
        log::warn!("{w}");
    }
    let identity = Arc::new(crate::identity::IdentityStore::load(args.cert_dir.clone())?);
    log::info!("identity {}", identity.bundle().id);
    let state = Arc::new(State::new(loaded.snapshot));
    let rt = super::runtime(args.workers)?;
    rt.block_on(async move {
        let waypoint = Waypoint::start(
            Listeners {
                hbone_upstream_port: Some(args.hbone_upstream_port),
                hbone_streams_per_connection: args.hbone_streams_per_connection,
                xfcc: args.xfcc,
                access_log: args.access_log,
                metrics: args.metrics_addr.clone(),
                h2: crate::hbone::H2Settings {
                    stream_window: args.hbone_window_size,
                    connection_window: args.hbone_connection_window_size,
                },
                ..Listeners::new(Some(args.hbone_addr), args.http_addr, Some(args.admin_addr))
            },
            Some(identity),
            state,
        )
        .await?;
        let watcher = Arc::new(crate::reload::ConfigWatcher {
            dir: args.config_dir.clone(),
            options: args.options.clone(),
            state: waypoint.state.clone(),
            metrics: waypoint.metrics.clone(),
        });
        let (stop_watch, watch_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(watcher.watch(CONFIG_POLL, watch_rx));
        wait_for_signal().await;
        log::info!("draining for up to {:?}", args.drain_period);
        let _ = stop_watch.send(true);
        let left = waypoint.drain(args.drain_period).await;
        if left > 0 {
            log::warn!("drain period over with {left} connection(s) or tunnel(s) still open");
        }
        log::info!("shut down");
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
