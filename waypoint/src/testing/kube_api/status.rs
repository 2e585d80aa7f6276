//! The API server's failure answers: a `Status` body with the code, reason and
//! message text it sends, since kube turns exactly that into `Error::Api` and
//! callers match on `code` and `reason`.

use super::resources::ResourceType;
use bytes::Bytes;
use serde_json::json;

#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) code: u16,
    reason: &'static str,
    message: String,
    details: Option<(String, String, String)>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn about(mut self, ty: &ResourceType, name: &str) -> ApiError {
        self.details = Some((name.to_string(), ty.group.clone(), ty.plural.clone()));
        self
    }

    /// A path no installed kind serves, e.g. a CRD that is not installed.
    pub(crate) fn no_resource() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub(crate) fn not_found(ty: &ResourceType, name: &str) -> ApiError {
        let message = format!("{} {name:?} not found", ty.name());
        ApiError::new(404, "NotFound", message).about(ty, name)
    }

    pub(crate) fn already_exists(ty: &ResourceType, name: &str) -> ApiError {
        let message = format!("{} {name:?} already exists", ty.name());
        ApiError::new(409, "AlreadyExists", message).about(ty, name)
    }

    pub(crate) fn conflict(ty: &ResourceType, name: &str) -> ApiError {
        let message = format!(
            "Operation cannot be fulfilled on {} {name:?}: the object has been modified; \
             please apply your changes to the latest version and try again",
            ty.name()
        );
        ApiError::new(409, "Conflict", message).about(ty, name)
    }

    pub(crate) fn precondition(ty: &ResourceType, name: &str, what: &str) -> ApiError {
        ApiError::new(409, "Conflict", format!("Precondition failed: {what}")).about(ty, name)
    }

    pub(crate) fn invalid(ty: &ResourceType, name: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(422, "Invalid", message).about(ty, name)
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub(crate) fn expired(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub(crate) fn method_not_allowed() -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub(crate) fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml; got {content_type:?}"))
    }

    pub(crate) fn not_supported(what: &str) -> ApiError {
        ApiError::new(
            400,
            "BadRequest",
            format!("{what} is not supported by the fake API server"),
        )
    }

    pub(crate) fn to_value(&self) -> serde_json::Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some((name, group, kind)) = &self.details {
            status["details"] = json!({"name": name, "group": group, "kind": kind});
        }
        status
    }

    pub(crate) fn to_bytes(&self) -> Bytes {
        Bytes::from(self.to_value().to_string())
    }
}
