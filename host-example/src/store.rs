//! The store: the sample CMS's users, the links to their remote twins, the outbox of
//! pending provisioning work, the provisioning log and settings (`meta`).
//!
//! It lives in one SQLite file (the embedded default, [`sqlite`]) or on a shared
//! PostgreSQL or MariaDB database ([`shared`]) that many worker processes use at once; the
//! schema is the same logical one on all three ([`schema`]). [`Store`] is the port the rest
//! of the host uses, whichever it is.
//!
//! Every user change and its outbox event are written in one transaction (a transactional
//! outbox), so a change can never be made without its event, nor an event lost.

mod schema;
mod settle;
mod shared;
mod sqlite;

use std::path::Path;
use std::time::Duration;

use rusqlite::Transaction;
use serde_json::{Map, Value};

use crate::database::DatabaseUrl;
pub use schema::{STORE_COMPONENT, STORE_MIGRATIONS};
pub use settle::{LeaseKeeper, SettleOutcome, Settlement};
pub use shared::SharedStore;
pub use sqlite::SqliteStore;

use crate::ids::fnv1a;
use crate::types::{CmsUser, FieldValue, Link, UserEvent};

/// A user of the sample CMS, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    /// The CMS id.
    pub id: String,
    /// The login name (Drupal's `name`).
    pub name: String,
    /// The email (Drupal's `mail`).
    pub mail: String,
    /// Other fields, as a JSON object: strings, numbers, booleans, lists of strings.
    pub fields: Map<String, Value>,
    /// False when blocked.
    pub active: bool,
}

impl UserRecord {
    /// The WIT record the component takes.
    pub fn to_cms_user(&self) -> CmsUser {
        let mut fields = vec![
            ("name".to_string(), FieldValue::Text(self.name.clone())),
            ("mail".to_string(), FieldValue::Text(self.mail.clone())),
        ];
        for (k, v) in &self.fields {
            fields.push((k.clone(), json_to_field(v)));
        }
        CmsUser {
            id: self.id.clone(),
            fields,
            active: self.active,
        }
    }

    /// A stable fingerprint of everything provisioning reads, so a sync can tell "changed"
    /// without asking the server: [`stored_fingerprint`] of the user with its fields as the
    /// store writes them. Hashes `policy_json` first; a sync that fingerprints many users
    /// hashes it once ([`PolicyDigest::of`]) and calls [`UserRecord::fingerprint_with`].
    pub fn fingerprint(&self, policy_json: &str) -> String {
        self.fingerprint_with(PolicyDigest::of(policy_json))
    }

    /// [`UserRecord::fingerprint`] under a policy already hashed.
    pub fn fingerprint_with(&self, policy: PolicyDigest) -> String {
        let fields = Value::Object(self.fields.clone()).to_string();
        stored_fingerprint(
            &StoredUserText {
                id: &self.id,
                name: &self.name,
                mail: &self.mail,
                fields: &fields,
                active: self.active,
            },
            policy,
            &mut Vec::new(),
        )
    }

    /// The fingerprint as versions before the policy digest wrote it (16 hex digits, the
    /// whole policy JSON hashed with each user). Kept only to recognise a link written by
    /// them as unchanged, so an upgrade does not send every user again: a resync that finds
    /// one rewrites it in the current form ([`is_current_fingerprint`]).
    pub fn legacy_fingerprint(&self, policy_json: &str) -> String {
        let canonical = serde_json::json!({
            "id": self.id, "name": self.name, "mail": self.mail,
            "fields": self.fields, "active": self.active, "policy": policy_json,
        })
        .to_string();
        format!("{:016x}", fnv1a(canonical.as_bytes()))
    }

    fn to_json(&self) -> Value {
        serde_json::json!({"id": self.id, "name": self.name, "mail": self.mail,
                           "fields": self.fields, "active": self.active})
    }

    fn from_json(v: &Value) -> Option<UserRecord> {
        Some(UserRecord {
            id: v.get("id")?.as_str()?.to_string(),
            name: v.get("name")?.as_str()?.to_string(),
            mail: v
                .get("mail")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            fields: v
                .get("fields")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            active: v.get("active").and_then(Value::as_bool).unwrap_or(true),
        })
    }
}

