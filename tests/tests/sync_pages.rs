//! The reconcile's plan read in pages (`host_example::sync_pages`) is the plan read whole
//! (`host_example::sync::plan`): the same users unchanged, parked, to create, update or
//! deprovision, on a store of more than two pages, on SQLite, PostgreSQL and MariaDB.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use host_example::database::{DatabaseUrl, Db};
use host_example::store::{Store, UserRecord};
use host_example::sync_pages::{IdRange, PagedPlanner, plan_paged_in};
use host_example::types::Link;
use host_example::{ConnectorSettings, Credentials};
use scim_provisioner_tests::component::runtime;
use serde_json::json;

fn settings() -> ConnectorSettings {
    ConnectorSettings {
        // Planning sends nothing: a closed port proves it.
        base_url: "http://127.0.0.1:9/scim/v2".into(),
        credentials: Credentials::Bearer("unused".into()),
        timeout_ms: 1_000,
        policy_json: String::new(),
    }
}

fn record(i: usize) -> UserRecord {
    let mut fields = serde_json::Map::new();
    fields.insert("field_first_name".into(), json!(format!("First{i}")));
    fields.insert("field_last_name".into(), json!(format!("Last{i}")));
    UserRecord {
        id: String::new(),
        name: format!("user{i}"),
        mail: format!("user{i}@example.com"),
        fields,
        active: !i.is_multiple_of(17),
    }
}

/// A store of `n` users: most linked and unchanged, every 7th changed since, every 11th
/// never linked, and links of 30 users deleted since.
fn fill(store: &mut Store, n: usize, policy: &str) {
    store
        .import_users((0..n).map(|i| Ok(record(i))))
        .expect("users imported");
    let by_name: BTreeMap<String, String> = store
        .all_users()
        .expect("users")
        .into_iter()
        .map(|u| (u.name, u.id))
        .collect();
    let ids: Vec<(usize, String)> = (0..n)
        .map(|i| (i, by_name[&format!("user{i}")].clone()))
        .collect();
    for (i, id) in &ids {
        if i.is_multiple_of(11) {
            continue;
        }
        let user = store.user(id).expect("read").expect("there");
        let fingerprint = if i.is_multiple_of(7) {
            "changed-since".to_string()
        } else {
            user.fingerprint(policy)
        };
        let link = Link {
            remote_id: format!("remote-{i}"),
            version: Some(format!("W/\"{i}\"")),
            snapshot: Some(
                json!({"userName": user.name, "emails": [{"value": user.mail}]}).to_string(),
            ),
        };
        store
            .save_link(id, Some(&link), &fingerprint)
            .expect("linked");
    }
    for gone in 0..30 {
        let link = Link {
            remote_id: format!("remote-gone-{gone}"),
            version: None,
            snapshot: None,
        };
        store
            .save_link(&format!("gone-{gone:03}"), Some(&link), "whatever")
            .expect("linked");
    }
}

/// A plan as counters and each user's (event, planned action), by id.
fn summary(plan: &host_example::sync::SyncPlan) -> (u64, u64, u64, BTreeMap<String, String>) {
    let work = plan
        .work
        .iter()
        .map(|w| (w.user.id.clone(), format!("{:?} {:?}", w.event, w.planned)))
        .collect();
    (plan.unchanged, plan.linked, plan.parked, work)
}

