//! The scheduled full reconcile: drain the outbox, then bring every user in scope in line,
//! create what is missing, update only what changed (by fingerprint, so an unchanged user
//! costs no request), and deprovision users that were deleted or left the scope; behind a
//! safety threshold on deactivations and deletions. Work runs on N component instances at
//! once, each user always on the same one so its changes keep their order.
//!
//! Nothing here prints: [`plan`] returns the plan, [`sync`] the summary, and
//! [`sync_with_progress`] reports progress and recoverable problems to a callback, so a CLI
//! can draw a bar and a PHP, Python or Node host can show the same in its own way.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::bail;

use crate::clock::now_rfc3339;
use crate::config::Threshold;
use crate::delivery::{self, DeliveryReport};
use crate::describe::{action_name, describe_error, error_status, planned_name};
use crate::ids::fnv1a;
use crate::runtime::{ConnectorSettings, Runtime, Session};
use crate::store::{LogEntry, PolicyDigest, Store, StoredLink, UserRecord, is_current_fingerprint};
use crate::sync_pages::{IdRange, PAGE, PagedPlanner};
use crate::types::{
    Action, BatchItem, Link, PlannedAction, ProvisionOutcome, ProvisioningError, UserEvent,
};

/// How a sync runs.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Only plan: send nothing, and count the unchanged users (the plan itself comes from
    /// [`plan`]).
    pub plan_only: bool,
    /// Go ahead even past the deprovisioning threshold.
    pub allow_deletes: bool,
    /// The deprovisioning threshold.
    pub threshold: Threshold,
    /// Component instances working at once.
    pub concurrency: u32,
    /// Users handed to the component per call; their writes share bulk requests where
    /// the server supports `/Bulk`.
    pub batch_size: u32,
    /// Delivery attempts before an outbox event is parked.
    pub max_attempts: u32,
    /// Report each user's completion to the progress callback (see [`SyncProgress`]), for
    /// a progress bar.
    pub progress: bool,
    /// A full, verifying reconcile: ignore fingerprints and snapshots, so every linked user
    /// is read back from the server and re-created if the server lost it (a restore, an
    /// admin's deletion). Costs a request per user; a normal sync sends nothing for
    /// unchanged users.
    pub full: bool,
}

/// What a sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncSummary {
    /// Outbox events delivered first.
    pub outbox: DeliveryReport,
    /// Remote users created.
    pub created: u64,
    /// Existing remote users matched and linked.
    pub adopted: u64,
    /// Remote users updated.
    pub updated: u64,
    /// Users that had not changed (no request sent).
    pub unchanged: u64,
    /// Remote users deactivated.
    pub deactivated: u64,
    /// Remote users deleted.
    pub deleted: u64,
    /// Users skipped (out of scope, operation disabled …).
    pub skipped: u64,
    /// Users whose provisioning failed (logged; retried by the next sync).
    pub failed: u64,
    /// Users the server refused to create for good because it holds their userName in a
    /// record it does not list (a 409 no listing explains): logged once with what to do,
    /// then left alone by later syncs until the CMS user changes or `sync --full` runs.
    /// Not failures: a sync with only these exits 0.
    pub parked: u64,
    /// Users the reconcile left to the outbox, where their changes still wait.
    pub waiting: u64,
    /// Requests sent by the reconcile (listing, look-ups, writes; outbox deliveries not
    /// included).
    pub requests: u64,
    /// How many of them were bulk requests.
    pub bulk_requests: u64,
    /// Drift a verifying sync (`--full`) found: linked users the server no longer had
    /// (created again, adopted or unlinked).
    pub missing_remotely: u64,
    /// Drift a verifying sync found: linked users unchanged in the CMS whose remote twin
    /// had been changed on the server, and was brought back in line.
    pub changed_remotely: u64,
    /// Drift a verifying sync found: remote users that no CMS user links to (after the
    /// sync's adoptions), from one listing of the remote users.
    pub unlinked_remotely: u64,
}

impl std::fmt::Display for SyncSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "created {}, adopted {}, updated {}, unchanged {}, deactivated {}, deleted {}, skipped {}, failed {} ({} requests, {} of them bulk; outbox: {} delivered, {} retrying, {} parked)",
            self.created,
            self.adopted,
            self.updated,
            self.unchanged,
            self.deactivated,
            self.deleted,
            self.skipped,
            self.failed,
            self.requests,
            self.bulk_requests,
            self.outbox.delivered,
            self.outbox.retrying,
            self.outbox.parked
        )?;
        if self.missing_remotely + self.changed_remotely + self.unlinked_remotely > 0 {
            write!(
                f,
                "; drift: {} missing on the server, {} changed on the server, {} on the server linked to no CMS user",
                self.missing_remotely, self.changed_remotely, self.unlinked_remotely
            )?;
        }
        if self.parked > 0 {
            write!(
                f,
                "; {} parked: the server holds their userName but does not list it (each reason is in `log`; repair them on the server, then `sync --full`)",
                self.parked
            )?;
        }
        if self.waiting > 0 {
            write!(
                f,
                "; {} left to the outbox, where their changes wait",
                self.waiting
            )?;
        }
        Ok(())
    }
}

/// One user to reconcile.
#[derive(Debug, Clone)]
pub struct WorkItem {
    /// The user (a bare record for a user deleted from the CMS).
    pub user: UserRecord,
    /// `reconcile`, or `deleted` for a linked user gone from the CMS.
    pub event: UserEvent,
    /// The stored link.
    pub link: Option<StoredLink>,
    /// What the component plans.
    pub planned: PlannedAction,
    /// Why, for skips.
    pub reason: Option<String>,
}

/// The result of a plan: what would be done, and what costs nothing.
#[derive(Debug, Default)]
pub struct SyncPlan {
    /// Users that need a call.
    pub work: Vec<WorkItem>,
    /// Users unchanged since they were last provisioned.
    pub unchanged: u64,
    /// Linked users before the sync.
    pub linked: u64,
    /// Unlinked users left parked: their creation met a 409 for a userName the server
    /// does not list, and they have not changed since (see [`SyncSummary::parked`]).
    pub parked: u64,
    /// Users with changes still waiting in the outbox (retrying, not parked). The
    /// reconcile leaves them to it: their queued changes go out in order, and an older one
    /// could otherwise land after the reconcile had sent the newer state, leaving the
    /// server on a stale value that every later comparison calls unchanged.
    pub waiting: u64,
}

