//! The config generation in use. A request loads it once and keeps it for its
//! whole life, so a reload never changes the world under a request.

use crate::upstream::Upstreams;
use std::sync::{Arc, RwLock};
use waypoint_filters::ratelimit::RateLimiters;
use waypoint_ir::Snapshot;

/// A snapshot plus what the data path derives from it once (the load balancers).
pub struct Runtime {
    pub snapshot: Snapshot,
    pub upstreams: Upstreams,
    /// Token buckets of the snapshot's rate limits (they start full on reload).
    pub limiters: RateLimiters,
    pub generation: u64,
    /// Metric series resolved for this generation's label sets.
    pub series: crate::metrics::SeriesCache,
}

impl Runtime {
    fn new(snapshot: Snapshot, generation: u64) -> Self {
        Runtime {
            upstreams: Upstreams::build(&snapshot),
            limiters: RateLimiters::build(&snapshot),
            snapshot,
            generation,
            series: Default::default(),
        }
    }

    /// The runtime of `snapshot`, carrying over what `self` counted: outlier
    /// ejections, requests in flight, rate-limit buckets.
    fn next(&self, snapshot: Snapshot) -> Self {
        let previous = (&self.snapshot, &self.upstreams);
        Runtime {
            upstreams: Upstreams::next(&snapshot, Some(previous)),
            limiters: RateLimiters::next(&snapshot, (&self.snapshot, &self.limiters)),
            snapshot,
            generation: self.generation + 1,
            series: Default::default(),
        }
    }
}

pub struct State {
    current: RwLock<Arc<Runtime>>,
    /// Taken by `replace`, which builds the next runtime outside `current`'s lock.
    replacing: std::sync::Mutex<()>,
    /// Certificates loaded, listeners up, not draining.
    ready: std::sync::atomic::AtomicBool,
    /// The config source has delivered a whole config (a directory at once;
    /// the Kubernetes API once every watch has listed).
    synced: std::sync::atomic::AtomicBool,
    /// The generation, for tasks that follow the config (the JWKS fetcher).
    changed: tokio::sync::watch::Sender<u64>,
}

impl State {
    pub fn new(snapshot: Snapshot) -> Self {
        State {
            current: RwLock::new(Arc::new(Runtime::new(snapshot, 1))),
            replacing: Default::default(),
            ready: std::sync::atomic::AtomicBool::new(false),
            synced: std::sync::atomic::AtomicBool::new(true),
            changed: tokio::sync::watch::Sender::new(1),
        }
    }

    /// An empty world that is not ready until the source syncs.
    pub fn awaiting_sync() -> Self {
        let state = State::new(Snapshot::default());
        state.set_synced(false);
        state
    }

    pub fn set_synced(&self, synced: bool) {
        self.synced
            .store(synced, std::sync::atomic::Ordering::Release);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready
            .store(ready, std::sync::atomic::Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Acquire)
            && self.synced.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn current(&self) -> Arc<Runtime> {
        self.current.read().expect("state lock poisoned").clone()
    }

    /// Wakes on every new snapshot.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Swaps in a new, already validated snapshot; returns its generation.
    pub fn replace(&self, snapshot: Snapshot) -> u64 {
        let _one = self.replacing.lock().expect("state lock poisoned");
        // Built outside the lock: requests keep loading the current one meanwhile.
        let next = Arc::new(self.current().next(snapshot));
        let generation = next.generation;
        *self.current.write().expect("state lock poisoned") = next;
        self.changed.send_replace(generation);
        generation
    }
}
