//! Request edits a route asks for: header modifiers, path rewrites and redirect
//! locations.

use crate::RequestView;
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use std::fmt;
use waypoint_ir::{split_host_port, HeaderModifier, PathMatch, PathModifier, Redirect};

/// A header name or value in a modifier that HTTP does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidHeader {
    pub name: String,
}

impl fmt::Display for InvalidHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid header name or value for {:?}", self.name)
    }
}

impl std::error::Error for InvalidHeader {}

/// Applies set, then add, then remove (Envoy's order for Gateway API
/// `RequestHeaderModifier` and Istio `headers`), so `remove` wins over `set` for
/// the same name. Stops at the first invalid name or value: translation validates
/// them, so this only trips on a bug, and a half-applied edit is reported.
pub fn apply(
    modifier: &HeaderModifier,
    headers: &mut impl HeaderEdit,
) -> Result<(), InvalidHeader> {
    for (name, value) in &modifier.set {
        headers.set(name, value)?;
    }
    for (name, value) in &modifier.add {
        headers.add(name, value)?;
    }
    for name in &modifier.remove {
        headers.remove(name);
    }
    Ok(())
}

/// A header block that `apply` can edit: `http::HeaderMap` here, and the proxy's
/// own request and response heads (which keep header-name case) in `waypoint`.
pub trait HeaderEdit {
    /// Replaces every value of `name` with `value`.
    fn set(&mut self, name: &str, value: &str) -> Result<(), InvalidHeader>;
    /// Appends a value, keeping those already there.
    fn add(&mut self, name: &str, value: &str) -> Result<(), InvalidHeader>;
    fn remove(&mut self, name: &str);
}

impl HeaderEdit for HeaderMap {
    fn set(&mut self, name: &str, value: &str) -> Result<(), InvalidHeader> {
        let (n, v) = parse(name, value)?;
        self.insert(n, v);
        Ok(())
    }

    fn add(&mut self, name: &str, value: &str) -> Result<(), InvalidHeader> {
        let (n, v) = parse(name, value)?;
        self.append(n, v);
        Ok(())
    }

    fn remove(&mut self, name: &str) {
        HeaderMap::remove(self, name);
    }
}

fn parse(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), InvalidHeader> {
    let bad = || InvalidHeader { name: name.into() };
    Ok((
        HeaderName::try_from(name).map_err(|_| bad())?,
        HeaderValue::try_from(value).map_err(|_| bad())?,
    ))
}

/// The path after a URL rewrite or for a redirect.
///
/// `ReplacePrefixMatch` replaces what `matched` matched:
/// - `SegmentPrefix` (Gateway API `PathPrefix`): the spec's table in
///   `HTTPPathModifier.ReplacePrefixMatch`: the replacement's trailing `/` is
///   dropped and the rest of the path (which starts at a segment boundary) is
///   appended, with `/` for an empty result, so `/foo/bar` with `/foo` → `/xyz`
///   gives `/xyz/bar`, and with `/foo` → `""` gives `/bar`.
/// - `Prefix` (Istio `rewrite.uri`): Envoy's `prefix_rewrite`, plain string
///   replacement of the matched prefix (`/foo` → `/bar` turns `/foobar` into
///   `/barbar`).
/// - `Exact`, `Regex`: the whole path matched, so it is replaced whole (Envoy).
/// - No path match: the Gateway API default match, `PathPrefix /`.
pub fn rewrite_path(path: &str, matched: Option<&PathMatch>, modifier: &PathModifier) -> String {
    let replacement = match modifier {
        PathModifier::ReplaceFullPath(p) => return p.clone(),
        PathModifier::ReplacePrefixMatch(r) => r,
    };
    match matched {
        Some(PathMatch::Prefix(p)) => {
            let rest = path.get(p.len()..).unwrap_or("");
            format!("{replacement}{rest}")
        }
        Some(PathMatch::Exact(_)) | Some(PathMatch::Regex(_)) => replacement.clone(),
        Some(PathMatch::SegmentPrefix(p)) => segment_replace(path, p, replacement),
        None => segment_replace(path, "", replacement),
    }
}

fn segment_replace(path: &str, prefix: &str, replacement: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    let rest = path.get(prefix.len()..).unwrap_or("");
    let out = format!("{}{rest}", replacement.trim_end_matches('/'));
    if out.is_empty() {
        "/".to_string()
    } else {
        out
    }
}

/// The `Location` of a Gateway API `RequestRedirect` (Istio `redirect` maps onto
/// the same fields):
/// - scheme: the redirect's, else the request's;
/// - hostname: the redirect's, else the request's `Host` without its port;
/// - port: the redirect's; else, when the redirect changes the scheme, that
///   scheme's well-known port; else the port the client put in `Host` (in a mesh
///   that is the "listener port" the spec falls back to; a `Host` without a port
///   means the scheme's default);
/// - the port is left out when it is the scheme's default (80 for http, 443 for
///   https), as the spec asks;
/// - path: rewritten as [`rewrite_path`] does, else the request's; the query is kept.
pub fn redirect_location(
    redirect: &Redirect,
    req: &RequestView<'_>,
    matched: Option<&PathMatch>,
) -> String {
    let scheme = redirect.scheme.as_deref().unwrap_or(req.scheme);
    let (req_host, req_port) = req.host.map(split_host_port).unwrap_or(("", None));
    let host = redirect.hostname.as_deref().unwrap_or(req_host);
    let port = match (redirect.port, &redirect.scheme) {
        (Some(p), _) => Some(p),
        (None, Some(s)) => default_port(s).or(req_port),
        (None, None) => req_port,
    };
    let path = match &redirect.path {
        Some(m) => rewrite_path(req.path, matched, m),
        None => req.path.to_string(),
    };
    let mut out = format!("{scheme}://");
    if host.contains(':') && !host.starts_with('[') {
        out.push_str(&format!("[{host}]"));
    } else {
        out.push_str(host);
    }
    if let Some(p) = port.filter(|&p| Some(p) != default_port(scheme)) {
        out.push_str(&format!(":{p}"));
    }
    out.push_str(&path);
    if let Some(q) = req.query {
        out.push('?');
        out.push_str(q);
    }
    out
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme.to_ascii_lowercase().as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

#[cfg(test)]
#[path = "headers/tests.rs"]
mod tests;