impl SyncPlan {
    /// How many users each planned action has, by the action's name, sorted by name.
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        let mut counts: HashMap<&'static str, u64> = HashMap::new();
        for w in &self.work {
            *counts.entry(planned_name(w.planned)).or_default() += 1;
        }
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort();
        counts
    }

    /// Leaves to the outbox the users whose changes still wait there after the drain
    /// (retrying, not parked): see [`SyncPlan::waiting`]. A plan shown before a sync keeps
    /// them, since the sync's drain sends their queued changes first.
    pub fn leave_queued_to_outbox(&mut self, store: &Store) -> anyhow::Result<()> {
        self.leave_queued(&queued_users(store)?);
        Ok(())
    }

    /// [`SyncPlan::leave_queued_to_outbox`] with the users whose changes wait in the outbox
    /// already read ([`queued_users`]); adds them to [`SyncPlan::waiting`].
    fn leave_queued(&mut self, queued: &HashSet<String>) {
        let before = self.work.len();
        self.work.retain(|w| !queued.contains(&w.user.id));
        self.waiting += (before - self.work.len()) as u64;
    }

    /// Adds `user`'s `event` to the work, as the component plans it in `session`.
    pub(crate) fn add(
        &mut self,
        session: &mut Session,
        user: UserRecord,
        event: UserEvent,
        link: Option<StoredLink>,
    ) -> anyhow::Result<()> {
        let p = session.plan(&user.to_cms_user(), event, link.is_some())?;
        self.work.push(WorkItem {
            user,
            event,
            link,
            planned: p.action,
            reason: p.reason,
        });
        Ok(())
    }

    /// Adds the deletion of a linked user no longer in the CMS (a bare record: its id).
    pub(crate) fn add_deleted(
        &mut self,
        session: &mut Session,
        id: String,
        link: StoredLink,
    ) -> anyhow::Result<()> {
        let user = UserRecord {
            id,
            name: String::new(),
            mail: String::new(),
            fields: Default::default(),
            active: false,
        };
        self.add(session, user, UserEvent::Deleted, Some(link))
    }

    /// How many deactivations and deletions the plan would send.
    pub fn deprovisions(&self) -> u64 {
        self.work
            .iter()
            .filter(|w| is_deprovision(w.planned))
            .count() as u64
    }
}

/// The users whose changes still wait in the outbox (retrying, not parked).
fn queued_users(store: &Store) -> anyhow::Result<HashSet<String>> {
    Ok(store
        .pending_events()?
        .into_iter()
        .filter(|e| !e.parked)
        .map(|e| e.user_id)
        .collect())
}

/// The session a plan is made in; the component failing to open is the plan's error.
pub(crate) fn open_planner(
    runtime: &Runtime,
    settings: &ConnectorSettings,
) -> anyhow::Result<Session> {
    match runtime.open(settings)? {
        Ok(s) => Ok(s),
        Err(e) => bail!("{}", describe_error(&e)),
    }
}

/// Works out what a sync would do. Asks the component for each changed user's plan (a
/// pure call, no request).
pub fn plan(
    runtime: &Runtime,
    settings: &ConnectorSettings,
    store: &Store,
    full: bool,
) -> anyhow::Result<SyncPlan> {
    let mut session = open_planner(runtime, settings)?;
    let policy = PolicyDigest::of(&settings.policy_json);
    let is_fingerprint_of = |stored: &str, user: &UserRecord, fingerprint: &str| {
        is_fingerprint_of(stored, user, fingerprint, &settings.policy_json)
    };
    let mut links: HashMap<String, StoredLink> = store.all_links()?.into_iter().collect();
    let mut out = SyncPlan {
        linked: links.len() as u64,
        ..SyncPlan::default()
    };
    for user in store.all_users()? {
        let mut link = links.remove(&user.id);
        if full && let Some(l) = link.as_mut() {
            // Without a snapshot the engine reads the remote user first (404 → re-create).
            l.link.snapshot = None;
            l.link.version = None;
        }
        let fingerprint = user.fingerprint_with(policy);
        if !full
            && link
                .as_ref()
                .is_some_and(|l| is_fingerprint_of(&l.fingerprint, &user, &fingerprint))
        {
            out.unchanged += 1;
            continue;
        }
        if !full
            && link.is_none()
            && store
                .meta(&parked_key(&user.id))?
                .is_some_and(|parked| is_fingerprint_of(&parked, &user, &fingerprint))
        {
            out.parked += 1;
            continue;
        }
        out.add(&mut session, user, UserEvent::Reconcile, link)?;
    }
    // Linked users no longer in the CMS were deleted (their event may have been parked).
    let mut gone: Vec<(String, StoredLink)> = links.into_iter().collect();
    gone.sort_by(|a, b| a.0.cmp(&b.0));
    for (id, link) in gone {
        out.add_deleted(&mut session, id, link)?;
    }
    Ok(out)
}

/// What a running sync reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncProgress {
    /// The users that need a call are about to be sent (with [`SyncOptions::progress`]).
    Started {
        /// How many users will be sent.
        total: u64,
    },
    /// One more user is done, provisioned or failed (with [`SyncOptions::progress`]).
    UserDone {
        /// Users done so far.
        done: u64,
        /// Users in all.
        total: u64,
        /// Users whose provisioning failed so far (as [`SyncSummary::failed`] counts).
        failed: u64,
    },
    /// Every user is done (with [`SyncOptions::progress`]).
    Finished,
    /// Something failed that the sync works around, for the operator: listing the remote
    /// users, say (matching then looks each user up instead).
    Warning(String),
}

/// Runs a sync.
pub fn sync(
    runtime: &Runtime,
    settings: &ConnectorSettings,
    store: &mut Store,
    options: &SyncOptions,
) -> anyhow::Result<SyncSummary> {
    sync_with_progress(runtime, settings, store, options, &mut |_| {})
}

