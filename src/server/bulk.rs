//! `POST /Bulk` (RFC 7644 §3.7): several writes in one request, with `bulkId` references
//! from later operations to resources that earlier ones create.
//!
//! Each operation runs through the same code as the single request would, so it gets the
//! same validation and errors. An operation that refers to a `bulkId` not yet created
//! waits until it is (RFC 7644 §3.7.1 lets the order of operations be changed for this);
//! references that can never resolve, because of a cycle, a failed POST or an unknown
//! `bulkId`, fail with 409 `invalidValue`. `failOnErrors` stops processing after that many
//! failures.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};

use crate::ports::Directory;
use crate::scim::attr;
use crate::scim::lenient::lenient_u64;
use crate::scim::message::BULK_RESPONSE_SCHEMA;
use crate::scim::text;
use crate::server::error::ScimError;
use crate::server::handler::{ScimServer, parse_json};
use crate::server::http::{QueryParams, ServerResponse};
use crate::server::resource::location;
use crate::server::routes::Route;

/// The prefix of a reference to another operation's resource.
const BULK_ID_PREFIX: &str = "bulkId:";

/// One operation as the client sent it.
#[derive(Debug, Clone)]
struct Operation {
    method: String,
    bulk_id: Option<String>,
    version: Option<String>,
    path: String,
    data: Option<Value>,
}

fn read_operation(v: &Value) -> Result<Operation, ScimError> {
    let Value::Object(o) = v else {
        return Err(ScimError::syntax("each operation must be a JSON object"));
    };
    let text = |name: &str| -> Result<Option<String>, ScimError> {
        match attr::get_ci(o, name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ScimError::syntax(format!("{name} must be a string"))),
        }
    };
    Ok(Operation {
        method: text("method")?
            .ok_or_else(|| ScimError::syntax("the operation has no method"))?
            .trim()
            .to_ascii_uppercase(),
        bulk_id: text("bulkId")?,
        version: text("version")?,
        path: text("path")?.ok_or_else(|| ScimError::syntax("the operation has no path"))?,
        data: attr::get_ci(o, "data").cloned(),
    })
}

/// The `bulkId`s an operation refers to, in its path and anywhere in its data.
fn references(op: &Operation) -> Vec<String> {
    let mut out: Vec<String> = op
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix(BULK_ID_PREFIX))
        .map(str::to_string)
        .collect();
    // An explicit stack: data nests at most as deep as serde_json allows (128), but
    // walking it needs no recursion at all.
    let mut stack: Vec<&Value> = op.data.iter().collect();
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) => {
                if let Some(id) = s.strip_prefix(BULK_ID_PREFIX) {
                    out.push(id.to_string());
                }
            }
            Value::Array(items) => stack.extend(items.iter()),
            Value::Object(o) => stack.extend(o.values()),
            _ => {}
        }
    }
    out
}

/// Replaces every `bulkId:<x>` with the id created for `x`.
fn substitute(op: &mut Operation, ids: &HashMap<String, String>) {
    op.path = op
        .path
        .split('/')
        .map(
            |s| match s.strip_prefix(BULK_ID_PREFIX).and_then(|b| ids.get(b)) {
                Some(id) => id.as_str(),
                None => s,
            },
        )
        .collect::<Vec<_>>()
        .join("/");
    let mut stack: Vec<&mut Value> = op.data.iter_mut().collect();
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) => {
                if let Some(id) = s.strip_prefix(BULK_ID_PREFIX).and_then(|b| ids.get(b)) {
                    *s = id.clone();
                }
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            Value::Object(o) => stack.extend(o.values_mut()),
            _ => {}
        }
    }
}

/// What one operation came to.
struct Outcome {
    status: u16,
    location: Option<String>,
    version: Option<String>,
    /// The error body, for failures.
    error: Option<Value>,
    /// The id of the resource a successful POST created.
    created_id: Option<String>,
}

impl Outcome {
    fn failed(e: &ScimError) -> Outcome {
        Outcome {
            status: e.status,
            location: None,
            version: None,
            error: Some(e.body()),
            created_id: None,
        }
    }

    fn to_json(&self, method: &str, bulk_id: Option<&str>) -> Value {
        let mut o = Map::new();
        o.insert("method".into(), json!(method));
        if let Some(b) = bulk_id {
            o.insert("bulkId".into(), json!(b));
        }
        if let Some(v) = &self.version {
            o.insert("version".into(), json!(v));
        }
        if let Some(l) = &self.location {
            o.insert("location".into(), json!(l));
        }
        o.insert("status".into(), json!(self.status.to_string()));
        if let Some(e) = &self.error {
            o.insert("response".into(), e.clone());
        }
        Value::Object(o)
    }
}

