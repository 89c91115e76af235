//! `sync`: the scheduled full reconcile, or its plan. The library reports progress as
//! events; [`SyncBar`] draws them.

use std::process::ExitCode;

use host_example::describe::planned_name;
use host_example::sync::{self, SyncPlan, SyncProgress, sync_with_progress};
use indicatif::{ProgressBar, ProgressStyle};

use crate::app::App;

/// Runs a sync, or prints its plan; fails when a user could not be provisioned.
pub fn run(app: &App, plan: bool, allow_deletes: bool, full: bool) -> anyhow::Result<ExitCode> {
    let mut store = app.store()?;
    let runtime = app.runtime()?;
    let mut options = app.sync_options(plan, allow_deletes)?;
    options.full = full;
    if plan {
        print_plan(&sync::plan(&runtime, &app.settings, &store, full)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut bar = SyncBar::default();
    let summary = sync_with_progress(&runtime, &app.settings, &mut store, &options, &mut |p| {
        bar.show(p)
    })?;
    println!("sync: {summary}");
    Ok(if summary.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// One line per user that needs a call, then the counts.
fn print_plan(plan: &SyncPlan) {
    for w in &plan.work {
        println!(
            "{:<10} {:<8} {}{}",
            planned_name(w.planned),
            w.user.id,
            if w.user.name.is_empty() {
                "(deleted)"
            } else {
                &w.user.name
            },
            w.reason
                .as_ref()
                .map(|r| format!("  ({r})"))
                .unwrap_or_default()
        );
    }
    println!(
        "plan: {} unchanged; {}",
        plan.unchanged,
        plan.counts()
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// A sync's progress bar on stderr (indicatif hides it when stderr is not a terminal);
/// the sync's warnings are printed above it.
#[derive(Default)]
pub struct SyncBar {
    bar: Option<ProgressBar>,
}

impl SyncBar {
    /// Shows one progress event.
    pub fn show(&mut self, progress: SyncProgress) {
        match progress {
            SyncProgress::Started { total } if total > 0 => {
                let bar = ProgressBar::new(total);
                if let Ok(style) = ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} users ({per_sec}, eta {eta})",
                ) {
                    bar.set_style(style);
                }
                self.bar = Some(bar);
            }
            SyncProgress::Started { .. } => {}
            SyncProgress::UserDone { .. } => {
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                }
            }
            SyncProgress::Finished => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
            }
            SyncProgress::Warning(message) => match &self.bar {
                Some(bar) => bar.suspend(|| eprintln!("{message}")),
                None => eprintln!("{message}"),
            },
        }
    }
}
