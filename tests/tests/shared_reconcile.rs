//! The scheduled reconcile shared by several `host-example daemon` processes on one
//! PostgreSQL or MariaDB (issue 30; `host_example::reconcile_shared`).
//!
//! Each test starts its own database server (as the test's process, on a free loopback
//! port, data in a temp dir), scim2-server, and a recording proxy in front of it. The
//! users are imported into the store without outbox events, so only the reconcile
//! provisions them. Then 3 daemons (not `--deliver-only`) share the schedule.
//!
//! Checked afterwards:
//! - the server holds every user exactly once (by `externalId`, read back), and the store
//!   links every user;
//! - run 1, a verifying one, counted the one remote user no CMS user matches (drift);
//! - the remote users were listed once per run that needed a listing (the proxy counts the
//!   listing's first pages, `GET /Users?startIndex=1…&attributes=…` without a filter), and
//!   the runs that did not need one (nothing to create) listed nothing;
//! - the partitions matched in the shared listing: the users the server already held were
//!   adopted, and no user was looked up by filter (but in a partition taken over from a
//!   killed daemon, which looks its users up);
//! - every partition of every run was done, by more than one daemon in all;
//! - the schedule is one for all: with `--every 3s` runs start at least 3 s apart, never
//!   two at once, however many daemons there are;
//! - a daemon killed with `kill -9` while it holds a partition: after its lease another
//!   daemon finishes that partition, and still no user is created twice; on PostgreSQL the
//!   database is then stopped for 3 s mid-run, and the run still ends with every user once.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use host_example::database::test_support::{TestDatabase, TestDatabaseKind as Kind, TestPostgres};
use host_example::database::{DatabaseUrl, Db};
use host_example::store::{Store, UserRecord};
use scim_provisioner_tests::daemons::{
    Daemon, host_example_bin, scim_users, wait_until, write_config,
};
use scim_provisioner_tests::peers::{Peer, scim2_server, send_json, workspace_root};
use scim_provisioner_tests::recording_proxy::RecordingProxy;
use scim_provisioner_tests::site::temp_dir;
use serde_json::{Map, json};

const DAEMONS: usize = 3;
const USERS: usize = 400;
/// Users the server holds already (by userName, without externalId): the reconcile adopts
/// them, matching them in the shared listing.
const ON_THE_SERVER: usize = 40;
/// `[host] concurrency` of the daemons (the default; the kill scenario sets 1).
const CONCURRENCY: usize = 8;
/// How long a run may take on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(180);

/// With `kill`: a short lease, so the killed daemon's partition comes back soon, and one
/// user per request, one at a time, so a partition takes long enough to be killed in the
/// middle of.
fn config(dir: &Path, base_url: &str, kill: bool) -> PathBuf {
    let host = if kill {
        "claim_lease_secs = 4\nconcurrency = 1\nbatch_size = 1"
    } else {
        "claim_lease_secs = 60"
    };
    let path = dir.join("daemon.toml");
    write_config(&path, base_url, host, "");
    path
}

fn query_int(url: &DatabaseUrl, sql: &str) -> Option<i64> {
    let mut db = Db::connect(url).ok()?;
    db.query_opt(sql, &[]).ok()??.int(0).ok()
}

/// Waits for `done` while the daemons run (see [`wait_until`]); polled often, so the kill
/// test catches a daemon in the middle of a partition.
fn wait_for(what: &str, daemons: &mut [Daemon], done: impl FnMut() -> bool) {
    wait_until(what, daemons, DEADLINE, Duration::from_millis(5), done);
}

/// Imports `count` users into the store without outbox events (so only the reconcile
/// provisions them): ids `first_id`, `first_id + 1`, …, names `<name>-<i>`; returns
/// their ids.
fn import_users(url: &DatabaseUrl, count: usize, first_id: usize, name: &str) -> Vec<String> {
    let ids: Vec<String> = (0..count).map(|i| (first_id + i).to_string()).collect();
    let mut store = Store::open_url(url, Duration::from_secs(30)).expect("store");
    let imported = store
        .import_users(ids.iter().enumerate().map(|(i, id)| {
            Ok(UserRecord {
                id: id.clone(),
                name: format!("{name}-{i}"),
                mail: format!("{name}-{i}@example.com"),
                fields: Map::new(),
                active: true,
            })
        }))
        .expect("import");
    assert_eq!(imported, count, "every user imported");
    ids
}

