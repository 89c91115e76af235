//! Placing rule values into a SCIM User resource, and reading them back out for the reverse
//! mapping. Reading is case-insensitive, as SCIM attribute names are.

use serde_json::{Map, Value};

use super::schema::{AttrType, CORE_USER_URN, Place, Target};
use super::value::{self, coerce_bool, number_json, scalar_text};
use crate::scim::attr::get_ci;
use crate::user::FieldValue;

/// Converts a rule's value to the JSON its target takes; `Ok(None)` when there is no value.
/// The error says why the value does not fit, without the value itself.
pub(crate) fn to_json(value: FieldValue, ty: AttrType) -> Result<Option<Value>, String> {
    // A NaN or infinite number has no JSON form; treat it like a missing value.
    if value.is_empty() || matches!(value, FieldValue::Number(n) if !n.is_finite()) {
        return Ok(None);
    }
    Ok(Some(match (ty, value) {
        (AttrType::String, FieldValue::TextList(mut items)) => {
            items.retain(|s| !s.is_empty());
            if items.len() > 1 {
                return Err(format!(
                    "the list has {} values but the attribute takes one (add a `join`)",
                    items.len()
                ));
            }
            match items.pop() {
                Some(one) => Value::String(one),
                None => return Ok(None),
            }
        }
        (AttrType::String, v) => match scalar_text(&v) {
            Some(text) => Value::String(text),
            None => return Ok(None),
        },
        (AttrType::Boolean, v) => {
            Value::Bool(coerce_bool(&v).ok_or("the value is not a boolean (add a `bool`)")?)
        }
        (AttrType::Values, FieldValue::TextList(items)) => {
            let items: Vec<Value> = items
                .into_iter()
                .filter(|s| !s.is_empty())
                .map(Value::String)
                .collect();
            if items.is_empty() {
                return Ok(None);
            }
            Value::Array(items)
        }
        (AttrType::Values, v) => match scalar_text(&v) {
            Some(text) => Value::Array(vec![Value::String(text)]),
            None => return Ok(None),
        },
        (AttrType::Free, FieldValue::Number(n)) => number_json(n),
        (AttrType::Free, FieldValue::Boolean(b)) => Value::Bool(b),
        (AttrType::Free, FieldValue::Text(s)) => Value::String(s),
        (AttrType::Free, FieldValue::TextList(items)) => {
            Value::Array(items.into_iter().map(Value::String).collect())
        }
        (AttrType::Free, FieldValue::Null) => return Ok(None),
    }))
}

/// Writes a value at its target. For [`AttrType::Values`] targets `json` is the array from
/// [`to_json`], and each item becomes an element.
pub(crate) fn put(root: &mut Map<String, Value>, target: &Target, json: Value) {
    match &target.place {
        Place::Top { attr } => {
            root.insert(attr.clone(), json);
        }
        Place::Sub { attr, sub } => {
            if let Some(obj) = object_at(root, attr) {
                obj.insert(sub.clone(), json);
            }
        }
        Place::Ext { urn, attr, sub } => {
            let Some(ext) = object_at(root, urn) else {
                return;
            };
            match sub {
                None => {
                    ext.insert(attr.clone(), json);
                }
                Some(sub) => {
                    if let Some(obj) = object_at(ext, attr) {
                        obj.insert(sub.clone(), json);
                    }
                }
            }
        }
        Place::Typed {
            attr,
            type_value,
            sub,
        } => {
            let Some(elements) = array_at(root, attr) else {
                return;
            };
            let existing = elements.iter().position(|e| {
                e.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case(type_value))
            });
            let at = match existing {
                Some(at) => at,
                None => {
                    let mut element = Map::new();
                    element.insert("type".to_owned(), Value::String(type_value.clone()));
                    push_element(elements, element, target.primary);
                    elements.len() - 1
                }
            };
            if let Some(Value::Object(element)) = elements.get_mut(at) {
                element.insert(sub.clone(), json);
            }
        }
        Place::Values { attr } => {
            let Some(elements) = array_at(root, attr) else {
                return;
            };
            let items = match json {
                Value::Array(items) => items,
                other => vec![other],
            };
            for item in items {
                let mut element = Map::new();
                element.insert("value".to_owned(), item);
                push_element(elements, element, target.primary);
            }
        }
    }
}

/// Appends an element; the first one of an attribute that has a primary gets
/// `"primary": true` (RFC 7643 §2.4 allows at most one).
fn push_element(elements: &mut Vec<Value>, mut element: Map<String, Value>, primary: bool) {
    if primary && elements.is_empty() {
        element.insert("primary".to_owned(), Value::Bool(true));
    }
    elements.push(Value::Object(element));
}

fn object_at<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    map.entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
}

fn array_at<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Vec<Value>> {
    map.entry(key.to_owned())
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
}

/// Finishes a resource: `schemas` lists the core User schema and, in the order given,
/// those of `extensions` that the resource uses.
pub(crate) fn finish(mut root: Map<String, Value>, extensions: &[String]) -> Value {
    let mut schemas = vec![Value::from(CORE_USER_URN)];
    schemas.extend(
        extensions
            .iter()
            .filter(|urn| root.contains_key(urn.as_str()))
            .map(|urn| Value::String(urn.clone())),
    );
    root.insert("schemas".to_owned(), Value::Array(schemas));
    Value::Object(root)
}

