//! One try's claim on an upstream tunnel: whether the tunnel may be kept when
//! Pingora lets go of it.
//!
//! Pingora decides whether a stream is reusable (keep-alive, both messages
//! complete) and releases it to its pool or drops it, all before the proxy's
//! `logging` hook runs; so only a released stream is still alive then. `logging`
//! settles the lease. From then on the stream reads as ended, so Pingora's idle
//! watch drops it from its pool at once (Pingora's pool cannot reuse it anyway:
//! it checks a reused stream's fd, and a virtual stream's is -1), and the drop
//! parks the tunnel (settled clean) or closes it. A stream dropped before it was
//! settled (not released, or taken by a concurrent request in the instant
//! between release and `logging`) is closed: when in doubt, a new tunnel.

use super::idle::{IdleTunnels, TunnelKey};
use super::tunnel::Tunnel;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant};

// A lease's life: UNUSED until a tunnel is attached, BUSY during the exchange,
// then CLEAN or DIRTY when `logging` settles it, and GONE once the tunnel has
// been dropped (parked or closed). Settling and dropping race only through these
// atomic transitions.
const UNUSED: u8 = 0;
const BUSY: u8 = 1;
const CLEAN: u8 = 2;
const DIRTY: u8 = 3;
const GONE: u8 = 4;

/// Shared by the request's context and the tunnel Pingora holds.
#[derive(Clone)]
pub struct Lease(Arc<Inner>);

struct Inner {
    idle: Arc<IdleTunnels>,
    key: TunnelKey,
    idle_timeout: Option<Duration>,
    state: AtomicU8,
    /// The tunnel's request count, this try's included.
    requests: AtomicU32,
    /// When the exchange settled clean: the idle timeout counts from here.
    settled: OnceLock<Instant>,
    /// Whoever waits to read the tunnel (Pingora's idle watch), woken at settling.
    reader: Mutex<Option<Waker>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("key", &self.0.key)
            .field("state", &self.0.state.load(Ordering::Relaxed))
            .finish()
    }
}

impl Lease {
    pub fn new(idle: Arc<IdleTunnels>, key: TunnelKey, idle_timeout: Option<Duration>) -> Self {
        Lease(Arc::new(Inner {
            idle,
            key,
            idle_timeout,
            state: AtomicU8::new(UNUSED),
            requests: AtomicU32::new(0),
            settled: OnceLock::new(),
            reader: Mutex::default(),
        }))
    }

    pub fn key(&self) -> &TunnelKey {
        &self.0.key
    }

    /// Requests the try's tunnel has carried, this one included; 0 before it
    /// has a tunnel.
    pub fn requests(&self) -> u32 {
        self.0.requests.load(Ordering::Acquire)
    }

    /// The try got `tunnel`; its exchange starts.
    pub(super) fn attach(&self, tunnel: &Tunnel) {
        self.0.requests.store(tunnel.requests, Ordering::Release);
        self.0.state.store(BUSY, Ordering::Release);
    }

    /// The request is over: `clean` when the exchange completed and the tunnel
    /// may carry another. A tunnel Pingora dropped already is unaffected.
    pub fn settle(&self, clean: bool) {
        if clean {
            let _ = self.0.settled.set(Instant::now());
        }
        let to = if clean { CLEAN } else { DIRTY };
        let settled = self
            .0
            .state
            .compare_exchange(BUSY, to, Ordering::AcqRel, Ordering::Acquire);
        if settled.is_ok() && clean {
            self.0.idle.coming(&self.0.key);
        }
        if let Some(reader) = self.0.reader.lock().expect("lease lock").take() {
            reader.wake();
        }
    }

    /// Whether the exchange is over (settled either way); until then `waker` is
    /// woken when it is.
    pub(super) fn settled(&self, waker: &Waker) -> bool {
        {
            let mut reader = self.0.reader.lock().expect("lease lock");
            if !reader.as_ref().is_some_and(|w| w.will_wake(waker)) {
                *reader = Some(waker.clone());
            }
        }
        matches!(self.0.state.load(Ordering::Acquire), CLEAN | DIRTY)
    }

    /// The tunnel's byte stream was dropped: park the tunnel if the lease settled
    /// clean and the stream saw nothing unexpected (`reusable`), else close it.
    pub(super) fn release(&self, tunnel: Tunnel, reusable: bool) {
        if self.0.state.swap(GONE, Ordering::AcqRel) != CLEAN {
            tunnel.retire();
            return;
        }
        let deadline = self
            .0
            .idle_timeout
            .zip(self.0.settled.get())
            .map(|(timeout, since)| *since + timeout);
        self.0.idle.arrive(&self.0.key, tunnel, reusable, deadline);
    }
}
