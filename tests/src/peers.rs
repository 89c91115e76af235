//! Real third-party SCIM 2.0 servers ("peers") for the end-to-end tests.
//!
//! * [`scim2_server`]: scim2-server 0.8.3 (Python, PyPI), base `http://127.0.0.1:P/v2`.
//!   Discovery endpoints answer without a token; everything else needs `Bearer <token>`.
//! * [`scimmy`]: the Express app in `tests/peers/scimmy` (SCIMMY 1.3.5 + scimmy-routers 1.3.2),
//!   base `http://127.0.0.1:P/scim/v2`. Every endpoint, discovery included, needs the token.
//! * [`quirky`]: our own small server in `tests/peers/quirky` (Python standard library,
//!   SQLite), whose switches reproduce the behaviours of servers people run (narrow
//!   `/Schemas`, required names, PATCH refused, no filters, no uniqueness, paging 500s);
//!   base `http://127.0.0.1:P/v2`. It keeps its data across [`Peer::start_again`].
//! * [`html_server`]: not a SCIM server at all: Python's `http.server` over an empty
//!   directory, which answers every GET with an HTML 404 and every other method with an HTML
//!   501 (for the `unexpected-response` error case); base `http://127.0.0.1:P` (no path).
//!
//! scim2-server and SCIMMY keep their data in memory: a fresh peer is empty, and [`Peer::stop`] /
//! [`Peer::start_again`] (same port, same token) lose all data.
//!
//! The peers are installed on first use, under a file lock so that several test threads
//! or processes may ask at once:
//! * scim2-server into the venv `<workspace>/target/peers/venv` (needs `python3`), unless
//!   env `SCIM2_SERVER_BIN` names an already installed `scim2-server` executable;
//! * the SCIMMY app's `node_modules` by `npm ci` in `tests/peers/scimmy` (needs `node`, `npm`).
//!   It is reinstalled whenever `package-lock.json` changes.
//!
//! Peer output goes to `<workspace>/target/peers/logs/<name>-<port>-<pid>.log`; install
//! output to `.../logs/install-<name>.log`. Errors quote the tail of the relevant log.
//!
//! The workspace root is the parent of this crate's manifest directory; env
//! `SCIM_PEERS_WORKSPACE_ROOT` overrides it (for building this module in another crate).
//!
//! A peer is killed when its [`Peer`] is dropped. A test process that is killed outright
//! (SIGKILL) leaves its peers running.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};

/// The scim2-server version installed into the venv.
pub const SCIM2_SERVER_VERSION: &str = "0.8.3";

/// How long a peer may take to answer after it was spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a first start is retried on a new port when the process dies at once
/// (another process took the port between our probe and the peer's bind).
const START_ATTEMPTS: usize = 3;
/// Bytes of a log quoted in an error.
const LOG_TAIL_BYTES: u64 = 4000;

/// A running peer; killed (and waited) on drop.
pub struct Peer {
    /// Base URL of the SCIM service, without a trailing slash.
    pub base_url: String,
    /// Bearer token the peer accepts.
    pub token: String,
    /// `"scim2-server"`, `"scimmy"`, `"quirky"` or `"html"`.
    pub name: &'static str,
    /// Port on 127.0.0.1, kept across [`Peer::start_again`].
    pub port: u16,
    /// The log file that receives the peer's stdout and stderr.
    pub log_path: PathBuf,
    kind: Kind,
    child: Option<Child>,
}