/// Runs a sync, reporting its progress to `on_progress` (called on this thread).
pub fn sync_with_progress(
    runtime: &Runtime,
    settings: &ConnectorSettings,
    store: &mut Store,
    options: &SyncOptions,
    on_progress: &mut dyn FnMut(SyncProgress),
) -> anyhow::Result<SyncSummary> {
    run(
        runtime,
        settings,
        store,
        options,
        on_progress,
        PlanSource::Whole(&mut |store| plan(runtime, settings, store, options.full)),
        None,
    )
}

/// [`sync_with_progress`] with the plan read from the store's database in pages through
/// `db`, a connection of its own to it (see [`crate::sync_pages`]): a resync of a large
/// store holds one page of users, not all of them. When more than [`HOLD`] users need a
/// call (a first sync), the plan is not held either: a first pass counts the work (for
/// the deprovisioning threshold and the progress total), then a second plans a page,
/// hands its users to the workers and records their results before it reads the next.
pub fn sync_paged(
    runtime: &Runtime,
    settings: &ConnectorSettings,
    store: &mut Store,
    db: &mut crate::database::Db,
    options: &SyncOptions,
    on_progress: &mut dyn FnMut(SyncProgress),
) -> anyhow::Result<SyncSummary> {
    sync_paged_holding(runtime, settings, store, db, options, on_progress, HOLD)
}

/// [`sync_paged`] holding at most `hold` users that need a call before it streams (tests
/// stream a small store with a small `hold`).
pub fn sync_paged_holding(
    runtime: &Runtime,
    settings: &ConnectorSettings,
    store: &mut Store,
    db: &mut crate::database::Db,
    options: &SyncOptions,
    on_progress: &mut dyn FnMut(SyncProgress),
    hold: usize,
) -> anyhow::Result<SyncSummary> {
    run(
        runtime,
        settings,
        store,
        options,
        on_progress,
        PlanSource::Paged { db, hold },
        None,
    )
}

/// How one slice of a shared reconcile (the daemon's on a shared database) runs unlike a
/// whole sync: the outbox is not drained first (every daemon delivers it anyway), the
/// remote listing is the one the run took once, and the deprovisions are approved against
/// the run's shared budget instead of this slice's own threshold.
pub struct Slice<'a> {
    /// The run's listing (`export-remote-index`), or none: matching then looks users up.
    pub listing: Option<&'a str>,
    /// Approves (or refuses, stopping the slice before anything is sent) the plan.
    pub approve: &'a mut dyn FnMut(&SyncPlan) -> anyhow::Result<()>,
    /// Component instances kept from the run's earlier slices, and where this slice's are
    /// left for the next (see [`SessionPool`]). `None`: each worker opens its own.
    pub pool: Option<&'a SessionPool>,
}

/// Component instances kept between the slices one daemon runs of one shared reconcile
/// run, so that each is opened, told the server's dialect, handed the run's listing and
/// discovers the server (`/ServiceProviderConfig`) once per run rather than once per slice.
///
/// A pool serves one run and one way of matching: the instances of slices that use the
/// run's listing hold it (and what they created since); those of a slice taken over from
/// a daemon that died hold none, and look users up. The caller keeps one pool for each.
/// An instance that trapped is not kept (a fresh one replaces it).
#[derive(Default)]
pub struct SessionPool {
    sessions: std::sync::Mutex<Vec<Session>>,
}

impl SessionPool {
    /// An empty pool.
    pub fn new() -> SessionPool {
        SessionPool::default()
    }

    /// Instances it holds now.
    pub fn len(&self) -> usize {
        self.sessions.lock().map_or(0, |s| s.len())
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn take(&self) -> Option<Session> {
        self.sessions.lock().ok()?.pop()
    }

    fn keep(&self, session: Session) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.push(session);
        }
    }
}

/// A slice of a shared reconcile: the users `planner` plans, run as [`Slice`] says.
pub fn sync_slice(
    runtime: &Runtime,
    settings: &ConnectorSettings,
    store: &mut Store,
    options: &SyncOptions,
    on_progress: &mut dyn FnMut(SyncProgress),
    planner: &mut dyn FnMut(&Store) -> anyhow::Result<SyncPlan>,
    slice: Slice<'_>,
) -> anyhow::Result<SyncSummary> {
    run(
        runtime,
        settings,
        store,
        options,
        on_progress,
        PlanSource::Whole(planner),
        Some(slice),
    )
}

/// The users that need a call a paged sync holds in its plan at most (a few KB each:
/// the user and its link's snapshot); past them it streams (see [`sync_paged`]).
pub const HOLD: usize = 10_000;

/// Where a sync's plan comes from.
enum PlanSource<'a> {
    /// A planner that makes the whole plan.
    Whole(&'a mut dyn FnMut(&Store) -> anyhow::Result<SyncPlan>),
    /// Pages read through `db`, a connection to the store's database, holding at most
    /// `hold` users that need a call (see [`sync_paged`]).
    Paged {
        db: &'a mut crate::database::Db,
        hold: usize,
    },
}

