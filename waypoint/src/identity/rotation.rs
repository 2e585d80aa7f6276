//! Certificate rotation: the waypoint's identity is replaced while it runs, from
//! `--cert-dir` (re-read) or from Istio's CA (installed by `crate::ca`). New
//! handshakes, inbound and outbound, use the newest valid set; established
//! connections keep theirs. A set that does not load (half-written, mismatched
//! key, no SPIFFE ID) is reported and the previous identity stays.

use super::{load_cert_dir, CertBundle, IdentityError};
use rustls::ServerConfig;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

pub struct IdentityStore {
    /// Where the files are re-read from; `None` when the CA client installs.
    dir: Option<PathBuf>,
    current: RwLock<Current>,
    generation: AtomicU64,
    last_error: Mutex<Option<String>>,
}

// `issued` is false only while a CA-fed store holds the stand-in it was made
// with; once true it stays true. `not_after` is the leaf's, read at install.
struct Current {
    bundle: Arc<CertBundle>,
    server: Arc<ServerConfig>,
    not_after: Option<SystemTime>,
    issued: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(transparent)]
    Files(#[from] IdentityError),
    #[error("{dir}: certificate and key do not form a TLS identity: {source}")]
    Tls { dir: String, source: rustls::Error },
}

/// Why the identity cannot serve, for `/healthz/ready`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotServing {
    #[error("no certificate from the CA yet")]
    NotIssued,
    #[error("the certificate expired")]
    Expired,
}

impl IdentityStore {
    /// File mode: the identity in `dir`, re-read by [`watch`](Self::watch).
    pub fn load(dir: PathBuf) -> Result<Self, RotationError> {
        let current = Self::prepare(load_cert_dir(&dir)?, &dir.display().to_string())?;
        Ok(Self::with(Some(dir), current))
    }

    /// CA mode: holds `stand_in` (see `crate::ca::stand_in`), and is not ready,
    /// until the first [`install`](Self::install).
    pub fn awaiting(stand_in: CertBundle) -> Result<Self, RotationError> {
        let mut current = Self::prepare(stand_in, "the stand-in identity")?;
        current.issued = false;
        Ok(Self::with(None, current))
    }

    fn with(dir: Option<PathBuf>, current: Current) -> Self {
        IdentityStore {
            dir,
            current: RwLock::new(current),
            generation: AtomicU64::new(1),
            last_error: Mutex::new(None),
        }
    }

    fn prepare(bundle: CertBundle, origin: &str) -> Result<Current, RotationError> {
        // Building the server config checks that the key matches the leaf.
        let server =
            crate::hbone::tls::server_config(&bundle).map_err(|source| RotationError::Tls {
                dir: origin.to_string(),
                source,
            })?;
        Ok(Current {
            not_after: bundle.validity().map(|(_, not_after)| not_after),
            bundle: Arc::new(bundle),
            server,
            issued: true,
        })
    }

    pub fn bundle(&self) -> Arc<CertBundle> {
        self.current.read().expect("identity lock").bundle.clone()
    }

    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.current.read().expect("identity lock").server.clone()
    }

    /// Whether new handshakes can succeed: an issued certificate that has not
    /// expired. A leaf whose expiry cannot be read counts as valid; TLS will say.
    pub fn serving(&self, now: SystemTime) -> Result<(), NotServing> {
        let current = self.current.read().expect("identity lock");
        if !current.issued {
            return Err(NotServing::NotIssued);
        }
        match current.not_after {
            Some(t) if t <= now => Err(NotServing::Expired),
            _ => Ok(()),
        }
    }

    /// The leaf's expiry, once one has been issued.
    pub fn not_after(&self) -> Option<SystemTime> {
        let current = self.current.read().expect("identity lock");
        current.issued.then_some(current.not_after).flatten()
    }

    /// Bumps on every rotation, so caches of TLS configs know to refresh.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Re-reads the directory; true if a new identity was installed.
    pub fn reload(&self) -> Result<bool, RotationError> {
        let Some(dir) = &self.dir else {
            return Ok(false);
        };
        self.install_from(load_cert_dir(dir)?, &dir.display().to_string())
    }

    /// Installs an identity from the CA; true if it differs from the current one.
    pub fn install(&self, bundle: CertBundle) -> Result<bool, RotationError> {
        self.install_from(bundle, "the CA's certificate")
    }

    fn install_from(&self, bundle: CertBundle, origin: &str) -> Result<bool, RotationError> {
        let next = Self::prepare(bundle, origin)?;
        let mut current = self.current.write().expect("identity lock");
        if current.issued
            && current.bundle.chain == next.bundle.chain
            && current.bundle.roots == next.bundle.roots
        {
            return Ok(false);
        }
        log::info!(
            "identity rotated: now {} ({} root(s))",
            next.bundle.id,
            next.bundle.roots.len()
        );
        *current = next;
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
        if self.dir.is_none() {
            return;
        }
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
