//! The values that flow through a rule, their static kinds for compile-time type checks,
//! and their conversions to and from text, booleans and JSON.

use serde_json::Value;

use crate::user::{CmsUser, FieldValue};

/// The pseudo-field holding the CMS id.
pub(crate) const ID_FIELD: &str = "@id";
/// The pseudo-field holding the active flag.
pub(crate) const ACTIVE_FIELD: &str = "@active";

/// A set of value kinds a rule may produce or a target may take. A source field's kind is
/// unknown until map time, so it is [`Kinds::ANY`], which fits every target; a type error is
/// reported only when no kind can fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kinds(u8);

impl Kinds {
    pub(crate) const NONE: Kinds = Kinds(0);
    pub(crate) const TEXT: Kinds = Kinds(1);
    pub(crate) const NUMBER: Kinds = Kinds(2);
    pub(crate) const BOOL: Kinds = Kinds(4);
    pub(crate) const LIST: Kinds = Kinds(8);
    /// Text known to be an RFC 3339 dateTime: the output of `date`.
    pub(crate) const DATE: Kinds = Kinds(16);
    pub(crate) const ANY: Kinds = Kinds(31);

    pub(crate) const fn or(self, other: Kinds) -> Kinds {
        Kinds(self.0 | other.0)
    }

    pub(crate) const fn and(self, other: Kinds) -> Kinds {
        Kinds(self.0 & other.0)
    }

    pub(crate) fn intersects(self, other: Kinds) -> bool {
        self.0 & other.0 != 0
    }

    /// The kind of a definite value.
    pub(crate) fn of(value: &FieldValue) -> Kinds {
        match value {
            FieldValue::Null => Kinds::NONE,
            FieldValue::Boolean(_) => Kinds::BOOL,
            FieldValue::Number(_) => Kinds::NUMBER,
            FieldValue::Text(_) => Kinds::TEXT,
            FieldValue::TextList(_) => Kinds::LIST,
        }
    }

    /// A human name for error messages.
    pub(crate) fn describe(self) -> String {
        let names = [
            (Kinds::TEXT, "text"),
            (Kinds::NUMBER, "number"),
            (Kinds::BOOL, "boolean"),
            (Kinds::LIST, "list"),
            (Kinds::DATE, "dateTime"),
        ];
        let found: Vec<&str> = names
            .iter()
            .filter(|(k, _)| self.intersects(*k))
            .map(|(_, n)| *n)
            .collect();
        if found.is_empty() {
            "nothing".to_owned()
        } else {
            found.join(" or ")
        }
    }
}

/// A field of the user, the pseudo-fields included; a field the user lacks is `Null`.
pub(crate) fn field(user: &CmsUser, name: &str) -> FieldValue {
    match name {
        ID_FIELD => FieldValue::Text(user.id.clone()),
        ACTIVE_FIELD => FieldValue::Boolean(user.active),
        _ => user.field(name).cloned().unwrap_or(FieldValue::Null),
    }
}

/// Checks a field name a rule or scope refers to: `@` names are reserved for the
/// pseudo-fields.
pub(crate) fn check_field_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the field name is empty".to_owned());
    }
    if name.starts_with('@') && name != ID_FIELD && name != ACTIVE_FIELD {
        return Err(format!(
            "unknown pseudo-field `{name}` (there are `{ID_FIELD}` and `{ACTIVE_FIELD}`)"
        ));
    }
    Ok(())
}

/// The static kind of a field: the pseudo-fields are known, the others are not.
pub(crate) fn field_kinds(name: &str) -> Kinds {
    match name {
        ID_FIELD => Kinds::TEXT,
        ACTIVE_FIELD => Kinds::BOOL,
        _ => Kinds::ANY,
    }
}

