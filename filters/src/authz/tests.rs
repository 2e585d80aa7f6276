use super::*;
use waypoint_ir::{Cidr, Field, ResourceKind};

fn policy(name: &str, action: AuthzAction, rules: Vec<AuthzRule>) -> AuthzPolicy {
    AuthzPolicy {
        source: ResourceRef::new(ResourceKind::AuthorizationPolicy, "default", name),
        action,
        rules,
        fail_closed: false,
        dry_run: false,
    }
}

fn any<T>(v: Vec<T>) -> Field<T> {
    Field {
        any_of: v,
        none_of: Vec::new(),
    }
}

fn none<T>(v: Vec<T>) -> Field<T> {
    Field {
        any_of: Vec::new(),
        none_of: v,
    }
}

fn s(v: &str) -> StrMatch {
    StrMatch::parse(v)
}

fn from(src: SourceMatch) -> AuthzRule {
    AuthzRule {
        from: vec![src],
        ..AuthzRule::default()
    }
}

fn to(op: OperationMatch) -> AuthzRule {
    AuthzRule {
        to: vec![op],
        ..AuthzRule::default()
    }
}

struct Req {
    headers: http::HeaderMap,
    principal: Option<&'static str>,
    method: &'static str,
    path: &'static str,
    host: &'static str,
    ip: Option<IpAddr>,
    auth: Option<crate::jwt::RequestAuth>,
    http: bool,
}

impl Req {
    fn new() -> Req {
        Req {
            headers: http::HeaderMap::new(),
            principal: Some("cluster.local/ns/front/sa/web"),
            method: "GET",
            path: "/api/orders",
            host: "orders.shop.svc.cluster.local:8080",
            ip: Some("10.1.2.3".parse().unwrap()),
            auth: None,
            http: true,
        }
    }

    fn view(&self) -> AuthzRequest<'_> {
        AuthzRequest {
            principal: self.principal,
            trust_domain: self.principal.map(|p| p.split('/').next().unwrap()),
            namespace: self.principal.map(|p| p.split('/').nth(2).unwrap()),
            service_account: self.principal.map(|p| p.split('/').nth(4).unwrap()),
            source_ip: self.ip,
            auth: self.auth.as_ref(),
            host: self.host,
            method: self.method,
            path: self.path,
            headers: &self.headers,
            destination_ip: Some("10.96.0.5".parse().unwrap()),
            destination_port: 8080,
            http: self.http,
        }
    }
}

fn denied(policies: &[AuthzPolicy], r: &Req) -> bool {
    evaluate(policies, &r.view()).verdict != Verdict::Allow
}

#[test]
fn no_policy_allows_and_allow_policies_allow_only_what_they_match() {
    let r = Req::new();
    assert!(!denied(&[], &r));
    let web_only = from(SourceMatch {
        principals: any(vec![s("cluster.local/ns/front/sa/web")]),
        ..Default::default()
    });
    assert!(!denied(
        &[policy("a", AuthzAction::Allow, vec![web_only.clone()])],
        &r
    ));
    let other = Req {
        principal: Some("cluster.local/ns/front/sa/other"),
        ..Req::new()
    };
    assert!(denied(
        &[policy("a", AuthzAction::Allow, vec![web_only])],
        &other
    ));
}

#[test]
fn the_empty_cases_are_istios() {
    let r = Req::new();
    // ALLOW with no rules: allows nothing. With `rules: [{}]`: everything.
    assert!(denied(&[policy("a", AuthzAction::Allow, vec![])], &r));
    assert!(!denied(
        &[policy("a", AuthzAction::Allow, vec![AuthzRule::default()])],
        &r
    ));
    // DENY with no rules denies nothing; with `rules: [{}]`, everything.
    assert!(!denied(&[policy("d", AuthzAction::Deny, vec![])], &r));
    assert!(denied(
        &[policy("d", AuthzAction::Deny, vec![AuthzRule::default()])],
        &r
    ));
}

#[test]
fn deny_wins_over_allow_and_audit_decides_nothing() {
    let r = Req::new();
    let all = || vec![AuthzRule::default()];
    let policies = [
        policy("allow", AuthzAction::Allow, all()),
        policy("deny", AuthzAction::Deny, all()),
        policy("audit", AuthzAction::Audit, all()),
    ];
    let j = evaluate(&policies, &r.view());
    assert_eq!(
        j.verdict,
        Verdict::DeniedBy {
            policy: &policies[1].source,
            rule: 0
        }
    );
    assert_eq!(j.audited, vec![&policies[2].source]);
    let j = evaluate(&policies[2..], &r.view());
    assert_eq!(j.verdict, Verdict::Allow, "AUDIT alone is not an ALLOW");
}