#[derive(Clone)]
enum Kind {
    Scim2Server {
        bin: PathBuf,
        /// A `--service-provider-config` file, when the defaults will not do.
        config: Option<PathBuf>,
    },
    Scimmy {
        app_dir: PathBuf,
    },
    /// `tests/peers/quirky/server.py` with its switches and its SQLite file.
    Quirky {
        script: PathBuf,
        switches: Vec<String>,
        db: PathBuf,
    },
    /// `python -m http.server` serving `root`, an empty directory removed on drop.
    Html {
        root: PathBuf,
    },
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Scim2Server { .. } => "scim2-server",
            Kind::Scimmy { .. } => "scimmy",
            Kind::Quirky { .. } => "quirky",
            Kind::Html { .. } => "html",
        }
    }

    fn base_path(&self) -> &'static str {
        match self {
            Kind::Scim2Server { .. } => "/v2",
            Kind::Scimmy { .. } => "/scim/v2",
            Kind::Quirky { .. } => "/v2",
            Kind::Html { .. } => "",
        }
    }

    fn command(&self, port: u16, token: &str) -> Command {
        match self {
            Kind::Scim2Server { bin, config } => {
                let mut cmd = Command::new(bin);
                cmd.args(["--hostname", "127.0.0.1", "--port", &port.to_string()])
                    .args(["--bearer-token", token]);
                if let Some(config) = config {
                    cmd.arg("--service-provider-config").arg(config);
                }
                cmd
            }
            Kind::Scimmy { app_dir } => {
                let mut cmd = Command::new(node_bin());
                cmd.arg("server.js")
                    .current_dir(app_dir)
                    .env("SCIM_TOKEN", token)
                    .env("PORT", port.to_string());
                cmd
            }
            Kind::Quirky {
                script,
                switches,
                db,
            } => {
                let mut cmd = Command::new(python_bin());
                cmd.arg(script)
                    .args(["--port", &port.to_string(), "--token", token])
                    .arg("--db")
                    .arg(db)
                    .args(switches);
                cmd
            }
            Kind::Html { root } => {
                let mut cmd = Command::new(python_bin());
                cmd.args([
                    "-m",
                    "http.server",
                    "--bind",
                    "127.0.0.1",
                    &port.to_string(),
                ])
                .arg("--directory")
                .arg(root);
                cmd
            }
        }
    }
}

/// Starts scim2-server 0.8.3 (installing it first if needed); base `http://127.0.0.1:P/v2`.
pub fn scim2_server() -> Result<Peer> {
    let bin = ensure_scim2_server().context("cannot install scim2-server")?;
    Peer::launch(Kind::Scim2Server { bin, config: None })
}

/// Starts scim2-server advertising (and enforcing, with 413) these bulk limits; otherwise
/// as [`scim2_server`].
pub fn scim2_server_with_bulk_limits(max_operations: u32, max_payload_size: u64) -> Result<Peer> {
    let bin = ensure_scim2_server().context("cannot install scim2-server")?;
    let config = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": true},
        "bulk": {"supported": true, "maxOperations": max_operations, "maxPayloadSize": max_payload_size},
        "filter": {"supported": true, "maxResults": 1000},
        "changePassword": {"supported": true},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "bearer_token",
            "description": "HTTP Bearer Token"
        }]
    });
    let path = logs_dir()?.join(format!(
        "scim2-server-spc-{max_operations}-{max_payload_size}-{}-{}.json",
        std::process::id(),
        NEXT_CONFIG.fetch_add(1, Ordering::Relaxed)
    ));
    fs::write(&path, config.to_string())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Peer::launch(Kind::Scim2Server {
        bin,
        config: Some(path),
    })
}

/// Numbers the configuration files and HTML roots of one test process.
static NEXT_CONFIG: AtomicU64 = AtomicU64::new(0);

/// Starts the SCIMMY app of `tests/peers/scimmy` (running `npm ci` first if needed);
/// base `http://127.0.0.1:P/scim/v2`.
pub fn scimmy() -> Result<Peer> {
    let app_dir = ensure_scimmy().context("cannot install the SCIMMY peer app")?;
    Peer::launch(Kind::Scimmy { app_dir })
}

/// Starts the quirky SCIM server of `tests/peers/quirky` (Python standard library only)
/// with these switches, such as `["--no-filter", "--patch-501"]`; base
/// `http://127.0.0.1:P/v2`. It keeps its users in its own SQLite file, so, unlike the other
/// peers, [`Peer::start_again`] keeps them.
pub fn quirky(switches: &[&str]) -> Result<Peer> {
    let script = workspace_root()
        .join("tests")
        .join("peers")
        .join("quirky")
        .join("server.py");
    if !script.is_file() {
        bail!("{} is missing", script.display());
    }
    let db = logs_dir()?.join(format!(
        "quirky-{}-{}.db",
        std::process::id(),
        NEXT_CONFIG.fetch_add(1, Ordering::Relaxed)
    ));
    Peer::launch(Kind::Quirky {
        script,
        switches: switches.iter().map(|s| (*s).to_string()).collect(),
        db,
    })
}

