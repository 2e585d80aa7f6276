//! Loopback ports for child processes (a waypoint, Envoy) to listen on.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// Where the search starts: clear of the well-known ports the tests name.
const LOW: u16 = 10_000;

/// A loopback address nothing listens on, for a child process to bind. Taken
/// below the kernel's ephemeral range: a port from binding port 0 is free only
/// until the next outgoing connection, and the load bench's rows open
/// thousands, so one could take it before the child binds it (the likely cause
/// of a bench run that once ended without its table). Successive calls move
/// on, so a port handed out and not yet bound is not handed out again.
pub fn free_addr() -> SocketAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let high = ephemeral_low().max(LOW + 1);
    // Spread by pid, so two processes at once seldom try the same ports.
    let start = std::process::id().wrapping_mul(7919);
    loop {
        let n = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
        let port = LOW + (n % u32::from(high - LOW)) as u16;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return listener.local_addr().expect("a bound listener's address");
        }
    }
}

/// The first port the kernel hands to outgoing connections (32768 by default).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_distinct_and_outside_the_ephemeral_range() {
        let a = free_addr();
        let b = free_addr();
        assert_ne!(a.port(), b.port());
        for addr in [a, b] {
            assert!((LOW..ephemeral_low()).contains(&addr.port()), "{addr}");
            TcpListener::bind(addr).expect("free to bind");
        }
    }
}
