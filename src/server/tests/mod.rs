//! End-to-end tests of the server role: requests in, responses out, against
//! [`MemoryDirectory`]. The bodies follow the examples of RFC 7644.

use serde_json::{Value, json};

use crate::ports::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, ResourceKind, USER_SCHEMA};
use crate::scim::message::ERROR_SCHEMA;
use crate::server::{MemoryDirectory, ScimServer, ServerConfig, ServerRequest, ServerResponse};

mod bulk;
mod hostile;

const TOKEN: &str = "s3cret-token";
const BASE: &str = "https://cms.example/scim/v2";

fn clock() -> u64 {
    1_700_000_000
}

fn server() -> ScimServer<MemoryDirectory> {
    ScimServer::new(
        MemoryDirectory::with_clock(clock),
        ServerConfig::new(format!("{BASE}/"), TOKEN),
    )
}

/// A request with the right token; `target` may carry a query.
fn request(method: &str, target: &str, body: Option<&Value>) -> ServerRequest {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    ServerRequest {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers: vec![
            ("Authorization".into(), format!("Bearer {TOKEN}")),
            ("Content-Type".into(), "application/scim+json".into()),
        ],
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
    }
}

fn call(
    s: &ScimServer<MemoryDirectory>,
    method: &str,
    target: &str,
    body: Option<&Value>,
) -> ServerResponse {
    s.handle(&request(method, target, body))
}

fn call_with(
    s: &ScimServer<MemoryDirectory>,
    method: &str,
    target: &str,
    body: Option<&Value>,
    header: (&str, &str),
) -> ServerResponse {
    let mut r = request(method, target, body);
    r.headers.push((header.0.into(), header.1.into()));
    s.handle(&r)
}

/// Asserts a SCIM error response and returns its body.
fn assert_error(r: &ServerResponse, status: u16, scim_type: Option<&str>) -> Value {
    let body = r.json();
    assert_eq!(r.status, status, "{body}");
    assert_eq!(r.header("Content-Type"), Some("application/scim+json"));
    assert_eq!(body["schemas"], json!([ERROR_SCHEMA]), "{body}");
    assert_eq!(body["status"], json!(status.to_string()));
    assert_eq!(
        body.get("scimType").and_then(Value::as_str),
        scim_type,
        "{body}"
    );
    assert!(body["detail"].is_string());
    body
}

fn bjensen() -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "userName": "bjensen",
        "externalId": "bjensen",
        "name": {"formatted": "Ms. Barbara J Jensen III", "familyName": "Jensen", "givenName": "Barbara"},
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}],
        "password": "t1meMa$heen"
    })
}

/// Creates a user and returns its id.
fn create_user(s: &ScimServer<MemoryDirectory>, user_name: &str, extra: Value) -> String {
    let mut body = json!({"schemas": [USER_SCHEMA], "userName": user_name});
    if let (Some(b), Value::Object(x)) = (body.as_object_mut(), extra) {
        b.extend(x);
    }
    let r = call(s, "POST", "/Users", Some(&body));
    assert_eq!(r.status, 201, "{}", r.json());
    r.json()["id"].as_str().unwrap_or_default().to_string()
}

fn create_group(s: &ScimServer<MemoryDirectory>, name: &str, members: &[&str]) -> String {
    let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
    let r = call(
        s,
        "POST",
        "/Groups",
        Some(&json!({"schemas": [GROUP_SCHEMA], "displayName": name, "members": members})),
    );
    assert_eq!(r.status, 201, "{}", r.json());
    r.json()["id"].as_str().unwrap_or_default().to_string()
}

