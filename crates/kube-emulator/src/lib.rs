//! A small Kubernetes API server emulator, for end-to-end tests with the real `kubectl` and the
//! real controller, on machines where no kube-apiserver can run.
//!
//! It follows the documented behaviour of the API server (Kubernetes API concepts and API
//! conventions, kubernetes.io/docs/reference/using-api/api-concepts/) for what those clients use:
//! discovery (`/api`, `/apis`, resource lists), get/list/create/update/patch/delete, the
//! `status` subresource of custom resources, `metadata.generation` (bumped by spec changes only),
//! `resourceVersion` with 409 Conflict on a stale update, finalizers and `deletionTimestamp`,
//! watches (`?watch=true&resourceVersion=N`, newline-delimited events), JSON, merge and
//! server-side-apply patches, `fieldSelector` on `metadata.name`/`metadata.namespace`, structural
//! schema defaults, and `kubectl get`'s Table output from a CRD's additionalPrinterColumns.
//!
//! Deliberate simplifications, so tests never rely on them: server-side apply merges the applied
//! object into the stored one (no managedFields or field ownership); CEL rules and OpenAPI bounds
//! are not evaluated (the CRD tests check them); namespaces are not required to exist; label
//! selectors are ignored; no authentication or authorization.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// One kind of resource the emulator serves.
#[derive(Debug, Clone)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_subresource: bool,
    /// (name, type, JSONPath) of `kubectl get` columns after NAME.
    pub columns: Vec<(String, String, String)>,
    /// The OpenAPI v3 schema, for defaults.
    pub schema: Option<Value>,
}

