//! `host-example serve-token rotate|fingerprint`: an administrator rotates the token
//! `serve` checks, or asks which one is in force, without starting a server.
//!
//! - On SQLite (no server needed): the new token is printed once, alone on stdout, and
//!   nowhere else; only its SHA-256 is kept; the fingerprint is the first 16 hex digits of
//!   that SHA-256; a second rotation replaces the first; a mistyped path makes no file.
//!   A `serve` running on the file then refuses the old token and admits the rotated one
//!   within a bounded time, without a restart.
//! - On PostgreSQL (the test's own server): the same, for a running `serve` on the database.
//! - Neither `serve` (run with `--verbose`) writes any of the tokens to its log.
//!
//! `cargo test -p scim-provisioner-tests --test serve_token` (build
//! `cargo build -p host-example` first).

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use host_example::database::test_support::TestPostgres;
use host_example::serve::{hash_to_hex, token_hash};
use host_example::store::Store;
use scim_provisioner_tests::daemons::host_example_bin;
use scim_provisioner_tests::serve_banner::{ServeBanner, read_serve_banner};
use scim_provisioner_tests::site::temp_dir;

/// How long a running `serve` may take to see a rotation: many times its 2 s recheck, for
/// a loaded machine.
const ROTATION_WITHIN: Duration = Duration::from_secs(60);

fn serve_token(database: &str, action: &str) -> Output {
    Command::new(host_example_bin())
        .args(["serve-token", action, "--database", database])
        .env_remove("SCIM_SERVE_DATABASE")
        .output()
        .expect("host-example runs")
}

/// Rotates, checks what is printed where, and returns the new token.
fn rotate(database: &str) -> String {
    let out = serve_token(database, "rotate");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "rotate: {stderr}");
    let token = stdout.trim_end_matches('\n').to_string();
    assert!(
        token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "the token alone on stdout: {stdout:?}"
    );
    assert!(!stderr.contains(&token), "never on stderr: {stderr}");
    let fingerprint = &hash_to_hex(&token_hash(&token))[..16];
    assert!(stderr.contains(fingerprint), "its fingerprint: {stderr}");
    token
}

