//! The store on PostgreSQL and MariaDB (each test starts its own server; feature
//! `db-test-support`): the schema from empty to current, the same answers as SQLite, and
//! the claim's guarantees between two workers.

use std::path::Path;
use std::time::Duration;

use serde_json::Map;

use super::*;
use crate::database::test_support::{TestMariaDb, TestPostgres};
use crate::database::{Db, schema_version};

fn user(name: &str) -> UserRecord {
    UserRecord {
        id: String::new(),
        name: name.into(),
        mail: format!("{name}@example.com"),
        fields: Map::new(),
        active: true,
    }
}

fn open(url: &str) -> Store {
    let url = DatabaseUrl::parse(url, Path::new("/")).unwrap();
    Store::open_url(&url, Duration::from_secs(30)).unwrap()
}

/// Everything the tests check, on one database.
fn check_store(url: &str) {
    // From empty to the current version, recorded; opening again changes nothing.
    let parsed = DatabaseUrl::parse(url, Path::new("/")).unwrap();
    let mut db = Db::connect(&parsed).unwrap();
    assert_eq!(schema_version(&mut db, STORE_COMPONENT).unwrap(), 0);
    let mut a = open(url);
    assert_eq!(
        schema_version(&mut db, STORE_COMPONENT).unwrap(),
        STORE_MIGRATIONS.len() as i64
    );
    let mut b = open(url);
    assert!(a.is_shared());

    // The SQLite store's behaviour: ids, unique names regardless of case, events.
    let alice = a.add_user(user("alice"), true).unwrap();
    let bob = a.add_user(user("bob"), true).unwrap();
    assert_eq!((alice.id.as_str(), bob.id.as_str()), ("1", "2"));
    assert!(a.add_user(user("ALICE"), true).is_err(), "names are unique");
    a.change_user(&alice.id, UserEvent::Blocked, |u| u.active = false)
        .unwrap();
    assert_eq!(a.find_users("Alice@Example.com").unwrap().len(), 1);
    assert_eq!(a.user_count().unwrap(), 2);
    assert!(!a.user(&alice.id).unwrap().unwrap().active);
    assert_eq!(a.outbox_depth().unwrap(), (3, 0));
    a.set_meta("k", "v1").unwrap();
    a.set_meta("k", "v2").unwrap();
    assert_eq!(b.meta("k").unwrap().as_deref(), Some("v2"));

    // Worker a claims: each user's oldest event only.
    let now = crate::clock::now_ms();
    let claimed_a = a.claim_due(now, false, 10).unwrap();
    let users: Vec<&str> = claimed_a.iter().map(|e| e.user_id.as_str()).collect();
    assert_eq!(users, [alice.id.as_str(), bob.id.as_str()]);
    assert_eq!(claimed_a[0].event, UserEvent::Created);
    // Worker b gets nothing: both users have an event in flight (alice's second waits
    // behind her first, leased by a).
    assert!(b.claim_due(now, false, 10).unwrap().is_empty());
    // a delivers alice's creation; b may now take her next event, not before.
    a.batch(|s| {
        s.save_link(
            &alice.id,
            Some(&Link {
                remote_id: "r1".into(),
                version: None,
                snapshot: None,
            }),
            "f",
        )?;
        s.complete_event(claimed_a[0].seq)
    })
    .unwrap();
    let claimed_b = b.claim_due(now, false, 10).unwrap();
    assert_eq!(claimed_b.len(), 1);
    assert_eq!(claimed_b[0].event, UserEvent::Blocked);
    assert_eq!(b.link(&alice.id).unwrap().unwrap().link.remote_id, "r1");

    // a dies holding bob's event: after the lease it is b's.
    a.set_claim_lease(Duration::from_millis(1));
    b.complete_event(claimed_b[0].seq).unwrap();
    let later = now + 60_000 * 2;
    let taken = b.claim_due(later, false, 10).unwrap();
    assert_eq!(taken.len(), 1, "bob's creation, its lease over");
    assert_eq!(taken[0].user_id, bob.id);
    // a, late, reports it delivered: b holds it now, so it stays for b to settle.
    a.complete_event(claimed_a[1].seq).unwrap();
    assert!(
        a.pending_events()
            .unwrap()
            .iter()
            .any(|e| e.seq == taken[0].seq)
    );
    // A failure ends the lease and sets the retry time.
    b.fail_event(taken[0].seq, 1, later + 5_000, "boom", false)
        .unwrap();
    assert!(b.claim_due(later, false, 10).unwrap().is_empty());
    assert_eq!(a.claim_due(later + 5_000, false, 10).unwrap().len(), 1);

    // Parked events are requeued as one reconcile per user.
    let carol = a.add_user(user("carol"), true).unwrap();
    let due = a.due_events(0, true, 100).unwrap();
    let event = due.iter().find(|e| e.user_id == carol.id).unwrap();
    a.fail_event(event.seq, 1, 0, "401", true).unwrap();
    assert_eq!(a.outbox_depth().unwrap().1, 1);
    assert_eq!(a.requeue_parked().unwrap(), 1);
    let pending = a.pending_events().unwrap();
    let carols: Vec<_> = pending.iter().filter(|e| e.user_id == carol.id).collect();
    assert_eq!(carols.len(), 1);
    assert_eq!(carols[0].event, UserEvent::Reconcile);

    // The log, newest first.
    for (i, outcome) in ["created", "failed"].into_iter().enumerate() {
        a.append_log(&LogEntry {
            at: format!("2026-01-0{}T00:00:00Z", i + 1),
            user_id: alice.id.clone(),
            operation: "created".into(),
            http_status: (outcome == "failed").then_some(503),
            outcome: outcome.into(),
            error: None,
            duration_ms: 3,
        })
        .unwrap();
    }
    let log = b.log_entries(Some(&alice.id), false, 10).unwrap();
    assert_eq!(log.len(), 2);
    // Inside a transaction, log lines held back are written before anything reads.
    a.batch(|s| {
        s.append_log(&log[1])?;
        assert_eq!(s.log_entries(Some(&alice.id), false, 10)?.len(), 3);
        Ok(())
    })
    .unwrap();
    assert_eq!(b.log_entries(Some(&alice.id), false, 10).unwrap().len(), 3);
    assert_eq!(log[0].http_status, Some(503));
    assert_eq!(b.log_entries(None, true, 10).unwrap().len(), 1);
    let imported = a
        .import_users(vec![Ok(user("dave")), Ok(user("erin"))])
        .unwrap();
    assert_eq!(imported, 2);
    let all: Vec<String> = b.all_users().unwrap().into_iter().map(|u| u.id).collect();
    assert_eq!(all, ["1", "2", "3", "4", "5"]);
}

