//! Envoy response flags: the short codes Istio's access log and the
//! `response_flags` metric label use to say why a request ended the way it did.

use std::fmt;

/// Why a response is what it is. `None` (printed `-`) for a normal response,
/// including redirects and direct responses, as Envoy does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ResponseFlag {
    #[default]
    None,
    /// `NR`: no route matched the request.
    NoRouteFound,
    /// `UH`: the chosen backend has no healthy endpoint.
    NoHealthyUpstream,
    /// `UF`: connecting upstream failed.
    UpstreamConnectionFailure,
    /// `UC`: the upstream closed the connection.
    UpstreamConnectionTermination,
    /// `URX`: retries or connect attempts ran out.
    UpstreamRetryLimitExceeded,
    /// `UT`: the upstream did not answer in time.
    UpstreamRequestTimeout,
    /// `DI`: a fault injection delayed the request.
    DelayInjected,
    /// `FI`: a fault injection aborted the request.
    FaultInjected,
    /// `RL`: the local rate limit rejected the request.
    RateLimited,
    /// `UO`: a circuit breaker overflowed.
    UpstreamOverflow,
    /// `NC`: the route's backend does not exist (unresolved, or no non-zero weight).
    NoClusterFound,
    /// `DC`: the downstream went away.
    DownstreamConnectionTermination,
    /// `DPE`: the downstream request broke the protocol or its limits.
    DownstreamProtocolError,
    /// `UAEX`: the external authorizer denied the request, or could not be
    /// asked and the provider does not fail open.
    UnauthorizedExternalService,
}

impl ResponseFlag {
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseFlag::None => "-",
            ResponseFlag::NoRouteFound => "NR",
            ResponseFlag::NoHealthyUpstream => "UH",
            ResponseFlag::UpstreamConnectionFailure => "UF",
            ResponseFlag::UpstreamConnectionTermination => "UC",
            ResponseFlag::UpstreamRetryLimitExceeded => "URX",
            ResponseFlag::UpstreamRequestTimeout => "UT",
            ResponseFlag::DelayInjected => "DI",
            ResponseFlag::FaultInjected => "FI",
            ResponseFlag::RateLimited => "RL",
            ResponseFlag::UpstreamOverflow => "UO",
            ResponseFlag::NoClusterFound => "NC",
            ResponseFlag::DownstreamConnectionTermination => "DC",
            ResponseFlag::DownstreamProtocolError => "DPE",
            ResponseFlag::UnauthorizedExternalService => "UAEX",
        }
    }
}

impl fmt::Display for ResponseFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
