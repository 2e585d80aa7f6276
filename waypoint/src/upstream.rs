//! Upstream clusters: the endpoints of one (service, subset, port), with the
//! DestinationRule traffic policy that governs them: endpoint choice
//! ([`balance`]), admission ([`breaker`]) and ejection ([`outlier`]). Built once
//! per config generation from the previous one ([`carry`]), so that what they
//! count survives a new generation; the counters are shared by all workers.

pub mod balance;
pub mod breaker;
mod carry;
pub mod outlier;
pub mod stats;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use waypoint_ir::{EndpointIdx, ServiceIdx, Snapshot, TrafficPolicy};

pub type ClusterKey = (ServiceIdx, Option<usize>, u16);

/// An endpoint's address, requests in flight, and whether it is ejected.
pub type EndpointStatus = (SocketAddr, u32, bool);

pub struct Cluster {
    pub endpoints: Vec<(EndpointIdx, SocketAddr)>,
    pub policy: TrafficPolicy,
    /// Requests in flight per endpoint (least-request balancing reads it);
    /// an endpoint's counter is shared with the next generation's cluster.
    active: Vec<Arc<AtomicU32>>,
    balancer: balance::Balancer,
    /// Shared with the next generation while its limits stay the same, so
    /// requests admitted before a new generation still count.
    pub breaker: Arc<breaker::Breaker>,
    pub outlier: outlier::Outlier,
    /// Requests sent on each pooled connection, by its file descriptor, for
    /// `maxRequestsPerConnection`. A new connection on a reused descriptor
    /// starts again from one, so stale entries never count.
    per_connection: Arc<std::sync::Mutex<HashMap<i32, u32>>>,
}

/// Counts a try against its endpoint while it is in flight.
pub struct ActiveTry {
    cluster: Arc<Cluster>,
    slot: usize,
}

impl Drop for ActiveTry {
    fn drop(&mut self) {
        self.cluster.active[self.slot].fetch_sub(1, Ordering::Relaxed);
    }
}

impl ActiveTry {
    pub fn slot(&self) -> usize {
        self.slot
    }
}

impl Cluster {
    fn new(endpoints: Vec<(EndpointIdx, SocketAddr)>, policy: TrafficPolicy) -> Self {
        Cluster {
            active: endpoints.iter().map(|_| Default::default()).collect(),
            balancer: balance::Balancer::new(policy.lb, &endpoints),
            breaker: Arc::new(breaker::Breaker::new(&policy.pool)),
            outlier: outlier::Outlier::new(policy.outlier.clone(), endpoints.len()),
            per_connection: Default::default(),
            endpoints,
            policy,
        }
    }

    /// Counts a request on the upstream connection `fd`; true when it is the last
    /// one `maxRequestsPerConnection` allows, so the request should close it.
    pub fn last_on_connection(&self, fd: i32, reused: bool) -> bool {
        let Some(max) = self.policy.pool.max_requests_per_connection else {
            return false;
        };
        let mut counts = self.per_connection.lock().expect("per-connection lock");
        let n = if reused {
            counts.get(&fd).copied().unwrap_or(0) + 1
        } else {
            1
        };
        if n >= max {
            counts.remove(&fd);
            true
        } else {
            counts.insert(fd, n);
            false
        }
    }

    /// As `last_on_connection`, for an HBONE tunnel that has carried `requests`,
    /// this one included.
    pub fn last_on_tunnel(&self, requests: u32) -> bool {
        self.policy
            .pool
            .max_requests_per_connection
            .is_some_and(|max| requests >= max)
    }

    /// Picks an endpoint for the next try: not ejected (unless too few are
    /// healthy), and, for a retry, preferably one not tried yet (Istio's
    /// `previous_hosts` retry predicate).
    pub fn pick(self: &Arc<Self>, tried: &[SocketAddr]) -> Option<(ActiveTry, SocketAddr)> {
        let usable = self.outlier.usable();
        let usable = |slot: usize| usable.allows(slot);
        let fresh = |slot: usize| usable(slot) && !tried.contains(&self.endpoints[slot].1);
        let slot = self
            .balancer
            .pick(&self.active, &fresh)
            .or_else(|| self.balancer.pick(&self.active, &usable))?;
        self.active[slot].fetch_add(1, Ordering::Relaxed);
        let addr = self.endpoints[slot].1;
        Some((
            ActiveTry {
                cluster: self.clone(),
                slot,
            },
            addr,
        ))
    }
}

#[derive(Default)]
pub struct Upstreams {
    clusters: HashMap<ClusterKey, Arc<Cluster>>,
}

impl Upstreams {
    pub fn build(snapshot: &Snapshot) -> Self {
        Self::next(snapshot, None)
    }

    /// The clusters of `snapshot`, each carrying over what the cluster of the
    /// same name in `previous` counted (see [`carry`]).
    pub fn next(snapshot: &Snapshot, previous: Option<(&Snapshot, &Upstreams)>) -> Self {
        let previous = previous.map(|(s, u)| carry::Previous::new(s, u));
        let mut clusters = HashMap::new();
        for (si, svc) in snapshot.services.iter().enumerate() {
            let subsets = std::iter::once(None).chain((0..svc.subsets.len()).map(Some));
            if let Some(p) = previous
                .as_ref()
                .filter(|p| p.unchanged(ServiceIdx(si), svc))
            {
                for subset in subsets {
                    for port in &svc.ports {
                        let key = (ServiceIdx(si), subset, port.port);
                        if let Some(c) = p.cluster(&key) {
                            clusters.insert(key, c.clone());
                        }
                    }
                }
                continue;
            }
            for subset in subsets {
                for port in &svc.ports {
                    let endpoints = waypoint_filters::endpoints(svc, subset, port.port);
                    if endpoints.is_empty() {
                        continue;
                    }
                    let policy = svc.traffic_policy(subset, port.port).clone();
                    let name = carry::Name::of(svc, subset, port.port);
                    let cluster = match previous.as_ref().and_then(|p| p.get(&name)) {
                        Some(old) => carry::next(old, endpoints, policy),
                        None => Arc::new(Cluster::new(endpoints, policy)),
                    };
                    clusters.insert((ServiceIdx(si), subset, port.port), cluster);
                }
            }
        }
        Upstreams { clusters }
    }

    pub fn cluster(&self, key: ClusterKey) -> Option<&Arc<Cluster>> {
        self.clusters.get(&key)
    }

    /// Every cluster with its endpoints' state, for the admin `/clusters` page,
    /// sorted by name.
    pub fn status(&self, snapshot: &Snapshot) -> Vec<(String, Vec<EndpointStatus>)> {
        let mut out: Vec<_> = self
            .clusters
            .iter()
            .map(|(&(svc, subset, port), c)| {
                let s = snapshot.service(svc);
                let subset = subset.map(|i| s.subsets[i].name.as_str()).unwrap_or("");
                let usable = c.outlier.usable();
                let eps = c
                    .endpoints
                    .iter()
                    .enumerate()
                    .map(|(i, (_, addr))| {
                        (
                            *addr,
                            c.active[i].load(Ordering::Relaxed),
                            !usable.allows(i),
                        )
                    })
                    .collect();
                (format!("outbound|{port}|{subset}|{}", s.hostname), eps)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}
