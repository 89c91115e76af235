//! Live metrics in the Prometheus text format (issue 31, part 3).
//!
//! One process-wide registry ([`global`]) holds the metric families; the host records into
//! it at its seams (the `http-client` import, outbox delivery, the sync's workers, and
//! `serve`'s request handler), always, whether or not anything scrapes it: recording is a
//! map look-up and an atomic add. [`serve`] exposes it at `GET /metrics` for
//! `--metrics-listen`.
//!
//! Nothing secret goes into a label: a target is the SCIM origin (scheme, host, port; no
//! path, no user info), a server route is the path's template (`/Users/{id}`, never the
//! id), a status is the HTTP status or the name of a transport failure.
//!
//! Every family, its labels and its meaning are listed in `docs/metrics.md`.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::bindings::scim::provisioner::http_client::{HttpResponse, Method, TransportError};
use crate::types::{Action, PlannedAction, ProvisionOutcome, ProvisioningError, UserEvent};

/// A user's provisioning: what was done (or attempted) and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UserLabels {
    /// `created`, `adopted`, `updated`, `unchanged`, `deactivated`, `deleted`, `unlinked`
    /// or `skipped`; for a failure, the action that was attempted.
    pub action: String,
    /// `ok` or `failed`.
    pub result: String,
}

/// One request the client role sent.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The SCIM origin.
    pub target: String,
    /// The HTTP method.
    pub method: String,
    /// The HTTP status, or the transport failure (`timeout`, `cannot_connect`, `tls`,
    /// `denied`, `invalid_url`, `other`).
    pub status: String,
}

/// A SCIM origin.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    /// The SCIM origin.
    pub target: String,
}

/// Why a delivery is tried again.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    /// `rate_limited` (429), `unavailable` (503), `server_error` (other 5xx), `timeout`,
    /// `cannot_connect`, `trap` (a host-side failure) or `other`.
    pub reason: String,
}

/// One request the server role answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerRequestLabels {
    /// The HTTP method.
    pub method: String,
    /// The path's template, such as `/Users/{id}`.
    pub route: String,
    /// The HTTP status answered.
    pub status: String,
}

/// A server route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The path's template, such as `/Users/{id}`.
    pub route: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The registry and its metric families.
pub struct Metrics {
    registry: Registry,
    users: Family<UserLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    request_seconds: HistogramFamily<TargetLabels>,
    retries: Family<RetryLabels, Counter>,
    outbox_depth: Gauge,
    outbox_parked: Gauge,
    concurrency: Family<TargetLabels, Gauge>,
    server_requests: Family<ServerRequestLabels, Counter>,
    server_seconds: HistogramFamily<RouteLabels>,
    /// The base URLs whose concurrency gauge follows the adaptive rate control
    /// ([`crate::rate::current_concurrency`]) when encoded.
    adaptive: Mutex<HashSet<String>>,
}

