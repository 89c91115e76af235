//! Live metrics scraped by a real Prometheus (issue 31, part 3).
//!
//! Debian's `prometheus` runs as this test's own process (its configuration and TSDB in a
//! temp dir, on a free loopback port, scraping every second) against `host-example serve`
//! and `host-example daemon`, each started with `--metrics-listen`. Users are imported
//! into the daemon's CMS; its next sync provisions them to `serve`. Prometheus's HTTP API
//! must then show the counters moved by the expected amounts: 20 users created, and the
//! client's requests equal to the requests the server answered. Every wait is for a
//! condition, under a deadline.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scim_provisioner_tests::component::url_encode;
use scim_provisioner_tests::peers::{get_json, workspace_root};

/// Users imported, and so created by the daemon's sync.
const USERS: u64 = 20;
/// How long any one condition may take on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(90);

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("scim-metrics-{}", std::process::id()));
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

/// A child process, killed on drop; its output goes to a file shown when a wait fails.
struct Service {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Service {
    fn start(name: &'static str, mut command: Command, dir: &Path) -> Service {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Service { name, child, log }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(3000);
        format!(
            "--- {} log ---\n{}",
            self.name,
            text.get(start..).unwrap_or(&text)
        )
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn get_text(url: &str) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut response = agent.get(url).call().ok()?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().ok()?;
    Some((status, body))
}

/// Waits until `condition` holds, or fails the test with `what` and the services' logs.
fn wait_for(what: &str, services: &[&Service], mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        if started.elapsed() > DEADLINE {
            let logs: Vec<String> = services.iter().map(|s| s.log_tail()).collect();
            panic!(
                "timed out after {DEADLINE:?} waiting for {what}\n{}",
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Prometheus's answer to an instant query: the value of a one-element vector, `None`
/// when the result is empty (not scraped yet) or the query failed.
fn query(prometheus: &str, promql: &str) -> Option<f64> {
    let url = format!("{prometheus}/api/v1/query?query={}", url_encode(promql));
    let (status, body) = get_text(&url)?;
    if status != 200 {
        return None;
    }
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    let result = json["data"]["result"].as_array()?;
    if result.len() != 1 {
        return None;
    }
    result[0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_scrapes_serve_and_daemon_and_the_counters_move_as_expected() {
    let bin = workspace_root().join("target/debug/host-example");
    assert!(
        bin.is_file(),
        "{} is missing (build it with `cargo build --workspace --bins`)",
        bin.display()
    );
    let prometheus_bin = which_prometheus();
    let dir = TempDir::new();
    let token = "metrics-test-token-4f0c2a9d";

    // serve: the SCIM server, with its metrics.
    let (scim_port, serve_metrics, daemon_metrics, prometheus_port) =
        (free_port(), free_port(), free_port(), free_port());
    let mut serve_cmd = Command::new(&bin);
    serve_cmd
        .args(["serve", "--workers", "2", "--token-env", "SCIM_TOKEN"])
        .args(["--listen", &format!("127.0.0.1:{scim_port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{serve_metrics}")])
        .arg("--database")
        .arg(dir.0.join("server.db"))
        .env("SCIM_TOKEN", token);
    let serve = Service::start("serve", serve_cmd, &dir.0);
    let base_url = format!("http://127.0.0.1:{scim_port}/scim/v2");
    // Requests this test sends to serve itself, which the daemon did not.
    let mut probes = 0.0;
    wait_for("serve to answer", &[&serve], || {
        let answered = get_json(&format!("{base_url}/ServiceProviderConfig"), token);
        probes += f64::from(u8::from(answered.is_ok()));
        answered.is_ok_and(|(status, _)| status == 200)
    });

    // The daemon: the CMS side, syncing every second.
    let config = dir.0.join("client.toml");
    std::fs::write(
        &config,
        format!(
            "[scim]\nbase_url = \"{base_url}\"\ntoken_env = \"SCIM_TOKEN\"\n\n[host]\ndatabase = \"{}\"\nconcurrency = 2\n",
            dir.0.join("client.db").display()
        ),
    )
    .expect("config");
    let mut daemon_cmd = Command::new(&bin);
    daemon_cmd
        .arg("--config")
        .arg(&config)
        .args(["daemon", "--every", "1s"])
        .args(["--metrics-listen", &format!("127.0.0.1:{daemon_metrics}")])
        .env("SCIM_TOKEN", token);
    let daemon = Service::start("daemon", daemon_cmd, &dir.0);

    // Prometheus, scraping both every second.
    let prometheus_config = dir.0.join("prometheus.yml");
    std::fs::write(
        &prometheus_config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: serve\n    static_configs:\n      - targets: ['127.0.0.1:{serve_metrics}']\n  - job_name: daemon\n    static_configs:\n      - targets: ['127.0.0.1:{daemon_metrics}']\n"
        ),
    )
    .expect("prometheus config");
    let mut prometheus_cmd = Command::new(&prometheus_bin);
    prometheus_cmd
        .arg(format!("--config.file={}", prometheus_config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.0.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"));
    let prometheus = Service::start("prometheus", prometheus_cmd, &dir.0);
    let api = format!("http://127.0.0.1:{prometheus_port}");
    let all = [&serve, &daemon, &prometheus];

    // Both targets up, and the daemon's first (empty) sync done: its concurrency gauge and
    // outbox gauges are there.
    wait_for("both targets up in Prometheus", &all, || {
        query(&api, "sum(up{job=~\"serve|daemon\"})") == Some(2.0)
    });
    wait_for("the daemon's outbox gauge", &all, || {
        query(&api, "scim_outbox_depth{job=\"daemon\"}") == Some(0.0)
    });
    let created_before = query(
        &api,
        "sum(scim_users_provisioned_total{job=\"daemon\",action=\"created\",result=\"ok\"}) or vector(0)",
    )
    .expect("a number");
    assert_eq!(created_before, 0.0);

    // The CMS gets 20 users; the daemon's next sync provisions them.
    let csv = dir.0.join("users.csv");
    let mut file = std::fs::File::create(&csv).expect("csv");
    writeln!(file, "name,mail").expect("csv");
    for i in 0..USERS {
        writeln!(file, "metrics{i},metrics{i}@example.com").expect("csv");
    }
    drop(file);
    let import = Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .args(["users", "import"])
        .arg(&csv)
        .env("SCIM_TOKEN", token)
        .output()
        .expect("users import runs");
    assert!(import.status.success(), "{import:?}");

    wait_for("20 users created, as Prometheus sees it", &all, || {
        query(
            &api,
            "sum(scim_users_provisioned_total{job=\"daemon\",action=\"created\",result=\"ok\"})",
        ) == Some(USERS as f64)
    });
    // They are really on the server.
    let (status, listing) = get_json(&format!("{base_url}/Users?count=1"), token).expect("listing");
    probes += 1.0;
    assert_eq!(status, 200);
    assert_eq!(listing["totalResults"], USERS, "{listing}");

    // What the client sent is what the server answered, request for request, and the
    // server created them with POSTs (to /Users, or inside /Bulk).
    wait_for(
        "the client's requests to equal the server's answers",
        &all,
        || {
            let client = query(&api, "sum(scim_client_requests_total{job=\"daemon\"})");
            let server = query(&api, "sum(scim_server_requests_total{job=\"serve\"})");
            matches!((client, server), (Some(c), Some(s)) if c >= 1.0 && s == c + probes)
        },
    );
    let posts = query(
        &api,
        "sum(scim_server_requests_total{job=\"serve\",method=\"POST\",route=~\"/Users|/Bulk\",status=~\"200|201\"})",
    )
    .expect("POSTs recorded");
    assert!(posts >= 1.0, "{posts}");
    let failed = query(
        &api,
        "sum(scim_users_provisioned_total{job=\"daemon\",result=\"failed\"}) or vector(0)",
    );
    assert_eq!(failed, Some(0.0));
    // Latency histograms count every request.
    let client_count = query(
        &api,
        "sum(scim_client_request_duration_seconds_count{job=\"daemon\"})",
    );
    let client_total = query(&api, "sum(scim_client_requests_total{job=\"daemon\"})");
    assert_eq!(client_count, client_total);
    let server_count = query(
        &api,
        "sum(scim_server_request_duration_seconds_count{job=\"serve\"})",
    );
    let server_total = query(&api, "sum(scim_server_requests_total{job=\"serve\"})");
    assert_eq!(server_count, server_total);
    // The concurrency in force (the adaptive window, within the 2 configured) and an
    // empty outbox.
    let concurrency = query(
        &api,
        &format!(
            "scim_client_concurrency{{job=\"daemon\",target=\"http://127.0.0.1:{scim_port}\"}}"
        ),
    );
    assert!(
        concurrency.is_some_and(|c| (1.0..=2.0).contains(&c)),
        "{concurrency:?}"
    );
    assert_eq!(query(&api, "scim_outbox_parked{job=\"daemon\"}"), Some(0.0));

    // Nothing secret in what was scraped.
    for port in [serve_metrics, daemon_metrics] {
        let (status, text) =
            get_text(&format!("http://127.0.0.1:{port}/metrics")).expect("metrics");
        assert_eq!(status, 200);
        assert!(!text.contains(token), "the token leaked into /metrics");
        assert!(
            !text.contains("metrics0@"),
            "user data leaked into /metrics"
        );
    }
}

fn which_prometheus() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    candidates
        .into_iter()
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file())
        .expect("Debian's `prometheus` is not installed (it is in scripts/debian-packages)")
}
