//! Phases 3 and 5, a first sync: against the server's own `/Bulk` ceiling (scim2-server
//! and our serve, each fresh), and with `/Bulk` against one request per user (into
//! scim2-server, creating and then adopting). The store and settings every sync bench uses
//! are here too.

use std::time::Instant;

use anyhow::{Result, bail};
use host_example::{ConnectorSettings, Credentials, Runtime};
use scim_provisioner::user::FieldValue;
use serde_json::{Value, json};

use crate::client::{Client, expect};
use crate::figures::{Figures, grouped};
use crate::runner::phase;
use crate::servers::{SyncTarget, TempDb, start_target};
use crate::users::drupal_user;

/// Phase 3: a first sync of `users` users into each server (scim2-server unless
/// `skip_peer`, then ours) against that server's own `/Bulk` ceiling; printed, and added
/// to `figures`.
pub fn against_ceiling(
    runtime: &Runtime,
    users: usize,
    skip_peer: bool,
    figures: &mut Figures,
) -> Result<()> {
    println!(
        "\n== a first sync of {users} users (/Bulk, concurrency 8) against the server's own /Bulk ceiling (plain clients, 8 connections) =="
    );
    println!(
        "{:<14} {:>9} {:>10} {:>9} {:>6} {:>14} {:>10}",
        "into", "seconds", "users/s", "requests", "bulk", "ceiling/s", "of ceiling"
    );
    for (label, target) in [
        ("scim2-server", SyncTarget::Peer),
        ("our serve", SyncTarget::Ours),
    ] {
        if skip_peer && target == SyncTarget::Peer {
            continue;
        }
        let ceiling = bulk_ceiling(runtime, target, users, 8)?;
        let Some((seconds, summary)) =
            bench_first_sync_into(runtime, target, users, 100, false, 8)?
        else {
            continue;
        };
        let rate = users as f64 / seconds;
        let share = ceiling.map(|(c, _)| rate / c);
        let (goal, met) = match target {
            SyncTarget::Peer => (
                "≥ 90% of the server's own `/Bulk` ceiling",
                share.map(|s| s >= 0.9),
            ),
            SyncTarget::Ours => ("≥ 5,000 users/s", Some(rate >= 5_000.0)),
        };
        figures.push(
            format!(
                "first sync of {} users into {label} (`/Bulk`, concurrency 8)",
                grouped(users as u64)
            ),
            format!(
                "{seconds:.2} s, {} users/s, {} requests ({} bulk); {}",
                grouped(rate as u64),
                summary.requests,
                summary.bulk_requests,
                match (ceiling, share) {
                    (Some((c, ops)), Some(share)) => format!(
                        "{:.0}% of the server's own ceiling in this run ({} creates/s from plain clients, 8 connections, {ops} operations a request)",
                        share * 100.0,
                        grouped(c as u64)
                    ),
                    _ => "its ceiling not measured".into(),
                }
            ),
            goal,
            met,
        );
        println!(
            "{label:<14} {seconds:>9.2} {rate:>10.0} {:>9} {:>6} {:>14} {:>10}",
            summary.requests,
            summary.bulk_requests,
            ceiling.map_or("-".into(), |(c, ops)| format!("{c:.0} ({ops}/req)")),
            ceiling.map_or("-".into(), |(c, _)| format!("{:.0}%", rate / c * 100.0)),
        );
    }
    Ok(())
}

/// Phase 5: a first sync of `users` users into scim2-server with `/Bulk` and with one
/// request per user, creating and then adopting; printed, and added to `figures`.
pub fn bulk_against_one_per_user(
    runtime: &Runtime,
    users: usize,
    figures: &mut Figures,
) -> Result<()> {
    println!("\n== a first sync of {users} users to scim2-server, concurrency 8 ==");
    println!(
        "{:<26} {:>9} {:>10} {:>9} {:>6}",
        "mode", "seconds", "users/s", "requests", "bulk"
    );
    for existing in [false, true] {
        let mut rows = Vec::new();
        for (mode, batch_size) in [("bulk", 100), ("one per user", 1)] {
            let label = format!(
                "{} ({mode})",
                if existing { "adopt existing" } else { "create" }
            );
            let Some(row) = bench_first_sync(runtime, users, batch_size, existing, 8)? else {
                return Ok(());
            };
            println!(
                "{label:<26} {:>9.2} {:>10.0} {:>9} {:>6}",
                row.0,
                users as f64 / row.0,
                row.1.requests,
                row.1.bulk_requests
            );
            rows.push(row);
        }
        if let [bulk, single] = rows.as_slice() {
            println!("bulk is {:.2}x as fast", single.0 / bulk.0);
            figures.push(
                format!(
                    "first sync of {} users into scim2-server, {}: `/Bulk` vs one request per user",
                    grouped(users as u64),
                    if existing {
                        "each user there already (adopted)"
                    } else {
                        "creating"
                    }
                ),
                format!(
                    "{:.2} s vs {:.2} s, {:.2}× ({} vs {} requests)",
                    bulk.0,
                    single.0,
                    single.0 / bulk.0,
                    grouped(bulk.1.requests),
                    grouped(single.1.requests)
                ),
                "",
                None,
            );
        }
    }
    Ok(())
}

/// A sync's seconds and summary.
pub type SyncRun = (f64, host_example::sync::SyncSummary);

