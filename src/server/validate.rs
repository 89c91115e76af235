//! Checking and normalising a resource a client sent (POST, PUT, or the result of a PATCH)
//! against the schema table: types, `required`, `readOnly` (dropped, as RFC 7644 §3.5.1
//! allows), `id` and `meta` (dropped), canonical attribute spelling, Entra's `"True"`
//! strings for booleans, and `null` or empty values (unassigned, so dropped).
//!
//! Attributes the schemas do not define are kept as they are, so a host may store
//! attributes of its own. The work is bounded by the schema's two levels; anything deeper
//! is copied, not walked.

use serde_json::{Map, Value};

use crate::ports::ResourceKind;
use crate::scim::attr;
use crate::scim::lenient::lenient_bool;
use crate::server::error::ScimError;
use crate::server::schemas::{self, AttrDef, AttrType, Mutability, SchemaDef};

/// Whether `schemas` must already name the resource type's core schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SchemasRule {
    /// A body from the client (POST, PUT): `schemas` must be there and name the core
    /// schema (RFC 7643 §3).
    Require,
    /// A stored resource after a PATCH: the core schema is added if a host stored it
    /// without one.
    Supply,
}

/// The checked resource, without `id` and `meta`, ready for the directory.
pub(crate) fn validate(
    kind: ResourceKind,
    body: &Value,
    rule: SchemasRule,
) -> Result<Value, ScimError> {
    let Value::Object(input) = body else {
        return Err(ScimError::syntax("the request body must be a JSON object"));
    };
    let core = schemas::core(kind);
    let mut out = Map::new();
    let mut schema_list = read_schemas(input, rule)?;
    if !schema_list.iter().any(|s| attr::name_eq(s, core.id)) {
        match rule {
            SchemasRule::Require => {
                return Err(ScimError::value(format!(
                    "schemas must include {} for a {}",
                    core.id,
                    kind.name()
                )));
            }
            SchemasRule::Supply => schema_list.insert(0, core.id.to_string()),
        }
    }
    for (key, value) in input {
        if attr::name_eq(key, "schemas") || attr::name_eq(key, "id") || attr::name_eq(key, "meta") {
            continue;
        }
        if attr::name_eq(key, "externalId") {
            match value {
                Value::Null => {}
                Value::String(_) => {
                    out.insert("externalId".into(), value.clone());
                }
                _ => return Err(ScimError::value("externalId must be a string")),
            }
            continue;
        }
        if let Some(def) = core.attr(key) {
            if def.mutability == Mutability::ReadOnly {
                continue;
            }
            if let Some(v) = check(def, def.name, value)? {
                out.insert(def.name.to_string(), v);
            }
            continue;
        }
        if let Some(ext) = schemas::extensions(kind)
            .iter()
            .find(|s| attr::name_eq(s.id, key))
        {
            if let Some(v) = check_extension(ext, value)? {
                if !schema_list.iter().any(|s| attr::name_eq(s, ext.id)) {
                    schema_list.push(ext.id.to_string());
                }
                out.insert(ext.id.to_string(), v);
            }
            continue;
        }
        out.insert(key.clone(), value.clone());
    }
    for def in core.attributes.iter().filter(|d| d.required) {
        let present = match out.get(def.name) {
            Some(Value::String(s)) => !s.trim().is_empty(),
            Some(_) => true,
            None => false,
        };
        if !present {
            return Err(ScimError::value(format!(
                "{} is required for a {}",
                def.name,
                kind.name()
            )));
        }
    }
    if kind == ResourceKind::Group {
        check_members(&out)?;
    }
    out.insert(
        "schemas".into(),
        Value::Array(schema_list.into_iter().map(Value::String).collect()),
    );
    Ok(Value::Object(out))
}

fn read_schemas(input: &Map<String, Value>, rule: SchemasRule) -> Result<Vec<String>, ScimError> {
    match attr::get_ci(input, "schemas") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ScimError::syntax("schemas must be an array of strings"))
            })
            .collect(),
        None if rule == SchemasRule::Supply => Ok(Vec::new()),
        None => Err(ScimError::syntax(
            "the resource must have a schemas attribute (RFC 7643 §3)",
        )),
        Some(_) => Err(ScimError::syntax("schemas must be an array of strings")),
    }
}

fn check_extension(ext: &SchemaDef, value: &Value) -> Result<Option<Value>, ScimError> {
    let obj = match value {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        _ => {
            return Err(ScimError::value(format!(
                "{} must be an object of attributes",
                ext.id
            )));
        }
    };
    let mut out = Map::new();
    for (key, v) in obj {
        match ext.attr(key) {
            Some(def) if def.mutability == Mutability::ReadOnly => {}
            Some(def) => {
                if let Some(v) = check(def, def.name, v)? {
                    out.insert(def.name.to_string(), v);
                }
            }
            None => {
                out.insert(key.clone(), v.clone());
            }
        }
    }
    Ok((!out.is_empty()).then_some(Value::Object(out)))
}

/// Checks one attribute's value; `None` when it is unassigned (null or empty).
fn check(def: &AttrDef, what: &str, value: &Value) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    if !def.multi {
        return check_single(def, what, value);
    }
    let Value::Array(items) = value else {
        return Err(ScimError::value(format!("{what} must be an array")));
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if let Some(v) = check_single(def, what, item)? {
            out.push(v);
        }
    }
    Ok((!out.is_empty()).then_some(Value::Array(out)))
}

