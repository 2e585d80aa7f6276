//! RequestAuthentication → [`JwtRule`]s, attached where Istio attaches them for
//! a waypoint (see [`super::attach`]), and validated as Istio's webhook and
//! CRD do (`pkg/config/validation` `validateJwtRule`, and the CEL rules of
//! `security/v1beta1/request_authentication.proto`).
//!
//! Fail closed: a resource the waypoint cannot enforce exactly is
//! [`Severity::Refused`](crate::Severity::Refused) and replaced, where it
//! attaches, by rules that refuse every token in their locations (of the
//! declared issuer; of any issuer when none can be read). Dropping it instead
//! would let its issuer's tokens through unverified to the backend.

use super::attach::{self, Attach};
use super::Cx;
use crate::istio::request_authentication::{JwtRuleSpec, RequestAuthenticationSpec, SpecHead};
use crate::istio::RequestAuthenticationDoc;
use crate::parse::Obj;
use crate::Diagnostic;
use waypoint_ir::{
    default_locations, JwksSource, JwtRule, Service, TokenLocation, WaypointGateway,
    JWKS_FETCH_TIMEOUT,
};

type Problems = Vec<(String, String)>;

/// Envoy's `normalize_payload_in_metadata` claims that Istio always splits.
const SPACE_DELIMITED: [&str; 2] = ["permission", "scope"];

/// Attaches every RequestAuthentication's rules to `services[i].jwt`, and
/// returns the waypoint-wide ones; resources in namespace/name order.
pub fn apply(
    cx: &mut Cx<'_>,
    services: &mut [Service],
    waypoint: Option<&WaypointGateway>,
) -> Vec<JwtRule> {
    let mut all: Vec<&Obj<RequestAuthenticationDoc>> =
        cx.res.request_authentications.iter().collect();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    let waypoint = waypoint.map(|w| &w.source);
    let mut wide = Vec::new();
    for obj in all {
        let (attach, rules) = one(cx, obj, services, waypoint);
        super::attach::distribute(&attach, &rules, &mut wide, services, |s| &mut s.jwt);
    }
    wide
}

fn one(
    cx: &mut Cx<'_>,
    obj: &Obj<RequestAuthenticationDoc>,
    services: &[Service],
    waypoint: Option<&waypoint_ir::ResourceRef>,
) -> (Vec<Attach>, Vec<JwtRule>) {
    let mut problems = Problems::new();
    let spec: Option<RequestAuthenticationSpec> =
        match serde_path_to_error::deserialize(&obj.doc.spec) {
            Ok(s) => Some(s),
            Err(e) => {
                let path = e.path().to_string();
                let field = if path == "." {
                    "spec".into()
                } else {
                    format!("spec.{path}")
                };
                problems.push((field, e.inner().to_string()));
                None
            }
        };
    let head: SpecHead = serde_json::from_value(obj.doc.spec.clone()).unwrap_or_default();
    let targeting = attach::Targeting {
        selector: head.selector.is_some(),
        target_ref: head.target_ref.as_ref(),
        target_refs: &head.target_refs,
    };
    let Some(attach) = attach::targets(cx, obj, targeting, services, waypoint, &mut problems)
    else {
        return (Vec::new(), Vec::new());
    };
    let mut rules = Vec::new();
    if let Some(s) = &spec {
        for (i, r) in s.jwt_rules.iter().enumerate() {
            let at = format!("spec.jwtRules[{i}]");
            match r {
                Some(r) => rules.push(rule(obj, r, &at, &mut problems)),
                None => problems.push((at, "must not be null".into())),
            }
        }
    }
    if problems.is_empty() {
        return (attach, rules);
    }
    let mut stand_ins: Vec<JwtRule> = rules
        .into_iter()
        .map(|r| JwtRule {
            jwks: JwksSource::RejectAll,
            fail_closed: true,
            ..r
        })
        .collect();
    if stand_ins.is_empty() {
        stand_ins.push(JwtRule {
            source: obj.id.clone(),
            issuer: String::new(),
            audiences: Vec::new(),
            jwks: JwksSource::RejectAll,
            locations: default_locations(),
            output_payload_to_header: None,
            output_claim_to_headers: Vec::new(),
            forward_original_token: false,
            timeout: JWKS_FETCH_TIMEOUT,
            space_delimited_claims: Vec::new(),
            fail_closed: true,
        });
    }
    for (field, message) in problems {
        cx.diags.push(Diagnostic::refused(
            &obj.file,
            Some(&obj.id),
            field,
            format!("{message}; the resource cannot be enforced as written and is replaced by rules that refuse every token of its issuers"),
        ));
    }
    (attach, stand_ins)
}

