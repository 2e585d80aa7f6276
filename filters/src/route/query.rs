//! Query parameter matching, as Envoy's `QueryParameterMatcher` does it: the query
//! is split on `&`, names and values are percent-decoded
//! (`QueryParamsMulti::parseAndDecodeQueryString`), the name compares exactly and
//! case-sensitively (Gateway API), and only the first occurrence of a name counts
//! (`getFirstValue`; Gateway API leaves repeats implementation-specific). A
//! parameter without `=` has the empty value. `+` is not a space: Envoy's
//! `PercentEncoding::decode` leaves it alone.

use super::string_matches;
use std::borrow::Cow;
use waypoint_ir::{QueryMatch, StringMatch};

pub(super) fn matches(m: &QueryMatch, query: Option<&str>) -> bool {
    let Some(value) = query.and_then(|q| first_value(q, &m.name)) else {
        return false;
    };
    matches!(m.value, StringMatch::Present) || string_matches(&m.value, &value)
}

/// The decoded value of the first parameter named `name`. Scans the raw query
/// without building a map: a route usually asks about one or two names.
pub fn first_value<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(k, _)| decode(k) == name)
        .map(|(_, v)| decode(v))
}

/// Percent-decoding; a malformed escape stays as it is (as in Envoy), and bytes
/// that are not UTF-8 after decoding are replaced rather than failing the match.
pub fn decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| Some((hex(*bytes.get(i + 1)?)?, hex(*bytes.get(i + 2)?)?)))
            .flatten();
        match escaped {
            Some((hi, lo)) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qm(name: &str, value: StringMatch) -> QueryMatch {
        QueryMatch {
            name: name.into(),
            value,
        }
    }

    #[test]
    fn table() {
        use StringMatch::*;
        let s = |v: &str| v.to_string();
        #[rustfmt::skip]
        let cases = [
            (qm("debug", Exact(s("1"))), Some("debug=1"), true),
            (qm("debug", Exact(s("1"))), Some("a=b&debug=1&c"), true),
            (qm("debug", Exact(s("1"))), Some("debug=2"), false),
            (qm("debug", Exact(s("1"))), None, false),
            // First occurrence wins.
            (qm("debug", Exact(s("1"))), Some("debug=2&debug=1"), false),
            (qm("debug", Exact(s("2"))), Some("debug=2&debug=1"), true),
            // Exact, case-sensitive names.
            (qm("debug", Exact(s("1"))), Some("Debug=1"), false),
            (qm("debug", Exact(s("1"))), Some("debugx=1"), false),
            // Percent-decoding of values and names; `+` stays.
            (qm("q", Exact(s("a b"))), Some("q=a%20b"), true),
            (qm("q", Exact(s("a+b"))), Some("q=a+b"), true),
            (qm("a b", Exact(s("1"))), Some("a%20b=1"), true),
            (qm("q", Exact(s("%zz"))), Some("q=%zz"), true),
            (qm("q", Exact(s("100%"))), Some("q=100%"), true),
            // Present and empty values.
            (qm("flag", Present), Some("flag"), true),
            (qm("flag", Exact(s(""))), Some("flag"), true),
            (qm("flag", Present), Some("other"), false),
            (qm("p", Prefix(s("ab"))), Some("p=abc"), true),
        ];
        for (m, q, want) in cases {
            assert_eq!(matches(&m, q), want, "{m:?} against {q:?}");
        }
    }

    #[test]
    fn decoding_is_borrowed_without_escapes() {
        assert!(matches!(decode("plain"), Cow::Borrowed("plain")));
        assert_eq!(decode("%41%62"), "Ab");
        assert_eq!(decode("%e2%82%ac"), "\u{20ac}");
    }
}
