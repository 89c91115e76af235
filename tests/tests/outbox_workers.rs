//! Many `host-example daemon` workers on one PostgreSQL or MariaDB outbox (issue 30).
//!
//! Each test starts its own database server (Debian's `postgresql` or `mariadb-server`, as
//! the test's process, on a free loopback port, data in a temp dir), scim2-server, and a
//! recording proxy in front of it. The test queues every user's events itself through the
//! library's store (a `created` then `updated` events, in rounds, so users' events
//! interleave in the queue; 500 events per transaction); each event carries the user's
//! sequence number in the field `seq`, mapped to SCIM `title`. Then 4 `daemon
//! --deliver-only` processes drain the outbox into scim2-server through the proxy.
//!
//! Checked afterwards:
//! - the outbox is empty, nothing parked;
//! - the server holds every user exactly once (by `externalId`, read back), in their final
//!   state (`title` = the last sequence number);
//! - per user, the sequence numbers the server was sent (every write the proxy forwarded,
//!   `/Bulk` operations included, in arrival order) never go down, and every number was
//!   sent. Without faults each was sent exactly once.
//!
//! The runs, all in CI (`cargo test -p scim-provisioner-tests --test outbox_workers`):
//! - **The full size** (`full_size_*`): 4 workers × 10,000 events (2,500 users × 4)
//!   on each database. They match new users by `userName` and `externalId`, which
//!   scim2-server looks up from an index; the default matching's work-email filter makes it
//!   walk every stored user, which at this size cost 150 of the run's 180 s (see
//!   [`Matching`]). Their names sort first, so the two start together and the smaller
//!   runs fill in after them.
//! - **The fault runs**, at 1,000 events (250 users × 4) with the default matching: they
//!   kill -9 one worker while it holds claimed events, and stop the database for a few
//!   seconds mid-run. A write the killed worker sent but had not recorded is sent again
//!   after its lease (at least once on the wire): the check then allows a number to
//!   repeat, never to go back, and the server must still hold each user once.
//! - **The slow runs** give the workers a 1 s lease against a server that answers each
//!   write 2.5 s late: each worker's lease keeper must extend its lease while it delivers,
//!   or another worker takes the batch over and sends it again (each change must be sent
//!   once).
//!
//! Where the time goes: each run prints (with `-- --nocapture`) when each phase ended, the
//! requests the server was sent, and the CPU the workers and scim2-server used. A
//! full-size run is bound by scim2-server, which serves one request at a time: about 27 s
//! of its CPU for the 5,000 look-ups and the 100 `/Bulk` requests of 100, against 5 s for
//! the 4 (debug) workers together. One run, with its figures:
//! `cargo test -p scim-provisioner-tests --test outbox_workers -- --nocapture postgres_ten`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use host_example::database::test_support::{TestDatabase, TestDatabaseKind as Kind, TestPostgres};
use host_example::database::{DatabaseUrl, Db};
use host_example::store::{Store, UserRecord};
use host_example::types::UserEvent;
use scim_provisioner_tests::daemons::{
    Daemon as Worker, host_example_bin, scim_users_with_attributes, tail, wait_until,
    write_config_with_policy,
};
use scim_provisioner_tests::peers::{Peer, scim2_server};
use scim_provisioner_tests::recording_proxy::RecordingProxy;
use scim_provisioner_tests::site::temp_dir;
use serde_json::{Map, Value, json};

const WORKERS: usize = 4;
/// The workers' SCIM request timeout: far above what a `/Bulk` request of 100 takes
/// (about 0.2 s of scim2-server's CPU), so that a loaded machine does not time a request
/// out that the server then applies: the worker would send it again, and the runs without
/// faults check that each change is sent exactly once.
const SCIM_TIMEOUT_SECS: u32 = 30;
/// How long the whole drain may take on a loaded machine. A full-size drain took 35–83 s
/// here at load 8–12 with both full-size runs at once; CI's machine was about 2× slower.
const DRAIN_DEADLINE: Duration = Duration::from_secs(600);

fn user_record(name: &str, seq: usize) -> UserRecord {
    let mut fields = Map::new();
    fields.insert("seq".into(), json!(seq.to_string()));
    UserRecord {
        id: String::new(),
        name: name.into(),
        mail: format!("{name}@example.com"),
        fields,
        active: true,
    }
}

