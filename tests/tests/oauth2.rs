//! OAuth 2.0 client credentials (issue 31, part 1) against a real authorization server:
//! oidc-provider 9 (`tests/peers/oidc`), and our quirky SCIM server accepting only the
//! access tokens that the provider's introspection endpoint (RFC 7662) calls active. Every
//! sync runs host-example's `sync` with the component under wasmtime; the token exchange
//! goes through the host's `http-client`, which allows the token URL's origin beside the
//! base URL's.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use host_example::config::{HostConfig, Threshold};
use host_example::logging::LogSink;
use host_example::store::Store;
use host_example::sync::{SyncOptions, SyncSummary, sync};
use host_example::{ConnectorSettings, Credentials, describe_error};
use scim_provisioner_tests::component::runtime;
use scim_provisioner_tests::peers::{self, Peer};
use serde_json::{Value, json};

const INTROSPECTOR: (&str, &str) = ("scim-resource-server", "introspector-secret-6d1f");
const CLIENT: (&str, &str) = ("scim-provisioner", "client-secret-9a4e2b7c");
const REGISTRATION_TOKEN: &str = "initial-access-token-3c8e";

/// The authorization server, stopped when dropped.
struct Idp {
    child: Child,
    issuer: String,
    token_endpoint: String,
    introspection_endpoint: String,
    registration_endpoint: String,
}

impl Idp {
    /// Starts oidc-provider with this access token lifetime (seconds), installing its npm
    /// packages first when `scripts/install-peers` has not.
    fn start(token_ttl_secs: u32) -> Idp {
        let dir = peers::workspace_root().join("tests/peers/oidc");
        if !dir.join("node_modules/oidc-provider").is_dir() {
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .expect("npm runs");
            assert!(status.success(), "npm ci in {} failed", dir.display());
        }
        let mut child = Command::new(std::env::var("NODE").unwrap_or_else(|_| "node".into()))
            .arg("server.js")
            .args(["--access-token-ttl", &token_ttl_secs.to_string()])
            .env(
                "OIDC_PEER_INTROSPECTOR",
                format!("{}:{}", INTROSPECTOR.0, INTROSPECTOR.1),
            )
            .env("OIDC_PEER_CLIENT", format!("{}:{}", CLIENT.0, CLIENT.1))
            .env("OIDC_PEER_REGISTRATION_TOKEN", REGISTRATION_TOKEN)
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node starts");
        // It prints its endpoints once it listens.
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .unwrap_or(0);
        if read == 0 {
            let _ = child.kill();
            panic!("oidc-provider exited before it listened");
        }
        let v: Value = serde_json::from_str(&line).expect("the endpoints line is JSON");
        let s = |k: &str| v[k].as_str().expect(k).to_string();
        Idp {
            issuer: s("issuer"),
            token_endpoint: s("token_endpoint"),
            introspection_endpoint: s("introspection_endpoint"),
            registration_endpoint: s("registration_endpoint"),
            child,
        }
    }

    /// The quirky SCIM server, trusting this provider's introspection.
    fn scim_server(&self, switches: &[&str]) -> Peer {
        let client = format!("{}:{}", INTROSPECTOR.0, INTROSPECTOR.1);
        let mut all = vec![
            "--introspect-url",
            &self.introspection_endpoint,
            "--introspect-client",
            &client,
        ];
        all.extend_from_slice(switches);
        peers::quirky(&all).expect("the quirky server starts")
    }

    /// Tokens issued per client, and the token endpoint's errors per code.
    fn stats(&self) -> Value {
        call("GET", &format!("{}/test/stats", self.issuer), None, None).1
    }

    fn issued(&self, client_id: &str) -> u64 {
        self.stats()["issued"][client_id].as_u64().unwrap_or(0)
    }

    /// Destroys every access token issued to the client, as an administrator would.
    fn revoke_tokens(&self, client_id: &str) -> u64 {
        let url = format!("{}/test/revoke-tokens?client_id={client_id}", self.issuer);
        call("POST", &url, None, None).1["revoked"]
            .as_u64()
            .unwrap_or(0)
    }

    /// Registers a client_credentials client (RFC 7591): its id, secret, and what deletes it.
    fn register(&self) -> Registered {
        let body = json!({"grant_types": ["client_credentials"], "response_types": [],
                          "redirect_uris": [], "scope": "scim"});
        let (status, v) = call(
            "POST",
            &self.registration_endpoint,
            Some(format!("Bearer {REGISTRATION_TOKEN}")),
            Some(("application/json", body.to_string())),
        );
        assert_eq!(status, 201, "{v}");
        let s = |k: &str| v[k].as_str().expect(k).to_string();
        Registered {
            client_id: s("client_id"),
            client_secret: s("client_secret"),
            uri: s("registration_client_uri"),
            access_token: s("registration_access_token"),
        }
    }

