//! The scheduled reconcile shared by every `daemon` on one PostgreSQL or MariaDB (issue 30):
//! one run per schedule for all of them, the remote users listed once per run, and the
//! users split into partitions that the daemons claim like outbox events.
//!
//! - **The schedule is one row** (`reconcile_schedule`). A daemon whose run is due locks
//!   it (`FOR UPDATE SKIP LOCKED`: one that finds it locked goes on delivering) and, when
//!   no run is in progress and the next one is due, starts run `last_run_id + 1` and moves
//!   the schedule on by its `every`. So four daemons with `--every 60s` make one reconcile a
//!   minute, and the next run starts only once the last one is finished (or expired).
//! - **The listing is taken once per run**, by the daemon that started it, under a lease
//!   (`listing_by`, `listing_until`; another daemon takes it over when that one dies), and
//!   only when it pays: a verifying run, or at least [`crate::sync::INDEX_THRESHOLD`] users
//!   without a link (the creates a listing saves look-ups for). The document
//!   (`export-remote-index`) is stored in [`LISTING_CHUNK`]-byte rows of
//!   `reconcile_listing`, read back by each daemon once per run, imported into its
//!   component instances, and deleted when the run ends.
//! - **Partitions are ranges of user ids**, `after < id <= upto`, cut when the run opens so
//!   that each holds about the same number of users (the cuts' row numbers picked in one
//!   ordered read of the ids), and at most [`MAX_PARTITION_USERS`] (more partitions than
//!   `--partitions` when needed: a partition holds its plan whole).
//!   A range is what the paged plan reads anyway (keyset pages, [`crate::sync_pages`]),
//!   so a partition reads only its own users, and users added during the run fall in one
//!   of them (the first and last are open-ended). A hash of the id would have needed a
//!   stored hash column in the store's `users` table, or every partition reading every
//!   user. One more partition (`orphans`) plans the links whose user is gone, once per run.
//! - **A partition is claimed** like an outbox event: `FOR UPDATE SKIP LOCKED`,
//!   `claimed_by`, `claimed_until`, renewed by a keeper thread while it runs, `done_at`
//!   when finished. A dead daemon's partition is taken over after its lease; the taker does not
//!   use the run's listing (writes of the dead one may have landed since it was taken), so
//!   its matching looks each user up, and no user is created twice. A partition that
//!   failed [`MAX_ATTEMPTS`] times is given up (its users wait for the next run).
//! - **A daemon keeps its component instances through a run** ([`SessionPool`]): each is
//!   opened, told the server's dialect, handed the run's listing and discovers the server
//!   once per run, not once per partition (16 partitions × 8 instances were 128
//!   discoveries and 128 imports of the listing per run). A partition runs on no more
//!   instances than its users fill full `/Bulk` batches of. Partitions taken over (no
//!   listing) run on instances of their own.
//! - **The deprovisioning threshold is the run's**: the run's budget is the threshold of its
//!   linked users, and each partition reserves its deactivations and deletions from it
//!   before it sends anything. A partition that would overdraw it refuses the run, which
//!   then ends (`refused`): at most the threshold is deprovisioned in a run, as with one
//!   process, though a refusal may come after other partitions were sent.
//! - A run whose partitions nobody has held for [`run_max_age`] is marked `expired`, so a
//!   stuck run (all daemons gone, or all of them `--deliver-only`) does not stop the
//!   schedule for good.
//!
//! Nothing here prints: [`SharedReconcile::step`] returns what it did.

mod schema;

use std::time::Duration;

use anyhow::{Context, bail};

pub use schema::{RECONCILE_COMPONENT, RECONCILE_MIGRATIONS};

use crate::clock::{now_ms, now_rfc3339};
use crate::database::{DatabaseUrl, Db, Dialect, SqlValue, migrate};
use crate::runtime::{ConnectorSettings, Runtime};
use crate::store::Store;
use crate::sync::{
    INDEX_THRESHOLD, SessionPool, Slice, SyncOptions, SyncPlan, SyncProgress, SyncSummary,
    list_remote_users, open_planner, sync_slice,
};
use crate::sync_pages::{IdRange, for_each_orphan_link, plan_paged_in};

/// Partitions a run is cut into by default.
pub const DEFAULT_PARTITIONS: u32 = 16;
/// The largest listing chunk stored in one row, in bytes (well under MariaDB's default
/// `max_allowed_packet` of 16 MB).
pub const LISTING_CHUNK: usize = 1 << 20;
/// The most users a partition holds, whatever `--partitions` says: a partition plans its
/// users whole before it sends, so this bounds what a daemon holds (a few KB a user that
/// needs a call, as a single sync holds before it streams, [`crate::sync::HOLD`]).
pub const MAX_PARTITION_USERS: usize = crate::sync::HOLD;
/// Claims of a partition before it is given up for this run.
pub const MAX_ATTEMPTS: i64 = 3;
/// Runs kept in the tables (their rows and partitions, for `status` and tests); older ones
/// are deleted when a run ends.
const RUNS_KEPT: i64 = 50;

/// How the daemons' shared schedule runs.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Between the starts of two runs.
    pub every: Duration,
    /// Between two verifying runs (`sync --full`).
    pub verify_every: Duration,
    /// Partitions a run started by this daemon is cut into.
    pub partitions: u32,
    /// A claim's lease (`[host] claim_lease_secs`), renewed while a partition runs.
    pub lease: Duration,
}

/// How long a run may go without any of its partitions held before it is expired: ten
/// times the schedule, and at least an hour.
pub fn run_max_age(every: Duration) -> Duration {
    (every * 10).max(Duration::from_secs(3600))
}