/// Latency buckets from 1 ms to about 33 s, doubling: a loopback request and a slow
/// tenant's both land in a bucket of their own.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every family registered and nothing recorded.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("scim");
        let users = Family::<UserLabels, Counter>::default();
        registry.register(
            "users_provisioned",
            "Users provisioned by the client role, by action and result",
            users.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "client_requests",
            "Requests the client role sent, by target, method and status",
            requests.clone(),
        );
        let request_seconds: HistogramFamily<TargetLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "client_request_duration_seconds",
            "Latency of the client role's requests, by target",
            request_seconds.clone(),
        );
        let retries = Family::<RetryLabels, Counter>::default();
        registry.register(
            "client_retries",
            "Outbox deliveries that failed and were scheduled again, by reason",
            retries.clone(),
        );
        let outbox_depth = Gauge::default();
        registry.register(
            "outbox_depth",
            "Outbox events waiting for delivery (parked ones not included)",
            outbox_depth.clone(),
        );
        let outbox_parked = Gauge::default();
        registry.register(
            "outbox_parked",
            "Outbox events parked after failing for good (see `status`, `retry`)",
            outbox_parked.clone(),
        );
        let concurrency = Family::<TargetLabels, Gauge>::default();
        registry.register(
            "client_concurrency",
            "Requests the client role runs at once against a target",
            concurrency.clone(),
        );
        let server_requests = Family::<ServerRequestLabels, Counter>::default();
        registry.register(
            "server_requests",
            "Requests the server role answered, by method, route and status",
            server_requests.clone(),
        );
        let server_seconds: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "server_request_duration_seconds",
            "Time the server role took to answer, by route",
            server_seconds.clone(),
        );
        Metrics {
            registry,
            users,
            requests,
            request_seconds,
            retries,
            outbox_depth,
            outbox_parked,
            concurrency,
            server_requests,
            server_seconds,
            adaptive: Mutex::default(),
        }
    }

    /// Everything recorded, in the text format (OpenMetrics 1.0, which Prometheus reads
    /// natively; see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        // The adaptive window moves with every answer: read it now rather than at the
        // sync's start.
        let adaptive: Vec<String> = self
            .adaptive
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        for base_url in adaptive {
            if let Some(n) = crate::rate::current_concurrency(&base_url) {
                self.concurrency
                    .get_or_create(&TargetLabels {
                        target: origin_of(&base_url),
                    })
                    .set(i64::from(n));
            }
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// A request the client role sent to `url`, and what came of it.
    pub fn client_request(
        &self,
        url: &str,
        method: &Method,
        result: &Result<HttpResponse, TransportError>,
        elapsed: Duration,
    ) {
        let target = origin_of(url);
        let method = match method {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            // The guest's own choice; not passed through, so a label stays bounded.
            Method::Other(_) => "OTHER",
        };
        let status = match result {
            Ok(r) => r.status.to_string(),
            Err(e) => transport_name(e).to_string(),
        };
        let sent = !matches!(
            result,
            Err(TransportError::Denied(_) | TransportError::InvalidUrl(_))
        );
        if sent {
            self.request_seconds
                .get_or_create(&TargetLabels {
                    target: target.clone(),
                })
                .observe(elapsed.as_secs_f64());
        }
        self.requests
            .get_or_create(&RequestLabels {
                target,
                method: method.to_string(),
                status,
            })
            .inc();
    }

    /// One user's provisioning: `action` as in [`UserLabels::action`].
    pub fn user_provisioned(&self, action: &str, ok: bool) {
        self.users
            .get_or_create(&UserLabels {
                action: action.to_string(),
                result: if ok { "ok" } else { "failed" }.to_string(),
            })
            .inc();
    }

    /// A sync's result for one user, whose plan was `planned`.
    pub fn sync_result(
        &self,
        planned: PlannedAction,
        result: &anyhow::Result<Result<ProvisionOutcome, ProvisioningError>>,
    ) {
        match result {
            Ok(Ok(outcome)) => self.user_provisioned(action_label(outcome.action), true),
            _ => self.user_provisioned(planned_label(planned), false),
        }
    }

    /// An outbox event's delivery: `Ok(action)` when delivered, else the event failed and
    /// is retried (`retry_reason` given) or parked (`None`).
    pub fn delivery_result(
        &self,
        event: UserEvent,
        delivered: Option<Action>,
        retry_reason: Option<&str>,
    ) {
        match delivered {
            Some(action) => self.user_provisioned(action_label(action), true),
            None => self.user_provisioned(event_label(event), false),
        }
        if let Some(reason) = retry_reason {
            self.retries
                .get_or_create(&RetryLabels {
                    reason: reason.to_string(),
                })
                .inc();
        }
    }

    /// The outbox's waiting and parked events.
    pub fn set_outbox(&self, waiting: u64, parked: u64) {
        self.outbox_depth
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        self.outbox_parked
            .set(i64::try_from(parked).unwrap_or(i64::MAX));
    }

    /// The requests run at once against the SCIM service at `base_url`: the configured
    /// `[host] concurrency` when a sync starts; from then on, whenever the metrics are
    /// encoded, the target's adaptive window ([`crate::rate`]) once it has sent anything.
    pub fn set_concurrency(&self, base_url: &str, requests_at_once: u64) {
        self.adaptive
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(base_url.to_string());
        self.concurrency
            .get_or_create(&TargetLabels {
                target: origin_of(base_url),
            })
            .set(i64::try_from(requests_at_once).unwrap_or(i64::MAX));
    }

    /// A request the server role answered; `path` is relative to the SCIM base path.
    pub fn server_request(&self, method: &str, path: &str, status: u16, elapsed: Duration) {
        let route = route_of(path);
        let method = match method.to_ascii_uppercase().as_str() {
            m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m.to_string(),
            // Whatever a client sends; not passed through, so a label stays bounded.
            _ => "OTHER".to_string(),
        };
        self.server_seconds
            .get_or_create(&RouteLabels {
                route: route.to_string(),
            })
            .observe(elapsed.as_secs_f64());
        self.server_requests
            .get_or_create(&ServerRequestLabels {
                method,
                route: route.to_string(),
                status: status.to_string(),
            })
            .inc();
    }
}

/// The process's registry, which the host's seams record into.
pub fn global() -> &'static Metrics {
    static GLOBAL: OnceLock<Metrics> = OnceLock::new();
    GLOBAL.get_or_init(Metrics::new)
}

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The origin of `url` (`https://host:port`), or `invalid` when it does not parse. Never
/// the path or user info.
fn origin_of(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| "invalid".to_string())
}

