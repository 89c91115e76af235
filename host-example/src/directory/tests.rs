use serde_json::Value;

use super::*;
use crate::host_state::DirectoryBackend;
use crate::store::UserRecord;
use crate::types::{CmsUser, DirectoryError, FieldValue, ResourceKind, Search, StoredResource};

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "scim-dir-test-{name}-{}-{}",
        std::process::id(),
        crate::ids::new_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("dir.db")
}

/// The names (userName or displayName) of what a query finds, in its order.
fn names(
    d: &mut SqliteDirectory,
    kind: ResourceKind,
    filter: Option<&str>,
    sort_by: &str,
    descending: bool,
) -> Vec<String> {
    let page = d
        .query(
            kind,
            &Search {
                filter: filter.map(String::from),
                start_index: 1,
                count: 100,
                sort_by: Some(sort_by.into()),
                sort_descending: descending,
            },
        )
        .unwrap();
    let attr = match kind {
        ResourceKind::User => "userName",
        ResourceKind::Group => "displayName",
    };
    page.resources
        .into_iter()
        .map(|r| {
            let v: Value = serde_json::from_str(&r.json).unwrap();
            v[attr].as_str().unwrap().to_string()
        })
        .collect()
}

fn ids_sorted(d: &mut SqliteDirectory, sort_by: &str, descending: bool) -> Vec<String> {
    names(d, ResourceKind::User, None, sort_by, descending)
}

fn cms(name: &str) -> CmsUser {
    CmsUser {
        id: String::new(),
        fields: vec![("name".into(), FieldValue::Text(name.into()))],
        active: true,
    }
}