fn user_names(list: &Value) -> Vec<String> {
    list["Resources"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| r["userName"].as_str().unwrap_or("-").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn discovery_answers_without_authentication() {
    let s = server();
    let anon = |path: &str| {
        s.handle(&ServerRequest {
            method: "GET".into(),
            path: path.into(),
            ..ServerRequest::default()
        })
    };
    let spc = anon("/ServiceProviderConfig");
    assert_eq!(spc.status, 200);
    assert_eq!(spc.header("content-type"), Some("application/scim+json"));
    let spc = spc.json();
    assert_eq!(spc["patch"]["supported"], true);
    assert_eq!(
        spc["bulk"],
        json!({"supported": true, "maxOperations": 100, "maxPayloadSize": 1048576})
    );
    assert_eq!(spc["filter"], json!({"supported": true, "maxResults": 200}));
    assert_eq!(spc["changePassword"]["supported"], false);
    assert_eq!(spc["sort"]["supported"], true);
    assert_eq!(spc["etag"]["supported"], true);
    assert_eq!(spc["authenticationSchemes"][0]["type"], "oauthbearertoken");
    assert_eq!(
        spc["meta"]["location"],
        format!("{BASE}/ServiceProviderConfig")
    );

    let schemas = anon("/Schemas").json();
    assert_eq!(schemas["totalResults"], 3);
    let ids: Vec<&str> = schemas["Resources"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, [USER_SCHEMA, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA]);
    let user = anon(&format!("/Schemas/{USER_SCHEMA}")).json();
    assert_eq!(user["name"], "User");
    assert_eq!(
        user["meta"]["location"],
        format!("{BASE}/Schemas/{USER_SCHEMA}")
    );
    let password = user["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == "password"))
        .cloned();
    assert_eq!(
        password.as_ref().map(|p| &p["returned"]),
        Some(&json!("never"))
    );
    assert_eq!(
        password.as_ref().map(|p| &p["mutability"]),
        Some(&json!("writeOnly"))
    );
    assert_error(&anon("/Schemas/urn:nope"), 404, None);

    let types = anon("/ResourceTypes").json();
    assert_eq!(types["totalResults"], 2);
    let user_type = anon("/ResourceTypes/User").json();
    assert_eq!(user_type["endpoint"], "/Users");
    assert_eq!(user_type["schema"], USER_SCHEMA);
    assert_eq!(
        user_type["schemaExtensions"],
        json!([{"schema": ENTERPRISE_USER_SCHEMA, "required": false}])
    );
    assert_eq!(anon("/ResourceTypes/Group").json()["endpoint"], "/Groups");
    assert_error(&anon("/ResourceTypes/Device"), 404, None);
    assert_error(&anon("/Schemas?filter=id%20pr"), 403, None);
}

#[test]
fn authentication() {
    let s = server();
    let mut r = request("GET", "/Users", None);
    r.headers.clear();
    let resp = s.handle(&r);
    assert_error(&resp, 401, None);
    assert_eq!(
        resp.header("WWW-Authenticate"),
        Some("Bearer realm=\"scim\"")
    );
    r.headers = vec![("Authorization".into(), "Bearer s3cret-tokeN".into())];
    assert_error(&s.handle(&r), 401, None);
    r.headers = vec![("Authorization".into(), format!("Basic {TOKEN}"))];
    assert_error(&s.handle(&r), 401, None);
    r.headers = vec![("authorization".into(), format!("bearer {TOKEN}"))];
    assert_eq!(s.handle(&r).status, 200);
    // Every non-discovery endpoint is protected, whatever the method.
    for (m, p) in [
        ("POST", "/Users"),
        ("DELETE", "/Users/x"),
        ("POST", "/Bulk"),
        ("POST", "/.search"),
        ("GET", "/Me"),
    ] {
        let resp = s.handle(&ServerRequest {
            method: m.into(),
            path: p.into(),
            ..ServerRequest::default()
        });
        assert_error(&resp, 401, None);
    }
    // An empty configured token admits no one.
    let open = ScimServer::new(MemoryDirectory::new(), ServerConfig::new(BASE, ""));
    let mut r = request("GET", "/Users", None);
    r.headers = vec![("Authorization".into(), "Bearer ".into())];
    assert_error(&open.handle(&r), 401, None);
}

#[test]
fn create_user_rfc_7644_3_3() {
    let s = server();
    let mut body = bjensen();
    body["id"] = json!("client-chosen");
    body["meta"] = json!({"version": "W/\"x\""});
    let r = call(&s, "POST", "/Users", Some(&body));
    assert_eq!(r.status, 201);
    assert_eq!(r.header("Content-Type"), Some("application/scim+json"));
    let u = r.json();
    let id = u["id"].as_str().unwrap_or_default();
    assert_ne!(id, "client-chosen");
    assert_eq!(
        r.header("Location"),
        Some(format!("{BASE}/Users/{id}").as_str())
    );
    assert_eq!(r.header("ETag"), Some("W/\"1\""));
    assert_eq!(
        u["meta"],
        json!({
            "resourceType": "User",
            "created": "2023-11-14T22:13:20Z",
            "lastModified": "2023-11-14T22:13:20Z",
            "location": format!("{BASE}/Users/{id}"),
            "version": "W/\"1\""
        })
    );
    assert_eq!(u["userName"], "bjensen");
    assert_eq!(u["name"]["givenName"], "Barbara");
    assert!(u.get("password").is_none(), "password is never returned");
    // Nor stored: this directory did not declare that it hashes passwords (issue 28).
    let stored = crate::ports::Directory::get(s.directory(), ResourceKind::User, id);
    assert_eq!(
        stored
            .ok()
            .flatten()
            .map(|r| r.resource.get("password").is_none()),
        Some(true)
    );
    // Conflict on the same userName, in another case.
    let mut dup = bjensen();
    dup["userName"] = json!("BJensen");
    assert_error(
        &call(&s, "POST", "/Users", Some(&dup)),
        409,
        Some("uniqueness"),
    );
}

#[test]
fn create_validation() {
    let s = server();
    let cases = [
        (json!({"userName": "x"}), "invalidSyntax"),
        (
            json!({"schemas": [GROUP_SCHEMA], "userName": "x"}),
            "invalidValue",
        ),
        (json!({"schemas": [USER_SCHEMA]}), "invalidValue"),
        (
            json!({"schemas": [USER_SCHEMA], "userName": ""}),
            "invalidValue",
        ),
        (
            json!({"schemas": [USER_SCHEMA], "userName": "x", "active": 3}),
            "invalidValue",
        ),
        (json!(["not", "an", "object"]), "invalidSyntax"),
    ];
    for (body, t) in cases {
        assert_error(&call(&s, "POST", "/Users", Some(&body)), 400, Some(t));
    }
    let mut r = request("POST", "/Users", None);
    r.body = b"{\"schemas\": [".to_vec();
    assert_error(&s.handle(&r), 400, Some("invalidSyntax"));
    r.body = Vec::new();
    assert_error(&s.handle(&r), 400, Some("invalidSyntax"));
    assert_error(
        &call(
            &s,
            "POST",
            "/Groups",
            Some(&json!({"schemas": [GROUP_SCHEMA]})),
        ),
        400,
        Some("invalidValue"),
    );
    // Groups are unique by displayName.
    create_group(&s, "Admins", &[]);
    assert_error(
        &call(
            &s,
            "POST",
            "/Groups",
            Some(&json!({"schemas": [GROUP_SCHEMA], "displayName": "admins"})),
        ),
        409,
        Some("uniqueness"),
    );
}

#[test]
fn get_etag_and_not_modified() {
    let s = server();
    let id = create_user(&s, "bjensen", json!({}));
    let r = call(&s, "GET", &format!("/Users/{id}"), None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ETag"), Some("W/\"1\""));
    assert_eq!(r.json()["meta"]["version"], "W/\"1\"");
    let r = call_with(
        &s,
        "GET",
        &format!("/Users/{id}"),
        None,
        ("If-None-Match", "W/\"1\""),
    );
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("ETag"), Some("W/\"1\""));
    let r = call_with(
        &s,
        "GET",
        &format!("/Users/{id}"),
        None,
        ("If-None-Match", "W/\"0\""),
    );
    assert_eq!(r.status, 200);
    assert_error(&call(&s, "GET", "/Users/missing", None), 404, None);
    // attributes on a single GET; id and schemas always come back.
    let r = call(&s, "GET", &format!("/Users/{id}?attributes=userName"), None).json();
    let mut keys: Vec<&str> = r
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    assert_eq!(keys, ["id", "schemas", "userName"]);
}

#[test]
fn list_filter_paging_sorting() {
    let s = server();
    for (name, email, family) in [
        ("carol", "carol@example.com", "Young"),
        ("alice", "alice@example.org", "Smith"),
        ("bob", "bob@example.com", "Jones"),
        ("dave", "dave@example.com", "Adams"),
        ("erin", "erin@other.com", "Brown"),
    ] {
        create_user(
            &s,
            name,
            json!({"emails": [{"type": "work", "value": email}], "name": {"familyName": family}}),
        );
    }
    let list = call(&s, "GET", "/Users", None);
    assert_eq!(list.status, 200);
    assert!(list.header("ETag").is_none());
    let list = list.json();
    assert_eq!(
        list["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
    );
    assert_eq!(
        (
            list["totalResults"].clone(),
            list["itemsPerPage"].clone(),
            list["startIndex"].clone()
        ),
        (json!(5), json!(5), json!(1))
    );

    let q = "filter=emails%5Btype%20eq%20%22work%22%20and%20value%20co%20%22%40example.com%22%5D&sortBy=userName";
    let r = call(&s, "GET", &format!("/Users?{q}"), None).json();
    assert_eq!(user_names(&r), ["bob", "carol", "dave"]);
    assert_eq!(r["totalResults"], 3);

    let r = call(&s, "GET", "/Users?filter=userName+eq+%22ALICE%22", None).json();
    assert_eq!(user_names(&r), ["alice"]);
    let r = call(&s, "GET", "/Users?filter=userName%20sw%20%22zz%22", None).json();
    assert_eq!(
        (r["totalResults"].clone(), r["Resources"].clone()),
        (json!(0), json!([]))
    );

    // Paging: startIndex is 1-based; count caps the page; totalResults counts all.
    let r = call(
        &s,
        "GET",
        "/Users?sortBy=userName&startIndex=2&count=2",
        None,
    )
    .json();
    assert_eq!(user_names(&r), ["bob", "carol"]);
    assert_eq!(
        (
            r["totalResults"].clone(),
            r["startIndex"].clone(),
            r["itemsPerPage"].clone()
        ),
        (json!(5), json!(2), json!(2))
    );
    let r = call(
        &s,
        "GET",
        "/Users?sortBy=userName&startIndex=0&count=-1",
        None,
    )
    .json();
    assert_eq!(
        (
            r["totalResults"].clone(),
            r["startIndex"].clone(),
            r["itemsPerPage"].clone()
        ),
        (json!(5), json!(1), json!(0))
    );
    let r = call(&s, "GET", "/Users?startIndex=6", None).json();
    assert_eq!(
        (r["totalResults"].clone(), r["itemsPerPage"].clone()),
        (json!(5), json!(0))
    );
    let small = ScimServer::new(
        MemoryDirectory::with_clock(clock),
        ServerConfig {
            max_results: 2,
            ..ServerConfig::new(BASE, TOKEN)
        },
    );
    create_user(&small, "a", json!({}));
    create_user(&small, "b", json!({}));
    create_user(&small, "c", json!({}));
    let r = call(&small, "GET", "/Users?count=50", None).json();
    assert_eq!(
        (r["totalResults"].clone(), r["itemsPerPage"].clone()),
        (json!(3), json!(2))
    );

    // Sorting: case-insensitive, descending, by sub-attribute.
    let r = call(
        &s,
        "GET",
        "/Users?sortBy=name.familyName&sortOrder=descending&attributes=userName",
        None,
    )
    .json();
    assert_eq!(user_names(&r), ["carol", "alice", "bob", "erin", "dave"]);

    // attributes and excludedAttributes on lists.
    let r = call(&s, "GET", "/Users?attributes=emails.value&count=1", None).json();
    assert_eq!(
        r["Resources"][0]["emails"],
        json!([{"value": "carol@example.com"}])
    );
    assert!(r["Resources"][0].get("userName").is_none());
    assert!(r["Resources"][0].get("id").is_some());
    let r = call(
        &s,
        "GET",
        "/Users?excludedAttributes=emails,meta&count=1",
        None,
    )
    .json();
    assert!(r["Resources"][0].get("emails").is_none());
    assert!(r["Resources"][0].get("meta").is_none());
    assert_eq!(r["Resources"][0]["userName"], "carol");

    // Errors.
    assert_error(
        &call(&s, "GET", "/Users?filter=userName%20eq", None),
        400,
        Some("invalidFilter"),
    );
    assert_error(
        &call(&s, "GET", "/Users?filter=not%20userName%20pr", None),
        400,
        Some("invalidFilter"),
    );
    assert_error(
        &call(&s, "GET", "/Users?count=many", None),
        400,
        Some("invalidValue"),
    );
    assert_error(
        &call(&s, "GET", "/Users?sortOrder=up", None),
        400,
        Some("invalidValue"),
    );
}

#[test]
fn search_with_post() {
    let s = server();
    create_user(&s, "smith1", json!({"displayName": "Smith Ann"}));
    create_user(&s, "smith2", json!({"displayName": "Smith Bo"}));
    create_user(&s, "other", json!({"displayName": "Cy Other"}));
    create_group(&s, "Smiths", &[]);
    // RFC 7644 §3.4.3.
    let search = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "attributes": ["displayName", "userName"],
        "filter": "displayName sw \"smith\"",
        "startIndex": 1,
        "count": 10
    });
    let r = call(&s, "POST", "/Users/.search", Some(&search));
    assert_eq!(r.status, 200);
    let r = r.json();
    assert_eq!(r["totalResults"], 2);
    let mut keys: Vec<&str> = r["Resources"][0]
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    assert_eq!(keys, ["displayName", "id", "schemas", "userName"]);
    let search = json!({"filter": "displayName sw \"smith\"", "sortBy": "userName", "sortOrder": "descending", "excludedAttributes": ["groups"]});
    let r = call(&s, "POST", "/Users/.search", Some(&search)).json();
    assert_eq!(user_names(&r), ["smith2", "smith1"]);
    // Across resource types, a page continues from Users into Groups.
    let r = call(
        &s,
        "POST",
        "/.search",
        Some(&json!({"filter": "displayName sw \"smith\""})),
    )
    .json();
    assert_eq!(r["totalResults"], 3);
    assert_eq!(r["Resources"][2]["displayName"], "Smiths");
    let r = call(
        &s,
        "POST",
        "/.search",
        Some(&json!({"filter": "displayName sw \"smith\"", "startIndex": 2, "count": 1})),
    )
    .json();
    assert_eq!(
        (r["totalResults"].clone(), r["itemsPerPage"].clone()),
        (json!(3), json!(1))
    );
    let r = call(
        &s,
        "POST",
        "/.search",
        Some(&json!({"filter": "displayName sw \"smith\"", "startIndex": 3})),
    )
    .json();
    assert_eq!(r["Resources"][0]["meta"]["resourceType"], "Group");
    assert_error(
        &call(&s, "POST", "/Users/.search", Some(&json!({"filter": "("}))),
        400,
        Some("invalidFilter"),
    );
    assert_error(&call(&s, "GET", "/Users/.search", None), 405, None);
}

