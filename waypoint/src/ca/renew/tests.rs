//! The schedule and the retries on paused tokio time, against a fake CA that
//! issues certificates of a chosen lifetime or fails on cue.

use super::*;
use crate::identity::{NotServing, SpiffeId};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::VecDeque;
use std::sync::Mutex;

fn id() -> SpiffeId {
    SpiffeId::new("cluster.local", "default", "waypoint")
}

/// A certificate for `id` valid from now for `life`, self-signed (the store
/// does not check chains; the e2e tests do, through real handshakes).
fn cert(id: &SpiffeId, life: Duration) -> CertBundle {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(id.to_string().try_into().unwrap())];
    let now = SystemTime::now();
    params.not_before = now.into();
    params.not_after = (now + life).into();
    let der = params.self_signed(&key).unwrap().der().clone();
    CertBundle {
        chain: vec![der.clone()],
        key: rustls_pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        roots: vec![der],
        id: id.clone(),
    }
}

/// Answers from a script, then certificates of `life`; remembers when it was
/// asked, in tokio time.
struct FakeCa {
    id: SpiffeId,
    life: Duration,
    script: Mutex<VecDeque<CaError>>,
    asked: Mutex<Vec<tokio::time::Instant>>,
    /// The identity in the certificates, when not the one asked for (istiod
    /// names certificates after the token).
    issues: Mutex<Option<SpiffeId>>,
}

impl FakeCa {
    fn new(life: Duration, failures: Vec<CaError>) -> Arc<FakeCa> {
        Arc::new(FakeCa {
            id: id(),
            life,
            script: Mutex::new(failures.into()),
            asked: Mutex::new(Vec::new()),
            issues: Mutex::new(None),
        })
    }

