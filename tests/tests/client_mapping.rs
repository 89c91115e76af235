//! Attribute mapping, end to end: policies with core, Enterprise and custom-extension rules
//! and transforms, compiled and applied by the built component under wasmtime, provisioned
//! to scim2-server and the SCIMMY app, and read back with a plain HTTP GET.
//!
//! scim2-server 0.8.3 serves only the schemas of RFC 7643 unless started with `--schema`
//! files, and refuses an undeclared extension (400 invalidSyntax "Extra inputs are not
//! permitted"), so the custom-extension part runs against the SCIMMY app, which declares
//! `urn:ietf:params:scim:schemas:extension:acme:2.0:User` (SCIMMY only accepts schema URNs
//! under `urn:ietf:params:scim:schemas:`).

use host_example::types::{
    Action, CmsUser, FieldValue, Link, ProvisionOutcome, ProvisioningError, UserEvent,
};
use host_example::{ConnectorSettings, Credentials};
use scim_provisioner_tests::component::{
    all_users, logged_requests, logged_writes, open_err, open_logged, provision, remote_user,
    set_field, settings, text,
};
use scim_provisioner_tests::peers::{self, Peer, send_json};
use serde_json::{Value, json};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// The custom extension the SCIMMY app declares.
const ACME: &str = "urn:ietf:params:scim:schemas:extension:acme:2.0:User";

fn user(id: &str, active: bool, fields: Vec<(&str, FieldValue)>) -> CmsUser {
    CmsUser {
        id: id.to_string(),
        fields: fields
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect(),
        active,
    }
}

fn policy(rules: Vec<Value>, extra: Value) -> String {
    let mut p = json!({ "mapping": rules });
    if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
        p.extend(extra.clone());
    }
    p.to_string()
}

/// A session with its log, and the link it keeps for one user.
struct Host<'p> {
    peer: &'p Peer,
    session: host_example::Session,
    log: scim_provisioner_tests::component::LogLines,
    link: Option<Link>,
}

impl<'p> Host<'p> {
    fn new(peer: &'p Peer, policy: &str) -> Self {
        let (session, log) = open_logged(&settings(peer, policy));
        Host {
            peer,
            session,
            log,
            link: None,
        }
    }

    fn try_on(
        &mut self,
        user: &CmsUser,
        event: UserEvent,
    ) -> Result<ProvisionOutcome, ProvisioningError> {
        let result = provision(&mut self.session, user, event, self.link.as_ref());
        if let Ok(outcome) = &result {
            self.link = outcome.link.clone();
        }
        result
    }

    fn on(&mut self, user: &CmsUser, event: UserEvent) -> ProvisionOutcome {
        let name = self.peer.name;
        self.try_on(user, event).unwrap_or_else(|e| {
            panic!(
                "{name}: {event:?} for user {} failed: {}\nrequests: {:#?}",
                user.id,
                host_example::describe_error(&e),
                logged_requests(&self.log)
            )
        })
    }

    /// What the component maps the user to, on creation.
    fn mapped(&mut self, user: &CmsUser) -> Value {
        let json = self
            .session
            .map_user(user)
            .expect("no trap")
            .unwrap_or_else(|e| panic!("map_user: {}", host_example::describe_error(&e)));
        serde_json::from_str(&json).expect("map_user gives JSON")
    }

    /// The linked remote user by a plain HTTP GET.
    fn remote(&self) -> Value {
        let id = &self.link.as_ref().expect("a link").remote_id;
        let (status, body) = remote_user(self.peer, id);
        assert_eq!(status, 200, "{}: GET /Users/{id}: {body}", self.peer.name);
        body
    }
}

/// The same instant written as the peer writes it: SCIMMY adds milliseconds
/// (`2023-11-14T22:13:20.000Z`), and `+00:00` is `Z`.
fn normalize_datetime(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let looks_like = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':';
    if !looks_like {
        return None;
    }
    let (main, rest) = s.split_at(19);
    let rest = rest.replace("+00:00", "Z");
    let (fraction, zone) = match rest.strip_prefix('.') {
        Some(r) => {
            let digits: String = r.chars().take_while(char::is_ascii_digit).collect();
            let zone = r[digits.len()..].to_string();
            (digits.trim_end_matches('0').to_string(), zone)
        }
        None => (String::new(), rest),
    };
    Some(if fraction.is_empty() {
        format!("{main}{zone}")
    } else {
        format!("{main}.{fraction}{zone}")
    })
}

