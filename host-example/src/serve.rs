//! `serve`: the component's server role over HTTP, from a directory in SQLite, PostgreSQL or
//! MariaDB (several `serve` processes on one of the last two answer as one server). The
//! seed's Joomla side: it prints its SCIM base URL and bearer token at start, as the SCIM
//! Configuration tab shows them.
//!
//! A small HTTP/1.1 server of its own: one thread per connection reads requests under two
//! deadlines (the request head within [`ServeOptions::header_timeout`], the body within
//! [`ServeOptions::body_timeout`] in total, each answered 408 with its own log line, so a
//! slow client is told apart from a slow body), and a pool of [`ServeOptions::workers`]
//! workers answers them, each with its own component instance and its own SQLite
//! connection. A request that traps its instance is answered 500; the worker's next request
//! runs on a fresh instance.
//!
//! So that one client cannot starve the others (issue 28): each client address holds at
//! most [`ServeOptions::max_connections_per_client`] connections, a kept-alive connection
//! that sends nothing for [`ServeOptions::idle_timeout`] is closed, and a 400 or 401 ends
//! its connection.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ServerSettings;
use crate::database::DatabaseUrl;
use crate::describe::describe_error;
use crate::directory::{SharedDirectory, SqliteDirectory};
use crate::host_state::DirectoryBackend;
use crate::logging::{Level, LogSink};
use crate::runtime::{Runtime, ServerSession};
use crate::types::ServerRequest;

mod file_watch;
mod token;

use token::LiveTokenHash;
pub use token::{MISMATCH_RECHECK_GAP, RECHECK_EVERY, TokenHashSource};

/// The path the SCIM API is served under.
pub const BASE_PATH: &str = "/scim/v2";

/// The largest request head (request line and headers) accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How `serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Workers answering requests at once, each with its own component instance and
    /// SQLite connection (default 4).
    pub workers: usize,
    /// How long a client has to send a whole request head, from its connection (or its
    /// previous answer) on (default 10 s).
    pub header_timeout: Duration,
    /// How long a kept-alive connection may wait for the first byte of its next request
    /// before it is closed (default 5 s): shorter than the head deadline, so idle
    /// connections do not hold their place.
    pub idle_timeout: Duration,
    /// How long a client has to send a request's whole body once its head is in, in total
    /// however the bytes trickle (default 30 s).
    pub body_timeout: Duration,
    /// The largest request body handed to the component (default 1 MiB); larger bodies
    /// are answered 413 by the component.
    pub max_body_bytes: u64,
    /// Connections served at once (default 128); more are answered 503.
    pub max_connections: usize,
    /// Connections served at once from one client address (default 16); more from it are
    /// answered 503, so one client cannot take every connection.
    pub max_connections_per_client: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            workers: 4,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(30),
            max_body_bytes: 1024 * 1024,
            max_connections: 128,
            max_connections_per_client: 16,
        }
    }
}

/// The bearer token clients must present.
#[derive(Clone)]
pub enum ServerToken {
    /// The token itself.
    Plain(String),
    /// Only its SHA-256 (see [`token_hash`]): the host checks the presented token against
    /// it in constant time, and the token itself is kept nowhere.
    Sha256([u8; 32]),
    /// Only its SHA-256, kept where another process may replace it (the database several
    /// `serve` processes share, or the SQLite file `serve-token rotate` writes): read
    /// again every [`RECHECK_EVERY`], and at once (at most once per
    /// [`MISMATCH_RECHECK_GAP`]) when a presented token does not match, so a rotation on
    /// one process holds on all of them within seconds (see `serve::token`).
    Rotating(Arc<dyn TokenHashSource>),
}

impl std::fmt::Debug for ServerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerToken::Plain(_) => f.write_str("Plain(<redacted>)"),
            ServerToken::Sha256(_) => f.write_str("Sha256(<redacted>)"),
            ServerToken::Rotating(_) => f.write_str("Rotating(<redacted>)"),
        }
    }
}

