//! Issue 29 against our quirky server with the held-back server's behaviour: `/Schemas`
//! declares `externalId` read-only and `userName` immutable, a POST drops `externalId`, a
//! PATCH that touches it is a 400 `mutability`, filters are ignored and userNames are not
//! unique. A person already on the server is adopted once; rename, update, deactivate and
//! delete arrive as far as the server allows; a sync after each sends nothing; nobody is
//! ever created twice. Every state is read back over plain HTTP.

use std::collections::BTreeMap;
use std::path::PathBuf;

use host_example::config::Threshold;
use host_example::describe_error;
use host_example::store::{Store, UserRecord};
use host_example::sync::{SyncOptions, SyncSummary, sync};
use host_example::types::{Action, Link, ProvisioningError, RetryClass, UserEvent};
use scim_provisioner_tests::component::{
    drupal_user, open, provision, runtime, set_field, settings, text,
};
use scim_provisioner_tests::peers::{self, Peer, get_json, send_json};
use serde_json::{Map, Value, json};

/// The held-back server of issue 29.
const HELD_BACK: &[&str] = &[
    "--mutability-schema",
    "--post-drops-read-only",
    "--patch-refuses-read-only",
    "--no-filter",
    "--no-unique",
];

/// The policy that lets the engine delete remote users (the mapping stays the default).
const DELETE_POLICY: &str = r#"{"operations":{"delete":true},"deprovision":"delete"}"#;

fn start(switches: &[&str]) -> Peer {
    peers::quirky(switches).unwrap_or_else(|e| panic!("the quirky server starts: {e:#}"))
}

fn server_users(peer: &Peer) -> Vec<Value> {
    let (status, body) = get_json(&peer.url("/Users"), &peer.token).expect("GET /Users");
    assert_eq!(status, 200, "GET /Users: {body}");
    body["Resources"].as_array().cloned().unwrap_or_default()
}

fn user_name_counts(peer: &Peer) -> BTreeMap<String, usize> {
    let mut names = BTreeMap::new();
    for u in server_users(peer) {
        let name = u["userName"].as_str().unwrap_or_default().to_lowercase();
        *names.entry(name).or_default() += 1;
    }
    names
}

fn remote(peer: &Peer, id: &str) -> (u16, Value) {
    get_json(&peer.url(&format!("/Users/{id}")), &peer.token).expect("GET /Users/{id}")
}

/// A person the server holds already, created there over plain HTTP.
fn pre_existing(peer: &Peer, name: &str) -> String {
    let (status, body) = send_json(
        "POST",
        &peer.url("/Users"),
        &peer.token,
        Some(
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                     "userName": name, "externalId": "set-by-someone-else", "active": true,
                     "name": {"givenName": "Old", "familyName": "Name"}}),
        ),
    )
    .expect("POST");
    assert_eq!(status, 201, "{body}");
    assert!(
        body.get("externalId").is_none(),
        "the server drops it: {body}"
    );
    body["id"].as_str().expect("an id").to_string()
}

fn on(
    session: &mut host_example::Session,
    user: &host_example::types::CmsUser,
    event: UserEvent,
    link: Option<&Link>,
) -> host_example::types::ProvisionOutcome {
    provision(session, user, event, link)
        .unwrap_or_else(|e| panic!("{event:?}: {}", describe_error(&e)))
}

/// The PHP program of the issue, through the Rust host: one connector, a connection test,
/// then `provision` with `created` and no link for a person who exists already; then the
/// same connector carries the person's later events.
#[test]
fn one_connector_adopts_once_then_renames_updates_deactivates_and_deletes() {
    story(HELD_BACK);
}

/// The same on a server that also refuses PATCH on sub-attribute paths: updates go as PUT
/// (the remote resource with our attributes laid over it), which must carry the server's
/// own userName and no externalId.
#[test]
fn the_same_story_when_updates_go_as_put() {
    let mut switches = HELD_BACK.to_vec();
    switches.push("--patch-501");
    story(&switches);
}

