//! Unit tests of batch provisioning against a scripted SCIM server: which writes travel in
//! which BulkRequest, how each result becomes a user's outcome, and how every uncertain
//! answer falls back to the one-user path without losing or duplicating a user.

use serde_json::{Value, json};

use super::*;
use crate::client::fake::{FakeHttp, MemoryLog, json_response};
use crate::config::{Auth, ConnectorConfig};
use crate::error::TransportError;
use crate::error::{RetryClass, ScimError};
use crate::ports::HttpRequest;
use crate::user::FieldValue;

const BASE: &str = "https://app.example/scim/v2";
const BULK_URL: &str = "https://app.example/scim/v2/Bulk";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// Matching on userName alone keeps the scripts short: one look-up per creation.
/// Deleted users are deleted remotely, so each write kind appears.
const POLICY: &str = r#"{"matching": ["userName"], "deprovision": "delete",
    "operations": {"create": true, "update": true, "deactivate": true, "delete": true}}"#;

type Answer = Result<HttpResponse, TransportError>;

fn connector(script: Vec<Answer>) -> Connector<FakeHttp, MemoryLog> {
    let http = FakeHttp::new(vec![]);
    for answer in script {
        http.push(answer);
    }
    let config = ConnectorConfig::new(BASE, Auth::Bearer("t0ken".into()), 30_000).unwrap();
    Connector::open(config, POLICY, http, MemoryLog::default()).unwrap()
}

fn json_answer(status: u16, body: Value) -> Answer {
    Ok(json_response(status, body))
}

fn spc(bulk: Option<u32>) -> Answer {
    json_answer(
        200,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": {"supported": true},
            "bulk": {"supported": bulk.is_some(), "maxOperations": bulk.unwrap_or(0), "maxPayloadSize": 1_048_576},
            "filter": {"supported": true, "maxResults": 100},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": true},
            "authenticationSchemes": []
        }),
    )
}

fn list(resources: Vec<Value>) -> Answer {
    json_answer(
        200,
        json!({"schemas": [LIST_SCHEMA], "totalResults": resources.len(), "startIndex": 1,
               "itemsPerPage": resources.len(), "Resources": resources}),
    )
}

fn bulk_answer(operations: Value) -> Answer {
    json_answer(
        200,
        json!({"schemas": [crate::scim::message::BULK_RESPONSE_SCHEMA], "Operations": operations}),
    )
}

fn user(id: &str, name: &str, active: bool) -> CmsUser {
    CmsUser {
        id: id.into(),
        fields: vec![
            ("name".into(), FieldValue::Text(name.into())),
            (
                "mail".into(),
                FieldValue::Text(format!("{name}@example.com")),
            ),
        ],
        active,
    }
}

/// What the default mapping makes of [`user`] (no first or last name fields).
fn mapped(id: &str, name: &str, active: bool) -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "userName": name,
        "emails": [{"value": format!("{name}@example.com"), "type": "work", "primary": true}],
        "active": active,
        "externalId": id
    })
}

fn remote(id: &str, rid: &str, name: &str) -> Value {
    let mut r = mapped(id, name, true);
    r["id"] = json!(rid);
    r["meta"] = json!({"resourceType": "User", "version": "W/\"1\""});
    r
}

fn linked(rid: &str, snapshot: &Value) -> Link {
    Link {
        remote_id: rid.into(),
        version: Some("W/\"1\"".into()),
        snapshot: Some(snapshot.to_string()),
    }
}

fn item(user: CmsUser, event: UserEvent, link: Option<Link>) -> BatchItem {
    BatchItem { user, event, link }
}

/// The item and a user with nothing to do, so the batch holds two (a batch of one is sent
/// without bulk).
fn with_bystander(first: BatchItem) -> Vec<BatchItem> {
    vec![
        first,
        item(user("9", "zed", true), UserEvent::Deleted, None),
    ]
}

fn calls(c: &Connector<FakeHttp, MemoryLog>) -> Vec<String> {
    c.http.calls()
}

fn body(r: &HttpRequest) -> Value {
    serde_json::from_slice(r.body.as_deref().expect("a request body")).unwrap()
}

