//! A recording HTTP/1.1 reverse proxy: it forwards every request to a loopback upstream
//! unchanged and keeps, in arrival order, each request that carries a body (method,
//! target, body), and the method and target of every request. The many-worker outbox tests
//! read from it what the server was sent, in the order it was sent, to check per-user order
//! and duplicates; the shared reconcile's test counts the listings of the remote users.
//!
//! One request per connection: the proxy answers with `Connection: close` (the upstream's
//! own `Connection` header replaced), so a client never reuses a connection it closed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// One request the proxy forwarded that had a body.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `POST`, `PUT`, `PATCH` …
    pub method: String,
    /// Path and query.
    pub target: String,
    /// The body, as sent.
    pub body: String,
}

struct Shared {
    upstream: SocketAddr,
    stop: AtomicBool,
    recorded: Mutex<Vec<Recorded>>,
    /// Every request's method and target, bodies or not (the shared reconcile's test
    /// counts the listings, which are GETs).
    requests: Mutex<Vec<(String, String)>>,
    /// How long a request with a body waits, once the upstream has answered it, before
    /// the answer goes back (a slow server: zero unless [`RecordingProxy::start_slow`]).
    write_delay: Duration,
}

/// A running proxy; stopped on drop.
pub struct RecordingProxy {
    /// The upstream base URL with the proxy's address in place of the server's.
    pub base_url: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl RecordingProxy {
    /// Starts a proxy on a free `127.0.0.1` port in front of `upstream_base_url`
    /// (`http://127.0.0.1:PORT/base`).
    pub fn start(upstream_base_url: &str) -> Result<RecordingProxy> {
        RecordingProxy::start_slow(upstream_base_url, Duration::ZERO)
    }

    /// [`RecordingProxy::start`], answering every request with a body `write_delay` late:
    /// the upstream has applied the write, the client hears of it only then (a slow
    /// server, for the outbox's lease renewal test).
    pub fn start_slow(upstream_base_url: &str, write_delay: Duration) -> Result<RecordingProxy> {
        let rest = upstream_base_url
            .strip_prefix("http://")
            .context("the upstream must be plain http://")?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let upstream: SocketAddr = authority.parse().context("the upstream is not IP:port")?;
        if !upstream.ip().is_loopback() {
            bail!("the proxy only forwards to loopback");
        }
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            stop: AtomicBool::new(false),
            recorded: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            write_delay,
        });
        let accept = shared.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = accept.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &shared);
                });
            }
        });
        Ok(RecordingProxy {
            base_url: format!("http://{addr}{path}"),
            addr,
            shared,
            thread: Some(thread),
        })
    }

    /// Every request with a body forwarded so far, in arrival order.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.shared
            .recorded
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Every request forwarded so far, with a body or not: (method, target), in arrival
    /// order.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.shared
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads a head (request line and headers) up to the blank line.
fn read_head(reader: &mut impl BufRead) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            bail!("the connection closed mid-head");
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            return Ok(lines);
        }
        lines.push(line);
    }
}

fn serve(client: TcpStream, shared: &Shared) -> Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let head = read_head(&mut reader)?;
    let request_line = head.first().context("no request line")?.clone();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let length: usize = head
        .iter()
        .find_map(|h| {
            let (name, value) = h.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    shared
        .requests
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .push((method.clone(), target.clone()));
    if length > 0 {
        // Recorded before it is forwarded: the order the server receives them in.
        shared
            .recorded
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .push(Recorded {
                method: method.clone(),
                target: target.clone(),
                body: String::from_utf8_lossy(&body).into_owned(),
            });
    }
    let mut upstream = TcpStream::connect(shared.upstream)?;
    upstream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut out = String::new();
    out.push_str(&request_line);
    out.push_str("\r\n");
    for h in &head[1..] {
        let name = h.split(':').next().unwrap_or_default().trim();
        if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    upstream.write_all(out.as_bytes())?;
    upstream.write_all(&body)?;
    let mut answer = Vec::new();
    upstream.read_to_end(&mut answer)?;
    if length > 0 && !shared.write_delay.is_zero() {
        std::thread::sleep(shared.write_delay);
    }
    // The answer's head with `Connection: close`, then its body as it came.
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no answer head")?;
    let head_text = String::from_utf8_lossy(&answer[..split]).into_owned();
    let mut reply = String::new();
    for (i, line) in head_text.split("\r\n").enumerate() {
        let name = line.split(':').next().unwrap_or_default().trim();
        if i > 0
            && (name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive"))
        {
            continue;
        }
        reply.push_str(line);
        reply.push_str("\r\n");
    }
    reply.push_str("Connection: close\r\n\r\n");
    let mut client = client;
    client.write_all(reply.as_bytes())?;
    client.write_all(&answer[split + 4..])?;
    client.flush()?;
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}
