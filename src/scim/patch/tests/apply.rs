//! Tests of `apply`: what Entra ID and Okta send, the RFC's examples, errors, and the
//! rules for removal, nulls and `primary`.

use serde_json::json;

use super::*;

#[test]
fn entra_fixtures() {
    let mut u = user();
    let r = request(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "active", "value": "False"}]
    }));
    assert!(r.apply_to(&mut u).is_ok());
    assert_eq!(u["active"], json!(false));
    let u = applied(
        u,
        json!([{"op": "Replace", "path": "active", "value": "TRUE"}]),
    );
    assert_eq!(u["active"], json!(true));
    assert_eq!(
        failure(
            &u,
            json!([{"op": "Replace", "path": "active", "value": "maybe"}])
        )
        .scim_type(),
        "invalidValue"
    );

    // Add on a filter that matches: sets the sub-attribute.
    let v = applied(
        user(),
        json!([{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "x@y.com"}]),
    );
    assert_eq!(v["emails"][0]["value"], json!("x@y.com"));
    assert_eq!(v["emails"].as_array().map(Vec::len), Some(2));
    // Add on a filter that matches nothing: builds the value from the filter.
    let mut bare = user();
    if let Some(o) = bare.as_object_mut() {
        o.remove("emails");
    }
    let v = applied(
        bare,
        json!([{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "x@y.com"}]),
    );
    assert_eq!(v["emails"], json!([{"type": "work", "value": "x@y.com"}]));

    let v = applied(
        user(),
        json!([{"op": "Replace", "path": "name.givenName", "value": "Bob"}]),
    );
    assert_eq!(
        v["name"],
        json!({"givenName": "Bob", "familyName": "Jensen"})
    );

    let v = applied(
        group(),
        json!([{"op": "Remove", "path": "members", "value": [{"value": "2819c223-7f76-453a-919d-413861904646"}]}]),
    );
    assert_eq!(
        v["members"],
        json!([{"value": "902c246b-6245-4190-8e05-00816be7344a", "display": "Mandy Pepperidge"}])
    );
    let v = applied(
        v,
        json!([{"op": "Remove", "path": "members", "value": [{"value": "902c246b-6245-4190-8e05-00816be7344a"}]}]),
    );
    assert!(v.get("members").is_none());
}

#[test]
fn okta_fixtures() {
    let mut u = user();
    let r = request(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": false}}]
    }));
    assert!(r.apply_to(&mut u).is_ok());
    assert_eq!(u["active"], json!(false));

    let g = applied(
        group(),
        json!([{"op": "add", "path": "members", "value": [{"value": "00u1", "display": "a@b.c"}]}]),
    );
    assert_eq!(g["members"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        g["members"][2],
        json!({"value": "00u1", "display": "a@b.c"})
    );
    // Adding the same member again does not duplicate it.
    let g = applied(
        g,
        json!([{"op": "add", "path": "members", "value": [{"value": "00u1"}]}]),
    );
    assert_eq!(g["members"].as_array().map(Vec::len), Some(3));
    // A group without members gets the attribute.
    let mut empty = group();
    if let Some(o) = empty.as_object_mut() {
        o.remove("members");
    }
    let g = applied(
        empty,
        json!([{"op": "add", "path": "members", "value": [{"value": "00u1", "display": "a@b.c"}]}]),
    );
    assert_eq!(g["members"], json!([{"value": "00u1", "display": "a@b.c"}]));
}

