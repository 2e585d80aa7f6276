//! Endpoint choice within a cluster. Round robin and random come from
//! pingora-load-balancing; least request (Istio's default) is Envoy's
//! power-of-two-choices over requests in flight, which that crate lacks.

use pingora::lb::selection::{Random, RoundRobin};
use pingora::lb::LoadBalancer;
use rand::Rng;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use waypoint_ir::{EndpointIdx, LbPolicy};

pub enum Balancer {
    RoundRobin(Pingora<RoundRobin>),
    Random(Pingora<Random>),
    LeastRequest { n: usize },
}

pub struct Pingora<S: pingora::lb::selection::BackendSelection> {
    lb: LoadBalancer<S>,
    slots: HashMap<SocketAddr, usize>,
}

impl<S> Pingora<S>
where
    S: pingora::lb::selection::BackendSelection + 'static,
    S::Iter: pingora::lb::selection::BackendIter,
{
    fn new(endpoints: &[(EndpointIdx, SocketAddr)]) -> Self {
        let slots: HashMap<SocketAddr, usize> = endpoints
            .iter()
            .enumerate()
            .map(|(i, (_, a))| (*a, i))
            .collect();
        let lb = LoadBalancer::try_from_iter(slots.keys().copied())
            .expect("socket addresses need no resolution");
        Pingora { lb, slots }
    }

    fn pick(&self, accept: &dyn Fn(usize) -> bool) -> Option<usize> {
        let slot =
            |b: &pingora::lb::Backend| b.addr.as_inet().and_then(|a| self.slots.get(a)).copied();
        let backend = self.lb.select_with(b"", self.slots.len() * 2, |b, _| {
            slot(b).is_some_and(accept)
        })?;
        slot(&backend)
    }
}

impl Balancer {
    pub fn new(policy: LbPolicy, endpoints: &[(EndpointIdx, SocketAddr)]) -> Self {
        match policy {
            LbPolicy::RoundRobin => Balancer::RoundRobin(Pingora::new(endpoints)),
            LbPolicy::Random => Balancer::Random(Pingora::new(endpoints)),
            LbPolicy::LeastRequest => Balancer::LeastRequest { n: endpoints.len() },
        }
    }

    /// A slot (index into the cluster's endpoints) that `accept` allows.
    pub fn pick(&self, active: &[Arc<AtomicU32>], accept: &dyn Fn(usize) -> bool) -> Option<usize> {
        match self {
            Balancer::RoundRobin(p) => p.pick(accept),
            Balancer::Random(p) => p.pick(accept),
            Balancer::LeastRequest { n } => least_request(*n, active, accept, &mut rand::rng()),
        }
    }
}

/// Two random acceptable endpoints, drawn independently as Envoy draws them; the
/// one with fewer requests in flight wins. Draws do not allocate: a rejected draw
/// is drawn again, and only when most endpoints are refused does it scan.
fn least_request(
    n: usize,
    active: &[Arc<AtomicU32>],
    accept: &dyn Fn(usize) -> bool,
    rng: &mut impl Rng,
) -> Option<usize> {
    if n == 0 {
        return None;
    }
    let draw = |rng: &mut dyn rand::RngCore| {
        (0..2 * n.max(4))
            .map(|_| rng.random_range(0..n))
            .find(|&i| accept(i))
            .or_else(|| (0..n).find(|&i| accept(i)))
    };
    let a = draw(rng)?;
    let b = draw(rng)?;
    let load = |i: usize| active[i].load(Ordering::Relaxed);
    Some(if load(b) < load(a) { b } else { a })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn least_request_prefers_the_idle_endpoint_and_skips_refused_ones() {
        let active: Vec<Arc<AtomicU32>> = [5, 0, 5]
            .into_iter()
            .map(|n| Arc::new(AtomicU32::new(n)))
            .collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut hits = [0; 3];
        for _ in 0..3000 {
            hits[least_request(3, &active, &|_| true, &mut rng).unwrap()] += 1;
        }
        // Endpoint 1 wins whenever it is one of the two draws: 1 - (2/3)^2 = 5/9.
        assert!((1550..=1780).contains(&hits[1]), "{hits:?}");
        assert_eq!(least_request(3, &active, &|i| i == 2, &mut rng), Some(2));
        assert_eq!(least_request(3, &active, &|_| false, &mut rng), None);
    }

    #[test]
    fn least_request_spreads_when_all_are_idle() {
        let active: Vec<Arc<AtomicU32>> = (0..2).map(|_| Default::default()).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let picks: Vec<usize> = (0..1000)
            .filter_map(|_| least_request(2, &active, &|_| true, &mut rng))
            .collect();
        let ones = picks.iter().filter(|&&p| p == 1).count();
        assert!((400..=600).contains(&ones), "{ones}");
    }
}
