//! The SCIM PATCH engine (RFC 7644 §3.5.2), for both roles: [`apply`] carries out a PATCH
//! request on a resource's JSON (server role, in `apply`), and [`diff`] computes the PATCH
//! that turns one version of a resource into another (client role, in `diff`). This file
//! holds what both share: the request and operation types, the error, and the rule that
//! SCIM treats empty values as unassigned.
//!
//! The engine knows no schema beyond a few rules that every SCIM resource shares:
//!
//! - `id`, `meta` and `schemas` cannot be changed (`mutability`); writing the value they
//!   already have is accepted as a no-op, because clients echo them in no-path values.
//! - `active` is a boolean; the strings `"true"`/`"false"` (any case), which Entra ID
//!   sends, are coerced.
//! - In a multi-valued attribute at most one value has `"primary": true`; adding or
//!   replacing a primary value clears the flag on the others (RFC 7643 §2.4).
//! - Attribute names are matched case-insensitively; existing keys keep their spelling.
//! - A name qualified with a core schema URN is a top-level attribute; one qualified with
//!   any other URN lives in the extension object keyed by that URN, which is created (and
//!   the URN added to `schemas`, when that is an array) on first write and removed (with
//!   its URN) when its last attribute is removed.
//! - Removing the last value of a multi-valued attribute or the last sub-attribute of a
//!   complex attribute removes the attribute: SCIM treats empty and unassigned alike.

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::scim::attr;

mod apply;
mod diff;

pub use apply::apply;
pub use diff::diff;

/// The schema URN of a PATCH request body.
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// What a PATCH operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchOpKind {
    /// `add`
    Add,
    /// `remove`
    Remove,
    /// `replace`
    Replace,
}

impl PatchOpKind {
    /// The operation's name on the wire, lowercase.
    pub fn as_str(self) -> &'static str {
        match self {
            PatchOpKind::Add => "add",
            PatchOpKind::Remove => "remove",
            PatchOpKind::Replace => "replace",
        }
    }
}

/// Accepts any case (`add`, `Add`, `ADD`), because Entra ID capitalises the names.
impl<'de> Deserialize<'de> for PatchOpKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        match s.to_ascii_lowercase().as_str() {
            "add" => Ok(PatchOpKind::Add),
            "remove" => Ok(PatchOpKind::Remove),
            "replace" => Ok(PatchOpKind::Replace),
            _ => Err(D::Error::unknown_variant(&s, &["add", "remove", "replace"])),
        }
    }
}

/// Reads a present `value` as `Some`, even when it is `null`, so that an explicit `null`
/// (clear the target) differs from a missing value.
fn present_value<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// One PATCH operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchOperation {
    /// The operation.
    pub op: PatchOpKind,
    /// The target path; `None` means the resource itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The value; `Some(Value::Null)` when the request said `"value": null`.
    #[serde(
        default,
        deserialize_with = "present_value",
        skip_serializing_if = "Option::is_none"
    )]
    pub value: Option<Value>,
}

impl PatchOperation {
    /// `add` at `path`.
    pub fn add(path: impl Into<String>, value: Value) -> Self {
        PatchOperation {
            op: PatchOpKind::Add,
            path: Some(path.into()),
            value: Some(value),
        }
    }

    /// `replace` at `path`.
    pub fn replace(path: impl Into<String>, value: Value) -> Self {
        PatchOperation {
            op: PatchOpKind::Replace,
            path: Some(path.into()),
            value: Some(value),
        }
    }

    /// `remove` at `path`.
    pub fn remove(path: impl Into<String>) -> Self {
        PatchOperation {
            op: PatchOpKind::Remove,
            path: Some(path.into()),
            value: None,
        }
    }
}

/// A PATCH request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchRequest {
    /// The message schemas; [`PATCH_OP_SCHEMA`].
    #[serde(default)]
    pub schemas: Vec<String>,
    /// The operations, applied in order.
    #[serde(rename = "Operations", alias = "operations")]
    pub operations: Vec<PatchOperation>,
}

impl PatchRequest {
    /// A request with the PatchOp schema and these operations.
    pub fn new(operations: Vec<PatchOperation>) -> Self {
        PatchRequest {
            schemas: vec![PATCH_OP_SCHEMA.to_string()],
            operations,
        }
    }

    /// Checks the schema and applies the operations with [`apply`].
    pub fn apply_to(&self, resource: &mut Value) -> Result<(), PatchError> {
        if !self
            .schemas
            .iter()
            .any(|s| attr::name_eq(s, PATCH_OP_SCHEMA))
        {
            return Err(PatchError::new(
                PatchErrorKind::InvalidSyntax,
                format!("the request's schemas must include {PATCH_OP_SCHEMA}"),
            ));
        }
        apply(resource, &self.operations)
    }
}

/// The kind of a PATCH failure, which is its SCIM `scimType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchErrorKind {
    /// `invalidPath`: the path is malformed or cannot be used this way.
    InvalidPath,
    /// `noTarget`: the path's value filter matched nothing, or `remove` had no path.
    NoTarget,
    /// `invalidValue`: the value is missing or has the wrong shape.
    InvalidValue,
    /// `mutability`: the operation would change `id`, `meta` or `schemas`.
    Mutability,
    /// `invalidSyntax`: the request or the resource is not shaped as SCIM requires.
    InvalidSyntax,
}

impl PatchErrorKind {
    /// The `scimType` string.
    pub fn as_str(self) -> &'static str {
        match self {
            PatchErrorKind::InvalidPath => "invalidPath",
            PatchErrorKind::NoTarget => "noTarget",
            PatchErrorKind::InvalidValue => "invalidValue",
            PatchErrorKind::Mutability => "mutability",
            PatchErrorKind::InvalidSyntax => "invalidSyntax",
        }
    }
}

/// Why a PATCH could not be applied. Every kind is answered with HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchError {
    /// The kind, which gives the `scimType`.
    pub kind: PatchErrorKind,
    /// What went wrong, naming the operation (counted from 0) and the path.
    pub message: String,
}

impl PatchError {
    fn new(kind: PatchErrorKind, message: impl Into<String>) -> Self {
        PatchError {
            kind,
            message: message.into(),
        }
    }

    /// The SCIM `scimType`: `invalidPath`, `noTarget`, `invalidValue`, `mutability` or
    /// `invalidSyntax`.
    pub fn scim_type(&self) -> &'static str {
        self.kind.as_str()
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        400
    }
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for PatchError {}

/// True for null, `""`, `[]` and `{}`, which SCIM treats as unassigned.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

#[cfg(test)]
mod tests;
