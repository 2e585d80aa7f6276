//! What a cluster's counters carry into the next config generation. With the
//! Kubernetes source a new generation comes with every pod that starts or
//! stops, so a generation must not forget what the data path has learned: an
//! endpoint ejected by outlier detection stays ejected, requests in flight
//! still count against the circuit breaker, and least-request still sees them.
//! Clusters are matched by name (`outbound|port|subset|host`), endpoints by
//! address, as Envoy keeps a cluster's hosts across endpoint updates.

use super::Cluster;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use waypoint_ir::{EndpointIdx, Service, ServiceIdx, Snapshot, TrafficPolicy};

/// A cluster's name, stable across generations (indexes are not).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Name {
    host: String,
    subset: Option<String>,
    port: u16,
}

impl Name {
    pub fn of(svc: &Service, subset: Option<usize>, port: u16) -> Self {
        Name {
            host: svc.hostname.clone(),
            subset: subset.map(|i| svc.subsets[i].name.clone()),
            port,
        }
    }
}

/// The previous generation: its clusters by index and, once a changed
/// Service needs them, by name.
pub struct Previous<'a> {
    snapshot: &'a Snapshot,
    upstreams: &'a super::Upstreams,
    by_name: std::cell::OnceCell<HashMap<Name, &'a Arc<Cluster>>>,
}

impl<'a> Previous<'a> {
    pub fn new(snapshot: &'a Snapshot, upstreams: &'a super::Upstreams) -> Self {
        Previous {
            snapshot,
            upstreams,
            by_name: Default::default(),
        }
    }

    /// Whether service `idx` of the new snapshot is the very one the previous
    /// had at that index (an endpoint change shares every other Service), so
    /// its clusters can be taken as they are.
    pub fn unchanged(&self, idx: ServiceIdx, svc: &Arc<Service>) -> bool {
        self.snapshot
            .services
            .get(idx.0)
            .is_some_and(|old| Arc::ptr_eq(old, svc))
    }

    pub fn cluster(&self, key: &super::ClusterKey) -> Option<&'a Arc<Cluster>> {
        self.upstreams.clusters.get(key)
    }

    pub fn get(&self, name: &Name) -> Option<&'a Arc<Cluster>> {
        let by_name = self.by_name.get_or_init(|| {
            self.upstreams
                .clusters
                .iter()
                .map(|(&(svc, subset, port), c)| {
                    (Name::of(self.snapshot.service(svc), subset, port), c)
                })
                .collect()
        });
        by_name.get(name).copied()
    }
}

/// The cluster for `endpoints` under `policy`, given the previous
/// generation's cluster of the same name: that very cluster when nothing
/// changed, else a new one that keeps what still applies.
pub fn next(
    old: &Arc<Cluster>,
    endpoints: Vec<(EndpointIdx, SocketAddr)>,
    policy: TrafficPolicy,
) -> Arc<Cluster> {
    if old.endpoints == endpoints && old.policy == policy {
        return old.clone();
    }
    let mut new = Cluster::new(endpoints, policy);
    let slots: HashMap<SocketAddr, usize> = old
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, (_, addr))| (*addr, i))
        .collect();
    let was: Vec<Option<usize>> = new
        .endpoints
        .iter()
        .map(|(_, addr)| slots.get(addr).copied())
        .collect();
    for (slot, was) in was.iter().enumerate() {
        if let Some(i) = was {
            new.active[slot] = old.active[*i].clone();
        }
    }
    if new.policy.pool == old.policy.pool {
        new.breaker = old.breaker.clone();
        new.per_connection = old.per_connection.clone();
    }
    if new.policy.outlier == old.policy.outlier {
        new.outlier.carry(&old.outlier, &was);
    }
    Arc::new(new)
}

#[cfg(test)]
mod tests {
    use super::super::breaker::Overflow;
    use super::super::Upstreams;
    use waypoint_filters::testing::SnapshotBuilder;
    use waypoint_ir::{ConnectionPool, ServiceIdx, Snapshot};

    /// Service `a` with pods at `10.1.0.<octet>`, in that order, and at most
    /// `max` requests in flight.
    fn world(pods: &[u8], max: u32) -> Snapshot {
        let mut b = SnapshotBuilder::new();
        let svc = b.service("a", "10.0.0.1".parse().unwrap(), 80);
        for i in pods {
            b.endpoint(svc, format!("10.1.0.{i}").parse().unwrap(), 8080, &[]);
        }
        let mut s = b.build();
        std::sync::Arc::make_mut(&mut s.services[0]).traffic.pool = ConnectionPool {
            max_requests: Some(max),
            ..Default::default()
        };
        s
    }

    #[tokio::test]
    async fn requests_in_flight_count_in_the_next_generation_while_its_limits_hold() {
        let one = world(&[0], 1);
        let first = Upstreams::build(&one);
        let c1 = first.cluster((ServiceIdx(0), None, 80)).unwrap().clone();
        let _held = c1.breaker.admit().await.unwrap();
        let (_try, _) = c1.pick(&[]).unwrap();

        // The new pod comes first: state must follow the address, not the slot.
        let two = world(&[1, 0], 1);
        let second = Upstreams::next(&two, Some((&one, &first)));
        let c2 = second.cluster((ServiceIdx(0), None, 80)).unwrap();
        assert!(!std::sync::Arc::ptr_eq(&c1, c2), "the endpoints changed");
        assert_eq!(c2.breaker.admit().await.err(), Some(Overflow::Requests));
        let busy = c1.endpoints[0].1;
        let in_flight: Vec<(bool, u32)> = c2
            .endpoints
            .iter()
            .zip(&c2.active)
            .map(|((_, addr), n)| (*addr == busy, n.load(std::sync::atomic::Ordering::Relaxed)))
            .collect();
        assert_eq!(
            in_flight,
            [(false, 0), (true, 1)],
            "least request sees the try still in flight, on its endpoint"
        );

        let same = Upstreams::next(&two, Some((&two, &second)));
        let c3 = same.cluster((ServiceIdx(0), None, 80)).unwrap();
        assert!(
            std::sync::Arc::ptr_eq(c2, c3),
            "nothing changed: the same cluster"
        );

        let raised = world(&[1, 0], 2);
        let third = Upstreams::next(&raised, Some((&two, &same)));
        let c4 = third.cluster((ServiceIdx(0), None, 80)).unwrap();
        assert!(
            c4.breaker.admit().await.is_ok(),
            "new limits start counting anew"
        );
    }
}
