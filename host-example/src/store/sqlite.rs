//! The SQLite store: the embedded default, one file, one writer at a time (see
//! [`super::Store`]).

use std::path::Path;

use anyhow::{Context, bail};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;

use super::schema::{STORE_COMPONENT, STORE_MIGRATIONS};
use super::{
    LogEntry, OutboxEvent, StoredLink, UserRecord, decode_event, event_name, fields_from_json,
};
use crate::database::{Db, migrate};
use crate::types::{Link, UserEvent};

/// The SQLite store.
pub struct SqliteStore {
    pub(super) conn: Connection,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> anyhow::Result<SqliteStore> {
        let conn = crate::sqlite_page_cache::open(path)
            .with_context(|| format!("opening the store {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // The schema, created or brought up to date (`schema_version`, component `store`).
        let mut db = Db::Sqlite(conn);
        migrate(&mut db, STORE_COMPONENT, STORE_MIGRATIONS)?;
        let conn = db.into_sqlite().context("an SQLite connection")?;
        Ok(SqliteStore { conn })
    }

    /// The next free id. An id is never given out twice, not even after its user was
    /// deleted and deprovisioned: the id is the remote `externalId`, which the engine
    /// matches on, so a reused id would adopt the deleted user's remote account.
    fn next_user_id(tx: &Transaction<'_>) -> anyhow::Result<String> {
        let max_of = |sql: &str| -> anyhow::Result<i64> {
            Ok(tx
                .query_row(sql, [], |r| r.get::<_, Option<i64>>(0))?
                .unwrap_or(0))
        };
        let watermark: Option<i64> = tx
            .query_row(
                "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'last_user_id'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        // A store written before the watermark existed: every id ever used is in the log.
        let watermark = match watermark {
            Some(w) => w,
            None => max_of("SELECT MAX(CAST(user_id AS INTEGER)) FROM provisioning_log")?,
        };
        let max = max_of("SELECT MAX(CAST(id AS INTEGER)) FROM users")?
            .max(max_of("SELECT MAX(CAST(user_id AS INTEGER)) FROM links")?)
            .max(max_of("SELECT MAX(CAST(user_id AS INTEGER)) FROM outbox")?)
            .max(watermark);
        Ok((max + 1).to_string())
    }

    /// Raises the high-water mark of numeric ids given out (see [`Store::next_user_id`]).
    pub(crate) fn remember_user_id(tx: &Transaction<'_>, id: &str) -> anyhow::Result<()> {
        if let Ok(n) = id.parse::<i64>() {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('last_user_id', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = MAX(CAST(value AS INTEGER), ?1)",
                params![n],
            )?;
        }
        Ok(())
    }

    fn enqueue(tx: &Transaction<'_>, user: &UserRecord, event: UserEvent) -> anyhow::Result<()> {
        tx.execute(
            "INSERT INTO outbox (user_id, event, user_json) VALUES (?1, ?2, ?3)",
            params![user.id, event_name(event), user.to_json().to_string()],
        )?;
        Ok(())
    }

    pub(crate) fn write_user(tx: &Transaction<'_>, user: &UserRecord) -> anyhow::Result<()> {
        let fields = Value::Object(user.fields.clone()).to_string();
        tx.prepare_cached(
            "INSERT INTO users (id, name, mail, fields, active) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(id) DO UPDATE SET name = ?2, mail = ?3, fields = ?4, active = ?5",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![user.id, user.name, user.mail, fields, user.active])
        })
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                anyhow::anyhow!("a user named {:?} already exists", user.name)
            }
            other => other.into(),
        })?;
        Ok(())
    }

    /// Adds a user; with `provision`, records its `created` event in the same transaction.
    pub fn add_user(
        &mut self,
        mut user: UserRecord,
        provision: bool,
    ) -> anyhow::Result<UserRecord> {
        let tx = self.write_transaction()?;
        if user.id.is_empty() {
            user.id = Self::next_user_id(&tx)?;
        }
        Self::write_user(&tx, &user)?;
        Self::remember_user_id(&tx, &user.id)?;
        if provision {
            Self::enqueue(&tx, &user, UserEvent::Created)?;
        }
        tx.commit()?;
        Ok(user)
    }

    /// Imports many users in one transaction, without events (a site being set up; a sync
    /// provisions them). Returns how many were written.
    pub fn import_users(
        &mut self,
        users: impl IntoIterator<Item = anyhow::Result<UserRecord>>,
    ) -> anyhow::Result<usize> {
        let tx = self.write_transaction()?;
        let mut next: i64 = Self::next_user_id(&tx)?.parse().unwrap_or(1);
        let mut count = 0;
        for user in users {
            let mut user = user?;
            if user.id.is_empty() {
                user.id = next.to_string();
                next += 1;
            }
            Self::write_user(&tx, &user).with_context(|| format!("record {}", count + 1))?;
            Self::remember_user_id(&tx, &user.id)?;
            count += 1;
        }
        tx.commit()?;
        Ok(count)
    }

    /// Changes a user and records the event in the same transaction.
    pub fn change_user(
        &mut self,
        id: &str,
        event: UserEvent,
        change: impl FnOnce(&mut UserRecord),
    ) -> anyhow::Result<UserRecord> {
        let tx = self.write_transaction()?;
        let Some(mut user) = Self::load_user(&tx, id)? else {
            bail!("no user with id {id}");
        };
        change(&mut user);
        if event == UserEvent::Deleted {
            tx.execute("DELETE FROM users WHERE id = ?1", params![id])?;
        } else {
            Self::write_user(&tx, &user)?;
        }
        Self::enqueue(&tx, &user, event)?;
        tx.commit()?;
        Ok(user)
    }

    fn load_user(conn: &Connection, id: &str) -> anyhow::Result<Option<UserRecord>> {
        Ok(conn
            .query_row(
                "SELECT id, name, mail, fields, active FROM users WHERE id = ?1",
                params![id],
                row_to_user,
            )
            .optional()?)
    }

    /// A user by id.
    pub fn user(&self, id: &str) -> anyhow::Result<Option<UserRecord>> {
        Self::load_user(&self.conn, id)
    }

    /// Users whose id, name or email is `needle` (case-insensitive for name and email).
    pub fn find_users(&self, needle: &str) -> anyhow::Result<Vec<UserRecord>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, name, mail, fields, active FROM users
             WHERE id = ?1 OR name = ?1 COLLATE NOCASE OR mail = ?1 COLLATE NOCASE ORDER BY id",
        )?;
        let rows = stmt.query_map(params![needle], row_to_user)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every user, in id order.
    pub fn all_users(&self) -> anyhow::Result<Vec<UserRecord>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, name, mail, fields, active FROM users ORDER BY CAST(id AS INTEGER), id",
        )?;
        let rows = stmt.query_map([], row_to_user)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The number of users.
    pub fn user_count(&self) -> anyhow::Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?)
    }

    /// The stored link of a user.
    pub fn link(&self, user_id: &str) -> anyhow::Result<Option<StoredLink>> {
        Ok(self
            .conn
            .query_row(
                "SELECT remote_id, version, snapshot, fingerprint FROM links WHERE user_id = ?1",
                params![user_id],
                |r| {
                    Ok(StoredLink {
                        link: Link {
                            remote_id: r.get(0)?,
                            version: r.get(1)?,
                            snapshot: r.get(2)?,
                        },
                        fingerprint: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// Every link, keyed by CMS user id.
    pub fn all_links(&self) -> anyhow::Result<Vec<(String, StoredLink)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT user_id, remote_id, version, snapshot, fingerprint FROM links")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                StoredLink {
                    link: Link {
                        remote_id: r.get(1)?,
                        version: r.get(2)?,
                        snapshot: r.get(3)?,
                    },
                    fingerprint: r.get(4)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stores (or, with `None`, removes) a user's link.
    pub fn save_link(
        &mut self,
        user_id: &str,
        link: Option<&Link>,
        fingerprint: &str,
    ) -> anyhow::Result<()> {
        match link {
            Some(l) => self.conn.execute(
                "INSERT INTO links (user_id, remote_id, version, snapshot, fingerprint)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(user_id) DO UPDATE SET remote_id = ?2, version = ?3,
                     snapshot = ?4, fingerprint = ?5",
                params![user_id, l.remote_id, l.version, l.snapshot, fingerprint],
            )?,
            None => self
                .conn
                .execute("DELETE FROM links WHERE user_id = ?1", params![user_id])?,
        };
        Ok(())
    }

    /// Events that may be delivered now: the oldest unparked event of each user whose retry
    /// time has come, so one user's changes are never reordered while they are retried.
    /// A parked event holds no one up: the changes after it may mend what it could not
    /// (a corrected email, say), and the retry of a parked event sends the user as they
    /// are then, not its old values (see [`Store::requeue_parked`]), so nothing older can
    /// land after them. The PHP sample site does the same. With `ignore_schedule`, retry
    /// times are not waited for (a sync drains everything).
    pub fn due_events(
        &self,
        now_ms: i64,
        ignore_schedule: bool,
        limit: u32,
    ) -> anyhow::Result<Vec<OutboxEvent>> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, user_id, event, user_json, attempts, next_attempt_ms, last_error, parked
             FROM outbox o
             WHERE parked = 0 AND (?2 OR next_attempt_ms <= ?1)
               AND NOT EXISTS (SELECT 1 FROM outbox p
                               WHERE p.user_id = o.user_id AND p.seq < o.seq AND p.parked = 0)
             ORDER BY seq LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![now_ms, ignore_schedule, limit], row_to_event)?;
        let mut out = Vec::new();
        for row in rows {
            if let Some(e) = row? {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Every event still in the outbox, parked ones included.
    pub fn pending_events(&self) -> anyhow::Result<Vec<OutboxEvent>> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, user_id, event, user_json, attempts, next_attempt_ms, last_error, parked
             FROM outbox ORDER BY seq",
        )?;
        let rows = stmt.query_map([], row_to_event)?;
        let mut out = Vec::new();
        for row in rows {
            if let Some(e) = row? {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Removes a delivered event.
    pub fn complete_event(&mut self, seq: i64) -> anyhow::Result<()> {
        self.conn
            .execute("DELETE FROM outbox WHERE seq = ?1", params![seq])?;
        Ok(())
    }

    /// Records a failed attempt: retried at `next_attempt_ms`, or parked.
    pub fn fail_event(
        &mut self,
        seq: i64,
        attempts: u32,
        next_attempt_ms: i64,
        error: &str,
        park: bool,
    ) -> anyhow::Result<()> {
        self.conn.execute(
            "UPDATE outbox SET attempts = ?2, next_attempt_ms = ?3, last_error = ?4, parked = ?5
             WHERE seq = ?1",
            params![seq, attempts, next_attempt_ms, error, park],
        )?;
        Ok(())
    }

    /// Puts the users with parked events back in line, each as the one change they need
    /// now; returns how many users.
    ///
    /// A parked event holds the user as they were when it was queued. Since then, later
    /// events of the user may have been delivered, or a sync may have sent a newer state.
    /// Replaying it would write old values over newer ones. So each such user's events are
    /// replaced, in one transaction, by one event: a `reconcile` with the user as the CMS
    /// holds them now, or the `deleted` event with the last snapshot when the CMS no longer
    /// has them. A user whose last snapshot cannot be
    /// read (only a hand-edited database has one) keeps their events, still parked.
    pub fn requeue_parked(&mut self) -> anyhow::Result<usize> {
        let tx = self.write_transaction()?;
        let users: Vec<String> = {
            let mut stmt = tx.prepare(
                "SELECT user_id FROM outbox WHERE parked = 1 GROUP BY user_id ORDER BY MIN(seq)",
            )?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut requeued = 0;
        for id in &users {
            let change = match Self::load_user(&tx, id)? {
                Some(current) => Some((UserEvent::Reconcile, current)),
                None => {
                    let last: String = tx.query_row(
                        "SELECT user_json FROM outbox WHERE user_id = ?1 ORDER BY seq DESC LIMIT 1",
                        params![id],
                        |r| r.get(0),
                    )?;
                    serde_json::from_str::<Value>(&last)
                        .ok()
                        .as_ref()
                        .and_then(UserRecord::from_json)
                        .map(|last| (UserEvent::Deleted, last))
                }
            };
            let Some((event, user)) = change else {
                continue;
            };
            tx.execute("DELETE FROM outbox WHERE user_id = ?1", params![id])?;
            Self::enqueue(&tx, &user, event)?;
            requeued += 1;
        }
        tx.commit()?;
        Ok(requeued)
    }

    /// (pending, parked) counts.
    pub fn outbox_depth(&self) -> anyhow::Result<(u64, u64)> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) - COALESCE(SUM(parked), 0), COALESCE(SUM(parked), 0) FROM outbox",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    /// Appends to the provisioning log.
    pub fn append_log(&mut self, entry: &LogEntry) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT INTO provisioning_log (at, user_id, operation, http_status, outcome, error, duration_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                entry.at,
                entry.user_id,
                entry.operation,
                entry.http_status,
                entry.outcome,
                entry.error,
                i64::try_from(entry.duration_ms).unwrap_or(i64::MAX)
            ],
        )?;
        Ok(())
    }

    /// The newest log entries first, optionally for one user or failures only.
    pub fn log_entries(
        &self,
        user_id: Option<&str>,
        failed_only: bool,
        limit: u32,
    ) -> anyhow::Result<Vec<LogEntry>> {
        let mut stmt = self.conn.prepare(
            "SELECT at, user_id, operation, http_status, outcome, error, duration_ms
             FROM provisioning_log
             WHERE (?1 IS NULL OR user_id = ?1) AND (NOT ?2 OR outcome = 'failed')
             ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![user_id, failed_only, limit], |r| {
            Ok(LogEntry {
                at: r.get(0)?,
                user_id: r.get(1)?,
                operation: r.get(2)?,
                http_status: r.get(3)?,
                outcome: r.get(4)?,
                error: r.get(5)?,
                duration_ms: u64::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Reads a setting.
    pub fn meta(&self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Writes a setting.
    pub fn set_meta(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = ?2",
            params![key, value],
        )?;
        Ok(())
    }

    /// A transaction that takes the write lock at once, so a writer on another connection
    /// (a `serve` worker) makes it wait (`busy_timeout`) instead of failing it half-way,
    /// as a read-then-write deferred transaction would in WAL mode.
    fn write_transaction(&mut self) -> rusqlite::Result<Transaction<'_>> {
        self.conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
    }

    /// Removes a metadata value.
    pub fn delete_meta(&mut self, key: &str) -> anyhow::Result<()> {
        self.conn
            .execute("DELETE FROM meta WHERE key = ?1", params![key])?;
        Ok(())
    }
}

fn row_to_user(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    let fields: String = r.get(3)?;
    Ok(UserRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        mail: r.get(2)?,
        fields: fields_from_json(&fields),
        active: r.get(4)?,
    })
}

/// A row as an event; a row this version cannot read is skipped rather than trusted.
fn row_to_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<OutboxEvent>> {
    let event: String = r.get(2)?;
    let user_json: String = r.get(3)?;
    let Some((event, user)) = decode_event(&event, &user_json) else {
        return Ok(None);
    };
    Ok(Some(OutboxEvent {
        seq: r.get(0)?,
        user_id: r.get(1)?,
        event,
        user,
        attempts: r.get(4)?,
        next_attempt_ms: r.get(5)?,
        last_error: r.get(6)?,
        parked: r.get(7)?,
    }))
}
