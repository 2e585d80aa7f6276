//! The `waypoint` subcommands.

pub mod check;
pub mod client;
pub mod demo;
pub mod run;

/// A command's failure, already worded for the user.
pub type CmdResult = Result<std::process::ExitCode, Box<dyn std::error::Error>>;

/// A multi-threaded runtime with `workers` threads (one per CPU by default).
pub fn runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        b.worker_threads(n.max(1));
    }
    b.enable_all().build()
}
