//! What the waypoint allows a downstream peer, and how long it waits for one:
//! the bounds Envoy and ztunnel put on any client of a mesh proxy, since every
//! pod that can reach a waypoint can try to exhaust it.

use std::time::Duration;

/// Downstream bounds. The defaults are Envoy's and ztunnel's (see the README's
/// reliability table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request headers, in bytes of names and values (Envoy's
    /// `max_request_headers_kb`, 60 KiB); also the HTTP/2
    /// SETTINGS_MAX_HEADER_LIST_SIZE of the HBONE listener.
    pub max_request_headers_bytes: u32,
    /// Request headers, in number (Envoy's `max_headers_count`, 100).
    pub max_request_headers: usize,
    /// For the TLS handshake, and then again for the client's HTTP/2 preface.
    pub handshake_timeout: Duration,
    /// For a header block begun (HEADERS without END_HEADERS) to be finished.
    pub header_timeout: Duration,
    /// Streams a connection opens before it can be judged for premature resets.
    pub premature_reset_min_streams: u64,
    /// A stream the client resets sooner than this after opening it was reset
    /// prematurely.
    pub premature_reset_min_lifetime: Duration,
    /// On a port whose protocol is detected, how long a silent client is
    /// waited for before its tunnel is carried as TCP (server-first protocols).
    pub protocol_detection_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_headers_bytes: 60 * 1024,
            max_request_headers: 100,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            premature_reset_min_streams: 500,
            premature_reset_min_lifetime: Duration::from_secs(1),
            protocol_detection_timeout: Duration::from_millis(100),
        }
    }
}

/// Why a downstream request, stream or connection was refused: the `reason`
/// label of `waypoint_downstream_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// A CONNECT's decoded header list over the limit (answered 431).
    HeaderListTooLarge,
    /// Abuse h2 detects by itself and answers with GOAWAY ENHANCE_YOUR_CALM,
    /// closing the connection: a header list over four times the limit, a
    /// header block of too many CONTINUATION frames, reset or empty-DATA floods.
    H2Abuse,
    /// More request headers than allowed (431).
    TooManyHeaders,
    /// An HTTP/1.1 request's headers over the byte limit (431).
    RequestHeadersTooLarge,
    /// A header block left unfinished past the header timeout (connection closed).
    HeaderTimeout,
    /// No TLS handshake within the handshake timeout.
    TlsHandshakeTimeout,
    /// No HTTP/2 preface within the handshake timeout after TLS.
    PrefaceTimeout,
    /// Too many streams reset right after opening (GOAWAY, connection closed).
    PrematureResets,
    /// No answer to a keepalive PING in time (connection closed).
    KeepaliveTimeout,
}

impl Rejected {
    pub const ALL: [Rejected; 9] = [
        Rejected::HeaderListTooLarge,
        Rejected::H2Abuse,
        Rejected::TooManyHeaders,
        Rejected::RequestHeadersTooLarge,
        Rejected::HeaderTimeout,
        Rejected::TlsHandshakeTimeout,
        Rejected::PrefaceTimeout,
        Rejected::PrematureResets,
        Rejected::KeepaliveTimeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rejected::HeaderListTooLarge => "header_list_too_large",
            Rejected::H2Abuse => "h2_abuse",
            Rejected::TooManyHeaders => "too_many_headers",
            Rejected::RequestHeadersTooLarge => "request_headers_too_large",
            Rejected::HeaderTimeout => "header_timeout",
            Rejected::TlsHandshakeTimeout => "tls_handshake_timeout",
            Rejected::PrefaceTimeout => "preface_timeout",
            Rejected::PrematureResets => "premature_resets",
            Rejected::KeepaliveTimeout => "keepalive_timeout",
        }
    }
}

impl Limits {
    /// Whether a request's headers break the limits: `name: value` bytes
    /// (plus the method and target, as Envoy counts its pseudo-headers) and count.
    pub fn check_request(&self, req: &http::request::Parts) -> Option<Rejected> {
        self.check_headers(req.method.as_str(), &req.uri, &req.headers)
    }

    pub fn check_headers(
        &self,
        method: &str,
        uri: &http::Uri,
        headers: &http::HeaderMap,
    ) -> Option<Rejected> {
        if headers.len() > self.max_request_headers {
            return Some(Rejected::TooManyHeaders);
        }
        let target = uri.path_and_query().map_or(0, |p| p.as_str().len())
            + uri.authority().map_or(0, |a| a.as_str().len());
        let mut size = method.len() + target;
        for (name, value) in headers {
            size += name.as_str().len() + value.len();
        }
        (size > self.max_request_headers_bytes as usize).then_some(Rejected::RequestHeadersTooLarge)
    }
}