impl<D: Directory> ScimServer<D> {
    /// Answers `POST /Bulk`.
    pub(crate) fn bulk(&self, body: &[u8]) -> Result<ServerResponse, ScimError> {
        let request = parse_json(body)?;
        let Value::Object(obj) = &request else {
            return Err(ScimError::syntax("a BulkRequest must be a JSON object"));
        };
        let Some(Value::Array(raw_ops)) = attr::get_ci(obj, "Operations") else {
            return Err(ScimError::syntax("a BulkRequest needs an Operations array"));
        };
        let max = self.config().bulk_max_operations;
        if raw_ops.len() as u64 > u64::from(max) {
            return Err(ScimError::new(
                413,
                format!(
                    "the bulk request has {} operations; the maximum is {max}",
                    raw_ops.len()
                ),
            ));
        }
        let fail_on_errors = match attr::get_ci(obj, "failOnErrors") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                lenient_u64(v)
                    .ok_or_else(|| ScimError::value("failOnErrors must be an integer"))?
                    .max(1),
            ),
        };
        let ops: Vec<Result<Operation, ScimError>> = raw_ops.iter().map(read_operation).collect();
        let declared: HashSet<&str> = ops
            .iter()
            .filter_map(|o| o.as_ref().ok())
            .filter(|o| o.method == "POST")
            .filter_map(|o| o.bulk_id.as_deref())
            .collect();

        let mut created: HashMap<String, String> = HashMap::new();
        let mut failed: HashSet<String> = HashSet::new();
        let mut results: Vec<Value> = Vec::new();
        let mut errors: u64 = 0;
        let mut pending: Vec<usize> = (0..ops.len()).collect();
        'passes: loop {
            let mut deferred = Vec::new();
            let mut progressed = false;
            for &i in &pending {
                if fail_on_errors.is_some_and(|limit| errors >= limit) {
                    break 'passes;
                }
                let Some(op) = ops.get(i) else { continue };
                let (method, bulk_id, outcome) = match op {
                    Err(e) => ("", None, Outcome::failed(e)),
                    Ok(op) => {
                        let refs = references(op);
                        let waiting = refs.iter().any(|r| {
                            !created.contains_key(r)
                                && !failed.contains(r)
                                && declared.contains(r.as_str())
                        });
                        if waiting {
                            deferred.push(i);
                            continue;
                        }
                        let outcome = match refs.iter().find(|r| !created.contains_key(*r)) {
                            Some(r) => Outcome::failed(&unresolved(r)),
                            None => self.run(op, &created),
                        };
                        (op.method.as_str(), op.bulk_id.as_deref(), outcome)
                    }
                };
                progressed = true;
                if outcome.status >= 400 {
                    errors += 1;
                    if let Some(b) = bulk_id {
                        failed.insert(b.to_string());
                    }
                } else if let (Some(b), Some(id)) = (bulk_id, &outcome.created_id) {
                    created.insert(b.to_string(), id.clone());
                }
                results.push(outcome.to_json(method, bulk_id));
            }
            if deferred.is_empty() {
                break;
            }
            if !progressed {
                // Every remaining operation waits on another: a cycle.
                for i in deferred {
                    if fail_on_errors.is_some_and(|limit| errors >= limit) {
                        break;
                    }
                    if let Some(Ok(op)) = ops.get(i) {
                        let e = ScimError {
                            status: 409,
                            ..ScimError::value("the operation's bulkId references form a cycle")
                        };
                        results
                            .push(Outcome::failed(&e).to_json(&op.method, op.bulk_id.as_deref()));
                        errors += 1;
                    }
                }
                break;
            }
            pending = deferred;
        }
        Ok(ServerResponse::json_body(
            200,
            &json!({"schemas": [BULK_RESPONSE_SCHEMA], "Operations": results}),
        ))
    }

    /// Runs one operation whose references have all resolved.
    fn run(&self, op: &Operation, created: &HashMap<String, String>) -> Outcome {
        let mut op = op.clone();
        substitute(&mut op, created);
        let route = match Route::parse(&op.path) {
            Some(r @ (Route::Collection(_) | Route::Item(..))) => r,
            _ => {
                return Outcome::failed(&ScimError::bad_request(
                    "invalidPath",
                    "a bulk operation's path must be /Users, /Groups or a resource in them",
                ));
            }
        };
        if !matches!(op.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE") {
            return Outcome::failed(&ScimError::value(
                "a bulk operation's method must be POST, PUT, PATCH or DELETE",
            ));
        }
        let headers: Vec<(String, String)> = op
            .version
            .iter()
            .map(|v| ("If-Match".to_string(), v.clone()))
            .collect();
        let body = op
            .data
            .as_ref()
            .map(|d| text::json(d).into_bytes())
            .unwrap_or_default();
        let answer = self.dispatch(&op.method, &route, &QueryParams::default(), &headers, &body);
        match answer {
            Err(e) => Outcome::failed(&self.report(e)),
            Ok(r) => {
                let created_id = (r.status == 201)
                    .then(|| {
                        r.json()
                            .get("id")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
                    .flatten();
                let location = r.header("Location").map(str::to_string).or(match &route {
                    Route::Item(kind, id) => Some(location(
                        self.config().base_url.trim_end_matches('/'),
                        *kind,
                        id,
                    )),
                    _ => None,
                });
                Outcome {
                    status: r.status,
                    location,
                    version: r.header("ETag").map(str::to_string),
                    error: None,
                    created_id,
                }
            }
        }
    }
}

fn unresolved(bulk_id: &str) -> ScimError {
    ScimError {
        status: 409,
        ..ScimError::value(format!(
            "bulkId {bulk_id:?} does not name a resource this request created"
        ))
    }
}
