//! `POST /Bulk` (RFC 7644 §3.7).

use serde_json::{Value, json};

use super::{BASE, TOKEN, assert_error, call, clock, create_user, server};
use crate::ports::{GROUP_SCHEMA, USER_SCHEMA};
use crate::server::{MemoryDirectory, ScimServer, ServerConfig};

fn bulk(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops})
}

fn statuses(r: &Value) -> Vec<String> {
    r["Operations"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|o| {
                    format!(
                        "{} {} {}",
                        o["method"].as_str().unwrap_or(""),
                        o["bulkId"].as_str().unwrap_or("-"),
                        o["status"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn bulk_ids_resolve_even_forward() {
    let s = server();
    // The group refers to a user that a later operation creates (RFC 7644 §3.7.1 lets the
    // server reorder), and a PATCH refers to the group.
    let r = call(
        &s,
        "POST",
        "/Bulk",
        Some(&bulk(json!([
            {"method": "POST", "path": "/Groups", "bulkId": "grp",
             "data": {"schemas": [GROUP_SCHEMA], "displayName": "Tour Guides",
                      "members": [{"type": "User", "value": "bulkId:qwerty"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "qwerty",
             "data": {"schemas": [USER_SCHEMA], "userName": "Alice"}},
            {"method": "PATCH", "path": "/Groups/bulkId:grp",
             "data": {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                      "Operations": [{"op": "replace", "path": "displayName", "value": "Guides"}]}}
        ]))),
    );
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:BulkResponse"])
    );
    assert_eq!(
        statuses(&body),
        ["POST qwerty 201", "POST grp 201", "PATCH - 200"]
    );
    let user_loc = body["Operations"][0]["location"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let user_id = user_loc.rsplit('/').next().unwrap_or("").to_string();
    assert!(user_loc.starts_with(&format!("{BASE}/Users/")));
    assert_eq!(body["Operations"][0]["version"], "W/\"1\"");
    let group_loc = body["Operations"][1]["location"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert_eq!(body["Operations"][2]["location"], group_loc.as_str());
    let group_id = group_loc.rsplit('/').next().unwrap_or("");
    let g = call(&s, "GET", &format!("/Groups/{group_id}"), None).json();
    assert_eq!(g["members"], json!([{"type": "User", "value": user_id}]));
    assert_eq!(g["displayName"], "Guides");
    assert!(body["Operations"][0].get("response").is_none());
}

#[test]
fn bulk_versions_errors_and_deletes() {
    let s = server();
    let id = create_user(&s, "bjensen", json!({}));
    let r = call(
        &s,
        "POST",
        "/Bulk",
        Some(&bulk(json!([
            {"method": "PUT", "path": format!("/Users/{id}"), "version": "W/\"7\"",
             "data": {"schemas": [USER_SCHEMA], "userName": "bjensen"}},
            {"method": "PUT", "path": format!("/Users/{id}"), "version": "W/\"1\"",
             "data": {"schemas": [USER_SCHEMA], "userName": "bjensen", "title": "x"}},
            {"method": "POST", "path": "/Users", "bulkId": "dup",
             "data": {"schemas": [USER_SCHEMA], "userName": "BJENSEN"}},
            {"method": "POST", "path": "/Groups", "bulkId": "g",
             "data": {"schemas": [GROUP_SCHEMA], "displayName": "G", "members": [{"value": "bulkId:dup"}]}},
            {"method": "POST", "path": "/Groups",
             "data": {"schemas": [GROUP_SCHEMA], "displayName": "H", "members": [{"value": "bulkId:nobody"}]}},
            {"method": "GET", "path": "/Users"},
            {"method": "POST", "path": "/Bulk", "data": {}},
            {"path": "/Users"},
            {"method": "DELETE", "path": format!("/Users/{id}")},
            {"method": "DELETE", "path": format!("/Users/{id}")}
        ]))),
    );
    let body = r.json();
    assert_eq!(
        statuses(&body),
        [
            "PUT - 412",
            "PUT - 200",
            "POST dup 409",
            "POST g 409",
            "POST - 409",
            "GET - 400",
            "POST - 400",
            " - 400",
            "DELETE - 204",
            "DELETE - 404"
        ]
    );
    assert_eq!(body["Operations"][1]["version"], "W/\"2\"");
    assert_eq!(body["Operations"][2]["response"]["scimType"], "uniqueness");
    assert_eq!(body["Operations"][6]["response"]["scimType"], "invalidPath");
    assert_eq!(
        body["Operations"][8]["location"],
        format!("{BASE}/Users/{id}").as_str()
    );
}

#[test]
fn bulk_cycles_fail_on_errors_and_limits() {
    let s = server();
    // RFC 7644 §3.7.1: two groups that are members of each other.
    let r = call(
        &s,
        "POST",
        "/Bulk",
        Some(&bulk(json!([
            {"method": "POST", "path": "/Groups", "bulkId": "ytrewq",
             "data": {"schemas": [GROUP_SCHEMA], "displayName": "Group A", "members": [{"type": "Group", "value": "bulkId:qwerty"}]}},
            {"method": "POST", "path": "/Groups", "bulkId": "qwerty",
             "data": {"schemas": [GROUP_SCHEMA], "displayName": "Group B", "members": [{"type": "Group", "value": "bulkId:ytrewq"}]}}
        ]))),
    );
    let body = r.json();
    assert_eq!(statuses(&body), ["POST ytrewq 409", "POST qwerty 409"]);
    assert_eq!(
        body["Operations"][0]["response"]["scimType"],
        "invalidValue"
    );

    // failOnErrors: stop after that many failures.
    let r = call(
        &s,
        "POST",
        "/Bulk",
        Some(&json!({"failOnErrors": 1, "Operations": [
            {"method": "POST", "path": "/Users", "data": {"schemas": [USER_SCHEMA]}},
            {"method": "POST", "path": "/Users", "data": {"schemas": [USER_SCHEMA], "userName": "never"}}
        ]})),
    );
    assert_eq!(statuses(&r.json()), ["POST - 400"]);
    assert_error(&call(&s, "GET", "/Users/none", None), 404, None);

    // maxOperations.
    let small = ScimServer::new(
        MemoryDirectory::with_clock(clock),
        ServerConfig {
            bulk_max_operations: 1,
            ..ServerConfig::new(BASE, TOKEN)
        },
    );
    let two = bulk(json!([
        {"method": "DELETE", "path": "/Users/a"},
        {"method": "DELETE", "path": "/Users/b"}
    ]));
    assert_error(&call(&small, "POST", "/Bulk", Some(&two)), 413, None);
    assert_error(
        &call(&s, "POST", "/Bulk", Some(&json!({"Operations": "x"}))),
        400,
        Some("invalidSyntax"),
    );
    assert_error(
        &call(
            &s,
            "POST",
            "/Bulk",
            Some(&json!({"Operations": [], "failOnErrors": "x"})),
        ),
        400,
        Some("invalidValue"),
    );
    let r = call(&s, "POST", "/Bulk", Some(&bulk(json!([]))));
    assert_eq!((r.status, r.json()["Operations"].clone()), (200, json!([])));
}