/// A sync with the plan `source` makes: the outbox drained first, then the plan executed.
fn run(
    runtime: &Runtime,
    settings: &ConnectorSettings,
    store: &mut Store,
    options: &SyncOptions,
    on_progress: &mut dyn FnMut(SyncProgress),
    source: PlanSource<'_>,
    slice: Option<Slice<'_>>,
) -> anyhow::Result<SyncSummary> {
    let mut summary = SyncSummary::default();
    if !options.plan_only && slice.is_some() {
        crate::rate::prepare(
            store,
            &settings.base_url,
            options.concurrency,
            options.batch_size,
        )?;
    } else if !options.plan_only {
        // The target's adaptive rate control, under this sync's limits, from where the last
        // run left it (see `crate::rate`).
        crate::rate::prepare(
            store,
            &settings.base_url,
            options.concurrency,
            options.batch_size,
        )?;
        let mut session = match runtime.open(settings)? {
            Ok(s) => s,
            Err(e) => bail!("{}", describe_error(&e)),
        };
        if let Some(warning) = crate::dialect::load(store, &mut session, &settings.base_url)? {
            on_progress(SyncProgress::Warning(warning));
        }
        summary.outbox = delivery::deliver(
            store,
            &mut session,
            &settings.policy_json,
            options.max_attempts,
            true,
        )?;
        crate::dialect::save(store, &mut session, &settings.base_url)?;
    }
    let mut plan = match source {
        PlanSource::Whole(planner) => planner(store)?,
        PlanSource::Paged { db, hold } => {
            let mut planner =
                PagedPlanner::new(runtime, settings, options.full, &IdRange::ALL, PAGE)?;
            let mut plan = SyncPlan::default();
            // Set once the work outgrew HOLD: from then on it is only counted.
            let mut counted: Option<(WorkShape, HashSet<String>)> = None;
            while planner.next_page(db, store, &mut plan)? {
                if counted.is_none() && plan.work.len() <= hold {
                    continue;
                }
                if counted.is_none() {
                    counted = Some((WorkShape::default(), queued_users(store)?));
                }
                if let Some((shape, queued)) = counted.as_mut() {
                    plan.leave_queued(queued);
                    shape.count(&std::mem::take(&mut plan.work));
                }
            }
            drop(planner);
            if let Some((shape, queued)) = counted {
                return stream_paged(
                    runtime,
                    settings,
                    store,
                    db,
                    options,
                    on_progress,
                    Streamed {
                        summary,
                        counted: &plan,
                        shape,
                        queued,
                    },
                );
            }
            plan
        }
    };
    summary.unchanged = plan.unchanged;
    summary.parked = plan.parked;
    if options.plan_only {
        return Ok(summary);
    }
    plan.leave_queued_to_outbox(store)?;
    summary.waiting = plan.waiting;
    let shared = match slice {
        Some(slice) => {
            (slice.approve)(&plan)?;
            Some(SliceRun {
                listing: slice.listing,
                pool: slice.pool,
            })
        }
        None => {
            if !options.allow_deletes {
                check_threshold(plan.deprovisions(), plan.linked, options)?;
            }
            None
        }
    };
    execute(
        runtime,
        settings,
        store,
        plan.work,
        options,
        &mut summary,
        on_progress,
        shared,
    )?;
    crate::rate::remember(store, &settings.base_url)?;
    // A slice is not the whole sync: its run records itself when it ends.
    if shared.is_none() {
        store.set_meta("last_sync", &format!("{} {summary}", now_rfc3339()))?;
    }
    Ok(summary)
}

/// What a paged sync's first pass found, for the second that sends.
struct Streamed<'a> {
    /// The summary so far (the outbox's drain).
    summary: SyncSummary,
    /// The first pass's counters (its work was counted, not held).
    counted: &'a SyncPlan,
    /// The work it counted.
    shape: WorkShape,
    /// The users whose changes wait in the outbox.
    queued: HashSet<String>,
}

/// The second pass of a paged sync whose work outgrew [`HOLD`]: each page planned, its
/// users handed to the workers and their results recorded before the next page is read,
/// so what is held is a page and what the workers hold, however many users need a call.
fn stream_paged(
    runtime: &Runtime,
    settings: &ConnectorSettings,
    store: &mut Store,
    db: &mut crate::database::Db,
    options: &SyncOptions,
    on_progress: &mut dyn FnMut(SyncProgress),
    first: Streamed<'_>,
) -> anyhow::Result<SyncSummary> {
    let Streamed {
        mut summary,
        counted,
        shape,
        queued,
    } = first;
    summary.unchanged = counted.unchanged;
    summary.parked = counted.parked;
    if options.plan_only {
        return Ok(summary);
    }
    let limit = if options.allow_deletes {
        u64::MAX
    } else {
        check_threshold(shape.deprovisions, counted.linked, options)?;
        options.threshold.limit(counted.linked)
    };
    let mut sent = SyncPlan::default();
    execute_streamed(
        runtime,
        settings,
        store,
        &shape,
        options,
        &mut summary,
        on_progress,
        None,
        &mut |store, feed| {
            let mut planner =
                PagedPlanner::new(runtime, settings, options.full, &IdRange::ALL, PAGE)?;
            let mut deprovisions = 0;
            while planner.next_page(db, store, &mut sent)? {
                sent.leave_queued(&queued);
                for item in std::mem::take(&mut sent.work) {
                    if is_deprovision(item.planned) {
                        // The store changed since the first pass: the threshold still holds.
                        deprovisions += 1;
                        if deprovisions > limit {
                            bail!(
                                "this sync would deactivate or delete more than the threshold of {limit} users \
                                 ({} linked); it stopped there, with the users before sent. Check with `sync --plan` \
                                 and `status`, then run with --allow-deletes.",
                                counted.linked
                            );
                        }
                    }
                    feed.send(store, item)?;
                }
            }
            Ok(())
        },
    )?;
    // What the sending pass found is what the sync did.
    summary.unchanged = sent.unchanged;
    summary.parked = sent.parked;
    summary.waiting = sent.waiting;
    crate::rate::remember(store, &settings.base_url)?;
    store.set_meta("last_sync", &format!("{} {summary}", now_rfc3339()))?;
    Ok(summary)
}

/// What a sync knows of its work before it sends it.
#[derive(Debug, Default, Clone, Copy)]
struct WorkShape {
    /// Users to send (skips are not sent).
    total: u64,
    /// Of them, creations (from [`INDEX_THRESHOLD`] on, the remote users are listed once).
    creates: u64,
    /// Of them, deactivations and deletions.
    deprovisions: u64,
}

impl WorkShape {
    fn count(&mut self, work: &[WorkItem]) {
        for w in work {
            if w.planned == PlannedAction::Skip {
                continue;
            }
            self.total += 1;
            self.creates += u64::from(w.planned == PlannedAction::Create);
            self.deprovisions += u64::from(is_deprovision(w.planned));
        }
    }
}

/// Stops a sync that would deactivate or delete more users than the threshold allows.
/// The threshold guards the deprovisioning a reconcile infers (users gone from the CMS or
/// out of scope, where a broken scope or a half-imported user table would otherwise wipe
/// the remote side). Outbox events are explicit changes made in the CMS, which automatic
/// delivery sends at once anyway; the drain before the reconcile sends them the same way.
fn check_threshold(deprovisions: u64, linked: u64, options: &SyncOptions) -> anyhow::Result<()> {
    let limit = options.threshold.limit(linked);
    if deprovisions > limit {
        bail!(
            "this sync would deactivate or delete {deprovisions} users, more than the threshold of {limit} \
             ({linked} linked); nothing was sent. Check with `sync --plan` and `status`, then run with --allow-deletes."
        );
    }
    Ok(())
}

