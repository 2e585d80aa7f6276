//! HTTP/2 keepalive for HBONE connections, as ztunnel and the Envoy waypoint
//! keep theirs: a PING every interval, and a peer that does not answer one in
//! time is gone (a half-open TCP connection, a frozen node), so its connection
//! is closed rather than left to hold tunnels that will never move again.

use std::sync::LazyLock;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    pub interval: Duration,
    pub timeout: Duration,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(20),
        }
    }
}

/// Upstream HBONE connections closed because the destination stopped answering
/// PINGs. Counted from the pool's connection tasks, which hold no `Metrics`;
/// `Metrics::new` registers it.
pub static UPSTREAM_TIMEOUTS: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::IntCounter::new(
        "waypoint_hbone_upstream_keepalive_timeouts_total",
        "Upstream HBONE connections closed because the peer did not answer a PING in time.",
    )
    .expect("static metric")
});

/// Why keepalive stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// A PING went unanswered for the timeout: close the connection.
    Expired,
    /// The connection is closing anyway.
    Closed,
}

/// PINGs the peer until it fails to answer one; the connection must be polled
/// meanwhile, since that is what reads the PONG.
pub async fn run(mut ping_pong: h2::PingPong, keepalive: Keepalive) -> Ended {
    loop {
        tokio::time::sleep(keepalive.interval).await;
        match tokio::time::timeout(keepalive.timeout, ping_pong.ping(h2::Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            Ok(Err(_)) => return Ended::Closed,
            Err(_) => return Ended::Expired,
        }
    }
}