/// Asserts that every attribute of `expected` (the mapped resource) is in `actual` (the
/// read-back one) with the same value; attributes only the server has are ignored.
fn assert_contains(peer: &str, path: &str, expected: &Value, actual: &Value) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let here = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if path.is_empty() && k == "schemas" {
                    let schemas = a.get("schemas").cloned().unwrap_or_default();
                    for s in ev.as_array().into_iter().flatten() {
                        assert!(
                            schemas.as_array().is_some_and(|l| l.contains(s)),
                            "{peer}: schemas {schemas} lack {s}"
                        );
                    }
                    continue;
                }
                let av = a.get(k).unwrap_or_else(|| {
                    panic!("{peer}: `{here}` is missing from the read-back resource {actual}")
                });
                assert_contains(peer, &here, ev, av);
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            assert_eq!(e.len(), a.len(), "{peer}: `{path}`: {expected} vs {actual}");
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                assert_contains(peer, &format!("{path}[{i}]"), ev, av);
            }
        }
        (Value::String(e), Value::String(a)) if e != a => {
            let same_instant =
                normalize_datetime(e).is_some() && normalize_datetime(e) == normalize_datetime(a);
            assert!(
                same_instant,
                "{peer}: `{path}`: mapped {e:?}, read back {a:?}"
            );
        }
        (Value::Number(e), Value::Number(a)) => {
            assert_eq!(e.as_f64(), a.as_f64(), "{peer}: `{path}`");
        }
        _ => assert_eq!(expected, actual, "{peer}: `{path}`"),
    }
}

// ---------------------------------------------------------------------------------------
// Core, Enterprise and custom-extension attributes, read back equal

fn core_and_enterprise_rules() -> Vec<Value> {
    vec![
        json!({"target": "userName", "source": "name", "required": true}),
        json!({"target": "name.givenName", "source": "field_first_name"}),
        json!({"target": "name.familyName", "source": "field_last_name"}),
        json!({"target": "displayName", "template": "{field_first_name} {field_last_name}"}),
        json!({"target": "emails[type eq \"work\"].value", "source": "mail",
               "transform": ["trim", "lower"]}),
        json!({"target": "phoneNumbers[type eq \"mobile\"].value", "source": "field_mobile"}),
        json!({"target": "title", "source": "field_title", "default": "Staff"}),
        json!({"target": "userType", "constant": "Employee", "apply": "create"}),
        json!({"target": "active", "source": "@active"}),
        json!({"target": "externalId", "source": "@id"}),
        json!({"target": format!("{ENTERPRISE}:employeeNumber"), "source": "field_employee_number"}),
        json!({"target": format!("{ENTERPRISE}:department"), "source": "field_department"}),
        json!({"target": format!("{ENTERPRISE}:manager.value"), "source": "field_manager"}),
    ]
}

fn acme_rules() -> Vec<Value> {
    vec![
        json!({"target": format!("{ACME}:badge"), "source": "field_badge",
               "transform": [{"regex_replace": {"pattern": "^B-(\\d+)$", "replacement": "$1"}}]}),
        json!({"target": format!("{ACME}:memberSince"), "source": "created",
               "transform": ["date"]}),
        json!({"target": format!("{ACME}:vip"), "source": "field_vip", "transform": ["bool"]}),
        json!({"target": format!("{ACME}:level"), "source": "field_level"}),
        json!({"target": format!("{ACME}:skills"), "source": "roles"}),
    ]
}

fn ada(manager_id: &str) -> CmsUser {
    user(
        "42",
        true,
        vec![
            ("name", text("ada")),
            ("mail", text(" Ada@Example.COM")),
            ("field_first_name", text("Ada")),
            ("field_last_name", text("Lovelace")),
            ("field_mobile", text("+44 20 7946 0000")),
            ("field_employee_number", FieldValue::Number(1815.0)),
            ("field_department", text("R&D")),
            ("field_manager", text(manager_id)),
            ("field_badge", text("B-0042")),
            ("created", FieldValue::Number(1_700_000_000.0)),
            ("field_vip", text("1")),
            ("field_level", FieldValue::Number(3.0)),
            (
                "roles",
                FieldValue::TextList(vec!["analyst".into(), "poet".into()]),
            ),
        ],
    )
}

