//! The three provisioning modes of the sample host, end to end: manual (`provision`),
//! automatic (a store change, its outbox event, then delivery) and scheduled (`sync`), with
//! the built component under wasmtime against scim2-server (and SCIMMY where cheap). Every
//! result is read back from the server with plain HTTP GETs.
//!
//! The modes are driven through host-example's library (`Store`, `delivery::deliver`,
//! `sync::sync`), as its CLI does; one smoke test runs the CLI binary itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use host_example::clock::now_ms;
use host_example::config::Threshold;
use host_example::delivery::{self, DeliveryReport};
use host_example::logging::LogSink;
use host_example::store::{Store, UserRecord};
use host_example::sync::{SyncOptions, SyncSummary, sync};
use host_example::types::{Action, UserEvent};
use host_example::{ConnectorSettings, Credentials, Session, describe_error};
use scim_provisioner_tests::component::{find_users, open, remote_user, runtime, settings};
use scim_provisioner_tests::peers::{self, Peer, get_json};
use scim_provisioner_tests::site;
use serde_json::{Value, json};

/// The policy that lets the engine delete remote users.
const DELETE_POLICY: &str = r#"{"operations":{"delete":true},"deprovision":"delete"}"#;
/// Only editors are provisioned.
const EDITOR_SCOPE: &str = r#"{"scope":{"field":"roles","any_of":["editor"]}}"#;
/// Delivery attempts before an event is parked, as the host's default.
const MAX_ATTEMPTS: u32 = 8;

// ---------------------------------------------------------------------------------------
// The sample site: a store in a temporary directory, and the settings for one peer.

struct Site {
    settings: ConnectorSettings,
    store: Store,
    dir: PathBuf,
}

impl Site {
    fn new(peer: &Peer, policy: &str) -> Site {
        Site::with_settings(settings(peer, policy))
    }

    fn with_settings(settings: ConnectorSettings) -> Site {
        let dir = site::temp_dir("modes");
        let store = Store::open(&dir.join("site.db")).expect("the store opens");
        Site {
            settings,
            store,
            dir,
        }
    }

    fn session(&self) -> Session {
        open(&self.settings)
    }

    /// Automatic mode: delivers the due outbox events, as the CLI does after each change.
    fn deliver(&mut self, drain: bool) -> DeliveryReport {
        let mut session = self.session();
        delivery::deliver(
            &mut self.store,
            &mut session,
            &self.settings.policy_json,
            MAX_ATTEMPTS,
            drain,
        )
        .expect("delivery runs")
    }

    fn sync(&mut self, options: &SyncOptions) -> anyhow::Result<SyncSummary> {
        sync(runtime(), &self.settings, &mut self.store, options)
    }

    /// Adds a user and records its `created` event.
    fn add(&mut self, name: &str) -> UserRecord {
        self.store
            .add_user(site::editor(name), true)
            .expect("the user is added")
    }

    /// The remote id the store links a user to.
    fn remote_id(&self, user_id: &str) -> String {
        self.store
            .link(user_id)
            .expect("the store reads")
            .unwrap_or_else(|| panic!("user {user_id} has no link"))
            .link
            .remote_id
    }

    /// The user's remote twin, read with a plain GET (must exist).
    fn remote(&self, peer: &Peer, user_id: &str) -> Value {
        let id = self.remote_id(user_id);
        let (status, body) = remote_user(peer, &id);
        assert_eq!(status, 200, "GET /Users/{id} of user {user_id}: {body}");
        body
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn options(threshold: Threshold, concurrency: u32) -> SyncOptions {
    SyncOptions {
        plan_only: false,
        allow_deletes: false,
        threshold,
        concurrency,
        batch_size: 100,
        max_attempts: MAX_ATTEMPTS,
        progress: false,
        full: false,
    }
}

fn default_options() -> SyncOptions {
    options(Threshold::Percent(10.0), 8)
}

/// Every user on the server, read page by page with plain GETs.
fn server_users(peer: &Peer) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let url = peer.url(&format!("/Users?startIndex={}&count=1000", out.len() + 1));
        let (status, body) = get_json(&url, &peer.token).expect("GET /Users");
        assert_eq!(status, 200, "GET {url}: {body}");
        let page = body["Resources"].as_array().cloned().unwrap_or_default();
        let total = body["totalResults"].as_u64().unwrap_or(0) as usize;
        let empty = page.is_empty();
        out.extend(page);
        if empty || out.len() >= total {
            return out;
        }
    }
}

/// How many users the server holds (`totalResults`).
fn server_count(peer: &Peer) -> Option<u64> {
    let (status, body) = get_json(&peer.url("/Users?count=1"), &peer.token).ok()?;
    (status == 200)
        .then(|| body["totalResults"].as_u64())
        .flatten()
}

/// The server's userNames, each with how often it occurs.
fn server_user_names(peer: &Peer) -> BTreeMap<String, usize> {
    let mut names = BTreeMap::new();
    for u in server_users(peer) {
        let name = u["userName"].as_str().unwrap_or_default().to_lowercase();
        *names.entry(name).or_default() += 1;
    }
    names
}

/// Asserts that the server holds exactly these users, each once.
fn assert_server_holds_exactly(peer: &Peer, expected: &BTreeSet<String>) {
    let names = server_user_names(peer);
    let duplicates: Vec<_> = names.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicates.is_empty(),
        "duplicates on the server: {duplicates:?}"
    );
    let have: BTreeSet<String> = names.into_keys().collect();
    let missing: Vec<_> = expected.difference(&have).collect();
    let extra: Vec<_> = have.difference(expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the server does not hold exactly the CMS users: missing {} {:?}, extra {} {:?}",
        missing.len(),
        missing.iter().take(10).collect::<Vec<_>>(),
        extra.len(),
        extra.iter().take(10).collect::<Vec<_>>()
    );
}

