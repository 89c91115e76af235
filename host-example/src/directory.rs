//! The `directory` capability on SQLite: the store behind `serve`, where an identity
//! provider's users and groups land. Simple equality filters on indexed attributes narrow
//! the candidates in SQL; the core's own `select` (linked natively) then filters, sorts and
//! pages them, so host and guest never disagree on what a filter or a sort means.

use rusqlite::{Connection, OptionalExtension, params};
use scim_provisioner::ports::DirectoryError as CoreDirectoryError;
use scim_provisioner::scim::filter::{CompareOp, Filter};
use scim_provisioner::server::select::{query_from_text, select};
use serde_json::Value;

use crate::clock::now_rfc3339;
use crate::host_state::DirectoryBackend;
use crate::ids::new_id;
use crate::store::{Store, UserRecord};
use crate::types::{
    CmsUser, DirectoryError, FieldValue, QueryPage, ResourceKind, Search, StoredResource,
};

/// A directory in a SQLite file. Users are also kept as normal CMS users in the same
/// file's `users` table (the host store's), so an identity provider's users appear in the
/// CMS; those changes are not queued for outbound provisioning.
pub struct SqliteDirectory {
    conn: Connection,
    cms: Store,
}

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

impl SqliteDirectory {
    /// Keeps the CMS user beside a stored SCIM user: the CMS id is the SCIM id.
    fn mirror(
        &mut self,
        id: &str,
        json: &str,
        cms: Option<&CmsUser>,
    ) -> Result<(), DirectoryError> {
        let Some(cms) = cms else { return Ok(()) };
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
        let Some(name) = name else { return Ok(()) };
        let record = UserRecord {
            id: id.to_string(),
            name,
            mail,
            fields,
            active: cms.active,
        };
        self.cms
            .import_users([Ok(record)])
            .map(|_| ())
            .map_err(|e| DirectoryError::Other(format!("CMS user: {e:#}")))
    }
}

fn kind_name(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::User => "User",
        ResourceKind::Group => "Group",
    }
}