impl ResourceType {
    fn builtin(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            kind: kind.into(),
            namespaced,
            short_names: vec![],
            categories: vec![],
            status_subresource: false,
            columns: vec![(
                "Age".into(),
                "date".into(),
                ".metadata.creationTimestamp".into(),
            )],
            schema: None,
        }
    }

    /// The served version of a CustomResourceDefinition.
    pub fn from_crd(crd: &Value) -> Result<Self, String> {
        let spec = &crd["spec"];
        let version = spec["versions"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["served"] != false))
            .ok_or("the CRD has no served version")?;
        let names = &spec["names"];
        let strings = |v: &Value| {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut columns: Vec<(String, String, String)> = version["additionalPrinterColumns"]
            .as_array()
            .map(|cols| {
                cols.iter()
                    .map(|c| {
                        (
                            c["name"].as_str().unwrap_or("").to_string(),
                            c["type"].as_str().unwrap_or("string").to_string(),
                            c["jsonPath"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if columns.is_empty() {
            columns.push((
                "Age".into(),
                "date".into(),
                ".metadata.creationTimestamp".into(),
            ));
        }
        Ok(Self {
            group: spec["group"].as_str().ok_or("spec.group")?.to_string(),
            version: version["name"].as_str().ok_or("version name")?.to_string(),
            plural: names["plural"].as_str().ok_or("names.plural")?.to_string(),
            singular: names["singular"].as_str().unwrap_or("").to_string(),
            kind: names["kind"].as_str().ok_or("names.kind")?.to_string(),
            namespaced: spec["scope"] == "Namespaced",
            short_names: strings(&names["shortNames"]),
            categories: strings(&names["categories"]),
            status_subresource: version["subresources"]["status"].is_object(),
            columns,
            schema: Some(version["schema"]["openAPIV3Schema"].clone()),
        })
    }

    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

type Key = (String, String, String, String); // group, plural, namespace, name

#[derive(Debug, Clone)]
struct WatchEvent {
    rv: u64,
    kind: &'static str,
    key: Key,
    object: Value,
}

struct Store {
    types: Vec<ResourceType>,
    objects: BTreeMap<Key, Value>,
    rv: u64,
    log: Vec<WatchEvent>,
    next_uid: u64,
}

#[derive(Clone)]
struct Shared {
    store: Arc<Mutex<Store>>,
    changed: broadcast::Sender<u64>,
}

/// A running emulator.
pub struct Emulator {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Emulator {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig that points kubectl and kube-rs at this emulator.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: {}\ncontexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: emulator\n    namespace: default\ncurrent-context: emulator\nusers:\n- name: emulator\n  user: {{}}\n",
            self.url()
        )
    }

    pub async fn wait(mut self) {
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = task.await;
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves the built-in types (Namespaces, Events in both APIs, Leases) and `crds`.
pub async fn start(listen: SocketAddr, crds: &[Value]) -> Result<Emulator, String> {
    let mut types = vec![
        ResourceType::builtin("", "v1", "namespaces", "Namespace", false),
        ResourceType::builtin("", "v1", "events", "Event", true),
        ResourceType::builtin("events.k8s.io", "v1", "events", "Event", true),
        ResourceType::builtin("coordination.k8s.io", "v1", "leases", "Lease", true),
    ];
    for crd in crds {
        types.push(ResourceType::from_crd(crd)?);
    }
    let store = Store {
        types,
        objects: BTreeMap::new(),
        rv: 1,
        log: Vec::new(),
        next_uid: 0,
    };
    let (changed, _) = broadcast::channel(1024);
    let shared = Shared {
        store: Arc::new(Mutex::new(store)),
        changed,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let app = Router::new().fallback(handle).with_state(shared);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Emulator { addr, task })
}

fn status_error(code: u16, reason: &str, message: String) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code});
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Where a request points.
struct Target {
    type_index: usize,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_end_matches('/').to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    tracing::debug!(%method, %uri, "kube emulator request");
    if method == Method::GET
        && let Some(response) = discovery(&shared, &segments)
    {
        return response;
    }
    let target = {
        let store = shared.store.lock().expect("store lock");
        match resolve(&store, &segments) {
            Some(t) => t,
            None => {
                return status_error(
                    404,
                    "NotFound",
                    format!("the server could not find the requested resource ({path})"),
                );
            }
        }
    };
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    match (method, &target.name) {
        (Method::GET, None) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch(shared, target, query).await
        }
        (Method::GET, None) => list(&shared, &target, &query, &accept),
        (Method::GET, Some(_)) => get(&shared, &target, &accept),
        (Method::POST, None) => create(&shared, &target, &body),
        (Method::PUT, Some(_)) => update(&shared, &target, &body),
        (Method::PATCH, Some(_)) => patch(&shared, &target, &body, &content_type),
        (Method::DELETE, Some(_)) => delete(&shared, &target),
        _ => status_error(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".into(),
        ),
    }
}

fn discovery(shared: &Shared, segments: &[&str]) -> Option<Response> {
    let store = shared.store.lock().expect("store lock");
    let resources = |group: &str, version: &str| {
        let list: Vec<Value> = store
            .types
            .iter()
            .filter(|t| t.group == group && t.version == version)
            .flat_map(|t| {
                let mut out = vec![json!({
                    "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced, "kind": t.kind,
                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                    "shortNames": t.short_names, "categories": t.categories,
                })];
                if t.status_subresource {
                    out.push(json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get", "patch", "update"]}));
                }
                out
            })
            .collect();
        let group_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        json_response(
            StatusCode::OK,
            &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": list}),
        )
    };
    Some(match segments {
        ["version"] => json_response(
            StatusCode::OK,
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-asyncscale-emulator", "platform": "linux/amd64"}),
        ),
        ["api"] => json_response(
            StatusCode::OK,
            &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        ),
        ["api", "v1"] => resources("", "v1"),
        ["apis"] => {
            let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for t in store.types.iter().filter(|t| !t.group.is_empty()) {
                groups
                    .entry(t.group.clone())
                    .or_default()
                    .push(t.version.clone());
            }
            let list: Vec<Value> = groups
                .iter()
                .map(|(g, versions)| {
                    let vs: Vec<Value> = versions
                        .iter()
                        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                        .collect();
                    json!({"name": g, "versions": vs, "preferredVersion": vs[0]})
                })
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list}),
            )
        }
        ["apis", group, version] => resources(group, version),
        ["openapi", "v3"] => {
            let mut paths = serde_json::Map::new();
            for t in &store.types {
                let path = if t.group.is_empty() {
                    format!("api/{}", t.version)
                } else {
                    format!("apis/{}/{}", t.group, t.version)
                };
                paths.insert(
                    path.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{path}")}),
                );
            }
            json_response(StatusCode::OK, &json!({"paths": paths}))
        }
        ["openapi", "v3", rest @ ..] => {
            let (group, version) = match rest {
                ["api", v] => ("", *v),
                ["apis", g, v] => (*g, *v),
                _ => return None,
            };
            json_response(
                StatusCode::OK,
                &openapi_document(&store.types, group, version),
            )
        }
        _ => return None,
    })
}

/// An OpenAPI v3 document for one group version, as kubectl's client-side validation reads it:
/// each kind's schema under components, tagged with x-kubernetes-group-version-kind. Types without
/// a schema accept any fields.
fn openapi_document(types: &[ResourceType], group: &str, version: &str) -> Value {
    let mut schemas = serde_json::Map::new();
    for t in types
        .iter()
        .filter(|t| t.group == group && t.version == version)
    {
        let mut schema = t.schema.clone().unwrap_or_else(
            || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        );
        if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            props.insert("apiVersion".into(), json!({"type": "string"}));
            props.insert("kind".into(), json!({"type": "string"}));
            props.insert(
                "metadata".into(),
                json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            );
        }
        schema["x-kubernetes-group-version-kind"] =
            json!([{"group": t.group, "kind": t.kind, "version": t.version}]);
        let reversed_group: Vec<&str> = t.group.split('.').rev().collect();
        let name = if t.group.is_empty() {
            format!("io.k8s.api.core.{}.{}", t.version, t.kind)
        } else {
            format!("{}.{}.{}", reversed_group.join("."), t.version, t.kind)
        };
        schemas.insert(name, schema);
    }
    // Operations that declare the fieldValidation parameter tell kubectl that the server validates
    // fields itself (it then sends fieldValidation=Strict instead of validating client-side).
    let mut paths = serde_json::Map::new();
    for t in types
        .iter()
        .filter(|t| t.group == group && t.version == version)
    {
        let prefix = if t.group.is_empty() {
            format!("/api/{}", t.version)
        } else {
            format!("/apis/{}/{}", t.group, t.version)
        };
        let scope = if t.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let operation = |verb: &str| {
            json!({"operationId": format!("{verb}{}", t.kind), "x-kubernetes-action": verb, "x-kubernetes-group-version-kind": gvk,
                   "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}], "responses": {}})
        };
        paths.insert(
            format!("{prefix}{scope}/{}", t.plural),
            json!({"post": operation("post"), "get": operation("list")}),
        );
        paths.insert(format!("{prefix}{scope}/{}/{{name}}", t.plural), json!({"get": operation("get"), "put": operation("put"), "patch": operation("patch"), "delete": operation("delete")}));
    }
    json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": paths, "components": {"schemas": schemas}})
}

fn resolve(store: &Store, segments: &[&str]) -> Option<Target> {
    let (group, version, rest) = match segments {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, more @ ..] if *plural != "status" && *plural != "finalize" => {
            (Some(ns.to_string()), {
                let mut v = vec![*plural];
                v.extend_from_slice(more);
                v
            })
        }
        other => (None, other.to_vec()),
    };
    let (plural, name, sub) = match rest.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(*sub)),
        _ => return None,
    };
    let type_index = store
        .types
        .iter()
        .position(|t| t.group == group && t.version == version && t.plural == plural)?;
    // "namespaces/{name}" addresses a Namespace object itself.
    if namespace.is_some() && !store.types[type_index].namespaced {
        return None;
    }
    Some(Target {
        type_index,
        namespace,
        name,
        status: sub == Some("status"),
    })
}

