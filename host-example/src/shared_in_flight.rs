//! One cap on the requests in flight to a SCIM origin, shared by every process on one
//! shared database (`[host] server_in_flight`, issue 30).
//!
//! Each process's [`crate::rate::TargetRate`] caps its own requests only; 4 daemons with
//! `[host] concurrency = 8` may have 32 requests at one server. A server that takes one
//! request at a time behind one lock (scim2-server) only gets slower with more connections,
//! so a site sizes the whole fleet at once here. Each request to the SCIM origin (never the
//! OAuth token endpoint: [`crate::rate`] lets those pass first) holds one of `N` slots:
//!
//! - **PostgreSQL:** the session-level advisory lock `(key, slot)`, with `key` a hash of the
//!   origin (advisory locks are per database already);
//! - **MariaDB/MySQL:** `GET_LOCK('scim-in-flight-<hash>-<slot>')`, the hash taken over the
//!   database and the origin (these locks are server-wide);
//! - **SQLite** (one process): a per-process cap of `N`, with no database lock.
//!
//! A request first tries every slot without waiting, then waits *in the database* on one
//! (`pg_advisory_lock` under a `lock_timeout`, `GET_LOCK` with a timeout), so it wakes
//! when that slot is freed, not on a poll; the timeout (10 s for one slot, 250 ms for
//! several) only lets it look at the other slots again.
//!
//! **Why a connection per held slot**, not one per process: a session-level lock is
//! released only by its own session, and a session waiting for a lock can run nothing else.
//! On one connection a request waiting for another process's slot would keep this process
//! from releasing its own, and two processes could wait on each other for ever. So each
//! connection holds at most one slot, and waits only while it holds none: a process opens,
//! lazily, at most `min(N, requests it sends at once)` connections, and keeps them open.
//!
//! **Never a deadlock:** a slot is held for one request and released when its answer (or
//! error, or timeout) is back, by a guard that releases on every path; a process killed
//! while it holds slots loses its sessions, and the database frees them.
//!
//! **A throughput control, not a correctness one:** when the database cannot be reached
//! the cap is skipped (one warning per outage, retried every 30 s), because the outbox's
//! claims, not this cap, keep each change exactly once and in order.
//!
//! The waits are logged as one summary line a minute at most (never a line per request).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::database::{DatabaseUrl, Db, Dialect};
use crate::logging::{Level, LogSink};

/// How long after a failed connection the cap stays skipped before the next attempt (a
/// connection attempt may take 5 s; a request should not pay that each time).
const RETRY_AFTER_OUTAGE: Duration = Duration::from_secs(30);

/// How often at most the waits' summary is logged.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// What the cap did, since the process started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InFlightStats {
    /// Requests that took a slot (or passed while the cap was skipped).
    pub requests: u64,
    /// Requests that waited for a slot (locally or in the database) more than 1 ms.
    pub waited: u64,
    /// Their waits, in all, in milliseconds.
    pub wait_ms: u64,
    /// Requests sent without a slot because the database could not be reached.
    pub skipped: u64,
}

struct Local {
    /// Slots this process holds or is taking now (never more than the cap).
    taken: u32,
    /// Open connections that hold no slot.
    idle: Vec<Db>,
    /// While set and in the future, the database is not tried (it could not be reached).
    down_until: Option<Instant>,
    /// The outage has been warned of.
    warned: bool,
    stats: InFlightStats,
    /// The stats at the last summary, and when it was.
    reported: (InFlightStats, Instant),
}

/// The shared cap of one SCIM origin.
pub struct SharedInFlight {
    slots: u32,
    origin: String,
    /// The shared database, or `None` on SQLite (a per-process cap).
    database: Option<DatabaseUrl>,
    pg_key: i32,
    lock_name_prefix: String,
    log: LogSink,
    local: Mutex<Local>,
    freed: Condvar,
}

/// One slot, held until dropped.
pub struct Slot<'a> {
    cap: &'a SharedInFlight,
    /// The connection that holds `slot` in the database, if one does.
    held: Option<(Db, u32)>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.cap.release(self.held.take());
    }
}

/// `scheme://host:port` of a base URL, lower-cased (the unit a server's capacity is
/// shared by); the text itself when it does not parse.
pub fn origin_of(base_url: &str) -> String {
    match url::Url::parse(base_url) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => base_url.trim_end_matches('/').to_string(),
    }
}