fn lookup(name: &str) -> String {
    format!("GET {BASE}/Users?filter=userName%20eq%20%22{name}%22&startIndex=1&count=10")
}

fn ok(result: &Result<ProvisionOutcome, ProvisioningError>) -> &ProvisionOutcome {
    result.as_ref().expect("a successful outcome")
}

/// A creation, an update, a deactivation and a deletion, as a reconcile sees them.
fn four_users() -> Vec<BatchItem> {
    let bob_before = mapped("2", "bob", true);
    let carol_before = mapped("3", "carol", true);
    vec![
        item(user("1", "alice", true), UserEvent::Reconcile, None),
        item(
            user("2", "robert", true),
            UserEvent::Reconcile,
            Some(linked("r2", &bob_before)),
        ),
        item(
            user("3", "carol", false),
            UserEvent::Blocked,
            Some(linked("r3", &carol_before)),
        ),
        item(
            user("4", "dave", true),
            UserEvent::Deleted,
            Some(linked("r4", &mapped("4", "dave", true))),
        ),
    ]
}

#[test]
fn writes_travel_in_bulk_requests_chunked_by_max_operations() {
    let c = connector(vec![
        spc(Some(2)),
        list(vec![]),
        bulk_answer(json!([
            {"method": "POST", "bulkId": "u0", "status": "201", "version": "W/\"1\"",
             "location": format!("{BASE}/Users/r1")},
            {"method": "PATCH", "status": "200", "version": "W/\"2\"",
             "location": format!("{BASE}/Users/r2")}
        ])),
        bulk_answer(json!([
            {"method": "PATCH", "status": "204", "version": "W/\"2\""},
            {"method": "DELETE", "status": "204", "location": format!("{BASE}/Users/r4")}
        ])),
    ]);
    let out = c.provision_batch(&four_users());
    assert_eq!(
        calls(&c),
        vec![
            format!("GET {BASE}/ServiceProviderConfig"),
            lookup("alice"),
            format!("POST {BULK_URL}"),
            format!("POST {BULK_URL}"),
        ]
    );
    let sent = c.http.sent();
    let first = body(&sent[2]);
    assert_eq!(
        first["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:BulkRequest"])
    );
    assert!(first.get("failOnErrors").is_none());
    assert_eq!(
        first["Operations"][0],
        json!({"method": "POST", "bulkId": "u0", "path": "/Users", "data": mapped("1", "alice", true)})
    );
    assert_eq!(first["Operations"][1]["method"], "PATCH");
    assert_eq!(first["Operations"][1]["path"], "/Users/r2");
    assert_eq!(first["Operations"][1]["version"], "W/\"1\"");
    let second = body(&sent[3]);
    assert_eq!(
        second["Operations"][0]["data"]["Operations"],
        json!([{"op": "replace", "path": "active", "value": false}])
    );
    assert_eq!(
        second["Operations"][1],
        json!({"method": "DELETE", "path": "/Users/r4"})
    );

    assert_eq!(out.results.len(), 4);
    let alice = ok(&out.results[0]);
    assert_eq!(alice.action, Action::Created);
    let link = alice.link.as_ref().unwrap();
    assert_eq!(link.remote_id, "r1");
    assert_eq!(link.version.as_deref(), Some("W/\"1\""));
    assert_eq!(
        serde_json::from_str::<Value>(link.snapshot.as_deref().unwrap()).unwrap(),
        mapped("1", "alice", true)
    );
    assert_eq!(
        alice.location.as_deref(),
        Some("https://app.example/scim/v2/Users/r1")
    );
    assert_eq!(alice.requests, 1, "its look-up");
    let bob = ok(&out.results[1]);
    assert_eq!(bob.action, Action::Updated);
    assert_eq!(
        bob.link.as_ref().unwrap().version.as_deref(),
        Some("W/\"2\"")
    );
    let carol = ok(&out.results[2]);
    assert_eq!(carol.action, Action::Deactivated);
    let snapshot: Value =
        serde_json::from_str(carol.link.as_ref().unwrap().snapshot.as_deref().unwrap()).unwrap();
    assert_eq!(snapshot["active"], json!(false));
    assert_eq!(ok(&out.results[3]).action, Action::Deleted);
    assert!(ok(&out.results[3]).link.is_none());
    assert_eq!(out.requests, 4);
    assert_eq!(out.bulk_requests, 2);
}