/// The policy's share of every user's fingerprint: its JSON hashed once (XXH64), so a
/// resync of 1,000,000 users hashes a policy of a few KB once, not once per user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyDigest([u8; 16]);

impl PolicyDigest {
    /// The digest of the policy JSON as the connector settings hold it (byte for byte: a
    /// policy saved differently counts as changed, which costs one resync's calls).
    pub fn of(policy_json: &str) -> PolicyDigest {
        let mut hex = [0u8; 16];
        hex.copy_from_slice(format!("{:016x}", xxh64(policy_json.as_bytes())).as_bytes());
        PolicyDigest(hex)
    }
}

/// What a fingerprint hashes of a user, as the store holds it: `fields` is the stored JSON
/// object text (the store writes it canonical: keys sorted, no spaces).
#[derive(Debug, Clone, Copy)]
pub struct StoredUserText<'a> {
    /// The CMS id.
    pub id: &'a str,
    /// The login name.
    pub name: &'a str,
    /// The e-mail address.
    pub mail: &'a str,
    /// The other fields, as the stored JSON object text.
    pub fields: &'a str,
    /// Not blocked.
    pub active: bool,
}

/// The prefix of the current fingerprint form (a legacy one is 16 bare hex digits).
const FINGERPRINT_PREFIX: &str = "v2-";

/// Whether `fingerprint` is in the current form (else a version before the policy digest
/// wrote it; see [`UserRecord::legacy_fingerprint`]).
pub fn is_current_fingerprint(fingerprint: &str) -> bool {
    fingerprint.starts_with(FINGERPRINT_PREFIX)
}

/// A user's fingerprint from its stored text, without parsing the fields: `v2-` and the
/// XXH64 (seed 0) of `{"active":…,"fields":…,"id":…,"mail":…,"name":…,"policy":"<digest>"}` (keys
/// in order, `fields` as stored). For fields the store wrote this is
/// [`UserRecord::fingerprint`]; other text (spaces, keys out of order) gives another value,
/// which a caller tells from a change by parsing the fields. `buf` is scratch space, reused.
pub fn stored_fingerprint(
    user: &StoredUserText<'_>,
    policy: PolicyDigest,
    buf: &mut Vec<u8>,
) -> String {
    use std::fmt::Write as _;
    canonical_user_text(user, buf);
    buf.extend_from_slice(b",\"policy\":\"");
    buf.extend_from_slice(&policy.0);
    buf.extend_from_slice(b"\"}");
    let mut out = String::with_capacity(FINGERPRINT_PREFIX.len() + 16);
    out.push_str(FINGERPRINT_PREFIX);
    let _ = write!(out, "{:016x}", xxh64(buf));
    out
}

