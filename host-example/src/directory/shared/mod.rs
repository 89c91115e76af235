//! The `directory` capability on PostgreSQL or MariaDB: what `serve --database
//! postgres://…` (or `mysql://…`) answers from, so that several `serve` processes on one
//! database, behind a load balancer, answer as one server.
//!
//! The model is the SQLite directory's: the same tables, simple equality filters narrowed
//! in SQL, and the core's own `select` deciding every filter, sort and page. What the
//! database adds is the concurrency between processes:
//! - **If-Match**: a replace reads the stored version with `SELECT … FOR UPDATE` in its
//!   transaction, so of two writes with the same `If-Match` the second waits for the
//!   first, then sees the new version and fails (412). PATCH relies on the same check.
//! - **Uniqueness**: userName and Group displayName are a unique index, so of two
//!   creates with the same userName on two processes one commits and the other's insert
//!   fails on the index (409), whatever the timing of their checks.
//! - **Deadlocks** between transactions (a user deleted while a group naming it is patched)
//!   roll one back; it runs again, up to [`ATTEMPTS`] times.
//! - Every write is one transaction, so each `/Bulk` operation is atomic, as on SQLite.
//! - A User is also kept as a CMS user in the store's `users` table of the same database,
//!   in the write's transaction, as the SQLite directory does (see `cms`).
//!
//! Files: `engine` (the connection, its failures, transactions), `schema` (the tables and
//! their migrations), `cms` (the CMS user beside each SCIM User), `token` (the bearer token's hash every process checks, and its
//! rotation).

mod cms;
mod engine;
mod schema;
mod token;

use std::collections::HashSet;
use std::time::Duration;

use scim_provisioner::scim::filter::{CompareOp, Filter};
use serde_json::Value;

pub use schema::{DIRECTORY_COMPONENT, DIRECTORY_MIGRATIONS, DIRECTORY_SCHEMA_VERSION};
pub use token::{SharedTokenHash, shared_token_hash};

use self::engine::{Conn, Failure, TxError};
use self::schema::index_key;
use super::backend::{
    drop_member, first_version, parse_hashing_password, parse_search, select_page, unique_key,
};
use super::member_index::{member_lookup, page_of};
use super::queries::{kind_name, unique_attribute};
use crate::clock::now_rfc3339;
use crate::database::{DatabaseUrl, Row, SqlValue, migrate};
use crate::host_state::DirectoryBackend;
use crate::ids::new_id;
use crate::store::{STORE_COMPONENT, STORE_MIGRATIONS};
use crate::types::{CmsUser, DirectoryError, QueryPage, ResourceKind, Search, StoredResource};

/// How many times a write that lost a race (a deadlock, a lock wait timeout) runs.
const ATTEMPTS: u32 = 5;

/// How long opening waits for a database that is starting.
const CONNECT_WAIT: Duration = Duration::from_secs(30);

const COLUMNS: &str = "SELECT id, version, created, modified, json FROM scim_resources";

/// A directory in PostgreSQL or MariaDB; one connection per `serve` worker.
pub struct SharedDirectory {
    conn: Conn,
}

impl SharedDirectory {
    /// Connects to the database at `url` (waiting up to 30 s for one that is starting) and
    /// creates or migrates the directory's tables, and the store's (its `users` table holds
    /// the CMS users the directory's Users are mirrored into).
    pub fn open(url: &DatabaseUrl) -> anyhow::Result<SharedDirectory> {
        let mut conn = Conn::connect(url, CONNECT_WAIT)?;
        let db = conn
            .db()
            .map_err(|f| anyhow::anyhow!("{}", f.into_directory_error()))?;
        migrate(db, STORE_COMPONENT, STORE_MIGRATIONS)?;
        migrate(db, DIRECTORY_COMPONENT, DIRECTORY_MIGRATIONS)?;
        Ok(SharedDirectory { conn })
    }
}

fn stored(r: &Row) -> Result<StoredResource, Failure> {
    let bad = |e: anyhow::Error| Failure::Other(format!("a stored resource: {e:#}"));
    Ok(StoredResource {
        id: r.text(0).map_err(bad)?,
        version: format!("W/\"{}\"", r.int(1).map_err(bad)?),
        created: r.text(2).map_err(bad)?,
        last_modified: r.text(3).map_err(bad)?,
        json: r.text(4).map_err(bad)?,
    })
}

fn db_err(f: Failure) -> DirectoryError {
    f.into_directory_error()
}

/// A unique index's failure as the conflict a client is told about.
fn taken(kind: ResourceKind) -> impl Fn(Failure) -> TxError {
    move |f| match f {
        Failure::Unique => TxError::Directory(taken_error(kind)),
        other => TxError::Sql(other),
    }
}

