//! A small fault-injecting HTTP/1.1 reverse proxy for the end-to-end tests: it sits
//! between the component's host and a real SCIM server (scim2-server, or our own `serve`)
//! and, at configured rates, breaks exchanges the way networks, gateways and overloaded
//! servers do:
//!
//! | fault | forwarded? | what the client sees |
//! | --- | --- | --- |
//! | [`Fault::DropBeforeForward`] | no | the connection closed without an answer |
//! | [`Fault::DropAfterForward`] | yes (the server applied it) | the connection closed without an answer |
//! | [`Fault::DelayPastTimeout`] | yes | no answer within its timeout (the answer comes later, too late) |
//! | [`Fault::TooManyRequests`] | no | `429` with `Retry-After` and a SCIM error body |
//! | [`Fault::Unavailable`] | no | `503` with a plain-text body, no `Retry-After` |
//! | [`Fault::TruncatedBody`] | yes | the server's status and headers, then half the body, then the connection closes. Every other one keeps the `Content-Length` (a short read); the others are close-delimited, so the cut body looks complete |
//! | [`Fault::HtmlErrorPage`] | yes | a gateway's `502 Bad Gateway` HTML page instead of the server's answer |
//!
//! Writes (every method but GET and HEAD) may be faulted more often than reads
//! ([`FaultConfig::write_factor`]): they are where duplicates and losses would come from.
//!
//! **Deterministic given a seed**: whether a request is faulted, and how, is a function of
//! the seed, the request (method, target, body) and how many identical requests came
//! before it, never of timing or of the order in which concurrent clients arrive. A retry
//! of a faulted request (an identical one) draws afresh, so no request fails forever.
//!
//! **Bounded**: it listens on `127.0.0.1` only, forwards only to a `127.0.0.1` upstream,
//! answers each connection once (`Connection: close`), and stops when dropped (delayed
//! answers give up at once when it stops).
//!
//! It counts requests and each injected fault: [`FaultProxy::stats`] in process, or
//! `GET /__stats` (JSON) over HTTP; that request is neither forwarded nor counted.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The largest request or response head (request line and headers) the proxy reads.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The largest body the proxy carries (the host caps response bodies at 32 MiB).
const MAX_BODY_BYTES: usize = 40 * 1024 * 1024;
/// How long the proxy waits for a client to send its request.
const CLIENT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// One kind of injected fault (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Close the connection before forwarding.
    DropBeforeForward,
    /// Forward, then close the connection without answering.
    DropAfterForward,
    /// Forward, then hold the answer past the client's timeout.
    DelayPastTimeout,
    /// Answer `429 Too Many Requests` with `Retry-After`, without forwarding.
    TooManyRequests,
    /// Answer `503 Service Unavailable`, without forwarding.
    Unavailable,
    /// Forward, then send only half of the answer's body.
    TruncatedBody,
    /// Forward, then answer a gateway's `502` HTML page instead.
    HtmlErrorPage,
}

impl Fault {
    /// Every kind, in the order rates are drawn.
    pub const ALL: [Fault; 7] = [
        Fault::DropBeforeForward,
        Fault::DropAfterForward,
        Fault::DelayPastTimeout,
        Fault::TooManyRequests,
        Fault::Unavailable,
        Fault::TruncatedBody,
        Fault::HtmlErrorPage,
    ];

    /// A short name, as in the stats.
    pub fn name(self) -> &'static str {
        match self {
            Fault::DropBeforeForward => "drop_before_forward",
            Fault::DropAfterForward => "drop_after_forward",
            Fault::DelayPastTimeout => "delay_past_timeout",
            Fault::TooManyRequests => "429_retry_after",
            Fault::Unavailable => "503",
            Fault::TruncatedBody => "truncated_body",
            Fault::HtmlErrorPage => "html_502",
        }
    }

    /// Whether the server saw (and applied) the request.
    pub fn forwards(self) -> bool {
        !matches!(
            self,
            Fault::DropBeforeForward | Fault::TooManyRequests | Fault::Unavailable
        )
    }
}

/// How a [`Fault::TruncatedBody`] cuts the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// Each way in turn, by the request's draw.
    Either,
    /// Keep the server's `Content-Length`: the client notices a short read.
    KeepLength,
    /// Close-delimited (no `Content-Length`): the cut body looks complete.
    CloseDelimited,
}

