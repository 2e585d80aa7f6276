//! `waypoint run`.

use super::CmdResult;
use crate::app::{Listeners, Waypoint};
use crate::state::State;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Istio's mount point for file-based workload credentials.
const DEFAULT_CERT_DIR: &str = "/var/run/secrets/workload-spiffe-credentials";

/// How often `--config-dir` is checked for changes.
const CONFIG_POLL: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(clap::Args)]
pub struct RunArgs {
    /// Directory of Kubernetes manifests (*.yaml, *.yml, *.json, recursively),
    /// for `--config-source dir`.
    #[arg(long, env = "WAYPOINT_CONFIG_DIR")]
    pub config_dir: Option<PathBuf>,
    #[command(flatten)]
    pub source: crate::kube::SourceArgs,
    /// HBONE (mTLS HTTP/2 CONNECT) listener.
    #[arg(long, env = "WAYPOINT_HBONE_ADDR", default_value = "0.0.0.0:15008")]
    pub hbone_addr: SocketAddr,
    /// Plaintext HTTP listener routing by Host (off unless set).
    #[arg(long, env = "WAYPOINT_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Admin listener (/healthz/ready, /config_dump).
    #[arg(long, env = "WAYPOINT_ADMIN_ADDR", default_value = "127.0.0.1:15000")]
    pub admin_addr: SocketAddr,
    /// Directory with cert-chain.pem, key.pem and root-cert.pem, re-read while
    /// running (default /var/run/secrets/workload-spiffe-credentials when
    /// certificates do not come from the CA).
    #[arg(long, env = "WAYPOINT_CERT_DIR")]
    pub cert_dir: Option<PathBuf>,
    #[command(flatten)]
    pub ca: crate::ca::CaArgs,
    #[command(flatten)]
    pub domains: super::Domains,
    /// Data-plane threads, each serving whole connections (default: one per
    /// CPU). The control plane (config, certificates, admin, accepting) has
    /// two threads of its own.
    #[arg(long, env = "WAYPOINT_WORKERS")]
    pub workers: Option<usize>,
    /// Port of mesh endpoints' HBONE servers (their node's ztunnel).
    #[arg(long, env = "WAYPOINT_HBONE_UPSTREAM_PORT", default_value_t = 15008)]
    pub hbone_upstream_port: u16,
    /// CONNECT tunnels one upstream HBONE connection carries at most.
    #[arg(
        long,
        env = "WAYPOINT_HBONE_STREAMS_PER_CONNECTION",
        default_value_t = 100
    )]
    pub hbone_streams_per_connection: usize,
    /// HTTP/2 window per HBONE tunnel, bytes (ztunnel's default).
    #[arg(long, env = "WAYPOINT_HBONE_WINDOW_SIZE", default_value_t = 4 << 20)]
    pub hbone_window_size: u32,
    /// HTTP/2 window per HBONE connection, bytes (ztunnel's default).
    #[arg(long, env = "WAYPOINT_HBONE_CONNECTION_WINDOW_SIZE", default_value_t = 16 << 20)]
    pub hbone_connection_window_size: u32,
    /// How request paths are normalised before authorization policies and
    /// routes see them, and as the backend receives them (Istio's
    /// meshConfig.pathNormalization): NONE, BASE, MERGE_SLASHES or
    /// DECODE_AND_MERGE_SLASHES.
    #[arg(long, env = "WAYPOINT_PATH_NORMALIZATION", default_value = "BASE")]
    pub path_normalization: waypoint_filters::normalize::PathNormalization,
    /// How often RequestAuthentication's remote JWKS (`jwksUri`, OpenID
    /// discovery) are fetched again; istiod's PILOT_JWT_PUB_KEY_REFRESH_INTERVAL.
    #[arg(long, env = "WAYPOINT_JWKS_REFRESH_INTERVAL", default_value = "20m", value_parser = waypoint_config::duration::parse)]
    pub jwks_refresh_interval: std::time::Duration,
    /// Add `x-forwarded-client-cert` (By=<waypoint>;URI=<source>) to requests.
    #[arg(long, env = "WAYPOINT_XFCC")]
    pub xfcc: bool,
    /// On SIGTERM, how long in-flight requests and tunnels may take, in seconds.
    #[arg(long, env = "WAYPOINT_DRAIN_PERIOD", default_value_t = 5)]
    pub drain_period: u64,
    /// One JSON line per request on stdout.
    #[arg(long, env = "WAYPOINT_ACCESS_LOG", default_value_t = true, action = clap::ArgAction::Set)]
    pub access_log: bool,
    /// Istio's per-request metrics (istio_requests_total and the duration and size
    /// histograms); off, as Istio's Telemetry API can disable them.
    #[arg(long, env = "WAYPOINT_REQUEST_METRICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub request_metrics: bool,
    /// Where `/stats/prometheus` and `/healthz/ready` are also served (Istio's 15020, 15021, 15090).
    #[arg(
        long,
        env = "WAYPOINT_METRICS_ADDR",
        value_delimiter = ',',
        default_value = "0.0.0.0:15020,0.0.0.0:15021,0.0.0.0:15090"
    )]
    pub metrics_addr: Vec<SocketAddr>,
    #[command(flatten)]
    pub tracing: crate::trace::TraceArgs,
    #[command(flatten)]
    pub limits: crate::limits::LimitArgs,
}

