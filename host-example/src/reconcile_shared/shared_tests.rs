//! The shared reconcile's coordination on PostgreSQL and MariaDB (each test starts its own
//! server; feature `db-test-support`), without a component: the schema from empty to
//! current, a run's partitions cut over every user once, the listing chunked and read back,
//! claims under a lease and their takeover, the deprovisioning budget, and a run's end.
//! The daemons themselves are tested end to end in `tests/tests/shared_reconcile.rs`.

use std::path::Path;
use std::time::Duration;

use serde_json::Map;

use super::*;
use crate::database::schema_version;
use crate::database::test_support::{TestMariaDb, TestPostgres};
use crate::store::UserRecord;

fn schedule(lease_ms: u64) -> Schedule {
    Schedule {
        every: Duration::from_secs(60),
        verify_every: Duration::from_secs(3600),
        partitions: 4,
        lease: Duration::from_millis(lease_ms),
    }
}

/// A run in the state a daemon that just started it leaves it: `listing`, by `worker`.
fn start_run(db: &mut Db, run: i64, worker: &str, budget: i64) {
    db.execute(
        "INSERT INTO reconcile_runs (id, state, full_sync, started_at, started_ms, started_by,
             listing_by, listing_until, budget, deprovisions)
         VALUES (?, 'listing', 0, 'now', ?, ?, ?, ?, ?, 0)",
        &[
            run.into(),
            now_ms().into(),
            worker.into(),
            worker.into(),
            (now_ms() + 60_000).into(),
            budget.into(),
        ],
    )
    .unwrap();
    db.execute(
        "UPDATE reconcile_schedule SET run_id = ?, last_run_id = ? WHERE id = 1",
        &[run.into(), run.into()],
    )
    .unwrap();
}

