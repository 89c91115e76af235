//! Unit tests of the provisioning engine against a scripted SCIM server: every test checks
//! the exact requests sent (method, URL, key headers, JSON bodies) and the outcome, link or
//! error the engine returns.

use serde_json::{Value, json};

use super::*;
use crate::client::fake::{FakeHttp, MemoryLog, empty_response, json_response};
use crate::config::{Auth, ConnectorConfig};
use crate::error::TransportError;
use crate::error::{RetryClass, ScimError};
use crate::ports::{HttpRequest, HttpResponse};
use crate::scim::message::ERROR_SCHEMA;
use crate::user::FieldValue;

const BASE: &str = "https://idp.example/scim/v2";
const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.c2NpbS1wcm92aXNpb25lcg.Xk9-s3cr3t";
const SPC_URL: &str = "https://idp.example/scim/v2/ServiceProviderConfig";
const USERS_URL: &str = "https://idp.example/scim/v2/Users";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const RID: &str = "2819c223-7f76-453a-919d-413861904646";
const RID_URL: &str = "https://idp.example/scim/v2/Users/2819c223-7f76-453a-919d-413861904646";
const V1: &str = "W/\"3694e05e9dff590\"";
const V2: &str = "W/\"3694e05e9dff591\"";
const V3: &str = "W/\"3694e05e9dff592\"";

/// The three default matching look-ups for the fixture user, as sent on the wire.
const Q_USERNAME: &str =
    "https://idp.example/scim/v2/Users?filter=userName%20eq%20%22bjensen%22&startIndex=1&count=10";
const Q_EXTERNAL_ID: &str =
    "https://idp.example/scim/v2/Users?filter=externalId%20eq%20%2242%22&startIndex=1&count=10";
const Q_EMAIL: &str = "https://idp.example/scim/v2/Users?filter=emails%5Btype%20eq%20%22work%22%20and%20value%20eq%20%22bjensen%40example.com%22%5D&startIndex=1&count=10";

/// A listing of the remote users for matching without filters (page of 100, the matching
/// attributes only).
const LISTING_URL: &str = "https://idp.example/scim/v2/Users?startIndex=1&count=100&attributes=id%2CuserName%2CexternalId%2Cemails";

type Answer = Result<HttpResponse, TransportError>;

// ----------------------------------------------------------------------------------------
// Fixtures
// ----------------------------------------------------------------------------------------

fn connector(policy: &str, script: Vec<Answer>) -> Connector<FakeHttp, MemoryLog> {
    let http = FakeHttp::new(vec![]);
    for answer in script {
        http.push(answer);
    }
    let config = ConnectorConfig::new(BASE, Auth::Bearer(TOKEN.into()), 30_000).unwrap();
    Connector::open(config, policy, http, MemoryLog::default()).unwrap()
}

fn spc(patch: bool, etag: bool) -> Answer {
    json(
        200,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": "https://idp.example/help/scim.html",
            "patch": {"supported": patch},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": true, "maxResults": 200},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": etag},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "Authentication scheme using the OAuth Bearer Token Standard"
            }],
            "meta": {"resourceType": "ServiceProviderConfig", "location": SPC_URL}
        }),
    )
}

fn json(status: u16, body: Value) -> Answer {
    Ok(json_response(status, body))
}

fn with_header(answer: Answer, name: &str, value: &str) -> Answer {
    answer.map(|mut r| {
        r.headers.push((name.into(), value.into()));
        r
    })
}

fn empty(status: u16) -> Answer {
    Ok(empty_response(status))
}

fn list(resources: Vec<Value>) -> Answer {
    json(
        200,
        json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": resources.len(),
            "itemsPerPage": resources.len(),
            "startIndex": 1,
            "Resources": resources
        }),
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

/// Barbara Jensen as a stock Drupal site holds her.
fn bjensen() -> CmsUser {
    CmsUser {
        id: "42".into(),
        fields: vec![
            text("name", "bjensen"),
            text("mail", " BJensen@Example.com "),
            text("field_first_name", "Barbara"),
            text("field_last_name", "Jensen"),
        ],
        active: true,
    }
}

fn with_field(mut user: CmsUser, name: &str, value: Option<&str>) -> CmsUser {
    user.fields.retain(|(n, _)| n != name);
    if let Some(v) = value {
        user.fields.push(text(name, v));
    }
    user
}

/// What the default mapping makes of [`bjensen`].
fn mapped() -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "userName": "bjensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen", "formatted": "Barbara Jensen"},
        "displayName": "Barbara Jensen",
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}],
        "active": true,
        "externalId": "42"
    })
}

/// Barbara Jensen as the server holds her, with attributes the mapping does not manage.
fn remote() -> Value {
    json!({
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "id": RID,
        "externalId": "42",
        "userName": "bjensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen", "formatted": "Barbara Jensen",
                 "honorificPrefix": "Ms."},
        "displayName": "Barbara Jensen",
        "nickName": "Babs",
        "title": "Tour Guide",
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "active": true,
        ENTERPRISE: {"employeeNumber": "701984", "department": "Tour Operations"},
        "meta": {
            "resourceType": "User",
            "created": "2010-01-23T04:56:22Z",
            "lastModified": "2011-05-13T04:42:34Z",
            "version": V1,
            "location": RID_URL
        }
    })
}