/// A manager the mapped user can point at.
fn manager(peer: &Peer) -> String {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "charles",
        // Without emails, SCIMMY could not evaluate the engine's emails filter (see
        // client_engine.rs, create_beside_a_user_without_email).
        "emails": [{"type": "work", "value": "charles@example.com"}],
    });
    let (status, created) =
        send_json("POST", &peer.url("/Users"), &peer.token, Some(&body)).expect("POST");
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().expect("id").to_string()
}

fn full_mapping_reads_back(peer: &Peer, with_custom_extension: bool) {
    let mut rules = core_and_enterprise_rules();
    let mut extra = json!({});
    if with_custom_extension {
        rules.extend(acme_rules());
        extra = json!({ "extensions": [ACME] });
    }
    let manager_id = manager(peer);
    let mut host = Host::new(peer, &policy(rules, extra));
    let ada = ada(&manager_id);
    let mapped = host.mapped(&ada);

    // What the rules say, independently of the component.
    assert_eq!(mapped["userName"], "ada");
    assert_eq!(
        mapped["emails"],
        json!([{"type": "work", "value": "ada@example.com", "primary": true}])
    );
    assert_eq!(
        mapped["phoneNumbers"],
        json!([{"type": "mobile", "value": "+44 20 7946 0000", "primary": true}])
    );
    assert_eq!(mapped["displayName"], "Ada Lovelace");
    assert_eq!(mapped["title"], "Staff", "the default");
    assert_eq!(mapped["userType"], "Employee");
    assert_eq!(mapped["active"], true);
    assert_eq!(mapped["externalId"], "42");
    assert_eq!(
        mapped[ENTERPRISE],
        json!({"employeeNumber": "1815", "department": "R&D", "manager": {"value": manager_id}})
    );
    let mut schemas = vec![
        "urn:ietf:params:scim:schemas:core:2.0:User".to_string(),
        ENTERPRISE.to_string(),
    ];
    if with_custom_extension {
        schemas.push(ACME.to_string());
        assert_eq!(
            mapped[ACME],
            json!({"badge": "0042", "memberSince": "2023-11-14T22:13:20Z", "vip": true,
                   "level": 3, "skills": ["analyst", "poet"]})
        );
    } else {
        assert!(mapped.get(ACME).is_none());
    }
    assert_eq!(mapped["schemas"], json!(schemas));

    let outcome = host.on(&ada, UserEvent::Created);
    assert_eq!(
        outcome.action,
        Action::Created,
        "{}: {outcome:?}",
        peer.name
    );
    let remote = host.remote();
    assert_contains(peer.name, "", &mapped, &remote);

    // An update of the extension attributes reaches the server too; userType (create
    // only) is left as it is.
    let mut changed = ada.clone();
    set_field(&mut changed, "field_department", text("Analytical Engines"));
    set_field(&mut changed, "field_employee_number", text("1816"));
    if with_custom_extension {
        set_field(&mut changed, "field_badge", text("B-0043"));
        set_field(&mut changed, "field_vip", text("0"));
        set_field(&mut changed, "field_level", FieldValue::Number(4.0));
    }
    let outcome = host.on(&changed, UserEvent::Updated);
    assert_eq!(
        outcome.action,
        Action::Updated,
        "{}: {outcome:?}",
        peer.name
    );
    let remote = host.remote();
    assert_contains(peer.name, "", &host.mapped(&changed), &remote);
    assert_eq!(remote[ENTERPRISE]["department"], "Analytical Engines");
    assert_eq!(remote["userType"], "Employee");
    if with_custom_extension {
        assert_eq!(remote[ACME]["badge"], "0043");
        assert_eq!(remote[ACME]["vip"], false);
        assert_eq!(remote[ACME]["level"], 4);
    }
    assert_eq!(
        host.on(&changed, UserEvent::Updated).action,
        Action::Unchanged,
        "{}",
        peer.name
    );
}