fn cms_names(store: &Store) -> BTreeSet<String> {
    store
        .all_users()
        .expect("the store reads")
        .into_iter()
        .map(|u| u.name.to_lowercase())
        .collect()
}

fn work_email(remote: &Value) -> Option<String> {
    remote["emails"]
        .as_array()?
        .iter()
        .find(|e| e["type"] == "work")
        .and_then(|e| e["value"].as_str())
        .map(String::from)
}

fn active(remote: &Value) -> Option<bool> {
    remote.get("active").and_then(Value::as_bool)
}

/// Settings that reach nothing: port 1 on loopback refuses every connection.
fn unreachable_settings(policy: &str) -> ConnectorSettings {
    ConnectorSettings {
        base_url: "http://127.0.0.1:1/v2".into(),
        credentials: Credentials::Bearer("unused-token".into()),
        timeout_ms: 2_000,
        policy_json: policy.to_string(),
    }
}

/// Imports `n` users named `{prefix}00000`… (no events: a sync provisions them).
fn import(site: &mut Site, prefix: &str, n: usize) {
    let written = site
        .store
        .import_users((0..n).map(|i| Ok(site::editor(&format!("{prefix}{i:05}")))))
        .expect("the import works");
    assert_eq!(written, n);
}

// ---------------------------------------------------------------------------------------
// 1. Manual

fn manual(peer: &Peer) {
    let mut site = Site::new(peer, "");
    let user = site
        .store
        .add_user(site::editor("manny"), false)
        .expect("added");
    let fingerprint = user.fingerprint(&site.settings.policy_json);

    // `provision manny`: created, and the link is stored.
    let mut session = site.session();
    let outcome = session
        .provision(&user.to_cms_user(), UserEvent::Reconcile, None)
        .expect("no trap")
        .unwrap_or_else(|e| panic!("{}: {}", peer.name, describe_error(&e)));
    assert_eq!(outcome.action, Action::Created, "{outcome:?}");
    site.store
        .save_link(&user.id, outcome.link.as_ref(), &fingerprint)
        .expect("link saved");
    let remote = site.remote(peer, &user.id);
    assert_eq!(remote["userName"], "manny");
    assert_eq!(work_email(&remote).as_deref(), Some("manny@example.com"));

    // Again: unchanged, nothing written.
    let link = site.store.link(&user.id).expect("reads").expect("linked");
    let outcome = session
        .provision(&user.to_cms_user(), UserEvent::Reconcile, Some(&link.link))
        .expect("no trap")
        .expect("provisions");
    assert_eq!(outcome.action, Action::Unchanged, "{outcome:?}");
    assert_eq!(outcome.requests, 0, "the session knows the server already");
    assert_eq!(site.remote(peer, &user.id)["meta"], remote["meta"]);

    // A dry run of a change: the PATCH is held back and the server keeps the old email.
    let changed = site
        .store
        .change_user(&user.id, UserEvent::Updated, |u| {
            u.mail = "manny.new@example.com".into()
        })
        .expect("changed");
    let (sink, _lines) = LogSink::memory();
    let mut dry = runtime()
        .open_dry_run(&site.settings, sink)
        .expect("no trap")
        .expect("opens");
    let result = dry
        .provision(
            &changed.to_cms_user(),
            UserEvent::Reconcile,
            Some(&link.link),
        )
        .expect("no trap");
    assert!(
        result.is_err(),
        "a dry run stops at its first write: {result:?}"
    );
    let held = dry.take_held();
    assert_eq!(held.len(), 1, "{}: {held:?}", peer.name);
    assert_eq!(held[0].method, "PATCH");
    assert!(held[0].url.ends_with(&link.link.remote_id), "{held:?}");
    assert!(held[0].body.contains("manny.new@example.com"), "{held:?}");
    let after = site.remote(peer, &user.id);
    assert_eq!(after["meta"], remote["meta"], "a dry run changes nothing");
    assert_eq!(work_email(&after).as_deref(), Some("manny@example.com"));

    // A dry run of a user never provisioned: the look-ups are sent, the POST is held.
    let newbie = site
        .store
        .add_user(site::editor("newbie"), false)
        .expect("added");
    let (sink, _lines) = LogSink::memory();
    let mut dry = runtime()
        .open_dry_run(&site.settings, sink)
        .expect("no trap")
        .expect("opens");
    let _ = dry
        .provision(&newbie.to_cms_user(), UserEvent::Reconcile, None)
        .expect("no trap");
    let held = dry.take_held();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].method, "POST");
    assert!(held[0].body.contains("\"newbie\""), "{held:?}");
    assert!(
        find_users(peer, "userName eq \"newbie\"").is_empty(),
        "a dry run created the user"
    );
}

