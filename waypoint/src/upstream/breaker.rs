//! Circuit breaking (Envoy's cluster thresholds) from `connectionPool`: requests
//! beyond the limits get 503 with flag UO at once, never touching an endpoint.
//!
//! Upstream connections are HTTP/1.1, so a request in flight holds a connection:
//! `max_connections` bounds requests in flight, and up to `max_pending` more wait
//! for one. `max_requests` bounds requests in flight whatever the protocol.
//! Unset limits are unlimited, as Istio configures Envoy.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use waypoint_ir::ConnectionPool;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    Requests,
    Pending,
    Retries,
    Connections,
}

impl Overflow {
    pub fn reason(self) -> &'static str {
        match self {
            Overflow::Requests => "max requests",
            Overflow::Pending => "max pending requests",
            Overflow::Retries => "max retries",
            Overflow::Connections => "max connections",
        }
    }
}

pub struct Breaker {
    max_requests: Option<u32>,
    requests: Arc<AtomicU32>,
    connections: Option<Arc<Semaphore>>,
    max_pending: u32,
    pending: AtomicU32,
    max_retries: Option<u32>,
    retries: Arc<AtomicU32>,
}

/// Held for the life of a request; releases its share of the limits on drop.
pub struct Admission {
    /// `None` for a TCP connection, which is no request.
    requests: Option<Arc<AtomicU32>>,
    _connection: Option<OwnedSemaphorePermit>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(r) = &self.requests {
            r.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Held while a retry is in flight.
pub struct RetryPermit(Arc<AtomicU32>);

impl Drop for RetryPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Increments `counter` unless that would pass `max`.
fn try_take(counter: &AtomicU32, max: Option<u32>) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| match max {
            Some(m) if n >= m => None,
            _ => Some(n + 1),
        })
        .is_ok()
}

impl Breaker {
    pub fn new(pool: &ConnectionPool) -> Self {
        Breaker {
            max_requests: pool.max_requests,
            requests: Arc::new(AtomicU32::new(0)),
            connections: pool
                .max_connections
                .map(|n| Arc::new(Semaphore::new(n as usize))),
            // Envoy's default pending limit applies only when connections are
            // limited; Istio leaves it unlimited.
            max_pending: pool.max_pending.unwrap_or(u32::MAX),
            pending: AtomicU32::new(0),
            max_retries: pool.max_retries,
            retries: Arc::new(AtomicU32::new(0)),
        }
    }

    /// Admits a request, waiting in the pending queue for a connection if
    /// there is room in it.
    pub async fn admit(&self) -> Result<Admission, Overflow> {
        if !try_take(&self.requests, self.max_requests) {
            return Err(Overflow::Requests);
        }
        let release = |e| {
            self.requests.fetch_sub(1, Ordering::AcqRel);
            Err(e)
        };
        let connection = match &self.connections {
            None => None,
            Some(sem) => match sem.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    if !try_take(&self.pending, Some(self.max_pending)) {
                        return release(Overflow::Pending);
                    }
                    let permit = sem.clone().acquire_owned().await;
                    self.pending.fetch_sub(1, Ordering::AcqRel);
                    Some(permit.expect("the semaphore is never closed"))
                }
            },
        };
        Ok(Admission {
            requests: Some(self.requests.clone()),
            _connection: connection,
        })
    }

    /// Admits a proxied TCP connection: one of `max_connections`, or none.
    /// Envoy's TCP proxy queues nothing: past the limit a connection is closed.
    pub fn admit_connection(&self) -> Result<Admission, Overflow> {
        let connection = match &self.connections {
            None => None,
            Some(sem) => Some(
                sem.clone()
                    .try_acquire_owned()
                    .map_err(|_| Overflow::Connections)?,
            ),
        };
        Ok(Admission {
            requests: None,
            _connection: connection,
        })
    }

    /// A retry may start only while fewer than `max_retries` are in flight.
    pub fn retry(&self) -> Result<RetryPermit, Overflow> {
        if try_take(&self.retries, self.max_retries) {
            Ok(RetryPermit(self.retries.clone()))
        } else {
            Err(Overflow::Retries)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(conns: Option<u32>, pending: Option<u32>, requests: Option<u32>) -> ConnectionPool {
        ConnectionPool {
            max_connections: conns,
            max_pending: pending,
            max_requests: requests,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn connections_then_pending_then_overflow() {
        let b = Arc::new(Breaker::new(&pool(Some(1), Some(1), None)));
        let first = b.admit().await.unwrap();
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.admit().await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        while b.pending.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(b.admit().await.err(), Some(Overflow::Pending));
        drop(first);
        assert_eq!(waiter.await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn requests_and_retries_are_bounded() {
        let b = Breaker::new(&ConnectionPool {
            max_requests: Some(2),
            max_retries: Some(1),
            ..Default::default()
        });
        let (_a, _b) = (b.admit().await.unwrap(), b.admit().await.unwrap());
        assert_eq!(b.admit().await.err(), Some(Overflow::Requests));
        let r = b.retry().unwrap();
        assert_eq!(b.retry().err(), Some(Overflow::Retries));
        drop(r);
        assert!(b.retry().is_ok());
    }

    #[tokio::test]
    async fn unset_limits_admit_everything() {
        let b = Breaker::new(&ConnectionPool::default());
        let held: Vec<_> = futures_admit(&b, 1000).await;
        assert_eq!(held.len(), 1000);
    }

    async fn futures_admit(b: &Breaker, n: usize) -> Vec<Admission> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(b.admit().await.unwrap());
        }
        v
    }
}
