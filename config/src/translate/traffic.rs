//! DestinationRule `trafficPolicy` → `TrafficPolicy`, with Istio's merge rules: a
//! subset's or port's policy replaces whole sections (loadBalancer,
//! connectionPool, outlierDetection) of the top level, not single fields.

use super::matchers::At;
use crate::duration;
use crate::istio::destination_rule::{
    ConnectionPoolSpec, LoadBalancerSpec, OutlierSpec, PortTrafficPolicy, TrafficPolicySpec,
};
use crate::Diagnostic;
use std::collections::BTreeMap;
use std::time::Duration;
use waypoint_ir::{ConnectionPool, LbPolicy, OutlierDetection, TrafficPolicy};

/// Sections as written, before merging.
#[derive(Clone, Default)]
struct Sections<'a> {
    lb: Option<&'a LoadBalancerSpec>,
    pool: Option<&'a ConnectionPoolSpec>,
    outlier: Option<&'a OutlierSpec>,
}

impl<'a> Sections<'a> {
    fn of(t: &'a TrafficPolicySpec) -> Self {
        Sections {
            lb: t.load_balancer.as_ref(),
            pool: t.connection_pool.as_ref(),
            outlier: t.outlier_detection.as_ref(),
        }
    }

    fn of_port(p: &'a PortTrafficPolicy) -> Self {
        Sections {
            lb: p.load_balancer.as_ref(),
            pool: p.connection_pool.as_ref(),
            outlier: p.outlier_detection.as_ref(),
        }
    }

    fn over(self, base: &Sections<'a>) -> Sections<'a> {
        Sections {
            lb: self.lb.or(base.lb),
            pool: self.pool.or(base.pool),
            outlier: self.outlier.or(base.outlier),
        }
    }
}

/// The top-level policy and the per-port ones.
pub fn service_policy(
    at: &At<'_>,
    field: &str,
    t: &TrafficPolicySpec,
    diags: &mut Vec<Diagnostic>,
) -> (TrafficPolicy, BTreeMap<u16, TrafficPolicy>) {
    let top = Sections::of(t);
    let base = resolve(at, field, &top, diags);
    let ports = t
        .port_level_settings
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                p.port.number,
                resolve(
                    at,
                    &format!("{field}.portLevelSettings[{i}]"),
                    &Sections::of_port(p).over(&top),
                    diags,
                ),
            )
        })
        .collect();
    (base, ports)
}

/// A subset's policy merged over the rule's top level.
pub fn subset_policy(
    at: &At<'_>,
    field: &str,
    subset: &TrafficPolicySpec,
    top: Option<&TrafficPolicySpec>,
    diags: &mut Vec<Diagnostic>,
) -> TrafficPolicy {
    let base = top.map(Sections::of).unwrap_or_default();
    resolve(at, field, &Sections::of(subset).over(&base), diags)
}

fn resolve(
    at: &At<'_>,
    field: &str,
    s: &Sections<'_>,
    diags: &mut Vec<Diagnostic>,
) -> TrafficPolicy {
    let mut dur = |f: &str, v: &Option<String>| -> Option<Duration> {
        duration::parse(v.as_ref()?)
            .map_err(|e| diags.push(at.error(format!("{field}.{f}"), e)))
            .ok()
    };
    let mut pool = ConnectionPool::default();
    if let Some(p) = s.pool {
        if let Some(tcp) = &p.tcp {
            pool.max_connections = tcp.max_connections;
            pool.connect_timeout = dur("connectionPool.tcp.connectTimeout", &tcp.connect_timeout);
            pool.tcp_idle_timeout = dur("connectionPool.tcp.idleTimeout", &tcp.idle_timeout);
            pool.max_connection_duration = dur(
                "connectionPool.tcp.maxConnectionDuration",
                &tcp.max_connection_duration,
            );
        }
        if let Some(http) = &p.http {
            pool.max_pending = http.http1_max_pending_requests;
            pool.max_requests = http.http2_max_requests;
            pool.max_requests_per_connection = http.max_requests_per_connection.filter(|n| *n > 0);
            pool.max_retries = http.max_retries;
            pool.idle_timeout = dur("connectionPool.http.idleTimeout", &http.idle_timeout);
        }
    }
    let outlier = s.outlier.map(|o| OutlierDetection {
        // Istio's defaults: 5 consecutive 5xx, gateway errors off, 10 s interval,
        // 30 s base ejection, at most 10% ejected, no minimum health.
        consecutive_5xx: o
            .consecutive_5xx_errors
            .or(o.consecutive_errors)
            .or(Some(5))
            .filter(|n| *n > 0),
        consecutive_gateway: o.consecutive_gateway_errors.filter(|n| *n > 0),
        interval: dur("outlierDetection.interval", &o.interval).unwrap_or(Duration::from_secs(10)),
        base_ejection: dur("outlierDetection.baseEjectionTime", &o.base_ejection_time)
            .unwrap_or(Duration::from_secs(30)),
        max_ejection_percent: o.max_ejection_percent.unwrap_or(10).min(100),
        min_health_percent: o.min_health_percent.unwrap_or(0).min(100),
    });
    let lb = match s.lb.and_then(|l| l.simple.as_deref()) {
        None | Some("UNSPECIFIED") | Some("LEAST_REQUEST") | Some("LEAST_CONN") => {
            LbPolicy::LeastRequest
        }
        Some("ROUND_ROBIN") => LbPolicy::RoundRobin,
        Some("RANDOM") => LbPolicy::Random,
        Some(other) => {
            diags.push(at.warning(
                format!("{field}.loadBalancer.simple"),
                format!("{other} is not supported; using LEAST_REQUEST"),
            ));
            LbPolicy::LeastRequest
        }
    };
    TrafficPolicy { pool, outlier, lb }
}
