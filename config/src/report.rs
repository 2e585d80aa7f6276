//! `waypoint check`'s routing table: what the waypoint will do, per service.

mod authz;
mod jwt;

use std::fmt::Write;
use waypoint_ir::{
    BackendTarget, HeaderModifier, PathMatch, RequestMatch, Route, RouteAction, RouteSource,
    Service, Snapshot, StringMatch,
};

/// How many services' text sizes the whole table.
const SAMPLE: usize = 100;

pub fn routing_table(s: &Snapshot) -> String {
    let mut out = String::new();
    if let Some(w) = &s.waypoint {
        let l: Vec<String> = w
            .listeners
            .iter()
            .map(|(n, p, proto)| format!("{n} {p}/{proto}"))
            .collect();
        let _ = writeln!(out, "waypoint {} (listeners: {})\n", w.source, l.join(", "));
    }
    for (i, svc) in s.services.iter().enumerate() {
        service(&mut out, s, svc);
        // Megabytes at 10,000 services: grown by doubling, each copy leaves
        // the one before it in the heap (4 MB of 8.7 at 10,000). Sized once
        // from the first services' average, with a margin, it is allocated
        // about once.
        if i + 1 == SAMPLE {
            let rest = s.services.len() - SAMPLE;
            out.reserve(out.len() / SAMPLE * rest / 4 * 5);
        }
    }
    if s.services.is_empty() {
        out.push_str("no services\n");
    }
    out
}

fn service(out: &mut String, s: &Snapshot, svc: &Service) {
    let vips: Vec<String> = svc
        .addresses
        .iter()
        .flat_map(|a| {
            svc.ports
                .iter()
                .map(move |p| std::net::SocketAddr::new(*a, p.port).to_string())
        })
        .collect();
    let _ = writeln!(out, "{}  ({})", svc.hostname, svc.source);
    let _ = writeln!(
        out,
        "  vips: {}",
        if vips.is_empty() {
            "none".into()
        } else {
            vips.join(" ")
        }
    );
    let ports: Vec<String> = svc
        .ports
        .iter()
        .map(|p| format!("{} {}", p.port, p.protocol.name()))
        .collect();
    let _ = writeln!(out, "  ports: {}", ports.join(", "));
    let source = match &svc.route_source {
        RouteSource::Default => "none attached: default route to all endpoints".to_string(),
        RouteSource::VirtualService { routes } if routes.len() == 1 => list(routes),
        RouteSource::VirtualService { routes } => {
            format!("{} (merged in this order, oldest first)", list(routes))
        }
        RouteSource::GatewayApi {
            routes, shadowed, ..
        } if shadowed.is_empty() => list(routes),
        RouteSource::GatewayApi {
            routes, shadowed, ..
        } => {
            format!(
                "{} (takes precedence; ignored: {})",
                list(routes),
                list(shadowed)
            )
        }
    };
    let _ = writeln!(out, "  routes from {source}");
    if let RouteSource::GatewayApi { conflicts, .. } = &svc.route_source {
        route_conflicts(out, conflicts);
    }
    table(out, s, svc, 0..svc.producer_routes().len());
    for c in &svc.consumers {
        let scope = match &c.ports {
            None => "instead of the routes above".to_string(),
            Some(p) => {
                let p: Vec<String> = p.iter().map(|p| p.to_string()).collect();
                format!("on port {}; on others the routes above", p.join(", "))
            }
        };
        let _ = writeln!(
            out,
            "  routes for clients in namespace {} ({scope}): consumer routes from {}",
            c.namespace,
            list(&c.from)
        );
        route_conflicts(out, &c.conflicts);
        table(out, s, svc, c.start..c.end);
    }
    tcp_routes(out, s, svc);
    jwt::section(out, s, svc);
    authz::section(out, s, svc);
    if svc.traffic != waypoint_ir::TrafficPolicy::default() {
        let _ = writeln!(out, "  traffic policy: {}", traffic(&svc.traffic));
    }
    for (port, t) in &svc.port_traffic {
        let _ = writeln!(out, "  traffic policy port {port}: {}", traffic(t));
    }
    for sub in &svc.subsets {
        let labels: Vec<String> = sub.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(
            out,
            "  subset {} {{{}}}: {} endpoint(s)",
            sub.name,
            labels.join(","),
            sub.endpoints.len()
        );
        if let Some(t) = &sub.traffic {
            let _ = writeln!(out, "    traffic policy: {}", traffic(t));
        }
    }
    for ep in &svc.endpoints {
        let ports: Vec<String> = ep.ports.iter().map(|(s, t)| format!("{s}->{t}")).collect();
        let labels: Vec<String> = ep.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(
            out,
            "  endpoint {} ports {} {{{}}} {}{} ({})",
            ep.address,
            ports.join(","),
            labels.join(","),
            ep.identity.as_deref().unwrap_or("no identity"),
            if ep.in_mesh { " mesh" } else { "" },
            ep.source
        );
    }
    out.push('\n');
}

