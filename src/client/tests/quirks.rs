//! Unit tests of the fallbacks for quirky servers against a scripted SCIM server: PATCH
//! refused, filters unsupported or ignored, 409 without `scimType`, timeouts on POST,
//! paging 500s, narrow `/Schemas`, and what a connection test reports.

use serde_json::{Value, json};

use super::*;
use crate::client::fake::{FakeHttp, MemoryLog, empty_response, json_response};
use crate::client::verdict::more_expected;
use crate::config::{Auth, ConnectorConfig};
use crate::error::RetryClass;
use crate::error::TransportError;
use crate::ports::HttpRequest;
use crate::scim::message::ERROR_SCHEMA;
use crate::user::{Action, FieldValue, Link, UserEvent};

const BASE: &str = "https://q.example/v2";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const RID: &str = "r1";

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

fn spc(patch: bool, filter: bool) -> Answer {
    json(
        200,
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
               "patch": {"supported": patch}, "bulk": {"supported": false},
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

fn scim_error(status: u16, scim_type: Option<&str>, detail: &str) -> Answer {
    let mut body =
        json!({"schemas": [ERROR_SCHEMA], "status": status.to_string(), "detail": detail});
    if let Some(t) = scim_type {
        body["scimType"] = json!(t);
    }
    json(status, body)
}

fn text(name: &str, value: &str) -> (String, FieldValue) {
    (name.into(), FieldValue::Text(value.into()))
}

fn zed() -> CmsUser {
    CmsUser {
        id: "7".into(),
        fields: vec![
            text("name", "zed"),
            text("mail", "zed@example.com"),
            text("field_first_name", "Zed"),
            text("field_last_name", "Zulu"),
        ],
        active: true,
    }
}

fn remote_zed() -> Value {
    json!({"schemas": [USER_SCHEMA], "id": RID, "userName": "zed", "externalId": "7",
           "name": {"givenName": "Zed", "familyName": "Zulu", "formatted": "Zed Zulu"},
           "displayName": "Zed Zulu", "active": true, "nickName": "zz",
           "emails": [{"type": "work", "value": "zed@example.com", "primary": true}]})
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

fn logs(c: &Connector<FakeHttp, MemoryLog>) -> Vec<String> {
    c.log.0.borrow().clone()
}

fn url(relative: &str) -> String {
    format!("{BASE}{relative}")
}

const LISTING: &str =
    "/Users?startIndex=1&count=100&attributes=id%2CuserName%2CexternalId%2Cemails";
const Q_ZED: &str = "/Users?filter=userName%20eq%20%22zed%22&startIndex=1&count=10";

fn get(relative: &str) -> String {
    format!("GET {}", url(relative))
}

fn changed_zed() -> CmsUser {
    let mut user = zed();
    user.fields[3] = text("field_last_name", "Zimmer");
    user
}

fn zed_link() -> Link {
    let c = connector(vec![]);
    Link {
        remote_id: RID.into(),
        version: None,
        snapshot: Some(c.map_user(&zed()).unwrap().to_string()),
    }
}

// ----------------------------------------------------------------------------------------
// PATCH refused
// ----------------------------------------------------------------------------------------

#[test]
fn a_refused_patch_is_sent_as_put_and_later_updates_go_straight_to_put() {
    for refusal in [
        scim_error(501, None, "not implemented"),
        scim_error(400, Some("noTarget"), "no"),
        scim_error(400, Some("invalidPath"), "no"),
        scim_error(405, None, "no"),
    ] {
        let status = refusal.as_ref().map(|r| r.status).unwrap_or_default();
        let c = connector(vec![
            spc(true, true),
            refusal,
            json(200, remote_zed()),
            json(200, remote_zed()),
        ]);
        let out = c
            .provision(&changed_zed(), UserEvent::Updated, Some(&zed_link()))
            .unwrap();
        assert_eq!(out.action, Action::Updated, "{status}");
        assert_eq!(
            calls(&c),
            vec![
                get("/ServiceProviderConfig"),
                format!("PATCH {}", url("/Users/r1")),
                get("/Users/r1"),
                format!("PUT {}", url("/Users/r1")),
            ],
            "{status}"
        );
        let put = body(&sent(&c, 3));
        assert_eq!(put["name"]["familyName"], "Zimmer");
        assert_eq!(put["nickName"], "zz", "what we do not map survives the PUT");
        assert!(logs(&c).iter().any(|l| l.contains("updates go as PUT")));

        // The next update on the same connector skips the PATCH.
        c.http.push(json(200, remote_zed()));
        c.http.push(json(200, remote_zed()));
        let link = out.link.unwrap();
        let mut again = changed_zed();
        again.fields[2] = text("field_first_name", "Zeb");
        c.provision(&again, UserEvent::Updated, Some(&link))
            .unwrap();
        let tail: Vec<String> = calls(&c).into_iter().skip(4).collect();
        assert_eq!(
            tail,
            vec![get("/Users/r1"), format!("PUT {}", url("/Users/r1"))]
        );
        assert!(c.export_dialect().contains("\"patchRefused\":true"));
    }
}

#[test]
fn a_refused_deactivation_patch_is_a_put_with_active_false() {
    let c = connector(vec![
        spc(true, true),
        scim_error(501, None, "not implemented"),
        json(200, remote_zed()),
        json(200, remote_zed()),
    ]);
    let mut blocked = zed();
    blocked.active = false;
    let out = c
        .provision(&blocked, UserEvent::Blocked, Some(&zed_link()))
        .unwrap();
    assert_eq!(out.action, Action::Deactivated);
    let put = body(&sent(&c, 3));
    assert_eq!(put["active"], false);
    assert_eq!(put["userName"], "zed");
}

#[test]
fn a_501_is_permanent_and_a_500_backs_off() {
    let none = || list(vec![]);
    let c = connector(vec![
        spc(false, true),
        none(),
        none(),
        none(),
        scim_error(501, None, "no"),
    ]);
    let err = c.provision(&zed(), UserEvent::Created, None).unwrap_err();
    assert_eq!(err.retry_class(), RetryClass::Permanent);
    let c = connector(vec![
        spc(false, true),
        none(),
        none(),
        none(),
        scim_error(500, None, "oops"),
    ]);
    let err = c.provision(&zed(), UserEvent::Created, None).unwrap_err();
    assert_eq!(err.retry_class(), RetryClass::Backoff);
}

// ----------------------------------------------------------------------------------------
// No filters, 409, timeouts
// ----------------------------------------------------------------------------------------

#[test]
fn a_409_without_scim_type_on_a_server_without_filters_lists_and_adopts() {
    let someone = json!({"schemas": [USER_SCHEMA], "id": "s", "userName": "someone"});
    let c = connector(vec![
        spc(true, false),
        // Matching before the POST: the listing does not have zed yet.
        list(vec![someone.clone()]),
        scim_error(409, None, "UNIQUE constraint failed: users.user_name"),
        // After the 409: a fresh listing has zed, who is read in full and adopted.
        list(vec![someone, remote_zed()]),
        json(200, remote_zed()),
    ]);
    let out = c.provision(&zed(), UserEvent::Created, None).unwrap();
    assert_eq!(out.action, Action::Adopted);
    assert_eq!(out.link.unwrap().remote_id, RID);
    assert_eq!(
        calls(&c),
        vec![
            get("/ServiceProviderConfig"),
            get(LISTING),
            format!("POST {}", url("/Users")),
            get(LISTING),
            get("/Users/r1"),
        ]
    );
}

#[test]
fn a_post_that_timed_out_on_a_server_without_filters_is_found_by_listing() {
    let c = connector(vec![
        spc(true, false),
        list(vec![]),
        Err(TransportError::Timeout),
        list(vec![remote_zed()]),
        json(200, remote_zed()),
    ]);
    let out = c.provision(&zed(), UserEvent::Created, None).unwrap();
    assert_eq!(out.action, Action::Adopted);
    assert_eq!(
        calls(&c).iter().filter(|c| c.starts_with("POST")).count(),
        1
    );
}

#[test]
fn a_server_that_ignores_filters_is_listed_so_a_user_it_did_not_return_is_found() {
    let others: Vec<Value> = (0..10)
        .map(|i| json!({"schemas": [USER_SCHEMA], "id": format!("o{i}"), "userName": format!("u{i}")}))
        .collect();
    let mut everyone = others.clone();
    everyone.push(remote_zed());
    let c = connector(vec![
        spc(true, true),
        // The filter is ignored: the first ten users, none of them zed.
        list(others),
        list(everyone),
        json(200, remote_zed()),
    ]);
    let out = c.provision(&zed(), UserEvent::Created, None).unwrap();
    assert_eq!(out.action, Action::Adopted, "{:?}", calls(&c));
    assert_eq!(
        calls(&c),
        vec![
            get("/ServiceProviderConfig"),
            get(Q_ZED),
            get(LISTING),
            get("/Users/r1")
        ]
    );
    assert!(c.export_dialect().contains("\"filtersUnusable\":true"));
}

#[test]
fn a_server_that_refuses_a_user_name_filter_is_listed() {
    let c = connector(vec![
        spc(true, true),
        scim_error(400, Some("invalidFilter"), "no filters here"),
        list(vec![remote_zed()]),
        json(200, remote_zed()),
    ]);
    let out = c.provision(&zed(), UserEvent::Created, None).unwrap();
    assert_eq!(out.action, Action::Adopted);
    assert_eq!(calls(&c)[2], get(LISTING));
}

// ----------------------------------------------------------------------------------------
// Paging 500
// ----------------------------------------------------------------------------------------

#[test]
fn a_list_answered_500_for_paging_is_asked_again_without_and_remembered() {
    let c = connector(vec![
        spc(true, true),
        json(500, json!({"detail": "Internal Server Error"})),
        list(vec![]),
        list(vec![]),
        list(vec![]),
        json(201, remote_zed()),
    ]);
    let out = c.provision(&zed(), UserEvent::Created, None).unwrap();
    assert_eq!(out.action, Action::Created);
    assert_eq!(
        calls(&c)[1..3],
        [get(Q_ZED), get("/Users?filter=userName%20eq%20%22zed%22")]
    );
    // Later lists leave the paging parameters out at once.
    c.http.push(list(vec![remote_zed()]));
    assert_eq!(c.index_remote_users().unwrap().users, 1);
    assert_eq!(
        calls(&c).last().unwrap(),
        &get("/Users?attributes=id%2CuserName%2CexternalId%2Cemails")
    );
}

const ATTRS: &str = "attributes=id%2CuserName%2CexternalId%2Cemails";

fn page(total: u64, ids: &[&str]) -> Answer {
    let resources: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "userName": format!("name-{id}")}))
        .collect();
    json(
        200,
        json!({"schemas": [LIST_SCHEMA], "totalResults": total, "Resources": resources}),
    )
}

