//! End-to-end tests of the mapping: whole configs compiled, users mapped, resources read
//! back, and the property that direct rules round-trip.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::user::FieldValue;

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const ACME: &str = "urn:example:params:scim:schemas:extension:acme:2.0:User";
const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

fn config(json: Value) -> MappingConfig {
    serde_json::from_value(json).unwrap()
}

fn compile(json: Value) -> Mapping {
    match Mapping::compile(&config(json.clone())) {
        Ok(m) => m,
        Err(e) => panic!("{json}: {e}"),
    }
}

fn user(id: &str, active: bool, fields: Value) -> CmsUser {
    CmsUser {
        id: id.to_owned(),
        fields: serde_json::from_value(fields).unwrap(),
        active,
    }
}

fn text(s: &str) -> FieldValue {
    FieldValue::Text(s.to_owned())
}

fn list(items: &[&str]) -> FieldValue {
    FieldValue::TextList(items.iter().map(|s| s.to_string()).collect())
}

/// The example from the issue, verbatim.
fn example() -> Value {
    json!({"mapping": [
        {"target": "userName", "source": "name", "required": true},
        {"target": "emails[type eq \"work\"].value", "source": "mail", "transform": ["trim", "lower"]},
        {"target": "name.givenName", "source": "field_first_name"},
        {"target": "name.familyName", "source": "field_last_name"},
        {"target": "displayName", "template": "{field_first_name} {field_last_name}", "transform": ["trim"]},
        {"target": "active", "source": "@active"},
        {"target": "externalId", "source": "@id"},
        {"target": "userType", "constant": "Employee", "apply": "create"},
        {"target": "title", "source": "field_title", "default": "Staff"},
        {"target": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "source": "field_department"},
        {"target": "urn:example:params:scim:schemas:extension:acme:2.0:User:badge", "source": "field_badge", "transform": [{"regex_replace": {"pattern": "^B-(\\d+)$", "replacement": "$1"}}]}
     ],
     "extensions": ["urn:example:params:scim:schemas:extension:acme:2.0:User"],
     "scope": {"active": true, "field": "roles", "any_of": ["editor", "member"]}
    })
}

fn ada() -> CmsUser {
    user(
        "42",
        true,
        json!([
            ["name", "ada"],
            ["mail", "  Ada@Example.COM "],
            ["field_first_name", "Ada"],
            ["field_last_name", "Lovelace"],
            ["field_title", null],
            ["field_department", "R&D"],
            ["field_badge", "B-0042"],
            ["roles", ["editor", "author"]]
        ]),
    )
}

#[test]
fn example_maps_to_the_full_expected_resource() {
    let mapping = compile(example());
    let created = mapping.map(&ada(), MapMode::Create).unwrap();
    assert_eq!(
        created,
        json!({
            "schemas": [CORE, ENTERPRISE, ACME],
            "userName": "ada",
            "emails": [{"type": "work", "value": "ada@example.com", "primary": true}],
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "displayName": "Ada Lovelace",
            "active": true,
            "externalId": "42",
            "userType": "Employee",
            "title": "Staff",
            ENTERPRISE: {"department": "R&D"},
            ACME: {"badge": "0042"}
        })
    );
    let updated = mapping.map(&ada(), MapMode::Update).unwrap();
    let mut expected = created.clone();
    expected.as_object_mut().unwrap().remove("userType");
    assert_eq!(updated, expected);
    assert!(mapping.in_scope(&ada()));
    let blocked = CmsUser {
        active: false,
        ..ada()
    };
    assert!(!mapping.in_scope(&blocked));
}

#[test]
fn unused_extensions_stay_out_of_schemas() {
    let mapping = compile(example());
    let sparse = user("7", false, json!([["name", "bob"]]));
    assert_eq!(
        mapping.map(&sparse, MapMode::Update).unwrap(),
        json!({
            "schemas": [CORE],
            "userName": "bob",
            "active": false,
            "externalId": "7",
            "title": "Staff"
        })
    );
}