    fn asked(&self) -> Vec<Duration> {
        let asked = self.asked.lock().unwrap();
        asked.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

impl Issue for Arc<FakeCa> {
    async fn issue(&self) -> Result<CertBundle, CaError> {
        self.asked.lock().unwrap().push(tokio::time::Instant::now());
        match self.script.lock().unwrap().pop_front() {
            Some(e) => Err(e),
            None => {
                let issues = self.issues.lock().unwrap().clone();
                Ok(cert(issues.as_ref().unwrap_or(&self.id), self.life))
            }
        }
    }

    fn requested(&self) -> &SpiffeId {
        &self.id
    }

    fn address(&self) -> String {
        "fake".into()
    }
}

fn unreachable() -> CaError {
    CaError::Unreachable {
        address: "fake".into(),
        message: "connection refused".into(),
    }
}

fn renewer(ca: &Arc<FakeCa>) -> (Renewer<Arc<FakeCa>, StdRng>, Arc<IdentityStore>) {
    let store = Arc::new(IdentityStore::awaiting(crate::ca::stand_in(&id()).unwrap()).unwrap());
    let r = Renewer {
        issuer: ca.clone(),
        store: store.clone(),
        metrics: CaMetrics::new(),
        backoff: Backoff::default(),
        rng: StdRng::seed_from_u64(7),
    };
    (r, store)
}

#[test]
fn backoff_doubles_to_its_cap_with_jitter_and_starts_over() {
    let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
    let mut rng = StdRng::seed_from_u64(1);
    let steps = [1, 2, 4, 8, 8, 8];
    for (i, step) in steps.into_iter().enumerate() {
        let d = b.next(&mut rng);
        let step = Duration::from_secs(step);
        assert!(
            d >= step / 2 && d <= step,
            "retry {i}: {d:?} outside {step:?}/2..={step:?}"
        );
    }
    b.reset();
    assert!(b.next(&mut rng) <= Duration::from_secs(1));
}

#[test]
fn renewal_is_due_at_half_life_a_little_sooner_with_jitter() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let end = t0 + Duration::from_secs(100);
    assert_eq!(refresh_in(t0, end, t0, 0.0), Duration::from_secs(50));
    assert_eq!(refresh_in(t0, end, t0, 1.0), Duration::from_millis(47_500));
    // Received late: only what is left of the first half.
    assert_eq!(
        refresh_in(t0, end, t0 + Duration::from_secs(20), 0.0),
        Duration::from_secs(30)
    );
    // Past the half-life already: soon, but never in a loop.
    assert_eq!(
        refresh_in(t0, end, t0 + Duration::from_secs(70), 0.0),
        MIN_REFRESH
    );
}

#[tokio::test(start_paused = true)]
async fn certificates_are_renewed_at_half_life() {
    let ca = FakeCa::new(Duration::from_secs(3600), vec![]);
    let (r, store) = renewer(&ca);
    let metrics = r.metrics.clone();
    assert_eq!(store.serving(SystemTime::now()), Err(NotServing::NotIssued));
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(r.run(shutdown));
    // Paused time jumps from sleep to sleep: three renewals take no real time.
    tokio::time::sleep(Duration::from_secs(3 * 1800 + 10)).await;
    assert_eq!(store.serving(SystemTime::now()), Ok(()));
    let gaps = ca.asked();
    assert_eq!(gaps.len(), 3, "first request and three renewals: {gaps:?}");
    for gap in gaps {
        // Half of an hour, up to 5% sooner; the real clock barely moves.
        assert!(
            gap >= Duration::from_secs(1700) && gap <= Duration::from_secs(1800),
            "{gap:?}"
        );
    }
    assert_eq!(metrics.requests("ok", ""), 4);
    assert_eq!(
        store.generation(),
        5,
        "each renewal installed a new identity"
    );
}

#[tokio::test(start_paused = true)]
async fn failures_are_retried_with_growing_delays_until_the_ca_answers() {
    let refused = CaError::Refused {
        address: "fake".into(),
        code: tonic::Code::Unauthenticated,
        message: "token expired".into(),
    };
    let failures = vec![unreachable(), unreachable(), refused, unreachable()];
    let ca = FakeCa::new(Duration::from_secs(3600), failures);
    let (mut r, store) = renewer(&ca);
    for _ in 0..4 {
        let wait = r.attempt().await;
        assert_eq!(store.serving(SystemTime::now()), Err(NotServing::NotIssued));
        tokio::time::sleep(wait).await;
    }
    let wait = r.attempt().await;
    assert_eq!(store.serving(SystemTime::now()), Ok(()));
    assert!(
        wait > Duration::from_secs(1700),
        "back to the half-life schedule"
    );
    let gaps = ca.asked();
    // Upper halves of 0.5, 1, 2 and 4 seconds.
    for (gap, step) in gaps.iter().zip([500, 1000, 2000, 4000]) {
        let step = Duration::from_millis(step);
        assert!(*gap >= step / 2 && *gap <= step, "{gaps:?}");
    }
    assert_eq!(r.metrics.requests("unreachable", ""), 3);
    assert_eq!(r.metrics.requests("refused", "Unauthenticated"), 1);
    assert_eq!(r.metrics.requests("ok", ""), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_renewal_keeps_the_certificate_until_it_expires() {
    let ca = FakeCa::new(Duration::from_secs(4), vec![]);
    let (mut r, store) = renewer(&ca);
    r.attempt().await;
    let first = store.bundle();
    ca.script
        .lock()
        .unwrap()
        .extend([unreachable(), unreachable()]);
    r.attempt().await;
    assert!(Arc::ptr_eq(&first, &store.bundle()), "still the first one");
    assert_eq!(store.serving(SystemTime::now()), Ok(()));
    // Readiness reads the wall clock, which paused tokio time does not move.
    let later = SystemTime::now() + Duration::from_secs(5);
    assert_eq!(store.serving(later), Err(NotServing::Expired));
}

#[tokio::test(start_paused = true)]
async fn a_certificate_for_another_identity_is_served_as_the_ca_named_it() {
    let ca = FakeCa::new(Duration::from_secs(3600), vec![]);
    let other = SpiffeId::new("cluster.local", "default", "from-the-token");
    *ca.issues.lock().unwrap() = Some(other.clone());
    let (mut r, store) = renewer(&ca);
    r.attempt().await;
    assert_eq!(store.bundle().id, other);
    assert_eq!(store.serving(SystemTime::now()), Ok(()));
}