/// A server without filters whose lists fail with paging parameters and whose plain
/// `GET /Users` is a page of its choosing: the other ways to page are tried, each fails,
/// and a user the page does not hold is refused, never POSTed.
#[test]
fn an_unpaged_listing_that_is_only_a_page_never_lets_a_user_be_created() {
    let c = connector(vec![
        spc(true, false),
        json(500, json!({"detail": "Internal Server Error"})),
        page(5, &["a"]),
        json(500, json!({})),
        json(500, json!({})),
        scim_error(404, None, "User .search not found"),
    ]);
    let listing = c.index_remote_users().unwrap();
    assert_eq!(listing.users, 1);
    assert_eq!(listing.requests, 6);
    assert_eq!(
        calls(&c)[3..],
        [
            get(&format!("/Users?startIndex=2&{ATTRS}")),
            get(&format!("/Users?count=5&{ATTRS}")),
            format!("POST {}", url("/Users/.search")),
        ]
    );
    let search = body(&sent(&c, 5));
    assert_eq!(search["startIndex"], 1);
    assert_eq!(
        search["attributes"],
        json!(["id", "userName", "externalId", "emails"])
    );
    // The listing says it is incomplete, also to another connector that loads it.
    let document = c.export_remote_index().unwrap();
    assert!(document.contains("\"incomplete\""), "{document}");
    let err = c.provision(&zed(), UserEvent::Created, None).unwrap_err();
    assert_eq!(err.retry_class(), RetryClass::Permanent);
    let text = err.to_string();
    assert!(
        text.contains("cannot verify that the user is not already on the server")
            && text.contains("lists 1 of its 5 users"),
        "{text}"
    );
    assert_eq!(
        calls(&c).len(),
        6,
        "no request, and no POST: {:?}",
        calls(&c)
    );
    let other = connector(vec![spc(true, false)]);
    other.import_remote_index(&document).unwrap();
    assert!(
        other
            .provision(&zed(), UserEvent::Created, None)
            .unwrap_err()
            .to_string()
            .contains("cannot verify")
    );
    assert!(!calls(&other).iter().any(|c| c.starts_with("POST")));
}