fn rule(
    obj: &Obj<RequestAuthenticationDoc>,
    r: &JwtRuleSpec,
    at: &str,
    problems: &mut Problems,
) -> JwtRule {
    let mut problem = |field: &str, msg: String| problems.push((format!("{at}.{field}"), msg));
    // The CRD's `MinLength=1`; istiod's own check only wants issuer or jwksUri.
    if r.issuer.is_empty() {
        problem("issuer", "must be set".into());
    }
    for (i, a) in r.audiences.iter().enumerate() {
        if a.is_empty() {
            problem(&format!("audiences[{i}]"), "must be non-empty".into());
        }
    }
    if !r.jwks_uri.is_empty() && !r.jwks.is_empty() {
        problem("jwks", "only one of jwks or jwksUri can be set".into());
    }
    if !r.jwks_uri.is_empty() {
        if let Err(why) = check_uri(&r.jwks_uri) {
            problem("jwksUri", why);
        }
    }
    let jwks = if !r.jwks.is_empty() {
        if let Err(why) = check_jwks(&r.jwks) {
            problem("jwks", format!("jwks parse error: {why}"));
        }
        JwksSource::Inline(r.jwks.clone())
    } else if !r.jwks_uri.is_empty() {
        JwksSource::Uri(r.jwks_uri.clone())
    } else {
        JwksSource::Discover
    };
    let mut locations = Vec::new();
    for (i, h) in r.from_headers.iter().enumerate() {
        match h {
            Some(h) if !h.name.is_empty() => locations.push(TokenLocation::Header {
                name: h.name.to_ascii_lowercase(),
                prefix: h.prefix.clone(),
            }),
            Some(_) => problem(&format!("fromHeaders[{i}].name"), "must be set".into()),
            None => problem(&format!("fromHeaders[{i}]"), "must not be null".into()),
        }
    }
    for (i, p) in r.from_params.iter().enumerate() {
        if p.is_empty() {
            problem(&format!("fromParams[{i}]"), "must be non-empty".into());
        }
        locations.push(TokenLocation::Param(p.clone()));
    }
    for (i, c) in r.from_cookies.iter().enumerate() {
        if c.is_empty() {
            problem(&format!("fromCookies[{i}]"), "must be non-empty".into());
        }
        locations.push(TokenLocation::Cookie(c.clone()));
    }
    if locations.is_empty() {
        locations = default_locations();
    }
    let output_payload_to_header = (!r.output_payload_to_header.is_empty()).then(|| {
        if !is_header_name(&r.output_payload_to_header) {
            problem(
                "outputPayloadToHeader",
                format!("{:?} is not a header name", r.output_payload_to_header),
            );
        }
        r.output_payload_to_header.to_ascii_lowercase()
    });
    let mut output_claim_to_headers = Vec::new();
    for (i, c) in r.output_claim_to_headers.iter().enumerate() {
        let at = format!("outputClaimToHeaders[{i}]");
        match c {
            None => problem(&at, "must not be null".into()),
            Some(c) if c.header.is_empty() || c.claim.is_empty() => problem(
                &at,
                "header and claim value must be non-empty strings".into(),
            ),
            // The CRD's pattern `^[-_A-Za-z0-9]+$`.
            Some(c) if !is_header_name(&c.header) => problem(
                &format!("{at}.header"),
                format!("{:?} must match ^[-_A-Za-z0-9]+$", c.header),
            ),
            Some(c) => {
                output_claim_to_headers.push((c.header.to_ascii_lowercase(), c.claim.clone()))
            }
        }
    }
    let timeout = match &r.timeout {
        None => JWKS_FETCH_TIMEOUT,
        Some(t) => match crate::duration::parse(t) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                problem("timeout", "must be greater than 0".into());
                JWKS_FETCH_TIMEOUT
            }
            Err(why) => {
                problem("timeout", why);
                JWKS_FETCH_TIMEOUT
            }
        },
    };
    let mut space_delimited_claims: Vec<String> = SPACE_DELIMITED.map(String::from).to_vec();
    for (i, c) in r.space_delimited_claims.iter().enumerate() {
        if c.is_empty() {
            problem(
                &format!("spaceDelimitedClaims[{i}]"),
                "must be non-empty".into(),
            );
        } else if !space_delimited_claims.contains(c) {
            space_delimited_claims.push(c.clone());
        }
    }
    space_delimited_claims.sort();
    JwtRule {
        source: obj.id.clone(),
        issuer: r.issuer.clone(),
        audiences: r.audiences.clone(),
        jwks,
        locations,
        output_payload_to_header,
        output_claim_to_headers,
        forward_original_token: r.forward_original_token,
        timeout,
        space_delimited_claims,
        fail_closed: false,
    }
}

/// What Envoy needs of a key set: a JSON object with a `keys` array of
/// objects that name their `kty`. The keys themselves are checked where they
/// are used.
fn check_jwks(text: &str) -> Result<(), String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let keys = v
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("a JWKS is an object with a \"keys\" array")?;
    for (i, k) in keys.iter().enumerate() {
        if k.get("kty").and_then(|t| t.as_str()).is_none() {
            return Err(format!("keys[{i}] has no \"kty\""));
        }
    }
    Ok(())
}

/// Istio's `security.ParseJwksURI` and the CRD's rule: `http` or `https`,
/// with a host.
fn check_uri(uri: &str) -> Result<(), String> {
    if uri.len() > 2048 {
        return Err("must be at most 2048 characters".into());
    }
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .ok_or_else(|| format!("{uri:?}: url must have scheme http:// or https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (name, port) = waypoint_ir::split_host_port(host);
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!("{uri:?} has no host"));
    }
    if host.contains(':') && !host.starts_with('[') && port.is_none() {
        return Err(format!("{uri:?} has an invalid port"));
    }
    Ok(())
}

fn is_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_uris_need_http_or_https_and_a_host() {
        assert!(check_uri("https://example.com/.well-known/jwks.json").is_ok());
        assert!(check_uri("http://127.0.0.1:8080/jwks").is_ok());
        assert!(check_uri("ftp://example.com/jwks").is_err());
        assert!(check_uri("https:///jwks").is_err());
        assert!(check_uri("example.com/jwks").is_err());
        assert!(check_uri("http://host:port/jwks").is_err());
    }

    #[test]
    fn key_sets_need_keys_with_a_type() {
        assert!(check_jwks(r#"{"keys":[{"kty":"RSA","n":"x","e":"AQAB"}]}"#).is_ok());
        assert!(check_jwks(r#"{"keys":[{"n":"x"}]}"#).is_err());
        assert!(check_jwks(r#"{"kty":"RSA"}"#).is_err());
        assert!(check_jwks("not json").is_err());
    }
}
