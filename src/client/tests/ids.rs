//! Remote ids that are empty or dot-segments (`.`, `..`, `%2e%2e`) never become a request on
//! another path: URL parsers turn `DELETE /scim/v2/Users/..` into `DELETE /scim/v2/`. A
//! server that hands out such an id is an unexpected response; a stored link that holds one
//! fails before any request.

use serde_json::{Value, json};

use super::resource_path;
use crate::client::bulk::BatchItem;
use crate::client::connector::Connector;
use crate::client::fake::{FakeHttp, MemoryLog, json_response};
use crate::config::{Auth, ConnectorConfig};
use crate::error::{ProvisioningError, RetryClass};
use crate::user::{CmsUser, FieldValue, Link, UserEvent};

const BASE: &str = "https://idp.example/scim/v2";
const DOT_IDS: [&str; 5] = ["..", ".", "", "%2e%2e", "%2E."];

fn connector(policy: &str, answers: Vec<Value>) -> Connector<FakeHttp, MemoryLog> {
    let http = FakeHttp::new(vec![]);
    for (status, body) in answers
        .into_iter()
        .map(|a| (a["status"].clone(), a["body"].clone()))
    {
        let status = u16::try_from(status.as_u64().unwrap_or(200)).unwrap_or(200);
        http.push(Ok(json_response(status, body)));
    }
    let config = ConnectorConfig::new(BASE, Auth::Bearer("tok".into()), 5_000).unwrap();
    Connector::open(config, policy, http, MemoryLog::default()).unwrap()
}

fn answer(status: u16, body: Value) -> Value {
    json!({"status": status, "body": body})
}

fn user() -> CmsUser {
    CmsUser {
        id: "42".into(),
        fields: vec![
            ("name".into(), FieldValue::Text("bjensen".into())),
            (
                "mail".into(),
                FieldValue::Text("bjensen@example.com".into()),
            ),
        ],
        active: true,
    }
}

fn spc() -> Value {
    answer(
        200,
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
               "patch": {"supported": true}, "bulk": {"supported": true, "maxOperations": 10,
               "maxPayloadSize": 1_000_000}, "etag": {"supported": false},
               "filter": {"supported": true, "maxResults": 200}}),
    )
}

fn empty_list() -> Value {
    answer(
        200,
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
               "totalResults": 0, "Resources": []}),
    )
}

#[test]
fn resource_paths_refuse_empty_and_dot_segment_ids() {
    for id in DOT_IDS {
        let err = resource_path("/Users", id).unwrap_err();
        assert!(err.to_string().contains("dot-segment"), "{id:?}: {err}");
    }
    assert_eq!(resource_path("/Users", "...").unwrap(), "/Users/...");
    assert_eq!(resource_path("/Users", "a/..").unwrap(), "/Users/a%2F..");
    assert_eq!(
        resource_path("/Groups", "%2e%2e%2e").unwrap(),
        "/Groups/%252e%252e%252e"
    );
}

#[test]
fn a_created_user_with_a_dot_segment_id_is_a_permanent_unexpected_response() {
    for id in DOT_IDS {
        let c = connector(
            "",
            vec![
                spc(),
                empty_list(),
                empty_list(),
                empty_list(),
                answer(201, json!({"id": id, "userName": "bjensen"})),
            ],
        );
        let err = c.provision(&user(), UserEvent::Created, None).unwrap_err();
        match &err {
            ProvisioningError::UnexpectedResponse { status, reason, .. } => {
                assert_eq!(*status, 201);
                assert!(reason.contains("has no id"), "{reason}");
            }
            other => panic!("{id:?}: {other:?}"),
        }
        assert_eq!(err.retry_class(), RetryClass::Permanent);
        let calls = c.http.calls();
        assert!(
            calls.last().is_some_and(|call| call.starts_with("POST ")),
            "nothing after the POST: {id:?} {calls:?}"
        );
    }
}

#[test]
fn a_matching_user_with_a_dot_segment_id_is_not_adopted() {
    let c = connector(
        "",
        vec![
            spc(),
            answer(
                200,
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                       "totalResults": 1,
                       "Resources": [{"id": "..", "userName": "bjensen"}]}),
            ),
        ],
    );
    let err = c.provision(&user(), UserEvent::Created, None).unwrap_err();
    assert_eq!(err.retry_class(), RetryClass::Permanent, "{err:?}");
    assert!(
        c.http.calls().iter().all(|call| call.starts_with("GET ")),
        "{:?}",
        c.http.calls()
    );
}

#[test]
fn a_stored_link_with_a_dot_segment_id_sends_nothing() {
    let policy = r#"{"operations": {"delete": true}, "deprovision": "delete"}"#;
    for id in DOT_IDS {
        let link = Link {
            remote_id: id.into(),
            version: None,
            snapshot: None,
        };
        for event in [UserEvent::Deleted, UserEvent::Updated] {
            let c = connector(policy, vec![spc()]);
            let err = c.provision(&user(), event, Some(&link)).unwrap_err();
            assert!(err.to_string().contains("dot-segment"), "{id:?}: {err}");
            let writes: Vec<String> = c
                .http
                .calls()
                .into_iter()
                .filter(|call| !call.starts_with("GET "))
                .collect();
            assert!(writes.is_empty(), "{id:?} {event:?}: {writes:?}");
            assert!(
                c.http.calls().iter().all(|call| !call.contains("/Users/")),
                "{:?}",
                c.http.calls()
            );
        }
        let c = connector(policy, vec![]);
        assert!(c.get_user(id).is_err());
        assert!(c.http.calls().is_empty());
    }
}

#[test]
fn a_batch_item_whose_link_has_a_dot_segment_id_fails_alone() {
    let policy = r#"{"operations": {"delete": true}, "deprovision": "delete"}"#;
    let c = connector(policy, vec![spc()]);
    let item = BatchItem {
        user: user(),
        event: UserEvent::Deleted,
        link: Some(Link {
            remote_id: "..".into(),
            version: None,
            snapshot: None,
        }),
    };
    let outcome = c.provision_batch(&[item]);
    assert_eq!(outcome.results.len(), 1);
    let err = outcome.results[0].as_ref().unwrap_err();
    assert!(err.to_string().contains("dot-segment"), "{err}");
    assert_eq!(outcome.bulk_requests, 0);
    assert!(
        c.http.calls().iter().all(|call| !call.contains("/Bulk")),
        "{:?}",
        c.http.calls()
    );
}