fn check(url_text: &str) {
    let url = DatabaseUrl::parse(url_text, Path::new("/")).unwrap();
    // The store's tables, with 103 users (ids that do not sort as numbers do).
    let mut store = Store::open_url(&url, Duration::from_secs(30)).unwrap();
    let ids: Vec<String> = (0..103).map(|i| format!("u{}", i * 7 % 103)).collect();
    store
        .import_users(ids.iter().map(|id| {
            Ok(UserRecord {
                id: id.clone(),
                name: format!("name-{id}"),
                mail: format!("{id}@example.com"),
                fields: Map::new(),
                active: true,
            })
        }))
        .unwrap();

    // The schema: from empty to current, twice, with one schedule row.
    let mut a =
        SharedReconcile::connect(&url, Duration::from_secs(30), "a", schedule(1_000)).unwrap();
    let mut b =
        SharedReconcile::connect(&url, Duration::from_secs(30), "b", schedule(60_000)).unwrap();
    assert_eq!(
        schema_version(&mut a.coord, RECONCILE_COMPONENT).unwrap(),
        RECONCILE_MIGRATIONS.len() as i64
    );
    assert_eq!(
        one_int(&mut a.coord, "SELECT COUNT(*) FROM reconcile_schedule", &[]).unwrap(),
        1
    );
    assert!(recent_runs(&mut a.coord, 10).unwrap().is_empty());

    // Open a run with a 2.5 MiB listing of multi-byte text.
    start_run(&mut a.coord, 1, "a", 5);
    // While a lists (a call that outlasts its 1 s lease), the keeper holds the lease.
    let listing_until = |db: &mut Db| {
        one_int(
            db,
            "SELECT listing_until FROM reconcile_runs WHERE id = 1",
            &[],
        )
        .unwrap()
    };
    a.coord
        .execute(
            "UPDATE reconcile_runs SET listing_until = ? WHERE id = 1",
            &[(now_ms() + 1_000).into()],
        )
        .unwrap();
    let held_after = keep_listing_lease(&url, 1, "a", 1_000, || {
        std::thread::sleep(Duration::from_millis(2_500));
        now_ms()
    });
    assert!(
        listing_until(&mut a.coord) > held_after,
        "the listing's lease was kept"
    );
    let document = "é日".repeat(LISTING_CHUNK / 2);
    let mut events = Vec::new();
    // Not b's to open: it does not hold the listing.
    b.open_run(1, Some(&(document.clone(), 9, 3)), &mut events)
        .unwrap();
    assert!(events.is_empty());
    a.open_run(1, Some(&(document.clone(), 9, 3)), &mut events)
        .unwrap();
    assert_eq!(
        events.last(),
        Some(&Event::Opened {
            run: 1,
            partitions: 4
        })
    );
    assert!(
        one_int(
            &mut a.coord,
            "SELECT COUNT(*) FROM reconcile_listing WHERE run_id = 1",
            &[]
        )
        .unwrap()
            >= 3
    );
    assert_eq!(b.listing_of(1).unwrap().as_deref(), Some(document.as_str()));

    // Every user in exactly one partition.
    let mut seen = Vec::new();
    let ranges = a
        .coord
        .query(
            "SELECT id_after, id_upto FROM reconcile_partitions
             WHERE run_id = 1 AND kind = 'users' ORDER BY part",
            &[],
        )
        .unwrap();
    assert_eq!(ranges.len(), 4);
    for r in &ranges {
        let range = IdRange {
            after: r.opt_text(0).unwrap(),
            upto: r.opt_text(1).unwrap(),
        };
        let mut count = 0;
        crate::sync_pages::for_each_user_in(a.pages.get_mut(), &range, |u, _| {
            seen.push(u.id);
            count += 1;
            Ok(())
        })
        .unwrap();
        assert!((25..=26).contains(&count), "{count} users in {range:?}");
    }
    seen.sort();
    let mut all = ids.clone();
    all.sort();
    assert_eq!(seen, all, "every user once");

    // Claims: a and b take different partitions; a's lease (1 s) runs out and b takes
    // its partition over, as a second attempt.
    let first = a.claim().unwrap().expect("a claims");
    let second = b.claim().unwrap().expect("b claims");
    assert_ne!(first.part, second.part);
    assert_eq!((first.attempts, second.attempts), (1, 1));
    let mut taken = Vec::new();
    let waiting = std::time::Instant::now();
    while !taken.iter().any(|&(part, _)| part == first.part) {
        match b.claim().unwrap() {
            Some(c) => taken.push((c.part, c.attempts)),
            None => {
                assert!(waiting.elapsed() < Duration::from_secs(30), "{taken:?}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    assert!(taken.contains(&(first.part, 2)), "{taken:?}");
    assert_eq!(taken.len(), 4, "the other 3 and a's: {taken:?}");
    // a's renewal fails: the claim is b's now.
    assert!(!renew(a.pages.get_mut(), 1, first.part, "a", now_ms() + 1_000).unwrap());
    assert!(renew(b.pages.get_mut(), 1, first.part, "b", now_ms() + 60_000).unwrap());

    // A keeper of a's lease finds it lost; one of b's keeps it.
    let first_part = first.part;
    let a_extends = |db: &mut Db, until: i64| renew(db, 1, first_part, "a", until);
    let b_extends = |db: &mut Db, until: i64| renew(db, 1, first_part, "b", until);
    let pause = || std::thread::sleep(Duration::from_millis(700));
    assert!(
        keep_lease(&url, 300, &a_extends, pause).1,
        "a's lease is lost"
    );
    assert!(
        !keep_lease(&url, 300, &b_extends, pause).1,
        "b's lease is kept"
    );

    // The budget (5): 3, then the same partition again at 4 (replacing its 3), then 2
    // more elsewhere overdraws it.
    assert_eq!(reserve(&mut b.coord, 1, 0, 3).unwrap(), None);
    assert_eq!(reserve(&mut b.coord, 1, 0, 4).unwrap(), None);
    assert_eq!(reserve(&mut b.coord, 1, 1, 1).unwrap(), None);
    assert!(reserve(&mut b.coord, 1, 2, 1).unwrap().is_some());

    // The run ends when every partition is done, once, and the schedule is free again.
    b.coord
        .execute(
            "UPDATE reconcile_partitions SET done_at = 'now', done_by = 'b'
             WHERE run_id = 1 AND part <> 0",
            &[],
        )
        .unwrap();
    assert_eq!(b.end_if_done(1, None).unwrap(), None, "partition 0 is left");
    b.coord
        .execute(
            "UPDATE reconcile_partitions SET done_at = 'now', done_by = 'b' WHERE run_id = 1",
            &[],
        )
        .unwrap();
    assert!(b.end_if_done(1, Some("drift: 0".into())).unwrap().is_some());
    assert_eq!(a.end_if_done(1, None).unwrap(), None, "ended once");
    assert_eq!(
        a.coord
            .query_opt("SELECT run_id FROM reconcile_schedule", &[])
            .unwrap()
            .unwrap()
            .opt_int(0)
            .unwrap(),
        None
    );
    assert_eq!(
        one_int(&mut a.coord, "SELECT COUNT(*) FROM reconcile_listing", &[]).unwrap(),
        0,
        "the listing is dropped with the run"
    );
    let runs = recent_runs(&mut a.coord, 10).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (
            runs[0].state.as_str(),
            runs[0].done,
            runs[0].partitions,
            runs[0].workers
        ),
        ("done", 5, 5, 1)
    );
    assert_eq!(runs[0].note.as_deref(), Some("drift: 0"));
}

#[test]
fn the_shared_reconcile_coordinates_on_postgres_and_mariadb() {
    let pg = TestPostgres::start().unwrap();
    check(&pg.create_database("reconcile").unwrap());
    drop(pg);
    let maria = TestMariaDb::start().unwrap();
    check(&maria.create_database("reconcile").unwrap());
}

/// The SQLite text of the migration is valid too (the same logical schema on all three),
/// though only a shared database uses it.
#[test]
fn the_reconcile_schema_migrates_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("reconcile-schema-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut db = Db::connect(&DatabaseUrl::Sqlite(dir.join("r.db"))).unwrap();
    assert_eq!(
        migrate(&mut db, RECONCILE_COMPONENT, RECONCILE_MIGRATIONS).unwrap(),
        1
    );
    assert_eq!(
        migrate(&mut db, RECONCILE_COMPONENT, RECONCILE_MIGRATIONS).unwrap(),
        1
    );
    assert_eq!(
        one_int(&mut db, "SELECT COUNT(*) FROM reconcile_schedule", &[]).unwrap(),
        1
    );
    let _ = std::fs::remove_dir_all(&dir);
}
