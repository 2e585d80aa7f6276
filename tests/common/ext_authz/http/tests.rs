//! Drives the authorizer through the re-exports, with a plain hyper client.

use super::super::{denied_body, wait_until, HttpAuthz, HttpRule, Recorded};
use super::super::{DECISION_HEADER, EXTRA_DENY_HEADER, RESPONSE_HEADER, RESULT_HEADER};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::time::{Duration, Instant};

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn assert_allowed(&self) {
        assert_eq!(self.status, StatusCode::OK);
        assert_eq!(self.header(RESULT_HEADER), Some("allowed"));
        assert_eq!(self.header(RESPONSE_HEADER), Some("ok"));
        assert_eq!(self.header(EXTRA_DENY_HEADER), None);
    }

    fn assert_denied(&self, status: StatusCode, path: &str) {
        assert_eq!(self.status, status);
        assert_eq!(self.header(RESULT_HEADER), Some("denied"));
        assert_eq!(self.header(EXTRA_DENY_HEADER), Some("yes"));
        assert_eq!(self.body, denied_body(path));
    }
}

/// One HTTP/1.1 connection, kept alive across the requests sent on it.
async fn connect(authz: &HttpAuthz) -> SendRequest<Full<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(authz.addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

async fn send(
    conn: &mut SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &'static str,
) -> hyper::Result<Reply> {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "ext-authz");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = conn
        .send_request(req.body(Full::from(body)).unwrap())
        .await?;
    let (head, body) = resp.into_parts();
    Ok(Reply {
        status: head.status,
        headers: head.headers,
        body: body.collect().await?.to_bytes(),
    })
}

async fn get(conn: &mut SendRequest<Full<Bytes>>, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(conn, "GET", path, headers, "").await.unwrap()
}

#[tokio::test]
async fn http_header_decides_on_one_kept_alive_connection() {
    let authz = HttpAuthz::start().await;
    let mut conn = connect(&authz).await;
    get(&mut conn, "/a", &[]).await.assert_allowed();
    get(&mut conn, "/a", &[(DECISION_HEADER, "allow")])
        .await
        .assert_allowed();
    get(&mut conn, "/b?x=1", &[(DECISION_HEADER, "deny")])
        .await
        .assert_denied(StatusCode::FORBIDDEN, "/b?x=1");
    get(&mut conn, "/c", &[(DECISION_HEADER, "maybe")])
        .await
        .assert_denied(StatusCode::FORBIDDEN, "/c");

    assert_eq!(authz.calls(), 4);
    let seen = &authz.requests()[2];
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("GET", "/b?x=1")
    );
    assert_eq!(seen.headers[DECISION_HEADER], "deny");
    assert!(seen.body.is_empty());
}

#[tokio::test]
async fn http_status_rule() {
    let authz = HttpAuthz::start().await;
    let mut conn = connect(&authz).await;
    for status in [StatusCode::UNAUTHORIZED, StatusCode::INTERNAL_SERVER_ERROR] {
        authz.set_rule(HttpRule::Status(status));
        get(&mut conn, "/s", &[]).await.assert_denied(status, "/s");
    }
    authz.set_rule(HttpRule::Status(StatusCode::OK));
    let deny = [(DECISION_HEADER, "deny")];
    get(&mut conn, "/s", &deny).await.assert_allowed();
}

#[tokio::test]
async fn http_body_contains() {
    let authz = HttpAuthz::start().await;
    authz.set_rule(HttpRule::BodyContains("alice".into()));
    let mut conn = connect(&authz).await;
    let ct = [("content-type", "application/json")];
    let ok = send(&mut conn, "POST", "/p", &ct, r#"{"user":"alice"}"#);
    ok.await.unwrap().assert_allowed();
    let no = send(&mut conn, "POST", "/p", &ct, r#"{"user":"bob"}"#);
    no.await.unwrap().assert_denied(StatusCode::FORBIDDEN, "/p");

    let seen: &Recorded = &authz.requests()[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.body, r#"{"user":"alice"}"#);
    assert_eq!(seen.headers["content-length"], "16");
}

#[tokio::test]
async fn http_delay_concurrent_connections_and_drop() {
    let authz = HttpAuthz::start().await;
    authz.set_rule(HttpRule::Delay(Duration::from_secs(30)));
    let mut slow = connect(&authz).await;
    let pending = tokio::spawn(async move { send(&mut slow, "GET", "/hang", &[], "").await });
    wait_until(|| authz.calls() == 1).await;

    // A second connection is answered while the first is still held.
    authz.set_rule(HttpRule::Delay(Duration::from_millis(100)));
    let mut fast = connect(&authz).await;
    let start = Instant::now();
    get(&mut fast, "/quick", &[]).await.assert_allowed();
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert!(!pending.is_finished());

    drop(authz);
    let answer = tokio::time::timeout(Duration::from_secs(5), pending).await;
    let ended = answer.expect("the held request ends").unwrap();
    assert!(ended.is_err(), "the connection was closed, not answered");
}
