//! The shared directory on a PostgreSQL and a MariaDB of the test's own, checked with the
//! same behaviour checks as the SQLite directory (run on all three here), plus what only
//! several connections show: If-Match and uniqueness between them, and deadlocks retried.

use std::path::Path;
use std::sync::{Arc, Barrier};

use serde_json::{Value, json};

use super::*;
use crate::database::test_support::{TestMariaDb, TestPostgres};
use crate::database::{Db, schema_version};
use crate::directory::SqliteDirectory;

fn url(text: &str) -> DatabaseUrl {
    DatabaseUrl::parse(text, Path::new("/")).expect("a database URL")
}

fn user(name: &str, external: Option<&str>) -> String {
    let mut v = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "name": {"familyName": name, "givenName": "T"},
    });
    if let Some(e) = external {
        v["externalId"] = json!(e);
    }
    v.to_string()
}

fn group(name: &str, members: &[&str]) -> String {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": name,
        "members": members.iter().map(|m| json!({"value": m})).collect::<Vec<_>>(),
    })
    .to_string()
}

fn search(filter: Option<&str>, start: u32, count: u32, sort: Option<&str>) -> Search {
    Search {
        filter: filter.map(String::from),
        start_index: start,
        count,
        sort_by: sort.map(String::from),
        sort_descending: true,
    }
}

fn attr(r: &StoredResource, name: &str) -> String {
    let v: Value = serde_json::from_str(&r.json).expect("stored JSON");
    v[name].as_str().unwrap_or_default().to_string()
}

fn found(d: &mut dyn DirectoryBackend, kind: ResourceKind, s: &Search) -> Vec<String> {
    let name = if kind == ResourceKind::User {
        "userName"
    } else {
        "displayName"
    };
    d.query(kind, s)
        .expect("query")
        .resources
        .iter()
        .map(|r| attr(r, name))
        .collect()
}