#[test]
fn put_replaces() {
    let s = server();
    let id = create_user(
        &s,
        "bjensen",
        json!({"password": "pw", "title": "Tour Guide", "nickName": "Babs"}),
    );
    let path = format!("/Users/{id}");
    let body = json!({
        "schemas": [USER_SCHEMA],
        "id": "some-other-id",
        "meta": {"created": "1999-01-01T00:00:00Z"},
        "userName": "bjensen",
        "title": "Manager",
        "active": "False"
    });
    let r = call(&s, "PUT", &path, Some(&body));
    assert_eq!(r.status, 200, "{}", r.json());
    let u = r.json();
    assert_eq!(u["id"], id.as_str());
    assert_eq!(u["title"], "Manager");
    assert_eq!(u["active"], false);
    assert!(
        u.get("nickName").is_none(),
        "PUT replaces: omitted attributes are cleared"
    );
    assert_eq!(u["meta"]["created"], "2023-11-14T22:13:20Z");
    assert_eq!(r.header("ETag"), Some("W/\"2\""));
    // No password reached this directory, which does not hash them.
    let stored = crate::ports::Directory::get(s.directory(), ResourceKind::User, &id);
    assert_eq!(
        stored
            .ok()
            .flatten()
            .map(|r| r.resource.get("password").is_none()),
        Some(true)
    );
    // ETags.
    assert_error(
        &call_with(&s, "PUT", &path, Some(&body), ("If-Match", "W/\"1\"")),
        412,
        None,
    );
    let r = call_with(&s, "PUT", &path, Some(&body), ("If-Match", "W/\"2\""));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ETag"), Some("W/\"3\""));
    assert_error(&call(&s, "PUT", "/Users/missing", Some(&body)), 404, None);
    // Uniqueness.
    create_user(&s, "taken", json!({}));
    let mut clash = body.clone();
    clash["userName"] = json!("TAKEN");
    assert_error(
        &call(&s, "PUT", &path, Some(&clash)),
        409,
        Some("uniqueness"),
    );
    assert_error(
        &call(&s, "PUT", &path, Some(&json!({"schemas": [USER_SCHEMA]}))),
        400,
        Some("invalidValue"),
    );
}