/// The SHA-256 of a token, as [`ServerToken::Sha256`] holds it.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A hash as lower-case hex, for storing.
pub fn hash_to_hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// A hash back from [`hash_to_hex`]; `None` if the text is not one.
pub fn hash_from_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A running server; stopped (and joined) on drop.
pub struct RunningServer {
    /// The SCIM base URL, such as `http://127.0.0.1:8080/scim/v2`.
    pub base_url: String,
    /// The bearer token clients must present; empty when the server was given only its
    /// hash.
    pub token: String,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    /// With a rotating token: its refresher, stopped with the server.
    token_refresher: Option<Arc<LiveTokenHash>>,
    /// Why the server stopped on its own (its SQLite file replaced), once it has.
    stopped_because: file_watch::StopReason,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("base_url", &self.base_url)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl RunningServer {
    /// Stops accepting, lets the workers finish the requests in hand, and joins them.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.acceptor.take() {
            // Wake the acceptor from `accept`.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = t.join();
        }
        if let Some(refresher) = &self.token_refresher {
            refresher.stop();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }

    /// Serves until the process is stopped; an error when the server stopped on its own
    /// (its SQLite file was replaced or removed: see `serve/file_watch.rs`).
    pub fn wait(mut self) -> anyhow::Result<()> {
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        let reason = self
            .stopped_because
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match reason {
            Some(reason) => Err(anyhow::anyhow!(reason)),
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fresh token: 32 bytes from the operating system's CSPRNG, as 64 hex digits.
pub fn generate_token() -> String {
    try_generate_token().unwrap_or_else(|e| {
        // The OS random source failing is not something a server can work around.
        panic!("the operating system's random number generator failed: {e}")
    })
}

/// [`generate_token`], with the random source's failure as an error.
pub fn try_generate_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| anyhow::anyhow!("the operating system's random source failed: {e}"))?;
    Ok(hash_to_hex(&bytes))
}

/// Starts serving the directory in `database` on `listen` (`127.0.0.1:0` picks a port)
/// with the default [`ServeOptions`]. `policy_json`'s mapping, reversed, turns SCIM users
/// into the CMS users kept beside them.
pub fn start(
    runtime: &Runtime,
    database: &Path,
    listen: &str,
    token: &str,
    policy_json: &str,
    log: LogSink,
) -> anyhow::Result<RunningServer> {
    start_with(
        runtime,
        database,
        listen,
        &ServerToken::Plain(token.to_string()),
        policy_json,
        log,
        &ServeOptions::default(),
    )
}

/// What the connection threads share.
struct Shared {
    options: ServeOptions,
    log: LogSink,
    stop: Arc<AtomicBool>,
    pool: Pool,
    /// With a hashed token: its check, and the token the component was opened with.
    hashed: Option<(TokenCheck, String)>,
    active: AtomicUsize,
    /// The connections open from each client address.
    per_client: Mutex<HashMap<IpAddr, usize>>,
    /// Connection threads poll briefly before they sleep in a read (see
    /// [`Conn::poll_briefly`]) while fewer connections than this are open: the cores, so
    /// that a polling thread never takes a core another connection needs.
    poll_below: usize,
}

/// The component instances. The connection thread that reads a request checks one out and
/// runs the request on it itself: handing requests to worker threads cost two thread
/// switches a request, most of a small request's time.
struct Pool {
    idle: Mutex<Vec<ServerSession>>,
    returned: Condvar,
    /// Requests waiting for an instance; past `max_waiting` a request is answered 503.
    waiting: AtomicUsize,
    max_waiting: usize,
    /// Instances not lost to a panic in the host; with none left, requests get 503
    /// instead of waiting for an instance that will never come back.
    alive: AtomicUsize,
}

impl Pool {
    /// Runs `request` on an idle instance, waiting for one if all are busy; `None` when
    /// too many requests wait already.
    fn run(&self, request: &ServerRequest, log: &LogSink) -> Option<Answer> {
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let mut session = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if let Some(s) = idle.pop() {
                    break s;
                }
                if self.alive.load(Ordering::SeqCst) == 0 {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    return None;
                }
                idle = self
                    .returned
                    .wait(idle)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        // A panic in the host's own code loses this instance (its state is unknown); the
        // request is answered 500 and the others go on.
        let handled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| session.handle(request)));
        let Ok(handled) = handled else {
            let reference = error_reference();
            log.write(
                Level::Error,
                &format!(
                    "serve: the host panicked on {} {} (reference {reference}); that instance is gone",
                    request.method, request.path
                ),
            );
            drop(session);
            self.alive.fetch_sub(1, Ordering::SeqCst);
            self.returned.notify_all();
            return Some(internal_error(&reference));
        };
        let answer = match handled {
            Ok(a) => Answer {
                status: a.status,
                headers: a.headers,
                body: a.body,
            },
            Err(trap) => {
                let reference = error_reference();
                log.write(
                    Level::Error,
                    &format!(
                        "serve: component trap on {} {} (reference {reference}): {trap:#}; the instance was discarded, a fresh one serves the next request",
                        request.method, request.path
                    ),
                );
                internal_error(&reference)
            }
        };
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(session);
        self.returned.notify_one();
        Some(answer)
    }
}

