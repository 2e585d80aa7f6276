//! One token against the rules that read its location, in the order of
//! Envoy's `jwt_authn` authenticator: parse, issuer, time (60 s of clock
//! skew), audience, signature. Each failure is Envoy's status, whose text is
//! the 401 (403 for the audience) body.

use super::jwks::{Jwks, KeySet};
use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;
use std::sync::Arc;
use waypoint_ir::JwtRule;

/// `jwt_verify_lib`'s `kClockSkewInSecond`, Envoy's default.
pub const CLOCK_SKEW_SECS: u64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    BadFormat,
    UnknownIssuer,
    NotYetValid,
    Expired,
    AudienceNotAllowed,
    KidAlgMismatch,
    VerificationFails,
}

impl Failure {
    /// `jwt_verify_lib`'s `getStatusString`.
    pub fn message(self) -> &'static str {
        match self {
            Failure::BadFormat => "Jwt is not in the form of Header.Payload.Signature",
            Failure::UnknownIssuer => "Jwt issuer is not configured",
            Failure::NotYetValid => "Jwt not yet valid",
            Failure::Expired => "Jwt is expired",
            Failure::AudienceNotAllowed => "Audiences in Jwt are not allowed",
            Failure::KidAlgMismatch => "Jwks doesn't have key to match kid or alg from Jwt",
            Failure::VerificationFails => "Jwt verification fails",
        }
    }

    /// Envoy's filter answers 403 for a foreign audience, 401 otherwise.
    pub fn status(self) -> u16 {
        match self {
            Failure::AudienceNotAllowed => 403,
            _ => 401,
        }
    }
}

/// A token that verified, and the rule it verified against.
pub struct Verified<'r> {
    pub rule: &'r JwtRule,
    pub payload: Value,
    /// The payload as it was sent (base64url), for `outputPayloadToHeader`.
    pub payload_b64: String,
}

/// Verifies `token` against `rules` (those reading its location). A rule
/// with an empty issuer is a fail-closed stand-in that takes any issuer.
pub fn verify<'r>(
    token: &str,
    rules: &[&'r JwtRule],
    jwks: &Jwks,
    now: u64,
) -> Result<Verified<'r>, Failure> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload_b64), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Failure::BadFormat);
    };
    let header = jsonwebtoken::decode_header(token).map_err(|_| Failure::BadFormat)?;
    let payload: Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload_b64.trim_end_matches('='))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(Value::is_object)
        .ok_or(Failure::BadFormat)?;
    let iss = payload.get("iss").and_then(Value::as_str).unwrap_or("");
    let mut candidates = rules
        .iter()
        .filter(|r| r.issuer == iss || (r.fail_closed && r.issuer.is_empty()))
        .peekable();
    if candidates.peek().is_none() {
        return Err(Failure::UnknownIssuer);
    }
    time(&payload, now)?;
    let mut last = Failure::VerificationFails;
    for rule in candidates {
        if !audience_allowed(&rule.audiences, &payload) {
            last = Failure::AudienceNotAllowed;
            continue;
        }
        let Some(keys) = jwks.keys(rule) else {
            log::debug!("{}: no keys for {iss:?} (yet): refused", rule.source);
            last = Failure::VerificationFails;
            continue;
        };
        match signature(token, header.alg, header.kid.as_deref(), &keys) {
            Ok(()) => {
                return Ok(Verified {
                    rule,
                    payload,
                    payload_b64: payload_b64.to_string(),
                })
            }
            Err(f) => last = f,
        }
    }
    Err(last)
}

fn time(payload: &Value, now: u64) -> Result<(), Failure> {
    let claim = |name: &str| match payload.get(name) {
        None => Ok(0),
        Some(v) => v.as_u64().ok_or(Failure::BadFormat),
    };
    let (nbf, exp) = (claim("nbf")?, claim("exp")?);
    if now + CLOCK_SKEW_SECS < nbf {
        return Err(Failure::NotYetValid);
    }
    if exp != 0 && now > exp + CLOCK_SKEW_SECS {
        return Err(Failure::Expired);
    }
    Ok(())
}

