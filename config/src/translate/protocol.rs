//! Which protocol a service port carries, chosen as Istio chooses it
//! (istio.io "Protocol Selection"; `pkg/config/kube` `ConvertProtocol`):
//! `appProtocol` when set, else the port's name, read as `<protocol>[-<suffix>]`
//! case-insensitively (`grpc-web` whole); Kubernetes' own `kubernetes.io/h2c`,
//! `kubernetes.io/ws` and `kubernetes.io/wss` mean HTTP/2, HTTP and HTTPS.
//! Anything else is detected from the connection's first bytes, except on the
//! well-known server-first ports (SMTP 25, DNS 53, MySQL 3306, MongoDB 27017),
//! which are TCP, so a client that waits for the server is never kept waiting.

use waypoint_ir::Protocol;

const WELL_KNOWN_TCP: [u16; 4] = [25, 53, 3306, 27017];

pub fn select(port: u16, name: Option<&str>, app_protocol: Option<&str>) -> Protocol {
    let declared = match app_protocol {
        Some("kubernetes.io/h2c") => return Protocol::Http2,
        Some("kubernetes.io/ws") => return Protocol::Http,
        Some("kubernetes.io/wss") => return Protocol::Https,
        Some(p) => p,
        None => name.unwrap_or_default(),
    };
    let parsed = if declared.len() >= 8 && declared[..8].eq_ignore_ascii_case("grpc-web") {
        Some(Protocol::GrpcWeb)
    } else {
        parse(declared.split('-').next().unwrap_or_default())
    };
    match parsed {
        Some(p) => p,
        None if WELL_KNOWN_TCP.contains(&port) => Protocol::Tcp,
        None => Protocol::Detect,
    }
}

/// Istio's protocol names, case-insensitively.
pub fn parse(s: &str) -> Option<Protocol> {
    Some(match s.to_ascii_lowercase().as_str() {
        "http" => Protocol::Http,
        "http2" => Protocol::Http2,
        "grpc" => Protocol::Grpc,
        "grpc-web" => Protocol::GrpcWeb,
        "https" => Protocol::Https,
        "tcp" => Protocol::Tcp,
        "tls" => Protocol::Tls,
        "mongo" => Protocol::Mongo,
        "mysql" => Protocol::Mysql,
        "redis" => Protocol::Redis,
        "udp" => Protocol::Udp,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_protocol_then_name_then_detection() {
        let p = |port, name: Option<&str>, app: Option<&str>| select(port, name, app).name();
        assert_eq!(p(80, Some("http-web"), None), "http");
        assert_eq!(p(80, Some("HTTP2"), None), "http2");
        assert_eq!(p(80, Some("grpc-web-ui"), None), "grpc-web");
        assert_eq!(p(80, Some("grpc-api"), None), "grpc");
        assert_eq!(
            p(80, Some("tcp-db"), Some("http")),
            "http",
            "appProtocol wins"
        );
        assert_eq!(p(80, Some("http"), Some("kubernetes.io/h2c")), "http2");
        assert_eq!(p(80, None, Some("kubernetes.io/ws")), "http");
        assert_eq!(p(443, None, Some("kubernetes.io/wss")), "https");
        assert_eq!(p(6379, None, Some("redis")), "redis");
        assert_eq!(p(80, Some("web"), None), "detect");
        assert_eq!(
            p(80, Some("httpx"), None),
            "detect",
            "a whole word, not a prefix"
        );
        assert_eq!(p(8080, None, Some("example.com/custom")), "detect");
        assert_eq!(
            p(3306, Some("db"), None),
            "tcp",
            "server-first: never sniffed"
        );
        assert_eq!(p(3306, Some("http"), None), "http");
    }
}
