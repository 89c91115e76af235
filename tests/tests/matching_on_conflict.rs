//! `matching_look_up = "on_conflict"` (the policy's opt-in; see `policy::MatchingLookUp`),
//! with the built component in wasmtime against real servers: scim2-server (PyPI) and the
//! SCIMMY app, which both answer a taken userName (whatever its case) with 409
//! `uniqueness`, and the quirky server with `--no-unique`, which does not.
//!
//! The userName someone else took differs in case only on scim2-server: SCIMMY's filter
//! compares `eq` case-sensitively, so there a userName taken in another case is refused by
//! the POST (409) and found by no filter, under either setting (the user fails as "held but
//! not listed"). The look-up is the same under both settings; only its moment differs.
//!
//! Each test counts the requests the component logged and reads the server back with plain
//! HTTP: a new user costs no look-up by userName, and a user someone else created with the
//! same userName is adopted, never duplicated, on the one-user path and in `/Bulk`.

use host_example::Session;
use host_example::types::{Action, BatchItem, BatchOutcome, CmsUser, ProvisionOutcome, UserEvent};
use scim_provisioner_tests::component::{
    LogLines, all_users, drupal_user, find_users, logged_requests, open_logged, provision, settings,
};
use scim_provisioner_tests::fault_proxy::{Fault, FaultConfig, FaultProxy, Truncation};
use scim_provisioner_tests::peers::{self, Peer, send_json};
use serde_json::json;

/// The setting under test, with the default matching (userName, externalId, work email).
const ON_CONFLICT: &str = r#"{"matching_look_up": "on_conflict"}"#;
/// The setting under test, matching on userName alone: a new user costs no look-up at all.
const ON_CONFLICT_USER_NAME: &str =
    r#"{"matching_look_up": "on_conflict", "matching": ["userName"]}"#;

/// Creates a user directly on the server, as another provisioning client or an admin
/// would; returns its id.
fn created_elsewhere(peer: &Peer, user_name: &str) -> String {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "name": {"givenName": "Created", "familyName": "Elsewhere"}
    });
    let (status, created) =
        send_json("POST", &peer.url("/Users"), &peer.token, Some(&body)).expect("POST works");
    assert_eq!(status, 201, "{}: {created}", peer.name);
    created["id"].as_str().expect("an id").to_string()
}

/// The look-ups (filtered GETs) in a log, and those among them by userName.
fn look_ups(lines: &LogLines) -> (Vec<String>, Vec<String>) {
    let all: Vec<String> = logged_requests(lines)
        .into_iter()
        .filter(|r| r.starts_with("GET ") && r.contains("filter="))
        .collect();
    let by_user_name = all
        .iter()
        .filter(|r| r.contains("filter=userName"))
        .cloned()
        .collect();
    (all, by_user_name)
}

fn succeeded(
    peer: &Peer,
    result: &Result<ProvisionOutcome, host_example::types::ProvisioningError>,
) -> ProvisionOutcome {
    match result {
        Ok(o) => o.clone(),
        Err(e) => panic!("{}: {}", peer.name, host_example::describe_error(e)),
    }
}

fn batch(session: &mut Session, items: &[BatchItem]) -> BatchOutcome {
    match session.provision_batch(items) {
        Ok(out) => out,
        Err(trap) => panic!("trap in provision-batch: {trap:#}"),
    }
}

fn created_items(users: &[CmsUser]) -> Vec<BatchItem> {
    users
        .iter()
        .map(|u| BatchItem {
            user: u.clone(),
            event: UserEvent::Created,
            link: None,
        })
        .collect()
}

/// How someone else spells the CMS's userName `name` on this peer: in another case where
/// the peer's filter compares as RFC 7643 says (`caseExact: false`), else as is.
fn taken_as(peer: &Peer, name: &str) -> String {
    if peer.name == "scimmy" {
        name.to_string()
    } else {
        name.to_uppercase()
    }
}

