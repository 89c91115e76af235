//! The directory port's implementation on SQLite ([`DirectoryBackend`]): queries narrowed
//! in SQL and decided by the core's `select`, and the writes, each one transaction under
//! the shared write lock, with the CMS user mirrored beside a stored SCIM user.

use std::sync::{Arc, PoisonError};

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};
use scim_provisioner::ports::DirectoryError as CoreDirectoryError;
use scim_provisioner::ports::Query;
use scim_provisioner::server::select::{query_from_text, select};
use serde_json::Value;

use super::SqliteDirectory;
use super::member_index::{exact_member_page, index_members, member_lookup};
use super::queries::{self, candidates, conflict_check, db_err, kind_name, plain_page};
use crate::clock::now_rfc3339;
use crate::host_state::DirectoryBackend;
use crate::ids::new_id;
use crate::store::{Store, UserRecord};
use crate::types::{
    CmsUser, DirectoryError, FieldValue, QueryPage, ResourceKind, Search, StoredResource,
};

fn field_json(v: &FieldValue) -> Value {
    match v {
        FieldValue::Text(s) => Value::String(s.clone()),
        FieldValue::Number(n) => {
            serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
        }
        FieldValue::Boolean(b) => Value::Bool(*b),
        FieldValue::TextList(l) => Value::Array(l.iter().cloned().map(Value::String).collect()),
        FieldValue::Null => Value::Null,
    }
}

/// Keeps the CMS user beside a stored SCIM user, in the write's transaction: the CMS id is
/// the SCIM id. A login name another CMS user already holds is a conflict (409
/// `uniqueness`, as on PostgreSQL and MariaDB), and the caller's transaction rolls the
/// whole write back.
fn mirror(
    tx: &Transaction<'_>,
    id: &str,
    json: &str,
    cms: Option<&CmsUser>,
) -> Result<(), DirectoryError> {
    let Some(record) = cms_record(id, json, cms) else {
        return Ok(());
    };
    // Checked rather than read from the insert's failure: the store reports its unique
    // constraint as text. The write holds SQLite's write lock (an IMMEDIATE
    // transaction), so no other writer can take the name between this check and the
    // write; `=` compares with the column's collation (NOCASE), as the constraint does.
    let holder: Option<String> = tx
        .prepare_cached("SELECT id FROM users WHERE name = ?1 AND id <> ?2 LIMIT 1")
        .and_then(|mut stmt| {
            stmt.query_row(params![record.name, id], |r| r.get(0))
                .optional()
        })
        .map_err(db_err)?;
    if holder.is_some() {
        return Err(DirectoryError::Conflict(format!(
            "the CMS already has a user named {:?}",
            record.name
        )));
    }
    Store::write_user(tx, &record)
        .and_then(|()| Store::remember_user_id(tx, &record.id))
        .map_err(|e| DirectoryError::Other(format!("CMS user: {e:#}")))
}

/// The CMS user kept beside a stored SCIM user (its id is the SCIM id), from the CMS view
/// the component reverse-mapped; `None` without one, or without a login name.
pub(super) fn cms_record(id: &str, json: &str, cms: Option<&CmsUser>) -> Option<UserRecord> {
    let cms = cms?;
    let mut fields = serde_json::Map::new();
    let mut name = None;
    let mut mail = String::new();
    for (k, v) in &cms.fields {
        match (k.as_str(), v) {
            ("name", FieldValue::Text(s)) => name = Some(s.clone()),
            ("mail", FieldValue::Text(s)) => mail = s.clone(),
            (_, FieldValue::Null) => {}
            _ => {
                fields.insert(k.clone(), field_json(v));
            }
        }
    }
    // Without a name rule in the mapping, the SCIM userName is the login name.
    let name = name.or_else(|| {
        serde_json::from_str::<Value>(json)
            .ok()
            .and_then(|v| v.get("userName").and_then(Value::as_str).map(String::from))
    });
    Some(UserRecord {
        id: id.to_string(),
        name: name?,
        mail,
        fields,
        active: cms.active,
    })
}

