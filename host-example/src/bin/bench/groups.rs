//! `bench --groups`: a group of N members (default 10,000: every user's CMS role) made by a
//! first sync, then changed by M members (default 1,000 users move to another role, so M
//! leave it and M join the other), into the quirky server (no `/Bulk`, so each user write
//! is one request either way and only the membership requests differ). Twice: with the
//! batch's membership changes sent in chunks (issue 31, part 4; 100 users a call), and one
//! member a request (one user a call, as before). Reported: requests and seconds of each
//! step.

use std::time::Instant;

use anyhow::Result;
use host_example::Runtime;
use host_example::store::{Store, UserRecord};
use serde_json::json;

use crate::rate::start_quirky;
use crate::servers::TempDb;
use crate::sync::{sync_options, sync_settings};

/// One step's cost.
struct Step {
    requests: u64,
    seconds: f64,
}

/// Both steps into a fresh quirky server, `batch_size` users a call.
fn run_once(
    runtime: &Runtime,
    members: usize,
    changes: usize,
    batch_size: u32,
) -> Result<(Step, Step)> {
    let (_quirky, base, token) = start_quirky(&[])?;
    let db = TempDb::new()?;
    let mut store = Store::open(&db.0)?;
    store.import_users((0..members).map(|i| {
        let mut fields = serde_json::Map::new();
        fields.insert("field_first_name".into(), json!(format!("Member{i}")));
        fields.insert("field_last_name".into(), json!("Bench"));
        fields.insert("roles".into(), json!(["staff"]));
        Ok(UserRecord {
            id: String::new(),
            name: format!("member{i:06}"),
            mail: format!("member{i:06}@example.com"),
            fields,
            active: true,
        })
    }))?;
    let mut settings = sync_settings(base, token);
    settings.policy_json = r#"{"groups_from": "roles"}"#.into();
    let options = sync_options(4, batch_size);
    let started = Instant::now();
    let first = host_example::sync::sync(runtime, &settings, &mut store, &options)?;
    let join = Step {
        requests: first.requests + first.outbox.requests,
        seconds: started.elapsed().as_secs_f64(),
    };
    if first.failed > 0 {
        anyhow::bail!("the first sync failed for {} users: {first}", first.failed);
    }
    // Changed without outbox events, so that the reconcile sends them, `batch_size` users a
    // call (the outbox sends 100 a call whatever the batch size).
    let mut users = store.all_users()?;
    users.sort_by(|a, b| a.id.cmp(&b.id));
    store.import_users(users.into_iter().take(changes).map(|mut u| {
        u.fields.insert("roles".into(), json!(["contractors"]));
        Ok(u)
    }))?;
    let started = Instant::now();
    let second = host_example::sync::sync(runtime, &settings, &mut store, &options)?;
    let change = Step {
        requests: second.requests + second.outbox.requests,
        seconds: started.elapsed().as_secs_f64(),
    };
    if second.failed + second.outbox.retrying + second.outbox.parked > 0 {
        anyhow::bail!("the change failed: {second}");
    }
    Ok((join, change))
}

/// Runs both and prints the comparison.
pub fn run(runtime: &Runtime, members: usize, changes: usize) -> Result<()> {
    println!(
        "\n== a group of {members} members, then {changes} of them move to another group (quirky server, no /Bulk, concurrency 4) =="
    );
    let (chunked_join, chunked_change) = run_once(runtime, members, changes, 100)?;
    let (single_join, single_change) = run_once(runtime, members, changes, 1)?;
    println!(
        "| | requests (chunks) | seconds (chunks) | requests (one member a request) | seconds (one member a request) | ratio of requests |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, chunked, single) in [
        (
            format!("first sync: {members} users join"),
            &chunked_join,
            &single_join,
        ),
        (
            format!("{changes} users change group ({changes} leave, {changes} join)"),
            &chunked_change,
            &single_change,
        ),
    ] {
        println!(
            "| {name} | {} | {:.1} | {} | {:.1} | {:.2} |",
            chunked.requests,
            chunked.seconds,
            single.requests,
            single.seconds,
            single.requests as f64 / chunked.requests.max(1) as f64
        );
    }
    Ok(())
}
