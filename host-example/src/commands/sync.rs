//! `sync`: the scheduled full reconcile, or its plan. The library reports progress as
//! events; [`SyncBar`] draws them.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use host_example::database::Db;
use host_example::describe::planned_name;
use host_example::store::DEFAULT_CONNECT_WAIT;
use host_example::sync::{self, SyncPlan, SyncProgress};
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
    // The plan reads users and links in pages through a connection of its own, so a large
    // store is never held whole.
    let mut pages = Db::connect_with_retry(&app.database_url()?, DEFAULT_CONNECT_WAIT)?;
    let summary = sync::sync_paged(
        &runtime,
        &app.settings,
        &mut store,
        &mut pages,
        &options,
        &mut |p| bar.show(p),
    )?;
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

/// A sync's live progress on stderr: users done, users/s, remaining and failures. On a
/// terminal a bar (the sync's warnings printed above it); otherwise (a log, a pipe, a
/// service manager) one line every [`PLAIN_EVERY`], since indicatif hides a bar there.
#[derive(Default)]
pub struct SyncBar {
    bar: Option<ProgressBar>,
    /// Without a terminal: when the sync started, and when the last line was printed.
    plain: Option<(Instant, Instant)>,
}

/// How often a sync without a terminal prints a progress line.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// The progress text after the bar: users/s, remaining, failures.
fn progress_text(done: u64, total: u64, failed: u64, elapsed: Duration) -> String {
    let per_sec = if elapsed.as_secs_f64() > 0.0 {
        done as f64 / elapsed.as_secs_f64()
    } else {
        0.0
    };
    format!(
        "{done}/{total} users, {per_sec:.1} users/s, {} remaining, {failed} failed",
        total.saturating_sub(done)
    )
}

impl SyncBar {
    /// Shows one progress event.
    pub fn show(&mut self, progress: SyncProgress) {
        match progress {
            SyncProgress::Started { total } if total > 0 => {
                let bar = ProgressBar::new(total);
                if bar.is_hidden() {
                    let now = Instant::now();
                    self.plain = Some((now, now));
                    return;
                }
                if let Ok(style) = ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} users ({per_sec}, eta {eta}) {msg}",
                ) {
                    bar.set_style(style);
                }
                bar.set_message(format!("{total} remaining, 0 failed"));
                self.bar = Some(bar);
            }
            SyncProgress::Started { .. } => {}
            SyncProgress::UserDone {
                done,
                total,
                failed,
            } => {
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                    bar.set_message(format!(
                        "{} remaining, {failed} failed",
                        total.saturating_sub(done)
                    ));
                }
                if let Some((started, last)) = &mut self.plain
                    && (last.elapsed() >= PLAIN_EVERY || done == total)
                {
                    *last = Instant::now();
                    eprintln!(
                        "sync: {}",
                        progress_text(done, total, failed, started.elapsed())
                    );
                }
            }
            SyncProgress::Finished => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                self.plain = None;
            }
            SyncProgress::Warning(message) => match &self.bar {
                Some(bar) => bar.suspend(|| eprintln!("{message}")),
                None => eprintln!("{message}"),
            },
        }
    }
}
