//! The provisioning scope: which CMS users are provisioned at all.

use super::config::ScopeConfig;
use super::value::{self, check_field_name, coerce_bool, from_config_json, scalar_text};
use crate::user::{CmsUser, FieldValue};

/// A compiled scope condition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scope {
    /// Every condition holds; no condition at all means everyone.
    All(Vec<Scope>),
    /// At least one condition holds.
    Any(Vec<Scope>),
    /// The user is active.
    Active,
    /// The field has one of the values.
    AnyOf(String, Vec<String>),
    /// The field has all of the values.
    AllOf(String, Vec<String>),
    /// The field has none of the values.
    NoneOf(String, Vec<String>),
    /// The field equals the value.
    Equals(String, FieldValue),
}

impl Scope {
    /// Compiles a scope; `at` names it in errors (`scope`, `scope.any[1]`, …).
    pub(crate) fn compile(config: &ScopeConfig, at: &str) -> Result<Scope, String> {
        let mut all = Vec::new();
        if config.active == Some(true) {
            all.push(Scope::Active);
        }
        let tests = [
            config.any_of.is_some(),
            config.all_of.is_some(),
            config.none_of.is_some(),
            config.equals.is_some(),
        ];
        match &config.field {
            None if tests.iter().any(|t| *t) => {
                return Err(format!(
                    "{at}: `any_of`, `all_of`, `none_of` and `equals` need a `field`"
                ));
            }
            None => {}
            Some(_) if !tests.iter().any(|t| *t) => {
                return Err(format!(
                    "{at}: `field` needs one of `any_of`, `all_of`, `none_of`, `equals`"
                ));
            }
            Some(field) => {
                let field = field.trim().to_owned();
                check_field_name(&field).map_err(|e| format!("{at}: {e}"))?;
                if let Some(values) = &config.any_of {
                    if values.is_empty() {
                        return Err(format!("{at}: `any_of` is empty, so nobody would match"));
                    }
                    all.push(Scope::AnyOf(field.clone(), values.clone()));
                }
                if let Some(values) = &config.all_of {
                    all.push(Scope::AllOf(field.clone(), values.clone()));
                }
                if let Some(values) = &config.none_of {
                    all.push(Scope::NoneOf(field.clone(), values.clone()));
                }
                if let Some(json) = &config.equals {
                    let expected = from_config_json(json)
                        .filter(|v| !matches!(v, FieldValue::TextList(_) | FieldValue::Null))
                        .ok_or_else(|| {
                            format!("{at}: `equals` must be a string, number or boolean")
                        })?;
                    all.push(Scope::Equals(field, expected));
                }
            }
        }
        if let Some(nested) = &config.all {
            let nested = nested
                .iter()
                .enumerate()
                .map(|(i, s)| Scope::compile(s, &format!("{at}.all[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            all.push(Scope::All(nested));
        }
        if let Some(nested) = &config.any {
            if nested.is_empty() {
                return Err(format!("{at}: `any` is empty, so nobody would match"));
            }
            let nested = nested
                .iter()
                .enumerate()
                .map(|(i, s)| Scope::compile(s, &format!("{at}.any[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            all.push(Scope::Any(nested));
        }
        Ok(if all.len() == 1 {
            all.pop().unwrap_or(Scope::All(Vec::new())) // ok: len is 1
        } else {
            Scope::All(all)
        })
    }

    /// Adds the fields the condition reads to `out`, each once, in the order they are first
    /// met: CMS field names, and `@id` when it reads the user's id. `@active` is left out:
    /// the active flag always travels with a user.
    pub(crate) fn fields_read(&self, out: &mut Vec<String>) {
        match self {
            Scope::All(items) | Scope::Any(items) => {
                items.iter().for_each(|s| s.fields_read(out));
            }
            Scope::Active => {}
            Scope::AnyOf(field, _)
            | Scope::AllOf(field, _)
            | Scope::NoneOf(field, _)
            | Scope::Equals(field, _) => {
                if field != value::ACTIVE_FIELD && !out.contains(field) {
                    out.push(field.clone());
                }
            }
        }
    }

    /// Whether the user satisfies the condition.
    pub(crate) fn holds(&self, user: &CmsUser) -> bool {
        match self {
            Scope::All(items) => items.iter().all(|s| s.holds(user)),
            Scope::Any(items) => items.iter().any(|s| s.holds(user)),
            Scope::Active => user.active,
            Scope::AnyOf(field, wanted) => {
                let has = Values::of(user, field);
                wanted.iter().any(|w| has.contains(w))
            }
            Scope::AllOf(field, wanted) => {
                let has = Values::of(user, field);
                wanted.iter().all(|w| has.contains(w))
            }
            Scope::NoneOf(field, unwanted) => {
                let has = Values::of(user, field);
                !unwanted.iter().any(|w| has.contains(w))
            }
            Scope::Equals(field, expected) => equals(&value::field(user, field), expected),
        }
    }
}

/// The values of a field as text: a list's items, or a scalar's text. A list is borrowed,
/// not copied: `plan` judges the scope of every user in a sync.
enum Values<'a> {
    /// A list field's items.
    List(&'a [String]),
    /// A scalar's text; none for a missing or null field.
    One(Option<String>),
}

impl<'a> Values<'a> {
    fn of(user: &'a CmsUser, field: &str) -> Values<'a> {
        match user.field(field) {
            // The pseudo-fields (`@id`, `@active`) are never a CMS field of that name.
            Some(FieldValue::TextList(items)) if !field.starts_with('@') => Values::List(items),
            _ => Values::One(scalar_text(&value::field(user, field))),
        }
    }

    fn contains(&self, wanted: &str) -> bool {
        match self {
            Values::List(items) => items.iter().any(|item| item == wanted),
            Values::One(text) => text.as_deref() == Some(wanted),
        }
    }
}

/// Equality that forgives how the CMS stored the value: `equals: 1` matches the text `"1"`,
/// `equals: true` matches `"yes"`.
fn equals(actual: &FieldValue, expected: &FieldValue) -> bool {
    match (actual, expected) {
        (_, FieldValue::Boolean(b)) => coerce_bool(actual) == Some(*b),
        (FieldValue::Number(a), FieldValue::Number(b)) => a == b,
        (FieldValue::Text(a), FieldValue::Number(b)) => a.trim().parse::<f64>() == Ok(*b),
        (a, FieldValue::Text(b)) => scalar_text(a).as_deref() == Some(b.as_str()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(active: bool, fields: serde_json::Value) -> CmsUser {
        CmsUser {
            id: "1".into(),
            fields: serde_json::from_value(fields).unwrap(),
            active,
        }
    }

    fn scope(config: serde_json::Value) -> Scope {
        Scope::compile(&serde_json::from_value(config).unwrap(), "scope").unwrap()
    }

    #[test]
    fn scope_table() {
        let editor = user(
            true,
            json!([
                ["roles", ["editor", "author"]],
                ["dept", "IT"],
                ["level", 3],
                ["vip", "yes"]
            ]),
        );
        let blocked = user(false, json!([["roles", ["member"]], ["dept", "HR"]]));
        let bare = user(true, json!([]));
        let cases = [
            (json!({}), [true, true, true]),
            (json!({"active": true}), [true, false, true]),
            (json!({"active": false}), [true, true, true]),
            (
                json!({"field": "roles", "any_of": ["editor", "member"]}),
                [true, true, false],
            ),
            (
                json!({"field": "roles", "all_of": ["editor", "author"]}),
                [true, false, false],
            ),
            (
                json!({"field": "roles", "none_of": ["member"]}),
                [true, false, true],
            ),
            (
                json!({"field": "dept", "any_of": ["IT"]}),
                [true, false, false],
            ),
            (
                json!({"field": "dept", "equals": "HR"}),
                [false, true, false],
            ),
            (json!({"field": "level", "equals": 3}), [true, false, false]),
            (
                json!({"field": "vip", "equals": true}),
                [true, false, false],
            ),
            (
                json!({"field": "@active", "equals": false}),
                [false, true, false],
            ),
            (json!({"field": "@id", "equals": "1"}), [true, true, true]),
            (
                json!({"active": true, "field": "roles", "any_of": ["editor", "member"]}),
                [true, false, false],
            ),
            (
                json!({"any": [{"field": "dept", "equals": "HR"}, {"field": "level", "equals": 3}]}),
                [true, true, false],
            ),
            (
                json!({"all": [{"active": true}, {"field": "roles", "none_of": ["admin"]}]}),
                [true, false, true],
            ),
            (
                json!({"any": [{"all": [{"active": true}, {"field": "dept", "equals": "IT"}]}, {"field": "roles", "any_of": ["member"]}]}),
                [true, true, false],
            ),
        ];
        for (config, expected) in cases {
            let s = scope(config.clone());
            let got = [s.holds(&editor), s.holds(&blocked), s.holds(&bare)];
            assert_eq!(got, expected, "{config}");
        }
    }

    /// What a host relies on when it passes `plan` only the scope's fields, and an empty id
    /// unless `@id` is among them: the scope judges the cut user exactly as the whole one.
    #[test]
    fn a_user_cut_to_the_fields_the_scope_reads_is_judged_the_same() {
        let users = [
            user(
                true,
                json!([
                    ["name", "ed"],
                    ["roles", ["editor", "author"]],
                    ["dept", "IT"],
                    ["roles", ["member"]],
                    ["level", 3],
                    ["vip", "yes"]
                ]),
            ),
            user(
                false,
                json!([["roles", ["member"]], ["dept", "HR"], ["mail", "a@b"]]),
            ),
            user(true, json!([])),
        ];
        let cases = [
            (json!({}), vec![]),
            (json!({"active": true}), vec![]),
            (json!({"field": "@active", "equals": false}), vec![]),
            (json!({"field": "@id", "equals": "1"}), vec!["@id"]),
            (
                json!({"field": "roles", "any_of": ["member"]}),
                vec!["roles"],
            ),
            (
                json!({"field": "roles", "none_of": ["editor"]}),
                vec!["roles"],
            ),
            (
                json!({"any": [{"field": "dept", "equals": "HR"}, {"all": [{"field": "level", "equals": 3}, {"field": "dept", "any_of": ["IT"]}]}]}),
                vec!["dept", "level"],
            ),
            (
                json!({"active": true, "field": "vip", "equals": true, "all": [{"field": "roles", "all_of": ["editor"]}]}),
                vec!["vip", "roles"],
            ),
        ];
        for (config, expected_fields) in cases {
            let s = scope(config.clone());
            let mut fields = Vec::new();
            s.fields_read(&mut fields);
            assert_eq!(fields, expected_fields, "{config}");
            for whole in &users {
                let reads_id = fields.iter().any(|f| f == value::ID_FIELD);
                let cut = CmsUser {
                    id: if reads_id {
                        whole.id.clone()
                    } else {
                        String::new()
                    },
                    active: whole.active,
                    fields: whole
                        .fields
                        .iter()
                        .filter(|(name, _)| fields.contains(name))
                        .cloned()
                        .collect(),
                };
                assert_eq!(s.holds(&cut), s.holds(whole), "{config} {whole:?}");
            }
        }
    }

    #[test]
    fn scope_errors() {
        let cases = [
            (json!({"any_of": ["a"]}), "scope: `any_of`"),
            (json!({"field": "roles"}), "scope: `field` needs"),
            (json!({"field": "roles", "any_of": []}), "nobody"),
            (json!({"any": []}), "nobody"),
            (json!({"field": "@uid", "equals": "x"}), "pseudo-field"),
            (json!({"field": "x", "equals": ["a"]}), "`equals` must"),
            (
                json!({"all": [{"active": true}, {"any": [{"field": "x"}]}]}),
                "scope.all[1].any[0]",
            ),
        ];
        for (config, expected) in cases {
            let parsed: ScopeConfig = serde_json::from_value(config.clone()).unwrap();
            let err = Scope::compile(&parsed, "scope").unwrap_err();
            assert!(err.contains(expected), "{config}: {err}");
        }
    }
}
