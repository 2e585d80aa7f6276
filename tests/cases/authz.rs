//! AuthorizationPolicy through the real binary over HBONE, with a client
//! identity per caller: Istio's matching, action order, empty policies, path
//! normalisation attacks, and what a denial looks like.

use crate::common::world::PRODUCTPAGE_VIP;
use crate::common::{connect, Certs, WaypointProc, World};
use std::time::{Duration, Instant};
use waypoint::client::Tunnel;

const POLICIES: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: api-readers, namespace: default}
spec:
  targetRefs: [{kind: Service, group: "", name: productpage}]
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/front/sa/web"]}}]
    to: [{operation: {methods: [GET], paths: ["/api/*", "/admin*"]}}]
  - from: [{source: {namespaces: [ops]}}]
    when: [{key: "request.headers[x-ticket]", values: ["OPS-*"]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: default}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: productpage-waypoint}]
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin*"]}}]
"#;

struct Fixture {
    _world: World,
    certs: Certs,
    wp: WaypointProc,
}

async fn fixture(policies: &str, flags: &[&str]) -> Fixture {
    let world = World::productpage().await;
    std::fs::write(world.dir().join("authz.yaml"), policies).unwrap();
    let certs = Certs::new();
    let wp = WaypointProc::start_with(world.dir(), &certs.waypoint_dir, flags).await;
    Fixture {
        _world: world,
        certs,
        wp,
    }
}

impl Fixture {
    /// The status and body of `method path` sent as `ns/sa`, with `headers`.
    async fn call(
        &self,
        (ns, sa): (&str, &str),
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        let client = connect(&self.wp, &self.certs.client_as(ns, sa)).await;
        let mut t = Tunnel::open(&client, PRODUCTPAGE_VIP).await.unwrap();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let r = t
            .send(
                method.parse().unwrap(),
                &format!("http://productpage:9080{path}"),
                &headers,
                bytes::Bytes::new(),
            )
            .await
            .unwrap();
        (r.status.as_u16(), r.text())
    }
}