#[test]
fn every_validation_error_names_its_rule() {
    let base = || json!({"target": "userName", "source": "name"});
    let cases: Vec<(Value, Value, &str)> = vec![
        (
            json!({"target": "nickname2", "source": "x"}),
            json!([]),
            "unknown attribute `nickname2`",
        ),
        (
            json!({"target": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:badge", "source": "x"}),
            json!([]),
            "unknown attribute `badge` of the Enterprise",
        ),
        (
            json!({"target": "urn:example:params:scim:schemas:extension:other:2.0:User:x", "source": "x"}),
            json!([]),
            "not declared",
        ),
        (
            json!({"target": "emails[type eq \"work\".value", "source": "x"}),
            json!([]),
            "malformed path",
        ),
        (
            json!({"target": "groups", "source": "x"}),
            json!([]),
            "group feature",
        ),
        (
            json!({"target": "displayName", "source": "x", "transform": ["titlecase"]}),
            json!([]),
            "unknown transform",
        ),
        (
            json!({"target": "displayName", "source": "x", "transform": [{"split": ","}]}),
            json!([]),
            "type mismatch: the rule yields list but `displayName` takes text or number",
        ),
        (
            json!({"target": "active", "constant": "yes"}),
            json!([]),
            "type mismatch",
        ),
        (
            json!({"target": "active", "constant": 1}),
            json!([]),
            "type mismatch",
        ),
        (
            json!({"target": "active", "template": "{x}"}),
            json!([]),
            "type mismatch",
        ),
        (
            json!({"target": "active", "source": "@id"}),
            json!([]),
            "type mismatch",
        ),
        (
            json!({"target": "nickName", "source": "x", "transform": ["date"]}),
            json!([]),
            "type mismatch: the rule yields dateTime",
        ),
        (
            json!({"target": "nickName", "source": "x", "transform": ["bool"]}),
            json!([]),
            "type mismatch",
        ),
        (
            json!({"target": "nickName", "source": "x", "transform": [{"split": ","}, "date"]}),
            json!([]),
            "transform 1: type mismatch: `date` cannot take list",
        ),
        (
            json!({"target": "active", "source": "x", "transform": ["bool"], "default": "on"}),
            json!([]),
            "the default is text",
        ),
        (
            json!({"target": "nickName", "source": "x", "transform": [{"regex_replace": {"pattern": "(a", "replacement": ""}}]}),
            json!([]),
            "invalid regex",
        ),
        (
            json!({"target": "nickName", "source": "x", "transform": [{"regex_replace": {"pattern": "a", "replacement": "$1"}}]}),
            json!([]),
            "group $1",
        ),
        (json!({"target": "nickName"}), json!([]), "exactly one of"),
        (
            json!({"target": "nickName", "source": "x", "constant": "y"}),
            json!([]),
            "exactly one of",
        ),
        (
            json!({"target": "nickName", "constant": {"a": 1}}),
            json!([]),
            "the constant must",
        ),
        (
            json!({"target": "nickName", "source": "@uid"}),
            json!([]),
            "pseudo-field",
        ),
        (
            json!({"target": "nickName", "template": "{first"}),
            json!([]),
            "unclosed placeholder",
        ),
        (
            json!({"target": "nickName", "source": "x", "default": {}}),
            json!([]),
            "the default must",
        ),
        (
            json!({"target": "nickName", "source": "x", "transform": [{"join": ""}]}),
            json!([]),
            "separator",
        ),
        (
            json!({"target": "USERNAME", "source": "y"}),
            json!([]),
            "already filled by mapping[0]",
        ),
        (
            json!({"target": "urn:ietf:params:scim:schemas:core:2.0:User:userName", "source": "y"}),
            json!([]),
            "already filled by mapping[0]",
        ),
    ];
    for (rule, extensions, expected) in cases {
        let json = json!({"mapping": [base(), rule.clone()], "extensions": extensions});
        let err = match Mapping::compile(&config(json)) {
            Ok(_) => panic!("{rule} compiled"),
            Err(ProvisioningError::InvalidConfig(e)) => e,
            Err(e) => panic!("{rule}: wrong error {e:?}"),
        };
        let target = rule["target"].as_str().unwrap();
        assert!(err.contains(expected), "{rule}: {err}");
        assert!(
            err.starts_with(&format!("mapping[1] (target {target:?}): ")),
            "{rule}: {err}"
        );
    }
}

#[test]
fn config_level_validation_errors() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"mapping": [{"target": "displayName", "source": "name"}]}),
            "no rule fills `userName`",
        ),
        (json!({"mapping": []}), "no rule fills `userName`"),
        (
            json!({"mapping": [{"target": "userName", "source": "name", "apply": "create"}]}),
            "mapping[0] (target \"userName\"): the userName rule must apply always",
        ),
        (
            json!({"mapping": [{"target": "userName", "source": "name"}], "extensions": ["acme"]}),
            "extensions: extension `acme` is not a schema URN",
        ),
        (
            json!({"mapping": [
                {"target": "userName", "source": "name"},
                {"target": "urn:acme:User:badge", "source": "b"},
                {"target": "urn:acme:User:badge.id", "source": "c"}
            ], "extensions": ["urn:acme:User"]}),
            "mapping[2] (target \"urn:acme:User:badge.id\"): `urn:acme:User:badge.id` conflicts with mapping[1]",
        ),
        (
            json!({"mapping": [{"target": "userName", "source": "name"}], "scope": {"field": "roles"}}),
            "scope: `field` needs",
        ),
    ];
    for (json, expected) in cases {
        match Mapping::compile(&config(json.clone())) {
            Err(ProvisioningError::InvalidConfig(e)) => {
                assert!(e.contains(expected), "{json}: {e}")
            }
            other => panic!("{json}: {other:?}"),
        }
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let json = json!({"mapping": [
        {"target": "nickname2", "source": "a"},
        {"target": "active", "constant": "x"}
    ]});
    let Err(ProvisioningError::InvalidConfig(e)) = Mapping::compile(&config(json)) else {
        panic!("expected InvalidConfig");
    };
    assert!(e.contains("mapping[0]"), "{e}");
    assert!(e.contains("mapping[1]"), "{e}");
    assert!(e.contains("userName"), "{e}");
}