/// The one-user path: a new user is created with no look-up by userName; one that someone
/// else created meanwhile is adopted after the 409.
fn one_user_at_a_time(peer: &Peer) {
    // Default matching: externalId and the work email are still looked up, userName not.
    let (mut session, lines) = open_logged(&settings(peer, ON_CONFLICT));
    let fresh = drupal_user("1", "fresh", "Fresh", "User");
    let out = succeeded(
        peer,
        &provision(&mut session, &fresh, UserEvent::Created, None),
    );
    assert_eq!(out.action, Action::Created, "{}", peer.name);
    let (all, by_user_name) = look_ups(&lines);
    assert!(by_user_name.is_empty(), "{}: {all:?}", peer.name);
    assert_eq!(
        all.len(),
        2,
        "{}: externalId and the email: {all:?}",
        peer.name
    );

    // Matching on userName alone: the POST is the only request for a new user.
    let (mut session, lines) = open_logged(&settings(peer, ON_CONFLICT_USER_NAME));
    let second = drupal_user("2", "second", "Second", "User");
    let out = succeeded(
        peer,
        &provision(&mut session, &second, UserEvent::Created, None),
    );
    assert_eq!(out.action, Action::Created, "{}", peer.name);
    let writes: Vec<String> = logged_requests(&lines)
        .into_iter()
        .filter(|r| !r.contains("/ServiceProviderConfig") && !r.contains("/Schemas"))
        .collect();
    assert_eq!(writes.len(), 1, "{}: {writes:?}", peer.name);
    assert!(writes[0].starts_with("POST "), "{writes:?}");

    // Someone else created "RACER"; the CMS's "racer" meets the 409 and adopts it.
    let existing = created_elsewhere(peer, &taken_as(peer, "racer"));
    let (mut session, lines) = open_logged(&settings(peer, ON_CONFLICT_USER_NAME));
    let racer = drupal_user("3", "racer", "Race", "Winner");
    let out = succeeded(
        peer,
        &provision(&mut session, &racer, UserEvent::Created, None),
    );
    assert_eq!(out.action, Action::Adopted, "{}: {out:?}", peer.name);
    assert_eq!(
        out.link.as_ref().map(|l| l.remote_id.as_str()),
        Some(existing.as_str()),
        "{}",
        peer.name
    );
    let requests = logged_requests(&lines);
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("POST ") && r.ends_with("-> 409")),
        "{}: the server was asked by the POST: {requests:?}",
        peer.name
    );
    let racers = find_users(peer, "userName eq \"racer\"");
    assert_eq!(racers.len(), 1, "{}: no duplicate: {racers:?}", peer.name);
    assert_eq!(
        racers[0]["name"]["givenName"], "Race",
        "adopted and brought in line"
    );
    assert_eq!(all_users(peer).len(), 3, "{}", peer.name);
}

