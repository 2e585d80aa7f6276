//! The two halves of one HTTP/2 CONNECT stream, apart from any I/O on them, so a
//! tunnel can outlive the byte stream Pingora held: parked idle, or closed
//! cleanly.
//!
//! Why closing needs care: h2 resets (CANCEL) a stream whose handles are all
//! dropped while the peer has not ended its side, and a reset discards queued
//! DATA and makes the peer (ztunnel) log and count a failed connection. So a
//! tunnel we are done with sends END_STREAM and keeps its receive half until the
//! peer ends too, bounded in time and in bytes.

use bytes::Bytes;
use h2::{RecvStream, SendStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// How long a closed tunnel waits for the peer's END_STREAM before giving up
/// (dropping it then resets the stream).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes a closing tunnel reads and discards; more means the peer was still
/// sending something we no longer want, and a reset says so.
const DRAIN_LIMIT: usize = 64 << 10;

/// A tunnel's place on its pooled connection (see `pool`): counted while the
/// tunnel is in use or idle, given back when it closes.
#[derive(Debug)]
pub struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// Takes a place already reserved on `open`.
    pub fn reserved(open: Arc<AtomicUsize>) -> Slot {
        Slot(open)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub struct Tunnel {
    pub(super) send: SendStream<Bytes>,
    pub(super) recv: RecvStream,
    /// We have sent END_STREAM.
    pub(super) ended: bool,
    slot: Option<Slot>,
    /// Counts the tunnel as open until it has closed, so a drain waits for it.
    hold: Option<crate::app::Active>,
    /// Requests this tunnel has carried, counting the current one.
    pub(super) requests: u32,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel")
            .field("stream_id", &self.send.stream_id().as_u32())
            .field("requests", &self.requests)
            .finish()
    }
}

impl Tunnel {
    pub fn new(send: SendStream<Bytes>, recv: RecvStream) -> Self {
        Tunnel {
            send,
            recv,
            ended: false,
            slot: None,
            hold: None,
            requests: 0,
        }
    }

    pub fn with_slot(mut self, slot: Slot) -> Self {
        self.slot = Some(slot);
        self
    }

    pub fn holding(mut self, open: crate::app::Active) -> Self {
        self.hold = Some(open);
        self
    }

    /// Sends END_STREAM once; later calls do nothing.
    pub(super) fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            // An error means the stream is already gone: nothing left to end.
            let _ = self.send.send_data(Bytes::new(), true);
        }
    }

    /// Whether an idle tunnel can carry another request, without waiting: the
    /// peer must not have ended, reset or sent anything since it went idle, and
    /// its connection must be up (a dead connection fails the stream).
    pub fn is_live(&mut self) -> bool {
        if self.ended || self.recv.is_end_stream() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        matches!(self.recv.poll_data(&mut cx), Poll::Pending)
    }

    /// Closes the tunnel cleanly: END_STREAM now, and the receive half kept (in
    /// a task) until the peer ends its side.
    pub fn retire(mut self) {
        self.end();
        // Our place on the connection is free now; h2 itself holds a new stream
        // back if the peer still counts this one.
        self.slot = None;
        if self.recv.is_end_stream() {
            // Both sides ended: dropping the handles closes the stream, no reset.
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // The whole tunnel goes into the task: its hold keeps a drain waiting.
        rt.spawn(self.drain());
    }

    async fn drain(mut self) {
        let mut drained = 0usize;
        let drain = async {
            while let Some(Ok(data)) = self.recv.data().await {
                drained += data.len();
                let _ = self.recv.flow_control().release_capacity(data.len());
                if drained > DRAIN_LIMIT {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
        if !self.recv.is_end_stream() {
            log::debug!(
                "hbone: stream {} did not end within {DRAIN_TIMEOUT:?} of ours; resetting it",
                self.send.stream_id().as_u32()
            );
        }
    }
}