/// Starts Python's `http.server` (the venv's Python, as for the other Python peers) over a
/// fresh empty directory: a plain HTTP server whose every answer is HTML, never SCIM JSON
/// (GET: 404, POST/PUT/PATCH/DELETE: 501). Base `http://127.0.0.1:P`; ready once it accepts
/// connections. Its token is unused.
pub fn html_server() -> Result<Peer> {
    let root = std::env::temp_dir().join(format!(
        "scim-html-peer-{}-{}",
        std::process::id(),
        NEXT_CONFIG.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let peer = Peer::launch(Kind::Html { root: root.clone() });
    if peer.is_err() {
        let _ = fs::remove_dir(&root);
    }
    peer
}

impl Peer {
    fn launch(kind: Kind) -> Result<Peer> {
        let token = new_token();
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            let mut peer = Peer {
                base_url: format!("http://127.0.0.1:{port}{}", kind.base_path()),
                token: token.clone(),
                name: kind.name(),
                port,
                log_path: logs_dir()?.join(format!(
                    "{}-{port}-{}.log",
                    kind.name(),
                    std::process::id()
                )),
                kind: kind.clone(),
                child: None,
            };
            match peer.spawn_and_wait() {
                Ok(()) => return Ok(peer),
                // The process died during startup: most likely the port was taken meanwhile.
                Err(StartError::Exited(e)) => last_error = Some(e),
                Err(StartError::Other(e)) => return Err(e),
            }
        }
        Err(last_error
            .unwrap_or_else(|| anyhow!("no start attempt was made"))
            .context(format!(
                "{} died at startup {START_ATTEMPTS} times",
                kind.name()
            )))
    }

    /// Is the peer's process running (as far as this handle knows)?
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Kills the peer's process and waits for it. Idempotent. All its data is lost.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Errors mean the process has already exited: nothing left to do.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the peer if it runs, then starts it again on the same port with the same
    /// token, and waits until it answers. scim2-server and SCIMMY start empty (they keep
    /// their data in memory only); the quirky server keeps its SQLite file.
    pub fn start_again(&mut self) -> Result<()> {
        self.stop();
        self.spawn_and_wait().map_err(StartError::into_inner)
    }

    /// The last few KB of the peer's log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path)
    }

    /// URL of a path under the base URL, e.g. `peer.url("/Users")`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        let mut cmd = self.kind.command(self.port, &self.token);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("cannot open log {}", self.log_path.display()))?;
        writeln!(
            log,
            "==== {} starting on port {}: {cmd:?}",
            self.name, self.port
        )
        .with_context(|| format!("cannot write log {}", self.log_path.display()))?;
        let stderr = log
            .try_clone()
            .context("cannot duplicate the log file handle")?;
        cmd.stdin(Stdio::null()).stdout(log).stderr(stderr);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}: {cmd:?}", self.name))?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), StartError> {
        let probe = self.url("/ServiceProviderConfig");
        let html = matches!(self.kind, Kind::Html { .. });
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let exited = match self.child.as_mut() {
                Some(child) => child.try_wait().context("cannot poll the peer process")?,
                None => return Err(anyhow!("{} is not running", self.name).into()),
            };
            if let Some(status) = exited {
                self.child = None;
                return Err(StartError::Exited(anyhow!(
                    "{} exited during startup ({status}); log {}:\n{}",
                    self.name,
                    self.log_path.display(),
                    self.log_tail()
                )));
            }
            // The HTML server has no SCIM endpoint: it is ready once it accepts connections.
            let answer = if html {
                TcpStream::connect_timeout(
                    &SocketAddr::from(([127, 0, 0, 1], self.port)),
                    Duration::from_secs(2),
                )
                .map(|_| (200, String::new()))
                .map_err(anyhow::Error::from)
            } else {
                request(&probe, "GET", &self.token, None, Duration::from_secs(2))
            };
            let last = match answer {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => format!("HTTP {status}: {body}"),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                self.stop();
                let wanted = if html {
                    format!("accept a connection on port {}", self.port)
                } else {
                    format!("answer GET {probe} with 200")
                };
                return Err(anyhow!(
                    "{} did not {wanted} within {READY_TIMEOUT:?} (last: {last}); log {}:\n{}",
                    self.name,
                    self.log_path.display(),
                    self.log_tail()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
        if let Kind::Html { root } = &self.kind {
            // Empty unless something wrote into it; then it stays, for a look.
            let _ = fs::remove_dir(root);
        }
    }
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("log_path", &self.log_path)
            .finish_non_exhaustive()
    }
}