/// Which remote attributes a worker looks a new user up by before creating it.
#[derive(Clone, Copy)]
enum Matching {
    /// The default: `userName`, `externalId` and the work email.
    Default,
    /// `userName` and `externalId` only. scim2-server answers an equality filter on a
    /// simple attribute from an index, but walks every stored user for the email's
    /// value-path filter (`emails[type eq "work" and value eq …]`): at 2,500 users that
    /// alone made the run quadratic (150 of its 180 s went to those scans), a cost of the
    /// peer's in-memory store, not of the workers under test.
    Indexed,
}

fn config(dir: &Path, base_url: &str, lease_secs: u32, matching: Matching) -> PathBuf {
    let path = dir.join("worker.toml");
    let policy = match matching {
        Matching::Default => "",
        Matching::Indexed => "matching = [\"userName\", \"externalId\"]",
    };
    write_config_with_policy(
        &path,
        policy,
        base_url,
        SCIM_TIMEOUT_SECS,
        &format!("claim_lease_secs = {lease_secs}\nmax_attempts = 50"),
        "\n[[mapping]]\ntarget = \"title\"\nsource = \"seq\"\n",
    );
    path
}

/// Events queued per transaction: each goes through the library's own enqueue (the user's
/// row locked, the event written beside the change), but 10,000 commits one by one cost
/// the test more than the workers' whole drain of them.
const QUEUE_TRANSACTION: usize = 500;

/// Queues every user's events through the store, in rounds (every user's `created`, then
/// every user's first `updated`, …), so users' events interleave in the queue; returns
/// the users' ids.
fn queue_events(url: &DatabaseUrl, users: usize, events_per_user: usize) -> Vec<String> {
    let mut store = Store::open_url(url, Duration::from_secs(30)).expect("store");
    let mut ids = Vec::with_capacity(users);
    let numbers: Vec<usize> = (0..users).collect();
    for chunk in numbers.chunks(QUEUE_TRANSACTION) {
        let added = store
            .batch(|s| {
                chunk
                    .iter()
                    .map(|i| s.add_user(user_record(&format!("worker-user-{i}"), 1), true))
                    .map(|user| user.map(|u| u.id))
                    .collect::<anyhow::Result<Vec<String>>>()
            })
            .expect("users added");
        ids.extend(added);
    }
    for seq in 2..=events_per_user {
        for chunk in ids.chunks(QUEUE_TRANSACTION) {
            store
                .batch(|s| {
                    for id in chunk {
                        s.change_user(id, UserEvent::Updated, |u| {
                            u.fields.insert("seq".into(), json!(seq.to_string()));
                        })?;
                    }
                    Ok(())
                })
                .expect("changes queued");
        }
    }
    ids
}

/// The CPU time (user and system) a process has used so far, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ, which /proc counts in, is 100 on every Linux architecture we run on.
    Some(ticks as f64 / 100.0)
}

/// The scim2-server process listening on `port` (found by its command line).
fn scim2_server_pid(port: u16) -> Option<u32> {
    let wanted = format!("\0--port\0{port}\0");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline);
            (cmdline.contains("scim2") && cmdline.contains(&wanted)).then_some(pid)
        })
}

/// How many requests of each kind the proxy forwarded (`GET Users filter`, `POST Bulk`…).
fn request_kinds(proxy: &RecordingProxy) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    for (method, target) in proxy.requests() {
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let resource = match path.rsplit_once("/Users/") {
            Some(_) => "Users/{id}",
            None => path.rsplit('/').next().unwrap_or_default(),
        };
        let filtered = if query.contains("filter=") {
            " filter"
        } else {
            ""
        };
        *kinds
            .entry(format!("{method} {resource}{filtered}"))
            .or_default() += 1;
    }
    kinds
}

/// The outbox's (rows, parked rows), read directly.
fn outbox_rows(url: &DatabaseUrl) -> Option<(i64, i64)> {
    let mut db = Db::connect(url).ok()?;
    let row = db
        .query_opt(
            "SELECT COUNT(*), COUNT(CASE WHEN parked <> 0 THEN 1 END) FROM outbox",
            &[],
        )
        .ok()??;
    Some((row.int(0).ok()?, row.int(1).ok()?))
}

/// Live claims held by the worker with this pid.
fn claims_of(url: &DatabaseUrl, pid: u32) -> i64 {
    let Ok(mut db) = Db::connect(url) else {
        return 0;
    };
    db.query_opt(
        "SELECT COUNT(*) FROM outbox WHERE claimed_by LIKE ? AND claimed_until >= ?",
        &[
            format!("%:{pid}:%").into(),
            host_example::clock::now_ms().into(),
        ],
    )
    .ok()
    .flatten()
    .and_then(|r| r.int(0).ok())
    .unwrap_or(0)
}

