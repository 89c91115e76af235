//! Batch provisioning through SCIM `/Bulk`, with the built component in wasmtime against
//! real servers: scim2-server (which enforces its advertised `maxOperations` and
//! `maxPayloadSize` with 413) and SCIMMY. Every test reads the server back with plain HTTP
//! and counts the requests the component logged.

use host_example::types::{Action, BatchItem, BatchOutcome, CmsUser, FieldValue, Link, UserEvent};
use host_example::{ConnectorSettings, Session};
use scim_provisioner_tests::component::{
    LogLines, all_users, drupal_user, find_users, group_members, logged_requests, open_logged,
    remote_user, set_field, settings, text,
};
use scim_provisioner_tests::peers::{self, Peer, send_json};
use serde_json::json;

/// Matching on userName alone (one look-up per creation); deleted users are deleted.
const POLICY: &str = r#"{"matching": ["userName"], "deprovision": "delete",
    "operations": {"create": true, "update": true, "deactivate": true, "delete": true}}"#;

fn batch(session: &mut Session, items: &[BatchItem]) -> BatchOutcome {
    match session.provision_batch(items) {
        Ok(out) => out,
        Err(trap) => panic!("trap in provision-batch: {trap:#}"),
    }
}

fn users(n: usize, prefix: &str) -> Vec<CmsUser> {
    (0..n)
        .map(|i| drupal_user(&format!("{i}"), &format!("{prefix}{i:03}"), "Bulk", "User"))
        .collect()
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

/// Every result succeeded with this action; returns the links.
fn expect_all(peer: &Peer, out: &BatchOutcome, action: Action) -> Vec<Option<Link>> {
    out.results
        .iter()
        .enumerate()
        .map(|(i, r)| match r {
            Ok(o) => {
                assert_eq!(o.action, action, "{}: user {i}: {o:?}", peer.name);
                o.link.clone()
            }
            Err(e) => panic!(
                "{}: user {i} failed: {}",
                peer.name,
                host_example::describe_error(e)
            ),
        })
        .collect()
}

fn bulk_posts(lines: &LogLines) -> usize {
    logged_requests(lines)
        .iter()
        .filter(|l| l.starts_with("POST ") && l.contains("/Bulk -> "))
        .count()
}

fn single_writes(lines: &LogLines) -> Vec<String> {
    logged_requests(lines)
        .into_iter()
        .filter(|l| !l.starts_with("GET ") && !l.contains("/Bulk -> "))
        .collect()
}

fn open(peer: &Peer) -> (Session, LogLines, ConnectorSettings) {
    let s = settings(peer, POLICY);
    let (session, lines) = open_logged(&s);
    (session, lines, s)
}

// ---------------------------------------------------------------------------------------
// 1. Every kind of write in one bulk request

fn lifecycle(peer: &Peer) {
    let (mut session, lines, _) = open(peer);
    let people = users(30, "bulk");
    let out = batch(&mut session, &created_items(&people));
    let links = expect_all(peer, &out, Action::Created);
    // Discovery, one look-up per user, and one bulk request for all 30 creations.
    assert_eq!(out.bulk_requests, 1, "{}", peer.name);
    assert_eq!(out.requests, 1 + 30 + 1, "{}", peer.name);
    assert_eq!(bulk_posts(&lines), 1);
    assert!(
        single_writes(&lines).is_empty(),
        "{:?}",
        single_writes(&lines)
    );
    let on_server = all_users(peer);
    assert_eq!(on_server.len(), 30, "{}", peer.name);
    for (i, link) in links.iter().enumerate() {
        let link = link.as_ref().expect("a link");
        let (status, remote) = remote_user(peer, &link.remote_id);
        assert_eq!(status, 200, "{}: {remote}", peer.name);
        assert_eq!(remote["userName"], json!(format!("bulk{i:03}")), "{remote}");
    }

    // Ten renamed, ten blocked, ten deleted: one bulk request, nothing else.
    let mut items = Vec::new();
    for (i, (user, link)) in people.iter().zip(&links).enumerate() {
        let mut user = user.clone();
        let event = match i / 10 {
            0 => {
                set_field(&mut user, "field_first_name", text("Renamed"));
                UserEvent::Updated
            }
            1 => {
                user.active = false;
                UserEvent::Blocked
            }
            _ => UserEvent::Deleted,
        };
        items.push(BatchItem {
            user,
            event,
            link: link.clone(),
        });
    }
    let before = logged_requests(&lines).len();
    let out = batch(&mut session, &items);
    for (i, r) in out.results.iter().enumerate() {
        let expected = [Action::Updated, Action::Deactivated, Action::Deleted][i / 10];
        match r {
            Ok(o) => assert_eq!(o.action, expected, "{}: user {i}", peer.name),
            Err(e) => panic!(
                "{}: user {i}: {}",
                peer.name,
                host_example::describe_error(e)
            ),
        }
    }
    assert_eq!(out.bulk_requests, 1, "{}", peer.name);
    assert_eq!(out.requests, 1, "{}", peer.name);
    assert_eq!(logged_requests(&lines).len(), before + 1);
    for (i, link) in links.iter().enumerate() {
        let id = &link.as_ref().expect("a link").remote_id;
        let (status, remote) = remote_user(peer, id);
        match i / 10 {
            0 => {
                assert_eq!(status, 200);
                assert_eq!(remote["name"]["givenName"], "Renamed", "{remote}");
                assert_eq!(remote["active"], true, "{remote}");
            }
            1 => {
                assert_eq!(status, 200);
                assert_eq!(remote["active"], false, "{remote}");
            }
            _ => assert_eq!(status, 404, "{}: deleted user {id}: {remote}", peer.name),
        }
    }
    assert_eq!(all_users(peer).len(), 20, "{}", peer.name);

    // The same again, with the new links: nothing to send.
    let again: Vec<BatchItem> = items
        .iter()
        .zip(&out.results)
        .filter(|(item, _)| item.event != UserEvent::Deleted)
        .map(|(item, r)| BatchItem {
            user: item.user.clone(),
            event: UserEvent::Reconcile,
            link: r.as_ref().ok().and_then(|o| o.link.clone()),
        })
        .collect();
    let out = batch(&mut session, &again);
    assert!(
        out.results
            .iter()
            .all(|r| matches!(r, Ok(o) if o.action == Action::Unchanged)),
        "{:?}",
        out.results
    );
    assert_eq!(out.requests, 0, "{}", peer.name);
}

#[test]
fn every_kind_of_write_travels_in_one_bulk_request_on_scim2_server() {
    lifecycle(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn every_kind_of_write_travels_in_one_bulk_request_on_scimmy() {
    lifecycle(&peers::scimmy().expect("SCIMMY starts"));
}

// ---------------------------------------------------------------------------------------
// 2. Chunks within the server's limits

#[test]
fn bulk_requests_stay_within_max_operations_and_max_payload_size() {
    // scim2-server refuses a bulk request over either limit with 413: a single refusal
    // would show here as a write sent on its own.
    for (max_operations, max_payload_size, at_least) in
        [(4u32, 1_000_000u64, 7usize), (50, 1_500, 7)]
    {
        let peer = peers::scim2_server_with_bulk_limits(max_operations, max_payload_size)
            .expect("scim2-server starts");
        let (mut session, lines, _) = open(&peer);
        let people = users(25, "chunk");
        let out = batch(&mut session, &created_items(&people));
        expect_all(&peer, &out, Action::Created);
        assert!(
            single_writes(&lines).is_empty(),
            "limits {max_operations}/{max_payload_size}: {:?}",
            logged_requests(&lines)
        );
        let bulks = bulk_posts(&lines);
        assert!(
            bulks >= at_least,
            "limits {max_operations}/{max_payload_size}: {bulks} bulk requests"
        );
        assert_eq!(out.bulk_requests as usize, bulks);
        assert_eq!(out.requests as usize, 1 + 25 + bulks);
        assert_eq!(all_users(&peer).len(), 25);
    }
}

// ---------------------------------------------------------------------------------------
// 3. A conflict inside a bulk answer

fn conflict_is_adopted(peer: &Peer) {
    let (mut session, lines, _) = open(peer);
    // The remote users were listed (as a first sync does) before someone created
    // "racer" directly: the listing says no, the server says 409.
    match session.index_remote_users() {
        Ok(Ok(listing)) => assert_eq!(listing.users, 0),
        other => panic!("{}: listing failed: {other:?}", peer.name),
    }
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "racer",
        "name": {"givenName": "Early", "familyName": "Bird"}
    });
    let (status, existing) =
        send_json("POST", &peer.url("/Users"), &peer.token, Some(&body)).expect("POST works");
    assert_eq!(status, 201, "{existing}");
    let existing_id = existing["id"].as_str().expect("an id").to_string();
    let racer = drupal_user("1", "racer", "Race", "Winner");
    let other = drupal_user("2", "calm", "Calm", "Person");
    let out = batch(&mut session, &created_items(&[racer, other]));
    match &out.results[0] {
        Ok(o) => {
            assert_eq!(o.action, Action::Adopted, "{}: {o:?}", peer.name);
            assert_eq!(
                o.link.as_ref().map(|l| l.remote_id.as_str()),
                Some(existing_id.as_str())
            );
        }
        Err(e) => panic!("{}: {}", peer.name, host_example::describe_error(e)),
    }
    assert!(matches!(&out.results[1], Ok(o) if o.action == Action::Created));
    assert_eq!(out.bulk_requests, 1);
    let racers = find_users(peer, "userName eq \"racer\"");
    assert_eq!(racers.len(), 1, "{}: no duplicate: {racers:?}", peer.name);
    assert_eq!(
        racers[0]["name"]["givenName"], "Race",
        "adopted and brought in line"
    );
    assert!(bulk_posts(&lines) == 1);
}

#[test]
fn a_conflict_in_a_bulk_answer_is_adopted_on_scim2_server() {
    conflict_is_adopted(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn a_conflict_in_a_bulk_answer_is_adopted_on_scimmy() {
    conflict_is_adopted(&peers::scimmy().expect("SCIMMY starts"));
}

// ---------------------------------------------------------------------------------------
// 4. Groups after bulk creations

fn groups_follow_bulk_creations(peer: &Peer) {
    let policy = r#"{"matching": ["userName"], "groups_from": "roles"}"#;
    let (mut session, lines) = open_logged(&settings(peer, policy));
    let mut people = users(6, "grouped");
    for (i, user) in people.iter_mut().enumerate() {
        let roles = if i % 2 == 0 {
            vec!["editor".to_string(), "member".to_string()]
        } else {
            vec!["editor".to_string()]
        };
        set_field(user, "roles", FieldValue::TextList(roles));
    }
    let out = batch(&mut session, &created_items(&people));
    let links = expect_all(peer, &out, Action::Created);
    assert_eq!(out.bulk_requests, 1, "{}", peer.name);
    assert_eq!(bulk_posts(&lines), 1);
    let ids: Vec<String> = links
        .iter()
        .map(|l| l.as_ref().expect("a link").remote_id.clone())
        .collect();
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        group_members(peer, "editor").map(sorted),
        Some(sorted(ids.clone())),
        "{}",
        peer.name
    );
    let even: Vec<String> = ids.iter().step_by(2).cloned().collect();
    assert_eq!(
        group_members(peer, "member").map(sorted),
        Some(sorted(even)),
        "{}",
        peer.name
    );
}

#[test]
fn groups_follow_bulk_creations_on_scim2_server() {
    groups_follow_bulk_creations(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn groups_follow_bulk_creations_on_scimmy() {
    groups_follow_bulk_creations(&peers::scimmy().expect("SCIMMY starts"));
}

// ---------------------------------------------------------------------------------------
// 5. A first sync onto a server that already has most users

fn existing_users_are_adopted_in_bulk(peer: &Peer) {
    // Twenty users exist already, with another first name; five do not.
    for i in 0..20 {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("known{i:03}"),
            "name": {"givenName": "Old", "familyName": "User"}
        });
        let (status, created) =
            send_json("POST", &peer.url("/Users"), &peer.token, Some(&body)).expect("POST works");
        assert_eq!(status, 201, "{}: {created}", peer.name);
    }
    let (mut session, lines, _) = open(peer);
    match session.index_remote_users() {
        Ok(Ok(listing)) => assert_eq!(listing.users, 20, "{}", peer.name),
        other => panic!("{}: listing failed: {other:?}", peer.name),
    }
    let listed = logged_requests(&lines).len();
    let mut people = users(20, "known");
    people.extend(users(5, "fresh").into_iter().map(|mut u| {
        u.id = format!("new-{}", u.id);
        u
    }));
    let items: Vec<BatchItem> = people
        .iter()
        .map(|u| BatchItem {
            user: u.clone(),
            event: UserEvent::Reconcile,
            link: None,
        })
        .collect();
    let out = batch(&mut session, &items);
    for (i, r) in out.results.iter().enumerate() {
        let expected = if i < 20 {
            Action::Adopted
        } else {
            Action::Created
        };
        match r {
            Ok(o) => assert_eq!(o.action, expected, "{}: user {i}", peer.name),
            Err(e) => panic!(
                "{}: user {i}: {}",
                peer.name,
                host_example::describe_error(e)
            ),
        }
    }
    // A read of each match (adoption compares everything it maps), and one bulk request
    // for every write: twenty PATCHes and five POSTs.
    let requests = logged_requests(&lines)[listed..].to_vec();
    assert_eq!(
        requests.iter().filter(|r| r.starts_with("GET ")).count(),
        20,
        "{}: {requests:?}",
        peer.name
    );
    assert_eq!(requests.len(), 21, "{}: {requests:?}", peer.name);
    assert_eq!(out.requests, 21);
    assert_eq!(out.bulk_requests, 1);
    let on_server = all_users(peer);
    assert_eq!(on_server.len(), 25, "{}: no duplicates", peer.name);
    for user in &on_server {
        assert_eq!(user["name"]["givenName"], "Bulk", "{}: {user}", peer.name);
    }
}

#[test]
fn existing_users_are_adopted_in_bulk_on_scim2_server() {
    existing_users_are_adopted_in_bulk(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn existing_users_are_adopted_in_bulk_on_scimmy() {
    existing_users_are_adopted_in_bulk(&peers::scimmy().expect("SCIMMY starts"));
}

// ---------------------------------------------------------------------------------------
// 6. One listing shared by several instances

#[test]
fn an_index_listed_by_one_instance_serves_another() {
    let peer = peers::scim2_server().expect("scim2-server starts");
    for i in 0..3 {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("shared{i:03}")
        });
        let (status, created) =
            send_json("POST", &peer.url("/Users"), &peer.token, Some(&body)).expect("POST works");
        assert_eq!(status, 201, "{created}");
    }
    let (mut lister, _, shared) = open(&peer);
    assert!(
        matches!(lister.export_remote_index(), Ok(None)),
        "nothing listed yet"
    );
    match lister.index_remote_users() {
        Ok(Ok(listing)) => assert_eq!(listing.users, 3),
        other => panic!("listing failed: {other:?}"),
    }
    let document = lister
        .export_remote_index()
        .expect("no trap")
        .expect("an index");

    let (mut worker, lines) = open_logged(&shared);
    match worker.import_remote_index(&document) {
        Ok(Ok(users)) => assert_eq!(users, 3),
        other => panic!("loading failed: {other:?}"),
    }
    let out = batch(&mut worker, &created_items(&users(4, "shared")));
    for (i, r) in out.results.iter().enumerate() {
        let expected = if i < 3 {
            Action::Adopted
        } else {
            Action::Created
        };
        assert!(
            matches!(r, Ok(o) if o.action == expected),
            "user {i}: {r:?}"
        );
    }
    // No look-up by filter: the shared index answered; the matches are read by id.
    let requests = logged_requests(&lines);
    assert!(
        requests.iter().all(|r| !r.contains("filter=")),
        "{requests:?}"
    );
    assert_eq!(all_users(&peer).len(), 4);

    // An index built for other matching attributes is refused, not misused.
    let other = settings(&peer, r#"{"matching": ["externalId"]}"#);
    let (mut stranger, _) = open_logged(&other);
    match stranger.import_remote_index(&document) {
        Ok(Err(e)) => assert!(
            host_example::describe_error(&e).contains("matching attributes"),
            "{}",
            host_example::describe_error(&e)
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
}
