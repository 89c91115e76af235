//! `[host] server_in_flight`: one cap on the requests in flight to the SCIM server, shared
//! by every daemon on one database (issue 30; `host_example::shared_in_flight`).
//!
//! One test per database: each starts its own database server (PostgreSQL or MariaDB,
//! the test's own process, data in a temp dir), scim2-server, and in front of it a proxy of
//! this file that counts the requests in flight at once (each held 5 ms, so that requests
//! from several processes overlap when nothing stops them). The test queues users'
//! `created` events through the store; 3 `daemon --deliver-only` processes
//! (`concurrency = 4`) drain them, with about two requests per user (a look-up, then the
//! creation).
//!
//! - Without the setting the server sees more than one request at once: the proxy holds
//!   the first request until a second one arrives (or 30 s pass), so the overlap is seen
//!   by a condition, not by the luck of timing, however slow the machine.
//! - With `server_in_flight = 1`, never more than one across the 3 processes, and every
//!   user still arrives.
//! - Then one of those daemons, `kill -9`ed while it holds the slot (its request held at
//!   the proxy), frees it, on PostgreSQL (an advisory lock) and on MariaDB (`GET_LOCK`):
//!   the database ends the dead session and its locks, another daemon's request reaches
//!   the server while the dead one's is still held, and the outbox drains.
//!
//! `cargo test -p scim-provisioner-tests --test server_in_flight` (build
//! `cargo build -p host-example` first).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use host_example::database::test_support::{TestDatabase, TestDatabaseKind as Kind};
use host_example::database::{DatabaseUrl, Db};
use host_example::logging::LogSink;
use host_example::shared_in_flight::{SharedInFlight, origin_of};
use host_example::store::{Store, UserRecord};
use scim_provisioner_tests::daemons::{
    Daemon, host_example_bin, wait_until, write_config_with_policy,
};
use scim_provisioner_tests::peers::scim2_server;
use scim_provisioner_tests::site::temp_dir;

const DAEMONS: usize = 3;
/// Users queued for the capped run: three claims (100, 100, 40), so every daemon has a
/// batch at once and all three press on the cap.
const USERS: usize = 240;
/// Users queued for the run without the cap: two claims, so that a second daemon has
/// events of its own to send while the first one's first request is held for it (with one
/// claim, that request, its discovery, holds up the only daemon with anything to send).
const UNCAPPED_USERS: usize = 150;
/// How long the proxy holds the first request of a run without the cap for a second one.
const MEET_WITHIN: Duration = Duration::from_secs(30);
/// How long the proxy holds each request before it forwards it.
const HOLD: Duration = Duration::from_millis(5);
const DRAIN_DEADLINE: Duration = Duration::from_secs(240);

/// What the proxy saw.
#[derive(Default)]
struct Counts {
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    requests: AtomicUsize,
}

/// A proxy that counts requests in flight, one request per connection. While `stalled`,
/// requests that arrive are counted and then held until it is cleared. While `meeting`,
/// the next request is held until another one is in flight too (or [`MEET_WITHIN`]
/// passed), once.
struct InFlightProxy {
    base_url: String,
    counts: Arc<Counts>,
    stalled: Arc<(Mutex<bool>, Condvar)>,
    meeting: Arc<(Mutex<bool>, Condvar)>,
    stop: Arc<AtomicBool>,
}