/// What one [`SharedReconcile::step`] did, for the daemon to print.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// This daemon started a run.
    RunStarted {
        /// The run.
        run: i64,
        /// A verifying run.
        full: bool,
    },
    /// This daemon listed the remote users for the run and stored the listing.
    Listed {
        /// The run.
        run: i64,
        /// Remote users listed.
        users: u64,
        /// The listing document's size in bytes, as stored.
        bytes: u64,
        /// Requests the listing took.
        requests: u64,
    },
    /// This daemon opened the run's partitions.
    Opened {
        /// The run.
        run: i64,
        /// Partitions of users (the orphans' partition not counted).
        partitions: u32,
    },
    /// This daemon finished a partition.
    PartitionDone {
        /// The run.
        run: i64,
        /// The partition.
        part: i64,
        /// What the partition's sync did.
        summary: SyncSummary,
    },
    /// A partition failed as a whole (the database, the component); it is claimed again.
    PartitionFailed {
        /// The run.
        run: i64,
        /// The partition.
        part: i64,
        /// Why.
        error: String,
    },
    /// The run ended: `done`, `refused` (over the deprovisioning threshold) or `expired`.
    RunEnded {
        /// The run.
        run: i64,
        /// How.
        state: String,
        /// Why, for a refused or expired run.
        note: Option<String>,
    },
    /// Something the run works around (listing failed: matching looks users up).
    Warning(String),
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::RunStarted { run, full } => write!(
                f,
                "reconcile run {run}: started ({})",
                if *full { "verifying" } else { "sync" }
            ),
            Event::Listed {
                run,
                users,
                bytes,
                requests,
            } => write!(
                f,
                "reconcile run {run}: listed {users} remote users in {requests} requests, stored {bytes} bytes for every worker"
            ),
            Event::Opened { run, partitions } => {
                write!(f, "reconcile run {run}: {partitions} partitions open")
            }
            Event::PartitionDone { run, part, summary } => {
                write!(f, "reconcile run {run} partition {part}: {summary}")
            }
            Event::PartitionFailed { run, part, error } => {
                write!(f, "reconcile run {run} partition {part} failed: {error}")
            }
            Event::RunEnded { run, state, note } => {
                write!(f, "reconcile run {run}: {state}")?;
                if let Some(note) = note {
                    write!(f, " ({note})")?;
                }
                Ok(())
            }
            Event::Warning(message) => write!(f, "reconcile: {message}"),
        }
    }
}

/// A partition this daemon holds.
struct Claim {
    run: i64,
    part: i64,
    kind: String,
    range: IdRange,
    attempts: i64,
}

/// A run as its row says.
struct Run {
    id: i64,
    state: String,
    full: bool,
    listed: Option<i64>,
}

/// One daemon's part in the shared reconcile: two connections of its own to the store's
/// database (one for the claims, leases and listing, one for the plan's pages).
pub struct SharedReconcile {
    url: DatabaseUrl,
    coord: Db,
    /// The plan's pages are read through it (in a cell, for the planner closure).
    pages: std::cell::RefCell<Db>,
    worker: String,
    schedule: Schedule,
    /// The listing of the run last read, so a daemon reads it once per run.
    listing: Option<(i64, Option<String>)>,
    /// The component instances of the run this daemon last ran partitions of (see
    /// [`RunInstances`]).
    instances: Option<RunInstances>,
}

/// The component instances one daemon keeps through one run, so that each is opened,
/// handed the run's listing and discovers the server once per run, not once per partition
/// it claims: one pool for the partitions matched against the run's listing, one for
/// those taken over (which look users up, see [`SharedReconcile::step`]). Dropped when
/// the daemon claims a partition of another run.
struct RunInstances {
    run: i64,
    listed: SessionPool,
    looked_up: SessionPool,
}

fn one_int(db: &mut Db, sql: &str, params: &[SqlValue]) -> anyhow::Result<i64> {
    db.query_opt(sql, params)?
        .map(|r| r.int(0))
        .transpose()?
        .context("a count returned no row")
}

impl SharedReconcile {
    /// Connects to a shared database (waiting up to `wait`) and brings the `reconcile`
    /// schema up to date. `worker` names this daemon in claims (the store's worker name).
    pub fn connect(
        url: &DatabaseUrl,
        wait: Duration,
        worker: &str,
        schedule: Schedule,
    ) -> anyhow::Result<SharedReconcile> {
        if url.dialect() == Dialect::Sqlite {
            bail!("the shared reconcile needs PostgreSQL or MariaDB; on SQLite one daemon syncs");
        }
        let mut coord = Db::connect_with_retry(url, wait)?;
        migrate(&mut coord, RECONCILE_COMPONENT, RECONCILE_MIGRATIONS)
            .with_context(|| format!("the reconcile schema on {url}"))?;
        let pages = Db::connect_with_retry(url, wait)?;
        Ok(SharedReconcile {
            url: url.clone(),
            coord,
            pages: std::cell::RefCell::new(pages),
            worker: worker.to_string(),
            schedule,
            listing: None,
            instances: None,
        })
    }

