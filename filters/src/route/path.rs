//! Path matching.
//!
//! - `Exact` / `Prefix`: Envoy `path` / `prefix` (plain string prefix, so `/foo`
//!   matches `/foobar`). `ignore_uri_case` compares ASCII case-insensitively.
//! - `SegmentPrefix`: Gateway API `PathPrefix` (Envoy `path_separated_prefix`):
//!   whole segments, so `/foo` matches `/foo`, `/foo/`, `/foo/bar`, not `/foobar`;
//!   `/` matches everything.
//! - `Regex`: full match. Istio documents `ignoreUriCase` as applying to exact and
//!   prefix matches only (Envoy's `case_sensitive` ignores `safe_regex`), so it is
//!   ignored here too.

use waypoint_ir::PathMatch;

pub(super) fn matches(m: &PathMatch, path: &str, ignore_case: bool) -> bool {
    match m {
        PathMatch::Exact(p) => eq(path, p, ignore_case),
        PathMatch::Prefix(p) => has_prefix(path, p, ignore_case),
        PathMatch::SegmentPrefix(p) => {
            // The IR stores it without a trailing slash; be lenient about `/x/`.
            let p = p.trim_end_matches('/');
            has_prefix(path, p, ignore_case)
                && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
        }
        PathMatch::Regex(re) => re.is_match(path),
    }
}

fn eq(a: &str, b: &str, ignore_case: bool) -> bool {
    if ignore_case {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

fn has_prefix(path: &str, prefix: &str, ignore_case: bool) -> bool {
    path.get(..prefix.len())
        .is_some_and(|head| eq(head, prefix, ignore_case))
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathMatch::*;

    #[test]
    fn table() {
        let s = |v: &str| v.to_string();
        #[rustfmt::skip]
        let re = |p: &str| waypoint_ir::Pattern::new(p).unwrap();
        let cases = [
            (Exact(s("/a")), "/a", false, true),
            (Exact(s("/a")), "/a/", false, false),
            (Exact(s("/a")), "/A", false, false),
            (Exact(s("/a")), "/A", true, true),
            (Prefix(s("/foo")), "/foobar", false, true),
            (Prefix(s("/foo")), "/fo", false, false),
            (Prefix(s("/foo")), "/FOO/x", true, true),
            (Prefix(s("/foo")), "/FOO/x", false, false),
            (SegmentPrefix(s("/foo")), "/foo", false, true),
            (SegmentPrefix(s("/foo")), "/foo/", false, true),
            (SegmentPrefix(s("/foo")), "/foo/bar", false, true),
            (SegmentPrefix(s("/foo")), "/foobar", false, false),
            (SegmentPrefix(s("/foo")), "/fo", false, false),
            (SegmentPrefix(s("/foo/")), "/foo", false, true),
            (SegmentPrefix(s("/foo/")), "/foobar", false, false),
            (SegmentPrefix(s("")), "/anything", false, true),
            (SegmentPrefix(s("/")), "/", false, true),
            (SegmentPrefix(s("/")), "/x/y", false, true),
            // A multi-byte path must not panic on a char boundary.
            (Prefix(s("/ab")), "/\u{e9}", false, false),
            // Regex: whole-path match; ignoreUriCase does not apply.
            (Regex(re("/api/v[0-9]+")), "/api/v2", false, true),
            (Regex(re("/api/v[0-9]+")), "/api/v2/x", false, false),
            (Regex(re("/api/v[0-9]+")), "/API/v2", true, false),
        ];
        for (m, path, ignore_case, want) in cases {
            assert_eq!(
                matches(&m, path, ignore_case),
                want,
                "{m:?} {path} ic={ignore_case}"
            );
        }
    }
}
