//! Envoy's HTTP authorization protocol: the request's method, `pathPrefix` +
//! path, `Host`, `Authorization` and the headers the provider includes, with
//! `Content-Length` the size of the body sent (none, unless the provider
//! includes it). 200 allows; a 5xx is a failed check; any other status denies,
//! and goes back to the client with its body and the allowed headers.

use super::grpc::PARTIAL_BODY;
use super::{Allowed, CheckInput, Denied, Edit, HeaderEdit, Outcome};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use waypoint_ir::{ExtAuthzProvider, HttpCheck, StrMatch};

/// The most of an authorizer's answer body kept (it goes to the client).
const MAX_ANSWER: usize = 64 * 1024;

/// Headers a denial always passes on when the provider names some
/// (`headersToDownstreamOnDeny`).
const ALWAYS_ON_DENY: [&str; 2] = ["www-authenticate", "location"];

/// Headers of the answer that describe its own message, not the request.
const OWN: [&str; 5] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "host",
];

pub async fn check(
    sender: &mut SendRequest<Full<Bytes>>,
    rules: &HttpCheck,
    host: &str,
    provider: &ExtAuthzProvider,
    input: &CheckInput<'_>,
) -> Result<Outcome, String> {
    let Some(head) = input.head else {
        return Err("the HTTP protocol cannot check a TCP connection".into());
    };
    let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = http::Request::builder()
        .method(head.method.clone())
        .uri(format!("{}{path}", rules.path_prefix));
    let sent_host = head
        .headers
        .get(http::header::HOST)
        .cloned()
        .or_else(|| head.uri.authority()?.as_str().parse().ok())
        .unwrap_or_else(|| {
            http::HeaderValue::from_str(host).unwrap_or(http::HeaderValue::from_static("ext-authz"))
        });
    let headers = req.headers_mut().expect("a fresh builder");
    headers.insert(http::header::HOST, sent_host);
    for (name, value) in head.headers.iter() {
        let sent = *name == http::header::AUTHORIZATION
            || matches_any(&rules.request_headers, name.as_str());
        if sent && !OWN.contains(&name.as_str()) {
            headers.append(name.clone(), value.clone());
        }
    }
    for (name, value) in &rules.additional_headers {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            headers.insert(n, v);
        }
    }
    let body = match (&provider.body, input.body) {
        (Some(b), Some((bytes, partial))) => {
            if b.allow_partial {
                headers.insert(
                    PARTIAL_BODY,
                    http::HeaderValue::from_static(if partial { "true" } else { "false" }),
                );
            }
            Bytes::copy_from_slice(bytes)
        }
        _ => Bytes::new(),
    };
    headers.insert(http::header::CONTENT_LENGTH, body.len().into());
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;

    sender
        .ready()
        .await
        .map_err(|e| format!("the authorizer connection: {e}"))?;
    let answer = sender
        .send_request(req)
        .await
        .map_err(|e| format!("asking the authorizer: {e}"))?;
    let (parts, body) = answer.into_parts();
    let body = Limited::new(body, MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| format!("reading the authorizer's answer: {e}"))?
        .to_bytes();
    let status = parts.status.as_u16();
    if status == 200 {
        return Ok(Outcome::Allow(Allowed {
            request: picked(&parts.headers, &rules.to_upstream_on_allow),
            response: picked(&parts.headers, &rules.to_downstream_on_allow),
            ..Allowed::default()
        }));
    }
    if parts.status.is_server_error() {
        return Ok(Outcome::Failed(format!("the authorizer answered {status}")));
    }
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| !OWN.contains(&name.as_str()))
        .filter(|(name, _)| {
            rules.to_downstream_on_deny.is_empty()
                || ALWAYS_ON_DENY.contains(&name.as_str())
                || matches_any(&rules.to_downstream_on_deny, name.as_str())
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    Ok(Outcome::Deny(Denied {
        status,
        headers,
        body,
    }))
}

fn matches_any(patterns: &[StrMatch], name: &str) -> bool {
    patterns.iter().any(|p| p.matches(name))
}

/// The answer's headers the patterns name, each set over the request's or
/// response's own (Istio: "any existing headers will be overridden").
fn picked(headers: &http::HeaderMap, patterns: &[StrMatch]) -> Vec<HeaderEdit> {
    headers
        .iter()
        .filter(|(name, _)| !OWN.contains(&name.as_str()) && matches_any(patterns, name.as_str()))
        .map(|(name, value)| HeaderEdit {
            edit: Edit::Set,
            name: name.clone(),
            value: value.clone(),
        })
        .collect()
}