    /// Connects again when a connection was lost (the database went away).
    fn reconnect_if_lost(&mut self) -> anyhow::Result<()> {
        if !self.coord.is_alive() {
            self.coord = Db::connect(&self.url)?;
        }
        if !self.pages.get_mut().is_alive() {
            *self.pages.get_mut() = Db::connect(&self.url)?;
        }
        Ok(())
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.schedule.lease.as_millis())
            .unwrap_or(i64::MAX)
            .max(1000)
    }

    /// One step of this daemon's part: starts a run when one is due (and lists the remote
    /// users for it), then claims one partition and runs it. Returns what it did; empty
    /// when there was nothing to do. `options` are the daemon's sync options; `full` is set
    /// per run.
    pub fn step(
        &mut self,
        runtime: &Runtime,
        settings: &ConnectorSettings,
        store: &mut Store,
        options: &SyncOptions,
    ) -> anyhow::Result<Vec<Event>> {
        self.reconnect_if_lost()?;
        let mut events = Vec::new();
        self.start_if_due(runtime, settings, store, options, &mut events)?;
        if let Some(claim) = self.claim()? {
            self.run_partition(runtime, settings, store, options, claim, &mut events)?;
            return Ok(events);
        }
        // Nothing this daemon can claim now: its instances are let go until it claims
        // again (a takeover of this run, or the next run, opens fresh ones).
        self.instances = None;
        if let Some(run) = self.open_run_id()? {
            // Nothing left to claim: the run may be over (its last partitions were given
            // up, or were finished by a daemon that died before it could end the run, or
            // are being ended by another daemon just now: whichever comes first ends it).
            self.finish(runtime, settings, store, run, &mut events)?;
        }
        Ok(events)
    }

    /// Under the schedule's row lock: expires a stale run, starts a due one, or takes over
    /// the listing of a run whose lister died. Then, outside any transaction, lists and
    /// opens the run this daemon holds the listing of.
    fn start_if_due(
        &mut self,
        runtime: &Runtime,
        settings: &ConnectorSettings,
        store: &Store,
        options: &SyncOptions,
        events: &mut Vec<Event>,
    ) -> anyhow::Result<()> {
        let now = now_ms();
        let lease = self.lease_ms();
        let worker = self.worker.clone();
        let schedule = self.schedule.clone();
        let threshold = options.threshold;
        let allow_deletes = options.allow_deletes;
        let to_list = self
            .coord
            .transaction(|db| -> anyhow::Result<Option<Run>> {
                let Some(row) = db.query_opt(
                "SELECT next_run_ms, next_verify_ms, run_id, last_run_id FROM reconcile_schedule
                 WHERE id = 1 FOR UPDATE SKIP LOCKED",
                &[],
            )?
            else {
                // Another daemon is starting or ending a run.
                return Ok(None);
            };
                let (next_run, next_verify) = (row.int(0)?, row.int(1)?);
                let (current, last) = (row.opt_int(2)?, row.int(3)?);
                if let Some(run) = current {
                    let Some(r) = db.query_opt(
                        "SELECT state, full_sync, listing_by, listing_until, started_ms, listed
                     FROM reconcile_runs WHERE id = ? FOR UPDATE",
                        &[run.into()],
                    )?
                    else {
                        db.execute(
                            "UPDATE reconcile_schedule SET run_id = NULL WHERE id = 1",
                            &[],
                        )?;
                        return Ok(None);
                    };
                    let state = r.text(0)?;
                    let full = r.int(1)? != 0;
                    let listing_until = r.opt_int(3)?.unwrap_or(0);
                    let listed = r.opt_int(5)?;
                    if state == "listing" && listing_until < now {
                        // The lister died: this daemon lists instead.
                        db.execute(
                        "UPDATE reconcile_runs SET listing_by = ?, listing_until = ? WHERE id = ?",
                        &[
                            worker.as_str().into(),
                            now.saturating_add(lease).into(),
                            run.into(),
                        ],
                    )?;
                        return Ok(Some(Run {
                            id: run,
                            state,
                            full,
                            listed,
                        }));
                    }
                    let max_age =
                        i64::try_from(run_max_age(schedule.every).as_millis()).unwrap_or(i64::MAX);
                    let held = one_int(
                        db,
                        "SELECT COUNT(*) FROM reconcile_partitions
                     WHERE run_id = ? AND done_at IS NULL AND claimed_until >= ?",
                        &[run.into(), now.into()],
                    )?;
                    let last_claim = db
                        .query_opt(
                            "SELECT MAX(claimed_until) FROM reconcile_partitions WHERE run_id = ?",
                            &[run.into()],
                        )?
                        .map(|r| r.opt_int(0))
                        .transpose()?
                        .flatten()
                        .unwrap_or(r.int(4)?);
                    if state != "listing" && state != "open" {
                        // Ended, but the schedule still names it: free the schedule.
                        db.execute(
                            "UPDATE reconcile_schedule SET run_id = NULL WHERE id = 1",
                            &[],
                        )?;
                    } else if held == 0
                        && state != "listing"
                        && now.saturating_sub(last_claim) > max_age
                    {
                        // Nobody held a partition of it for that long (the last lease's end
                        // is the last sign of life; the start when none was ever claimed).
                        end_run(db, run, "expired", Some("no worker held it"))?;
                    } else {
                        return Ok(None);
                    }
                }
                if now < next_run {
                    return Ok(None);
                }
                let run = last + 1;
                let full = now >= next_verify;
                let linked = one_int(db, "SELECT COUNT(*) FROM links", &[])?;
                let users = one_int(db, "SELECT COUNT(*) FROM users", &[])?;
                let budget = if allow_deletes {
                    i64::MAX
                } else {
                    i64::try_from(threshold.limit(u64::try_from(linked).unwrap_or(0)))
                        .unwrap_or(i64::MAX)
                };
                // The listing pays for a verifying run (it counts the drift) and for many
                // creates (matching locally instead of a look-up each).
                let list = full || users.saturating_sub(linked) >= INDEX_THRESHOLD as i64;
                db.execute(
                    "INSERT INTO reconcile_runs (id, state, full_sync, started_at, started_ms,
                     started_by, listing_by, listing_until, budget, deprovisions)
                 VALUES (?, 'listing', ?, ?, ?, ?, ?, ?, ?, 0)",
                    &[
                        run.into(),
                        full.into(),
                        now_rfc3339().into(),
                        now.into(),
                        worker.as_str().into(),
                        worker.as_str().into(),
                        now.saturating_add(lease).into(),
                        budget.into(),
                    ],
                )?;
                let every = i64::try_from(schedule.every.as_millis()).unwrap_or(i64::MAX);
                let verify_every =
                    i64::try_from(schedule.verify_every.as_millis()).unwrap_or(i64::MAX);
                db.execute(
                    "UPDATE reconcile_schedule SET run_id = ?, last_run_id = ?, next_run_ms = ?,
                     next_verify_ms = ? WHERE id = 1",
                    &[
                        run.into(),
                        run.into(),
                        now.saturating_add(every).into(),
                        if full {
                            now.saturating_add(verify_every)
                        } else {
                            next_verify
                        }
                        .into(),
                    ],
                )?;
                Ok(Some(Run {
                    id: run,
                    state: "new".into(),
                    full,
                    // -1: decided not to list.
                    listed: if list { None } else { Some(-1) },
                }))
            })?;
        let Some(run) = to_list else {
            return Ok(());
        };
        if run.state == "new" {
            events.push(Event::RunStarted {
                run: run.id,
                full: run.full,
            });
        }
        // Listing a large server is one component call that can outlast the lease, and
        // storing the listing and cutting the partitions take a while more on a loaded
        // database: a keeper extends the lease until the run is open, so no other daemon
        // takes the listing over and lists again meanwhile (seen with a 4 s lease at load
        // 14, when the keeper covered the listing only).
        let (url, worker, lease) = (self.url.clone(), self.worker.clone(), self.lease_ms());
        keep_listing_lease(&url, run.id, &worker, lease, || {
            let listing = if run.listed == Some(-1) {
                None
            } else {
                self.take_listing(runtime, settings, store, run.id, events)
            };
            self.open_run(run.id, listing.as_ref(), events)
        })
    }

    /// Lists the remote users (one instance, as a single sync does). `None` when listing
    /// failed: the run then matches by look-ups.
    fn take_listing(
        &mut self,
        runtime: &Runtime,
        settings: &ConnectorSettings,
        store: &Store,
        run: i64,
        events: &mut Vec<Event>,
    ) -> Option<(String, u64, u64)> {
        let mut summary = SyncSummary::default();
        let mut dialect = crate::dialect::stored(store, &settings.base_url)
            .ok()
            .flatten();
        let mut warnings = Vec::new();
        // Under the listing's lease, kept by the caller ([`SharedReconcile::start_if_due`]).
        let listed = list_remote_users(
            runtime,
            settings,
            &mut summary,
            &mut |p| {
                if let SyncProgress::Warning(w) = p {
                    warnings.push(w);
                }
            },
            &mut dialect,
        );
        events.extend(warnings.into_iter().map(Event::Warning));
        match listed {
            Some((Some(document), ids)) => Some((document, ids.len() as u64, summary.requests)),
            _ => {
                events.push(Event::Warning(format!(
                    "run {run}: no remote listing; matching looks each user up"
                )));
                None
            }
        }
    }

    /// Stores the listing, cuts the partitions and opens the run, if this daemon still
    /// holds the run's listing lease.
    fn open_run(
        &mut self,
        run: i64,
        listing: Option<&(String, u64, u64)>,
        events: &mut Vec<Event>,
    ) -> anyhow::Result<()> {
        let worker = self.worker.clone();
        let partitions = i64::from(self.schedule.partitions.max(1));
        let opened = self
            .coord
            .transaction(|db| -> anyhow::Result<Option<i64>> {
                let held = db.query_opt(
                    "SELECT 1 FROM reconcile_runs
                 WHERE id = ? AND state = 'listing' AND listing_by = ? FOR UPDATE",
                    &[run.into(), worker.as_str().into()],
                )?;
                if held.is_none() {
                    // Another daemon took the listing over (this one was too slow).
                    return Ok(None);
                }
                db.execute(
                    "DELETE FROM reconcile_listing WHERE run_id = ?",
                    &[run.into()],
                )?;
                if let Some((document, _, _)) = listing {
                    for (i, chunk) in chunks(document, LISTING_CHUNK).enumerate() {
                        db.execute(
                            "INSERT INTO reconcile_listing (run_id, chunk, body) VALUES (?, ?, ?)",
                            &[run.into(), (i as i64).into(), chunk.into()],
                        )?;
                    }
                }
                // The cuts: about as many users in each range, found in one ordered read
                // of the ids (the row numbers of the cuts), not one `OFFSET` read each.
                let users = one_int(db, "SELECT COUNT(*) FROM users", &[])?;
                let parts = partition_count(partitions, users);
                let cut_rows: Vec<String> = (1..parts)
                    .map(|k| (k * users / parts).max(1).to_string())
                    .collect();
                let mut cuts: Vec<String> = Vec::new();
                if !cut_rows.is_empty() {
                    let rows = db.query(
                        &format!(
                            "SELECT id FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS n FROM users) numbered
                             WHERE n IN ({}) ORDER BY id",
                            cut_rows.join(", ")
                        ),
                        &[],
                    )?;
                    for r in &rows {
                        let id = r.text(0)?;
                        if cuts.last() != Some(&id) {
                            cuts.push(id);
                        }
                    }
                }
                let mut bounds: Vec<(Option<String>, Option<String>)> = Vec::new();
                let mut after: Option<String> = None;
                for cut in cuts {
                    bounds.push((after.clone(), Some(cut.clone())));
                    after = Some(cut);
                }
                bounds.push((after, None));
                for (part, (after, upto)) in bounds.iter().enumerate() {
                    db.execute(
                        "INSERT INTO reconcile_partitions (run_id, part, kind, id_after, id_upto)
                     VALUES (?, ?, 'users', ?, ?)",
                        &[
                            run.into(),
                            (part as i64).into(),
                            after.clone().into(),
                            upto.clone().into(),
                        ],
                    )?;
                }
                db.execute(
                "INSERT INTO reconcile_partitions (run_id, part, kind) VALUES (?, ?, 'orphans')",
                &[run.into(), (bounds.len() as i64).into()],
            )?;
                let (listed, bytes) = match listing {
                    Some((document, users, _)) => (
                        SqlValue::from(i64::try_from(*users).unwrap_or(i64::MAX)),
                        SqlValue::from(document.len() as i64),
                    ),
                    None => (SqlValue::Null, SqlValue::Null),
                };
                db.execute(
                    "UPDATE reconcile_runs SET state = 'open', listing_until = NULL, listed = ?,
                     listing_bytes = ? WHERE id = ?",
                    &[listed, bytes, run.into()],
                )?;
                Ok(Some(bounds.len() as i64))
            })?;
        if let Some(parts) = opened {
            if let Some((document, users, requests)) = listing {
                events.push(Event::Listed {
                    run,
                    users: *users,
                    bytes: document.len() as u64,
                    requests: *requests,
                });
            }
            events.push(Event::Opened {
                run,
                partitions: u32::try_from(parts).unwrap_or(u32::MAX),
            });
        }
        Ok(())
    }

    /// Claims one partition of the open run: free (never claimed, or its lease ran out)
    /// and not done. A partition claimed [`MAX_ATTEMPTS`] times already is given up.
    fn claim(&mut self) -> anyhow::Result<Option<Claim>> {
        let now = now_ms();
        let until = now.saturating_add(self.lease_ms());
        let worker = self.worker.clone();
        let Some(run) = self.open_run_id()? else {
            return Ok(None);
        };
        let claim = self
            .coord
            .transaction(|db| -> anyhow::Result<Option<Claim>> {
                loop {
                    let Some(r) = db.query_opt(
                        "SELECT part, kind, id_after, id_upto, attempts FROM reconcile_partitions
                     WHERE run_id = ? AND done_at IS NULL
                       AND (claimed_until IS NULL OR claimed_until < ?)
                     ORDER BY part LIMIT 1 FOR UPDATE SKIP LOCKED",
                        &[run.into(), now.into()],
                    )?
                    else {
                        return Ok(None);
                    };
                    let part = r.int(0)?;
                    let attempts = r.int(4)?;
                    if attempts >= MAX_ATTEMPTS {
                        db.execute(
                            "UPDATE reconcile_partitions SET done_at = ?, done_by = ?, summary = ?
                         WHERE run_id = ? AND part = ?",
                            &[
                                now_rfc3339().into(),
                                worker.as_str().into(),
                                format!("given up after {attempts} attempts").into(),
                                run.into(),
                                part.into(),
                            ],
                        )?;
                        continue;
                    }
                    db.execute(
                        "UPDATE reconcile_partitions SET claimed_by = ?, claimed_until = ?,
                         attempts = attempts + 1 WHERE run_id = ? AND part = ?",
                        &[
                            worker.as_str().into(),
                            until.into(),
                            run.into(),
                            part.into(),
                        ],
                    )?;
                    return Ok(Some(Claim {
                        run,
                        part,
                        kind: r.text(1)?,
                        range: IdRange {
                            after: r.opt_text(2)?,
                            upto: r.opt_text(3)?,
                        },
                        attempts: attempts + 1,
                    }));
                }
            })?;
        Ok(claim)
    }

    /// The run's listing, read once per run by this daemon.
    fn listing_of(&mut self, run: i64) -> anyhow::Result<Option<String>> {
        if let Some((cached, listing)) = &self.listing
            && *cached == run
        {
            return Ok(listing.clone());
        }
        let rows = self.coord.query(
            "SELECT body FROM reconcile_listing WHERE run_id = ? ORDER BY chunk",
            &[run.into()],
        )?;
        let listing = if rows.is_empty() {
            None
        } else {
            let mut document = String::new();
            for r in &rows {
                document.push_str(&r.text(0)?);
            }
            Some(document)
        };
        self.listing = Some((run, listing.clone()));
        Ok(listing)
    }

    fn run_partition(
        &mut self,
        runtime: &Runtime,
        settings: &ConnectorSettings,
        store: &mut Store,
        options: &SyncOptions,
        claim: Claim,
        events: &mut Vec<Event>,
    ) -> anyhow::Result<()> {
        let Some(full) = self
            .coord
            .query_opt(
                "SELECT full_sync FROM reconcile_runs WHERE id = ?",
                &[claim.run.into()],
            )?
            .map(|r| r.int(0))
            .transpose()?
            .map(|f| f != 0)
        else {
            return Ok(());
        };
        // A partition taken over from a worker that died matches by look-ups: its writes
        // may have landed after the listing was taken.
        let listing = if claim.attempts == 1 {
            self.listing_of(claim.run)?
        } else {
            None
        };
        if self.instances.as_ref().is_none_or(|i| i.run != claim.run) {
            self.instances = Some(RunInstances {
                run: claim.run,
                listed: SessionPool::new(),
                looked_up: SessionPool::new(),
            });
        }
        let pool = self.instances.as_ref().map(|i| {
            if listing.is_some() {
                &i.listed
            } else {
                &i.looked_up
            }
        });
        let mut options = options.clone();
        options.full = full;
        options.progress = true;
        let worker = self.worker.clone();
        let lease = self.lease_ms();
        let (run, part) = (claim.run, claim.part);
        let coord = &mut self.coord;
        let pages = &self.pages;
        let url = &self.url;
        let mut refused: Option<String> = None;
        let mut warnings = Vec::new();
        // A keeper renews the lease while the partition runs (its plan, and component
        // calls that can each take a while: a /Bulk request, its retries).
        let extend = |db: &mut Db, until: i64| renew(db, run, part, &worker, until);
        let (outcome, lost) = keep_lease(url, lease, &extend, || {
            // Deprovisions are reserved from the run's budget before anything is sent.
            let mut approve = |plan: &SyncPlan| -> anyhow::Result<()> {
                let wanted = i64::try_from(plan.deprovisions()).unwrap_or(i64::MAX);
                if let Some(note) = reserve(coord, run, part, wanted)? {
                    refused = Some(note.clone());
                    bail!("{note}");
                }
                Ok(())
            };
            let mut on_progress = |p: SyncProgress| {
                if let SyncProgress::Warning(w) = p {
                    warnings.push(w);
                }
            };
            let mut planner = |store: &Store| -> anyhow::Result<SyncPlan> {
                let mut db = pages.borrow_mut();
                match claim.kind.as_str() {
                    "orphans" => plan_orphans(runtime, settings, &mut db, store),
                    _ => plan_paged_in(runtime, settings, &mut db, store, full, &claim.range),
                }
            };
            sync_slice(
                runtime,
                settings,
                store,
                &options,
                &mut on_progress,
                &mut planner,
                Slice {
                    listing: listing.as_deref(),
                    approve: &mut approve,
                    pool,
                },
            )
        });
        events.extend(warnings.into_iter().map(Event::Warning));
        if lost {
            events.push(Event::Warning(format!(
                "run {run} partition {part}: the lease ran out while it ran; another worker may run it again"
            )));
        }
        if let Some(note) = refused {
            self.coord.transaction(|db| {
                db.query_opt(
                    "SELECT 1 FROM reconcile_schedule WHERE id = 1 FOR UPDATE",
                    &[],
                )?;
                // The refusing partition is let go: the run is over.
                db.execute(
                    "UPDATE reconcile_partitions SET claimed_until = ?
                     WHERE run_id = ? AND part = ? AND claimed_by = ?",
                    &[
                        (now_ms() - 1).into(),
                        run.into(),
                        part.into(),
                        worker.as_str().into(),
                    ],
                )?;
                end_run(db, run, "refused", Some(&note))
            })?;
            remember_as_last_sync(&mut self.coord, store, run)?;
            events.push(Event::RunEnded {
                run,
                state: "refused".into(),
                note: Some(note),
            });
            return Ok(());
        }
        match outcome {
            Ok(summary) => {
                self.coord.execute(
                    "UPDATE reconcile_partitions SET done_at = ?, done_by = ?, summary = ?,
                         claimed_until = ?
                     WHERE run_id = ? AND part = ? AND claimed_by = ? AND done_at IS NULL",
                    &[
                        now_rfc3339().into(),
                        self.worker.as_str().into(),
                        summary.to_string().into(),
                        // The lease's end is the run's last sign of life (see expiry).
                        now_ms().into(),
                        run.into(),
                        part.into(),
                        self.worker.as_str().into(),
                    ],
                )?;
                events.push(Event::PartitionDone { run, part, summary });
                self.finish(runtime, settings, store, run, events)?;
            }
            Err(e) => {
                // Free again at once; the next claim counts as another attempt.
                self.coord.execute(
                    "UPDATE reconcile_partitions SET claimed_until = ?
                     WHERE run_id = ? AND part = ? AND claimed_by = ? AND done_at IS NULL",
                    &[
                        (now_ms() - 1).into(),
                        run.into(),
                        part.into(),
                        self.worker.as_str().into(),
                    ],
                )?;
                events.push(Event::PartitionFailed {
                    run,
                    part,
                    error: format!("{e:#}"),
                });
            }
        }
        Ok(())
    }

    /// The run in progress, when it is open (its partitions cut).
    fn open_run_id(&mut self) -> anyhow::Result<Option<i64>> {
        self.coord
            .query_opt(
                "SELECT s.run_id FROM reconcile_schedule s
                 JOIN reconcile_runs r ON r.id = s.run_id
                 WHERE s.id = 1 AND r.state = 'open'",
                &[],
            )?
            .map(|r| r.int(0))
            .transpose()
    }

    /// Ends `run` if every partition is done, with a verifying run's drift (counted by
    /// whichever daemon ends it, from the run's listing, before it is dropped).
    fn finish(
        &mut self,
        runtime: &Runtime,
        settings: &ConnectorSettings,
        store: &mut Store,
        run: i64,
        events: &mut Vec<Event>,
    ) -> anyhow::Result<()> {
        if self.open_partitions(run)? > 0 {
            return Ok(());
        }
        let full = self
            .coord
            .query_opt(
                "SELECT full_sync FROM reconcile_runs WHERE id = ? AND state = 'open'",
                &[run.into()],
            )?
            .map(|r| r.int(0))
            .transpose()?
            .is_some_and(|f| f != 0);
        let drift = if full {
            match self.unlinked_remotely(runtime, settings, run) {
                Ok(drift) => drift,
                Err(e) => {
                    events.push(Event::Warning(format!(
                        "run {run}: counting the remote users no CMS user links to failed: {e:#}"
                    )));
                    None
                }
            }
        } else {
            None
        };
        let note =
            drift.map(|n| format!("drift: {n} remote users on the server linked to no CMS user"));
        if let Some(ended) = self.end_if_done(run, note)? {
            remember_as_last_sync(&mut self.coord, store, run)?;
            events.push(ended);
        }
        Ok(())
    }

    /// The run's partitions not done yet.
    fn open_partitions(&mut self, run: i64) -> anyhow::Result<i64> {
        one_int(
            &mut self.coord,
            "SELECT COUNT(*) FROM reconcile_partitions WHERE run_id = ? AND done_at IS NULL",
            &[run.into()],
        )
    }

    /// A verifying run's drift, as a single `sync --full` counts it: the remote users the
    /// run's listing holds that no link names (after the run's adoptions). `None` when the
    /// run has no listing.
    fn unlinked_remotely(
        &mut self,
        runtime: &Runtime,
        settings: &ConnectorSettings,
        run: i64,
    ) -> anyhow::Result<Option<u64>> {
        let Some(document) = self.listing_of(run)? else {
            return Ok(None);
        };
        let mut session = open_planner(runtime, settings)?;
        if let Err(e) = session.import_remote_index(&document)? {
            bail!("{}", crate::describe::describe_error(&e));
        }
        let listed = session.remote_user_ids()?;
        let mut linked = std::collections::HashSet::new();
        // The links' remote ids, in keyset pages (the snapshots are not read).
        let db = self.pages.get_mut();
        let mut after = String::new();
        loop {
            let rows = db.query(
                "SELECT user_id, remote_id FROM links WHERE user_id > ? ORDER BY user_id LIMIT 10000",
                &[after.as_str().into()],
            )?;
            let Some(last) = rows.last() else { break };
            after = last.text(0)?;
            for r in &rows {
                linked.insert(r.text(1)?);
            }
        }
        Ok(Some(
            listed.iter().filter(|id| !linked.contains(*id)).count() as u64,
        ))
    }

    /// Ends the run when every partition is done, with `note` (a verifying run's drift).
    /// Under the schedule's row lock, so of two daemons finishing the last two partitions
    /// at once, the later one sees both done.
    fn end_if_done(&mut self, run: i64, note: Option<String>) -> anyhow::Result<Option<Event>> {
        if self.open_partitions(run)? > 0 {
            return Ok(None);
        }
        self.coord.transaction(|db| {
            db.query_opt(
                "SELECT 1 FROM reconcile_schedule WHERE id = 1 FOR UPDATE",
                &[],
            )?;
            let still_open = db
                .query_opt(
                    "SELECT 1 FROM reconcile_runs WHERE id = ? AND state = 'open'",
                    &[run.into()],
                )?
                .is_some();
            let left = db.query_opt(
                "SELECT part FROM reconcile_partitions WHERE run_id = ? AND done_at IS NULL",
                &[run.into()],
            )?;
            if !still_open || left.is_some() {
                return Ok(None);
            }
            end_run(db, run, "done", note.as_deref())?;
            Ok(Some(Event::RunEnded {
                run,
                state: "done".into(),
                note,
            }))
        })
    }
}