fn story(switches: &[&str]) {
    let peer = start(switches);
    let id = pre_existing(&peer, "grace");
    let mut session = open(&settings(&peer, DELETE_POLICY));
    session.test_connection().expect("no trap").expect("works");
    let findings = host_example::dialect::findings(&session.export_dialect().expect("no trap"));
    assert!(
        findings.iter().any(|f| f.starts_with("filters: ")),
        "{findings:?}"
    );

    let mut grace = drupal_user("202", "grace", "Grace", "Hopper");
    let out = on(&mut session, &grace, UserEvent::Created, None);
    assert_eq!(out.action, Action::Adopted, "{out:?}");
    let link = out.link.clone().expect("a link");
    assert_eq!(link.remote_id, id);
    let (_, r) = remote(&peer, &id);
    assert_eq!(r["name"]["familyName"], "Hopper", "{r}");
    assert_eq!(user_name_counts(&peer).get("grace"), Some(&1));

    // Nothing changed: nothing sent.
    let out = on(&mut session, &grace, UserEvent::Updated, Some(&link));
    assert_eq!(
        (out.action, out.requests),
        (Action::Unchanged, 0),
        "{out:?}"
    );

    // A rename with another change: the change arrives, the rename is named once.
    set_field(&mut grace, "name", text("grace.hopper"));
    set_field(&mut grace, "field_last_name", text("Brewster Hopper"));
    let out = on(&mut session, &grace, UserEvent::Updated, Some(&link));
    assert_eq!(out.action, Action::Updated, "{out:?}");
    let reason = out.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("userName cannot change on this server (immutable)"),
        "{reason}"
    );
    let link = out.link.clone().expect("a link");
    let (_, r) = remote(&peer, &id);
    assert_eq!(r["userName"], "grace", "{r}");
    assert_eq!(r["name"]["familyName"], "Brewster Hopper", "{r}");
    let out = on(&mut session, &grace, UserEvent::Updated, Some(&link));
    assert_eq!(
        (out.action, out.requests, out.reason.clone()),
        (Action::Unchanged, 0, None),
        "said once"
    );

    // Deactivate, then delete.
    grace.active = false;
    let out = on(&mut session, &grace, UserEvent::Blocked, Some(&link));
    assert_eq!(out.action, Action::Deactivated, "{out:?}");
    assert_eq!(remote(&peer, &id).1["active"], false);
    let link = out.link.clone().expect("a link");
    let out = on(&mut session, &grace, UserEvent::Deleted, Some(&link));
    assert_eq!(out.action, Action::Deleted, "{out:?}");
    assert_eq!(remote(&peer, &id).0, 404);
    assert!(
        user_name_counts(&peer).is_empty(),
        "nobody left, nobody twice"
    );
}

/// A connector that has not read `/Schemas` yet (no connection test, no stored dialect):
/// the PATCH with `externalId` is refused with `mutability`, the schema is read, and the
/// adoption goes through without it.
#[test]
fn a_connector_that_has_not_read_the_schema_learns_it_from_the_refusal() {
    let peer = start(HELD_BACK);
    let id = pre_existing(&peer, "ada");
    let mut session = open(&settings(&peer, ""));
    let ada = drupal_user("101", "ada", "Ada", "Lovelace");
    let out = provision(&mut session, &ada, UserEvent::Created, None)
        .unwrap_or_else(|e| panic!("{}", describe_error(&e)));
    assert_eq!(out.action, Action::Adopted, "{out:?}");
    assert_eq!(
        out.link.as_ref().map(|l| l.remote_id.as_str()),
        Some(id.as_str())
    );
    assert_eq!(remote(&peer, &id).1["name"]["familyName"], "Lovelace");
    let out = provision(&mut session, &ada, UserEvent::Updated, out.link.as_ref())
        .unwrap_or_else(|e| panic!("{}", describe_error(&e)));
    assert_eq!((out.action, out.requests), (Action::Unchanged, 0));
    assert_eq!(user_name_counts(&peer).get("ada"), Some(&1));
}

/// A server that holds a userName in a row it never lists: the creation fails for good,
/// with a reason an admin can act on, and nothing is created.
#[test]
fn a_user_the_server_holds_but_never_lists_fails_permanently_with_what_to_do() {
    let peer = start(&["--no-filter", "--hidden-user", "ghost"]);
    let mut session = open(&settings(&peer, ""));
    session.test_connection().expect("no trap").expect("works");
    let err = provision(
        &mut session,
        &drupal_user("13", "ghost", "Gus", "Host"),
        UserEvent::Created,
        None,
    )
    .expect_err("the server answers 409");
    let text = describe_error(&err);
    assert!(
        text.contains("the server already holds userName \"ghost\" but does not list it"),
        "{text}"
    );
    assert!(text.contains("then Retry"), "{text}");
    match err {
        ProvisioningError::Scim(s) => {
            assert_eq!(s.status, 409);
            assert!(matches!(s.retry, RetryClass::Permanent));
        }
        other => panic!("{other:?}"),
    }
    assert!(server_users(&peer).is_empty());
}

// ---------------------------------------------------------------------------------------
// The same story through the Rust host's store, outbox and sync.

struct Site {
    settings: host_example::ConnectorSettings,
    store: Store,
    dir: PathBuf,
}

impl Site {
    fn new(peer: &Peer, policy: &str) -> Site {
        let dir = scim_provisioner_tests::site::temp_dir("mutability");
        let store = Store::open(&dir.join("site.db")).expect("the store opens");
        Site {
            settings: settings(peer, policy),
            store,
            dir,
        }
    }

    fn sync(&mut self) -> SyncSummary {
        let options = SyncOptions {
            plan_only: false,
            allow_deletes: true,
            threshold: Threshold::Percent(100.0),
            concurrency: 2,
            batch_size: 100,
            max_attempts: 8,
            progress: false,
            full: false,
        };
        sync(runtime(), &self.settings, &mut self.store, &options).expect("sync runs")
    }

