//! RequestAuthentication through the real binary over HBONE, with tokens
//! signed here: RS256 keys served by a JWKS server on loopback, ES256 keys
//! inline; Envoy's answers to bad tokens; what the backend sees; claims in
//! AuthorizationPolicy; and key rotation picked up by the refresh.

use crate::common::jwks::{jwks, now, JwksServer, SigningKey};
use crate::common::world::PRODUCTPAGE_VIP;
use crate::common::{connect, Certs, WaypointProc, World};
use serde_json::json;
use std::time::{Duration, Instant};
use waypoint::client::Tunnel;

const RSA_ISSUER: &str = "https://rsa.example.com";
const EC_ISSUER: &str = "ec.example.com";

fn config(jwks_uri: &str, ec_jwks: &str) -> String {
    format!(
        r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: productpage-jwt, namespace: default}}
spec:
  targetRefs: [{{kind: Service, group: "", name: productpage}}]
  jwtRules:
  - issuer: {RSA_ISSUER}
    jwksUri: {jwks_uri}
    audiences: [productpage]
    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders: [{{header: x-jwt-sub, claim: sub}}]
  - issuer: {EC_ISSUER}
    jwks: '{ec_jwks}'
    fromHeaders: [{{name: x-ec-token}}]
    forwardOriginalToken: true
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: productpage-access, namespace: default}}
spec:
  targetRefs: [{{kind: Service, group: "", name: productpage}}]
  rules:
  - to: [{{operation: {{paths: ["/open*"]}}}}]
  - from: [{{source: {{requestPrincipals: ["*"]}}}}]
    to: [{{operation: {{paths: ["/secure*"]}}}}]
  - to: [{{operation: {{paths: ["/admin*"]}}}}]
    when: [{{key: "request.auth.claims[groups]", values: [admins]}}]
"#
    )
}

struct Fixture {
    _world: World,
    certs: Certs,
    wp: WaypointProc,
    server: JwksServer,
    rsa: SigningKey,
    ec: SigningKey,
}

struct Answer {
    status: u16,
    body: String,
    www_authenticate: Option<String>,
}

async fn fixture(status: u16, flags: &[&str]) -> Fixture {
    let rsa = SigningKey::rsa(0, "rsa-1");
    let ec = SigningKey::ec("ec-1");
    let server = JwksServer::start(status, jwks(&[&rsa])).await;
    let world = World::productpage().await;
    std::fs::write(
        world.dir().join("jwt.yaml"),
        config(&server.uri(), &jwks(&[&ec])),
    )
    .unwrap();
    let certs = Certs::new();
    let wp = WaypointProc::start_with(world.dir(), &certs.waypoint_dir, flags).await;
    Fixture {
        _world: world,
        certs,
        wp,
        server,
        rsa,
        ec,
    }
}

impl Fixture {
    async fn call(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let client = connect(&self.wp, &self.certs.client()).await;
        let mut t = Tunnel::open(&client, PRODUCTPAGE_VIP).await.unwrap();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let r = t
            .send(
                http::Method::GET,
                &format!("http://productpage:9080{path}"),
                &headers,
                bytes::Bytes::new(),
            )
            .await
            .unwrap();
        Answer {
            status: r.status.as_u16(),
            www_authenticate: r
                .headers
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_string()),
            body: r.text(),
        }
    }

    async fn bearer(&self, path: &str, token: &str) -> Answer {
        self.call(path, &[("authorization", &format!("Bearer {token}"))])
            .await
    }

    fn alice(&self, extra: serde_json::Value) -> String {
        let mut claims = json!({"iss": RSA_ISSUER, "sub": "alice", "aud": "productpage"});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        self.rsa.sign(claims)
    }

    /// Until the waypoint has the server's keys: `token` answers `want`.
    async fn until(&self, token: &str, want: u16) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let a = self.bearer("/secure", token).await;
            if a.status == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "still {} {}: {}",
                a.status,
                a.body,
                self.wp.stdout()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The echo backend's view of a header.