/// A run as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStatus {
    /// The run.
    pub id: i64,
    /// `listing`, `open`, `done`, `refused` or `expired`.
    pub state: String,
    /// A verifying run.
    pub full: bool,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Its partitions (the orphans' one included).
    pub partitions: i64,
    /// Those done.
    pub done: i64,
    /// Those a worker holds now.
    pub held: i64,
    /// The workers that did its partitions.
    pub workers: i64,
    /// Remote users its listing held (none when it took no listing).
    pub listed: Option<i64>,
    /// Why it was refused or expired, or a verifying run's drift.
    pub note: Option<String>,
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "run {} ({}) {}, started {}",
            self.id,
            if self.full { "verifying" } else { "sync" },
            self.state,
            self.started_at
        )?;
        if let Some(at) = &self.finished_at {
            write!(f, ", ended {at}")?;
        }
        write!(
            f,
            "; {}/{} partitions done by {} worker(s)",
            self.done, self.partitions, self.workers
        )?;
        if self.held > 0 {
            write!(f, ", {} held now", self.held)?;
        }
        if let Some(listed) = self.listed {
            write!(f, "; {listed} remote users listed once")?;
        }
        if let Some(note) = &self.note {
            write!(f, "; {note}")?;
        }
        Ok(())
    }
}

/// The last `limit` runs of the shared reconcile, newest first; none when the database
/// has never had one (its tables are not created here).
pub fn recent_runs(db: &mut Db, limit: u32) -> anyhow::Result<Vec<RunStatus>> {
    if crate::database::schema_version(db, RECONCILE_COMPONENT)? == 0 {
        return Ok(Vec::new());
    }
    query_runs(db, None, limit)
}

