//! The objects, the global resourceVersion and each kind's change log.
//!
//! Invariants:
//! - `rv` is the resourceVersion of the last write of any kind; every write takes
//!   `rv + 1`, so versions are unique and increase in write order across kinds.
//! - A kind's `log` holds its changes with `rv > compacted`, in rv order; a watch
//!   resuming at a version below `compacted` cannot be served (410 Expired).
//! - An object's `body` is its JSON without `apiVersion` and `kind`, written once per
//!   change, so lists and watches copy bytes instead of serializing.

use super::resources::{builtins, ResourceType};
use super::status::ApiError;
use bytes::Bytes;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

pub(crate) type ResId = usize;
type Key = (String, String);

/// One stored version of an object. `namespace` is `""` for cluster-scoped kinds.
#[derive(Debug)]
pub(crate) struct Obj {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) rv: u64,
    labels: Vec<(String, String)>,
    pub(crate) body: Bytes,
}

impl Obj {
    fn new(namespace: &str, name: &str, rv: u64, value: &Value) -> Obj {
        let labels = value["metadata"]["labels"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect();
        let body = serde_json::to_vec(value).expect("a JSON value serializes");
        Obj {
            namespace: namespace.to_string(),
            name: name.to_string(),
            rv,
            labels,
            body: body.into(),
        }
    }

    pub(crate) fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `{"metadata":{…}}`, for clients that asked for metadata only.
    pub(crate) fn metadata_body(&self) -> Bytes {
        let mut value = self.value();
        let meta = value
            .get_mut("metadata")
            .map(Value::take)
            .unwrap_or_default();
        serde_json::to_vec(&serde_json::json!({ "metadata": meta }))
            .expect("JSON serializes")
            .into()
    }

    /// The stored object without `apiVersion` and `kind`.
    pub(crate) fn value(&self) -> Value {
        serde_json::from_slice(&self.body).expect("stored bodies are JSON")
    }

    #[cfg(test)]
    pub(crate) fn for_test(namespace: &str, name: &str, labels: &[(&str, &str)]) -> Obj {
        let labels: Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        let value = serde_json::json!({"metadata": {"name": name, "labels": labels}});
        Obj::new(namespace, name, 1, &value)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    Added,
    Modified,
    Deleted,
}

/// A change as watchers see it. `prev` lets a filtered watch turn a change that
/// moves an object into or out of its selector into ADDED or DELETED.
pub(crate) struct Entry {
    pub(crate) rv: u64,
    pub(crate) change: Change,
    pub(crate) obj: Arc<Obj>,
    pub(crate) prev: Option<Arc<Obj>>,
}

pub(crate) struct Resource {
    pub(crate) ty: ResourceType,
    pub(crate) installed: bool,
    objects: BTreeMap<Key, Arc<Obj>>,
    pub(crate) log: Vec<Entry>,
}

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// The test's own writes: everything as given, except that leaving `status`
    /// out keeps the stored one.
    All,
    /// Writes to the object: `status` stays as stored (kinds with a status subresource).
    Main,
    /// Writes to `/status`: only `status` changes.
    Status,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Create,
    Update,
    Upsert,
}

pub(crate) struct Write<'a> {
    pub(crate) part: Part,
    pub(crate) mode: Mode,
    /// A server-side apply's field manager and the version it applied with.
    pub(crate) apply: Option<(&'a str, &'a str)>,
}

#[derive(Default)]
pub(crate) struct Preconditions {
    pub(crate) uid: Option<String>,
    pub(crate) resource_version: Option<String>,
}

pub(crate) struct Store {
    resources: Vec<Resource>,
    rv: u64,
    compacted: u64,
}

impl Store {
    pub(crate) fn new() -> Store {
        let mut store = Store {
            resources: Vec::new(),
            rv: 1,
            compacted: 0,
        };
        for ty in builtins() {
            store.register(ty);
        }
        store
    }

    pub(crate) fn rv(&self) -> u64 {
        self.rv
    }

    pub(crate) fn compacted(&self) -> u64 {
        self.compacted
    }

    pub(crate) fn resource(&self, id: ResId) -> &Resource {
        &self.resources[id]
    }

    pub(crate) fn resources(&self) -> impl Iterator<Item = (ResId, &Resource)> {
        self.resources.iter().enumerate()
    }

    /// Adds a kind, or replaces the definition of one with the same name (keeping its
    /// objects), and installs it.
    pub(crate) fn register(&mut self, ty: ResourceType) -> ResId {
        if let Some(id) = self.resources.iter().position(|r| r.ty.name() == ty.name()) {
            self.resources[id].ty = ty;
            self.resources[id].installed = true;
            return id;
        }
        let objects = BTreeMap::new();
        self.resources.push(Resource {
            ty,
            installed: true,
            objects,
            log: Vec::new(),
        });
        self.resources.len() - 1
    }

