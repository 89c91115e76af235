//! `users`: the sample CMS's users. Each change records an outbox event and is delivered
//! at once (automatic provisioning); an import is provisioned by the next sync, or at once.

use std::process::ExitCode;

use anyhow::Context;
use host_example::import;
use host_example::store::UserRecord;
use host_example::types::UserEvent;
use serde_json::{Map, Value};

use crate::app::App;
use crate::cli::UsersCommand;

/// Runs a `users` subcommand; a change is delivered at once.
pub fn run(app: &App, cmd: UsersCommand) -> anyhow::Result<ExitCode> {
    let mut store = app.store()?;
    match cmd {
        UsersCommand::Add {
            name,
            mail,
            fields,
            blocked,
        } => {
            let mut record = UserRecord {
                id: String::new(),
                name,
                mail,
                fields: Map::new(),
                active: !blocked,
            };
            for f in &fields {
                let (k, v) = parse_field(f)?;
                record.fields.insert(k, v);
            }
            let user = store.add_user(record, true)?;
            println!("added user {} ({})", user.id, user.name);
        }
        UsersCommand::Update {
            user,
            name,
            mail,
            fields,
        } => {
            let id = app.one_user(&store, &user)?.id;
            let parsed: Vec<(String, Value)> = fields
                .iter()
                .map(|f| parse_field(f))
                .collect::<anyhow::Result<_>>()?;
            let user = store.change_user(&id, UserEvent::Updated, |u| {
                if let Some(n) = name {
                    u.name = n;
                }
                if let Some(m) = mail {
                    u.mail = m;
                }
                for (k, v) in parsed {
                    if v == Value::String(String::new()) {
                        u.fields.remove(&k);
                    } else {
                        u.fields.insert(k, v);
                    }
                }
            })?;
            println!("updated user {} ({})", user.id, user.name);
        }
        UsersCommand::Block { user } => {
            let id = app.one_user(&store, &user)?.id;
            store.change_user(&id, UserEvent::Blocked, |u| u.active = false)?;
            println!("blocked user {id}");
        }
        UsersCommand::Unblock { user } => {
            let id = app.one_user(&store, &user)?.id;
            store.change_user(&id, UserEvent::Unblocked, |u| u.active = true)?;
            println!("unblocked user {id}");
        }
        UsersCommand::Delete { user } => {
            let id = app.one_user(&store, &user)?.id;
            store.change_user(&id, UserEvent::Deleted, |_| {})?;
            println!("deleted user {id}");
        }
        UsersCommand::Import { file, provision } => {
            let records = import::read_users(&file)?;
            let count = if provision {
                let mut n = 0;
                for r in records {
                    store.add_user(r?, true)?;
                    n += 1;
                }
                n
            } else {
                store.import_users(records)?
            };
            println!("imported {count} users from {}", file.display());
            if !provision {
                return Ok(ExitCode::SUCCESS);
            }
        }
        UsersCommand::List => {
            for u in store.all_users()? {
                let link = store.link(&u.id)?;
                println!(
                    "{:<8} {:<20} {:<32} {:<8} {}",
                    u.id,
                    u.name,
                    u.mail,
                    if u.active { "active" } else { "blocked" },
                    link.map(|l| format!("-> {}", l.link.remote_id))
                        .unwrap_or_else(|| "(not provisioned)".into())
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
    }
    Ok(super::exit_code(app.deliver_now(&mut store)?))
}

/// `roles=editor,member` is a list; everything else is text.
fn parse_field(spec: &str) -> anyhow::Result<(String, Value)> {
    let (name, value) = spec
        .split_once('=')
        .with_context(|| format!("a field must be NAME=VALUE, got {spec:?}"))?;
    let value = if name == "roles" {
        Value::Array(
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        )
    } else {
        Value::String(value.to_string())
    };
    Ok((name.to_string(), value))
}
