//! The reconcile's plan read from the store in pages (issue 30): users with their links'
//! fingerprints, [`PAGE`] at a time in id order (keyset paging: each page starts after the
//! last id of the one before, so every page costs the same), then the links whose user is
//! gone. A link's snapshot is read only for a user that needs a call. What is held at once
//! is one page and the users that need a call: a no-change resync of 1,000,000 users holds
//! one page, where [`crate::sync::plan`] held every user and every link.
//!
//! It reads through a connection of its own ([`crate::database::Db`]) to the store's
//! database, SQLite, PostgreSQL or MariaDB alike, over the store's tables (`users`, `links`,
//! the same logical schema on all three).

use std::collections::HashMap;

use anyhow::Context;
use serde_json::Value;

use crate::database::{Db, Dialect, Row, SqlValue};
use crate::runtime::{ConnectorSettings, Runtime, Session};
use crate::store::{
    PolicyDigest, Store, StoredLink, StoredUserText, UserRecord, is_current_fingerprint,
    legacy_policy_member, stored_fingerprint, stored_legacy_fingerprint,
};
use crate::sync::{SyncPlan, is_fingerprint_of, open_planner, parked_key};
use crate::types::{Link, UserEvent};

/// Users (with their links) read per query by default: a page is two queries (on
/// PostgreSQL and MariaDB two round trips), so 1,000,000 users take 400 of them; a page
/// of users and its work are what a resync holds (a few MB).
pub const PAGE: usize = 5000;

/// A user's link as the scan reads it: enough to tell an unchanged user (its fingerprint);
/// the rest of the link (the snapshot, the bulk of it) is read only for a user that needs a
/// call.
pub struct LinkHead {
    /// The user's fingerprint when it was last provisioned.
    pub fingerprint: String,
}

/// A page of users, each with its link's head.
type Page = Vec<(UserRow, Option<LinkHead>)>;

/// One page of users with their links' heads, after `after` (every user when `None`), in
/// id order.
fn users_page(
    db: &mut Db,
    after: Option<&str>,
    upto: Option<&str>,
    limit: usize,
) -> anyhow::Result<Page> {
    // The page of users, then the links in the same id range, matched here: two index
    // range scans. A join looked each user's link up in the index one by one (PostgreSQL
    // even merged every page with the whole links index from its start).
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    const USERS: &str = "SELECT id, name, mail, fields, active FROM users";
    let rows = match (after, upto) {
        (Some(id), None) => db.query(
            &format!("{USERS} WHERE id > ? ORDER BY id LIMIT ?"),
            &[id.into(), limit.into()],
        )?,
        (None, None) => db.query(&format!("{USERS} ORDER BY id LIMIT ?"), &[limit.into()])?,
        // A partition of a shared reconcile (the daemon's on a shared database): ids up to `upto`.
        (Some(id), Some(upto)) => db.query(
            &format!("{USERS} WHERE id > ? AND id <= ? ORDER BY id LIMIT ?"),
            &[id.into(), upto.into(), limit.into()],
        )?,
        (None, Some(upto)) => db.query(
            &format!("{USERS} WHERE id <= ? ORDER BY id LIMIT ?"),
            &[upto.into(), limit.into()],
        )?,
    };
    let Some(last) = rows.last().map(|r| r.text(0)).transpose()? else {
        return Ok(Vec::new());
    };
    const LINKS: &str = "SELECT user_id, fingerprint FROM links";
    let link_rows = match after {
        Some(id) => db.query(
            &format!("{LINKS} WHERE user_id > ? AND user_id <= ?"),
            &[id.into(), last.as_str().into()],
        )?,
        None => db.query(
            &format!("{LINKS} WHERE user_id <= ?"),
            &[last.as_str().into()],
        )?,
    };
    let mut heads: HashMap<String, LinkHead> = HashMap::with_capacity(link_rows.len());
    for mut r in link_rows {
        heads.insert(
            take_text(&mut r, 0)?,
            LinkHead {
                fingerprint: take_text(&mut r, 1)?,
            },
        );
    }
    rows.into_iter()
        .map(|mut r| {
            let user = UserRow {
                active: r.bool(4)?,
                id: take_text(&mut r, 0)?,
                name: take_text(&mut r, 1)?,
                mail: take_text(&mut r, 2)?,
                fields: take_text(&mut r, 3)?,
            };
            let link = heads.remove(&user.id);
            Ok((user, link))
        })
        .collect()
}

