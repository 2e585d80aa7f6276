//! RequestAuthentication at request time, before AuthorizationPolicy (Envoy's
//! `jwt_authn` filter precedes RBAC in Istio's chain): every token present in
//! the rules' locations must verify, a request without one goes on
//! unauthenticated, and a verified token's claims are what `request.auth.*`
//! then sees. Istio's requirement for the pooled rules is "each provider, or
//! allow missing" (`policy_applier.go` `convertToEnvoyJwtConfig`).

use crate::jwt::verify::{self, Failure};
use crate::jwt::Jwks;
use crate::state::Runtime;
use base64::Engine;
use pingora::proxy::Session;
use serde_json::Value;
use waypoint_filters::jwt::{extract, output_headers, RequestAuth};
use waypoint_ir::{JwtRule, Target, TokenLocation};

/// A refused token: Envoy's local reply.
pub struct Refused {
    pub status: u16,
    pub body: &'static str,
    pub headers: Vec<(String, String)>,
}

/// Verifies the request's tokens, and on success applies the rules' outputs
/// (payload and claim headers; the token header removed unless forwarded).
pub fn check(
    rt: &Runtime,
    jwks: &Jwks,
    session: &mut Session,
    target: Target,
) -> Result<Option<RequestAuth>, Refused> {
    let service = match target {
        Target::Service { service, .. } | Target::Workload { service, .. } => {
            rt.snapshot.service(service)
        }
    };
    let mut rules: Vec<&JwtRule> = rt.snapshot.jwt.iter().chain(&service.jwt).collect();
    let req = session.req_header();
    if rules.is_empty() || (req.method == http::Method::OPTIONS && cors_preflight(&req.headers)) {
        return Ok(None);
    }
    // Istio orders the pooled rules by issuer.
    rules.sort_by(|a, b| a.issuer.cmp(&b.issuer));
    let req = session.req_header_mut();
    for h in output_headers(&rules).collect::<Vec<_>>() {
        req.remove_header(h);
    }
    let found = extract(&rules, &req.headers, req.uri.query());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut verified = Vec::with_capacity(found.len());
    for f in &found {
        let readers: Vec<&JwtRule> = rules
            .iter()
            .copied()
            .filter(|r| r.locations.contains(f.location))
            .collect();
        match verify::verify(&f.token, &readers, jwks, now) {
            Ok(v) => verified.push((f.location, v)),
            Err(failure) => return Err(refused(failure, session)),
        }
    }
    let req = session.req_header_mut();
    let mut auth = None;
    for (location, v) in verified {
        if let Some(h) = &v.rule.output_payload_to_header {
            let _ = req.insert_header(h.clone(), v.payload_b64.as_str());
        }
        for (header, claim) in &v.rule.output_claim_to_headers {
            if let Some(value) = claim_text(&v.payload, claim) {
                let _ = req.insert_header(header.clone(), value);
            }
        }
        // Envoy removes a header token; one in a parameter or cookie stays
        // (its `removeJwt` does nothing there).
        if let (false, TokenLocation::Header { name, .. }) =
            (v.rule.forward_original_token, location)
        {
            req.remove_header(name.as_str());
        }
        // With several tokens Istio leaves the principal undefined; the first
        // location's is used.
        auth.get_or_insert_with(|| {
            RequestAuth::from_payload(v.payload, &v.rule.space_delimited_claims)
        });
    }
    Ok(auth)
}

/// Istio sets `bypass_cors_preflight`: a preflight carries no credentials.
fn cors_preflight(h: &http::HeaderMap) -> bool {
    h.contains_key(http::header::ORIGIN)
        && h.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
}

fn refused(failure: Failure, session: &Session) -> Refused {
    let req = session.req_header();
    let scheme = req
        .headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .unwrap_or_default();
    // Envoy's `buildOriginalUri`, the path cut at 256 bytes.
    let pq = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut cut = pq.len().min(256);
    while !pq.is_char_boundary(cut) {
        cut -= 1;
    }
    let realm = format!("{scheme}://{host}{}", &pq[..cut]);
    Refused {
        status: failure.status(),
        body: failure.message(),
        headers: vec![(
            "www-authenticate".into(),
            format!("Bearer realm=\"{realm}\", error=\"invalid_token\""),
        )],
    }
}

/// A claim for `outputClaimToHeaders`, as Envoy writes it: strings as they
/// are, integers without a fraction, other numbers with six decimals, bools
/// as `true`/`false`, objects and lists as base64 of their JSON.
fn claim_text(payload: &Value, claim: &str) -> Option<String> {
    let mut v = payload;
    for key in claim.split('.') {
        v = v.get(key)?;
    }
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => u.to_string(),
            (None, Some(f)) => format!("{f:.6}"),
            _ => return None,
        }),
        Value::Object(_) | Value::Array(_) => {
            Some(base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(v).ok()?))
        }
        Value::Null => None,
    }
}

#[cfg(test)]
mod tests {
    use super::claim_text;
    use serde_json::json;

    #[test]
    fn claims_become_header_text_as_envoy_writes_them() {
        let p = json!({"sub": "alice", "n": 42, "f": 1.5, "ok": true,
                       "org": {"team": "core"}, "groups": ["a"]});
        assert_eq!(claim_text(&p, "sub").as_deref(), Some("alice"));
        assert_eq!(claim_text(&p, "n").as_deref(), Some("42"));
        assert_eq!(claim_text(&p, "f").as_deref(), Some("1.500000"));
        assert_eq!(claim_text(&p, "ok").as_deref(), Some("true"));
        assert_eq!(claim_text(&p, "org.team").as_deref(), Some("core"));
        assert_eq!(claim_text(&p, "groups").as_deref(), Some("WyJhIl0="));
        assert_eq!(claim_text(&p, "missing"), None);
    }
}
