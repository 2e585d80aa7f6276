//! Live config: `--config-dir` is watched (polling, which also sees Kubernetes'
//! atomic `..data` symlink swap) and re-read on SIGHUP. A new config is loaded
//! and validated in full, then swapped in at once; an invalid one is logged with
//! the same errors `waypoint check` prints, and the last good config keeps serving.

use crate::state::State;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

pub struct ConfigWatcher {
    pub dir: PathBuf,
    pub options: waypoint_config::Options,
    pub state: Arc<State>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// What the directory looks like: every file below it (symlinks followed) with
/// its size and modification time. Any difference triggers a reload.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            // std::fs::metadata follows symlinks, so a swapped `..data` shows.
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                if !e.file_name().to_string_lossy().starts_with("..") {
                    stack.push(path);
                }
            } else {
                out.push((path, meta.len(), meta.modified().ok()));
            }
        }
    }
    out.sort();
    out
}

impl ConfigWatcher {
    /// Loads the directory and swaps the result in; returns the new generation.
    pub fn reload(&self) -> Result<u64, Vec<waypoint_config::Diagnostic>> {
        match waypoint_config::load_dir(&self.dir, &self.options) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    match w.severity {
                        waypoint_config::Severity::Warning => log::warn!("{w}"),
                        _ => log::error!("{w}"),
                    }
                }
                let generation = self.state.replace(loaded.snapshot);
                self.metrics.config_reloads.with_label_values(&["ok"]).inc();
                self.metrics.config_generation.set(generation as i64);
                log::info!(
                    "config reloaded from {}: generation {generation}",
                    self.dir.display()
                );
                Ok(generation)
            }
            Err(diags) => {
                self.metrics
                    .config_reloads
                    .with_label_values(&["failed"])
                    .inc();
                for d in &diags {
                    log::error!("config rejected: {d}");
                }
                log::error!(
                    "config in {} rejected ({} problem(s)); still serving generation {}",
                    self.dir.display(),
                    diags.len(),
                    self.state.current().generation
                );
                Err(diags)
            }
        }
    }

    /// Reloads when the files change (checked every `every`) or on SIGHUP.
    pub async fn watch(self: Arc<Self>, every: Duration, mut shutdown: watch::Receiver<bool>) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
        let mut seen = fingerprint(&self.dir);
        loop {
            let forced = tokio::select! {
                _ = tokio::time::sleep(every) => false,
                _ = hup.recv() => true,
                _ = shutdown.changed() => return,
            };
            let now = fingerprint(&self.dir);
            if forced || now != seen {
                seen = now;
                let _ = self.reload();
            }
        }
    }
}
