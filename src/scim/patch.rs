//! The SCIM PATCH engine (RFC 7644 §3.5.2), for both roles: [`apply`] carries out a PATCH
//! request on a resource's JSON (server role), and [`diff`] computes the PATCH that turns
//! one version of a resource into another (client role).
//!
//! The engine knows no schema beyond a few rules that every SCIM resource shares:
//!
//! - `id`, `meta` and `schemas` cannot be changed (`mutability`); writing the value they
//!   already have is accepted as a no-op, because clients echo them in no-path values.
//! - `active` is a boolean; the strings `"true"`/`"false"` (any case), which Entra ID
//!   sends, are coerced.
//! - In a multi-valued attribute at most one value has `"primary": true`; adding or
//!   replacing a primary value clears the flag on the others (RFC 7643 §2.4).
//! - Attribute names are matched case-insensitively; existing keys keep their spelling.
//! - A name qualified with a core schema URN is a top-level attribute; one qualified with
//!   any other URN lives in the extension object keyed by that URN, which is created (and
//!   the URN added to `schemas`, when that is an array) on first write and removed (with
//!   its URN) when its last attribute is removed.
//! - Removing the last value of a multi-valued attribute or the last sub-attribute of a
//!   complex attribute removes the attribute: SCIM treats empty and unassigned alike.

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::scim::attr;
use crate::scim::filter::{self, CompareOp, Filter};
use crate::scim::path::AttrPath;

/// The schema URN of a PATCH request body.
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// What a PATCH operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchOpKind {
    /// `add`
    Add,
    /// `remove`
    Remove,
    /// `replace`
    Replace,
}

impl PatchOpKind {
    /// The operation's name on the wire, lowercase.
    pub fn as_str(self) -> &'static str {
        match self {
            PatchOpKind::Add => "add",
            PatchOpKind::Remove => "remove",
            PatchOpKind::Replace => "replace",
        }
    }
}

/// Accepts any case (`add`, `Add`, `ADD`), because Entra ID capitalises the names.
impl<'de> Deserialize<'de> for PatchOpKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        match s.to_ascii_lowercase().as_str() {
            "add" => Ok(PatchOpKind::Add),
            "remove" => Ok(PatchOpKind::Remove),
            "replace" => Ok(PatchOpKind::Replace),
            _ => Err(D::Error::unknown_variant(&s, &["add", "remove", "replace"])),
        }
    }
}

/// Reads a present `value` as `Some`, even when it is `null`, so that an explicit `null`
/// (clear the target) differs from a missing value.
fn present_value<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// One PATCH operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchOperation {
    /// The operation.
    pub op: PatchOpKind,
    /// The target path; `None` means the resource itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The value; `Some(Value::Null)` when the request said `"value": null`.
    #[serde(
        default,
        deserialize_with = "present_value",
        skip_serializing_if = "Option::is_none"
    )]
    pub value: Option<Value>,
}

impl PatchOperation {
    /// `add` at `path`.
    pub fn add(path: impl Into<String>, value: Value) -> Self {
        PatchOperation {
            op: PatchOpKind::Add,
            path: Some(path.into()),
            value: Some(value),
        }
    }

    /// `replace` at `path`.
    pub fn replace(path: impl Into<String>, value: Value) -> Self {
        PatchOperation {
            op: PatchOpKind::Replace,
            path: Some(path.into()),
            value: Some(value),
        }
    }

    /// `remove` at `path`.
    pub fn remove(path: impl Into<String>) -> Self {
        PatchOperation {
            op: PatchOpKind::Remove,
            path: Some(path.into()),
            value: None,
        }
    }
}

/// A PATCH request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchRequest {
    /// The message schemas; [`PATCH_OP_SCHEMA`].
    #[serde(default)]
    pub schemas: Vec<String>,
    /// The operations, applied in order.
    #[serde(rename = "Operations", alias = "operations")]
    pub operations: Vec<PatchOperation>,
}

impl PatchRequest {
    /// A request with the PatchOp schema and these operations.
    pub fn new(operations: Vec<PatchOperation>) -> Self {
        PatchRequest {
            schemas: vec![PATCH_OP_SCHEMA.to_string()],
            operations,
        }
    }

    /// Checks the schema and applies the operations with [`apply`].
    pub fn apply_to(&self, resource: &mut Value) -> Result<(), PatchError> {
        if !self
            .schemas
            .iter()
            .any(|s| attr::name_eq(s, PATCH_OP_SCHEMA))
        {
            return Err(PatchError::new(
                PatchErrorKind::InvalidSyntax,
                format!("the request's schemas must include {PATCH_OP_SCHEMA}"),
            ));
        }
        apply(resource, &self.operations)
    }
}

/// The kind of a PATCH failure, which is its SCIM `scimType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchErrorKind {
    /// `invalidPath`: the path is malformed or cannot be used this way.
    InvalidPath,
    /// `noTarget`: the path's value filter matched nothing, or `remove` had no path.
    NoTarget,
    /// `invalidValue`: the value is missing or has the wrong shape.
    InvalidValue,
    /// `mutability`: the operation would change `id`, `meta` or `schemas`.
    Mutability,
    /// `invalidSyntax`: the request or the resource is not shaped as SCIM requires.
    InvalidSyntax,
}

impl PatchErrorKind {
    /// The `scimType` string.
    pub fn as_str(self) -> &'static str {
        match self {
            PatchErrorKind::InvalidPath => "invalidPath",
            PatchErrorKind::NoTarget => "noTarget",
            PatchErrorKind::InvalidValue => "invalidValue",
            PatchErrorKind::Mutability => "mutability",
            PatchErrorKind::InvalidSyntax => "invalidSyntax",
        }
    }
}

/// Why a PATCH could not be applied. Every kind is answered with HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchError {
    /// The kind, which gives the `scimType`.
    pub kind: PatchErrorKind,
    /// What went wrong, naming the operation (counted from 0) and the path.
    pub message: String,
}

impl PatchError {
    fn new(kind: PatchErrorKind, message: impl Into<String>) -> Self {
        PatchError {
            kind,
            message: message.into(),
        }
    }

    /// The SCIM `scimType`: `invalidPath`, `noTarget`, `invalidValue`, `mutability` or
    /// `invalidSyntax`.
    pub fn scim_type(&self) -> &'static str {
        self.kind.as_str()
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        400
    }
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for PatchError {}

// ---------------------------------------------------------------------------------------
// Server role: apply
// ---------------------------------------------------------------------------------------

/// Applies `ops` to `resource` in order (RFC 7644 §3.5.2). The operations are atomic: on
/// error the resource is left exactly as it was.
///
/// Beyond the RFC, it accepts what Okta and Entra ID send: no-path `add`/`replace` values
/// whose keys are paths (`"name.givenName"`, URN-qualified names), `add` on a value filter
/// that matches nothing (a new value is built from the filter's `eq` terms, as in
/// `emails[type eq "work"].value`), and `remove` with a `value` listing the members to
/// remove. A `"value": null` on `add`/`replace` clears the target.
pub fn apply(resource: &mut Value, ops: &[PatchOperation]) -> Result<(), PatchError> {
    let mut work = resource.clone();
    let Some(root) = work.as_object_mut() else {
        return Err(PatchError::new(
            PatchErrorKind::InvalidSyntax,
            "the resource is not a JSON object",
        ));
    };
    for (i, op) in ops.iter().enumerate() {
        apply_one(root, op).map_err(|e| {
            let target = op.path.as_deref().unwrap_or("(no path)");
            PatchError::new(
                e.kind,
                format!("operation {i} ({} {target}): {}", op.op.as_str(), e.message),
            )
        })?;
    }
    *resource = work;
    Ok(())
}

fn err(kind: PatchErrorKind, message: impl Into<String>) -> PatchError {
    PatchError::new(kind, message)
}