/// Stops a token refresher when dropped, unless disarmed: a start that fails after the
/// refresher started leaves no thread behind.
struct StopOnDrop(Option<Arc<LiveTokenHash>>);

impl StopOnDrop {
    fn disarm(mut self) -> Option<Arc<LiveTokenHash>> {
        self.0.take()
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(refresher) = self.0.take() {
            refresher.stop();
        }
    }
}

/// How a presented token is checked when only its hash is known.
enum TokenCheck {
    /// Against one hash.
    Fixed([u8; 32]),
    /// Against a hash kept fresh from where other processes may replace it.
    Live(Arc<LiveTokenHash>),
}

impl TokenCheck {
    /// Whether `presented` is the token (compared as hashes, in constant time).
    fn matches(&self, presented: &str) -> bool {
        match self {
            TokenCheck::Fixed(hash) => bool::from(token_hash(presented).ct_eq(hash)),
            TokenCheck::Live(live) => live.matches(presented),
        }
    }
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// [`start`] with a token that may be given as its hash, and explicit options.
pub fn start_with(
    runtime: &Runtime,
    database: &Path,
    listen: &str,
    token: &ServerToken,
    policy_json: &str,
    log: LogSink,
    options: &ServeOptions,
) -> anyhow::Result<RunningServer> {
    start_on(
        runtime,
        &DatabaseUrl::Sqlite(database.to_path_buf()),
        listen,
        token,
        policy_json,
        log,
        options,
    )
}

/// [`start_with`] on any database: a SQLite file, or PostgreSQL or MariaDB, where several
/// `serve` processes on one database answer as one server (see
/// [`crate::directory::SharedDirectory`]).
pub fn start_on(
    runtime: &Runtime,
    database: &DatabaseUrl,
    listen: &str,
    token: &ServerToken,
    policy_json: &str,
    log: LogSink,
    options: &ServeOptions,
) -> anyhow::Result<RunningServer> {
    if options.workers == 0 || options.max_connections == 0 {
        bail!("serve needs at least one worker and one connection");
    }
    if options.max_connections_per_client == 0 {
        bail!("serve needs to allow each client at least one connection");
    }
    let listener =
        TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr().context("the server has no address")?;
    let base_url = format!("http://{addr}{BASE_PATH}");
    let (bearer_token, hashed, shown) = match token {
        ServerToken::Plain(t) => (t.clone(), None, t.clone()),
        ServerToken::Sha256(hash) => {
            // The component compares against a token of the host's own, which never
            // leaves this process; clients present the real one, checked here.
            let inner = try_generate_token()?;
            (
                inner.clone(),
                Some((TokenCheck::Fixed(*hash), inner)),
                String::new(),
            )
        }
        ServerToken::Rotating(source) => {
            let live = LiveTokenHash::new(Arc::clone(source))
                .context("reading the server token's hash")?;
            let inner = try_generate_token()?;
            (
                inner.clone(),
                Some((TokenCheck::Live(live), inner)),
                String::new(),
            )
        }
    };
    let config = ServerSettings {
        base_url: base_url.clone(),
        bearer_token,
        max_results: 200,
        bulk_max_operations: 100,
        bulk_max_payload: options.max_body_bytes,
        policy_json: policy_declaring_password_hashing(policy_json)?,
    };
    let log = match &hashed {
        Some((_, inner)) => log.redact([inner.clone()]),
        None => log,
    };
    // Every worker opens its instance and its connection now, so a bad configuration or
    // database fails the start instead of the first requests.
    let mut sessions = Vec::with_capacity(options.workers);
    // The workers' writes queue on one lock here instead of in SQLite's busy handler.
    let write_lock = Arc::new(Mutex::new(()));
    for _ in 0..options.workers {
        let directory: Box<dyn DirectoryBackend> = match database.sqlite_path() {
            Some(path) => {
                let directory = SqliteDirectory::open_shared(path, Arc::clone(&write_lock))?;
                directory.leave_checkpoints_to_caller()?;
                Box::new(directory)
            }
            None => Box::new(SharedDirectory::open(database)?),
        };
        match runtime.open_server(&config, directory, log.clone())? {
            Ok(s) => sessions.push(s),
            Err(e) => bail!("{}", describe_error(&e)),
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    let token_refresher = match &hashed {
        Some((TokenCheck::Live(live), _)) => {
            let (running, log) = (Arc::clone(live), log.clone());
            let refresher = std::thread::Builder::new()
                .name("scim-serve-token".into())
                .spawn(move || running.run_refresher(&log))
                .context("starting the token refresher")?;
            workers.push(refresher);
            Some(Arc::clone(live))
        }
        _ => None,
    };
    // Should the start fail from here on, the refresher stops with it.
    let refresher_guard = StopOnDrop(token_refresher);
    let instances = sessions.len();
    let pool = Pool {
        idle: Mutex::new(sessions),
        returned: Condvar::new(),
        waiting: AtomicUsize::new(0),
        max_waiting: options.workers * 16,
        alive: AtomicUsize::new(instances),
    };
    // On SQLite the workers leave the WAL's checkpoints to this thread (see
    // `SqliteDirectory::leave_checkpoints_to_caller`).
    if let Some(database) = database.sqlite_path() {
        let stop = stop.clone();
        let database = database.to_path_buf();
        let log = log.clone();
        let checkpointer = std::thread::Builder::new()
            .name("scim-serve-checkpoint".into())
            .spawn(move || {
                if let Err(e) =
                    crate::directory::checkpoint_until(&database, Duration::from_millis(100), &stop)
                {
                    log.write(
                        Level::Error,
                        &format!("serve: WAL checkpoints stopped: {e:#}"),
                    );
                }
            })
            .context("starting the checkpointer")?;
        workers.push(checkpointer);
    }
    let stopped_because = file_watch::StopReason::default();
    if let Some(database) = database.sqlite_path() {
        let opened = file_watch::FileIdentity::of(database)
            .with_context(|| format!("reading {}", database.display()))?;
        let (stop, reason, path) = (
            stop.clone(),
            stopped_because.clone(),
            database.to_path_buf(),
        );
        let log = log.clone();
        let watcher = std::thread::Builder::new()
            .name("scim-serve-file-watch".into())
            .spawn(move || {
                file_watch::watch_until(path, opened, &stop, &reason, |why| {
                    log.write(Level::Error, &format!("serve: {why}"));
                    stop.store(true, Ordering::SeqCst);
                    // Wake the acceptor from `accept`.
                    let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
                });
            })
            .context("starting the database file's watcher")?;
        workers.push(watcher);
    }
    let shared = Arc::new(Shared {
        options: options.clone(),
        log,
        stop: stop.clone(),
        pool,
        hashed,
        active: AtomicUsize::new(0),
        per_client: Mutex::new(HashMap::new()),
        poll_below: std::thread::available_parallelism().map_or(1, usize::from),
    });
    let acceptor = std::thread::Builder::new()
        .name("scim-serve-accept".into())
        .spawn(move || accept(listener, shared))
        .context("starting the acceptor")?;
    Ok(RunningServer {
        base_url,
        token: shown,
        addr,
        stop,
        acceptor: Some(acceptor),
        workers,
        token_refresher: refresher_guard.disarm(),
        stopped_because,
    })
}

/// The policy with `"directory": {"hashes_passwords": true}`: the SQLite directory keeps a
/// User's password only as its argon2id hash, so the component may hand it one (without the
/// declaration the component drops passwords).
fn policy_declaring_password_hashing(policy_json: &str) -> anyhow::Result<String> {
    let mut policy: serde_json::Map<String, serde_json::Value> = if policy_json.trim().is_empty() {
        serde_json::Map::new()
    } else {
        serde_json::from_str(policy_json).context("the policy must be a JSON object")?
    };
    let directory = policy
        .entry("directory")
        .or_insert_with(|| serde_json::json!({}));
    let Some(directory) = directory.as_object_mut() else {
        bail!("the policy's `directory` must be an object");
    };
    directory.insert("hashes_passwords".into(), serde_json::Value::Bool(true));
    Ok(serde_json::Value::Object(policy).to_string())
}

/// Accepts connections until stopped, each on a thread of its own.
fn accept(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(mut stream) = stream else {
            // Out of file descriptors, say: give the connections in hand time to finish.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        if shared.active.load(Ordering::SeqCst) >= shared.options.max_connections {
            refuse(&mut stream, "too many connections; try again shortly");
            continue;
        }
        // Without a peer address (the socket failed already) the client is no one's.
        let client = stream
            .peer_addr()
            .map_or(IpAddr::from([0u8; 4]), |a| a.ip());
        if !shared.admit(client) {
            refuse(
                &mut stream,
                "too many connections from this client; try again shortly",
            );
            continue;
        }
        shared.active.fetch_add(1, Ordering::SeqCst);
        let conn_shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("scim-serve-conn".into())
            .spawn(move || {
                serve_connection(stream, &conn_shared);
                conn_shared.release(client);
                conn_shared.active.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            shared.release(client);
            shared.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Answers a connection that is not admitted 503 and closes it.
fn refuse(stream: &mut TcpStream, detail: &str) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let answer = scim_error(503, detail);
    let _ = write_answer(stream, &answer, false, true, Some(1));
}

impl Shared {
    /// Counts a connection from `client`; `false` (nothing counted) when it holds its
    /// share already.
    fn admit(&self, client: IpAddr) -> bool {
        let mut open = self
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(client).or_insert(0);
        if *count >= self.options.max_connections_per_client {
            return false;
        }
        *count += 1;
        true
    }

    /// Uncounts a connection from `client`.
    fn release(&self, client: IpAddr) {
        let mut open = self
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&client);
            }
        }
    }
}

/// A reference for an error answered 500: the answer carries it, and the log line with the
/// cause names it, so an operator finds one from the other without the client seeing the
/// cause.
fn error_reference() -> String {
    let mut bytes = [0u8; 6];
    if getrandom::getrandom(&mut bytes).is_err() {
        // Only a reference: the clock distinguishes errors as well.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes.copy_from_slice(&nanos.to_le_bytes()[..6]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 500 with a plain sentence and the reference its log line names.
fn internal_error(reference: &str) -> Answer {
    scim_error(500, &format!("internal error; reference {reference}"))
}

/// A SCIM error answer.
fn scim_error(status: u16, detail: &str) -> Answer {
    let body = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": status.to_string(),
        "detail": detail,
    });
    Answer {
        status,
        headers: vec![(
            "Content-Type".into(),
            "application/scim+json; charset=utf-8".into(),
        )],
        body: body.to_string().into_bytes(),
    }
}

/// Why reading from a client stopped.
enum ReadStop {
    /// The client closed the connection.
    Closed,
    /// The deadline passed.
    TimedOut,
    /// The connection failed.
    Failed,
}

/// A connection's socket and the bytes read from it but not used yet.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Whether a read polls briefly before it sleeps (see [`Conn::poll_briefly`]).
    poll: bool,
}

/// How long a connection's thread polls for its client's bytes before it sleeps in a
/// blocking read. A client sending requests one after another sends the next within tens
/// of microseconds of an answer, and many send a request's body as a segment of its own
/// after the head; a thread asleep in `read` takes about as long again to be woken on this
/// 2-core VM. Polling at 1 connection (`bench --skip-peer`, builds alternating):
/// - before the next request only: GET by id went from 9,400-10,800 to 15,200-16,300/s,
///   and POST from 5,500-6,300 to 6,300-7,200/s;
/// - before every read, which catches the separate body too: POST to 6,400-7,700/s
///   (7,650-7,710 in five runs of six).
///
/// With more connections than cores, polling cost 7% (POST) and 27% (GET) at 8 connections,
/// hence [`Shared::poll_below`].
const POLL_BEFORE_SLEEP: Duration = Duration::from_micros(50);

impl Conn {
    /// Polls for up to [`POLL_BEFORE_SLEEP`] for bytes from the client, reading what
    /// arrives: `Ok(true)` when some did, `Ok(false)` when none did (the blocking read that
    /// follows waits, or sees a close or an error). Fails when the socket could not be put
    /// back into blocking mode, so that the deadlines of later reads would not hold.
    fn poll_briefly(&mut self) -> Result<bool, ReadStop> {
        if self.stream.set_nonblocking(true).is_err() {
            return Ok(false);
        }
        let started = Instant::now();
        let mut chunk = [0u8; 16 * 1024];
        let mut got = false;
        while started.elapsed() < POLL_BEFORE_SLEEP {
            match self.stream.read(&mut chunk) {
                Ok(n) if n > 0 => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    got = true;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
                _ => break,
            }
        }
        match self.stream.set_nonblocking(false) {
            Ok(()) => Ok(got),
            Err(_) => Err(ReadStop::Failed),
        }
    }

