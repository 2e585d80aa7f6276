//! Method matching: exact and case-sensitive (RFC 9110 §9.1: method names are
//! case-sensitive; the IR stores them upper-case).

use waypoint_ir::Method;

pub(super) fn matches(want: &Method, got: &http::Method) -> bool {
    want.0 == got.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let get = Method("GET".into());
        let cases = [
            (&get, http::Method::GET, true),
            (&get, http::Method::POST, false),
            (&get, http::Method::from_bytes(b"get").unwrap(), false),
        ];
        for (want, got, expect) in cases {
            assert_eq!(matches(want, &got), expect, "{want:?} vs {got}");
        }
    }
}
