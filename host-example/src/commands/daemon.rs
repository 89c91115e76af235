//! `daemon`: the scheduled sync and automatic delivery in one long-running process.

use std::process::ExitCode;
use std::time::Duration;

use host_example::clock::now_rfc3339;
use host_example::database::Db;
use host_example::delivery;
use host_example::reconcile_shared::{self, Schedule, SharedReconcile};
use host_example::store::DEFAULT_CONNECT_WAIT;
use host_example::sync::sync_paged;

use super::sync::SyncBar;
use crate::app::App;

/// Syncs every `every` and delivers outbox events as they come, until stopped.
///
/// Every `verify_every` the sync is a full, verifying one, so users deleted or changed on
/// the server are noticed; the first sync verifies, as the server may have changed while
/// the daemon was down. With `deliver_only` there is no sync: the process is one more
/// worker draining a shared outbox.
///
/// On a shared database (PostgreSQL, MariaDB) the sync is the shared reconcile
/// ([`host_example::reconcile_shared`]): one run per `every` for all the daemons on the
/// database, split into `partitions` ranges of users that each daemon claims in turn
/// between its outbox rounds, with the remote users listed once per run. On SQLite the
/// daemon syncs on its own, as before.
///
/// On a shared database, a failure of the store (the database went away) does not stop
/// the daemon: it connects again, with backoff, and carries on. Events it had claimed and
/// not yet settled go to a worker after their lease, so nothing is lost. Any other error
/// (a configuration the component refuses, say) stops it with the error and a non-zero
/// status, so a service manager shows the reason instead of a daemon retrying forever.
pub fn run(
    app: &App,
    every: Duration,
    verify_every: Duration,
    deliver_only: bool,
    partitions: u32,
) -> anyhow::Result<ExitCode> {
    let runtime = app.runtime()?;
    // The component checks the configuration (mapping, policy) when a session opens: a
    // refused one stops the daemon here with the reason, before it loops.
    drop(app.session(&runtime)?);
    let mut store = app.store()?;
    let mut options = app.sync_options(false, false)?;
    let mut shared = if store.is_shared() && !deliver_only {
        Some(SharedReconcile::connect(
            &app.database_url()?,
            DEFAULT_CONNECT_WAIT,
            store.worker_name(),
            Schedule {
                every,
                verify_every,
                partitions,
                lease: Duration::from_secs(u64::from(app.config.host.claim_lease_secs.max(1))),
            },
        )?)
    } else {
        None
    };
    if deliver_only {
        println!(
            "daemon: worker {}, delivering outbox events as they come (Ctrl-C stops)",
            store.worker_name()
        );
    } else if shared.is_some() {
        println!(
            "daemon: worker {}, sharing a reconcile every {}s (verifying every {}s, {partitions} partitions) with the other daemons on the database, delivering outbox events as they come (Ctrl-C stops)",
            store.worker_name(),
            every.as_secs(),
            verify_every.as_secs()
        );
    } else {
        println!(
            "daemon: syncing every {}s, verifying every linked user every {}s, delivering outbox events as they come (Ctrl-C stops)",
            every.as_secs(),
            verify_every.as_secs()
        );
    }
    // A shared outbox is polled more often: the claim is one indexed query, and a user's
    // next event becomes claimable as soon as the previous one is delivered.
    let idle = if store.is_shared() {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(2)
    };
    let mut next_sync = std::time::Instant::now();
    let mut next_verify = next_sync;
    let mut failures: u32 = 0;
    loop {
        let now = std::time::Instant::now();
        // A partition of the shared reconcile, between two rounds of delivery.
        let mut reconciling = false;
        if let Some(shared) = shared.as_mut() {
            match shared.step(&runtime, &app.settings, &mut store, &options) {
                Ok(events) => {
                    for event in &events {
                        reconciling |=
                            matches!(event, reconcile_shared::Event::PartitionDone { .. });
                        println!("{} {event}", now_rfc3339());
                    }
                }
                Err(e) => eprintln!("{} reconcile: {e:#}", now_rfc3339()),
            }
        } else if !deliver_only && now >= next_sync {
            options.full = now >= next_verify;
            let kind = if options.full {
                "verifying sync"
            } else {
                "sync"
            };
            let mut bar = SyncBar::default();
            // The plan reads users and links in pages through a connection of its own.
            let synced = app
                .database_url()
                .and_then(|url| Db::connect_with_retry(&url, DEFAULT_CONNECT_WAIT))
                .and_then(|mut pages| {
                    sync_paged(
                        &runtime,
                        &app.settings,
                        &mut store,
                        &mut pages,
                        &options,
                        &mut |p| bar.show(p),
                    )
                });
            match synced {
                Ok(summary) => println!("{} {kind}: {summary}", now_rfc3339()),
                Err(e) => eprintln!("{} {kind} failed: {e:#}", now_rfc3339()),
            }
            next_sync = std::time::Instant::now() + every;
            if options.full {
                next_verify = std::time::Instant::now() + verify_every;
            }
        }
        match deliver_once(app, &runtime, &mut store) {
            Ok(report) => {
                failures = 0;
                if report != delivery::DeliveryReport::default() {
                    println!(
                        "{} outbox: {} delivered, {} retrying, {} parked",
                        now_rfc3339(),
                        report.delivered,
                        report.retrying,
                        report.parked
                    );
                }
                if report.delivered == 0 && !reconciling {
                    std::thread::sleep(idle);
                }
            }
            // Only the database going away is waited out; anything else (a configuration
            // the component refuses, a schema this build does not know) would fail the
            // same way on every round, so it stops the daemon with the error.
            Err(e) if store.is_shared() && is_database_outage(&e, &mut store) => {
                failures = failures.saturating_add(1);
                let wait = Duration::from_millis(200u64 << failures.min(5));
                eprintln!(
                    "{} outbox: {e:#}; trying again in {} ms",
                    now_rfc3339(),
                    wait.as_millis()
                );
                std::thread::sleep(wait);
                if !store.is_alive()
                    && let Err(e) = store.reconnect(Duration::from_secs(30))
                {
                    eprintln!("{} the database is still away: {e:#}", now_rfc3339());
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// True when `error` comes from the database rather than from what the daemon was asked
/// to do: the connection is gone, or the error chain holds a PostgreSQL or MariaDB error
/// (a lost connection, a deadlock, a server shutting down). Those pass; the daemon waits
/// and tries again.
fn is_database_outage(error: &anyhow::Error, store: &mut host_example::store::Store) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<postgres::Error>().is_some()
            || cause.downcast_ref::<mysql::Error>().is_some()
    }) || !store.is_alive()
}

/// One round of delivery: everything due (or claimable) now.
fn deliver_once(
    app: &App,
    runtime: &host_example::Runtime,
    store: &mut host_example::store::Store,
) -> anyhow::Result<delivery::DeliveryReport> {
    let mut session = app.session(runtime)?;
    if let Some(warning) = host_example::dialect::load(store, &mut session, &app.settings.base_url)?
    {
        eprintln!("{} warning: {warning}", now_rfc3339());
    }
    let report = delivery::deliver(
        store,
        &mut session,
        &app.settings.policy_json,
        app.config.host.max_attempts,
        false,
    )?;
    if report != delivery::DeliveryReport::default() {
        host_example::dialect::save(store, &mut session, &app.settings.base_url)?;
    }
    Ok(report)
}