/// GEP-1426: the routes of a losing type, and where they are not applied.
fn route_conflicts(out: &mut String, conflicts: &[waypoint_ir::RouteConflict]) {
    for c in conflicts {
        let ports: Vec<String> = c.ports.iter().map(|p| p.to_string()).collect();
        let scope = match c.whole {
            true => format!("not applied (its port {})", ports.join(", ")),
            false => format!("not applied on port {}", ports.join(", ")),
        };
        let _ = writeln!(
            out,
            "  conflict: {} parentRefs[{}] {scope}: {} binds it and takes precedence (GEP-1426 route types)",
            c.route,
            c.parent,
            list(&c.winners)
        );
    }
}

/// TCPRoutes in the order a connection tries them; the first binding its port wins.
fn tcp_routes(out: &mut String, s: &Snapshot, svc: &Service) {
    let mut every_port: Option<&str> = None;
    let mut ports_taken: Vec<(u16, &str)> = Vec::new();
    for (i, r) in svc.tcp_routes.iter().enumerate() {
        let port = r
            .port
            .map(|p| format!("port {p}"))
            .unwrap_or_else(|| "every TCP port".into());
        let action = action(s, &RouteAction::Forward(r.backends.clone()));
        let action = action
            .replacen("forward", "connect to", 1)
            .replace("% respond 500 (", "% refuse (");
        let _ = writeln!(
            out,
            "  tcp [{i}] {} on {port}
      then {action}",
            r.name
        );
        let earlier = every_port.or_else(|| {
            let p = r.port?;
            ports_taken.iter().find(|(q, _)| *q == p).map(|(_, n)| *n)
        });
        match earlier {
            Some(n) => {
                let _ = writeln!(
                    out,
                    "      never reached: {n} takes its connections (oldest first)"
                );
            }
            None => match r.port {
                None => every_port = Some(&r.name),
                Some(p) => ports_taken.push((p, &r.name)),
            },
        }
    }
}

fn traffic(t: &waypoint_ir::TrafficPolicy) -> String {
    let mut parts = vec![format!("lb {:?}", t.lb)];
    let p = &t.pool;
    for (name, v) in [
        ("max connections", p.max_connections),
        ("max pending", p.max_pending),
        ("max requests", p.max_requests),
        ("max requests/connection", p.max_requests_per_connection),
        ("max retries", p.max_retries),
    ] {
        if let Some(v) = v {
            parts.push(format!("{name} {v}"));
        }
    }
    if let Some(c) = p.connect_timeout {
        parts.push(format!("connect timeout {c:?}"));
    }
    if let Some(o) = &t.outlier {
        parts.push(format!(
            "outlier: eject after {:?} 5xx / {:?} gateway errors for {:?} x times, max {}% ejected, min health {}%",
            o.consecutive_5xx, o.consecutive_gateway, o.base_ejection, o.max_ejection_percent, o.min_health_percent
        ));
    }
    parts.join(", ")
}