fn transport_name(e: &TransportError) -> &'static str {
    match e {
        TransportError::Denied(_) => "denied",
        TransportError::InvalidUrl(_) => "invalid_url",
        TransportError::CannotConnect(_) => "cannot_connect",
        TransportError::Tls(_) => "tls",
        TransportError::Timeout => "timeout",
        TransportError::Other(_) => "other",
    }
}

/// The reason label of a failed delivery that will be tried again (a component trap's is
/// [`RETRY_TRAP`]).
pub fn retry_reason(error: &ProvisioningError) -> &'static str {
    let status = match error {
        ProvisioningError::Scim(s) => Some(s.status),
        ProvisioningError::UnexpectedResponse(u) => Some(u.status),
        ProvisioningError::Transport(t) => {
            return match t.error {
                TransportError::Timeout => "timeout",
                TransportError::CannotConnect(_) => "cannot_connect",
                _ => "other",
            };
        }
        _ => None,
    };
    match status {
        Some(429) => "rate_limited",
        Some(503) => "unavailable",
        Some(s) if s >= 500 => "server_error",
        _ => "other",
    }
}

/// The reason label of a delivery retried after a component trap.
pub const RETRY_TRAP: &str = "trap";

fn action_label(a: Action) -> &'static str {
    crate::describe::action_name(a)
}

/// The action a plan would have produced, for a failure's label.
fn planned_label(p: PlannedAction) -> &'static str {
    match p {
        PlannedAction::Create => "created",
        PlannedAction::Update | PlannedAction::Reactivate => "updated",
        PlannedAction::Deactivate => "deactivated",
        PlannedAction::Delete => "deleted",
        PlannedAction::Skip => "skipped",
    }
}

/// The action an outbox event asks for, for a failure's label.
fn event_label(e: UserEvent) -> &'static str {
    match e {
        UserEvent::Created => "created",
        UserEvent::Updated | UserEvent::Unblocked | UserEvent::Reconcile => "updated",
        UserEvent::Blocked => "deactivated",
        UserEvent::Deleted => "deleted",
    }
}

/// The template of a SCIM path relative to the base path: resource ids become `{id}`, and
/// a path no SCIM endpoint has becomes `other`, so that a label never carries an id or
/// whatever a client makes up.
pub fn route_of(path: &str) -> &'static str {
    let segments: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| s.split('?').next().unwrap_or_default())
        .collect();
    match segments.as_slice() {
        [] => "/",
        ["Users"] => "/Users",
        ["Users", ".search"] => "/Users/.search",
        ["Users", _] => "/Users/{id}",
        ["Groups"] => "/Groups",
        ["Groups", ".search"] => "/Groups/.search",
        ["Groups", _] => "/Groups/{id}",
        ["Me"] => "/Me",
        [".search"] => "/.search",
        ["Bulk"] => "/Bulk",
        ["ServiceProviderConfig"] => "/ServiceProviderConfig",
        ["ResourceTypes"] => "/ResourceTypes",
        ["ResourceTypes", _] => "/ResourceTypes/{id}",
        ["Schemas"] => "/Schemas",
        ["Schemas", _] => "/Schemas/{id}",
        _ => "other",
    }
}

/// The `/metrics` listener started by [`serve`]; stopped when dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL Prometheus scrapes.
    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the acceptor from `accept`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// Connections answered at once; more wait in the listen queue.
const MAX_SCRAPERS: usize = 8;
/// How long a scraper has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// Serves [`global`]'s metrics at `GET /metrics` on `listen` (such as `127.0.0.1:9464`;
/// port 0 picks a free one), each connection on a thread of its own, until the returned
/// server is dropped. Anything else is answered 404 (405 for a method other than GET or
/// HEAD). The answer carries only the counters, no secret; bind to loopback unless the
/// scraper runs elsewhere.
pub fn serve(listen: &str) -> anyhow::Result<MetricsServer> {
    let listener = TcpListener::bind(listen)
        .with_context(|| format!("cannot listen for metrics on {listen}"))?;
    let addr = listener
        .local_addr()
        .context("the metrics listener has no address")?;
    let stop = Arc::new(AtomicBool::new(false));
    let acceptor = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("scim-metrics".into())
            .spawn(move || accept(&listener, &stop))
            .context("starting the metrics listener")?
    };
    Ok(MetricsServer {
        addr,
        stop,
        acceptor: Some(acceptor),
    })
}

