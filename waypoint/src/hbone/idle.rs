//! Keep-alive for upstream HBONE tunnels: idle tunnels parked per
//! [`TunnelKey`], and the [`Lease`] that decides whether a tunnel may be parked.
//!
//! Pingora cannot pool a tunnel itself: its pool checks a reused stream's fd, a
//! virtual stream's is -1, so it drops every one it takes back. We let it: a
//! tunnel Pingora released after a complete exchange sits in Pingora's pool until
//! Pingora drops it (the next request to the same peer, its idle timeout, LRU
//! eviction), and the drop parks it here, where `HboneConnect` takes it.
//!
//! Whether Pingora released the stream or dropped it as unusable is decided before
//! the proxy's `logging` hook runs, and only a released stream is still alive then.
//! So `logging` settles the try's lease: a tunnel still alive and clean then is
//! idle and may be parked when dropped; one dropped before that was not released
//! (or is in doubt) and is closed. Invariants:
//! - a parked tunnel carried only complete exchanges and nothing arrived on it
//!   since; it is checked again, without waiting, when taken;
//! - it is reused only for the same hop, expected identity, CONNECT target and
//!   `forwarded` client, so the destination sees the same tunnel metadata as if a
//!   new tunnel had been opened;
//! - it keeps its place on its connection while idle (it is an open HTTP/2 stream
//!   the peer counts too); `HbonePool` closes an idle one rather than dial when a
//!   connection is full;
//! - at most `capacity` are parked (the oldest is closed first), each until its
//!   idle timeout, measured from the end of its last exchange; every tunnel that
//!   leaves is closed cleanly (`Tunnel::retire`).

use super::tunnel::Tunnel;
use crate::identity::SpiffeId;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How often parked tunnels are checked for expiry and for a peer that ended them.
const SWEEP: Duration = Duration::from_millis(250);

/// What a tunnel is interchangeable for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TunnelKey {
    /// The destination node's HBONE server.
    pub hop: SocketAddr,
    /// The identity it must present.
    pub expected: SpiffeId,
    /// The CONNECT `:authority`.
    pub target: SocketAddr,
    /// The client named in the CONNECT's `forwarded` header.
    pub client: Option<IpAddr>,
}

/// Tunnel counts for the metrics.
#[derive(Debug, Default)]
pub struct TunnelStats {
    /// Idle: after a clean exchange, in Pingora's pool or parked here.
    pub idle: AtomicUsize,
    pub opened: AtomicU64,
    pub reused: AtomicU64,
}

struct Parked {
    tunnel: Tunnel,
    deadline: Option<Instant>,
    since: Instant,
}

#[derive(Default)]
struct Parking {
    tunnels: HashMap<TunnelKey, Vec<Parked>>,
    count: usize,
    sweeping: bool,
    closed: bool,
}

pub struct IdleTunnels {
    parking: Mutex<Parking>,
    capacity: usize,
    pub stats: TunnelStats,
}