fn delivered(seq: i64, user_id: &str, remote: &str) -> Settlement {
    Settlement {
        seq,
        user_id: user_id.into(),
        outcome: SettleOutcome::Delivered {
            link: Some(Link {
                remote_id: remote.into(),
                version: Some(format!("W/\"{seq}\"")),
                snapshot: None,
            }),
            fingerprint: format!("f{seq}"),
        },
        log: log_line(user_id, "created"),
    }
}

/// `events`, each delivered to the remote id `remote`.
fn all_delivered(events: &[OutboxEvent], remote: &str) -> Vec<Settlement> {
    events
        .iter()
        .map(|e| delivered(e.seq, &e.user_id, remote))
        .collect()
}

/// Adds `n` users named `{prefix}0…`, in one batch; returns their ids.
fn add_users(store: &mut Store, prefix: &str, n: usize) -> Vec<String> {
    store
        .batch(|s| {
            (0..n)
                .map(|i| Ok(s.add_user(user(&format!("{prefix}{i}")), true)?.id))
                .collect()
        })
        .unwrap()
}

fn log_line(user_id: &str, outcome: &str) -> LogEntry {
    LogEntry {
        at: "2026-01-01T00:00:00Z".into(),
        user_id: user_id.into(),
        operation: "created".into(),
        http_status: None,
        outcome: outcome.into(),
        error: None,
        duration_ms: 1,
    }
}

