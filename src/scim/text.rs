//! A JSON value as text, for a body, an answer or a stored resource: the same bytes as
//! `serde_json::to_string`, written for the component's sake.
//!
//! Two things made serialising a third of `map-user` in the component (`perf` on a build
//! that keeps names), where native code hardly notices them:
//! - `Value`'s `Display` goes through `core::fmt`, a dynamic `write_str` call for every key,
//!   value and punctuation mark;
//! - `serde_json`'s string escaper takes each byte with a `split_at` call, which is not
//!   inlined in a size-optimised build.
//!
//! This writer pushes into the `String` directly and copies each run of bytes that needs no
//! escape at once. A property test holds it to `serde_json`'s bytes.

use serde_json::Value;
use std::fmt::Write as _;

/// `value` as compact JSON text, byte for byte what `serde_json::to_string` writes (object
/// keys in the map's order, numbers as `serde_json` prints them).
pub fn json(value: &Value) -> String {
    let mut out = String::with_capacity(128);
    write_value(&mut out, value);
    out
}

/// Appends `value` to `out` as compact JSON text.
fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        // `Number`'s `Display` is the text serde_json serialises (itoa, and the shortest
        // round-trip form of a float); writing to a `String` cannot fail.
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

/// Appends `s` as a JSON string literal, escaped as serde_json escapes: `"` and `\`, the
/// short forms `\b \t \n \f \r`, and other control characters as `\u00xx` (lowercase hex).
/// A SCIM filter's string values are JSON string literals too (see `filter::quote`).
pub fn write_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let bytes = s.as_bytes();
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Every byte that ends a run is ASCII, so the run is whole characters.
        out.push_str(&s[run_start..i]);
        if short.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(short);
        }
        run_start = i + 1;
    }
    out.push_str(&s[run_start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::json;
    use serde_json::{Value, json as value};

    #[test]
    fn writes_what_serde_json_writes() {
        let v = value!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "b\u{e9}a \"q\" \\ /\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}\u{2028}😀",
            "n": [0, 1, -2, -2.5, 1e300, 5e-324, 0.1, u64::MAX, i64::MIN, null, true, false],
            "name": {"givenName": "B\u{e9}a", "empty": {}, "none": []},
            "": "",
        });
        assert_eq!(json(&v), serde_json::to_string(&v).unwrap());
        assert_eq!(json(&Value::Null), "null");
        assert_eq!(json(&value!("\u{0}")), r#""\u0000""#);
    }

    /// Property tests; proptest is a native-only dev-dependency.
    #[cfg(not(target_arch = "wasm32"))]
    mod props {
        use super::json;
        use proptest::prelude::*;
        use serde_json::{Map, Number, Value};

        fn any_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|n| Value::Number(n.into())),
                any::<u64>().prop_map(|n| Value::Number(n.into())),
                any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
                any::<String>().prop_map(Value::String),
                "[\\x00-\\x7f]{0,12}".prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::vec((any::<String>(), inner), 0..6)
                        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2048))]

            #[test]
            fn any_value_is_written_as_serde_json_writes_it(v in any_value()) {
                prop_assert_eq!(json(&v), serde_json::to_string(&v).unwrap());
            }
        }
    }
}