#[test]
fn patch_users() {
    let s = server();
    let id = create_user(
        &s,
        "bjensen",
        json!({"emails": [{"type": "work", "value": "b@example.com"}]}),
    );
    let path = format!("/Users/{id}");
    let patch = |ops: Value| json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});

    // Entra ID: capitalised ops, "False" strings, no-path replace.
    let r = call(
        &s,
        "PATCH",
        &path,
        Some(&patch(json!([
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Add", "value": {"displayName": "Barbara Jensen", "name.givenName": "Barbara"}},
            {"op": "add", "path": "emails[type eq \"home\"].value", "value": "home@example.com"}
        ]))),
    );
    assert_eq!(
        r.status,
        200,
        "PATCH answers 200 with the resource, never 204: {}",
        r.json()
    );
    assert_eq!(r.header("ETag"), Some("W/\"2\""));
    let u = r.json();
    assert_eq!(u["active"], false);
    assert_eq!(u["displayName"], "Barbara Jensen");
    assert_eq!(u["name"]["givenName"], "Barbara");
    assert_eq!(u["emails"].as_array().map(Vec::len), Some(2));

    // Remove with a value filter, and replace a sub-attribute.
    let r = call(
        &s,
        "PATCH",
        &path,
        Some(&patch(json!([
            {"op": "remove", "path": "emails[type eq \"work\"]"},
            {"op": "replace", "path": "name.familyName", "value": "Jensen"},
            {"op": "add", "path": format!("{ENTERPRISE_USER_SCHEMA}:department"), "value": "Sales"}
        ]))),
    );
    let u = r.json();
    assert_eq!(
        u["emails"],
        json!([{"type": "home", "value": "home@example.com"}])
    );
    assert_eq!(u["name"]["familyName"], "Jensen");
    assert_eq!(u[ENTERPRISE_USER_SCHEMA]["department"], "Sales");
    assert!(
        u["schemas"]
            .as_array()
            .is_some_and(|a| a.contains(&json!(ENTERPRISE_USER_SCHEMA)))
    );

    // A PATCH that changes nothing writes nothing: the version stays.
    let r = call(
        &s,
        "PATCH",
        &path,
        Some(&patch(
            json!([{"op": "replace", "path": "active", "value": false}]),
        )),
    );
    assert_eq!((r.status, r.header("ETag")), (200, Some("W/\"3\"")));
    // Echoing id is a no-op; changing it is refused.
    let r = call(
        &s,
        "PATCH",
        &path,
        Some(&patch(json!([{"op": "replace", "value": {"id": id}}]))),
    );
    assert_eq!(r.status, 200);
    assert_error(
        &call(
            &s,
            "PATCH",
            &path,
            Some(&patch(
                json!([{"op": "replace", "path": "id", "value": "x"}]),
            )),
        ),
        400,
        Some("mutability"),
    );

    // Errors carry the PatchError's scimType.
    assert_error(
        &call(&s, "PATCH", &path, Some(&patch(json!([{"op": "remove"}])))),
        400,
        Some("noTarget"),
    );
    assert_error(
        &call(
            &s,
            "PATCH",
            &path,
            Some(&patch(
                json!([{"op": "add", "path": "emails[", "value": 1}]),
            )),
        ),
        400,
        Some("invalidPath"),
    );
    assert_error(
        &call(
            &s,
            "PATCH",
            &path,
            Some(&patch(json!([{"op": "jump", "path": "x"}]))),
        ),
        400,
        Some("invalidSyntax"),
    );
    assert_error(
        &call(&s, "PATCH", &path, Some(&json!({"Operations": []}))),
        400,
        Some("invalidSyntax"),
    );
    assert_error(
        &call(
            &s,
            "PATCH",
            &path,
            Some(&patch(json!([{"op": "remove", "path": "userName"}]))),
        ),
        400,
        Some("invalidValue"),
    );
    assert_error(
        &call(
            &s,
            "PATCH",
            &path,
            Some(&patch(
                json!([{"op": "replace", "path": "active", "value": 5}]),
            )),
        ),
        400,
        Some("invalidValue"),
    );
    assert_error(
        &call(
            &s,
            "PATCH",
            &path,
            Some(&patch(
                json!([{"op": "add", "path": "groups", "value": [{"value": "g"}]}]),
            )),
        ),
        400,
        Some("mutability"),
    );
    assert_error(
        &call(&s, "PATCH", "/Users/missing", Some(&patch(json!([])))),
        404,
        None,
    );

    // If-Match.
    let stale = call_with(
        &s,
        "PATCH",
        &path,
        Some(&patch(
            json!([{"op": "replace", "path": "title", "value": "x"}]),
        )),
        ("If-Match", "W/\"1\""),
    );
    assert_error(&stale, 412, None);
    let ok = call_with(
        &s,
        "PATCH",
        &path,
        Some(&patch(
            json!([{"op": "replace", "path": "title", "value": "x"}]),
        )),
        ("If-Match", "W/\"3\""),
    );
    assert_eq!((ok.status, ok.header("ETag")), (200, Some("W/\"4\"")));

    // Uniqueness through PATCH.
    create_user(&s, "other", json!({}));
    assert_error(
        &call(
            &s,
            "PATCH",
            &path,
            Some(&patch(
                json!([{"op": "replace", "path": "userName", "value": "Other"}]),
            )),
        ),
        409,
        Some("uniqueness"),
    );
}

