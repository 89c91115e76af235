//! Carrying out a PATCH request on a resource's JSON (RFC 7644 §3.5.2): the server role's
//! side of the PATCH engine. The rules it follows are listed in [`super`]'s documentation.

use serde_json::{Map, Value};

use crate::scim::attr;
use crate::scim::filter::{self, CompareOp, Filter};
use crate::scim::path::AttrPath;

use super::{PatchError, PatchErrorKind, PatchOpKind, PatchOperation, is_empty};

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
