//! Phase 4, a no-change resync: users synced into a fresh serve of ours, then synced again
//! with nothing changed, which must send no request.

use std::time::Instant;

use anyhow::{Result, bail};
use host_example::Runtime;

use crate::figures::{Figures, grouped};
use crate::servers::{SyncTarget, start_target};
use crate::sync::{SyncRun, bench_store, sync_options, sync_settings};

/// Measures phase 4 for `users` users and prints it, adding its row to `figures`.
pub fn run(runtime: &Runtime, users: usize, figures: &mut Figures) -> Result<()> {
    println!("\n== a no-change resync of {users} users in our serve (after a first sync) ==");
    let ((first_s, first), (again_s, again)) = bench_resync(runtime, users)?;
    figures.push(
        format!(
            "no-change resync of {} users (our `serve`)",
            grouped(users as u64)
        ),
        format!(
            "{again_s:.2} s, {} requests, {} unchanged (the first sync of them: {first_s:.1} s, {} users/s, {} requests)",
            again.requests,
            grouped(again.unchanged),
            grouped((users as f64 / first_s) as u64),
            grouped(first.requests)
        ),
        "0 requests, ≤ 2 s",
        Some(again.requests == 0 && again_s <= 2.0),
    );
    println!(
        "first sync: {first_s:.2} s ({:.0} users/s, {} requests); resync: {again_s:.2} s, {} requests, {} unchanged",
        users as f64 / first_s,
        first.requests,
        again.requests,
        again.unchanged
    );
    Ok(())
}

/// A first sync of `n` users into a fresh `serve` of ours, then a second sync with nothing
/// changed: the seconds and summary of each.
fn bench_resync(runtime: &Runtime, n: usize) -> Result<(SyncRun, SyncRun)> {
    let Some((server, base, token)) = start_target(runtime, SyncTarget::Ours)? else {
        bail!("our own server cannot be missing");
    };
    let (_db, mut store) = bench_store(n)?;
    let settings = sync_settings(base, token);
    let options = sync_options(8, 100);
    let started = Instant::now();
    let first = host_example::sync::sync(runtime, &settings, &mut store, &options)?;
    let first_seconds = started.elapsed().as_secs_f64();
    if first.created != n as u64 || first.failed != 0 {
        bail!("the first sync did not create every user: {first}");
    }
    let started = Instant::now();
    let again = host_example::sync::sync(runtime, &settings, &mut store, &options)?;
    let again_seconds = started.elapsed().as_secs_f64();
    drop(server);
    Ok(((first_seconds, first), (again_seconds, again)))
}