/// Makes the ended `run` what `status` shows as the last sync, rather than the partition a
/// sync recorded last.
fn remember_as_last_sync(db: &mut Db, store: &mut Store, run: i64) -> anyhow::Result<()> {
    if let Some(r) = query_runs(db, Some(run), 1)?.into_iter().next() {
        store.set_meta("last_sync", &format!("{} reconcile {r}", now_rfc3339()))?;
    }
    Ok(())
}

/// Runs newest first: `only` that one, or the last `limit`.
fn query_runs(db: &mut Db, only: Option<i64>, limit: u32) -> anyhow::Result<Vec<RunStatus>> {
    let mut params: Vec<SqlValue> = vec![now_ms().into()];
    let filter = match only {
        Some(run) => {
            params.push(run.into());
            "WHERE r.id = ?"
        }
        None => "",
    };
    params.push(limit.into());
    let rows = db.query(
        &format!(
            "SELECT r.id, r.state, r.full_sync, r.started_at, r.finished_at, r.listed, r.note,
                 COUNT(p.part),
                 COUNT(p.done_at),
                 COUNT(CASE WHEN p.done_at IS NULL AND p.claimed_until >= ? THEN 1 END),
                 COUNT(DISTINCT p.done_by)
             FROM reconcile_runs r LEFT JOIN reconcile_partitions p ON p.run_id = r.id
             {filter}
             GROUP BY r.id, r.state, r.full_sync, r.started_at, r.finished_at, r.listed, r.note
             ORDER BY r.id DESC LIMIT ?"
        ),
        &params,
    )?;
    rows.iter()
        .map(|r| {
            Ok(RunStatus {
                id: r.int(0)?,
                state: r.text(1)?,
                full: r.int(2)? != 0,
                started_at: r.text(3)?,
                finished_at: r.opt_text(4)?,
                listed: r.opt_int(5)?,
                note: r.opt_text(6)?,
                partitions: r.int(7)?,
                done: r.int(8)?,
                held: r.int(9)?,
                workers: r.int(10)?,
            })
        })
        .collect()
}

