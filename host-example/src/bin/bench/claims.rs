//! The outbox's claim overhead on a shared database (`--claims N`, issue 30): N events
//! queued (users of 4 events each, in rounds, so each user's events wait behind one
//! another), then drained by 1, 2 and 4 workers (threads, each with its own connection,
//! as `daemon` processes have) against a server that answers at once. Each worker claims a
//! batch of 100 under its lease (`Store::claim_due`) and records it exactly as a delivery
//! does (`Store::settle`: the links saved, the events removed, a log line each, in one
//! transaction). Reported: events per second per worker count, and the load average
//! (the figures are only comparable on a quiet machine). Only the queue's cost is
//! measured: no component call and no HTTP.
//!
//! One command, on throwaway servers of its own (a PostgreSQL, then a MariaDB, started as
//! the tests start them: loopback, a temporary directory; PostgreSQL with `fsync=off`,
//! MariaDB with `innodb_flush_log_at_trx_commit=2`):
//!
//! ```sh
//! cargo build --release -p host-example --bin bench --features db-test-support
//! target/release/bench --claims 20000 --claims-database throwaway
//! ```
//!
//! Or on a database of your own (one the bench may empty: its outbox, users, links and
//! log are deleted before each run):
//!
//! ```sh
//! target/release/bench --claims 20000 --claims-database postgres://user:pass@127.0.0.1:5432/db
//! ```

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use host_example::clock::{now_ms, now_rfc3339};
use host_example::database::{DatabaseUrl, Db};
use host_example::store::{LogEntry, SettleOutcome, Settlement, Store, UserRecord};
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

/// One worker: claims and settles until the outbox is empty; returns the events it
/// claimed and those it settled.
fn worker(url: &DatabaseUrl) -> Result<(Vec<i64>, Vec<i64>)> {
    let mut store = Store::open_url(url, Duration::from_secs(30))?;
    let mut claimed = Vec::new();
    let mut settled = Vec::new();
    loop {
        let events = store.claim_due(now_ms(), false, BATCH)?;
        claimed.extend(events.iter().map(|e| e.seq));
        if events.is_empty() {
            if store.outbox_depth()?.0 == 0 {
                return Ok((claimed, settled));
            }
            // Every user left has an event in flight on another worker.
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        // As `delivery` records a batch: one `Store::settle`.
        let settlements: Vec<Settlement> = events
            .iter()
            .map(|e| Settlement {
                seq: e.seq,
                user_id: e.user_id.clone(),
                outcome: SettleOutcome::Delivered {
                    link: Some(Link {
                        remote_id: format!("remote-{}", e.user_id),
                        version: Some(format!("W/\"{}\"", e.seq)),
                        snapshot: None,
                    }),
                    fingerprint: "fingerprint".into(),
                },
                log: LogEntry {
                    at: now_rfc3339(),
                    user_id: e.user_id.clone(),
                    operation: "updated".into(),
                    http_status: None,
                    outcome: "updated".into(),
                    error: None,
                    duration_ms: 0,
                },
            })
            .collect();
        settled.extend(store.settle(&settlements)?);
    }
}

/// Runs the claim benchmark and prints its table: on `database`, or with `throwaway` on
/// a PostgreSQL and then a MariaDB of its own (the tests' throwaway servers: feature
/// `db-test-support`).
pub fn run(database: &str, events: usize) -> Result<()> {
    if database == "throwaway" {
        return run_throwaway(events);
    }
    run_on(database, events)
}

#[cfg(feature = "db-test-support")]
fn run_throwaway(events: usize) -> Result<()> {
    use host_example::database::test_support::{TestMariaDb, TestPostgres};
    let pg = TestPostgres::start()?;
    run_on(&pg.create_database("claims")?, events)?;
    drop(pg);
    let maria = TestMariaDb::start()?;
    run_on(&maria.create_database("claims")?, events)
}

#[cfg(not(feature = "db-test-support"))]
fn run_throwaway(_events: usize) -> Result<()> {
    bail!("--claims-database throwaway needs the bench built with --features db-test-support")
}

fn run_on(database: &str, events: usize) -> Result<()> {
    let url = DatabaseUrl::parse(database, std::path::Path::new("."))?;
    if url.sqlite_path().is_some() {
        bail!("--claims-database must be a postgres:// or mysql:// URL");
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\n## Outbox claims on {url}: {events} events, 4 per user (load average {})\n",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
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
        let mut claimed: Vec<i64> = Vec::with_capacity(events);
        let mut settled: Vec<i64> = Vec::with_capacity(events);
        for h in handles {
            let (c, s) = h
                .join()
                .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
            claimed.extend(c);
            settled.extend(s);
        }
        let secs = started.elapsed().as_secs_f64();
        // Exactly once: no event claimed twice (the lease, 60 s, outlasts the run), and
        // every event settled once.
        let (claims, settles) = (claimed.len(), settled.len());
        claimed.sort_unstable();
        claimed.dedup();
        settled.sort_unstable();
        settled.dedup();
        if claimed.len() != claims || settled.len() != settles || settles != events {
            bail!(
                "{claims} claims of {} events, {settles} settles of {}; {events} queued",
                claimed.len(),
                settled.len()
            );
        }
        println!("| {workers} | {secs:.2} | {:.0} |", events as f64 / secs);
    }
    Ok(())
}
