//! One HBONE tunnel (an HTTP/2 CONNECT stream) as a byte stream.

use super::lease::Lease;
use super::tunnel::Tunnel;
use bytes::{Buf, Bytes};
use h2::{RecvStream, SendStream};
use pingora::protocols::l4::virt::{VirtualSockOpt, VirtualSocket};
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Reads and writes the DATA frames of one CONNECT stream.
///
/// Flow control: received bytes are released to the peer as soon as they are
/// buffered here, so the peer's window tracks what the reader consumes; writes
/// reserve send capacity and write at most what the peer's window allows.
///
/// Dropped, it closes the tunnel cleanly (`Tunnel::retire`), or, for an upstream
/// tunnel whose lease settled clean, parks it for the next request (`idle`). A
/// leased stream reads as ended once its lease is settled.
pub struct H2Stream {
    /// Always `Some` until dropped.
    tunnel: Option<Tunnel>,
    pending: Bytes,
    /// The peer ended or reset the stream: the tunnel cannot carry another request.
    spent: bool,
    lease: Option<Lease>,
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
        Self::from_tunnel(Tunnel::new(send, recv))
    }

    pub fn from_tunnel(tunnel: Tunnel) -> Self {
        H2Stream {
            tunnel: Some(tunnel),
            pending: Bytes::new(),
            spent: false,
            lease: None,
            bytes: None,
        }
    }

    /// Counts the bytes through this tunnel into `bytes`.
    pub fn metered(mut self, bytes: std::sync::Arc<TunnelBytes>) -> Self {
        self.bytes = Some(bytes);
        self
    }

    /// Ties the tunnel to a try's lease, which decides whether it is kept.
    pub fn leased(mut self, lease: Lease) -> Self {
        if let Some(t) = &self.tunnel {
            lease.attach(t);
        }
        self.lease = Some(lease);
        self
    }

    fn tunnel(&mut self) -> &mut Tunnel {
        self.tunnel.as_mut().expect("tunnel present until drop")
    }
}

impl std::fmt::Debug for H2Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Stream")
            .field("tunnel", &self.tunnel)
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
                    b.received.fetch_add(n as u64, Ordering::Relaxed);
                }
                return Poll::Ready(Ok(()));
            }
            // Settled, the exchange is over: reading end-of-stream, Pingora drops
            // the stream from its pool, and the drop parks or closes the tunnel.
            if self.lease.as_ref().is_some_and(|l| l.settled(cx.waker())) {
                return Poll::Ready(Ok(()));
            }
            let polled = ready!(self.tunnel().recv.poll_data(cx));
            match polled {
                Some(Ok(data)) => {
                    let _ = self
                        .tunnel()
                        .recv
                        .flow_control()
                        .release_capacity(data.len());
                    self.pending = data;
                }
                // A peer that resets with NO_ERROR has simply finished.
                Some(Err(e)) if e.reason() == Some(h2::Reason::NO_ERROR) => {
                    self.spent = true;
                    return Poll::Ready(Ok(()));
                }
                Some(Err(e)) => {
                    self.spent = true;
                    return Poll::Ready(Err(h2_to_io(e)));
                }
                None => {
                    self.spent = true;
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = self.get_mut();
        let send = &mut this
            .tunnel
            .as_mut()
            .expect("tunnel present until drop")
            .send;
        send.reserve_capacity(buf.len());
        loop {
            match ready!(send.poll_capacity(cx)) {
                Some(Ok(0)) => continue,
                Some(Ok(n)) => {
                    let n = n.min(buf.len());
                    send.send_data(Bytes::copy_from_slice(&buf[..n]), false)
                        .map_err(h2_to_io)?;
                    if let Some(b) = &this.bytes {
                        b.sent.fetch_add(n as u64, Ordering::Relaxed);
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
        self.tunnel().end();
        Poll::Ready(Ok(()))
    }
}

impl Drop for H2Stream {
    // Dropping h2's handles while the stream is open resets it, which discards a
    // final response still queued and makes the peer count a failed connection;
    // the tunnel is closed cleanly or kept instead.
    fn drop(&mut self) {
        let Some(tunnel) = self.tunnel.take() else {
            return;
        };
        let reusable = !self.spent && !tunnel.ended && self.pending.is_empty();
        match &self.lease {
            Some(lease) => lease.release(tunnel, reusable),
            None => tunnel.retire(),
        }
    }
}

impl VirtualSocket for H2Stream {
    fn set_socket_option(&self, _opt: VirtualSockOpt) -> io::Result<()> {
        // No socket underneath a stream: TCP options belong to the tunnel's connection.
        Ok(())
    }
}
