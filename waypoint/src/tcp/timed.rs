//! Timers of a proxied TCP connection: its idle timeout and its maximum
//! duration, and what it carried by the time one fired.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Completes once a connection has lived `max`; never without one.
pub async fn lived(max: Option<Duration>) {
    match max {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// When bytes last moved through a connection's two ends, and how many each
/// way (so a connection ended by a timer still reports what it carried).
pub struct Clock {
    start: tokio::time::Instant,
    /// Milliseconds from `start` to the last read or write.
    last: AtomicU64,
    read_down: AtomicU64,
    read_up: AtomicU64,
    /// Which end failed first: 0 none, 1 downstream, 2 upstream.
    failed: std::sync::atomic::AtomicU8,
}

/// The end of a connection whose I/O failed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Downstream,
    Upstream,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            start: tokio::time::Instant::now(),
            last: AtomicU64::new(0),
            read_down: AtomicU64::new(0),
            read_up: AtomicU64::new(0),
            failed: std::sync::atomic::AtomicU8::new(0),
        }
    }

    /// The end that failed first, if one did.
    pub fn failed(&self) -> Option<End> {
        match self.failed.load(Ordering::Relaxed) {
            1 => Some(End::Downstream),
            2 => Some(End::Upstream),
            _ => None,
        }
    }

    fn fail(&self, downstream: bool) {
        let end = if downstream { 1 } else { 2 };
        let _ = self
            .failed
            .compare_exchange(0, end, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }

    /// Completes once nothing has moved for `idle`.
    pub async fn idle_for(&self, idle: Duration) {
        loop {
            let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
            let at = self.start + last + idle;
            if tokio::time::Instant::now() >= at {
                return;
            }
            tokio::time::sleep_until(at).await;
        }
    }

    /// Bytes read from downstream (sent up) and from upstream (sent down).
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.read_down.load(Ordering::Relaxed),
            self.read_up.load(Ordering::Relaxed),
        )
    }
}

/// One end of a proxied connection, telling `clock` when bytes move.
pub struct Timed<'a, T> {
    io: &'a mut T,
    clock: Arc<Clock>,
    /// Reads from this end count as received from downstream.
    downstream: bool,
}

impl<'a, T> Timed<'a, T> {
    pub fn new(io: &'a mut T, clock: Arc<Clock>, downstream: bool) -> Self {
        Timed {
            io,
            clock,
            downstream,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Timed<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut *self.io).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            self.clock.touch();
            let counter = if self.downstream {
                &self.clock.read_down
            } else {
                &self.clock.read_up
            };
            counter.fetch_add(n, Ordering::Relaxed);
        }
        if let Poll::Ready(Err(_)) = &polled {
            self.clock.fail(self.downstream);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Timed<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut *self.io).poll_write(cx, buf);
        match &polled {
            Poll::Ready(Ok(n)) if *n > 0 => self.clock.touch(),
            Poll::Ready(Err(_)) => self.clock.fail(self.downstream),
            _ => {}
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut *self.io).poll_shutdown(cx);
        if let Poll::Ready(Err(_)) = &polled {
            self.clock.fail(self.downstream);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A peer that resets the connection.
    struct Reset;

    impl AsyncRead for Reset {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Ready(Err(std::io::ErrorKind::ConnectionReset.into()))
        }
    }

    #[tokio::test]
    async fn the_end_that_fails_first_is_remembered() {
        let clock = Arc::new(Clock::new());
        assert_eq!(clock.failed(), None);
        let (mut down, mut up) = (Reset, Reset);
        let mut buf = [0u8; 8];
        let _ = Timed::new(&mut down, clock.clone(), true)
            .read(&mut buf)
            .await;
        let _ = Timed::new(&mut up, clock.clone(), false)
            .read(&mut buf)
            .await;
        assert_eq!(clock.failed(), Some(End::Downstream));
    }
}
