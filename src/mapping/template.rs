//! Template rules: text with `{field}` placeholders, such as `"{field_first_name}
//! {field_last_name}"`. `{{` and `}}` stand for literal braces.

use super::value::{self, check_field_name, scalar_text};
use crate::user::{CmsUser, FieldValue};

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(String),
}

impl Template {
    /// Parses a template; the error says what is wrong and where.
    pub(crate) fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().is_some_and(|&(_, n)| n == '{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().is_some_and(|&(_, n)| n == '}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => {
                    return Err(format!(
                        "template: unmatched '}}' at position {at} (write '}}}}' for a brace)"
                    ));
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for (_, n) in chars.by_ref() {
                        if n == '}' {
                            closed = true;
                            break;
                        }
                        if n == '{' {
                            return Err(format!("template: '{{' inside the placeholder at {at}"));
                        }
                        name.push(n);
                    }
                    if !closed {
                        return Err(format!("template: unclosed placeholder at position {at}"));
                    }
                    let name = name.trim().to_owned();
                    check_field_name(&name)
                        .map_err(|e| format!("template: placeholder at position {at}: {e}"))?;
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Field(name));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Template { pieces })
    }

    /// Fills in the placeholders. Lists are joined with `", "`.
    ///
    /// When the template has placeholders and every one of them is empty, the result is
    /// empty rather than the bare literal text, so `"{first} {last}"` for a user with no
    /// names yields no `displayName` instead of `" "`.
    pub(crate) fn render(&self, user: &CmsUser) -> FieldValue {
        let mut out = String::new();
        let mut placeholders = 0;
        let mut filled = 0;
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(name) => {
                    placeholders += 1;
                    let value = value::field(user, name);
                    let text = match &value {
                        FieldValue::TextList(items) => items.join(", "),
                        other => scalar_text(other).unwrap_or_default(),
                    };
                    if !text.is_empty() {
                        filled += 1;
                    }
                    out.push_str(&text);
                }
            }
        }
        if placeholders > 0 && filled == 0 {
            FieldValue::Null
        } else {
            FieldValue::Text(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> CmsUser {
        CmsUser {
            id: "42".into(),
            fields: vec![
                ("first".into(), FieldValue::Text("Ada".into())),
                ("last".into(), FieldValue::Text("Lovelace".into())),
                ("n".into(), FieldValue::Number(3.0)),
                (
                    "roles".into(),
                    FieldValue::TextList(vec!["a".into(), "b".into()]),
                ),
                ("empty".into(), FieldValue::Text(String::new())),
            ],
            active: true,
        }
    }

    #[test]
    fn render_table() {
        let cases: &[(&str, FieldValue)] = &[
            ("{first} {last}", FieldValue::Text("Ada Lovelace".into())),
            ("{ first }", FieldValue::Text("Ada".into())),
            ("{{{first}}}", FieldValue::Text("{Ada}".into())),
            ("#{n} {roles}", FieldValue::Text("#3 a, b".into())),
            ("{@id}/{@active}", FieldValue::Text("42/true".into())),
            ("{first} {missing}", FieldValue::Text("Ada ".into())),
            ("{empty} {missing}", FieldValue::Null),
            ("literal only", FieldValue::Text("literal only".into())),
            ("", FieldValue::Text(String::new())),
        ];
        for (template, expected) in cases {
            let t = Template::parse(template).unwrap();
            assert_eq!(&t.render(&user()), expected, "{template}");
        }
    }

    #[test]
    fn parse_errors() {
        for template in ["{first", "first}", "{}", "{ }", "{a{b}}", "{@uid}"] {
            assert!(Template::parse(template).is_err(), "{template}");
        }
    }
}