impl InFlightProxy {
    fn start(upstream_base_url: &str) -> InFlightProxy {
        let rest = upstream_base_url
            .strip_prefix("http://")
            .expect("http upstream");
        let (upstream, path) = rest.split_once('/').unwrap_or((rest, ""));
        let upstream = upstream.to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base_url = format!("http://{}/{path}", listener.local_addr().expect("addr"));
        let counts = Arc::new(Counts::default());
        let stalled = Arc::new((Mutex::new(false), Condvar::new()));
        let meeting = Arc::new((Mutex::new(false), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s, m, st) = (
            counts.clone(),
            stalled.clone(),
            meeting.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let (c, s, m, upstream) = (c.clone(), s.clone(), m.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = relay(client, &upstream, &c, &s, &m);
                });
            }
        });
        InFlightProxy {
            base_url,
            counts,
            stalled,
            meeting,
            stop,
        }
    }

    /// Holds the next request until a second one is in flight (or [`MEET_WITHIN`]).
    fn meet_next(&self) {
        *self.meeting.0.lock().expect("lock") = true;
    }

    fn most_in_flight(&self) -> usize {
        self.counts.most_in_flight.load(Ordering::SeqCst)
    }

    fn in_flight(&self) -> usize {
        self.counts.in_flight.load(Ordering::SeqCst)
    }

    fn set_stalled(&self, on: bool) {
        *self.stalled.0.lock().expect("lock") = on;
        self.stalled.1.notify_all();
    }
}

impl Drop for InFlightProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.set_stalled(false);
        let _ = TcpStream::connect(
            self.base_url
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or(""),
        );
    }
}

/// Reads one request (head and `Content-Length` body).
fn read_request(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return Ok(data);
            }
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        data.extend_from_slice(&buf[..n]);
    }
}

/// `Connection: close` in place of the head's own.
fn closing(message: &[u8]) -> Vec<u8> {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(message.len());
    let head = String::from_utf8_lossy(&message[..end]);
    let mut out: Vec<u8> = head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect::<Vec<_>>()
        .join("\r\n")
        .into_bytes();
    out.extend_from_slice(b"\r\nConnection: close");
    out.extend_from_slice(message.get(end..).unwrap_or_default());
    out
}

/// While `meeting`: the first request to see it waits (once) for a second one in flight;
/// every request wakes it. The count is raised before the lock is taken and read under it,
/// so no wake-up is lost.
fn meet(counts: &Counts, meeting: &(Mutex<bool>, Condvar)) {
    let mut on = meeting.0.lock().expect("lock");
    if !*on {
        return;
    }
    meeting.1.notify_all();
    let deadline = Instant::now() + MEET_WITHIN;
    while *on && counts.in_flight.load(Ordering::SeqCst) < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        on = meeting.1.wait_timeout(on, left).expect("lock").0;
    }
    *on = false;
}

fn relay(
    mut client: TcpStream,
    upstream: &str,
    counts: &Counts,
    stalled: &(Mutex<bool>, Condvar),
    meeting: &(Mutex<bool>, Condvar),
) -> std::io::Result<()> {
    let request = read_request(&mut client)?;
    let now = counts.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    counts.most_in_flight.fetch_max(now, Ordering::SeqCst);
    counts.requests.fetch_add(1, Ordering::SeqCst);
    meet(counts, meeting);
    let answer = (|| {
        let mut held = stalled.0.lock().expect("lock");
        while *held {
            held = stalled.1.wait(held).expect("lock");
        }
        drop(held);
        std::thread::sleep(HOLD);
        let mut server = TcpStream::connect(upstream)?;
        server.write_all(&closing(&request))?;
        let mut answer = Vec::new();
        server.read_to_end(&mut answer)?;
        Ok::<_, std::io::Error>(answer)
    })();
    // Counted out before the client hears the answer, so the client's next request (or
    // another process's, once this one's slot is released) is never counted with it.
    counts.in_flight.fetch_sub(1, Ordering::SeqCst);
    client.write_all(&closing(&answer?))?;
    client.shutdown(Shutdown::Both)
}

fn queue_users(url: &DatabaseUrl, prefix: &str, users: usize) {
    let mut store = Store::open_url(url, Duration::from_secs(30)).expect("store");
    store
        .batch(|s| {
            for i in 0..users {
                let name = format!("{prefix}-{i}");
                s.add_user(
                    UserRecord {
                        id: String::new(),
                        mail: format!("{name}@example.com"),
                        name,
                        fields: Default::default(),
                        active: true,
                    },
                    true,
                )?;
            }
            Ok(())
        })
        .expect("users queued");
}

