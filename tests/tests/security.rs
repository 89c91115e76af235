//! Issue 28, the Rust side: `serve` cannot be starved by one client (finding 4), a
//! directory's own error text never reaches a client (5), passwords are stored only as
//! hashes and never returned (6), and plain `http://` to a remote host needs consent (7).
//! Each test ran red on the code before its fix.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use host_example::logging::LogSink;
use host_example::serve::{self, ServeOptions, ServerToken};
use host_example::types::ProvisioningError;
use host_example::{ConnectorSettings, Credentials};
use scim_provisioner_tests::component::{open_err, runtime};
use scim_provisioner_tests::peers::{get_json, send_json};

/// A directory removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("scim-security-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

type Lines = Arc<Mutex<Vec<String>>>;

fn start(dir: &TempDir, token: &str, options: &ServeOptions) -> (serve::RunningServer, Lines) {
    let (log, lines) = LogSink::memory();
    let server = serve::start_with(
        runtime(),
        &dir.0.join("directory.db"),
        "127.0.0.1:0",
        &ServerToken::Plain(token.to_string()),
        "",
        log,
        options,
    )
    .expect("serve starts");
    (server, lines)
}

fn addr(server: &serve::RunningServer) -> SocketAddr {
    server
        .base_url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("the base URL names an address")
}

/// A connection to `to` from the loopback address `from` (127.0.0.x all route to `lo` on
/// Linux), so one test can play several clients.
fn connect_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let local = SocketAddr::from((from, 0));
    socket.bind(&local.into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    Ok(stream)
}

