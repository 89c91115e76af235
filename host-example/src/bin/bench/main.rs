//! `bench`: how much the WebAssembly boundary costs, and how our SCIM server compares with a
//! peer, measured side by side in one run.
//!
//! 1. **Component vs native, pure work.** The same N Drupal-style users (fields `name`,
//!    `mail`, `field_first_name`, `field_last_name`, `roles`) are mapped with the default
//!    mapping natively (`scim_provisioner::policy::Policy::parse`'s mapping, then
//!    serialised to a JSON string) and through the component (`Session::map_user`, which
//!    sends nothing); likewise operation selection natively
//!    (`scim_provisioner::client::selection::decide`, under a scope on `roles`) against
//!    `Session::plan`, which passes only the scope's fields (`scope-fields`), and against
//!    `Session::plan_with_every_field`. Each is warmed up with one full pass, then timed 5
//!    times; the median is reported in nanoseconds per operation with the component/native
//!    ratio. Then what one string or list in a `plan`'s user costs: a user of 32 text fields
//!    against one without fields, every field passed.
//!    Then a cold process's first call: the `host-example` CLI built beside the bench,
//!    started 20 times afresh for `provision bob --dry-run` against a fresh serve of ours
//!    (the precompiled component mapped, four GETs sent); median and fastest wall time.
//! 2. **Ours vs a peer, server role.** Our server (`host_example::serve::start` on
//!    127.0.0.1:0 over a temporary SQLite file, 4 workers) and scim2-server (from
//!    `target/peers/venv/bin/scim2-server`, or env `SCIM2_SERVER_BIN`; skipped with a message
//!    when absent) each get M `POST /Users`, then M `GET /Users/{id}`, then M
//!    `GET /Users?filter=userName eq "…"`, first from 1 client, then from 8 at once (ureq,
//!    one kept-alive connection each). This runs in `--rounds` rounds (3 by default), ours
//!    then the peer in each, so that both meet the machine's neighbours alike; requests per
//!    second and the 99th-percentile latency are reported per phase as the median of the
//!    rounds, with the ratio ours/peer. The peer is killed at the end.
//!    Then the same phases against the loopback floor: a server in this process that
//!    parses and stores nothing and answers each request with a fixed body. No server can
//!    beat it with this client on this machine, so `floor / peer` bounds any ratio to the
//!    peer, and each of our phases is also given as a share of it. Last, `GET /Users/{id}`
//!    at 1 connection on a fresh serve of ours before and after 1,000 groups of 20 members
//!    are stored, each user in 10 (each read computes the user's `groups`).
//! 3. **A first sync against the server's own ceiling.** For scim2-server and our serve,
//!    each fresh: the rate at which plain clients (8 connections, nothing else to do) create
//!    S users through `/Bulk` with as many operations per request as the server allows (at
//!    most 100), then a first sync of S users (`/Bulk`, concurrency 8) into another fresh
//!    one, as users per second and as a share of that ceiling.
//! 4. **A no-change resync** (`--resync-users R`, default 100,000; 0 skips): R users synced
//!    into a fresh serve of ours, then synced again with nothing changed: seconds and
//!    requests (which must be 0).
//! 5. **A first sync, bulk vs one request per user.** S users are imported into a fresh
//!    SQLite store and synced (concurrency 8) to a fresh scim2-server twice: with the
//!    default batches, whose writes travel in `/Bulk` requests, and with `batch_size = 1`,
//!    one request per write. Both list the remote users once first. Then the same onto a
//!    server that holds every user already (another first name), so each is adopted and
//!    updated. Reported: seconds, users per second, requests, and the ratio. Skipped with
//!    the peer.
//!
//! 6. **Every host against the Rust host** (`--hosts`, instead of 1 to 5). The Rust host's
//!    per-call cost of `plan`, `map-user` and a no-change `provision` (one user created on
//!    scim2-server first; the link makes the provision send nothing), its RSS over many
//!    `plan` calls, and a first sync of S users into a fresh scim2-server (`/Bulk`,
//!    `--sync-concurrency` instances); then each other host's own bench with the same
//!    sizes and the same JSON keys (`hosts/php/bench.php`, `hosts/python/bench.py` with the
//!    peers venv's Python, `hosts/node/bench.mjs`, each with `--json FILE`), and one table
//!    with each host's ratio to the Rust host.
//!
//! At the end of 1 to 5, issue 13's table (each figure, its goal, and whether it was met) is
//! printed as Markdown; `--readme FILE` writes it between FILE's marker lines
//! ([`figures::BEGIN_MARKER`]), so the README's table is the last run's own.
//!
//! Build and run (release, for honest numbers):
//!
//! ```sh
//! cargo build --release -p host-example --bin bench -p scim-bridge
//! target/release/bench [--users N] [--requests M] [--sync-users S] [--resync-users R] [--skip-peer]
//! target/release/bench --pure-only [--component OTHER.wasm]   # 1 only, of another build
//! target/release/bench … --readme README.md   # also write issue 13's table into the README
//! target/release/bench --hosts [--calls N] [--memory-calls N] [--sync-users S] [--sync-concurrency C]
//! ```

mod cold_start;
mod figures;

use std::hint::black_box;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use host_example::logging::{Level, LogSink};
use host_example::types as wit;
use host_example::{ConnectorSettings, Credentials, Runtime, Session, describe_error, serve};
use scim_provisioner::client::selection::{Situation, decide};
use scim_provisioner::mapping::MapMode;
use scim_provisioner::policy::Policy;
use scim_provisioner::scim::text;
use scim_provisioner::user::{CmsUser, FieldValue, UserEvent};
use serde_json::{Value, json};

use figures::{Figures, grouped};

/// Timed repetitions per measurement; the median is reported.
const REPEATS: usize = 5;