/// What every directory does, whatever its database; `d` and `other` are two connections
/// to one empty directory.
fn behaves_as_a_directory(d: &mut dyn DirectoryBackend, other: &mut dyn DirectoryBackend) {
    use ResourceKind::{Group, User};
    let alice = d
        .create(User, &user("Alice", Some("ext-1")), None)
        .expect("create");
    assert_eq!(alice.version, "W/\"1\"");
    // userName is unique without regard to case, across connections.
    assert!(matches!(
        other.create(User, &user("ALICE", None), None),
        Err(DirectoryError::Conflict(_))
    ));
    let bob = other
        .create(User, &user("bob", Some("ext-2")), None)
        .unwrap();
    for n in ["carol", "dave", "erin"] {
        d.create(User, &user(n, None), None).unwrap();
    }
    assert_eq!(
        other
            .get(User, &alice.id)
            .unwrap()
            .map(|r| attr(&r, "userName")),
        Some("Alice".into())
    );
    assert!(d.get(User, "no-such-id").unwrap().is_none());

    // Indexed equalities, other filters and sorts all agree with the core's select.
    assert_eq!(
        found(d, User, &search(Some("userName eq \"alice\""), 1, 10, None)),
        ["Alice"]
    );
    assert_eq!(
        found(
            d,
            User,
            &search(Some("externalId eq \"ext-2\""), 1, 10, None)
        ),
        ["bob"]
    );
    assert_eq!(
        found(
            d,
            User,
            &search(Some(&format!("id eq \"{}\"", bob.id)), 1, 10, None)
        ),
        ["bob"]
    );
    assert_eq!(
        found(
            d,
            User,
            &search(Some("userName co \"a\""), 1, 10, Some("userName"))
        ),
        ["dave", "carol", "Alice"]
    );
    assert!(
        d.query(User, &search(Some("userName eq"), 1, 10, None))
            .is_err()
    );
    // A plain page is the store's order, paged in SQL.
    let page = d.query(User, &search(None, 2, 2, None)).unwrap();
    assert_eq!(page.total_results, 5);
    assert_eq!(
        page.resources
            .iter()
            .map(|r| attr(r, "userName"))
            .collect::<Vec<_>>(),
        ["bob", "carol"]
    );

    // If-Match: the version moves on each write; a stale one is refused.
    let v2 = other
        .replace(
            User,
            &alice.id,
            &user("alice2", Some("ext-1")),
            None,
            Some("W/\"1\""),
        )
        .unwrap();
    assert_eq!(v2.version, "W/\"2\"");
    assert_eq!(v2.created, alice.created);
    assert!(matches!(
        d.replace(
            User,
            &alice.id,
            &user("alice3", None),
            None,
            Some("W/\"1\"")
        ),
        Err(DirectoryError::VersionMismatch)
    ));
    assert!(matches!(
        d.replace(User, "no-such-id", &user("x", None), None, None),
        Err(DirectoryError::NotFound)
    ));
    assert!(matches!(
        d.replace(User, &alice.id, &user("BOB", None), None, None),
        Err(DirectoryError::Conflict(_))
    ));
    // The old userName is free again.
    let alice_again = d.create(User, &user("alice", None), None).unwrap();

    // Groups: found by member through the index, in any case the filter asks.
    let admins = d
        .create(Group, &group("Admins", &[&alice.id, &bob.id]), None)
        .unwrap();
    other
        .create(Group, &group("Staff", &[&bob.id]), None)
        .unwrap();
    assert!(matches!(
        other.create(Group, &group("admins", &[]), None),
        Err(DirectoryError::Conflict(_))
    ));
    let of = |id: &str| search(Some(&format!("members[value eq \"{id}\"]")), 1, 10, None);
    assert_eq!(found(d, Group, &of(&bob.id)), ["Admins", "Staff"]);
    assert_eq!(found(d, Group, &of(&alice.id)), ["Admins"]);
    let page = d
        .query(
            Group,
            &search(
                Some(&format!("members.value eq \"{}\"", bob.id)),
                2,
                1,
                None,
            ),
        )
        .unwrap();
    assert_eq!((page.total_results, page.resources.len()), (2, 1));
    // Deleting a user takes it out of its groups, in the same transaction.
    assert!(other.delete(User, &alice.id).unwrap());
    assert!(!other.delete(User, &alice.id).unwrap());
    assert_eq!(found(d, Group, &of(&alice.id)), Vec::<String>::new());
    let admins_now = d.get(Group, &admins.id).unwrap().unwrap();
    assert_eq!(admins_now.version, "W/\"2\"");
    assert!(!admins_now.json.contains(&alice.id));
    assert!(d.delete(Group, &admins.id).unwrap());
    assert_eq!(found(d, Group, &of(&bob.id)), ["Staff"]);

    // Values longer than any index takes are found and kept unique all the same.
    let long = format!("{}@example.com", "l".repeat(3000));
    let long_user = d.create(User, &user(&long, Some(&long)), None).unwrap();
    assert!(matches!(
        other.create(User, &user(&long.to_uppercase(), None), None),
        Err(DirectoryError::Conflict(_))
    ));
    other
        .create(User, &user(&format!("{long}x"), None), None)
        .unwrap();
    assert_eq!(
        found(
            d,
            User,
            &search(Some(&format!("userName eq \"{long}\"")), 1, 10, None)
        ),
        [long.as_str()]
    );
    assert_eq!(
        found(
            d,
            User,
            &search(Some(&format!("externalId eq \"{long}\"")), 1, 10, None)
        ),
        [long.as_str()]
    );
    let long_group = d
        .create(Group, &group("Long", &[&long_user.id, &long]), None)
        .unwrap();
    assert_eq!(found(d, Group, &of(&long)), ["Long"]);
    assert!(d.get(Group, &long_group.id).unwrap().is_some());

    // Characters past ASCII survive and compare as the core compares them.
    d.create(User, &user("Zoë Ünal", None), None).unwrap();
    assert_eq!(
        found(
            d,
            User,
            &search(Some("userName eq \"zoë ünal\""), 1, 10, None)
        ),
        ["Zoë Ünal"]
    );
    assert!(matches!(
        other.create(User, &user("ZOË ÜNAL", None), None),
        Err(DirectoryError::Conflict(_))
    ));

    // A password is kept only as its hash, never in the resource.
    let with_password = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "pat", "password": "Secret-123"
    })
    .to_string();
    let pat = d.create(User, &with_password, None).unwrap();
    assert!(!pat.json.contains("Secret-123"));
    assert!(
        !d.get(User, &pat.id)
            .unwrap()
            .unwrap()
            .json
            .contains("Secret-123")
    );
    assert!(d.delete(User, &alice_again.id).unwrap());
}

/// Two connections replacing one resource on the same `If-Match` version from two threads,
/// `rounds` times: exactly one wins each round.
fn concurrent_replaces_never_both_win(
    mut a: Box<dyn DirectoryBackend>,
    b: Box<dyn DirectoryBackend>,
    rounds: usize,
) {
    let created = a
        .create(ResourceKind::User, &user("racer", None), None)
        .unwrap();
    let id = created.id.clone();
    let barrier = Arc::new(Barrier::new(2));
    let run = |mut d: Box<dyn DirectoryBackend>, tag: &'static str| {
        let barrier = Arc::clone(&barrier);
        let id = id.clone();
        std::thread::spawn(move || {
            let mut wins = Vec::new();
            for round in 1..=rounds {
                barrier.wait();
                let version = format!("W/\"{round}\"");
                let body = user("racer", Some(&format!("{tag}-{round}")));
                let out = d.replace(ResourceKind::User, &id, &body, None, Some(&version));
                match out {
                    Ok(_) => wins.push(true),
                    Err(DirectoryError::VersionMismatch) => wins.push(false),
                    Err(e) => panic!("round {round}: {e}"),
                }
                barrier.wait();
            }
            wins
        })
    };
    let first = run(a, "a");
    let second = run(b, "b");
    let (first, second) = (first.join().unwrap(), second.join().unwrap());
    for (round, (x, y)) in first.iter().zip(&second).enumerate() {
        assert!(x ^ y, "round {}: wins {x} and {y}", round + 1);
    }
}