/// Ends `run` as `state` (`done`, `refused`, `expired`): frees the schedule for the next
/// run, drops the listing, and prunes old runs. The caller holds the schedule's row lock.
fn end_run(db: &mut Db, run: i64, state: &str, note: Option<&str>) -> anyhow::Result<()> {
    db.execute(
        "UPDATE reconcile_runs SET state = ?, finished_at = ?, note = ?, listing_until = NULL
         WHERE id = ?",
        &[state.into(), now_rfc3339().into(), note.into(), run.into()],
    )?;
    db.execute(
        "UPDATE reconcile_schedule SET run_id = NULL WHERE id = 1 AND run_id = ?",
        &[run.into()],
    )?;
    db.execute(
        "DELETE FROM reconcile_listing WHERE run_id = ?",
        &[run.into()],
    )?;
    let oldest_kept = run - RUNS_KEPT;
    db.execute(
        "DELETE FROM reconcile_partitions WHERE run_id <= ?",
        &[oldest_kept.into()],
    )?;
    db.execute(
        "DELETE FROM reconcile_runs WHERE id <= ?",
        &[oldest_kept.into()],
    )?;
    Ok(())
}

/// Reserves `wanted` deprovisions for a partition from its run's budget (replacing what
/// an earlier attempt of the same partition reserved). Returns why not, when the budget
/// would be overdrawn or the run is no longer open.
fn reserve(db: &mut Db, run: i64, part: i64, wanted: i64) -> anyhow::Result<Option<String>> {
    db.transaction(|db| {
        let Some(r) = db.query_opt(
            "SELECT state, budget, deprovisions FROM reconcile_runs WHERE id = ? FOR UPDATE",
            &[run.into()],
        )?
        else {
            return Ok(Some(format!("run {run} is gone")));
        };
        let (state, budget, taken) = (r.text(0)?, r.int(1)?, r.int(2)?);
        if state != "open" {
            return Ok(Some(format!("run {run} is {state}")));
        }
        let before = one_int(
            db,
            "SELECT reserved FROM reconcile_partitions WHERE run_id = ? AND part = ?",
            &[run.into(), part.into()],
        )?;
        let total = taken.saturating_sub(before).saturating_add(wanted);
        if total > budget {
            return Ok(Some(format!(
                "this run would deactivate or delete {total} users or more, more than the threshold of {budget}; \
                 the rest of the run was not sent. Check with `sync --plan` and `status`, then run `sync --allow-deletes`."
            )));
        }
        db.execute(
            "UPDATE reconcile_runs SET deprovisions = ? WHERE id = ?",
            &[total.into(), run.into()],
        )?;
        db.execute(
            "UPDATE reconcile_partitions SET reserved = ? WHERE run_id = ? AND part = ?",
            &[wanted.into(), run.into(), part.into()],
        )?;
        Ok(None)
    })
}

