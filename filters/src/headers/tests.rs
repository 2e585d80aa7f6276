use super::*;
use http::{HeaderMap, Method, Uri};
use PathMatch::*;
use PathModifier::*;

fn s(v: &str) -> String {
    v.to_string()
}

#[test]
fn replace_prefix_match_follows_the_gateway_api_table() {
    // HTTPPathModifier.ReplacePrefixMatch, gateway-api apis/v1/httproute_types.go.
    #[rustfmt::skip]
    let cases = [
        ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
        ("/foo", "/foo", "/xyz", "/xyz"),
        ("/foo/", "/foo", "/xyz", "/xyz/"),
        ("/foo/bar", "/foo", "", "/bar"),
        ("/foo/", "/foo", "", "/"),
        ("/foo", "/foo", "", "/"),
        ("/foo/", "/foo", "/", "/"),
        ("/foo", "/foo", "/", "/"),
        // PathPrefix "/" (stored as "").
        ("/a/b", "", "/new", "/new/a/b"),
    ];
    for (path, prefix, replacement, want) in cases {
        let got = rewrite_path(
            path,
            Some(&SegmentPrefix(s(prefix))),
            &ReplacePrefixMatch(s(replacement)),
        );
        assert_eq!(got, want, "{path} with {prefix} -> {replacement:?}");
    }
}

#[test]
fn istio_prefix_rewrite_is_plain_string_replacement() {
    let m = Prefix(s("/foo"));
    assert_eq!(
        rewrite_path("/foobar", Some(&m), &ReplacePrefixMatch(s("/bar"))),
        "/barbar"
    );
    assert_eq!(
        rewrite_path("/foo/x", Some(&m), &ReplacePrefixMatch(s("/"))),
        "//x"
    );
    assert_eq!(
        rewrite_path("/foo/x", Some(&m), &ReplacePrefixMatch(s(""))),
        "/x"
    );
}

#[test]
fn exact_and_full_path_replace_everything() {
    let m = Exact(s("/old"));
    assert_eq!(
        rewrite_path("/old", Some(&m), &ReplacePrefixMatch(s("/new"))),
        "/new"
    );
    assert_eq!(
        rewrite_path(
            "/a/b",
            Some(&SegmentPrefix(s("/a"))),
            &ReplaceFullPath(s("/z"))
        ),
        "/z"
    );
    assert_eq!(
        rewrite_path("/x/y", None, &ReplacePrefixMatch(s("/p"))),
        "/p/x/y"
    );
}

#[test]
fn apply_sets_then_adds_then_removes() {
    let mut h = HeaderMap::new();
    h.append("x-set", "client".parse().unwrap());
    h.append("x-set", "client2".parse().unwrap());
    h.append("x-add", "client".parse().unwrap());
    h.append("x-remove", "secret".parse().unwrap());
    let m = HeaderModifier {
        set: vec![(s("x-set"), s("route")), (s("x-both"), s("set"))],
        add: vec![(s("x-add"), s("added")), (s("x-both"), s("added"))],
        remove: vec![s("x-remove"), s("x-absent")],
    };
    apply(&m, &mut h).unwrap();
    let all = |n: &str| {
        h.get_all(n)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(all("x-set"), ["route"]);
    assert_eq!(all("x-add"), ["client", "added"]);
    assert_eq!(all("x-both"), ["set", "added"]);
    assert!(h.get("x-remove").is_none());
}

#[test]
fn apply_reports_an_invalid_header() {
    let m = HeaderModifier {
        set: vec![(s("bad name"), s("v"))],
        ..Default::default()
    };
    let err = apply(&m, &mut HeaderMap::new()).unwrap_err();
    assert_eq!(err.name, "bad name");
}

struct Req {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Req {
    fn new(uri: &str, host: Option<&str>) -> Self {
        let mut headers = HeaderMap::new();
        if let Some(h) = host {
            headers.insert("host", h.parse().unwrap());
        }
        Req {
            method: Method::GET,
            uri: uri.parse().unwrap(),
            headers,
        }
    }
    fn view(&self, port: u16) -> RequestView<'_> {
        RequestView::new(&self.method, &self.uri, &self.headers, port)
    }
}

fn redirect() -> Redirect {
    Redirect {
        scheme: None,
        hostname: None,
        path: None,
        port: None,
        status: 302,
    }
}

#[test]
fn redirect_locations() {
    let plain = Req::new("/moved/here?q=1", Some("reviews"));
    let with_port = Req::new("/moved/here?q=1", Some("reviews:9080"));
    let v6 = Req::new("/p", Some("[fd00::1]:9080"));
    let cases: Vec<(Redirect, &Req, &str)> = vec![
        // The e2e case: hostname only, Host without a port.
        (
            Redirect {
                hostname: Some(s("reviews.example.com")),
                ..redirect()
            },
            &plain,
            "http://reviews.example.com/moved/here?q=1",
        ),
        // Host's port (the mesh's listener port) is kept when the scheme stays.
        (
            Redirect {
                hostname: Some(s("r.example.com")),
                ..redirect()
            },
            &with_port,
            "http://r.example.com:9080/moved/here?q=1",
        ),
        // A scheme change implies that scheme's default port, which is omitted.
        (
            Redirect {
                scheme: Some(s("https")),
                ..redirect()
            },
            &with_port,
            "https://reviews/moved/here?q=1",
        ),
        (
            Redirect {
                scheme: Some(s("https")),
                port: Some(8443),
                ..redirect()
            },
            &with_port,
            "https://reviews:8443/moved/here?q=1",
        ),
        (
            Redirect {
                port: Some(80),
                ..redirect()
            },
            &with_port,
            "http://reviews/moved/here?q=1",
        ),
        (
            Redirect {
                port: Some(8080),
                ..redirect()
            },
            &plain,
            "http://reviews:8080/moved/here?q=1",
        ),
        (
            Redirect {
                path: Some(ReplaceFullPath(s("/new"))),
                ..redirect()
            },
            &plain,
            "http://reviews/new?q=1",
        ),
        (
            Redirect {
                path: Some(ReplacePrefixMatch(s("/v2"))),
                ..redirect()
            },
            &plain,
            "http://reviews/v2/here?q=1",
        ),
        (redirect(), &v6, "http://[fd00::1]:9080/p"),
    ];
    let matched = SegmentPrefix(s("/moved"));
    for (r, req, want) in cases {
        assert_eq!(
            redirect_location(&r, &req.view(9080), Some(&matched)),
            want,
            "{r:?}"
        );
    }
}
