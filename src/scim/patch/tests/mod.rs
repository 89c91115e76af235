//! Tests of the PATCH engine: the types and their serde here, `apply` and `diff` in the
//! files beside this one. The fixtures below are shared by all three.

use serde_json::json;

use super::*;

mod apply;
mod diff;

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn ops(v: Value) -> Vec<PatchOperation> {
    match serde_json::from_value::<Vec<PatchOperation>>(v) {
        Ok(o) => o,
        Err(e) => panic!("bad fixture: {e}"),
    }
}

fn request(v: Value) -> PatchRequest {
    match serde_json::from_value::<PatchRequest>(v) {
        Ok(r) => r,
        Err(e) => panic!("bad fixture: {e}"),
    }
}

fn applied(mut resource: Value, o: Value) -> Value {
    if let Err(e) = apply(&mut resource, &ops(o)) {
        panic!("{e}");
    }
    resource
}

fn failure(resource: &Value, o: Value) -> PatchError {
    let mut r = resource.clone();
    match apply(&mut r, &ops(o)) {
        Ok(()) => panic!("expected an error, got {r}"),
        Err(e) => {
            assert_eq!(&r, resource, "a failed PATCH must not change the resource");
            e
        }
    }
}

fn user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "2819c223",
        "userName": "bjensen",
        "active": true,
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "addresses": [
            {"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood"},
            {"type": "home", "streetAddress": "456 Hollywood Blvd", "locality": "Hollywood"}
        ],
        "meta": {"resourceType": "User", "version": "W/\"1\""}
    })
}

fn group() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": "e9e30dba",
        "displayName": "Tour Guides",
        "members": [
            {"value": "2819c223-7f76-453a-919d-413861904646", "display": "Babs Jensen"},
            {"value": "902c246b-6245-4190-8e05-00816be7344a", "display": "Mandy Pepperidge"}
        ]
    })
}

#[test]
fn serde_of_operations() {
    let r = request(json!({
        "schemas": [PATCH_OP_SCHEMA],
        "Operations": [
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "ADD", "path": "x", "value": null},
            {"op": "remove", "path": "y"}
        ]
    }));
    assert_eq!(r.operations[0].op, PatchOpKind::Replace);
    assert_eq!(r.operations[1].op, PatchOpKind::Add);
    assert_eq!(r.operations[1].value, Some(Value::Null));
    assert_eq!(r.operations[2].value, None);
    let out = serde_json::to_value(PatchRequest::new(vec![
        PatchOperation::remove("title"),
        PatchOperation::replace("active", json!(false)),
    ]))
    .ok();
    assert_eq!(
        out,
        Some(json!({
            "schemas": [PATCH_OP_SCHEMA],
            "Operations": [
                {"op": "remove", "path": "title"},
                {"op": "replace", "path": "active", "value": false}
            ]
        }))
    );
    assert!(serde_json::from_value::<PatchOperation>(json!({"op": "move"})).is_err());
    let mut u = user();
    let bad = PatchRequest {
        schemas: vec![],
        operations: vec![],
    };
    assert_eq!(
        bad.apply_to(&mut u).err().map(|e| e.scim_type()),
        Some("invalidSyntax")
    );
}
