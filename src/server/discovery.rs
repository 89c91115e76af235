//! The discovery endpoints (RFC 7644 §4): `/ServiceProviderConfig`, `/Schemas` and
//! `/ResourceTypes`. They describe what this server actually does, and answer without
//! authentication.

use serde_json::{Value, json};

use crate::ports::ResourceKind;
use crate::scim::attr;
use crate::server::error::ScimError;
use crate::server::http::QueryParams;
use crate::server::list::list_response;
use crate::server::schemas;

/// What the server role supports, with the limits it enforces.
pub(crate) fn service_provider_config(
    base_url: &str,
    max_results: u32,
    bulk_max_operations: u32,
    bulk_max_payload: u64,
) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": true},
        "bulk": {
            "supported": true,
            "maxOperations": bulk_max_operations,
            "maxPayloadSize": bulk_max_payload,
        },
        "filter": {"supported": true, "maxResults": max_results},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with a bearer token (RFC 6750) in the Authorization header",
            "specUri": "https://www.rfc-editor.org/info/rfc6750",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base_url}/ServiceProviderConfig"),
        },
    })
}

/// RFC 7644 §4: a filter on a discovery endpoint is refused with 403, so a client cannot
/// take an unfiltered answer for a filtered one.
fn refuse_filter(params: &QueryParams) -> Result<(), ScimError> {
    if params.get("filter").is_some() {
        return Err(ScimError::new(
            403,
            "filtering is not supported on discovery endpoints",
        ));
    }
    Ok(())
}

fn all<T>(items: Vec<T>, render: impl Fn(T) -> Value) -> Value {
    let resources: Vec<Value> = items.into_iter().map(render).collect();
    list_response(resources.len() as u64, 1, resources)
}

/// `/Schemas` (a ListResponse) or `/Schemas/<urn>`.
pub(crate) fn schemas(
    base_url: &str,
    id: Option<&str>,
    params: &QueryParams,
) -> Result<Value, ScimError> {
    match id {
        None => {
            refuse_filter(params)?;
            Ok(all(schemas::ALL.to_vec(), |s| s.to_json(base_url)))
        }
        Some(urn) => schemas::find(urn)
            .map(|s| s.to_json(base_url))
            .ok_or_else(|| ScimError::not_found("schema")),
    }
}

const KINDS: [ResourceKind; 2] = [ResourceKind::User, ResourceKind::Group];

fn resource_type(base_url: &str, kind: ResourceKind) -> Value {
    let mut v = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": kind.name(),
        "name": kind.name(),
        "endpoint": kind.endpoint(),
        "description": schemas::core(kind).description,
        "schema": kind.schema(),
        "meta": {
            "resourceType": "ResourceType",
            "location": format!("{base_url}/ResourceTypes/{}", kind.name()),
        },
    });
    let extensions: Vec<Value> = schemas::extensions(kind)
        .iter()
        .map(|s| json!({"schema": s.id, "required": false}))
        .collect();
    if !extensions.is_empty() {
        v["schemaExtensions"] = Value::Array(extensions);
    }
    v
}

/// `/ResourceTypes` (a ListResponse) or `/ResourceTypes/<name>`.
pub(crate) fn resource_types(
    base_url: &str,
    id: Option<&str>,
    params: &QueryParams,
) -> Result<Value, ScimError> {
    match id {
        None => {
            refuse_filter(params)?;
            Ok(all(KINDS.to_vec(), |k| resource_type(base_url, k)))
        }
        Some(name) => KINDS
            .into_iter()
            .find(|k| attr::name_eq(k.name(), name))
            .map(|k| resource_type(base_url, k))
            .ok_or_else(|| ScimError::not_found("resource type")),
    }
}