#[test]
fn results_travel_by_bulk_id_even_when_the_server_reorders_them() {
    let c = connector(vec![
        spc(Some(10)),
        list(vec![]),
        list(vec![]),
        bulk_answer(json!([
            {"method": "POST", "bulkId": "u1", "status": "201", "location": "/scim/v2/Users/rb"},
            {"method": "POST", "bulkId": "u0", "status": 201, "location": "/scim/v2/Users/ra"}
        ])),
    ]);
    let out = c.provision_batch(&[
        item(user("1", "alice", true), UserEvent::Created, None),
        item(user("2", "bob", true), UserEvent::Created, None),
    ]);
    assert_eq!(ok(&out.results[0]).link.as_ref().unwrap().remote_id, "ra");
    assert_eq!(ok(&out.results[1]).link.as_ref().unwrap().remote_id, "rb");
    // A relative location is completed against the base URL.
    assert_eq!(
        ok(&out.results[1]).location.as_deref(),
        Some("https://app.example/scim/v2/Users/rb")
    );
}

#[test]
fn a_conflict_in_the_bulk_answer_is_settled_by_adopting_the_existing_user() {
    let c = connector(vec![
        spc(Some(10)),
        list(vec![]),
        bulk_answer(json!([
            {"method": "POST", "bulkId": "u0", "status": "409",
             "response": {"schemas": [ERROR_SCHEMA], "status": "409", "scimType": "uniqueness"}}
        ])),
        // The one-user path looks again and finds the user someone else created.
        list(vec![remote("1", "r9", "alice")]),
    ]);
    let out = c.provision_batch(&with_bystander(item(
        user("1", "alice", true),
        UserEvent::Created,
        None,
    )));
    let alice = ok(&out.results[0]);
    assert_eq!(alice.action, Action::Adopted);
    assert_eq!(alice.link.as_ref().unwrap().remote_id, "r9");
    assert_eq!(
        calls(&c).iter().filter(|c| c.starts_with("POST")).count(),
        1,
        "no second creation"
    );
}

#[test]
fn an_operation_missing_from_the_answer_is_sent_again_on_its_own() {
    let bob_before = mapped("2", "bob", true);
    let c = connector(vec![
        spc(Some(10)),
        // RFC 7644 §3.7.3: a location names each result but a failed POST's.
        bulk_answer(
            json!([{"method": "DELETE", "status": "204", "location": format!("{BASE}/Users/r4")}]),
        ),
        json_answer(200, remote("2", "r2", "robert")),
    ]);
    let out = c.provision_batch(&[
        item(
            user("2", "robert", true),
            UserEvent::Updated,
            Some(linked("r2", &bob_before)),
        ),
        item(
            user("4", "dave", true),
            UserEvent::Deleted,
            Some(linked("r4", &mapped("4", "dave", true))),
        ),
    ]);
    assert_eq!(ok(&out.results[0]).action, Action::Updated);
    assert_eq!(ok(&out.results[1]).action, Action::Deleted);
    let calls = calls(&c);
    assert_eq!(calls.last().unwrap(), &format!("PATCH {BASE}/Users/r2"));
    assert_eq!(out.requests, 3);
}

#[test]
fn an_error_for_one_operation_is_that_users_error_only() {
    let c = connector(vec![
        spc(Some(10)),
        list(vec![]),
        list(vec![]),
        bulk_answer(json!([
            {"method": "POST", "bulkId": "u0", "status": "400",
             "response": {"schemas": [ERROR_SCHEMA], "status": "400", "scimType": "invalidValue",
                          "detail": "emails is malformed"}},
            {"method": "POST", "bulkId": "u1", "status": "201", "location": format!("{BASE}/Users/rb")}
        ])),
    ]);
    let out = c.provision_batch(&[
        item(user("1", "alice", true), UserEvent::Created, None),
        item(user("2", "bob", true), UserEvent::Created, None),
    ]);
    assert_eq!(
        out.results[0],
        Err(ProvisioningError::Scim(ScimError {
            status: 400,
            scim_type: Some("invalidValue".into()),
            detail: Some("emails is malformed".into()),
            retry: RetryClass::Permanent,
        }))
    );
    assert_eq!(ok(&out.results[1]).action, Action::Created);
}

