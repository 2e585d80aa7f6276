//! One request: the path and method become an API verb on a kind, answered as the
//! API server answers it, and logged.

use super::body::{Body, ListBody, View};
use super::discovery;
use super::patch::{merge, PatchType};
use super::requests::{Request, Verb};
use super::resources::ResourceType;
use super::route::{self, Query, ResourcePath, Target};
use super::selector::Filter;
use super::status::ApiError;
use super::store::{Mode, Obj, Part, Preconditions, ResId, Write};
use super::watch::{self, Start, WatchRequest};
use super::Shared;
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// What a watch without `timeoutSeconds` gets; kube always sends one (290 s).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

type Answer = Result<Response<Body>, ApiError>;

pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: http::Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, incoming) = req.into_parts();
    let body = incoming
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let raw_query = parts.uri.query().unwrap_or("");
    let query = Query::parse(raw_query);
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut log = Request {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        query: raw_query.to_string(),
        verb: Verb::Other,
        resource: None,
        namespace: None,
        name: None,
        subresource: None,
        content_type,
        field_manager: query.get("fieldManager").map(str::to_string),
        body: None,
        code: 0,
    };
    let answer = match route::target(parts.uri.path()) {
        Target::Resource(target) => {
            let accept = parts.headers.get(ACCEPT).and_then(|v| v.to_str().ok());
            on_resource(
                &shared,
                &parts.method,
                &target,
                &query,
                accept,
                &body,
                &mut log,
            )
        }
        Target::Discovery(d) => {
            log.verb = Verb::Discovery;
            discovery::answer(&shared, &d)
        }
        Target::Unknown => Err(ApiError::no_resource()),
    };
    let response = answer.unwrap_or_else(|e| json_response(e.code, e.to_bytes()));
    log.code = response.status().as_u16();
    shared.requests.lock().expect("request log lock").push(log);
    Ok(response)
}

pub(crate) fn json_response(code: u16, body: Bytes) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(CONTENT_TYPE, "application/json")
        .body(Body::full(body))
        .expect("a valid response")
}

/// A request on a kind, with what every verb needs.
struct Op<'a> {
    shared: &'a Arc<Shared>,
    id: ResId,
    ty: ResourceType,
    version: &'a str,
    view: View,
    namespace: Option<&'a str>,
    query: &'a Query,
}