#[test]
fn no_path_values_with_path_keys() {
    let v = applied(
        user(),
        json!([{"op": "replace", "value": {
            "name.givenName": "X",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Y",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value": "M",
            "emails[type eq \"home\"].value": "h@x.org",
            "Active": "false"
        }}]),
    );
    assert_eq!(v["name"]["givenName"], json!("X"));
    assert_eq!(
        v[ENTERPRISE],
        json!({"department": "Y", "manager": {"value": "M"}})
    );
    assert_eq!(
        v["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE])
    );
    assert_eq!(v["emails"][1]["value"], json!("h@x.org"));
    assert_eq!(v["active"], json!(false));
    // A whole extension object as a key, and as a path.
    let v = applied(
        v,
        json!([
            {"op": "add", "value": {ENTERPRISE: {"employeeNumber": "42"}}},
            {"op": "replace", "path": ENTERPRISE, "value": {"costCenter": "7"}}
        ]),
    );
    assert_eq!(v[ENTERPRISE]["employeeNumber"], json!("42"));
    assert_eq!(v[ENTERPRISE]["costCenter"], json!("7"));
    assert_eq!(v[ENTERPRISE]["department"], json!("Y"));
    // Removing the extension drops it and its schema.
    let v = applied(v, json!([{"op": "remove", "path": ENTERPRISE}]));
    assert!(v.get(ENTERPRISE).is_none());
    assert_eq!(
        v["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User"])
    );
    // Core-qualified names are top-level.
    let v = applied(
        v,
        json!([{"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:userName", "value": "bj"}]),
    );
    assert_eq!(v["userName"], json!("bj"));
}

#[test]
fn case_insensitive_names() {
    let v = applied(
        user(),
        json!([
            {"op": "replace", "path": "USERNAME", "value": "b"},
            {"op": "replace", "path": "Name.GIVENNAME", "value": "B"},
            {"op": "replace", "path": "EMAILS[TYPE EQ \"WORK\"].VALUE", "value": "w@x"}
        ]),
    );
    assert_eq!(v["userName"], json!("b"));
    assert_eq!(v["name"]["givenName"], json!("B"));
    assert_eq!(v["emails"][0]["value"], json!("w@x"));
    assert!(v.get("USERNAME").is_none());
}

#[test]
fn rfc_examples() {
    // §3.5.2.1: add members.
    let g = applied(
        group(),
        json!([{"op": "add", "path": "members", "value": [{
            "display": "Babs Jensen",
            "$ref": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646",
            "value": "2819c223-7f76-453a-919d-413861904646"
        }]}]),
    );
    assert_eq!(g["members"].as_array().map(Vec::len), Some(2));
    assert!(g["members"][0].get("$ref").is_some());
    // §3.5.2.1: add with no path.
    let u = applied(
        user(),
        json!([{"op": "add", "value": {
            "emails": [{"value": "babs@jensen.org", "type": "home"}, {"value": "b@o.org", "type": "other"}],
            "nickname": "Babs"
        }}]),
    );
    assert_eq!(u["emails"].as_array().map(Vec::len), Some(3));
    assert_eq!(u["nickname"], json!("Babs"));
    // §3.5.2.2: remove a member by filter, then all members.
    let g = applied(
        group(),
        json!([{"op": "remove", "path": "members[value eq \"2819c223-7f76-453a-919d-413861904646\"]"}]),
    );
    assert_eq!(g["members"].as_array().map(Vec::len), Some(1));
    let g = applied(g, json!([{"op": "remove", "path": "members"}]));
    assert!(g.get("members").is_none());
    // §3.5.2.2: remove with a compound filter.
    let u = applied(
        user(),
        json!([{"op": "remove", "path": "emails[type eq \"work\" and value ew \"example.com\"]"}]),
    );
    assert_eq!(
        u["emails"],
        json!([{"value": "babs@jensen.org", "type": "home"}])
    );
    // §3.5.2.2: replace all members by remove + add, and by replace.
    let new_members = json!([{"display": "James Smith", "value": "08e1d05d"}]);
    let a = applied(
        group(),
        json!([{"op": "remove", "path": "members"}, {"op": "add", "path": "members", "value": new_members}]),
    );
    let b = applied(
        group(),
        json!([{"op": "replace", "path": "members", "value": new_members}]),
    );
    assert_eq!(a["members"], new_members);
    assert_eq!(a, b);
    // §3.5.2.3: replace a whole value selected by filter.
    let addr = json!({
        "type": "work", "streetAddress": "911 Universal City Plaza",
        "locality": "Hollywood", "region": "CA", "postalCode": "91608",
        "country": "US", "formatted": "911 Universal City Plaza\nHollywood, CA 91608 US",
        "primary": true
    });
    let u = applied(
        user(),
        json!([{"op": "replace", "path": "addresses[type eq \"work\"]", "value": addr}]),
    );
    assert_eq!(u["addresses"][0], addr);
    assert_eq!(u["addresses"][1]["type"], json!("home"));
    // §3.5.2.3: replace a sub-attribute of a value selected by filter.
    let u = applied(
        user(),
        json!([{"op": "replace", "path": "addresses[type eq \"work\"].streetAddress", "value": "1010 Broadway Ave"}]),
    );
    assert_eq!(
        u["addresses"][0]["streetAddress"],
        json!("1010 Broadway Ave")
    );
    assert_eq!(u["addresses"][0]["locality"], json!("Hollywood"));
    // §3.5.2.3: replace with no path.
    let u = applied(
        user(),
        json!([{"op": "replace", "value": {
            "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}],
            "nickName": "Babs"
        }}]),
    );
    assert_eq!(
        u["emails"],
        json!([{"value": "bjensen@example.com", "type": "work", "primary": true}])
    );
    assert_eq!(u["nickName"], json!("Babs"));
    assert_eq!(u["name"]["givenName"], json!("Barbara"));
}