/// A directory that claims endless groups and ignores `startIndex` (a host's bug): reading
/// a user's groups ends with an error instead of paging forever.
#[test]
fn a_directory_overcounting_a_users_groups_ends_in_an_error_not_a_loop() {
    use crate::ports::{Directory, DirectoryError, Query, QueryPage, StoredResource};

    struct Overcounting(MemoryDirectory);
    impl Directory for Overcounting {
        fn get(
            &self,
            kind: ResourceKind,
            id: &str,
        ) -> Result<Option<StoredResource>, DirectoryError> {
            self.0.get(kind, id)
        }
        fn query(&self, kind: ResourceKind, query: &Query) -> Result<QueryPage, DirectoryError> {
            let first_page = Query {
                start_index: 1,
                ..query.clone()
            };
            let page = self.0.query(kind, &first_page)?;
            Ok(QueryPage {
                total_results: u64::MAX,
                ..page
            })
        }
        fn create(
            &self,
            kind: ResourceKind,
            resource: &Value,
        ) -> Result<StoredResource, DirectoryError> {
            self.0.create(kind, resource)
        }
        fn replace(
            &self,
            kind: ResourceKind,
            id: &str,
            resource: &Value,
            if_version: Option<&str>,
        ) -> Result<StoredResource, DirectoryError> {
            self.0.replace(kind, id, resource, if_version)
        }
        fn delete(&self, kind: ResourceKind, id: &str) -> Result<bool, DirectoryError> {
            self.0.delete(kind, id)
        }
    }

    let s = ScimServer::new(
        Overcounting(MemoryDirectory::with_clock(clock)),
        ServerConfig::new(BASE, TOKEN),
    );
    let created = s.handle(&request(
        "POST",
        "/Users",
        Some(&json!({"schemas": [USER_SCHEMA], "userName": "alice"})),
    ));
    let alice = created.json()["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let group = s.handle(&request(
        "POST",
        "/Groups",
        Some(
            &json!({"schemas": [GROUP_SCHEMA], "displayName": "G", "members": [{"value": alice}]}),
        ),
    ));
    assert_eq!(group.status, 201, "{}", group.json());
    let r = s.handle(&request("GET", &format!("/Users/{alice}"), None));
    let body = r.json();
    assert_eq!(r.status, 500, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("cannot be right")),
        "{body}"
    );
}