fn is_deprovision(p: PlannedAction) -> bool {
    matches!(p, PlannedAction::Deactivate | PlannedAction::Delete)
}

/// One user's work item, its result, and its milliseconds.
type Done = (
    WorkItem,
    anyhow::Result<Result<ProvisionOutcome, ProvisioningError>>,
    u64,
);

/// What a worker reports.
enum Report {
    /// One user's result, with the milliseconds it took (a batch's time, shared out).
    Done(Box<Done>),
    /// Requests made, and how many of them were bulk requests.
    Requests(u64, u64),
    /// A problem the worker works around.
    Warning(String),
}

/// How the work of one slice of a shared reconcile is sent (see [`Slice`]), where a whole
/// sync lists the remote users itself when it pays and opens its own instances.
#[derive(Clone, Copy)]
struct SliceRun<'a> {
    /// The listing taken once for the slice's run, used instead of listing here; none:
    /// matching looks users up.
    listing: Option<&'a str>,
    /// Where the slice's instances come from and go back to; none: each worker opens its
    /// own.
    pool: Option<&'a SessionPool>,
}

/// Sends `work` (see [`execute_streamed`]); `shared` for a slice of a shared reconcile.
#[allow(clippy::too_many_arguments)]
fn execute(
    runtime: &Runtime,
    settings: &ConnectorSettings,
    store: &mut Store,
    work: Vec<WorkItem>,
    options: &SyncOptions,
    summary: &mut SyncSummary,
    on_progress: &mut dyn FnMut(SyncProgress),
    shared: Option<SliceRun<'_>>,
) -> anyhow::Result<()> {
    let mut shape = WorkShape::default();
    shape.count(&work);
    let mut work = Some(work);
    execute_streamed(
        runtime,
        settings,
        store,
        &shape,
        options,
        summary,
        on_progress,
        shared,
        &mut |store, feed| {
            for item in work.take().into_iter().flatten() {
                feed.send(store, item)?;
            }
            Ok(())
        },
    )
}

/// Sends the work `source` hands to [`Feed::send`] (of the shape `shape`) on
/// [`SyncOptions::concurrency`] component instances at once, each user always on the same
/// one so its changes keep their order, and records each result as it comes back (the
/// link, the log line, the summary). Each instance's queue holds two batches: past that,
/// `source` waits, so the work in flight stays bounded however much `source` has.
///
/// A slice of a shared reconcile (`shared`, see [`SliceRun`]) takes its instances from its
/// pool and leaves them there, runs on no more instances than its users fill full batches
/// of, and hands its users to them in blocks of a batch, in the plan's order (the ids'),
/// instance after instance ([`Spread::InBlocks`]): a partition of 6,250 users goes as 62
/// requests of 100 and one of 50, where spreading them by a hash of the id gave each of 8
/// instances about 781, 8 requests each, one of them partial (71 in all).
#[allow(clippy::too_many_arguments)]
fn execute_streamed(
    runtime: &Runtime,
    settings: &ConnectorSettings,
    store: &mut Store,
    shape: &WorkShape,
    options: &SyncOptions,
    summary: &mut SyncSummary,
    on_progress: &mut dyn FnMut(SyncProgress),
    shared: Option<SliceRun<'_>>,
    source: &mut dyn FnMut(&mut Store, &mut Feed<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let pool = shared.and_then(|s| s.pool);
    let total = shape.total;
    // What the host knows of the server's dialect goes to every instance, so that none of
    // them has to learn it again (a refused PATCH, paging 500s, the declared schema).
    let mut dialect = crate::dialect::stored(store, &settings.base_url)?;
    // Many creates (a first sync): list the remote users once and match locally, rather
    // than spend a look-up request per user. One instance lists; the others load its
    // index. A verifying sync lists them too, to count the remote users no CMS user links
    // to.
    let (index, remote_ids) = if let Some(shared) = shared {
        // The run's listing; the drift it shows is counted once for the run.
        (shared.listing.map(str::to_string), None)
    } else if shape.creates >= INDEX_THRESHOLD as u64 || options.full {
        match list_remote_users(runtime, settings, summary, on_progress, &mut dialect) {
            Some((index, ids)) => (index, Some(ids)),
            None => (None, None),
        }
    } else {
        (None, None)
    };
    let index = index.as_deref();
    let dialect = dialect.as_deref();
    let batch_size = options.batch_size.max(1) as usize;
    let mut workers = (options.concurrency.max(1) as usize)
        .min(usize::try_from(total).unwrap_or(usize::MAX).max(1));
    if shared.is_some() {
        workers = workers.min(
            usize::try_from(total)
                .unwrap_or(usize::MAX)
                .div_ceil(batch_size)
                .max(1),
        );
    }
    // The concurrency in force for this target (an adaptive controller sets it here).
    crate::metrics::global().set_concurrency(&settings.base_url, options.concurrency.max(1).into());
    if options.progress {
        on_progress(SyncProgress::Started { total });
    }
    let (tx, rx) = mpsc::channel::<Report>();
    let sourced = std::thread::scope(|scope| -> anyhow::Result<anyhow::Result<()>> {
        let mut queues = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (queue, work) = mpsc::sync_channel::<WorkItem>(batch_size * 2);
            let tx = tx.clone();
            scope.spawn(move || {
                run_queue(
                    runtime, settings, work, index, dialect, batch_size, &tx, pool,
                )
            });
            queues.push(queue);
        }
        drop(tx);
        let mut feed = Feed {
            queues,
            results: &rx,
            pending: Vec::new(),
            settings,
            progress: options.progress,
            on_progress: &mut *on_progress,
            summary: &mut *summary,
            done: 0,
            failed: 0,
            total,
            spread: if shared.is_some() {
                Spread::InBlocks { size: batch_size }
            } else {
                Spread::ByUser
            },
            handed: 0,
        };
        let sourced = source(store, &mut feed);
        // Closing the queues lets the workers finish what they hold; every user handed over
        // is recorded, even when `source` failed midway.
        feed.queues.clear();
        for report in rx.iter() {
            feed.take(store, report)?;
        }
        feed.flush(store)?;
        Ok(sourced)
    })?;
    sourced?;
    if options.full
        && let Some(ids) = remote_ids
    {
        let linked: std::collections::HashSet<String> = store
            .all_links()?
            .into_iter()
            .map(|(_, stored)| stored.link.remote_id)
            .collect();
        summary.unlinked_remotely = ids.iter().filter(|id| !linked.contains(*id)).count() as u64;
    }
    if options.progress {
        on_progress(SyncProgress::Finished);
    }
    Ok(())
}