impl SharedInFlight {
    /// A cap of `slots` (at least 1) on requests to `origin`, shared through `database`
    /// when it is PostgreSQL or MariaDB, per process on SQLite. Nothing is opened yet.
    pub fn new(origin: &str, database: &DatabaseUrl, slots: u32, log: LogSink) -> Self {
        let shared = database.dialect() != Dialect::Sqlite;
        // The database's own name is in the redacted URL, so two databases on one MariaDB
        // server have caps of their own.
        let scope = format!("{}|{origin}", database.redacted());
        // FNV-1a: the same key in every process and build (std's hasher is neither).
        let hash = crate::ids::fnv1a(scope.as_bytes());
        SharedInFlight {
            slots: slots.max(1),
            origin: origin.to_string(),
            database: shared.then(|| database.clone()),
            pg_key: (hash >> 32) as i32,
            lock_name_prefix: format!("scim-in-flight-{hash:016x}"),
            log,
            local: Mutex::new(Local {
                taken: 0,
                idle: Vec::new(),
                down_until: None,
                warned: false,
                stats: InFlightStats::default(),
                reported: (InFlightStats::default(), Instant::now()),
            }),
            freed: Condvar::new(),
        }
    }

    /// The cap.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// What the cap did so far.
    pub fn stats(&self) -> InFlightStats {
        self.lock_local().stats
    }