/// A fresh host store holding `n` Drupal-style users, none provisioned yet.
pub fn bench_store(n: usize) -> Result<(TempDb, host_example::store::Store)> {
    let db = TempDb::new()?;
    let mut store = host_example::store::Store::open(&db.0)?;
    store.import_users((0..n).map(|i| {
        let u = drupal_user(i);
        let text = |name: &str| match u.field(name) {
            Some(FieldValue::Text(t)) => t.trim().to_string(),
            _ => String::new(),
        };
        let mut fields = serde_json::Map::new();
        fields.insert("field_first_name".into(), json!(text("field_first_name")));
        fields.insert("field_last_name".into(), json!(text("field_last_name")));
        Ok(host_example::store::UserRecord {
            id: String::new(),
            name: text("name"),
            mail: text("mail").to_lowercase(),
            fields,
            active: true,
        })
    }))?;
    Ok((db, store))
}

/// How a bench client connects: a bearer token and a generous timeout.
pub fn sync_settings(base_url: String, token: String) -> ConnectorSettings {
    ConnectorSettings {
        base_url,
        credentials: Credentials::Bearer(token),
        timeout_ms: 30_000,
        policy_json: String::new(),
    }
}

/// How the benches sync: `concurrency` instances, `batch_size` writes a batch, no deletes,
/// three attempts, no progress bar.
pub fn sync_options(concurrency: u32, batch_size: u32) -> host_example::sync::SyncOptions {
    host_example::sync::SyncOptions {
        plan_only: false,
        allow_deletes: false,
        threshold: host_example::config::Threshold::Percent(10.0),
        concurrency,
        batch_size,
        max_attempts: 3,
        progress: false,
        full: false,
    }
}

/// Imports `n` users into a fresh store and syncs them to a fresh scim2-server; returns
/// the seconds the sync took and its summary. With `existing`, the server holds every
/// user already (under another first name), so the sync adopts and updates them all.
/// `None` when the peer is not installed.
pub fn bench_first_sync(
    runtime: &Runtime,
    n: usize,
    batch_size: u32,
    existing: bool,
    concurrency: u32,
) -> Result<Option<(f64, host_example::sync::SyncSummary)>> {
    bench_first_sync_into(
        runtime,
        SyncTarget::Peer,
        n,
        batch_size,
        existing,
        concurrency,
    )
}

/// [`bench_first_sync`] into either server.
fn bench_first_sync_into(
    runtime: &Runtime,
    target: SyncTarget,
    n: usize,
    batch_size: u32,
    existing: bool,
    concurrency: u32,
) -> Result<Option<(f64, host_example::sync::SyncSummary)>> {
    let Some((server, base, token)) = start_target(runtime, target)? else {
        return Ok(None);
    };
    if existing {
        let client = Client::new(&token);
        for i in 0..n {
            let body = json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": format!("user{i:06}"),
                "name": {"givenName": "Before", "familyName": "Sync"}
            });
            let (status, text) = client.post(&format!("{base}/Users"), &body.to_string())?;
            expect(status, 201, &text, "seeding a user")?;
        }
    }
    let (_db, mut store) = bench_store(n)?;
    let settings = sync_settings(base, token);
    let options = sync_options(concurrency, batch_size);
    let started = Instant::now();
    let summary = host_example::sync::sync(runtime, &settings, &mut store, &options)?;
    let seconds = started.elapsed().as_secs_f64();
    drop(server);
    let done = if existing {
        summary.adopted
    } else {
        summary.created
    };
    if done != n as u64 || summary.failed != 0 {
        bail!("the sync did not provision every user: {summary}");
    }
    Ok(Some((seconds, summary)))
}

/// What a server can take through `/Bulk` alone: `n` user creates in requests of as many
/// operations as its ServiceProviderConfig allows (at most 100), `connections` at once,
/// from plain clients doing nothing else. Returns creates per second and the operations per
/// request. `None` when the peer is not installed or the server has no `/Bulk`.
fn bulk_ceiling(
    runtime: &Runtime,
    target: SyncTarget,
    n: usize,
    connections: usize,
) -> Result<Option<(f64, usize)>> {
    let Some((server, base, token)) = start_target(runtime, target)? else {
        return Ok(None);
    };
    let client = Client::new(&token);
    let (status, text) = client.get(&format!("{base}/ServiceProviderConfig"))?;
    let spc = expect(status, 200, &text, "ServiceProviderConfig")?;
    if spc["bulk"]["supported"] != json!(true) {
        return Ok(None);
    }
    let per_request = spc["bulk"]["maxOperations"]
        .as_u64()
        .map_or(100, |m| m.clamp(1, 100) as usize);
    let bodies: Vec<String> = (0..n)
        .collect::<Vec<_>>()
        .chunks(per_request)
        .map(|chunk| {
            let operations: Vec<Value> = chunk
                .iter()
                .map(|i| {
                    json!({
                        "method": "POST",
                        "path": "/Users",
                        "bulkId": format!("u{i}"),
                        "data": {
                            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                            "userName": format!("ceiling{i:06}"),
                            "externalId": i.to_string(),
                            "name": {"givenName": "Ada", "familyName": format!("Ceiling{i}")},
                            "emails": [{"value": format!("ceiling{i:06}@example.org"), "primary": true}],
                            "active": true
                        }
                    })
                })
                .collect();
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                "Operations": operations
            })
            .to_string()
        })
        .collect();
    let url = format!("{base}/Bulk");
    let (figure, _) = phase(&token, bodies.len(), connections, |client, i| {
        let (status, text) = client.post(&url, &bodies[i])?;
        let answer = expect(status, 200, &text, "POST /Bulk")?;
        let ok = answer["Operations"].as_array().map_or(0, |ops| {
            ops.iter().filter(|o| o["status"] == json!("201")).count()
        });
        if ok != per_request.min(n - i * per_request) {
            bail!(
                "a bulk request created {ok} users: {}",
                text.chars().take(300).collect::<String>()
            );
        }
        Ok(())
    })?;
    drop(server);
    let seconds = bodies.len() as f64 / figure.per_second;
    Ok(Some((n as f64 / seconds, per_request)))
}