#[test]
fn a_refused_bulk_request_fails_each_user_with_the_retry_class() {
    let mut busy = json_response(
        503,
        json!({"schemas": [ERROR_SCHEMA], "status": "503", "detail": "maintenance"}),
    );
    busy.headers.push(("Retry-After".into(), "30".into()));
    let c = connector(vec![spc(Some(10)), list(vec![]), Ok(busy)]);
    let out = c.provision_batch(&[
        item(user("1", "alice", true), UserEvent::Created, None),
        item(
            user("4", "dave", true),
            UserEvent::Deleted,
            Some(linked("r4", &mapped("4", "dave", true))),
        ),
    ]);
    for result in &out.results {
        match result {
            Err(ProvisioningError::Scim(e)) => {
                assert_eq!(e.status, 503);
                assert_eq!(e.retry, RetryClass::AfterSeconds(30));
            }
            other => panic!("expected a 503, got {other:?}"),
        }
    }
    assert_eq!(calls(&c).len(), 3, "nothing is retried at once");
}

#[test]
fn a_timed_out_bulk_request_is_checked_user_by_user_before_anything_is_created() {
    let c = connector(vec![
        spc(Some(10)),
        list(vec![]),
        Err(TransportError::Timeout),
        // The bulk request landed after all: the look-up finds the user, which is adopted.
        list(vec![remote("1", "r1", "alice")]),
    ]);
    let out = c.provision_batch(&with_bystander(item(
        user("1", "alice", true),
        UserEvent::Created,
        None,
    )));
    assert_eq!(ok(&out.results[0]).action, Action::Adopted);
    assert_eq!(
        calls(&c).iter().filter(|c| c.starts_with("POST")).count(),
        1
    );
}

#[test]
fn a_batch_of_one_is_sent_without_bulk() {
    let c = connector(vec![
        spc(Some(10)),
        list(vec![]),
        json_answer(201, remote("1", "r1", "alice")),
    ]);
    let out = c.provision_batch(&[item(user("1", "alice", true), UserEvent::Created, None)]);
    assert_eq!(ok(&out.results[0]).action, Action::Created);
    assert_eq!(calls(&c)[2], format!("POST {BASE}/Users"));
    assert_eq!(out.bulk_requests, 0);
}

#[test]
fn a_server_without_bulk_gets_one_request_per_user() {
    let c = connector(vec![
        spc(None),
        list(vec![]),
        json_answer(201, remote("1", "r1", "alice")),
    ]);
    let out = c.provision_batch(&[item(user("1", "alice", true), UserEvent::Created, None)]);
    assert_eq!(ok(&out.results[0]).action, Action::Created);
    assert_eq!(calls(&c)[2], format!("POST {BASE}/Users"));
    assert_eq!(out.bulk_requests, 0);
    assert_eq!(out.requests, 3);
}

#[test]
fn a_bulk_endpoint_that_is_not_there_is_given_up_for_good() {
    let c = connector(vec![
        spc(Some(10)),
        list(vec![]),
        list(vec![]),
        json_answer(
            501,
            json!({"schemas": [ERROR_SCHEMA], "status": "501", "detail": "not implemented"}),
        ),
        list(vec![]),
        json_answer(201, remote("1", "r1", "alice")),
        list(vec![]),
        json_answer(201, remote("3", "r3", "carol")),
        // The next batch goes straight to single requests.
        list(vec![]),
        json_answer(201, remote("2", "r2", "bob")),
        list(vec![]),
        json_answer(201, remote("4", "r4", "dave")),
    ]);
    let out = c.provision_batch(&[
        item(user("1", "alice", true), UserEvent::Created, None),
        item(user("3", "carol", true), UserEvent::Created, None),
    ]);
    assert_eq!(ok(&out.results[0]).action, Action::Created);
    assert_eq!(ok(&out.results[1]).action, Action::Created);
    let out = c.provision_batch(&[
        item(user("2", "bob", true), UserEvent::Created, None),
        item(user("4", "dave", true), UserEvent::Created, None),
    ]);
    assert_eq!(ok(&out.results[0]).action, Action::Created);
    assert_eq!(ok(&out.results[1]).action, Action::Created);
    assert_eq!(calls(&c).iter().filter(|c| c.ends_with("/Bulk")).count(), 1);
}