const WEB: (&str, &str) = ("front", "web");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_rules_match_identity_method_path_and_conditions() {
    let f = fixture(POLICIES, &[]).await;
    assert_eq!(f.call(WEB, "GET", "/api/orders", &[]).await.0, 200);
    let (status, body) = f.call(WEB, "POST", "/api/orders", &[]).await;
    assert_eq!((status, body.as_str()), (403, "RBAC: access denied"));
    assert_eq!(f.call(WEB, "GET", "/other", &[]).await.0, 403);
    assert_eq!(
        f.call(("front", "intruder"), "GET", "/api/orders", &[])
            .await
            .0,
        403
    );
    // The second rule: any identity in `ops`, with a ticket header.
    let ops = ("ops", "oncall");
    assert_eq!(
        f.call(ops, "DELETE", "/x", &[("x-ticket", "OPS-12")])
            .await
            .0,
        200
    );
    assert_eq!(
        f.call(ops, "DELETE", "/x", &[("x-ticket", "DEV-1")])
            .await
            .0,
        403
    );
    assert_eq!(f.call(ops, "DELETE", "/x", &[]).await.0, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_comes_first_and_normalised_paths_cannot_walk_around_it() {
    let f = fixture(POLICIES, &[]).await;
    // The ALLOW policy would let web read /admin; the waypoint-wide DENY wins.
    for path in [
        "/admin",
        "/admin/users",
        "/api/../admin",
        "/api/./../admin/x",
        "/%61dmin",
        "/api/%2e%2e/admin",
        "/api\\..\\admin",
    ] {
        let (status, body) = f.call(WEB, "GET", path, &[]).await;
        assert_eq!(
            (status, body.as_str()),
            (403, "RBAC: access denied"),
            "{path}"
        );
    }
    // Paths are case-sensitive, as in Istio: /ADMIN is not /admin, and the
    // ALLOW policy does not cover it either.
    assert_eq!(f.call(WEB, "GET", "/ADMIN", &[]).await.0, 403);
    // The backend receives the normalised path.
    let (status, body) = f.call(WEB, "GET", "/api/x/../orders", &[]).await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""uri":"/api/orders""#), "{body}");
    // A NUL is refused outright.
    assert_eq!(f.call(WEB, "GET", "/api/%00", &[]).await.0, 400);
    // The denial is counted by policy and its reason is in the access log.
    use crate::cases::telemetry::{scrape, value};
    let metrics = scrape(f.wp.metrics).await;
    let by = |p| value(&metrics, "waypoint_authz_denied_total", &[("policy", p)]);
    assert_eq!(by("default/no-admin"), 7.0);
    assert_eq!(by("none"), 1.0);
    let details = "rbac_access_denied_matched_policy[ns[default]-policy[no-admin]-rule[0]]";
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f.wp.stdout().contains(details) {
        assert!(Instant::now() < deadline, "{}", f.wp.stdout());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_slashes_need_merge_slashes_as_in_istio() {
    let base = fixture(POLICIES, &[]).await;
    // BASE (Istio's default) keeps `//`: the DENY on /admin* does not see
    // //admin, and the ALLOW policy (/api/*, /admin*) does not cover it either.
    assert_eq!(base.call(WEB, "GET", "//api/orders", &[]).await.0, 403);
    let merged = fixture(POLICIES, &["--path-normalization", "MERGE_SLASHES"]).await;
    assert_eq!(merged.call(WEB, "GET", "//api//orders", &[]).await.0, 200);
    assert_eq!(merged.call(WEB, "GET", "//admin", &[]).await.0, 403);
    let decoded = fixture(
        POLICIES,
        &["--path-normalization", "DECODE_AND_MERGE_SLASHES"],
    )
    .await;
    assert_eq!(decoded.call(WEB, "GET", "/api%2Forders", &[]).await.0, 200);
    assert_eq!(
        decoded.call(WEB, "GET", "/api%2F..%2Fadmin", &[]).await.0,
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_empty_policies_behave_as_istio_documents() {
    let allow_nothing = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: default}
spec:
  targetRefs: [{kind: Service, group: "", name: productpage}]
"#;
    let f = fixture(allow_nothing, &[]).await;
    assert_eq!(f.call(WEB, "GET", "/", &[]).await.0, 403);
    let allow_all = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-all, namespace: default}
spec:
  targetRefs: [{kind: Service, group: "", name: productpage}]
  rules: [{}]
"#;
    let f = fixture(allow_all, &[]).await;
    assert_eq!(f.call(WEB, "GET", "/", &[]).await.0, 200);
    let deny_all = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: default}
spec:
  targetRefs: [{kind: Service, group: "", name: productpage}]
  action: DENY
  rules: [{}]
"#;
    let f = fixture(deny_all, &[]).await;
    assert_eq!(f.call(WEB, "GET", "/", &[]).await.0, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_policy_the_waypoint_cannot_enforce_denies_everything() {
    // An attribute the waypoint cannot read: refused loudly, and the DENY it
    // belongs to fails closed rather than matching less.
    let unenforceable = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: odd-deny, namespace: default}
spec:
  targetRefs: [{kind: Service, group: "", name: productpage}]
  action: DENY
  rules:
  - when: [{key: "experimental.envoy.filters.network.mysql_proxy[db.table]", values: [x]}]
"#;
    let f = fixture(unenforceable, &[]).await;
    assert_eq!(f.call(WEB, "GET", "/", &[]).await.0, 403);
    assert!(f.wp.log_contains("odd-deny").await, "{}", f.wp.logs());
}

/// `istio.io/dry-run`: the policy is judged and reported, not enforced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_policy_is_reported_not_enforced() {
    let policies = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: would-deny, namespace: default, annotations: {istio.io/dry-run: "true"}}
spec:
  targetRefs: [{kind: Service, group: "", name: productpage}]
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
"#;
    let f = fixture(policies, &[]).await;
    assert_eq!(f.call(WEB, "GET", "/admin", &[]).await.0, 200);
    assert_eq!(f.call(WEB, "GET", "/other", &[]).await.0, 200);
    use crate::cases::telemetry::{scrape, value};
    let metrics = scrape(f.wp.metrics).await;
    let n = |result| {
        value(
            &metrics,
            "waypoint_authz_dry_run_total",
            &[("action", "deny"), ("result", result)],
        )
    };
    assert_eq!((n("denied"), n("allowed")), (1.0, 1.0));
}