fn apply_one(root: &mut Map<String, Value>, op: &PatchOperation) -> Result<(), PatchError> {
    // Some clients send `"path": ""` for "no path".
    let op_path = op.path.as_deref().filter(|p| !p.trim().is_empty());
    if op.op == PatchOpKind::Remove {
        let Some(p) = op_path else {
            return Err(err(
                PatchErrorKind::NoTarget,
                "remove requires a path (RFC 7644 §3.5.2.2)",
            ));
        };
        let path = parse_path(p)?;
        return remove_at(root, &path, op.value.as_ref());
    }
    let Some(value) = &op.value else {
        return Err(err(
            PatchErrorKind::InvalidValue,
            format!("{} requires a value", op.op.as_str()),
        ));
    };
    match op_path {
        Some(p) => {
            let path = parse_path(p)?;
            set_at(root, op.op, &path, value)
        }
        None => {
            let Value::Object(attrs) = value else {
                return Err(err(
                    PatchErrorKind::InvalidValue,
                    "without a path, the value must be an object of attributes",
                ));
            };
            for (k, v) in attrs {
                set_key(root, op.op, k, v)?;
            }
            Ok(())
        }
    }
}

fn parse_path(p: &str) -> Result<AttrPath, PatchError> {
    AttrPath::parse(p).map_err(|e| err(PatchErrorKind::InvalidPath, e.to_string()))
}

/// Applies one key of a no-path value (or of an extension object); the key is a path.
fn set_key(
    root: &mut Map<String, Value>,
    kind: PatchOpKind,
    key: &str,
    value: &Value,
) -> Result<(), PatchError> {
    let path = AttrPath::parse(key).map_err(|e| {
        err(
            PatchErrorKind::InvalidPath,
            format!("value key '{key}' is not an attribute path: {e}"),
        )
    })?;
    set_at(root, kind, &path, value)
}

/// Treats `urn:x:y` as the extension `urn:x:y` as a whole when the resource has an object
/// under that key, for extension URNs that do not follow the `...:<version>:<Type>` form.
fn normalize(root: &Map<String, Value>, p: &AttrPath) -> AttrPath {
    if let (Some(urn), None, None) = (&p.urn, &p.filter, &p.sub_attr)
        && !p.attr.is_empty()
    {
        let whole = format!("{urn}:{}", p.attr);
        if matches!(attr::get_ci(root, &whole), Some(Value::Object(_))) {
            return AttrPath {
                urn: Some(whole),
                attr: String::new(),
                filter: None,
                sub_attr: None,
            };
        }
    }
    p.clone()
}

/// True for `id`, `meta` and `schemas`, which no PATCH may change.
fn is_immutable(p: &AttrPath) -> bool {
    p.is_top_level() && (p.is_attr("id") || p.is_attr("meta") || p.is_attr("schemas"))
}

/// The current value at an unfiltered path, if any.
fn current<'a>(root: &'a Map<String, Value>, p: &AttrPath) -> Option<&'a Value> {
    let obj = if p.is_top_level() {
        root
    } else {
        match attr::get_ci(root, p.urn.as_deref().unwrap_or_default()) {
            Some(Value::Object(o)) => o,
            _ => return None,
        }
    };
    let v = attr::get_ci(obj, &p.attr)?;
    match &p.sub_attr {
        None => Some(v),
        Some(sub) => attr::get_ci(v.as_object()?, sub),
    }
}

/// Coerces the value written to `active` to a boolean.
fn coerce(p: &AttrPath, value: &Value) -> Result<Value, PatchError> {
    if !(p.is_top_level() && p.is_attr("active") && p.filter.is_none() && p.sub_attr.is_none()) {
        return Ok(value.clone());
    }
    match value {
        Value::Bool(_) | Value::Null => Ok(value.clone()),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
        other => Err(err(
            PatchErrorKind::InvalidValue,
            format!("active must be a boolean, not {other}"),
        )),
    }
}

/// Adds `urn` to the resource's `schemas` array if it is not there.
fn add_schema(root: &mut Map<String, Value>, urn: &str) {
    let Some(key) = attr::find_key(root, "schemas").map(str::to_string) else {
        return;
    };
    if let Some(Value::Array(schemas)) = root.get_mut(&key)
        && !schemas
            .iter()
            .any(|s| s.as_str().is_some_and(|s| attr::name_eq(s, urn)))
    {
        schemas.push(Value::String(urn.to_string()));
    }
}

/// Removes the extension object keyed `urn` and drops the URN from `schemas`.
fn drop_extension(root: &mut Map<String, Value>, urn: &str) {
    if let Some(key) = attr::find_key(root, urn).map(str::to_string) {
        root.remove(&key);
    }
    if let Some(key) = attr::find_key(root, "schemas").map(str::to_string)
        && let Some(Value::Array(schemas)) = root.get_mut(&key)
    {
        schemas.retain(|s| !s.as_str().is_some_and(|s| attr::name_eq(s, urn)));
    }
}

/// The object holding the attributes of the path's schema: the resource itself for
/// unqualified and core names, otherwise the extension object, created if `create`.
fn container_mut<'a>(
    root: &'a mut Map<String, Value>,
    p: &AttrPath,
    create: bool,
) -> Result<Option<&'a mut Map<String, Value>>, PatchError> {
    let Some(urn) = p.urn.as_deref().filter(|u| !attr::is_core_urn(u)) else {
        return Ok(Some(root));
    };
    let key = match attr::find_key(root, urn) {
        Some(k) => k.to_string(),
        None if create => {
            add_schema(root, urn);
            root.insert(urn.to_string(), Value::Object(Map::new()));
            urn.to_string()
        }
        None => return Ok(None),
    };
    match root.get_mut(&key) {
        Some(Value::Object(ext)) => Ok(Some(ext)),
        _ => Err(err(
            PatchErrorKind::InvalidValue,
            format!("the extension {urn} is not an object"),
        )),
    }
}

/// Removes an extension object that a removal has left empty.
fn prune_extension(root: &mut Map<String, Value>, p: &AttrPath) {
    let Some(urn) = p.urn.as_deref().filter(|u| !attr::is_core_urn(u)) else {
        return;
    };
    if let Some(Value::Object(ext)) = attr::get_ci(root, urn)
        && ext.is_empty()
    {
        drop_extension(root, urn);
    }
}

/// Sets `obj[name]` (matched case-insensitively), or removes it when `value` is null.
fn put(obj: &mut Map<String, Value>, name: &str, value: &Value) {
    let key = attr::find_key(obj, name).unwrap_or(name).to_string();
    if value.is_null() {
        obj.remove(&key);
    } else {
        obj.insert(key, value.clone());
    }
}

/// Merges the sub-attributes of `value` into `obj`; null sub-values remove.
fn merge(obj: &mut Map<String, Value>, value: &Map<String, Value>) {
    for (k, v) in value {
        put(obj, k, v);
    }
}

fn is_primary(v: &Value) -> bool {
    v.as_object()
        .and_then(|o| attr::get_ci(o, "primary"))
        .is_some_and(|p| p == &Value::Bool(true))
}

/// Keeps `primary: true` only on the last of the `touched` values that has it.
fn enforce_primary(arr: &mut [Value], touched: &[usize]) {
    let Some(keep) = touched
        .iter()
        .rev()
        .copied()
        .find(|i| arr.get(*i).is_some_and(is_primary))
    else {
        return;
    };
    for (i, v) in arr.iter_mut().enumerate() {
        if i != keep
            && is_primary(v)
            && let Value::Object(o) = v
        {
            put(o, "primary", &Value::Bool(false));
        }
    }
}

/// True when `a` and `b` are the same value of a multi-valued attribute: equal, or
/// complex values with the same `value` and the same `type` (case-insensitively).
fn same_item(a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    let (Value::Object(x), Value::Object(y)) = (a, b) else {
        return false;
    };
    let (Some(xv), Some(yv)) = (attr::get_ci(x, "value"), attr::get_ci(y, "value")) else {
        return false;
    };
    let types_match = match (attr::get_ci(x, "type"), attr::get_ci(y, "type")) {
        (None, None) => true,
        (Some(Value::String(s)), Some(Value::String(t))) => s.eq_ignore_ascii_case(t),
        (s, t) => s == t,
    };
    xv == yv && types_match
}