/// Where config comes from, resolved before anything starts.
enum Source {
    Dir(PathBuf),
    Kubernetes(crate::kube::GatewayRef),
}

pub fn run(args: RunArgs) -> CmdResult {
    let source = match args.source.source() {
        crate::kube::ConfigSource::Dir => {
            match &args.config_dir {
                Some(dir) => Source::Dir(dir.clone()),
                None => {
                    eprintln!("--config-dir is required with --config-source dir (the default outside a pod)");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        crate::kube::ConfigSource::Kubernetes => match args.source.gateway() {
            Ok(g) => Source::Kubernetes(g),
            Err(why) => {
                eprintln!("{why}");
                return Ok(ExitCode::FAILURE);
            }
        },
    };
    let state = match &source {
        Source::Dir(dir) => match waypoint_config::load_dir(dir, &args.domains.options()) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    match w.severity {
                        waypoint_config::Severity::Warning => log::warn!("{w}"),
                        _ => log::error!("{w}"),
                    }
                }
                Arc::new(State::new(loaded.snapshot))
            }
            Err(diags) => {
                for d in &diags {
                    eprintln!("{d}");
                }
                eprintln!("refusing to start: invalid config in {}", dir.display());
                return Ok(ExitCode::FAILURE);
            }
        },
        // Not ready until the first full sync.
        Source::Kubernetes(_) => Arc::new(State::awaiting_sync()),
    };
    let ca = match args.ca.resolve(
        args.cert_dir.is_some(),
        crate::ca::args::in_pod(),
        &args.domains.trust_domain,
    ) {
        Ok(ca) => ca,
        Err(why) => {
            eprintln!("{why}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let identity = match &ca {
        Some(config) => crate::ca::awaiting_store(config)?,
        None => {
            let dir = args.cert_dir.clone().unwrap_or(DEFAULT_CERT_DIR.into());
            Arc::new(crate::identity::IdentityStore::load(dir)?)
        }
    };
    log::info!("identity {}", identity.bundle().id);
    // Two: a translation of a large config on one leaves the other to answer
    // probes and accept connections.
    let rt = super::runtime(Some(2))?;
    let tracing = {
        let id = identity.bundle().id.clone();
        let name = format!("{}.{}", id.service_account, id.namespace);
        crate::trace::Tracing::from_args(&args.tracing, &name)?.map(Arc::new)
    };
    if tracing.is_some() {
        log::info!("tracing on: spans go over OTLP/gRPC");
    }
    let served = tracing.clone();
    let result = rt.block_on(async move {
        let waypoint = Waypoint::start(
            Listeners {
                hbone_upstream_port: Some(args.hbone_upstream_port),
                hbone_streams_per_connection: args.hbone_streams_per_connection,
                xfcc: args.xfcc,
                access_log: args.access_log,
                request_metrics: args.request_metrics,
                metrics: args.metrics_addr.clone(),
                tracing: served,
                h2: crate::hbone::H2Settings {
                    stream_window: args.hbone_window_size,
                    connection_window: args.hbone_connection_window_size,
                    keepalive: args.limits.keepalive(),
                    max_connection_age: args.limits.max_connection_age(),
                },
                limits: args.limits.limits(),
                path_normalization: args.path_normalization,
                jwks_refresh: args.jwks_refresh_interval,
                workers: args.workers,
                ..Listeners::new(Some(args.hbone_addr), args.http_addr, Some(args.admin_addr))
            },
            Some(identity.clone()),
            state,
        )
        .await?;
        let (stop_watch, watch_rx) = tokio::sync::watch::channel(false);
        if let Some(config) = ca {
            crate::ca::spawn(config, identity, &waypoint.metrics, watch_rx.clone());
        }
        match source {
            Source::Dir(dir) => {
                let watcher = Arc::new(crate::reload::ConfigWatcher {
                    dir,
                    options: args.domains.options(),
                    state: waypoint.state.clone(),
                    metrics: waypoint.metrics.clone(),
                });
                tokio::spawn(watcher.watch(CONFIG_POLL, watch_rx));
            }
            Source::Kubernetes(gateway) => {
                log::info!("config from the Kubernetes API for gateway {gateway}");
                let client = args.source.client().await?;
                let (status, desired) = tokio::sync::watch::channel(Default::default());
                let writer = crate::kube::status::writer::StatusWriter {
                    client: client.clone(),
                    gateway: gateway.clone(),
                    identity: args.source.identity(),
                };
                tokio::spawn(writer.run(desired, watch_rx.clone()));
                let kube = crate::kube::source::KubeSource {
                    client,
                    gateway,
                    options: args.domains.options(),
                    state: waypoint.state.clone(),
                    metrics: waypoint.metrics.clone(),
                    debounce: args.source.debounce(),
                    status,
                };
                tokio::spawn(kube.run(watch_rx));
            }
        }
        wait_for_signal().await;
        log::info!(
            "draining for up to {:?}",
            std::time::Duration::from_secs(args.drain_period)
        );
        let _ = stop_watch.send(true);
        let left = waypoint
            .drain(std::time::Duration::from_secs(args.drain_period))
            .await;
        if left > 0 {
            log::warn!("drain period over with {left} connection(s) or tunnel(s) still open");
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    });
    // After the last request: its spans are queued by now.
    if let Some(tracing) = tracing {
        tracing.shutdown();
    }
    result?;
    log::info!("shut down");
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
