//! Outlier detection (Istio `outlierDetection`, Envoy's consecutive 5xx and
//! gateway-failure detectors): an endpoint that fails too many times in a row is
//! left out of balancing for `baseEjectionTime × times ejected` (at most 300 s,
//! Envoy's `max_ejection_time`), never more than `maxEjectionPercent` of the
//! cluster (but always at least one), and not at all while fewer than
//! `minHealthPercent` of endpoints are healthy.
//!
//! Failures the proxy sees itself (connect failure, reset, timeout) count as both
//! a 5xx and a gateway error, as Envoy counts them without
//! `split_external_local_origin_errors`.

use std::sync::Mutex;
use std::time::{Duration, Instant};
use waypoint_ir::OutlierDetection;

const MAX_EJECTION: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryResult {
    Status(u16),
    LocalFailure,
    /// A TCP connection was established: a success, as for Envoy's TCP proxy.
    Connected,
}

#[derive(Default, Clone)]
struct Host {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    ejected_until: Option<Instant>,
    times_ejected: u32,
}

/// The endpoints balancing may pick from, at one moment.
pub enum Usable {
    All,
    Only(Vec<bool>),
}

impl Usable {
    pub fn allows(&self, slot: usize) -> bool {
        match self {
            Usable::All => true,
            Usable::Only(ok) => ok.get(slot).copied().unwrap_or(false),
        }
    }
}

pub struct Outlier {
    config: Option<OutlierDetection>,
    hosts: Mutex<Vec<Host>>,
}

impl Outlier {
    pub fn new(config: Option<OutlierDetection>, n: usize) -> Self {
        Outlier {
            config,
            hosts: Mutex::new(vec![Host::default(); n]),
        }
    }

    /// Takes over the state of `old`'s hosts: slot `i` here was `was[i]` there
    /// (the same address), so an ejection outlives a change of endpoints.
    pub fn carry(&self, old: &Outlier, was: &[Option<usize>]) {
        let old = old.hosts.lock().expect("outlier lock");
        let mut hosts = self.hosts.lock().expect("outlier lock");
        for (h, i) in hosts.iter_mut().zip(was) {
            if let Some(o) = i.and_then(|i| old.get(i)) {
                *h = o.clone();
            }
        }
    }

    /// Which slots may be picked now. Expired ejections end here. Without outlier
    /// detection this takes no lock and allocates nothing: the per-request case.
    pub fn usable(&self) -> Usable {
        let Some(cfg) = &self.config else {
            return Usable::All;
        };
        let now = Instant::now();
        let mut hosts = self.hosts.lock().expect("outlier lock");
        let mut ok: Vec<bool> = Vec::with_capacity(hosts.len());
        for h in hosts.iter_mut() {
            if h.ejected_until.is_some_and(|t| t <= now) {
                h.ejected_until = None;
            }
            ok.push(h.ejected_until.is_none());
        }
        let healthy = ok.iter().filter(|&&b| b).count();
        // Panic mode: too few healthy endpoints, so balance across all of them.
        if healthy == 0 || healthy * 100 < hosts.len() * cfg.min_health_percent as usize {
            return Usable::All;
        }
        Usable::Only(ok)
    }

    /// Records how a try on `slot` ended; returns the ejection time if this
    /// ejected it.
    pub fn report(&self, slot: usize, result: TryResult) -> Option<Duration> {
        let cfg = self.config.as_ref()?;
        let mut hosts = self.hosts.lock().expect("outlier lock");
        let n = hosts.len();
        let ejected = hosts.iter().filter(|h| h.ejected_until.is_some()).count();
        let h = hosts.get_mut(slot)?;
        let (five, gateway) = match result {
            TryResult::Status(s) if s >= 500 => (true, matches!(s, 502..=504)),
            TryResult::Status(_) | TryResult::Connected => (false, false),
            TryResult::LocalFailure => (true, true),
        };
        h.consecutive_5xx = if five { h.consecutive_5xx + 1 } else { 0 };
        h.consecutive_gateway = if gateway {
            h.consecutive_gateway + 1
        } else {
            0
        };
        let tripped = cfg.consecutive_5xx.is_some_and(|t| h.consecutive_5xx >= t)
            || cfg
                .consecutive_gateway
                .is_some_and(|t| h.consecutive_gateway >= t);
        let room = ejected == 0 || (ejected + 1) * 100 <= n * cfg.max_ejection_percent as usize;
        if !tripped || h.ejected_until.is_some() || !room {
            return None;
        }
        h.times_ejected += 1;
        let duration =
            (cfg.base_ejection * h.times_ejected).min(MAX_EJECTION.max(cfg.base_ejection));
        h.ejected_until = Some(Instant::now() + duration);
        h.consecutive_5xx = 0;
        h.consecutive_gateway = 0;
        Some(duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(five: Option<u32>, gw: Option<u32>, max_pct: u32, min_health: u32) -> OutlierDetection {
        OutlierDetection {
            consecutive_5xx: five,
            consecutive_gateway: gw,
            interval: Duration::from_secs(1),
            base_ejection: Duration::from_millis(50),
            max_ejection_percent: max_pct,
            min_health_percent: min_health,
        }
    }

    #[test]
    fn consecutive_failures_eject_and_a_success_resets() {
        let o = Outlier::new(Some(cfg(Some(3), None, 100, 0)), 2);
        assert_eq!(o.report(0, TryResult::Status(500)), None);
        assert_eq!(
            o.report(0, TryResult::Status(200)),
            None,
            "a success resets the count"
        );
        o.report(0, TryResult::Status(500));
        o.report(0, TryResult::LocalFailure);
        assert_eq!(
            o.report(0, TryResult::Status(503)),
            Some(Duration::from_millis(50))
        );
        assert!(!o.usable().allows(0) && o.usable().allows(1));
        std::thread::sleep(Duration::from_millis(60));
        assert!(o.usable().allows(0), "back after the ejection time");
        for _ in 0..3 {
            o.report(0, TryResult::Status(500));
        }
        assert!(!o.usable().allows(0));
        // The second ejection lasts twice as long.
        std::thread::sleep(Duration::from_millis(60));
        assert!(!o.usable().allows(0));
    }

    #[test]
    fn gateway_detector_ignores_plain_500s() {
        let o = Outlier::new(Some(cfg(None, Some(2), 100, 0)), 1 + 1);
        o.report(0, TryResult::Status(500));
        o.report(0, TryResult::Status(500));
        assert!(o.usable().allows(0));
        o.report(0, TryResult::Status(502));
        assert!(o.report(0, TryResult::Status(504)).is_some());
    }

    #[test]
    fn ejection_is_capped_but_one_host_always_can_go() {
        let o = Outlier::new(Some(cfg(Some(1), None, 10, 0)), 4);
        assert!(
            o.report(0, TryResult::Status(500)).is_some(),
            "at least one, despite 10%"
        );
        assert!(
            o.report(1, TryResult::Status(500)).is_none(),
            "10% of 4 is less than two"
        );
        let o = Outlier::new(Some(cfg(Some(1), None, 100, 0)), 2);
        o.report(0, TryResult::Status(500));
        o.report(1, TryResult::Status(500));
        let usable = o.usable();
        assert!(
            usable.allows(0) && usable.allows(1),
            "all ejected: balance across all (panic)"
        );
        let o = Outlier::new(Some(cfg(Some(1), None, 100, 60)), 2);
        o.report(0, TryResult::Status(500));
        assert!(
            o.usable().allows(0),
            "50% healthy is below minHealthPercent 60: no ejection"
        );
    }
}
