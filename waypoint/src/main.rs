//! `waypoint`: command-line parsing only; each command lives in `waypoint::cmd`.

use clap::{Parser, Subcommand};
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

#[derive(Subcommand)]
enum Command {
    /// Run the waypoint.
    Run(Box<cmd::run::RunArgs>),
    /// Validate manifests and print the routing table per service.
    Check {
        #[arg(long, env = "WAYPOINT_CONFIG_DIR")]
        config_dir: PathBuf,
        #[command(flatten)]
        domains: cmd::Domains,
    },
    /// Send HTTP requests through an HBONE tunnel, like curl.
    Client(cmd::client::ClientArgs),
    /// Run the bundled productpage example with echo backends and show the split.
    Demo(cmd::demo::DemoArgs),
    /// Print a waypoint Gateway of our class (and, standalone, what the
    /// controller would create for it).
    Generate(cmd::generate::GenerateArgs),
    /// Deploy a waypoint for each Gateway of class pingora-waypoint, and
    /// write the Gateways' status.
    Controller(cmd::controller::ControllerArgs),
}

fn main() -> ExitCode {
    waypoint::logging::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => cmd::run::run(*args),
        Command::Check {
            config_dir,
            domains,
        } => cmd::check::check(&config_dir, &domains.options()),
        Command::Client(args) => cmd::client::client(args),
        Command::Demo(args) => cmd::demo::demo(args),
        Command::Generate(args) => cmd::generate::generate(args),
        Command::Controller(args) => cmd::controller::controller(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