/// How the proxy misbehaves.
#[derive(Debug, Clone)]
pub struct FaultConfig {
    /// The seed every decision derives from.
    pub seed: u64,
    /// Each fault's probability per request (their sum must not exceed 1).
    pub rates: BTreeMap<Fault, f64>,
    /// Writes (every method but GET and HEAD) are faulted this many times as often: they
    /// are few (bulk requests carry many users) and they are where duplicates and losses
    /// would come from. The rates are scaled down together if they would exceed 1.
    pub write_factor: f64,
    /// How long a [`Fault::DelayPastTimeout`] answer is held, from the request's arrival:
    /// longer than the client's timeout.
    pub delay: Duration,
    /// The `Retry-After` of a [`Fault::TooManyRequests`], in seconds.
    pub retry_after_secs: u32,
    /// How truncated answers are cut.
    pub truncation: Truncation,
    /// How long the proxy waits for the upstream server's answer.
    pub upstream_timeout: Duration,
}

impl FaultConfig {
    /// No faults at all (a transparent proxy).
    pub fn none() -> FaultConfig {
        FaultConfig {
            seed: 0,
            rates: BTreeMap::new(),
            write_factor: 1.0,
            delay: Duration::from_secs(5),
            retry_after_secs: 1,
            truncation: Truncation::Either,
            upstream_timeout: Duration::from_secs(120),
        }
    }

    /// Every fault at the same rate.
    pub fn uniform(seed: u64, rate_each: f64, delay: Duration) -> FaultConfig {
        FaultConfig {
            seed,
            rates: Fault::ALL.iter().map(|f| (*f, rate_each)).collect(),
            delay,
            ..FaultConfig::none()
        }
    }

    /// Sets one fault's rate.
    pub fn with_rate(mut self, fault: Fault, rate: f64) -> FaultConfig {
        self.rates.insert(fault, rate);
        self
    }
}

/// What the proxy has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Requests received (`/__stats` not included).
    pub requests: u64,
    /// Requests passed on to the server (faulted ones included where the fault forwards).
    pub forwarded: u64,
    /// Requests the server could not be reached for or did not answer (answered 502 by
    /// the proxy itself; not an injected fault).
    pub upstream_errors: u64,
    /// Injected faults by kind (every kind present, zero included).
    pub faults: BTreeMap<Fault, u64>,
    /// Requests by method.
    pub methods: BTreeMap<String, u64>,
}

impl FaultStats {
    /// Injected faults of every kind.
    pub fn total_faults(&self) -> u64 {
        self.faults.values().sum()
    }

    /// One line: requests, forwarded, and each kind's count.
    pub fn summary(&self) -> String {
        let kinds: Vec<String> = self
            .faults
            .iter()
            .map(|(f, n)| format!("{} {n}", f.name()))
            .collect();
        format!(
            "{} requests ({} forwarded, {} upstream errors), {} faults injected: {}",
            self.requests,
            self.forwarded,
            self.upstream_errors,
            self.total_faults(),
            kinds.join(", ")
        )
    }

    /// The stats as JSON, as `GET /__stats` answers.
    pub fn to_json(&self) -> serde_json::Value {
        let faults: serde_json::Map<String, serde_json::Value> = self
            .faults
            .iter()
            .map(|(f, n)| (f.name().to_string(), (*n).into()))
            .collect();
        serde_json::json!({
            "requests": self.requests,
            "forwarded": self.forwarded,
            "upstream_errors": self.upstream_errors,
            "faults_total": self.total_faults(),
            "faults": faults,
            "methods": self.methods,
        })
    }
}

/// One injected fault, for a test's failure message.
#[derive(Debug, Clone)]
pub struct Injected {
    /// The request's number (from 0, in arrival order).
    pub request: u64,
    /// The fault.
    pub fault: Fault,
    /// The request's method and target.
    pub method: String,
    /// The request's target (path and query).
    pub target: String,
    /// The server's status, when the request was forwarded and answered.
    pub upstream_status: Option<u16>,
}