#[test]
fn missing_required_values_produce_nothing() {
    let mapping = compile(json!({"mapping": [
        {"target": "userName", "source": "name"},
        {"target": "emails[type eq \"work\"].value", "source": "mail", "required": true},
        {"target": "nickName", "source": "nick"}
    ]}));
    let cases = [
        (json!([["mail", "a@b"]]), "userName"),
        (json!([["name", ""], ["mail", "a@b"]]), "userName"),
        (json!([["name", []], ["mail", "a@b"]]), "userName"),
        (json!([["name", "ann"]]), "emails[type eq \"work\"].value"),
        (
            json!([["name", "ann"], ["mail", null]]),
            "emails[type eq \"work\"].value",
        ),
    ];
    for (fields, attribute) in cases {
        assert_eq!(
            mapping.map(&user("9", true, fields.clone()), MapMode::Create),
            Err(ProvisioningError::MissingAttribute {
                user_id: "9".into(),
                attribute: attribute.into()
            }),
            "{fields}"
        );
    }
    let ok = mapping
        .map(
            &user("9", true, json!([["name", "ann"], ["mail", "a@b"]])),
            MapMode::Create,
        )
        .unwrap();
    assert!(ok.get("nickName").is_none());
}

#[test]
fn a_default_fills_a_required_value() {
    let mapping = compile(json!({"mapping": [
        {"target": "userName", "source": "name", "default": "nobody"},
        {"target": "displayName", "template": "{a} {b}", "default": "Anonymous"}
    ]}));
    let out = mapping
        .map(&user("1", true, json!([])), MapMode::Create)
        .unwrap();
    assert_eq!(out["userName"], json!("nobody"));
    assert_eq!(out["displayName"], json!("Anonymous"));
}

#[test]
fn bad_values_fail_naming_user_and_attribute() {
    let mapping = compile(json!({"mapping": [
        {"target": "userName", "source": "name"},
        {"target": "active", "source": "enabled", "transform": ["bool"]},
        {"target": "nickName", "source": "nicks"},
        {"target": "urn:acme:User:since", "source": "since", "transform": ["date"]}
    ], "extensions": ["urn:acme:User"]}));
    let cases = [
        (
            json!([["name", "a"], ["enabled", "maybe"]]),
            "mapping[1] (active): transform `bool`",
        ),
        (
            json!([["name", "a"], ["nicks", ["x", "y"]]]),
            "mapping[2] (nickName): the list has 2 values",
        ),
        (
            json!([["name", "a"], ["since", "last week"]]),
            "transform `date`",
        ),
    ];
    for (fields, expected) in cases {
        match mapping.map(&user("u-5", true, fields.clone()), MapMode::Create) {
            Err(ProvisioningError::Other(e)) => {
                assert!(e.starts_with("user u-5: cannot map "), "{e}");
                assert!(e.contains(expected), "{fields}: {e}");
            }
            other => panic!("{fields}: {other:?}"),
        }
    }
    // A source whose kind is unknown until map time is coerced into a boolean target.
    let mapping = compile(json!({"mapping": [
        {"target": "userName", "source": "name"},
        {"target": "active", "source": "status"}
    ]}));
    let out = mapping
        .map(
            &user("1", true, json!([["name", "a"], ["status", "0"]])),
            MapMode::Create,
        )
        .unwrap();
    assert_eq!(out["active"], json!(false));
    assert!(matches!(
        mapping.map(
            &user("1", true, json!([["name", "a"], ["status", "gone"]])),
            MapMode::Create
        ),
        Err(ProvisioningError::Other(_))
    ));
}

