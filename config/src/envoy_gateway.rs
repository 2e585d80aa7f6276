//! Envoy Gateway's policy attachments (`gateway.envoyproxy.io/v1alpha1`): what the
//! Istio and Gateway API route resources lack, rate limiting above all.

mod backend_traffic_policy;

pub use backend_traffic_policy::{
    BackendTrafficPolicyDoc, CircuitBreaker, RateLimitRule, TargetRef,
};
