//! Route selection: the first route of a service's table that applies to a request.
//!
//! Translation already sorted each table into precedence order (VirtualService
//! order, or Gateway API precedence for HTTPRoute), so selection here is a linear
//! first-match, with no comparisons between routes. The table is the producer's,
//! or the consumer routes of the client's namespace (GEP-1294).

mod header;
mod method;
mod path;
mod query;

use crate::RequestView;
use waypoint_ir::{RequestMatch, Route, Service, StringMatch};

/// The route chosen for a request.
#[derive(Debug, Clone, Copy)]
pub struct Selected<'a> {
    pub route: &'a Route,
    /// Position of `route` in the service's `routes` (all tables).
    pub index: usize,
    /// Which of the route's `matches` matched; `None` when it has none (matches
    /// every request). Prefix rewrites need the path match that applied.
    pub matched: Option<usize>,
}

/// The first route of the request's table whose `port` (if set) is the
/// request's port and any of whose matches matches. `None`: no route applies
/// (the caller answers 404 `NR`).
pub fn select<'s>(service: &'s Service, req: &RequestView<'_>) -> Option<Selected<'s>> {
    let (offset, table) = service.route_table(req.source_namespace, req.port);
    table
        .iter()
        .enumerate()
        .map(|(i, r)| (offset + i, r))
        .filter(|(_, r)| r.port.is_none_or(|p| p == req.port))
        .find_map(|(index, route)| {
            if route.matches.is_empty() {
                return Some(Selected {
                    route,
                    index,
                    matched: None,
                });
            }
            let m = route.matches.iter().position(|m| matches(m, req))?;
            Some(Selected {
                route,
                index,
                matched: Some(m),
            })
        })
}

/// All conditions of one `RequestMatch` hold (an AND; a route's matches are an OR).
/// Cheap checks run first; query parameters, which need parsing, run last.
pub fn matches(m: &RequestMatch, req: &RequestView<'_>) -> bool {
    m.port.is_none_or(|p| p == req.port)
        && m.method
            .as_ref()
            .is_none_or(|want| method::matches(want, req.method))
        && m.path
            .as_ref()
            .is_none_or(|p| path::matches(p, req.path, m.ignore_uri_case))
        && m.headers.iter().all(|h| header::matches(h, req.headers))
        && m.query.iter().all(|q| query::matches(q, req.query))
}

/// Value matching shared by headers and query parameters. Case-sensitive, whole
/// value for regexes (patterns are anchored at translation).
fn string_matches(m: &StringMatch, value: &str) -> bool {
    match m {
        StringMatch::Exact(s) => value == s,
        StringMatch::Prefix(s) => value.starts_with(s.as_str()),
        StringMatch::Regex(p) => p.is_match(value),
        StringMatch::Present => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{path_prefix, with_header};
    use waypoint_ir::{Method, PathMatch};

    #[test]
    fn conditions_of_one_match_all_hold() {
        let m = with_header(path_prefix("/api/admin"), "x-user", "admin");
        let get = http::Method::GET;
        let mut h = http::HeaderMap::new();
        let check = |path: &str, h: &http::HeaderMap, port: u16, m: &RequestMatch| {
            let uri: http::Uri = path.parse().unwrap();
            matches(m, &RequestView::new(&get, &uri, h, port))
        };
        assert!(!check("/api/admin", &h, 80, &m), "header missing");
        h.insert("x-user", "admin".parse().unwrap());
        assert!(check("/api/admin/x", &h, 80, &m));
        assert!(!check("/api/other", &h, 80, &m), "path differs");

        let mut m = m;
        m.port = Some(9080);
        m.method = Some(Method("POST".into()));
        assert!(!check("/api/admin", &h, 9080, &m), "method differs");
        m.method = Some(Method("GET".into()));
        assert!(check("/api/admin", &h, 9080, &m));
        assert!(!check("/api/admin", &h, 9081, &m), "port differs");

        let upper = RequestMatch {
            path: Some(PathMatch::Exact("/Login".into())),
            ignore_uri_case: true,
            ..Default::default()
        };
        assert!(check("/LOGIN", &h, 80, &upper));
    }
}
