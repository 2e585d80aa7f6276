//! Idle upstream HBONE tunnels, parked per [`TunnelKey`] until a request to the
//! same place takes one (see `lease` for how a tunnel gets here).
//!
//! Invariants:
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
//!   leaves is closed cleanly (`Tunnel::retire`);
//! - a tunnel settled clean but not parked yet is "coming": Pingora drops it
//!   from its pool a moment after `logging`, so a request that finds none parked
//!   waits for a coming one (briefly) rather than open a new tunnel. Without
//!   this, back-to-back requests on one connection sometimes overtake their own
//!   tunnel.

use super::tunnel::Tunnel;
use crate::identity::SpiffeId;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How often parked tunnels are checked for expiry and for a peer that ended them.
const SWEEP: Duration = Duration::from_millis(250);
/// How long a request waits for a coming tunnel (normally microseconds).
const COMING_WAIT: Duration = Duration::from_millis(20);

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
    /// Idle: settled clean and not taken or closed since.
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
    coming: HashMap<TunnelKey, usize>,
    sweeping: bool,
    closed: bool,
}

pub struct IdleTunnels {
    parking: Mutex<Parking>,
    /// Notified when a coming tunnel arrives.
    arrived: Notify,
    capacity: usize,
    pub stats: TunnelStats,
}

impl IdleTunnels {
    pub fn new(capacity: usize) -> Self {
        IdleTunnels {
            parking: Mutex::default(),
            arrived: Notify::new(),
            capacity,
            stats: TunnelStats::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Parking> {
        self.parking.lock().expect("idle tunnels lock")
    }

    /// The most recently parked live tunnel for `key`, waiting briefly for one
    /// that is coming; dead ones found on the way are closed.
    pub async fn take(&self, key: &TunnelKey) -> Option<Tunnel> {
        let deadline = tokio::time::Instant::now() + COMING_WAIT;
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let (found, coming) = self.try_take(key);
            if found.is_some() || !coming {
                return found;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return None;
            }
        }
    }

    fn try_take(&self, key: &TunnelKey) -> (Option<Tunnel>, bool) {
        let mut dead = Vec::new();
        let (found, coming) = {
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
            (found, p.coming.contains_key(key))
        };
        if found.is_some() {
            self.stats.idle.fetch_sub(1, Ordering::AcqRel);
        }
        self.retire_all(dead);
        (found, coming)
    }

    /// A tunnel for `key` settled clean and will arrive when Pingora drops it.
    pub(super) fn coming(&self, key: &TunnelKey) {
        self.stats.idle.fetch_add(1, Ordering::AcqRel);
        *self.lock().coming.entry(key.clone()).or_default() += 1;
    }

    /// A coming tunnel arrived: parked if `reusable`, unless the pool is closed
    /// or its deadline has passed; closed otherwise.
    pub(super) fn arrive(
        self: &Arc<Self>,
        key: &TunnelKey,
        tunnel: Tunnel,
        reusable: bool,
        deadline: Option<Instant>,
    ) {
        let now = Instant::now();
        let mut out = Vec::new();
        {
            let mut p = self.lock();
            if let Some(n) = p.coming.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    p.coming.remove(key);
                }
            }
            if !reusable || p.closed || deadline.is_some_and(|d| d <= now) {
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
        self.arrived.notify_waiters();
        self.retire_all(out);
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

    /// Closes every parked tunnel, and each one that arrives later: the waypoint
    /// is shutting down.
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

    /// Closes tunnels that were idle.
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

#[cfg(test)]
mod tests;