impl Target {
    fn key(&self, t: &ResourceType) -> Key {
        key_of(
            t,
            self.namespace.as_deref().unwrap_or(""),
            self.name.as_deref().unwrap_or(""),
        )
    }
}

fn not_found(t: &ResourceType, name: &str) -> Response {
    status_error(
        404,
        "NotFound",
        format!("{}.{} \"{name}\" not found", t.plural, t.group),
    )
}

fn key_of(t: &ResourceType, namespace: &str, name: &str) -> Key {
    (
        t.group.clone(),
        t.plural.clone(),
        if t.namespaced {
            namespace.to_string()
        } else {
            String::new()
        },
        name.to_string(),
    )
}

fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn parse_rfc3339_secs(s: &str) -> Option<i64> {
    let (date, time) = s.trim_end_matches('Z').split_once('T')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let t: Vec<i64> = time
        .split(':')
        .map(|p| p.split('.').next().unwrap_or("0").parse().ok())
        .collect::<Option<_>>()?;
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(
        (era * 146_097 + doe - 719_468) * 86_400
            + t[0] * 3600
            + t[1] * 60
            + t.get(2).copied().unwrap_or(0),
    )
}

fn age(timestamp: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let secs = parse_rfc3339_secs(timestamp).map_or(0, |t| (now - t).max(0));
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// The JSONPath subset printer columns use: `.a.b`, `.a[0]`, `.a[?(@.k=="v")].b`.
pub fn json_path(object: &Value, path: &str) -> Option<Value> {
    let mut current = vec![object.clone()];
    let mut rest = path.trim_start_matches('.');
    while !rest.is_empty() {
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let (field, after) = rest.split_at(end);
        if !field.is_empty() {
            current = current
                .iter()
                .filter_map(|v| v.get(field).cloned())
                .collect();
        }
        rest = after;
        if let Some(bracket) = rest.strip_prefix('[') {
            let close = bracket.find(']')?;
            let selector = &bracket[..close];
            rest = &bracket[close + 1..];
            current = if let Some(filter) = selector
                .strip_prefix("?(@.")
                .and_then(|f| f.strip_suffix(')'))
            {
                let (k, v) = filter.split_once("==")?;
                let v = v.trim_matches(|c| c == '"' || c == '\'');
                current
                    .iter()
                    .flat_map(|c| c.as_array().cloned().unwrap_or_default())
                    .filter(|item| item.get(k).and_then(Value::as_str) == Some(v))
                    .collect()
            } else {
                let i: usize = selector.parse().ok()?;
                current.iter().filter_map(|c| c.get(i).cloned()).collect()
            };
        }
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    current.into_iter().next()
}

fn cell(value: Option<Value>, kind: &str) -> Value {
    match (value, kind) {
        (Some(Value::String(s)), "date") => json!(age(&s)),
        (Some(v), _) => v,
        (None, _) => json!("<none>"),
    }
}

fn table(t: &ResourceType, objects: &[Value], rv: u64) -> Value {
    let mut definitions = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}),
    ];
    definitions.extend(t.columns.iter().map(|(name, kind, _)| json!({"name": name, "type": kind, "format": "", "description": name, "priority": 0})));
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            cells.extend(t.columns.iter().map(|(_, kind, path)| cell(json_path(o, path), kind)));
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv.to_string()}, "columnDefinitions": definitions, "rows": rows})
}