/// Waits for `done` while the workers run (see [`wait_until`]).
fn wait_for(what: &str, workers: &mut [Worker], done: impl FnMut() -> bool) {
    wait_until(
        what,
        workers,
        DRAIN_DEADLINE,
        Duration::from_millis(100),
        done,
    );
}

/// Every user on the server: remote id → (externalId, title).
fn server_users(peer: &Peer) -> HashMap<String, (String, String)> {
    scim_users_with_attributes(peer, &["externalId", "title"])
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_string(),
                (
                    r["externalId"].as_str().unwrap_or_default().to_string(),
                    r["title"].as_str().unwrap_or_default().to_string(),
                ),
            )
        })
        .collect()
}

/// (key, title) of every user write in a recorded request: the key is `ext:<externalId>`
/// for a create, `id:<remote id>` for a write to an existing user.
fn writes_in(method: &str, target: &str, body: &Value, out: &mut Vec<(String, String)>) {
    let path = target.split('?').next().unwrap_or_default();
    if path.ends_with("/Bulk") {
        for op in body["Operations"].as_array().into_iter().flatten() {
            let method = op["method"].as_str().unwrap_or_default();
            let path = op["path"].as_str().unwrap_or_default();
            writes_in(method, path, &op["data"], out);
        }
        return;
    }
    let Some(at) = path.find("/Users") else {
        return;
    };
    let rest = path[at + "/Users".len()..].trim_start_matches('/');
    let key = if rest.is_empty() {
        match body["externalId"].as_str() {
            Some(e) => format!("ext:{e}"),
            None => return,
        }
    } else {
        format!("id:{rest}")
    };
    let title = match method.to_ascii_uppercase().as_str() {
        "PATCH" => body["Operations"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|op| {
                match op["path"].as_str() {
                    Some(p) if p.eq_ignore_ascii_case("title") => op["value"].as_str(),
                    None => op["value"]["title"].as_str(),
                    _ => None,
                }
                .map(str::to_string)
            }),
        _ => body["title"].as_str().map(str::to_string),
    };
    if let Some(title) = title {
        out.push((key, title));
    }
}

/// One run of the workers (see the module documentation).
struct Run {
    kind: Kind,
    users: usize,
    events_per_user: usize,
    /// kill -9 a worker holding claims, and stop the database for 3 s mid-run.
    faults: bool,
    /// A server slower than the lease (see [`Slow`]).
    slow: Option<Slow>,
    matching: Matching,
}

impl Run {
    /// `users` × `events_per_user` events, no faults, the default matching.
    fn new(kind: Kind, users: usize, events_per_user: usize) -> Run {
        Run {
            kind,
            users,
            events_per_user,
            faults: false,
            slow: None,
            matching: Matching::Default,
        }
    }
}

/// A server slower than the lease: each write is answered `delay` late, and the lease is
/// 1 s, so every batch outlasts its lease several times over.
struct Slow {
    delay: Duration,
}

