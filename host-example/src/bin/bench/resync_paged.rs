//! A no-change resync of a large store read in pages (issue 30, `--resync-paged N`): N users
//! and their links, each link's fingerprint the user's own (as after a sync), written into
//! the store's tables on SQLite or PostgreSQL by a child process (so that writing them
//! leaves nothing in this process's memory), then one `host_example::sync::sync_paged` with
//! nothing changed. Reported: its seconds, the requests it sent (0), and the peak RSS of
//! this process during it (`VmHWM` after `clear_refs` reset it, so the component and the
//! runtime loaded before count, the writing does not).
//!
//! On PostgreSQL (`--resync-database postgres://…`, an empty database) the store is the
//! shared store there (`Store::open_url`), its tables made by its own migrations.
//!
//! `--resync-policy realistic` syncs under a policy of a few KB (the Drupal example of
//! `docs/configuration.md` and more rules, [`REALISTIC_POLICY`]) instead of an empty one:
//! the policy is hashed once per sync, so its size should not show. `--resync-legacy` writes
//! the links' fingerprints in the form of the versions before the policy digest, and times
//! two resyncs: the first after the upgrade (which recognises them and rewrites them) and
//! the next. Besides the wall time, the CPU seconds this process spent in the resync are
//! reported (the database server's, on PostgreSQL, are not in them): on a busy machine the
//! wall time varies with the load, the CPU time much less.
//!
//! `--resync-first` measures a first sync instead: the N users written without links, then
//! one `sync_paged` that creates them all in a `host-example serve` of its own (a child
//! process on a free loopback port, over a temporary SQLite file, so its memory is not
//! this process's): seconds, users a second, and the peak RSS of this process, which
//! streams past `sync::HOLD` users, then a no-change resync after it.
//!
//! ```sh
//! cargo build --release -p host-example --bin bench --bin host-example
//! /usr/bin/time -v target/release/bench --resync-paged 1000000 [--resync-policy realistic]
//! target/release/bench --resync-paged 1000000 --resync-database postgres://USER:PASSWORD@127.0.0.1:PORT/EMPTY_DB
//! target/release/bench --resync-paged 1000000 --resync-legacy
//! target/release/bench --resync-paged 100000 --resync-first
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use host_example::database::{DatabaseUrl, Db, Dialect, SqlValue};
use host_example::store::{Store, UserRecord};
use host_example::{ConnectorSettings, Credentials, Runtime};
use serde_json::json;

use crate::figures::grouped;
use crate::proc_cpu::process_cpu_seconds;
use crate::servers::TempDb;
use crate::sync::sync_options;

/// Rows written per statement.
const ROWS_PER_INSERT: usize = 500;

