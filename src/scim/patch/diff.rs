//! Computing the PATCH that turns one version of a resource into another: the client
//! role's side of the PATCH engine, which sends the smallest change it can.

use serde_json::{Map, Value};

use crate::scim::attr;
use crate::scim::filter;

use super::{PatchOperation, is_empty};

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
