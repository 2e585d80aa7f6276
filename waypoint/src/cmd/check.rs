//! `waypoint check`: validate manifests, print the routing table.

use super::CmdResult;
use std::path::Path;
use std::process::ExitCode;

pub fn check(dir: &Path, opts: &waypoint_config::Options) -> CmdResult {
    match waypoint_config::load_dir(dir, opts) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            print!("{}", waypoint_config::routing_table(&loaded.snapshot));
            Ok(ExitCode::SUCCESS)
        }
        Err(diags) => {
            for d in &diags {
                eprintln!("{}: {d}", severity(d));
            }
            let errors = diags
                .iter()
                .filter(|d| d.severity == waypoint_config::Severity::Error)
                .count();
            eprintln!("{}: {errors} error(s)", dir.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn severity(d: &waypoint_config::Diagnostic) -> &'static str {
    match d.severity {
        waypoint_config::Severity::Error => "error",
        waypoint_config::Severity::Warning => "warning",
    }
}
