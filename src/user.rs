//! The CMS side of provisioning: a user record, what happened to it, and what the host
//! remembers about its remote twin. These are the core's own types; the WIT glue converts.

use serde::{Deserialize, Serialize};

/// One value of a CMS user's field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    /// No value.
    Null,
    /// A boolean.
    Boolean(bool),
    /// A number.
    Number(f64),
    /// A string; dates travel as ISO 8601 strings.
    Text(String),
    /// A list of strings, such as roles.
    TextList(Vec<String>),
}

impl FieldValue {
    /// True for `Null`, an empty string and an empty list.
    pub fn is_empty(&self) -> bool {
        match self {
            FieldValue::Null => true,
            FieldValue::Text(s) => s.is_empty(),
            FieldValue::TextList(l) => l.is_empty(),
            FieldValue::Boolean(_) | FieldValue::Number(_) => false,
        }
    }
}

/// A user record of the CMS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CmsUser {
    /// The CMS's own id for the user.
    pub id: String,
    /// Named fields, in the CMS's order.
    pub fields: Vec<(String, FieldValue)>,
    /// False when the user is blocked.
    pub active: bool,
}

impl CmsUser {
    /// The value of a field, if the user has it.
    pub fn field(&self, name: &str) -> Option<&FieldValue> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// What happened to a user in the CMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserEvent {
    /// The user was created.
    Created,
    /// The user was changed.
    Updated,
    /// The user was blocked.
    Blocked,
    /// The user was unblocked.
    Unblocked,
    /// The user was deleted.
    Deleted,
    /// A scheduled reconcile.
    Reconcile,
}

/// What the host remembers about a provisioned user between calls.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Link {
    /// The remote SCIM `id`.
    pub remote_id: String,
    /// The remote `meta.version`, when the server gave one.
    pub version: Option<String>,
    /// The JSON of the resource as last provisioned.
    pub snapshot: Option<String>,
}

/// What a provisioning call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A new remote user was created.
    Created,
    /// An existing remote user was matched and linked.
    Adopted,
    /// The remote user was updated.
    Updated,
    /// Nothing had changed; nothing was sent.
    Unchanged,
    /// The remote user was deactivated.
    Deactivated,
    /// The remote user was deleted.
    Deleted,
    /// The link was dropped without a change on the server.
    Unlinked,
    /// Nothing was done.
    Skipped,
}

/// The result of one provisioning call.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvisionOutcome {
    /// What was done.
    pub action: Action,
    /// Why, for `Skipped` and `Unlinked`.
    pub reason: Option<String>,
    /// The link to store from now on.
    pub link: Option<Link>,
    /// The remote `meta.location`, when known.
    pub location: Option<String>,
    /// How many HTTP requests were made.
    pub requests: u32,
}
