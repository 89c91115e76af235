//! The shared scenario suite (`tests/scenarios/*.json`, format in `tests/scenarios/README.md`)
//! under the Rust host (host-example's library): every scenario against a fresh scim2-server,
//! server-role steps against host-example's `ServerSession` over a fresh `SqliteDirectory`,
//! and a plain HTTP server answering HTML beside it (`${HTML_URL}`).
//! Prints `scenarios: rust: N passed, M failed`.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use host_example::describe::{action_name, planned_name};
use host_example::directory::SqliteDirectory;
use host_example::logging::{Level, LogSink};
use host_example::types::{
    BatchItem, CmsUser, FieldValue, Link, ProvisionOutcome, ProvisioningError, RetryClass,
    ServerRequest, TransportError, UserEvent,
};
use host_example::{
    ConnectorSettings, Credentials, Flatten, Runtime, ServerSession, ServerSettings, Session,
};
use scim_provisioner_tests::component::runtime;
use scim_provisioner_tests::peers::{Peer, html_server, scim2_server, workspace_root};

const HOST: &str = "rust";
/// Steps this host cannot run: (scenario, step index, reason). Printed, never silent.
/// None today: every step runs here as under the other hosts.
const SKIPS: &[(&str, usize, &str)] = &[];

// ---- the format's shared machinery (same rules in every runner) ----

struct Ctx {
    vars: HashMap<String, String>,
    links: HashMap<String, Value>,
}

