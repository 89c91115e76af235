//! `demo`: the seed's whole story on one machine, with no outside server. A "Joomla" site
//! serves SCIM from its own SQLite file (the component's server role); a "Drupal" site
//! holds users in another and provisions them through the component's client role:
//! connection test, one user on demand, one user's whole life automatically, then a
//! scheduled full sync. Each result is proven by reading the server back over plain HTTP.
//!
//! The demo tells its story through [`DemoEvent`]s; their `Display` is the CLI's text.

use std::fmt;

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::{Map, Value};

use crate::delivery;
use crate::describe::{action_label, describe_error};
use crate::logging::{Level, LogSink};
use crate::runtime::{ConnectorSettings, Credentials, Runtime};
use crate::serve;
use crate::store::{Store, UserRecord};
use crate::sync::{SyncOptions, SyncSummary, sync};
use crate::types::{Action, ServerCapabilities, UserEvent};

/// The policy the demo's Drupal site uses: every operation allowed, deletes delete.
const POLICY: &str = r#"{"operations": {"create": true, "update": true, "deactivate": true, "delete": true},
                        "deprovision": "delete"}"#;

/// What the demo reports as it goes. `Display` renders each event as the CLI's line(s).
#[derive(Debug, Clone)]
pub enum DemoEvent {
    /// A numbered step of the story begins.
    Step {
        /// 1 to 7.
        number: u8,
        /// What the step does.
        title: String,
    },
    /// The Joomla side serves SCIM.
    Serving {
        /// Its SCIM base URL.
        base_url: String,
        /// The first characters of its bearer token (`serve` shows it in full).
        token_start: String,
    },
    /// The connection test passed; what the server supports.
    Connected(ServerCapabilities),
    /// A user was provisioned on demand.
    Provisioned {
        /// The user's name.
        user: String,
        /// What was done.
        action: Action,
    },
    /// The outbox was delivered after a change to a user.
    Delivered {
        /// The change, such as `blocked`.
        change: String,
        /// The outcome the log recorded for the user.
        outcome: String,
        /// Events delivered.
        delivered: u64,
    },
    /// The scheduled sync ran.
    Synced(SyncSummary),
    /// Every result, read back from the server.
    Checked(Vec<Check>),
    /// Joomla's own user table, as `name <mail> status`, and whether it holds exactly the
    /// four provisioned users, active.
    JoomlaUsers {
        /// One entry per user.
        users: Vec<String>,
        /// True when they are the four provisioned users, active.
        ok: bool,
    },
    /// The end.
    Finished {
        /// True when every check passed.
        all_ok: bool,
    },
}

/// One result checked on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The user, marked `*` or `**` for a snapshot taken before later changes.
    pub user: String,
    /// `active`, `inactive` or `absent`.
    pub expected: &'static str,
    /// What the server holds: (remote id, active), or none.
    pub found: Option<(String, bool)>,
}

impl Check {
    /// True when the server holds what was expected.
    pub fn ok(&self) -> bool {
        match self.expected {
            "active" => matches!(self.found, Some((_, true))),
            "inactive" => matches!(self.found, Some((_, false))),
            _ => self.found.is_none(),
        }
    }
}

fn yes(ok: bool) -> &'static str {
    if ok { "yes" } else { "NO" }
}

impl fmt::Display for DemoEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DemoEvent::Step { number, title } => write!(f, "{number}. {title}"),
            DemoEvent::Serving {
                base_url,
                token_start,
            } => write!(
                f,
                "   SCIM base URL: {base_url}\n   bearer token:  {token_start}…  (shown in full by `serve`)"
            ),
            DemoEvent::Connected(caps) => write!(
                f,
                "   connection successful (patch: {}, bulk: {}, etag: {}, filter: {})",
                caps.patch,
                caps.bulk.is_some(),
                caps.etag,
                caps.filter_max_results.is_some()
            ),
            DemoEvent::Provisioned { user, action } => write!(
                f,
                "   user {user} provisioned successfully: {}",
                action_label(*action)
            ),
            DemoEvent::Delivered {
                change,
                outcome,
                delivered,
            } => write!(f, "   {change:<28} -> {outcome} ({delivered} delivered)"),
            DemoEvent::Synced(summary) => write!(f, "   {summary}"),
            DemoEvent::Checked(checks) => {
                writeln!(
                    f,
                    "   {:<8} {:<14} {:<50} ok",
                    "user", "expected", "on the server"
                )?;
                for c in checks {
                    let seen = match &c.found {
                        Some((id, true)) => format!("active, id {id}"),
                        Some((id, false)) => format!("inactive, id {id}"),
                        None => "absent".into(),
                    };
                    writeln!(
                        f,
                        "   {:<8} {:<14} {seen:<50} {}",
                        c.user,
                        c.expected,
                        yes(c.ok())
                    )?;
                }
                write!(
                    f,
                    "   * after creation, ** after blocking; erin was then deleted"
                )
            }
            DemoEvent::JoomlaUsers { users, ok } => write!(
                f,
                "   Joomla's own user table: {}\n   Joomla users are the four provisioned ones, active: {}",
                users.join("; "),
                yes(*ok)
            ),
            DemoEvent::Finished { all_ok } => f.write_str(if *all_ok {
                "demo: every result proven on the server"
            } else {
                "demo: some results did not match"
            }),
        }
    }
}