    /// Reads more bytes into the buffer, waiting no later than `deadline`.
    fn fill(&mut self, deadline: Instant) -> Result<(), ReadStop> {
        if self.poll && self.poll_briefly()? {
            return Ok(());
        }
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadStop::TimedOut);
            }
            if self.stream.set_read_timeout(Some(left)).is_err() {
                return Err(ReadStop::Failed);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ReadStop::Closed),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(ReadStop::Failed),
            }
        }
    }

    /// Takes `n` bytes, reading as needed.
    fn take(&mut self, n: usize, deadline: Instant, out: &mut Vec<u8>) -> Result<(), ReadStop> {
        let mut want = n;
        while want > 0 {
            if self.buf.is_empty() {
                self.fill(deadline)?;
            }
            let k = want.min(self.buf.len());
            out.extend(self.buf.drain(..k));
            want -= k;
        }
        Ok(())
    }

    /// Takes one line (up to `\n`, which is dropped with a `\r` before it).
    fn line(&mut self, deadline: Instant, limit: usize) -> Result<Vec<u8>, ReadStop> {
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.buf.len() > limit {
                return Err(ReadStop::Failed);
            }
            self.fill(deadline)?;
        }
    }
}

/// A parsed request head.
struct Head {
    method: String,
    target: String,
    http10: bool,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn wants_close(&self) -> bool {
        let connection = self.header("connection").map(str::to_ascii_lowercase);
        match connection.as_deref() {
            Some(c) if c.contains("close") => true,
            Some(c) if c.contains("keep-alive") => false,
            _ => self.http10,
        }
    }
}