/// Runs done (state `done`).
fn runs_done(url: &DatabaseUrl) -> i64 {
    query_int(
        url,
        "SELECT COUNT(*) FROM reconcile_runs WHERE state = 'done'",
    )
    .unwrap_or(0)
}

/// A user on the server.
struct RemoteUser {
    id: String,
    external_id: String,
    active: bool,
}

/// Every user on the server.
fn server_users(peer: &Peer) -> Vec<RemoteUser> {
    scim_users(peer)
        .iter()
        .map(|r| RemoteUser {
            id: r["id"].as_str().unwrap_or_default().to_string(),
            external_id: r["externalId"].as_str().unwrap_or_default().to_string(),
            active: r["active"].as_bool().unwrap_or(true),
        })
        .collect()
}

/// Deletes users from the store's `users` table directly, as a CMS would behind the
/// host's back (no outbox event); returns their remote ids.
fn delete_users(url: &DatabaseUrl, ids: &[String]) -> Vec<String> {
    let mut db = Db::connect(url).expect("db");
    ids.iter()
        .map(|id| {
            let remote = db
                .query_opt(
                    "SELECT remote_id FROM links WHERE user_id = ?",
                    &[id.into()],
                )
                .expect("link")
                .expect("a linked user")
                .text(0)
                .expect("remote id");
            db.execute("DELETE FROM users WHERE id = ?", &[id.into()])
                .expect("delete");
            remote
        })
        .collect()
}

/// Writes to the remote user `remote_id` since `before` (the proxy's request and
/// recorded-body counts then): direct ones, and operations of `/Bulk` requests.
fn writes_to(proxy: &RecordingProxy, before: (usize, usize), remote_id: &str) -> usize {
    let direct = proxy.requests()[before.0..]
        .iter()
        .filter(|(method, target)| method != "GET" && target.contains(remote_id))
        .count();
    let path = format!("/Users/{remote_id}\"");
    let in_bulk: usize = proxy.recorded()[before.1..]
        .iter()
        .filter(|r| r.target.contains("/Bulk"))
        .map(|r| r.body.matches(path.as_str()).count())
        .sum();
    direct + in_bulk
}

/// The last run's id (0 before any).
fn last_run(url: &DatabaseUrl) -> i64 {
    query_int(url, "SELECT COALESCE(MAX(id), 0) FROM reconcile_runs").unwrap_or(0)
}

/// The externalIds written in a request body (a user, or a `/Bulk` request's operations).
fn external_ids(body: &str) -> Vec<String> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let mut out: Vec<String> = value["externalId"]
        .as_str()
        .map(str::to_string)
        .into_iter()
        .collect();
    for op in value["Operations"].as_array().into_iter().flatten() {
        if let Some(e) = op["data"]["externalId"].as_str() {
            out.push(e.to_string());
        }
        if let Some(e) = op["value"]["externalId"].as_str() {
            out.push(e.to_string());
        }
    }
    out
}

/// The listings of the remote users the proxy forwarded: their first pages.
fn listings(proxy: &RecordingProxy) -> usize {
    proxy
        .requests()
        .iter()
        .filter(|(method, target)| {
            method == "GET"
                && target.contains("/Users?startIndex=1&")
                && target.contains("attributes=")
                && !target.contains("filter=")
        })
        .count()
}

/// One scenario (see the module documentation) with `--every every`: run 1 provisions
/// every user. With `kill`, one daemon is killed with `kill -9` in the middle of a
/// partition of run 1; without, later runs deprovision orphans once and refuse a run over
/// the threshold.
fn scenario(kind: Kind, every: &str, kill: bool) {
    scenario_with(kind, every, kill, false);
}