fn custom(name: &str, provider: &str, rules: Vec<AuthzRule>) -> AuthzPolicy {
    policy(
        name,
        AuthzAction::Custom {
            provider: provider.into(),
        },
        rules,
    )
}

#[test]
fn a_matching_custom_policy_asks_its_provider_before_deny_and_allow() {
    let r = Req::new();
    let admin = to(OperationMatch {
        paths: any(vec![PathPattern::Str(s("/admin*"))]),
        ..Default::default()
    });
    let policies = [
        custom("c", "opa", vec![admin]),
        policy("d", AuthzAction::Deny, vec![AuthzRule::default()]),
    ];
    // The CUSTOM rules match: ask, and the DENY still counts after.
    let j = evaluate(
        &policies,
        &Req {
            path: "/admin/x",
            ..Req::new()
        }
        .view(),
    );
    let ask = j.ask.expect("asks");
    assert_eq!((ask.policy, ask.provider), (&policies[0].source, "opa"));
    assert!(matches!(j.verdict, Verdict::DeniedBy { .. }));
    // They do not: nobody is asked.
    assert_eq!(evaluate(&policies[..1], &r.view()).ask, None);
    assert_eq!(evaluate(&policies[..1], &r.view()).verdict, Verdict::Allow);
}

#[test]
fn two_providers_for_one_request_deny_what_either_matches() {
    let r = Req::new();
    let policies = [
        custom("a", "opa", vec![AuthzRule::default()]),
        custom("b", "other", vec![]),
    ];
    let j = evaluate(&policies, &r.view());
    assert_eq!(j.ask, None);
    assert_eq!(
        j.verdict,
        Verdict::DeniedBy {
            policy: &policies[0].source,
            rule: 0
        }
    );
}

#[test]
fn absent_identities_fail_positive_matches_and_pass_negative_ones() {
    let anonymous = Req {
        principal: None,
        ..Req::new()
    };
    let any_identity = from(SourceMatch {
        principals: any(vec![s("*")]),
        ..Default::default()
    });
    let not_web = from(SourceMatch {
        principals: none(vec![s("cluster.local/ns/front/sa/web")]),
        ..Default::default()
    });
    assert!(denied(
        &[policy("a", AuthzAction::Allow, vec![any_identity.clone()])],
        &anonymous
    ));
    assert!(!denied(
        &[policy("a", AuthzAction::Allow, vec![any_identity])],
        &Req::new()
    ));
    assert!(!denied(
        &[policy("a", AuthzAction::Allow, vec![not_web.clone()])],
        &anonymous
    ));
    assert!(denied(
        &[policy("a", AuthzAction::Allow, vec![not_web])],
        &Req::new()
    ));
}

#[test]
fn service_accounts_and_trust_domains_match_the_peer() {
    let sa = |ns: &str, name: &str| waypoint_ir::ServiceAccount {
        namespace: ns.into(),
        name: name.into(),
    };
    let allow = |src: SourceMatch| [policy("a", AuthzAction::Allow, vec![from(src)])];
    let web = allow(SourceMatch {
        service_accounts: any(vec![sa("front", "web")]),
        ..Default::default()
    });
    assert!(!denied(&web, &Req::new()));
    let other = allow(SourceMatch {
        service_accounts: any(vec![sa("front", "api")]),
        ..Default::default()
    });
    assert!(denied(&other, &Req::new()));
    let td = allow(SourceMatch {
        trust_domains: none(vec![s("cluster.local")]),
        ..Default::default()
    });
    assert!(denied(&td, &Req::new()));
    let anonymous = Req {
        principal: None,
        ..Req::new()
    };
    assert!(denied(&web, &anonymous));
}

#[test]
fn source_fields_and_together_and_values_or() {
    let rule = from(SourceMatch {
        namespaces: any(vec![s("front"), s("back")]),
        ip_blocks: any(vec![Cidr {
            addr: "10.1.0.0".parse().unwrap(),
            prefix: 16,
        }]),
        ..Default::default()
    });
    let p = [policy("a", AuthzAction::Allow, vec![rule])];
    assert!(!denied(&p, &Req::new()));
    let elsewhere = Req {
        ip: Some("192.168.0.1".parse().unwrap()),
        ..Req::new()
    };
    assert!(denied(&p, &elsewhere), "both fields must match");
}