fn list(refs: &[waypoint_ir::ResourceRef]) -> String {
    refs.iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One route table, saying which routes a route before them makes unreachable
/// (merged VirtualServices do not resolve conflicts; the first match wins).
fn table(out: &mut String, s: &Snapshot, svc: &Service, routes: std::ops::Range<usize>) {
    let mut takes_all = None;
    for i in routes {
        let r = &svc.routes[i];
        route(out, s, i, r);
        match takes_all {
            Some(k) => {
                let _ = writeln!(out, "      never reached: [{k}] matches every request");
            }
            None if crate::translate::matches_everything(r) => takes_all = Some(i),
            None => {}
        }
    }
}

fn route(out: &mut String, s: &Snapshot, i: usize, r: &Route) {
    let port = r.port.map(|p| format!(" port {p}")).unwrap_or_default();
    let when = if r.matches.is_empty() {
        "always".to_string()
    } else {
        r.matches
            .iter()
            .map(request_match)
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let _ = writeln!(out, "  [{i}] {}{port}\n      when {when}", r.name);
    let _ = writeln!(out, "      then {}", action(s, &r.action));
    modifier(out, "request headers", &r.filters.request_headers);
    modifier(out, "response headers", &r.filters.response_headers);
    if let Some(w) = &r.filters.rewrite {
        let _ = writeln!(out, "      rewrite host={:?} path={:?}", w.hostname, w.path);
    }
    if let RouteAction::Forward(backends) = &r.action {
        for (k, b) in backends.iter().enumerate() {
            if let Some(f) = &b.filters {
                backend_filters(out, k, f);
            }
        }
    }
    policy(out, &r.policy);
}

/// Only what differs from Istio's defaults, so ordinary routes stay one screen.
fn policy(out: &mut String, p: &waypoint_ir::RoutePolicy) {
    if let Some(t) = p.timeout {
        let _ = writeln!(out, "      timeout {t:?}");
    }
    if p.retry.attempts == 0 {
        let _ = writeln!(out, "      retries off");
    } else if p.retry != waypoint_ir::RetryPolicy::default() {
        let r = &p.retry;
        let on = r.on;
        let mut conds: Vec<String> = [
            (on.server_errors, "5xx"),
            (on.gateway_error, "gateway-error"),
            (on.reset, "reset"),
            (on.connect_failure, "connect-failure"),
            (on.refused_stream, "refused-stream"),
            (on.retriable_4xx, "retriable-4xx"),
        ]
        .iter()
        .filter(|(set, _)| *set)
        .map(|(_, n)| n.to_string())
        .collect();
        if on.retriable_status_codes {
            conds.push(format!("status {:?}", r.statuses));
        }
        let per_try = r
            .per_try_timeout
            .map(|t| format!(", {t:?} per try"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "      retries {} on {}{per_try}",
            r.attempts,
            conds.join(",")
        );
    }
    for rl in &p.rate_limits {
        let _ = writeln!(
            out,
            "      rate limit {} per {:?} by {:?} ({})",
            rl.requests, rl.unit, rl.selectors, rl.name
        );
    }
    if !p.attached.is_empty() {
        let _ = writeln!(
            out,
            "      policy from {} (overrides the route's own)",
            list(&p.attached)
        );
    }
    if let Some(f) = &p.fault {
        if let Some((d, pct)) = f.delay {
            let _ = writeln!(out, "      fault delay {d:?} for {}%", pct.value());
        }
        if let Some((s, pct)) = &f.abort {
            let _ = writeln!(out, "      fault abort {s} for {}%", pct.value());
        }
    }
}

/// A backend's own filters, applied only when the split picks it.
fn backend_filters(out: &mut String, k: usize, f: &waypoint_ir::BackendFilters) {
    let _ = writeln!(out, "      backend [{k}] only:");
    modifier(out, "  request headers", &f.request_headers);
    modifier(out, "  response headers", &f.response_headers);
    if let Some(w) = &f.rewrite {
        let _ = writeln!(
            out,
            "        rewrite host={:?} path={:?}",
            w.hostname, w.path
        );
    }
    if let Some(r) = &f.redirect {
        let _ = writeln!(
            out,
            "        redirect {} to scheme={:?} host={:?} port={:?} path={:?}",
            r.status, r.scheme, r.hostname, r.port, r.path
        );
    }
}

fn modifier(out: &mut String, what: &str, m: &HeaderModifier) {
    if !m.is_empty() {
        let _ = writeln!(
            out,
            "      {what}: set {:?} add {:?} remove {:?}",
            m.set, m.add, m.remove
        );
    }
}

fn string_match(m: &StringMatch) -> String {
    match m {
        StringMatch::Exact(v) => format!("={v}"),
        StringMatch::Prefix(v) => format!(" prefix {v}"),
        StringMatch::Regex(p) => format!(" ~ /{}/", p.source),
        StringMatch::Present => " present".into(),
    }
}

fn request_match(m: &RequestMatch) -> String {
    let mut parts = Vec::new();
    if let Some(meth) = &m.method {
        parts.push(format!("method={}", meth.0));
    }
    match &m.path {
        Some(PathMatch::Exact(p)) => parts.push(format!("path={p}")),
        Some(PathMatch::Prefix(p)) => parts.push(format!("path prefix {p}")),
        Some(PathMatch::SegmentPrefix(p)) => {
            parts.push(format!("path under {}", if p.is_empty() { "/" } else { p }))
        }
        Some(PathMatch::Regex(p)) => parts.push(format!("path ~ /{}/", p.source)),
        None => {}
    }
    for h in &m.headers {
        let not = if h.invert { "not " } else { "" };
        parts.push(format!("{not}header {}{}", h.name, string_match(&h.value)));
    }
    for q in &m.query {
        parts.push(format!("query {}{}", q.name, string_match(&q.value)));
    }
    if m.ignore_uri_case {
        parts.push("path in any case".into());
    }
    if let Some(p) = m.port {
        parts.push(format!("port={p}"));
    }
    if parts.is_empty() {
        "any request".into()
    } else {
        parts.join(" and ")
    }
}

fn action(s: &Snapshot, a: &RouteAction) -> String {
    match a {
        RouteAction::Redirect(r) => format!(
            "redirect {} to scheme={:?} host={:?} port={:?} path={:?}",
            r.status, r.scheme, r.hostname, r.port, r.path
        ),
        RouteAction::DirectResponse { status, .. } => format!("respond {status}"),
        RouteAction::Forward(backends) => {
            let total: u64 = backends.iter().map(|b| b.weight as u64).sum();
            if total == 0 {
                return "respond 500 (no backend with a non-zero weight)".into();
            }
            let parts: Vec<String> = backends
                .iter()
                .map(|b| {
                    let pct = 100.0 * b.weight as f64 / total as f64;
                    match &b.target {
                        BackendTarget::Service {
                            service,
                            port,
                            subset,
                        } => {
                            let svc = s.service(*service);
                            let port = port
                                .map(|p| format!(":{p}"))
                                .unwrap_or_else(|| ":<request port>".into());
                            let subset = subset
                                .map(|i| format!(" subset {}", svc.subsets[i].name))
                                .unwrap_or_default();
                            format!("{pct:.0}% {}{port}{subset}", svc.hostname)
                        }
                        BackendTarget::Invalid { status, reason } => {
                            format!("{pct:.0}% respond {status} ({reason})")
                        }
                    }
                })
                .collect();
            format!("forward {}", parts.join(", "))
        }
    }
}