fn outbox_rows(url: &DatabaseUrl) -> Option<i64> {
    let mut db = Db::connect(url).ok()?;
    let row = db.query_opt("SELECT COUNT(*) FROM outbox", &[]).ok()??;
    row.int(0).ok()
}

struct Setup {
    _database: TestDatabase,
    url_text: String,
    url: DatabaseUrl,
    _peer: scim_provisioner_tests::peers::Peer,
    token: String,
    proxy: InFlightProxy,
    dir: std::path::PathBuf,
}

fn setup(kind: Kind) -> Setup {
    let starting_peer = std::thread::spawn(scim2_server);
    let (database, url_text) =
        TestDatabase::start_with_database(kind, "inflight").expect("a database server");
    let url = DatabaseUrl::parse(&url_text, Path::new("/")).expect("url");
    let peer = starting_peer
        .join()
        .expect("scim2-server's start")
        .expect("scim2-server");
    let proxy = InFlightProxy::start(&peer.base_url);
    Setup {
        _database: database,
        url_text,
        url,
        token: peer.token.clone(),
        _peer: peer,
        proxy,
        dir: temp_dir("server-in-flight"),
    }
}

/// Starts the daemons with `server_in_flight` (none: not set) and `lease_secs`.
fn daemons(
    setup: &Setup,
    run: &str,
    server_in_flight: Option<u32>,
    lease_secs: u32,
) -> Vec<Daemon> {
    let config = setup.dir.join(format!("{run}.toml"));
    let cap = server_in_flight.map_or(String::new(), |n| format!("server_in_flight = {n}\n"));
    write_config_with_policy(
        &config,
        "matching = [\"userName\", \"externalId\"]",
        &setup.proxy.base_url,
        30,
        &format!("{cap}concurrency = 4\nbatch_size = 2\nclaim_lease_secs = {lease_secs}"),
        "",
    );
    (0..DAEMONS)
        .map(|i| {
            Daemon::spawn(
                &host_example_bin(),
                &config,
                &["daemon", "--deliver-only"],
                &setup.token,
                &setup.url_text,
                setup.dir.join(format!("{run}-{i}.log")),
            )
        })
        .collect()
}

fn drain(setup: &Setup, daemons: &mut [Daemon]) {
    wait_until(
        "the outbox drained",
        daemons,
        DRAIN_DEADLINE,
        Duration::from_millis(50),
        || outbox_rows(&setup.url) == Some(0),
    );
}

/// The three runs on one database and server: without the cap, with one slot, and one
/// slot held by a daemon that is then killed.
fn one_slot_across_daemons(kind: Kind) {
    let started = Instant::now();
    let setup = setup(kind);
    eprintln!("{kind:?}: set up in {:.1?}", started.elapsed());
    // Without the cap: the processes' requests overlap at the server.
    setup.proxy.meet_next();
    queue_users(&setup.url, "free", UNCAPPED_USERS);
    let mut free = daemons(&setup, "free", None, 60);
    drain(&setup, &mut free);
    drop(free);
    let uncapped = setup.proxy.most_in_flight();
    let uncapped_requests = setup.proxy.counts.requests.load(Ordering::SeqCst);
    eprintln!(
        "{kind:?} without server_in_flight: at most {uncapped} of {uncapped_requests} requests in flight ({:.1?})",
        started.elapsed()
    );
    assert!(
        uncapped > 1,
        "without the cap, requests overlap ({uncapped})"
    );

    // With one slot: never two at once, across the 3 processes. A short lease: the daemon
    // killed below loses its claimed events to another soon after.
    setup.proxy.counts.most_in_flight.store(0, Ordering::SeqCst);
    queue_users(&setup.url, "capped", USERS);
    let mut capped = daemons(&setup, "capped", Some(1), 3);
    drain(&setup, &mut capped);
    let requests = setup.proxy.counts.requests.load(Ordering::SeqCst) - uncapped_requests;
    eprintln!(
        "{kind:?} server_in_flight = 1: at most {} of {requests} requests in flight ({:.1?})",
        setup.proxy.most_in_flight(),
        started.elapsed()
    );
    assert!(
        requests >= 30,
        "the capped run sent its users ({requests} requests)"
    );
    assert_eq!(
        setup.proxy.most_in_flight(),
        1,
        "one slot across every process"
    );

    a_daemon_killed_holding_the_slot_frees_it(&setup, kind, capped);
    eprintln!(
        "{kind:?}: a killed holder freed the slot ({:.1?})",
        started.elapsed()
    );
}