fn matches(
    t: &ResourceType,
    key: &Key,
    object: &Value,
    target: &Target,
    query: &BTreeMap<String, String>,
) -> bool {
    if key.0 != t.group || key.1 != t.plural {
        return false;
    }
    if let Some(ns) = &target.namespace
        && key.2 != *ns
    {
        return false;
    }
    for selector in query
        .get("fieldSelector")
        .map(|s| s.split(',').collect::<Vec<_>>())
        .unwrap_or_default()
    {
        if let Some((field, value)) = selector.split_once('=') {
            let value = value.trim_start_matches('=');
            let actual = json_path(object, field)
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            if actual != value {
                return false;
            }
        }
    }
    true
}

fn list(
    shared: &Shared,
    target: &Target,
    query: &BTreeMap<String, String>,
    accept: &str,
) -> Response {
    let store = shared.store.lock().expect("store lock");
    let t = &store.types[target.type_index];
    let items: Vec<Value> = store
        .objects
        .iter()
        .filter(|(k, o)| matches(t, k, o, target, query))
        .map(|(_, o)| o.clone())
        .collect();
    if accept.contains("as=Table") {
        return json_response(StatusCode::OK, &table(t, &items, store.rv));
    }
    json_response(
        StatusCode::OK,
        &json!({"kind": format!("{}List", t.kind), "apiVersion": t.api_version(), "metadata": {"resourceVersion": store.rv.to_string()}, "items": items}),
    )
}

