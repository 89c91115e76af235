//! `sync`: the scheduled full reconcile, or its plan.

use std::process::ExitCode;

use host_example::sync::sync;

use crate::app::App;

/// Runs a sync, or prints its plan; fails when a user could not be provisioned.
pub fn run(app: &App, plan: bool, allow_deletes: bool, full: bool) -> anyhow::Result<ExitCode> {
    let mut store = app.store()?;
    let runtime = app.runtime()?;
    let mut options = app.sync_options(plan, allow_deletes)?;
    options.full = full;
    let summary = sync(&runtime, &app.settings, &mut store, &options)?;
    if !plan {
        println!("sync: {summary}");
    }
    Ok(if summary.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