/// Where [`execute_streamed`]'s source hands the users to send: each goes to its worker's
/// queue, and the results that came back meanwhile are recorded.
struct Feed<'a> {
    /// Each worker's queue (a user always goes to the same one).
    queues: Vec<mpsc::SyncSender<WorkItem>>,
    results: &'a mpsc::Receiver<Report>,
    /// Results not yet recorded (recorded 200 at a time, in one transaction).
    pending: Vec<Report>,
    settings: &'a ConnectorSettings,
    progress: bool,
    on_progress: &'a mut dyn FnMut(SyncProgress),
    summary: &'a mut SyncSummary,
    done: u64,
    failed: u64,
    total: u64,
    /// How users are spread over the workers.
    spread: Spread,
    /// Users handed to the workers so far (skips not counted).
    handed: usize,
}

/// How [`Feed::send`] spreads the users over the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spread {
    /// Each user to the worker a hash of its id picks, so a user always goes to the same
    /// one, whatever else the sync holds (a whole sync).
    ByUser,
    /// The users in blocks of `size` (a batch), block after block to the next worker,
    /// round the workers in turn: every batch but the last is full. For a slice of a
    /// shared reconcile, whose plan holds each user once (so no user's changes can be
    /// split between two workers) and which runs on as few workers as its batches fill.
    InBlocks {
        /// A batch's users.
        size: usize,
    },
}

impl Spread {
    /// The worker (of `workers`) for the `nth` user handed over, `user_id`.
    fn worker(self, user_id: &str, nth: usize, workers: usize) -> usize {
        let workers = workers.max(1);
        match self {
            Spread::ByUser => (fnv1a(user_id.as_bytes()) % workers as u64) as usize,
            Spread::InBlocks { size } => (nth / size.max(1)) % workers,
        }
    }
}

impl Feed<'_> {
    /// Hands `item` to its worker (waiting while that worker's queue is full), then records
    /// what came back. A skip is only counted.
    fn send(&mut self, store: &mut Store, item: WorkItem) -> anyhow::Result<()> {
        if item.planned == PlannedAction::Skip {
            self.summary.skipped += 1;
            return Ok(());
        }
        let slot = self
            .spread
            .worker(&item.user.id, self.handed, self.queues.len());
        self.handed += 1;
        let sent = match self.queues.get(slot) {
            Some(queue) => queue.send(item).map_err(|mpsc::SendError(item)| item),
            None => Err(item),
        };
        if let Err(item) = sent {
            // Its worker is gone (only a panic ends one early): the user fails, and the
            // next sync tries again.
            let failure = anyhow::anyhow!("the sync's worker stopped");
            self.take(store, Report::Done(Box::new((item, Err(failure), 0))))?;
        }
        while let Ok(report) = self.results.try_recv() {
            self.take(store, report)?;
        }
        Ok(())
    }

    /// Takes one report: a warning goes to the progress callback, a result is counted and
    /// recorded (200 at a time).
    fn take(&mut self, store: &mut Store, report: Report) -> anyhow::Result<()> {
        if let Report::Done(d) = &report {
            crate::metrics::global().sync_result(d.0.planned, &d.1);
            self.failed += u64::from(match &d.1 {
                Ok(Ok(_)) => false,
                Ok(Err(e)) => !held_unlisted(&d.0, e),
                Err(_) => true,
            });
        }
        match report {
            Report::Warning(message) => {
                (self.on_progress)(SyncProgress::Warning(message));
                return Ok(());
            }
            Report::Done(..) if self.progress => {
                self.done += 1;
                (self.on_progress)(SyncProgress::UserDone {
                    done: self.done,
                    // A streamed sync's total was counted by its first pass; the store
                    // may have changed since.
                    total: self.total.max(self.done),
                    failed: self.failed,
                });
            }
            _ => {}
        }
        self.pending.push(report);
        if self.pending.len() >= 200 {
            self.flush(store)?;
        }
        Ok(())
    }

    /// Records the results taken so far.
    fn flush(&mut self, store: &mut Store) -> anyhow::Result<()> {
        record(store, self.settings, &mut self.pending, self.summary)
    }
}

/// From this many creates on, a sync lists the remote users instead of looking each up.
pub(crate) const INDEX_THRESHOLD: usize = 50;

/// Lists the remote users once, in an instance of its own; returns the index for the
/// workers to load and the listed users' ids. `None` when listing failed: matching then
/// looks each user up. The instance starts from `dialect` and leaves in it what listing
/// taught it (paging 500s).
pub(crate) fn list_remote_users(
    runtime: &Runtime,
    settings: &ConnectorSettings,
    summary: &mut SyncSummary,
    on_progress: &mut dyn FnMut(SyncProgress),
    dialect: &mut Option<String>,
) -> Option<(Option<String>, Vec<String>)> {
    let listed = (|| -> anyhow::Result<Option<(Option<String>, Vec<String>)>> {
        let mut session = runtime
            .open(settings)?
            .map_err(|e| anyhow::anyhow!("{}", describe_error(&e)))?;
        if let Some(document) = dialect.as_deref()
            && let Some(warning) = crate::dialect::hand_over(&mut session, document)?
        {
            on_progress(SyncProgress::Warning(warning));
        }
        let listing = session
            .index_remote_users()?
            .map_err(|e| anyhow::anyhow!("{}", describe_error(&e)))?;
        summary.requests += u64::from(listing.requests);
        *dialect = Some(session.export_dialect()?);
        Ok(Some((
            session.export_remote_index()?,
            session.remote_user_ids()?,
        )))
    })();
    // Not fatal: matching falls back to a look-up per user.
    listed.unwrap_or_else(|e| {
        on_progress(SyncProgress::Warning(format!(
            "listing remote users failed: {e:#}"
        )));
        None
    })
}

