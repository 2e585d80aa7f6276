//! The access log: one JSON object per request on stdout, with the fields of
//! Istio's default JSON access log plus the source and destination identities.
//! On by default; `--access-log=false` turns it off.

use serde::Serialize;

#[derive(Serialize)]
pub struct Entry<'a> {
    pub start_time: String,
    pub method: &'a str,
    pub path: &'a str,
    pub protocol: &'a str,
    pub response_code: u16,
    pub response_flags: std::borrow::Cow<'static, str>,
    pub bytes_received: usize,
    pub bytes_sent: usize,
    /// Milliseconds from the request's arrival to the end of the response.
    pub duration: u64,
    /// Milliseconds the upstream took to answer (its response headers), if one did.
    pub upstream_service_time: Option<u64>,
    pub x_forwarded_for: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub authority: Option<&'a str>,
    pub upstream_host: Option<String>,
    /// Envoy's cluster name: `outbound|port|subset|host`.
    pub upstream_cluster: Option<String>,
    pub downstream_remote_address: Option<String>,
    pub route_name: Option<&'a str>,
    pub source_principal: Option<String>,
    pub destination_principal: Option<&'a str>,
}

/// Writes one line. `println!` holds stdout's lock for the whole line, so lines
/// from concurrent requests never interleave.
pub fn write(entry: &Entry<'_>) {
    if let Ok(line) = serde_json::to_string(entry) {
        println!("{line}");
    }
}

/// A random version-4 UUID, for requests that arrive without `x-request-id`.
pub fn request_id() -> String {
    let b: [u8; 16] = rand::random();
    let v = u128::from_be_bytes(b) & !(0xf << 76) | (0x4 << 76);
    let v = v & !(0x3 << 62) | (0x2 << 62);
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_v4_uuids() {
        let id = super::request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4", "{id}");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        assert_ne!(id, super::request_id());
    }
}