fn get(shared: &Shared, target: &Target, accept: &str) -> Response {
    let store = shared.store.lock().expect("store lock");
    let t = &store.types[target.type_index];
    let key = target.key(t);
    match store.objects.get(&key) {
        Some(o) if accept.contains("as=Table") => {
            json_response(StatusCode::OK, &table(t, std::slice::from_ref(o), store.rv))
        }
        Some(o) => json_response(StatusCode::OK, o),
        None => not_found(t, &key.3),
    }
}

/// Sets defaults from a structural schema where the object has no value, recursively.
fn apply_defaults(object: &mut Value, schema: &Value) {
    let (Some(props), Value::Object(map)) = (schema["properties"].as_object(), object) else {
        return;
    };
    for (name, prop) in props {
        if !map.contains_key(name)
            && let Some(default) = prop.get("default")
        {
            map.insert(name.clone(), default.clone());
        }
        if let Some(child) = map.get_mut(name) {
            apply_defaults(child, prop);
        }
    }
}

/// Simplification: a namespace comes into being with the first object created in it.
fn ensure_namespace(store: &mut Store, namespace: &str) {
    let key: Key = (
        String::new(),
        "namespaces".into(),
        String::new(),
        namespace.to_string(),
    );
    if store.objects.contains_key(&key) {
        return;
    }
    store.rv += 1;
    let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "uid": format!("ns-{namespace}"), "resourceVersion": store.rv.to_string(), "creationTimestamp": now_rfc3339()}, "status": {"phase": "Active"}});
    store.objects.insert(key.clone(), object.clone());
    store.record("ADDED", key, object);
}

impl Store {
    fn record(&mut self, kind: &'static str, key: Key, object: Value) {
        self.log.push(WatchEvent {
            rv: self.rv,
            kind,
            key,
            object,
        });
    }

    fn bump(&mut self, object: &mut Value) {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
    }
}

fn create(shared: &Shared, target: &Target, body: &Bytes) -> Response {
    let Ok(mut object) = serde_json::from_slice::<Value>(body) else {
        return status_error(400, "BadRequest", "the body is not a JSON object".into());
    };
    let mut store = shared.store.lock().expect("store lock");
    let t = store.types[target.type_index].clone();
    if object["metadata"]["name"]
        .as_str()
        .is_none_or(str::is_empty)
    {
        match object["metadata"]["generateName"].as_str() {
            Some(prefix) => {
                store.next_uid += 1;
                object["metadata"]["name"] =
                    json!(format!("{prefix}{:05x}", store.next_uid * 7919 % 0xfffff));
            }
            None => {
                return status_error(
                    422,
                    "Invalid",
                    format!(
                        "{} is invalid: metadata.name: Required value: name or generateName is required",
                        t.kind
                    ),
                );
            }
        }
    }
    let namespace = target
        .namespace
        .clone()
        .or_else(|| object["metadata"]["namespace"].as_str().map(str::to_string))
        .unwrap_or_else(|| "default".into());
    if t.namespaced {
        ensure_namespace(&mut store, &namespace);
    }
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let key = key_of(&t, &namespace, &name);
    if store.objects.contains_key(&key) {
        return status_error(
            409,
            "AlreadyExists",
            format!("{}.{} \"{name}\" already exists", t.plural, t.group),
        );
    }
    store.next_uid += 1;
    let uid = format!(
        "{:08x}-0000-4000-8000-{:012x}",
        store.next_uid, store.next_uid
    );
    let meta = object["metadata"]
        .as_object_mut()
        .expect("metadata is an object");
    if t.namespaced {
        meta.insert("namespace".into(), json!(namespace));
    }
    meta.insert("uid".into(), json!(uid));
    meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
    meta.insert("generation".into(), json!(1));
    object["apiVersion"] = json!(t.api_version());
    object["kind"] = json!(t.kind);
    if t.status_subresource {
        // The status subresource: a create never sets status.
        object.as_object_mut().expect("object").remove("status");
    }
    if let Some(schema) = &t.schema {
        apply_defaults(&mut object, schema);
    }
    store.bump(&mut object);
    store.objects.insert(key.clone(), object.clone());
    store.record("ADDED", key, object.clone());
    let _ = shared.changed.send(store.rv);
    json_response(StatusCode::CREATED, &object)
}