fn taken_error(kind: ResourceKind) -> DirectoryError {
    DirectoryError::Conflict(format!(
        "{} is already taken",
        if kind == ResourceKind::User {
            "userName"
        } else {
            "displayName"
        }
    ))
}

fn get(conn: &mut Conn, kind: ResourceKind, id: &str) -> Result<Option<StoredResource>, Failure> {
    let rows = conn.rows(
        &format!("{COLUMNS} WHERE kind = ? AND id = ?"),
        &[kind_name(kind).into(), id.into()],
    )?;
    rows.first().map(stored).transpose()
}

/// Fails with a conflict when another resource of `kind` than `except_id` holds `key`.
/// The unique index decides races; this check gives the common case its message.
fn conflict_check(
    conn: &mut Conn,
    kind: ResourceKind,
    key: Option<&str>,
    except_id: Option<&str>,
) -> Result<(), TxError> {
    let Some(key) = key else { return Ok(()) };
    let rows = conn.rows(
        "SELECT id FROM scim_resources WHERE kind = ? AND unique_key = ?",
        &[kind_name(kind).into(), key.into()],
    )?;
    for row in rows {
        let id = row.text(0).map_err(|e| Failure::Other(format!("{e:#}")))?;
        if Some(id.as_str()) != except_id {
            return Err(TxError::Directory(DirectoryError::Conflict(format!(
                "{} {key:?} is already taken",
                if kind == ResourceKind::User {
                    "userName"
                } else {
                    "displayName"
                }
            ))));
        }
    }
    Ok(())
}

/// The unique key column's value: the lower-cased userName or displayName, as an index key.
fn unique_column(kind: ResourceKind, value: &Value) -> Option<String> {
    unique_key(kind, value).map(|k| index_key(&k))
}

fn external_column(value: &Value) -> Option<String> {
    value
        .get("externalId")
        .and_then(Value::as_str)
        .map(index_key)
}

/// Writes the membership index rows of one group, replacing its old ones.
fn index_members(conn: &mut Conn, group_id: &str, group: &Value) -> Result<(), Failure> {
    conn.exec(
        "DELETE FROM scim_group_members WHERE group_id = ?",
        &[group_id.into()],
    )?;
    let mut seen = HashSet::new();
    let rows: Vec<(String, String)> = group
        .get("members")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("value").and_then(Value::as_str))
        .filter_map(|v| {
            let key = index_key(&v.to_lowercase());
            // The first value of a key is the one kept, as SQLite's `INSERT OR IGNORE`.
            seen.insert(key.clone()).then(|| (key, v.to_string()))
        })
        .collect();
    // A few hundred rows a statement: one round trip each, not one a member.
    for chunk in rows.chunks(200) {
        let values = vec!["(?, ?, ?)"; chunk.len()].join(", ");
        let mut args: Vec<SqlValue> = Vec::with_capacity(chunk.len() * 3);
        for (key, value) in chunk {
            args.push(group_id.into());
            args.push(key.as_str().into());
            args.push(value.as_str().into());
        }
        conn.exec(
            &format!(
                "INSERT INTO scim_group_members (group_id, member_key, member_value) VALUES {values}"
            ),
            &args,
        )?;
    }
    Ok(())
}

/// What a replace writes: the resource parsed and as text, its password's hash when it
/// sets one, and its CMS view.
struct Replacement<'a> {
    value: &'a Value,
    json: &'a str,
    hash: Option<&'a str>,
    cms: Option<&'a CmsUser>,
}

/// A replace inside a write's transaction: the row is locked first, so a concurrent
/// replace with the same `if_version` waits for this one and then fails.
fn replace_in(
    conn: &mut Conn,
    kind: ResourceKind,
    id: &str,
    new: &Replacement<'_>,
    if_version: Option<&str>,
) -> Result<StoredResource, TxError> {
    let Replacement {
        value,
        json,
        hash,
        cms,
    } = *new;
    let locked = conn.rows(
        "SELECT version, created FROM scim_resources WHERE kind = ? AND id = ? FOR UPDATE",
        &[kind_name(kind).into(), id.into()],
    )?;
    let Some(row) = locked.first() else {
        return Err(DirectoryError::NotFound.into());
    };
    let bad = |e: anyhow::Error| Failure::Other(format!("a stored resource: {e:#}"));
    let version = row.int(0).map_err(bad)?;
    let created = row.text(1).map_err(bad)?;
    if if_version.is_some_and(|v| v != format!("W/\"{version}\"")) {
        return Err(DirectoryError::VersionMismatch.into());
    }
    let key = unique_column(kind, value);
    conflict_check(conn, kind, key.as_deref(), Some(id))?;
    let now = now_rfc3339();
    let external = external_column(value);
    conn.exec(
        "UPDATE scim_resources SET version = version + 1, modified = ?, unique_key = ?,
             external_id = ?, json = ? WHERE kind = ? AND id = ?",
        &[
            now.as_str().into(),
            key.as_deref().into(),
            external.as_deref().into(),
            json.into(),
            kind_name(kind).into(),
            id.into(),
        ],
    )
    .map_err(taken(kind))?;
    if let Some(hash) = hash {
        conn.exec(
            "UPDATE scim_resources SET password_hash = ? WHERE kind = 'User' AND id = ?",
            &[hash.into(), id.into()],
        )?;
    }
    if kind == ResourceKind::Group {
        index_members(conn, id, value)?;
    }
    cms::mirror(conn, id, json, cms)?;
    Ok(StoredResource {
        id: id.to_string(),
        version: format!("W/\"{}\"", version + 1),
        created,
        last_modified: now,
        json: json.to_string(),
    })
}