fn fingerprint(database: &str) -> String {
    let out = serve_token(database, "fingerprint");
    assert!(
        out.status.success(),
        "fingerprint: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn sqlite_rotate_prints_the_token_once_and_keeps_its_hash() {
    let dir = temp_dir("serve-token");
    let path = dir.join("scim-server.db");
    let database = path.to_str().expect("a UTF-8 path");

    // A mistyped path is an error, and makes no file.
    let missing = dir.join("typo.db");
    let out = serve_token(missing.to_str().expect("path"), "rotate");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no directory at"));
    assert!(!missing.exists(), "no file made");

    // The directory as `serve` makes it on its first start; no token kept yet.
    drop(Store::open(&path).expect("a directory"));
    let out = serve_token(database, "fingerprint");
    assert!(!out.status.success(), "no token yet");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no server token is kept"));

    let first = rotate(database);
    let kept = |path: &Path| {
        Store::open(path)
            .expect("the directory")
            .meta("server_token_sha256")
            .expect("meta")
    };
    assert_eq!(
        kept(&path),
        Some(hash_to_hex(&token_hash(&first))),
        "only its SHA-256 is kept, where serve reads it"
    );
    assert_eq!(
        fingerprint(database),
        hash_to_hex(&token_hash(&first))[..16]
    );

    let second = rotate(database);
    assert_ne!(second, first);
    assert_eq!(kept(&path), Some(hash_to_hex(&token_hash(&second))));
    assert_eq!(
        fingerprint(database),
        hash_to_hex(&token_hash(&second))[..16]
    );

    // A serve running on the file takes the next rotation without a restart.
    let serve = Serve::start(database, &dir.join("serve.log"));
    assert!(
        serve.shown.starts_with("(shown when it was made"),
        "the kept token is not shown again: {}",
        serve.shown
    );
    let agent = agent();
    assert_eq!(status_with(&agent, &serve.base_url, &second), 200);
    let third = rotate(database);
    wait_for_rotation(&agent, &serve.base_url, &second, &third);

    // A file restored over it (a new file under the name) stops it with an error, rather
    // than answering from, and writing to, the file it opened.
    let mut serve = serve;
    let restored = dir.join("restored.db");
    std::fs::copy(&path, &restored).expect("a copy of the file");
    std::fs::rename(&restored, &path).expect("the copy restored over the file");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = serve.child.try_wait().expect("serve's status") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve went on after its file was replaced"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "stopped with an error: {status}");
    let log = std::fs::read_to_string(&serve.log).expect("the log");
    assert!(log.contains("was replaced by another file"), "{log}");
    serve.stop_and_check_log(&[&first, &second, &third]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `serve` process (with `--verbose`), killed when dropped (also when the test fails).
struct Serve {
    child: Child,
    base_url: String,
    /// What it printed after `SCIM bearer token:`.
    shown: String,
    /// Where its log (stderr) goes.
    log: std::path::PathBuf,
}

impl Serve {
    /// Starts `serve` on `database` (a SQLite path or a database URL), its log in `log`,
    /// and reads its address.
    fn start(database: &str, log: &Path) -> Serve {
        let log_file = std::fs::File::create(log).expect("a log file");
        let mut child = Command::new(host_example_bin())
            .args([
                "--verbose",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--workers",
                "1",
            ])
            .env("SCIM_SERVE_DATABASE", database)
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("serve runs");
        let ServeBanner {
            base_url,
            token_line: shown,
        } = read_serve_banner(&mut child);
        assert!(!base_url.is_empty(), "serve started and showed its address");
        Serve {
            child,
            base_url,
            shown,
            log: log.to_path_buf(),
        }
    }

    /// Stops it and checks that its log names none of `tokens`.
    fn stop_and_check_log(mut self, tokens: &[&str]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = std::fs::read_to_string(&self.log).expect("the log");
        for token in tokens {
            assert!(!log.contains(token), "a token in serve's log");
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// Waits until the running serve at `base_url` refuses `old` and admits `new`.
fn wait_for_rotation(agent: &ureq::Agent, base_url: &str, old: &str, new: &str) {
    let started = Instant::now();
    loop {
        let statuses = (
            status_with(agent, base_url, old),
            status_with(agent, base_url, new),
        );
        if statuses == (401, 200) {
            eprintln!("rotation in force after {:?}", started.elapsed());
            break;
        }
        assert!(
            started.elapsed() < ROTATION_WITHIN,
            "old and new token get {statuses:?}, {:?} after the rotation",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The status of `GET /Users` with `token`.
fn status_with(agent: &ureq::Agent, base_url: &str, token: &str) -> u16 {
    let request = ureq::http::Request::builder()
        .uri(format!("{base_url}/Users"))
        .header("Authorization", format!("Bearer {token}"))
        .body(())
        .expect("a request");
    agent.run(request).expect("an answer").status().as_u16()
}

#[test]
fn postgres_a_running_serve_takes_the_rotated_token() {
    let pg = TestPostgres::start().expect("PostgreSQL starts");
    let url = pg.create_database("servetoken").expect("a database");
    let dir = temp_dir("serve-token-pg");
    let serve = Serve::start(&url, &dir.join("serve.log"));
    let old = serve
        .shown
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(old.len(), 64, "serve made a token and showed it");
    let agent = agent();
    assert_eq!(status_with(&agent, &serve.base_url, &old), 200);

    let new = rotate(&url);
    assert_eq!(fingerprint(&url), hash_to_hex(&token_hash(&new))[..16]);
    wait_for_rotation(&agent, &serve.base_url, &old, &new);
    serve.stop_and_check_log(&[&old, &new]);
    let _ = std::fs::remove_dir_all(&dir);
}
