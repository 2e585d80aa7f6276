//! `BackendTrafficPolicy`: the parts the waypoint applies.

use serde::Deserialize;

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct BackendTrafficPolicyDoc {
    pub spec: Spec,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Spec {
    pub target_refs: Vec<TargetRef>,
    /// The older single-target form.
    pub target_ref: Option<TargetRef>,
    pub rate_limit: Option<RateLimitSpec>,
    pub fault_injection: Option<FaultInjection>,
    pub retry: Option<Retry>,
    pub timeout: Option<Timeout>,
    pub circuit_breaker: Option<CircuitBreaker>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct CircuitBreaker {
    pub max_connections: Option<u32>,
    pub max_pending_requests: Option<u32>,
    pub max_parallel_requests: Option<u32>,
    pub max_parallel_retries: Option<u32>,
    pub max_requests_per_connection: Option<u32>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    pub group: Option<String>,
    pub kind: String,
    pub name: String,
}

#[derive(Deserialize, Debug)]
pub struct RateLimitSpec {
    #[serde(rename = "type")]
    pub kind: String,
    pub local: Option<LocalRateLimit>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct LocalRateLimit {
    pub rules: Vec<RateLimitRule>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitRule {
    #[serde(default)]
    pub client_selectors: Vec<ClientSelector>,
    pub limit: Limit,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ClientSelector {
    pub headers: Vec<HeaderSelector>,
    #[serde(rename = "sourceCIDR")]
    pub source_cidr: Option<CidrSelector>,
}

#[derive(Deserialize, Debug)]
pub struct HeaderSelector {
    pub name: String,
    pub value: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub invert: bool,
}

#[derive(Deserialize, Debug)]
pub struct CidrSelector {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub value: String,
}

#[derive(Deserialize, Debug)]
pub struct Limit {
    pub requests: u32,
    pub unit: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct FaultInjection {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct FaultDelay {
    pub fixed_delay: String,
    pub percentage: Option<f64>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct FaultAbort {
    pub http_status: Option<u16>,
    pub grpc_status: Option<i32>,
    pub percentage: Option<f64>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Retry {
    pub num_retries: Option<u32>,
    pub retry_on: Option<RetryOn>,
    pub per_retry: Option<PerRetry>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct RetryOn {
    pub triggers: Vec<String>,
    pub http_status_codes: Vec<u16>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct PerRetry {
    pub timeout: Option<String>,
    pub back_off: Option<BackOff>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct BackOff {
    pub base_interval: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct Timeout {
    pub http: Option<HttpTimeout>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpTimeout {
    pub request_timeout: Option<String>,
}
