//! The `directory` capability on SQLite: the store behind `serve`, where an identity
//! provider's users and groups land. Simple equality filters on indexed attributes narrow
//! the candidates in SQL; the core's own `select` (linked natively) then filters, sorts and
//! pages them, so host and guest never disagree on what a filter or a sort means.

use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
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
///
/// Every write (the SCIM resource, its CMS user, a deleted user's group memberships) is one
/// transaction. Directories opened with the same write lock (a `serve`'s workers) take it
/// around each write, so they queue in the process rather than in SQLite's busy handler,
/// which sleeps and retries.
pub struct SqliteDirectory {
    conn: Connection,
    write_lock: Arc<Mutex<()>>,
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

/// Keeps the CMS user beside a stored SCIM user, in the write's transaction: the CMS id is
/// the SCIM id.
fn mirror(
    tx: &Transaction<'_>,
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
    Store::write_user(tx, &record)
        .and_then(|()| Store::remember_user_id(tx, &record.id))
        .map_err(|e| DirectoryError::Other(format!("CMS user: {e:#}")))
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

impl SqliteDirectory {
    /// A page without filter or sort: the store's order (rowid), paged in SQL. The same
    /// page `select` would cut from every row, without reading and parsing them all, so
    /// listing a large directory page by page stays linear.
    /// The groups with a member whose value is `value`, paged as `query` asks, when the
    /// index holds that exact value for every candidate (then each is a match under any
    /// comparison, and no group is parsed); `None` when one holds only a case variant, for
    /// the core's `select` to decide.
    fn exact_member_page(
        &self,
        value: &str,
        query: &scim_provisioner::ports::Query,
    ) -> Result<Option<QueryPage>, DirectoryError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                // CROSS JOIN keeps the index as the outer loop: with a plain JOIN, SQLite
                // walked every resource in rowid order to save the sort, 4 times slower
                // with 1,000 groups stored.
                "SELECT r.id, r.version, r.created, r.modified, r.json, m.member_value IS ?2
                 FROM scim_group_members m
                 CROSS JOIN scim_resources r ON r.kind = 'Group' AND r.id = m.group_id
                 WHERE m.member_key = ?1 ORDER BY r.rowid",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![value.to_lowercase(), value], |r| {
                Ok((Self::row(r)?, r.get::<_, bool>(5)?))
            })
            .map_err(db_err)?;
        let mut groups = Vec::new();
        for row in rows {
            let (group, exact) = row.map_err(db_err)?;
            if !exact {
                return Ok(None);
            }
            groups.push(group);
        }
        let total = groups.len() as u64;
        let skip = usize::try_from(query.start_index.max(1) - 1).unwrap_or(usize::MAX);
        let take = usize::try_from(query.count).unwrap_or(usize::MAX);
        Ok(Some(QueryPage {
            total_results: total,
            resources: groups.into_iter().skip(skip).take(take).collect(),
        }))
    }

    fn plain_page(&self, kind: ResourceKind, search: &Search) -> Result<QueryPage, DirectoryError> {
        let total: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM scim_resources WHERE kind = ?1",
                params![kind_name(kind)],
                |r| r.get(0),
            )
            .map_err(db_err)?;
        let offset = i64::from(search.start_index.max(1) - 1);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, version, created, modified, json FROM scim_resources
                 WHERE kind = ?1 ORDER BY rowid LIMIT ?2 OFFSET ?3",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map(
                params![kind_name(kind), i64::from(search.count), offset],
                Self::row,
            )
            .map_err(db_err)?;
        Ok(QueryPage {
            total_results: u64::try_from(total).unwrap_or(0),
            resources: rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?,
        })
    }
}