#[test]
fn multi_valued_attributes() {
    let mapping = compile(json!({"mapping": [
        {"target": "userName", "source": "name"},
        {"target": "emails[type eq \"work\"].value", "source": "mail"},
        {"target": "emails[type eq \"home\"].value", "source": "home_mail"},
        {"target": "phoneNumbers[type eq \"mobile\"].value", "source": "mobile"},
        {"target": "phoneNumbers[type eq \"work\"].value", "source": "phone"},
        {"target": "addresses[type eq \"work\"].streetAddress", "source": "street"},
        {"target": "addresses[type eq \"work\"].locality", "source": "city"},
        {"target": "addresses[type eq \"work\"].postalCode", "source": "zip", "transform": ["trim"]},
        {"target": "addresses[type eq \"work\"].country", "constant": "DE"},
        {"target": "ims[type eq \"xmpp\"].value", "source": "jabber"},
        {"target": "photos[type eq \"thumbnail\"].value", "source": "avatar"},
        {"target": "roles", "source": "roles"},
        {"target": "entitlements", "source": "perms", "transform": [{"split": ","}]}
    ]}));
    let u = user(
        "1",
        true,
        json!([
            ["name", "a"],
            ["mail", "a@work"],
            ["home_mail", "a@home"],
            ["phone", "+49 1"],
            ["street", "Main St 1"],
            ["city", "Berlin"],
            ["zip", " 10115 "],
            ["avatar", "https://x/a.png"],
            ["roles", ["editor", "author"]],
            ["perms", "read, write"]
        ]),
    );
    let out = mapping.map(&u, MapMode::Create).unwrap();
    assert_eq!(
        out,
        json!({
            "schemas": [CORE],
            "userName": "a",
            "emails": [
                {"type": "work", "value": "a@work", "primary": true},
                {"type": "home", "value": "a@home"}
            ],
            "phoneNumbers": [{"type": "work", "value": "+49 1", "primary": true}],
            "addresses": [{
                "type": "work", "primary": true, "streetAddress": "Main St 1",
                "locality": "Berlin", "postalCode": "10115", "country": "DE"
            }],
            "photos": [{"type": "thumbnail", "value": "https://x/a.png", "primary": true}],
            "roles": [{"value": "editor"}, {"value": "author"}],
            "entitlements": [{"value": "read"}, {"value": "write"}]
        })
    );
}