fn seen(body: &str, header: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["headers"][header].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_tokens_pass_and_the_backend_sees_outputs_not_the_token() {
    let f = fixture(200, &[]).await;
    let token = f.alice(json!({}));
    f.until(&token, 200).await;
    let a = f
        .call(
            "/secure",
            &[
                ("authorization", &format!("Bearer {token}")),
                // A client cannot pass off its own output headers.
                ("x-jwt-sub", "mallory"),
            ],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(seen(&a.body, "authorization"), None, "{}", a.body);
    assert_eq!(seen(&a.body, "x-jwt-sub").as_deref(), Some("alice"));
    let payload = token.split('.').nth(1).unwrap();
    assert_eq!(seen(&a.body, "x-jwt-payload").as_deref(), Some(payload));
    // The access_token parameter is a default location too.
    assert_eq!(
        f.call(&format!("/secure?access_token={token}"), &[])
            .await
            .status,
        200
    );
    // ES256, inline keys, a custom header, forwarded as it came.
    let ec = f.ec.sign(json!({"iss": EC_ISSUER, "sub": "bob"}));
    let a = f.call("/secure", &[("x-ec-token", &ec)]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(seen(&a.body, "x-ec-token").as_deref(), Some(ec.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tokens_get_envoys_answers() {
    let f = fixture(200, &[]).await;
    f.until(&f.alice(json!({})), 200).await;
    let expired = f.alice(json!({"exp": now() - 3600}));
    let a = f.bearer("/open", &expired).await;
    assert_eq!((a.status, a.body.as_str()), (401, "Jwt is expired"));
    assert_eq!(
        a.www_authenticate.as_deref(),
        Some(r#"Bearer realm="http://productpage:9080/open", error="invalid_token""#)
    );
    // Inside the 60 s of clock skew Envoy allows, still valid.
    let just_expired = f.alice(json!({"exp": now() - 10}));
    assert_eq!(f.bearer("/open", &just_expired).await.status, 200);
    let future = f.alice(json!({"nbf": now() + 3600}));
    assert_eq!(f.bearer("/open", &future).await.body, "Jwt not yet valid");
    let stranger = f
        .rsa
        .sign(json!({"iss": "https://other.example.com", "sub": "x"}));
    let a = f.bearer("/open", &stranger).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (401, "Jwt issuer is not configured")
    );
    // Envoy answers a foreign audience with 403.
    let elsewhere = f.alice(json!({"aud": "reviews"}));
    let a = f.bearer("/open", &elsewhere).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (403, "Audiences in Jwt are not allowed")
    );
    // Signed by another key under the same kid.
    let forged = SigningKey::rsa(1, "rsa-1")
        .sign(json!({"iss": RSA_ISSUER, "sub": "alice", "aud": "productpage"}));
    let a = f.bearer("/open", &forged).await;
    assert_eq!((a.status, a.body.as_str()), (401, "Jwt verification fails"));
    let a = f.bearer("/open", "not-a-jwt").await;
    assert_eq!(a.status, 401);
    // An invalid token in a location of the other rule is refused as well.
    let a = f.call("/open", &[("x-ec-token", &expired)]).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (401, "Jwt issuer is not configured")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_only_authorization_decides() {
    let f = fixture(200, &[]).await;
    let token = f.alice(json!({"groups": ["dev", "admins"]}));
    f.until(&token, 200).await;
    // No token: unauthenticated, not refused...
    assert_eq!(f.call("/open", &[]).await.status, 200);
    // ...until a policy wants a request principal.
    let a = f.call("/secure", &[]).await;
    assert_eq!((a.status, a.body.as_str()), (403, "RBAC: access denied"));
    // request.auth.claims[groups]: one element of the list matches.
    assert_eq!(f.bearer("/admin", &token).await.status, 200);
    let dev = f.alice(json!({"groups": ["dev"]}));
    assert_eq!(f.bearer("/admin", &dev).await.status, 403);
    assert_eq!(f.call("/admin", &[]).await.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_refused_until_fetched_and_rotation_is_picked_up() {
    // The key server fails at first: tokens are refused, as Istio's fake JWKS
    // refuses them, and the waypoint keeps trying.
    let f = fixture(503, &["--jwks-refresh-interval", "200ms"]).await;
    let old = f.alice(json!({}));
    let a = f.bearer("/secure", &old).await;
    assert_eq!((a.status, a.body.as_str()), (401, "Jwt verification fails"));
    f.server.set(200, jwks(&[&f.rsa]));
    f.until(&old, 200).await;
    // A failing server does not take the keys away.
    f.server.set(500, String::new());
    // Rotation: the server now publishes only the new key.
    let new_key = SigningKey::rsa(1, "rsa-2");
    let new = new_key.sign(json!({"iss": RSA_ISSUER, "sub": "alice", "aud": "productpage"}));
    assert_eq!(f.bearer("/secure", &old).await.status, 200);
    assert_eq!(f.bearer("/secure", &new).await.status, 401);
    f.server.set(200, jwks(&[&new_key]));
    f.until(&new, 200).await;
    let a = f.bearer("/secure", &old).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (401, "Jwks doesn't have key to match kid or alg from Jwt")
    );
}

/// As istiod: a jwksUri is never fetched from a link-local or cloud metadata
/// address, so a token for it cannot be verified (401) and the log says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_uri_at_the_metadata_address_is_never_fetched() {
    let rsa = SigningKey::rsa(0, "rsa-1");
    let world = World::productpage().await;
    std::fs::write(
        world.dir().join("jwt.yaml"),
        config(
            "http://169.254.169.254/latest/meta-data/keys",
            &jwks(&[&SigningKey::ec("ec-1")]),
        ),
    )
    .unwrap();
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let token = rsa
        .sign(json!({"iss": RSA_ISSUER, "sub": "alice", "aud": "productpage", "exp": now() + 600}));
    let client = connect(&wp, &certs.client()).await;
    let mut t = Tunnel::open(&client, PRODUCTPAGE_VIP).await.unwrap();
    let headers = vec![("authorization".to_string(), format!("Bearer {token}"))];
    let r = t
        .get("http://productpage:9080/secure", &headers)
        .await
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !wp.logs().contains("link-local") {
        assert!(Instant::now() < deadline, "{}", wp.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