/// Column `i` of `row` as text, moved out of the row (which is read once) instead of
/// copied: a 1,000,000-user scan would otherwise copy every value once more.
fn take_text(row: &mut Row, i: usize) -> anyhow::Result<String> {
    match row.0.get_mut(i) {
        Some(SqlValue::Text(t)) => Ok(std::mem::take(t)),
        _ => row.text(i),
    }
}

/// The links whose user is gone, in user id order. In one query, not in pages: each one
/// becomes a deprovisioning the plan holds anyway, and one anti-join costs less than a page
/// of them each (PostgreSQL hashes every user for each).
fn orphan_links(db: &mut Db) -> anyhow::Result<Vec<(String, StoredLink)>> {
    let rows = db.query(
        "SELECT l.user_id, l.remote_id, l.version, l.snapshot, l.fingerprint FROM links l
         WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = l.user_id) ORDER BY l.user_id",
        &[],
    )?;
    rows.iter()
        .map(|r| Ok((r.text(0)?, link_of(r, r.text(1)?, 2)?)))
        .collect()
}

/// A user as stored: its fields still the stored JSON text, parsed only when needed.
pub struct UserRow {
    /// The CMS id.
    pub id: String,
    /// The login name.
    pub name: String,
    /// The e-mail address.
    pub mail: String,
    /// The other fields, as the store's JSON object text.
    pub fields: String,
    /// Not blocked.
    pub active: bool,
}

impl UserRow {
    /// The user, its fields parsed as the store parses them (text that is not a JSON object
    /// is no fields).
    pub fn record(self) -> UserRecord {
        UserRecord {
            fields: serde_json::from_str::<Value>(&self.fields)
                .ok()
                .and_then(|v| match v {
                    Value::Object(m) => Some(m),
                    _ => None,
                })
                .unwrap_or_default(),
            id: self.id,
            name: self.name,
            mail: self.mail,
            active: self.active,
        }
    }

    /// [`UserRecord::fingerprint`] without parsing the fields: [`stored_fingerprint`] of
    /// the stored text as it is. The store writes the fields canonical, so for a user the
    /// host wrote this is the fingerprint; for any other text it differs, and the caller
    /// falls back to the real one. `buf` is reused.
    pub fn quick_fingerprint(&self, policy: PolicyDigest, buf: &mut Vec<u8>) -> String {
        stored_fingerprint(&self.text(), policy, buf)
    }

    /// The row as the fingerprints read it.
    fn text(&self) -> StoredUserText<'_> {
        StoredUserText {
            id: &self.id,
            name: &self.name,
            mail: &self.mail,
            fields: &self.fields,
            active: self.active,
        }
    }
}

/// The link in columns `at` (version), `at + 1` (snapshot), `at + 2` (fingerprint).
fn link_of(r: &Row, remote_id: String, at: usize) -> anyhow::Result<StoredLink> {
    Ok(StoredLink {
        link: Link {
            remote_id,
            version: r.opt_text(at)?,
            snapshot: r.opt_text(at + 1)?,
        },
        fingerprint: r.text(at + 2)?,
    })
}

/// Calls `each` with every user and its link's head, a page at a time.
pub fn for_each_user(
    db: &mut Db,
    each: impl FnMut(UserRow, Option<LinkHead>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for_each_user_in(db, &IdRange::ALL, each)
}

/// A range of user ids, `after < id <= upto` (an open end when `None`), in the order the
/// database compares ids: a partition of a shared reconcile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdRange {
    /// The ids after this one (from the first when `None`).
    pub after: Option<String>,
    /// Up to and with this one (to the last when `None`).
    pub upto: Option<String>,
}