#[test]
fn core_and_enterprise_attributes_read_back_from_scim2_server() {
    full_mapping_reads_back(&peers::scim2_server().expect("scim2-server starts"), false);
}

#[test]
fn core_enterprise_and_custom_attributes_read_back_from_scimmy() {
    full_mapping_reads_back(&peers::scimmy().expect("SCIMMY app starts"), true);
}

/// scim2-server 0.8.3 without `--schema` knows no custom extension and refuses it with a
/// 400; its `/Schemas` does not declare it either, so the component leaves the extension
/// out (naming it in one warning) and the user is created with everything else.
#[test]
fn scim2_server_gets_the_user_without_an_undeclared_custom_extension() {
    let peer = peers::scim2_server().expect("scim2-server starts");
    let mut rules = core_and_enterprise_rules();
    rules.extend(acme_rules());
    let mut host = Host::new(&peer, &policy(rules, json!({ "extensions": [ACME] })));
    let out = host.on(&ada("m"), UserEvent::Created);
    assert_eq!(out.action, Action::Created);
    let remote = host.remote();
    assert!(remote.get(ACME).is_none(), "{remote}");
    assert_eq!(remote["userName"], "ada");
    let lines = host.log.lock().map(|l| l.clone()).unwrap_or_default();
    let warnings: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("does not declare") && l.contains(ACME))
        .collect();
    assert_eq!(warnings.len(), 1, "{lines:#?}");
    assert_eq!(all_users(&peer).len(), 1);
}

/// A host whose policy maps `userName` and one extension attribute from `field_x`, with a
/// user created without that attribute.
fn extension_host<'p>(peer: &'p Peer, urn: &str, attr: &str) -> (Host<'p>, CmsUser) {
    let rules = vec![
        json!({"target": "userName", "source": "name"}),
        json!({"target": format!("{urn}:{attr}"), "source": "field_x"}),
    ];
    let extra = if urn == ACME {
        json!({ "extensions": [ACME] })
    } else {
        json!({})
    };
    let mut host = Host::new(peer, &policy(rules, extra));
    let u = user("7", true, vec![("name", text("quinn"))]);
    assert_eq!(host.on(&u, UserEvent::Created).action, Action::Created);
    assert!(host.remote().get(urn).is_none_or(Value::is_null));
    (host, u)
}

/// The first value of an extension the remote user does not have yet arrives by update.
fn extension_attribute_added_later(peer: &Peer, urn: &str, attr: &str) {
    let (mut host, mut u) = extension_host(peer, urn, attr);
    set_field(&mut u, "field_x", text("first"));
    assert_eq!(host.on(&u, UserEvent::Updated).action, Action::Updated);
    let remote = host.remote();
    assert_eq!(remote[urn][attr], "first", "{}: {remote}", peer.name);
    assert!(
        remote["schemas"]
            .as_array()
            .is_some_and(|s| s.contains(&json!(urn))),
        "{}: {remote}",
        peer.name
    );
    set_field(&mut u, "field_x", text("second"));
    assert_eq!(host.on(&u, UserEvent::Updated).action, Action::Updated);
    assert_eq!(host.remote()[urn][attr], "second", "{}", peer.name);
}

#[test]
fn enterprise_attribute_added_later_on_scim2_server() {
    extension_attribute_added_later(
        &peers::scim2_server().expect("scim2-server starts"),
        ENTERPRISE,
        "department",
    );
}

#[test]
fn enterprise_attribute_added_later_on_scimmy() {
    extension_attribute_added_later(
        &peers::scimmy().expect("SCIMMY app starts"),
        ENTERPRISE,
        "department",
    );
}

#[test]
fn custom_attribute_added_later_on_scimmy() {
    extension_attribute_added_later(&peers::scimmy().expect("SCIMMY app starts"), ACME, "badge");
}

