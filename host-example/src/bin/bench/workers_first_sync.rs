//! A first sync by many workers against the server's own `/Bulk` ceiling (issue 30,
//! `--first-sync-workers [USERS]`, default 100,000 users).
//!
//! Everything is measured in one run, each part on a fresh scim2-server
//! (`target/peers/venv/bin/scim2-server`, or env `SCIM2_SERVER_BIN`):
//!
//! 1. **The ceiling.** Plain clients (no component, no database) create USERS users through
//!    raw `POST /Bulk` requests of 100 creates each (the size a worker's batch sends), from
//!    1, 2, 4 and 8 connections, each on a fresh scim2-server. The best users/s is the
//!    server's `/Bulk` ceiling. Each row also gives the rate over the first and the last
//!    10% of the users (at most 10,000): for plain clients from each request's own time
//!    (connections × users ÷ seconds, the look-ups included), for the workers from the
//!    outbox's depth, polled every 200 ms. A last far below the first means a write costs
//!    more as the server fills.
//! 2. **The look-up mix.** A worker's first delivery of a new user first asks the server
//!    whether the user is there already, one filtered `GET /Users` per matching attribute
//!    of the policy (`--first-sync-matching`; default the policy's own: `userName`,
//!    `externalId`, `emails[type eq "work"].value`), and only then sends the `/Bulk` write,
//!    so that no user is ever created twice. The same plain clients replay exactly that
//!    request mix (the look-ups of 100 users, then their `/Bulk`) from 4 connections: the
//!    most the server can take of what the workers must send.
//! 3. **The workers.** For 1, 2 and 4 workers (`--first-sync-counts`): a fresh PostgreSQL
//!    database; USERS users added to the store, each with its `created` event in the
//!    outbox (as a site's hook adds them); then that many real `host-example daemon
//!    --deliver-only` processes (the release build beside the bench) drain the outbox into
//!    a fresh scim2-server, each claiming batches of 100 under its lease and sending them
//!    through `provision-batch`. Timed from the workers' start to an empty outbox; then the
//!    server's user count is read back (it must be USERS) and nothing may be parked.
//! 4. **For comparison, one `sync` process**: the same users imported without events and
//!    synced by `host-example sync` (`[host] concurrency` 8), which lists the remote users
//!    once instead of looking each one up.
//!
//! 5. **The shared reconcile, by many daemons** (the way a site with many daemons really
//!    does a first sync): for the same worker counts, the same users imported without
//!    events into a fresh PostgreSQL database, then that many full `host-example daemon`
//!    processes (not `--deliver-only`; `--partitions 16`, `--every 1h`, so the first run is
//!    due at once and no second one starts) share one scheduled reconcile: the remote users
//!    are listed once for the run and shared through the database, the run's 16 ranges of
//!    users are claimed by the daemons in turn, and matching is local, with no per-user
//!    look-up. Timed from the daemons' start to the run's `done` in `reconcile_runs`; then
//!    every user must be linked and the server's user count read back must be USERS. The
//!    first / last 10% rates come from the links written, polled every 200 ms.
//!
//! For each phase the CPU seconds of scim2-server, of the workers and of the database's
//! PostgreSQL backends (`utime + stime` from `/proc/<pid>/stat`, differences over the
//! phase) are given as a share of one core over the phase's wall time, with the machine's
//! busy share of all its cores (`/proc/stat`). scim2-server runs its requests in threads
//! under one Python lock, so it can use one core at most: a server near 100% is the limit;
//! workers far below 100% are waiting for it. The requests the server answered are counted
//! from its own request log (wsgiref's access log on its stderr).
//!
//! What it showed (`docs/figures.md`, "Issue 30: a first sync by many workers"): the
//! workers are never the limit; the per-user look-ups are. scim2-server indexes `eq` on a
//! single-valued string (`userName`, `externalId`) but scans every stored user for the
//! work email's value-path filter, so with the default matching each new user costs more
//! as the server fills and a first sync through the outbox is quadratic: 100,000 users
//! does not finish in hours there. `--first-sync-matching userName` keeps one indexed
//! look-up per user. The shared reconcile, which looks nobody up, is the first sync many
//! daemons should do: at 10,000 users 1, 2 and 4 daemons reached 85%, 91% and 82% of the
//! ceiling (loaded machine), where the outbox's workers reached 35–42%.
//!
//! "server CPU ms a user" is scim2-server's CPU time over the phase divided by the users:
//! what the same users cost the server by each path, which the machine's other work
//! affects less than users/s does (the server runs one request at a time: at 99% of its
//! core, users/s is 1,000 ÷ this). The outbox's workers and the shared reconcile side by
//! side, with the cap and without look-ups (the numbers in `docs/architecture.md`, "The
//! scheduled reconcile, shared"):
//!
//! ```sh
//! target/release/bench --first-sync-workers 20000 --first-sync-matching userName \
//!   --first-sync-look-up on_conflict --first-sync-server-in-flight 1 \
//!   --first-sync-phases ceiling,outbox,reconcile --first-sync-counts 4 \
//!   --first-sync-ceiling-connections 1
//! ```
//!
//! The processes' logs and scim2-server's request logs are kept in a temporary directory
//! (printed) when the run fails, or when the environment sets `FIRST_SYNC_KEEP_LOGS=1`.
//!
//! The database is, by default, a throwaway PostgreSQL of the bench's own (a fresh
//! temporary directory, a free loopback port, removed at the end; the bench must be built
//! with the `db-test-support` feature), with a fresh database per run; `throwaway` names
//! it, as `--claims-database` does. Or pass `--first-sync-database postgres://…`: a
//! database the bench may empty (its outbox, links, users and log are deleted before each
//! run).
//!
//! One command (release, for honest numbers):
//!
//! ```sh
//! cargo build --release -p host-example --features db-test-support --bin host-example --bin bench
//! target/release/bench --first-sync-workers                # 100,000 users, 1, 2 and 4 workers
//! target/release/bench --first-sync-workers 10000 --first-sync-matching userName
//! target/release/bench --first-sync-workers 2000 --first-sync-counts 1,4
//! ```
//!
//! By default a run does each phase (the ceiling, the look-up mix, the outbox's workers,
//! the shared reconcile's daemons, one `sync`); `--first-sync-counts` sets the worker and
//! the daemon counts alike. `--first-sync-phases` picks phases (a comma list of
//! `ceiling`, `lookups`, `outbox`, `reconcile`, `sync`; they always run in that order, and
//! a row's share of the ceiling is shown only when `ceiling` ran in the same run), and
//! `--first-sync-ceiling-connections` the connections the ceiling is measured from
//! (default `1,2,4,8`; the best is the ceiling). The issue's goal at 100,000 users, the
//! ceiling from one connection (the best at 10,000) against the shared reconcile by 1, 2
//! and 4 daemons, is one command of about 15 minutes on a quiet 2-core machine:
//!
//! ```sh
//! target/release/bench --first-sync-workers 100000 --first-sync-matching userName \
//!   --first-sync-phases ceiling,reconcile --first-sync-ceiling-connections 1
//! ```
//!
//! `--first-sync-look-up on_conflict` runs the workers, the daemons and `sync` with the
//! policy's `matching_look_up = "on_conflict"`: a new user is not looked up by `userName`
//! first, and the server's 409 finds one already there (`docs/roles.md`). With
//! `--first-sync-matching userName` the outbox's workers then send no look-up at all:
//!
//! ```sh
//! target/release/bench --first-sync-workers 100000 --first-sync-matching userName \
//!   --first-sync-look-up on_conflict --first-sync-phases ceiling,outbox \
//!   --first-sync-ceiling-connections 1
//! ```
//!
//! `--first-sync-server-in-flight N` writes `[host] server_in_flight = N` into the
//! configuration of the workers, the daemons and `sync`: every process on the database then
//! shares N requests in flight to scim2-server (`host_example::shared_in_flight`). 4
//! daemons with one shared slot against the same without it, at 20,000 users (run it once
//! with and once without the option):
//!
//! ```sh
//! target/release/bench --first-sync-workers 20000 --first-sync-matching userName \
//!   --first-sync-phases ceiling,reconcile --first-sync-counts 4 \
//!   --first-sync-ceiling-connections 1 --first-sync-server-in-flight 1
//! ```

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use host_example::database::{DatabaseUrl, Db};
use host_example::store::{Store, UserRecord};
use serde_json::{Map, Value, json};

