//! The directory's reads in SQL: a resource by id, a page in the store's order, the
//! candidates of a filter (narrowed by an indexed equality where there is one), and the
//! uniqueness check a write makes first. The filtering, sorting and paging past what SQL
//! narrows is the core's `select`, in the port's implementation.

use rusqlite::{Connection, OptionalExtension, params};
use scim_provisioner::scim::filter::{CompareOp, Filter};
use serde_json::Value;

use crate::types::{DirectoryError, QueryPage, ResourceKind, Search, StoredResource};

/// The `kind` column's value.
pub(super) fn kind_name(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::User => "User",
        ResourceKind::Group => "Group",
    }
}

pub(super) fn db_err(e: rusqlite::Error) -> DirectoryError {
    DirectoryError::Unavailable(e.to_string())
}

/// A `SELECT id, version, created, modified, json` row as a stored resource.
pub(super) fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredResource> {
    let version: i64 = r.get(1)?;
    Ok(StoredResource {
        id: r.get(0)?,
        version: format!("W/\"{version}\""),
        created: r.get(2)?,
        last_modified: r.get(3)?,
        json: r.get(4)?,
    })
}

/// The resource of this kind and id.
pub(super) fn get(
    conn: &Connection,
    kind: ResourceKind,
    id: &str,
) -> Result<Option<StoredResource>, DirectoryError> {
    // Cached statements: every request runs the same few, and preparing one costs about
    // as much as running it.
    conn.prepare_cached(
        "SELECT id, version, created, modified, json FROM scim_resources WHERE kind = ?1 AND id = ?2",
    )
    .and_then(|mut stmt| stmt.query_row(params![kind_name(kind), id], row).optional())
    .map_err(db_err)
}

/// A page without filter or sort: the store's order (rowid), paged in SQL. The same
/// page `select` would cut from every row, without reading and parsing them all, so
/// listing a large directory page by page stays linear.
pub(super) fn plain_page(
    conn: &Connection,
    kind: ResourceKind,
    search: &Search,
) -> Result<QueryPage, DirectoryError> {
    let total: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM scim_resources WHERE kind = ?1",
            params![kind_name(kind)],
            |r| r.get(0),
        )
        .map_err(db_err)?;
    let offset = i64::from(search.start_index.max(1) - 1);
    let mut stmt = conn
        .prepare(
            "SELECT id, version, created, modified, json FROM scim_resources
             WHERE kind = ?1 ORDER BY rowid LIMIT ?2 OFFSET ?3",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map(
            params![kind_name(kind), i64::from(search.count), offset],
            row,
        )
        .map_err(db_err)?;
    Ok(QueryPage {
        total_results: u64::try_from(total).unwrap_or(0),
        resources: rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?,
    })
}

/// Fails with a conflict when another resource of `kind` than `except_id` holds the
/// unique `key` (see `backend::unique_key`).
pub(super) fn conflict_check(
    conn: &Connection,
    kind: ResourceKind,
    key: Option<&str>,
    except_id: Option<&str>,
) -> Result<(), DirectoryError> {
    let Some(key) = key else { return Ok(()) };
    let other: Option<String> = conn
        .prepare_cached("SELECT id FROM scim_resources WHERE kind = ?1 AND unique_key = ?2")
        .and_then(|mut stmt| {
            stmt.query_row(params![kind_name(kind), key], |r| r.get(0))
                .optional()
        })
        .map_err(db_err)?;
    match other {
        Some(id) if Some(id.as_str()) != except_id => Err(DirectoryError::Conflict(format!(
            "{} {key:?} is already taken",
            if kind == ResourceKind::User {
                "userName"
            } else {
                "displayName"
            }
        ))),
        _ => Ok(()),
    }
}

/// Candidates for a filter: an indexed equality runs as SQL; anything else reads the
/// kind's rows and leaves the matching to the core's `select`. `member` is the filter's
/// member lookup (`member_index::member_lookup`) when it is a group's.
pub(super) fn candidates(
    conn: &Connection,
    kind: ResourceKind,
    f: Option<&Filter>,
    member: Option<&str>,
) -> Result<Vec<StoredResource>, DirectoryError> {
    const COLS: &str = "SELECT id, version, created, modified, json FROM scim_resources";
    let (sql, arg): (String, Option<String>) = match f {
        _ if member.is_some() => (
            format!(
                "{COLS} WHERE kind = ?1 AND id IN
                 (SELECT group_id FROM scim_group_members WHERE member_key = ?2) ORDER BY rowid"
            ),
            member.map(str::to_lowercase),
        ),
        Some(Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: Value::String(v),
        }) if path.urn.is_none() && path.sub_attr.is_none() => {
            let attr = path.attr.to_ascii_lowercase();
            if attr == unique_attribute(kind) {
                (
                    format!("{COLS} WHERE kind = ?1 AND unique_key = ?2"),
                    Some(v.to_lowercase()),
                )
            } else if attr == "id" {
                (
                    format!("{COLS} WHERE kind = ?1 AND id = ?2"),
                    Some(v.clone()),
                )
            } else if attr == "externalid" {
                (
                    format!("{COLS} WHERE kind = ?1 AND external_id = ?2"),
                    Some(v.clone()),
                )
            } else {
                (format!("{COLS} WHERE kind = ?1 ORDER BY rowid"), None)
            }
        }
        _ => (format!("{COLS} WHERE kind = ?1 ORDER BY rowid"), None),
    };
    let mut stmt = conn.prepare_cached(&sql).map_err(db_err)?;
    let rows = match arg {
        Some(a) => stmt.query_map(params![kind_name(kind), a], row),
        None => stmt.query_map(params![kind_name(kind)], row),
    }
    .map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

/// The attribute (lower-cased) a kind's `unique_key` holds: a user's userName, a group's
/// displayName.
pub(super) fn unique_attribute(kind: ResourceKind) -> &'static str {
    if kind == ResourceKind::User {
        "username"
    } else {
        "displayname"
    }
}