fn count(d: &SqliteDirectory, sql: &str) -> i64 {
    d.conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Two workers replacing one resource on the same `If-Match` version: exactly one wins,
/// the other is told the version moved (412), every time. The version check and the
/// write used to be separate statements, so both could pass the check and the older
/// change could land last: a client whose request was cut off after forwarding sent the
/// next change while the first was still being applied, and kept a stale value.
#[test]
fn concurrent_replaces_on_one_version_never_both_win() {
    let path = temp_db("race");
    let lock = Arc::new(Mutex::new(()));
    let mut first = SqliteDirectory::open_shared(&path, Arc::clone(&lock)).unwrap();
    let second = SqliteDirectory::open_shared(&path, Arc::clone(&lock)).unwrap();
    let id = first
        .create(
            ResourceKind::User,
            r#"{"userName":"race","title":"v0"}"#,
            None,
        )
        .unwrap()
        .id;
    let mut directories = [first, second];
    for round in 0..200 {
        let version = directories[0]
            .get(ResourceKind::User, &id)
            .unwrap()
            .unwrap()
            .version;
        let barrier = std::sync::Barrier::new(2);
        let outcomes: Vec<Result<StoredResource, DirectoryError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = directories
                .iter_mut()
                .enumerate()
                .map(|(w, d)| {
                    let (barrier, id, version) = (&barrier, &id, &version);
                    scope.spawn(move || {
                        let json = format!(r#"{{"userName":"race","title":"r{round}w{w}"}}"#);
                        barrier.wait();
                        d.replace(ResourceKind::User, id, &json, None, Some(version))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won = outcomes.iter().filter(|o| o.is_ok()).count();
        let refused = outcomes
            .iter()
            .filter(|o| matches!(o, Err(DirectoryError::VersionMismatch)))
            .count();
        assert_eq!((won, refused), (1, 1), "round {round}: {outcomes:?}");
    }
}

/// The names of the groups a filter finds.
fn group_names(d: &mut SqliteDirectory, filter: &str) -> Vec<String> {
    names(d, ResourceKind::Group, Some(filter), "displayName", false)
}

fn group(name: &str, members: &[&str]) -> String {
    serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": name,
        "members": members.iter().map(|m| serde_json::json!({"value": m})).collect::<Vec<_>>(),
    })
    .to_string()
}

fn user_id(d: &mut SqliteDirectory, name: &str) -> String {
    let json = format!(
        r#"{{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"{name}"}}"#
    );
    d.create(ResourceKind::User, &json, None).unwrap().id
}

#[test]
fn a_users_groups_are_found_through_the_membership_index() {
    let path = temp_db("members");
    let mut d = SqliteDirectory::open(&path).unwrap();
    let (ann, bob) = (user_id(&mut d, "ann"), user_id(&mut d, "bob"));
    let both = d
        .create(ResourceKind::Group, &group("both", &[&ann, &bob]), None)
        .unwrap();
    let only_bob = d
        .create(ResourceKind::Group, &group("only-bob", &[&bob]), None)
        .unwrap();
    d.create(ResourceKind::Group, &group("empty", &[]), None)
        .unwrap();
    let of = |id: &str| format!(r#"members[value eq "{id}"]"#);
    assert_eq!(group_names(&mut d, &of(&bob)), ["both", "only-bob"]);
    assert_eq!(group_names(&mut d, &of(&ann)), ["both"]);
    // The other form identity providers send.
    assert_eq!(
        group_names(&mut d, &format!(r#"members.value eq "{ann}""#)),
        ["both"]
    );
    assert!(group_names(&mut d, &of("nobody")).is_empty());
    // A replace moves the index with the members.
    d.replace(
        ResourceKind::Group,
        &both.id,
        &group("both", &[&ann]),
        None,
        None,
    )
    .unwrap();
    assert_eq!(group_names(&mut d, &of(&bob)), ["only-bob"]);
    d.delete(ResourceKind::Group, &only_bob.id).unwrap();
    assert!(group_names(&mut d, &of(&bob)).is_empty());
    // A deleted user leaves the groups they were in, and the index.
    assert!(d.delete(ResourceKind::User, &ann).unwrap());
    assert!(group_names(&mut d, &of(&ann)).is_empty());
    let stored = d.get(ResourceKind::Group, &both.id).unwrap().unwrap();
    assert!(!stored.json.contains(&ann), "{}", stored.json);
    assert_eq!(count(&d, "SELECT COUNT(*) FROM scim_group_members"), 0);
}

/// `members[value eq "<id>"]` unsorted (how the core reads a user's groups): paged from
/// the index when every candidate holds the exact value, by the core's `select` when one
/// holds a case variant; both give what the sorted query (always `select`) gives.
#[test]
fn a_member_lookup_is_paged_from_the_index_and_agrees_with_select() {
    let path = temp_db("members-exact");
    let mut d = SqliteDirectory::open(&path).unwrap();
    let ann = user_id(&mut d, "ann");
    let other = user_id(&mut d, "bob");
    for name in ["g1", "g2", "g3", "g4", "g5"] {
        d.create(ResourceKind::Group, &group(name, &[&ann]), None)
            .unwrap();
    }
    d.create(ResourceKind::Group, &group("bob's", &[&other]), None)
        .unwrap();
    let page = |d: &mut SqliteDirectory, value: &str, start_index: u32, count: u32| {
        let page = d
            .query(
                ResourceKind::Group,
                &Search {
                    filter: Some(format!(r#"members[value eq "{value}"]"#)),
                    start_index,
                    count,
                    sort_by: None,
                    sort_descending: false,
                },
            )
            .unwrap();
        let names: Vec<String> = page
            .resources
            .iter()
            .map(|r| {
                let v: Value = serde_json::from_str(&r.json).unwrap();
                v["displayName"].as_str().unwrap().to_string()
            })
            .collect();
        (page.total_results, names)
    };
    assert_eq!(
        page(&mut d, &ann, 1, 100),
        (
            5,
            vec!["g1", "g2", "g3", "g4", "g5"]
                .into_iter()
                .map(String::from)
                .collect()
        )
    );
    assert_eq!(
        page(&mut d, &ann, 2, 2),
        (5, vec!["g2".to_string(), "g3".to_string()])
    );
    assert_eq!(page(&mut d, &ann, 5, 10), (5, vec!["g5".to_string()]));
    assert_eq!(page(&mut d, &ann, 6, 10), (5, vec![]));
    assert_eq!(page(&mut d, &ann, 1, 0), (5, vec![]));
    assert_eq!(page(&mut d, "nobody", 1, 10), (0, vec![]));
    // A group holding a case variant of the value: not exact, so `select` decides, and
    // the unsorted and sorted queries agree on every lookup.
    let variant = ann.to_uppercase();
    d.create(ResourceKind::Group, &group("g0-variant", &[&variant]), None)
        .unwrap();
    for value in [ann.as_str(), variant.as_str()] {
        let (total, mut unsorted) = page(&mut d, value, 1, 100);
        let sorted = group_names(&mut d, &format!(r#"members[value eq "{value}"]"#));
        unsorted.sort();
        assert_eq!(unsorted, sorted, "{value}");
        assert_eq!(total as usize, sorted.len());
    }
}

#[test]
fn a_database_without_the_membership_index_gets_one_filled_from_its_groups() {
    let path = temp_db("members-old");
    let mut d = SqliteDirectory::open(&path).unwrap();
    let ann = user_id(&mut d, "ann");
    d.create(ResourceKind::Group, &group("staff", &[&ann]), None)
        .unwrap();
    // As a database written before the index existed.
    d.conn
        .execute_batch("DROP TABLE scim_group_members")
        .unwrap();
    drop(d);
    let mut d = SqliteDirectory::open(&path).unwrap();
    // Upper case: the index is a superset of a case-insensitive match.
    let filter = format!(r#"members[value eq "{}"]"#, ann.to_uppercase());
    assert_eq!(group_names(&mut d, &filter), ["staff"]);
    assert_eq!(count(&d, "SELECT COUNT(*) FROM scim_group_members"), 1);

    // As a database written before `member_value`: the index is rebuilt with it.
    d.conn
            .execute_batch(
                "DROP TABLE scim_group_members;
                 CREATE TABLE scim_group_members (group_id TEXT NOT NULL, member_key TEXT NOT NULL,
                     PRIMARY KEY (group_id, member_key)) WITHOUT ROWID;
                 INSERT INTO scim_group_members SELECT id, 'stale' FROM scim_resources WHERE kind = 'Group';",
            )
            .unwrap();
    drop(d);
    let mut d = SqliteDirectory::open(&path).unwrap();
    let exact: String = d
        .conn
        .query_row("SELECT member_value FROM scim_group_members", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(exact, ann);
    assert_eq!(count(&d, "SELECT COUNT(*) FROM scim_group_members"), 1);
    assert_eq!(
        group_names(&mut d, &format!(r#"members[value eq "{ann}"]"#)),
        ["staff"]
    );
}

#[test]
fn a_new_directory_file_has_small_pages_and_an_existing_one_keeps_its_own() {
    let page_size = |d: &SqliteDirectory| count(d, "PRAGMA page_size");
    let path = temp_db("pages-new");
    assert_eq!(page_size(&SqliteDirectory::open(&path).unwrap()), 1024);
    // A file the CMS store made first, with SQLite's default pages.
    let old = temp_db("pages-old");
    drop(Store::open(&old).unwrap());
    let mut d = SqliteDirectory::open(&old).unwrap();
    assert_eq!(page_size(&d), 4096);
    user_id(&mut d, "still-works");
}

/// A directory that leaves its checkpoints to the caller lets its WAL grow past the
/// 1,000 pages at which SQLite would checkpoint inside a write (the data stays in the
/// `-wal` file, the database file stays small); `checkpoint_until`, running beside it,
/// copies the WAL into the database file.
#[test]
fn checkpoints_run_beside_the_writes_not_in_them() {
    let path = temp_db("checkpoint");
    let mut wal = path.clone().into_os_string();
    wal.push("-wal");
    let size = |p: &std::ffi::OsStr| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut d = SqliteDirectory::open(&path).unwrap();
    d.leave_checkpoints_to_caller().unwrap();
    let filler = "x".repeat(3000);
    for i in 0..1500 {
        let json = format!(r#"{{"userName":"u{i}","title":"{filler}"}}"#);
        d.create(ResourceKind::User, &json, None).unwrap();
    }
    let written = 1500 * 3000;
    assert!(size(wal.as_os_str()) > written, "the data is in the WAL");
    assert!(
        size(path.as_os_str()) < written / 4,
        "and not yet in the database"
    );
    // Stopped before it starts: it checkpoints once on the way out.
    let stop = std::sync::atomic::AtomicBool::new(true);
    checkpoint_until(&path, std::time::Duration::ZERO, &stop).unwrap();
    assert!(size(path.as_os_str()) > written, "the checkpoint copied it");
    assert_eq!(
        d.query(
            ResourceKind::User,
            &Search {
                filter: None,
                start_index: 1,
                count: 0,
                sort_by: None,
                sort_descending: false,
            }
        )
        .unwrap()
        .total_results,
        1500
    );
}

/// A write is one transaction: when its CMS user cannot be written (the name is a CMS
/// user's already, under another SCIM id), the SCIM resource is not left behind either;
/// a deleted user leaves its groups in the same transaction.
#[test]
fn each_write_is_one_transaction() {
    let path = temp_db("tx");
    let mut d = SqliteDirectory::open(&path).unwrap();
    let mut store = Store::open(&path).unwrap();
    store
        .import_users([Ok(UserRecord {
            id: "cms-1".into(),
            name: "taken".into(),
            mail: String::new(),
            fields: serde_json::Map::new(),
            active: true,
        })])
        .unwrap();
    let err = d
        .create(
            ResourceKind::User,
            r#"{"userName":"fresh"}"#,
            Some(&cms("taken")),
        )
        .unwrap_err();
    // A conflict (409 uniqueness), as on PostgreSQL and MariaDB, not an internal error.
    assert!(
        matches!(err, DirectoryError::Conflict(ref m) if m.contains("taken")),
        "{err:?}"
    );
    assert_eq!(count(&d, "SELECT COUNT(*) FROM scim_resources"), 0);
    assert_eq!(count(&d, "SELECT COUNT(*) FROM users"), 1);

    let alice = d
        .create(
            ResourceKind::User,
            r#"{"userName":"alice"}"#,
            Some(&cms("alice")),
        )
        .unwrap();
    let group = format!(
        r#"{{"displayName":"staff","members":[{{"value":"{}"}}]}}"#,
        alice.id
    );
    let g = d.create(ResourceKind::Group, &group, None).unwrap();
    assert_eq!(count(&d, "SELECT COUNT(*) FROM users"), 2);
    assert!(d.delete(ResourceKind::User, &alice.id).unwrap());
    let g = d.get(ResourceKind::Group, &g.id).unwrap().unwrap();
    assert!(!g.json.contains(&alice.id), "{}", g.json);
    assert_eq!(g.version, "W/\"2\"");
    assert_eq!(count(&d, "SELECT COUNT(*) FROM users"), 1);
    assert!(!d.delete(ResourceKind::User, &alice.id).unwrap());
}

/// A login name a CMS user already holds, on create or on replace and whatever its case,
/// is a conflict (409 `uniqueness`, as the shared directory answers), and leaves nothing
/// behind: no SCIM resource, no changed resource or CMS user, no password hash. A User
/// keeping its own CMS name (a replace under the same id, even with another case) is
/// not a conflict.
#[test]
fn a_cms_name_clash_is_a_conflict_and_leaves_nothing() {
    let path = temp_db("cms-clash");
    let mut d = SqliteDirectory::open(&path).unwrap();
    let mut store = Store::open(&path).unwrap();
    store
        .import_users([Ok(UserRecord {
            id: "cms-1".into(),
            name: "Taken".into(),
            mail: "taken@cms.example".into(),
            fields: serde_json::Map::new(),
            active: true,
        })])
        .unwrap();

    // Created under another case of the held name, with a password.
    let err = d
        .create(
            ResourceKind::User,
            r#"{"userName":"taken","password":"s3cret-Pass"}"#,
            Some(&cms("TAKEN")),
        )
        .unwrap_err();
    assert!(matches!(err, DirectoryError::Conflict(_)), "{err:?}");
    assert!(!format!("{err:?}").contains("s3cret"), "{err:?}");
    assert_eq!(count(&d, "SELECT COUNT(*) FROM scim_resources"), 0);
    assert_eq!(count(&d, "SELECT COUNT(*) FROM users"), 1);

    // Replaced onto the held name: the resource and its CMS user stay as they were.
    let bob = d
        .create(
            ResourceKind::User,
            r#"{"userName":"bob"}"#,
            Some(&cms("bob")),
        )
        .unwrap();
    let err = d
        .replace(
            ResourceKind::User,
            &bob.id,
            r#"{"userName":"bob","title":"moved","password":"s3cret-Pass"}"#,
            Some(&cms("taken")),
            Some(&bob.version),
        )
        .unwrap_err();
    assert!(matches!(err, DirectoryError::Conflict(_)), "{err:?}");
    let kept = d.get(ResourceKind::User, &bob.id).unwrap().unwrap();
    assert_eq!(kept.version, bob.version);
    assert_eq!(kept.json, bob.json);
    assert_eq!(
        count(
            &d,
            "SELECT COUNT(*) FROM scim_resources WHERE password_hash IS NOT NULL"
        ),
        0
    );
    let cms_names: Vec<(String, String)> = {
        let mut stmt = d
            .conn
            .prepare("SELECT id, name FROM users ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(
        cms_names,
        [
            (bob.id.clone(), "bob".to_string()),
            ("cms-1".to_string(), "Taken".to_string())
        ]
    );

    // Its own name, in another case, is no clash.
    let renamed = d
        .replace(
            ResourceKind::User,
            &bob.id,
            r#"{"userName":"Bob"}"#,
            Some(&cms("Bob")),
            Some(&bob.version),
        )
        .unwrap();
    assert_eq!(renamed.version, "W/\"2\"");
}

/// The SQLite directory sorts as the core does: numbers as numbers, and a multi-valued
/// attribute by its primary value (it used to compare "10" < "9" and take the first).
#[test]
fn sorts_with_the_cores_comparator() {
    let mut d = SqliteDirectory::open(&temp_db("sort")).unwrap();
    for json in [
        r#"{"userName":"nine","rank":9,"emails":[{"value":"z@x.example"},{"value":"a@x.example","primary":true}]}"#,
        r#"{"userName":"ten","rank":10,"emails":[{"value":"m@x.example","primary":true}]}"#,
        r#"{"userName":"none"}"#,
    ] {
        d.create(ResourceKind::User, json, None).unwrap();
    }
    assert_eq!(ids_sorted(&mut d, "rank", false), ["nine", "ten", "none"]);
    assert_eq!(ids_sorted(&mut d, "rank", true), ["none", "ten", "nine"]);
    assert_eq!(ids_sorted(&mut d, "emails", false), ["nine", "ten", "none"]);
    // A page without filter or sort (paged in SQL) is the store's order.
    let page = d
        .query(
            ResourceKind::User,
            &Search {
                filter: None,
                start_index: 2,
                count: 1,
                sort_by: None,
                sort_descending: false,
            },
        )
        .unwrap();
    assert_eq!(page.total_results, 3);
    assert_eq!(page.resources.len(), 1);
    assert!(page.resources[0].json.contains("\"ten\""));
    // Filtering and paging agree with the core too; the SQL pre-filter only narrows.
    let page = d
        .query(
            ResourceKind::User,
            &Search {
                filter: Some(r#"userName eq "NINE""#.into()),
                start_index: 1,
                count: 10,
                sort_by: None,
                sort_descending: false,
            },
        )
        .unwrap();
    assert_eq!(page.total_results, 1);
    let page = d
        .query(
            ResourceKind::User,
            &Search {
                filter: Some("rank gt 9".into()),
                start_index: 1,
                count: 10,
                sort_by: None,
                sort_descending: false,
            },
        )
        .unwrap();
    assert_eq!(page.total_results, 1);
}

/// The bytes of a SQLite file and its WAL and shared-memory files.
fn file_bytes(db: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let path = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        out.extend(std::fs::read(path).unwrap_or_default());
    }
    out
}

fn holds(bytes: &[u8], needle: &str) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Issue 28, finding 6: a password the component hands over is kept only as an argon2id
/// hash beside the resource, never in it; a replace without one keeps the hash.
#[test]
fn passwords_are_kept_only_as_argon2id_hashes() {
    let db = temp_db("pw-hash");
    let mut d = SqliteDirectory::open(&db).unwrap();
    let user = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"pw","PassWord":"Clear-Secret-One"}"#;
    let stored = d.create(ResourceKind::User, user, None).unwrap();
    assert!(
        !stored.json.to_lowercase().contains("password"),
        "{}",
        stored.json
    );
    let read = d.get(ResourceKind::User, &stored.id).unwrap().unwrap();
    assert!(
        !read.json.to_lowercase().contains("password"),
        "{}",
        read.json
    );
    assert_eq!(
        SqliteDirectory::check_password(&db, &stored.id, "Clear-Secret-One").unwrap(),
        Some(true)
    );
    let without =
        r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"pw","title":"x"}"#;
    d.replace(ResourceKind::User, &stored.id, without, None, None)
        .unwrap();
    assert_eq!(
        SqliteDirectory::check_password(&db, &stored.id, "Clear-Secret-One").unwrap(),
        Some(true),
        "a replace without a password keeps the hash"
    );
    let with = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"pw","password":"Clear-Secret-Two"}"#;
    d.replace(ResourceKind::User, &stored.id, with, None, None)
        .unwrap();
    assert_eq!(
        SqliteDirectory::check_password(&db, &stored.id, "Clear-Secret-One").unwrap(),
        Some(false)
    );
    assert_eq!(
        SqliteDirectory::check_password(&db, &stored.id, "Clear-Secret-Two").unwrap(),
        Some(true)
    );
    assert_eq!(
        SqliteDirectory::check_password(&db, "no-such-id", "x").unwrap(),
        None
    );
    drop(d);
    let bytes = file_bytes(&db);
    assert!(
        !holds(&bytes, "Clear-Secret"),
        "a password in clear in the file"
    );
    assert!(holds(&bytes, "$argon2id$"));
}

/// Issue 28, finding 6: a row an older version stored with its password in clear is
/// migrated on open: hashed, taken out of the JSON, and gone from every page of the file.
#[test]
fn clear_passwords_of_older_versions_are_migrated_on_open() {
    let db = temp_db("pw-migrate");
    drop(SqliteDirectory::open(&db).unwrap());
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute(
            "INSERT INTO scim_resources (kind, id, version, created, modified, unique_key, json)
             VALUES ('User', 'old-1', 1, 'x', 'x', 'old', ?1)",
            [r#"{"userName":"old","password":"Clear-Old-Secret"}"#],
        )
        .unwrap();
        conn.execute("UPDATE scim_resources SET password_hash = NULL", [])
            .unwrap();
    }
    assert!(
        holds(&file_bytes(&db), "Clear-Old-Secret"),
        "the setup stored it"
    );
    let d = SqliteDirectory::open(&db).unwrap();
    drop(d);
    let bytes = file_bytes(&db);
    assert!(
        !holds(&bytes, "Clear-Old-Secret"),
        "still in the file after the migration"
    );
    assert_eq!(
        SqliteDirectory::check_password(&db, "old-1", "Clear-Old-Secret").unwrap(),
        Some(true)
    );
}