#[test]
fn errors() {
    let u = user();
    let cases = [
        (json!([{"op": "remove"}]), "noTarget"),
        (json!([{"op": "remove", "path": ""}]), "noTarget"),
        (
            json!([{"op": "replace", "path": "emails[type eq \"other\"].value", "value": "x"}]),
            "noTarget",
        ),
        (
            json!([{"op": "remove", "path": "emails[type eq \"other\"]"}]),
            "noTarget",
        ),
        (
            json!([{"op": "add", "path": "emails[type eq \"x\" or type eq \"y\"].value", "value": "x"}]),
            "noTarget",
        ),
        (
            json!([{"op": "replace", "path": "id", "value": "other"}]),
            "mutability",
        ),
        (json!([{"op": "remove", "path": "meta"}]), "mutability"),
        (
            json!([{"op": "replace", "path": "meta.version", "value": "x"}]),
            "mutability",
        ),
        (
            json!([{"op": "add", "path": "schemas", "value": ["urn:x"]}]),
            "mutability",
        ),
        (
            json!([{"op": "replace", "value": {"id": "other"}}]),
            "mutability",
        ),
        (
            json!([{"op": "replace", "path": "emails[type eq", "value": "x"}]),
            "invalidPath",
        ),
        (
            json!([{"op": "replace", "path": "1abc", "value": "x"}]),
            "invalidPath",
        ),
        (
            json!([{"op": "replace", "path": "userName.first", "value": "x"}]),
            "invalidPath",
        ),
        (
            json!([{"op": "replace", "path": "name[givenName eq \"B\"]", "value": {}}]),
            "invalidPath",
        ),
        (
            json!([{"op": "replace", "value": {"bad key": 1}}]),
            "invalidPath",
        ),
        (json!([{"op": "replace", "path": "title"}]), "invalidValue"),
        (json!([{"op": "replace", "value": "x"}]), "invalidValue"),
        (
            json!([{"op": "replace", "path": "title", "value": "ok"}, {"op": "remove"}]),
            "noTarget",
        ),
    ];
    for (o, scim_type) in cases {
        let e = failure(&u, o.clone());
        assert_eq!(e.scim_type(), scim_type, "{o}: {e}");
        assert_eq!(e.status(), 400);
    }
    // Echoing immutable values unchanged is accepted.
    let v = applied(
        u.clone(),
        json!([{"op": "replace", "value": {"id": "2819c223", "schemas": u["schemas"], "title": "T"}}]),
    );
    assert_eq!(v["title"], json!("T"));
    let mut not_object = json!([1]);
    assert_eq!(
        apply(&mut not_object, &[]).err().map(|e| e.scim_type()),
        Some("invalidSyntax")
    );
    let e = failure(
        &u,
        json!([{"op": "replace", "path": "emails[type eq \"x\"].value", "value": "x"}]),
    );
    assert!(e.message.contains("operation 0"), "{e}");
}