#[test]
fn unchanged_and_skipped_users_cost_no_write() {
    let carol = mapped("3", "carol", true);
    let c = connector(vec![spc(Some(10))]);
    let out = c.provision_batch(&[
        item(
            user("3", "carol", true),
            UserEvent::Reconcile,
            Some(linked("r3", &carol)),
        ),
        // Not linked and deleted: nothing to do.
        item(user("5", "erin", true), UserEvent::Deleted, None),
    ]);
    assert_eq!(ok(&out.results[0]).action, Action::Unchanged);
    assert_eq!(ok(&out.results[1]).action, Action::Skipped);
    assert_eq!(calls(&c).len(), 1);
    assert_eq!(out.bulk_requests, 0);
}

#[test]
fn an_unreadable_bulk_answer_never_duplicates_a_user() {
    let c = connector(vec![
        spc(Some(10)),
        list(vec![]),
        Ok(json_response(
            200,
            json!({"Operations": [{"status": "weird"}]}),
        )),
        list(vec![remote("1", "r1", "alice")]),
    ]);
    let out = c.provision_batch(&with_bystander(item(
        user("1", "alice", true),
        UserEvent::Created,
        None,
    )));
    assert_eq!(ok(&out.results[0]).action, Action::Adopted);
}

#[test]
fn a_version_missing_from_the_result_is_taken_from_the_returned_resource() {
    let bob_before = mapped("2", "bob", true);
    let mut returned = remote("2", "r2", "robert");
    returned["meta"]["version"] = json!("W/\"7\"");
    let c = connector(vec![
        spc(Some(10)),
        bulk_answer(json!([
            {"method": "PATCH", "status": "200", "location": format!("{BASE}/Users/r2"),
             "response": returned},
            {"method": "DELETE", "status": "204", "location": format!("{BASE}/Users/r4")}
        ])),
    ]);
    let out = c.provision_batch(&[
        item(
            user("2", "robert", true),
            UserEvent::Updated,
            Some(linked("r2", &bob_before)),
        ),
        item(
            user("4", "dave", true),
            UserEvent::Deleted,
            Some(linked("r4", &mapped("4", "dave", true))),
        ),
    ]);
    let bob = ok(&out.results[0]);
    assert_eq!(bob.action, Action::Updated);
    assert_eq!(
        bob.link.as_ref().unwrap().version.as_deref(),
        Some("W/\"7\"")
    );
    assert_eq!(out.requests, 2);
}