/// A write's error: a uniqueness constraint another worker's write won (between the check
/// and the write) is the same conflict the check reports.
fn write_err(kind: ResourceKind) -> impl Fn(rusqlite::Error) -> DirectoryError {
    move |e| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => DirectoryError::Conflict(format!(
            "{} is already taken",
            if kind == ResourceKind::User {
                "userName"
            } else {
                "displayName"
            }
        )),
        _ => db_err(e),
    }
}

/// The attribute that must be unique per kind, lower-cased (userName and Group
/// displayName are case-insensitive, RFC 7643 §4.1.1).
pub(super) fn unique_key(kind: ResourceKind, v: &Value) -> Option<String> {
    let attr = match kind {
        ResourceKind::User => "userName",
        ResourceKind::Group => "displayName",
    };
    v.get(attr).and_then(Value::as_str).map(str::to_lowercase)
}

impl SqliteDirectory {
    /// Runs one write as one transaction, under the shared write lock.
    fn write<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, DirectoryError>,
    ) -> Result<T, DirectoryError> {
        let lock = Arc::clone(&self.write_lock);
        // A worker that panicked while holding the lock left no half-write behind (its
        // transaction rolled back when dropped), so the lock is still good.
        let _held = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let out = f(&tx)?;
        tx.commit().map_err(db_err)?;
        Ok(out)
    }
}

impl DirectoryBackend for SqliteDirectory {
    fn get(
        &mut self,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Option<StoredResource>, DirectoryError> {
        queries::get(&self.conn, kind, id)
    }

    fn query(&mut self, kind: ResourceKind, search: &Search) -> Result<QueryPage, DirectoryError> {
        let query = parse_search(search)?;
        if query.filter.is_none() && query.sort_by.is_none() {
            return plain_page(&self.conn, kind, search);
        }
        let member = query
            .filter
            .as_ref()
            .filter(|_| kind == ResourceKind::Group)
            .and_then(member_lookup);
        if let Some(page) = member
            .filter(|_| query.sort_by.is_none())
            .map(|v| exact_member_page(&self.conn, v, &query))
            .transpose()?
            .flatten()
        {
            return Ok(page);
        }
        let stored = candidates(&self.conn, kind, query.filter.as_ref(), member)?;
        select_page(kind, stored, &query)
    }

    fn create(
        &mut self,
        kind: ResourceKind,
        json: &str,
        cms: Option<&CmsUser>,
    ) -> Result<StoredResource, DirectoryError> {
        let (value, hash, stripped) = parse_hashing_password(kind, json)?;
        let json = stripped.as_deref().unwrap_or(json);
        let key = unique_key(kind, &value);
        let external = value.get("externalId").and_then(Value::as_str);
        self.write(|tx| {
            conflict_check(tx, kind, key.as_deref(), None)?;
            let id = new_id();
            let now = now_rfc3339();
            tx.prepare_cached(
                "INSERT INTO scim_resources (kind, id, version, created, modified, unique_key, external_id, json)
                 VALUES (?1, ?2, 1, ?3, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut stmt| stmt.execute(params![kind_name(kind), id, now, key, external, json]))
            .map_err(write_err(kind))?;
            if kind == ResourceKind::Group {
                index_members(tx, &id, &value).map_err(db_err)?;
            }
            if let Some(hash) = &hash {
                set_password_hash(tx, &id, hash)?;
            }
            mirror(tx, &id, json, cms)?;
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
        self.write(|tx| {
            let stored = replace_in(tx, kind, id, &value, json, cms, if_version)?;
            if let Some(hash) = &hash {
                set_password_hash(tx, id, hash)?;
            }
            Ok(stored)
        })
    }

    fn delete(&mut self, kind: ResourceKind, id: &str) -> Result<bool, DirectoryError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "DELETE FROM scim_resources WHERE kind = ?1 AND id = ?2",
                    params![kind_name(kind), id],
                )
                .map_err(db_err)?;
            if n > 0 && kind == ResourceKind::Group {
                tx.execute(
                    "DELETE FROM scim_group_members WHERE group_id = ?1",
                    params![id],
                )
                .map_err(db_err)?;
            }
            if n > 0 && kind == ResourceKind::User {
                tx.execute("DELETE FROM users WHERE id = ?1", params![id])
                    .map_err(db_err)?;
                // Drop the user from the groups it belonged to, in the same transaction
                // (rewriting each also rewrites its index rows).
                let groups: Vec<(String, String)> = {
                    let mut stmt = tx
                        .prepare(
                            "SELECT id, json FROM scim_resources WHERE kind = 'Group' AND id IN
                             (SELECT group_id FROM scim_group_members WHERE member_key = ?1)",
                        )
                        .map_err(db_err)?;
                    let rows = stmt
                        .query_map(params![id.to_lowercase()], |r| Ok((r.get(0)?, r.get(1)?)))
                        .map_err(db_err)?;
                    rows.collect::<Result<_, _>>().map_err(db_err)?
                };
                for (gid, gjson) in groups {
                    let Ok(mut g) = serde_json::from_str::<Value>(&gjson) else {
                        continue;
                    };
                    drop_member(&mut g, id);
                    let text = g.to_string();
                    replace_in(tx, ResourceKind::Group, &gid, &g, &text, None, None)?;
                }
            }
            Ok(n > 0)
        })
    }
}

