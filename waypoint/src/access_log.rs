//! The access log: one JSON object per request on stdout (or, for the demo, in
//! a file), with the fields of Istio's default JSON access log plus the source
//! and destination identities. On by default; `--access-log=false` turns it off.
//!
//! A request serializes its line into a shared buffer, a copy under a mutex;
//! a writer thread writes the buffer out in one `write` every 100 ms, or as
//! soon as 64 KiB are waiting (Envoy's file access log flushes on an interval
//! and at 64 KiB too). So the proxy's threads make no syscall per request and
//! wake the writer once per 64 KiB, lines stay whole, and the buffers stay
//! small under load: flushing on the interval alone let each of the two grow
//! to a megabyte or two at 10k requests a second. If stdout stalls and 4 MiB
//! piles up, further lines are dropped and counted
//! (`waypoint_access_log_dropped_total`) rather than stalling requests.

mod line;

use line::Line;
use prometheus::IntCounter;
use std::cell::RefCell;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Bytes buffered between writes, at most.
const MAX_BUFFERED: usize = 4 << 20;
/// Buffered bytes that wake the writer before its interval is up.
const FLUSH_AT: usize = 64 << 10;
/// Capacity a buffer keeps after a write: what a stall grew is given back.
const RETAINED: usize = 2 * FLUSH_AT;

/// One line's fields, written in this order.
pub struct Entry<'a> {
    /// Written as Envoy's `%START_TIME%`, to the millisecond.
    pub start_time: jiff::Timestamp,
    /// `None` (null) for a TCP connection, as in Istio's log.
    pub method: Option<&'a str>,
    pub path: Option<&'a str>,
    pub protocol: Option<&'a str>,
    pub response_code: u16,
    /// Envoy's `%GRPC_STATUS%` as a number, for gRPC requests.
    pub grpc_status: Option<u8>,
    pub response_flags: std::borrow::Cow<'static, str>,
    /// Envoy's `%RESPONSE_CODE_DETAILS%`, when the waypoint answered itself
    /// for a reason worth naming (an authorization denial).
    pub response_code_details: Option<&'a str>,
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
    pub upstream_host: Option<SocketAddr>,
    /// Envoy's cluster name: `outbound|port|subset|host`.
    pub upstream_cluster: Option<crate::proxy::ClusterName<'a>>,
    pub downstream_remote_address: Option<IpAddr>,
    pub route_name: Option<&'a str>,
    pub source_principal: Option<&'a crate::identity::SpiffeId>,
    pub destination_principal: Option<&'a str>,
}

impl Entry<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut l = Line::new(out);
        l.quoted("start_time", |o| line::start_time(o, self.start_time));
        l.opt_str("method", self.method);
        l.opt_str("path", self.path);
        l.opt_str("protocol", self.protocol);
        l.num("response_code", self.response_code);
        l.opt_num("grpc_status", self.grpc_status);
        l.str("response_flags", &self.response_flags);
        l.opt_str("response_code_details", self.response_code_details);
        l.num("bytes_received", self.bytes_received);
        l.num("bytes_sent", self.bytes_sent);
        l.num("duration", self.duration);
        l.opt_num("upstream_service_time", self.upstream_service_time);
        l.opt_str("x_forwarded_for", self.x_forwarded_for);
        l.opt_str("user_agent", self.user_agent);
        l.opt_str("request_id", self.request_id);
        l.opt_str("authority", self.authority);
        l.opt_quoted("upstream_host", self.upstream_host, line::socket);
        l.opt_quoted("upstream_cluster", self.upstream_cluster.as_ref(), shown);
        l.opt_quoted(
            "downstream_remote_address",
            self.downstream_remote_address,
            line::ip,
        );
        l.opt_str("route_name", self.route_name);
        l.opt_quoted("source_principal", self.source_principal, shown);
        l.opt_str("destination_principal", self.destination_principal);
        l.finish();
    }
}

/// A value written through its `Display`, straight into the line.
fn shown(out: &mut Vec<u8>, value: impl std::fmt::Display) {
    let _ = write!(out, "{value}");
}

pub struct AccessLog {
    shared: Arc<Shared>,
    writer: std::thread::Thread,
    flush_at: usize,
}

struct Shared {
    buffered: Mutex<Vec<u8>>,
    out: Mutex<Output>,
    dropped: IntCounter,
}

/// The writer's side, locked for a whole swap-and-write so batches stay in order.
struct Output {
    to: Box<dyn Write + Send>,
    /// The previous batch's buffer, swapped in empty to reuse its capacity.
    spare: Vec<u8>,
}