#[test]
fn listed_matches_are_read_and_brought_in_line_through_bulk() {
    let mut alice = remote("1", "ra", "alice");
    alice["active"] = json!(false);
    let bob = remote("2", "rb", "bob");
    let c = connector(vec![
        spc(Some(10)),
        // The listing a first sync makes.
        list(vec![
            json!({"id": "ra", "userName": "alice"}),
            json!({"id": "rb", "userName": "bob"}),
        ]),
        // Each match is read in full: adoption compares all it maps.
        json_answer(200, alice),
        json_answer(200, bob),
        bulk_answer(json!([
            {"method": "PATCH", "status": "200", "version": "W/\"2\"",
             "location": format!("{BASE}/Users/ra")},
            {"method": "POST", "bulkId": "u2", "status": "201",
             "location": format!("{BASE}/Users/rc")}
        ])),
    ]);
    assert_eq!(c.index_remote_users().unwrap().users, 2);
    let out = c.provision_batch(&[
        item(user("1", "alice", true), UserEvent::Reconcile, None),
        item(user("2", "bob", true), UserEvent::Reconcile, None),
        item(user("3", "carol", true), UserEvent::Reconcile, None),
    ]);
    assert_eq!(
        calls(&c)[2..],
        [
            format!("GET {BASE}/Users/ra"),
            format!("GET {BASE}/Users/rb"),
            format!("POST {BULK_URL}"),
        ]
    );
    let sent = c.http.sent();
    let bulk = body(&sent[4]);
    assert_eq!(bulk["Operations"][0]["method"], "PATCH");
    assert_eq!(bulk["Operations"][0]["path"], "/Users/ra");
    assert_eq!(bulk["Operations"][0]["version"], "W/\"1\"");
    assert_eq!(
        bulk["Operations"][0]["data"]["Operations"],
        json!([{"op": "replace", "path": "active", "value": true}])
    );
    assert_eq!(bulk["Operations"][1]["method"], "POST");

    let a = ok(&out.results[0]);
    assert_eq!(a.action, Action::Adopted);
    assert_eq!(a.link.as_ref().unwrap().remote_id, "ra");
    assert_eq!(a.link.as_ref().unwrap().version.as_deref(), Some("W/\"2\""));
    assert_eq!(a.requests, 1, "its read");
    let b = ok(&out.results[1]);
    assert_eq!(b.action, Action::Adopted, "already in line: no write");
    assert_eq!(b.link.as_ref().unwrap().remote_id, "rb");
    assert_eq!(ok(&out.results[2]).action, Action::Created);
    assert_eq!(out.requests, 3);
}

#[test]
fn a_patch_refused_inside_a_bulk_request_goes_as_put_and_is_remembered() {
    let bob_before = mapped("2", "bob", true);
    let c = connector(vec![
        spc(Some(10)),
        bulk_answer(json!([
            {"method": "PATCH", "status": "501", "location": format!("{BASE}/Users/r2"),
             "response": {"schemas": [ERROR_SCHEMA], "status": "501", "detail": "not implemented"}},
            {"method": "DELETE", "status": "204", "location": format!("{BASE}/Users/r4")}
        ])),
        json_answer(200, remote("2", "r2", "bob")),
        json_answer(200, remote("2", "r2", "robert")),
    ]);
    let out = c.provision_batch(&[
        item(
            user("2", "robert", true),
            UserEvent::Updated,
            Some(linked("r2", &bob_before)),
        ),
        item(
            user("4", "dave", true),
            UserEvent::Deleted,
            Some(linked("r4", &mapped("4", "dave", true))),
        ),
    ]);
    assert_eq!(ok(&out.results[0]).action, Action::Updated);
    assert_eq!(ok(&out.results[1]).action, Action::Deleted);
    let calls = calls(&c);
    assert_eq!(
        calls[calls.len() - 2..],
        [
            format!("GET {BASE}/Users/r2"),
            format!("PUT {BASE}/Users/r2")
        ]
    );
    assert!(c.export_dialect().contains("\"patchRefused\":true"));
}

