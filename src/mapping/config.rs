//! The mapping configuration as the policy writes it (the `mapping`, `extensions` and
//! `scope` members of the policy JSON). Nothing here is validated: `Mapping::compile` does
//! that, so every mistake is reported naming the rule it is in.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The attribute mapping and scope of a policy.
///
/// Members the policy leaves out take their value from [`MappingConfig::default`], so a
/// policy without `mapping` gets the Drupal-style default rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MappingConfig {
    /// The rules, each filling one SCIM attribute.
    pub mapping: Vec<RuleConfig>,
    /// The URNs of custom schema extensions that rules may target, besides the Enterprise
    /// User extension, which is always available.
    pub extensions: Vec<String>,
    /// Which users are provisioned; `None` provisions everyone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<ScopeConfig>,
}

impl Default for MappingConfig {
    /// The mapping for a stock Drupal site: `name` → `userName`, `mail` → work email,
    /// `field_first_name` / `field_last_name` → `name.givenName` / `name.familyName`, a
    /// `name.formatted` and a `displayName` made of both, the status → `active`, the uid → `externalId`; no scope.
    fn default() -> Self {
        let direct = |target: &str, source: &str| RuleConfig {
            target: target.to_owned(),
            source: Some(source.to_owned()),
            ..RuleConfig::default()
        };
        MappingConfig {
            mapping: vec![
                RuleConfig {
                    required: true,
                    ..direct("userName", "name")
                },
                RuleConfig {
                    transform: vec![TransformConfig::Trim, TransformConfig::Lower],
                    ..direct("emails[type eq \"work\"].value", "mail")
                },
                direct("name.givenName", "field_first_name"),
                direct("name.familyName", "field_last_name"),
                // As the major identity providers' default mappings do: some servers
                // require it.
                RuleConfig {
                    target: "name.formatted".to_owned(),
                    template: Some("{field_first_name} {field_last_name}".to_owned()),
                    transform: vec![TransformConfig::Trim],
                    ..RuleConfig::default()
                },
                RuleConfig {
                    target: "displayName".to_owned(),
                    template: Some("{field_first_name} {field_last_name}".to_owned()),
                    transform: vec![TransformConfig::Trim],
                    ..RuleConfig::default()
                },
                direct("active", "@active"),
                direct("externalId", "@id"),
            ],
            extensions: Vec::new(),
            scope: None,
        }
    }
}

/// One mapping rule: where a value comes from, how it is transformed, and which SCIM
/// attribute it fills. Exactly one of `source`, `constant` and `template` must be set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The SCIM attribute path, such as `userName`, `name.givenName`,
    /// `emails[type eq "work"].value` or `urn:…:enterprise:2.0:User:department`.
    pub target: String,
    /// A CMS field name, or the pseudo-fields `@id` and `@active`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// A fixed value: a string, number, boolean or array of strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constant: Option<Value>,
    /// Text with `{field}` placeholders; `{{` and `}}` stand for literal braces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The value to use when the rule yields nothing; it is not transformed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// The transforms to apply, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transform: Vec<TransformConfig>,
    /// When true, a user for whom the rule yields nothing is not provisioned.
    /// The `userName` rule is always required.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// When the rule applies.
    #[serde(default, skip_serializing_if = "Apply::is_always")]
    pub apply: Apply,
}

/// When a rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Apply {
    /// On creation and on every update.
    #[default]
    Always,
    /// Only when the remote user is created (Entra ID's "only during creation").
    Create,
}

impl Apply {
    fn is_always(&self) -> bool {
        *self == Apply::Always
    }
}

/// One transform, written as a string (`"lower"`) or a one-key object
/// (`{"split": ","}`, `{"regex_replace": {"pattern": "…", "replacement": "…"}}`).
///
/// Deserialising never fails on an unknown transform: it becomes [`TransformConfig::Invalid`]
/// so that `Mapping::compile` can report it naming the rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "Value", into = "Value")]
pub enum TransformConfig {
    /// Lower-cases text.
    Lower,
    /// Upper-cases text.
    Upper,
    /// Strips leading and trailing whitespace.
    Trim,
    /// Splits text into a list at a separator; pieces are trimmed and empty ones dropped.
    Split(String),
    /// Joins a list into text with a separator.
    Join(String),
    /// Replaces every match of a pattern; `$1` in the replacement is the first group.
    RegexReplace {
        /// The pattern.
        pattern: String,
        /// The replacement.
        replacement: String,
    },
    /// Coerces to a boolean: `1 0 true false yes no on off` (any case) and numbers.
    Bool,
    /// Coerces to a boolean like `bool`, then negates it (Joomla's `block`).
    Not,
    /// Coerces to an RFC 3339 dateTime.
    Date,
    /// Anything else the policy wrote.
    Invalid(Value),
}

impl From<Value> for TransformConfig {
    fn from(value: Value) -> Self {
        let parsed = match &value {
            Value::String(name) => match name.as_str() {
                "lower" => Some(TransformConfig::Lower),
                "upper" => Some(TransformConfig::Upper),
                "trim" => Some(TransformConfig::Trim),
                "bool" => Some(TransformConfig::Bool),
                "not" => Some(TransformConfig::Not),
                "date" => Some(TransformConfig::Date),
                _ => None,
            },
            Value::Object(map) if map.len() == 1 => match map.iter().next() {
                Some((name, Value::String(sep))) if name == "split" => {
                    Some(TransformConfig::Split(sep.clone()))
                }
                Some((name, Value::String(sep))) if name == "join" => {
                    Some(TransformConfig::Join(sep.clone()))
                }
                Some((name, Value::Object(args))) if name == "regex_replace" => regex_args(args),
                _ => None,
            },
            _ => None,
        };
        parsed.unwrap_or(TransformConfig::Invalid(value))
    }
}

