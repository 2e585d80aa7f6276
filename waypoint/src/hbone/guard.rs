//! Watches the HTTP/2 frames of one downstream HBONE connection for the abuse
//! the h2 crate does not bound or report by itself:
//! - a header block begun and never finished (HEADERS without END_HEADERS):
//!   the connection is closed once it has been open for the header timeout;
//! - streams the client resets as soon as they open, paced to dodge h2's own
//!   rapid-reset limit: judged as Envoy does (premature resets of more than half
//!   of at least N streams), then the connection task sends GOAWAY;
//! - the 431s h2 answers by itself for header lists over the limit, which it
//!   never hands to the server: a response HEADERS frame on a stream the
//!   connection task did not answer is one of them.
//!
//! Only the 9-byte frame headers are looked at, never payloads, so the cost is a
//! few comparisons per frame.

use crate::limits::{Limits, Rejected};
use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
/// Recently opened streams remembered for the premature-reset check; beyond
/// this the oldest are forgotten (and a reset of one no longer counts).
const RECENT_STREAMS: usize = 4096;

/// What the connection task and the frame watcher share.
pub struct GuardState {
    /// Streams the connection task answered itself (see the module comment).
    answered: Mutex<BTreeSet<u32>>,
    too_many_resets: AtomicBool,
    /// Woken when the premature-reset limit is crossed.
    pub tripped: tokio::sync::Notify,
    rejected: crate::metrics::Rejections,
}

impl GuardState {
    pub fn new(rejected: crate::metrics::Rejections) -> Self {
        GuardState {
            answered: Mutex::default(),
            too_many_resets: AtomicBool::new(false),
            tripped: tokio::sync::Notify::new(),
            rejected,
        }
    }

    /// Called before the connection task answers `stream` itself.
    pub fn answering(&self, stream: u32) {
        let mut answered = self.answered.lock().expect("guard lock");
        answered.insert(stream);
        // A stream reset before its answer went out leaves its id behind.
        if answered.len() > RECENT_STREAMS {
            answered.pop_first();
        }
    }

    fn answered(&self, stream: u32) -> bool {
        self.answered.lock().expect("guard lock").remove(&stream)
    }

    pub fn too_many_resets(&self) -> bool {
        self.too_many_resets.load(Ordering::Acquire)
    }
}

#[derive(Debug, Clone, Copy)]
struct FrameHead {
    len: usize,
    kind: u8,
    flags: u8,
    stream: u32,
}

/// Finds frame boundaries in a byte stream, whatever the read sizes.
#[derive(Default)]
struct FrameScanner {
    /// Bytes of the client preface still to skip.
    preface: usize,
    head: [u8; FRAME_HEADER_LEN],
    filled: usize,
    /// Payload bytes of the current frame still to skip.
    skip: usize,
}

impl FrameScanner {
    fn scan(&mut self, mut bytes: &[u8], mut on_frame: impl FnMut(FrameHead)) {
        while !bytes.is_empty() {
            let n = if self.preface > 0 {
                let n = self.preface.min(bytes.len());
                self.preface -= n;
                n
            } else if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                n
            } else {
                let n = (FRAME_HEADER_LEN - self.filled).min(bytes.len());
                self.head[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
                self.filled += n;
                if self.filled == FRAME_HEADER_LEN {
                    self.filled = 0;
                    let h = &self.head;
                    let head = FrameHead {
                        len: u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize,
                        kind: h[3],
                        flags: h[4],
                        stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
                    };
                    self.skip = head.len;
                    on_frame(head);
                }
                n
            };
            bytes = &bytes[n..];
        }
    }
}

/// What the client's frames have done so far.
struct ReadWatch {
    scanner: FrameScanner,
    last_opened: u32,
    opened: u64,
    premature: u64,
    /// (stream, when opened), oldest first; ids rise with time.
    recent: VecDeque<(u32, Instant)>,
    /// Set while a header block is unfinished.
    header_deadline: Option<Pin<Box<Sleep>>>,
}

/// The connection's transport with its frames watched; h2 runs on top of it.
pub struct Guarded<IO> {
    io: IO,
    limits: Limits,
    state: std::sync::Arc<GuardState>,
    read: ReadWatch,
    write: FrameScanner,
}

impl<IO> Guarded<IO> {
    pub fn new(io: IO, limits: Limits, state: std::sync::Arc<GuardState>) -> Self {
        Guarded {
            io,
            limits,
            state,
            read: ReadWatch {
                scanner: FrameScanner {
                    preface: PREFACE_LEN,
                    ..FrameScanner::default()
                },
                last_opened: 0,
                opened: 0,
                premature: 0,
                recent: VecDeque::new(),
                header_deadline: None,
            },
            write: FrameScanner::default(),
        }
    }

