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
    let high = ephemeral_low();
    let bound = |port: u16| {
        TcpListener::bind(("127.0.0.1", port))
            .ok()
            .map(|l| l.local_addr().expect("a bound listener's address"))
    };
    if high <= LOW {
        // No room below a widened ephemeral range: the kernel's choice, racy.
        return bound(0).expect("binding a loopback port");
    }
    // Spread by pid, so two processes at once seldom try the same ports.
    let start = std::process::id().wrapping_mul(7919);
    for _ in LOW..high {
        let n = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
        if let Some(addr) = bound(LOW + (n % u32::from(high - LOW)) as u16) {
            return addr;
        }
    }
    panic!("no free loopback port in {LOW}..{high}");
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
            if ephemeral_low() > LOW {
                assert!((LOW..ephemeral_low()).contains(&addr.port()), "{addr}");
            }
            TcpListener::bind(addr).expect("free to bind");
        }
    }
}