#[test]
fn on_conflict_one_user_at_a_time_on_scim2_server() {
    one_user_at_a_time(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn on_conflict_one_user_at_a_time_on_scimmy() {
    one_user_at_a_time(&peers::scimmy().expect("SCIMMY starts"));
}

/// `/Bulk`: twenty new users go in one bulk request with no look-up at all; two that
/// exist already meet a 409 inside the bulk answer, are looked up
/// and adopted, with no second POST.
fn in_bulk(peer: &Peer) {
    let taken = [
        created_elsewhere(peer, "bulk003"),
        created_elsewhere(peer, &taken_as(peer, "bulk017")),
    ];
    let (mut session, lines) = open_logged(&settings(peer, ON_CONFLICT_USER_NAME));
    let people: Vec<CmsUser> = (0..20)
        .map(|i| drupal_user(&i.to_string(), &format!("bulk{i:03}"), "Bulk", "User"))
        .collect();
    let out = batch(&mut session, &created_items(&people));
    for (i, result) in out.results.iter().enumerate() {
        let o = succeeded(peer, result);
        let expected = if i == 3 || i == 17 {
            Action::Adopted
        } else {
            Action::Created
        };
        assert_eq!(o.action, expected, "{}: user {i}", peer.name);
    }
    let adopted: Vec<String> = [3, 17]
        .iter()
        .map(|&i| {
            succeeded(peer, &out.results[i])
                .link
                .expect("a link")
                .remote_id
        })
        .collect();
    assert_eq!(adopted, taken, "{}", peer.name);
    assert_eq!(out.bulk_requests, 1, "{}", peer.name);
    let requests = logged_requests(&lines);
    let posts: Vec<&String> = requests.iter().filter(|r| r.starts_with("POST ")).collect();
    assert_eq!(
        posts.len(),
        1,
        "{}: one bulk request, no single POST: {posts:?}",
        peer.name
    );
    // Only the two conflicts were looked up (by userName), after the bulk answer.
    let (all, by_user_name) = look_ups(&lines);
    assert_eq!(all, by_user_name, "{}", peer.name);
    assert_eq!(all.len(), 2, "{}: {all:?}", peer.name);
    let on_server = all_users(peer);
    assert_eq!(on_server.len(), 20, "{}: no duplicates", peer.name);
    for user in &on_server {
        assert_eq!(user["name"]["givenName"], "Bulk", "{}: {user}", peer.name);
    }
}

#[test]
fn on_conflict_in_bulk_on_scim2_server() {
    in_bulk(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn on_conflict_in_bulk_on_scimmy() {
    in_bulk(&peers::scimmy().expect("SCIMMY starts"));
}

/// What the documentation warns of: a server that does not keep userName unique is given a
/// duplicate under `on_conflict` (and not under the default), and the first look-up that
/// sees the two says so, naming the setting.
#[test]
fn on_conflict_duplicates_on_a_server_that_does_not_enforce_uniqueness_and_says_so() {
    let peer = peers::quirky(&["--no-unique"]).expect("the quirky server starts");
    created_elsewhere(&peer, "twice");
    let twice = drupal_user("1", "twice", "Twice", "User");

    // The default looks up first and adopts.
    let (mut session, _) = open_logged(&settings(&peer, r#"{"matching": ["userName"]}"#));
    let out = succeeded(
        &peer,
        &provision(&mut session, &twice, UserEvent::Created, None),
    );
    assert_eq!(out.action, Action::Adopted);
    assert_eq!(find_users(&peer, "userName eq \"twice\"").len(), 1);

    // on_conflict posts, and this server takes the same userName a second time.
    let (mut session, _) = open_logged(&settings(&peer, ON_CONFLICT_USER_NAME));
    let out = succeeded(
        &peer,
        &provision(&mut session, &twice, UserEvent::Created, None),
    );
    assert_eq!(
        out.action,
        Action::Created,
        "the duplicate the docs warn of"
    );
    assert_eq!(find_users(&peer, "userName eq \"twice\"").len(), 2);

    // Matching next sees the two, and the error and the log name the setting.
    let (mut session, lines) = open_logged(&settings(&peer, ON_CONFLICT_USER_NAME));
    match session.index_remote_users() {
        Ok(Ok(listing)) => assert_eq!(listing.users, 2),
        other => panic!("listing failed: {other:?}"),
    }
    let error = match provision(&mut session, &twice, UserEvent::Reconcile, None) {
        Err(e) => host_example::describe_error(&e),
        Ok(o) => panic!("several matches are an error: {o:?}"),
    };
    assert!(error.contains("does not enforce its uniqueness"), "{error}");
    assert!(error.contains("before_create"), "{error}");
    let logged = lines.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(
        logged
            .iter()
            .any(|l| l.starts_with("[warn]") && l.contains("can create duplicates")),
        "{logged:?}"
    );
}

/// A server that refuses a taken userName with 400 `uniqueness` (RFC 7644 Table 9) rather
/// than 409 (§3.3): under `on_conflict` that refusal is the conflict, and the user is
/// looked up and adopted.
#[test]
fn on_conflict_a_400_uniqueness_is_a_conflict_on_the_quirky_server() {
    let peer = peers::quirky(&["--uniqueness-400"]).expect("the quirky server starts");
    let existing = created_elsewhere(&peer, "taken");
    let (mut session, lines) = open_logged(&settings(&peer, ON_CONFLICT_USER_NAME));
    let taken = drupal_user("1", "taken", "Taken", "User");
    let out = succeeded(
        &peer,
        &provision(&mut session, &taken, UserEvent::Created, None),
    );
    assert_eq!(out.action, Action::Adopted, "{out:?}");
    assert_eq!(
        out.link.as_ref().map(|l| l.remote_id.as_str()),
        Some(existing.as_str())
    );
    let requests = logged_requests(&lines);
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("POST ") && r.ends_with("-> 400")),
        "{requests:?}"
    );
    assert_eq!(find_users(&peer, "userName eq \"taken\"").len(), 1);
}

/// Lost and cut bulk answers: a fault proxy in front of scim2-server closes the connection
/// after forwarding some requests (the server applied them; the answer is lost) and cuts
/// the body of others. Sixty new users are delivered as a worker would, each failed user
/// again in the next batch with no link, until every user has one. Every user is on the
/// server exactly once, under the remote id its link names.
#[test]
fn on_conflict_lost_and_cut_bulk_answers_never_duplicate_a_user_on_scim2_server() {
    let peer = peers::scim2_server().expect("scim2-server starts");
    let faults = FaultConfig {
        seed: 30,
        write_factor: 4.0,
        truncation: Truncation::Either,
        ..FaultConfig::none()
    }
    .with_rate(Fault::DropAfterForward, 0.06)
    .with_rate(Fault::TruncatedBody, 0.04);
    let proxy = FaultProxy::start(&peer.base_url, faults).expect("the proxy starts");
    let mut through = settings(&peer, ON_CONFLICT_USER_NAME);
    through.base_url = proxy.base_url.clone();
    let people: Vec<CmsUser> = (0..60)
        .map(|i| drupal_user(&i.to_string(), &format!("lossy{i:03}"), "Lossy", "User"))
        .collect();
    let mut links: Vec<Option<String>> = vec![None; people.len()];
    let mut rounds = 0;
    let mut adopted = 0;
    while links.iter().any(Option::is_none) {
        rounds += 1;
        assert!(rounds <= 40, "not delivered after 40 rounds: {links:?}");
        let pending: Vec<usize> = (0..people.len()).filter(|&i| links[i].is_none()).collect();
        let items: Vec<BatchItem> = pending
            .iter()
            .map(|&i| BatchItem {
                user: people[i].clone(),
                event: UserEvent::Created,
                link: None,
            })
            .collect();
        // A failed open (discovery's answer lost) is a round with nothing delivered.
        let Ok(Ok(mut session)) = scim_provisioner_tests::component::runtime().open(&through)
        else {
            continue;
        };
        let out = batch(&mut session, &items);
        for (&i, result) in pending.iter().zip(&out.results) {
            if let Ok(o) = result {
                assert!(
                    matches!(o.action, Action::Created | Action::Adopted),
                    "user {i}: {o:?}"
                );
                links[i] = o.link.as_ref().map(|l| l.remote_id.clone());
                adopted += usize::from(o.action == Action::Adopted);
            }
        }
    }
    let lost_bulk_answers = proxy
        .injected()
        .iter()
        .filter(|f| f.method == "POST" && f.target.contains("/Bulk"))
        .count();
    assert!(
        lost_bulk_answers > 0,
        "the faults reached no bulk request: {}",
        proxy.stats().summary()
    );
    // Users whose creation landed but whose answer did not: found and adopted, not sent again.
    assert!(
        adopted > 0,
        "no creation was lost in transit ({rounds} rounds)"
    );
    let on_server = all_users(&peer);
    assert_eq!(
        on_server.len(),
        people.len(),
        "no duplicate, none lost ({} rounds, {})",
        rounds,
        proxy.stats().summary()
    );
    for (i, link) in links.iter().enumerate() {
        let id = link.as_deref().expect("a link");
        let remote = on_server
            .iter()
            .find(|u| u["id"] == id)
            .unwrap_or_else(|| panic!("user {i}'s link {id} names no user"));
        assert_eq!(remote["userName"], format!("lossy{i:03}"));
    }
}
