//! `provision`: one user now (manual, on demand), or a dry run that shows the requests.

use std::process::ExitCode;

use anyhow::bail;
use host_example::clock::now_rfc3339;
use host_example::describe::{action_name, error_status, planned_name};
use host_example::store::LogEntry;
use host_example::types::{Link, UserEvent};
use host_example::{action_label, describe_error};
use serde_json::Value;

use crate::app::App;

/// Provisions one user now, or shows what would be sent.
pub fn run(app: &App, needle: &str, dry_run: bool) -> anyhow::Result<ExitCode> {
    let mut store = app.store()?;
    let user = app.one_user(&store, needle)?;
    let link = store.link(&user.id)?;
    let runtime = app.runtime()?;
    let opened = if dry_run {
        runtime.open_dry_run(&app.settings, app.log())?
    } else {
        runtime.open_with_log(&app.settings, app.log())?
    };
    let mut session = match opened {
        Ok(s) => s,
        Err(e) => bail!("{}", describe_error(&e)),
    };
    if let Some(warning) =
        host_example::dialect::load(&store, &mut session, &app.settings.base_url)?
    {
        eprintln!("warning: {warning}");
    }
    let cms_user = user.to_cms_user();
    let event = UserEvent::Reconcile;
    let started = std::time::Instant::now();
    // On demand, look rather than trust the snapshot: without one the component reads the
    // remote user (one GET by id), re-creates or adopts it when it is gone, and sends what
    // differs from what the server holds now.
    let looked = link.as_ref().map(|l| Link {
        snapshot: None,
        ..l.link.clone()
    });
    let result = session.provision(&cms_user, event, looked.as_ref())?;
    if !dry_run {
        host_example::dialect::save(&mut store, &mut session, &app.settings.base_url)?;
    }
    if dry_run {
        let plan = session.plan(&cms_user, event, link.is_some())?;
        println!(
            "dry run for user {} ({}): would {}{}",
            user.id,
            user.name,
            planned_name(plan.action),
            plan.reason.map(|r| format!(" ({r})")).unwrap_or_default()
        );
        let held = session.take_held();
        if held.is_empty() {
            match result {
                Ok(o) => println!("no write request needed: {}", action_label(o.action)),
                Err(e) => println!("{}", describe_error(&e)),
            }
        }
        for r in held {
            println!("{} {}", r.method, r.url);
            if !r.body.is_empty() {
                match serde_json::from_str::<Value>(&r.body) {
                    Ok(v) => println!("{}", serde_json::to_string_pretty(&v)?),
                    Err(_) => println!("{}", r.body),
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut entry = LogEntry {
        at: now_rfc3339(),
        user_id: user.id.clone(),
        operation: "manual".into(),
        http_status: None,
        outcome: String::new(),
        error: None,
        duration_ms,
    };
    match result {
        Ok(mut outcome) => {
            // Nothing was sent: the stored snapshot still says what was last provisioned.
            if let (Some(new), Some(old)) = (outcome.link.as_mut(), link.as_ref())
                && new.snapshot.is_none()
                && new.remote_id == old.link.remote_id
            {
                new.snapshot = old.link.snapshot.clone();
            }
            store.save_link(
                &user.id,
                outcome.link.as_ref(),
                &user.fingerprint(&app.settings.policy_json),
            )?;
            entry.outcome = action_name(outcome.action).into();
            entry.error = outcome.reason.clone();
            store.append_log(&entry)?;
            println!(
                "User {} ({}) provisioned successfully: {}{}{}",
                user.id,
                user.name,
                action_label(outcome.action),
                outcome
                    .link
                    .as_ref()
                    .map(|l| format!("; remote id {}", l.remote_id))
                    .unwrap_or_default(),
                outcome
                    .reason
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            entry.outcome = "failed".into();
            entry.http_status = error_status(&e);
            entry.error = Some(describe_error(&e));
            store.append_log(&entry)?;
            println!(
                "User {} ({}) was not provisioned: {}",
                user.id,
                user.name,
                describe_error(&e)
            );
            Ok(ExitCode::FAILURE)
        }
    }
}