/// Where the request head ends in `buf` (the index after its blank line), if it is in.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn parse_head(raw: &[u8]) -> Result<Head, &'static str> {
    let text = String::from_utf8_lossy(raw);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().ok_or("no request line")?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line");
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err("malformed method");
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err("unsupported HTTP version"),
    };
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or("malformed header")?;
        if name.is_empty() || name.contains(' ') {
            return Err("malformed header name");
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(Head {
        method: method.to_string(),
        target: target.to_string(),
        http10,
        headers,
    })
}

/// Serves one connection's requests until it closes, errs or times out.
fn serve_connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(shared.options.body_timeout));
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
        poll: false,
    };
    let header_secs = shared.options.header_timeout.as_secs_f64();
    let body_secs = shared.options.body_timeout.as_secs_f64();
    let mut served = 0u64;
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        conn.poll = shared.active.load(Ordering::Relaxed) < shared.poll_below;
        // The head: all of it within the header timeout.
        let waiting_since = Instant::now();
        let deadline = waiting_since + shared.options.header_timeout;
        if served > 0 && conn.buf.is_empty() {
            // A kept-alive connection: the next request must start within the idle
            // timeout, or the connection gives its place back.
            let idle_deadline = waiting_since
                + shared
                    .options
                    .idle_timeout
                    .min(shared.options.header_timeout);
            if conn.fill(idle_deadline).is_err() {
                return;
            }
        }
        let end = loop {
            if let Some(end) = head_end(&conn.buf) {
                break end;
            }
            if conn.buf.len() > MAX_HEAD_BYTES {
                let answer = scim_error(431, "the request head is too large");
                let _ = write_answer(&mut conn.stream, &answer, false, true, None);
                return;
            }
            match conn.fill(deadline) {
                Ok(()) => {}
                Err(ReadStop::TimedOut) if conn.buf.is_empty() && served > 0 => {
                    // An idle kept-alive connection: close it quietly.
                    return;
                }
                Err(ReadStop::TimedOut) => {
                    shared.log.write(
                        Level::Warn,
                        &format!(
                            "serve: slow client: no complete request head within {header_secs} s ({} bytes received); answered 408",
                            conn.buf.len()
                        ),
                    );
                    let answer = scim_error(
                        408,
                        &format!("the request head was not received within {header_secs} s"),
                    );
                    let _ = write_answer(&mut conn.stream, &answer, false, true, None);
                    return;
                }
                Err(_) => return,
            }
        };
        let raw: Vec<u8> = conn.buf.drain(..end).collect();
        let head = match parse_head(&raw) {
            Ok(h) => h,
            Err(why) => {
                let answer = scim_error(400, &format!("bad request: {why}"));
                let _ = write_answer(&mut conn.stream, &answer, false, true, None);
                return;
            }
        };
        let mut close = head.wants_close();
        // The body: all of it within the body timeout.
        let max =
            usize::try_from(shared.options.max_body_bytes.saturating_add(1)).unwrap_or(usize::MAX);
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
        let length = match head.header("content-length") {
            Some(v) if !chunked => match v.trim().parse::<u64>() {
                Ok(n) => n,
                Err(_) => {
                    let answer = scim_error(400, "bad request: invalid Content-Length");
                    let _ = write_answer(&mut conn.stream, &answer, false, true, None);
                    return;
                }
            },
            _ => 0,
        };
        if (chunked || length > 0)
            && head
                .header("expect")
                .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
        {
            let _ = conn.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let deadline = Instant::now() + shared.options.body_timeout;
        let mut body = Vec::new();
        let read = if chunked {
            read_chunked(&mut conn, deadline, max, &mut body)
        } else {
            let want = usize::try_from(length).unwrap_or(usize::MAX).min(max);
            // One byte more than allowed lets the component answer 413 itself; the rest
            // is left unread, so the connection closes after the answer.
            if (want as u64) < length {
                close = true;
            }
            conn.take(want, deadline, &mut body).map(|()| true)
        };
        match read {
            Ok(complete) => close |= !complete,
            Err(ReadStop::TimedOut) => {
                let expected = if chunked {
                    "a chunked body".to_string()
                } else {
                    format!("{length} bytes")
                };
                shared.log.write(
                    Level::Warn,
                    &format!(
                        "serve: slow body: {} of {expected} received within {body_secs} s; answered 408",
                        body.len()
                    ),
                );
                let answer = scim_error(
                    408,
                    &format!("the request body was not received within {body_secs} s"),
                );
                let _ = write_answer(&mut conn.stream, &answer, false, true, None);
                return;
            }
            Err(_) => return,
        }
        let answer = answer_request(shared, &head, body);
        let head_only = head.method.eq_ignore_ascii_case("HEAD");
        close |= shared.stop.load(Ordering::SeqCst);
        // A client that failed to authenticate, or sent what could not be read, gets no
        // further turns on this connection.
        close |= matches!(answer.status, 400 | 401);
        if write_answer(&mut conn.stream, &answer, head_only, close, None).is_err() || close {
            return;
        }
        served += 1;
    }
}