    /// A token for the test's own reads of the SCIM server.
    fn reader_token(&self) -> String {
        let (status, v) = call(
            "POST",
            &self.token_endpoint,
            Some(format!(
                "Basic {}",
                base64(&format!("{}:{}", CLIENT.0, CLIENT.1))
            )),
            Some((
                "application/x-www-form-urlencoded",
                "grant_type=client_credentials&scope=scim".into(),
            )),
        );
        assert_eq!(status, 200, "{v}");
        v["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Registered {
    client_id: String,
    client_secret: String,
    uri: String,
    access_token: String,
}

impl Registered {
    /// Deletes the client (RFC 7592): the provider no longer knows it.
    fn delete(&self) {
        let (status, body) = call(
            "DELETE",
            &self.uri,
            Some(format!("Bearer {}", self.access_token)),
            None,
        );
        assert_eq!(status, 204, "{body}");
    }
}

/// One plain HTTP exchange: the status and the body as JSON (`Null` when it is not).
fn call(
    method: &str,
    url: &str,
    authorization: Option<String>,
    body: Option<(&str, String)>,
) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    if let Some(a) = authorization {
        builder = builder.header("Authorization", a);
    }
    let (content_type, bytes) = body.unwrap_or(("text/plain", String::new()));
    let request = builder
        .header("Content-Type", content_type)
        .body(bytes.into_bytes())
        .expect("a valid request");
    let mut response = agent
        .run(request)
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn base64(s: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The connector settings for a client of this provider.
fn oauth2_settings(idp: &Idp, peer: &Peer, client_id: &str, secret: &str) -> ConnectorSettings {
    ConnectorSettings {
        base_url: peer.base_url.clone(),
        credentials: Credentials::Basic {
            username: client_id.into(),
            password: secret.into(),
        },
        timeout_ms: 10_000,
        policy_json: json!({"oauth2": {"token_url": idp.token_endpoint, "scope": "scim"}})
            .to_string(),
    }
}

/// A CMS site with its own store.
struct Site {
    store: Store,
    dir: PathBuf,
}

impl Site {
    fn with_users(prefix: &str, n: usize) -> Site {
        let dir = scim_provisioner_tests::site::temp_dir("oauth2");
        let mut store = Store::open(&dir.join("site.db")).expect("the store opens");
        add_users(&mut store, prefix, n);
        Site { store, dir }
    }

    fn sync(&mut self, settings: &ConnectorSettings, concurrency: u32) -> SyncSummary {
        let options = SyncOptions {
            plan_only: false,
            allow_deletes: false,
            threshold: Threshold::Percent(10.0),
            concurrency,
            batch_size: 1,
            max_attempts: 8,
            progress: false,
            full: false,
        };
        sync(runtime(), settings, &mut self.store, &options).expect("the sync runs")
    }

    /// Every error the sync logged.
    fn errors(&self) -> Vec<String> {
        self.store
            .log_entries(None, true, 1000)
            .expect("the log reads")
            .into_iter()
            .filter_map(|e| e.error)
            .collect()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn add_users(store: &mut Store, prefix: &str, n: usize) {
    let written = store
        .import_users((0..n).map(|i| {
            Ok(scim_provisioner_tests::site::editor(&format!(
                "{prefix}{i:03}"
            )))
        }))
        .expect("the import works");
    assert_eq!(written, n);
}

/// The userNames the SCIM server holds, read with a token of the test's own.
fn remote_user_names(idp: &Idp, peer: &Peer) -> Vec<String> {
    let (status, body) =
        peers::get_json(&peer.url("/Users?count=1000"), &idp.reader_token()).expect("GET /Users");
    assert_eq!(status, 200, "{body}");
    let mut names: Vec<String> = body["Resources"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|u| u["userName"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Waits for a condition, up to a minute.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The happy path: a sync through host-example delivers every user with one token, and the
/// SCIM server never sees the client's credentials (it accepts nothing but active tokens).
/// Then the same sync with a wrong secret: a clear error naming invalid_client, and the
/// secret in no log line and no error.
#[test]
fn a_sync_with_client_credentials_and_then_a_wrong_secret() {
    let idp = Idp::start(600);
    let peer = idp.scim_server(&[]);
    let mut site = Site::with_users("ok", 12);
    let settings = oauth2_settings(&idp, &peer, CLIENT.0, CLIENT.1);
    let before = idp.issued(CLIENT.0);
    let summary = site.sync(&settings, 1);
    assert_eq!((summary.created, summary.failed), (12, 0), "{summary}");
    assert_eq!(
        idp.issued(CLIENT.0) - before,
        1,
        "one token for the whole sync"
    );
    assert_eq!(remote_user_names(&idp, &peer).len(), 12);

    let wrong_secret = "wrong-secret-5f0e1d";
    let settings = oauth2_settings(&idp, &peer, CLIENT.0, wrong_secret);
    let (sink, lines) = LogSink::memory();
    let mut session = runtime()
        .open_with_log(&settings, sink)
        .expect("no trap")
        .expect("the connector opens");
    let err = session
        .test_connection()
        .expect("no trap")
        .expect_err("a wrong secret fails");
    let text = describe_error(&err);
    println!("a wrong secret: {text}");
    assert!(text.contains("invalid_client"), "{text}");
    assert!(text.contains("the client secret or id is wrong"), "{text}");
    assert!(text.contains(&idp.token_endpoint), "{text}");
    let logged = lines.lock().map(|l| l.join("\n")).unwrap_or_default();
    assert!(logged.contains("invalid_client"), "{logged}");
    let mut more = Site::with_users("bad", 3);
    let summary = more.sync(&settings, 1);
    assert_eq!(summary.created, 0, "{summary}");
    let errors = more.errors().join("\n");
    println!("the sync's log: {errors}");
    for shown in [&text, &logged, &errors, &format!("{settings:?}")] {
        assert!(
            !shown.contains(wrong_secret),
            "the secret was shown: {shown}"
        );
        assert!(!shown.contains(CLIENT.1), "a secret was shown: {shown}");
    }
    assert!(
        idp.stats()["errors"]["invalid_client"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    );
}

/// Tokens that live 2 s, a sync that outlasts several of them (the server holds every
/// POST 300 ms): new tokens are fetched as they run out, every user arrives once.
#[test]
fn a_sync_outlasting_its_tokens_fetches_new_ones() {
    let idp = Idp::start(2);
    let peer = idp.scim_server(&["--post-delay-ms", "300"]);
    let mut site = Site::with_users("exp", 15);
    let settings = oauth2_settings(&idp, &peer, CLIENT.0, CLIENT.1);
    let before = idp.issued(CLIENT.0);
    let started = Instant::now();
    let summary = site.sync(&settings, 1);
    assert_eq!((summary.created, summary.failed), (15, 0), "{summary}");
    assert!(started.elapsed() > Duration::from_millis(4500));
    let issued = idp.issued(CLIENT.0) - before;
    assert!(
        issued >= 3,
        "{issued} tokens for a sync of {:?} with 2 s tokens",
        started.elapsed()
    );
    let names = remote_user_names(&idp, &peer);
    assert_eq!(names.len(), 15, "{names:?}");
}

/// A token revoked in the middle of a sync: the SCIM server answers 401, the component
/// fetches a new token and retries, and the sync ends with every user delivered once.
/// Then the client itself is deleted at the provider: the next sync fails clearly.
#[test]
fn a_revoked_token_mid_sync_then_a_revoked_client() {
    let idp = Idp::start(600);
    let peer = idp.scim_server(&["--post-delay-ms", "150"]);
    let client = idp.register();
    let settings = oauth2_settings(&idp, &peer, &client.client_id, &client.client_secret);
    let mut site = Site::with_users("rev", 20);
    let revoked = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            wait_for("five users on the server", || {
                remote_user_names(&idp, &peer).len() >= 5
            });
            idp.revoke_tokens(&client.client_id)
        });
        let summary = site.sync(&settings, 1);
        assert_eq!((summary.created, summary.failed), (20, 0), "{summary}");
        watcher.join().expect("the watcher")
    });
    assert!(revoked >= 1, "a live token was revoked");
    // The server refused the revoked token once (then took the new one).
    let log = std::fs::read_to_string(&peer.log_path).unwrap_or_default();
    assert!(
        log.contains("\" 401 "),
        "no 401 in the server's log:\n{log}"
    );
    assert!(
        idp.issued(&client.client_id) >= 2,
        "a new token after the revocation"
    );
    let names = remote_user_names(&idp, &peer);
    assert_eq!(names.len(), 20, "{names:?}");

    client.delete();
    add_users(&mut site.store, "late", 2);
    let (sink, lines) = LogSink::memory();
    let err = runtime()
        .open_with_log(&settings, sink)
        .expect("no trap")
        .expect("opens")
        .test_connection()
        .expect("no trap")
        .expect_err("a deleted client gets no token");
    let text = describe_error(&err);
    assert!(text.contains("invalid_client"), "{text}");
    let summary = site.sync(&settings, 1);
    assert_eq!(summary.created, 0, "{summary}");
    let logged = lines.lock().map(|l| l.join("\n")).unwrap_or_default();
    assert!(!logged.contains(&client.client_secret), "{logged}");
    assert!(!site.errors().join("\n").contains(&client.client_secret));
}

/// The host's configuration: `[scim] auth = "oauth2"` with the secret from the environment
/// becomes basic credentials and the policy's `oauth2` section; mistakes are named.
#[test]
fn host_configuration_keys() {
    let var = "SCIM_OAUTH2_TEST_SECRET";
    // SAFETY: this test alone reads or writes the variable.
    unsafe { std::env::set_var(var, "from-the-environment") };
    let config = HostConfig::parse(&format!(
        "[scim]\nbase_url = \"https://scim.example/v2\"\nauth = \"oauth2\"\n\
         token_url = \"https://idp.example/oauth2/token\"\nclient_id = \"provisioner\"\n\
         client_secret_env = \"{var}\"\nscope = \"scim\"\naudience = \"https://scim.example\"\n\
         client_auth = \"client_secret_post\"\n\n[operations]\ndelete = true\n"
    ))
    .expect("the configuration parses");
    let settings = config.settings().expect("settings");
    match &settings.credentials {
        Credentials::Basic { username, password } => {
            assert_eq!(username, "provisioner");
            assert_eq!(password, "from-the-environment");
        }
        other => panic!("{other:?}"),
    }
    let policy: Value = serde_json::from_str(&settings.policy_json).expect("JSON");
    assert_eq!(
        policy["oauth2"],
        json!({"token_url": "https://idp.example/oauth2/token", "scope": "scim",
               "audience": "https://scim.example", "client_auth": "client_secret_post"})
    );
    assert_eq!(policy["operations"]["delete"], true);
    assert!(!format!("{config:?}").contains("from-the-environment"));
    for (toml, needle) in [
        (
            "auth = \"oauth2\"\nclient_id = \"a\"\nclient_secret = \"b\"\n",
            "token_url",
        ),
        (
            "auth = \"oauth2\"\ntoken_url = \"https://i/t\"\nclient_secret = \"b\"\n",
            "client_id",
        ),
        (
            "auth = \"oauth2\"\ntoken_url = \"https://i/t\"\nclient_id = \"a\"\n",
            "client_secret",
        ),
        (
            "auth = \"oauth2\"\ntoken_url = \"https://i/t\"\nclient_id = \"a\"\nclient_secret = \"b\"\ntoken = \"t\"\n",
            "not `token`",
        ),
        ("token_url = \"https://i/t\"\n", "OAuth 2.0 setting"),
        ("auth = \"kerberos\"\n", "kerberos"),
    ] {
        let text = format!("[scim]\nbase_url = \"https://scim.example/v2\"\n{toml}");
        let err = HostConfig::parse(&text)
            .and_then(|c| c.settings())
            .expect_err(toml);
        let message = format!("{err:#}");
        assert!(message.contains(needle), "{toml}: {message}");
    }
}

/// The CLI as an operator runs it: `[scim] auth = "oauth2"` with the secret in an environment
/// variable; the connection test and a user added (provisioned at once) work, and nothing
/// printed holds the secret.
#[test]
fn the_cli_with_auth_oauth2() {
    let bin = peers::workspace_root().join("target/debug/host-example");
    if !bin.is_file() {
        eprintln!(
            "SKIPPED the_cli_with_auth_oauth2: {} is missing (cargo build -p host-example --bins)",
            bin.display()
        );
        return;
    }
    let idp = Idp::start(600);
    let peer = idp.scim_server(&[]);
    let dir = scim_provisioner_tests::site::temp_dir("oauth2-cli");
    let config = dir.join("scim-provisioner.toml");
    std::fs::write(
        &config,
        format!(
            "[scim]\nbase_url = \"{}\"\nauth = \"oauth2\"\ntoken_url = \"{}\"\nclient_id = \"{}\"\n\
             client_secret_env = \"SCIM_OAUTH2_CLI_SECRET\"\nscope = \"scim\"\ntimeout_secs = 10\n\n\
             [host]\ndatabase = \"{}\"\n",
            peer.base_url,
            idp.token_endpoint,
            CLIENT.0,
            dir.join("cli.db").display()
        ),
    )
    .expect("the config is written");
    let run = |args: &[&str]| -> String {
        let out = Command::new(&bin)
            .arg("-c")
            .arg(&config)
            .args(args)
            .env("SCIM_OAUTH2_CLI_SECRET", CLIENT.1)
            .output()
            .expect("the CLI runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "host-example {args:?}:\n{text}");
        assert!(!text.contains(CLIENT.1), "the secret was printed:\n{text}");
        text
    };
    let tested = run(&["test-connection"]);
    assert!(tested.contains("Connection successful"), "{tested}");
    run(&[
        "users",
        "add",
        "--name",
        "clialice",
        "--mail",
        "clialice@example.com",
    ]);
    assert_eq!(remote_user_names(&idp, &peer), ["clialice"]);
    let _ = std::fs::remove_dir_all(&dir);
}