/// XXH64 with seed 0 (Yann Collet's xxHash, 64-bit): a stable, portable hash that reads 8
/// bytes a step where FNV-1a reads one, so the hash is a small part of telling 1,000,000
/// users unchanged. Checked against the reference values in the tests.
fn xxh64(input: &[u8]) -> u64 {
    const P1: u64 = 0x9E37_79B1_85EB_CA87;
    const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
    const P3: u64 = 0x1656_67B1_9E37_79F9;
    const P4: u64 = 0x85EB_CA77_C2B2_AE63;
    const P5: u64 = 0x27D4_EB2F_1656_67C5;
    fn read64(b: &[u8]) -> u64 {
        let mut word = [0u8; 8];
        word.copy_from_slice(&b[..8]);
        u64::from_le_bytes(word)
    }
    fn round(acc: u64, input: u64) -> u64 {
        acc.wrapping_add(input.wrapping_mul(P2))
            .rotate_left(31)
            .wrapping_mul(P1)
    }
    fn merge(acc: u64, v: u64) -> u64 {
        (acc ^ round(0, v)).wrapping_mul(P1).wrapping_add(P4)
    }
    let mut rest = input;
    let mut h = if input.len() >= 32 {
        let (mut v1, mut v2, mut v3, mut v4) =
            (P1.wrapping_add(P2), P2, 0u64, 0u64.wrapping_sub(P1));
        while rest.len() >= 32 {
            v1 = round(v1, read64(&rest[0..]));
            v2 = round(v2, read64(&rest[8..]));
            v3 = round(v3, read64(&rest[16..]));
            v4 = round(v4, read64(&rest[24..]));
            rest = &rest[32..];
        }
        let h = v1
            .rotate_left(1)
            .wrapping_add(v2.rotate_left(7))
            .wrapping_add(v3.rotate_left(12))
            .wrapping_add(v4.rotate_left(18));
        merge(merge(merge(merge(h, v1), v2), v3), v4)
    } else {
        P5
    };
    h = h.wrapping_add(input.len() as u64);
    while rest.len() >= 8 {
        h = (h ^ round(0, read64(rest)))
            .rotate_left(27)
            .wrapping_mul(P1)
            .wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        let mut word = [0u8; 4];
        word.copy_from_slice(&rest[..4]);
        let k = u64::from(u32::from_le_bytes(word));
        h = (h ^ k.wrapping_mul(P1))
            .rotate_left(23)
            .wrapping_mul(P2)
            .wrapping_add(P3);
        rest = &rest[4..];
    }
    for &b in rest {
        h = (h ^ u64::from(b).wrapping_mul(P5))
            .rotate_left(11)
            .wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

/// [`UserRecord::legacy_fingerprint`] from the stored text, as [`stored_fingerprint`] is
/// the current one: `policy_member` is `,"policy":` and the policy JSON as a JSON string,
/// then `}` ([`legacy_policy_member`], made once per sync). A resync after an upgrade
/// recognises each link an older version wrote with it, hashing the policy once a user.
pub fn stored_legacy_fingerprint(
    user: &StoredUserText<'_>,
    policy_member: &[u8],
    buf: &mut Vec<u8>,
) -> String {
    canonical_user_text(user, buf);
    buf.extend_from_slice(policy_member);
    format!("{:016x}", fnv1a(buf))
}

/// The end of the text [`stored_legacy_fingerprint`] hashes: `,"policy":"<the policy JSON
/// escaped>"}`.
pub fn legacy_policy_member(policy_json: &str) -> Vec<u8> {
    let mut member = b",\"policy\":".to_vec();
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut member, policy_json);
    member.push(b'}');
    member
}

/// `{"active":…,"fields":…,"id":…,"mail":…,"name":…` (keys in order, `fields` as stored)
/// into `buf`: what both fingerprint forms hash before the policy.
fn canonical_user_text(user: &StoredUserText<'_>, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(b"{\"active\":");
    buf.extend_from_slice(if user.active { b"true" } else { b"false" });
    buf.extend_from_slice(b",\"fields\":");
    buf.extend_from_slice(user.fields.as_bytes());
    for (key, value) in [("id", user.id), ("mail", user.mail), ("name", user.name)] {
        buf.extend_from_slice(b",\"");
        buf.extend_from_slice(key.as_bytes());
        buf.extend_from_slice(b"\":");
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, value);
    }
}

/// A JSON field value as the component's field value.
pub fn json_to_field(v: &Value) -> FieldValue {
    match v {
        Value::Null => FieldValue::Null,
        Value::Bool(b) => FieldValue::Boolean(*b),
        Value::Number(n) => FieldValue::Number(n.as_f64().unwrap_or_default()),
        Value::String(s) => FieldValue::Text(s.clone()),
        Value::Array(items) => FieldValue::TextList(
            items
                .iter()
                .map(|i| match i {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
        ),
        Value::Object(_) => FieldValue::Text(v.to_string()),
    }
}

/// What the host remembers about a provisioned user.
#[derive(Debug, Clone)]
pub struct StoredLink {
    /// The link the component returned.
    pub link: Link,
    /// The user's fingerprint when it was last provisioned.
    pub fingerprint: String,
}

/// One pending piece of provisioning work.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    /// Order of arrival.
    pub seq: i64,
    /// The CMS user id.
    pub user_id: String,
    /// What happened.
    pub event: UserEvent,
    /// The user as it was when the event was recorded (a deleted user is gone from the
    /// users table, but its event still needs it).
    pub user: UserRecord,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Unix milliseconds before which it is not retried.
    pub next_attempt_ms: i64,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// True once it has given up retrying; shown by `status` and never dropped.
    pub parked: bool,
}

/// One line of the provisioning log. Never holds a secret.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// RFC 3339 time.
    pub at: String,
    /// The CMS user id.
    pub user_id: String,
    /// The event or mode (`created`, `sync`, `manual` …).
    pub operation: String,
    /// The HTTP status of a failure, when there was one.
    pub http_status: Option<u16>,
    /// What happened (`created`, `updated`, `failed` …).
    pub outcome: String,
    /// The error, for failures.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
}

