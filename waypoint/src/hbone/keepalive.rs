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

/// PINGs the peer, and completes only when it fails to answer one in time:
/// then the caller closes the connection. The connection must be polled
/// meanwhile, since that is what reads the PONG; once it is closing (or gave no
/// `PingPong`), this never completes.
pub async fn expired(ping_pong: Option<h2::PingPong>, keepalive: Keepalive) {
    if let Some(mut ping_pong) = ping_pong {
        loop {
            tokio::time::sleep(keepalive.interval).await;
            let pong = ping_pong.ping(h2::Ping::opaque());
            match tokio::time::timeout(keepalive.timeout, pong).await {
                Ok(Ok(_pong)) => {}
                Ok(Err(_)) => break,
                Err(_) => return,
            }
        }
    }
    std::future::pending().await
}