#[test]
fn custom_extension_values_keep_their_json_type() {
    let mapping = compile(json!({"mapping": [
        {"target": "userName", "source": "name"},
        {"target": "urn:acme:User:level", "source": "level"},
        {"target": "urn:acme:User:vip", "source": "vip", "transform": ["bool"]},
        {"target": "urn:acme:User:tags", "source": "tags"},
        {"target": "urn:acme:User:since", "source": "created", "transform": ["date"]},
        {"target": "urn:acme:User:badge.id", "constant": 7},
        {"target": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value", "source": "boss"},
        {"target": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "source": "@id"}
    ], "extensions": ["urn:acme:User"]}));
    let u = user(
        "12",
        true,
        json!([
            ["name", "a"],
            ["level", 3],
            ["vip", "on"],
            ["tags", ["x", "y"]],
            ["created", 1700000000],
            ["boss", "9"]
        ]),
    );
    assert_eq!(
        mapping.map(&u, MapMode::Create).unwrap(),
        json!({
            "schemas": [CORE, ENTERPRISE, "urn:acme:User"],
            "userName": "a",
            "urn:acme:User": {
                "level": 3, "vip": true, "tags": ["x", "y"],
                "since": "2023-11-14T22:13:20Z", "badge": {"id": 7}
            },
            ENTERPRISE: {"manager": {"value": "9"}, "employeeNumber": "12"}
        })
    );
}

fn drupal() -> Value {
    json!({
        "mapping": [
            {"target": "userName", "source": "name"},
            {"target": "emails[type eq \"work\"].value", "source": "mail"},
            {"target": "name.givenName", "source": "field_first_name"},
            {"target": "name.familyName", "source": "field_last_name"},
            {"target": "displayName", "template": "{field_first_name} {field_last_name}", "transform": ["trim"]},
            {"target": "roles", "source": "roles"},
            {"target": "active", "source": "status", "transform": ["bool"]},
            {"target": "externalId", "source": "@id"}
        ],
        "scope": {"none_of": ["administrator"], "field": "roles"}
    })
}

#[test]
fn drupal_style_end_to_end() {
    let mapping = compile(drupal());
    let u = user(
        "17",
        true,
        json!([
            ["name", "jdoe"],
            ["mail", "jdoe@example.org"],
            ["field_first_name", "Jane"],
            ["field_last_name", "Doe"],
            ["roles", ["authenticated", "editor"]],
            ["status", 1]
        ]),
    );
    let resource = mapping.map(&u, MapMode::Create).unwrap();
    assert_eq!(
        resource,
        json!({
            "schemas": [CORE],
            "userName": "jdoe",
            "emails": [{"type": "work", "value": "jdoe@example.org", "primary": true}],
            "name": {"givenName": "Jane", "familyName": "Doe"},
            "displayName": "Jane Doe",
            "roles": [{"value": "authenticated"}, {"value": "editor"}],
            "active": true,
            "externalId": "17"
        })
    );
    assert!(mapping.in_scope(&u));
    let admin = user(
        "1",
        true,
        json!([["name", "admin"], ["roles", ["administrator"]]]),
    );
    assert!(!mapping.in_scope(&admin));
    assert_eq!(
        mapping.reverse(&resource),
        vec![
            ("name".to_owned(), text("jdoe")),
            ("mail".to_owned(), text("jdoe@example.org")),
            ("field_first_name".to_owned(), text("Jane")),
            ("field_last_name".to_owned(), text("Doe")),
            ("roles".to_owned(), list(&["authenticated", "editor"])),
            // The number 1 comes back as the boolean it was mapped to.
            ("status".to_owned(), FieldValue::Boolean(true)),
        ]
    );
    assert_eq!(mapping.reverse_active(&resource), None);
}

fn joomla() -> Value {
    json!({
        "mapping": [
            {"target": "userName", "source": "username"},
            {"target": "emails[type eq \"work\"].value", "source": "email", "transform": ["trim", "lower"]},
            {"target": "displayName", "source": "name"},
            {"target": "name.formatted", "source": "name"},
            {"target": "active", "source": "block", "transform": ["not"]},
            {"target": "roles", "source": "groups"},
            {"target": "externalId", "source": "@id"}
        ],
        "scope": {"all": [
            {"field": "block", "equals": false},
            {"field": "groups", "none_of": ["Super Users"]},
            {"any": [{"field": "groups", "any_of": ["Registered"]}, {"field": "@id", "equals": "1"}]}
        ]}
    })
}

#[test]
fn joomla_style_end_to_end() {
    let mapping = compile(joomla());
    let u = user(
        "880",
        true,
        json!([
            ["username", "jsmith"],
            ["email", " J.Smith@Example.ORG"],
            ["name", "John Smith"],
            ["block", "1"],
            ["groups", ["Registered", "Author"]]
        ]),
    );
    let resource = mapping.map(&u, MapMode::Update).unwrap();
    assert_eq!(
        resource,
        json!({
            "schemas": [CORE],
            "userName": "jsmith",
            "emails": [{"type": "work", "value": "j.smith@example.org", "primary": true}],
            "displayName": "John Smith",
            "name": {"formatted": "John Smith"},
            "active": false,
            "roles": [{"value": "Registered"}, {"value": "Author"}],
            "externalId": "880"
        })
    );
    // Blocked.
    assert!(!mapping.in_scope(&u));
    let member = user(
        "881",
        true,
        json!([["block", 0], ["groups", ["Registered"]]]),
    );
    assert!(mapping.in_scope(&member));
    let root = user(
        "881",
        true,
        json!([["block", "0"], ["groups", ["Registered", "Super Users"]]]),
    );
    assert!(!mapping.in_scope(&root));
    let guest = user("882", true, json!([["block", 0], ["groups", ["Guest"]]]));
    assert!(!mapping.in_scope(&guest));
    assert_eq!(
        mapping.reverse(&resource),
        vec![
            ("username".to_owned(), text("jsmith")),
            // `lower` and `trim` are not undone.
            ("email".to_owned(), text("j.smith@example.org")),
            ("name".to_owned(), text("John Smith")),
            // `not` is undone; the text "1" comes back as the boolean true.
            ("block".to_owned(), FieldValue::Boolean(true)),
            ("groups".to_owned(), list(&["Registered", "Author"])),
        ]
    );
}

#[test]
fn reverse_reads_server_resources_case_insensitively() {
    let mapping = compile(example());
    let resource = json!({
        "schemas": [CORE],
        "id": "abc",
        "UserName": "grace",
        "Emails": [
            {"type": "home", "value": "g@home"},
            {"Type": "WORK", "Value": "g@work"}
        ],
        "name": {"givenname": "Grace"},
        "active": "false",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user": {"Department": "Navy"},
        ACME: {"badge": "0001"}
    });
    assert_eq!(
        mapping.reverse(&resource),
        vec![
            ("name".to_owned(), text("grace")),
            ("mail".to_owned(), text("g@work")),
            ("field_first_name".to_owned(), text("Grace")),
            ("field_last_name".to_owned(), FieldValue::Null),
            ("field_title".to_owned(), FieldValue::Null),
            ("field_department".to_owned(), text("Navy")),
            ("field_badge".to_owned(), text("0001")),
        ]
    );
    assert_eq!(mapping.reverse_active(&resource), Some(false));
    assert_eq!(mapping.reverse_active(&json!({})), None);
}

#[test]
fn the_first_rule_with_a_value_wins_on_reverse() {
    let mapping = compile(json!({"mapping": [
        {"target": "userName", "source": "mail"},
        {"target": "emails[type eq \"work\"].value", "source": "mail"},
        {"target": "nickName", "constant": "x"},
        {"target": "displayName", "template": "{mail}"}
    ]}));
    let resource = json!({"emails": [{"type": "work", "value": "m@x"}]});
    assert_eq!(
        mapping.reverse(&resource),
        vec![("mail".to_owned(), text("m@x"))]
    );
}

#[test]
fn the_default_config_fits_drupal() {
    let mapping = Mapping::compile(&MappingConfig::default()).unwrap();
    let u = user(
        "3",
        false,
        json!([
            ["name", "ann"],
            ["mail", "Ann@Example.org "],
            ["field_first_name", "Ann"],
            ["field_last_name", null]
        ]),
    );
    assert_eq!(
        mapping.map(&u, MapMode::Create).unwrap(),
        json!({
            "schemas": [CORE],
            "userName": "ann",
            "emails": [{"type": "work", "value": "ann@example.org", "primary": true}],
            "name": {"givenName": "Ann", "formatted": "Ann"},
            "displayName": "Ann",
            "active": false,
            "externalId": "3"
        })
    );
    assert!(mapping.in_scope(&u));
    let Value::Object(resource) = mapping.map(&u, MapMode::Create).unwrap() else {
        panic!("not an object");
    };
    assert_eq!(
        mapping.reverse_active(&Value::Object(resource)),
        Some(false)
    );
}

#[test]
fn configs_read_from_the_policy_json() {
    let policy = r#"{
        "matching": ["userName"],
        "mapping": [{"target": "userName", "source": "name"}],
        "scope": {"active": true}
    }"#;
    let config: MappingConfig = serde_json::from_str(policy).unwrap();
    let mapping = Mapping::compile(&config).unwrap();
    assert!(!mapping.in_scope(&user("1", false, json!([]))));
}