/// Appends `item` unless the array already holds it; a complex value that matches an
/// existing one (same `value` and `type`) is merged into it instead. Returns the index.
fn add_item(arr: &mut Vec<Value>, item: &Value) -> usize {
    if let Some(i) = arr.iter().position(|v| same_item(v, item)) {
        if let (Some(Value::Object(existing)), Value::Object(new)) = (arr.get_mut(i), item) {
            merge(existing, new);
        }
        return i;
    }
    arr.push(item.clone());
    arr.len() - 1
}

/// The sub-attributes a value filter pins with `eq`, to seed a new value when `add`
/// targets a filter that matches nothing; `None` if the filter is not a conjunction of
/// `eq` comparisons on plain sub-attribute names.
fn seed_from_filter(f: &Filter) -> Option<Map<String, Value>> {
    match f {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value,
        } if path.urn.is_none() && path.sub_attr.is_none() && !value.is_null() => {
            let mut m = Map::new();
            m.insert(path.attr.clone(), value.clone());
            Some(m)
        }
        Filter::And(a, b) => {
            let mut m = seed_from_filter(a)?;
            merge(&mut m, &seed_from_filter(b)?);
            Some(m)
        }
        _ => None,
    }
}

fn set_at(
    root: &mut Map<String, Value>,
    kind: PatchOpKind,
    p: &AttrPath,
    value: &Value,
) -> Result<(), PatchError> {
    let p = normalize(root, p);
    if p.is_schema_only() {
        let Value::Object(attrs) = value else {
            return Err(err(
                PatchErrorKind::InvalidValue,
                "the value for a schema URN must be an object of its attributes",
            ));
        };
        let urn = p.urn.as_deref().unwrap_or_default();
        for (k, v) in attrs {
            set_key(root, kind, &format!("{urn}:{k}"), v)?;
        }
        return Ok(());
    }
    if is_immutable(&p) {
        if p.filter.is_none() && current(root, &p) == Some(value) {
            return Ok(());
        }
        return Err(err(
            PatchErrorKind::Mutability,
            format!("{} cannot be changed", p.attr),
        ));
    }
    let value = coerce(&p, value)?;
    if value.is_null() {
        return match remove_at(root, &p, None) {
            Err(e) if e.kind == PatchErrorKind::NoTarget && kind == PatchOpKind::Add => Ok(()),
            other => other,
        };
    }
    let Some(obj) = container_mut(root, &p, true)? else {
        return Err(err(PatchErrorKind::NoTarget, "no such schema extension"));
    };
    let key = attr::find_key(obj, &p.attr).unwrap_or(&p.attr).to_string();
    match (&p.filter, &p.sub_attr) {
        (None, None) => set_whole(obj, &key, kind, &value),
        (None, Some(sub)) => set_sub(obj, &key, sub, &value),
        (Some(f), sub) => set_filtered(obj, &key, kind, f, sub.as_deref(), &value),
    }
}

fn set_whole(
    obj: &mut Map<String, Value>,
    key: &str,
    kind: PatchOpKind,
    value: &Value,
) -> Result<(), PatchError> {
    let Some(existing) = obj.get_mut(key) else {
        obj.insert(key.to_string(), value.clone());
        return Ok(());
    };
    match (existing, value) {
        (Value::Array(arr), _) if kind == PatchOpKind::Add => {
            let items: &[Value] = match value {
                Value::Array(items) => items,
                single => std::slice::from_ref(single),
            };
            let touched: Vec<usize> = items.iter().map(|item| add_item(arr, item)).collect();
            enforce_primary(arr, &touched);
        }
        (existing @ Value::Array(_), Value::Array(_)) => *existing = value.clone(),
        (existing @ Value::Array(_), single) => *existing = Value::Array(vec![single.clone()]),
        (Value::Object(o), Value::Object(v)) => merge(o, v),
        (existing, _) => *existing = value.clone(),
    }
    Ok(())
}

fn set_sub(
    obj: &mut Map<String, Value>,
    key: &str,
    sub: &str,
    value: &Value,
) -> Result<(), PatchError> {
    match obj.get_mut(key) {
        None => {
            let mut o = Map::new();
            o.insert(sub.to_string(), value.clone());
            obj.insert(key.to_string(), Value::Object(o));
            Ok(())
        }
        Some(Value::Object(o)) => {
            put(o, sub, value);
            Ok(())
        }
        Some(Value::Array(arr)) => {
            // A sub-attribute of a multi-valued attribute without a filter: every value.
            if arr.is_empty() {
                return Err(err(
                    PatchErrorKind::NoTarget,
                    format!("{key} has no values"),
                ));
            }
            for item in arr.iter_mut() {
                if let Value::Object(o) = item {
                    put(o, sub, value);
                }
            }
            let all: Vec<usize> = (0..arr.len()).collect();
            if attr::name_eq(sub, "primary") {
                enforce_primary(arr, &all);
            }
            Ok(())
        }
        Some(_) => Err(err(
            PatchErrorKind::InvalidPath,
            format!("{key} is not a complex attribute, so it has no sub-attribute {sub}"),
        )),
    }
}

fn set_filtered(
    obj: &mut Map<String, Value>,
    key: &str,
    kind: PatchOpKind,
    f: &Filter,
    sub: Option<&str>,
    value: &Value,
) -> Result<(), PatchError> {
    if !obj.contains_key(key) {
        if kind == PatchOpKind::Replace {
            return Err(err(
                PatchErrorKind::NoTarget,
                format!("{key} has no values to filter"),
            ));
        }
        obj.insert(key.to_string(), Value::Array(Vec::new()));
    }
    let Some(Value::Array(arr)) = obj.get_mut(key) else {
        return Err(err(
            PatchErrorKind::InvalidPath,
            format!("{key} is not multi-valued, so it cannot take a value filter"),
        ));
    };
    let hits: Vec<usize> = (0..arr.len())
        .filter(|i| {
            arr.get(*i)
                .is_some_and(|v| v.is_object() && filter::matches(f, v))
        })
        .collect();
    if hits.is_empty() {
        if kind == PatchOpKind::Replace {
            return Err(err(
                PatchErrorKind::NoTarget,
                format!("no value of {key} matches [{f}]"),
            ));
        }
        let Some(mut item) = seed_from_filter(f) else {
            return Err(err(
                PatchErrorKind::NoTarget,
                format!(
                    "no value of {key} matches [{f}], and the filter does not describe a new one"
                ),
            ));
        };
        match (sub, value) {
            (Some(s), v) => put(&mut item, s, v),
            (None, Value::Object(v)) => merge(&mut item, v),
            (None, _) => {
                return Err(err(
                    PatchErrorKind::InvalidValue,
                    "the value for a filtered path must be an object",
                ));
            }
        }
        arr.push(Value::Object(item));
        let last = arr.len() - 1;
        enforce_primary(arr, &[last]);
        return Ok(());
    }
    for &i in &hits {
        let Some(item) = arr.get_mut(i) else { continue };
        match (sub, kind, value) {
            (Some(s), _, v) => {
                if let Value::Object(o) = item {
                    put(o, s, v);
                }
            }
            (None, PatchOpKind::Replace, v) => *item = v.clone(),
            (None, _, Value::Object(v)) => {
                if let Value::Object(o) = item {
                    merge(o, v);
                }
            }
            (None, _, _) => {
                return Err(err(
                    PatchErrorKind::InvalidValue,
                    "the value for a filtered path must be an object",
                ));
            }
        }
    }
    enforce_primary(arr, &hits);
    Ok(())
}

