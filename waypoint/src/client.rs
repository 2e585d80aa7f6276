//! HTTP/1.1 requests through an HBONE tunnel: what `waypoint client`, the demo and
//! the tests send.

use crate::hbone::client::{ClientError, HboneClient};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Hbone(#[from] ClientError),
    #[error("HTTP over the tunnel: {0}")]
    Http(#[from] hyper::Error),
    #[error("invalid request: {0}")]
    Invalid(#[from] http::Error),
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One tunnel carrying an HTTP/1.1 keep-alive connection.
pub struct Tunnel {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Tunnel {
    pub async fn open(client: &HboneClient, authority: &str) -> Result<Tunnel, RequestError> {
        let stream = client.open(authority).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Tunnel { sender })
    }

    pub async fn send(
        &mut self,
        method: Method,
        uri: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Result<Reply, RequestError> {
        // An absolute URL names the Host; on the wire the request is origin-form.
        let parsed: http::Uri = uri.parse().map_err(http::Error::from)?;
        let path = parsed.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let mut req = Request::builder().method(method).uri(path);
        let has_host = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host"));
        if let (Some(authority), false) = (parsed.authority(), has_host) {
            req = req.header("host", authority.as_str());
        }
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req.body(Full::new(body))?;
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    pub async fn get(
        &mut self,
        uri: &str,
        headers: &[(String, String)],
    ) -> Result<Reply, RequestError> {
        self.send(Method::GET, uri, headers, Bytes::new()).await
    }
}
