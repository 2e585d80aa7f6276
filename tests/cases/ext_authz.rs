//! AuthorizationPolicy `CUSTOM` through the real binary: real authorizers on
//! Envoy's gRPC and HTTP ext_authz protocols (`common::ext_authz`), named by
//! the mesh config's `extensionProviders` in ConfigMap `istio-system/istio`
//! in the config directory, asked for what the policy's rules match.

use crate::common::ext_authz::{
    denied_body, GrpcAuthz, GrpcRule, HttpAuthz, HttpRule, DECISION_HEADER, EXTRA_DENY_HEADER,
    REMOVE_HEADER, RESPONSE_HEADER, RESULT_HEADER,
};
use crate::common::world::PRODUCTPAGE_VIP;
use crate::common::{connect, Certs, WaypointProc, World};
use std::time::Duration;
use waypoint::client::{Reply, Tunnel};

/// The authorizer's Service and Pod (outside the mesh: plaintext).
fn authorizer(grpc_port: u16, http_port: u16) -> String {
    format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: ext-authz, namespace: authz}}
spec:
  clusterIP: 10.96.0.90
  ports: [{{name: grpc, port: 9000, targetPort: grpc}}, {{name: http, port: 8000, targetPort: http}}]
  selector: {{app: ext-authz}}
---
apiVersion: v1
kind: Pod
metadata: {{name: ext-authz, namespace: authz, labels: {{app: ext-authz}}}}
spec: {{containers: [{{name: app, ports: [{{name: grpc, containerPort: {grpc_port}}}, {{name: http, containerPort: {http_port}}}]}}]}}
status: {{podIP: 127.0.0.1}}
"#
    )
}

/// ConfigMap `istio` with these providers (YAML list items, indented by 4).
fn mesh(providers: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\ndata:\n  mesh: |-\n    extensionProviders:\n{providers}"
    )
}

/// A CUSTOM policy on productpage asking `provider` about `/api/*`.
fn policy(provider: &str) -> String {
    format!(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ext, namespace: default}}
spec:
  targetRefs: [{{kind: Service, group: "", name: productpage}}]
  action: CUSTOM
  provider: {{name: {provider}}}
  rules: [{{to: [{{operation: {{paths: ["/api/*"]}}}}]}}]
"#
    )
}

const GRPC: &str = "    - name: grpc\n      envoyExtAuthzGrpc: {service: ext-authz.authz.svc.cluster.local, port: 9000, timeout: 1s}\n";
const HTTP: &str = "    - name: http\n      envoyExtAuthzHttp:\n        service: ext-authz.authz.svc.cluster.local\n        port: 8000\n        pathPrefix: /check\n        includeRequestHeadersInCheck: [x-ext-authz]\n        includeAdditionalHeadersInCheck: {x-from: waypoint}\n        headersToUpstreamOnAllow: [x-ext-authz-check-result]\n        headersToDownstreamOnAllow: [x-ext-authz-response]\n        headersToDownstreamOnDeny: [\"x-extra-*\"]\n";

struct Fixture {
    _world: World,
    certs: Certs,
    wp: WaypointProc,
    /// `None` once stopped.
    grpc: Option<GrpcAuthz>,
    http: HttpAuthz,
}

async fn fixture(providers: &str, provider: &str) -> Fixture {
    let world = World::productpage().await;
    let grpc = GrpcAuthz::start().await;
    let http = HttpAuthz::start().await;
    let docs = [
        authorizer(grpc.addr.port(), http.addr.port()),
        mesh(providers),
        policy(provider),
    ];
    std::fs::write(world.dir().join("ext_authz.yaml"), docs.join("---\n")).unwrap();
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    Fixture {
        _world: world,
        certs,
        wp,
        grpc: Some(grpc),
        http,
    }
}

impl Fixture {
    fn grpc(&self) -> &GrpcAuthz {
        self.grpc.as_ref().expect("running")
    }

    /// `method path` with `headers` and `body`, as `front/web`.
    async fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let client = connect(&self.wp, &self.certs.client_as("front", "web")).await;
        let mut t = Tunnel::open(&client, PRODUCTPAGE_VIP).await.unwrap();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        t.send(
            method.parse().unwrap(),
            &format!("http://productpage:9080{path}"),
            &headers,
            bytes::Bytes::from(body.to_string()),
        )
        .await
        .unwrap()
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.call("GET", path, headers, "").await
    }
}

