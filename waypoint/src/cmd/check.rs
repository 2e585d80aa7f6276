//! `waypoint check`: validate manifests, print the routing table.

use super::CmdResult;
use std::path::Path;
use std::process::ExitCode;

pub fn check(dir: &Path, opts: &waypoint_config::Options) -> CmdResult {
    match waypoint_config::load_dir(dir, opts) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("{}: {w}", severity(w));
            }
            print!("{}", waypoint_config::routing_table(&loaded.snapshot));
            // A refused policy loads in its fail-closed form, but the config
            // is not what was written: as an error, it fails the check.
            let refused = loaded
                .warnings
                .iter()
                .filter(|d| d.severity == waypoint_config::Severity::Refused)
                .count();
            if refused > 0 {
                eprintln!(
                    "{}: {refused} policy error(s), in force fail-closed",
                    dir.display()
                );
                return Ok(ExitCode::FAILURE);
            }
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
        waypoint_config::Severity::Refused => "error (fail-closed)",
    }
}
