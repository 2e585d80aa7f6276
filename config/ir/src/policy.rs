//! Resilience policy attached to routes: timeouts, retries, fault injection and
//! local rate limits. Durations are `std::time::Duration`; percentages are
//! [`Percent`], a value in `0.0..=100.0` that Istio allows to be fractional.

use serde::Serialize;
use std::time::Duration;

/// A percentage in `0.0..=100.0` (Istio's `Percent`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
pub struct Percent(f64);

impl Percent {
    pub const ALL: Percent = Percent(100.0);

    pub fn new(v: f64) -> Option<Percent> {
        (0.0..=100.0).contains(&v).then_some(Percent(v))
    }

    pub fn value(self) -> f64 {
        self.0
    }
}

/// Everything a route asks of the chain beyond choosing a backend.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RoutePolicy {
    /// The whole request, all attempts included (VirtualService `timeout`,
    /// HTTPRoute `timeouts.request`). `None`: no limit, Istio's default.
    pub timeout: Option<Duration>,
    pub retry: RetryPolicy,
    pub fault: Option<Fault>,
    /// Local rate limits, checked in order; the first exhausted one answers 429.
    pub rate_limits: Vec<RateLimit>,
    /// Policy attachments (BackendTrafficPolicy) that changed this route's policy,
    /// in the order they were applied.
    pub attached: Vec<crate::ResourceRef>,
}

impl crate::SharedDefault for RoutePolicy {
    fn shared_default() -> &'static Self {
        // Not a `const`: the default retry policy owns a `Vec` of statuses.
        static DEFAULT: std::sync::LazyLock<RoutePolicy> =
            std::sync::LazyLock::new(RoutePolicy::default);
        &DEFAULT
    }
}

/// Retries, with Envoy's `retry_on` conditions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryPolicy {
    /// Retries after the first try (Istio's `attempts`); 0 disables retrying.
    pub attempts: u32,
    pub per_try_timeout: Option<Duration>,
    pub on: RetryOn,
    /// Statuses retried under `retriable-status-codes` (and bare codes in `retryOn`).
    pub statuses: Vec<u16>,
    /// Base interval of the exponential back-off between tries (Envoy's default 25 ms).
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    /// Istio's default for HTTP routes: 2 retries on connect-failure,
    /// refused-stream, unavailable, cancelled and retriable-status-codes (503).
    fn default() -> Self {
        RetryPolicy {
            attempts: 2,
            per_try_timeout: None,
            on: RetryOn {
                connect_failure: true,
                refused_stream: true,
                retriable_status_codes: true,
                ..RetryOn::default()
            },
            statuses: vec![503],
            backoff: Duration::from_millis(25),
        }
    }
}

impl RetryPolicy {
    pub fn disabled() -> Self {
        RetryPolicy {
            attempts: 0,
            ..RetryPolicy::default()
        }
    }
}

/// Envoy's `x-envoy-retry-on` conditions the waypoint understands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RetryOn {
    /// Any 5xx response, or no response (reset, connect failure).
    pub server_errors: bool,
    /// 502, 503, 504.
    pub gateway_error: bool,
    /// The upstream reset or closed before answering.
    pub reset: bool,
    pub connect_failure: bool,
    pub refused_stream: bool,
    /// 409.
    pub retriable_4xx: bool,
    /// The statuses in `RetryPolicy::statuses`.
    pub retriable_status_codes: bool,
    /// gRPC statuses retried when an answer's headers carry them (Envoy's
    /// `retry_grpc_on`): bit `n` set for status code `n` (`cancelled` 1,
    /// `deadline-exceeded` 4, `resource-exhausted` 8, `internal` 13,
    /// `unavailable` 14).
    pub grpc: u32,
}

impl RetryOn {
    pub fn grpc_status(&self, code: u8) -> bool {
        code < 32 && self.grpc & (1 << code) != 0
    }
}

/// Istio `fault`: delay and/or abort a share of requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fault {
    pub delay: Option<(Duration, Percent)>,
    pub abort: Option<(Abort, Percent)>,
}

/// What an aborted request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Abort {
    /// `httpStatus`.
    Http(u16),
    /// `grpcStatus`: HTTP 200 with this `grpc-status`, trailers-only.
    Grpc(u8),
}

/// gRPC status codes by name, as `grpcStatus` spells them (grpc's statuscodes.md).
pub const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

impl std::fmt::Display for Abort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Abort::Http(s) => write!(f, "{s}"),
            Abort::Grpc(c) => write!(f, "grpc {}", GRPC_CODES[usize::from(*c)]),
        }
    }
}

/// A token bucket: `requests` per `unit`, filled continuously, shared by every
/// connection and worker of the process, one bucket per distinct client key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateLimit {
    /// `Kind ns/name rules[i]`, for logs and the config dump.
    pub name: String,
    pub requests: u32,
    pub unit: Duration,
    pub selectors: Vec<ClientSelector>,
}

/// Which requests a rate-limit rule counts, and what separates their buckets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ClientSelector {
    /// Requests with this header value share a bucket.
    HeaderExact { name: String, value: String },
    /// Each distinct value of the header gets its own bucket.
    HeaderDistinct { name: String },
    /// Requests from this network (the tunnel peer's address, or the plaintext
    /// client's) count; with `distinct`, each client address has its own bucket.
    SourceCidr {
        addr: std::net::IpAddr,
        prefix: u8,
        distinct: bool,
    },
}

/// DestinationRule `trafficPolicy` (and BackendTrafficPolicy `circuitBreaker`) for
/// the traffic to one backend (service, subset, port). `None` fields are Envoy's
/// defaults: effectively unlimited pools, no outlier detection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TrafficPolicy {
    pub pool: ConnectionPool,
    pub outlier: Option<OutlierDetection>,
    pub lb: LbPolicy,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConnectionPool {
    /// `tcp.maxConnections`: HTTP/1.1 upstream connections, so requests in flight.
    pub max_connections: Option<u32>,
    pub connect_timeout: Option<Duration>,
    /// `http.http1MaxPendingRequests`: requests waiting for a connection.
    pub max_pending: Option<u32>,
    /// `http.http2MaxRequests`: requests in flight, whatever the protocol.
    pub max_requests: Option<u32>,
    /// `http.maxRequestsPerConnection` (0 or unset: no limit).
    pub max_requests_per_connection: Option<u32>,
    /// `http.maxRetries`: retries in flight at once.
    pub max_retries: Option<u32>,
    pub idle_timeout: Option<Duration>,
    /// `tcp.idleTimeout`: a proxied TCP connection with no bytes either way
    /// for this long is closed (Istio's default, 1 h, when unset).
    pub tcp_idle_timeout: Option<Duration>,
    /// `tcp.maxConnectionDuration`: a proxied TCP connection is closed at this age.
    pub max_connection_duration: Option<Duration>,
}

/// Istio `outlierDetection`, resolved with Istio's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutlierDetection {
    /// Eject after this many 5xx (or connection errors) in a row; `None`: never.
    pub consecutive_5xx: Option<u32>,
    /// Eject after this many 502/503/504 (or connection errors) in a row.
    pub consecutive_gateway: Option<u32>,
    pub interval: Duration,
    /// An ejection lasts `base_ejection × times ejected`.
    pub base_ejection: Duration,
    pub max_ejection_percent: u32,
    /// Below this share of healthy endpoints, ejection stops.
    pub min_health_percent: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum LbPolicy {
    RoundRobin,
    /// Istio's default: of two endpoints drawn at random, the one with fewer
    /// requests in flight (Envoy's LEAST_REQUEST with choice_count 2).
    #[default]
    LeastRequest,
    Random,
}