/// On the store at `url`: the paged plan is the whole plan, normal and full.
fn the_paged_plan_is_the_whole_plan(url: &DatabaseUrl) {
    let mut store = Store::open_url(url, Duration::from_secs(30)).expect("a store");
    let n = host_example::sync_pages::PAGE * 2 + 345;
    fill(&mut store, n, "");
    let whole = host_example::sync::plan(runtime(), &settings(), &store, false).expect("a plan");
    let mut db = Db::connect(url).expect("a connection");
    let paged =
        host_example::sync_pages::plan_paged(runtime(), &settings(), &mut db, &store, false)
            .expect("a paged plan");
    assert_eq!(summary(&paged), summary(&whole));
    // Pages of 1,000: the same plan across page boundaries.
    let mut small = host_example::sync::SyncPlan::default();
    let paging = settings();
    let mut planner =
        PagedPlanner::new(runtime(), &paging, false, &IdRange::ALL, 1000).expect("a planner");
    while planner
        .next_page(&mut db, &store, &mut small)
        .expect("a page")
    {}
    assert_eq!(summary(&small), summary(&whole));
    // Two ranges (a shared reconcile's partitions) plan the users of the whole, and no
    // deleted user's link (the run plans those once).
    let mut ids: Vec<String> = store
        .all_users()
        .expect("users")
        .into_iter()
        .map(|u| u.id)
        .collect();
    ids.sort();
    let mid = ids[ids.len() / 3].clone();
    let halves = [
        IdRange {
            after: None,
            upto: Some(mid.clone()),
        },
        IdRange {
            after: Some(mid),
            upto: None,
        },
    ]
    .map(|range| {
        plan_paged_in(runtime(), &settings(), &mut db, &store, false, &range).expect("a range")
    });
    let (whole_unchanged, _, whole_parked, mut whole_work) = summary(&whole);
    whole_work.retain(|_, w| !w.contains("Deleted"));
    let mut halves_work = summary(&halves[0]).3;
    halves_work.extend(summary(&halves[1]).3);
    assert_eq!(halves_work, whole_work);
    assert_eq!(
        (
            halves[0].unchanged + halves[1].unchanged,
            halves[0].parked + halves[1].parked
        ),
        (whole_unchanged, whole_parked)
    );
    let (unchanged, _, _, work) = summary(&paged);
    // The store's shape shows in the plan: nothing was lost to a page boundary.
    let changed = (0..n)
        .filter(|i| !i.is_multiple_of(11) && i.is_multiple_of(7))
        .count();
    let unlinked = (0..n).filter(|i| i.is_multiple_of(11)).count();
    assert_eq!(unchanged as usize, n - changed - unlinked);
    assert_eq!(work.len(), changed + unlinked + 30);
    assert_eq!(work.values().filter(|w| w.contains("Deleted")).count(), 30);
    // The links of the users to call are whole (snapshot included), as the whole plan's.
    let links = |plan: &host_example::sync::SyncPlan| -> BTreeMap<String, String> {
        plan.work
            .iter()
            .map(|w| {
                let link = w.link.as_ref().map(|l| {
                    (
                        l.link.remote_id.clone(),
                        l.link.snapshot.clone(),
                        l.link.version.clone(),
                        l.fingerprint.clone(),
                    )
                });
                (w.user.id.clone(), format!("{link:?}"))
            })
            .collect()
    };
    assert_eq!(links(&paged), links(&whole));
    // A full (verifying) plan takes every linked user too.
    let full = host_example::sync_pages::plan_paged(runtime(), &settings(), &mut db, &store, true)
        .expect("a full plan");
    let whole_full =
        host_example::sync::plan(runtime(), &settings(), &store, true).expect("a plan");
    assert_eq!(summary(&full), summary(&whole_full));
}

