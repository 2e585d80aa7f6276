//! The CA client's series, registered into the waypoint's one registry.

use super::CaError;
use prometheus::{IntCounterVec, IntGauge, Opts};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone)]
pub struct CaMetrics {
    /// `waypoint_ca_requests_total{result, grpc_status}`.
    requests: IntCounterVec,
    /// When the certificate in use expires, in Unix seconds (0 before the first).
    expiry: IntGauge,
}

impl CaMetrics {
    pub fn new() -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "waypoint_ca_requests_total",
                "Certificate requests to the CA, by result (ok, unreachable, tls_error, refused, bad_response, local_error) and the gRPC status of a refusal.",
            ),
            &["result", "grpc_status"],
        )
        .expect("static metric");
        let expiry = IntGauge::new(
            "waypoint_certificate_expiry_timestamp_seconds",
            "When the workload certificate in use expires, in Unix seconds; 0 until the CA has issued one.",
        )
        .expect("static metric");
        CaMetrics { requests, expiry }
    }

    /// Serves these series from the waypoint's `/stats/prometheus`.
    pub fn register(&self, metrics: &crate::metrics::Metrics) {
        metrics.register(self.requests.clone());
        metrics.register(self.expiry.clone());
    }

    pub fn record(&self, outcome: Result<(), &CaError>) {
        let (result, status) = match outcome {
            Ok(()) => ("ok", String::new()),
            Err(e) => (e.result(), e.grpc_status()),
        };
        self.requests.with_label_values(&[result, &status]).inc();
    }

    pub fn set_expiry(&self, not_after: SystemTime) {
        let secs = not_after
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.expiry.set(i64::try_from(secs).unwrap_or(i64::MAX));
    }

    /// A counter's value, for tests.
    pub fn requests(&self, result: &str, grpc_status: &str) -> u64 {
        self.requests
            .with_label_values(&[result, grpc_status])
            .get()
    }
}

impl Default for CaMetrics {
    fn default() -> Self {
        Self::new()
    }
}