/// Checkpoints the WAL of the SQLite file at `path` every `every` until `stop` is set: the
/// writes of connections that leave their checkpoints to the caller get copied into the
/// database here, off the request path. PASSIVE: never waits for a reader or a writer.
pub fn checkpoint_until(
    path: &std::path::Path,
    every: std::time::Duration,
    stop: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<()> {
    let conn = crate::sqlite_page_cache::open(path)?;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(every);
        // A busy database only postpones the checkpoint to the next round.
        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    }
    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    Ok(())
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

/// The membership index: a row per (group, member value), the member value lower-cased,
/// with the first value of that key as stored (`member_value`). A user's `groups` is
/// computed on every read of the user (the core asks for the groups whose
/// `members[value eq "<id>"]`); without the index that read parsed every group, so with
/// 1,000 groups a `GET /Users/{id}` took 16.7 ms instead of 71 µs. Lower-cased, the index
/// finds a superset of what a case-insensitive `eq` matches, and the core's `select` decides;
/// a group whose `member_value` is the value asked is a match under any comparison, so when
/// every candidate is one, the page is cut without parsing a group.
const MEMBER_INDEX: &str = "
    CREATE TABLE scim_group_members (
        group_id TEXT NOT NULL,
        member_key TEXT NOT NULL,
        member_value TEXT,
        PRIMARY KEY (group_id, member_key)
    ) WITHOUT ROWID;
    CREATE INDEX scim_group_members_key ON scim_group_members(member_key);";

/// Writes the index rows of one group (replacing its old ones), in the write's transaction.
fn index_members(conn: &Connection, group_id: &str, group: &Value) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM scim_group_members WHERE group_id = ?1")?
        .execute(params![group_id])?;
    let members = group.get("members").and_then(Value::as_array);
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO scim_group_members (group_id, member_key, member_value)
         VALUES (?1, ?2, ?3)",
    )?;
    for value in members.into_iter().flatten().filter_map(|m| m.get("value")) {
        if let Some(v) = value.as_str() {
            insert.execute(params![group_id, v.to_lowercase(), v])?;
        }
    }
    Ok(())
}

/// Creates the membership index if the file has none, or has one without `member_value`
/// (a database written before it), and fills it from the groups already stored: one
/// immediate transaction, so workers opening the file at once build it once.
fn ensure_member_index(conn: &mut Connection) -> rusqlite::Result<()> {
    const CURRENT: &str = "SELECT EXISTS (SELECT 1 FROM pragma_table_info('scim_group_members') WHERE name = 'member_value')";
    // A plain read first: only a file without the current index needs the write lock.
    if conn.query_row(CURRENT, [], |r| r.get::<_, bool>(0))? {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current: bool = tx.query_row(CURRENT, [], |r| r.get(0))?;
    if !current {
        tx.execute_batch("DROP TABLE IF EXISTS scim_group_members;")?;
        tx.execute_batch(MEMBER_INDEX)?;
        let groups: Vec<(String, String)> = {
            let mut stmt =
                tx.prepare("SELECT id, json FROM scim_resources WHERE kind = 'Group'")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        for (id, json) in groups {
            // A group that is not JSON has no members to index; reads skip it too.
            if let Ok(group) = serde_json::from_str::<Value>(&json) {
                index_members(&tx, &id, &group)?;
            }
        }
    }
    tx.commit()
}

/// The member value a filter looks a group up by, when it is `members[value eq "x"]` or
/// `members.value eq "x"` (how the core, and identity providers, ask for a user's groups).
fn member_lookup(f: &Filter) -> Option<&str> {
    let plain = |a: &scim_provisioner::scim::attr::AttrName, name: &str| {
        a.urn.is_none() && a.attr.eq_ignore_ascii_case(name)
    };
    match f {
        Filter::ValuePath { path, filter } if plain(path, "members") && path.sub_attr.is_none() => {
            match filter.as_ref() {
                Filter::Compare {
                    path: inner,
                    op: CompareOp::Eq,
                    value: Value::String(v),
                } if plain(inner, "value") && inner.sub_attr.is_none() => Some(v),
                _ => None,
            }
        }
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: Value::String(v),
        } if plain(path, "members")
            && path
                .sub_attr
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("value")) =>
        {
            Some(v)
        }
        _ => None,
    }
}