/// Reads a chunked body, up to `max` bytes. `Ok(false)` when it was cut at `max` (the
/// connection must then close).
fn read_chunked(
    conn: &mut Conn,
    deadline: Instant,
    max: usize,
    body: &mut Vec<u8>,
) -> Result<bool, ReadStop> {
    loop {
        let line = conn.line(deadline, 1024)?;
        let size_text = String::from_utf8_lossy(&line);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| ReadStop::Failed)?;
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                if conn.line(deadline, MAX_HEAD_BYTES)?.is_empty() {
                    return Ok(true);
                }
            }
        }
        let room = max.saturating_sub(body.len());
        if size > room {
            conn.take(room, deadline, body)?;
            return Ok(false);
        }
        conn.take(size, deadline, body)?;
        conn.line(deadline, 2)?;
    }
}

/// Hands a request to a worker and waits for its answer.
fn answer_request(shared: &Shared, head: &Head, body: Vec<u8>) -> Answer {
    let target = head.target.as_str();
    // An absolute-form target (`http://host/path`) is served by its path.
    let target = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let relative = match path.strip_prefix(BASE_PATH) {
        Some("") => "/".to_string(),
        Some(r) if r.starts_with('/') => r.to_string(),
        _ => return scim_error(404, "not found"),
    };
    let mut headers = head.headers.clone();
    if let Some((check, inner)) = &shared.hashed {
        // Clients present the real token; the component knows only the host's own. A
        // match (compared in constant time) is passed on as the host's token; anything
        // else is passed on as it came, and the component answers 401.
        for (name, value) in headers.iter_mut() {
            if name.eq_ignore_ascii_case("authorization")
                && let Some((scheme, presented)) = value.split_once(' ')
                && scheme.eq_ignore_ascii_case("bearer")
                && check.matches(presented.trim())
            {
                *value = format!("Bearer {inner}");
            }
        }
    }
    if shared.stop.load(Ordering::SeqCst) {
        return scim_error(503, "the server is stopping");
    }
    let request = ServerRequest {
        method: head.method.clone(),
        path: relative,
        query: query.to_string(),
        headers,
        body,
    };
    let started = Instant::now();
    let answer = shared.pool.run(&request, &shared.log).unwrap_or_else(|| {
        let mut a = scim_error(503, "the server is busy; try again shortly");
        a.headers.push(("Retry-After".into(), "1".into()));
        a
    });
    crate::metrics::global().server_request(
        &request.method,
        &request.path,
        answer.status,
        started.elapsed(),
    );
    answer
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Writes an answer; the component's own framing headers are replaced by ours.
fn write_answer(
    stream: &mut TcpStream,
    answer: &Answer,
    head_only: bool,
    close: bool,
    retry_after: Option<u32>,
) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {} {}\r\n", answer.status, reason(answer.status));
    for (name, value) in &answer.headers {
        let framing = ["content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h));
        if framing || name.contains(['\r', '\n', ':']) || value.contains(['\r', '\n']) {
            continue;
        }
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(secs) = retry_after {
        out.push_str(&format!("Retry-After: {secs}\r\n"));
    }
    let no_body = answer.status == 204 || answer.status == 304;
    if !no_body {
        out.push_str(&format!("Content-Length: {}\r\n", answer.body.len()));
    }
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head_only && !no_body {
        bytes.extend_from_slice(&answer.body);
    }
    stream.write_all(&bytes)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_round_trips() {
        let a = generate_token();
        let b = generate_token();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        let hash = token_hash(&a);
        assert_eq!(hash_from_hex(&hash_to_hex(&hash)), Some(hash));
        assert_eq!(hash_from_hex("zz"), None);
        let debug = format!(
            "{:?} {:?}",
            ServerToken::Plain(a.clone()),
            ServerToken::Sha256(hash)
        );
        assert!(!debug.contains(&a), "{debug}");
        assert!(!debug.contains(&hash_to_hex(&hash)), "{debug}");
    }

    #[test]
    fn parses_heads() {
        let raw =
            b"GET /scim/v2/Users?count=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n";
        assert_eq!(head_end(raw), Some(raw.len()));
        let head = parse_head(raw).unwrap();
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "/scim/v2/Users?count=1");
        assert_eq!(head.header("authorization"), Some("Bearer t"));
        assert!(!head.wants_close());
        assert!(parse_head(b"GET /x HTTP/2\r\n\r\n").is_err());
        assert!(parse_head(b"G@T /x HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_head(b"GET /x HTTP/1.1\r\nno colon\r\n\r\n").is_err());
        assert!(
            parse_head(b"GET /x HTTP/1.0\r\n\r\n")
                .unwrap()
                .wants_close()
        );
    }
}