    fn lock_local(&self) -> MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a slot and holds it until the returned guard is dropped.
    pub fn acquire(&self) -> Slot<'_> {
        let started = Instant::now();
        let mut local = self.lock_local();
        while local.taken >= self.slots {
            local = self
                .freed
                .wait(local)
                .unwrap_or_else(PoisonError::into_inner);
        }
        local.taken += 1;
        let Some(database) = &self.database else {
            self.count(&mut local, started, false);
            return Slot {
                cap: self,
                held: None,
            };
        };
        if local.down_until.is_some_and(|t| Instant::now() < t) {
            self.count(&mut local, started, true);
            return Slot {
                cap: self,
                held: None,
            };
        }
        let idle = local.idle.pop();
        drop(local);
        // The database is asked outside the process's lock: other requests take and
        // release their slots meanwhile.
        let mut outcome = match idle {
            Some(db) => self.take_slot(db),
            None => Err(None),
        };
        if let Err(None) = outcome {
            // No connection yet, or the one kept was lost: one new attempt.
            outcome = match Db::connect(database) {
                Ok(db) => self.prepare(db).and_then(|db| self.take_slot(db)),
                Err(e) => Err(Some(e)),
            };
        }
        let mut local = self.lock_local();
        match outcome {
            Ok(held) => {
                if local.warned {
                    local.warned = false;
                    self.log.write(
                        Level::Info,
                        &format!(
                            "server_in_flight: the shared cap on {} holds again",
                            self.origin
                        ),
                    );
                }
                local.down_until = None;
                self.count(&mut local, started, false);
                Slot {
                    cap: self,
                    held: Some(held),
                }
            }
            Err(error) => {
                local.down_until = Some(Instant::now() + RETRY_AFTER_OUTAGE);
                if !local.warned {
                    local.warned = true;
                    let reason = error.map_or_else(
                        || "the connection was lost".to_string(),
                        |e| format!("{e:#}"),
                    );
                    self.log.write(
                        Level::Warn,
                        &format!(
                            "server_in_flight: the database cannot be reached ({reason}); requests to {} go without the shared cap (this process still sends at most {} at once) until it can",
                            self.origin, self.slots
                        ),
                    );
                }
                self.count(&mut local, started, true);
                Slot {
                    cap: self,
                    held: None,
                }
            }
        }
    }

    fn count(&self, local: &mut Local, started: Instant, skipped: bool) {
        let waited = started.elapsed();
        local.stats.requests += 1;
        local.stats.skipped += u64::from(skipped);
        if waited > Duration::from_millis(1) {
            local.stats.waited += 1;
            local.stats.wait_ms += u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
        }
    }

    /// The session settings of a slot connection.
    fn prepare(&self, mut db: Db) -> Result<Db, Option<anyhow::Error>> {
        if db.dialect() == Dialect::Postgres {
            let timeout = if self.slots == 1 { "10s" } else { "250ms" };
            db.batch_execute(&format!("SET lock_timeout = '{timeout}'"))
                .map_err(Some)?;
        }
        Ok(db)
    }

    /// Takes a slot on `db`: any free one at once, else waits in the database for one.
    /// `Err(None)` when the connection failed (it is dropped).
    fn take_slot(&self, mut db: Db) -> Result<(Db, u32), Option<anyhow::Error>> {
        // Processes start their scans at different slots, so they rarely race for one.
        let start = std::process::id() % self.slots;
        let mut round = 0u32;
        loop {
            for i in 0..self.slots {
                let slot = (start + i) % self.slots;
                match self.try_lock(&mut db, slot) {
                    Ok(true) => return Ok((db, slot)),
                    Ok(false) => {}
                    Err(_) => return Err(None),
                }
            }
            let slot = (start + round) % self.slots;
            round = round.wrapping_add(1);
            match self.wait_lock(&mut db, slot) {
                Ok(true) => return Ok((db, slot)),
                Ok(false) => {}
                Err(_) => return Err(None),
            }
        }
    }

    /// The name of `slot`'s lock on MariaDB/MySQL (`IS_USED_LOCK(…)` names the session that
    /// holds it).
    pub fn lock_name(&self, slot: u32) -> String {
        format!("{}-{slot}", self.lock_name_prefix)
    }

    fn try_lock(&self, db: &mut Db, slot: u32) -> anyhow::Result<bool> {
        let sql = match db.dialect() {
            Dialect::Postgres => format!("SELECT pg_try_advisory_lock({}, {slot})", self.pg_key),
            _ => format!("SELECT GET_LOCK('{}', 0)", self.lock_name(slot)),
        };
        Ok(db.query_opt(&sql, &[])?.map(|r| r.int(0)).transpose()? == Some(1))
    }

    /// Waits in the database for `slot`, up to the wait's timeout: true when taken.
    fn wait_lock(&self, db: &mut Db, slot: u32) -> anyhow::Result<bool> {
        match db.dialect() {
            Dialect::Postgres => {
                match db.batch_execute(&format!("SELECT pg_advisory_lock({}, {slot})", self.pg_key))
                {
                    Ok(()) => Ok(true),
                    Err(e) if is_lock_timeout(&e) => {
                        // A lock granted as the timeout fired stays granted though the
                        // statement failed; this connection holds no slot while it waits,
                        // so let go of anything it holds, or the session would keep that
                        // slot unknown to us (seen: both slots of 2 held by idle sessions).
                        db.batch_execute(UNLOCK_ALL_POSTGRES)?;
                        Ok(false)
                    }
                    Err(e) => Err(e),
                }
            }
            _ => {
                let timeout = if self.slots == 1 { "10" } else { "0.25" };
                let sql = format!("SELECT GET_LOCK('{}', {timeout})", self.lock_name(slot));
                Ok(db.query_opt(&sql, &[])?.map(|r| r.int(0)).transpose()? == Some(1))
            }
        }
    }

    fn release(&self, held: Option<(Db, u32)>) {
        let kept = held.and_then(|(mut db, _slot)| {
            // Everything the session holds, which is its one slot: these locks count, so a
            // slot taken twice by one session (see `wait_lock`) would survive one unlock.
            let sql = match db.dialect() {
                Dialect::Postgres => UNLOCK_ALL_POSTGRES,
                _ => "SELECT RELEASE_ALL_LOCKS()",
            };
            // A connection that cannot release is dropped: closing its session frees it.
            db.batch_execute(sql).ok().map(|()| db)
        });
        let mut local = self.lock_local();
        if let Some(db) = kept {
            local.idle.push(db);
        }
        local.taken = local.taken.saturating_sub(1);
        self.report(&mut local);
        drop(local);
        self.freed.notify_one();
    }

    /// One line a minute at most, and only when requests waited.
    fn report(&self, local: &mut Local) {
        let (before, at) = local.reported;
        if at.elapsed() < REPORT_EVERY {
            return;
        }
        let now = local.stats;
        local.reported = (now, Instant::now());
        let waited = now.waited - before.waited;
        if waited == 0 {
            return;
        }
        self.log.write(
            Level::Info,
            &format!(
                "server_in_flight {}: {waited} of {} requests to {} waited for a slot, {:.1} s in all, in the last {} s",
                self.slots,
                now.requests - before.requests,
                self.origin,
                (now.wait_ms - before.wait_ms) as f64 / 1000.0,
                at.elapsed().as_secs()
            ),
        );
    }
}