fn on_resource(
    shared: &Arc<Shared>,
    method: &Method,
    t: &ResourcePath<'_>,
    query: &Query,
    accept: Option<&str>,
    body: &Bytes,
    log: &mut Request,
) -> Answer {
    let (id, ty) = {
        let st = shared.lock();
        let id = st.store.by_path(t.group, t.version, t.plural);
        let id = id
            .filter(|id| st.store.resource(*id).installed)
            .ok_or_else(ApiError::no_resource)?;
        (id, st.store.resource(id).ty.clone())
    };
    log.resource = Some(ty.name());
    log.namespace = t.namespace.map(str::to_string);
    log.name = t.name.map(str::to_string);
    log.subresource = t.sub.map(str::to_string);
    // Namespaced kinds are listed and watched across namespaces without one;
    // cluster-scoped kinds never take one.
    let scope_ok = match (ty.namespaced, t.namespace) {
        (true, None) => t.name.is_none(),
        (true, Some(_)) => true,
        (false, ns) => ns.is_none(),
    };
    let sub_ok = t.sub.is_none_or(|sub| sub == "status" && ty.status);
    if !scope_ok || !sub_ok {
        return Err(ApiError::no_resource());
    }
    let part = if t.sub.is_some() {
        Part::Status
    } else {
        Part::Main
    };
    let view = View::new(&ty, t.version, accept);
    let op = Op {
        shared,
        id,
        ty,
        version: t.version,
        view,
        namespace: t.namespace,
        query,
    };
    let creatable = t.namespace.is_some() || !op.ty.namespaced;
    if *method == Method::GET && t.name.is_none() {
        // As the API server's RequestInfo names a list or watch, for RBAC's
        // `resourceNames`.
        log.name = query
            .get("fieldSelector")
            .and_then(super::selector::required_name);
    }
    match (method, t.name) {
        (&Method::GET, None) if query.flag("watch") => {
            log.verb = Verb::Watch;
            op.watch()
        }
        (&Method::GET, None) => {
            log.verb = Verb::List;
            op.list()
        }
        (&Method::POST, None) if creatable => {
            log.verb = Verb::Create;
            op.create(parse_json(body, log)?)
        }
        (&Method::DELETE, None) => {
            log.verb = Verb::DeleteCollection;
            op.delete_collection()
        }
        (&Method::GET, Some(name)) => {
            log.verb = Verb::Get;
            op.get(name)
        }
        (&Method::PUT, Some(name)) => {
            log.verb = Verb::Update;
            op.replace(name, part, parse_json(body, log)?)
        }
        (&Method::PATCH, Some(name)) => {
            log.verb = Verb::Patch;
            let patch_type = PatchType::from_content_type(log.content_type.as_deref())?;
            let patch = patch_type.parse(body)?;
            log.body = Some(patch.clone());
            op.patch(name, part, patch_type, patch)
        }
        (&Method::DELETE, Some(name)) if part == Part::Main => {
            log.verb = Verb::Delete;
            op.delete(name, body)
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn parse_json(body: &[u8], log: &mut Request) -> Result<Value, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    log.body = Some(value.clone());
    Ok(value)
}

impl Op<'_> {
    fn filter(&self) -> Result<Filter, ApiError> {
        let (labels, fields) = (
            self.query.get("labelSelector"),
            self.query.get("fieldSelector"),
        );
        Filter::new(self.namespace.map(str::to_string), labels, fields)
            .map_err(ApiError::bad_request)
    }

    fn object(&self, code: u16, obj: &Obj) -> Answer {
        Ok(json_response(code, self.view.object(obj)))
    }

    fn reject_dry_run(&self) -> Result<(), ApiError> {
        match self.query.get("dryRun") {
            Some(_) => Err(ApiError::not_supported("dryRun")),
            None => Ok(()),
        }
    }

    /// Pages follow `limit`; a continue token names the list's resourceVersion and
    /// the last key served, so later pages read current objects after that key and
    /// report the first page's version (a watch from it replays anything missed).
    fn list(&self) -> Answer {
        let filter = self.filter()?;
        let limit = match self.query.get("limit") {
            Some(l) => Some(
                l.parse::<usize>()
                    .map_err(|e| ApiError::bad_request(format!("limit: {e}")))?,
            ),
            None => None,
        };
        let limit = limit.filter(|l| *l > 0);
        let from = self
            .query
            .get("continue")
            .filter(|c| !c.is_empty())
            .map(parse_continue)
            .transpose()?;
        let st = self.shared.lock();
        let list_rv = match &from {
            Some((rv, _)) if *rv < st.store.compacted() => {
                return Err(ApiError::expired(CONTINUE_EXPIRED))
            }
            Some((rv, _)) => *rv,
            None => st.store.rv(),
        };
        let after = from.map(|(_, key)| key);
        let take = limit.map_or(usize::MAX, |l| l + 1);
        let scan = st.store.scan(self.id, self.namespace, after);
        let mut items: Vec<Arc<Obj>> = scan
            .filter(|o| filter.matches(o))
            .take(take)
            .cloned()
            .collect();
        drop(st);
        let mut meta = json!({"resourceVersion": list_rv.to_string()});
        if let Some(limit) = limit.filter(|l| items.len() > *l) {
            items.truncate(limit);
            let last = items.last().expect("limit is positive");
            meta["continue"] = format!("{list_rv}/{}/{}", last.namespace, last.name).into();
        }
        let list = ListBody::new(self.view.clone(), &meta.to_string(), items);
        let response = Response::builder()
            .header(CONTENT_TYPE, "application/json")
            .body(Body::List(list));
        Ok(response.expect("a valid response"))
    }

    fn watch(&self) -> Answer {
        let rv = self.query.get("resourceVersion").unwrap_or("");
        let from_now = rv.is_empty() || rv == "0";
        let initial = self
            .query
            .get("sendInitialEvents")
            .map(|v| v == "true" || v == "1");
        let start =
            match (initial, from_now) {
                (Some(true), _) => Start::Current {
                    objects: true,
                    mark_end: true,
                },
                (Some(false), true) => Start::Current {
                    objects: false,
                    mark_end: false,
                },
                (None, true) => Start::Current {
                    objects: true,
                    mark_end: false,
                },
                (_, false) => Start::After(rv.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))
                })?),
            };
        let timeout = self
            .query
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .map(Duration::from_secs);
        let req = WatchRequest {
            res: self.id,
            view: self.view.clone(),
            filter: self.filter()?,
            start,
            bookmarks: self.query.flag("allowWatchBookmarks"),
            timeout: timeout.unwrap_or(DEFAULT_WATCH_TIMEOUT),
        };
        let body = watch::start(self.shared, req);
        let response = Response::builder()
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        Ok(response.expect("a valid response"))
    }

    fn get(&self, name: &str) -> Answer {
        let st = self.shared.lock();
        let obj = st.store.get(self.id, self.namespace.unwrap_or(""), name);
        let obj = obj.ok_or_else(|| ApiError::not_found(&self.ty, name))?;
        self.object(200, obj)
    }

    fn create(&self, value: Value) -> Answer {
        self.reject_dry_run()?;
        let meta = &value["metadata"];
        let name = match (meta["name"].as_str(), meta["generateName"].as_str()) {
            (Some(name), _) if !name.is_empty() => name.to_string(),
            (_, Some(prefix)) if !prefix.is_empty() => format!("{prefix}{}", random_suffix()),
            _ => {
                return Err(ApiError::invalid(
                    &self.ty,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ))
            }
        };
        let write = Write {
            part: Part::Main,
            mode: Mode::Create,
            apply: None,
        };
        let (obj, _) = self.write(&name, &write, |_| Ok(value))?;
        self.object(201, &obj)
    }

    fn replace(&self, name: &str, part: Part, value: Value) -> Answer {
        self.reject_dry_run()?;
        let write = Write {
            part,
            mode: Mode::Update,
            apply: None,
        };
        let (obj, _) = self.write(name, &write, |old| {
            preconditions(&self.ty, name, old, &value)?;
            Ok(value)
        })?;
        self.object(200, &obj)
    }

    fn patch(&self, name: &str, part: Part, patch_type: PatchType, patch: Value) -> Answer {
        self.reject_dry_run()?;
        let mut write = Write {
            part,
            mode: Mode::Update,
            apply: None,
        };
        if patch_type == PatchType::Apply {
            let manager = self.query.get("fieldManager").filter(|m| !m.is_empty()).ok_or_else(|| {
                ApiError::bad_request("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch")
            })?;
            let api_version = self.ty.api_version(self.version);
            if patch["apiVersion"] != api_version.as_str() || patch["kind"] != self.ty.kind.as_str()
            {
                let message = format!(
                    "an apply patch must set apiVersion {api_version:?} and kind {:?}",
                    self.ty.kind
                );
                return Err(ApiError::bad_request(message));
            }
            write.apply = Some((manager, self.version));
            if part == Part::Main {
                write.mode = Mode::Upsert;
            }
        }
        let (obj, created) = self.write(name, &write, |old| {
            preconditions(&self.ty, name, old, &patch)?;
            let mut value = old.cloned().unwrap_or_else(|| json!({}));
            merge(&mut value, &patch);
            Ok(value)
        })?;
        self.object(if created { 201 } else { 200 }, &obj)
    }

    fn write(
        &self,
        name: &str,
        write: &Write<'_>,
        edit: impl FnOnce(Option<&Value>) -> Result<Value, ApiError>,
    ) -> Result<(Arc<Obj>, bool), ApiError> {
        let written = self.shared.lock().store.write(
            self.id,
            self.namespace.unwrap_or(""),
            name,
            write,
            edit,
        );
        self.shared.notify();
        written
    }

    fn delete(&self, name: &str, body: &[u8]) -> Answer {
        self.reject_dry_run()?;
        let options: Value = match body {
            [] => json!({}),
            body => {
                serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))?
            }
        };
        if options["dryRun"].as_array().is_some_and(|d| !d.is_empty()) {
            return Err(ApiError::not_supported("dryRun"));
        }
        let pre = &options["preconditions"];
        let pre = Preconditions {
            uid: pre["uid"].as_str().map(str::to_string),
            resource_version: pre["resourceVersion"].as_str().map(str::to_string),
        };
        let deleted =
            self.shared
                .lock()
                .store
                .delete(self.id, self.namespace.unwrap_or(""), name, &pre);
        self.shared.notify();
        let deleted = deleted?;
        self.object(200, &deleted)
    }

    fn delete_collection(&self) -> Answer {
        self.reject_dry_run()?;
        let filter = self.filter()?;
        let mut st = self.shared.lock();
        let keys: Vec<(String, String)> = st
            .store
            .scan(self.id, self.namespace, None)
            .filter(|o| filter.matches(o))
            .map(|o| (o.namespace.clone(), o.name.clone()))
            .collect();
        let deleted: Vec<Arc<Obj>> = keys
            .iter()
            .filter_map(|(ns, name)| {
                st.store
                    .delete(self.id, ns, name, &Preconditions::default())
                    .ok()
            })
            .collect();
        let meta = json!({"resourceVersion": st.store.rv().to_string()}).to_string();
        drop(st);
        self.shared.notify();
        let list = ListBody::new(self.view.clone(), &meta, deleted);
        let response = Response::builder()
            .header(CONTENT_TYPE, "application/json")
            .body(Body::List(list));
        Ok(response.expect("a valid response"))
    }
}

