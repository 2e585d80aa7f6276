//! Per-request cost of AuthorizationPolicy evaluation (`waypoint_filters::authz`)
//! with 1, 100 and 1,000 rules, in the shapes Istio users write: an ALLOW policy
//! whose rules each name a principal, a method set and a path, evaluated for a
//! request that the last rule allows (the worst case: every rule is tried), and
//! a DENY policy in front. See benches/README.md.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;
use waypoint_filters::authz::{evaluate, AuthzRequest, Verdict};
use waypoint_ir::{
    AuthzAction, AuthzPolicy, AuthzRule, Field, OperationMatch, PathPattern, ResourceKind,
    ResourceRef, SourceMatch, StrMatch,
};

fn any<T>(v: Vec<T>) -> Field<T> {
    Field {
        any_of: v,
        none_of: Vec::new(),
    }
}

fn rule(i: usize) -> AuthzRule {
    AuthzRule {
        from: vec![SourceMatch {
            principals: any(vec![StrMatch::parse(&format!(
                "cluster.local/ns/team-{i}/sa/client"
            ))]),
            ..Default::default()
        }],
        to: vec![OperationMatch {
            methods: any(vec![StrMatch::parse("GET"), StrMatch::parse("POST")]),
            paths: any(vec![PathPattern::Str(StrMatch::parse(&format!(
                "/api/{i}/*"
            )))]),
            ..Default::default()
        }],
        when: Vec::new(),
    }
}

fn policies(rules: usize) -> Vec<AuthzPolicy> {
    let r = |name: &str| ResourceRef::new(ResourceKind::AuthorizationPolicy, "shop", name);
    vec![
        AuthzPolicy {
            source: r("deny-debug"),
            action: AuthzAction::Deny,
            fail_closed: false,
            dry_run: false,
            rules: vec![AuthzRule {
                to: vec![OperationMatch {
                    paths: any(vec![PathPattern::Str(StrMatch::parse("/debug/*"))]),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        },
        AuthzPolicy {
            source: r("allow-teams"),
            action: AuthzAction::Allow,
            fail_closed: false,
            dry_run: false,
            rules: (0..rules).map(rule).collect(),
        },
    ]
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("authz_evaluate");
    let headers = http::HeaderMap::new();
    for n in [1usize, 100, 1000] {
        let p = policies(n);
        let last = n - 1;
        let principal = format!("cluster.local/ns/team-{last}/sa/client");
        let path = format!("/api/{last}/orders");
        let req = AuthzRequest {
            principal: Some(&principal),
            trust_domain: Some("cluster.local"),
            namespace: Some("team"),
            service_account: Some("client"),
            source_ip: Some("10.1.2.3".parse().unwrap()),
            auth: None,
            host: "orders.shop.svc.cluster.local",
            method: "POST",
            path: &path,
            headers: &headers,
            destination_ip: None,
            destination_port: 8080,
            http: true,
        };
        assert_eq!(evaluate(&p, &req).verdict, Verdict::Allow);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| black_box(evaluate(black_box(&p), black_box(&req))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
