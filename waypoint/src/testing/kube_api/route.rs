//! Request paths and query strings as the API server reads them.

/// A path on an object or a collection: `/api/v1[/namespaces/{ns}]/{plural}[/{name}[/{sub}]]`
/// or the same under `/apis/{group}/{version}`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ResourcePath<'a> {
    pub(crate) group: &'a str,
    pub(crate) version: &'a str,
    pub(crate) namespace: Option<&'a str>,
    pub(crate) plural: &'a str,
    pub(crate) name: Option<&'a str>,
    pub(crate) sub: Option<&'a str>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Discovery<'a> {
    Version,
    Health,
    /// `/api`
    Core,
    /// `/apis`
    Groups,
    /// `/apis/{group}`
    Group(&'a str),
    /// `/api/{version}` (group `""`) or `/apis/{group}/{version}`
    Resources(&'a str, &'a str),
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    Resource(ResourcePath<'a>),
    Discovery(Discovery<'a>),
    Unknown,
}

pub(crate) fn target(path: &str) -> Target<'_> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["version"] => Target::Discovery(Discovery::Version),
        ["healthz" | "readyz" | "livez"] => Target::Discovery(Discovery::Health),
        ["api"] => Target::Discovery(Discovery::Core),
        ["api", version] => Target::Discovery(Discovery::Resources("", version)),
        ["api", version, rest @ ..] => resource("", version, rest),
        ["apis"] => Target::Discovery(Discovery::Groups),
        ["apis", group] => Target::Discovery(Discovery::Group(group)),
        ["apis", group, version] => Target::Discovery(Discovery::Resources(group, version)),
        ["apis", group, version, rest @ ..] => resource(group, version, rest),
        _ => Target::Unknown,
    }
}

fn resource<'a>(group: &'a str, version: &'a str, rest: &[&'a str]) -> Target<'a> {
    // `namespaces/{name}/status` is a Namespace's subresource, not a kind called
    // "status" in namespace {name}.
    let namespace_sub =
        group.is_empty() && rest.len() == 3 && matches!(rest[2], "status" | "finalize");
    let (namespace, rest) = match rest {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() && !namespace_sub => (Some(*ns), tail),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return Target::Unknown,
    };
    if [
        plural,
        name.unwrap_or("-"),
        sub.unwrap_or("-"),
        namespace.unwrap_or("-"),
    ]
    .contains(&"")
    {
        return Target::Unknown;
    }
    Target::Resource(ResourcePath {
        group,
        version,
        namespace,
        plural,
        name,
        sub,
    })
}

/// Query parameters, percent-decoded. kube's requests start with `?&`, so empty
/// pairs are skipped.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(raw: &str) -> Query {
        let pairs = raw
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (decode(k), decode(v)),
                None => (decode(p), String::new()),
            })
            .collect();
        Query(pairs)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `true` or `1`, as the API server accepts for `watch`.
    pub(crate) fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .and_then(|h| Some(hex(h[0])? * 16 + hex(h[1])?));
        match (bytes[i], escaped) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res<'a>(
        group: &'a str,
        namespace: Option<&'a str>,
        plural: &'a str,
        name: Option<&'a str>,
        sub: Option<&'a str>,
    ) -> Target<'a> {
        Target::Resource(ResourcePath {
            group,
            version: "v1",
            namespace,
            plural,
            name,
            sub,
        })
    }

    #[test]
    fn paths() {
        assert_eq!(
            target("/api/v1/services"),
            res("", None, "services", None, None)
        );
        assert_eq!(
            target("/api/v1/namespaces/a/services"),
            res("", Some("a"), "services", None, None)
        );
        assert_eq!(
            target("/api/v1/namespaces/a/pods/p/status"),
            res("", Some("a"), "pods", Some("p"), Some("status"))
        );
        assert_eq!(
            target("/api/v1/namespaces"),
            res("", None, "namespaces", None, None)
        );
        assert_eq!(
            target("/api/v1/namespaces/a"),
            res("", None, "namespaces", Some("a"), None)
        );
        assert_eq!(
            target("/api/v1/namespaces/a/status"),
            res("", None, "namespaces", Some("a"), Some("status"))
        );
        let g = "gateway.networking.k8s.io";
        assert_eq!(
            target("/apis/gateway.networking.k8s.io/v1/namespaces/d/httproutes/r/status"),
            res(g, Some("d"), "httproutes", Some("r"), Some("status"))
        );
        assert_eq!(
            target("/apis/gateway.networking.k8s.io/v1/gatewayclasses/c"),
            res(g, None, "gatewayclasses", Some("c"), None)
        );
        assert_eq!(target("/apis"), Target::Discovery(Discovery::Groups));
        assert_eq!(
            target("/apis/g/v1"),
            Target::Discovery(Discovery::Resources("g", "v1"))
        );
        assert_eq!(
            target("/api/v1"),
            Target::Discovery(Discovery::Resources("", "v1"))
        );
        assert_eq!(target("/nope"), Target::Unknown);
        assert_eq!(
            target("/api/v1/namespaces/a/pods/p/status/x"),
            Target::Unknown
        );
    }

    #[test]
    fn queries() {
        let q = Query::parse("&watch=true&labelSelector=app+in+%28a%2Cb%29&x");
        assert!(q.flag("watch"));
        assert_eq!(q.get("labelSelector"), Some("app in (a,b)"));
        assert_eq!(q.get("x"), Some(""));
        assert_eq!(q.get("y"), None);
        assert_eq!(Query::parse("a=%zz&b=%4").get("a"), Some("%zz"));
        assert_eq!(Query::parse("b=%4").get("b"), Some("%4"));
    }
}
