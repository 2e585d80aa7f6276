//! Addresses a `jwksUri` may never reach, as istiod refuses them
//! (`pilot/pkg/model/jwks_resolver.go` `jwksBlockedIP`): link-local ranges,
//! which hold cloud instance metadata (169.254.169.254), and the metadata
//! addresses outside them. A RequestAuthentication must not turn the waypoint
//! into a client of its node's credentials. Checked on every resolved
//! address, at the dial, so a name cannot resolve its way around it.

use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Why `ip` may not be fetched from; `None`: it may.
pub fn blocked(ip: IpAddr) -> Option<&'static str> {
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80 || v6.segments()[0] == 0xff02,
    };
    let metadata = match ip {
        // Alibaba Cloud's metadata service (carrier-grade NAT space).
        IpAddr::V4(v4) => v4.octets() == [100, 100, 100, 200],
        // AWS's IPv6 metadata endpoint, fd00:ec2::/32.
        IpAddr::V6(v6) => v6.segments()[0] == 0xfd00 && v6.segments()[1] == 0x0ec2,
    };
    if link_local {
        Some("link-local")
    } else if metadata {
        Some("a known cloud metadata address")
    } else {
        None
    }
}

/// The system resolver, without the blocked addresses.
#[derive(Clone)]
pub struct Resolver(GaiResolver);

impl Resolver {
    pub fn new() -> Self {
        Resolver(GaiResolver::new())
    }
}

impl tower::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let host = name.as_str().to_string();
        let resolving = self.0.call(name);
        Box::pin(async move {
            let all: Vec<SocketAddr> = resolving.await?.collect();
            let allowed: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| blocked(a.ip()).is_none())
                .collect();
            match (allowed.is_empty(), all.first()) {
                (true, Some(first)) => Err(std::io::Error::other(format!(
                    "{host} resolves to {} ({}), which a jwksUri may not reach",
                    first.ip(),
                    blocked(first.ip()).unwrap_or("blocked")
                ))),
                _ => Ok(allowed.into_iter()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{blocked, Resolver};
    use std::str::FromStr;
    use tower::Service;

    #[tokio::test]
    async fn names_resolving_only_to_blocked_addresses_fail_and_others_pass() {
        // getaddrinfo reads a numeric name as the address itself, so this
        // goes the way a name that resolves there would.
        let name = |n: &str| hyper_util::client::legacy::connect::dns::Name::from_str(n).unwrap();
        let err = Resolver::new()
            .call(name("169.254.169.254"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("link-local"), "{err}");
        let ok: Vec<_> = Resolver::new()
            .call(name("127.0.0.1"))
            .await
            .unwrap()
            .collect();
        assert_eq!(ok, vec!["127.0.0.1:0".parse().unwrap()]);
    }

    #[test]
    fn metadata_and_link_local_addresses_are_blocked_and_private_ones_are_not() {
        for ip in [
            "169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "100.100.100.200",
            "fd00:ec2::254",
        ] {
            assert!(blocked(ip.parse().unwrap()).is_some(), "{ip}");
        }
        // In-cluster OIDC providers live in private space; Istio allows it.
        for ip in [
            "10.0.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "::1",
            "fd00::1",
            "100.100.100.201",
        ] {
            assert!(blocked(ip.parse().unwrap()).is_none(), "{ip}");
        }
    }
}