fn remove_at(
    root: &mut Map<String, Value>,
    p: &AttrPath,
    value: Option<&Value>,
) -> Result<(), PatchError> {
    let p = normalize(root, p);
    if p.is_schema_only() {
        let urn = p.urn.as_deref().unwrap_or_default();
        if attr::is_core_urn(urn) {
            return Err(err(
                PatchErrorKind::InvalidPath,
                "the core schema cannot be removed",
            ));
        }
        drop_extension(root, urn);
        return Ok(());
    }
    if is_immutable(&p) {
        return Err(err(
            PatchErrorKind::Mutability,
            format!("{} cannot be removed", p.attr),
        ));
    }
    let result = remove_in(root, &p, value);
    prune_extension(root, &p);
    result
}

fn remove_in(
    root: &mut Map<String, Value>,
    p: &AttrPath,
    value: Option<&Value>,
) -> Result<(), PatchError> {
    let no_target = || err(PatchErrorKind::NoTarget, format!("{p} matched no value"));
    let Some(obj) = container_mut(root, p, false)? else {
        return if p.filter.is_some() {
            Err(no_target())
        } else {
            Ok(())
        };
    };
    let Some(key) = attr::find_key(obj, &p.attr).map(str::to_string) else {
        return if p.filter.is_some() {
            Err(no_target())
        } else {
            Ok(())
        };
    };
    let Some(existing) = obj.get_mut(&key) else {
        return Ok(());
    };
    match (&p.filter, &p.sub_attr, existing) {
        (None, None, Value::Array(arr)) if value.is_some_and(|v| !v.is_null()) => {
            // Entra ID removes members by listing them in `value`.
            let listed: &[Value] = match value {
                Some(Value::Array(items)) => items,
                Some(single) => std::slice::from_ref(single),
                None => &[],
            };
            arr.retain(|v| !listed.iter().any(|l| same_member(v, l)));
        }
        (None, None, _) => {
            obj.remove(&key);
        }
        (None, Some(sub), Value::Object(o)) => {
            if let Some(k) = attr::find_key(o, sub).map(str::to_string) {
                o.remove(&k);
            }
        }
        (None, Some(sub), Value::Array(arr)) => {
            for item in arr.iter_mut() {
                if let Value::Object(o) = item
                    && let Some(k) = attr::find_key(o, sub).map(str::to_string)
                {
                    o.remove(&k);
                }
            }
        }
        (None, Some(_), _) => {}
        (Some(f), sub, Value::Array(arr)) => {
            let before = arr.len();
            let mut hit = false;
            match sub {
                None => arr.retain(|v| !(v.is_object() && filter::matches(f, v))),
                Some(s) => {
                    for item in arr.iter_mut() {
                        if item.is_object() && filter::matches(f, item) {
                            hit = true;
                            if let Value::Object(o) = item
                                && let Some(k) = attr::find_key(o, s).map(str::to_string)
                            {
                                o.remove(&k);
                            }
                        }
                    }
                }
            }
            if !hit && arr.len() == before {
                return Err(no_target());
            }
        }
        (Some(_), _, _) => return Err(no_target()),
    }
    // Empty and unassigned are the same in SCIM; do not leave `[]` or `{}` behind.
    if obj.get(&key).is_some_and(is_empty) {
        obj.remove(&key);
    }
    Ok(())
}

/// True when a listed member (`{"value": "id"}`) names the value `v`.
fn same_member(v: &Value, listed: &Value) -> bool {
    match (v, listed) {
        (Value::Object(x), Value::Object(y)) if attr::get_ci(y, "value").is_some() => {
            attr::get_ci(x, "value") == attr::get_ci(y, "value")
        }
        _ => v == listed,
    }
}

/// True for null, `""`, `[]` and `{}`, which SCIM treats as unassigned.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

// ---------------------------------------------------------------------------------------
// Client role: diff
// ---------------------------------------------------------------------------------------

/// The PATCH operations that turn `old` into `new` (both resource JSON objects).
///
/// Attributes of `new` that differ are replaced, and attributes that `old` has but `new`
/// lacks or clears (null, `""`, `[]`, `{}`) are removed; `schemas`, `id` and `meta` are
/// ignored. Complex attributes are patched per sub-attribute (`name.givenName`).
/// Multi-valued attributes whose values all carry a distinct `type` are patched per value
/// (`emails[type eq "work"].value`, `add` of new types, `remove` of dropped ones); other
/// multi-valued attributes are replaced whole. Extension objects (keys starting with
/// `urn:`) are patched per attribute with URN-qualified paths. Equal inputs give no
/// operations. Multi-valued attributes are unordered in SCIM, so applying the result may
/// order values differently from `new`.
pub fn diff(old: &Value, new: &Value) -> Vec<PatchOperation> {
    let empty = Map::new();
    let old_obj = old.as_object().unwrap_or(&empty);
    let new_obj = new.as_object().unwrap_or(&empty);
    let mut ops = Vec::new();
    for (k, nv) in new_obj {
        if is_ignored(k) {
            continue;
        }
        let ov = attr::get_ci(old_obj, k);
        if is_extension_key(k) {
            diff_extension(k, ov, nv, &mut ops);
        } else {
            diff_attr(k, ov, nv, &mut ops);
        }
    }
    for (k, ov) in old_obj {
        if !is_ignored(k) && attr::get_ci(new_obj, k).is_none() && !is_empty(ov) {
            if is_extension_key(k) {
                remove_extension_parts(k, ov, &mut ops);
            } else {
                remove_parts(k, ov, &mut ops);
            }
        }
    }
    ops
}

/// Removes exactly what `old` held of an attribute, so values and sub-attributes that the
/// server has beside ours survive: `name.givenName` rather than `name`, and
/// `emails[type eq "work"]` rather than `emails`.
fn remove_parts(p: &str, old: &Value, ops: &mut Vec<PatchOperation>) {
    match old {
        Value::Object(o) if o.keys().all(|k| is_attr_name(k)) => {
            for (k, v) in o {
                if !is_empty(v) {
                    ops.push(PatchOperation::remove(format!("{p}.{k}")));
                }
            }
        }
        Value::Array(items) => match by_type(items) {
            Some(typed) if !typed.is_empty() => {
                for (_, t, _) in typed {
                    ops.push(PatchOperation::remove(format!(
                        "{p}[type eq {}]",
                        filter::quote(t)
                    )));
                }
            }
            _ => ops.push(PatchOperation::remove(p)),
        },
        _ => ops.push(PatchOperation::remove(p)),
    }
}

/// Removes an extension's attributes one by one: some servers reject a whole-URN path
/// (SCIMMY), and others would drop the extension's attributes we do not manage.
fn remove_extension_parts(urn: &str, old: &Value, ops: &mut Vec<PatchOperation>) {
    match old {
        Value::Object(o) => {
            for (k, v) in o {
                if !is_empty(v) {
                    remove_parts(&format!("{urn}:{k}"), v, ops);
                }
            }
        }
        _ => ops.push(PatchOperation::remove(urn)),
    }
}

fn is_ignored(key: &str) -> bool {
    ["schemas", "id", "meta"]
        .iter()
        .any(|n| attr::name_eq(key, n))
}

fn is_extension_key(key: &str) -> bool {
    key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
}

fn diff_extension(urn: &str, ov: Option<&Value>, nv: &Value, ops: &mut Vec<PatchOperation>) {
    let empty = Map::new();
    let old_ext = match ov {
        Some(Value::Object(o)) => o,
        _ => &empty,
    };
    let Value::Object(new_ext) = nv else {
        if is_empty(nv) && !old_ext.is_empty() {
            remove_extension_parts(urn, &Value::Object(old_ext.clone()), ops);
        }
        return;
    };
    for (k, v) in new_ext {
        diff_attr(&format!("{urn}:{k}"), attr::get_ci(old_ext, k), v, ops);
    }
    for (k, v) in old_ext {
        if attr::get_ci(new_ext, k).is_none() && !is_empty(v) {
            remove_parts(&format!("{urn}:{k}"), v, ops);
        }
    }
}

