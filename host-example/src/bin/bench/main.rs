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
//! 7. **Adaptive rate control** (`--rate`, instead of 1 to 5): a first sync of
//!    `--rate-users` users (5,000) into the quirky server at `--rate-limit` requests a second
//!    (50), with adaptation and without: the share of 429s and the throughput against the
//!    limit (module `rate`).
//! 8. **A no-change resync read in pages** (`--resync-paged N`, instead of 1 to 5): N users
//!    and their links written into a SQLite store or a PostgreSQL database
//!    (`--resync-database`), then a resync with nothing changed that reads them a page at a
//!    time: seconds and the peak RSS during it (module `resync_paged`).
//!
//! 9. **Groups of any size** (`--groups`, instead of 1 to 5): a group of `--group-members`
//!    members (10,000) made by a first sync, then `--group-changes` (1,000) of them moved to
//!    another group, into the quirky server: requests and seconds with membership changes
//!    in chunks against one member a request (module `groups`).
//!
//! 10. **The outbox's claim overhead** (`--claims [N] --claims-database URL|throwaway`,
//!     instead of 1 to 5): N events (100,000) on a shared PostgreSQL or MariaDB outbox
//!     claimed and settled by 1, 2 and 4 workers against a server that answers at once,
//!     `--claims-runs` (3) times each, median and range (module `claims`).
//!
//! 11. **A first sync by many workers** (`--first-sync-workers [USERS]`, default 100,000,
//!     instead of 1 to 5): USERS users queued on PostgreSQL and drained into scim2-server by
//!     1, 2 and 4 `daemon --deliver-only` processes, then the same users synced by 1, 2
//!     and 4 daemons sharing the scheduled reconcile, against the server's own `/Bulk`
//!     ceiling measured in the same run (module `workers_first_sync`).
//!
//! At the end of 1 to 5, issue 13's table (each figure, its goal, and whether it was met) is
//! printed as Markdown; `--readme FILE` writes it between FILE's marker lines
//! ([`figures::BEGIN_MARKER`]), so the table in `docs/figures.md` is the last run's own.
//!
//! Build and run (release, for honest numbers):
//!
//! ```sh
//! cargo build --release -p host-example --bin bench -p scim-bridge
//! target/release/bench [--users N] [--requests M] [--sync-users S] [--resync-users R] [--skip-peer]
//! target/release/bench --pure-only [--component OTHER.wasm]   # 1 only, of another build
//! target/release/bench … --readme docs/figures.md   # also write issue 13's table into the figures page
//! target/release/bench --rate [--rate-users N] [--rate-limit L]
//! target/release/bench --groups [--group-members N] [--group-changes M]
//! target/release/bench --resync-paged 1000000 [--resync-database postgres://…] [--resync-policy realistic] [--resync-legacy] [--resync-first]
//! target/release/bench --hosts [--calls N] [--memory-calls N] [--sync-users S] [--sync-concurrency C]
//! ```
//!
//! One module per phase (`pure`, `boundary`, `cold_start`, `server_mix`, `sync`, `resync`,
//! `hosts`, `rate`, `groups`); the shared runner apart: `runner` (timing, medians, load phases), `client`
//! (the HTTP client and its checks), `servers` (ours and the peer, started fresh),
//! `users` (the users measured) and `figures` (the table).

mod boundary;
mod claims;
mod client;
mod cold_start;
mod figures;
mod groups;
mod hosts;
mod proc_cpu;
mod pure;
mod rate;
mod resync;
mod resync_paged;
mod runner;
mod server_mix;
mod servers;
mod sync;
mod users;
mod workers_first_sync;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use host_example::Runtime;

