//! A stored resource as clients see it: the directory's JSON with `id` and `meta` written
//! from the directory's fields, and `returned: never` attributes (`password`) removed.

use serde_json::{Map, Value, json};

use crate::ports::{ResourceKind, StoredResource};
use crate::scim::attr;
use crate::scim::uri::encode_component as encode_segment;
use crate::server::etag::etag;
use crate::server::schemas::{self, Mutability, Returned};

/// The absolute URL of a resource.
pub(crate) fn location(base_url: &str, kind: ResourceKind, id: &str) -> String {
    format!("{base_url}{}/{}", kind.endpoint(), encode_segment(id))
}

/// The resource with `id`, `meta` and `schemas` written by the server and everything else
/// as stored (including `password`): what a PATCH is applied to.
pub(crate) fn with_server_keys(
    kind: ResourceKind,
    stored: &StoredResource,
    base_url: &str,
) -> Value {
    let mut obj: Map<String, Value> = stored.resource.as_object().cloned().unwrap_or_default();
    // A host may have stored keys the server owns; the server's values win.
    obj.retain(|k, _| !attr::name_eq(k, "id") && !attr::name_eq(k, "meta"));
    if attr::find_key(&obj, "schemas").is_none() {
        obj.insert("schemas".into(), json!([kind.schema()]));
    }
    obj.insert("id".into(), Value::String(stored.id.clone()));
    obj.insert(
        "meta".into(),
        json!({
            "resourceType": kind.name(),
            "created": stored.created,
            "lastModified": stored.last_modified,
            "location": location(base_url, kind, &stored.id),
            "version": etag(&stored.version),
        }),
    );
    Value::Object(obj)
}

/// The resource to return: [`with_server_keys`] without `returned: never` attributes and
/// without stored copies of computed `readOnly` ones (User `groups`).
pub(crate) fn render(kind: ResourceKind, stored: &StoredResource, base_url: &str) -> Value {
    let mut v = with_server_keys(kind, stored, base_url);
    if let Some(obj) = v.as_object_mut() {
        let hidden = schemas::core(kind).attributes.iter().filter(|a| {
            a.returned == Returned::Never
                || (a.mutability == Mutability::ReadOnly && a.name == "groups")
        });
        for def in hidden {
            obj.retain(|k, _| !attr::name_eq(k, def.name));
        }
    }
    v
}

/// A User's `groups` value for one group it is a direct member of.
pub(crate) fn group_ref(base_url: &str, group: &StoredResource) -> Value {
    let mut v = json!({
        "value": group.id,
        "$ref": location(base_url, ResourceKind::Group, &group.id),
        "type": "direct",
    });
    if let Some(name) = group
        .resource
        .as_object()
        .and_then(|o| attr::get_ci(o, "displayName"))
        .and_then(Value::as_str)
    {
        v["display"] = Value::String(name.to_string());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering() {
        let stored = StoredResource {
            id: "a b".into(),
            version: "5".into(),
            created: "2024-01-01T00:00:00Z".into(),
            last_modified: "2024-01-02T00:00:00Z".into(),
            resource: json!({"userName": "u", "PASSWORD": "x", "id": "stale", "groups": [1]}),
        };
        let v = render(ResourceKind::User, &stored, "https://h/scim/v2");
        assert_eq!(
            v,
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "id": "a b",
                "userName": "u",
                "meta": {
                    "resourceType": "User",
                    "created": "2024-01-01T00:00:00Z",
                    "lastModified": "2024-01-02T00:00:00Z",
                    "location": "https://h/scim/v2/Users/a%20b",
                    "version": "W/\"5\""
                }
            })
        );
        let raw = with_server_keys(ResourceKind::User, &stored, "https://h");
        assert_eq!(raw["PASSWORD"], "x");
        let g = group_ref(
            "https://h",
            &StoredResource {
                id: "g".into(),
                resource: json!({"displayName": "Admins"}),
                ..stored
            },
        );
        assert_eq!(
            g,
            json!({"value": "g", "$ref": "https://h/Groups/g", "type": "direct", "display": "Admins"})
        );
    }
}
