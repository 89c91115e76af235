//! The value transforms of a rule: compiling them from the config, their static typing,
//! applying them at map time and undoing them for the reverse mapping.
//!
//! Text transforms (`lower`, `upper`, `trim`, `regex_replace`) work on each element of a
//! list. Empty values (`Null`, `""`, `[]`) pass through every transform unchanged, so a
//! missing field stays missing instead of failing `bool` or `date`.

use super::config::TransformConfig;
use super::date;
use super::regex::{Regex, Replacement};
use super::value::{Kinds, coerce_bool, scalar_text};
use crate::user::FieldValue;

/// A compiled transform.
#[derive(Debug, Clone)]
pub(crate) enum Transform {
    Lower,
    Upper,
    Trim,
    Split(String),
    Join(String),
    RegexReplace {
        regex: Box<Regex>,
        replacement: Replacement,
    },
    Bool,
    Not,
    Date,
}

/// Kinds that text transforms read: anything with a text form.
const TEXTUAL: Kinds = Kinds::TEXT
    .or(Kinds::NUMBER)
    .or(Kinds::BOOL)
    .or(Kinds::DATE)
    .or(Kinds::LIST);

/// Kinds that are not lists.
const SCALARS: Kinds = Kinds::TEXT
    .or(Kinds::NUMBER)
    .or(Kinds::BOOL)
    .or(Kinds::DATE);

impl Transform {
    /// Compiles one transform; the error does not name the rule, the caller does.
    pub(crate) fn compile(config: &TransformConfig) -> Result<Transform, String> {
        Ok(match config {
            TransformConfig::Lower => Transform::Lower,
            TransformConfig::Upper => Transform::Upper,
            TransformConfig::Trim => Transform::Trim,
            TransformConfig::Bool => Transform::Bool,
            TransformConfig::Not => Transform::Not,
            TransformConfig::Date => Transform::Date,
            TransformConfig::Split(sep) | TransformConfig::Join(sep) if sep.is_empty() => {
                return Err("the separator of split/join is empty".to_owned());
            }
            TransformConfig::Split(sep) => Transform::Split(sep.clone()),
            TransformConfig::Join(sep) => Transform::Join(sep.clone()),
            TransformConfig::RegexReplace {
                pattern,
                replacement,
            } => {
                // A hostile pattern can be megabytes long; an error quotes only its start.
                let shown = shorten(pattern);
                let regex =
                    Regex::new(pattern).map_err(|e| format!("invalid regex {shown:?}: {e}"))?;
                let replacement = Replacement::parse(replacement);
                if replacement.max_group() > regex.group_count() {
                    return Err(format!(
                        "the replacement refers to group ${} but {shown:?} has {} group(s)",
                        replacement.max_group(),
                        regex.group_count()
                    ));
                }
                Transform::RegexReplace {
                    regex: Box::new(regex),
                    replacement,
                }
            }
            TransformConfig::Invalid(v) => {
                return Err(format!(
                    "unknown transform {v} (known: lower, upper, trim, split, join, \
                     regex_replace, bool, not, date)"
                ));
            }
        })
    }

