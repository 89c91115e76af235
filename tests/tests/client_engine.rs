//! The provisioning engine, end to end: the built component under wasmtime drives
//! scim2-server (PyPI) and the SCIMMY app (npm) through every operation, and each result is
//! read back with a plain HTTP GET. The host behaves as a CMS would: it opens a session per
//! event, stores the link each call returns and passes it to the next call.
//!
//! Each scenario is a function taking the peer, called from one test per peer.

use host_example::ConnectorSettings;
use host_example::types::{
    Action, CmsUser, FieldValue, Link, ProvisionOutcome, ProvisioningError, UserEvent,
};
use scim_provisioner_tests::component::{
    LogLines, all_users, drupal_user, find_users, logged_requests, logged_writes, open,
    open_logged, provision, remote_user, remove_field, set_field, settings, text,
};
use scim_provisioner_tests::peers::{self, Peer, send_json};
use serde_json::{Value, json};

/// The policy that lets the engine delete remote users.
const DELETE_POLICY: &str = r#"{"operations":{"delete":true},"deprovision":"delete"}"#;

/// A CMS's side of provisioning: one session per event, the link stored between events.
struct Host<'p> {
    peer: &'p Peer,
    settings: ConnectorSettings,
    /// The link as the CMS stores it for this user.
    link: Option<Link>,
    /// The guest's log of the last call.
    log: Option<LogLines>,
}

impl<'p> Host<'p> {
    fn new(peer: &'p Peer, policy: &str) -> Self {
        Host {
            peer,
            settings: settings(peer, policy),
            link: None,
            log: None,
        }
    }

    /// Delivers one event; stores the returned link, as a CMS would. Errors are returned.
    fn try_on(
        &mut self,
        user: &CmsUser,
        event: UserEvent,
    ) -> Result<ProvisionOutcome, ProvisioningError> {
        let (mut session, log) = open_logged(&self.settings);
        let result = provision(&mut session, user, event, self.link.as_ref());
        if let Ok(outcome) = &result {
            self.link = outcome.link.clone();
        }
        self.log = Some(log);
        result
    }

    /// Delivers one event, failing the test on the component's error.
    fn on(&mut self, user: &CmsUser, event: UserEvent) -> ProvisionOutcome {
        let name = self.peer.name;
        self.try_on(user, event).unwrap_or_else(|e| {
            panic!(
                "{name}: {event:?} for user {} failed: {}\nrequests: {:#?}",
                user.id,
                host_example::describe_error(&e),
                self.requests()
            )
        })
    }

    /// The requests of the last call, as `-v` shows them.
    fn requests(&self) -> Vec<String> {
        self.log.as_ref().map(logged_requests).unwrap_or_default()
    }

    /// The writes (POST, PUT, PATCH, DELETE) of the last call.
    fn writes(&self) -> Vec<String> {
        self.log.as_ref().map(logged_writes).unwrap_or_default()
    }

    fn remote_id(&self) -> String {
        self.link
            .as_ref()
            .unwrap_or_else(|| panic!("{}: the host holds no link", self.peer.name))
            .remote_id
            .clone()
    }

    /// The linked remote user, read with a plain HTTP GET (must exist).
    fn remote(&self) -> Value {
        let id = self.remote_id();
        let (status, body) = remote_user(self.peer, &id);
        assert_eq!(status, 200, "{}: GET /Users/{id}: {body}", self.peer.name);
        body
    }

    /// The link's version must be the remote's current `meta.version` (none without ETags),
    /// or the next conditional request would fail for nothing.
    fn assert_version_current(&self) {
        let remote = self.remote();
        let link = self.link.as_ref().expect("a link");
        assert_eq!(
            link.version.as_deref(),
            remote["meta"]["version"].as_str(),
            "{}: the stored link's version is not the remote's meta.version",
            self.peer.name
        );
    }
}

/// A link's fields, for comparing (the generated `Link` has no `PartialEq`).
fn link_parts(link: &Option<Link>) -> Option<(String, Option<String>, Option<String>)> {
    link.as_ref()
        .map(|l| (l.remote_id.clone(), l.version.clone(), l.snapshot.clone()))
}

fn assert_action(peer: &Peer, outcome: &ProvisionOutcome, expected: Action) {
    assert_eq!(
        outcome.action, expected,
        "{}: expected {expected:?}, got {outcome:?}",
        peer.name
    );
}

/// `active` as the peer wrote it (a missing `active` is not taken as true).
fn active(resource: &Value) -> Option<bool> {
    resource.get("active").and_then(Value::as_bool)
}

fn users_named(peer: &Peer, user_name: &str) -> Vec<Value> {
    find_users(peer, &format!("userName eq \"{user_name}\""))
}

