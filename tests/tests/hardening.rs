//! Issue 12, host side: the guest runs under limits and a trapped instance is replaced,
//! `serve` answers concurrently and survives slow and hostile clients, and its token can
//! be kept as a hash.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use host_example::logging::LogSink;
use host_example::serve::{self, ServeOptions, ServerToken};
use host_example::types::{CmsUser, FieldValue};
use host_example::{ConnectorSettings, Credentials, GuestLimits, Runtime};
use scim_provisioner_tests::component::runtime;
use scim_provisioner_tests::peers::{get_json, send_json};
use scim_provisioner_tests::serve_banner::{ServeBanner, read_serve_banner};

/// A directory removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("scim-hardening-{name}-{}", std::process::id()));
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

/// A runtime whose instances may hold at most `mb` MiB.
fn capped(mb: usize) -> Runtime {
    runtime().clone().with_limits(GuestLimits {
        memory_limit_bytes: mb << 20,
        ..GuestLimits::default()
    })
}

fn start(
    runtime: &Runtime,
    dir: &TempDir,
    token: &ServerToken,
    options: &ServeOptions,
) -> (
    serve::RunningServer,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let (log, lines) = LogSink::memory();
    let server = serve::start_with(
        runtime,
        &dir.0.join("directory.db"),
        "127.0.0.1:0",
        token,
        "",
        log,
        options,
    )
    .expect("serve starts");
    (server, lines)
}

/// Our `serve` over `dir`'s directory, and the settings a client connects to it with.
fn serve_for_a_client(dir: &TempDir, timeout_ms: u32) -> (serve::RunningServer, ConnectorSettings) {
    let token = serve::generate_token();
    let (server, _lines) = start(
        runtime(),
        dir,
        &ServerToken::Plain(token.clone()),
        &ServeOptions::default(),
    );
    let settings = ConnectorSettings {
        base_url: server.base_url.clone(),
        credentials: Credentials::Bearer(token),
        timeout_ms,
        policy_json: String::new(),
    };
    (server, settings)
}

fn addr(server: &serve::RunningServer) -> String {
    server
        .base_url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Sends raw bytes on a fresh connection and reads the answer until the server closes
/// it; returns the status and the whole answer as text.
fn raw(addr: &str, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    stream.write_all(request).expect("write");
    read_answer(&mut stream)
}

fn read_answer(stream: &mut TcpStream) -> (u16, String) {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    (status_of(&text), text)
}

/// The status code of an answer's status line; 0 when there is none.
fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn user(name: &str) -> serde_json::Value {
    serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "emails": [{"value": format!("{name}@example.com"), "primary": true}],
    })
}

/// A request that traps the instance (a body larger than the memory cap) is answered 500;
/// the next request on the same worker is served by a fresh instance.
#[test]
fn serve_recovers_from_a_trap() {
    let dir = TempDir::new("trap");
    let token = serve::generate_token();
    let options = ServeOptions {
        workers: 1,
        max_body_bytes: 64 << 20,
        ..ServeOptions::default()
    };
    let (server, lines) = start(
        &capped(32),
        &dir,
        &ServerToken::Plain(token.clone()),
        &options,
    );
    let url = format!("{}/Users", server.base_url);
    let (status, _) = send_json("POST", &url, &token, Some(&user("before"))).unwrap();
    assert_eq!(status, 201);

    let body = vec![b' '; 40 << 20];
    let mut request = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/scim+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let (status, text) = raw(&addr(&server), &request);
    assert_eq!(status, 500, "{}", &text[..text.len().min(400)]);
    assert!(text.contains("urn:ietf:params:scim:api:messages:2.0:Error"));

    let (status, _) = send_json("POST", &url, &token, Some(&user("after"))).unwrap();
    assert_eq!(status, 201, "a fresh instance serves the next request");
    let (status, list) = get_json(&url, &token).unwrap();
    assert_eq!(status, 200);
    assert_eq!(list["totalResults"], 2);
    let log = lines.lock().unwrap().join("\n");
    assert!(log.contains("memory limit exceeded"), "{log}");
    assert!(log.contains("a fresh one serves the next request"), "{log}");
}