/// A string with no leading or trailing whitespace, as trim-free rules keep it.
fn clean_text() -> impl Strategy<Value = String> {
    "[^\\s\\p{C}]([^\\p{C}]{0,18}[^\\s\\p{C}])?"
}

fn field_value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        clean_text().prop_map(FieldValue::Text),
        (-1.0e12f64..1.0e12).prop_map(FieldValue::Number),
        any::<i32>().prop_map(|n| FieldValue::Number(f64::from(n))),
        any::<bool>().prop_map(FieldValue::Boolean),
        prop::collection::vec(clean_text(), 0..4).prop_map(FieldValue::TextList),
        Just(FieldValue::Null),
    ]
}

fn round_trip_mapping() -> Mapping {
    compile(json!({"mapping": [
        {"target": "userName", "source": "login", "default": "fallback"},
        {"target": "displayName", "source": "display"},
        {"target": "name.givenName", "source": "given"},
        {"target": "emails[type eq \"work\"].value", "source": "mail"},
        {"target": "phoneNumbers[type eq \"mobile\"].value", "source": "mobile"},
        {"target": "addresses[type eq \"home\"].locality", "source": "city"},
        {"target": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "source": "dept"},
        {"target": "roles", "source": "roles"},
        {"target": "active", "source": "enabled"},
        {"target": "urn:acme:User:anything", "source": "free"},
        {"target": "urn:acme:User:tags", "source": "tags", "transform": [{"join": "|"}]}
    ], "extensions": ["urn:acme:User"]}))
}