/// Clearing the only attribute we map in an extension removes that attribute, not the
/// extension: an attribute of it that an admin set on the server (`other`) stays.
fn extension_attribute_cleared(peer: &Peer, urn: &str, attr: &str, other: (&str, Value)) {
    let (mut host, mut u) = extension_host(peer, urn, attr);
    set_field(&mut u, "field_x", text("first"));
    assert_eq!(host.on(&u, UserEvent::Updated).action, Action::Updated);
    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": format!("{urn}:{}", other.0), "value": other.1}],
    });
    let url = peer.url(&format!(
        "/Users/{}",
        host.link.as_ref().expect("link").remote_id
    ));
    let (status, body) = send_json("PATCH", &url, &peer.token, Some(&patch)).expect("PATCH");
    assert!(
        matches!(status, 200 | 204),
        "{}: {status} {body}",
        peer.name
    );
    assert_eq!(host.remote()[urn][other.0], other.1, "{}", peer.name);

    set_field(&mut u, "field_x", FieldValue::Null);
    let outcome = host.try_on(&u, UserEvent::Updated).unwrap_or_else(|e| {
        panic!(
            "{}: clearing {urn}:{attr} failed: {}\nrequests: {:#?}",
            peer.name,
            host_example::describe_error(&e),
            logged_requests(&host.log)
        )
    });
    assert_eq!(outcome.action, Action::Updated);
    let remote = host.remote();
    let left = remote
        .get(urn)
        .and_then(|e| e.get(attr))
        .filter(|v| !v.is_null());
    assert!(
        left.is_none(),
        "{}: {urn}:{attr} survived: {remote}",
        peer.name
    );
    assert_eq!(
        remote.get(urn).and_then(|e| e.get(other.0)),
        Some(&other.1),
        "{}: the admin's {urn}:{} was removed with ours: {remote}",
        peer.name,
        other.0
    );
}

#[test]
fn enterprise_attribute_cleared_on_scim2_server() {
    extension_attribute_cleared(
        &peers::scim2_server().expect("scim2-server starts"),
        ENTERPRISE,
        "department",
        ("costCenter", json!("CC-7")),
    );
}

#[test]
fn enterprise_attribute_cleared_on_scimmy() {
    extension_attribute_cleared(
        &peers::scimmy().expect("SCIMMY app starts"),
        ENTERPRISE,
        "department",
        ("costCenter", json!("CC-7")),
    );
}

#[test]
fn custom_attribute_cleared_on_scimmy() {
    extension_attribute_cleared(
        &peers::scimmy().expect("SCIMMY app starts"),
        ACME,
        "badge",
        ("level", json!(9)),
    );
}

// ---------------------------------------------------------------------------------------
// Transforms, visible on the server

fn transform_rules(with_date: bool) -> (Vec<Value>, Value) {
    let mut rules = vec![
        json!({"target": "userName", "source": "name", "transform": ["trim", "lower"]}),
        json!({"target": "emails[type eq \"work\"].value", "source": "mail",
               "transform": ["trim", "lower"]}),
        json!({"target": "displayName",
               "template": "{field_last_name}, {field_first_name} (#{@id})"}),
        json!({"target": "nickName", "source": "field_nick", "transform": ["trim", "upper"]}),
        json!({"target": format!("{ENTERPRISE}:employeeNumber"), "source": "field_badge",
               "transform": [{"regex_replace": {"pattern": "^B-0*(\\d+)$", "replacement": "E$1"}}]}),
        json!({"target": "active", "source": "field_enabled", "transform": ["bool"]}),
        json!({"target": "roles", "source": "field_groups",
               "transform": [{"split": ","}, "lower"]}),
    ];
    if with_date {
        rules.push(
            json!({"target": format!("{ACME}:memberSince"), "source": "created",
                          "transform": ["date"]}),
        );
        (rules, json!({ "extensions": [ACME] }))
    } else {
        (rules, json!({}))
    }
}