const CONTINUE_EXPIRED: &str =
    "The provided continue parameter is too old to display a consistent list result. \
    You can start a new list without the continue parameter.";

fn parse_continue(token: &str) -> Result<(u64, (String, String)), ApiError> {
    let invalid = || ApiError::bad_request("continue key is not valid");
    let mut parts = token.splitn(3, '/');
    let rv = parts
        .next()
        .and_then(|rv| rv.parse().ok())
        .ok_or_else(invalid)?;
    let namespace = parts.next().ok_or_else(invalid)?.to_string();
    let name = parts.next().ok_or_else(invalid)?.to_string();
    Ok((rv, (namespace, name)))
}

/// A write that names a resourceVersion or uid asks for it to still be current.
fn preconditions(
    ty: &ResourceType,
    name: &str,
    old: Option<&Value>,
    new: &Value,
) -> Result<(), ApiError> {
    let Some(old) = old else {
        return Ok(());
    };
    let given = |field: &str| new["metadata"][field].as_str().filter(|s| !s.is_empty());
    if given("resourceVersion")
        .is_some_and(|rv| Some(rv) != old["metadata"]["resourceVersion"].as_str())
    {
        return Err(ApiError::conflict(ty, name));
    }
    if let Some(uid) = given("uid").filter(|uid| Some(*uid) != old["metadata"]["uid"].as_str()) {
        return Err(ApiError::precondition(
            ty,
            name,
            &format!("UID in precondition: {uid}"),
        ));
    }
    Ok(())
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}