/// `jwt_verify_lib`'s `CheckAudience`: none configured admits any; else one
/// of the token's must be configured, both compared without an `http://` or
/// `https://` scheme and a trailing `/`.
fn audience_allowed(configured: &[String], payload: &Value) -> bool {
    if configured.is_empty() {
        return true;
    }
    let norm = |a: &str| {
        let a = a
            .strip_prefix("http://")
            .or_else(|| a.strip_prefix("https://"))
            .unwrap_or(a);
        a.strip_suffix('/').unwrap_or(a).to_string()
    };
    let allowed: Vec<String> = configured.iter().map(|a| norm(a)).collect();
    let theirs: Vec<&str> = match payload.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    theirs.iter().any(|a| allowed.contains(&norm(a)))
}

/// Tries every key whose `kid` and `alg` do not contradict the token's, as
/// `jwt_verify_lib`'s `verifyJwtWithoutTimeChecking` does.
fn signature(
    token: &str,
    alg: Algorithm,
    kid: Option<&str>,
    keys: &Arc<KeySet>,
) -> Result<(), Failure> {
    let alg_name = format!("{alg:?}");
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let mut matched = false;
    for k in &keys.0 {
        if kid.is_some() && k.kid.is_some() && k.kid.as_deref() != kid {
            continue;
        }
        if k.alg.as_ref().is_some_and(|a| *a != alg_name) {
            continue;
        }
        match jsonwebtoken::decode::<Value>(token, &k.key, &validation) {
            Ok(_) => return Ok(()),
            // A key of another type for this alg does not count as matched.
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidAlgorithm) => {}
            Err(_) => matched = true,
        }
    }
    Err(if matched {
        Failure::VerificationFails
    } else {
        Failure::KidAlgMismatch
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn time_allows_envoys_sixty_seconds_of_skew() {
        let now = 1_000_000;
        assert_eq!(time(&json!({}), now), Ok(()));
        assert_eq!(time(&json!({"exp": now - 60}), now), Ok(()));
        assert_eq!(time(&json!({"exp": now - 61}), now), Err(Failure::Expired));
        assert_eq!(time(&json!({"nbf": now + 60}), now), Ok(()));
        assert_eq!(
            time(&json!({"nbf": now + 61}), now),
            Err(Failure::NotYetValid)
        );
        assert_eq!(time(&json!({"exp": "soon"}), now), Err(Failure::BadFormat));
    }

    #[test]
    fn audiences_compare_without_scheme_and_trailing_slash() {
        let cfg = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(audience_allowed(&[], &json!({})));
        assert!(audience_allowed(
            &cfg(&["shop"]),
            &json!({"aud": ["x", "shop"]})
        ));
        assert!(audience_allowed(
            &cfg(&["https://api.example.com/"]),
            &json!({"aud": "http://api.example.com"})
        ));
        assert!(!audience_allowed(
            &cfg(&["shop"]),
            &json!({"aud": "reviews"})
        ));
        assert!(!audience_allowed(&cfg(&["shop"]), &json!({})));
    }

    #[test]
    fn a_token_of_no_configured_issuer_is_refused_before_its_keys_are_looked_at() {
        let rule = JwtRule {
            source: waypoint_ir::ResourceRef::new(
                waypoint_ir::ResourceKind::RequestAuthentication,
                "ns",
                "ra",
            ),
            issuer: "idp".into(),
            audiences: Vec::new(),
            jwks: waypoint_ir::JwksSource::RejectAll,
            locations: waypoint_ir::default_locations(),
            output_payload_to_header: None,
            output_claim_to_headers: Vec::new(),
            forward_original_token: false,
            timeout: waypoint_ir::JWKS_FETCH_TIMEOUT,
            space_delimited_claims: Vec::new(),
            fail_closed: false,
        };
        let jwks = Jwks::new(std::time::Duration::from_secs(60));
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let token = |iss: &str| {
            format!(
                "{}.{}.c2ln",
                b64(json!({"alg": "RS256"})),
                b64(json!({"iss": iss}))
            )
        };
        let verify = |t: &str| verify(t, &[&rule], &jwks, 0).err();
        assert_eq!(verify(&token("other")), Some(Failure::UnknownIssuer));
        // Known issuer, no keys (a stand-in): refused.
        assert_eq!(verify(&token("idp")), Some(Failure::VerificationFails));
        assert_eq!(verify("a.b"), Some(Failure::BadFormat));
    }
}
