//! What the client role learns from a server's `/ServiceProviderConfig` (RFC 7643 §5):
//! what the server says it supports. Parsed leniently, because real servers send `"True"`
//! strings, numeric strings and missing sections.

use serde_json::Value;

use crate::scim::lenient::{lenient_bool, lenient_u64};

/// Bulk limits a server advertises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkLimits {
    /// The most operations in one request.
    pub max_operations: u32,
    /// The largest payload in bytes.
    pub max_payload_size: u64,
}

/// What a server supports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerCapabilities {
    /// True when `/ServiceProviderConfig` answered.
    pub discovered: bool,
    /// PATCH is supported.
    pub patch: bool,
    /// The most operations one PATCH may carry, when the server says (`patch.maxOperations`,
    /// not in RFC 7643 but advertised by some servers); membership changes respect it.
    pub patch_max_operations: Option<u32>,
    /// Bulk is supported, with these limits.
    pub bulk: Option<BulkLimits>,
    /// Filtering is supported, with at most this many results.
    pub filter_max_results: Option<u32>,
    /// ETags are supported.
    pub etag: bool,
    /// Sorting is supported.
    pub sort: bool,
    /// Password changes are supported.
    pub change_password: bool,
}

impl ServerCapabilities {
    /// What to assume of a server without `/ServiceProviderConfig`: filtering (every server
    /// we have met filters on userName) but no PATCH, so updates use PUT, which every SCIM
    /// server must accept.
    pub fn undiscovered() -> Self {
        ServerCapabilities {
            discovered: false,
            filter_max_results: Some(100),
            ..Default::default()
        }
    }

    /// Reads a `/ServiceProviderConfig` body. Returns `None` when the body is not one.
    pub fn from_service_provider_config(body: &Value) -> Option<Self> {
        let obj = body.as_object()?;
        let is_spc = obj
            .get("schemas")
            .and_then(Value::as_array)
            .is_some_and(|s| {
                s.iter().any(|u| {
                    u.as_str().is_some_and(|u| {
                        u.eq_ignore_ascii_case(
                            "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig",
                        )
                    })
                })
            })
            || obj.contains_key("patch")
            || obj.contains_key("filter");
        if !is_spc {
            return None;
        }
        let supported = |section: &str| {
            field(body, section)
                .and_then(|s| field(s, "supported"))
                .and_then(lenient_bool)
                .unwrap_or(false)
        };
        let number = |section: &str, name: &str| {
            field(body, section)
                .and_then(|s| field(s, name))
                .and_then(lenient_u64)
        };
        let bulk = supported("bulk").then(|| BulkLimits {
            max_operations: number("bulk", "maxOperations")
                .map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX).max(1)),
            max_payload_size: number("bulk", "maxPayloadSize").unwrap_or(1_048_576),
        });
        let filter_max_results = supported("filter").then(|| {
            number("filter", "maxResults").map_or(100, |n| u32::try_from(n).unwrap_or(u32::MAX))
        });
        Some(ServerCapabilities {
            discovered: true,
            patch: supported("patch"),
            patch_max_operations: number("patch", "maxOperations")
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX).max(1)),
            bulk,
            filter_max_results,
            etag: supported("etag"),
            sort: supported("sort"),
            change_password: supported("changePassword"),
        })
    }

    /// One line naming what is supported, for people.
    pub fn summary(&self) -> String {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let bulk = match self.bulk {
            Some(b) => format!(
                "yes (max {} ops, {} bytes)",
                b.max_operations, b.max_payload_size
            ),
            None => "no".into(),
        };
        let filter = match self.filter_max_results {
            Some(n) => format!("yes (max {n} results)"),
            None => "no".into(),
        };
        format!(
            "patch: {}, bulk: {bulk}, filter: {filter}, etag: {}, sort: {}, changePassword: {}",
            yes_no(self.patch),
            yes_no(self.etag),
            yes_no(self.sort),
            yes_no(self.change_password)
        )
    }
}

/// A member of an object, looked up case-insensitively (attribute names are case-insensitive
/// in SCIM, and servers differ in how they spell them).
pub fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    let obj = value.as_object()?;
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_rfc_example() {
        // RFC 7643 §8.5, trimmed.
        let spc = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": {"supported": true},
            "bulk": {"supported": true, "maxOperations": 1000, "maxPayloadSize": 1048576},
            "filter": {"supported": true, "maxResults": 200},
            "changePassword": {"supported": true},
            "sort": {"supported": true},
            "etag": {"supported": true},
            "authenticationSchemes": []
        });
        let caps = ServerCapabilities::from_service_provider_config(&spc).unwrap();
        assert_eq!(
            caps,
            ServerCapabilities {
                discovered: true,
                patch: true,
                patch_max_operations: None,
                bulk: Some(BulkLimits {
                    max_operations: 1000,
                    max_payload_size: 1_048_576
                }),
                filter_max_results: Some(200),
                etag: true,
                sort: true,
                change_password: true,
            }
        );
        assert!(caps.summary().contains("bulk: yes (max 1000 ops"));
    }

    #[test]
    fn tolerates_string_booleans_and_missing_sections() {
        let spc = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "Patch": {"Supported": "True"},
            "bulk": {"supported": "False"},
            "filter": {"supported": true, "maxResults": "50"}
        });
        let caps = ServerCapabilities::from_service_provider_config(&spc).unwrap();
        assert!(caps.patch);
        assert_eq!(caps.patch_max_operations, None);
        assert_eq!(caps.bulk, None);
        assert_eq!(caps.filter_max_results, Some(50));
        assert!(!caps.etag && !caps.sort && !caps.change_password);
    }

    #[test]
    fn rejects_non_spc_bodies() {
        assert!(ServerCapabilities::from_service_provider_config(&json!({"a": 1})).is_none());
        assert!(ServerCapabilities::from_service_provider_config(&json!([1])).is_none());
    }
}