fn transforms_end_to_end(peer: &Peer, with_date: bool) {
    let (rules, extra) = transform_rules(with_date);
    let mut host = Host::new(peer, &policy(rules, extra));
    let mut u = user(
        "77",
        true,
        vec![
            ("name", text("  Rosa.Luxemburg ")),
            ("mail", text("\tRosa@Example.ORG  ")),
            ("field_first_name", text("Rosa")),
            ("field_last_name", text("Luxemburg")),
            ("field_nick", text(" red rosa ")),
            ("field_badge", text("B-000519")),
            ("field_enabled", text("0")),
            ("field_groups", text("Editors, ,Authors")),
            ("created", text("2023-11-14 22:13:20")),
        ],
    );
    let outcome = host.on(&u, UserEvent::Created);
    assert_eq!(
        outcome.action,
        Action::Created,
        "{}: {outcome:?}",
        peer.name
    );
    let remote = host.remote();
    let name = peer.name;
    assert_eq!(remote["userName"], "rosa.luxemburg", "{name}: trim, lower");
    assert_eq!(remote["emails"][0]["value"], "rosa@example.org", "{name}");
    assert_eq!(
        remote["displayName"], "Luxemburg, Rosa (#77)",
        "{name}: template"
    );
    assert_eq!(remote["nickName"], "RED ROSA", "{name}: trim, upper");
    assert_eq!(
        remote[ENTERPRISE]["employeeNumber"], "E519",
        "{name}: regex_replace"
    );
    assert_eq!(remote["active"], false, "{name}: bool from \"0\"");
    let roles: Vec<&str> = remote["roles"]
        .as_array()
        .map(|r| r.iter().filter_map(|x| x["value"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(roles, ["editors", "authors"], "{name}: split, lower");
    if with_date {
        assert_eq!(
            normalize_datetime(remote[ACME]["memberSince"].as_str().unwrap_or_default()),
            Some("2023-11-14T22:13:20Z".into()),
            "{name}: date: {remote}"
        );
    }

    // "1" turns the account on; a YYYY-MM-DD date is midnight UTC.
    set_field(&mut u, "field_enabled", text("1"));
    set_field(&mut u, "created", text("2024-02-29"));
    assert_eq!(host.on(&u, UserEvent::Updated).action, Action::Updated);
    let remote = host.remote();
    assert_eq!(remote["active"], true, "{name}: bool from \"1\"");
    if with_date {
        assert_eq!(
            normalize_datetime(remote[ACME]["memberSince"].as_str().unwrap_or_default()),
            Some("2024-02-29T00:00:00Z".into()),
            "{name}: date: {remote}"
        );
    }
}

#[test]
fn transforms_end_to_end_on_scim2_server() {
    transforms_end_to_end(&peers::scim2_server().expect("scim2-server starts"), false);
}

#[test]
fn transforms_end_to_end_on_scimmy() {
    transforms_end_to_end(&peers::scimmy().expect("SCIMMY app starts"), true);
}

/// A value `bool` cannot read fails that user, naming user, attribute and rule but not the
/// value; nothing is sent.
#[test]
fn unreadable_value_fails_the_user_and_sends_nothing() {
    let peer = peers::scim2_server().expect("scim2-server starts");
    let (rules, extra) = transform_rules(false);
    let mut host = Host::new(&peer, &policy(rules, extra));
    let u = user(
        "78",
        true,
        vec![("name", text("karl")), ("field_enabled", text("perhaps"))],
    );
    let err = host
        .try_on(&u, UserEvent::Created)
        .expect_err("bool cannot read \"perhaps\"");
    let text = host_example::describe_error(&err);
    assert!(text.contains("78") && text.contains("active"), "{text}");
    assert!(text.contains("mapping[5]"), "names the rule: {text}");
    assert!(
        !text.contains("perhaps"),
        "the value is not repeated: {text}"
    );
    assert!(logged_requests(&host.log).is_empty());
    assert!(all_users(&peer).is_empty());
}

// ---------------------------------------------------------------------------------------
// Validation at open

fn offline_settings(policy_json: &str) -> ConnectorSettings {
    ConnectorSettings {
        base_url: "https://scim.example/v2".into(),
        credentials: Credentials::Bearer("t0ken".into()),
        timeout_ms: 1000,
        policy_json: policy_json.into(),
    }
}

fn invalid_config(policy_json: &str) -> String {
    match open_err(&offline_settings(policy_json)) {
        ProvisioningError::InvalidConfig(m) => m,
        other => panic!("expected invalid-config for {policy_json}, got {other:?}"),
    }
}

#[test]
fn invalid_mappings_are_refused_at_open_naming_the_rule() {
    let user_name = json!({"target": "userName", "source": "name"});
    for (bad, needles) in [
        (
            json!({"target": "nickname2", "source": "x"}),
            vec!["mapping[1]", "nickname2"],
        ),
        (
            json!({"target": "emails[type eq \"work\"", "source": "mail"}),
            vec!["mapping[1]", "emails[type eq"],
        ),
        (
            json!({"target": "title", "source": "x", "transform": ["shout"]}),
            vec!["mapping[1]", "shout"],
        ),
        (
            json!({"target": format!("{ENTERPRISE}:shoeSize"), "source": "x"}),
            vec!["mapping[1]", "shoeSize"],
        ),
        (
            json!({"target": format!("{ACME}:badge"), "source": "x"}),
            vec!["mapping[1]", ACME],
        ),
        (
            json!({"target": "active", "template": "{x}"}),
            vec!["mapping[1]", "active"],
        ),
        (json!({"target": "title", "sorce": "x"}), vec!["sorce"]),
    ] {
        let message = invalid_config(&policy(vec![user_name.clone(), bad.clone()], json!({})));
        for needle in needles {
            assert!(
                message.contains(needle),
                "{bad}: {message:?} lacks {needle:?}"
            );
        }
    }

    // No userName rule.
    let message = invalid_config(&policy(
        vec![json!({"target": "displayName", "source": "name"})],
        json!({}),
    ));
    assert!(message.contains("userName"), "{message}");

    // Every problem at once, each by its rule.
    let message = invalid_config(&policy(
        vec![
            user_name,
            json!({"target": "nickname2", "source": "x"}),
            json!({"target": "title", "source": "x", "transform": ["shout"]}),
            json!({"target": "emails[type eq", "source": "x"}),
        ],
        json!({}),
    ));
    for needle in ["mapping[1]", "mapping[2]", "mapping[3]"] {
        assert!(message.contains(needle), "{message:?} lacks {needle}");
    }
}

// ---------------------------------------------------------------------------------------
// A required value missing at map time

fn missing_required_value(peer: &Peer) {
    let rules = vec![
        json!({"target": "userName", "source": "name"}),
        json!({"target": "emails[type eq \"work\"].value", "source": "mail",
               "transform": ["trim"], "required": true}),
        json!({"target": "externalId", "source": "@id"}),
    ];
    let mut host = Host::new(peer, &policy(rules, json!({})));

    let no_name = user("501", true, vec![("mail", text("x@example.com"))]);
    match host.try_on(&no_name, UserEvent::Created) {
        Err(ProvisioningError::MissingAttribute(m)) => {
            assert_eq!(m.user_id, "501");
            assert_eq!(m.attribute, "userName");
        }
        other => panic!("{}: expected missing-attribute, got {other:?}", peer.name),
    }

    let no_mail = user(
        "502",
        true,
        vec![("name", text("nomail")), ("mail", text("   "))],
    );
    match host.try_on(&no_mail, UserEvent::Created) {
        Err(ProvisioningError::MissingAttribute(m)) => {
            assert_eq!(m.user_id, "502");
            assert!(m.attribute.starts_with("emails"), "{m:?}");
        }
        other => panic!("{}: expected missing-attribute, got {other:?}", peer.name),
    }
    // map_user says the same without a server.
    assert!(matches!(
        host.session.map_user(&no_name).expect("no trap"),
        Err(ProvisioningError::MissingAttribute(_))
    ));
    assert!(
        logged_requests(&host.log).is_empty(),
        "{}: {:?}",
        peer.name,
        logged_requests(&host.log)
    );
    assert!(all_users(peer).is_empty(), "{}", peer.name);

    // A linked user whose required value goes missing is not touched either.
    let mut ok = user(
        "503",
        true,
        vec![("name", text("hasmail")), ("mail", text("h@example.com"))],
    );
    assert_eq!(host.on(&ok, UserEvent::Created).action, Action::Created);
    let writes_before = logged_writes(&host.log).len();
    set_field(&mut ok, "mail", FieldValue::Null);
    assert!(matches!(
        host.try_on(&ok, UserEvent::Updated),
        Err(ProvisioningError::MissingAttribute(_))
    ));
    assert_eq!(logged_writes(&host.log).len(), writes_before);
    assert_eq!(host.remote()["emails"][0]["value"], "h@example.com");
}

#[test]
fn missing_required_value_sends_nothing_to_scim2_server() {
    missing_required_value(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn missing_required_value_sends_nothing_to_scimmy() {
    missing_required_value(&peers::scimmy().expect("SCIMMY app starts"));
}

// ---------------------------------------------------------------------------------------
// Joomla

fn joomla_policy() -> String {
    json!({
        "mapping": [
            {"target": "userName", "source": "username"},
            {"target": "emails[type eq \"work\"].value", "source": "email",
             "transform": ["trim", "lower"]},
            {"target": "displayName", "source": "name"},
            {"target": "name.formatted", "source": "name"},
            {"target": "active", "source": "block", "transform": ["not"]},
            {"target": "roles", "source": "groups"},
            {"target": "externalId", "source": "@id"},
        ],
        "scope": {
            "all": [
                {"field": "block", "equals": false},
                {"field": "groups", "none_of": ["Super Users"]},
                {"any": [
                    {"field": "groups", "any_of": ["Registered"]},
                    {"field": "@id", "equals": "1"},
                ]},
            ]
        }
    })
    .to_string()
}

fn joomla_user(id: &str, username: &str, block: &str, groups: &[&str]) -> CmsUser {
    user(
        id,
        block == "0",
        vec![
            ("username", text(username)),
            ("email", text(" J.Smith@Example.ORG")),
            ("name", text("John Smith")),
            ("block", text(block)),
            (
                "groups",
                FieldValue::TextList(groups.iter().map(|g| g.to_string()).collect()),
            ),
        ],
    )
}

fn joomla(peer: &Peer) {
    let mut host = Host::new(peer, &joomla_policy());
    let mut jsmith = joomla_user("880", "jsmith", "0", &["Registered", "Author"]);
    let mapped = host.mapped(&jsmith);
    assert_eq!(
        mapped,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "jsmith",
            "emails": [{"type": "work", "value": "j.smith@example.org", "primary": true}],
            "displayName": "John Smith",
            "name": {"formatted": "John Smith"},
            "active": true,
            "roles": [{"value": "Registered"}, {"value": "Author"}],
            "externalId": "880",
        })
    );
    let outcome = host.on(&jsmith, UserEvent::Created);
    assert_eq!(
        outcome.action,
        Action::Created,
        "{}: {outcome:?}",
        peer.name
    );
    assert_contains(peer.name, "", &mapped, &host.remote());

    // Groups change: the roles follow.
    set_field(
        &mut jsmith,
        "groups",
        FieldValue::TextList(vec!["Registered".into(), "Editor".into()]),
    );
    assert_eq!(host.on(&jsmith, UserEvent::Updated).action, Action::Updated);
    let remote = host.remote();
    let roles: Vec<&str> = remote["roles"]
        .as_array()
        .map(|r| r.iter().filter_map(|x| x["value"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(roles, ["Registered", "Editor"], "{}: {remote}", peer.name);

    // Blocked in Joomla (block = 1): out of scope, deactivated remotely, not deleted.
    set_field(&mut jsmith, "block", text("1"));
    jsmith.active = false;
    let outcome = host.on(&jsmith, UserEvent::Blocked);
    assert_eq!(
        outcome.action,
        Action::Deactivated,
        "{}: {outcome:?}",
        peer.name
    );
    assert_eq!(host.remote()["active"], false);

    // Unblocked again.
    set_field(&mut jsmith, "block", text("0"));
    jsmith.active = true;
    let outcome = host.on(&jsmith, UserEvent::Unblocked);
    assert_eq!(
        outcome.action,
        Action::Updated,
        "{}: {outcome:?}",
        peer.name
    );
    assert_eq!(host.remote()["active"], true);

    // A Super User is never provisioned.
    let mut admin_host = Host::new(peer, &joomla_policy());
    let admin = joomla_user("1", "admin", "0", &["Super Users", "Registered"]);
    let outcome = admin_host.on(&admin, UserEvent::Created);
    assert_eq!(outcome.action, Action::Skipped, "{outcome:?}");
    assert!(outcome.reason.is_some());
    let users = all_users(peer);
    assert_eq!(users.len(), 1, "{}: {users:?}", peer.name);
    assert_eq!(users[0]["userName"], "jsmith");
}

#[test]
fn joomla_mapping_on_scim2_server() {
    joomla(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn joomla_mapping_on_scimmy() {
    joomla(&peers::scimmy().expect("SCIMMY app starts"));
}
