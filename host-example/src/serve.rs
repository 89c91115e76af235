//! `serve`: the component's server role over HTTP, from a SQLite directory. This is the
//! seed's Joomla side: it prints its SCIM base URL and bearer token at start, as the SCIM
//! Configuration tab shows them.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::describe::describe_error;
use crate::directory::SqliteDirectory;
use crate::logging::{Level, LogSink};
use crate::runtime::Runtime;
use crate::types::{ServerConfig, ServerRequest};

/// The path the SCIM API is served under.
pub const BASE_PATH: &str = "/scim/v2";

/// A running server; stopped (and joined) on drop.
pub struct RunningServer {
    /// The SCIM base URL, such as `http://127.0.0.1:8080/scim/v2`.
    pub base_url: String,
    /// The bearer token clients must present.
    pub token: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// Stops serving and waits for the thread.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Serves until the process is stopped.
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A random-enough token: 32 hex digits from the clock, the process and a counter, hashed.
pub fn generate_token() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = format!("{t}:{}:{:p}", std::process::id(), &t);
    let a = crate::ids::fnv1a(seed.as_bytes());
    let b = crate::ids::fnv1a(format!("{seed}:{a}").as_bytes());
    format!("{a:016x}{b:016x}")
}

/// Starts serving the directory in `database` on `listen` (`127.0.0.1:0` picks a port).
/// `policy_json`'s mapping, reversed, turns SCIM users into the CMS users kept beside them.
pub fn start(
    runtime: &Runtime,
    database: &Path,
    listen: &str,
    token: &str,
    policy_json: &str,
    log: LogSink,
) -> anyhow::Result<RunningServer> {
    let server = tiny_http::Server::http(listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = server
        .server_addr()
        .to_ip()
        .context("the server is not on an IP address")?;
    let base_url = format!("http://{addr}{BASE_PATH}");
    let config = ServerConfig {
        base_url: base_url.clone(),
        bearer_token: token.to_string(),
        max_results: 200,
        bulk_max_operations: 100,
        bulk_max_payload: 1024 * 1024,
        policy_json: policy_json.to_string(),
    };
    let directory = SqliteDirectory::open(database)?;
    // The component's log lines and the host's own report of a trap go to the same sink.
    let host_log = log.clone();
    let mut session = match runtime.open_server(&config, Box::new(directory), log)? {
        Ok(s) => s,
        Err(e) => bail!("{}", describe_error(&e)),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = stop.clone();
    let max_body = config.bulk_max_payload;
    let thread = std::thread::spawn(move || {
        while !stop_flag.load(Ordering::SeqCst) {
            let mut request = match server.recv_timeout(Duration::from_millis(100)) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(_) => break,
            };
            let (path, query) = match request.url().split_once('?') {
                Some((p, q)) => (p.to_string(), q.to_string()),
                None => (request.url().to_string(), String::new()),
            };
            let Some(relative) = path.strip_prefix(BASE_PATH) else {
                let _ = request
                    .respond(tiny_http::Response::from_string("not found").with_status_code(404));
                continue;
            };
            let relative = if relative.is_empty() {
                "/".to_string()
            } else {
                relative.to_string()
            };
            let mut body = Vec::new();
            // One byte more than allowed lets the component answer 413 itself.
            let _ = request
                .as_reader()
                .take(max_body.saturating_add(1))
                .read_to_end(&mut body);
            let headers = request
                .headers()
                .iter()
                .map(|h| {
                    (
                        h.field.as_str().as_str().to_string(),
                        h.value.as_str().to_string(),
                    )
                })
                .collect();
            let answer = session.handle(&ServerRequest {
                method: request.method().as_str().to_string(),
                path: relative,
                query,
                headers,
                body,
            });
            let response = match answer {
                Ok(a) => {
                    let mut r = tiny_http::Response::from_data(a.body).with_status_code(a.status);
                    for (k, v) in a.headers {
                        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
                            r.add_header(h);
                        }
                    }
                    r
                }
                Err(trap) => {
                    host_log.write(Level::Error, &format!("serve: component trap: {trap:#}"));
                    tiny_http::Response::from_string(
                        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"500","detail":"internal error"}"#,
                    )
                    .with_status_code(500)
                }
            };
            let _ = request.respond(response);
        }
    });
    Ok(RunningServer {
        base_url,
        token: token.to_string(),
        stop,
        thread: Some(thread),
    })
}