thread_local! {
    /// Each proxy thread's line under construction.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

impl AccessLog {
    /// Writes to stdout, with its flushing thread.
    pub fn start(dropped: IntCounter) -> std::io::Result<AccessLog> {
        Self::with_output(
            Box::new(std::io::stdout()),
            dropped,
            FLUSH_INTERVAL,
            FLUSH_AT,
        )
    }

    /// Appends to the file at `path` (created if missing) instead of stdout.
    pub fn to_file(path: &std::path::Path, dropped: IntCounter) -> std::io::Result<AccessLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Self::with_output(Box::new(file), dropped, FLUSH_INTERVAL, FLUSH_AT)
    }

    fn with_output(
        to: Box<dyn Write + Send>,
        dropped: IntCounter,
        every: Duration,
        flush_at: usize,
    ) -> std::io::Result<AccessLog> {
        let shared = Arc::new(Shared {
            buffered: Mutex::new(Vec::with_capacity(FLUSH_AT)),
            out: Mutex::new(Output {
                to,
                spare: Vec::new(),
            }),
            dropped,
        });
        // The thread holds no strong reference: it ends once the log is dropped.
        let weak = Arc::downgrade(&shared);
        let writer = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || loop {
                // An early wake-up only means an early write.
                std::thread::park_timeout(every);
                match weak.upgrade() {
                    Some(shared) => shared.flush(),
                    None => return,
                }
            })?
            .thread()
            .clone();
        Ok(AccessLog {
            shared,
            writer,
            flush_at,
        })
    }

    pub fn write(&self, entry: &Entry<'_>) {
        self.push(|line| entry.write_json(line));
    }

    /// Appends the line `fill` writes, unless the buffer is full.
    fn push(&self, fill: impl FnOnce(&mut Vec<u8>)) {
        LINE.with_borrow_mut(|line| {
            line.clear();
            fill(line);
            line.push(b'\n');
            let mut buffered = self.shared.buffered.lock().expect("access log lock");
            if buffered.len() + line.len() > MAX_BUFFERED {
                drop(buffered);
                self.shared.dropped.inc();
                return;
            }
            let before = buffered.len();
            buffered.extend_from_slice(line);
            // Only the line that crosses the mark wakes the writer.
            let crossed = before < self.flush_at && buffered.len() >= self.flush_at;
            drop(buffered);
            if crossed {
                self.writer.unpark();
            }
        });
    }

    /// Writes out everything buffered so far: at shutdown, so the last requests'
    /// lines do not go with the process.
    pub fn flush(&self) {
        self.shared.flush();
    }
}

impl Shared {
    fn flush(&self) {
        let mut out = self.out.lock().expect("access log lock");
        let out = &mut *out;
        std::mem::swap(
            &mut *self.buffered.lock().expect("access log lock"),
            &mut out.spare,
        );
        if !out.spare.is_empty() {
            let _ = out.to.write_all(&out.spare).and_then(|_| out.to.flush());
            out.spare.clear();
            out.spare.shrink_to(RETAINED);
        }
    }
}