    /// `plural` (core), `plural.group`, or a plural only one group uses.
    pub(crate) fn find(&self, name: &str) -> Result<ResId, String> {
        if let Some(id) = self.resources.iter().position(|r| r.ty.name() == name) {
            return Ok(id);
        }
        let mut by_plural = self
            .resources
            .iter()
            .enumerate()
            .filter(|(_, r)| r.ty.plural == name);
        match (by_plural.next(), by_plural.next()) {
            (Some((id, _)), None) => Ok(id),
            (Some(_), Some(_)) => Err(format!("{name:?} is ambiguous: say plural.group")),
            _ => Err(format!("no kind {name:?} is registered")),
        }
    }

    pub(crate) fn by_path(&self, group: &str, version: &str, plural: &str) -> Option<ResId> {
        self.resources
            .iter()
            .position(|r| r.ty.group == group && r.ty.plural == plural && r.ty.serves(version))
    }

    pub(crate) fn by_kind(&self, api_version: &str, kind: &str) -> Option<ResId> {
        self.resources
            .iter()
            .position(|r| r.ty.kind == kind && r.ty.version_of(api_version).is_some())
    }

    pub(crate) fn get(&self, id: ResId, namespace: &str, name: &str) -> Option<&Arc<Obj>> {
        self.resources[id]
            .objects
            .get(&(namespace.to_string(), name.to_string()))
    }

