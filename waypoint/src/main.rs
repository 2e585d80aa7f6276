//! `waypoint`: command-line parsing only; each command lives in `waypoint::cmd`.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use waypoint::cmd;

#[derive(Parser)]
#[command(
    name = "waypoint",
    version,
    about = "An L7 waypoint proxy for Istio's ambient mesh"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Domains {
    /// Trust domain of SPIFFE identities.
    #[arg(long, env = "WAYPOINT_TRUST_DOMAIN", default_value = "cluster.local")]
    trust_domain: String,
    /// Kubernetes cluster domain, for service FQDNs.
    #[arg(long, env = "WAYPOINT_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run the waypoint.
    Run {
        /// Directory of Kubernetes manifests (*.yaml, *.yml, *.json, recursively).
        #[arg(long, env = "WAYPOINT_CONFIG_DIR")]
        config_dir: PathBuf,
        /// HBONE (mTLS HTTP/2 CONNECT) listener.
        #[arg(long, env = "WAYPOINT_HBONE_ADDR", default_value = "0.0.0.0:15008")]
        hbone_addr: SocketAddr,
        /// Plaintext HTTP listener routing by Host (off unless set).
        #[arg(long, env = "WAYPOINT_HTTP_ADDR")]
        http_addr: Option<SocketAddr>,
        /// Admin listener (/healthz/ready, /config_dump).
        #[arg(long, env = "WAYPOINT_ADMIN_ADDR", default_value = "127.0.0.1:15000")]
        admin_addr: SocketAddr,
        /// Directory with cert-chain.pem, key.pem and root-cert.pem.
        #[arg(
            long,
            env = "WAYPOINT_CERT_DIR",
            default_value = "/var/run/secrets/workload-spiffe-credentials"
        )]
        cert_dir: PathBuf,
        #[command(flatten)]
        domains: Domains,
        /// Worker threads (default: one per CPU).
        #[arg(long, env = "WAYPOINT_WORKERS")]
        workers: Option<usize>,
        /// Port of mesh endpoints' HBONE servers (their node's ztunnel).
        #[arg(long, env = "WAYPOINT_HBONE_UPSTREAM_PORT", default_value_t = 15008)]
        hbone_upstream_port: u16,
        /// CONNECT tunnels one upstream HBONE connection carries at most.
        #[arg(
            long,
            env = "WAYPOINT_HBONE_STREAMS_PER_CONNECTION",
            default_value_t = 100
        )]
        hbone_streams_per_connection: usize,
        /// HTTP/2 window per HBONE tunnel, bytes (ztunnel's default).
        #[arg(long, env = "WAYPOINT_HBONE_WINDOW_SIZE", default_value_t = 4 << 20)]
        hbone_window_size: u32,
        /// HTTP/2 window per HBONE connection, bytes (ztunnel's default).
        #[arg(long, env = "WAYPOINT_HBONE_CONNECTION_WINDOW_SIZE", default_value_t = 16 << 20)]
        hbone_connection_window_size: u32,
        /// Add `x-forwarded-client-cert` (By=<waypoint>;URI=<source>) to requests.
        #[arg(long, env = "WAYPOINT_XFCC")]
        xfcc: bool,
        /// On SIGTERM, how long in-flight requests and tunnels may take, in seconds.
        #[arg(long, env = "WAYPOINT_DRAIN_PERIOD", default_value_t = 5)]
        drain_period: u64,
        /// One JSON line per request on stdout.
        #[arg(long, env = "WAYPOINT_ACCESS_LOG", default_value_t = true, action = clap::ArgAction::Set)]
        access_log: bool,
        /// Where `/stats/prometheus` and `/healthz/ready` are also served (Istio's 15020, 15021, 15090).
        #[arg(
            long,
            env = "WAYPOINT_METRICS_ADDR",
            value_delimiter = ',',
            default_value = "0.0.0.0:15020,0.0.0.0:15021,0.0.0.0:15090"
        )]
        metrics_addr: Vec<SocketAddr>,
    },
    /// Validate manifests and print the routing table per service.
    Check {
        #[arg(long, env = "WAYPOINT_CONFIG_DIR")]
        config_dir: PathBuf,
        #[command(flatten)]
        domains: Domains,
    },
    /// Send HTTP requests through an HBONE tunnel, like curl.
    Client(cmd::client::ClientArgs),
    /// Run the bundled productpage example with echo backends and show the split.
    Demo(cmd::demo::DemoArgs),
}

fn main() -> ExitCode {
    waypoint::logging::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config_dir,
            hbone_addr,
            http_addr,
            admin_addr,
            cert_dir,
            domains,
            workers,
            hbone_upstream_port,
            hbone_streams_per_connection,
            hbone_window_size,
            hbone_connection_window_size,
            xfcc,
            drain_period,
            access_log,
            metrics_addr,
        } => cmd::run::run(cmd::run::RunArgs {
            config_dir,
            hbone_addr,
            http_addr,
            admin_addr,
            cert_dir,
            options: options(domains),
            workers,
            hbone_upstream_port,
            hbone_streams_per_connection,
            hbone_window_size,
            hbone_connection_window_size,
            xfcc,
            drain_period: std::time::Duration::from_secs(drain_period),
            access_log,
            metrics_addr,
        }),
        Command::Check {
            config_dir,
            domains,
        } => cmd::check::check(&config_dir, &options(domains)),
        Command::Client(args) => cmd::client::client(args),
        Command::Demo(args) => cmd::demo::demo(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn options(d: Domains) -> waypoint_config::Options {
    waypoint_config::Options {
        cluster_domain: d.cluster_domain,
        trust_domain: d.trust_domain,
    }
}
