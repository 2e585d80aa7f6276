//! RequestAuthentication at request time, the parts without cryptography:
//! where tokens are found (Envoy `jwt_authn`'s extractor), which headers a
//! client must not set itself, and what a verified token offers to
//! AuthorizationPolicy (`request.auth.*`).

use serde_json::Value;
use waypoint_ir::{JwtRule, TokenLocation};

/// A token as found, with the location it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<'r> {
    pub location: &'r TokenLocation,
    pub token: String,
}

/// Every token in the rules' locations, each (location, token) once: Envoy
/// verifies every token present, and rules sharing a location (the default
/// `Authorization` header) see the same one.
pub fn extract<'r>(
    rules: &[&'r JwtRule],
    headers: &http::HeaderMap,
    query: Option<&str>,
) -> Vec<Found<'r>> {
    let mut out: Vec<Found<'r>> = Vec::new();
    for rule in rules {
        for location in &rule.locations {
            let token = match location {
                TokenLocation::Header { name, prefix } => headers
                    .get(name.as_str())
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| from_header(v, prefix)),
                TokenLocation::Param(name) => query.and_then(|q| param(q, name)),
                TokenLocation::Cookie(name) => cookie(headers, name),
            };
            if let Some(token) = token {
                if !out
                    .iter()
                    .any(|f| f.location == location && f.token == token)
                {
                    out.push(Found { location, token });
                }
            }
        }
    }
    out
}

/// Envoy finds the prefix anywhere in the value and takes the JWT that
/// follows it, up to the first character a JWT cannot hold; without a prefix
/// the whole value is the token. A value without the prefix holds no token.
fn from_header(value: &str, prefix: &str) -> Option<String> {
    if prefix.is_empty() {
        return (!value.is_empty()).then(|| value.to_string());
    }
    let at = value.find(prefix)? + prefix.len();
    let rest = &value[at..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=')))
        .unwrap_or(rest.len());
    (end > 0).then(|| rest[..end].to_string())
}

/// The first value of a query parameter, percent-decoded.
fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name && !v.is_empty()).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn cookie(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name && !v.is_empty()).then(|| v.trim_matches('"').to_string())
        })
}

/// Headers the rules write on success. Envoy removes them from every request
/// first, so a client cannot pass off its own as the waypoint's.
pub fn output_headers<'a, 'r>(rules: &'a [&'r JwtRule]) -> impl Iterator<Item = &'r str> + 'a {
    rules.iter().flat_map(|r| {
        r.output_payload_to_header
            .as_deref()
            .into_iter()
            .chain(r.output_claim_to_headers.iter().map(|(h, _)| h.as_str()))
    })
}

/// What a verified token tells AuthorizationPolicy.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestAuth {
    /// `iss/sub`: `request.auth.principal`, `requestPrincipals`.
    pub principal: String,
    /// `aud`, a string or a list.
    pub audiences: Vec<String>,
    /// `azp`.
    pub presenter: Option<String>,
    /// The payload, with the rule's space-delimited claims split into lists.
    pub claims: Value,
}

impl RequestAuth {
    /// From a verified token's payload, normalised as Envoy's
    /// `normalize_payload_in_metadata` does for Istio.
    pub fn from_payload(mut payload: Value, space_delimited: &[String]) -> RequestAuth {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
        let principal = format!("{}/{}", text(payload.get("iss")), text(payload.get("sub")));
        let audiences = strings(payload.get("aud"));
        let presenter = payload
            .get("azp")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Value::Object(map) = &mut payload {
            for claim in space_delimited {
                if let Some(Value::String(s)) = map.get(claim) {
                    let split = s
                        .split(' ')
                        .filter(|p| !p.is_empty())
                        .map(|p| Value::String(p.into()))
                        .collect();
                    map.insert(claim.clone(), Value::Array(split));
                }
            }
        }
        RequestAuth {
            principal,
            audiences,
            presenter,
            claims: payload,
        }
    }

    /// The string values of the claim at `path` (nested objects): the claim
    /// itself when a string, its string elements when a list. Istio matches
    /// `request.auth.claims[...]` as "the string, or one element of the list".
    pub fn claim(&self, path: &[String]) -> Vec<&str> {
        let mut v = &self.claims;
        for key in path {
            match v.get(key) {
                Some(next) => v = next,
                None => return Vec::new(),
            }
        }
        match v {
            Value::String(s) => vec![s.as_str()],
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