fn remote_with(version: &str, changes: Value) -> Value {
    let mut r = remote();
    r["meta"]["version"] = json!(version);
    for (k, v) in changes.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

fn link(snapshot: Option<Value>, version: Option<&str>) -> Link {
    Link {
        remote_id: RID.into(),
        version: version.map(String::from),
        snapshot: snapshot.map(|s| s.to_string()),
    }
}

fn snapshot_of(link: &Link) -> Value {
    serde_json::from_str(link.snapshot.as_deref().expect("a snapshot")).unwrap()
}

// ----------------------------------------------------------------------------------------
// Request inspection
// ----------------------------------------------------------------------------------------

/// `METHOD URL` of every request sent.
fn calls(c: &Connector<FakeHttp, MemoryLog>) -> Vec<String> {
    c.http.calls()
}

fn sent(c: &Connector<FakeHttp, MemoryLog>, i: usize) -> HttpRequest {
    c.http.sent()[i].clone()
}

fn header<'a>(r: &'a HttpRequest, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn body(r: &HttpRequest) -> Value {
    serde_json::from_slice(r.body.as_deref().expect("a request body")).unwrap()
}

fn patch_body(ops: Value) -> Value {
    json!({"schemas": [PATCH_SCHEMA], "Operations": ops})
}

fn writes(c: &Connector<FakeHttp, MemoryLog>) -> usize {
    c.http
        .sent()
        .iter()
        .filter(|r| r.method != Method::Get)
        .count()
}

fn get(url: &str) -> String {
    format!("GET {url}")
}

fn lookups() -> Vec<String> {
    vec![get(Q_USERNAME), get(Q_EXTERNAL_ID), get(Q_EMAIL)]
}

fn logs(c: &Connector<FakeHttp, MemoryLog>) -> Vec<String> {
    c.log.0.borrow().clone()
}

// ----------------------------------------------------------------------------------------
// 1. Create with no match
// ----------------------------------------------------------------------------------------

#[test]
fn create_without_match_discovers_looks_up_in_order_then_posts_the_mapped_user() {
    let created = remote_with(V1, json!({"nickName": null}));
    let c = connector(
        "",
        vec![
            spc(true, true),
            list(vec![]),
            list(vec![]),
            list(vec![]),
            with_header(json(201, created), "Location", RID_URL),
        ],
    );
    let out = c.provision(&bjensen(), UserEvent::Created, None).unwrap();

    let mut expected = vec![get(SPC_URL)];
    expected.extend(lookups());
    expected.push(format!("POST {USERS_URL}"));
    assert_eq!(calls(&c), expected);
    for r in c.http.sent() {
        assert_eq!(
            header(&r, "Authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(
            header(&r, "Accept"),
            Some("application/scim+json, application/json")
        );
        assert_eq!(header(&r, "If-Match"), None);
        assert_eq!(r.timeout_ms, 30_000);
    }
    let post = sent(&c, 4);
    assert_eq!(header(&post, "Content-Type"), Some("application/scim+json"));
    assert_eq!(body(&post), mapped());
    assert_eq!(c.map_user(&bjensen()).unwrap(), mapped());

    assert_eq!(out.action, Action::Created);
    assert_eq!(out.reason, None);
    assert_eq!(out.requests, 5);
    assert_eq!(out.location.as_deref(), Some(RID_URL));
    let l = out.link.unwrap();
    assert_eq!(l.remote_id, RID);
    assert_eq!(l.version.as_deref(), Some(V1));
    assert_eq!(snapshot_of(&l), mapped());
}

#[test]
fn lookup_filters_escape_quotes_and_backslashes_and_location_falls_back_to_the_base_url() {
    let user = with_field(bjensen(), "name", Some(r#"o"brien\x"#));
    let c = connector(
        "",
        vec![
            spc(true, false),
            list(vec![]),
            list(vec![]),
            list(vec![]),
            // Neither a Location header nor meta.location; an id that needs encoding.
            json(
                201,
                json!({"schemas": [USER_SCHEMA], "id": "u 7/x", "userName": r#"o"brien\x"#}),
            ),
        ],
    );
    let out = c.provision(&user, UserEvent::Created, None).unwrap();
    assert_eq!(
        sent(&c, 1).url,
        "https://idp.example/scim/v2/Users?filter=userName%20eq%20%22o%5C%22brien%5C%5Cx%22&startIndex=1&count=10"
    );
    assert_eq!(body(&sent(&c, 4))["userName"], r#"o"brien\x"#);
    assert_eq!(out.action, Action::Created);
    assert_eq!(
        out.location.as_deref(),
        Some("https://idp.example/scim/v2/Users/u%207%2Fx")
    );
    let l = out.link.unwrap();
    assert_eq!(l.remote_id, "u 7/x");
    assert_eq!(l.version, None);
}

#[test]
fn created_version_comes_from_the_etag_header_when_the_body_has_none() {
    let c = connector(
        "",
        vec![
            spc(true, true),
            list(vec![]),
            list(vec![]),
            list(vec![]),
            with_header(
                json(201, json!({"id": 9001, "userName": "bjensen"})),
                "ETag",
                V2,
            ),
        ],
    );
    let out = c.provision(&bjensen(), UserEvent::Created, None).unwrap();
    let l = out.link.unwrap();
    assert_eq!(l.remote_id, "9001", "numeric ids are read as strings");
    assert_eq!(l.version.as_deref(), Some(V2));
    assert_eq!(
        out.location.as_deref(),
        Some("https://idp.example/scim/v2/Users/9001")
    );
}

#[test]
fn discovery_happens_once_per_connector() {
    let c = connector(
        "",
        vec![
            spc(true, true),
            list(vec![]),
            list(vec![]),
            list(vec![]),
            json(201, remote()),
            // Second call: no discovery, straight to the PATCH.
            json(200, remote_with(V2, json!({"displayName": "Barbara J."}))),
        ],
    );
    let first = c.provision(&bjensen(), UserEvent::Created, None).unwrap();
    let user = with_field(bjensen(), "field_last_name", Some("J."));
    let second = c
        .provision(&user, UserEvent::Updated, first.link.as_ref())
        .unwrap();
    assert_eq!(second.requests, 1);
    assert_eq!(calls(&c).last().unwrap(), &format!("PATCH {RID_URL}"));
    assert_eq!(
        calls(&c)
            .iter()
            .filter(|u| u.ends_with("ServiceProviderConfig"))
            .count(),
        1
    );
}

// ----------------------------------------------------------------------------------------
// 2. Adoption
// ----------------------------------------------------------------------------------------

#[test]
fn a_user_found_by_user_name_is_adopted_and_patched_only_where_mapped_attributes_differ() {
    let found = remote_with(
        V1,
        json!({
            "displayName": "Babs Jensen",
            "name": {"givenName": "Babs", "familyName": "Jensen", "honorificPrefix": "Ms."},
            "externalId": null,
            "emails": [
                {"value": "babs@jensen.org", "type": "home"},
                {"value": "bjensen@example.com", "type": "work", "primary": true,
                 "display": "Barbara at work"}
            ]
        }),
    );
    let updated = remote_with(V2, json!({}));
    let c = connector(
        "",
        vec![spc(true, true), list(vec![found]), json(200, updated)],
    );
    let out = c.provision(&bjensen(), UserEvent::Created, None).unwrap();

    assert_eq!(
        calls(&c),
        vec![get(SPC_URL), get(Q_USERNAME), format!("PATCH {RID_URL}")]
    );
    let patch = sent(&c, 2);
    assert_eq!(header(&patch, "If-Match"), Some(V1));
    assert_eq!(
        header(&patch, "Content-Type"),
        Some("application/scim+json")
    );
    // nickName, title, the home email, the work email's display, name.honorificPrefix
    // and the enterprise extension are not ours: nothing removes them.
    assert_eq!(
        body(&patch),
        patch_body(json!([
            {"op": "replace", "path": "displayName", "value": "Barbara Jensen"},
            {"op": "replace", "path": "externalId", "value": "42"},
            {"op": "replace", "path": "name.formatted", "value": "Barbara Jensen"},
            {"op": "replace", "path": "name.givenName", "value": "Barbara"}
        ]))
    );
    assert_eq!(out.action, Action::Adopted);
    assert_eq!(out.requests, 3);
    assert_eq!(out.location.as_deref(), Some(RID_URL));
    let l = out.link.unwrap();
    assert_eq!(l.remote_id, RID);
    assert_eq!(l.version.as_deref(), Some(V2));
    assert_eq!(snapshot_of(&l), mapped());
}

#[test]
fn adopting_a_user_that_already_matches_sends_nothing_more() {
    let c = connector("", vec![spc(true, true), list(vec![remote()])]);
    let out = c.provision(&bjensen(), UserEvent::Reconcile, None).unwrap();
    assert_eq!(calls(&c), vec![get(SPC_URL), get(Q_USERNAME)]);
    assert_eq!(out.action, Action::Adopted);
    assert_eq!(out.requests, 2);
    let l = out.link.unwrap();
    assert_eq!(l.remote_id, RID);
    assert_eq!(
        l.version.as_deref(),
        Some(V1),
        "the version the look-up returned"
    );
    assert_eq!(snapshot_of(&l), mapped());
}

#[test]
fn a_user_found_by_the_work_email_is_adopted_after_the_earlier_lookups_miss() {
    let found = remote_with(
        V1,
        json!({"userName": "barbara.jensen", "externalId": null}),
    );
    let c = connector(
        "",
        vec![
            spc(true, false),
            list(vec![]),
            list(vec![]),
            list(vec![found]),
            json(200, remote_with(V2, json!({}))),
        ],
    );
    let out = c.provision(&bjensen(), UserEvent::Created, None).unwrap();
    let mut expected = vec![get(SPC_URL)];
    expected.extend(lookups());
    expected.push(format!("PATCH {RID_URL}"));
    assert_eq!(calls(&c), expected);
    let patch = sent(&c, 4);
    assert_eq!(header(&patch, "If-Match"), None, "the server has no ETags");
    assert_eq!(
        body(&patch),
        patch_body(json!([
            {"op": "replace", "path": "externalId", "value": "42"},
            {"op": "replace", "path": "userName", "value": "bjensen"}
        ]))
    );
    assert_eq!(out.action, Action::Adopted);
}

#[test]
fn a_server_rejecting_value_path_filters_is_asked_with_the_plain_form() {
    let c = connector(
        r#"{"matching": ["emails[type eq \"work\"].value"]}"#,
        vec![
            spc(true, false),
            scim_error(400, Some("invalidFilter"), "value paths are not supported"),
            list(vec![remote()]),
        ],
    );
    let out = c.provision(&bjensen(), UserEvent::Created, None).unwrap();
    assert_eq!(
        calls(&c),
        vec![
            get(SPC_URL),
            get(Q_EMAIL),
            get(
                "https://idp.example/scim/v2/Users?filter=emails.value%20eq%20%22bjensen%40example.com%22&startIndex=1&count=10"
            ),
        ]
    );
    assert_eq!(out.action, Action::Adopted);
}

// ----------------------------------------------------------------------------------------
// 3. Ambiguous and unverified matches
// ----------------------------------------------------------------------------------------

#[test]
fn several_matches_are_an_error_naming_them_and_nothing_is_created() {
    let a = remote_with(V1, json!({"id": "a-1"}));
    let b = remote_with(V1, json!({"id": "b-2", "userName": "BJensen"}));
    let c = connector("", vec![spc(true, true), list(vec![a, b])]);
    let err = c
        .provision(&bjensen(), UserEvent::Created, None)
        .unwrap_err();
    let ProvisioningError::Other(msg) = &err else {
        panic!("{err:?}");
    };
    assert!(msg.contains("a-1") && msg.contains("b-2"), "{msg}");
    assert!(msg.contains(r#"userName eq "bjensen""#), "{msg}");
    assert_eq!(err.retry_class(), RetryClass::Permanent);
    assert_eq!(calls(&c), vec![get(SPC_URL), get(Q_USERNAME)]);
    assert_eq!(writes(&c), 0);
    assert!(
        logs(&c)
            .iter()
            .any(|l| l.contains("user 42 (Created) failed"))
    );
}

#[test]
fn users_returned_by_a_server_that_ignores_the_filter_are_not_adopted() {
    let alice = json!({"schemas": [USER_SCHEMA], "id": "a", "userName": "alice", "externalId": "7",
                       "emails": [{"value": "alice@example.com", "type": "work"}]});
    let carol = json!({"schemas": [USER_SCHEMA], "id": "c", "userName": "carol",
                       "emails": [{"value": "bjensen@example.com", "type": "home"}]});
    let everyone = || list(vec![alice.clone(), carol.clone()]);
    let c = connector(
        "",
        vec![spc(true, true), everyone(), everyone(), json(201, remote())],
    );
    let out = c.provision(&bjensen(), UserEvent::Created, None).unwrap();
    assert_eq!(out.action, Action::Created);
    assert_eq!(out.link.unwrap().remote_id, RID);
    // The first look-up gave users that do not match: the server ignores filters, so the
    // remote users are listed and matched here instead.
    assert_eq!(
        calls(&c),
        vec![
            get(SPC_URL),
            get(Q_USERNAME),
            get(LISTING_URL),
            format!("POST {USERS_URL}")
        ]
    );
    assert_eq!(writes(&c), 1);
}

#[test]
fn a_lookup_that_is_not_a_list_response_is_an_error() {
    let c = connector("", vec![spc(true, true), json(200, remote())]);
    let err = c
        .provision(&bjensen(), UserEvent::Created, None)
        .unwrap_err();
    assert!(
        matches!(&err, ProvisioningError::UnexpectedResponse { status: 200, reason, .. }
            if reason.contains("ListResponse")),
        "{err:?}"
    );
    assert_eq!(writes(&c), 0);
}

// ----------------------------------------------------------------------------------------
// 4. Conflicts and timeouts on POST
// ----------------------------------------------------------------------------------------

#[test]
fn a_409_on_post_looks_again_and_adopts() {
    let c = connector(
        "",
        vec![
            spc(true, true),
            list(vec![]),
            list(vec![]),
            list(vec![]),
            scim_error(409, Some("uniqueness"), "User name already in use"),
            list(vec![remote_with(V2, json!({"displayName": "B. Jensen"}))]),
            json(200, remote_with(V3, json!({}))),
        ],
    );
    let out = c.provision(&bjensen(), UserEvent::Created, None).unwrap();
    let mut expected = vec![get(SPC_URL)];
    expected.extend(lookups());
    expected.push(format!("POST {USERS_URL}"));
    expected.push(get(Q_USERNAME));
    expected.push(format!("PATCH {RID_URL}"));
    assert_eq!(calls(&c), expected);
    let patch = sent(&c, 6);
    assert_eq!(header(&patch, "If-Match"), Some(V2));
    assert_eq!(
        body(&patch),
        patch_body(json!([{"op": "replace", "path": "displayName", "value": "Barbara Jensen"}]))
    );
    assert_eq!(out.action, Action::Adopted);
    assert_eq!(out.requests, 7);
    assert_eq!(out.link.unwrap().version.as_deref(), Some(V3));
}

#[test]
fn a_409_with_nothing_to_adopt_is_the_servers_error() {
    let c = connector(
        "",
        vec![
            spc(true, true),
            list(vec![]),
            list(vec![]),
            list(vec![]),
            scim_error(409, Some("uniqueness"), "User name already in use"),
            list(vec![]),
            list(vec![]),
            list(vec![]),
        ],
    );
    let err = c
        .provision(&bjensen(), UserEvent::Created, None)
        .unwrap_err();
    assert_eq!(
        err,
        ProvisioningError::Scim(ScimError {
            status: 409,
            scim_type: Some("uniqueness".into()),
            detail: Some(
                "the server already holds userName \"bjensen\" but does not list it, so it cannot be adopted through SCIM; remove or repair it on the server, then Retry (the server said: User name already in use)"
                    .into()
            ),
            retry: RetryClass::Permanent,
        })
    );
    assert_eq!(writes(&c), 1);
}

#[test]
fn a_post_that_timed_out_but_landed_is_adopted_without_a_second_post() {
    let c = connector(
        "",
        vec![
            spc(true, true),
            list(vec![]),
            list(vec![]),
            list(vec![]),
            Err(TransportError::Timeout),
            list(vec![remote()]),
        ],
    );
    let out = c.provision(&bjensen(), UserEvent::Created, None).unwrap();
    let mut expected = vec![get(SPC_URL)];
    expected.extend(lookups());
    expected.push(format!("POST {USERS_URL}"));
    expected.push(get(Q_USERNAME));
    assert_eq!(calls(&c), expected);
    assert_eq!(writes(&c), 1, "exactly one POST");
    assert_eq!(out.action, Action::Adopted);
    let l = out.link.unwrap();
    assert_eq!(l.remote_id, RID);
    assert_eq!(l.version.as_deref(), Some(V1));
}

#[test]
fn a_post_that_timed_out_and_did_not_land_is_a_timeout_to_back_off_from() {
    let c = connector(
        "",
        vec![
            spc(true, true),
            list(vec![]),
            list(vec![]),
            list(vec![]),
            Err(TransportError::Timeout),
            list(vec![]),
            list(vec![]),
            list(vec![]),
        ],
    );
    let err = c
        .provision(&bjensen(), UserEvent::Created, None)
        .unwrap_err();
    assert_eq!(err, ProvisioningError::Transport(TransportError::Timeout));
    assert_eq!(err.retry_class(), RetryClass::Backoff);
    assert_eq!(c.http.sent().len(), 8);
    assert_eq!(writes(&c), 1);
}

#[test]
fn a_post_that_timed_out_with_the_lookup_failing_too_is_still_a_timeout() {
    let c = connector(
        "",
        vec![
            spc(true, true),
            list(vec![]),
            list(vec![]),
            list(vec![]),
            Err(TransportError::Timeout),
            Err(TransportError::CannotConnect("connection refused".into())),
        ],
    );
    let err = c
        .provision(&bjensen(), UserEvent::Created, None)
        .unwrap_err();
    assert_eq!(err, ProvisioningError::Transport(TransportError::Timeout));
    assert_eq!(writes(&c), 1);
}

// ----------------------------------------------------------------------------------------
// 5. Updates with PATCH
// ----------------------------------------------------------------------------------------

/// Barbara changed her mail address and cleared her first name.
fn bjensen_changed() -> CmsUser {
    let user = with_field(bjensen(), "mail", Some("Barbara.Jensen@Example.com"));
    with_field(user, "field_first_name", None)
}

#[test]
fn an_update_sends_a_minimal_patch_with_if_match() {
    let answer = remote_with(
        V2,
        json!({"displayName": "Jensen", "name": {"familyName": "Jensen"},
               "emails": [{"value": "barbara.jensen@example.com", "type": "work", "primary": true}]}),
    );
    let c = connector("", vec![spc(true, true), json(200, answer)]);
    let l = link(Some(mapped()), Some(V1));
    let out = c
        .provision(&bjensen_changed(), UserEvent::Updated, Some(&l))
        .unwrap();

    assert_eq!(calls(&c), vec![get(SPC_URL), format!("PATCH {RID_URL}")]);
    let patch = sent(&c, 1);
    assert_eq!(header(&patch, "If-Match"), Some(V1));
    assert_eq!(
        body(&patch),
        patch_body(json!([
            {"op": "replace", "path": "displayName", "value": "Jensen"},
            {"op": "replace", "path": "emails[type eq \"work\"].value",
             "value": "barbara.jensen@example.com"},
            {"op": "replace", "path": "name.formatted", "value": "Jensen"},
            {"op": "remove", "path": "name.givenName"}
        ]))
    );
    assert_eq!(out.action, Action::Updated);
    assert_eq!(out.requests, 2);
    assert_eq!(out.location.as_deref(), Some(RID_URL));
    let l = out.link.unwrap();
    assert_eq!(l.remote_id, RID);
    assert_eq!(l.version.as_deref(), Some(V2));
    assert_eq!(snapshot_of(&l), c.map_user(&bjensen_changed()).unwrap());
}

#[test]
fn an_update_without_changes_sends_nothing() {
    let c = connector("", vec![spc(true, true)]);
    let l = link(Some(mapped()), Some(V1));
    let out = c
        .provision(&bjensen(), UserEvent::Updated, Some(&l))
        .unwrap();
    assert_eq!(out.action, Action::Unchanged);
    assert_eq!(out.link.as_ref(), Some(&l));
    assert_eq!(calls(&c), vec![get(SPC_URL)]);
    assert_eq!(writes(&c), 0);
    // Discovery is remembered: the next unchanged update makes no request at all.
    let again = c
        .provision(&bjensen(), UserEvent::Reconcile, Some(&l))
        .unwrap();
    assert_eq!(again.action, Action::Unchanged);
    assert_eq!(again.requests, 0);
    assert_eq!(c.http.sent().len(), 1);
}

#[test]
fn if_match_is_not_sent_when_the_server_has_no_etags() {
    let c = connector("", vec![spc(true, false), empty(204)]);
    let l = link(Some(mapped()), Some(V1));
    let out = c
        .provision(&bjensen_changed(), UserEvent::Updated, Some(&l))
        .unwrap();
    let patch = sent(&c, 1);
    assert_eq!(patch.method, Method::Patch);
    assert_eq!(header(&patch, "If-Match"), None);
    assert_eq!(out.action, Action::Updated);
    let l = out.link.unwrap();
    assert_eq!(l.version, None, "a 204 without an ETag leaves no version");
    assert_eq!(out.location, None);
}

#[test]
fn a_412_rereads_the_user_and_retries_once_with_the_fresh_version() {
    let user = with_field(bjensen(), "mail", Some("barbara.jensen@example.com"));
    // Someone renamed her on the server in the meantime.
    let fresh = remote_with(V2, json!({"displayName": "Babs Jensen"}));
    let c = connector(
        "",
        vec![
            spc(true, true),
            scim_error(
                412,
                None,
                "Failed to update. Resource changed on the server.",
            ),
            json(200, fresh),
            with_header(empty(204), "ETag", V3),
        ],
    );
    let l = link(Some(mapped()), Some(V1));
    let out = c.provision(&user, UserEvent::Updated, Some(&l)).unwrap();

    assert_eq!(
        calls(&c),
        vec![
            get(SPC_URL),
            format!("PATCH {RID_URL}"),
            get(RID_URL),
            format!("PATCH {RID_URL}"),
        ]
    );
    let email_op = json!({"op": "replace", "path": "emails[type eq \"work\"].value",
                          "value": "barbara.jensen@example.com"});
    let first = sent(&c, 1);
    assert_eq!(header(&first, "If-Match"), Some(V1));
    assert_eq!(body(&first), patch_body(json!([email_op])));
    let retry = sent(&c, 3);
    assert_eq!(header(&retry, "If-Match"), Some(V2));
    assert_eq!(
        body(&retry),
        patch_body(json!([
            {"op": "replace", "path": "displayName", "value": "Barbara Jensen"},
            email_op
        ]))
    );
    assert_eq!(out.action, Action::Updated);
    assert_eq!(out.requests, 4);
    let l = out.link.unwrap();
    assert_eq!(l.version.as_deref(), Some(V3), "from the 204's ETag header");
    assert_eq!(out.location, None);
}

#[test]
fn a_412_retry_takes_the_version_from_the_etag_header_when_meta_has_none() {
    let mut fresh = remote();
    fresh.as_object_mut().unwrap().remove("meta");
    let c = connector(
        "",
        vec![
            spc(true, true),
            scim_error(412, None, "precondition failed"),
            with_header(json(200, fresh), "ETag", V2),
            empty(204),
        ],
    );
    let l = link(Some(mapped()), Some(V1));
    let out = c
        .provision(&bjensen_changed(), UserEvent::Updated, Some(&l))
        .unwrap();
    assert_eq!(header(&sent(&c, 3), "If-Match"), Some(V2));
    assert_eq!(out.action, Action::Updated);
}

#[test]
fn a_second_412_gives_up() {
    let c = connector(
        "",
        vec![
            spc(true, true),
            scim_error(412, None, "precondition failed"),
            json(200, remote_with(V2, json!({}))),
            scim_error(412, None, "precondition failed"),
        ],
    );
    let l = link(Some(mapped()), Some(V1));
    let err = c
        .provision(&bjensen_changed(), UserEvent::Updated, Some(&l))
        .unwrap_err();
    assert!(
        matches!(&err, ProvisioningError::Scim(e) if e.status == 412),
        "{err:?}"
    );
    assert_eq!(writes(&c), 2, "one retry only");
}

#[test]
fn a_412_after_which_the_server_already_has_our_values_is_unchanged() {
    let fresh = remote_with(
        V2,
        json!({"displayName": "Jensen", "name": {"familyName": "Jensen", "formatted": "Jensen"},
               "emails": [{"value": "barbara.jensen@example.com", "type": "work", "primary": true}]}),
    );
    let c = connector(
        "",
        vec![
            spc(true, true),
            scim_error(412, None, "changed"),
            json(200, fresh),
        ],
    );
    let l = link(Some(mapped()), Some(V1));
    let out = c
        .provision(&bjensen_changed(), UserEvent::Updated, Some(&l))
        .unwrap();
    assert_eq!(out.action, Action::Unchanged);
    assert_eq!(writes(&c), 1);
}

#[test]
fn an_update_without_a_snapshot_reads_the_user_and_patches_the_difference() {
    let c = connector(
        "",
        vec![
            spc(true, true),
            json(200, remote()),
            json(200, remote_with(V2, json!({}))),
        ],
    );
    let l = link(None, Some(V1));
    let user = with_field(bjensen(), "field_last_name", Some("Jensen-Smith"));
    let out = c.provision(&user, UserEvent::Reconcile, Some(&l)).unwrap();
    assert_eq!(
        calls(&c),
        vec![get(SPC_URL), get(RID_URL), format!("PATCH {RID_URL}")]
    );
    assert_eq!(
        body(&sent(&c, 2)),
        patch_body(json!([
            {"op": "replace", "path": "displayName", "value": "Barbara Jensen-Smith"},
            {"op": "replace", "path": "name.familyName", "value": "Jensen-Smith"},
            {"op": "replace", "path": "name.formatted", "value": "Barbara Jensen-Smith"}
        ]))
    );
    assert_eq!(out.action, Action::Updated);
    assert_eq!(out.link.unwrap().version.as_deref(), Some(V2));
}

#[test]
fn create_only_attributes_are_neither_resent_nor_removed_on_update() {
    let policy = r#"{"mapping": [
        {"target": "userName", "source": "name"},
        {"target": "nickName", "source": "field_first_name", "apply": "create"},
        {"target": "title", "source": "field_title"}
    ]}"#;
    let user = CmsUser {
        id: "42".into(),
        fields: vec![
            text("name", "bjensen"),
            text("field_first_name", "Barbara"),
            text("field_title", "Guide"),
        ],
        active: true,
    };
    let snapshot = json!({"schemas": [USER_SCHEMA], "userName": "bjensen",
                          "nickName": "Babs", "title": "Tour Guide"});
    let c = connector(policy, vec![spc(true, true), empty(204)]);
    let l = link(Some(snapshot.clone()), None);
    let out = c.provision(&user, UserEvent::Updated, Some(&l)).unwrap();
    assert_eq!(
        body(&sent(&c, 1)),
        patch_body(json!([{"op": "replace", "path": "title", "value": "Guide"}]))
    );
    let mut expected = snapshot;
    expected["title"] = json!("Guide");
    assert_eq!(snapshot_of(&out.link.unwrap()), expected);
}

#[test]
fn an_error_answer_to_a_patch_is_returned_with_its_retry_class() {
    let c = connector(
        "",
        vec![
            spc(true, true),
            with_header(scim_error(503, None, "maintenance"), "Retry-After", "120"),
        ],
    );
    let l = link(Some(mapped()), Some(V1));
    let err = c
        .provision(&bjensen_changed(), UserEvent::Updated, Some(&l))
        .unwrap_err();
    assert_eq!(err.retry_class(), RetryClass::AfterSeconds(120));
    assert!(
        matches!(&err, ProvisioningError::Scim(e) if e.status == 503),
        "{err:?}"
    );
}

// ----------------------------------------------------------------------------------------
// 6. Updates with PUT
// ----------------------------------------------------------------------------------------

#[test]
fn without_patch_an_update_reads_then_puts_the_merged_user() {
    let c = connector(
        "",
        vec![
            spc(false, true),
            json(200, remote()),
            json(200, remote_with(V2, json!({}))),
        ],
    );
    let user = with_field(bjensen(), "mail", Some("barbara.jensen@example.com"));
    let l = link(Some(mapped()), Some(V1));
    let out = c.provision(&user, UserEvent::Updated, Some(&l)).unwrap();

    assert_eq!(
        calls(&c),
        vec![get(SPC_URL), get(RID_URL), format!("PUT {RID_URL}")]
    );
    let put = sent(&c, 2);
    assert_eq!(header(&put, "If-Match"), Some(V1));
    assert_eq!(
        body(&put),
        json!({
            "schemas": [USER_SCHEMA, ENTERPRISE],
            "id": RID,
            "externalId": "42",
            "userName": "bjensen",
            "name": {"givenName": "Barbara", "familyName": "Jensen", "formatted": "Barbara Jensen",
                     "honorificPrefix": "Ms."},
            "displayName": "Barbara Jensen",
            "nickName": "Babs",
            "title": "Tour Guide",
            "emails": [
                {"value": "babs@jensen.org", "type": "home"},
                {"value": "barbara.jensen@example.com", "type": "work", "primary": true}
            ],
            "active": true,
            ENTERPRISE: {"employeeNumber": "701984", "department": "Tour Operations"}
        })
    );
    assert_eq!(out.action, Action::Updated);
    let l = out.link.unwrap();
    assert_eq!(l.version.as_deref(), Some(V2));
    assert_eq!(snapshot_of(&l), c.map_user(&user).unwrap());
}

#[test]
fn without_patch_an_unchanged_user_is_not_put() {
    // With a snapshot: nothing is read, nothing is written.
    let c = connector("", vec![spc(false, true)]);
    let l = link(Some(mapped()), Some(V1));
    let out = c
        .provision(&bjensen(), UserEvent::Updated, Some(&l))
        .unwrap();
    assert_eq!(out.action, Action::Unchanged);
    assert_eq!(calls(&c), vec![get(SPC_URL)]);

    // Without one: the user is read, found equal, and not written.
    let c = connector("", vec![spc(false, true), json(200, remote())]);
    let l = link(None, Some(V1));
    let out = c
        .provision(&bjensen(), UserEvent::Updated, Some(&l))
        .unwrap();
    assert_eq!(out.action, Action::Unchanged);
    assert_eq!(calls(&c), vec![get(SPC_URL), get(RID_URL)]);
}

#[test]
fn without_patch_cleared_attributes_are_removed_by_the_put() {
    let user = with_field(
        with_field(bjensen(), "field_first_name", None),
        "field_last_name",
        None,
    );
    let c = connector(
        "",
        vec![
            spc(false, false),
            json(200, remote()),
            json(200, remote_with(V2, json!({}))),
        ],
    );
    let l = link(Some(mapped()), None);
    let out = c.provision(&user, UserEvent::Updated, Some(&l)).unwrap();
    assert_eq!(
        calls(&c),
        vec![get(SPC_URL), get(RID_URL), format!("PUT {RID_URL}")]
    );
    let put = body(&sent(&c, 2));
    assert_eq!(put.get("displayName"), None, "{put}");
    assert_eq!(put.get("name"), None, "{put}");
    assert_eq!(put["nickName"], "Babs");
    assert_eq!(out.action, Action::Updated);
}

#[test]
fn without_patch_a_cleared_sub_attribute_is_removed_by_the_put() {
    let user = with_field(bjensen(), "field_first_name", None);
    let c = connector("", vec![spc(false, false), json(200, remote()), empty(204)]);
    let l = link(Some(mapped()), None);
    c.provision(&user, UserEvent::Updated, Some(&l)).unwrap();
    let put = body(&sent(&c, 2));
    assert_eq!(
        put["name"],
        json!({"familyName": "Jensen", "formatted": "Jensen", "honorificPrefix": "Ms."}),
        "givenName was ours and is cleared; honorificPrefix never was"
    );
    assert_eq!(put["displayName"], "Jensen");
}

#[test]
fn without_patch_or_preservation_the_put_holds_only_what_we_map() {
    let c = connector(
        r#"{"preserve_unmapped": false}"#,
        vec![spc(false, false), json(200, remote_with(V2, json!({})))],
    );
    let user = with_field(bjensen(), "field_last_name", Some("Jensen-Smith"));
    let l = link(Some(mapped()), None);
    c.provision(&user, UserEvent::Updated, Some(&l)).unwrap();
    assert_eq!(calls(&c), vec![get(SPC_URL), format!("PUT {RID_URL}")]);
    let mut expected = c.map_user(&user).unwrap();
    expected["id"] = json!(RID);
    assert_eq!(body(&sent(&c, 1)), expected);
}

// ----------------------------------------------------------------------------------------
// 7. The linked user is gone
// ----------------------------------------------------------------------------------------

#[test]
fn an_update_answered_404_creates_the_user_again_by_default() {
    let c = connector(
        "",
        vec![
            spc(true, true),
            scim_error(404, None, "Resource 2819c223 not found"),
            list(vec![]),
            list(vec![]),
            list(vec![]),
            json(
                201,
                remote_with(V1, json!({"id": "new-id-1", "meta": {"version": V3}})),
            ),
        ],
    );
    let l = link(Some(mapped()), Some(V1));
    let out = c
        .provision(&bjensen_changed(), UserEvent::Updated, Some(&l))
        .unwrap();
    let mut expected = vec![get(SPC_URL), format!("PATCH {RID_URL}")];
    expected.extend([
        get("https://idp.example/scim/v2/Users?filter=userName%20eq%20%22bjensen%22&startIndex=1&count=10"),
        get(Q_EXTERNAL_ID),
        get("https://idp.example/scim/v2/Users?filter=emails%5Btype%20eq%20%22work%22%20and%20value%20eq%20%22barbara.jensen%40example.com%22%5D&startIndex=1&count=10"),
    ]);
    expected.push(format!("POST {USERS_URL}"));
    assert_eq!(calls(&c), expected);
    assert_eq!(body(&sent(&c, 5)), c.map_user(&bjensen_changed()).unwrap());
    assert_eq!(out.action, Action::Created);
    assert_eq!(out.requests, 6);
    let l = out.link.unwrap();
    assert_eq!(l.remote_id, "new-id-1");
    assert_eq!(l.version.as_deref(), Some(V3));
    assert_eq!(
        out.location.as_deref(),
        Some("https://idp.example/scim/v2/Users/new-id-1")
    );
    assert!(
        logs(&c)
            .iter()
            .any(|m| m.contains("no longer exists; creating it again")),
        "{:?}",
        logs(&c)
    );
}

#[test]
fn an_update_answered_404_unlinks_when_the_policy_says_so() {
    let c = connector(
        r#"{"on_remote_missing": "unlink"}"#,
        vec![spc(true, true), empty(404)],
    );
    let l = link(Some(mapped()), Some(V1));
    let out = c
        .provision(&bjensen_changed(), UserEvent::Updated, Some(&l))
        .unwrap();
    assert_eq!(out.action, Action::Unlinked);
    assert_eq!(out.link, None);
    assert!(out.reason.as_deref().unwrap().contains(RID));
    assert_eq!(writes(&c), 1);
}

#[test]
fn a_missing_user_without_a_snapshot_is_found_missing_by_the_read() {
    let c = connector(
        r#"{"on_remote_missing": "unlink"}"#,
        vec![spc(true, true), empty(404)],
    );
    let out = c
        .provision(&bjensen(), UserEvent::Updated, Some(&link(None, None)))
        .unwrap();
    assert_eq!(calls(&c), vec![get(SPC_URL), get(RID_URL)]);
    assert_eq!(out.action, Action::Unlinked);
    assert_eq!(out.link, None);
}

#[test]
fn a_missing_user_is_unlinked_when_create_is_disabled() {
    let c = connector(
        r#"{"operations": {"create": false}}"#,
        vec![spc(true, true), empty(404)],
    );
    let out = c
        .provision(
            &bjensen_changed(),
            UserEvent::Updated,
            Some(&link(Some(mapped()), None)),
        )
        .unwrap();
    assert_eq!(out.action, Action::Unlinked);
    assert_eq!(writes(&c), 1);
}

// ----------------------------------------------------------------------------------------
// 8. Deactivation and reactivation
// ----------------------------------------------------------------------------------------

fn blocked() -> CmsUser {
    CmsUser {
        active: false,
        ..bjensen()
    }
}

fn inactive_snapshot() -> Value {
    let mut s = mapped();
    s["active"] = json!(false);
    s
}

#[test]
fn blocking_patches_active_false() {
    let c = connector(
        "",
        vec![
            spc(true, true),
            json(200, remote_with(V2, json!({"active": false}))),
        ],
    );
    let l = link(Some(mapped()), Some(V1));
    let out = c
        .provision(&blocked(), UserEvent::Blocked, Some(&l))
        .unwrap();
    assert_eq!(calls(&c), vec![get(SPC_URL), format!("PATCH {RID_URL}")]);
    let patch = sent(&c, 1);
    assert_eq!(header(&patch, "If-Match"), Some(V1));
    assert_eq!(
        body(&patch),
        json!({"schemas": [PATCH_SCHEMA],
               "Operations": [{"op": "replace", "path": "active", "value": false}]})
    );
    assert_eq!(out.action, Action::Deactivated);
    assert_eq!(out.location.as_deref(), Some(RID_URL));
    let l = out.link.unwrap();
    assert_eq!(l.remote_id, RID);
    assert_eq!(l.version.as_deref(), Some(V2));
    assert_eq!(snapshot_of(&l), inactive_snapshot());
}

#[test]
fn deprovisioning_a_deleted_user_deactivates_by_default() {
    let c = connector("", vec![spc(true, false), empty(204)]);
    let l = link(Some(mapped()), None);
    let out = c
        .provision(&bjensen(), UserEvent::Deleted, Some(&l))
        .unwrap();
    assert_eq!(
        body(&sent(&c, 1)),
        patch_body(json!([{"op": "replace", "path": "active", "value": false}]))
    );
    assert_eq!(out.action, Action::Deactivated);
}

#[test]
fn blocking_without_patch_puts_the_whole_user_with_active_false() {
    let c = connector(
        "",
        vec![
            spc(false, true),
            json(200, remote_with(V2, json!({}))),
            json(200, remote_with(V3, json!({"active": false}))),
        ],
    );
    let l = link(Some(mapped()), Some(V1));
    let out = c
        .provision(&blocked(), UserEvent::Blocked, Some(&l))
        .unwrap();
    assert_eq!(
        calls(&c),
        vec![get(SPC_URL), get(RID_URL), format!("PUT {RID_URL}")]
    );
    let put = sent(&c, 2);
    let mut expected = remote();
    expected.as_object_mut().unwrap().remove("meta");
    expected["active"] = json!(false);
    assert_eq!(body(&put), expected);
    assert!(header(&put, "If-Match").is_some());
    assert_eq!(out.action, Action::Deactivated);
    let l = out.link.unwrap();
    assert_eq!(l.version.as_deref(), Some(V3));
    assert_eq!(snapshot_of(&l), inactive_snapshot());
}

#[test]
fn an_already_deactivated_snapshot_sends_nothing() {
    let c = connector("", vec![]);
    let l = link(Some(inactive_snapshot()), Some(V1));
    let out = c
        .provision(&blocked(), UserEvent::Blocked, Some(&l))
        .unwrap();
    assert_eq!(out.action, Action::Unchanged);
    assert_eq!(out.reason.as_deref(), Some("already deactivated"));
    assert_eq!(out.link.as_ref(), Some(&l));
    assert_eq!(out.requests, 0);
    assert!(c.http.sent().is_empty());
}

#[test]
fn deactivating_a_user_gone_from_the_server_unlinks() {
    // PATCH answered 404.
    let c = connector("", vec![spc(true, true), empty(404)]);
    let out = c
        .provision(
            &blocked(),
            UserEvent::Blocked,
            Some(&link(Some(mapped()), None)),
        )
        .unwrap();
    assert_eq!(out.action, Action::Unlinked);
    assert_eq!(out.link, None);
    assert!(out.reason.unwrap().contains("no longer exists"));

    // PUT server: the read finds nothing, so nothing is written.
    let c = connector("", vec![spc(false, true), empty(404)]);
    let out = c
        .provision(
            &blocked(),
            UserEvent::Blocked,
            Some(&link(Some(mapped()), None)),
        )
        .unwrap();
    assert_eq!(out.action, Action::Unlinked);
    assert_eq!(calls(&c), vec![get(SPC_URL), get(RID_URL)]);
}

#[test]
fn a_user_deactivated_on_the_server_is_reactivated_on_unblock() {
    // The server's admin deactivated her already: blocking finds nothing to send...
    let c = connector(
        "",
        vec![
            spc(false, false),
            json(200, remote_with(V2, json!({"active": false}))),
            // ...and unblocking must turn her back on.
            json(200, remote_with(V2, json!({"active": false}))),
            json(200, remote_with(V3, json!({}))),
        ],
    );
    let l = link(Some(mapped()), None);
    let out = c
        .provision(&blocked(), UserEvent::Blocked, Some(&l))
        .unwrap();
    assert_eq!(out.action, Action::Unchanged);
    assert_eq!(writes(&c), 0);
    let l = out.link.unwrap();
    assert_eq!(snapshot_of(&l)["active"], json!(false));

    let out = c
        .provision(&bjensen(), UserEvent::Unblocked, Some(&l))
        .unwrap();
    assert_eq!(out.action, Action::Updated);
    assert_eq!(calls(&c).last().unwrap(), &format!("PUT {RID_URL}"));
    assert_eq!(body(&sent(&c, 3))["active"], json!(true));
}

#[test]
fn unblocking_reactivates_with_active_true() {
    let c = connector(
        "",
        vec![spc(true, true), json(200, remote_with(V2, json!({})))],
    );
    let l = link(Some(inactive_snapshot()), Some(V1));
    let out = c
        .provision(&bjensen(), UserEvent::Unblocked, Some(&l))
        .unwrap();
    assert_eq!(calls(&c), vec![get(SPC_URL), format!("PATCH {RID_URL}")]);
    let patch = sent(&c, 1);
    assert_eq!(header(&patch, "If-Match"), Some(V1));
    assert_eq!(
        body(&patch),
        patch_body(json!([{"op": "replace", "path": "active", "value": true}]))
    );
    assert_eq!(out.action, Action::Updated);
    let l = out.link.unwrap();
    assert_eq!(snapshot_of(&l), mapped());
    assert_eq!(l.version.as_deref(), Some(V2));
}

// ----------------------------------------------------------------------------------------
// 9. Deletion
// ----------------------------------------------------------------------------------------

const DELETE_POLICY: &str = r#"{"operations": {"delete": true}, "deprovision": "delete"}"#;

fn delete_with(
    answer: Answer,
) -> (
    Connector<FakeHttp, MemoryLog>,
    Result<ProvisionOutcome, ProvisioningError>,
) {
    let c = connector(DELETE_POLICY, vec![answer]);
    let l = Link {
        remote_id: "john smith/1".into(),
        version: Some(V1.into()),
        snapshot: Some(mapped().to_string()),
    };
    let result = c.provision(&bjensen(), UserEvent::Deleted, Some(&l));
    (c, result)
}

#[test]
fn deleting_sends_delete_to_the_encoded_id() {
    let (c, out) = delete_with(empty(204));
    let out = out.unwrap();
    assert_eq!(
        calls(&c),
        vec!["DELETE https://idp.example/scim/v2/Users/john%20smith%2F1".to_string()]
    );
    let del = sent(&c, 0);
    assert_eq!(del.body, None);
    assert_eq!(header(&del, "Content-Type"), None);
    assert_eq!(
        header(&del, "Authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(out.action, Action::Deleted);
    assert_eq!(out.link, None);
    assert_eq!(out.requests, 1);
}

#[test]
fn deleting_a_user_already_gone_is_done_too() {
    let (_, out) = delete_with(scim_error(404, None, "Resource john smith/1 not found"));
    let out = out.unwrap();
    assert_eq!(out.action, Action::Deleted);
    assert_eq!(out.link, None);
}

#[test]
fn a_failed_delete_is_retry_classed() {
    let (_, out) = delete_with(scim_error(500, None, "Internal error"));
    let err = out.unwrap_err();
    assert!(
        matches!(&err, ProvisioningError::Scim(e) if e.status == 500),
        "{err:?}"
    );
    assert_eq!(err.retry_class(), RetryClass::Backoff);

    let (_, out) = delete_with(with_header(
        scim_error(429, Some("tooMany"), "Too many requests"),
        "Retry-After",
        "30",
    ));
    let err = out.unwrap_err();
    assert_eq!(err.retry_class(), RetryClass::AfterSeconds(30));
    assert!(
        matches!(&err, ProvisioningError::Scim(e) if e.status == 429),
        "{err:?}"
    );
}

// ----------------------------------------------------------------------------------------
// 10. Skips
// ----------------------------------------------------------------------------------------

#[test]
fn skips_send_nothing_and_say_why() {
    let scoped = r#"{"scope": {"field": "roles", "any_of": ["editor"]}}"#;
    let cases: Vec<(&str, UserEvent, Option<Link>, &str)> = vec![
        (
            r#"{"operations": {"create": false}}"#,
            UserEvent::Created,
            None,
            "create is disabled",
        ),
        (
            "",
            UserEvent::Deleted,
            None,
            "deleted user was never provisioned",
        ),
        (
            scoped,
            UserEvent::Created,
            None,
            "user is out of scope and was never provisioned",
        ),
        (
            r#"{"operations": {"update": false}}"#,
            UserEvent::Updated,
            Some(link(Some(mapped()), None)),
            "update is disabled",
        ),
    ];
    for (policy, event, l, reason) in cases {
        let c = connector(policy, vec![]);
        let out = c.provision(&bjensen(), event, l.as_ref()).unwrap();
        assert_eq!(out.action, Action::Skipped, "{policy} {event:?}");
        assert_eq!(out.reason.as_deref(), Some(reason));
        assert_eq!(out.link, l);
        assert_eq!(out.requests, 0);
        assert!(c.http.sent().is_empty(), "{policy} {event:?}");
        assert!(
            logs(&c).iter().any(|m| m.contains(reason)),
            "{:?}",
            logs(&c)
        );
    }
}

#[test]
fn a_user_in_scope_is_provisioned() {
    let scoped = r#"{"scope": {"field": "roles", "any_of": ["editor"]}}"#;
    let mut user = bjensen();
    user.fields
        .push(("roles".into(), FieldValue::TextList(vec!["editor".into()])));
    let c = connector(scoped, vec![spc(true, true), list(vec![remote()])]);
    let out = c.provision(&user, UserEvent::Created, None).unwrap();
    assert_eq!(out.action, Action::Adopted);
}

#[test]
fn a_linked_user_leaving_the_scope_is_deactivated() {
    let scoped = r#"{"scope": {"field": "roles", "any_of": ["editor"]}}"#;
    let c = connector(scoped, vec![spc(true, true), empty(204)]);
    let out = c
        .provision(
            &bjensen(),
            UserEvent::Updated,
            Some(&link(Some(mapped()), None)),
        )
        .unwrap();
    assert_eq!(out.action, Action::Deactivated);
    assert_eq!(
        body(&sent(&c, 1)),
        patch_body(json!([{"op": "replace", "path": "active", "value": false}]))
    );
}

// ----------------------------------------------------------------------------------------
// 11. Error bodies
// ----------------------------------------------------------------------------------------

#[test]
fn an_html_error_page_is_an_unexpected_response_with_an_excerpt() {
    let page = HttpResponse {
        status: 502,
        headers: vec![("Content-Type".into(), "text/html; charset=utf-8".into())],
        body: b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n".to_vec(),
    };
    let c = connector(
        "",
        vec![
            spc(true, true),
            list(vec![]),
            list(vec![]),
            list(vec![]),
            Ok(page),
        ],
    );
    let err = c
        .provision(&bjensen(), UserEvent::Created, None)
        .unwrap_err();
    let ProvisioningError::UnexpectedResponse {
        status,
        reason,
        retry,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(*status, 502);
    assert!(reason.contains("502 Bad Gateway"), "{reason}");
    assert!(!reason.contains('\r') && !reason.contains('\n'), "{reason}");
    assert_eq!(*retry, RetryClass::Backoff);
    assert!(err.to_string().contains("HTTP 502"), "{err}");
}

#[test]
fn a_scim_error_with_a_string_status_gives_its_fields() {
    let c = connector(
        "",
        vec![
            spc(true, true),
            list(vec![]),
            list(vec![]),
            list(vec![]),
            json(
                400,
                json!({
                    "schemas": [ERROR_SCHEMA],
                    "status": "400",
                    "scimType": "invalidValue",
                    "detail": "Attribute 'emails' has an invalid value."
                }),
            ),
        ],
    );
    let err = c
        .provision(&bjensen(), UserEvent::Created, None)
        .unwrap_err();
    assert_eq!(
        err,
        ProvisioningError::Scim(ScimError {
            status: 400,
            scim_type: Some("invalidValue".into()),
            detail: Some("Attribute 'emails' has an invalid value.".into()),
            retry: RetryClass::Permanent,
        })
    );
    assert_eq!(
        err.to_string(),
        "SCIM error: HTTP 400 (invalidValue): Attribute 'emails' has an invalid value."
    );
}

#[test]
fn a_created_answer_without_an_id_is_an_error() {
    let c = connector(
        "",
        vec![
            spc(true, true),
            list(vec![]),
            list(vec![]),
            list(vec![]),
            json(
                201,
                json!({"schemas": [USER_SCHEMA], "userName": "bjensen"}),
            ),
        ],
    );
    let err = c
        .provision(&bjensen(), UserEvent::Created, None)
        .unwrap_err();
    assert!(
        matches!(&err, ProvisioningError::UnexpectedResponse { status: 201, reason, .. }
            if reason.contains("no id")),
        "{err:?}"
    );
}

#[test]
fn a_failing_lookup_stops_before_any_write() {
    let c = connector(
        "",
        vec![
            spc(true, true),
            scim_error(401, None, "Invalid bearer token"),
        ],
    );
    let err = c
        .provision(&bjensen(), UserEvent::Created, None)
        .unwrap_err();
    assert!(
        matches!(&err, ProvisioningError::Scim(e) if e.status == 401),
        "{err:?}"
    );
    assert_eq!(err.retry_class(), RetryClass::Permanent);
    assert_eq!(writes(&c), 0);
}

// ----------------------------------------------------------------------------------------
// 12. Missing required attribute
// ----------------------------------------------------------------------------------------

#[test]
fn a_missing_user_name_fails_before_any_request() {
    let user = with_field(bjensen(), "name", None);
    let expected = ProvisioningError::MissingAttribute {
        user_id: "42".into(),
        attribute: "userName".into(),
    };
    let c = connector("", vec![spc(true, true)]);
    let err = c.provision(&user, UserEvent::Created, None).unwrap_err();
    assert_eq!(err, expected);
    assert!(c.http.sent().is_empty());
    assert!(err.to_string().contains("42") && err.to_string().contains("userName"));

    // An update of a linked user fails the same way, still before any request.
    let c = connector("", vec![spc(true, true)]);
    let err = c
        .provision(&user, UserEvent::Updated, Some(&link(Some(mapped()), None)))
        .unwrap_err();
    assert_eq!(err, expected);
    assert!(c.http.sent().is_empty(), "{:?}", calls(&c));
    assert!(c.map_user(&user).is_err());
}

// ----------------------------------------------------------------------------------------
// 13. Servers without /ServiceProviderConfig
// ----------------------------------------------------------------------------------------

#[test]
fn a_server_without_service_provider_config_is_updated_with_put() {
    let c = connector(
        "",
        vec![
            scim_error(404, None, "Not found"),
            json(200, remote()),
            json(200, remote_with(V2, json!({}))),
        ],
    );
    let l = link(Some(mapped()), Some(V1));
    let user = with_field(bjensen(), "field_last_name", Some("Jensen-Smith"));
    let out = c.provision(&user, UserEvent::Updated, Some(&l)).unwrap();
    assert_eq!(
        calls(&c),
        vec![get(SPC_URL), get(RID_URL), format!("PUT {RID_URL}")]
    );
    let put = sent(&c, 2);
    assert_eq!(header(&put, "If-Match"), None, "ETags are not assumed");
    let b = body(&put);
    assert_eq!(b["name"]["familyName"], "Jensen-Smith");
    assert_eq!(b["displayName"], "Barbara Jensen-Smith");
    assert_eq!(b["nickName"], "Babs");
    assert_eq!(b["id"], RID);
    assert_eq!(b.get("meta"), None);
    assert_eq!(out.action, Action::Updated);
}

#[test]
fn a_server_without_service_provider_config_is_still_matched_before_creating() {
    let c = connector(
        "",
        vec![
            empty(501),
            list(vec![]),
            list(vec![]),
            list(vec![]),
            json(201, remote()),
        ],
    );
    let out = c.provision(&bjensen(), UserEvent::Created, None).unwrap();
    let mut expected = vec![get(SPC_URL)];
    expected.extend(lookups());
    expected.push(format!("POST {USERS_URL}"));
    assert_eq!(calls(&c), expected);
    assert_eq!(out.action, Action::Created);
}

#[test]
fn a_server_that_says_it_cannot_filter_is_not_searched_but_listed() {
    let mut no_filter = spc(true, true).unwrap();
    let mut v: Value = serde_json::from_slice(&no_filter.body).unwrap();
    v["filter"] = json!({"supported": false, "maxResults": 0});
    no_filter.body = serde_json::to_vec(&v).unwrap();
    let someone = json!({"schemas": [USER_SCHEMA], "id": "s", "userName": "someone"});
    let c = connector(
        "",
        vec![Ok(no_filter), list(vec![someone]), json(201, remote())],
    );
    let out = c.provision(&bjensen(), UserEvent::Created, None).unwrap();
    assert_eq!(
        calls(&c),
        vec![get(SPC_URL), get(LISTING_URL), format!("POST {USERS_URL}")]
    );
    assert_eq!(out.action, Action::Created);
}

// ----------------------------------------------------------------------------------------
// 14. Entra-like dialect
// ----------------------------------------------------------------------------------------

fn entra_user(active: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "id": RID,
        "externalId": "42",
        "userName": "bjensen",
        "active": active,
        "displayName": "Barbara Jensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen", "formatted": "Barbara Jensen"},
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}],
        "meta": {"resourceType": "User", "version": V1}
    })
}

#[test]
fn string_booleans_and_either_spelling_of_resources_do_not_break_adoption() {
    for key in ["Resources", "resources"] {
        let found = json(
            200,
            json!({"schemas": [LIST_SCHEMA], "totalResults": 1, "itemsPerPage": 1,
                   "startIndex": 1, key: [entra_user("False")]}),
        );
        let c = connector("", vec![spc(true, true), found, empty(204)]);
        let out = c.provision(&bjensen(), UserEvent::Created, None).unwrap();
        assert_eq!(out.action, Action::Adopted, "{key}");
        assert_eq!(out.link.as_ref().unwrap().remote_id, RID);
        assert_eq!(
            calls(&c),
            vec![get(SPC_URL), get(Q_USERNAME), format!("PATCH {RID_URL}")]
        );
        assert_eq!(
            body(&sent(&c, 2)),
            patch_body(json!([{"op": "replace", "path": "active", "value": true}])),
            "{key}"
        );
    }
}

#[test]
fn a_string_true_is_the_same_as_true() {
    let found = json(
        200,
        json!({"totalResults": 1, "Resources": [entra_user("True")]}),
    );
    let c = connector("", vec![spc(true, true), found]);
    let out = c.provision(&bjensen(), UserEvent::Created, None).unwrap();
    assert_eq!(out.action, Action::Adopted);
    assert_eq!(writes(&c), 0, "{:?}", calls(&c));
}

#[test]
fn capitalised_sub_attribute_keys_are_matched_and_compared_case_insensitively() {
    let found = json!({
        "schemas": [USER_SCHEMA],
        "id": RID,
        "ExternalId": "42",
        "UserName": "BJensen",
        "Active": true,
        "DisplayName": "Barbara Jensen",
        "Name": {"GivenName": "Barbara", "FamilyName": "Jensen", "Formatted": "Barbara Jensen"},
        "Emails": [
            {"Value": "bjensen@example.com", "Type": "work", "Primary": true},
            {"Value": "babs@jensen.org", "Type": "home"}
        ]
    });
    let c = connector("", vec![spc(true, true), list(vec![found]), empty(204)]);
    let out = c.provision(&bjensen(), UserEvent::Created, None).unwrap();
    assert_eq!(out.action, Action::Adopted);
    // The look-up matched "BJensen" (userName is case-insensitive); the only change is
    // her userName's case. The capitalised emails and name are compared as equal, so the
    // home email is not at risk of a whole-attribute replace.
    assert_eq!(
        calls(&c),
        vec![get(SPC_URL), get(Q_USERNAME), format!("PATCH {RID_URL}")]
    );
    assert_eq!(
        body(&sent(&c, 2)),
        patch_body(json!([{"op": "replace", "path": "userName", "value": "bjensen"}]))
    );
}

// ----------------------------------------------------------------------------------------
// 15. Secrets
// ----------------------------------------------------------------------------------------

#[test]
fn the_token_never_reaches_a_log_line_or_an_error() {
    let scenarios: Vec<(Vec<Answer>, UserEvent, Option<Link>)> = vec![
        (
            vec![
                spc(true, true),
                list(vec![]),
                list(vec![]),
                list(vec![]),
                json(201, remote()),
            ],
            UserEvent::Created,
            None,
        ),
        (
            vec![
                spc(true, true),
                scim_error(401, None, "Bearer token rejected"),
            ],
            UserEvent::Created,
            None,
        ),
        (
            vec![
                spc(true, true),
                Err(TransportError::Tls("certificate expired".into())),
            ],
            UserEvent::Updated,
            Some(link(Some(mapped()), Some(V1))),
        ),
        (
            vec![
                spc(true, true),
                list(vec![]),
                list(vec![]),
                list(vec![]),
                Err(TransportError::Timeout),
            ],
            UserEvent::Created,
            None,
        ),
        (
            vec![spc(true, true), scim_error(412, None, "x"), empty(404)],
            UserEvent::Blocked,
            Some(link(Some(mapped()), Some(V1))),
        ),
    ];
    let mut errors = 0;
    for (script, event, l) in scenarios {
        let user = if event == UserEvent::Blocked {
            blocked()
        } else {
            bjensen_changed()
        };
        let c = connector("", script);
        let result = c.provision(&user, event, l.as_ref());
        // The token did travel, in the Authorization header.
        assert!(
            c.http
                .sent()
                .iter()
                .all(|r| header(r, "Authorization") == Some(format!("Bearer {TOKEN}").as_str()))
        );
        let lines = logs(&c);
        assert!(!lines.is_empty());
        for line in &lines {
            assert!(!line.contains(TOKEN), "{line}");
        }
        if let Err(e) = result {
            errors += 1;
            assert!(!e.to_string().contains(TOKEN), "{e}");
            assert!(!format!("{e:?}").contains(TOKEN), "{e:?}");
        }
    }
    assert_eq!(errors, 3);
}

#[test]
fn every_call_logs_its_outcome_and_request_count() {
    let c = connector(
        "",
        vec![
            spc(true, true),
            list(vec![]),
            list(vec![]),
            list(vec![]),
            json(201, remote()),
        ],
    );
    c.provision(&bjensen(), UserEvent::Created, None).unwrap();
    let lines = logs(&c);
    assert_eq!(
        lines.last().unwrap(),
        "user 42 (Created): Created in 5 request(s)"
    );
    assert!(
        lines.contains(&format!("POST {USERS_URL} -> 201")),
        "{lines:?}"
    );
}

// ----------------------------------------------------------------------------------------
// First-sync index
// ----------------------------------------------------------------------------------------

fn page(resources: Vec<Value>, total: usize, start: usize) -> Answer {
    json(
        200,
        json!({"schemas": [LIST_SCHEMA], "totalResults": total, "startIndex": start,
               "itemsPerPage": resources.len(), "Resources": resources}),
    )
}

#[test]
fn index_lists_pages_then_matches_without_lookups() {
    let c = connector(
        "",
        vec![
            spc(true, false),
            page(vec![json!({"id": "a", "userName": "someone"})], 2, 1),
            page(vec![json!({"id": RID, "userName": "BJENSEN"})], 2, 2),
            // create → index says RID; the full resource is read, then patched.
            json(
                200,
                json!({"id": RID, "userName": "bjensen", "schemas": [USER_SCHEMA]}),
            ),
            json(
                200,
                json!({"id": RID, "userName": "bjensen", "meta": {"version": V2}}),
            ),
        ],
    );
    assert_eq!(c.index_remote_users().unwrap().users, 2);
    let sent = c.http.sent();
    assert!(
        sent[1].url.contains("startIndex=1&count="),
        "{}",
        sent[1].url
    );
    assert!(
        sent[1]
            .url
            .contains("attributes=id%2CuserName%2CexternalId%2Cemails")
    );
    assert!(sent[2].url.contains("startIndex=2&count="));
    let out = c.provision(&bjensen(), UserEvent::Created, None).unwrap();
    assert_eq!(out.action, Action::Adopted);
    let sent = c.http.sent();
    assert_eq!(
        sent[3].url, RID_URL,
        "the match is read in full, not searched"
    );
    assert!(
        sent.iter().all(|r| !r.url.contains("filter=")),
        "no look-ups"
    );
}

/// A page of `n` fresh users starting at `start`, from a server that claims a million.
fn endless_page(start: usize, n: usize) -> Answer {
    let users = (start..start + n)
        .map(|i| json!({"id": format!("u{i}"), "userName": format!("user{i}")}))
        .collect();
    page(users, 1_000_000, start)
}

/// Lists a server that claims a million users and serves `pages` pages of fresh ones under
/// `policy`: the error and the requests sent.
fn list_endless(policy: &str, pages: usize) -> (String, usize) {
    let mut script = vec![spc(true, false)];
    script.extend((0..pages).map(|p| endless_page(1 + p * 100, 100)));
    let c = connector(policy, script);
    let err = c.index_remote_users().unwrap_err().to_string();
    (err, c.http.sent().len())
}

#[test]
fn a_listing_stops_at_the_policys_page_limit_when_the_server_lies_about_its_total() {
    let (err, sent) = list_endless(r#"{"listing": {"max_pages": 4}}"#, 5);
    assert!(err.contains("after 4 pages"), "{err}");
    assert!(err.contains("listing.max_pages"), "{err}");
    assert_eq!(sent, 1 + 4, "discovery and 4 pages, no fifth");
}

#[test]
fn a_listing_stops_at_the_policys_user_limit() {
    let (err, sent) = list_endless(r#"{"listing": {"max_users": 150}}"#, 3);
    assert!(err.contains("past 150 users"), "{err}");
    assert_eq!(sent, 1 + 2, "it stops on the page that passes the limit");
}

#[test]
fn a_server_cycling_through_its_pages_ends_the_listing_with_an_error() {
    // Pages 1 and 2, then page 1 again for startIndex=201: never the same page twice in
    // a row, so only remembering every page's first user catches it.
    let c = connector(
        "",
        vec![
            spc(true, false),
            endless_page(1, 100),
            endless_page(101, 100),
            endless_page(1, 100),
        ],
    );
    let err = c.index_remote_users().unwrap_err().to_string();
    assert!(err.contains("served before"), "{err}");
    assert!(err.contains("startIndex=201"), "{err}");
}

#[test]
fn index_without_a_match_creates_directly_and_ambiguity_is_an_error() {
    let c = connector(
        "",
        vec![
            spc(true, false),
            page(
                vec![
                    json!({"id": "x1", "userName": "other", "emails": [{"type": "work", "value": "bjensen@example.com"}]}),
                    json!({"id": "x2", "userName": "other2", "emails": [{"type": "work", "value": "BJENSEN@example.com"}]}),
                ],
                2,
                1,
            ),
        ],
    );
    c.index_remote_users().unwrap();
    match c.provision(&bjensen(), UserEvent::Created, None) {
        Err(ProvisioningError::Other(m)) => assert!(m.contains("x1") && m.contains("x2"), "{m}"),
        other => panic!("{other:?}"),
    }
    let c = connector(
        "",
        vec![
            spc(true, false),
            page(vec![], 0, 1),
            json(201, json!({"id": RID, "userName": "bjensen"})),
        ],
    );
    assert_eq!(c.index_remote_users().unwrap().users, 0);
    let out = c.provision(&bjensen(), UserEvent::Created, None).unwrap();
    assert_eq!(out.action, Action::Created);
    assert_eq!(out.requests, 1, "one POST, no look-ups");
}

#[test]
fn a_server_that_ignores_paging_is_refused() {
    let same = || page(vec![json!({"id": "a", "userName": "x"})], 5, 1);
    let c = connector("", vec![spc(true, false), same(), same()]);
    assert!(matches!(
        c.index_remote_users(),
        Err(ProvisioningError::Other(_))
    ));
    assert!(c.index.borrow().is_none(), "no half index");
}

// ----------------------------------------------------------------------------------------
// `matching_look_up = "on_conflict"`: the look-up by userName is the server's 409
// ----------------------------------------------------------------------------------------

const ON_CONFLICT: &str = r#"{"matching_look_up": "on_conflict"}"#;

#[test]
fn on_conflict_a_new_user_is_looked_up_by_the_attributes_that_are_not_unique_only() {
    let c = connector(
        ON_CONFLICT,
        vec![
            spc(true, true),
            list(vec![]),
            list(vec![]),
            json(201, remote()),
        ],
    );
    let out = c.provision(&bjensen(), UserEvent::Created, None).unwrap();
    assert_eq!(out.action, Action::Created);
    assert_eq!(
        calls(&c),
        vec![
            get(SPC_URL),
            get(Q_EXTERNAL_ID),
            get(Q_EMAIL),
            format!("POST {USERS_URL}")
        ]
    );
    assert_eq!(body(&sent(&c, 3)), mapped());
    assert_eq!(out.requests, 4);

    // Matching on userName alone: the POST is the only question asked.
    let c = connector(
        r#"{"matching_look_up": "on_conflict", "matching": ["userName"]}"#,
        vec![spc(true, true), json(201, remote())],
    );
    let out = c.provision(&bjensen(), UserEvent::Created, None).unwrap();
    assert_eq!(out.action, Action::Created);
    assert_eq!(calls(&c), vec![get(SPC_URL), format!("POST {USERS_URL}")]);
}

#[test]
fn on_conflict_a_409_looks_up_by_every_attribute_and_adopts() {
    let c = connector(
        ON_CONFLICT,
        vec![
            spc(true, true),
            list(vec![]),
            list(vec![]),
            scim_error(409, Some("uniqueness"), "User name already in use"),
            list(vec![remote_with(V2, json!({"displayName": "B. Jensen"}))]),
            json(200, remote_with(V3, json!({}))),
        ],
    );
    let out = c.provision(&bjensen(), UserEvent::Created, None).unwrap();
    assert_eq!(
        calls(&c),
        vec![
            get(SPC_URL),
            get(Q_EXTERNAL_ID),
            get(Q_EMAIL),
            format!("POST {USERS_URL}"),
            get(Q_USERNAME),
            format!("PATCH {RID_URL}"),
        ]
    );
    assert_eq!(out.action, Action::Adopted);
    assert_eq!(out.link.unwrap().remote_id, RID);
    assert_eq!(writes(&c), 2, "one POST refused, one PATCH: nobody created");
}

#[test]
fn on_conflict_a_409_without_scim_type_is_a_conflict_too() {
    let c = connector(
        r#"{"matching_look_up": "on_conflict", "matching": ["userName"]}"#,
        vec![
            spc(true, true),
            scim_error(409, None, "UNIQUE constraint failed: users.user_name"),
            list(vec![remote()]),
        ],
    );
    let out = c.provision(&bjensen(), UserEvent::Created, None).unwrap();
    assert_eq!(out.action, Action::Adopted);
    assert_eq!(
        calls(&c),
        vec![get(SPC_URL), format!("POST {USERS_URL}"), get(Q_USERNAME)]
    );
}

#[test]
fn on_conflict_a_user_found_by_a_later_attribute_asks_the_user_name_first_as_before() {
    // externalId finds one remote user, userName (earlier in `matching`) another: the
    // userName match wins, as it does when every attribute is looked up in order.
    let by_name = remote_with(V1, json!({"id": "by-name", "externalId": "7"}));
    let by_external_id = remote_with(
        V1,
        json!({"id": "by-external-id", "userName": "someone-else"}),
    );
    let c = connector(
        ON_CONFLICT,
        vec![
            spc(true, true),
            list(vec![by_external_id]),
            list(vec![by_name.clone()]),
            json(200, by_name),
        ],
    );
    let out = c.provision(&bjensen(), UserEvent::Created, None).unwrap();
    assert_eq!(out.action, Action::Adopted);
    assert_eq!(out.link.unwrap().remote_id, "by-name");
    assert_eq!(
        calls(&c),
        vec![
            get(SPC_URL),
            get(Q_EXTERNAL_ID),
            get(Q_USERNAME),
            "PATCH https://idp.example/scim/v2/Users/by-name".to_string()
        ]
    );

    // No one by userName: the externalId match is adopted, after the one extra look-up.
    let c = connector(
        ON_CONFLICT,
        vec![spc(true, true), list(vec![remote()]), list(vec![])],
    );
    let out = c.provision(&bjensen(), UserEvent::Created, None).unwrap();
    assert_eq!(out.action, Action::Adopted);
    assert_eq!(
        calls(&c),
        vec![get(SPC_URL), get(Q_EXTERNAL_ID), get(Q_USERNAME)]
    );
}

#[test]
fn on_conflict_several_users_with_one_user_name_warn_that_the_server_does_not_enforce_it() {
    let a = remote_with(V1, json!({"id": "a-1"}));
    let b = remote_with(V1, json!({"id": "b-2", "userName": "BJensen"}));
    let c = connector(
        r#"{"matching_look_up": "on_conflict", "matching": ["userName"]}"#,
        vec![
            spc(true, true),
            scim_error(409, Some("uniqueness"), "taken"),
            list(vec![a.clone(), b.clone()]),
        ],
    );
    let err = c
        .provision(&bjensen(), UserEvent::Created, None)
        .unwrap_err();
    let ProvisioningError::Other(msg) = &err else {
        panic!("{err:?}");
    };
    assert!(msg.contains("a-1") && msg.contains("b-2"), "{msg}");
    assert!(msg.contains("does not enforce its uniqueness"), "{msg}");
    assert!(msg.contains("before_create"), "{msg}");
    assert!(
        logs(&c)
            .iter()
            .any(|l| l.contains("matching_look_up = \"on_conflict\" can create duplicates")),
        "{:?}",
        logs(&c)
    );

    // The default setting says nothing of it: the look-up guards against duplicates there.
    let c = connector(
        r#"{"matching": ["userName"]}"#,
        vec![spc(true, true), list(vec![a, b])],
    );
    let Err(ProvisioningError::Other(msg)) = c.provision(&bjensen(), UserEvent::Created, None)
    else {
        panic!("several matches are an error");
    };
    assert!(!msg.contains("uniqueness"), "{msg}");
}

#[test]
fn on_conflict_a_post_that_timed_out_is_looked_up_by_every_attribute() {
    let c = connector(
        r#"{"matching_look_up": "on_conflict", "matching": ["userName"]}"#,
        vec![
            spc(true, true),
            Err(TransportError::Timeout),
            list(vec![remote()]),
        ],
    );
    let out = c.provision(&bjensen(), UserEvent::Created, None).unwrap();
    assert_eq!(out.action, Action::Adopted);
    assert_eq!(
        calls(&c),
        vec![get(SPC_URL), format!("POST {USERS_URL}"), get(Q_USERNAME)]
    );
}

#[test]
fn only_an_unqualified_or_core_user_name_counts_as_unique_on_every_server() {
    for (path, unique) in [
        ("userName", true),
        ("USERNAME", true),
        ("urn:ietf:params:scim:schemas:core:2.0:User:userName", true),
        ("externalId", false),
        ("emails[type eq \"work\"].value", false),
        ("urn:example:ext:1.0:User:userName", false),
    ] {
        let parsed = AttrPath::parse(path).unwrap();
        assert_eq!(server_unique(&parsed), unique, "{path}");
    }
}

#[test]
fn on_conflict_a_400_uniqueness_on_post_is_a_conflict_too_and_the_default_keeps_it_an_error() {
    let policy = r#"{"matching_look_up": "on_conflict", "matching": ["userName"]}"#;
    let c = connector(
        policy,
        vec![
            spc(true, true),
            scim_error(400, Some("uniqueness"), "userName taken"),
            list(vec![remote()]),
        ],
    );
    let out = c.provision(&bjensen(), UserEvent::Created, None).unwrap();
    assert_eq!(out.action, Action::Adopted);
    assert_eq!(
        calls(&c),
        vec![get(SPC_URL), format!("POST {USERS_URL}"), get(Q_USERNAME)]
    );

    // Any other 400 is the server's error, as before.
    let c = connector(
        policy,
        vec![
            spc(true, true),
            scim_error(400, Some("invalidValue"), "bad"),
        ],
    );
    let err = c
        .provision(&bjensen(), UserEvent::Created, None)
        .unwrap_err();
    assert!(
        matches!(&err, ProvisioningError::Scim(e) if e.status == 400),
        "{err:?}"
    );
    // (A first 400 makes the connector read /Schemas, as ever; nothing looks the user up.)
    assert!(
        calls(&c).iter().all(|c| !c.contains("filter=")),
        "{:?}",
        calls(&c)
    );

    // The default looked the user up before the POST, so a 400 there stays the error it was.
    let c = connector(
        r#"{"matching": ["userName"]}"#,
        vec![
            spc(true, true),
            list(vec![]),
            scim_error(400, Some("uniqueness"), "userName taken"),
        ],
    );
    let err = c
        .provision(&bjensen(), UserEvent::Created, None)
        .unwrap_err();
    assert!(
        matches!(&err, ProvisioningError::Scim(e) if e.status == 400),
        "{err:?}"
    );
}