/// A batch is settled at once, for what the worker still holds only.
fn check_settle(url: &str) {
    let mut a = open(url);
    let mut b = open(url);
    let users: Vec<UserRecord> = (0..4)
        .map(|i| a.add_user(user(&format!("settle{i}")), true).unwrap())
        .collect();
    // The last user was provisioned before: its deletion must remove the link.
    a.save_link(
        &users[3].id,
        Some(&Link {
            remote_id: "old".into(),
            version: None,
            snapshot: None,
        }),
        "f",
    )
    .unwrap();
    a.set_claim_lease(Duration::from_millis(1));
    let now = crate::clock::now_ms();
    let claimed = a.claim_due(now, false, 10).unwrap();
    assert_eq!(claimed.len(), 4);
    // a keeps the lease of all but the first (a fresh minute); the first's runs out,
    // and b takes it over.
    a.set_claim_lease(Duration::from_secs(60));
    let kept: Vec<i64> = claimed[1..].iter().map(|e| e.seq).collect();
    assert_eq!(a.extend_claims(&kept).unwrap(), kept);
    let taken = b
        .claim_due(crate::clock::now_ms() + 1_000, false, 10)
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].seq, claimed[0].seq);
    let lost = taken[0].seq;
    let mut deleted_link = delivered(claimed[3].seq, &users[3].id, "unused");
    deleted_link.outcome = SettleOutcome::Delivered {
        link: None,
        fingerprint: "f".into(),
    };
    let failed = Settlement {
        seq: claimed[1].seq,
        user_id: users[1].id.clone(),
        outcome: SettleOutcome::Failed {
            attempts: 1,
            next_attempt_ms: now + 30_000,
            error: "503".into(),
            park: false,
        },
        log: log_line(&users[1].id, "failed"),
    };
    let settled = a
        .settle(&[
            delivered(lost, &users[0].id, "r0"),
            failed,
            delivered(claimed[2].seq, &users[2].id, "r2"),
            deleted_link,
        ])
        .unwrap();
    assert_eq!(settled, [claimed[1].seq, claimed[2].seq, claimed[3].seq]);
    // The event b took over is b's: still queued, leased to b, no link, no log line.
    let pending = b.pending_events().unwrap();
    let seqs: Vec<i64> = pending.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [lost, claimed[1].seq]);
    assert!(b.link(&users[0].id).unwrap().is_none());
    assert!(
        b.log_entries(Some(&users[0].id), false, 10)
            .unwrap()
            .is_empty()
    );
    // The failure: its retry time and error kept, its lease ended.
    let retry = &pending[1];
    assert_eq!((retry.attempts, retry.next_attempt_ms), (1, now + 30_000));
    assert_eq!(retry.last_error.as_deref(), Some("503"));
    assert!(b.claim_due(now + 29_000, false, 10).unwrap().is_empty());
    // The delivered ones: links saved or removed, a log line each.
    let link = b.link(&users[2].id).unwrap().unwrap();
    assert_eq!(link.link.remote_id, "r2");
    assert_eq!(link.fingerprint, format!("f{}", claimed[2].seq));
    assert!(
        b.link(&users[3].id).unwrap().is_none(),
        "a deleted user's link goes"
    );
    assert_eq!(b.log_entries(None, true, 10).unwrap().len(), 1);
    assert_eq!(
        b.log_entries(Some(&users[2].id), false, 10).unwrap().len(),
        1
    );
    // b settles its own: done.
    assert_eq!(
        b.settle(&[delivered(lost, &users[0].id, "r0")]).unwrap(),
        [lost]
    );
    assert_eq!(a.link(&users[0].id).unwrap().unwrap().link.remote_id, "r0");
}