use crate::client::{Client, expect};
use crate::figures::grouped;
use crate::servers::PeerProcess;

/// Creates per `/Bulk` request: a worker's batch (the delivery claims 100 events at once).
const PER_REQUEST: usize = 100;
/// Connections of the look-up mix (the largest worker count measured).
const MIX_CONNECTIONS: usize = 4;
/// How long one drain may take before the bench gives up.
const DRAIN_DEADLINE: Duration = Duration::from_secs(3 * 3600);

/// The bench's options.
pub struct Options<'a> {
    pub users: usize,
    /// The policy's `matching` attributes the workers look a new user up by (the look-up
    /// mix replays the same): `userName`, `externalId`, `emails[type eq "work"].value`.
    pub matching: &'a [String],
    /// The policy's `matching_look_up` the workers, daemons and `sync` run with
    /// (`--first-sync-look-up`): `before_create` (the default: a filtered GET per matching
    /// attribute before a new user's creation) or `on_conflict` (no look-up by `userName`;
    /// the server's 409 finds the user already there).
    pub look_up: &'a str,
    pub worker_counts: &'a [usize],
    pub database: Option<&'a str>,
    /// The phases to run (`--first-sync-phases`), in the bench's own order whatever the
    /// order given.
    pub phases: &'a [Phase],
    /// The connections the ceiling is measured from (`--first-sync-ceiling-connections`).
    pub ceiling_connections: &'a [usize],
    /// `[host] server_in_flight` of the workers, daemons and `sync`
    /// (`--first-sync-server-in-flight`; none: not set, no shared cap).
    pub server_in_flight: Option<u32>,
}

/// A phase of the bench (`--first-sync-phases`; see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// 1. Plain clients' raw `/Bulk` from each `--first-sync-ceiling-connections`.
    Ceiling,
    /// 2. The look-up mix.
    Lookups,
    /// 3. The outbox's workers (`daemon --deliver-only`).
    Outbox,
    /// 5. The shared reconcile's daemons.
    Reconcile,
    /// 4. One `sync` process.
    Sync,
}

impl Phase {
    /// Every phase, the default.
    pub const ALL: [Phase; 5] = [
        Phase::Ceiling,
        Phase::Lookups,
        Phase::Outbox,
        Phase::Reconcile,
        Phase::Sync,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Ceiling => "ceiling",
            Phase::Lookups => "lookups",
            Phase::Outbox => "outbox",
            Phase::Reconcile => "reconcile",
            Phase::Sync => "sync",
        }
    }
}

impl std::str::FromStr for Phase {
    type Err = String;

    fn from_str(name: &str) -> std::result::Result<Phase, String> {
        Phase::ALL
            .into_iter()
            .find(|p| p.name() == name.trim())
            .ok_or_else(|| {
                format!(
                    "{name:?} is not a phase; the phases are {}",
                    Phase::ALL.map(Phase::name).join(", ")
                )
            })
    }
}

/// User `i` as the store holds it: what the workers send, and what the ceiling's plain
/// clients send by hand in the same shape.
fn record(i: usize) -> UserRecord {
    let mut fields = Map::new();
    fields.insert("first".into(), json!(format!("First{i}")));
    fields.insert("last".into(), json!(format!("Last{}", i % 977)));
    UserRecord {
        id: String::new(),
        name: format!("user{i:06}"),
        mail: format!("user{i:06}@example.org"),
        fields,
        active: true,
    }
}

/// The SCIM user the mapping in [`worker_config`] makes of [`record`] `i` (store id
/// `external_id`).
fn scim_user(i: usize, external_id: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": format!("user{i:06}"),
        "name": {"givenName": format!("First{i}"), "familyName": format!("Last{}", i % 977)},
        "emails": [{"type": "work", "value": format!("user{i:06}@example.org")}],
        "externalId": external_id,
        "active": true
    })
}

/// The policy's default `matching`.
pub const DEFAULT_MATCHING: [&str; 3] =
    ["userName", "externalId", "emails[type eq \"work\"].value"];