    /// The transform's name in the config.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Transform::Lower => "lower",
            Transform::Upper => "upper",
            Transform::Trim => "trim",
            Transform::Split(_) => "split",
            Transform::Join(_) => "join",
            Transform::RegexReplace { .. } => "regex_replace",
            Transform::Bool => "bool",
            Transform::Not => "not",
            Transform::Date => "date",
        }
    }

    /// What the transform yields from the given input kinds, or a type error when it can
    /// take none of them.
    pub(crate) fn kinds(&self, input: Kinds) -> Result<Kinds, String> {
        let (accepts, output) = match self {
            Transform::Lower
            | Transform::Upper
            | Transform::Trim
            | Transform::RegexReplace { .. } => {
                let scalars = if input.intersects(TEXTUAL.and(SCALARS)) {
                    Kinds::TEXT
                } else {
                    Kinds::NONE
                };
                let lists = if input.intersects(Kinds::LIST) {
                    Kinds::LIST
                } else {
                    Kinds::NONE
                };
                (TEXTUAL, scalars.or(lists))
            }
            Transform::Split(_) => (
                Kinds::TEXT
                    .or(Kinds::NUMBER)
                    .or(Kinds::DATE)
                    .or(Kinds::LIST),
                Kinds::LIST,
            ),
            Transform::Join(_) => (Kinds::LIST.or(Kinds::TEXT).or(Kinds::NUMBER), Kinds::TEXT),
            Transform::Bool | Transform::Not => {
                (Kinds::TEXT.or(Kinds::NUMBER).or(Kinds::BOOL), Kinds::BOOL)
            }
            Transform::Date => (Kinds::TEXT.or(Kinds::NUMBER).or(Kinds::DATE), Kinds::DATE),
        };
        if input.intersects(accepts) {
            Ok(output)
        } else {
            Err(format!(
                "type mismatch: `{}` cannot take {}",
                self.name(),
                input.describe()
            ))
        }
    }

    /// Applies the transform; the error says what was wrong with the value, without the
    /// value itself, which may be personal data.
    pub(crate) fn apply(&self, value: FieldValue) -> Result<FieldValue, String> {
        if value.is_empty() {
            return Ok(value);
        }
        match self {
            Transform::Lower => Ok(map_text(value, |s| Ok(s.to_lowercase()))?),
            Transform::Upper => Ok(map_text(value, |s| Ok(s.to_uppercase()))?),
            Transform::Trim => Ok(map_text(value, |s| Ok(s.trim().to_owned()))?),
            Transform::RegexReplace { regex, replacement } => map_text(value, |s| {
                regex.replace_all(&s, replacement).map_err(|_| {
                    "regex_replace gave up: the pattern needs too many steps on this value"
                        .to_owned()
                })
            }),
            Transform::Split(sep) => {
                let pieces = match value {
                    FieldValue::TextList(items) => items,
                    other => scalar_text(&other).into_iter().collect(),
                };
                Ok(FieldValue::TextList(
                    pieces.iter().flat_map(|p| split(p, sep)).collect(),
                ))
            }
            Transform::Join(sep) => Ok(match value {
                FieldValue::TextList(items) => FieldValue::Text(items.join(sep)),
                other => scalar_text(&other).map_or(FieldValue::Null, FieldValue::Text),
            }),
            Transform::Bool | Transform::Not => {
                let b = coerce_bool(&value)
                    .ok_or_else(|| format!("the {} value is not a boolean", kind_name(&value)))?;
                Ok(FieldValue::Boolean(b != matches!(self, Transform::Not)))
            }
            Transform::Date => {
                let converted = match &value {
                    FieldValue::Text(s) => date::from_text(s),
                    FieldValue::Number(n) => date::from_epoch(*n),
                    _ => None,
                };
                converted.map(FieldValue::Text).ok_or_else(|| {
                    format!(
                        "the {} value is not a date (YYYY-MM-DD, YYYY-MM-DD HH:MM:SS, RFC 3339 \
                         or Unix seconds)",
                        kind_name(&value)
                    )
                })
            }
        }
    }

    /// Undoes the transform for the reverse mapping, where it can be undone: `split` and
    /// `join` invert each other and `not` negates back. Case and whitespace changes and
    /// `regex_replace` cannot be undone and are skipped; `bool` and `date` leave the
    /// boolean or dateTime as it is, since that is the nearest field form.
    pub(crate) fn reverse(&self, value: FieldValue) -> FieldValue {
        match (self, value) {
            (Transform::Split(sep), FieldValue::TextList(items)) => {
                FieldValue::Text(items.join(sep))
            }
            (Transform::Join(sep), FieldValue::Text(s)) => FieldValue::TextList(split(&s, sep)),
            (Transform::Not, v) => match coerce_bool(&v) {
                Some(b) => FieldValue::Boolean(!b),
                None => v,
            },
            (Transform::Bool, v) => coerce_bool(&v).map_or(v, FieldValue::Boolean),
            (_, v) => v,
        }
    }
}