/// A worker whose delivery outlasts its lease keeps its events while a [`LeaseKeeper`]
/// extends the lease; without one, another worker takes them after the lease.
fn check_lease_renewal(url: &str) {
    // A second: the keeper extends it every third of it, with time to spare on a loaded
    // machine.
    const LEASE: Duration = Duration::from_secs(1);
    let mut a = open(url);
    let mut b = open(url);
    a.set_claim_lease(LEASE);
    let users: Vec<UserRecord> = (0..3)
        .map(|i| a.add_user(user(&format!("lease{i}")), true).unwrap())
        .collect();
    let claimed = a.claim_due(crate::clock::now_ms(), false, 10).unwrap();
    assert_eq!(claimed.len(), 3);
    let keeper = a.keep_leases().expect("a shared store keeps leases");
    keeper.hold(claimed.iter().map(|e| e.seq).collect());
    // A slow delivery: three leases long. Meanwhile b finds nothing to take.
    let started = std::time::Instant::now();
    while started.elapsed() < LEASE * 3 {
        let stolen = b.claim_due(crate::clock::now_ms(), false, 10).unwrap();
        assert!(
            stolen.is_empty(),
            "taken while a kept its lease: {stolen:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    keeper.release();
    let settled = a.settle(&all_delivered(&claimed, "r")).unwrap();
    assert_eq!(settled.len(), 3, "every event settled once, by a");
    assert_eq!(a.outbox_depth().unwrap(), (0, 0));

    // The same slow delivery without the keeper: b takes the events once the lease is
    // over, and a, late, settles none of them.
    for u in &users {
        a.change_user(&u.id, UserEvent::Updated, |u| {
            u.mail = "new@example.com".into()
        })
        .unwrap();
    }
    let claimed = a.claim_due(crate::clock::now_ms(), false, 10).unwrap();
    assert_eq!(claimed.len(), 3);
    let started = std::time::Instant::now();
    let taken = loop {
        let taken = b.claim_due(crate::clock::now_ms(), false, 10).unwrap();
        if !taken.is_empty() || started.elapsed() > LEASE * 20 {
            break taken;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(taken.len(), 3, "b takes them after the lease");
    // a extends now: nothing of it is a's any more.
    assert!(
        a.extend_claims(&claimed.iter().map(|e| e.seq).collect::<Vec<_>>())
            .unwrap()
            .is_empty()
    );
    let late = all_delivered(&claimed, "late");
    assert!(a.settle(&late).unwrap().is_empty());
    assert_eq!(a.outbox_depth().unwrap(), (3, 0));
}

#[test]
fn the_store_on_postgres_and_mariadb_behaves_and_claims_in_order() {
    let pg = TestPostgres::start().unwrap();
    check_store(&pg.create_database("store").unwrap());
    check_settle(&pg.create_database("settle").unwrap());
    check_lease_renewal(&pg.create_database("lease").unwrap());
    drop(pg);
    let maria = TestMariaDb::start().unwrap();
    check_store(&maria.create_database("store").unwrap());
    check_settle(&maria.create_database("settle").unwrap());
    check_lease_renewal(&maria.create_database("lease").unwrap());
    check_bucketed_claims(&maria.create_database("buckets").unwrap());
}

/// The bucket (`CRC32(user_id) % CLAIM_BUCKETS`) of a user, as MariaDB computes it.
fn bucket_of(db: &mut Db, user_id: &str) -> u32 {
    let rows = db
        .query(
            "SELECT CRC32(?) % ?",
            &[user_id.into(), super::shared::CLAIM_BUCKETS.into()],
        )
        .unwrap();
    u32::try_from(rows[0].int(0).unwrap()).unwrap()
}

/// MariaDB's claim by buckets of users ([`SharedStore::claim_events`]): a claim takes a
/// whole batch of one bucket's users, oldest first; four workers at once drain the outbox
/// exactly once, each user's events in order, the short queue at the end included; an
/// event changed between the claim's read and its lease is not leased as read; and a
/// bucket whose users all wait behind events in flight does not stop a claim.
fn check_bucketed_claims(url: &str) {
    const USERS: usize = 200;
    let parsed = DatabaseUrl::parse(url, Path::new("/")).unwrap();
    let mut db = Db::connect(&parsed).unwrap();
    let mut a = open(url);
    let ids = add_users(&mut a, "bucket", USERS);
    a.batch(|s| {
        for id in &ids {
            s.change_user(id, UserEvent::Updated, |u| u.mail = "2@example.com".into())?;
        }
        Ok(())
    })
    .unwrap();

    // One claim: ten events, of one bucket's users, the oldest ten of that bucket.
    let now = crate::clock::now_ms();
    let first = a.claim_due(now, false, 10).unwrap();
    assert_eq!(first.len(), 10, "a whole batch");
    let bucket = bucket_of(&mut db, &first[0].user_id);
    for e in &first {
        assert_eq!(
            bucket_of(&mut db, &e.user_id),
            bucket,
            "one bucket: {first:?}"
        );
        assert_eq!(e.event, UserEvent::Created);
    }
    let oldest: Vec<i64> = db
        .query(
            "SELECT seq FROM outbox WHERE CRC32(user_id) % ? = ? ORDER BY seq LIMIT 10",
            &[super::shared::CLAIM_BUCKETS.into(), bucket.into()],
        )
        .unwrap()
        .iter()
        .map(|r| r.int(0).unwrap())
        .collect();
    let seqs: Vec<i64> = first.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, oldest);
    a.settle(&all_delivered(&first, "r")).unwrap();

    // Four workers at once: every event once, each user's in order.
    let claims = std::sync::Mutex::new(Vec::<(String, i64)>::new());
    let batches = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let mut w = open(url);
                let deadline = std::time::Instant::now() + Duration::from_secs(120);
                loop {
                    let events = w.claim_due(crate::clock::now_ms(), false, 10).unwrap();
                    if events.is_empty() {
                        if w.outbox_depth().unwrap().0 == 0 {
                            return;
                        }
                        assert!(std::time::Instant::now() < deadline, "the drain stalled");
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    claims
                        .lock()
                        .unwrap()
                        .extend(events.iter().map(|e| (e.user_id.clone(), e.seq)));
                    let settled = w.settle(&all_delivered(&events, "r")).unwrap();
                    assert_eq!(settled.len(), events.len());
                }
            });
        }
    });
    let claims = claims.into_inner().unwrap();
    assert_eq!(claims.len(), USERS * 2 - first.len(), "every event once");
    let mut last: std::collections::HashMap<&str, i64> = Default::default();
    for (user_id, seq) in &claims {
        let previous = last.insert(user_id, *seq).unwrap_or(0);
        assert!(previous < *seq, "{user_id}'s events out of order");
    }
    let batches = batches.into_inner();
    assert!(
        batches < claims.len() / 5,
        "{} events in {batches} claims: the batches were not whole",
        claims.len()
    );

    // An event whose delivery failed between a claim's read and its lease, due again at
    // once (`Retry-After: 0`), is not leased as it was read.
    let carol = a.add_user(user("bucket-carol"), true).unwrap();
    let mut store = SharedStore::connect(&parsed, Duration::from_secs(30)).unwrap();
    let now = crate::clock::now_ms();
    let read = store
        .mariadb_bucket_events(now, bucket_of(&mut db, &carol.id), 10)
        .unwrap();
    assert_eq!(read.len(), 1);
    let (seq, attempts) = (read[0].int(0).unwrap(), read[0].int(4).unwrap());
    assert_eq!(attempts, 0);
    a.fail_event(seq, 1, now, "503", false).unwrap();
    assert_eq!(
        store
            .lease_as_read("w", now, now + 60_000, &[(seq, 0)])
            .unwrap(),
        0
    );
    let claimed = store.claim_events("w", now, 60_000, 10).unwrap();
    assert_eq!((claimed.len(), claimed[0].attempts), (1, 1), "read again");
    assert_eq!(claimed[0].last_error.as_deref(), Some("503"));
    store.complete_event("w", seq).unwrap();

    // A user with a long queue: a bucket's read stops after `LIMIT ROWS EXAMINED` (and
    // then returns what it found, or, as MariaDB 10.11 does with its `ORDER BY`, nothing),
    // and the claim still takes the user's first event, from the whole queue's head.
    a.batch(|s| {
        for _ in 0..300 {
            s.change_user(&carol.id, UserEvent::Updated, |_| {})?;
        }
        Ok(())
    })
    .unwrap();
    let now = crate::clock::now_ms();
    let carols = bucket_of(&mut db, &carol.id);
    // Two events asked for: 200 rows examined at most.
    assert!(store.mariadb_bucket_events(now, carols, 2).unwrap().len() <= 1);
    let claimed = store.claim_events("w", now, 60_000, 10).unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(
        store
            .mariadb_bucket_events(now, carols, 10)
            .unwrap()
            .is_empty()
    );
    assert!(store.claim_events("w", now, 60_000, 10).unwrap().is_empty());
}

