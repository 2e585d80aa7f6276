//! Istio's standard request metrics, with `reporter="waypoint"` and Istio's label
//! set, plus the waypoint's own counters for what the filters do. Defined once;
//! label values come from the model (never raw paths or header values), so
//! cardinality stays bounded by services, workloads and status codes.

use crate::identity::SpiffeId;
use crate::limits::Rejected;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use waypoint_filters::ResponseFlag;
use waypoint_ir::{EndpointIdx, ServiceIdx};

/// Istio's standard labels, in order.
pub const LABELS: &[&str] = &[
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_canonical_service",
    "source_canonical_revision",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
];

/// Istio's duration buckets, in milliseconds.
const DURATION_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Istio's size buckets, in bytes: 1 to 10^9.
const BYTE_BUCKETS: &[f64] = &[1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// Labels of the TCP metrics for tunnels: who, to which service, how secured.
pub const TCP_LABELS: &[&str] = &[
    "reporter",
    "source_principal",
    "source_workload_namespace",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "connection_security_policy",
];

pub struct Metrics {
    registry: Registry,
    pub tcp_opened: IntCounterVec,
    pub tcp_closed: IntCounterVec,
    pub tcp_sent: IntCounterVec,
    pub tcp_received: IntCounterVec,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub request_bytes: HistogramVec,
    pub response_bytes: HistogramVec,
    /// Requests ended by a filter, by response flag (RL, FI, UO, UT, NR, ...).
    pub flagged: IntCounterVec,
    pub retries: IntCounterVec,
    pub ejections: IntCounterVec,
    /// Requests denied by an AuthorizationPolicy, by the policy that decided
    /// (`none`: ALLOW policies apply and none matched).
    pub authz_denied: IntCounterVec,
    /// External authorization checks by provider and result, Envoy's
    /// `ext_authz` stats: `ok`, `denied`, `error`, `failure_mode_allowed`.
    pub ext_authz: IntCounterVec,
    /// What dry-run AuthorizationPolicies would have done, by action and
    /// result (Envoy's `rbac.istio_dry_run_*_shadow_*` stats).
    pub authz_dry_run: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub config_generation: IntGauge,
    /// 1 while the config source (the Kubernetes API) answers.
    pub config_source_up: IntGauge,
    /// Objects the Kubernetes source holds, and resources it rejected.
    pub config_objects: IntGauge,
    pub config_rejected: IntGauge,
    /// Seconds to scope, translate and swap in one Kubernetes snapshot.
    pub config_build: Histogram,
    /// Seconds to apply one endpoint change to the last snapshot.
    pub config_endpoint_update: Histogram,
    /// Access-log lines dropped because the writer fell behind.
    pub access_log_dropped: IntCounter,
    /// Downstream requests, streams and connections refused, by reason.
    pub rejected: Rejections,
}

/// `waypoint_downstream_rejected_total{reason}`, each reason's counter resolved
/// once. `Default` gives counters registered nowhere, for unit tests.
#[derive(Clone)]
pub struct Rejections(Vec<IntCounter>);

impl Rejections {
    fn new() -> (Self, IntCounterVec) {
        let vec = IntCounterVec::new(
            Opts::new(
                "waypoint_downstream_rejected_total",
                "Downstream requests, streams and connections refused, by reason.",
            ),
            &["reason"],
        )
        .expect("static metric");
        let counters = Rejected::ALL
            .iter()
            .map(|r| vec.with_label_values(&[r.as_str()]))
            .collect();
        (Rejections(counters), vec)
    }

    fn slot(reason: Rejected) -> usize {
        Rejected::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("every reason is in ALL")
    }

    pub fn inc(&self, reason: Rejected) {
        self.0[Self::slot(reason)].inc();
    }

    pub fn get(&self, reason: Rejected) -> u64 {
        self.0[Self::slot(reason)].get()
    }
}

impl Default for Rejections {
    fn default() -> Self {
        Rejections::new().0
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "istio_requests_total",
                "Requests, by Istio's standard labels.",
            ),
            LABELS,
        )
        .expect("static metric");
        let hist = |name: &str, help: &str, buckets: &[f64]| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                LABELS,
            )
            .expect("static metric")
        };
        let duration = hist(
            "istio_request_duration_milliseconds",
            "Request duration.",
            DURATION_BUCKETS,
        );
        let request_bytes = hist("istio_request_bytes", "Request body sizes.", BYTE_BUCKETS);
        let response_bytes = hist("istio_response_bytes", "Response body sizes.", BYTE_BUCKETS);
        let flagged = IntCounterVec::new(
            Opts::new(
                "waypoint_response_flags_total",
                "Requests by Envoy response flag.",
            ),
            &["response_flags"],
        )
        .expect("static metric");
        let retries = IntCounterVec::new(
            Opts::new("waypoint_upstream_retries_total", "Retries sent upstream."),
            &["destination_service"],
        )
        .expect("static metric");
        let ejections = IntCounterVec::new(
            Opts::new(
                "waypoint_outlier_ejections_total",
                "Endpoints ejected by outlier detection.",
            ),
            &["destination_service"],
        )
        .expect("static metric");
        let authz_denied = IntCounterVec::new(
            Opts::new(
                "waypoint_authz_denied_total",
                "Requests denied by an AuthorizationPolicy, by the policy that decided.",
            ),
            &["policy"],
        )
        .expect("static metric");
        let ext_authz = IntCounterVec::new(
            Opts::new(
                "waypoint_ext_authz_total",
                "External authorization checks (CUSTOM policies) by provider and result.",
            ),
            &["provider", "result"],
        )
        .expect("static metric");
        let authz_dry_run = IntCounterVec::new(
            Opts::new(
                "waypoint_authz_dry_run_total",
                "Requests and connections judged by dry-run AuthorizationPolicies, by action and what they would have done.",
            ),
            &["action", "result"],
        )
        .expect("static metric");
        let config_reloads = IntCounterVec::new(
            Opts::new("waypoint_config_reloads_total", "Config reloads by result."),
            &["result"],
        )
        .expect("static metric");
        let tcp = |name: &str, help: &str| {
            IntCounterVec::new(Opts::new(name, help), TCP_LABELS).expect("static metric")
        };
        let tcp_opened = tcp(
            "istio_tcp_connections_opened_total",
            "HBONE tunnels opened.",
        );
        let tcp_closed = tcp(
            "istio_tcp_connections_closed_total",
            "HBONE tunnels closed.",
        );
        let tcp_sent = tcp(
            "istio_tcp_sent_bytes_total",
            "Bytes sent to clients through tunnels.",
        );
        let tcp_received = tcp(
            "istio_tcp_received_bytes_total",
            "Bytes received from clients through tunnels.",
        );
        let config_generation = IntGauge::new(
            "waypoint_config_generation",
            "The config generation in use.",
        )
        .expect("static metric");
        for c in [
            &requests,
            &flagged,
            &retries,
            &ejections,
            &authz_denied,
            &ext_authz,
            &authz_dry_run,
            &config_reloads,
            &tcp_opened,
            &tcp_closed,
            &tcp_sent,
            &tcp_received,
        ] {
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
        }
        for h in [&duration, &request_bytes, &response_bytes] {
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
        }
        let access_log_dropped = IntCounter::new(
            "waypoint_access_log_dropped_total",
            "Access-log lines dropped because stdout could not keep up.",
        )
        .expect("static metric");
        registry
            .register(Box::new(config_generation.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(access_log_dropped.clone()))
            .expect("unique metric");
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("static metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let config_source_up = gauge(
            "waypoint_config_source_up",
            "1 while the config source answers (the Kubernetes API; always 1 for a directory).",
        );
        config_source_up.set(1);
        let config_objects = gauge(
            "waypoint_config_objects",
            "Objects the Kubernetes source holds in memory.",
        );
        let config_rejected = gauge(
            "waypoint_config_rejected_resources",
            "Resources left out of the config because they failed validation.",
        );
        let build_time = |name: &str, help: &str| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]))
            .expect("static metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let config_build = build_time(
            "waypoint_config_build_seconds",
            "Time to scope, translate and swap in a whole config from the Kubernetes API.",
        );
        let config_endpoint_update = build_time(
            "waypoint_config_endpoint_update_seconds",
            "Time to apply an endpoint change (Pods, EndpointSlices) to the config in use, translating only the Services it concerns.",
        );
        let (rejected, rejected_vec) = Rejections::new();
        registry
            .register(Box::new(rejected_vec))
            .expect("unique metric");
        registry
            .register(Box::new(crate::hbone::keepalive::UPSTREAM_TIMEOUTS.clone()))
            .expect("unique metric");
        config_generation.set(1);
        Metrics {
            registry,
            tcp_opened,
            tcp_closed,
            tcp_sent,
            tcp_received,
            requests,
            duration,
            request_bytes,
            response_bytes,
            flagged,
            retries,
            ejections,
            authz_denied,
            ext_authz,
            authz_dry_run,
            config_reloads,
            config_generation,
            config_source_up,
            config_objects,
            config_rejected,
            config_build,
            config_endpoint_update,
            access_log_dropped,
            rejected,
        }
    }

    /// The per-request series of one label set.
    pub fn series(&self, labels: &RequestLabels) -> RequestSeries {
        let values = labels.ordered();
        RequestSeries {
            requests: self.requests.with_label_values(&values),
            duration: self.duration.with_label_values(&values),
            request_bytes: self.request_bytes.with_label_values(&values),
            response_bytes: self.response_bytes.with_label_values(&values),
        }
    }

    /// Adds metrics that are read at scrape time rather than counted as they happen.
    pub fn register(&self, c: impl prometheus::core::Collector + 'static) {
        if let Err(e) = self.registry.register(Box::new(c)) {
            log::error!("registering metrics: {e}");
        }
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The four series a request is counted in, for one set of label values.
pub struct RequestSeries {
    pub requests: IntCounter,
    pub duration: Histogram,
    pub request_bytes: Histogram,
    pub response_bytes: Histogram,
}

/// Everything but the source that decides a request's label values: destination
/// service and endpoint, status, response flag, and whether the retry limit
/// ended it (URX). Indices are only meaningful within one config generation, so
/// a cache lives in that generation's runtime and goes with it on reload.
/// (service, endpoint, status, flag, retry limit hit, gRPC: `Some(status)`).
pub type SeriesKey = (
    Option<ServiceIdx>,
    Option<EndpointIdx>,
    u16,
    ResponseFlag,
    bool,
    Option<Option<u8>>,
);

/// Resolved series by label key. Resolving means building 25 label strings and
/// hashing them four times; a hit is a read lock and two hash lookups, with no
/// allocation. Bounded by the label sets themselves.
#[derive(Default)]
pub struct SeriesCache {
    map: RwLock<HashMap<SeriesKey, BySource>>,
}

/// Keyed apart from the rest so a lookup borrows the request's source.
type BySource = HashMap<Option<Arc<SpiffeId>>, Arc<RequestSeries>>;

impl SeriesCache {
    pub fn get(
        &self,
        key: SeriesKey,
        source: &Option<Arc<SpiffeId>>,
        resolve: impl FnOnce() -> RequestSeries,
    ) -> Arc<RequestSeries> {
        let found = self
            .map
            .read()
            .expect("series cache lock")
            .get(&key)
            .and_then(|by_source| by_source.get(source).cloned());
        if let Some(series) = found {
            return series;
        }
        let series = Arc::new(resolve());
        self.map
            .write()
            .expect("series cache lock")
            .entry(key)
            .or_default()
            .entry(source.clone())
            .or_insert(series)
            .clone()
    }
}

/// Istio's label values for one request; "unknown" where the model does not know.
#[derive(Default)]
pub struct RequestLabels {
    pub values: BTreeMap<&'static str, String>,
}

impl RequestLabels {
    pub fn set(&mut self, name: &'static str, value: impl Into<String>) {
        self.values.insert(name, value.into());
    }

    pub fn ordered(&self) -> Vec<&str> {
        LABELS
            .iter()
            .map(|l| self.values.get(l).map(String::as_str).unwrap_or("unknown"))
            .collect()
    }
}

/// Istio's canonical service and revision of a workload, from its labels.
pub fn canonical(labels: &waypoint_ir::Labels) -> (String, String) {
    let get = |keys: &[&str]| keys.iter().find_map(|k| labels.get(k)).cloned();
    let service = get(&[
        "service.istio.io/canonical-name",
        "app.kubernetes.io/name",
        "app",
    ])
    .unwrap_or_else(|| "unknown".into());
    let revision = get(&[
        "service.istio.io/canonical-revision",
        "app.kubernetes.io/version",
        "version",
    ])
    .unwrap_or_else(|| "latest".into());
    (service, revision)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_resolved_once_per_label_key_and_source() {
        let metrics = Metrics::new();
        let cache = SeriesCache::default();
        let resolved = std::cell::Cell::new(0);
        let mut labels = RequestLabels::default();
        labels.set("response_code", "200");
        let get = |key: SeriesKey, source: &Option<Arc<SpiffeId>>| {
            cache.get(key, source, || {
                resolved.set(resolved.get() + 1);
                metrics.series(&labels)
            })
        };
        let key = (
            Some(ServiceIdx(0)),
            Some(EndpointIdx(1)),
            200,
            ResponseFlag::None,
            false,
            None,
        );
        let alice = Some(Arc::new(SpiffeId::new("cluster.local", "default", "alice")));
        let first = get(key, &alice);
        assert!(Arc::ptr_eq(&first, &get(key, &alice)));
        assert_eq!(resolved.get(), 1);
        get(key, &None);
        get((key.0, key.1, 503, key.3, key.4, None), &alice);
        get(
            (
                key.0,
                key.1,
                200,
                ResponseFlag::UpstreamRequestTimeout,
                false,
                None,
            ),
            &alice,
        );
        assert_eq!(
            resolved.get(),
            4,
            "each label key and source resolves on its own"
        );
    }
}