    fn on_read(&mut self, bytes: &[u8]) {
        let now = Instant::now();
        let limits = self.limits;
        let read = &mut self.read;
        let state = &self.state;
        read.scanner.scan(bytes, |f| match f.kind {
            HEADERS => {
                if f.stream > read.last_opened && f.stream % 2 == 1 {
                    read.last_opened = f.stream;
                    read.opened += 1;
                    while read.recent.len() >= RECENT_STREAMS
                        || read.recent.front().is_some_and(|&(_, t)| {
                            now.duration_since(t) >= limits.premature_reset_min_lifetime
                        })
                    {
                        read.recent.pop_front();
                    }
                    read.recent.push_back((f.stream, now));
                }
                if f.flags & END_HEADERS == 0 {
                    read.header_deadline =
                        Some(Box::pin(tokio::time::sleep(limits.header_timeout)));
                }
            }
            CONTINUATION if f.flags & END_HEADERS != 0 => read.header_deadline = None,
            RST_STREAM => {
                if let Ok(i) = read.recent.binary_search_by_key(&f.stream, |e| e.0) {
                    let (_, opened) = read.recent.remove(i).expect("found");
                    if now.duration_since(opened) < limits.premature_reset_min_lifetime {
                        read.premature += 1;
                    }
                }
                // Envoy's rule: before the minimum count, trip as soon as the
                // resets alone would be half of it; after, when half of all are.
                let judged = read.opened.max(limits.premature_reset_min_streams);
                if read.premature > 0
                    && read.premature * 2 >= judged
                    && !state.too_many_resets.swap(true, Ordering::AcqRel)
                {
                    state.tripped.notify_one();
                }
            }
            _ => {}
        });
    }

    fn on_write(&mut self, bytes: &[u8]) {
        let state = &self.state;
        self.write.scan(bytes, |f| {
            if f.kind == HEADERS && !state.answered(f.stream) {
                state.rejected.inc(Rejected::HeaderListTooLarge);
            }
        });
    }

    fn header_timed_out(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.read.header_deadline.as_mut() else {
            return false;
        };
        if deadline.as_mut().poll(cx).is_pending() {
            return false;
        }
        self.read.header_deadline = None;
        self.state.rejected.inc(Rejected::HeaderTimeout);
        true
    }
}

fn header_timeout() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "a header block was left unfinished past the header timeout",
    )
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                self.on_read(&buf.filled()[before..]);
                // A peer trickling CONTINUATION bytes is still bound by the deadline.
                if self.header_timed_out(cx) {
                    return Poll::Ready(Err(header_timeout()));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if self.header_timed_out(cx) => Poll::Ready(Err(header_timeout())),
            other => other,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = std::task::ready!(Pin::new(&mut self.io).poll_write(cx, buf))?;
        self.on_write(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let n = std::task::ready!(Pin::new(&mut self.io).poll_write_vectored(cx, bufs))?;
        let mut left = n;
        for b in bufs {
            if left == 0 {
                break;
            }
            let take = left.min(b.len());
            self.on_write(&b[..take]);
            left -= take;
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, len: usize) -> Vec<u8> {
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend(std::iter::repeat_n(0xAB, len));
        f
    }

    #[test]
    fn frames_are_found_across_any_split() {
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(0x4, 0, 0, 6));
        bytes.extend(frame(HEADERS, 0, 1, 20));
        bytes.extend(frame(CONTINUATION, END_HEADERS, 1, 3));
        bytes.extend(frame(RST_STREAM, 0, 1, 4));
        for chunk in [1, 2, 7, 9, 10, 1000] {
            let mut scanner = FrameScanner {
                preface: PREFACE_LEN,
                ..FrameScanner::default()
            };
            let mut seen = Vec::new();
            for part in bytes.chunks(chunk) {
                scanner.scan(part, |f| seen.push((f.kind, f.flags, f.stream, f.len)));
            }
            assert_eq!(
                seen,
                [
                    (0x4, 0, 0, 6),
                    (HEADERS, 0, 1, 20),
                    (CONTINUATION, END_HEADERS, 1, 3),
                    (RST_STREAM, 0, 1, 4)
                ],
                "chunk size {chunk}"
            );
        }
    }

    fn guarded(min_streams: u64) -> Guarded<tokio::io::Empty> {
        let limits = Limits {
            premature_reset_min_streams: min_streams,
            ..Limits::default()
        };
        let state = std::sync::Arc::new(GuardState::new(Default::default()));
        let mut g = Guarded::new(tokio::io::empty(), limits, state);
        g.read.scanner.preface = 0;
        g
    }

    #[tokio::test(start_paused = true)]
    async fn premature_resets_trip_at_half_of_the_minimum() {
        let mut g = guarded(10);
        for id in (1..=9).step_by(2) {
            g.on_read(&frame(HEADERS, END_HEADERS, id, 0));
            assert!(!g.state.too_many_resets());
            g.on_read(&frame(RST_STREAM, 0, id, 4));
        }
        // Five streams, five premature resets: half of the minimum of ten.
        assert!(g.state.too_many_resets());
    }

    #[tokio::test(start_paused = true)]
    async fn resets_after_the_minimum_lifetime_are_not_premature() {
        let mut g = guarded(10);
        for id in (1..=39).step_by(2) {
            g.on_read(&frame(HEADERS, END_HEADERS, id, 0));
        }
        tokio::time::advance(std::time::Duration::from_secs(2)).await;
        for id in (1..=39).step_by(2) {
            g.on_read(&frame(RST_STREAM, 0, id, 4));
        }
        assert!(!g.state.too_many_resets());
        assert_eq!(g.read.premature, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answered_stream_is_not_a_431() {
        let mut g = guarded(10);
        g.state.answering(1);
        g.on_write(&frame(HEADERS, END_HEADERS, 1, 5));
        assert_eq!(g.state.rejected.get(Rejected::HeaderListTooLarge), 0);
        g.on_write(&frame(HEADERS, END_HEADERS, 3, 5));
        assert_eq!(g.state.rejected.get(Rejected::HeaderListTooLarge), 1);
    }
}
