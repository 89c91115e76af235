//! The provisioning policy: which operations run, how deprovisioning is done, how remote
//! users are matched, and the attribute mapping. Parsed from the connector's policy JSON and
//! validated when the connector opens, so a mistake is reported before anything is sent.

use serde::Deserialize;
use serde_json::Value;

use crate::error::ProvisioningError;
use crate::mapping::{Mapping, MappingConfig};
use crate::scim::path::AttrPath;

/// Which operations the admin allows, as the seed's operation checkboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Operations {
    /// Create remote users.
    pub create: bool,
    /// Update remote users.
    pub update: bool,
    /// Deactivate remote users (`active=false`).
    pub deactivate: bool,
    /// Delete remote users.
    pub delete: bool,
}

impl Default for Operations {
    /// Everything but delete: deleting is irreversible, so an admin opts in to it.
    fn default() -> Self {
        Operations {
            create: true,
            update: true,
            deactivate: true,
            delete: false,
        }
    }
}

/// What deprovisioning (a deleted user, or one who left the scope) does remotely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Deprovision {
    /// Set `active=false`, keeping the remote account (Entra ID's default).
    #[default]
    Deactivate,
    /// `DELETE /Users/{id}`.
    Delete,
}

/// What an update does when the remote user is gone (404).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteMissing {
    /// Create it again.
    #[default]
    Recreate,
    /// Drop the link and report it.
    Unlink,
}

/// When a creation asks the server whether the user is there already (policy
/// `matching_look_up`). Only the look-ups by an attribute the server must keep unique differ:
/// `userName` (unqualified or under the core User schema, no value filter), the one
/// `matching` attribute RFC 7643 §4.1.1 declares `"uniqueness": "server"`. `externalId` and
/// the emails are unique nowhere, so they are looked up first under either setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchingLookUp {
    /// Every matching attribute is looked up before the POST (one filtered GET each until
    /// one matches): safe with any server.
    #[default]
    BeforeCreate,
    /// The look-up by `userName` is left to the server: the POST goes first, and the 409
    /// `uniqueness` that RFC 7644 §3.3 requires for a taken userName is what makes the user
    /// looked up (by every attribute) and adopted. Saves a look-up per new user; only for
    /// servers that enforce userName uniqueness (case-insensitively, as RFC 7643 says), or
    /// a second creation of one person makes a duplicate.
    OnConflict,
}

/// How far one listing of the remote users may go. A server that keeps answering pages
/// (one that lies about `totalResults`, or serves pages it served before under other ids)
/// cannot make the guest page, or hold users, for ever: past either limit the listing
/// stops with an error, and matching looks each user up instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListingLimits {
    /// The most list requests one listing makes.
    pub max_pages: u32,
    /// The most users one listing holds.
    pub max_users: u32,
}

impl Default for ListingLimits {
    /// 250,000 users fit the hosts' default 512 MiB memory cap with room (100,000 peaked at
    /// 148 MiB); 10,000 pages list them even from a server that pages by 25.
    fn default() -> Self {
        ListingLimits {
            max_pages: 10_000,
            max_users: 250_000,
        }
    }
}

/// The policy's own members; the mapping's are read by [`MappingConfig`].
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct PolicyFields {
    operations: Operations,
    deprovision: Deprovision,
    on_remote_missing: RemoteMissing,
    matching: Vec<String>,
    matching_look_up: MatchingLookUp,
    preserve_unmapped: bool,
    groups_from: Option<String>,
    group_members_per_operation: u32,
    listing: ListingLimits,
    allow_insecure_http: bool,
    directory: DirectoryCapabilities,
}

/// What the host's directory declares it does (the server role's `"directory"` object):
/// capabilities the frozen WIT has no field for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectoryCapabilities {
    /// The directory stores a `password` it is handed only as a one-way hash (argon2id,
    /// bcrypt) and never returns it. Without it the server role drops a password a client
    /// sends, with a warning in the log, so no directory can keep one as sent.
    pub hashes_passwords: bool,
}

impl Default for PolicyFields {
    fn default() -> Self {
        PolicyFields {
            operations: Operations::default(),
            deprovision: Deprovision::default(),
            on_remote_missing: RemoteMissing::default(),
            matching: default_matching(),
            matching_look_up: MatchingLookUp::default(),
            preserve_unmapped: true,
            groups_from: None,
            group_members_per_operation: DEFAULT_GROUP_MEMBERS_PER_OPERATION,
            listing: ListingLimits::default(),
            allow_insecure_http: false,
            directory: DirectoryCapabilities::default(),
        }
    }
}