    /// Objects in key order (namespace, name), in one namespace or all, starting
    /// after `after`.
    pub(crate) fn scan<'a>(
        &'a self,
        id: ResId,
        namespace: Option<&'a str>,
        after: Option<Key>,
    ) -> impl Iterator<Item = &'a Arc<Obj>> + 'a {
        let first = namespace.map(|ns| (ns.to_string(), String::new()));
        let start = match (after, first) {
            (Some(after), Some(first)) if after < first => Bound::Included(first),
            (Some(after), _) => Bound::Excluded(after),
            (None, Some(first)) => Bound::Included(first),
            (None, None) => Bound::Unbounded,
        };
        self.resources[id]
            .objects
            .range((start, Bound::Unbounded))
            .take_while(move |((ns, _), _)| namespace.is_none_or(|want| want == ns))
            .map(|(_, obj)| obj)
    }

    /// Creates or changes one object: `edit` gets the stored object (without
    /// `apiVersion`/`kind`) and returns the new one. A write that changes nothing
    /// returns the stored object without a new resourceVersion or an event, as the
    /// API server does. The flag says whether the object was created.
    pub(crate) fn write(
        &mut self,
        id: ResId,
        namespace: &str,
        name: &str,
        write: &Write<'_>,
        edit: impl FnOnce(Option<&Value>) -> Result<Value, ApiError>,
    ) -> Result<(Arc<Obj>, bool), ApiError> {
        let key = (namespace.to_string(), name.to_string());
        let resource = &self.resources[id];
        let ty = &resource.ty;
        let old = resource.objects.get(&key).cloned();
        match (&old, write.mode) {
            (Some(_), Mode::Create) => return Err(ApiError::already_exists(ty, name)),
            (None, Mode::Update) => return Err(ApiError::not_found(ty, name)),
            _ => {}
        }
        let old_value = old.as_ref().map(|o| o.value());
        let mut new = edit(old_value.as_ref())?;
        strip_type(ty, name, &mut new)?;
        set_name(ty, namespace, name, &mut new)?;
        if ty.status {
            match (write.part, &old_value) {
                (Part::Main, Some(old)) => {
                    set_field(&mut new, "status", old.get("status").cloned())
                }
                (Part::Main, None) => set_field(&mut new, "status", None),
                (Part::Status, Some(old)) => {
                    let status = new.get("status").cloned();
                    new = old.clone();
                    set_field(&mut new, "status", status);
                }
                _ => {}
            }
        }
        if write.part == Part::All {
            // Like `kubectl apply` beside a controller writing status: a test that
            // leaves `status` out keeps the stored one; `null` removes it.
            match (new.get("status"), &old_value) {
                (None, Some(old)) => set_field(&mut new, "status", old.get("status").cloned()),
                (Some(Value::Null), _) => set_field(&mut new, "status", None),
                _ => {}
            }
        }
        let generation = match &old_value {
            None => 1,
            Some(stored) => {
                copy_system_metadata(stored, &mut new);
                if new == *stored {
                    return Ok((old.expect("an object was stored"), false));
                }
                let generation = stored["metadata"]["generation"].as_i64().unwrap_or(1);
                generation + i64::from(spec_changed(stored, &new))
            }
        };
        let rv = self.rv + 1;
        let meta = metadata(&mut new);
        if old_value.is_none() {
            meta.insert("uid".into(), new_uid().into());
            meta.insert("creationTimestamp".into(), now().into());
        }
        meta.insert("generation".into(), generation.into());
        meta.insert("resourceVersion".into(), rv.to_string().into());
        if let Some((manager, version)) = write.apply {
            record_manager(
                meta,
                manager,
                &self.resources[id].ty.api_version(version),
                write.part,
            );
        }
        self.rv = rv;
        let obj = Arc::new(Obj::new(namespace, name, rv, &new));
        let resource = &mut self.resources[id];
        if finalized(&new) {
            // The last finalizer of an object being deleted is gone: it goes.
            resource.objects.remove(&key);
            resource.log.push(Entry {
                rv,
                change: Change::Deleted,
                obj: obj.clone(),
                prev: old,
            });
            return Ok((obj, false));
        }
        resource.objects.insert(key, obj.clone());
        let change = if old.is_some() {
            Change::Modified
        } else {
            Change::Added
        };
        resource.log.push(Entry {
            rv,
            change,
            obj: obj.clone(),
            prev: old,
        });
        Ok((obj, change == Change::Added))
    }

    pub(crate) fn delete(
        &mut self,
        id: ResId,
        namespace: &str,
        name: &str,
        pre: &Preconditions,
    ) -> Result<Arc<Obj>, ApiError> {
        let key = (namespace.to_string(), name.to_string());
        let resource = &mut self.resources[id];
        let ty = &resource.ty;
        let old = resource
            .objects
            .get(&key)
            .ok_or_else(|| ApiError::not_found(ty, name))?;
        let mut value = old.value();
        let stored_uid = value["metadata"]["uid"].as_str().unwrap_or_default();
        if pre.uid.as_deref().is_some_and(|uid| uid != stored_uid) {
            let what = format!(
                "UID in precondition: {:?}, UID in object meta: {stored_uid}",
                pre.uid
            );
            return Err(ApiError::precondition(ty, name, &what));
        }
        if pre
            .resource_version
            .as_deref()
            .is_some_and(|rv| rv != old.rv.to_string())
        {
            return Err(ApiError::conflict(ty, name));
        }
        if has_finalizers(&value) {
            // As the API server does: marked for deletion, kept until the
            // finalizers' owners remove them.
            if value["metadata"].get("deletionTimestamp").is_none() {
                let old = old.clone();
                self.rv += 1;
                let meta = metadata(&mut value);
                meta.insert("deletionTimestamp".into(), now().into());
                meta.insert("resourceVersion".into(), self.rv.to_string().into());
                let obj = Arc::new(Obj::new(namespace, name, self.rv, &value));
                let resource = &mut self.resources[id];
                resource.objects.insert(key, obj.clone());
                resource.log.push(Entry {
                    rv: self.rv,
                    change: Change::Modified,
                    obj: obj.clone(),
                    prev: Some(old),
                });
                return Ok(obj);
            }
            return Ok(old.clone());
        }
        let old = resource.objects.remove(&key).expect("looked up above");
        self.rv += 1;
        metadata(&mut value).insert("resourceVersion".into(), self.rv.to_string().into());
        let obj = Arc::new(Obj::new(namespace, name, self.rv, &value));
        let entry = Entry {
            rv: self.rv,
            change: Change::Deleted,
            obj: obj.clone(),
            prev: Some(old),
        };
        self.resources[id].log.push(entry);
        Ok(obj)
    }

    /// Drops every kind's history: resuming a watch or a paged list from before now
    /// answers 410 Expired.
    pub(crate) fn compact(&mut self) {
        self.compacted = self.rv;
        for resource in &mut self.resources {
            resource.log = Vec::new();
        }
    }

    /// Like deleting a CRD: its objects are deleted (watchers see DELETED events)
    /// and its paths answer 404.
    pub(crate) fn uninstall(&mut self, id: ResId) {
        let keys: Vec<Key> = self.resources[id].objects.keys().cloned().collect();
        for (namespace, name) in keys {
            self.delete(id, &namespace, &name, &Preconditions::default())
                .expect("listed above");
        }
        self.resources[id].installed = false;
    }

    pub(crate) fn install(&mut self, id: ResId) {
        self.resources[id].installed = true;
    }
}