/// [`scenario`]; with `stop_database`, the database is also stopped for 3 s right after
/// the kill, while the other daemons are in the middle of the run.
fn scenario_with(kind: Kind, every: &str, kill: bool, stop_database: bool) {
    let bin = host_example_bin();
    let (mut server, url_text) =
        TestDatabase::start_with_database(kind, "reconcile").expect("a database server");
    let url = DatabaseUrl::parse(&url_text, Path::new("/")).expect("url");
    let peer = scim2_server().expect("scim2-server");
    // Users the server holds already (by userName, without externalId): adopted.
    let create_remote_user = |user_name: &str| {
        let (status, body) = send_json(
            "POST",
            &format!("{}/Users", peer.base_url),
            &peer.token,
            Some(&json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": user_name,
            })),
        )
        .expect("a remote user");
        assert_eq!(status, 201, "{body}");
    };
    for i in (0..USERS).step_by(USERS / ON_THE_SERVER) {
        create_remote_user(&format!("shared-user-{i}"));
    }
    // And one no CMS user matches: run 1 (a verifying one) counts it as drift.
    create_remote_user("a-stranger-to-the-cms");
    let proxy = RecordingProxy::start(&peer.base_url).expect("proxy");
    let dir = temp_dir("shared-reconcile");
    let config = config(&dir, &proxy.base_url, kill);

    let ids = import_users(&url, USERS, 1000, "shared-user");

    let started = Instant::now();
    let mut daemons: Vec<Daemon> = (0..DAEMONS)
        .map(|i| {
            Daemon::spawn(
                &bin,
                &config,
                &["daemon", "--every", every, "--partitions", "16"],
                &peer.token,
                &url_text,
                dir.join(format!("daemon-{i}.log")),
            )
        })
        .collect();

    let mut killed: Option<(String, Vec<i64>)> = None;
    if kill {
        // A daemon is killed once it holds a partition of run 1 and has sent a write for
        // one of its users (so it is in the middle of it).
        let mut victim: Option<(usize, String, i64)> = None;
        let pids: Vec<u32> = daemons.iter().map(|d| d.child.id()).collect();
        wait_for(
            "a daemon in the middle of a partition",
            &mut daemons,
            || {
                let Ok(mut db) = Db::connect(&url) else {
                    return false;
                };
                let Ok(held) = db.query(
                    "SELECT claimed_by, part, id_after, id_upto FROM reconcile_partitions
                 WHERE run_id = 1 AND done_at IS NULL AND claimed_until >= ? AND kind = 'users'",
                    &[host_example::clock::now_ms().into()],
                ) else {
                    return false;
                };
                let sent: Vec<String> = proxy
                    .recorded()
                    .iter()
                    .flat_map(|r| external_ids(&r.body))
                    .collect();
                for row in held {
                    let holder = row.text(0).unwrap_or_default();
                    let after = row.opt_text(2).ok().flatten();
                    let upto = row.opt_text(3).ok().flatten();
                    let in_range = |id: &String| {
                        after.as_ref().is_none_or(|a| id > a)
                            && upto.as_ref().is_none_or(|u| id <= u)
                    };
                    let pid = holder.split(':').nth(1).and_then(|p| p.parse::<u32>().ok());
                    if let Some(i) = pids.iter().position(|&p| Some(p) == pid)
                        && sent.iter().any(in_range)
                    {
                        victim = Some((i, holder, row.int(1).unwrap_or(-1)));
                        return true;
                    }
                }
                false
            },
        );
        let (i, holder, part) = victim.expect("a victim");
        let mut d = daemons.remove(i);
        d.child.kill().expect("kill -9");
        let _ = d.child.wait();
        let mut db = Db::connect(&url).expect("db");
        let parts: Vec<i64> = db
            .query(
                "SELECT part FROM reconcile_partitions
                 WHERE run_id = 1 AND done_at IS NULL AND claimed_by = ?",
                &[holder.as_str().into()],
            )
            .expect("its partitions")
            .iter()
            .map(|r| r.int(0).expect("part"))
            .collect();
        assert!(
            parts.contains(&part),
            "partition {part} was not finished when its daemon was killed"
        );
        eprintln!("killed daemon {i} ({holder}) holding partitions {parts:?}");
        killed = Some((holder, parts));
        if stop_database {
            // The killed daemon's partition waits for its lease (4 s), so the run is on.
            assert_eq!(runs_done(&url), 0, "run 1 still going");
            server.stop();
            std::thread::sleep(Duration::from_secs(3));
            server.start_again().expect("the database starts again");
            eprintln!("the database was away for 3 s");
        }
    }

    wait_for("run 1 done", &mut daemons, || runs_done(&url) >= 1);
    eprintln!(
        "run 1: {USERS} users by {DAEMONS} daemons in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Each daemon keeps its component instances through the run, so the server is
    // discovered once per instance a daemon runs at once, not once per partition and
    // instance (16 × 8 before: 128).
    let discoveries = proxy
        .requests()
        .iter()
        .filter(|(method, target)| method == "GET" && target.ends_with("/ServiceProviderConfig"))
        .count();
    eprintln!("run 1: the server discovered {discoveries} times");
    if !kill {
        assert!(
            discoveries <= DAEMONS * CONCURRENCY + 1,
            "discovered {discoveries} times: once per instance of each daemon, and the listing's"
        );
    }

    // Every user once on the server, read back, and linked in the store.
    let remote = server_users(&peer);
    let externals: HashSet<&str> = remote
        .iter()
        .map(|u| u.external_id.as_str())
        .filter(|e| !e.is_empty())
        .collect();
    assert_eq!(
        remote.len(),
        USERS + 1,
        "one remote user per CMS user, and the stranger"
    );
    assert_eq!(externals.len(), USERS, "no externalId twice");
    for id in &ids {
        assert!(externals.contains(id.as_str()), "user {id} provisioned");
    }
    assert_eq!(
        query_int(&url, "SELECT COUNT(*) FROM links"),
        Some(USERS as i64)
    );

    if !kill {
        // Users deleted from the CMS's table behind the host's back (no outbox event):
        // their links are orphans, deprovisioned by the next run's orphans partition,
        // once (not once per partition).
        let before = (proxy.requests().len(), proxy.recorded().len());
        let orphans = delete_users(&url, &ids[..10]);
        let last = last_run(&url);
        wait_for("a run after the deletions", &mut daemons, || {
            query_int(
                &url,
                &format!(
                    "SELECT COUNT(*) FROM reconcile_runs WHERE id > {last} AND state = 'done'"
                ),
            )
            .unwrap_or(0)
                >= 1
        });
        let remote = server_users(&peer);
        for remote_id in &orphans {
            assert!(
                remote.iter().all(|u| &u.id != remote_id || !u.active),
                "orphan {remote_id} deprovisioned"
            );
            let calls = writes_to(&proxy, before, remote_id);
            assert_eq!(calls, 1, "orphan {remote_id} deprovisioned once");
        }
        // More deletions than the threshold (10% of the linked users): the run that
        // would deprovision them is refused, and nothing of them is sent.
        let before = (proxy.requests().len(), proxy.recorded().len());
        let many = delete_users(&url, &ids[10..110]);
        wait_for("a run refused", &mut daemons, || {
            query_int(
                &url,
                "SELECT COUNT(*) FROM reconcile_runs WHERE state = 'refused'",
            )
            .unwrap_or(0)
                >= 1
        });
        let remote = server_users(&peer);
        for remote_id in &many {
            assert!(
                remote.iter().any(|u| &u.id == remote_id && u.active),
                "{remote_id} left alone by a refused run"
            );
            assert_eq!(
                writes_to(&proxy, before, remote_id),
                0,
                "nothing sent for {remote_id}"
            );
        }
    }
    drop(daemons);

    // `status` shows the last runs.
    let status = Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .arg("status")
        .env("SCIM_TOKEN", &peer.token)
        .env("SCIM_PROVISIONER_DATABASE", &url_text)
        .output()
        .expect("status");
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    let runs_shown: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with("reconcile:"))
        .collect();
    assert!(!runs_shown.is_empty(), "status shows the runs:\n{status}");
    eprintln!("{}", runs_shown.join("\n"));
    let last_sync = status
        .lines()
        .find(|l| l.starts_with("last sync:"))
        .unwrap_or_default();
    assert!(
        last_sync.contains(" reconcile run "),
        "the last sync is a run: {status}"
    );
    if kill {
        assert!(
            runs_shown[0].contains("run 1 (verifying) done")
                && runs_shown[0].contains("17/17 partitions done"),
            "{status}"
        );
    } else {
        // A run may have started since the refused one (the schedule goes on).
        assert!(
            runs_shown.iter().any(|l| l.contains(" refused, ")),
            "{status}"
        );
    }

    let mut db = Db::connect(&url).expect("db");
    // The runs: one at a time, `every` apart; only the first (which had users to create)
    // took a listing, and the listing was taken once.
    let run_rows = db
        .query(
            "SELECT id, state, started_ms, listed, finished_at, listing_bytes, note
             FROM reconcile_runs ORDER BY id",
            &[],
        )
        .expect("runs");
    let done: Vec<_> = run_rows
        .iter()
        .filter(|r| r.text(1).expect("state") == "done")
        .collect();
    assert!(!done.is_empty(), "a run done");
    assert_eq!(
        done[0].opt_int(3).expect("listed"),
        Some(ON_THE_SERVER as i64 + 1),
        "run 1 listed the server"
    );
    assert_eq!(
        done[0].opt_text(6).expect("note").as_deref(),
        Some("drift: 1 remote users on the server linked to no CMS user"),
        "run 1 (verifying) counted the stranger"
    );
    for r in &done[1..] {
        assert_eq!(
            r.opt_int(3).expect("listed"),
            None,
            "nothing to create: no listing"
        );
    }
    let every_ms = (host_example_interval_secs(every) * 1000) as i64;
    for pair in run_rows.windows(2) {
        let gap = pair[1].int(2).expect("ms") - pair[0].int(2).expect("ms");
        assert!(gap >= every_ms, "runs {gap} ms apart, every {every}");
    }
    assert_eq!(
        listings(&proxy),
        1,
        "the remote users listed once for all the daemons"
    );
    // Every partition matched in the shared listing: no user was looked up, except the
    // killed daemon's partition (taken over without the listing, so its matching asks).
    let look_ups = proxy
        .requests()
        .iter()
        .filter(|(method, target)| method == "GET" && target.contains("filter="))
        .count();
    eprintln!("look-ups by filter: {look_ups}");
    if !kill {
        assert_eq!(
            look_ups, 0,
            "the listing was shared, not replaced by look-ups"
        );
    }

    let listed: Vec<(i64, i64)> = run_rows
        .iter()
        .filter_map(|r| {
            let bytes = r.opt_int(5).ok()??;
            Some((r.opt_int(3).ok()??, bytes))
        })
        .collect();
    for (users, bytes) in listed {
        eprintln!(
            "listing: {users} remote users, {bytes} bytes stored ({} bytes a user)",
            bytes / users.max(1)
        );
    }

    // Every partition of every run done (none given up), by more than one daemon.
    let parts = db
        .query(
            "SELECT p.run_id, p.part, p.done_by, p.attempts, p.summary
             FROM reconcile_partitions p JOIN reconcile_runs r ON r.id = p.run_id
             WHERE r.state = 'done' ORDER BY p.run_id, p.part",
            &[],
        )
        .expect("partitions");
    let mut by: HashMap<String, usize> = HashMap::new();
    for p in &parts {
        let done_by = p.opt_text(2).expect("done_by");
        let summary = p.opt_text(4).expect("summary").unwrap_or_default();
        assert!(
            done_by.is_some() && !summary.starts_with("given up"),
            "partition {}/{} done: {summary}",
            p.int(0).expect("run"),
            p.int(1).expect("part")
        );
        *by.entry(done_by.unwrap_or_default()).or_default() += 1;
    }
    eprintln!("partitions done per daemon: {by:?}");
    assert!(by.len() >= 2, "more than one daemon took part: {by:?}");
    if let Some((holder, lost)) = killed {
        for part in lost {
            let p = parts
                .iter()
                .find(|p| p.int(0).ok() == Some(1) && p.int(1).ok() == Some(part))
                .expect("the killed daemon's partition");
            assert_ne!(
                p.opt_text(2).expect("done_by").as_deref(),
                Some(holder.as_str()),
                "partition {part} finished by another daemon"
            );
            assert!(
                p.int(3).expect("attempts") >= 2,
                "partition {part} taken over"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `3s` → 3 (the test's own intervals are whole seconds).
fn host_example_interval_secs(every: &str) -> u64 {
    every
        .trim_end_matches('s')
        .parse()
        .expect("an interval in seconds")
}

/// 3 daemons, `--every 3s`: one schedule for all, one listing, every user once; orphans
/// deprovisioned once; a run over the threshold refused.
#[test]
fn postgres_daemons_share_one_schedule_and_one_listing() {
    scenario(Kind::Postgres, "3s", false);
}

/// The same on MariaDB.
#[test]
fn mariadb_daemons_share_one_schedule_and_one_listing() {
    scenario(Kind::MariaDb, "3s", false);
}

/// A daemon killed mid-partition: another finishes it after the lease; then the database
/// goes away for 3 s mid-run, and the daemons carry on.
#[test]
fn postgres_a_killed_daemons_partition_is_finished_by_another() {
    scenario_with(Kind::Postgres, "3600s", true, true);
}

/// The same on MariaDB.
#[test]
fn mariadb_a_killed_daemons_partition_is_finished_by_another() {
    scenario(Kind::MariaDb, "3600s", true);
}

/// The shared reconcile's figures (a benchmark, run by hand): a first sync of
/// `SHARED_RECONCILE_USERS` users (default 10,000) into a fresh scim2-server by 1, 2 and 4
/// daemons (`SHARED_RECONCILE_DAEMONS`, default `1,2,4`) on a fresh PostgreSQL database
/// each, timed from the daemons' start to the run's end; then a no-change run (the
/// schedule moved to now), timed from its start to its end; then a verifying run (every
/// linked user read back, and the remote users listed once: the listing's size per user). The daemons are
/// `HOST_EXAMPLE_BIN` (for honest figures the release build) or the debug build. One
/// command:
///
/// ```sh
/// cargo build --release -p host-example --bin host-example
/// HOST_EXAMPLE_BIN=target/release/host-example SHARED_RECONCILE_USERS=10000 \
///   cargo test -p scim-provisioner-tests --test shared_reconcile -- --ignored --nocapture
/// ```
#[test]
#[ignore]
fn postgres_first_sync_by_one_two_and_four_daemons() {
    let users: usize = std::env::var("SHARED_RECONCILE_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let counts: Vec<usize> = std::env::var("SHARED_RECONCILE_DAEMONS")
        .unwrap_or_else(|_| "1,2,4".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let bin = std::env::var("HOST_EXAMPLE_BIN")
        .map(|b| workspace_root().join(b))
        .unwrap_or_else(|_| host_example_bin());
    let pg = TestPostgres::start().expect("postgres starts");
    let mut table = Vec::new();
    for (round, &daemons_count) in counts.iter().enumerate() {
        let url_text = pg
            .create_database(&format!("bench{round}"))
            .expect("a database");
        let url = DatabaseUrl::parse(&url_text, Path::new("/")).expect("url");
        let peer = scim2_server().expect("scim2-server");
        let dir = temp_dir("shared-reconcile-bench");
        let config = config(&dir, &peer.base_url, false);
        import_users(&url, users, 1_000_000, "bench-user");
        let started = Instant::now();
        let mut daemons: Vec<Daemon> = (0..daemons_count)
            .map(|i| {
                Daemon::spawn(
                    &bin,
                    &config,
                    &["daemon", "--every", "1h", "--verify-every", "30d"],
                    &peer.token,
                    &url_text,
                    dir.join(format!("daemon-{i}.log")),
                )
            })
            .collect();
        wait_for("the first sync", &mut daemons, || runs_done(&url) >= 1);
        let first = started.elapsed().as_secs_f64();
        let linked = query_int(&url, "SELECT COUNT(*) FROM links").unwrap_or(0);
        assert_eq!(linked, users as i64, "every user linked");
        // A no-change run: the schedule moved to now.
        let mut db = Db::connect(&url).expect("db");
        db.execute("UPDATE reconcile_schedule SET next_run_ms = 0", &[])
            .expect("schedule");
        wait_for("the no-change run", &mut daemons, || runs_done(&url) >= 2);
        let times = db
            .query("SELECT started_ms FROM reconcile_runs WHERE id = 2", &[])
            .expect("run 2");
        let run2_started = times[0].int(0).expect("ms");
        let no_change = (host_example::clock::now_ms() - run2_started) as f64 / 1000.0;
        // A verifying run: every linked user read back, and a listing of them all (its
        // size per user is the document's as the daemons share it).
        db.execute(
            "UPDATE reconcile_schedule SET next_run_ms = 0, next_verify_ms = 0",
            &[],
        )
        .expect("schedule");
        wait_for("the verifying run", &mut daemons, || runs_done(&url) >= 3);
        let run3 = db
            .query_opt(
                "SELECT started_ms, listed, listing_bytes FROM reconcile_runs WHERE id = 3",
                &[],
            )
            .expect("run 3")
            .expect("run 3");
        let verifying = (host_example::clock::now_ms() - run3.int(0).expect("ms")) as f64 / 1000.0;
        let per_user = run3.opt_int(2).expect("bytes").unwrap_or(0)
            / run3.opt_int(1).expect("listed").unwrap_or(1).max(1);
        drop(daemons);
        assert_eq!(server_users(&peer).len(), users, "every user once");
        table.push((daemons_count, first, no_change, verifying, per_user));
        let _ = std::fs::remove_dir_all(&dir);
    }
    eprintln!(
        "\n| daemons | first sync of {users} users | users/s | no-change run | verifying run | listing per user |"
    );
    eprintln!("|---|---|---|---|---|---|");
    for (daemons_count, first, no_change, verifying, per_user) in table {
        eprintln!(
            "| {daemons_count} | {first:.1} s | {:.0} | {no_change:.1} s | {verifying:.1} s | {per_user} bytes |",
            users as f64 / first
        );
    }
}
