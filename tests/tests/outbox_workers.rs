//! Many `host-example daemon` workers on one PostgreSQL or MariaDB outbox (issue 30).
//!
//! Each test starts its own database server (Debian's `postgresql` or `mariadb-server`, as
//! the test's process, on a free loopback port, data in a temp dir), scim2-server, and a
//! recording proxy in front of it. The test queues every user's events itself through the
//! library's store (a `created` then `updated` events, in rounds, so users' events
//! interleave in the queue); each event carries the user's sequence number in the field
//! `seq`, mapped to SCIM `title`. Then 4 `daemon --deliver-only` processes drain the
//! outbox into scim2-server through the proxy.
//!
//! Checked afterwards:
//! - the outbox is empty, nothing parked;
//! - the server holds every user exactly once (by `externalId`, read back), in their final
//!   state (`title` = the last sequence number);
//! - per user, the sequence numbers the server was sent (every write the proxy forwarded,
//!   `/Bulk` operations included, in arrival order) never go down, and every number was
//!   sent. Without faults each was sent exactly once.
//!
//! The fault runs kill -9 one worker while it holds claimed events, and stop the database
//! for a few seconds mid-run. A write the killed worker sent but had not recorded is sent
//! again after its lease (at least once on the wire): the check then allows a number to
//! repeat, never to go back, and the server must still hold each user once.
//!
//! The slow runs give the workers a 1 s lease against a server that answers each write
//! 2.5 s late: each worker's lease keeper must extend its lease while it delivers, or
//! another worker takes the batch over and sends it again (each change must be sent once).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use host_example::database::test_support::{TestDatabase, TestDatabaseKind as Kind, TestPostgres};
use host_example::database::{DatabaseUrl, Db};
use host_example::store::{Store, UserRecord};
use host_example::types::UserEvent;
use scim_provisioner_tests::daemons::{
    Daemon as Worker, host_example_bin, scim_users, tail, wait_until, write_config,
};
use scim_provisioner_tests::peers::{Peer, scim2_server};
use scim_provisioner_tests::recording_proxy::RecordingProxy;
use scim_provisioner_tests::site::temp_dir;
use serde_json::{Map, Value, json};

const WORKERS: usize = 4;
/// How long the whole drain may take on a loaded machine.
const DRAIN_DEADLINE: Duration = Duration::from_secs(300);

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

fn config(dir: &Path, base_url: &str, lease_secs: u32) -> PathBuf {
    let path = dir.join("worker.toml");
    write_config(
        &path,
        base_url,
        &format!("claim_lease_secs = {lease_secs}\nmax_attempts = 50"),
        "\n[[mapping]]\ntarget = \"title\"\nsource = \"seq\"\n",
    );
    path
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
    scim_users(peer)
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

/// Runs one scenario and checks it (see the module documentation).
fn scenario(kind: Kind, users: usize, events_per_user: usize, faults: bool) {
    scenario_with(kind, users, events_per_user, faults, None);
}

/// A server slower than the lease: each write is answered `delay` late, and the lease is
/// 1 s, so every batch outlasts its lease several times over.
struct Slow {
    delay: Duration,
}

fn scenario_with(
    kind: Kind,
    users: usize,
    events_per_user: usize,
    faults: bool,
    slow: Option<Slow>,
) {
    let bin = host_example_bin();
    let (mut server, url_text) =
        TestDatabase::start_with_database(kind, "outbox").expect("a database server");
    let url = DatabaseUrl::parse(&url_text, Path::new("/")).expect("url");
    let peer = scim2_server().expect("scim2-server");
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
    let config = config(&dir, &proxy.base_url, lease);

    // The queue: every user's events in rounds, so they interleave.
    let mut store = Store::open_url(&url, Duration::from_secs(30)).expect("store");
    let mut ids = Vec::with_capacity(users);
    for i in 0..users {
        let user = store
            .add_user(user_record(&format!("worker-user-{i}"), 1), true)
            .expect("add");
        ids.push(user.id);
    }
    for seq in 2..=events_per_user {
        for id in &ids {
            store
                .change_user(id, UserEvent::Updated, |u| {
                    u.fields.insert("seq".into(), json!(seq.to_string()));
                })
                .expect("change");
        }
    }
    let total = (users * events_per_user) as i64;
    assert_eq!(outbox_rows(&url), Some((total, 0)));
    drop(store);

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
    eprintln!(
        "{} events by {WORKERS} workers in {:.1} s ({:.0} events/s)",
        total,
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    drop(workers);

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
    let _ = std::fs::remove_dir_all(&dir);
}

/// Lease renewal: a 1 s lease, a server that answers each write 2.5 s late, 4 workers.
/// Every change is sent exactly once, in order: no worker takes over a batch another is
/// still delivering. (Without the lease keeper, each batch is taken over after 1 s and
/// sent again.)
#[test]
fn postgres_a_batch_slower_than_its_lease_is_sent_once() {
    scenario_with(
        Kind::Postgres,
        30,
        2,
        false,
        Some(Slow {
            delay: Duration::from_millis(2_500),
        }),
    );
}

/// The same on MariaDB.
#[test]
fn mariadb_a_batch_slower_than_its_lease_is_sent_once() {
    scenario_with(
        Kind::MariaDb,
        30,
        2,
        false,
        Some(Slow {
            delay: Duration::from_millis(2_500),
        }),
    );
}

#[test]
fn postgres_four_workers_deliver_every_event_once_in_order() {
    scenario(Kind::Postgres, 250, 4, false);
}

#[test]
fn mariadb_four_workers_deliver_every_event_once_in_order() {
    scenario(Kind::MariaDb, 250, 4, false);
}

#[test]
fn postgres_a_killed_worker_and_a_stopped_database_lose_nothing() {
    scenario(Kind::Postgres, 250, 4, true);
}

#[test]
fn mariadb_a_killed_worker_and_a_stopped_database_lose_nothing() {
    scenario(Kind::MariaDb, 250, 4, true);
}

/// The full size: 4 workers × 10,000 events (run by hand: `--ignored`).
#[test]
#[ignore]
fn postgres_ten_thousand_events() {
    scenario(Kind::Postgres, 2_500, 4, false);
}

/// The full size on MariaDB (run by hand: `--ignored`).
#[test]
#[ignore]
fn mariadb_ten_thousand_events() {
    scenario(Kind::MariaDb, 2_500, 4, false);
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
