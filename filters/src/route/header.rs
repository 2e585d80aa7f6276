//! Header matching, as Envoy's `HeaderUtility::matchHeaders` does it:
//!
//! - A header that appears several times is matched as its values joined with `,`
//!   (`getAllOfHeaderAsString`), so `x: a` + `x: b` is the value `a,b`.
//! - A missing header matches nothing, except through `invert`.
//! - `invert` is Istio's `withoutHeaders`, which Istio emits as `invert_match` with
//!   `treat_missing_header_as_empty`: a missing header is compared as `""`, so
//!   `withoutHeaders: {x: {exact: v}}` matches requests without `x`. A missing header
//!   never satisfies `Present`, so its inverse matches.

use super::string_matches;
use http::HeaderMap;
use std::borrow::Cow;
use waypoint_ir::{HeaderMatch, StringMatch};

pub(super) fn matches(m: &HeaderMatch, headers: &HeaderMap) -> bool {
    let value = joined(headers, &m.name);
    let hit = match (&m.value, value) {
        (StringMatch::Present, v) => v.is_some(),
        (sm, Some(v)) => string_matches(sm, &v),
        (sm, None) if m.invert => string_matches(sm, ""),
        (_, None) => false,
    };
    hit != m.invert
}

/// All values of `name` joined with `,`; borrowed in the common single-value case.
fn joined<'h>(headers: &'h HeaderMap, name: &str) -> Option<Cow<'h, str>> {
    let mut values = headers.get_all(name).iter();
    let first = text(values.next()?.as_bytes());
    let Some(second) = values.next() else {
        return Some(first);
    };
    let mut all = first.into_owned();
    for v in std::iter::once(second).chain(values) {
        all.push(',');
        all.push_str(&text(v.as_bytes()));
    }
    Some(Cow::Owned(all))
}

/// Header values may carry obs-text bytes; compare them as (lossy) UTF-8 rather
/// than treating the header as absent.
fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hm(name: &str, value: StringMatch, invert: bool) -> HeaderMatch {
        HeaderMatch {
            name: name.into(),
            value,
            invert,
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn re(p: &str) -> waypoint_ir::Pattern {
        waypoint_ir::Pattern::new(p).unwrap()
    }

    #[test]
    fn table() {
        use StringMatch::*;
        let s = |v: &str| v.to_string();
        let one = headers(&[("x-user", "alice")]);
        let two = headers(&[("x-user", "alice"), ("x-user", "bob")]);
        let none = headers(&[]);
        #[rustfmt::skip]
        let cases = [
            (hm("x-user", Exact(s("alice")), false), &one, true),
            (hm("x-user", Exact(s("Alice")), false), &one, false),
            (hm("x-user", Prefix(s("al")), false), &one, true),
            (hm("x-user", Present, false), &one, true),
            (hm("x-user", Present, false), &none, false),
            (hm("x-user", Exact(s("alice")), false), &none, false),
            // Repeated headers are one comma-joined value (Envoy).
            (hm("x-user", Exact(s("alice,bob")), false), &two, true),
            (hm("x-user", Exact(s("alice")), false), &two, false),
            (hm("x-user", Prefix(s("alice,")), false), &two, true),
            // withoutHeaders.
            (hm("x-user", Exact(s("alice")), true), &one, false),
            (hm("x-user", Exact(s("bob")), true), &one, true),
            (hm("x-user", Exact(s("alice")), true), &none, true),
            (hm("x-user", Present, true), &none, true),
            (hm("x-user", Present, true), &one, false),
            // Names are looked up case-insensitively by HeaderMap.
            (hm("X-User", Exact(s("alice")), false), &one, true),
            // Regexes match the whole value (RE2 full match), not a substring.
            (hm("x-user", Regex(re("a.i.e")), false), &one, true),
            (hm("x-user", Regex(re("lic")), false), &one, false),
            (hm("x-user", Regex(re("alice,(bob|carol)")), false), &two, true),
        ];
        for (m, h, want) in cases {
            assert_eq!(matches(&m, h), want, "{m:?} against {h:?}");
        }
    }
}
