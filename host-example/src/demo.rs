//! `demo`: the seed's whole story on one machine, with no outside server. A "Joomla" site
//! serves SCIM from its own SQLite file (the component's server role); a "Drupal" site
//! holds users in another and provisions them through the component's client role:
//! connection test, one user on demand, one user's whole life automatically, then a
//! scheduled full sync. Each result is proven by reading the server back over plain HTTP.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::{Map, Value};

use crate::delivery;
use crate::describe::{action_label, describe_error};
use crate::logging::{Level, LogSink};
use crate::runtime::{ConnectorSettings, Credentials, Runtime};
use crate::serve;
use crate::store::{Store, UserRecord};
use crate::sync::{SyncOptions, sync};
use crate::types::UserEvent;

/// The policy the demo's Drupal site uses: every operation allowed, deletes delete.
const POLICY: &str = r#"{"operations": {"create": true, "update": true, "deactivate": true, "delete": true},
                        "deprovision": "delete"}"#;

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

/// Runs the demo; true when every check passed.
pub fn run(runtime: &Runtime) -> anyhow::Result<bool> {
    let dir = TempDir(std::env::temp_dir().join(format!("scim-demo-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;
    let quiet = || LogSink::stderr(Level::Error);

    println!(
        "1. Joomla: serving SCIM from {}",
        dir.0.join("joomla.db").display()
    );
    let token = serve::generate_token();
    let mut server = serve::start(
        runtime,
        &dir.0.join("joomla.db"),
        "127.0.0.1:0",
        &token,
        "",
        quiet(),
    )?;
    println!("   SCIM base URL: {}", server.base_url);
    println!(
        "   bearer token:  {}…  (shown in full by `serve`)",
        &token[..8]
    );

    println!(
        "2. Drupal: a site with four users in {}",
        dir.0.join("drupal.db").display()
    );
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

    println!("3. Save and Test Credentials");
    match session.test_connection()? {
        Ok(caps) => println!(
            "   connection successful (patch: {}, bulk: {}, etag: {}, filter: {})",
            caps.patch,
            caps.bulk.is_some(),
            caps.etag,
            caps.filter_max_results.is_some()
        ),
        Err(e) => bail!("connection failed: {}", describe_error(&e)),
    }

    println!("4. Manual provisioning of alice");
    let alice = drupal
        .find_users("alice")?
        .into_iter()
        .next()
        .context("alice")?;
    match session.provision(&alice.to_cms_user(), UserEvent::Reconcile, None)? {
        Ok(o) => {
            drupal.save_link(&alice.id, o.link.as_ref(), &alice.fingerprint(POLICY))?;
            println!(
                "   user alice provisioned successfully: {}",
                action_label(o.action)
            );
        }
        Err(e) => bail!("alice: {}", describe_error(&e)),
    }

    println!("5. Automatic provisioning: erin is created, changed, blocked, then deleted");
    let erin = drupal.add_user(user("erin", "Erin", "Hale", &["member"]), true)?;
    let mut deliver = |drupal: &mut Store, what: &str| -> anyhow::Result<()> {
        let report = delivery::deliver(drupal, &mut session, POLICY, 3, false)?;
        let last = drupal.log_entries(Some(&erin.id), false, 1)?;
        let outcome = last.first().map(|e| e.outcome.clone()).unwrap_or_default();
        println!(
            "   {what:<28} -> {outcome} ({} delivered)",
            report.delivered
        );
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

    println!("6. Scheduled full sync");
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
    println!("   {summary}");

    println!("7. Read back from the Joomla side with plain HTTP GETs");
    println!(
        "   {:<8} {:<14} {:<50} ok",
        "user", "expected", "on the server"
    );
    let joomla_cms = Store::open(&dir.0.join("joomla.db"))?;
    let mut all_ok = true;
    let mut check = |name: &str, expected: &str, found: Option<(String, bool)>| {
        let seen = match &found {
            Some((id, true)) => format!("active, id {id}"),
            Some((id, false)) => format!("inactive, id {id}"),
            None => "absent".into(),
        };
        let ok = match expected {
            "active" => matches!(found, Some((_, true))),
            "inactive" => matches!(found, Some((_, false))),
            _ => found.is_none(),
        };
        all_ok &= ok;
        println!(
            "   {name:<8} {expected:<14} {seen:<50} {}",
            if ok { "yes" } else { "NO" }
        );
    };
    for name in ["alice", "bob", "carol", "dave"] {
        check(name, "active", read_back(&server.base_url, &token, name)?);
    }
    check("erin*", "active", on_server_after_create);
    check("erin**", "inactive", on_server_after_block);
    check(
        "erin",
        "absent",
        read_back(&server.base_url, &token, "erin")?,
    );
    println!("   * after creation, ** after blocking; erin was then deleted");
    // The reverse mapping made each provisioned user a normal Joomla user.
    let joomla_users: Vec<String> = joomla_cms
        .all_users()?
        .iter()
        .map(|u| {
            let status = if u.active { "active" } else { "blocked" };
            format!("{} <{}> {status}", u.name, u.mail)
        })
        .collect();
    println!("   Joomla's own user table: {}", joomla_users.join("; "));
    let cms_ok = joomla_users.len() == 4
        && ["alice", "bob", "carol", "dave"].iter().all(|n| {
            let expected = format!("{n} <{n}@drupal.example> active");
            joomla_users.contains(&expected)
        });
    all_ok &= cms_ok;
    println!(
        "   Joomla users are the four provisioned ones, active: {}",
        if cms_ok { "yes" } else { "NO" }
    );
    server.stop();
    println!(
        "{}",
        if all_ok {
            "demo: every result proven on the server"
        } else {
            "demo: some results did not match"
        }
    );
    Ok(all_ok)
}