/// The request headers the backend saw (the echo pod's answer).
fn upstream_header(r: &Reply, name: &str) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    doc["headers"][name].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_authorizer_decides_what_the_rules_match() {
    let f = fixture(GRPC, "grpc").await;
    let r = f.get("/api/orders?x=1", &[(REMOVE_HEADER, "1")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        upstream_header(&r, RESULT_HEADER).as_deref(),
        Some("allowed")
    );
    assert_eq!(upstream_header(&r, REMOVE_HEADER), None, "removed on allow");
    assert_eq!(r.header(RESPONSE_HEADER), Some("ok"));

    let r = f.get("/api/orders", &[(DECISION_HEADER, "deny")]).await;
    assert_eq!(
        (r.status.as_u16(), r.text()),
        (403, denied_body("/api/orders"))
    );
    assert_eq!(r.header(RESULT_HEADER), Some("denied"));

    // What the authorizer was told: Envoy's attributes, with the caller's identity.
    let asked = f.grpc().requests();
    assert_eq!(asked.len(), 2);
    let attrs = asked[0].attributes.as_ref().unwrap();
    assert_eq!(
        attrs.source.as_ref().unwrap().principal,
        "spiffe://cluster.local/ns/front/sa/web"
    );
    let http = attrs.request.as_ref().unwrap().http.as_ref().unwrap();
    assert_eq!(
        (http.method.as_str(), http.path.as_str()),
        ("GET", "/api/orders?x=1")
    );
    assert_eq!(
        http.headers.get(":path").map(String::as_str),
        Some("/api/orders?x=1")
    );
    assert!(http.headers.contains_key(REMOVE_HEADER));
    assert!(!http.id.is_empty(), "x-request-id");

    // Outside the policy's rules nobody is asked, whatever the request says.
    let r = f.get("/other", &[(DECISION_HEADER, "deny")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(f.grpc().calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_authorizer_gets_the_head_and_passes_only_the_named_headers() {
    let f = fixture(HTTP, "http").await;
    let r = f
        .get(
            "/api/orders?x=1",
            &[
                (DECISION_HEADER, "allow"),
                ("authorization", "Bearer t"),
                ("x-other", "no"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        upstream_header(&r, RESULT_HEADER).as_deref(),
        Some("allowed")
    );
    assert_eq!(r.header(RESPONSE_HEADER), Some("ok"));
    let asked = &f.http.requests()[0];
    assert_eq!(
        (asked.method.as_str(), asked.path.as_str()),
        ("GET", "/check/api/orders?x=1")
    );
    let h = &asked.headers;
    assert_eq!(h.get(DECISION_HEADER).unwrap(), "allow");
    assert_eq!(h.get("authorization").unwrap(), "Bearer t", "always sent");
    assert_eq!(h.get("x-from").unwrap(), "waypoint");
    assert_eq!(h.get("content-length").unwrap(), "0");
    assert!(
        h.get("x-other").is_none(),
        "not in includeRequestHeadersInCheck"
    );

    let r = f.get("/api/orders", &[(DECISION_HEADER, "deny")]).await;
    // The authorizer wrote the body about the path it was asked.
    assert_eq!(
        (r.status.as_u16(), r.text()),
        (403, denied_body("/check/api/orders"))
    );
    assert_eq!(r.header(EXTRA_DENY_HEADER), Some("yes"));
    assert_eq!(
        r.header(RESULT_HEADER),
        None,
        "not in headersToDownstreamOnDeny"
    );

    // Any status but 200 and 5xx is the authorizer's answer to the client.
    f.http
        .set_rule(HttpRule::Status(http::StatusCode::UNAUTHORIZED));
    assert_eq!(f.get("/api/orders", &[]).await.status, 401);
    // A 5xx is a failed check: refused, as the provider does not fail open.
    f.http
        .set_rule(HttpRule::Status(http::StatusCode::INTERNAL_SERVER_ERROR));
    let r = f.get("/api/orders", &[]).await;
    assert_eq!((r.status.as_u16(), r.text()), (403, String::new()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_check_refuses_unless_the_provider_fails_open() {
    let providers = "    - name: closed\n      envoyExtAuthzGrpc: {service: ext-authz.authz.svc.cluster.local, port: 9000, timeout: 0.2s, statusOnError: \"503\"}\n";
    let mut f = fixture(providers, "closed").await;
    f.grpc().set_rule(GrpcRule::Delay(Duration::from_secs(3)));
    assert_eq!(f.get("/api/x", &[]).await.status, 503, "timed out");
    f.grpc().set_rule(GrpcRule::Unavailable);
    assert_eq!(f.get("/api/x", &[]).await.status, 503, "gRPC error");
    f.grpc = None;
    assert_eq!(f.get("/api/x", &[]).await.status, 503, "gone");
    // Counted as Envoy's ext_authz stats are, and logged with Envoy's flag.
    use crate::cases::telemetry::{scrape, value};
    let metrics = scrape(f.wp.metrics).await;
    let n = |result| {
        value(
            &metrics,
            "waypoint_ext_authz_total",
            &[("provider", "closed"), ("result", result)],
        )
    };
    assert_eq!(n("error"), 3.0);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !(f.wp.stdout().contains("\"UAEX\"") && f.wp.stdout().contains("ext_authz_error")) {
        assert!(std::time::Instant::now() < deadline, "{}", f.wp.stdout());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let providers = "    - name: open\n      envoyExtAuthzGrpc: {service: ext-authz.authz.svc.cluster.local, port: 9000, timeout: 0.2s, failOpen: true}\n";
    let f = fixture(providers, "open").await;
    f.grpc().set_rule(GrpcRule::Delay(Duration::from_secs(3)));
    assert_eq!(f.get("/api/x", &[]).await.status, 200, "timed out, open");
    f.grpc().set_rule(GrpcRule::HeaderDecides);
    // Failing open is for failures only: a denial still denies.
    assert_eq!(
        f.get("/api/x", &[(DECISION_HEADER, "deny")]).await.status,
        403
    );
    let metrics = scrape(f.wp.metrics).await;
    let n = |result| {
        value(
            &metrics,
            "waypoint_ext_authz_total",
            &[("provider", "open"), ("result", result)],
        )
    };
    assert_eq!((n("failure_mode_allowed"), n("denied")), (1.0, 1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_goes_to_the_authorizer_and_on_to_the_backend() {
    let providers = "    - name: body\n      envoyExtAuthzHttp:\n        service: ext-authz.authz.svc.cluster.local\n        port: 8000\n        includeRequestBodyInCheck: {maxRequestBytes: 32}\n    - name: partial\n      envoyExtAuthzGrpc:\n        service: ext-authz.authz.svc.cluster.local\n        port: 9000\n        includeRequestBodyInCheck: {maxRequestBytes: 8, allowPartialMessage: true}\n";
    let f = fixture(providers, "body").await;
    f.http.set_rule(HttpRule::BodyContains("let me in".into()));
    let r = f.call("POST", "/api/orders", &[], "please let me in").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let doc: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(
        doc["body_bytes"], 16,
        "the backend gets the body the check read"
    );
    assert_eq!(f.http.requests()[0].body, "please let me in");
    assert_eq!(f.call("POST", "/api/orders", &[], "no").await.status, 403);
    // Longer than maxRequestBytes, and not to be cut: Envoy's 413.
    let long = "let me in".repeat(10);
    assert_eq!(f.call("POST", "/api/orders", &[], &long).await.status, 413);

    let f = fixture(providers, "partial").await;
    let r = f.call("POST", "/api/orders", &[], "0123456789abcdef").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let doc: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(doc["body_bytes"], 16, "cut for the check only");
    let asked = f.grpc().requests();
    let http = asked[0]
        .attributes
        .as_ref()
        .unwrap()
        .request
        .as_ref()
        .unwrap()
        .http
        .clone()
        .unwrap();
    assert_eq!(http.body, "01234567");
    assert_eq!(
        http.headers
            .get("x-envoy-auth-partial-body")
            .map(String::as_str),
        Some("true")
    );
}

/// A CUSTOM policy on a TCP service: the gRPC provider is asked about the
/// connection (Envoy's network ext_authz); an HTTP provider cannot judge TCP
/// and istiod leaves it out, so its policy does not apply to connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_ask_a_grpc_authorizer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let grpc = GrpcAuthz::start().await;
    let http = HttpAuthz::start().await;
    grpc.set_rule(GrpcRule::AllowPrincipal(
        "spiffe://cluster.local/ns/front/sa/web".into(),
    ));
    let on = |service: &str, provider: &str| {
        policy(provider)
            .replace("name: ext,", &format!("name: ext-{service},"))
            .replace("name: productpage}", &format!("name: {service}}}"))
            .replace(
                r#"rules: [{to: [{operation: {paths: ["/api/*"]}}]}]"#,
                "rules: [{}]",
            )
    };
    let extra = [
        authorizer(grpc.addr.port(), http.addr.port()),
        mesh(&format!("{GRPC}{HTTP}")),
        on("echo-tcp", "grpc"),
        on("mysql", "http"),
    ]
    .join("---\n");
    let f = super::protocols::fixture_with(&extra, &[]).await;
    let talk = |bundle: waypoint::identity::CertBundle, to: &'static str| {
        let wp = &f.wp;
        async move {
            let client = connect(wp, &bundle).await;
            let mut t = client.open(to).await.unwrap();
            let _ = t.write_all(b"hello").await;
            let _ = t.shutdown().await;
            let mut back = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), t.read_to_end(&mut back)).await;
            back
        }
    };
    let web = f._certs.client_as("front", "web");
    assert_eq!(talk(web, "10.96.1.3:7000").await, b"hello");
    assert_eq!(
        talk(f._certs.client(), "10.96.1.3:7000").await,
        b"",
        "refused: closed"
    );
    assert_eq!(grpc.calls(), 2);
    let attrs = grpc.requests()[0].attributes.clone().unwrap();
    assert!(
        attrs.request.and_then(|r| r.http).is_none(),
        "a connection has no HTTP request"
    );
    let to = attrs.destination.unwrap().address.unwrap();
    assert!(format!("{to:?}").contains("10.96.1.3"), "{to:?}");
    // The HTTP provider's policy does not judge TCP.
    let greeting = talk(f._certs.client(), "10.96.1.5:3306").await;
    assert!(greeting.starts_with(b"mysql says hello"), "{greeting:?}");
    assert_eq!(http.calls(), 0);
}

/// An authorizer in the mesh is asked over HBONE, through its node (Envoy as
/// the destination ztunnel), and its checks share one pooled connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorizer_in_the_mesh_is_asked_over_hbone() {
    use super::envoy_peer::destination_signed_by;
    let world = World::productpage().await;
    let certs = Certs::new();
    let grpc = GrpcAuthz::start().await;
    let (node, node_port, _dir) =
        destination_signed_by(&certs.ca, "127.0.0.83", "ext-authz", grpc.addr.port()).await;
    let docs = [
        r#"
apiVersion: v1
kind: Service
metadata: {name: ext-authz, namespace: default}
spec:
  clusterIP: 10.96.0.90
  ports: [{name: grpc, port: 9000}]
  selector: {app: ext-authz}
---
apiVersion: v1
kind: Pod
metadata: {name: ext-authz-1, namespace: default, labels: {app: ext-authz, istio.io/dataplane-mode: ambient}}
spec: {serviceAccountName: ext-authz}
status: {podIP: 127.0.0.83}
"#
        .to_string(),
        mesh("    - name: grpc\n      envoyExtAuthzGrpc: {service: ext-authz.default.svc.cluster.local, port: 9000}\n"),
        policy("grpc"),
    ];
    std::fs::write(world.dir().join("ext_authz.yaml"), docs.join("---\n")).unwrap();
    let wp = WaypointProc::start_with(
        world.dir(),
        &certs.waypoint_dir,
        &["--hbone-upstream-port", &node_port.to_string()],
    )
    .await;
    let connections = format!("listener.127.0.0.83_{node_port}.downstream_cx_total");
    let before = node.stat(&connections).await;
    let client = connect(&wp, &certs.client_as("front", "web")).await;
    let mut t = Tunnel::open(&client, PRODUCTPAGE_VIP).await.unwrap();
    for _ in 0..3 {
        let r = t.get("http://productpage:9080/api/x", &[]).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let deny = vec![(DECISION_HEADER.to_string(), "deny".to_string())];
    let r = t.get("http://productpage:9080/api/x", &deny).await.unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(grpc.calls(), 4);
    assert_eq!(
        node.stat(&connections).await - before,
        1,
        "one pooled mTLS connection"
    );
}
