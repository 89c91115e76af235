//! The store on a shared database (PostgreSQL or MariaDB): the same tables and behaviour as
//! the SQLite store, for any number of worker processes on one database.
//!
//! What differs is how the outbox is drained. Each worker *claims* the events it delivers
//! ([`SharedStore::claim_events`]): it sets a lease (`claimed_by`, `claimed_until`) on
//! them under `SELECT … FOR UPDATE SKIP LOCKED`, so two workers never take the same event,
//! and another worker takes them when the lease runs out (a worker that died). Order per
//! user comes from what may be claimed at all: only a user's oldest unparked event, and
//! only while no older event of theirs is still in the outbox (a leased one included). So
//! a user has at most one event in flight, on one worker, and their events go out in the
//! order they were queued.

use std::cell::RefCell;

use anyhow::{Context, bail};
use serde_json::Value;

use super::schema::{STORE_COMPONENT, STORE_MIGRATIONS};
use super::settle::{SettleOutcome, Settlement};
use super::{
    LogEntry, OutboxEvent, StoredLink, UserRecord, decode_event, event_name, fields_from_json,
};
use crate::database::{DatabaseUrl, Db, Dialect, Row, SqlValue, is_unique_violation, migrate};
use crate::types::{Link, UserEvent};

/// The store on PostgreSQL or MariaDB. Reads take `&self` like the SQLite store's, so the
/// connection sits in a `RefCell` (a store is used by one thread).
pub struct SharedStore {
    db: RefCell<Db>,
    /// True inside a transaction: an operation that makes its own (`add_user` …) then
    /// joins it instead of starting another (PostgreSQL would only warn, and the inner
    /// `COMMIT` would commit the outer transaction half-way).
    open_transaction: std::cell::Cell<bool>,
    url: DatabaseUrl,
    dialect: Dialect,
}

const USER_COLUMNS: &str = "id, name, mail, fields, active";
const EVENT_COLUMNS: &str =
    "seq, user_id, event, user_json, attempts, next_attempt_ms, last_error, parked";

impl SharedStore {
    /// Connects (waiting up to `wait` for a database that is starting) and brings the
    /// schema up to date.
    pub fn connect(url: &DatabaseUrl, wait: std::time::Duration) -> anyhow::Result<SharedStore> {
        let mut db = Db::connect_with_retry(url, wait)?;
        migrate(&mut db, STORE_COMPONENT, STORE_MIGRATIONS)
            .with_context(|| format!("the store's schema on {url}"))?;
        let dialect = db.dialect();
        Ok(SharedStore {
            db: RefCell::new(db),
            open_transaction: std::cell::Cell::new(false),
            url: url.clone(),
            dialect,
        })
    }

    /// Connects again after the connection was lost, waiting up to `wait`.
    pub fn reconnect(&mut self, wait: std::time::Duration) -> anyhow::Result<()> {
        let db = Db::connect_with_retry(&self.url, wait)?;
        *self.db.get_mut() = db;
        self.open_transaction.set(false);
        Ok(())
    }

    /// True while the connection answers.
    pub fn is_alive(&mut self) -> bool {
        self.db.get_mut().is_alive()
    }

    fn execute(&self, sql: &str, params: &[SqlValue]) -> anyhow::Result<u64> {
        self.db.borrow_mut().execute(sql, params)
    }

    fn query(&self, sql: &str, params: &[SqlValue]) -> anyhow::Result<Vec<Row>> {
        self.db.borrow_mut().query(sql, params)
    }

    fn query_opt(&self, sql: &str, params: &[SqlValue]) -> anyhow::Result<Option<Row>> {
        self.db.borrow_mut().query_opt(sql, params)
    }

    /// Starts a transaction (see [`super::Store::batch`]).
    pub(super) fn begin(&self) -> anyhow::Result<()> {
        self.db.borrow_mut().begin()?;
        self.open_transaction.set(true);
        Ok(())
    }

    /// Commits it.
    pub(super) fn commit(&self) -> anyhow::Result<()> {
        self.open_transaction.set(false);
        self.db.borrow_mut().commit()
    }

    /// Rolls it back.
    pub(super) fn rollback(&self) {
        self.open_transaction.set(false);
        self.db.borrow_mut().rollback();
    }

    /// Ends the transaction `result` came from: committed when it is `Ok`, rolled back
    /// (and the error returned) otherwise.
    fn commit_or_roll_back<T>(&self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        match result {
            Ok(v) => {
                self.commit()?;
                Ok(v)
            }
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    fn in_transaction<T>(&self, f: impl FnOnce(&Self) -> anyhow::Result<T>) -> anyhow::Result<T> {
        if self.open_transaction.get() {
            return f(self);
        }
        self.begin()?;
        self.commit_or_roll_back(f(self))
    }

    /// A numeric id's test, per dialect (ids may be any text; only numeric ones count
    /// towards the next id).
    fn max_numeric(&self, table_column: (&str, &str)) -> anyhow::Result<i64> {
        let (table, column) = table_column;
        let sql = match self.dialect {
            Dialect::Postgres => format!(
                "SELECT MAX(CASE WHEN {column} ~ '^[0-9]{{1,18}}$' THEN CAST({column} AS BIGINT) END) FROM {table}"
            ),
            _ => format!(
                "SELECT MAX(CASE WHEN {column} REGEXP '^[0-9]{{1,18}}$' THEN CAST({column} AS SIGNED) END) FROM {table}"
            ),
        };
        Ok(self
            .query_opt(&sql, &[])?
            .map(|r| r.opt_int(0))
            .transpose()?
            .flatten()
            .unwrap_or(0))
    }

    /// The next free id, never one given out before (see the SQLite store's): the
    /// high-water mark in `meta`, locked for the transaction so two workers adding users
    /// at once wait for each other.
    fn next_user_id(&self) -> anyhow::Result<String> {
        let watermark = self
            .query_opt(
                "SELECT value FROM meta WHERE \"key\" = 'last_user_id' FOR UPDATE",
                &[],
            )?
            .map(|r| r.text(0))
            .transpose()?
            .and_then(|v| v.parse::<i64>().ok());
        // Every id this store gives out or is given raises the mark in the same
        // transaction, so once it exists it is the answer; only a database written without
        // it (by hand, or by another program) needs the scan of every id.
        if let Some(watermark) = watermark {
            return Ok((watermark + 1).to_string());
        }
        let watermark = 0;
        let max = self
            .max_numeric(("users", "id"))?
            .max(self.max_numeric(("links", "user_id"))?)
            .max(self.max_numeric(("outbox", "user_id"))?)
            .max(watermark);
        Ok((max + 1).to_string())
    }

    fn remember_user_id(&self, id: &str) -> anyhow::Result<()> {
        let Ok(n) = id.parse::<i64>() else {
            return Ok(());
        };
        let current = self
            .query_opt(
                "SELECT value FROM meta WHERE \"key\" = 'last_user_id' FOR UPDATE",
                &[],
            )?
            .map(|r| r.text(0))
            .transpose()?;
        match current {
            Some(v) if v.parse::<i64>().unwrap_or(0) >= n => Ok(()),
            Some(_) => self
                .execute(
                    "UPDATE meta SET value = ? WHERE \"key\" = 'last_user_id'",
                    &[n.to_string().into()],
                )
                .map(|_| ()),
            None => self.set_meta("last_user_id", &n.to_string()),
        }
    }

    fn enqueue(&self, user: &UserRecord, event: UserEvent) -> anyhow::Result<()> {
        self.execute(
            "INSERT INTO outbox (user_id, event, user_json) VALUES (?, ?, ?)",
            &[
                user.id.as_str().into(),
                event_name(event).into(),
                user.to_json().to_string().into(),
            ],
        )?;
        Ok(())
    }

    /// Writes a user (insert or update by id); a name taken by another user is refused.
    fn write_user(&self, user: &UserRecord) -> anyhow::Result<()> {
        let fields = Value::Object(user.fields.clone()).to_string();
        let exists = self
            .query_opt(
                "SELECT 1 FROM users WHERE id = ? FOR UPDATE",
                &[user.id.as_str().into()],
            )?
            .is_some();
        let result = if exists {
            self.execute(
                "UPDATE users SET name = ?, mail = ?, fields = ?, active = ? WHERE id = ?",
                &[
                    user.name.as_str().into(),
                    user.mail.as_str().into(),
                    fields.into(),
                    user.active.into(),
                    user.id.as_str().into(),
                ],
            )
        } else {
            self.execute(
                "INSERT INTO users (id, name, mail, fields, active) VALUES (?, ?, ?, ?, ?)",
                &[
                    user.id.as_str().into(),
                    user.name.as_str().into(),
                    user.mail.as_str().into(),
                    fields.into(),
                    user.active.into(),
                ],
            )
        };
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                bail!("a user named {:?} already exists", user.name)
            }
            Err(e) => Err(e),
        }
    }