/// Releases every session-level advisory lock of the connection: a slot connection holds
/// no other.
const UNLOCK_ALL_POSTGRES: &str = "SELECT pg_advisory_unlock_all()";

/// PostgreSQL's `lock_not_available` (55P03): `lock_timeout` passed.
fn is_lock_timeout(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|e| e.downcast_ref::<postgres::Error>())
        .any(|e| e.code() == Some(&postgres::error::SqlState::LOCK_NOT_AVAILABLE))
}

/// The caps configured in this process, by origin.
type Caps = Vec<(String, Arc<SharedInFlight>)>;

fn registry() -> &'static Mutex<Caps> {
    static CAPS: OnceLock<Mutex<Caps>> = OnceLock::new();
    CAPS.get_or_init(Mutex::default)
}

/// Bumped by every [`configure`], after the registry changed: a [`CapLookup`] that saw the
/// same number has nothing new to read.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Caps the requests in flight to the origin of `base_url` at `slots` across every process
/// on `database` (`0`: no cap). Called once the configuration is read; a later call for the
/// same origin replaces the cap (requests holding the old one finish under it).
pub fn configure(base_url: &str, database: &DatabaseUrl, slots: u32, log: LogSink) {
    let origin = origin_of(base_url);
    let mut caps = registry().lock().unwrap_or_else(PoisonError::into_inner);
    caps.retain(|(o, _)| *o != origin);
    if slots > 0 {
        let cap = SharedInFlight::new(&origin, database, slots, log);
        caps.push((origin, Arc::new(cap)));
    }
    // Inside the registry's lock: a lookup that reads the new number reads the new caps.
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

fn lookup_origin(origin: &str) -> Option<Arc<SharedInFlight>> {
    let caps = registry().lock().unwrap_or_else(PoisonError::into_inner);
    caps.iter()
        .find(|(o, _)| *o == origin)
        .map(|(_, c)| c.clone())
}

/// The cap of one origin, looked up once and again only after a [`configure`]: what a
/// sender keeps, so that a request costs one atomic read, not a parse of its URL and a
/// search under the process-wide lock. A cap configured after the sender was made (the
/// store is opened after the first target may be) is still found.
pub struct CapLookup {
    origin: String,
    /// The generation the cap was read at (`None`: not yet), and what was read.
    cached: Mutex<(Option<u64>, Option<Arc<SharedInFlight>>)>,
}

impl CapLookup {
    /// The lookup of the origin of `base_url`; nothing is read yet.
    pub fn new(base_url: &str) -> Self {
        CapLookup {
            origin: origin_of(base_url),
            cached: Mutex::new((None, None)),
        }
    }

    /// The cap configured now on the origin, if any.
    pub fn get(&self) -> Option<Arc<SharedInFlight>> {
        // Read before the registry: a `configure` in between bumps it again, and the next
        // call reads the registry again.
        let generation = GENERATION.load(Ordering::Acquire);
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if cached.0 != Some(generation) {
            *cached = (Some(generation), lookup_origin(&self.origin));
        }
        cached.1.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn on_sqlite_the_cap_is_per_process() {
        let url = DatabaseUrl::parse("cap-test.db", Path::new("/nonexistent")).expect("url");
        let cap = Arc::new(SharedInFlight::new(
            "http://127.0.0.1:9",
            &url,
            1,
            LogSink::memory().0,
        ));
        let first = cap.acquire();
        let (sent, got) = std::sync::mpsc::channel();
        let waiting = {
            let cap = cap.clone();
            std::thread::spawn(move || {
                let _slot = cap.acquire();
                sent.send(()).expect("send");
            })
        };
        assert!(
            got.recv_timeout(Duration::from_millis(200)).is_err(),
            "a second request waits while the one slot is held"
        );
        drop(first);
        got.recv_timeout(Duration::from_secs(30))
            .expect("it goes once the slot is free");
        waiting.join().expect("thread");
        let stats = cap.stats();
        assert_eq!((stats.requests, stats.waited, stats.skipped), (2, 1, 0));
    }

    #[test]
    fn an_unreachable_database_skips_the_shared_cap_with_one_warning() {
        // Nothing listens on port 9: the connection is refused at once.
        let url =
            DatabaseUrl::parse("postgres://u:secret@127.0.0.1:9/db", Path::new("/")).expect("url");
        let (log, lines) = LogSink::memory();
        let cap = SharedInFlight::new("http://127.0.0.1:9", &url, 2, log);
        drop(cap.acquire());
        drop(cap.acquire());
        let stats = cap.stats();
        assert_eq!((stats.requests, stats.skipped), (2, 2));
        let lines = lines.lock().expect("lines").clone();
        let warnings: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("server_in_flight"))
            .collect();
        assert_eq!(warnings.len(), 1, "one warning per outage: {lines:?}");
        assert!(
            !warnings[0].contains("secret"),
            "no password: {}",
            warnings[0]
        );
    }

    #[test]
    fn a_lookup_reads_the_cap_once_and_again_after_configure() {
        let url = DatabaseUrl::parse("lookup-test.db", Path::new("/nonexistent")).expect("url");
        // An origin of this test's own: the registry is the process's.
        let base = "http://127.0.0.1:7/lookup-test/v2";
        let lookup = CapLookup::new(base);
        assert!(lookup.get().is_none(), "nothing configured yet");
        configure(base, &url, 1, LogSink::memory().0);
        let cap = lookup.get().expect("configured after the lookup was made");
        assert_eq!(cap.slots(), 1);
        let again = lookup.get().expect("still configured");
        assert!(Arc::ptr_eq(&cap, &again), "the same cap, not a new one");
        // Another origin's configuration leaves this one's cap as it was.
        configure("http://127.0.0.1:8/other", &url, 2, LogSink::memory().0);
        assert!(Arc::ptr_eq(&cap, &lookup.get().expect("kept")));
        configure(base, &url, 3, LogSink::memory().0);
        assert_eq!(lookup.get().expect("replaced").slots(), 3);
        configure(base, &url, 0, LogSink::memory().0);
        assert!(lookup.get().is_none(), "0 takes the cap away");
    }

    #[test]
    fn the_origin_is_scheme_host_and_port() {
        assert_eq!(
            origin_of("HTTPS://Scim.Example.com/tenant/v2/"),
            "https://scim.example.com"
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8080/scim"),
            "http://127.0.0.1:8080"
        );
    }
}

/// Several slots on the real databases: two caps stand for two processes (each has its
/// own sessions), and threads in both never hold more than the slots between them.
#[cfg(all(test, feature = "db-test-support"))]
mod database_tests {
    use super::*;
    use crate::database::test_support::{TestDatabase, TestDatabaseKind};
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn two_processes_share_two_slots(kind: TestDatabaseKind) {
        let (_server, url) = TestDatabase::start_with_database(kind, "inflight").expect("db");
        let url = DatabaseUrl::parse(&url, Path::new("/")).expect("url");
        let caps: Vec<Arc<SharedInFlight>> = (0..2)
            .map(|_| {
                Arc::new(SharedInFlight::new(
                    "http://127.0.0.1:9",
                    &url,
                    2,
                    LogSink::memory().0,
                ))
            })
            .collect();
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let threads: Vec<_> = (0..6)
            .map(|i| {
                let (cap, now, most) = (caps[i % 2].clone(), now.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..40 {
                        let _slot = cap.acquire();
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(5));
                        now.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(most.load(Ordering::SeqCst), 2, "two slots, both used");
        // Every slot free again: a third process takes both at once.
        let third = SharedInFlight::new("http://127.0.0.1:9", &url, 2, LogSink::memory().0);
        let mut db = Db::connect(&url).expect("connect");
        for slot in 0..2 {
            assert!(
                third.try_lock(&mut db, slot).expect("try"),
                "slot {slot} free"
            );
        }
        for cap in &caps {
            let stats = cap.stats();
            assert_eq!((stats.requests, stats.skipped), (120, 0));
            assert!(
                cap.lock_local().idle.len() <= 2,
                "a connection per slot held"
            );
        }
    }

    #[test]
    fn postgres_two_processes_share_two_slots() {
        two_processes_share_two_slots(TestDatabaseKind::Postgres);
    }

    #[test]
    fn mariadb_two_processes_share_two_slots() {
        two_processes_share_two_slots(TestDatabaseKind::MariaDb);
    }
}