/// Reads one answer (head and `Content-Length` body) off a kept-alive connection: its
/// status and whole text; status 0 when the connection closed first.
fn read_one(stream: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let text = String::from_utf8_lossy(&buf[..end + 4 + length]).into_owned();
                let status = text
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                return (status, text);
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return (0, String::from_utf8_lossy(&buf).into_owned()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Whether the server closed the connection (EOF or reset) within `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).expect("timeout");
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

const SPC: &[u8] = b"GET /scim/v2/ServiceProviderConfig HTTP/1.1\r\nHost: x\r\n\r\n";

/// Finding 4: one client holding more connections than the per-client cap, each
/// trickling unauthenticated requests, does not lock another client out: the other's
/// authenticated GET answers 200 within 1 s.
#[test]
fn one_client_cannot_starve_serve() {
    let dir = TempDir::new("starve");
    let token = serve::generate_token();
    // A global cap small enough for the test to reach; the per-client cap is the default
    // (16).
    let options = ServeOptions {
        max_connections: 40,
        ..ServeOptions::default()
    };
    let (server, _lines) = start(&dir, &token, &options);
    let to = addr(&server);
    // The hog, from 127.0.0.2: 48 connections, each kept alive with a request every half
    // second.
    let mut hog = Vec::new();
    for _ in 0..48 {
        let Ok(mut s) = connect_from([127, 0, 0, 2], to) else {
            continue;
        };
        if s.write_all(SPC).is_ok() && read_one(&mut s).0 == 200 {
            hog.push(s);
        }
    }
    assert!(!hog.is_empty(), "the hog got no connection at all");
    let stop = Arc::new(AtomicBool::new(false));
    let trickler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                for s in &mut hog {
                    if s.write_all(SPC).is_ok() {
                        let _ = read_one(s);
                    }
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            hog.len()
        })
    };
    // The other client, from 127.0.0.1.
    let request = format!(
        "GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    );
    let mut worst = Duration::ZERO;
    for _ in 0..3 {
        let started = Instant::now();
        let mut s = connect_from([127, 0, 0, 1], to).expect("connect");
        s.write_all(request.as_bytes()).expect("write");
        let (status, text) = read_one(&mut s);
        let took = started.elapsed();
        worst = worst.max(took);
        assert_eq!(status, 200, "{text}");
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::SeqCst);
    let held = trickler.join().unwrap_or(0);
    eprintln!("the hog held {held} connections; the other client's slowest answer: {worst:?}");
    assert!(
        worst < Duration::from_secs(1),
        "the slowest answer took {worst:?}"
    );
}

/// Finding 4: a 401 or a 400 ends the connection, so an unauthenticated client cannot
/// keep a connection busy on a failed request.
#[test]
fn serve_closes_after_401_and_400() {
    let dir = TempDir::new("close");
    let token = serve::generate_token();
    let (server, _lines) = start(&dir, &token, &ServeOptions::default());
    let to = addr(&server);
    for request in [
        "GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n\r\n",
        "POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer TOKEN\r\n\
         Content-Type: application/scim+json\r\nContent-Length: 5\r\n\r\n{oops",
    ] {
        let request = request.replace("TOKEN", &token);
        let mut s = connect_from([127, 0, 0, 1], to).expect("connect");
        s.write_all(request.as_bytes()).expect("write");
        let (status, text) = read_one(&mut s);
        assert!(status == 401 || status == 400, "{text}");
        assert!(
            text.to_ascii_lowercase().contains("connection: close"),
            "{text}"
        );
        assert!(
            closed_within(&mut s, Duration::from_secs(5)),
            "the connection stayed open after {status}"
        );
    }
}

/// Finding 4: a kept-alive connection that sends nothing more is closed after the idle
/// timeout, well before the (longer) head deadline.
#[test]
fn an_idle_kept_alive_connection_is_closed_before_the_head_deadline() {
    let dir = TempDir::new("idle");
    let token = serve::generate_token();
    let options = ServeOptions {
        header_timeout: Duration::from_secs(60),
        ..ServeOptions::default()
    };
    let (server, _lines) = start(&dir, &token, &options);
    let mut s = connect_from([127, 0, 0, 1], addr(&server)).expect("connect");
    s.write_all(SPC).expect("write");
    assert_eq!(read_one(&mut s).0, 200);
    let started = Instant::now();
    assert!(
        closed_within(&mut s, Duration::from_secs(30)),
        "an idle connection was kept 30 s"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// Finding 4: a body trickled a byte at a time is cut off at the body timeout in total,
/// not at a timeout per byte.
#[test]
fn a_trickled_body_is_bounded_in_total() {
    let dir = TempDir::new("trickle");
    let token = serve::generate_token();
    let options = ServeOptions {
        body_timeout: Duration::from_secs(2),
        ..ServeOptions::default()
    };
    let (server, _lines) = start(&dir, &token, &options);
    let mut s = connect_from([127, 0, 0, 1], addr(&server)).expect("connect");
    let head = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/scim+json\r\nContent-Length: 1000\r\n\r\n"
    );
    s.write_all(head.as_bytes()).expect("write");
    let started = Instant::now();
    // A byte every 100 ms would take 100 s; the server answers 408 at about 2 s.
    while started.elapsed() < Duration::from_secs(15) {
        if s.write_all(b" ").is_err() {
            break;
        }
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let mut peek = [0u8; 1];
        match s.peek(&mut peek) {
            Ok(_) => break,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let (status, text) = read_one(&mut s);
    assert_eq!(status, 408, "{text}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Finding 5: the directory's own error text (here SQLite's, after its table was dropped
/// under it) is not in the answer; the log has it, under the reference the answer carries.
#[test]
fn directory_error_text_goes_to_the_log_not_the_client() {
    let dir = TempDir::new("internals");
    let token = serve::generate_token();
    let options = ServeOptions {
        workers: 1,
        ..ServeOptions::default()
    };
    let (server, lines) = start(&dir, &token, &options);
    let url = format!("{}/Users", server.base_url);
    assert_eq!(get_json(&url, &token).unwrap().0, 200);
    let conn = rusqlite::Connection::open(dir.0.join("directory.db")).expect("open");
    conn.execute_batch("DROP TABLE scim_resources")
        .expect("drop");
    drop(conn);
    let (status, body) = get_json(&url, &token).unwrap();
    assert!(status >= 500, "{status} {body}");
    let detail = body["detail"].as_str().unwrap_or_default().to_string();
    assert!(
        !detail.contains("no such table") && !detail.contains("scim_resources"),
        "{detail}"
    );
    let reference = detail
        .rsplit("reference ")
        .next()
        .filter(|r| r.len() == 12)
        .unwrap_or_else(|| panic!("no reference in {detail:?}"))
        .to_string();
    let log = lines.lock().unwrap().join("\n");
    assert!(
        log.lines()
            .any(|l| l.contains(&reference) && l.contains("scim_resources")),
        "{log}"
    );
}

/// Finding 6: a password sent with POST, PUT and PATCH is never returned and is in no
/// table (the SQLite file's bytes, its WAL included) and no log line; the directory keeps
/// an argon2id hash the CMS can check.
#[test]
fn passwords_are_hashed_never_stored_or_returned() {
    let dir = TempDir::new("passwords");
    let token = serve::generate_token();
    let (server, lines) = start(&dir, &token, &ServeOptions::default());
    let url = format!("{}/Users", server.base_url);
    let secrets: Vec<String> = (1..=3)
        .map(|i| format!("Clear-{i}-{}", &serve::generate_token()[..16]))
        .collect();
    let user = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "pwuser",
        "password": secrets[0],
    });
    let (status, created) = send_json("POST", &url, &token, Some(&user)).unwrap();
    assert_eq!(status, 201, "{created}");
    assert!(created.get("password").is_none(), "{created}");
    let id = created["id"].as_str().expect("an id").to_string();
    let item = format!("{url}/{id}");
    let mut replaced = user.clone();
    replaced["password"] = serde_json::json!(secrets[1]);
    let (status, answer) = send_json("PUT", &item, &token, Some(&replaced)).unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(answer.get("password").is_none(), "{answer}");
    let patch = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "password", "value": secrets[2]}],
    });
    let (status, answer) = send_json("PATCH", &item, &token, Some(&patch)).unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(answer.get("password").is_none(), "{answer}");
    for target in [
        item.clone(),
        format!("{item}?attributes=password"),
        format!("{url}?filter=userName%20eq%20%22pwuser%22"),
    ] {
        let (status, body) = get_json(&target, &token).unwrap();
        assert_eq!(status, 200);
        let text = body.to_string();
        assert!(
            !text.contains("password") && !text.contains("argon2"),
            "{text}"
        );
    }
    drop(server);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir.0).expect("dir") {
        let path = entry.expect("entry").path();
        files.push((
            path.display().to_string(),
            std::fs::read(&path).unwrap_or_default(),
        ));
    }
    let contains =
        |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    for secret in &secrets {
        for (name, bytes) in &files {
            assert!(!contains(bytes, secret), "{secret} in {name}");
        }
    }
    assert!(
        files.iter().any(|(_, b)| contains(b, "$argon2id$")),
        "no argon2id hash stored"
    );
    let log = lines.lock().unwrap().join("\n");
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "{log}");
    }
    // The CMS can check the last one set, and only that one.
    let db = dir.0.join("directory.db");
    assert_eq!(
        host_example::directory::SqliteDirectory::check_password(&db, &id, &secrets[2])
            .expect("check"),
        Some(true)
    );
    assert_eq!(
        host_example::directory::SqliteDirectory::check_password(&db, &id, &secrets[0])
            .expect("check"),
        Some(false)
    );
}

/// Finding 7: the component refuses plain `http://` to a host other than loopback unless
/// the policy sets `allow_insecure_http`, credentials or not.
#[test]
fn plain_http_to_a_remote_host_is_refused_without_consent() {
    for credentials in [Credentials::Bearer("tok-123".into()), Credentials::None] {
        let settings = ConnectorSettings {
            base_url: "http://192.0.2.1:9/scim/v2".into(),
            credentials,
            timeout_ms: 1000,
            policy_json: String::new(),
        };
        match open_err(&settings) {
            ProvisioningError::InvalidConfig(m) => {
                assert!(m.contains("allow_insecure_http"), "{m}");
                assert!(!m.contains("tok-123"), "{m}");
            }
            other => panic!("expected invalid-config, got {other:?}"),
        }
        let allowed = ConnectorSettings {
            policy_json: r#"{"allow_insecure_http": true}"#.into(),
            ..settings.clone()
        };
        assert!(
            matches!(runtime().open(&allowed), Ok(Ok(_))),
            "allow_insecure_http lets it open"
        );
    }
}