/// Stores `new` in place of `old` with the API server's rules for generation, status and deletion.
fn replace(
    shared: &Shared,
    store: &mut Store,
    t: &ResourceType,
    key: Key,
    old: &Value,
    mut new: Value,
    status_only: bool,
) -> Response {
    if t.status_subresource {
        let keep_status = old.get("status").cloned();
        if status_only {
            let status = new.get("status").cloned();
            new = old.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    new.as_object_mut().expect("object").remove("status");
                }
            }
        } else {
            match keep_status {
                Some(s) => new["status"] = s,
                None => {
                    new.as_object_mut().expect("object").remove("status");
                }
            }
        }
    }
    // Identity and server-owned metadata never change through a write.
    for field in [
        "uid",
        "creationTimestamp",
        "namespace",
        "name",
        "deletionTimestamp",
        "generation",
    ] {
        match old["metadata"].get(field) {
            Some(v) => new["metadata"][field] = v.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove(field);
                }
            }
        }
    }
    let spec_changed = old.get("spec") != new.get("spec");
    if spec_changed {
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
        new["metadata"]["generation"] = json!(generation);
    }
    if let Some(schema) = &t.schema {
        apply_defaults(&mut new, schema);
    }
    let deleting = new["metadata"].get("deletionTimestamp").is_some();
    let finalizers_left = new["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    store.bump(&mut new);
    if deleting && !finalizers_left {
        store.objects.remove(&key);
        store.record("DELETED", key, new.clone());
    } else {
        store.objects.insert(key.clone(), new.clone());
        store.record("MODIFIED", key, new.clone());
    }
    let _ = shared.changed.send(store.rv);
    json_response(StatusCode::OK, &new)
}

fn update(shared: &Shared, target: &Target, body: &Bytes) -> Response {
    let Ok(new) = serde_json::from_slice::<Value>(body) else {
        return status_error(400, "BadRequest", "the body is not a JSON object".into());
    };
    let mut store = shared.store.lock().expect("store lock");
    let t = store.types[target.type_index].clone();
    let key = target.key(&t);
    let Some(old) = store.objects.get(&key).cloned() else {
        return not_found(&t, &key.3);
    };
    if let Some(rv) = new["metadata"]["resourceVersion"].as_str()
        && Some(rv) != old["metadata"]["resourceVersion"].as_str()
    {
        return status_error(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {}.{} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                t.plural, t.group, key.3
            ),
        );
    }
    replace(shared, &mut store, &t, key, &old, new, target.status)
}

fn patch(shared: &Shared, target: &Target, body: &Bytes, content_type: &str) -> Response {
    let Ok(patch_body) = serde_json::from_slice::<Value>(body) else {
        return status_error(400, "BadRequest", "the patch is not JSON".into());
    };
    let mut store = shared.store.lock().expect("store lock");
    let t = store.types[target.type_index].clone();
    let key = target.key(&t);
    let existing = store.objects.get(&key).cloned();
    let apply = content_type.starts_with("application/apply-patch");
    let Some(old) = existing else {
        // Server-side apply creates what does not exist yet.
        if apply && !target.status {
            drop(store);
            let mut object = patch_body;
            object["metadata"]["name"] = json!(key.3);
            return create(
                shared,
                &Target {
                    type_index: target.type_index,
                    namespace: target.namespace.clone(),
                    name: None,
                    status: false,
                },
                &Bytes::from(object.to_string()),
            );
        }
        return not_found(&t, &key.3);
    };
    let mut new = old.clone();
    if content_type.starts_with("application/json-patch+json") {
        // The API server's JSON patch (evanphx/json-patch) lets `test` of a missing path against
        // null succeed; kube's finalizer helper relies on it when adding the first finalizer.
        let mut patch_body = patch_body;
        if let Some(ops) = patch_body.as_array_mut() {
            ops.retain(|op| {
                !(op["op"] == "test"
                    && op["value"].is_null()
                    && new.pointer(op["path"].as_str().unwrap_or("")).is_none())
            });
        }
        let operations: json_patch::Patch = match serde_json::from_value(patch_body) {
            Ok(p) => p,
            Err(e) => return status_error(400, "BadRequest", format!("invalid JSON patch: {e}")),
        };
        if let Err(e) = json_patch::patch(&mut new, &operations) {
            // A failed `test` operation, as the API server reports it.
            return status_error(
                422,
                "Invalid",
                format!("the JSON patch could not be applied: {e}"),
            );
        }
    } else {
        // Merge patch (RFC 7386); strategic merge and server-side apply are approximated by it.
        json_patch::merge(&mut new, &patch_body);
    }
    replace(shared, &mut store, &t, key, &old, new, target.status)
}

