//! A no-change resync of a large store read in pages (issue 30, `--resync-paged N`): N users
//! and their links, each link's fingerprint the user's own (as after a sync), written into
//! the store's tables on SQLite or PostgreSQL by a child process (so that writing them
//! leaves nothing in this process's memory), then one `host_example::sync::sync_paged` with
//! nothing changed. Reported: its seconds, the requests it sent (0), and the peak RSS of
//! this process during it (`VmHWM` after `clear_refs` reset it, so the component and the
//! runtime loaded before count, the writing does not).
//!
//! On PostgreSQL (`--resync-database postgres://…`, an empty database) the store is the
//! shared store there (`Store::open_url`), its tables made by its own migrations.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use host_example::database::{DatabaseUrl, Db, Dialect, SqlValue};
use host_example::store::{Store, UserRecord};
use host_example::{ConnectorSettings, Credentials, Runtime};
use serde_json::json;

use crate::figures::grouped;
use crate::servers::TempDb;
use crate::sync::sync_options;

/// Rows written per statement.
const ROWS_PER_INSERT: usize = 500;

/// The settings of the sync: a closed port, since a no-change resync sends nothing.
fn settings() -> ConnectorSettings {
    ConnectorSettings {
        base_url: "http://127.0.0.1:9/scim/v2".into(),
        credentials: Credentials::Bearer("unused".into()),
        timeout_ms: 1_000,
        policy_json: String::new(),
    }
}

fn user(i: usize) -> UserRecord {
    let mut fields = serde_json::Map::new();
    fields.insert("field_first_name".into(), json!(format!("First{i}")));
    fields.insert("field_last_name".into(), json!(format!("Last{i}")));
    fields.insert("roles".into(), json!(["authenticated", "editor"]));
    UserRecord {
        id: (i + 1).to_string(),
        name: format!("user{i}"),
        mail: format!("user{i}@example.com"),
        fields,
        active: true,
    }
}

/// Writes `n` users, each linked with its own fingerprint (the child process's work).
pub fn seed(database: &str, n: usize) -> Result<()> {
    let url = DatabaseUrl::parse(database, Path::new("."))?;
    // The store makes its tables (migrated and recorded as on any site).
    drop(Store::open_url(&url, Duration::from_secs(30))?);
    let mut db = Db::connect(&url)?;
    let policy = settings().policy_json;
    let started = Instant::now();
    for chunk_start in (0..n).step_by(ROWS_PER_INSERT) {
        let chunk = chunk_start..(chunk_start + ROWS_PER_INSERT).min(n);
        let mut users: Vec<SqlValue> = Vec::new();
        let mut links: Vec<SqlValue> = Vec::new();
        for i in chunk.clone() {
            let u = user(i);
            let snapshot = json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": u.name, "externalId": u.id, "active": true,
                "name": {"givenName": format!("First{i}"), "familyName": format!("Last{i}")},
                "emails": [{"value": u.mail, "type": "work", "primary": true}],
            });
            links.extend([
                u.id.clone().into(),
                format!("remote-{i:08}").into(),
                format!("W/\"{i}\"").into(),
                snapshot.to_string().into(),
                u.fingerprint(&policy).into(),
            ]);
            users.extend([
                u.id.into(),
                u.name.into(),
                u.mail.into(),
                serde_json::Value::Object(u.fields).to_string().into(),
                SqlValue::Int(1),
            ]);
        }
        let rows = |n: usize| vec!["(?, ?, ?, ?, ?)"; n].join(", ");
        db.transaction(|db| {
            db.execute(
                &format!(
                    "INSERT INTO users (id, name, mail, fields, active) VALUES {}",
                    rows(chunk.len())
                ),
                &users,
            )?;
            db.execute(
                &format!(
                    "INSERT INTO links (user_id, remote_id, version, snapshot, fingerprint) VALUES {}",
                    rows(chunk.len())
                ),
                &links,
            )?;
            Ok(())
        })?;
    }
    if db.dialect() == Dialect::Postgres {
        // As autovacuum would soon: the planner's statistics for the tables just filled.
        db.batch_execute("ANALYZE users; ANALYZE links")?;
    }
    eprintln!(
        "wrote {} users and links in {:.1} s",
        grouped(n as u64),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// This process's peak resident set since the last reset, in bytes.
fn peak_rss() -> Option<u64> {
    status_bytes("VmHWM:")
}

/// This process's resident set now, in bytes.
fn rss() -> Option<u64> {
    status_bytes("VmRSS:")
}

fn status_bytes(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak resident set to the current one (Linux's `clear_refs` 5).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Seeds `n` users (in a child process) into `database` (a SQLite path, a postgres:// URL,
/// or `None` for a fresh SQLite file), then measures the paged no-change resync.
pub fn run(runtime: &Runtime, n: usize, database: Option<&str>) -> Result<()> {
    let temp = TempDb::new()?;
    let sqlite_store = temp.0.clone();
    let database = database.map_or_else(|| sqlite_store.display().to_string(), String::from);
    println!(
        "\n== a no-change resync of {} users, read in pages from {} ==",
        grouped(n as u64),
        DatabaseUrl::parse(&database, Path::new("."))?.redacted()
    );
    let status = std::process::Command::new(std::env::current_exe()?)
        .args([
            "--resync-seed",
            &n.to_string(),
            "--resync-database",
            &database,
        ])
        .status()
        .context("starting the seeding process")?;
    if !status.success() {
        bail!("seeding failed: {status}");
    }
    let url = DatabaseUrl::parse(&database, Path::new("."))?;
    let mut store = Store::open_url(&url, Duration::from_secs(30))?;
    let mut db = Db::connect(&url)?;
    let options = sync_options(4, 100);
    let settings = settings();
    let before = rss();
    let reset = reset_peak_rss();
    let started = Instant::now();
    let summary = host_example::sync::sync_paged(
        runtime,
        &settings,
        &mut store,
        &mut db,
        &options,
        &mut |_| {},
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let peak = peak_rss();
    if summary.unchanged != n as u64 || summary.requests != 0 {
        bail!("not a no-change resync: {summary}");
    }
    let mb = |b: Option<u64>| b.map_or("unknown".into(), |b| format!("{:.1} MB", b as f64 / 1e6));
    println!(
        "resync: {seconds:.2} s, {} requests, {} unchanged; peak RSS during it {} (the process before it: {}{})",
        summary.requests,
        grouped(summary.unchanged),
        mb(peak),
        mb(before),
        if reset {
            ""
        } else {
            "; the peak could not be reset, so it includes the start"
        }
    );
    Ok(())
}