fn check_single(def: &AttrDef, what: &str, value: &Value) -> Result<Option<Value>, ScimError> {
    let wrong = |expected: &str| ScimError::value(format!("{what} must be {expected}"));
    match def.kind {
        AttrType::String | AttrType::Reference | AttrType::Binary => match value {
            Value::Null => Ok(None),
            Value::String(_) => Ok(Some(value.clone())),
            _ => Err(wrong("a string")),
        },
        AttrType::Boolean => match value {
            Value::Null => Ok(None),
            v => lenient_bool(v)
                .map(|b| Some(Value::Bool(b)))
                .ok_or_else(|| wrong("a boolean")),
        },
        AttrType::Complex => {
            let obj = match value {
                Value::Null => return Ok(None),
                Value::Object(o) => o,
                _ => return Err(wrong("an object")),
            };
            let mut out = Map::new();
            for (key, v) in obj {
                match def.sub_attr(key) {
                    Some(sub) if sub.mutability == Mutability::ReadOnly => {}
                    Some(sub) => {
                        let name = format!("{what}.{}", sub.name);
                        if let Some(v) = check_single(sub, &name, v)? {
                            out.insert(sub.name.to_string(), v);
                        }
                    }
                    None => {
                        out.insert(key.clone(), v.clone());
                    }
                }
            }
            Ok((!out.is_empty()).then_some(Value::Object(out)))
        }
    }
}

/// Every member must name its member by `value` (an id).
fn check_members(group: &Map<String, Value>) -> Result<(), ScimError> {
    let Some(Value::Array(members)) = group.get("members") else {
        return Ok(());
    };
    for m in members {
        let ok = m
            .get("value")
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty());
        if !ok {
            return Err(ScimError::value(
                "every member must have a value: the id of the member",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const U: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
    const E: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn ok(kind: ResourceKind, v: Value) -> Value {
        match validate(kind, &v, SchemasRule::Require) {
            Ok(v) => v,
            Err(e) => panic!("{v}: {e:?}"),
        }
    }

    fn fails(kind: ResourceKind, v: Value) -> (u16, Option<&'static str>, String) {
        match validate(kind, &v, SchemasRule::Require) {
            Ok(r) => panic!("accepted {v} as {r}"),
            Err(e) => (e.status, e.scim_type, e.detail),
        }
    }

    #[test]
    fn normalises() {
        let v = ok(
            ResourceKind::User,
            json!({
                "schemas": [U],
                "id": "client-chosen",
                "meta": {"version": "x"},
                "UserName": "bjensen",
                "Active": "False",
                "nickName": null,
                "emails": [{"Value": "b@x.org", "TYPE": "work", "primary": "true"}, null],
                "phoneNumbers": [],
                "groups": [{"value": "g1"}],
                "name": {"givenName": "Barbara", "familyName": null},
                "password": "pw",
                "customThing": {"deep": [1, 2]},
                E: {"employeeNumber": "7", "manager": {"value": "m", "displayName": "ro"}}
            }),
        );
        assert_eq!(
            v,
            json!({
                "schemas": [U, E],
                "userName": "bjensen",
                "active": false,
                "emails": [{"value": "b@x.org", "type": "work", "primary": true}],
                "name": {"givenName": "Barbara"},
                "password": "pw",
                "customThing": {"deep": [1, 2]},
                E: {"employeeNumber": "7", "manager": {"value": "m"}}
            })
        );
    }

    #[test]
    fn rejects() {
        let cases = [
            (json!([1]), "invalidSyntax", "JSON object"),
            (
                json!({"userName": "a"}),
                "invalidSyntax",
                "schemas attribute",
            ),
            (
                json!({"schemas": U, "userName": "a"}),
                "invalidSyntax",
                "array of strings",
            ),
            (
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "userName": "a"}),
                "invalidValue",
                "must include",
            ),
            (
                json!({"schemas": [U]}),
                "invalidValue",
                "userName is required",
            ),
            (
                json!({"schemas": [U], "userName": "  "}),
                "invalidValue",
                "required",
            ),
            (
                json!({"schemas": [U], "userName": 7}),
                "invalidValue",
                "a string",
            ),
            (
                json!({"schemas": [U], "userName": "a", "active": "yes"}),
                "invalidValue",
                "active must be a boolean",
            ),
            (
                json!({"schemas": [U], "userName": "a", "emails": {"value": "x"}}),
                "invalidValue",
                "emails must be an array",
            ),
            (
                json!({"schemas": [U], "userName": "a", "emails": [{"value": 1}]}),
                "invalidValue",
                "emails.value must be a string",
            ),
            (
                json!({"schemas": [U], "userName": "a", "name": "Bob"}),
                "invalidValue",
                "name must be an object",
            ),
            (
                json!({"schemas": [U], "userName": "a", "externalId": 5}),
                "invalidValue",
                "externalId",
            ),
            (
                json!({"schemas": [U], "userName": "a", E: "x"}),
                "invalidValue",
                "object of attributes",
            ),
        ];
        for (body, scim_type, detail) in cases {
            let (status, t, d) = fails(ResourceKind::User, body.clone());
            assert_eq!((status, t), (400, Some(scim_type)), "{body}");
            assert!(d.contains(detail), "{body}: {d}");
        }
        let g = "urn:ietf:params:scim:schemas:core:2.0:Group";
        let (_, _, d) = fails(ResourceKind::Group, json!({"schemas": [g]}));
        assert!(d.contains("displayName is required"));
        let (_, _, d) = fails(
            ResourceKind::Group,
            json!({"schemas": [g], "displayName": "x", "members": [{"display": "y"}]}),
        );
        assert!(d.contains("every member"));
    }

    #[test]
    fn supplies_the_core_schema_after_a_patch() {
        let v = validate(
            ResourceKind::Group,
            &json!({"displayName": "g"}),
            SchemasRule::Supply,
        );
        assert_eq!(
            v.ok(),
            Some(
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "g"})
            )
        );
    }
}
