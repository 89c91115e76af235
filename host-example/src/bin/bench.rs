//! `bench`: how much the WebAssembly boundary costs, and how our SCIM server compares with a
//! peer, measured side by side in one run.
//!
//! 1. **Component vs native, pure work.** The same N Drupal-style users (fields `name`,
//!    `mail`, `field_first_name`, `field_last_name`, `roles`) are mapped with the default
//!    mapping natively (`scim_provisioner::policy::Policy::parse("")`'s mapping, then
//!    serialised to a JSON string) and through the component (`Session::map_user`, which
//!    sends nothing); likewise operation selection natively
//!    (`scim_provisioner::client::selection::decide`) against `Session::plan`. Each is
//!    warmed up with one full pass, then timed 5 times; the median is reported in
//!    nanoseconds per operation with the component/native ratio.
//! 2. **Ours vs a peer, server role.** Our server (`host_example::serve::start` on
//!    127.0.0.1:0 over a temporary SQLite file) and scim2-server (from
//!    `target/peers/venv/bin/scim2-server`, or env `SCIM2_SERVER_BIN`; skipped with a message
//!    when absent) each get, from one plain sequential ureq client, M `POST /Users`, then M
//!    `GET /Users/{id}`, then M `GET /Users?filter=userName eq "…"`. Requests per second
//!    are reported per phase, with the ratio ours/peer. The peer is killed at the end.
//! 3. **A first sync, bulk vs one request per user.** S users are imported into a fresh
//!    SQLite store and synced (concurrency 8) to a fresh scim2-server twice: with the
//!    default batches, whose writes travel in `/Bulk` requests, and with `batch_size = 1`,
//!    one request per write. Both list the remote users once first. Then the same onto a
//!    server that holds every user already (another first name), so each is adopted and
//!    updated. Reported: seconds, users per second, requests, and the ratio. Skipped with
//!    the peer.
//!
//! 4. **Every host against the Rust host** (`--hosts`, instead of 1 to 3). The Rust host's
//!    per-call cost of `plan`, `map-user` and a no-change `provision` (one user created on
//!    scim2-server first; the link makes the provision send nothing), its RSS over many
//!    `plan` calls, and a first sync of S users into a fresh scim2-server (`/Bulk`,
//!    `--sync-concurrency` instances); then each other host's own bench with the same
//!    sizes (`hosts/php/bench.php --json`), and one table with each host's ratio to the
//!    Rust host.
//!
//! Build and run (release, for honest numbers):
//!
//! ```sh
//! cargo build --release -p host-example --bin bench -p scim-bridge
//! target/release/bench [--users N] [--requests M] [--sync-users S] [--skip-peer]
//! target/release/bench --hosts [--calls N] [--memory-calls N] [--sync-users S] [--sync-concurrency C]
//! ```

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
use scim_provisioner::user::{CmsUser, FieldValue, UserEvent};
use serde_json::{Value, json};

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
    /// Users in the first-sync comparison (bulk vs one request per user).
    #[arg(long = "sync-users", default_value_t = 2_000)]
    sync_users: usize,
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
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.users == 0 || args.requests == 0 {
        bail!("--users and --requests must be positive");
    }
    let started = Instant::now();
    let runtime = Runtime::new(Runtime::built_component_path())?;
    println!(
        "component {}; linked, {:.2} s in all",
        runtime.cache_info(),
        started.elapsed().as_secs_f64()
    );
    if args.hosts {
        return bench_hosts(&runtime, &args);
    }

    println!(
        "\n== component vs native: {} users, 1 warm-up + median of {REPEATS} ==",
        args.users
    );
    let pure = pure_work(&runtime, args.users)?;
    println!(
        "{:<24} {:>12} {:>15} {:>10}",
        "operation", "native ns/op", "component ns/op", "ratio"
    );
    for row in &pure {
        println!(
            "{:<24} {:>12.0} {:>15.0} {:>9.1}x",
            row.name,
            row.native_ns,
            row.component_ns,
            row.component_ns / row.native_ns
        );
    }

    println!(
        "\n== server role: {} requests per phase, one sequential client ==",
        args.requests
    );
    let ours = bench_ours(&runtime, args.requests)?;
    let peer = if args.skip_peer {
        println!("scim2-server: skipped (--skip-peer)");
        None
    } else {
        bench_peer(args.requests)?
    };
    println!(
        "{:<30} {:>10} {:>12} {:>10}",
        "phase", "ours req/s", "peer req/s", "ours/peer"
    );
    for (i, phase) in PHASES.iter().enumerate() {
        let o = ours[i];
        match &peer {
            Some(p) => println!("{phase:<30} {o:>10.0} {:>12.0} {:>9.2}x", p[i], o / p[i]),
            None => println!("{phase:<30} {o:>10.0} {:>12} {:>10}", "-", "-"),
        }
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
            let Some(row) = bench_first_sync(&runtime, args.sync_users, batch_size, existing, 8)?
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
        }
    }
    Ok(())
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
    let Some((peer, base, token)) = start_peer()? else {
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
    let settings = ConnectorSettings {
        base_url: base,
        credentials: Credentials::Bearer(token),
        timeout_ms: 30_000,
        policy_json: String::new(),
    };
    let options = host_example::sync::SyncOptions {
        plan_only: false,
        allow_deletes: false,
        threshold: host_example::config::Threshold::Percent(10.0),
        concurrency,
        batch_size,
        max_attempts: 3,
        progress: false,
        full: false,
    };
    let started = Instant::now();
    let summary = host_example::sync::sync(runtime, &settings, &mut store, &options)?;
    let seconds = started.elapsed().as_secs_f64();
    drop(peer);
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
    let settings = ConnectorSettings {
        base_url: base,
        credentials: Credentials::Bearer(token),
        timeout_ms: 30_000,
        policy_json: String::new(),
    };
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
    let out = std::env::temp_dir().join(format!("bench-php-{}.json", std::process::id()));
    println!("\n== the PHP host's own bench (hosts/php/bench.php) ==");
    let status = Command::new("php")
        .arg(root.join("hosts/php/bench.php"))
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
            hosts.push(serde_json::from_str(&text).context("reading the PHP bench's figures")?);
        }
        Ok(s) => println!("the PHP bench failed ({s}); it is left out"),
        Err(e) => println!("the PHP bench could not run ({e}); it is left out"),
    }

    println!(
        "\n== every host against the Rust host: {n} calls per figure (median of {REPEATS}), \
         memory over {} plan calls, a first sync of {} users at concurrency {} ==",
        args.memory_calls, args.sync_users, args.sync_concurrency
    );
    println!(
        "{:<6} {:>10} {:>7} {:>10} {:>7} {:>13} {:>7} {:>12} {:>9} {:>7}",
        "host",
        "plan us",
        "x rust",
        "map us",
        "x rust",
        "provision us",
        "x rust",
        "RSS growth",
        "sync s",
        "x rust"
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
            "{:<6} {:>10} {:>7} {:>10} {:>7} {:>13} {:>7} {:>9} KiB {:>9} {:>7}",
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
        );
    }
    for h in &hosts {
        println!(
            "{}: {}",
            h.get("host").and_then(Value::as_str).unwrap_or("?"),
            h.get("runtime").and_then(Value::as_str).unwrap_or("?")
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Component vs native

struct PureRow {
    name: &'static str,
    native_ns: f64,
    component_ns: f64,
}

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

fn open_session(runtime: &Runtime) -> Result<Session> {
    let settings = ConnectorSettings {
        // Nothing is sent: map_user and plan are pure.
        base_url: "http://127.0.0.1:9/v2".into(),
        credentials: Credentials::Bearer("bench-token".into()),
        timeout_ms: 1_000,
        policy_json: String::new(),
    };
    runtime
        .open(&settings)?
        .map_err(|e| anyhow!("cannot open a connector: {}", describe_error(&e)))
}

fn pure_work(runtime: &Runtime, n: usize) -> Result<Vec<PureRow>> {
    let policy = Policy::parse("").map_err(|e| anyhow!("default policy: {e}"))?;
    let users: Vec<CmsUser> = (0..n).map(drupal_user).collect();
    let wit_users: Vec<wit::CmsUser> = users.iter().map(to_wit_user).collect();
    let mut session = open_session(runtime)?;

    // Both sides produce the same JSON text, so the work is comparable.
    let native_first = policy
        .mapping
        .map(&users[0], MapMode::Create)
        .map_err(|e| anyhow!("native map: {e}"))?
        .to_string();
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
            let json = policy
                .mapping
                .map(black_box(u), MapMode::Create)
                .map_err(|e| anyhow!("native map: {e}"))?
                .to_string();
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
    let plan_native = median_ns_per_op(n, || {
        for (u, &(event, linked)) in users.iter().zip(&cases) {
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
    let plan_component = median_ns_per_op(n, || {
        for (u, &(event, linked)) in wit_users.iter().zip(&cases) {
            black_box(session.plan(black_box(u), to_wit_event(event), linked)?);
        }
        Ok(())
    })?;

    Ok(vec![
        PureRow {
            name: "map user -> JSON",
            native_ns: map_native,
            component_ns: map_component,
        },
        PureRow {
            name: "plan (decide)",
            native_ns: plan_native,
            component_ns: plan_component,
        },
    ])
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

fn bench_ours(runtime: &Runtime, m: usize) -> Result<[f64; 3]> {
    let db = TempDb::new()?;
    let token = serve::generate_token();
    let mut server = serve::start(
        runtime,
        &db.0,
        "127.0.0.1:0",
        &token,
        "",
        LogSink::stderr(Level::Warn),
    )?;
    println!("ours: {} (SQLite {})", server.base_url, db.0.display());
    let result = run_phases(&server.base_url, &token, m, "ours");
    server.stop();
    result
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

fn bench_peer(m: usize) -> Result<Option<[f64; 3]>> {
    let Some((peer, base, token)) = start_peer()? else {
        return Ok(None);
    };
    println!("peer: scim2-server at {base} (pid {})", peer.0.id());
    let result = run_phases(&base, &token, m, "peer");
    drop(peer);
    result.map(Some)
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
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
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

fn expect(status: u16, want: u16, body: &str, what: &str) -> Result<Value> {
    if status != want {
        let excerpt: String = body.chars().take(300).collect();
        bail!("{what}: HTTP {status}, expected {want}: {excerpt}");
    }
    serde_json::from_str(body).with_context(|| format!("{what}: the answer is not JSON"))
}

/// The three phases against one server, sequentially; requests per second of each.
fn run_phases(base: &str, token: &str, m: usize, label: &str) -> Result<[f64; 3]> {
    let client = Client::new(token);
    let run = format!("{:x}", std::process::id());
    let names: Vec<String> = (0..m).map(|i| format!("bench-{run}-{i:05}")).collect();
    let bodies: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": name,
                "externalId": (1000 + i).to_string(),
                "name": {"givenName": format!("First{i}"), "familyName": format!("Last{i}")},
                "displayName": format!("First{i} Last{i}"),
                "emails": [{"type": "work", "value": format!("{name}@example.org"), "primary": true}],
                "active": true
            })
            .to_string()
        })
        .collect();
    let users_url = format!("{base}/Users");

    let t = Instant::now();
    let mut ids = Vec::with_capacity(m);
    for body in &bodies {
        let (status, text) = client.post(&users_url, body)?;
        let created = expect(status, 201, &text, &format!("{label} POST /Users"))?;
        let id = created
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("{label}: the created user has no id"))?;
        ids.push(id.to_string());
    }
    let post = m as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    for id in &ids {
        let (status, text) = client.get(&format!("{users_url}/{id}"))?;
        expect(status, 200, &text, &format!("{label} GET /Users/{id}"))?;
    }
    let get = m as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    for name in &names {
        let url = format!(
            "{users_url}?filter=userName%20eq%20%22{}%22",
            url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
        );
        let (status, text) = client.get(&url)?;
        let list = expect(status, 200, &text, &format!("{label} filter {name}"))?;
        if list.get("totalResults").and_then(Value::as_u64) != Some(1) {
            bail!("{label}: filter userName eq {name:?} did not find exactly one user");
        }
    }
    let filter = m as f64 / t.elapsed().as_secs_f64();
    Ok([post, get, filter])
}