/// On the store at `url`: links fingerprinted by a version before the policy digest (the
/// whole policy hashed with each user) still say "unchanged" after the upgrade, to the
/// paged plan and the whole plan; the paged plan rewrites them in the current form, and
/// a user changed since is still changed.
fn fingerprints_of_the_version_before_are_unchanged_and_rewritten(url: &DatabaseUrl) {
    let mut store = Store::open_url(url, Duration::from_secs(30)).expect("a store");
    let policy = r#"{"deprovision": "deactivate"}"#;
    let settings = ConnectorSettings {
        policy_json: policy.into(),
        ..settings()
    };
    let n = 40;
    store
        .import_users((0..n).map(|i| Ok(record(i))))
        .expect("users imported");
    let users = store.all_users().expect("users");
    let changed = &users[3].id;
    for (i, user) in users.iter().enumerate() {
        let link = Link {
            remote_id: format!("remote-{i}"),
            version: None,
            snapshot: Some(json!({"userName": user.name}).to_string()),
        };
        let fingerprint = if &user.id == changed {
            "0123456789abcdef".to_string()
        } else {
            user.legacy_fingerprint(policy)
        };
        store
            .save_link(&user.id, Some(&link), &fingerprint)
            .expect("linked");
    }
    let whole = host_example::sync::plan(runtime(), &settings, &store, false).expect("a plan");
    let mut db = Db::connect(url).expect("a connection");
    let paged = host_example::sync_pages::plan_paged(runtime(), &settings, &mut db, &store, false)
        .expect("a paged plan");
    assert_eq!(summary(&paged), summary(&whole));
    assert_eq!(paged.unchanged as usize, n - 1);
    assert_eq!(
        paged.work.iter().map(|w| &w.user.id).collect::<Vec<_>>(),
        vec![changed]
    );
    for user in &users {
        let stored = store.link(&user.id).expect("read").expect("linked");
        if &user.id == changed {
            assert_eq!(
                stored.fingerprint, "0123456789abcdef",
                "a changed user's is kept"
            );
        } else {
            assert_eq!(stored.fingerprint, user.fingerprint(policy), "rewritten");
        }
    }
    // The next plan finds them in the current form: the same plan.
    let again = host_example::sync_pages::plan_paged(runtime(), &settings, &mut db, &store, false)
        .expect("a paged plan");
    assert_eq!(summary(&again), summary(&whole));
}