/// The event's name in the store and the log.
pub fn event_name(event: UserEvent) -> &'static str {
    match event {
        UserEvent::Created => "created",
        UserEvent::Updated => "updated",
        UserEvent::Blocked => "blocked",
        UserEvent::Unblocked => "unblocked",
        UserEvent::Deleted => "deleted",
        UserEvent::Reconcile => "reconcile",
    }
}

pub(crate) fn event_from_name(name: &str) -> Option<UserEvent> {
    Some(match name {
        "created" => UserEvent::Created,
        "updated" => UserEvent::Updated,
        "blocked" => UserEvent::Blocked,
        "unblocked" => UserEvent::Unblocked,
        "deleted" => UserEvent::Deleted,
        "reconcile" => UserEvent::Reconcile,
        _ => return None,
    })
}

/// A user's stored `fields` column as a JSON object; anything else reads as no fields.
fn fields_from_json(fields: &str) -> Map<String, Value> {
    serde_json::from_str::<Value>(fields)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default()
}

/// An outbox row's event name and user JSON, read; `None` when this version cannot read
/// either (the row is skipped rather than trusted).
fn decode_event(event: &str, user_json: &str) -> Option<(UserEvent, UserRecord)> {
    Some((
        event_from_name(event)?,
        serde_json::from_str::<Value>(user_json)
            .ok()
            .as_ref()
            .and_then(UserRecord::from_json)?,
    ))
}
/// How long a worker's claim on outbox events lasts by default; see
/// [`Store::set_claim_lease`].
pub const DEFAULT_CLAIM_LEASE: Duration = Duration::from_secs(60);

/// How long opening a shared store waits for its database by default.
pub const DEFAULT_CONNECT_WAIT: Duration = Duration::from_secs(30);

/// The store, on SQLite or on a shared database.
pub struct Store {
    backend: Backend,
    /// Open [`Store::batch`] calls: an inner one joins the outer transaction.
    depth: u32,
    /// This process's name in the outbox's `claimed_by`.
    worker: String,
    lease: Duration,
}

enum Backend {
    Sqlite(SqliteStore),
    Shared(SharedStore),
}

/// Calls the same method on whichever store it is.
macro_rules! dispatch {
    ($self:expr, $s:ident => $call:expr) => {
        match &$self.backend {
            Backend::Sqlite($s) => $call,
            Backend::Shared($s) => $call,
        }
    };
    (mut $self:expr, $s:ident => $call:expr) => {
        match &mut $self.backend {
            Backend::Sqlite($s) => $call,
            Backend::Shared($s) => $call,
        }
    };
}