fn two(url: &DatabaseUrl) -> (SharedDirectory, SharedDirectory) {
    (
        SharedDirectory::open(url).unwrap(),
        SharedDirectory::open(url).unwrap(),
    )
}

/// The version the host recorded, and that opening again migrates nothing.
fn schema_is_recorded(url: &DatabaseUrl) {
    let mut db = Db::connect(url).unwrap();
    assert_eq!(
        schema_version(&mut db, DIRECTORY_COMPONENT).unwrap(),
        DIRECTORY_SCHEMA_VERSION
    );
    SharedDirectory::open(url).unwrap();
    assert_eq!(
        schema_version(&mut db, DIRECTORY_COMPONENT).unwrap(),
        DIRECTORY_SCHEMA_VERSION
    );
}

#[test]
fn the_sqlite_directory_passes_the_same_checks() {
    let dir = std::env::temp_dir().join(format!(
        "scim-shared-dir-{}-{}",
        std::process::id(),
        new_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dir.db");
    let lock = Arc::new(std::sync::Mutex::new(()));
    let mut a = SqliteDirectory::open_shared(&path, Arc::clone(&lock)).unwrap();
    let mut b = SqliteDirectory::open_shared(&path, lock).unwrap();
    behaves_as_a_directory(&mut a, &mut b);
    let _ = std::fs::remove_dir_all(&dir);
}

fn cms_view(name: &str, mail: &str, title: &str, active: bool) -> CmsUser {
    use crate::types::FieldValue;
    CmsUser {
        id: String::new(),
        fields: vec![
            ("name".into(), FieldValue::Text(name.into())),
            ("mail".into(), FieldValue::Text(mail.into())),
            ("title".into(), FieldValue::Text(title.into())),
        ],
        active,
    }
}

/// The CMS user of `id` in the store's `users` table: name, mail, fields, active.
fn cms_user(db: &mut Db, id: &str) -> Option<(String, String, String, i64)> {
    db.query_opt(
        "SELECT name, mail, fields, active FROM users WHERE id = ?",
        &[id.into()],
    )
    .unwrap()
    .map(|r| {
        (
            r.text(0).unwrap(),
            r.text(1).unwrap(),
            r.text(2).unwrap(),
            r.int(3).unwrap(),
        )
    })
}

fn count(db: &mut Db, sql: &str) -> i64 {
    db.query_opt(sql, &[]).unwrap().unwrap().int(0).unwrap()
}

/// As on SQLite, a User written through the directory is kept as a CMS user in the store's
/// `users` table of the same database, in the same transaction: created, replaced and
/// deleted with it; a login name a CMS user holds already refuses the write and leaves
/// nothing behind; a password is kept only as the resource's argon2id hash, in neither
/// table in clear.
fn mirrors_users_into_the_cms(url: &DatabaseUrl) {
    use ResourceKind::User;
    let mut d = SharedDirectory::open(url).unwrap();
    let mut db = Db::connect(url).unwrap();
    db.execute(
        "INSERT INTO users (id, name, mail, fields, active) VALUES ('cms-1', 'taken', '', '{}', 1)",
        &[],
    )
    .unwrap();
    let secret = "Clear-Secret-One";
    let with_password = |name: &str| {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": name,
            "password": secret,
        })
        .to_string()
    };
    let refused = d
        .create(
            User,
            &with_password("fresh"),
            Some(&cms_view("TAKEN", "", "", true)),
        )
        .unwrap_err();
    assert!(
        matches!(refused, DirectoryError::Conflict(_)),
        "{refused:?}"
    );
    assert_eq!(count(&mut db, "SELECT COUNT(*) FROM scim_resources"), 0);
    assert_eq!(count(&mut db, "SELECT COUNT(*) FROM users"), 1);

    let created = d
        .create(
            User,
            &with_password("pw.user"),
            Some(&cms_view("pw.user", "pw@example.com", "Engineer", true)),
        )
        .unwrap();
    let (name, mail, fields, active) = cms_user(&mut db, &created.id).expect("a CMS user");
    assert_eq!(
        (name.as_str(), mail.as_str(), active),
        ("pw.user", "pw@example.com", 1)
    );
    assert_eq!(
        serde_json::from_str::<Value>(&fields).unwrap(),
        json!({"title": "Engineer"})
    );
    let hash = db
        .query_opt(
            "SELECT password_hash FROM scim_resources WHERE id = ?",
            &[created.id.as_str().into()],
        )
        .unwrap()
        .unwrap()
        .text(0)
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    for sql in [
        "SELECT COUNT(*) FROM users WHERE fields LIKE '%Clear-Secret%' OR name LIKE '%Clear-Secret%' OR mail LIKE '%Clear-Secret%'",
        "SELECT COUNT(*) FROM scim_resources WHERE json LIKE '%Clear-Secret%' OR json LIKE '%assword%'",
    ] {
        assert_eq!(count(&mut db, sql), 0, "{sql}");
    }

    // A replace renames and deactivates the CMS user; one without a CMS view leaves it.
    d.replace(
        User,
        &created.id,
        &user("pw.renamed", None),
        Some(&cms_view("pw.renamed", "new@example.com", "Lead", false)),
        None,
    )
    .unwrap();
    let (name, mail, _, active) = cms_user(&mut db, &created.id).unwrap();
    assert_eq!(
        (name.as_str(), mail.as_str(), active),
        ("pw.renamed", "new@example.com", 0)
    );
    // Renaming to a name another CMS user holds is refused, and the SCIM user stays as it was.
    let refused = d
        .replace(
            User,
            &created.id,
            &user("taken", None),
            Some(&cms_view("taken", "", "", true)),
            None,
        )
        .unwrap_err();
    assert!(
        matches!(refused, DirectoryError::Conflict(_)),
        "{refused:?}"
    );
    let kept = d.get(User, &created.id).unwrap().unwrap();
    assert_eq!(attr(&kept, "userName"), "pw.renamed");
    assert_eq!(kept.version, "W/\"2\"");

    let plain = d.create(User, &user("no.view", None), None).unwrap();
    assert!(cms_user(&mut db, &plain.id).is_none());

    assert!(d.delete(User, &created.id).unwrap());
    assert!(cms_user(&mut db, &created.id).is_none());
    assert_eq!(count(&mut db, "SELECT COUNT(*) FROM users"), 1);
}

