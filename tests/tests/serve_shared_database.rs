//! The server role behind a load balancer (issue 30): four `host-example serve` processes
//! on one PostgreSQL, and on one MariaDB, each the test's own server on a loopback port,
//! answer as one server. Two concurrent PUTs with the same `If-Match`, sent to two different
//! processes, never both win; two concurrent POSTs of one userName never both create; the
//! token is one for all; and scim2-tester and scim-sanity pass against `serve --database
//! postgres://…`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use host_example::database::test_support::{TestCertificates, TestMariaDb, TestPostgres};
use scim_provisioner_tests::daemons::host_example_bin;
use scim_provisioner_tests::peers::peers_dir;
use scim_provisioner_tests::serve_banner::{ServeBanner, read_serve_banner};
use serde_json::{Value, json};

/// How many `serve` processes share the database.
const PROCESSES: usize = 4;
/// Rounds of two racing PUTs.
const PUT_ROUNDS: usize = 200;
/// Rounds of two racing POSTs.
const POST_ROUNDS: usize = 25;

/// A `serve` process, killed on drop.
struct Serve {
    child: Child,
    base_url: String,
    /// What it printed as its token: the token, or a note that it is kept elsewhere.
    token_line: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve --database <url>` with 2 workers; `token_env` names the variable holding
/// the token (set for it), or `None` to let the database keep the token's hash. Returns
/// once it printed its base URL and token, that is once it listens.
fn start_serve(bin: &Path, url: &str, token: Option<&str>) -> Serve {
    start_serve_with(bin, url, token, &[], Stdio::null())
}

/// [`start_serve`] with more arguments to `serve` (`--new-token`, `-v`), and its stderr
/// (its log) sent to `stderr`.
fn start_serve_with(
    bin: &Path,
    url: &str,
    token: Option<&str>,
    extra: &[&str],
    stderr: Stdio,
) -> Serve {
    let mut command = Command::new(bin);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--workers", "2"])
        .args(extra)
        // From the environment, as an operator would (out of sight of `ps`).
        .env("SCIM_SERVE_DATABASE", url)
        .stdout(Stdio::piped())
        .stderr(stderr);
    if let Some(t) = token {
        command
            .args(["--token-env", "SCIM_SHARED_TEST_TOKEN"])
            .env("SCIM_SHARED_TEST_TOKEN", t);
    }
    let mut child = command.spawn().expect("serve runs");
    let ServeBanner {
        base_url,
        token_line,
    } = read_serve_banner(&mut child);
    assert!(!base_url.is_empty(), "serve did not start on {url}");
    Serve {
        child,
        base_url,
        token_line,
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// A request with a JSON body; the status and the body parsed (`Null` when empty).
fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: &str,
    if_match: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut builder = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/scim+json");
    if let Some(tag) = if_match {
        builder = builder.header("If-Match", tag);
    }
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let request = builder.body(bytes).expect("a request");
    let mut response = agent.run(request).expect("an answer");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("a body");
    let value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} {text}: {e}"))
    };
    (status, value)
}

fn user(name: &str, title: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "title": title,
    })
}

/// The four processes on `url`, sharing `token`; their migrations race on an empty
/// database, as when a deployment starts them together.
fn start_four(bin: &Path, url: &str, token: &str) -> Vec<Serve> {
    let handles: Vec<_> = (0..PROCESSES)
        .map(|_| {
            let (bin, url, token) = (bin.to_path_buf(), url.to_string(), token.to_string());
            std::thread::spawn(move || start_serve(&bin, &url, Some(&token)))
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("serve starts"))
        .collect()
}

/// Two PUTs with the same `If-Match` to two different processes at once, `PUT_ROUNDS`
/// times: exactly one 200 and one 412 each round, and the stored resource is the winner's.
fn racing_puts_never_both_win(serves: &[Serve], token: &str) {
    let http = agent();
    let (status, created) = send(
        &http,
        "POST",
        &format!("{}/Users", serves[0].base_url),
        token,
        None,
        Some(&user("racer", "start")),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("an id").to_string();
    let mut version = created["meta"]["version"]
        .as_str()
        .expect("a version")
        .to_string();
    let barrier = Arc::new(Barrier::new(2));
    for round in 0..PUT_ROUNDS {
        let racers: Vec<_> = (0..2)
            .map(|side| {
                let url = format!("{}/Users/{id}", serves[(round + side) % PROCESSES].base_url);
                let (token, version, barrier) =
                    (token.to_string(), version.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    let http = agent();
                    let body = user("racer", &format!("round {round} side {side}"));
                    barrier.wait();
                    let (status, body) =
                        send(&http, "PUT", &url, &token, Some(&version), Some(&body));
                    (status, body)
                })
            })
            .collect();
        let answers: Vec<(u16, Value)> = racers
            .into_iter()
            .map(|r| r.join().expect("a racer"))
            .collect();
        let mut statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 412], "round {round}: {answers:?}");
        let winner = &answers.iter().find(|a| a.0 == 200).expect("a winner").1;
        version = winner["meta"]["version"]
            .as_str()
            .expect("a version")
            .to_string();
        // Every process reads the winner's write.
        let (status, read) = send(
            &http,
            "GET",
            &format!("{}/Users/{id}", serves[(round + 2) % PROCESSES].base_url),
            token,
            None,
            None,
        );
        assert_eq!(status, 200);
        assert_eq!(read["title"], winner["title"], "round {round}");
        assert_eq!(read["meta"]["version"], winner["meta"]["version"]);
    }
}

/// Two POSTs of one userName (in different case) to two processes at once: one 201 and
/// one 409 `uniqueness`, every round.
fn racing_posts_never_both_create(serves: &[Serve], token: &str) {
    let barrier = Arc::new(Barrier::new(2));
    for round in 0..POST_ROUNDS {
        let racers: Vec<_> = (0..2)
            .map(|side| {
                let url = format!("{}/Users", serves[(round + side + 1) % PROCESSES].base_url);
                let name = if side == 0 {
                    format!("twin.{round}")
                } else {
                    format!("TWIN.{round}")
                };
                let (token, barrier) = (token.to_string(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    let http = agent();
                    barrier.wait();
                    send(
                        &http,
                        "POST",
                        &url,
                        &token,
                        None,
                        Some(&user(&name, "twin")),
                    )
                })
            })
            .collect();
        let answers: Vec<(u16, Value)> = racers
            .into_iter()
            .map(|r| r.join().expect("a racer"))
            .collect();
        let mut statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409], "round {round}: {answers:?}");
        let refused = &answers.iter().find(|a| a.0 == 409).expect("a refusal").1;
        assert_eq!(refused["scimType"], "uniqueness", "{refused}");
    }
}

/// A `/Bulk` request through one process: each operation is applied or refused on its
/// own (a duplicate is refused, the rest land), and the others read what it wrote.
fn bulk_operations_land_one_by_one(serves: &[Serve], token: &str) {
    let http = agent();
    let bulk = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "a", "data": user("bulk.a", "x")},
            {"method": "POST", "path": "/Users", "bulkId": "b", "data": user("BULK.A", "x")},
            {"method": "POST", "path": "/Users", "bulkId": "c", "data": user("bulk.c", "x")},
        ]
    });
    let (status, answer) = send(
        &http,
        "POST",
        &format!("{}/Bulk", serves[1].base_url),
        token,
        None,
        Some(&bulk),
    );
    assert_eq!(status, 200, "{answer}");
    let statuses: Vec<String> = answer["Operations"]
        .as_array()
        .expect("operations")
        .iter()
        .map(|o| o["status"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(statuses, ["201", "409", "201"], "{answer}");
    for name in ["bulk.a", "bulk.c"] {
        let (status, found) = send(
            &http,
            "GET",
            &format!(
                "{}/Users?filter=userName%20eq%20%22{name}%22",
                serves[3].base_url
            ),
            token,
            None,
            None,
        );
        assert_eq!(
            (status, found["totalResults"].as_u64()),
            (200, Some(1)),
            "{found}"
        );
    }
}

fn tool(name: &str) -> PathBuf {
    let path = peers_dir().join("venv").join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-peers",
        path.display()
    );
    path
}

/// scim2-tester, then scim-sanity, against one of the processes.
fn conformance_suites_pass(serve: &Serve, token: &str) {
    let out = Command::new(tool("scim2"))
        .args(["--url", &serve.base_url, "test"])
        .env("SCIM_CLI_HEADERS", format!("Authorization: Bearer {token}"))
        .output()
        .expect("scim2 runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let successes = text.lines().filter(|l| l.starts_with("SUCCESS")).count();
    let failures: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ERROR") || l.starts_with("FAIL") || l.starts_with("CRITICAL"))
        .collect();
    assert!(out.status.success(), "scim2 test failed:\n{text}");
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(successes >= 100, "only {successes} checks ran:\n{text}");

    let out = Command::new(tool("scim-sanity"))
        .args([
            "probe",
            &serve.base_url,
            "--token",
            token,
            "--i-accept-side-effects",
        ])
        .output()
        .expect("scim-sanity runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scim-sanity failed:\n{text}");
    assert!(!text.contains("[FAIL]"), "{text}");
    assert!(text.contains("All tests passed"), "{text}");
}

/// The token a process printed (64 hex digits), when it made one.
fn printed_token(serve: &Serve) -> String {
    let token = serve
        .token_line
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(token.len(), 64, "{:?}", serve.token_line);
    token
}

/// How long every process may take to see a rotated token: a few times
/// `serve::RECHECK_EVERY`, for a loaded machine.
const ROTATION_WITHIN: Duration = Duration::from_secs(60);

/// Without `--token-env`, the first process makes the token and keeps its hash in the
/// database; a second process on it admits the same token. Then the first is restarted
/// with `--new-token` (a rotation): within a bounded time both refuse the old token and
/// admit the new one; a token removed from the database is refused by both; and neither
/// logged either token.
fn the_token_is_one_for_all(bin: &Path, url: &str) {
    let log_dir = std::env::temp_dir().join(format!(
        "serve-token-logs-{}-{}",
        std::process::id(),
        host_example::serve::generate_token()
    ));
    std::fs::create_dir_all(&log_dir).expect("a log directory");
    let log =
        |name: &str| Stdio::from(std::fs::File::create(log_dir.join(name)).expect("a log file"));
    let first = start_serve_with(bin, url, None, &["-v"], log("first.log"));
    let token = printed_token(&first);
    let second = start_serve(bin, url, None);
    assert!(
        second.token_line.contains("only its hash is kept"),
        "{}",
        second.token_line
    );
    let http = agent();
    for serve in [&first, &second] {
        let users = format!("{}/Users", serve.base_url);
        assert_eq!(send(&http, "GET", &users, &token, None, None).0, 200);
        assert_eq!(send(&http, "GET", &users, "wrong", None, None).0, 401);
    }

    // The rotation: the first process restarted with --new-token.
    drop(first);
    let rotated = start_serve_with(bin, url, None, &["-v", "--new-token"], log("rotated.log"));
    let new_token = printed_token(&rotated);
    assert_ne!(new_token, token);
    let started = std::time::Instant::now();
    for serve in [&rotated, &second] {
        let users = format!("{}/Users", serve.base_url);
        loop {
            let old = send(&http, "GET", &users, &token, None, None).0;
            let new = send(&http, "GET", &users, &new_token, None, None).0;
            if (old, new) == (401, 200) {
                break;
            }
            assert!(
                started.elapsed() < ROTATION_WITHIN,
                "{}: the old token gets {old}, the new one {new}, {:?} after the rotation",
                serve.base_url,
                started.elapsed()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    eprintln!(
        "the rotation held on both processes {:?} after it",
        started.elapsed()
    );
    // A token removed from the database (revoked by hand) admits nothing, on either.
    {
        use host_example::database::{DatabaseUrl, Db};
        let mut db = Db::connect(&DatabaseUrl::parse(url, Path::new("/")).expect("a URL"))
            .expect("the database answers");
        db.execute("DELETE FROM scim_server_settings", &[])
            .expect("the token removed");
    }
    let started = std::time::Instant::now();
    for serve in [&rotated, &second] {
        let users = format!("{}/Users", serve.base_url);
        while send(&http, "GET", &users, &new_token, None, None).0 != 401 {
            assert!(
                started.elapsed() < ROTATION_WITHIN,
                "{}: a removed token is still admitted",
                serve.base_url
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    drop((rotated, second));
    for name in ["first.log", "rotated.log"] {
        let text = std::fs::read_to_string(log_dir.join(name)).unwrap_or_default();
        assert!(
            !text.contains(&token) && !text.contains(&new_token),
            "{name} holds a token"
        );
    }
    let _ = std::fs::remove_dir_all(&log_dir);
}

/// The users the processes wrote are in the database itself (not in a SQLite file), as
/// SCIM resources and as CMS users.
fn the_database_holds_the_users(url: &str) {
    use host_example::database::{DatabaseUrl, Db};
    let url = DatabaseUrl::parse(url, Path::new("/")).expect("a URL");
    let mut db = Db::connect(&url).expect("the database answers");
    let row = db
        .query_opt(
            "SELECT COUNT(*) FROM scim_resources WHERE kind = 'User' AND unique_key = ?",
            &["racer".into()],
        )
        .expect("a count")
        .expect("a row");
    assert_eq!(row.int(0).expect("a number"), 1);
    // And each is a CMS user too (the store's `users` table), under its SCIM id, as `serve`
    // on SQLite keeps them.
    let row = db
        .query_opt(
            "SELECT COUNT(*) FROM users u JOIN scim_resources r ON r.id = u.id
             WHERE r.kind = 'User' AND u.name IN ('racer', 'bulk.a', 'bulk.c')",
            &[],
        )
        .expect("a count")
        .expect("a row");
    assert_eq!(row.int(0).expect("a number"), 3);
}

fn random_token() -> String {
    host_example::serve::generate_token()
}

/// The load-balancer checks on one database (`url`), then the shared token on a second,
/// fresh one (`token_url`): the same on PostgreSQL and MariaDB.
fn four_serve_processes_answer_as_one_server(bin: &Path, url: &str, token_url: &str) {
    let token = random_token();
    let serves = start_four(bin, url, &token);
    racing_puts_never_both_win(&serves, &token);
    racing_posts_never_both_create(&serves, &token);
    bulk_operations_land_one_by_one(&serves, &token);
    drop(serves);
    the_database_holds_the_users(url);
    the_token_is_one_for_all(bin, token_url);
}

#[test]
fn four_serve_processes_on_one_postgres_answer_as_one_server() {
    let bin = host_example_bin();
    let pg = TestPostgres::start().expect("PostgreSQL starts");
    let url = pg.create_database("serve_race").expect("a database");
    let token_url = pg.create_database("serve_token").expect("a database");
    four_serve_processes_answer_as_one_server(&bin, &url, &token_url);
}

#[test]
fn four_serve_processes_on_one_mariadb_answer_as_one_server() {
    let bin = host_example_bin();
    let maria = TestMariaDb::start().expect("MariaDB starts");
    let url = maria.create_database("serve_race").expect("a database");
    let token_url = maria.create_database("serve_token").expect("a database");
    four_serve_processes_answer_as_one_server(&bin, &url, &token_url);
}

#[test]
fn conformance_suites_pass_on_postgres() {
    let bin = host_example_bin();
    let pg = TestPostgres::start().expect("PostgreSQL starts");
    let url = pg.create_database("serve_conformance").expect("a database");
    let token = random_token();
    let serve = start_serve(&bin, &url, Some(&token));
    conformance_suites_pass(&serve, &token);
}

#[test]
fn conformance_suites_pass_on_mariadb() {
    let bin = host_example_bin();
    let maria = TestMariaDb::start().expect("MariaDB starts");
    let url = maria
        .create_database("serve_conformance")
        .expect("a database");
    let token = random_token();
    let serve = start_serve(&bin, &url, Some(&token));
    conformance_suites_pass(&serve, &token);
}

/// The password in a test database's URL (`scheme://user:<password>@127.0.0.1:<port>/db`,
/// a long random one), to show that no error prints it.
fn password_in(url: &str) -> String {
    let secret = url
        .split('@')
        .next()
        .and_then(|userinfo| userinfo.rsplit(':').next())
        .expect("a password")
        .to_string();
    assert!(secret.len() >= 16, "{secret}");
    secret
}

/// `url` asked for over verified TLS: `verify` is the driver's own spelling of "verify
/// the certificate and the host name, against this CA file", given `ca`. The host becomes
/// `localhost`, which the test certificate names, as a real one names the database's host.
fn verified_tls_url(url: &str, verify: &str, ca: &Path) -> String {
    let on_localhost = url.replace("@127.0.0.1:", "@localhost:");
    format!("{on_localhost}?{verify}={}", ca.display())
}

/// `serve` on `url` (a database over verified TLS): it starts, creates a user and lists
/// the users. Returned running, for the caller to look at its connections.
fn serves_over_tls(bin: &Path, url: &str, token: &str) -> Serve {
    let serve = start_serve(bin, url, Some(token));
    let http = agent();
    let users = format!("{}/Users", serve.base_url);
    let (status, created) = send(
        &http,
        "POST",
        &users,
        token,
        None,
        Some(&user("tls.user", "x")),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(send(&http, "GET", &users, token, None, None).0, 200);
    serve
}

/// `serve` on `url`, whose CA did not sign the database's certificate, stops at once,
/// saying why, and without the database's password (`secret`).
fn refuses_an_unknown_ca(bin: &Path, url: &str, token: &str, secret: &str) {
    let text = refused_start(bin, url, token);
    assert!(
        text.contains("invalid peer certificate: UnknownIssuer"),
        "{text}"
    );
    assert!(!text.contains(secret), "the password is in: {text}");
}

/// `serve` on a PostgreSQL that takes TLS, asked for as libpq spells it
/// (`sslmode=verify-full&sslrootcert=<the test's CA>`): it serves, and every connection it
/// holds to the database is encrypted. With a CA that did not sign the server's
/// certificate it stops at once (no waiting for a database that will never be trusted),
/// with an error that says why and holds no password.
#[test]
fn serve_over_verified_tls_on_postgres() {
    use host_example::database::{DatabaseUrl, Db};
    let bin = host_example_bin();
    let certs = TestCertificates::make().expect("certificates");
    let pg = TestPostgres::start_with_tls(&certs).expect("PostgreSQL starts");
    let plain = pg.create_database("serve_tls").expect("a database");
    let secret = password_in(&plain);
    let tls_url = |ca: &Path| verified_tls_url(&plain, "sslmode=verify-full&sslrootcert", ca);
    let token = random_token();
    let serve = serves_over_tls(&bin, &tls_url(&certs.ca_file()), &token);
    let mut db = Db::connect(&DatabaseUrl::parse(&plain, Path::new("/")).expect("a URL"))
        .expect("the database answers");
    let count = |db: &mut Db, encrypted: bool| {
        db.query_opt(
            "SELECT COUNT(*) FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid
             WHERE a.application_name = 'scim-provisioner' AND a.pid <> pg_backend_pid()
             AND s.ssl = (? = 1)",
            &[i64::from(encrypted).into()],
        )
        .expect("a count")
        .expect("a row")
        .int(0)
        .expect("a number")
    };
    // Its two workers, each with its own connection.
    assert!(
        count(&mut db, true) >= 2,
        "{} encrypted",
        count(&mut db, true)
    );
    assert_eq!(count(&mut db, false), 0, "a connection without TLS");
    drop(serve);
    refuses_an_unknown_ca(&bin, &tls_url(&certs.other_ca_file()), &token, &secret);
}

/// The same on MariaDB (`ssl-mode=VERIFY_IDENTITY&ssl-ca=…`), its user made to connect
/// only over TLS (`REQUIRE SSL`), so that serving at all shows every connection is
/// encrypted; with a wrong CA it stops at once, saying why, without the password.
#[test]
fn serve_over_verified_tls_on_mariadb() {
    let bin = host_example_bin();
    let certs = TestCertificates::make().expect("certificates");
    let maria = TestMariaDb::start_with_tls(&certs).expect("MariaDB starts");
    let plain = maria.create_database("serve_tls").expect("a database");
    maria.require_tls_for("serve_tls").expect("REQUIRE SSL");
    let secret = password_in(&plain);
    let tls_url = |ca: &Path| verified_tls_url(&plain, "ssl-mode=VERIFY_IDENTITY&ssl-ca", ca);
    use host_example::database::{DatabaseUrl, Db};
    assert!(
        Db::connect(&DatabaseUrl::parse(&plain, Path::new("/")).expect("a URL")).is_err(),
        "the user connects without TLS"
    );
    let token = random_token();
    let serve = serves_over_tls(&bin, &tls_url(&certs.ca_file()), &token);
    drop(serve);
    refuses_an_unknown_ca(&bin, &tls_url(&certs.other_ca_file()), &token, &secret);
}

/// Runs `serve` on `url`, which must fail to start within 60 s; returns what it printed.
fn refused_start(bin: &Path, url: &str, token: &str) -> String {
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--token-env",
            "SCIM_SHARED_TEST_TOKEN",
        ])
        .env("SCIM_SHARED_TEST_TOKEN", token)
        .env("SCIM_SERVE_DATABASE", url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve runs");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("a status") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("serve kept waiting for a database whose certificate it refused");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("its output");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "{text}");
    text
}
