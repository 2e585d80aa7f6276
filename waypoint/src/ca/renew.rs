//! Keeps the waypoint's certificate fresh: ask the CA, install what it issues
//! through the same store `--cert-dir` rotation uses, sleep until half of the
//! certificate's life, repeat. A failed request is retried with jittered,
//! capped back-off; the current certificate keeps serving meanwhile, and once it
//! expires readiness says so (see `IdentityStore::serving`).

use super::{CaError, CaMetrics};
use crate::identity::{CertBundle, IdentityStore, SpiffeId};
use rand::Rng;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Where certificates come from: the CA client, or a fake in tests.
pub trait Issue: Send + Sync + 'static {
    fn issue(&self) -> impl Future<Output = Result<CertBundle, CaError>> + Send;
    /// The identity the requests ask for.
    fn requested(&self) -> &SpiffeId;
    /// The CA, as log lines name it.
    fn address(&self) -> String;
}

impl Issue for super::CaClient {
    fn issue(&self) -> impl Future<Output = Result<CertBundle, CaError>> + Send {
        super::CaClient::issue(self)
    }

    fn requested(&self) -> &SpiffeId {
        &self.config.id
    }

    fn address(&self) -> String {
        self.config.address.to_string()
    }
}

/// Exponential back-off between failed requests: each delay is drawn from the
/// upper half of the current step (so replicas that failed together spread out),
/// the step doubles up to `max`, and a success starts over.
#[derive(Clone, Debug)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    step: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            step: initial,
        }
    }

    pub fn next(&mut self, rng: &mut impl Rng) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        step.mul_f64(rng.random_range(0.5..=1.0))
    }

    pub fn reset(&mut self) {
        self.step = self.initial;
    }
}

impl Default for Backoff {
    /// The first retry within half a second, as a CA that was restarting is
    /// often back by then; at most 30 s apart, so a CA outage is noticed within
    /// half a minute of its end.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(500), Duration::from_secs(30))
    }
}

/// Never sooner than this after an install, whatever the certificate says: a CA
/// that backdates `notBefore` past the half-life must not make us ask in a loop.
const MIN_REFRESH: Duration = Duration::from_secs(1);

/// How long to wait before renewing a certificate valid from `not_before` to
/// `not_after`: until half of its life, up to 5% sooner (`jitter` in 0..=1) so a
/// Deployment's replicas, started together, do not all ask at the same moment.
pub fn refresh_in(
    not_before: SystemTime,
    not_after: SystemTime,
    now: SystemTime,
    jitter: f64,
) -> Duration {
    let life = not_after.duration_since(not_before).unwrap_or_default();
    let half = life / 2;
    let at = not_before + half.saturating_sub(half.mul_f64(0.05 * jitter.clamp(0.0, 1.0)));
    at.duration_since(now).unwrap_or_default().max(MIN_REFRESH)
}

pub struct Renewer<I, R> {
    pub issuer: I,
    pub store: Arc<IdentityStore>,
    pub metrics: CaMetrics,
    pub backoff: Backoff,
    pub rng: R,
}

impl<I: Issue, R: Rng + Send + 'static> Renewer<I, R> {
    /// Runs until `shutdown` fires; the first request goes out at once.
    pub async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            let wait = self.attempt().await;
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One request; returns how long to wait before the next.
    pub async fn attempt(&mut self) -> Duration {
        let outcome = match self.issuer.issue().await {
            Ok(bundle) => self.install(bundle),
            Err(e) => Err(e),
        };
        self.metrics.record(outcome.as_ref().map(|_| ()));
        match outcome {
            Ok((not_before, not_after)) => {
                self.backoff.reset();
                self.metrics.set_expiry(not_after);
                let wait = refresh_in(not_before, not_after, SystemTime::now(), self.rng.random());
                log::info!(
                    "certificate for {} from the CA, valid until {}; renewing in {wait:.0?}",
                    self.store.bundle().id,
                    super::show_time(not_after)
                );
                wait
            }
            Err(e) => {
                let wait = self.backoff.next(&mut self.rng);
                let current = match self.store.not_after() {
                    None => "no certificate yet".to_string(),
                    Some(t) if t <= SystemTime::now() => {
                        format!("the certificate expired at {}", super::show_time(t))
                    }
                    Some(t) => format!(
                        "keeping the certificate valid until {}",
                        super::show_time(t)
                    ),
                };
                log::error!("certificate request failed: {e}; {current}; retrying in {wait:.1?}");
                wait
            }
        }
    }

    /// Installs `bundle`, returning its validity.
    fn install(&self, bundle: CertBundle) -> Result<(SystemTime, SystemTime), CaError> {
        let address = || self.issuer.address();
        let validity = bundle.validity().ok_or_else(|| CaError::BadResponse {
            address: address(),
            reason: "the leaf certificate does not parse".into(),
        })?;
        let asked = self.issuer.requested();
        if &bundle.id != asked {
            // istiod names the certificate after the token's service account; the
            // flags only shape the request. Serve what the CA vouches for, loudly.
            log::warn!(
                "the CA issued {} though {asked} was asked for; check SERVICE_ACCOUNT and POD_NAMESPACE",
                bundle.id
            );
        }
        self.store
            .install(bundle)
            .map_err(|e| CaError::BadResponse {
                address: address(),
                reason: e.to_string(),
            })?;
        Ok(validity)
    }
}

#[cfg(test)]
mod tests;
