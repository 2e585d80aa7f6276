//! PATCH bodies. JSON merge patch (RFC 7386) is exact. Strategic merge patch is
//! treated as a merge patch, and server-side apply as a merge patch that records
//! its field manager: lists are replaced whole and no field ownership or
//! conflicts are tracked, which is what one writer per object needs.

use super::status::ApiError;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchType {
    Merge,
    Apply,
}

impl PatchType {
    pub(crate) fn from_content_type(content_type: Option<&str>) -> Result<PatchType, ApiError> {
        let mime = content_type
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim();
        match mime {
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                Ok(PatchType::Merge)
            }
            "application/apply-patch+yaml" => Ok(PatchType::Apply),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }

    /// The patch document: JSON, or for apply YAML (of which JSON is a subset).
    pub(crate) fn parse(self, body: &[u8]) -> Result<Value, ApiError> {
        let value: Value =
            match self {
                PatchType::Merge => serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
                PatchType::Apply => serde_yaml_ng::from_slice(body)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
            };
        if !value.is_object() {
            return Err(ApiError::bad_request("a patch must be a JSON object"));
        }
        Ok(value)
    }
}

/// RFC 7386: objects merge key by key, `null` removes, anything else replaces.
pub(crate) fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge(
            &mut doc,
            &json!({"a": "z", "c": {"f": null}, "l": [3], "n": {"x": 1}}),
        );
        assert_eq!(
            doc,
            json!({"a": "z", "c": {"d": "e"}, "l": [3], "n": {"x": 1}})
        );
    }

    #[test]
    fn content_types() {
        let t = |c| PatchType::from_content_type(Some(c)).map_err(|e| e.code);
        assert_eq!(t("application/merge-patch+json"), Ok(PatchType::Merge));
        assert_eq!(
            t("application/strategic-merge-patch+json; charset=utf-8"),
            Ok(PatchType::Merge)
        );
        assert_eq!(t("application/apply-patch+yaml"), Ok(PatchType::Apply));
        assert_eq!(t("application/json-patch+json"), Err(415));
    }
}
