//! Tests of `diff`: the shapes of the operations it produces, and that applying them
//! reaches the target.

use serde_json::{Map, json};

use super::*;

#[test]
fn diff_shapes() {
    assert!(diff(&user(), &user()).is_empty());
    let mut new = user();
    new["userName"] = json!("bj");
    new["name"]["givenName"] = json!("Babs");
    new["name"]["familyName"] = Value::Null;
    new["emails"] = json!([
        {"value": "w@example.com", "type": "work", "primary": true},
        {"value": "o@example.com", "type": "other"}
    ]);
    new["title"] = json!("Guide");
    new["meta"] = json!({"version": "W/\"2\""});
    new["id"] = json!("changed");
    if let Some(o) = new.as_object_mut() {
        o.remove("addresses");
        o.insert(ENTERPRISE.into(), json!({"department": "Sales"}));
    }
    let got = diff(&user(), &new);
    let want = [
        PatchOperation::replace("userName", json!("bj")),
        PatchOperation::replace("name.givenName", json!("Babs")),
        PatchOperation::remove("name.familyName"),
        PatchOperation::remove("emails[type eq \"home\"]"),
        PatchOperation::replace("emails[type eq \"work\"].value", json!("w@example.com")),
        PatchOperation::add(
            "emails",
            json!([{"value": "o@example.com", "type": "other"}]),
        ),
        PatchOperation::replace("title", json!("Guide")),
        PatchOperation::replace(format!("{ENTERPRISE}:department"), json!("Sales")),
        // Only our typed values go; others the server has stay.
        PatchOperation::remove("addresses[type eq \"work\"]"),
        PatchOperation::remove("addresses[type eq \"home\"]"),
    ];
    let mut got_sorted: Vec<String> = got.iter().map(|o| format!("{o:?}")).collect();
    let mut want_sorted: Vec<String> = want.iter().map(|o| format!("{o:?}")).collect();
    got_sorted.sort();
    want_sorted.sort();
    assert_eq!(got_sorted, want_sorted);
    let result = applied(user(), serde_json::to_value(&got).unwrap_or_default());
    assert_eq!(normalize_for_compare(&result), normalize_for_compare(&new));
    assert_eq!(
        result["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE])
    );

    // Untyped multi-valued attributes are replaced whole.
    let g2 = {
        let mut g = group();
        g["members"] = json!([{"value": "a"}]);
        g
    };
    assert_eq!(
        diff(&group(), &g2),
        vec![PatchOperation::replace("members", json!([{"value": "a"}]))]
    );
    // Removing the extension removes its attributes one by one, never the whole URN.
    let mut with_ext = user();
    with_ext[ENTERPRISE] = json!({"department": "Sales"});
    assert_eq!(
        diff(&with_ext, &user()),
        vec![PatchOperation::remove(format!("{ENTERPRISE}:department"))]
    );
    // Shape changes clear the attribute first.
    for (o, n) in [
        (json!({"x": [1, 2]}), json!({"x": {"a": 1}})),
        (json!({"x": {"a b": 1, "c": 2}}), json!({"x": {"a b": 3}})),
        (json!({"x": "s"}), json!({"x": [1]})),
    ] {
        let ops = diff(&o, &n);
        let got = applied(o.clone(), serde_json::to_value(&ops).unwrap_or_default());
        assert_eq!(got, n, "{o} -> {n} via {ops:?}");
    }
    // A type containing a quote is escaped in the filter.
    let old = json!({"emails": [{"type": "a\"b", "value": "1"}]});
    let new = json!({"emails": [{"type": "a\"b", "value": "2"}]});
    assert_eq!(
        diff(&old, &new),
        vec![PatchOperation::replace(
            "emails[type eq \"a\\\"b\"].value",
            json!("2")
        )]
    );
    assert_eq!(
        normalize_for_compare(&applied(
            old,
            serde_json::to_value(diff(
                &json!({"emails": [{"type": "a\"b", "value": "1"}]}),
                &new
            ))
            .unwrap_or_default()
        )),
        normalize_for_compare(&new)
    );
}

/// Drops what `diff` ignores and what SCIM treats as unassigned, and sorts arrays,
/// which SCIM treats as unordered.
fn normalize_for_compare(v: &Value) -> Value {
    fn norm(v: &Value) -> Option<Value> {
        match v {
            Value::Object(o) => {
                let m: Map<String, Value> = o
                    .iter()
                    .filter_map(|(k, v)| norm(v).map(|v| (k.clone(), v)))
                    .collect();
                (!m.is_empty()).then_some(Value::Object(m))
            }
            Value::Array(a) => {
                let mut items: Vec<Value> = a.iter().filter_map(norm).collect();
                items.sort_by_key(|x| x.to_string());
                (!items.is_empty()).then_some(Value::Array(items))
            }
            Value::String(s) if s.is_empty() => None,
            Value::Null => None,
            other => Some(other.clone()),
        }
    }
    let mut out = norm(v).unwrap_or(json!({}));
    if let Some(o) = out.as_object_mut() {
        for k in ["schemas", "id", "meta"] {
            o.remove(k);
        }
    }
    out
}

/// Property tests; proptest is a native-only dev-dependency.
#[cfg(not(target_arch = "wasm32"))]
mod props {
    use proptest::prelude::*;

    use super::*;

    fn text() -> impl Strategy<Value = Value> {
        prop_oneof![Just(json!("")), "[a-c\"\\\\ ]{1,3}".prop_map(Value::String),]
    }

    fn opt(s: impl Strategy<Value = Value>) -> impl Strategy<Value = Option<Value>> {
        prop::option::of(s)
    }

    fn typed_list(types: Vec<&'static str>) -> impl Strategy<Value = Value> {
        (
            prop::sample::subsequence(types.clone(), 0..=types.len()),
            prop::collection::vec(text(), types.len()),
            prop::collection::vec(opt(text()), types.len()),
            prop::option::of(0..types.len()),
        )
            .prop_map(|(chosen, values, displays, primary)| {
                let items: Vec<Value> = chosen
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let mut m = Map::new();
                        m.insert("type".into(), json!(t));
                        if let Some(v) = values.get(i) {
                            m.insert("value".into(), v.clone());
                        }
                        if let Some(Some(d)) = displays.get(i) {
                            m.insert("display".into(), d.clone());
                        }
                        if primary == Some(i) {
                            m.insert("primary".into(), json!(true));
                        }
                        Value::Object(m)
                    })
                    .collect();
                Value::Array(items)
            })
    }

    fn resource() -> impl Strategy<Value = Value> {
        (
            (
                opt(text()),
                opt(any::<bool>().prop_map(Value::Bool)),
                opt(text()),
                opt(text()),
            ),
            opt(
                (opt(text()), opt(text()), opt(text())).prop_map(|(g, f, m)| {
                    let mut o = Map::new();
                    for (k, v) in [("givenName", g), ("familyName", f), ("middleName", m)] {
                        if let Some(v) = v {
                            o.insert(k.into(), v);
                        }
                    }
                    Value::Object(o)
                }),
            ),
            (
                opt(typed_list(vec!["work", "home", "other", "w\"x"])),
                opt(typed_list(vec!["mobile", "work"])),
                opt(prop::collection::vec("[a-c]{1,2}", 0..3).prop_map(|v| {
                    Value::Array(v.into_iter().map(|s| json!({"value": s})).collect())
                })),
            ),
            opt(
                (opt(text()), opt(text()), opt(text())).prop_map(|(d, e, m)| {
                    let mut o = Map::new();
                    if let Some(d) = d {
                        o.insert("department".into(), d);
                    }
                    if let Some(e) = e {
                        o.insert("employeeNumber".into(), e);
                    }
                    if let Some(m) = m {
                        o.insert("manager".into(), json!({"value": m}));
                    }
                    Value::Object(o)
                }),
            ),
        )
            .prop_map(
                |((user_name, active, title, nick), name, (emails, phones, roles), ext)| {
                    let mut o = Map::new();
                    o.insert(
                        "schemas".into(),
                        json!(["urn:ietf:params:scim:schemas:core:2.0:User"]),
                    );
                    o.insert("id".into(), json!("1"));
                    let fields = [
                        ("userName", user_name),
                        ("active", active),
                        ("title", title),
                        ("nickName", nick),
                        ("name", name),
                        ("emails", emails),
                        ("phoneNumbers", phones),
                        ("roles", roles),
                        (ENTERPRISE, ext),
                    ];
                    for (k, v) in fields {
                        if let Some(v) = v {
                            o.insert(k.into(), v);
                        }
                    }
                    Value::Object(o)
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn applying_the_diff_reaches_the_target(old in resource(), new in resource()) {
        let ops = diff(&old, &new);
        let mut result = old.clone();
        let applied = apply(&mut result, &ops);
        prop_assert!(applied.is_ok(), "{:?} for {:?}", applied, ops);
        prop_assert_eq!(
            normalize_for_compare(&result),
            normalize_for_compare(&new),
            "ops: {}", serde_json::to_string(&ops).unwrap_or_default()
        );
        prop_assert!(diff(&new, &new).is_empty());
    }
    }
}