impl IdRange {
    /// Every id.
    pub const ALL: IdRange = IdRange {
        after: None,
        upto: None,
    };
}

/// [`for_each_user`] over the users in `range` only.
pub fn for_each_user_in(
    db: &mut Db,
    range: &IdRange,
    mut each: impl FnMut(UserRow, Option<LinkHead>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut after: Option<String> = range.after.clone();
    loop {
        let page = users_page(db, after.as_deref(), range.upto.as_deref(), PAGE)
            .context("reading users")?;
        let full = page.len() == PAGE;
        after = page.last().map(|(u, _)| u.id.clone());
        for (user, link) in page {
            each(user, link)?;
        }
        if !full {
            return Ok(());
        }
    }
}

/// Calls `each` with every link whose user is gone.
pub fn for_each_orphan_link(
    db: &mut Db,
    mut each: impl FnMut(String, StoredLink) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for (id, link) in orphan_links(db).context("reading links")? {
        each(id, link)?;
    }
    Ok(())
}

/// [`crate::sync::plan`], reading users and links from `db` in pages: the same plan (in
/// id order), without holding every user and link. `store` answers what else the plan
/// asks (a parked user's fingerprint).
pub fn plan_paged(
    runtime: &Runtime,
    settings: &ConnectorSettings,
    db: &mut Db,
    store: &Store,
    full: bool,
) -> anyhow::Result<SyncPlan> {
    plan_paged_in(runtime, settings, db, store, full, &IdRange::ALL)
}

/// [`plan_paged`] for the users in `range` only. The links whose user is gone are planned
/// only for the whole range ([`IdRange::ALL`]): a shared reconcile plans them once per run.
pub fn plan_paged_in(
    runtime: &Runtime,
    settings: &ConnectorSettings,
    db: &mut Db,
    store: &Store,
    full: bool,
    range: &IdRange,
) -> anyhow::Result<SyncPlan> {
    let mut out = SyncPlan::default();
    let mut planner = PagedPlanner::new(runtime, settings, full, range, PAGE)?;
    while planner.next_page(db, store, &mut out)? {}
    Ok(out)
}

/// [`plan_paged_in`] into `out`, handing it to `after_page` after each page of users (and
/// once more after the links whose user is gone), `page` users a page. A caller that takes
/// the page's work out (`std::mem::take(&mut plan.work)`) holds one page of work at a time.
#[allow(clippy::too_many_arguments)]
pub fn plan_pages(
    runtime: &Runtime,
    settings: &ConnectorSettings,
    db: &mut Db,
    store: &Store,
    full: bool,
    range: &IdRange,
    page: usize,
    out: &mut SyncPlan,
    after_page: &mut dyn FnMut(&mut SyncPlan) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut planner = PagedPlanner::new(runtime, settings, full, range, page)?;
    while planner.next_page(db, store, out)? {
        after_page(out)?;
    }
    Ok(())
}

/// The paged plan one page at a time, the caller in control between pages: a sync that
/// sends each page's work before it reads the next ([`crate::sync::sync_paged`], for a
/// first sync of 1,000,000 users) plans with it. The counters of the [`SyncPlan`] it
/// fills add up over the pages; its work is what the caller leaves in it.
pub struct PagedPlanner<'a> {
    session: Session,
    scan: Scan<'a>,
    range: IdRange,
    page: usize,
    /// Where the next page starts (after this id).
    after: Option<String>,
    next: Next,
}

/// What [`PagedPlanner::next_page`] reads next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Users,
    OrphanLinks,
    Nothing,
}

