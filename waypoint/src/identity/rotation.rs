//! Certificate rotation: the waypoint's identity is re-read from `--cert-dir`
//! while it runs. New handshakes, inbound and outbound, use the newest valid set;
//! established connections keep theirs. A set that does not load (half-written,
//! mismatched key, no SPIFFE ID) is reported and the previous identity stays.

use super::{load_cert_dir, CertBundle, IdentityError};
use rustls::ServerConfig;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub struct IdentityStore {
    dir: PathBuf,
    current: RwLock<(Arc<CertBundle>, Arc<ServerConfig>)>,
    generation: AtomicU64,
    last_error: Mutex<Option<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(transparent)]
    Files(#[from] IdentityError),
    #[error("{dir}: certificate and key do not form a TLS identity: {source}")]
    Tls { dir: String, source: rustls::Error },
}

impl IdentityStore {
    pub fn load(dir: PathBuf) -> Result<Self, RotationError> {
        let (bundle, server) = Self::read(&dir)?;
        Ok(IdentityStore {
            dir,
            current: RwLock::new((Arc::new(bundle), server)),
            generation: AtomicU64::new(1),
            last_error: Mutex::new(None),
        })
    }

    fn read(dir: &std::path::Path) -> Result<(CertBundle, Arc<ServerConfig>), RotationError> {
        let bundle = load_cert_dir(dir)?;
        // Building the server config checks that the key matches the leaf.
        let server =
            crate::hbone::tls::server_config(&bundle).map_err(|source| RotationError::Tls {
                dir: dir.display().to_string(),
                source,
            })?;
        Ok((bundle, server))
    }

    pub fn bundle(&self) -> Arc<CertBundle> {
        self.current.read().expect("identity lock").0.clone()
    }

    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.current.read().expect("identity lock").1.clone()
    }

    /// Bumps on every rotation, so caches of TLS configs know to refresh.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Re-reads the directory; true if a new identity was installed.
    pub fn reload(&self) -> Result<bool, RotationError> {
        let (bundle, server) = Self::read(&self.dir)?;
        let mut current = self.current.write().expect("identity lock");
        if current.0.chain == bundle.chain && current.0.roots == bundle.roots {
            return Ok(false);
        }
        log::info!(
            "identity rotated: now {} ({} root(s))",
            bundle.id,
            bundle.roots.len()
        );
        *current = (Arc::new(bundle), server);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(true)
    }

    /// Polls the directory every `every` until `shutdown` fires. Each distinct
    /// failure is logged once, so a broken set does not flood the log.
    pub async fn watch(
        self: Arc<Self>,
        every: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            let result = self.reload();
            let mut last = self.last_error.lock().expect("error lock");
            match result {
                Ok(_) => *last = None,
                Err(e) => {
                    let msg = e.to_string();
                    if last.as_deref() != Some(msg.as_str()) {
                        log::error!(
                            "certificate rotation failed, keeping {}: {msg}",
                            self.bundle().id
                        );
                        *last = Some(msg);
                    }
                }
            }
        }
    }
}
