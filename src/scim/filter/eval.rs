//! Evaluating a SCIM filter against a resource's JSON, with SCIM's matching rules
//! ([`matches`]). The server role filters list requests with it, and a host may use it to
//! answer the directory port's queries.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::scim::attr::{self, AttrName};

use super::{CompareOp, Filter};

/// Whether `resource` matches `filter`, with SCIM semantics:
///
/// - Attribute names are compared case-insensitively.
/// - String comparisons are case-insensitive, except for the `caseExact` attributes `id`,
///   `externalId` and `meta.version` (a practical rule that avoids needing the schema).
/// - A multi-valued attribute matches if any of its values matches. Comparing a complex
///   value directly (`emails eq "x"`) compares its `value` sub-attribute.
/// - `pr` holds for a value that is not null, not an empty string, not an empty array and
///   not an empty object.
/// - `ne` is the negation of `eq`, so it holds when the attribute has no value.
///   `eq null` holds when the attribute has no value, `ne null` when it has one.
/// - `co`, `sw`, `ew` apply to strings only. `gt`, `ge`, `lt`, `le` compare strings
///   lexicographically (ISO 8601 dateTimes therefore order correctly) and numbers
///   numerically; booleans support only `eq` and `ne`. Mismatched types never match.
/// - A name qualified with a core schema URN resolves at the top level; one qualified with
///   any other URN resolves inside the extension object keyed by that URN.
pub fn matches(filter: &Filter, resource: &Value) -> bool {
    match filter {
        Filter::And(l, r) => matches(l, resource) && matches(r, resource),
        Filter::Or(l, r) => matches(l, resource) || matches(r, resource),
        Filter::Not(inner) => !matches(inner, resource),
        Filter::Present(path) => candidates(path, resource).into_iter().any(is_present),
        Filter::Compare { path, op, value } => compare(path, *op, value, resource),
        Filter::ValuePath { path, filter } => {
            let Some(v) = resolve_attr(path, resource) else {
                return false;
            };
            let elements: Vec<&Value> = match v {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            let elements = match &path.sub_attr {
                None => elements,
                Some(sub) => elements
                    .into_iter()
                    .filter_map(|e| e.as_object().and_then(|o| attr::get_ci(o, sub)))
                    .collect(),
            };
            elements.into_iter().any(|e| matches(filter, e))
        }
    }
}

/// The object that holds attributes qualified with `urn`, within `resource`.
fn container<'a>(
    urn: Option<&str>,
    resource: &'a Map<String, Value>,
) -> Option<&'a Map<String, Value>> {
    match urn {
        None => Some(resource),
        Some(u) => match attr::get_ci(resource, u) {
            Some(Value::Object(ext)) => Some(ext),
            _ if attr::is_core_urn(u) => Some(resource),
            _ => None,
        },
    }
}

/// The value of the attribute (not the sub-attribute) that `path` names.
fn resolve_attr<'a>(path: &AttrName, resource: &'a Value) -> Option<&'a Value> {
    let obj = container(path.urn.as_deref(), resource.as_object()?)?;
    attr::get_ci(obj, &path.attr)
}

/// The scalar or complex values that `path` reaches, flattening multi-valued attributes.
fn candidates<'a>(path: &AttrName, resource: &'a Value) -> Vec<&'a Value> {
    let Some(v) = resolve_attr(path, resource) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut push = |v: &'a Value| match v {
        Value::Array(items) => out.extend(items.iter()),
        other => out.push(other),
    };
    match &path.sub_attr {
        None => push(v),
        Some(sub) => {
            let parents: Vec<&Value> = match v {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            for parent in parents {
                if let Some(sv) = parent.as_object().and_then(|o| attr::get_ci(o, sub)) {
                    push(sv);
                }
            }
        }
    }
    out
}

fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => o.values().any(is_present),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

/// True for the attributes compared case-sensitively (`caseExact`).
fn is_case_exact(path: &AttrName) -> bool {
    if !path.is_top_level() {
        return false;
    }
    match &path.sub_attr {
        None => attr::name_eq(&path.attr, "id") || attr::name_eq(&path.attr, "externalId"),
        Some(sub) => attr::name_eq(&path.attr, "meta") && attr::name_eq(sub, "version"),
    }
}

fn compare(path: &AttrName, op: CompareOp, value: &Value, resource: &Value) -> bool {
    let cands: Vec<&Value> = candidates(path, resource)
        .into_iter()
        .filter_map(|c| match c {
            // A complex value compared directly stands for its `value` sub-attribute.
            Value::Object(o) => attr::get_ci(o, "value"),
            other => Some(other),
        })
        .collect();
    match op {
        CompareOp::Ne => !compare_any(&cands, CompareOp::Eq, value, is_case_exact(path)),
        _ => compare_any(&cands, op, value, is_case_exact(path)),
    }
}

