//! `daemon`: the scheduled sync and automatic delivery in one long-running process.

use std::process::ExitCode;
use std::time::Duration;

use host_example::clock::now_rfc3339;
use host_example::delivery;
use host_example::sync::sync_with_progress;

use super::sync::SyncBar;
use crate::app::App;

/// Syncs every `every` and delivers outbox events as they come, until stopped.
pub fn run(app: &App, every: Duration) -> anyhow::Result<ExitCode> {
    let runtime = app.runtime()?;
    let mut store = app.store()?;
    let options = app.sync_options(false, false)?;
    println!(
        "daemon: syncing every {}s, delivering outbox events as they come (Ctrl-C stops)",
        every.as_secs()
    );
    let mut next_sync = std::time::Instant::now();
    loop {
        if std::time::Instant::now() >= next_sync {
            let mut bar = SyncBar::default();
            match sync_with_progress(&runtime, &app.settings, &mut store, &options, &mut |p| {
                bar.show(p)
            }) {
                Ok(summary) => println!("{} sync: {summary}", now_rfc3339()),
                Err(e) => eprintln!("{} sync failed: {e:#}", now_rfc3339()),
            }
            next_sync = std::time::Instant::now() + every;
        }
        let mut session = app.session(&runtime)?;
        let report = delivery::deliver(
            &mut store,
            &mut session,
            &app.settings.policy_json,
            app.config.host.max_attempts,
            false,
        )?;
        if report != delivery::DeliveryReport::default() {
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