/// Checks `apiVersion`/`kind` name this kind, then drops them: the store keeps one
/// copy for all versions.
fn strip_type(ty: &ResourceType, name: &str, value: &mut Value) -> Result<(), ApiError> {
    let Some(object) = value.as_object_mut() else {
        return Err(ApiError::bad_request("the object is not a JSON object"));
    };
    if let Some(api_version) = object.remove("apiVersion") {
        let api_version = api_version.as_str().unwrap_or_default();
        if ty.version_of(api_version).is_none() {
            let message = format!("apiVersion {api_version:?} does not serve {}", ty.name());
            return Err(ApiError::bad_request(message));
        }
    }
    if let Some(kind) = object.remove("kind") {
        if kind.as_str() != Some(ty.kind.as_str()) {
            return Err(ApiError::invalid(
                ty,
                name,
                format!("kind {kind} is not {}", ty.kind),
            ));
        }
    }
    Ok(())
}

fn set_name(
    ty: &ResourceType,
    namespace: &str,
    name: &str,
    value: &mut Value,
) -> Result<(), ApiError> {
    let meta = metadata(value);
    match meta.get("name").and_then(Value::as_str) {
        Some(given) if given != name => {
            let message = format!(
                "the name of the object ({given}) does not match the name on the URL ({name})"
            );
            return Err(ApiError::bad_request(message));
        }
        Some(_) => None,
        None => meta.insert("name".into(), name.into()),
    };
    if !ty.namespaced {
        meta.remove("namespace");
        return Ok(());
    }
    match meta.get("namespace").and_then(Value::as_str) {
        Some(given) if !given.is_empty() && given != namespace => {
            let message = "the namespace of the provided object does not match the namespace sent on the request";
            Err(ApiError::bad_request(message))
        }
        Some(given) if given == namespace => Ok(()),
        _ => {
            meta.insert("namespace".into(), namespace.into());
            Ok(())
        }
    }
}

/// Keeps what the server owns (uid, creation time, version, generation) and, when a
/// write leaves `managedFields` out, the stored ones, as the API server does.
fn has_finalizers(object: &Value) -> bool {
    object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
}

/// Marked for deletion, and nothing holds it any more.
fn finalized(object: &Value) -> bool {
    object["metadata"].get("deletionTimestamp").is_some() && !has_finalizers(object)
}

fn copy_system_metadata(old: &Value, new: &mut Value) {
    let old_meta = &old["metadata"];
    let meta = metadata(new);
    for field in [
        "uid",
        "creationTimestamp",
        "resourceVersion",
        "generation",
        "deletionTimestamp",
    ] {
        match old_meta.get(field) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
    if !meta.contains_key("managedFields") {
        if let Some(fields) = old_meta.get("managedFields") {
            meta.insert("managedFields".into(), fields.clone());
        }
    }
}

/// Whether anything outside `metadata` and `status` changed: what moves `generation`.
fn spec_changed(old: &Value, new: &Value) -> bool {
    let outside = |v: &Value| -> Vec<(String, Value)> {
        v.as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| *k != "metadata" && *k != "status")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    outside(old) != outside(new)
}

/// An Apply entry per manager and subresource; nothing tracks which fields it owns.
fn record_manager(meta: &mut Map<String, Value>, manager: &str, api_version: &str, part: Part) {
    let subresource = if part == Part::Status { "status" } else { "" };
    let entry = serde_json::json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": api_version,
        "time": now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": {},
        "subresource": subresource,
    });
    let fields = meta
        .entry("managedFields")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !fields.is_array() {
        *fields = Value::Array(Vec::new());
    }
    let fields = fields.as_array_mut().expect("made an array above");
    let same = |f: &Value| {
        f["manager"] == manager
            && f["operation"] == "Apply"
            && f["subresource"].as_str().unwrap_or("") == subresource
    };
    match fields.iter_mut().find(|f| same(f)) {
        Some(existing) => *existing = entry,
        None => fields.push(entry),
    }
}

pub(crate) fn metadata(value: &mut Value) -> &mut Map<String, Value> {
    let object = value.as_object_mut().expect("checked to be an object");
    if !object.get("metadata").is_some_and(Value::is_object) {
        object.insert("metadata".into(), Value::Object(Map::new()));
    }
    let meta = object.get_mut("metadata").expect("inserted above");
    meta.as_object_mut().expect("made an object above")
}

fn set_field(value: &mut Value, field: &str, to: Option<Value>) {
    let object = value.as_object_mut().expect("checked to be an object");
    match to {
        Some(v) => object.insert(field.into(), v),
        None => object.remove(field),
    };
}

fn new_uid() -> String {
    let n: u128 = rand::random();
    let hex = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Kubernetes `Time`: RFC 3339 in whole seconds.
fn now() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .expect("now is in range")
        .to_string()
}
