//! HBONE: HTTP/2 CONNECT tunnels over mutual TLS 1.3, as Istio's ambient mesh uses
//! on port 15008.

pub mod client;
mod guard;
pub mod idle;
pub mod keepalive;
pub mod lease;
pub mod pool;
pub mod server;
mod stream;
pub mod tls;
mod tunnel;

pub use keepalive::Keepalive;
pub use stream::{H2Stream, TunnelBytes};

use crate::identity::SpiffeId;
use std::net::SocketAddr;

/// What the proxy learns about a request from the tunnel that carried it. Attached
/// to the pingora stream as proxy-digest user data.
#[derive(Debug, Clone)]
pub struct HboneMeta {
    /// The verified SPIFFE identity of the peer (the source ztunnel's client).
    pub source: std::sync::Arc<SpiffeId>,
    /// The CONNECT `:authority`: the destination the client asked for.
    pub target: SocketAddr,
    /// The TCP peer of the tunnel's connection.
    pub peer: SocketAddr,
}

/// HTTP/2 flow-control windows and keepalive for HBONE connections, both directions. The
/// defaults are ztunnel's: 4 MiB per tunnel, 16 MiB per connection, so one
/// tunnel can fill a fast link without starving the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H2Settings {
    pub stream_window: u32,
    pub connection_window: u32,
    pub keepalive: Keepalive,
    /// Accepted connections are sent GOAWAY after about this long.
    pub max_connection_age: Option<std::time::Duration>,
}

impl Default for H2Settings {
    fn default() -> Self {
        H2Settings {
            stream_window: 4 << 20,
            connection_window: 16 << 20,
            keepalive: Keepalive::default(),
            max_connection_age: None,
        }
    }
}