fn regex_args(args: &Map<String, Value>) -> Option<TransformConfig> {
    if args.keys().any(|k| k != "pattern" && k != "replacement") {
        return None;
    }
    let pattern = args.get("pattern")?.as_str()?.to_owned();
    let replacement = match args.get("replacement") {
        None => String::new(),
        Some(v) => v.as_str()?.to_owned(),
    };
    Some(TransformConfig::RegexReplace {
        pattern,
        replacement,
    })
}

impl From<TransformConfig> for Value {
    fn from(t: TransformConfig) -> Self {
        let one = |name: &str, arg: Value| {
            let mut map = Map::new();
            map.insert(name.to_owned(), arg);
            Value::Object(map)
        };
        match t {
            TransformConfig::Lower => Value::from("lower"),
            TransformConfig::Upper => Value::from("upper"),
            TransformConfig::Trim => Value::from("trim"),
            TransformConfig::Bool => Value::from("bool"),
            TransformConfig::Not => Value::from("not"),
            TransformConfig::Date => Value::from("date"),
            TransformConfig::Split(sep) => one("split", Value::String(sep)),
            TransformConfig::Join(sep) => one("join", Value::String(sep)),
            TransformConfig::RegexReplace {
                pattern,
                replacement,
            } => {
                let mut args = Map::new();
                args.insert("pattern".to_owned(), Value::String(pattern));
                args.insert("replacement".to_owned(), Value::String(replacement));
                one("regex_replace", Value::Object(args))
            }
            TransformConfig::Invalid(v) => v,
        }
    }
}

/// Which users are provisioned. Every condition given must hold; give none and everyone is
/// in scope.
///
/// A field test names `field` and one of `any_of`, `all_of`, `none_of` or `equals`; `all`
/// and `any` nest further scopes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeConfig {
    /// `true`: only active users. `false` or absent: status does not matter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// The field tested by `any_of`, `all_of`, `none_of` and `equals`; `@id` and `@active`
    /// work too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The field has at least one of these values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any_of: Option<Vec<String>>,
    /// The field has all of these values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_of: Option<Vec<String>>,
    /// The field has none of these values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub none_of: Option<Vec<String>>,
    /// The field equals this string, number or boolean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    /// Every one of these scopes holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<Vec<ScopeConfig>>,
    /// At least one of these scopes holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<Vec<ScopeConfig>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn transforms_read_as_strings_and_one_key_objects() {
        let cases = [
            (json!("lower"), TransformConfig::Lower),
            (json!("upper"), TransformConfig::Upper),
            (json!("trim"), TransformConfig::Trim),
            (json!("bool"), TransformConfig::Bool),
            (json!("not"), TransformConfig::Not),
            (json!("date"), TransformConfig::Date),
            (json!({"split": ","}), TransformConfig::Split(",".into())),
            (json!({"join": "; "}), TransformConfig::Join("; ".into())),
            (
                json!({"regex_replace": {"pattern": "a", "replacement": "b"}}),
                TransformConfig::RegexReplace {
                    pattern: "a".into(),
                    replacement: "b".into(),
                },
            ),
            (
                json!({"regex_replace": {"pattern": "a"}}),
                TransformConfig::RegexReplace {
                    pattern: "a".into(),
                    replacement: String::new(),
                },
            ),
            (json!("Lower"), TransformConfig::Invalid(json!("Lower"))),
            (
                json!({"split": 1}),
                TransformConfig::Invalid(json!({"split": 1})),
            ),
            (
                json!({"split": ",", "join": ","}),
                TransformConfig::Invalid(json!({"split": ",", "join": ","})),
            ),
            (
                json!({"regex_replace": {"pattern": "a", "flags": "i"}}),
                TransformConfig::Invalid(json!({"regex_replace": {"pattern": "a", "flags": "i"}})),
            ),
        ];
        for (json, expected) in cases {
            let parsed: TransformConfig = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(parsed, expected, "{json}");
            if !matches!(expected, TransformConfig::Invalid(_)) {
                let back = serde_json::to_value(&parsed).unwrap();
                let again: TransformConfig = serde_json::from_value(back).unwrap();
                assert_eq!(again, expected);
            }
        }
    }

    #[test]
    fn missing_members_take_the_defaults() {
        let config: MappingConfig = serde_json::from_value(json!({"other": 1})).unwrap();
        assert_eq!(config, MappingConfig::default());
        let config: MappingConfig =
            serde_json::from_value(json!({"mapping": [{"target": "userName", "source": "u"}]}))
                .unwrap();
        assert_eq!(config.mapping.len(), 1);
        assert!(config.extensions.is_empty() && config.scope.is_none());
    }

    #[test]
    fn unknown_rule_keys_are_refused() {
        let err =
            serde_json::from_value::<RuleConfig>(json!({"target": "x", "sorce": "y"})).unwrap_err();
        assert!(err.to_string().contains("sorce"), "{err}");
    }

    #[test]
    fn default_round_trips_through_json() {
        let json = serde_json::to_value(MappingConfig::default()).unwrap();
        let back: MappingConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, MappingConfig::default());
    }
}
