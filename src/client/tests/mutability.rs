//! Unit tests of what `/Schemas` says about mutability (RFC 7643 §7) against a scripted
//! SCIM server: read-only attributes never sent, immutable ones sent on creation only and
//! a change to one said once, write-only ones never compared with the server; and a 409
//! for a user no listing shows.

use serde_json::{Value, json};

use crate::client::connector::Connector;
use crate::client::dialect::{DeclaredSchema, Dialect, Mutability};
use crate::client::fake::{FakeHttp, MemoryLog, json_response};
use crate::config::{Auth, ConnectorConfig};
use crate::error::{ProvisioningError, RetryClass, TransportError};
use crate::ports::HttpRequest;
use crate::scim::message::ERROR_SCHEMA;
use crate::user::{Action, CmsUser, FieldValue, Link, UserEvent};

const BASE: &str = "https://q.example/v2";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const LISTING: &str =
    "/Users?startIndex=1&count=100&attributes=id%2CuserName%2CexternalId%2Cemails";
const Q_ZED: &str = "/Users?filter=userName%20eq%20%22zed%22&startIndex=1&count=10";

type Answer = Result<crate::ports::HttpResponse, TransportError>;

fn connector(script: Vec<Answer>) -> Connector<FakeHttp, MemoryLog> {
    let http = FakeHttp::new(vec![]);
    for answer in script {
        http.push(answer);
    }
    let config = ConnectorConfig::new(BASE, Auth::Bearer("tok".into()), 30_000).unwrap();
    Connector::open(config, "", http, MemoryLog::default()).unwrap()
}

fn json(status: u16, body: Value) -> Answer {
    Ok(json_response(status, body))
}

fn spc(filter: bool) -> Answer {
    json(
        200,
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
               "patch": {"supported": true}, "bulk": {"supported": false},
               "filter": {"supported": filter, "maxResults": 200}, "etag": {"supported": false}}),
    )
}

fn list(resources: Vec<Value>) -> Answer {
    json(
        200,
        json!({"schemas": [LIST_SCHEMA], "totalResults": resources.len(), "startIndex": 1,
               "itemsPerPage": resources.len(), "Resources": resources}),
    )
}

fn attr(name: &str, mutability: &str) -> Value {
    json!({"name": name, "type": "string", "mutability": mutability})
}

/// The held-back server's `/Schemas`: `externalId` read-only, `userName` immutable, a
/// write-only password, and `name` whose `formatted` the server computes.
fn schemas() -> Value {
    json!({"schemas": [LIST_SCHEMA], "totalResults": 1, "Resources": [{"id": USER_SCHEMA, "attributes": [
        attr("userName", "immutable"), attr("externalId", "readOnly"), attr("displayName", "readWrite"),
        attr("password", "writeOnly"), {"name": "active", "type": "boolean"},
        {"name": "name", "type": "complex", "subAttributes": [
            {"name": "formatted", "mutability": "readOnly"}, {"name": "givenName"}, {"name": "familyName"}]},
        {"name": "emails", "type": "complex", "multiValued": true,
         "subAttributes": [{"name": "value"}, {"name": "type"}, {"name": "primary"}]}]}]})
}

fn declared() -> DeclaredSchema {
    DeclaredSchema::from_answers(&schemas(), None).unwrap()
}

/// A connector that knows the server's schema, as after a connection test.
fn knowing(filters: bool, script: Vec<Answer>) -> Connector<FakeHttp, MemoryLog> {
    let c = connector(script);
    *c.dialect.borrow_mut() = Dialect {
        schema: Some(Some(declared())),
        filters_unusable: !filters,
        ..Dialect::default()
    };
    c
}

fn text(name: &str, value: &str) -> (String, FieldValue) {
    (name.into(), FieldValue::Text(value.into()))
}

fn zed(name: &str, last: &str) -> CmsUser {
    CmsUser {
        id: "7".into(),
        fields: vec![
            text("name", name),
            text("mail", "zed@example.com"),
            text("field_first_name", "Zed"),
            text("field_last_name", last),
        ],
        active: true,
    }
}

