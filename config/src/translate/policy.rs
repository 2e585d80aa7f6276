//! VirtualService resilience fields → `RoutePolicy`: `timeout`, `retries`, `fault`.

use super::matchers::At;
use crate::duration;
use crate::gateway_api::Rule;
use crate::istio::{FaultSpec, HttpRoute, PercentSpec, Retries};
use crate::Diagnostic;
use std::time::Duration;
use waypoint_ir::{Abort, Fault, Percent, RetryOn, RetryPolicy, RoutePolicy};

pub fn virtual_service(
    at: &At<'_>,
    field: &str,
    r: &HttpRoute,
    diags: &mut Vec<Diagnostic>,
) -> RoutePolicy {
    let mut dur = |f: &str, v: &Option<String>| -> Option<Duration> {
        let v = v.as_ref()?;
        duration::parse(v)
            .map_err(|e| diags.push(at.error(format!("{field}.{f}"), e)))
            .ok()
    };
    // `0s` switches the route timeout off, as in Istio.
    let timeout = dur("timeout", &r.timeout).filter(|d| !d.is_zero());
    let retry = match &r.retries {
        None => RetryPolicy::default(),
        Some(rt) => retries(at, &format!("{field}.retries"), rt, diags),
    };
    let fault = r
        .fault
        .as_ref()
        .and_then(|f| fault(at, &format!("{field}.fault"), f, diags));
    RoutePolicy {
        timeout,
        retry,
        fault,
        rate_limits: Vec::new(),
        attached: Vec::new(),
    }
}

/// HTTPRoute `timeouts` and `retry`. Without `retry`, Istio's default retry
/// policy applies, as it does to every route it programs.
pub fn http_route(
    at: &At<'_>,
    field: &str,
    rule: &Rule,
    diags: &mut Vec<Diagnostic>,
) -> RoutePolicy {
    let mut dur = |f: &str, v: Option<&String>| -> Option<Duration> {
        duration::parse(v?)
            .map_err(|e| diags.push(at.error(format!("{field}.{f}"), e)))
            .ok()
    };
    let t = rule.timeouts.as_ref();
    // "0s" disables a timeout in GEP-1742.
    let timeout =
        dur("timeouts.request", t.and_then(|t| t.request.as_ref())).filter(|d| !d.is_zero());
    let per_try = dur(
        "timeouts.backendRequest",
        t.and_then(|t| t.backend_request.as_ref()),
    )
    .filter(|d| !d.is_zero());
    let mut retry = RetryPolicy::default();
    if let Some(r) = &rule.retry {
        if let Some(a) = r.attempts {
            retry.attempts = a;
        }
        if !r.codes.is_empty() {
            retry.statuses = r.codes.clone();
            retry.on.retriable_status_codes = true;
        }
        if let Some(b) = dur("retry.backoff", r.backoff.as_ref()) {
            retry.backoff = b;
        }
    }
    retry.per_try_timeout = per_try;
    RoutePolicy {
        timeout,
        retry,
        fault: None,
        rate_limits: Vec::new(),
        attached: Vec::new(),
    }
}

fn retries(at: &At<'_>, field: &str, r: &Retries, diags: &mut Vec<Diagnostic>) -> RetryPolicy {
    let mut policy = RetryPolicy::default();
    if let Some(n) = r.attempts {
        policy.attempts = n;
    }
    if let Some(t) = &r.per_try_timeout {
        match duration::parse(t) {
            Ok(d) => policy.per_try_timeout = Some(d).filter(|d| !d.is_zero()),
            Err(e) => diags.push(at.error(format!("{field}.perTryTimeout"), e)),
        }
    }
    if let Some(on) = &r.retry_on {
        let mut conditions = RetryOn::default();
        let mut statuses = Vec::new();
        for token in on.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if set_condition(&mut conditions, token) {
                continue;
            }
            match token.parse::<u16>() {
                // Istio accepts bare status codes in retryOn.
                Ok(c) if (100..600).contains(&c) => {
                    conditions.retriable_status_codes = true;
                    statuses.push(c);
                }
                _ => diags.push(at.error(
                    format!("{field}.retryOn"),
                    format!("unknown retry condition {token:?}"),
                )),
            }
        }
        policy.on = conditions;
        policy.statuses = statuses;
    }
    policy
}