impl<'a> PagedPlanner<'a> {
    /// A plan of the users in `range`, `page` users a page (at least 1); `full` for a
    /// verifying sync.
    pub fn new(
        runtime: &Runtime,
        settings: &'a ConnectorSettings,
        full: bool,
        range: &IdRange,
        page: usize,
    ) -> anyhow::Result<PagedPlanner<'a>> {
        Ok(PagedPlanner {
            session: open_planner(runtime, settings)?,
            scan: Scan::new(&settings.policy_json, full),
            range: range.clone(),
            page: page.max(1),
            after: range.after.clone(),
            next: Next::Users,
        })
    }

    /// Plans the next page of users into `out` (or, after the last, the links whose user
    /// is gone, for the whole range only); false when everything was planned. `store`
    /// answers what else the plan asks (a parked user's fingerprint, a changed user's whole
    /// link).
    pub fn next_page(
        &mut self,
        db: &mut Db,
        store: &Store,
        out: &mut SyncPlan,
    ) -> anyhow::Result<bool> {
        match self.next {
            Next::Nothing => Ok(false),
            Next::Users => {
                let (read, page) = match db {
                    // An unchanged user told from the row as SQLite holds it; only the
                    // others are copied out.
                    Db::Sqlite(conn) => sqlite_page(
                        conn,
                        self.after.as_deref(),
                        self.range.upto.as_deref(),
                        self.page,
                        &mut self.scan,
                        out,
                    ),
                    _ => users_page(
                        db,
                        self.after.as_deref(),
                        self.range.upto.as_deref(),
                        self.page,
                    )
                    .map(|page| (page.len(), page)),
                }
                .context("reading users")?;
                if read < self.page {
                    self.next = if self.range == IdRange::ALL {
                        Next::OrphanLinks
                    } else {
                        Next::Nothing
                    };
                }
                let last = match self.scan.last_id.take() {
                    Some(last) => Some(last),
                    None => page.last().map(|(u, _)| u.id.clone()),
                };
                if last.is_some() {
                    self.after = last;
                }
                for (row, head) in page {
                    self.scan
                        .plan_user(row, head, store, &mut self.session, out)?;
                }
                self.scan.save_upgrades(db)?;
                Ok(true)
            }
            Next::OrphanLinks => {
                self.next = Next::Nothing;
                plan_orphan_links(db, &mut self.session, out)?;
                Ok(true)
            }
        }
    }
}

/// Plans the deletion of the linked users no longer in the CMS (their event may have been
/// parked) into `out`, once every user was read.
fn plan_orphan_links(db: &mut Db, session: &mut Session, out: &mut SyncPlan) -> anyhow::Result<()> {
    // Every link has one user id, so when there are as many links as linked users were
    // read, none is left over, and the anti-join (a hash of every user on PostgreSQL, a
    // second at 1,000,000) is not needed. A link written or removed during the scan can
    // only make the counts differ (then the anti-join runs) or leave an orphan for the
    // next sync.
    let links = db
        .query("SELECT COUNT(*) FROM links", &[])
        .context("counting links")?
        .first()
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0);
    if u64::try_from(links).unwrap_or(u64::MAX) == out.linked {
        return Ok(());
    }
    for_each_orphan_link(db, |id, link| {
        out.linked += 1;
        out.add_deleted(session, id, link)
    })
}

