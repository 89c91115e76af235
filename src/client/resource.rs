//! Pure helpers over SCIM resources as the engine sees them: the id, version and location a
//! server returned, the value of a matching attribute, and the shaping of a remote resource
//! so it compares with what we map.

use serde_json::{Map, Value};

use crate::ports::HttpResponse;
use crate::scim::attr::get_ci;
use crate::scim::filter;
use crate::scim::lenient::lenient_bool;
use crate::scim::path::AttrPath;

/// The resource's `id`, as a string (some servers send numbers). An id that would not stay
/// one path segment (empty, `.`, `..`, or those percent-encoded) is no id: the callers
/// treat a server that sends one as an unexpected response.
pub fn id_of(resource: &Value) -> Option<String> {
    match resource.get("id")? {
        Value::String(s) if !crate::scim::uri::is_empty_or_dot_segment(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `meta.version`, else the `ETag` header.
pub fn version_of(response: &HttpResponse, resource: Option<&Value>) -> Option<String> {
    resource
        .and_then(|r| r.get("meta"))
        .and_then(|m| m.get("version"))
        .and_then(Value::as_str)
        .map(String::from)
        .or_else(|| response.header("etag").map(String::from))
}

/// `meta.location`, else the `Location` header.
pub fn location_of(response: &HttpResponse, resource: Option<&Value>) -> Option<String> {
    resource
        .and_then(|r| r.get("meta"))
        .and_then(|m| m.get("location"))
        .and_then(Value::as_str)
        .map(String::from)
        .or_else(|| response.header("location").map(String::from))
}

/// The string value a matching attribute has in a resource: `userName`, `name.familyName`,
/// `emails[type eq "work"].value`, `urn:…:User:employeeNumber`. Multi-valued attributes
/// without a filter give their primary (or first) value.
pub fn match_value(resource: &Value, path: &AttrPath) -> Option<String> {
    let obj = resource.as_object()?;
    let container = match &path.urn {
        Some(urn) if !crate::scim::attr::is_core_urn(urn) => get_ci(obj, urn)?.as_object()?,
        _ => obj,
    };
    let mut value = get_ci(container, &path.attr)?;
    if let Value::Array(items) = value {
        let chosen = match &path.filter {
            Some(f) => items.iter().find(|item| filter::matches(f, item)),
            None => items
                .iter()
                .find(|i| i.get("primary") == Some(&Value::Bool(true)))
                .or_else(|| items.first()),
        }?;
        value = chosen;
        if path.sub_attr.is_none() {
            value = chosen
                .as_object()
                .and_then(|o| get_ci(o, "value"))
                .unwrap_or(chosen);
        }
    }
    if let Some(sub) = &path.sub_attr {
        value = get_ci(value.as_object()?, sub)?;
    }
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The filter that looks a user up by a matching attribute, value escaped. A value path
/// with a filter becomes `emails[type eq "work" and value eq "x"]`.
pub fn match_filter(path: &AttrPath, value: &str) -> String {
    let quoted = filter::quote(value);
    let prefix = path
        .urn
        .as_ref()
        .map(|u| format!("{u}:"))
        .unwrap_or_default();
    match (&path.filter, &path.sub_attr) {
        (Some(f), Some(sub)) => format!("{prefix}{}[{f} and {sub} eq {quoted}]", path.attr),
        (Some(f), None) => format!("{prefix}{}[{f} and value eq {quoted}]", path.attr),
        (None, Some(sub)) => format!("{prefix}{}.{sub} eq {quoted}", path.attr),
        (None, None) => format!("{prefix}{} eq {quoted}", path.attr),
    }
}

/// A simpler filter for servers that reject value-path filters: `emails.value eq "x"`.
pub fn simple_match_filter(path: &AttrPath, value: &str) -> Option<String> {
    path.filter.as_ref()?;
    let prefix = path
        .urn
        .as_ref()
        .map(|u| format!("{u}:"))
        .unwrap_or_default();
    let sub = path.sub_attr.as_deref().unwrap_or("value");
    Some(format!(
        "{prefix}{}.{sub} eq {}",
        path.attr,
        filter::quote(value)
    ))
}

/// The part of a remote resource that corresponds to what we map (`shape`): the same
/// attributes, the same sub-attributes of complex ones, and only the typed values of
/// multi-valued ones that we map, with only the sub-attributes we map. A diff against it
/// never removes what we do not manage. `"True"`/`"False"` strings read as the booleans
/// we map.
pub fn project(remote: &Value, shape: &Value) -> Value {
    let (Some(remote), Some(shape)) = (remote.as_object(), shape.as_object()) else {
        return remote.clone();
    };
    let mut out = Map::new();
    for (key, shape_value) in shape {
        let Some(remote_value) = get_ci(remote, key) else {
            continue;
        };
        let projected = match (shape_value, remote_value) {
            (Value::Object(_), Value::Object(_)) => project(remote_value, shape_value),
            (Value::Array(shape_items), Value::Array(remote_items)) => {
                match types_of(shape_items) {
                    Some(_) => Value::Array(
                        remote_items
                            .iter()
                            .filter_map(|item| {
                                let t = type_of(item)?;
                                let shape_item = shape_items
                                    .iter()
                                    .find(|s| type_of(s).as_ref() == Some(&t))?;
                                Some(project(item, shape_item))
                            })
                            .collect(),
                    ),
                    None => remote_value.clone(),
                }
            }
            (Value::Bool(_), Value::String(_)) => {
                lenient_bool(remote_value).map_or_else(|| remote_value.clone(), Value::Bool)
            }
            _ => remote_value.clone(),
        };
        out.insert(key.clone(), projected);
    }
    Value::Object(out)
}

/// A shape holding every attribute of `a` and `b` (objects merged key by key, typed values
/// of both), so a projection onto it keeps what we last sent as well as what we send now.
pub fn union_shape(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Object(ao), Value::Object(bo)) => {
            let mut out = ao.clone();
            for (k, bv) in bo {
                let merged = match get_ci(ao, k) {
                    Some(av) => union_shape(av, bv),
                    None => bv.clone(),
                };
                remove_ci(&mut out, k);
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(aa), Value::Array(ba)) => {
            Value::Array(aa.iter().chain(ba.iter()).cloned().collect())
        }
        _ => b.clone(),
    }
}

/// The body of a PUT that sets what we map without losing what we do not: the remote
/// resource, with our attributes laid over it, the attributes we cleared since `previous`
/// removed (sub-attributes too), `meta` dropped (it is read-only), and the schema URNs of
/// the extensions kept.
pub fn merge_for_put(remote: &Value, new: &Value, previous: Option<&Value>) -> Value {
    let mut out = remote.as_object().cloned().unwrap_or_default();
    let prev_obj = previous.and_then(Value::as_object);
    if let Some(prev) = prev_obj {
        for key in prev.keys() {
            let still_mapped = new.as_object().is_some_and(|n| get_ci(n, key).is_some());
            if !still_mapped && key != "schemas" && key != "id" {
                remove_ci(&mut out, key);
            }
        }
    }
    if let Some(new) = new.as_object() {
        for (key, value) in new {
            let existing = remove_ci(&mut out, key);
            let merged = match (existing, value) {
                (Some(Value::Object(mut old)), Value::Object(newer)) if key != "schemas" => {
                    // Sub-attributes we set last time and map no longer are cleared.
                    let prev_sub = prev_obj
                        .and_then(|p| get_ci(p, key))
                        .and_then(Value::as_object);
                    for k in prev_sub.into_iter().flat_map(|p| p.keys()) {
                        if get_ci(newer, k).is_none() {
                            remove_ci(&mut old, k);
                        }
                    }
                    for (k, v) in newer {
                        remove_ci(&mut old, k);
                        old.insert(k.clone(), v.clone());
                    }
                    Value::Object(old)
                }
                (Some(Value::Array(old)), Value::Array(newer)) => match types_of(newer) {
                    Some(types) => {
                        let mut items: Vec<Value> = old
                            .into_iter()
                            .filter(|i| type_of(i).is_none_or(|t| !types.contains(&t)))
                            .collect();
                        let new_primary = newer
                            .iter()
                            .any(|i| i.get("primary") == Some(&Value::Bool(true)));
                        if new_primary {
                            // Only one value may be primary (RFC 7643 §2.4).
                            for i in &mut items {
                                if let Some(o) = i.as_object_mut() {
                                    o.remove("primary");
                                }
                            }
                        }
                        items.extend(newer.iter().cloned());
                        Value::Array(items)
                    }
                    None => value.clone(),
                },
                _ => value.clone(),
            };
            out.insert(key.clone(), merged);
        }
    }
    remove_ci(&mut out, "meta");
    // Extension data kept from the remote resource keeps its URN in `schemas`.
    let kept: Vec<Value> = remote
        .get("schemas")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|u| {
            u.as_str()
                .is_some_and(|u| out.keys().any(|k| k.eq_ignore_ascii_case(u)))
        })
        .cloned()
        .collect();
    if let Some(Value::Array(schemas)) = out.get_mut("schemas") {
        for urn in kept {
            if !schemas.contains(&urn) {
                schemas.push(urn);
            }
        }
    }
    Value::Object(out)
}

fn remove_ci(obj: &mut Map<String, Value>, key: &str) -> Option<Value> {
    let actual = obj.keys().find(|k| k.eq_ignore_ascii_case(key))?.clone();
    obj.remove(&actual)
}

fn type_of(item: &Value) -> Option<String> {
    get_ci(item.as_object()?, "type")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
}

/// The lower-cased types of a multi-valued attribute's values, when every value has one.
fn types_of(items: &[Value]) -> Option<Vec<String>> {
    if items.is_empty() {
        return None;
    }
    items.iter().map(type_of).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> AttrPath {
        AttrPath::parse(s).unwrap()
    }

    fn user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "id": "2819c223", "userName": "bjensen", "externalId": 42,
            "name": {"familyName": "Jensen"},
            "emails": [{"type": "home", "value": "b@home.example"},
                       {"type": "work", "value": "bjensen@example.com", "primary": true}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701984"},
            "meta": {"version": "W/\"3\"", "location": "https://x/Users/2819c223"}
        })
    }

    #[test]
    fn match_values() {
        let u = user();
        assert_eq!(match_value(&u, &p("userName")).as_deref(), Some("bjensen"));
        assert_eq!(match_value(&u, &p("USERNAME")).as_deref(), Some("bjensen"));
        assert_eq!(match_value(&u, &p("externalId")).as_deref(), Some("42"));
        assert_eq!(
            match_value(&u, &p("name.familyName")).as_deref(),
            Some("Jensen")
        );
        assert_eq!(
            match_value(&u, &p("emails[type eq \"work\"].value")).as_deref(),
            Some("bjensen@example.com")
        );
        assert_eq!(
            match_value(&u, &p("emails")).as_deref(),
            Some("bjensen@example.com")
        );
        assert_eq!(
            match_value(
                &u,
                &p("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber")
            )
            .as_deref(),
            Some("701984")
        );
        assert_eq!(match_value(&u, &p("emails[type eq \"other\"].value")), None);
        assert_eq!(match_value(&u, &p("nickName")), None);
    }

    #[test]
    fn match_filters_escape_values() {
        assert_eq!(
            match_filter(&p("userName"), "a\"b\\c"),
            r#"userName eq "a\"b\\c""#
        );
        assert_eq!(
            match_filter(&p("emails[type eq \"work\"].value"), "x@y"),
            r#"emails[type eq "work" and value eq "x@y"]"#
        );
        assert_eq!(
            simple_match_filter(&p("emails[type eq \"work\"].value"), "x@y").as_deref(),
            Some(r#"emails.value eq "x@y""#)
        );
        assert_eq!(simple_match_filter(&p("userName"), "x"), None);
        for f in [
            match_filter(&p("userName"), "a\"b\\c"),
            match_filter(&p("emails[type eq \"work\"].value"), "q\""),
        ] {
            assert!(filter::parse(&f).is_ok(), "{f}");
        }
    }

    #[test]
    fn ids_versions_locations() {
        let u = user();
        let resp = HttpResponse {
            status: 201,
            headers: vec![
                ("ETag".into(), "W/\"9\"".into()),
                ("Location".into(), "https://x/L".into()),
            ],
            body: vec![],
        };
        assert_eq!(id_of(&u).as_deref(), Some("2819c223"));
        assert_eq!(id_of(&json!({"id": 7})).as_deref(), Some("7"));
        assert_eq!(id_of(&json!({"id": ""})), None);
        for dots in [".", "..", "%2e%2e", "%2E"] {
            assert_eq!(id_of(&json!({ "id": dots })), None, "{dots}");
        }
        assert_eq!(version_of(&resp, Some(&u)).as_deref(), Some("W/\"3\""));
        assert_eq!(version_of(&resp, None).as_deref(), Some("W/\"9\""));
        assert_eq!(
            location_of(&resp, Some(&json!({}))).as_deref(),
            Some("https://x/L")
        );
    }

    #[test]
    fn union_shapes_keep_both_sides() {
        let a = json!({"name": {"givenName": "a"}, "emails": [{"type": "work", "value": "x"}], "title": "t"});
        let b = json!({"name": {"familyName": "b"}, "emails": [{"type": "home", "value": "y"}]});
        let u = union_shape(&a, &b);
        assert_eq!(u["name"], json!({"givenName": "a", "familyName": "b"}));
        assert_eq!(u["emails"].as_array().map(Vec::len), Some(2));
        assert_eq!(u["title"], "t");
    }

    #[test]
    fn projection_keeps_only_what_we_map() {
        let shape = json!({"userName": "x", "name": {"familyName": "y"},
                           "emails": [{"type": "work", "value": "z"}]});
        assert_eq!(
            project(&user(), &shape),
            json!({"userName": "bjensen", "name": {"familyName": "Jensen"},
                   "emails": [{"type": "work", "value": "bjensen@example.com"}]})
        );
    }

    #[test]
    fn put_merge_keeps_unmapped_and_drops_cleared() {
        let new = json!({"userName": "bjensen2", "emails": [{"type": "work", "value": "n@example.com", "primary": true}],
                         "name": {"givenName": "Barbara"}});
        let previous = json!({"userName": "bjensen", "nickName": "Babs"});
        let mut remote = user();
        remote["nickName"] = json!("Babs");
        let merged = merge_for_put(&remote, &new, Some(&previous));
        assert_eq!(merged["userName"], "bjensen2");
        assert!(merged.get("nickName").is_none(), "cleared since last time");
        assert!(merged.get("meta").is_none());
        assert_eq!(
            merged["name"],
            json!({"familyName": "Jensen", "givenName": "Barbara"})
        );
        assert_eq!(
            merged["emails"],
            json!([{"type": "home", "value": "b@home.example"},
                   {"type": "work", "value": "n@example.com", "primary": true}])
        );
        assert_eq!(
            merged["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["employeeNumber"],
            "701984"
        );
    }
}