struct Shared {
    config: FaultConfig,
    upstream: SocketAddr,
    stop: AtomicBool,
    requests: AtomicU64,
    forwarded: AtomicU64,
    upstream_errors: AtomicU64,
    enabled: AtomicBool,
    /// How often each request (by its hash) was seen.
    seen: Mutex<HashMap<u64, u64>>,
    faults: Mutex<BTreeMap<Fault, u64>>,
    methods: Mutex<BTreeMap<String, u64>>,
    injected: Mutex<Vec<Injected>>,
}

impl Shared {
    /// A proxy's state before its first request: enabled, every count at zero.
    fn new(config: FaultConfig, upstream: SocketAddr) -> Shared {
        Shared {
            config,
            upstream,
            stop: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            upstream_errors: AtomicU64::new(0),
            enabled: AtomicBool::new(true),
            seen: Mutex::new(HashMap::new()),
            faults: Mutex::new(Fault::ALL.iter().map(|f| (*f, 0)).collect()),
            methods: Mutex::new(BTreeMap::new()),
            injected: Mutex::new(Vec::new()),
        }
    }
}

/// A running proxy; stopped on drop.
pub struct FaultProxy {
    /// The upstream base URL with the proxy's address in place of the server's.
    pub base_url: String,
    /// Where the proxy listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1` (a free port) in front of `upstream_base_url`
    /// (`http://127.0.0.1:PORT/base`).
    pub fn start(upstream_base_url: &str, config: FaultConfig) -> Result<FaultProxy> {
        let total: f64 = config.rates.values().sum();
        if !(0.0..=1.0).contains(&total) || config.rates.values().any(|r| *r < 0.0) {
            bail!("fault rates must be non-negative and sum to at most 1 (got {total})");
        }
        if config.write_factor.is_nan() || config.write_factor < 0.0 {
            bail!("the write factor must be non-negative");
        }
        let rest = upstream_base_url
            .strip_prefix("http://")
            .context("the upstream must be plain http://")?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let upstream: SocketAddr = authority
            .parse()
            .with_context(|| format!("the upstream {authority:?} is not IP:port"))?;
        if !upstream.ip().is_loopback() {
            bail!("the proxy only forwards to loopback, not {upstream}");
        }
        let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
        let addr = listener.local_addr().context("no local address")?;
        let shared = Arc::new(Shared::new(config, upstream));
        let accept_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || accept_loop(&listener, &accept_shared))
            .context("cannot start the proxy thread")?;
        Ok(FaultProxy {
            base_url: format!("http://{addr}{path}"),
            addr,
            shared,
            thread: Some(thread),
        })
    }

    /// What the proxy has done so far.
    pub fn stats(&self) -> FaultStats {
        let s = &self.shared;
        FaultStats {
            requests: s.requests.load(Ordering::SeqCst),
            forwarded: s.forwarded.load(Ordering::SeqCst),
            upstream_errors: s.upstream_errors.load(Ordering::SeqCst),
            faults: lock(&s.faults).clone(),
            methods: lock(&s.methods).clone(),
        }
    }

    /// Every fault injected so far, in the order they were decided.
    pub fn injected(&self) -> Vec<Injected> {
        lock(&self.shared.injected).clone()
    }

    /// Turns fault injection on or off (off: a transparent proxy; requests still count).
    pub fn set_enabled(&self, enabled: bool) {
        self.shared.enabled.store(enabled, Ordering::SeqCst);
    }

    /// Stops accepting, and makes held answers give up. Idempotent.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let shared = shared.clone();
        // Each connection carries one exchange; its thread ends with it.
        let _ = std::thread::Builder::new()
            .name("fault-proxy-conn".into())
            .spawn(move || {
                let _ = serve_connection(stream, &shared);
            });
    }
}

/// A parsed HTTP/1.1 message head.
struct Head {
    /// The start line (request line or status line), without CRLF.
    start: String,
    /// Header fields in order.
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> Result<Option<usize>> {
        self.header("content-length")
            .map(|v| v.trim().parse::<usize>().context("bad Content-Length"))
            .transpose()
    }

    fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }
}