/// Members one PATCH operation carries unless the policy says otherwise: large enough that
/// 10,000 members go in a few requests, small enough for servers that cap a request's size.
pub const DEFAULT_GROUP_MEMBERS_PER_OPERATION: u32 = 100;

/// userName, then externalId, then the work email: the attributes that identify a person
/// across systems, most specific first.
fn default_matching() -> Vec<String> {
    vec![
        "userName".into(),
        "externalId".into(),
        "emails[type eq \"work\"].value".into(),
    ]
}

const POLICY_KEYS: &[&str] = &[
    "operations",
    "deprovision",
    "on_remote_missing",
    "matching",
    "matching_look_up",
    "preserve_unmapped",
    "groups_from",
    "group_members_per_operation",
    "listing",
    "allow_insecure_http",
    "directory",
    // Read by `client::oauth2` when the connector opens.
    "oauth2",
    "mapping",
    "extensions",
    "scope",
];

/// A validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Enabled operations.
    pub operations: Operations,
    /// How deprovisioning is done.
    pub deprovision: Deprovision,
    /// What an update does on 404.
    pub on_remote_missing: RemoteMissing,
    /// Matching attributes, in precedence order.
    pub matching: Vec<AttrPath>,
    /// Whether a creation looks the user up by `userName` first, or leaves that to the
    /// server's 409.
    pub matching_look_up: MatchingLookUp,
    /// Read the remote user before a PUT, so attributes we do not map survive.
    pub preserve_unmapped: bool,
    /// The CMS field whose values (roles) are provisioned as SCIM Group memberships;
    /// none to leave groups alone.
    pub groups_from: Option<String>,
    /// The most members one PATCH operation adds or removes (membership changes go in
    /// chunks; see `client::groups`).
    pub group_members_per_operation: u32,
    /// How far a listing of the remote users may go.
    pub listing: ListingLimits,
    /// The compiled attribute mapping and scope.
    pub mapping: Mapping,
    /// Plain `http://` to hosts other than loopback is accepted (client role).
    pub allow_insecure_http: bool,
    /// What the host's directory declares it does (server role).
    pub directory: DirectoryCapabilities,
}