impl Store {
    /// Opens (creating if needed) the SQLite store at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        Ok(Store::with_backend(Backend::Sqlite(SqliteStore::open(
            path,
        )?)))
    }

    /// Opens the store `url` names: an SQLite file, or a PostgreSQL or MariaDB database
    /// (waiting up to `wait` for one that is starting). The schema is created or
    /// migrated.
    pub fn open_url(url: &DatabaseUrl, wait: Duration) -> anyhow::Result<Store> {
        match url {
            DatabaseUrl::Sqlite(path) => Store::open(path),
            DatabaseUrl::Server { .. } => Ok(Store::with_backend(Backend::Shared(
                SharedStore::connect(url, wait)?,
            ))),
        }
    }

    fn with_backend(backend: Backend) -> Store {
        Store {
            backend,
            depth: 0,
            worker: worker_name(),
            lease: DEFAULT_CLAIM_LEASE,
        }
    }

    /// True on a shared database (many workers may drain its outbox at once).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Shared(_))
    }

    /// This process's name in the outbox's `claimed_by` (host, pid and a random part).
    pub fn worker_name(&self) -> &str {
        &self.worker
    }

    /// How long a claim on outbox events lasts before another worker may take them
    /// (default [`DEFAULT_CLAIM_LEASE`]). A delivery extends it while it runs
    /// ([`Store::keep_leases`]), so it need only outlast a database outage, not a batch.
    pub fn set_claim_lease(&mut self, lease: Duration) {
        self.lease = lease;
    }

    /// True while the database answers (always on SQLite).
    pub fn is_alive(&mut self) -> bool {
        match &mut self.backend {
            Backend::Sqlite(_) => true,
            Backend::Shared(s) => s.is_alive(),
        }
    }

    /// Connects to a shared database again after it went away, waiting up to `wait`;
    /// nothing to do on SQLite.
    pub fn reconnect(&mut self, wait: Duration) -> anyhow::Result<()> {
        self.depth = 0;
        match &mut self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Shared(s) => s.reconnect(wait),
        }
    }

    /// Writes a user in an SQLite transaction (the SQLite directory's writes).
    pub(crate) fn write_user(tx: &Transaction<'_>, user: &UserRecord) -> anyhow::Result<()> {
        SqliteStore::write_user(tx, user)
    }

    /// Raises the high-water mark of numeric ids given out, in an SQLite transaction.
    pub(crate) fn remember_user_id(tx: &Transaction<'_>, id: &str) -> anyhow::Result<()> {
        SqliteStore::remember_user_id(tx, id)
    }

    /// Adds a user; with `provision`, records its `created` event in the same transaction.
    pub fn add_user(&mut self, user: UserRecord, provision: bool) -> anyhow::Result<UserRecord> {
        dispatch!(mut self, s => s.add_user(user, provision))
    }

    /// Imports many users in one transaction, without events (a site being set up; a sync
    /// provisions them). Returns how many were written.
    pub fn import_users(
        &mut self,
        users: impl IntoIterator<Item = anyhow::Result<UserRecord>>,
    ) -> anyhow::Result<usize> {
        dispatch!(mut self, s => s.import_users(users))
    }

    /// Changes a user and records the event in the same transaction.
    pub fn change_user(
        &mut self,
        id: &str,
        event: UserEvent,
        change: impl FnOnce(&mut UserRecord),
    ) -> anyhow::Result<UserRecord> {
        dispatch!(mut self, s => s.change_user(id, event, change))
    }

    /// A user by id.
    pub fn user(&self, id: &str) -> anyhow::Result<Option<UserRecord>> {
        dispatch!(self, s => s.user(id))
    }

    /// Users whose id, name or email is `needle` (case-insensitive for name and email).
    pub fn find_users(&self, needle: &str) -> anyhow::Result<Vec<UserRecord>> {
        dispatch!(self, s => s.find_users(needle))
    }

    /// Every user, in id order.
    pub fn all_users(&self) -> anyhow::Result<Vec<UserRecord>> {
        dispatch!(self, s => s.all_users())
    }

    /// The number of users.
    pub fn user_count(&self) -> anyhow::Result<u64> {
        dispatch!(self, s => s.user_count())
    }

    /// The stored link of a user.
    pub fn link(&self, user_id: &str) -> anyhow::Result<Option<StoredLink>> {
        dispatch!(self, s => s.link(user_id))
    }

    /// Every link, keyed by CMS user id.
    pub fn all_links(&self) -> anyhow::Result<Vec<(String, StoredLink)>> {
        dispatch!(self, s => s.all_links())
    }

    /// Stores (or, with `None`, removes) a user's link.
    pub fn save_link(
        &mut self,
        user_id: &str,
        link: Option<&Link>,
        fingerprint: &str,
    ) -> anyhow::Result<()> {
        dispatch!(mut self, s => s.save_link(user_id, link, fingerprint))
    }

    /// Events that may be delivered now: the oldest unparked event of each user whose retry
    /// time has come, so one user's changes are never reordered while they are retried.
    /// A parked event holds no one up: the changes after it may mend what it could not
    /// (a corrected email, say), and the retry of a parked event sends the user as they
    /// are then, not its old values (see [`Store::requeue_parked`]), so nothing older can
    /// land after them. The PHP sample site does the same. With `ignore_schedule`, retry
    /// times are not waited for (a sync drains everything). Nothing is claimed: delivery
    /// uses [`Store::claim_due`].
    pub fn due_events(
        &self,
        now_ms: i64,
        ignore_schedule: bool,
        limit: u32,
    ) -> anyhow::Result<Vec<OutboxEvent>> {
        dispatch!(self, s => s.due_events(now_ms, ignore_schedule, limit))
    }

    /// The events this process should deliver now. On SQLite (one worker) the due events
    /// ([`Store::due_events`]). On a shared database the events claimed for this worker
    /// under a lease ([`SharedStore::claim_events`]): due ones only, since a retry time
    /// another worker set is kept whatever `ignore_schedule` says.
    pub fn claim_due(
        &mut self,
        now_ms: i64,
        ignore_schedule: bool,
        limit: u32,
    ) -> anyhow::Result<Vec<OutboxEvent>> {
        let lease = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        match &mut self.backend {
            Backend::Sqlite(s) => s.due_events(now_ms, ignore_schedule, limit),
            Backend::Shared(s) => s.claim_events(&self.worker, now_ms, lease, limit),
        }
    }

    /// Every event still in the outbox, parked ones included.
    pub fn pending_events(&self) -> anyhow::Result<Vec<OutboxEvent>> {
        dispatch!(self, s => s.pending_events())
    }

    /// Removes a delivered event (on a shared database, only while this worker's claim on
    /// it stands: see [`SharedStore::complete_event`]).
    pub fn complete_event(&mut self, seq: i64) -> anyhow::Result<()> {
        match &mut self.backend {
            Backend::Sqlite(s) => s.complete_event(seq),
            Backend::Shared(s) => s.complete_event(&self.worker, seq),
        }
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
        match &mut self.backend {
            Backend::Sqlite(s) => s.fail_event(seq, attempts, next_attempt_ms, error, park),
            Backend::Shared(s) => {
                s.fail_event(&self.worker, seq, attempts, next_attempt_ms, error, park)
            }
        }
    }

    /// Puts the users with parked events back in line, each as the one change they need
    /// now; returns how many users.
    ///
    /// A parked event holds the user as they were when it was queued. Since then, later
    /// events of the user may have been delivered, or a sync may have sent a newer state.
    /// Replaying it would write old values over newer ones. So each such user's events are
    /// replaced, in one transaction, by one event: a `reconcile` with the user as the CMS
    /// holds them now, or the `deleted` event with the last snapshot when the CMS no longer
    /// has them. A user whose last snapshot cannot be read (only a hand-edited database
    /// has one) keeps their events, still parked; on a shared database, so does a user
    /// one of whose events a worker is delivering right now.
    pub fn requeue_parked(&mut self) -> anyhow::Result<usize> {
        match &mut self.backend {
            Backend::Sqlite(s) => s.requeue_parked(),
            Backend::Shared(s) => s.requeue_parked(crate::clock::now_ms()),
        }
    }

    /// (pending, parked) counts.
    pub fn outbox_depth(&self) -> anyhow::Result<(u64, u64)> {
        dispatch!(self, s => s.outbox_depth())
    }

    /// Appends to the provisioning log.
    pub fn append_log(&mut self, entry: &LogEntry) -> anyhow::Result<()> {
        dispatch!(mut self, s => s.append_log(entry))
    }

    /// The newest log entries first, optionally for one user or failures only.
    pub fn log_entries(
        &self,
        user_id: Option<&str>,
        failed_only: bool,
        limit: u32,
    ) -> anyhow::Result<Vec<LogEntry>> {
        dispatch!(self, s => s.log_entries(user_id, failed_only, limit))
    }

    /// Reads a setting.
    pub fn meta(&self, key: &str) -> anyhow::Result<Option<String>> {
        dispatch!(self, s => s.meta(key))
    }

    /// Writes a setting.
    pub fn set_meta(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        dispatch!(mut self, s => s.set_meta(key, value))
    }

    /// Removes a metadata value.
    pub fn delete_meta(&mut self, key: &str) -> anyhow::Result<()> {
        dispatch!(mut self, s => s.delete_meta(key))
    }

    /// Runs `f` in one transaction (for batches of link and log writes). A `batch` inside
    /// another joins it: both commit together.
    pub fn batch<T>(
        &mut self,
        f: impl FnOnce(&mut Store) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        if self.depth > 0 {
            return f(self);
        }
        match &self.backend {
            Backend::Sqlite(s) => s.conn.execute_batch("BEGIN IMMEDIATE")?,
            Backend::Shared(s) => s.begin()?,
        }
        self.depth = 1;
        let result = f(self);
        self.depth = 0;
        match result {
            Ok(v) => {
                match &self.backend {
                    Backend::Sqlite(s) => s.conn.execute_batch("COMMIT")?,
                    Backend::Shared(s) => s.commit()?,
                }
                Ok(v)
            }
            Err(e) => {
                match &self.backend {
                    Backend::Sqlite(s) => {
                        let _ = s.conn.execute_batch("ROLLBACK");
                    }
                    Backend::Shared(s) => s.rollback(),
                }
                Err(e)
            }
        }
    }
}

