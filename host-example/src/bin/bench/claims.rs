//! The outbox's claim overhead on a shared database (`--claims N`, issue 30): N events
//! queued (users of 4 events each, in rounds, so each user's events wait behind one
//! another), then drained by 1, 2 and 4 workers (threads, each with its own connection,
//! as `daemon` processes have) against a server that answers at once: each worker claims
//! a batch of 100 under its lease, and records each event delivered exactly as a delivery
//! does (the link saved, the event removed, a log line), the batch in one transaction.
//! Reported: events per second per worker count. Only the queue's cost is measured: no
//! component call and no HTTP.
//!
//! ```sh
//! target/release/bench --claims 20000 --claims-database postgres://user:pass@127.0.0.1:5432/db
//! ```
//!
//! The database must be one the bench may empty: its outbox, users, links and log are
//! deleted before each run.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use host_example::clock::{now_ms, now_rfc3339};
use host_example::database::{DatabaseUrl, Db};
use host_example::store::{LogEntry, Store, UserRecord};
use host_example::types::{Link, UserEvent};
use serde_json::{Map, json};

/// Events a worker claims at once (the delivery's batch).
const BATCH: u32 = 100;

fn empty(url: &DatabaseUrl) -> Result<()> {
    // Through the store first, so the schema exists.
    drop(Store::open_url(url, Duration::from_secs(30))?);
    let mut db = Db::connect(url)?;
    for table in ["outbox", "links", "users", "provisioning_log"] {
        db.execute(&format!("DELETE FROM {table}"), &[])?;
    }
    Ok(())
}

fn enqueue(url: &DatabaseUrl, events: usize) -> Result<()> {
    let mut store = Store::open_url(url, Duration::from_secs(30))?;
    let users = events.div_ceil(4).max(1);
    let mut ids = Vec::with_capacity(users);
    let run = now_ms();
    store.batch(|s| {
        for i in 0..users {
            let mut fields = Map::new();
            fields.insert("seq".into(), json!("1"));
            let user = s.add_user(
                UserRecord {
                    id: String::new(),
                    name: format!("claims-{run}-{i}"),
                    mail: format!("claims-{run}-{i}@example.com"),
                    fields,
                    active: true,
                },
                true,
            )?;
            ids.push(user.id);
        }
        Ok(())
    })?;
    for round in 2..=4 {
        let left = events.saturating_sub(users * (round - 1));
        store.batch(|s| {
            for id in ids.iter().take(left) {
                s.change_user(id, UserEvent::Updated, |u| {
                    u.fields.insert("seq".into(), json!(round.to_string()));
                })?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// One worker: claims and settles until the outbox is empty; returns events settled.
fn worker(url: &DatabaseUrl) -> Result<u64> {
    let mut store = Store::open_url(url, Duration::from_secs(30))?;
    let mut settled = 0;
    loop {
        let events = store.claim_due(now_ms(), false, BATCH)?;
        if events.is_empty() {
            if store.outbox_depth()?.0 == 0 {
                return Ok(settled);
            }
            // Every user left has an event in flight on another worker.
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        store.batch(|s| {
            for e in &events {
                let link = Link {
                    remote_id: format!("remote-{}", e.user_id),
                    version: Some(format!("W/\"{}\"", e.seq)),
                    snapshot: None,
                };
                s.save_link(&e.user_id, Some(&link), "fingerprint")?;
                s.complete_event(e.seq)?;
                s.append_log(&LogEntry {
                    at: now_rfc3339(),
                    user_id: e.user_id.clone(),
                    operation: "updated".into(),
                    http_status: None,
                    outcome: "updated".into(),
                    error: None,
                    duration_ms: 0,
                })?;
            }
            Ok(())
        })?;
        settled += events.len() as u64;
    }
}

/// Runs the claim benchmark and prints its table.
pub fn run(database: &str, events: usize) -> Result<()> {
    let url = DatabaseUrl::parse(database, std::path::Path::new("."))?;
    if url.sqlite_path().is_some() {
        bail!("--claims-database must be a postgres:// or mysql:// URL");
    }
    println!("\n## Outbox claims on {url}: {events} events, 4 per user\n");
    println!("| workers | seconds | events/s |");
    println!("| ---: | ---: | ---: |");
    for workers in [1usize, 2, 4] {
        empty(&url)?;
        enqueue(&url, events)?;
        let started = Instant::now();
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || worker(&url))
            })
            .collect();
        let mut settled = 0;
        for h in handles {
            settled += h
                .join()
                .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
        }
        let secs = started.elapsed().as_secs_f64();
        if settled != events as u64 {
            bail!("{settled} events settled, {events} queued");
        }
        println!("| {workers} | {secs:.2} | {:.0} |", events as f64 / secs);
    }
    Ok(())
}
