//! AuthorizationPolicy `CUSTOM` at request time: the provider of the matching
//! policy is asked before DENY and ALLOW count, as Envoy's ext_authz filter
//! runs before RBAC. A denial goes to the client as the authorizer wrote it;
//! a failed check allows the request only when the provider fails open.

use super::{reply, RequestCtx};
use crate::ext_authz::{Allowed, CheckInput, Decision, ExtAuthz};
use crate::state::Runtime;
use bytes::{Bytes, BytesMut};
use pingora::prelude::*;
use pingora::proxy::Session;
use std::net::SocketAddr;
use waypoint_filters::ResponseFlag;
use waypoint_ir::{BodyInCheck, ExtAuthzProvider};

/// What asking left to do.
pub enum Asked {
    /// The request goes on; these changes wait until the route is chosen
    /// (Envoy's route cache: the route is picked on the request as it came,
    /// unless the provider clears the cache, when they were applied already).
    Go(Option<Allowed>),
    /// The client has its answer.
    Replied,
}

pub async fn ask(
    ext_authz: &ExtAuthz,
    metrics: &crate::metrics::Metrics,
    rt: &Runtime,
    session: &mut Session,
    ctx: &mut RequestCtx,
    provider: &ExtAuthzProvider,
    destination: Option<SocketAddr>,
) -> Result<Asked> {
    let body = match &provider.body {
        Some(b) => match read_body(session, b).await? {
            Some(body) => Some(body),
            None => {
                // The rest of the body is unread: the connection cannot go on.
                ctx.details = Some("request_payload_too_large".into());
                session.set_keepalive(None);
                reply::send(session, 413, &[], "Payload Too Large").await?;
                return Ok(Asked::Replied);
            }
        },
        None => None,
    };
    let input = CheckInput {
        head: Some(session.req_header()),
        body: body.as_ref().map(|(b, partial)| (&b[..], *partial)),
        source: ctx.source.as_deref(),
        source_addr: super::hbone_meta(session).map(|m| m.peer),
        destination,
        protocol: super::protocol_name(session.req_header().version),
    };
    match ext_authz.decide(rt, provider, &input, metrics).await {
        Decision::Go(Some(allowed)) if provider.clear_route_cache => {
            apply(session, ctx, allowed)?;
            Ok(Asked::Go(None))
        }
        Decision::Go(edits) => Ok(Asked::Go(edits)),
        Decision::Deny(denied) => {
            ctx.flag = ResponseFlag::UnauthorizedExternalService;
            ctx.details = Some("ext_authz_denied".into());
            let headers: Vec<(String, String)> = denied
                .headers
                .iter()
                .filter_map(|(n, v)| Some((n.to_string(), v.to_str().ok()?.to_string())))
                .collect();
            let body = String::from_utf8_lossy(&denied.body);
            reply::send(session, denied.status, &headers, &body).await?;
            Ok(Asked::Replied)
        }
        Decision::Refuse => {
            ctx.flag = ResponseFlag::UnauthorizedExternalService;
            ctx.details = Some("ext_authz_error".into());
            reply::send(session, provider.status_on_error, &[], "").await?;
            Ok(Asked::Replied)
        }
    }
}

/// Reads up to `max_bytes` of the body for the check, keeping it in
/// Pingora's buffer so it still goes upstream; `None` when the body is longer
/// and may not be cut (Envoy's 413), or longer than that buffer can replay.
async fn read_body(session: &mut Session, b: &BodyInCheck) -> Result<Option<(Bytes, bool)>> {
    let max = b.max_bytes as usize;
    session.as_mut().enable_retry_buffering();
    let mut body = BytesMut::new();
    let mut done = false;
    while body.len() <= max {
        match session.read_request_body().await? {
            Some(chunk) => body.extend_from_slice(&chunk),
            None => {
                done = true;
                break;
            }
        }
    }
    let longer = !done && body.len() > max;
    if (longer && !b.allow_partial) || session.as_ref().retry_buffer_truncated() {
        return Ok(None);
    }
    body.truncate(max);
    Ok(Some((body.freeze(), longer)))
}

/// Applies an allowing authorizer's changes to the request going upstream,
/// and keeps its response headers for the answer.
pub fn apply(session: &mut Session, ctx: &mut RequestCtx, allowed: Allowed) -> Result<()> {
    let req = session.req_header_mut();
    for edit in &allowed.request {
        edit.apply(req);
    }
    for name in &allowed.remove {
        req.remove_header(name);
    }
    if !allowed.query_set.is_empty() || !allowed.query_remove.is_empty() {
        let path = req.uri.path().to_string();
        let mut pairs: Vec<(String, String)> = req
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (p.to_string(), String::new()),
            })
            .collect();
        pairs.retain(|(k, _)| {
            !allowed.query_remove.contains(k) && !allowed.query_set.iter().any(|(s, _)| s == k)
        });
        pairs.extend(allowed.query_set.iter().cloned());
        let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let pq = if query.is_empty() {
            path
        } else {
            format!("{path}?{}", query.join("&"))
        };
        let mut parts = req.uri.clone().into_parts();
        parts.path_and_query = Some(
            pq.parse()
                .map_err(|e| Error::because(ErrorType::InternalError, "ext_authz query", e))?,
        );
        let uri = http::Uri::from_parts(parts)
            .map_err(|e| Error::because(ErrorType::InternalError, "ext_authz query", e))?;
        req.set_uri(uri);
    }
    ctx.ext_authz_response = allowed.response;
    Ok(())
}
