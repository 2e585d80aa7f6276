//! One JSON line, written field by field. With serde_json's derive, about half
//! of a line's cost was escaping every string a byte at a time and formatting
//! addresses through `fmt` fragment by fragment, each fragment escaped on its own; here
//! keys are constants, numbers go through `itoa`, and a value is scanned once
//! for what JSON must escape, so only a value that has such a byte (rare: a
//! quote, a backslash, a control character) goes through serde_json's escaping.

use std::cell::Cell;
use std::io::Write;

pub struct Line<'a> {
    out: &'a mut Vec<u8>,
    open: bool,
}

impl<'a> Line<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Line { out, open: false }
    }

    fn key(&mut self, key: &'static str) {
        self.out.push(if self.open { b',' } else { b'{' });
        self.open = true;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    pub fn null(&mut self, key: &'static str) {
        self.key(key);
        self.out.extend_from_slice(b"null");
    }

    pub fn num(&mut self, key: &'static str, n: impl itoa::Integer) {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }

    pub fn opt_num(&mut self, key: &'static str, n: Option<impl itoa::Integer>) {
        match n {
            Some(n) => self.num(key, n),
            None => self.null(key),
        }
    }

    pub fn str(&mut self, key: &'static str, value: &str) {
        self.quoted(key, |out| out.extend_from_slice(value.as_bytes()));
    }

    pub fn opt_str(&mut self, key: &'static str, value: Option<&str>) {
        match value {
            Some(v) => self.str(key, v),
            None => self.null(key),
        }
    }

    /// A string value that `fill` appends to the line.
    pub fn quoted(&mut self, key: &'static str, fill: impl FnOnce(&mut Vec<u8>)) {
        self.key(key);
        self.out.push(b'"');
        let start = self.out.len();
        fill(self.out);
        if needs_escape(&self.out[start..]) {
            let raw = self.out.split_off(start);
            self.out.pop();
            let raw = String::from_utf8_lossy(&raw);
            serde_json::to_writer(&mut *self.out, &*raw).expect("writing to a Vec");
        } else {
            self.out.push(b'"');
        }
    }

    pub fn opt_quoted<T>(
        &mut self,
        key: &'static str,
        value: Option<T>,
        fill: impl FnOnce(&mut Vec<u8>, T),
    ) {
        match value {
            Some(v) => self.quoted(key, |out| fill(out, v)),
            None => self.null(key),
        }
    }

    pub fn finish(self) {
        self.out.push(b'}');
    }
}

/// Whether JSON needs any of these bytes escaped: a quote, a backslash or a
/// control character. Everything else, UTF-8 included, goes in as it is (as
/// serde_json writes it). Scans the whole value without branching, so that it
/// vectorises.
fn needs_escape(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

/// An IPv4 address octet by octet: `fmt` costs more than the rest of the line's
/// numbers together. IPv6 goes through `Display`.
pub fn ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(digits.format(octet).as_bytes());
            }
        }
        std::net::IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// `ip:port`, or `[ip]:port` for IPv6, as `SocketAddr` displays it.
pub fn socket(out: &mut Vec<u8>, addr: std::net::SocketAddr) {
    match addr {
        std::net::SocketAddr::V4(v4) => {
            ip(out, (*v4.ip()).into());
            out.push(b':');
            out.extend_from_slice(itoa::Buffer::new().format(v4.port()).as_bytes());
        }
        std::net::SocketAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

thread_local! {
    /// The last second a line started in, and its `YYYY-MM-DDTHH:MM:SS.`.
    static SECOND: Cell<(i64, [u8; 20])> = const { Cell::new((i64::MIN, [0; 20])) };
}

/// Envoy's `%START_TIME%`: UTC to the millisecond, `2016-04-15T20:17:00.310Z`.
/// The date and time of day are formatted once a second per thread, as Envoy
/// caches them.
pub fn start_time(out: &mut Vec<u8>, at: jiff::Timestamp) {
    let ms = at.as_millisecond();
    let (second, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000) as u16);
    let (cached, mut prefix) = SECOND.get();
    if cached != second {
        let text = jiff::Timestamp::from_second(second)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S.").to_string())
            .unwrap_or_default();
        let Ok(bytes) = <[u8; 20]>::try_from(text.as_bytes()) else {
            // Beyond year 9999 or before year 0: not worth a cache.
            let _ = write!(out, "{}", at);
            return;
        };
        prefix = bytes;
        SECOND.set((second, prefix));
    }
    out.extend_from_slice(&prefix);
    out.extend_from_slice(&[
        b'0' + (milli / 100) as u8,
        b'0' + (milli / 10 % 10) as u8,
        b'0' + (milli % 10) as u8,
        b'Z',
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(at: &str) -> String {
        let mut out = Vec::new();
        start_time(&mut out, at.parse().unwrap());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn start_time_is_envoys_to_the_millisecond() {
        // Envoy's own example of its default format.
        assert_eq!(
            stamp("2016-04-15T20:17:00.310Z"),
            "2016-04-15T20:17:00.310Z"
        );
        assert_eq!(stamp("2016-04-15T20:17:00Z"), "2016-04-15T20:17:00.000Z");
        assert_eq!(
            stamp("2016-04-15T20:17:00.999999999Z"),
            "2016-04-15T20:17:00.999Z",
            "truncated, as Envoy does"
        );
        // The next second, and back: the cached second follows.
        assert_eq!(
            stamp("2016-04-15T20:17:01.005Z"),
            "2016-04-15T20:17:01.005Z"
        );
        assert_eq!(
            stamp("2016-04-15T20:17:00.042Z"),
            "2016-04-15T20:17:00.042Z"
        );
        assert_eq!(
            stamp("1969-12-31T23:59:59.250Z"),
            "1969-12-31T23:59:59.250Z"
        );
    }

    #[test]
    fn addresses_are_written_as_they_display() {
        for addr in [
            "10.0.0.7:9080",
            "255.255.255.255:65535",
            "0.0.0.0:0",
            "[fd00::7]:80",
        ] {
            let addr: std::net::SocketAddr = addr.parse().unwrap();
            let (mut sock, mut bare) = (Vec::new(), Vec::new());
            socket(&mut sock, addr);
            ip(&mut bare, addr.ip());
            assert_eq!(String::from_utf8(sock).unwrap(), addr.to_string());
            assert_eq!(String::from_utf8(bare).unwrap(), addr.ip().to_string());
        }
    }

    #[test]
    fn values_that_need_escaping_are_escaped_and_the_rest_kept_as_they_are() {
        let nasty = "a \"quoted\" back\\slash, a tab\t, a NUL\0 and ünïcödé ✓";
        let mut out = Vec::new();
        let mut line = Line::new(&mut out);
        line.str("plain", "10.0.0.7:9080");
        line.str("nasty", nasty);
        line.opt_str("absent", None);
        line.quoted("built", |o| o.extend_from_slice(b"outbound|80|\"|x"));
        line.num("n", 18_446_744_073_709_551_615u64);
        line.opt_num("m", None::<u8>);
        line.finish();
        let text = String::from_utf8(out).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["plain"], "10.0.0.7:9080");
        assert_eq!(v["nasty"], nasty);
        assert!(v["absent"].is_null());
        assert_eq!(v["built"], "outbound|80|\"|x");
        assert_eq!(v["n"], 18_446_744_073_709_551_615u64);
        assert!(v["m"].is_null());
        assert!(
            text.contains("ünïcödé ✓"),
            "UTF-8 is written as it is: {text}"
        );
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 6);
    }
}