/// The same server, without a listing made beforehand: the look-up lists, and refuses.
#[test]
fn a_look_up_on_such_a_server_refuses_to_create() {
    let c = connector(vec![
        spc(true, false),
        json(500, json!({})),
        page(0, &["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]),
        json(500, json!({})),
        json(500, json!({})),
        json(405, json!({})),
    ]);
    let err = c.provision(&zed(), UserEvent::Created, None).unwrap_err();
    assert!(err.to_string().contains("cannot verify"), "{err}");
    assert!(!calls(&c).contains(&format!("POST {}", url("/Users"))));
    assert_eq!(calls(&c)[4], get(&format!("/Users?count=1000&{ATTRS}")));
    // A user the page holds is adopted all the same.
    let c = connector(vec![
        spc(true, false),
        json(500, json!({})),
        json(
            200,
            json!({"schemas": [LIST_SCHEMA], "totalResults": 9, "Resources": [remote_zed()]}),
        ),
        json(500, json!({})),
        json(500, json!({})),
        json(501, json!({})),
        json(200, remote_zed()),
    ]);
    let out = c.provision(&zed(), UserEvent::Created, None).unwrap();
    assert_eq!(out.action, Action::Adopted);
}

#[test]
fn the_other_ways_to_page_complete_the_listing_when_they_work() {
    // startIndex alone.
    let c = connector(vec![
        spc(true, false),
        json(500, json!({})),
        page(3, &["a"]),
        page(3, &["b", "c"]),
    ]);
    assert_eq!(c.index_remote_users().unwrap().users, 3);
    assert_eq!(c.index_incomplete(), None);
    // startIndex ignored (the first page again), then count alone.
    let c = connector(vec![
        spc(true, false),
        json(500, json!({})),
        page(3, &["a"]),
        page(3, &["a"]),
        page(3, &["a", "b", "c"]),
    ]);
    assert_eq!(c.index_remote_users().unwrap().users, 3);
    assert_eq!(c.index_incomplete(), None);
    // A search request, paged in its body.
    let c = connector(vec![
        spc(true, false),
        json(500, json!({})),
        page(3, &["a"]),
        json(500, json!({})),
        page(3, &["a"]),
        page(3, &["a", "b"]),
        page(3, &["c"]),
    ]);
    assert_eq!(c.index_remote_users().unwrap().users, 3);
    assert_eq!(body(&sent(&c, 6))["startIndex"], 3);
    assert_eq!(c.index_incomplete(), None);
}

/// With filters that work, an incomplete listing only sends matching back to the filter.
#[test]
fn an_incomplete_listing_on_a_server_with_filters_falls_back_to_the_filter() {
    let c = connector(vec![
        spc(true, true),
        json(500, json!({})),
        page(5, &["a"]),
        json(500, json!({})),
        json(500, json!({})),
        json(404, json!({})),
        list(vec![]),
        list(vec![]),
        list(vec![]),
        json(201, remote_zed()),
    ]);
    c.index_remote_users().unwrap();
    let out = c.provision(&zed(), UserEvent::Created, None).unwrap();
    assert_eq!(out.action, Action::Created);
    assert_eq!(calls(&c)[6], get("/Users?filter=userName%20eq%20%22zed%22"));
}

#[test]
fn a_page_is_suspected_by_total_results_or_a_round_size() {
    assert!(more_expected(1, 5));
    assert!(!more_expected(5, 5));
    assert!(!more_expected(3, 0));
    assert!(more_expected(20, 0));
    assert!(more_expected(25, 3));
    assert!(!more_expected(0, 0));
}

// ----------------------------------------------------------------------------------------
// Narrow /Schemas
// ----------------------------------------------------------------------------------------

fn narrow_schemas() -> Answer {
    json(
        200,
        json!({"schemas": [LIST_SCHEMA], "totalResults": 1, "Resources": [{
            "id": USER_SCHEMA, "attributes": [
                {"name": "userName", "type": "string", "required": true},
                {"name": "name", "type": "complex", "subAttributes": [
                    {"name": "formatted", "required": true}, {"name": "familyName", "required": true},
                    {"name": "givenName"}]},
                {"name": "displayName"}, {"name": "active", "type": "boolean"},
                {"name": "emails", "type": "complex", "multiValued": true,
                 "subAttributes": [{"name": "value"}]}]}]}),
    )
}

fn resource_types() -> Answer {
    json(
        200,
        json!({"Resources": [{"id": "User", "schema": USER_SCHEMA, "schemaExtensions": []}]}),
    )
}

#[test]
fn a_create_refused_for_undeclared_attributes_is_sent_again_shaped_to_the_schema() {
    let c = connector(vec![
        spc(true, true),
        list(vec![]),
        list(vec![]),
        list(vec![]),
        scim_error(
            400,
            None,
            "Extra inputs are not permitted: emails, 0, primary",
        ),
        narrow_schemas(),
        resource_types(),
        list(vec![]),
        list(vec![]),
        json(201, json!({"id": RID, "userName": "zed"})),
    ]);
    let out = c.provision(&zed(), UserEvent::Created, None).unwrap();
    assert_eq!(out.action, Action::Created);
    let post = c
        .http
        .sent()
        .into_iter()
        .rfind(|r| r.method == crate::ports::Method::Post)
        .unwrap();
    let posted = body(&post);
    assert_eq!(posted["emails"], json!([{"value": "zed@example.com"}]));
    assert_eq!(posted.get("displayName"), Some(&json!("Zed Zulu")));
    assert_eq!(posted["name"]["formatted"], "Zed Zulu");
    // One warning per attribute left out, however often it is left out.
    let warnings: Vec<String> = logs(&c)
        .into_iter()
        .filter(|l| l.contains("does not declare"))
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    // The snapshot is what was sent, so the next update compares like with like.
    let snapshot: Value =
        serde_json::from_str(out.link.unwrap().snapshot.as_deref().unwrap()).unwrap();
    assert_eq!(snapshot["emails"], posted["emails"]);
}

/// The one-warning-per-attribute set travels with the dialect: a later session (a new
/// connector given the stored dialect) does not warn again about the same attribute.
#[test]
fn attributes_warned_about_are_not_warned_about_again_in_a_later_session() {
    let first = connector(vec![narrow_schemas(), resource_types()]);
    first.learn_schema(&first.transport()).unwrap();
    let mapped = first.map_user(&zed()).unwrap();
    first.shaped(mapped.clone());
    let warned = |c: &Connector<FakeHttp, MemoryLog>| {
        logs(c)
            .into_iter()
            .filter(|l| l.contains("does not declare"))
            .count()
    };
    assert_eq!(warned(&first), 2);
    let second = connector(vec![]);
    second.import_dialect(&first.export_dialect()).unwrap();
    assert_eq!(second.shaped(mapped.clone()), first.shaped(mapped));
    assert_eq!(warned(&second), 0, "{:?}", logs(&second));
    assert!(calls(&second).is_empty());
}

#[test]
fn a_400_from_a_server_whose_schema_changes_nothing_is_not_sent_twice() {
    let c = connector(vec![
        spc(true, true),
        list(vec![]),
        list(vec![]),
        list(vec![]),
        scim_error(
            400,
            Some("invalidValue"),
            "Missing required attribute: nickName",
        ),
        json(404, json!({})),
    ]);
    let err = c.provision(&zed(), UserEvent::Created, None).unwrap_err();
    assert_eq!(err.retry_class(), RetryClass::Permanent);
    assert_eq!(
        calls(&c).iter().filter(|c| c.starts_with("POST")).count(),
        1
    );
}

// ----------------------------------------------------------------------------------------
// Connection test
// ----------------------------------------------------------------------------------------

#[test]
fn a_connection_test_reports_schema_findings_and_ignored_filters() {
    let policy = r#"{"mapping": [
        {"target": "userName", "source": "name"},
        {"target": "emails[type eq \"work\"].value", "source": "mail"},
        {"target": "name.familyName", "source": "field_last_name"}
    ]}"#;
    let http = FakeHttp::new(vec![]);
    for a in [
        spc(true, true),
        json(500, json!({})),
        list(vec![remote_zed()]),
        narrow_schemas(),
        resource_types(),
        list(vec![remote_zed()]),
    ] {
        http.push(a);
    }
    let config = ConnectorConfig::new(BASE, Auth::Bearer("tok".into()), 30_000).unwrap();
    let c = Connector::open(config, policy, http, MemoryLog::default()).unwrap();
    let caps = c.test_connection().unwrap();
    assert_eq!(caps.filter_max_results, None, "filters are ignored");
    let dialect: Value = serde_json::from_str(&c.export_dialect()).unwrap();
    let findings: Vec<&str> = dialect["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        findings.contains(
            &"not declared by the server, left out: emails[type eq \"work\"].value (emails.type)"
        ),
        "{findings:?}"
    );
    assert!(
        findings.contains(&"required by the server, not filled by the mapping: name.formatted")
    );
    assert!(findings.iter().any(|f| f.starts_with("filters: ignored")));
    assert!(findings.iter().any(|f| f.starts_with("paging: ")));
    assert_eq!(dialect["pagingUnusable"], true);
    assert_eq!(
        calls(&c)[5],
        get("/Users?filter=userName%20eq%20%22scim-provisioner-filter-probe-7f3e9c1d%22")
    );
}