/// Creates a user directly on the server with a plain HTTP POST; returns its id.
fn create_directly(peer: &Peer, body: Value) -> String {
    let (status, created) =
        send_json("POST", &peer.url("/Users"), &peer.token, Some(&body)).expect("POST works");
    assert_eq!(status, 201, "{}: direct POST: {created}", peer.name);
    created["id"].as_str().expect("an id").to_string()
}

// ---------------------------------------------------------------------------------------
// 1. Create

fn create(peer: &Peer) {
    let mut host = Host::new(peer, "");
    let user = drupal_user("101", "alice", "Alice", "Liddell");
    let outcome = host.on(&user, UserEvent::Created);
    assert_action(peer, &outcome, Action::Created);
    let writes = host.writes();
    assert_eq!(writes.len(), 1, "{}: {writes:?}", peer.name);
    assert!(writes[0].starts_with("POST "), "{writes:?}");
    assert_eq!(outcome.requests as usize, host.requests().len());

    let remote = host.remote();
    assert_eq!(remote["id"], host.remote_id().as_str());
    assert_eq!(remote["userName"], "alice");
    assert_eq!(remote["name"]["givenName"], "Alice");
    assert_eq!(remote["name"]["familyName"], "Liddell");
    assert_eq!(remote["displayName"], "Alice Liddell");
    assert_eq!(remote["emails"][0]["value"], "alice@example.com");
    assert_eq!(remote["emails"][0]["type"], "work");
    assert_eq!(remote["emails"][0]["primary"], true);
    assert_eq!(active(&remote), Some(true), "{remote}");
    assert_eq!(remote["externalId"], "101");
    if let Some(location) = &outcome.location {
        assert!(
            location.ends_with(&format!("/Users/{}", host.remote_id())),
            "{}: location {location}",
            peer.name
        );
    }
    host.assert_version_current();
    assert_eq!(all_users(peer).len(), 1);
}