    /// Adds a user; with `provision`, records its `created` event in the same transaction.
    pub fn add_user(
        &mut self,
        mut user: UserRecord,
        provision: bool,
    ) -> anyhow::Result<UserRecord> {
        self.in_transaction(|s| {
            if user.id.is_empty() {
                user.id = s.next_user_id()?;
            } else {
                // An id given again after its user was deleted (generated ids never are):
                // `requeue_parked` of the old user takes the same lock on the id before it
                // reads the user, so the two go one after the other. Otherwise a requeue
                // that did not see this uncommitted user queued the old user's `deleted`
                // event after this `created` one (on PostgreSQL, where a read does not
                // wait for an uncommitted row), and the new user's account was deleted on
                // the server. See [`SharedStore::lock_user_id`] for why it is not a lock
                // on the old user's queued events.
                s.lock_user_id(&user.id)?;
            }
            s.write_user(&user)?;
            s.remember_user_id(&user.id)?;
            if provision {
                s.enqueue(&user, UserEvent::Created)?;
            }
            Ok(())
        })?;
        Ok(user)
    }

    /// Imports many users in one transaction, without events.
    pub fn import_users(
        &mut self,
        users: impl IntoIterator<Item = anyhow::Result<UserRecord>>,
    ) -> anyhow::Result<usize> {
        self.in_transaction(|s| {
            let mut next: i64 = s.next_user_id()?.parse().unwrap_or(1);
            let mut count = 0;
            let mut highest = 0;
            for user in users {
                let mut user = user?;
                if user.id.is_empty() {
                    user.id = next.to_string();
                    next += 1;
                }
                s.write_user(&user)
                    .with_context(|| format!("record {}", count + 1))?;
                highest = highest.max(user.id.parse::<i64>().unwrap_or(0));
                count += 1;
            }
            if highest > 0 {
                s.remember_user_id(&highest.to_string())?;
            }
            Ok(count)
        })
    }

    /// Changes a user and records the event in the same transaction. The user's row is
    /// locked first, so two changes of one user are queued in the order they commit.
    pub fn change_user(
        &mut self,
        id: &str,
        event: UserEvent,
        change: impl FnOnce(&mut UserRecord),
    ) -> anyhow::Result<UserRecord> {
        self.in_transaction(|s| {
            let Some(row) = s.query_opt(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ? FOR UPDATE"),
                &[id.into()],
            )?
            else {
                bail!("no user with id {id}");
            };
            let mut user = row_to_user(&row)?;
            change(&mut user);
            if event == UserEvent::Deleted {
                s.execute("DELETE FROM users WHERE id = ?", &[id.into()])?;
            } else {
                s.write_user(&user)?;
            }
            s.enqueue(&user, event)?;
            Ok(user)
        })
    }

    /// A user by id.
    pub fn user(&self, id: &str) -> anyhow::Result<Option<UserRecord>> {
        self.query_opt(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"),
            &[id.into()],
        )?
        .map(|r| row_to_user(&r))
        .transpose()
    }

    /// Users whose id, name or email is `needle` (case-insensitive for name and email).
    pub fn find_users(&self, needle: &str) -> anyhow::Result<Vec<UserRecord>> {
        let sql = match self.dialect {
            Dialect::Postgres => format!(
                "SELECT {USER_COLUMNS} FROM users
                 WHERE id = ? OR lower(name) = lower(?) OR lower(mail) = lower(?) ORDER BY id"
            ),
            // name and mail are in a case-insensitive collation.
            _ => format!(
                "SELECT {USER_COLUMNS} FROM users WHERE id = ? OR name = ? OR mail = ? ORDER BY id"
            ),
        };
        self.query(&sql, &[needle.into(), needle.into(), needle.into()])?
            .iter()
            .map(row_to_user)
            .collect()
    }

    /// Every user, numeric ids in numeric order.
    pub fn all_users(&self) -> anyhow::Result<Vec<UserRecord>> {
        let mut users: Vec<UserRecord> = self
            .query(&format!("SELECT {USER_COLUMNS} FROM users"), &[])?
            .iter()
            .map(row_to_user)
            .collect::<anyhow::Result<_>>()?;
        // SQLite's `ORDER BY CAST(id AS INTEGER), id`: text ids (0) first, then numbers.
        users.sort_by(|a, b| {
            let key = |u: &UserRecord| u.id.parse::<i64>().unwrap_or(0);
            key(a).cmp(&key(b)).then_with(|| a.id.cmp(&b.id))
        });
        Ok(users)
    }

    /// The number of users.
    pub fn user_count(&self) -> anyhow::Result<u64> {
        let row = self.query_opt("SELECT COUNT(*) FROM users", &[])?;
        Ok(u64::try_from(row.map(|r| r.int(0)).transpose()?.unwrap_or(0)).unwrap_or(0))
    }

    /// The stored link of a user.
    pub fn link(&self, user_id: &str) -> anyhow::Result<Option<StoredLink>> {
        self.query_opt(
            "SELECT remote_id, version, snapshot, fingerprint FROM links WHERE user_id = ?",
            &[user_id.into()],
        )?
        .map(|r| link_of(&r, 0))
        .transpose()
    }

    /// Every link, keyed by CMS user id.
    pub fn all_links(&self) -> anyhow::Result<Vec<(String, StoredLink)>> {
        self.query(
            "SELECT user_id, remote_id, version, snapshot, fingerprint FROM links",
            &[],
        )?
        .iter()
        .map(|r| Ok((r.text(0)?, link_of(r, 1)?)))
        .collect()
    }

    /// Stores (or, with `None`, removes) a user's link.
    pub fn save_link(
        &mut self,
        user_id: &str,
        link: Option<&Link>,
        fingerprint: &str,
    ) -> anyhow::Result<()> {
        let Some(l) = link else {
            self.execute("DELETE FROM links WHERE user_id = ?", &[user_id.into()])?;
            return Ok(());
        };
        let sql = match self.dialect {
            Dialect::Postgres => {
                "INSERT INTO links (user_id, remote_id, version, snapshot, fingerprint)
                 VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (user_id) DO UPDATE SET remote_id = EXCLUDED.remote_id,
                     version = EXCLUDED.version, snapshot = EXCLUDED.snapshot,
                     fingerprint = EXCLUDED.fingerprint"
            }
            _ => {
                "INSERT INTO links (user_id, remote_id, version, snapshot, fingerprint)
                 VALUES (?, ?, ?, ?, ?)
                 ON DUPLICATE KEY UPDATE remote_id = VALUES(remote_id), version = VALUES(version),
                     snapshot = VALUES(snapshot), fingerprint = VALUES(fingerprint)"
            }
        };
        self.execute(
            sql,
            &[
                user_id.into(),
                l.remote_id.as_str().into(),
                l.version.clone().into(),
                l.snapshot.clone().into(),
                fingerprint.into(),
            ],
        )?;
        Ok(())
    }