/// On SQLite: one page of users (as [`users_page`] reads it) merged with their links as the
/// statements step, both in id order (SQLite's BINARY order, the bytes' order, which the
/// merge compares). A user whose link's fingerprint is the quick one is counted unchanged
/// straight from the row, nothing copied: what a 1,000,000-user resync spends per user is
/// then SQLite's stepping and one hash. The other users are returned, with their links'
/// heads, for [`Scan::plan_user`]; the number of users read comes first, and the page's
/// last id is left in [`Scan::last_id`].
fn sqlite_page(
    conn: &rusqlite::Connection,
    after: Option<&str>,
    upto: Option<&str>,
    limit: usize,
    scan: &mut Scan<'_>,
    out: &mut SyncPlan,
) -> anyhow::Result<(usize, Page)> {
    use rusqlite::types::Value as SqliteValue;
    let mut range = String::new();
    let mut params: Vec<SqliteValue> = Vec::new();
    if let Some(after) = after {
        range.push_str(" AND {id} > ?");
        params.push(SqliteValue::Text(after.to_string()));
    }
    if let Some(upto) = upto {
        range.push_str(" AND {id} <= ?");
        params.push(SqliteValue::Text(upto.to_string()));
    }
    let users_sql = format!(
        "SELECT id, name, mail, fields, active FROM users WHERE 1 = 1{} ORDER BY id LIMIT ?",
        range.replace("{id}", "id")
    );
    let links_sql = format!(
        "SELECT user_id, fingerprint FROM links WHERE 1 = 1{} ORDER BY user_id",
        range.replace("{id}", "user_id")
    );
    let mut users_stmt = conn.prepare_cached(&users_sql)?;
    let mut links_stmt = conn.prepare_cached(&links_sql)?;
    let mut user_params = params.clone();
    user_params.push(SqliteValue::Integer(
        i64::try_from(limit).unwrap_or(i64::MAX),
    ));
    let mut users = users_stmt.query(rusqlite::params_from_iter(user_params))?;
    let mut links = links_stmt.query(rusqlite::params_from_iter(params))?;
    // The link the merge stands on: its user id's bytes and its fingerprint (kept in
    // buffers reused from row to row), or none left.
    let mut link_id: Vec<u8> = Vec::new();
    let mut link_fingerprint = String::new();
    let mut advance =
        |link_id: &mut Vec<u8>, link_fingerprint: &mut String| -> anyhow::Result<bool> {
            match links.next()? {
                Some(row) => {
                    link_id.clear();
                    link_id.extend_from_slice(sqlite_bytes(row.get_ref(0)?)?.as_ref());
                    link_fingerprint.clear();
                    link_fingerprint.push_str(&sqlite_text(row.get_ref(1)?)?);
                    Ok(true)
                }
                None => Ok(false),
            }
        };
    let mut link_left = advance(&mut link_id, &mut link_fingerprint)?;
    let mut read = 0;
    let mut rest = Vec::new();
    scan.last_id = None;
    while let Some(row) = users.next()? {
        read += 1;
        let id_bytes = sqlite_bytes(row.get_ref(0)?)?;
        // Links before this user belong to no user of the page (orphans, planned at the
        // end from the counts).
        while link_left && link_id.as_slice() < id_bytes.as_ref() {
            link_left = advance(&mut link_id, &mut link_fingerprint)?;
        }
        let linked = link_left && link_id.as_slice() == id_bytes.as_ref();
        let id = sqlite_text(row.get_ref(0)?)?;
        let name = sqlite_text(row.get_ref(1)?)?;
        let mail = sqlite_text(row.get_ref(2)?)?;
        let fields = sqlite_text(row.get_ref(3)?)?;
        let active = match row.get_ref(4)? {
            rusqlite::types::ValueRef::Integer(i) => i != 0,
            other => sqlite_text(other)?.trim().parse::<i64>().unwrap_or(0) != 0,
        };
        let text = StoredUserText {
            id: &id,
            name: &name,
            mail: &mail,
            fields: &fields,
            active,
        };
        if linked
            && !scan.full
            && link_fingerprint == stored_fingerprint(&text, scan.policy, &mut scan.buf)
        {
            out.linked += 1;
            out.unchanged += 1;
        } else {
            rest.push((
                UserRow {
                    id: id.to_string(),
                    name: name.to_string(),
                    mail: mail.to_string(),
                    fields: fields.to_string(),
                    active,
                },
                linked.then(|| LinkHead {
                    fingerprint: link_fingerprint.clone(),
                }),
            ));
        }
        scan.last_id = Some(id.into_owned());
    }
    Ok((read, rest))
}

