//! Endpoint choice within a service or subset, with pingora-load-balancing's round
//! robin. One balancer per (service, subset, service port), built with the snapshot.

use pingora::lb::selection::RoundRobin;
use pingora::lb::LoadBalancer;
use std::collections::HashMap;
use std::net::SocketAddr;
use waypoint_ir::{EndpointIdx, ServiceIdx, Snapshot};

type Key = (ServiceIdx, Option<usize>, u16);

struct Pool {
    lb: LoadBalancer<RoundRobin>,
    by_addr: HashMap<SocketAddr, EndpointIdx>,
}

#[derive(Default)]
pub struct Balancers {
    pools: HashMap<Key, Pool>,
}

impl Balancers {
    pub fn build(snapshot: &Snapshot) -> Self {
        let mut pools = HashMap::new();
        for (si, svc) in snapshot.services.iter().enumerate() {
            let subsets = std::iter::once(None).chain((0..svc.subsets.len()).map(Some));
            for subset in subsets {
                for port in &svc.ports {
                    let by_addr: HashMap<SocketAddr, EndpointIdx> = svc
                        .endpoints_for(subset.map(|i| &svc.subsets[i]), port.port)
                        .filter_map(|(idx, ep)| {
                            Some((SocketAddr::new(ep.address, ep.target_port(port.port)?), idx))
                        })
                        .collect();
                    if by_addr.is_empty() {
                        continue;
                    }
                    let lb = LoadBalancer::try_from_iter(by_addr.keys().copied())
                        .expect("socket addresses need no resolution");
                    pools.insert((ServiceIdx(si), subset, port.port), Pool { lb, by_addr });
                }
            }
        }
        Balancers { pools }
    }

    /// The next endpoint, or `None` when the set has no endpoint for that port.
    pub fn pick(
        &self,
        service: ServiceIdx,
        subset: Option<usize>,
        port: u16,
    ) -> Option<(EndpointIdx, SocketAddr)> {
        let pool = self.pools.get(&(service, subset, port))?;
        let backend = pool.lb.select(b"", 256)?;
        let addr = backend.addr.as_inet().copied()?;
        Some((*pool.by_addr.get(&addr)?, addr))
    }
}
