//! HBONE: HTTP/2 CONNECT tunnels over mutual TLS 1.3, as Istio's ambient mesh uses
//! on port 15008.

pub mod client;
pub mod pool;
pub mod server;
mod stream;
pub mod tls;

pub use stream::H2Stream;

use crate::identity::SpiffeId;
use std::net::SocketAddr;

/// What the proxy learns about a request from the tunnel that carried it. Attached
/// to the pingora stream as proxy-digest user data.
#[derive(Debug, Clone)]
pub struct HboneMeta {
    /// The verified SPIFFE identity of the peer (the source ztunnel's client).
    pub source: SpiffeId,
    /// The CONNECT `:authority`: the destination the client asked for.
    pub target: SocketAddr,
    /// The TCP peer of the tunnel's connection.
    pub peer: SocketAddr,
}