#[derive(Parser, Debug)]
#[command(about = "Component vs native, and our SCIM server vs scim2-server")]
struct Args {
    /// Users mapped (and plans decided) per repetition.
    #[arg(long = "users", default_value_t = 20_000)]
    users: usize,
    /// Requests per phase against each server.
    #[arg(long = "requests", default_value_t = 500)]
    requests: usize,
    /// Rounds of the server phases, ours and the peer alternating; the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Users in the first-sync comparison (bulk vs one request per user).
    #[arg(long = "sync-users", default_value_t = 2_000)]
    sync_users: usize,
    /// Users in the no-change resync into our own server (0 skips it).
    #[arg(long = "resync-users", default_value_t = 100_000)]
    resync_users: usize,
    /// Do not start scim2-server; measure only our server.
    #[arg(long)]
    skip_peer: bool,
    /// Compare every host with the Rust host instead (per call, memory, first sync).
    #[arg(long)]
    hosts: bool,
    /// Calls per per-call measurement (with --hosts).
    #[arg(long, default_value_t = 2_000)]
    calls: usize,
    /// `plan` calls over which memory is watched (with --hosts).
    #[arg(long, default_value_t = 100_000)]
    memory_calls: usize,
    /// Component instances a first sync runs at once (with --hosts).
    #[arg(long, default_value_t = 4)]
    sync_concurrency: u32,
    /// The component to measure (default: the one this build made), so that two builds of
    /// it (another profile, say) can be compared with the same host.
    #[arg(long)]
    component: Option<PathBuf>,
    /// Measure only the component against native (1), then stop.
    #[arg(long)]
    pure_only: bool,
    /// Write issue 13's table of this run into FILE (the README) between its marker lines.
    #[arg(long, value_name = "FILE")]
    readme: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.users == 0 || args.requests == 0 || args.rounds == 0 {
        bail!("--users, --requests and --rounds must be positive");
    }
    let started = Instant::now();
    let component = args
        .component
        .clone()
        .unwrap_or_else(Runtime::built_component_path);
    let runtime = Runtime::new(&component)?;
    println!(
        "component {}; linked, {:.2} s in all",
        runtime.cache_info(),
        started.elapsed().as_secs_f64()
    );
    if args.hosts {
        return bench_hosts(&runtime, &args);
    }
    let mut figures = Figures::default();
    // The table is written even when a later part fails, with what was measured up to it.
    let measured = run(&runtime, &component, &args, &mut figures);
    if !figures.is_empty() {
        let caption = format!(
            "Written by `bench --readme` at {} from this run: `{}`.",
            host_example::clock::now_rfc3339(),
            std::env::args().collect::<Vec<_>>().join(" ")
        );
        let table = figures.markdown(&caption);
        println!("\n== the table (Markdown) ==\n{table}");
        if let Some(path) = &args.readme {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            std::fs::write(path, figures::splice(&text, &table)?)
                .with_context(|| format!("writing {}", path.display()))?;
            println!("written into {}", path.display());
        }
    }
    measured
}

/// Issue 13's rows for the component against native.
fn pure_figures(pure: &PureWork, figures: &mut Figures) {
    let row = |name: &str| pure.rows.iter().find(|r| r.name == name);
    if let Some(map) = row(MAP_ROW) {
        let ratio = map.component_ns / map.native_ns;
        figures.push(
            "map one user, component ÷ native",
            format!(
                "{:.2} µs vs {:.2} µs, {ratio:.1}×",
                map.component_ns / 1e3,
                map.native_ns / 1e3
            ),
            "≤ 1.5×",
            Some(ratio <= 1.5),
        );
    }
    if let (Some(plan), Some(bare)) = (row(PLAN_ROW), row(BARE_PLAN_ROW)) {
        figures.push(
            "a `plan` call, default policy (no scope: only `active` crosses)",
            format!(
                "{:.2} µs (native `decide` {:.0} ns); a call passing no field {:.2} µs; each \
                 string or list passed adds {:.0} ns",
                plan.component_ns / 1e3,
                plan.native_ns,
                bare.component_ns / 1e3,
                pure.per_item_ns
            ),
            "≤ 0.5 µs",
            Some(plan.component_ns <= 500.0),
        );
    }
    if let Some(scoped) = row(SCOPED_PLAN_ROW) {
        figures.push(
            "a `plan` call under a scope on `roles` (the list crosses)",
            format!(
                "{:.2} µs (native {:.0} ns)",
                scoped.component_ns / 1e3,
                scoped.native_ns
            ),
            "",
            None,
        );
    }
}

/// Issue 13's first row: a cold `host-example` process's first call, against a fresh serve
/// of ours (see [`cold_start`]).
fn cold_start_figure(runtime: &Runtime, component: &Path, figures: &mut Figures) -> Result<()> {
    const FIGURE: &str = "cold process to first call: `host-example provision USER --dry-run` (the precompiled component; four GETs to a local `serve`)";
    const GOAL: &str = "≤ 20 ms";
    println!("\n== a cold process's first call ==");
    let Some(cli) = cold_start::cli_binary() else {
        println!(
            "skipped: build the CLI beside the bench (`cargo build --release -p host-example`)"
        );
        figures.push(
            FIGURE,
            "not measured: the CLI was not built beside the bench",
            GOAL,
            None,
        );
        return Ok(());
    };
    let Some((server, base, token)) = start_target(runtime, SyncTarget::Ours)? else {
        bail!("our own server cannot be missing");
    };
    let dir = std::env::temp_dir().join(format!("scim-bench-cold-{}", std::process::id()));
    let measured = cold_start::measure(&cli, component, &base, &token, &dir);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    let cold = measured?;
    println!(
        "{} runs of `host-example provision bob --dry-run`: median {:.1} ms, fastest {:.1} ms, slowest {:.1} ms",
        cold.ms.len(),
        cold.median(),
        cold.fastest(),
        cold.ms[cold.ms.len() - 1]
    );
    figures.push(
        FIGURE,
        format!(
            "median {:.1} ms, fastest {:.1} ms, over {} runs",
            cold.median(),
            cold.fastest(),
            cold.ms.len()
        ),
        GOAL,
        Some(cold.median() <= 20.0),
    );
    Ok(())
}

