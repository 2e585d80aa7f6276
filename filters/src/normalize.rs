//! Request path normalisation, Istio's (`meshConfig.pathNormalization`, the
//! "Authorization Policy Normalization" reference): the normalised path is what
//! authorization policies and routes see and what the backend receives, so a
//! policy on `/admin` cannot be walked around with `/public/../admin` or
//! `/%61dmin`.
//!
//! In order: (DECODE_AND_MERGE_SLASHES) `%2F` and `%5C` decoded; (BASE)
//! percent-encoded unreserved characters decoded once, `\` turned into `/`, dot
//! segments resolved as RFC 3986 §5.2.4 says; (MERGE_SLASHES) runs of `/`
//! merged. `%00` is refused whatever the mode. The query is kept as it came.

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathNormalization {
    None,
    /// Istio's default.
    #[default]
    Base,
    MergeSlashes,
    DecodeAndMergeSlashes,
}

impl std::str::FromStr for PathNormalization {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "NONE" => PathNormalization::None,
            "BASE" | "DEFAULT" => PathNormalization::Base,
            "MERGE_SLASHES" => PathNormalization::MergeSlashes,
            "DECODE_AND_MERGE_SLASHES" => PathNormalization::DecodeAndMergeSlashes,
            _ => {
                return Err(format!(
                    "{s:?}: one of NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES"
                ))
            }
        })
    }
}

/// A path that cannot be normalised safely: answered 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request path contains %00")]
pub struct InvalidPath;

/// Normalises the path of `path_and_query`; borrowed when nothing changes.
pub fn normalize(
    path_and_query: &str,
    mode: PathNormalization,
) -> Result<Cow<'_, str>, InvalidPath> {
    let (path, query) = match path_and_query.find('?') {
        Some(i) => path_and_query.split_at(i),
        None => (path_and_query, ""),
    };
    if path.as_bytes().windows(3).any(|w| w == b"%00") {
        return Err(InvalidPath);
    }
    if mode == PathNormalization::None || already_normal(path, mode) {
        return Ok(Cow::Borrowed(path_and_query));
    }
    let mut out = rewrite(path, mode);
    if out == path {
        return Ok(Cow::Borrowed(path_and_query));
    }
    out.push_str(query);
    Ok(Cow::Owned(out))
}

/// The whole algorithm on a path (no query), whatever it holds; `None`
/// never comes here, as it leaves paths alone.
fn rewrite(path: &str, mode: PathNormalization) -> String {
    let decoded = decode(path, mode == PathNormalization::DecodeAndMergeSlashes);
    let out = remove_dot_segments(&decoded.replace('\\', "/"));
    match mode {
        PathNormalization::Base => out,
        _ => merge_slashes(&out),
    }
}

/// Whether `path` comes out of normalisation unchanged, decided without
/// allocating: the common case, which every request pays for.
fn already_normal(path: &str, mode: PathNormalization) -> bool {
    let b = path.as_bytes();
    !b.is_empty()
        && !b.iter().any(|&c| c == b'%' || c == b'\\')
        && !path.split('/').any(|seg| seg == "." || seg == "..")
        && (mode == PathNormalization::Base || !path.contains("//"))
}

/// Decodes `%HH` of unreserved characters (and of `/` and `\` when `slashes`),
/// once: a `%` a decode produces is never decoded again.
fn decode(path: &str, slashes: bool) -> String {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(c) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                let unreserved =
                    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~');
                if unreserved || (slashes && matches!(c, b'/' | b'\\')) {
                    out.push(c);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    // Only ASCII was decoded and everything else copied byte for byte.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// RFC 3986 §5.2.4, for an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let parts: Vec<&str> = path.split('/').collect();
    // parts[0] is what precedes the leading '/', empty for an absolute path.
    for (i, seg) in parts.iter().enumerate().skip(1) {
        let last = i == parts.len() - 1;
        match *seg {
            "." => {
                if last {
                    segments.push("");
                }
            }
            ".." => {
                segments.pop();
                if last {
                    segments.push("");
                }
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    out.push_str(parts[0]);
    for s in segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::PathNormalization::*;
    use super::*;

    fn n(p: &str, mode: PathNormalization) -> String {
        normalize(p, mode).unwrap().into_owned()
    }

    #[test]
    fn base_follows_istios_table() {
        assert_eq!(n("/some%2fdata/%61%62%63", Base), "/some%2fdata/abc");
        assert_eq!(n("/public/./data/abc/../xyz", Base), "/public/data/xyz");
        assert_eq!(n("/a/../b", Base), "/b");
        assert_eq!(n("/some\\data", Base), "/some/data");
        assert_eq!(n("/%2e%2e/admin", Base), "/admin");
        assert_eq!(n("/a//b", Base), "/a//b", "BASE keeps double slashes");
        assert_eq!(
            n("/x?q=/../y", Base),
            "/x?q=/../y",
            "the query is untouched"
        );
        assert_eq!(
            n("/%252e%252e/x", Base),
            "/%252e%252e/x",
            "decoded once only"
        );
        assert_eq!(n("/..", Base), "/");
        assert_eq!(n("/a/b/..", Base), "/a/");
        assert_eq!(n("/%7e%5F%2D", Base), "/~_-");
    }

    #[test]
    fn slashes_are_merged_and_decoded_only_when_asked() {
        assert_eq!(n("/some//data///abc", MergeSlashes), "/some/data/abc");
        assert_eq!(n("/a%2fb", MergeSlashes), "/a%2fb");
        assert_eq!(n("/a%2fb", DecodeAndMergeSlashes), "/a/b");
        assert_eq!(n("/a%2F%2Fb", DecodeAndMergeSlashes), "/a/b");
        assert_eq!(n("/a%5c..%5cadmin", DecodeAndMergeSlashes), "/admin");
        assert_eq!(n("/a/../b", None), "/a/../b");
    }

    #[test]
    fn the_shortcut_agrees_with_the_whole_algorithm() {
        let paths = [
            "/", "", "*", "/a", "/a/b/", "/a//b", "//", "/a/./b", "/a/../b", "/.", "/..", "/a/.b",
            "/a/b.", "/..a", "/a..", "/%61", "/a\\b", "/a/.", "a/b", "/a///",
        ];
        for mode in [Base, MergeSlashes, DecodeAndMergeSlashes] {
            for p in paths {
                let slow = rewrite(p, mode);
                if already_normal(p, mode) {
                    assert_eq!(slow, p, "{p:?} under {mode:?}");
                }
                assert_eq!(n(p, mode), slow, "{p:?} under {mode:?}");
            }
        }
    }

    #[test]
    fn nul_is_refused_and_unchanged_paths_are_borrowed() {
        assert_eq!(normalize("/a%00b", Base), Err(InvalidPath));
        assert_eq!(normalize("/a%00b", None), Err(InvalidPath));
        assert!(matches!(
            normalize("/plain/path?x=1", Base),
            Ok(Cow::Borrowed(_))
        ));
    }
}
