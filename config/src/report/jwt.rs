//! `waypoint check`'s request authentication section of a service: the JWT
//! rules its requests are checked against, waypoint-wide first.

use std::fmt::Write;
use waypoint_ir::{JwksSource, JwtRule, Service, Snapshot, TokenLocation};

pub fn section(out: &mut String, s: &Snapshot, svc: &Service) {
    if s.jwt.is_empty() && svc.jwt.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "  request authentication (a token present must verify; none: unauthenticated):"
    );
    let wide = s.jwt.iter().map(|r| (r, "waypoint-wide"));
    for (r, scope) in wide.chain(svc.jwt.iter().map(|r| (r, "service"))) {
        rule(out, r, scope);
    }
}

fn rule(out: &mut String, r: &JwtRule, scope: &str) {
    let issuer = if r.issuer.is_empty() {
        "any issuer".to_string()
    } else {
        format!("issuer {}", r.issuer)
    };
    let fail = if r.fail_closed {
        ", fail-closed stand-in: the resource as written is refused"
    } else {
        ""
    };
    let _ = writeln!(out, "    {issuer} from {} ({scope}{fail})", r.source);
    let keys = match &r.jwks {
        JwksSource::Inline(_) => "inline jwks".to_string(),
        JwksSource::Uri(u) => format!("jwksUri {u} (timeout {:?})", r.timeout),
        JwksSource::Discover => format!("OpenID discovery (timeout {:?})", r.timeout),
        JwksSource::RejectAll => "no keys: every token is refused".to_string(),
    };
    let _ = writeln!(out, "      keys: {keys}");
    if !r.audiences.is_empty() {
        let _ = writeln!(out, "      audiences: {}", r.audiences.join(", "));
    }
    let from: Vec<String> = r
        .locations
        .iter()
        .map(|l| match l {
            TokenLocation::Header { name, prefix } if prefix.is_empty() => format!("header {name}"),
            TokenLocation::Header { name, prefix } => format!("header {name} prefix {prefix:?}"),
            TokenLocation::Param(p) => format!("param {p}"),
            TokenLocation::Cookie(c) => format!("cookie {c}"),
        })
        .collect();
    let _ = writeln!(out, "      from: {}", from.join(", "));
    let mut then = Vec::new();
    if !r.forward_original_token {
        then.push("token removed".to_string());
    }
    if let Some(h) = &r.output_payload_to_header {
        then.push(format!("payload to {h}"));
    }
    for (h, c) in &r.output_claim_to_headers {
        then.push(format!("claim {c} to {h}"));
    }
    if !then.is_empty() {
        let _ = writeln!(out, "      then: {}", then.join(", "));
    }
}