/// A policy as a real site's: the Drupal example of `docs/configuration.md` with more
/// rules, a scope and the operations (about 3 KB).
pub const REALISTIC_POLICY: &str = r#"{
  "operations": {"create": true, "update": true, "deactivate": true, "delete": false},
  "deprovision": "deactivate",
  "extensions": ["urn:example:params:scim:schemas:extension:acme:2.0:User"],
  "mapping": [
    {"target": "userName", "source": "name", "required": true},
    {"target": "emails[type eq \"work\"].value", "source": "mail", "transform": ["trim", "lower"]},
    {"target": "emails[type eq \"home\"].value", "source": "field_private_mail", "transform": ["trim", "lower"]},
    {"target": "name.givenName", "source": "field_first_name", "transform": ["trim"]},
    {"target": "name.familyName", "source": "field_last_name", "transform": ["trim"]},
    {"target": "name.middleName", "source": "field_middle_name"},
    {"target": "name.honorificPrefix", "source": "field_salutation"},
    {"target": "name.formatted", "template": "{field_first_name} {field_last_name}", "transform": ["trim"]},
    {"target": "displayName", "template": "{field_first_name} {field_last_name}", "transform": ["trim"]},
    {"target": "nickName", "source": "field_nickname"},
    {"target": "preferredLanguage", "source": "field_language", "default": "en"},
    {"target": "locale", "source": "field_locale", "default": "en-US"},
    {"target": "timezone", "source": "field_timezone", "default": "Europe/Berlin"},
    {"target": "phoneNumbers[type eq \"work\"].value", "source": "field_phone"},
    {"target": "phoneNumbers[type eq \"mobile\"].value", "source": "field_mobile"},
    {"target": "addresses[type eq \"work\"].streetAddress", "source": "field_street"},
    {"target": "addresses[type eq \"work\"].locality", "source": "field_city"},
    {"target": "addresses[type eq \"work\"].postalCode", "source": "field_postal_code"},
    {"target": "addresses[type eq \"work\"].country", "source": "field_country", "transform": ["upper"]},
    {"target": "roles", "source": "roles"},
    {"target": "active", "source": "@active"},
    {"target": "externalId", "source": "@id"},
    {"target": "userType", "constant": "Employee", "apply": "create"},
    {"target": "title", "source": "field_title", "default": "Staff"},
    {"target": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "source": "field_employee_number"},
    {"target": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter", "source": "field_cost_center"},
    {"target": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:organization", "constant": "Example Corp"},
    {"target": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:division", "source": "field_division"},
    {"target": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "source": "field_department"},
    {"target": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value", "source": "field_manager_id"},
    {"target": "urn:example:params:scim:schemas:extension:acme:2.0:User:badge", "source": "field_badge",
     "transform": [{"regex_replace": {"pattern": "^B-(\\d+)$", "replacement": "$1"}}]},
    {"target": "urn:example:params:scim:schemas:extension:acme:2.0:User:memberSince", "source": "created", "transform": ["date"]},
    {"target": "urn:example:params:scim:schemas:extension:acme:2.0:User:groups", "source": "field_groups", "transform": [{"split": ","}]},
    {"target": "urn:example:params:scim:schemas:extension:acme:2.0:User:building", "template": "{field_site} / {field_building}"}
  ],
  "scope": {"field": "roles", "any_of": ["authenticated", "editor", "member"],
            "all": [{"field": "roles", "none_of": ["administrator", "blocked_by_hr"]}]}
}"#;

/// The policy named by `--resync-policy`.
fn policy(name: &str) -> Result<String> {
    match name {
        "minimal" => Ok(String::new()),
        "realistic" => Ok(REALISTIC_POLICY.to_string()),
        other => bail!("--resync-policy takes minimal or realistic, not {other:?}"),
    }
}

/// The settings of the sync: a closed port, since a no-change resync sends nothing.
fn settings(policy_json: String) -> ConnectorSettings {
    ConnectorSettings {
        base_url: "http://127.0.0.1:9/scim/v2".into(),
        credentials: Credentials::Bearer("unused".into()),
        timeout_ms: 1_000,
        policy_json,
    }
}

fn user(i: usize) -> UserRecord {
    let mut fields = serde_json::Map::new();
    fields.insert("field_first_name".into(), json!(format!("First{i}")));
    fields.insert("field_last_name".into(), json!(format!("Last{i}")));
    fields.insert("roles".into(), json!(["authenticated", "editor"]));
    UserRecord {
        id: (i + 1).to_string(),
        name: format!("user{i}"),
        mail: format!("user{i}@example.com"),
        fields,
        active: true,
    }
}

/// Writes `n` users, each linked with its own fingerprint under `policy_name` (in the form
/// of the versions before the policy digest when `legacy`; none when `unlinked`): the
/// child process's work.
pub fn seed(
    database: &str,
    n: usize,
    policy_name: &str,
    legacy: bool,
    unlinked: bool,
) -> Result<()> {
    let url = DatabaseUrl::parse(database, Path::new("."))?;
    // The store makes its tables (migrated and recorded as on any site).
    drop(Store::open_url(&url, Duration::from_secs(30))?);
    let mut db = Db::connect(&url)?;
    let policy = policy(policy_name)?;
    let started = Instant::now();
    for chunk_start in (0..n).step_by(ROWS_PER_INSERT) {
        let chunk = chunk_start..(chunk_start + ROWS_PER_INSERT).min(n);
        let mut users: Vec<SqlValue> = Vec::new();
        let mut links: Vec<SqlValue> = Vec::new();
        for i in chunk.clone() {
            let u = user(i);
            let snapshot = json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": u.name, "externalId": u.id, "active": true,
                "name": {"givenName": format!("First{i}"), "familyName": format!("Last{i}")},
                "emails": [{"value": u.mail, "type": "work", "primary": true}],
            });
            links.extend([
                u.id.clone().into(),
                format!("remote-{i:08}").into(),
                format!("W/\"{i}\"").into(),
                snapshot.to_string().into(),
                if legacy {
                    u.legacy_fingerprint(&policy).into()
                } else {
                    u.fingerprint(&policy).into()
                },
            ]);
            users.extend([
                u.id.into(),
                u.name.into(),
                u.mail.into(),
                serde_json::Value::Object(u.fields).to_string().into(),
                SqlValue::Int(1),
            ]);
        }
        let rows = |n: usize| vec!["(?, ?, ?, ?, ?)"; n].join(", ");
        db.transaction(|db| {
            db.execute(
                &format!(
                    "INSERT INTO users (id, name, mail, fields, active) VALUES {}",
                    rows(chunk.len())
                ),
                &users,
            )?;
            if unlinked {
                return Ok(());
            }
            db.execute(
                &format!(
                    "INSERT INTO links (user_id, remote_id, version, snapshot, fingerprint) VALUES {}",
                    rows(chunk.len())
                ),
                &links,
            )?;
            Ok(())
        })?;
    }
    if db.dialect() == Dialect::Postgres {
        // As autovacuum would soon: the planner's statistics for the tables just filled.
        db.batch_execute("ANALYZE users; ANALYZE links")?;
    }
    eprintln!(
        "wrote {} users and links in {:.1} s",
        grouped(n as u64),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A `host-example serve` of the bench's own: a child process on a free loopback port over
/// a temporary SQLite file, stopped on drop.
struct ServeProcess {
    child: std::process::Child,
    base_url: String,
    token: String,
    _db: TempDb,
}

impl ServeProcess {
    fn start() -> Result<ServeProcess> {
        let exe = std::env::current_exe()?.with_file_name("host-example");
        if !exe.exists() {
            bail!(
                "{} is missing: cargo build --release -p host-example --bin host-example",
                exe.display()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let db = TempDb::new()?;
        let token = host_example::serve::generate_token();
        let child = std::process::Command::new(&exe)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--database",
            ])
            .arg(&db.0)
            .args(["--token-env", "SCIM_BENCH_SERVE_TOKEN"])
            .env("SCIM_BENCH_SERVE_TOKEN", &token)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting host-example serve")?;
        let serve = ServeProcess {
            child,
            base_url: format!("http://127.0.0.1:{port}/scim/v2"),
            token,
            _db: db,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("host-example serve did not listen on port {port} within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(serve)
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This process's peak resident set since the last reset, in bytes.
fn peak_rss() -> Option<u64> {
    status_bytes("VmHWM:")
}

/// This process's resident set now, in bytes.
fn rss() -> Option<u64> {
    status_bytes("VmRSS:")
}

fn status_bytes(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The CPU seconds (user and system) this process has spent so far.
fn cpu_seconds() -> Option<f64> {
    process_cpu_seconds("self")
}

/// Resets the peak resident set to the current one (Linux's `clear_refs` 5).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Seeds `n` users (in a child process) into `database` (a SQLite path, a postgres:// URL,
/// or `None` for a fresh SQLite file), then measures the paged no-change resync under the
/// policy `policy_name` (twice, after seeding the older fingerprint form, when `legacy`),
/// or with `first`, a first sync of them into a `host-example serve` and a resync after.
pub fn run(
    runtime: &Runtime,
    n: usize,
    database: Option<&str>,
    policy_name: &str,
    legacy: bool,
    first: bool,
) -> Result<()> {
    let serve = if first {
        Some(ServeProcess::start()?)
    } else {
        None
    };
    let settings = match &serve {
        Some(serve) => ConnectorSettings {
            base_url: serve.base_url.clone(),
            credentials: Credentials::Bearer(serve.token.clone()),
            timeout_ms: 30_000,
            policy_json: policy(policy_name)?,
        },
        None => settings(policy(policy_name)?),
    };
    let temp = TempDb::new()?;
    let sqlite_store = temp.0.clone();
    let database = database.map_or_else(|| sqlite_store.display().to_string(), String::from);
    println!(
        "\n== {} of {} users, read in pages from {}, {policy_name} policy ({} bytes){} ==",
        if first {
            "a first sync (into host-example serve)"
        } else {
            "a no-change resync"
        },
        grouped(n as u64),
        DatabaseUrl::parse(&database, Path::new("."))?.redacted(),
        settings.policy_json.len(),
        if legacy {
            ", links fingerprinted by the version before"
        } else {
            ""
        }
    );
    let mut seeding = std::process::Command::new(std::env::current_exe()?);
    seeding.args([
        "--resync-seed",
        &n.to_string(),
        "--resync-database",
        &database,
        "--resync-policy",
        policy_name,
    ]);
    if legacy {
        seeding.arg("--resync-legacy");
    }
    if first {
        seeding.arg("--resync-first");
    }
    let status = seeding.status().context("starting the seeding process")?;
    if !status.success() {
        bail!("seeding failed: {status}");
    }
    let url = DatabaseUrl::parse(&database, Path::new("."))?;
    let mut store = Store::open_url(&url, Duration::from_secs(30))?;
    let mut db = Db::connect(&url)?;
    let options = sync_options(4, 100);
    // On PostgreSQL on this machine, the server process that answers the plan's queries:
    // its CPU seconds are the other half of the resync's cost.
    let backend = match db.dialect() {
        Dialect::Postgres => db
            .query("SELECT pg_backend_pid()", &[])?
            .first()
            .map(|r| r.int(0))
            .transpose()?
            .map(|pid| pid.to_string()),
        _ => None,
    };
    let runs: &[&str] = match (first, legacy) {
        (true, _) => &["first sync", "the resync after it"],
        (false, true) => &["the first resync after the upgrade", "the next resync"],
        (false, false) => &["resync"],
    };
    for (i, what) in runs.iter().enumerate() {
        let before = rss();
        let reset = reset_peak_rss();
        let cpu_before = cpu_seconds();
        let server_before = backend.as_deref().and_then(process_cpu_seconds);
        let started = Instant::now();
        let summary = host_example::sync::sync_paged(
            runtime,
            &settings,
            &mut store,
            &mut db,
            &options,
            &mut |_| {},
        )?;
        let seconds = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds()
            .zip(cpu_before)
            .map_or("unknown".into(), |(after, before)| {
                format!("{:.2} s", after - before)
            });
        let server_cpu = backend
            .as_deref()
            .and_then(process_cpu_seconds)
            .zip(server_before)
            .map(|(after, before)| format!(", the PostgreSQL backend's {:.2} s", after - before))
            .unwrap_or_default();
        let peak = peak_rss();
        let creating = first && i == 0;
        if creating {
            if summary.created != n as u64 || summary.failed != 0 {
                bail!("not a first sync of every user: {summary}");
            }
        } else if summary.unchanged != n as u64 || summary.requests != 0 {
            bail!("not a no-change resync: {summary}");
        }
        let mb =
            |b: Option<u64>| b.map_or("unknown".into(), |b| format!("{:.1} MB", b as f64 / 1e6));
        println!(
            "{what}: {seconds:.2} s (CPU {cpu}{server_cpu}{}), {} requests, {} created, {} unchanged; peak RSS during it {} (the process before it: {}{})",
            if creating {
                format!(", {} users/s", grouped((n as f64 / seconds) as u64))
            } else {
                String::new()
            },
            summary.requests,
            grouped(summary.created),
            grouped(summary.unchanged),
            mb(peak),
            mb(before),
            if reset {
                ""
            } else {
                "; the peak could not be reset, so it includes the start"
            }
        );
    }
    Ok(())
}