impl Policy {
    /// Parses and validates a policy; an empty string gives the defaults.
    pub fn parse(json: &str) -> Result<Policy, ProvisioningError> {
        let invalid = |m: String| ProvisioningError::InvalidConfig(m);
        let value: Value = if json.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_str(json).map_err(|e| invalid(format!("policy is not JSON: {e}")))?
        };
        let obj = value
            .as_object()
            .ok_or_else(|| invalid("policy must be a JSON object".into()))?;
        if let Some(unknown) = obj.keys().find(|k| !POLICY_KEYS.contains(&k.as_str())) {
            return Err(invalid(format!(
                "unknown policy setting `{unknown}` (known: {})",
                POLICY_KEYS.join(", ")
            )));
        }
        if let Some(look_up) = obj.get("matching_look_up") {
            check_matching_look_up(look_up)?;
        }
        let fields: PolicyFields =
            serde_json::from_value(value.clone()).map_err(|e| invalid(format!("policy: {e}")))?;
        let mapping_config: MappingConfig =
            serde_json::from_value(value).map_err(|e| invalid(format!("mapping: {e}")))?;
        let mapping = Mapping::compile(&mapping_config)?;
        if fields.matching.is_empty() {
            return Err(invalid(
                "`matching` needs at least one attribute, or duplicates could be created".into(),
            ));
        }
        if fields.group_members_per_operation == 0 {
            return Err(invalid(
                "`group_members_per_operation` must be at least 1".into(),
            ));
        }
        if fields.listing.max_pages == 0 || fields.listing.max_users == 0 {
            return Err(invalid(
                "`listing.max_pages` and `listing.max_users` must be at least 1".into(),
            ));
        }
        let matching = fields
            .matching
            .iter()
            .map(|m| {
                AttrPath::parse(m).map_err(|e| invalid(format!("matching attribute `{m}`: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy {
            operations: fields.operations,
            deprovision: fields.deprovision,
            on_remote_missing: fields.on_remote_missing,
            matching,
            matching_look_up: fields.matching_look_up,
            preserve_unmapped: fields.preserve_unmapped,
            groups_from: fields.groups_from.filter(|f| !f.trim().is_empty()),
            group_members_per_operation: fields.group_members_per_operation,
            listing: fields.listing,
            mapping,
            allow_insecure_http: fields.allow_insecure_http,
            directory: fields.directory,
        })
    }
}

/// The values `matching_look_up` takes; anything else is refused naming the setting, the
/// value and these (serde's own message would name neither the setting nor, for a
/// non-string, the value).
fn check_matching_look_up(value: &Value) -> Result<(), ProvisioningError> {
    const VALUES: [&str; 2] = ["before_create", "on_conflict"];
    match value.as_str() {
        Some(v) if VALUES.contains(&v) => Ok(()),
        _ => {
            let given: String = crate::scim::text::json(value).chars().take(60).collect();
            Err(ProvisioningError::InvalidConfig(format!(
                "`matching_look_up` must be \"before_create\" (the default) or \"on_conflict\", not {given}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_policy_is_the_default() {
        let p = Policy::parse("").unwrap();
        assert_eq!(p.operations, Operations::default());
        assert!(!p.operations.delete);
        assert_eq!(p.deprovision, Deprovision::Deactivate);
        assert_eq!(p.matching.len(), 3);
        assert_eq!(p.matching_look_up, MatchingLookUp::BeforeCreate);
        assert!(p.preserve_unmapped);
    }

    #[test]
    fn reads_settings() {
        let p = Policy::parse(
            r#"{"operations": {"delete": true, "create": false}, "deprovision": "delete",
                "on_remote_missing": "unlink", "matching": ["externalId"]}"#,
        )
        .unwrap();
        assert!(p.operations.delete && !p.operations.create && p.operations.update);
        assert_eq!(p.deprovision, Deprovision::Delete);
        assert_eq!(p.on_remote_missing, RemoteMissing::Unlink);
        assert_eq!(p.matching.len(), 1);
        for (value, expected) in [
            ("before_create", MatchingLookUp::BeforeCreate),
            ("on_conflict", MatchingLookUp::OnConflict),
        ] {
            let p = Policy::parse(&format!(r#"{{"matching_look_up": "{value}"}}"#)).unwrap();
            assert_eq!(p.matching_look_up, expected);
        }
    }

    #[test]
    fn rejects_mistakes_naming_them() {
        for (json, needle) in [
            ("[]", "object"),
            ("{", "not JSON"),
            (r#"{"operatoins": {}}"#, "operatoins"),
            (r#"{"operations": {"craete": true}}"#, "craete"),
            (r#"{"deprovision": "shred"}"#, "shred"),
            (r#"{"matching": []}"#, "matching"),
            (r#"{"matching": ["emails[type eq"]}"#, "emails[type eq"),
            (r#"{"group_chunk_size": 0}"#, "group_chunk_size"),
            (r#"{"listing": {"max_pages": 0}}"#, "listing.max_pages"),
            (
                r#"{"group_members_per_operation": 0}"#,
                "group_members_per_operation",
            ),
            (r#"{"listing": {"max_rows": 5}}"#, "max_rows"),
            // The spelling the setting's values do not take, and a value it has not.
            (r#"{"matching_look_up": "on-conflict"}"#, "on_conflict"),
            (r#"{"matching_look_up": "never"}"#, "before_create"),
            (r#"{"matching_look_up": true}"#, "matching_look_up"),
        ] {
            let err = Policy::parse(json).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn a_deeply_nested_regex_is_invalid_config_naming_its_rule() {
        let pattern = format!("{}a{}", "(".repeat(50_000), ")".repeat(50_000));
        let policy = serde_json::json!({"mapping": [
            {"target": "userName", "source": "name"},
            {"target": "nickName", "source": "x", "transform": [
                {"regex_replace": {"pattern": pattern, "replacement": ""}}
            ]}
        ]});
        match Policy::parse(&policy.to_string()) {
            Err(ProvisioningError::InvalidConfig(message)) => {
                assert!(message.contains("nickName"), "{message}");
                assert!(message.contains("nested deeper"), "{message}");
                assert!(message.len() < 2_000, "the pattern is not echoed whole");
            }
            other => panic!("{other:?}"),
        }
    }
}