/// The configuration of the workers (and of the `sync` process, which is also given the
/// database: `sync` takes it from `[host] database` only, so the file is the owner's alone).
fn worker_config(
    dir: &Path,
    base_url: &str,
    database: Option<&str>,
    matching: &[String],
    matching_look_up: &str,
    server_in_flight: Option<u32>,
) -> Result<PathBuf> {
    let path = dir.join("worker.toml");
    // A JSON string list is a TOML array of basic strings.
    let matching = serde_json::to_string(matching)?;
    let database = database.map_or(String::new(), |url| format!("database = {url:?}\n"));
    let server_in_flight =
        server_in_flight.map_or(String::new(), |n| format!("server_in_flight = {n}\n"));
    let file = {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?
    };
    drop(file);
    std::fs::write(
        &path,
        format!(
            r#"matching = {matching}
matching_look_up = "{matching_look_up}"

[scim]
base_url = "{base_url}"
token_env = "SCIM_TOKEN"
timeout_secs = 60

[host]
claim_lease_secs = 300
{database}{server_in_flight}
[[mapping]]
target = "userName"
source = "name"
required = true

[[mapping]]
target = 'emails[type eq "work"].value'
source = "mail"

[[mapping]]
target = "name.givenName"
source = "first"

[[mapping]]
target = "name.familyName"
source = "last"

[[mapping]]
target = "active"
source = "@active"

[[mapping]]
target = "externalId"
source = "@id"
"#
        ),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

// ---------------------------------------------------------------------------------------
// CPU accounting
// ---------------------------------------------------------------------------------------

/// `utime + stime` of a process, in seconds; `None` once it is gone.
fn cpu_seconds(pid: u32) -> Option<f64> {
    crate::proc_cpu::process_cpu_seconds(&pid.to_string())
}

/// The pids of the PostgreSQL backends serving `database` (their command line is
/// `postgres: USER DATABASE HOST(PORT) STATE`).
fn backends_of(database: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.starts_with("postgres: ")
                    && c.split_whitespace().nth(2).is_some_and(|d| d == database)
            })
        })
        .collect()
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// CPU of the parts of one phase, sampled at its start and at its end.
struct CpuWatch {
    started: Instant,
    server: u32,
    workers: Vec<u32>,
    database: Option<String>,
    at_start: HashMap<u32, f64>,
    machine_at_start: Option<(f64, f64)>,
}

/// A phase's CPU, each as a share of one core over the phase (1.0 = one core busy).
#[derive(Debug, Default, Clone, Copy)]
struct CpuShares {
    server: f64,
    workers: f64,
    busiest_worker: f64,
    database: f64,
    /// The machine's busy share of all its cores.
    machine: f64,
}

impl CpuWatch {
    fn start(server: u32, workers: Vec<u32>, database: Option<String>) -> CpuWatch {
        let mut watch = CpuWatch {
            started: Instant::now(),
            server,
            workers,
            database,
            at_start: HashMap::new(),
            machine_at_start: crate::proc_cpu::machine_cpu_seconds(),
        };
        for pid in watch.pids() {
            if let Some(s) = cpu_seconds(pid) {
                watch.at_start.insert(pid, s);
            }
        }
        watch
    }

    fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.server];
        pids.extend(&self.workers);
        if let Some(d) = &self.database {
            pids.extend(backends_of(d));
        }
        pids
    }

    fn used(&self, pid: u32) -> f64 {
        let now = cpu_seconds(pid).unwrap_or(0.0);
        (now - self.at_start.get(&pid).copied().unwrap_or(0.0)).max(0.0)
    }

    /// The shares up to now (call before the processes are stopped).
    fn finish(&self) -> CpuShares {
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        let per_worker: Vec<f64> = self.workers.iter().map(|p| self.used(*p)).collect();
        let database: f64 = self.database.as_deref().map_or(0.0, |d| {
            backends_of(d).into_iter().map(|p| self.used(p)).sum()
        });
        let machine = match (
            self.machine_at_start,
            crate::proc_cpu::machine_cpu_seconds(),
        ) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => (b1 - b0) / (t1 - t0),
            _ => f64::NAN,
        };
        CpuShares {
            server: self.used(self.server) / wall,
            workers: per_worker.iter().sum::<f64>() / wall,
            busiest_worker: per_worker.iter().copied().fold(0.0, f64::max) / wall,
            database: database / wall,
            machine,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The server and its request log
// ---------------------------------------------------------------------------------------

/// A fresh scim2-server whose request log goes to a file of its own.
struct Peer {
    process: PeerProcess,
    base: String,
    token: String,
    log: PathBuf,
}

impl Peer {
    fn start(dir: &Path, label: &str) -> Result<Peer> {
        let log = dir.join(format!("scim2-server-{label}.log"));
        let bin = match std::env::var_os("SCIM2_SERVER_BIN") {
            Some(bin) => PathBuf::from(bin),
            None => {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/peers/venv/bin/scim2-server")
            }
        };
        if !bin.is_file() {
            bail!(
                "{} not found (run scripts/install-peers, or set SCIM2_SERVER_BIN)",
                bin.display()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("cannot pick a free port")?
            .port();
        let token = host_example::serve::generate_token();
        // Its access log (one line a request, on stderr) is how the requests are counted.
        let child = Command::new(&bin)
            .args(["--hostname", "127.0.0.1", "--port", &port.to_string()])
            .args(["--bearer-token", &token])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut peer = Peer {
            process: PeerProcess(child),
            base: format!("http://127.0.0.1:{port}/v2"),
            token,
            log,
        };
        let client = Client::new(&peer.token);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = peer.process.0.try_wait()? {
                bail!(
                    "scim2-server exited during startup ({status}):\n{}",
                    tail(&peer.log)
                );
            }
            if let Ok((200, _)) = client.get(&format!("{}/ServiceProviderConfig", peer.base)) {
                return Ok(peer);
            }
            if Instant::now() >= deadline {
                bail!("scim2-server did not answer within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> u32 {
        self.process.0.id()
    }

    /// The users it holds (`totalResults`).
    fn user_count(&self) -> Result<u64> {
        let client = Client::new(&self.token);
        let (status, text) = client.get(&format!("{}/Users?count=1", self.base))?;
        let page = expect(status, 200, &text, "GET /Users?count=1")?;
        page["totalResults"]
            .as_u64()
            .ok_or_else(|| anyhow!("GET /Users: no totalResults"))
    }

    /// (filtered GETs, `/Bulk` POSTs, other requests) in its request log.
    fn requests(&self) -> (u64, u64, u64) {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let (mut gets, mut bulks, mut other) = (0, 0, 0);
        for line in text.lines() {
            // wsgiref's access log: `127.0.0.1 - - [date] "GET /v2/Users?filter=… HTTP/1.1" 200 …`
            let Some(request) = line.split('"').nth(1) else {
                continue;
            };
            let mut parts = request.split_whitespace();
            let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
                continue;
            };
            match method {
                "GET" if target.contains("filter=") => gets += 1,
                "POST" if target.ends_with("/Bulk") => bulks += 1,
                "GET" | "POST" | "PUT" | "PATCH" | "DELETE" => other += 1,
                _ => {}
            }
        }
        (gets, bulks, other)
    }
}

// ---------------------------------------------------------------------------------------
// Progress: the rate over the first and the last stretch
// ---------------------------------------------------------------------------------------

/// Users done at instants (seconds since the start), in order.
#[derive(Default)]
struct Progress(Vec<(f64, usize)>);

impl Progress {
    /// Users/s over the first `window` users and over the last `window` users.
    fn first_and_last(&self, total: usize, window: usize) -> (f64, f64) {
        let at = |done: usize| {
            self.0
                .iter()
                .find(|(_, d)| *d >= done)
                .map(|(t, _)| *t)
                .unwrap_or(f64::NAN)
        };
        let first = window as f64 / at(window);
        let last = window as f64 / (at(total) - at(total - window));
        (first, last)
    }
}

fn window_of(users: usize) -> usize {
    (users / 10).clamp(1, 10_000)
}

// ---------------------------------------------------------------------------------------
// 1 and 2: plain clients
// ---------------------------------------------------------------------------------------

/// One measured phase.
struct Row {
    label: String,
    /// The worker processes (0 for plain clients).
    workers: usize,
    seconds: f64,
    users: usize,
    first: f64,
    last: f64,
    cpu: CpuShares,
    requests: (u64, u64, u64),
    load: String,
    /// Seconds from the start to the first user done (the fixed cost before the first
    /// write lands: start-up, the listing, the first plan); measured for the shared
    /// reconcile only.
    first_done: Option<f64>,
}

impl Row {
    fn rate(&self) -> f64 {
        self.users as f64 / self.seconds
    }
}

fn bulk_body(first: usize, count: usize) -> String {
    let operations: Vec<Value> = (first..first + count)
        .map(|i| {
            json!({
                "method": "POST",
                "path": "/Users",
                "bulkId": format!("u{i}"),
                "data": scim_user(i, &(i + 1).to_string())
            })
        })
        .collect();
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": operations
    })
    .to_string()
}

/// Sends bulk request `chunk` and checks that every create in it succeeded.
fn send_bulk(client: &Client, base: &str, chunk: usize, users: usize) -> Result<usize> {
    let first = chunk * PER_REQUEST;
    let count = PER_REQUEST.min(users - first);
    let (status, text) = client.post(&format!("{base}/Bulk"), &bulk_body(first, count))?;
    let answer = expect(status, 200, &text, "POST /Bulk")?;
    let created = answer["Operations"].as_array().map_or(0, |ops| {
        ops.iter().filter(|o| o["status"] == json!("201")).count()
    });
    if created != count {
        bail!(
            "a bulk request created {created} of {count} users: {}",
            text.chars().take(300).collect::<String>()
        );
    }
    Ok(count)
}

/// The look-ups a worker makes for a new user before its write, one per matching
/// attribute (the default: userName, externalId, the work email); each must find nobody.
fn look_up(client: &Client, base: &str, i: usize, matching: &[String]) -> Result<()> {
    let name = format!("user{i:06}");
    for attribute in matching {
        let value = match attribute.as_str() {
            "userName" => name.clone(),
            "externalId" => (i + 1).to_string(),
            _ => format!("{name}@example.org"),
        };
        let filter = format!("{attribute} eq \"{value}\"");
        let url = format!(
            "{base}/Users?filter={}",
            url::form_urlencoded::byte_serialize(filter.as_bytes()).collect::<String>()
        );
        let (status, text) = client.get(&url)?;
        let page = expect(status, 200, &text, "GET /Users?filter=")?;
        if page["totalResults"].as_u64() != Some(0) {
            bail!("{filter}: a user that should not exist yet");
        }
    }
    Ok(())
}

/// `users` creates in `/Bulk` requests of [`PER_REQUEST`] from `connections` plain clients
/// into a fresh scim2-server; with `look_ups`, each user's three look-ups first.
fn plain_clients(
    dir: &Path,
    users: usize,
    connections: usize,
    look_ups: Option<&[String]>,
) -> Result<Row> {
    let label = if let Some(matching) = look_ups {
        format!(
            "{} look-up{} + /Bulk, {connections} conn.",
            matching.len(),
            if matching.len() == 1 { "" } else { "s" }
        )
    } else {
        format!("raw /Bulk, {connections} conn.")
    };
    let peer = Peer::start(dir, &label.replace([' ', ',', '/', '+', '.'], "_"))?;
    let chunks = users.div_ceil(PER_REQUEST);
    let next = AtomicUsize::new(0);
    // Each request's (chunk, users, seconds from its first look-up to its answer).
    let timings = Mutex::new(Vec::with_capacity(chunks));
    let load = loadavg();
    let watch = CpuWatch::start(peer.pid(), Vec::new(), None);
    let started = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = (0..connections)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    let client = Client::new(&peer.token);
                    loop {
                        let chunk = next.fetch_add(1, Ordering::Relaxed);
                        if chunk >= chunks {
                            return Ok(());
                        }
                        let chunk_started = Instant::now();
                        if let Some(matching) = look_ups {
                            let first = chunk * PER_REQUEST;
                            for i in first..(first + PER_REQUEST).min(users) {
                                look_up(&client, &peer.base, i, matching)?;
                            }
                        }
                        let n = send_bulk(&client, &peer.base, chunk, users)?;
                        let took = chunk_started.elapsed().as_secs_f64();
                        if let Ok(mut t) = timings.lock() {
                            t.push((chunk, n, took));
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow!("a client thread panicked"))??;
        }
        Ok(())
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = watch.finish();
    let stored = peer.user_count()?;
    if stored != users as u64 {
        bail!("{label}: the server holds {stored} users, {users} were sent");
    }
    let mut timings = timings
        .into_inner()
        .map_err(|_| anyhow!("timings poisoned"))?;
    timings.sort_by_key(|(chunk, _, _)| *chunk);
    // The rate over a stretch of requests, each connection sending one after another.
    let rate = |part: &[(usize, usize, f64)]| {
        let users: usize = part.iter().map(|(_, n, _)| n).sum();
        let seconds: f64 = part.iter().map(|(_, _, s)| s).sum();
        connections as f64 * users as f64 / seconds
    };
    let stretch = window_of(users).div_ceil(PER_REQUEST).min(timings.len());
    let first = rate(&timings[..stretch]);
    let last = rate(&timings[timings.len() - stretch..]);
    Ok(Row {
        label,
        workers: 0,
        seconds,
        users,
        first,
        last,
        cpu,
        requests: peer.requests(),
        load,
        first_done: None,
    })
}

// ---------------------------------------------------------------------------------------
// 3: the workers
// ---------------------------------------------------------------------------------------

/// A worker process, killed and reaped on drop.
struct WorkerProcess(Child);

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `count` processes `bin --config config <args>` on the shared database
/// (`database_url`, named `database` on its server) with `peer`'s SCIM token; process `i`
/// writes its stdout and stderr to `<log_prefix>-<i>.log`. Returns the processes (killed on
/// drop), their logs, and the CPU watch over them, `peer` and the database's backends.
#[allow(clippy::too_many_arguments)]
fn spawn_daemons(
    bin: &Path,
    config: &Path,
    args: &[&str],
    peer: &Peer,
    database_url: &str,
    database: String,
    log_prefix: &Path,
    count: usize,
) -> Result<(Vec<WorkerProcess>, Vec<PathBuf>, CpuWatch)> {
    let mut processes = Vec::with_capacity(count);
    let mut logs = Vec::with_capacity(count);
    for i in 0..count {
        let log = PathBuf::from(format!("{}-{i}.log", log_prefix.display()));
        let file = std::fs::File::create(&log)?;
        let child = Command::new(bin)
            .arg("--config")
            .arg(config)
            .args(args)
            .env("SCIM_TOKEN", &peer.token)
            // The URL holds the password: the environment keeps it out of `ps`.
            .env("SCIM_PROVISIONER_DATABASE", database_url)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        processes.push(WorkerProcess(child));
        logs.push(log);
    }
    let watch = CpuWatch::start(
        peer.pid(),
        processes.iter().map(|p| p.0.id()).collect(),
        Some(database),
    );
    Ok((processes, logs, watch))
}

/// Calls `step` every 200 ms until it answers `true`. Fails when `step` does, when one of
/// the processes exits (with its log's tail), or when [`DRAIN_DEADLINE`] has passed since
/// `started` (the error is `<label>: <not_done> within <deadline>`).
fn poll_while_running(
    label: &str,
    not_done: &str,
    processes: &mut [WorkerProcess],
    logs: &[PathBuf],
    started: Instant,
    mut step: impl FnMut() -> Result<bool>,
) -> Result<()> {
    while !step()? {
        for (p, log) in processes.iter_mut().zip(logs) {
            if let Some(status) = p.0.try_wait()? {
                bail!("{label}: a process exited ({status}):\n{}", tail(log));
            }
        }
        if started.elapsed() > DRAIN_DEADLINE {
            bail!("{label}: {not_done} within {DRAIN_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn host_example_bin() -> Result<PathBuf> {
    let bench = std::env::current_exe().context("the bench's own path")?;
    let bin = bench.with_file_name("host-example");
    if !bin.is_file() {
        bail!(
            "{} is missing: build it beside the bench (cargo build --release -p host-example --bin host-example --bin bench)",
            bin.display()
        );
    }
    Ok(bin)
}

/// Where the workers' store lives: a database of the bench's own PostgreSQL, or the
/// database given.
enum Databases {
    #[cfg(feature = "db-test-support")]
    Own(host_example::database::test_support::TestPostgres),
    Given(String),
}

impl Databases {
    fn open(given: Option<&str>) -> Result<Databases> {
        // `throwaway`, as `--claims-database` takes it, is the default spelled out.
        if let Some(url) = given.filter(|g| *g != "throwaway") {
            if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
                bail!("--first-sync-database must be a postgres:// URL");
            }
            return Ok(Databases::Given(url.to_string()));
        }
        #[cfg(feature = "db-test-support")]
        {
            let pg = host_example::database::test_support::TestPostgres::start()
                .context("starting a throwaway PostgreSQL")?;
            Ok(Databases::Own(pg))
        }
        #[cfg(not(feature = "db-test-support"))]
        bail!(
            "pass --first-sync-database postgres://…, or build the bench with --features db-test-support to let it start its own PostgreSQL"
        )
    }

    /// An empty store for the run with `workers` workers: its URL and database name.
    // `workers` names the database only where the bench creates it.
    #[cfg_attr(not(feature = "db-test-support"), allow(unused_variables))]
    fn fresh(&self, workers: usize) -> Result<(String, String)> {
        match self {
            #[cfg(feature = "db-test-support")]
            Databases::Own(pg) => {
                let name = format!("first_sync_{workers}_{}", host_example::clock::now_ms());
                Ok((pg.create_database(&name)?, name))
            }
            Databases::Given(url) => {
                let parsed = DatabaseUrl::parse(url, Path::new("."))?;
                // Through the store first, so the schema exists.
                drop(Store::open_url(&parsed, Duration::from_secs(30))?);
                let mut db = Db::connect(&parsed)?;
                for table in ["outbox", "links", "users", "provisioning_log"] {
                    db.execute(&format!("DELETE FROM {table}"), &[])?;
                }
                // The shared reconcile's tables exist once a daemon has run on it: its
                // runs go, and the next is due at once.
                let reconciled = db
                    .query_opt(
                        "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'reconcile_schedule' AND table_schema = current_schema()",
                        &[],
                    )?
                    .map_or(Ok(0), |r| r.int(0))?;
                if reconciled > 0 {
                    for table in [
                        "reconcile_runs",
                        "reconcile_partitions",
                        "reconcile_listing",
                    ] {
                        db.execute(&format!("DELETE FROM {table}"), &[])?;
                    }
                    db.execute(
                        "UPDATE reconcile_schedule SET next_run_ms = 0, next_verify_ms = 0, run_id = NULL, last_run_id = 0",
                        &[],
                    )?;
                }
                let name = url
                    .rsplit('/')
                    .next()
                    .and_then(|n| n.split('?').next())
                    .unwrap_or_default()
                    .to_string();
                Ok((url.clone(), name))
            }
        }
    }
}

/// The outbox's (rows, parked rows).
fn outbox_rows(db: &mut Db) -> Result<(i64, i64)> {
    let row = db
        .query_opt(
            "SELECT COUNT(*), COUNT(CASE WHEN parked <> 0 THEN 1 END) FROM outbox",
            &[],
        )?
        .ok_or_else(|| anyhow!("no count"))?;
    Ok((row.int(0)?, row.int(1)?))
}

/// Adds `users` users to the store, each with its `created` event; returns their store
/// ids and the seconds it took.
fn enqueue(url: &DatabaseUrl, users: usize) -> Result<f64> {
    let started = Instant::now();
    let mut store = Store::open_url(url, Duration::from_secs(30))?;
    // Transactions of 1,000 users: a site's hook adds one at a time, an import in bulk.
    for start in (0..users).step_by(1_000) {
        store.batch(|s| {
            for i in start..(start + 1_000).min(users) {
                s.add_user(record(i), true)?;
            }
            Ok(())
        })?;
    }
    Ok(started.elapsed().as_secs_f64())
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// A first sync of `users` users by `workers` daemon processes.
fn workers_run(
    dir: &Path,
    databases: &Databases,
    users: usize,
    workers: usize,
    matching: &[String],
    matching_look_up: &str,
    server_in_flight: Option<u32>,
) -> Result<(Row, f64)> {
    let bin = host_example_bin()?;
    let (url_text, database) = databases.fresh(workers)?;
    let url = DatabaseUrl::parse(&url_text, Path::new("."))?;
    let enqueue_seconds = enqueue(&url, users)?;
    let mut db = Db::connect(&url)?;
    if outbox_rows(&mut db)? != (users as i64, 0) {
        bail!("the outbox does not hold {users} created events");
    }
    let label = format!("{workers} worker{}", if workers == 1 { "" } else { "s" });
    let peer = Peer::start(dir, &format!("{workers}_workers"))?;
    let config = worker_config(
        dir,
        &peer.base,
        None,
        matching,
        matching_look_up,
        server_in_flight,
    )?;
    let load = loadavg();
    let started = Instant::now();
    let (mut processes, logs, watch) = spawn_daemons(
        &bin,
        &config,
        &["daemon", "--deliver-only"],
        &peer,
        &url_text,
        database,
        &dir.join(format!("worker-{workers}")),
        workers,
    )?;
    let mut progress = Progress::default();
    let drained = "the outbox did not drain";
    poll_while_running(&label, drained, &mut processes, &logs, started, || {
        let (rows, parked) = outbox_rows(&mut db)?;
        let t = started.elapsed().as_secs_f64();
        progress
            .0
            .push((t, users - (rows.max(0) as usize).min(users)));
        if parked > 0 {
            bail!(
                "{label}: {parked} events parked; worker 0:\n{}",
                tail(&logs[0])
            );
        }
        Ok(rows == 0)
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = watch.finish();
    drop(processes);
    let stored = peer.user_count()?;
    if stored != users as u64 {
        bail!("{label}: the server holds {stored} users, {users} were queued");
    }
    let (first, last) = progress.first_and_last(users, window_of(users));
    Ok((
        Row {
            label,
            workers,
            seconds,
            users,
            first,
            last,
            cpu,
            requests: peer.requests(),
            load,
            first_done: None,
        },
        enqueue_seconds,
    ))
}

/// For comparison: the same users (imported, no events) synced by one `host-example sync`
/// process, which lists the remote users once instead of looking each one up, and sends
/// `/Bulk` requests of 100 from `[host] concurrency` (8) component instances.
fn sync_run(
    dir: &Path,
    databases: &Databases,
    users: usize,
    matching: &[String],
    matching_look_up: &str,
    server_in_flight: Option<u32>,
) -> Result<Row> {
    let bin = host_example_bin()?;
    let (url_text, database) = databases.fresh(0)?;
    let url = DatabaseUrl::parse(&url_text, Path::new("."))?;
    let mut store = Store::open_url(&url, Duration::from_secs(30))?;
    store.import_users((0..users).map(|i| Ok(record(i))))?;
    drop(store);
    let label = "one `sync` process".to_string();
    let peer = Peer::start(dir, "sync")?;
    let config = worker_config(
        dir,
        &peer.base,
        Some(&url_text),
        matching,
        matching_look_up,
        server_in_flight,
    )?;
    let log = dir.join("sync.log");
    let load = loadavg();
    let started = Instant::now();
    let child = Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .arg("sync")
        .env("SCIM_TOKEN", &peer.token)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(dir.join("sync.err"))?)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut process = WorkerProcess(child);
    let pid = process.0.id();
    let watch = CpuWatch::start(peer.pid(), Vec::new(), Some(database));
    // Its CPU is read while it runs: once reaped, /proc forgets it.
    let mut sync_cpu = 0.0;
    let mut shares = CpuShares::default();
    let status = loop {
        if let Some(c) = cpu_seconds(pid) {
            sync_cpu = c;
            shares = watch.finish();
        }
        if let Some(status) = process.0.try_wait()? {
            break status;
        }
        if started.elapsed() > DRAIN_DEADLINE {
            bail!("{label}: not done within {DRAIN_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!(
            "{label} failed ({status}):\n{}",
            tail(&dir.join("sync.err"))
        );
    }
    shares.workers = sync_cpu / seconds;
    shares.busiest_worker = shares.workers;
    let stored = peer.user_count()?;
    if stored != users as u64 {
        bail!("{label}: the server holds {stored} users, {users} were imported");
    }
    Ok(Row {
        label,
        workers: 1,
        seconds,
        users,
        first: f64::NAN,
        last: f64::NAN,
        cpu: shares,
        requests: peer.requests(),
        load,
        first_done: None,
    })
}

/// Partitions a reconcile run is split into, whatever the number of daemons (the
/// daemon's default), so that every row does the same work in the same pieces.
const RECONCILE_PARTITIONS: u32 = 16;

/// The first sync as a site runs it with many daemons: the users imported without events
/// (as by `import`, or a site's users before the provisioner was installed), then
/// `daemons` full `host-example daemon` processes (no `--deliver-only`) share the
/// scheduled reconcile ([`host_example::reconcile_shared`]): the remote users are listed
/// once for the run and shared through the database, the run is split into
/// [`RECONCILE_PARTITIONS`] ranges of users that the daemons claim in turn, and matching is
/// local (no per-user look-up). Timed from the daemons' start to the run's `done` in
/// `reconcile_runs`; then every user must be linked and the server must hold USERS users.
/// The schedule is an hour (the first run is due at once), so no second run starts while
/// the first is read back.
fn reconcile_run(
    dir: &Path,
    databases: &Databases,
    users: usize,
    daemons: usize,
    matching: &[String],
    matching_look_up: &str,
    server_in_flight: Option<u32>,
) -> Result<Row> {
    let bin = host_example_bin()?;
    let (url_text, database) = databases.fresh(100 + daemons)?;
    let url = DatabaseUrl::parse(&url_text, Path::new("."))?;
    let mut store = Store::open_url(&url, Duration::from_secs(30))?;
    store.import_users((0..users).map(|i| Ok(record(i))))?;
    drop(store);
    let mut db = Db::connect(&url)?;
    if outbox_rows(&mut db)? != (0, 0) {
        bail!("the import queued outbox events");
    }
    let label = format!(
        "{daemons} daemon{}, shared reconcile",
        if daemons == 1 { "" } else { "s" }
    );
    let peer = Peer::start(dir, &format!("{daemons}_reconcile"))?;
    let config = worker_config(
        dir,
        &peer.base,
        None,
        matching,
        matching_look_up,
        server_in_flight,
    )?;
    let load = loadavg();
    let started = Instant::now();
    let partitions = RECONCILE_PARTITIONS.to_string();
    let (mut processes, logs, watch) = spawn_daemons(
        &bin,
        &config,
        &[
            "daemon",
            "--every",
            "1h",
            "--verify-every",
            "30d",
            "--partitions",
            &partitions,
        ],
        &peer,
        &url_text,
        database,
        &dir.join(format!("reconcile-{daemons}")),
        daemons,
    )?;
    // Progress is the users linked so far (a partition links its users as their writes
    // are answered).
    let mut progress = Progress::default();
    let done = "the run was not done";
    poll_while_running(&label, done, &mut processes, &logs, started, || {
        let linked = db
            .query_opt("SELECT COUNT(*) FROM links", &[])?
            .map_or(Ok(0), |r| r.int(0))?;
        // The run's state as `status` shows it (none before a daemon made the tables).
        let runs = host_example::reconcile_shared::recent_runs(&mut db, 4)?;
        let t = started.elapsed().as_secs_f64();
        progress.0.push((t, (linked.max(0) as usize).min(users)));
        if runs.iter().any(|r| r.state == "done") {
            return Ok(true);
        }
        if let Some(r) = runs
            .iter()
            .find(|r| r.state == "refused" || r.state == "expired")
        {
            bail!("{label}: the run ended {r}");
        }
        Ok(false)
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = watch.finish();
    drop(processes);
    let linked = db
        .query_opt("SELECT COUNT(*) FROM links", &[])?
        .map_or(Ok(0), |r| r.int(0))?;
    if linked != users as i64 {
        bail!(
            "{label}: {linked} of {users} users linked when the run was done; daemon 0:\n{}",
            tail(&logs[0])
        );
    }
    let stored = peer.user_count()?;
    if stored != users as u64 {
        bail!("{label}: the server holds {stored} users, {users} were imported");
    }
    let (first, last) = progress.first_and_last(users, window_of(users));
    let first_done = progress.0.iter().find(|(_, d)| *d > 0).map(|(t, _)| *t);
    Ok(Row {
        label,
        workers: daemons,
        seconds,
        users,
        first,
        last,
        cpu,
        requests: peer.requests(),
        load,
        first_done,
    })
}

// ---------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------

fn percent(share: f64) -> String {
    if share.is_nan() {
        "-".into()
    } else {
        // `+ 0.0` turns a -0.0 (nothing measured) into 0.
        format!("{:.0}%", share * 100.0 + 0.0)
    }
}

fn users_per_second(rate: f64) -> String {
    if rate.is_finite() {
        grouped(rate as u64)
    } else {
        "-".into()
    }
}

fn print_header() {
    println!(
        "| run | users/s | of ceiling | seconds | first / last 10% users/s | CPU server | server CPU ms a user | CPU workers (busiest) | CPU PostgreSQL | machine busy | filtered GETs / Bulk / other | load avg at start |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
}

fn print_row(row: &Row, ceiling: Option<f64>) {
    let c = row.cpu;
    println!(
        "| {} | {} | {} | {:.1} | {} / {} | {} | {:.2} | {} | {} | {} | {} / {} / {} | {} |",
        row.label,
        grouped(row.rate() as u64),
        ceiling.map_or("-".into(), |c| percent(row.rate() / c)),
        row.seconds,
        users_per_second(row.first),
        users_per_second(row.last),
        percent(c.server),
        // The server's CPU time per user (its share of a core over the phase): what the
        // same users cost it, whatever else the machine did meanwhile.
        c.server * row.seconds * 1000.0 / row.users.max(1) as f64,
        if row.workers > 0 {
            format!("{} ({})", percent(c.workers), percent(c.busiest_worker))
        } else {
            "-".into()
        },
        if row.workers > 0 {
            percent(c.database)
        } else {
            "-".into()
        },
        percent(c.machine),
        grouped(row.requests.0),
        grouped(row.requests.1),
        grouped(row.requests.2),
        row.load,
    );
    let _ = std::io::stdout().flush();
}

/// Runs the bench (see the module documentation) and prints its table.
pub fn run(options: &Options<'_>) -> Result<()> {
    let users = options.users;
    if users < PER_REQUEST {
        bail!("--first-sync-workers: at least {PER_REQUEST} users");
    }
    if let Some(other) = options
        .matching
        .iter()
        .find(|m| !DEFAULT_MATCHING.contains(&m.as_str()))
    {
        bail!(
            "--first-sync-matching: {other:?} is not one of {}",
            DEFAULT_MATCHING.join(", ")
        );
    }
    if options.matching.is_empty() {
        // The policy refuses it: duplicates could be created.
        bail!("--first-sync-matching: at least one attribute");
    }
    if options.worker_counts.is_empty() || options.worker_counts.contains(&0) {
        bail!("--first-sync-counts: one or more positive worker counts");
    }
    if options.phases.is_empty() {
        bail!(
            "--first-sync-phases: one or more of {}",
            Phase::ALL.map(Phase::name).join(", ")
        );
    }
    if options.phases.contains(&Phase::Ceiling)
        && (options.ceiling_connections.is_empty() || options.ceiling_connections.contains(&0))
    {
        bail!("--first-sync-ceiling-connections: one or more positive connection counts");
    }
    let bin = host_example_bin()?;
    let dir = std::env::temp_dir().join(format!(
        "scim-bench-first-sync-{}-{}",
        std::process::id(),
        host_example::clock::now_ms()
    ));
    std::fs::create_dir_all(&dir)?;
    let result = measure(&dir, &bin, options);
    // The daemons' logs (each event timed, to the second) are kept when asked for.
    match &result {
        Ok(()) if std::env::var_os("FIRST_SYNC_KEEP_LOGS").is_none() => {
            let _ = std::fs::remove_dir_all(&dir);
        }
        _ => println!("(logs kept in {})", dir.display()),
    }
    result
}

fn measure(dir: &Path, bin: &Path, options: &Options<'_>) -> Result<()> {
    let users = options.users;
    let wants = |phase: Phase| options.phases.contains(&phase);
    // First, so that a bench built without a way to its database stops before the ceiling.
    let databases = if [Phase::Outbox, Phase::Reconcile, Phase::Sync]
        .iter()
        .any(|p| wants(*p))
    {
        Some(Databases::open(options.database)?)
    } else {
        None
    };
    let databases = || {
        databases
            .as_ref()
            .ok_or_else(|| anyhow!("no database opened"))
    };
    println!(
        "\n## A first sync of {} users into scim2-server: the /Bulk ceiling, then workers draining the outbox and daemons sharing the reconcile on PostgreSQL\n",
        grouped(users as u64)
    );
    println!(
        "{} cores; workers: {} daemon --deliver-only; daemons: the same, daemon --partitions {RECONCILE_PARTITIONS}; {PER_REQUEST} creates a /Bulk request; CPU as a share of one core; \"machine busy\" of all cores; matching {:?}, matching_look_up {}; server_in_flight {}; phases: {}\n",
        cores(),
        bin.display(),
        options.matching,
        options.look_up,
        options
            .server_in_flight
            .map_or("not set".to_string(), |n| n.to_string()),
        options
            .phases
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    print_header();
    let mut ceiling: Option<(f64, usize)> = None;
    if wants(Phase::Ceiling) {
        for &connections in options.ceiling_connections {
            let row = plain_clients(dir, users, connections, None)?;
            print_row(&row, None);
            if ceiling.is_none_or(|(c, _)| row.rate() > c) {
                ceiling = Some((row.rate(), connections));
            }
        }
    }
    let ceiling_rate = ceiling.map(|(rate, _)| rate);
    let mix = if wants(Phase::Lookups) {
        let mix = plain_clients(dir, users, MIX_CONNECTIONS, Some(options.matching))?;
        print_row(&mix, ceiling_rate);
        Some(mix)
    } else {
        None
    };

    let mut rows = Vec::new();
    if wants(Phase::Outbox) {
        for &workers in options.worker_counts {
            let (row, enqueue_seconds) = workers_run(
                dir,
                databases()?,
                users,
                workers,
                options.matching,
                options.look_up,
                options.server_in_flight,
            )?;
            print_row(&row, ceiling_rate);
            rows.push((row, enqueue_seconds));
        }
    }

    let mut reconciles = Vec::new();
    if wants(Phase::Reconcile) {
        for &daemons in options.worker_counts {
            let row = reconcile_run(
                dir,
                databases()?,
                users,
                daemons,
                options.matching,
                options.look_up,
                options.server_in_flight,
            )?;
            print_row(&row, ceiling_rate);
            reconciles.push(row);
        }
    }

    let sync = if wants(Phase::Sync) {
        let sync = sync_run(
            dir,
            databases()?,
            users,
            options.matching,
            options.look_up,
            options.server_in_flight,
        )?;
        print_row(&sync, ceiling_rate);
        Some(sync)
    } else {
        None
    };

    // "x% of the ceiling", or nothing when the ceiling was not measured in this run.
    let of_ceiling = |rate: f64| {
        ceiling_rate.map_or(String::new(), |c| {
            format!(" = {} of the /Bulk ceiling", percent(rate / c))
        })
    };
    println!();
    if let Some((rate, connections)) = ceiling {
        println!(
            "ceiling: {} users/s (raw /Bulk, {connections} connections)",
            grouped(rate as u64)
        );
    }
    if let Some(mix) = &mix {
        println!(
            "the look-up mix ({} look-ups a user, then /Bulk): {} users/s{}",
            options.matching.len(),
            grouped(mix.rate() as u64),
            of_ceiling(mix.rate())
        );
    }
    for (row, enqueue_seconds) in &rows {
        println!(
            "{}: {} users/s{}{}; {:.1} s (the {} users and their events were added to the store in {:.1} s before)",
            row.label,
            grouped(row.rate() as u64),
            of_ceiling(row.rate()),
            mix.as_ref().map_or(String::new(), |m| format!(
                ", {} of the look-up mix",
                percent(row.rate() / m.rate())
            )),
            row.seconds,
            grouped(users as u64),
            enqueue_seconds
        );
    }
    for row in &reconciles {
        println!(
            "{}: {} users/s{}; {:.1} s, the first user linked after {:.1} s (the remote users listed once, no per-user look-up)",
            row.label,
            grouped(row.rate() as u64),
            of_ceiling(row.rate()),
            row.seconds,
            row.first_done.unwrap_or(f64::NAN)
        );
    }
    if let Some(sync) = &sync {
        println!(
            "{}: {} users/s{}; {:.1} s",
            sync.label,
            grouped(sync.rate() as u64),
            of_ceiling(sync.rate()),
            sync.seconds
        );
    }
    let Some(ceiling_rate) = ceiling_rate else {
        return Ok(());
    };
    let most_workers = rows
        .iter()
        .map(|(row, _)| row)
        .max_by_key(|row| row.workers);
    let most_daemons = reconciles.iter().max_by_key(|row| row.workers);
    for most in most_workers.into_iter().chain(most_daemons) {
        println!(
            "goal, {} reach ≥ 90% of the ceiling: {}",
            most.label,
            if most.rate() >= 0.9 * ceiling_rate {
                "met"
            } else {
                "not met"
            }
        );
    }
    Ok(())
}