impl IdleTunnels {
    pub fn new(capacity: usize) -> Self {
        IdleTunnels {
            parking: Mutex::default(),
            capacity,
            stats: TunnelStats::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Parking> {
        self.parking.lock().expect("idle tunnels lock")
    }

    /// Tunnels parked here (a subset of `stats.idle`).
    pub fn parked(&self) -> usize {
        self.lock().count
    }

    /// The most recently parked live tunnel for `key`; dead ones found on the way
    /// are closed.
    pub fn take(&self, key: &TunnelKey) -> Option<Tunnel> {
        let mut dead = Vec::new();
        let found = {
            let mut p = self.lock();
            let mut found = None;
            if let Some(list) = p.tunnels.get_mut(key) {
                while let Some(mut parked) = list.pop() {
                    if parked.tunnel.is_live() {
                        found = Some(parked.tunnel);
                        break;
                    }
                    dead.push(parked.tunnel);
                }
                if list.is_empty() {
                    p.tunnels.remove(key);
                }
            }
            p.count -= dead.len() + usize::from(found.is_some());
            found
        };
        if found.is_some() {
            self.stats.idle.fetch_sub(1, Ordering::AcqRel);
        }
        self.retire_all(dead);
        found
    }

    /// Closes the oldest parked tunnel with this hop and identity, to free its
    /// place on a full connection. False when there is none.
    pub fn close_one(&self, hop: SocketAddr, expected: &SpiffeId) -> bool {
        let victim = {
            let mut p = self.lock();
            let oldest = p
                .tunnels
                .iter()
                .filter(|(k, _)| k.hop == hop && &k.expected == expected)
                .filter_map(|(k, list)| list.first().map(|t| (t.since, k.clone())))
                .min_by_key(|(since, _)| *since);
            oldest.and_then(|(_, key)| p.remove_first(&key))
        };
        let found = victim.is_some();
        self.retire_all(victim);
        found
    }

    /// Parks a tunnel whose lease settled clean, unless the pool is closed or
    /// the deadline has passed.
    fn park(self: &Arc<Self>, key: &TunnelKey, tunnel: Tunnel, deadline: Option<Instant>) {
        let now = Instant::now();
        let mut out = Vec::new();
        {
            let mut p = self.lock();
            if p.closed || deadline.is_some_and(|d| d <= now) {
                out.push(tunnel);
            } else {
                if p.count >= self.capacity {
                    out.extend(p.remove_oldest());
                }
                p.tunnels.entry(key.clone()).or_default().push(Parked {
                    tunnel,
                    deadline,
                    since: now,
                });
                p.count += 1;
                if !p.sweeping {
                    if let Ok(rt) = tokio::runtime::Handle::try_current() {
                        p.sweeping = true;
                        rt.spawn(sweep(Arc::downgrade(self)));
                    }
                }
            }
        }
        self.retire_all(out);
    }

    /// Closes every parked tunnel, and each one parked later: the waypoint is
    /// shutting down.
    pub fn close(&self) {
        let all: Vec<Tunnel> = {
            let mut p = self.lock();
            p.closed = true;
            p.count = 0;
            p.tunnels
                .drain()
                .flat_map(|(_, list)| list)
                .map(|t| t.tunnel)
                .collect()
        };
        self.retire_all(all);
    }

    fn retire_all(&self, tunnels: impl IntoIterator<Item = Tunnel>) {
        for t in tunnels {
            self.stats.idle.fetch_sub(1, Ordering::AcqRel);
            t.retire();
        }
    }

    /// Removes expired tunnels and those whose peer ended or reset them; false
    /// when none are left to watch.
    fn sweep_once(&self) -> bool {
        let now = Instant::now();
        let mut out = Vec::new();
        let more = {
            let mut p = self.lock();
            for list in p.tunnels.values_mut() {
                let mut i = 0;
                while i < list.len() {
                    let t = &mut list[i];
                    if t.deadline.is_some_and(|d| d <= now) || !t.tunnel.is_live() {
                        out.push(list.remove(i).tunnel);
                    } else {
                        i += 1;
                    }
                }
            }
            p.tunnels.retain(|_, list| !list.is_empty());
            p.count -= out.len();
            p.sweeping = p.count > 0;
            p.sweeping
        };
        self.retire_all(out);
        more
    }
}

impl Parking {
    fn remove_first(&mut self, key: &TunnelKey) -> Option<Tunnel> {
        let list = self.tunnels.get_mut(key)?;
        let t = list.remove(0).tunnel;
        if list.is_empty() {
            self.tunnels.remove(key);
        }
        self.count -= 1;
        Some(t)
    }

    fn remove_oldest(&mut self) -> Option<Tunnel> {
        let key = self
            .tunnels
            .iter()
            .filter_map(|(k, list)| list.first().map(|t| (t.since, k)))
            .min_by_key(|(since, _)| *since)
            .map(|(_, k)| k.clone())?;
        self.remove_first(&key)
    }
}

async fn sweep(idle: Weak<IdleTunnels>) {
    loop {
        tokio::time::sleep(SWEEP).await;
        match idle.upgrade() {
            Some(idle) if idle.sweep_once() => {}
            _ => return,
        }
    }
}

// A lease's life: UNUSED until a tunnel is attached, BUSY during the exchange,
// then CLEAN or DIRTY when `logging` settles it, and GONE once the tunnel has
// been dropped (parked or closed). Settling and dropping race only through these
// atomic transitions.
const UNUSED: u8 = 0;
const BUSY: u8 = 1;
const CLEAN: u8 = 2;
const DIRTY: u8 = 3;
const GONE: u8 = 4;

/// One try's claim on a tunnel, shared by the request's context and the tunnel
/// Pingora holds. See the module comment.
#[derive(Clone)]
pub struct Lease(Arc<LeaseInner>);

struct LeaseInner {
    idle: Arc<IdleTunnels>,
    key: TunnelKey,
    idle_timeout: Option<Duration>,
    state: AtomicU8,
    /// The tunnel's request count, this try's included.
    requests: std::sync::atomic::AtomicU32,
    /// When the exchange settled clean: the idle timeout counts from here.
    settled: std::sync::OnceLock<Instant>,
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
        Lease(Arc::new(LeaseInner {
            idle,
            key,
            idle_timeout,
            state: AtomicU8::new(UNUSED),
            requests: Default::default(),
            settled: Default::default(),
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

    /// Called when the request is over: `clean` when the exchange completed and
    /// the tunnel may carry another. A tunnel Pingora dropped already is unaffected.
    pub fn settle(&self, clean: bool) {
        let to = if clean { CLEAN } else { DIRTY };
        if clean {
            let _ = self.0.settled.set(Instant::now());
        }
        let settled = self
            .0
            .state
            .compare_exchange(BUSY, to, Ordering::AcqRel, Ordering::Acquire);
        if settled.is_ok() && clean {
            self.0.idle.stats.idle.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Whether the exchange is over (settled either way).
    pub(super) fn settled(&self) -> bool {
        matches!(self.0.state.load(Ordering::Acquire), CLEAN | DIRTY)
    }

    /// The tunnel's byte stream was dropped: park the tunnel if the lease settled
    /// clean and the stream saw nothing unexpected (`reusable`), else close it.
    pub(super) fn release(&self, tunnel: Tunnel, reusable: bool) {
        let idle = &self.0.idle;
        if self.0.state.swap(GONE, Ordering::AcqRel) != CLEAN {
            tunnel.retire();
            return;
        }
        if !reusable {
            idle.retire_all([tunnel]);
            return;
        }
        let deadline = self
            .0
            .idle_timeout
            .zip(self.0.settled.get())
            .map(|(timeout, since)| *since + timeout);
        idle.park(&self.0.key, tunnel, deadline);
    }
}