#[test]
fn a_dialect_document_carries_what_was_learned_to_another_connector() {
    let first = connector(vec![
        spc(true, true),
        scim_error(501, None, "no"),
        json(200, remote_zed()),
        json(200, remote_zed()),
    ]);
    first
        .provision(&changed_zed(), UserEvent::Updated, Some(&zed_link()))
        .unwrap();
    let second = connector(vec![
        spc(true, true),
        json(200, remote_zed()),
        json(200, remote_zed()),
    ]);
    second.import_dialect(&first.export_dialect()).unwrap();
    second
        .provision(&changed_zed(), UserEvent::Updated, Some(&zed_link()))
        .unwrap();
    assert_eq!(
        calls(&second)[1..],
        [get("/Users/r1"), format!("PUT {}", url("/Users/r1"))]
    );
    assert!(second.import_dialect("{}").is_err());
}

#[test]
fn without_paging_drops_only_the_paging_parameters() {
    assert_eq!(without_paging("/Users?startIndex=1&count=1"), "/Users");
    assert_eq!(
        without_paging("/Users?filter=x&startIndex=1&count=10"),
        "/Users?filter=x"
    );
    assert_eq!(
        without_paging("/Users?startIndex=3&count=9&attributes=id"),
        "/Users?attributes=id"
    );
    assert_eq!(without_paging("/Users"), "/Users");
    let _ = empty_response(204);
}