#[test]
fn removals_and_nulls() {
    let u = applied(
        user(),
        json!([
            {"op": "remove", "path": "name.givenName"},
            {"op": "remove", "path": "emails[type eq \"work\"].primary"},
            {"op": "remove", "path": "nickName"},
            {"op": "replace", "path": "userName", "value": null},
            {"op": "add", "path": "title", "value": null}
        ]),
    );
    assert_eq!(u["name"], json!({"familyName": "Jensen"}));
    assert!(u["emails"][0].get("primary").is_none());
    assert!(u.get("userName").is_none());
    let u = applied(u, json!([{"op": "remove", "path": "name.familyName"}]));
    assert!(
        u.get("name").is_none(),
        "an emptied complex attribute goes away"
    );
    let u = applied(
        u,
        json!([{"op": "remove", "path": "emails[type eq \"work\"]"}, {"op": "remove", "path": "emails[type eq \"home\"]"}]),
    );
    assert!(u.get("emails").is_none());
    // Removing an extension's last attribute removes the extension and its URN.
    let path = format!("{ENTERPRISE}:department");
    let u = applied(u, json!([{"op": "add", "path": path, "value": "Sales"}]));
    assert_eq!(u[ENTERPRISE]["department"], json!("Sales"));
    let u = applied(u, json!([{"op": "remove", "path": path}]));
    assert!(u.get(ENTERPRISE).is_none());
    assert_eq!(
        u["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User"])
    );
}

#[test]
fn primary_stays_unique() {
    let u = applied(
        user(),
        json!([{"op": "add", "path": "emails", "value": {"value": "n@x", "type": "other", "primary": true}}]),
    );
    assert_eq!(u["emails"][0]["primary"], json!(false));
    assert_eq!(u["emails"][2]["primary"], json!(true));
    let u = applied(
        u,
        json!([{"op": "replace", "path": "emails[type eq \"work\"].primary", "value": true}]),
    );
    assert_eq!(u["emails"][0]["primary"], json!(true));
    assert_eq!(u["emails"][2]["primary"], json!(false));
    // Re-adding an existing value merges into it.
    let u = applied(
        u,
        json!([{"op": "add", "path": "emails", "value": [{"value": "babs@jensen.org", "type": "HOME", "display": "Babs"}]}]),
    );
    assert_eq!(u["emails"].as_array().map(Vec::len), Some(3));
    assert_eq!(u["emails"][1]["display"], json!("Babs"));
}

/// Property tests; proptest is a native-only dev-dependency.
#[cfg(not(target_arch = "wasm32"))]
mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn apply_never_panics(
        op in prop::sample::select(vec!["add", "remove", "replace"]),
        p in prop::option::of("[a-zA-Z.:\\[\\]\" ]{0,20}"),
        value in prop::option::of(prop_oneof![
            Just(json!(null)), Just(json!("x")), Just(json!([{"value": "x"}])),
            Just(json!({"a": 1, "name.givenName": "y"}))
        ]),
    ) {
        let mut u = user();
        let o = PatchOperation { op: match op { "add" => PatchOpKind::Add, "remove" => PatchOpKind::Remove, _ => PatchOpKind::Replace }, path: p, value };
        let _ = apply(&mut u, &[o]);
    }
    }
}