/// Issue 13's rows for the server role: ours against scim2-server (when it ran) and the
/// loopback floor, at each connection count.
fn server_figures(
    ours: &[[PhaseFigure; 3]],
    peer: Option<&[[PhaseFigure; 3]]>,
    floor: &[[PhaseFigure; 3]],
    rounds: usize,
    figures: &mut Figures,
) {
    let of_rounds = format!("median of {rounds} rounds");
    // What one phase measured at each connection count, and whether its ratio to the peer
    // (and its p99, when `max_p99_ms` is given) met the goal everywhere.
    let describe = |phase: usize, max_p99_ms: Option<f64>| -> (String, Option<bool>) {
        let mut parts = Vec::new();
        let mut met = peer.map(|_| true);
        for (c, connections) in CONNECTIONS.iter().enumerate() {
            let o = ours[c][phase];
            let unit = if *connections == 1 {
                "connection"
            } else {
                "connections"
            };
            match peer {
                Some(p) => {
                    let p = p[c][phase];
                    let ratio = o.per_second / p.per_second;
                    parts.push(format!(
                        "{connections} {unit}: {} vs {}/s, {ratio:.1}×, p99 {:.2} ms",
                        grouped(o.per_second as u64),
                        grouped(p.per_second as u64),
                        o.p99_ms
                    ));
                    let p99_ok = max_p99_ms.is_none_or(|max| o.p99_ms <= max);
                    met = met.map(|m| m && ratio >= 10.0 && p99_ok);
                }
                None => parts.push(format!(
                    "{connections} {unit}: {}/s, p99 {:.2} ms (scim2-server skipped)",
                    grouped(o.per_second as u64),
                    o.p99_ms
                )),
            }
        }
        (parts.join("; "), met)
    };
    let (post, post_met) = describe(0, Some(5.0));
    figures.push(
        format!("`serve` POST /Users, ours ÷ scim2-server ({of_rounds})"),
        post,
        "≥ 10×, p99 ≤ 5 ms",
        post_met,
    );
    let (get, get_met) = describe(1, None);
    let (filtered, filtered_met) = describe(2, None);
    figures.push(
        format!("`serve` GET by id, ours ÷ scim2-server ({of_rounds})"),
        get,
        "keep ≥ 10×",
        get_met,
    );
    figures.push(
        format!("`serve` filtered GET (`userName eq`), ours ÷ scim2-server ({of_rounds})"),
        filtered,
        "keep ≥ 10×",
        filtered_met,
    );
    let floor_text = CONNECTIONS
        .iter()
        .enumerate()
        .map(|(c, connections)| {
            format!(
                "{connections}: {} POST, {} GET by id, {} filtered /s",
                grouped(floor[c][0].per_second as u64),
                grouped(floor[c][1].per_second as u64),
                grouped(floor[c][2].per_second as u64)
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    figures.push(
        "the loopback floor (a server that only answers, same client), by connections",
        floor_text,
        "the ceiling of every ratio above",
        None,
    );
}

/// Measures 1 to 5 (see the module's documentation), printing each part as it goes and
/// adding issue 13's figures to `figures`.
fn run(runtime: &Runtime, component: &Path, args: &Args, figures: &mut Figures) -> Result<()> {
    let size = std::fs::metadata(component).map(|m| m.len()).ok();
    figures.push(
        "component size (`[profile.component]`, then `wasm-opt -Oz`)",
        size.map_or("unknown: the component could not be read".into(), |n| {
            format!("{} bytes", grouped(n))
        }),
        "≤ 409,600 bytes",
        size.map(|n| n <= 409_600),
    );

    println!(
        "\n== component vs native: {} users, 1 warm-up + median of {REPEATS} ==",
        args.users
    );
    let pure = pure_work(runtime, args.users)?;
    println!(
        "{:<24} {:>12} {:>15} {:>10}",
        "operation", "native ns/op", "component ns/op", "ratio"
    );
    for row in &pure.rows {
        println!(
            "{:<24} {:>12.0} {:>15.0} {:>9.1}x",
            row.name,
            row.native_ns,
            row.component_ns,
            row.component_ns / row.native_ns
        );
    }
    println!(
        "a plan for a user of {WIDE_FIELDS} text fields: {:.0} ns, so each string or list in the \
         user adds {:.0} ns (lowered by a realloc call into the guest, freed there after)",
        pure.plan_wide_ns, pure.per_item_ns
    );
    pure_figures(&pure, figures);
    if args.pure_only {
        return Ok(());
    }
    cold_start_figure(runtime, component, figures)?;

    println!(
        "\n== server role: {} requests per phase, at {CONNECTIONS:?} connections, {} rounds (ours, then the peer, each round; the median of the rounds) ==",
        args.requests, args.rounds
    );
    let (ours, peer) = bench_servers(runtime, args.requests, args.rounds, !args.skip_peer)?;
    println!(
        "{:<30} {:>5} {:>10} {:>9} {:>10} {:>9} {:>10}",
        "phase", "conns", "ours req/s", "ours p99", "peer req/s", "peer p99", "ours/peer"
    );
    for (c, connections) in CONNECTIONS.iter().enumerate() {
        for (i, phase) in PHASES.iter().enumerate() {
            let o = ours[c][i];
            match peer.as_ref().map(|p| p[c][i]) {
                Some(p) => println!(
                    "{phase:<30} {connections:>5} {:>10.0} {:>6.2} ms {:>10.0} {:>6.2} ms {:>9.2}x",
                    o.per_second,
                    o.p99_ms,
                    p.per_second,
                    p.p99_ms,
                    o.per_second / p.per_second
                ),
                None => println!(
                    "{phase:<30} {connections:>5} {:>10.0} {:>6.2} ms {:>10} {:>9} {:>10}",
                    o.per_second, o.p99_ms, "-", "-", "-"
                ),
            }
        }
    }

    // What any server could reach with this client on this machine: one that parses
    // nothing and stores nothing. A ratio to scim2-server cannot exceed floor / peer.
    let floor = bench_floor(args.requests)?;
    println!(
        "\n{:<30} {:>5} {:>10} {:>9} {:>14}",
        "the loopback floor: phase", "conns", "req/s", "p99", "ours of floor"
    );
    for (c, connections) in CONNECTIONS.iter().enumerate() {
        for (i, phase) in PHASES.iter().enumerate() {
            let f = floor[c][i];
            println!(
                "{phase:<30} {connections:>5} {:>10.0} {:>6.2} ms {:>13.0}%",
                f.per_second,
                f.p99_ms,
                100.0 * ours[c][i].per_second / f.per_second
            );
        }
    }

    server_figures(&ours, peer.as_deref(), &floor, args.rounds, figures);

    let (none, with_groups) = bench_groups(runtime, args.requests)?;
    println!(
        "\nGET /Users/{{id}} at 1 connection, ours: {:.0}/s (p99 {:.2} ms) with no groups; \
         {:.0}/s (p99 {:.2} ms) with {GROUPS} groups of {GROUP_SIZE} members stored, each \
         user in {GROUPS_PER_USER} (each read computes the user's groups)",
        none.per_second, none.p99_ms, with_groups.per_second, with_groups.p99_ms
    );
    figures.push(
        format!(
            "`serve` GET by id at 1 connection, {} groups of {GROUP_SIZE} members stored, each user in {GROUPS_PER_USER}",
            grouped(GROUPS as u64)
        ),
        format!(
            "{}/s, p99 {:.2} ms ({}/s with no groups, in the same phase)",
            grouped(with_groups.per_second as u64),
            with_groups.p99_ms,
            grouped(none.per_second as u64)
        ),
        "",
        None,
    );

    if args.sync_users > 0 {
        println!(
            "\n== a first sync of {} users (/Bulk, concurrency 8) against the server's own /Bulk ceiling (plain clients, 8 connections) ==",
            args.sync_users
        );
        println!(
            "{:<14} {:>9} {:>10} {:>9} {:>6} {:>14} {:>10}",
            "into", "seconds", "users/s", "requests", "bulk", "ceiling/s", "of ceiling"
        );
        for (label, target) in [
            ("scim2-server", SyncTarget::Peer),
            ("our serve", SyncTarget::Ours),
        ] {
            if args.skip_peer && target == SyncTarget::Peer {
                continue;
            }
            let ceiling = bulk_ceiling(runtime, target, args.sync_users, 8)?;
            let Some((seconds, summary)) =
                bench_first_sync_into(runtime, target, args.sync_users, 100, false, 8)?
            else {
                continue;
            };
            let rate = args.sync_users as f64 / seconds;
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
                    grouped(args.sync_users as u64)
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
    }
    if args.resync_users > 0 {
        println!(
            "\n== a no-change resync of {} users in our serve (after a first sync) ==",
            args.resync_users
        );
        let ((first_s, first), (again_s, again)) = bench_resync(runtime, args.resync_users)?;
        figures.push(
            format!(
                "no-change resync of {} users (our `serve`)",
                grouped(args.resync_users as u64)
            ),
            format!(
                "{again_s:.2} s, {} requests, {} unchanged (the first sync of them: {first_s:.1} s, {} users/s, {} requests)",
                again.requests,
                grouped(again.unchanged),
                grouped((args.resync_users as f64 / first_s) as u64),
                grouped(first.requests)
            ),
            "0 requests, ≤ 2 s",
            Some(again.requests == 0 && again_s <= 2.0),
        );
        println!(
            "first sync: {first_s:.2} s ({:.0} users/s, {} requests); resync: {again_s:.2} s, {} requests, {} unchanged",
            args.resync_users as f64 / first_s,
            first.requests,
            again.requests,
            again.unchanged
        );
    }

    if args.skip_peer || args.sync_users == 0 {
        return Ok(());
    }
    println!(
        "\n== a first sync of {} users to scim2-server, concurrency 8 ==",
        args.sync_users
    );
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
            let Some(row) = bench_first_sync(runtime, args.sync_users, batch_size, existing, 8)?
            else {
                return Ok(());
            };
            println!(
                "{label:<26} {:>9.2} {:>10.0} {:>9} {:>6}",
                row.0,
                args.sync_users as f64 / row.0,
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
                    grouped(args.sync_users as u64),
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
type SyncRun = (f64, host_example::sync::SyncSummary);

/// Where a first sync goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyncTarget {
    /// A fresh scim2-server.
    Peer,
    /// A fresh `serve` of ours, in this process, over a temporary SQLite file.
    Ours,
}

/// A started server: what keeps it alive (dropping it stops the server), its base URL and
/// its token.
type StartedServer = (Box<dyn std::any::Any>, String, String);

/// A fresh server to sync into. `None` when the peer is not installed.
fn start_target(runtime: &Runtime, target: SyncTarget) -> Result<Option<StartedServer>> {
    Ok(match target {
        SyncTarget::Peer => start_peer()?
            .map(|(peer, base, token)| (Box::new(peer) as Box<dyn std::any::Any>, base, token)),
        SyncTarget::Ours => {
            let db = TempDb::new()?;
            let token = serve::generate_token();
            let server = serve::start(
                runtime,
                &db.0,
                "127.0.0.1:0",
                &token,
                "",
                LogSink::stderr(Level::Warn),
            )?;
            let base = server.base_url.clone();
            // The server stops before its database is removed (tuple fields drop in order).
            Some((Box::new((server, db)), base, token))
        }
    })
}

/// A fresh host store holding `n` Drupal-style users, none provisioned yet.
fn bench_store(n: usize) -> Result<(TempDb, host_example::store::Store)> {
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
fn sync_settings(base_url: String, token: String) -> ConnectorSettings {
    ConnectorSettings {
        base_url,
        credentials: Credentials::Bearer(token),
        timeout_ms: 30_000,
        policy_json: String::new(),
    }
}

fn sync_options(concurrency: u32, batch_size: u32) -> host_example::sync::SyncOptions {
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
fn bench_first_sync(
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

// ---------------------------------------------------------------------------------------
// Every host against the Rust host

/// The user every host's bench provisions: the same fields as `hosts/php/bench.php`'s.
fn bench_user(i: usize) -> wit::CmsUser {
    let text = |s: String| wit::FieldValue::Text(s);
    wit::CmsUser {
        id: i.to_string(),
        fields: vec![
            ("name".into(), text(format!("bench{i}"))),
            ("mail".into(), text(format!("bench{i}@drupal.example"))),
            ("field_first_name".into(), text("Ada".into())),
            ("field_last_name".into(), text("Lovelace".into())),
            (
                "roles".into(),
                wit::FieldValue::TextList(vec!["member".into()]),
            ),
        ],
        active: true,
    }
}

/// This process's resident memory, in KiB (Linux).
fn rss_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(-1)
}

fn bench_hosts(runtime: &Runtime, args: &Args) -> Result<()> {
    let n = args.calls.max(1);
    let Some((peer, base, token)) = start_peer()? else {
        bail!("--hosts needs scim2-server: run scripts/install-peers");
    };
    let settings = sync_settings(base, token);
    let mut session = runtime
        .open(&settings)?
        .map_err(|e| anyhow!("cannot open a connector: {}", describe_error(&e)))?;
    let user = bench_user(1);
    let created = session
        .provision(&user, wit::UserEvent::Created, None)?
        .map_err(|e| anyhow!("creating the bench user: {}", describe_error(&e)))?;
    let link = created
        .link
        .ok_or_else(|| anyhow!("the bench user was not created"))?;
    let us = |ns: f64| ns / 1000.0;
    let plan_us = us(median_ns_per_op(n, || {
        for _ in 0..n {
            black_box(session.plan(black_box(&user), wit::UserEvent::Updated, true)?);
        }
        Ok(())
    })?);
    let map_us = us(median_ns_per_op(n, || {
        for _ in 0..n {
            black_box(
                session
                    .map_user(black_box(&user))?
                    .map_err(|e| anyhow!("map: {}", describe_error(&e)))?,
            );
        }
        Ok(())
    })?);
    let provision_us = us(median_ns_per_op(n, || {
        for _ in 0..n {
            let outcome = session
                .provision(black_box(&user), wit::UserEvent::Updated, Some(&link))?
                .map_err(|e| anyhow!("provision: {}", describe_error(&e)))?;
            if outcome.action != wit::Action::Unchanged {
                bail!("a no-change provision sent something: {:?}", outcome.action);
            }
        }
        Ok(())
    })?);
    let rss0 = rss_kib();
    for _ in 0..args.memory_calls {
        black_box(session.plan(&user, wit::UserEvent::Updated, true)?);
    }
    let rss_growth = rss_kib() - rss0;
    drop(session);
    drop(peer);
    let sync = bench_first_sync(runtime, args.sync_users, 100, false, args.sync_concurrency)?;
    let mut hosts = vec![json!({
        "host": "rust",
        "runtime": "host-example, wasmtime 48 (bindgen)",
        "plan_us": plan_us,
        "map_us": map_us,
        "provision_unchanged_us": provision_us,
        "memory_calls": args.memory_calls,
        "rss_growth_kib": rss_growth,
        "sync_users": args.sync_users,
        "sync_seconds": sync.as_ref().map(|s| s.0),
        "sync_requests": sync.as_ref().map(|s| s.1.requests),
        "sync_bulk": sync.as_ref().map(|s| s.1.bulk_requests),
    })];

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for other in other_hosts(&root) {
        let out =
            std::env::temp_dir().join(format!("bench-{}-{}.json", other.name, std::process::id()));
        println!(
            "\n== the {} host's own bench ({}) ==",
            other.name, other.script
        );
        let status = Command::new(&other.program)
            .args(&other.prefix)
            .arg(root.join(other.script))
            .args(["--calls", &n.to_string()])
            .args(["--plan-calls", &args.memory_calls.to_string()])
            .args(["--sync-users", &args.sync_users.to_string()])
            .args(["--concurrency", &args.sync_concurrency.to_string()])
            .arg("--json")
            .arg(&out)
            .status();
        match status {
            Ok(s) if s.success() => {
                let text = std::fs::read_to_string(&out)?;
                let _ = std::fs::remove_file(&out);
                let figures: Value = serde_json::from_str(&text)
                    .with_context(|| format!("reading the {} bench's figures", other.name))?;
                hosts.push(figures);
            }
            Ok(s) => println!("the {} bench failed ({s}); it is left out", other.name),
            Err(e) => println!(
                "the {} bench could not run ({e}); it is left out",
                other.name
            ),
        }
    }

    println!(
        "\n== every host against the Rust host: {n} calls per figure (median of {REPEATS}), \
         memory over {} plan calls, a first sync of {} users at concurrency {} ==",
        args.memory_calls, args.sync_users, args.sync_concurrency
    );
    println!(
        "{:<6} {:>10} {:>7} {:>10} {:>7} {:>13} {:>7} {:>12} {:>9} {:>7} {:>14}",
        "host",
        "plan us",
        "x rust",
        "map us",
        "x rust",
        "provision us",
        "x rust",
        "RSS growth",
        "sync s",
        "x rust",
        "requests/bulk"
    );
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
    let rust = hosts[0].clone();
    let ratio = |v: &Value, k: &str| match (num(v, k), num(&rust, k)) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.1}x", a / b),
        _ => "-".into(),
    };
    let cell = |v: &Value, k: &str| num(v, k).map_or("-".into(), |x| format!("{x:.1}"));
    for h in &hosts {
        println!(
            "{:<6} {:>10} {:>7} {:>10} {:>7} {:>13} {:>7} {:>9} KiB {:>9} {:>7} {:>14}",
            h.get("host").and_then(Value::as_str).unwrap_or("?"),
            cell(h, "plan_us"),
            ratio(h, "plan_us"),
            cell(h, "map_us"),
            ratio(h, "map_us"),
            cell(h, "provision_unchanged_us"),
            ratio(h, "provision_unchanged_us"),
            num(h, "rss_growth_kib").map_or("-".into(), |x| format!("{x:+.0}")),
            num(h, "sync_seconds").map_or("-".into(), |x| format!("{x:.2}")),
            ratio(h, "sync_seconds"),
            match (num(h, "sync_requests"), num(h, "sync_bulk")) {
                (Some(r), Some(b)) => format!("{r:.0}/{b:.0}"),
                _ => "-".into(),
            },
        );
    }
    for h in &hosts {
        println!(
            "{}: {}",
            h.get("host").and_then(Value::as_str).unwrap_or("?"),
            h.get("runtime").and_then(Value::as_str).unwrap_or("?")
        );
        if let Some(notes) = h.get("notes").and_then(Value::as_str) {
            println!("  notes: {notes}");
        }
    }
    Ok(())
}

/// Another host's bench: how to run it. Each takes `--calls`, `--plan-calls`,
/// `--sync-users`, `--concurrency` and `--json FILE`, and writes the same keys as the Rust
/// figures (null, with a `notes` key, for a figure it cannot give).
struct OtherHost {
    name: &'static str,
    program: PathBuf,
    prefix: Vec<String>,
    script: &'static str,
}

/// The PHP, Python (the peers venv's, which has wasmtime-py) and Node hosts' benches.
fn other_hosts(root: &Path) -> [OtherHost; 3] {
    let peers = std::env::var_os("SCIM_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/peers"));
    [
        OtherHost {
            name: "php",
            program: "php".into(),
            prefix: Vec::new(),
            script: "hosts/php/bench.php",
        },
        OtherHost {
            name: "python",
            program: peers.join("venv/bin/python"),
            prefix: Vec::new(),
            script: "hosts/python/bench.py",
        },
        OtherHost {
            name: "node",
            program: "node".into(),
            // A collected heap before each RSS reading.
            prefix: vec!["--expose-gc".into()],
            script: "hosts/node/bench.mjs",
        },
    ]
}

// ---------------------------------------------------------------------------------------
// Component vs native

struct PureRow {
    name: &'static str,
    native_ns: f64,
    component_ns: f64,
}

/// Component against native, and what one string in a `plan`'s user costs to cross.
struct PureWork {
    rows: Vec<PureRow>,
    /// A `plan` for a user of [`WIDE_FIELDS`] text fields, in ns.
    plan_wide_ns: f64,
    /// The ns each string or list in the user adds to a `plan`.
    per_item_ns: f64,
}

/// The names of the rows of [`PureWork`] that issue 13's table quotes.
const MAP_ROW: &str = "map user -> JSON";
const PLAN_ROW: &str = "plan (decide)";
const SCOPED_PLAN_ROW: &str = "plan, scope on roles";
const BARE_PLAN_ROW: &str = "plan, user without fields";

/// The text fields of the wide user whose `plan` measures the cost of a string.
const WIDE_FIELDS: usize = 32;

const EVENTS: [UserEvent; 6] = [
    UserEvent::Created,
    UserEvent::Updated,
    UserEvent::Blocked,
    UserEvent::Unblocked,
    UserEvent::Deleted,
    UserEvent::Reconcile,
];

/// A Drupal-style user: account name, mail (mixed case, padded, so the transforms work),
/// first and last name, roles; every seventh user is blocked.
fn drupal_user(i: usize) -> CmsUser {
    let text = |s: String| FieldValue::Text(s);
    let mut roles = vec!["authenticated".to_string()];
    if i.is_multiple_of(3) {
        roles.push("editor".into());
    }
    if i.is_multiple_of(11) {
        roles.push("administrator".into());
    }
    CmsUser {
        id: (1000 + i).to_string(),
        fields: vec![
            ("name".into(), text(format!("user{i:06}"))),
            ("mail".into(), text(format!("  User{i:06}@Example.ORG "))),
            ("field_first_name".into(), text(format!("First{i}"))),
            ("field_last_name".into(), text(format!("Last{}", i % 977))),
            ("roles".into(), FieldValue::TextList(roles)),
        ],
        active: !i.is_multiple_of(7),
    }
}

fn to_wit_value(v: &FieldValue) -> wit::FieldValue {
    match v {
        FieldValue::Null => wit::FieldValue::Null,
        FieldValue::Boolean(b) => wit::FieldValue::Boolean(*b),
        FieldValue::Number(n) => wit::FieldValue::Number(*n),
        FieldValue::Text(s) => wit::FieldValue::Text(s.clone()),
        FieldValue::TextList(l) => wit::FieldValue::TextList(l.clone()),
    }
}

fn to_wit_user(u: &CmsUser) -> wit::CmsUser {
    wit::CmsUser {
        id: u.id.clone(),
        fields: u
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), to_wit_value(v)))
            .collect(),
        active: u.active,
    }
}

fn to_wit_event(e: UserEvent) -> wit::UserEvent {
    match e {
        UserEvent::Created => wit::UserEvent::Created,
        UserEvent::Updated => wit::UserEvent::Updated,
        UserEvent::Blocked => wit::UserEvent::Blocked,
        UserEvent::Unblocked => wit::UserEvent::Unblocked,
        UserEvent::Deleted => wit::UserEvent::Deleted,
        UserEvent::Reconcile => wit::UserEvent::Reconcile,
    }
}

/// Runs `pass` once to warm up, then `REPEATS` times; the median nanoseconds per op.
fn median_ns_per_op(ops: usize, mut pass: impl FnMut() -> Result<()>) -> Result<f64> {
    pass()?;
    let mut samples = Vec::with_capacity(REPEATS);
    for _ in 0..REPEATS {
        let t = Instant::now();
        pass()?;
        samples.push(t.elapsed().as_nanos() as f64 / ops as f64);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[REPEATS / 2])
}

/// A policy with a scope on one field, as a site that provisions only some roles has:
/// `plan` then reads that field (the default policy has no scope, so `plan` reads none).
const ROLE_SCOPE_POLICY: &str = r#"{"scope": {"field": "roles", "any_of": ["member", "editor"]}}"#;

fn open_session(runtime: &Runtime, policy_json: &str) -> Result<Session> {
    let settings = ConnectorSettings {
        // Nothing is sent: map_user and plan are pure.
        base_url: "http://127.0.0.1:9/v2".into(),
        credentials: Credentials::Bearer("bench-token".into()),
        timeout_ms: 1_000,
        policy_json: policy_json.into(),
    };
    runtime
        .open(&settings)?
        .map_err(|e| anyhow!("cannot open a connector: {}", describe_error(&e)))
}

fn pure_work(runtime: &Runtime, n: usize) -> Result<PureWork> {
    let policy = Policy::parse("").map_err(|e| anyhow!("default policy: {e}"))?;
    let users: Vec<CmsUser> = (0..n).map(drupal_user).collect();
    let wit_users: Vec<wit::CmsUser> = users.iter().map(to_wit_user).collect();
    let mut session = open_session(runtime, "")?;

    // Both sides produce the same JSON text, so the work is comparable.
    let native_first = text::json(
        &policy
            .mapping
            .map(&users[0], MapMode::Create)
            .map_err(|e| anyhow!("native map: {e}"))?,
    );
    let component_first = session
        .map_user(&wit_users[0])?
        .map_err(|e| anyhow!("component map: {}", describe_error(&e)))?;
    let (a, b): (Value, Value) = (
        serde_json::from_str(&native_first)?,
        serde_json::from_str(&component_first)?,
    );
    if a != b {
        bail!("native and component mappings differ:\n{native_first}\n{component_first}");
    }

    let map_native = median_ns_per_op(n, || {
        for u in &users {
            let json = text::json(
                &policy
                    .mapping
                    .map(black_box(u), MapMode::Create)
                    .map_err(|e| anyhow!("native map: {e}"))?,
            );
            black_box(json);
        }
        Ok(())
    })?;
    let map_component = median_ns_per_op(n, || {
        for u in &wit_users {
            let json = session
                .map_user(black_box(u))?
                .map_err(|e| anyhow!("component map: {}", describe_error(&e)))?;
            black_box(json);
        }
        Ok(())
    })?;

    // A mix of events and link states, so every branch of the decision is taken.
    let cases: Vec<(UserEvent, bool)> = (0..n)
        .map(|i| {
            (
                EVENTS[i % EVENTS.len()],
                (i / EVENTS.len()).is_multiple_of(2),
            )
        })
        .collect();
    let plans = plan_figures(&mut session, &policy, &users, &wit_users, &cases)?;
    let mut scoped_session = open_session(runtime, ROLE_SCOPE_POLICY)?;
    let scoped_policy =
        Policy::parse(ROLE_SCOPE_POLICY).map_err(|e| anyhow!("role scope policy: {e}"))?;
    let scoped_plans = plan_figures(
        &mut scoped_session,
        &scoped_policy,
        &users,
        &wit_users,
        &cases,
    )?;

    // The floor of a call: the same plans for a user with no fields and an empty id, so
    // almost nothing is copied in; what `plan` costs above it is the user's strings
    // crossing the boundary and being converted in the guest.
    let bare = wit::CmsUser {
        id: String::new(),
        fields: Vec::new(),
        active: true,
    };
    // Every case's plan for one user.
    let mut plans_of = |user: &wit::CmsUser| {
        median_ns_per_op(n, || {
            for &(event, linked) in &cases {
                black_box(session.plan_with_every_field(
                    black_box(user),
                    to_wit_event(event),
                    linked,
                )?);
            }
            Ok(())
        })
    };
    let plan_bare = plans_of(&bare)?;

    // What each string costs to cross: the same plans for a user with 32 text fields (64
    // strings and one list more than `bare`). Every string and list is a `cabi_realloc`
    // call into the guest while the host lowers the arguments, and a free in the guest after.
    let wide = wit::CmsUser {
        id: String::new(),
        fields: (0..WIDE_FIELDS)
            .map(|i| {
                (
                    format!("field_{i}"),
                    wit::FieldValue::Text(format!("value {i}")),
                )
            })
            .collect(),
        active: true,
    };
    let plan_wide = plans_of(&wide)?;
    let per_item_ns = (plan_wide - plan_bare) / (2 * WIDE_FIELDS + 1) as f64;

    Ok(PureWork {
        rows: vec![
            PureRow {
                name: MAP_ROW,
                native_ns: map_native,
                component_ns: map_component,
            },
            PureRow {
                name: PLAN_ROW,
                native_ns: plans.native_ns,
                component_ns: plans.cut_ns,
            },
            PureRow {
                name: "plan, every field passed",
                native_ns: plans.native_ns,
                component_ns: plans.every_field_ns,
            },
            PureRow {
                name: SCOPED_PLAN_ROW,
                native_ns: scoped_plans.native_ns,
                component_ns: scoped_plans.cut_ns,
            },
            PureRow {
                name: "  every field passed",
                native_ns: scoped_plans.native_ns,
                component_ns: scoped_plans.every_field_ns,
            },
            PureRow {
                name: BARE_PLAN_ROW,
                native_ns: plans.native_ns,
                component_ns: plan_bare,
            },
        ],
        plan_wide_ns: plan_wide,
        per_item_ns,
    })
}

/// One policy's `plan` figures, in ns per call.
struct PlanFigures {
    /// The core's `decide` with the policy's scope, natively.
    native_ns: f64,
    /// `Session::plan`: only the scope's fields cross.
    cut_ns: f64,
    /// `Session::plan_with_every_field`.
    every_field_ns: f64,
}

fn plan_figures(
    session: &mut Session,
    policy: &Policy,
    users: &[CmsUser],
    wit_users: &[wit::CmsUser],
    cases: &[(UserEvent, bool)],
) -> Result<PlanFigures> {
    let n = users.len();
    let native_ns = median_ns_per_op(n, || {
        for (u, &(event, linked)) in users.iter().zip(cases) {
            let u = black_box(u);
            let situation = Situation {
                event,
                linked,
                active: u.active,
                in_scope: policy.mapping.in_scope(u),
            };
            black_box(decide(
                black_box(situation),
                policy.operations,
                policy.deprovision,
            ));
        }
        Ok(())
    })?;
    // The same plans from both paths first: the cut user must not change one.
    for (u, &(event, linked)) in wit_users.iter().zip(cases).take(64) {
        let cut = session.plan(u, to_wit_event(event), linked)?;
        let whole = session.plan_with_every_field(u, to_wit_event(event), linked)?;
        if (cut.action, &cut.reason) != (whole.action, &whole.reason) {
            bail!(
                "plan differs when only the scope's fields are passed, for user {}",
                u.id
            );
        }
    }
    // What a host does: only the fields the scope reads cross (`scope-fields`).
    let cut_ns = median_ns_per_op(n, || {
        for (u, &(event, linked)) in wit_users.iter().zip(cases) {
            black_box(session.plan(black_box(u), to_wit_event(event), linked)?);
        }
        Ok(())
    })?;
    // What hosts did before: every field crosses.
    let every_field_ns = median_ns_per_op(n, || {
        for (u, &(event, linked)) in wit_users.iter().zip(cases) {
            black_box(session.plan_with_every_field(black_box(u), to_wit_event(event), linked)?);
        }
        Ok(())
    })?;
    Ok(PlanFigures {
        native_ns,
        cut_ns,
        every_field_ns,
    })
}

// ---------------------------------------------------------------------------------------
// Server role

const PHASES: [&str; 3] = [
    "POST /Users",
    "GET /Users/{id}",
    "GET /Users?filter=userName eq",
];

/// A temporary SQLite file (and its journal siblings), removed on drop.
struct TempDb(PathBuf);

impl TempDb {
    fn new() -> Result<TempDb> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path =
            std::env::temp_dir().join(format!("scim-bench-{}-{nanos}.sqlite", std::process::id()));
        if path.exists() {
            bail!("{} already exists", path.display());
        }
        Ok(TempDb(path))
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            // Missing siblings are fine.
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The client counts the server mix runs at.
const CONNECTIONS: [usize; 2] = [1, 8];

/// Ours and scim2-server (when `with_peer` and it is installed), each started once, then
/// measured in `rounds` rounds: each round runs every phase at every connection count on
/// ours, then on the peer, so that both meet the machine's neighbours alike. Each figure is
/// the median of its rounds (a phase's rate, and its p99, apart).
fn bench_servers(
    runtime: &Runtime,
    m: usize,
    rounds: usize,
    with_peer: bool,
) -> Result<(PhaseTable, Option<PhaseTable>)> {
    let Some((ours_server, ours_base, ours_token)) = start_target(runtime, SyncTarget::Ours)?
    else {
        bail!("our own server cannot be missing");
    };
    println!("ours: {ours_base} (a temporary SQLite file)");
    let peer = if with_peer {
        start_peer()?
    } else {
        println!("scim2-server: skipped (--skip-peer)");
        None
    };
    if let Some((process, base, _)) = &peer {
        println!("peer: scim2-server at {base} (pid {})", process.0.id());
    }
    let at_each_count = |base: &str, token: &str, round: usize, label: &str| {
        CONNECTIONS
            .iter()
            .map(|&c| run_phases(base, token, m, c, round, label))
            .collect::<Result<Vec<_>>>()
    };
    let mut ours_rounds = Vec::new();
    let mut peer_rounds = Vec::new();
    for round in 0..rounds {
        ours_rounds.push(at_each_count(&ours_base, &ours_token, round, "ours")?);
        if let Some((_, base, token)) = &peer {
            peer_rounds.push(at_each_count(base, token, round, "peer")?);
        }
    }
    drop(ours_server);
    let peer_figures = peer.map(|_| median_of_rounds(&peer_rounds));
    Ok((median_of_rounds(&ours_rounds), peer_figures))
}

/// A server's figures: per connection count ([`CONNECTIONS`]), per phase ([`PHASES`]).
type PhaseTable = Vec<[PhaseFigure; 3]>;

/// Each phase's median rate and median p99 over the rounds, per connection count.
fn median_of_rounds(rounds: &[PhaseTable]) -> PhaseTable {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    (0..CONNECTIONS.len())
        .map(|c| {
            std::array::from_fn(|phase| PhaseFigure {
                per_second: median(rounds.iter().map(|r| r[c][phase].per_second).collect()),
                p99_ms: median(rounds.iter().map(|r| r[c][phase].p99_ms).collect()),
            })
        })
        .collect()
}

/// The three phases against a server that only answers: it reads each request's head and
/// body and writes a fixed JSON answer (201 with an id for a POST, 200 with one result for
/// a GET), a thread per connection. What is left of a request's time is the client, the
/// loopback and the scheduler, which every server measured here pays too.
fn bench_floor(m: usize) -> Result<Vec<[PhaseFigure; 3]>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let base = format!("http://{}/scim/v2", listener.local_addr()?);
    // The accepting thread lives until the process ends; each connection's thread ends when
    // its client hangs up, at the end of each phase.
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer_fixed(stream));
        }
    });
    CONNECTIONS
        .iter()
        .map(|&c| run_phases(&base, "floor", m, c, 0, "floor"))
        .collect()
}