/// The flags that set [`Limits`] and HTTP/2 keepalive; each with a `WAYPOINT_*`
/// environment fallback.
#[derive(clap::Args, Clone, Debug)]
pub struct LimitArgs {
    /// Request headers allowed, in KiB of names and values (Envoy's max_request_headers_kb).
    #[arg(long, env = "WAYPOINT_MAX_REQUEST_HEADERS_KB", default_value_t = 60)]
    pub max_request_headers_kb: u32,
    /// Request headers allowed, in number (Envoy's max_headers_count).
    #[arg(
        long,
        env = "WAYPOINT_MAX_REQUEST_HEADERS_COUNT",
        default_value_t = 100
    )]
    pub max_request_headers_count: usize,
    /// Seconds for the TLS handshake, and again for the HTTP/2 preface after it.
    #[arg(long, env = "WAYPOINT_HANDSHAKE_TIMEOUT", default_value = "10", value_parser = seconds)]
    pub handshake_timeout: Duration,
    /// Seconds for a started HTTP/2 header block to be finished.
    #[arg(long, env = "WAYPOINT_HEADER_TIMEOUT", default_value = "10", value_parser = seconds)]
    pub header_timeout: Duration,
    /// Streams opened before a connection is judged for premature resets.
    #[arg(
        long,
        env = "WAYPOINT_PREMATURE_RESET_MIN_STREAMS",
        default_value_t = 500
    )]
    pub premature_reset_min_streams: u64,
    /// Seconds: a stream reset sooner than this after opening counts as premature.
    #[arg(long, env = "WAYPOINT_PREMATURE_RESET_MIN_LIFETIME", default_value = "1", value_parser = seconds)]
    pub premature_reset_min_lifetime: Duration,
    /// Seconds between HTTP/2 PINGs on HBONE connections, both directions.
    #[arg(long, env = "WAYPOINT_HBONE_KEEPALIVE_INTERVAL", default_value = "10", value_parser = seconds)]
    pub hbone_keepalive_interval: Duration,
    /// Seconds a peer has to answer a PING before its connection is closed.
    #[arg(long, env = "WAYPOINT_HBONE_KEEPALIVE_TIMEOUT", default_value = "20", value_parser = seconds)]
    pub hbone_keepalive_timeout: Duration,
    /// Seconds after which an HBONE connection is sent GOAWAY (±10% jitter),
    /// its open tunnels left to finish, so that clients reconnect and spread
    /// over replicas added since; 0: never (Envoy's default).
    #[arg(long, env = "WAYPOINT_HBONE_MAX_CONNECTION_AGE", default_value = "0", value_parser = seconds)]
    pub hbone_max_connection_age: Duration,
    /// Seconds a client is waited for, on a port whose protocol is detected
    /// from its first bytes, before the tunnel is carried as TCP (Istio's
    /// protocolDetectionTimeout, whose earlier default this is). A client that
    /// speaks later is still carried, as TCP.
    #[arg(long, env = "WAYPOINT_PROTOCOL_DETECTION_TIMEOUT", default_value = "0.1", value_parser = seconds)]
    pub protocol_detection_timeout: Duration,
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            max_request_headers_bytes: self.max_request_headers_kb.saturating_mul(1024),
            max_request_headers: self.max_request_headers_count,
            handshake_timeout: self.handshake_timeout,
            header_timeout: self.header_timeout,
            premature_reset_min_streams: self.premature_reset_min_streams,
            premature_reset_min_lifetime: self.premature_reset_min_lifetime,
            protocol_detection_timeout: self.protocol_detection_timeout,
        }
    }

    pub fn max_connection_age(&self) -> Option<Duration> {
        Some(self.hbone_max_connection_age).filter(|d| !d.is_zero())
    }

    pub fn keepalive(&self) -> crate::hbone::Keepalive {
        crate::hbone::Keepalive {
            interval: self.hbone_keepalive_interval,
            timeout: self.hbone_keepalive_timeout,
        }
    }
}

/// A duration in (possibly fractional) seconds, as `--drain-period` takes them.
fn seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is not a duration in seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::get("/path?q=1");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn counts_names_values_and_the_request_line() {
        let limits = Limits {
            max_request_headers_bytes: 3 + 9 + 1 + 10,
            ..Limits::default()
        };
        assert_eq!(limits.check_request(&request(&[("a", "0123456789")])), None);
        assert_eq!(
            limits.check_request(&request(&[("a", "0123456789x")])),
            Some(Rejected::RequestHeadersTooLarge)
        );
    }

    #[test]
    fn counts_headers() {
        let limits = Limits {
            max_request_headers: 2,
            ..Limits::default()
        };
        assert_eq!(
            limits.check_request(&request(&[("a", "1"), ("b", "2")])),
            None
        );
        assert_eq!(
            limits.check_request(&request(&[("a", "1"), ("b", "2"), ("a", "3")])),
            Some(Rejected::TooManyHeaders)
        );
    }

    #[test]
    fn seconds_take_fractions() {
        assert_eq!(seconds("0.25"), Ok(Duration::from_millis(250)));
        assert!(seconds("-1").is_err());
        assert!(seconds("soon").is_err());
    }
}