fn accept(listener: &TcpListener, stop: &AtomicBool) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut stream) = stream else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_SCRAPERS {
            active.fetch_sub(1, Ordering::SeqCst);
            let _ = respond(&mut stream, 503, "text/plain", b"busy\n", false);
            continue;
        }
        let active = active.clone();
        let spawned = std::thread::Builder::new()
            .name("scim-metrics-conn".into())
            .spawn(move || {
                answer(stream);
                active.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Reads one request head and answers it; the connection then closes.
fn answer(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(HEAD_TIMEOUT));
    let _ = stream.set_write_timeout(Some(HEAD_TIMEOUT));
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            let _ = respond(&mut stream, 431, "text/plain", b"head too large\n", false);
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default();
    let _ = match (method, path) {
        ("GET" | "HEAD", "/metrics") => respond(
            &mut stream,
            200,
            CONTENT_TYPE,
            global().encode().as_bytes(),
            method == "HEAD",
        ),
        (_, "/metrics") => respond(&mut stream, 405, "text/plain", b"GET only\n", false),
        _ => respond(
            &mut stream,
            404,
            "text/plain",
            b"not found: metrics are at /metrics\n",
            false,
        ),
    };
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        body.len()
    );
    if status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes())?;
    if !head_only {
        stream.write_all(body)?;
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_never_carry_ids() {
        assert_eq!(route_of("/Users"), "/Users");
        assert_eq!(route_of("/Users/2819c223-7f76"), "/Users/{id}");
        assert_eq!(route_of("/Groups/abc/"), "/Groups/{id}");
        assert_eq!(route_of("/Users/.search"), "/Users/.search");
        assert_eq!(route_of("/Schemas/urn:x"), "/Schemas/{id}");
        assert_eq!(route_of("/"), "/");
        assert_eq!(route_of("/Users/a/b"), "other");
        assert_eq!(route_of("/whatever-a-client-sends"), "other");
    }

    #[test]
    fn targets_are_origins_only() {
        assert_eq!(
            origin_of("https://user:secret@idp.example:8443/scim/v2/Users/42?x=1"),
            "https://idp.example:8443"
        );
        assert_eq!(origin_of("not a url"), "invalid");
    }

    #[test]
    fn records_and_encodes_every_family() {
        let m = Metrics::new();
        let ok: Result<HttpResponse, TransportError> = Ok(HttpResponse {
            status: 201,
            headers: Vec::new(),
            body: Vec::new(),
        });
        m.client_request(
            "http://127.0.0.1:9/scim/v2/Users",
            &Method::Post,
            &ok,
            Duration::from_millis(3),
        );
        m.client_request(
            "http://127.0.0.1:9/scim/v2/Users",
            &Method::Post,
            &Err(TransportError::Timeout),
            Duration::from_secs(1),
        );
        m.user_provisioned("created", true);
        m.delivery_result(UserEvent::Blocked, None, Some("rate_limited"));
        m.set_outbox(3, 1);
        m.set_concurrency("http://127.0.0.1:9/scim/v2", 8);
        m.server_request("get", "/Users/42", 200, Duration::from_millis(2));
        let text = m.encode();
        for line in [
            r#"scim_client_requests_total{target="http://127.0.0.1:9",method="POST",status="201"} 1"#,
            r#"scim_client_requests_total{target="http://127.0.0.1:9",method="POST",status="timeout"} 1"#,
            r#"scim_client_request_duration_seconds_count{target="http://127.0.0.1:9"} 2"#,
            r#"scim_users_provisioned_total{action="created",result="ok"} 1"#,
            r#"scim_users_provisioned_total{action="deactivated",result="failed"} 1"#,
            r#"scim_client_retries_total{reason="rate_limited"} 1"#,
            "scim_outbox_depth 3",
            "scim_outbox_parked 1",
            r#"scim_client_concurrency{target="http://127.0.0.1:9"} 8"#,
            r#"scim_server_requests_total{method="GET",route="/Users/{id}",status="200"} 1"#,
            r#"scim_server_request_duration_seconds_count{route="/Users/{id}"} 1"#,
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n---\n{text}");
        }
    }

    #[test]
    fn the_listener_serves_metrics_and_nothing_else() {
        let server = serve("127.0.0.1:0").unwrap();
        global().user_provisioned("created", true);
        let fetch = |request: &str| {
            let mut s = TcpStream::connect(server.addr()).unwrap();
            s.write_all(request.as_bytes()).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        let ok = fetch("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains(CONTENT_TYPE), "{ok}");
        assert!(ok.contains("scim_users_provisioned_total{"), "{ok}");
        assert!(ok.trim_end().ends_with("# EOF"), "{ok}");
        let other = fetch("GET /scim/v2/Users HTTP/1.1\r\n\r\n");
        assert!(other.starts_with("HTTP/1.1 404 "), "{other}");
        let post = fetch("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        drop(server);
    }
}
