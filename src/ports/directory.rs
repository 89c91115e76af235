//! The directory port: the one way the server role reaches the CMS's user store.
//!
//! The host implements [`Directory`] (in the component, through a WIT import), so every type
//! here is shaped for WIT: strings, numbers, booleans, options, records, an enum and a
//! variant. A resource is its SCIM JSON; the filter crosses WIT as its canonical string
//! (`Filter`'s `Display`), which the host may translate to SQL or evaluate with
//! [`crate::scim::filter::matches`].
//!
//! The guest never scans the store: list requests always go through [`Directory::query`]
//! with a filter, a sort and a page.

use std::fmt;

use serde_json::Value;

use crate::scim::filter::Filter;

/// The SCIM resource types the server role serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// `urn:ietf:params:scim:schemas:core:2.0:User`, served at `/Users`.
    User,
    /// `urn:ietf:params:scim:schemas:core:2.0:Group`, served at `/Groups`.
    Group,
}

impl ResourceKind {
    /// The resource type's name, as in `meta.resourceType`: `User` or `Group`.
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::User => "User",
            ResourceKind::Group => "Group",
        }
    }

    /// The endpoint, relative to the base URL: `/Users` or `/Groups`.
    pub fn endpoint(self) -> &'static str {
        match self {
            ResourceKind::User => "/Users",
            ResourceKind::Group => "/Groups",
        }
    }

    /// The core schema URN of the resource type.
    pub fn schema(self) -> &'static str {
        match self {
            ResourceKind::User => USER_SCHEMA,
            ResourceKind::Group => GROUP_SCHEMA,
        }
    }
}

/// The core User schema URN.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The core Group schema URN.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The enterprise User extension schema URN.
pub const ENTERPRISE_USER_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// A resource as the directory stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResource {
    /// The id the directory assigned; case-sensitive and stable.
    pub id: String,
    /// The version, used as the ETag: an entity tag such as `W/"3"` (a bare value is
    /// quoted as a weak tag by the server). It must change on every write.
    pub version: String,
    /// When the resource was created, RFC 3339.
    pub created: String,
    /// When the resource was last changed, RFC 3339.
    pub last_modified: String,
    /// The SCIM JSON object. `id` and `meta` in it are ignored; the server writes them from
    /// the fields above. `password` may be stored (hashed or not, as the host likes) and is
    /// never returned.
    pub resource: Value,
}

/// Why the directory could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryError {
    /// No resource has that id (answered with 404).
    NotFound,
    /// A uniqueness constraint would be violated, e.g. a `userName` already taken
    /// (answered with 409 `uniqueness`); the text says which.
    Conflict(String),
    /// `if_version` did not match the stored version (answered with 412).
    VersionMismatch,
    /// The directory cannot evaluate this filter, e.g. an attribute it does not index
    /// (answered with 400 `invalidFilter`).
    InvalidFilter(String),
    /// The store is temporarily unreachable (answered with 503).
    Unavailable(String),
    /// Anything else (answered with 500).
    Other(String),
}

impl fmt::Display for DirectoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirectoryError::NotFound => f.write_str("resource not found"),
            DirectoryError::Conflict(m) => write!(f, "uniqueness conflict: {m}"),
            DirectoryError::VersionMismatch => f.write_str("version mismatch"),
            DirectoryError::InvalidFilter(m) => write!(f, "unsupported filter: {m}"),
            DirectoryError::Unavailable(m) => write!(f, "directory unavailable: {m}"),
            DirectoryError::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for DirectoryError {}

/// One page of a search.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Only resources matching this filter; `None` for all. Across WIT it travels as the
    /// canonical filter string.
    pub filter: Option<Filter>,
    /// The 1-based index of the first result to return; always at least 1.
    pub start_index: u32,
    /// How many results to return at most; 0 asks only for the total.
    pub count: u32,
    /// The attribute to sort by, as a canonical attribute path such as `name.familyName`;
    /// `None` for the directory's own stable order.
    pub sort_by: Option<String>,
    /// Sort descending instead of ascending. Resources without a value sort last when
    /// ascending and first when descending (RFC 7644 §3.4.2.3).
    pub sort_descending: bool,
}

/// What a search found.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryPage {
    /// How many resources match the filter in all, across every page.
    pub total_results: u64,
    /// The requested page of them, in order.
    pub resources: Vec<StoredResource>,
}

/// The CMS's user store, as the server role needs it. Implementations assign ids,
/// versions and timestamps and enforce uniqueness.
pub trait Directory {
    /// The resource with this id, or `None`.
    fn get(&self, kind: ResourceKind, id: &str) -> Result<Option<StoredResource>, DirectoryError>;

    /// One page of the resources matching `query.filter`, sorted and paged as asked.
    fn query(&self, kind: ResourceKind, query: &Query) -> Result<QueryPage, DirectoryError>;

    /// [`Directory::query`] for a caller that reads only the top-level attributes named in
    /// `keep` (case-insensitively) of each resource: a directory may leave the others out,
    /// and save building them. This one returns whole resources.
    fn query_keeping(
        &self,
        kind: ResourceKind,
        query: &Query,
        keep: &[&str],
    ) -> Result<QueryPage, DirectoryError> {
        let _ = keep;
        self.query(kind, query)
    }

    /// Stores a new resource (without `id` or `meta`) and returns it as stored, with the
    /// id, version and timestamps the directory assigned.
    fn create(
        &self,
        kind: ResourceKind,
        resource: &Value,
    ) -> Result<StoredResource, DirectoryError>;

    /// Replaces the resource with this id. With `if_version`, fails with
    /// [`DirectoryError::VersionMismatch`] unless the stored version is that one, so a
    /// read-modify-write cannot lose a concurrent change.
    fn replace(
        &self,
        kind: ResourceKind,
        id: &str,
        resource: &Value,
        if_version: Option<&str>,
    ) -> Result<StoredResource, DirectoryError>;

    /// Deletes the resource with this id; `false` when there was none. Deleting a User
    /// should also drop it from the groups it belongs to.
    fn delete(&self, kind: ResourceKind, id: &str) -> Result<bool, DirectoryError>;
}

/// A shared reference to a directory is a directory, so a host can keep ownership.
impl<D: Directory + ?Sized> Directory for &D {
    fn get(&self, kind: ResourceKind, id: &str) -> Result<Option<StoredResource>, DirectoryError> {
        (**self).get(kind, id)
    }

    fn query(&self, kind: ResourceKind, query: &Query) -> Result<QueryPage, DirectoryError> {
        (**self).query(kind, query)
    }

    fn query_keeping(
        &self,
        kind: ResourceKind,
        query: &Query,
        keep: &[&str],
    ) -> Result<QueryPage, DirectoryError> {
        (**self).query_keeping(kind, query, keep)
    }

    fn create(
        &self,
        kind: ResourceKind,
        resource: &Value,
    ) -> Result<StoredResource, DirectoryError> {
        (**self).create(kind, resource)
    }

    fn replace(
        &self,
        kind: ResourceKind,
        id: &str,
        resource: &Value,
        if_version: Option<&str>,
    ) -> Result<StoredResource, DirectoryError> {
        (**self).replace(kind, id, resource, if_version)
    }

    fn delete(&self, kind: ResourceKind, id: &str) -> Result<bool, DirectoryError> {
        (**self).delete(kind, id)
    }
}