    /// Events that may be delivered now, as the SQLite store gives them (a read: nothing
    /// is claimed; the delivery of a worker uses [`SharedStore::claim_events`]).
    pub fn due_events(
        &self,
        now_ms: i64,
        ignore_schedule: bool,
        limit: u32,
    ) -> anyhow::Result<Vec<OutboxEvent>> {
        let schedule = if ignore_schedule {
            ""
        } else {
            "AND o.next_attempt_ms <= ?"
        };
        let mut params: Vec<SqlValue> = Vec::new();
        if !ignore_schedule {
            params.push(now_ms.into());
        }
        params.push(limit.into());
        let rows = self.query(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM outbox o
                 WHERE o.parked = 0 {schedule}
                   AND NOT EXISTS (SELECT 1 FROM outbox p
                                   WHERE p.user_id = o.user_id AND p.seq < o.seq AND p.parked = 0)
                 ORDER BY o.seq LIMIT ?"
            ),
            &params,
        )?;
        rows_to_events(&rows)
    }

    /// Claims up to `limit` events for `worker` until `now_ms + lease_ms`: each the oldest
    /// unparked event of its user, due, not leased by a live worker, and with no older
    /// event of its user still in the outbox (a leased one included). Returns them in
    /// queue order.
    ///
    /// Why the rule keeps each user's order: the candidates are read as of one snapshot,
    /// which may be stale by the time a row is locked, but only in the safe direction. An
    /// older event of a user can only disappear (be delivered or parked), and a newer one
    /// always has a higher `seq` *and commits later*: every write that queues an event
    /// first locks the user's row (`change_user` and `requeue_parked` take it `FOR
    /// UPDATE`, `add_user` inserts it), so two transactions queueing for one user commit
    /// in the order they took their ids, and a snapshot that sees an event sees every
    /// older event of its user.
    ///
    /// - **PostgreSQL**: one statement. The candidates are locked with `FOR UPDATE OF o
    ///   SKIP LOCKED` (rows another worker is claiming this instant are passed over, not
    ///   waited for; a row another worker claimed since the snapshot is re-checked on its
    ///   newest version and dropped) and leased by the `UPDATE` around them. Locking does
    ///   not reach into the `NOT EXISTS`, so an older event another worker holds still
    ///   blocks its user's next one.
    ///
    ///   The statement is written so that its plan cannot depend on the outbox's
    ///   statistics. An outbox that bursts and drains is mostly analyzed while empty
    ///   (`reltuples` 0 while its pages, 30,000 after 100,000 events, stay), and the
    ///   planner then counts every scan of it as one row: it planned the order check as
    ///   a walk of the whole `outbox_user` index for each candidate, and the `UPDATE` as
    ///   a walk of the whole primary key, so one claim of a 100,000-event burst ran for
    ///   minutes, holding the row locks it had taken, and the other workers' settles
    ///   waited on them (`bench --claims … --claims-empty delete`). Now the order check is
    ///   a subquery of its own (`OFFSET 0` keeps it from becoming a join) whose only
    ///   usable index is `outbox_user`, by the row comparison that the primary key
    ///   cannot serve; the candidates are read by the primary key (the one way to read
    ///   them in order with sorting off); and the `UPDATE` finds the locked rows by
    ///   `ctid` (a TID scan). A row whose newest version committed after the statement
    ///   began is locked but not leased by the `UPDATE` (its snapshot does not see that
    ///   version): it stays claimable. And the claim has a [`CLAIM_TIMEOUT`].
    /// - **MariaDB**: a locking read there would also skip a locked older row inside the
    ///   `NOT EXISTS` and take a newer event of its user. So a plain read picks the
    ///   candidates (the oldest of one bucket of users, so that workers claiming at once
    ///   want different rows), and one `UPDATE` leases those still unleased and unchanged,
    ///   rechecking each on its newest committed version (see
    ///   [`SharedStore::claim_on_mariadb`]).
    pub fn claim_events(
        &mut self,
        worker: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> anyhow::Result<Vec<OutboxEvent>> {
        let until = now_ms.saturating_add(lease_ms);
        if self.dialect == Dialect::Postgres {
            let mut rows = self.with_queue_plan_and(CLAIM_TIMEOUT, |s| {
                s.query(
                    &pg_claim_sql(),
                    &[
                        now_ms.into(),
                        now_ms.into(),
                        limit.into(),
                        worker.into(),
                        until.into(),
                    ],
                )
            })?;
            rows.sort_by_key(|r| r.int(0).unwrap_or(i64::MAX));
            return rows_to_events(&rows);
        }
        let mut attempt = 1;
        loop {
            match self.claim_on_mariadb(worker, now_ms, until, limit) {
                // A claim waits for rows another statement holds (see below); a deadlock
                // with one that locks in another order (`requeue_parked` by user) is
                // rolled back by the server, and the claim is simply made again.
                Err(e) if attempt < CLAIM_ATTEMPTS && super::settle::is_conflict(&e) => {
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// MariaDB's claim (see [`SharedStore::claim_events`]): two statements as a rule, and
    /// no transaction of its own.
    ///
    /// 1. A plain read of the first `limit` claimable events of one *bucket* of users
    ///    (`CRC32(user_id) % CLAIM_BUCKETS`, the bucket drawn at random for each claim),
    ///    whole, in queue order ([`SharedStore::mariadb_bucket_events`]). Workers
    ///    claiming at once mostly read different buckets, so they want different rows and
    ///    each leases the whole batch it asks for. (When all read one head of the queue,
    ///    of which each wanted a random half, four workers leased about 60 of the 100
    ///    they asked for, and read twice as many candidates as they leased.) A user's
    ///    events are all in one bucket, and each bucket is read oldest first, so per-user
    ///    order and the rule of what may be claimed are those of the whole queue.
    /// 2. One `UPDATE` leases those still unleased and unchanged since they were read
    ///    ([`SharedStore::lease_as_read`]). It rechecks each row on its newest committed
    ///    version, and a row another worker is leasing this instant is waited for (the
    ///    other's claim is one short statement too), then found leased and left. It locks
    ///    by key in ascending order, as every claim does, so claims never deadlock with
    ///    one another. When it leased every row read, the rows read are the batch.
    ///
    /// Otherwise a third statement reads the rows now leased to this worker until `until`.
    /// That is when the bucket had fewer than `limit` claimable events (a short queue, or
    /// a bucket whose users wait behind events in flight: the rest are then picked from
    /// the whole queue's first `2 × limit` claimable events, at random, so nothing waits
    /// on a bucket being drawn and a short queue drains at once), or when another claim
    /// took some of the rows first. A claim that leased nothing because another took all
    /// it picked draws another bucket ([`CLAIM_BUCKET_TRIES`] in all), rather than return
    /// an empty batch from a queue that is not empty.
    ///
    /// The earlier claims: a transaction (a `SELECT … FOR UPDATE SKIP LOCKED` of the
    /// candidates, then the `UPDATE`) cost five round trips and a commit of its own; with
    /// four workers on two cores the claims were a third of the database's work. Then
    /// three statements, each claim reading the queue's first 200 claimable events and
    /// leasing a random 100 of them (figures in `docs/architecture.md`, "What the queue
    /// costs").
    fn claim_on_mariadb(
        &self,
        worker: &str,
        now_ms: i64,
        until: i64,
        limit: u32,
    ) -> anyhow::Result<Vec<OutboxEvent>> {
        let mut draw = ClaimDraw::new(worker, now_ms);
        let mut picked = Vec::new();
        let mut leased = 0;
        for _ in 0..CLAIM_BUCKET_TRIES {
            let bucket = draw.below(CLAIM_BUCKETS);
            let rows = self.mariadb_bucket_events(now_ms, bucket, limit)?;
            if rows.len() == limit as usize {
                let mut read = Vec::with_capacity(rows.len());
                for r in &rows {
                    read.push((r.int(0)?, r.int(4)?));
                }
                leased = self.lease_as_read(worker, now_ms, until, &read)?;
                if leased == read.len() as u64 {
                    return rows_to_events(&rows);
                }
                picked = padded(read.iter().map(|(seq, _)| *seq).collect());
            } else {
                picked = rows
                    .iter()
                    .map(|r| r.int(0))
                    .collect::<anyhow::Result<_>>()?;
                let head = self.mariadb_head(now_ms, limit.saturating_mul(2))?;
                let others: Vec<i64> = head.into_iter().filter(|s| !picked.contains(s)).collect();
                let wanted = limit as usize - picked.len();
                picked.extend(pick(others, wanted, &mut draw));
                if picked.is_empty() {
                    return Ok(Vec::new());
                }
                picked.sort_unstable();
                picked = padded(picked);
                leased = self.lease(worker, now_ms, until, &picked, None)?;
            }
            if leased > 0 {
                break;
            }
        }
        if leased == 0 {
            return Ok(Vec::new());
        }
        let mut params = ints(&picked);
        params.extend([worker.into(), until.into()]);
        let rows = self.query(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM outbox FORCE INDEX (PRIMARY)
                 WHERE seq IN ({}) AND claimed_by = ? AND claimed_until = ?
                 ORDER BY seq",
                marks(picked.len())
            ),
            &params,
        )?;
        rows_to_events(&rows)
    }

    /// MariaDB: the first `limit` claimable events of the users in `bucket` of
    /// [`CLAIM_BUCKETS`], whole ([`EVENT_COLUMNS`]), in queue order.
    ///
    /// Read in key order, and each candidate's older events by the user's index, whatever
    /// the optimizer's statistics say (see [`SharedStore::mariadb_head`]). The bucket's
    /// test comes before the order check, so a row of another bucket costs no look-up
    /// (four workers: 5.3 `Handler_read_key` per event claimed and settled, against 8.7
    /// when each claim checked the order of 200 candidates; the price is the rows of
    /// other buckets stepped over, about 8 `Handler_read_next` per event more). The read
    /// examines at most [`BUCKET_ROWS_EXAMINED`] rows per event asked for (`LIMIT ROWS
    /// EXAMINED`), so a bucket whose users all wait behind events in flight is not read
    /// to the end of a long queue; cut short, it returns what it found or (MariaDB
    /// 10.11, with this `ORDER BY`) nothing, and the claim goes on to the whole queue's
    /// head.
    pub(super) fn mariadb_bucket_events(
        &self,
        now_ms: i64,
        bucket: u32,
        limit: u32,
    ) -> anyhow::Result<Vec<Row>> {
        self.query(
            &format!(
                "SET STATEMENT optimizer_switch = 'subquery_cache=off' FOR
                 SELECT {} FROM outbox o FORCE INDEX (PRIMARY)
                 WHERE o.parked = 0 AND o.next_attempt_ms <= ?
                   AND (o.claimed_until IS NULL OR o.claimed_until < ?)
                   AND CRC32(o.user_id) % ? = ?
                   AND NOT EXISTS (SELECT 1 FROM outbox p FORCE INDEX (outbox_user)
                                   WHERE p.user_id = o.user_id AND p.seq < o.seq AND p.parked = 0)
                 ORDER BY o.seq LIMIT ? ROWS EXAMINED {}",
                qualified_event_columns("o"),
                u64::from(limit).saturating_mul(BUCKET_ROWS_EXAMINED)
            ),
            &[
                now_ms.into(),
                now_ms.into(),
                CLAIM_BUCKETS.into(),
                bucket.into(),
                limit.into(),
            ],
        )
    }

    /// MariaDB: leases the events `read` (`(seq, attempts)`, in key order) that are still
    /// claimable and unchanged since they were read; returns how many it leased.
    ///
    /// `attempts` stands for the row's content. The one change made to a queued event in
    /// place is a failed delivery's settle (`settle`, `fail_event`), which raises it, with
    /// the retry time, the error and the parking; `event` and `user_json` are never
    /// rewritten (a `retry` deletes a user's events and queues a new one, under a new
    /// key). So a row leased here is the row that was read: a worker whose lease had run
    /// out may still record a failure of the same event between the read and this
    /// `UPDATE`, due again at once after a `Retry-After: 0`, and that row is then left to
    /// the claim's read of what it leased, or to the next claim.
    pub(super) fn lease_as_read(
        &self,
        worker: &str,
        now_ms: i64,
        until: i64,
        read: &[(i64, i64)],
    ) -> anyhow::Result<u64> {
        // Padded as `padded` pads keys (a repeated pair changes nothing).
        let seqs = padded(read.iter().map(|(seq, _)| *seq).collect());
        let attempts = padded(read.iter().map(|(_, attempts)| *attempts).collect());
        self.lease(worker, now_ms, until, &seqs, Some(&attempts))
    }

    /// MariaDB: leases the events `seqs` (in key order, so claims lock alike and never
    /// deadlock one another) that are still claimable, rechecked on each row's newest
    /// committed version; with `attempts` (one a key), only those still at that count
    /// (see [`SharedStore::lease_as_read`]). Returns how many it leased.
    fn lease(
        &self,
        worker: &str,
        now_ms: i64,
        until: i64,
        seqs: &[i64],
        attempts: Option<&[i64]>,
    ) -> anyhow::Result<u64> {
        let mut params: Vec<SqlValue> = vec![worker.into(), until.into()];
        params.extend(ints(seqs));
        params.extend([now_ms.into(), now_ms.into()]);
        let unchanged = match attempts {
            Some(attempts) => {
                for (seq, attempts) in seqs.iter().zip(attempts) {
                    params.extend([SqlValue::from(*seq), SqlValue::from(*attempts)]);
                }
                format!(
                    " AND (seq, attempts) IN ({})",
                    rows_of(seqs.len(), "(?, ?)")
                )
            }
            None => String::new(),
        };
        self.execute(
            &format!(
                "UPDATE outbox FORCE INDEX (PRIMARY) SET claimed_by = ?, claimed_until = ?
                 WHERE seq IN ({}) AND parked = 0 AND next_attempt_ms <= ?
                   AND (claimed_until IS NULL OR claimed_until < ?){unchanged}",
                marks(seqs.len())
            ),
            &params,
        )
    }

    /// MariaDB: the keys of the whole queue's first `limit` claimable events.
    ///
    /// The queue's head is read in key order, and each candidate's older events by the
    /// user's index, whatever the optimizer's statistics say: with statistics that lag
    /// behind a burst of events (a new table still counted empty) it scanned the whole
    /// table for every candidate's older events (970 events/s instead of 19,000). Without
    /// the subquery cache: each candidate's older events are looked up once anyway (its
    /// key is the candidate's own), so the cache only cost a temporary table (300 reads of
    /// 200 candidates: 0.27 s with it, 0.18 s without).
    fn mariadb_head(&self, now_ms: i64, limit: u32) -> anyhow::Result<Vec<i64>> {
        self.query(
            "SET STATEMENT optimizer_switch = 'subquery_cache=off' FOR
             SELECT o.seq FROM outbox o FORCE INDEX (PRIMARY)
             WHERE o.parked = 0 AND o.next_attempt_ms <= ?
               AND (o.claimed_until IS NULL OR o.claimed_until < ?)
               AND NOT EXISTS (SELECT 1 FROM outbox p FORCE INDEX (outbox_user)
                               WHERE p.user_id = o.user_id AND p.seq < o.seq AND p.parked = 0)
             ORDER BY o.seq LIMIT ?",
            &[now_ms.into(), now_ms.into(), limit.into()],
        )?
        .iter()
        .map(|r| r.int(0))
        .collect()
    }

    /// Runs `f` in a transaction (the caller's, or one of its own) with PostgreSQL's
    /// planner held to the plans a queue needs: the outbox read in key order (no sort),
    /// and each row's older events looked up by index (no hash or merge join, no
    /// sequential scan). The planner otherwise picks from the outbox's statistics, and an
    /// outbox is mostly empty, or mostly leased, when they are taken: after a burst it
    /// then estimated one claimable row and read and sorted the whole outbox for every
    /// claim (130–160 ms a claim at 20,000 rows instead of about 1 ms; the queue fell to
    /// 700–1,600 events/s, later runs worse than earlier ones). `SET LOCAL` ends with the
    /// transaction, so the store's other statements plan as usual. JIT is off too: with
    /// sorting and the other ways off, a claim's estimated cost (131 million at 100,000
    /// events, for a statement that runs in 8 ms) is far past `jit_above_cost`, and
    /// compiling it took 800 ms of every claim.
    fn with_queue_plan<T>(&self, f: impl FnOnce(&Self) -> anyhow::Result<T>) -> anyhow::Result<T> {
        self.with_queue_plan_and("", f)
    }

    /// [`SharedStore::with_queue_plan`] with more `SET LOCAL` settings (`extra`, empty or
    /// ending in `;`) sent in the same round trip.
    fn with_queue_plan_and<T>(
        &self,
        extra: &str,
        f: impl FnOnce(&Self) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        if self.dialect != Dialect::Postgres {
            return self.in_transaction(f);
        }
        if self.open_transaction.get() {
            self.db
                .borrow_mut()
                .batch_execute(&format!("{extra} {QUEUE_PLAN}"))?;
            return f(self);
        }
        // BEGIN and the settings in one round trip.
        self.db
            .borrow_mut()
            .batch_execute(&format!("BEGIN; {extra} {QUEUE_PLAN}"))?;
        self.open_transaction.set(true);
        self.commit_or_roll_back(f(self))
    }

    /// Extends `worker`'s lease on `seqs` to `now_ms + lease_ms`; returns those it still
    /// holds (see [`super::LeaseKeeper`]).
    pub fn extend_claims(
        &mut self,
        worker: &str,
        seqs: &[i64],
        now_ms: i64,
        lease_ms: i64,
    ) -> anyhow::Result<Vec<i64>> {
        extend_claims_on(self.db.get_mut(), worker, seqs, now_ms, lease_ms)
    }

    /// Records a batch's outcomes (see [`super::Store::settle`]) with a constant number of
    /// statements, in one transaction: the rows still this worker's (or no worker's) are
    /// locked, then deleted (delivered) or given their retry (failed) in one statement
    /// each, the links of the delivered ones upserted (and those of deleted users removed)
    /// in one statement each, and their log lines inserted in one. Returns what it settled.
    pub fn settle(&mut self, worker: &str, items: &[Settlement]) -> anyhow::Result<Vec<i64>> {
        self.with_queue_plan(|s| {
            let mut settled = Vec::with_capacity(items.len());
            for chunk in items.chunks(SETTLE_ROWS) {
                settled.extend(s.settle_chunk(worker, chunk)?);
            }
            Ok(settled)
        })
    }

    fn settle_chunk(&self, worker: &str, items: &[Settlement]) -> anyhow::Result<Vec<i64>> {
        let seqs = padded(items.iter().map(|i| i.seq).collect());
        let mut params = ints(&seqs);
        params.push(worker.into());
        let held: std::collections::HashSet<i64> = self
            .query(
                &format!(
                    "SELECT seq FROM outbox{} WHERE seq IN ({})
                       AND (claimed_by = ? OR claimed_by IS NULL)
                     ORDER BY seq FOR UPDATE",
                    by_key(self.dialect),
                    marks(seqs.len())
                ),
                &params,
            )?
            .iter()
            .map(|r| r.int(0))
            .collect::<anyhow::Result<_>>()?;
        let items: Vec<&Settlement> = items.iter().filter(|i| held.contains(&i.seq)).collect();
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut delivered: Vec<i64> = Vec::new();
        // One link per user (the batch's later event wins), as a multi-row upsert may not
        // touch one row twice.
        let mut links: std::collections::BTreeMap<&str, (&Link, &str)> = Default::default();
        let mut unlinked: Vec<&str> = Vec::new();
        let mut failed: Vec<SqlValue> = Vec::new();
        let mut failed_rows = 0;
        let mut failed_seqs: Vec<i64> = Vec::new();
        for item in &items {
            match &item.outcome {
                SettleOutcome::Delivered { link, fingerprint } => {
                    delivered.push(item.seq);
                    match link {
                        Some(l) => {
                            unlinked.retain(|u| *u != item.user_id);
                            links.insert(&item.user_id, (l, fingerprint));
                        }
                        None => {
                            links.remove(item.user_id.as_str());
                            unlinked.push(&item.user_id);
                        }
                    }
                }
                SettleOutcome::Failed {
                    attempts,
                    next_attempt_ms,
                    error,
                    park,
                } => {
                    failed.extend([
                        item.seq.into(),
                        (*attempts).into(),
                        (*next_attempt_ms).into(),
                        error.as_str().into(),
                        (*park).into(),
                    ]);
                    failed_seqs.push(item.seq);
                    failed_rows += 1;
                }
            }
        }
        if !delivered.is_empty() {
            let delivered = padded(delivered);
            let sql = match self.dialect {
                Dialect::Postgres => format!(
                    "DELETE FROM outbox WHERE ctid = ANY ({})",
                    pg_rows_by_key(&marks(delivered.len()))
                ),
                _ => format!(
                    "DELETE o FROM ({}) v STRAIGHT_JOIN outbox o FORCE INDEX (PRIMARY) ON o.seq = v.seq",
                    key_table("seq", delivered.len())
                ),
            };
            self.execute(&sql, &ints(&delivered))?;
        }
        if failed_rows > 0 {
            let sql = match self.dialect {
                Dialect::Postgres => format!(
                    "UPDATE outbox SET attempts = v.attempts, next_attempt_ms = v.next_ms,
                         last_error = v.err, parked = v.parked,
                         claimed_by = NULL, claimed_until = NULL
                     FROM (VALUES {}) AS v (seq, attempts, next_ms, err, parked)
                     WHERE outbox.ctid = ANY ({}) AND outbox.seq + 0 = v.seq",
                    rows_of(
                        failed_rows,
                        "(CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS BIGINT))"
                    ),
                    pg_rows_by_key(&marks(failed_rows))
                ),
                _ => format!(
                    "UPDATE (SELECT ? AS seq, ? AS attempts, ? AS next_ms, ? AS err, ? AS parked{}) v
                       STRAIGHT_JOIN outbox o FORCE INDEX (PRIMARY) ON o.seq = v.seq
                     SET o.attempts = v.attempts, o.next_attempt_ms = v.next_ms,
                         o.last_error = v.err, o.parked = v.parked,
                         o.claimed_by = NULL, o.claimed_until = NULL",
                    " UNION ALL SELECT ?, ?, ?, ?, ?".repeat(failed_rows - 1)
                ),
            };
            if self.dialect == Dialect::Postgres {
                failed.extend(ints(&failed_seqs));
            }
            self.execute(&sql, &failed)?;
        }
        if !links.is_empty() {
            let rows = rows_of(links.len(), "(?, ?, ?, ?, ?)");
            let sql = match self.dialect {
                Dialect::Postgres => format!(
                    "INSERT INTO links (user_id, remote_id, version, snapshot, fingerprint)
                     VALUES {rows}
                     ON CONFLICT (user_id) DO UPDATE SET remote_id = EXCLUDED.remote_id,
                         version = EXCLUDED.version, snapshot = EXCLUDED.snapshot,
                         fingerprint = EXCLUDED.fingerprint"
                ),
                _ => format!(
                    "INSERT INTO links (user_id, remote_id, version, snapshot, fingerprint)
                     VALUES {rows}
                     ON DUPLICATE KEY UPDATE remote_id = VALUES(remote_id),
                         version = VALUES(version), snapshot = VALUES(snapshot),
                         fingerprint = VALUES(fingerprint)"
                ),
            };
            let mut params = Vec::with_capacity(links.len() * 5);
            for (user_id, (l, fingerprint)) in &links {
                params.extend([
                    (*user_id).into(),
                    l.remote_id.as_str().into(),
                    l.version.clone().into(),
                    l.snapshot.clone().into(),
                    (*fingerprint).into(),
                ]);
            }
            self.execute(&sql, &params)?;
        }
        if !unlinked.is_empty() {
            let params: Vec<SqlValue> = unlinked.iter().map(|u| (*u).into()).collect();
            let sql = match self.dialect {
                Dialect::Postgres => format!(
                    "DELETE FROM links WHERE user_id IN ({})",
                    marks(unlinked.len())
                ),
                _ => format!(
                    "DELETE l FROM ({}) v STRAIGHT_JOIN links l FORCE INDEX (PRIMARY) ON l.user_id = v.user_id",
                    key_table("user_id", unlinked.len())
                ),
            };
            self.execute(&sql, &params)?;
        }
        let mut params = Vec::with_capacity(items.len() * 7);
        for item in &items {
            params.extend(log_params(&item.log));
        }
        self.execute(
            &format!(
                "INSERT INTO provisioning_log (at, user_id, operation, http_status, outcome, error, duration_ms)
                 VALUES {}",
                rows_of(items.len(), "(?, ?, ?, ?, ?, ?, ?)")
            ),
            &params,
        )?;
        Ok(items.iter().map(|i| i.seq).collect())
    }

    /// The database this store is on.
    pub(super) fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// Every event still in the outbox, parked ones included.
    pub fn pending_events(&self) -> anyhow::Result<Vec<OutboxEvent>> {
        let rows = self.query(
            &format!("SELECT {EVENT_COLUMNS} FROM outbox ORDER BY seq"),
            &[],
        )?;
        rows_to_events(&rows)
    }

    /// Removes an event `worker` delivered, if its claim is still `worker`'s. When the
    /// lease ran out and another worker claimed the event meanwhile, it is that worker's
    /// to settle once its own delivery is done: removing it now would let the user's next
    /// event go out while the other delivery of this one may still be on its way.
    pub fn complete_event(&mut self, worker: &str, seq: i64) -> anyhow::Result<()> {
        self.execute(
            "DELETE FROM outbox WHERE seq = ? AND (claimed_by = ? OR claimed_by IS NULL)",
            &[seq.into(), worker.into()],
        )?;
        Ok(())
    }

    /// Records a failed attempt: retried at `next_attempt_ms`, or parked. The lease ends.
    /// Like [`SharedStore::complete_event`], only while the claim is still `worker`'s.
    pub fn fail_event(
        &mut self,
        worker: &str,
        seq: i64,
        attempts: u32,
        next_attempt_ms: i64,
        error: &str,
        park: bool,
    ) -> anyhow::Result<()> {
        self.execute(
            "UPDATE outbox SET attempts = ?, next_attempt_ms = ?, last_error = ?, parked = ?,
                 claimed_by = NULL, claimed_until = NULL
             WHERE seq = ? AND (claimed_by = ? OR claimed_by IS NULL)",
            &[
                attempts.into(),
                next_attempt_ms.into(),
                error.into(),
                park.into(),
                seq.into(),
                worker.into(),
            ],
        )?;
        Ok(())
    }

    /// Puts the users with parked events back in line, as the SQLite store does; a user
    /// with an event under a live lease (a worker delivering it now) is left for later, so
    /// the new event cannot overtake it.
    ///
    /// Each user is requeued in a transaction of their own (inside a caller's
    /// [`super::Store::batch`], in the caller's): it holds that user's id lock and events
    /// only. One transaction for every user held the first users' events while it waited
    /// for a later user's, which a worker's settle (locking its batch by `seq`) could hold
    /// while it waited for the first ones: a deadlock.
    pub fn requeue_parked(&mut self, now_ms: i64) -> anyhow::Result<usize> {
        let users: Vec<String> = self
            .query(
                "SELECT user_id FROM outbox o WHERE parked = 1
                   AND NOT EXISTS (SELECT 1 FROM outbox l WHERE l.user_id = o.user_id
                                     AND l.claimed_until IS NOT NULL AND l.claimed_until >= ?)
                 GROUP BY user_id ORDER BY MIN(seq)",
                &[now_ms.into()],
            )?
            .iter()
            .map(|r| r.text(0))
            .collect::<anyhow::Result<_>>()?;
        let mut requeued = 0;
        for id in &users {
            if self.in_transaction(|s| s.requeue_user(id, now_ms))? {
                requeued += 1;
            }
        }
        Ok(requeued)
    }

    /// [`SharedStore::requeue_parked`] for one user, in the transaction open; false when
    /// the user was left as they are.
    fn requeue_user(&self, id: &str, now_ms: i64) -> anyhow::Result<bool> {
        // The id's lock first: `add_user` given this id again takes it too, so the read of
        // the user below sees that user once it is committed, or the new user's events
        // come after the ones queued here. A second requeue at once waits here for the
        // first, then finds nothing parked left (a user who is gone has no row to lock:
        // without it both queued the `deleted` event).
        self.lock_user_id(id)?;
        // Then the user's events, in `seq` order as a settle locks them, read again: the
        // list was a plain read. A worker may have claimed one since (parked events hold
        // no one up); its delivery must not be deleted under it.
        let events = self.query(
            &format!(
                "SELECT seq, parked, claimed_until FROM outbox{} WHERE user_id = ?
                 ORDER BY user_id, seq FOR UPDATE",
                by_user(self.dialect)
            ),
            &[id.into()],
        )?;
        let mut parked = false;
        let mut locked = Vec::with_capacity(events.len());
        for event in &events {
            locked.push(event.int(0)?);
            parked |= event.int(1)? != 0;
            if event.opt_int(2)?.is_some_and(|until| until >= now_ms) {
                return Ok(false);
            }
        }
        if !parked {
            return Ok(false);
        }
        let current = self
            .query_opt(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ? FOR UPDATE"),
                &[id.into()],
            )?
            .map(|r| row_to_user(&r))
            .transpose()?;
        let change = match current {
            Some(current) => Some((UserEvent::Reconcile, current)),
            None => self
                .query_opt(
                    "SELECT user_json FROM outbox WHERE user_id = ?
                     ORDER BY user_id DESC, seq DESC LIMIT 1",
                    &[id.into()],
                )?
                .map(|r| r.text(0))
                .transpose()?
                .and_then(|last| serde_json::from_str::<Value>(&last).ok())
                .as_ref()
                .and_then(UserRecord::from_json)
                .map(|last| (UserEvent::Deleted, last)),
        };
        let Some((event, user)) = change else {
            return Ok(false);
        };
        // The events locked above only: one queued since (a change committed meanwhile,
        // which the read of the user above already holds) may be claimed by now.
        let mut params = vec![id.into()];
        params.extend(ints(&locked));
        self.execute(
            &format!(
                "DELETE FROM outbox WHERE user_id = ? AND seq IN ({})",
                marks(locked.len())
            ),
            &params,
        )?;
        self.enqueue(&user, event)?;
        Ok(true)
    }

    /// Locks a user id until the transaction ends, whether or not a user or an event has
    /// it: `add_user` given an id explicitly and `requeue_parked` take it, so the two go
    /// one after the other for that id (see [`SharedStore::requeue_parked`]).
    ///
    /// The lock is a `meta` row written and removed in the transaction (the key's unique
    /// index makes a second writer wait for the first to end; nothing is left behind).
    /// Workers never take it. It was a lock on the id's queued events: then an `add_user`
    /// in a batch held one deleted user's queued event while it waited for another's,
    /// which a settle (locking by `seq`) held while it waited for the first: a deadlock.
    fn lock_user_id(&self, id: &str) -> anyhow::Result<()> {
        let key = user_id_lock_key(id);
        let sql = match self.dialect {
            Dialect::Postgres => {
                "INSERT INTO meta (\"key\", value) VALUES (?, '')
                 ON CONFLICT (\"key\") DO UPDATE SET value = EXCLUDED.value"
            }
            _ => {
                "INSERT INTO meta (\"key\", value) VALUES (?, '')
                 ON DUPLICATE KEY UPDATE value = VALUES(value)"
            }
        };
        self.execute(sql, &[key.as_str().into()])?;
        self.execute("DELETE FROM meta WHERE \"key\" = ?", &[key.into()])?;
        Ok(())
    }

    /// (pending, parked) counts.
    pub fn outbox_depth(&self) -> anyhow::Result<(u64, u64)> {
        let row = self
            .query_opt(
                "SELECT COUNT(*), COUNT(CASE WHEN parked <> 0 THEN 1 END) FROM outbox",
                &[],
            )?
            .context("a count")?;
        let (all, parked) = (row.int(0)?, row.int(1)?);
        Ok((
            u64::try_from(all - parked).unwrap_or(0),
            u64::try_from(parked).unwrap_or(0),
        ))
    }

    /// Appends to the provisioning log.
    pub fn append_log(&mut self, entry: &LogEntry) -> anyhow::Result<()> {
        self.execute(
            "INSERT INTO provisioning_log (at, user_id, operation, http_status, outcome, error, duration_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
            &log_params(entry),
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
        let mut filters = vec!["1 = 1"];
        let mut params: Vec<SqlValue> = Vec::new();
        if let Some(id) = user_id {
            filters.push("user_id = ?");
            params.push(id.into());
        }
        if failed_only {
            filters.push("outcome = 'failed'");
        }
        params.push(limit.into());
        let rows = self.query(
            &format!(
                "SELECT at, user_id, operation, http_status, outcome, error, duration_ms
                 FROM provisioning_log WHERE {} ORDER BY id DESC LIMIT ?",
                filters.join(" AND ")
            ),
            &params,
        )?;
        rows.iter()
            .map(|r| {
                Ok(LogEntry {
                    at: r.text(0)?,
                    user_id: r.text(1)?,
                    operation: r.text(2)?,
                    http_status: r.opt_int(3)?.and_then(|s| u16::try_from(s).ok()),
                    outcome: r.text(4)?,
                    error: r.opt_text(5)?,
                    duration_ms: u64::try_from(r.int(6)?).unwrap_or(0),
                })
            })
            .collect()
    }

    /// Reads a setting.
    pub fn meta(&self, key: &str) -> anyhow::Result<Option<String>> {
        self.query_opt("SELECT value FROM meta WHERE \"key\" = ?", &[key.into()])?
            .map(|r| r.text(0))
            .transpose()
    }

    /// Writes a setting.
    pub fn set_meta(&self, key: &str, value: &str) -> anyhow::Result<()> {
        let sql = match self.dialect {
            Dialect::Postgres => {
                "INSERT INTO meta (\"key\", value) VALUES (?, ?)
                 ON CONFLICT (\"key\") DO UPDATE SET value = EXCLUDED.value"
            }
            _ => {
                "INSERT INTO meta (\"key\", value) VALUES (?, ?)
                 ON DUPLICATE KEY UPDATE value = VALUES(value)"
            }
        };
        self.execute(sql, &[key.into(), value.into()])?;
        Ok(())
    }

    /// Removes a setting.
    pub fn delete_meta(&mut self, key: &str) -> anyhow::Result<()> {
        self.execute("DELETE FROM meta WHERE \"key\" = ?", &[key.into()])?;
        Ok(())
    }
}

/// The `meta` key of [`SharedStore::lock_user_id`]: `user-id-lock:` and the id, or for an
/// id too long for the key (191 characters) its hash (two ids sharing one only wait for
/// each other).
fn user_id_lock_key(id: &str) -> String {
    let key = format!("user-id-lock:{id}");
    if key.chars().count() <= 191 {
        key
    } else {
        format!("user-id-lock#{:016x}", crate::ids::fnv1a(id.as_bytes()))
    }
}

/// Times a claim on MariaDB is made when the server rolled it back in a deadlock.
const CLAIM_ATTEMPTS: u32 = 3;

/// MariaDB: the buckets of users a claim takes its events from (see
/// [`SharedStore::claim_on_mariadb`]). More buckets make two claims at once less likely to
/// read the same one, and make each claim step over more rows of other buckets (about
/// `CLAIM_BUCKETS` per event it takes); 4, 8 and 16 measured alike with four workers.
pub(super) const CLAIM_BUCKETS: u32 = 8;

/// MariaDB: buckets a claim tries when another claim took every event it picked.
const CLAIM_BUCKET_TRIES: u32 = 3;

/// MariaDB: rows a bucket's read examines at most, per event it asks for: the rows of
/// the other buckets (about `CLAIM_BUCKETS` per event), the events in flight ahead of
/// them (up to a batch per worker), and each candidate's look-up of older events, with
/// room for some hundreds of workers.
const BUCKET_ROWS_EXAMINED: u64 = 100;

/// MariaDB: a claim's random draws (its bucket, and its pick from the queue's head), from
/// the worker and the time, so a worker's successive claims, and claims of workers at
/// once, mostly differ: splitmix64 over the worker's hash and the time.
struct ClaimDraw(u64);

impl ClaimDraw {
    fn new(worker: &str, now_ms: i64) -> ClaimDraw {
        ClaimDraw(crate::ids::fnv1a(worker.as_bytes()) ^ now_ms as u64)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A draw in `0..n` (`n` > 0).
    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n.max(1))) as u32
    }
}

/// Rows a settle statement takes at most (parameters stay far below both databases'
/// limits of 65,535 per statement).
const SETTLE_ROWS: usize = 1_000;

/// PostgreSQL: the planner settings of [`SharedStore::with_queue_plan`].
pub(super) const QUEUE_PLAN: &str = "SET LOCAL enable_sort = off; SET LOCAL enable_seqscan = off;
     SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off;
     SET LOCAL enable_bitmapscan = off; SET LOCAL jit = off";

/// PostgreSQL's claim (see [`SharedStore::claim_events`]); its parameters: now (due),
/// now (lease over), the batch, the worker, the lease's end.
pub(super) fn pg_claim_sql() -> String {
    format!(
        "WITH picked AS (
             SELECT o.ctid FROM outbox o
             WHERE o.parked = 0 AND o.next_attempt_ms <= ?
               AND (o.claimed_until IS NULL OR o.claimed_until < ?)
               AND NOT EXISTS (SELECT 1 FROM outbox p
                               WHERE p.user_id = o.user_id
                                 AND (p.user_id, p.seq) < (o.user_id, o.seq)
                                 AND p.parked = 0
                               OFFSET 0)
             ORDER BY o.seq LIMIT ?
             FOR UPDATE OF o SKIP LOCKED)
         UPDATE outbox SET claimed_by = ?, claimed_until = ?
         WHERE outbox.ctid = ANY (ARRAY(SELECT ctid FROM picked))
         RETURNING {}",
        qualified_event_columns("outbox")
    )
}

/// PostgreSQL: how long one claim may run before it is cancelled (its transaction rolled
/// back, its row locks released, and the error returned to the worker, which retries as
/// after any database error). A claim takes about a millisecond; one that runs for
/// seconds is on a plan it should not have, and meanwhile holds row locks that stop other
/// workers' settles. Only the claim has it: a settle that waits for locks must finish,
/// or events already delivered would be sent again after their lease.
const CLAIM_TIMEOUT: &str = "SET LOCAL statement_timeout = '30s';";

/// MariaDB: a statement on the outbox by `seq IN (…)` goes by the primary key. Its
/// optimizer, with statistics that lag behind a burst (a table still counted empty),
/// otherwise scans the whole table, and a locking scan waits for every row another worker
/// holds: settles of disjoint batches then deadlocked. (PostgreSQL locks only the rows it
/// changes, and its queue statements plan by key under [`SharedStore::with_queue_plan`].)
fn by_key(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => "",
        _ => " FORCE INDEX (PRIMARY)",
    }
}

/// PostgreSQL: the outbox rows whose `seq` is in `marks` (a list of placeholders), as an
/// array of their `ctid`s for a statement to find them by (a TID scan). Under
/// [`SharedStore::with_queue_plan`] (no sort), the one way left to read them in key order
/// is the primary key, one look-up per key. A plain `WHERE seq IN (…)` may instead be
/// planned as a walk of the whole `outbox_user` index (`seq` is its second column), which
/// the planner counts as one row when the outbox's statistics were taken while it was
/// empty (`reltuples` 0 with its pages still there, as after a burst delivered and
/// deleted): each settle then read the whole outbox. A settle has locked the rows
/// already, so their `ctid`s hold until its transaction ends; a lease extension has not,
/// and a row changed meanwhile (taken over, settled) is then not extended, as it should
/// not be.
fn pg_rows_by_key(marks: &str) -> String {
    format!("ARRAY(SELECT ctid FROM outbox WHERE seq IN ({marks}) ORDER BY seq)")
}

/// MariaDB: a user's events by the user's index (see [`by_key`]: a locking read that
/// scanned the table instead would wait for every row another worker holds).
fn by_user(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => "",
        _ => " FORCE INDEX (outbox_user)",
    }
}

/// MariaDB: `SELECT ? AS column UNION ALL SELECT ? …`, `n` rows: a table of keys to join
/// `STRAIGHT_JOIN` first, so a multi-table `DELETE` looks each row up by its key (a
/// single-table `DELETE` takes no index hint; see [`by_key`]).
fn key_table(column: &str, n: usize) -> String {
    let mut sql = format!("SELECT ? AS {column}");
    sql.push_str(&" UNION ALL SELECT ?".repeat(n.saturating_sub(1)));
    sql
}

/// `keys` (in their order) with the last repeated up to the next power of two, for an
/// `IN (…)` list or a key table: a repeated key changes nothing, and the statement's text
/// then takes one of a few lengths. Each length is a statement of its own to prepare, and
/// MariaDB's connection keeps 32 (PostgreSQL's here 256): with batches of every size
/// between 1 and 100, four workers re-prepared almost every second statement (1,000
/// `COM_STMT_PREPARE`s for 2,300 executions per 20,000 events).
fn padded(mut keys: Vec<i64>) -> Vec<i64> {
    if let Some(&last) = keys.last() {
        keys.resize(keys.len().next_power_of_two(), last);
    }
    keys
}

/// `?, ?, …`: `n` placeholders.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// `row, row, …`: `n` copies of a `VALUES` row.
fn rows_of(n: usize, row: &str) -> String {
    vec![row; n].join(", ")
}

fn ints(values: &[i64]) -> Vec<SqlValue> {
    values.iter().map(|&v| v.into()).collect()
}

/// [`EVENT_COLUMNS`] qualified by `table` (a `RETURNING` next to a `FROM`).
fn qualified_event_columns(table: &str) -> String {
    EVENT_COLUMNS
        .split(", ")
        .map(|c| format!("{table}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A log line's values in `provisioning_log`'s column order.
fn log_params(entry: &LogEntry) -> [SqlValue; 7] {
    [
        entry.at.as_str().into(),
        entry.user_id.as_str().into(),
        entry.operation.as_str().into(),
        entry.http_status.map(i64::from).into(),
        entry.outcome.as_str().into(),
        entry.error.clone().into(),
        i64::try_from(entry.duration_ms).unwrap_or(i64::MAX).into(),
    ]
}

/// Extends `worker`'s lease on `seqs` to `now_ms + lease_ms` on `db`; returns those still
/// leased to it. Only rows whose `claimed_by` is `worker` change: an event another worker
/// took over, or one already settled, is left as it is. (A lease that ran out with nobody
/// taking the event over is still this worker's, and is extended.)
pub(super) fn extend_claims_on(
    db: &mut Db,
    worker: &str,
    seqs: &[i64],
    now_ms: i64,
    lease_ms: i64,
) -> anyhow::Result<Vec<i64>> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    let until = now_ms.saturating_add(lease_ms);
    let mut params: Vec<SqlValue> = vec![until.into()];
    params.extend(ints(seqs));
    params.push(worker.into());
    let update = format!(
        "UPDATE outbox{} SET claimed_until = ? WHERE seq IN ({}) AND claimed_by = ?",
        by_key(db.dialect()),
        marks(seqs.len())
    );
    let rows = match db.dialect() {
        Dialect::Postgres => {
            // The rows by `ctid`, looked up by the primary key under the queue's planner
            // settings (see `pg_rows_by_key`): `seq IN (…)` alone may walk the whole
            // `outbox_user` index when the statistics were taken on an empty outbox.
            let update = format!(
                "UPDATE outbox SET claimed_until = ? WHERE ctid = ANY ({}) AND claimed_by = ?
                 RETURNING seq",
                pg_rows_by_key(&marks(seqs.len()))
            );
            db.batch_execute(&format!("BEGIN; {QUEUE_PLAN}"))?;
            match db.query(&update, &params) {
                Ok(rows) => {
                    db.batch_execute("COMMIT")?;
                    rows
                }
                Err(e) => {
                    let _ = db.batch_execute("ROLLBACK");
                    return Err(e);
                }
            }
        }
        _ => {
            db.execute(&update, &params)?;
            let mut params = ints(seqs);
            params.push(worker.into());
            db.query(
                &format!(
                    "SELECT seq FROM outbox FORCE INDEX (PRIMARY)
                     WHERE seq IN ({}) AND claimed_by = ?",
                    marks(seqs.len())
                ),
                &params,
            )?
        }
    };
    let mut held: Vec<i64> = rows
        .iter()
        .map(|r| r.int(0))
        .collect::<anyhow::Result<_>>()?;
    held.sort_unstable();
    Ok(held)
}

/// `limit` of `candidates`, chosen by a shuffle with the claim's draw.
fn pick(mut candidates: Vec<i64>, limit: usize, draw: &mut ClaimDraw) -> Vec<i64> {
    if candidates.len() <= limit {
        return candidates;
    }
    for i in (1..candidates.len()).rev() {
        let j = (draw.next() % (i as u64 + 1)) as usize;
        candidates.swap(i, j);
    }
    candidates.truncate(limit);
    candidates
}

fn row_to_user(r: &Row) -> anyhow::Result<UserRecord> {
    let fields = r.text(3)?;
    Ok(UserRecord {
        id: r.text(0)?,
        name: r.text(1)?,
        mail: r.text(2)?,
        fields: fields_from_json(&fields),
        active: r.bool(4)?,
    })
}

fn link_of(r: &Row, at: usize) -> anyhow::Result<StoredLink> {
    Ok(StoredLink {
        link: Link {
            remote_id: r.text(at)?,
            version: r.opt_text(at + 1)?,
            snapshot: r.opt_text(at + 2)?,
        },
        fingerprint: r.text(at + 3)?,
    })
}

/// Rows as events; a row this version cannot read is skipped rather than trusted.
fn rows_to_events(rows: &[Row]) -> anyhow::Result<Vec<OutboxEvent>> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let Some((event, user)) = decode_event(&r.text(2)?, &r.text(3)?) else {
            continue;
        };
        out.push(OutboxEvent {
            seq: r.int(0)?,
            user_id: r.text(1)?,
            event,
            user,
            attempts: u32::try_from(r.int(4)?).unwrap_or(u32::MAX),
            next_attempt_ms: r.int(5)?,
            last_error: r.opt_text(6)?,
            parked: r.bool(7)?,
        });
    }
    Ok(out)
}
