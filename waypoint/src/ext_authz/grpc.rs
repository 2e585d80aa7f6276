//! The gRPC protocol: a `CheckRequest` with the attributes Envoy sends
//! (`CheckRequestUtils::createHttpCheck`, or `createTcpCheck` for a TCP
//! connection), and the `CheckResponse` read as Envoy reads it.

use super::{Allowed, CheckInput, Denied, Edit, HeaderEdit, Outcome};
use envoy_types::pb::envoy::config::core::v3::{
    address, header_value_option::HeaderAppendAction, socket_address::PortSpecifier, Address,
    HeaderValueOption, SocketAddress,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use std::collections::HashMap;
use std::net::SocketAddr;
use tonic::transport::Channel;
use waypoint_ir::ExtAuthzProvider;

/// Envoy's header for a body cut at `maxRequestBytes`.
pub const PARTIAL_BODY: &str = "x-envoy-auth-partial-body";

pub async fn check(
    channel: Channel,
    provider: &ExtAuthzProvider,
    input: &CheckInput<'_>,
) -> Result<Outcome, String> {
    let request = request(provider, input);
    match AuthorizationClient::new(channel).check(request).await {
        Ok(answer) => Ok(outcome(answer.into_inner())),
        Err(status) => Ok(Outcome::Failed(format!(
            "the authorizer answered gRPC {:?}: {}",
            status.code(),
            status.message()
        ))),
    }
}

fn request(provider: &ExtAuthzProvider, input: &CheckInput<'_>) -> CheckRequest {
    let source = Peer {
        address: input.source_addr.map(address),
        principal: input.source.map(|s| s.to_string()).unwrap_or_default(),
        ..Peer::default()
    };
    let destination = Peer {
        address: input.destination.map(address),
        ..Peer::default()
    };
    let http = input.head.map(|head| {
        let mut headers: HashMap<String, String> = HashMap::new();
        for (name, value) in head.headers.iter() {
            let value = String::from_utf8_lossy(value.as_bytes());
            headers
                .entry(name.as_str().to_string())
                .and_modify(|v| {
                    v.push(',');
                    v.push_str(&value);
                })
                .or_insert_with(|| value.into_owned());
        }
        let host = head
            .headers
            .get(::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| head.uri.authority().map(|a| a.as_str()))
            .unwrap_or_default()
            .to_string();
        let path = head
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        headers.insert(":authority".into(), host.clone());
        headers.insert(":method".into(), head.method.to_string());
        headers.insert(":path".into(), path.clone());
        let size = head
            .headers
            .get(::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<i64>().ok())
            .unwrap_or(-1);
        let mut http = HttpRequest {
            id: headers.get("x-request-id").cloned().unwrap_or_default(),
            method: head.method.to_string(),
            path,
            host,
            scheme: "http".into(),
            size,
            protocol: input.protocol.into(),
            headers,
            ..HttpRequest::default()
        };
        if let (Some(body), Some((bytes, partial))) = (&provider.body, input.body) {
            if body.allow_partial {
                http.headers
                    .insert(PARTIAL_BODY.into(), partial.to_string());
            }
            if body.pack_as_bytes {
                http.raw_body = bytes.to_vec();
            } else {
                http.body = String::from_utf8_lossy(bytes).into_owned();
            }
        }
        http
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(source),
            destination: Some(destination),
            request: Some(Request {
                time: Some(envoy_types::pb::google::protobuf::Timestamp {
                    seconds: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
                    nanos: i32::try_from(now.subsec_nanos()).unwrap_or(0),
                }),
                http,
            }),
            ..AttributeContext::default()
        }),
    }
}

fn address(a: SocketAddr) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: a.ip().to_string(),
            port_specifier: Some(PortSpecifier::PortValue(u32::from(a.port()))),
            ..SocketAddress::default()
        })),
    }
}

fn outcome(answer: CheckResponse) -> Outcome {
    let ok = answer.status.as_ref().is_none_or(|s| s.code == 0);
    match (ok, answer.http_response) {
        (_, Some(HttpResponse::ErrorResponse(e))) => Outcome::Failed(format!(
            "the authorizer reported an error (HTTP {})",
            e.status.map_or(0, |s| s.code)
        )),
        (true, ok_response) => {
            let mut allowed = Allowed::default();
            if let Some(HttpResponse::OkResponse(r)) = ok_response {
                allowed.request = edits(&r.headers);
                allowed.remove = r
                    .headers_to_remove
                    .iter()
                    .filter_map(|h| ::http::HeaderName::from_bytes(h.as_bytes()).ok())
                    // Envoy never lets an authorizer remove the request's
                    // pseudo-headers or Host.
                    .filter(|h| *h != ::http::header::HOST)
                    .collect();
                allowed.response = edits(&r.response_headers_to_add);
                allowed.query_set = r
                    .query_parameters_to_set
                    .into_iter()
                    .map(|q| (q.key, q.value))
                    .collect();
                allowed.query_remove = r.query_parameters_to_remove;
            }
            Outcome::Allow(allowed)
        }
        (false, denied) => {
            let (status, headers, body) = match denied {
                Some(HttpResponse::DeniedResponse(d)) => (
                    d.status.map_or(0, |s| s.code),
                    edits(&d.headers)
                        .into_iter()
                        .map(|e| (e.name, e.value))
                        .collect(),
                    d.body,
                ),
                _ => (0, Vec::new(), String::new()),
            };
            // An unset (or impossible) status is Envoy's 403.
            let status = u16::try_from(status)
                .ok()
                .filter(|s| (200..600).contains(s))
                .unwrap_or(403);
            Outcome::Deny(Denied {
                status,
                headers,
                body: body.into(),
            })
        }
    }
}

/// `HeaderValueOption`s as Envoy's ext_authz applies them: the deprecated
/// `append`, when set, decides (true appends, false overwrites); otherwise
/// `append_action`.
fn edits(options: &[HeaderValueOption]) -> Vec<HeaderEdit> {
    options
        .iter()
        .filter_map(|o| {
            let h = o.header.as_ref()?;
            let name = ::http::HeaderName::from_bytes(h.key.as_bytes()).ok()?;
            let raw = if h.raw_value.is_empty() {
                h.value.as_bytes()
            } else {
                &h.raw_value
            };
            let value = ::http::HeaderValue::from_bytes(raw).ok()?;
            // Still sent by older authorizers, and Envoy still honours it.
            #[allow(deprecated)]
            let append = o.append.as_ref().map(|b| b.value);
            let edit = match append {
                Some(true) => Edit::Append,
                Some(false) => Edit::Set,
                None => match HeaderAppendAction::try_from(o.append_action) {
                    Ok(HeaderAppendAction::AddIfAbsent) => Edit::AddIfAbsent,
                    Ok(HeaderAppendAction::OverwriteIfExistsOrAdd) => Edit::Set,
                    Ok(HeaderAppendAction::OverwriteIfExists) => Edit::SetIfExists,
                    _ => Edit::Append,
                },
            };
            Some(HeaderEdit { edit, name, value })
        })
        .collect()
}