/// Reads the value at a target; `Null` when the resource does not have it.
pub(crate) fn get(resource: &Value, target: &Target) -> FieldValue {
    let Some(root) = resource.as_object() else {
        return FieldValue::Null;
    };
    let found = match &target.place {
        Place::Top { attr } | Place::Values { attr } => get_ci(root, attr),
        Place::Sub { attr, sub } => sub_of(get_ci(root, attr), sub),
        Place::Ext { urn, attr, sub } => {
            let value = get_ci(root, urn)
                .and_then(Value::as_object)
                .and_then(|ext| get_ci(ext, attr));
            match sub {
                None => value,
                Some(sub) => sub_of(value, sub),
            }
        }
        Place::Typed {
            attr,
            type_value,
            sub,
        } => get_ci(root, attr)
            .and_then(Value::as_array)
            .and_then(|elements| {
                elements.iter().find(|e| {
                    e.as_object()
                        .and_then(|o| get_ci(o, "type"))
                        .and_then(Value::as_str)
                        .is_some_and(|t| t.eq_ignore_ascii_case(type_value))
                })
            })
            .and_then(|e| sub_of(Some(e), sub)),
    };
    found.map_or(FieldValue::Null, value::from_resource_json)
}

fn sub_of<'a>(value: Option<&'a Value>, sub: &str) -> Option<&'a Value> {
    value
        .and_then(Value::as_object)
        .and_then(|o| get_ci(o, sub))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::schema::resolve;
    use serde_json::json;

    fn target(path: &str) -> Target {
        resolve(path, &["urn:acme:User".to_owned()]).unwrap()
    }

    #[test]
    fn fitting_values_to_types() {
        let text = |s: &str| FieldValue::Text(s.to_owned());
        let list =
            |items: &[&str]| FieldValue::TextList(items.iter().map(|s| s.to_string()).collect());
        let cases: Vec<(FieldValue, AttrType, Result<Option<Value>, ()>)> = vec![
            (text("a"), AttrType::String, Ok(Some(json!("a")))),
            (
                FieldValue::Number(5.0),
                AttrType::String,
                Ok(Some(json!("5"))),
            ),
            (
                FieldValue::Boolean(true),
                AttrType::String,
                Ok(Some(json!("true"))),
            ),
            (list(&["a"]), AttrType::String, Ok(Some(json!("a")))),
            (list(&["", ""]), AttrType::String, Ok(None)),
            (list(&["a", "b"]), AttrType::String, Err(())),
            (text(""), AttrType::String, Ok(None)),
            (FieldValue::Null, AttrType::Boolean, Ok(None)),
            (text("yes"), AttrType::Boolean, Ok(Some(json!(true)))),
            (
                FieldValue::Number(0.0),
                AttrType::Boolean,
                Ok(Some(json!(false))),
            ),
            (text("blocked"), AttrType::Boolean, Err(())),
            (
                list(&["a", "", "b"]),
                AttrType::Values,
                Ok(Some(json!(["a", "b"]))),
            ),
            (text("a"), AttrType::Values, Ok(Some(json!(["a"])))),
            (
                FieldValue::Number(2.5),
                AttrType::Free,
                Ok(Some(json!(2.5))),
            ),
            (FieldValue::Number(2.0), AttrType::Free, Ok(Some(json!(2)))),
            (FieldValue::Number(f64::NAN), AttrType::Free, Ok(None)),
            (
                FieldValue::Number(f64::INFINITY),
                AttrType::String,
                Ok(None),
            ),
            (
                FieldValue::Boolean(false),
                AttrType::Free,
                Ok(Some(json!(false))),
            ),
            (list(&["x"]), AttrType::Free, Ok(Some(json!(["x"])))),
        ];
        for (value, ty, expected) in cases {
            let got = to_json(value.clone(), ty).map_err(|_| ());
            assert_eq!(got, expected, "{value:?} as {ty:?}");
        }
    }

    #[test]
    fn put_and_get_every_place() {
        let mut root = Map::new();
        let writes = [
            ("userName", json!("ada")),
            ("name.givenName", json!("Ada")),
            ("emails[type eq \"work\"].value", json!("a@w")),
            ("emails[type eq \"home\"].value", json!("a@h")),
            ("emails[type eq \"Work\"].display", json!("Ada at work")),
            ("roles", json!(["r1", "r2"])),
            ("urn:acme:User:badge.id", json!(7)),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
                json!("R&D"),
            ),
        ];
        for (path, json) in &writes {
            put(&mut root, &target(path), json.clone());
        }
        let resource = finish(
            root,
            &[
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_owned(),
                "urn:unused:User".to_owned(),
                "urn:acme:User".to_owned(),
            ],
        );
        assert_eq!(
            resource,
            json!({
                "schemas": [
                    "urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
                    "urn:acme:User"
                ],
                "userName": "ada",
                "name": {"givenName": "Ada"},
                "emails": [
                    {"type": "work", "value": "a@w", "display": "Ada at work", "primary": true},
                    {"type": "home", "value": "a@h"}
                ],
                "roles": [{"value": "r1"}, {"value": "r2"}],
                "urn:acme:User": {"badge": {"id": 7}},
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"}
            })
        );
        let reads: &[(&str, FieldValue)] = &[
            ("USERNAME", FieldValue::Text("ada".into())),
            ("name.givenName", FieldValue::Text("Ada".into())),
            ("name.familyName", FieldValue::Null),
            (
                "emails[type eq \"home\"].value",
                FieldValue::Text("a@h".into()),
            ),
            ("emails[type eq \"other\"].value", FieldValue::Null),
            (
                "roles",
                FieldValue::TextList(vec!["r1".into(), "r2".into()]),
            ),
            ("urn:acme:User:badge.id", FieldValue::Number(7.0)),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
                FieldValue::Text("R&D".into()),
            ),
        ];
        for (path, expected) in reads {
            assert_eq!(&get(&resource, &target(path)), expected, "{path}");
        }
        assert_eq!(
            get(&json!("not an object"), &target("userName")),
            FieldValue::Null
        );
    }
}