use figures::{Figures, grouped};

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
    /// Measure adaptive rate control against a rate-limited server instead (7).
    #[arg(long)]
    rate: bool,
    /// Users in the rate-control sync (with --rate).
    #[arg(long, default_value_t = 5_000)]
    rate_users: usize,
    /// The server's limit in requests a second (with --rate).
    #[arg(long, default_value_t = 50)]
    rate_limit: u32,
    /// Measure a no-change resync of N users read from the store in pages instead (8):
    /// seconds and peak RSS.
    #[arg(long, value_name = "N")]
    resync_paged: Option<usize>,
    /// The database of `--resync-paged`: a SQLite file (default: a fresh temporary one) or
    /// a postgres:// URL of an empty database.
    #[arg(long, value_name = "PATH_OR_URL")]
    resync_database: Option<String>,
    /// The policy of `--resync-paged`: `minimal` (empty) or `realistic` (a mapping of a
    /// few KB, as a real site's).
    #[arg(long, value_name = "minimal|realistic", default_value = "minimal")]
    resync_policy: String,
    /// `--resync-paged` with the links' fingerprints in the form of the versions before the
    /// policy digest: the first resync after an upgrade, then a second one.
    #[arg(long)]
    resync_legacy: bool,
    /// `--resync-paged` as a first sync: the N users unlinked, synced into a `host-example
    /// serve` of the bench's own, then resynced.
    #[arg(long)]
    resync_first: bool,
    /// Write N users for `--resync-paged` into `--resync-database`, then stop (the child
    /// process `--resync-paged` starts).
    #[arg(long, value_name = "N", hide = true)]
    resync_seed: Option<usize>,
    /// Measure the outbox's claim overhead instead (10): N events drained by 1, 2 and 4
    /// workers on `--claims-database` (a postgres:// or mysql:// URL of a database the
    /// bench may empty, or `throwaway`: a PostgreSQL and a MariaDB of its own, with the
    /// bench built `--features db-test-support`).
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "100000")]
    claims: Option<usize>,
    /// The database of `--claims`.
    #[arg(long, value_name = "URL")]
    claims_database: Option<String>,
    /// Runs of `--claims` per worker count (the table gives their median and range).
    #[arg(long, value_name = "N", default_value_t = 3)]
    claims_runs: usize,
    /// The worker counts of `--claims`.
    #[arg(
        long,
        value_name = "N,N,…",
        value_delimiter = ',',
        default_value = "1,2,4"
    )]
    claims_counts: Vec<usize>,
    /// How `--claims` empties its tables before each run: `truncate` (each run as on a new
    /// database) or `delete` (each run on the tables the previous ones churned).
    #[arg(long, value_enum, default_value = "truncate")]
    claims_empty: claims::Emptying,
    /// Measure a first sync of USERS users by 1, 2 and 4 worker processes on PostgreSQL
    /// against scim2-server's own /Bulk ceiling instead (11).
    #[arg(long, value_name = "USERS", num_args = 0..=1, default_missing_value = "100000")]
    first_sync_workers: Option<usize>,
    /// The worker counts of `--first-sync-workers`.
    #[arg(
        long,
        value_name = "N,N,…",
        value_delimiter = ',',
        default_value = "1,2,4"
    )]
    first_sync_counts: Vec<usize>,
    /// The policy's `matching` of `--first-sync-workers` (default: the policy's default,
    /// userName,externalId,emails[type eq "work"].value).
    #[arg(long, value_name = "ATTRIBUTE,…", value_delimiter = ',')]
    first_sync_matching: Option<Vec<String>>,
    /// The policy's `matching_look_up` of `--first-sync-workers`: before_create (the
    /// default) or on_conflict (no look-up by userName before a creation).
    #[arg(long, value_name = "MODE", default_value = "before_create",
          value_parser = ["before_create", "on_conflict"])]
    first_sync_look_up: String,
    /// The PostgreSQL of `--first-sync-workers` (a database the bench may empty); by
    /// default a throwaway one of the bench's own (built with `db-test-support`).
    #[arg(long, value_name = "URL")]
    first_sync_database: Option<String>,
    /// The phases of `--first-sync-workers`: ceiling, lookups, outbox, reconcile, sync.
    #[arg(
        long,
        value_name = "PHASE,…",
        value_delimiter = ',',
        default_value = "ceiling,lookups,outbox,reconcile,sync"
    )]
    first_sync_phases: Vec<workers_first_sync::Phase>,
    /// The connections `--first-sync-workers` measures the ceiling from.
    #[arg(
        long,
        value_name = "N,N,…",
        value_delimiter = ',',
        default_value = "1,2,4,8"
    )]
    first_sync_ceiling_connections: Vec<usize>,
    /// `[host] server_in_flight` of `--first-sync-workers`' processes: the requests in
    /// flight to scim2-server from all of them together (default: not set, no shared cap).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    first_sync_server_in_flight: Option<u32>,
    /// Measure membership changes of a large group instead (9).
    #[arg(long)]
    groups: bool,
    /// Members of the large group (with --groups).
    #[arg(long, default_value_t = 10_000)]
    group_members: usize,
    /// Members that move to another group (with --groups).
    #[arg(long, default_value_t = 1_000)]
    group_changes: usize,
    /// Measure only the component against native (1), then stop.
    #[arg(long)]
    pure_only: bool,
    /// Write issue 13's table of this run into FILE (`docs/figures.md`) between its marker lines.
    /// The flag keeps its old name: the marker lines in that page name it.
    #[arg(long, value_name = "FILE")]
    readme: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(n) = args.resync_seed {
        let database = args
            .resync_database
            .as_deref()
            .context("--resync-seed needs --resync-database")?;
        return resync_paged::seed(
            database,
            n,
            &args.resync_policy,
            args.resync_legacy,
            args.resync_first,
        );
    }
    if let Some(n) = args.claims {
        let database = args
            .claims_database
            .as_deref()
            .context("--claims needs --claims-database")?;
        return claims::run(
            database,
            &claims::Run {
                events: n,
                runs: args.claims_runs,
                counts: args.claims_counts.clone(),
                emptying: args.claims_empty,
            },
        );
    }
    if let Some(users) = args.first_sync_workers {
        let matching: Vec<String> = match &args.first_sync_matching {
            None => workers_first_sync::DEFAULT_MATCHING
                .map(String::from)
                .to_vec(),
            Some(list) => list.clone(),
        };
        return workers_first_sync::run(&workers_first_sync::Options {
            users,
            matching: &matching,
            look_up: &args.first_sync_look_up,
            worker_counts: &args.first_sync_counts,
            database: args.first_sync_database.as_deref(),
            phases: &args.first_sync_phases,
            ceiling_connections: &args.first_sync_ceiling_connections,
            server_in_flight: args.first_sync_server_in_flight,
        });
    }
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
    if args.groups {
        return groups::run(&runtime, args.group_members, args.group_changes);
    }
    if args.rate {
        return rate::run(&runtime, args.rate_users, args.rate_limit);
    }
    if let Some(n) = args.resync_paged {
        return resync_paged::run(
            &runtime,
            n,
            args.resync_database.as_deref(),
            &args.resync_policy,
            args.resync_legacy,
            args.resync_first,
        );
    }
    if args.hosts {
        return hosts::run(
            &runtime,
            &hosts::HostsArgs {
                calls: args.calls,
                memory_calls: args.memory_calls,
                sync_users: args.sync_users,
                sync_concurrency: args.sync_concurrency,
            },
        );
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

    pure::run(runtime, args.users, figures)?;
    if args.pure_only {
        return Ok(());
    }
    cold_start::run(runtime, component, figures)?;
    server_mix::run(
        runtime,
        args.requests,
        args.rounds,
        !args.skip_peer,
        figures,
    )?;
    if args.sync_users > 0 {
        sync::against_ceiling(runtime, args.sync_users, args.skip_peer, figures)?;
    }
    if args.resync_users > 0 {
        resync::run(runtime, args.resync_users, figures)?;
    }
    if args.skip_peer || args.sync_users == 0 {
        return Ok(());
    }
    sync::bulk_against_one_per_user(runtime, args.sync_users, figures)
}
