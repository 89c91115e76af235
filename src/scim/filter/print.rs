//! Writing a SCIM filter: the canonical form that [`Filter`]'s `Display` prints (and that
//! crosses WIT to a host's directory), and the escaping of values for building filters.
//! Both roles use it.

use std::fmt;

use serde_json::Value;

use super::Filter;
use crate::scim::text;

/// A correctly escaped JSON string literal for `value`, for building filters such as
/// `userName eq "<value>"`: quotes, backslashes and control characters are escaped.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    text::write_string(&mut out, value);
    out
}

/// The filter `<path> eq "<value>"`, with the value escaped by [`quote`].
pub fn eq_filter(path: &str, value: &str) -> String {
    format!("{path} eq {}", quote(value))
}

/// A comparison's value as the filter writes it: JSON, strings escaped as [`quote`] does.
fn write_value(f: &mut fmt::Formatter<'_>, v: &Value) -> fmt::Result {
    f.write_str(&text::json(v))
}

fn write_child(f: &mut fmt::Formatter<'_>, child: &Filter, parens: bool) -> fmt::Result {
    if parens {
        write!(f, "({child})")
    } else {
        write!(f, "{child}")
    }
}

/// Prints the canonical form: lowercase keywords, single spaces, string values escaped,
/// and parentheses exactly where precedence and left associativity need them, so that
/// `parse(&f.to_string()) == Ok(f)`.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Compare { path, op, value } => {
                write!(f, "{path} {op} ")?;
                write_value(f, value)
            }
            Filter::Present(path) => write!(f, "{path} pr"),
            Filter::And(l, r) => {
                write_child(f, l, matches!(**l, Filter::Or(..)))?;
                f.write_str(" and ")?;
                write_child(f, r, matches!(**r, Filter::Or(..) | Filter::And(..)))
            }
            Filter::Or(l, r) => {
                write_child(f, l, false)?;
                f.write_str(" or ")?;
                write_child(f, r, matches!(**r, Filter::Or(..)))
            }
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::ValuePath { path, filter } => write!(f, "{path}[{filter}]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scim::filter::parse_valid as f;

    #[test]
    fn quoting_round_trips() {
        let nasty = "a \"quoted\" \\ back\\slash\n\t\u{1} é";
        let built = eq_filter("userName", nasty);
        let Filter::Compare { value, .. } = f(&built) else {
            panic!("{built}");
        };
        assert_eq!(value, json!(nasty));
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote("\u{1f}"), r#""\u001f""#);
        assert_eq!(eq_filter("userName", "bjensen"), r#"userName eq "bjensen""#);
    }

    /// Property tests; proptest is a native-only dev-dependency.
    #[cfg(not(target_arch = "wasm32"))]
    mod props {
        use proptest::prelude::*;

        use super::*;
        use crate::scim::attr::AttrName;
        use crate::scim::filter::{CompareOp, parse};

        fn attr_name() -> impl Strategy<Value = AttrName> {
            let name = "[a-zA-Z][a-zA-Z0-9_-]{0,5}"
                .prop_filter("keyword", |s| !s.eq_ignore_ascii_case("not"));
            (
                prop::option::of(prop::sample::select(vec![
                    "urn:ietf:params:scim:schemas:core:2.0:User".to_string(),
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_string(),
                    "urn:acme:ext".to_string(),
                ])),
                name.clone(),
                prop::option::of(name),
            )
                .prop_map(|(urn, attr, sub_attr)| AttrName {
                    urn,
                    attr,
                    sub_attr,
                })
        }

        fn literal() -> impl Strategy<Value = Value> {
            prop_oneof![
                ".*".prop_map(Value::String),
                any::<i64>().prop_map(Value::from),
                any::<f64>()
                    .prop_filter("finite", |x| x.is_finite())
                    .prop_map(Value::from),
                any::<bool>().prop_map(Value::Bool),
                Just(Value::Null),
            ]
        }

        fn op() -> impl Strategy<Value = CompareOp> {
            prop::sample::select(vec![
                CompareOp::Eq,
                CompareOp::Ne,
                CompareOp::Co,
                CompareOp::Sw,
                CompareOp::Ew,
                CompareOp::Gt,
                CompareOp::Ge,
                CompareOp::Lt,
                CompareOp::Le,
            ])
        }

        fn filter_tree() -> impl Strategy<Value = Filter> {
            let leaf = prop_oneof![
                (attr_name(), op(), literal()).prop_map(|(path, op, value)| Filter::Compare {
                    path,
                    op,
                    value
                }),
                attr_name().prop_map(Filter::Present),
            ];
            leaf.prop_recursive(5, 32, 2, |inner| {
                prop_oneof![
                    (inner.clone(), inner.clone()).prop_map(|(a, b)| a.and(b)),
                    (inner.clone(), inner.clone()).prop_map(|(a, b)| a.or(b)),
                    inner.clone().prop_map(|a| Filter::Not(Box::new(a))),
                    (attr_name(), inner).prop_map(|(mut path, filter)| {
                        path.sub_attr = None;
                        Filter::ValuePath {
                            path,
                            filter: Box::new(filter),
                        }
                    }),
                ]
            })
        }

        proptest! {
            #[test]
            fn display_round_trips(filter in filter_tree()) {
                let printed = filter.to_string();
                prop_assert_eq!(parse(&printed), Ok(filter), "{}", printed);
            }

            #[test]
            fn quote_round_trips(s in ".*") {
                let built = eq_filter("userName", &s);
                let parsed = parse(&built);
                let ok = matches!(parsed, Ok(Filter::Compare { value: Value::String(ref v), .. }) if *v == s);
                prop_assert!(ok, "{}", built);
            }
        }
    }
}
