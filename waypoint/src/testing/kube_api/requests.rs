//! What clients asked for, so a test can assert on it ("status was written once,
//! with these conditions") instead of inferring it from stored state.

use serde_json::Value;

/// The API verb a request maps to, as in the API server's audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    List,
    Watch,
    Get,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
    /// `/api`, `/apis/…`, `/version` and health checks.
    Discovery,
    /// Anything the server does not serve.
    Other,
}

/// One request the server answered.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: http::Method,
    pub path: String,
    /// The raw query string.
    pub query: String,
    pub verb: Verb,
    /// The kind's name, `plural` or `plural.group`, for requests on objects.
    pub resource: Option<String>,
    pub namespace: Option<String>,
    /// The object's; for a list or watch, the name its field selector
    /// requires (`metadata.name=x`), as RBAC's `resourceNames` sees it.
    pub name: Option<String>,
    pub subresource: Option<String>,
    pub content_type: Option<String>,
    pub field_manager: Option<String>,
    /// The parsed body of writes (the patch itself for PATCH).
    pub body: Option<Value>,
    /// The response status (200 for a watch, whatever its stream carried).
    pub code: u16,
}

impl Request {
    /// Whether this is `verb` on `target`: `plural`, `plural.group`, either with
    /// `/subresource` (`"httproutes/status"`). Without a subresource only requests
    /// on the object itself match.
    pub fn is(&self, verb: Verb, target: &str) -> bool {
        let (resource, subresource) = match target.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (target, None),
        };
        let Some(name) = &self.resource else {
            return false;
        };
        let same_resource = name == resource
            || name
                .split_once('.')
                .is_some_and(|(plural, _)| plural == resource);
        self.verb == verb && same_resource && self.subresource.as_deref() == subresource
    }
}
