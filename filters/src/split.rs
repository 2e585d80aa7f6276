//! Weighted backend choice. Every request draws independently from the injected
//! RNG, so proportions are exact in expectation and there is no per-process
//! rotation state to share or to make traffic bursty (unlike Envoy's weighted
//! round-robin over clusters, which is deterministic but lumpy at low rates).

use rand::Rng;
use waypoint_ir::BackendRef;

/// Picks a backend's index with probability `weight / sum(weights)`. `None`
/// when the list is empty or every weight is 0 (the route answers 500, per
/// Gateway API).
pub fn pick(backends: &[BackendRef], rng: &mut impl Rng) -> Option<usize> {
    // u64: 2^32 backends at u32::MAX each would still not overflow.
    let total: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut live = backends.iter().enumerate().filter(|(_, b)| b.weight > 0);
    if backends.len() == 1 {
        // The overwhelmingly common single-destination route: no draw needed.
        return Some(0);
    }
    let mut point = rng.random_range(0..total);
    live.find(|(_, b)| match point.checked_sub(u64::from(b.weight)) {
        Some(rest) => {
            point = rest;
            false
        }
        None => true,
    })
    .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use waypoint_ir::{BackendTarget, ServiceIdx};

    fn backend(service: usize, weight: u32) -> BackendRef {
        let target = BackendTarget::Service {
            service: ServiceIdx(service),
            port: None,
            subset: None,
        };
        BackendRef::new(target, weight)
    }

    fn service_of(b: &BackendRef) -> usize {
        match b.target {
            BackendTarget::Service { service, .. } => service.0,
            BackendTarget::Invalid { .. } => usize::MAX,
        }
    }

    fn counts(backends: &[BackendRef], draws: usize, seed: u64) -> Vec<usize> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut n = vec![0; backends.len()];
        for _ in 0..draws {
            n[service_of(&backends[pick(backends, &mut rng).unwrap()])] += 1;
        }
        n
    }

    #[test]
    fn ninety_ten_over_ten_thousand_draws() {
        let n = counts(&[backend(0, 90), backend(1, 10)], 10_000, 7);
        // Binomial sd = sqrt(10000 * 0.9 * 0.1) = 30; allow 5 sd.
        assert!((8_850..=9_150).contains(&n[0]), "{n:?}");
        assert_eq!(n[0] + n[1], 10_000);
    }

    #[test]
    fn three_way_split_follows_weights() {
        let n = counts(&[backend(0, 1), backend(1, 2), backend(2, 7)], 20_000, 11);
        for (got, share) in n.iter().zip([0.1, 0.2, 0.7]) {
            let want = 20_000.0 * share;
            assert!((*got as f64 - want).abs() < 0.05 * 20_000.0, "{n:?}");
        }
    }

    #[test]
    fn zero_weight_is_never_picked() {
        let n = counts(&[backend(0, 0), backend(1, 5), backend(2, 0)], 5_000, 3);
        assert_eq!(n, vec![0, 5_000, 0]);
    }

    #[test]
    fn empty_or_all_zero_is_none() {
        let mut rng = StdRng::seed_from_u64(1);
        assert!(pick(&[], &mut rng).is_none());
        assert!(pick(&[backend(0, 0), backend(1, 0)], &mut rng).is_none());
        assert!(pick(&[backend(0, 0)], &mut rng).is_none());
    }

    #[test]
    fn draws_are_not_round_robin() {
        // A 50/50 split must produce runs longer than 1; round-robin never would.
        let mut rng = StdRng::seed_from_u64(5);
        let b = [backend(0, 1), backend(1, 1)];
        let seq: Vec<usize> = (0..200)
            .map(|_| service_of(&b[pick(&b, &mut rng).unwrap()]))
            .collect();
        assert!(seq.windows(2).any(|w| w[0] == w[1]), "{seq:?}");
    }

    #[test]
    fn huge_weights_do_not_overflow() {
        let n = counts(&[backend(0, u32::MAX), backend(1, u32::MAX)], 2_000, 9);
        assert!(n[0] > 800 && n[1] > 800, "{n:?}");
    }
}