impl DirectoryBackend for SharedDirectory {
    fn get(
        &mut self,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Option<StoredResource>, DirectoryError> {
        get(&mut self.conn, kind, id).map_err(db_err)
    }

    fn query(&mut self, kind: ResourceKind, search: &Search) -> Result<QueryPage, DirectoryError> {
        let query = parse_search(search)?;
        let conn = &mut self.conn;
        if query.filter.is_none() && query.sort_by.is_none() {
            // The store's order, paged in SQL: listing a large directory page by page
            // reads each page once.
            let total = conn
                .rows(
                    "SELECT COUNT(*) FROM scim_resources WHERE kind = ?",
                    &[kind_name(kind).into()],
                )
                .map_err(db_err)?
                .first()
                .and_then(|r| r.int(0).ok())
                .unwrap_or(0);
            let offset = i64::from(search.start_index.max(1) - 1);
            let rows = conn
                .rows(
                    &format!("{COLUMNS} WHERE kind = ? ORDER BY seq LIMIT ? OFFSET ?"),
                    &[
                        kind_name(kind).into(),
                        i64::from(search.count).into(),
                        offset.into(),
                    ],
                )
                .map_err(db_err)?;
            return Ok(QueryPage {
                total_results: u64::try_from(total).unwrap_or(0),
                resources: rows
                    .iter()
                    .map(stored)
                    .collect::<Result<_, _>>()
                    .map_err(db_err)?,
            });
        }
        let member = query
            .filter
            .as_ref()
            .filter(|_| kind == ResourceKind::Group)
            .and_then(member_lookup);
        if let Some(value) = member.filter(|_| query.sort_by.is_none())
            && let Some(page) = exact_member_page(conn, value, &query).map_err(db_err)?
        {
            return Ok(page);
        }
        let candidates = candidates(conn, kind, query.filter.as_ref(), member).map_err(db_err)?;
        select_page(kind, candidates, &query)
    }

    fn create(
        &mut self,
        kind: ResourceKind,
        json: &str,
        cms: Option<&CmsUser>,
    ) -> Result<StoredResource, DirectoryError> {
        // Hashed before the transaction: argon2id is slow on purpose.
        let (value, hash, stripped) = parse_hashing_password(kind, json)?;
        let json = stripped.as_deref().unwrap_or(json);
        let key = unique_column(kind, &value);
        let external = external_column(&value);
        self.conn.transaction(ATTEMPTS, |conn| {
            conflict_check(conn, kind, key.as_deref(), None)?;
            let id = new_id();
            let now = now_rfc3339();
            conn.exec(
                "INSERT INTO scim_resources
                 (kind, id, version, created, modified, unique_key, external_id, json, password_hash)
                 VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?)",
                &[
                    kind_name(kind).into(),
                    id.as_str().into(),
                    now.as_str().into(),
                    now.as_str().into(),
                    key.as_deref().into(),
                    external.as_deref().into(),
                    json.into(),
                    hash.as_deref().into(),
                ],
            )
            .map_err(taken(kind))?;
            if kind == ResourceKind::Group {
                index_members(conn, &id, &value)?;
            }
            cms::mirror(conn, &id, json, cms)?;
            Ok(first_version(id, now, json))
        })
    }

    fn replace(
        &mut self,
        kind: ResourceKind,
        id: &str,
        json: &str,
        cms: Option<&CmsUser>,
        if_version: Option<&str>,
    ) -> Result<StoredResource, DirectoryError> {
        let (value, hash, stripped) = parse_hashing_password(kind, json)?;
        let json = stripped.as_deref().unwrap_or(json);
        // Without a password in the resource the stored hash stays: the component hands
        // over only a password the request sets (`directory.hashes_passwords`).
        let new = Replacement {
            value: &value,
            json,
            hash: hash.as_deref(),
            cms,
        };
        self.conn.transaction(ATTEMPTS, |conn| {
            replace_in(conn, kind, id, &new, if_version)
        })
    }

