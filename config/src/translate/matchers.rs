//! Compiling match conditions, with errors located at their field.

use crate::istio::StringMatchSpec;
use crate::Diagnostic;
use waypoint_ir::{Pattern, ResourceRef, StringMatch};

/// Where the resource being translated lives, for diagnostics.
pub struct At<'a> {
    pub file: &'a str,
    pub id: &'a ResourceRef,
}

impl At<'_> {
    pub fn error(&self, field: impl Into<String>, msg: impl Into<String>) -> Diagnostic {
        Diagnostic::error(self.file, Some(self.id), field, msg)
    }
    pub fn warning(&self, field: impl Into<String>, msg: impl Into<String>) -> Diagnostic {
        Diagnostic::warning(self.file, Some(self.id), field, msg)
    }
}

pub fn regex(
    at: &At<'_>,
    field: &str,
    source: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Pattern> {
    match Pattern::new(source) {
        Ok(p) => Some(p),
        Err(_) => {
            // Report the user's pattern, not our anchored wrapper, on one line.
            let why = match regex::Regex::new(source) {
                Err(regex::Error::Syntax(msg)) => msg
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim_start_matches("error: ")
                    .to_string(),
                Err(e) => e.to_string(),
                Ok(_) => "not usable as a full-match pattern".into(),
            };
            diags.push(at.error(field, format!("invalid regex {source:?}: {why}")));
            None
        }
    }
}

/// Istio's `StringMatch`; exactly one of exact/prefix/regex, or none for "present".
pub fn istio_string(
    at: &At<'_>,
    field: &str,
    m: &StringMatchSpec,
    diags: &mut Vec<Diagnostic>,
) -> Option<StringMatch> {
    match (&m.exact, &m.prefix, &m.regex) {
        (None, None, None) => Some(StringMatch::Present),
        (Some(e), None, None) => Some(StringMatch::Exact(e.clone())),
        (None, Some(p), None) => Some(StringMatch::Prefix(p.clone())),
        (None, None, Some(r)) => {
            regex(at, &format!("{field}.regex"), r, diags).map(StringMatch::Regex)
        }
        _ => {
            diags.push(at.error(field, "set only one of exact, prefix, regex"));
            None
        }
    }
}