/// A search's filter, sort and paging as the core's query; a filter that does not parse is
/// an invalid filter.
pub(super) fn parse_search(search: &Search) -> Result<Query, DirectoryError> {
    query_from_text(
        search.filter.as_deref(),
        search.start_index,
        search.count,
        search.sort_by.clone(),
        search.sort_descending,
    )
    .map_err(core_error)
}

fn core_error(e: CoreDirectoryError) -> DirectoryError {
    match e {
        CoreDirectoryError::InvalidFilter(m) => DirectoryError::InvalidFilter(m),
        other => DirectoryError::Other(other.to_string()),
    }
}

/// The page of `query` among `stored`, the candidates SQL narrowed to (in the store's
/// order): the core's `select` filters, sorts and pages them, so host and guest share one
/// comparator (numbers as numbers, the primary value of a multi-valued attribute).
pub(super) fn select_page(
    kind: ResourceKind,
    stored: Vec<StoredResource>,
    query: &Query,
) -> Result<QueryPage, DirectoryError> {
    let mut views: Vec<Value> = Vec::with_capacity(stored.len());
    for r in &stored {
        let mut view: Value = serde_json::from_str(&r.json)
            .map_err(|e| DirectoryError::Other(format!("stored JSON is invalid: {e}")))?;
        if let Some(o) = view.as_object_mut() {
            o.insert("id".into(), Value::String(r.id.clone()));
            o.insert("meta".into(), serde_json::json!({"created": r.created, "lastModified": r.last_modified, "version": r.version, "resourceType": kind_name(kind)}));
        }
        views.push(view);
    }
    let selection = select(&views, query).map_err(core_error)?;
    let total = selection.total_results;
    let mut slots: Vec<Option<StoredResource>> = stored.into_iter().map(Some).collect();
    let resources = selection
        .indices
        .into_iter()
        .filter_map(|i| slots.get_mut(i).and_then(Option::take))
        .collect();
    Ok(QueryPage {
        total_results: total,
        resources,
    })
}