impl SqliteDirectory {
    /// Opens (creating if needed) the directory tables in the SQLite file at `path`.
    pub fn open(path: &std::path::Path) -> anyhow::Result<Self> {
        Self::open_shared(path, Arc::default())
    }

    /// Opens the directory with a write lock shared with other directories on the same
    /// file in this process (one per `serve` worker).
    pub fn open_shared(path: &std::path::Path, write_lock: Arc<Mutex<()>>) -> anyhow::Result<Self> {
        let mut conn = crate::sqlite_page_cache::open(path)?;
        // 1 KiB pages for a new file (an existing one keeps its own; this is a no-op there).
        // A POST changes about 14 pages (two rows, six indexes), each a WAL frame: smaller
        // frames made POST 8-19% faster at 1 connection, halved its p99, and left reads
        // as they were, with 400-byte and with 3.4 KB resources alike (`bench`, A/B).
        conn.pragma_update(None, "page_size", 1024)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // In WAL mode, NORMAL syncs at checkpoints rather than at every commit: a power
        // loss can lose the last commits but never corrupts the file (the CMS store does
        // the same); FULL cost a sync per write, most of a POST's time.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
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
        ensure_member_index(&mut conn)?;
        // The CMS tables (`users`) the writes mirror into.
        drop(Store::open(path)?);
        Ok(SqliteDirectory { conn, write_lock })
    }

    /// Stops this connection from checkpointing the WAL itself: whoever opened it runs the
    /// checkpoints (see [`checkpoint_until`]). A checkpoint syncs the database file, a stall
    /// of milliseconds in whichever write happened to fill the WAL's 1,000th page.
    pub fn leave_checkpoints_to_caller(&self) -> anyhow::Result<()> {
        self.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(())
    }

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

    fn get_in(
        conn: &Connection,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Option<StoredResource>, DirectoryError> {
        // Cached statements: every request runs the same few, and preparing one costs about
        // as much as running it.
        conn.prepare_cached(
            "SELECT id, version, created, modified, json FROM scim_resources WHERE kind = ?1 AND id = ?2",
        )
        .and_then(|mut stmt| {
            stmt.query_row(params![kind_name(kind), id], Self::row)
                .optional()
        })
        .map_err(db_err)
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
    /// member lookup ([`member_lookup`]) when it is a group's.
    fn candidates(
        &self,
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
        let mut stmt = self.conn.prepare_cached(&sql).map_err(db_err)?;
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
        Self::get_in(&self.conn, kind, id)
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
        if query.filter.is_none() && query.sort_by.is_none() {
            return self.plain_page(kind, search);
        }
        let member = query
            .filter
            .as_ref()
            .filter(|_| kind == ResourceKind::Group)
            .and_then(member_lookup);
        if let Some(page) = member
            .filter(|_| query.sort_by.is_none())
            .map(|v| self.exact_member_page(v, &query))
            .transpose()?
            .flatten()
        {
            return Ok(page);
        }
        // The SQL pre-filter only narrows the candidates (an indexed equality); the core's
        // `select` then filters, sorts and pages them, so host and guest share one
        // comparator (numbers as numbers, the primary value of a multi-valued attribute).
        let mut stored: Vec<StoredResource> = Vec::new();
        let mut views: Vec<Value> = Vec::new();
        for r in self.candidates(kind, query.filter.as_ref(), member)? {
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
        let external = value.get("externalId").and_then(Value::as_str);
        self.write(|tx| {
            Self::conflict_check(tx, kind, key.as_deref(), None)?;
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
            mirror(tx, &id, json, cms)?;
            Ok(StoredResource {
                id,
                version: "W/\"1\"".into(),
                created: now.clone(),
                last_modified: now,
                json: json.to_string(),
            })
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
        let value: Value = serde_json::from_str(json)
            .map_err(|e| DirectoryError::Other(format!("invalid JSON: {e}")))?;
        self.write(|tx| Self::replace_in(tx, kind, id, &value, json, cms, if_version))
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
                    if let Some(members) = g.get_mut("members").and_then(Value::as_array_mut) {
                        members.retain(|m| m.get("value").and_then(Value::as_str) != Some(id));
                    }
                    let text = g.to_string();
                    Self::replace_in(tx, ResourceKind::Group, &gid, &g, &text, None, None)?;
                }
            }
            Ok(n > 0)
        })
    }
}

impl SqliteDirectory {
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
        let current = Self::get_in(tx, kind, id)?.ok_or(DirectoryError::NotFound)?;
        if if_version.is_some_and(|v| v != current.version) {
            return Err(DirectoryError::VersionMismatch);
        }
        let key = unique_key(kind, value);
        Self::conflict_check(tx, kind, key.as_deref(), Some(id))?;
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
        Self::get_in(tx, kind, id)?.ok_or(DirectoryError::NotFound)
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

