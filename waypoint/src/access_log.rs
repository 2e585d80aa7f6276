//! The access log: one JSON object per request on stdout, with the fields of
//! Istio's default JSON access log plus the source and destination identities.
//! On by default; `--access-log=false` turns it off.
//!
//! A request only serializes its line; a writer thread of its own writes what
//! has queued up in one `write` and flushes whenever the queue runs dry, so lines
//! stay whole and prompt without a syscall per request on the proxy's threads.
//! When stdout cannot keep up, lines beyond the queue are dropped and counted
//! (`waypoint_access_log_dropped_total`) rather than stalling requests.

use prometheus::IntCounter;
use serde::Serialize;
use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::Duration;

/// Lines waiting for the writer, at most.
const QUEUE: usize = 16 * 1024;
/// Bytes gathered before a write, at most.
const BATCH: usize = 64 * 1024;

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

enum Msg {
    Line(Vec<u8>),
    /// Answered once everything queued before it is written.
    Flush(SyncSender<()>),
}

pub struct AccessLog {
    queue: SyncSender<Msg>,
    dropped: IntCounter,
}

impl AccessLog {
    /// Starts the writer thread.
    pub fn start(dropped: IntCounter) -> std::io::Result<AccessLog> {
        let (queue, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer(rx, &mut std::io::stdout()))?;
        Ok(AccessLog { queue, dropped })
    }

    /// Queues one line; never blocks.
    pub fn write(&self, entry: &Entry<'_>) {
        let mut line = Vec::with_capacity(512);
        if serde_json::to_writer(&mut line, entry).is_err() {
            return;
        }
        line.push(b'\n');
        if let Err(TrySendError::Full(_)) = self.queue.try_send(Msg::Line(line)) {
            self.dropped.inc();
        }
    }

    /// Waits (up to a second) until every line queued so far is written: at
    /// shutdown, so the last requests' lines are not lost with the process.
    pub fn flush(&self) {
        let (done, written) = sync_channel(1);
        if self.queue.send(Msg::Flush(done)).is_ok() {
            let _ = written.recv_timeout(Duration::from_secs(1));
        }
    }
}

fn writer(rx: Receiver<Msg>, out: &mut impl Write) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut acks = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Line(line) => batch.extend_from_slice(&line),
                Msg::Flush(ack) => acks.push(ack),
            }
            if batch.len() >= BATCH {
                emit(out, &mut batch);
            }
            next = rx.try_recv().ok();
        }
        emit(out, &mut batch);
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
}

/// One write of whole lines; stdout's lock is held only for it, so other output
/// (the demo's) still gets through between batches.
fn emit(out: &mut impl Write, batch: &mut Vec<u8>) {
    if !batch.is_empty() {
        let _ = out.write_all(batch).and_then(|_| out.flush());
        batch.clear();
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
    use super::*;

    #[test]
    fn queued_lines_come_out_whole_and_in_order_then_flush_answers() {
        let (tx, rx) = sync_channel(QUEUE);
        let (out_tx, out_rx) = std::sync::mpsc::channel();
        struct Sink(std::sync::mpsc::Sender<Vec<u8>>);
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.send(buf.to_vec()).unwrap();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        // Queued before the writer starts, so it finds them all waiting.
        for i in 0..10_000 {
            tx.send(Msg::Line(format!("{{\"n\":{i}}}\n").into_bytes()))
                .unwrap();
        }
        let (done, written) = sync_channel(1);
        tx.send(Msg::Flush(done)).unwrap();
        let thread = std::thread::spawn(move || writer(rx, &mut Sink(out_tx)));
        written.recv_timeout(Duration::from_secs(5)).unwrap();
        drop(tx);
        thread.join().unwrap();
        let writes: Vec<Vec<u8>> = out_rx.try_iter().collect();
        assert!(writes.len() <= 3, "64 KiB batches: {} writes", writes.len());
        assert!(
            writes.iter().all(|w| w.ends_with(b"\n")),
            "writes end on a line"
        );
        let text = String::from_utf8(writes.concat()).unwrap();
        let numbers: Vec<usize> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["n"]
                    .as_u64()
                    .unwrap() as usize
            })
            .collect();
        assert_eq!(numbers, (0..10_000).collect::<Vec<_>>());
    }

    #[test]
    fn request_ids_are_v4_uuids() {
        let id = request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4", "{id}");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        assert_ne!(id, request_id());
    }
}