/// A replace inside a write's transaction: `value` is `json` parsed.
fn replace_in(
    tx: &Transaction<'_>,
    kind: ResourceKind,
    id: &str,
    value: &Value,
    json: &str,
    cms: Option<&CmsUser>,
    if_version: Option<&str>,
) -> Result<StoredResource, DirectoryError> {
    let current = queries::get(tx, kind, id)?.ok_or(DirectoryError::NotFound)?;
    if if_version.is_some_and(|v| v != current.version) {
        return Err(DirectoryError::VersionMismatch);
    }
    let key = unique_key(kind, value);
    conflict_check(tx, kind, key.as_deref(), Some(id))?;
    let now = now_rfc3339();
    let external = value.get("externalId").and_then(Value::as_str);
    tx.prepare_cached(
        "UPDATE scim_resources SET version = version + 1, modified = ?3, unique_key = ?4,
             external_id = ?5, json = ?6 WHERE kind = ?1 AND id = ?2",
    )
    .and_then(|mut stmt| stmt.execute(params![kind_name(kind), id, now, key, external, json]))
    .map_err(write_err(kind))?;
    if kind == ResourceKind::Group {
        index_members(tx, id, value).map_err(db_err)?;
    }
    mirror(tx, id, json, cms)?;
    queries::get(tx, kind, id)?.ok_or(DirectoryError::NotFound)
}

/// Takes a User's `password` (any case) out of the resource: it is stored only as a hash,
/// beside the resource, never in it.
pub(super) fn take_password(kind: ResourceKind, value: &mut Value) -> Option<String> {
    if kind != ResourceKind::User {
        return None;
    }
    let obj = value.as_object_mut()?;
    let keys: Vec<String> = obj
        .keys()
        .filter(|k| k.eq_ignore_ascii_case("password"))
        .cloned()
        .collect();
    let mut password = None;
    for k in keys {
        if let Some(Value::String(p)) = obj.remove(&k) {
            password = Some(p);
        }
    }
    password
}

/// An argon2id hash of `password` in the PHC string format (`$argon2id$v=19$...`), with a
/// fresh salt from the operating system and the crate's default cost (19 MiB, 2 passes).
pub(super) fn hash_password(password: &str) -> Result<String, DirectoryError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt)
        .map_err(|e| DirectoryError::Other(format!("no random salt for a password: {e}")))?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| DirectoryError::Other(format!("password salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| DirectoryError::Other(format!("hashing a password: {e}")))
}

/// Whether `password` matches a hash from [`hash_password`]; `false` for a damaged hash.
pub(super) fn verify_password(hash: &str, password: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

fn set_password_hash(tx: &Transaction<'_>, id: &str, hash: &str) -> Result<(), DirectoryError> {
    tx.prepare_cached(
        "UPDATE scim_resources SET password_hash = ?2 WHERE kind = 'User' AND id = ?1",
    )
    .and_then(|mut stmt| stmt.execute(params![id, hash]))
    .map_err(db_err)?;
    Ok(())
}

/// A written resource's JSON parsed, with its password (if any) taken out and hashed, and
/// the JSON to store when one was taken out. Hashed before the write lock is taken:
/// argon2id is slow on purpose.
pub(super) fn parse_hashing_password(
    kind: ResourceKind,
    json: &str,
) -> Result<(Value, Option<String>, Option<String>), DirectoryError> {
    let mut value: Value = serde_json::from_str(json)
        .map_err(|e| DirectoryError::Other(format!("invalid JSON: {e}")))?;
    let hash = take_password(kind, &mut value)
        .map(|p| hash_password(&p))
        .transpose()?;
    let stripped = hash.as_ref().map(|_| value.to_string());
    Ok((value, hash, stripped))
}

/// A resource just created: its first version, created and last modified `now`.
pub(super) fn first_version(id: String, now: String, json: &str) -> StoredResource {
    StoredResource {
        id,
        version: "W/\"1\"".into(),
        created: now.clone(),
        last_modified: now,
        json: json.to_string(),
    }
}

/// Takes the member whose value is `id` out of a group's `members` (a deleted user).
pub(super) fn drop_member(group: &mut Value, id: &str) {
    if let Some(members) = group.get_mut("members").and_then(Value::as_array_mut) {
        members.retain(|m| m.get("value").and_then(Value::as_str) != Some(id));
    }
}