#[test]
fn manual_on_scim2_server() {
    manual(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn manual_on_scimmy() {
    manual(&peers::scimmy().expect("SCIMMY app starts"));
}

// ---------------------------------------------------------------------------------------
// 2. Automatic: each store change writes its event, then it is delivered at once

fn automatic(peer: &Peer) {
    let mut site = Site::new(peer, "");
    let alice = site.add("alice");
    assert_eq!(site.store.outbox_depth().unwrap(), (1, 0));
    let report = site.deliver(false);
    assert_eq!(report.delivered, 1, "{report:?}");
    assert_eq!(site.store.outbox_depth().unwrap(), (0, 0));
    let remote = site.remote(peer, &alice.id);
    assert_eq!(remote["userName"], "alice");
    assert_eq!(remote["externalId"], alice.id.as_str());
    assert_eq!(active(&remote), Some(true));

    site.store
        .change_user(&alice.id, UserEvent::Updated, |u| {
            u.mail = "alice.l@example.com".into()
        })
        .unwrap();
    assert_eq!(site.deliver(false).delivered, 1);
    assert_eq!(
        work_email(&site.remote(peer, &alice.id)).as_deref(),
        Some("alice.l@example.com")
    );

    site.store
        .change_user(&alice.id, UserEvent::Blocked, |u| u.active = false)
        .unwrap();
    assert_eq!(site.deliver(false).delivered, 1);
    assert_eq!(active(&site.remote(peer, &alice.id)), Some(false));

    site.store
        .change_user(&alice.id, UserEvent::Unblocked, |u| u.active = true)
        .unwrap();
    assert_eq!(site.deliver(false).delivered, 1);
    let remote = site.remote(peer, &alice.id);
    assert_eq!(active(&remote), Some(true));
    assert_eq!(work_email(&remote).as_deref(), Some("alice.l@example.com"));

    // Deleting under the default policy deactivates, and the link is dropped.
    let remote_id = site.remote_id(&alice.id);
    site.store
        .change_user(&alice.id, UserEvent::Deleted, |_| {})
        .unwrap();
    assert_eq!(site.deliver(false).delivered, 1);
    assert!(site.store.link(&alice.id).unwrap().is_none());
    let (status, remote) = remote_user(peer, &remote_id);
    assert_eq!(status, 200, "deactivated, not deleted: {remote}");
    assert_eq!(active(&remote), Some(false));

    let log: Vec<String> = site
        .store
        .log_entries(Some(&alice.id), false, 10)
        .unwrap()
        .into_iter()
        .rev()
        .map(|e| format!("{} {}", e.operation, e.outcome))
        .collect();
    assert_eq!(
        log,
        [
            "created created",
            "updated updated",
            "blocked deactivated",
            "unblocked updated",
            "deleted deactivated"
        ]
    );

    // With deletes enabled, deleting the CMS user deletes the remote one.
    let mut site = Site::new(peer, DELETE_POLICY);
    let dora = site.add("dora");
    assert_eq!(site.deliver(false).delivered, 1);
    let remote_id = site.remote_id(&dora.id);
    site.store
        .change_user(&dora.id, UserEvent::Deleted, |_| {})
        .unwrap();
    assert_eq!(site.deliver(false).delivered, 1);
    assert_eq!(remote_user(peer, &remote_id).0, 404);
    assert!(site.store.link(&dora.id).unwrap().is_none());
}

#[test]
fn automatic_on_scim2_server() {
    automatic(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn automatic_on_scimmy() {
    automatic(&peers::scimmy().expect("SCIMMY app starts"));
}

/// A new user must never get the id of a deleted one: the id is the remote `externalId`,
/// which the engine matches on before creating, so a reused id adopts (and reactivates) the
/// deleted user's deactivated remote account.
#[test]
fn a_deleted_users_id_is_never_reused() {
    let peer = peers::scim2_server().expect("scim2-server starts");
    let mut site = Site::new(&peer, "");
    site.add("alice");
    let bob = site.add("bob");
    assert_eq!(site.deliver(false).delivered, 2);
    let bobs_remote = site.remote_id(&bob.id);
    site.store
        .change_user(&bob.id, UserEvent::Deleted, |_| {})
        .unwrap();
    assert_eq!(site.deliver(false).delivered, 1);

    let carol = site.add("carol");
    assert_ne!(carol.id, bob.id, "bob's id was given to carol");
    assert_eq!(site.deliver(false).delivered, 1);
    assert_ne!(site.remote_id(&carol.id), bobs_remote);
    let (_, bobs) = remote_user(&peer, &bobs_remote);
    assert_eq!(bobs["userName"], "bob", "{bobs}");
    assert_eq!(active(&bobs), Some(false), "{bobs}");

    // The same after an import (ids assigned in bulk).
    site.store
        .change_user(&carol.id, UserEvent::Deleted, |_| {})
        .unwrap();
    assert_eq!(site.deliver(false).delivered, 1);
    import(&mut site, "imp", 2);
    let ids: Vec<String> = site
        .store
        .all_users()
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert!(!ids.contains(&carol.id), "carol's id was reused: {ids:?}");
}

// ---------------------------------------------------------------------------------------
// 3. Outbox durability

#[test]
fn a_backlog_of_events_is_delivered_through_bulk() {
    let peer = peers::scim2_server().expect("scim2-server starts");
    let mut site = Site::new(&peer, "");
    // Forty users created while nothing delivered (the server was unreachable, say).
    let names: Vec<String> = (0..40).map(|i| format!("backlog{i:02}")).collect();
    for name in &names {
        site.store
            .add_user(site::editor(name), true)
            .expect("the user is added");
    }
    assert_eq!(site.store.outbox_depth().unwrap(), (40, 0));
    let report = site.deliver(true);
    assert_eq!(report.delivered, 40, "{report:?}");
    // Discovery, a look-up per user for each of the three matching attributes, and the
    // creations in one bulk request rather than forty POSTs.
    assert_eq!(report.bulk_requests, 1, "{report:?}");
    assert_eq!(report.requests, 1 + 40 * 3 + 1, "{report:?}");
    assert_eq!(site.store.outbox_depth().unwrap(), (0, 0));
    assert_server_holds_exactly(&peer, &names.iter().cloned().collect());
    assert_eq!(site.store.all_links().unwrap().len(), 40);
}

#[test]
fn the_outbox_keeps_every_change_while_the_server_is_down() {
    let mut peer = peers::scim2_server().expect("scim2-server starts");
    let mut site = Site::new(&peer, "");
    let carl = site.add("carl");
    assert_eq!(site.deliver(false).delivered, 1);

    peer.stop();
    let before = now_ms();
    let ann = site.add("ann");
    let ben = site.add("ben");
    site.store
        .change_user(&carl.id, UserEvent::Updated, |u| {
            u.mail = "carl.new@example.com".into()
        })
        .unwrap();
    let report = site.deliver(false);
    assert_eq!(
        report,
        DeliveryReport {
            delivered: 0,
            retrying: 3,
            parked: 0,
            // The one attempt to discover the server, which could not connect.
            requests: 1,
            bulk_requests: 0,
        }
    );
    let pending = site.store.pending_events().unwrap();
    assert_eq!(pending.len(), 3, "{pending:?}");
    for e in &pending {
        assert_eq!(e.attempts, 1, "{e:?}");
        assert!(e.next_attempt_ms > before, "a future retry time: {e:?}");
        assert!(!e.parked, "{e:?}");
        assert!(
            e.last_error
                .as_deref()
                .is_some_and(|m| m.contains("cannot connect")),
            "{e:?}"
        );
    }
    let failures = site.store.log_entries(None, true, 10).unwrap();
    assert_eq!(failures.len(), 3, "{failures:?}");
    // Nothing is due yet: a delivery now sends nothing and loses nothing.
    assert_eq!(site.deliver(false), DeliveryReport::default());
    assert_eq!(site.store.outbox_depth().unwrap(), (3, 0));

    // The server comes back, empty: carl's link points to a user it lost, so his update
    // meets a 404 and creates him again.
    peer.start_again().expect("scim2-server starts again");
    let report = site.deliver(true);
    assert_eq!(report.delivered, 3, "{report:?}");
    assert_eq!(site.store.outbox_depth().unwrap(), (0, 0));
    let expected: BTreeSet<String> = ["ann", "ben", "carl"].map(String::from).into();
    assert_server_holds_exactly(&peer, &expected);
    assert_eq!(
        work_email(&site.remote(&peer, &carl.id)).as_deref(),
        Some("carl.new@example.com")
    );
    for u in [&ann, &ben] {
        assert_eq!(site.remote(&peer, &u.id)["externalId"], u.id.as_str());
    }
}

/// A sync leaves the users whose changes wait in the outbox to the outbox: the reconcile
/// used to send a user's current state while two older changes were still queued, and the
/// older one, delivered after it, left the server on a stale value for good (seen under
/// injected faults). The queued changes then go out in order and the server ends on the
/// latest.
#[test]
fn a_sync_leaves_users_with_queued_changes_to_the_outbox() {
    let mut peer = peers::scim2_server().expect("scim2-server starts");
    let mut site = Site::new(&peer, "");
    let carl = site.add("carl");
    assert_eq!(site.deliver(false).delivered, 1);

    peer.stop();
    for version in ["v2", "v3"] {
        site.store
            .change_user(&carl.id, UserEvent::Updated, |u| {
                u.mail = format!("carl.{version}@example.com")
            })
            .unwrap();
    }
    let dora = site
        .store
        .import_users([Ok(site::editor("dora"))])
        .expect("imported");
    assert_eq!(dora, 1);
    assert_eq!(site.deliver(true).retrying, 1, "carl's first change fails");
    let mut plan = host_example::sync::plan(runtime(), &site.settings, &site.store, false)
        .expect("the plan is made");
    let names = |plan: &host_example::sync::SyncPlan| -> Vec<String> {
        plan.work.iter().map(|w| w.user.name.clone()).collect()
    };
    // Shown before a sync, the plan keeps carl: the sync's drain sends his changes first.
    assert_eq!(names(&plan), ["carl", "dora"]);
    plan.leave_queued_to_outbox(&site.store)
        .expect("the store reads");
    assert_eq!(plan.waiting, 1);
    assert_eq!(
        names(&plan),
        ["dora"],
        "after the drain, carl is the outbox's"
    );

    peer.start_again().expect("scim2-server starts again");
    let summary = site.sync(&default_options()).expect("the sync runs");
    assert_eq!(summary.outbox.delivered, 2, "{summary}");
    assert_eq!(summary.waiting, 0, "{summary}");
    assert_eq!(site.store.outbox_depth().unwrap(), (0, 0));
    assert_eq!(
        work_email(&site.remote(&peer, &carl.id)).as_deref(),
        Some("carl.v3@example.com")
    );
}

/// A drain (as a sync does) tries every queued event once, however many there are.
#[test]
fn a_drain_tries_every_queued_event_once() {
    let mut site = Site::with_settings(unreachable_settings(""));
    let n = 300;
    for i in 0..n {
        site.add(&format!("q{i:04}"));
    }
    let report = site.deliver(true);
    assert_eq!(report.retrying, n, "{report:?}");
    let pending = site.store.pending_events().unwrap();
    assert_eq!(pending.len() as u64, n);
    let untried = pending.iter().filter(|e| e.attempts == 0).count();
    assert_eq!(untried, 0, "{untried} events were never tried");
}

// ---------------------------------------------------------------------------------------
// 4. The server killed in the middle of a sync

#[test]
fn a_sync_survives_the_server_being_killed_midway() {
    let mut peer = peers::scim2_server().expect("scim2-server starts");
    let mut site = Site::new(&peer, "");
    let n = 300;
    import(&mut site, "k", n);
    let settings = site.settings.clone();
    // Small batches, so that some bulk answers (and their links) arrive before the kill.
    let opts = SyncOptions {
        batch_size: 5,
        ..default_options()
    };
    let store = &mut site.store;
    let (first, seen) = std::thread::scope(|scope| {
        let handle = scope.spawn(|| sync(runtime(), &settings, store, &opts));
        let mut seen = 0;
        while !handle.is_finished() {
            seen = server_count(&peer).unwrap_or(0);
            if seen >= 60 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        peer.stop();
        std::thread::sleep(Duration::from_millis(200));
        peer.start_again().expect("scim2-server starts again");
        (handle.join().expect("the sync thread"), seen)
    });
    let first = first.expect("the sync runs to its end");
    println!("first sync (killed after {seen} created): {first}");
    assert!(seen >= 60, "the sync ended before the kill: {first}");

    // Users linked before the restart point to remote ids the new server never had.
    let lost: Vec<(String, String)> = site
        .store
        .all_links()
        .unwrap()
        .into_iter()
        .filter(|(_, l)| remote_user(&peer, &l.link.remote_id).0 == 404)
        .map(|(id, l)| (id, l.link.remote_id))
        .collect();
    assert!(!lost.is_empty(), "some users were created before the kill");

    // Further syncs create what failed; at most 3 in all converge.
    let mut runs = 1;
    let mut last = first;
    while last.failed > 0 {
        assert!(runs < 3, "3 syncs did not converge: {last}");
        last = site.sync(&default_options()).expect("the sync runs");
        println!("sync {}: {last}", runs + 1);
        runs += 1;
    }
    let lost_ids: BTreeSet<&str> = lost.iter().map(|(id, _)| id.as_str()).collect();
    let lost_names: BTreeSet<String> = site
        .store
        .all_users()
        .unwrap()
        .into_iter()
        .filter(|u| lost_ids.contains(u.id.as_str()))
        .map(|u| u.name)
        .collect();
    let others: BTreeSet<String> = cms_names(&site.store)
        .difference(&lost_names)
        .cloned()
        .collect();
    assert_server_holds_exactly(&peer, &others);

    // The lost users change: each update meets a 404 and creates the user again.
    let changed: Vec<UserRecord> = site
        .store
        .all_users()
        .unwrap()
        .into_iter()
        .filter(|u| lost_ids.contains(u.id.as_str()))
        .map(|mut u| {
            u.fields.insert("field_last_name".into(), json!("Restored"));
            u
        })
        .collect();
    site.store
        .import_users(changed.into_iter().map(Ok))
        .expect("the change is stored");
    let summary = site.sync(&default_options()).expect("the sync runs");
    assert_eq!(summary.failed, 0, "{summary}");
    assert_eq!(summary.created as usize, lost.len(), "{summary}");
    assert_server_holds_exactly(&peer, &cms_names(&site.store));
    for (id, old_remote) in &lost {
        assert_ne!(&site.remote_id(id), old_remote, "user {id} was relinked");
        assert_eq!(site.remote(&peer, id)["name"]["familyName"], "Restored");
    }
    let summary = site.sync(&default_options()).expect("the sync runs");
    assert_eq!(summary.requests, 0, "{summary}");
    assert_eq!(summary.unchanged as usize, n, "{summary}");
}

/// After the server loses its data (a restore, an admin deleting users by hand), a sync
/// should bring every CMS user back without the CMS user having to change.
#[test]
fn a_sync_restores_remote_users_the_server_lost() {
    let mut peer = peers::scim2_server().expect("scim2-server starts");
    let mut site = Site::new(&peer, "");
    import(&mut site, "r", 5);
    assert_eq!(site.sync(&default_options()).unwrap().created, 5);
    peer.start_again().expect("scim2-server starts again");
    // A normal sync trusts what was last provisioned and sends nothing …
    let quiet = site.sync(&default_options()).expect("the sync runs");
    assert_eq!(quiet.requests, 0, "{quiet}");
    // … a full sync verifies every linked user and re-creates what the server lost.
    let full = SyncOptions {
        full: true,
        ..default_options()
    };
    let summary = site.sync(&full).expect("the full sync runs");
    println!("{summary}");
    assert_eq!(summary.created, 5, "{summary}");
    assert_server_holds_exactly(&peer, &cms_names(&site.store));
}

// ---------------------------------------------------------------------------------------
// 5. Replay

#[test]
fn a_replayed_created_event_makes_no_duplicate() {
    let peer = peers::scim2_server().expect("scim2-server starts");
    let mut site = Site::new(&peer, "");
    let rita = site.add("rita");
    assert_eq!(site.deliver(false).delivered, 1);
    let remote_id = site.remote_id(&rita.id);

    // The same event delivered again with the link: nothing to change.
    site.store
        .change_user(&rita.id, UserEvent::Created, |_| {})
        .unwrap();
    assert_eq!(site.deliver(false).delivered, 1);
    assert_eq!(
        site.store.log_entries(Some(&rita.id), false, 1).unwrap()[0].outcome,
        "unchanged"
    );

    // Replayed without the link (a host that lost it): the engine finds and adopts her.
    let mut session = site.session();
    let outcome = session
        .provision(&rita.to_cms_user(), UserEvent::Created, None)
        .expect("no trap")
        .expect("provisions");
    assert_eq!(outcome.action, Action::Adopted, "{outcome:?}");
    assert_eq!(outcome.link.expect("a link").remote_id, remote_id);

    // And through the outbox, with the link dropped.
    site.store.save_link(&rita.id, None, "").unwrap();
    site.store
        .change_user(&rita.id, UserEvent::Created, |_| {})
        .unwrap();
    assert_eq!(site.deliver(false).delivered, 1);
    assert_eq!(site.remote_id(&rita.id), remote_id);
    assert_eq!(find_users(&peer, "userName eq \"rita\"").len(), 1);
    assert_eq!(server_users(&peer).len(), 1);
}

// ---------------------------------------------------------------------------------------
// 6. Scheduled sync

#[test]
fn sync_sends_only_what_changed_and_guards_deprovisioning() {
    let peer = peers::scim2_server().expect("scim2-server starts");
    let mut site = Site::new(&peer, "");
    import(&mut site, "s", 10);
    let users = site.store.all_users().unwrap();

    let summary = site.sync(&default_options()).expect("sync");
    assert_eq!(summary.created, 10, "{summary}");
    assert_eq!(summary.failed, 0, "{summary}");
    assert_server_holds_exactly(&peer, &cms_names(&site.store));

    // Nothing changed: nothing is sent.
    let summary = site.sync(&default_options()).expect("sync");
    assert_eq!(summary.requests, 0, "{summary}");
    assert_eq!(summary.unchanged, 10, "{summary}");
    assert_eq!(summary.created + summary.updated, 0, "{summary}");

    // One user changed behind the host's back (no event): only that one is updated.
    let mut changed = users[3].clone();
    changed.mail = "s3.changed@example.com".into();
    let untouched_meta = site.remote(&peer, &users[4].id)["meta"].clone();
    site.store.import_users([Ok(changed.clone())]).unwrap();
    let summary = site.sync(&default_options()).expect("sync");
    assert_eq!(summary.updated, 1, "{summary}");
    assert_eq!(summary.unchanged, 9, "{summary}");
    assert_eq!(
        work_email(&site.remote(&peer, &changed.id)).as_deref(),
        Some("s3.changed@example.com")
    );
    assert_eq!(site.remote(&peer, &users[4].id)["meta"], untouched_meta);

    // One of ten deleted: deactivated (10 % of 10 is within the threshold).
    let gone = &users[0];
    let gone_remote = site.remote_id(&gone.id);
    site.store
        .change_user(&gone.id, UserEvent::Deleted, |_| {})
        .unwrap();
    let summary = site.sync(&default_options()).expect("sync");
    assert_eq!(summary.outbox.delivered, 1, "{summary}");
    assert_eq!(summary.failed, 0, "{summary}");
    let (status, remote) = remote_user(&peer, &gone_remote);
    assert_eq!(status, 200);
    assert_eq!(active(&remote), Some(false));
    assert!(site.store.link(&gone.id).unwrap().is_none());

    // Three more deleted while their events could not be delivered (parked): past a
    // threshold of 1, the sync refuses before sending anything.
    let victims = &users[5..8];
    let victim_remotes: Vec<String> = victims.iter().map(|u| site.remote_id(&u.id)).collect();
    for u in victims {
        site.store
            .change_user(&u.id, UserEvent::Deleted, |_| {})
            .unwrap();
    }
    let mut down = open(&unreachable_settings(""));
    let report = delivery::deliver(&mut site.store, &mut down, "", 1, false).unwrap();
    assert_eq!(report.parked, 3, "{report:?}");
    let before = server_users(&peer);
    let strict = options(Threshold::Count(1), 8);
    let err = site.sync(&strict).expect_err("past the threshold");
    let message = format!("{err:#}");
    assert!(message.contains("threshold"), "{message}");
    assert!(message.contains("nothing was sent"), "{message}");
    assert_eq!(server_users(&peer), before, "the server is unchanged");

    // A plan sends nothing either.
    let summary = site
        .sync(&SyncOptions {
            plan_only: true,
            ..strict.clone()
        })
        .expect("a plan");
    assert_eq!(
        summary,
        SyncSummary {
            unchanged: 6,
            ..SyncSummary::default()
        }
    );
    assert_eq!(server_users(&peer), before, "the server is unchanged");

    // With --allow-deletes it goes ahead.
    let summary = site
        .sync(&SyncOptions {
            allow_deletes: true,
            ..strict
        })
        .expect("sync");
    assert_eq!(summary.deactivated, 3, "{summary}");
    assert_eq!(summary.failed, 0, "{summary}");
    for id in &victim_remotes {
        let (status, remote) = remote_user(&peer, id);
        assert_eq!(status, 200);
        assert_eq!(active(&remote), Some(false), "{remote}");
    }
    let active_count = server_users(&peer)
        .iter()
        .filter(|u| active(u) == Some(true))
        .count();
    assert_eq!(active_count, 6);
    // And the next sync has nothing left to do.
    let summary = site.sync(&default_options()).expect("sync");
    assert_eq!(summary.requests, 0, "{summary}");
    assert_eq!(summary.unchanged, 6, "{summary}");
}

// ---------------------------------------------------------------------------------------
// 7. Scope

#[test]
fn a_user_who_leaves_the_scope_is_deactivated_by_the_next_sync() {
    let peer = peers::scim2_server().expect("scim2-server starts");
    let mut site = Site::new(&peer, EDITOR_SCOPE);
    let mut viewer = site::editor("vera");
    viewer.fields.insert("roles".into(), json!(["viewer"]));
    let ed = site.store.add_user(site::editor("ed"), false).unwrap();
    let eve = site.store.add_user(site::editor("eve"), false).unwrap();
    let emma = site.store.add_user(site::editor("emma"), false).unwrap();
    site.store.add_user(viewer, false).unwrap();
    let opts = options(Threshold::Count(10), 8);
    let summary = site.sync(&opts).expect("sync");
    assert_eq!(summary.created, 3, "{summary}");
    assert_eq!(summary.skipped, 1, "{summary}");
    let expected: BTreeSet<String> = ["ed", "eve", "emma"].map(String::from).into();
    assert_server_holds_exactly(&peer, &expected);

    // ed becomes a viewer through the CMS (an event); eve behind its back (no event).
    site.store
        .change_user(&ed.id, UserEvent::Updated, |u| {
            u.fields.insert("roles".into(), json!(["viewer"]));
        })
        .unwrap();
    let mut eve_viewer = eve.clone();
    eve_viewer.fields.insert("roles".into(), json!(["viewer"]));
    site.store.import_users([Ok(eve_viewer)]).unwrap();
    let summary = site.sync(&opts).expect("sync");
    assert_eq!(summary.outbox.delivered, 1, "{summary}");
    assert_eq!(summary.deactivated, 1, "{summary}");
    assert_eq!(summary.failed, 0, "{summary}");
    assert_eq!(active(&site.remote(&peer, &ed.id)), Some(false));
    assert_eq!(active(&site.remote(&peer, &eve.id)), Some(false));
    assert_eq!(active(&site.remote(&peer, &emma.id)), Some(true));
    assert_eq!(site.sync(&opts).expect("sync").requests, 0);

    // Back in scope: active again.
    site.store.import_users([Ok(eve.clone())]).unwrap();
    let summary = site.sync(&opts).expect("sync");
    assert_eq!(summary.updated, 1, "{summary}");
    assert_eq!(active(&site.remote(&peer, &eve.id)), Some(true));
}

// ---------------------------------------------------------------------------------------
// 8. Throughput

fn sync_many(n: usize) {
    let peer = peers::scim2_server().expect("scim2-server starts");
    let mut site = Site::new(&peer, "");
    import(&mut site, "t", n);
    let started = Instant::now();
    let summary = site
        .sync(&options(Threshold::Percent(10.0), 8))
        .expect("sync");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sync of {n} users at concurrency 8: {secs:.1} s, {:.0} users/s ({summary})",
        n as f64 / secs
    );
    assert_eq!(summary.created as usize, n, "{summary}");
    assert_eq!(summary.failed, 0, "{summary}");
    assert_eq!(server_users(&peer).len(), n);
    let started = Instant::now();
    let summary = site.sync(&default_options()).expect("sync");
    println!(
        "second sync: {:.2} s ({summary})",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(summary.requests, 0, "{summary}");
    assert_eq!(summary.unchanged as usize, n, "{summary}");
}

#[test]
fn sync_1000_users() {
    sync_many(1000);
}

#[test]
#[ignore = "slow: run with `cargo test -p scim-provisioner-tests --test modes -- --ignored sync_10k_users --nocapture`"]
fn sync_10k_users() {
    sync_many(10_000);
}

// ---------------------------------------------------------------------------------------
// 9. Per-user order

#[test]
fn queued_events_of_one_user_are_delivered_in_order() {
    let peer = peers::scim2_server().expect("scim2-server starts");
    let mut site = Site::new(&peer, "");
    let users: Vec<UserRecord> = (0..6).map(|i| site.add(&format!("o{i}"))).collect();
    assert_eq!(site.deliver(false).delivered, 6);
    // Queue several events per user, interleaved across users.
    for u in &users {
        let mail = format!("{}.two@example.com", u.name);
        site.store
            .change_user(&u.id, UserEvent::Updated, |r| r.mail = mail)
            .unwrap();
    }
    for u in &users {
        site.store
            .change_user(&u.id, UserEvent::Blocked, |r| r.active = false)
            .unwrap();
    }
    for (i, u) in users.iter().enumerate() {
        let mail = format!("{}.three@example.com", u.name);
        site.store
            .change_user(&u.id, UserEvent::Updated, |r| r.mail = mail)
            .unwrap();
        if i % 2 == 0 {
            site.store
                .change_user(&u.id, UserEvent::Unblocked, |r| r.active = true)
                .unwrap();
        }
    }
    // A sync (concurrency 8) drains them.
    let summary = site.sync(&default_options()).expect("sync");
    assert_eq!(summary.outbox.delivered, 21, "{summary}");
    assert_eq!(summary.failed, 0, "{summary}");
    for (i, u) in users.iter().enumerate() {
        let log: Vec<String> = site
            .store
            .log_entries(Some(&u.id), false, 10)
            .unwrap()
            .into_iter()
            .rev()
            .map(|e| e.operation)
            .collect();
        let mut expected = vec!["created", "updated", "blocked", "updated"];
        if i % 2 == 0 {
            expected.push("unblocked");
        }
        assert_eq!(log, expected, "user {}", u.name);
        let remote = site.remote(&peer, &u.id);
        assert_eq!(active(&remote), Some(i % 2 == 0), "{remote}");
        if i % 2 == 0 {
            let mail = format!("{}.three@example.com", u.name);
            assert_eq!(work_email(&remote), Some(mail), "{remote}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 10. The CLI

fn cli(bin: &PathBuf, config: &PathBuf, args: &[&str]) -> (i32, String) {
    let out = Command::new(bin)
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .expect("the CLI runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn cli_smoke() {
    let bin = peers::workspace_root().join("target/debug/host-example");
    if !bin.is_file() {
        eprintln!(
            "SKIPPED cli_smoke: {} is missing (build it with `cargo build -p host-example --bins`, as scripts/test does)",
            bin.display()
        );
        return;
    }
    let mut peer = peers::scim2_server().expect("scim2-server starts");
    let site = Site::new(&peer, "");
    let config = site.dir.join("scim-provisioner.toml");
    std::fs::write(
        &config,
        format!(
            "[scim]\nbase_url = \"{}\"\ntoken = \"{}\"\ntimeout_secs = 5\n\n[host]\ndatabase = \"{}\"\n",
            peer.base_url,
            peer.token,
            site.dir.join("cli.db").display()
        ),
    )
    .unwrap();
    let csv = site.dir.join("users.csv");
    std::fs::write(&csv, "name,mail\nbob,bob@example.com\n").unwrap();
    let mut outputs = Vec::new();
    let mut run = |args: &[&str], code: i32, wanted: &[&str]| {
        let (got, text) = cli(&bin, &config, args);
        assert_eq!(got, code, "host-example {args:?} exited {got}:\n{text}");
        for w in wanted {
            assert!(
                text.contains(w),
                "host-example {args:?}: no {w:?} in:\n{text}"
            );
        }
        outputs.push((args.join(" "), text.clone()));
        text
    };
    run(
        &["test-connection"],
        0,
        &[
            &format!("Connection successful: {}", peer.base_url),
            "patch:",
        ],
    );
    run(
        &[
            "users",
            "add",
            "--name",
            "alice",
            "--mail",
            "alice@example.com",
        ],
        0,
        &["added user 1 (alice)", "provisioning: 1 delivered"],
    );
    assert_eq!(find_users(&peer, "userName eq \"alice\"").len(), 1);
    run(
        &["users", "import", csv.to_str().unwrap()],
        0,
        &["imported 1 users"],
    );
    run(
        &["-v", "provision", "bob", "--dry-run"],
        0,
        &[
            "dry run for user 2 (bob): would create",
            &format!("POST {}/Users", peer.base_url),
        ],
    );
    assert!(find_users(&peer, "userName eq \"bob\"").is_empty());
    run(
        &["provision", "bob"],
        0,
        &["User 2 (bob) provisioned successfully: created"],
    );
    run(
        &["status"],
        0,
        &[
            "users:      2",
            "linked:     2",
            "outbox:     0 pending, 0 parked",
        ],
    );
    let failures = run(&["log", "--failed"], 0, &[]);
    assert!(failures.trim().is_empty(), "{failures}");

    peer.stop();
    run(
        &[
            "-v",
            "users",
            "add",
            "--name",
            "carl",
            "--mail",
            "carl@example.com",
        ],
        0,
        &["added user 3 (carl)", "0 delivered, 1 will be retried"],
    );
    run(&["status"], 0, &["outbox:     1 pending, 0 parked"]);
    run(
        &["log", "--failed"],
        0,
        &["created", "failed", "cannot connect"],
    );
    run(&["-v", "test-connection"], 1, &["Connection failed"]);

    for (args, text) in &outputs {
        assert!(
            !text.contains(&peer.token),
            "host-example {args} printed the token:\n{text}"
        );
    }
}

/// A second process start maps the precompiled component instead of compiling it: `-v`
/// says which on stderr. The configured `[host] cache_dir` holds it; a damaged file there
/// is compiled again and rewritten; `SCIM_PROVISIONER_CACHE` wins over the configuration.
/// No server is needed: `test-connection` to a closed port loads the component, then fails.
#[test]
fn cli_second_start_loads_the_precompiled_component() {
    let bin = peers::workspace_root().join("target/debug/host-example");
    if !bin.is_file() {
        eprintln!(
            "SKIPPED cli_second_start_loads_the_precompiled_component: {} is missing (build it with `cargo build -p host-example --bins`, as scripts/test does)",
            bin.display()
        );
        return;
    }
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "scim-cli-cache-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("scim-provisioner.toml");
    std::fs::write(
        &config,
        "[scim]\nbase_url = \"http://127.0.0.1:9/v2\"\ntimeout_secs = 2\n\n[host]\ndatabase = \"cli.db\"\ncache_dir = \"cache\"\n",
    )
    .unwrap();
    let start = |env_cache: Option<&PathBuf>| -> String {
        let mut cmd = Command::new(&bin);
        cmd.arg("-c").arg(&config).args(["-v", "test-connection"]);
        cmd.env_remove(host_example::CACHE_ENV);
        if let Some(d) = env_cache {
            cmd.env(host_example::CACHE_ENV, d);
        }
        let out = cmd.output().expect("the CLI runs");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        stderr
            .lines()
            .find(|l| l.starts_with("component: "))
            .unwrap_or_else(|| panic!("no component line in:\n{stderr}"))
            .to_string()
    };
    let cache = dir.join("cache");
    let cwasm_files = |d: &PathBuf| -> Vec<PathBuf> {
        std::fs::read_dir(d)
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };

    let first = start(None);
    assert!(first.starts_with("component: compiled in "), "{first}");
    assert!(first.contains("precompiled into "), "{first}");
    let files = cwasm_files(&cache);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].extension().is_some_and(|e| e == "cwasm"),
        "{files:?}"
    );
    let second = start(None);
    assert!(
        second.starts_with("component: loaded precompiled "),
        "{second}"
    );
    assert!(
        second.contains(&*files[0].file_name().unwrap().to_string_lossy()),
        "{second}"
    );

    // A truncated cache file: compiled again, rewritten, and loaded by the next start.
    let good = std::fs::read(&files[0]).unwrap();
    std::fs::write(&files[0], &good[..good.len() / 3]).unwrap();
    let third = start(None);
    assert!(third.starts_with("component: compiled in "), "{third}");
    assert!(third.contains("could not be loaded"), "{third}");
    assert_eq!(std::fs::read(&files[0]).unwrap().len(), good.len());
    let fourth = start(None);
    assert!(
        fourth.starts_with("component: loaded precompiled "),
        "{fourth}"
    );

    // The environment wins over the configuration.
    let from_env = dir.join("env-cache");
    let fifth = start(Some(&from_env));
    assert!(fifth.starts_with("component: compiled in "), "{fifth}");
    assert_eq!(cwasm_files(&from_env).len(), 1);
    let sixth = start(Some(&from_env));
    assert!(
        sixth.starts_with("component: loaded precompiled "),
        "{sixth}"
    );
    assert!(sixth.contains(&*from_env.to_string_lossy()), "{sixth}");
    let _ = std::fs::remove_dir_all(&dir);
}
