//! gRPC over the HTTP chain: telling a gRPC request apart, its `grpc-timeout`,
//! the `grpc-status` of its answer, and local replies a gRPC client
//! understands (Envoy's: HTTP 200, trailers-only, the status mapped from the
//! HTTP one as gRPC's "HTTP to gRPC status" table says, with a rate limit
//! answered `RESOURCE_EXHAUSTED` as Envoy's local rate limit can be told to).

use std::time::Duration;

/// `content-type: application/grpc[+proto|;...]`, Envoy's test for gRPC.
/// gRPC-Web (`application/grpc-web...`) is not gRPC on the wire.
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("application/grpc"))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('+') || rest.starts_with(';'))
}

/// `grpc-timeout: <1 to 8 digits><H|M|S|m|u|n>`; `None` when absent or malformed.
pub fn timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The `grpc-status` in `headers` (a trailers-only answer, or trailers).
pub fn status(headers: &http::HeaderMap) -> Option<u8> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

pub const RESOURCE_EXHAUSTED: u8 = 8;
pub const UNAVAILABLE: u8 = 14;

/// The gRPC status of a local reply with HTTP status `http`.
pub fn status_for(http: u16) -> u8 {
    match http {
        200 => 0,
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 => RESOURCE_EXHAUSTED,
        502..=504 => UNAVAILABLE,
        _ => 2,
    }
}

/// `grpc-message`: percent-encoded outside printable ASCII, as gRPC requires.
pub fn message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.trim_end().bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn grpc_is_told_by_its_content_type() {
        assert!(is_grpc(&headers(&[("content-type", "application/grpc")])));
        assert!(is_grpc(&headers(&[(
            "content-type",
            "application/grpc+proto"
        )])));
        assert!(!is_grpc(&headers(&[(
            "content-type",
            "application/grpc-web"
        )])));
        assert!(!is_grpc(&headers(&[("content-type", "application/json")])));
        assert!(!is_grpc(&headers(&[])));
    }

    #[test]
    fn timeouts_parse_every_unit_and_refuse_the_rest() {
        let t = |v: &'static str| timeout(&headers(&[("grpc-timeout", v)]));
        assert_eq!(t("2S"), Some(Duration::from_secs(2)));
        assert_eq!(t("250m"), Some(Duration::from_millis(250)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("5n"), Some(Duration::from_nanos(5)));
        assert_eq!(t("123456789S"), None, "at most 8 digits");
        assert_eq!(t("S"), None);
        assert_eq!(t("10x"), None);
        assert_eq!(t("-1S"), None);
    }

    #[test]
    fn local_statuses_map_as_grpc_and_envoy_do() {
        assert_eq!(status_for(503), UNAVAILABLE);
        assert_eq!(status_for(504), UNAVAILABLE);
        assert_eq!(status_for(429), RESOURCE_EXHAUSTED);
        assert_eq!(status_for(404), 12);
        assert_eq!(status_for(500), 2);
        assert_eq!(message("no healthy upstream\n"), "no healthy upstream");
        assert_eq!(message("50% é"), "50%25 %C3%A9");
    }
}