/// Runs `work` while a thread with a connection of its own extends `worker`'s lease on
/// `run`'s listing every third of `lease_ms` (see [`keep_lease`]).
fn keep_listing_lease<T>(
    url: &DatabaseUrl,
    run: i64,
    worker: &str,
    lease_ms: i64,
    work: impl FnOnce() -> T,
) -> T {
    let extend = |db: &mut Db, until: i64| {
        db.execute(
            "UPDATE reconcile_runs SET listing_until = ?
             WHERE id = ? AND state = 'listing' AND listing_by = ?",
            &[until.into(), run.into(), worker.into()],
        )
        .map(|n| n == 1)
    };
    keep_lease(url, lease_ms, &extend, work).0
}

/// Runs `work` while a thread with a connection of its own to `url` calls `extend(db,
/// until)` every third of `lease_ms`, `until` being now + `lease_ms`. Returns what `work`
/// returned, and whether an extension found the lease no longer held (`extend` gave
/// false). A failed extension (the database away) is tried again at the next turn: at
/// worst the lease lapses and another daemon takes the work over.
fn keep_lease<T>(
    url: &DatabaseUrl,
    lease_ms: i64,
    extend: &(dyn Fn(&mut Db, i64) -> anyhow::Result<bool> + Sync),
    work: impl FnOnce() -> T,
) -> (T, bool) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    let lost = AtomicBool::new(false);
    let every = Duration::from_millis(u64::try_from(lease_ms / 3).unwrap_or(1000).max(100));
    // The keeper waits on this channel: `work` ending (its sender dropped, a panic
    // included) wakes it at once, so a short partition is not held up by the keeper.
    let (stop, stopped) = mpsc::channel::<()>();
    let lost_flag = &lost;
    let out = std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut db: Option<Db> = None;
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                if db.is_none() {
                    db = Db::connect(url).ok();
                }
                if let Some(d) = db.as_mut() {
                    match extend(d, now_ms().saturating_add(lease_ms)) {
                        Ok(true) => {}
                        Ok(false) => lost_flag.store(true, Ordering::SeqCst),
                        Err(_) => db = None,
                    }
                }
            }
        });
        let _stop = stop;
        work()
    });
    (out, lost.load(Ordering::SeqCst))
}

