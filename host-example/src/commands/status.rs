//! `log`, `status` and `retry`: what was provisioned, what waits, and sending the parked
//! events again.

use std::process::ExitCode;

use host_example::store::event_name;

use crate::app::App;

/// Prints the provisioning log, newest first.
pub fn log(app: &App, user: Option<&str>, failed: bool, limit: u32) -> anyhow::Result<ExitCode> {
    let store = app.store()?;
    for e in store.log_entries(user, failed, limit)? {
        println!(
            "{} user {:<8} {:<10} {:<12} {:>6} {:>5} ms  {}",
            e.at,
            e.user_id,
            e.operation,
            e.outcome,
            e.http_status.map(|s| s.to_string()).unwrap_or_default(),
            e.duration_ms,
            e.error.unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the users, the outbox depth, the parked events and the last sync.
pub fn status(app: &App) -> anyhow::Result<ExitCode> {
    let store = app.store()?;
    let (pending, parked) = store.outbox_depth()?;
    println!("users:      {}", store.user_count()?);
    println!("linked:     {}", store.all_links()?.len());
    println!("outbox:     {pending} pending, {parked} parked");
    for e in store.pending_events()?.iter().filter(|e| e.parked) {
        println!(
            "  parked #{} user {} {} after {} attempts: {}",
            e.seq,
            e.user_id,
            event_name(e.event),
            e.attempts,
            e.last_error.as_deref().unwrap_or_default()
        );
    }
    println!(
        "last sync:  {}",
        store.meta("last_sync")?.unwrap_or_else(|| "never".into())
    );
    if store.is_shared() {
        // The daemons' shared reconcile: its last runs, newest first.
        let mut db = host_example::database::Db::connect(&app.database_url()?)?;
        for run in host_example::reconcile_shared::recent_runs(&mut db, 3)? {
            println!("reconcile:  {run}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Puts the users with parked events back in line, each as the CMS holds them now (see
/// `Store::requeue_parked`), and delivers them.
pub fn retry(app: &App) -> anyhow::Result<ExitCode> {
    let mut store = app.store()?;
    println!(
        "{} user(s) with parked changes back in line, each as the CMS holds them now",
        store.requeue_parked()?
    );
    Ok(super::exit_code(app.deliver_now(&mut store)?))
}