#[test]
fn operations_match_hosts_ports_methods_and_paths() {
    let op = |o: OperationMatch| [policy("a", AuthzAction::Allow, vec![to(o)])];
    let r = Req::new();
    let hosts = op(OperationMatch {
        hosts: any(vec![s("ORDERS.shop.svc.cluster.local")]),
        ..Default::default()
    });
    assert!(!denied(&hosts, &r), "case-insensitive, any port");
    let suffix = op(OperationMatch {
        hosts: any(vec![s("*.svc.cluster.local:8080")]),
        ..Default::default()
    });
    assert!(!denied(&suffix, &r));
    let ports = op(OperationMatch {
        ports: none(vec![8080]),
        ..Default::default()
    });
    assert!(denied(&ports, &r));
    let post = op(OperationMatch {
        methods: any(vec![s("POST")]),
        ..Default::default()
    });
    assert!(denied(&post, &r));
    let api = op(OperationMatch {
        paths: any(vec![PathPattern::Str(s("/api/*"))]),
        ..Default::default()
    });
    assert!(!denied(&api, &r));
    let not_api = op(OperationMatch {
        paths: none(vec![PathPattern::Str(s("/api/*"))]),
        ..Default::default()
    });
    assert!(denied(&not_api, &r));
}

#[test]
fn path_templates_match_whole_segments() {
    use PathSegment::*;
    let lit = |s: &str| Literal(s.to_string());
    let one = [lit("api"), One, lit("orders")];
    assert!(template(&one, "/api/v1/orders"));
    assert!(!template(&one, "/api/v1/v2/orders"));
    assert!(!template(&one, "/api//orders"));
    assert!(!template(&one, "/api/v1/orders/x"));
    let rest = [lit("api"), Rest];
    assert!(template(&rest, "/api/a"));
    assert!(template(&rest, "/api/a/b/c"));
    assert!(template(&rest, "/api/"), "zero segments, as Envoy's `**`");
    assert!(!template(&rest, "/api"));
    assert!(!template(&rest, "/apix/a"));
    let inner = [lit("a"), Rest, lit("b")];
    assert!(template(&inner, "/a/x/y/b"));
    assert!(template(&inner, "/a//b"));
    assert!(!template(&inner, "/a/b"));
    assert!(!template(&inner, "/a/x/b/c"));
    let trailing = [lit("foo"), Rest, lit("")];
    assert!(template(&trailing, "/foo/bar/"));
    assert!(!template(&trailing, "/foo/bar"));
}

#[test]
fn when_conditions_read_headers_and_addresses() {
    let mut r = Req::new();
    r.headers.append("x-team", "a".parse().unwrap());
    r.headers.append("x-team", "b".parse().unwrap());
    let when = |key, values| {
        [policy(
            "a",
            AuthzAction::Allow,
            vec![AuthzRule {
                when: vec![Condition { key, values }],
                ..AuthzRule::default()
            }],
        )]
    };
    let header = |v: &str| {
        when(
            ConditionKey::RequestHeader("x-team".into()),
            any(vec![ConditionValue::Str(s(v))]),
        )
    };
    assert!(
        !denied(&header("a,b"), &r),
        "repeated headers joined with ,"
    );
    assert!(denied(&header("a"), &r));
    let ip = when(
        ConditionKey::SourceIp,
        none(vec![ConditionValue::Ip(Cidr {
            addr: "10.1.2.3".parse().unwrap(),
            prefix: 32,
        })]),
    );
    assert!(denied(&ip, &r));
    let jwt = when(
        ConditionKey::RequestClaim(vec!["groups".into()]),
        any(vec![ConditionValue::Str(s("admin"))]),
    );
    assert!(denied(&jwt, &r), "no token, no claim");
    let port = when(
        ConditionKey::DestinationPort,
        any(vec![ConditionValue::Port(8080)]),
    );
    assert!(!denied(&port, &r));
}

