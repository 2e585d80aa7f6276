//! Local replies that keep the downstream connection: a tunnel carries many
//! requests, and pingora's `respond_error` would close it. A gRPC request is
//! answered in gRPC's terms.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::future::Future;
use std::pin::Pin;

/// A reply being written. Boxed: replying is the rare path, and inline, its
/// future (Pingora's response writes, over a kilobyte) would size the future of
/// every hook that may reply, `request_filter`'s among them, which Pingora
/// moves into a box of its own on every request.
pub type Reply<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

pub fn send<'a>(
    session: &'a mut Session,
    status: u16,
    headers: &'a [(String, String)],
    body: &'a str,
) -> Reply<'a> {
    Box::pin(write(session, status, headers, body))
}

/// A fault's abort: its HTTP status, or its gRPC status.
pub fn abort<'a>(session: &'a mut Session, abort: waypoint_ir::Abort, body: &'a str) -> Reply<'a> {
    Box::pin(async move {
        match abort {
            waypoint_ir::Abort::Http(status) => write(session, status, &[], body).await,
            waypoint_ir::Abort::Grpc(code) => write_grpc_status(session, code, &[], body).await,
        }
    })
}

async fn write(
    session: &mut Session,
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> Result<()> {
    if super::grpc::is_grpc(&session.req_header().headers) {
        let code = super::grpc::status_for(status);
        return write_grpc_status(session, code, headers, body).await;
    }
    settle_h2_request(session).await;
    let mut resp = ResponseHeader::build(status, Some(headers.len() + 2))?;
    for (name, value) in headers {
        resp.append_header(name.clone(), value.as_str())?;
    }
    if !resp.headers.contains_key(http::header::CONTENT_TYPE) {
        resp.insert_header("content-type", "text/plain")?;
    }
    resp.insert_header("content-length", body.len().to_string())?;
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::copy_from_slice(body.as_bytes())), true)
        .await?;
    Ok(())
}

/// A gRPC client reads only `grpc-status`: the reply is HTTP 200 with the
/// status `code` in the headers and no body (trailers-only), as Envoy answers.
async fn write_grpc_status(
    session: &mut Session,
    code: u8,
    headers: &[(String, String)],
    body: &str,
) -> Result<()> {
    use super::grpc;
    settle_h2_request(session).await;
    let mut resp = ResponseHeader::build(200, Some(headers.len() + 3))?;
    for (name, value) in headers {
        resp.insert_header(name.clone(), value.as_str())?;
    }
    resp.insert_header("content-type", "application/grpc")?;
    resp.insert_header("grpc-status", code.to_string())?;
    resp.insert_header("grpc-message", grpc::message(body))?;
    // Pingora's session ends an HTTP/2 response only with a body; trailers-only
    // needs END_STREAM on the headers themselves.
    if let pingora::protocols::http::ServerSession::H2(h2) = session.as_downstream_mut() {
        return h2.write_response_header(Box::new(resp), true);
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(None, true).await?;
    Ok(())
}

/// How long a local reply on HTTP/2 waits for the rest of the request body.
const H2_DRAIN: std::time::Duration = std::time::Duration::from_millis(200);

/// On HTTP/2, a reply sent before the request's end makes the stream close
/// with RST_STREAM(CANCEL) once the unread request is dropped, which clients
/// such as curl report as a failure although the answer was whole. Reading the
/// rest first (a unary call's body has usually arrived with its headers)
/// closes the stream cleanly; a request still streaming after a short wait is
/// answered anyway.
async fn settle_h2_request(session: &mut Session) {
    let down = session.as_downstream_mut();
    if down.as_http2().is_none() || down.is_body_done() {
        return;
    }
    let _ = tokio::time::timeout(H2_DRAIN, down.drain_request_body()).await;
}
