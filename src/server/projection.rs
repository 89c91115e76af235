//! `attributes` and `excludedAttributes` (RFC 7644 §3.4.2.5, §3.9): which attributes a
//! response returns. `id` and `schemas` are always returned.
//!
//! Names may carry a sub-attribute (`name.givenName`, `emails.value`) and a schema URN
//! (`urn:…:enterprise:2.0:User:department`, or the bare extension URN for the whole
//! extension). Unknown names are ignored, as attributes the resource does not have.

use serde_json::{Map, Value};

use crate::scim::attr;
use crate::scim::path::AttrPath;
use crate::server::error::ScimError;

/// How many names one parameter may list; enough for any real client, and it bounds the
/// work of filtering every resource of a page.
const MAX_NAMES: usize = 256;

/// One requested name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    /// The extension URN; `None` for the core schema.
    urn: Option<String>,
    /// The attribute; `None` for the whole schema.
    attr: Option<String>,
    /// The sub-attribute.
    sub: Option<String>,
}

/// The attributes to return.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Projection {
    include: Option<Vec<Item>>,
    exclude: Vec<Item>,
}

/// Splits a comma-separated parameter into names.
pub(crate) fn split_names(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_items(names: &[String]) -> Result<Vec<Item>, ScimError> {
    if names.len() > MAX_NAMES {
        return Err(ScimError::value(format!(
            "at most {MAX_NAMES} attribute names may be listed"
        )));
    }
    names
        .iter()
        .map(|n| {
            let p = AttrPath::parse(n.trim())
                .map_err(|e| ScimError::value(format!("attribute {n:?}: {e}")))?;
            if p.filter.is_some() {
                return Err(ScimError::value(format!(
                    "attribute {n:?}: a value filter cannot select attributes"
                )));
            }
            let top = p.is_top_level();
            Ok(Item {
                urn: if top { None } else { p.urn },
                attr: (!p.attr.is_empty()).then_some(p.attr),
                sub: p.sub_attr,
            })
        })
        .collect()
}

impl Projection {
    /// From the names of `attributes` (empty: all) and of `excludedAttributes`.
    pub fn new(attributes: &[String], excluded: &[String]) -> Result<Projection, ScimError> {
        let include = if attributes.is_empty() {
            None
        } else {
            Some(parse_items(attributes)?)
        };
        Ok(Projection {
            include,
            exclude: parse_items(excluded)?,
        })
    }

    /// Whether the top-level core attribute `name` is returned as a whole or in part; lets
    /// the server skip computing what would be dropped (User `groups`).
    pub fn wants(&self, name: &str) -> bool {
        match &self.include {
            Some(items) => items.iter().any(|i| {
                i.urn.is_none() && i.attr.as_deref().is_none_or(|a| attr::name_eq(a, name))
            }),
            None => !self.exclude.iter().any(|i| {
                i.urn.is_none()
                    && i.sub.is_none()
                    && i.attr.as_deref().is_some_and(|a| attr::name_eq(a, name))
            }),
        }
    }

    /// Drops from `resource` what is not to be returned.
    pub fn apply(&self, resource: &mut Value) {
        let Some(obj) = resource.as_object_mut() else {
            return;
        };
        if let Some(items) = &self.include {
            let taken = std::mem::take(obj);
            for (key, value) in taken {
                if let Some(v) = include(&key, value, items) {
                    obj.insert(key, v);
                }
            }
        }
        for item in &self.exclude {
            exclude(obj, item);
        }
    }
}

fn is_always(key: &str) -> bool {
    attr::name_eq(key, "id") || attr::name_eq(key, "schemas")
}

/// A key holding an extension's attributes is its schema URN.
fn is_extension_key(key: &str) -> bool {
    key.contains(':')
}

/// The top-level `key` with only what `items` ask for, or `None` to drop it.
fn include(key: &str, value: Value, items: &[Item]) -> Option<Value> {
    if is_always(key) {
        return Some(value);
    }
    if is_extension_key(key) {
        let mine: Vec<&Item> = items
            .iter()
            .filter(|i| i.urn.as_deref().is_some_and(|u| attr::name_eq(u, key)))
            .collect();
        if mine.is_empty() {
            return None;
        }
        if mine.iter().any(|i| i.attr.is_none()) {
            return Some(value);
        }
        let Value::Object(ext) = value else {
            return None;
        };
        let kept: Map<String, Value> = ext
            .into_iter()
            .filter_map(|(k, v)| select(&k, v, mine.iter().copied()).map(|v| (k, v)))
            .collect();
        return (!kept.is_empty()).then_some(Value::Object(kept));
    }
    let core: Vec<&Item> = items.iter().filter(|i| i.urn.is_none()).collect();
    if core.iter().any(|i| i.attr.is_none()) {
        return Some(value);
    }
    select(key, value, core.into_iter())
}

/// The attribute `key` with only the parts `items` name, or `None` when they name none.
fn select<'a>(key: &str, value: Value, items: impl Iterator<Item = &'a Item>) -> Option<Value> {
    let mut subs = Vec::new();
    for i in items.filter(|i| i.attr.as_deref().is_some_and(|a| attr::name_eq(a, key))) {
        match &i.sub {
            None => return Some(value),
            Some(s) => subs.push(s.as_str()),
        }
    }
    if subs.is_empty() {
        return None;
    }
    let keep = |o: Map<String, Value>| -> Option<Value> {
        let kept: Map<String, Value> = o
            .into_iter()
            .filter(|(k, _)| subs.iter().any(|s| attr::name_eq(s, k)))
            .collect();
        (!kept.is_empty()).then_some(Value::Object(kept))
    };
    match value {
        Value::Object(o) => keep(o),
        Value::Array(items) => {
            let kept: Vec<Value> = items
                .into_iter()
                .filter_map(|v| match v {
                    Value::Object(o) => keep(o),
                    _ => None,
                })
                .collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        _ => None,
    }
}

fn exclude(obj: &mut Map<String, Value>, item: &Item) {
    let container = match &item.urn {
        None => obj,
        Some(urn) => {
            let Some(key) = attr::find_key(obj, urn).map(str::to_string) else {
                return;
            };
            if item.attr.is_none() {
                obj.remove(&key);
                return;
            }
            match obj.get_mut(&key) {
                Some(Value::Object(ext)) => ext,
                _ => return,
            }
        }
    };
    let Some(attr) = &item.attr else {
        return;
    };
    let Some(key) = attr::find_key(container, attr).map(str::to_string) else {
        return;
    };
    if item.urn.is_none() && is_always(&key) {
        return;
    }
    let Some(sub) = &item.sub else {
        container.remove(&key);
        return;
    };
    let drop_sub = |o: &mut Map<String, Value>| {
        if let Some(k) = attr::find_key(o, sub).map(str::to_string) {
            o.remove(&k);
        }
    };
    match container.get_mut(&key) {
        Some(Value::Object(o)) => drop_sub(o),
        Some(Value::Array(values)) => {
            for v in values.iter_mut() {
                if let Value::Object(o) = v {
                    drop_sub(o);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const E: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", E],
            "id": "1",
            "userName": "bjensen",
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "emails": [{"value": "a@x", "type": "work"}, {"value": "b@x", "type": "home"}],
            "meta": {"resourceType": "User"},
            E: {"department": "Sales", "employeeNumber": "7"}
        })
    }

    fn project(attrs: &str, excluded: &str) -> Value {
        let p = Projection::new(&split_names(attrs), &split_names(excluded));
        let mut u = user();
        match p {
            Ok(p) => p.apply(&mut u),
            Err(e) => panic!("{e:?}"),
        }
        u
    }

    #[test]
    fn attributes() {
        let u = project("userName, NAME.givenName,emails.type", "");
        assert_eq!(
            u,
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", E],
                "id": "1",
                "userName": "bjensen",
                "name": {"givenName": "Barbara"},
                "emails": [{"type": "work"}, {"type": "home"}]
            })
        );
        let u = project(&format!("{E}:department"), "");
        assert_eq!(u[E], json!({"department": "Sales"}));
        assert!(u.get("userName").is_none());
        let u = project(E, "");
        assert_eq!(u[E], user()[E]);
        let u = project(
            "urn:ietf:params:scim:schemas:core:2.0:User:userName,nothing",
            "",
        );
        assert_eq!(u["userName"], "bjensen");
        assert_eq!(u.as_object().map(Map::len), Some(3));
    }

    #[test]
    fn excluded_attributes() {
        let u = project("", "emails,name.familyName,id,schemas");
        assert!(u.get("emails").is_none());
        assert_eq!(u["name"], json!({"givenName": "Barbara"}));
        assert_eq!(u["id"], "1");
        assert!(u.get("schemas").is_some());
        let u = project("", &format!("{E}:department,emails.type"));
        assert_eq!(u[E], json!({"employeeNumber": "7"}));
        assert_eq!(u["emails"], json!([{"value": "a@x"}, {"value": "b@x"}]));
        let u = project("", E);
        assert!(u.get(E).is_none());
    }

    #[test]
    fn wants_and_errors() {
        let p = |a: &str, x: &str| Projection::new(&split_names(a), &split_names(x));
        assert!(p("", "").is_ok_and(|p| p.wants("groups")));
        assert!(p("", "Groups").is_ok_and(|p| !p.wants("groups")));
        assert!(p("", "groups.display").is_ok_and(|p| p.wants("groups")));
        assert!(p("userName", "").is_ok_and(|p| !p.wants("groups")));
        assert!(p("groups.value", "").is_ok_and(|p| p.wants("groups")));
        assert!(p("emails[type eq \"work\"]", "").is_err());
        assert!(p("1bad", "").is_err());
        let many = vec!["a"; MAX_NAMES + 1].join(",");
        assert!(p(&many, "").is_err());
    }
}
