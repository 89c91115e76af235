//! What the commands share: the configuration, and the runtime, session and store opened
//! from it when a command needs them.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use host_example::config::{HostConfig, Threshold};
use host_example::database::DatabaseUrl;
use host_example::delivery;
use host_example::logging::{Level, LogSink};
use host_example::store::{DEFAULT_CONNECT_WAIT, Store, UserRecord};
use host_example::sync::SyncOptions;
use host_example::{ConnectorSettings, Runtime, Session, describe_error};

/// The component given with `--component`, else the one built with this host: loaded from
/// the precompiled cache (`SCIM_PROVISIONER_CACHE`, else `cache_dir`, else beside the
/// `.wasm`), or compiled and kept there for the next process. With `verbose`, one line on
/// stderr says which (`component: loaded precompiled FILE in 4.2 ms`).
pub fn load_runtime(
    component: Option<&Path>,
    cache_dir: Option<&Path>,
    verbose: bool,
) -> anyhow::Result<Runtime> {
    let path = component
        .map(Path::to_path_buf)
        .unwrap_or_else(Runtime::built_component_path);
    let runtime = Runtime::with_cache_dir(path, cache_dir)?;
    if verbose {
        eprintln!("component: {}", runtime.cache_info());
    }
    Ok(runtime)
}

/// The guest's log: debug lines with `--verbose`, else warnings and errors; on stderr.
pub fn log_sink(verbose: bool) -> LogSink {
    LogSink::stderr(if verbose { Level::Debug } else { Level::Warn })
}

/// The environment variable that names the store instead of `[host] database`.
pub const DATABASE_ENV: &str = "SCIM_PROVISIONER_DATABASE";

/// Everything a command needs, opened lazily.
pub struct App {
    /// The configuration file's contents.
    pub config: HostConfig,
    /// The connector settings it gives.
    pub settings: ConnectorSettings,
    config_dir: PathBuf,
    component: Option<PathBuf>,
    verbose: bool,
    /// `--database`, when given.
    database: Option<String>,
}

impl App {
    /// Reads the configuration file.
    pub fn load(
        config_file: &Path,
        component: Option<PathBuf>,
        verbose: bool,
    ) -> anyhow::Result<Self> {
        let config = HostConfig::load(config_file)?;
        let settings = config.settings()?;
        let config_dir = config_file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Ok(App {
            config,
            settings,
            config_dir,
            component,
            verbose,
            // Every command takes the store from the environment when it is set there (a
            // URL with a password stays out of the configuration file and of `ps`).
            database: std::env::var(DATABASE_ENV)
                .ok()
                .filter(|v| !v.trim().is_empty()),
        })
    }

    /// The compiled component (precompiled once, in `[host] cache_dir` or the cache
    /// `load_runtime` names), its instances under the `[host]` limits.
    pub fn runtime(&self) -> anyhow::Result<Runtime> {
        let cache_dir = self.config.cache_dir(&self.config_dir);
        let runtime = load_runtime(
            self.component.as_deref(),
            cache_dir.as_deref(),
            self.verbose,
        )?;
        Ok(runtime.with_limits(self.config.limits()))
    }

    /// The guest's log sink.
    pub fn log(&self) -> LogSink {
        log_sink(self.verbose)
    }

    /// An instance of the component with the configured connector open.
    pub fn session(&self, runtime: &Runtime) -> anyhow::Result<Session> {
        match runtime.open_with_log(&self.settings, self.log())? {
            Ok(s) => Ok(s),
            Err(e) => bail!("{}", describe_error(&e)),
        }
    }

    /// Where the store is: `--database` (or `SCIM_PROVISIONER_DATABASE`) when given, else
    /// `[host] database`; an SQLite path relative to the configuration file.
    pub fn database_url(&self) -> anyhow::Result<DatabaseUrl> {
        let text = self
            .database
            .as_deref()
            .unwrap_or(&self.config.host.database);
        DatabaseUrl::parse(text, &self.config_dir)
    }

    /// The sample CMS's store: an SQLite file, or a shared PostgreSQL or MariaDB database
    /// (waited for while it starts), with the configured claim lease.
    pub fn store(&self) -> anyhow::Result<Store> {
        let url = self.database_url()?;
        host_example::shared_in_flight::configure(
            &self.settings.base_url,
            &url,
            self.config.host.server_in_flight,
            self.log(),
        );
        let mut store = Store::open_url(&url, DEFAULT_CONNECT_WAIT)?;
        store.set_claim_lease(std::time::Duration::from_secs(u64::from(
            self.config.host.claim_lease_secs.max(1),
        )));
        Ok(store)
    }

    /// Uses `database` instead of `[host] database` (the `--database` option).
    pub fn with_database(mut self, database: Option<String>) -> Self {
        if database.is_some() {
            self.database = database;
        }
        self
    }

    /// How `sync` and `daemon` run, from the configuration.
    pub fn sync_options(&self, plan: bool, allow_deletes: bool) -> anyhow::Result<SyncOptions> {
        Ok(SyncOptions {
            plan_only: plan,
            allow_deletes,
            threshold: Threshold::parse(&self.config.host.deprovision_threshold)?,
            concurrency: self.config.host.concurrency,
            batch_size: self.config.host.batch_size,
            max_attempts: self.config.host.max_attempts,
            progress: !plan,
            full: false,
        })
    }

    /// Delivers due outbox events now, as automatic provisioning does after each change.
    /// Each event that failed is named, with the server's reason, on stderr. Returns false
    /// when one was parked (a permanent failure, or the last attempt): that change will
    /// not reach the server without help. Failures that will be retried return true.
    pub fn deliver_now(&self, store: &mut Store) -> anyhow::Result<bool> {
        let runtime = self.runtime()?;
        let mut session = self.session(&runtime)?;
        if let Some(warning) =
            host_example::dialect::load(store, &mut session, &self.settings.base_url)?
        {
            eprintln!("warning: {warning}");
        }
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

    /// The one user an id, name or email finds.
    pub fn one_user(&self, store: &Store, needle: &str) -> anyhow::Result<UserRecord> {
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