/// Groups stored for [`bench_groups`], the members of each, and the groups each user is
/// in (which sets how many users there are).
const GROUPS: usize = 1_000;
const GROUP_SIZE: usize = 20;
const GROUPS_PER_USER: usize = 10;

/// `GET /Users/{id}` on a fresh serve of ours, at 1 connection, before and after
/// [`GROUPS`] groups are stored: every read of a user computes its `groups`, which must
/// not cost a pass over every group.
fn bench_groups(runtime: &Runtime, m: usize) -> Result<(PhaseFigure, PhaseFigure)> {
    let Some((server, base, token)) = start_target(runtime, SyncTarget::Ours)? else {
        bail!("our own server cannot be missing");
    };
    let users_url = format!("{base}/Users");
    let users = GROUPS * GROUP_SIZE / GROUPS_PER_USER;
    let (_, ids) = phase(&token, users, 8, |client, i| {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("member-{i}"),
        });
        let (status, text) = client.post(&users_url, &body.to_string())?;
        created_id(status, &text, "POST /Users")
    })?;
    let read = |ids: &[String]| {
        phase(&token, m, 1, |client, i| {
            let url = format!("{users_url}/{}", ids[i % ids.len()]);
            let (status, text) = client.get(&url)?;
            expect(status, 200, &text, "GET /Users/{id}").map(drop)
        })
        .map(|(figure, _)| figure)
    };
    let none = read(&ids)?;
    let groups_url = format!("{base}/Groups");
    phase(&token, GROUPS, 8, |client, g| {
        let members: Vec<Value> = (0..GROUP_SIZE)
            .map(|k| json!({"value": ids[(g * GROUP_SIZE + k) % ids.len()]}))
            .collect();
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": format!("group-{g}"),
            "members": members,
        });
        let (status, text) = client.post(&groups_url, &body.to_string())?;
        expect(status, 201, &text, "POST /Groups").map(drop)
    })?;
    let with_groups = read(&ids)?;
    drop(server);
    Ok((none, with_groups))
}

