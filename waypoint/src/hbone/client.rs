//! The client side of HBONE: one mTLS HTTP/2 connection, many CONNECT tunnels.
//! `waypoint client`, the demo and the tests use it, and so does `pool` for
//! HBONE upstreams.

use super::tunnel::Tunnel;
use super::H2Stream;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr}: {reason}")]
    Tls { addr: SocketAddr, reason: String },
    #[error("HTTP/2: {0}")]
    H2(#[from] h2::Error),
    #[error("CONNECT {authority} refused with {status}")]
    Refused {
        authority: String,
        status: StatusCode,
    },
    #[error("invalid CONNECT authority {0:?}")]
    Authority(String),
}

/// A handle to one HBONE connection; clones share the connection.
#[derive(Clone)]
pub struct HboneClient {
    send: h2::client::SendRequest<Bytes>,
}

impl HboneClient {
    pub async fn connect(
        addr: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Self, ClientError> {
        Self::connect_with(addr, tls, super::H2Settings::default()).await
    }

    pub async fn connect_with(
        addr: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
        h2: super::H2Settings,
    ) -> Result<Self, ClientError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        // Identity is checked by SPIFFE ID in the verifier; the name is unused.
        let name = ServerName::IpAddress(addr.ip().into());
        let tls = TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| ClientError::Tls {
                addr,
                reason: super::tls::describe_io_error(&e),
            })?;
        let (send, mut conn) = h2::client::Builder::new()
            .initial_window_size(h2.stream_window)
            .initial_connection_window_size(h2.connection_window)
            .handshake(tls)
            .await?;
        let ping_pong = conn.ping_pong();
        tokio::spawn(async move {
            let expired = super::keepalive::expired(ping_pong, h2.keepalive);
            tokio::select! {
                ended = conn => if let Err(e) = ended {
                    log::debug!("hbone client connection to {addr} ended: {e}");
                },
                // Dropping the connection closes it; its tunnels fail and the
                // pool dials afresh.
                () = expired => {
                    super::keepalive::UPSTREAM_TIMEOUTS.inc();
                    log::warn!(
                        "hbone: {addr} did not answer a PING within {:?}; closing the connection",
                        h2.keepalive.timeout
                    );
                }
            }
        });
        Ok(HboneClient { send })
    }

    /// Opens a tunnel to `authority` (`ip:port`).
    pub async fn open(&self, authority: &str) -> Result<H2Stream, ClientError> {
        self.open_with(authority, &[]).await
    }

    /// Opens a tunnel with extra CONNECT headers (`forwarded`, as Istio sends).
    pub async fn open_with(
        &self,
        authority: &str,
        headers: &[(&str, String)],
    ) -> Result<H2Stream, ClientError> {
        let tunnel = self.open_tunnel(authority, headers).await?;
        Ok(H2Stream::from_tunnel(tunnel))
    }

    pub(super) async fn open_tunnel(
        &self,
        authority: &str,
        headers: &[(&str, String)],
    ) -> Result<Tunnel, ClientError> {
        let mut req = Request::builder().method(Method::CONNECT).uri(authority);
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let req = req
            .body(())
            .map_err(|_| ClientError::Authority(authority.to_string()))?;
        let mut send = self.send.clone().ready().await?;
        let (response, stream) = send.send_request(req, false)?;
        let response = response.await?;
        if response.status() != StatusCode::OK {
            return Err(ClientError::Refused {
                authority: authority.to_string(),
                status: response.status(),
            });
        }
        Ok(Tunnel::new(stream, response.into_body()))
    }
}
