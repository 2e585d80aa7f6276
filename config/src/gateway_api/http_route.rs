//! `HTTPRoute`, as the GAMMA mesh profile uses it (a `Service` parent).

use serde::Deserialize;

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct HttpRouteDoc {
    pub spec: HttpRouteSpec,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRouteSpec {
    #[serde(deserialize_with = "crate::parse::exact")]
    pub parent_refs: Vec<ParentRef>,
    #[serde(deserialize_with = "crate::parse::exact")]
    pub rules: Vec<Rule>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct ParentRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: String,
    pub port: Option<u16>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct Rule {
    #[serde(deserialize_with = "crate::parse::exact")]
    pub matches: Vec<MatchSpec>,
    #[serde(deserialize_with = "crate::parse::exact")]
    pub filters: Vec<RouteFilter>,
    #[serde(deserialize_with = "crate::parse::exact")]
    pub backend_refs: Vec<BackendRefSpec>,
    pub timeouts: Option<Timeouts>,
    pub retry: Option<RetrySpec>,
}

/// GEP-1742: `request` bounds the whole exchange, `backendRequest` each try.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct Timeouts {
    pub request: Option<String>,
    pub backend_request: Option<String>,
}

/// GEP-1731 (experimental channel).
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct RetrySpec {
    pub codes: Vec<u16>,
    pub attempts: Option<u32>,
    pub backoff: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct MatchSpec {
    pub path: Option<PathSpec>,
    #[serde(deserialize_with = "crate::parse::exact")]
    pub headers: Vec<ValueMatch>,
    pub query_params: Vec<ValueMatch>,
    pub method: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct PathSpec {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub value: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct ValueMatch {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub name: String,
    pub value: String,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct RouteFilter {
    #[serde(rename = "type")]
    pub kind: String,
    pub request_header_modifier: Option<HeaderModifierSpec>,
    pub response_header_modifier: Option<HeaderModifierSpec>,
    pub request_redirect: Option<RedirectSpec>,
    pub url_rewrite: Option<UrlRewriteSpec>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct HeaderModifierSpec {
    pub set: Vec<NameValue>,
    pub add: Vec<NameValue>,
    pub remove: Vec<String>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct RedirectSpec {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub path: Option<PathModifierSpec>,
    pub port: Option<u16>,
    pub status_code: Option<u16>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct UrlRewriteSpec {
    pub hostname: Option<String>,
    pub path: Option<PathModifierSpec>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct PathModifierSpec {
    #[serde(rename = "type")]
    pub kind: String,
    pub replace_full_path: Option<String>,
    pub replace_prefix_match: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct BackendRefSpec {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub port: Option<u16>,
    pub weight: Option<u32>,
    #[serde(default)]
    pub filters: Vec<RouteFilter>,
}