/// Waits until another session of this database waits for a row lock (PostgreSQL: its
/// wait event; MariaDB, where a user without `PROCESS` cannot read InnoDB's lock tables: a
/// locking statement of the store (a locking read, a `DELETE`, or the id lock's `meta`
/// row) still running after 300 ms, while its rows are held).
fn wait_for_a_lock_wait(url: &str) {
    wait_for_a_lock_wait_or(
        url,
        || false,
        "the second requeue never waited for the first",
    );
}

/// Waits until `other` has finished or another session of this database waits for a row
/// lock (see [`wait_for_a_lock_wait`]), whichever comes first.
fn wait_for_a_lock_wait_or_the_end<T>(url: &str, other: &std::thread::JoinHandle<T>) {
    wait_for_a_lock_wait_or(
        url,
        || other.is_finished(),
        "the other session neither finished nor waited",
    );
}

/// Polls, for up to 60 s, until `done` or a session waiting for a row lock; fails with
/// `never` otherwise.
fn wait_for_a_lock_wait_or(url: &str, done: impl Fn() -> bool, never: &str) {
    let parsed = DatabaseUrl::parse(url, Path::new("/")).unwrap();
    let mut db = Db::connect(&parsed).unwrap();
    let sql = match db.dialect() {
        crate::database::Dialect::Postgres => {
            "SELECT COUNT(*) FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND datname = current_database()"
        }
        _ => {
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST
             WHERE ID <> CONNECTION_ID() AND COMMAND IN ('Execute', 'Query') AND TIME_MS > 300
               AND (INFO LIKE '%FOR UPDATE%' OR INFO LIKE 'DELETE%'
                    OR INFO LIKE 'INSERT INTO meta%')"
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done() && db.query(sql, &[]).unwrap()[0].int(0).unwrap() == 0 {
        assert!(std::time::Instant::now() < deadline, "{never}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Two `requeue_parked` at once for a deleted user with a parked event queue the
/// `deleted` event once: the second waits for the first and then finds nothing parked.
fn check_concurrent_requeue_of_a_deleted_user(url: &str) {
    let mut a = open(url);
    let gone = a.add_user(user("gone"), true).unwrap();
    let created = a.due_events(0, true, 10).unwrap()[0].seq;
    a.fail_event(created, 5, 0, "401", true).unwrap();
    a.change_user(&gone.id, UserEvent::Deleted, |_| {}).unwrap();
    let url_b = url.to_string();
    a.batch(|s| {
        assert_eq!(s.requeue_parked()?, 1);
        // The second requeue starts while the first is not yet committed.
        let second = std::thread::spawn(move || open(&url_b).requeue_parked().unwrap());
        wait_for_a_lock_wait(url);
        Ok(second)
    })
    .map(|second| second.join().unwrap())
    .unwrap();
    let events: Vec<UserEvent> = a
        .pending_events()
        .unwrap()
        .into_iter()
        .filter(|e| e.user_id == gone.id)
        .map(|e| e.event)
        .collect();
    assert_eq!(
        events,
        [UserEvent::Deleted],
        "queued once, not once per requeue"
    );
}

/// A deleted user's parked events put back in line while another requeue, or an
/// `add_user` given the same id again, runs at once; and deleted users' ids given again
/// in a batch while a worker settles their events (one server of each kind for all, to
/// keep the suite short).
#[test]
fn a_deleted_users_requeue_at_once_with_another_or_with_a_reused_id_stays_in_order() {
    let pg = TestPostgres::start().unwrap();
    check_concurrent_requeue_of_a_deleted_user(&pg.create_database("requeue").unwrap());
    let url = pg.create_database("reuse").unwrap();
    check_reused_id_against_requeue(&url);
    check_requeue_against_reused_id(&url);
    check_reused_ids_in_a_batch_against_a_settle(&url);
    drop(pg);
    let maria = TestMariaDb::start().unwrap();
    check_concurrent_requeue_of_a_deleted_user(&maria.create_database("requeue").unwrap());
    let url = maria.create_database("reuse").unwrap();
    check_reused_id_against_requeue(&url);
    check_requeue_against_reused_id(&url);
    check_reused_ids_in_a_batch_against_a_settle(&url);
}

/// A store on `url` holding `record`'s user, whose `created` event was parked and who was
/// then deleted: the old user whose id the reused-id checks give again.
fn a_deleted_user_with_a_parked_event(url: &str, record: UserRecord) -> Store {
    let mut a = open(url);
    let id = record.id.clone();
    a.add_user(record, true).unwrap();
    let created = a
        .due_events(0, true, 10)
        .unwrap()
        .into_iter()
        .find(|e| e.user_id == id)
        .unwrap()
        .seq;
    a.fail_event(created, 5, 0, "401", true).unwrap();
    a.change_user(&id, UserEvent::Deleted, |_| {}).unwrap();
    a
}

/// A user id given again to `add_user` (explicitly: generated ids are never reused) while
/// a requeue puts the old user's parked events back: the two go one after the other, never
/// interleaved. Here the new user's transaction is first, so the requeue finds the user
/// back and queues one `reconcile` of the new user (as SQLite's single writer does).
/// Without the lock `add_user` takes on the id's events, PostgreSQL's requeue did not see
/// the uncommitted user, queued the old user's `deleted` event after the new user's
/// `created` one, and so deleted the new user's account on the server.
fn check_reused_id_against_requeue(url: &str) {
    let reused = |name: &str| UserRecord {
        id: "reused-7".into(),
        ..user(name)
    };
    let a = a_deleted_user_with_a_parked_event(url, reused("old-owner"));
    let url_b = url.to_string();
    let mut b = open(url);
    b.batch(|s| {
        s.add_user(reused("new-owner"), true)?;
        // The requeue starts while the new user is not yet committed.
        let requeue = std::thread::spawn(move || open(&url_b).requeue_parked().unwrap());
        wait_for_a_lock_wait_or_the_end(url, &requeue);
        Ok(requeue)
    })
    .map(|requeue| requeue.join().unwrap())
    .unwrap();
    let events: Vec<(UserEvent, String)> = a
        .pending_events()
        .unwrap()
        .into_iter()
        .filter(|e| e.user_id == "reused-7")
        .map(|e| (e.event, e.user.name))
        .collect();
    assert_eq!(events, [(UserEvent::Reconcile, "new-owner".to_string())]);
}

/// The other order: the requeue's transaction first. `add_user` waits for it, and its
/// `created` event comes after the old user's `deleted` one.
fn check_requeue_against_reused_id(url: &str) {
    let reused = |name: &str| UserRecord {
        id: "reused-8".into(),
        ..user(name)
    };
    let mut a = a_deleted_user_with_a_parked_event(url, reused("old-holder"));
    let url_b = url.to_string();
    a.batch(|s| {
        assert_eq!(s.requeue_parked()?, 1);
        let add =
            std::thread::spawn(move || open(&url_b).add_user(reused("new-holder"), true).unwrap());
        wait_for_a_lock_wait_or_the_end(url, &add);
        Ok(add)
    })
    .map(|add| add.join().unwrap())
    .unwrap();
    let events: Vec<(UserEvent, String)> = a
        .pending_events()
        .unwrap()
        .into_iter()
        .filter(|e| e.user_id == "reused-8")
        .map(|e| (e.event, e.user.name))
        .collect();
    assert_eq!(
        events,
        [
            (UserEvent::Deleted, "old-holder".to_string()),
            (UserEvent::Created, "new-holder".to_string())
        ]
    );
}

/// Shared buffers (hits and reads) that PostgreSQL's `claim` statement touches when run
/// with the queue's planner settings, then rolled back.
fn claim_buffers(db: &mut Db, claim: &str) -> i64 {
    db.batch_execute(&format!("BEGIN; {}", super::shared::QUEUE_PLAN))
        .unwrap();
    let lines: Vec<String> = db
        .query(
            &format!("EXPLAIN (ANALYZE, BUFFERS) {claim}"),
            &[
                i64::MAX.into(),
                i64::MAX.into(),
                100i64.into(),
                "explain".into(),
                1i64.into(),
            ],
        )
        .unwrap()
        .iter()
        .map(|r| r.text(0).unwrap())
        .collect();
    db.batch_execute("ROLLBACK").unwrap();
    // The top node's line, `Buffers: shared hit=H read=R …`, counts its children's too.
    let top = lines
        .iter()
        .find(|l| l.trim_start().starts_with("Buffers: shared"))
        .unwrap_or_else(|| panic!("no buffers in {lines:#?}"));
    let count = |key: &str| -> i64 {
        top.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .map_or(0, |n| n.parse().unwrap())
    };
    count("hit=") + count("read=")
}

/// The trap a churned outbox sets on PostgreSQL: statistics taken while the outbox was
/// empty (`reltuples` 0) with its pages still there, then a burst queued. The claim as it
/// was then read the whole `outbox_user` index for each candidate (and a 100,000-event
/// burst stalled for many minutes, `bench --claims … --claims-empty delete`); the claim
/// now reads by index whatever the statistics say.
#[test]
fn a_claim_after_the_outbox_churned_reads_by_index_on_postgres() {
    const EVENTS: usize = 2_000;
    let pg = TestPostgres::start().unwrap();
    let url = pg.create_database("churn").unwrap();
    let mut store = open(&url);
    let mut db = Db::connect(&DatabaseUrl::parse(&url, Path::new("/")).unwrap()).unwrap();
    // Autovacuum would truncate the emptied table at a moment of its own; here the
    // statistics are taken by hand, as autovacuum's analyze takes them between bursts.
    db.execute("ALTER TABLE outbox SET (autovacuum_enabled = off)", &[])
        .unwrap();
    let ids = add_users(&mut store, "churn", EVENTS);
    db.execute("DELETE FROM outbox", &[]).unwrap();
    db.execute("ANALYZE outbox", &[]).unwrap();
    store
        .batch(|s| {
            for id in &ids {
                s.change_user(id, UserEvent::Updated, |u| u.active = false)?;
            }
            Ok(())
        })
        .unwrap();
    let stats = db
        .query(
            "SELECT CAST(reltuples AS BIGINT), CAST(relpages AS BIGINT) FROM pg_class
             WHERE relname = 'outbox'",
            &[],
        )
        .unwrap();
    let (tuples, pages) = (stats[0].int(0).unwrap(), stats[0].int(1).unwrap());
    assert!(
        tuples == 0 && pages > 0,
        "the trap: {tuples} rows on {pages} pages"
    );

    // The claim as it was, on the same outbox: the trap is real.
    let old = "WITH picked AS (
             SELECT o.seq FROM outbox o
             WHERE o.parked = 0 AND o.next_attempt_ms <= ?
               AND (o.claimed_until IS NULL OR o.claimed_until < ?)
               AND NOT EXISTS (SELECT 1 FROM outbox p
                               WHERE p.user_id = o.user_id AND p.seq < o.seq AND p.parked = 0)
             ORDER BY o.seq LIMIT ?
             FOR UPDATE OF o SKIP LOCKED)
         UPDATE outbox SET claimed_by = ?, claimed_until = ?
         FROM picked WHERE outbox.seq = picked.seq RETURNING outbox.seq";
    let old_buffers = claim_buffers(&mut db, old);
    let new_buffers = claim_buffers(&mut db, &super::shared::pg_claim_sql());
    // 100 candidates, each with a look-up of its older events: a few hundred buffers;
    // the old plan walked all 2,000 entries of `outbox_user` for each (the new one walks
    // the 2,000 dead entries at the primary key's head once: no vacuum ran).
    eprintln!("buffers touched by one claim: {new_buffers}, by the old claim {old_buffers}");
    assert!(
        new_buffers < 3_000 && old_buffers > 10 * new_buffers,
        "buffers touched by one claim: {new_buffers}, by the old claim {old_buffers}"
    );

    // And the store claims the burst, in order, a batch of 100 a claim.
    let claimed = store.claim_due(i64::MAX / 2, false, 100).unwrap();
    assert_eq!(claimed.len(), 100);
    assert!(claimed.windows(2).all(|w| w[0].seq < w[1].seq));
}

/// A worker's settle, without the retry [`Store::settle`] makes on a deadlock: a deadlock
/// it takes part in comes back as its error.
fn settle_once(worker: &mut Store, items: &[Settlement]) -> anyhow::Result<Vec<i64>> {
    let name = worker.worker_name().to_string();
    worker.batch(|st| match &mut st.backend {
        Backend::Shared(s) => s.settle(&name, items),
        Backend::Sqlite(_) => unreachable!("a shared store"),
    })
}

/// Two deleted users' ids given again in one batch of `add_user`s, while a worker settles
/// their `deleted` events: neither waits for the other, so neither is rolled back in a
/// deadlock. The batch gives the ids in the other order than their events were queued,
/// and the settle starts between its two `add_user`s: when `add_user` locked the id's
/// queued events, the batch held the later event and waited for the earlier, which the
/// settle (locking by `seq`) held while it waited for the later one.
fn check_reused_ids_in_a_batch_against_a_settle(url: &str) {
    let mut a = open(url);
    let record = |id: &str, name: &str| UserRecord {
        id: id.into(),
        ..user(name)
    };
    for id in ["batch-2", "batch-1"] {
        a.add_user(record(id, &format!("old-{id}")), false).unwrap();
        a.change_user(id, UserEvent::Deleted, |_| {}).unwrap();
    }
    let mut worker = open(url);
    // (The other checks' users on this database are claimed too, and left.)
    let claimed: Vec<OutboxEvent> = worker
        .claim_due(crate::clock::now_ms(), false, 10)
        .unwrap()
        .into_iter()
        .filter(|e| e.user_id.starts_with("batch-"))
        .collect();
    let seqs: Vec<i64> = claimed.iter().map(|e| e.seq).collect();
    assert_eq!(claimed.len(), 2, "both deleted events claimed");
    let settlements: Vec<Settlement> = claimed
        .iter()
        .map(|e| Settlement {
            outcome: SettleOutcome::Delivered {
                link: None,
                fingerprint: String::new(),
            },
            ..delivered(e.seq, &e.user_id, "")
        })
        .collect();
    let url_b = url.to_string();
    let mut b = open(&url_b);
    let (added, settle) = {
        let mut settle = None;
        let added = b.batch(|s| {
            s.add_user(record("batch-1", "new-batch-1"), true)?;
            let items = settlements.clone();
            let thread = std::thread::spawn(move || settle_once(&mut worker, &items));
            wait_for_a_lock_wait_or_the_end(url, &thread);
            settle = Some(thread);
            s.add_user(record("batch-2", "new-batch-2"), true)
        });
        (added, settle.map(|t| t.join().unwrap()))
    };
    let settled = settle.expect("the settle ran");
    assert!(added.is_ok(), "the batch of add_user: {added:?}");
    let mut settled = settled.expect("the settle");
    settled.sort_unstable();
    assert_eq!(settled, seqs, "the settle took both deleted events");
    let events: Vec<(String, UserEvent, String)> = a
        .pending_events()
        .unwrap()
        .into_iter()
        .filter(|e| e.user_id.starts_with("batch-"))
        .map(|e| (e.user_id, e.event, e.user.name))
        .collect();
    assert_eq!(
        events,
        [
            ("batch-1".into(), UserEvent::Created, "new-batch-1".into()),
            ("batch-2".into(), UserEvent::Created, "new-batch-2".into()),
        ]
    );
}