/// A client that sends half a request head, and one that sends half a body, do not hold
/// up anyone else; each is answered 408 with a log line of its own.
#[test]
fn slow_clients_do_not_block_others() {
    let dir = TempDir::new("slow");
    let token = serve::generate_token();
    let options = ServeOptions {
        workers: 1,
        // Long enough that the quick requests below are done well before, even on a busy
        // machine; the answers to the slow clients are then waited for, not slept on.
        header_timeout: Duration::from_secs(5),
        body_timeout: Duration::from_secs(5),
        ..ServeOptions::default()
    };
    let (server, lines) = start(
        runtime(),
        &dir,
        &ServerToken::Plain(token.clone()),
        &options,
    );
    let addr = addr(&server);

    let mut slow_head = TcpStream::connect(&addr).unwrap();
    slow_head
        .write_all(b"GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut slow_body = TcpStream::connect(&addr).unwrap();
    slow_body
        .write_all(
            format!(
                "POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/scim+json\r\nContent-Length: 100\r\n\r\n{{\"userName\""
            )
            .as_bytes(),
        )
        .unwrap();

    // Others are served meanwhile, by the only worker.
    for i in 0..5 {
        let (status, _) = send_json(
            "POST",
            &format!("{}/Users", server.base_url),
            &token,
            Some(&user(&format!("quick{i}"))),
        )
        .unwrap();
        assert_eq!(status, 201);
    }
    // The slow ones are still waiting for their answers.
    for stream in [&slow_head, &slow_body] {
        stream.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let pending = matches!((&*stream).read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        assert!(pending, "a slow client was answered before its timeout");
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
    }
    let (status, head_answer) = read_answer(&mut slow_head);
    assert_eq!(status, 408, "{head_answer}");
    assert!(head_answer.contains("request head"), "{head_answer}");
    let (status, body_answer) = read_answer(&mut slow_body);
    assert_eq!(status, 408, "{body_answer}");
    assert!(body_answer.contains("request body"), "{body_answer}");
    let log = lines.lock().unwrap().join("\n");
    assert!(
        log.contains("serve: slow client: no complete request head"),
        "{log}"
    );
    assert!(log.contains("serve: slow body: 11 of 100 bytes"), "{log}");
}

/// Reads one answer from a kept-alive connection: the head, then `Content-Length` bytes.
fn read_kept_alive_answer(stream: &mut TcpStream) -> (u16, String) {
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    while !bytes.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).expect("read the head"),
            1,
            "closed mid-head"
        );
        bytes.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&bytes).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("read the body");
    (
        status_of(&head),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// One client's requests on one kept-alive connection, the way an identity provider sends
/// them one after another: the next at once, after a pause, in pieces, and with the body
/// apart from its head. The connection's thread polls briefly for the client's bytes before
/// it sleeps in a blocking read (while fewer connections than cores are open, as here);
/// every request is answered either way, and a client that closes while it polls ends the
/// connection quietly.
#[test]
fn a_kept_alive_connection_answers_each_next_request_however_it_comes() {
    let dir = TempDir::new("keepalive");
    let token = serve::generate_token();
    let (server, lines) = start(
        runtime(),
        &dir,
        &ServerToken::Plain(token.clone()),
        &ServeOptions::default(),
    );
    let mut stream = TcpStream::connect(addr(&server)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let post = |name: &str| {
        let body = user(name).to_string();
        format!(
            "POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/scim+json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let get = format!(
        "GET /scim/v2/Users?count=0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    );

    // The next request straight after the answer: caught while the thread polls.
    for i in 0..20 {
        stream
            .write_all(post(&format!("at-once{i}")).as_bytes())
            .unwrap();
        let (status, body) = read_kept_alive_answer(&mut stream);
        assert_eq!(status, 201, "{body}");
    }
    // After a pause longer than any poll: the blocking read takes it.
    std::thread::sleep(Duration::from_millis(50));
    stream.write_all(get.as_bytes()).unwrap();
    let (status, body) = read_kept_alive_answer(&mut stream);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"totalResults\":20"), "{body}");
    // In pieces: part of the head, then the rest.
    let request = post("in-pieces");
    let (first, rest) = request.split_at(20);
    stream.write_all(first.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    stream.write_all(rest.as_bytes()).unwrap();
    let (status, body) = read_kept_alive_answer(&mut stream);
    assert_eq!(status, 201, "{body}");
    // The body as a segment of its own after its head, as many clients send it.
    let request = post("body-apart");
    let (head, body) = request.split_at(request.find("\r\n\r\n").unwrap() + 4);
    stream.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    stream.write_all(body.as_bytes()).unwrap();
    let (status, answer) = read_kept_alive_answer(&mut stream);
    assert_eq!(status, 201, "{answer}");
    assert!(answer.contains("\"userName\":\"body-apart\""), "{answer}");
    // Closing while the thread polls: nothing is logged as a failure, and the server goes on.
    drop(stream);
    let (status, _) = get_json(&format!("{}/Users?count=0", server.base_url), &token).unwrap();
    assert_eq!(status, 200);
    let log = lines.lock().unwrap().join("\n");
    assert!(!log.contains("serve:"), "{log}");
}

/// Several clients at once, on several workers each with its own SQLite connection:
/// every write lands, once.
#[test]
fn serve_answers_concurrently() {
    let dir = TempDir::new("concurrent");
    let token = serve::generate_token();
    let (server, _lines) = start(
        runtime(),
        &dir,
        &ServerToken::Plain(token.clone()),
        &ServeOptions::default(),
    );
    let url = format!("{}/Users", server.base_url);
    std::thread::scope(|s| {
        for t in 0..6 {
            let (url, token) = (&url, &token);
            s.spawn(move || {
                for i in 0..10 {
                    let (status, body) =
                        send_json("POST", url, token, Some(&user(&format!("u{t}-{i}")))).unwrap();
                    assert_eq!(status, 201, "{body}");
                }
            });
        }
    });
    let (status, list) = get_json(&format!("{url}?count=0"), &token).unwrap();
    assert_eq!(status, 200);
    assert_eq!(list["totalResults"], 60);
    // The same userName from two clients at once: one wins, the other gets 409.
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    send_json("POST", &url, &token, Some(&user("twin")))
                        .unwrap()
                        .0
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut sorted = statuses.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [201, 409], "{statuses:?}");
}

/// A token kept only as its SHA-256 still admits its holder, and no one else.
#[test]
fn serve_with_a_hashed_token() {
    let dir = TempDir::new("hashed");
    let token = serve::generate_token();
    let (server, _lines) = start(
        runtime(),
        &dir,
        &ServerToken::Sha256(serve::token_hash(&token)),
        &ServeOptions::default(),
    );
    assert!(server.token.is_empty());
    let url = format!("{}/Users", server.base_url);
    assert_eq!(get_json(&url, &token).unwrap().0, 200);
    assert_eq!(get_json(&url, "not-the-token").unwrap().0, 401);
    assert_eq!(get_json(&url, &token[..63]).unwrap().0, 401);
    assert!(!format!("{server:?}").contains(&token));
}

fn offline_settings() -> ConnectorSettings {
    ConnectorSettings {
        base_url: "http://127.0.0.1:9/scim/v2".into(),
        credentials: Credentials::Bearer("offline-token".into()),
        timeout_ms: 1_000,
        policy_json: String::new(),
    }
}

fn cms_user(name: &str, extra: Option<String>) -> CmsUser {
    let mut fields = vec![
        ("name".into(), FieldValue::Text(name.into())),
        (
            "mail".into(),
            FieldValue::Text(format!("{name}@example.com")),
        ),
    ];
    if let Some(extra) = extra {
        fields.push(("field_first_name".into(), FieldValue::Text(extra)));
    }
    CmsUser {
        id: "7".into(),
        fields,
        active: true,
    }
}

/// A client session whose call traps (past the memory cap) is not called again: its
/// next call runs on a fresh instance with the connector opened anew.
#[test]
fn a_client_session_recovers_from_a_trap() {
    let runtime = capped(32);
    let mut session = match runtime.open(&offline_settings()) {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => panic!("open refused: {e:?}"),
        Err(e) => panic!("trap while opening: {e:#}"),
    };
    let huge = "x".repeat(40 << 20);
    let trap = session
        .map_user(&cms_user("alice", Some(huge)))
        .expect_err("a 40 MiB user cannot fit in 32 MiB");
    let message = format!("{trap:#}");
    assert!(message.contains("memory limit exceeded"), "{message}");
    assert!(
        trap.chain()
            .any(|c| c.is::<host_example::MemoryLimitExceeded>()),
        "the trap is typed: {message}"
    );
    assert!(!session.is_live(), "the trapped instance is discarded");
    let mapped = session
        .map_user(&cms_user("alice", None))
        .expect("a fresh instance")
        .expect("maps");
    assert!(mapped.contains("alice@example.com"), "{mapped}");
    assert!(session.is_live());
}

/// A call past the deadline traps with "deadline exceeded" (a zero deadline stops the
/// guest at its first check), in both roles.
#[test]
fn a_call_past_the_deadline_traps() {
    let runtime = runtime().clone().with_limits(GuestLimits {
        call_deadline: Duration::ZERO,
        ..GuestLimits::default()
    });
    let error = match runtime.open(&offline_settings()) {
        Err(e) => format!("{e:#}"),
        Ok(_) => panic!("a zero deadline must stop the guest"),
    };
    assert!(error.contains("deadline exceeded"), "{error}");
    match runtime.open(&offline_settings()) {
        Err(e) => assert!(
            e.chain().any(|c| c.is::<host_example::DeadlineExceeded>()),
            "the trap is typed: {e:#}"
        ),
        Ok(_) => panic!("a zero deadline must stop the guest"),
    }
    let dir = TempDir::new("deadline");
    let started = serve::start_with(
        &runtime,
        &dir.0.join("directory.db"),
        "127.0.0.1:0",
        &ServerToken::Plain(serve::generate_token()),
        "",
        LogSink::memory().0,
        &ServeOptions::default(),
    );
    let error = format!("{:#}", started.expect_err("serve cannot start"));
    assert!(error.contains("deadline exceeded"), "{error}");
}

/// The deadline is enforced mid-computation by the epoch ticker, not only at a call's first
/// check: a batch of 40,000 unchanged users (guest work with no host call in between, well
/// over a second of it) runs past a 100 ms deadline and traps; the next, small batch runs on
/// a fresh instance. Only the trapping call runs under the tight deadline's session; the
/// snapshots are made beforehand on an unlimited one, so a loaded machine cannot trip it
/// early.
#[test]
fn a_long_guest_computation_is_stopped_by_the_ticker_and_the_next_call_works() {
    use host_example::types::{Action, BatchItem, Link, UserEvent};
    let dir = TempDir::new("ticker");
    let (_server, settings) = serve_for_a_client(&dir, 10_000);
    let open = |runtime: &Runtime| match runtime.open(&settings) {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => panic!("open refused: {e:?}"),
        Err(e) => panic!("trap while opening: {e:#}"),
    };
    let mut mapper = open(runtime());
    let mut items = Vec::new();
    for i in 0..40_000 {
        let mut user = cms_user(&format!("user{i}"), Some(format!("Given{i}")));
        user.id = i.to_string();
        let snapshot = mapper
            .map_user(&user)
            .expect("no trap")
            .expect("the user maps");
        items.push(BatchItem {
            user,
            event: UserEvent::Updated,
            link: Some(Link {
                remote_id: format!("r{i}"),
                version: None,
                snapshot: Some(snapshot),
            }),
        });
    }
    let unlimited = mapper
        .provision_batch(&items[..3])
        .expect("no trap without a tight deadline");
    assert!(
        unlimited
            .results
            .iter()
            .all(|r| matches!(r, Ok(o) if o.action == Action::Unchanged)),
        "{unlimited:?}"
    );
    let limited = runtime().clone().with_limits(GuestLimits {
        call_deadline: Duration::from_millis(100),
        ..GuestLimits::default()
    });
    let mut session = open(&limited);
    let trap = session
        .provision_batch(&items)
        .expect_err("40,000 users take the guest past 100 ms");
    assert!(
        trap.chain()
            .any(|c| c.is::<host_example::DeadlineExceeded>()),
        "the trap is typed: {trap:#}"
    );
    assert!(!session.is_live(), "the trapped instance is discarded");
    let small = session
        .provision_batch(&items[..3])
        .expect("a fresh instance serves the next call");
    assert!(
        small
            .results
            .iter()
            .all(|r| matches!(r, Ok(o) if o.action == Action::Unchanged)),
        "{small:?}"
    );
    assert!(session.is_live());
}

fn cli_binary() -> Option<std::path::PathBuf> {
    let bin = scim_provisioner_tests::peers::workspace_root().join("target/debug/host-example");
    if bin.is_file() {
        Some(bin)
    } else {
        eprintln!(
            "SKIPPED: {} is missing (build it with `cargo build --workspace --bins`)",
            bin.display()
        );
        None
    }
}

/// A `serve` child process, killed on drop.
struct ServeProcess(std::process::Child);

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `host-example serve` and reads its base URL and token lines.
fn serve_cli(bin: &std::path::Path, database: &std::path::Path) -> (ServeProcess, String, String) {
    let mut child = std::process::Command::new(bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--database",
        ])
        .arg(database)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve runs");
    let ServeBanner {
        base_url,
        token_line: token,
    } = read_serve_banner(&mut child);
    let process = ServeProcess(child);
    (process, base_url, token)
}

/// `serve` shows a fresh token once and keeps only its SHA-256; a restart still admits it.
#[test]
fn serve_cli_keeps_only_the_tokens_hash() {
    let Some(bin) = cli_binary() else { return };
    let dir = TempDir::new("cli-token");
    let database = dir.0.join("server.db");
    let (first, base_url, token) = serve_cli(&bin, &database);
    assert_eq!(token.len(), 64, "{token:?}");
    assert_eq!(
        get_json(&format!("{base_url}/Users"), &token).unwrap().0,
        200
    );
    drop(first);
    let store = host_example::store::Store::open(&database).unwrap();
    assert_eq!(store.meta("server_token").unwrap(), None);
    let kept = store
        .meta("server_token_sha256")
        .unwrap()
        .expect("the hash is kept");
    assert_eq!(kept, serve::hash_to_hex(&serve::token_hash(&token)));
    let raw_file = std::fs::read(&database).unwrap();
    assert!(
        !raw_file.windows(token.len()).any(|w| w == token.as_bytes()),
        "the token itself is in the database file"
    );
    drop(store);

    let (_second, base_url, shown) = serve_cli(&bin, &database);
    assert!(shown.contains("only its hash is kept"), "{shown}");
    let url = format!("{base_url}/Users");
    assert_eq!(get_json(&url, &token).unwrap().0, 200);
    assert_eq!(get_json(&url, "wrong").unwrap().0, 401);
}

/// Credentials over plain http:// to a host other than loopback: refused, unless the
/// configuration allows it, and then `test-connection` warns.
#[test]
fn plain_http_credentials_need_consent_and_draw_a_warning() {
    let Some(bin) = cli_binary() else { return };
    let dir = TempDir::new("cli-http");
    let config = dir.0.join("scim-provisioner.toml");
    let run = |allow: bool| {
        std::fs::write(
            &config,
            format!(
                "[scim]\nbase_url = \"http://192.0.2.1:9/scim/v2\"\ntoken = \"cli-secret-token\"\n\
                 timeout_secs = 1\nallow_insecure_http = {allow}\n[host]\ndatabase = \"{}\"\n",
                dir.0.join("cli.db").display()
            ),
        )
        .unwrap();
        let out = std::process::Command::new(&bin)
            .arg("-c")
            .arg(&config)
            .arg("test-connection")
            .output()
            .expect("the CLI runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains("cli-secret-token"), "{text}");
        (out.status.success(), text)
    };
    let (ok, text) = run(false);
    assert!(!ok);
    assert!(text.contains("allow_insecure_http"), "{text}");
    assert!(!text.contains("Warning:"), "{text}");
    let (_, text) = run(true);
    assert!(
        text.contains("Warning:") && text.contains("plain http://"),
        "{text}"
    );
}

/// The default memory cap holds a 100,000-user listing: the users are listed from our own
/// `serve` and the instance's peak memory is printed. Slow (a minute or two): run with
/// `cargo test -p scim-provisioner-tests --test hardening -- --ignored --nocapture`.
#[test]
#[ignore = "slow: lists 100,000 users"]
fn a_100k_user_listing_fits_the_default_memory_cap() {
    use host_example::DirectoryBackend;
    use host_example::directory::SqliteDirectory;
    use host_example::types::ResourceKind;
    let users: usize = std::env::var("HARDENING_LISTING_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = TempDir::new("listing");
    let database = dir.0.join("directory.db");
    {
        let mut directory = SqliteDirectory::open(&database).unwrap();
        for i in 0..users {
            let json = serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": format!("user{i:06}"),
                "externalId": format!("{i}"),
                "name": {"givenName": "Given", "familyName": format!("Family{i}")},
                "displayName": format!("Given Family{i}"),
                "emails": [{"value": format!("user{i:06}@example.com"), "type": "work", "primary": true}],
                "active": true,
            });
            directory
                .create(ResourceKind::User, &json.to_string(), None)
                .unwrap();
        }
    }
    let (_server, settings) = serve_for_a_client(&dir, 60_000);
    let mut session = match runtime().open(&settings) {
        Ok(Ok(s)) => s,
        other => panic!("open failed: {:?}", other.err()),
    };
    let listing = session
        .index_remote_users()
        .expect("no trap")
        .expect("the listing succeeds");
    let document = session.export_remote_index().expect("no trap");
    let peak = session.peak_memory_bytes();
    println!(
        "listed {} users in {} requests; export {} bytes; peak linear memory {} MiB of {} MiB",
        listing.users,
        listing.requests,
        document.map_or(0, |d| d.len()),
        peak >> 20,
        GuestLimits::default().memory_limit_bytes >> 20
    );
    assert_eq!(listing.users as usize, users);
    assert!(peak < GuestLimits::default().memory_limit_bytes / 2);
}