fn compare_any(cands: &[&Value], op: CompareOp, value: &Value, case_exact: bool) -> bool {
    if value.is_null() {
        // `eq null` asks whether the attribute is unassigned.
        let present = cands.iter().any(|c| is_present(c));
        return op == CompareOp::Eq && !present;
    }
    cands.iter().any(|c| compare_one(c, op, value, case_exact))
}

fn ordered(op: CompareOp, ord: Ordering) -> bool {
    match op {
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::Ne => ord != Ordering::Equal,
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

fn compare_one(actual: &Value, op: CompareOp, expected: &Value, case_exact: bool) -> bool {
    match (actual, expected) {
        (Value::String(a), Value::String(e)) => {
            let (a, e) = if case_exact {
                (a.clone(), e.clone())
            } else {
                (a.to_lowercase(), e.to_lowercase())
            };
            match op {
                CompareOp::Co => a.contains(&e),
                CompareOp::Sw => a.starts_with(&e),
                CompareOp::Ew => a.ends_with(&e),
                _ => ordered(op, a.cmp(&e)),
            }
        }
        (Value::Number(a), Value::Number(e)) => {
            let ord = match (a.as_i64(), e.as_i64()) {
                (Some(x), Some(y)) => Some(x.cmp(&y)),
                _ => match (a.as_f64(), e.as_f64()) {
                    (Some(x), Some(y)) => x.partial_cmp(&y),
                    _ => None,
                },
            };
            ord.is_some_and(|o| ordered(op, o))
        }
        (Value::Bool(a), Value::Bool(e)) => match op {
            CompareOp::Eq => a == e,
            CompareOp::Ne => a != e,
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scim::filter::parse_valid as f;

    fn user() -> Value {
        json!({
            "schemas": [
                "urn:ietf:params:scim:schemas:core:2.0:User",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
            ],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "externalId": "BJensen",
            "userName": "bjensen@example.com",
            "name": {"familyName": "O'Malley", "givenName": "Barbara"},
            "title": "Tour Guide",
            "userType": "Employee",
            "active": true,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "ims": [{"value": "someaimhandle", "type": "aim"}],
            "groups": [],
            "loginCount": 7,
            "meta": {
                "resourceType": "User",
                "lastModified": "2011-05-13T04:42:34Z",
                "version": "W/\"3694e05e9dff591\""
            },
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": "701984",
                "department": "Sales",
                "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}
            }
        })
    }

    #[test]
    fn evaluation() {
        let u = user();
        let yes = [
            r#"userName eq "BJENSEN@example.com""#,
            r#"USERNAME eq "bjensen@example.com""#,
            r#"name.familyName co "o'malley""#,
            r#"userName sw "bj""#,
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "B""#,
            r#"title pr"#,
            r#"meta.lastModified gt "2011-05-13T04:42:33Z""#,
            r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
            r#"meta.lastModified lt "2012-01-01T00:00:00Z""#,
            r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
            r#"title pr and userType eq "Employee""#,
            r#"title pr or userType eq "Intern""#,
            r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
            r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
            r#"userType eq "Employee" and (emails.type eq "work")"#,
            r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
            r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
            r#"emails eq "babs@jensen.org""#,
            r#"emails[type eq "home"]"#,
            r#"emails[primary eq true and type eq "WORK"]"#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "sales""#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value pr"#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager eq "26118915-6090-4610-87e4-49d8ca9f808d""#,
            r#"id eq "2819c223-7f76-453a-919d-413861904646""#,
            r#"externalId eq "BJensen""#,
            r#"active eq true"#,
            r#"active ne false"#,
            r#"loginCount gt 6 and loginCount le 7.0 and loginCount eq 7"#,
            r#"nickName eq null"#,
            r#"nickName ne "x""#,
            r#"not (nickName pr)"#,
            r#"name pr"#,
            r#"userName ew ".COM""#,
            r#"ims.value eq "SomeAimHandle""#,
        ];
        for s in yes {
            assert!(matches(&f(s), &u), "expected a match: {s}");
        }
        let no = [
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            r#"externalId eq "bjensen""#,
            r#"id eq "2819C223-7F76-453A-919D-413861904646""#,
            r#"meta.version eq "w/\"3694e05e9dff591\"""#,
            r#"groups pr"#,
            r#"nickName pr"#,
            r#"emails[type eq "home" and primary eq true]"#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "1""#,
            r#"urn:example:params:scim:schemas:extension:acme:2.0:User:department eq "Sales""#,
            r#"department eq "Sales""#,
            r#"active gt false"#,
            r#"active eq "true""#,
            r#"loginCount co 7"#,
            r#"loginCount gt "6""#,
            r#"title eq null"#,
            r#"userName gt "c""#,
            r#"name eq "Barbara""#,
        ];
        for s in no {
            assert!(!matches(&f(s), &u), "expected no match: {s}");
        }
        assert!(matches(
            &f(r#"meta.version eq "W/\"3694e05e9dff591\"""#),
            &u
        ));
        // Anything that is not an object matches nothing.
        assert!(!matches(&f("title pr"), &json!("x")));
    }
}