enum StartError {
    /// The process exited before it answered: worth retrying on another port.
    Exited(anyhow::Error),
    Other(anyhow::Error),
}

impl StartError {
    fn into_inner(self) -> anyhow::Error {
        match self {
            StartError::Exited(e) | StartError::Other(e) => e,
        }
    }
}

impl From<anyhow::Error> for StartError {
    fn from(e: anyhow::Error) -> Self {
        StartError::Other(e)
    }
}

// ---------------------------------------------------------------------------------------
// HTTP helpers

/// Plain HTTP GET with `Authorization: Bearer <token>`; returns the status (any) and the
/// body parsed as JSON (`Null` when empty).
pub fn get_json(url: &str, token: &str) -> Result<(u16, serde_json::Value)> {
    send_json("GET", url, token, None)
}

/// Any method with `Authorization: Bearer <token>` and, when given, a JSON body sent as
/// `application/scim+json`; returns the status (any) and the body parsed as JSON (`Null`
/// when empty).
pub fn send_json(
    method: &str,
    url: &str,
    token: &str,
    body: Option<&serde_json::Value>,
) -> Result<(u16, serde_json::Value)> {
    let (status, text) = request(url, method, token, body, Duration::from_secs(30))?;
    if text.trim().is_empty() {
        return Ok((status, serde_json::Value::Null));
    }
    let value = serde_json::from_str(&text).with_context(|| {
        format!("{method} {url} answered {status} with a body that is not JSON: {text}")
    })?;
    Ok((status, value))
}

fn request(
    url: &str,
    method: &str,
    token: &str,
    body: Option<&serde_json::Value>,
    timeout: Duration,
) -> Result<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(timeout))
        .build()
        .into();
    let builder = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("Authorization", format!("Bearer {token}"))
        .header("Accept", "application/scim+json, application/json");
    let sent = match body {
        Some(value) => {
            let bytes = serde_json::to_vec(value).context("cannot serialize the request body")?;
            let req = builder
                .header("Content-Type", "application/scim+json")
                .body(bytes)
                .with_context(|| format!("invalid request {method} {url}"))?;
            agent.run(req)
        }
        None => {
            let req = builder
                .body(())
                .with_context(|| format!("invalid request {method} {url}"))?;
            agent.run(req)
        }
    };
    let mut response = sent.with_context(|| format!("{method} {url} failed"))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .read_to_string()
        .with_context(|| format!("cannot read the body of {method} {url} ({status})"))?;
    Ok((status, text))
}

// ---------------------------------------------------------------------------------------
// Paths, ports, tokens, logs

/// The repository root: the parent of this crate's manifest directory, unless env
/// `SCIM_PEERS_WORKSPACE_ROOT` says otherwise.
pub fn workspace_root() -> PathBuf {
    if let Some(root) = std::env::var_os("SCIM_PEERS_WORKSPACE_ROOT") {
        return PathBuf::from(root);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `<workspace>/target/peers`: venv, locks and logs.
pub fn peers_dir() -> PathBuf {
    workspace_root().join("target").join("peers")
}

fn logs_dir() -> Result<PathBuf> {
    let dir = peers_dir().join("logs");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
    let port = listener
        .local_addr()
        .context("cannot read the bound address")?
        .port();
    Ok(port)
}

fn new_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("peer-{nanos:x}-{}-{n}", std::process::id())
}

fn log_tail(path: &Path) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    read().unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

/// The venv's Python when the peers are installed, else `python3`: the quirky server needs
/// nothing beyond the standard library.
fn python_bin() -> PathBuf {
    let venv = peers_dir().join("venv").join("bin").join("python");
    if venv.is_file() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

fn node_bin() -> String {
    std::env::var("NODE").unwrap_or_else(|_| "node".to_owned())
}

// ---------------------------------------------------------------------------------------
// Installation

/// Runs `f` while holding an exclusive lock on `<peers>/locks/<name>.lock` (released when
/// the file is closed, also if the process dies).
fn with_lock<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let dir = peers_dir().join("locks");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{name}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open lock {}", path.display()))?;
    file.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    let result = f();
    drop(file);
    result
}

/// Runs an install command with its output in `log`; fails with the log's tail.
fn run_logged(cmd: &mut Command, log: &Path) -> Result<()> {
    let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let err = out
        .try_clone()
        .context("cannot duplicate the log file handle")?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!(
            "{cmd:?} failed ({status}); log {}:\n{}",
            log.display(),
            log_tail(log)
        );
    }
    Ok(())
}