/// A user in more groups than one page of the directory holds gets every one of them.
#[test]
fn a_user_in_more_groups_than_a_page_holds_lists_them_all() {
    let s = ScimServer::new(
        MemoryDirectory::with_clock(clock),
        ServerConfig {
            max_results: 3,
            ..ServerConfig::new(BASE, TOKEN)
        },
    );
    let alice = create_user(&s, "alice", json!({}));
    let bob = create_user(&s, "bob", json!({}));
    let mut expected: Vec<String> = (0..8)
        .map(|i| create_group(&s, &format!("G{i}"), &[&alice]))
        .collect();
    create_group(&s, "Bob's", &[&bob]);
    expected.sort();
    let u = call(&s, "GET", &format!("/Users/{alice}"), None).json();
    let mut listed: Vec<String> = u["groups"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|g| g["value"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    listed.sort();
    assert_eq!(listed, expected, "{u}");
}

#[test]
fn groups_and_membership() {
    let s = server();
    let alice = create_user(&s, "alice", json!({}));
    let bob = create_user(&s, "bob", json!({}));
    let admins = create_group(&s, "Admins", &[&alice]);
    let staff = create_group(&s, "Staff", &[&alice, &bob]);
    let g = call(&s, "GET", &format!("/Groups/{admins}"), None).json();
    assert_eq!(g["members"], json!([{"value": alice}]));
    assert_eq!(g["meta"]["resourceType"], "Group");

    // User.groups is computed from membership.
    let u = call(&s, "GET", &format!("/Users/{alice}"), None).json();
    let mut groups: Vec<(String, String)> = u["groups"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|g| {
                    (
                        g["display"].as_str().unwrap_or("").into(),
                        g["$ref"].as_str().unwrap_or("").into(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    groups.sort();
    assert_eq!(
        groups,
        [
            ("Admins".to_string(), format!("{BASE}/Groups/{admins}")),
            ("Staff".to_string(), format!("{BASE}/Groups/{staff}"))
        ]
    );
    assert_eq!(u["groups"][0]["type"], "direct");
    let u = call(
        &s,
        "GET",
        &format!("/Users/{alice}?excludedAttributes=groups"),
        None,
    )
    .json();
    assert!(u.get("groups").is_none());
    let list = call(&s, "GET", "/Users?filter=userName%20eq%20%22bob%22", None).json();
    assert_eq!(list["Resources"][0]["groups"][0]["value"], staff.as_str());
    // groups sent by a client are ignored (readOnly).
    let r = call(
        &s,
        "PUT",
        &format!("/Users/{bob}"),
        Some(&json!({"schemas": [USER_SCHEMA], "userName": "bob", "groups": [{"value": admins}]})),
    );
    assert_eq!(r.json()["groups"].as_array().map(Vec::len), Some(1));

    // PATCH members: RFC 7644 §3.5.2.1 add, §3.5.2.2 remove by filter, Entra remove by value.
    let patch = |ops: Value| json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});
    let path = format!("/Groups/{admins}");
    let r = call(
        &s,
        "PATCH",
        &path,
        Some(&patch(
            json!([{"op": "add", "path": "members", "value": [{"display": "Bob", "$ref": format!("{BASE}/Users/{bob}"), "value": bob}]}]),
        )),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["members"].as_array().map(Vec::len), Some(2));
    let r = call(
        &s,
        "PATCH",
        &path,
        Some(&patch(
            json!([{"op": "remove", "path": format!("members[value eq \"{alice}\"]")}]),
        )),
    );
    assert_eq!(
        r.json()["members"],
        json!([{"display": "Bob", "$ref": format!("{BASE}/Users/{bob}"), "value": bob}])
    );
    let r = call(
        &s,
        "PATCH",
        &path,
        Some(&patch(
            json!([{"op": "Remove", "path": "members", "value": [{"value": bob}]}]),
        )),
    );
    assert!(r.json().get("members").is_none());
    let r = call(
        &s,
        "PATCH",
        &path,
        Some(&patch(
            json!([{"op": "replace", "path": "members", "value": [{"value": alice}]}, {"op": "replace", "path": "displayName", "value": "Administrators"}]),
        )),
    );
    assert_eq!(r.json()["members"], json!([{"value": alice}]));
    assert_eq!(r.json()["displayName"], "Administrators");
    assert_error(
        &call(
            &s,
            "PATCH",
            &path,
            Some(&patch(
                json!([{"op": "add", "path": "members", "value": [{"display": "no id"}]}]),
            )),
        ),
        400,
        Some("invalidValue"),
    );
    assert_error(
        &call(
            &s,
            "PATCH",
            &path,
            Some(&patch(
                json!([{"op": "replace", "path": "displayName", "value": "staff"}]),
            )),
        ),
        409,
        Some("uniqueness"),
    );
    // Filtering groups by member.
    let r = call(
        &s,
        "GET",
        &format!("/Groups?filter=members%5Bvalue%20eq%20%22{bob}%22%5D"),
        None,
    )
    .json();
    assert_eq!(r["totalResults"], 1);
    assert_eq!(r["Resources"][0]["displayName"], "Staff");

    // Deleting a user drops it from its groups.
    assert_eq!(
        call(&s, "DELETE", &format!("/Users/{alice}"), None).status,
        204
    );
    let g = call(&s, "GET", &format!("/Groups/{staff}"), None).json();
    assert_eq!(g["members"], json!([{"value": bob}]));
}

#[test]
fn delete() {
    let s = server();
    let id = create_user(&s, "bjensen", json!({}));
    let path = format!("/Users/{id}");
    assert_error(
        &call_with(&s, "DELETE", &path, None, ("If-Match", "W/\"9\"")),
        412,
        None,
    );
    let r = call_with(&s, "DELETE", &path, None, ("If-Match", "W/\"1\""));
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert_error(&call(&s, "GET", &path, None), 404, None);
    assert_error(&call(&s, "DELETE", &path, None), 404, None);
    assert_error(
        &call_with(&s, "DELETE", &path, None, ("If-Match", "*")),
        404,
        None,
    );
}

#[test]
fn routing_errors() {
    let s = server();
    assert_error(&call(&s, "GET", "/Nope", None), 404, None);
    assert_error(&call(&s, "GET", "/", None), 404, None);
    assert_error(&call(&s, "GET", "/Users/a/b", None), 404, None);
    let r = call(&s, "DELETE", "/Users", None);
    assert_error(&r, 405, None);
    assert_eq!(r.header("Allow"), Some("GET, POST"));
    let r = call(&s, "POST", "/Users/x", None);
    assert_eq!(r.header("Allow"), Some("GET, PUT, PATCH, DELETE"));
    let r = call(&s, "PUT", "/ServiceProviderConfig", None);
    assert_error(&r, 405, None);
    assert_eq!(r.header("Allow"), Some("GET"));
    assert_error(&call(&s, "GET", "/Bulk", None), 405, None);
    assert_error(&call(&s, "GET", "/Me", None), 501, None);
    // Lower-case methods and a query left on the path still work.
    let mut r = request("get", "/Users?count=0", None);
    r.path = "/Users?count=0".into();
    r.query = String::new();
    let resp = s.handle(&r);
    assert_eq!(
        (resp.status, resp.json()["itemsPerPage"].clone()),
        (200, json!(0))
    );
    // Too large.
    let small = ScimServer::new(
        MemoryDirectory::new(),
        ServerConfig {
            bulk_max_payload: 64,
            ..ServerConfig::new(BASE, TOKEN)
        },
    );
    let mut body = bjensen();
    body["title"] = json!("x".repeat(100));
    assert_error(&call(&small, "POST", "/Users", Some(&body)), 413, None);
}

/// A log port that keeps its lines.
#[derive(Clone, Default)]
struct KeptLog(std::rc::Rc<std::cell::RefCell<Vec<String>>>);

impl crate::ports::LogPort for KeptLog {
    fn log(&self, _level: crate::ports::LogLevel, message: &str) {
        self.0.borrow_mut().push(message.to_string());
    }
}

/// Issue 28, finding 6: a directory that did not declare that it hashes passwords is
/// never handed one (POST, PUT, PATCH, bulk), and the drop is logged without the password.
#[test]
fn passwords_never_reach_a_directory_that_does_not_hash_them() {
    let log = KeptLog::default();
    let s = server().with_log(log.clone());
    let id = create_user(&s, "pwuser", json!({"password": "Clear-Pass-1"}));
    let path = format!("/Users/{id}");
    let put = json!({"schemas": [USER_SCHEMA], "userName": "pwuser", "password": "Clear-Pass-2"});
    assert_eq!(call(&s, "PUT", &path, Some(&put)).status, 200);
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "password", "value": "Clear-Pass-3"}]});
    assert_eq!(call(&s, "PATCH", &path, Some(&patch)).status, 200);
    let bulk = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [{"method": "POST", "path": "/Users", "bulkId": "b",
            "data": {"schemas": [USER_SCHEMA], "userName": "bulkpw", "password": "Clear-Pass-4"}}]});
    assert_eq!(call(&s, "POST", "/Bulk", Some(&bulk)).status, 200);
    let all = crate::ports::Directory::query(
        s.directory(),
        ResourceKind::User,
        &crate::ports::Query {
            filter: None,
            start_index: 1,
            count: 100,
            sort_by: None,
            sort_descending: false,
        },
    )
    .expect("listing");
    assert_eq!(all.resources.len(), 2);
    let dump = format!("{:?}", all.resources);
    assert!(!dump.contains("Clear-Pass"), "{dump}");
    let lines = log.0.borrow();
    assert!(
        lines.iter().any(|l| l.contains("password was dropped")),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains("Clear-Pass")), "{lines:?}");
}