#[test]
fn jwt_attributes_match_principal_audiences_presenter_and_claims() {
    let cond = |key: ConditionKey, v: &str| AuthzRule {
        when: vec![Condition {
            key,
            values: any(vec![ConditionValue::Str(s(v))]),
        }],
        ..AuthzRule::default()
    };
    let allow = |r: AuthzRule| [policy("jwt", AuthzAction::Allow, vec![r])];
    let anonymous = Req::new();
    let signed = Req {
        auth: Some(crate::jwt::RequestAuth::from_payload(
            serde_json::json!({"iss": "idp", "sub": "alice", "aud": "shop", "azp": "web",
                               "groups": ["dev", "ops"], "org": {"team": "core"}}),
            &[],
        )),
        ..Req::new()
    };
    let any_principal = from(SourceMatch {
        request_principals: any(vec![s("*")]),
        ..Default::default()
    });
    assert!(denied(&allow(any_principal.clone()), &anonymous));
    assert!(!denied(&allow(any_principal), &signed));
    for (key, value) in [
        (ConditionKey::RequestPrincipal, "idp/alice"),
        (ConditionKey::RequestAudiences, "shop"),
        (ConditionKey::RequestPresenter, "web"),
        (ConditionKey::RequestClaim(vec!["groups".into()]), "ops"),
        (
            ConditionKey::RequestClaim(vec!["org".into(), "team".into()]),
            "core",
        ),
    ] {
        assert!(
            !denied(&allow(cond(key.clone(), value)), &signed),
            "{key:?}"
        );
        assert!(
            denied(&allow(cond(key.clone(), value)), &anonymous),
            "{key:?}"
        );
        assert!(
            denied(&allow(cond(key.clone(), "other")), &signed),
            "{key:?}"
        );
    }
}

#[test]
fn on_tcp_http_only_rules_never_allow_and_always_deny() {
    let tcp = Req {
        http: false,
        ..Req::new()
    };
    let get = OperationMatch {
        methods: any(vec![s("GET")]),
        ..Default::default()
    };
    let web = SourceMatch {
        principals: any(vec![s("cluster.local/ns/front/sa/web")]),
        ..Default::default()
    };
    // ALLOW web GET: on TCP the method cannot hold, so nothing is allowed...
    let allow = [policy(
        "a",
        AuthzAction::Allow,
        vec![AuthzRule {
            from: vec![web.clone()],
            to: vec![get.clone()],
            when: vec![],
        }],
    )];
    assert!(denied(&allow, &tcp));
    assert!(!denied(&allow, &Req::new()));
    // ...while ALLOW web alone (no HTTP field) still allows the connection.
    assert!(!denied(
        &[policy("a", AuthzAction::Allow, vec![from(web.clone())])],
        &tcp
    ));
    // DENY GET from web: on TCP the method is dropped, so web is denied.
    let deny = [policy(
        "d",
        AuthzAction::Deny,
        vec![AuthzRule {
            from: vec![web],
            to: vec![get],
            when: vec![],
        }],
    )];
    assert!(denied(&deny, &tcp));
    let other = Req {
        principal: Some("cluster.local/ns/front/sa/other"),
        http: false,
        ..Req::new()
    };
    assert!(!denied(&deny, &other), "the rest of the rule still applies");
}

#[test]
fn dry_run_policies_are_judged_but_never_enforced() {
    let r = Req::new();
    let dry = |name: &str, action: AuthzAction, rules: Vec<AuthzRule>| AuthzPolicy {
        dry_run: true,
        ..policy(name, action, rules)
    };
    let policies = [
        dry("deny-all", AuthzAction::Deny, vec![AuthzRule::default()]),
        dry("allow-none", AuthzAction::Allow, vec![]),
    ];
    let j = evaluate(&policies, &r.view());
    assert_eq!(j.verdict, Verdict::Allow, "nothing enforced");
    let shadow: Vec<(&str, bool, Option<&str>)> = j
        .dry_run
        .iter()
        .map(|s| (s.action, s.denied, s.policy.map(|p| p.name.as_str())))
        .collect();
    assert_eq!(
        shadow,
        vec![("deny", true, Some("deny-all")), ("allow", true, None)]
    );
    // Beside enforced policies, a dry-run ALLOW does not turn on ALLOW's
    // default deny.
    let mixed = [
        dry("allow-none", AuthzAction::Allow, vec![]),
        policy("deny-nothing", AuthzAction::Deny, vec![]),
    ];
    assert_eq!(evaluate(&mixed, &r.view()).verdict, Verdict::Allow);
}