fn user(name: &str, first: &str, last: &str, roles: &[&str]) -> UserRecord {
    let mut fields = Map::new();
    fields.insert("field_first_name".into(), Value::String(first.into()));
    fields.insert("field_last_name".into(), Value::String(last.into()));
    fields.insert(
        "roles".into(),
        Value::Array(roles.iter().map(|r| Value::String((*r).into())).collect()),
    );
    UserRecord {
        id: String::new(),
        name: name.into(),
        mail: format!("{name}@drupal.example"),
        fields,
        active: true,
    }
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the server holds for a userName: (remote id, active), read with a plain GET.
fn read_back(base: &str, token: &str, user_name: &str) -> anyhow::Result<Option<(String, bool)>> {
    let encoded = scim_provisioner::scim::uri::encode_component(
        &scim_provisioner::scim::filter::eq_filter("userName", user_name),
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .get(&format!("{base}/Users?filter={encoded}"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .context("reading the server back")?;
    let body: Value = serde_json::from_slice(&resp.body_mut().read_to_vec()?)?;
    let first = body
        .get("Resources")
        .and_then(Value::as_array)
        .and_then(|r| r.first());
    Ok(first.map(|u| {
        (
            u.get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            u.get("active").and_then(Value::as_bool).unwrap_or(true),
        )
    }))
}

fn step(number: u8, title: impl Into<String>) -> DemoEvent {
    DemoEvent::Step {
        number,
        title: title.into(),
    }
}

/// Runs the demo quietly; true when every check passed.
pub fn run(runtime: &Runtime) -> anyhow::Result<bool> {
    run_with(runtime, &mut |_| {})
}

/// Runs the demo, telling its story to `on_event`; true when every check passed.
pub fn run_with(runtime: &Runtime, on_event: &mut dyn FnMut(DemoEvent)) -> anyhow::Result<bool> {
    let dir = TempDir(std::env::temp_dir().join(format!("scim-demo-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;
    let quiet = || LogSink::stderr(Level::Error);

    on_event(step(
        1,
        format!(
            "Joomla: serving SCIM from {}",
            dir.0.join("joomla.db").display()
        ),
    ));
    let token = serve::generate_token();
    let mut server = serve::start(
        runtime,
        &dir.0.join("joomla.db"),
        "127.0.0.1:0",
        &token,
        "",
        quiet(),
    )?;
    on_event(DemoEvent::Serving {
        base_url: server.base_url.clone(),
        token_start: token[..8].to_string(),
    });

    on_event(step(
        2,
        format!(
            "Drupal: a site with four users in {}",
            dir.0.join("drupal.db").display()
        ),
    ));
    let mut drupal = Store::open(&dir.0.join("drupal.db"))?;
    for u in [
        user("alice", "Alice", "Liddell", &["editor"]),
        user("bob", "Bob", "Builder", &["member"]),
        user("carol", "Carol", "Danvers", &["editor", "member"]),
        user("dave", "Dave", "Bowman", &["member"]),
    ] {
        drupal.add_user(u, false)?;
    }
    let settings = ConnectorSettings {
        base_url: server.base_url.clone(),
        credentials: Credentials::Bearer(token.clone()),
        timeout_ms: 10_000,
        policy_json: POLICY.into(),
    };
    let mut session = match runtime.open_with_log(&settings, quiet())? {
        Ok(s) => s,
        Err(e) => bail!("{}", describe_error(&e)),
    };

    on_event(step(3, "Save and Test Credentials"));
    match session.test_connection()? {
        Ok(caps) => on_event(DemoEvent::Connected(caps)),
        Err(e) => bail!("connection failed: {}", describe_error(&e)),
    }

    on_event(step(4, "Manual provisioning of alice"));
    let alice = drupal
        .find_users("alice")?
        .into_iter()
        .next()
        .context("alice")?;
    match session.provision(&alice.to_cms_user(), UserEvent::Reconcile, None)? {
        Ok(o) => {
            drupal.save_link(&alice.id, o.link.as_ref(), &alice.fingerprint(POLICY))?;
            on_event(DemoEvent::Provisioned {
                user: "alice".into(),
                action: o.action,
            });
        }
        Err(e) => bail!("alice: {}", describe_error(&e)),
    }

    on_event(step(
        5,
        "Automatic provisioning: erin is created, changed, blocked, then deleted",
    ));
    let erin = drupal.add_user(user("erin", "Erin", "Hale", &["member"]), true)?;
    let mut deliver = |drupal: &mut Store, change: &str| -> anyhow::Result<()> {
        let report = delivery::deliver(drupal, &mut session, POLICY, 3, false)?;
        let last = drupal.log_entries(Some(&erin.id), false, 1)?;
        let outcome = last.first().map(|e| e.outcome.clone()).unwrap_or_default();
        on_event(DemoEvent::Delivered {
            change: change.into(),
            outcome,
            delivered: report.delivered,
        });
        Ok(())
    };
    deliver(&mut drupal, "created")?;
    let on_server_after_create = read_back(&server.base_url, &token, "erin")?;
    drupal.change_user(&erin.id, UserEvent::Updated, |u| {
        u.fields
            .insert("field_last_name".into(), Value::String("Hale-Smith".into()));
    })?;
    deliver(&mut drupal, "last name changed")?;
    drupal.change_user(&erin.id, UserEvent::Blocked, |u| u.active = false)?;
    deliver(&mut drupal, "blocked")?;
    let on_server_after_block = read_back(&server.base_url, &token, "erin")?;
    drupal.change_user(&erin.id, UserEvent::Deleted, |_| {})?;
    deliver(&mut drupal, "deleted")?;

    on_event(step(6, "Scheduled full sync"));
    let summary = sync(
        runtime,
        &settings,
        &mut drupal,
        &SyncOptions {
            plan_only: false,
            allow_deletes: false,
            threshold: crate::config::Threshold::Percent(50.0),
            concurrency: 2,
            batch_size: 100,
            max_attempts: 3,
            progress: false,
            full: false,
        },
    )?;
    on_event(DemoEvent::Synced(summary));

    on_event(step(
        7,
        "Read back from the Joomla side with plain HTTP GETs",
    ));
    let check = |user: &str, expected, found| Check {
        user: user.into(),
        expected,
        found,
    };
    let mut checks = Vec::new();
    for name in ["alice", "bob", "carol", "dave"] {
        checks.push(check(
            name,
            "active",
            read_back(&server.base_url, &token, name)?,
        ));
    }
    checks.push(check("erin*", "active", on_server_after_create));
    checks.push(check("erin**", "inactive", on_server_after_block));
    checks.push(check(
        "erin",
        "absent",
        read_back(&server.base_url, &token, "erin")?,
    ));
    let mut all_ok = checks.iter().all(Check::ok);
    on_event(DemoEvent::Checked(checks));
    // The reverse mapping made each provisioned user a normal Joomla user.
    let joomla_cms = Store::open(&dir.0.join("joomla.db"))?;
    let joomla_users: Vec<String> = joomla_cms
        .all_users()?
        .iter()
        .map(|u| {
            let status = if u.active { "active" } else { "blocked" };
            format!("{} <{}> {status}", u.name, u.mail)
        })
        .collect();
    let cms_ok = joomla_users.len() == 4
        && ["alice", "bob", "carol", "dave"].iter().all(|n| {
            let expected = format!("{n} <{n}@drupal.example> active");
            joomla_users.contains(&expected)
        });
    all_ok &= cms_ok;
    on_event(DemoEvent::JoomlaUsers {
        users: joomla_users,
        ok: cms_ok,
    });
    server.stop();
    on_event(DemoEvent::Finished { all_ok });
    Ok(all_ok)
}