/// With a directory that declared it hashes passwords, the password a request sends is
/// handed over, and only that: a PUT or PATCH that does not set one hands none (the
/// directory keeps its hash), and none is ever returned.
#[test]
fn a_hashing_directory_gets_only_the_password_a_request_sends() {
    let s = server().with_password_hashing_directory(true);
    let id = create_user(&s, "hashed", json!({"password": "Clear-Pass-1"}));
    let stored = |s: &ScimServer<MemoryDirectory>| {
        crate::ports::Directory::get(s.directory(), ResourceKind::User, &id)
            .ok()
            .flatten()
            .map(|r| r.resource.get("password").cloned())
    };
    assert_eq!(stored(&s), Some(Some(json!("Clear-Pass-1"))));
    let path = format!("/Users/{id}");
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "title", "value": "Boss"}]});
    let r = call(&s, "PATCH", &path, Some(&patch));
    assert_eq!(r.status, 200);
    assert!(r.json().get("password").is_none());
    assert_eq!(stored(&s), Some(None), "a PATCH not setting it hands none");
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "password", "value": "Clear-Pass-2"}]});
    assert_eq!(call(&s, "PATCH", &path, Some(&patch)).status, 200);
    assert_eq!(stored(&s), Some(Some(json!("Clear-Pass-2"))));
    let put = json!({"schemas": [USER_SCHEMA], "userName": "hashed"});
    let r = call(&s, "PUT", &path, Some(&put));
    assert_eq!(r.status, 200);
    assert!(r.json().get("password").is_none());
    assert_eq!(stored(&s), Some(None), "a PUT without one hands none");
}