/// `host:pid:random`: unique per process, and says where a lease's worker runs.
fn worker_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into());
    let mut random = [0u8; 4];
    let _ = getrandom::getrandom(&mut random);
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        u32::from_le_bytes(random)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserRecord {
        UserRecord {
            id: String::new(),
            name: name.into(),
            mail: format!("{name}@example.com"),
            fields: Map::new(),
            active: true,
        }
    }

    /// A store in a fresh file of its own, and the directory to remove after.
    fn fresh_store(name: &str) -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        (Store::open(&dir.join("a.db")).unwrap(), dir)
    }

    #[test]
    fn changes_and_events_are_written_together_and_ordered_per_user() {
        let (mut s, dir) = fresh_store("order");
        let a = s.add_user(user("alice"), true).unwrap();
        let b = s.add_user(user("bob"), true).unwrap();
        assert_ne!(a.id, b.id);
        s.change_user(&a.id, UserEvent::Blocked, |u| u.active = false)
            .unwrap();
        assert!(s.add_user(user("ALICE"), true).is_err(), "names are unique");
        let due = s.due_events(0, false, 10).unwrap();
        // alice's second event waits behind her first.
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].user_id, a.id);
        s.fail_event(due[0].seq, 1, i64::MAX, "boom", false)
            .unwrap();
        let due = s.due_events(0, false, 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].user_id, b.id);
        assert_eq!(s.outbox_depth().unwrap(), (3, 0));
        s.change_user(&b.id, UserEvent::Deleted, |_| {}).unwrap();
        assert!(s.user(&b.id).unwrap().is_none());
        assert_eq!(s.find_users("ALICE@example.com").unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Parks the due event of `user_id` as a permanent failure.
    fn park_due(s: &mut Store, user_id: &str) {
        let due = s.due_events(0, true, 100).unwrap();
        let event = due.iter().find(|e| e.user_id == user_id).unwrap();
        s.fail_event(event.seq, 1, 0, "401 authentication rejected", true)
            .unwrap();
    }

    #[test]
    fn a_retried_parked_user_is_sent_as_the_cms_holds_them_now() {
        let (mut s, dir) = fresh_store("requeue");
        // alice's creation is parked; her later change is due all the same.
        let alice = s.add_user(user("alice"), true).unwrap();
        park_due(&mut s, &alice.id);
        s.change_user(&alice.id, UserEvent::Updated, |u| {
            u.mail = "alice.new@example.com".into();
        })
        .unwrap();
        let due = s.due_events(0, false, 10).unwrap();
        assert!(
            due.iter()
                .any(|e| e.user_id == alice.id && e.event == UserEvent::Updated),
            "a parked event holds no one up"
        );
        // bob's creation is only queued: not the retry's business.
        let bob = s.add_user(user("bob"), true).unwrap();
        // carol's creation is parked, then she is deleted.
        let carol = s.add_user(user("carol"), true).unwrap();
        park_due(&mut s, &carol.id);
        s.change_user(&carol.id, UserEvent::Deleted, |_| {})
            .unwrap();
        assert_eq!(s.outbox_depth().unwrap(), (3, 2));

        assert_eq!(s.requeue_parked().unwrap(), 2);

        let events = s.pending_events().unwrap();
        let of =
            |id: &str| -> Vec<&OutboxEvent> { events.iter().filter(|e| e.user_id == id).collect() };
        let [a] = of(&alice.id)[..] else {
            panic!("alice has one event: {:?}", of(&alice.id).len())
        };
        assert_eq!(a.event, UserEvent::Reconcile);
        assert_eq!(a.user.mail, "alice.new@example.com", "her current state");
        assert!(!a.parked && a.attempts == 0);
        let [b] = of(&bob.id)[..] else {
            panic!("bob keeps his one event")
        };
        assert_eq!(b.event, UserEvent::Created);
        let [c] = of(&carol.id)[..] else {
            panic!("carol has one event")
        };
        assert_eq!(c.event, UserEvent::Deleted);
        assert_eq!(c.user.name, "carol", "her last snapshot");
        assert_eq!(s.outbox_depth().unwrap(), (3, 0));
        // Every user's event is due again, in the order they were first queued.
        let due: Vec<String> = s
            .due_events(0, false, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.user_id)
            .collect();
        assert_eq!(due, [bob.id.clone(), alice.id.clone(), carol.id.clone()]);
        assert_eq!(s.requeue_parked().unwrap(), 0, "nothing parked is left");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// XXH64 gives the reference implementation's values (xxHash's own, and the
    /// `twox-hash` crate's for inputs of every length to 2,000 bytes, checked once).
    #[test]
    fn xxh64_is_the_reference_one() {
        assert_eq!(xxh64(b""), 0xef46_db37_51d8_e999);
        assert_eq!(xxh64(b"abc"), 0x44bc_2cf5_ad77_0999);
        // 111 bytes take every path: three 32-byte stripes, an 8-byte word, a 4-byte
        // word and 3 single bytes.
        let long: Vec<u8> = (0..111u8).collect();
        assert_eq!(xxh64(&long), 0x666c_c5e3_8345_de58);
    }

    /// Fingerprints are stored, so their values must not drift between versions: both
    /// forms pinned (the legacy one is what versions before the policy digest wrote).
    #[test]
    fn fingerprints_keep_their_values() {
        let mut fields = Map::new();
        fields.insert("field_first_name".into(), "Ada".into());
        fields.insert("roles".into(), serde_json::json!(["editor"]));
        let ada = UserRecord {
            id: "42".into(),
            name: "ada".into(),
            mail: "ada@example.com".into(),
            fields,
            active: true,
        };
        let policy = r#"{"deprovision": "delete"}"#;
        assert_eq!(ada.legacy_fingerprint(policy), "fc27f2d11e9154bc");
        let fields = Value::Object(ada.fields.clone()).to_string();
        let text = StoredUserText {
            id: &ada.id,
            name: &ada.name,
            mail: &ada.mail,
            fields: &fields,
            active: ada.active,
        };
        assert_eq!(
            stored_legacy_fingerprint(&text, &legacy_policy_member(policy), &mut Vec::new()),
            "fc27f2d11e9154bc"
        );
        assert_eq!(ada.fingerprint(policy), "v2-4e776123dafac581");
        assert_eq!(
            ada.fingerprint_with(PolicyDigest::of(policy)),
            ada.fingerprint(policy)
        );
        assert!(is_current_fingerprint(&ada.fingerprint(policy)));
        assert!(!is_current_fingerprint(&ada.legacy_fingerprint(policy)));
        // Any change to the user or the policy is a change.
        assert_ne!(ada.fingerprint(""), ada.fingerprint(policy));
        let blocked = UserRecord {
            active: false,
            ..ada.clone()
        };
        assert_ne!(blocked.fingerprint(policy), ada.fingerprint(policy));
    }
}

#[cfg(all(test, feature = "db-test-support"))]
mod shared_tests;
