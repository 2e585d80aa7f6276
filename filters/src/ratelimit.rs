//! Local rate limiting: one GCRA token bucket (governor) per rule and client key,
//! shared by every connection and worker thread of the process. A bucket holds
//! `requests` tokens and refills continuously at `requests` per `unit`, so over a
//! window W a key gets at most `requests + rate × W` requests.

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use waypoint_ir::{ClientSelector, RateLimit, ServiceIdx, Snapshot};

/// A rule's buckets, with the rule they enforce.
type Bucket<C> = (RateLimit, Arc<Limiter<C>>);

type Limiter<C> = RateLimiter<String, DashMapStateStore<String>, C, StateInformationMiddleware>;

/// What a 429 tells the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub rule: String,
    pub limit: u32,
    pub window: Duration,
    /// Until the next request would be allowed.
    pub retry_after: Duration,
}

impl Limited {
    /// `x-ratelimit-*` and `retry-after`, as Envoy's local rate limit writes them.
    pub fn headers(&self) -> Vec<(String, String)> {
        let reset = self.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        vec![
            (
                "x-ratelimit-limit".into(),
                format!(
                    "{}, {};w={}",
                    self.limit,
                    self.limit,
                    self.window.as_secs().max(1)
                ),
            ),
            ("x-ratelimit-remaining".into(), "0".into()),
            ("x-ratelimit-reset".into(), reset.to_string()),
            ("retry-after".into(), reset.to_string()),
        ]
    }
}

/// Where a rule lives: (service, route index, rule index).
type RuleKey = (ServiceIdx, usize, usize);

pub struct RateLimiters<C: Clock = DefaultClock> {
    /// Each with the rule it enforces, to tell whether the next generation's
    /// rule of the same name is the same rule.
    limiters: HashMap<RuleKey, Bucket<C>>,
    clock: C,
}

impl RateLimiters<DefaultClock> {
    pub fn build(snapshot: &Snapshot) -> Self {
        Self::with_clock(snapshot, DefaultClock::default(), None)
    }

    /// As `build`, keeping the buckets of `previous`'s rules that are still
    /// there unchanged (see `with_clock`).
    pub fn next(snapshot: &Snapshot, previous: (&Snapshot, &Self)) -> Self {
        // The kept buckets hold this clock: the new ones must read the same.
        Self::with_clock(snapshot, previous.1.clock.clone(), Some(previous))
    }
}

fn quota(rule: &RateLimit) -> Quota {
    let requests = NonZeroU32::new(rule.requests.max(1)).expect("max(1)");
    let period = rule.unit / requests.get();
    Quota::with_period(period.max(Duration::from_nanos(1)))
        .expect("non-zero period")
        .allow_burst(requests)
}

impl<C: Clock + Clone> RateLimiters<C> {
    /// The buckets of `snapshot`'s rules. A rule that `previous` had too
    /// (same service host, route name, position and limits) keeps its bucket:
    /// a new config generation, which the Kubernetes source makes whenever a
    /// pod comes or goes, must not hand every client a full bucket again.
    pub fn with_clock(snapshot: &Snapshot, clock: C, previous: Option<(&Snapshot, &Self)>) -> Self {
        let kept: HashMap<(&str, &str, usize), &Bucket<C>> = previous
            .map(|(snap, rl)| {
                rl.limiters
                    .iter()
                    .map(|(&(s, r, i), l)| {
                        let svc = snap.service(s);
                        ((svc.hostname.as_str(), svc.routes[r].name.as_str(), i), l)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut limiters = HashMap::new();
        for (s, svc) in snapshot.services.iter().enumerate() {
            for (r, route) in svc.routes.iter().enumerate() {
                for (i, rule) in route.policy.rate_limits.iter().enumerate() {
                    let limiter = match kept.get(&(svc.hostname.as_str(), route.name.as_str(), i)) {
                        Some((was, l)) if was == rule => l.clone(),
                        _ => Arc::new(Limiter::<C>::new(
                            quota(rule),
                            DashMapStateStore::default(),
                            clock.clone(),
                        )),
                    };
                    limiters.insert((ServiceIdx(s), r, i), (rule.clone(), limiter));
                }
            }
        }
        RateLimiters { limiters, clock }
    }

    /// Checks every rule of route `route` of `service` that applies to the request;
    /// the first one out of tokens answers.
    pub fn check(
        &self,
        service: ServiceIdx,
        route: usize,
        rules: &[RateLimit],
        headers: &http::HeaderMap,
        client: Option<IpAddr>,
    ) -> Result<(), Limited> {
        for (i, rule) in rules.iter().enumerate() {
            let Some(key) = client_key(&rule.selectors, headers, client) else {
                continue;
            };
            let Some((_, limiter)) = self.limiters.get(&(service, route, i)) else {
                continue;
            };
            if let Err(not_until) = limiter.check_key(&key) {
                return Err(Limited {
                    rule: rule.name.clone(),
                    limit: rule.requests,
                    window: rule.unit,
                    retry_after: not_until.wait_time_from(self.clock.now()),
                });
            }
        }
        Ok(())
    }
}

/// The bucket a request counts against, or `None` when the rule does not select it.
fn client_key(
    selectors: &[ClientSelector],
    headers: &http::HeaderMap,
    client: Option<IpAddr>,
) -> Option<String> {
    let mut key = String::new();
    for s in selectors {
        match s {
            ClientSelector::HeaderExact { name, value } => {
                if headers.get(name.as_str())?.as_bytes() != value.as_bytes() {
                    return None;
                }
            }
            ClientSelector::HeaderDistinct { name } => {
                let v = headers.get(name.as_str())?;
                key.push_str(&String::from_utf8_lossy(v.as_bytes()));
                key.push('\u{0}');
            }
            ClientSelector::SourceCidr {
                addr,
                prefix,
                distinct,
            } => {
                let ip = client?;
                if !in_cidr(ip, *addr, *prefix) {
                    return None;
                }
                if *distinct {
                    key.push_str(&ip.to_string());
                    key.push('\u{0}');
                }
            }
        }
    }
    Some(key)
}

fn in_cidr(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