/// Issue 28, finding 5: a directory's own error text stays in the log; the answer carries
/// a plain sentence and the reference that finds the text there.
#[test]
fn directory_error_text_is_logged_not_answered() {
    struct Failing;
    impl crate::ports::Directory for Failing {
        fn get(
            &self,
            _: ResourceKind,
            _: &str,
        ) -> Result<Option<crate::ports::StoredResource>, crate::ports::DirectoryError> {
            Err(crate::ports::DirectoryError::Other(
                "SQLSTATE[HY000] /srv/cms/Dir.php:42".into(),
            ))
        }
        fn query(
            &self,
            _: ResourceKind,
            _: &crate::ports::Query,
        ) -> Result<crate::ports::QueryPage, crate::ports::DirectoryError> {
            Err(crate::ports::DirectoryError::Unavailable(
                "PDOException: database is locked".into(),
            ))
        }
        fn create(
            &self,
            _: ResourceKind,
            _: &Value,
        ) -> Result<crate::ports::StoredResource, crate::ports::DirectoryError> {
            Err(crate::ports::DirectoryError::Conflict(
                "UNIQUE constraint failed: users.name".into(),
            ))
        }
        fn replace(
            &self,
            _: ResourceKind,
            _: &str,
            _: &Value,
            _: Option<&str>,
        ) -> Result<crate::ports::StoredResource, crate::ports::DirectoryError> {
            Err(crate::ports::DirectoryError::NotFound)
        }
        fn delete(&self, _: ResourceKind, _: &str) -> Result<bool, crate::ports::DirectoryError> {
            Ok(false)
        }
    }
    let log = KeptLog::default();
    let s = ScimServer::new(Failing, ServerConfig::new(BASE, TOKEN)).with_log(log.clone());
    let user = json!({"schemas": [USER_SCHEMA], "userName": "x"});
    for (method, path, body, status, hidden) in [
        ("GET", "/Users/1", None, 500, "SQLSTATE"),
        ("GET", "/Users", None, 503, "PDOException"),
        ("POST", "/Users", Some(&user), 409, "UNIQUE constraint"),
    ] {
        let r = s.handle(&request(method, path, body));
        assert_eq!(r.status, status);
        let detail = r.json()["detail"].as_str().unwrap_or_default().to_string();
        assert!(!detail.contains(hidden), "{detail}");
        let reference = detail
            .rsplit("reference ")
            .next()
            .unwrap_or_default()
            .to_string();
        assert_eq!(reference.len(), 12, "{detail}");
        let lines = log.0.borrow();
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&reference) && l.contains(hidden)),
            "{lines:?}"
        );
    }
}