fn expand(value: &Value, ctx: &Ctx) -> Result<Value> {
    Ok(match value {
        Value::String(s) => {
            let mut s = s.clone();
            for (k, v) in &ctx.vars {
                s = s.replace(&format!("${{{k}}}"), v);
            }
            Value::String(s)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| expand(v, ctx))
                .collect::<Result<_>>()?,
        ),
        Value::Object(map) => {
            if let Some(item) = map.get("$repeat") {
                let item = expand(item, ctx)?;
                let times = map["times"].as_u64().context("$repeat needs times")? as usize;
                return Ok(match item {
                    Value::String(s) => Value::String(s.repeat(times)),
                    other => Value::Array(vec![other; times]),
                });
            }
            if let Some(name) = map.get("$link").and_then(Value::as_str) {
                return ctx.links.get(name).cloned().context("no such saved link");
            }
            if let Some(name) = map.get("$remoteId").and_then(Value::as_str) {
                return Ok(ctx.links.get(name).context("no such saved link")?["remoteId"].clone());
            }
            if let Some(inner) = map.get("$json") {
                return Ok(Value::String(expand(inner, ctx)?.to_string()));
            }
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                out.insert(k.clone(), expand(v, ctx)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 200 {
        format!("{}…", s.chars().take(200).collect::<String>())
    } else {
        s
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn matches(expected: &Value, actual: &Value, path: &str, errs: &mut Vec<String>) {
    match expected {
        Value::Object(map) if map.keys().any(|k| k.starts_with('$')) => {
            for (k, want) in map {
                match k.as_str() {
                    "$type" => {
                        if want.as_str() != Some(type_name(actual)) {
                            errs.push(format!("{path}: expected a {want}, got {}", short(actual)));
                        }
                    }
                    "$gte" => {
                        if !(actual.is_number() && actual.as_f64() >= want.as_f64()) {
                            errs.push(format!("{path}: expected >= {want}, got {}", short(actual)));
                        }
                    }
                    "$contains" => {
                        let ok = match (actual.as_str(), want.as_str()) {
                            (Some(a), Some(w)) => a.contains(w),
                            _ => false,
                        };
                        if !ok {
                            errs.push(format!(
                                "{path}: expected a string containing {want}, got {}",
                                short(actual)
                            ));
                        }
                    }
                    "$len" => {
                        let len = match actual {
                            Value::String(s) => Some(s.chars().count() as u64),
                            Value::Array(a) => Some(a.len() as u64),
                            _ => None,
                        };
                        if len != want.as_u64() {
                            errs.push(format!("{path}: expected length {want}, got {len:?}"));
                        }
                    }
                    "$not" => {
                        let mut inner = Vec::new();
                        matches(want, actual, path, &mut inner);
                        if inner.is_empty() {
                            errs.push(format!(
                                "{path}: expected not {want}, got {}",
                                short(actual)
                            ));
                        }
                    }
                    other => errs.push(format!("{path}: unknown matcher {other}")),
                }
            }
        }
        Value::Object(map) => {
            let Value::Object(got) = actual else {
                errs.push(format!("{path}: expected an object, got {}", short(actual)));
                return;
            };
            for (k, v) in map {
                matches(
                    v,
                    got.get(k).unwrap_or(&Value::Null),
                    &format!("{path}.{k}"),
                    errs,
                );
            }
        }
        Value::Array(items) => {
            let Value::Array(got) = actual else {
                errs.push(format!("{path}: expected an array, got {}", short(actual)));
                return;
            };
            if got.len() != items.len() {
                errs.push(format!(
                    "{path}: expected {} items, got {}",
                    items.len(),
                    short(actual)
                ));
                return;
            }
            for (i, (e, a)) in items.iter().zip(got).enumerate() {
                matches(e, a, &format!("{path}[{i}]"), errs);
            }
        }
        Value::Number(n) => {
            if actual.as_f64() != n.as_f64() {
                errs.push(format!("{path}: expected {n}, got {}", short(actual)));
            }
        }
        other => {
            if other != actual {
                errs.push(format!(
                    "{path}: expected {}, got {}",
                    short(other),
                    short(actual)
                ));
            }
        }
    }
}

// ---- this host's adapter: host values <-> the canonical JSON of the README ----

fn c_link(link: &Option<Link>) -> Value {
    match link {
        None => Value::Null,
        Some(l) => json!({"remoteId": l.remote_id, "version": l.version, "snapshot": l.snapshot}),
    }
}

fn c_outcome(o: &ProvisionOutcome) -> Value {
    json!({"action": action_name(o.action), "reason": o.reason, "link": c_link(&o.link),
           "location": o.location, "requests": o.requests})
}

fn retry(r: &RetryClass) -> (Value, Value) {
    match r {
        RetryClass::Permanent => (json!("permanent"), Value::Null),
        RetryClass::Backoff => (json!("backoff"), Value::Null),
        RetryClass::AfterSeconds(n) => (json!("after-seconds"), json!(n)),
    }
}

fn c_error(e: &ProvisioningError) -> Value {
    let mut out = json!({"case": null, "status": null, "scimType": null, "detail": null,
        "message": null, "retry": null, "retryAfterSeconds": null, "transportError": null,
        "userId": null, "attribute": null});
    let set = |out: &mut Value, k: &str, v: Value| out[k] = v;
    match e {
        ProvisioningError::InvalidConfig(m) => {
            set(&mut out, "case", json!("invalid-config"));
            set(&mut out, "message", json!(m));
        }
        ProvisioningError::Other(m) => {
            set(&mut out, "case", json!("other"));
            set(&mut out, "message", json!(m));
        }
        ProvisioningError::MissingAttribute(m) => {
            set(&mut out, "case", json!("missing-attribute"));
            set(&mut out, "userId", json!(m.user_id));
            set(&mut out, "attribute", json!(m.attribute));
        }
        ProvisioningError::Transport(t) => {
            set(&mut out, "case", json!("transport"));
            let kind = match &t.error {
                TransportError::Denied(_) => "denied",
                TransportError::InvalidUrl(_) => "invalid-url",
                TransportError::CannotConnect(_) => "cannot-connect",
                TransportError::Tls(_) => "tls",
                TransportError::Timeout => "timeout",
                TransportError::Other(_) => "other",
            };
            set(&mut out, "transportError", json!(kind));
            let (r, after) = retry(&t.retry);
            set(&mut out, "retry", r);
            set(&mut out, "retryAfterSeconds", after);
        }
        ProvisioningError::Scim(s) => {
            set(&mut out, "case", json!("scim"));
            set(&mut out, "status", json!(s.status));
            set(&mut out, "scimType", json!(s.scim_type));
            set(&mut out, "detail", json!(s.detail));
            let (r, after) = retry(&s.retry);
            set(&mut out, "retry", r);
            set(&mut out, "retryAfterSeconds", after);
        }
        ProvisioningError::UnexpectedResponse(u) => {
            set(&mut out, "case", json!("unexpected-response"));
            set(&mut out, "status", json!(u.status));
            set(&mut out, "detail", json!(u.reason));
            let (r, after) = retry(&u.retry);
            set(&mut out, "retry", r);
            set(&mut out, "retryAfterSeconds", after);
        }
    }
    out
}

fn to_field(v: &Value) -> Result<FieldValue> {
    Ok(match v {
        Value::String(s) => FieldValue::Text(s.clone()),
        Value::Number(n) => FieldValue::Number(n.as_f64().context("number")?),
        Value::Bool(b) => FieldValue::Boolean(*b),
        Value::Null => FieldValue::Null,
        Value::Array(items) => FieldValue::TextList(
            items
                .iter()
                .map(|i| i.as_str().map(str::to_string).context("a list of strings"))
                .collect::<Result<_>>()?,
        ),
        Value::Object(_) => bail!("a field value cannot be an object"),
    })
}

fn to_user(u: &Value) -> Result<CmsUser> {
    let mut fields = Vec::new();
    if let Some(map) = u.get("fields").and_then(Value::as_object) {
        for (k, v) in map {
            fields.push((k.clone(), to_field(v)?));
        }
    }
    Ok(CmsUser {
        id: u["id"].as_str().context("user id")?.to_string(),
        fields,
        active: u.get("active").and_then(Value::as_bool).unwrap_or(true),
    })
}

fn to_link(v: Option<&Value>) -> Option<Link> {
    let v = v.filter(|v| !v.is_null())?;
    Some(Link {
        remote_id: v["remoteId"].as_str()?.to_string(),
        version: v.get("version").and_then(Value::as_str).map(str::to_string),
        snapshot: v
            .get("snapshot")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

fn to_event(v: &Value) -> Result<UserEvent> {
    Ok(match v.as_str().context("event")? {
        "created" => UserEvent::Created,
        "updated" => UserEvent::Updated,
        "blocked" => UserEvent::Blocked,
        "unblocked" => UserEvent::Unblocked,
        "deleted" => UserEvent::Deleted,
        "reconcile" => UserEvent::Reconcile,
        other => bail!("unknown event {other}"),
    })
}

fn settings(config: &Value) -> ConnectorSettings {
    let policy = match config.get("policy") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    ConnectorSettings {
        base_url: config["base_url"].as_str().unwrap_or_default().to_string(),
        credentials: match config.get("token").and_then(Value::as_str) {
            Some(t) => Credentials::Bearer(t.to_string()),
            None => Credentials::None,
        },
        timeout_ms: config
            .get("timeout")
            .and_then(Value::as_u64)
            .unwrap_or(30_000) as u32,
        policy_json: policy,
    }
}

fn server_config(config: &Value) -> ServerSettings {
    let policy = match config.get("policy") {
        None | Some(Value::Null) => String::new(),
        Some(Value::Object(m)) if m.is_empty() => String::new(),
        Some(v) => v.to_string(),
    };
    ServerSettings {
        base_url: config["base_url"].as_str().unwrap_or_default().to_string(),
        bearer_token: config["token"].as_str().unwrap_or_default().to_string(),
        max_results: config["max_results"].as_u64().unwrap_or(200) as u32,
        bulk_max_operations: config["bulk_max_operations"].as_u64().unwrap_or(100) as u32,
        bulk_max_payload: config["bulk_max_payload"].as_u64().unwrap_or(1 << 20),
        policy_json: policy,
    }
}

fn c_response(status: u16, headers: &[(String, String)], body: &[u8]) -> Value {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.to_lowercase(), json!(v)))
        .collect();
    let parsed = serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    json!({"status": status, "headers": headers, "json": parsed, "bodyLength": body.len()})
}

/// A server role: the session plus what re-opening it after a trap needs (as the other hosts'
/// libraries do by themselves: a fresh instance over the same directory and configuration).
struct Served {
    session: Option<ServerSession>,
    config: ServerSettings,
    db: PathBuf,
}

struct Run<'a> {
    peer: &'a Peer,
    tmp: PathBuf,
    runtime: Option<Runtime>,
    connectors: HashMap<String, Session>,
    servers: HashMap<String, Served>,
    ctx: Ctx,
}

impl Run<'_> {
    fn rt(&self) -> &Runtime {
        self.runtime.as_ref().unwrap_or_else(|| runtime())
    }

    fn open_server(&self, served: &Served) -> Result<ServerSession> {
        let directory = SqliteDirectory::open(&served.db)?;
        // The typed error's Display says the component's refusal in words.
        Ok(self.rt().connect_server(
            &served.config,
            Box::new(directory),
            LogSink::stderr(Level::Error),
        )?)
    }

    fn conn(&mut self, name: &str) -> Result<&mut Session> {
        self.connectors
            .get_mut(name)
            .ok_or_else(|| anyhow!("no connector {name}"))
    }

    fn step(&mut self, step: &Value) -> Result<Value> {
        let op = step["op"].as_str().context("op")?.to_string();
        let mut s = serde_json::Map::new();
        for (k, v) in step.as_object().context("step")? {
            if k != "expect" {
                s.insert(k.clone(), expand(v, &self.ctx)?);
            }
        }
        let name = s
            .get("connector")
            .and_then(Value::as_str)
            .unwrap_or("main")
            .to_string();
        // The outer error of every host-example call is a trap.
        let trapped =
            |e: anyhow::Error| json!({"trap": {"kind": "trap", "message": format!("{e:#}")}});
        let answer = |r: Result<Value, ProvisioningError>| match r {
            Ok(v) => json!({"ok": v}),
            Err(e) => json!({"error": c_error(&e)}),
        };
        Ok(match op.as_str() {
            "runtime" => {
                let bytes = s["memory_limit_bytes"].as_u64().context("bytes")? as usize;
                let limits = host_example::GuestLimits {
                    memory_limit_bytes: bytes,
                    ..runtime().limits()
                };
                self.runtime = Some(runtime().clone().with_limits(limits));
                json!({"ok": true})
            }
            "open" => {
                let as_ = s
                    .get("as")
                    .and_then(Value::as_str)
                    .unwrap_or("main")
                    .to_string();
                // Through the library's typed error: the component's refusal is its
                // Provisioning case, anything else a trap.
                match self.rt().connect(&settings(&s["config"])) {
                    Err(host_example::Error::Provisioning(e)) => answer(Err(e)),
                    Err(e) => trapped(e.into()),
                    Ok(session) => {
                        self.connectors.insert(as_, session);
                        json!({"ok": true})
                    }
                }
            }
            "test-connection" => match self.conn(&name)?.test_connection().flatten_err() {
                Err(host_example::Error::Provisioning(e)) => answer(Err(e)),
                Err(e) => trapped(e.into()),
                Ok(c) => answer(Ok({
                    json!({"discovered": c.discovered, "patch": c.patch,
                        "bulk": c.bulk.map(|b| json!({"maxOperations": b.max_operations, "maxPayloadSize": b.max_payload_size})),
                        "filterMaxResults": c.filter_max_results, "etag": c.etag, "sort": c.sort,
                        "changePassword": c.change_password})
                })),
            },
            "provision" => {
                let user = to_user(&s["user"])?;
                let event = to_event(&s["event"])?;
                let link = to_link(s.get("link"));
                match self.conn(&name)?.provision(&user, event, link.as_ref()) {
                    Err(e) => trapped(e),
                    Ok(r) => {
                        let out = answer(r.map(|o| c_outcome(&o)));
                        if let (Some(save), Some(l)) =
                            (s.get("save").and_then(Value::as_str), out["ok"].get("link"))
                            && !l.is_null()
                        {
                            self.ctx.links.insert(save.to_string(), l.clone());
                        }
                        out
                    }
                }
            }
            "plan" => {
                let user = to_user(&s["user"])?;
                let event = to_event(&s["event"])?;
                let linked = s["linked"].as_bool().unwrap_or(false);
                match self.conn(&name)?.plan(&user, event, linked) {
                    Err(e) => trapped(e),
                    Ok(p) => json!({"ok": {"action": planned_name(p.action), "reason": p.reason}}),
                }
            }
            "batch" => {
                let items_json = s["items"].as_array().context("items")?.clone();
                let items = items_json
                    .iter()
                    .map(|i| {
                        Ok(BatchItem {
                            user: to_user(&i["user"])?,
                            event: to_event(&i["event"])?,
                            link: to_link(i.get("link")),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                match self.conn(&name)?.provision_batch(&items) {
                    Err(e) => trapped(e),
                    Ok(b) => {
                        let results: Vec<Value> = b
                            .results
                            .iter()
                            .map(|r| match r {
                                Ok(o) => json!({"ok": c_outcome(o)}),
                                Err(e) => json!({"error": c_error(e)}),
                            })
                            .collect();
                        for (item, r) in items_json.iter().zip(&results) {
                            if let (Some(save), Some(l)) = (
                                item.get("save").and_then(Value::as_str),
                                r["ok"].get("link"),
                            ) && !l.is_null()
                            {
                                self.ctx.links.insert(save.to_string(), l.clone());
                            }
                        }
                        json!({"ok": {"results": results, "requests": b.requests, "bulkRequests": b.bulk_requests}})
                    }
                }
            }
            "map-user" => {
                let user = to_user(&s["user"])?;
                match self.conn(&name)?.map_user(&user) {
                    Err(e) => trapped(e),
                    Ok(r) => answer(r.map(|t| serde_json::from_str(&t).unwrap_or(Value::Null))),
                }
            }
            "get-user" => {
                let id = s["remoteId"].as_str().context("remoteId")?.to_string();
                match self.conn(&name)?.get_user(&id) {
                    Err(e) => trapped(e),
                    Ok(r) => answer(r.map(|t| {
                        t.map(|t| serde_json::from_str(&t).unwrap_or(Value::Null))
                            .unwrap_or(Value::Null)
                    })),
                }
            }
            "index-remote-users" => match self.conn(&name)?.index_remote_users() {
                Err(e) => trapped(e),
                Ok(r) => answer(r.map(|l| json!({"users": l.users, "requests": l.requests}))),
            },
            "scope-fields" => match self.conn(&name)?.scope_fields() {
                Err(e) => trapped(e),
                Ok(fields) => json!({"ok": fields}),
            },
            "remote-user-ids" => match self.conn(&name)?.remote_user_ids() {
                Err(e) => trapped(e),
                Ok(ids) => json!({"ok": ids}),
            },
            "export-remote-index" => match self.conn(&name)?.export_remote_index() {
                Err(e) => trapped(e),
                Ok(doc) => {
                    if let Some(save) = s.get("save").and_then(Value::as_str) {
                        self.ctx
                            .vars
                            .insert(save.to_string(), doc.clone().unwrap_or_default());
                    }
                    json!({"ok": doc})
                }
            },
            "import-remote-index" => {
                let doc = s["document"].as_str().context("document")?.to_string();
                match self.conn(&name)?.import_remote_index(&doc) {
                    Err(e) => trapped(e),
                    Ok(r) => answer(r.map(|n| json!(n))),
                }
            }
            "export-dialect" => match self.conn(&name)?.export_dialect() {
                Err(e) => trapped(e),
                Ok(doc) => {
                    if let Some(save) = s.get("save").and_then(Value::as_str) {
                        self.ctx.vars.insert(save.to_string(), doc.clone());
                    }
                    json!({"ok": serde_json::from_str::<Value>(&doc).unwrap_or(Value::Null)})
                }
            },
            "import-dialect" => {
                let doc = s["document"].as_str().context("document")?.to_string();
                match self.conn(&name)?.import_dialect(&doc) {
                    Err(e) => trapped(e),
                    Ok(r) => answer(r.map(|()| Value::Null)),
                }
            }
            "server-open" => {
                let as_ = s
                    .get("as")
                    .and_then(Value::as_str)
                    .unwrap_or("main")
                    .to_string();
                let mut served = Served {
                    session: None,
                    config: server_config(&s["config"]),
                    db: self
                        .tmp
                        .join(format!("dir-{as_}-{}.db", self.servers.len())),
                };
                served.session = Some(self.open_server(&served)?);
                self.servers.insert(as_, served);
                json!({"ok": true})
            }
            "serve" => {
                let r = &s["request"];
                let body = match r.get("body") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::String(t)) => t.clone().into_bytes(),
                    Some(v) => v.to_string().into_bytes(),
                };
                let request = ServerRequest {
                    method: r["method"].as_str().unwrap_or("GET").to_string(),
                    path: r["path"].as_str().unwrap_or("/").to_string(),
                    query: r
                        .get("query")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    headers: r
                        .get("headers")
                        .and_then(Value::as_array)
                        .map(|hs| {
                            hs.iter()
                                .map(|h| {
                                    (
                                        h[0].as_str().unwrap_or("").to_string(),
                                        h[1].as_str().unwrap_or("").to_string(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    body,
                };
                let server = s
                    .get("server")
                    .and_then(Value::as_str)
                    .unwrap_or("main")
                    .to_string();
                let mut served = self.servers.remove(&server).context("no such server")?;
                if served.session.is_none() {
                    served.session = Some(self.open_server(&served)?);
                }
                let result = served.session.as_mut().expect("opened").handle(&request);
                let out = match result {
                    Err(e) => {
                        served.session = None; // the instance is spent; the next request re-opens
                        trapped(e)
                    }
                    Ok(resp) => {
                        let out = c_response(resp.status, &resp.headers, &resp.body);
                        if let Some(save) = s.get("saveId").and_then(Value::as_str)
                            && let Some(id) = out["json"]["id"].as_str()
                        {
                            self.ctx.vars.insert(save.to_string(), id.to_string());
                        }
                        json!({"ok": out})
                    }
                };
                self.servers.insert(server, served);
                out
            }
            "server-get" | "server-post" | "server-delete" => self.peer_http(&op, &s)?,
            other => bail!("unknown op {other}"),
        })
    }

    fn peer_http(&self, op: &str, s: &serde_json::Map<String, Value>) -> Result<Value> {
        let base = &self.peer.base_url;
        let (method, url, body) = match op {
            "server-get" => {
                let mut url = format!(
                    "{base}{}",
                    s.get("path").and_then(Value::as_str).unwrap_or("/Users")
                );
                if let Some(f) = s.get("filter").and_then(Value::as_str) {
                    url.push_str("?filter=");
                    url.push_str(&percent(f));
                }
                ("GET", url, None)
            }
            "server-post" => (
                "POST",
                format!("{base}{}", s["path"].as_str().unwrap_or("/Users")),
                Some(s["body"].to_string()),
            ),
            _ => {
                let user = s["user"].as_str().context("user")?;
                let id = self.ctx.links[user]["remoteId"].as_str().context("id")?;
                ("DELETE", format!("{base}/Users/{}", percent(id)), None)
            }
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let builder = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Authorization", format!("Bearer {}", self.peer.token))
            .header("Content-Type", "application/scim+json");
        let mut response = match body {
            Some(b) => agent.run(builder.body(b.into_bytes())?),
            None => agent.run(builder.body(())?),
        }
        .with_context(|| format!("{method} {url}"))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()?;
        let body: Value = serde_json::from_str(&text).unwrap_or(json!({}));
        Ok(json!({"status": status, "count": body.get("totalResults"),
            "resources": body.get("Resources").cloned().unwrap_or(json!([])), "json": body}))
    }
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}/v2")
}

fn run_scenario(scenario: &Value, tmp: PathBuf) -> Result<Vec<String>> {
    let name = scenario["name"].as_str().context("name")?;
    // A scenario may name another peer: our quirky server with its switches.
    let peer = match scenario.pointer("/peer/quirky").and_then(Value::as_array) {
        Some(switches) => {
            let switches: Vec<&str> = switches.iter().filter_map(Value::as_str).collect();
            scim_provisioner_tests::peers::quirky(&switches)?
        }
        None => scim2_server()?,
    };
    // Beside it, a plain HTTP server whose answers are HTML, never SCIM (`${HTML_URL}`).
    let html = html_server()?;
    let mut run = Run {
        peer: &peer,
        tmp,
        runtime: None,
        connectors: HashMap::new(),
        servers: HashMap::new(),
        ctx: Ctx {
            vars: HashMap::from([
                ("BASE_URL".to_string(), peer.base_url.clone()),
                ("TOKEN".to_string(), peer.token.clone()),
                ("DEAD_URL".to_string(), dead_url()),
                ("HTML_URL".to_string(), html.base_url.clone()),
            ]),
            links: HashMap::new(),
        },
    };
    let mut failures = Vec::new();
    for (i, step) in scenario["steps"]
        .as_array()
        .context("steps")?
        .iter()
        .enumerate()
    {
        if let Some((_, _, reason)) = SKIPS.iter().find(|(n, s, _)| *n == name && *s == i) {
            println!("scenario {name} step {i}: skip on {HOST} because {reason}");
            continue;
        }
        let expect = step
            .get("expect")
            .context("a step without an expectation")?;
        let got = run.step(step)?;
        let mut errs = Vec::new();
        matches(&expand(expect, &run.ctx)?, &got, "$", &mut errs);
        if !errs.is_empty() {
            failures.push(format!(
                "step {i} ({}): {}",
                step["op"].as_str().unwrap_or("?"),
                errs.join("; ")
            ));
            break;
        }
    }
    Ok(failures)
}

#[test]
fn scenarios() {
    let dir = workspace_root().join("tests").join("scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/scenarios")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no scenarios in {}", dir.display());
    let (mut passed, mut failed) = (0, 0);
    let mut report = Vec::new();
    for (n, file) in files.iter().enumerate() {
        let scenario: Value =
            serde_json::from_str(&std::fs::read_to_string(file).expect("read")).expect("JSON");
        let name = scenario["name"].as_str().unwrap_or("?").to_string();
        let tmp = std::env::temp_dir().join(format!("scim-scenarios-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&tmp).expect("tmp dir");
        let result = run_scenario(&scenario, tmp.clone());
        let _ = std::fs::remove_dir_all(&tmp);
        match result {
            Ok(f) if f.is_empty() => passed += 1,
            Ok(f) => {
                failed += 1;
                report.push(format!("{name}: {}", f.join("\n  ")));
            }
            Err(e) => {
                failed += 1;
                report.push(format!("{name}: {e:#}"));
            }
        }
    }
    // Straight to stderr, past the test harness's capture, so `cargo test` always shows it.
    let _ = writeln!(
        std::io::stderr(),
        "scenarios: {HOST}: {passed} passed, {failed} failed"
    );
    assert!(
        report.is_empty(),
        "failed scenarios:\n{}",
        report.join("\n")
    );
}