/// Sets the Envoy `retry_on` condition `token` names; `false` if it names none.
pub fn set_condition(on: &mut RetryOn, token: &str) -> bool {
    match token {
        "5xx" => on.server_errors = true,
        "gateway-error" => on.gateway_error = true,
        "reset" | "reset-before-request" => on.reset = true,
        "connect-failure" => on.connect_failure = true,
        "refused-stream" => on.refused_stream = true,
        "retriable-4xx" => on.retriable_4xx = true,
        "retriable-status-codes" => on.retriable_status_codes = true,
        "cancelled" => on.grpc |= 1 << 1,
        "deadline-exceeded" => on.grpc |= 1 << 4,
        "resource-exhausted" => on.grpc |= 1 << 8,
        "internal" => on.grpc |= 1 << 13,
        "unavailable" => on.grpc |= 1 << 14,
        _ => return false,
    }
    true
}

fn percent(
    at: &At<'_>,
    field: &str,
    p: &Option<PercentSpec>,
    legacy: Option<u32>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Percent> {
    let v = match (p, legacy) {
        (Some(p), _) => p.value,
        (None, Some(n)) => n as f64,
        // No percentage: every request (Istio).
        (None, None) => 100.0,
    };
    let p = Percent::new(v);
    if p.is_none() {
        diags.push(at.error(
            format!("{field}.percentage.value"),
            format!("{v} is not between 0 and 100"),
        ));
    }
    p
}

fn fault(at: &At<'_>, field: &str, f: &FaultSpec, diags: &mut Vec<Diagnostic>) -> Option<Fault> {
    let delay = match &f.delay {
        None => None,
        Some(d) => {
            let f = format!("{field}.delay");
            let Some(fixed) = &d.fixed_delay else {
                diags.push(at.error(format!("{f}.fixedDelay"), "required"));
                return None;
            };
            let fixed = match duration::parse(fixed) {
                Ok(v) => v,
                Err(e) => {
                    diags.push(at.error(format!("{f}.fixedDelay"), e));
                    return None;
                }
            };
            Some((fixed, percent(at, &f, &d.percentage, d.percent, diags)?))
        }
    };
    let abort = match &f.abort {
        None => None,
        Some(a) => {
            let f = format!("{field}.abort");
            let status = match (a.http_status, &a.grpc_status, &a.http2_error) {
                (Some(s), None, None) if (200..600).contains(&s) => Abort::Http(s),
                (Some(s), None, None) => {
                    diags.push(at.error(
                        format!("{f}.httpStatus"),
                        format!("{s} is not an HTTP status"),
                    ));
                    return None;
                }
                (None, Some(name), None) => {
                    match waypoint_ir::GRPC_CODES.iter().position(|c| c == name) {
                        Some(code) => Abort::Grpc(code as u8),
                        None => {
                            diags.push(at.error(
                                format!("{f}.grpcStatus"),
                                format!(
                                    "{name:?} is not a gRPC status code name (e.g. UNAVAILABLE)"
                                ),
                            ));
                            return None;
                        }
                    }
                }
                (None, None, Some(_)) => {
                    diags.push(at.error(
                        format!("{f}.http2Error"),
                        "not supported: an HTTP/2 error cannot be answered per request",
                    ));
                    return None;
                }
                _ => {
                    diags.push(at.error(
                        f.clone(),
                        "exactly one of httpStatus, grpcStatus and http2Error is required",
                    ));
                    return None;
                }
            };
            Some((status, percent(at, &f, &a.percentage, None, diags)?))
        }
    };
    Some(Fault { delay, abort })
}