proptest! {
    #[test]
    fn direct_rules_round_trip(
        login in clean_text(),
        display in prop::option::of(clean_text()),
        given in prop::option::of(clean_text()),
        mail in prop::option::of(clean_text()),
        mobile in prop::option::of(clean_text()),
        city in prop::option::of(clean_text()),
        dept in prop::option::of(clean_text()),
        roles in prop::option::of(prop::collection::vec(clean_text(), 1..4)),
        enabled in prop::option::of(any::<bool>()),
        free in field_value(),
        tags in prop::option::of(prop::collection::vec("[a-z0-9][a-z0-9 ]{0,6}[a-z0-9]", 1..4)),
    ) {
        let mapping = round_trip_mapping();
        let mut fields = vec![("login".to_owned(), FieldValue::Text(login))];
        let texts = [("display", display), ("given", given), ("mail", mail), ("mobile", mobile),
            ("city", city), ("dept", dept)];
        for (name, value) in texts {
            if let Some(v) = value {
                fields.push((name.to_owned(), FieldValue::Text(v)));
            }
        }
        if let Some(r) = roles {
            fields.push(("roles".to_owned(), FieldValue::TextList(r)));
        }
        if let Some(b) = enabled {
            fields.push(("enabled".to_owned(), FieldValue::Boolean(b)));
        }
        fields.push(("free".to_owned(), free));
        if let Some(t) = tags {
            fields.push(("tags".to_owned(), FieldValue::TextList(t)));
        }
        let u = CmsUser { id: "p".to_owned(), fields: fields.clone(), active: true };
        let resource = mapping.map(&u, MapMode::Create).unwrap();
        let back = mapping.reverse(&resource);
        let order = ["login", "display", "given", "mail", "mobile", "city", "dept", "roles",
            "enabled", "free", "tags"];
        let names: Vec<&str> = back.iter().map(|(n, _)| n.as_str()).collect();
        prop_assert_eq!(names, order.to_vec());
        for (name, value) in back {
            let original = u.field(&name).cloned().unwrap_or(FieldValue::Null);
            if original.is_empty() {
                prop_assert!(value.is_empty(), "{}: {:?}", name, value);
            } else {
                prop_assert_eq!(value, original, "{}", name);
            }
        }
    }

    #[test]
    fn mapping_arbitrary_users_never_panics(
        fields in prop::collection::vec(
            (prop::sample::select(vec!["name", "mail", "field_first_name", "field_last_name",
                "field_title", "field_department", "field_badge", "roles"]), field_value()),
            0..10),
        active in any::<bool>(),
    ) {
        let mapping = compile(example());
        let u = CmsUser {
            id: "x".to_owned(),
            fields: fields.into_iter().map(|(n, v)| (n.to_owned(), v)).collect(),
            active,
        };
        let _ = mapping.in_scope(&u);
        match mapping.map(&u, MapMode::Create) {
            Ok(resource) => {
                prop_assert_eq!(&resource["schemas"][0], &json!(CORE));
                prop_assert!(resource["userName"].is_string());
                let _ = mapping.reverse(&resource);
            }
            Err(ProvisioningError::MissingAttribute { attribute, .. }) => {
                prop_assert_eq!(attribute, "userName");
            }
            Err(ProvisioningError::Other(e)) => prop_assert!(e.starts_with("user x: ")),
            Err(e) => prop_assert!(false, "unexpected {:?}", e),
        }
    }
}