/// Serves one kept-alive connection for [`bench_floor`] until the client closes it.
fn answer_fixed(stream: std::net::TcpStream) {
    use std::io::{BufRead, BufReader, Read, Write};
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut created = 0u64;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let post = line.starts_with("POST ");
        let mut length = 0usize;
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, answer) = if post {
            created += 1;
            ("201 Created", format!(r#"{{"id":"{created}"}}"#))
        } else {
            ("200 OK", r#"{"totalResults":1}"#.to_string())
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/scim+json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// The peer process, killed and reaped on drop (also on an early error).
struct PeerProcess(Child);

impl Drop for PeerProcess {
    fn drop(&mut self) {
        // An error means it has already exited.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn peer_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("SCIM2_SERVER_BIN") {
        return PathBuf::from(bin);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target/peers/venv/bin/scim2-server")
}

/// Starts a fresh scim2-server: the process, its base URL and its token. `None` (with a
/// message) when it is not installed.
fn start_peer() -> Result<Option<(PeerProcess, String, String)>> {
    let bin = peer_binary();
    if !bin.is_file() {
        println!(
            "scim2-server: skipped, {} not found (run scripts/test once to install it, or set SCIM2_SERVER_BIN)",
            bin.display()
        );
        return Ok(None);
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("cannot pick a free port")?
        .port();
    let token = serve::generate_token();
    let child = Command::new(&bin)
        .args(["--hostname", "127.0.0.1", "--port", &port.to_string()])
        .args(["--bearer-token", &token])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let mut peer = PeerProcess(child);
    let base = format!("http://127.0.0.1:{port}/v2");
    wait_ready(&mut peer, &base, &token)?;
    Ok(Some((peer, base, token)))
}

fn wait_ready(peer: &mut PeerProcess, base: &str, token: &str) -> Result<()> {
    let client = Client::new(token);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = peer.0.try_wait()? {
            bail!("scim2-server exited during startup ({status})");
        }
        if let Ok((200, _)) = client.get(&format!("{base}/ServiceProviderConfig")) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("scim2-server did not answer within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One plain HTTP client (ureq's default connection reuse) with the bearer token.
struct Client {
    agent: ureq::Agent,
    auth: String,
}

impl Client {
    fn new(token: &str) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(30)))
            .build();
        // The host's resolver: ureq's own starts a thread per request under a timeout,
        // which cost every server measured here about a third of its rate at 1 connection.
        let agent = ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::new(),
            host_example::http::CachingResolver::default(),
        );
        Client {
            agent,
            auth: format!("Bearer {token}"),
        }
    }

    fn get(&self, url: &str) -> Result<(u16, String)> {
        let mut resp = self
            .agent
            .get(url)
            .header("Authorization", &self.auth)
            .header("Accept", "application/scim+json")
            .call()
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string()?;
        Ok((status, body))
    }

    fn post(&self, url: &str, body: &str) -> Result<(u16, String)> {
        let mut resp = self
            .agent
            .post(url)
            .header("Authorization", &self.auth)
            .header("Accept", "application/scim+json")
            .header("Content-Type", "application/scim+json")
            .send(body)
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string()?;
        Ok((status, body))
    }
}

/// The id of what a POST created (201).
fn created_id(status: u16, body: &str, what: &str) -> Result<String> {
    expect(status, 201, body, what)?
        .get("id")
        .and_then(Value::as_str)
        .map(String::from)
        .ok_or_else(|| anyhow!("{what}: the created resource has no id"))
}

fn expect(status: u16, want: u16, body: &str, what: &str) -> Result<Value> {
    if status != want {
        let excerpt: String = body.chars().take(300).collect();
        bail!("{what}: HTTP {status}, expected {want}: {excerpt}");
    }
    serde_json::from_str(body).with_context(|| format!("{what}: the answer is not JSON"))
}

/// Requests per second and the 99th-percentile latency of one phase.
#[derive(Debug, Clone, Copy)]
struct PhaseFigure {
    per_second: f64,
    p99_ms: f64,
}

/// Runs `requests` (by index) over `connections` clients at once, each on its own
/// connection taking every `connections`-th index; `check` sends request `i` and checks its
/// answer. Returns the rate and p99, and whatever the requests returned, in index order.
fn phase<T: Send>(
    token: &str,
    requests: usize,
    connections: usize,
    check: impl Fn(&Client, usize) -> Result<T> + Sync,
) -> Result<(PhaseFigure, Vec<T>)> {
    let started = Instant::now();
    let per_connection: Vec<Result<Vec<(usize, f64, T)>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..connections)
            .map(|c| {
                let check = &check;
                scope.spawn(move || {
                    let client = Client::new(token);
                    let mut out = Vec::new();
                    for i in (c..requests).step_by(connections) {
                        let t = Instant::now();
                        let value = check(&client, i)?;
                        out.push((i, t.elapsed().as_secs_f64() * 1e3, value));
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a client thread panicked")))
            })
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut all = Vec::with_capacity(requests);
    for r in per_connection {
        all.extend(r?);
    }
    let mut latencies: Vec<f64> = all.iter().map(|(_, ms, _)| *ms).collect();
    latencies.sort_by(f64::total_cmp);
    let p99 = latencies
        .get((latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0);
    all.sort_by_key(|(i, _, _)| *i);
    Ok((
        PhaseFigure {
            per_second: requests as f64 / seconds,
            p99_ms: p99,
        },
        all.into_iter().map(|(_, _, v)| v).collect(),
    ))
}

/// The three phases against one server at `connections` clients at once: `m` creates, then
/// `m` reads by id, then `m` filtered reads of those users.
fn run_phases(
    base: &str,
    token: &str,
    m: usize,
    connections: usize,
    round: usize,
    label: &str,
) -> Result<[PhaseFigure; 3]> {
    // Each round writes users of its own, so that a server measured again takes new names.
    let run = format!("{:x}-{connections}-{round}", std::process::id());
    let names: Vec<String> = (0..m).map(|i| format!("bench-{run}-{i:05}")).collect();
    let bodies: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": name,
                "externalId": format!("{run}-{i}"),
                "name": {"givenName": format!("First{i}"), "familyName": format!("Last{i}")},
                "displayName": format!("First{i} Last{i}"),
                "emails": [{"type": "work", "value": format!("{name}@example.org"), "primary": true}],
                "active": true
            })
            .to_string()
        })
        .collect();
    let users_url = format!("{base}/Users");

    let (post, ids) = phase(token, m, connections, |client, i| {
        let (status, text) = client.post(&users_url, &bodies[i])?;
        created_id(status, &text, &format!("{label} POST /Users"))
    })?;
    let (get, _) = phase(token, m, connections, |client, i| {
        let (status, text) = client.get(&format!("{users_url}/{}", ids[i]))?;
        expect(
            status,
            200,
            &text,
            &format!("{label} GET /Users/{}", ids[i]),
        )
        .map(drop)
    })?;
    let (filter, _) = phase(token, m, connections, |client, i| {
        let name = &names[i];
        let url = format!(
            "{users_url}?filter=userName%20eq%20%22{}%22",
            url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
        );
        let (status, text) = client.get(&url)?;
        let list = expect(status, 200, &text, &format!("{label} filter {name}"))?;
        if list.get("totalResults").and_then(Value::as_u64) != Some(1) {
            bail!("{label}: filter userName eq {name:?} did not find exactly one user");
        }
        Ok(())
    })?;
    Ok([post, get, filter])
}