fn kind_name(value: &FieldValue) -> &'static str {
    match value {
        FieldValue::Null => "empty",
        FieldValue::Boolean(_) => "boolean",
        FieldValue::Number(_) => "number",
        FieldValue::Text(_) => "text",
        FieldValue::TextList(_) => "list",
    }
}

/// Splits at a separator, trimming the pieces and dropping empty ones: `"a, b,"` is
/// `["a", "b"]`, which is what a person typing a list means.
fn split(text: &str, sep: &str) -> Vec<String> {
    text.split(sep)
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

fn map_text(
    value: FieldValue,
    f: impl Fn(String) -> Result<String, String>,
) -> Result<FieldValue, String> {
    match value {
        FieldValue::TextList(items) => Ok(FieldValue::TextList(
            items.into_iter().map(&f).collect::<Result<_, _>>()?,
        )),
        other => match scalar_text(&other) {
            Some(text) => Ok(FieldValue::Text(f(text)?)),
            None => Ok(other),
        },
    }
}

/// The start of a pattern for error messages: at most 80 characters, with `…` when cut.
fn shorten(pattern: &str) -> String {
    const SHOWN_CHARS: usize = 80;
    let mut shown: String = pattern.chars().take(SHOWN_CHARS).collect();
    if pattern.chars().nth(SHOWN_CHARS).is_some() {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(config: serde_json::Value) -> Transform {
        Transform::compile(&serde_json::from_value(config).unwrap()).unwrap()
    }

    fn text(s: &str) -> FieldValue {
        FieldValue::Text(s.to_owned())
    }

    fn list(items: &[&str]) -> FieldValue {
        FieldValue::TextList(items.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn apply_table() {
        let re = json!({"regex_replace": {"pattern": "^B-(\\d+)$", "replacement": "$1"}});
        let cases: Vec<(serde_json::Value, FieldValue, Result<FieldValue, ()>)> = vec![
            (json!("lower"), text("ÄbC"), Ok(text("äbc"))),
            (json!("lower"), list(&["A", "B"]), Ok(list(&["a", "b"]))),
            (json!("upper"), text("straße"), Ok(text("STRASSE"))),
            (json!("upper"), FieldValue::Number(3.0), Ok(text("3"))),
            (json!("trim"), text("  x y \t"), Ok(text("x y"))),
            (json!("trim"), FieldValue::Null, Ok(FieldValue::Null)),
            (
                json!({"split": ","}),
                text("a, b,,c "),
                Ok(list(&["a", "b", "c"])),
            ),
            (
                json!({"split": ","}),
                list(&["a,b", "c"]),
                Ok(list(&["a", "b", "c"])),
            ),
            (json!({"split": ","}), text(""), Ok(text(""))),
            (json!({"join": "|"}), list(&["a", "b"]), Ok(text("a|b"))),
            (json!({"join": "|"}), text("a"), Ok(text("a"))),
            (re.clone(), text("B-0042"), Ok(text("0042"))),
            (re, list(&["B-1", "C-2"]), Ok(list(&["1", "C-2"]))),
            (json!("bool"), text("Yes"), Ok(FieldValue::Boolean(true))),
            (
                json!("bool"),
                FieldValue::Number(0.0),
                Ok(FieldValue::Boolean(false)),
            ),
            (json!("bool"), text("maybe"), Err(())),
            (json!("bool"), list(&["1"]), Err(())),
            (json!("bool"), text(""), Ok(text(""))),
            (json!("not"), text("1"), Ok(FieldValue::Boolean(false))),
            (
                json!("not"),
                FieldValue::Boolean(false),
                Ok(FieldValue::Boolean(true)),
            ),
            (json!("not"), text("perhaps"), Err(())),
            (
                json!("date"),
                text("2024-03-01"),
                Ok(text("2024-03-01T00:00:00Z")),
            ),
            (
                json!("date"),
                text("2024-03-01 10:11:12"),
                Ok(text("2024-03-01T10:11:12Z")),
            ),
            (
                json!("date"),
                FieldValue::Number(0.0),
                Ok(text("1970-01-01T00:00:00Z")),
            ),
            (
                json!("date"),
                text("1700000000"),
                Ok(text("2023-11-14T22:13:20Z")),
            ),
            (json!("date"), text("01/03/2024"), Err(())),
            (json!("date"), FieldValue::Boolean(true), Err(())),
        ];
        for (config, input, expected) in cases {
            let got = t(config.clone()).apply(input.clone()).map_err(|_| ());
            assert_eq!(got, expected, "{config} on {input:?}");
        }
    }

    #[test]
    fn errors_do_not_leak_the_value() {
        let err = t(json!("bool")).apply(text("secret-ish")).unwrap_err();
        assert!(!err.contains("secret"), "{err}");
        let err = t(json!("date")).apply(text("secret-ish")).unwrap_err();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn hostile_regex_fails_instead_of_hanging() {
        let tr = t(json!({"regex_replace": {"pattern": "^(a|aa)*$", "replacement": ""}}));
        let err = tr.apply(text(&format!("{}b", "a".repeat(60)))).unwrap_err();
        assert!(err.contains("too many steps"), "{err}");
    }

    #[test]
    fn compile_errors() {
        let cases = [
            json!("titlecase"),
            json!({"split": ""}),
            json!({"regex_replace": {"pattern": "(a", "replacement": ""}}),
            json!({"regex_replace": {"pattern": "(a)", "replacement": "$2"}}),
        ];
        for config in cases {
            let parsed: TransformConfig = serde_json::from_value(config.clone()).unwrap();
            assert!(Transform::compile(&parsed).is_err(), "{config}");
        }
    }

    #[test]
    fn typing_table() {
        let cases: Vec<(serde_json::Value, Kinds, Option<Kinds>)> = vec![
            (
                json!("lower"),
                Kinds::ANY,
                Some(Kinds::TEXT.or(Kinds::LIST)),
            ),
            (json!("lower"), Kinds::TEXT, Some(Kinds::TEXT)),
            (json!("lower"), Kinds::LIST, Some(Kinds::LIST)),
            (json!({"split": ","}), Kinds::TEXT, Some(Kinds::LIST)),
            (json!({"split": ","}), Kinds::BOOL, None),
            (json!({"join": ","}), Kinds::LIST, Some(Kinds::TEXT)),
            (json!({"join": ","}), Kinds::BOOL, None),
            (json!("bool"), Kinds::TEXT, Some(Kinds::BOOL)),
            (json!("bool"), Kinds::LIST, None),
            (json!("not"), Kinds::BOOL, Some(Kinds::BOOL)),
            (json!("date"), Kinds::NUMBER, Some(Kinds::DATE)),
            (json!("date"), Kinds::BOOL, None),
            (json!("date"), Kinds::LIST, None),
        ];
        for (config, input, expected) in cases {
            assert_eq!(
                t(config.clone()).kinds(input).ok(),
                expected,
                "{config} on {input:?}"
            );
        }
    }

    #[test]
    fn reverse_table() {
        let cases = vec![
            (json!({"split": ","}), list(&["a", "b"]), text("a,b")),
            (json!({"join": ";"}), text("a; b"), list(&["a", "b"])),
            (
                json!("not"),
                FieldValue::Boolean(true),
                FieldValue::Boolean(false),
            ),
            (
                json!("bool"),
                FieldValue::Boolean(true),
                FieldValue::Boolean(true),
            ),
            (json!("lower"), text("abc"), text("abc")),
            (
                json!("date"),
                text("2024-01-01T00:00:00Z"),
                text("2024-01-01T00:00:00Z"),
            ),
        ];
        for (config, input, expected) in cases {
            assert_eq!(t(config.clone()).reverse(input), expected, "{config}");
        }
    }
}