fn is_attr_name(s: &str) -> bool {
    attr::scan_attr_name(s) == Some(s.len())
}

fn diff_attr(p: &str, ov: Option<&Value>, nv: &Value, ops: &mut Vec<PatchOperation>) {
    if is_empty(nv) {
        if let Some(o) = ov.filter(|o| !is_empty(o)) {
            remove_parts(p, o, ops);
        }
        return;
    }
    if ov == Some(nv) {
        return;
    }
    match (ov, nv) {
        (Some(Value::Object(o)), Value::Object(n))
            if n.keys().chain(o.keys()).all(|k| is_attr_name(k)) =>
        {
            diff_members(p, o, n, ops);
        }
        (Some(Value::Array(o)), Value::Array(n)) => {
            if !diff_typed(p, o, n, ops) {
                ops.push(PatchOperation::replace(p, nv.clone()));
            }
        }
        (None, Value::Array(_)) => ops.push(PatchOperation::add(p, nv.clone())),
        _ => {
            // `replace` merges into an object and wraps a single value for an array, so
            // when the shape changes (or keys cannot be paths) clear the attribute first.
            let reshaped = ov.is_some_and(|o| {
                o.is_array() != nv.is_array() || (o.is_object() && nv.is_object())
            });
            if reshaped {
                ops.push(PatchOperation::remove(p));
            }
            ops.push(PatchOperation::replace(p, nv.clone()));
        }
    }
}

/// Patches the sub-attributes of one complex value, addressed by `base`.
fn diff_members(
    base: &str,
    o: &Map<String, Value>,
    n: &Map<String, Value>,
    ops: &mut Vec<PatchOperation>,
) {
    for (k, v) in n {
        let old = attr::get_ci(o, k);
        if is_empty(v) {
            if old.is_some_and(|x| !is_empty(x)) {
                ops.push(PatchOperation::remove(format!("{base}.{k}")));
            }
        } else if old != Some(v) {
            ops.push(PatchOperation::replace(format!("{base}.{k}"), v.clone()));
        }
    }
    for (k, v) in o {
        if attr::get_ci(n, k).is_none() && !is_empty(v) {
            ops.push(PatchOperation::remove(format!("{base}.{k}")));
        }
    }
}

/// One value of a typed multi-valued attribute: its lowercased type, its type as
/// written, and the value.
type Typed<'a> = (String, &'a str, &'a Map<String, Value>);

/// The values of a multi-valued attribute keyed by their `type`, lowercased, if every
/// value is an object with a string `type`, the types are distinct, and every key is a
/// valid attribute name.
fn by_type(items: &[Value]) -> Option<Vec<Typed<'_>>> {
    let mut out: Vec<Typed<'_>> = Vec::with_capacity(items.len());
    for item in items {
        let o = item.as_object()?;
        let t = attr::get_ci(o, "type")?.as_str()?;
        let key = t.to_lowercase();
        if out.iter().any(|(k, _, _)| *k == key) || !o.keys().all(|k| is_attr_name(k)) {
            return None;
        }
        out.push((key, t, o));
    }
    Some(out)
}

