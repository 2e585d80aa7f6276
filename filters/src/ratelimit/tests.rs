use super::*;
use crate::testing::{route, SnapshotBuilder};
use governor::clock::FakeRelativeClock;
use waypoint_ir::{RouteAction, Snapshot};

fn snapshot(rules: Vec<RateLimit>) -> Snapshot {
    let mut b = SnapshotBuilder::new();
    let svc = b.service("ratings", "10.0.0.1".parse().unwrap(), 80);
    let mut r = route("limited", vec![], RouteAction::Forward(vec![]));
    r.policy.rate_limits = rules;
    b.route(svc, r);
    b.build()
}

fn rule(requests: u32, unit: Duration, selectors: Vec<ClientSelector>) -> RateLimit {
    RateLimit {
        name: "rule".into(),
        requests,
        unit,
        selectors,
    }
}

fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                http::HeaderName::from_static(k),
                http::HeaderValue::from_static(v),
            )
        })
        .collect()
}

#[test]
fn a_burst_gets_exactly_the_bucket_then_429s() {
    let rules = vec![rule(20, Duration::from_secs(60), vec![])];
    let s = snapshot(rules.clone());
    let clock = FakeRelativeClock::default();
    let rl = RateLimiters::with_clock(&s, clock.clone(), None);
    let h = headers(&[]);
    let ok = (0..50)
        .filter(|_| rl.check(ServiceIdx(0), 0, &rules, &h, None).is_ok())
        .count();
    assert_eq!(ok, 20);
    let err = rl.check(ServiceIdx(0), 0, &rules, &h, None).unwrap_err();
    assert_eq!(err.retry_after, Duration::from_secs(3), "one token per 3 s");
    let hdrs = err.headers();
    assert!(
        hdrs.contains(&("retry-after".into(), "3".into())),
        "{hdrs:?}"
    );
    clock.advance(Duration::from_secs(3));
    assert!(rl.check(ServiceIdx(0), 0, &rules, &h, None).is_ok());
}

#[test]
fn over_ten_seconds_the_rate_holds_within_one_percent_plus_burst() {
    let rules = vec![rule(100, Duration::from_secs(1), vec![])];
    let s = snapshot(rules.clone());
    let clock = FakeRelativeClock::default();
    let rl = RateLimiters::with_clock(&s, clock.clone(), None);
    let h = headers(&[]);
    let mut ok = 0u32;
    // 1,000 attempts per second for 10 s, far above the limit.
    for _ in 0..10_000 {
        if rl.check(ServiceIdx(0), 0, &rules, &h, None).is_ok() {
            ok += 1;
        }
        clock.advance(Duration::from_millis(1));
    }
    let expected = 100 + 100 * 10; // burst + rate × window
    assert!(
        ok.abs_diff(expected) <= expected / 100,
        "{ok} allowed, expected ~{expected}"
    );
}

#[test]
fn selectors_pick_requests_and_split_buckets() {
    let rules = vec![rule(
        2,
        Duration::from_secs(3600),
        vec![
            ClientSelector::HeaderDistinct {
                name: "x-user".into(),
            },
            ClientSelector::SourceCidr {
                addr: "10.0.0.0".parse().unwrap(),
                prefix: 8,
                distinct: false,
            },
        ],
    )];
    let s = snapshot(rules.clone());
    let rl = RateLimiters::with_clock(&s, FakeRelativeClock::default(), None);
    let inside = Some("10.1.2.3".parse().unwrap());
    let outside = Some("192.168.0.1".parse().unwrap());
    let alice = headers(&[("x-user", "alice")]);
    let bob = headers(&[("x-user", "bob")]);
    let check = |h: &http::HeaderMap, ip| rl.check(ServiceIdx(0), 0, &rules, h, ip).is_ok();
    assert!(check(&alice, inside) && check(&alice, inside));
    assert!(!check(&alice, inside), "alice's bucket is empty");
    assert!(check(&bob, inside), "bob has his own bucket");
    assert!(
        check(&alice, outside),
        "outside the CIDR the rule does not apply"
    );
    assert!(
        check(&headers(&[]), inside),
        "no x-user header: not selected"
    );
}

#[test]
fn cidr_containment() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(in_cidr(ip("10.1.2.3"), ip("10.0.0.0"), 8));
    assert!(!in_cidr(ip("11.1.2.3"), ip("10.0.0.0"), 8));
    assert!(in_cidr(ip("1.2.3.4"), ip("0.0.0.0"), 0));
    assert!(in_cidr(ip("fd00::1"), ip("fd00::"), 16));
    assert!(!in_cidr(ip("10.0.0.1"), ip("fd00::"), 0));
}

#[test]
fn a_new_generation_keeps_the_buckets_of_unchanged_rules_only() {
    let rules = vec![rule(2, Duration::from_secs(3600), vec![])];
    let s = snapshot(rules.clone());
    let clock = FakeRelativeClock::default();
    let rl = RateLimiters::with_clock(&s, clock.clone(), None);
    let h = headers(&[]);
    let check = |rl: &RateLimiters<_>, rules: &[RateLimit]| {
        rl.check(ServiceIdx(0), 0, rules, &h, None).is_ok()
    };
    assert!(check(&rl, &rules) && check(&rl, &rules) && !check(&rl, &rules));
    let same = snapshot(rules.clone());
    let next = RateLimiters::with_clock(&same, clock.clone(), Some((&s, &rl)));
    assert!(
        !check(&next, &rules),
        "the same rule keeps its empty bucket"
    );
    let raised = vec![rule(3, Duration::from_secs(3600), vec![])];
    let changed = snapshot(raised.clone());
    let after = RateLimiters::with_clock(&changed, clock, Some((&same, &next)));
    assert!(check(&after, &raised), "a changed rule starts full");
}