#[test]
fn postgres_one_slot_holds_across_three_daemons() {
    one_slot_across_daemons(Kind::Postgres);
}

#[test]
fn mariadb_one_slot_holds_across_three_daemons() {
    one_slot_across_daemons(Kind::MariaDb);
}

/// The local TCP ports of a process's sockets, from `/proc`.
fn local_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 9
                && inodes.iter().any(|i| i == fields[9])
                && let Some(port) = fields[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            {
                ports.push(port);
            }
        }
    }
    ports
}

/// The client ports of the sessions holding the cap's one slot: on PostgreSQL an advisory
/// lock of the two-key form, on MariaDB the slot's named lock.
fn slot_holders(setup: &Setup, kind: Kind) -> Vec<u16> {
    let Ok(mut db) = Db::connect(&setup.url) else {
        return Vec::new();
    };
    match kind {
        Kind::Postgres => db
            .query(
                "SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2",
                &[],
            )
            .unwrap_or_default()
            .iter()
            .filter_map(|r| u16::try_from(r.int(0).ok()?).ok())
            .collect(),
        Kind::MariaDb => {
            // The cap the daemons made: the same origin and database give the same name.
            let cap = SharedInFlight::new(
                &origin_of(&setup.proxy.base_url),
                &setup.url,
                1,
                LogSink::memory().0,
            );
            let sql = format!(
                "SELECT p.HOST FROM information_schema.PROCESSLIST p \
                 WHERE p.ID = IS_USED_LOCK('{}')",
                cap.lock_name(0)
            );
            db.query(&sql, &[])
                .unwrap_or_default()
                .iter()
                .filter_map(|r| r.text(0).ok()?.rsplit(':').next()?.parse().ok())
                .collect()
        }
    }
}

/// A daemon `kill -9`ed while its request holds the slot (held at the proxy) frees it:
/// the database ends the dead session, and with it the session's lock.
fn a_daemon_killed_holding_the_slot_frees_it(setup: &Setup, kind: Kind, mut running: Vec<Daemon>) {
    // Hold whatever arrives next: its sender holds the one slot meanwhile.
    setup.proxy.set_stalled(true);
    queue_users(&setup.url, "kill", 40);
    wait_until(
        "a request held with its slot",
        &mut running,
        DRAIN_DEADLINE,
        Duration::from_millis(20),
        || setup.proxy.in_flight() == 1 && slot_holders(setup, kind).len() == 1,
    );
    let holder_port = slot_holders(setup, kind)[0];
    let victim = running
        .iter()
        .position(|d| local_ports(d.child.id()).contains(&holder_port))
        .expect("the slot's holder is one of the daemons");
    running[victim].child.kill().expect("kill -9");
    let _ = running[victim].child.wait();
    running.remove(victim);
    // Its request is still held at the proxy, yet another daemon takes the slot and sends.
    wait_until(
        "another daemon's request while the killed one's is held",
        &mut running,
        Duration::from_secs(60),
        Duration::from_millis(20),
        || setup.proxy.in_flight() >= 2,
    );
    setup.proxy.set_stalled(false);
    setup.proxy.counts.most_in_flight.store(0, Ordering::SeqCst);
    drain(setup, &mut running);
    // After the killed daemon's request, one at a time again.
    assert!(setup.proxy.most_in_flight() <= 2);
}