/// Patches a typed multi-valued attribute value by value; false if it is not typed.
fn diff_typed(p: &str, old: &[Value], new: &[Value], ops: &mut Vec<PatchOperation>) -> bool {
    let (Some(old_t), Some(new_t)) = (by_type(old), by_type(new)) else {
        return false;
    };
    if old_t.is_empty() {
        // Nothing of ours is there yet: `add` appends, where `replace` would also wipe
        // values we do not manage (a projected remote has only the types we map).
        ops.push(PatchOperation::add(p, Value::Array(new.to_vec())));
        return true;
    }
    for (key, t, _) in &old_t {
        if !new_t.iter().any(|(k, _, _)| k == key) {
            ops.push(PatchOperation::remove(format!(
                "{p}[type eq {}]",
                filter::quote(t)
            )));
        }
    }
    let mut added = Vec::new();
    for (key, _, n) in &new_t {
        match old_t.iter().find(|(k, _, _)| k == key) {
            Some((_, old_type, o)) if o != n => {
                diff_members(
                    &format!("{p}[type eq {}]", filter::quote(old_type)),
                    o,
                    n,
                    ops,
                );
            }
            Some(_) => {}
            None => added.push(Value::Object((*n).clone())),
        }
    }
    if !added.is_empty() {
        ops.push(PatchOperation::add(p, Value::Array(added)));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn ops(v: Value) -> Vec<PatchOperation> {
        match serde_json::from_value::<Vec<PatchOperation>>(v) {
            Ok(o) => o,
            Err(e) => panic!("bad fixture: {e}"),
        }
    }

    fn request(v: Value) -> PatchRequest {
        match serde_json::from_value::<PatchRequest>(v) {
            Ok(r) => r,
            Err(e) => panic!("bad fixture: {e}"),
        }
    }

    fn applied(mut resource: Value, o: Value) -> Value {
        if let Err(e) = apply(&mut resource, &ops(o)) {
            panic!("{e}");
        }
        resource
    }

    fn failure(resource: &Value, o: Value) -> PatchError {
        let mut r = resource.clone();
        match apply(&mut r, &ops(o)) {
            Ok(()) => panic!("expected an error, got {r}"),
            Err(e) => {
                assert_eq!(&r, resource, "a failed PATCH must not change the resource");
                e
            }
        }
    }

    fn user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "2819c223",
            "userName": "bjensen",
            "active": true,
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "addresses": [
                {"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood"},
                {"type": "home", "streetAddress": "456 Hollywood Blvd", "locality": "Hollywood"}
            ],
            "meta": {"resourceType": "User", "version": "W/\"1\""}
        })
    }

    fn group() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": "e9e30dba",
            "displayName": "Tour Guides",
            "members": [
                {"value": "2819c223-7f76-453a-919d-413861904646", "display": "Babs Jensen"},
                {"value": "902c246b-6245-4190-8e05-00816be7344a", "display": "Mandy Pepperidge"}
            ]
        })
    }

    #[test]
    fn serde_of_operations() {
        let r = request(json!({
            "schemas": [PATCH_OP_SCHEMA],
            "Operations": [
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "ADD", "path": "x", "value": null},
                {"op": "remove", "path": "y"}
            ]
        }));
        assert_eq!(r.operations[0].op, PatchOpKind::Replace);
        assert_eq!(r.operations[1].op, PatchOpKind::Add);
        assert_eq!(r.operations[1].value, Some(Value::Null));
        assert_eq!(r.operations[2].value, None);
        let out = serde_json::to_value(PatchRequest::new(vec![
            PatchOperation::remove("title"),
            PatchOperation::replace("active", json!(false)),
        ]))
        .ok();
        assert_eq!(
            out,
            Some(json!({
                "schemas": [PATCH_OP_SCHEMA],
                "Operations": [
                    {"op": "remove", "path": "title"},
                    {"op": "replace", "path": "active", "value": false}
                ]
            }))
        );
        assert!(serde_json::from_value::<PatchOperation>(json!({"op": "move"})).is_err());
        let mut u = user();
        let bad = PatchRequest {
            schemas: vec![],
            operations: vec![],
        };
        assert_eq!(
            bad.apply_to(&mut u).err().map(|e| e.scim_type()),
            Some("invalidSyntax")
        );
    }

    #[test]
    fn entra_fixtures() {
        let mut u = user();
        let r = request(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Replace", "path": "active", "value": "False"}]
        }));
        assert!(r.apply_to(&mut u).is_ok());
        assert_eq!(u["active"], json!(false));
        let u = applied(
            u,
            json!([{"op": "Replace", "path": "active", "value": "TRUE"}]),
        );
        assert_eq!(u["active"], json!(true));
        assert_eq!(
            failure(
                &u,
                json!([{"op": "Replace", "path": "active", "value": "maybe"}])
            )
            .scim_type(),
            "invalidValue"
        );

        // Add on a filter that matches: sets the sub-attribute.
        let v = applied(
            user(),
            json!([{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "x@y.com"}]),
        );
        assert_eq!(v["emails"][0]["value"], json!("x@y.com"));
        assert_eq!(v["emails"].as_array().map(Vec::len), Some(2));
        // Add on a filter that matches nothing: builds the value from the filter.
        let mut bare = user();
        if let Some(o) = bare.as_object_mut() {
            o.remove("emails");
        }
        let v = applied(
            bare,
            json!([{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "x@y.com"}]),
        );
        assert_eq!(v["emails"], json!([{"type": "work", "value": "x@y.com"}]));

        let v = applied(
            user(),
            json!([{"op": "Replace", "path": "name.givenName", "value": "Bob"}]),
        );
        assert_eq!(
            v["name"],
            json!({"givenName": "Bob", "familyName": "Jensen"})
        );

        let v = applied(
            group(),
            json!([{"op": "Remove", "path": "members", "value": [{"value": "2819c223-7f76-453a-919d-413861904646"}]}]),
        );
        assert_eq!(
            v["members"],
            json!([{"value": "902c246b-6245-4190-8e05-00816be7344a", "display": "Mandy Pepperidge"}])
        );
        let v = applied(
            v,
            json!([{"op": "Remove", "path": "members", "value": [{"value": "902c246b-6245-4190-8e05-00816be7344a"}]}]),
        );
        assert!(v.get("members").is_none());
    }

    #[test]
    fn okta_fixtures() {
        let mut u = user();
        let r = request(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"active": false}}]
        }));
        assert!(r.apply_to(&mut u).is_ok());
        assert_eq!(u["active"], json!(false));

        let g = applied(
            group(),
            json!([{"op": "add", "path": "members", "value": [{"value": "00u1", "display": "a@b.c"}]}]),
        );
        assert_eq!(g["members"].as_array().map(Vec::len), Some(3));
        assert_eq!(
            g["members"][2],
            json!({"value": "00u1", "display": "a@b.c"})
        );
        // Adding the same member again does not duplicate it.
        let g = applied(
            g,
            json!([{"op": "add", "path": "members", "value": [{"value": "00u1"}]}]),
        );
        assert_eq!(g["members"].as_array().map(Vec::len), Some(3));
        // A group without members gets the attribute.
        let mut empty = group();
        if let Some(o) = empty.as_object_mut() {
            o.remove("members");
        }
        let g = applied(
            empty,
            json!([{"op": "add", "path": "members", "value": [{"value": "00u1", "display": "a@b.c"}]}]),
        );
        assert_eq!(g["members"], json!([{"value": "00u1", "display": "a@b.c"}]));
    }

    #[test]
    fn no_path_values_with_path_keys() {
        let v = applied(
            user(),
            json!([{"op": "replace", "value": {
                "name.givenName": "X",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Y",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value": "M",
                "emails[type eq \"home\"].value": "h@x.org",
                "Active": "false"
            }}]),
        );
        assert_eq!(v["name"]["givenName"], json!("X"));
        assert_eq!(
            v[ENTERPRISE],
            json!({"department": "Y", "manager": {"value": "M"}})
        );
        assert_eq!(
            v["schemas"],
            json!(["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE])
        );
        assert_eq!(v["emails"][1]["value"], json!("h@x.org"));
        assert_eq!(v["active"], json!(false));
        // A whole extension object as a key, and as a path.
        let v = applied(
            v,
            json!([
                {"op": "add", "value": {ENTERPRISE: {"employeeNumber": "42"}}},
                {"op": "replace", "path": ENTERPRISE, "value": {"costCenter": "7"}}
            ]),
        );
        assert_eq!(v[ENTERPRISE]["employeeNumber"], json!("42"));
        assert_eq!(v[ENTERPRISE]["costCenter"], json!("7"));
        assert_eq!(v[ENTERPRISE]["department"], json!("Y"));
        // Removing the extension drops it and its schema.
        let v = applied(v, json!([{"op": "remove", "path": ENTERPRISE}]));
        assert!(v.get(ENTERPRISE).is_none());
        assert_eq!(
            v["schemas"],
            json!(["urn:ietf:params:scim:schemas:core:2.0:User"])
        );
        // Core-qualified names are top-level.
        let v = applied(
            v,
            json!([{"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:userName", "value": "bj"}]),
        );
        assert_eq!(v["userName"], json!("bj"));
    }

    #[test]
    fn case_insensitive_names() {
        let v = applied(
            user(),
            json!([
                {"op": "replace", "path": "USERNAME", "value": "b"},
                {"op": "replace", "path": "Name.GIVENNAME", "value": "B"},
                {"op": "replace", "path": "EMAILS[TYPE EQ \"WORK\"].VALUE", "value": "w@x"}
            ]),
        );
        assert_eq!(v["userName"], json!("b"));
        assert_eq!(v["name"]["givenName"], json!("B"));
        assert_eq!(v["emails"][0]["value"], json!("w@x"));
        assert!(v.get("USERNAME").is_none());
    }

    #[test]
    fn rfc_examples() {
        // §3.5.2.1: add members.
        let g = applied(
            group(),
            json!([{"op": "add", "path": "members", "value": [{
                "display": "Babs Jensen",
                "$ref": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646",
                "value": "2819c223-7f76-453a-919d-413861904646"
            }]}]),
        );
        assert_eq!(g["members"].as_array().map(Vec::len), Some(2));
        assert!(g["members"][0].get("$ref").is_some());
        // §3.5.2.1: add with no path.
        let u = applied(
            user(),
            json!([{"op": "add", "value": {
                "emails": [{"value": "babs@jensen.org", "type": "home"}, {"value": "b@o.org", "type": "other"}],
                "nickname": "Babs"
            }}]),
        );
        assert_eq!(u["emails"].as_array().map(Vec::len), Some(3));
        assert_eq!(u["nickname"], json!("Babs"));
        // §3.5.2.2: remove a member by filter, then all members.
        let g = applied(
            group(),
            json!([{"op": "remove", "path": "members[value eq \"2819c223-7f76-453a-919d-413861904646\"]"}]),
        );
        assert_eq!(g["members"].as_array().map(Vec::len), Some(1));
        let g = applied(g, json!([{"op": "remove", "path": "members"}]));
        assert!(g.get("members").is_none());
        // §3.5.2.2: remove with a compound filter.
        let u = applied(
            user(),
            json!([{"op": "remove", "path": "emails[type eq \"work\" and value ew \"example.com\"]"}]),
        );
        assert_eq!(
            u["emails"],
            json!([{"value": "babs@jensen.org", "type": "home"}])
        );
        // §3.5.2.2: replace all members by remove + add, and by replace.
        let new_members = json!([{"display": "James Smith", "value": "08e1d05d"}]);
        let a = applied(
            group(),
            json!([{"op": "remove", "path": "members"}, {"op": "add", "path": "members", "value": new_members}]),
        );
        let b = applied(
            group(),
            json!([{"op": "replace", "path": "members", "value": new_members}]),
        );
        assert_eq!(a["members"], new_members);
        assert_eq!(a, b);
        // §3.5.2.3: replace a whole value selected by filter.
        let addr = json!({
            "type": "work", "streetAddress": "911 Universal City Plaza",
            "locality": "Hollywood", "region": "CA", "postalCode": "91608",
            "country": "US", "formatted": "911 Universal City Plaza\nHollywood, CA 91608 US",
            "primary": true
        });
        let u = applied(
            user(),
            json!([{"op": "replace", "path": "addresses[type eq \"work\"]", "value": addr}]),
        );
        assert_eq!(u["addresses"][0], addr);
        assert_eq!(u["addresses"][1]["type"], json!("home"));
        // §3.5.2.3: replace a sub-attribute of a value selected by filter.
        let u = applied(
            user(),
            json!([{"op": "replace", "path": "addresses[type eq \"work\"].streetAddress", "value": "1010 Broadway Ave"}]),
        );
        assert_eq!(
            u["addresses"][0]["streetAddress"],
            json!("1010 Broadway Ave")
        );
        assert_eq!(u["addresses"][0]["locality"], json!("Hollywood"));
        // §3.5.2.3: replace with no path.
        let u = applied(
            user(),
            json!([{"op": "replace", "value": {
                "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}],
                "nickName": "Babs"
            }}]),
        );
        assert_eq!(
            u["emails"],
            json!([{"value": "bjensen@example.com", "type": "work", "primary": true}])
        );
        assert_eq!(u["nickName"], json!("Babs"));
        assert_eq!(u["name"]["givenName"], json!("Barbara"));
    }

    #[test]
    fn errors() {
        let u = user();
        let cases = [
            (json!([{"op": "remove"}]), "noTarget"),
            (json!([{"op": "remove", "path": ""}]), "noTarget"),
            (
                json!([{"op": "replace", "path": "emails[type eq \"other\"].value", "value": "x"}]),
                "noTarget",
            ),
            (
                json!([{"op": "remove", "path": "emails[type eq \"other\"]"}]),
                "noTarget",
            ),
            (
                json!([{"op": "add", "path": "emails[type eq \"x\" or type eq \"y\"].value", "value": "x"}]),
                "noTarget",
            ),
            (
                json!([{"op": "replace", "path": "id", "value": "other"}]),
                "mutability",
            ),
            (json!([{"op": "remove", "path": "meta"}]), "mutability"),
            (
                json!([{"op": "replace", "path": "meta.version", "value": "x"}]),
                "mutability",
            ),
            (
                json!([{"op": "add", "path": "schemas", "value": ["urn:x"]}]),
                "mutability",
            ),
            (
                json!([{"op": "replace", "value": {"id": "other"}}]),
                "mutability",
            ),
            (
                json!([{"op": "replace", "path": "emails[type eq", "value": "x"}]),
                "invalidPath",
            ),
            (
                json!([{"op": "replace", "path": "1abc", "value": "x"}]),
                "invalidPath",
            ),
            (
                json!([{"op": "replace", "path": "userName.first", "value": "x"}]),
                "invalidPath",
            ),
            (
                json!([{"op": "replace", "path": "name[givenName eq \"B\"]", "value": {}}]),
                "invalidPath",
            ),
            (
                json!([{"op": "replace", "value": {"bad key": 1}}]),
                "invalidPath",
            ),
            (json!([{"op": "replace", "path": "title"}]), "invalidValue"),
            (json!([{"op": "replace", "value": "x"}]), "invalidValue"),
            (
                json!([{"op": "replace", "path": "title", "value": "ok"}, {"op": "remove"}]),
                "noTarget",
            ),
        ];
        for (o, scim_type) in cases {
            let e = failure(&u, o.clone());
            assert_eq!(e.scim_type(), scim_type, "{o}: {e}");
            assert_eq!(e.status(), 400);
        }
        // Echoing immutable values unchanged is accepted.
        let v = applied(
            u.clone(),
            json!([{"op": "replace", "value": {"id": "2819c223", "schemas": u["schemas"], "title": "T"}}]),
        );
        assert_eq!(v["title"], json!("T"));
        let mut not_object = json!([1]);
        assert_eq!(
            apply(&mut not_object, &[]).err().map(|e| e.scim_type()),
            Some("invalidSyntax")
        );
        let e = failure(
            &u,
            json!([{"op": "replace", "path": "emails[type eq \"x\"].value", "value": "x"}]),
        );
        assert!(e.message.contains("operation 0"), "{e}");
    }

    #[test]
    fn removals_and_nulls() {
        let u = applied(
            user(),
            json!([
                {"op": "remove", "path": "name.givenName"},
                {"op": "remove", "path": "emails[type eq \"work\"].primary"},
                {"op": "remove", "path": "nickName"},
                {"op": "replace", "path": "userName", "value": null},
                {"op": "add", "path": "title", "value": null}
            ]),
        );
        assert_eq!(u["name"], json!({"familyName": "Jensen"}));
        assert!(u["emails"][0].get("primary").is_none());
        assert!(u.get("userName").is_none());
        let u = applied(u, json!([{"op": "remove", "path": "name.familyName"}]));
        assert!(
            u.get("name").is_none(),
            "an emptied complex attribute goes away"
        );
        let u = applied(
            u,
            json!([{"op": "remove", "path": "emails[type eq \"work\"]"}, {"op": "remove", "path": "emails[type eq \"home\"]"}]),
        );
        assert!(u.get("emails").is_none());
        // Removing an extension's last attribute removes the extension and its URN.
        let path = format!("{ENTERPRISE}:department");
        let u = applied(u, json!([{"op": "add", "path": path, "value": "Sales"}]));
        assert_eq!(u[ENTERPRISE]["department"], json!("Sales"));
        let u = applied(u, json!([{"op": "remove", "path": path}]));
        assert!(u.get(ENTERPRISE).is_none());
        assert_eq!(
            u["schemas"],
            json!(["urn:ietf:params:scim:schemas:core:2.0:User"])
        );
    }

    #[test]
    fn primary_stays_unique() {
        let u = applied(
            user(),
            json!([{"op": "add", "path": "emails", "value": {"value": "n@x", "type": "other", "primary": true}}]),
        );
        assert_eq!(u["emails"][0]["primary"], json!(false));
        assert_eq!(u["emails"][2]["primary"], json!(true));
        let u = applied(
            u,
            json!([{"op": "replace", "path": "emails[type eq \"work\"].primary", "value": true}]),
        );
        assert_eq!(u["emails"][0]["primary"], json!(true));
        assert_eq!(u["emails"][2]["primary"], json!(false));
        // Re-adding an existing value merges into it.
        let u = applied(
            u,
            json!([{"op": "add", "path": "emails", "value": [{"value": "babs@jensen.org", "type": "HOME", "display": "Babs"}]}]),
        );
        assert_eq!(u["emails"].as_array().map(Vec::len), Some(3));
        assert_eq!(u["emails"][1]["display"], json!("Babs"));
    }

    #[test]
    fn diff_shapes() {
        assert!(diff(&user(), &user()).is_empty());
        let mut new = user();
        new["userName"] = json!("bj");
        new["name"]["givenName"] = json!("Babs");
        new["name"]["familyName"] = Value::Null;
        new["emails"] = json!([
            {"value": "w@example.com", "type": "work", "primary": true},
            {"value": "o@example.com", "type": "other"}
        ]);
        new["title"] = json!("Guide");
        new["meta"] = json!({"version": "W/\"2\""});
        new["id"] = json!("changed");
        if let Some(o) = new.as_object_mut() {
            o.remove("addresses");
            o.insert(ENTERPRISE.into(), json!({"department": "Sales"}));
        }
        let got = diff(&user(), &new);
        let want = [
            PatchOperation::replace("userName", json!("bj")),
            PatchOperation::replace("name.givenName", json!("Babs")),
            PatchOperation::remove("name.familyName"),
            PatchOperation::remove("emails[type eq \"home\"]"),
            PatchOperation::replace("emails[type eq \"work\"].value", json!("w@example.com")),
            PatchOperation::add(
                "emails",
                json!([{"value": "o@example.com", "type": "other"}]),
            ),
            PatchOperation::replace("title", json!("Guide")),
            PatchOperation::replace(format!("{ENTERPRISE}:department"), json!("Sales")),
            // Only our typed values go; others the server has stay.
            PatchOperation::remove("addresses[type eq \"work\"]"),
            PatchOperation::remove("addresses[type eq \"home\"]"),
        ];
        let mut got_sorted: Vec<String> = got.iter().map(|o| format!("{o:?}")).collect();
        let mut want_sorted: Vec<String> = want.iter().map(|o| format!("{o:?}")).collect();
        got_sorted.sort();
        want_sorted.sort();
        assert_eq!(got_sorted, want_sorted);
        let result = applied(user(), serde_json::to_value(&got).unwrap_or_default());
        assert_eq!(normalize_for_compare(&result), normalize_for_compare(&new));
        assert_eq!(
            result["schemas"],
            json!(["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE])
        );

        // Untyped multi-valued attributes are replaced whole.
        let g2 = {
            let mut g = group();
            g["members"] = json!([{"value": "a"}]);
            g
        };
        assert_eq!(
            diff(&group(), &g2),
            vec![PatchOperation::replace("members", json!([{"value": "a"}]))]
        );
        // Removing the extension removes its attributes one by one, never the whole URN.
        let mut with_ext = user();
        with_ext[ENTERPRISE] = json!({"department": "Sales"});
        assert_eq!(
            diff(&with_ext, &user()),
            vec![PatchOperation::remove(format!("{ENTERPRISE}:department"))]
        );
        // Shape changes clear the attribute first.
        for (o, n) in [
            (json!({"x": [1, 2]}), json!({"x": {"a": 1}})),
            (json!({"x": {"a b": 1, "c": 2}}), json!({"x": {"a b": 3}})),
            (json!({"x": "s"}), json!({"x": [1]})),
        ] {
            let ops = diff(&o, &n);
            let got = applied(o.clone(), serde_json::to_value(&ops).unwrap_or_default());
            assert_eq!(got, n, "{o} -> {n} via {ops:?}");
        }
        // A type containing a quote is escaped in the filter.
        let old = json!({"emails": [{"type": "a\"b", "value": "1"}]});
        let new = json!({"emails": [{"type": "a\"b", "value": "2"}]});
        assert_eq!(
            diff(&old, &new),
            vec![PatchOperation::replace(
                "emails[type eq \"a\\\"b\"].value",
                json!("2")
            )]
        );
        assert_eq!(
            normalize_for_compare(&applied(
                old,
                serde_json::to_value(diff(
                    &json!({"emails": [{"type": "a\"b", "value": "1"}]}),
                    &new
                ))
                .unwrap_or_default()
            )),
            normalize_for_compare(&new)
        );
    }

    /// Drops what `diff` ignores and what SCIM treats as unassigned, and sorts arrays,
    /// which SCIM treats as unordered.
    fn normalize_for_compare(v: &Value) -> Value {
        fn norm(v: &Value) -> Option<Value> {
            match v {
                Value::Object(o) => {
                    let m: Map<String, Value> = o
                        .iter()
                        .filter_map(|(k, v)| norm(v).map(|v| (k.clone(), v)))
                        .collect();
                    (!m.is_empty()).then_some(Value::Object(m))
                }
                Value::Array(a) => {
                    let mut items: Vec<Value> = a.iter().filter_map(norm).collect();
                    items.sort_by_key(|x| x.to_string());
                    (!items.is_empty()).then_some(Value::Array(items))
                }
                Value::String(s) if s.is_empty() => None,
                Value::Null => None,
                other => Some(other.clone()),
            }
        }
        let mut out = norm(v).unwrap_or(json!({}));
        if let Some(o) = out.as_object_mut() {
            for k in ["schemas", "id", "meta"] {
                o.remove(k);
            }
        }
        out
    }

    /// Property tests; proptest is a native-only dev-dependency.
    #[cfg(not(target_arch = "wasm32"))]
    mod props {
        use super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = Value> {
            prop_oneof![Just(json!("")), "[a-c\"\\\\ ]{1,3}".prop_map(Value::String),]
        }

        fn opt(s: impl Strategy<Value = Value>) -> impl Strategy<Value = Option<Value>> {
            prop::option::of(s)
        }

        fn typed_list(types: Vec<&'static str>) -> impl Strategy<Value = Value> {
            (
                prop::sample::subsequence(types.clone(), 0..=types.len()),
                prop::collection::vec(text(), types.len()),
                prop::collection::vec(opt(text()), types.len()),
                prop::option::of(0..types.len()),
            )
                .prop_map(|(chosen, values, displays, primary)| {
                    let items: Vec<Value> = chosen
                        .iter()
                        .enumerate()
                        .map(|(i, t)| {
                            let mut m = Map::new();
                            m.insert("type".into(), json!(t));
                            if let Some(v) = values.get(i) {
                                m.insert("value".into(), v.clone());
                            }
                            if let Some(Some(d)) = displays.get(i) {
                                m.insert("display".into(), d.clone());
                            }
                            if primary == Some(i) {
                                m.insert("primary".into(), json!(true));
                            }
                            Value::Object(m)
                        })
                        .collect();
                    Value::Array(items)
                })
        }

        fn resource() -> impl Strategy<Value = Value> {
            (
                (
                    opt(text()),
                    opt(any::<bool>().prop_map(Value::Bool)),
                    opt(text()),
                    opt(text()),
                ),
                opt(
                    (opt(text()), opt(text()), opt(text())).prop_map(|(g, f, m)| {
                        let mut o = Map::new();
                        for (k, v) in [("givenName", g), ("familyName", f), ("middleName", m)] {
                            if let Some(v) = v {
                                o.insert(k.into(), v);
                            }
                        }
                        Value::Object(o)
                    }),
                ),
                (
                    opt(typed_list(vec!["work", "home", "other", "w\"x"])),
                    opt(typed_list(vec!["mobile", "work"])),
                    opt(prop::collection::vec("[a-c]{1,2}", 0..3).prop_map(|v| {
                        Value::Array(v.into_iter().map(|s| json!({"value": s})).collect())
                    })),
                ),
                opt(
                    (opt(text()), opt(text()), opt(text())).prop_map(|(d, e, m)| {
                        let mut o = Map::new();
                        if let Some(d) = d {
                            o.insert("department".into(), d);
                        }
                        if let Some(e) = e {
                            o.insert("employeeNumber".into(), e);
                        }
                        if let Some(m) = m {
                            o.insert("manager".into(), json!({"value": m}));
                        }
                        Value::Object(o)
                    }),
                ),
            )
                .prop_map(
                    |((user_name, active, title, nick), name, (emails, phones, roles), ext)| {
                        let mut o = Map::new();
                        o.insert(
                            "schemas".into(),
                            json!(["urn:ietf:params:scim:schemas:core:2.0:User"]),
                        );
                        o.insert("id".into(), json!("1"));
                        let fields = [
                            ("userName", user_name),
                            ("active", active),
                            ("title", title),
                            ("nickName", nick),
                            ("name", name),
                            ("emails", emails),
                            ("phoneNumbers", phones),
                            ("roles", roles),
                            (ENTERPRISE, ext),
                        ];
                        for (k, v) in fields {
                            if let Some(v) = v {
                                o.insert(k.into(), v);
                            }
                        }
                        Value::Object(o)
                    },
                )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn applying_the_diff_reaches_the_target(old in resource(), new in resource()) {
                let ops = diff(&old, &new);
                let mut result = old.clone();
                let applied = apply(&mut result, &ops);
                prop_assert!(applied.is_ok(), "{:?} for {:?}", applied, ops);
                prop_assert_eq!(
                    normalize_for_compare(&result),
                    normalize_for_compare(&new),
                    "ops: {}", serde_json::to_string(&ops).unwrap_or_default()
                );
                prop_assert!(diff(&new, &new).is_empty());
            }

            #[test]
            fn apply_never_panics(
                op in prop::sample::select(vec!["add", "remove", "replace"]),
                p in prop::option::of("[a-zA-Z.:\\[\\]\" ]{0,20}"),
                value in prop::option::of(prop_oneof![
                    Just(json!(null)), Just(json!("x")), Just(json!([{"value": "x"}])),
                    Just(json!({"a": 1, "name.givenName": "y"}))
                ]),
            ) {
                let mut u = user();
                let o = PatchOperation { op: match op { "add" => PatchOpKind::Add, "remove" => PatchOpKind::Remove, _ => PatchOpKind::Replace }, path: p, value };
                let _ = apply(&mut u, &[o]);
            }
        }
    }
}
