//! Label and field selectors, applied server-side to lists and watches as the API
//! server applies them, so a source that filters by label gets only what it asked
//! for and a test can tell.

use super::store::Obj;

/// Which objects a list or watch returns.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    pub(crate) namespace: Option<String>,
    labels: Vec<Requirement>,
    fields: Vec<Field>,
}

#[derive(Debug)]
struct Requirement {
    key: String,
    op: Op,
}

#[derive(Debug)]
enum Op {
    Exists,
    NotExists,
    In(Vec<String>),
    NotIn(Vec<String>),
}

#[derive(Debug)]
struct Field {
    name: bool,
    value: String,
    equal: bool,
}

impl Filter {
    /// Errors are the message of a 400 BadRequest.
    pub(crate) fn new(
        namespace: Option<String>,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> Result<Filter, String> {
        Ok(Filter {
            namespace,
            labels: labels.map(parse_labels).transpose()?.unwrap_or_default(),
            fields: fields.map(parse_fields).transpose()?.unwrap_or_default(),
        })
    }

    pub(crate) fn matches(&self, obj: &Obj) -> bool {
        if self
            .namespace
            .as_ref()
            .is_some_and(|ns| *ns != obj.namespace)
        {
            return false;
        }
        let fields = self.fields.iter().all(|f| {
            let actual = if f.name { &obj.name } else { &obj.namespace };
            (*actual == f.value) == f.equal
        });
        fields && self.labels.iter().all(|r| r.matches(obj.label(&r.key)))
    }
}

impl Requirement {
    fn matches(&self, value: Option<&str>) -> bool {
        match (&self.op, value) {
            (Op::Exists, v) => v.is_some(),
            (Op::NotExists, v) => v.is_none(),
            (Op::In(set), Some(v)) => set.iter().any(|s| s == v),
            (Op::In(_), None) => false,
            (Op::NotIn(set), Some(v)) => !set.iter().any(|s| s == v),
            (Op::NotIn(_), None) => true,
        }
    }
}

/// `k`, `!k`, `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, comma-joined.
fn parse_labels(selector: &str) -> Result<Vec<Requirement>, String> {
    let mut out = Vec::new();
    for term in split_top_level(selector) {
        let term = term.trim();
        if term.is_empty() {
            continue;
        }
        let invalid = || format!("unable to parse requirement: {term:?}");
        let requirement = if let Some(key) = term.strip_prefix('!') {
            Requirement {
                key: key.trim().to_string(),
                op: Op::NotExists,
            }
        } else if let Some((head, values)) = term.split_once('(') {
            let values = values.strip_suffix(')').ok_or_else(invalid)?;
            let values = values.split(',').map(|v| v.trim().to_string()).collect();
            let (key, op) = head
                .trim()
                .rsplit_once(char::is_whitespace)
                .ok_or_else(invalid)?;
            let op = match op {
                "in" => Op::In(values),
                "notin" => Op::NotIn(values),
                _ => return Err(invalid()),
            };
            Requirement {
                key: key.trim().to_string(),
                op,
            }
        } else if let Some((key, value)) = term.split_once("!=") {
            Requirement {
                key: key.trim().to_string(),
                op: Op::NotIn(vec![value.trim().to_string()]),
            }
        } else if let Some((key, value)) = term.split_once('=') {
            let value = value.strip_prefix('=').unwrap_or(value);
            Requirement {
                key: key.trim().to_string(),
                op: Op::In(vec![value.trim().to_string()]),
            }
        } else {
            Requirement {
                key: term.to_string(),
                op: Op::Exists,
            }
        };
        if requirement.key.is_empty() || requirement.key.contains(char::is_whitespace) {
            return Err(invalid());
        }
        out.push(requirement);
    }
    Ok(out)
}

/// Commas inside `in (...)` sets do not separate requirements.
fn split_top_level(selector: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0u32, 0, Vec::new());
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&selector[start..]);
    out
}

/// The name a field selector requires (`metadata.name=x` among its terms):
/// what the API server authorizes a list or watch as, since Kubernetes 1.11.
pub(crate) fn required_name(selector: &str) -> Option<String> {
    let fields = parse_fields(selector).ok()?;
    fields
        .into_iter()
        .find(|f| f.name && f.equal)
        .map(|f| f.value)
}

/// Only the fields every kind supports; the API server answers 400 for a field a
/// kind does not index, and so does this.
fn parse_fields(selector: &str) -> Result<Vec<Field>, String> {
    let mut out = Vec::new();
    for term in selector.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (path, value, equal) = if let Some((p, v)) = term.split_once("!=") {
            (p, v, false)
        } else if let Some((p, v)) = term.split_once('=') {
            (p, v.strip_prefix('=').unwrap_or(v), true)
        } else {
            return Err(format!("invalid field selector: {term:?}"));
        };
        let name = match path.trim() {
            "metadata.name" => true,
            "metadata.namespace" => false,
            other => return Err(format!("field label not supported: {other}")),
        };
        out.push(Field {
            name,
            value: value.trim().to_string(),
            equal,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(selector: &str, labels: &[(&str, &str)]) -> bool {
        let filter = Filter::new(None, Some(selector), None).unwrap();
        let obj = Obj::for_test("ns", "n", labels);
        filter.matches(&obj)
    }

    #[test]
    fn label_operators() {
        let l = [("app", "a"), ("tier", "web")];
        assert!(matches("", &l));
        assert!(matches("app", &l));
        assert!(!matches("!app", &l));
        assert!(matches("!missing", &l));
        assert!(matches("app=a", &l) && matches("app==a", &l) && matches("app = a", &l));
        assert!(!matches("app=b", &l));
        assert!(matches("app!=b", &l) && matches("missing!=b", &l) && !matches("app!=a", &l));
        assert!(matches("app=a,tier=web", &l) && !matches("app=a,tier=db", &l));
        assert!(matches("tier in (db, web),app", &l) && !matches("tier in (db)", &l));
        assert!(matches("tier notin (db)", &l) && matches("x notin (db)", &l));
        assert!(!matches("tier notin (web,db)", &l));
    }

    #[test]
    fn bad_selectors_are_rejected() {
        assert!(Filter::new(None, Some("a b"), None).is_err());
        assert!(Filter::new(None, Some("a in b"), None).is_err());
        assert!(Filter::new(None, Some("a foo (b)"), None).is_err());
        assert!(Filter::new(None, None, Some("spec.nodeName=x")).is_err());
    }

    #[test]
    fn field_selectors_on_name_and_namespace() {
        let obj = Obj::for_test("ns", "n", &[]);
        let f = |s| Filter::new(None, None, Some(s)).unwrap().matches(&obj);
        assert!(f("metadata.name=n") && f("metadata.name==n") && !f("metadata.name=m"));
        assert!(f("metadata.namespace=ns,metadata.name!=m") && !f("metadata.namespace!=ns"));
    }

    #[test]
    fn a_list_selecting_one_name_is_named() {
        let name = required_name;
        assert_eq!(name("metadata.name=istio").as_deref(), Some("istio"));
        assert_eq!(
            name("metadata.namespace=a,metadata.name==istio").as_deref(),
            Some("istio")
        );
        assert_eq!(name("metadata.name!=istio"), None);
        assert_eq!(name("metadata.namespace=a"), None);
    }
}
