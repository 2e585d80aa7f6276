//! Whether a failed try is retried, and how long to wait first. Envoy's
//! `retry_on` semantics: see `waypoint_ir::RetryOn`.

use rand::Rng;
use std::time::Duration;
use waypoint_ir::RetryPolicy;

/// How one try ended, as far as retrying cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryOutcome {
    /// No connection to the endpoint.
    ConnectFailure,
    /// The endpoint refused the stream (HTTP/2 REFUSED_STREAM).
    RefusedStream,
    /// Connected, but the connection was reset or closed before a response.
    Reset,
    /// No response within the per-try timeout.
    Timeout,
    /// A response with this status.
    Status(u16),
    /// A gRPC answer whose headers carry this `grpc-status` (trailers-only).
    GrpcStatus(u8),
}

/// May a try that ended with `outcome` be retried, `done` retries having been made?
pub fn should_retry(policy: &RetryPolicy, outcome: TryOutcome, done: u32) -> bool {
    done < policy.attempts && retriable(policy, outcome)
}

/// Does the policy's `retry_on` cover `outcome`, whatever the count? When it does
/// but no retry is made, the request ends with Envoy's URX flag.
pub fn retriable(policy: &RetryPolicy, outcome: TryOutcome) -> bool {
    let on = &policy.on;
    match outcome {
        TryOutcome::ConnectFailure => {
            on.connect_failure || on.server_errors || on.gateway_error || on.reset
        }
        TryOutcome::RefusedStream => on.refused_stream || on.server_errors,
        // Envoy counts a reset or a per-try timeout as "no response": 5xx,
        // gateway-error and reset all cover it.
        TryOutcome::Reset | TryOutcome::Timeout => on.server_errors || on.gateway_error || on.reset,
        TryOutcome::Status(s) => {
            (on.server_errors && (500..600).contains(&s))
                || (on.gateway_error && matches!(s, 502..=504))
                || (on.retriable_4xx && s == 409)
                || (on.retriable_status_codes && policy.statuses.contains(&s))
        }
        TryOutcome::GrpcStatus(code) => on.grpc_status(code),
    }
}

/// Envoy's back-off before retry number `n` (1-based): a random wait in
/// `[0, base * 2^(n-1))`, capped at ten times the base interval.
pub fn backoff(policy: &RetryPolicy, n: u32, rng: &mut impl Rng) -> Duration {
    let base = policy.backoff.as_secs_f64();
    let ceiling = (base * 2f64.powi(n.saturating_sub(1).min(16) as i32)).min(base * 10.0);
    Duration::from_secs_f64(rng.random::<f64>() * ceiling)
}

#[cfg(test)]
mod tests {
    use super::TryOutcome::*;
    use super::*;
    use waypoint_ir::RetryOn;

    fn policy(on: RetryOn, statuses: Vec<u16>) -> RetryPolicy {
        RetryPolicy {
            attempts: 2,
            on,
            statuses,
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn grpc_conditions_retry_their_statuses_only() {
        let on = RetryOn {
            grpc: 1 << 14 | 1 << 8,
            ..RetryOn::default()
        };
        let p = policy(on, vec![]);
        assert!(should_retry(&p, GrpcStatus(14), 0));
        assert!(should_retry(&p, GrpcStatus(8), 1));
        assert!(!should_retry(&p, GrpcStatus(13), 0));
        assert!(!should_retry(&p, GrpcStatus(14), 2), "attempts exhausted");
        assert!(!should_retry(&p, Status(503), 0));
    }

    #[test]
    fn istio_default_retries_connect_failures_and_503_only() {
        let p = RetryPolicy::default();
        assert!(should_retry(&p, ConnectFailure, 0));
        assert!(should_retry(&p, RefusedStream, 1));
        assert!(should_retry(&p, Status(503), 0));
        assert!(!should_retry(&p, Status(503), 2), "attempts exhausted");
        assert!(!should_retry(&p, Status(500), 0));
        assert!(!should_retry(&p, Reset, 0));
        assert!(!should_retry(&p, Timeout, 0));
    }

    #[test]
    fn conditions() {
        let five = policy(
            RetryOn {
                server_errors: true,
                ..Default::default()
            },
            vec![],
        );
        assert!(should_retry(&five, Status(500), 0));
        assert!(should_retry(&five, Reset, 0));
        assert!(should_retry(&five, Timeout, 0));
        assert!(!should_retry(&five, Status(429), 0));
        let gw = policy(
            RetryOn {
                gateway_error: true,
                ..Default::default()
            },
            vec![],
        );
        assert!(should_retry(&gw, Status(504), 0));
        assert!(!should_retry(&gw, Status(500), 0));
        let codes = policy(
            RetryOn {
                retriable_status_codes: true,
                ..Default::default()
            },
            vec![429],
        );
        assert!(should_retry(&codes, Status(429), 0));
        assert!(!should_retry(&codes, Status(503), 0));
        assert!(!should_retry(&codes, Reset, 0));
        let four = policy(
            RetryOn {
                retriable_4xx: true,
                ..Default::default()
            },
            vec![],
        );
        assert!(should_retry(&four, Status(409), 0));
        assert!(!should_retry(&four, Status(404), 0));
        let off = RetryPolicy::disabled();
        assert!(!should_retry(&off, ConnectFailure, 0));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let p = RetryPolicy::default(); // 25 ms base
        for n in 1..20 {
            let cap = (25.0 * 2f64.powi(n as i32 - 1)).min(250.0);
            for _ in 0..100 {
                let b = backoff(&p, n, &mut rng).as_secs_f64() * 1000.0;
                assert!(b < cap + 1e-9, "retry {n}: {b} ms >= {cap}");
            }
        }
    }
}