/// One worker: sends the users of its `queue` a batch at a time until the queue closes.
/// With a `pool`, its instance comes from there when one is kept (already told the dialect
/// and handed the index) and goes back there at the end, unless it trapped.
#[allow(clippy::too_many_arguments)]
fn run_queue(
    runtime: &Runtime,
    settings: &ConnectorSettings,
    queue: mpsc::Receiver<WorkItem>,
    index: Option<&str>,
    dialect: Option<&str>,
    batch_size: usize,
    tx: &mpsc::Sender<Report>,
    pool: Option<&SessionPool>,
) {
    let session = match pool.and_then(SessionPool::take) {
        Some(session) => session,
        None => match open_worker(runtime, settings, index, dialect, tx) {
            Ok(session) => session,
            // Without an instance every user of the queue fails (the queue is read to its
            // end, so the sync never waits on it).
            Err(reason) => {
                for item in queue.iter() {
                    let _ = tx.send(Report::Done(Box::new((
                        item,
                        Err(anyhow::anyhow!("{reason}")),
                        0,
                    ))));
                }
                return;
            }
        },
    };
    if let (Some(session), Some(pool)) = (
        send_queue(runtime, settings, session, &queue, batch_size, tx),
        pool,
    ) {
        pool.keep(session);
    }
}

/// A worker's instance: opened, told the server's `dialect` and handed the remote `index`
/// (each only a warning when refused). The error is why it could not be opened.
fn open_worker(
    runtime: &Runtime,
    settings: &ConnectorSettings,
    index: Option<&str>,
    dialect: Option<&str>,
    tx: &mpsc::Sender<Report>,
) -> Result<Session, String> {
    let mut session = match runtime.open(settings) {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(describe_error(&e)),
        Err(e) => return Err(format!("{e:#}")),
    };
    if let Some(document) = dialect {
        match crate::dialect::hand_over(&mut session, document) {
            Ok(None) => {}
            Ok(Some(warning)) => {
                let _ = tx.send(Report::Warning(warning));
            }
            Err(e) => {
                let _ = tx.send(Report::Warning(format!(
                    "loading the server dialect failed: {e:#}"
                )));
            }
        }
    }
    if let Some(document) = index {
        match session.import_remote_index(document) {
            Ok(Ok(_)) => {}
            // Not fatal: matching falls back to a look-up per user.
            Ok(Err(e)) => {
                let _ = tx.send(Report::Warning(format!(
                    "loading the remote users failed: {}",
                    describe_error(&e)
                )));
            }
            Err(e) => {
                let _ = tx.send(Report::Warning(format!(
                    "loading the remote users failed: {e:#}"
                )));
            }
        }
    }
    Ok(session)
}

/// Sends the users of `queue` on `session`, a batch at a time, until the queue closes.
/// Returns the instance when it is still the one it was given (no trap replaced it), to
/// be kept for the next slice.
fn send_queue(
    runtime: &Runtime,
    settings: &ConnectorSettings,
    session: Session,
    queue: &mpsc::Receiver<WorkItem>,
    batch_size: usize,
    tx: &mpsc::Sender<Report>,
) -> Option<Session> {
    let fail_all = |items: &mut dyn Iterator<Item = WorkItem>, msg: String| {
        for item in items {
            let _ = tx.send(Report::Done(Box::new((
                item,
                Err(anyhow::anyhow!("{msg}")),
                0,
            ))));
        }
    };
    let mut session = Some(session);
    let mut kept = true;
    let rate = crate::rate::for_target(&settings.base_url);
    loop {
        // The /Bulk size the server takes now, at most the configured batch.
        let size = batch_size.min(rate.bulk_size() as usize).max(1);
        // A full batch, or what is left when the queue closes.
        let batch: Vec<WorkItem> = queue.iter().take(size).collect();
        if batch.is_empty() {
            return session.filter(|_| kept);
        }
        let items: Vec<BatchItem> = batch
            .iter()
            .map(|w| BatchItem {
                user: w.user.to_cms_user(),
                event: w.event,
                link: w.link.as_ref().map(|l| l.link.clone()),
            })
            .collect();
        let started = Instant::now();
        let result = match session.as_mut() {
            Some(s) => s.provision_batch(&items),
            None => Err(anyhow::anyhow!("the component instance was lost")),
        };
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
            / batch.len().max(1) as u64;
        match result {
            Ok(outcome) => {
                let _ = tx.send(Report::Requests(
                    u64::from(outcome.requests),
                    u64::from(outcome.bulk_requests),
                ));
                for (item, result) in batch.into_iter().zip(outcome.results) {
                    if tx
                        .send(Report::Done(Box::new((item, Ok(result), ms))))
                        .is_err()
                    {
                        return None;
                    }
                }
            }
            Err(trap) => {
                // After a trap the instance cannot be trusted; open a fresh one. The
                // batch's users are reported failed and the next sync tries them again.
                // The fresh instance does not load the listing: writes of the failed batch
                // may have landed since, so its matching asks the server.
                session = runtime.open(settings).ok().and_then(Result::ok);
                kept = false;
                fail_all(&mut batch.into_iter(), format!("{trap:#}"));
            }
        }
    }
}

/// Whether `stored`, a link's or a parked user's fingerprint, is `user`'s: `current` (its
/// fingerprint now), or the form an older version wrote (the whole policy hashed with each
/// user), which still means "unchanged" after an upgrade. [`crate::sync_pages`] rewrites
/// those in the current form as it finds them.
pub(crate) fn is_fingerprint_of(
    stored: &str,
    user: &UserRecord,
    current: &str,
    policy_json: &str,
) -> bool {
    stored == current
        || (!is_current_fingerprint(stored) && stored == user.legacy_fingerprint(policy_json))
}

/// The `meta` key that marks a user parked by a sync (its value: the user's fingerprint).
pub(crate) fn parked_key(user_id: &str) -> String {
    format!("sync-parked {user_id}")
}

/// A creation refused for good with a 409 that no look-up explains: the server holds the
/// userName in a record it does not list (the component says so in the error).
fn held_unlisted(item: &WorkItem, e: &ProvisioningError) -> bool {
    item.link.is_none()
        && matches!(e, ProvisioningError::Scim(s)
            if s.status == 409 && matches!(s.retry, crate::types::RetryClass::Permanent))
}