#[test]
fn the_paged_plan_is_the_whole_plan_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("scim-sync-pages-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temp dir");
    the_paged_plan_is_the_whole_plan(&DatabaseUrl::Sqlite(dir.join("store.db")));
    fingerprints_of_the_version_before_are_unchanged_and_rewritten(&DatabaseUrl::Sqlite(
        dir.join("upgraded.db"),
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_paged_plan_is_the_whole_plan_on_postgres_and_mariadb() {
    use host_example::database::test_support::{TestMariaDb, TestPostgres};
    let pg = TestPostgres::start().expect("PostgreSQL starts");
    let url = pg.create_database("pages").expect("a database");
    the_paged_plan_is_the_whole_plan(&DatabaseUrl::parse(&url, Path::new("/")).expect("a URL"));
    let url = pg.create_database("upgraded").expect("a database");
    fingerprints_of_the_version_before_are_unchanged_and_rewritten(
        &DatabaseUrl::parse(&url, Path::new("/")).expect("a URL"),
    );
    drop(pg);
    let maria = TestMariaDb::start().expect("MariaDB starts");
    let url = maria.create_database("pages").expect("a database");
    the_paged_plan_is_the_whole_plan(&DatabaseUrl::parse(&url, Path::new("/")).expect("a URL"));
    let url = maria.create_database("upgraded").expect("a database");
    fingerprints_of_the_version_before_are_unchanged_and_rewritten(
        &DatabaseUrl::parse(&url, Path::new("/")).expect("a URL"),
    );
}

/// One sync's summary without its request counts (they depend on how the workers' batches
/// happened to fill).
fn outcome(summary: &host_example::sync::SyncSummary) -> host_example::sync::SyncSummary {
    host_example::sync::SyncSummary {
        requests: 0,
        bulk_requests: 0,
        ..summary.clone()
    }
}

/// A first sync, a resync of changed, blocked and deleted users, a no-change resync and a
/// resync refused by the deprovisioning threshold, into a scim2-server of its own, with a
/// sync that holds at most `hold` users that need a call: the summaries, and the users the
/// server holds after each step.
fn story(hold: usize) -> Vec<(host_example::sync::SyncSummary, u64)> {
    use host_example::config::Threshold;
    use host_example::sync::{SyncOptions, SyncProgress, sync_paged_holding};
    use scim_provisioner_tests::{peers, site};
    let peer = peers::scim2_server().expect("scim2-server starts");
    let dir = site::temp_dir("sync-pages-stream");
    let url = DatabaseUrl::Sqlite(dir.join("store.db"));
    let mut store = Store::open_url(&url, Duration::from_secs(30)).expect("a store");
    let mut db = Db::connect(&url).expect("a connection");
    let settings = ConnectorSettings {
        base_url: peer.base_url.clone(),
        credentials: Credentials::Bearer(peer.token.clone()),
        timeout_ms: 10_000,
        policy_json: String::new(),
    };
    let options = SyncOptions {
        plan_only: false,
        allow_deletes: false,
        threshold: Threshold::Percent(10.0),
        concurrency: 4,
        batch_size: 25,
        max_attempts: 3,
        progress: true,
        full: false,
    };
    let remote_users = || -> u64 {
        let (status, body) =
            peers::get_json(&peer.url("/Users?count=1"), &peer.token).expect("GET /Users");
        assert_eq!(status, 200, "{body}");
        body["totalResults"].as_u64().expect("totalResults")
    };
    let n = 300;
    store
        .import_users((0..n).map(|i| Ok(site::editor(&format!("s{i:04}")))))
        .expect("users imported");
    let mut steps = Vec::new();
    let sync = |store: &mut Store, db: &mut Db| {
        let mut progress = Vec::new();
        let summary = sync_paged_holding(
            runtime(),
            &settings,
            store,
            db,
            &options,
            &mut |p| progress.push(p),
            hold,
        );
        (summary, progress)
    };
    // 1. The first sync creates everyone; the progress counts them all.
    let (first, progress) = sync(&mut store, &mut db);
    let first = first.expect("the first sync");
    assert_eq!((first.created, first.failed), (n as u64, 0), "{first}");
    assert_eq!(
        progress.first(),
        Some(&SyncProgress::Started { total: n as u64 })
    );
    let done = progress
        .iter()
        .filter(|p| matches!(p, SyncProgress::UserDone { .. }))
        .count();
    assert_eq!(done, n);
    steps.push((outcome(&first), remote_users()));
    // 2. Changed in the CMS without events (an import): 60 new addresses, 10 blocked, 5
    //    deleted.
    let users = store.all_users().expect("users");
    let changed = users.iter().enumerate().filter_map(|(i, u)| {
        let mut u = u.clone();
        match i % 10 {
            0 | 5 => u.mail = format!("new.{}", u.mail),
            3 if i < 100 => u.active = false,
            _ => return None,
        }
        Some(Ok(u))
    });
    store.import_users(changed).expect("changes imported");
    for u in users.iter().skip(1).step_by(60) {
        db.execute("DELETE FROM users WHERE id = ?", &[u.id.as_str().into()])
            .expect("deleted");
    }
    let (second, _) = sync(&mut store, &mut db);
    let second = second.expect("the resync");
    assert_eq!(
        (
            second.updated,
            second.deactivated + second.deleted,
            second.failed
        ),
        (60, 15, 0),
        "{second}"
    );
    steps.push((outcome(&second), remote_users()));
    // 3. Nothing changed: nothing sent.
    let (third, _) = sync(&mut store, &mut db);
    let third = third.expect("the no-change resync");
    assert_eq!(
        (third.unchanged, third.requests),
        (n as u64 - 5, 0),
        "{third}"
    );
    steps.push((outcome(&third), remote_users()));
    // 4. 40 users deleted at once: past the threshold (10% of the linked), nothing is sent.
    for u in store.all_users().expect("users").iter().take(40) {
        db.execute("DELETE FROM users WHERE id = ?", &[u.id.as_str().into()])
            .expect("deleted");
    }
    let (refused, _) = sync(&mut store, &mut db);
    let refused = refused.expect_err("the threshold stops it");
    assert!(refused.to_string().contains("threshold"), "{refused:#}");
    steps.push((Default::default(), remote_users()));
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    steps
}

/// A sync streamed page by page (its work past what it holds) does what a sync that holds
/// its whole plan does: the same summaries, the same users on the server.
#[test]
fn a_streamed_sync_does_what_a_held_one_does() {
    let streamed = story(20);
    let held = story(host_example::sync::HOLD);
    assert_eq!(streamed, held);
    assert_eq!(
        streamed
            .iter()
            .map(|(_, remote)| *remote)
            .collect::<Vec<_>>(),
        vec![300, 300, 300, 300],
        "deprovisioning deactivates or deletes; the refused sync sent nothing"
    );
}