/// A first 400 inside a bulk answer, for attributes the server's schema does not declare:
/// the schema is read once, and that user is sent again on its own, shaped to it.
#[test]
fn a_400_for_undeclared_attributes_inside_a_bulk_answer_reads_the_schema_and_retries_shaped() {
    let narrow = json!({"schemas": [LIST_SCHEMA], "totalResults": 1, "Resources": [{
        "id": USER_SCHEMA, "attributes": [
            {"name": "userName", "type": "string", "required": true},
            {"name": "active", "type": "boolean"},
            {"name": "emails", "type": "complex", "multiValued": true,
             "subAttributes": [{"name": "value"}]}]}]});
    let c = connector(vec![
        spc(Some(10)),
        list(vec![]),
        list(vec![]),
        bulk_answer(json!([
            {"method": "POST", "bulkId": "u0", "status": "400",
             "response": {"schemas": [ERROR_SCHEMA], "status": "400",
                          "detail": "Extra inputs are not permitted: emails, 0, primary"}},
            {"method": "POST", "bulkId": "u1", "status": "400",
             "response": {"schemas": [ERROR_SCHEMA], "status": "400",
                          "detail": "Extra inputs are not permitted: emails, 0, primary"}}
        ])),
        json_answer(200, narrow),
        json_answer(
            200,
            json!({"Resources": [{"schema": USER_SCHEMA, "schemaExtensions": []}]}),
        ),
        list(vec![]),
        json_answer(201, json!({"id": "ra", "userName": "alice"})),
        list(vec![]),
        json_answer(201, json!({"id": "rb", "userName": "bob"})),
    ]);
    let out = c.provision_batch(&[
        item(user("1", "alice", true), UserEvent::Created, None),
        item(user("2", "bob", true), UserEvent::Created, None),
    ]);
    assert_eq!(ok(&out.results[0]).action, Action::Created);
    assert_eq!(ok(&out.results[1]).action, Action::Created);
    let calls = calls(&c);
    assert_eq!(
        calls.iter().filter(|c| c.ends_with("/Schemas")).count(),
        1,
        "the schema is read once: {calls:?}"
    );
    let posts: Vec<HttpRequest> = c
        .http
        .sent()
        .into_iter()
        .filter(|r| r.url == format!("{BASE}/Users") && r.method == crate::ports::Method::Post)
        .collect();
    assert_eq!(posts.len(), 2);
    for post in &posts {
        let sent = body(post);
        assert_eq!(
            sent["emails"].as_array().unwrap()[0]
                .as_object()
                .unwrap()
                .len(),
            1,
            "{sent}"
        );
    }
    assert_eq!(out.requests as usize, calls.len());
}

/// Every request a batch makes is counted, a failed user's included (the sync's summary
/// once counted 3 requests for 4 POSTs that failed with 409).
#[test]
fn a_batch_counts_the_requests_of_users_that_failed() {
    let conflict = json_answer(
        409,
        json!({"schemas": [ERROR_SCHEMA], "status": "409", "detail": "UNIQUE constraint failed"}),
    );
    let c = connector(vec![
        spc(None),
        list(vec![]),
        conflict.clone(),
        list(vec![]),
        list(vec![]),
        conflict,
        list(vec![]),
    ]);
    let out = c.provision_batch(&[
        item(user("1", "alice", true), UserEvent::Created, None),
        item(user("2", "bob", true), UserEvent::Created, None),
    ]);
    assert!(out.results.iter().all(Result::is_err), "{:?}", out.results);
    assert_eq!(out.requests as usize, calls(&c).len(), "{:?}", calls(&c));
}

// ----------------------------------------------------------------------------------------
// `matching_look_up = "on_conflict"`: no look-up by userName before a bulk creation

fn on_conflict(script: Vec<Answer>) -> Connector<FakeHttp, MemoryLog> {
    let http = FakeHttp::new(vec![]);
    for answer in script {
        http.push(answer);
    }
    let config = ConnectorConfig::new(BASE, Auth::Bearer("t0ken".into()), 30_000).unwrap();
    let policy = r#"{"matching": ["userName"], "matching_look_up": "on_conflict"}"#;
    Connector::open(config, policy, http, MemoryLog::default()).unwrap()
}

fn created_pair() -> Vec<BatchItem> {
    vec![
        item(user("1", "alice", true), UserEvent::Created, None),
        item(user("2", "bob", true), UserEvent::Created, None),
    ]
}

#[test]
fn on_conflict_new_users_go_straight_into_one_bulk_request() {
    let c = on_conflict(vec![
        spc(Some(10)),
        bulk_answer(json!([
            {"method": "POST", "bulkId": "u0", "status": "201", "location": format!("{BASE}/Users/ra"),
             "response": remote("1", "ra", "alice")},
            {"method": "POST", "bulkId": "u1", "status": "201", "location": format!("{BASE}/Users/rb"),
             "response": remote("2", "rb", "bob")}
        ])),
    ]);
    let out = c.provision_batch(&created_pair());
    assert_eq!(ok(&out.results[0]).action, Action::Created);
    assert_eq!(ok(&out.results[1]).action, Action::Created);
    assert_eq!(
        calls(&c),
        vec![
            format!("GET {BASE}/ServiceProviderConfig"),
            format!("POST {BULK_URL}")
        ]
    );
    assert_eq!(out.requests, 2);
}

