//! `daemon`: the scheduled sync and automatic delivery in one long-running process.

use std::process::ExitCode;
use std::time::Duration;

use host_example::clock::now_rfc3339;
use host_example::delivery;
use host_example::sync::sync_with_progress;

use super::sync::SyncBar;
use crate::app::App;

/// Syncs every `every` and delivers outbox events as they come, until stopped.
///
/// Every `verify_every` the sync is a full, verifying one, so users deleted or changed on
/// the server are noticed; the first sync verifies, as the server may have changed while
/// the daemon was down.
pub fn run(app: &App, every: Duration, verify_every: Duration) -> anyhow::Result<ExitCode> {
    let runtime = app.runtime()?;
    let mut store = app.store()?;
    let mut options = app.sync_options(false, false)?;
    println!(
        "daemon: syncing every {}s, verifying every linked user every {}s, delivering outbox events as they come (Ctrl-C stops)",
        every.as_secs(),
        verify_every.as_secs()
    );
    let mut next_sync = std::time::Instant::now();
    let mut next_verify = next_sync;
    loop {
        let now = std::time::Instant::now();
        if now >= next_sync {
            options.full = now >= next_verify;
            let kind = if options.full {
                "verifying sync"
            } else {
                "sync"
            };
            let mut bar = SyncBar::default();
            match sync_with_progress(&runtime, &app.settings, &mut store, &options, &mut |p| {
                bar.show(p)
            }) {
                Ok(summary) => println!("{} {kind}: {summary}", now_rfc3339()),
                Err(e) => eprintln!("{} {kind} failed: {e:#}", now_rfc3339()),
            }
            next_sync = std::time::Instant::now() + every;
            if options.full {
                next_verify = std::time::Instant::now() + verify_every;
            }
        }
        let mut session = app.session(&runtime)?;
        if let Some(warning) =
            host_example::dialect::load(&store, &mut session, &app.settings.base_url)?
        {
            eprintln!("{} warning: {warning}", now_rfc3339());
        }
        let report = delivery::deliver(
            &mut store,
            &mut session,
            &app.settings.policy_json,
            app.config.host.max_attempts,
            false,
        )?;
        if report != delivery::DeliveryReport::default() {
            host_example::dialect::save(&mut store, &mut session, &app.settings.base_url)?;
            println!(
                "{} outbox: {} delivered, {} retrying, {} parked",
                now_rfc3339(),
                report.delivered,
                report.retrying,
                report.parked
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}