    /// Syncs, checks nothing failed or was parked, then syncs again: nothing is sent.
    fn sync_then_nothing(&mut self, what: &str) -> SyncSummary {
        let summary = self.sync();
        assert_eq!(summary.failed, 0, "{what}: {summary}");
        assert_eq!(summary.outbox.parked, 0, "{what}: {summary}");
        assert_eq!(summary.outbox.retrying, 0, "{what}: {summary}");
        let again = self.sync();
        assert_eq!(again.requests, 0, "{what}, second sync: {again}");
        assert_eq!(again.outbox.delivered, 0, "{what}, second sync: {again}");
        summary
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cms_user(name: &str, last: &str) -> UserRecord {
    let mut fields = Map::new();
    fields.insert("field_first_name".into(), json!("Grace"));
    fields.insert("field_last_name".into(), json!(last));
    UserRecord {
        id: String::new(),
        name: name.to_string(),
        mail: format!("{name}@example.com"),
        fields,
        active: true,
    }
}

#[test]
fn the_rust_host_adopts_once_and_every_later_sync_sends_nothing() {
    let peer = start(HELD_BACK);
    let remote_id = pre_existing(&peer, "grace");
    let others: Vec<String> = (0..3).map(|i| format!("pre{i}")).collect();
    for name in &others {
        pre_existing(&peer, name);
    }
    let mut site = Site::new(&peer, DELETE_POLICY);
    // Three people the server has and two it has not, for a sync to find or create.
    site.store
        .import_users(
            others
                .iter()
                .map(|n| Ok(cms_user(n, "Tester")))
                .chain((0..2).map(|i| Ok(cms_user(&format!("new{i}"), "Tester")))),
        )
        .expect("import");
    let summary = site.sync_then_nothing("first sync");
    assert_eq!((summary.adopted, summary.created), (3, 2), "{summary}");

    // `users add` of a person the server has: the outbox delivers `created`, adopted.
    let grace = site
        .store
        .add_user(cms_user("grace", "Hopper"), true)
        .expect("add");
    let summary = site.sync_then_nothing("adopt");
    assert_eq!(summary.outbox.delivered, 1, "{summary}");
    let link = site.store.link(&grace.id).expect("store").expect("linked");
    assert_eq!(link.link.remote_id, remote_id);
    assert_eq!(remote(&peer, &remote_id).1["name"]["familyName"], "Hopper");

    // Rename and update: the update arrives, the userName stays.
    site.store
        .change_user(&grace.id, UserEvent::Updated, |u| {
            u.name = "grace.hopper".into();
            u.fields
                .insert("field_last_name".into(), json!("Brewster Hopper"));
        })
        .expect("change");
    site.sync_then_nothing("rename and update");
    let (_, r) = remote(&peer, &remote_id);
    assert_eq!(r["userName"], "grace", "{r}");
    assert_eq!(r["name"]["familyName"], "Brewster Hopper", "{r}");

    // Deactivate.
    site.store
        .change_user(&grace.id, UserEvent::Blocked, |u| u.active = false)
        .expect("block");
    site.sync_then_nothing("deactivate");
    assert_eq!(remote(&peer, &remote_id).1["active"], false);

    // Delete.
    site.store
        .change_user(&grace.id, UserEvent::Deleted, |_| {})
        .expect("delete");
    site.sync_then_nothing("delete");
    assert_eq!(remote(&peer, &remote_id).0, 404);

    let counts = user_name_counts(&peer);
    assert_eq!(counts.len(), 5, "{counts:?}");
    assert!(counts.values().all(|n| *n == 1), "duplicates: {counts:?}");
}

/// Issue 29's second held-back server: a row holds a userName but is never listed. The
/// sync parks that user once with what to do, exits as a success (nothing failed), and
/// later syncs leave it alone: 0 requests, still counted as parked. `sync --full` tries it
/// again.
#[test]
fn a_sync_parks_a_user_the_server_holds_but_never_lists_once() {
    let peer = start(&["--no-filter", "--hidden-user", "ghost"]);
    let mut site = Site::new(&peer, "");
    site.store
        .import_users([Ok(cms_user("ghost", "Host")), Ok(cms_user("alice", "Able"))])
        .expect("import");
    let first = site.sync();
    assert_eq!(
        (first.created, first.parked, first.failed),
        (1, 1, 0),
        "{first}"
    );
    assert!(
        first
            .to_string()
            .contains("1 parked: the server holds their userName but does not list it"),
        "{first}"
    );
    let entries = site.store.log_entries(None, false, 100).expect("the log");
    let parked: Vec<_> = entries.iter().filter(|e| e.outcome == "parked").collect();
    assert_eq!(parked.len(), 1, "{entries:?}");
    let reason = parked[0].error.clone().unwrap_or_default();
    assert!(
        reason.contains("the server already holds userName \"ghost\" but does not list it"),
        "{reason}"
    );
    let second = site.sync();
    assert_eq!(
        (second.requests, second.parked, second.failed),
        (0, 1, 0),
        "{second}"
    );
    assert_eq!(
        user_name_counts(&peer),
        BTreeMap::from([("alice".to_string(), 1)])
    );
}
