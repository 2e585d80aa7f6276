//! Local replies that keep the downstream connection: a tunnel carries many
//! requests, and pingora's `respond_error` would close it.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

pub async fn send(
    session: &mut Session,
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(headers.len() + 2))?;
    for (name, value) in headers {
        resp.insert_header(name.clone(), value.as_str())?;
    }
    resp.insert_header("content-type", "text/plain")?;
    resp.insert_header("content-length", body.len().to_string())?;
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::copy_from_slice(body.as_bytes())), true)
        .await?;
    Ok(())
}