fn read_head(reader: &mut impl BufRead) -> Result<Option<Head>> {
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let mut line = String::new();
        let n = reader
            .read_line(&mut line)
            .context("cannot read the head")?;
        if n == 0 {
            if lines.is_empty() {
                return Ok(None);
            }
            bail!("the connection closed inside the head");
        }
        total += n;
        if total > MAX_HEAD_BYTES {
            bail!("the head is too large");
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            if lines.is_empty() {
                continue; // stray CRLF between messages
            }
            break;
        }
        lines.push(line);
    }
    let start = lines.remove(0);
    let headers = lines
        .into_iter()
        .filter_map(|l| {
            l.split_once(':')
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    Ok(Some(Head { start, headers }))
}

/// Reads a body framed by `Content-Length`, chunked coding, or (`until_eof`) the end of
/// the connection.
fn read_body(reader: &mut impl BufRead, head: &Head, until_eof: bool) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    if head.is_chunked() {
        loop {
            let mut size_line = String::new();
            reader
                .read_line(&mut size_line)
                .context("cannot read a chunk size")?;
            let size_text = size_line.trim().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size_text, 16)
                .with_context(|| format!("bad chunk size {size_line:?}"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                return Ok(body);
            }
            if body.len() + size > MAX_BODY_BYTES {
                bail!("the body is too large");
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
        }
    }
    if let Some(len) = head.content_length()? {
        if len > MAX_BODY_BYTES {
            bail!("the body is too large");
        }
        body.resize(len, 0);
        reader.read_exact(&mut body).context("the body is short")?;
        return Ok(body);
    }
    if until_eof {
        reader
            .take(MAX_BODY_BYTES as u64)
            .read_to_end(&mut body)
            .context("cannot read the body")?;
    }
    Ok(body)
}

/// Hop-by-hop and framing headers the proxy sets itself.
fn is_hop_header(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "content-length",
        "te",
        "trailer",
        "upgrade",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// A response as the server gave it.
struct Upstream {
    status: u16,
    head: Head,
    body: Vec<u8>,
}

fn forward(shared: &Shared, request: &Head, body: &[u8]) -> Result<Upstream> {
    let timeout = shared.config.upstream_timeout;
    let mut stream = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(5))
        .with_context(|| format!("cannot connect to {}", shared.upstream))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut out = Vec::with_capacity(512 + body.len());
    out.extend_from_slice(request.start.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &request.headers {
        if !is_hop_header(name) {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
    }
    let method = request.start.split(' ').next().unwrap_or_default();
    if !body.is_empty() || !matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(body);
    stream
        .write_all(&out)
        .context("cannot send to the server")?;
    let mut reader = BufReader::new(stream);
    let head = read_head(&mut reader)?.context("the server closed without an answer")?;
    let status: u16 = head
        .start
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {:?}", head.start))?;
    let bodiless = method == "HEAD" || status == 204 || status == 304 || status < 200;
    let body = if bodiless {
        Vec::new()
    } else {
        read_body(&mut reader, &head, true)?
    };
    Ok(Upstream { status, head, body })
}

/// Writes a response head (without the framing headers, which are added here) and body.
fn respond(
    client: &mut TcpStream,
    status_line: &str,
    headers: &[(String, String)],
    body: &[u8],
    content_length: bool,
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(512 + body.len());
    out.extend_from_slice(status_line.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if !is_hop_header(name) {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
    }
    if content_length {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(body);
    client.write_all(&out)?;
    client.flush()
}

fn respond_upstream(client: &mut TcpStream, up: &Upstream) -> std::io::Result<()> {
    respond(client, &up.head.start, &up.head.headers, &up.body, true)
}

fn respond_simple(
    client: &mut TcpStream,
    status: &str,
    content_type: &str,
    extra: &[(&str, String)],
    body: &str,
) -> std::io::Result<()> {
    let mut headers = vec![("Content-Type".to_string(), content_type.to_string())];
    headers.extend(extra.iter().map(|(n, v)| ((*n).to_string(), v.clone())));
    respond(
        client,
        &format!("HTTP/1.1 {status}"),
        &headers,
        body.as_bytes(),
        true,
    )
}

const HTML_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

fn serve_connection(mut client: TcpStream, shared: &Shared) -> Result<()> {
    let arrived = Instant::now();
    client.set_read_timeout(Some(CLIENT_READ_TIMEOUT))?;
    client.set_write_timeout(Some(CLIENT_READ_TIMEOUT))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let Some(request) = read_head(&mut reader)? else {
        return Ok(());
    };
    let body = read_body(&mut reader, &request, false)?;
    let mut parts = request.start.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();

    if method == "GET" && target == "/__stats" {
        let stats = FaultProxy::stats_of(shared);
        respond_simple(
            &mut client,
            "200 OK",
            "application/json",
            &[],
            &stats.to_json().to_string(),
        )?;
        return Ok(());
    }

    let number = shared.requests.fetch_add(1, Ordering::SeqCst);
    *lock(&shared.methods).entry(method.clone()).or_default() += 1;
    let (fault, draw) = decide(shared, &method, &target, &body);
    if let Some(f) = fault {
        *lock(&shared.faults).entry(f).or_default() += 1;
    }
    let record = |status: Option<u16>| {
        if let Some(fault) = fault {
            lock(&shared.injected).push(Injected {
                request: number,
                fault,
                method: method.clone(),
                target: target.clone(),
                upstream_status: status,
            });
        }
    };

    match fault {
        Some(Fault::DropBeforeForward) => {
            record(None);
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
        Some(Fault::TooManyRequests) => {
            record(None);
            let secs = shared.config.retry_after_secs;
            respond_simple(
                &mut client,
                "429 Too Many Requests",
                "application/scim+json",
                &[("Retry-After", secs.to_string())],
                &serde_json::json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                    "status": "429",
                    "detail": "Rate limit exceeded, retry later"
                })
                .to_string(),
            )?;
            return Ok(());
        }
        Some(Fault::Unavailable) => {
            record(None);
            respond_simple(
                &mut client,
                "503 Service Unavailable",
                "text/plain",
                &[],
                "Service Unavailable: the server is overloaded, try again later\n",
            )?;
            return Ok(());
        }
        _ => {}
    }

    shared.forwarded.fetch_add(1, Ordering::SeqCst);
    let upstream = match forward(shared, &request, &body) {
        Ok(u) => u,
        Err(e) => {
            record(None);
            shared.upstream_errors.fetch_add(1, Ordering::SeqCst);
            respond_simple(
                &mut client,
                "502 Bad Gateway",
                "text/plain",
                &[],
                &format!("fault proxy: upstream failed: {e:#}\n"),
            )?;
            return Ok(());
        }
    };
    record(Some(upstream.status));

    match fault {
        None => respond_upstream(&mut client, &upstream)?,
        Some(Fault::DropAfterForward) => {
            let _ = client.shutdown(Shutdown::Both);
        }
        Some(Fault::DelayPastTimeout) => {
            // Hold the answer until well past the client's timeout, then try to send it
            // (the client has given up by then).
            while arrived.elapsed() < shared.config.delay && !shared.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = respond_upstream(&mut client, &upstream);
        }
        Some(Fault::TruncatedBody) => {
            if upstream.body.is_empty() {
                // Nothing to cut but the head: send half of it.
                let head = format!("{}\r\nConnection: close\r\n", upstream.head.start);
                let _ = client.write_all(&head.as_bytes()[..head.len() / 2]);
                let _ = client.shutdown(Shutdown::Both);
                return Ok(());
            }
            let half = &upstream.body[..upstream.body.len() / 2];
            // Half keep the server's length (the client notices a short read); half are
            // close-delimited, so the cut body looks complete.
            let keep_length = match shared.config.truncation {
                Truncation::Either => draw & 1 == 0,
                Truncation::KeepLength => true,
                Truncation::CloseDelimited => false,
            };
            let mut out = Vec::new();
            out.extend_from_slice(upstream.head.start.as_bytes());
            out.extend_from_slice(b"\r\n");
            for (name, value) in &upstream.head.headers {
                if !is_hop_header(name) {
                    out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
                }
            }
            if keep_length {
                out.extend_from_slice(
                    format!("Content-Length: {}\r\n", upstream.body.len()).as_bytes(),
                );
            }
            out.extend_from_slice(b"Connection: close\r\n\r\n");
            out.extend_from_slice(half);
            let _ = client.write_all(&out);
            let _ = client.flush();
            let _ = client.shutdown(Shutdown::Both);
        }
        Some(Fault::HtmlErrorPage) => {
            respond_simple(
                &mut client,
                "502 Bad Gateway",
                "text/html",
                &[("Server", "nginx".to_string())],
                HTML_502,
            )?;
        }
        Some(Fault::DropBeforeForward | Fault::TooManyRequests | Fault::Unavailable) => {
            unreachable!("answered before forwarding")
        }
    }
    Ok(())
}

impl FaultProxy {
    fn stats_of(shared: &Shared) -> FaultStats {
        FaultStats {
            requests: shared.requests.load(Ordering::SeqCst),
            forwarded: shared.forwarded.load(Ordering::SeqCst),
            upstream_errors: shared.upstream_errors.load(Ordering::SeqCst),
            faults: lock(&shared.faults).clone(),
            methods: lock(&shared.methods).clone(),
        }
    }
}

/// Whether (and how) to fault this request: a function of the seed, the request and how
/// many identical requests came before it. Also returns the draw, for sub-variants.
fn decide(shared: &Shared, method: &str, target: &str, body: &[u8]) -> (Option<Fault>, u64) {
    let mut key = fnv1a(FNV_OFFSET, &shared.config.seed.to_le_bytes());
    key = fnv1a(key, method.as_bytes());
    key = fnv1a(key, b" ");
    key = fnv1a(key, target.as_bytes());
    key = fnv1a(key, b"\n");
    key = fnv1a(key, body);
    let occurrence = {
        let mut seen = lock(&shared.seen);
        let n = seen.entry(key).or_default();
        *n += 1;
        *n
    };
    let draw = splitmix64(key ^ occurrence.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    if !shared.enabled.load(Ordering::SeqCst) {
        return (None, draw);
    }
    let rates = &shared.config.rates;
    let mut factor = if matches!(method, "GET" | "HEAD") {
        1.0
    } else {
        shared.config.write_factor
    };
    let total: f64 = rates.values().sum();
    if total * factor > 1.0 {
        factor = 1.0 / total;
    }
    // The top 53 bits as a uniform number in [0, 1).
    let u = (draw >> 11) as f64 / (1u64 << 53) as f64;
    let mut cumulative = 0.0;
    for fault in Fault::ALL {
        cumulative += rates.get(&fault).copied().unwrap_or(0.0) * factor;
        if u < cumulative {
            return (Some(fault), splitmix64(draw));
        }
    }
    (None, draw)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny upstream on loopback answering every request `200` with a JSON body that
    /// names the request; counts what it received.
    fn upstream() -> (String, Arc<AtomicU64>, Arc<AtomicBool>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (count.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let Ok(Some(head)) = read_head(&mut reader) else {
                    continue;
                };
                let _ = read_body(&mut reader, &head, false);
                c.fetch_add(1, Ordering::SeqCst);
                let body = format!(
                    "{{\"seen\":\"{}\",\"pad\":\"xxxxxxxxxxxxxxxx\"}}",
                    head.start
                );
                let _ = respond(
                    &mut stream,
                    "HTTP/1.1 200 OK",
                    &[("Content-Type".into(), "application/json".into())],
                    body.as_bytes(),
                    true,
                );
            }
        });
        (format!("http://{addr}/v2"), count, stop)
    }

    fn get(url: &str, timeout: Duration) -> std::result::Result<(u16, String), String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(timeout))
            .build()
            .into();
        let mut resp = agent.get(url).call().map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        Ok((status, text))
    }

    #[test]
    fn passes_requests_through_and_counts_them() {
        let (up, count, _stop) = upstream();
        let proxy = FaultProxy::start(&up, FaultConfig::none()).unwrap();
        assert!(proxy.base_url.ends_with("/v2"), "{}", proxy.base_url);
        let (status, body) = get(
            &format!("{}/Users?x=1", proxy.base_url),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(status, 200);
        assert!(body.contains("GET /v2/Users?x=1 HTTP/1.1"), "{body}");
        assert_eq!(count.load(Ordering::SeqCst), 1);
        let stats = proxy.stats();
        assert_eq!(
            (stats.requests, stats.forwarded, stats.total_faults()),
            (1, 1, 0)
        );
        let (status, json) = get(
            &format!("http://{}/__stats", proxy.addr),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(status, 200);
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(json["requests"], 1);
        assert_eq!(json["faults"]["503"], 0);
    }

    /// Each kind alone at rate 1: what the client sees, and whether the server saw it.
    #[test]
    fn each_fault_does_what_it_says() {
        let (up, count, _stop) = upstream();
        for fault in Fault::ALL {
            let before = count.load(Ordering::SeqCst);
            let config = FaultConfig {
                delay: Duration::from_millis(600),
                ..FaultConfig::none()
            }
            .with_rate(fault, 1.0);
            let proxy = FaultProxy::start(&up, config).unwrap();
            let got = get(
                &format!("{}/Users", proxy.base_url),
                Duration::from_millis(300),
            );
            match fault {
                Fault::DropBeforeForward | Fault::DropAfterForward | Fault::DelayPastTimeout => {
                    assert!(got.is_err(), "{fault:?}: {got:?}")
                }
                Fault::TooManyRequests => assert_eq!(got.unwrap().0, 429),
                Fault::Unavailable => assert_eq!(got.unwrap().0, 503),
                Fault::HtmlErrorPage => {
                    let (status, body) = got.unwrap();
                    assert_eq!(status, 502);
                    assert!(body.contains("<h1>502 Bad Gateway</h1>"), "{body}");
                }
                Fault::TruncatedBody => match got {
                    Err(_) => {}
                    Ok((status, body)) => {
                        assert_eq!(status, 200);
                        assert!(serde_json::from_str::<serde_json::Value>(&body).is_err());
                    }
                },
            }
            // The forwarded ones reach the server (wait for it: the proxy forwards on its
            // own thread).
            let expected = before + u64::from(fault.forwards());
            let deadline = Instant::now() + Duration::from_secs(5);
            while count.load(Ordering::SeqCst) < expected && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(count.load(Ordering::SeqCst), expected, "{fault:?}");
            assert_eq!(proxy.stats().faults[&fault], 1, "{fault:?}");
            assert_eq!(proxy.injected().len(), 1);
        }
    }

    #[test]
    fn writes_are_faulted_more_often_by_the_write_factor() {
        let config = FaultConfig {
            write_factor: 4.0,
            ..FaultConfig::uniform(1, 0.01, Duration::from_secs(1))
        };
        let shared = shared_for_tests(config);
        let count = |method: &str| {
            (0..5000)
                .filter(|i| {
                    decide(&shared, method, &format!("/Users/{i}"), b"{}")
                        .0
                        .is_some()
                })
                .count()
        };
        let (reads, writes) = (count("GET"), count("PATCH"));
        assert!((250..450).contains(&reads), "{reads} of 5000 reads faulted");
        assert!(
            (1200..1600).contains(&writes),
            "{writes} of 5000 writes faulted"
        );
    }

    fn shared_for_tests(config: FaultConfig) -> Shared {
        Shared::new(config, "127.0.0.1:9".parse().unwrap())
    }

    #[test]
    fn decisions_depend_on_the_seed_and_the_request_only() {
        let config = FaultConfig::uniform(42, 0.05, Duration::from_secs(1));
        let run = |order: &[usize]| {
            let shared = shared_for_tests(config.clone());
            let mut out = BTreeMap::new();
            for i in order {
                // Each request three times: identical retries draw afresh.
                let target = format!("/Users/{}", i % 300);
                let n = out.len();
                out.insert((i % 300, n / 300), decide(&shared, "GET", &target, b"").0);
            }
            out
        };
        let forward: Vec<usize> = (0..900).collect();
        let backward: Vec<usize> = (0..900).rev().collect();
        let a = run(&forward);
        assert_eq!(a, run(&forward), "the same seed decides the same");
        let b = run(&backward);
        let faults = |m: &BTreeMap<_, Option<Fault>>| m.values().flatten().count();
        assert_eq!(
            faults(&a),
            faults(&b),
            "arrival order does not change the decisions"
        );
        // About 35 % of 900 requests are faulted.
        let n = faults(&a);
        assert!((230..400).contains(&n), "{n} faults");
    }
}
