//! Gauges of the upstream side, read from the live state when Prometheus scrapes
//! (so the data path pays nothing for them): per cluster, the endpoints outlier
//! detection has ejected and the requests in flight; the HBONE pool's size, and
//! its tunnels opened and reused, summed over the workers' pools.

use crate::hbone::pool::HbonePool;
use crate::state::State;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntGauge, IntGaugeVec, Opts};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

pub struct UpstreamGauges {
    state: Arc<State>,
    /// Each worker's pool.
    hbone: Vec<Arc<HbonePool>>,
    ejected: IntGaugeVec,
    active: IntGaugeVec,
    connections: IntGauge,
    tunnels: IntGauge,
    idle_tunnels: IntGauge,
    opened: IntCounter,
    reused: IntCounter,
    /// One scrape at a time: each rebuilds the per-cluster series from scratch.
    scraping: Mutex<()>,
}

impl UpstreamGauges {
    pub fn new(state: Arc<State>, hbone: Vec<Arc<HbonePool>>) -> Self {
        let per_cluster = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), &["cluster_name"]).expect("static metric")
        };
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("static metric");
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("static metric");
        UpstreamGauges {
            state,
            hbone,
            ejected: per_cluster(
                "waypoint_upstream_ejected_endpoints",
                "Endpoints currently ejected by outlier detection.",
            ),
            active: per_cluster(
                "waypoint_upstream_requests_active",
                "Requests in flight to the cluster's endpoints.",
            ),
            connections: gauge(
                "waypoint_hbone_upstream_connections",
                "Pooled HBONE connections to mesh endpoints' nodes.",
            ),
            tunnels: gauge(
                "waypoint_hbone_upstream_tunnels",
                "CONNECT tunnels open on pooled HBONE connections, in use or idle.",
            ),
            idle_tunnels: gauge(
                "waypoint_hbone_upstream_idle_tunnels",
                "Upstream CONNECT tunnels kept open, idle, for the next request.",
            ),
            opened: counter(
                "waypoint_hbone_upstream_tunnels_opened_total",
                "Upstream CONNECT tunnels opened.",
            ),
            reused: counter(
                "waypoint_hbone_upstream_tunnels_reused_total",
                "Requests sent on an idle upstream tunnel instead of a new one.",
            ),
            scraping: Mutex::new(()),
        }
    }
}

impl Collector for UpstreamGauges {
    fn desc(&self) -> Vec<&Desc> {
        [
            self.ejected.desc(),
            self.active.desc(),
            self.connections.desc(),
            self.tunnels.desc(),
            self.idle_tunnels.desc(),
            self.opened.desc(),
            self.reused.desc(),
        ]
        .concat()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _one = self.scraping.lock().expect("scrape lock");
        // Clusters come and go with config; only the current ones are reported.
        self.ejected.reset();
        self.active.reset();
        let rt = self.state.current();
        for (name, endpoints) in rt.upstreams.status(&rt.snapshot) {
            let ejected = endpoints.iter().filter(|(_, _, out)| *out).count();
            let active: u32 = endpoints.iter().map(|(_, n, _)| n).sum();
            self.ejected
                .with_label_values(&[name.as_str()])
                .set(ejected as i64);
            self.active
                .with_label_values(&[name.as_str()])
                .set(i64::from(active));
        }
        if !self.hbone.is_empty() {
            let (mut connections, mut tunnels, mut idle, mut opened, mut reused) =
                (0usize, 0usize, 0usize, 0u64, 0u64);
            for pool in &self.hbone {
                let (c, t) = pool.size();
                let stats = pool.tunnel_stats();
                connections += c;
                tunnels += t;
                idle += stats.idle.load(Ordering::Acquire);
                opened += stats.opened.load(Ordering::Relaxed);
                reused += stats.reused.load(Ordering::Relaxed);
            }
            self.connections.set(connections as i64);
            self.tunnels.set(tunnels as i64);
            self.idle_tunnels.set(idle as i64);
            // Counters live in the pools; catch the exported ones up.
            for (counter, now) in [(&self.opened, opened), (&self.reused, reused)] {
                counter.inc_by(now.saturating_sub(counter.get()));
            }
        }
        [
            self.ejected.collect(),
            self.active.collect(),
            self.connections.collect(),
            self.tunnels.collect(),
            self.idle_tunnels.collect(),
            self.opened.collect(),
            self.reused.collect(),
        ]
        .concat()
    }
}