/// A column's bytes as SQLite holds them (a number as its text).
fn sqlite_bytes(v: rusqlite::types::ValueRef<'_>) -> anyhow::Result<std::borrow::Cow<'_, [u8]>> {
    use rusqlite::types::ValueRef;
    Ok(match v {
        ValueRef::Text(t) | ValueRef::Blob(t) => std::borrow::Cow::Borrowed(t),
        ValueRef::Integer(i) => std::borrow::Cow::Owned(i.to_string().into_bytes()),
        ValueRef::Real(f) => std::borrow::Cow::Owned(f.to_string().into_bytes()),
        ValueRef::Null => anyhow::bail!("a column is null"),
    })
}

/// A column as text, as [`Db::query`] reads it (invalid UTF-8 replaced), borrowed when it
/// can be.
fn sqlite_text(v: rusqlite::types::ValueRef<'_>) -> anyhow::Result<std::borrow::Cow<'_, str>> {
    Ok(match sqlite_bytes(v)? {
        std::borrow::Cow::Borrowed(b) => String::from_utf8_lossy(b),
        std::borrow::Cow::Owned(b) => {
            std::borrow::Cow::Owned(String::from_utf8_lossy(&b).into_owned())
        }
    })
}

/// What the scan needs to tell an unchanged user, hashed once per plan, and the links it
/// found in the fingerprint form of older versions.
struct Scan<'a> {
    policy_json: &'a str,
    policy: PolicyDigest,
    /// A verifying sync: every user is planned, whatever its fingerprint.
    full: bool,
    buf: Vec<u8>,
    /// Links whose fingerprint is in the form before the policy digest and still the
    /// user's: (user id, that fingerprint, the current one), rewritten after the page.
    upgrades: Vec<(String, String, String)>,
    /// The policy as the fingerprints of older versions end ([`legacy_policy_member`]).
    legacy_policy: Vec<u8>,
    /// The last user id of the page read on SQLite (its unchanged users are not returned).
    last_id: Option<String>,
}

impl<'a> Scan<'a> {
    fn new(policy_json: &'a str, full: bool) -> Scan<'a> {
        Scan {
            legacy_policy: legacy_policy_member(policy_json),
            policy_json,
            policy: PolicyDigest::of(policy_json),
            full,
            buf: Vec::new(),
            upgrades: Vec::new(),
            last_id: None,
        }
    }

    /// Counts `row` unchanged (or parked), or plans it into `out`.
    fn plan_user(
        &mut self,
        row: UserRow,
        head: Option<LinkHead>,
        store: &Store,
        session: &mut Session,
        out: &mut SyncPlan,
    ) -> anyhow::Result<()> {
        out.linked += u64::from(head.is_some());
        if !self.full
            && let Some(h) = &head
        {
            let quick = row.quick_fingerprint(self.policy, &mut self.buf);
            if h.fingerprint == quick {
                out.unchanged += 1;
                return Ok(());
            }
            if !is_current_fingerprint(&h.fingerprint)
                && h.fingerprint
                    == stored_legacy_fingerprint(&row.text(), &self.legacy_policy, &mut self.buf)
            {
                // Unchanged since an older version provisioned it: counted so, and its
                // fingerprint rewritten, so the next resync takes the quick path.
                self.upgrades.push((row.id, h.fingerprint.clone(), quick));
                out.unchanged += 1;
                return Ok(());
            }
        }
        let user = row.record();
        if !self.full {
            let fingerprint = user.fingerprint_with(self.policy);
            if let Some(h) = &head {
                if h.fingerprint == fingerprint {
                    out.unchanged += 1;
                    return Ok(());
                }
                if !is_current_fingerprint(&h.fingerprint)
                    && h.fingerprint == user.legacy_fingerprint(self.policy_json)
                {
                    // Unchanged since an older version provisioned it: counted so, and its
                    // fingerprint rewritten, so the next resync takes the quick path.
                    self.upgrades
                        .push((user.id, h.fingerprint.clone(), fingerprint));
                    out.unchanged += 1;
                    return Ok(());
                }
            } else if let Some(parked) = store.meta(&parked_key(&user.id))?
                && is_fingerprint_of(&parked, &user, &fingerprint, self.policy_json)
            {
                out.parked += 1;
                return Ok(());
            }
        }
        let mut link = match head {
            // The whole link, snapshot included, for a user that needs a call.
            Some(_) => store.link(&user.id)?,
            None => None,
        };
        if self.full
            && let Some(l) = link.as_mut()
        {
            // Without a snapshot the engine reads the remote user first (404 → re-create).
            l.link.snapshot = None;
            l.link.version = None;
        }
        out.add(session, user, UserEvent::Reconcile, link)
    }

    /// Rewrites the page's links found in the older fingerprint form, in one transaction;
    /// each only if its fingerprint is still the one read (a worker may have provisioned
    /// the user since).
    fn save_upgrades(&mut self, db: &mut Db) -> anyhow::Result<()> {
        if self.upgrades.is_empty() {
            return Ok(());
        }
        let upgrades = std::mem::take(&mut self.upgrades);
        db.transaction(|db| {
            // A statement per chunk, not per link: a statement a link cost PostgreSQL a
            // round trip each (124 s for 1,000,000 links).
            for chunk in upgrades.chunks(UPGRADES_PER_STATEMENT) {
                let mut params: Vec<SqlValue> = Vec::with_capacity(chunk.len() * 3);
                for (user_id, old, new) in chunk {
                    params.extend([
                        SqlValue::from(user_id.as_str()),
                        old.as_str().into(),
                        new.as_str().into(),
                    ]);
                }
                db.execute(&upgrade_statement(db.dialect(), chunk.len()), &params)?;
            }
            Ok(())
        })
        .context("rewriting links' fingerprints in the current form")
    }
}

/// Links rewritten per statement by [`Scan::save_upgrades`] (3 parameters each, far under
/// every database's limit).
const UPGRADES_PER_STATEMENT: usize = 500;

/// `UPDATE links` to the new fingerprint of `rows` links given as (user id, old, new)
/// parameters, each only where its fingerprint is still the old one.
fn upgrade_statement(dialect: Dialect, rows: usize) -> String {
    match dialect {
        Dialect::MySql => {
            let first = "SELECT ? AS user_id, ? AS old, ? AS new";
            let rest = " UNION ALL SELECT ?, ?, ?".repeat(rows.saturating_sub(1));
            format!(
                "UPDATE links JOIN ({first}{rest}) AS v \
                 ON links.user_id = v.user_id AND links.fingerprint = v.old \
                 SET links.fingerprint = v.new"
            )
        }
        Dialect::Postgres | Dialect::Sqlite => {
            let values = vec!["(?, ?, ?)"; rows].join(", ");
            format!(
                "WITH v(user_id, old, new) AS (VALUES {values}) \
                 UPDATE links SET fingerprint = v.new FROM v \
                 WHERE links.user_id = v.user_id AND links.fingerprint = v.old"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(user: &UserRecord, fields_text: String) -> UserRow {
        UserRow {
            id: user.id.clone(),
            name: user.name.clone(),
            mail: user.mail.clone(),
            fields: fields_text,
            active: user.active,
        }
    }

    /// For fields as the store writes them, the quick fingerprint is the fingerprint; for
    /// the same fields written otherwise it is not, and the plan falls back to parsing.
    #[test]
    fn the_quick_fingerprint_is_the_fingerprint_of_canonical_fields() {
        let mut fields = serde_json::Map::new();
        fields.insert(
            "zeta".into(),
            serde_json::json!("\"quoted\" \\ and é, 日本"),
        );
        fields.insert("alpha".into(), serde_json::json!(["a", "b", 3, null, true]));
        fields.insert(
            "nested".into(),
            serde_json::json!({"y": 1.5, "x": {"b": 2, "a": 1}}),
        );
        let mut buf = Vec::new();
        for (active, policy) in [(true, ""), (false, "{\"mapping\": {\"a\": \"b\"}}")] {
            let digest = PolicyDigest::of(policy);
            let user = UserRecord {
                id: "42".into(),
                name: "Zoë \"Z\" O'Neil".into(),
                mail: "zoe@example.com".into(),
                fields: fields.clone(),
                active,
            };
            let canonical = Value::Object(user.fields.clone()).to_string();
            assert_eq!(
                row(&user, canonical).quick_fingerprint(digest, &mut buf),
                user.fingerprint(policy)
            );
            let spaced = serde_json::to_string_pretty(&Value::Object(user.fields.clone())).unwrap();
            let other = row(&user, spaced);
            assert_ne!(
                other.quick_fingerprint(digest, &mut buf),
                user.fingerprint(policy)
            );
            assert_eq!(other.record().fingerprint(policy), user.fingerprint(policy));
        }
    }
}