    /// The names (userName or displayName) of what a query finds, in its order.
    fn names(
        d: &mut SqliteDirectory,
        kind: ResourceKind,
        filter: Option<&str>,
        sort_by: &str,
        descending: bool,
    ) -> Vec<String> {
        let page = d
            .query(
                kind,
                &Search {
                    filter: filter.map(String::from),
                    start_index: 1,
                    count: 100,
                    sort_by: Some(sort_by.into()),
                    sort_descending: descending,
                },
            )
            .unwrap();
        let attr = match kind {
            ResourceKind::User => "userName",
            ResourceKind::Group => "displayName",
        };
        page.resources
            .into_iter()
            .map(|r| {
                let v: Value = serde_json::from_str(&r.json).unwrap();
                v[attr].as_str().unwrap().to_string()
            })
            .collect()
    }

    fn ids_sorted(d: &mut SqliteDirectory, sort_by: &str, descending: bool) -> Vec<String> {
        names(d, ResourceKind::User, None, sort_by, descending)
    }

    fn cms(name: &str) -> CmsUser {
        CmsUser {
            id: String::new(),
            fields: vec![("name".into(), FieldValue::Text(name.into()))],
            active: true,
        }
    }

    fn count(d: &SqliteDirectory, sql: &str) -> i64 {
        d.conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Two workers replacing one resource on the same `If-Match` version: exactly one wins,
    /// the other is told the version moved (412), every time. The version check and the
    /// write used to be separate statements, so both could pass the check and the older
    /// change could land last: a client whose request was cut off after forwarding sent the
    /// next change while the first was still being applied, and kept a stale value.
    #[test]
    fn concurrent_replaces_on_one_version_never_both_win() {
        let path = temp_db("race");
        let lock = Arc::new(Mutex::new(()));
        let mut first = SqliteDirectory::open_shared(&path, Arc::clone(&lock)).unwrap();
        let second = SqliteDirectory::open_shared(&path, Arc::clone(&lock)).unwrap();
        let id = first
            .create(
                ResourceKind::User,
                r#"{"userName":"race","title":"v0"}"#,
                None,
            )
            .unwrap()
            .id;
        let mut directories = [first, second];
        for round in 0..200 {
            let version = directories[0]
                .get(ResourceKind::User, &id)
                .unwrap()
                .unwrap()
                .version;
            let barrier = std::sync::Barrier::new(2);
            let outcomes: Vec<Result<StoredResource, DirectoryError>> =
                std::thread::scope(|scope| {
                    let handles: Vec<_> = directories
                        .iter_mut()
                        .enumerate()
                        .map(|(w, d)| {
                            let (barrier, id, version) = (&barrier, &id, &version);
                            scope.spawn(move || {
                                let json =
                                    format!(r#"{{"userName":"race","title":"r{round}w{w}"}}"#);
                                barrier.wait();
                                d.replace(ResourceKind::User, id, &json, None, Some(version))
                            })
                        })
                        .collect();
                    handles.into_iter().map(|h| h.join().unwrap()).collect()
                });
            let won = outcomes.iter().filter(|o| o.is_ok()).count();
            let refused = outcomes
                .iter()
                .filter(|o| matches!(o, Err(DirectoryError::VersionMismatch)))
                .count();
            assert_eq!((won, refused), (1, 1), "round {round}: {outcomes:?}");
        }
    }

    /// The names of the groups a filter finds.
    fn group_names(d: &mut SqliteDirectory, filter: &str) -> Vec<String> {
        names(d, ResourceKind::Group, Some(filter), "displayName", false)
    }

    fn group(name: &str, members: &[&str]) -> String {
        serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": name,
            "members": members.iter().map(|m| serde_json::json!({"value": m})).collect::<Vec<_>>(),
        })
        .to_string()
    }