/// Path of a usable `scim2-server` executable, installing it into the venv if needed.
fn ensure_scim2_server() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("SCIM2_SERVER_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("SCIM2_SERVER_BIN={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    let venv = peers_dir().join("venv");
    let bin = venv.join("bin").join("scim2-server");
    let marker = venv.join(format!(".installed-scim2-server-{SCIM2_SERVER_VERSION}"));
    let installed = || bin.is_file() && marker.is_file();
    if installed() {
        return Ok(bin);
    }
    with_lock("scim2-server", || {
        if installed() {
            return Ok(());
        }
        let log = logs_dir()?.join("install-scim2-server.log");
        let python = venv.join("bin").join("python");
        if !python.is_file() {
            run_logged(
                Command::new("python3").arg("-m").arg("venv").arg(&venv),
                &log,
            )
            .context("cannot create the venv (is python3 with venv installed?)")?;
        }
        run_logged(
            Command::new(&python)
                .args(["-m", "pip", "install", "--disable-pip-version-check"])
                .arg(format!("scim2-server=={SCIM2_SERVER_VERSION}")),
            &log,
        )?;
        if !bin.is_file() {
            bail!("pip succeeded but {} is missing", bin.display());
        }
        fs::write(&marker, b"").with_context(|| format!("cannot write {}", marker.display()))
    })?;
    Ok(bin)
}

/// Directory of the SCIMMY app, with its `node_modules` installed from the lock file.
fn ensure_scimmy() -> Result<PathBuf> {
    let app_dir = workspace_root().join("tests").join("peers").join("scimmy");
    if !app_dir.join("server.js").is_file() {
        bail!("{} has no server.js", app_dir.display());
    }
    let lock = app_dir.join("package-lock.json");
    // A copy of the lock file node_modules was installed from: reinstall when it differs.
    let stamp = app_dir
        .join("node_modules")
        .join(".scim-peers-installed-lock.json");
    let wanted = || -> Result<Option<Vec<u8>>> {
        if lock.is_file() {
            Ok(Some(fs::read(&lock).with_context(|| {
                format!("cannot read {}", lock.display())
            })?))
        } else {
            Ok(None)
        }
    };
    let installed = |wanted: &Option<Vec<u8>>| match (fs::read(&stamp), wanted) {
        (Ok(have), Some(want)) => &have == want,
        (Ok(_), None) => true,
        (Err(_), _) => false,
    };
    if installed(&wanted()?) {
        return Ok(app_dir);
    }
    with_lock("scimmy", || {
        let want = wanted()?;
        if installed(&want) {
            return Ok(());
        }
        let log = logs_dir()?.join("install-scimmy.log");
        let npm = std::env::var("NPM").unwrap_or_else(|_| "npm".to_owned());
        let verb = if want.is_some() { "ci" } else { "install" };
        run_logged(
            Command::new(&npm)
                .arg(verb)
                .args(["--no-audit", "--no-fund"])
                .current_dir(&app_dir),
            &log,
        )
        .with_context(|| {
            format!(
                "npm {verb} failed in {} (are node and npm installed?)",
                app_dir.display()
            )
        })?;
        fs::write(&stamp, want.unwrap_or_default())
            .with_context(|| format!("cannot write {}", stamp.display()))
    })?;
    Ok(app_dir)
}