fn db_err(e: rusqlite::Error) -> DirectoryError {
    DirectoryError::Unavailable(e.to_string())
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
fn unique_key(kind: ResourceKind, v: &Value) -> Option<String> {
    let attr = match kind {
        ResourceKind::User => "userName",
        ResourceKind::Group => "displayName",
    };
    v.get(attr).and_then(Value::as_str).map(str::to_lowercase)
}

impl SqliteDirectory {
    /// Opens (creating if needed) the directory tables in the SQLite file at `path`.
    pub fn open(path: &std::path::Path) -> anyhow::Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS scim_resources (
                kind TEXT NOT NULL,
                id TEXT NOT NULL,
                version INTEGER NOT NULL,
                created TEXT NOT NULL,
                modified TEXT NOT NULL,
                unique_key TEXT,
                external_id TEXT,
                json TEXT NOT NULL,
                PRIMARY KEY (kind, id)
            );
            CREATE UNIQUE INDEX IF NOT EXISTS scim_unique ON scim_resources(kind, unique_key);
            CREATE INDEX IF NOT EXISTS scim_external ON scim_resources(kind, external_id);",
        )?;
        let cms = Store::open(path)?;
        Ok(SqliteDirectory { conn, cms })
    }

    fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredResource> {
        let version: i64 = r.get(1)?;
        Ok(StoredResource {
            id: r.get(0)?,
            version: format!("W/\"{version}\""),
            created: r.get(2)?,
            last_modified: r.get(3)?,
            json: r.get(4)?,
        })
    }

    fn conflict_check(
        &self,
        kind: ResourceKind,
        key: Option<&str>,
        except_id: Option<&str>,
    ) -> Result<(), DirectoryError> {
        let Some(key) = key else { return Ok(()) };
        let other: Option<String> = self
            .conn
            .query_row(
                "SELECT id FROM scim_resources WHERE kind = ?1 AND unique_key = ?2",
                params![kind_name(kind), key],
                |r| r.get(0),
            )
            .optional()
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
    /// kind's rows and leaves the matching to the core's `select`.
    fn candidates(
        &self,
        kind: ResourceKind,
        f: Option<&Filter>,
    ) -> Result<Vec<StoredResource>, DirectoryError> {
        const COLS: &str = "SELECT id, version, created, modified, json FROM scim_resources";
        let (sql, arg): (String, Option<String>) = match f {
            Some(Filter::Compare {
                path,
                op: CompareOp::Eq,
                value: Value::String(v),
            }) if path.urn.is_none() && path.sub_attr.is_none() => {
                let attr = path.attr.to_ascii_lowercase();
                let unique = if kind == ResourceKind::User {
                    "username"
                } else {
                    "displayname"
                };
                if attr == unique {
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
        let mut stmt = self.conn.prepare(&sql).map_err(db_err)?;
        let rows = match arg {
            Some(a) => stmt.query_map(params![kind_name(kind), a], Self::row),
            None => stmt.query_map(params![kind_name(kind)], Self::row),
        }
        .map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
    }
}

impl DirectoryBackend for SqliteDirectory {
    fn get(
        &mut self,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Option<StoredResource>, DirectoryError> {
        self.conn
            .query_row(
                "SELECT id, version, created, modified, json FROM scim_resources WHERE kind = ?1 AND id = ?2",
                params![kind_name(kind), id],
                Self::row,
            )
            .optional()
            .map_err(db_err)
    }

    fn query(&mut self, kind: ResourceKind, search: &Search) -> Result<QueryPage, DirectoryError> {
        let to_wit = |e: CoreDirectoryError| match e {
            CoreDirectoryError::InvalidFilter(m) => DirectoryError::InvalidFilter(m),
            other => DirectoryError::Other(other.to_string()),
        };
        let query = query_from_text(
            search.filter.as_deref(),
            search.start_index,
            search.count,
            search.sort_by.clone(),
            search.sort_descending,
        )
        .map_err(to_wit)?;
        // The SQL pre-filter only narrows the candidates (an indexed equality); the core's
        // `select` then filters, sorts and pages them, so host and guest share one
        // comparator (numbers as numbers, the primary value of a multi-valued attribute).
        let mut stored: Vec<StoredResource> = Vec::new();
        let mut views: Vec<Value> = Vec::new();
        for r in self.candidates(kind, query.filter.as_ref())? {
            let mut view: Value = serde_json::from_str(&r.json)
                .map_err(|e| DirectoryError::Other(format!("stored JSON is invalid: {e}")))?;
            if let Some(o) = view.as_object_mut() {
                o.insert("id".into(), Value::String(r.id.clone()));
                o.insert("meta".into(), serde_json::json!({"created": r.created, "lastModified": r.last_modified, "version": r.version, "resourceType": kind_name(kind)}));
            }
            stored.push(r);
            views.push(view);
        }
        let selection = select(&views, &query).map_err(to_wit)?;
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

    fn create(
        &mut self,
        kind: ResourceKind,
        json: &str,
        cms: Option<&CmsUser>,
    ) -> Result<StoredResource, DirectoryError> {
        let value: Value = serde_json::from_str(json)
            .map_err(|e| DirectoryError::Other(format!("invalid JSON: {e}")))?;
        let key = unique_key(kind, &value);
        self.conflict_check(kind, key.as_deref(), None)?;
        let id = new_id();
        let now = now_rfc3339();
        let external = value.get("externalId").and_then(Value::as_str);
        self.conn
            .execute(
                "INSERT INTO scim_resources (kind, id, version, created, modified, unique_key, external_id, json)
                 VALUES (?1, ?2, 1, ?3, ?3, ?4, ?5, ?6)",
                params![kind_name(kind), id, now, key, external, json],
            )
            .map_err(write_err(kind))?;
        self.mirror(&id, json, cms)?;
        Ok(StoredResource {
            id,
            version: "W/\"1\"".into(),
            created: now.clone(),
            last_modified: now,
            json: json.to_string(),
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
        let current = self.get(kind, id)?.ok_or(DirectoryError::NotFound)?;
        if if_version.is_some_and(|v| v != current.version) {
            return Err(DirectoryError::VersionMismatch);
        }
        let value: Value = serde_json::from_str(json)
            .map_err(|e| DirectoryError::Other(format!("invalid JSON: {e}")))?;
        let key = unique_key(kind, &value);
        self.conflict_check(kind, key.as_deref(), Some(id))?;
        let now = now_rfc3339();
        let external = value.get("externalId").and_then(Value::as_str);
        self.conn
            .execute(
                "UPDATE scim_resources SET version = version + 1, modified = ?3, unique_key = ?4,
                     external_id = ?5, json = ?6 WHERE kind = ?1 AND id = ?2",
                params![kind_name(kind), id, now, key, external, json],
            )
            .map_err(write_err(kind))?;
        self.mirror(id, json, cms)?;
        self.get(kind, id)?.ok_or(DirectoryError::NotFound)
    }

    fn delete(&mut self, kind: ResourceKind, id: &str) -> Result<bool, DirectoryError> {
        let n = self
            .conn
            .execute(
                "DELETE FROM scim_resources WHERE kind = ?1 AND id = ?2",
                params![kind_name(kind), id],
            )
            .map_err(db_err)?;
        if n > 0 && kind == ResourceKind::User {
            self.conn
                .execute("DELETE FROM users WHERE id = ?1", params![id])
                .map_err(db_err)?;
            // Drop the user from the groups it belonged to.
            let pattern = format!("%{id}%");
            let groups: Vec<(String, String)> = {
                let mut stmt = self
                    .conn
                    .prepare(
                        "SELECT id, json FROM scim_resources WHERE kind = 'Group' AND json LIKE ?1",
                    )
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![pattern], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(db_err)?;
                rows.collect::<Result<_, _>>().map_err(db_err)?
            };
            for (gid, gjson) in groups {
                let Ok(mut g) = serde_json::from_str::<Value>(&gjson) else {
                    continue;
                };
                if let Some(members) = g.get_mut("members").and_then(Value::as_array_mut) {
                    members.retain(|m| m.get("value").and_then(Value::as_str) != Some(id));
                }
                self.replace(ResourceKind::Group, &gid, &g.to_string(), None, None)?;
            }
        }
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_db(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "scim-dir-test-{name}-{}-{}",
            std::process::id(),
            crate::ids::new_id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("dir.db")
    }

    fn ids_sorted(d: &mut SqliteDirectory, sort_by: &str, descending: bool) -> Vec<String> {
        let page = d
            .query(
                ResourceKind::User,
                &Search {
                    filter: None,
                    start_index: 1,
                    count: 100,
                    sort_by: Some(sort_by.into()),
                    sort_descending: descending,
                },
            )
            .unwrap();
        page.resources
            .into_iter()
            .map(|r| {
                let v: Value = serde_json::from_str(&r.json).unwrap();
                v["userName"].as_str().unwrap().to_string()
            })
            .collect()
    }

    /// The SQLite directory sorts as the core does: numbers as numbers, and a multi-valued
    /// attribute by its primary value (it used to compare "10" < "9" and take the first).
    #[test]
    fn sorts_with_the_cores_comparator() {
        let mut d = SqliteDirectory::open(&temp_db("sort")).unwrap();
        for json in [
            r#"{"userName":"nine","rank":9,"emails":[{"value":"z@x.example"},{"value":"a@x.example","primary":true}]}"#,
            r#"{"userName":"ten","rank":10,"emails":[{"value":"m@x.example","primary":true}]}"#,
            r#"{"userName":"none"}"#,
        ] {
            d.create(ResourceKind::User, json, None).unwrap();
        }
        assert_eq!(ids_sorted(&mut d, "rank", false), ["nine", "ten", "none"]);
        assert_eq!(ids_sorted(&mut d, "rank", true), ["none", "ten", "nine"]);
        assert_eq!(ids_sorted(&mut d, "emails", false), ["nine", "ten", "none"]);
        // Filtering and paging agree with the core too; the SQL pre-filter only narrows.
        let page = d
            .query(
                ResourceKind::User,
                &Search {
                    filter: Some(r#"userName eq "NINE""#.into()),
                    start_index: 1,
                    count: 10,
                    sort_by: None,
                    sort_descending: false,
                },
            )
            .unwrap();
        assert_eq!(page.total_results, 1);
        let page = d
            .query(
                ResourceKind::User,
                &Search {
                    filter: Some("rank gt 9".into()),
                    start_index: 1,
                    count: 10,
                    sort_by: None,
                    sort_descending: false,
                },
            )
            .unwrap();
        assert_eq!(page.total_results, 1);
    }
}