/// A random version-4 UUID, for requests that arrive without `x-request-id`.
/// Written digit by digit into the header value: every such request pays for it.
pub fn request_id() -> http::HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let b: [u8; 16] = rand::random();
    let v = u128::from_be_bytes(b) & !(0xf << 76) | (0x4 << 76);
    let v = v & !(0x3 << 62) | (0x2 << 62);
    let mut out = [b'-'; 36];
    let mut digit = 0;
    for (i, slot) in out.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            continue;
        }
        *slot = HEX[(v >> (124 - 4 * digit)) as usize & 0xf];
        digit += 1;
    }
    http::HeaderValue::from_bytes(&out).expect("hex digits and dashes")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what the log writes, one `Vec` per write.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn log(sink: &Sink) -> AccessLog {
        let dropped = IntCounter::new("dropped", "test").unwrap();
        // No periodic or early flush within the test: only explicit ones.
        let hour = Duration::from_secs(3600);
        AccessLog::with_output(Box::new(sink.clone()), dropped, hour, usize::MAX).unwrap()
    }

    fn line(n: usize) -> impl FnOnce(&mut Vec<u8>) {
        move |l| write!(l, "{{\"n\":{n}}}").unwrap()
    }

    fn numbers(writes: &[Vec<u8>]) -> Vec<usize> {
        String::from_utf8(writes.concat())
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["n"]
                    .as_u64()
                    .unwrap() as usize
            })
            .collect()
    }

    #[test]
    fn lines_from_many_threads_come_out_whole_in_one_write() {
        let sink = Sink::default();
        let log = Arc::new(log(&sink));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || (0..2_500).for_each(|i| log.push(line(t * 2_500 + i))))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert!(
            sink.0.lock().unwrap().is_empty(),
            "nothing written before a flush"
        );
        log.flush();
        let writes = sink.0.lock().unwrap().clone();
        assert_eq!(writes.len(), 1);
        let mut seen = numbers(&writes);
        seen.sort();
        assert_eq!(seen, (0..10_000).collect::<Vec<_>>());
    }

    #[test]
    fn beyond_the_buffer_lines_are_dropped_and_counted() {
        let sink = Sink::default();
        let log = log(&sink);
        let total = MAX_BUFFERED / 8;
        (0..total).for_each(|i| log.push(line(i)));
        let dropped = log.shared.dropped.get() as usize;
        assert!(dropped > 0);
        log.flush();
        let kept = numbers(&sink.0.lock().unwrap());
        assert_eq!(kept.len() + dropped, total);
        assert_eq!(
            kept,
            (0..kept.len()).collect::<Vec<_>>(),
            "the first lines are kept, whole"
        );
    }

    #[test]
    fn a_full_buffer_is_written_without_waiting_for_the_interval() {
        let sink = Sink::default();
        let dropped = IntCounter::new("dropped", "test").unwrap();
        let hour = Duration::from_secs(3600);
        let log = AccessLog::with_output(Box::new(sink.clone()), dropped, hour, 1024).unwrap();
        (0..50).for_each(|i| log.push(line(i)));
        assert!(sink.0.lock().unwrap().is_empty(), "under the mark: held");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut i = 50;
        while sink.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            log.push(line(i));
            i += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
        log.flush();
        assert_eq!(numbers(&sink.0.lock().unwrap()), (0..i).collect::<Vec<_>>());
    }

    #[test]
    fn a_stall_does_not_keep_its_buffer() {
        let sink = Sink::default();
        let log = log(&sink);
        let big = "x".repeat(1000);
        (0..2_000).for_each(|_| log.push(|l| write!(l, "{big}").unwrap()));
        log.flush();
        log.flush();
        let out = log.shared.out.lock().unwrap();
        let buffered = log.shared.buffered.lock().unwrap();
        assert!(out.spare.capacity() <= RETAINED, "{}", out.spare.capacity());
        assert!(buffered.capacity() <= RETAINED, "{}", buffered.capacity());
    }

    #[test]
    fn an_entry_is_one_json_object_with_istios_fields_in_order() {
        let source: crate::identity::SpiffeId = "spiffe://cluster.local/ns/default/sa/client"
            .parse()
            .unwrap();
        let entry = Entry {
            start_time: "2016-04-15T20:17:00.310Z".parse().unwrap(),
            method: Some("GET"),
            path: Some("/a?b=\"c\""),
            protocol: Some("HTTP/1.1"),
            response_code: 503,
            grpc_status: Some(14),
            response_flags: "UF,URX".into(),
            response_code_details: None,
            bytes_received: 3,
            bytes_sent: 1024,
            duration: 7,
            upstream_service_time: None,
            x_forwarded_for: None,
            user_agent: Some("curl/8"),
            request_id: Some("id"),
            authority: Some("web:80"),
            upstream_host: Some("[fd00::7]:9080".parse().unwrap()),
            upstream_cluster: Some(crate::proxy::ClusterName {
                port: 9080,
                subset: "v1",
                host: "web.default.svc.cluster.local",
            }),
            downstream_remote_address: Some("10.0.1.9".parse().unwrap()),
            route_name: Some("default/web"),
            source_principal: Some(&source),
            destination_principal: None,
        };
        let mut out = Vec::new();
        entry.write_json(&mut out);
        let text = String::from_utf8(out).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let expected = serde_json::json!({
            "start_time": "2016-04-15T20:17:00.310Z",
            "method": "GET",
            "path": "/a?b=\"c\"",
            "protocol": "HTTP/1.1",
            "response_code": 503,
            "grpc_status": 14,
            "response_flags": "UF,URX",
            "response_code_details": null,
            "bytes_received": 3,
            "bytes_sent": 1024,
            "duration": 7,
            "upstream_service_time": null,
            "x_forwarded_for": null,
            "user_agent": "curl/8",
            "request_id": "id",
            "authority": "web:80",
            "upstream_host": "[fd00::7]:9080",
            "upstream_cluster": "outbound|9080|v1|web.default.svc.cluster.local",
            "downstream_remote_address": "10.0.1.9",
            "route_name": "default/web",
            "source_principal": "spiffe://cluster.local/ns/default/sa/client",
            "destination_principal": null,
        });
        assert_eq!(v, expected);
        let order = [
            "start_time",
            "method",
            "path",
            "protocol",
            "response_code",
            "grpc_status",
            "response_flags",
            "response_code_details",
            "bytes_received",
            "bytes_sent",
            "duration",
            "upstream_service_time",
            "x_forwarded_for",
            "user_agent",
            "request_id",
            "authority",
            "upstream_host",
            "upstream_cluster",
            "downstream_remote_address",
            "route_name",
            "source_principal",
            "destination_principal",
        ];
        let at: Vec<usize> = order
            .iter()
            .map(|k| text.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[test]
    fn request_ids_are_v4_uuids() {
        let id = request_id().to_str().unwrap().to_string();
        assert_eq!(id.len(), 36);
        assert!(id.split('-').map(str::len).eq([8, 4, 4, 4, 12]), "{id}");
        assert!(
            id.bytes().all(|c| c == b'-' || c.is_ascii_hexdigit()),
            "{id}"
        );
        assert_eq!(&id[14..15], "4", "{id}");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        assert_ne!(id, request_id().to_str().unwrap());
    }
}
