use super::*;
use serde_json::json;
use waypoint_ir::{default_locations, JwksSource, ResourceKind, ResourceRef};

fn rule(locations: Vec<TokenLocation>) -> JwtRule {
    JwtRule {
        source: ResourceRef::new(ResourceKind::RequestAuthentication, "shop", "jwt"),
        issuer: "iss".into(),
        audiences: Vec::new(),
        jwks: JwksSource::RejectAll,
        locations,
        output_payload_to_header: Some("x-payload".into()),
        output_claim_to_headers: vec![("x-group".into(), "group".into())],
        forward_original_token: false,
        timeout: waypoint_ir::JWKS_FETCH_TIMEOUT,
        space_delimited_claims: vec!["scope".into()],
        fail_closed: false,
    }
}

fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

fn tokens(rules: &[&JwtRule], h: &http::HeaderMap, q: Option<&str>) -> Vec<String> {
    extract(rules, h, q).into_iter().map(|f| f.token).collect()
}

#[test]
fn default_locations_are_bearer_and_access_token() {
    let r = rule(default_locations());
    let h = headers(&[("authorization", "Bearer a.b.c")]);
    assert_eq!(tokens(&[&r], &h, None), ["a.b.c"]);
    assert_eq!(
        tokens(
            &[&r],
            &http::HeaderMap::new(),
            Some("x=1&access_token=d.e.f")
        ),
        ["d.e.f"]
    );
    // Another scheme is no token.
    let basic = headers(&[("authorization", "Basic dXNlcjpwYXNz")]);
    assert!(tokens(&[&r], &basic, None).is_empty());
    // Both places: both are verified.
    assert_eq!(
        tokens(&[&r], &h, Some("access_token=d.e.f")),
        ["a.b.c", "d.e.f"]
    );
}

#[test]
fn custom_headers_params_and_cookies() {
    let r = rule(vec![
        TokenLocation::Header {
            name: "x-jwt".into(),
            prefix: String::new(),
        },
        TokenLocation::Param("t".into()),
        TokenLocation::Cookie("session".into()),
    ]);
    let h = headers(&[("x-jwt", "h.h.h"), ("cookie", "a=1; session=c.c.c")]);
    assert_eq!(
        tokens(&[&r], &h, Some("t=p%2Ep.p")),
        ["h.h.h", "p.p.p", "c.c.c"]
    );
}

#[test]
fn rules_sharing_a_location_see_one_token() {
    let (a, b) = (rule(default_locations()), rule(default_locations()));
    let h = headers(&[("authorization", "Bearer a.b.c")]);
    assert_eq!(tokens(&[&a, &b], &h, None), ["a.b.c"]);
}

#[test]
fn output_headers_are_the_rules_own() {
    let r = rule(default_locations());
    assert_eq!(
        output_headers(&[&r]).collect::<Vec<_>>(),
        ["x-payload", "x-group"]
    );
}

#[test]
fn claims_match_strings_and_list_elements_nested() {
    let auth = RequestAuth::from_payload(
        json!({"iss": "https://idp", "sub": "alice", "aud": ["a", "b"], "azp": "web",
               "groups": ["dev", "ops"], "org": {"team": "core"}, "scope": "read write",
               "admin": true}),
        &["scope".into()],
    );
    assert_eq!(auth.principal, "https://idp/alice");
    assert_eq!(auth.audiences, ["a", "b"]);
    assert_eq!(auth.presenter.as_deref(), Some("web"));
    let p = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(auth.claim(&p(&["groups"])), ["dev", "ops"]);
    assert_eq!(auth.claim(&p(&["org", "team"])), ["core"]);
    assert_eq!(auth.claim(&p(&["scope"])), ["read", "write"]);
    // Not a string: nothing a string match can match.
    assert!(auth.claim(&p(&["admin"])).is_empty());
    assert!(auth.claim(&p(&["missing"])).is_empty());
}