fn delete(shared: &Shared, target: &Target) -> Response {
    let mut store = shared.store.lock().expect("store lock");
    let t = store.types[target.type_index].clone();
    let key = target.key(&t);
    let Some(mut object) = store.objects.get(&key).cloned() else {
        return not_found(&t, &key.3);
    };
    let finalizers = object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    store.bump(&mut object);
    if finalizers {
        if object["metadata"].get("deletionTimestamp").is_none() {
            object["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            let generation = object["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            object["metadata"]["generation"] = json!(generation);
        }
        store.objects.insert(key.clone(), object.clone());
        store.record("MODIFIED", key, object.clone());
    } else {
        store.objects.remove(&key);
        store.record("DELETED", key, object.clone());
    }
    let _ = shared.changed.send(store.rv);
    json_response(StatusCode::OK, &object)
}

async fn watch(shared: Shared, target: Target, query: BTreeMap<String, String>) -> Response {
    let mut changes = shared.changed.subscribe();
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(300)
        .min(600);
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        let mut sent_up_to = from;
        if from == 0 {
            // Without a resourceVersion a watch starts with the current objects as ADDED.
            let (initial, rv): (Vec<Value>, u64) = {
                let store = shared.store.lock().expect("store lock");
                let t = &store.types[target.type_index];
                (
                    store
                        .objects
                        .iter()
                        .filter(|(k, o)| matches(t, k, o, &target, &query))
                        .map(|(_, o)| o.clone())
                        .collect(),
                    store.rv,
                )
            };
            for object in initial {
                let line = format!("{}\n", json!({"type": "ADDED", "object": object}));
                if tx.send(Ok(Bytes::from(line))).await.is_err() {
                    return;
                }
            }
            sent_up_to = rv;
        }
        loop {
            let events: Vec<WatchEvent> = {
                let store = shared.store.lock().expect("store lock");
                let t = &store.types[target.type_index];
                store
                    .log
                    .iter()
                    .filter(|e| e.rv > sent_up_to && matches(t, &e.key, &e.object, &target, &query))
                    .cloned()
                    .collect()
            };
            for e in events {
                sent_up_to = e.rv;
                let line = format!("{}\n", json!({"type": e.kind, "object": e.object}));
                if tx.send(Ok(Bytes::from(line))).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                changed = changes.recv() => match changed {
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                },
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("watch response")
}

/// Reads CustomResourceDefinitions from (multi-document) YAML.
pub fn crds_from_yaml(yaml: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).map_err(|e| e.to_string())?;
    Ok(docs
        .into_iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_path_handles_printer_column_expressions() {
        let o = json!({"spec": {"e": "x"}, "status": {"conditions": [{"type": "Synced", "status": "True"}, {"type": "Ready", "status": "False", "reason": "Conflict"}]}});
        assert_eq!(json_path(&o, ".spec.e"), Some(json!("x")));
        assert_eq!(
            json_path(&o, ".status.conditions[?(@.type==\"Ready\")].reason"),
            Some(json!("Conflict"))
        );
        assert_eq!(
            json_path(&o, ".status.conditions[0].type"),
            Some(json!("Synced"))
        );
        assert_eq!(json_path(&o, ".status.missing"), None);
    }

    #[test]
    fn timestamps_round_trip() {
        let now = now_rfc3339();
        let secs = parse_rfc3339_secs(&now).unwrap();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((wall - secs).abs() <= 2, "{now}");
        assert_eq!(parse_rfc3339_secs("1970-01-02T00:00:01Z"), Some(86_401));
        assert_eq!(
            parse_rfc3339_secs("2000-03-01T00:00:00Z"),
            Some(951_868_800)
        );
    }
}
