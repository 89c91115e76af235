//! `host-example`: the command line of the wasmtime sample host.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use host_example::config::{HostConfig, Threshold};
use host_example::delivery::{self, now_rfc3339};
use host_example::logging::{Level, LogSink};
use host_example::store::{Store, UserRecord};
use host_example::sync::{SyncOptions, sync};
use host_example::types::{Link, ServerCapabilities, UserEvent};
use host_example::{ConnectorSettings, Runtime, Session, action_label, describe_error};
use serde_json::{Map, Value};

/// Provision CMS users to a SCIM 2.0 server through the scim-provisioner component.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The TOML configuration file.
    #[arg(long, short, global = true, default_value = "scim-provisioner.toml")]
    config: PathBuf,
    /// A component to load instead of the one built with this host.
    #[arg(long, global = true)]
    component: Option<PathBuf>,
    /// Show the component's debug log (requests and statuses; never credentials).
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the seed's whole story on this machine: a Joomla-like SCIM server, a Drupal-like
    /// client site, a connection test, manual, automatic and scheduled provisioning, and a
    /// table proving each result on the server. Needs no configuration file.
    Demo,
    /// Serve SCIM 2.0 from a SQLite directory (the Joomla side). Needs no configuration file.
    Serve {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// The SQLite file holding the directory.
        #[arg(long, default_value = "scim-server.db")]
        database: PathBuf,
        /// The environment variable holding the bearer token; without it, a token is
        /// generated once and kept in the database.
        #[arg(long)]
        token_env: Option<String>,
    },
    /// Test the SCIM base URL and credentials, and show what the server supports.
    TestConnection,
    /// Provision one user now (manual / on demand), found by id, name or email.
    Provision {
        /// The user's id, name or email.
        user: String,
        /// Print the requests that would be sent instead of sending them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Change the sample CMS's users; each change is provisioned at once (automatic).
    #[command(subcommand)]
    Users(UsersCommand),
    /// Reconcile every user (scheduled): create, update what changed, deprovision.
    Sync {
        /// Print the plan and send nothing.
        #[arg(long)]
        plan: bool,
        /// Go ahead even if more users would be deprovisioned than the threshold allows.
        #[arg(long)]
        allow_deletes: bool,
        /// Verify every linked user on the server (one request each) and re-create what
        /// the server lost, instead of trusting what was last provisioned.
        #[arg(long)]
        full: bool,
    },
    /// Run the sync on a schedule and deliver outbox events as they come.
    Daemon {
        /// The sync interval, such as 10m, 1h or 30s.
        #[arg(long, default_value = "10m", value_parser = parse_interval)]
        every: Duration,
        /// How often the sync is a full, verifying one (`sync --full`): it reads every
        /// linked user, so it notices users deleted or changed on the server.
        #[arg(long, default_value = "24h", value_parser = parse_interval)]
        verify_every: Duration,
    },
    /// Show the provisioning log, newest first.
    Log {
        /// Only this user (id).
        #[arg(long)]
        user: Option<String>,
        /// Only failures.
        #[arg(long)]
        failed: bool,
        /// How many lines.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show the outbox depth, parked events and the last sync.
    Status,
    /// Put parked outbox events back in line and deliver them.
    Retry,
    /// Read one remote user by SCIM id and print it.
    GetUser {
        /// The remote SCIM id.
        id: String,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Add a user.
    Add {
        /// Login name.
        #[arg(long)]
        name: String,
        /// Email.
        #[arg(long)]
        mail: String,
        /// Another field, as NAME=VALUE (repeatable; `roles=a,b` is a list).
        #[arg(long = "field", short = 'f', value_name = "NAME=VALUE")]
        fields: Vec<String>,
        /// Add the user blocked.
        #[arg(long)]
        blocked: bool,
    },
    /// Change a user's fields.
    Update {
        /// The user's id, name or email.
        user: String,
        /// New login name.
        #[arg(long)]
        name: Option<String>,
        /// New email.
        #[arg(long)]
        mail: Option<String>,
        /// A field to set, as NAME=VALUE; an empty VALUE clears it.
        #[arg(long = "field", short = 'f', value_name = "NAME=VALUE")]
        fields: Vec<String>,
    },
    /// Block a user.
    Block {
        /// The user's id, name or email.
        user: String,
    },
    /// Unblock a user.
    Unblock {
        /// The user's id, name or email.
        user: String,
    },
    /// Delete a user.
    Delete {
        /// The user's id, name or email.
        user: String,
    },
    /// Load users from CSV (with a header row) or JSON Lines, in one transaction. They are
    /// provisioned by the next sync, or at once with --provision.
    Import {
        /// The file (`.csv`, or `.jsonl` / `.ndjson`).
        file: PathBuf,
        /// Record a `created` event for each user and deliver them now.
        #[arg(long)]
        provision: bool,
    },
    /// List users.
    List,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Everything a command needs, opened lazily.
struct App {
    config: HostConfig,
    settings: ConnectorSettings,
    config_dir: PathBuf,
    component: Option<PathBuf>,
    verbose: bool,
}

impl App {
    fn runtime(&self) -> anyhow::Result<Runtime> {
        Runtime::new(
            self.component
                .clone()
                .unwrap_or_else(Runtime::built_component_path),
        )
    }

    fn log(&self) -> LogSink {
        LogSink::stderr(if self.verbose {
            Level::Debug
        } else {
            Level::Warn
        })
    }

    fn session(&self, runtime: &Runtime) -> anyhow::Result<Session> {
        match runtime.open_with_log(&self.settings, self.log())? {
            Ok(s) => Ok(s),
            Err(e) => bail!("{}", describe_error(&e)),
        }
    }

    fn store(&self) -> anyhow::Result<Store> {
        let path = Path::new(&self.config.host.database);
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.config_dir.join(path)
        };
        Store::open(&path)
    }

    /// Delivers due outbox events now, as automatic provisioning does after each change.
    /// Each event that failed is named, with the server's reason, on stderr. Returns false
    /// when one was parked (a permanent failure, or the last attempt): that change will
    /// not reach the server without help. Failures that will be retried return true.
    fn deliver_now(&self, store: &mut Store) -> anyhow::Result<bool> {
        let runtime = self.runtime()?;
        let mut session = self.session(&runtime)?;
        host_example::dialect::load(store, &mut session, &self.settings.base_url)?;
        let report = delivery::deliver(
            store,
            &mut session,
            &self.settings.policy_json,
            self.config.host.max_attempts,
            false,
        )?;
        host_example::dialect::save(store, &mut session, &self.settings.base_url)?;
        let failed = report.retrying + report.parked;
        if failed > 0 {
            println!(
                "provisioning: {} delivered, {} will be retried, {} parked (see `log --failed`)",
                report.delivered, report.retrying, report.parked
            );
        } else if report.delivered > 0 {
            println!("provisioning: {} delivered", report.delivered);
        }
        let shown = u32::try_from(report.delivered + failed).unwrap_or(u32::MAX);
        for entry in store.log_entries(None, false, shown)? {
            if entry.outcome == "failed" {
                eprintln!(
                    "user {} could not be provisioned ({}): {}; the change is kept in the CMS",
                    entry.user_id,
                    entry.operation,
                    entry.error.unwrap_or_default()
                );
                continue;
            }
            println!(
                "  user {} {}: {}{}",
                entry.user_id,
                entry.operation,
                entry.outcome,
                entry.error.map(|e| format!(" ({e})")).unwrap_or_default()
            );
        }
        Ok(report.parked == 0)
    }

    fn one_user(&self, store: &Store, needle: &str) -> anyhow::Result<UserRecord> {
        let found = store.find_users(needle)?;
        match found.len() {
            0 => bail!("no user with id, name or email {needle:?}"),
            1 => Ok(found.into_iter().next().context("one user")?),
            _ => {
                let list: Vec<String> = found
                    .iter()
                    .map(|u| format!("  {} {} <{}>", u.id, u.name, u.mail))
                    .collect();
                bail!(
                    "{} users match {needle:?}; give an id:\n{}",
                    found.len(),
                    list.join("\n")
                )
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Demo => {
            let runtime =
                Runtime::new(cli.component.unwrap_or_else(Runtime::built_component_path))?;
            return Ok(if host_example::demo::run(&runtime)? {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Serve {
            listen,
            database,
            token_env,
        } => {
            let runtime = Runtime::new(
                cli.component
                    .clone()
                    .unwrap_or_else(Runtime::built_component_path),
            )?;
            let token = match token_env {
                Some(var) => std::env::var(var)
                    .ok()
                    .filter(|t| !t.is_empty())
                    .with_context(|| format!("environment variable {var} is not set"))?,
                None => {
                    let mut store = Store::open(database)?;
                    match store.meta("server_token")? {
                        Some(t) => t,
                        None => {
                            let t = host_example::serve::generate_token();
                            store.set_meta("server_token", &t)?;
                            t
                        }
                    }
                }
            };
            let level = if cli.verbose {
                Level::Debug
            } else {
                Level::Warn
            };
            let server = host_example::serve::start(
                &runtime,
                database,
                listen,
                &token,
                "",
                LogSink::stderr(level).redact([token.clone()]),
            )?;
            println!("SCIM base URL:     {}", server.base_url);
            println!("SCIM bearer token: {}", server.token);
            println!("serving {} (Ctrl-C stops)", database.display());
            server.wait();
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let config = HostConfig::load(&cli.config)?;
    let settings = config.settings()?;
    let config_dir = cli
        .config
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let app = App {
        config,
        settings,
        config_dir,
        component: cli.component,
        verbose: cli.verbose,
    };
    match cli.command {
        Command::Demo | Command::Serve { .. } => Ok(ExitCode::SUCCESS),
        Command::TestConnection => {
            let runtime = app.runtime()?;
            let mut session = app.session(&runtime)?;
            let code = test_connection(&mut session, &app.settings.base_url)?;
            // Keep what the test learned with the connection; a test still works without
            // a writable store.
            if let Err(e) = app.store().and_then(|mut store| {
                host_example::dialect::save(&mut store, &mut session, &app.settings.base_url)
            }) {
                eprintln!("warning: the server's dialect was not stored: {e:#}");
            }
            Ok(code)
        }
        Command::Provision { user, dry_run } => provision(&app, &user, dry_run),
        Command::Users(cmd) => users(&app, cmd),
        Command::Sync {
            plan,
            allow_deletes,
            full,
        } => {
            let mut store = app.store()?;
            let runtime = app.runtime()?;
            let mut options = sync_options(&app, plan, allow_deletes)?;
            options.full = full;
            let summary = sync(&runtime, &app.settings, &mut store, &options)?;
            if !plan {
                println!("sync: {summary}");
            }
            Ok(if summary.failed > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Daemon {
            every,
            verify_every,
        } => daemon(&app, every, verify_every),
        Command::Log {
            user,
            failed,
            limit,
        } => {
            let store = app.store()?;
            for e in store.log_entries(user.as_deref(), failed, limit)? {
                println!(
                    "{} user {:<8} {:<10} {:<12} {:>6} {:>5} ms  {}",
                    e.at,
                    e.user_id,
                    e.operation,
                    e.outcome,
                    e.http_status.map(|s| s.to_string()).unwrap_or_default(),
                    e.duration_ms,
                    e.error.unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status => {
            let store = app.store()?;
            let (pending, parked) = store.outbox_depth()?;
            println!("users:      {}", store.user_count()?);
            println!("linked:     {}", store.all_links()?.len());
            println!("outbox:     {pending} pending, {parked} parked");
            for e in store.pending_events()?.iter().filter(|e| e.parked) {
                println!(
                    "  parked #{} user {} {} after {} attempts: {}",
                    e.seq,
                    e.user_id,
                    host_example::store::event_name(e.event),
                    e.attempts,
                    e.last_error.as_deref().unwrap_or_default()
                );
            }
            println!(
                "last sync:  {}",
                store.meta("last_sync")?.unwrap_or_else(|| "never".into())
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Retry => {
            let mut store = app.store()?;
            println!("{} parked event(s) back in line", store.unpark_all()?);
            Ok(exit_code(app.deliver_now(&mut store)?))
        }
        Command::GetUser { id } => {
            let runtime = app.runtime()?;
            let mut session = app.session(&runtime)?;
            match session.get_user(&id)? {
                Ok(Some(json)) => {
                    let value: Value = serde_json::from_str(&json)
                        .context("the component returned invalid JSON")?;
                    println!("{}", serde_json::to_string_pretty(&value)?);
                    Ok(ExitCode::SUCCESS)
                }
                Ok(None) => {
                    println!("no remote user with id {id}");
                    Ok(ExitCode::FAILURE)
                }
                Err(e) => {
                    println!("{}", describe_error(&e));
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

fn sync_options(app: &App, plan: bool, allow_deletes: bool) -> anyhow::Result<SyncOptions> {
    Ok(SyncOptions {
        plan_only: plan,
        allow_deletes,
        threshold: Threshold::parse(&app.config.host.deprovision_threshold)?,
        concurrency: app.config.host.concurrency,
        batch_size: app.config.host.batch_size,
        max_attempts: app.config.host.max_attempts,
        progress: !plan,
        full: false,
    })
}

fn provision(app: &App, needle: &str, dry_run: bool) -> anyhow::Result<ExitCode> {
    let mut store = app.store()?;
    let user = app.one_user(&store, needle)?;
    let link = store.link(&user.id)?;
    let runtime = app.runtime()?;
    let opened = if dry_run {
        runtime.open_dry_run(&app.settings, app.log())?
    } else {
        runtime.open_with_log(&app.settings, app.log())?
    };
    let mut session = match opened {
        Ok(s) => s,
        Err(e) => bail!("{}", describe_error(&e)),
    };
    host_example::dialect::load(&store, &mut session, &app.settings.base_url)?;
    let cms_user = user.to_cms_user();
    let event = UserEvent::Reconcile;
    let started = std::time::Instant::now();
    // On demand, look rather than trust the snapshot: without one the component reads the
    // remote user (one GET by id), re-creates or adopts it when it is gone, and sends what
    // differs from what the server holds now.
    let looked = link.as_ref().map(|l| Link {
        snapshot: None,
        ..l.link.clone()
    });
    let result = session.provision(&cms_user, event, looked.as_ref())?;
    if !dry_run {
        host_example::dialect::save(&mut store, &mut session, &app.settings.base_url)?;
    }
    if dry_run {
        let plan = session.plan(&cms_user, event, link.is_some())?;
        println!(
            "dry run for user {} ({}): would {}{}",
            user.id,
            user.name,
            host_example::sync::planned_name(plan.action),
            plan.reason.map(|r| format!(" ({r})")).unwrap_or_default()
        );
        let held = session.take_held();
        if held.is_empty() {
            match result {
                Ok(o) => println!("no write request needed: {}", action_label(o.action)),
                Err(e) => println!("{}", describe_error(&e)),
            }
        }
        for r in held {
            println!("{} {}", r.method, r.url);
            if !r.body.is_empty() {
                match serde_json::from_str::<Value>(&r.body) {
                    Ok(v) => println!("{}", serde_json::to_string_pretty(&v)?),
                    Err(_) => println!("{}", r.body),
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut entry = host_example::store::LogEntry {
        at: now_rfc3339(),
        user_id: user.id.clone(),
        operation: "manual".into(),
        http_status: None,
        outcome: String::new(),
        error: None,
        duration_ms,
    };
    match result {
        Ok(mut outcome) => {
            // Nothing was sent: the stored snapshot still says what was last provisioned.
            if let (Some(new), Some(old)) = (outcome.link.as_mut(), link.as_ref())
                && new.snapshot.is_none()
                && new.remote_id == old.link.remote_id
            {
                new.snapshot = old.link.snapshot.clone();
            }
            store.save_link(
                &user.id,
                outcome.link.as_ref(),
                &user.fingerprint(&app.settings.policy_json),
            )?;
            entry.outcome = delivery::action_name(outcome.action).into();
            entry.error = outcome.reason.clone();
            store.append_log(&entry)?;
            println!(
                "User {} ({}) provisioned successfully: {}{}{}",
                user.id,
                user.name,
                action_label(outcome.action),
                outcome
                    .link
                    .as_ref()
                    .map(|l| format!("; remote id {}", l.remote_id))
                    .unwrap_or_default(),
                outcome
                    .reason
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            entry.outcome = "failed".into();
            entry.http_status = delivery::error_status(&e);
            entry.error = Some(describe_error(&e));
            store.append_log(&entry)?;
            println!(
                "User {} ({}) was not provisioned: {}",
                user.id,
                user.name,
                describe_error(&e)
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn users(app: &App, cmd: UsersCommand) -> anyhow::Result<ExitCode> {
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
            let records = read_users(&file)?;
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
    Ok(exit_code(app.deliver_now(&mut store)?))
}

/// Success unless a change was parked: it could not be provisioned and will not be retried.
fn exit_code(none_parked: bool) -> ExitCode {
    if none_parked {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Reads CSV (header row: `name`, `mail`, optional `id`, `status`/`active`, `roles` with
/// `|` between roles, any other column a field) or JSON Lines (objects with the same keys).
fn read_users(path: &Path) -> anyhow::Result<Vec<anyhow::Result<UserRecord>>> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut out = Vec::new();
    if ext == "csv" {
        let mut reader =
            csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
        let headers = reader.headers()?.clone();
        for (i, row) in reader.records().enumerate() {
            out.push(row.map_err(anyhow::Error::from).and_then(|row| {
                let mut obj = Map::new();
                for (h, v) in headers.iter().zip(row.iter()) {
                    let value = if h == "roles" {
                        Value::Array(
                            v.split('|')
                                .filter(|s| !s.is_empty())
                                .map(|s| Value::String(s.to_string()))
                                .collect(),
                        )
                    } else {
                        Value::String(v.to_string())
                    };
                    obj.insert(h.to_string(), value);
                }
                record_from_object(obj).with_context(|| format!("row {}", i + 2))
            }));
        }
    } else {
        let file =
            std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            out.push(
                serde_json::from_str::<Value>(&line)
                    .map_err(anyhow::Error::from)
                    .and_then(|v| match v {
                        Value::Object(o) => record_from_object(o),
                        _ => bail!("not a JSON object"),
                    })
                    .with_context(|| format!("line {}", i + 1)),
            );
        }
    }
    Ok(out)
}

fn record_from_object(mut obj: Map<String, Value>) -> anyhow::Result<UserRecord> {
    let text = |v: Option<Value>| match v {
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let name = text(obj.remove("name"))
        .filter(|s| !s.is_empty())
        .context("`name` is missing")?;
    let mail = text(obj.remove("mail")).unwrap_or_default();
    let id = text(obj.remove("id")).unwrap_or_default();
    let status = obj.remove("status").or_else(|| obj.remove("active"));
    let active = match status {
        None => true,
        Some(Value::Bool(b)) => b,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !matches!(
            s.to_ascii_lowercase().as_str(),
            "0" | "false" | "blocked" | "no"
        ),
        Some(_) => true,
    };
    Ok(UserRecord {
        id,
        name,
        mail,
        fields: obj,
        active,
    })
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

fn parse_interval(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("not an interval: {s:?} (try 30s, 10m, 1h)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("unknown unit {unit:?} (use s, m, h or d)")),
    };
    if secs == 0 {
        return Err("the interval must be positive".into());
    }
    Ok(Duration::from_secs(secs))
}

fn daemon(app: &App, every: Duration, verify_every: Duration) -> anyhow::Result<ExitCode> {
    let runtime = app.runtime()?;
    let mut store = app.store()?;
    let mut options = sync_options(app, false, false)?;
    println!(
        "daemon: syncing every {}s, verifying every linked user every {}s, delivering outbox events as they come (Ctrl-C stops)",
        every.as_secs(),
        verify_every.as_secs()
    );
    let mut next_sync = std::time::Instant::now();
    // The first sync verifies: a daemon may start after the server changed.
    let mut next_verify = next_sync;
    loop {
        let now = std::time::Instant::now();
        if now >= next_sync {
            options.full = now >= next_verify;
            let kind = if options.full {
                "verifying sync"
            } else {
                "sync"
            };
            match sync(&runtime, &app.settings, &mut store, &options) {
                Ok(summary) => println!("{} {kind}: {summary}", now_rfc3339()),
                Err(e) => eprintln!("{} {kind} failed: {e:#}", now_rfc3339()),
            }
            next_sync = std::time::Instant::now() + every;
            if options.full {
                next_verify = std::time::Instant::now() + verify_every;
            }
        }
        let mut session = app.session(&runtime)?;
        host_example::dialect::load(&store, &mut session, &app.settings.base_url)?;
        let report = delivery::deliver(
            &mut store,
            &mut session,
            &app.settings.policy_json,
            app.config.host.max_attempts,
            false,
        )?;
        if report != delivery::DeliveryReport::default() {
            host_example::dialect::save(&mut store, &mut session, &app.settings.base_url)?;
            println!(
                "{} outbox: {} delivered, {} retrying, {} parked",
                now_rfc3339(),
                report.delivered,
                report.retrying,
                report.parked
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn test_connection(session: &mut Session, base_url: &str) -> anyhow::Result<ExitCode> {
    match session.test_connection()? {
        Ok(caps) => {
            println!("Connection successful: {base_url}");
            print_capabilities(&caps);
            for finding in host_example::dialect::findings(&session.export_dialect()?) {
                println!("  {finding}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("Connection failed: {}", describe_error(&e));
            Ok(ExitCode::FAILURE)
        }
    }
}

fn print_capabilities(caps: &ServerCapabilities) {
    let yes = |b: bool| if b { "yes" } else { "no" };
    if !caps.discovered {
        println!("  (no /ServiceProviderConfig; assuming the conservative defaults)");
    }
    println!("  patch:          {}", yes(caps.patch));
    match &caps.bulk {
        Some(b) => println!(
            "  bulk:           yes (maxOperations {}, maxPayloadSize {})",
            b.max_operations, b.max_payload_size
        ),
        None => println!("  bulk:           no"),
    }
    match caps.filter_max_results {
        Some(n) => println!("  filter:         yes (maxResults {n})"),
        None => println!("  filter:         no"),
    }
    println!("  etag:           {}", yes(caps.etag));
    println!("  sort:           {}", yes(caps.sort));
    println!("  changePassword: {}", yes(caps.change_password));
}