/// A directory whose database went away answers "unavailable" (503) instead of failing for
/// good, and works again on its next call once the database is back.
fn outlives_a_restart(d: &mut SharedDirectory, stop: impl FnOnce(), start: impl FnOnce()) {
    let created = d
        .create(ResourceKind::User, &user("restart", None), None)
        .unwrap();
    stop();
    assert!(matches!(
        d.get(ResourceKind::User, &created.id),
        Err(DirectoryError::Unavailable(_))
    ));
    assert!(matches!(
        d.replace(
            ResourceKind::User,
            &created.id,
            &user("restart", Some("x")),
            None,
            None
        ),
        Err(DirectoryError::Unavailable(_))
    ));
    start();
    assert!(d.get(ResourceKind::User, &created.id).unwrap().is_some());
    d.replace(
        ResourceKind::User,
        &created.id,
        &user("restart", Some("x")),
        None,
        None,
    )
    .unwrap();
}

#[test]
fn on_postgres() {
    let pg = TestPostgres::start().unwrap();
    let checks = url(&pg.create_database("directory_checks").unwrap());
    let (mut a, mut b) = two(&checks);
    behaves_as_a_directory(&mut a, &mut b);
    schema_is_recorded(&checks);
    mirrors_users_into_the_cms(&url(&pg.create_database("directory_cms").unwrap()));
    let race = url(&pg.create_database("directory_race").unwrap());
    let (a, b) = two(&race);
    concurrent_replaces_never_both_win(Box::new(a), Box::new(b), 50);
    let mut d = SharedDirectory::open(&checks).unwrap();
    let pg = std::cell::RefCell::new(pg);
    outlives_a_restart(
        &mut d,
        || pg.borrow_mut().stop(),
        || pg.borrow_mut().start_again().unwrap(),
    );
}

#[test]
fn on_mariadb() {
    let maria = TestMariaDb::start().unwrap();
    let checks = url(&maria.create_database("directory_checks").unwrap());
    let (mut a, mut b) = two(&checks);
    behaves_as_a_directory(&mut a, &mut b);
    schema_is_recorded(&checks);
    mirrors_users_into_the_cms(&url(&maria.create_database("directory_cms").unwrap()));
    let race = url(&maria.create_database("directory_race").unwrap());
    let (a, b) = two(&race);
    concurrent_replaces_never_both_win(Box::new(a), Box::new(b), 50);
    let mut d = SharedDirectory::open(&checks).unwrap();
    let maria = std::cell::RefCell::new(maria);
    outlives_a_restart(
        &mut d,
        || maria.borrow_mut().stop(),
        || maria.borrow_mut().start_again().unwrap(),
    );
}