/// Writes a number the way a person would: integers without a fraction.
pub(crate) fn number_text(n: f64) -> String {
    // Integral values up to 2^53 print exactly as integers; beyond that the f64 is already
    // approximate and its own formatting is as honest as any.
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// The text of a scalar value; `None` for `Null` and lists.
pub(crate) fn scalar_text(value: &FieldValue) -> Option<String> {
    match value {
        FieldValue::Text(s) => Some(s.clone()),
        FieldValue::Number(n) => Some(number_text(*n)),
        FieldValue::Boolean(b) => Some(b.to_string()),
        FieldValue::Null | FieldValue::TextList(_) => None,
    }
}

/// Reads a boolean from a boolean, a number (non-zero is true) or the words
/// `1 0 true false yes no on off` in any case.
pub(crate) fn coerce_bool(value: &FieldValue) -> Option<bool> {
    match value {
        FieldValue::Boolean(b) => Some(*b),
        FieldValue::Number(n) if n.is_nan() => None,
        FieldValue::Number(n) => Some(*n != 0.0),
        FieldValue::Text(s) => {
            let s = s.trim().to_ascii_lowercase();
            match s.as_str() {
                "1" | "true" | "yes" | "on" => Some(true),
                "0" | "false" | "no" | "off" => Some(false),
                _ => s
                    .parse::<f64>()
                    .ok()
                    .filter(|n| !n.is_nan())
                    .map(|n| n != 0.0),
            }
        }
        FieldValue::Null | FieldValue::TextList(_) => None,
    }
}

/// A JSON literal from the config (a constant or default) as a value; `None` for objects,
/// arrays of non-strings and non-finite numbers.
pub(crate) fn from_config_json(value: &Value) -> Option<FieldValue> {
    match value {
        Value::Null => Some(FieldValue::Null),
        Value::Bool(b) => Some(FieldValue::Boolean(*b)),
        Value::Number(n) => n.as_f64().map(FieldValue::Number),
        Value::String(s) => Some(FieldValue::Text(s.clone())),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(FieldValue::TextList),
        Value::Object(_) => None,
    }
}

/// A value read back from a SCIM resource. Objects have no field form and read as `Null`;
/// arrays keep their strings and the `value` of their objects.
pub(crate) fn from_resource_json(value: &Value) -> FieldValue {
    match value {
        Value::Null | Value::Object(_) => FieldValue::Null,
        Value::Bool(b) => FieldValue::Boolean(*b),
        Value::Number(n) => n.as_f64().map_or(FieldValue::Null, FieldValue::Number),
        Value::String(s) => FieldValue::Text(s.clone()),
        Value::Array(items) => FieldValue::TextList(
            items
                .iter()
                .filter_map(|i| match i {
                    Value::String(s) => Some(s.clone()),
                    Value::Object(o) => o.get("value").and_then(Value::as_str).map(str::to_owned),
                    _ => None,
                })
                .collect(),
        ),
    }
}

/// A number as JSON, integral ones as integers so `5` does not become `5.0`.
pub(crate) fn number_json(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bool_coercion_table() {
        let cases = [
            (FieldValue::Boolean(true), Some(true)),
            (FieldValue::Number(0.0), Some(false)),
            (FieldValue::Number(2.5), Some(true)),
            (FieldValue::Number(f64::NAN), None),
            (FieldValue::Text("1".into()), Some(true)),
            (FieldValue::Text("0".into()), Some(false)),
            (FieldValue::Text(" TRUE ".into()), Some(true)),
            (FieldValue::Text("False".into()), Some(false)),
            (FieldValue::Text("yes".into()), Some(true)),
            (FieldValue::Text("No".into()), Some(false)),
            (FieldValue::Text("on".into()), Some(true)),
            (FieldValue::Text("OFF".into()), Some(false)),
            (FieldValue::Text("-3".into()), Some(true)),
            (FieldValue::Text("0.0".into()), Some(false)),
            (FieldValue::Text("maybe".into()), None),
            (FieldValue::Text("nan".into()), None),
            (FieldValue::Text(String::new()), None),
            (FieldValue::TextList(vec!["1".into()]), None),
            (FieldValue::Null, None),
        ];
        for (value, expected) in cases {
            assert_eq!(coerce_bool(&value), expected, "{value:?}");
        }
    }

    #[test]
    fn numbers_print_like_people_write_them() {
        assert_eq!(number_text(42.0), "42");
        assert_eq!(number_text(-3.0), "-3");
        assert_eq!(number_text(2.5), "2.5");
        assert_eq!(number_json(7.0), json!(7));
        assert_eq!(number_json(0.25), json!(0.25));
    }

    #[test]
    fn json_conversions() {
        assert_eq!(
            from_config_json(&json!(["a", "b"])),
            Some(FieldValue::TextList(vec!["a".into(), "b".into()]))
        );
        assert_eq!(from_config_json(&json!([1])), None);
        assert_eq!(from_config_json(&json!({"a": 1})), None);
        assert_eq!(
            from_resource_json(&json!([{"value": "x"}, "y", 3])),
            FieldValue::TextList(vec!["x".into(), "y".into()])
        );
        assert_eq!(from_resource_json(&json!({"value": "x"})), FieldValue::Null);
    }

    #[test]
    fn pseudo_fields() {
        let user = CmsUser {
            id: "7".into(),
            fields: vec![("a".into(), FieldValue::Number(1.0))],
            active: false,
        };
        assert_eq!(field(&user, "@id"), FieldValue::Text("7".into()));
        assert_eq!(field(&user, "@active"), FieldValue::Boolean(false));
        assert_eq!(field(&user, "a"), FieldValue::Number(1.0));
        assert_eq!(field(&user, "b"), FieldValue::Null);
        assert!(check_field_name("@uid").is_err());
        assert!(check_field_name("").is_err());
        assert!(check_field_name("@id").is_ok());
    }
}