/// Zed as the server holds him: created by someone else, so without our `externalId`.
fn remote_zed(last: &str) -> Value {
    json!({"schemas": [USER_SCHEMA], "id": "r1", "userName": "zed",
           "name": {"givenName": "Zed", "familyName": last, "formatted": format!("Zed {last}")},
           "displayName": format!("Zed {last}"), "active": true,
           "emails": [{"type": "work", "value": "zed@example.com", "primary": true}],
           "meta": {"resourceType": "User", "version": "W/\"1\""}})
}

fn calls(c: &Connector<FakeHttp, MemoryLog>) -> Vec<String> {
    c.http.calls()
}

fn sent(c: &Connector<FakeHttp, MemoryLog>, i: usize) -> HttpRequest {
    c.http.sent()[i].clone()
}

fn body(r: &HttpRequest) -> Value {
    serde_json::from_slice(r.body.as_deref().unwrap_or_default()).unwrap()
}

fn url(relative: &str) -> String {
    format!("{BASE}{relative}")
}

fn get(relative: &str) -> String {
    format!("GET {}", url(relative))
}

/// The paths a PATCH body's operations touch.
fn patch_paths(r: &HttpRequest) -> Vec<String> {
    body(r)["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["path"].as_str().unwrap_or("(none)").to_string())
        .collect()
}

fn snapshot(link: &Link) -> Value {
    serde_json::from_str(link.snapshot.as_deref().unwrap()).unwrap()
}

#[test]
fn mutability_is_read_from_schemas_and_kept_in_the_dialect_document() {
    let schema = declared();
    assert_eq!(
        schema.mutability(None, "USERNAME", None),
        Mutability::Immutable
    );
    assert_eq!(
        schema.mutability(None, "externalId", None),
        Mutability::ReadOnly
    );
    assert_eq!(
        schema.mutability(None, "name", Some("formatted")),
        Mutability::ReadOnly
    );
    assert_eq!(
        schema.mutability(None, "name", Some("givenName")),
        Mutability::ReadWrite
    );
    assert_eq!(
        schema.mutability(None, "password", None),
        Mutability::WriteOnly
    );
    assert_eq!(
        schema.mutability(None, "nickName", None),
        Mutability::ReadWrite,
        "undeclared"
    );
    let dialect = Dialect {
        schema: Some(Some(schema.clone())),
        ..Dialect::default()
    };
    let back = Dialect::from_document(&dialect.to_document()).unwrap();
    assert_eq!(back, dialect);
    assert_eq!(
        back.declared()
            .unwrap()
            .mutability(None, "name", Some("formatted")),
        Mutability::ReadOnly
    );
}

#[test]
fn what_the_server_will_not_take_is_left_out_and_immutable_changes_are_named() {
    let schema = declared();
    let resource = json!({"schemas": [USER_SCHEMA], "userName": "zed", "externalId": "7",
        "name": {"formatted": "Zed Zulu", "givenName": "Zed"}, "password": "p"});
    let mut removed = Vec::new();
    let for_create = schema.without(&resource, |m| m == Mutability::ReadOnly, &mut removed);
    assert_eq!(
        for_create,
        json!({"schemas": [USER_SCHEMA], "userName": "zed", "name": {"givenName": "Zed"}, "password": "p"})
    );
    assert_eq!(removed, vec!["externalId", "name.formatted"]);
    let for_update = schema.without(
        &resource,
        |m| matches!(m, Mutability::ReadOnly | Mutability::Immutable),
        &mut Vec::new(),
    );
    assert_eq!(
        for_update,
        json!({"schemas": [USER_SCHEMA], "name": {"givenName": "Zed"}, "password": "p"})
    );
    let changes = schema.immutable_changes(
        &json!({"userName": "zed", "name": {"givenName": "Zed"}}),
        &json!({"userName": "zed2", "name": {"givenName": "Zedd"}}),
    );
    assert_eq!(changes, vec![("userName".to_string(), Some(json!("zed")))]);
    let mut old = json!({"userName": "zed"});
    schema.fill_unreturned(&mut old, &json!({"userName": "zed", "password": "p"}));
    assert_eq!(old, json!({"userName": "zed", "password": "p"}));
    // Hostile values are walked without panic.
    for odd in [
        json!(null),
        json!([1, 2]),
        json!({"name": 5, "emails": [1, {"value": 2}]}),
    ] {
        let _ = schema.without(&odd, |_| true, &mut Vec::new());
        let _ = schema.immutable_changes(&odd, &odd);
        let mut o = odd.clone();
        schema.fill_unreturned(&mut o, &odd);
    }
}

/// The held-back server of issue 29: no filters, `externalId` read-only, `userName`
/// immutable. A person already there is adopted without `externalId` in the PATCH; the
/// next call sends nothing; a rename is said once and the other changes still go.
#[test]
fn adoption_rename_and_update_on_a_server_with_read_only_and_immutable_attributes() {
    let c = knowing(
        false,
        vec![
            spc(false),
            list(vec![remote_zed("Old")]),
            json(200, remote_zed("Old")),
            json(200, remote_zed("Zulu")),
        ],
    );
    let out = c
        .provision(&zed("zed", "Zulu"), UserEvent::Created, None)
        .unwrap();
    assert_eq!(out.action, Action::Adopted, "{out:?}");
    assert_eq!(out.reason, None);
    assert_eq!(
        calls(&c),
        vec![
            get("/ServiceProviderConfig"),
            get(LISTING),
            get("/Users/r1"),
            format!("PATCH {}", url("/Users/r1")),
        ]
    );
    let paths = patch_paths(&sent(&c, 3));
    assert!(
        !paths.iter().any(|p| p.eq_ignore_ascii_case("externalId")),
        "{paths:?}"
    );
    assert!(paths.contains(&"name.familyName".to_string()), "{paths:?}");
    let link = out.link.unwrap();
    assert!(snapshot(&link).get("externalId").is_none());

    // Nothing changed: nothing sent.
    let out = c
        .provision(&zed("zed", "Zulu"), UserEvent::Updated, Some(&link))
        .unwrap();
    assert_eq!((out.action, out.requests), (Action::Unchanged, 0));

    // A rename alone: nothing to send, said once; the link keeps the CMS's name.
    let out = c
        .provision(&zed("zed2", "Zulu"), UserEvent::Updated, Some(&link))
        .unwrap();
    assert_eq!((out.action, out.requests), (Action::Unchanged, 0));
    let reason = out.reason.unwrap();
    assert!(
        reason.contains("userName cannot change on this server (immutable)"),
        "{reason}"
    );
    assert!(reason.contains("\"zed\""), "{reason}");
    let link = out.link.unwrap();
    assert_eq!(snapshot(&link)["userName"], "zed2");
    let out = c
        .provision(&zed("zed2", "Zulu"), UserEvent::Updated, Some(&link))
        .unwrap();
    assert_eq!(
        (out.action, out.requests, out.reason),
        (Action::Unchanged, 0, None)
    );

    // A rename with another change: the other change goes, the rename is said.
    c.http.push(json(200, remote_zed("Zimmer")));
    let out = c
        .provision(&zed("zed3", "Zimmer"), UserEvent::Updated, Some(&link))
        .unwrap();
    assert_eq!(out.action, Action::Updated);
    assert!(out.reason.unwrap().contains("userName cannot change"));
    let last = c.http.sent().len() - 1;
    let paths = patch_paths(&sent(&c, last));
    assert!(!paths.iter().any(|p| p.eq_ignore_ascii_case("userName")));
    assert!(paths.contains(&"name.familyName".to_string()), "{paths:?}");
}

#[test]
fn a_created_user_is_posted_without_read_only_attributes() {
    let c = knowing(
        true,
        vec![
            spc(true),
            list(vec![]),
            list(vec![]),
            json(
                201,
                json!({"id": "n1", "userName": "zed", "meta": {"version": "W/\"1\""}}),
            ),
        ],
    );
    let out = c
        .provision(&zed("zed", "Zulu"), UserEvent::Created, None)
        .unwrap();
    assert_eq!(out.action, Action::Created);
    let post = c.http.sent().last().cloned().unwrap();
    let posted = body(&post);
    assert!(posted.get("externalId").is_none(), "{posted}");
    assert!(posted["name"].get("formatted").is_none(), "{posted}");
    assert_eq!(posted["userName"], "zed", "immutable: sent on creation");
    // The userName look-up went first: one filtered GET per matching attribute that has
    // a value (externalId is read-only here, so it is not one).
    assert_eq!(calls(&c)[1], get(Q_ZED));
    let out = c
        .provision(&zed("zed", "Zulu"), UserEvent::Updated, out.link.as_ref())
        .unwrap();
    assert_eq!((out.action, out.requests), (Action::Unchanged, 0));
}

/// A PATCH refused with `mutability` before the schema was read: the schema is read, and
/// the adoption sent once more without the read-only attribute.
#[test]
fn a_mutability_refusal_reads_the_schema_and_sends_again_without_it() {
    let refused = json!({"schemas": [ERROR_SCHEMA], "status": "400", "scimType": "mutability",
                         "detail": "'externalId' is read-only"});
    let c = connector(vec![
        spc(true),
        list(vec![remote_zed("Zulu")]),
        json(400, refused),
        json(200, schemas()),
        json(404, json!({})),
        list(vec![remote_zed("Zulu")]),
    ]);
    let out = c
        .provision(&zed("zed", "Zulu"), UserEvent::Created, None)
        .unwrap();
    assert_eq!(out.action, Action::Adopted, "{out:?} {:?}", calls(&c));
    let sent_all = c.http.sent();
    let first = patch_paths(&sent_all[2]);
    assert!(first.iter().any(|p| p == "externalId"), "{first:?}");
    // Once externalId is left out, the server's Zed is Zed already: nothing more is sent.
    assert_eq!(
        calls(&c)[3..].to_vec(),
        vec![get("/Schemas"), get("/ResourceTypes"), get(Q_ZED)]
    );
    assert!(snapshot(&out.link.unwrap()).get("externalId").is_none());
}

/// A 409 for a userName no listing shows: permanent, with what to do about it.
#[test]
fn a_conflict_for_a_user_no_listing_shows_is_permanent_and_says_what_to_do() {
    let someone = json!({"schemas": [USER_SCHEMA], "id": "s", "userName": "someone"});
    let conflict = json!({"schemas": [ERROR_SCHEMA], "status": "409", "scimType": "uniqueness",
                          "detail": "UNIQUE constraint failed: peer_user.username"});
    let c = connector(vec![
        spc(false),
        list(vec![someone.clone()]),
        json(409, conflict),
        list(vec![someone]),
    ]);
    match c.provision(&zed("zed", "Zulu"), UserEvent::Created, None) {
        Err(ProvisioningError::Scim(e)) => {
            assert_eq!((e.status, e.retry), (409, RetryClass::Permanent));
            let detail = e.detail.unwrap();
            assert!(
                detail.contains("already holds userName \"zed\" but does not list it"),
                "{detail}"
            );
            assert!(detail.contains("then Retry"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(calls(&c).len(), 4);
}

/// On a server without filters or uniqueness, a user this connector created joins its
/// listing: a second `created` of the same person (a lost link, a retried event) adopts
/// the first instead of posting a second copy.
#[test]
fn a_user_created_here_is_found_by_a_second_creation_not_posted_again() {
    let c = connector(vec![spc(false), list(vec![])]);
    let posted_zed = || {
        let mut r = c.map_user(&zed("zed", "Zulu")).unwrap();
        r["id"] = json!("n1");
        r["meta"] = json!({"version": "W/\"1\""});
        r
    };
    c.http.push(json(201, posted_zed()));
    let out = c
        .provision(&zed("zed", "Zulu"), UserEvent::Created, None)
        .unwrap();
    assert_eq!(out.action, Action::Created);
    c.http.push(json(200, posted_zed()));
    let out = c
        .provision(&zed("zed", "Zulu"), UserEvent::Created, None)
        .unwrap();
    assert_eq!(out.action, Action::Adopted, "{:?}", calls(&c));
    assert_eq!(out.link.unwrap().remote_id, "n1");
    assert_eq!(
        calls(&c),
        vec![
            get("/ServiceProviderConfig"),
            get(LISTING),
            format!("POST {}", url("/Users")),
            get("/Users/n1"),
        ]
    );
}
