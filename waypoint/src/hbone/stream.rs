//! One HBONE tunnel (an HTTP/2 CONNECT stream) as a byte stream.

use bytes::{Buf, Bytes};
use h2::{RecvStream, SendStream};
use pingora::protocols::l4::virt::{VirtualSockOpt, VirtualSocket};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Reads and writes the DATA frames of one CONNECT stream.
///
/// Flow control: received bytes are released to the peer as soon as they are
/// buffered here, so the peer's window tracks what the reader consumes; writes
/// reserve send capacity and write at most what the peer's window allows.
pub struct H2Stream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    pending: Bytes,
    shut_down: bool,
    /// Streams open on the pooled connection this one rides (see `pool`).
    open_streams: Option<std::sync::Arc<std::sync::atomic::AtomicUsize>>,
    /// Bytes read and written, for the tunnel's TCP metrics.
    bytes: Option<std::sync::Arc<TunnelBytes>>,
}

/// Bytes through one tunnel, counted as they pass.
#[derive(Debug, Default)]
pub struct TunnelBytes {
    pub received: std::sync::atomic::AtomicU64,
    pub sent: std::sync::atomic::AtomicU64,
}

impl H2Stream {
    pub fn new(send: SendStream<Bytes>, recv: RecvStream) -> Self {
        H2Stream {
            send,
            recv,
            pending: Bytes::new(),
            shut_down: false,
            open_streams: None,
            bytes: None,
        }
    }

    /// Counts the bytes through this tunnel into `bytes`.
    pub fn metered(mut self, bytes: std::sync::Arc<TunnelBytes>) -> Self {
        self.bytes = Some(bytes);
        self
    }

    /// Counts this stream against its connection until dropped.
    pub fn counted(mut self, open: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> Self {
        self.open_streams = Some(open);
        self
    }
}

impl std::fmt::Debug for H2Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Stream")
            .field("stream_id", &self.send.stream_id())
            .finish()
    }
}

fn h2_to_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e.into_io().expect("is_io");
    }
    io::Error::new(io::ErrorKind::ConnectionReset, e)
}

impl AsyncRead for H2Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = buf.remaining().min(self.pending.len());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                if let Some(b) = &self.bytes {
                    b.received
                        .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                }
                return Poll::Ready(Ok(()));
            }
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.pending = data;
                }
                // A peer that resets with NO_ERROR has simply finished.
                Some(Err(e)) if e.reason() == Some(h2::Reason::NO_ERROR) => {
                    return Poll::Ready(Ok(()))
                }
                Some(Err(e)) => return Poll::Ready(Err(h2_to_io(e))),
                None => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.send.reserve_capacity(buf.len());
        loop {
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(0)) => continue,
                Some(Ok(n)) => {
                    let n = n.min(buf.len());
                    self.send
                        .send_data(Bytes::copy_from_slice(&buf[..n]), false)
                        .map_err(h2_to_io)?;
                    if let Some(b) = &self.bytes {
                        b.sent
                            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    return Poll::Ready(Ok(n));
                }
                Some(Err(e)) => return Poll::Ready(Err(h2_to_io(e))),
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // h2 queues frames for the connection task, which flushes them.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.shut_down {
            self.shut_down = true;
            // An error here means the stream is already gone: nothing left to close.
            let _ = self.send.send_data(Bytes::new(), true);
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for H2Stream {
    // Dropping an h2 stream that is still open resets it (CANCEL), and a reset
    // discards DATA frames still queued: a final response written just before the
    // proxy lets go of the stream would be lost. End the stream cleanly instead;
    // HTTP/1.1 framing still tells the client if a body was cut short.
    fn drop(&mut self) {
        if !self.shut_down {
            let _ = self.send.send_data(Bytes::new(), true);
        }
        if let Some(open) = &self.open_streams {
            open.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
    }
}

impl VirtualSocket for H2Stream {
    fn set_socket_option(&self, _opt: VirtualSockOpt) -> io::Result<()> {
        // No socket underneath a stream: TCP options belong to the tunnel's connection.
        Ok(())
    }
}
