//! The waypoint's request-time logic over the IR: plain, synchronous functions with
//! no sockets, no clocks and no pingora. The proxy adapter (`waypoint::proxy`) builds
//! a [`RequestView`], asks [`decide`] what to do, and performs the I/O the returned
//! [`Decision`] implies.
//!
//! API, in the order a request meets it:
//! - [`RequestView::new`]: a borrowed view of the request head.
//! - [`decide`] (in [`chain`]): route selection, redirect/direct response, weighted
//!   split, in that fixed order; returns a `#[must_use]` [`Decision`], whose
//!   forward names the picked backend ([`backend_filters`] finds its own edits).
//! - [`headers::apply`], [`headers::rewrite_path`], [`headers::redirect_location`]:
//!   edits the adapter applies to a forwarded request (or [`decide`] uses itself).
//! - [`endpoints`]: the addresses of a (service, subset, port), for load balancers.
//! - [`ResponseFlag`]: the Envoy response flag the access log and metrics print.
//!
//! The building blocks ([`route::select`], [`split::pick`]) are public for tests and
//! benches; the adapter should not need them.

pub mod authz;
pub mod chain;
pub mod fault;
mod flags;
pub mod headers;
pub mod jwt;
pub mod normalize;
pub mod ratelimit;
pub mod retry;
pub mod route;
pub mod split;
pub mod testing;

pub use chain::{backend_filters, decide, Decision, ForwardDecision, LocalReply};
pub use flags::ResponseFlag;

use std::net::SocketAddr;
use waypoint_ir::{EndpointIdx, Service};

/// A borrowed view of a request head: everything route matching and redirects read.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a http::Method,
    /// The path without the query.
    pub path: &'a str,
    /// The raw (still percent-encoded) query, without `?`.
    pub query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
    /// The service port the request arrived on (the HBONE target's port, or the
    /// port resolved from `Host` for plaintext).
    pub port: u16,
    /// `http` unless the request URI says otherwise: inside an HBONE tunnel the
    /// application protocol is plain HTTP, mTLS is the tunnel's business.
    pub scheme: &'a str,
    /// The `Host` header, else the URI authority; may carry a port.
    pub host: Option<&'a str>,
    /// The client's namespace, from the HBONE peer's SPIFFE id; `None` without
    /// one (the plaintext listener). Picks a service's consumer routes.
    pub source_namespace: Option<&'a str>,
}

impl<'a> RequestView<'a> {
    /// From the pieces of an `http::request::Parts` (pingora's `RequestHeader`
    /// exposes the same `method`, `uri` and `headers`).
    pub fn new(
        method: &'a http::Method,
        uri: &'a http::Uri,
        headers: &'a http::HeaderMap,
        port: u16,
    ) -> Self {
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()));
        RequestView {
            method,
            path: uri.path(),
            query: uri.query(),
            headers,
            port,
            scheme: uri.scheme_str().unwrap_or("http"),
            host,
            source_namespace: None,
        }
    }

    pub fn with_source_namespace(mut self, namespace: Option<&'a str>) -> Self {
        self.source_namespace = namespace;
        self
    }
}

/// Endpoints of `service` (or of its subset at index `subset`) that serve `port`,
/// with the address each listens on for it (target port resolved). An unknown
/// subset index yields nothing.
pub fn endpoints(
    service: &Service,
    subset: Option<usize>,
    port: u16,
) -> Vec<(EndpointIdx, SocketAddr)> {
    let subset = match subset {
        Some(i) => match service.subsets.get(i) {
            Some(s) => Some(s),
            None => return Vec::new(),
        },
        None => None,
    };
    service
        .endpoints_for(subset, port)
        .filter_map(|(idx, ep)| Some((idx, SocketAddr::new(ep.address, ep.target_port(port)?))))
        .collect()
}

#[cfg(test)]
mod tests;