    fn user_id(d: &mut SqliteDirectory, name: &str) -> String {
        let json = format!(
            r#"{{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"{name}"}}"#
        );
        d.create(ResourceKind::User, &json, None).unwrap().id
    }

    #[test]
    fn a_users_groups_are_found_through_the_membership_index() {
        let path = temp_db("members");
        let mut d = SqliteDirectory::open(&path).unwrap();
        let (ann, bob) = (user_id(&mut d, "ann"), user_id(&mut d, "bob"));
        let both = d
            .create(ResourceKind::Group, &group("both", &[&ann, &bob]), None)
            .unwrap();
        let only_bob = d
            .create(ResourceKind::Group, &group("only-bob", &[&bob]), None)
            .unwrap();
        d.create(ResourceKind::Group, &group("empty", &[]), None)
            .unwrap();
        let of = |id: &str| format!(r#"members[value eq "{id}"]"#);
        assert_eq!(group_names(&mut d, &of(&bob)), ["both", "only-bob"]);
        assert_eq!(group_names(&mut d, &of(&ann)), ["both"]);
        // The other form identity providers send.
        assert_eq!(
            group_names(&mut d, &format!(r#"members.value eq "{ann}""#)),
            ["both"]
        );
        assert!(group_names(&mut d, &of("nobody")).is_empty());
        // A replace moves the index with the members.
        d.replace(
            ResourceKind::Group,
            &both.id,
            &group("both", &[&ann]),
            None,
            None,
        )
        .unwrap();
        assert_eq!(group_names(&mut d, &of(&bob)), ["only-bob"]);
        d.delete(ResourceKind::Group, &only_bob.id).unwrap();
        assert!(group_names(&mut d, &of(&bob)).is_empty());
        // A deleted user leaves the groups they were in, and the index.
        assert!(d.delete(ResourceKind::User, &ann).unwrap());
        assert!(group_names(&mut d, &of(&ann)).is_empty());
        let stored = d.get(ResourceKind::Group, &both.id).unwrap().unwrap();
        assert!(!stored.json.contains(&ann), "{}", stored.json);
        assert_eq!(count(&d, "SELECT COUNT(*) FROM scim_group_members"), 0);
    }

    /// `members[value eq "<id>"]` unsorted (how the core reads a user's groups): paged from
    /// the index when every candidate holds the exact value, by the core's `select` when one
    /// holds a case variant; both give what the sorted query (always `select`) gives.
    #[test]
    fn a_member_lookup_is_paged_from_the_index_and_agrees_with_select() {
        let path = temp_db("members-exact");
        let mut d = SqliteDirectory::open(&path).unwrap();
        let ann = user_id(&mut d, "ann");
        let other = user_id(&mut d, "bob");
        for name in ["g1", "g2", "g3", "g4", "g5"] {
            d.create(ResourceKind::Group, &group(name, &[&ann]), None)
                .unwrap();
        }
        d.create(ResourceKind::Group, &group("bob's", &[&other]), None)
            .unwrap();
        let page = |d: &mut SqliteDirectory, value: &str, start_index: u32, count: u32| {
            let page = d
                .query(
                    ResourceKind::Group,
                    &Search {
                        filter: Some(format!(r#"members[value eq "{value}"]"#)),
                        start_index,
                        count,
                        sort_by: None,
                        sort_descending: false,
                    },
                )
                .unwrap();
            let names: Vec<String> = page
                .resources
                .iter()
                .map(|r| {
                    let v: Value = serde_json::from_str(&r.json).unwrap();
                    v["displayName"].as_str().unwrap().to_string()
                })
                .collect();
            (page.total_results, names)
        };
        assert_eq!(
            page(&mut d, &ann, 1, 100),
            (
                5,
                vec!["g1", "g2", "g3", "g4", "g5"]
                    .into_iter()
                    .map(String::from)
                    .collect()
            )
        );
        assert_eq!(
            page(&mut d, &ann, 2, 2),
            (5, vec!["g2".to_string(), "g3".to_string()])
        );
        assert_eq!(page(&mut d, &ann, 5, 10), (5, vec!["g5".to_string()]));
        assert_eq!(page(&mut d, &ann, 6, 10), (5, vec![]));
        assert_eq!(page(&mut d, &ann, 1, 0), (5, vec![]));
        assert_eq!(page(&mut d, "nobody", 1, 10), (0, vec![]));
        // A group holding a case variant of the value: not exact, so `select` decides, and
        // the unsorted and sorted queries agree on every lookup.
        let variant = ann.to_uppercase();
        d.create(ResourceKind::Group, &group("g0-variant", &[&variant]), None)
            .unwrap();
        for value in [ann.as_str(), variant.as_str()] {
            let (total, mut unsorted) = page(&mut d, value, 1, 100);
            let sorted = group_names(&mut d, &format!(r#"members[value eq "{value}"]"#));
            unsorted.sort();
            assert_eq!(unsorted, sorted, "{value}");
            assert_eq!(total as usize, sorted.len());
        }
    }

    #[test]
    fn a_database_without_the_membership_index_gets_one_filled_from_its_groups() {
        let path = temp_db("members-old");
        let mut d = SqliteDirectory::open(&path).unwrap();
        let ann = user_id(&mut d, "ann");
        d.create(ResourceKind::Group, &group("staff", &[&ann]), None)
            .unwrap();
        // As a database written before the index existed.
        d.conn
            .execute_batch("DROP TABLE scim_group_members")
            .unwrap();
        drop(d);
        let mut d = SqliteDirectory::open(&path).unwrap();
        // Upper case: the index is a superset of a case-insensitive match.
        let filter = format!(r#"members[value eq "{}"]"#, ann.to_uppercase());
        assert_eq!(group_names(&mut d, &filter), ["staff"]);
        assert_eq!(count(&d, "SELECT COUNT(*) FROM scim_group_members"), 1);

        // As a database written before `member_value`: the index is rebuilt with it.
        d.conn
            .execute_batch(
                "DROP TABLE scim_group_members;
                 CREATE TABLE scim_group_members (group_id TEXT NOT NULL, member_key TEXT NOT NULL,
                     PRIMARY KEY (group_id, member_key)) WITHOUT ROWID;
                 INSERT INTO scim_group_members SELECT id, 'stale' FROM scim_resources WHERE kind = 'Group';",
            )
            .unwrap();
        drop(d);
        let mut d = SqliteDirectory::open(&path).unwrap();
        let exact: String = d
            .conn
            .query_row("SELECT member_value FROM scim_group_members", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(exact, ann);
        assert_eq!(count(&d, "SELECT COUNT(*) FROM scim_group_members"), 1);
        assert_eq!(
            group_names(&mut d, &format!(r#"members[value eq "{ann}"]"#)),
            ["staff"]
        );
    }

    #[test]
    fn a_new_directory_file_has_small_pages_and_an_existing_one_keeps_its_own() {
        let page_size = |d: &SqliteDirectory| count(d, "PRAGMA page_size");
        let path = temp_db("pages-new");
        assert_eq!(page_size(&SqliteDirectory::open(&path).unwrap()), 1024);
        // A file the CMS store made first, with SQLite's default pages.
        let old = temp_db("pages-old");
        drop(Store::open(&old).unwrap());
        let mut d = SqliteDirectory::open(&old).unwrap();
        assert_eq!(page_size(&d), 4096);
        user_id(&mut d, "still-works");
    }

    /// A directory that leaves its checkpoints to the caller lets its WAL grow past the
    /// 1,000 pages at which SQLite would checkpoint inside a write (the data stays in the
    /// `-wal` file, the database file stays small); `checkpoint_until`, running beside it,
    /// copies the WAL into the database file.
    #[test]
    fn checkpoints_run_beside_the_writes_not_in_them() {
        let path = temp_db("checkpoint");
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        let size = |p: &std::ffi::OsStr| std::fs::metadata(p).map_or(0, |m| m.len());
        let mut d = SqliteDirectory::open(&path).unwrap();
        d.leave_checkpoints_to_caller().unwrap();
        let filler = "x".repeat(3000);
        for i in 0..1500 {
            let json = format!(r#"{{"userName":"u{i}","title":"{filler}"}}"#);
            d.create(ResourceKind::User, &json, None).unwrap();
        }
        let written = 1500 * 3000;
        assert!(size(wal.as_os_str()) > written, "the data is in the WAL");
        assert!(
            size(path.as_os_str()) < written / 4,
            "and not yet in the database"
        );
        // Stopped before it starts: it checkpoints once on the way out.
        let stop = std::sync::atomic::AtomicBool::new(true);
        checkpoint_until(&path, std::time::Duration::ZERO, &stop).unwrap();
        assert!(size(path.as_os_str()) > written, "the checkpoint copied it");
        assert_eq!(
            d.query(
                ResourceKind::User,
                &Search {
                    filter: None,
                    start_index: 1,
                    count: 0,
                    sort_by: None,
                    sort_descending: false,
                }
            )
            .unwrap()
            .total_results,
            1500
        );
    }

    /// A write is one transaction: when its CMS user cannot be written (the name is a CMS
    /// user's already, under another SCIM id), the SCIM resource is not left behind either;
    /// a deleted user leaves its groups in the same transaction.
    #[test]
    fn each_write_is_one_transaction() {
        let path = temp_db("tx");
        let mut d = SqliteDirectory::open(&path).unwrap();
        let mut store = Store::open(&path).unwrap();
        store
            .import_users([Ok(UserRecord {
                id: "cms-1".into(),
                name: "taken".into(),
                mail: String::new(),
                fields: serde_json::Map::new(),
                active: true,
            })])
            .unwrap();
        let err = d
            .create(
                ResourceKind::User,
                r#"{"userName":"fresh"}"#,
                Some(&cms("taken")),
            )
            .unwrap_err();
        assert!(
            matches!(err, DirectoryError::Other(ref m) if m.contains("taken")),
            "{err:?}"
        );
        assert_eq!(count(&d, "SELECT COUNT(*) FROM scim_resources"), 0);
        assert_eq!(count(&d, "SELECT COUNT(*) FROM users"), 1);

        let alice = d
            .create(
                ResourceKind::User,
                r#"{"userName":"alice"}"#,
                Some(&cms("alice")),
            )
            .unwrap();
        let group = format!(
            r#"{{"displayName":"staff","members":[{{"value":"{}"}}]}}"#,
            alice.id
        );
        let g = d.create(ResourceKind::Group, &group, None).unwrap();
        assert_eq!(count(&d, "SELECT COUNT(*) FROM users"), 2);
        assert!(d.delete(ResourceKind::User, &alice.id).unwrap());
        let g = d.get(ResourceKind::Group, &g.id).unwrap().unwrap();
        assert!(!g.json.contains(&alice.id), "{}", g.json);
        assert_eq!(g.version, "W/\"2\"");
        assert_eq!(count(&d, "SELECT COUNT(*) FROM users"), 1);
        assert!(!d.delete(ResourceKind::User, &alice.id).unwrap());
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
        // A page without filter or sort (paged in SQL) is the store's order.
        let page = d
            .query(
                ResourceKind::User,
                &Search {
                    filter: None,
                    start_index: 2,
                    count: 1,
                    sort_by: None,
                    sort_descending: false,
                },
            )
            .unwrap();
        assert_eq!(page.total_results, 3);
        assert_eq!(page.resources.len(), 1);
        assert!(page.resources[0].json.contains("\"ten\""));
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