    fn delete(&mut self, kind: ResourceKind, id: &str) -> Result<bool, DirectoryError> {
        self.conn.transaction(ATTEMPTS, |conn| {
            let n = conn.exec(
                "DELETE FROM scim_resources WHERE kind = ? AND id = ?",
                &[kind_name(kind).into(), id.into()],
            )?;
            if n > 0 && kind == ResourceKind::Group {
                conn.exec(
                    "DELETE FROM scim_group_members WHERE group_id = ?",
                    &[id.into()],
                )?;
            }
            if n > 0 && kind == ResourceKind::User {
                cms::remove(conn, id)?;
                // Drop the user from the groups it belonged to, in the same transaction,
                // their rows locked (rewriting each also rewrites its index rows).
                let groups = conn.rows(
                    "SELECT id, json FROM scim_resources WHERE kind = 'Group' AND id IN
                     (SELECT group_id FROM scim_group_members WHERE member_key = ?)
                     ORDER BY seq FOR UPDATE",
                    &[index_key(&id.to_lowercase()).as_str().into()],
                )?;
                for row in groups {
                    let (Ok(gid), Ok(gjson)) = (row.text(0), row.text(1)) else {
                        continue;
                    };
                    let Ok(mut g) = serde_json::from_str::<Value>(&gjson) else {
                        continue;
                    };
                    drop_member(&mut g, id);
                    let text = g.to_string();
                    let new = Replacement {
                        value: &g,
                        json: &text,
                        hash: None,
                        cms: None,
                    };
                    replace_in(conn, ResourceKind::Group, &gid, &new, None)?;
                }
            }
            Ok(n > 0)
        })
    }
}

/// The groups with a member whose value is `value`, paged as `query` asks, when the index
/// holds that exact value for every candidate (then each is a match under any comparison,
/// and no group is parsed); `None` when one holds only a case variant (or a long value's
/// digest), for the core's `select` to decide.
fn exact_member_page(
    conn: &mut Conn,
    value: &str,
    query: &scim_provisioner::ports::Query,
) -> Result<Option<QueryPage>, Failure> {
    let rows = conn.rows(
        "SELECT r.id, r.version, r.created, r.modified, r.json, m.member_value
         FROM scim_group_members m
         JOIN scim_resources r ON r.kind = 'Group' AND r.id = m.group_id
         WHERE m.member_key = ? ORDER BY r.seq",
        &[index_key(&value.to_lowercase()).as_str().into()],
    )?;
    let mut groups = Vec::with_capacity(rows.len());
    for row in &rows {
        if row.opt_text(5).ok().flatten().as_deref() != Some(value) {
            return Ok(None);
        }
        groups.push(stored(row)?);
    }
    Ok(Some(page_of(groups, query)))
}

/// Candidates for a filter: an indexed equality runs as SQL; anything else reads the
/// kind's rows and leaves the matching to the core's `select`. `member` is the filter's
/// member lookup when it is a group's.
fn candidates(
    conn: &mut Conn,
    kind: ResourceKind,
    f: Option<&Filter>,
    member: Option<&str>,
) -> Result<Vec<StoredResource>, Failure> {
    let all = || (format!("{COLUMNS} WHERE kind = ? ORDER BY seq"), None);
    let (sql, arg): (String, Option<String>) = match (member, f) {
        (Some(v), _) => (
            format!(
                "{COLUMNS} WHERE kind = ? AND id IN
                 (SELECT group_id FROM scim_group_members WHERE member_key = ?) ORDER BY seq"
            ),
            Some(index_key(&v.to_lowercase())),
        ),
        (
            None,
            Some(Filter::Compare {
                path,
                op: CompareOp::Eq,
                value: Value::String(v),
            }),
        ) if path.urn.is_none() && path.sub_attr.is_none() => {
            let attr = path.attr.to_ascii_lowercase();
            if attr == unique_attribute(kind) {
                (
                    format!("{COLUMNS} WHERE kind = ? AND unique_key = ?"),
                    Some(index_key(&v.to_lowercase())),
                )
            } else if attr == "id" {
                (
                    format!("{COLUMNS} WHERE kind = ? AND id = ?"),
                    Some(v.clone()),
                )
            } else if attr == "externalid" {
                (
                    format!("{COLUMNS} WHERE kind = ? AND external_id = ? ORDER BY seq"),
                    Some(index_key(v)),
                )
            } else {
                all()
            }
        }
        _ => all(),
    };
    let mut args: Vec<SqlValue> = vec![kind_name(kind).into()];
    args.extend(arg.map(SqlValue::from));
    conn.rows(&sql, &args)?.iter().map(stored).collect()
}

#[cfg(test)]
mod tests;
