//! Certificates from Istio's CA: the waypoint makes a P-256 key and a CSR for
//! its SPIFFE ID, asks `istio.v1.auth.IstioCertificateService/CreateCertificate`
//! (istiod, or cert-manager's istio-csr) with its service-account token, installs
//! the answer in the [`IdentityStore`] the data path reads, and renews at half of
//! the certificate's life.
//!
//! [`args`] chooses this over `--cert-dir`; [`client`] makes one call and
//! [`issued`] checks its answer; [`renew`] schedules the calls and retries;
//! [`error`] says what failed; [`metrics`] counts it.

pub mod args;
pub mod client;
pub mod csr;
pub mod error;
pub mod issued;
pub mod metrics;
pub mod proto;
pub mod renew;

pub use args::{CaArgs, CaConfig};
pub use client::CaClient;
pub use csr::stand_in;
pub use error::CaError;
pub use metrics::CaMetrics;
pub use renew::{Backoff, Issue, Renewer};

use crate::identity::{IdentityStore, RotationError};
use std::sync::Arc;
use std::time::SystemTime;

/// The store to start the waypoint with: it holds a stand-in, and is not ready,
/// until [`spawn`]'s first request is answered.
pub fn awaiting_store(config: &CaConfig) -> Result<Arc<IdentityStore>, RotationError> {
    let stand_in = stand_in(&config.id).map_err(crate::identity::IdentityError::from)?;
    Ok(Arc::new(IdentityStore::awaiting(stand_in)?))
}

/// Starts requesting and renewing certificates into `store` until `shutdown`.
pub fn spawn(
    config: CaConfig,
    store: Arc<IdentityStore>,
    metrics: &crate::metrics::Metrics,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let ca_metrics = CaMetrics::new();
    ca_metrics.register(metrics);
    log::info!(
        "certificates for {} from the CA at {}",
        config.id,
        config.address
    );
    let renewer = Renewer {
        issuer: CaClient { config },
        store,
        metrics: ca_metrics,
        backoff: Backoff::default(),
        rng: <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng(),
    };
    tokio::spawn(renewer.run(shutdown));
}

/// A certificate time as log lines show it (RFC 3339, UTC).
pub fn show_time(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| format!("{t:?}"))
}
