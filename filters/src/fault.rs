//! Istio fault injection: whether this request is delayed, aborted, or both.
//! The draw is per request and independent for delay and abort, as in Envoy's
//! fault filter; the adapter sleeps or replies.

use rand::Rng;
use std::time::Duration;
use waypoint_ir::{Abort, Fault, Percent};

#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultAction {
    /// Hold the request this long before anything else happens to it.
    pub delay: Option<Duration>,
    /// Then answer this instead of forwarding.
    pub abort: Option<Abort>,
}

fn hit(p: Percent, rng: &mut impl Rng) -> bool {
    // random() is in [0, 1): 100% always hits, 0% never does.
    rng.random::<f64>() * 100.0 < p.value()
}

pub fn decide(fault: &Fault, rng: &mut impl Rng) -> FaultAction {
    FaultAction {
        delay: fault.delay.filter(|(_, p)| hit(*p, rng)).map(|(d, _)| d),
        abort: fault.abort.filter(|(_, p)| hit(*p, rng)).map(|(s, _)| s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn fault(delay_pct: f64, abort_pct: f64) -> Fault {
        Fault {
            delay: Some((Duration::from_millis(5), Percent::new(delay_pct).unwrap())),
            abort: Some((Abort::Http(503), Percent::new(abort_pct).unwrap())),
        }
    }

    #[test]
    fn percentages_hold_including_fractions() {
        let mut rng = StdRng::seed_from_u64(7);
        let f = fault(50.0, 0.1);
        let n = 200_000;
        let (mut delays, mut aborts) = (0, 0);
        for _ in 0..n {
            let a = decide(&f, &mut rng);
            delays += a.delay.is_some() as u32;
            aborts += a.abort.is_some() as u32;
        }
        // 0.1% of 200k = 200 (sd ~14); 50% = 100k (sd ~224).
        assert!((140..=260).contains(&aborts), "aborts {aborts}");
        assert!((98_900..=101_100).contains(&delays), "delays {delays}");
    }

    #[test]
    fn zero_and_hundred_are_exact() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..10_000 {
            let a = decide(&fault(0.0, 100.0), &mut rng);
            assert_eq!(
                a,
                FaultAction {
                    delay: None,
                    abort: Some(Abort::Http(503))
                }
            );
        }
    }
}