#[test]
fn on_conflict_a_409_in_the_bulk_answer_is_looked_up_and_adopted_without_a_second_post() {
    let c = on_conflict(vec![
        spc(Some(10)),
        bulk_answer(json!([
            {"method": "POST", "bulkId": "u0", "status": "409",
             "response": {"schemas": [ERROR_SCHEMA], "status": "409", "scimType": "uniqueness"}},
            {"method": "POST", "bulkId": "u1", "status": "201", "location": format!("{BASE}/Users/rb"),
             "response": remote("2", "rb", "bob")}
        ])),
        list(vec![remote("1", "r9", "alice")]),
    ]);
    let out = c.provision_batch(&created_pair());
    let alice = ok(&out.results[0]);
    assert_eq!(alice.action, Action::Adopted);
    assert_eq!(alice.link.as_ref().unwrap().remote_id, "r9");
    assert_eq!(ok(&out.results[1]).action, Action::Created);
    assert_eq!(
        calls(&c),
        vec![
            format!("GET {BASE}/ServiceProviderConfig"),
            format!("POST {BULK_URL}"),
            lookup("alice"),
        ]
    );
}

#[test]
fn on_conflict_a_lost_bulk_answer_looks_each_creation_up_before_anything_is_sent_again() {
    let c = on_conflict(vec![
        spc(Some(10)),
        Err(TransportError::Timeout),
        // The bulk request landed for alice only.
        list(vec![remote("1", "ra", "alice")]),
        list(vec![]),
        json_answer(201, remote("2", "rb", "bob")),
    ]);
    let out = c.provision_batch(&created_pair());
    assert_eq!(ok(&out.results[0]).action, Action::Adopted);
    assert_eq!(ok(&out.results[1]).action, Action::Created);
    assert_eq!(
        calls(&c),
        vec![
            format!("GET {BASE}/ServiceProviderConfig"),
            format!("POST {BULK_URL}"),
            lookup("alice"),
            lookup("bob"),
            format!("POST {BASE}/Users"),
        ]
    );
}

#[test]
fn on_conflict_an_operation_missing_from_the_answer_is_looked_up_before_it_is_sent_alone() {
    let c = on_conflict(vec![
        spc(Some(10)),
        // Only bob's result came back.
        bulk_answer(json!([
            {"method": "POST", "bulkId": "u1", "status": "201", "location": format!("{BASE}/Users/rb"),
             "response": remote("2", "rb", "bob")}
        ])),
        list(vec![remote("1", "ra", "alice")]),
    ]);
    let out = c.provision_batch(&created_pair());
    assert_eq!(ok(&out.results[0]).action, Action::Adopted);
    assert_eq!(ok(&out.results[1]).action, Action::Created);
    assert_eq!(
        calls(&c).iter().filter(|c| c.starts_with("POST")).count(),
        1,
        "{:?}",
        calls(&c)
    );
}

#[test]
fn on_conflict_a_400_uniqueness_in_the_bulk_answer_is_looked_up_and_adopted() {
    let c = on_conflict(vec![
        spc(Some(10)),
        bulk_answer(json!([
            {"method": "POST", "bulkId": "u0", "status": "400",
             "response": {"schemas": [ERROR_SCHEMA], "status": "400", "scimType": "uniqueness"}},
            {"method": "POST", "bulkId": "u1", "status": "201", "location": format!("{BASE}/Users/rb"),
             "response": remote("2", "rb", "bob")}
        ])),
        list(vec![remote("1", "r9", "alice")]),
    ]);
    let out = c.provision_batch(&created_pair());
    let alice = ok(&out.results[0]);
    assert_eq!(alice.action, Action::Adopted);
    assert_eq!(alice.link.as_ref().unwrap().remote_id, "r9");
    assert_eq!(
        calls(&c).iter().filter(|c| c.starts_with("POST")).count(),
        1,
        "{:?}",
        calls(&c)
    );
}
