//! Diagnostics: what is wrong, and exactly where.

use std::fmt;
use waypoint_ir::ResourceRef;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The config cannot be used.
    Error,
    /// Loaded, but not everything as written (a shadowed route, an unknown backend).
    Warning,
    /// A security policy the waypoint cannot enforce exactly. It stays in
    /// force in a fail-closed form (see `AuthzPolicy::fail_closed`) and the
    /// load goes on: failing the load would keep the last good snapshot, and
    /// rejecting the resource would drop it, and either lets through what a
    /// new DENY denies. As loud as an error everywhere else.
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub resource: Option<ResourceRef>,
    /// Field path inside the resource, e.g. `spec.http[0].route[1].weight`.
    pub field: String,
    pub message: String,
    pub severity: Severity,
}

impl Diagnostic {
    pub fn error(
        file: &str,
        resource: Option<&ResourceRef>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.to_string(),
            resource: resource.cloned(),
            field: field.into(),
            message: message.into(),
            severity: Severity::Error,
        }
    }

    pub fn refused(
        file: &str,
        resource: Option<&ResourceRef>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Refused,
            ..Diagnostic::error(file, resource, field, message)
        }
    }

    pub fn warning(
        file: &str,
        resource: Option<&ResourceRef>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, resource, field, message)
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Objects from the Kubernetes API have no file: their resource names them.
        let mut sep = "";
        if !self.file.is_empty() {
            write!(f, "{}", self.file)?;
            sep = ": ";
        }
        if let Some(r) = &self.resource {
            write!(f, "{sep}{r}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}