#[test]
fn create_on_scim2_server() {
    create(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn create_on_scimmy() {
    create(&peers::scimmy().expect("SCIMMY app starts"));
}

// ---------------------------------------------------------------------------------------
// 2. Update, and an identical update that sends nothing

fn update(peer: &Peer) {
    let mut host = Host::new(peer, "");
    let mut user = drupal_user("102", "bob", "Bob", "Builder");
    assert_action(peer, &host.on(&user, UserEvent::Created), Action::Created);
    let id = host.remote_id();

    set_field(&mut user, "field_last_name", text("Baumeister"));
    set_field(&mut user, "mail", text("Bob.B@Example.com "));
    let outcome = host.on(&user, UserEvent::Updated);
    assert_action(peer, &outcome, Action::Updated);
    assert_eq!(host.remote_id(), id, "an update keeps the remote id");
    let writes = host.writes();
    assert_eq!(writes.len(), 1, "{}: {writes:?}", peer.name);
    assert!(writes[0].starts_with("PATCH "), "{writes:?}");

    let remote = host.remote();
    assert_eq!(remote["name"]["familyName"], "Baumeister");
    assert_eq!(remote["name"]["givenName"], "Bob");
    assert_eq!(remote["displayName"], "Bob Baumeister");
    let emails = remote["emails"].as_array().expect("emails");
    assert_eq!(emails.len(), 1, "{remote}");
    assert_eq!(emails[0]["value"], "bob.b@example.com");
    assert_eq!(emails[0]["type"], "work");
    assert_eq!(remote["userName"], "bob");
    assert_eq!(active(&remote), Some(true));
    host.assert_version_current();

    // The same update again: nothing to send, and the server's resource is untouched.
    let meta_before = remote["meta"].clone();
    let link_before = host.link.clone();
    let outcome = host.on(&user, UserEvent::Updated);
    assert_action(peer, &outcome, Action::Unchanged);
    assert!(
        host.writes().is_empty(),
        "{}: {:?}",
        peer.name,
        host.writes()
    );
    assert!(
        outcome.requests <= 1,
        "{}: at most the discovery request, got {:?}",
        peer.name,
        host.requests()
    );
    assert_eq!(
        link_parts(&host.link),
        link_parts(&link_before),
        "an unchanged update keeps the link"
    );
    assert_eq!(host.remote()["meta"], meta_before, "{}", peer.name);

    // A reconcile of the same user is just as quiet.
    assert_action(
        peer,
        &host.on(&user, UserEvent::Reconcile),
        Action::Unchanged,
    );
    assert!(host.writes().is_empty());
}

#[test]
fn update_on_scim2_server() {
    update(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn update_on_scimmy() {
    update(&peers::scimmy().expect("SCIMMY app starts"));
}

// ---------------------------------------------------------------------------------------
// 3. Clearing a field removes the remote attribute

fn clear_field(peer: &Peer) {
    let mut host = Host::new(peer, "");
    let mut user = drupal_user("103", "carla", "Carla", "Bruni");
    assert_action(peer, &host.on(&user, UserEvent::Created), Action::Created);

    remove_field(&mut user, "field_first_name");
    assert_action(peer, &host.on(&user, UserEvent::Updated), Action::Updated);
    let remote = host.remote();
    assert!(
        remote["name"].get("givenName").is_none_or(Value::is_null),
        "{}: name.givenName survived: {remote}",
        peer.name
    );
    assert_eq!(remote["name"]["familyName"], "Bruni");
    assert_eq!(remote["displayName"], "Bruni", "the template is trimmed");

    // A field set to null is a cleared field too.
    set_field(&mut user, "field_last_name", FieldValue::Null);
    assert_action(peer, &host.on(&user, UserEvent::Updated), Action::Updated);
    let remote = host.remote();
    let name_left = remote
        .get("name")
        .and_then(Value::as_object)
        .map(|n| n.values().filter(|v| !v.is_null()).count())
        .unwrap_or(0);
    assert_eq!(name_left, 0, "{}: name survived: {remote}", peer.name);
    assert!(
        remote.get("displayName").is_none_or(Value::is_null),
        "{}: displayName survived: {remote}",
        peer.name
    );
    assert_eq!(remote["userName"], "carla");
    host.assert_version_current();
}

#[test]
fn clear_field_on_scim2_server() {
    clear_field(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn clear_field_on_scimmy() {
    clear_field(&peers::scimmy().expect("SCIMMY app starts"));
}

/// Values an admin added on the server (a home email, a middle name, a title) are not
/// ours: changing our work email and names leaves them alone, and so must clearing them.
fn unmanaged_values_survive(peer: &Peer) {
    let mut host = Host::new(peer, "");
    let mut user = drupal_user("117", "rita", "Rita", "Hayworth");
    assert_action(peer, &host.on(&user, UserEvent::Created), Action::Created);
    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "add", "path": "emails",
             "value": [{"type": "home", "value": "rita@home.example"}]},
            {"op": "add", "path": "name.middleName", "value": "Cansino"},
            {"op": "add", "path": "title", "value": "Star"},
        ],
    });
    let url = peer.url(&format!("/Users/{}", host.remote_id()));
    let (status, body) = send_json("PATCH", &url, &peer.token, Some(&patch)).expect("PATCH");
    assert!(
        matches!(status, 200 | 204),
        "{}: {status} {body}",
        peer.name
    );
    let emails_of = |remote: &Value, kind: &str| {
        remote["emails"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["type"] == kind)
            .filter_map(|e| e["value"].as_str().map(String::from))
            .collect::<Vec<_>>()
    };
    let remote = host.remote();
    assert_eq!(
        emails_of(&remote, "home"),
        ["rita@home.example"],
        "{remote}"
    );
    assert_eq!(remote["name"]["middleName"], "Cansino", "{remote}");

    // Changing what we map leaves the rest alone.
    set_field(&mut user, "mail", text("rita.h@example.com"));
    set_field(&mut user, "field_last_name", text("Cansino-Hayworth"));
    assert_action(peer, &host.on(&user, UserEvent::Updated), Action::Updated);
    let remote = host.remote();
    assert_eq!(
        emails_of(&remote, "work"),
        ["rita.h@example.com"],
        "{remote}"
    );
    assert_eq!(
        emails_of(&remote, "home"),
        ["rita@home.example"],
        "{remote}"
    );
    assert_eq!(remote["name"]["middleName"], "Cansino", "{remote}");
    assert_eq!(remote["title"], "Star");

    // Clearing every value we map in `emails` and `name` must not take the admin's with it.
    remove_field(&mut user, "mail");
    remove_field(&mut user, "field_first_name");
    remove_field(&mut user, "field_last_name");
    assert_action(peer, &host.on(&user, UserEvent::Updated), Action::Updated);
    let remote = host.remote();
    let mut problems = Vec::new();
    if !emails_of(&remote, "work").is_empty() {
        problems.push("the work email survived");
    }
    if emails_of(&remote, "home") != ["rita@home.example"] {
        problems.push("the admin's home email was removed");
    }
    if remote["name"]["givenName"].is_string() || remote["name"]["familyName"].is_string() {
        problems.push("a name we cleared survived");
    }
    if remote["name"]["middleName"] != "Cansino" {
        problems.push("the admin's name.middleName was removed");
    }
    if remote["title"] != "Star" {
        problems.push("the admin's title was removed");
    }
    assert!(
        problems.is_empty(),
        "{}: {problems:?}\nremote: {remote}\nrequests: {:#?}",
        peer.name,
        host.requests()
    );
}

#[test]
fn unmanaged_values_survive_on_scim2_server() {
    unmanaged_values_survive(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn unmanaged_values_survive_on_scimmy() {
    unmanaged_values_survive(&peers::scimmy().expect("SCIMMY app starts"));
}

// ---------------------------------------------------------------------------------------
// 4. Block and unblock

fn block_unblock(peer: &Peer) {
    let mut host = Host::new(peer, "");
    let mut user = drupal_user("104", "dora", "Dora", "Maar");
    assert_action(peer, &host.on(&user, UserEvent::Created), Action::Created);

    user.active = false;
    let outcome = host.on(&user, UserEvent::Blocked);
    assert_action(peer, &outcome, Action::Deactivated);
    assert!(outcome.link.is_some(), "a deactivated user stays linked");
    assert_eq!(active(&host.remote()), Some(false), "{}", peer.name);
    assert_eq!(host.remote()["userName"], "dora", "the user is not deleted");

    // Blocking again: already inactive, nothing sent.
    let outcome = host.on(&user, UserEvent::Blocked);
    assert!(
        matches!(outcome.action, Action::Unchanged | Action::Deactivated),
        "{outcome:?}"
    );
    assert!(
        host.writes().is_empty(),
        "{}: {:?}",
        peer.name,
        host.writes()
    );

    user.active = true;
    let outcome = host.on(&user, UserEvent::Unblocked);
    assert!(
        matches!(outcome.action, Action::Updated),
        "{}: {outcome:?}",
        peer.name
    );
    let remote = host.remote();
    assert_eq!(active(&remote), Some(true), "{}: {remote}", peer.name);
    assert_eq!(remote["name"]["givenName"], "Dora");
    host.assert_version_current();

    // And blocked once more: the snapshot after the reactivation must say active.
    user.active = false;
    assert_action(
        peer,
        &host.on(&user, UserEvent::Blocked),
        Action::Deactivated,
    );
    assert_eq!(active(&host.remote()), Some(false));
}

#[test]
fn block_unblock_on_scim2_server() {
    block_unblock(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn block_unblock_on_scimmy() {
    block_unblock(&peers::scimmy().expect("SCIMMY app starts"));
}

// ---------------------------------------------------------------------------------------
// 5. Delete, twice

fn delete(peer: &Peer) {
    let mut host = Host::new(peer, DELETE_POLICY);
    let user = drupal_user("105", "emil", "Emil", "Nolde");
    assert_action(peer, &host.on(&user, UserEvent::Created), Action::Created);
    let old_link = host.link.clone();
    let id = host.remote_id();

    let outcome = host.on(&user, UserEvent::Deleted);
    assert_action(peer, &outcome, Action::Deleted);
    assert!(outcome.link.is_none(), "a deleted user is unlinked");
    let writes = host.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(writes[0].starts_with("DELETE "), "{writes:?}");
    let (status, body) = remote_user(peer, &id);
    assert_eq!(status, 404, "{}: {body}", peer.name);

    // A host that did not store the result sends the delete again: 404 counts as done.
    host.link = old_link;
    let outcome = host.on(&user, UserEvent::Deleted);
    assert_action(peer, &outcome, Action::Deleted);
    assert!(host.requests().iter().any(|r| r.ends_with("-> 404")));
    assert!(all_users(peer).is_empty());
}

#[test]
fn delete_on_scim2_server() {
    delete(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn delete_on_scimmy() {
    delete(&peers::scimmy().expect("SCIMMY app starts"));
}

// ---------------------------------------------------------------------------------------
// 6. Deprovisioning by default deactivates

fn deprovision_deactivates(peer: &Peer) {
    let mut host = Host::new(peer, "");
    let user = drupal_user("106", "fritz", "Fritz", "Lang");
    assert_action(peer, &host.on(&user, UserEvent::Created), Action::Created);
    let id = host.remote_id();

    let outcome = host.on(&user, UserEvent::Deleted);
    assert_action(peer, &outcome, Action::Deactivated);
    assert!(
        host.writes().iter().all(|w| !w.starts_with("DELETE ")),
        "{:?}",
        host.writes()
    );
    let (status, remote) = remote_user(peer, &id);
    assert_eq!(status, 200, "{}: the user was deleted: {remote}", peer.name);
    assert_eq!(active(&remote), Some(false), "{remote}");
    assert_eq!(remote["userName"], "fritz");
}

#[test]
fn deprovision_deactivates_on_scim2_server() {
    deprovision_deactivates(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn deprovision_deactivates_on_scimmy() {
    deprovision_deactivates(&peers::scimmy().expect("SCIMMY app starts"));
}

// ---------------------------------------------------------------------------------------
// 7. Matching: an existing remote user is adopted, never duplicated

fn adopt_by_user_name(peer: &Peer) {
    let existing = create_directly(
        peer,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "gina",
            "title": "Kept",
        }),
    );
    let mut host = Host::new(peer, "");
    let user = drupal_user("107", "gina", "Gina", "Lollo");
    let outcome = host.on(&user, UserEvent::Created);
    assert_action(peer, &outcome, Action::Adopted);
    assert_eq!(host.remote_id(), existing);
    assert!(
        host.writes().iter().all(|w| !w.starts_with("POST ")),
        "{}: {:?}",
        peer.name,
        host.writes()
    );
    let found = users_named(peer, "gina");
    assert_eq!(found.len(), 1, "{}: {found:?}", peer.name);
    assert_eq!(all_users(peer).len(), 1);

    // Adopting brings the remote user in line, and leaves what we do not map alone.
    let remote = host.remote();
    assert_eq!(remote["name"]["givenName"], "Gina");
    assert_eq!(remote["externalId"], "107");
    assert_eq!(remote["emails"][0]["value"], "gina@example.com");
    assert_eq!(remote["title"], "Kept");
    host.assert_version_current();

    // From now on it is an ordinary linked user.
    assert_action(peer, &host.on(&user, UserEvent::Updated), Action::Unchanged);
}

fn adopt_by_external_id(peer: &Peer) {
    let existing = create_directly(
        peer,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "hans.old",
            "externalId": "108",
        }),
    );
    let mut host = Host::new(peer, r#"{"matching":["externalId"]}"#);
    let user = drupal_user("108", "hans", "Hans", "Arp");
    let outcome = host.on(&user, UserEvent::Created);
    assert_action(peer, &outcome, Action::Adopted);
    assert_eq!(host.remote_id(), existing);
    let found = find_users(peer, "externalId eq \"108\"");
    assert_eq!(found.len(), 1, "{}: {found:?}", peer.name);
    assert_eq!(
        found[0]["userName"], "hans",
        "the userName is brought in line"
    );
    assert!(users_named(peer, "hans.old").is_empty());
    assert_eq!(all_users(peer).len(), 1);
}

#[test]
fn adopt_by_user_name_on_scim2_server() {
    adopt_by_user_name(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn adopt_by_user_name_on_scimmy() {
    adopt_by_user_name(&peers::scimmy().expect("SCIMMY app starts"));
}

#[test]
fn adopt_by_external_id_on_scim2_server() {
    adopt_by_external_id(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn adopt_by_external_id_on_scimmy() {
    adopt_by_external_id(&peers::scimmy().expect("SCIMMY app starts"));
}

/// Two remote users share the work email the CMS user has: the engine adopts neither and
/// creates nobody, naming both.
fn ambiguous_match(peer: &Peer) {
    let ids: Vec<String> = ["walt.1", "walt.2"]
        .iter()
        .map(|name| {
            create_directly(
                peer,
                json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": name,
                    "emails": [{"type": "work", "value": "walt@example.com"}],
                }),
            )
        })
        .collect();
    let mut host = Host::new(peer, "");
    let user = drupal_user("122", "walt", "Walt", "Whitman");
    let err = host
        .try_on(&user, UserEvent::Created)
        .expect_err("two candidates");
    let text = host_example::describe_error(&err);
    for id in &ids {
        assert!(text.contains(id.as_str()), "{}: {text}", peer.name);
    }
    assert!(host.link.is_none());
    assert!(host.writes().is_empty(), "{:?}", host.writes());
    assert_eq!(all_users(peer).len(), 2);
}

#[test]
fn ambiguous_match_on_scim2_server() {
    ambiguous_match(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn ambiguous_match_on_scimmy() {
    ambiguous_match(&peers::scimmy().expect("SCIMMY app starts"));
}

/// A remote userName that differs only in case. scim2-server filters case-insensitively,
/// so the user is adopted. SCIMMY's `userName eq` is case-sensitive, so the look-up misses,
/// the POST meets the app's 409 and the second look-up misses too: the component must then
/// fail rather than create a duplicate.
fn user_name_differing_in_case(peer: &Peer) {
    let existing = create_directly(
        peer,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "Ines",
            // SCIMMY cannot evaluate an emails filter while a user has no emails (below).
            "emails": [{"type": "work", "value": "ines@elsewhere.example"}],
        }),
    );
    let mut host = Host::new(peer, "");
    let user = drupal_user("109", "ines", "Ines", "Sastre");
    match host.try_on(&user, UserEvent::Created) {
        Ok(outcome) => {
            assert_action(peer, &outcome, Action::Adopted);
            assert_eq!(host.remote_id(), existing);
        }
        Err(ProvisioningError::Scim(e)) if peer.name == "scimmy" => {
            assert_eq!(e.status, 409, "{e:?}");
            assert!(host.link.is_none());
        }
        Err(e) => panic!("{}: {}", peer.name, host_example::describe_error(&e)),
    }
    assert_eq!(all_users(peer).len(), 1, "{}: a duplicate", peer.name);
}

#[test]
fn user_name_differing_in_case_on_scim2_server() {
    let peer = peers::scim2_server().expect("scim2-server starts");
    user_name_differing_in_case(&peer);
    // On scim2-server it must be the adoption.
    let found = users_named(&peer, "ines");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["externalId"], "109");
}

#[test]
fn user_name_differing_in_case_on_scimmy() {
    user_name_differing_in_case(&peers::scimmy().expect("SCIMMY app starts"));
}

/// Another user on the server has no `emails`. SCIMMY 1.3.5's filter matching throws on a
/// resource that lacks the filtered complex attribute, so `emails[type eq "work" and value
/// eq "…"]` and `emails.value eq "…"` both answer 400 invalidValue "Cannot convert undefined
/// or null to object" as soon as one stored user has no emails. The default matching ends
/// with the work email, so every create whose userName and externalId match nobody fails.
fn create_beside_a_user_without_email(peer: &Peer) {
    create_directly(
        peer,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "no.mail",
        }),
    );
    let mut host = Host::new(peer, "");
    let user = drupal_user("120", "uma", "Uma", "Thurman");
    let outcome = host.on(&user, UserEvent::Created);
    assert_action(peer, &outcome, Action::Created);
    assert_eq!(all_users(peer).len(), 2);
}

#[test]
fn create_beside_a_user_without_email_on_scim2_server() {
    create_beside_a_user_without_email(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn create_beside_a_user_without_email_on_scimmy() {
    create_beside_a_user_without_email(&peers::scimmy().expect("SCIMMY app starts"));
}

// ---------------------------------------------------------------------------------------
// 8. Replay after a crash: the same created event twice, the link lost in between

fn replay(peer: &Peer) {
    let mut host = Host::new(peer, "");
    let user = drupal_user("110", "jan", "Jan", "Vermeer");
    assert_action(peer, &host.on(&user, UserEvent::Created), Action::Created);
    let id = host.remote_id();

    host.link = None; // the host crashed before storing it
    let outcome = host.on(&user, UserEvent::Created);
    assert_action(peer, &outcome, Action::Adopted);
    assert_eq!(host.remote_id(), id);
    assert!(
        host.writes().is_empty(),
        "{}: nothing differs, so nothing is written: {:?}",
        peer.name,
        host.writes()
    );
    assert_eq!(users_named(peer, "jan").len(), 1);
    assert_eq!(all_users(peer).len(), 1);

    // A third time, also with an update event: still the same user.
    host.link = None;
    let outcome = host.on(&user, UserEvent::Updated);
    assert_action(peer, &outcome, Action::Adopted);
    assert_eq!(host.remote_id(), id);
    assert_eq!(all_users(peer).len(), 1);
}

#[test]
fn replay_on_scim2_server() {
    replay(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn replay_on_scimmy() {
    replay(&peers::scimmy().expect("SCIMMY app starts"));
}

/// A host that kept only the remote id (no version, no snapshot): the engine reads the
/// remote user and still sends only what differs.
fn link_without_snapshot(peer: &Peer) {
    let mut host = Host::new(peer, "");
    let mut user = drupal_user("121", "vera", "Vera", "Lynn");
    assert_action(peer, &host.on(&user, UserEvent::Created), Action::Created);
    let bare = |host: &Host| {
        Some(Link {
            remote_id: host.remote_id(),
            version: None,
            snapshot: None,
        })
    };

    host.link = bare(&host);
    assert_action(peer, &host.on(&user, UserEvent::Updated), Action::Unchanged);
    assert!(
        host.writes().is_empty(),
        "{}: {:?}",
        peer.name,
        host.writes()
    );

    host.link = bare(&host);
    set_field(&mut user, "field_last_name", text("Lynn-Lewis"));
    assert_action(peer, &host.on(&user, UserEvent::Updated), Action::Updated);
    assert_eq!(host.remote()["name"]["familyName"], "Lynn-Lewis");
    assert!(
        host.link
            .as_ref()
            .and_then(|l| l.snapshot.as_ref())
            .is_some()
    );

    host.link = bare(&host);
    user.active = false;
    assert_action(
        peer,
        &host.on(&user, UserEvent::Blocked),
        Action::Deactivated,
    );
    assert_eq!(active(&host.remote()), Some(false));

    host.link = bare(&host);
    user.active = true;
    let outcome = host.on(&user, UserEvent::Unblocked);
    assert_action(peer, &outcome, Action::Updated);
    assert_eq!(active(&host.remote()), Some(true));
}

#[test]
fn link_without_snapshot_on_scim2_server() {
    link_without_snapshot(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn link_without_snapshot_on_scimmy() {
    link_without_snapshot(&peers::scimmy().expect("SCIMMY app starts"));
}

// ---------------------------------------------------------------------------------------
// 9. The remote user was deleted behind our back

fn delete_behind_our_back(peer: &Peer, host: &Host) {
    let id = host.remote_id();
    let url = peer.url(&format!("/Users/{id}"));
    let (status, body) = send_json("DELETE", &url, &peer.token, None).expect("DELETE works");
    assert_eq!(status, 204, "{}: {body}", peer.name);
}

fn remote_missing(peer: &Peer) {
    // Default: created again.
    let mut host = Host::new(peer, "");
    let mut user = drupal_user("111", "karl", "Karl", "Valentin");
    assert_action(peer, &host.on(&user, UserEvent::Created), Action::Created);
    let old_id = host.remote_id();
    delete_behind_our_back(peer, &host);

    set_field(&mut user, "field_last_name", text("Fey"));
    let outcome = host.on(&user, UserEvent::Updated);
    assert_action(peer, &outcome, Action::Created);
    let new_id = host.remote_id();
    assert_ne!(new_id, old_id);
    let remote = host.remote();
    assert_eq!(remote["userName"], "karl");
    assert_eq!(remote["name"]["familyName"], "Fey");
    assert_eq!(remote["name"]["givenName"], "Karl");
    assert_eq!(active(&remote), Some(true));
    assert_eq!(users_named(peer, "karl").len(), 1);

    // Configured to unlink: the link is dropped and nothing is created.
    let mut host = Host::new(peer, r#"{"on_remote_missing":"unlink"}"#);
    let mut user = drupal_user("112", "lotte", "Lotte", "Lenya");
    assert_action(peer, &host.on(&user, UserEvent::Created), Action::Created);
    delete_behind_our_back(peer, &host);
    set_field(&mut user, "field_last_name", text("Reiniger"));
    let outcome = host.on(&user, UserEvent::Updated);
    assert_action(peer, &outcome, Action::Unlinked);
    assert!(outcome.link.is_none());
    assert!(outcome.reason.is_some(), "{outcome:?}");
    assert!(
        host.writes().iter().all(|w| !w.starts_with("POST ")),
        "{:?}",
        host.writes()
    );
    assert!(users_named(peer, "lotte").is_empty());
}

#[test]
fn remote_missing_on_scim2_server() {
    remote_missing(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn remote_missing_on_scimmy() {
    remote_missing(&peers::scimmy().expect("SCIMMY app starts"));
}

// ---------------------------------------------------------------------------------------
// 10. Changed on the server since our last write (a stale ETag on scim2-server)

fn changed_behind_our_back(peer: &Peer) {
    let mut host = Host::new(peer, "");
    let mut user = drupal_user("113", "max", "Max", "Ernst");
    assert_action(peer, &host.on(&user, UserEvent::Created), Action::Created);
    let stale_version = host.link.as_ref().and_then(|l| l.version.clone());

    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "nickName", "value": "Loplop"}],
    });
    let url = peer.url(&format!("/Users/{}", host.remote_id()));
    let (status, body) = send_json("PATCH", &url, &peer.token, Some(&patch)).expect("PATCH");
    assert!(
        matches!(status, 200 | 204),
        "{}: {status} {body}",
        peer.name
    );
    let fresh_version = host.remote()["meta"]["version"].as_str().map(String::from);
    if peer.name == "scim2-server" {
        assert!(stale_version.is_some(), "scim2-server gives versions");
        assert_ne!(stale_version, fresh_version, "the direct PATCH bumps it");
    }

    set_field(&mut user, "field_last_name", text("Ernst-Tanning"));
    let outcome = host.on(&user, UserEvent::Updated);
    assert_action(peer, &outcome, Action::Updated);
    let requests = host.requests();
    if peer.name == "scim2-server" {
        // The stale If-Match was refused, the user re-read and the PATCH sent again.
        assert!(
            requests
                .iter()
                .any(|r| r.starts_with("PATCH ") && r.ends_with("-> 412")),
            "{requests:#?}"
        );
        assert!(
            requests
                .iter()
                .any(|r| r.starts_with("PATCH ") && r.ends_with("-> 204")),
            "{requests:#?}"
        );
    }
    let remote = host.remote();
    assert_eq!(remote["name"]["familyName"], "Ernst-Tanning");
    assert_eq!(remote["displayName"], "Max Ernst-Tanning");
    assert_eq!(
        remote["nickName"], "Loplop",
        "the server's own change survives"
    );
    host.assert_version_current();

    // The new link works without another 412.
    set_field(&mut user, "field_first_name", text("Maximilian"));
    assert_action(peer, &host.on(&user, UserEvent::Updated), Action::Updated);
    assert!(
        host.requests().iter().all(|r| !r.ends_with("-> 412")),
        "{:#?}",
        host.requests()
    );
    assert_eq!(host.remote()["name"]["givenName"], "Maximilian");
}

#[test]
fn stale_etag_is_retried_on_scim2_server() {
    changed_behind_our_back(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn changed_behind_our_back_on_scimmy() {
    changed_behind_our_back(&peers::scimmy().expect("SCIMMY app starts"));
}

// ---------------------------------------------------------------------------------------
// 11. Ids with reserved characters

fn reserved_characters_in_ids(peer: &Peer) {
    // Neither peer lets a client choose ids (both generate them), so only the read side
    // can be checked: an id with a space and other reserved characters is encoded and its
    // 404 is "no such user", not an error.
    let (mut session, log) = open_logged(&settings(peer, ""));
    for id in ["no such user", "a/b?c#d", "50% & more"] {
        let got = session.get_user(id).expect("no trap").unwrap_or_else(|e| {
            panic!(
                "{}: {id:?}: {}",
                peer.name,
                host_example::describe_error(&e)
            )
        });
        assert_eq!(got, None, "{}: {id:?}", peer.name);
    }
    let requests = logged_requests(&log);
    assert_eq!(requests.len(), 3, "{requests:#?}");
    for (r, encoded) in requests.iter().zip([
        "/Users/no%20such%20user ",
        "/Users/a%2Fb%3Fc%23d ",
        "/Users/50%25%20%26%20more ",
    ]) {
        assert!(r.contains(encoded) && r.ends_with("-> 404"), "{r}");
    }

    // And an existing user is found by its (server-made) id.
    let mut host = Host::new(peer, "");
    host.on(
        &drupal_user("114", "nina", "Nina", "Simone"),
        UserEvent::Created,
    );
    let mut session = open(&settings(peer, ""));
    let json = session
        .get_user(&host.remote_id())
        .expect("no trap")
        .expect("no error")
        .expect("found");
    let read: Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(read["userName"], "nina");
}

#[test]
fn reserved_characters_in_ids_on_scim2_server() {
    reserved_characters_in_ids(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn reserved_characters_in_ids_on_scimmy() {
    reserved_characters_in_ids(&peers::scimmy().expect("SCIMMY app starts"));
}

// ---------------------------------------------------------------------------------------
// 12. Disabled operations

fn operations_disabled(peer: &Peer) {
    let mut host = Host::new(peer, r#"{"operations":{"create":false}}"#);
    let user = drupal_user("115", "otto", "Otto", "Dix");
    let outcome = host.on(&user, UserEvent::Created);
    assert_action(peer, &outcome, Action::Skipped);
    let reason = outcome.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("create"),
        "{}: reason {reason:?}",
        peer.name
    );
    assert!(outcome.link.is_none());
    assert!(host.requests().is_empty(), "{:?}", host.requests());
    assert!(all_users(peer).is_empty(), "{}", peer.name);

    // Update disabled: a linked user's change is skipped and the server keeps the old value.
    let mut host = Host::new(peer, "");
    let mut user = drupal_user("116", "paul", "Paul", "Klee");
    assert_action(peer, &host.on(&user, UserEvent::Created), Action::Created);
    host.settings = settings(peer, r#"{"operations":{"update":false}}"#);
    set_field(&mut user, "field_last_name", text("Gauguin"));
    let outcome = host.on(&user, UserEvent::Updated);
    assert_action(peer, &outcome, Action::Skipped);
    assert!(outcome.reason.is_some());
    assert!(outcome.link.is_some(), "a skipped user stays linked");
    assert!(host.writes().is_empty());
    assert_eq!(host.remote()["name"]["familyName"], "Klee");

    // Delete asked for but disabled: deactivation instead.
    host.settings = settings(
        peer,
        r#"{"operations":{"delete":false},"deprovision":"delete"}"#,
    );
    let outcome = host.on(&user, UserEvent::Deleted);
    assert_action(peer, &outcome, Action::Deactivated);
    assert_eq!(active(&host.remote()), Some(false));
}

#[test]
fn operations_disabled_on_scim2_server() {
    operations_disabled(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn operations_disabled_on_scimmy() {
    operations_disabled(&peers::scimmy().expect("SCIMMY app starts"));
}