/// Extends a partition's lease; false when the claim is no longer this worker's.
fn renew(db: &mut Db, run: i64, part: i64, worker: &str, until: i64) -> anyhow::Result<bool> {
    db.execute(
        "UPDATE reconcile_partitions SET claimed_until = ?
         WHERE run_id = ? AND part = ? AND claimed_by = ? AND done_at IS NULL",
        &[until.into(), run.into(), part.into(), worker.into()],
    )
    .map(|n| n == 1)
}

/// The plan of the orphans' partition: the links whose user is gone, deprovisioned.
fn plan_orphans(
    runtime: &Runtime,
    settings: &ConnectorSettings,
    db: &mut Db,
    _store: &Store,
) -> anyhow::Result<SyncPlan> {
    let mut session = open_planner(runtime, settings)?;
    let mut out = SyncPlan::default();
    for_each_orphan_link(db, |id, link| {
        out.linked += 1;
        out.add_deleted(&mut session, id, link)
    })?;
    Ok(out)
}

/// The partitions a run of `users` users is cut into: `configured` (`--partitions`), and
/// more when that would put more than [`MAX_PARTITION_USERS`] users in one (a partition
/// holds its plan whole), but never more than there are users.
fn partition_count(configured: i64, users: i64) -> i64 {
    let max = MAX_PARTITION_USERS as i64;
    let needed = (users.max(0) + max - 1) / max;
    configured.max(needed).min(users).max(1)
}

/// `text` in pieces of at most `max` bytes, cut at character boundaries.
fn chunks(text: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len().min(max.max(4));
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

#[cfg(all(test, feature = "db-test-support"))]
mod shared_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_hold_at_most_max_partition_users() {
        let max = MAX_PARTITION_USERS as i64;
        assert_eq!(partition_count(16, 0), 1);
        assert_eq!(partition_count(16, 5), 5, "no more partitions than users");
        assert_eq!(partition_count(16, 100_000), 16);
        assert_eq!(partition_count(16, 16 * max), 16);
        assert_eq!(partition_count(16, 16 * max + 1), 17);
        assert_eq!(partition_count(16, 1_000_000), (1_000_000 + max - 1) / max);
        assert_eq!(partition_count(200, 1_000_000), 200);
        for users in [1, 999, 160_001, 1_000_000, 2_345_678] {
            let parts = partition_count(16, users);
            assert!(
                (users + parts - 1) / parts <= max,
                "{users} users in {parts}"
            );
        }
    }

    #[test]
    fn chunks_cut_at_character_boundaries_and_join_back() {
        let text = "aé日本🙂".repeat(1000);
        for max in [4, 5, 7, 100, 1 << 20] {
            let pieces: Vec<&str> = chunks(&text, max).collect();
            assert!(
                pieces
                    .iter()
                    .all(|p| p.len() <= max.max(4) && !p.is_empty())
            );
            assert_eq!(pieces.concat(), text);
        }
        assert_eq!(chunks("", 10).count(), 0);
    }
}
