//! Drives the authorizer through the re-exports, as a case would.

use super::super::{denied_body, wait_until, GrpcAuthz, GrpcRule};
use super::super::{DECISION_HEADER, REMOVE_HEADER, RESPONSE_HEADER, RESULT_HEADER};
use super::{http_attrs, HttpAttrs};
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpStatusCode};
use envoy_types::ext_authz::v3::pb::{
    HeaderAppendAction, HeaderValue, HeaderValueOption, HttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::HeaderMap;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{Peer, Request as Attrs};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use std::time::{Duration, Instant};
use tonic::Code;

const CLIENT: &str = "spiffe://cluster.local/ns/default/sa/client";

/// A check as Envoy sends one: lower-case header names, path with the query.
fn check(path: &str, headers: &[(&str, &str)], principal: Option<&str>) -> CheckRequest {
    let http = HttpAttrs {
        method: "GET".into(),
        path: path.into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            source: principal.map(|p| Peer {
                principal: p.into(),
                ..Default::default()
            }),
            request: Some(Attrs {
                http: Some(http),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn pairs(headers: &[HeaderValueOption]) -> Vec<(&str, &str)> {
    let kv = headers.iter().filter_map(|h| h.header.as_ref());
    kv.map(|h| (h.key.as_str(), h.value.as_str())).collect()
}

fn assert_allowed(resp: &CheckResponse) {
    assert_eq!(resp.status.as_ref().unwrap().code, Code::Ok as i32);
    let Some(HttpResponse::OkResponse(ok)) = &resp.http_response else {
        panic!("not an ok_response: {resp:?}");
    };
    assert_eq!(pairs(&ok.headers), [(RESULT_HEADER, "allowed")]);
    let overwrite = HeaderAppendAction::OverwriteIfExistsOrAdd as i32;
    assert_eq!(ok.headers[0].append_action, overwrite);
    assert_eq!(
        pairs(&ok.response_headers_to_add),
        [(RESPONSE_HEADER, "ok")]
    );
    assert_eq!(ok.headers_to_remove, [REMOVE_HEADER]);
}

fn assert_denied(resp: &CheckResponse, path: &str) {
    assert_eq!(
        resp.status.as_ref().unwrap().code,
        Code::PermissionDenied as i32
    );
    let Some(HttpResponse::DeniedResponse(denied)) = &resp.http_response else {
        panic!("not a denied_response: {resp:?}");
    };
    assert_eq!(
        denied.status.unwrap().code,
        HttpStatusCode::Forbidden as i32
    );
    assert_eq!(pairs(&denied.headers), [(RESULT_HEADER, "denied")]);
    assert_eq!(denied.body, denied_body(path));
}

#[tokio::test]
async fn grpc_header_decides_and_records() {
    let authz = GrpcAuthz::start().await;
    let mut c = authz.client().await;
    let mut ask = async |path: &str, headers: &[(&str, &str)]| {
        c.check(check(path, headers, None))
            .await
            .unwrap()
            .into_inner()
    };
    assert_allowed(&ask("/a", &[]).await);
    assert_allowed(&ask("/a", &[(DECISION_HEADER, "allow")]).await);
    assert_denied(&ask("/b?x=1", &[(DECISION_HEADER, "deny")]).await, "/b?x=1");
    assert_denied(&ask("/c", &[(DECISION_HEADER, "maybe")]).await, "/c");

    assert_eq!(authz.calls(), 4);
    let seen = authz.requests();
    let third = http_attrs(&seen[2]).unwrap();
    assert_eq!(third.path, "/b?x=1");
    assert_eq!(third.headers[DECISION_HEADER], "deny");
}

#[tokio::test]
async fn grpc_reads_raw_header_map() {
    let authz = GrpcAuthz::start().await;
    let mut req = check("/raw", &[], None);
    let http = req.attributes.as_mut().unwrap().request.as_mut().unwrap();
    http.http.as_mut().unwrap().header_map = Some(HeaderMap {
        headers: vec![HeaderValue {
            key: DECISION_HEADER.into(),
            raw_value: b"deny".to_vec(),
            ..Default::default()
        }],
    });
    let resp = authz.client().await.check(req).await.unwrap().into_inner();
    assert_denied(&resp, "/raw");
}

#[tokio::test]
async fn grpc_allow_principal() {
    let authz = GrpcAuthz::start().await;
    authz.set_rule(GrpcRule::AllowPrincipal(CLIENT.into()));
    let mut c = authz.client().await;
    let other = "spiffe://cluster.local/ns/default/sa/other";
    let resp = c.check(check("/p", &[], Some(CLIENT))).await.unwrap();
    assert_allowed(resp.get_ref());
    let resp = c.check(check("/p", &[], Some(other))).await.unwrap();
    assert_denied(resp.get_ref(), "/p");
    // The rule replaces the header's say: an allow header does not help.
    let allow = [(DECISION_HEADER, "allow")];
    let resp = c.check(check("/p", &allow, None)).await.unwrap();
    assert_denied(resp.get_ref(), "/p");
}

#[tokio::test]
async fn grpc_delay_then_unavailable() {
    let authz = GrpcAuthz::start().await;
    let mut c = authz.client().await;
    authz.set_rule(GrpcRule::Delay(Duration::from_millis(100)));
    let start = Instant::now();
    let deny = [(DECISION_HEADER, "deny")];
    let resp = c.check(check("/slow", &deny, None)).await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert_allowed(resp.get_ref());

    authz.set_rule(GrpcRule::Unavailable);
    let err = c.check(check("/down", &[], None)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(authz.calls(), 2, "a failed check is recorded too");
}

#[tokio::test]
async fn grpc_drop_closes_open_connections() {
    let authz = GrpcAuthz::start().await;
    authz.set_rule(GrpcRule::Delay(Duration::from_secs(30)));
    let mut c = authz.client().await;
    let pending = tokio::spawn(async move { c.check(check("/hang", &[], None)).await });
    wait_until(|| authz.calls() == 1).await;
    drop(authz);
    let answer = tokio::time::timeout(Duration::from_secs(5), pending).await;
    let ended = answer.expect("the open call ends").unwrap();
    // A transport error (tonic says `Unknown`), not an answer.
    assert!(ended.is_err(), "the connection was closed, not answered");
}