/// Runs one scenario and checks it (see the module documentation). Prints, as it goes,
/// when each phase ended, the requests the server was sent, and the CPU the workers and
/// scim2-server used (a slow run says there where its time went).
fn scenario(run: Run) {
    let Run {
        kind,
        users,
        events_per_user,
        faults,
        slow,
        matching,
    } = run;
    let t0 = Instant::now();
    let phase = |what: &str| eprintln!("[{:>7.1} s] {what}", t0.elapsed().as_secs_f64());
    let bin = host_example_bin();
    // scim2-server starts while the database does (each takes seconds, mostly waiting).
    let starting_peer = std::thread::spawn(scim2_server);
    let (mut server, url_text) =
        TestDatabase::start_with_database(kind, "outbox").expect("a database server");
    let url = DatabaseUrl::parse(&url_text, Path::new("/")).expect("url");
    phase("database up");
    let peer = starting_peer
        .join()
        .expect("scim2-server's start")
        .expect("scim2-server");
    phase("scim2-server up");
    let proxy = match &slow {
        Some(slow) => RecordingProxy::start_slow(&peer.base_url, slow.delay),
        None => RecordingProxy::start(&peer.base_url),
    }
    .expect("proxy");
    let dir = temp_dir("outbox-workers");
    // A short lease in the fault runs, so the killed worker's events come back soon. With
    // a slow server, a lease far shorter than a batch: the workers' lease keepers must
    // extend it, or other workers take the events over and send them again.
    let lease = match (&slow, faults) {
        (Some(_), _) => 1,
        (None, true) => 15,
        (None, false) => 60,
    };
    let config = config(&dir, &proxy.base_url, lease, matching);

    let ids = queue_events(&url, users, events_per_user);
    let total = (users * events_per_user) as i64;
    assert_eq!(outbox_rows(&url), Some((total, 0)));
    phase("queued");

    let started = Instant::now();
    let mut workers: Vec<Worker> = (0..WORKERS)
        .map(|i| {
            Worker::spawn(
                &bin,
                &config,
                &["daemon", "--deliver-only"],
                &peer.token,
                &url_text,
                dir.join(format!("worker-{i}.log")),
            )
        })
        .collect();

    if faults {
        // kill -9 a worker while it holds claimed events: whichever is seen holding some
        // first (one chosen in advance may not get any before the others drain the queue).
        let pids: Vec<u32> = workers.iter().map(|w| w.child.id()).collect();
        let mut holder = None;
        wait_for("a worker to hold claims", &mut workers, || {
            holder = pids.iter().position(|&pid| claims_of(&url, pid) > 0);
            assert!(
                holder.is_some() || outbox_rows(&url) != Some((0, 0)),
                "the outbox drained before a worker was seen holding claims"
            );
            holder.is_some()
        });
        let victim = holder.expect("a worker holds claims");
        let pid = pids[victim];
        let held = claims_of(&url, pid);
        workers[victim].child.kill().expect("kill -9");
        let _ = workers[victim].child.wait();
        eprintln!("killed worker {victim} (pid {pid}) holding {held} claimed events");
        workers.swap(0, victim);
        let mut survivors: Vec<Worker> = workers.drain(1..).collect();
        // The database goes away for a few seconds once a quarter of the queue is left
        // or more has been delivered.
        wait_for("a quarter of the outbox delivered", &mut survivors, || {
            outbox_rows(&url).is_some_and(|(rows, _)| rows <= total * 3 / 4)
        });
        server.stop();
        std::thread::sleep(Duration::from_secs(3));
        server.start_again().expect("the database starts again");
        workers = survivors;
    }

    wait_for("the outbox drained", &mut workers, || {
        outbox_rows(&url) == Some((0, 0))
    });
    let elapsed = started.elapsed();
    let workers_cpu: f64 = workers
        .iter()
        .filter_map(|w| cpu_seconds(w.child.id()))
        .sum();
    eprintln!(
        "{total} events by {WORKERS} workers in {:.1} s ({:.0} events/s); CPU: workers \
         {workers_cpu:.1} s, scim2-server {:.1} s since it started, the test process {:.1} s \
         (queueing, the proxy; every test running in it)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        scim2_server_pid(peer.port)
            .and_then(cpu_seconds)
            .unwrap_or(f64::NAN),
        cpu_seconds(std::process::id()).unwrap_or(f64::NAN),
    );
    drop(workers);
    phase("drained");
    eprintln!("requests: {:?}", request_kinds(&proxy));

    // Read back: every user once, in their final state.
    let remote = server_users(&peer);
    let by_external: HashMap<&str, &str> = remote
        .values()
        .map(|(ext, title)| (ext.as_str(), title.as_str()))
        .collect();
    assert_eq!(remote.len(), users, "one remote user per CMS user");
    assert_eq!(by_external.len(), users, "no externalId twice");
    let last = events_per_user.to_string();
    for id in &ids {
        assert_eq!(
            by_external.get(id.as_str()).copied(),
            Some(last.as_str()),
            "user {id} in their final state"
        );
    }

    phase("read back");
    // The order the server was sent each user's sequence numbers in.
    let external_of: HashMap<&str, &str> = remote
        .iter()
        .map(|(id, (ext, _))| (id.as_str(), ext.as_str()))
        .collect();
    let mut writes = Vec::new();
    for r in proxy.recorded() {
        if let Ok(body) = serde_json::from_str::<Value>(&r.body) {
            writes_in(&r.method, &r.target, &body, &mut writes);
        }
    }
    let mut seen: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (key, title) in writes {
        let user = match key.split_once(':') {
            Some(("ext", e)) => e.to_string(),
            Some(("id", id)) => match external_of.get(id) {
                Some(e) => e.to_string(),
                None => panic!("a write to a remote user that is gone: {id}"),
            },
            _ => unreachable!(),
        };
        seen.entry(user)
            .or_default()
            .push(title.parse().expect("a sequence number"));
    }
    let mut repeats = 0;
    for id in &ids {
        let sequence = seen.get(id).cloned().unwrap_or_default();
        assert!(
            sequence.windows(2).all(|w| w[0] <= w[1]),
            "user {id}'s changes arrived out of order: {sequence:?}"
        );
        let distinct: HashSet<usize> = sequence.iter().copied().collect();
        assert_eq!(
            distinct,
            (1..=events_per_user).collect::<HashSet<_>>(),
            "user {id}: every change sent ({sequence:?})"
        );
        repeats += sequence.len() - distinct.len();
        if !faults {
            assert_eq!(
                sequence.len(),
                events_per_user,
                "user {id}: each change sent once ({sequence:?})"
            );
        }
    }
    eprintln!("writes sent again after the faults: {repeats}");
    phase("checked");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Lease renewal: a 1 s lease, a server that answers each write 2.5 s late, 4 workers.
/// Every change is sent exactly once, in order: no worker takes over a batch another is
/// still delivering. (Without the lease keeper, each batch is taken over after 1 s and
/// sent again.)
#[test]
fn postgres_a_batch_slower_than_its_lease_is_sent_once() {
    scenario(Run {
        slow: Some(Slow {
            delay: Duration::from_millis(2_500),
        }),
        ..Run::new(Kind::Postgres, 30, 2)
    });
}

/// The same on MariaDB.
#[test]
fn mariadb_a_batch_slower_than_its_lease_is_sent_once() {
    scenario(Run {
        slow: Some(Slow {
            delay: Duration::from_millis(2_500),
        }),
        ..Run::new(Kind::MariaDb, 30, 2)
    });
}

/// The full size: 4 workers × 10,000 events (2,500 users × 4), every user once in
/// their final state, every change sent once, in order.
#[test]
fn full_size_postgres_ten_thousand_events_each_once_in_order() {
    scenario(Run {
        matching: Matching::Indexed,
        ..Run::new(Kind::Postgres, 2_500, 4)
    });
}

/// The full size on MariaDB.
#[test]
fn full_size_mariadb_ten_thousand_events_each_once_in_order() {
    scenario(Run {
        matching: Matching::Indexed,
        ..Run::new(Kind::MariaDb, 2_500, 4)
    });
}

/// The fault runs, at 1,000 events (250 users × 4), with the default matching.
#[test]
fn postgres_a_killed_worker_and_a_stopped_database_lose_nothing() {
    scenario(Run {
        faults: true,
        ..Run::new(Kind::Postgres, 250, 4)
    });
}

#[test]
fn mariadb_a_killed_worker_and_a_stopped_database_lose_nothing() {
    scenario(Run {
        faults: true,
        ..Run::new(Kind::MariaDb, 250, 4)
    });
}

/// A daemon on a shared database with a configuration the component refuses (`matching =
/// []`) stops at once with the reason and a non-zero status, as a worker and as a full
/// daemon; only the database going away is waited out (it used to retry every error,
/// "trying again in 6400 ms", for ever).
#[test]
fn postgres_a_daemon_with_an_invalid_configuration_exits_with_the_error() {
    /// Far more than a refused start needs, far less than "for ever".
    const EXIT_DEADLINE: Duration = Duration::from_secs(60);
    let bin = host_example_bin();
    let pg = TestPostgres::start().expect("postgres starts");
    let url_text = pg.create_database("invalid_config").expect("a database");
    let dir = temp_dir("daemon-invalid-config");
    // Nothing listens there: the component refuses the configuration before any request.
    let config = dir.join("worker.toml");
    std::fs::write(
        &config,
        "matching = []\n\n[scim]\nbase_url = \"http://127.0.0.1:9/scim/v2\"\ntoken = \"t\"\n",
    )
    .expect("config");
    for mode in [
        &["daemon", "--deliver-only"][..],
        &["daemon", "--every", "1s"][..],
    ] {
        let log = dir.join("daemon.log");
        let mut child = Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .args(mode)
            .env("SCIM_PROVISIONER_DATABASE", &url_text)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("daemon starts");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if started.elapsed() > EXIT_DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{mode:?} still running after {EXIT_DEADLINE:?}:\n{}",
                    tail(&log, 15)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let stderr = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            !status.success(),
            "{mode:?} exited with {status}:\n{stderr}"
        );
        assert!(
            stderr.contains("`matching` needs at least one attribute"),
            "{mode:?}: the reason is not in its error output:\n{stderr}"
        );
        assert!(
            !stderr.contains("trying again"),
            "{mode:?} retried a configuration error:\n{stderr}"
        );
    }
}