/// The user a report is about, if any ([`record`]'s order).
fn report_user(report: &Report) -> Option<&str> {
    match report {
        Report::Done(done) => Some(done.0.user.id.as_str()),
        Report::Requests(..) | Report::Warning(_) => None,
    }
}

fn record(
    store: &mut Store,
    settings: &ConnectorSettings,
    pending: &mut Vec<Report>,
    summary: &mut SyncSummary,
) -> anyhow::Result<()> {
    let mut batch = std::mem::take(pending);
    // In user id order, as a worker's settle upserts its batch's links: a user's link is
    // locked by both, and in the order results came (another order) the two could each
    // hold a link the other waits for, a deadlock that rolls one back.
    batch.sort_by(|a, b| report_user(a).cmp(&report_user(b)));
    let policy = PolicyDigest::of(&settings.policy_json);
    store.batch(|s| {
        for report in batch {
            let (item, result, duration_ms) = match report {
                Report::Done(done) => *done,
                Report::Requests(requests, bulk) => {
                    summary.requests += requests;
                    summary.bulk_requests += bulk;
                    continue;
                }
                // Handed to the progress callback as they came.
                Report::Warning(_) => continue,
            };
            let mut entry = LogEntry {
                at: now_rfc3339(),
                user_id: item.user.id.clone(),
                operation: "sync".into(),
                http_status: None,
                outcome: String::new(),
                error: None,
                duration_ms,
            };
            match result {
                Ok(Ok(outcome)) => {
                    // See delivery: a deleted user's link is dropped once deprovisioned.
                    let link: Option<&Link> = outcome
                        .link
                        .as_ref()
                        .filter(|_| item.event != UserEvent::Deleted);
                    let fingerprint = item.user.fingerprint_with(policy);
                    if let Some(stored) = &item.link {
                        match outcome.action {
                            Action::Created | Action::Adopted => summary.missing_remotely += 1,
                            Action::Unlinked if item.event != UserEvent::Deleted => {
                                summary.missing_remotely += 1;
                            }
                            // Only a verifying sync sends a user whose CMS record is as
                            // last provisioned: what changed was the remote side.
                            Action::Updated | Action::Deactivated
                                if is_fingerprint_of(
                                    &stored.fingerprint,
                                    &item.user,
                                    &fingerprint,
                                    &settings.policy_json,
                                ) =>
                            {
                                summary.changed_remotely += 1;
                            }
                            _ => {}
                        }
                    }
                    s.save_link(&item.user.id, link, &fingerprint)?;
                    if item.link.is_none() {
                        s.delete_meta(&parked_key(&item.user.id))?;
                    }
                    match outcome.action {
                        Action::Created => summary.created += 1,
                        Action::Adopted => summary.adopted += 1,
                        Action::Updated => summary.updated += 1,
                        Action::Unchanged => summary.unchanged += 1,
                        Action::Deactivated => summary.deactivated += 1,
                        Action::Deleted => summary.deleted += 1,
                        Action::Unlinked | Action::Skipped => summary.skipped += 1,
                    }
                    entry.outcome = action_name(outcome.action).into();
                    entry.error = outcome.reason;
                }
                Ok(Err(e)) if held_unlisted(&item, &e) => {
                    summary.parked += 1;
                    s.set_meta(
                        &parked_key(&item.user.id),
                        &item.user.fingerprint_with(policy),
                    )?;
                    entry.outcome = "parked".into();
                    entry.http_status = error_status(&e);
                    entry.error = Some(describe_error(&e));
                }
                Ok(Err(e)) => {
                    summary.failed += 1;
                    entry.outcome = "failed".into();
                    entry.http_status = error_status(&e);
                    entry.error = Some(describe_error(&e));
                }
                Err(trap) => {
                    summary.failed += 1;
                    entry.outcome = "failed".into();
                    entry.error = Some(format!("{trap:#}"));
                }
            }
            s.append_log(&entry)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batches `users` users make on `workers` workers sending `batch` at a time: each
    /// worker's users in the order it got them, cut into batches.
    fn batches(spread: Spread, users: usize, workers: usize, batch: usize) -> Vec<Vec<usize>> {
        let mut queues: Vec<Vec<usize>> = vec![Vec::new(); workers];
        for nth in 0..users {
            let id = format!("{:06}", nth + 1);
            queues[spread.worker(&id, nth, workers)].push(nth);
        }
        queues
            .iter()
            .flat_map(|q| q.chunks(batch).map(<[usize]>::to_vec))
            .collect()
    }

    #[test]
    fn a_slices_users_go_in_full_batches_in_id_order() {
        let blocks = Spread::InBlocks { size: 100 };
        // A partition of 6,250 users on 8 instances: 62 full requests and the rest.
        let sent = batches(blocks, 6250, 8, 100);
        assert_eq!(sent.len(), 63);
        assert_eq!(sent.iter().filter(|b| b.len() == 100).count(), 62);
        for b in &sent {
            assert!(b.windows(2).all(|w| w[1] == w[0] + 1), "consecutive ids");
        }
        // Each user once.
        let mut all: Vec<usize> = sent.concat();
        all.sort_unstable();
        assert_eq!(all, (0..6250).collect::<Vec<_>>());
        // Spread by hash, the same users make more requests, several of them partial.
        let hashed = batches(Spread::ByUser, 6250, 8, 100);
        assert!(hashed.len() > sent.len(), "{} requests", hashed.len());
        // Fewer users than a batch per worker: one worker's batch, not several partial.
        assert_eq!(batches(blocks, 250, 3, 100).len(), 3);
        assert_eq!(
            batches(blocks, 250, 3, 100)
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>(),
            [100, 100, 50]
        );
    }

    #[test]
    fn a_whole_syncs_user_always_goes_to_the_same_worker() {
        for nth in [0, 1, 99, 100, 12_345] {
            assert_eq!(
                Spread::ByUser.worker("user-7", nth, 8),
                Spread::ByUser.worker("user-7", 0, 8)
            );
        }
        assert_eq!(Spread::InBlocks { size: 0 }.worker("x", 5, 0), 0);
    }
}
